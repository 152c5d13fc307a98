//! The parsed SIP message: owned buffer, first line, header index, cached typed headers,
//! and the per-message processing state the script and modules use.

use std::cell::{Cell, OnceCell};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::hdr::HdrType;
use super::scan::{Span, find_byte, is_lws, is_token, is_ws, parse_u32, token_len, trim};
use super::typed::{self, CSeq, ContactList, ContentType, Digest, Event, NameAddr, Via, ViaList};
use super::uri::Uri;
use crate::msg::Lumps;

/// Largest message we accept or build (OpenSER's BUF_SIZE).
pub const BUF_SIZE: usize = 65535;

/// SIP methods. `Other` covers any extension method (see `method_str()` for its text).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Cancel,
    Bye,
    Register,
    Options,
    Info,
    Update,
    Subscribe,
    Notify,
    Message,
    Prack,
    Refer,
    Publish,
    #[default]
    Other,
}

impl Method {
    /// Method names are case-sensitive (RFC 3261 §7.1); unknown names give `Other`.
    pub fn from_bytes(b: &[u8]) -> Method {
        // Dispatch on length, then fixed-size array compares (inline, no memcmp call).
        fn is<const N: usize>(b: &[u8], lit: &[u8; N]) -> bool {
            <&[u8; N]>::try_from(b).is_ok_and(|a| a == lit)
        }
        match b.len() {
            3 if is(b, b"ACK") => Method::Ack,
            3 if is(b, b"BYE") => Method::Bye,
            4 if is(b, b"INFO") => Method::Info,
            5 if is(b, b"PRACK") => Method::Prack,
            5 if is(b, b"REFER") => Method::Refer,
            6 if is(b, b"INVITE") => Method::Invite,
            6 if is(b, b"CANCEL") => Method::Cancel,
            6 if is(b, b"UPDATE") => Method::Update,
            6 if is(b, b"NOTIFY") => Method::Notify,
            7 if is(b, b"OPTIONS") => Method::Options,
            7 if is(b, b"MESSAGE") => Method::Message,
            7 if is(b, b"PUBLISH") => Method::Publish,
            8 if is(b, b"REGISTER") => Method::Register,
            9 if is(b, b"SUBSCRIBE") => Method::Subscribe,
            _ => Method::Other,
        }
    }
    /// The method name ("" for `Other`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Cancel => "CANCEL",
            Method::Bye => "BYE",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Message => "MESSAGE",
            Method::Prack => "PRACK",
            Method::Refer => "REFER",
            Method::Publish => "PUBLISH",
            Method::Other => "",
        }
    }
}

/// Transport protocol of a socket / Via.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Proto {
    #[default]
    Udp,
    Tcp,
    Tls,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
            Proto::Tls => "TLS",
        }
    }
    /// From a Via transport or `transport=` value (case-insensitive).
    pub fn from_name(s: &[u8]) -> Option<Proto> {
        if s.eq_ignore_ascii_case(b"udp") {
            Some(Proto::Udp)
        } else if s.eq_ignore_ascii_case(b"tcp") {
            Some(Proto::Tcp)
        } else if s.eq_ignore_ascii_case(b"tls") {
            Some(Proto::Tls)
        } else {
            None
        }
    }
}

/// Where the message came from and on which local socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RcvInfo {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub proto: Proto,
    /// Index of the receiving socket in the listen socket table.
    pub sock_idx: usize,
}

impl Default for RcvInfo {
    fn default() -> Self {
        let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        RcvInfo {
            src: a,
            dst: a,
            proto: Proto::Udp,
            sock_idx: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseErrorKind {
    TooBig,
    Empty,
    BadFirstLine,
    BadVersion,
    BadStatus,
    BadHeader,
    BadVia,
    BadCSeq,
    BadContentLength,
    MissingHeader,
    DuplicateHeader,
    BadUri,
}

/// A parse failure: kind, a static description and the buffer offset where it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub kind: ParseErrorKind,
    pub what: &'static str,
    pub offset: u32,
}

impl ParseError {
    pub fn new(kind: ParseErrorKind, what: &'static str, offset: usize) -> ParseError {
        ParseError {
            kind,
            what,
            offset: offset as u32,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}: {} (at offset {})",
            self.kind, self.what, self.offset
        )
    }
}

impl std::error::Error for ParseError {}

/// The first line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstLine {
    Request {
        method: Method,
        method_text: Span,
        uri: Span,
        version: Span,
    },
    Reply {
        version: Span,
        status: u16,
        status_text: Span,
        reason: Span,
    },
}

/// A typed header body, parsed on demand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Via(ViaList),
    NameAddr(NameAddr),
    NameAddrs(Vec<NameAddr>),
    Contact(ContactList),
    CSeq(CSeq),
    Number(u32),
    Digest(Box<Digest>),
    Event(Box<Event>),
    ContentType(Box<ContentType>),
    Tokens(Vec<Span>),
    /// Header types without structure (Call-ID, User-Agent, Other...): use `body`.
    Raw,
}

