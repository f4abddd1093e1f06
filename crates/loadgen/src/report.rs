//! Aggregating many clients' statistics into the load generator's summary.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::stats::{ClientStats, Histogram, Phase};

/// Totals over a set of clients.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Clients started.
    pub clients: u64,
    /// Clients whose ICE+DTLS completed.
    pub handshakes_done: u64,
    /// Clients that failed (join, handshake or later).
    pub failed: u64,
    /// Time from the first offer to SRTP keys.
    pub handshake: Histogram,
    /// One-way media delay over every received packet.
    pub delay: Histogram,
    /// Per client that received media: from the start of its join (WebSocket open,
    /// `join`, offer, ICE, DTLS) to its first media packet from anyone. A joiner's wait
    /// for the picture, so it is reported per joiner, not per packet.
    pub first_media: Histogram,
    /// Media packets sent (audio + video + RTX).
    pub packets_sent: u64,
    /// Media packets received.
    pub packets_received: u64,
    /// Of those, packets decrypted (the rest were counted from their clear header).
    pub packets_decrypted: u64,
    /// Packets received twice.
    pub duplicates: u64,
    /// Packets missing by sequence number.
    pub packets_lost: i64,
    /// Largest per-track jitter, in milliseconds.
    pub max_jitter_ms: f64,
    /// Mean per-track jitter, in milliseconds.
    pub mean_jitter_ms: f64,
    /// SRTP authentication failures.
    pub decrypt_failures: u64,
    /// DTLS flights re-sent.
    pub dtls_retransmissions: u64,
}

impl Summary {
    /// Adds the clients' snapshots; `failed_connects` counts clients that never joined.
    pub fn from_stats<'a>(
        stats: impl IntoIterator<Item = &'a ClientStats>,
        failed_connects: u64,
    ) -> Self {
        let mut s = Summary {
            clients: failed_connects,
            failed: failed_connects,
            ..Summary::default()
        };
        let mut jitter_sum = 0.0;
        let mut tracks = 0u64;
        for c in stats {
            s.clients += 1;
            if let Some(t) = c.handshake_time {
                s.handshakes_done += 1;
                s.handshake.record(t);
            }
            if c.phase == Phase::Failed {
                s.failed += 1;
            }
            s.packets_sent += c.sent.audio_packets + c.sent.video_packets + c.sent.rtx_packets;
            s.decrypt_failures += c.decrypt_failures;
            if let Some(t) = c.time_to_first_media() {
                s.first_media.record(t);
            }
            s.dtls_retransmissions += c.dtls_retransmissions;
            for t in c.remote.values() {
                s.packets_received += t.packets;
                s.packets_decrypted += t.decrypted;
                s.duplicates += t.duplicates;
                s.packets_lost += t.lost.max(0);
                s.delay.merge(&t.delay);
                s.max_jitter_ms = s.max_jitter_ms.max(t.jitter_ms);
                jitter_sum += t.jitter_ms;
                tracks += 1;
            }
        }
        if tracks > 0 {
            s.mean_jitter_ms = jitter_sum / tracks as f64;
        }
        s
    }

    /// Lost packets as a percentage of expected ones.
    pub fn loss_percent(&self) -> f64 {
        let expected = self.packets_received as f64 + self.packets_lost as f64;
        if expected == 0.0 {
            0.0
        } else {
            100.0 * self.packets_lost as f64 / expected
        }
    }

    /// The summary as one JSON object (durations in milliseconds).
    pub fn to_json(&self) -> serde_json::Value {
        let ms = |h: &Histogram, q: f64| h.quantile(q).map(|d| d.as_secs_f64() * 1000.0);
        json!({
            "clients": self.clients,
            "handshakes_done": self.handshakes_done,
            "failed": self.failed,
            "handshake_ms": { "p50": ms(&self.handshake, 0.5), "p95": ms(&self.handshake, 0.95), "p99": ms(&self.handshake, 0.99) },
            "delay_ms": { "p50": ms(&self.delay, 0.5), "p99": ms(&self.delay, 0.99) },
            "first_media_ms": { "joiners": self.first_media.count(), "p50": ms(&self.first_media, 0.5), "p99": ms(&self.first_media, 0.99), "max": ms(&self.first_media, 1.0) },
            "packets_sent": self.packets_sent,
            "packets_received": self.packets_received,
            "packets_decrypted": self.packets_decrypted,
            "duplicates": self.duplicates,
            "packets_lost": self.packets_lost,
            "loss_percent": self.loss_percent(),
            "jitter_ms": { "mean": self.mean_jitter_ms, "max": self.max_jitter_ms },
            "decrypt_failures": self.decrypt_failures,
            "dtls_retransmissions": self.dtls_retransmissions,
        })
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        let fmt = milliseconds_cell;
        let mut out = String::new();
        let rows: [(&str, String); 15] = [
            ("clients", self.clients.to_string()),
            (
                "handshakes done / failed",
                format!("{} / {}", self.handshakes_done, self.failed),
            ),
            ("handshake p50 / p95 / p99", tail_cell(&self.handshake)),
            (
                "first media p50 / p99",
                format!(
                    "{} / {} ({} joiners)",
                    fmt(self.first_media.quantile(0.5)),
                    fmt(self.first_media.quantile(0.99)),
                    self.first_media.count()
                ),
            ),
            ("one-way delay p50", fmt(self.delay.quantile(0.5))),
            ("one-way delay p99", fmt(self.delay.quantile(0.99))),
            ("packets sent", self.packets_sent.to_string()),
            ("packets received", self.packets_received.to_string()),
            ("packets decrypted", self.packets_decrypted.to_string()),
            ("duplicates", self.duplicates.to_string()),
            (
                "packets lost",
                format!("{} ({:.2} %)", self.packets_lost, self.loss_percent()),
            ),
            ("jitter mean", format!("{:.2} ms", self.mean_jitter_ms)),
            ("jitter max", format!("{:.2} ms", self.max_jitter_ms)),
            ("decrypt failures", self.decrypt_failures.to_string()),
            (
                "dtls retransmissions",
                self.dtls_retransmissions.to_string(),
            ),
        ];
        for (name, value) in rows {
            let _ = writeln!(out, "{name:<28} {value}");
        }
        out
    }
}

