//! Counters of what the router did, keyed by small enums (never free text), so the
//! server can export them as metrics.

/// Why a packet (or a copy for one subscriber, or a queued output) was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouterDrop {
    /// From a participant the router does not know.
    UnknownParticipant,
    /// Not a parseable RTP packet.
    MalformedRtp,
    /// SSRC not bound, and no MID extension naming one of the sender's tracks.
    UnknownSsrc,
    /// A new SSRC beyond `max_ssrcs_per_participant`.
    SsrcLimit,
    /// An RTX packet without an original sequence number (bandwidth-probe padding).
    RtxPadding,
    /// A copy held back for a subscriber that still waits for a keyframe.
    AwaitingKeyframe,
    /// The stream rewriter refused a copy (older than a source switch, or a stale source).
    Stale,
    /// The output queue was full; the oldest output was dropped.
    OutputQueueFull,
    /// An RTCP datagram (or its tail) that does not parse.
    MalformedRtcp,
    /// RTCP feedback naming an SSRC the sender neither publishes nor receives.
    RtcpUnknownSsrc,
    /// An RTX packet repeating a packet already forwarded (Chrome probes bandwidth with
    /// retransmissions of packets that arrived): forwarding it would hand subscribers the
    /// same sequence number twice, which their SRTP replay window rejects.
    RtxDuplicate,
    /// A copy for a subscriber whose answer did not accept the packet's payload type.
    PayloadTypeNotAccepted,
    /// A new SSRC of a simulcast track whose RID (or repaired RID) names no encoding the
    /// answer announced.
    UnknownRid,
}

impl RouterDrop {
    /// Every reason, in a fixed order (the order of [`RouterStats::dropped`] entries).
    pub const ALL: [RouterDrop; 13] = [
        RouterDrop::UnknownParticipant,
        RouterDrop::MalformedRtp,
        RouterDrop::UnknownSsrc,
        RouterDrop::SsrcLimit,
        RouterDrop::RtxPadding,
        RouterDrop::AwaitingKeyframe,
        RouterDrop::Stale,
        RouterDrop::OutputQueueFull,
        RouterDrop::MalformedRtcp,
        RouterDrop::RtcpUnknownSsrc,
        RouterDrop::RtxDuplicate,
        RouterDrop::PayloadTypeNotAccepted,
        RouterDrop::UnknownRid,
    ];

    /// A stable snake_case label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RouterDrop::UnknownParticipant => "unknown_participant",
            RouterDrop::MalformedRtp => "malformed_rtp",
            RouterDrop::UnknownSsrc => "unknown_ssrc",
            RouterDrop::SsrcLimit => "ssrc_limit",
            RouterDrop::RtxPadding => "rtx_padding",
            RouterDrop::AwaitingKeyframe => "awaiting_keyframe",
            RouterDrop::Stale => "stale",
            RouterDrop::OutputQueueFull => "output_queue_full",
            RouterDrop::MalformedRtcp => "malformed_rtcp",
            RouterDrop::RtcpUnknownSsrc => "rtcp_unknown_ssrc",
            RouterDrop::RtxDuplicate => "rtx_duplicate",
            RouterDrop::PayloadTypeNotAccepted => "payload_type_not_accepted",
            RouterDrop::UnknownRid => "unknown_rid",
        }
    }

    fn index(self) -> usize {
        match self {
            RouterDrop::UnknownParticipant => 0,
            RouterDrop::MalformedRtp => 1,
            RouterDrop::UnknownSsrc => 2,
            RouterDrop::SsrcLimit => 3,
            RouterDrop::RtxPadding => 4,
            RouterDrop::AwaitingKeyframe => 5,
            RouterDrop::Stale => 6,
            RouterDrop::OutputQueueFull => 7,
            RouterDrop::MalformedRtcp => 8,
            RouterDrop::RtcpUnknownSsrc => 9,
            RouterDrop::RtxDuplicate => 10,
            RouterDrop::PayloadTypeNotAccepted => 11,
            RouterDrop::UnknownRid => 12,
        }
    }
}

