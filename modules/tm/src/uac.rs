//! Requests tm makes itself (OpenSER's `t_uac`, `uac.c`): a request built here — method,
//! Request-URI, From (with a fresh tag), To, a new Call-ID, CSeq, the Via of the socket
//! it leaves from, extra headers and a body — sent on a client transaction of the
//! shared table. Retransmissions (T1 doubling up to T2 over UDP) and the final-response
//! timeout (`fr_timer`, `fr_inv_timer` for INVITE) are tm's usual timer work; the
//! transaction is marked local (`T_LOCAL`), so its replies are never relayed.
//!
//! When the transaction ends — a final reply arrived (in the receiver that got it) or
//! the timer gave up (in the timer process, a local 408) — the callback given with the
//! request runs once, with no tm lock held, with the code and the caller's parameter.
//! Callbacks are registered before fork ([`register_callback`]) and named in shm by
//! their index, so no code pointer is kept in shared memory.
//!
//! Used by dispatcher's probing. Not done yet: the ACK of a 2xx to a local INVITE (a
//! dialog-forming `t_uac_dlg` comes with the MI command).

use std::cell::{Cell as StdCell, RefCell};
use std::sync::atomic::{AtomicU32, Ordering};

use openser_core::cfg::ast::RouteKind;
use openser_core::msg::{ViaParams, build_request, via_line};
use openser_core::parser::{FirstLine, HdrType, RcvInfo, SipMsg};
use openser_core::script::{Ctx, route_index, run_route};
use openser_core::state::Registry;
use openser_core::transport::send;

use super::fwd::{self, now_ms};
use super::h_table::*;
use super::lookup::{branch_id, tm_hash};
use super::{P, stats};

/// What a callback learns about a finished local request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UacDone {
    /// The final status: the reply's, or 408 when no final reply came in time.
    pub code: u16,
    /// The parameter given with the request.
    pub param: u64,
    /// The final reply as received (`None` for a local 408): uac's remote
    /// registration reads its challenge, Contact and Expires.
    pub reply: Option<Vec<u8>>,
}

/// A completion callback (runs with no tm lock held).
pub type UacCallback = fn(&UacDone);

static CALLBACKS: Registry<UacCallback> = Registry::new();
static NR_CALLBACKS: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static DONE: RefCell<Vec<(u32, UacDone)>> = const { RefCell::new(Vec::new()) };
    static SEQ: StdCell<u64> = const { StdCell::new(0) };
}

/// Register a completion callback (mod_init, before fork); its id goes with requests.
pub fn register_callback(f: UacCallback) -> u32 {
    let mut v = CALLBACKS.lock();
    v.push(f);
    NR_CALLBACKS.store(v.len() as u32, Ordering::Release);
    v.len() as u32
}

/// A request to send.
#[derive(Clone, Debug, Default)]
pub struct LocalRequest<'a> {
    pub method: &'a str,
    pub ruri: &'a str,
    /// From URI or name-addr (a tag is added).
    pub from: &'a str,
    /// To URI or name-addr.
    pub to: &'a str,
    /// Next hop (an outbound proxy URI); the Request-URI when `None`.
    pub dst: Option<&'a str>,
    /// Extra header lines, each ending in CRLF.
    pub headers: &'a str,
    pub body: &'a [u8],
    /// (callback id from [`register_callback`], parameter).
    pub callback: Option<(u32, u64)>,
    /// Call-ID to use (a fresh one when `None`).
    pub callid: Option<&'a str>,
    /// CSeq number (1 when `None`).
    pub cseq: Option<u32>,
    /// Listen socket index to send from (chosen by destination when `None`).
    pub sock: Option<usize>,
}

fn angle(s: &str) -> String {
    let s = s.trim();
    if s.contains('<') {
        s.to_string()
    } else {
        format!("<{s}>")
    }
}

/// A fresh token unique to this process and moment (Call-ID, tags).
fn token() -> String {
    let n = SEQ.with(|s| {
        let v = s.get().wrapping_add(1);
        s.set(v);
        v
    });
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{:x}-{:x}-{:x}", std::process::id(), t, n)
}

