//! Host candidate lines (RFC 8445 section 5.1.2, RFC 8839 section 5.1).

use std::fmt::Write as _;
use std::net::SocketAddr;

/// Type preference of host candidates recommended by RFC 8445 section 5.1.2.2.
pub const HOST_TYPE_PREFERENCE: u32 = 126;

/// ICE component id of RTP; with rtcp-mux it is the only component.
pub const RTP_COMPONENT_ID: u32 = 1;

/// The RFC 8445 priority of a host candidate.
///
/// `local_preference` orders the server's own addresses (65535 = most preferred).
pub fn host_priority(local_preference: u16) -> u32 {
    (HOST_TYPE_PREFERENCE << 24) + (u32::from(local_preference) << 8) + (256 - RTP_COMPONENT_ID)
}

/// Writes one `a=candidate` line (with CRLF) per host address.
///
/// The first address is the most preferred. Candidates sharing an IP address share
/// a foundation, as RFC 8445 section 5.1.1.3 requires for the same base and type.
pub fn write_host_candidates(out: &mut String, candidates: &[SocketAddr]) {
    for (index, addr) in candidates.iter().enumerate() {
        let foundation = candidates
            .iter()
            .position(|other| other.ip() == addr.ip())
            .unwrap_or(index)
            + 1;
        let local_preference =
            u16::try_from(usize::from(u16::MAX).saturating_sub(index)).unwrap_or(0);
        let _ = write!(
            out,
            "a=candidate:{foundation} {RTP_COMPONENT_ID} udp {priority} {ip} {port} typ host\r\n",
            priority = host_priority(local_preference),
            ip = addr.ip(),
            port = addr.port(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_priority_follows_rfc8445_formula() {
        // 126 * 2^24 + 65535 * 2^8 + 255
        assert_eq!(host_priority(65535), 2_130_706_431);
        assert_eq!(host_priority(65534), 2_130_706_175);
    }

    #[test]
    fn candidates_sharing_an_ip_share_a_foundation_and_priorities_decrease() {
        let mut out = String::new();
        let addrs: Vec<SocketAddr> = vec![
            "192.0.2.1:3478".parse().unwrap(),
            "[2001:db8::1]:3478".parse().unwrap(),
            "192.0.2.1:3479".parse().unwrap(),
        ];
        write_host_candidates(&mut out, &addrs);
        let lines: Vec<&str> = out.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(
            lines,
            vec![
                "a=candidate:1 1 udp 2130706431 192.0.2.1 3478 typ host",
                "a=candidate:2 1 udp 2130706175 2001:db8::1 3478 typ host",
                "a=candidate:1 1 udp 2130705919 192.0.2.1 3479 typ host",
            ]
        );
    }
}
