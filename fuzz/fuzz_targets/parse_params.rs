#![no_main]
//! Header parameter lists (`;a=b;c="d"`) never panic.

use libfuzzer_sys::fuzz_target;
use openser_core::parser::parse_params_str;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_params_str(s);
    }
});