/// The request text: (without Via, full), and the key spans (into the text without Via).
fn build(r: &LocalRequest, via: &str, callid: &str, cseq: u32) -> (Vec<u8>, Vec<u8>, Key) {
    let method = r.method.trim();
    let mut head = format!("{method} {} SIP/2.0\r\n", r.ruri.trim());
    let line_end = head.len();
    let mut rest = String::with_capacity(256);
    if r.from.contains(";tag=") {
        rest.push_str(&format!("From: {}\r\n", r.from.trim()));
    } else {
        rest.push_str(&format!(
            "From: {};tag={}\r\n",
            angle(r.from),
            token().replace('-', "")
        ));
    }
    rest.push_str(&format!("To: {}\r\n", angle(r.to)));
    let callid_line = format!("Call-ID: {callid}\r\n");
    let cseq_line = format!("CSeq: {cseq} {method}\r\n");
    let after_to = rest.len();
    rest.push_str(&callid_line);
    rest.push_str(&cseq_line);
    rest.push_str("Max-Forwards: 70\r\n");
    rest.push_str(r.headers);
    rest.push_str(&format!("Content-Length: {}\r\n\r\n", r.body.len()));
    let mut no_via = head.clone().into_bytes();
    let base = no_via.len();
    no_via.extend_from_slice(rest.as_bytes());
    no_via.extend_from_slice(r.body);
    let span = |off: usize, len: usize| KSpan {
        off: off as u32,
        len: len as u32,
    };
    let cid = base + after_to + "Call-ID: ".len();
    let cs = base + after_to + callid_line.len() + "CSeq: ".len();
    let key = Key {
        method: span(0, method.len()),
        ruri: span(method.len() + 1, line_end - method.len() - 11),
        callid: span(cid, callid.len()),
        cseq_num: span(cs, cseq.to_string().len()),
        ..Key::default()
    };
    head.push_str(via);
    let mut full = head.into_bytes();
    full.extend_from_slice(rest.as_bytes());
    full.extend_from_slice(r.body);
    (no_via, full, key)
}

/// Send `r` on a new local transaction. Resolves the next hop (may block on DNS: never
/// call it under a lock). Errors are returned (and the callback is not run).
pub fn send_request(r: &LocalRequest) -> Result<(), String> {
    send_request_cell(r).map(drop)
}

/// [`send_request`], keeping a counted reference to the transaction (the MI's
/// `t_uac_dlg` waits on it for the final reply).
pub fn send_request_cell(r: &LocalRequest) -> Result<CellRef, String> {
    if r.method.trim().is_empty() || r.method.contains(char::is_whitespace) {
        return Err(format!("bad method {:?}", r.method));
    }
    if let Some((id, _)) = r.callback
        && (id == 0 || id > NR_CALLBACKS.load(Ordering::Acquire))
    {
        return Err(format!("unknown callback {id}"));
    }
    let target = r.dst.unwrap_or(r.ruri);
    let (addr, proto) = send::uri_destination(target)?;
    let sock = match r.sock {
        Some(s) => s,
        None => send::choose_socket_for(&addr, proto, None),
    };
    if openser_core::transport::socket::sockets()
        .get(sock)
        .is_none()
    {
        return Err("no listen socket".into());
    }
    let callid = r.callid.map(str::to_string).unwrap_or_else(token);
    let cseq = r.cseq.unwrap_or(1);
    let hash = tm_hash(callid.as_bytes(), cseq.to_string().as_bytes());
    let is_invite = r.method.trim().eq_ignore_ascii_case("INVITE");
    // The cell keeps the request without our Via (its branch id needs the label the
    // table gives the cell); the branch keeps the request as sent.
    let (mut no_via, _, mut key) = build(r, "", &callid, cseq);
    // local_route (OpenSIPS' name), then event_route[tm:local-request] (Kamailio's)
    for (kind, name) in [
        (RouteKind::Local, "0"),
        (RouteKind::Event, "tm:local-request"),
    ] {
        if let Some(idx) = route_index(kind, name)
            && let Some((text, k)) = run_local_route(&no_via, sock, kind, idx)?
        {
            no_via = text;
            key = k;
        }
    }
    let (cb, param) = r.callback.unwrap_or((0, 0));
    let (c, _) = find_or_insert(
        hash,
        |_| false,
        || {
            let req = shm::ShmStr::new(&no_via)?;
            let st = CellState {
                flags: T_LOCAL | T_ALL_LOCAL | if is_invite { T_INVITE } else { 0 },
                fr_ms: P.fr_ms(),
                fr_inv_ms: P.fr_inv_ms(),
                uac_cb: cb,
                uac_param: param,
                ..Default::default()
            };
            let c = new_cell(hash, req, key, CellInit::default(), st);
            if c.is_none() {
                req.free();
            }
            c
        },
    )
    .ok_or("out of shm memory")?;
    let branch = branch_id(c.hash_index, c.label, 0);
    let (host, port) = send::advertised(sock);
    let via = via_line(
        &ViaParams {
            host,
            port,
            proto: send::socket_proto(sock),
            branch: &branch,
            rport: false,
            extra_params: "",
        },
        false,
    );
    // Same Call-ID and tags as the cell's copy: rebuild with the Via only.
    let full = with_via(&no_via, &via);
    stats().uac.inc();
    let now = now_ms();
    let (t1, _) = P.t1_t2();
    let mut g = c.lock_state();
    let st = g.st();
    let Some(req) = shm::ShmStr::new(&full) else {
        st.flags |= T_DELETE;
        c.due(now);
        return Err("out of shm memory".into());
    };
    let ruri = shm::ShmStr::new(r.ruri.trim().as_bytes()).unwrap_or_default();
    st.nr_branches = 1;
    let b = &mut st.branches[0];
    b.request = req;
    b.uri = ruri;
    b.dst = Addr::from_sa(addr);
    b.sock = sock as u32;
    let sent = fwd::send(sock, addr, &full);
    let mut due = u64::MAX;
    if send::socket_proto(sock) == openser_core::parser::Proto::Udp {
        b.retr_iv = t1;
        b.retr_at = now + u64::from(t1);
        due = b.retr_at;
    }
    b.fr_at = now + u64::from(if is_invite { st.fr_inv_ms } else { st.fr_ms });
    due = due.min(b.fr_at);
    if !sent {
        // Try again at the first retransmission; the timeout ends it as usual.
        openser_core::log_dbg!("first send of a local {} failed", r.method);
    }
    c.due(due);
    drop(g);
    Ok(c)
}