/// One header field of the index.
#[derive(Clone, Debug)]
pub struct HdrField {
    pub htype: HdrType,
    pub name: Span,
    /// The body without leading/trailing whitespace (folded lines stay inside).
    pub body: Span,
    /// The whole field from the name to and including its line end.
    pub full: Span,
}

type ParsedSlot = OnceCell<Result<Parsed, ParseError>>;

/// Inline cache slots for typed header bodies (a proxy parses a handful of headers).
const CACHE_SLOTS: usize = 8;

/// Typed-parse cache kept beside the header index, so that the index itself has no drop
/// glue and unparsed headers cost nothing. The first `CACHE_SLOTS` headers asked for get
/// an inline slot (`keys` holds header index + 1, 0 = free); after that a slot per header
/// is allocated once.
#[derive(Clone, Debug, Default)]
struct ParsedCache {
    keys: [Cell<u32>; CACHE_SLOTS],
    vals: [ParsedSlot; CACHE_SLOTS],
    spill: OnceCell<Box<[ParsedSlot]>>,
}

impl ParsedCache {
    /// The cache slot of header `idx` (`idx < n_hdrs`).
    #[inline]
    fn slot(&self, idx: usize, n_hdrs: usize) -> Option<&ParsedSlot> {
        let key = idx as u32 + 1;
        for (k, v) in self.keys.iter().zip(self.vals.iter()) {
            let cur = k.get();
            if cur == key {
                return Some(v);
            }
            if cur == 0 {
                k.set(key);
                return Some(v);
            }
        }
        self.spill
            .get_or_init(|| (0..n_hdrs).map(|_| OnceCell::new()).collect())
            .get(idx)
    }
}

/// A SIP message and its processing state (OpenSER's `struct sip_msg`).
#[derive(Clone, Debug)]
pub struct SipMsg {
    buf: Vec<u8>,
    first_line: FirstLine,
    hdrs: Vec<HdrField>,
    cache: ParsedCache,
    /// Offset of the blank line that ends the headers (== end of the last header line).
    hdrs_end: u32,
    body: Span,
    content_length: Option<u32>,
    orig_uri: OnceCell<Result<Uri, ParseError>>,
    /// Receive information (source/destination address, protocol, socket).
    pub rcv: RcvInfo,
    /// Internal message id (`$mi`).
    pub id: u32,
    /// Rewritten Request-URI (`rewriteuri` & co.; `$ru` assignments).
    pub new_uri: Option<String>,
    /// Destination URI (`$du`), overriding the R-URI for forwarding.
    pub dst_uri: Option<String>,
    /// Message flags (`setflag`).
    pub flags: u32,
    /// `force_send_socket`: index into the listen socket table.
    pub force_send_sock: Option<usize>,
    /// `force_rport()`: add `rport=` to the top Via as if the client asked for it.
    pub add_rport: bool,
    /// `add_local_rport()`: add an empty `;rport` to our own Via.
    pub local_rport: bool,
    /// Pending changes to the message.
    pub lumps: Lumps,
    /// Header lines to add to locally generated replies (`append_to_reply`), each
    /// ending in CRLF (added when missing at build time).
    pub reply_lumps: Vec<String>,
    /// The last parse error met on this message (for `$err.*` and `sl_reply_error`).
    pub parse_error: Option<ParseError>,
    /// The credentials header marked by an auth module's pre-check (OpenSER's
    /// `auth_body_t.authorized`/`stale`, kept with the message): index into the
    /// header list, and whether its nonce was stale (the next challenge says
    /// `stale=true`).
    pub auth_mark: Option<AuthMark>,
}

/// See [`SipMsg::auth_mark`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthMark {
    pub hdr_idx: usize,
    pub stale: bool,
}

fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    find_byte(buf.get(from..)?, b'\n').map(|i| i + from)
}

/// End of the header field containing offset `from` (just after its line end, following
/// folded lines), or the buffer end.
#[inline]
fn field_end_from(buf: &[u8], from: usize) -> usize {
    let mut end = from;
    loop {
        match find_lf(buf, end) {
            Some(l) => {
                if buf.get(l + 1).is_some_and(|&c| is_ws(c)) {
                    end = l + 1;
                    continue;
                }
                return l + 1;
            }
            None => return buf.len(),
        }
    }
}

/// The error for a header line whose name is not a token followed by `:`.
#[cold]
fn bad_header_name(buf: &[u8], pos: usize) -> ParseError {
    let field_end = field_end_from(buf, pos);
    let what = if memchr::memchr(b':', &buf[pos..field_end]).is_none() {
        "header without ':'"
    } else {
        "bad header name"
    };
    ParseError::new(ParseErrorKind::BadHeader, what, pos)
}

