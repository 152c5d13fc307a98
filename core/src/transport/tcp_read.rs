//! A tcp receiver process (1.2's `tcp_read.c`): takes connections from tcp main,
//! reads and frames their messages, processes each one like a datagram, and gives a
//! connection back after [`tcp::CHILD_IDLE`] without data.
//!
//! Bad input never reaches the script and never affects another connection:
//! * a message that does not complete within `tcp_msg_read_timeout` seconds of its
//!   first byte (slowloris) closes the connection;
//! * a message longer than the buffer (`BUF_SIZE`) closes it, after a 400 when its
//!   headers are complete and parse;
//! * a message without Content-Length gets a 400 and the connection is closed, unless
//!   `tcp_accept_no_cl`;
//! * end of file (also a half-close) processes the whole messages read and closes
//!   the connection; a reset closes it.
//!
//! TLS connections stay in tcp main, which passes their messages here as bytes
//! ([`tcp::OP_MSG`]); they are processed the same way (see [`super::tls`]).

use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::tcp;
use super::tcp_frame::{Frame, next_frame};
use crate::parser::{Proto, RcvInfo};
use crate::process::signals;
use crate::sys::{self, Epoll};

const T_MAIN: u64 = u64::MAX;

/// Bytes read per `read` call at most.
const CHUNK: usize = 16 * 1024;

thread_local! {
    /// Where a tcp receiver reads into (this process's, zeroed once).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; CHUNK]);
}

struct Held {
    stream: TcpStream,
    rcv: RcvInfo,
    buf: Vec<u8>,
    last: Instant,
    /// When the first byte of the incomplete message at the start of `buf` came.
    partial_since: Option<Instant>,
}

