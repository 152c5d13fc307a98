//! Transaction callbacks for other modules (acc): a reduced form of OpenSER's
//! `TMCB_RESPONSE_OUT` and `TMCB_ON_FAILURE_RO`.
//!
//! * [`TmEventKind::ReplyOut`]: the transaction's final reply (first ≥200) was sent
//!   upstream, relayed or local. Recorded while the cell's reply lock is held and run
//!   once the lock is released (`StateGuard::unlock_then_run_callbacks`), so hooks may
//!   block (DB) and may lock the cell again.
//! * [`TmEventKind::Failure`]: a negative outcome is about to run failure_route; run
//!   without any lock, before the route.
//! * [`TmEventKind::Provisional`] (only after [`want_provisional`]): a provisional
//!   reply (>100) was relayed upstream; queued under the reply lock and run after it,
//!   as `ReplyOut` is (acc's `early_media`).
//! * [`TmEventKind::E2eAck`] (only after [`want_e2e_ack`]): the end-to-end ACK of a
//!   2xx the transaction sent upstream reached `t_relay` (1.2's `TMCB_E2EACK_IN`,
//!   acc's `report_ack`); the event's request is the ACK, the code the transaction's
//!   final one. Run without any lock.
//!
//! The request of a `ReplyOut`/`Failure` event has the R-URI of a branch, as 1.2's
//! acc sets it: for a negative outcome the last branch's, for a 2xx the answering
//! branch's.
//!
//! A hook gets the transaction's request (message flags = the transaction's flags; the
//! R-URI as said above), the code, reason and to-tag of the
//! reply, and the transaction's AVPs; it returns message flags to **reset** on the
//! transaction (acc resets its missed-call flags).
//!
//! Message tracing (siptrace, 1.2's `TMCB_REQUEST_BUILT`/`TMCB_RESPONSE_IN`/
//! `TMCB_RESPONSE_OUT`): [`register_trace`] hooks see every request sent on a branch,
//! every reply received for the transaction and every reply sent upstream, with the
//! bytes and the addresses, for transactions carrying one of their flags. They run
//! with no tm lock held: replies sent upstream are queued under the reply lock and
//! run with the other callbacks by `StateGuard::unlock_then_run_callbacks`.
//!
//! Hooks are registered in mod_init (before fork) with the message flags they care
//! about (OpenSER's acc registers its callbacks only on flagged transactions): an event
//! is built only for a transaction carrying one of them. With none registered, or for
//! an unflagged transaction, the cost on tm's paths is one relaxed atomic load.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, Ordering};

use openser_core::state::Registry;

use openser_core::parser::SipMsg;
use openser_core::script::AvpList;

use super::clone::{avps_from_bytes, request_msg};
use super::h_table::{Cell, CellRef, CellState};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TmEventKind {
    /// The final reply went upstream.
    ReplyOut,
    /// failure_route is about to run for a negative outcome.
    Failure,
    /// A provisional reply went upstream.
    Provisional,
    /// The end-to-end ACK of the 2xx.
    E2eAck,
}

pub struct TmEvent {
    pub kind: TmEventKind,
    /// The transaction's request (flags = transaction message flags).
    pub req: SipMsg,
    pub code: u16,
    pub reason: String,
    pub to_tag: String,
    pub avps: AvpList,
}

/// A hook; returns the message flags (bit mask) to reset on the transaction.
pub type TmHook = fn(&mut TmEvent) -> u32;

/// Union of the registered hooks' flag masks (0 = no hook).
static MASK: AtomicU32 = AtomicU32::new(0);
static HOOKS: Registry<TmHook> = Registry::new();

thread_local! {
    static QUEUE: RefCell<Vec<(CellRef, TmEvent)>> = const { RefCell::new(Vec::new()) };
    static TRACE_QUEUE: RefCell<Vec<TraceEvent>> = const { RefCell::new(Vec::new()) };
}

/// What a trace hook sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceDir {
    /// a request sent on a branch (each branch once, not retransmissions)
    RequestOut,
    /// a reply received for the transaction
    ReplyIn,
    /// a reply sent upstream (relayed or local)
    ReplyOut,
}

pub struct TraceEvent {
    pub dir: TraceDir,
    /// the message as it went out or came in
    pub buf: Vec<u8>,
    /// our socket's address
    pub local: std::net::SocketAddr,
    /// the other side
    pub peer: std::net::SocketAddr,
    /// the transaction's message flags and AVPs
    pub flags: u32,
    pub avps: AvpList,
}

pub type TraceHook = fn(&TraceEvent);

static TRACE_MASK: AtomicU32 = AtomicU32::new(0);
static TRACE_HOOKS: Registry<TraceHook> = Registry::new();

