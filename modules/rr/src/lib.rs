//! rr — Record-Route and loose routing (reference §8.3, RFC 3261 §16.4, §16.6 step 4,
//! §16.12).
//!
//! Record-Route host: the socket the request came in on. With `enable_double_rr`
//! (default on, as 1.2) a second Record-Route for the socket the request leaves on is
//! put first, both with `;r2=on`, when that socket is of another transport or address
//! (UDP in, TCP out; IPv4 in, IPv6 out): it is known only when the outgoing buffer is
//! built (a branch, a `t_relay` after `lookup`), so the outbound header and the `r2`
//! parameter are lumps marked for the builder (`lumps::IF_DIFF_REALMS`,
//! `lumps::SND_SOCKET`, 1.2's conditional lumps), resolved per branch. A forced send
//! socket that differs gives both headers at once.
//!
//! Each RR header is inserted as two lumps at the same offset (head and `>\r\n` tail,
//! priorities -10 and -8 for the first header, -7 and -5 for the second) so
//! `add_rr_param` after `record_route` can insert its parameter between them
//! (priority -9, -6).
//!
//! API for other modules (1.2's `load_rr_api`: uac): [`add_rr_param`],
//! [`route_params`], [`is_upstream`], and [`register_rrcb`] — callbacks run by
//! `loose_route` after it consumed one of our Route headers, with that Route's
//! parameters.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use openser_core::cfg::ast::{Arg, ArgValue};
use openser_core::globals::Proto;
use openser_core::module::{BoolParam, CmdExport, FixedArg, ModuleExports, Param};
use openser_core::msg::lumps::{IF_DIFF_REALMS, SND_SOCKET};
use openser_core::parser::{HdrType, SipMsg, UriRef};
use openser_core::route::*;
use openser_core::script::Ctx;
use openser_core::state::Registry;
use openser_core::transport::socket::{is_myself, sockets};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "rr",
    params: &[
        Param::bool("append_fromtag", &APPEND_FROMTAG),
        Param::bool("enable_double_rr", &DOUBLE_RR),
        Param::bool("enable_full_lr", &FULL_LR),
        Param::bool("add_username", &ADD_USERNAME),
        Param::no_effect("ignore_user", "Route user parts are never compared"),
    ],
    cmds: &[
        CmdExport::new("loose_route", 0, 0, REQUEST_ROUTE, cmd_loose_route),
        CmdExport::new("record_route", 0, 1, RBF, cmd_record_route),
        CmdExport::new("record_route_preset", 1, 1, RBF, cmd_record_route_preset),
        CmdExport::new("add_rr_param", 1, 1, RBF, cmd_add_rr_param),
        CmdExport::new(
            "check_route_param",
            1,
            1,
            REQUEST_ROUTE,
            cmd_check_route_param,
        )
        .fixup(fixup_regex),
        CmdExport::new("is_direction", 1, 1, REQUEST_ROUTE, cmd_is_direction),
    ],
    ..ModuleExports::EMPTY
};

const RBF: u32 = REQUEST_ROUTE | BRANCH_ROUTE | FAILURE_ROUTE;

static APPEND_FROMTAG: BoolParam = BoolParam::new(true);
static DOUBLE_RR: BoolParam = BoolParam::new(true);
static FULL_LR: BoolParam = BoolParam::new(false);
static ADD_USERNAME: BoolParam = BoolParam::new(false);

/// Per-message state in this process: the RR insert positions (for add_rr_param), params
/// added before record_route, and the params of our Route removed by loose_route.
#[derive(Default)]
struct MsgState {
    id: u32,
    buf_addr: usize,
    /// Each inserted RR: its offset, the priority of its parameters, conditional.
    rr_pos: Vec<(usize, i8, bool)>,
    pending_params: String,
    route_params: Option<String>,
}

thread_local! {
    static STATE: RefCell<Option<MsgState>> = const { RefCell::new(None) };
}

fn with_state<R>(msg: &SipMsg, f: impl FnOnce(&mut MsgState) -> R) -> R {
    STATE.with(|g| with_state_in(&mut g.borrow_mut(), msg, f))
}

fn with_state_in<R>(
    g: &mut Option<MsgState>,
    msg: &SipMsg,
    f: impl FnOnce(&mut MsgState) -> R,
) -> R {
    let addr = msg.buf().as_ptr() as usize;
    let fresh = !matches!(g, Some(s) if s.id == msg.id && s.buf_addr == addr);
    if fresh {
        *g = Some(MsgState {
            id: msg.id,
            buf_addr: addr,
            ..Default::default()
        });
    }
    match g.as_mut() {
        Some(s) => f(s),
        None => f(&mut MsgState::default()),
    }
}

