//! The interpreter: runs the executable tree built by fixup.
//!
//! Return-code rule: an action returning > 0 is true, < 0 false, 0 stops the whole
//! script (also when the 0 comes from a function inside an `if` condition).

use super::ctx::{RUN_BREAK, RUN_DROP, RUN_EXIT, RUN_RETURN};
use super::fixup::{SCRIPT, Script, kind_slot};
use super::{Ctx, PvValue};
use crate::cfg::ast::{ArithOp, CaseLabel, CmpOp, IpNet, Keyword, RouteKind};
use crate::cfg::pv::PvSpec;
use crate::module::{CmdFn, FixedArg};
use crate::re::Regex;
use std::net::IpAddr;
use std::sync::Arc;

/// An executable statement list.
pub type Code = Vec<Op>;

/// Maximum route(N) nesting (OpenSER's `ROUTE_MAX_REC_LEV`).
pub const MAX_REC_LEV: u32 = 100;

/// A resolved function call.
pub struct CallOp {
    pub name: &'static str,
    pub h: CmdFn,
    pub args: Vec<FixedArg>,
    /// the route types the function is allowed in (checked at fixup with `-C`, and
    /// per call for calls prepared at run time, [`run_dyn_call`])
    pub routes: u32,
}

/// Where an assignment goes.
pub enum Lhs {
    Avp(PvSpec),
    Var(String),
    /// a module PV with a setter ([`crate::module::PvExport::setter`])
    Module(PvSpec, crate::module::PvSetFn),
    Ru,
    RUser,
    RDomain,
    Du,
}

/// One executable statement.
pub enum Op {
    Call(CallOp),
    Assign {
        lhs: Lhs,
        rhs: CExpr,
    },
    If {
        cond: CExpr,
        then: Code,
        els: Option<Code>,
    },
    /// arms: label and index into `bodies` where execution starts (falls through)
    Switch {
        pv: PvSpec,
        arms: Vec<(CaseLabel, usize)>,
        default: Option<usize>,
        bodies: Vec<Code>,
    },
    While {
        cond: CExpr,
        body: Code,
    },
    Block(Code),
    Exit,
    Drop,
    Return(i32),
    /// index into the request route table
    Route(usize),
    Break,
    /// A trace point before the next action (only when a module declared
    /// `action_trace`, see `ModuleExports`).
    Trace(Box<TracePoint>),
}

/// The hook a module declares as `action_trace`.
pub type ActionTraceFn = fn(&mut Ctx, &TracePoint);

/// Where an action is in the configuration, for `action_trace` hooks.
pub struct TracePoint {
    /// the configuration file the action is in
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
    /// the action: a function name, or `assign`, `if`, `switch`, `while`, `exit`,
    /// `drop`, `return`, `route`, `break`
    pub action: &'static str,
    pub hook: ActionTraceFn,
}

/// A compiled expression.
pub enum CExpr {
    Val(PvValue),
    Null,
    Kw(Keyword),
    Pv(PvSpec),
    Ip(IpAddr),
    Net(IpNet),
    Call(CallOp),
    /// `route(N)` used as a value
    Route(usize),
    Not(Box<CExpr>),
    And(Box<CExpr>, Box<CExpr>),
    Or(Box<CExpr>, Box<CExpr>),
    Cmp {
        op: CmpOp,
        l: Box<CExpr>,
        r: Box<CExpr>,
        /// constant regex of `=~`/`!~`, compiled at fixup
        re: Option<Arc<Regex>>,
    },
    Arith {
        op: ArithOp,
        l: Box<CExpr>,
        r: Box<CExpr>,
    },
    Neg(Box<CExpr>),
    BitNot(Box<CExpr>),
}

/// Result of evaluating a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tri {
    True,
    False,
    /// evaluation error: treated as false (the `else` branch runs)
    Err,
    /// a function returned 0: the script stops
    Drop,
}

fn script_of(ctx: &Ctx) -> Option<&'static Script> {
    ctx.script.or_else(|| SCRIPT.get())
}

