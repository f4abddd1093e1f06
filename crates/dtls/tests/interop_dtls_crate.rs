//! Interop with the `dtls` crate (webrtc-dtls's continuation), an independent DTLS 1.2
//! implementation, in both roles over UDP on 127.0.0.1.
//!
//! The `dtls` peer requires the extended master secret, offers the SRTP profile under
//! test, presents a self-signed certificate (and requires ours when it is the server), and
//! skips chain verification of ours (WebRTC checks fingerprints instead; we check its
//! fingerprint). After each handshake, its RFC 5705 "EXTRACTOR-dtls_srtp" export and
//! negotiated profile must equal ours, and our local/remote split must match its bytes.

mod common;

use std::net::UdpSocket as StdUdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{PeerFailure, UdpPeer};
use dtls::config::{ClientAuthType, Config as DtlsConfig, ExtendedMasterSecretType};
use dtls::conn::DTLSConn;
use dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use sluice_dtls::{
    Certificate, Config, Connected, Connection, Error, Fingerprint, PeerAuth, Role, SrtpProfile,
};
use tokio::net::UdpSocket;
use webrtc_util::KeyingMaterialExporter;

/// Bound on every handshake (loopback handshakes take milliseconds).
const HANDSHAKE_WAIT: Duration = Duration::from_secs(20);
const RUN_FOR: Duration = Duration::from_secs(30);
const LABEL: &str = "EXTRACTOR-dtls_srtp";

/// Key and salt lengths of a profile per RFC 5764 / RFC 7714, written out here rather than
/// taken from sluice-dtls so that a wrong table in the engine cannot hide.
fn key_and_salt_len(profile: SrtpProtectionProfile) -> (usize, usize) {
    match profile {
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => (16, 14),
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => (16, 12),
        other => panic!("profile {other:?} not covered by these tests"),
    }
}

/// One interop run's parameters.
struct Case {
    /// Our role; the `dtls` crate takes the other.
    our_role: Role,
    /// Profiles the `dtls` peer offers (client) or accepts (server), in its order.
    their_profiles: Vec<SrtpProtectionProfile>,
    /// The `dtls` peer's extended master secret policy.
    their_extended_master_secret: ExtendedMasterSecretType,
    /// Our max_datagram_size.
    our_max_datagram_size: usize,
    /// Our SRTP profiles; `None` keeps the engine's default preference.
    our_profiles: Option<Vec<SrtpProfile>>,
    /// The profile both must end up with.
    expected: SrtpProtectionProfile,
}

impl Default for Case {
    fn default() -> Self {
        Self {
            our_role: Role::Server,
            their_profiles: vec![SHA1_80],
            their_extended_master_secret: ExtendedMasterSecretType::Require,
            our_max_datagram_size: 1200,
            our_profiles: None,
            expected: SHA1_80,
        }
    }
}

/// What the `dtls` side reports after its handshake.
struct TheirResult {
    exported: Vec<u8>,
    profile: SrtpProtectionProfile,
}

fn their_config(case: &Case) -> (DtlsConfig, Vec<u8>) {
    let certificate =
        dtls::crypto::Certificate::generate_self_signed(vec!["dtls-crate-peer".to_owned()])
            .expect("dtls crate certificate");
    let der = certificate.certificate[0].to_vec();
    let config = DtlsConfig {
        certificates: vec![certificate],
        srtp_protection_profiles: case.their_profiles.clone(),
        extended_master_secret: case.their_extended_master_secret,
        client_auth: match case.our_role {
            Role::Client => ClientAuthType::RequireAnyClientCert,
            Role::Server => ClientAuthType::NoClientCert,
        },
        insecure_skip_verify: true,
        server_name: "sluice".to_owned(),
        ..Default::default()
    };
    (config, der)
}

