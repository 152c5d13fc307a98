//! SDP reading and rewriting for nathelper (and the SDP part of a multipart body).
//!
//! Nothing here changes a buffer: the functions read an SDP body and return [`Edit`]s
//! (offsets into that body) that the caller turns into lumps. Every parser works on
//! untrusted bytes and returns an error instead of panicking; `fuzz/fuzz_targets/sdp.rs`
//! drives [`fuzz_one`] over arbitrary input.
//!
//! Lines end in CRLF or a bare LF (both are accepted, as 1.2 does); a text appended by
//! a rewrite uses the line ending of the body's first line.

use std::fmt;
use std::net::Ipv4Addr;

/// One change to a body: replace `del` bytes at `pos` by `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub pos: usize,
    pub del: usize,
    pub text: String,
}

/// Why an SDP could not be read or rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdpError {
    NoSession,
    NoOrigin,
    NoMedia,
    NoConnection,
    BadConnection,
    BadMedia,
    NotIpv4(&'static str),
    NoLineFound(&'static str),
    Proxy(String),
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdpError::NoSession => f.write_str("no sessions in SDP (no v= line)"),
            SdpError::NoOrigin => f.write_str("no o= in session"),
            SdpError::NoMedia => f.write_str("no m= in session"),
            SdpError::NoConnection => f.write_str("can't find media IP (no c= line)"),
            SdpError::BadConnection => f.write_str("can't extract media IP from a c= line"),
            SdpError::BadMedia => f.write_str("can't extract media port from an m= line"),
            SdpError::NotIpv4(l) => write!(f, "not an IPv4 address in '{l}' SDP"),
            SdpError::NoLineFound(l) => write!(f, "can't extract '{l}' IP from the SDP"),
            SdpError::Proxy(e) => f.write_str(e),
        }
    }
}

/// Address family of an SDP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Af {
    V4,
    V6,
}

impl Af {
    pub fn token(self) -> &'static str {
        match self {
            Af::V4 => "IP4",
            Af::V6 => "IP6",
        }
    }
}

/// A line of the body: `start..end` without its line ending; `kind` is the letter
/// before `=` (0 for a line that is not `x=…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub start: usize,
    pub end: usize,
    pub kind: u8,
}

/// The lines of `body`.
pub fn lines(body: &[u8]) -> Vec<Line> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let nl = memchr(b'\n', &body[i..]).map(|n| i + n);
        let line_end = nl.unwrap_or(body.len());
        let mut end = line_end;
        if end > i && body[end - 1] == b'\r' {
            end -= 1;
        }
        let kind = if end - i >= 2 && body[i + 1] == b'=' {
            body[i]
        } else {
            0
        };
        out.push(Line {
            start: i,
            end,
            kind,
        });
        i = line_end + 1;
    }
    out
}

fn memchr(c: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == c)
}

/// The line ending the body uses (that of its first line), for appended lines.
pub fn eol(body: &[u8]) -> &'static str {
    match memchr(b'\n', body) {
        Some(n) if n > 0 && body[n - 1] == b'\r' => "\r\n",
        Some(_) => "\n",
        None => "\r\n",
    }
}

/// Whitespace-separated tokens of `body[start..end]` as (start, end) offsets.
fn tokens(body: &[u8], start: usize, end: usize) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut i = start;
    while i < end {
        while i < end && (body[i] == b' ' || body[i] == b'\t') {
            i += 1;
        }
        let s = i;
        while i < end && body[i] != b' ' && body[i] != b'\t' {
            i += 1;
        }
        if i > s {
            v.push((s, i));
        }
    }
    v
}

/// An address in a `c=` or `o=` line: the address type token (`IP4`/`IP6`) and the
/// address (without a `/ttl` suffix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub af: Af,
    /// the `IP4`/`IP6` token
    pub af_span: (usize, usize),
    /// the address
    pub span: (usize, usize),
}

