//! SRTP protect and unprotect of a 1200-byte RTP packet per profile, with webrtc-srtp
//! contexts keyed from this engine's export (the media path's per-packet crypto cost).
//! Run: `cargo bench -p sluice-dtls --bench srtp`.

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_dtls::{
    Certificate, Config, Connection, Event, PeerAuth, Role, SrtpKeyingMaterial, SrtpProfile,
};
use webrtc_srtp::context::Context;
use webrtc_srtp::option::srtp_replay_protection;
use webrtc_srtp::protection_profile::ProtectionProfile;

fn keys(profile: SrtpProfile) -> (SrtpKeyingMaterial, SrtpKeyingMaterial) {
    let config = |cert: Arc<Certificate>| {
        let mut c = Config::new(cert);
        c.srtp_profiles = vec![profile];
        Arc::new(c)
    };
    let a = config(Arc::new(Certificate::generate().unwrap()));
    let b = config(Arc::new(Certificate::generate().unwrap()));
    let now = Instant::now();
    let mut c = Connection::new(
        a.clone(),
        Role::Client,
        PeerAuth::AcceptAnyCertificate,
        b"s",
        now,
    );
    let mut s = Connection::new(
        b.clone(),
        Role::Server,
        PeerAuth::AcceptAnyCertificate,
        b"c",
        now,
    );
    let (mut kc, mut ks) = (None, None);
    while kc.is_none() || ks.is_none() {
        while let Some(d) = c.poll_transmit() {
            s.handle_datagram(now, &d);
        }
        while let Some(d) = s.poll_transmit() {
            c.handle_datagram(now, &d);
        }
        while let Some(Event::Connected(k)) = c.poll_event() {
            kc = Some(k.srtp);
        }
        while let Some(Event::Connected(k)) = s.poll_event() {
            ks = Some(k.srtp);
        }
    }
    (kc.unwrap(), ks.unwrap())
}

fn profile(p: SrtpProfile) -> ProtectionProfile {
    match p {
        SrtpProfile::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        SrtpProfile::Aes128CmHmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        SrtpProfile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
    }
}

fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&1234u32.to_be_bytes());
    p.extend_from_slice(&0x1111_2222u32.to_be_bytes());
    p.resize(1200 - 16, 0xab);
    p
}

fn bench_srtp(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp_1200B");
    g.throughput(Throughput::Elements(1));
    for p in SrtpProfile::DEFAULT_PREFERENCE {
        let (client, server) = keys(p);
        let mut protect = Context::new(
            &client.local.key,
            &client.local.salt,
            profile(p),
            None,
            None,
        )
        .unwrap();
        let mut seq = 0u16;
        g.bench_function(format!("protect/{}", p.name()), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                protect.encrypt_rtp(&rtp_packet(seq)).unwrap()
            })
        });
        // Unprotect needs fresh sequence numbers (replay protection on): protect a batch
        // up front and time only the unprotect calls, with a fresh context per batch.
        // A fresh sender: the loop above wrapped the sequence number (and its ROC) many times.
        let mut protect = Context::new(
            &client.local.key,
            &client.local.salt,
            profile(p),
            None,
            None,
        )
        .unwrap();
        let batch: Vec<_> = (0..4096u16)
            .map(|i| {
                protect
                    .encrypt_rtp(&rtp_packet(i.wrapping_add(20000)))
                    .unwrap()
            })
            .collect();
        assert_eq!(client.local, server.remote, "exported keys agree");
        let mut check = Context::new(
            &server.remote.key,
            &server.remote.salt,
            profile(p),
            Some(srtp_replay_protection(1024)),
            None,
        )
        .unwrap();
        for (i, pkt) in batch.iter().enumerate() {
            if let Err(e) = check.decrypt_rtp(pkt) {
                panic!("{}: packet {i} does not unprotect: {e}", p.name());
            }
        }
        g.bench_function(format!("unprotect/{}", p.name()), |b| {
            b.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    let mut ctx = Context::new(
                        &server.remote.key,
                        &server.remote.salt,
                        profile(p),
                        Some(srtp_replay_protection(1024)),
                        None,
                    )
                    .unwrap();
                    let n = (iters - done).min(batch.len() as u64) as usize;
                    let start = Instant::now();
                    for pkt in &batch[..n] {
                        let _ = std::hint::black_box(ctx.decrypt_rtp(pkt));
                    }
                    total += start.elapsed();
                    done += n as u64;
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_srtp);
criterion_main!(benches);
