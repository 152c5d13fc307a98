//! Core actions (reference §6.7), exported to fixup as a `CmdExport` table like a
//! module's functions (aliases are separate entries sharing a handler).

use super::ctx::Branch;
use super::{Ctx, PvValue, Q_UNSPECIFIED};
use crate::core::cfg::ast::{Arg, ArgValue};
use crate::core::module::{CmdExport, FixedArg};
use crate::core::parser::Uri;
use crate::core::route::ANY_ROUTE;
use std::sync::Arc;

const REQ_FAIL_BR: u32 = crate::core::route::REQUEST_ROUTE
    | crate::core::route::FAILURE_ROUTE
    | crate::core::route::BRANCH_ROUTE
    | crate::core::route::ERROR_ROUTE
    | crate::core::route::STARTUP_ROUTE
    | crate::core::route::TIMER_ROUTE;

macro_rules! cmd {
    ($name:expr, $min:expr, $max:expr, $fix:expr, $h:expr) => {
        CmdExport {
            name: $name,
            min_args: $min,
            max_args: $max,
            fixup: $fix,
            handler: $h,
            routes: ANY_ROUTE,
        }
    };
    ($name:expr, $min:expr, $max:expr, $fix:expr, $h:expr, $routes:expr) => {
        CmdExport {
            name: $name,
            min_args: $min,
            max_args: $max,
            fixup: $fix,
            handler: $h,
            routes: $routes,
        }
    };
}

/// Every core action.
pub static CORE_CMDS: &[CmdExport] = &[
    cmd!("forward", 0, 1, Some(fix_dest), a_forward, REQ_FAIL_BR),
    cmd!("send", 1, 1, Some(fix_dest), a_send, REQ_FAIL_BR),
    cmd!("log", 1, 2, Some(fix_log), a_log),
    cmd!("error", 2, 2, None, a_error),
    cmd!("rewritehost", 1, 1, None, a_sethost, REQ_FAIL_BR),
    cmd!("sethost", 1, 1, None, a_sethost, REQ_FAIL_BR),
    cmd!("seth", 1, 1, None, a_sethost, REQ_FAIL_BR),
    cmd!("rewritehostport", 1, 1, None, a_sethostport, REQ_FAIL_BR),
    cmd!("sethostport", 1, 1, None, a_sethostport, REQ_FAIL_BR),
    cmd!("sethp", 1, 1, None, a_sethostport, REQ_FAIL_BR),
    cmd!("rewriteuser", 1, 1, None, a_setuser, REQ_FAIL_BR),
    cmd!("setuser", 1, 1, None, a_setuser, REQ_FAIL_BR),
    cmd!("setu", 1, 1, None, a_setuser, REQ_FAIL_BR),
    cmd!("rewriteuserpass", 1, 1, None, a_setuserpass, REQ_FAIL_BR),
    cmd!("setuserpass", 1, 1, None, a_setuserpass, REQ_FAIL_BR),
    cmd!("setup", 1, 1, None, a_setuserpass, REQ_FAIL_BR),
    cmd!("rewriteport", 1, 1, None, a_setport, REQ_FAIL_BR),
    cmd!("setport", 1, 1, None, a_setport, REQ_FAIL_BR),
    cmd!("setp", 1, 1, None, a_setport, REQ_FAIL_BR),
    cmd!("rewriteuri", 1, 1, None, a_seturi, REQ_FAIL_BR),
    cmd!("seturi", 1, 1, None, a_seturi, REQ_FAIL_BR),
    cmd!("revert_uri", 0, 0, None, a_revert_uri, REQ_FAIL_BR),
    cmd!("prefix", 1, 1, None, a_prefix, REQ_FAIL_BR),
    cmd!("strip", 1, 1, Some(fix_int), a_strip, REQ_FAIL_BR),
    cmd!("strip_tail", 1, 1, Some(fix_int), a_strip_tail, REQ_FAIL_BR),
    cmd!("append_branch", 0, 2, None, a_append_branch, REQ_FAIL_BR),
    cmd!("setflag", 1, 1, Some(fix_flag), a_setflag),
    cmd!("resetflag", 1, 1, Some(fix_flag), a_resetflag),
    cmd!("isflagset", 1, 1, Some(fix_flag), a_isflagset),
    cmd!("setbflag", 1, 2, Some(fix_flags2), a_setbflag),
    cmd!("resetbflag", 1, 2, Some(fix_flags2), a_resetbflag),
    cmd!("isbflagset", 1, 2, Some(fix_flags2), a_isbflagset),
    cmd!("setbranchflag", 1, 2, Some(fix_flags2), a_setbflag),
    cmd!("resetbranchflag", 1, 2, Some(fix_flags2), a_resetbflag),
    cmd!("isbranchflagset", 1, 2, Some(fix_flags2), a_isbflagset),
    cmd!("setsflag", 1, 1, Some(fix_flag), a_setsflag),
    cmd!("resetsflag", 1, 1, Some(fix_flag), a_resetsflag),
    cmd!("issflagset", 1, 1, Some(fix_flag), a_issflagset),
    cmd!("setscriptflag", 1, 1, Some(fix_flag), a_setsflag),
    cmd!("resetscriptflag", 1, 1, Some(fix_flag), a_resetsflag),
    cmd!("isscriptflagset", 1, 1, Some(fix_flag), a_issflagset),
    cmd!("force_rport", 0, 0, None, a_force_rport),
    cmd!("add_rport", 0, 0, None, a_force_rport),
    cmd!("force_local_rport", 0, 0, None, a_local_rport),
    cmd!("add_local_rport", 0, 0, None, a_local_rport),
    cmd!("force_tcp_alias", 0, 1, None, a_true),
    cmd!("add_tcp_alias", 0, 1, None, a_true),
    cmd!("set_advertised_address", 1, 1, None, a_true),
    cmd!("set_advertised_port", 1, 1, None, a_true),
    cmd!(
        "force_send_socket",
        1,
        1,
        Some(fix_socket),
        a_force_send_socket
    ),
    cmd!("setdsturi", 1, 1, None, a_setdsturi),
    cmd!("setduri", 1, 1, None, a_setdsturi),
    cmd!("resetdsturi", 0, 0, None, a_resetdsturi),
    cmd!("resetduri", 0, 0, None, a_resetdsturi),
    cmd!("isdsturiset", 0, 0, None, a_isdsturiset),
    cmd!("isduriset", 0, 0, None, a_isdsturiset),
    cmd!(
        "serialize_branches",
        1,
        1,
        Some(fix_int),
        a_serialize_branches
    ),
    cmd!("next_branches", 0, 0, None, a_next_branches),
    cmd!("use_blacklist", 1, 1, None, a_true),
];

