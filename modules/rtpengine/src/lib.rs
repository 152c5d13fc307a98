//! rtpengine (the Kamailio/OpenSIPS module of that name): steer a call's media through
//! the rtpengine media relay over its "ng" control protocol — bencoded dictionaries
//! over UDP, each message prefixed with a cookie the reply repeats.
//!
//! Functions (REQUEST, ONREPLY, FAILURE, BRANCH; 1 on success, −1 on failure):
//! * `rtpengine_offer([flags])`: send the message's SDP as an `offer` and replace it by
//!   the SDP the relay returns (pointing at the relay).
//! * `rtpengine_answer([flags])`: the same as an `answer` (the SDP of the other side).
//! * `rtpengine_delete([flags])`: `delete` the call's session (Call-ID, From tag, and To
//!   tag if any).
//! * `rtpengine_manage([flags])`: choose by itself, as Kamailio's: an INVITE/UPDATE with
//!   SDP is an offer, an ACK/PRACK with SDP an answer, BYE/CANCEL a delete; a 1xx/2xx
//!   reply to an INVITE with SDP an answer, a reply ≥ 300 a delete; in failure_route a
//!   delete.
//!
//! Flags are Kamailio's space-separated words: `trust-address` (else the message's
//! source address is sent as `received-from`), `replace-origin`,
//! `replace-session-connection`, `ICE=remove|force|…`, `RTP/AVP` and the other
//! transport profiles, `direction=…` (repeatable), `internal`/`external` (directions),
//! `key=value` passed as a string, and any other word as an entry of `flags`
//! (`symmetric`, `asymmetric`, `strict-source`, …).
//!
//! Parameters: `rtpengine_sock` (`udp:127.0.0.1:2223`; several: space-separated, each
//! `udp:host:port` or `udp6:host:port`, optionally `=weight`), `rtpengine_tout_ms` 1000,
//! `rtpengine_retr` 5, `rtpengine_disable_tout` 60 (s). A relay that does not answer
//! within `rtpengine_tout_ms × rtpengine_retr` is disabled for `rtpengine_disable_tout`
//! seconds (state in shm, seen by every process), then re-tested with `ping`; the call
//! is hashed on its Call-ID over the weights of the enabled relays.
//!
//! MI: `rtpengine_show` (relays and state), `rtpengine_enable url 0|1`.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::module::{
    CmdExport, FixedArg, IntParam, MiExport, ModuleExports, Param, StrParam,
};
use openser_core::parser::{Method, SipMsg};
use openser_core::relay;
use openser_core::route::{BRANCH_ROUTE, FAILURE_ROUTE, ONREPLY_ROUTE, REQUEST_ROUTE};
use openser_core::script::Ctx;

pub mod bencode;
pub mod body;

use bencode::Value;

const ALL4: u32 = REQUEST_ROUTE | ONREPLY_ROUTE | FAILURE_ROUTE | BRANCH_ROUTE;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "rtpengine",
    params: &[
        Param::str_with("rtpengine_sock", &P.rtpengine_sock, check_sock),
        Param::int_range("rtpengine_tout_ms", &P.rtpengine_tout_ms, 1, 60_000),
        Param::int_range("rtpengine_retr", &P.rtpengine_retr, 1, 100),
        Param::int("rtpengine_disable_tout", &P.rtpengine_disable_tout),
    ],
    cmds: &[
        CmdExport::new("rtpengine_offer", 0, 1, ALL4, cmd_offer),
        CmdExport::new("rtpengine_answer", 0, 1, ALL4, cmd_answer),
        CmdExport::new("rtpengine_delete", 0, 1, ALL4, cmd_delete),
        CmdExport::new("rtpengine_manage", 0, 1, ALL4, cmd_manage),
    ],
    mi: &[
        MiExport::new("rtpengine_show", mi_show).no_input(),
        MiExport::new("rtpengine_enable", mi_enable),
    ],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