/// The ACK for a 2xx to a local INVITE (RFC 3261 §13.2.2.4, a new transaction):
/// Request-URI from the reply's Contact (the INVITE's when none), the route set from
/// the reply's Record-Route in reverse order, From/Call-ID/CSeq number of the INVITE,
/// the reply's To (with its tag), a Via of its own branch.
pub fn build_2xx_ack(invite: &[u8], reply: &SipMsg) -> Option<Vec<u8>> {
    use std::fmt::Write as _;
    let m = SipMsg::parse(invite).ok()?;
    let FirstLine::Request { uri, .. } = *m.first_line() else {
        return None;
    };
    let target = reply
        .contacts()
        .ok()
        .and_then(|l| l.contacts.first().map(|c| reply.s(c.uri).to_string()))
        .unwrap_or_else(|| m.s(uri).to_string());
    let mut s = String::with_capacity(512);
    let _ = write!(s, "ACK {target} SIP/2.0\r\n");
    let v1 = m.via1().ok()?;
    let via = m.s(v1.full);
    // the INVITE's Via with a branch of its own
    let via = match via.find(";branch=") {
        Some(i) => {
            let rest = &via[i + 8..];
            let end = rest.find(';').unwrap_or(rest.len());
            format!("{}{}.ack{}", &via[..i + 8], &rest[..end], &rest[end..])
        }
        None => via.to_string(),
    };
    let _ = write!(s, "Via: {via}\r\n");
    let buf = m.buf();
    for h in m.hdrs() {
        if matches!(h.htype, HdrType::From | HdrType::CallId) {
            s.push_str(std::str::from_utf8(h.full.bytes(buf)).ok()?.trim_end());
            s.push_str("\r\n");
        }
    }
    if let Ok(rr) = reply.routes(HdrType::RecordRoute) {
        for r in rr.iter().rev() {
            let _ = write!(
                s,
                "Route: <{}>{}\r\n",
                reply.s(r.uri),
                reply.s(r.params_span)
            );
        }
    }
    s.push_str(&super::cancel::to_line(reply)?);
    s.push_str("\r\n");
    let cseq = m.cseq().ok()?;
    let _ = write!(s, "CSeq: {} ACK\r\n", m.s(cseq.num_text));
    s.push_str("Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
    Some(s.into_bytes())
}

/// tm's hook for a final 2xx on branch `br` of a local transaction (reply lock held):
/// keep the reply for the MI caller and ACK it when the request was an INVITE (for
/// every 2xx, retransmissions included).
pub(super) fn local_2xx_locked(c: &Cell, st: &mut CellState, br: usize, reply: &SipMsg) {
    let b = &mut st.branches[br];
    if b.reply.is_empty()
        && let Some(r) = shm::ShmStr::new(reply.buf())
    {
        std::mem::replace(&mut b.reply, r).free();
    }
    if c.is_invite
        && let Some(ack) = build_2xx_ack(b.request.as_bytes(), reply)
        && let Some(dst) = b.dst.to_sa()
    {
        fwd::send(b.sock as usize, dst, &ack);
    }
}

/// Run `local_route` (or `event_route[tm:local-request]`) on a request about to be
/// sent (no Via yet): `drop` cancels it (an error), header and R-URI changes are
/// applied. Returns the new text and key when the route changed anything.
fn run_local_route(
    no_via: &[u8],
    sock: usize,
    kind: RouteKind,
    idx: usize,
) -> Result<Option<(Vec<u8>, Key)>, String> {
    let si = openser_core::transport::socket::sockets()
        .get(sock)
        .ok_or("no listen socket")?;
    let rcv = RcvInfo {
        src: si.addr,
        dst: si.addr,
        proto: send::socket_proto(sock),
        sock_idx: sock,
    };
    let mut m = SipMsg::new(no_via, rcv).map_err(|e| format!("local request: {e:?}"))?;
    let mut ctx = Ctx::new(&mut m, openser_core::route::REQUEST_ROUTE);
    run_route(kind, idx, &mut ctx);
    if ctx.drop_requested() {
        return Err(format!(
            "dropped by {}",
            if kind == RouteKind::Local {
                "local_route"
            } else {
                "event_route[tm:local-request]"
            }
        ));
    }
    drop(ctx);
    if m.lumps.is_empty() && m.new_uri.is_none() {
        return Ok(None);
    }
    // build_request puts a Via on top: a placeholder, cut out again.
    let via = ViaParams {
        host: "0.0.0.0",
        port: 0,
        proto: rcv.proto,
        branch: "z9hG4bKlocal",
        rport: false,
        extra_params: "",
    };
    let out = build_request(&m, &via, &[]).map_err(|e| format!("local_route: {e:?}"))?;
    let line1 = out
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or("local_route: no request line")?
        + 2;
    let via_end = out[line1..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or("local_route: no Via")?
        + line1
        + 2;
    let mut text = out[..line1].to_vec();
    text.extend_from_slice(&out[via_end..]);
    let key = key_of(&text).ok_or("local_route broke the request")?;
    Ok(Some((text, key)))
}

/// The key spans of a request built here (after `local_route` moved things).
fn key_of(t: &[u8]) -> Option<Key> {
    let span = |off: usize, len: usize| KSpan {
        off: off as u32,
        len: len as u32,
    };
    let find = |needle: &[u8]| t.windows(needle.len()).position(|w| w == needle);
    let line_end = find(b"\r\n")?;
    let sp1 = t[..line_end].iter().position(|&c| c == b' ')?;
    let sp2 = t[..line_end].iter().rposition(|&c| c == b' ')?;
    let cid = find(b"\r\nCall-ID: ")? + 11;
    let cid_len = t[cid..].windows(2).position(|w| w == b"\r\n")?;
    let cs = find(b"\r\nCSeq: ")? + 8;
    let cs_len = t[cs..].iter().position(|&c| c == b' ')?;
    Some(Key {
        method: span(0, sp1),
        ruri: span(sp1 + 1, sp2.checked_sub(sp1 + 1)?),
        callid: span(cid, cid_len),
        cseq_num: span(cs, cs_len),
        ..Key::default()
    })
}

/// Insert the Via line after the request line of `no_via`.
fn with_via(no_via: &[u8], via: &str) -> Vec<u8> {
    let cut = no_via
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| p + 2)
        .unwrap_or(no_via.len());
    let mut v = Vec::with_capacity(no_via.len() + via.len());
    v.extend_from_slice(&no_via[..cut]);
    v.extend_from_slice(via.as_bytes());
    v.extend_from_slice(&no_via[cut..]);
    v
}

/// tm's hook (reply lock held): the transaction got its final outcome `code`; a local
/// request's callback is queued, to run when the lock is released.
pub(super) fn final_locked(st: &mut CellState, code: u16) {
    if st.uac_cb == 0 {
        return;
    }
    let id = std::mem::take(&mut st.uac_cb);
    let n = (st.nr_branches as usize).min(st.branches.len());
    let reply = st.branches[..n]
        .iter()
        .find(|b| b.last_code == code && b.flags & B_LOCAL_REPLY == 0 && !b.reply.is_empty())
        .map(|b| b.reply.as_bytes().to_vec());
    let done = UacDone {
        code,
        param: st.uac_param,
        reply,
    };
    DONE.with(|q| q.borrow_mut().push((id, done)));
}

/// Whether completions wait to be run.
pub(super) fn queued() -> bool {
    DONE.with(|q| !q.borrow().is_empty())
}

/// Run the queued completions (no tm lock held).
pub(super) fn flush() {
    loop {
        let Some((id, done)) = DONE.with(|q| {
            let mut q = q.borrow_mut();
            (!q.is_empty()).then(|| q.remove(0))
        }) else {
            return;
        };
        let f = CALLBACKS.lock().get(id as usize - 1).copied();
        if let Some(f) = f {
            f(&done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_text_and_key() {
        let r = LocalRequest {
            method: "OPTIONS",
            ruri: "sip:gw1@127.0.0.1:5070",
            from: "sip:dispatcher@localhost",
            to: "<sip:gw1@127.0.0.1:5070>",
            headers: "X-Probe: 1\r\n",
            ..Default::default()
        };
        let (no_via, _, key) = build(&r, "", "abc-123", 7);
        let via = "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n";
        let full = with_via(&no_via, via);
        let t = String::from_utf8(full.clone()).unwrap();
        assert!(t.starts_with("OPTIONS sip:gw1@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP"));
        assert!(t.contains("\r\nTo: <sip:gw1@127.0.0.1:5070>\r\n"));
        assert!(t.contains("\r\nFrom: <sip:dispatcher@localhost>;tag="));
        assert!(t.contains("\r\nCSeq: 7 OPTIONS\r\nMax-Forwards: 70\r\nX-Probe: 1\r\n"));
        assert!(t.ends_with("Content-Length: 0\r\n\r\n"));
        assert_eq!(key.callid.of(&no_via), b"abc-123");
        assert_eq!(key.cseq_num.of(&no_via), b"7");
        assert_eq!(key.method.of(&no_via), b"OPTIONS");
        assert_eq!(key.ruri.of(&no_via), b"sip:gw1@127.0.0.1:5070");
        // The text parses as a request, with the Via first.
        let m = openser_core::parser::SipMsg::parse(&full).expect("parses");
        assert!(m.via1().is_ok());
        assert_eq!(m.callid(), Some("abc-123"));
    }

    #[test]
    fn key_after_local_route() {
        let r = LocalRequest {
            method: "OPTIONS",
            ruri: "sip:gw1@127.0.0.1:5070",
            from: "sip:a@x",
            to: "sip:b@y",
            ..Default::default()
        };
        let (no_via, _, key) = build(&r, "", "cid-9", 3);
        let k = key_of(&no_via).unwrap();
        for (a, b) in [
            (k.method, key.method),
            (k.ruri, key.ruri),
            (k.callid, key.callid),
            (k.cseq_num, key.cseq_num),
        ] {
            assert_eq!(a.of(&no_via), b.of(&no_via));
            assert_eq!((a.off, a.len), (b.off, b.len));
        }
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(token(), token());
    }

    fn cb(_: &UacDone) {}

    #[test]
    fn completion_queue_runs_once() {
        let id = register_callback(cb);
        let mut st = CellState {
            uac_cb: id,
            uac_param: 42,
            ..Default::default()
        };
        final_locked(&mut st, 408);
        final_locked(&mut st, 200); // already reported
        assert!(queued());
        let n = DONE.with(|q| q.borrow().len());
        assert_eq!(n, 1);
        flush();
        assert!(!queued());
    }
}