// ---------------------------------------------------------------------------
// fixups

fn fix_int(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    args.iter()
        .map(|a| match &a.value {
            ArgValue::Int(i) => Ok(FixedArg::Int(*i)),
            ArgValue::Str(s) | ArgValue::Ident(s) => s
                .trim()
                .parse::<i64>()
                .map(FixedArg::Int)
                .map_err(|_| format!("'{s}' is not a number")),
            ArgValue::Pv(p) => Ok(FixedArg::Pv(p.clone())),
            _ => Err("expected a number".into()),
        })
        .collect()
}

fn fix_flag(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let v = fix_int(args)?;
    for a in &v {
        if let FixedArg::Int(i) = a
            && !(0..=31).contains(i)
        {
            return Err(format!("flag {i} out of range 0..31"));
        }
    }
    Ok(v)
}

fn fix_flags2(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let mut v = fix_int(args)?;
    if v.len() == 1 {
        v.insert(0, FixedArg::Int(0));
    }
    if let Some(FixedArg::Int(i)) = v.get(1)
        && !(0..=31).contains(i)
    {
        return Err(format!("flag {i} out of range 0..31"));
    }
    Ok(v)
}

fn fix_log(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let mut v = super::fixup::default_fixup(args)?;
    if v.len() == 1 {
        v.insert(0, FixedArg::Int(crate::core::log::L_DBG as i64));
    }
    if let Some(FixedArg::Str(s)) = v.first() {
        let l = crate::core::log::parse_level(s)
            .or_else(|| s.trim().parse().ok())
            .ok_or_else(|| format!("bad log level '{s}'"))?;
        v[0] = FixedArg::Int(l as i64);
    }
    Ok(v)
}

/// A fixed destination: `[proto:]host[:port]`, resolved at start-up.
fn fix_dest(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let Some(a) = args.first() else {
        return Ok(vec![]);
    };
    let text = super::fixup::arg_text(&a.value);
    let addr = parse_dest(&text)?;
    Ok(vec![FixedArg::Any(Arc::new(addr))])
}