impl Addr {
    pub fn text<'a>(&self, body: &'a [u8]) -> &'a str {
        std::str::from_utf8(&body[self.span.0..self.span.1]).unwrap_or("")
    }
    /// `0.0.0.0` or an all-zero IPv6 address (hold).
    pub fn is_null(&self, body: &[u8]) -> bool {
        let t = &body[self.span.0..self.span.1];
        match self.af {
            Af::V4 => t == b"0.0.0.0",
            Af::V6 => t.iter().all(|&c| c == b'0' || c == b':'),
        }
    }
}

/// The address of a `c=` (`c=IN IP4 addr`) or `o=` (`o=user id ver IN IP4 addr`)
/// line: the token after `IP4`/`IP6`.
pub fn line_addr(body: &[u8], l: &Line) -> Option<Addr> {
    let toks = tokens(body, l.start + 2, l.end);
    let i = toks.iter().position(|&(s, e)| {
        let t = &body[s..e];
        t == b"IP4" || t == b"IP6"
    })?;
    let (s, e) = *toks.get(i + 1)?;
    let af = if &body[toks[i].0..toks[i].1] == b"IP4" {
        Af::V4
    } else {
        Af::V6
    };
    let e = memchr(b'/', &body[s..e]).map(|n| s + n).unwrap_or(e);
    if e == s {
        return None;
    }
    Some(Addr {
        af,
        af_span: toks[i],
        span: (s, e),
    })
}

/// Media transports nathelper relays (1.2's list plus the AVPF/SAVP profiles).
const PROXYABLE: &[&str] = &[
    "udp",
    "udptl",
    "rtp/avp",
    "rtp/avpf",
    "rtp/savp",
    "rtp/savpf",
];

/// An `m=` line: its port (without `/count`) and transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MLine {
    pub line: Line,
    pub port_span: (usize, usize),
    pub port: u16,
    pub proto_span: (usize, usize),
}

impl MLine {
    pub fn proxyable(&self, body: &[u8]) -> bool {
        let p = &body[self.proto_span.0..self.proto_span.1];
        PROXYABLE
            .iter()
            .any(|t| p.eq_ignore_ascii_case(t.as_bytes()))
    }
}

pub fn parse_mline(body: &[u8], l: &Line) -> Option<MLine> {
    let toks = tokens(body, l.start + 2, l.end);
    if toks.len() < 3 {
        return None;
    }
    let (ps, pe) = toks[1];
    let pe = memchr(b'/', &body[ps..pe]).map(|n| ps + n).unwrap_or(pe);
    let port: u16 = std::str::from_utf8(&body[ps..pe]).ok()?.parse().ok()?;
    Some(MLine {
        line: *l,
        port_span: (ps, pe),
        port,
        proto_span: toks[2],
    })
}

/// An `a=rtcp:port [IN IP4 addr]` line (RFC 3605).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtcp {
    pub port_span: (usize, usize),
    pub addr: Option<Addr>,
}

fn parse_rtcp(body: &[u8], l: &Line) -> Option<Rtcp> {
    let v = &body[l.start..l.end];
    if !v.starts_with(b"a=rtcp:") {
        return None;
    }
    let s = l.start + 7;
    let mut e = s;
    while e < l.end && body[e].is_ascii_digit() {
        e += 1;
    }
    if e == s {
        return None;
    }
    // The optional address reads like a c= line after the port.
    let rest = Line {
        start: e.saturating_sub(2).max(l.start),
        end: l.end,
        kind: b'a',
    };
    let addr = if e < l.end {
        line_addr(body, &rest)
    } else {
        None
    };
    Some(Rtcp {
        port_span: (s, e),
        addr,
    })
}

/// One media description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub m: MLine,
    pub c: Option<Line>,
    pub rtcp: Option<Rtcp>,
}

/// One session description (from a `v=` line to the next).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub o: Option<Line>,
    /// the session-level `c=` (before the first `m=`)
    pub c: Option<Line>,
    pub media: Vec<Media>,
}