pub struct Params {
    pub rtpengine_sock: StrParam,
    pub rtpengine_tout_ms: IntParam,
    pub rtpengine_retr: IntParam,
    pub rtpengine_disable_tout: IntParam,
}

pub static P: Params = Params {
    rtpengine_sock: StrParam::new("udp:127.0.0.1:2223"),
    rtpengine_tout_ms: IntParam::new(1000),
    rtpengine_retr: IntParam::new(5),
    rtpengine_disable_tout: IntParam::new(60),
};

/// One relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub url: String,
    pub addr: SocketAddr,
    pub weight: u32,
}

/// Parse `rtpengine_sock`.
pub fn parse_nodes(s: &str) -> Result<Vec<Node>, String> {
    let mut v = Vec::new();
    for item in s.split_whitespace() {
        let (url, weight) = openser_core::relay::split_weight(item, "rtpengine_sock")?;
        let (v6, a) = if let Some(a) = url.strip_prefix("udp6:") {
            (true, a)
        } else if let Some(a) = url.strip_prefix("udp:") {
            (false, a)
        } else {
            return Err(format!(
                "rtpengine: `{url}`: only udp: and udp6: relays are supported"
            ));
        };
        let hp = a.trim_start_matches('[');
        let (host, port) = match hp.rsplit_once(':') {
            Some((h, p)) => (h.trim_end_matches(']'), p),
            None => return Err(format!("rtpengine: `{url}` has no port")),
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("rtpengine: bad port in `{url}`"))?;
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("rtpengine: cannot resolve `{host}`: {e}"))?
            .find(|s| s.is_ipv6() == v6)
            .ok_or_else(|| format!("rtpengine: no address for `{host}`"))?;
        v.push(Node {
            url: url.to_string(),
            addr,
            weight,
        });
    }
    if v.is_empty() {
        return Err("rtpengine: no relay in rtpengine_sock".into());
    }
    Ok(v)
}

fn check_sock(s: &str) -> Result<(), String> {
    parse_nodes(s).map(|_| ())
}

struct Relays {
    nodes: Vec<Node>,
    /// 0 enabled, else re-test time (unix s); u64::MAX = disabled by MI
    state: &'static [AtomicU64],
}

static RELAYS: OnceLock<Relays> = OnceLock::new();

fn make_relays() -> Relays {
    let nodes = parse_nodes(P.rtpengine_sock.get()).unwrap_or_default();
    let n = nodes.len();
    let state = if shm::is_initialized()
        && let Some(s) = shm::alloc_static_slice_with(n, |_| AtomicU64::new(0))
    {
        s
    } else {
        let v: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
        Box::leak(v.into_boxed_slice())
    };
    Relays { nodes, state }
}

fn relays() -> &'static Relays {
    RELAYS.get_or_init(make_relays)
}

fn mod_init() -> Result<(), String> {
    parse_nodes(P.rtpengine_sock.get())?;
    let _ = relays();
    Ok(())
}

