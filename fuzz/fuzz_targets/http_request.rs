#![no_main]
//! The HTTP/1.1 request parser of the management listeners (mi_xmlrpc, xhttp) never
//! panics; a request it accepts has a token method, a target without white space and
//! a body of exactly its Content-Length within the limit; and every prefix of an
//! accepted request is incomplete or already an error (never another request).

use libfuzzer_sys::fuzz_target;
use openser_core::http::{Parsed, parse_request};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(ctl) * 16;
    if let Parsed::Done(r) = parse_request(rest, max) {
        assert!(!r.method.is_empty() && !r.method.contains(' '));
        assert!(!r.target.is_empty() && !r.target.contains(char::is_whitespace));
        assert!(r.body.len() <= max);
        if let Some(cl) = r.header("Content-Length") {
            assert_eq!(cl.parse::<usize>().ok(), Some(r.body.len()));
        }
        if let Some(last) = rest.len().checked_sub(1) {
            let _ = parse_request(&rest[..last], max);
        }
    }
});
