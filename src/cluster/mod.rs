//! Cluster mode: several Sluice nodes share one Redis for membership and room
//! placement (docs/cluster.md). Media never touches Redis: a room lives on exactly one
//! node, and a participant whose WebSocket reached another node is bridged there
//! ([`bridge`]) while its media goes straight to the room's node.
//!
//! What lives in Redis (all keys under `sluice:`):
//!
//! | key                  | value                         | lifetime                       |
//! |----------------------|-------------------------------|--------------------------------|
//! | `sluice:nodes`       | set of node ids               | pruned when a heartbeat is gone |
//! | `sluice:node:{id}`   | JSON [`NodeRecord`]           | `heartbeat_ttl_ms`, renewed every beat |
//! | `sluice:room:{room}` | owning node id (the lease)    | `heartbeat_ttl_ms`, renewed by the owner while the room is open |
//!
//! A node that dies stops renewing both: its heartbeat and its leases expire together,
//! and the next join of one of its rooms claims the room anew. Claims and renewals are
//! Lua scripts, so two nodes placing the same room at once agree on one owner.

pub mod bridge;
pub mod directory;
pub mod media_control;
pub mod node_relay;
pub mod relay_link;
pub mod relay_wire;
pub mod spread;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::config::ClusterConfig;
use crate::metrics::{Metrics, Placement as PlacementMetric};
use crate::shutdown::Shutdown;
use crate::signaling::rooms::Rooms;

/// The set of node ids.
pub const NODES_KEY: &str = "sluice:nodes";

/// The heartbeat key of node `id`.
pub fn node_key(id: &str) -> String {
    format!("sluice:node:{id}")
}

/// The lease key of `room`.
pub fn room_key(room: &str) -> String {
    format!("sluice:room:{room}")
}

/// Present while the cluster settles after Redis started empty (first start, or a
/// restart that lost every key): no room without a lease is placed until it expires.
pub const SETTLING_KEY: &str = "sluice:settling";
/// Exists as long as Redis keeps its data; its absence means Redis started empty.
pub const EPOCH_KEY: &str = "sluice:epoch";

/// Header naming the node that bridges a connection (the internal hop).
pub const NODE_HEADER: &str = "x-sluice-cluster-node";
/// Header carrying that node's per-boot key, checked against its heartbeat record.
pub const KEY_HEADER: &str = "x-sluice-cluster-key";

/// Claims `KEYS[1]` for `ARGV[1]` (TTL `ARGV[2]` ms) if it is free or still held by
/// `ARGV[3]` (an owner the caller found dead or draining; empty for none). Returns the
/// owner after the call: the claimant when it won, else whoever holds the lease.
const CLAIM_LUA: &str = r"
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return current
";

/// Renews the leases `KEYS` for `ARGV[1]` (TTL `ARGV[2]` ms), re-claiming those that
/// expired (after a Redis restart, say). Returns the rooms held by another node.
const RENEW_LUA: &str = r"
local conflicts = {}
for _, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if current == false or current == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    table.insert(conflicts, key)
  end
end
return conflicts
";

/// Deletes the leases `KEYS` that `ARGV[1]` still holds.
const RELEASE_LUA: &str = r"
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 0
";

/// Compares two secrets without an early exit on the first differing byte.
fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Starts the settling period when Redis has just started empty (`KEYS[1]` the epoch
/// key missing; `KEYS[2]` the settling key, `ARGV[1]` its length in ms). Returns 1
/// while settling. Rooms open on some node have no lease in an empty Redis until that
/// node's next heartbeat re-claims them; placing one of them meanwhile would open a
/// second copy elsewhere. Every live node beats within the settling period (one
/// heartbeat TTL), so after it every lease that should exist exists again.
const SETTLE_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], '1')
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
  return 1
end
return redis.call('EXISTS', KEYS[2])
";

