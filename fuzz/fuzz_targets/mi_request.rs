#![no_main]
//! The MI FIFO request parser (first line `:cmd:reply`, then argument lines with
//! `name::value` and quoted values) never panics.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines().map(str::to_string);
    if let Some(first) = lines.next() {
        let _ = openser_core::mi::parse_first_line(&first);
    }
    let rest: Vec<String> = lines.collect();
    let _ = openser_core::mi::parse_args(&rest);
});