thread_local! {
    static SOCKS: RefCell<Vec<Option<UdpSocket>>> = const { RefCell::new(Vec::new()) };
    static SEQ: Cell<u32> = const { Cell::new(0) };
    /// The receive buffer, allocated once per process (replies carry whole SDPs).
    static RBUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn socket(i: usize, n: &Node) -> std::io::Result<UdpSocket> {
    if let Some(s) = SOCKS.with(|v| {
        v.borrow()
            .get(i)
            .and_then(|s| s.as_ref().and_then(|s| s.try_clone().ok()))
    }) {
        return Ok(s);
    }
    let bind: SocketAddr = if n.addr.is_ipv6() {
        "[::]:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    };
    let s = UdpSocket::bind(bind)?;
    s.connect(n.addr)?;
    let keep = s.try_clone()?;
    SOCKS.with(|v| {
        let mut v = v.borrow_mut();
        if v.len() <= i {
            v.resize_with(i + 1, || None);
        }
        v[i] = Some(keep);
    });
    Ok(s)
}

/// Send one ng message to relay `i` and decode the reply dictionary. Blocks at most
/// `rtpengine_tout_ms × rtpengine_retr`.
fn send_ng(i: usize, n: &Node, msg: &Value) -> Result<Value, String> {
    let s = socket(i, n).map_err(|e| format!("can't create socket: {e}"))?;
    let seq = SEQ.with(|c| {
        let v = c.get();
        c.set(v.wrapping_add(1));
        v
    });
    let cookie = format!("{}_{}", openser_core::sys::getpid(), seq);
    let mut pkt = Vec::with_capacity(512);
    pkt.extend_from_slice(cookie.as_bytes());
    pkt.push(b' ');
    msg.encode_into(&mut pkt);
    let mut buf = RBUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
    if buf.len() < 65536 {
        buf = vec![0u8; 65536];
    }
    let r = exchange(i, &s, &cookie, &pkt, &mut buf);
    RBUF.with(|b| *b.borrow_mut() = buf);
    r
}

fn exchange(
    i: usize,
    s: &UdpSocket,
    cookie: &str,
    pkt: &[u8],
    buf: &mut [u8],
) -> Result<Value, String> {
    let _ = s.set_nonblocking(true);
    while s.recv(buf).is_ok() {}
    let _ = s.set_nonblocking(false);
    let tout = Duration::from_millis(P.rtpengine_tout_ms.get().max(1) as u64);
    // The reply can take up to the timeouts: let the other receivers read meanwhile.
    openser_core::transport::turn::let_others_read();
    for _ in 0..P.rtpengine_retr.get().max(1) {
        if let Err(e) = s.send(pkt) {
            SOCKS.with(|v| {
                if let Some(x) = v.borrow_mut().get_mut(i) {
                    *x = None;
                }
            });
            return Err(format!("can't send command to rtpengine: {e}"));
        }
        let deadline = Instant::now() + tout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = s.set_read_timeout(Some(left));
            match s.recv(buf) {
                Ok(len) => {
                    let r = &buf[..len];
                    let Some(rest) = r.strip_prefix(cookie.as_bytes()) else {
                        continue;
                    };
                    let Some(rest) = rest.strip_prefix(b" ") else {
                        continue;
                    };
                    return bencode::decode(rest).map_err(|e| e.to_string());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => return Err(format!("can't read reply from rtpengine: {e}")),
            }
        }
    }
    Err("timeout waiting reply from rtpengine".into())
}

fn disable(r: &Relays, i: usize, now: i64) {
    let t = P.rtpengine_disable_tout.get();
    let v = if t < 0 {
        u64::MAX
    } else {
        (now + t).max(1) as u64
    };
    r.state[i].store(v, Ordering::Relaxed);
}

/// The relay for `callid` (re-testing disabled ones whose time has come).
fn select(r: &Relays, callid: &str, now: i64) -> Option<usize> {
    for (i, n) in r.nodes.iter().enumerate() {
        let st = r.state[i].load(Ordering::Relaxed);
        if st != 0 && st != u64::MAX && st <= now.max(0) as u64 {
            let ping = Value::dict(vec![("command", Value::str("ping"))]);
            match send_ng(i, n, &ping) {
                Ok(v) if v.get("result").and_then(Value::as_str).as_deref() == Some("pong") => {
                    openser_core::log_info!("rtpengine <{}> answers again, re-enabled", n.url);
                    r.state[i].store(0, Ordering::Relaxed);
                }
                _ => disable(r, i, now),
            }
        }
    }
    let weights: Vec<u32> = r
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            if r.state[i].load(Ordering::Relaxed) == 0 {
                n.weight
            } else {
                0
            }
        })
        .collect();
    relay::pick(&weights, relay::callid_hash(callid))
}