/// What a node publishes in its heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: String,
    pub internal_url: String,
    pub participants: i64,
    pub rooms: i64,
    pub packets_per_second: f64,
    pub busy_ratio: f64,
    pub draining: bool,
    /// Random per process start: a bridging node proves it is this node by sending it.
    pub key: String,
    /// Where the other nodes send relay datagrams (rooms that span nodes).
    #[serde(default)]
    pub relay_addr: Option<SocketAddr>,
    /// SHA-256 fingerprint of this node's certificate: the only one its relay links
    /// accept from it.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// The host candidates of each of its workers, for sessions placed there by
    /// another node.
    #[serde(default)]
    pub workers: Vec<Vec<SocketAddr>>,
}

/// What this node publishes about its media plane for rooms that span nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaRecord {
    /// The relay socket's address as the other nodes reach it.
    pub relay_addr: Option<SocketAddr>,
    /// The certificate fingerprint.
    pub fingerprint: Option<String>,
    /// Each worker's host candidates.
    pub workers: Vec<Vec<SocketAddr>>,
}

impl NodeRecord {
    /// Ordering key for placement: fewest participants, then least busy, then fewest
    /// rooms; the id breaks ties so every node picks the same one.
    fn load_key(&self) -> (i64, u64, i64, &str) {
        // busy_ratio is in 0..=1; in thousandths it orders as an integer.
        let busy = (self.busy_ratio.clamp(0.0, 1.0) * 1000.0) as u64;
        (self.participants, busy, self.rooms, self.id.as_str())
    }
}

/// Where a join goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Serve it here.
    Local,
    /// Bridge it to this node.
    Remote {
        node_id: String,
        internal_url: String,
    },
}

/// Why a join cannot be placed now.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within cluster.redis_timeout_ms")]
    Timeout,
    #[error("no live node accepts new rooms")]
    NoNode,
    #[error("the lease of the room changed hands repeatedly")]
    Contended,
    #[error("redis started empty: waiting for the nodes to re-claim their rooms")]
    Settling,
}

