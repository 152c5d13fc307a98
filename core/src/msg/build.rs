//! Building outgoing messages: forwarded requests, forwarded replies, local replies,
//! and the reply destination rules (RFC 3261 §18.2.2, RFC 3581).

use std::fmt;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::net::SocketAddr;

use super::lumps::{BODY_PRIO, Lumps};
use crate::parser::{BUF_SIZE, FirstLine, HdrType, Proto, SipMsg, Via};

/// Why a message could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// No (parsable) Via where one is needed.
    NoVia,
    /// A reply without a second Via (it was for us).
    NoSecondVia,
    /// A header needed for the message could not be parsed.
    BadHeader,
    /// The result would exceed BUF_SIZE.
    TooBig,
    /// The message is of the wrong kind (reply where a request is needed or vice versa).
    WrongKind,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BuildError::NoVia => "no Via header",
            BuildError::NoSecondVia => "no second Via",
            BuildError::BadHeader => "bad header",
            BuildError::TooBig => "message too big",
            BuildError::WrongKind => "wrong message kind",
        })
    }
}

impl std::error::Error for BuildError {}

/// Our Via for a forwarded request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViaParams<'a> {
    /// Advertised host (IPv6 with brackets) and port of the sending socket.
    pub host: &'a str,
    pub port: u16,
    pub proto: Proto,
    /// The full branch value (including the `z9hG4bK` magic cookie).
    pub branch: &'a str,
    /// Add an empty `;rport` (also added when `msg.local_rport` is set).
    pub rport: bool,
    /// More parameters appended verbatim (e.g. `";i=1"`), may be empty.
    pub extra_params: &'a str,
}

/// The Via header line for `v` (with CRLF).
pub fn via_line(v: &ViaParams, local_rport: bool) -> String {
    let mut s = String::with_capacity(96);
    s.push_str("Via: SIP/2.0/");
    s.push_str(v.proto.as_str());
    s.push(' ');
    s.push_str(v.host);
    if v.port != 0 {
        s.push(':');
        super::text::push_dec(&mut s, u64::from(v.port));
    }
    s.push_str(";branch=");
    s.push_str(v.branch);
    s.push_str(v.extra_params);
    if v.rport || local_rport {
        s.push_str(";rport");
    }
    s.push_str("\r\n");
    s
}

fn unbracket(h: &str) -> &str {
    h.strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h)
}

/// Whether the Via's sent-by host differs from the source IP (then `received=` is due).
fn needs_received(msg: &SipMsg, via: &Via) -> bool {
    let host = unbracket(msg.s(via.host));
    match host.parse::<IpAddr>() {
        Ok(ip) => ip != msg.rcv.src.ip(),
        Err(_) => true,
    }
}

/// Lumps adding `;received=` / `;rport=` to the top Via of a request, per RFC 3261
/// §18.2.1 and RFC 3581 (rport when the Via has `rport` or `force_rport` was called).
fn via1_lumps(msg: &SipMsg, via: &Via, lumps: &mut Lumps) {
    let end = via.full.end();
    let mut add = String::new();
    if needs_received(msg, via) && via.received.is_none() {
        let _ = write!(add, ";received={}", msg.rcv.src.ip());
    }
    let port = msg.rcv.src.port();
    match via.rport_param {
        Some(rp) if via.rport.is_some_and(|v| v.is_empty()) => {
            lumps.replace(rp.start as usize, rp.len as usize, format!("rport={port}"));
        }
        Some(_) => {}
        None if msg.add_rport => {
            let _ = write!(add, ";rport={port}");
        }
        None => {}
    }
    if !add.is_empty() {
        lumps.add(end, 0, add, 0);
    }
}

fn finish(out: Vec<u8>) -> Result<Vec<u8>, BuildError> {
    if out.len() > BUF_SIZE {
        Err(BuildError::TooBig)
    } else {
        Ok(out)
    }
}

