//! Core actions (reference §6.7), exported to fixup as a `CmdExport` table like a
//! module's functions (aliases are separate entries sharing a handler).

use super::ctx::Branch;
use super::{Ctx, PvValue, Q_UNSPECIFIED};
use crate::cfg::ast::{Arg, ArgValue};
use crate::module::{CmdExport, FixedArg};
use crate::parser::{Proto, Uri};
use crate::route::ANY_ROUTE;
use std::sync::Arc;

const REQ_FAIL_BR: u32 = crate::route::REQUEST_ROUTE
    | crate::route::FAILURE_ROUTE
    | crate::route::BRANCH_ROUTE
    | crate::route::ERROR_ROUTE
    | crate::route::STARTUP_ROUTE
    | crate::route::TIMER_ROUTE;

/// Every core action.
pub static CORE_CMDS: &[CmdExport] = &[
    CmdExport::new("forward", 0, 1, REQ_FAIL_BR, a_forward).fixup(fix_dest),
    CmdExport::new("forward_udp", 0, 1, REQ_FAIL_BR, a_forward).fixup(fix_dest_udp),
    CmdExport::new("forward_tcp", 0, 1, REQ_FAIL_BR, a_forward).fixup(fix_dest_tcp),
    CmdExport::new("forward_tls", 0, 1, REQ_FAIL_BR, a_forward).fixup(fix_dest_tls),
    CmdExport::new("send", 1, 1, REQ_FAIL_BR, a_send).fixup(fix_dest),
    CmdExport::new("send_tcp", 1, 1, REQ_FAIL_BR, a_send).fixup(fix_dest_tcp),
    CmdExport::new("log", 1, 2, ANY_ROUTE, a_log).fixup(fix_log),
    CmdExport::new("error", 2, 2, ANY_ROUTE, a_error),
    CmdExport::new("rewritehost", 1, 1, REQ_FAIL_BR, a_sethost),
    CmdExport::new("sethost", 1, 1, REQ_FAIL_BR, a_sethost),
    CmdExport::new("seth", 1, 1, REQ_FAIL_BR, a_sethost),
    CmdExport::new("rewritehostport", 1, 1, REQ_FAIL_BR, a_sethostport),
    CmdExport::new("sethostport", 1, 1, REQ_FAIL_BR, a_sethostport),
    CmdExport::new("sethp", 1, 1, REQ_FAIL_BR, a_sethostport),
    CmdExport::new("rewriteuser", 1, 1, REQ_FAIL_BR, a_setuser),
    CmdExport::new("setuser", 1, 1, REQ_FAIL_BR, a_setuser),
    CmdExport::new("setu", 1, 1, REQ_FAIL_BR, a_setuser),
    CmdExport::new("rewriteuserpass", 1, 1, REQ_FAIL_BR, a_setuserpass),
    CmdExport::new("setuserpass", 1, 1, REQ_FAIL_BR, a_setuserpass),
    CmdExport::new("setup", 1, 1, REQ_FAIL_BR, a_setuserpass),
    CmdExport::new("rewriteport", 1, 1, REQ_FAIL_BR, a_setport),
    CmdExport::new("setport", 1, 1, REQ_FAIL_BR, a_setport),
    CmdExport::new("setp", 1, 1, REQ_FAIL_BR, a_setport),
    CmdExport::new("rewriteuri", 1, 1, REQ_FAIL_BR, a_seturi).fixup(fix_uri),
    CmdExport::new("seturi", 1, 1, REQ_FAIL_BR, a_seturi).fixup(fix_uri),
    CmdExport::new("revert_uri", 0, 0, REQ_FAIL_BR, a_revert_uri),
    CmdExport::new("prefix", 1, 1, REQ_FAIL_BR, a_prefix),
    CmdExport::new("strip", 1, 1, REQ_FAIL_BR, a_strip).fixup(fix_int),
    CmdExport::new("strip_tail", 1, 1, REQ_FAIL_BR, a_strip_tail).fixup(fix_int),
    CmdExport::new("append_branch", 0, 2, REQ_FAIL_BR, a_append_branch),
    CmdExport::new("setflag", 1, 1, ANY_ROUTE, a_setflag).fixup(fix_flag),
    CmdExport::new("resetflag", 1, 1, ANY_ROUTE, a_resetflag).fixup(fix_flag),
    CmdExport::new("isflagset", 1, 1, ANY_ROUTE, a_isflagset).fixup(fix_flag),
    CmdExport::new("setbflag", 1, 2, ANY_ROUTE, a_setbflag).fixup(fix_flags2),
    CmdExport::new("resetbflag", 1, 2, ANY_ROUTE, a_resetbflag).fixup(fix_flags2),
    CmdExport::new("isbflagset", 1, 2, ANY_ROUTE, a_isbflagset).fixup(fix_flags2),
    CmdExport::new("setbranchflag", 1, 2, ANY_ROUTE, a_setbflag).fixup(fix_flags2),
    CmdExport::new("resetbranchflag", 1, 2, ANY_ROUTE, a_resetbflag).fixup(fix_flags2),
    CmdExport::new("isbranchflagset", 1, 2, ANY_ROUTE, a_isbflagset).fixup(fix_flags2),
    CmdExport::new("setsflag", 1, 1, ANY_ROUTE, a_setsflag).fixup(fix_flag),
    CmdExport::new("resetsflag", 1, 1, ANY_ROUTE, a_resetsflag).fixup(fix_flag),
    CmdExport::new("issflagset", 1, 1, ANY_ROUTE, a_issflagset).fixup(fix_flag),
    CmdExport::new("setscriptflag", 1, 1, ANY_ROUTE, a_setsflag).fixup(fix_flag),
    CmdExport::new("resetscriptflag", 1, 1, ANY_ROUTE, a_resetsflag).fixup(fix_flag),
    CmdExport::new("isscriptflagset", 1, 1, ANY_ROUTE, a_issflagset).fixup(fix_flag),
    CmdExport::new("force_rport", 0, 0, ANY_ROUTE, a_force_rport),
    CmdExport::new("add_rport", 0, 0, ANY_ROUTE, a_force_rport),
    CmdExport::new("force_local_rport", 0, 0, ANY_ROUTE, a_local_rport),
    CmdExport::new("add_local_rport", 0, 0, ANY_ROUTE, a_local_rport),
    CmdExport::new("force_tcp_alias", 0, 1, ANY_ROUTE, a_tcp_alias),
    CmdExport::new("add_tcp_alias", 0, 1, ANY_ROUTE, a_tcp_alias),
    CmdExport::new("set_advertised_address", 1, 1, ANY_ROUTE, a_true),
    CmdExport::new("set_advertised_port", 1, 1, ANY_ROUTE, a_true),
    CmdExport::new("force_send_socket", 1, 1, ANY_ROUTE, a_force_send_socket).fixup(fix_socket),
    CmdExport::new("setdsturi", 1, 1, ANY_ROUTE, a_setdsturi).fixup(fix_uri),
    CmdExport::new("setduri", 1, 1, ANY_ROUTE, a_setdsturi).fixup(fix_uri),
    CmdExport::new("resetdsturi", 0, 0, ANY_ROUTE, a_resetdsturi),
    CmdExport::new("resetduri", 0, 0, ANY_ROUTE, a_resetdsturi),
    CmdExport::new("isdsturiset", 0, 0, ANY_ROUTE, a_isdsturiset),
    CmdExport::new("isduriset", 0, 0, ANY_ROUTE, a_isdsturiset),
    CmdExport::new("serialize_branches", 1, 1, ANY_ROUTE, a_serialize_branches).fixup(fix_int),
    CmdExport::new("next_branches", 0, 0, ANY_ROUTE, a_next_branches),
    CmdExport::new("use_blacklist", 1, 1, ANY_ROUTE, a_true),
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
        v.insert(0, FixedArg::Int(crate::log::L_DBG as i64));
    }
    if let Some(FixedArg::Str(s)) = v.first() {
        let l = crate::log::parse_level(s)
            .or_else(|| s.trim().parse().ok())
            .ok_or_else(|| format!("bad log level '{s}'"))?;
        v[0] = FixedArg::Int(l as i64);
    }
    Ok(v)
}

