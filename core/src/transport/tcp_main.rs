//! The tcp main process (1.2's `tcp_main.c`): listening sockets, every connection's
//! descriptor, the connection table, handing readable connections to tcp receivers,
//! and every write on a connection (see [`super::tcp`] for the model); and every TLS
//! session, whose plaintext messages it passes to the receivers (see [`super::tls`]).

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::tcp::{self, Cmd, ConnSlot};
use super::tcp_frame::{Frame, next_frame};
use super::tls;
use crate::process::signals;
use crate::sys::{self, Epoll};
use crate::transport::socket::sockets;

/// epoll tokens: connections use their slot index; these are above any slot.
const T_CMD: u64 = 1 << 40;
const T_LISTEN: u64 = 1 << 41;

/// Queued bytes a connection may hold before it is closed (a peer that does not read).
const MAX_QUEUE: usize = 4 << 20;

/// Commands taken per wake-up at most, so accepts and reads are not starved.
const CMDS_PER_ROUND: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Connecting(Instant),
    Idle,
    Held,
    Closing,
}

/// The TLS side of a connection (tcp main's private memory only).
struct TlsConn {
    s: rustls::Connection,
    /// This side checks the peer's certificate.
    verifies: bool,
    /// When the connection was accepted or opened (for `tls_handshake_timeout`).
    since: Instant,
    /// The session summary, once the handshake is done.
    info: Option<Vec<u8>>,
    /// Decrypted bytes not yet framed.
    plain: Vec<u8>,
    /// When the first byte of the incomplete message at the start of `plain` came.
    partial_since: Option<Instant>,
}

struct Conn {
    id: u32,
    tls: Option<Box<TlsConn>>,
    stream: TcpStream,
    peer: SocketAddr,
    proto: u32,
    st: St,
    /// Bytes not yet written, and since when the queue has been waiting.
    wq: VecDeque<u8>,
    wq_since: Option<Instant>,
    /// Last time data came or a receiver gave it back (lifetime counts from here).
    last: Instant,
    aliases: Vec<u16>,
    /// The events it is registered for in epoll (0 = not registered).
    events: u32,
}

struct Main {
    ep: Epoll,
    slots: &'static [ConnSlot],
    conns: Vec<Option<Conn>>,
    /// id → slot
    ids: HashMap<u32, usize>,
    /// (proto, peer or alias address) → slot
    by_addr: HashMap<(u32, SocketAddr), usize>,
    free: Vec<usize>,
    next_id: u32,
    receivers: Vec<RawFd>,
    next_receiver: usize,
    lifetime: Duration,
    connect_timeout: Duration,
    send_timeout: Duration,
    refused_logged: Option<Instant>,
    /// Where commands are read into.
    cmd_buf: Vec<u8>,
    /// Messages for each receiver that its socket pair did not take yet.
    pending: Vec<VecDeque<Vec<u8>>>,
    tls_handshake_timeout: Duration,
    tls_send_timeout: Duration,
    read_timeout: Duration,
    accept_no_cl: bool,
    /// Where TLS plaintext is read into (kept between reads).
    tls_buf: Vec<u8>,
}

