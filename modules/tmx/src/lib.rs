//! tmx (Kamailio/SIP Router 3.1 `modules_k/tmx`): extensions to tm — transactions
//! found by Call-ID and CSeq, route-type tests, and the transaction's request and
//! reply as pseudo-variables. tm must be loaded.
//!
//! Functions (every route unless said; rc 1 true, −1 false):
//! * `t_cancel_callid(callid, cseq, flag[, rcode])`: cancel the pending INVITE
//!   transaction of that Call-ID and CSeq number as a CANCEL from its caller would: its
//!   branches get a CANCEL (those without a provisional reply yet, once one arrives),
//!   the callee's 487 goes upstream. `flag` > 0 sets that message flag on the
//!   transaction; `rcode` puts `Reason: SIP;cause=<rcode>` in the CANCELs. −1 when no
//!   such transaction is pending (none, or its final reply was sent).
//! * `t_reply_callid(callid, cseq, code, reason)`: reply to the transaction of that
//!   Call-ID and CSeq number (an INVITE one preferred) with tm's To tag. −1 when there
//!   is none or it is completed.
//! * `t_cancel_branches(which)` (ONREPLY): cancel the pending branches of the reply's
//!   transaction: `all`, `others` (all but the reply's branch) or `this`.
//! * `t_is_failure_route()`, `t_is_branch_route()`, `t_is_reply_route()`,
//!   `t_is_request_route()`: whether the top route being run is of that type (also
//!   from a `route[...]` it called).
//! * `t_flush_flags()` is tm's (request, branch and failure routes).
//!
//! Pseudo-variables: `$T_req(pv)` — `pv` evaluated on the current transaction's
//! request (as tm keeps it); `$T_rpl(pv)` — on the reply of the transaction: the
//! branch reply picked for failure_route, the reply itself in an onreply_route (null
//! elsewhere, or for a local timeout); `$T_reply_reason` — that reply's reason phrase
//! ("Request Timeout" for a timeout).
//!
//! MI: `t_reply_callid` (code, reason, Call-ID, CSeq, To tag or ".", headers or ".",
//! [body]: Kamailio's), `t_cancel_callid` (Call-ID, CSeq[, rcode]: the script
//! function from the MI, not in Kamailio). tm's own MI commands keep their names
//! (`t_uac_dlg`, `t_uac_cancel`, `t_hash`, `t_reply`), which are tmx's in Kamailio.
//!
//! Asynchronous processing (Kamailio 3.1's, on tm's `suspend` API):
//! * `t_suspend()` (request route): create the request's transaction if needed and
//!   suspend it — no reply is sent, the request waits in tm, and `$T(id_index)` /
//!   `$T(id_label)` name it. The script then usually ends (`exit`). A retransmission
//!   is absorbed (an INVITE gets a 100 Trying); a CANCEL ends it with 487; nobody
//!   continuing it, it ends after `fr_timer` with 408 (or its failure_route). 1 when
//!   suspended, 0 for a retransmission (the script stops), −1 on error.
//! * `t_continue(tindex, tlabel, rtname)` (every route; ints or PVs; a literal route
//!   name is resolved at start-up, an unknown one refuses the configuration): run
//!   `route[rtname]` from its start on the suspended transaction's request, in its
//!   context (`t_relay`, `t_reply`, `t_on_failure`… act on it; flags and AVPs are the
//!   ones kept at `t_suspend`). When the route neither relays nor replies with
//!   `t_reply`, the transaction is answered 500, as Kamailio does (`sl_send_reply` is
//!   stateless: tm does not see it). −1 (logged) when there is no such transaction or
//!   it is not suspended (continued already, timed out, canceled).
//!
//! `$T(name)`: `id_index`, `id_label` (the current transaction's, null without one),
//! `reply_code` (as `$T_reply_code`), `branch_index` (as `$T_branch_idx`).
//!
//! The route run by `t_continue` sees the request with the changes the script made
//! before `t_suspend`: kept in the cell when `t_suspend` created the transaction, or
//! kept beside it (under the lock) when a `t_newtran` had created it before.
//!
//! Not provided: `t_save_lumps()`. The request tm keeps is fixed when the transaction
//! is created (with the changes made so far) and is read without the lock by every
//! process (its matching keys are spans into it; failure_route, local replies and
//! `$T_req` parse it); replacing it later would need every reader to take the reply
//! lock, which some of them already hold when they read it (the lock is not
//! re-entrant).