/// Register a trace hook for transactions whose message flags intersect `flags`
/// (mod_init, before fork).
pub fn register_trace(h: TraceHook, flags: u32) {
    if flags == 0 {
        return;
    }
    TRACE_HOOKS.lock().push(h);
    TRACE_MASK.fetch_or(flags, Ordering::Release);
}

/// Whether a transaction with message flags `msg_flags` is traced.
#[inline]
pub fn traces(msg_flags: u32) -> bool {
    TRACE_MASK.load(Ordering::Relaxed) & msg_flags != 0
}

/// Run the trace hooks now (no tm lock held).
pub(super) fn trace_now(ev: &TraceEvent) {
    let hooks: Vec<TraceHook> = TRACE_HOOKS.lock().clone();
    for h in hooks {
        h(ev);
    }
}

/// Queue a trace event (reply lock held); run by [`flush`].
pub(super) fn queue_trace(ev: TraceEvent) {
    TRACE_QUEUE.with(|q| q.borrow_mut().push(ev));
}

/// The address of listen socket `sock`.
pub(super) fn sock_addr(sock: usize) -> std::net::SocketAddr {
    openser_core::transport::socket::sockets()
        .get(sock)
        .map(|s| s.addr)
        .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Register a hook for transactions whose message flags intersect `flags` (mod_init,
/// before fork). A hook registered with no flags is never called.
pub fn register(h: TmHook, flags: u32) {
    if flags == 0 {
        return;
    }
    HOOKS.lock().push(h);
    MASK.fetch_or(flags, Ordering::Release);
}

static PROVISIONAL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static E2E_ACK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Ask for [`TmEventKind::Provisional`] events (mod_init, before fork).
pub fn want_provisional() {
    PROVISIONAL.store(true, Ordering::Release);
}

/// Ask for [`TmEventKind::E2eAck`] events (mod_init, before fork).
pub fn want_e2e_ack() {
    E2E_ACK.store(true, Ordering::Release);
}

#[inline]
pub(super) fn provisional_wanted(msg_flags: u32) -> bool {
    PROVISIONAL.load(Ordering::Relaxed) && wants(msg_flags)
}

#[inline]
pub(super) fn e2e_ack_wanted() -> bool {
    E2E_ACK.load(Ordering::Relaxed) && active()
}

/// Whether any hook is registered.
#[inline]
pub fn active() -> bool {
    MASK.load(Ordering::Relaxed) != 0
}

/// Whether a transaction with message flags `msg_flags` gets events (the cheap check
/// on tm's paths).
#[inline]
pub fn wants(msg_flags: u32) -> bool {
    MASK.load(Ordering::Relaxed) & msg_flags != 0
}

/// `(reason, to-tag)` of a reply buffer.
pub fn reason_and_totag(reply: &[u8]) -> (String, String) {
    let line_end = reply
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(reply.len());
    let line = String::from_utf8_lossy(&reply[..line_end]);
    let reason = line.splitn(3, ' ').nth(2).unwrap_or("").trim().to_string();
    let tag = SipMsg::parse(reply)
        .ok()
        .and_then(|m| {
            m.to()
                .ok()
                .and_then(|t| t.tag)
                .map(|t| String::from_utf8_lossy(t.bytes(m.buf())).into_owned())
        })
        .unwrap_or_default();
    (reason, tag)
}

/// Build an event for cell `c` (its state `st` locked).
pub(super) fn event_locked(
    c: &Cell,
    st: &CellState,
    kind: TmEventKind,
    code: u16,
    reason: String,
    to_tag: String,
    ruri: Option<String>,
) -> Option<TmEvent> {
    let mut req = request_msg(c)?;
    req.flags = st.msg_flags;
    if let Some(u) = ruri.filter(|u| !u.is_empty()) {
        req.new_uri = Some(u);
    }
    Some(TmEvent {
        kind,
        req,
        code,
        reason,
        to_tag,
        avps: avps_from_bytes(st.avps.as_bytes()),
    })
}

/// The R-URI an event for a reply `code` carries: the last branch's for a negative
/// one, the answering branch's for a 2xx (None: the request's own).
pub(super) fn branch_ruri(st: &CellState, code: u16) -> Option<String> {
    let branches = &st.branches[..st.nr_branches as usize];
    let b = if code >= 300 {
        branches.last()
    } else {
        branches.iter().find(|b| b.last_code == code)
    }?;
    Some(String::from_utf8_lossy(b.uri.as_bytes()).into_owned()).filter(|u| !u.is_empty())
}

/// Queue a ReplyOut (or, `code` < 200, Provisional) event (reply lock held); run by
/// [`flush`] after unlocking.
pub(super) fn queue_reply_out(c: &Cell, st: &CellState, code: u16, buf: &[u8]) {
    let (reason, tag) = reason_and_totag(buf);
    let kind = if code < 200 {
        TmEventKind::Provisional
    } else {
        TmEventKind::ReplyOut
    };
    let ruri = branch_ruri(st, code);
    if let Some(ev) = event_locked(c, st, kind, code, reason, tag, ruri) {
        let r = CellRef::take(c);
        QUEUE.with(|q| q.borrow_mut().push((r, ev)));
    }
}

/// Run the hooks on `ev`; the union of the flags they want reset.
pub fn run_hooks(ev: &mut TmEvent) -> u32 {
    let hooks: Vec<TmHook> = HOOKS.lock().clone();
    let mut clear = 0;
    for h in hooks {
        clear |= h(ev);
    }
    clear
}

/// Whether events wait to be run by [`flush`].
pub(super) fn queued() -> bool {
    QUEUE.with(|q| !q.borrow().is_empty())
        || TRACE_QUEUE.with(|q| !q.borrow().is_empty())
        || super::uac::queued()
}

/// Run queued events (no tm lock held by this process).
pub(super) fn flush() {
    while let Some(ev) = TRACE_QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        (!q.is_empty()).then(|| q.remove(0))
    }) {
        trace_now(&ev);
    }
    super::uac::flush();
    if !active() {
        return;
    }
    loop {
        let Some((c, mut ev)) = QUEUE.with(|q| q.borrow_mut().pop()) else {
            return;
        };
        let clear = run_hooks(&mut ev);
        if clear != 0 {
            let mut g = c.lock_state();
            g.st().msg_flags &= !clear;
        }
    }
}

