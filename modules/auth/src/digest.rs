//! Digest computations (RFC 2617, OpenSER's `rfc2617.c`; RFC 7616 / RFC 8760 for the
//! SHA-2 algorithms): HA1 and the request-digest for no qop, `qop=auth` and
//! `qop=auth-int`, with MD5, SHA-256 and SHA-512/256 and their `-sess` variants.

use md5::{Digest as _, Md5};
use sha2::{Sha256, Sha512_256};

/// A digest algorithm (RFC 7616 §3.3, RFC 8760).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alg {
    #[default]
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
    Sha512_256,
    Sha512_256Sess,
}

/// The hash function under an algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashFn {
    Md5,
    Sha256,
    Sha512_256,
}

impl HashFn {
    /// Lower-case hex of the hash over the concatenation of `parts`.
    pub fn hex(self, parts: &[&[u8]]) -> String {
        fn run<D: md5::Digest>(parts: &[&[u8]]) -> String {
            let mut h = D::new();
            for p in parts {
                h.update(p);
            }
            to_hex(&h.finalize())
        }
        match self {
            HashFn::Md5 => run::<Md5>(parts),
            HashFn::Sha256 => run::<Sha256>(parts),
            HashFn::Sha512_256 => run::<Sha512_256>(parts),
        }
    }
    /// Length of the hex digest.
    pub fn hex_len(self) -> usize {
        match self {
            HashFn::Md5 => 32,
            HashFn::Sha256 | HashFn::Sha512_256 => 64,
        }
    }
}

impl Alg {
    /// Every algorithm, strongest first (the order challenges offer them in).
    pub const ALL: [Alg; 6] = [
        Alg::Sha512_256,
        Alg::Sha512_256Sess,
        Alg::Sha256,
        Alg::Sha256Sess,
        Alg::Md5,
        Alg::Md5Sess,
    ];

    /// The `algorithm=` value of a credential: absent means MD5 (RFC 2617 §3.2.2);
    /// `None` for an unknown name (case-insensitive match).
    pub fn parse(name: Option<&str>) -> Option<Alg> {
        let Some(n) = name else {
            return Some(Alg::Md5);
        };
        Alg::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(n.trim()))
    }

    /// The token as written in challenges (RFC 7616 / RFC 8760 spelling).
    pub fn name(self) -> &'static str {
        match self {
            Alg::Md5 => "MD5",
            Alg::Md5Sess => "MD5-sess",
            Alg::Sha256 => "SHA-256",
            Alg::Sha256Sess => "SHA-256-sess",
            Alg::Sha512_256 => "SHA-512-256",
            Alg::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    pub fn hash(self) -> HashFn {
        match self {
            Alg::Md5 | Alg::Md5Sess => HashFn::Md5,
            Alg::Sha256 | Alg::Sha256Sess => HashFn::Sha256,
            Alg::Sha512_256 | Alg::Sha512_256Sess => HashFn::Sha512_256,
        }
    }

    pub fn is_sess(self) -> bool {
        matches!(self, Alg::Md5Sess | Alg::Sha256Sess | Alg::Sha512_256Sess)
    }

    /// The algorithm without `-sess` (whose HA1 a credential store holds).
    pub fn base(self) -> Alg {
        match self {
            Alg::Md5 | Alg::Md5Sess => Alg::Md5,
            Alg::Sha256 | Alg::Sha256Sess => Alg::Sha256,
            Alg::Sha512_256 | Alg::Sha512_256Sess => Alg::Sha512_256,
        }
    }
}

/// Parse an algorithm list (`"SHA-256 MD5"`, separators: blanks or commas), kept in the
/// order given; an error names an unknown entry. An empty list is an error.
pub fn parse_alg_list(s: &str) -> Result<Vec<Alg>, String> {
    let mut out = Vec::new();
    for t in s
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
    {
        let a = Alg::parse(Some(t)).ok_or_else(|| format!("unknown digest algorithm '{t}'"))?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    if out.is_empty() {
        return Err("empty digest algorithm list".into());
    }
    Ok(out)
}

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
    calc_ha1_alg(Alg::Md5, username, realm, password)
}

/// HA1 = H(username:realm:password) with the hash of `alg` (the stored form; the
/// `-sess` step is applied per request by [`calc_response_alg`]).
pub fn calc_ha1_alg(alg: Alg, username: &str, realm: &str, password: &str) -> String {
    alg.hash().hex(&[
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

/// The expected MD5 request-digest for `ha1` (32 lower-case hex chars); `None` for an
/// unknown qop.
pub fn calc_response(ha1: &str, i: &RespInput) -> Option<String> {
    calc_response_alg(Alg::Md5, ha1, i)
}

/// The expected request-digest with `alg` for the stored `ha1` (of `alg.base()`):
/// for a `-sess` algorithm the session HA1 is H(ha1:nonce:cnonce) over the hex `ha1`
/// (RFC 7616 §3.4.2). `None` for an unknown qop.
pub fn calc_response_alg(alg: Alg, ha1: &str, i: &RespInput) -> Option<String> {
    let h = alg.hash();
    let sess;
    let ha1 = if alg.is_sess() {
        sess = h.hex(&[
            ha1.as_bytes(),
            b":",
            i.nonce.as_bytes(),
            b":",
            i.cnonce.as_bytes(),
        ]);
        sess.as_str()
    } else {
        ha1
    };
    let qop = Qop::parse(i.qop);
    let ha2 = match qop {
        Qop::None | Qop::Auth => h.hex(&[i.method.as_bytes(), b":", i.uri.as_bytes()]),
        Qop::AuthInt => {
            let hbody = h.hex(&[i.body]);
            h.hex(&[
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
        Qop::None => h.hex(&[
            ha1.as_bytes(),
            b":",
            i.nonce.as_bytes(),
            b":",
            ha2.as_bytes(),
        ]),
        _ => h.hex(&[
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

/// Whether `response` (as received) is the correct MD5 request-digest for `ha1`.
pub fn check_response(ha1: &str, i: &RespInput, response: &str) -> bool {
    check_response_alg(Alg::Md5, ha1, i, response)
}

/// Whether `response` is the correct request-digest with `alg` for the stored `ha1`.
pub fn check_response_alg(alg: Alg, ha1: &str, i: &RespInput, response: &str) -> bool {
    response.len() == alg.hash().hex_len()
        && calc_response_alg(alg, ha1, i).is_some_and(|r| r.eq_ignore_ascii_case(response))
}
