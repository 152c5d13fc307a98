//! Stateless forwarding of requests and replies, and sending replies to requests.

use super::send::{choose_socket_for, our_via, resolve_host, send_udp, uri_destination};
use crate::msg::{self, SipError};
use crate::parser::Proto;
use crate::parser::SipMsg;
use crate::stats;
use md5::{Digest, Md5};
use std::net::SocketAddr;

/// The branch of our Via for a statelessly forwarded request: derived from the
/// request's own identity, so a retransmission gets the same branch (RFC 3261 §16.11).
pub fn stateless_branch(msg: &SipMsg) -> String {
    let mut h = Md5::new();
    match msg.via1() {
        Ok(v) if msg.os(v.branch).is_some_and(|b| b.starts_with("z9hG4bK")) => {
            h.update(msg.os(v.branch).unwrap_or_default().as_bytes());
            h.update(msg.s(v.host).as_bytes());
            h.update(v.port.unwrap_or(0).to_be_bytes());
        }
        _ => {
            h.update(msg.callid().unwrap_or_default().as_bytes());
            if let Ok(c) = msg.cseq() {
                h.update(c.num.to_be_bytes());
            }
            if let Ok(f) = msg.from() {
                h.update(msg.os(f.tag).unwrap_or_default().as_bytes());
            }
        }
    }
    h.update(msg.ruri().as_bytes());
    let d = h.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(9 + 16);
    s.push_str("z9hG4bKsl");
    for &b in &d[..8] {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Forward `msg` statelessly to `dest` (over UDP), or else to its dst URI, or else
/// its R-URI (over the URI's transport).
pub fn forward_request(msg: &SipMsg, dest: Option<SocketAddr>) -> Result<(), SipError> {
    forward_request_on(msg, dest.map(|d| (d, Proto::Udp)))
}

/// [`forward_request`] with the transport of a fixed destination given
/// (`forward_tcp`, `forward("tcp:…")`).
pub fn forward_request_on(msg: &SipMsg, dest: Option<(SocketAddr, Proto)>) -> Result<(), SipError> {
    let st = stats::core();
    let (to, proto) = match dest {
        Some(d) => d,
        None => {
            let target = msg
                .dst_uri
                .as_deref()
                .unwrap_or_else(|| msg.ruri())
                .to_string();
            match uri_destination(&target) {
                Ok(d) => d,
                Err(e) => {
                    crate::log_err!("cannot forward to <{target}>: {e}");
                    st.drop_requests.inc();
                    return Err(SipError::BadAddress);
                }
            }
        }
    };
    let sock = choose_socket_for(&to, proto, msg.force_send_sock);
    let branch = stateless_branch(msg);
    let via = our_via(sock, &branch, msg);
    let buf = msg::build_request(msg, &via, &[]).map_err(|e| {
        crate::log_err!("cannot build the request: {e:?}");
        st.drop_requests.inc();
        SipError::BadReq
    })?;
    if let Err(e) = send_udp(sock, to, &buf) {
        crate::log_err!("send to {to} failed: {e}");
        st.drop_requests.inc();
        return Err(SipError::SendFailed);
    }
    st.fwd_requests.inc();
    Ok(())
}

/// Forward a reply statelessly: drop our top Via and send it to the next one.
pub fn forward_reply(reply: &SipMsg) -> Result<(), SipError> {
    let st = stats::core();
    if crate::globals::get().check_via {
        let ours = reply
            .via1()
            .map(|v| crate::transport::socket::is_myself(reply.s(v.host), v.port.unwrap_or(0)))
            .unwrap_or(false);
        if !ours {
            crate::log_notice!("top Via is not ours, reply dropped");
            st.drop_replies.inc();
            return Err(SipError::BadVia);
        }
    }
    let (host, port) = match msg::next_via_destination(reply) {
        Ok(d) => d,
        Err(e) => {
            crate::log_dbg!("no second Via ({e:?}), reply dropped");
            st.err_replies.inc();
            return Err(SipError::BadVia);
        }
    };
    // The reply goes back over the transport of the next Via: never over another.
    let mut proto = Proto::Udp;
    if let Ok(Some(v)) = reply.via2() {
        let t = reply.s(v.transport);
        if let Err(e) = crate::transport::served::check_served(t) {
            crate::log_err!("cannot send the reply back to {host}:{port}: {e}");
            st.drop_replies.inc();
            return Err(SipError::SendFailed);
        }
        proto = Proto::from_name(t.as_bytes()).unwrap_or_default();
    }
    let buf = msg::build_reply_forward(reply).map_err(|_| {
        st.err_replies.inc();
        SipError::BadVia
    })?;
    let to = resolve_host(&host, port).map_err(|e| {
        crate::log_err!("{e}");
        st.drop_replies.inc();
        SipError::BadAddress
    })?;
    let sock = choose_socket_for(&to, proto, None);
    if let Err(e) = send_udp(sock, to, &buf) {
        crate::log_err!("send to {to} failed: {e}");
        st.drop_replies.inc();
        return Err(SipError::SendFailed);
    }
    st.fwd_replies.inc();
    Ok(())
}

/// Send a reply built for `req` to where replies to it go (RFC 3261 §18.2.2 and
/// RFC 3581), from the socket the request came in on.
pub fn send_reply(req: &SipMsg, buf: &[u8]) -> Result<(), SipError> {
    let to = msg::reply_addr(req).map_err(|e| {
        crate::log_err!("{e}");
        SipError::BadAddress
    })?;
    send_udp(req.rcv.sock_idx, to, buf).map_err(|e| {
        crate::log_err!("send to {to} failed: {e}");
        SipError::SendFailed
    })
}