/// Run route block `idx` of `kind` (table index from `route_index`). Top-level runs
/// (depth 0) reset the script flags. Returns the route's value (`$rc` of its last
/// action, or the `return(n)` value).
pub fn run_route(kind: RouteKind, idx: usize, ctx: &mut Ctx) -> i32 {
    let top = ctx.depth == 0;
    // `cfgengine`: a top-level run of a route the engine serves is the engine's.
    if top
        && ctx.script.is_none()
        && let Some(ret) = super::engine::dispatch(kind, idx, ctx)
    {
        ctx.run_flags &= !(RUN_RETURN | RUN_BREAK);
        ctx.retcode = ret;
        return ret;
    }
    let Some(script) = script_of(ctx) else {
        return 1;
    };
    let Some(Some(code)) = script.tables[kind_slot(kind)].blocks.get(idx) else {
        return 1;
    };
    if top {
        ctx.sflags = 0;
        ctx.run_flags = 0;
    }
    let prev = CURRENT.with(|c| c.replace(Some(script)));
    let ret = exec_block(ctx, code);
    CURRENT.with(|c| c.set(prev));
    // a `return` ends only this route
    ctx.run_flags &= !(RUN_RETURN | RUN_BREAK);
    if top {
        ctx.retcode = ret;
    }
    ret
}

thread_local! {
    /// The script of the innermost running context (tests run private scripts).
    static CURRENT: std::cell::Cell<Option<&'static Script>> = const { std::cell::Cell::new(None) };
}

/// Table index of a route: "1" or a named route. Works during fixup (module fixups
/// may check their route arguments), while a script runs, and afterwards.
pub fn route_index(kind: RouteKind, name: &str) -> Option<usize> {
    if let Some(r) = super::fixup::fixup_route_index(kind, name) {
        return r;
    }
    if let Some(r) = super::engine::route_index(kind, name) {
        return r;
    }
    CURRENT
        .with(|c| c.get())
        .or_else(|| SCRIPT.get())
        .and_then(|s| s.route_index(kind, name))
}

#[inline]
fn stopped(ctx: &Ctx) -> bool {
    ctx.run_flags & (RUN_EXIT | RUN_RETURN | RUN_BREAK) != 0
}

/// Run a block; returns the value of the last action.
pub(crate) fn exec_block(ctx: &mut Ctx, code: &[Op]) -> i32 {
    let mut ret = 1;
    for op in code {
        ret = exec_op(ctx, op);
        if ret == 0 {
            ctx.run_flags |= RUN_EXIT;
        }
        if stopped(ctx) {
            break;
        }
    }
    ret
}

fn call(ctx: &mut Ctx, c: &CallOp) -> i32 {
    let had_err = ctx.msg.parse_error.is_some();
    let r = (c.h)(ctx, &c.args);
    if !had_err && ctx.msg.parse_error.is_some() {
        run_error_route(ctx);
    }
    r
}

/// Run a call prepared at run time by an embedded language
/// (`fixup::dyn_call`): refused with an error when the function is not allowed in the
/// route type `ctx` runs in (the check `-C` makes for the configuration), else run
/// as a call in a route block is, error_route included.
pub fn run_dyn_call(ctx: &mut Ctx, c: &CallOp) -> Result<i32, String> {
    let bad = ctx.route_type & !c.routes;
    if bad != 0 {
        let bit = 1 << bad.trailing_zeros();
        return Err(format!(
            "function '{}' is not allowed in {}",
            c.name,
            crate::route::type_name(bit)
        ));
    }
    let r = call(ctx, c);
    ctx.retcode = r;
    Ok(r)
}

/// error_route: after an action that recorded a parse error (request, failure and
/// branch routes only). The error is cleared afterwards.
fn run_error_route(ctx: &mut Ctx) {
    use crate::route::{BRANCH_ROUTE, FAILURE_ROUTE, REQUEST_ROUTE};
    if ctx.route_type & (REQUEST_ROUTE | FAILURE_ROUTE | BRANCH_ROUTE) == 0 {
        return;
    }
    let Some(script) = script_of(ctx) else {
        return;
    };
    if let Some(Some(code)) = script.tables[kind_slot(RouteKind::Error)].blocks.first() {
        let saved = ctx.route_type;
        ctx.route_type = crate::route::ERROR_ROUTE;
        exec_block(ctx, code);
        ctx.route_type = saved;
        ctx.run_flags &= !(RUN_RETURN | RUN_BREAK);
    }
    ctx.msg.parse_error = None;
}