impl SipMsg {
    /// Parse `data` (copied once) received as described by `rcv`.
    pub fn new(data: &[u8], rcv: RcvInfo) -> Result<SipMsg, ParseError> {
        if data.len() > BUF_SIZE {
            return Err(ParseError::new(
                ParseErrorKind::TooBig,
                "message too big",
                BUF_SIZE,
            ));
        }
        let buf = data.to_vec();
        let mut pos = 0;
        // Tolerate leading empty lines (RFC 3261 §7.5).
        while pos < buf.len() && (buf[pos] == b'\r' || buf[pos] == b'\n') {
            pos += 1;
        }
        if pos >= buf.len() {
            return Err(ParseError::new(ParseErrorKind::Empty, "empty message", pos));
        }
        let lf = find_lf(&buf, pos).ok_or(ParseError::new(
            ParseErrorKind::BadFirstLine,
            "no line end",
            pos,
        ))?;
        let mut le = lf;
        if le > pos && buf[le - 1] == b'\r' {
            le -= 1;
        }
        let first_line = parse_first_line(&buf, pos, le)?;
        pos = lf + 1;
        let mut hdrs: Vec<HdrField> = Vec::with_capacity(16);
        let mut content_length: Option<u32> = None;
        let hdrs_end;
        let body_start;
        loop {
            let Some(&c0) = buf.get(pos) else {
                hdrs_end = buf.len();
                body_start = buf.len();
                break;
            };
            if c0 == b'\n' {
                hdrs_end = pos;
                body_start = pos + 1;
                break;
            }
            if c0 == b'\r' && buf.get(pos + 1) == Some(&b'\n') {
                hdrs_end = pos;
                body_start = pos + 2;
                break;
            }
            if is_ws(c0) {
                return Err(ParseError::new(
                    ParseErrorKind::BadHeader,
                    "continuation line without header",
                    pos,
                ));
            }
            // Header name: token characters, optional whitespace, then ':'. None of these
            // is a line end, so the scan stays inside the first line of the field.
            let rest = &buf[pos..];
            let (htype, name_len) = match HdrType::match_line(rest) {
                Some(x) => x,
                None => {
                    let l = token_len(rest);
                    (HdrType::from_name(&rest[..l]), l)
                }
            };
            let mut p = pos + name_len;
            while let Some(&c) = buf.get(p)
                && is_ws(c)
            {
                p += 1;
            }
            if name_len == 0 || buf.get(p) != Some(&b':') {
                return Err(bad_header_name(&buf, pos));
            }
            p += 1;
            while let Some(&c) = buf.get(p)
                && is_ws(c)
            {
                p += 1;
            }
            let mut bs = p;
            // Line end, following folded lines (a line end followed by SP/HT).
            let mut lf = find_lf(&buf, p).unwrap_or(buf.len());
            let mut folded = false;
            while buf.get(lf + 1).is_some_and(|&c| is_ws(c)) {
                folded = true;
                lf = find_lf(&buf, lf + 1).unwrap_or(buf.len());
            }
            let field_end = (lf + 1).min(buf.len());
            if folded {
                while let Some(&c) = buf.get(bs)
                    && bs < lf
                    && is_lws(c)
                {
                    bs += 1;
                }
            }
            let mut be = lf.min(buf.len());
            while be > bs && is_lws(buf[be - 1]) {
                be -= 1;
            }
            let body = if be > bs {
                Span::new(bs, be)
            } else {
                // As trimming the whole field would place it: at the field end.
                Span::new(field_end, field_end)
            };
            if htype == HdrType::ContentLength {
                let n = typed::parse_number(&buf, body).map_err(|_| {
                    ParseError::new(
                        ParseErrorKind::BadContentLength,
                        "bad Content-Length",
                        body.start as usize,
                    )
                })?;
                if content_length.is_some_and(|old| old != n) {
                    return Err(ParseError::new(
                        ParseErrorKind::BadContentLength,
                        "conflicting Content-Length",
                        pos,
                    ));
                }
                content_length = Some(n);
            }
            hdrs.push(HdrField {
                htype,
                name: Span::new(pos, pos + name_len),
                body,
                full: Span::new(pos, field_end),
            });
            pos = field_end;
        }
        let avail = buf.len() - body_start;
        let body = match content_length {
            Some(cl) if cl as usize > avail => {
                return Err(ParseError::new(
                    ParseErrorKind::BadContentLength,
                    "Content-Length larger than message",
                    body_start,
                ));
            }
            Some(cl) => Span::new(body_start, body_start + cl as usize),
            None => Span::new(body_start, buf.len()),
        };
        Ok(SipMsg {
            buf,
            first_line,
            hdrs,
            cache: ParsedCache::default(),
            hdrs_end: hdrs_end as u32,
            body,
            content_length,
            orig_uri: OnceCell::new(),
            rcv,
            id: 0,
            new_uri: None,
            dst_uri: None,
            flags: 0,
            force_send_sock: None,
            add_rport: false,
            local_rport: false,
            lumps: Lumps::default(),
            reply_lumps: Vec::new(),
            parse_error: None,
            auth_mark: None,
        })
    }