/// The outcome of a handshake storm: many held clients released at once (or at a rate).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StormReport {
    /// Clients that tried to join.
    pub clients: u64,
    /// Clients whose join failed (never held).
    pub join_failures: u64,
    /// Clients whose handshakes were released.
    pub released: u64,
    /// Handshakes that completed (ICE + DTLS + SRTP keys).
    pub completed: u64,
    /// Handshakes that failed.
    pub failed: u64,
    /// Released handshakes neither completed nor failed when the wait ended.
    pub unfinished: u64,
    /// From the first release to the last completion.
    pub release_to_last: Option<Duration>,
    /// Completions per second over the whole storm (completed / release_to_last).
    pub completed_per_second: Option<f64>,
    /// Completions per second over the middle 80 % of completions (from the 10th to
    /// the 90th percentile of completion times): the rate without the start-up and
    /// the tail.
    pub completed_per_second_middle_80: Option<f64>,
    /// Per handshake: first ICE check sent to DTLS connected.
    pub handshake: Histogram,
    /// DTLS flights re-sent, all clients.
    pub dtls_retransmissions: u64,
}

/// Completions per second between the 10th and the 90th percentile of `offsets`
/// (completion times, sorted); `None` for fewer than 10 or a zero span.
pub fn middle_80_rate(sorted_offsets: &[Duration]) -> Option<f64> {
    let n = sorted_offsets.len();
    if n < 10 {
        return None;
    }
    let low = n / 10;
    let high = n - 1 - n / 10;
    let span = sorted_offsets
        .get(high)?
        .saturating_sub(*sorted_offsets.get(low)?);
    (!span.is_zero()).then(|| (high - low) as f64 / span.as_secs_f64())
}

