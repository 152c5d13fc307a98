//! The RADIUS packet codec (RFC 2865 §3, §5; RFC 2866 §3; RFC 3579 §3.2).
//!
//! A packet is `code(1) identifier(1) length(2) authenticator(16)` followed by
//! attributes `type(1) length(1) value(length-2)`. Requests are built here with their
//! authenticators; replies are checked here before anything reads them:
//!
//! * Access-Request: a Request Authenticator from the caller (unpredictable, see
//!   `client.rs`), a `Message-Authenticator` (HMAC-MD5 over the packet, RFC 3579) as the
//!   first attribute, so servers hardened against forged replies (the "BlastRADIUS"
//!   attack) accept it; `User-Password` hidden as RFC 2865 §5.2 says.
//! * Accounting-Request: Request Authenticator = MD5(packet with 16 zero bytes ‖
//!   secret) (RFC 2866 §3).
//! * A reply must have the request's identifier, a length within the datagram, well-formed
//!   attributes, the right Response Authenticator = MD5(code ‖ id ‖ length ‖ request
//!   authenticator ‖ attributes ‖ secret), and, when it carries a Message-Authenticator,
//!   the right one. Anything else is refused with a [`DecodeError`] and never panics
//!   (fuzz target `radius_reply`).

use md5::{Digest as _, Md5};

pub const ACCESS_REQUEST: u8 = 1;
pub const ACCESS_ACCEPT: u8 = 2;
pub const ACCESS_REJECT: u8 = 3;
pub const ACCOUNTING_REQUEST: u8 = 4;
pub const ACCOUNTING_RESPONSE: u8 = 5;
pub const ACCESS_CHALLENGE: u8 = 11;

pub const ATTR_USER_PASSWORD: u8 = 2;
pub const ATTR_VENDOR_SPECIFIC: u8 = 26;
pub const ATTR_MESSAGE_AUTHENTICATOR: u8 = 80;

/// RFC 2865 §3: the largest packet.
pub const MAX_PACKET: usize = 4096;
/// Header length (code, identifier, length, authenticator).
pub const HEADER: usize = 20;
/// The largest attribute value.
pub const MAX_VALUE: usize = 253;

/// One attribute as it is on the wire (a Vendor-Specific one keeps its vendor part in
/// `value`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub typ: u8,
    pub value: Vec<u8>,
}

impl Attr {
    pub fn new(typ: u8, value: &[u8]) -> Attr {
        Attr {
            typ,
            value: value.to_vec(),
        }
    }
}

/// Why a packet could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// An attribute value longer than 253 bytes (its type).
    ValueTooLong(u8),
    /// The packet would exceed 4096 bytes.
    TooBig,
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::ValueTooLong(t) => {
                write!(f, "value of attribute {t} longer than {MAX_VALUE} bytes")
            }
            EncodeError::TooBig => write!(f, "packet longer than {MAX_PACKET} bytes"),
        }
    }
}

/// Why a received datagram is not an acceptable reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than a header, or its length field is below 20, above 4096 or beyond the
    /// datagram.
    BadLength,
    /// An attribute with a length below 2 or running past the packet.
    BadAttribute,
    /// Not the identifier of the request.
    WrongId,
    /// A code that does not answer the request.
    UnexpectedCode(u8),
    /// The Response Authenticator does not match (wrong secret, forged or damaged).
    BadAuthenticator,
    /// A Message-Authenticator that is not 16 bytes or does not match.
    BadMessageAuthenticator,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::BadLength => write!(f, "bad packet length"),
            DecodeError::BadAttribute => write!(f, "malformed attribute"),
            DecodeError::WrongId => write!(f, "identifier does not match the request"),
            DecodeError::UnexpectedCode(c) => write!(f, "unexpected packet code {c}"),
            DecodeError::BadAuthenticator => write!(f, "bad Response Authenticator"),
            DecodeError::BadMessageAuthenticator => write!(f, "bad Message-Authenticator"),
        }
    }
}