    /// Parse with default receive info (tests, tools).
    pub fn parse(data: &[u8]) -> Result<SipMsg, ParseError> {
        SipMsg::new(data, RcvInfo::default())
    }

    // ----- raw access -----

    pub fn buf(&self) -> &[u8] {
        &self.buf
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// Text of a span of this message ("" if not UTF-8).
    pub fn s(&self, sp: Span) -> &str {
        sp.str(&self.buf)
    }
    /// Text of an optional span.
    pub fn os(&self, sp: Option<Span>) -> Option<&str> {
        sp.map(|s| s.str(&self.buf))
    }
    pub fn first_line(&self) -> &FirstLine {
        &self.first_line
    }
    pub fn is_request(&self) -> bool {
        matches!(self.first_line, FirstLine::Request { .. })
    }
    pub fn is_reply(&self) -> bool {
        !self.is_request()
    }
    /// All header fields in message order.
    pub fn hdrs(&self) -> &[HdrField] {
        &self.hdrs
    }
    /// Offset of the blank line ending the header section.
    pub fn hdrs_end(&self) -> usize {
        self.hdrs_end as usize
    }
    /// Offset of the first header (end of the first line).
    pub fn hdrs_start(&self) -> usize {
        self.hdrs
            .first()
            .map(|h| h.full.start as usize)
            .unwrap_or(self.hdrs_end as usize)
    }
    pub fn body_span(&self) -> Span {
        self.body
    }
    pub fn body(&self) -> &[u8] {
        self.body.bytes(&self.buf)
    }
    /// Content-Length header value, if present.
    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    // ----- first line -----

    /// Request method; for replies the CSeq method (`Other` if unparsable).
    pub fn method(&self) -> Method {
        match self.first_line {
            FirstLine::Request { method, .. } => method,
            FirstLine::Reply { .. } => self.cseq().map(|c| c.method).unwrap_or(Method::Other),
        }
    }
    /// Method text (request line, or CSeq for replies).
    pub fn method_str(&self) -> &str {
        match self.first_line {
            FirstLine::Request { method_text, .. } => self.s(method_text),
            FirstLine::Reply { .. } => self.cseq().map(|c| self.s(c.method_text)).unwrap_or(""),
        }
    }
    /// The original Request-URI text ("" for replies).
    pub fn orig_ruri(&self) -> &str {
        match self.first_line {
            FirstLine::Request { uri, .. } => self.s(uri),
            FirstLine::Reply { .. } => "",
        }
    }
    /// The current Request-URI: `new_uri` if set, else the original.
    pub fn ruri(&self) -> &str {
        match &self.new_uri {
            Some(u) => u,
            None => self.orig_ruri(),
        }
    }
    /// The original R-URI parsed (cached).
    pub fn orig_ruri_parsed(&self) -> Result<&Uri, ParseError> {
        self.orig_uri
            .get_or_init(|| {
                Uri::parse(self.orig_ruri())
                    .map_err(|_| ParseError::new(ParseErrorKind::BadUri, "bad Request-URI", 0))
            })
            .as_ref()
            .map_err(|e| *e)
    }
    /// The current R-URI parsed (parses `new_uri` each call when set).
    pub fn ruri_parsed(&self) -> Result<Uri, ParseError> {
        match &self.new_uri {
            Some(u) => {
                Uri::parse(u).map_err(|_| ParseError::new(ParseErrorKind::BadUri, "bad new URI", 0))
            }
            None => self.orig_ruri_parsed().cloned(),
        }
    }
    /// Reply status code.
    pub fn status(&self) -> Option<u16> {
        match self.first_line {
            FirstLine::Reply { status, .. } => Some(status),
            _ => None,
        }
    }
    /// Reply reason phrase.
    pub fn reason(&self) -> Option<&str> {
        match self.first_line {
            FirstLine::Reply { reason, .. } => Some(self.s(reason)),
            _ => None,
        }
    }

    // ----- headers -----

    fn name_matches(&self, h: &HdrField, name: &str, t: HdrType) -> bool {
        if t != HdrType::Other {
            h.htype == t
        } else {
            h.htype == HdrType::Other
                && h.name
                    .bytes(&self.buf)
                    .eq_ignore_ascii_case(name.as_bytes())
        }
    }
    /// Body of the first header called `name` (case-insensitive; compact forms match).
    pub fn header(&self, name: &str) -> Option<&str> {
        let t = HdrType::from_name(name.as_bytes());
        self.hdrs
            .iter()
            .find(|h| self.name_matches(h, name, t))
            .map(|h| self.s(h.body))
    }
    /// Bodies of all headers called `name`, in message order.
    pub fn headers_by_name(&self, name: &str) -> Vec<&str> {
        let t = HdrType::from_name(name.as_bytes());
        self.hdrs
            .iter()
            .filter(|h| self.name_matches(h, name, t))
            .map(|h| self.s(h.body))
            .collect()
    }
    /// Indices (into `hdrs()`) of all headers called `name`.
    pub fn header_indices(&self, name: &str) -> Vec<usize> {
        let t = HdrType::from_name(name.as_bytes());
        (0..self.hdrs.len())
            .filter(|&i| self.name_matches(&self.hdrs[i], name, t))
            .collect()
    }
    /// Index of the first header of type `t`.
    pub fn first_of(&self, t: HdrType) -> Option<usize> {
        self.hdrs.iter().position(|h| h.htype == t)
    }
    /// Indices of all headers of type `t`.
    pub fn all_of(&self, t: HdrType) -> impl Iterator<Item = usize> + '_ {
        (0..self.hdrs.len()).filter(move |&i| self.hdrs[i].htype == t)
    }