/// A fixed destination: `[proto:]host[:port]`, resolved at start-up. A transport
/// prefix this server does not serve is an error here.
fn fix_dest(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let Some(a) = args.first() else {
        return Ok(vec![]);
    };
    let text = super::fixup::arg_text(&a.value);
    let addr = parse_dest(&text)?;
    Ok(vec![FixedArg::Any(Arc::new((addr, prefix_proto(&text))))])
}

/// The transport a `proto:` prefix names (UDP without one).
fn prefix_proto(text: &str) -> Proto {
    match text.trim().get(..4) {
        Some(p) if p.eq_ignore_ascii_case("tcp:") => Proto::Tcp,
        Some(p) if p.eq_ignore_ascii_case("tls:") => Proto::Tls,
        _ => Proto::Udp,
    }
}

/// The fixup of a function bound to one transport (`forward_tcp`, `send_tcp`, …):
/// the transport must be served, whatever the destination.
fn fix_dest_on(proto: &str, args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    crate::transport::served::check_served(proto)?;
    let p = Proto::from_name(proto.as_bytes()).unwrap_or_default();
    let mut v = fix_dest(args)?;
    let addr = match v.first() {
        Some(FixedArg::Any(a)) => a
            .downcast_ref::<(std::net::SocketAddr, Proto)>()
            .map(|(addr, _)| *addr),
        _ => None,
    };
    if let Some(addr) = addr {
        v[0] = FixedArg::Any(Arc::new((addr, p)));
    } else if v.is_empty() {
        // no destination: the R-URI's, over this transport
        v.push(FixedArg::Int(p as i64));
    }
    Ok(v)
}