fn parse_dest(text: &str) -> Result<std::net::SocketAddr, String> {
    let mut t = text.trim();
    for p in ["udp:", "tcp:", "tls:", "sctp:", "UDP:", "TCP:", "TLS:"] {
        if let Some(r) = t.strip_prefix(p) {
            t = r;
            break;
        }
    }
    if let Ok(a) = t.parse::<std::net::SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = match t.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("bad port in destination '{text}'"))?,
        ),
        _ => (t, 5060),
    };
    crate::core::transport::send::resolve_host(host, port)
}

fn fix_socket(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let Some(a) = args.first() else {
        return Ok(vec![]);
    };
    let text = super::fixup::arg_text(&a.value);
    let addr = parse_dest(&text)?;
    Ok(vec![FixedArg::Any(Arc::new(addr))])
}

// ---------------------------------------------------------------------------
// handlers

fn a_true(_: &mut Ctx, _: &[FixedArg]) -> i32 {
    1
}

fn dest_of(args: &[FixedArg]) -> Option<std::net::SocketAddr> {
    match args.first() {
        Some(FixedArg::Any(a)) => a.downcast_ref::<std::net::SocketAddr>().copied(),
        _ => None,
    }
}

fn a_forward(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    match crate::core::transport::forward::forward_request(ctx.msg, dest_of(args)) {
        Ok(()) => 1,
        Err(_) => -1,
    }
}

fn a_send(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(to) = dest_of(args) else {
        return -1;
    };
    let sock = crate::core::transport::send::choose_socket(&to, ctx.msg.force_send_sock);
    match crate::core::transport::send::send_udp(sock, to, ctx.msg.buf()) {
        Ok(()) => 1,
        Err(e) => {
            crate::log_err!("ERROR: send: cannot send to {to}: {e}\n");
            -1
        }
    }
}

fn a_log(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let level = match args.first() {
        Some(FixedArg::Int(l)) => *l as i32,
        _ => crate::core::log::L_DBG,
    };
    if crate::core::log::enabled(level) {
        let text = args.get(1).map(|a| ctx.arg_str(a)).unwrap_or_default();
        crate::core::log::emit(level, &text);
    }
    1
}

fn a_error(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let a = args.first().map(|a| ctx.arg_str(a)).unwrap_or_default();
    let b = args.get(1).map(|a| ctx.arg_str(a)).unwrap_or_default();
    crate::log_notice!("NOTICE: error(\"{a}\", \"{b}\") not implemented\n");
    1
}

/// Apply `f` to the parsed current R-URI and store the result as the new R-URI.
fn rewrite(ctx: &mut Ctx, f: impl FnOnce(&mut Uri) -> Result<(), String>) -> i32 {
    let mut u = match Uri::parse(ctx.msg.ruri()) {
        Ok(u) => u,
        Err(e) => {
            crate::log_err!("ERROR: do_action: bad uri <{}>: {e}\n", ctx.msg.ruri());
            return -1;
        }
    };
    if let Err(e) = f(&mut u) {
        crate::log_err!("ERROR: do_action: {e}\n");
        return -1;
    }
    ctx.msg.new_uri = Some(u.to_string());
    1
}

fn a_sethost(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let h = args.first().map(|a| ctx.arg_str(a)).unwrap_or_default();
    rewrite(ctx, |u| u.set_host(&h).map_err(|e| e.to_string()))
}

fn a_sethostport(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let h = args.first().map(|a| ctx.arg_str(a)).unwrap_or_default();
    rewrite(ctx, |u| u.set_hostport(&h).map_err(|e| e.to_string()))
}

fn a_setuser(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let s = args.first().map(|a| ctx.arg_str(a)).unwrap_or_default();
    rewrite(ctx, |u| u.set_user(&s).map_err(|e| e.to_string()))
}

fn a_setuserpass(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let s = args.first().map(|a| ctx.arg_str(a)).unwrap_or_default();
    rewrite(ctx, |u| u.set_userpass(&s).map_err(|e| e.to_string()))
}

fn a_setport(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let s = args.first().map(|a| ctx.arg_str(a)).unwrap_or_default();
    rewrite(ctx, |u| {
        if s.is_empty() {
            u.set_port(None);
            return Ok(());
        }
        let p = s
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("bad port '{s}'"))?;
        u.set_port(Some(p));
        Ok(())
    })
}

fn a_seturi(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let s = args.first().map(|a| ctx.arg_str(a)).unwrap_or_default();
    set_ruri(ctx, &s)
}

/// Replace the whole R-URI (checked for syntax).
pub fn set_ruri(ctx: &mut Ctx, s: &str) -> i32 {
    if let Err(e) = Uri::parse(s) {
        crate::log_err!("ERROR: do_action: bad uri <{s}>: {e}\n");
        return -1;
    }
    ctx.msg.new_uri = Some(s.to_string());
    1
}

