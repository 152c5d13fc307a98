//! Digest authentication from the client's side: the MD5 hex digest, the nonce of a
//! challenge, and a REGISTER carrying an RFC 2617 `qop=auth` response.

use super::{Client, header};
use md5::{Digest, Md5};

pub fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `nonce` of a reply's WWW-Authenticate header.
pub fn nonce_of(reply: &str) -> String {
    let h = header(reply, "WWW-Authenticate").unwrap_or_else(|| panic!("{reply}"));
    let start = h.find("nonce=\"").expect("nonce") + 7;
    let len = h[start..].find('"').expect("closing quote");
    h[start..start + len].to_string()
}

/// A REGISTER for `user` at `realm` from `c` (with a digest response for `password`
/// and `nonce` when `authz` is given); `label` marks its branch and Call-ID.
pub fn register_msg(
    c: &Client,
    realm: &str,
    label: &str,
    user: &str,
    cseq: u32,
    authz: Option<(&str, &str)>,
) -> String {
    let ruri = format!("sip:{realm}");
    let extra = match authz {
        None => String::new(),
        Some((nonce, password)) => {
            let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
            let ha2 = md5_hex(&format!("REGISTER:{ruri}"));
            // A fresh nc per request: auth refuses a replayed one (nonce_count).
            let (nc, cnonce) = (format!("{cseq:08x}"), format!("cn{cseq}"));
            let resp = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
            format!(
                "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{ruri}\", qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{resp}\", algorithm=MD5\r\n"
            )
        }
    };
    format!(
        "REGISTER {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK{label}{cseq}\r\n\
         From: <sip:{user}@{realm}>;tag=r{cseq}\r\n\
         To: <sip:{user}@{realm}>\r\n\
         Call-ID: {label}-{user}-{p}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@127.0.0.1:{p}>\r\n\
         Max-Forwards: 70\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n",
        p = c.port()
    )
}