fn fix_dest_udp(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    fix_dest_on("udp", args)
}

fn fix_dest_tcp(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    fix_dest_on("tcp", args)
}

fn fix_dest_tls(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    fix_dest_on("tls", args)
}

/// A URI argument (`rewriteuri`, `setdsturi`): a constant one must ask for a served
/// transport (`;transport=`, `sips:`).
fn fix_uri(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let v = super::fixup::default_fixup(args)?;
    if let Some(FixedArg::Str(s)) = v.first() {
        crate::transport::served::check_uri(s)?;
    }
    Ok(v)
}

fn parse_dest(text: &str) -> Result<std::net::SocketAddr, String> {
    let t = crate::transport::served::check_dest_prefix(text)?;
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
    crate::transport::send::resolve_host(host, port)
}

fn fix_socket(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let Some(a) = args.first() else {
        return Ok(vec![]);
    };
    let text = super::fixup::arg_text(&a.value);
    let addr = parse_dest(&text)?;
    Ok(vec![FixedArg::Any(Arc::new((addr, prefix_proto(&text))))])
}

// ---------------------------------------------------------------------------
// handlers

fn a_true(_: &mut Ctx, _: &[FixedArg]) -> i32 {
    1
}

/// `force_tcp_alias([port])`: requests to the sender's address and `port` (default:
/// the top Via's port) use the connection this request came on. Nothing for UDP.
fn a_tcp_alias(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    if ctx.msg.rcv.proto == Proto::Udp {
        return 1;
    }
    let port = match args.first() {
        Some(a) => ctx.arg_str(a).trim().parse::<u16>().ok(),
        None => ctx.msg.via1().ok().map(|v| v.port.unwrap_or(5060)),
    };
    match port {
        Some(p) if crate::transport::tcp::add_alias(p) => 1,
        _ => -1,
    }
}

