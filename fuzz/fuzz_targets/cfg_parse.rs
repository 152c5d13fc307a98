#![no_main]
//! The config language parser (lexer, preprocessor, parser) never panics: any text is
//! a config or a list of file:line:col errors.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = openser_core::cfg::parse_str("fuzz.cfg", s);
    }
});
