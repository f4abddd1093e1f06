//! Cluster mode end to end: real `redis-server`, real `sluice` processes on loopback
//! ports, and loadgen participants that publish synthetic media and decrypt what the
//! others send. Each test starts its own Redis on a free port.

mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::{free_udp_port, redis_server_available, ImpairedPath, Node, Redis};
use sluice_loadgen::{Client, ClientConfig, ClientError, ClientEvent, MediaKind};

/// Generous bound for slow CI machines; the waits end as soon as the condition holds.
const WAIT: Duration = Duration::from_secs(20);

fn config(url: String, room: &str, name: &str) -> ClientConfig {
    ClientConfig {
        server_url: url,
        room: room.to_owned(),
        name: name.to_owned(),
        video_bitrate_bps: 200_000,
        video_fps: 10,
        connect_timeout: WAIT,
        ..ClientConfig::default()
    }
}

async fn join(node: &Node, room: &str, name: &str) -> Client {
    Client::connect(config(node.ws_url(), room, name))
        .await
        .unwrap_or_else(|e| panic!("{name} joins {room} through {}: {e}", node.id))
}

/// Waits until `receiver` has at least `at_least` audio and video packets from `from`
/// beyond what it had when called; false at `deadline`.
async fn receives_more(receiver: &Client, from: &str, at_least: u64, timeout: Duration) -> bool {
    let base_audio = receiver.stats().packets_from(from, MediaKind::Audio);
    let base_video = receiver.stats().packets_from(from, MediaKind::Video);
    let from = from.to_owned();
    receiver
        .wait_for(
            move |s| {
                s.packets_from(&from, MediaKind::Audio) >= base_audio + at_least
                    && s.packets_from(&from, MediaKind::Video) >= base_video + at_least
            },
            timeout,
        )
        .await
        .is_ok()
}

/// Everyone in `clients` receives and decrypts everyone else.
async fn all_receive_all(clients: &[&Client]) {
    for receiver in clients {
        receiver.wait_connected(WAIT).await.expect("media connects");
    }
    for receiver in clients {
        for sender in clients {
            let id = sender.participant_id();
            if id != receiver.participant_id() {
                assert!(
                    receives_more(receiver, id, 20, WAIT).await,
                    "{} never received from {id}",
                    receiver.participant_id()
                );
            }
        }
        assert_eq!(receiver.stats().decrypt_failures, 0);
    }
}

/// The node the room's lease names.
async fn owner(redis: &Redis, room: &str) -> String {
    redis
        .get(&format!("sluice:room:{room}"))
        .await
        .unwrap_or_else(|| panic!("room {room} has no lease"))
}

