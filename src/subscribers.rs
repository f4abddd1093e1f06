//! What every subscriber receives, for operators: per-worker gauges with bounded labels
//! (how many subscribers are estimated, limited, paused; which encodings are forwarded)
//! and, when `http.debug_endpoints` is on, one JSON record per subscriber at
//! `/debug/subscribers` (its estimate, what got through, its allocation and what each of
//! its tracks is sent).
//!
//! The workers own the routers and share nothing with HTTP but this board: each worker
//! replaces its own part once a second, and a request reads the last parts.

use std::sync::Mutex;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

/// One subscriber's state as its worker last published it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubscriberSnapshot {
    /// Its `participant_id` on the wire (`p-N`).
    pub participant: String,
    pub room: String,
    pub worker: usize,
    /// The bandwidth estimate toward it; `null` before its first transport-cc feedback.
    pub estimate_bps: Option<u64>,
    /// What its feedback acknowledged, per second.
    pub acked_bps: Option<u64>,
    pub rtt_ms: u64,
    /// Share of packets its feedback reported lost (0..1), when known.
    pub loss_fraction: Option<f64>,
    /// Probe clusters whose result the estimator used.
    pub probe_results: u64,
    pub allocated_bps: u64,
    pub desired_bps: u64,
    pub paused_tracks: usize,
    pub reduced_frame_rate_tracks: usize,
    /// Earlier Opus frames repeated in each audio packet (RED); 0: plain Opus.
    pub audio_redundancy: u8,
    /// Video packets per ULPFEC packet added to its video because its link loses
    /// packets; 0: no FEC.
    pub video_fec_interval: u8,
    pub tracks: Vec<TrackSnapshot>,
}

/// One track a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackSnapshot {
    /// Whose track (`p-N`).
    pub publisher: String,
    /// `audio` or `video`.
    pub kind: &'static str,
    /// Encodings the track has (1 without simulcast).
    pub layers: usize,
    /// The encoding forwarded now (0 = lowest); `null` while paused or before the
    /// first keyframe.
    pub layer: Option<usize>,
    /// The encoding it switches to at that encoding's next keyframe.
    pub target: usize,
    /// The highest encoding its tile asked for.
    pub max_layer: usize,
    /// The highest temporal layer forwarded, when the bandwidth limits it.
    pub temporal_cap: Option<u8>,
    pub paused: bool,
}

