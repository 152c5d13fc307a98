//! Typed header bodies. Every field is a [`Span`] into the message buffer; read it with
//! `msg.s(span)` (or `span.str(msg.buf())`).

use super::msg::{Method, ParseError, ParseErrorKind};
use super::scan::{
    C_COLON, C_COMMA, C_LWS, C_SEMI, Cur, Param, Params, Span, find_byte, find_param, is_lws,
    parse_u32, trim,
};

fn err(kind: ParseErrorKind, what: &'static str, at: usize) -> ParseError {
    ParseError {
        kind,
        what,
        offset: at as u32,
    }
}

/// One via-parm. `full` covers `SIP/2.0/UDP host:port;params` (no comma).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Via {
    /// Protocol name and version (`SIP`, `2.0`) and transport (`UDP`, `TCP`, `TLS`, `SCTP`...).
    pub name: Span,
    pub version: Span,
    pub transport: Span,
    /// Sent-by host; IPv6 references keep their brackets.
    pub host: Span,
    /// Port number text (empty if absent) and its value.
    pub port_text: Span,
    pub port: Option<u16>,
    /// All parameters as written, from the first `;` (read them with [`Via::params`]).
    pub params_span: Span,
    pub branch: Option<Span>,
    pub received: Option<Span>,
    /// `Some(empty)` for `;rport` without a value.
    pub rport: Option<Span>,
    /// The whole `rport[=x]` parameter, for replacing it.
    pub rport_param: Option<Span>,
    pub maddr: Option<Span>,
    pub ttl: Option<Span>,
    pub full: Span,
    /// Index of the header field holding this via in `msg.hdrs()`.
    pub hdr_idx: usize,
}

/// The via-parms of one Via header. One per header is the common case and stays inline.
pub type ViaList = smallvec::SmallVec<[Via; 1]>;

/// Parse all via-parms in one Via header body.
pub fn parse_via(buf: &[u8], body: Span, hdr_idx: usize) -> Result<ViaList, ParseError> {
    let mut c = Cur::new(buf, body);
    let mut out = ViaList::new();
    loop {
        c.skip_lws();
        if c.at_end() {
            break;
        }
        let start = c.pos;
        let name = c.token();
        if name.is_empty() || !c.eat(b'/') {
            return Err(err(ParseErrorKind::BadVia, "bad via protocol name", c.pos));
        }
        c.skip_lws();
        let version = c.token();
        if version.is_empty() || !c.eat(b'/') {
            return Err(err(ParseErrorKind::BadVia, "bad via version", c.pos));
        }
        c.skip_lws();
        let transport = c.token();
        if transport.is_empty() {
            return Err(err(ParseErrorKind::BadVia, "bad via transport", c.pos));
        }
        c.skip_lws();
        let host = if c.peek() == Some(b'[') {
            let s = c.pos;
            while let Some(ch) = c.peek() {
                c.pos += 1;
                if ch == b']' {
                    break;
                }
            }
            if c.buf.get(c.pos.wrapping_sub(1)) != Some(&b']') || c.pos > c.end {
                return Err(err(
                    ParseErrorKind::BadVia,
                    "unterminated IPv6 reference",
                    s,
                ));
            }
            Span::new(s, c.pos)
        } else {
            c.until_class(C_LWS | C_COLON | C_SEMI | C_COMMA)
        };
        if host.is_empty() {
            return Err(err(ParseErrorKind::BadVia, "empty via host", c.pos));
        }
        let mut port_text = Span::new(c.pos, c.pos);
        let mut port = None;
        if c.eat(b':') {
            c.skip_lws();
            let s = c.pos;
            while c.peek().is_some_and(|d| d.is_ascii_digit()) {
                c.pos += 1;
            }
            port_text = Span::new(s, c.pos);
            let p = parse_u32(port_text.bytes(buf))
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| err(ParseErrorKind::BadVia, "bad via port", s))?;
            port = Some(p);
        }
        let mut v = Via {
            name,
            version,
            transport,
            host,
            port_text,
            port,
            hdr_idx,
            ..Default::default()
        };
        v.params_span = c
            .each_param(true, |p| {
                let n = p.name.bytes(buf);
                let val = p.value.unwrap_or(Span::new(p.full.end(), p.full.end()));
                let slot = match n.len() {
                    6 if n.eq_ignore_ascii_case(b"branch") => &mut v.branch,
                    8 if n.eq_ignore_ascii_case(b"received") => &mut v.received,
                    5 if n.eq_ignore_ascii_case(b"rport") => {
                        v.rport_param = Some(p.full);
                        &mut v.rport
                    }
                    5 if n.eq_ignore_ascii_case(b"maddr") => &mut v.maddr,
                    3 if n.eq_ignore_ascii_case(b"ttl") => &mut v.ttl,
                    _ => return,
                };
                *slot = Some(val);
            })
            .map_err(|w| err(ParseErrorKind::BadVia, w, c.pos))?;
        v.full = Span::new(start, c.pos);
        out.push(v);
        c.skip_lws();
        match c.peek() {
            None => break,
            Some(b',') => c.pos += 1,
            Some(_) => return Err(err(ParseErrorKind::BadVia, "garbage after via", c.pos)),
        }
    }
    if out.is_empty() {
        return Err(err(
            ParseErrorKind::BadVia,
            "empty Via header",
            body.start as usize,
        ));
    }
    Ok(out)
}

