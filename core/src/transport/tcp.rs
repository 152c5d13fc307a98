//! The TCP transport in OpenSER 1.2's process model.
//!
//! * The **tcp main process** ([`super::tcp_main`]) owns the listening sockets and
//!   every connection's descriptor. It waits in epoll; when an idle connection becomes
//!   readable it hands its descriptor to a **tcp receiver** over that receiver's Unix
//!   socket pair (SCM_RIGHTS), and takes it back when the receiver has been idle on it
//!   for [`CHILD_IDLE`] (1.2's `TCP_CHILD_TIMEOUT`). No threads anywhere.
//! * A **tcp receiver** ([`super::tcp_read`]) reads, frames ([`super::tcp_frame`]) and
//!   processes the messages of the connections it holds, like a UDP receiver does with
//!   datagrams.
//! * **Sending**: any process sends on TCP by handing the bytes to tcp main over one
//!   shared Unix socket (a command, [`send`]). tcp main writes them on the connection
//!   to that peer — the request's connection for a reply, a connection registered by
//!   the destination (its peer address or an alias port), or a new one it opens
//!   (non-blocking, at most `tcp_connect_timeout`). Only tcp main writes on a
//!   connection, so messages from several processes never interleave, no process
//!   holds a lock across a write, and a slow peer blocks nobody: what cannot be
//!   written at once waits in tcp main's queue for that connection, at most
//!   `tcp_send_timeout`, after which the connection is closed. Like Kamailio's
//!   `tcp_async` mode, a send is not confirmed to the sender: a failed connect is
//!   logged by tcp main and the transaction times out.
//! * **TLS** connections are the exception to the hand-over: tcp main keeps their
//!   rustls sessions and passes their decrypted messages to the receivers as bytes
//!   (see [`super::tls`]).
//! * **The connection table** lives in shm ([`ConnSlot`]): id, state, protocol,
//!   peer, local socket, alias ports, lifetime, reference count and the receiver
//!   holding it. tcp main is its only writer (it creates and closes every
//!   connection); any process may read it (MI, lookups).
//!
//! Commands to tcp main travel as one `SOCK_SEQPACKET` message each (a 32-byte header
//! and the payload), all processes writing the same socket: a message is atomic, and
//! a sender blocks at most `tcp_send_timeout` when tcp main is behind.

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use crate::sys;

/// How long a tcp receiver keeps an idle connection before giving it back to tcp
/// main (1.2's `TCP_CHILD_TIMEOUT`).
pub const CHILD_IDLE: Duration = Duration::from_secs(5);

/// Alias ports a connection can carry (1.2's `TCP_CON_MAX_ALIASES`).
pub const MAX_ALIASES: usize = 4;

/// Protocol codes in the table and in commands.
pub const P_TCP: u32 = 1;
pub const P_TLS: u32 = 2;

/// Connection states.
pub const S_FREE: u32 = 0;
/// Connect in progress (opened by tcp main for a send).
pub const S_CONNECTING: u32 = 1;
/// Watched by tcp main for data.
pub const S_IDLE: u32 = 2;
/// Held by a tcp receiver (`holder`).
pub const S_HELD: u32 = 3;
/// Closing once its queued bytes are written.
pub const S_CLOSING: u32 = 4;

/// One connection in the shm table. Written by tcp main only.
#[repr(C)]
#[derive(Default)]
pub struct ConnSlot {
    /// Connection id, 0 when the slot is free.
    pub id: AtomicU32,
    pub state: AtomicU32,
    pub proto: AtomicU32,
    /// 4 or 6.
    pub family: AtomicU32,
    /// The peer's address (IPv4 in the first word), network order bytes as u32s.
    pub peer_ip: [AtomicU32; 4],
    pub peer_port: AtomicU32,
    /// Index of the listen socket it belongs to.
    pub sock_idx: AtomicU32,
    /// Extra ports of the peer's address this connection serves (Via `alias`,
    /// `force_tcp_alias`); 0 = unused.
    pub aliases: [AtomicU32; MAX_ALIASES],
    /// When an idle connection is closed (seconds, `clock::now`).
    pub expires: AtomicI64,
    /// References: 1 for tcp main, +1 while a receiver holds it.
    pub refcnt: AtomicU32,
    /// Which tcp receiver reads it (1-based), 0 when tcp main watches it.
    pub holder: AtomicI32,
}