/// Build the request to forward: applies `msg.lumps`, the rewritten R-URI (`new_uri`),
/// inserts our Via on top (branch from `via`), adds `received`/`rport` to the previous top
/// Via, appends `extra_headers` (complete lines, CRLF added if missing) after the last
/// header, and recomputes Content-Length if the body changed (adding one for TCP/TLS or
/// when the body changed and none was present).
pub fn build_request(
    msg: &SipMsg,
    via: &ViaParams,
    extra_headers: &[&str],
) -> Result<Vec<u8>, BuildError> {
    let FirstLine::Request { uri, .. } = *msg.first_line() else {
        return Err(BuildError::WrongKind);
    };
    let buf = msg.buf();
    let mut lumps = msg.lumps.clone();
    if lumps.has_markers() {
        // record_route's parts that depend on the sending socket (double RR)
        let mut snd = format!("{}:{}", via.host, via.port);
        if via.proto != Proto::Udp {
            snd.push_str(";transport=");
            snd.push_str(&via.proto.as_str().to_ascii_lowercase());
        }
        let (rcv_host, _) = crate::transport::send::advertised(msg.rcv.sock_idx);
        let rcv_proto = crate::transport::send::socket_proto(msg.rcv.sock_idx);
        let differs = via.proto != rcv_proto || via.host != rcv_host;
        lumps.resolve_snd(&snd, differs);
    }
    if let Some(nu) = &msg.new_uri {
        lumps.add(uri.start as usize, uri.len as usize, nu.as_bytes(), 0);
    }
    let via_pos = match msg.first_of(HdrType::Via) {
        Some(i) => msg.hdrs()[i].full.start as usize,
        None => msg.hdrs_start(),
    };
    lumps.add(via_pos, 0, via_line(via, msg.local_rport), -100);
    if let Ok(v1) = msg.via1() {
        via1_lumps(msg, v1, &mut lumps);
    }
    let hend = msg.hdrs_end();
    for h in extra_headers {
        let t = if h.ends_with('\n') {
            h.to_string()
        } else {
            format!("{h}\r\n")
        };
        lumps.add(hend, 0, t, 10);
    }
    let body = msg.body_span();
    // Drop anything after the body (UDP junk past Content-Length).
    if body.end() < buf.len() {
        lumps.delete(body.end(), buf.len() - body.end());
    }
    // Headers ending without a blank line (EOF): make sure we emit one.
    let no_blank = hend >= buf.len() || body.start as usize == hend;
    if no_blank {
        let last_nl = hend > 0 && buf.get(hend - 1) == Some(&b'\n');
        if !last_nl && !msg.hdrs().is_empty() {
            // Terminate the last header line before anything is appended after it.
            lumps.add(hend, 0, "\r\n", -50);
        }
        lumps.add(hend, 0, "\r\n", 20);
    }
    let cl = msg.first_of(HdrType::ContentLength);
    let mut out = Vec::with_capacity(buf.len() + 256);
    // New body length if the body changed.
    let new_body_len = if no_blank {
        // The body is empty; only body lumps (prio >= BODY_PRIO) at the end add one.
        let mut changed = false;
        let mut n = 0;
        for l in lumps
            .iter()
            .filter(|l| l.pos as usize >= hend && l.prio >= BODY_PRIO)
        {
            changed = true;
            n += l.text.len();
        }
        changed.then_some(n)
    } else if lumps.touches_from(body.start as usize) {
        let mut tmp = Vec::with_capacity(buf.len() + 256);
        let m = lumps.apply_range(buf, 0, buf.len(), body.start as usize, &mut tmp);
        Some(tmp.len().saturating_sub(m))
    } else {
        None
    };
    let need_cl = new_body_len.is_some() || (cl.is_none() && via.proto != Proto::Udp);
    if need_cl {
        let newlen = new_body_len.unwrap_or(body.len as usize);
        match cl {
            Some(i) => {
                let b = msg.hdrs()[i].body;
                lumps.add(b.start as usize, b.len as usize, newlen.to_string(), 0);
            }
            None => lumps.add(hend, 0, format!("Content-Length: {newlen}\r\n"), 15),
        }
    }
    lumps.apply_range(buf, 0, buf.len(), buf.len(), &mut out);
    finish(out)
}

/// Build a reply to forward statelessly: removes the top Via (only that via-parm when
/// the header holds several) and applies the reply's lumps.
pub fn build_reply_forward(reply: &SipMsg) -> Result<Vec<u8>, BuildError> {
    if reply.is_request() {
        return Err(BuildError::WrongKind);
    }
    let v1 = reply.via1().map_err(|_| BuildError::NoVia)?;
    let mut lumps = reply.lumps.clone();
    let hdr = reply.hdrs().get(v1.hdr_idx).ok_or(BuildError::NoVia)?;
    let v2 = reply.via2().map_err(|_| BuildError::BadHeader)?;
    match v2 {
        Some(v2) if v2.hdr_idx == v1.hdr_idx => {
            lumps.delete(
                v1.full.start as usize,
                v2.full.start.saturating_sub(v1.full.start) as usize,
            );
        }
        _ => lumps.delete(hdr.full.start as usize, hdr.full.len as usize),
    }
    reply_body_length(reply, &mut lumps);
    finish(lumps.apply(reply.buf()))
}

