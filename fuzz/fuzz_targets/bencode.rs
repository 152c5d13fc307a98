#![no_main]
//! The ng protocol's bencode decoder must never panic, and what it decodes must encode
//! back to the same bytes (the input was canonical for our encoder) or decode again to
//! the same value.

use libfuzzer_sys::fuzz_target;
use rtpengine::bencode::decode;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = decode(data) {
        let again = decode(&v.encode()).expect("re-encoded value decodes");
        assert_eq!(again, v);
    }
});