// SAFETY: #[repr(C)] atomics only, no pointers, no Drop.
#[allow(unsafe_code)]
unsafe impl shm::ShmSafe for ConnSlot {}

impl ConnSlot {
    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        let w: Vec<u32> = self.peer_ip.iter().map(|a| a.load(Relaxed)).collect();
        let port = self.peer_port.load(Relaxed) as u16;
        let ip = if self.family.load(Relaxed) == 6 {
            let mut b = [0u8; 16];
            for (i, x) in w.iter().enumerate() {
                b[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(b))
        } else {
            IpAddr::V4(Ipv4Addr::from(w[0]))
        };
        SocketAddr::new(ip, port)
    }

    /// Set the peer's address (tcp main).
    pub fn set_peer(&self, a: SocketAddr) {
        match a.ip() {
            IpAddr::V4(ip) => {
                self.family.store(4, Relaxed);
                self.peer_ip[0].store(u32::from(ip), Relaxed);
                for w in &self.peer_ip[1..] {
                    w.store(0, Relaxed);
                }
            }
            IpAddr::V6(ip) => {
                self.family.store(6, Relaxed);
                for (i, c) in ip.octets().chunks(4).enumerate() {
                    self.peer_ip[i].store(u32::from_be_bytes([c[0], c[1], c[2], c[3]]), Relaxed);
                }
            }
        }
        self.peer_port.store(u32::from(a.port()), Relaxed);
    }
}

static TABLE: OnceLock<&'static [ConnSlot]> = OnceLock::new();

/// Attendant, after tcp main died (the connections' fds died with it): empties the
/// connection table before the new tcp main starts. Returns how many connections were
/// in it.
pub fn reset_table() -> usize {
    let mut n = 0;
    for s in table() {
        if s.id.swap(0, Relaxed) != 0 {
            n += 1;
        }
        s.state.store(0, Relaxed);
        s.refcnt.store(0, Relaxed);
        s.holder.store(0, Relaxed);
        for a in &s.aliases {
            a.store(0, Relaxed);
        }
        s.expires.store(0, Relaxed);
    }
    n
}

/// The ends of the command socket: (tcp main reads, every other process writes).
static CMD: OnceLock<(OwnedFd, OwnedFd)> = OnceLock::new();

/// One socket pair per tcp receiver: (tcp main's end, the receiver's end).
static RECEIVERS: OnceLock<Vec<(OwnedFd, OwnedFd)>> = OnceLock::new();

/// Whether TCP runs (a TCP listen socket exists and processes were set up).
pub fn enabled() -> bool {
    CMD.get().is_some()
}

/// Allocate the connection table and the socket pairs (attendant, after shm exists
/// and the TCP sockets are bound, before it forks).
pub fn init(max_conns: usize, receivers: usize, send_timeout: Duration) -> Result<(), String> {
    if CMD.get().is_some() {
        return Ok(());
    }
    let n = max_conns.max(1);
    let table: &'static [ConnSlot] = if shm::is_initialized() {
        shm::alloc_static_slice_with(n, |_| ConnSlot::default())
            .ok_or("no shm for the TCP connection table")?
    } else {
        Box::leak((0..n).map(|_| ConnSlot::default()).collect())
    };
    let _ = TABLE.set(table);
    let (rx, tx) = sys::seqpacket_pair().map_err(|e| format!("socketpair: {e}"))?;
    sys::set_send_timeout(tx.as_raw_fd(), send_timeout).map_err(|e| format!("SO_SNDTIMEO: {e}"))?;
    // tcp main reads without blocking; a deep queue absorbs bursts
    sys::set_nonblocking(rx.as_raw_fd()).map_err(|e| format!("O_NONBLOCK: {e}"))?;
    let _ = sys::setsockopt_int(rx.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20);
    let _ = sys::setsockopt_int(tx.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20);
    let mut pairs = Vec::with_capacity(receivers);
    for _ in 0..receivers {
        let (m, r) = sys::seqpacket_pair().map_err(|e| format!("socketpair: {e}"))?;
        sys::set_nonblocking(m.as_raw_fd()).map_err(|e| format!("O_NONBLOCK: {e}"))?;
        sys::set_nonblocking(r.as_raw_fd()).map_err(|e| format!("O_NONBLOCK: {e}"))?;
        // TLS messages travel as bytes over these pairs (see super::tls)
        let _ = sys::setsockopt_int(m.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20);
        let _ = sys::setsockopt_int(r.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20);
        pairs.push((m, r));
    }
    let _ = RECEIVERS.set(pairs);
    let _ = CMD.set((rx, tx));
    Ok(())
}