use std::sync::Arc;

use openser_core::cfg::ast::{Arg, ArgValue, RouteKind};
use openser_core::cfg::pv::{PvParam, PvSpec};
use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::module::{CmdExport, FixedArg, MiExport, ModuleExports, PvExport};
use openser_core::route::{ANY_ROUTE, BRANCH_ROUTE, FAILURE_ROUTE, ONREPLY_ROUTE, REQUEST_ROUTE};
use openser_core::script::{Ctx, PvValue};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "tmx",
    binds: &["tm"],
    cmds: &[
        CmdExport::new("t_cancel_callid", 3, 4, ANY_ROUTE, cmd_t_cancel_callid),
        CmdExport::new("t_reply_callid", 4, 4, ANY_ROUTE, cmd_t_reply_callid),
        CmdExport::new(
            "t_cancel_branches",
            1,
            1,
            ONREPLY_ROUTE,
            cmd_t_cancel_branches,
        ),
        CmdExport::new("t_is_failure_route", 0, 0, ANY_ROUTE, cmd_is_failure),
        CmdExport::new("t_is_branch_route", 0, 0, ANY_ROUTE, cmd_is_branch),
        CmdExport::new("t_is_reply_route", 0, 0, ANY_ROUTE, cmd_is_reply),
        CmdExport::new("t_is_request_route", 0, 0, ANY_ROUTE, cmd_is_request),
        CmdExport::new("t_suspend", 0, 0, REQUEST_ROUTE, cmd_t_suspend),
        CmdExport::new("t_continue", 3, 3, ANY_ROUTE, cmd_t_continue).fixup(fixup_t_continue),
    ],
    mi: &[
        MiExport::new("t_reply_callid", mi_reply_callid),
        MiExport::new("t_cancel_callid", mi_cancel_callid),
    ],
    pvs: &[
        PvExport::new("T_req", pv_t_req),
        PvExport::new("T_rpl", pv_t_rpl),
        PvExport::new("T_reply_reason", pv_t_reply_reason),
        PvExport::new("T", pv_t),
    ],
    ..ModuleExports::EMPTY
};

fn rc(b: bool) -> i32 {
    if b { 1 } else { -1 }
}

/// `Reason: SIP;cause=<rcode>` for the CANCELs, or nothing.
fn reason_for(rcode: &str) -> Result<String, ()> {
    let r = rcode.trim();
    if r.is_empty() {
        return Ok(String::new());
    }
    match r.parse::<u16>() {
        Ok(c) if (100..700).contains(&c) => Ok(format!("Reason: SIP;cause={c}\r\n")),
        _ => Err(()),
    }
}

/// Cancel the pending INVITE of `callid`/`cseq`; false when there is none.
pub fn cancel_callid(callid: &str, cseq: &str, flag: i64, reason: &str) -> bool {
    let Some(c) = tm::find_by_callid(callid.trim().as_bytes(), cseq.trim().as_bytes(), true) else {
        openser_core::log_dbg!("no INVITE transaction for {callid:?} {cseq:?}");
        return false;
    };
    let flags = if (1..32).contains(&flag) {
        1u32 << flag
    } else {
        0
    };
    tm::cancel::cancel_transaction(&c, reason, flags)
}

fn cmd_t_cancel_callid(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let [a, b, f, rest @ ..] = args else {
        return -1;
    };
    let callid = ctx.arg_str(a);
    let cseq = ctx.arg_str(b);
    let flag = ctx.arg_int(f).unwrap_or(0);
    let rcode = rest.first().map(|r| ctx.arg_str(r)).unwrap_or_default();
    let Ok(reason) = reason_for(&rcode) else {
        openser_core::log_err!("t_cancel_callid: bad reason code {rcode:?}");
        return -1;
    };
    rc(cancel_callid(&callid, &cseq, flag, &reason))
}

