//! Host candidate lines and priorities (RFC 8445 section 5.1.2.1, RFC 8839 section 5.1).

use std::net::SocketAddr;

use sluice_ice::sdp::{candidate_line, host_priority};

#[test]
fn host_priority_follows_rfc_8445_formula() {
    assert_eq!(host_priority(65535, 1), 2_130_706_431);
    assert_eq!(host_priority(65535, 2), 2_130_706_430);
    assert_eq!(host_priority(0, 256), 126 << 24);
    assert!(host_priority(65534, 1) < host_priority(65535, 1));
}

#[test]
fn candidate_line_for_ipv4_host() {
    let addr: SocketAddr = "1.2.3.4:5000".parse().unwrap();
    assert_eq!(
        candidate_line("1", 1, addr, host_priority(65535, 1)),
        "candidate:1 1 udp 2130706431 1.2.3.4 5000 typ host"
    );
}

#[test]
fn candidate_line_for_ipv6_host_has_no_brackets() {
    let addr: SocketAddr = "[2001:db8::1]:3478".parse().unwrap();
    assert_eq!(
        candidate_line("2", 1, addr, 2_130_706_175),
        "candidate:2 1 udp 2130706175 2001:db8::1 3478 typ host"
    );
}
