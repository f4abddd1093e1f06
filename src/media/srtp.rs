//! SRTP/SRTCP contexts of one session (webrtc-srtp), from the DTLS-exported keys.
//!
//! webrtc-srtp creates per-SSRC state for every packet it is asked to process, before
//! authenticating it, so the number of distinct SSRCs handed to the inbound context
//! is bounded here (`limits.ssrcs_per_session`).

use std::collections::HashSet;

use sluice_dtls::{SrtpKeyingMaterial, SrtpProfile};
use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;

use crate::metrics::DropReason;

/// Packets remembered by the replay window (libsrtp's default is 128).
const REPLAY_WINDOW_PACKETS: usize = 128;

/// Maps the DTLS-negotiated profile onto webrtc-srtp's.
pub fn protection_profile(profile: SrtpProfile) -> ProtectionProfile {
    match profile {
        SrtpProfile::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        SrtpProfile::Aes128CmHmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        SrtpProfile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
    }
}

// webrtc-srtp hands back a `Bytes` it allocated for this packet alone; `Vec::from` takes
// over that allocation instead of copying it (one allocation and one copy less per packet).

/// Why the contexts could not be built (only if DTLS exported keys of the wrong size).
#[derive(Debug, thiserror::Error)]
#[error("cannot create SRTP context: {0}")]
pub struct SrtpSetupError(#[from] webrtc_srtp::Error);

/// Inbound (unprotect, replay-protected) and outbound (protect) contexts of a session.
pub struct SrtpSession {
    inbound: Context,
    outbound: Context,
    inbound_ssrcs: HashSet<u32>,
    max_ssrcs: usize,
}

impl std::fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpSession")
            .field("inbound_ssrcs", &self.inbound_ssrcs.len())
            .finish_non_exhaustive()
    }
}

impl SrtpSession {
    /// Contexts from the exported keys: `remote` keys unprotect, `local` keys protect.
    pub fn new(keys: &SrtpKeyingMaterial, max_ssrcs: usize) -> Result<Self, SrtpSetupError> {
        let profile = protection_profile(keys.profile);
        let inbound = Context::new(
            &keys.remote.key,
            &keys.remote.salt,
            profile,
            Some(srtp_replay_protection(REPLAY_WINDOW_PACKETS)),
            Some(srtcp_replay_protection(REPLAY_WINDOW_PACKETS)),
        )?;
        let outbound = Context::new(&keys.local.key, &keys.local.salt, profile, None, None)?;
        Ok(Self {
            inbound,
            outbound,
            inbound_ssrcs: HashSet::new(),
            max_ssrcs: max_ssrcs.max(1),
        })
    }

    /// Admits `ssrc` into the inbound context's state if the bound allows.
    fn admit(&mut self, ssrc: u32) -> bool {
        if self.inbound_ssrcs.contains(&ssrc) {
            return true;
        }
        if self.inbound_ssrcs.len() >= self.max_ssrcs {
            return false;
        }
        self.inbound_ssrcs.insert(ssrc);
        true
    }

    /// Unprotects an SRTP packet.
    pub fn unprotect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, DropReason> {
        let ssrc = read_u32(packet, 8).ok_or(DropReason::Malformed)?;
        if !self.admit(ssrc) {
            return Err(DropReason::SsrcLimit);
        }
        self.inbound
            .decrypt_rtp(packet)
            .map(Vec::from)
            .map_err(classify)
    }

    /// Unprotects an SRTCP packet.
    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, DropReason> {
        let ssrc = read_u32(packet, 4).ok_or(DropReason::Malformed)?;
        if !self.admit(ssrc) {
            return Err(DropReason::SsrcLimit);
        }
        self.inbound
            .decrypt_rtcp(packet)
            .map(Vec::from)
            .map_err(classify)
    }

    /// Protects an RTP packet for this session's peer.
    pub fn protect_rtp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        self.outbound.encrypt_rtp(packet).ok().map(Vec::from)
    }

    /// Protects an RTCP packet for this session's peer.
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        self.outbound.encrypt_rtcp(packet).ok().map(Vec::from)
    }
}

fn classify(error: webrtc_srtp::Error) -> DropReason {
    match error {
        webrtc_srtp::Error::SrtpSsrcDuplicated(..)
        | webrtc_srtp::Error::SrtcpSsrcDuplicated(..) => DropReason::Replay,
        webrtc_srtp::Error::ErrTooShortRtp | webrtc_srtp::Error::ErrTooShortRtcp => {
            DropReason::Malformed
        }
        _ => DropReason::SrtpAuthFailed,
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let word: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(word))
}