/// A name-addr or addr-spec with header parameters (To, From, Contact, Route, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name as written (quotes included if quoted), if any.
    pub display: Option<Span>,
    /// The URI text (inside `<>` when bracketed).
    pub uri: Span,
    /// All header parameters as written, from the first `;` (read them with
    /// [`NameAddr::params`]).
    pub params_span: Span,
    pub tag: Option<Span>,
    /// Contact `q` and `expires` parameters.
    pub q: Option<Span>,
    pub expires: Option<Span>,
    /// The whole element (display name to last parameter).
    pub full: Span,
    pub hdr_idx: usize,
}

fn parse_one_nameaddr(c: &mut Cur, list: bool, hdr_idx: usize) -> Result<NameAddr, ParseError> {
    let buf = c.buf;
    c.skip_lws();
    let start = c.pos;
    let mut na = NameAddr {
        hdr_idx,
        ..Default::default()
    };
    // Look for '<' before the element ends (outside quotes).
    let mut i = c.pos;
    let mut in_q = false;
    let mut lt = None;
    while i < c.end {
        let ch = buf[i];
        if in_q {
            if ch == b'\\' {
                i += 1;
            } else if ch == b'"' {
                in_q = false;
            }
        } else if ch == b'"' {
            in_q = true;
        } else if ch == b'<' {
            lt = Some(i);
            break;
        } else if (ch == b',' && list) || ch == b';' {
            break;
        }
        i += 1;
    }
    if let Some(lt) = lt {
        let d = trim(buf, Span::new(start, lt));
        if !d.is_empty() {
            // An unquoted display name must not hold the separators that give the
            // header another meaning (RFC 4475 baddn: `Bell, Alexander <sip:..>` reads
            // as two addresses): `,` `;` `"` `@` `\` or control characters. RFC 3261
            // allows only tokens there; the rest of the separators (`(home)`, `[2]`,
            // `Room: 5`) and UTF-8 are seen in the field and harmless, and stay accepted
            // as in 1.2.
            let db = d.bytes(buf);
            if db[0] != b'"'
                && db.iter().any(|&ch| {
                    matches!(ch, b',' | b';' | b'"' | b'@' | b'\\' | 0x7f)
                        || (ch < b' ' && ch != b'\t' && ch != b'\r' && ch != b'\n')
                })
            {
                return Err(err(
                    ParseErrorKind::BadHeader,
                    "display name with separators, not quoted",
                    start,
                ));
            }
            na.display = Some(d);
        }
        let us = lt + 1;
        let gt = find_byte(buf.get(us..c.end).unwrap_or(&[]), b'>')
            .map(|x| x + us)
            .ok_or_else(|| err(ParseErrorKind::BadHeader, "missing '>'", us))?;
        // No LWS just inside the brackets (RFC 4475 badaspec).
        if gt == us || is_lws(buf[us]) || is_lws(buf[gt - 1]) {
            return Err(err(ParseErrorKind::BadHeader, "space inside <>", us));
        }
        na.uri = Span::new(us, gt);
        c.pos = gt + 1;
    } else {
        c.skip_lws();
        let s = c.pos;
        let stops: &[u8] = if list { b";," } else { b";" };
        let u = c.until(stops);
        na.uri = Span::new(s, u.end());
    }
    if na.uri.is_empty() {
        return Err(err(ParseErrorKind::BadHeader, "empty URI", c.pos));
    }
    na.params_span = c
        .each_param(list, |p| {
            let n = p.name.bytes(buf);
            let val = p.value.unwrap_or(Span::new(p.full.end(), p.full.end()));
            let slot = match n.len() {
                3 if n.eq_ignore_ascii_case(b"tag") => &mut na.tag,
                1 if n.eq_ignore_ascii_case(b"q") => &mut na.q,
                7 if n.eq_ignore_ascii_case(b"expires") => &mut na.expires,
                _ => return,
            };
            *slot = Some(val);
        })
        .map_err(|w| err(ParseErrorKind::BadHeader, w, c.pos))?;
    na.full = Span::new(start, c.pos);
    Ok(na)
}