fn exec_op(ctx: &mut Ctx, op: &Op) -> i32 {
    match op {
        Op::Trace(t) => {
            (t.hook)(ctx, t);
            1
        }
        Op::Call(c) => {
            let r = call(ctx, c);
            ctx.retcode = r;
            r
        }
        Op::Assign { lhs, rhs } => {
            let v = match eval_val(ctx, rhs) {
                Ok(v) => v,
                Err(()) => {
                    ctx.run_flags |= RUN_EXIT;
                    return 0;
                }
            };
            super::pv::assign(ctx, lhs, v)
        }
        Op::If { cond, then, els } => {
            let v = eval_cond(ctx, cond);
            if v == Tri::Drop || stopped(ctx) {
                ctx.retcode = 0;
                ctx.run_flags |= RUN_EXIT;
                return 0;
            }
            if v == Tri::Err {
                crate::log_warn!("error in expression");
            }
            let branch = if v == Tri::True {
                Some(then)
            } else {
                els.as_ref()
            };
            match branch {
                Some(b) => {
                    let r = exec_block(ctx, b);
                    ctx.retcode = r;
                    // a stop (0) inside propagates through the run flags
                    r
                }
                None => {
                    ctx.retcode = if v == Tri::True { 1 } else { -1 };
                    1
                }
            }
        }
        Op::Switch {
            pv,
            arms,
            default,
            bodies,
        } => {
            let v = ctx.get_pv(pv);
            let mut start = None;
            for (label, at) in arms {
                let hit = match (label, &v) {
                    (CaseLabel::Int(i), PvValue::Int(x)) => i == x,
                    (CaseLabel::Int(i), PvValue::Str(s)) => s.trim().parse::<i64>() == Ok(*i),
                    (CaseLabel::Str(s), PvValue::Str(x)) => s.eq_ignore_ascii_case(x),
                    (CaseLabel::Str(s), PvValue::Int(x)) => s.eq_ignore_ascii_case(&x.to_string()),
                    _ => false,
                };
                if hit {
                    start = Some(*at);
                    break;
                }
            }
            let start = start.or(*default);
            let mut ret = 1;
            if let Some(s) = start {
                for b in bodies.iter().skip(s) {
                    ret = exec_block(ctx, b);
                    if ret == 0 {
                        ctx.run_flags |= RUN_EXIT;
                    }
                    if stopped(ctx) {
                        break;
                    }
                }
            }
            ctx.run_flags &= !RUN_BREAK;
            ret
        }
        Op::While { cond, body } => {
            let max = crate::globals::get().max_while_loops.max(0);
            let mut n = 0i64;
            let mut ret = 1;
            loop {
                let v = eval_cond(ctx, cond);
                if v == Tri::Drop {
                    ctx.run_flags |= RUN_EXIT;
                    return 0;
                }
                if v != Tri::True {
                    break;
                }
                if n >= max {
                    crate::log_warn!("max while loops are encountered");
                    break;
                }
                n += 1;
                ret = exec_block(ctx, body);
                if ret == 0 {
                    ctx.run_flags |= RUN_EXIT;
                }
                if ctx.run_flags & RUN_BREAK != 0 {
                    ctx.run_flags &= !RUN_BREAK;
                    break;
                }
                if stopped(ctx) {
                    break;
                }
            }
            ret
        }
        Op::Block(b) => exec_block(ctx, b),
        Op::Exit => {
            ctx.run_flags |= RUN_EXIT;
            ctx.retcode = 0;
            0
        }
        Op::Drop => {
            ctx.run_flags |= RUN_EXIT | RUN_DROP;
            ctx.retcode = 0;
            0
        }
        Op::Return(v) => {
            ctx.retcode = *v;
            if *v == 0 {
                ctx.run_flags |= RUN_EXIT;
            } else {
                ctx.run_flags |= RUN_RETURN;
            }
            *v
        }
        Op::Route(idx) => {
            if ctx.depth >= MAX_REC_LEV {
                crate::log_err!("too many recursive routing table lookups (100)");
                ctx.retcode = -1;
                return -1;
            }
            ctx.depth += 1;
            let r = run_route(RouteKind::Request, *idx, ctx);
            ctx.depth -= 1;
            ctx.retcode = r;
            if ctx.run_flags & RUN_EXIT != 0 {
                return 0;
            }
            if r < 0 { r } else { 1 }
        }
        Op::Break => {
            ctx.run_flags |= RUN_BREAK;
            1
        }
    }
}

