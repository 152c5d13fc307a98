//! What a receiver does with one datagram: parse, run the script or the reply path,
//! count (framework spec §5).

use crate::cfg::ast::RouteKind;
use crate::module;
use crate::parser::{Proto, RcvInfo, SipMsg};
use crate::route::{ONREPLY_ROUTE, REQUEST_ROUTE};
use crate::script::{self, Ctx};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

/// Internal message id (`$mi`), per process.
static MSG_ID: AtomicU32 = AtomicU32::new(0);

/// Handle one received datagram from `src` on listen socket `sock_idx`.
pub fn receive_msg(buf: &[u8], src: SocketAddr, sock_idx: usize) {
    let dst = crate::transport::socket::sockets()
        .get(sock_idx)
        .map(|s| s.addr)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let rcv = RcvInfo {
        src,
        dst,
        proto: Proto::Udp,
        sock_idx,
    };
    receive_with(buf, rcv);
}

/// Handle one message with its receive information.
pub fn receive_with(buf: &[u8], rcv: RcvInfo) {
    let stats = crate::stats::core();
    crate::dns::blacklist::reset_marker();
    let mut msg = match SipMsg::new(buf, rcv) {
        Ok(m) => m,
        Err(e) => {
            crate::log_dbg!("parse error ({}) in message from {}", e.what, rcv.src);
            stats.bad_msg_hdr.inc();
            if buf.starts_with(b"SIP/") {
                stats.err_replies.inc();
            } else {
                stats.err_requests.inc();
            }
            return;
        }
    };
    msg.id = MSG_ID.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
    if msg.is_request() {
        stats.rcv_requests.inc();
        stats.count_request(msg.method());
        handle_request(msg);
    } else {
        stats.rcv_replies.inc();
        stats.count_reply(msg.status().unwrap_or(0));
        handle_reply(msg);
    }
}

fn handle_request(mut msg: SipMsg) {
    let stats = crate::stats::core();
    if let Err(e) = msg.check_mandatory() {
        stats.bad_msg_hdr.inc();
        stats.err_requests.inc();
        if msg.via1().is_ok() {
            let (code, reason) = crate::msg::SipError::from_parse(&e).reply();
            if let Ok(b) = crate::msg::build_local_reply(&msg, code, reason, None, &[], b"", None) {
                let _ = crate::transport::forward::send_reply(&msg, &b);
            }
        }
        return;
    }
    if msg.method() == crate::parser::Method::Other {
        stats.unsupported_methods.inc();
    }
    // Via `alias` over a stream (1.2's tcp_accept_aliases): requests to the sender's
    // address and its Via port use this connection.
    if msg.rcv.proto != Proto::Udp
        && crate::globals::get().tcp_accept_aliases
        && let Ok(v) = msg.via1()
        && v.param(msg.buf(), "alias").is_some()
    {
        crate::transport::tcp::add_alias(v.port.unwrap_or(5060));
    }
    for m in module::loaded() {
        if let Some(f) = m.pre_script
            && !f(&mut msg)
        {
            stats.drop_requests.inc();
            return;
        }
    }
    let mut ctx = Ctx::new(&mut msg, REQUEST_ROUTE);
    script::run_route(RouteKind::Request, 0, &mut ctx);
    // implicit end: a request neither forwarded nor replied is just dropped
}

fn handle_reply(mut msg: SipMsg) {
    let stats = crate::stats::core();
    if msg.via1().is_err() {
        stats.err_replies.inc();
        stats.bad_msg_hdr.inc();
        return;
    }
    let has_onreply = script::engine::has_route(RouteKind::OnReply, 0);
    // A reply that may reach a script (the main onreply_route, or tm's per-transaction
    // one through its reply hook) needs a parsable CSeq too (RFC 4475 scalarlg); the
    // stateless relay alone sends it on by its Via unread, as 1.2 does.
    if (has_onreply || module::loaded().iter().any(|m| m.reply_hook.is_some()))
        && msg.check_reply().is_err()
    {
        stats.err_replies.inc();
        stats.bad_msg_hdr.inc();
        return;
    }
    if has_onreply {
        let mut ctx = Ctx::new(&mut msg, ONREPLY_ROUTE);
        script::run_route(RouteKind::OnReply, 0, &mut ctx);
        let dropped = ctx.drop_requested();
        if dropped && msg.status().is_some_and(|s| s < 200) {
            stats.drop_replies.inc();
            return;
        }
    }
    for m in module::loaded() {
        if let Some(f) = m.reply_hook
            && f(&mut msg)
        {
            return;
        }
    }
    let _ = crate::transport::forward::forward_reply(&msg);
}
