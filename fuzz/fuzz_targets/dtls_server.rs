//! The DTLS engine as server, stopped after any flight of a real handshake with a real
//! client, then fed fuzz datagrams with time passing (see `sluice_fuzz::dtls::fuzz_one_side`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_fuzz::dtls::fuzz_one_side(data, true));
