#![no_main]
//! uac_auth's reading of a WWW-/Proxy-Authenticate challenge from the next hop and the
//! credentials it builds must never panic, whatever the header holds.

use libfuzzer_sys::fuzz_target;
use uac::auth::{Challenge, Credential, credentials_header, qop_offers_auth};

fuzz_target!(|data: &[u8]| {
    let _ = qop_offers_auth(&String::from_utf8_lossy(data));
    if let Some(ch) = Challenge::from_header(data)
        && ch.supported().is_ok()
    {
        let cred = Credential {
            user: "u".into(),
            realm: ch.realm.clone(),
            password: "p".into(),
        };
        let h = credentials_header(407, &cred, &ch, "INVITE", "sip:b@h", "0a4f113b");
        assert!(h.starts_with("Proxy-Authorization: Digest "));
    }
});
