//! Heap held per connection after the handshake completes, measured with a counting
//! allocator: `cargo run --release -p sluice-dtls --example conn-memory [-- N [1.3|1.2]]`
//! (DTLS 1.3 by default).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sluice_dtls::{Certificate, Config, Connection, DtlsVersion, Event, PeerAuth, Role};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let version = match std::env::args().nth(2).as_deref() {
        Some("1.2") => DtlsVersion::Dtls12,
        _ => DtlsVersion::Dtls13,
    };
    let config = || {
        let mut c = Config::new(Arc::new(Certificate::generate().unwrap()));
        c.versions = vec![version];
        Arc::new(c)
    };
    let (client, server) = (config(), config());
    let mut kept = Vec::with_capacity(2 * n);
    let before = LIVE.load(Ordering::Relaxed);
    for _ in 0..n {
        let now = Instant::now();
        let mut c = Connection::new(
            client.clone(),
            Role::Client,
            PeerAuth::Fingerprint(server.certificate.fingerprint()),
            b"s",
            now,
        );
        let mut s = Connection::new(
            server.clone(),
            Role::Server,
            PeerAuth::Fingerprint(client.certificate.fingerprint()),
            b"c",
            now,
        );
        let mut done = 0;
        while done < 2 {
            while let Some(d) = c.poll_transmit() {
                s.handle_datagram(now, &d);
            }
            while let Some(d) = s.poll_transmit() {
                c.handle_datagram(now, &d);
            }
            for conn in [&mut c, &mut s] {
                while let Some(e) = conn.poll_event() {
                    match e {
                        Event::Connected(_) => done += 1,
                        other => panic!("{other:?}"),
                    }
                }
            }
        }
        // What is still in flight after completion (1.3: the server's ACK, which lets the
        // client free its final flight) is delivered before measuring.
        while let Some(d) = s.poll_transmit() {
            c.handle_datagram(now, &d);
        }
        kept.push(c);
        kept.push(s);
    }
    let after = LIVE.load(Ordering::Relaxed);
    let heap = (after - before) as f64 / kept.len() as f64;
    let inline = std::mem::size_of::<Connection>();
    println!(
        "DTLS {}: {} connections after completion: {:.0} bytes of heap each plus {} bytes \
         inline (size_of::<Connection>), {:.0} bytes in all; half are servers keeping their \
         final flight (1.2) or their epoch-2 read keys (1.3)",
        version.as_str(),
        kept.len(),
        heap,
        inline,
        heap + inline as f64
    );
}
