//! Connections and operations: one blocking TCP connection per session per process,
//! every wait bounded.
//!
//! * Connect: each server of the session in order, `ldap_network_timeout` each.
//! * Bind (simple; anonymous when no DN is configured): the reply within
//!   `ldap_client_bind_timeout`.
//! * Search: the request is written and every reply read before a deadline of
//!   `ldap_network_timeout` from the send (the socket's read/write timeouts are set to
//!   what is left before each call), so a silent server costs at most that.
//! * A connection that breaks (reset, closed, notice of disconnection) is remade and the
//!   search sent again once; a search that timed out is not retried (the worker has
//!   waited its share) and its connection is dropped, since a late reply would
//!   otherwise be read as the next search's.
//!
//! Worst case for one search on a session with N servers: N × network timeout
//! (connects) + bind timeout + network timeout (search), twice if the first try found
//! the connection broken. A refused connection (the server stopped on this host) fails
//! at once. Before waiting, the process hands its socket turn on
//! (`turn::let_others_read`), so the other receivers keep reading SIP.
//!
//! The connections live in this process's `thread_local!` map, checked against the
//! pid: a connection is never shared across a fork.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::ber::{self, BerError};
use crate::conf::Session;
use crate::filter::Filter;
use crate::proto::{self, Entry, Response, Scope};

/// The most bytes of entries one search may return (a guard against a runaway
/// result filling a worker's memory).
pub const MAX_RESULT_BYTES: usize = 16 << 20;

/// Why an operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LdapError {
    /// No server of the session could be reached.
    Connect(String),
    /// The bind was refused (result code, message).
    Bind(i64, String),
    /// The connection broke (reset, closed by the server).
    Broken(String),
    /// No (complete) reply before the deadline.
    Timeout,
    /// The server sent something this client cannot decode.
    Protocol(String),
    /// The search ended with an error result (code, message).
    Server(i64, String),
    /// A bad request (filter, session name, …).
    Request(String),
}

impl std::fmt::Display for LdapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LdapError::Connect(e) => write!(f, "cannot connect: {e}"),
            LdapError::Bind(c, m) => write!(f, "bind refused (result {c}): {m}"),
            LdapError::Broken(e) => write!(f, "connection broken: {e}"),
            LdapError::Timeout => write!(f, "timed out"),
            LdapError::Protocol(e) => write!(f, "protocol error: {e}"),
            LdapError::Server(c, m) => write!(f, "search failed (result {c}): {m}"),
            LdapError::Request(e) => write!(f, "{e}"),
        }
    }
}

/// One open, bound connection.
pub struct Conn {
    stream: TcpStream,
    next_id: i32,
    buf: Vec<u8>,
    pub server: String,
}

fn io_err(e: std::io::Error) -> LdapError {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => LdapError::Timeout,
        _ => LdapError::Broken(e.to_string()),
    }
}

fn left(deadline: Instant) -> Result<Duration, LdapError> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        Err(LdapError::Timeout)
    } else {
        Ok(d)
    }
}

