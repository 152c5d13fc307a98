//! RFC 4515 search filter strings → the RFC 4511 `Filter` and its BER encoding.
//!
//! Accepted: `(&…)`, `(|…)`, `(!…)`, `attr=value`, `attr~=value`, `attr>=value`,
//! `attr<=value`, `attr=*` (present), substrings `attr=ini*any*fin`, and extensible
//! matches `attr[:dn][:rule]:=value` / `[:dn]:rule:=value`; values with `\XX` hex
//! escapes. As OpenLDAP's library, a filter without its outer parentheses is taken
//! as if it had them, and an empty filter is `(objectClass=*)`. Nesting is limited
//! (64 levels), so a hostile string cannot exhaust the stack.

use crate::ber::{self, tlv};

/// A parsed filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Equal(String, Vec<u8>),
    Substrings {
        attr: String,
        initial: Option<Vec<u8>>,
        any: Vec<Vec<u8>>,
        fin: Option<Vec<u8>>,
    },
    GreaterOrEqual(String, Vec<u8>),
    LessOrEqual(String, Vec<u8>),
    Present(String),
    Approx(String, Vec<u8>),
    Extensible {
        rule: Option<String>,
        attr: Option<String>,
        value: Vec<u8>,
        dn: bool,
    },
}

const MAX_DEPTH: usize = 64;

/// Parse a filter string.
pub fn parse(s: &str) -> Result<Filter, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(Filter::Present("objectClass".into()));
    }
    let owned;
    let t = if t.starts_with('(') {
        t
    } else {
        owned = format!("({t})");
        &owned
    };
    let b = t.as_bytes();
    let (f, used) = parse_at(b, 0, 0)?;
    if used != b.len() {
        return Err(format!("filter '{s}': unexpected text at {used}"));
    }
    Ok(f)
}

fn err(pos: usize, what: &str) -> String {
    format!("bad filter at offset {pos}: {what}")
}

/// Parse `( … )` at `pos`; returns the filter and the offset after `)`.
fn parse_at(b: &[u8], pos: usize, depth: usize) -> Result<(Filter, usize), String> {
    if depth > MAX_DEPTH {
        return Err(err(pos, "nested too deeply"));
    }
    if b.get(pos) != Some(&b'(') {
        return Err(err(pos, "'(' expected"));
    }
    let mut p = pos + 1;
    let f = match b.get(p) {
        Some(&c @ (b'&' | b'|')) => {
            p += 1;
            let mut subs = Vec::new();
            while b.get(p) == Some(&b'(') {
                let (f, np) = parse_at(b, p, depth + 1)?;
                subs.push(f);
                p = np;
            }
            if subs.is_empty() {
                return Err(err(p, "empty filter list"));
            }
            if c == b'&' {
                Filter::And(subs)
            } else {
                Filter::Or(subs)
            }
        }
        Some(b'!') => {
            let (f, np) = parse_at(b, p + 1, depth + 1)?;
            p = np;
            Filter::Not(Box::new(f))
        }
        Some(_) => {
            let end = b[p..]
                .iter()
                .position(|c| *c == b')')
                .map(|i| p + i)
                .ok_or_else(|| err(p, "')' missing"))?;
            let f = parse_item(&b[p..end], p)?;
            p = end;
            f
        }
        None => return Err(err(p, "truncated")),
    };
    if b.get(p) != Some(&b')') {
        return Err(err(p, "')' expected"));
    }
    Ok((f, p + 1))
}

fn valid_attr(a: &[u8]) -> bool {
    !a.is_empty()
        && a.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b';'))
}

fn attr_string(a: &[u8], pos: usize) -> Result<String, String> {
    if !valid_attr(a) {
        return Err(err(pos, "bad attribute description"));
    }
    Ok(String::from_utf8_lossy(a).into_owned())
}