/// Apply `msg`'s pending lumps to the message itself (textopsx's `msg_apply_changes`,
/// tm after an onreply_route): the buffer is rebuilt with the changes (Content-Length
/// following a changed body) and parsed again, so later header checks and searches
/// see them. The per-message state is kept (R-URI, dst URI, flags, forced socket,
/// rport marks, reply lumps, `$mi`); the auth mark, an index into the old header
/// list, is dropped. Errors leave the message as it was: changes whose text depends
/// on the outgoing socket (`record_route`'s) cannot be applied before it is known, and
/// a result that does not parse is refused.
pub fn apply_changes(msg: &mut SipMsg) -> Result<(), String> {
    if msg.lumps.is_empty() {
        return Ok(());
    }
    if msg.lumps.has_markers() {
        return Err("a pending change depends on the outgoing socket (record_route)".into());
    }
    let mut lumps = msg.lumps.clone();
    reply_body_length(msg, &mut lumps);
    let buf = lumps.apply(msg.buf());
    let mut m = SipMsg::new(&buf, msg.rcv).map_err(|e| format!("changed message: {e}"))?;
    m.id = msg.id;
    m.new_uri = msg.new_uri.take();
    m.dst_uri = msg.dst_uri.take();
    m.flags = msg.flags;
    m.force_send_sock = msg.force_send_sock;
    m.add_rport = msg.add_rport;
    m.local_rport = msg.local_rport;
    m.reply_lumps = std::mem::take(&mut msg.reply_lumps);
    m.parse_error = msg.parse_error.take();
    *msg = m;
    Ok(())
}

/// A message whose body was changed (nathelper's SDP rewrite in an onreply_route,
/// textopsx's `remove_body`) gets its Content-Length set to the new length.
fn reply_body_length(reply: &SipMsg, lumps: &mut Lumps) {
    let body = reply.body_span();
    let hend = reply.hdrs_end();
    if body.start as usize == hend || !lumps.touches_from(body.start as usize) {
        return;
    }
    let buf = reply.buf();
    let mut tmp = Vec::with_capacity(buf.len() + 256);
    let m = lumps.apply_range(buf, 0, body.end(), body.start as usize, &mut tmp);
    let newlen = tmp.len().saturating_sub(m);
    match reply.first_of(HdrType::ContentLength) {
        Some(i) => {
            let b = reply.hdrs()[i].body;
            lumps.add(b.start as usize, b.len as usize, newlen.to_string(), 0);
        }
        None => lumps.add(hend, 0, format!("Content-Length: {newlen}\r\n"), 15),
    }
}

fn via_default_port(msg: &SipMsg, v: &Via) -> u16 {
    if Proto::from_name(v.transport.bytes(msg.buf())) == Some(Proto::Tls) {
        5061
    } else {
        5060
    }
}

/// Where to send a reply to request `req` (RFC 3261 §18.2.2 + RFC 3581): for TCP/TLS the
/// source address; `maddr` if the top Via has one (its port or 5060); otherwise the source
/// IP (as `received` would say) with the source port if the Via asked for `rport` (or
/// `force_rport`), else the Via port (default 5060).
pub fn reply_destination(req: &SipMsg) -> Result<(String, u16), BuildError> {
    let v = req.via1().map_err(|_| BuildError::NoVia)?;
    if req.rcv.proto != Proto::Udp {
        return Ok((req.rcv.src.ip().to_string(), req.rcv.src.port()));
    }
    let dport = via_default_port(req, v);
    if let Some(m) = v.maddr {
        return Ok((unbracket(req.s(m)).to_string(), v.port.unwrap_or(dport)));
    }
    let port = if v.rport.is_some() || req.add_rport {
        req.rcv.src.port()
    } else {
        v.port.unwrap_or(dport)
    };
    Ok((req.rcv.src.ip().to_string(), port))
}

/// [`reply_destination`] as a socket address: the source address of the request
/// directly, without a detour through text, unless the Via has `maddr` (resolved).
pub fn reply_addr(req: &SipMsg) -> Result<SocketAddr, String> {
    let v = req.via1().map_err(|_| "no Via".to_string())?;
    if req.rcv.proto != Proto::Udp {
        return Ok(req.rcv.src);
    }
    if v.maddr.is_some() {
        let (h, p) = reply_destination(req).map_err(|e| format!("{e:?}"))?;
        return crate::transport::send::resolve_host(&h, p);
    }
    let port = if v.rport.is_some() || req.add_rport {
        req.rcv.src.port()
    } else {
        v.port.unwrap_or(via_default_port(req, v))
    };
    Ok(SocketAddr::new(req.rcv.src.ip(), port))
}

