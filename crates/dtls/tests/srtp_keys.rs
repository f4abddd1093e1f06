//! The SRTP keys sluice-dtls hands to the media layer work with webrtc-srtp: after an
//! in-memory handshake, each side protects RTP with its `local` keys and the other side
//! unprotects it with its `remote` keys, in both directions, for both common profiles.

use std::sync::Arc;
use std::time::Instant;

use sluice_dtls::{
    Certificate, Config, Connected, Connection, Event, PeerAuth, Role, SrtpMasterKey, SrtpProfile,
};
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

/// Two connections that negotiated `profile`, driven in memory until both completed.
fn handshake(profile: SrtpProfile) -> (Box<Connected>, Box<Connected>) {
    let client_cert = Arc::new(Certificate::generate().expect("client certificate"));
    let server_cert = Arc::new(Certificate::generate().expect("server certificate"));
    let config = |cert: &Arc<Certificate>| {
        let mut config = Config::new(cert.clone());
        config.srtp_profiles = vec![profile];
        Arc::new(config)
    };
    let now = Instant::now();
    let mut client = Connection::new(
        config(&client_cert),
        Role::Client,
        PeerAuth::Fingerprint(server_cert.fingerprint()),
        b"server",
        now,
    );
    let mut server = Connection::new(
        config(&server_cert),
        Role::Server,
        PeerAuth::Fingerprint(client_cert.fingerprint()),
        b"client",
        now,
    );
    let (mut client_done, mut server_done) = (None, None);
    // A lossless exchange completes in 3 round trips; 20 bounds a broken engine.
    for _ in 0..20 {
        while let Some(d) = client.poll_transmit() {
            server.handle_datagram(now, &d);
        }
        while let Some(d) = server.poll_transmit() {
            client.handle_datagram(now, &d);
        }
        for (conn, done) in [
            (&mut client, &mut client_done),
            (&mut server, &mut server_done),
        ] {
            while let Some(event) = conn.poll_event() {
                match event {
                    Event::Connected(c) => *done = Some(c),
                    other => panic!("{:?} reported {other:?}", conn.role()),
                }
            }
        }
        if client_done.is_some() && server_done.is_some() {
            break;
        }
    }
    (
        client_done.expect("client did not complete"),
        server_done.expect("server did not complete"),
    )
}

fn webrtc_profile(profile: SrtpProfile) -> ProtectionProfile {
    match profile {
        SrtpProfile::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        SrtpProfile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        other => panic!("{other} not covered"),
    }
}

fn context(keys: &SrtpMasterKey, profile: SrtpProfile) -> Context {
    Context::new(&keys.key, &keys.salt, webrtc_profile(profile), None, None)
        .expect("webrtc-srtp accepts the key and salt lengths")
}

/// A minimal RTP packet: V=2, PT 111, the given sequence number and SSRC, 40-byte payload.
fn rtp_packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 111];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..40u8).map(|i| i.wrapping_mul(7)));
    p
}

/// Protects with `sender`'s local keys, unprotects with `receiver`'s remote keys.
fn assert_one_direction(sender: &Connected, receiver: &Connected, ssrc: u32) {
    let profile = sender.srtp.profile;
    let mut protect = context(&sender.srtp.local, profile);
    let mut unprotect = context(&receiver.srtp.remote, profile);
    for seq in [1u16, 2, 3, 1000] {
        let plain = rtp_packet(seq, ssrc);
        let protected = protect.encrypt_rtp(&plain).expect("protect");
        assert_ne!(&protected[12..52], &plain[12..52], "payload was encrypted");
        let unprotected = unprotect
            .decrypt_rtp(&protected)
            .unwrap_or_else(|e| panic!("unprotect seq {seq} failed: {e}"));
        assert_eq!(unprotected.as_ref(), plain.as_slice());
    }
    // The other direction's keys must not open this direction's packets.
    let mut wrong = context(&receiver.srtp.local, profile);
    let protected = context(&sender.srtp.local, profile)
        .encrypt_rtp(&rtp_packet(7, ssrc))
        .expect("protect");
    assert!(
        wrong.decrypt_rtp(&protected).is_err(),
        "both directions share one key"
    );
}

fn assert_media_flows_both_ways(profile: SrtpProfile) {
    let (client, server) = handshake(profile);
    assert_eq!(client.srtp.profile, profile);
    assert_eq!(server.srtp.profile, profile);
    assert_one_direction(&client, &server, 0x1111_2222);
    assert_one_direction(&server, &client, 0x3333_4444);
}

#[test]
fn aes128_cm_sha1_80_keys_protect_and_unprotect_rtp_in_both_directions() {
    assert_media_flows_both_ways(SrtpProfile::Aes128CmHmacSha1_80);
}

#[test]
fn aead_aes128_gcm_keys_protect_and_unprotect_rtp_in_both_directions() {
    assert_media_flows_both_ways(SrtpProfile::AeadAes128Gcm);
}