/// Joins through `node`, retrying with backoff while the cluster answers
/// `cluster_unavailable` (what the demo page does), until `deadline`.
async fn join_with_retry(node: &Node, room: &str, name: &str, deadline: Instant) -> Client {
    let mut backoff = Duration::from_millis(100);
    loop {
        match Client::connect(config(node.ws_url(), room, name)).await {
            Ok(client) => return client,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "{name} could not rejoin {room} through {}: {error}",
                    node.id
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn cluster(redis: &Redis, ids: &[&str]) -> Vec<Node> {
    cluster_with(redis, ids, "").await
}

/// [`cluster`] with `extra_yaml` added to every node's configuration.
async fn cluster_with(redis: &Redis, ids: &[&str], extra_yaml: &str) -> Vec<Node> {
    let mut nodes = Vec::new();
    for id in ids {
        nodes.push(Node::start(id, &redis.url(), extra_yaml).await);
    }
    // Every node sees every other before the test places rooms.
    for node in &nodes {
        let deadline = Instant::now() + WAIT;
        while node.metric("sluice_cluster_nodes").await < ids.len() as f64 {
            assert!(
                Instant::now() < deadline,
                "{} never saw the others",
                node.id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    redis.wait_settled().await;
    nodes
}

/// A call of Ada and Bo in `room`, joined through the first two of the nodes `ids` and
/// receiving each other. Returns the other nodes, the node hosting the room (taken out of
/// the list, for the test to kill or stop) and the two participants.
async fn call_on_a_cluster(
    redis: &Redis,
    ids: &[&str],
    extra_yaml: &str,
    room: &str,
) -> (Vec<Node>, Node, Client, Client) {
    let mut nodes = cluster_with(redis, ids, extra_yaml).await;
    let ada = join(&nodes[0], room, "Ada").await;
    let bo = join(&nodes[1], room, "Bo").await;
    all_receive_all(&[&ada, &bo]).await;
    let host = owner(redis, room).await;
    let index = nodes
        .iter()
        .position(|n| n.id == host)
        .expect("the room's node is one of them");
    let host = nodes.remove(index);
    (nodes, host, ada, bo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_joining_one_room_through_three_nodes_all_receive_one_another() {
    if !redis_server_available() {
        return;
    }
    let redis = Redis::start().await;
    let nodes = cluster(&redis, &["n1", "n2", "n3"]).await;
    let ada = join(&nodes[0], "triad", "Ada").await;
    let bo = join(&nodes[1], "triad", "Bo").await;
    let cy = join(&nodes[2], "triad", "Cy").await;
    all_receive_all(&[&ada, &bo, &cy]).await;

    // The room lives on exactly one node; the two others bridge their client to it.
    let owner = owner(&redis, "triad").await;
    let mut rooms = 0.0;
    let mut bridged = 0.0;
    for node in &nodes {
        let here = node.metric("sluice_rooms").await;
        if node.id == owner {
            assert_eq!(here, 1.0, "the owner {} hosts the room", node.id);
            assert_eq!(node.metric("sluice_participants").await, 3.0);
        }
        rooms += here;
        bridged += node.metric("sluice_cluster_bridged_sessions").await;
    }
    assert_eq!(rooms, 1.0, "one copy of the room in the cluster");
    assert_eq!(bridged, 2.0, "two of the three joins were bridged");

    // The owner's heartbeat carries its load: three participants, packets forwarded.
    let deadline = Instant::now() + WAIT;
    loop {
        let record: Option<sluice::cluster::NodeRecord> = redis
            .get(&format!("sluice:node:{owner}"))
            .await
            .and_then(|text| serde_json::from_str(&text).ok());
        if let Some(record) = record.filter(|r| r.participants == 3 && r.rooms == 1) {
            assert!(record.packets_per_second > 0.0, "{record:?}");
            assert!((0.0..=1.0).contains(&record.busy_ratio), "{record:?}");
            assert!(!record.draining);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the owner's heartbeat never showed its load"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A leave crosses the bridge like any message, and the close behind it ends the hop.
    let cy_id = cy.participant_id().to_owned();
    let cy_bridged = nodes[2].id != owner;
    cy.leave().await.expect("Cy leaves cleanly");
    for receiver in [&ada, &bo] {
        let id = cy_id.clone();
        receiver
            .wait_for_event(
                move |e| matches!(e, ClientEvent::ParticipantLeft { id: left } if *left == id),
                WAIT,
            )
            .await
            .expect("participant_left");
    }
    let expected = if cy_bridged { 1.0 } else { 2.0 };
    let deadline = Instant::now() + WAIT;
    loop {
        let mut bridged = 0.0;
        for node in &nodes {
            bridged += node.metric("sluice_cluster_bridged_sessions").await;
        }
        if bridged == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bridged sessions stay at {bridged}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_rooms_node_lets_participants_rejoin_elsewhere_within_ten_seconds() {
    if !redis_server_available() {
        return;
    }
    let redis = Redis::start().await;
    let (nodes, dead, ada, bo) =
        call_on_a_cluster(&redis, &["k1", "k2", "k3"], "", "phoenix").await;
    let old_owner = dead.id.clone();
    dead.signal("-KILL");
    let killed = Instant::now();

    // Both clients lose the room: signalling closes (through a bridge, or because
    // their own node is gone), media stops.
    for client in [&ada, &bo] {
        let stopped = client
            .wait_for_event(
                |e| matches!(e, ClientEvent::Failed(_) | ClientEvent::Bye { .. }),
                WAIT,
            )
            .await;
        assert!(stopped.is_ok(), "the client never noticed the node died");
    }
    drop((ada, bo));

    // They rejoin through the surviving nodes, as a load balancer would send them.
    let deadline = killed + Duration::from_secs(10);
    let ada = join_with_retry(&nodes[0], "phoenix", "Ada", deadline).await;
    let bo = join_with_retry(&nodes[1], "phoenix", "Bo", deadline).await;
    let remaining = deadline.saturating_duration_since(Instant::now());
    for (receiver, sender) in [(&ada, &bo), (&bo, &ada)] {
        assert!(
            receives_more(receiver, sender.participant_id(), 5, remaining).await,
            "no media within 10 s of the kill"
        );
    }
    eprintln!("media back {:?} after kill -9", killed.elapsed());
    let new_owner = owner(&redis, "phoenix").await;
    assert_ne!(new_owner, old_owner, "the room moved off the dead node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_keeps_calls_refuses_new_rooms_and_heals() {
    if !redis_server_available() {
        return;
    }
    let mut redis = Redis::start().await;
    let nodes = cluster(&redis, &["r1", "r2"]).await;
    let ada = join(&nodes[0], "steady", "Ada").await;
    let bo = join(&nodes[1], "steady", "Bo").await;
    all_receive_all(&[&ada, &bo]).await;
    let owner_id = owner(&redis, "steady").await;
    let owner = nodes.iter().find(|n| n.id == owner_id).expect("owner");
    let other = nodes.iter().find(|n| n.id != owner_id).expect("other");

    redis.stop();
    let outage = Instant::now();

    // A new room cannot be placed: the join is refused with the cluster's error.
    match Client::connect(config(other.ws_url(), "newcomer", "Cy")).await {
        Err(ClientError::Rejected { code, .. }) => assert_eq!(code, "cluster_unavailable"),
        Err(other) => panic!("expected cluster_unavailable, got {other}"),
        Ok(_) => panic!("a new room was placed without Redis"),
    }
    // A join for the room its node already hosts is served there.
    let di = join(owner, "steady", "Di").await;
    di.wait_connected(WAIT).await.expect("Di's media connects");

    // Media of the call in progress goes on for the whole outage.
    let outage_len = Duration::from_secs(10);
    while outage.elapsed() < outage_len {
        for (receiver, sender) in [(&ada, &bo), (&bo, &ada)] {
            assert!(
                receives_more(receiver, sender.participant_id(), 5, Duration::from_secs(3)).await,
                "media stopped {:?} into the outage",
                outage.elapsed()
            );
        }
    }
    redis.restart().await;

    // Redis came back empty: the room's lease is gone until its node's next heartbeat.
    // A join for it through the other node meanwhile must not open a second copy.
    let deadline = Instant::now() + WAIT;
    let fay = join_with_retry(other, "steady", "Fay", deadline).await;
    all_receive_all(&[&ada, &fay]).await;
    assert_eq!(
        other.metric("sluice_rooms").await,
        0.0,
        "a second copy of the room"
    );

    // The cluster heals: nodes re-register, the owner re-claims its lease, new rooms
    // are placed again.
    let deadline = Instant::now() + WAIT;
    let cy = join_with_retry(other, "newcomer", "Cy", deadline).await;
    let ed = join_with_retry(owner, "newcomer", "Ed", deadline).await;
    all_receive_all(&[&cy, &ed]).await;
    while redis.get("sluice:room:steady").await.as_deref() != Some(owner_id.as_str()) {
        assert!(
            Instant::now() < deadline,
            "the owner never re-claimed its lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(owner.metric("sluice_cluster_redis_errors_total").await > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_gets_no_new_rooms_and_its_participants_finish() {
    if !redis_server_available() {
        return;
    }
    let redis = Redis::start().await;
    let (nodes, mut draining, ada, bo) =
        call_on_a_cluster(&redis, &["d1", "d2", "d3"], "", "dusk").await;
    let drained = draining.id.clone();
    draining.signal("-TERM");
    let signalled = Instant::now();

    // Its participants finish as on a single node: told why, then closed.
    for client in [&ada, &bo] {
        client
            .wait_for_event(
                |e| matches!(e, ClientEvent::Bye { reason } if reason == "shutting_down"),
                WAIT,
            )
            .await
            .expect("bye shutting_down");
    }
    // It leaves the cluster cleanly (exit 0 within the grace period) ...
    let code = draining
        .wait_for_exit(signalled + Duration::from_secs(7))
        .await;
    assert_eq!(code, Some(0));
    assert_eq!(
        redis.get(&format!("sluice:node:{drained}")).await,
        None,
        "a node that stopped cleanly leaves the membership at once"
    );
    // ... and no room was placed on it meanwhile: the same participants and new rooms
    // all land on the nodes that stay.
    let deadline = Instant::now() + WAIT;
    let ada = join_with_retry(&nodes[0], "dusk", "Ada", deadline).await;
    let bo = join_with_retry(&nodes[1], "dusk", "Bo", deadline).await;
    all_receive_all(&[&ada, &bo]).await;
    for room in ["dusk", "dawn", "noon"] {
        if room != "dusk" {
            let _client = join(&nodes[0], room, "Cy").await;
            let lease = owner(&redis, room).await;
            assert_ne!(lease, drained, "room {room} placed on the draining node");
        } else {
            assert_ne!(owner(&redis, room).await, drained);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_opened_twice_is_merged_into_the_lease_holders_copy() {
    if !redis_server_available() {
        return;
    }
    let redis = Redis::start().await;
    let nodes = cluster(&redis, &["m1", "m2"]).await;
    let ada = join(&nodes[0], "split", "Ada").await;
    ada.wait_connected(WAIT)
        .await
        .expect("Ada's media connects");
    let first = owner(&redis, "split").await;
    let (here, other) = if first == nodes[0].id {
        (&nodes[0], &nodes[1])
    } else {
        (&nodes[1], &nodes[0])
    };
    // What a long Redis outage leaves behind: the lease expired and the other node
    // claimed the room, and a newcomer opened a second copy there.
    let mut conn = redis.connection().await.expect("redis");
    let _: () = redis::cmd("SET")
        .arg(sluice::cluster::room_key("split"))
        .arg(&other.id)
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .expect("SET");
    let bo = join(other, "split", "Bo").await;
    bo.wait_connected(WAIT).await.expect("Bo's media connects");
    assert!(
        !bo.stats().participants.contains_key(ada.participant_id()),
        "a copy of its own: Bo does not see Ada there"
    );

    // The first copy's node finds the lease held elsewhere at its next heartbeat and
    // gives its copy up: Ada is told, rejoins and lands in Bo's copy.
    ada.wait_for_event(
        |e| matches!(e, ClientEvent::Bye { reason } if reason == "room_moved"),
        WAIT,
    )
    .await
    .expect("bye room_moved");
    assert!(here.metric("sluice_cluster_lease_conflicts_total").await >= 1.0);
    let deadline = Instant::now() + WAIT;
    let ada = join_with_retry(here, "split", "Ada", deadline).await;
    all_receive_all(&[&ada, &bo]).await;
    assert_eq!(owner(&redis, "split").await, other.id);
}

/// `shutdown` of the nodes in the drain test: calls go on for `DRAIN_PERIOD` after
/// SIGTERM, then are moved.
const DRAIN_PERIOD: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_lets_its_calls_go_on_then_moves_them_to_the_others() {
    if !redis_server_available() {
        return;
    }
    let redis = Redis::start().await;
    let extra = format!(
        "shutdown:\n  grace_period_ms: {}\n  drain_period_ms: {}\n",
        DRAIN_PERIOD.as_millis() + 3000,
        DRAIN_PERIOD.as_millis()
    );
    let (nodes, mut draining, ada, bo) =
        call_on_a_cluster(&redis, &["e1", "e2", "e3"], &extra, "eve").await;
    let drained = draining.id.clone();
    draining.signal("-TERM");
    let signalled = Instant::now();

    // The call goes on where it is: a newcomer reaching another node joins the same
    // copy of the room (everyone receives everyone), and the lease stays.
    let cy = join(&nodes[0], "eve", "Cy").await;
    all_receive_all(&[&ada, &bo, &cy]).await;
    assert_eq!(owner(&redis, "eve").await, drained);
    // No new room opens on the draining node.
    let _dee = join(&nodes[1], "late", "Dee").await;
    assert_ne!(owner(&redis, "late").await, drained);
    assert!(
        signalled.elapsed() < DRAIN_PERIOD,
        "the checks above took longer than the drain period: nothing was shown"
    );

    // Then the participants still there are moved: told why, after the drain period.
    for client in [&ada, &bo, &cy] {
        client
            .wait_for_event(
                |e| matches!(e, ClientEvent::Bye { reason } if reason == "shutting_down"),
                WAIT,
            )
            .await
            .expect("bye shutting_down");
    }
    assert!(
        signalled.elapsed() >= DRAIN_PERIOD,
        "sessions ended {:?} after SIGTERM, before the drain period",
        signalled.elapsed()
    );
    let code = draining
        .wait_for_exit(signalled + DRAIN_PERIOD + Duration::from_secs(5))
        .await;
    assert_eq!(code, Some(0));
    // They rejoin through the nodes that stay and find one another on one of them.
    let deadline = Instant::now() + WAIT;
    let ada = join_with_retry(&nodes[0], "eve", "Ada", deadline).await;
    let bo = join_with_retry(&nodes[1], "eve", "Bo", deadline).await;
    let cy = join_with_retry(&nodes[1], "eve", "Cy", deadline).await;
    all_receive_all(&[&ada, &bo, &cy]).await;
    assert_ne!(owner(&redis, "eve").await, drained);
}

mod support;

/// A node record as another node would publish it.
async fn publish(redis: &Redis, id: &str, participants: i64, draining: bool) {
    use sluice::cluster::{node_key, NodeRecord, NODES_KEY};
    let record = NodeRecord {
        id: id.to_owned(),
        internal_url: format!("http://{id}.invalid:8080"),
        participants,
        rooms: 0,
        packets_per_second: 0.0,
        busy_ratio: 0.0,
        draining,
        key: "k".to_owned(),
        relay_addr: None,
        fingerprint: None,
        workers: Vec::new(),
    };
    let mut conn = redis.connection().await.expect("redis");
    let text = serde_json::to_string(&record).expect("json");
    let _: () = redis::pipe()
        .set(node_key(id), text)
        .arg("PX")
        .arg(60_000)
        .ignore()
        .sadd(NODES_KEY, id)
        .ignore()
        .query_async(&mut conn)
        .await
        .expect("publish record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_prefers_the_least_loaded_live_node_and_skips_draining_and_dead_ones() {
    use sluice::cluster::{node_key, Placement};
    if !redis_server_available() {
        return;
    }
    let redis = Redis::start().await;
    let yaml = format!(
        "http:\n  listen: \"127.0.0.1:0\"\n\
         media:\n  listen: \"127.0.0.1:0\"\n  workers: 1\n  announce: [\"127.0.0.1\"]\n\
         cluster:\n  redis_url: \"{}\"\n  node_id: self\n  internal_url: \"http://127.0.0.1:1\"\n  relay_listen: \"127.0.0.1:0\"\n",
        redis.url()
    );
    let server = support::start_server(&yaml).await;
    let state = sluice::app::start_cluster(server.state.clone()).expect("cluster");
    let cluster = state.cluster.clone().expect("cluster mode");
    cluster.beat().await.expect("heartbeat");
    // Redis started empty: no room without a lease is placed until the nodes had time
    // to re-claim theirs.
    assert!(matches!(
        cluster.place("early").await,
        Err(sluice::cluster::PlaceError::Settling)
    ));
    redis.wait_settled().await;
    // This test drives the heartbeat by hand: renew it after the wait.
    cluster.beat().await.expect("heartbeat");
    let remote = |id: &str| Placement::Remote {
        node_id: id.to_owned(),
        internal_url: format!("http://{id}.invalid:8080"),
    };

    // An idle node that drains is never chosen; a busier live one loses to this node.
    publish(&redis, "aaa-draining", 0, true).await;
    publish(&redis, "busy", 10, false).await;
    assert_eq!(cluster.place("one").await.unwrap(), Placement::Local);
    assert_eq!(owner(&redis, "one").await, "self");
    // An equally idle live node wins the tie by id ("aab" < "self"), every time:
    // each node places the same way.
    publish(&redis, "aab", 0, false).await;
    assert_eq!(cluster.place("two").await.unwrap(), remote("aab"));
    // A placed room stays where it is.
    publish(&redis, "aab", 5, false).await;
    assert_eq!(cluster.place("two").await.unwrap(), remote("aab"));
    // Its node dies (heartbeat gone): the next join takes the lease over.
    let mut conn = redis.connection().await.unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(node_key("aab"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(cluster.place("two").await.unwrap(), Placement::Local);
    assert_eq!(owner(&redis, "two").await, "self");
    // Its owner drains: the room is placed anew, never on a draining node.
    cluster.drain().await;
    assert_eq!(cluster.place("three").await.unwrap(), remote("busy"));
    assert_eq!(cluster.place("two").await.unwrap(), remote("busy"));
    // A draining node whose room's call goes on keeps it: joins go there, so the call
    // is not split in two, until that node moves the room (releasing the lease).
    publish(&redis, "drainer", 0, true).await;
    let _: () = redis::cmd("SET")
        .arg(sluice::cluster::room_key("four"))
        .arg("drainer")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(cluster.place("four").await.unwrap(), remote("drainer"));
}

/// The `q` quantile of `samples` (sorted in place).
fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples.get(index).copied().unwrap_or_default()
}

/// Measurement, not a check (scripts/cluster-bench.sh runs it in release): the time from
/// opening the WebSocket to `joined` for a room that lives on the node reached, and for
/// one that lives on another node (placement in Redis plus the bridge's WebSocket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run by scripts/cluster-bench.sh"]
async fn bench_join_latency_through_the_owner_and_through_another_node() {
    if !redis_server_available() {
        return;
    }
    let joins: usize = std::env::var("SLUICE_BENCH_JOINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let redis = Redis::start().await;
    let nodes = cluster(&redis, &["o1", "o2"]).await;
    let _anchor = join(&nodes[0], "bench", "Anchor").await;
    let owner_id = owner(&redis, "bench").await;
    let owner = nodes.iter().find(|n| n.id == owner_id).expect("owner");
    let other = nodes.iter().find(|n| n.id != owner_id).expect("other");
    for (label, node) in [("owner", owner), ("non-owner", other)] {
        let mut samples = Vec::with_capacity(joins);
        for i in 0..joins {
            let mut config = config(node.ws_url(), "bench", &format!("J{i}"));
            config.publish_video = false;
            let started = Instant::now();
            let client = Client::connect(config).await.expect("join");
            samples.push(started.elapsed());
            client.leave().await.expect("leave");
        }
        let p50 = quantile(&mut samples, 0.5);
        let p99 = quantile(&mut samples, 0.99);
        println!("join through the {label}: {joins} joins, p50 {p50:?}, p99 {p99:?}");
    }
}

const SECRET: &str = "0123456789abcdef0123456789abcdef-cluster";

fn mint(room: &str) -> String {
    use sluice_signal::token::{sign, JoinClaims, SigningKey};
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        + 600;
    sign(
        &JoinClaims {
            room: room.to_owned(),
            sub: "tester".to_owned(),
            exp,
            nbf: None,
            name: None,
        },
        &SigningKey {
            id: "k1".to_owned(),
            secret: SECRET.as_bytes().to_vec(),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rooms_node_checks_the_join_token_of_a_bridged_join() {
    if !redis_server_available() {
        return;
    }
    let redis = Redis::start().await;
    let keys = format!("auth:\n  keys:\n    - id: k1\n      secret: \"{SECRET}\"\n");
    // t1 requires tokens; t2 is (mis)configured without keys and so lets anyone in
    // itself, but every room here lives on t1, which checks the token it is forwarded.
    let t1 = Node::start("t1", &redis.url(), &keys).await;
    let t2 = Node::start("t2", &redis.url(), "").await;
    let deadline = Instant::now() + WAIT;
    while t2.metric("sluice_cluster_nodes").await < 2.0 {
        assert!(Instant::now() < deadline, "t2 never saw t1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis.wait_settled().await;
    let mut conn = redis.connection().await.expect("redis");
    for room in ["locked", "open"] {
        let _: () = redis::cmd("SET")
            .arg(format!("sluice:room:{room}"))
            .arg("t1")
            .arg("PX")
            .arg(60_000)
            .query_async(&mut conn)
            .await
            .expect("lease");
    }
    // Without a token, through t2: t1 refuses it, and the client hears why.
    match Client::connect(config(t2.ws_url(), "locked", "Eve")).await {
        Err(ClientError::Rejected { code, .. }) => assert_eq!(code, "unauthorized"),
        Err(other) => panic!("expected unauthorized, got {other}"),
        Ok(_) => panic!("a bridged join without a token was accepted"),
    }
    // With a valid token, through either node: one call.
    let ada = Client::connect(ClientConfig {
        token: Some(mint("open")),
        ..config(t1.ws_url(), "open", "Ada")
    })
    .await
    .expect("Ada joins with a token");
    let bo = Client::connect(ClientConfig {
        token: Some(mint("open")),
        ..config(t2.ws_url(), "open", "Bo")
    })
    .await
    .expect("Bo joins through t2 with a token");
    all_receive_all(&[&ada, &bo]).await;
    assert_eq!(t2.metric("sluice_cluster_bridged_sessions").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridged_hops_are_not_counted_against_the_bridging_nodes_address() {
    if !redis_server_available() {
        return;
    }
    let redis = Redis::start().await;
    // The room's node allows one session per source address; the bridging node is one
    // address for every client it bridges, so its proven hops must not count.
    let owner = Node::start("h1", &redis.url(), "limits:\n  sessions_per_source_ip: 1\n").await;
    let front = Node::start("h2", &redis.url(), "").await;
    let deadline = Instant::now() + WAIT;
    while front.metric("sluice_cluster_nodes").await < 2.0 {
        assert!(Instant::now() < deadline, "h2 never saw h1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis.wait_settled().await;
    let mut conn = redis.connection().await.expect("redis");
    let _: () = redis::cmd("SET")
        .arg("sluice:room:crowd")
        .arg("h1")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .expect("lease");
    let ada = join(&front, "crowd", "Ada").await;
    let bo = join(&front, "crowd", "Bo").await;
    let cy = join(&front, "crowd", "Cy").await;
    all_receive_all(&[&ada, &bo, &cy]).await;
    assert_eq!(owner.metric("sluice_participants").await, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_participant_limit_of_a_room_holds_across_nodes() {
    if !redis_server_available() {
        return;
    }
    let redis = Redis::start().await;
    let limit = "limits:\n  participants_per_room: 2\n";
    let mut nodes = Vec::new();
    for id in ["l1", "l2", "l3"] {
        nodes.push(Node::start(id, &redis.url(), limit).await);
    }
    for node in &nodes {
        let deadline = Instant::now() + WAIT;
        while node.metric("sluice_cluster_nodes").await < 3.0 {
            assert!(
                Instant::now() < deadline,
                "{} never saw the others",
                node.id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    redis.wait_settled().await;
    let _ada = join(&nodes[0], "pair", "Ada").await;
    let _bo = join(&nodes[1], "pair", "Bo").await;
    // The room is on one node, which counts everyone, whichever node they came through.
    match Client::connect(config(nodes[2].ws_url(), "pair", "Cy")).await {
        Err(ClientError::Rejected { code, .. }) => assert_eq!(code, "room_full"),
        Err(other) => panic!("expected room_full, got {other}"),
        Ok(_) => panic!("a third participant got into a room of two"),
    }
}

/// Like [`config`] with no periodic keyframes: a subscriber decodes a publisher only
/// once its keyframe request reached it.
fn config_without_keyframes(url: String, room: &str, name: &str) -> ClientConfig {
    ClientConfig {
        keyframe_interval: Duration::from_secs(3600),
        ..config(url, room, name)
    }
}

async fn join_without_keyframes(node: &Node, room: &str, name: &str) -> Client {
    Client::connect(config_without_keyframes(node.ws_url(), room, name))
        .await
        .unwrap_or_else(|e| panic!("{name} joins {room} through {}: {e}", node.id))
}

/// Waits until `receiver` decoded a keyframe of `from`.
async fn has_keyframe_from(receiver: &Client, from: &str) -> bool {
    let from = from.to_owned();
    receiver
        .wait_for(
            move |s| {
                s.remote
                    .get(&(from.clone(), MediaKind::Video))
                    .is_some_and(|t| t.keyframes > 0)
            },
            WAIT,
        )
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spreads_onto_a_second_node_and_keyframe_requests_cross_back() {
    if !redis_server_available() {
        return;
    }
    let redis = Redis::start().await;
    let nodes = cluster_with(&redis, &["n1", "n2"], "  room_spread_participants: 2\n").await;
    let ada = join_without_keyframes(&nodes[0], "wide", "Ada").await;
    let bo = join_without_keyframes(&nodes[0], "wide", "Bo").await;
    all_receive_all(&[&ada, &bo]).await;
    let host = owner(&redis, "wide").await;
    let (home, other) = if nodes[0].id == host {
        (&nodes[0], &nodes[1])
    } else {
        (&nodes[1], &nodes[0])
    };
    // the owner holds two participants: the next ones get their sessions on the other
    // node, their signalling still on the owner
    let cy = join_without_keyframes(other, "wide", "Cy").await;
    let di = join_without_keyframes(home, "wide", "Di").await;
    all_receive_all(&[&ada, &bo, &cy, &di]).await;
    assert_eq!(
        other.metric("sluice_rooms").await,
        0.0,
        "the room is not opened twice"
    );
    assert_eq!(home.metric("sluice_participants").await, 4.0);
    assert_eq!(
        other.metric("sluice_sessions").await,
        2.0,
        "two sessions on the other node"
    );
    assert_eq!(home.metric("sluice_sessions").await, 2.0);
    for node in [home, other] {
        let peer = if node.id == home.id {
            &other.id
        } else {
            &home.id
        };
        for event in ["sent", "received"] {
            let frames = node
                .metric(&format!(
                    "sluice_cluster_relay_frames_total{{peer=\"{peer}\",event=\"{event}\"}}"
                ))
                .await;
            assert!(frames > 0.0, "{}: no frames {event}", node.id);
        }
    }
    // Nobody sends keyframes unless asked: those on the other node decoded the owner's
    // publishers (and the reverse) because their requests crossed the relay.
    for (receiver, sender) in [(&cy, &ada), (&di, &bo), (&ada, &cy), (&bo, &di)] {
        assert!(
            has_keyframe_from(receiver, sender.participant_id()).await,
            "{} never got a keyframe of {}",
            receiver.participant_id(),
            sender.participant_id()
        );
    }
}

/// Video packets `receiver` counted as lost from `from` (after retransmissions).
fn video_loss(receiver: &Client, from: &str) -> (i64, u64) {
    receiver
        .stats()
        .remote
        .get(&(from.to_owned(), MediaKind::Video))
        .map_or((0, 0), |t| (t.lost, t.packets))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spanning_two_nodes_keeps_forwarding_when_the_relay_loses_ten_percent() {
    if !redis_server_available() {
        return;
    }
    let redis = Redis::start().await;
    // each node's relay socket behind a netsim relay losing 10 % both ways: every
    // datagram between the nodes crosses one of them
    let mut nodes = Vec::new();
    let mut paths = Vec::new();
    for (n, id) in ["n1", "n2"].into_iter().enumerate() {
        let socket = std::net::SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
        let seed = (n + 11).to_string();
        let path = ImpairedPath::start(socket, &["--loss", "0.1", "--seed", &seed]);
        let yaml = format!(
            "  room_spread_participants: 2\n  relay_listen: \"{socket}\"\n  relay_announce: \"{}\"\n",
            path.listen
        );
        nodes.push(Node::start(id, &redis.url(), &yaml).await);
        paths.push(path);
    }
    for node in &nodes {
        let deadline = Instant::now() + WAIT;
        while node.metric("sluice_cluster_nodes").await < 2.0 {
            assert!(Instant::now() < deadline, "{} never saw the other", node.id);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    redis.wait_settled().await;
    let ada = join(&nodes[0], "lossy", "Ada").await;
    let bo = join(&nodes[0], "lossy", "Bo").await;
    let cy = join(&nodes[1], "lossy", "Cy").await;
    let di = join(&nodes[1], "lossy", "Di").await;
    all_receive_all(&[&ada, &bo, &cy, &di]).await;
    let host = owner(&redis, "lossy").await;
    let other = nodes.iter().find(|n| n.id != host).expect("two nodes");
    assert_eq!(other.metric("sluice_sessions").await, 2.0);
    // the owner's publishers (Ada, Bo) cross to Cy and Di, and theirs back, for 5 s more
    let crossing = [(&cy, &ada), (&di, &bo), (&ada, &cy), (&bo, &di)];
    let before: Vec<(i64, u64)> = crossing
        .iter()
        .map(|(r, s)| video_loss(r, s.participant_id()))
        .collect();
    for (receiver, sender) in crossing {
        assert!(
            receives_more(receiver, sender.participant_id(), 40, WAIT).await,
            "{} stopped receiving {}",
            receiver.participant_id(),
            sender.participant_id()
        );
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    for ((receiver, sender), (lost0, packets0)) in crossing.iter().zip(before) {
        let (lost, packets) = video_loss(receiver, sender.participant_id());
        let (lost, packets) = (lost - lost0, packets - packets0);
        println!(
            "{} from {}: {packets} video packets, {lost} lost after repair",
            receiver.participant_id(),
            sender.participant_id()
        );
        assert!(packets > 30, "video kept flowing");
        assert!(
            (lost.max(0) as f64) < 0.05 * packets as f64,
            "NACKs answered from the sending node's cache repair most of the relay's loss"
        );
    }
    for node in &nodes {
        let rejected = node
            .metric(&format!(
                "sluice_cluster_relay_frames_total{{peer=\"{}\",event=\"rejected\"}}",
                if node.id == "n1" { "n2" } else { "n1" }
            ))
            .await;
        assert_eq!(rejected, 0.0, "{}: loss is not forgery", node.id);
    }
}
