//! LDAPv3 messages (RFC 4511): the requests this client sends (bind, search, unbind)
//! and the decoder of what a server sends back. The decoder takes outside input and is
//! fuzzed (`ldap_reply`).

use crate::ber::{self, BerError, Reader, int, tlv};
use crate::filter::Filter;

/// Search scope (RFC 4511 §4.5.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Base = 0,
    One = 1,
    Sub = 2,
}

impl Scope {
    /// `base`, `one`/`onelevel`, `sub`/`subtree` (case-insensitive), as the 1.3 module.
    pub fn parse(s: &str) -> Option<Scope> {
        match s.to_ascii_lowercase().as_str() {
            "base" => Some(Scope::Base),
            "one" | "onelevel" => Some(Scope::One),
            "sub" | "subtree" => Some(Scope::Sub),
            _ => None,
        }
    }
}

/// LDAP result code `success`.
pub const SUCCESS: i64 = 0;
/// `sizeLimitExceeded`: the entries sent so far are still a result.
pub const SIZE_LIMIT_EXCEEDED: i64 = 4;
/// `noSuchObject`: the base does not exist, i.e. nothing found.
pub const NO_SUCH_OBJECT: i64 = 32;

fn message(id: i32, op: Vec<u8>) -> Vec<u8> {
    let mut c = int(ber::INTEGER, i64::from(id));
    c.extend(op);
    tlv(ber::SEQUENCE, &c)
}

/// A simple BindRequest (`dn`/`password` empty = anonymous).
pub fn bind_request(id: i32, version: u8, dn: &str, password: &str) -> Vec<u8> {
    let mut c = int(ber::INTEGER, i64::from(version));
    c.extend(tlv(ber::OCTET_STRING, dn.as_bytes()));
    c.extend(tlv(0x80, password.as_bytes()));
    message(id, tlv(0x60, &c))
}

/// An UnbindRequest.
pub fn unbind_request(id: i32) -> Vec<u8> {
    message(id, tlv(0x42, &[]))
}

/// A SearchRequest (aliases never dereferenced, no time limit asked of the server:
/// the client's own deadline bounds the wait).
pub fn search_request(
    id: i32,
    base: &str,
    scope: Scope,
    filter: &Filter,
    attrs: &[String],
    size_limit: i32,
) -> Vec<u8> {
    let mut c = tlv(ber::OCTET_STRING, base.as_bytes());
    c.extend(int(ber::ENUMERATED, scope as i64));
    c.extend(int(ber::ENUMERATED, 0));
    c.extend(int(ber::INTEGER, i64::from(size_limit.max(0))));
    c.extend(int(ber::INTEGER, 0));
    c.extend(tlv(ber::BOOLEAN, &[0]));
    c.extend(filter.encode());
    let a: Vec<u8> = attrs
        .iter()
        .flat_map(|a| tlv(ber::OCTET_STRING, a.as_bytes()))
        .collect();
    c.extend(tlv(ber::SEQUENCE, &a));
    message(id, tlv(0x63, &c))
}

/// The result part of a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LdapResult {
    pub code: i64,
    pub matched_dn: String,
    pub message: String,
}

/// One entry of a search result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    /// Attribute descriptions and their values, in the server's order.
    pub attrs: Vec<(String, Vec<Vec<u8>>)>,
}

impl Entry {
    /// The values of attribute `name` (case-insensitive, as attribute descriptions).
    pub fn values(&self, name: &str) -> Option<&[Vec<u8>]> {
        self.attrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// A server message, as far as this client cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Bind(LdapResult),
    Entry(Entry),
    /// A continuation reference (not followed, as 1.3's module does not chase them).
    Reference,
    Done(LdapResult),
    /// An unsolicited notification (message id 0), e.g. notice of disconnection.
    Notice(LdapResult),
    /// Another operation's response (not expected from this client).
    Other(u8),
}

fn string(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

fn ldap_result(r: &mut Reader<'_>) -> Result<LdapResult, BerError> {
    let code = r.int(ber::ENUMERATED, "resultCode")?;
    let matched_dn = string(r.expect(ber::OCTET_STRING, "matchedDN")?);
    let message = string(r.expect(ber::OCTET_STRING, "diagnosticMessage")?);
    Ok(LdapResult {
        code,
        matched_dn,
        message,
    })
}

fn entry(v: &[u8]) -> Result<Entry, BerError> {
    let mut r = Reader::new(v);
    let dn = string(r.expect(ber::OCTET_STRING, "objectName")?);
    let mut list = Reader::new(r.expect(ber::SEQUENCE, "attributes")?);
    let mut attrs = Vec::new();
    while !list.is_empty() {
        let mut pa = Reader::new(list.expect(ber::SEQUENCE, "PartialAttribute")?);
        let name = string(pa.expect(ber::OCTET_STRING, "attribute type")?);
        let mut vals = Reader::new(pa.expect(ber::SET, "attribute values")?);
        let mut out = Vec::new();
        while !vals.is_empty() {
            out.push(vals.expect(ber::OCTET_STRING, "attribute value")?.to_vec());
        }
        attrs.push((name, out));
    }
    Ok(Entry { dn, attrs })
}

/// Decode one whole LDAPMessage: (message id, response). Trailing bytes after the
/// message, a negative id, or a malformed operation are errors.
pub fn decode(buf: &[u8]) -> Result<(i32, Response), BerError> {
    let mut outer = Reader::new(buf);
    let msg = outer.expect(ber::SEQUENCE, "LDAPMessage")?;
    if !outer.is_empty() {
        return Err(BerError::Invalid("bytes after the message"));
    }
    let mut r = Reader::new(msg);
    let id = r.int(ber::INTEGER, "messageID")?;
    let id = i32::try_from(id)
        .ok()
        .filter(|i| *i >= 0)
        .ok_or(BerError::Invalid("messageID"))?;
    let op = r.next_tlv()?;
    // Controls ([0]) may follow; they are not used.
    let resp = match op.tag {
        0x61 => Response::Bind(ldap_result(&mut Reader::new(op.value))?),
        0x64 => Response::Entry(entry(op.value)?),
        0x65 => Response::Done(ldap_result(&mut Reader::new(op.value))?),
        0x73 => Response::Reference,
        0x78 if id == 0 => Response::Notice(ldap_result(&mut Reader::new(op.value))?),
        t => Response::Other(t),
    };
    Ok((id, resp))
}