/// The sessions of an SDP body; `Err` if it has no `v=` line or an `m=` line that
/// cannot be read.
pub fn parse(body: &[u8]) -> Result<Vec<Session>, SdpError> {
    let ls = lines(body);
    let mut sessions: Vec<Session> = Vec::new();
    for l in &ls {
        match l.kind {
            b'v' => sessions.push(Session {
                o: None,
                c: None,
                media: Vec::new(),
            }),
            _ if sessions.is_empty() => {}
            b'o' => {
                let s = sessions.last_mut().expect("non-empty");
                if s.o.is_none() && s.media.is_empty() {
                    s.o = Some(*l);
                }
            }
            b'm' => {
                let m = parse_mline(body, l).ok_or(SdpError::BadMedia)?;
                sessions.last_mut().expect("non-empty").media.push(Media {
                    m,
                    c: None,
                    rtcp: None,
                });
            }
            b'c' => {
                let s = sessions.last_mut().expect("non-empty");
                match s.media.last_mut() {
                    Some(m) if m.c.is_none() => m.c = Some(*l),
                    Some(_) => {}
                    None if s.c.is_none() => s.c = Some(*l),
                    None => {}
                }
            }
            b'a' => {
                let s = sessions.last_mut().expect("non-empty");
                if let Some(m) = s.media.last_mut()
                    && m.rtcp.is_none()
                {
                    m.rtcp = parse_rtcp(body, l);
                }
            }
            _ => {}
        }
    }
    if sessions.is_empty() {
        return Err(SdpError::NoSession);
    }
    Ok(sessions)
}

/// Whether a line equal to `marker` (without its line ending) is in the body, at the
/// start of a line (1.2's check for `nortpproxy_str`).
pub fn has_marker(body: &[u8], marker: &str) -> bool {
    let m = marker.trim_end_matches(['\r', '\n']).as_bytes();
    !m.is_empty() && lines(body).iter().any(|l| &body[l.start..l.end] == m)
}

/// The text to append at the end of the body for `line` (a line without ending),
/// starting a new line first if the body's last line has none.
fn append_line(body: &[u8], line: &str) -> Edit {
    let nl = eol(body);
    let mut text = String::new();
    if !body.is_empty() && !body.ends_with(b"\n") {
        text.push_str(nl);
    }
    text.push_str(line.trim_end_matches(['\r', '\n']));
    text.push_str(nl);
    Edit {
        pos: body.len(),
        del: 0,
        text,
    }
}

/// Is `ip` in 10/8, 172.16/12 or 192.168/16 (1.2's `is1918addr`)?
pub fn is_1918(ip: &str) -> bool {
    match ip.trim().parse::<Ipv4Addr>() {
        Ok(a) => {
            let o = a.octets();
            o[0] == 10 || (o[0] == 172 && (o[1] & 0xf0) == 16) || (o[0] == 192 && o[1] == 168)
        }
        Err(_) => false,
    }
}

/// `nat_uac_test` flag 8: some `c=` line names a private IPv4 address.
pub fn has_private_media(body: &[u8]) -> bool {
    lines(body)
        .iter()
        .filter(|l| l.kind == b'c')
        .filter_map(|l| line_addr(body, l))
        .any(|a| a.af == Af::V4 && !a.is_null(body) && is_1918(a.text(body)))
}

/// `fix_nated_sdp` flag bits (1.2's values).
pub const ADD_ADIRECTION: u32 = 1;
pub const FIX_MEDIP: u32 = 2;
pub const ADD_ANORTPPROXY: u32 = 4;
pub const FIX_ORGIP: u32 = 8;