/// The connection table (empty before [`init`]).
pub fn table() -> &'static [ConnSlot] {
    TABLE.get().copied().unwrap_or(&[])
}

/// tcp main's end of the command socket.
pub(crate) fn cmd_rx() -> Option<RawFd> {
    CMD.get().map(|(rx, _)| rx.as_raw_fd())
}

fn cmd_tx() -> Option<RawFd> {
    CMD.get().map(|(_, tx)| tx.as_raw_fd())
}

/// tcp main's ends of the receivers' socket pairs.
pub(crate) fn receiver_main_ends() -> Vec<RawFd> {
    RECEIVERS
        .get()
        .map(|v| v.iter().map(|(m, _)| m.as_raw_fd()).collect())
        .unwrap_or_default()
}

/// Receiver `i`'s end of its socket pair.
pub(crate) fn receiver_end(i: usize) -> Option<RawFd> {
    RECEIVERS
        .get()
        .and_then(|v| v.get(i))
        .map(|(_, r)| r.as_raw_fd())
}

/// How many tcp receivers were set up.
pub fn receivers() -> usize {
    RECEIVERS.get().map_or(0, Vec::len)
}

// ---------------------------------------------------------------------------
// commands

pub(crate) const OP_SEND: u8 = 1;
pub(crate) const OP_RELEASE: u8 = 2;
pub(crate) const OP_CLOSE: u8 = 3;
pub(crate) const OP_ALIAS: u8 = 4;
/// tcp main → receiver: here is connection `id` (descriptor attached).
pub(crate) const OP_HANDLE: u8 = 5;
/// tcp main → receiver: a whole message of TLS connection `id` (payload: the
/// session summary's length as u16 LE, the summary, the message).
pub(crate) const OP_MSG: u8 = 6;
/// tcp main → receiver: TLS connection `id` sent a message that cannot be framed
/// (payload: reason, NUL, its header bytes): answer 400 if possible, then close it.
pub(crate) const OP_BAD: u8 = 7;
/// tcp main → receiver: TLS connection `id` reached end of file; close it once the
/// messages before are processed.
pub(crate) const OP_EOF: u8 = 8;
/// Like [`OP_SEND`], but only on a connection that exists: never connect (NAT pings).
pub(crate) const OP_SEND_EXISTING: u8 = 9;

pub(crate) const CMD_HDR: usize = 32;

/// A decoded command header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cmd {
    pub op: u8,
    pub proto: u32,
    pub id: u32,
    pub sock_idx: u32,
    pub to: Option<SocketAddr>,
}

pub(crate) fn encode(c: &Cmd, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; CMD_HDR + payload.len()];
    b[0] = c.op;
    b[1] = c.proto as u8;
    b[4..8].copy_from_slice(&c.id.to_le_bytes());
    b[8..12].copy_from_slice(&c.sock_idx.to_le_bytes());
    if let Some(a) = c.to {
        b[12..14].copy_from_slice(&a.port().to_le_bytes());
        match a.ip() {
            IpAddr::V4(ip) => {
                b[2] = 4;
                b[16..20].copy_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                b[2] = 6;
                b[16..32].copy_from_slice(&ip.octets());
            }
        }
    }
    b[CMD_HDR..].copy_from_slice(payload);
    b
}

pub(crate) fn decode(b: &[u8]) -> Option<(Cmd, &[u8])> {
    if b.len() < CMD_HDR {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let port = u16::from_le_bytes([b[12], b[13]]);
    let to = match b[2] {
        4 => Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(b[16], b[17], b[18], b[19])),
            port,
        )),
        6 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[16..32]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port))
        }
        _ => None,
    };
    Some((
        Cmd {
            op: b[0],
            proto: u32::from(b[1]),
            id: u32_at(4),
            sock_idx: u32_at(8),
            to,
        },
        &b[CMD_HDR..],
    ))
}

fn command(c: &Cmd, payload: &[u8]) -> std::io::Result<()> {
    let fd = cmd_tx().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotConnected, "TCP is not running")
    })?;
    sys::send_fd(fd, &encode(c, payload), None).map(|_| ())
}

// ---------------------------------------------------------------------------
// the connection a tcp receiver is processing a message of

