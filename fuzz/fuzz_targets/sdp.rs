//! The SDP answer and offer parsers on arbitrary text. Besides "no panic and no error
//! that is not an `SdpError`", a description accepted under tight limits must parse the
//! same under the default (looser) limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_signal::sdp::{parse_answer, parse_answer_with_limits, parse_offer, ParseLimits};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let default = parse_answer(&text);
    let _ = parse_offer(&text);
    let tight = ParseLimits {
        max_sdp_len: 4096,
        max_lines: 64,
        max_media_sections: 2,
        max_codecs_per_media: 4,
        max_ssrcs_per_media: 2,
        max_extmaps_per_media: 2,
        max_fid_groups_per_media: 1,
        max_rtcp_fb_per_codec: 2,
    };
    if let Ok(answer) = parse_answer_with_limits(&text, &tight) {
        assert_eq!(
            default.as_ref().ok(),
            Some(&answer),
            "accepted under tight limits but not the same under default limits"
        );
    }
});