impl Conn {
    /// Connect to the session's first server that answers, and bind.
    pub fn open(s: &Session) -> Result<Conn, LdapError> {
        let mut errs = Vec::new();
        for (name, addrs) in &s.servers {
            for a in addrs {
                match TcpStream::connect_timeout(a, s.network_timeout) {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        let mut c = Conn {
                            stream,
                            next_id: 1,
                            buf: Vec::new(),
                            server: name.clone(),
                        };
                        match c.bind(s) {
                            Ok(()) => return Ok(c),
                            Err(e @ LdapError::Bind(..)) => return Err(e),
                            Err(e) => errs.push(format!("{name}: bind: {e}")),
                        }
                    }
                    Err(e) => errs.push(format!("{name} ({a}): {e}")),
                }
            }
        }
        Err(LdapError::Connect(errs.join("; ")))
    }

    fn id(&mut self) -> i32 {
        let id = self.next_id;
        self.next_id = if id >= i32::MAX - 1 { 1 } else { id + 1 };
        id
    }

    fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), LdapError> {
        self.stream
            .set_write_timeout(Some(left(deadline)?))
            .map_err(io_err)?;
        self.stream.write_all(bytes).map_err(io_err)
    }

    /// The next whole message, before `deadline`.
    fn recv(&mut self, deadline: Instant) -> Result<(i32, Response), LdapError> {
        loop {
            match ber::frame_len(&self.buf) {
                Ok(n) if self.buf.len() >= n => {
                    let r = proto::decode(&self.buf[..n]);
                    self.buf.drain(..n);
                    return r.map_err(|e| LdapError::Protocol(e.to_string()));
                }
                Ok(_) | Err(BerError::Incomplete) => {}
                Err(e) => return Err(LdapError::Protocol(e.to_string())),
            }
            self.stream
                .set_read_timeout(Some(left(deadline)?))
                .map_err(io_err)?;
            let mut tmp = [0u8; 16384];
            match self.stream.read(&mut tmp) {
                Ok(0) => return Err(LdapError::Broken("closed by the server".into())),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            }
        }
    }

    fn bind(&mut self, s: &Session) -> Result<(), LdapError> {
        let deadline = Instant::now() + s.bind_timeout;
        let id = self.id();
        let req = proto::bind_request(id, s.version, &s.bind_dn, &s.bind_password);
        self.send(&req, deadline)?;
        loop {
            match self.recv(deadline)? {
                (rid, Response::Bind(r)) if rid == id => {
                    return if r.code == proto::SUCCESS {
                        Ok(())
                    } else {
                        Err(LdapError::Bind(r.code, r.message))
                    };
                }
                (_, Response::Notice(r)) => {
                    return Err(LdapError::Broken(format!("server notice: {}", r.message)));
                }
                _ => continue,
            }
        }
    }

    /// Run one search on this connection. `size_limit` 0 = the server's limit.
    pub fn search(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &Filter,
        attrs: &[String],
        size_limit: i32,
        timeout: Duration,
    ) -> Result<Vec<Entry>, LdapError> {
        let deadline = Instant::now() + timeout;
        let id = self.id();
        let req = proto::search_request(id, base, scope, filter, attrs, size_limit);
        self.send(&req, deadline)?;
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        loop {
            match self.recv(deadline)? {
                (rid, Response::Entry(e)) if rid == id => {
                    bytes += e.dn.len()
                        + e.attrs
                            .iter()
                            .map(|(n, v)| n.len() + v.iter().map(Vec::len).sum::<usize>())
                            .sum::<usize>();
                    if bytes > MAX_RESULT_BYTES {
                        return Err(LdapError::Protocol("search result too large".into()));
                    }
                    entries.push(e);
                }
                (rid, Response::Done(r)) if rid == id => {
                    return match r.code {
                        proto::SUCCESS | proto::SIZE_LIMIT_EXCEEDED => Ok(entries),
                        proto::NO_SUCH_OBJECT => Ok(Vec::new()),
                        c => Err(LdapError::Server(c, r.message)),
                    };
                }
                (_, Response::Notice(r)) => {
                    return Err(LdapError::Broken(format!("server notice: {}", r.message)));
                }
                _ => continue,
            }
        }
    }

    /// Send an UnbindRequest and close (best effort, bounded by `timeout`).
    pub fn unbind(mut self, timeout: Duration) {
        let id = self.id();
        let _ = self.send(&proto::unbind_request(id), Instant::now() + timeout);
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

struct ProcConns {
    pid: u32,
    conns: HashMap<String, Conn>,
}

thread_local! {
    /// This process's connections, by session name.
    static CONNS: RefCell<Option<ProcConns>> = const { RefCell::new(None) };
}

fn with_conns<R>(f: impl FnOnce(&mut HashMap<String, Conn>) -> R) -> R {
    CONNS.with(|c| {
        let mut c = c.borrow_mut();
        let pid = std::process::id();
        if c.as_ref().is_none_or(|p| p.pid != pid) {
            *c = Some(ProcConns {
                pid,
                conns: HashMap::new(),
            });
        }
        f(&mut c.as_mut().expect("set above").conns)
    })
}

/// Open (connect and bind) this process's connection of session `s` now, if it has
/// none (child_init).
pub fn connect(s: &Session) -> Result<(), LdapError> {
    if with_conns(|m| m.contains_key(&s.name)) {
        return Ok(());
    }
    openser_core::transport::turn::let_others_read();
    let c = Conn::open(s)?;
    with_conns(|m| m.insert(s.name.clone(), c));
    Ok(())
}

/// Whether this process holds an open connection for `session`.
pub fn is_connected(session: &str) -> bool {
    with_conns(|m| m.contains_key(session))
}

/// Search with this process's connection of session `s` (opened if needed; remade and
/// the search sent again once when it was found broken).
pub fn search(
    s: &Session,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[String],
    size_limit: i32,
) -> Result<Vec<Entry>, LdapError> {
    let f = crate::filter::parse(filter).map_err(LdapError::Request)?;
    openser_core::transport::turn::let_others_read();
    for attempt in 0..2 {
        let mut conn = match with_conns(|m| m.remove(&s.name)) {
            Some(c) => c,
            None => Conn::open(s)?,
        };
        match conn.search(base, scope, &f, attrs, size_limit, s.network_timeout) {
            Ok(v) => {
                with_conns(|m| m.insert(s.name.clone(), conn));
                return Ok(v);
            }
            // The connection may still be good after an error result.
            Err(e @ LdapError::Server(..)) => {
                with_conns(|m| m.insert(s.name.clone(), conn));
                return Err(e);
            }
            Err(LdapError::Broken(e)) if attempt == 0 => {
                openser_core::log_warn!(
                    "LDAP session [{}]: connection to {} broken ({e}), reconnecting",
                    s.name,
                    conn.server
                );
                continue;
            }
            // Timeout, protocol error, second break: the connection is dropped.
            Err(e) => return Err(e),
        }
    }
    Err(LdapError::Broken("connection broken twice".into()))
}

/// Unbind and close every connection of this process (destroy).
pub fn close_all(timeout: Duration) {
    let all: Vec<Conn> = with_conns(|m| m.drain().map(|(_, c)| c).collect());
    for c in all {
        c.unbind(timeout);
    }
}