    /// The typed body of header `idx`, parsed now or taken from the cache.
    pub fn parsed(&self, idx: usize) -> Result<&Parsed, ParseError> {
        let Some(h) = self.hdrs.get(idx) else {
            return Err(ParseError::new(
                ParseErrorKind::MissingHeader,
                "no such header",
                0,
            ));
        };
        let Some(slot) = self.cache.slot(idx, self.hdrs.len()) else {
            return Err(ParseError::new(
                ParseErrorKind::MissingHeader,
                "no such header",
                0,
            ));
        };
        slot.get_or_init(|| {
            let b = &self.buf;
            let body = h.body;
            Ok(match h.htype {
                HdrType::Via => Parsed::Via(typed::parse_via(b, body, idx)?),
                HdrType::From | HdrType::To | HdrType::ReferTo => {
                    Parsed::NameAddr(typed::parse_nameaddr(b, body, idx)?)
                }
                HdrType::Route | HdrType::RecordRoute => {
                    Parsed::NameAddrs(typed::parse_nameaddr_list(b, body, idx)?)
                }
                HdrType::Contact => Parsed::Contact(typed::parse_contact(b, body, idx)?),
                HdrType::CSeq => Parsed::CSeq(typed::parse_cseq(b, body)?),
                HdrType::MaxForwards | HdrType::Expires | HdrType::ContentLength => {
                    Parsed::Number(typed::parse_number(b, body)?)
                }
                HdrType::Authorization
                | HdrType::ProxyAuthorization
                | HdrType::WwwAuthenticate
                | HdrType::ProxyAuthenticate => {
                    Parsed::Digest(Box::new(typed::parse_digest(b, body)?))
                }
                HdrType::Event => Parsed::Event(Box::new(typed::parse_event(b, body)?)),
                HdrType::ContentType => {
                    Parsed::ContentType(Box::new(typed::parse_content_type(b, body)?))
                }
                HdrType::Supported
                | HdrType::Require
                | HdrType::ProxyRequire
                | HdrType::Unsupported
                | HdrType::Allow => Parsed::Tokens(typed::parse_tokens(b, body)?),
                _ => Parsed::Raw,
            })
        })
        .as_ref()
        .map_err(|e| *e)
    }

