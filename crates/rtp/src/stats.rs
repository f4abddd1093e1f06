//! Reception and sending statistics for RTCP reports (RFC 3550 appendix A.1, A.3, A.8).

use std::time::{Duration, Instant};

use crate::rtcp::ReportBlock;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// Converts a wall-clock time (since the Unix epoch; the caller reads the clock) into a
/// 64-bit NTP timestamp: seconds since 1900 in the high 32 bits, fraction in the low 32.
pub fn ntp_from_unix(since_unix_epoch: Duration) -> u64 {
    let secs = since_unix_epoch.as_secs().wrapping_add(NTP_UNIX_OFFSET_S);
    let frac = (u64::from(since_unix_epoch.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The middle 32 bits of an NTP timestamp: the compact form echoed as LSR (RFC 3550 6.4.1).
pub fn ntp_middle_32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A duration in 1/65536 s units, saturating, as used by DLSR.
fn duration_to_q16(d: Duration) -> u32 {
    let v = d.as_nanos().saturating_mul(65_536) / 1_000_000_000;
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Forward jump beyond which a sequence number is treated as a restart candidate.
const MAX_DROPOUT: u16 = 3000;
/// Backward distance within which a sequence number is a late packet, not a restart.
const MAX_MISORDER: u16 = 100;

/// Per incoming stream reception statistics, producing RR/SR report blocks.
#[derive(Debug, Clone)]
pub struct ReceiveStats {
    ssrc: u32,
    initialized: bool,
    max_seq: u16,
    /// Count of sequence number cycles, shifted left by 16 (as in RFC 3550 A.1).
    cycles: u64,
    base_seq: u64,
    /// The sequence number after a large jump; a second packet continuing it resyncs.
    bad_seq: Option<u16>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Reference instant for converting arrival times to timestamp units.
    epoch: Option<Instant>,
    last_transit: Option<u32>,
    /// Interarrival jitter scaled by 16 (RFC 3550 A.8).
    jitter_q4: u64,
    last_sr: u32,
    last_sr_arrival: Option<Instant>,
}

impl ReceiveStats {
    /// Statistics for the stream `ssrc`.
    pub fn new(ssrc: u32) -> Self {
        Self {
            ssrc,
            initialized: false,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            epoch: None,
            last_transit: None,
            jitter_q4: 0,
            last_sr: 0,
            last_sr_arrival: None,
        }
    }

    fn init_seq(&mut self, seq: u16) {
        self.initialized = true;
        self.base_seq = u64::from(seq);
        self.max_seq = seq;
        self.bad_seq = None;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// Records one packet. Returns false if it was not counted: a large sequence jump is
    /// only believed (and the statistics restarted) when the next packet continues it.
    pub fn on_packet(
        &mut self,
        seq: u16,
        rtp_ts: u32,
        arrival: Instant,
        clock_rate_hz: u32,
    ) -> bool {
        if !self.initialized {
            self.init_seq(seq);
        } else {
            let udelta = seq.wrapping_sub(self.max_seq);
            if udelta < MAX_DROPOUT {
                if seq < self.max_seq {
                    self.cycles += 1 << 16;
                }
                self.max_seq = seq;
            } else if u32::from(udelta) <= (1 << 16) - u32::from(MAX_MISORDER) {
                if self.bad_seq == Some(seq) {
                    // Two sequential packets after a jump: the source restarted.
                    self.init_seq(seq);
                    self.last_transit = None;
                } else {
                    self.bad_seq = Some(seq.wrapping_add(1));
                    return false;
                }
            }
            // else: duplicate or reordered, counted below
        }
        self.received += 1;
        self.update_jitter(rtp_ts, arrival, clock_rate_hz);
        true
    }

    fn update_jitter(&mut self, rtp_ts: u32, arrival: Instant, clock_rate_hz: u32) {
        let epoch = *self.epoch.get_or_insert(arrival);
        let elapsed = arrival.saturating_duration_since(epoch);
        let arrival_ticks =
            elapsed.as_nanos().saturating_mul(u128::from(clock_rate_hz)) / 1_000_000_000;
        let transit = (arrival_ticks as u32).wrapping_sub(rtp_ts);
        if let Some(last) = self.last_transit {
            let d = u64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            // J += (|D| - J) / 16, in fixed point scaled by 16
            self.jitter_q4 = (self.jitter_q4 + d).saturating_sub((self.jitter_q4 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    /// Records the arrival of a sender report from this source, for LSR/DLSR.
    pub fn on_sender_report(&mut self, ntp_middle_32: u32, arrival: Instant) {
        self.last_sr = ntp_middle_32;
        self.last_sr_arrival = Some(arrival);
    }

    /// Extended highest sequence number received (cycles << 16 | highest).
    pub fn extended_highest_seq(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    /// Packets expected minus packets received since the first packet (can be negative
    /// with duplicates).
    pub fn cumulative_lost(&self) -> i64 {
        if !self.initialized {
            return 0;
        }
        self.expected() as i64 - self.received as i64
    }

    fn expected(&self) -> u64 {
        (self.extended_highest_seq() + 1).saturating_sub(self.base_seq)
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        u32::try_from(self.jitter_q4 >> 4).unwrap_or(u32::MAX)
    }

    /// Packets received (including duplicates).
    pub fn packets_received(&self) -> u64 {
        self.received
    }

    /// Builds the report block for this source and starts a new fraction-lost interval.
    pub fn report_block(&mut self, now: Instant) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval as u64) << 8)
                .checked_div(expected_interval)
                .unwrap_or(0)
                .min(255) as u8
        };
        let delay_since_last_sr = self
            .last_sr_arrival
            .map(|t| duration_to_q16(now.saturating_duration_since(t)))
            .unwrap_or(0);
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: self.cumulative_lost().clamp(-0x80_0000, 0x7F_FFFF) as i32,
            extended_highest_seq: self.extended_highest_seq() as u32,
            jitter: self.jitter(),
            last_sr: self.last_sr,
            delay_since_last_sr,
        }
    }
}

/// The sender-info fields of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// 64-bit NTP time of the report.
    pub ntp: u64,
    /// RTP timestamp corresponding to `ntp`.
    pub rtp_timestamp: u32,
    /// Packets sent.
    pub packet_count: u32,
    /// Payload octets sent.
    pub octet_count: u32,
}

/// Per outgoing stream counters and the RTP clock needed to write SRs to subscribers.
#[derive(Debug, Clone)]
pub struct SenderStats {
    clock_rate_hz: u32,
    packet_count: u32,
    octet_count: u32,
    last_sent: Option<(u32, Instant)>,
}

impl SenderStats {
    /// Counters for a stream with the given RTP clock rate.
    pub fn new(clock_rate_hz: u32) -> Self {
        Self {
            clock_rate_hz,
            packet_count: 0,
            octet_count: 0,
            last_sent: None,
        }
    }

    /// Records one sent packet: its output timestamp, payload length (without header and
    /// padding, per RFC 3550 6.4.1) and send time.
    pub fn on_packet(&mut self, rtp_ts: u32, payload_len: usize, now: Instant) {
        self.packet_count = self.packet_count.wrapping_add(1);
        self.octet_count = self.octet_count.wrapping_add(payload_len as u32);
        self.last_sent = Some((rtp_ts, now));
    }

    /// Extrapolates the RTP timestamp at `now` from the last packet sent (a stream's RTP
    /// clock runs at `clock_rate_hz` against wall time).
    pub fn rtp_timestamp_at(&self, now: Instant) -> Option<u32> {
        let (ts, at) = self.last_sent?;
        let elapsed = now.saturating_duration_since(at);
        let ticks = elapsed
            .as_nanos()
            .saturating_mul(u128::from(self.clock_rate_hz))
            / 1_000_000_000;
        Some(ts.wrapping_add(ticks as u32))
    }

    /// Packets sent so far (wrapping).
    pub fn packet_count(&self) -> u32 {
        self.packet_count
    }

    /// Payload octets sent so far (wrapping).
    pub fn octet_count(&self) -> u32 {
        self.octet_count
    }

    /// The sender info of an SR taken at `now_ntp`, whose RTP time is `rtp_ts_now`
    /// (from [`rtp_timestamp_at`](Self::rtp_timestamp_at) or the publisher's SR mapped
    /// through the stream rewriter).
    pub fn sender_report(&self, now_ntp: u64, rtp_ts_now: u32) -> SenderInfo {
        SenderInfo {
            ntp: now_ntp,
            rtp_timestamp: rtp_ts_now,
            packet_count: self.packet_count,
            octet_count: self.octet_count,
        }
    }
}
