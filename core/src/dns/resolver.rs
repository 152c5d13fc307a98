//! The stub resolver: `/etc/resolv.conf` read as 1.2's libc resolver reads it, and
//! queries over UDP (TCP when the answer is truncated), each with a timeout.
//!
//! No threads and no process-wide blocking: a lookup waits on its socket with a
//! read timeout. Timing follows the libc resolver that 1.2 configured through
//! `_res`: each of `attempts` rounds asks every name server in turn, waiting
//! `timeout` seconds split between the servers; `dns_retr_time` overrides `timeout`,
//! `dns_retr_no` overrides `attempts`, `dns_servers_no` limits how many servers are
//! used, `dns_use_search_list=0` turns the search list off. A whole resolution
//! (NAPTR, SRV and address lookups of one destination) shares one deadline of
//! `timeout × attempts` ([`Deadline`]), so no worker ever waits longer than that for
//! DNS, whatever the number of lookups.
//!
//! The file read is `/etc/resolv.conf`, or the one the global `dns_resolv_conf`
//! names (for tests and for hosts where the proxy should not use the system's).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::msg::{self, Response};

/// What resolv.conf and the globals say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conf {
    pub servers: Vec<SocketAddr>,
    pub search: Vec<String>,
    pub ndots: usize,
    pub timeout: Duration,
    pub attempts: u32,
}

impl Default for Conf {
    fn default() -> Self {
        Conf {
            servers: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53)],
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }
}

