#![no_main]
//! nathelper's SDP readers and rewriters (`fix_nated_sdp`, `force_rtp_proxy`'s rewrite,
//! `nat_uac_test` 8, the multipart SDP finder) must never panic, and their edits must
//! never overlap. Input: an SDP body, or `content-type NUL body` for the multipart path.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nathelper::sdp::fuzz_one(data);
});
