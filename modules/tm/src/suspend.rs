//! Suspended transactions (SIP Router 3.1's `t_suspend`/`t_continue`, offered by tmx):
//! a request route puts its transaction aside without replying or forwarding, and
//! later any process (a timer_route, an mqueue consumer, an MI command) runs a named
//! route on the transaction's request, in the transaction's context.
//!
//! A suspension is a *blind branch*: a branch slot with no request and no destination
//! whose fr_at is the suspension's timeout. So everything else tm does applies
//! unchanged: the timer times it out after `fr_timer` (as for a branch without a
//! provisional reply) and the transaction ends with a local 408 (or its failure_route),
//! a CANCEL of the INVITE finishes it as 487, a retransmission of the request is
//! absorbed (an INVITE gets a 100 Trying while nothing was answered).
//!
//! Invariants and locking:
//! * `CellState::suspended_branch` and the blind branch are read and written only
//!   under the cell's reply lock. The transaction is suspended while that branch is
//!   not final; whoever makes it final (t_continue, the timer, a CANCEL) does so under
//!   the lock and after checking it was not, so exactly one of them wins: a second
//!   `t_continue`, or one after the timeout or the CANCEL, gets −1.
//! * The continue route runs with no tm lock held (as failure_route does): the reply
//!   lock is taken twice, briefly, before (to end the suspension and copy the AVPs and
//!   flags out) and after (to store them back and, when the route left nothing
//!   pending and nothing was answered, to reply 500). The cell cannot go away in
//!   between: `continue_cell` holds a `CellRef` (a reference counted in the cell), and
//!   the timer has nothing to do for it (no deadline is armed until the route relays
//!   or replies).
//! * The request the route sees is the one kept in the cell (immutable after the cell
//!   was created, read without the lock as everywhere in tm) or, when the script
//!   changed the request between `t_newtran` and `t_suspend`, the changed copy kept in
//!   the state (`resume_req`, under the lock); with the message flags and AVPs kept in
//!   the state; the routes armed by `t_on_*` before `t_suspend` stay
//!   armed and the route may re-arm them.

use openser_core::cfg::ast::RouteKind;
use openser_core::parser::Method;
use openser_core::route;
use openser_core::script::{Ctx, run_route};
use shm::ShmStr;

use super::clone::{avps_from_bytes, avps_to_bytes, message_as_received, request_msg};
use super::fwd::{self, now_ms};
use super::h_table::*;
use super::reply;

/// What `t_suspend` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspend {
    /// Suspended: the transaction's hash index and label (`$T(id_index)`,
    /// `$T(id_label)`).
    Suspended { index: u32, label: u32 },
    /// A retransmission of a request whose transaction exists (absorbed).
    Retrans,
    /// Not suspended (logged).
    Failed,
}

/// Whether the transaction is suspended now (lock held).
pub fn is_suspended(st: &CellState) -> bool {
    let i = st.suspended_branch as usize;
    i != 0
        && i <= st.nr_branches as usize
        && st
            .branches
            .get(i - 1)
            .is_some_and(|b| b.flags & B_FINAL == 0)
}

/// `t_suspend()`: create the request's transaction if needed and suspend it: no
/// reply, no branch, the transaction waits for `t_continue` at most `fr_timer`
/// (then 408). The routes armed by `t_on_*`, the `t_set_*` settings, the message flags
/// and the AVPs go into the transaction.
pub fn suspend(ctx: &mut Ctx) -> Suspend {
    if ctx.route_type & route::REQUEST_ROUTE == 0 {
        openser_core::log_err!("t_suspend: only a request route can suspend its request");
        return Suspend::Failed;
    }
    if matches!(ctx.msg.method(), Method::Ack | Method::Cancel) {
        openser_core::log_err!("t_suspend: an ACK or a CANCEL cannot be suspended");
        return Suspend::Failed;
    }
    // a transaction created before (t_newtran) keeps the request as it was then: the
    // changes made since are kept for t_continue (what Kamailio's t_save_lumps is for)
    let existed = super::current().is_some();
    let c = match fwd::new_tran(ctx.msg) {
        fwd::NewTran::New(c) => c,
        fwd::NewTran::Retrans(_) => return Suspend::Retrans,
        fwd::NewTran::Err => return Suspend::Failed,
    };
    let fr = super::avp_secs(ctx, true);
    let avps = avps_to_bytes(&ctx.avps);
    let changed =
        (existed && !ctx.msg.lumps.is_empty()).then(|| ctx.msg.lumps.apply(ctx.msg.buf()));
    let mflags = ctx.msg.flags;
    let mut g = c.lock_state();
    let st = g.st();
    if st.flags & T_COMPLETED != 0 || st.uas_status >= 200 {
        drop(g);
        openser_core::log_err!("t_suspend: the transaction was answered already");
        return Suspend::Failed;
    }
    if is_suspended(st) {
        drop(g);
        openser_core::log_err!("t_suspend: the transaction is suspended already");
        return Suspend::Failed;
    }
    let i = st.nr_branches as usize;
    if i >= MAX_BRANCHES {
        drop(g);
        openser_core::log_err!("t_suspend: maximum number of branches exceeded");
        return Suspend::Failed;
    }
    if let Some(f) = fr {
        st.fr_ms = f;
    }
    super::apply_settings(st);
    let pend = super::take_pending();
    st.on_failure = pend[0];
    st.on_reply = pend[1];
    st.on_branch = pend[2];
    st.msg_flags = mflags;
    if let Some(a) = ShmStr::new(&avps) {
        std::mem::replace(&mut st.avps, a).free();
    }
    if let Some(r) = changed.as_deref().and_then(ShmStr::new) {
        std::mem::replace(&mut st.resume_req, r).free();
    }
    let fr_at = now_ms() + u64::from(st.fr_ms);
    st.nr_branches += 1;
    let b = &mut st.branches[i];
    b.flags = 0;
    b.last_code = 0;
    b.retr_at = 0;
    b.retr_iv = 0;
    b.fr_at = fr_at;
    st.suspended_branch = i as u32 + 1;
    // the blind branch's timeout replaces new_tran's safety net
    st.wait_at = 0;
    c.due(fr_at);
    drop(g);
    Suspend::Suspended {
        index: c.hash_index,
        label: c.label,
    }
}

