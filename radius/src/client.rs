//! Sending a request and waiting for its reply: UDP, retries, timeout, failover.
//!
//! Each process keeps its own connected UDP socket per server (made on first use, after
//! the fork: nothing is shared between processes) and its own identifier counter. A
//! request goes to the servers in the configured order; each gets `radius_retries`
//! sends, each followed by a wait of at most `radius_timeout` for a reply that passes
//! [`packet::decode_reply`] (stray, late or forged datagrams are dropped and the wait goes
//! on until its deadline). A server that refuses (ICMP port unreachable, seen as
//! `ECONNREFUSED` on the connected socket) is given up at once. So one request blocks its
//! process at most servers × retries × timeout, and for a stopped server on this host
//! hardly at all. With `radius_deadtime`, a server that failed is tried last for that
//! long. Before waiting, the process hands its socket turn on
//! (`turn::let_others_read`), as before a database query, so the other receivers keep
//! reading SIP while this one waits.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};

use crate::conf::{ClientConf, Server};
use crate::packet::{self, Attr, Reply};

/// Which servers a request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Auth,
    Acct,
}

/// Why no reply came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// No server of that kind is configured.
    NoServer,
    /// The request could not be built (a value too long, …).
    Encode(String),
    /// No server answered (each refused or timed out).
    NoAnswer,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::NoServer => write!(f, "no RADIUS server configured for this service"),
            SendError::Encode(e) => write!(f, "cannot build the RADIUS request: {e}"),
            SendError::NoAnswer => write!(f, "no RADIUS server answered"),
        }
    }
}

struct ProcState {
    pid: u32,
    socks: HashMap<SocketAddr, UdpSocket>,
    next_id: u8,
    dead_until: HashMap<SocketAddr, Instant>,
    seed: [u8; 16],
    counter: u64,
}

thread_local! {
    /// This process's sockets, identifiers and dead servers (remade after a fork: the
    /// pid is checked).
    static PROC: RefCell<Option<ProcState>> = const { RefCell::new(None) };
}

fn seed() -> [u8; 16] {
    use std::io::Read;
    let mut s = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut s))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut h = Md5::new();
        h.update(t.to_be_bytes());
        h.update(std::process::id().to_be_bytes());
        s = h.finalize().into();
    }
    s
}

fn with_state<R>(f: impl FnOnce(&mut ProcState) -> R) -> R {
    PROC.with(|p| {
        let mut p = p.borrow_mut();
        let pid = std::process::id();
        if p.as_ref().is_none_or(|s| s.pid != pid) {
            let seed = seed();
            *p = Some(ProcState {
                pid,
                socks: HashMap::new(),
                next_id: seed[0],
                dead_until: HashMap::new(),
                seed,
                counter: 0,
            });
        }
        f(p.as_mut().expect("state set above"))
    })
}

/// A fresh unpredictable Request Authenticator (MD5 of a per-process random seed, a
/// counter and the time).
fn new_authenticator(st: &mut ProcState) -> [u8; 16] {
    st.counter += 1;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Md5::new();
    h.update(st.seed);
    h.update(st.counter.to_be_bytes());
    h.update(t.to_be_bytes());
    h.finalize().into()
}

