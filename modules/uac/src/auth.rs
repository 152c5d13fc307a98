//! Digest authentication as a client (RFC 2617, RFC 3261 §22): the challenge of a 401
//! (`WWW-Authenticate`) or 407 (`Proxy-Authenticate`) and the credentials header that
//! answers it.
//!
//! The challenge is read with the core's digest parser (`parser::typed::parse_digest`,
//! fuzzed by `parse_msg`); [`Challenge::from_header`] only picks its fields and
//! splits the `qop` list ([`qop_offers_auth`], fuzzed by `uac_challenge`).
//! Algorithms `MD5` (or none) and `MD5-sess`; `qop=auth` is used when offered (1.2
//! sent no qop at all; a server that requires it refused 1.2), `auth-int` only is
//! refused.

use md5::{Digest as _, Md5};

use openser_core::parser::Span;
use openser_core::parser::typed::parse_digest;

/// One `credential` (`user:realm:password`) or the AVP triple.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub user: String,
    pub realm: String,
    pub password: String,
}

/// `user:realm:password` (the password may contain ':').
pub fn parse_credential(s: &str) -> Result<Credential, String> {
    let mut it = s.trim().splitn(3, ':');
    let (Some(user), Some(realm), Some(password)) = (it.next(), it.next(), it.next()) else {
        return Err(format!(
            "bad credential {s:?}: user:realm:password expected"
        ));
    };
    if user.is_empty() || realm.is_empty() {
        return Err(format!("bad credential {s:?}: empty user or realm"));
    }
    Ok(Credential {
        user: user.to_string(),
        realm: realm.to_string(),
        password: password.to_string(),
    })
}

/// The fields of a challenge this client uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Option<String>,
    /// The raw `qop` option list, if offered.
    pub qop: Option<String>,
}

impl Challenge {
    /// Read a `Digest …` challenge (the header's value); None when it is not a digest
    /// challenge or lacks realm or nonce.
    pub fn from_header(value: &[u8]) -> Option<Challenge> {
        let d = parse_digest(value, Span::new(0, value.len())).ok()?;
        if !d.scheme.bytes(value).eq_ignore_ascii_case(b"digest") {
            return None;
        }
        let text =
            |s: Option<Span>| s.map(|s| String::from_utf8_lossy(s.bytes(value)).into_owned());
        Some(Challenge {
            realm: text(d.realm)?,
            nonce: text(d.nonce).filter(|n| !n.is_empty())?,
            opaque: text(d.opaque),
            algorithm: text(d.algorithm),
            qop: text(d.qop),
        })
    }

    fn sess(&self) -> bool {
        self.algorithm
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case("md5-sess"))
    }

    /// Whether this client can answer it (algorithm and qop).
    pub fn supported(&self) -> Result<(), String> {
        match self.algorithm.as_deref() {
            None => {}
            Some(a) if a.eq_ignore_ascii_case("md5") || a.eq_ignore_ascii_case("md5-sess") => {}
            Some(a) => return Err(format!("unsupported algorithm {a:?}")),
        }
        match self.qop.as_deref() {
            Some(q) if !qop_offers_auth(q) => Err(format!("unsupported qop {q:?}")),
            _ => Ok(()),
        }
    }
}

/// Whether a `qop` option list (`"auth,auth-int"`) offers `auth`.
pub fn qop_offers_auth(list: &str) -> bool {
    list.split(',')
        .any(|o| o.trim().trim_matches('"').eq_ignore_ascii_case("auth"))
}

fn hex(d: impl AsRef<[u8]>) -> String {
    let mut s = String::with_capacity(32);
    for b in d.as_ref() {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

fn md5_of(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p.as_bytes());
    }
    hex(h.finalize())
}

/// The `response` value: RFC 2617 §3.2.2. `qop`: `(nc, cnonce)` when answering with
/// `qop=auth`.
pub fn response(
    cred: &Credential,
    ch: &Challenge,
    method: &str,
    uri: &str,
    qop: Option<(&str, &str)>,
) -> String {
    let mut ha1 = md5_of(&[&cred.user, &ch.realm, &cred.password]);
    if ch.sess() {
        let cnonce = qop.map(|q| q.1).unwrap_or("");
        ha1 = md5_of(&[&ha1, &ch.nonce, cnonce]);
    }
    let ha2 = md5_of(&[method, uri]);
    match qop {
        Some((nc, cnonce)) => md5_of(&[&ha1, &ch.nonce, nc, cnonce, "auth", &ha2]),
        None => md5_of(&[&ha1, &ch.nonce, &ha2]),
    }
}

