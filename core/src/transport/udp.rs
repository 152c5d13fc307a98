//! The UDP receive loop run by every receiver process.

use crate::process::signals;
use crate::transport::socket::sockets;
use std::io::ErrorKind;

/// Receive on listen socket `idx` until a terminating signal arrives.
pub fn rcv_loop(idx: usize) -> ! {
    let si = &sockets()[idx];
    let Some(sock) = si.udp.as_ref() else {
        crate::log_crit!("socket {} is not UDP", si.hostport());
        std::process::exit(1);
    };
    let mut buf = vec![0u8; crate::version::BUF_SIZE + 1];
    loop {
        signals::child_check();
        match sock.recv_from(&mut buf) {
            Ok((n, src)) => {
                if n > crate::version::BUF_SIZE {
                    crate::log_warn!("datagram from {src} too big, dropped");
                    continue;
                }
                crate::receive::receive_msg(&buf[..n], src, idx);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                crate::log_err!("recvfrom: {e}");
            }
        }
    }
}