/// Parse a single name-addr header (To, From, Refer-To ...).
pub fn parse_nameaddr(buf: &[u8], body: Span, hdr_idx: usize) -> Result<NameAddr, ParseError> {
    let mut c = Cur::new(buf, body);
    let na = parse_one_nameaddr(&mut c, false, hdr_idx)?;
    c.skip_lws();
    if !c.at_end() {
        return Err(err(
            ParseErrorKind::BadHeader,
            "garbage after address",
            c.pos,
        ));
    }
    Ok(na)
}

/// Parse a comma-separated list of name-addrs (Route, Record-Route, Contact).
pub fn parse_nameaddr_list(
    buf: &[u8],
    body: Span,
    hdr_idx: usize,
) -> Result<Vec<NameAddr>, ParseError> {
    let mut c = Cur::new(buf, body);
    let mut out = Vec::new();
    loop {
        c.skip_lws();
        if c.at_end() {
            break;
        }
        out.push(parse_one_nameaddr(&mut c, true, hdr_idx)?);
        c.skip_lws();
        match c.peek() {
            None => break,
            Some(b',') => c.pos += 1,
            Some(_) => {
                return Err(err(
                    ParseErrorKind::BadHeader,
                    "garbage in address list",
                    c.pos,
                ));
            }
        }
    }
    if out.is_empty() {
        return Err(err(
            ParseErrorKind::BadHeader,
            "empty address list",
            body.start as usize,
        ));
    }
    Ok(out)
}

/// A Contact header body: `*` or a list of contacts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContactList {
    pub star: bool,
    pub contacts: Vec<NameAddr>,
}

pub fn parse_contact(buf: &[u8], body: Span, hdr_idx: usize) -> Result<ContactList, ParseError> {
    let t = trim(buf, body);
    if t.bytes(buf) == b"*" {
        return Ok(ContactList {
            star: true,
            contacts: Vec::new(),
        });
    }
    Ok(ContactList {
        star: false,
        contacts: parse_nameaddr_list(buf, body, hdr_idx)?,
    })
}

/// CSeq: number and method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CSeq {
    pub num: u32,
    pub num_text: Span,
    pub method: Method,
    pub method_text: Span,
}