/// A packet parsed for its structure only (no authenticator checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub code: u8,
    pub id: u8,
    pub authenticator: [u8; 16],
    pub attrs: Vec<Attr>,
}

/// A checked reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u8,
    pub attrs: Vec<Attr>,
}

impl Reply {
    /// The values of attribute `typ` (not vendor-specific), in order.
    pub fn values(&self, typ: u8) -> impl Iterator<Item = &[u8]> {
        self.attrs
            .iter()
            .filter(move |a| a.typ == typ)
            .map(|a| a.value.as_slice())
    }
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HMAC-MD5 (RFC 2104) of `parts` with `key`.
pub fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..16].copy_from_slice(&md5(&[key]));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let mut inner = Md5::new();
    inner.update(&ipad);
    for p in parts {
        inner.update(p);
    }
    let inner: [u8; 16] = inner.finalize().into();
    md5(&[&opad, &inner])
}

/// RFC 2865 §5.2: `User-Password` hidden with the secret and the Request
/// Authenticator (padded to a multiple of 16 bytes; at most 128 bytes).
pub fn hide_password(pw: &[u8], secret: &[u8], req_auth: &[u8; 16]) -> Vec<u8> {
    let pw = &pw[..pw.len().min(128)];
    let n = pw.len().div_ceil(16).max(1) * 16;
    let mut out = Vec::with_capacity(n);
    let mut prev: [u8; 16] = *req_auth;
    for chunk in 0..n / 16 {
        let b = md5(&[secret, &prev]);
        let mut c = [0u8; 16];
        for (i, ci) in c.iter_mut().enumerate() {
            let p = pw.get(chunk * 16 + i).copied().unwrap_or(0);
            *ci = p ^ b[i];
        }
        out.extend_from_slice(&c);
        prev = c;
    }
    out
}

/// The inverse of [`hide_password`] (for tests and servers; padding NULs stripped).
pub fn unhide_password(hidden: &[u8], secret: &[u8], req_auth: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hidden.len());
    let mut prev: Vec<u8> = req_auth.to_vec();
    for c in hidden.chunks(16) {
        let b = md5(&[secret, &prev]);
        out.extend(c.iter().zip(b.iter()).map(|(x, y)| x ^ y));
        prev = c.to_vec();
    }
    while out.last() == Some(&0) {
        out.pop();
    }
    out
}

fn push_attr(out: &mut Vec<u8>, typ: u8, value: &[u8]) -> Result<(), EncodeError> {
    if value.len() > MAX_VALUE {
        return Err(EncodeError::ValueTooLong(typ));
    }
    out.push(typ);
    out.push((value.len() + 2) as u8);
    out.extend_from_slice(value);
    Ok(())
}

fn set_length(p: &mut [u8]) -> Result<(), EncodeError> {
    if p.len() > MAX_PACKET {
        return Err(EncodeError::TooBig);
    }
    let l = (p.len() as u16).to_be_bytes();
    p[2] = l[0];
    p[3] = l[1];
    Ok(())
}

/// An Access-Request: `req_auth` is the Request Authenticator (random), a
/// Message-Authenticator goes first, `User-Password` values (given in clear) are
/// hidden.
pub fn encode_access_request(
    id: u8,
    req_auth: &[u8; 16],
    attrs: &[Attr],
    secret: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut p = Vec::with_capacity(256);
    p.extend_from_slice(&[ACCESS_REQUEST, id, 0, 0]);
    p.extend_from_slice(req_auth);
    let ma_at = p.len() + 2;
    push_attr(&mut p, ATTR_MESSAGE_AUTHENTICATOR, &[0u8; 16])?;
    for a in attrs {
        if a.typ == ATTR_MESSAGE_AUTHENTICATOR {
            continue;
        }
        if a.typ == ATTR_USER_PASSWORD {
            push_attr(&mut p, a.typ, &hide_password(&a.value, secret, req_auth))?;
        } else {
            push_attr(&mut p, a.typ, &a.value)?;
        }
    }
    set_length(&mut p)?;
    let mac = hmac_md5(secret, &[&p]);
    p[ma_at..ma_at + 16].copy_from_slice(&mac);
    Ok(p)
}

