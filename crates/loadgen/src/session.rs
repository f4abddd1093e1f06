//! The media half of a client, sans-IO: what to send when, and what arrived.
//!
//! Fed plaintext RTP/RTCP (after SRTP) and time; produces plaintext RTP/RTCP to protect
//! and send. It publishes audio every 20 ms and video frames at the configured rate,
//! keeps a retransmission cache for its video and answers NACKs with RTX, forces a
//! keyframe on PLI/FIR, and for every remote track counts packets, bytes, loss, jitter
//! and one-way delay, NACKs gaps in video and sends receiver reports.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use sluice_rtp::nack::{NackConfig, NackGenerator};
use sluice_rtp::{
    is_keyframe, set_extension, write_nack, write_pli, write_receiver_report, write_rtx, Codec,
    ReceiveStats, RetransmissionCache, RtcpIter, RtcpPacket, RtpHeader,
};
use sluice_signal::sdp::codecs::{EXT_TRANSPORT_CC_ID, VP8_PT, VP8_RTX_PT};
use sluice_signal::sdp::Kind;

use crate::transport::RtpAction;

use crate::clear::ClearRtp;
use crate::media::{AudioSource, Stamp, VideoSource, AUDIO_PACKET_INTERVAL};
use crate::remote::RemoteTrack;
use crate::sequence::SequenceLoss;
use crate::stats::{ClientStats, MediaKind, SentStats, TrackStats};

/// Least time between PLIs for a video track that has not shown a keyframe yet.
pub const PLI_INTERVAL: Duration = Duration::from_millis(500);

/// Most remote tracks remembered (their statistics stay after the publisher left).
pub const MAX_REMOTE_TRACKS: usize = 512;

/// Our own streams and how they are paced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Audio SSRC when publishing audio.
    pub audio_ssrc: Option<u32>,
    /// Video (SSRC, RTX SSRC) when publishing video.
    pub video_ssrcs: Option<(u32, u32)>,
    /// SSRC used as the sender of our RTCP (RR, NACK) when we publish nothing.
    pub rtcp_ssrc: u32,
    /// Video bitrate.
    pub video_bitrate_bps: u64,
    /// Video frame rate.
    pub video_fps: u32,
    /// Periodic keyframes.
    pub keyframe_interval: Duration,
    /// Receiver report interval.
    pub rtcp_interval: Duration,
    /// How often gaps are checked for NACKs.
    pub nack_interval: Duration,
    /// Decrypt one received media packet in this many per remote stream (1 = all);
    /// the others are counted from their clear header only. RTX packets and video
    /// before its first keyframe are always decrypted.
    pub decrypt_every: u32,
}

/// Largest sequence distance from the last decrypted packet of a stream before the
/// next one is decrypted whatever the sampling says: webrtc-srtp guesses the rollover
/// counter from that distance, which must stay below 2^15.
pub const MAX_UNDECRYPTED_SEQUENCE_GAP: u16 = 1 << 13;

/// A packet for the transport to protect and send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// Plain RTP.
    Rtp(Vec<u8>),
    /// Plain (compound or reduced-size) RTCP.
    Rtcp(Vec<u8>),
}

struct RemoteState {
    participant_id: String,
    kind: Kind,
    ssrc: u32,
    rtx_ssrc: Option<u32>,
    active: bool,
    receive: ReceiveStats,
    nack: Option<NackGenerator>,
    last_pli: Option<Instant>,
    /// Loss over every packet (decrypted or counted from the clear header).
    sequence: SequenceLoss,
    /// Loss of the track's earlier SSRCs.
    lost_before: u64,
    /// Packets since the last one decrypted, modulo `decrypt_every`.
    since_decrypt: u32,
    /// Sequence number of the last packet sent to decryption.
    last_decrypted_seq: Option<u16>,
    stats: TrackStats,
}

