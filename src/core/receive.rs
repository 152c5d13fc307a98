//! What a receiver does with one datagram: parse, run the script or the reply
//! path, count. (Until the SIP layer lands it only counts and logs.)

use std::net::SocketAddr;

/// Handle one received datagram from `src` on listen socket `sock_idx`.
pub fn receive_msg(buf: &[u8], src: SocketAddr, sock_idx: usize) {
    let stats = crate::core::stats::core();
    let is_reply = buf.starts_with(b"SIP/");
    if is_reply {
        stats.rcv_replies.inc();
    } else {
        stats.rcv_requests.inc();
    }
    crate::log_dbg!(
        "DBG:core:receive_msg: {} bytes from {src} on socket {sock_idx}: {}",
        buf.len(),
        String::from_utf8_lossy(&buf[..buf.len().min(80)])
            .lines()
            .next()
            .unwrap_or("")
    );
}