fn lr_text() -> &'static str {
    if FULL_LR.get() { ";lr=on" } else { ";lr" }
}

/// Append `host:port[;transport=x]` of socket `idx` as Record-Route advertises it.
fn push_sock_host(out: &mut String, idx: usize) {
    let (host, port) = openser_core::transport::send::advertised(idx);
    out.push_str(host);
    out.push(':');
    openser_core::msg::text::push_dec(out, u64::from(port));
    if let Some(p) = sockets().get(idx).map(|s| s.proto)
        && p != Proto::Udp
    {
        out.push_str(";transport=");
        out.push_str(p.as_str());
    }
}

/// Append `user@` of the R-URI when `add_username` is on.
fn push_user(out: &mut String, msg: &SipMsg) {
    if !ADD_USERNAME.get() {
        return;
    }
    if let Ok(u) = msg.ruri_parsed()
        && !u.user.is_empty()
    {
        out.push_str(&u.user);
        out.push('@');
    }
}

/// Append `;ftag=<From tag>` when `append_fromtag` is on.
fn push_ftag(out: &mut String, msg: &SipMsg) {
    if !APPEND_FROMTAG.get() {
        return;
    }
    if let Some(t) = msg.from().ok().and_then(|f| f.tag) {
        out.push_str(";ftag=");
        out.push_str(msg.s(t));
    }
}

fn rr_insert_pos(msg: &SipMsg) -> usize {
    match msg.first_of(HdrType::RecordRoute) {
        Some(i) => msg.hdrs()[i].full.start as usize,
        None => msg.hdrs_start(),
    }
}

/// Start of a Record-Route header: `Record-Route: <sip:` and the user part.
fn rr_head(msg: &SipMsg) -> String {
    let mut h = String::with_capacity(128);
    h.push_str("Record-Route: <sip:");
    push_user(&mut h, msg);
    h
}

/// Insert one RR header as two lumps: `head` (from [`rr_head`], with the host and the
/// parameters) plus the parameters `add_rr_param` queued, then `>` and the line end, at
/// priorities `prio`, `prio + 2` (parameters at `prio + 1`). `cond`: only when the
/// message leaves on a socket of another realm.
fn insert_rr(msg: &mut SipMsg, mut head: String, prio: i8, cond: bool) {
    let pos = rr_insert_pos(msg);
    with_state(msg, |s| {
        s.rr_pos.push((pos, prio + 1, cond));
        head.push_str(&s.pending_params);
    });
    if cond {
        head.insert_str(0, IF_DIFF_REALMS);
        msg.lumps.add(pos, 0, head, prio);
        msg.lumps
            .add(pos, 0, format!("{IF_DIFF_REALMS}>\r\n"), prio + 2);
    } else {
        msg.lumps.add(pos, 0, head, prio);
        msg.lumps.add(pos, 0, ">\r\n", prio + 2);
    }
}

fn do_record_route(ctx: &mut Ctx, extra: &str) -> i32 {
    let msg = &mut *ctx.msg;
    let in_sock = msg.rcv.sock_idx;
    let params = |msg: &SipMsg, h: &mut String| {
        h.push_str(lr_text());
        push_ftag(h, msg);
        h.push_str(extra);
    };
    match msg.force_send_sock {
        Some(out) if DOUBLE_RR.get() && out != in_sock => {
            // both known now; the outbound one first in the message
            for (sock, prio) in [(out, -10), (in_sock, -7)] {
                let mut h = rr_head(msg);
                push_sock_host(&mut h, sock);
                h.push_str(";r2=on");
                params(msg, &mut h);
                insert_rr(msg, h, prio, false);
            }
        }
        None if DOUBLE_RR.get() && several_realms() => {
            // the outbound socket is chosen later: a conditional first header
            let mut h = rr_head(msg);
            h.push_str(SND_SOCKET);
            h.push_str(";r2=on");
            params(msg, &mut h);
            insert_rr(msg, h, -10, true);
            let mut h = rr_head(msg);
            push_sock_host(&mut h, in_sock);
            params(msg, &mut h);
            insert_rr(msg, h, -7, false);
            // `;r2=on` in the inbound one only when the outbound one is there
            let pos = rr_insert_pos(msg);
            msg.lumps.add(pos, 0, format!("{IF_DIFF_REALMS};r2=on"), -6);
        }
        _ => {
            let mut h = rr_head(msg);
            push_sock_host(&mut h, in_sock);
            params(msg, &mut h);
            insert_rr(msg, h, -10, false);
        }
    }
    1
}

