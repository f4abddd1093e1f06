//! Aggregating many clients' statistics into the load generator's summary.

use std::fmt::Write as _;
use std::time::Duration;

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
    /// Media packets sent (audio + video + RTX).
    pub packets_sent: u64,
    /// Media packets received.
    pub packets_received: u64,
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
            s.dtls_retransmissions += c.dtls_retransmissions;
            for t in c.remote.values() {
                s.packets_received += t.packets;
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
            "packets_sent": self.packets_sent,
            "packets_received": self.packets_received,
            "packets_lost": self.packets_lost,
            "loss_percent": self.loss_percent(),
            "jitter_ms": { "mean": self.mean_jitter_ms, "max": self.max_jitter_ms },
            "decrypt_failures": self.decrypt_failures,
            "dtls_retransmissions": self.dtls_retransmissions,
        })
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        let fmt = |d: Option<Duration>| {
            d.map_or_else(
                || "-".to_owned(),
                |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0),
            )
        };
        let mut out = String::new();
        let rows: [(&str, String); 12] = [
            ("clients", self.clients.to_string()),
            (
                "handshakes done / failed",
                format!("{} / {}", self.handshakes_done, self.failed),
            ),
            (
                "handshake p50 / p95 / p99",
                format!(
                    "{} / {} / {}",
                    fmt(self.handshake.quantile(0.5)),
                    fmt(self.handshake.quantile(0.95)),
                    fmt(self.handshake.quantile(0.99))
                ),
            ),
            ("one-way delay p50", fmt(self.delay.quantile(0.5))),
            ("one-way delay p99", fmt(self.delay.quantile(0.99))),
            ("packets sent", self.packets_sent.to_string()),
            ("packets received", self.packets_received.to_string()),
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
}
