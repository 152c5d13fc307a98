#![no_main]
//! The LDAP message decoder never panics, on whole messages and on a stream cut into
//! frames as the client reads it. A message that decodes is decoded identically again,
//! and an entry's attribute look-up works on whatever names it carries.

use libfuzzer_sys::fuzz_target;
use openser_ldap::{ber, proto};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = proto::decode(data) {
        assert_eq!(proto::decode(data), Ok(r.clone()));
        if let (_, proto::Response::Entry(e)) = r {
            for (n, v) in &e.attrs {
                assert!(e.values(n).is_some());
                let _ = v;
            }
        }
    }
    // Framing as the client does it: take whole elements off the front.
    let mut buf = data;
    while let Ok(n) = ber::frame_len(buf) {
        if n > buf.len() || n == 0 {
            break;
        }
        let _ = proto::decode(&buf[..n]);
        buf = &buf[n..];
    }
});