/// This process's socket to `srv`, taken out of the table for the exchange (made when
/// there is none); [`put_socket`] returns it.
fn take_socket(srv: &Server, bind: Option<IpAddr>) -> std::io::Result<UdpSocket> {
    if let Some(s) = with_state(|st| st.socks.remove(&srv.addr)) {
        return Ok(s);
    }
    let local = bind.unwrap_or(match srv.addr {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let s = UdpSocket::bind(SocketAddr::new(local, 0))?;
    s.connect(srv.addr)?;
    Ok(s)
}

fn put_socket(addr: SocketAddr, s: UdpSocket) {
    with_state(|st| {
        st.socks.insert(addr, s);
    });
}

enum Fail {
    Encode(String),
    Down(String),
}

/// Send `attrs` to the `svc` servers of `conf`; the first valid reply (Access-Accept,
/// -Reject or -Challenge; Accounting-Response).
pub fn send(conf: &ClientConf, svc: Service, attrs: &[Attr]) -> Result<Reply, SendError> {
    let servers = match svc {
        Service::Auth => &conf.auth,
        Service::Acct => &conf.acct,
    };
    if servers.is_empty() {
        return Err(SendError::NoServer);
    }
    openser_core::transport::turn::let_others_read();
    // Live servers in order, then those in their dead time.
    let now = Instant::now();
    let dead: Vec<bool> = with_state(|st| {
        servers
            .iter()
            .map(|s| st.dead_until.get(&s.addr).is_some_and(|t| *t > now))
            .collect()
    });
    let order = servers
        .iter()
        .zip(&dead)
        .filter(|(_, d)| !**d)
        .chain(servers.iter().zip(&dead).filter(|(_, d)| **d))
        .map(|(s, _)| s);
    for srv in order {
        match try_server(conf, svc, srv, attrs) {
            Ok(r) => {
                with_state(|st| st.dead_until.remove(&srv.addr));
                return Ok(r);
            }
            Err(Fail::Encode(e)) => return Err(SendError::Encode(e)),
            Err(Fail::Down(why)) => {
                openser_core::log_warn!("RADIUS server {} ({}) {why}", srv.name, srv.addr);
                if !conf.deadtime.is_zero() {
                    with_state(|st| {
                        st.dead_until
                            .insert(srv.addr, Instant::now() + conf.deadtime)
                    });
                }
            }
        }
    }
    Err(SendError::NoAnswer)
}

fn try_server(
    conf: &ClientConf,
    svc: Service,
    srv: &Server,
    attrs: &[Attr],
) -> Result<Reply, Fail> {
    let (id, ra, pkt, code) = with_state(|st| {
        let id = st.next_id;
        st.next_id = st.next_id.wrapping_add(1);
        match svc {
            Service::Auth => {
                let ra = new_authenticator(st);
                packet::encode_access_request(id, &ra, attrs, &srv.secret)
                    .map(|p| (id, ra, p, packet::ACCESS_REQUEST))
            }
            Service::Acct => packet::encode_accounting_request(id, attrs, &srv.secret).map(|p| {
                let ra = packet::request_authenticator(&p);
                (id, ra, p, packet::ACCOUNTING_REQUEST)
            }),
        }
    })
    .map_err(|e| Fail::Encode(e.to_string()))?;
    let down = |why: String| Fail::Down(why);
    let mut sock =
        take_socket(srv, conf.bind).map_err(|e| down(format!("cannot open a socket: {e}")))?;
    let mut buf = vec![0u8; packet::MAX_PACKET];
    for _ in 0..conf.retries.max(1) {
        if let Err(e) = sock.send(&pkt) {
            // A late error of an earlier exchange may be pending on the socket: one more
            // try on a fresh one before giving the server up.
            sock = take_socket(srv, conf.bind)
                .map_err(|e| down(format!("cannot open a socket: {e}")))?;
            sock.send(&pkt)
                .map_err(|e2| down(format!("send failed: {e} / {e2}")))?;
        }
        let deadline = Instant::now() + conf.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(|e| down(format!("socket error: {e}")))?;
            match sock.recv(&mut buf) {
                Ok(n) => match packet::decode_reply(&buf[..n], code, id, &ra, &srv.secret) {
                    Ok(r) => {
                        put_socket(srv.addr, sock);
                        return Ok(r);
                    }
                    Err(e) => {
                        openser_core::log_dbg!("dropped a datagram from {}: {e}", srv.addr);
                    }
                },
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // The socket is dropped: a refused or failed socket is not reused.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    return Err(down("refused the request (port unreachable)".into()));
                }
                Err(e) => return Err(down(format!("receive failed: {e}"))),
            }
        }
    }
    // Kept: a late reply to this request is told apart by its identifier and
    // authenticator.
    put_socket(srv.addr, sock);
    Err(down(format!(
        "did not answer ({} send(s), {:?} each)",
        conf.retries.max(1),
        conf.timeout
    )))
}