fn a_revert_uri(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    ctx.msg.new_uri = None;
    1
}

fn a_prefix(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let p = args.first().map(|a| ctx.arg_str(a)).unwrap_or_default();
    rewrite(ctx, |u| {
        let nu = format!("{p}{}", u.user);
        u.set_user(&nu).map_err(|e| e.to_string())
    })
}

fn strip_impl(ctx: &mut Ctx, args: &[FixedArg], tail: bool) -> i32 {
    let n = args
        .first()
        .and_then(|a| ctx.arg_int(a))
        .unwrap_or(0)
        .max(0) as usize;
    rewrite(ctx, |u| {
        let user = u.user.clone();
        let nu = if n > user.len() {
            crate::log_warn!("WARNING: do_action: strip: user part too short\n");
            String::new()
        } else if tail {
            user.get(..user.len() - n).unwrap_or("").to_string()
        } else {
            user.get(n..).unwrap_or("").to_string()
        };
        u.set_user(&nu).map_err(|e| e.to_string())
    })
}

fn a_strip(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    strip_impl(ctx, args, false)
}

fn a_strip_tail(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    strip_impl(ctx, args, true)
}

/// Parse a q value "0.5" / "1" into OpenSER's integer q (0..1000).
pub fn parse_q(s: &str) -> Option<i32> {
    let s = s.trim();
    let f: f64 = s.parse().ok()?;
    if !(0.0..=1.0).contains(&f) {
        return None;
    }
    Some((f * 1000.0).round() as i32)
}

fn a_append_branch(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    if args.is_empty() {
        let b = Branch {
            uri: ctx.msg.ruri().to_string(),
            dst_uri: ctx.msg.dst_uri.clone(),
            path: None,
            q: ctx.ruri_q,
            bflags: ctx.ruri_bflags,
            force_send_sock: ctx.msg.force_send_sock,
        };
        ctx.branches.push(b);
        ctx.msg.dst_uri = None;
        ctx.msg.force_send_sock = None;
        ctx.ruri_bflags = 0;
        return 1;
    }
    let uri = ctx.arg_str(&args[0]);
    if Uri::parse(&uri).is_err() {
        crate::log_err!("ERROR: append_branch: bad uri <{uri}>\n");
        return -1;
    }
    let q = match args.get(1) {
        Some(a) => {
            let t = ctx.arg_str(a);
            parse_q(&t).unwrap_or(Q_UNSPECIFIED)
        }
        None => Q_UNSPECIFIED,
    };
    ctx.branches.push(Branch {
        uri,
        dst_uri: ctx.msg.dst_uri.clone(),
        path: None,
        q,
        bflags: 0,
        force_send_sock: ctx.msg.force_send_sock,
    });
    1
}

fn flag_arg(ctx: &mut Ctx, args: &[FixedArg], i: usize) -> Option<u32> {
    let f = args.get(i).and_then(|a| ctx.arg_int(a))?;
    if (0..=31).contains(&f) {
        Some(f as u32)
    } else {
        None
    }
}

fn a_setflag(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(f) = flag_arg(ctx, args, 0) else {
        return -1;
    };
    ctx.msg.flags |= 1 << f;
    1
}

fn a_resetflag(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(f) = flag_arg(ctx, args, 0) else {
        return -1;
    };
    ctx.msg.flags &= !(1 << f);
    1
}

fn a_isflagset(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(f) = flag_arg(ctx, args, 0) else {
        return -1;
    };
    if ctx.msg.flags & (1 << f) != 0 { 1 } else { -1 }
}

fn bflags_mut<'a>(ctx: &'a mut Ctx, idx: i64) -> Option<&'a mut u32> {
    if idx == 0 {
        return Some(&mut ctx.ruri_bflags);
    }
    let i = usize::try_from(idx - 1).ok()?;
    ctx.branches.get_mut(i).map(|b| &mut b.bflags)
}

fn bflag_op(ctx: &mut Ctx, args: &[FixedArg], op: u8) -> i32 {
    let idx = args.first().and_then(|a| ctx.arg_int(a)).unwrap_or(0);
    let Some(f) = flag_arg(ctx, args, 1) else {
        return -1;
    };
    let Some(fl) = bflags_mut(ctx, idx) else {
        return -1;
    };
    match op {
        0 => *fl |= 1 << f,
        1 => *fl &= !(1 << f),
        _ => return if *fl & (1 << f) != 0 { 1 } else { -1 },
    }
    1
}