/// An Accounting-Request with its computed Request Authenticator.
pub fn encode_accounting_request(
    id: u8,
    attrs: &[Attr],
    secret: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut p = Vec::with_capacity(256);
    p.extend_from_slice(&[ACCOUNTING_REQUEST, id, 0, 0]);
    p.extend_from_slice(&[0u8; 16]);
    for a in attrs {
        push_attr(&mut p, a.typ, &a.value)?;
    }
    set_length(&mut p)?;
    let auth = md5(&[&p, secret]);
    p[4..20].copy_from_slice(&auth);
    Ok(p)
}

/// The Request Authenticator of an encoded request.
pub fn request_authenticator(p: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    if let Some(s) = p.get(4..20) {
        a.copy_from_slice(s);
    }
    a
}

/// Walk the attributes of `body` (the bytes after the header).
pub fn parse_attrs(body: &[u8]) -> Result<Vec<Attr>, DecodeError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let (Some(&typ), Some(&len)) = (body.get(i), body.get(i + 1)) else {
            return Err(DecodeError::BadAttribute);
        };
        let len = len as usize;
        if len < 2 || i + len > body.len() {
            return Err(DecodeError::BadAttribute);
        }
        out.push(Attr::new(typ, &body[i + 2..i + len]));
        i += len;
    }
    Ok(out)
}