/// Send `msg` for `callid` to a relay, disabling relays that do not answer.
pub fn rtpe_command(callid: &str, msg: &Value) -> Result<Value, String> {
    let r = relays();
    loop {
        let now = openser_core::clock::now();
        let Some(i) = select(r, callid, now) else {
            return Err("no available rtpengine relay".into());
        };
        match send_ng(i, &r.nodes[i], msg) {
            Ok(v) => return Ok(v),
            Err(e) => {
                openser_core::log_err!(
                    "rtpengine <{}> does not respond ({e}), disable it",
                    r.nodes[i].url
                );
                disable(r, i, now);
            }
        }
    }
}

/// The ng dictionary entries a flags string adds.
pub fn flag_entries(flags: &str, out: &mut Vec<(String, Value)>) -> bool {
    let mut list = Vec::new();
    let mut replace = Vec::new();
    let mut direction = Vec::new();
    let mut trust = false;
    for w in flags.split_whitespace() {
        let lw = w.to_ascii_lowercase();
        if lw == "trust-address" {
            trust = true;
            list.push(Value::str(w));
        } else if let Some(r) = lw.strip_prefix("replace-") {
            replace.push(Value::str(r));
        } else if lw == "internal" || lw == "external" {
            direction.push(Value::str(&lw));
        } else if lw.starts_with("rtp/") || lw.starts_with("udp/tls/rtp/") {
            out.push((
                "transport-protocol".into(),
                Value::str(&w.to_ascii_uppercase()),
            ));
        } else if let Some((k, v)) = w.split_once('=') {
            if k.eq_ignore_ascii_case("direction") {
                direction.push(Value::str(v));
            } else {
                out.push((k.to_string(), Value::str(v)));
            }
        } else {
            list.push(Value::str(w));
        }
    }
    if !list.is_empty() {
        out.push(("flags".into(), Value::List(list)));
    }
    if !replace.is_empty() {
        out.push(("replace".into(), Value::List(replace)));
    }
    if !direction.is_empty() {
        out.push(("direction".into(), Value::List(direction)));
    }
    trust
}

/// Call-ID, From tag, To tag of a message.
fn ids(msg: &SipMsg) -> Result<(String, String, String), &'static str> {
    let callid = msg.callid().map(str::trim).unwrap_or("").to_string();
    if callid.is_empty() {
        return Err("can't get Call-Id field");
    }
    let from_tag = msg
        .from()
        .ok()
        .and_then(|f| f.tag.map(|s| msg.s(s).to_string()))
        .unwrap_or_default();
    if from_tag.is_empty() {
        return Err("can't get From tag");
    }
    let to_tag = msg
        .to()
        .ok()
        .and_then(|t| t.tag.map(|s| msg.s(s).to_string()))
        .unwrap_or_default();
    Ok((callid, from_tag, to_tag))
}

/// Build the ng request for `command` on `msg` (the SDP given for offer/answer).
pub fn build_request(
    command: &str,
    msg: &SipMsg,
    flags: &str,
    sdp: Option<&[u8]>,
) -> Result<(String, Value), &'static str> {
    let (callid, from_tag, to_tag) = ids(msg)?;
    let mut d: Vec<(String, Value)> = vec![
        ("command".into(), Value::str(command)),
        ("call-id".into(), Value::str(&callid)),
        ("from-tag".into(), Value::str(&from_tag)),
    ];
    if !to_tag.is_empty() {
        d.push(("to-tag".into(), Value::str(&to_tag)));
    }
    if let Some(s) = sdp {
        d.push(("sdp".into(), Value::Bytes(s.to_vec())));
    }
    let trust = flag_entries(flags, &mut d);
    if sdp.is_some() && !trust {
        let ip = msg.rcv.src.ip();
        let fam = match ip {
            IpAddr::V4(_) => "IP4",
            IpAddr::V6(_) => "IP6",
        };
        d.push((
            "received-from".into(),
            Value::List(vec![Value::str(fam), Value::str(&ip.to_string())]),
        ));
    }
    let v = Value::Dict(d.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect());
    Ok((callid, v))
}