/// Reply to the transaction of `callid`/`cseq` (INVITE first).
fn reply_callid(
    callid: &str,
    cseq: &str,
    code: u16,
    reason: &str,
    to_tag: &str,
    headers: &[&str],
    body: &[u8],
) -> Option<bool> {
    let (id, seq) = (callid.trim().as_bytes(), cseq.trim().as_bytes());
    let c = tm::find_by_callid(id, seq, true).or_else(|| tm::find_by_callid(id, seq, false))?;
    Some(tm::reply::t_reply_with_body(
        &c, code, reason, to_tag, headers, body,
    ))
}

fn cmd_t_reply_callid(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let [a, b, c, d] = args else {
        return -1;
    };
    let callid = ctx.arg_str(a);
    let cseq = ctx.arg_str(b);
    let code = ctx.arg_str(c);
    let reason = ctx.arg_str(d);
    let Some(code) = code
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|c| (100..700).contains(c))
    else {
        openser_core::log_err!("t_reply_callid: bad reply code {code:?}");
        return -1;
    };
    rc(reply_callid(&callid, &cseq, code, &reason, "", &[], b"") == Some(true))
}

fn cmd_t_cancel_branches(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(a) = args.first() else { return -1 };
    let which = ctx.arg_str(a).trim().to_ascii_lowercase();
    let Some(c) = tm::current() else {
        return -1;
    };
    let this = tm::lookup::reply_ids(ctx.msg).map(|(_, _, br)| br as usize);
    let mut g = c.lock_state();
    let st = g.st();
    let ok = match (which.as_str(), this) {
        ("all", _) => {
            tm::cancel::cancel_branches_locked(st, None);
            true
        }
        ("others", Some(br)) => {
            tm::cancel::cancel_branches_locked(st, Some(br));
            true
        }
        ("this", Some(br)) => {
            tm::cancel::cancel_branch_locked(st, br);
            true
        }
        _ => false,
    };
    g.unlock_then_run_callbacks();
    if !ok {
        openser_core::log_err!("t_cancel_branches: cannot cancel {which:?}");
    }
    rc(ok)
}

fn cmd_is_failure(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    rc(ctx.route_type & FAILURE_ROUTE != 0)
}
fn cmd_is_branch(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    rc(ctx.route_type & BRANCH_ROUTE != 0)
}
fn cmd_is_reply(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    rc(ctx.route_type & ONREPLY_ROUTE != 0)
}
fn cmd_is_request(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    rc(ctx.route_type & REQUEST_ROUTE != 0)
}

fn cmd_t_suspend(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    match tm::suspend::suspend(ctx) {
        tm::suspend::Suspend::Suspended { .. } => 1,
        tm::suspend::Suspend::Retrans => 0,
        tm::suspend::Suspend::Failed => -1,
    }
}

/// A route name resolved at start-up.
struct RouteIdx(usize);

/// `t_continue(tindex, tlabel, rtname)`: the ids as given (ints or PVs); a literal
/// route name becomes its index now, an unknown one is a configuration error.
fn fixup_t_continue(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let [a, b, r] = args else {
        return Err("t_continue: three parameters expected".into());
    };
    let mut out = openser_core::script::fixup::default_fixup(&[a.clone(), b.clone()])?;
    let literal = match &r.value {
        ArgValue::Str(s) | ArgValue::Ident(s) if !s.contains('$') => Some(s.clone()),
        ArgValue::Int(i) => Some(i.to_string()),
        _ => None,
    };
    match literal {
        Some(name) => {
            let idx = openser_core::script::route_index(RouteKind::Request, &name)
                .ok_or_else(|| format!("t_continue: no route[{name}] in the script"))?;
            out.push(FixedArg::Any(Arc::new(RouteIdx(idx))));
        }
        None => out.extend(openser_core::script::fixup::default_fixup(
            std::slice::from_ref(r),
        )?),
    }
    Ok(out)
}