    /// Parse every header (OpenSER's `parse_headers(HDR_EOH_F)` plus typed parsing);
    /// returns the first error.
    pub fn parse_all(&self) -> Result<(), ParseError> {
        let mut first = Ok(());
        for i in 0..self.hdrs.len() {
            if let Err(e) = self.parsed(i)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    fn missing(what: &'static str) -> ParseError {
        ParseError::new(ParseErrorKind::MissingHeader, what, 0)
    }

    /// All Vias in message order (across headers and within them).
    pub fn vias(&self) -> Result<Vec<&Via>, ParseError> {
        let mut out = Vec::new();
        for i in self.all_of(HdrType::Via) {
            if let Parsed::Via(v) = self.parsed(i)? {
                out.extend(v.iter());
            }
        }
        Ok(out)
    }
    /// The topmost Via.
    pub fn via1(&self) -> Result<&Via, ParseError> {
        let i = self.first_of(HdrType::Via).ok_or(Self::missing("no Via"))?;
        match self.parsed(i)? {
            Parsed::Via(v) => v.first().ok_or(Self::missing("empty Via")),
            _ => Err(Self::missing("no Via")),
        }
    }
    /// The second Via (next in the same header, or the first of the next Via header).
    pub fn via2(&self) -> Result<Option<&Via>, ParseError> {
        let mut seen = 0;
        for i in self.all_of(HdrType::Via) {
            if let Parsed::Via(v) = self.parsed(i)? {
                for via in v {
                    seen += 1;
                    if seen == 2 {
                        return Ok(Some(via));
                    }
                }
            }
        }
        Ok(None)
    }
    fn nameaddr_of(&self, t: HdrType, what: &'static str) -> Result<&NameAddr, ParseError> {
        let i = self.first_of(t).ok_or(Self::missing(what))?;
        match self.parsed(i)? {
            Parsed::NameAddr(n) => Ok(n),
            _ => Err(Self::missing(what)),
        }
    }
    pub fn from(&self) -> Result<&NameAddr, ParseError> {
        self.nameaddr_of(HdrType::From, "no From")
    }
    pub fn to(&self) -> Result<&NameAddr, ParseError> {
        self.nameaddr_of(HdrType::To, "no To")
    }
    /// Call-ID body.
    pub fn callid(&self) -> Option<&str> {
        self.first_of(HdrType::CallId)
            .map(|i| self.s(self.hdrs[i].body))
    }
    pub fn cseq(&self) -> Result<&CSeq, ParseError> {
        let i = self
            .first_of(HdrType::CSeq)
            .ok_or(Self::missing("no CSeq"))?;
        match self.parsed(i)? {
            Parsed::CSeq(c) => Ok(c),
            _ => Err(Self::missing("no CSeq")),
        }
    }
    /// All contacts of all Contact headers; `star` is true if any header is `*`.
    pub fn contacts(&self) -> Result<ContactList, ParseError> {
        let mut out = ContactList::default();
        for i in self.all_of(HdrType::Contact) {
            if let Parsed::Contact(c) = self.parsed(i)? {
                out.star |= c.star;
                out.contacts.extend(c.contacts.iter().cloned());
            }
        }
        Ok(out)
    }
    fn number_of(&self, t: HdrType) -> Result<Option<u32>, ParseError> {
        match self.first_of(t) {
            None => Ok(None),
            Some(i) => match self.parsed(i)? {
                Parsed::Number(n) => Ok(Some(*n)),
                _ => Ok(None),
            },
        }
    }
    /// Expires header value (None if absent).
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.number_of(HdrType::Expires)
    }
    /// Max-Forwards value (None if absent).
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        self.number_of(HdrType::MaxForwards)
    }
    /// All Route (or Record-Route) entries in order.
    pub fn routes(&self, t: HdrType) -> Result<Vec<&NameAddr>, ParseError> {
        let mut out = Vec::new();
        for i in self.all_of(t) {
            if let Parsed::NameAddrs(v) = self.parsed(i)? {
                out.extend(v.iter());
            }
        }
        Ok(out)
    }
    /// First credentials/challenge header of type `t` (Authorization, Proxy-Authorization,
    /// WWW-Authenticate, Proxy-Authenticate).
    pub fn auth(&self, t: HdrType) -> Result<Option<&Digest>, ParseError> {
        match self.first_of(t) {
            None => Ok(None),
            Some(i) => match self.parsed(i)? {
                Parsed::Digest(d) => Ok(Some(d.as_ref())),
                _ => Ok(None),
            },
        }
    }
    /// The credentials of type `t` whose realm equals `realm` (case-insensitive);
    /// unparsable headers are skipped.
    pub fn auth_for_realm(&self, t: HdrType, realm: &str) -> Option<&Digest> {
        self.all_of(t).find_map(|i| match self.parsed(i) {
            Ok(Parsed::Digest(d))
                if d.realm
                    .is_some_and(|r| self.s(r).eq_ignore_ascii_case(realm)) =>
            {
                Some(d.as_ref())
            }
            _ => None,
        })
    }
    pub fn event(&self) -> Result<Option<&Event>, ParseError> {
        match self.first_of(HdrType::Event) {
            None => Ok(None),
            Some(i) => match self.parsed(i)? {
                Parsed::Event(e) => Ok(Some(e.as_ref())),
                _ => Ok(None),
            },
        }
    }
    pub fn content_type(&self) -> Result<Option<&ContentType>, ParseError> {
        match self.first_of(HdrType::ContentType) {
            None => Ok(None),
            Some(i) => match self.parsed(i)? {
                Parsed::ContentType(c) => Ok(Some(c.as_ref())),
                _ => Ok(None),
            },
        }
    }
    /// All option tags of all headers of type `t` (Supported, Require, Proxy-Require, ...).
    pub fn tokens(&self, t: HdrType) -> Result<Vec<&str>, ParseError> {
        let mut out = Vec::new();
        for i in self.all_of(t) {
            if let Parsed::Tokens(v) = self.parsed(i)? {
                out.extend(v.iter().map(|s| self.s(*s)));
            }
        }
        Ok(out)
    }
    pub fn user_agent(&self) -> Option<&str> {
        self.first_of(HdrType::UserAgent)
            .map(|i| self.s(self.hdrs[i].body))
    }