/// A hook on every reply received for a transaction (1.2's `TMCB_RESPONSE_IN`), run
/// before the onreply_route with no tm lock held: it may add lumps to the reply, which
/// are applied when tm relays it. It gets the transaction's AVPs (a module marks the
/// transactions it cares about with an AVP of its own). It also sees the replies tm
/// makes itself (but 100), which are built from the request as forwarded: those under
/// the cell's reply lock, so a hook must not block nor use tm.
pub type ReplyInHook = fn(&mut SipMsg, &AvpList);

static REPLY_IN: Registry<ReplyInHook> = Registry::new();
static REPLY_IN_ANY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Register a reply-in hook (mod_init, before fork).
pub fn register_reply_in(h: ReplyInHook) {
    REPLY_IN.lock().push(h);
    REPLY_IN_ANY.store(true, Ordering::Release);
}

/// Whether a reply-in hook is registered (the cheap check on the reply path).
#[inline]
pub fn reply_in_active() -> bool {
    REPLY_IN_ANY.load(Ordering::Relaxed)
}

/// A local reply `buf` passed through the reply-in hooks (unchanged when it does not
/// parse or no hook changes it).
pub(super) fn local_reply_fixup(buf: Vec<u8>, avps: &[u8]) -> Vec<u8> {
    let Ok(mut m) = SipMsg::parse(&buf) else {
        return buf;
    };
    run_reply_in(&mut m, &avps_from_bytes(avps));
    if m.lumps.is_empty() {
        return buf;
    }
    m.lumps.apply(m.buf())
}

/// Run the reply-in hooks on `reply`.
pub(super) fn run_reply_in(reply: &mut SipMsg, avps: &AvpList) {
    let hooks: Vec<ReplyInHook> = REPLY_IN.lock().clone();
    for h in hooks {
        h(reply, avps);
    }
}

/// A hook on a request that has just created a transaction in request_route
/// (`t_relay`), before its branches are built and sent, with no tm lock held: it may
/// add lumps that go out with every branch (dialog's Record-Route parameter). 1.2's
/// `TMCB_REQUEST_IN`, moved to the point where the script hands the request to tm.
pub type RequestInHook = fn(&mut openser_core::script::Ctx);

static REQUEST_IN: Registry<RequestInHook> = Registry::new();
static REQUEST_IN_ANY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Register a request-in hook (mod_init, before fork).
pub fn register_request_in(h: RequestInHook) {
    REQUEST_IN.lock().push(h);
    REQUEST_IN_ANY.store(true, Ordering::Release);
}

/// Run the request-in hooks on the request of a new transaction.
pub(super) fn run_request_in(ctx: &mut openser_core::script::Ctx) {
    if !REQUEST_IN_ANY.load(Ordering::Relaxed) {
        return;
    }
    let hooks: Vec<RequestInHook> = REQUEST_IN.lock().clone();
    for h in hooks {
        h(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_and_tag() {
        let (r, t) = reason_and_totag(
            b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:b@h>;tag=abc\r\nFrom: <sip:a@h>;tag=x\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
        );
        assert_eq!((r.as_str(), t.as_str()), ("Busy Here", "abc"));
        let (r, t) = reason_and_totag(b"SIP/2.0 200\r\n\r\n");
        assert_eq!((r.as_str(), t.as_str()), ("", ""));
    }
}