/// Replace the IPv4 address of every `kind` (`c` or `o`) line by `newip`, keeping the
/// old one in an `a=oldmediaip:` line (1.2's `replace_sdp_ip`).
fn replace_ips(body: &[u8], kind: u8, newip: &str, edits: &mut Vec<Edit>) -> Result<(), SdpError> {
    let what = if kind == b'c' { "c=" } else { "o=" };
    let mut replaced = false;
    for l in lines(body).iter().filter(|l| l.kind == kind) {
        let Some(a) = line_addr(body, l) else {
            continue;
        };
        if a.af != Af::V4 {
            return Err(SdpError::NotIpv4(what));
        }
        replaced = true;
        if a.is_null(body) || a.text(body) == newip {
            continue;
        }
        edits.push(append_line(body, &format!("a=oldmediaip:{}", a.text(body))));
        edits.push(Edit {
            pos: a.span.0,
            del: a.span.1 - a.span.0,
            text: newip.to_string(),
        });
    }
    if !replaced {
        return Err(SdpError::NoLineFound(what));
    }
    Ok(())
}

/// `fix_nated_sdp(flags[, ip])`: the edits for `body` (1 = add `a=direction:active`,
/// 2 = c= addresses to `newip`, 4 = add the `nortpproxy` marker, 8 = o= addresses).
pub fn fix_nated_sdp(
    body: &[u8],
    flags: u32,
    newip: &str,
    marker: &str,
) -> Result<Vec<Edit>, SdpError> {
    let mut edits = Vec::new();
    if flags & ADD_ADIRECTION != 0 {
        edits.push(append_line(body, "a=direction:active"));
    }
    if flags & ADD_ANORTPPROXY != 0 && !marker.is_empty() {
        edits.push(append_line(body, marker));
    }
    if flags & FIX_MEDIP != 0 {
        replace_ips(body, b'c', newip, &mut edits)?;
    }
    if flags & FIX_ORGIP != 0 {
        replace_ips(body, b'o', newip, &mut edits)?;
    }
    Ok(edits)
}

/// What `force_rtp_proxy` needs to know about one stream to ask the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// 1-based media number across the whole body
    pub medianum: u32,
    pub ip: String,
    pub af: Af,
    pub port: u16,
    pub null_addr: bool,
}

/// What the relay answered for a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub ip: String,
    pub af: Af,
    pub port: u16,
}

/// `force_rtp_proxy` options that shape the rewrite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RewriteOpts {
    /// `c`: rewrite the session-level c= too when every stream has its own
    pub common_ip: bool,
    /// `o`: rewrite the o= address, once per session
    pub origin: bool,
}

/// Replace the address (and its family token if it changes) of `a` by `ip`/`af`.
fn addr_edit(a: &Addr, ip: &str, af: Af, edits: &mut Vec<Edit>) {
    if a.af != af {
        edits.push(Edit {
            pos: a.af_span.0,
            del: a.af_span.1 - a.af_span.0,
            text: af.token().to_string(),
        });
    }
    edits.push(Edit {
        pos: a.span.0,
        del: a.span.1 - a.span.0,
        text: ip.to_string(),
    });
}