type WorkerLabel = [(&'static str, usize); 1];
type LayerLabel = [(&'static str, String); 2];

/// The last snapshots of every worker, and gauges derived from them.
#[derive(Debug, Default)]
pub struct SubscriberBoard {
    per_worker: Mutex<Vec<Vec<SubscriberSnapshot>>>,
    estimated: Family<WorkerLabel, Gauge>,
    estimate_bps: Family<WorkerLabel, Gauge>,
    allocated_bps: Family<WorkerLabel, Gauge>,
    paused_tracks: Family<WorkerLabel, Gauge>,
    reduced_tracks: Family<WorkerLabel, Gauge>,
    with_red: Family<WorkerLabel, Gauge>,
    with_fec: Family<WorkerLabel, Gauge>,
    video_by_layer: Family<LayerLabel, Gauge>,
}

/// Encodings named in `sluice_subscriber_video_tracks{layer}`; higher ones are counted
/// with the last (a track has at most three).
const LAYER_LABELS: [&str; 3] = ["0", "1", "2"];

impl SubscriberBoard {
    /// A board whose gauges are registered in `r` (with the `sluice_` prefix of `r`).
    pub fn register(r: &mut Registry) -> Self {
        let board = Self::default();
        r.register(
            "subscribers_estimated",
            "Subscribers with a bandwidth estimate (they send transport-cc feedback)",
            board.estimated.clone(),
        );
        r.register(
            "subscriber_estimate_bps",
            "Sum of the bandwidth estimates toward the subscribers of a worker",
            board.estimate_bps.clone(),
        );
        r.register(
            "subscriber_allocated_bps",
            "Sum of what the allocation gives the subscribers of a worker",
            board.allocated_bps.clone(),
        );
        r.register(
            "subscriber_paused_video_tracks",
            "Video tracks paused for subscribers whose estimate cannot carry them",
            board.paused_tracks.clone(),
        );
        r.register(
            "subscriber_reduced_frame_rate_tracks",
            "Video tracks sent at a reduced frame rate (upper temporal layers left out)",
            board.reduced_tracks.clone(),
        );
        r.register(
            "subscribers_with_audio_redundancy",
            "Subscribers sent their audio as RED (earlier Opus frames repeated) because their link loses packets",
            board.with_red.clone(),
        );
        r.register(
            "subscribers_with_video_fec",
            "Subscribers sent ULPFEC packets with their video (in RED) because their link loses packets",
            board.with_fec.clone(),
        );
        r.register(
            "subscriber_video_tracks",
            "Video tracks sent to subscribers, by the encoding forwarded (0 = lowest; none = paused or waiting for a keyframe)",
            board.video_by_layer.clone(),
        );
        board
    }

    /// Replaces worker `worker`'s part and updates its gauges.
    pub fn publish(&self, worker: usize, snapshots: Vec<SubscriberSnapshot>) {
        let label = [("worker", worker)];
        let estimated = snapshots
            .iter()
            .filter(|s| s.estimate_bps.is_some())
            .count();
        let estimate: u64 = snapshots.iter().filter_map(|s| s.estimate_bps).sum();
        let allocated: u64 = snapshots.iter().map(|s| s.allocated_bps).sum();
        let paused: usize = snapshots.iter().map(|s| s.paused_tracks).sum();
        let reduced: usize = snapshots.iter().map(|s| s.reduced_frame_rate_tracks).sum();
        self.estimated.get_or_create(&label).set(gauge(estimated));
        self.estimate_bps.get_or_create(&label).set(gauge(estimate));
        self.allocated_bps
            .get_or_create(&label)
            .set(gauge(allocated));
        self.paused_tracks.get_or_create(&label).set(gauge(paused));
        self.reduced_tracks
            .get_or_create(&label)
            .set(gauge(reduced));
        let with_red = snapshots.iter().filter(|s| s.audio_redundancy > 0).count();
        self.with_red.get_or_create(&label).set(gauge(with_red));
        let with_fec = snapshots
            .iter()
            .filter(|s| s.video_fec_interval > 0)
            .count();
        self.with_fec.get_or_create(&label).set(gauge(with_fec));
        let mut by_layer = [0usize; LAYER_LABELS.len() + 1];
        for track in snapshots
            .iter()
            .flat_map(|s| &s.tracks)
            .filter(|t| t.kind == "video")
        {
            let slot = track
                .layer
                .map_or(LAYER_LABELS.len(), |l| l.min(LAYER_LABELS.len() - 1));
            if let Some(count) = by_layer.get_mut(slot) {
                *count += 1;
            }
        }
        for (name, count) in LAYER_LABELS.iter().chain(&["none"]).zip(by_layer) {
            self.video_by_layer
                .get_or_create(&[
                    ("worker", worker.to_string()),
                    ("layer", (*name).to_owned()),
                ])
                .set(gauge(count));
        }
        let mut parts = self
            .per_worker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if parts.len() <= worker {
            parts.resize_with(worker + 1, Vec::new);
        }
        if let Some(part) = parts.get_mut(worker) {
            *part = snapshots;
        }
    }

    /// Every subscriber of every worker, ordered by room and participant.
    pub fn snapshot(&self) -> Vec<SubscriberSnapshot> {
        let parts = self
            .per_worker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut all: Vec<SubscriberSnapshot> = parts.iter().flatten().cloned().collect();
        all.sort_by(|a, b| (&a.room, &a.participant).cmp(&(&b.room, &b.participant)));
        all
    }
}

fn gauge(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriber(
        participant: &str,
        estimate: Option<u64>,
        layer: Option<usize>,
    ) -> SubscriberSnapshot {
        SubscriberSnapshot {
            participant: participant.into(),
            room: "r".into(),
            worker: 0,
            estimate_bps: estimate,
            acked_bps: None,
            rtt_ms: 40,
            loss_fraction: Some(0.01),
            probe_results: 0,
            allocated_bps: 300_000,
            desired_bps: 900_000,
            paused_tracks: usize::from(layer.is_none()),
            reduced_frame_rate_tracks: 0,
            audio_redundancy: 0,
            video_fec_interval: 0,
            tracks: vec![TrackSnapshot {
                publisher: "p-9".into(),
                kind: "video",
                layers: 3,
                layer,
                target: 0,
                max_layer: 2,
                temporal_cap: None,
                paused: layer.is_none(),
            }],
        }
    }

    #[test]
    fn gauges_count_each_workers_last_part_and_the_snapshot_orders_everyone() {
        let mut registry = Registry::with_prefix("sluice");
        let board = SubscriberBoard::register(&mut registry);
        board.publish(1, vec![subscriber("p-3", Some(500_000), Some(1))]);
        board.publish(
            0,
            vec![
                subscriber("p-2", Some(400_000), None),
                subscriber("p-1", None, Some(2)),
            ],
        );
        // a worker's new part replaces its old one
        board.publish(1, vec![subscriber("p-3", Some(600_000), Some(0))]);
        let all = board.snapshot();
        let names: Vec<&str> = all.iter().map(|s| s.participant.as_str()).collect();
        assert_eq!(names, ["p-1", "p-2", "p-3"]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("sluice_subscribers_estimated{worker=\"0\"} 1"),
            "{text}"
        );
        assert!(text.contains("sluice_subscriber_estimate_bps{worker=\"1\"} 600000"));
        assert!(text.contains("sluice_subscriber_paused_video_tracks{worker=\"0\"} 1"));
        assert!(text.contains("sluice_subscriber_video_tracks{worker=\"0\",layer=\"none\"} 1"));
        assert!(text.contains("sluice_subscriber_video_tracks{worker=\"0\",layer=\"2\"} 1"));
        assert!(text.contains("sluice_subscriber_video_tracks{worker=\"1\",layer=\"1\"} 0"));
        assert!(text.contains("sluice_subscriber_video_tracks{worker=\"1\",layer=\"0\"} 1"));
    }
}