/// `route(N)`: the sub-route's value if negative, else 1; 0 if the script stopped.
fn do_route(ctx: &mut Ctx, idx: usize) -> i32 {
    if ctx.depth >= MAX_REC_LEV {
        crate::log_err!("too many recursive routing table lookups (100)");
        ctx.retcode = -1;
        return -1;
    }
    ctx.depth += 1;
    let r = run_route(RouteKind::Request, idx, ctx);
    ctx.depth -= 1;
    ctx.retcode = r;
    if ctx.run_flags & RUN_EXIT != 0 {
        return 0;
    }
    if r < 0 { r } else { 1 }
}

// ---------------------------------------------------------------------------
// expressions

fn tri_of_rc(r: i32) -> Tri {
    match r {
        0 => Tri::Drop,
        r if r > 0 => Tri::True,
        _ => Tri::False,
    }
}

fn eval_cond(ctx: &mut Ctx, e: &CExpr) -> Tri {
    match e {
        CExpr::Val(PvValue::Int(i)) => bool_tri(*i != 0),
        CExpr::Val(PvValue::Str(s)) => bool_tri(!s.is_empty()),
        CExpr::Val(PvValue::Null) | CExpr::Null => Tri::False,
        CExpr::Pv(p) => match ctx.get_pv(p) {
            PvValue::Null => Tri::False,
            PvValue::Int(i) => bool_tri(i != 0),
            PvValue::Str(s) => bool_tri(!s.is_empty()),
        },
        CExpr::Call(c) => {
            let r = call(ctx, c);
            ctx.retcode = r;
            tri_of_rc(r)
        }
        CExpr::Route(idx) => tri_of_rc(do_route(ctx, *idx)),
        CExpr::Not(x) => match eval_cond(ctx, x) {
            Tri::True => Tri::False,
            Tri::False => Tri::True,
            other => other,
        },
        CExpr::And(a, b) => match eval_cond(ctx, a) {
            Tri::True => eval_cond(ctx, b),
            other => other,
        },
        CExpr::Or(a, b) => match eval_cond(ctx, a) {
            Tri::False => eval_cond(ctx, b),
            other => other,
        },
        CExpr::Cmp { op, l, r, re } => compare(ctx, *op, l, r, re.as_deref()),
        CExpr::Arith { .. } | CExpr::Neg(_) | CExpr::BitNot(_) => match eval_val(ctx, e) {
            Ok(PvValue::Int(i)) => bool_tri(i != 0),
            Ok(PvValue::Str(s)) => bool_tri(!s.is_empty()),
            Ok(PvValue::Null) => Tri::False,
            Err(()) => Tri::Drop,
        },
        CExpr::Kw(_) | CExpr::Ip(_) | CExpr::Net(_) => Tri::Err,
    }
}

fn bool_tri(b: bool) -> Tri {
    if b { Tri::True } else { Tri::False }
}

/// Value of an expression (assignments, arithmetic). Err = the script must stop.
pub(crate) fn eval_val(ctx: &mut Ctx, e: &CExpr) -> Result<PvValue, ()> {
    Ok(match e {
        CExpr::Val(v) => v.clone(),
        CExpr::Null => PvValue::Null,
        CExpr::Pv(p) => ctx.get_pv(p),
        CExpr::Ip(ip) => PvValue::Str(ip.to_string()),
        CExpr::Net(n) => PvValue::Str(format!("{}/{}", n.addr, n.mask)),
        CExpr::Kw(k) => kw_value(ctx, *k),
        CExpr::Call(c) => {
            let r = call(ctx, c);
            ctx.retcode = r;
            if r == 0 {
                return Err(());
            }
            PvValue::Int(r as i64)
        }
        CExpr::Route(idx) => {
            let r = do_route(ctx, *idx);
            if r == 0 {
                return Err(());
            }
            PvValue::Int(r as i64)
        }
        CExpr::Arith { op, l, r } => {
            let a = eval_val(ctx, l)?;
            let b = eval_val(ctx, r)?;
            match (a, b) {
                (PvValue::Str(a), PvValue::Str(b)) if *op == ArithOp::Add => PvValue::Str(a + &b),
                (a, b) => {
                    let (Some(x), Some(y)) = (a.as_int(), b.as_int()) else {
                        return Ok(PvValue::Null);
                    };
                    PvValue::Int(match op {
                        ArithOp::Add => x.wrapping_add(y),
                        ArithOp::Sub => x.wrapping_sub(y),
                        ArithOp::Mul => x.wrapping_mul(y),
                        ArithOp::Div => {
                            if y == 0 {
                                return Ok(PvValue::Null);
                            }
                            x.wrapping_div(y)
                        }
                        ArithOp::Mod => {
                            if y == 0 {
                                return Ok(PvValue::Null);
                            }
                            x.wrapping_rem(y)
                        }
                        ArithOp::BitAnd => x & y,
                        ArithOp::BitOr => x | y,
                        ArithOp::BitXor => x ^ y,
                    })
                }
            }
        }
        CExpr::Neg(x) => match eval_val(ctx, x)?.as_int() {
            Some(i) => PvValue::Int(i.wrapping_neg()),
            None => PvValue::Null,
        },
        CExpr::BitNot(x) => match eval_val(ctx, x)?.as_int() {
            Some(i) => PvValue::Int(!i),
            None => PvValue::Null,
        },
        CExpr::Not(_) | CExpr::And(..) | CExpr::Or(..) | CExpr::Cmp { .. } => {
            match eval_cond(ctx, e) {
                Tri::True => PvValue::Int(1),
                Tri::False | Tri::Err => PvValue::Int(0),
                Tri::Drop => return Err(()),
            }
        }
    })
}

