#![no_main]
//! URI parsing, printing, comparison and rewriting must never panic, and printing a
//! parsed URI must give text that parses to the same URI.

use libfuzzer_sys::fuzz_target;
use openser_core::parser::Uri;

fuzz_target!(|data: &[u8]| {
    let Ok(mut u) = Uri::parse_bytes(data) else {
        return;
    };
    let s = u.to_string();
    let again = Uri::parse(&s).expect("printed URI must parse");
    assert_eq!(again, u, "print/parse round trip");
    assert!(u.rfc_eq(&again));
    let _ = u.user_unescaped();
    let _ = u.set_user("x");
    let _ = u.set_hostport("h:1");
    let _ = u.set_userpass("a:b");
});