/// End the suspension of a suspended transaction because its INVITE was canceled
/// (lock held): the blind branch is final with a local 487. True when it was
/// suspended; the caller then runs `reply::complete`, which answers the INVITE 487 (or
/// runs its failure_route).
pub fn cancel_locked(st: &mut CellState) -> bool {
    if !is_suspended(st) {
        return false;
    }
    let b = &mut st.branches[st.suspended_branch as usize - 1];
    b.flags |= B_FINAL | B_LOCAL_REPLY;
    b.last_code = 487;
    b.fr_at = 0;
    true
}

/// `t_continue(index, label, route)`: run request route `route` (its index) on the
/// suspended transaction `index`:`label`, in its context. 1 when the route ran; −1
/// (logged) when there is no such transaction or it is not suspended (continued
/// already, timed out, canceled).
pub fn continue_cell(index: u32, label: u32, route_idx: usize) -> i32 {
    let Some(c) = find_in_entry(index, |c| c.label == label) else {
        openser_core::log_err!("t_continue: no transaction {index}:{label}");
        return -1;
    };
    let (avps, flags, armed, changed) = {
        let mut g = c.lock_state();
        let st = g.st();
        if !is_suspended(st) {
            drop(g);
            openser_core::log_err!(
                "t_continue: transaction {index}:{label} is not suspended (continued, timed out or canceled)"
            );
            return -1;
        }
        let b = &mut st.branches[st.suspended_branch as usize - 1];
        b.flags |= B_FINAL | B_LOCAL_REPLY;
        b.last_code = 0;
        b.fr_at = 0;
        (
            avps_from_bytes(st.avps.as_bytes()),
            st.msg_flags,
            [st.on_failure, st.on_reply, st.on_branch],
            (!st.resume_req.is_empty()).then(|| st.resume_req.as_bytes().to_vec()),
        )
    };
    let msg = match &changed {
        Some(buf) => message_as_received(&c, buf),
        None => request_msg(&c),
    };
    let Some(mut msg) = msg else {
        openser_core::log_err!("t_continue: the request of {index}:{label} cannot be parsed");
        return -1;
    };
    msg.flags = flags;
    let saved = super::save_script_state();
    super::set_current(&c);
    // what was armed before t_suspend stays armed (a t_relay in the route keeps it)
    super::set_pending(armed);
    let (avps, mflags) = {
        let mut ctx = Ctx::new(&mut msg, route::REQUEST_ROUTE);
        ctx.avps = avps;
        run_route(RouteKind::Request, route_idx, &mut ctx);
        (avps_to_bytes(&ctx.avps), ctx.msg.flags)
    };
    let pend = super::take_pending();
    super::restore_script_state(saved);
    let mut g = c.lock_state();
    let st = g.st();
    st.msg_flags = mflags;
    if let Some(a) = ShmStr::new(&avps) {
        std::mem::replace(&mut st.avps, a).free();
    }
    // routes armed in the route without a t_relay after them
    if pend[0] != 0 {
        st.on_failure = pend[0];
    }
    if pend[1] != 0 {
        st.on_reply = pend[1];
    }
    if st.flags & (T_COMPLETED | T_IN_FAILURE) == 0 && st.uas_status < 200 && reply::all_final(st) {
        // Nothing forwarded, nothing answered by tm: as Kamailio's t_continue, 500.
        openser_core::log_warn!(
            "t_continue: the route neither relayed nor replied (t_reply) to {index}:{label}: 500"
        );
        reply::reply_local_locked(&c, st, &msg, 500, "Server Internal Error");
    }
    g.unlock_then_run_callbacks();
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blind_branch_decides_the_suspension() {
        let mut st = CellState::default();
        assert!(!is_suspended(&st), "never suspended");
        st.nr_branches = 2;
        st.suspended_branch = 2;
        assert!(is_suspended(&st));
        // a CANCEL ends it once, with 487 on the blind branch only
        assert!(cancel_locked(&mut st));
        assert_eq!(st.branches[1].last_code, 487);
        assert_eq!(st.branches[1].flags & B_FINAL, B_FINAL);
        assert_eq!(st.branches[0].flags, 0);
        assert!(!is_suspended(&st));
        assert!(!cancel_locked(&mut st));
        // a broken index is never taken for a suspension
        st.suspended_branch = 3;
        assert!(!is_suspended(&st));
        st.suspended_branch = MAX_BRANCHES as u32 + 5;
        st.nr_branches = MAX_BRANCHES as u32 + 9;
        assert!(!is_suspended(&st));
    }
}