/// This node's membership of the cluster.
pub struct Cluster {
    config: ClusterConfig,
    redis: ConnectionManager,
    key: String,
    /// No new room is placed here; rooms open here keep their leases and their joins.
    draining: AtomicBool,
    /// The end of draining: the leases are released and the rooms still open are moved
    /// (their participants rejoin and are placed on other nodes).
    moving: AtomicBool,
    metrics: Arc<Metrics>,
    rooms: Arc<Rooms>,
    claim: Script,
    renew: Script,
    release: Script,
    settle: Script,
    /// Rooms whose lease this node renewed at the last beat (released once closed).
    held: Mutex<HashSet<String>>,
    /// Forwarded-packet count and time of the last beat (for packets per second).
    last_forwarded: Mutex<Option<(u64, Instant)>>,
    /// What the heartbeat publishes about the media plane.
    media: Mutex<MediaRecord>,
    /// The live members seen at the last heartbeat (for spreading rooms and the relay).
    peers: Mutex<Vec<NodeRecord>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.config.node_id)
            .field("draining", &self.draining.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects lazily to Redis (a node starts, and serves its own rooms, while Redis is
    /// down) and returns the membership; [`Cluster::run`] keeps the heartbeat going.
    pub fn new(
        config: ClusterConfig,
        metrics: Arc<Metrics>,
        rooms: Arc<Rooms>,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let client = redis::Client::open(config.redis_url.as_str())?;
        // One quick retry, not the default six with backoff: a join waits on this, and
        // during an outage it must be told so within about redis_timeout_ms.
        let manager_config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200))
            .set_connection_timeout(Some(config.redis_timeout()))
            .set_response_timeout(Some(config.redis_timeout()));
        let redis = ConnectionManager::new_lazy_with_config(client, manager_config)?;
        let mut bytes = [0_u8; 16];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Client, "no randomness")))?;
        let key = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Arc::new(Self {
            config,
            redis,
            key,
            draining: AtomicBool::new(false),
            moving: AtomicBool::new(false),
            metrics,
            rooms,
            claim: Script::new(CLAIM_LUA),
            renew: Script::new(RENEW_LUA),
            release: Script::new(RELEASE_LUA),
            settle: Script::new(SETTLE_LUA),
            held: Mutex::new(HashSet::new()),
            last_forwarded: Mutex::new(None),
            media: Mutex::new(MediaRecord::default()),
            peers: Mutex::new(Vec::new()),
        }))
    }

    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Sets what the heartbeat publishes about the media plane.
    pub fn set_media_record(&self, record: MediaRecord) {
        *self.media.lock().unwrap_or_else(|p| p.into_inner()) = record;
    }

    /// The other live members as of the last heartbeat.
    pub fn peers(&self) -> Vec<NodeRecord> {
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|p| p.id != self.config.node_id)
            .cloned()
            .collect()
    }

    /// The node a room owned here spreads onto: none until this node holds
    /// `cluster.room_spread_participants`; then the least loaded other live node that
    /// is not draining and runs a relay.
    pub fn spread_target(&self, participants_here: usize) -> Option<NodeRecord> {
        let limit = self.config.room_spread_participants;
        if limit == 0 || participants_here < limit {
            return None;
        }
        self.peers()
            .into_iter()
            .filter(|p| !p.draining && p.relay_addr.is_some() && !p.workers.is_empty())
            .min_by(|a, b| a.load_key().cmp(&b.load_key()))
    }

    /// The per-boot key this node sends on the internal hop.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    fn is_moving(&self) -> bool {
        self.moving.load(Ordering::Acquire)
    }

    /// Whether a join for `room` is served by this node's copy of it: never while
    /// moving, and while draining only for a room still open here (its call goes on).
    fn serves_here(&self, room: &str) -> bool {
        !self.is_moving() && (!self.is_draining() || self.rooms.contains(room))
    }

    /// Runs one Redis request under `cluster.redis_timeout_ms`, counting failures.
    async fn redis<T, F>(&self, request: F) -> Result<T, PlaceError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let result = match tokio::time::timeout(self.config.redis_timeout(), request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(PlaceError::Redis(error)),
            Err(_) => Err(PlaceError::Timeout),
        };
        match &result {
            Ok(_) => {
                self.metrics.cluster.redis_up.set(1);
            }
            Err(_) => {
                self.metrics.cluster.redis_up.set(0);
                self.metrics.cluster.redis_errors.inc();
            }
        }
        result
    }

    /// The live members' records (their heartbeats exist); prunes ids whose heartbeat
    /// expired from the set.
    pub async fn members(&self) -> Result<Vec<NodeRecord>, PlaceError> {
        let mut redis = self.redis.clone();
        let ids: Vec<String> = self.redis(redis.smembers(NODES_KEY)).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| node_key(id)).collect();
        let values: Vec<Option<String>> = self.redis(redis.mget(&keys)).await?;
        let mut live = Vec::with_capacity(ids.len());
        let mut gone = Vec::new();
        for (id, value) in ids.into_iter().zip(values) {
            match value.and_then(|text| serde_json::from_str::<NodeRecord>(&text).ok()) {
                Some(record) => live.push(record),
                None => gone.push(id),
            }
        }
        if !gone.is_empty() {
            let _: Result<i64, _> = self.redis(redis.srem(NODES_KEY, &gone)).await;
        }
        Ok(live)
    }

    async fn record(&self, id: &str) -> Result<Option<NodeRecord>, PlaceError> {
        let mut redis = self.redis.clone();
        let value: Option<String> = self.redis(redis.get(node_key(id))).await?;
        Ok(value.and_then(|text| serde_json::from_str(&text).ok()))
    }

    /// Whether `node_id` / `key` name a live member (the internal hop's proof).
    pub async fn verify_peer(&self, node_id: &str, key: &str) -> bool {
        match self.record(node_id).await {
            Ok(Some(record)) => equal_in_constant_time(record.key.as_bytes(), key.as_bytes()),
            _ => false,
        }
    }

    /// Where a join for `room` goes: the room's live owner, or the least-loaded live
    /// node that accepts new rooms, which this call claims the room for.
    ///
    /// With Redis unreachable the room is served here if it is open here (its calls go
    /// on), and refused otherwise: placing it blindly could open a second copy of a room
    /// that lives on another node.
    pub async fn place(&self, room: &str) -> Result<Placement, PlaceError> {
        self.place_avoiding(room, None).await
    }

    /// Like [`Cluster::place`], treating node `dead` as gone although its heartbeat has
    /// not expired yet: its HTTP port refused our connection, so its process is not
    /// running, and waiting out its TTL would only delay the room's return.
    pub async fn place_avoiding(
        &self,
        room: &str,
        dead: Option<&str>,
    ) -> Result<Placement, PlaceError> {
        match self.place_with_redis(room, dead).await {
            Ok((placement, outcome)) => {
                self.metrics.cluster.placed(outcome);
                Ok(placement)
            }
            Err(error) if self.rooms.contains(room) && !matches!(error, PlaceError::NoNode) => {
                tracing::warn!(room, %error, "cannot place through redis: serving the room open here");
                self.metrics
                    .cluster
                    .placed(PlacementMetric::LocalWithoutRedis);
                Ok(Placement::Local)
            }
            Err(error) => {
                self.metrics.cluster.placed(PlacementMetric::Unavailable);
                Err(error)
            }
        }
    }

    async fn place_with_redis(
        &self,
        room: &str,
        dead: Option<&str>,
    ) -> Result<(Placement, PlacementMetric), PlaceError> {
        let key = room_key(room);
        let me = self.node_id();
        for _ in 0..3 {
            let mut redis = self.redis.clone();
            let owner: Option<String> = self.redis(redis.get(&key)).await?;
            let mut members = self.members().await?;
            members.retain(|m| Some(m.id.as_str()) != dead);
            let mut expected = String::new();
            if let Some(owner) = owner {
                if owner == me && self.serves_here(room) {
                    return Ok((Placement::Local, PlacementMetric::Local));
                }
                // A live owner keeps the room even while it drains: it holds the lease
                // only as long as the room's call goes on there, and releases it when
                // it moves the room.
                match members.iter().find(|m| m.id == owner && owner != me) {
                    Some(record) => {
                        let placement = Placement::Remote {
                            node_id: record.id.clone(),
                            internal_url: record.internal_url.clone(),
                        };
                        return Ok((placement, PlacementMetric::Remote));
                    }
                    // Dead, or this node moving the room away: its lease is taken over.
                    None => expected = owner,
                }
            }
            if expected.is_empty() && self.settling().await? {
                return Err(PlaceError::Settling);
            }
            let candidate = members
                .iter()
                .filter(|m| !m.draining)
                .min_by(|a, b| a.load_key().cmp(&b.load_key()))
                .ok_or(PlaceError::NoNode)?;
            let ttl_ms = self.config.heartbeat_ttl_ms;
            let winner: String = self
                .redis(
                    self.claim
                        .key(&key)
                        .arg(&candidate.id)
                        .arg(ttl_ms)
                        .arg(&expected)
                        .invoke_async(&mut redis),
                )
                .await?;
            if winner != candidate.id {
                // Another node placed the room first: go with its choice.
                continue;
            }
            tracing::info!(room, node = %candidate.id, previous = %expected, "room placed");
            let placement = if candidate.id == me {
                Placement::Local
            } else {
                Placement::Remote {
                    node_id: candidate.id.clone(),
                    internal_url: candidate.internal_url.clone(),
                }
            };
            return Ok((placement, PlacementMetric::Claimed));
        }
        Err(PlaceError::Contended)
    }

    /// Whether the cluster is settling after Redis started empty (starting the settling
    /// period if this call is the first to notice).
    async fn settling(&self) -> Result<bool, PlaceError> {
        let mut redis = self.redis.clone();
        let settling: i64 = self
            .redis(
                self.settle
                    .key(EPOCH_KEY)
                    .key(SETTLING_KEY)
                    .arg(self.config.heartbeat_ttl_ms)
                    .invoke_async(&mut redis),
            )
            .await?;
        Ok(settling == 1)
    }

    /// This node's heartbeat record now.
    fn record_now(&self) -> NodeRecord {
        let load = self.metrics.load();
        let media = self.media.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let now = Instant::now();
        let packets_per_second = {
            let mut last = self
                .last_forwarded
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let rate = match *last {
                Some((count, at)) if now > at => {
                    load.forwarded_packets.saturating_sub(count) as f64
                        / now.duration_since(at).as_secs_f64()
                }
                _ => 0.0,
            };
            *last = Some((load.forwarded_packets, now));
            rate
        };
        NodeRecord {
            id: self.config.node_id.clone(),
            internal_url: self.config.internal_url.trim_end_matches('/').to_owned(),
            participants: load.participants,
            rooms: load.rooms,
            packets_per_second,
            busy_ratio: load.busy_ratio,
            draining: self.is_draining(),
            key: self.key.clone(),
            relay_addr: media.relay_addr,
            fingerprint: media.fingerprint,
            workers: media.workers,
        }
    }

    /// One heartbeat: publish the record, renew the leases of the open rooms and
    /// release those of rooms closed since the last beat.
    pub async fn beat(&self) -> Result<(), PlaceError> {
        let mut redis = self.redis.clone();
        let record = self.record_now();
        let text = serde_json::to_string(&record).unwrap_or_default();
        let ttl_ms = self.config.heartbeat_ttl_ms;
        let mut pipe = redis::pipe();
        pipe.set(node_key(&record.id), text)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .sadd(NODES_KEY, &record.id)
            .ignore();
        self.redis(pipe.query_async::<()>(&mut redis)).await?;
        // Noticing an empty Redis here starts the settling period before any join does.
        self.settling().await?;

        let open: HashSet<String> = self.rooms.names().into_iter().collect();
        if !open.is_empty() && !self.is_moving() {
            let mut invocation = self.renew.prepare_invoke();
            invocation.arg(&record.id).arg(ttl_ms);
            for room in &open {
                invocation.key(room_key(room));
            }
            let conflicts: Vec<String> = self.redis(invocation.invoke_async(&mut redis)).await?;
            for key in conflicts {
                self.metrics.cluster.lease_conflicts.inc();
                // The lease holder's copy wins: ours is emptied, its participants
                // rejoin and are placed there, and the room is one call again.
                let room = key.strip_prefix("sluice:room:").unwrap_or(&key);
                let moved = self.rooms.move_out(room);
                tracing::warn!(%key, moved, "room open here is leased to another node: its participants here are moved there");
            }
        }
        let closed: Vec<String> = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            let closed = held.difference(&open).cloned().collect();
            *held = open;
            closed
        };
        self.release_leases(&closed).await?;

        let members = self.members().await?;
        self.metrics.cluster.nodes.set(members.len() as i64);
        *self.peers.lock().unwrap_or_else(|p| p.into_inner()) = members;
        Ok(())
    }

    async fn release_leases(&self, rooms: &[String]) -> Result<(), PlaceError> {
        if rooms.is_empty() {
            return Ok(());
        }
        let mut redis = self.redis.clone();
        let mut invocation = self.release.prepare_invoke();
        invocation.arg(self.node_id());
        for room in rooms {
            invocation.key(room_key(room));
        }
        self.redis(invocation.invoke_async::<i64>(&mut redis))
            .await
            .map(drop)
    }

    /// Beats every `heartbeat_interval_ms` until shutdown begins. A failed beat is
    /// logged once per outage; the next one that succeeds re-registers the node and
    /// re-claims the leases of the rooms it still hosts.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        let mut ticker = tokio::time::interval(self.config.heartbeat_interval());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut healthy = true;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.begun() => return,
            }
            match self.beat().await {
                Ok(()) if !healthy => {
                    healthy = true;
                    tracing::info!(
                        node = self.node_id(),
                        "redis reachable again: node re-registered"
                    );
                }
                Ok(()) => {}
                Err(error) if healthy => {
                    healthy = false;
                    tracing::warn!(node = self.node_id(), %error, "cluster heartbeat failed: calls go on, new rooms cannot be placed");
                }
                Err(_) => {}
            }
        }
    }

    /// Draining (SIGTERM): no new room is placed here from now on. Publishes the flag
    /// at once and hands back the leases, so that participants who rejoin elsewhere
    /// open their room on another node instead of waiting for the lease to expire.
    pub async fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        if let Err(error) = self.beat().await {
            tracing::warn!(%error, "cannot publish draining to redis");
        }
        tracing::info!(
            node = self.node_id(),
            "node draining: no new rooms are placed here, rooms open here go on"
        );
    }

    /// Ends draining: releases every lease, so that the participants told `bye` next
    /// rejoin their rooms on other nodes.
    pub async fn move_rooms(&self) {
        self.draining.store(true, Ordering::Release);
        self.moving.store(true, Ordering::Release);
        let mut rooms: Vec<String> = self.rooms.names();
        rooms.extend(self.held.lock().unwrap_or_else(|p| p.into_inner()).drain());
        if let Err(error) = self.release_leases(&rooms).await {
            tracing::warn!(%error, "cannot release room leases");
        }
        tracing::info!(
            node = self.node_id(),
            rooms = rooms.len(),
            "node moving its rooms: leases released"
        );
    }

    /// Leaves the cluster on a clean exit: the heartbeat goes now, not at its TTL.
    pub async fn leave(&self) {
        let mut redis = self.redis.clone();
        let id = self.node_id().to_owned();
        let _: Result<i64, _> = self.redis(redis.del(node_key(&id))).await;
        let _: Result<i64, _> = self.redis(redis.srem(NODES_KEY, &id)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, participants: i64, busy_ratio: f64, rooms: i64) -> NodeRecord {
        NodeRecord {
            id: id.to_owned(),
            internal_url: String::new(),
            participants,
            rooms,
            packets_per_second: 0.0,
            busy_ratio,
            draining: false,
            key: String::new(),
            relay_addr: None,
            fingerprint: None,
            workers: Vec::new(),
        }
    }

    #[test]
    fn placement_orders_by_participants_then_busy_ratio_then_rooms_then_id() {
        let nodes = [
            record("a", 3, 0.0, 0),
            record("b", 1, 0.9, 0),
            record("c", 1, 0.2, 5),
            record("d", 1, 0.2, 1),
            record("e", 1, 0.2, 1),
        ];
        let best = nodes.iter().min_by(|x, y| x.load_key().cmp(&y.load_key()));
        assert_eq!(best.map(|n| n.id.as_str()), Some("d"));
    }

    #[test]
    fn a_busy_ratio_out_of_range_or_nan_does_not_break_the_order() {
        let nan = record("x", 0, f64::NAN, 0);
        let huge = record("y", 0, 7.0, 0);
        assert!(nan.load_key() < huge.load_key());
    }

    #[test]
    fn keys_compare_equal_only_when_identical() {
        assert!(equal_in_constant_time(b"abc", b"abc"));
        assert!(!equal_in_constant_time(b"abc", b"abd"));
        assert!(!equal_in_constant_time(b"abc", b"abcd"));
        assert!(!equal_in_constant_time(b"", b"a"));
    }

    #[test]
    fn key_names_follow_the_documented_layout() {
        assert_eq!(node_key("n1"), "sluice:node:n1");
        assert_eq!(room_key("r"), "sluice:room:r");
    }
}