/// The credentials header line answering `ch` (401 → `Authorization`, 407 →
/// `Proxy-Authorization`), with CRLF. `cnonce` is used when `qop=auth` is offered.
pub fn credentials_header(
    code: u16,
    cred: &Credential,
    ch: &Challenge,
    method: &str,
    uri: &str,
    cnonce: &str,
) -> String {
    let name = if code == 407 {
        "Proxy-Authorization"
    } else {
        "Authorization"
    };
    let with_qop = ch.qop.as_deref().is_some_and(qop_offers_auth);
    let nc = "00000001";
    let resp = response(cred, ch, method, uri, with_qop.then_some((nc, cnonce)));
    let mut h = format!(
        "{name}: Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{resp}\"",
        cred.user, ch.realm, ch.nonce
    );
    if let Some(a) = &ch.algorithm {
        h.push_str(", algorithm=");
        h.push_str(a);
    }
    if let Some(o) = &ch.opaque {
        h.push_str(&format!(", opaque=\"{o}\""));
    }
    if with_qop {
        h.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
    }
    h.push_str("\r\n");
    h
}

/// A fresh client nonce: 16 hex digits from the clock, the pid and a counter.
pub fn new_cnonce() -> String {
    use std::cell::Cell;
    thread_local! { static N: Cell<u64> = const { Cell::new(0) }; }
    let n = N.with(|c| {
        c.set(c.get().wrapping_add(1));
        c.get()
    });
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Md5::new();
    h.update(t.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(n.to_le_bytes());
    hex(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5: Mufasa, "Circle Of Life", GET /dir/index.html.
    #[test]
    fn rfc2617_vector() {
        let cred = Credential {
            user: "Mufasa".into(),
            realm: "testrealm@host.com".into(),
            password: "Circle Of Life".into(),
        };
        let ch = Challenge::from_header(
            b"Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
              nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
              opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert!(ch.supported().is_ok());
        let r = response(
            &cred,
            &ch,
            "GET",
            "/dir/index.html",
            Some(("00000001", "0a4f113b")),
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
        let h = credentials_header(401, &cred, &ch, "GET", "/dir/index.html", "0a4f113b");
        assert!(
            h.starts_with("Authorization: Digest username=\"Mufasa\""),
            "{h}"
        );
        assert!(
            h.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{h}"
        );
        assert!(
            h.contains("qop=auth, nc=00000001, cnonce=\"0a4f113b\""),
            "{h}"
        );
        assert!(
            h.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""),
            "{h}"
        );
    }

    #[test]
    fn without_qop_rfc2069_form() {
        let cred = parse_credential("alice:example.com:secret").unwrap();
        let ch = Challenge::from_header(b"Digest realm=\"example.com\", nonce=\"abc\"").unwrap();
        let ha1 = md5_of(&["alice", "example.com", "secret"]);
        let ha2 = md5_of(&["INVITE", "sip:bob@example.com"]);
        let want = md5_of(&[&ha1, "abc", &ha2]);
        assert_eq!(
            response(&cred, &ch, "INVITE", "sip:bob@example.com", None),
            want
        );
        let h = credentials_header(407, &cred, &ch, "INVITE", "sip:bob@example.com", "x");
        assert!(h.starts_with("Proxy-Authorization: Digest "), "{h}");
        assert!(!h.contains("qop"), "{h}");
    }

    #[test]
    fn challenges_and_credentials() {
        assert!(Challenge::from_header(b"Basic realm=\"x\"").is_none());
        assert!(Challenge::from_header(b"Digest realm=\"x\"").is_none());
        assert!(Challenge::from_header(b"Digest realm=\"x\", nonce=").is_none());
        let ch =
            Challenge::from_header(b"Digest realm=\"x\", nonce=\"n\", qop=\"auth-int\"").unwrap();
        assert!(ch.supported().is_err());
        let ch =
            Challenge::from_header(b"Digest realm=\"x\", nonce=\"n\", algorithm=SHA-256").unwrap();
        assert!(ch.supported().is_err());
        assert_eq!(
            parse_credential("u:r:p:w").unwrap().password,
            "p:w".to_string()
        );
        assert!(parse_credential("u:r").is_err());
        assert!(parse_credential(":r:p").is_err());
        assert!(qop_offers_auth("auth-int, auth"));
        assert!(!qop_offers_auth("auth-int"));
        assert_eq!(new_cnonce().len(), 16);
        assert_ne!(new_cnonce(), new_cnonce());
    }
}
