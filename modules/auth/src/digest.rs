//! Digest computations (RFC 2617, OpenSER's `rfc2617.c`): HA1 and the request-digest
//! for no qop, `qop=auth` and `qop=auth-int`.

use md5::{Digest as _, Md5};

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0x0f) as usize] as char);
    }
    s
}

/// 32 lower-case hex chars of MD5 over the concatenation of `parts`.
pub fn md5_hex(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    to_hex(&h.finalize())
}

/// HA1 = MD5(username:realm:password).
pub fn calc_ha1(username: &str, realm: &str, password: &str) -> String {
    md5_hex(&[
        username.as_bytes(),
        b":",
        realm.as_bytes(),
        b":",
        password.as_bytes(),
    ])
}

/// The quality of protection of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qop {
    None,
    Auth,
    AuthInt,
    /// Any other value (the response cannot be verified).
    Other,
}

impl Qop {
    pub fn parse(q: Option<&str>) -> Qop {
        match q {
            None => Qop::None,
            Some(q) if q.eq_ignore_ascii_case("auth") => Qop::Auth,
            Some(q) if q.eq_ignore_ascii_case("auth-int") => Qop::AuthInt,
            Some(_) => Qop::Other,
        }
    }
}

/// The parts of a credential that enter the response computation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RespInput<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub nonce: &'a str,
    pub qop: Option<&'a str>,
    pub cnonce: &'a str,
    pub nc: &'a str,
    /// Message body (for auth-int only).
    pub body: &'a [u8],
}

/// The expected request-digest for `ha1` (32 lower-case hex chars); `None` for an
/// unknown qop.
pub fn calc_response(ha1: &str, i: &RespInput) -> Option<String> {
    let qop = Qop::parse(i.qop);
    let ha2 = match qop {
        Qop::None | Qop::Auth => md5_hex(&[i.method.as_bytes(), b":", i.uri.as_bytes()]),
        Qop::AuthInt => {
            let hbody = md5_hex(&[i.body]);
            md5_hex(&[
                i.method.as_bytes(),
                b":",
                i.uri.as_bytes(),
                b":",
                hbody.as_bytes(),
            ])
        }
        Qop::Other => return None,
    };
    Some(match qop {
        Qop::None => md5_hex(&[
            ha1.as_bytes(),
            b":",
            i.nonce.as_bytes(),
            b":",
            ha2.as_bytes(),
        ]),
        _ => md5_hex(&[
            ha1.as_bytes(),
            b":",
            i.nonce.as_bytes(),
            b":",
            i.nc.as_bytes(),
            b":",
            i.cnonce.as_bytes(),
            b":",
            i.qop.unwrap_or("").as_bytes(),
            b":",
            ha2.as_bytes(),
        ]),
    })
}

/// Whether `response` (as received) is the correct request-digest for `ha1`.
pub fn check_response(ha1: &str, i: &RespInput, response: &str) -> bool {
    response.len() == 32 && calc_response(ha1, i).is_some_and(|r| r.eq_ignore_ascii_case(response))
}
