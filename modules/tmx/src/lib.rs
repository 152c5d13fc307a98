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
//! Not provided: `t_suspend`/`t_continue`. A suspended request would need its whole
//! script state (the parsed message with its lumps, AVPs, branches, the script
//! position) kept in shared memory and resumed in another process; tm here keeps the
//! request as it was forwarded and rebuilds a context only for failure/branch/onreply
//! routes, so there is no clean place to suspend a request route in the middle.

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
    ],
    mi: &[
        MiExport::new("t_reply_callid", mi_reply_callid),
        MiExport::new("t_cancel_callid", mi_cancel_callid),
    ],
    pvs: &[
        PvExport::new("T_req", pv_t_req),
        PvExport::new("T_rpl", pv_t_rpl),
        PvExport::new("T_reply_reason", pv_t_reply_reason),
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
