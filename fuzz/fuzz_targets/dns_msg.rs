#![no_main]
//! The DNS answer parser never panics, and what it accepts is consistent: every
//! name it returns is at most 255 characters, and a response it accepts stays
//! accepted byte-for-byte (parsing is deterministic). The resolv.conf reader is fed
//! the same bytes as text.

use libfuzzer_sys::fuzz_target;
use openser_core::dns::msg::{Rdata, parse_response};
use openser_core::dns::resolver::parse_conf;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = parse_response(data) {
        for a in &r.answers {
            assert!(a.name.len() <= 256);
            match &a.data {
                Rdata::Cname(n) => assert!(n.len() <= 256),
                Rdata::Srv { target, .. } => assert!(target.len() <= 256),
                Rdata::Naptr { replacement, .. } => assert!(replacement.len() <= 256),
                _ => {}
            }
        }
        assert_eq!(parse_response(data).ok(), Some(r));
    }
    let c = parse_conf(&String::from_utf8_lossy(data));
    assert!(!c.servers.is_empty() && c.servers.len() <= 3);
});
