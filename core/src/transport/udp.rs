//! The UDP receive loop run by every receiver process.
//!
//! Each wake-up takes every datagram already queued on the socket, up to [`BATCH`],
//! in one `recvmmsg` call (MSG_WAITFORONE: it blocks only for the first). Under load a
//! receiver then handles a burst per system call and per wake-up instead of one
//! datagram each; with little traffic it is one datagram per call, as `recvfrom` was.

use crate::process::signals;
use crate::sys::{self, MmsgBufs};
use crate::transport::socket::sockets;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;

/// Datagrams taken per `recvmmsg` call at most.
pub const BATCH: usize = 16;

/// Receive on listen socket `idx` until a terminating signal arrives.
pub fn rcv_loop(idx: usize) -> ! {
    let si = &sockets()[idx];
    let Some(sock) = si.udp.as_ref() else {
        crate::log_crit!("socket {} is not UDP", si.hostport());
        std::process::exit(1);
    };
    let fd = sock.as_raw_fd();
    let mut bufs = MmsgBufs::new(BATCH, crate::version::BUF_SIZE + 1);
    let mut lens = Vec::with_capacity(BATCH);
    loop {
        signals::child_check();
        match sys::recvmmsg(fd, &mut bufs, &mut lens) {
            Ok(n) => {
                for (i, &len) in lens.iter().enumerate().take(n) {
                    let (data, src) = bufs.get(i, len);
                    let Some(src) = src else { continue };
                    if len > crate::version::BUF_SIZE {
                        crate::log_warn!("datagram from {src} too big, dropped");
                        continue;
                    }
                    crate::receive::receive_msg(data, src, idx);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                crate::log_err!("recvmmsg: {e}");
            }
        }
    }
}