pub fn parse_cseq(buf: &[u8], body: Span) -> Result<CSeq, ParseError> {
    let mut c = Cur::new(buf, body);
    c.skip_lws();
    let s = c.pos;
    let mut num: u64 = 0;
    while let Some(&d) = c.buf.get(c.pos)
        && d.is_ascii_digit()
    {
        num = num * 10 + u64::from(d - b'0');
        c.pos += 1;
        if c.pos - s > 10 {
            break;
        }
    }
    let num_text = Span::new(s, c.pos);
    let num = match u32::try_from(num) {
        Ok(n) if !num_text.is_empty() && num_text.len <= 10 => n,
        _ => return Err(err(ParseErrorKind::BadCSeq, "bad CSeq number", s)),
    };
    if !c.peek().is_some_and(is_lws) {
        return Err(err(ParseErrorKind::BadCSeq, "missing space in CSeq", c.pos));
    }
    c.skip_lws();
    let method_text = c.token();
    c.skip_lws();
    if method_text.is_empty() || !c.at_end() {
        return Err(err(ParseErrorKind::BadCSeq, "bad CSeq method", c.pos));
    }
    Ok(CSeq {
        num,
        num_text,
        method: Method::from_bytes(method_text.bytes(buf)),
        method_text,
    })
}

/// A number header (Max-Forwards, Expires, Content-Length).
pub fn parse_number(buf: &[u8], body: Span) -> Result<u32, ParseError> {
    let t = trim(buf, body);
    parse_u32(t.bytes(buf))
        .ok_or_else(|| err(ParseErrorKind::BadHeader, "bad number", body.start as usize))
}

/// Digest credentials or challenge (Authorization, Proxy-Authorization, WWW-/Proxy-Authenticate).
/// Quoted values are stored without quotes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Digest {
    pub scheme: Span,
    pub username: Option<Span>,
    pub realm: Option<Span>,
    pub nonce: Option<Span>,
    pub uri: Option<Span>,
    pub response: Option<Span>,
    pub algorithm: Option<Span>,
    pub cnonce: Option<Span>,
    pub opaque: Option<Span>,
    pub qop: Option<Span>,
    pub nc: Option<Span>,
    pub stale: Option<Span>,
    pub domain: Option<Span>,
    /// All parameters in order (including the ones above).
    pub params: Vec<Param>,
}

pub fn parse_digest(buf: &[u8], body: Span) -> Result<Digest, ParseError> {
    let mut c = Cur::new(buf, body);
    c.skip_lws();
    let scheme = c.token();
    if scheme.is_empty() {
        return Err(err(ParseErrorKind::BadHeader, "missing auth scheme", c.pos));
    }
    let mut d = Digest {
        scheme,
        // Credentials carry up to eleven parameters: one allocation.
        params: Vec::with_capacity(12),
        ..Default::default()
    };
    loop {
        c.skip_lws();
        if c.at_end() {
            break;
        }
        let name = c.token();
        if name.is_empty() || !c.eat(b'=') {
            return Err(err(ParseErrorKind::BadHeader, "bad auth parameter", c.pos));
        }
        c.skip_lws();
        let value = if c.peek() == Some(b'"') {
            c.quoted()
                .ok_or_else(|| err(ParseErrorKind::BadHeader, "unterminated quote", c.pos))?
        } else {
            c.until_class(C_LWS | C_COMMA)
        };
        let p = Param {
            name,
            value: Some(value),
            full: Span::new(name.start as usize, c.pos),
        };
        let n = name.bytes(buf);
        // Lower-case the name on the stack (the known names are at most 9 bytes).
        let mut low = [0u8; 9];
        let key: &[u8] = match low.get_mut(..n.len()) {
            Some(l) => {
                l.copy_from_slice(n);
                l.make_ascii_lowercase();
                l
            }
            None => b"",
        };
        let slot = match key {
            b"username" => Some(&mut d.username),
            b"realm" => Some(&mut d.realm),
            b"nonce" => Some(&mut d.nonce),
            b"uri" => Some(&mut d.uri),
            b"response" => Some(&mut d.response),
            b"algorithm" => Some(&mut d.algorithm),
            b"cnonce" => Some(&mut d.cnonce),
            b"opaque" => Some(&mut d.opaque),
            b"qop" => Some(&mut d.qop),
            b"nc" => Some(&mut d.nc),
            b"stale" => Some(&mut d.stale),
            b"domain" => Some(&mut d.domain),
            _ => None,
        };
        if let Some(s) = slot {
            *s = Some(value);
        }
        d.params.push(p);
        c.skip_lws();
        match c.peek() {
            None => break,
            Some(b',') => c.pos += 1,
            Some(_) => {
                return Err(err(
                    ParseErrorKind::BadHeader,
                    "garbage in auth header",
                    c.pos,
                ));
            }
        }
    }
    Ok(d)
}

