#![no_main]
//! dispatcher: the list-file parser never panics (a list, or an error naming its
//! line:col), a parsed list survives the shared form unchanged, and the per-request
//! readers (credentials' username for algorithm 5, URI hash keys) take any input.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match dispatcher::list::parse_text(&text) {
        Ok(rows) => {
            if let Ok(l) = dispatcher::list::build(rows, |_| None) {
                let back = dispatcher::list::deserialize(&dispatcher::list::serialize(&l));
                assert_eq!(back, l);
            }
        }
        Err(e) => assert!(
            e.split(':')
                .next()
                .is_some_and(|n| n.parse::<usize>().is_ok()),
            "{e}"
        ),
    }
    if let Ok(m) = openser_core::parser::SipMsg::parse(data) {
        let _ = dispatcher::auth_username(&m);
    }
    let _ = dispatcher::uri_keys(&text, false);
    let _ = dispatcher::uri_keys(&text, true);
});