/// Per-reason drop counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts([u64; 13]);

impl DropCounts {
    /// Packets dropped for `reason`.
    pub fn get(&self, reason: RouterDrop) -> u64 {
        self.0.get(reason.index()).copied().unwrap_or(0)
    }

    /// Every reason with its count.
    pub fn iter(&self) -> impl Iterator<Item = (RouterDrop, u64)> + '_ {
        RouterDrop::ALL.iter().map(|&r| (r, self.get(r)))
    }

    /// Sum over all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub(crate) fn add(&mut self, reason: RouterDrop) {
        if let Some(c) = self.0.get_mut(reason.index()) {
            *c = c.wrapping_add(1);
        }
    }
}

/// A snapshot of the router's counters (monotonic since `Router::new`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// RTP packets handed to `handle_rtp`.
    pub rtp_packets_received: u64,
    /// Their bytes.
    pub rtp_bytes_received: u64,
    /// RTCP datagrams handed to `handle_rtcp`.
    pub rtcp_packets_received: u64,
    /// RTP packets queued to subscribers (one per copy, retransmissions excluded).
    pub forwarded_packets: u64,
    /// Their bytes.
    pub forwarded_bytes: u64,
    /// Dropped packets by reason.
    pub dropped: DropCounts,
    /// PLIs sent to publishers.
    pub keyframe_requests_sent: u64,
    /// PLIs and FIRs received from subscribers.
    pub keyframe_requests_received: u64,
    /// NACK packets sent to publishers.
    pub nacks_sent: u64,
    /// NACK packets received from subscribers.
    pub nacks_received: u64,
    /// Sequence numbers NACKed by subscribers that were resent from the cache.
    pub nacks_answered: u64,
    /// Sequence numbers NACKed by subscribers that were no longer (or never) cached.
    pub nacks_missed: u64,
    /// Of the resent packets, those sent as RFC 4588 RTX.
    pub rtx_sent: u64,
    /// RTX packets from publishers unwrapped back into their original stream.
    pub rtx_received: u64,
    /// Receiver reports from subscribers (counted, not forwarded).
    pub receiver_reports_received: u64,
    /// REMB packets from subscribers (counted, not forwarded).
    pub remb_received: u64,
    /// Transport-cc feedback from subscribers (counted, not forwarded).
    pub twcc_received: u64,
    /// Sender reports from publishers.
    pub sender_reports_received: u64,
    /// RR compounds sent to publishers.
    pub receiver_reports_sent: u64,
    /// SR compounds sent to subscribers.
    pub sender_reports_sent: u64,
    /// Transport-cc feedback packets sent to publishers.
    pub twcc_feedback_sent: u64,
    /// Padding packets sent to subscribers to probe their links.
    pub probe_packets_sent: u64,
    /// Video tracks paused for a subscriber whose estimate could not carry them.
    pub video_pauses: u64,
    /// REMB packets sent to publishers of a single encoding.
    pub remb_sent: u64,
    /// Packets a subscriber's pacer dropped: video that waited too long, or a full queue.
    pub paced_dropped: u64,
    /// VP8 packets of temporal layers above a subscriber's cap, left out (with the
    /// numbering closed over them) to lower its frame rate within its bandwidth.
    pub temporal_layer_skipped: u64,
    /// Audio packets sent as RED (Opus with earlier frames repeated) to lossy
    /// subscribers.
    pub red_packets_sent: u64,
    /// ULPFEC packets (in RED) sent to lossy subscribers.
    pub fec_packets_sent: u64,
    /// Sequence numbers NACKed that were FEC packets' (a lost FEC packet): answered with
    /// an empty RTX packet of the number, so the receiver stops asking (not counted in
    /// `nacks_missed`).
    pub nacks_for_fec: u64,
    /// FEC positions that left as padding: the packets they were to protect never left
    /// the pacer (dropped as late video), so only the sequence number was kept.
    pub fec_padding_sent: u64,
    /// Video packets sent in RED (because FEC may accompany them).
    pub red_video_packets_sent: u64,
}