/// Parse resolv.conf text (libc's rules: at most 3 `nameserver` lines, `domain` and
/// `search` replace each other — the last one wins —, `options ndots:n timeout:n
/// attempts:n`; unknown lines are ignored). A non-standard `nameserver ip#port` or
/// `nameserver [ip]:port` picks a port other than 53.
pub fn parse_conf(text: &str) -> Conf {
    let mut c = Conf {
        servers: Vec::new(),
        ..Conf::default()
    };
    for line in text.lines() {
        // libc: a line starting with `#` or `;` is a comment.
        if line.trim_start().starts_with(['#', ';']) {
            continue;
        }
        let mut w = line.split_whitespace();
        match w.next() {
            Some("nameserver") if c.servers.len() < 3 => {
                if let Some(a) = w.next().and_then(parse_server) {
                    c.servers.push(a);
                }
            }
            Some("domain") => c.search = w.next().map(|d| vec![d.to_string()]).unwrap_or_default(),
            Some("search") => c.search = w.take(6).map(str::to_string).collect(),
            Some("options") => {
                for o in w {
                    let (k, v) = o.split_once(':').unwrap_or((o, ""));
                    let n = v.parse::<u64>().ok();
                    match (k, n) {
                        ("ndots", Some(n)) => c.ndots = n.min(15) as usize,
                        ("timeout", Some(n)) => c.timeout = Duration::from_secs(n.clamp(1, 30)),
                        ("attempts", Some(n)) => c.attempts = n.clamp(1, 5) as u32,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if c.servers.is_empty() {
        c.servers = Conf::default().servers;
    }
    c
}

fn parse_server(s: &str) -> Option<SocketAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa);
    }
    let (ip, port) = s.split_once('#')?;
    Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
}

static CONF: OnceLock<Conf> = OnceLock::new();

/// The resolver configuration (read once per process, on first use, from the
/// file, then adjusted by the globals).
pub fn conf() -> &'static Conf {
    CONF.get_or_init(|| {
        let g = crate::globals::get();
        let path = g
            .dns_resolv_conf
            .clone()
            .unwrap_or_else(|| "/etc/resolv.conf".to_string());
        let mut c = match std::fs::read_to_string(&path) {
            Ok(t) => parse_conf(&t),
            Err(e) => {
                crate::log_warn!("cannot read {path}: {e}; using 127.0.0.1 as name server");
                Conf::default()
            }
        };
        apply_globals(&mut c, g);
        c
    })
}

fn apply_globals(c: &mut Conf, g: &crate::globals::Globals) {
    if g.dns_retr_time > 0 {
        c.timeout = Duration::from_secs(g.dns_retr_time as u64);
    }
    if g.dns_retr_no > 0 {
        c.attempts = g.dns_retr_no as u32;
    }
    if g.dns_servers_no > 0 {
        c.servers.truncate(g.dns_servers_no as usize);
    }
    if g.dns_use_search_list == 0 {
        c.search.clear();
    }
}

/// The longest a whole resolution may wait for DNS.
pub fn budget() -> Duration {
    let c = conf();
    c.timeout * c.attempts
}

/// The end of the current resolution's DNS budget.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Instant);

impl Deadline {
    pub fn new() -> Deadline {
        Deadline(Instant::now() + budget())
    }
    fn left(&self) -> Option<Duration> {
        self.0
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }
}

impl Default for Deadline {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a lookup gave nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    /// NXDOMAIN or no data: cacheable, with the SOA's negative TTL if given.
    NoData(Option<u32>),
    /// No server answered in time, or they failed (SERVFAIL, REFUSED...).
    Timeout,
}

/// The names to ask for `name` (search list rules of libc).
pub fn candidates(name: &str) -> Vec<String> {
    let c = conf();
    if name.ends_with('.') || c.search.is_empty() {
        return vec![name.trim_end_matches('.').to_string()];
    }
    let dots = name.matches('.').count();
    let with: Vec<String> = c.search.iter().map(|d| format!("{name}.{d}")).collect();
    let mut v = Vec::new();
    if dots >= c.ndots {
        v.push(name.to_string());
        v.extend(with);
    } else {
        v.extend(with);
        v.push(name.to_string());
    }
    v
}

thread_local! {
    static SEED: std::cell::Cell<u64> = std::cell::Cell::new({
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        t ^ ((std::process::id() as u64) << 32) | 1
    });
}

/// A pseudo-random number (xorshift; query ids and SRV weights, not cryptography).
pub fn rand_u64() -> u64 {
    SEED.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

/// Ask for `qname`/`qtype` (one name, no search list), within `dl`.
pub fn query(qname: &str, qtype: u16, dl: Deadline) -> Result<Response, Fail> {
    let c = conf();
    let id = rand_u64() as u16;
    let q = msg::build_query(id, qname, qtype).ok_or(Fail::NoData(None))?;
    let per_server = (c.timeout / c.servers.len().max(1) as u32).max(Duration::from_millis(200));
    // A server that answered with an error (SERVFAIL, REFUSED...): the next one; if
    // all do, the name has no usable answer now (not cached: TTL 0).
    let mut refused = false;
    for _ in 0..c.attempts {
        for srv in &c.servers {
            let Some(left) = dl.left() else {
                return Err(if refused {
                    Fail::NoData(Some(0))
                } else {
                    Fail::Timeout
                });
            };
            let wait = per_server.min(left);
            match udp_exchange(*srv, &q, id, wait) {
                Some(r) if r.truncated => {
                    if let Some(r) = dl.left().and_then(|l| tcp_exchange(*srv, &q, id, l)) {
                        return classify(r);
                    }
                }
                Some(r) if r.rcode == 0 || r.rcode == 3 => return classify(r),
                Some(_) => refused = true,
                None => {}
            }
        }
        if refused {
            return Err(Fail::NoData(Some(0)));
        }
    }
    Err(Fail::Timeout)
}

fn classify(r: Response) -> Result<Response, Fail> {
    if r.rcode == 3 || r.answers.is_empty() {
        return Err(Fail::NoData(r.neg_ttl));
    }
    Ok(r)
}

fn udp_exchange(srv: SocketAddr, q: &[u8], id: u16, wait: Duration) -> Option<Response> {
    let bind: SocketAddr = if srv.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(bind).ok()?;
    s.connect(srv).ok()?;
    s.send(q).ok()?;
    let end = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        let left = end
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())?;
        s.set_read_timeout(Some(left)).ok()?;
        match s.recv(&mut buf) {
            Ok(n) => match msg::parse_response(&buf[..n]) {
                Ok(r) if r.id == id => return Some(r),
                Ok(_) => continue,
                Err(e) => {
                    crate::log_dbg!("bad DNS answer from {srv}: {e}");
                    continue;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

fn tcp_exchange(srv: SocketAddr, q: &[u8], id: u16, wait: Duration) -> Option<Response> {
    let mut s = TcpStream::connect_timeout(&srv, wait).ok()?;
    s.set_read_timeout(Some(wait)).ok()?;
    s.set_write_timeout(Some(wait)).ok()?;
    let mut out = (q.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(q);
    s.write_all(&out).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    msg::parse_response(&buf).ok().filter(|r| r.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf() {
        let c = parse_conf(
            "# comment\nnameserver 10.0.0.1\nnameserver 127.0.0.2#5353\ndomain a.org\n\
             search b.org c.org\noptions ndots:2 timeout:3 attempts:4 rotate\n",
        );
        assert_eq!(
            c.servers,
            vec![
                "10.0.0.1:53".parse().unwrap(),
                "127.0.0.2:5353".parse().unwrap()
            ]
        );
        assert_eq!(c.search, vec!["b.org", "c.org"]);
        assert_eq!(
            (c.ndots, c.timeout, c.attempts),
            (2, Duration::from_secs(3), 4)
        );
        assert_eq!(parse_conf("").servers, Conf::default().servers);
    }
}
