#![no_main]
//! The digest credentials parser (Authorization / Proxy-Authorization bodies) never
//! panics.

use libfuzzer_sys::fuzz_target;
use openser_core::parser::Span;
use openser_core::parser::typed::parse_digest;

fuzz_target!(|data: &[u8]| {
    let _ = parse_digest(data, Span::new(0, data.len()));
});
