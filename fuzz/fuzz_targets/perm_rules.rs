#![no_main]
//! permissions' rule-file parser (1.2's .allow/.deny syntax) must never panic: every
//! input is a rule set or an error naming its line; a parsed set can be searched.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match permissions::rules::parse(&text, "f.allow") {
        Ok(r) => {
            let _ = r.search("sip:alice@example.com", "sip:100@gw");
        }
        Err(e) => assert!(e.starts_with("f.allow:"), "{e}"),
    }
});