/// The loop of tcp receiver `i` (0-based).
pub fn tcp_rcv_loop(i: usize) -> ! {
    let Some(main) = tcp::receiver_end(i) else {
        crate::log_crit!("tcp receiver {i} has no socket to tcp main");
        std::process::exit(1);
    };
    let g = crate::globals::get();
    let max = crate::version::BUF_SIZE;
    let read_timeout = Duration::from_secs(g.tcp_msg_read_timeout.max(1) as u64);
    let accept_no_cl = g.tcp_accept_no_cl;
    let mut ep = match Epoll::new(64) {
        Ok(e) => e,
        Err(e) => {
            crate::log_crit!("epoll_create: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = ep.add(main, libc::EPOLLIN as u32, T_MAIN) {
        crate::log_crit!("epoll_ctl: {e}");
        std::process::exit(1);
    }
    let mut held: HashMap<u32, Held> = HashMap::new();
    // a TLS message: header, session summary, message
    let mut msg = vec![0u8; tcp::CMD_HDR + 2 + 16 * 1024 + max + 1];
    let mut last_scan = Instant::now();
    loop {
        signals::child_check();
        let evs = ep.wait(1000).unwrap_or_default();
        for (tok, _ev) in evs {
            if tok == T_MAIN {
                loop {
                    match sys::recv_fd(main, &mut msg, true) {
                        Ok((0, _)) => {
                            // tcp main is gone: the attendant shuts everything down
                            std::thread::sleep(Duration::from_millis(100));
                            break;
                        }
                        Ok((n, None)) => {
                            if let Some((c, payload)) = tcp::decode(&msg[..n]) {
                                tls_message(c, payload);
                            }
                        }
                        Ok((n, fd)) => {
                            let (Some((c, _)), Some(fd)) = (tcp::decode(&msg[..n]), fd) else {
                                continue;
                            };
                            if c.op != tcp::OP_HANDLE {
                                continue;
                            }
                            take(&mut ep, &mut held, c, TcpStream::from(fd));
                            // read at once: the data that made tcp main hand it is there
                            let id = c.id;
                            let keep = held
                                .get_mut(&id)
                                .map(|h| read_conn(id, h, max, accept_no_cl));
                            if keep == Some(false) {
                                drop_conn(&mut ep, &mut held, id, true);
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => {
                            crate::log_err!("receiving a connection from tcp main: {e}");
                            break;
                        }
                    }
                }
                continue;
            }
            let id = tok as u32;
            let keep = match held.get_mut(&id) {
                Some(h) => read_conn(id, h, max, accept_no_cl),
                None => continue,
            };
            if !keep {
                drop_conn(&mut ep, &mut held, id, true);
            }
        }
        if last_scan.elapsed() >= Duration::from_millis(500) {
            last_scan = Instant::now();
            let now = Instant::now();
            let mut done: Vec<(u32, bool)> = Vec::new();
            for (id, h) in &held {
                if let Some(t) = h.partial_since {
                    if now.duration_since(t) >= read_timeout {
                        crate::log_warn!(
                            "message from {} not complete after {}s, closing the connection",
                            h.rcv.src,
                            read_timeout.as_secs()
                        );
                        done.push((*id, true));
                    }
                } else if now.duration_since(h.last) >= tcp::CHILD_IDLE {
                    done.push((*id, false));
                }
            }
            for (id, close) in done {
                drop_conn(&mut ep, &mut held, id, close);
            }
        }
    }
}

/// A message of a TLS connection, or its end, from tcp main.
fn tls_message(c: tcp::Cmd, payload: &[u8]) {
    let Some(peer) = c.to else { return };
    let sock_idx = c.sock_idx as usize;
    let Some(si) = crate::transport::socket::sockets().get(sock_idx) else {
        return;
    };
    let rcv = RcvInfo {
        src: peer,
        dst: si.addr,
        proto: Proto::Tls,
        sock_idx,
    };
    match c.op {
        tcp::OP_MSG => {
            let Some(n) = payload
                .get(..2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            else {
                return;
            };
            let (Some(info), Some(body)) = (payload.get(2..2 + n), payload.get(2 + n..)) else {
                return;
            };
            tcp::set_current(Some((c.id, peer)));
            super::tls::set_current(info);
            crate::receive::receive_with(body, rcv);
            super::tls::set_current(&[]);
            tcp::set_current(None);
        }
        tcp::OP_BAD => {
            let mut parts = payload.splitn(2, |&b| b == 0);
            let reason = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let hdrs = parts.next().unwrap_or_default();
            tcp::set_current(Some((c.id, peer)));
            if !hdrs.is_empty() {
                reply_400(hdrs, rcv, &reason);
            }
            tcp::set_current(None);
            tcp::close(c.id);
        }
        tcp::OP_EOF => tcp::close(c.id),
        _ => {}
    }
}

fn take(ep: &mut Epoll, held: &mut HashMap<u32, Held>, c: tcp::Cmd, stream: TcpStream) {
    let (Some(peer), Ok(local)) = (c.to, stream.local_addr()) else {
        tcp::close(c.id);
        return;
    };
    if stream.set_nonblocking(true).is_err()
        || ep
            .add(
                stream.as_raw_fd(),
                (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
                u64::from(c.id),
            )
            .is_err()
    {
        tcp::close(c.id);
        return;
    }
    let proto = if c.proto == tcp::P_TLS {
        Proto::Tls
    } else {
        Proto::Tcp
    };
    held.insert(
        c.id,
        Held {
            stream,
            rcv: RcvInfo {
                src: peer,
                dst: local,
                proto,
                sock_idx: c.sock_idx as usize,
            },
            buf: Vec::new(),
            last: Instant::now(),
            partial_since: None,
        },
    );
}

/// Stop reading connection `id`: give it back to tcp main, or have it closed.
fn drop_conn(ep: &mut Epoll, held: &mut HashMap<u32, Held>, id: u32, close: bool) {
    if let Some(h) = held.remove(&id) {
        let _ = ep.delete(h.stream.as_raw_fd());
        if close {
            tcp::close(id);
        } else {
            tcp::release(id);
        }
        // our copy of the descriptor closes here; tcp main keeps its own
    }
}

/// Read what the connection has and process the whole messages in it. False when
/// the connection is finished (end of file, error, bad input).
fn read_conn(id: u32, h: &mut Held, max: usize, accept_no_cl: bool) -> bool {
    let mut eof = false;
    let mut failed = false;
    // Read into a scratch buffer zeroed once per process and append what came: growing
    // the connection's buffer by a zeroed chunk per read cost more than the parsing.
    SCRATCH.with_borrow_mut(|scratch| {
        loop {
            let start = h.buf.len();
            if start > max {
                break;
            }
            let want = CHUNK.min(max + 1 - start);
            match h.stream.read(&mut scratch[..want]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    h.buf.extend_from_slice(&scratch[..n]);
                    h.last = Instant::now();
                    if n < want {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    crate::log_dbg!("read from {}: {e}", h.rcv.src);
                    failed = true;
                    break;
                }
            }
        }
    });
    let keep = process(id, h, max, accept_no_cl);
    if !keep || failed {
        return false;
    }
    if eof {
        if !h.buf.is_empty() {
            crate::log_dbg!(
                "connection from {} closed inside a message ({} bytes dropped)",
                h.rcv.src,
                h.buf.len()
            );
        }
        return false;
    }
    true
}

/// Process the whole messages at the start of the buffer. False: close the connection.
fn process(id: u32, h: &mut Held, max: usize, accept_no_cl: bool) -> bool {
    let mut used = 0;
    let mut keep = true;
    tcp::set_current(Some((id, h.rcv.src)));
    loop {
        let rest = &h.buf[used..];
        if rest.is_empty() {
            break;
        }
        match next_frame(rest, max, accept_no_cl) {
            Frame::Msg { len } => {
                crate::receive::receive_with(&rest[..len], h.rcv);
                used += len;
            }
            Frame::KeepAlive { len, pong } => {
                if pong {
                    let _ = tcp::send(tcp_proto(h.rcv.proto), h.rcv.sock_idx, h.rcv.src, b"\r\n");
                }
                used += len;
            }
            Frame::Incomplete => break,
            Frame::Bad { reason, hdr_len } => {
                crate::log_warn!("bad message from {}: {reason}", h.rcv.src);
                reply_400(&rest[..hdr_len], h.rcv, reason);
                keep = false;
                break;
            }
            Frame::TooBig { hdr_len } => {
                crate::log_warn!(
                    "message from {} longer than {max} bytes, closing the connection",
                    h.rcv.src
                );
                if hdr_len > 0 {
                    reply_400(&rest[..hdr_len], h.rcv, "Message Too Large");
                }
                keep = false;
                break;
            }
        }
    }
    tcp::set_current(None);
    h.buf.drain(..used);
    if h.buf.is_empty() {
        h.partial_since = None;
        if h.buf.capacity() > 2 * CHUNK {
            h.buf = Vec::new();
        }
    } else if h.partial_since.is_none() && !h.buf.iter().all(|&b| b == b'\r' || b == b'\n') {
        // (a lone CRLF keep-alive, or half of a double one, is not a message)
        h.partial_since = Some(Instant::now());
    }
    keep
}

fn tcp_proto(p: Proto) -> u32 {
    if p == Proto::Tls {
        tcp::P_TLS
    } else {
        tcp::P_TCP
    }
}

/// A 400 to a request whose headers are `hdrs` (its body is not needed), if they
/// parse; nothing otherwise.
fn reply_400(hdrs: &[u8], rcv: RcvInfo, reason: &str) {
    // the Content-Length is what is wrong (or announces a body we will not read)
    let mut head = Vec::with_capacity(hdrs.len());
    for line in hdrs.split_inclusive(|&b| b == b'\n') {
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        let name = name.trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            continue;
        }
        head.extend_from_slice(line);
    }
    let Ok(req) = crate::parser::SipMsg::new(&head, rcv) else {
        return;
    };
    if !req.is_request() || req.via1().is_err() {
        return;
    }
    if let Ok(b) = crate::msg::build_local_reply(&req, 400, reason, None, &[], b"", None) {
        let _ = crate::transport::forward::send_reply(&req, &b);
    }
}