/// The header-level counting shared by decrypted and clear-only packets.
fn count_packet(
    remote: &mut RemoteState,
    seq: u16,
    timestamp: u32,
    payload_len: usize,
    now: Instant,
    started: Instant,
) {
    let clock_rate = match remote.kind {
        Kind::Audio => 48_000,
        Kind::Video => 90_000,
    };
    remote.receive.on_packet(seq, timestamp, now, clock_rate);
    if let Some(nack) = remote.nack.as_mut() {
        nack.on_packet(seq, now);
    }
    remote.sequence.on_packet(seq);
    let stats = &mut remote.stats;
    stats.packets += 1;
    stats.bytes += payload_len as u64;
    stats.lost = i64::try_from(remote.lost_before + remote.sequence.lost()).unwrap_or(i64::MAX);
    stats.duplicates = remote.sequence.duplicates();
    stats.jitter_ms = f64::from(remote.receive.jitter()) * 1000.0 / f64::from(clock_rate);
    if stats.first_packet_after.is_none() {
        stats.first_packet_after = Some(now.saturating_duration_since(started));
    }
}

/// The media state machine of one client.
pub struct MediaSession {
    config: SessionConfig,
    publisher_id: String,
    started: Instant,
    unix_us_at_start: u64,
    audio: Option<AudioSource>,
    video: Option<(VideoSource, u32)>,
    rtx_seq: u16,
    rtx_cache: RetransmissionCache,
    transport_seq: u16,
    next_audio: Option<Instant>,
    next_video: Option<Instant>,
    next_rtcp: Instant,
    next_nack: Instant,
    remotes: Vec<RemoteState>,
    by_ssrc: HashMap<u32, usize>,
    frame: Vec<Vec<u8>>,
    scratch: Vec<u16>,
    out: VecDeque<Outgoing>,
    sent: SentStats,
    rtcp_received: u64,
    unknown_ssrc_packets: u64,
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession")
            .field("publisher_id", &self.publisher_id)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl MediaSession {
    /// Takes our microphone's RFC 6464 level from `level` (see
    /// [`AudioSource::set_level_source`]).
    pub fn set_audio_level_source(&mut self, level: std::sync::Arc<std::sync::atomic::AtomicU8>) {
        if let Some(audio) = self.audio.as_mut() {
            audio.set_level_source(level);
        }
    }

    /// A session that starts sending at `now`. `unix_us_at_now` is the wall clock at
    /// `now` in microseconds since the Unix epoch; send stamps are derived from it.
    pub fn new(
        config: SessionConfig,
        publisher_id: &str,
        now: Instant,
        unix_us_at_now: u64,
    ) -> Self {
        let seed = config.rtcp_ssrc;
        let audio = config
            .audio_ssrc
            .map(|ssrc| AudioSource::new(ssrc, "0", seed as u16, seed));
        let video = config.video_ssrcs.map(|(ssrc, rtx)| {
            (
                VideoSource::new(
                    ssrc,
                    "1",
                    (seed >> 16) as u16,
                    seed.rotate_left(7),
                    config.video_fps,
                    config.video_bitrate_bps,
                    config.keyframe_interval,
                ),
                rtx,
            )
        });
        Self {
            next_audio: audio.as_ref().map(|_| now),
            next_video: video.as_ref().map(|_| now),
            next_rtcp: now + config.rtcp_interval,
            next_nack: now + config.nack_interval,
            config,
            publisher_id: publisher_id.to_owned(),
            started: now,
            unix_us_at_start: unix_us_at_now,
            audio,
            video,
            rtx_seq: seed as u16 ^ 0x5A5A,
            rtx_cache: RetransmissionCache::new(512, 512 * 1200),
            transport_seq: 1,
            remotes: Vec::new(),
            by_ssrc: HashMap::new(),
            frame: Vec::new(),
            scratch: Vec::new(),
            out: VecDeque::new(),
            sent: SentStats::default(),
            rtcp_received: 0,
            unknown_ssrc_packets: 0,
        }
    }

    fn unix_us(&self, now: Instant) -> u64 {
        self.unix_us_at_start
            + u64::try_from(now.saturating_duration_since(self.started).as_micros()).unwrap_or(0)
    }

    fn rtcp_sender(&self) -> u32 {
        self.config
            .audio_ssrc
            .or(self.config.video_ssrcs.map(|(s, _)| s))
            .unwrap_or(self.config.rtcp_ssrc)
    }

    /// Whether `ssrc` belongs to a track in the latest offer (only those are decrypted:
    /// the SRTP library creates per-SSRC state before authenticating).
    pub fn knows_ssrc(&self, ssrc: u32) -> bool {
        self.by_ssrc.contains_key(&ssrc)
    }

    /// Installs the tracks of the latest offer. Tracks no longer offered keep their
    /// statistics but stop being received and reported.
    pub fn set_remote_tracks(&mut self, tracks: &[RemoteTrack]) {
        self.by_ssrc.clear();
        for remote in &mut self.remotes {
            remote.active = false;
        }
        for track in tracks {
            let existing = self
                .remotes
                .iter()
                .position(|r| r.participant_id == track.participant_id && r.kind == track.kind);
            let index = match existing {
                Some(i) => i,
                None if self.remotes.len() < MAX_REMOTE_TRACKS => {
                    self.remotes.push(RemoteState {
                        participant_id: track.participant_id.clone(),
                        kind: track.kind,
                        ssrc: track.ssrc,
                        rtx_ssrc: None,
                        active: true,
                        receive: ReceiveStats::new(track.ssrc),
                        nack: None,
                        last_pli: None,
                        sequence: SequenceLoss::default(),
                        lost_before: 0,
                        since_decrypt: 0,
                        last_decrypted_seq: None,
                        stats: TrackStats::default(),
                    });
                    self.remotes.len() - 1
                }
                None => continue,
            };
            let Some(remote) = self.remotes.get_mut(index) else {
                continue;
            };
            if remote.ssrc != track.ssrc {
                remote.receive = ReceiveStats::new(track.ssrc);
                remote.nack = None;
                remote.lost_before += remote.sequence.lost();
                remote.sequence = SequenceLoss::default();
                remote.since_decrypt = 0;
                remote.last_decrypted_seq = None;
            }
            remote.ssrc = track.ssrc;
            remote.rtx_ssrc = track.rtx_ssrc;
            remote.active = true;
            remote.stats.ssrc = track.ssrc;
            if track.kind == Kind::Video && remote.nack.is_none() {
                remote.nack = Some(NackGenerator::new(NackConfig::default()));
            }
            self.by_ssrc.insert(track.ssrc, index);
            if let Some(rtx) = track.rtx_ssrc {
                self.by_ssrc.insert(rtx, index);
            }
        }
    }

    /// Counts an SRTP authentication failure of a packet claiming `ssrc`.
    pub fn on_decrypt_failure(&mut self, ssrc: u32) {
        match self
            .by_ssrc
            .get(&ssrc)
            .and_then(|&i| self.remotes.get_mut(i))
        {
            Some(remote) => remote.stats.decrypt_failures += 1,
            None => self.unknown_ssrc_packets += 1,
        }
    }

    /// Decides from a packet's clear header whether to decrypt it: unknown SSRCs are
    /// dropped; RTX (its original sequence number is encrypted) and video that has not
    /// shown a keyframe yet (keyframes are recognised in the payload) are decrypted;
    /// otherwise one packet in `decrypt_every` per stream, and at the latest every
    /// [`MAX_UNDECRYPTED_SEQUENCE_GAP`] sequence numbers.
    pub fn rtp_action(&mut self, clear: &ClearRtp) -> RtpAction {
        let every = self.config.decrypt_every.max(1);
        let Some(remote) = self
            .by_ssrc
            .get(&clear.ssrc)
            .and_then(|&i| self.remotes.get_mut(i))
        else {
            return RtpAction::Drop;
        };
        let must = every == 1
            || Some(clear.ssrc) == remote.rtx_ssrc
            || (remote.kind == Kind::Video && remote.stats.keyframes == 0)
            || remote.since_decrypt == 0
            || remote.last_decrypted_seq.is_none_or(|last| {
                clear.sequence_number.wrapping_sub(last) >= MAX_UNDECRYPTED_SEQUENCE_GAP
            });
        if must {
            remote.since_decrypt = 1 % every;
            remote.last_decrypted_seq = Some(clear.sequence_number);
            RtpAction::Decrypt
        } else {
            remote.since_decrypt = (remote.since_decrypt + 1) % every;
            RtpAction::Count
        }
    }

    /// Counts one packet that was not decrypted, from its clear header: packets,
    /// bytes, loss, jitter and NACKs, but no delay, keyframes or attribution.
    pub fn handle_clear_rtp(&mut self, now: Instant, clear: &ClearRtp) {
        let started = self.started;
        let Some(remote) = self
            .by_ssrc
            .get(&clear.ssrc)
            .and_then(|&i| self.remotes.get_mut(i))
        else {
            self.unknown_ssrc_packets += 1;
            return;
        };
        if Some(clear.ssrc) == remote.rtx_ssrc {
            return; // its original sequence number is in the encrypted payload
        }
        count_packet(
            remote,
            clear.sequence_number,
            clear.timestamp,
            clear.payload_len,
            now,
            started,
        );
    }

    /// Handles one decrypted RTP packet.
    pub fn handle_rtp(&mut self, now: Instant, packet: &[u8]) {
        let Ok(header) = RtpHeader::parse(packet) else {
            return;
        };
        let Some(&index) = self.by_ssrc.get(&header.ssrc()) else {
            self.unknown_ssrc_packets += 1;
            return;
        };
        let unix_us = self.unix_us(now);
        let started = self.started;
        let sender = self.rtcp_sender();
        let Some(remote) = self.remotes.get_mut(index) else {
            return;
        };
        let is_rtx = Some(header.ssrc()) == remote.rtx_ssrc;
        let (seq, payload) = if is_rtx {
            if header.payload_type() != VP8_RTX_PT {
                return;
            }
            let payload = header.payload();
            let (Some(hi), Some(lo), Some(rest)) =
                (payload.first(), payload.get(1), payload.get(2..))
            else {
                return; // RTX padding probe without an OSN
            };
            remote.stats.rtx_packets += 1;
            (u16::from_be_bytes([*hi, *lo]), rest)
        } else {
            (header.sequence_number(), header.payload())
        };
        count_packet(remote, seq, header.timestamp(), payload.len(), now, started);
        let stats = &mut remote.stats;
        stats.decrypted += 1;
        if remote.kind == Kind::Video
            && header.payload_type() == VP8_PT
            && is_keyframe(Codec::Vp8, payload)
        {
            stats.keyframes += 1;
        }
        // Like a browser's decoder: video that starts without a keyframe asks for one.
        let wants_keyframe = remote.kind == Kind::Video
            && stats.keyframes == 0
            && remote
                .last_pli
                .is_none_or(|t| now.saturating_duration_since(t) >= PLI_INTERVAL);
        if wants_keyframe {
            remote.last_pli = Some(now);
            stats.plis_sent += 1;
            let mut pli = Vec::with_capacity(12);
            write_pli(sender, remote.ssrc, &mut pli);
            self.sent.rtcp_packets += 1;
            self.out.push_back(Outgoing::Rtcp(pli));
        }
        if let Some(stamp) = Stamp::find(payload) {
            if stamp.publisher_id != remote.participant_id {
                stats.misattributed += 1;
            }
            let delay_us = unix_us.saturating_sub(stamp.send_time_unix_us);
            stats.delay.record(Duration::from_micros(delay_us));
        }
    }

    /// Handles one decrypted RTCP datagram.
    pub fn handle_rtcp(&mut self, now: Instant, datagram: &[u8]) {
        for packet in RtcpIter::new(datagram) {
            let Ok(packet) = packet else { break };
            self.rtcp_received += 1;
            let our_video = self.video.as_ref().map(|(v, _)| v.ssrc);
            match packet {
                RtcpPacket::Nack(nack) if Some(nack.media_ssrc) == our_video => {
                    for seq in nack.lost().take(512) {
                        self.sent.nacks_received += 1;
                        self.retransmit(seq);
                    }
                }
                RtcpPacket::Pli { media_ssrc, .. } if Some(media_ssrc) == our_video => {
                    self.request_keyframe();
                }
                RtcpPacket::Fir(fir) if fir.entries().any(|e| Some(e.ssrc) == our_video) => {
                    self.request_keyframe();
                }
                RtcpPacket::SenderReport(sr) => {
                    if let Some(remote) = self
                        .by_ssrc
                        .get(&sr.sender_ssrc)
                        .and_then(|&i| self.remotes.get_mut(i))
                    {
                        remote.receive.on_sender_report(sr.ntp_middle_32(), now);
                    }
                }
                _ => {}
            }
        }
    }

    fn request_keyframe(&mut self) {
        if let Some((video, _)) = self.video.as_mut() {
            video.request_keyframe();
            self.sent.keyframe_requests += 1;
        }
    }

    fn retransmit(&mut self, seq: u16) {
        let Some((_, rtx_ssrc)) = self.video else {
            return;
        };
        let Some(original) = self.rtx_cache.get(seq) else {
            return;
        };
        let mut packet = Vec::with_capacity(original.len() + 2);
        if write_rtx(original, rtx_ssrc, VP8_RTX_PT, self.rtx_seq, &mut packet).is_err() {
            return;
        }
        self.rtx_seq = self.rtx_seq.wrapping_add(1);
        self.stamp_transport_seq(&mut packet);
        self.sent.rtx_packets += 1;
        self.sent.bytes += packet.len() as u64;
        self.out.push_back(Outgoing::Rtp(packet));
    }

    fn stamp_transport_seq(&mut self, packet: &mut [u8]) {
        set_extension(
            packet,
            EXT_TRANSPORT_CC_ID,
            &self.transport_seq.to_be_bytes(),
        );
        self.transport_seq = self.transport_seq.wrapping_add(1);
    }

    /// Lets time pass: generates due media, NACKs and receiver reports.
    pub fn handle_timeout(&mut self, now: Instant) {
        let stamp = Stamp {
            send_time_unix_us: self.unix_us(now),
            publisher_id: self.publisher_id.clone(),
        };
        // Audio: one packet per 20 ms; after a stall, skip ahead instead of bursting.
        while let (Some(due), Some(audio)) = (self.next_audio, self.audio.as_mut()) {
            if due > now {
                break;
            }
            let mut packet = Vec::with_capacity(128);
            audio.next_packet(&stamp, &mut packet);
            let next = due + AUDIO_PACKET_INTERVAL;
            self.next_audio = Some(if next + AUDIO_PACKET_INTERVAL * 5 < now {
                now
            } else {
                next
            });
            self.stamp_transport_seq(&mut packet);
            self.sent.audio_packets += 1;
            self.sent.bytes += packet.len() as u64;
            self.out.push_back(Outgoing::Rtp(packet));
        }
        if let (Some(due), Some((video, _))) = (self.next_video, self.video.as_mut()) {
            if due <= now {
                let interval = video.frame_interval();
                video.next_frame(now, &stamp, &mut self.frame);
                let next = due + interval;
                self.next_video = Some(if next < now { now + interval } else { next });
                self.sent.video_frames = video.frames_sent;
                self.sent.keyframes = video.keyframes_sent;
                let mut frame = std::mem::take(&mut self.frame);
                for packet in &mut frame {
                    self.stamp_transport_seq(packet);
                    if let Ok(h) = RtpHeader::parse(packet) {
                        self.rtx_cache.insert(h.sequence_number(), packet);
                    }
                    self.sent.video_packets += 1;
                    self.sent.bytes += packet.len() as u64;
                    self.out.push_back(Outgoing::Rtp(packet.clone()));
                }
                self.frame = frame;
            }
        }
        if now >= self.next_nack {
            self.next_nack = now + self.config.nack_interval;
            self.send_nacks(now);
        }
        if now >= self.next_rtcp {
            self.next_rtcp = now + self.config.rtcp_interval;
            self.send_receiver_reports(now);
        }
    }

    fn send_nacks(&mut self, now: Instant) {
        let sender = self.rtcp_sender();
        let mut buffer = Vec::new();
        for remote in self.remotes.iter_mut().filter(|r| r.active) {
            let Some(nack) = remote.nack.as_mut() else {
                continue;
            };
            self.scratch.clear();
            nack.poll_nacks_into(now, &mut self.scratch);
            remote.stats.nacked += self.scratch.len() as u64;
            let mut rest = self.scratch.as_slice();
            while !rest.is_empty() {
                let used = write_nack(sender, remote.ssrc, rest, &mut buffer);
                rest = rest.get(used.max(1)..).unwrap_or(&[]);
            }
        }
        if !buffer.is_empty() {
            self.sent.rtcp_packets += 1;
            self.out.push_back(Outgoing::Rtcp(buffer));
        }
    }

    fn send_receiver_reports(&mut self, now: Instant) {
        let blocks: Vec<_> = self
            .remotes
            .iter_mut()
            .filter(|r| r.active && r.receive.packets_received() > 0)
            .map(|r| r.receive.report_block(now))
            .collect();
        if blocks.is_empty() {
            return;
        }
        let sender = self.rtcp_sender();
        for chunk in blocks.chunks(sluice_rtp::rtcp::MAX_REPORT_BLOCKS) {
            let mut buffer = Vec::with_capacity(8 + chunk.len() * 24);
            write_receiver_report(sender, chunk, &mut buffer);
            self.sent.rtcp_packets += 1;
            self.out.push_back(Outgoing::Rtcp(buffer));
        }
    }

    /// The next moment [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Instant {
        [
            self.next_audio,
            self.next_video,
            Some(self.next_nack),
            Some(self.next_rtcp),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.next_rtcp)
    }