impl StormReport {
    /// Builds the report from the clients' final snapshots; `released_at` is when the
    /// first handshake was released.
    pub fn new(
        stats: &[ClientStats],
        join_failures: u64,
        released: u64,
        released_at: Instant,
    ) -> Self {
        let mut report = StormReport {
            clients: stats.len() as u64 + join_failures,
            join_failures,
            released,
            ..StormReport::default()
        };
        let mut offsets = Vec::with_capacity(stats.len());
        for c in stats {
            report.dtls_retransmissions += c.dtls_retransmissions;
            match (c.connected_at, c.handshake_time) {
                (Some(at), Some(took)) => {
                    report.completed += 1;
                    report.handshake.record(took);
                    offsets.push(at.saturating_duration_since(released_at));
                }
                _ if c.phase == Phase::Failed => report.failed += 1,
                _ if matches!(c.phase, Phase::Held | Phase::Connecting) => {
                    report.unfinished += 1;
                }
                _ => {}
            }
        }
        offsets.sort_unstable();
        report.release_to_last = offsets.last().copied();
        report.completed_per_second = report
            .release_to_last
            .filter(|d| !d.is_zero())
            .map(|d| report.completed as f64 / d.as_secs_f64());
        report.completed_per_second_middle_80 = middle_80_rate(&offsets);
        report
    }

    /// The report as one JSON object (durations in milliseconds).
    pub fn to_json(&self) -> serde_json::Value {
        let ms = |h: &Histogram, q: f64| h.quantile(q).map(|d| d.as_secs_f64() * 1000.0);
        json!({
            "clients": self.clients,
            "join_failures": self.join_failures,
            "released": self.released,
            "completed": self.completed,
            "failed": self.failed,
            "unfinished": self.unfinished,
            "release_to_last_ms": self.release_to_last.map(|d| d.as_secs_f64() * 1000.0),
            "completed_per_second": self.completed_per_second,
            "completed_per_second_middle_80": self.completed_per_second_middle_80,
            "handshake_ms": { "p50": ms(&self.handshake, 0.5), "p95": ms(&self.handshake, 0.95), "p99": ms(&self.handshake, 0.99) },
            "dtls_retransmissions": self.dtls_retransmissions,
        })
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        let fmt = milliseconds_cell;
        let rate = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.0} /s"));
        let rows: [(&str, String); 8] = [
            (
                "clients / join failures",
                format!("{} / {}", self.clients, self.join_failures),
            ),
            (
                "released / completed",
                format!("{} / {}", self.released, self.completed),
            ),
            (
                "failed / unfinished",
                format!("{} / {}", self.failed, self.unfinished),
            ),
            ("release to last completion", fmt(self.release_to_last)),
            ("completed per second", rate(self.completed_per_second)),
            (
                "per second, middle 80 %",
                rate(self.completed_per_second_middle_80),
            ),
            ("handshake p50 / p95 / p99", tail_cell(&self.handshake)),
            (
                "dtls retransmissions",
                self.dtls_retransmissions.to_string(),
            ),
        ];
        let mut out = String::new();
        for (name, value) in rows {
            let _ = writeln!(out, "{name:<28} {value}");
        }
        out
    }
}

/// A table cell with the p50 / p95 / p99 of `histogram`.
fn tail_cell(histogram: &Histogram) -> String {
    format!(
        "{} / {} / {}",
        milliseconds_cell(histogram.quantile(0.5)),
        milliseconds_cell(histogram.quantile(0.95)),
        milliseconds_cell(histogram.quantile(0.99))
    )
}