fn kw_value(ctx: &mut Ctx, k: Keyword) -> PvValue {
    let m = &*ctx.msg;
    match k {
        Keyword::Method => PvValue::Str(m.method_str().to_string()),
        Keyword::Uri => PvValue::Str(m.ruri().to_string()),
        Keyword::Status => match m.status() {
            Some(s) => PvValue::Str(s.to_string()),
            None => PvValue::Str(m.ruri().to_string()),
        },
        Keyword::FromUri => m
            .from()
            .map(|f| PvValue::Str(m.s(f.uri).to_string()))
            .unwrap_or(PvValue::Null),
        Keyword::ToUri => m
            .to()
            .map(|f| PvValue::Str(m.s(f.uri).to_string()))
            .unwrap_or(PvValue::Null),
        Keyword::SrcIp => PvValue::Str(m.rcv.src.ip().to_string()),
        Keyword::DstIp => PvValue::Str(m.rcv.dst.ip().to_string()),
        Keyword::SrcPort => PvValue::Int(m.rcv.src.port() as i64),
        Keyword::DstPort => PvValue::Int(m.rcv.dst.port() as i64),
        Keyword::Proto => PvValue::Int(proto_num(m.rcv.proto)),
        Keyword::Af => PvValue::Int(if m.rcv.src.is_ipv4() { 2 } else { 10 }),
        Keyword::MsgLen => PvValue::Int(m.len() as i64),
        Keyword::MaxLen => PvValue::Int(65535),
        Keyword::Myself => PvValue::Null,
    }
}

fn proto_num(p: crate::parser::Proto) -> i64 {
    use crate::parser::Proto as P;
    match p {
        P::Udp => 1,
        P::Tcp => 2,
        P::Tls => 3,
    }
}

/// The constant number a bare word stands for (udp/tcp/tls/inet/inet6).
fn ident_num(s: &str) -> Option<i64> {
    match s.to_ascii_lowercase().as_str() {
        "udp" => Some(1),
        "tcp" => Some(2),
        "tls" => Some(3),
        "sctp" => Some(4),
        "inet" => Some(2),
        "inet6" => Some(10),
        _ => s.parse().ok(),
    }
}

/// Is the URI text ours (host and port against listen sockets and aliases)?
pub(crate) fn uri_is_myself(uri: &str) -> bool {
    match crate::parser::Uri::parse(uri) {
        Ok(u) => crate::transport::socket::is_myself(u.host_unbracketed(), u.port.unwrap_or(0)),
        Err(_) => false,
    }
}

fn ip_is_myself(ip: IpAddr) -> bool {
    crate::transport::socket::sockets()
        .iter()
        .any(|s| s.addr.ip() == ip)
        || crate::transport::socket::is_myself(&ip.to_string(), 0)
}