fn a_setbflag(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    bflag_op(ctx, args, 0)
}

fn a_resetbflag(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    bflag_op(ctx, args, 1)
}

fn a_isbflagset(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    bflag_op(ctx, args, 2)
}

fn a_setsflag(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(f) = flag_arg(ctx, args, 0) else {
        return -1;
    };
    ctx.sflags |= 1 << f;
    1
}

fn a_resetsflag(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(f) = flag_arg(ctx, args, 0) else {
        return -1;
    };
    ctx.sflags &= !(1 << f);
    1
}

fn a_issflagset(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(f) = flag_arg(ctx, args, 0) else {
        return -1;
    };
    if ctx.sflags & (1 << f) != 0 { 1 } else { -1 }
}

fn a_force_rport(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    ctx.msg.add_rport = true;
    1
}

fn a_local_rport(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    ctx.msg.local_rport = true;
    1
}

fn a_force_send_socket(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(a) = dest_of(args) else { return -1 };
    let socks = crate::core::transport::socket::sockets();
    match socks
        .iter()
        .position(|s| s.addr == a || (a.port() == 5060 && s.addr.ip() == a.ip()))
    {
        Some(i) => {
            ctx.msg.force_send_sock = Some(i);
            1
        }
        None => {
            crate::log_warn!("WARNING: force_send_socket: {a} is not a listen socket\n");
            -1
        }
    }
}

fn a_setdsturi(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let s = args.first().map(|a| ctx.arg_str(a)).unwrap_or_default();
    if Uri::parse(&s).is_err() {
        crate::log_err!("ERROR: setdsturi: bad uri <{s}>\n");
        return -1;
    }
    ctx.msg.dst_uri = Some(s);
    1
}

fn a_resetdsturi(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    ctx.msg.dst_uri = None;
    1
}

fn a_isdsturiset(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    if ctx.msg.dst_uri.is_some() { 1 } else { -1 }
}

const SERIAL_AVP: &str = "serial_branch";

/// serialize_branches(clear): group the R-URI and the branches by q (highest first)
/// into AVPs; the first group stays in the destination set... in 1.2 every branch goes
/// to AVPs and next_branches() loads the first group.
fn a_serialize_branches(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let clear = args.first().and_then(|a| ctx.arg_int(a)).unwrap_or(0) != 0;
    if ctx.branches.is_empty() {
        return 1;
    }
    let mut all: Vec<(String, i32)> = Vec::with_capacity(ctx.branches.len() + 1);
    all.push((ctx.msg.ruri().to_string(), ctx.ruri_q));
    for b in &ctx.branches {
        all.push((b.uri.clone(), b.q));
    }
    let qv = |q: i32| if q == Q_UNSPECIFIED { 1000 } else { q };
    // stable sort, highest q first
    all.sort_by_key(|(_, q)| std::cmp::Reverse(qv(*q)));
    let id = super::AvpId::Str(SERIAL_AVP.into());
    // pushed so that the newest (top) is the first to try
    let mut prev: Option<i32> = None;
    let mut entries = Vec::new();
    for (u, q) in all {
        let new_group = prev.is_some_and(|p| qv(p) != qv(q));
        prev = Some(q);
        // "uri;g" g = 1 when this starts a new, lower-q group
        entries.push(format!("{}|{}|{}", u, q, new_group as u8));
    }
    for e in entries.into_iter().rev() {
        ctx.avps.add(id.clone(), PvValue::Str(e));
    }
    if clear {
        ctx.branches.clear();
    }
    1
}

fn a_next_branches(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    let id = super::AvpId::Str(SERIAL_AVP.into());
    let mut first = true;
    let mut loaded = 0;
    while let Some(PvValue::Str(e)) = ctx.avps.get(&id).cloned() {
        let mut it = e.rsplitn(3, '|');
        let g = it.next().unwrap_or("0");
        let q: i32 = it
            .next()
            .and_then(|q| q.parse().ok())
            .unwrap_or(Q_UNSPECIFIED);
        let u = it.next().unwrap_or("").to_string();
        if !first && g == "1" {
            break;
        }
        ctx.avps.del_one(&id);
        if first {
            ctx.msg.new_uri = Some(u);
            ctx.ruri_q = q;
            ctx.branches.clear();
            first = false;
        } else {
            ctx.branches.push(Branch {
                uri: u,
                dst_uri: None,
                path: None,
                q,
                bflags: 0,
                force_send_sock: None,
            });
        }
        loaded += 1;
    }
    if loaded == 0 { -1 } else { 1 }
}
