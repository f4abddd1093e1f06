//! The DTLS 1.3 paths: a pair that negotiates 1.3, stopped after any flight (ClientHello,
//! ServerHello..Finished, Certificate..Finished, the ACK), then fuzz datagrams fed to the
//! server (selector bit 6 clear) or the client, with time passing. Same input format as
//! `dtls_server` with the 1.3 bit forced on (see `sluice_fuzz::dtls::fuzz_one_side`).
//! With default configurations the pair agrees on the X25519MLKEM768 hybrid, so its
//! 1216- and 1120-byte shares and their fragmented hellos are in every input; selector bit
//! 7 runs the X25519 and TLS_AES_256_GCM_SHA384 paths instead.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut input = Vec::with_capacity(data.len());
    input.push(selector | 0x20);
    input.extend_from_slice(rest);
    sluice_fuzz::dtls::fuzz_one_side(&input, selector & 0x40 == 0);
});