/// Where a statelessly forwarded reply goes: the second Via's `maddr`, else `received`,
/// else its host; port from a valued `rport`, else its port (default 5060/5061 for TLS).
pub fn next_via_destination(reply: &SipMsg) -> Result<(String, u16), BuildError> {
    let v = reply
        .via2()
        .map_err(|_| BuildError::BadHeader)?
        .ok_or(BuildError::NoSecondVia)?;
    let dport = via_default_port(reply, v);
    if let Some(m) = v.maddr {
        return Ok((unbracket(reply.s(m)).to_string(), v.port.unwrap_or(dport)));
    }
    let host = match v.received {
        Some(r) if !r.is_empty() => reply.s(r),
        _ => reply.s(v.host),
    };
    let port = v
        .rport
        .and_then(|r| reply.s(r).parse::<u16>().ok())
        .filter(|&p| p != 0)
        .unwrap_or(v.port.unwrap_or(dport));
    Ok((unbracket(host).to_string(), port))
}

fn push_line(out: &mut Vec<u8>, text: &[u8]) {
    out.extend_from_slice(text);
    if text.last() != Some(&b'\n') {
        out.extend_from_slice(b"\r\n");
    }
}

/// Build a locally generated reply to `req` (OpenSER's build_res_buf_from_sip_req):
/// status line; all Via headers (the top one with `received=`/`rport=` per §18.2.1 and
/// RFC 3581); Record-Route for 180..299; From; To (adding `;tag=<to_tag>` when the To has
/// no tag and `code > 100`); Call-ID; CSeq (message order); `req.reply_lumps`;
/// `extra_headers`; `Server:` if given; Content-Length; body.
#[allow(clippy::too_many_arguments)]
pub fn build_local_reply(
    req: &SipMsg,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra_headers: &[&str],
    body: &[u8],
    server_header: Option<&str>,
) -> Result<Vec<u8>, BuildError> {
    if !req.is_request() {
        return Err(BuildError::WrongKind);
    }
    let buf = req.buf();
    let v1 = req.via1().map_err(|_| BuildError::NoVia)?;
    let mut out = Vec::with_capacity(512 + body.len());
    let _ = write!(ByteW(&mut out), "SIP/2.0 {code:03} {reason}\r\n");
    for (i, h) in req.hdrs().iter().enumerate() {
        match h.htype {
            HdrType::Via if i == v1.hdr_idx => {
                let mut l = Lumps::default();
                via1_lumps(req, v1, &mut l);
                let mut t = Vec::with_capacity(h.full.len as usize + 48);
                l.apply_range(buf, h.full.start as usize, h.full.end(), 0, &mut t);
                push_line(&mut out, &t);
            }
            HdrType::Via | HdrType::From | HdrType::CallId | HdrType::CSeq => {
                push_line(&mut out, h.full.bytes(buf));
            }
            HdrType::RecordRoute if (180..300).contains(&code) => {
                push_line(&mut out, h.full.bytes(buf))
            }
            HdrType::To => {
                let tag_needed = code > 100 && to_tag.is_some();
                match req.to() {
                    Ok(to) if tag_needed && to.tag.is_none() && to.hdr_idx == i => {
                        let mut l = Lumps::default();
                        l.insert(to.full.end(), format!(";tag={}", to_tag.unwrap_or("")));
                        let mut t = Vec::with_capacity(h.full.len as usize + 48);
                        l.apply_range(buf, h.full.start as usize, h.full.end(), 0, &mut t);
                        push_line(&mut out, &t);
                    }
                    _ => push_line(&mut out, h.full.bytes(buf)),
                }
            }
            _ => {}
        }
    }
    for l in &req.reply_lumps {
        push_line(&mut out, l.as_bytes());
    }
    for h in extra_headers {
        push_line(&mut out, h.as_bytes());
    }
    if let Some(s) = server_header {
        let _ = write!(ByteW(&mut out), "Server: {s}\r\n");
    }
    let _ = write!(ByteW(&mut out), "Content-Length: {}\r\n\r\n", body.len());
    out.extend_from_slice(body);
    finish(out)
}

struct ByteW<'a>(&'a mut Vec<u8>);

impl fmt::Write for ByteW<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}