fn in_net(ip: IpAddr, n: &IpNet) -> bool {
    match (ip, n.addr, n.mask) {
        (IpAddr::V4(a), IpAddr::V4(b), IpAddr::V4(m)) => {
            let m = u32::from(m);
            u32::from(a) & m == u32::from(b) & m
        }
        (IpAddr::V6(a), IpAddr::V6(b), IpAddr::V6(m)) => {
            let m = u128::from(m);
            u128::from(a) & m == u128::from(b) & m
        }
        _ => false,
    }
}

fn str_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.eq_ignore_ascii_case(b)
}

fn str_cmp(op: CmpOp, a: &str, b: &str) -> Tri {
    let ord = a.to_ascii_lowercase().cmp(&b.to_ascii_lowercase());
    bool_tri(match op {
        CmpOp::Eq => str_eq(a, b),
        CmpOp::Ne => !str_eq(a, b),
        CmpOp::Gt => ord.is_gt(),
        CmpOp::Lt => ord.is_lt(),
        CmpOp::Ge => ord.is_ge(),
        CmpOp::Le => ord.is_le(),
        CmpOp::Match | CmpOp::NoMatch => return Tri::Err,
    })
}

fn int_cmp(op: CmpOp, a: i64, b: i64) -> Tri {
    bool_tri(match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Gt => a > b,
        CmpOp::Lt => a < b,
        CmpOp::Ge => a >= b,
        CmpOp::Le => a <= b,
        CmpOp::Match | CmpOp::NoMatch => return Tri::Err,
    })
}

fn regex_tri(ctx: &mut Ctx, op: CmpOp, subject: &str, r: &CExpr, re: Option<&Regex>) -> Tri {
    let m = match re {
        Some(re) => re.is_match(subject),
        None => {
            let pat = match eval_val(ctx, r) {
                Ok(PvValue::Str(s)) => s,
                Ok(PvValue::Int(i)) => i.to_string(),
                Ok(PvValue::Null) => return Tri::False,
                Err(()) => return Tri::Drop,
            };
            match Regex::new(&pat, true, true) {
                Ok(re) => re.is_match(subject),
                Err(e) => {
                    crate::log_err!("bad re {pat}: {e}");
                    return Tri::Err;
                }
            }
        }
    };
    bool_tri(if op == CmpOp::Match { m } else { !m })
}

