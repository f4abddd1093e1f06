//! The one piece of SDP this crate owns: the host candidates the server announces.
//!
//! Everything else in SDP is written by the signalling crate.

use std::net::SocketAddr;

/// Type preference of host candidates (RFC 8445 section 5.1.2.2 recommends 126).
pub const HOST_TYPE_PREFERENCE: u32 = 126;

/// Candidate priority per RFC 8445 section 5.1.2.1:
/// `2^24 * type_preference + 2^8 * local_preference + (256 - component_id)`, with the
/// host type preference. `component_id` is clamped to the legal 1..=256.
///
/// With one address per family, use `local_preference = 65535`; give each extra address a
/// distinct, lower value so the peer can order them.
pub fn host_priority(local_preference: u16, component_id: u16) -> u32 {
    let component = u32::from(component_id.clamp(1, 256));
    (HOST_TYPE_PREFERENCE << 24) + (u32::from(local_preference) << 8) + (256 - component)
}

/// An SDP candidate attribute value for a UDP host candidate (RFC 8839 section 5.1),
/// without the leading `a=`: `candidate:1 1 udp 2130706431 1.2.3.4 5000 typ host`.
///
/// `foundation` should be 1..=32 ice-chars; it is written as given.
pub fn candidate_line(foundation: &str, component: u16, addr: SocketAddr, priority: u32) -> String {
    format!(
        "candidate:{foundation} {component} udp {priority} {ip} {port} typ host",
        ip = addr.ip(),
        port = addr.port()
    )
}