/// Undo `\XX` escapes of an assertion value.
pub fn unescape(v: &[u8], pos: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'\\' => {
                let h = v
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| err(pos + i, "bad \\XX escape"))?;
                out.push(h);
                i += 3;
            }
            b'(' | b')' | b'*' | 0 => return Err(err(pos + i, "unescaped special character")),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn parse_item(it: &[u8], pos: usize) -> Result<Filter, String> {
    let eq = it
        .iter()
        .position(|c| *c == b'=')
        .ok_or_else(|| err(pos, "'=' missing"))?;
    let (lhs, value) = (&it[..eq], &it[eq + 1..]);
    let vpos = pos + eq + 1;
    match lhs.last() {
        Some(b'~') => Ok(Filter::Approx(
            attr_string(&lhs[..lhs.len() - 1], pos)?,
            unescape(value, vpos)?,
        )),
        Some(b'>') => Ok(Filter::GreaterOrEqual(
            attr_string(&lhs[..lhs.len() - 1], pos)?,
            unescape(value, vpos)?,
        )),
        Some(b'<') => Ok(Filter::LessOrEqual(
            attr_string(&lhs[..lhs.len() - 1], pos)?,
            unescape(value, vpos)?,
        )),
        Some(b':') => parse_extensible(&lhs[..lhs.len() - 1], value, pos, vpos),
        _ => {
            let attr = attr_string(lhs, pos)?;
            if value == b"*" {
                return Ok(Filter::Present(attr));
            }
            if !value.contains(&b'*') {
                return Ok(Filter::Equal(attr, unescape(value, vpos)?));
            }
            let parts: Vec<&[u8]> = value.split(|c| *c == b'*').collect();
            let n = parts.len();
            let mut any = Vec::new();
            let mut off = vpos;
            let mut initial = None;
            let mut fin = None;
            for (i, part) in parts.iter().enumerate() {
                if !part.is_empty() {
                    let v = unescape(part, off)?;
                    if i == 0 {
                        initial = Some(v);
                    } else if i == n - 1 {
                        fin = Some(v);
                    } else {
                        any.push(v);
                    }
                } else if i != 0 && i != n - 1 {
                    return Err(err(off, "empty substring between '*'"));
                }
                off += part.len() + 1;
            }
            Ok(Filter::Substrings {
                attr,
                initial,
                any,
                fin,
            })
        }
    }
}

fn parse_extensible(lhs: &[u8], value: &[u8], pos: usize, vpos: usize) -> Result<Filter, String> {
    // attr[:dn][:rule] or [:dn]:rule (the trailing ':' of ":=" is already cut)
    let parts: Vec<&[u8]> = lhs.split(|c| *c == b':').collect();
    let (attr, rest) = if lhs.first() == Some(&b':') {
        (None, &parts[1..])
    } else {
        (Some(attr_string(parts[0], pos)?), &parts[1..])
    };
    let mut dn = false;
    let mut rule = None;
    for (i, p) in rest.iter().enumerate() {
        if i == 0 && p.eq_ignore_ascii_case(b"dn") {
            dn = true;
        } else if rule.is_none() && (i == rest.len() - 1) {
            rule = Some(attr_string(p, pos)?);
        } else {
            return Err(err(pos, "bad extensible match"));
        }
    }
    if attr.is_none() && rule.is_none() {
        return Err(err(pos, "extensible match needs a type or a rule"));
    }
    Ok(Filter::Extensible {
        rule,
        attr,
        value: unescape(value, vpos)?,
        dn,
    })
}

fn ava(tag: u8, attr: &str, v: &[u8]) -> Vec<u8> {
    let mut c = tlv(ber::OCTET_STRING, attr.as_bytes());
    c.extend(tlv(ber::OCTET_STRING, v));
    tlv(tag, &c)
}

impl Filter {
    /// The BER encoding (RFC 4511 §4.5.1 `Filter`).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Filter::And(v) | Filter::Or(v) => {
                let tag = if matches!(self, Filter::And(_)) {
                    0xa0
                } else {
                    0xa1
                };
                let c: Vec<u8> = v.iter().flat_map(|f| f.encode()).collect();
                tlv(tag, &c)
            }
            Filter::Not(f) => tlv(0xa2, &f.encode()),
            Filter::Equal(a, v) => ava(0xa3, a, v),
            Filter::Substrings {
                attr,
                initial,
                any,
                fin,
            } => {
                let mut subs = Vec::new();
                if let Some(i) = initial {
                    subs.extend(tlv(0x80, i));
                }
                for a in any {
                    subs.extend(tlv(0x81, a));
                }
                if let Some(f) = fin {
                    subs.extend(tlv(0x82, f));
                }
                let mut c = tlv(ber::OCTET_STRING, attr.as_bytes());
                c.extend(tlv(ber::SEQUENCE, &subs));
                tlv(0xa4, &c)
            }
            Filter::GreaterOrEqual(a, v) => ava(0xa5, a, v),
            Filter::LessOrEqual(a, v) => ava(0xa6, a, v),
            Filter::Present(a) => tlv(0x87, a.as_bytes()),
            Filter::Approx(a, v) => ava(0xa8, a, v),
            Filter::Extensible {
                rule,
                attr,
                value,
                dn,
            } => {
                let mut c = Vec::new();
                if let Some(r) = rule {
                    c.extend(tlv(0x81, r.as_bytes()));
                }
                if let Some(a) = attr {
                    c.extend(tlv(0x82, a.as_bytes()));
                }
                c.extend(tlv(0x83, value));
                if *dn {
                    c.extend(tlv(0x84, &[0xff]));
                }
                tlv(0xa9, &c)
            }
        }
    }
}

/// RFC 4515 escaping of a value for a filter (`*`, `(`, `)`, `\`, NUL as `\XX`), and
/// with `url_encode` also `?` as `%3F` for use inside an LDAP URL (the ldap module's
/// `ldap_filter_url_encode`).
pub fn escape(s: &str, url_encode: bool) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            '?' if url_encode => out.push_str("%3F"),
            c => out.push(c),
        }
    }
    out
}
