//! Synthetic media: Opus-like audio and VP8-like video RTP packets (unprotected).
//!
//! The payloads are not decodable media, but they look like it where the SFU looks:
//! the VP8 payload descriptor and frame tag carry the correct keyframe bit (checked
//! with `sluice_rtp::is_keyframe`), a frame spans packets with the marker on its last
//! one, and every packet has the MID (id 1) and transport-wide-cc (id 3) header
//! extensions. Each payload also carries a [`Stamp`]: the send time and the
//! publisher's id, so a receiver can measure one-way delay and attribute the packet.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_signal::sdp::codecs::{
    EXT_AUDIO_LEVEL_ID, EXT_MID_ID, EXT_TRANSPORT_CC_ID, OPUS_PT, VP8_PT,
};

/// Marks the start of a [`Stamp`] inside a payload.
pub const STAMP_MAGIC: [u8; 4] = *b"SLG1";
/// Longest publisher id a stamp carries, in bytes.
pub const MAX_PUBLISHER_ID_LEN: usize = 64;
/// Largest RTP payload a generated packet carries, in bytes (packets stay below ~1150).
pub const MAX_PAYLOAD_BYTES: usize = 1100;
/// Audio packet interval (Opus 20 ms frames, 50 packets/s).
pub const AUDIO_PACKET_INTERVAL: Duration = Duration::from_millis(20);
/// Audio payload length in bytes.
pub const AUDIO_PAYLOAD_BYTES: usize = 80;
/// Where the stamp is searched in a payload: after any codec header this crate writes.
const STAMP_SEARCH_BYTES: usize = 24;

/// Send time and publisher, embedded in every payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// Microseconds since the Unix epoch at sending (a clock shared by every client
    /// on one machine).
    pub send_time_unix_us: u64,
    /// The publishing participant's id.
    pub publisher_id: String,
}

impl Stamp {
    /// Appends the stamp's encoding: magic, u64 time, u8 length, id bytes.
    pub fn write(&self, out: &mut Vec<u8>) {
        let id = self.publisher_id.as_bytes();
        let id = id.get(..MAX_PUBLISHER_ID_LEN).unwrap_or(id);
        out.extend_from_slice(&STAMP_MAGIC);
        out.extend_from_slice(&self.send_time_unix_us.to_be_bytes());
        out.push(id.len() as u8);
        out.extend_from_slice(id);
    }

    /// Encoded length.
    pub fn encoded_len(&self) -> usize {
        4 + 8 + 1 + self.publisher_id.len().min(MAX_PUBLISHER_ID_LEN)
    }

    /// Finds and decodes a stamp near the start of `payload`; `None` for foreign media.
    pub fn find(payload: &[u8]) -> Option<Stamp> {
        let window = payload.get(..STAMP_SEARCH_BYTES + 4).unwrap_or(payload);
        let at = window.windows(4).position(|w| w == STAMP_MAGIC)?;
        let rest = payload.get(at + 4..)?;
        let time: [u8; 8] = rest.get(..8)?.try_into().ok()?;
        let len = usize::from(*rest.get(8)?);
        if len > MAX_PUBLISHER_ID_LEN {
            return None;
        }
        let id = rest.get(9..9 + len)?;
        Some(Stamp {
            send_time_unix_us: u64::from_be_bytes(time),
            publisher_id: String::from_utf8(id.to_vec()).ok()?,
        })
    }
}

/// The fields of one packet's RTP header, for [`write_rtp_header`].
#[derive(Debug, Clone, Copy)]
pub struct HeaderFields<'a> {
    /// Payload type.
    pub payload_type: u8,
    /// Marker bit (last packet of a video frame).
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// SSRC.
    pub ssrc: u32,
    /// The m-line's MID (at most 16 bytes are written).
    pub mid: &'a str,
    /// RFC 6464 level for audio; `None` writes no level extension.
    pub audio_level: Option<u8>,
}

