//! RFC 7983 demultiplexing on arbitrary bytes: `classify` and `stun_local_ufrag` never
//! panic, agree with each other, and only return a ufrag that is really in the datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_ice::demux::{classify, stun_local_ufrag};
use sluice_ice::PacketClass;

fuzz_target!(|data: &[u8]| {
    let class = classify(data);
    if let Some(ufrag) = stun_local_ufrag(data) {
        assert_eq!(class, PacketClass::Stun, "a ufrag from a non-STUN datagram");
        assert!(
            !ufrag.contains(':'),
            "ufrag {ufrag:?} contains the separator"
        );
        let start = ufrag.as_ptr() as usize;
        let base = data.as_ptr() as usize;
        assert!(
            start >= base && start + ufrag.len() <= base + data.len(),
            "ufrag does not borrow from the datagram"
        );
    }
});