thread_local! {
    /// (id, peer) of the connection whose message this process handles now.
    static CURRENT: Cell<Option<(u32, SocketAddr)>> = const { Cell::new(None) };
}

/// tcp receiver: the message being handled came on connection `id` from `peer`.
pub(crate) fn set_current(c: Option<(u32, SocketAddr)>) {
    CURRENT.with(|x| x.set(c));
}

/// The connection of the message being handled (tcp receivers only).
pub fn current() -> Option<(u32, SocketAddr)> {
    CURRENT.with(Cell::get)
}

// ---------------------------------------------------------------------------
// the API of the other processes

/// Send `buf` over TCP (`proto` [`P_TCP`]) to `to`, from listen socket `sock_idx`:
/// on the connection the current message came on if `to` is its peer, else on the
/// connection tcp main has to `to` (peer address or alias), else on a new one.
/// Returns once tcp main has the bytes.
pub fn send(proto: u32, sock_idx: usize, to: SocketAddr, buf: &[u8]) -> std::io::Result<()> {
    let id = match current() {
        Some((id, peer)) if peer == to => id,
        _ => 0,
    };
    command(
        &Cmd {
            op: OP_SEND,
            proto,
            id,
            sock_idx: sock_idx as u32,
            to: Some(to),
        },
        buf,
    )
}

/// Send `buf` to `to` only over a connection tcp main already has to it (its peer
/// address or an alias): no new connection is opened — a NAT keep-alive must travel
/// the phone's own connection, through its pinhole, or not at all. Returns once tcp
/// main has the bytes (whether a connection exists is known to tcp main only).
pub fn send_existing(
    proto: u32,
    sock_idx: usize,
    to: SocketAddr,
    buf: &[u8],
) -> std::io::Result<()> {
    command(
        &Cmd {
            op: OP_SEND_EXISTING,
            proto,
            id: 0,
            sock_idx: sock_idx as u32,
            to: Some(to),
        },
        buf,
    )
}

/// Add `port` as an alias of the current connection: requests to the peer's address
/// and that port use it (`force_tcp_alias`, Via `alias` with `tcp_accept_aliases`).
pub fn add_alias(port: u16) -> bool {
    let Some((id, peer)) = current() else {
        return false;
    };
    command(
        &Cmd {
            op: OP_ALIAS,
            proto: 0,
            id,
            sock_idx: 0,
            to: Some(SocketAddr::new(peer.ip(), port)),
        },
        &[],
    )
    .is_ok()
}

/// tcp receiver: give connection `id` back to tcp main (idle).
pub(crate) fn release(id: u32) {
    let _ = command(
        &Cmd {
            op: OP_RELEASE,
            proto: 0,
            id,
            sock_idx: 0,
            to: None,
        },
        &[],
    );
}

/// tcp receiver: connection `id` is finished (end of file, error, bad input); tcp
/// main closes it once its queued bytes are written.
pub(crate) fn close(id: u32) {
    let _ = command(
        &Cmd {
            op: OP_CLOSE,
            proto: 0,
            id,
            sock_idx: 0,
            to: None,
        },
        &[],
    );
}

/// (id, state, peer, local socket index, holder) of every connection, for MI and
/// tests.
pub fn list() -> Vec<(u32, u32, SocketAddr, u32, i32)> {
    table()
        .iter()
        .filter(|s| s.id.load(Relaxed) != 0)
        .map(|s| {
            (
                s.id.load(Relaxed),
                s.state.load(Relaxed),
                s.peer(),
                s.sock_idx.load(Relaxed),
                s.holder.load(Relaxed),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        for to in [
            None,
            Some(SocketAddr::from(([127, 0, 0, 1], 5060))),
            Some("[::1]:5070".parse().unwrap()),
        ] {
            let c = Cmd {
                op: OP_SEND,
                proto: P_TCP,
                id: 77,
                sock_idx: 3,
                to,
            };
            let b = encode(&c, b"INVITE");
            let (d, p) = decode(&b).unwrap();
            assert_eq!(d, c);
            assert_eq!(p, b"INVITE");
        }
        assert!(decode(&[0u8; 5]).is_none());
    }

    #[test]
    fn slot_peer_round_trip() {
        let s = ConnSlot::default();
        for a in ["10.1.2.3:5060", "[2001:db8::7]:5061"] {
            let a: SocketAddr = a.parse().unwrap();
            s.set_peer(a);
            assert_eq!(s.peer(), a);
        }
    }
}