/// A transaction id argument: a number in 0..2^32.
fn arg_id(ctx: &mut Ctx, a: &FixedArg) -> Option<u32> {
    ctx.arg_int(a).and_then(|v| u32::try_from(v).ok())
}

fn cmd_t_continue(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let [a, b, r] = args else {
        return -1;
    };
    let (Some(index), Some(label)) = (arg_id(ctx, a), arg_id(ctx, b)) else {
        openser_core::log_err!(
            "t_continue: bad transaction id {:?}:{:?}",
            ctx.arg_str(a),
            ctx.arg_str(b)
        );
        return -1;
    };
    let route = match r {
        FixedArg::Any(x) => match x.downcast_ref::<RouteIdx>() {
            Some(RouteIdx(i)) => *i,
            None => return -1,
        },
        other => {
            let name = ctx.arg_str(other);
            match openser_core::script::route_index(RouteKind::Request, name.trim()) {
                Some(i) => i,
                None => {
                    openser_core::log_err!("t_continue: no route[{name}] in the script");
                    return -1;
                }
            }
        }
    };
    tm::suspend::continue_cell(index, label, route)
}

// ---------------------------------------------------------------- MI

fn mi_reply_callid(args: &[MiArg]) -> MiReply {
    if !(6..=7).contains(&args.len()) {
        return MiReply::err(400, "Too few or too many arguments");
    }
    let Some(code) = args[0]
        .value
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|c| (100..700).contains(c))
    else {
        return MiReply::err(400, "Invalid reply code");
    };
    let reason = args[1].value.trim();
    let totag = match args[4].value.trim() {
        "." => "",
        t => t,
    };
    let mut lines: Vec<String> = Vec::new();
    let hdr_text = args[5].value.trim();
    if hdr_text != "." {
        for l in hdr_text.split('\n') {
            let l = l.trim_end_matches('\r');
            if !l.trim().is_empty() {
                lines.push(format!("{l}\r\n"));
            }
        }
    }
    let hdrs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let body = args.get(6).map(|a| a.value.as_bytes()).unwrap_or(b"");
    match reply_callid(
        &args[2].value,
        &args[3].value,
        code,
        reason,
        totag,
        &hdrs,
        body,
    ) {
        None => MiReply::err(404, "Transaction not found"),
        Some(false) => MiReply::err(500, "Reply failed"),
        Some(true) => MiReply::ok(Vec::new()),
    }
}

fn mi_cancel_callid(args: &[MiArg]) -> MiReply {
    if !(2..=3).contains(&args.len()) {
        return MiReply::err(400, "Too few or too many arguments");
    }
    let Ok(reason) = reason_for(args.get(2).map(|a| a.value.as_str()).unwrap_or("")) else {
        return MiReply::err(400, "Invalid reason code");
    };
    if cancel_callid(&args[0].value, &args[1].value, 0, &reason) {
        MiReply::ok(vec![MiNode::value("canceled")])
    } else {
        MiReply::err(481, "No pending INVITE transaction")
    }
}

// ---------------------------------------------------------------- PVs

/// `$T(name)`: the current transaction's `id_index`/`id_label`, `reply_code`,
/// `branch_index`.
fn pv_t(ctx: &mut Ctx, pv: &PvSpec) -> PvValue {
    let Some(PvParam::Name(name)) = &pv.param else {
        return PvValue::Null;
    };
    match name.trim() {
        "id_index" => {
            tm::current().map_or(PvValue::Null, |c| PvValue::Int(i64::from(c.hash_index)))
        }
        "id_label" => tm::current().map_or(PvValue::Null, |c| PvValue::Int(i64::from(c.label))),
        "reply_code" => tm::t_reply_code(ctx),
        "branch_index" => PvValue::Int(i64::from(ctx.branch_idx)),
        _ => PvValue::Null,
    }
}