/// Parse a datagram's structure: header, length (bytes past it are padding and
/// ignored, RFC 2865 §3) and attributes.
pub fn parse_packet(buf: &[u8]) -> Result<Packet, DecodeError> {
    if buf.len() < HEADER {
        return Err(DecodeError::BadLength);
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    if !(HEADER..=MAX_PACKET).contains(&len) || len > buf.len() {
        return Err(DecodeError::BadLength);
    }
    let mut authenticator = [0u8; 16];
    authenticator.copy_from_slice(&buf[4..20]);
    Ok(Packet {
        code: buf[0],
        id: buf[1],
        authenticator,
        attrs: parse_attrs(&buf[HEADER..len])?,
    })
}

/// Check a datagram as the reply to the request `(req_code, id, req_auth)` sent with
/// `secret`.
pub fn decode_reply(
    buf: &[u8],
    req_code: u8,
    id: u8,
    req_auth: &[u8; 16],
    secret: &[u8],
) -> Result<Reply, DecodeError> {
    let p = parse_packet(buf)?;
    if p.id != id {
        return Err(DecodeError::WrongId);
    }
    let expected: &[u8] = match req_code {
        ACCESS_REQUEST => &[ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_CHALLENGE],
        ACCOUNTING_REQUEST => &[ACCOUNTING_RESPONSE],
        _ => &[],
    };
    if !expected.contains(&p.code) {
        return Err(DecodeError::UnexpectedCode(p.code));
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let pkt = &buf[..len];
    let want = md5(&[&pkt[..4], req_auth, &pkt[HEADER..], secret]);
    if want != p.authenticator {
        return Err(DecodeError::BadAuthenticator);
    }
    // A Message-Authenticator, where present, is HMAC-MD5 over the packet with the
    // request's authenticator in the header and its own value zeroed.
    let mut off = HEADER;
    for a in &p.attrs {
        if a.typ == ATTR_MESSAGE_AUTHENTICATOR {
            if a.value.len() != 16 {
                return Err(DecodeError::BadMessageAuthenticator);
            }
            let mut copy = pkt.to_vec();
            copy[4..20].copy_from_slice(req_auth);
            copy[off + 2..off + 18].fill(0);
            if hmac_md5(secret, &[&copy]) != a.value.as_slice() {
                return Err(DecodeError::BadMessageAuthenticator);
            }
        }
        off += a.value.len() + 2;
    }
    Ok(Reply {
        code: p.code,
        attrs: p.attrs,
    })
}

/// A sub-attribute of a Vendor-Specific value: (type, value).
pub type SubAttr<'a> = (u8, &'a [u8]);

/// A Vendor-Specific value: the vendor id and its sub-attributes (RFC 2865 §5.26's
/// recommended format), or `None` when it does not follow that format.
pub fn vsa_parts(value: &[u8]) -> Option<(u32, Vec<SubAttr<'_>>)> {
    let vendor = u32::from_be_bytes(value.get(..4)?.try_into().ok()?);
    let mut subs = Vec::new();
    let mut rest = &value[4..];
    while !rest.is_empty() {
        let t = *rest.first()?;
        let l = *rest.get(1)? as usize;
        if l < 2 || l > rest.len() {
            return None;
        }
        subs.push((t, &rest[2..l]));
        rest = &rest[l..];
    }
    Some((vendor, subs))
}

/// A Vendor-Specific attribute with one sub-attribute.
pub fn vsa(vendor: u32, typ: u8, value: &[u8]) -> Result<Attr, EncodeError> {
    if value.len() + 6 > MAX_VALUE {
        return Err(EncodeError::ValueTooLong(ATTR_VENDOR_SPECIFIC));
    }
    let mut v = Vec::with_capacity(value.len() + 6);
    v.extend_from_slice(&vendor.to_be_bytes());
    v.push(typ);
    v.push((value.len() + 2) as u8);
    v.extend_from_slice(value);
    Ok(Attr {
        typ: ATTR_VENDOR_SPECIFIC,
        value: v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as a server builds it (for the tests).
    pub fn server_reply(
        code: u8,
        id: u8,
        req_auth: &[u8; 16],
        attrs: &[Attr],
        secret: &[u8],
        with_ma: bool,
    ) -> Vec<u8> {
        let mut p = vec![code, id, 0, 0];
        p.extend_from_slice(req_auth);
        let ma_at = p.len() + 2;
        if with_ma {
            push_attr(&mut p, ATTR_MESSAGE_AUTHENTICATOR, &[0; 16]).unwrap();
        }
        for a in attrs {
            push_attr(&mut p, a.typ, &a.value).unwrap();
        }
        set_length(&mut p).unwrap();
        if with_ma {
            let mac = hmac_md5(secret, &[&p]);
            p[ma_at..ma_at + 16].copy_from_slice(&mac);
        }
        let auth = md5(&[&p, secret]);
        p[4..20].copy_from_slice(&auth);
        p
    }

    #[test]
    fn hmac_md5_rfc2104_vectors() {
        // RFC 2104 appendix test vectors 1 and 2.
        let hex = |b: [u8; 16]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(hmac_md5(&[0x0b; 16], &[b"Hi There"])),
            "9294727a3638bb1c13f48ef8158bfc9d"
        );
        assert_eq!(
            hex(hmac_md5(b"Jefe", &[b"what do ya want for nothing?"])),
            "750c783e6ab0b503eaa86e310a5db738"
        );
    }

    #[test]
    fn password_hiding_round_trip() {
        let ra = [7u8; 16];
        for pw in [
            &b""[..],
            b"secret",
            b"exactly16bytes!!",
            b"a longer password of 33 bytes....",
        ] {
            let h = hide_password(pw, b"xyzzy", &ra);
            assert_eq!(h.len() % 16, 0);
            assert!(!h.is_empty());
            assert_eq!(unhide_password(&h, b"xyzzy", &ra), pw);
        }
    }

    #[test]
    fn access_request_layout_and_reply_check() {
        let ra = [1u8; 16];
        let p = encode_access_request(
            9,
            &ra,
            &[Attr::new(1, b"alice"), Attr::new(ATTR_USER_PASSWORD, b"pw")],
            b"s3",
        )
        .unwrap();
        assert_eq!(p[0], ACCESS_REQUEST);
        assert_eq!(p[1], 9);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]) as usize, p.len());
        let pk = parse_packet(&p).unwrap();
        assert_eq!(pk.attrs[0].typ, ATTR_MESSAGE_AUTHENTICATOR);
        assert_eq!(pk.attrs[1], Attr::new(1, b"alice"));
        assert_eq!(unhide_password(&pk.attrs[2].value, b"s3", &ra), b"pw");
        // The Message-Authenticator verifies.
        let mut z = p.clone();
        z[22..38].fill(0);
        assert_eq!(hmac_md5(b"s3", &[&z]), pk.attrs[0].value.as_slice());

        let ok = server_reply(
            ACCESS_ACCEPT,
            9,
            &ra,
            &[Attr::new(225, b"a:b")],
            b"s3",
            true,
        );
        let r = decode_reply(&ok, ACCESS_REQUEST, 9, &ra, b"s3").unwrap();
        assert_eq!(r.code, ACCESS_ACCEPT);
        assert_eq!(r.values(225).collect::<Vec<_>>(), vec![&b"a:b"[..]]);
        assert_eq!(
            decode_reply(&ok, ACCESS_REQUEST, 8, &ra, b"s3"),
            Err(DecodeError::WrongId)
        );
        assert_eq!(
            decode_reply(&ok, ACCESS_REQUEST, 9, &ra, b"other"),
            Err(DecodeError::BadAuthenticator)
        );
        assert_eq!(
            decode_reply(&ok, ACCOUNTING_REQUEST, 9, &ra, b"s3"),
            Err(DecodeError::UnexpectedCode(ACCESS_ACCEPT))
        );
        // A damaged Message-Authenticator with a recomputed Response Authenticator.
        let mut bad = ok.clone();
        bad[25] ^= 1;
        bad[4..20].copy_from_slice(&ra);
        let auth = md5(&[&bad, b"s3"]);
        bad[4..20].copy_from_slice(&auth);
        assert_eq!(
            decode_reply(&bad, ACCESS_REQUEST, 9, &ra, b"s3"),
            Err(DecodeError::BadMessageAuthenticator)
        );
        // Padding after the length is ignored.
        let mut padded = ok.clone();
        padded.extend_from_slice(&[0xff; 7]);
        assert!(decode_reply(&padded, ACCESS_REQUEST, 9, &ra, b"s3").is_ok());
    }

    #[test]
    fn accounting_authenticator() {
        let p = encode_accounting_request(3, &[Attr::new(40, &1u32.to_be_bytes())], b"k").unwrap();
        let mut z = p.clone();
        z[4..20].fill(0);
        assert_eq!(md5(&[&z, b"k"]), request_authenticator(&p));
        let ra = request_authenticator(&p);
        let r = server_reply(ACCOUNTING_RESPONSE, 3, &ra, &[], b"k", false);
        assert!(decode_reply(&r, ACCOUNTING_REQUEST, 3, &ra, b"k").is_ok());
    }

    #[test]
    fn malformed_input() {
        assert_eq!(parse_packet(&[2, 1, 0]), Err(DecodeError::BadLength));
        let mut p = vec![2, 1, 0, 19];
        p.extend_from_slice(&[0; 16]);
        assert_eq!(parse_packet(&p), Err(DecodeError::BadLength));
        p[3] = 30;
        assert_eq!(parse_packet(&p), Err(DecodeError::BadLength));
        let mut q = vec![2, 1, 0, 23];
        q.extend_from_slice(&[0; 16]);
        q.extend_from_slice(&[1, 1, 0]);
        assert_eq!(parse_packet(&q), Err(DecodeError::BadAttribute));
        q[21] = 4;
        assert_eq!(parse_packet(&q), Err(DecodeError::BadAttribute));
        assert!(encode_access_request(1, &[0; 16], &[Attr::new(1, &[b'x'; 254])], b"s").is_err());
        assert!(vsa_parts(&[0, 0, 0, 9, 1, 1]).is_none());
        let a = vsa(9, 1, b"call-id=x").unwrap();
        let (v, subs) = vsa_parts(&a.value).unwrap();
        assert_eq!((v, subs), (9, vec![(1u8, &b"call-id=x"[..])]));
    }
}