/// Writes an RTP header with a one-byte extension block holding MID (id 1), a
/// two-byte transport-wide sequence number (id 3, zero until the sender sets it) and,
/// for audio with a level, the RFC 6464 audio level (id 4: V bit set, level in -dBov).
pub fn write_rtp_header(out: &mut Vec<u8>, header: &HeaderFields<'_>) {
    let HeaderFields {
        payload_type,
        marker,
        seq,
        timestamp,
        ssrc,
        mid,
        audio_level,
    } = *header;
    let mid = mid.as_bytes();
    let mid = mid.get(..16).unwrap_or(mid);
    out.push(0x90); // V=2, X=1
    out.push(payload_type | if marker { 0x80 } else { 0 });
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    // elements: (1 + mid) + (1 + 2), padded to 32-bit words
    let mid_bytes = if mid.is_empty() { 0 } else { 1 + mid.len() };
    let level_bytes = if audio_level.is_some() { 2 } else { 0 };
    let elements = mid_bytes + 3 + level_bytes;
    let words = elements.div_ceil(4);
    out.extend_from_slice(&sluice_rtp::ONE_BYTE_EXTENSION_PROFILE.to_be_bytes());
    out.extend_from_slice(&(words as u16).to_be_bytes());
    if !mid.is_empty() {
        out.push((EXT_MID_ID << 4) | (mid.len() as u8 - 1));
        out.extend_from_slice(mid);
    }
    out.push((EXT_TRANSPORT_CC_ID << 4) | 1);
    out.extend_from_slice(&[0, 0]);
    if let Some(level) = audio_level {
        out.push(EXT_AUDIO_LEVEL_ID << 4);
        out.push(0x80 | (level & 0x7F));
    }
    out.resize(out.len() + words * 4 - elements, 0);
}

/// The Opus-like audio source: one 20 ms packet per call.
#[derive(Debug, Clone)]
pub struct AudioSource {
    /// Our SSRC.
    pub ssrc: u32,
    mid: String,
    seq: u16,
    timestamp: u32,
    /// The RFC 6464 level written into every packet (0 loudest, 127 silence);
    /// [`NO_AUDIO_LEVEL`]: no level extension.
    level: Arc<AtomicU8>,
}

/// An audio level value meaning "send no audio level extension".
pub const NO_AUDIO_LEVEL: u8 = u8::MAX;

impl AudioSource {
    /// A source on m-line `mid` starting at random-looking `seq`/`timestamp`.
    pub fn new(ssrc: u32, mid: &str, seq: u16, timestamp: u32) -> Self {
        Self {
            ssrc,
            mid: mid.to_owned(),
            seq,
            timestamp,
            level: Arc::new(AtomicU8::new(NO_AUDIO_LEVEL)),
        }
    }

    /// Takes the audio level of every packet from `level` (a value the client may
    /// change at any time; [`NO_AUDIO_LEVEL`]: none).
    pub fn set_level_source(&mut self, level: Arc<AtomicU8>) {
        self.level = level;
    }

    /// Appends the next packet to `out` (cleared first).
    pub fn next_packet(&mut self, stamp: &Stamp, out: &mut Vec<u8>) {
        out.clear();
        let level = self.level.load(Ordering::Relaxed);
        write_rtp_header(
            out,
            &HeaderFields {
                payload_type: OPUS_PT,
                marker: false,
                seq: self.seq,
                timestamp: self.timestamp,
                ssrc: self.ssrc,
                mid: &self.mid,
                audio_level: (level != NO_AUDIO_LEVEL).then_some(level),
            },
        );
        let start = out.len();
        out.push(0xFC); // TOC: config 31 (CELT FB 20 ms), mono, one frame
        stamp.write(out);
        let filled = out.len() - start;
        out.resize(out.len() + AUDIO_PAYLOAD_BYTES.saturating_sub(filled), 0x55);
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(960);
    }
}

/// The VP8-like video source: frames at a fixed rate and bitrate, split into packets.
#[derive(Debug, Clone)]
pub struct VideoSource {
    /// Our SSRC.
    pub ssrc: u32,
    mid: String,
    seq: u16,
    timestamp: u32,
    picture_id: u16,
    fps: u32,
    bitrate_bps: u64,
    keyframe_interval: Duration,
    last_keyframe: Option<Instant>,
    keyframe_requested: bool,
    /// Keyframes produced.
    pub keyframes_sent: u64,
    /// Frames produced.
    pub frames_sent: u64,
}

