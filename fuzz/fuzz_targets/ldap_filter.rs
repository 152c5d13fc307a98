#![no_main]
//! The RFC 4515 filter parser and the LDAP URL parser never panic. A filter that
//! parses encodes to BER that the crate's own reader walks back to the end, and a
//! value escaped with `escape` parses back to itself inside an equality filter.

use libfuzzer_sys::fuzz_target;
use openser_ldap::{ber, filter, url};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(f) = filter::parse(s) {
        let enc = f.encode();
        let mut r = ber::Reader::new(&enc);
        assert!(r.next_tlv().is_ok());
        assert!(r.is_empty());
    }
    let _ = url::parse(s);
    let _ = url::parse(&format!("ldap://s/{s}"));
    let esc = filter::escape(s, false);
    if !s.is_empty() && !s.contains('\0') {
        assert_eq!(
            filter::parse(&format!("(cn={esc})")),
            Ok(filter::Filter::Equal("cn".into(), s.as_bytes().to_vec()))
        );
    }
});