    /// The next packet to protect and send.
    pub fn poll_output(&mut self) -> Option<Outgoing> {
        self.out.pop_front()
    }

    /// A number that changes whenever a counter copied by
    /// [`fill_stats`](Self::fill_stats) does (packets in and out, RTCP, failures).
    pub fn activity(&self) -> u64 {
        let sent = self.sent.audio_packets
            + self.sent.video_packets
            + self.sent.rtx_packets
            + self.sent.rtcp_packets
            + self.sent.nacks_received
            + self.sent.keyframe_requests;
        let received: u64 = self
            .remotes
            .iter()
            .map(|r| r.stats.packets + r.stats.decrypt_failures + r.stats.nacked)
            .sum();
        sent + received + self.rtcp_received + self.unknown_ssrc_packets
    }

    /// Copies the session's counters into `stats`.
    pub fn fill_stats(&self, stats: &mut ClientStats) {
        stats.sent = self.sent;
        stats.rtcp_received = self.rtcp_received;
        stats.unknown_ssrc_packets = self.unknown_ssrc_packets;
        stats.decrypt_failures = self.remotes.iter().map(|r| r.stats.decrypt_failures).sum();
        stats.remote = self
            .remotes
            .iter()
            .map(|r| {
                (
                    (r.participant_id.clone(), MediaKind::from(r.kind)),
                    r.stats.clone(),
                )
            })
            .collect();
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