    /// Check the headers a proxy needs (Via, From, To, Call-ID, CSeq): present, From/To/
    /// Call-ID/CSeq not duplicated, and Via/From/To/CSeq parsable; on requests also the
    /// RFC 4475 §3.1.2 classes the parse lets through (all answered 400 by the receive
    /// path, which calls this before running the script):
    /// - the CSeq method differs from the request method (mismatch01/02);
    /// - the top Via's branch is only the magic cookie (§3.2.1 badbranch);
    /// - the Request-URI is enclosed in `<>` or has a header part `?` (ltgtruri,
    ///   escruri);
    /// - a Contact not enclosed in `<>` holds a `?` (regbadct, RFC 3261 §20.10);
    /// - a Date header is not in GMT (baddate, RFC 3261 §20.17).
    ///
    /// One pass over the header list finds the mandatory headers and the Contact and
    /// Date bodies to look at.
    pub fn check_mandatory(&self) -> Result<(), ParseError> {
        const NONE: u32 = u32::MAX;
        let via1 = self.via1()?;
        let is_request = self.is_request();
        // first and second index of From, To, Call-ID, CSeq
        let mut idx = [[NONE; 2]; 4];
        let mut syntax: Option<&'static str> = None;
        for (i, h) in self.hdrs.iter().enumerate() {
            let k = match h.htype {
                HdrType::From => 0,
                HdrType::To => 1,
                HdrType::CallId => 2,
                HdrType::CSeq => 3,
                HdrType::Contact if is_request => {
                    let v = h.body.bytes(&self.buf);
                    if memchr::memchr(b'?', v).is_some() && memchr::memchr(b'<', v).is_none() {
                        syntax.get_or_insert("Contact URI with headers not enclosed in <>");
                    }
                    continue;
                }
                HdrType::Other
                    if is_request
                        && h.name.len == 4
                        && h.name.bytes(&self.buf).eq_ignore_ascii_case(b"Date")
                        && !h.body.bytes(&self.buf).ends_with(b" GMT") =>
                {
                    syntax.get_or_insert("Date not in GMT");
                    continue;
                }
                _ => continue,
            };
            let slot = &mut idx[k];
            if slot[0] == NONE {
                slot[0] = i as u32;
            } else if slot[1] == NONE {
                slot[1] = i as u32;
            }
        }
        for (k, what_missing, what_dup) in [
            (0, "missing From", "duplicate From"),
            (1, "missing To", "duplicate To"),
            (2, "missing Call-ID", "duplicate Call-ID"),
            (3, "missing CSeq", "duplicate CSeq"),
        ] {
            let [first, second] = idx[k];
            if first == NONE {
                return Err(Self::missing(what_missing));
            }
            if second != NONE {
                return Err(ParseError::new(
                    ParseErrorKind::DuplicateHeader,
                    what_dup,
                    self.hdrs[second as usize].full.start as usize,
                ));
            }
            self.parsed(first as usize)?;
        }
        if self.s(self.hdrs[idx[2][0] as usize].body).is_empty() {
            return Err(ParseError::new(
                ParseErrorKind::BadHeader,
                "empty Call-ID",
                0,
            ));
        }
        if let FirstLine::Request {
            method_text, uri, ..
        } = self.first_line
        {
            let b = &self.buf;
            let bad = |what| ParseError::new(ParseErrorKind::BadHeader, what, 0);
            if let Ok(Parsed::CSeq(c)) = self.parsed(idx[3][0] as usize)
                && c.method_text.bytes(b) != method_text.bytes(b)
            {
                return Err(bad("CSeq method differs from the request method"));
            }
            if via1
                .branch
                .is_some_and(|br| br.bytes(b).eq_ignore_ascii_case(b"z9hG4bK"))
            {
                return Err(ParseError::new(
                    ParseErrorKind::BadVia,
                    "Via branch is only the magic cookie",
                    0,
                ));
            }
            let u = uri.bytes(b);
            if u.first() == Some(&b'<')
                || u.last() == Some(&b'>')
                || memchr::memchr(b'?', u).is_some()
            {
                return Err(ParseError::new(
                    ParseErrorKind::BadUri,
                    "Request-URI in <> or with headers",
                    uri.start as usize,
                ));
            }
            if let Some(what) = syntax {
                return Err(bad(what));
            }
        }
        Ok(())
    }

    /// The checks of a reply before `onreply_route` and the reply path: a parsable top
    /// Via and CSeq (the transaction match and the stateless relay need both).
    pub fn check_reply(&self) -> Result<(), ParseError> {
        self.via1()?;
        self.cseq()?;
        Ok(())
    }
}

fn is_sip_version(b: &[u8]) -> bool {
    b.eq_ignore_ascii_case(b"SIP/2.0")
}