/// Event header: package name and parameters (`id`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub name: Span,
    pub params: Params,
}

pub fn parse_event(buf: &[u8], body: Span) -> Result<Event, ParseError> {
    let mut c = Cur::new(buf, body);
    c.skip_lws();
    let name = c.token();
    if name.is_empty() {
        return Err(err(ParseErrorKind::BadHeader, "empty event", c.pos));
    }
    let params = c
        .params(false)
        .map_err(|w| err(ParseErrorKind::BadHeader, w, c.pos))?;
    c.skip_lws();
    if !c.at_end() {
        return Err(err(ParseErrorKind::BadHeader, "garbage after event", c.pos));
    }
    Ok(Event { name, params })
}

/// Content-Type: `type/subtype;params`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentType {
    pub mtype: Span,
    pub subtype: Span,
    pub params: Params,
}

pub fn parse_content_type(buf: &[u8], body: Span) -> Result<ContentType, ParseError> {
    let mut c = Cur::new(buf, body);
    c.skip_lws();
    let mtype = c.token();
    if mtype.is_empty() || !c.eat(b'/') {
        return Err(err(ParseErrorKind::BadHeader, "bad content type", c.pos));
    }
    c.skip_lws();
    let subtype = c.token();
    if subtype.is_empty() {
        return Err(err(ParseErrorKind::BadHeader, "bad content subtype", c.pos));
    }
    let params = c
        .params(false)
        .map_err(|w| err(ParseErrorKind::BadHeader, w, c.pos))?;
    c.skip_lws();
    if !c.at_end() {
        return Err(err(
            ParseErrorKind::BadHeader,
            "garbage after content type",
            c.pos,
        ));
    }
    Ok(ContentType {
        mtype,
        subtype,
        params,
    })
}

/// Comma-separated token list (Supported, Require, Proxy-Require, Unsupported, Allow).
pub fn parse_tokens(buf: &[u8], body: Span) -> Result<Vec<Span>, ParseError> {
    let mut c = Cur::new(buf, body);
    let mut out = Vec::with_capacity(8);
    loop {
        c.skip_lws();
        if c.at_end() {
            break;
        }
        let t = c.token();
        if t.is_empty() {
            return Err(err(ParseErrorKind::BadHeader, "bad token in list", c.pos));
        }
        out.push(t);
        c.skip_lws();
        match c.peek() {
            None => break,
            Some(b',') => c.pos += 1,
            Some(_) => {
                return Err(err(
                    ParseErrorKind::BadHeader,
                    "garbage in token list",
                    c.pos,
                ));
            }
        }
    }
    Ok(out)
}

/// The parameters of an already validated parameter span.
fn params_of(buf: &[u8], span: Span, comma_stops: bool) -> Params {
    Cur::new(buf, span).params(comma_stops).unwrap_or_default()
}

impl Via {
    /// All parameters in order (parsed again from `params_span`).
    pub fn params(&self, buf: &[u8]) -> Params {
        params_of(buf, self.params_span, false)
    }
    pub fn param(&self, buf: &[u8], name: &str) -> Option<Param> {
        find_param(buf, &self.params(buf), name).copied()
    }
}

impl NameAddr {
    /// All header parameters in order (parsed again from `params_span`).
    pub fn params(&self, buf: &[u8]) -> Params {
        params_of(buf, self.params_span, false)
    }
    pub fn param(&self, buf: &[u8], name: &str) -> Option<Param> {
        find_param(buf, &self.params(buf), name).copied()
    }
}

impl Digest {
    pub fn param<'a>(&'a self, buf: &[u8], name: &str) -> Option<&'a Param> {
        find_param(buf, &self.params, name)
    }
}