/// A table cell for an optional duration: "12.3 ms" or "-".
fn milliseconds_cell(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{MediaKind, TrackStats};

    #[test]
    fn summary_adds_clients_and_computes_loss() {
        let mut a = ClientStats {
            phase: Phase::Connected,
            handshake_time: Some(Duration::from_millis(40)),
            ..ClientStats::default()
        };
        a.sent.audio_packets = 10;
        let mut track = TrackStats {
            packets: 90,
            lost: 10,
            jitter_ms: 2.0,
            ..TrackStats::default()
        };
        track.delay.record(Duration::from_millis(5));
        a.remote.insert(("p-b".into(), MediaKind::Audio), track);
        let b = ClientStats {
            phase: Phase::Failed,
            ..ClientStats::default()
        };
        let s = Summary::from_stats([&a, &b], 1);
        // a has no join start: no time to first media
        assert_eq!(s.first_media.count(), 0);
        let b = ClientStats {
            phase: Phase::Failed,
            ..ClientStats::default()
        };
        let s = Summary::from_stats([&a, &b], 1);
        assert_eq!((s.clients, s.handshakes_done, s.failed), (3, 1, 2));
        assert_eq!(
            (s.packets_sent, s.packets_received, s.packets_lost),
            (10, 90, 10)
        );
        assert!((s.loss_percent() - 10.0).abs() < 1e-9);
        let json = s.to_json();
        assert_eq!(json["clients"], 3);
        assert!(json["handshake_ms"]["p50"].as_f64().unwrap() >= 40.0);
        assert!(s.table().contains("packets lost"));
    }

    #[test]
    fn time_to_first_media_is_per_joiner_from_join_to_the_first_packet_of_any_track() {
        let start = Instant::now();
        // joined at `start + join_ms`, connected 100 ms later, first packets 30 and
        // 10 ms after that: 110 ms to first media whatever the join time
        let joiner = |join_ms: u64| {
            let mut c = ClientStats {
                phase: Phase::Connected,
                join_started_at: Some(start + Duration::from_millis(join_ms)),
                connected_at: Some(start + Duration::from_millis(join_ms + 100)),
                ..ClientStats::default()
            };
            for (who, after) in [("p-a", 30), ("p-b", 10)] {
                c.remote.insert(
                    (who.into(), MediaKind::Video),
                    TrackStats {
                        packets: 5,
                        first_packet_after: Some(Duration::from_millis(after)),
                        ..TrackStats::default()
                    },
                );
            }
            c
        };
        let slow = {
            let mut c = joiner(0);
            c.connected_at = Some(start + Duration::from_millis(900));
            c
        };
        let silent = ClientStats {
            phase: Phase::Connected,
            join_started_at: Some(start),
            connected_at: Some(start),
            ..ClientStats::default()
        };
        let clients = [joiner(0), joiner(5000), slow, silent];
        assert_eq!(
            clients[1].time_to_first_media(),
            Some(Duration::from_millis(110))
        );
        let s = Summary::from_stats(&clients, 0);
        assert_eq!(
            s.first_media.count(),
            3,
            "the client without media is not counted"
        );
        let json = s.to_json();
        assert_eq!(json["first_media_ms"]["joiners"], 3);
        let p50 = json["first_media_ms"]["p50"].as_f64().unwrap();
        let p99 = json["first_media_ms"]["p99"].as_f64().unwrap();
        assert!((100.0..130.0).contains(&p50), "{p50}");
        assert!((850.0..1000.0).contains(&p99), "{p99}");
        assert!(s.table().contains("first media p50 / p99"));
    }

    #[test]
    fn middle_80_rate_ignores_the_first_and_last_tenth() {
        // 100 completions: 10 at once at the start, 80 evenly over 8 s, 10 stragglers.
        let mut offsets = vec![Duration::ZERO; 10];
        offsets.extend((0..80).map(|i| Duration::from_millis(100 * i)));
        offsets.extend((0..10).map(|i| Duration::from_secs(60 + i)));
        offsets.sort();
        let rate = middle_80_rate(&offsets).unwrap();
        // from offsets[10] (0 s) to offsets[89] (7.9 s): 79 intervals
        assert!((rate - 79.0 / 7.9).abs() < 1e-9, "{rate}");
        assert_eq!(middle_80_rate(&offsets[..9]), None);
    }

    #[test]
    fn storm_report_counts_outcomes_and_rates() {
        let start = Instant::now();
        let done = |ms: u64| ClientStats {
            phase: Phase::Connected,
            handshake_time: Some(Duration::from_millis(ms)),
            connected_at: Some(start + Duration::from_millis(ms)),
            ..ClientStats::default()
        };
        let failed = ClientStats {
            phase: Phase::Failed,
            ..ClientStats::default()
        };
        let held = ClientStats {
            phase: Phase::Held,
            ..ClientStats::default()
        };
        let stats = [done(100), done(200), done(400), failed, held];
        let r = StormReport::new(&stats, 2, 5, start);
        assert_eq!((r.clients, r.join_failures, r.released), (7, 2, 5));
        assert_eq!((r.completed, r.failed, r.unfinished), (3, 1, 1));
        assert_eq!(r.release_to_last, Some(Duration::from_millis(400)));
        assert!((r.completed_per_second.unwrap() - 7.5).abs() < 1e-9);
        assert_eq!(r.completed_per_second_middle_80, None);
        assert_eq!(r.handshake.count(), 3);
        assert!(r.table().contains("per second, middle 80 %"));
        assert_eq!(r.to_json()["completed"], 3);
    }
}