fn parse_first_line(buf: &[u8], s: usize, e: usize) -> Result<FirstLine, ParseError> {
    let line = &buf[s..e];
    let bad = |w| ParseError::new(ParseErrorKind::BadFirstLine, w, s);
    let sp1 = memchr::memchr(b' ', line).ok_or(bad("no space in first line"))?;
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Reply: SIP-Version SP Status-Code SP Reason-Phrase
        if !is_sip_version(&line[..sp1]) {
            return Err(ParseError::new(
                ParseErrorKind::BadVersion,
                "unsupported SIP version",
                s,
            ));
        }
        let rest = &line[sp1 + 1..];
        if rest.len() < 3
            || !rest[..3].iter().all(|c| c.is_ascii_digit())
            || rest.get(3).is_some_and(|&c| c != b' ')
        {
            return Err(ParseError::new(
                ParseErrorKind::BadStatus,
                "bad status code",
                s + sp1 + 1,
            ));
        }
        let status = parse_u32(&rest[..3]).unwrap_or(0) as u16;
        if !(100..=699).contains(&status) {
            return Err(ParseError::new(
                ParseErrorKind::BadStatus,
                "status out of range",
                s + sp1 + 1,
            ));
        }
        let rs = (s + sp1 + 5).min(e);
        Ok(FirstLine::Reply {
            version: Span::new(s, s + sp1),
            status,
            status_text: Span::new(s + sp1 + 1, s + sp1 + 4),
            reason: Span::new(rs, e),
        })
    } else {
        // Request: Method SP Request-URI SP SIP-Version
        let method_text = Span::new(s, s + sp1);
        if !line[..sp1].iter().all(|&c| is_token(c)) || sp1 == 0 {
            return Err(bad("bad method"));
        }
        let sp2 = memchr::memrchr(b' ', line).ok_or(bad("no version"))?;
        if sp2 <= sp1 + 1 {
            return Err(bad("missing Request-URI"));
        }
        if !is_sip_version(&line[sp2 + 1..]) {
            return Err(ParseError::new(
                ParseErrorKind::BadVersion,
                "unsupported SIP version",
                s + sp2 + 1,
            ));
        }
        let uri = Span::new(s + sp1 + 1, s + sp2);
        if uri.bytes(buf).contains(&b' ') {
            return Err(bad("space in Request-URI"));
        }
        Ok(FirstLine::Request {
            method: Method::from_bytes(&line[..sp1]),
            method_text,
            uri,
            version: Span::new(s + sp2 + 1, e),
        })
    }
}

/// Stream framing for TCP/TLS: the length of the first complete message at the start of
/// `data` (leading CRLFs, e.g. keep-alives, count towards it), `Ok(None)` if more bytes
/// are needed, or an error if the header section is over BUF_SIZE or Content-Length is
/// bad. A missing Content-Length means an empty body on streams (RFC 3261 §18.3).
pub fn stream_frame_len(data: &[u8]) -> Result<Option<usize>, ParseError> {
    let Some(he) = memchr::memmem::find(data, b"\r\n\r\n") else {
        if data.len() > BUF_SIZE {
            return Err(ParseError::new(
                ParseErrorKind::TooBig,
                "header section too big",
                BUF_SIZE,
            ));
        }
        return Ok(None);
    };
    let body_start = he + 4;
    let mut cl = 0usize;
    for line in data[..he].split(|&c| c == b'\n') {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = trim(line, Span::new(0, colon)).bytes(line);
        if HdrType::from_name(name) == HdrType::ContentLength {
            let v = trim(line, Span::new(colon + 1, line.len())).bytes(line);
            cl = parse_u32(v).ok_or(ParseError::new(
                ParseErrorKind::BadContentLength,
                "bad Content-Length",
                0,
            ))? as usize;
        }
    }
    let total = body_start + cl;
    if total > BUF_SIZE {
        return Err(ParseError::new(
            ParseErrorKind::TooBig,
            "message too big",
            BUF_SIZE,
        ));
    }
    Ok(if data.len() >= total {
        Some(total)
    } else {
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn empty_header_body_sits_at_field_end() {
        let m = SipMsg::parse(b"OPTIONS sip:x SIP/2.0\r\nSubject:  \r\nX-A:\r\n\r\n").unwrap();
        let h = m.hdrs();
        assert_eq!(h[0].body, Span::new(h[0].full.end(), h[0].full.end()));
        assert_eq!(h[1].body, Span::new(h[1].full.end(), h[1].full.end()));
    }

    #[test]
    fn method_names() {
        use Method::*;
        for m in [
            Invite, Ack, Cancel, Bye, Register, Options, Info, Update, Subscribe, Notify, Message,
            Prack, Refer, Publish,
        ] {
            assert_eq!(Method::from_bytes(m.as_str().as_bytes()), m);
            assert_eq!(
                Method::from_bytes(m.as_str().to_lowercase().as_bytes()),
                Other
            );
        }
        for b in [&b""[..], b"INVITEX", b"INVIT", b"FOO", b"SUBSCRIBER"] {
            assert_eq!(Method::from_bytes(b), Other);
        }
    }

    #[test]
    fn frame() {
        let m = b"OPTIONS sip:x SIP/2.0\r\nl: 3\r\n\r\nabcNEXT";
        assert_eq!(stream_frame_len(m).unwrap(), Some(m.len() - 4));
        assert_eq!(stream_frame_len(&m[..20]).unwrap(), None);
        assert_eq!(stream_frame_len(&m[..m.len() - 6]).unwrap(), None);
        assert!(stream_frame_len(b"A\r\nContent-Length: x\r\n\r\n").is_err());
        assert_eq!(stream_frame_len(b"A\r\n\r\n").unwrap(), Some(5));
    }
}