/// Whether the listen sockets differ in transport or address (else a request always
/// leaves in the realm it came from, and one Record-Route is enough).
fn several_realms() -> bool {
    let socks = sockets();
    socks.first().is_some_and(|f| {
        socks
            .iter()
            .any(|s| s.proto != f.proto || s.addr.ip() != f.addr.ip())
    })
}

fn cmd_record_route(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let extra = match args.first() {
        Some(a) => {
            let p = ctx.arg_str(a);
            if p.is_empty() || p.starts_with(';') {
                p
            } else {
                format!(";{p}")
            }
        }
        None => String::new(),
    };
    do_record_route(ctx, &extra)
}

fn cmd_record_route_preset(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(a) = args.first() else { return -1 };
    let s = ctx.arg_str(a);
    let mut h = rr_head(ctx.msg);
    h.push_str(s.strip_prefix("sip:").unwrap_or(&s));
    h.push_str(lr_text());
    push_ftag(&mut h, ctx.msg);
    insert_rr(ctx.msg, h, -10, false);
    1
}

fn cmd_add_rr_param(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(a) = args.first() else { return -1 };
    let p = ctx.arg_str(a);
    add_rr_param(ctx.msg, &p);
    1
}

/// Add `;param` to the Record-Route headers of `msg`: those already inserted and those
/// `record_route` inserts later for the same message (1.2's `add_rr_param`).
pub fn add_rr_param(msg: &mut SipMsg, param: &str) {
    let mut p = param.to_string();
    if !p.starts_with(';') {
        p.insert(0, ';');
    }
    let positions = with_state(msg, |s| {
        s.pending_params.push_str(&p);
        s.rr_pos.clone()
    });
    for (pos, prio, cond) in positions {
        let pfx = if cond { IF_DIFF_REALMS } else { "" };
        msg.lumps.add(pos, 0, format!("{pfx}{p}"), prio);
    }
}

/// A callback run by `loose_route` once it consumed one of our Route headers: the
/// message and that Route's parameters (`;lr;ftag=…;…`). 1.2's `register_rrcb`.
pub type RrCallback = fn(&mut Ctx, &str);

static RR_CALLBACKS: Registry<RrCallback> = Registry::new();
static ANY_RRCB: AtomicBool = AtomicBool::new(false);

/// Register a loose_route callback (mod_init, before fork).
pub fn register_rrcb(f: RrCallback) {
    RR_CALLBACKS.lock().push(f);
    ANY_RRCB.store(true, Ordering::Release);
}

/// The parameters of our Route header that `loose_route` consumed for this message.
pub fn route_params(msg: &SipMsg) -> Option<String> {
    with_state(msg, |s| s.route_params.clone())
}

/// The value of Route parameter `name` (1.2's `get_route_param`).
pub fn route_param(msg: &SipMsg, name: &str) -> Option<String> {
    let params = route_params(msg)?;
    param_in(&params, name).map(str::to_string)
}