/// Runs one handshake over UDP: the `dtls` crate's outcome, and ours.
async fn handshake(
    case: &Case,
) -> (
    Result<TheirResult, String>,
    Result<Box<Connected>, PeerFailure>,
    Vec<u8>,
) {
    let (their_config, their_der) = their_config(case);
    let our_cert = Arc::new(Certificate::generate().expect("our certificate"));
    let mut our_config = Config::new(our_cert);
    our_config.max_datagram_size = case.our_max_datagram_size;
    if let Some(profiles) = &case.our_profiles {
        our_config.srtp_profiles = profiles.clone();
    }
    let conn = Connection::new(
        Arc::new(our_config),
        case.our_role,
        PeerAuth::Fingerprint(Fingerprint::of_der(&their_der)),
        b"dtls-crate-peer",
        Instant::now(),
    );

    // Both sockets exist before either side speaks, so each knows the other's address.
    let our_socket = StdUdpSocket::bind("127.0.0.1:0").expect("bind ours");
    let our_addr = our_socket.local_addr().expect("our address");
    let their_socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind theirs");
    let their_addr = their_socket.local_addr().expect("their address");
    their_socket
        .connect(our_addr)
        .await
        .expect("connect theirs");
    let ours = UdpPeer::spawn_on(our_socket, conn, Some(their_addr), RUN_FOR);

    let their_is_client = case.our_role == Role::Server;
    let theirs = match tokio::time::timeout(
        HANDSHAKE_WAIT,
        DTLSConn::new(Arc::new(their_socket), their_config, their_is_client, None),
    )
    .await
    {
        Err(_) => Err("dtls crate handshake did not finish in time".to_owned()),
        Ok(Err(e)) => Err(format!("dtls crate handshake failed: {e}")),
        Ok(Ok(conn)) => {
            let (key_len, salt_len) = key_and_salt_len(case.expected);
            let exported = conn
                .connection_state()
                .await
                .export_keying_material(LABEL, &[], 2 * (key_len + salt_len))
                .await
                .map_err(|e| format!("dtls crate export: {e}"));
            let profile = conn.selected_srtpprotection_profile();
            let _ = conn.close().await;
            exported.map(|exported| TheirResult { exported, profile })
        }
    };

    // Our driver thread blocks; keep the runtime's workers free for the dtls crate.
    let ours = tokio::task::spawn_blocking(move || ours.wait(HANDSHAKE_WAIT))
        .await
        .expect("join our driver");
    (theirs, ours, their_der)
}

/// Runs one handshake and checks every agreement; panics on any mismatch.
async fn run(case: Case) {
    let (theirs, ours, their_der) = handshake(&case).await;
    let theirs = theirs.unwrap_or_else(|e| panic!("{e}; ours: {:?}", ours.as_ref().err()));
    let ours = ours.unwrap_or_else(|e| panic!("sluice-dtls: {e:?}"));
    assert_agreement(&case, &ours, &theirs, &their_der);
}

/// Runs one handshake that we must refuse; returns our failure.
async fn run_expecting_our_failure(case: Case) -> Error {
    let (theirs, ours, _) = handshake(&case).await;
    assert!(
        theirs.is_err(),
        "the dtls crate completed a handshake we should refuse"
    );
    match ours {
        Err(PeerFailure::Engine(e)) => e,
        other => panic!(
            "expected an engine failure, got {:?}",
            other.map(|_| "Connected")
        ),
    }
}