fn result_ok(v: &Value) -> Result<(), String> {
    match v.get("result").and_then(Value::as_str).as_deref() {
        Some("ok") => Ok(()),
        Some("error") => Err(format!(
            "rtpengine error: {}",
            v.get("error-reason")
                .and_then(Value::as_str)
                .unwrap_or_default()
        )),
        other => Err(format!("rtpengine answered {other:?}")),
    }
}

fn offer_answer(ctx: &mut Ctx, command: &str, flags: &str) -> i32 {
    let msg = &mut *ctx.msg;
    let Some((s, e)) = body::sdp_of(msg) else {
        openser_core::log_err!("{command}: no SDP in the message");
        return -1;
    };
    let sdp = msg.buf()[s..e].to_vec();
    let (callid, req) = match build_request(command, msg, flags, Some(&sdp)) {
        Ok(x) => x,
        Err(why) => {
            openser_core::log_err!("{why}");
            return -1;
        }
    };
    let reply = match rtpe_command(&callid, &req) {
        Ok(r) => r,
        Err(err) => {
            openser_core::log_err!("{command}: {err}");
            return -1;
        }
    };
    if let Err(err) = result_ok(&reply) {
        openser_core::log_err!("{command}: {err}");
        return -1;
    }
    let Some(new_sdp) = reply.get("sdp").and_then(Value::as_bytes) else {
        openser_core::log_err!("{command}: no SDP in the rtpengine reply");
        return -1;
    };
    msg.lumps.replace(s, e - s, new_sdp);
    1
}

fn delete(ctx: &mut Ctx, flags: &str) -> i32 {
    let (callid, req) = match build_request("delete", ctx.msg, flags, None) {
        Ok(x) => x,
        Err(why) => {
            openser_core::log_err!("{why}");
            return -1;
        }
    };
    match rtpe_command(&callid, &req).and_then(|r| result_ok(&r)) {
        Ok(()) => 1,
        Err(err) => {
            openser_core::log_err!("delete: {err}");
            -1
        }
    }
}

fn flags_arg(ctx: &mut Ctx, args: &[FixedArg]) -> String {
    args.first().map(|a| ctx.arg_str(a)).unwrap_or_default()
}

fn cmd_offer(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let f = flags_arg(ctx, args);
    offer_answer(ctx, "offer", &f)
}

fn cmd_answer(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let f = flags_arg(ctx, args);
    offer_answer(ctx, "answer", &f)
}

fn cmd_delete(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let f = flags_arg(ctx, args);
    delete(ctx, &f)
}

/// What `rtpengine_manage` does with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manage {
    Offer,
    Answer,
    Delete,
    Nothing,
}

pub fn manage_action(msg: &SipMsg, route_type: u32) -> Manage {
    if route_type & FAILURE_ROUTE != 0 {
        return Manage::Delete;
    }
    let has_sdp = body::sdp_of(msg).is_some();
    if msg.is_request() {
        return match msg.method() {
            Method::Invite | Method::Update if has_sdp => Manage::Offer,
            Method::Ack | Method::Prack if has_sdp => Manage::Answer,
            Method::Bye | Method::Cancel => Manage::Delete,
            _ => Manage::Nothing,
        };
    }
    let code = msg.status().unwrap_or(0);
    let invite = msg
        .cseq()
        .map(|c| c.method == Method::Invite)
        .unwrap_or(false);
    if !invite {
        return Manage::Nothing;
    }
    if code >= 300 {
        Manage::Delete
    } else if has_sdp && code > 100 {
        Manage::Answer
    } else {
        Manage::Nothing
    }
}

fn cmd_manage(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let f = flags_arg(ctx, args);
    match manage_action(ctx.msg, ctx.route_type) {
        Manage::Offer => offer_answer(ctx, "offer", &f),
        Manage::Answer => offer_answer(ctx, "answer", &f),
        Manage::Delete => delete(ctx, &f),
        Manage::Nothing => 1,
    }
}