/// The PV inside `$T_req(...)`/`$T_rpl(...)`.
fn inner(pv: &PvSpec) -> Option<&PvSpec> {
    match &pv.param {
        Some(PvParam::Pv(p)) => Some(p),
        _ => None,
    }
}

/// `pv` evaluated over message bytes `buf` (parsed as received from `rcv`).
fn eval_on(ctx: &mut Ctx, buf: &[u8], pv: &PvSpec) -> PvValue {
    let Ok(mut m) = openser_core::parser::SipMsg::new(buf, ctx.msg.rcv) else {
        return PvValue::Null;
    };
    let mut c2 = Ctx::new(&mut m, ctx.route_type);
    c2.avps = ctx.avps.clone();
    c2.get_pv(pv)
}

fn pv_t_req(ctx: &mut Ctx, pv: &PvSpec) -> PvValue {
    let Some(p) = inner(pv) else {
        return PvValue::Null;
    };
    if ctx.route_type & FAILURE_ROUTE != 0 {
        // failure_route runs on the transaction's request already
        return ctx.get_pv(p);
    }
    let Some(c) = tm::current() else {
        return PvValue::Null;
    };
    let Some(mut m) = tm::clone::request_msg(&c) else {
        return PvValue::Null;
    };
    let mut c2 = Ctx::new(&mut m, ctx.route_type);
    c2.avps = ctx.avps.clone();
    c2.get_pv(p)
}

/// The reply failure_route was given: its bytes, or `None` for a local one (timeout).
fn picked_reply() -> Option<(u16, Option<Vec<u8>>)> {
    let i = tm::reply::picked_branch()?;
    let b = tm::reply::t_branches().into_iter().nth(i)?;
    Some((b.code, b.reply))
}

fn pv_t_rpl(ctx: &mut Ctx, pv: &PvSpec) -> PvValue {
    let Some(p) = inner(pv) else {
        return PvValue::Null;
    };
    if ctx.route_type & ONREPLY_ROUTE != 0 {
        return ctx.get_pv(p);
    }
    if ctx.route_type & FAILURE_ROUTE == 0 {
        return PvValue::Null;
    }
    match picked_reply() {
        Some((_, Some(buf))) => eval_on(ctx, &buf, p),
        _ => PvValue::Null,
    }
}

fn pv_t_reply_reason(ctx: &mut Ctx, _pv: &PvSpec) -> PvValue {
    if ctx.route_type & ONREPLY_ROUTE != 0 {
        return ctx
            .msg
            .reason()
            .map_or(PvValue::Null, |r| PvValue::Str(r.to_string()));
    }
    if ctx.route_type & FAILURE_ROUTE == 0 {
        return PvValue::Null;
    }
    match picked_reply() {
        Some((_, Some(buf))) => openser_core::parser::SipMsg::parse(&buf)
            .ok()
            .and_then(|m| m.reason().map(str::to_string))
            .map_or(PvValue::Null, PvValue::Str),
        Some((408, None)) => PvValue::Str("Request Timeout".into()),
        Some((_, None)) => PvValue::Str("Server Internal Error".into()),
        None => PvValue::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes() {
        assert_eq!(reason_for(""), Ok(String::new()));
        assert_eq!(
            reason_for(" 200 "),
            Ok("Reason: SIP;cause=200\r\n".to_string())
        );
        assert!(reason_for("99").is_err());
        assert!(reason_for("abc").is_err());
    }

    #[test]
    fn mi_argument_checks() {
        let a = |v: &str| MiArg {
            name: None,
            value: v.into(),
        };
        assert_eq!(mi_cancel_callid(&[a("x")]).code, 400);
        assert_eq!(mi_cancel_callid(&[a("x"), a("1"), a("9")]).code, 400);
        assert_eq!(mi_reply_callid(&[a("x")]).code, 400);
        let r = mi_reply_callid(&[a("999"), a("r"), a("c"), a("1"), a("."), a(".")]);
        assert_eq!(r.reason, "Invalid reply code");
    }
}
