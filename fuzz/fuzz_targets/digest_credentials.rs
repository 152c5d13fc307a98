#![no_main]
//! The digest credentials parser (Authorization / Proxy-Authorization bodies) never
//! panics; nor does the auth module's use of what it parsed (issue 18): the credential
//! taken out of a REGISTER carrying the input as its Authorization header, checked
//! against a few algorithms (`algorithm=`, qop, nc, the nonce's id), its response
//! computed, and the post-check without a nonce table.

use auth::Alg;
use auth::api::{post_auth_checks, pre_auth_algs};
use auth::nc::{Checks, parse_nc};
use auth::nonce::{check_nonce, nonce_id};
use libfuzzer_sys::fuzz_target;
use openser_core::parser::typed::parse_digest;
use openser_core::parser::{HdrType, SipMsg, Span};

fuzz_target!(|data: &[u8]| {
    // The auth module logs refused credentials: silence it.
    openser_core::log::set_debug_level(-10);
    let _ = parse_digest(data, Span::new(0, data.len()));
    if data.contains(&b'\r') || data.contains(&b'\n') {
        return;
    }
    let mut m = b"REGISTER sip:example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKf\r\n\
        From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\n\
        Call-ID: f\r\nCSeq: 1 REGISTER\r\nAuthorization: "
        .to_vec();
    m.extend_from_slice(data);
    m.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    let Ok(mut msg) = SipMsg::parse(&m) else {
        return;
    };
    let algs = [Alg::Sha512_256, Alg::Sha256Sess, Alg::Md5];
    if let auth::PreAuth::DoAuthorization(c) =
        pre_auth_algs(&mut msg, "", HdrType::Authorization, b"k", "", &algs)
    {
        let _ = c.response_ok(&msg, "0123456789abcdef0123456789abcdef");
        let _ = parse_nc(&c.nc);
        let _ = nonce_id(&c.nonce);
        let _ = check_nonce(&c.nonce, b"k");
        let checks = Checks {
            nonce_count: true,
            one_time_nonce: true,
        };
        let _ = post_auth_checks(&mut msg, &c, 0, None, checks);
    }
});