fn mi_show(_args: &[MiArg]) -> MiReply {
    let r = relays();
    MiReply::ok(
        r.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let st = r.state[i].load(Ordering::Relaxed);
                MiNode::new("node", n.url.clone())
                    .attr("index", i.to_string())
                    .attr("disabled", if st != 0 { "1" } else { "0" })
                    .attr("weight", n.weight.to_string())
                    .attr(
                        "recheck_ticks",
                        if st == u64::MAX { 0 } else { st }.to_string(),
                    )
            })
            .collect(),
    )
}

fn mi_enable(args: &[MiArg]) -> MiReply {
    if args.len() != 2 {
        return MiReply::err(400, "Too few or too many arguments");
    }
    let Ok(on) = args[1].value.trim().parse::<u32>() else {
        return MiReply::err(400, "Bad parameter value");
    };
    let r = relays();
    let Some(i) = r.nodes.iter().position(|n| n.url == args[0].value.trim()) else {
        return MiReply::err(404, "rtpengine relay not found");
    };
    r.state[i].store(if on != 0 { 0 } else { u64::MAX }, Ordering::Relaxed);
    MiReply::ok(vec![])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sock_list() {
        let v = parse_nodes("udp:127.0.0.1:2223=3 udp6:[::1]:2224").unwrap();
        assert_eq!(v[0].addr, "127.0.0.1:2223".parse().unwrap());
        assert_eq!(v[0].weight, 3);
        assert_eq!(v[1].addr, "[::1]:2224".parse().unwrap());
        assert!(parse_nodes("unix:/x").is_err());
        assert!(parse_nodes("udp:127.0.0.1").is_err());
        assert!(parse_nodes("").is_err());
    }

    #[test]
    fn flags_to_dictionary() {
        let mut d = Vec::new();
        let trust = flag_entries(
            "trust-address replace-origin replace-session-connection ICE=remove RTP/AVP internal direction=pub symmetric",
            &mut d,
        );
        assert!(trust);
        let v = Value::Dict(d.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect());
        assert_eq!(v.get("ICE").unwrap().as_str().unwrap(), "remove");
        assert_eq!(
            v.get("transport-protocol").unwrap().as_str().unwrap(),
            "RTP/AVP"
        );
        assert_eq!(
            v.get("replace").unwrap(),
            &Value::List(vec![Value::str("origin"), Value::str("session-connection")])
        );
        assert_eq!(
            v.get("direction").unwrap(),
            &Value::List(vec![Value::str("internal"), Value::str("pub")])
        );
        assert_eq!(
            v.get("flags").unwrap(),
            &Value::List(vec![Value::str("trust-address"), Value::str("symmetric")])
        );
    }

    #[test]
    fn manage_decisions() {
        let inv = "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n\
            From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
            Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n";
        let m = SipMsg::parse(inv.as_bytes()).unwrap();
        assert_eq!(manage_action(&m, REQUEST_ROUTE), Manage::Offer);
        assert_eq!(manage_action(&m, FAILURE_ROUTE), Manage::Delete);
        let (cid, req) = build_request("offer", &m, "", Some(b"v=0\r\n")).unwrap();
        assert_eq!(cid, "c");
        assert_eq!(req.get("from-tag").unwrap().as_str().unwrap(), "1");
        assert!(req.get("to-tag").is_none());
        assert!(req.get("received-from").is_some());
        let bye = inv
            .replace("INVITE sip", "BYE sip")
            .replace("1 INVITE", "2 BYE");
        assert_eq!(
            manage_action(&SipMsg::parse(bye.as_bytes()).unwrap(), REQUEST_ROUTE),
            Manage::Delete
        );
        let ok = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n\
            From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
            Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n";
        assert_eq!(
            manage_action(&SipMsg::parse(ok.as_bytes()).unwrap(), ONREPLY_ROUTE),
            Manage::Answer
        );
        let busy = ok.replace("200 OK", "486 Busy");
        assert_eq!(
            manage_action(&SipMsg::parse(busy.as_bytes()).unwrap(), ONREPLY_ROUTE),
            Manage::Delete
        );
    }
}