/// The value of parameter `name` in a `;a=1;b;c=2` parameter list ("" for a flag).
pub fn param_in<'p>(params: &'p str, name: &str) -> Option<&'p str> {
    params.split(';').find_map(|p| {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Whether an in-dialog request goes upstream (from the callee to the caller): its
/// From tag is not the `ftag` of our Route. None without an `ftag` (1.2's
/// `is_direction`).
pub fn is_upstream(msg: &SipMsg) -> Option<bool> {
    let params = route_params(msg)?;
    is_upstream_in(msg, &params)
}

/// [`is_upstream`] with the Route parameters at hand (a loose_route callback's).
pub fn is_upstream_in(msg: &SipMsg, params: &str) -> Option<bool> {
    let ftag = param_in(params, "ftag")?;
    let from_tag = msg.from().ok().and_then(|f| f.tag).map_or("", |t| msg.s(t));
    Some(from_tag != ftag)
}

/// Whether a Route URI is one of ours.
fn uri_is_myself(u: &UriRef<'_>) -> bool {
    is_myself(u.host_unbracketed(), u.port.unwrap_or(0))
}

/// Delete route entry `i` of `routes` (removing its header when it is the only entry).
fn remove_route(msg: &mut SipMsg, routes: &[(usize, usize, usize)], i: usize) {
    // (hdr_idx, start, end) per route entry.
    let (h, start, end) = routes[i];
    let same: Vec<usize> = (0..routes.len()).filter(|&j| routes[j].0 == h).collect();
    if same.len() == 1 {
        msg.remove_header(h);
        return;
    }
    let pos = same.iter().position(|&j| j == i).unwrap_or(0);
    if pos + 1 < same.len() {
        let next = routes[same[pos + 1]].1;
        msg.lumps.delete(start, next - start);
    } else {
        let prev_end = routes[same[pos - 1]].2;
        msg.lumps.delete(prev_end, end - prev_end);
    }
}

fn cmd_loose_route(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    let rc = loose_route(ctx);
    if rc > 0
        && ANY_RRCB.load(Ordering::Relaxed)
        && let Some(p) = route_params(ctx.msg)
    {
        let cbs: Vec<RrCallback> = RR_CALLBACKS.lock().clone();
        for cb in cbs {
            cb(ctx, &p);
        }
    }
    rc
}

fn loose_route(ctx: &mut Ctx) -> i32 {
    let msg = &mut *ctx.msg;
    let (uris, spans): (Vec<String>, Vec<(usize, usize, usize)>) = match msg.routes(HdrType::Route)
    {
        Ok(r) if !r.is_empty() => r
            .iter()
            .map(|na| {
                (
                    msg.s(na.uri).to_string(),
                    (na.hdr_idx, na.full.start as usize, na.full.end()),
                )
            })
            .unzip(),
        _ => return -1,
    };
    let Ok(first) = UriRef::parse(&uris[0]) else {
        return -1;
    };
    // Strict-router conversion (§16.4): the R-URI is our own RR URI.
    let ruri_params = match UriRef::parse(msg.ruri()) {
        Ok(u) if uri_is_myself(&u) && (u.lr() || u.param("ftag").is_some()) => {
            Some(u.params.to_string())
        }
        _ => None,
    };
    if let Some(ruri_params) = ruri_params {
        with_state(msg, |s| s.route_params = Some(ruri_params));
        let last = uris.len() - 1;
        msg.new_uri = Some(uris[last].clone());
        remove_route(msg, &spans, last);
        return 1;
    }
    if !uri_is_myself(&first) {
        // Next hop is someone else's Route.
        if first.lr() {
            msg.dst_uri = Some(uris[0].clone());
        } else {
            strict_next(msg, &uris, &spans, 0);
        }
        return 1;
    }
    // Our own Route on top: remove it (and the r2 twin).
    with_state(msg, |s| s.route_params = Some(first.params.to_string()));
    let mut next = 1;
    if first.param("r2").is_some()
        && uris.len() > 1
        && UriRef::parse(&uris[1]).is_ok_and(|u| uri_is_myself(&u))
    {
        next = 2;
    }
    if next == 2 && spans[0].0 == spans[1].0 {
        // both in one header: delete them together (two deletes would overlap at the
        // comma between them), the header with them if they were all it had
        let h = spans[0].0;
        if spans.iter().filter(|r| r.0 == h).count() == 2 {
            msg.remove_header(h);
        } else {
            msg.lumps.delete(spans[0].1, spans[2].1 - spans[0].1);
        }
    } else {
        remove_route(msg, &spans, 0);
        if next == 2 {
            remove_route(msg, &spans, 1);
        }
    }
    if next >= uris.len() {
        // Only our Route: an out-of-dialog request (no To-tag) is not "routed".
        let has_totag = msg.to().ok().and_then(|t| t.tag).is_some();
        return if has_totag { 1 } else { -1 };
    }
    match UriRef::parse(&uris[next]) {
        Ok(u) if u.lr() => msg.dst_uri = Some(uris[next].clone()),
        Ok(_) => strict_next(msg, &uris, &spans, next),
        Err(_) => return -1,
    }
    1
}

/// Next hop is a strict router: it becomes the R-URI, the R-URI goes to the Route end.
fn strict_next(msg: &mut SipMsg, uris: &[String], spans: &[(usize, usize, usize)], i: usize) {
    let old = msg.ruri().to_string();
    msg.new_uri = Some(uris[i].clone());
    remove_route(msg, spans, i);
    let last_hdr = spans.last().map(|s| s.0).unwrap_or(0);
    msg.add_header_after(last_hdr, &format!("Route: <{old}>"));
}

fn cmd_check_route_param(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(FixedArg::Regex(re)) = args.first() else {
        return -1;
    };
    let params = with_state(ctx.msg, |s| s.route_params.clone());
    match params {
        Some(p) if re.is_match(&p) => 1,
        _ => -1,
    }
}

fn cmd_is_direction(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(a) = args.first() else { return -1 };
    let want_up = ctx.arg_str(a).eq_ignore_ascii_case("upstream");
    match is_upstream(ctx.msg) {
        Some(up) if up == want_up => 1,
        _ => -1,
    }
}

fn fixup_regex(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let [a] = args else {
        return Err("one regular expression expected".into());
    };
    let t = match &a.value {
        ArgValue::Str(s) | ArgValue::Ident(s) => s.clone(),
        other => format!("{other:?}"),
    };
    let re = openser_core::re::Regex::new(&t, true, true)?;
    Ok(vec![FixedArg::Regex(Arc::new(re))])
}
