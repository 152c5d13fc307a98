//! Replies: local (t_reply, 100 Trying, timeouts) and relayed ones (the reply hook),
//! RFC 3261 §16.7 selection with 401/407 aggregation, failure_route, ACK absorption.

use std::sync::OnceLock;

use md5::{Digest, Md5};
use shm::ShmStr;

use openser_core::cfg::ast::RouteKind;
use openser_core::msg::{build_local_reply, build_reply_forward, sl::sl_suffix};
use openser_core::parser::{Method, SipMsg};
use openser_core::route;
use openser_core::script::{Ctx, run_route};
use openser_core::transport::socket::sockets;

use super::clone::{avps_from_bytes, avps_to_bytes, request_msg};
use super::fwd::{now_ms, send};
use super::h_table::*;
use super::lookup::{Want, reply_ids, request_key, request_matches, tm_hash};
use super::{P, cancel};

/// tm to-tag prefix: MD5("OpenSER-TM/tags", first socket IP, port) in hex.
fn tag_prefix() -> &'static str {
    static T: OnceLock<String> = OnceLock::new();
    T.get_or_init(|| {
        let mut h = Md5::new();
        h.update(b"OpenSER-TM/tags");
        if let Some(s) = sockets().first() {
            h.update(s.address_str.as_bytes());
            h.update(s.port.to_string().as_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// The to-tag tm puts in its local replies to `req`.
pub fn tm_totag(req: &SipMsg) -> String {
    format!("{}-{}", tag_prefix(), sl_suffix(req))
}

fn to_tag_of(reply: &[u8]) -> Vec<u8> {
    SipMsg::parse(reply)
        .ok()
        .and_then(|m| {
            m.to()
                .ok()
                .and_then(|t| t.tag)
                .map(|t| t.bytes(m.buf()).to_vec())
        })
        .unwrap_or_default()
}

/// Send `buf` upstream and remember it as the last reply (for retransmissions).
fn send_upstream_locked(c: &Cell, st: &mut CellState, code: u16, buf: &[u8], local: bool) {
    if let Some(dst) = st.uas_dst.to_sa() {
        send(st.uas_sock as usize, dst, buf);
        if super::callbacks::traces(st.msg_flags) {
            // Run by StateGuard::unlock_then_run_callbacks, once the lock is released.
            super::callbacks::queue_trace(super::callbacks::TraceEvent {
                dir: super::callbacks::TraceDir::ReplyOut,
                buf: buf.to_vec(),
                local: super::callbacks::sock_addr(st.uas_sock as usize),
                peer: dst,
                flags: st.msg_flags,
                avps: super::clone::avps_from_bytes(st.avps.as_bytes()),
            });
        }
    }
    let s = super::stats();
    if local {
        s.local.inc();
        st.flags |= T_UAS_LOCAL_LAST;
    } else {
        s.relayed.inc();
        st.flags &= !(T_UAS_LOCAL_LAST | T_ALL_LOCAL);
    }
    if let Some(b) = ShmStr::new(buf) {
        std::mem::replace(&mut st.uas_reply, b).free();
    }
    if code > st.uas_status || st.uas_status < 200 {
        st.uas_status = code;
    }
    if code > 100 && code < 200 && super::callbacks::provisional_wanted(st.msg_flags) {
        // Run by StateGuard::unlock_then_run_callbacks, once the lock is released.
        super::callbacks::queue_reply_out(c, st, code, buf);
    }
    if code >= 200 && st.flags & T_COMPLETED == 0 {
        st.flags |= T_COMPLETED;
        if super::callbacks::wants(st.msg_flags) {
            // Run by StateGuard::unlock_then_run_callbacks, once the lock is released.
            super::callbacks::queue_reply_out(c, st, code, buf);
        }
        if let Some(t) = ShmStr::new(&to_tag_of(buf)) {
            std::mem::replace(&mut st.uas_totag, t).free();
        }
        finalize_locked(c, st, code);
    }
}

/// Bookkeeping once a final reply went upstream: stats, UAS retransmissions, wait timer.
fn finalize_locked(c: &Cell, st: &mut CellState, code: u16) {
    super::uac::final_locked(st, code);
    let s = super::stats();
    match code / 100 {
        2 => s.x2.inc(),
        3 => s.x3.inc(),
        4 => s.x4.inc(),
        5 => s.x5.inc(),
        _ => s.x6.inc(),
    }
    let now = now_ms();
    let (t1, _) = P.t1_t2_of(st);
    if c.is_invite && code >= 300 && st.flags & T_UDP != 0 {
        st.uas_retr_iv = t1;
        st.uas_retr_at = now + u64::from(t1);
        st.wait_at = now + u64::from(st.fr_ms); // waiting for the ACK
        c.due(st.uas_retr_at);
    } else {
        st.wait_at = now + u64::from(P.wt_ms());
        c.due(st.wait_at);
    }
}

/// Re-send the last reply (a retransmitted request). A suspended INVITE not answered
/// yet gets a 100 Trying, so that its caller stops retransmitting (RFC 3261 §17.2.1).
pub fn resend_last(c: &CellRef) {
    let mut g = c.lock_state();
    let st = g.st();
    if st.uas_reply.is_empty() {
        let trying = c.is_invite && super::suspend::is_suspended(st);
        drop(g);
        if trying && let Some(req) = request_msg(c) {
            reply_local_if_none(c, &req, 100, "trying -- your call is important to us");
        }
        return;
    }
    if let Some(dst) = st.uas_dst.to_sa() {
        send(st.uas_sock as usize, dst, st.uas_reply.as_bytes());
    }
}

pub(crate) fn reply_local_locked(
    c: &Cell,
    st: &mut CellState,
    req: &SipMsg,
    code: u16,
    reason: &str,
) -> bool {
    if st.flags & T_COMPLETED != 0 && !(c.is_invite && (200..300).contains(&code)) {
        openser_core::log_err!("transaction already completed ({})", st.uas_status);
        return false;
    }
    let tag = tm_totag(req);
    let Ok(mut buf) = build_local_reply(req, code, reason, Some(&tag), &[], b"", None) else {
        return false;
    };
    if code > 100 && super::callbacks::reply_in_active() {
        // made from the request as forwarded: the reply-in hooks give it what the
        // relayed replies get (uac: the caller's From)
        buf = super::callbacks::local_reply_fixup(buf, st.avps.as_bytes());
    }
    send_upstream_locked(c, st, code, &buf, true);
    if code >= 200 {
        // A final local reply ends the forwarding: cancel what is pending.
        cancel::cancel_branches_locked(st, None);
    }
    true
}

/// t_reply on transaction `c` for its request `req`.
pub fn t_reply_msg(c: &CellRef, req: &SipMsg, code: u16, reason: &str) -> bool {
    let mut g = c.lock_state();
    let sent = reply_local_locked(c, g.st(), req, code, reason);
    g.unlock_then_run_callbacks();
    sent
}

/// The MI's `t_reply`: a reply to the transaction's request with the given To tag,
/// extra header lines (each CRLF-terminated) and body.
pub fn t_reply_with_body(
    c: &CellRef,
    code: u16,
    reason: &str,
    to_tag: &str,
    headers: &[&str],
    body: &[u8],
) -> bool {
    let Some(req) = request_msg(c) else {
        return false;
    };
    let mut g = c.lock_state();
    let st = g.st();
    if st.flags & T_COMPLETED != 0 && !(c.is_invite && (200..300).contains(&code)) {
        g.unlock_then_run_callbacks();
        return false;
    }
    let tag = if to_tag.is_empty() || to_tag == "." {
        tm_totag(&req)
    } else {
        to_tag.to_string()
    };
    let sent = match build_local_reply(&req, code, reason, Some(&tag), headers, body, None) {
        Ok(buf) => {
            send_upstream_locked(c, st, code, &buf, true);
            if code >= 200 {
                cancel::cancel_branches_locked(st, None);
            }
            true
        }
        Err(_) => false,
    };
    g.unlock_then_run_callbacks();
    sent
}

/// 100 Trying, unless some reply was already sent.
pub fn reply_local_if_none(c: &CellRef, req: &SipMsg, code: u16, reason: &str) {
    let mut g = c.lock_state();
    let st = g.st();
    if st.uas_status == 0 {
        reply_local_locked(c, st, req, code, reason);
    }
    g.unlock_then_run_callbacks();
}

/// Find the INVITE transaction a CANCEL or ACK refers to.
pub fn find_invite(msg: &SipMsg) -> Option<CellRef> {
    let k = request_key(msg)?;
    let hash = tm_hash(k.callid.of(msg.buf()), k.cseq_num.of(msg.buf()));
    let (r, v) = (P.ruri_matching(), P.via1_matching());
    find_in_entry(hash, |c| request_matches(c, msg, &k, Want::Invite, r, v))
}

/// The INVITE transaction a 2xx's end-to-end ACK belongs to (Call-ID, CSeq number,
/// From tag, and the To tag of the 2xx sent upstream), with its message flags, final
/// code and AVPs.
pub fn find_e2e_ack(msg: &SipMsg) -> Option<(u32, u16, openser_core::script::AvpList)> {
    let k = request_key(msg)?;
    let b = msg.buf();
    let hash = tm_hash(k.callid.of(b), k.cseq_num.of(b));
    let c = find_in_entry(hash, |c| {
        c.is_invite
            && c.k(c.key.callid) == k.callid.of(b)
            && c.k(c.key.cseq_num) == k.cseq_num.of(b)
            && c.k(c.key.from_tag) == k.from_tag.of(b)
    })?;
    let mut g = c.lock_state();
    let st = g.st();
    let to_tag = k.to_tag.of(b);
    if !(200..300).contains(&st.uas_status) || st.uas_totag.as_bytes() != to_tag {
        return None;
    }
    Some((
        st.msg_flags,
        st.uas_status,
        avps_from_bytes(st.avps.as_bytes()),
    ))
}

/// An ACK for our negative final reply: stops the reply retransmissions; true = absorb.
pub fn absorb_ack(msg: &SipMsg) -> bool {
    let Some(c) = find_invite(msg) else {
        return false;
    };
    let mut g = c.lock_state();
    let st = g.st();
    if st.uas_status < 300 {
        return false;
    }
    let tag = msg
        .to()
        .ok()
        .and_then(|t| t.tag)
        .map(|t| t.bytes(msg.buf()))
        .unwrap_or_default();
    if !st.uas_totag.is_empty() && st.uas_totag.as_bytes() != tag {
        return false;
    }
    if st.flags & T_ACKED == 0 {
        st.flags |= T_ACKED;
        st.uas_retr_at = 0;
        st.wait_at = now_ms() + u64::from(P.wt_ms());
        c.due(st.wait_at);
    }
    true
}

/// §16.7 selection among the final replies of the latest round (`first_branch` on):
/// 6xx first, then the lowest class; within a class the first. Returns (branch, code).
fn select_best(st: &CellState) -> Option<(usize, u16)> {
    let mut best: Option<(usize, u16)> = None;
    let rank = |code: u16| -> u16 {
        match code / 100 {
            6 => 0,
            2 => 1,
            c => c * 10 + if code == 503 { 9 } else { 0 },
        }
    };
    let first = (st.first_branch as usize).min(st.nr_branches as usize);
    for (i, b) in st.branches[..st.nr_branches as usize]
        .iter()
        .enumerate()
        .skip(first)
    {
        if b.last_code < 200 {
            continue;
        }
        match best {
            Some((_, bc)) if rank(bc) <= rank(b.last_code) => {}
            _ => best = Some((i, b.last_code)),
        }
    }
    best
}

/// The reason phrase of a reply tm makes itself for a branch without a reply of its
/// own: a timeout (408) or anything else (500).
fn local_reason(code: u16) -> &'static str {
    match code {
        408 => "Request Timeout",
        // a suspended INVITE canceled by its caller
        487 => "Request Terminated",
        _ => "Server Internal Error",
    }
}

/// Relay branch `i`'s stored reply (aggregating authentication challenges for
/// 401/407), or generate it locally when it was local (timeout).
fn relay_best_locked(c: &Cell, st: &mut CellState, i: usize, code: u16) {
    let b = &st.branches[i];
    if b.flags & B_LOCAL_REPLY != 0 || b.reply.is_empty() {
        let Some(req) = request_msg(c) else { return };
        reply_local_locked(c, st, &req, code, local_reason(code));
        return;
    }
    let Ok(mut m) = SipMsg::parse(b.reply.as_bytes()) else {
        return;
    };
    if code == 401 || code == 407 {
        let name = if code == 401 {
            "WWW-Authenticate"
        } else {
            "Proxy-Authenticate"
        };
        for (j, ob) in st.branches[..st.nr_branches as usize].iter().enumerate() {
            if j == i || (ob.last_code != 401 && ob.last_code != 407) || ob.reply.is_empty() {
                continue;
            }
            if let Ok(om) = SipMsg::parse(ob.reply.as_bytes()) {
                for v in om.headers_by_name(name) {
                    m.add_header_after_last(&format!("{name}: {v}\r\n"));
                }
            }
        }
    }
    if let Ok(buf) = build_reply_forward(&m) {
        send_upstream_locked(c, st, code, &buf, false);
    }
}

/// Whether every branch has a final reply.
pub(crate) fn all_final(st: &CellState) -> bool {
    st.branches[..st.nr_branches as usize]
        .iter()
        .all(|b| b.flags & B_FINAL != 0)
}

thread_local! {
    /// While a failure_route runs: the branch whose reply was picked (1.2's
    /// `t_get_picked_branch`).
    static PICKED: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// One branch of the current transaction as other modules see it from failure_route
/// (uac's `uac_auth`, uac_redirect's `get_redirects`).
#[derive(Clone, Debug)]
pub struct BranchInfo {
    /// The branch's R-URI.
    pub uri: String,
    /// Its final code (0 while pending; 408 for a timeout).
    pub code: u16,
    /// The negative final reply it received (None for a local one: a timeout).
    pub reply: Option<Vec<u8>>,
    /// The request as sent on the branch.
    pub request: Vec<u8>,
}

/// In failure_route: the index of the branch whose reply was picked.
pub fn picked_branch() -> Option<usize> {
    PICKED.with(std::cell::Cell::get)
}

/// The branches of the current transaction, in the order they were created.
pub fn t_branches() -> Vec<BranchInfo> {
    let Some(c) = super::current() else {
        return Vec::new();
    };
    let mut g = c.lock_state();
    let st = g.st();
    st.branches[..st.nr_branches as usize]
        .iter()
        .map(|b| BranchInfo {
            uri: String::from_utf8_lossy(b.uri.as_bytes()).into_owned(),
            code: b.last_code,
            reply: (b.flags & B_LOCAL_REPLY == 0 && !b.reply.is_empty())
                .then(|| b.reply.as_bytes().to_vec()),
            request: b.request.as_bytes().to_vec(),
        })
        .collect()
}

/// Run failure_route `route` for transaction `c` whose winning branch is `i` (no lock
/// held). New branches may be added by t_relay in the route.
fn run_failure(c: &CellRef, route: u32, i: usize, code: u16) {
    let (uri, avps, flags) = {
        let mut g = c.lock_state();
        let st = g.st();
        let b = &st.branches[i];
        (
            String::from_utf8_lossy(b.uri.as_bytes()).into_owned(),
            avps_from_bytes(st.avps.as_bytes()),
            st.msg_flags,
        )
    };
    let Some(mut msg) = request_msg(c) else {
        return;
    };
    if !uri.is_empty() {
        msg.new_uri = Some(uri);
    }
    msg.flags = flags;
    let mut ctx = Ctx::new(&mut msg, route::FAILURE_ROUTE);
    ctx.avps = avps;
    ctx.reply_code = u32::from(code);
    let prev = super::swap_current(Some(c));
    super::take_pending();
    let prev_picked = PICKED.with(|p| p.replace(Some(i)));
    run_route(RouteKind::Failure, route as usize, &mut ctx);
    PICKED.with(|p| p.set(prev_picked));
    let pend = super::take_pending();
    super::swap_current(prev.as_ref());
    let avps = avps_to_bytes(&ctx.avps);
    let mflags = ctx.msg.flags;
    let mut g = c.lock_state();
    let st = g.st();
    if pend[0] != 0 {
        st.on_failure = pend[0];
    }
    if pend[1] != 0 {
        st.on_reply = pend[1];
    }
    st.msg_flags = mflags;
    if let Some(a) = ShmStr::new(&avps) {
        std::mem::replace(&mut st.avps, a).free();
    }
}

/// The transaction-callback event for a negative outcome of branch `i` (lock held).
fn failure_event_locked(
    c: &Cell,
    st: &CellState,
    i: usize,
    code: u16,
) -> Option<super::callbacks::TmEvent> {
    let b = &st.branches[i];
    let (reason, tag) = if b.flags & B_LOCAL_REPLY != 0 || b.reply.is_empty() {
        (local_reason(code).to_string(), String::new())
    } else {
        super::callbacks::reason_and_totag(b.reply.as_bytes())
    };
    // the last branch's R-URI, as 1.2's acc reports a missed call
    let uri = super::callbacks::branch_ruri(st, code)
        .unwrap_or_else(|| String::from_utf8_lossy(b.uri.as_bytes()).into_owned());
    super::callbacks::event_locked(
        c,
        st,
        super::callbacks::TmEventKind::Failure,
        code,
        reason,
        tag,
        Some(uri),
    )
}

/// After a branch got its final reply: when all branches are final and nothing went
/// upstream yet, run failure_route (if armed) or relay the best reply. Consumes the
/// lock: it is released, then the transaction callbacks run.
pub fn complete<'a>(c: &'a CellRef, g: StateGuard<'a>) {
    complete_locked(c, g).unlock_then_run_callbacks();
}

fn complete_locked<'a>(c: &'a CellRef, mut g: StateGuard<'a>) -> StateGuard<'a> {
    for _ in 0..=MAX_BRANCHES {
        let st = g.st();
        if st.flags & (T_COMPLETED | T_IN_FAILURE) != 0 || !all_final(st) {
            return g;
        }
        if super::dns_failover::failover_locked(c, st) > 0 {
            return g;
        }
        let Some((i, code)) = select_best(st) else {
            if st.flags & T_LOCAL == 0 {
                if let Some(req) = request_msg(c) {
                    reply_local_locked(c, st, &req, 500, "No destination could be reached (TM)");
                }
            } else {
                finalize_locked(c, st, 500);
                st.flags |= T_COMPLETED;
            }
            return g;
        };
        if st.flags & T_LOCAL != 0 {
            st.flags |= T_COMPLETED;
            finalize_locked(c, st, code);
            return g;
        }
        if st.on_failure != 0 && code >= 300 {
            let route = st.on_failure - 1;
            st.on_failure = 0;
            st.flags |= T_IN_FAILURE | T_ON_FAIL_RAN;
            let nr_before = st.nr_branches;
            let ev = if super::callbacks::wants(st.msg_flags) {
                failure_event_locked(c, st, i, code)
            } else {
                None
            };
            g.unlock_then_run_callbacks();
            if let Some(mut ev) = ev {
                let clear = super::callbacks::run_hooks(&mut ev);
                if clear != 0 {
                    c.lock_state().st().msg_flags &= !clear;
                }
            }
            run_failure(c, route, i, code);
            g = c.lock_state();
            let st = g.st();
            st.flags &= !T_IN_FAILURE;
            if st.nr_branches == nr_before {
                // No new branch: a t_on_failure re-armed without t_relay has no effect.
                st.on_failure = 0;
            }
            continue;
        }
        relay_best_locked(c, st, i, code);
        return g;
    }
    // Bounded loop exhausted (every round added branches that failed at once).
    let st = g.st();
    if st.flags & T_COMPLETED == 0
        && let Some((i, code)) = select_best(st)
    {
        relay_best_locked(c, st, i, code);
    }
    g
}

/// The reply hook: replies to our branches are processed here (true = consumed).
pub fn reply_hook(reply: &mut SipMsg) -> bool {
    super::clear_current();
    let s = super::stats();
    let Some((hash, label, br)) = reply_ids(reply) else {
        return false;
    };
    let Some(c) = find_in_entry(hash, |c| c.label == label) else {
        return false;
    };
    s.received.inc();
    let Some(code) = reply.status() else {
        return true;
    };
    let cseq_m = reply.cseq().map(|c| c.method).unwrap_or(Method::Other);
    if cseq_m == Method::Cancel {
        return true; // reply to our CANCEL
    }
    let br = br as usize;
    // Per-transaction onreply_route.
    let (on_reply, trace, reply_in) = {
        let mut g = c.lock_state();
        let st = g.st();
        let reply_in = super::callbacks::reply_in_active()
            .then(|| super::clone::avps_from_bytes(st.avps.as_bytes()));
        let trace = super::callbacks::traces(st.msg_flags).then(|| {
            (
                st.msg_flags,
                super::clone::avps_from_bytes(st.avps.as_bytes()),
            )
        });
        (st.on_reply, trace, reply_in)
    };
    if let Some(avps) = reply_in {
        super::callbacks::run_reply_in(reply, &avps);
    }
    if let Some((flags, avps)) = trace {
        super::callbacks::trace_now(&super::callbacks::TraceEvent {
            dir: super::callbacks::TraceDir::ReplyIn,
            buf: reply.buf().to_vec(),
            local: reply.rcv.dst,
            peer: reply.rcv.src,
            flags,
            avps,
        });
    }
    let mut dropped = false;
    if on_reply != 0 {
        let mut ctx = Ctx::new(reply, route::ONREPLY_ROUTE);
        ctx.reply_code = u32::from(code);
        let prev = super::swap_current(Some(&c));
        run_route(RouteKind::OnReply, (on_reply - 1) as usize, &mut ctx);
        dropped = ctx.drop_requested();
        super::swap_current(prev.as_ref());
    }
    // What the onreply_route changed (append_hf, change_reply_status, …) is part of
    // the reply from here on: a negative reply is stored with it for the relay that may
    // come later, and the status is the one it has now. A 1xx or 2xx keeps its class
    // (textopsx refuses such a change already).
    let code = if on_reply != 0 && !reply.lumps.is_empty() {
        match openser_core::msg::apply_changes(reply) {
            Ok(()) => match reply.status() {
                Some(new) if new / 100 == code / 100 || (new >= 300 && code >= 300) => new,
                _ => code,
            },
            Err(e) => {
                openser_core::log_dbg!("reply changes kept as lumps: {e}");
                code
            }
        }
    } else {
        code
    };
    let mut g = c.lock_state();
    if reply_locked(&c, g.st(), reply, code, br, dropped) {
        complete(&c, g);
    } else {
        g.unlock_then_run_callbacks();
    }
    true
}

/// A reply of branch `br` under the cell's reply lock: relay provisional and 2xx
/// replies, record negative ones. True when the branch became final with a negative
/// reply, so the transaction may be complete (the caller runs [`complete`]).
fn reply_locked(
    c: &CellRef,
    st: &mut CellState,
    reply: &SipMsg,
    code: u16,
    br: usize,
    dropped: bool,
) -> bool {
    let s = super::stats();
    if br >= st.nr_branches as usize || st.suspended_branch as usize == br + 1 {
        // no such branch, or the blind branch of a suspension (nothing was sent on it)
        return false;
    }
    let now = now_ms();
    let local_t = st.flags & T_LOCAL != 0;
    if code < 200 {
        let b = &mut st.branches[br];
        if b.flags & B_FINAL != 0 {
            return false;
        }
        let first = b.flags & B_PROVISIONAL == 0;
        b.flags |= B_PROVISIONAL;
        b.last_code = b.last_code.max(code);
        if c.is_invite {
            b.retr_at = 0;
            if first || P.restart_fr() {
                b.fr_at = now + u64::from(st.fr_inv_ms);
                c.due(b.fr_at);
            }
        } else {
            b.retr_iv = if st.t2_ms != 0 { st.t2_ms } else { P.t1_t2().1 };
        }
        let want_cancel = b.flags & B_CANCEL_PENDING != 0 || st.flags & T_CANCELED != 0;
        if want_cancel && c.is_invite {
            cancel::cancel_branch_locked(st, br);
        }
        if !dropped
            && !local_t
            && code > 100
            && st.flags & T_COMPLETED == 0
            && let Ok(buf) = build_reply_forward(reply)
        {
            send_upstream_locked(c, st, code, &buf, false);
        }
        return false;
    }
    // Final reply.
    let already = st.branches[br].flags & B_FINAL != 0 && st.branches[br].last_code >= 200;
    if local_t && (200..300).contains(&code) {
        super::uac::local_2xx_locked(c, st, br, reply);
    }
    if already {
        if c.is_invite
            && (200..300).contains(&code)
            && !local_t
            && let (Ok(buf), Some(dst)) = (build_reply_forward(reply), st.uas_dst.to_sa())
        {
            send(st.uas_sock as usize, dst, &buf);
            s.relayed.inc();
        }
        return false;
    }
    {
        let b = &mut st.branches[br];
        b.flags |= B_FINAL;
        b.flags &= !B_LOCAL_REPLY;
        b.last_code = code;
        b.retr_at = 0;
        b.fr_at = 0;
        if c.is_invite
            && code >= 300
            && let Some(ack) = cancel::to_line(reply)
                .and_then(|t| cancel::build_cancel_ack(b.request.as_bytes(), Some(&t)))
            && let Some(dst) = b.dst.to_sa()
        {
            send(b.sock as usize, dst, &ack);
        }
    }
    if (200..300).contains(&code) {
        if !local_t {
            if let Ok(buf) = build_reply_forward(reply) {
                send_upstream_locked(c, st, code, &buf, false);
            }
        } else if st.flags & T_COMPLETED == 0 {
            st.flags |= T_COMPLETED;
            finalize_locked(c, st, code);
        }
        if P.local_cancel_reason() {
            cancel::set_reason_locked(st, &cancel::local_reason_line(code, ""));
        }
        cancel::cancel_branches_locked(st, Some(br));
        return false;
    }
    if let Some(b) = ShmStr::new(reply.buf()) {
        std::mem::replace(&mut st.branches[br].reply, b).free();
    }
    if code >= 600 {
        if P.local_cancel_reason() {
            let line = cancel::local_reason_line(code, reply.reason().unwrap_or(""));
            cancel::set_reason_locked(st, &line);
        }
        cancel::cancel_branches_locked(st, Some(br));
    }
    true
}

/// Timer: branch `i` timed out (fr_timer): a local 408 for it; CANCEL if it had a 1xx.
pub fn branch_timeout_locked(c: &Cell, st: &mut CellState, i: usize) {
    let b = &mut st.branches[i];
    b.flags |= B_FINAL | B_LOCAL_REPLY;
    b.last_code = 408;
    b.retr_at = 0;
    b.fr_at = 0;
    let had_1xx = b.flags & B_PROVISIONAL != 0;
    if c.is_invite && had_1xx {
        cancel::cancel_branch_locked(st, i);
    }
}
