#![no_main]
//! The RADIUS reply decoder never panics. Each input is tried twice: as it is (almost
//! always refused by the Response Authenticator), and with a correct Response
//! Authenticator patched in for a fixed request and secret, so that the attribute walk,
//! the Message-Authenticator check and the readers of what a reply carries (Vendor-
//! Specific parts, `SIP-AVP` values) see every shape. A reply accepted is parsed again
//! identically, and its attributes re-encode to its bytes.

use libfuzzer_sys::fuzz_target;
use md5::{Digest as _, Md5};
use openser_radius::packet::{self, ACCESS_REQUEST, ACCOUNTING_REQUEST};
use openser_radius::sipavp;

const SECRET: &[u8] = b"testing123";
const REQ_AUTH: [u8; 16] = *b"0123456789abcdef";

fn patched(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < packet::HEADER {
        return None;
    }
    let len = u16::from_be_bytes([data[2], data[3]]) as usize;
    if len < packet::HEADER || len > data.len() {
        return None;
    }
    let mut p = data.to_vec();
    let mut h = Md5::new();
    h.update(&p[..4]);
    h.update(REQ_AUTH);
    h.update(&p[packet::HEADER..len]);
    h.update(SECRET);
    let a: [u8; 16] = h.finalize().into();
    p[4..20].copy_from_slice(&a);
    Some(p)
}

fuzz_target!(|data: &[u8]| {
    let id = data.get(1).copied().unwrap_or(0);
    for req in [ACCESS_REQUEST, ACCOUNTING_REQUEST] {
        let _ = packet::decode_reply(data, req, id, &REQ_AUTH, SECRET);
        if let Some(p) = patched(data) {
            if let Ok(r) = packet::decode_reply(&p, req, id, &REQ_AUTH, SECRET) {
                let len = u16::from_be_bytes([p[2], p[3]]) as usize;
                let mut body = Vec::new();
                for a in &r.attrs {
                    body.push(a.typ);
                    body.push((a.value.len() + 2) as u8);
                    body.extend_from_slice(&a.value);
                    if a.typ == packet::ATTR_VENDOR_SPECIFIC {
                        let _ = packet::vsa_parts(&a.value);
                    }
                    let _ = sipavp::parse_sip_avp(&a.value);
                    let _ = sipavp::parse_name_value(&a.value);
                }
                assert_eq!(body, &p[packet::HEADER..len]);
                assert_eq!(packet::decode_reply(&p, req, id, &REQ_AUTH, SECRET), Ok(r));
            }
        }
    }
    if let Ok(pk) = packet::parse_packet(data) {
        assert!(pk.attrs.iter().all(|a| a.value.len() <= 253));
    }
});
