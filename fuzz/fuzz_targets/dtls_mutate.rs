//! A real DTLS handshake in which one flight is corrupted (bit flips in records and
//! handshake fragment headers, truncation, duplication, reordering) before delivery, so
//! record parsing, reassembly and message parsing get deep coverage from real bytes.
//! See `sluice_fuzz::dtls::fuzz_mutated_flight` for the input format.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_fuzz::dtls::fuzz_mutated_flight(data));