/// A function of a transport that is not served: its fixup refuses the config, so
/// this runs only if that check was bypassed.
fn dest_of(args: &[FixedArg]) -> Option<(std::net::SocketAddr, Proto)> {
    match args.first() {
        Some(FixedArg::Any(a)) => a.downcast_ref::<(std::net::SocketAddr, Proto)>().copied(),
        _ => None,
    }
}

fn a_forward(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let dest = match (dest_of(args), args.first()) {
        (Some(d), _) => Some(d),
        // forward_tcp() without a destination: the R-URI's address over TCP
        (None, Some(FixedArg::Int(p))) => {
            let proto = if *p == Proto::Tcp as i64 {
                Proto::Tcp
            } else if *p == Proto::Tls as i64 {
                Proto::Tls
            } else {
                Proto::Udp
            };
            let target = ctx
                .msg
                .dst_uri
                .clone()
                .unwrap_or_else(|| ctx.msg.ruri().to_string());
            match crate::transport::send::uri_destination(&target) {
                Ok((a, _)) => Some((a, proto)),
                Err(e) => {
                    crate::log_err!("cannot forward to <{target}>: {e}");
                    return -1;
                }
            }
        }
        _ => None,
    };
    match crate::transport::forward::forward_request_on(ctx.msg, dest) {
        Ok(()) => 1,
        Err(_) => -1,
    }
}

fn a_send(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some((to, proto)) = dest_of(args) else {
        return -1;
    };
    let sock = crate::transport::send::choose_socket_for(&to, proto, ctx.msg.force_send_sock);
    match crate::transport::send::send_udp(sock, to, ctx.msg.buf()) {
        Ok(()) => 1,
        Err(e) => {
            crate::log_err!("cannot send to {to}: {e}");
            -1
        }
    }
}

fn a_log(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let level = match args.first() {
        Some(FixedArg::Int(l)) => *l as i32,
        _ => crate::log::L_DBG,
    };
    if crate::log::enabled(level) {
        let text = args.get(1).map(|a| ctx.arg_str(a)).unwrap_or_default();
        crate::log::emit(level, &text);
    }
    1
}

fn a_error(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let a = args.first().map(|a| ctx.arg_str(a)).unwrap_or_default();
    let b = args.get(1).map(|a| ctx.arg_str(a)).unwrap_or_default();
    crate::log_notice!("error(\"{a}\", \"{b}\") not implemented");
    1
}

/// Apply `f` to the parsed current R-URI and store the result as the new R-URI.
fn rewrite(ctx: &mut Ctx, f: impl FnOnce(&mut Uri) -> Result<(), String>) -> i32 {
    let mut u = match Uri::parse(ctx.msg.ruri()) {
        Ok(u) => u,
        Err(e) => {
            crate::log_err!("bad uri <{}>: {e}", ctx.msg.ruri());
            return -1;
        }
    };
    if let Err(e) = f(&mut u) {
        crate::log_err!("{e}");
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
        crate::log_err!("bad uri <{s}>: {e}");
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
            crate::log_warn!("strip: user part too short");
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
        crate::log_err!("bad uri <{uri}>");
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
    let Some((a, p)) = dest_of(args) else {
        return -1;
    };
    let want = crate::transport::send::proto_of(p);
    let socks = crate::transport::socket::sockets();
    match socks.iter().position(|s| {
        s.proto == want && (s.addr == a || (a.port() == 5060 && s.addr.ip() == a.ip()))
    }) {
        Some(i) => {
            ctx.msg.force_send_sock = Some(i);
            1
        }
        None => {
            crate::log_warn!("{a} is not a listen socket");
            -1
        }
    }
}

fn a_setdsturi(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let s = args.first().map(|a| ctx.arg_str(a)).unwrap_or_default();
    if Uri::parse(&s).is_err() {
        crate::log_err!("bad uri <{s}>");
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