/// The rewrite of `force_rtp_proxy`: for every relayable stream ask `relay` for its
/// address and port, then point the m= port, the c= address (the media's own, or the
/// session's once), `a=rtcp` (port + 1, and its address if given) and, with
/// `opts.origin`, the o= address at the relay. Streams with port 0 (declined) and
/// transports the relay does not carry are left alone. `marker` (`nortpproxy_str`) is
/// appended unless empty. Returns the edits and the number of streams relayed.
pub fn force_rtp_proxy(
    body: &[u8],
    opts: RewriteOpts,
    marker: &str,
    relay: &mut dyn FnMut(&Stream) -> Result<Relayed, SdpError>,
) -> Result<(Vec<Edit>, u32), SdpError> {
    let sessions = parse(body)?;
    let mut edits = Vec::new();
    let mut medianum = 0u32;
    let mut relayed = 0u32;
    for s in &sessions {
        if s.o.is_none() {
            return Err(SdpError::NoOrigin);
        }
        if s.media.is_empty() {
            return Err(SdpError::NoMedia);
        }
        let mut session_c_done = false;
        let mut origin_done = !opts.origin;
        for m in &s.media {
            medianum += 1;
            if m.m.port == 0 || !m.m.proxyable(body) {
                continue;
            }
            let cline = m.c.or(s.c).ok_or(SdpError::NoConnection)?;
            let a = line_addr(body, &cline).ok_or(SdpError::BadConnection)?;
            let st = Stream {
                medianum,
                ip: a.text(body).to_string(),
                af: a.af,
                port: m.m.port,
                null_addr: a.is_null(body),
            };
            let r = relay(&st)?;
            relayed += 1;
            // A held stream (null address) stays on hold, in the relay's family.
            let (newip, newaf) = if st.null_addr {
                match r.af {
                    Af::V4 => ("0.0.0.0".to_string(), Af::V4),
                    Af::V6 => ("::".to_string(), Af::V6),
                }
            } else {
                (r.ip.clone(), r.af)
            };
            if r.port != m.m.port {
                edits.push(Edit {
                    pos: m.m.port_span.0,
                    del: m.m.port_span.1 - m.m.port_span.0,
                    text: r.port.to_string(),
                });
            }
            if m.c.is_some() || !session_c_done {
                addr_edit(&a, &newip, newaf, &mut edits);
                if m.c.is_none() {
                    session_c_done = true;
                }
            }
            if opts.common_ip
                && !session_c_done
                && let Some(sc) = s.c
                && let Some(sa) = line_addr(body, &sc)
            {
                addr_edit(&sa, &newip, newaf, &mut edits);
                session_c_done = true;
            }
            if let Some(rt) = &m.rtcp {
                edits.push(Edit {
                    pos: rt.port_span.0,
                    del: rt.port_span.1 - rt.port_span.0,
                    text: (u32::from(r.port) + 1).to_string(),
                });
                if let Some(ra) = &rt.addr {
                    addr_edit(ra, &newip, newaf, &mut edits);
                }
            }
            if !origin_done
                && let Some(o) = s.o
                && let Some(oa) = line_addr(body, &o)
            {
                addr_edit(&oa, &newip, newaf, &mut edits);
                origin_done = true;
            }
        }
    }
    if relayed > 0 && !marker.is_empty() && !has_marker(body, marker) {
        edits.push(append_line(body, marker));
    }
    Ok((edits, relayed))
}

/// Apply `edits` to `body` (tests, fuzzing, and callers without lumps). Edits are
/// applied in offset order; overlapping ones are a bug and return `None`.
pub fn apply(body: &[u8], edits: &[Edit]) -> Option<Vec<u8>> {
    let mut sorted: Vec<&Edit> = edits.iter().collect();
    sorted.sort_by_key(|e| (e.pos, e.del));
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut cur = 0;
    for e in sorted {
        if e.pos < cur || e.pos + e.del > body.len() {
            return None;
        }
        out.extend_from_slice(&body[cur..e.pos]);
        out.extend_from_slice(e.text.as_bytes());
        cur = e.pos + e.del;
    }
    out.extend_from_slice(&body[cur..]);
    Some(out)
}