fn assert_agreement(case: &Case, ours: &Connected, theirs: &TheirResult, their_der: &[u8]) {
    assert_eq!(
        theirs.profile, case.expected,
        "profile the dtls crate chose"
    );
    assert_eq!(
        ours.srtp.profile.to_u16(),
        case.expected as u16,
        "profile sluice-dtls negotiated ({})",
        ours.srtp.profile
    );
    assert_eq!(
        ours.srtp.exported, theirs.exported,
        "EXTRACTOR-dtls_srtp keying material differs from the dtls crate's"
    );
    assert_eq!(ours.peer_fingerprint, Fingerprint::of_der(their_der));

    // RFC 5764 4.2: client key | server key | client salt | server salt.
    let (k, s) = key_and_salt_len(case.expected);
    let e = &theirs.exported;
    let (client_key, server_key) = (&e[..k], &e[k..2 * k]);
    let (client_salt, server_salt) = (&e[2 * k..2 * k + s], &e[2 * k + s..]);
    let (local, remote) = match case.our_role {
        Role::Client => ((client_key, client_salt), (server_key, server_salt)),
        Role::Server => ((server_key, server_salt), (client_key, client_salt)),
    };
    assert_eq!(
        (
            ours.srtp.local.key.as_slice(),
            ours.srtp.local.salt.as_slice()
        ),
        local,
        "our sending key/salt"
    );
    assert_eq!(
        (
            ours.srtp.remote.key.as_slice(),
            ours.srtp.remote.salt.as_slice()
        ),
        remote,
        "our receiving key/salt"
    );
}

use SrtpProtectionProfile::{Srtp_Aead_Aes_128_Gcm as GCM, Srtp_Aes128_Cm_Hmac_Sha1_80 as SHA1_80};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtls_client_and_sluice_server_agree_on_aes128_cm_sha1_80_keys() {
    run(Case {
        our_role: Role::Server,
        their_profiles: vec![SHA1_80],
        our_max_datagram_size: 1200,
        expected: SHA1_80,
        ..Case::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtls_server_and_sluice_client_agree_on_aes128_cm_sha1_80_keys() {
    run(Case {
        our_role: Role::Client,
        their_profiles: vec![SHA1_80],
        our_max_datagram_size: 1200,
        expected: SHA1_80,
        ..Case::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtls_client_and_sluice_server_agree_on_aead_aes128_gcm_keys() {
    run(Case {
        our_role: Role::Server,
        their_profiles: vec![GCM],
        our_max_datagram_size: 1200,
        expected: GCM,
        ..Case::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtls_server_and_sluice_client_agree_on_aead_aes128_gcm_keys() {
    run(Case {
        our_role: Role::Client,
        their_profiles: vec![GCM],
        our_max_datagram_size: 1200,
        expected: GCM,
        ..Case::default()
    })
    .await;
}

/// As server we choose by our preference (AEAD first) among what the client offers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_server_picks_aead_gcm_when_dtls_client_offers_sha1_80_first() {
    run(Case {
        our_role: Role::Server,
        their_profiles: vec![SHA1_80, GCM],
        our_max_datagram_size: 1200,
        expected: GCM,
        ..Case::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtls_client_reassembles_sluice_server_flights_cut_to_200_byte_datagrams() {
    run(Case {
        our_role: Role::Server,
        their_profiles: vec![SHA1_80],
        our_max_datagram_size: 200,
        expected: SHA1_80,
        ..Case::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtls_server_reassembles_sluice_client_flights_cut_to_200_byte_datagrams() {
    run(Case {
        our_role: Role::Client,
        their_profiles: vec![SHA1_80],
        our_max_datagram_size: 200,
        expected: SHA1_80,
        ..Case::default()
    })
    .await;
}

/// RFC 7627 is required: a client that does not offer the extended master secret is
/// refused with a precise reason rather than completing with weaker keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_server_refuses_dtls_client_without_extended_master_secret() {
    let error = run_expecting_our_failure(Case {
        their_extended_master_secret: ExtendedMasterSecretType::Disable,
        ..Case::default()
    })
    .await;
    assert_eq!(error, Error::MissingExtendedMasterSecret);
}

/// A client that offers use_srtp with profiles we do not accept should be told apart from
/// one that does not offer use_srtp at all: operators chase different causes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_server_reports_no_common_srtp_profile_when_offers_do_not_overlap() {
    let error = run_expecting_our_failure(Case {
        their_profiles: vec![SHA1_80],
        our_profiles: Some(vec![SrtpProfile::AeadAes128Gcm]),
        ..Case::default()
    })
    .await;
    assert!(
        matches!(error, Error::NoCommonParameters { .. }),
        "got {error:?}"
    );
}