fn compare(ctx: &mut Ctx, op: CmpOp, l: &CExpr, r: &CExpr, re: Option<&Regex>) -> Tri {
    // `myself` on the left: swap
    if let (CExpr::Kw(Keyword::Myself), CExpr::Kw(_)) = (l, r) {
        return compare(ctx, op, r, l, re);
    }
    match l {
        CExpr::Kw(
            k @ (Keyword::Method
            | Keyword::Uri
            | Keyword::Status
            | Keyword::FromUri
            | Keyword::ToUri),
        ) => {
            if !matches!(op, CmpOp::Eq | CmpOp::Ne | CmpOp::Match) {
                crate::log_crit!("unknown op {op:?}");
                return Tri::Err;
            }
            // fast paths without copying the subject
            if let CExpr::Kw(Keyword::Myself) = r {
                if *k == Keyword::Method || op == CmpOp::Match {
                    return Tri::Err;
                }
                let me = if *k == Keyword::Uri && ctx.msg.new_uri.is_none() && ctx.msg.is_request()
                {
                    match ctx.msg.orig_ruri_parsed() {
                        Ok(u) => crate::transport::socket::is_myself(
                            u.host_unbracketed(),
                            u.port.unwrap_or(0),
                        ),
                        Err(_) => false,
                    }
                } else {
                    match kw_value(ctx, *k) {
                        PvValue::Str(s) => uri_is_myself(&s),
                        _ => return Tri::Err,
                    }
                };
                return bool_tri(if op == CmpOp::Eq { me } else { !me });
            }
            if *k == Keyword::Method
                && op != CmpOp::Match
                && let CExpr::Val(PvValue::Str(c)) = r
            {
                let eq = str_eq(ctx.msg.method_str(), c);
                return bool_tri(if op == CmpOp::Eq { eq } else { !eq });
            }
            let subject = match kw_value(ctx, *k) {
                PvValue::Str(s) => s,
                _ => return Tri::Err,
            };
            if op == CmpOp::Match {
                return regex_tri(ctx, op, &subject, r, re);
            }
            let other = match eval_val(ctx, r) {
                Ok(PvValue::Str(s)) => s,
                Ok(PvValue::Int(i)) => i.to_string(),
                Ok(PvValue::Null) => return Tri::False,
                Err(()) => return Tri::Drop,
            };
            str_cmp(op, &subject, &other)
        }
        CExpr::Kw(k @ (Keyword::SrcIp | Keyword::DstIp)) => {
            let ip = if *k == Keyword::SrcIp {
                ctx.msg.rcv.src.ip()
            } else {
                ctx.msg.rcv.dst.ip()
            };
            let hit = match r {
                CExpr::Ip(x) => Some(ip == *x),
                CExpr::Net(n) => Some(in_net(ip, n)),
                CExpr::Kw(Keyword::Myself) => Some(ip_is_myself(ip)),
                _ => None,
            };
            if let Some(h) = hit {
                return match op {
                    CmpOp::Eq => bool_tri(h),
                    CmpOp::Ne => bool_tri(!h),
                    _ => Tri::Err,
                };
            }
            let text = ip.to_string();
            if matches!(op, CmpOp::Match | CmpOp::NoMatch) {
                return regex_tri(ctx, op, &text, r, re);
            }
            match eval_val(ctx, r) {
                Ok(PvValue::Str(s)) => {
                    let h =
                        s.parse::<IpAddr>().map(|x| x == ip).unwrap_or(false) || str_eq(&s, &text);
                    match op {
                        CmpOp::Eq => bool_tri(h),
                        CmpOp::Ne => bool_tri(!h),
                        _ => Tri::Err,
                    }
                }
                Ok(_) => Tri::Err,
                Err(()) => Tri::Drop,
            }
        }
        CExpr::Kw(
            k @ (Keyword::SrcPort
            | Keyword::DstPort
            | Keyword::Proto
            | Keyword::Af
            | Keyword::MsgLen
            | Keyword::MaxLen),
        ) => {
            let Some(a) = kw_value(ctx, *k).as_int() else {
                return Tri::Err;
            };
            let b = match r {
                CExpr::Val(PvValue::Str(s)) => match ident_num(s) {
                    Some(b) => b,
                    None => return Tri::Err,
                },
                other => match eval_val(ctx, other) {
                    Ok(v) => match v.as_int() {
                        Some(b) => b,
                        None => return Tri::Err,
                    },
                    Err(()) => return Tri::Drop,
                },
            };
            int_cmp(op, a, b)
        }
        CExpr::Kw(Keyword::Myself) => Tri::Err,
        _ => {
            // generic: PV / value on the left
            let a = match eval_val(ctx, l) {
                Ok(v) => v,
                Err(()) => return Tri::Drop,
            };
            if matches!(op, CmpOp::Match | CmpOp::NoMatch) {
                let s = match a {
                    PvValue::Str(s) => s,
                    PvValue::Int(i) => i.to_string(),
                    PvValue::Null => return Tri::False,
                };
                return regex_tri(ctx, op, &s, r, re);
            }
            if let CExpr::Kw(Keyword::Myself) = r {
                let PvValue::Str(s) = a else {
                    return Tri::False;
                };
                let me = uri_is_myself(&s) || crate::transport::socket::is_myself(&s, 0);
                return match op {
                    CmpOp::Eq => bool_tri(me),
                    CmpOp::Ne => bool_tri(!me),
                    _ => Tri::Err,
                };
            }
            let b = match r {
                CExpr::Null => {
                    return match op {
                        CmpOp::Eq => bool_tri(a.is_null()),
                        CmpOp::Ne => bool_tri(!a.is_null()),
                        _ => Tri::Err,
                    };
                }
                other => match eval_val(ctx, other) {
                    Ok(v) => v,
                    Err(()) => return Tri::Drop,
                },
            };
            let r_is_pv = matches!(r, CExpr::Pv(_));
            match (a, b) {
                (PvValue::Null, _) | (_, PvValue::Null) => Tri::False,
                (PvValue::Int(x), PvValue::Int(y)) => int_cmp(op, x, y),
                (PvValue::Int(x), PvValue::Str(y)) => str_cmp(op, &x.to_string(), &y),
                (PvValue::Str(x), PvValue::Int(y)) => {
                    if r_is_pv {
                        str_cmp(op, &x, &y.to_string())
                    } else {
                        crate::log_err!("string PV compared with a number");
                        Tri::Err
                    }
                }
                (PvValue::Str(x), PvValue::Str(y)) => str_cmp(op, &x, &y),
            }
        }
    }
}