/// Where the SDP is in a message body: the whole body for `application/sdp` (or no
/// Content-Type and a body starting with `v=`), the first `application/sdp` part of a
/// `multipart/*` body. `content_type` is the header value (or "").
pub fn sdp_range(content_type: &str, body: &[u8]) -> Option<(usize, usize)> {
    let ct = content_type.trim();
    let (mime, params) = match ct.split_once(';') {
        Some((m, p)) => (m.trim(), p),
        None => (ct, ""),
    };
    if mime.is_empty() {
        return body.starts_with(b"v=").then_some((0, body.len()));
    }
    if mime.eq_ignore_ascii_case("application/sdp") {
        return Some((0, body.len()));
    }
    if mime.len() > 10 && mime.as_bytes()[..10].eq_ignore_ascii_case(b"multipart/") {
        let boundary = params.split(';').find_map(|p| {
            let (n, v) = p.split_once('=')?;
            n.trim()
                .eq_ignore_ascii_case("boundary")
                .then(|| v.trim().trim_matches('"').to_string())
        })?;
        return multipart_sdp(body, &boundary);
    }
    None
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The `application/sdp` part of a multipart body delimited by `--boundary`.
fn multipart_sdp(body: &[u8], boundary: &str) -> Option<(usize, usize)> {
    if boundary.is_empty() {
        return None;
    }
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let mut pos = find(body, d, 0)?;
    loop {
        let after = pos + d.len();
        if body[after..].starts_with(b"--") {
            return None; // close delimiter
        }
        // The part starts after the delimiter line.
        let part_start = find(body, b"\n", after)? + 1;
        let next = find(body, d, part_start)?;
        // The part ends before the line break preceding the next delimiter.
        let mut part_end = next;
        if part_end > part_start && body[part_end - 1] == b'\n' {
            part_end -= 1;
            if part_end > part_start && body[part_end - 1] == b'\r' {
                part_end -= 1;
            }
        }
        let part = &body[part_start..part_end];
        // Headers end at the first empty line.
        let (hdr_end, content_start) = match find(part, b"\r\n\r\n", 0) {
            Some(i) => (i, i + 4),
            None => match find(part, b"\n\n", 0) {
                Some(i) => (i, i + 2),
                None => (0, 0),
            },
        };
        let hdrs = String::from_utf8_lossy(&part[..hdr_end]);
        let is_sdp = hdrs.lines().any(|h| {
            h.split_once(':').is_some_and(|(n, v)| {
                n.trim().eq_ignore_ascii_case("content-type")
                    && v.trim()
                        .split(';')
                        .next()
                        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/sdp"))
            })
        });
        if is_sdp && content_start > 0 {
            return Some((part_start + content_start, part_end));
        }
        pos = next;
    }
}

/// Fuzzing entry: run every reader and rewriter over `data` and check that applying
/// the edits never fails (edits never overlap).
pub fn fuzz_one(data: &[u8]) {
    let _ = lines(data);
    let _ = has_private_media(data);
    let _ = has_marker(data, "a=nortpproxy:yes");
    if let Ok(e) = fix_nated_sdp(data, 15, "203.0.113.9", "a=nortpproxy:yes\r\n") {
        assert!(apply(data, &e).is_some(), "fix_nated_sdp edits overlap");
    }
    for opts in [
        RewriteOpts::default(),
        RewriteOpts {
            common_ip: true,
            origin: true,
        },
    ] {
        let mut n = 0u16;
        let mut relay = |s: &Stream| {
            n = n.wrapping_add(2);
            Ok(Relayed {
                ip: if s.port.is_multiple_of(2) {
                    "198.51.100.7".into()
                } else {
                    "2001:db8::7".into()
                },
                af: if s.port.is_multiple_of(2) {
                    Af::V4
                } else {
                    Af::V6
                },
                port: 30000 + n,
            })
        };
        if let Ok((e, _)) = force_rtp_proxy(data, opts, "a=nortpproxy:yes", &mut relay) {
            assert!(apply(data, &e).is_some(), "force_rtp_proxy edits overlap");
        }
    }
    if let Some(split) = data.iter().position(|&c| c == 0) {
        let ct = String::from_utf8_lossy(&data[..split]);
        let body = &data[split + 1..];
        if let Some((s, e)) = sdp_range(&ct, body) {
            assert!(s <= e && e <= body.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=alice 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n";

    fn relay_fixed() -> impl FnMut(&Stream) -> Result<Relayed, SdpError> {
        let mut next = 30000u16;
        move |_s: &Stream| {
            let r = Relayed {
                ip: "203.0.113.2".into(),
                af: Af::V4,
                port: next,
            };
            next += 10;
            Ok(r)
        }
    }

    fn rewrite(body: &str, opts: RewriteOpts) -> Result<String, SdpError> {
        let mut r = relay_fixed();
        let (e, _) = force_rtp_proxy(body.as_bytes(), opts, "a=nortpproxy:yes\r\n", &mut r)?;
        Ok(String::from_utf8(apply(body.as_bytes(), &e).expect("no overlap")).unwrap())
    }

    #[test]
    fn basic_offer_rewritten() {
        let out = rewrite(SDP, RewriteOpts::default()).unwrap();
        assert!(out.contains("c=IN IP4 203.0.113.2\r\n"), "{out}");
        assert!(out.contains("m=audio 30000 RTP/AVP 0 8\r\n"), "{out}");
        assert!(
            out.contains("o=alice 1 1 IN IP4 10.0.0.5\r\n"),
            "origin kept: {out}"
        );
        assert!(out.ends_with("a=nortpproxy:yes\r\n"), "{out}");
    }

    #[test]
    fn origin_and_rtcp() {
        let body = SDP.replace("a=rtpmap", "a=rtcp:4001 IN IP4 10.0.0.5\r\na=rtpmap");
        let out = rewrite(
            &body,
            RewriteOpts {
                origin: true,
                common_ip: false,
            },
        )
        .unwrap();
        assert!(out.contains("o=alice 1 1 IN IP4 203.0.113.2\r\n"), "{out}");
        assert!(out.contains("a=rtcp:30001 IN IP4 203.0.113.2\r\n"), "{out}");
    }

    #[test]
    fn several_media_with_own_c_lines() {
        let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
            m=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.6\r\n\
            m=video 4002 RTP/AVP 31\r\nc=IN IP4 10.0.0.7\r\n\
            m=image 0 udptl t38\r\n\
            m=application 5000 TCP/BFCP *\r\n";
        let out = rewrite(
            body,
            RewriteOpts {
                common_ip: true,
                origin: false,
            },
        )
        .unwrap();
        assert!(out.contains("m=audio 30000 RTP/AVP"), "{out}");
        assert!(out.contains("m=video 30010 RTP/AVP"), "{out}");
        assert!(
            out.contains("m=image 0 udptl"),
            "declined stream kept: {out}"
        );
        assert!(out.contains("m=application 5000 TCP/BFCP"), "{out}");
        assert_eq!(out.matches("c=IN IP4 203.0.113.2").count(), 3, "{out}");
    }

    #[test]
    fn no_c_line_is_an_error_not_a_crash() {
        let body = SDP.replace("c=IN IP4 10.0.0.5\r\n", "");
        assert_eq!(
            rewrite(&body, RewriteOpts::default()),
            Err(SdpError::NoConnection)
        );
        assert_eq!(
            fix_nated_sdp(body.as_bytes(), FIX_MEDIP, "1.2.3.4", ""),
            Err(SdpError::NoLineFound("c="))
        );
    }

    #[test]
    fn ipv6_connection_to_ipv4_relay() {
        let body = SDP.replace("c=IN IP4 10.0.0.5", "c=IN IP6 2001:db8::5");
        let out = rewrite(&body, RewriteOpts::default()).unwrap();
        assert!(out.contains("c=IN IP4 203.0.113.2\r\n"), "{out}");
        // fix_nated_sdp refuses IPv6 c= lines, as 1.2 does.
        assert_eq!(
            fix_nated_sdp(body.as_bytes(), FIX_MEDIP, "1.2.3.4", ""),
            Err(SdpError::NotIpv4("c="))
        );
    }

    #[test]
    fn bare_lf_body_keeps_its_line_endings() {
        let body = SDP.replace("\r\n", "\n");
        let out = rewrite(&body, RewriteOpts::default()).unwrap();
        assert!(!out.contains('\r'), "{out:?}");
        assert!(out.contains("c=IN IP4 203.0.113.2\n"));
        assert!(out.ends_with("\na=nortpproxy:yes\n"));
        // A last line without a line ending gets one before the appended line.
        let cut = body.trim_end();
        let out = rewrite(cut, RewriteOpts::default()).unwrap();
        assert!(out.ends_with("PCMU/8000\na=nortpproxy:yes\n"), "{out:?}");
    }

    #[test]
    fn marker_means_already_proxied() {
        let body = format!("{SDP}a=nortpproxy:yes\r\n");
        assert!(has_marker(body.as_bytes(), "a=nortpproxy:yes\r\n"));
        assert!(!has_marker(SDP.as_bytes(), "a=nortpproxy:yes\r\n"));
        let out = rewrite(&body, RewriteOpts::default()).unwrap();
        assert_eq!(out.matches("a=nortpproxy:yes").count(), 1);
    }

    #[test]
    fn hold_stays_hold() {
        let body = SDP.replace("c=IN IP4 10.0.0.5", "c=IN IP4 0.0.0.0");
        let out = rewrite(&body, RewriteOpts::default()).unwrap();
        assert!(out.contains("c=IN IP4 0.0.0.0\r\n"), "{out}");
        assert!(out.contains("m=audio 30000"), "{out}");
    }

    #[test]
    fn fix_nated_sdp_flags() {
        let e = fix_nated_sdp(SDP.as_bytes(), 15, "198.51.100.9", "a=nortpproxy:yes\r\n").unwrap();
        let out = String::from_utf8(apply(SDP.as_bytes(), &e).unwrap()).unwrap();
        assert!(out.contains("c=IN IP4 198.51.100.9\r\n"), "{out}");
        assert!(out.contains("o=alice 1 1 IN IP4 198.51.100.9\r\n"), "{out}");
        assert!(out.contains("a=direction:active\r\n"), "{out}");
        assert!(out.contains("a=nortpproxy:yes\r\n"), "{out}");
        assert_eq!(out.matches("a=oldmediaip:10.0.0.5\r\n").count(), 2, "{out}");
    }

    #[test]
    fn garbage_bodies() {
        for b in [
            &b""[..],
            b"v=",
            b"v=0\r\nm=",
            b"v=0\nm=audio x RTP/AVP 0\n",
            b"\n\n\r\r==",
            b"v=0\r\no=\r\nc=IN IP4\r\nm=audio 1 RTP/AVP\r\n",
            b"v=0\r\no=a 1 1 IN IP4 1.2.3.4\r\nc=IN IP6 \r\nm=audio 1 RTP/AVP 0\r\na=rtcp:\r\n",
        ] {
            fuzz_one(b);
        }
        assert_eq!(parse(b"hello"), Err(SdpError::NoSession));
        assert_eq!(
            parse(b"v=0\nm=audio x RTP/AVP 0\n"),
            Err(SdpError::BadMedia)
        );
    }

    #[test]
    fn multipart_body() {
        let body = "--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b1\r\n\
            Content-Type: application/sdp\r\n\r\nv=0\r\nc=IN IP4 10.1.1.1\r\n\r\n--b1--\r\n";
        let (s, e) = sdp_range("multipart/mixed; boundary=\"b1\"", body.as_bytes()).unwrap();
        assert_eq!(&body[s..e], "v=0\r\nc=IN IP4 10.1.1.1\r\n");
        assert!(has_private_media(&body.as_bytes()[s..e]));
        assert_eq!(
            sdp_range("multipart/mixed; boundary=zz", body.as_bytes()),
            None
        );
        assert_eq!(sdp_range("text/plain", b"v=0"), None);
        assert_eq!(sdp_range("", b"v=0\r\n"), Some((0, 5)));
        assert_eq!(sdp_range("Application/SDP", b"x"), Some((0, 1)));
        // A non-ASCII Content-Type (found by the fuzzer): no panic on a char boundary.
        assert_eq!(
            sdp_range("multipar\u{fffd}t/x; boundary=a", b"--a\r\n"),
            None
        );
    }

    #[test]
    fn private_ranges() {
        for ip in ["10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1"] {
            assert!(is_1918(ip), "{ip}");
        }
        for ip in ["172.32.0.1", "203.0.113.1", "11.0.0.1", "192.169.0.1", "x"] {
            assert!(!is_1918(ip), "{ip}");
        }
    }
}