/// The tcp main process's loop.
pub fn tcp_main_loop() -> ! {
    let g = crate::globals::get();
    let slots = tcp::table();
    let mut m = Main {
        ep: match Epoll::new(256) {
            Ok(e) => e,
            Err(e) => {
                crate::log_crit!("epoll_create: {e}");
                std::process::exit(1);
            }
        },
        slots,
        conns: (0..slots.len()).map(|_| None).collect(),
        ids: HashMap::new(),
        by_addr: HashMap::new(),
        free: (0..slots.len()).rev().collect(),
        next_id: 0,
        receivers: tcp::receiver_main_ends(),
        next_receiver: 0,
        lifetime: Duration::from_secs(g.tcp_connection_lifetime.max(1) as u64),
        connect_timeout: Duration::from_secs(g.tcp_connect_timeout.max(1) as u64),
        send_timeout: Duration::from_secs(g.tcp_send_timeout.max(1) as u64),
        refused_logged: None,
        cmd_buf: Vec::new(),
        pending: tcp::receiver_main_ends()
            .iter()
            .map(|_| VecDeque::new())
            .collect(),
        tls_handshake_timeout: tls::timeouts().0,
        tls_send_timeout: tls::timeouts().1,
        read_timeout: Duration::from_secs(g.tcp_msg_read_timeout.max(1) as u64),
        accept_no_cl: g.tcp_accept_no_cl,
        tls_buf: vec![0u8; 16 * 1024],
    };
    let mut ok = true;
    if let Some(fd) = tcp::cmd_rx() {
        ok &= m.ep.add(fd, libc::EPOLLIN as u32, T_CMD).is_ok();
    }
    for (i, s) in sockets().iter().enumerate() {
        if let Some(l) = &s.tcp {
            ok &= l.set_nonblocking(true).is_ok();
            ok &=
                m.ep.add(l.as_raw_fd(), libc::EPOLLIN as u32, T_LISTEN + i as u64)
                    .is_ok();
        }
    }
    if !ok {
        crate::log_crit!("cannot set up epoll for the TCP sockets");
        std::process::exit(1);
    }
    let mut last_scan = Instant::now();
    loop {
        signals::child_check();
        m.drain_pending();
        let wait = if m.pending.iter().any(|q| !q.is_empty()) {
            5
        } else {
            1000
        };
        let evs = match m.ep.wait(wait) {
            Ok(v) => v,
            Err(e) => {
                crate::log_err!("epoll_wait: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        for (tok, ev) in evs {
            if tok == T_CMD {
                m.commands();
            } else if tok >= T_LISTEN {
                m.accept((tok - T_LISTEN) as usize);
            } else {
                m.conn_event(tok as usize, ev);
            }
        }
        if last_scan.elapsed() >= Duration::from_secs(1) {
            last_scan = Instant::now();
            m.timeouts();
        }
    }
}

impl Main {
    fn active(&self) -> usize {
        self.ids.len()
    }

    fn new_id(&mut self) -> u32 {
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            if self.next_id != 0 && !self.ids.contains_key(&self.next_id) {
                return self.next_id;
            }
        }
    }

    /// Register a new connection in a free slot.
    fn add(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        proto: u32,
        sock_idx: usize,
        st: St,
        tls: Option<Box<TlsConn>>,
    ) -> Option<usize> {
        let slot = self.free.pop()?;
        let id = self.new_id();
        let s = &self.slots[slot];
        s.set_peer(peer);
        s.proto.store(proto, Relaxed);
        s.sock_idx.store(sock_idx as u32, Relaxed);
        for a in &s.aliases {
            a.store(0, Relaxed);
        }
        s.expires.store(
            crate::clock::now() + self.lifetime.as_secs() as i64,
            Relaxed,
        );
        s.refcnt.store(1, Relaxed);
        s.holder.store(0, Relaxed);
        s.state.store(
            if matches!(st, St::Connecting(_)) {
                tcp::S_CONNECTING
            } else {
                tcp::S_IDLE
            },
            Relaxed,
        );
        s.id.store(id, Relaxed);
        self.ids.insert(id, slot);
        self.by_addr.insert((proto, peer), slot);
        self.conns[slot] = Some(Conn {
            id,
            tls,
            stream,
            peer,
            proto,
            st,
            wq: VecDeque::new(),
            wq_since: None,
            last: Instant::now(),
            aliases: Vec::new(),
            events: 0,
        });
        self.rewatch(slot);
        Some(slot)
    }

    /// Make epoll watch what the connection's state needs.
    fn rewatch(&mut self, slot: usize) {
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        let mut want = 0u32;
        if c.st == St::Idle {
            want |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        }
        if matches!(c.st, St::Connecting(_)) || !c.wq.is_empty() {
            want |= libc::EPOLLOUT as u32;
        }
        if want == c.events {
            return;
        }
        let fd = c.stream.as_raw_fd();
        let r = if c.events == 0 {
            self.ep.add(fd, want, slot as u64)
        } else if want == 0 {
            self.ep.delete(fd)
        } else {
            self.ep.modify(fd, want, slot as u64)
        };
        match r {
            Ok(()) => c.events = want,
            Err(e) => {
                crate::log_err!("epoll_ctl for connection {}: {e}", c.id);
            }
        }
    }

    fn close_slot(&mut self, slot: usize, why: &str) {
        let Some(mut c) = self.conns[slot].take() else {
            return;
        };
        if let Some(t) = c.tls.as_mut() {
            // a close_notify alert, if the socket takes it at once
            t.s.send_close_notify();
            let mut out = Vec::new();
            while t.s.wants_write() && t.s.write_tls(&mut out).is_ok() {}
            let _ = c.stream.write(&out);
        }
        crate::log_dbg!("closing connection {} to {}: {why}", c.id, c.peer);
        if c.events != 0 {
            let _ = self.ep.delete(c.stream.as_raw_fd());
        }
        // a receiver holding a copy of the descriptor sees end of file
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
        self.ids.remove(&c.id);
        self.by_addr.remove(&(c.proto, c.peer));
        for p in &c.aliases {
            let a = SocketAddr::new(c.peer.ip(), *p);
            if self.by_addr.get(&(c.proto, a)) == Some(&slot) {
                self.by_addr.remove(&(c.proto, a));
            }
        }
        let s = &self.slots[slot];
        s.id.store(0, Relaxed);
        s.state.store(tcp::S_FREE, Relaxed);
        s.refcnt.store(0, Relaxed);
        s.holder.store(0, Relaxed);
        self.free.push(slot);
    }

    fn accept(&mut self, sock_idx: usize) {
        let Some(l) = sockets().get(sock_idx).and_then(|s| s.tcp.as_ref()) else {
            return;
        };
        loop {
            match l.accept() {
                Ok((stream, peer)) => {
                    if self.free.is_empty() {
                        // refused beyond tcp_max_connections: closed at once
                        drop(stream);
                        let now = Instant::now();
                        if self
                            .refused_logged
                            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
                        {
                            self.refused_logged = Some(now);
                            crate::log_err!(
                                "maximum number of connections exceeded ({}), refusing new ones",
                                self.active()
                            );
                        }
                        continue;
                    }
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    if sockets()[sock_idx].proto == crate::globals::Proto::Tls {
                        let local = sockets()[sock_idx].addr;
                        let Some((s, verifies)) = tls::new_server(local) else {
                            crate::log_err!("no TLS configuration for {local}");
                            continue;
                        };
                        let t = new_tls(s, verifies);
                        self.add(stream, peer, tcp::P_TLS, sock_idx, St::Idle, Some(t));
                    } else {
                        self.add(stream, peer, tcp::P_TCP, sock_idx, St::Idle, None);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: try again at the next event
                    crate::log_err!("accept on {}: {e}", sockets()[sock_idx].hostport());
                    break;
                }
            }
        }
    }

    fn conn_event(&mut self, slot: usize, ev: u32) {
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        if let St::Connecting(_) = c.st {
            if ev & (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) as u32 == 0 {
                return;
            }
            match sys::socket_error(c.stream.as_raw_fd()) {
                Ok(0) => {
                    c.st = St::Idle;
                    c.last = Instant::now();
                    self.slots[slot].state.store(tcp::S_IDLE, Relaxed);
                }
                Ok(e) => {
                    let err = std::io::Error::from_raw_os_error(e);
                    crate::log_err!("connect to {} failed: {err}", c.peer);
                    self.close_slot(slot, "connect failed");
                    return;
                }
                Err(e) => {
                    crate::log_err!("connect to {} failed: {e}", c.peer);
                    self.close_slot(slot, "connect failed");
                    return;
                }
            }
            self.flush(slot);
            self.rewatch(slot);
            return;
        }
        if ev & libc::EPOLLOUT as u32 != 0 {
            self.flush(slot);
        }
        let Some(c) = self.conns[slot].as_ref() else {
            return;
        };
        if c.st == St::Idle
            && ev & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0
        {
            if c.tls.is_some() {
                self.tls_read(slot);
            } else {
                self.hand_to_receiver(slot);
            }
        } else if c.st != St::Idle && ev & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
            self.close_slot(slot, "error or hang-up");
            return;
        }
        self.rewatch(slot);
    }

    /// Pass a readable idle connection to a tcp receiver (round robin; the next one if
    /// a receiver's queue is full).
    fn hand_to_receiver(&mut self, slot: usize) {
        let n = self.receivers.len();
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        let msg = tcp::encode(
            &Cmd {
                op: tcp::OP_HANDLE,
                proto: c.proto,
                id: c.id,
                sock_idx: self.slots[slot].sock_idx.load(Relaxed),
                to: Some(c.peer),
            },
            &[],
        );
        for k in 0..n {
            let r = (self.next_receiver + k) % n;
            if sys::send_fd(self.receivers[r], &msg, Some(c.stream.as_raw_fd())).is_ok() {
                self.next_receiver = (r + 1) % n;
                c.st = St::Held;
                let s = &self.slots[slot];
                s.state.store(tcp::S_HELD, Relaxed);
                s.refcnt.store(2, Relaxed);
                s.holder.store(r as i32 + 1, Relaxed);
                return;
            }
        }
        // every receiver is behind: leave it idle, epoll reports it again
    }

    fn commands(&mut self) {
        let Some(fd) = tcp::cmd_rx() else { return };
        // the buffer is kept between calls (taken out while commands borrow it)
        let mut buf = std::mem::take(&mut self.cmd_buf);
        buf.resize(tcp::CMD_HDR + crate::version::BUF_SIZE + 1024, 0);
        self.commands_from(fd, &mut buf);
        self.cmd_buf = buf;
    }

    fn commands_from(&mut self, fd: RawFd, buf: &mut [u8]) {
        for _ in 0..CMDS_PER_ROUND {
            let n = match sys::recv_fd(fd, buf, true) {
                Ok((n, _)) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    crate::log_err!("reading a command: {e}");
                    return;
                }
            };
            let Some((c, payload)) = tcp::decode(&buf[..n]) else {
                continue;
            };
            match c.op {
                tcp::OP_SEND => self.send(&c, payload),
                tcp::OP_SEND_EXISTING
                    if c.to
                        .is_some_and(|to| self.by_addr.contains_key(&(c.proto, to))) =>
                {
                    self.send(&c, payload)
                }
                tcp::OP_RELEASE => self.release(c.id),
                tcp::OP_CLOSE => {
                    if let Some(&slot) = self.ids.get(&c.id) {
                        self.close_when_flushed(slot);
                    }
                }
                tcp::OP_ALIAS => self.alias(&c),
                _ => {}
            }
        }
    }

    fn release(&mut self, id: u32) {
        let Some(&slot) = self.ids.get(&id) else {
            return;
        };
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        if c.st == St::Held {
            c.st = St::Idle;
            c.last = Instant::now();
            let s = &self.slots[slot];
            s.state.store(tcp::S_IDLE, Relaxed);
            s.refcnt.store(1, Relaxed);
            s.holder.store(0, Relaxed);
            s.expires.store(
                crate::clock::now() + self.lifetime.as_secs() as i64,
                Relaxed,
            );
        }
        self.rewatch(slot);
    }

    fn close_when_flushed(&mut self, slot: usize) {
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        if c.wq.is_empty() {
            self.close_slot(slot, "closed by the receiver");
        } else {
            c.st = St::Closing;
            self.slots[slot].state.store(tcp::S_CLOSING, Relaxed);
            self.rewatch(slot);
        }
    }

    fn alias(&mut self, c: &Cmd) {
        let (Some(&slot), Some(to)) = (self.ids.get(&c.id), c.to) else {
            return;
        };
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        if conn.aliases.contains(&to.port()) || to.port() == conn.peer.port() {
            return;
        }
        if conn.aliases.len() >= tcp::MAX_ALIASES {
            let old = conn.aliases.remove(0);
            self.by_addr
                .remove(&(conn.proto, SocketAddr::new(conn.peer.ip(), old)));
        }
        conn.aliases.push(to.port());
        let s = &self.slots[slot];
        for (i, a) in s.aliases.iter().enumerate() {
            a.store(
                u32::from(conn.aliases.get(i).copied().unwrap_or(0)),
                Relaxed,
            );
        }
        self.by_addr.insert((conn.proto, to), slot);
    }

    fn send(&mut self, c: &Cmd, payload: &[u8]) {
        let Some(to) = c.to else { return };
        let slot = self
            .ids
            .get(&c.id)
            .copied()
            .or_else(|| self.by_addr.get(&(c.proto, to)).copied());
        let slot = match slot {
            Some(s) => s,
            None => match self.connect(c.proto, to, c.sock_idx as usize) {
                Some(s) => s,
                None => return,
            },
        };
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        if conn.st == St::Closing {
            return;
        }
        if conn.wq.len() + payload.len() > MAX_QUEUE {
            crate::log_err!("connection to {} does not take data, closing it", conn.peer);
            self.close_slot(slot, "queue full");
            return;
        }
        if let Some(t) = conn.tls.as_mut() {
            // rustls keeps what is written during the handshake until it is done
            if let Err(e) = t.s.writer().write_all(payload) {
                crate::log_err!("TLS write to {}: {e}", conn.peer);
                self.close_slot(slot, "TLS write error");
                return;
            }
            pump(t, &mut conn.wq);
        } else {
            conn.wq.extend(payload);
        }
        if conn.wq_since.is_none() {
            conn.wq_since = Some(Instant::now());
        }
        if !matches!(conn.st, St::Connecting(_)) {
            self.flush(slot);
        }
        self.rewatch(slot);
    }

    fn connect(&mut self, proto: u32, to: SocketAddr, sock_idx: usize) -> Option<usize> {
        if self.free.is_empty() {
            crate::log_err!("maximum number of connections exceeded, cannot connect to {to}");
            return None;
        }
        let fd: OwnedFd = match sys::tcp_connect_start(to) {
            Ok(fd) => fd,
            Err(e) => {
                crate::log_err!("connect to {to} failed: {e}");
                return None;
            }
        };
        let stream = TcpStream::from(fd);
        let _ = stream.set_nodelay(true);
        let until = Instant::now() + self.connect_timeout;
        let mut tls_conn = None;
        if proto == tcp::P_TLS {
            let Some((s, verifies)) = tls::new_client(to) else {
                crate::log_err!("no TLS client configuration for {to}");
                return None;
            };
            tls_conn = Some(new_tls(s, verifies));
        }
        let slot = self.add(stream, to, proto, sock_idx, St::Connecting(until), tls_conn)?;
        // the ClientHello waits in the queue until the connect completes
        if let Some(c) = self.conns[slot].as_mut()
            && let Some(t) = c.tls.as_mut()
        {
            pump(t, &mut c.wq);
            if c.wq_since.is_none() && !c.wq.is_empty() {
                c.wq_since = Some(Instant::now());
            }
        }
        Some(slot)
    }

    /// Write what is queued, without blocking.
    fn flush(&mut self, slot: usize) {
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        let mut failed = None;
        while !c.wq.is_empty() {
            let (a, _) = c.wq.as_slices();
            match c.stream.write(a) {
                Ok(0) => break,
                Ok(n) => {
                    c.wq.drain(..n);
                    c.wq_since = Some(Instant::now());
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            crate::log_err!("send to {} failed: {e}", c.peer);
            self.close_slot(slot, "write error");
            return;
        }
        if c.wq.is_empty() {
            c.wq_since = None;
            c.wq = VecDeque::new();
            if c.st == St::Closing {
                self.close_slot(slot, "closed by the receiver");
            }
        }
    }

    /// Once a second: connects and writes that take too long, idle connections past
    /// their lifetime.
    fn timeouts(&mut self) {
        let now = Instant::now();
        let expired: Vec<(usize, &'static str)> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(slot, c)| {
                let c = c.as_ref()?;
                let send_timeout = if c.tls.is_some() {
                    self.tls_send_timeout
                } else {
                    self.send_timeout
                };
                let why = match c.st {
                    St::Connecting(until) if now >= until => "connect timeout",
                    _ if c
                        .wq_since
                        .is_some_and(|t| now.duration_since(t) >= send_timeout) =>
                    {
                        "send timeout"
                    }
                    _ if c.tls.as_ref().is_some_and(|t| {
                        t.s.is_handshaking()
                            && now.duration_since(t.since) >= self.tls_handshake_timeout
                    }) =>
                    {
                        "TLS handshake timeout"
                    }
                    St::Idle
                        if c.tls.as_ref().is_some_and(|t| {
                            t.partial_since
                                .is_some_and(|p| now.duration_since(p) >= self.read_timeout)
                        }) =>
                    {
                        "message not complete in time"
                    }
                    St::Idle if now.duration_since(c.last) >= self.lifetime => "lifetime expired",
                    _ => return None,
                };
                if why != "lifetime expired" {
                    crate::log_err!("connection to {}: {why}", c.peer);
                }
                Some((slot, why))
            })
            .collect();
        for (slot, why) in expired {
            self.close_slot(slot, why);
        }
    }
}

fn new_tls(s: rustls::Connection, verifies: bool) -> Box<TlsConn> {
    Box::new(TlsConn {
        s,
        verifies,
        since: Instant::now(),
        info: None,
        plain: Vec::new(),
        partial_since: None,
    })
}

/// Move what rustls has to send into the connection's write queue.
fn pump(t: &mut TlsConn, wq: &mut VecDeque<u8>) {
    let mut out = Vec::new();
    while t.s.wants_write() {
        match t.s.write_tls(&mut out) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    wq.extend(out);
}

/// What reading a TLS connection leads to, once its borrow is over.
enum After {
    Keep,
    /// A fatal TLS error: close (after the alert, if it leaves at once).
    Fail(String),
    /// The receiver closes it when it has processed what came before.
    Hold,
}

impl Main {
    /// The receiver that processes a TLS connection's messages (always the same one,
    /// so they are processed in order).
    fn receiver_of(&self, id: u32) -> usize {
        id as usize % self.receivers.len().max(1)
    }

    /// Pass a message to receiver `r`, or queue it until its socket pair takes it.
    fn dispatch(&mut self, r: usize, msg: Vec<u8>) {
        let Some(&fd) = self.receivers.get(r) else {
            return;
        };
        if self.pending[r].is_empty() {
            match sys::send_fd(fd, &msg, None) {
                Ok(_) => return,
                Err(e)
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
                        || e.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(e) => {
                    crate::log_err!("passing a TLS message to tcp receiver {}: {e}", r + 1);
                    return;
                }
            }
        }
        if self.pending[r].len() >= 4096 {
            crate::log_err!("tcp receiver {} is behind, dropping a TLS message", r + 1);
            return;
        }
        self.pending[r].push_back(msg);
    }

    fn drain_pending(&mut self) {
        for r in 0..self.pending.len() {
            while let Some(m) = self.pending[r].front() {
                match sys::send_fd(self.receivers[r], m, None) {
                    Ok(_) => {
                        self.pending[r].pop_front();
                    }
                    Err(e)
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
                            || e.raw_os_error() == Some(libc::ENOBUFS) =>
                    {
                        break;
                    }
                    Err(e) => {
                        crate::log_err!("passing a TLS message to tcp receiver {}: {e}", r + 1);
                        self.pending[r].pop_front();
                    }
                }
            }
        }
    }

    /// A TLS connection is readable: feed rustls, answer the handshake, frame the
    /// plaintext and pass whole messages to the connection's receiver.
    fn tls_read(&mut self, slot: usize) {
        let max = crate::version::BUF_SIZE;
        let accept_no_cl = self.accept_no_cl;
        let sock_idx = self.slots[slot].sock_idx.load(Relaxed);
        let tmp = &mut self.tls_buf;
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        let Some(t) = c.tls.as_mut() else {
            return;
        };
        let (id, peer) = (c.id, c.peer);
        let outgoing = matches!(t.s, rustls::Connection::Client(_));
        let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
        let mut eof = false;
        let mut fatal: Option<String> = None;
        let mut got = false;
        loop {
            let more = match t.s.read_tls(&mut c.stream) {
                Ok(0) => {
                    eof = true;
                    false
                }
                Ok(_) => {
                    got = true;
                    true
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => false,
                Err(e) if e.kind() == ErrorKind::Interrupted => true,
                Err(e) => {
                    fatal = Some(format!("read: {e}"));
                    false
                }
            };
            if let Err(e) = t.s.process_new_packets() {
                fatal = Some(format!("TLS error: {e}"));
                break;
            }
            loop {
                match t.s.reader().read(tmp) {
                    Ok(0) => {
                        // close_notify
                        eof = true;
                        break;
                    }
                    Ok(n) => t.plain.extend_from_slice(&tmp[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        // closed without close_notify
                        eof = true;
                        break;
                    }
                }
            }
            if !more || eof || fatal.is_some() {
                break;
            }
        }
        if got {
            c.last = Instant::now();
        }
        let mut after = After::Keep;
        if let Some(e) = fatal {
            after = After::Fail(e);
        } else {
            if t.info.is_none() && !t.s.is_handshaking() {
                t.info = Some(tls::TlsInfo::of(&t.s, t.verifies).encode());
            }
            let info: &[u8] = t.info.as_deref().unwrap_or_default();
            let mut used = 0;
            let mut stopped = false;
            while used < t.plain.len() {
                let rest = &t.plain[used..];
                match next_frame(rest, max, accept_no_cl) {
                    Frame::Msg { len } => {
                        let mut p = Vec::with_capacity(2 + info.len() + len);
                        p.extend_from_slice(&(info.len() as u16).to_le_bytes());
                        p.extend_from_slice(info);
                        p.extend_from_slice(&rest[..len]);
                        out.push((tcp::OP_MSG, p));
                        used += len;
                    }
                    Frame::KeepAlive { len, pong } => {
                        if pong {
                            let _ = t.s.writer().write_all(b"\r\n");
                        }
                        used += len;
                    }
                    Frame::Incomplete => break,
                    Frame::Bad { reason, hdr_len } => {
                        crate::log_warn!("bad message from {peer}: {reason}");
                        let mut p = reason.as_bytes().to_vec();
                        p.push(0);
                        p.extend_from_slice(&rest[..hdr_len]);
                        out.push((tcp::OP_BAD, p));
                        stopped = true;
                        break;
                    }
                    Frame::TooBig { hdr_len } => {
                        crate::log_warn!(
                            "message from {peer} longer than {max} bytes, closing the connection"
                        );
                        let mut p = b"Message Too Large\0".to_vec();
                        p.extend_from_slice(&rest[..hdr_len]);
                        out.push((tcp::OP_BAD, p));
                        stopped = true;
                        break;
                    }
                }
            }
            t.plain.drain(..used);
            if t.plain.is_empty() {
                t.partial_since = None;
                if t.plain.capacity() > 64 * 1024 {
                    t.plain = Vec::new();
                }
            } else if t.partial_since.is_none()
                && !t.plain.iter().all(|&b| b == b'\r' || b == b'\n')
            {
                t.partial_since = Some(Instant::now());
            }
            if stopped {
                after = After::Hold;
            } else if eof {
                if !t.plain.is_empty() || t.s.is_handshaking() {
                    crate::log_dbg!("TLS connection from {peer} closed inside a message");
                }
                out.push((tcp::OP_EOF, Vec::new()));
                after = After::Hold;
            }
        }
        pump(t, &mut c.wq);
        if !c.wq.is_empty() && c.wq_since.is_none() {
            c.wq_since = Some(Instant::now());
        }
        let r = self.receiver_of(id);
        for (op, p) in out {
            let m = tcp::encode(
                &Cmd {
                    op,
                    proto: tcp::P_TLS,
                    id,
                    sock_idx,
                    to: Some(peer),
                },
                &p,
            );
            self.dispatch(r, m);
        }
        match after {
            After::Keep => {}
            After::Fail(e) => {
                if outgoing {
                    // ours to a peer (relaying): the operator needs to know
                    crate::log_err!("TLS connection to {peer}: {e}");
                } else {
                    crate::log_dbg!("TLS connection from {peer}: {e}");
                }
                self.flush(slot);
                self.close_slot(slot, "TLS error");
                return;
            }
            After::Hold => {
                if let Some(c) = self.conns[slot].as_mut() {
                    c.st = St::Held;
                    let s = &self.slots[slot];
                    s.state.store(tcp::S_HELD, Relaxed);
                    s.holder.store(r as i32 + 1, Relaxed);
                }
            }
        }
        self.flush(slot);
    }
}