impl VideoSource {
    /// A source at `fps` frames per second and `bitrate_bps` on m-line `mid`.
    pub fn new(
        ssrc: u32,
        mid: &str,
        seq: u16,
        timestamp: u32,
        fps: u32,
        bitrate_bps: u64,
        keyframe_interval: Duration,
    ) -> Self {
        Self {
            ssrc,
            mid: mid.to_owned(),
            seq,
            timestamp,
            picture_id: seq & 0x7FFF,
            fps: fps.max(1),
            bitrate_bps,
            keyframe_interval,
            last_keyframe: None,
            keyframe_requested: true,
            keyframes_sent: 0,
            frames_sent: 0,
        }
    }

    /// Time between frames.
    pub fn frame_interval(&self) -> Duration {
        Duration::from_secs(1) / self.fps
    }

    /// Makes the next frame a keyframe (PLI/FIR).
    pub fn request_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    /// Bytes of one delta frame at the configured rate; keyframes are three times that.
    fn delta_frame_bytes(&self) -> usize {
        (self.bitrate_bps / 8 / u64::from(self.fps)).max(64) as usize
    }

    /// Produces the packets of the next frame at `now` into `packets` (cleared first;
    /// its buffers are reused).
    pub fn next_frame(&mut self, now: Instant, stamp: &Stamp, packets: &mut Vec<Vec<u8>>) {
        let keyframe = self.keyframe_requested
            || self
                .last_keyframe
                .is_none_or(|t| now.saturating_duration_since(t) >= self.keyframe_interval);
        if keyframe {
            self.keyframe_requested = false;
            self.last_keyframe = Some(now);
            self.keyframes_sent += 1;
        }
        let frame_bytes = self.delta_frame_bytes() * if keyframe { 3 } else { 1 };
        // Per packet: 4-byte descriptor + stamp; the first also has the VP8 header.
        let per_packet_overhead = 4 + stamp.encoded_len();
        let room = MAX_PAYLOAD_BYTES - per_packet_overhead;
        let count = frame_bytes.div_ceil(room).max(1);
        let chunk = frame_bytes.div_ceil(count);
        packets.truncate(count);
        while packets.len() < count {
            packets.push(Vec::with_capacity(MAX_PAYLOAD_BYTES + 64));
        }
        let picture_id = self.picture_id;
        for (index, out) in packets.iter_mut().enumerate() {
            out.clear();
            let first = index == 0;
            let last = index + 1 == count;
            write_rtp_header(
                out,
                &HeaderFields {
                    payload_type: VP8_PT,
                    marker: last,
                    seq: self.seq,
                    timestamp: self.timestamp,
                    ssrc: self.ssrc,
                    mid: &self.mid,
                    audio_level: None,
                },
            );
            // RFC 7741 descriptor: X, S on the first packet, partition 0; I with 15-bit id.
            out.push(if first { 0x90 } else { 0x80 });
            out.push(0x80);
            out.push(0x80 | (picture_id >> 8) as u8);
            out.push(picture_id as u8);
            let body_start = out.len();
            if first {
                // RFC 6386 frame tag: P bit clear on keyframes, version 0, show_frame.
                let size = (chunk as u32) << 5;
                let tag = size | 0x10 | u32::from(!keyframe);
                out.extend_from_slice(&tag.to_le_bytes()[..3]);
                if keyframe {
                    out.extend_from_slice(&[0x9D, 0x01, 0x2A, 0x80, 0x02, 0xE0, 0x01]);
                    // 640x480
                }
            }
            stamp.write(out);
            let filled = out.len() - body_start;
            out.resize(out.len() + chunk.saturating_sub(filled), 0xA5);
            self.seq = self.seq.wrapping_add(1);
        }
        self.picture_id = (self.picture_id + 1) & 0x7FFF;
        self.timestamp = self.timestamp.wrapping_add(90_000 / self.fps);
        self.frames_sent += 1;
    }
}

#[cfg(test)]
#[path = "media_tests.rs"]
mod tests;
