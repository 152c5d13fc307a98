//! The rtpproxy control protocol, as 1.2's nathelper speaks it.
//!
//! Commands are text: `V` (version, answer `20040107`), `VF 20050322` (is this
//! protocol extension supported, answer `1`), `U<opts> callid ip port from_tag;n
//! [to_tag;n]` (create/update a session for an offer: answer `port [ip [4|6]]`),
//! `L<opts> …` (the same for an answer: look up an existing session), `D callid from_tag
//! [to_tag]` (delete). Over UDP every command starts with a cookie (`<pid>_<seq> `)
//! that the reply repeats; the request is sent up to `rtpproxy_retr` times, waiting
//! `rtpproxy_tout` seconds for the reply each time. Over a Unix stream socket
//! (`unix:/path`) there is no cookie: connect, write, read one reply (reads and
//! writes time out after `rtpproxy_tout` too).
//!
//! Several proxies: `rtpproxy_sock` is a space-separated list of `udp:host:port`,
//! `udp6:host:port` or `unix:/path`, each optionally `=weight`. A call goes to a proxy
//! chosen by a hash of its Call-ID over the weights of the enabled proxies (1.2's
//! `select_rtpp_node`), so every command of a call reaches the same proxy while the set
//! does not change. A proxy that fails (timeout, error) is disabled for
//! `rtpproxy_disable_tout` seconds (for good if negative) and re-tested with `V` when
//! that time is over. The enabled/disabled state lives in shared memory, so all
//! processes see it and MI `nh_enable_rtpp` can change it; sockets are per process.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use openser_core::relay::{callid_hash, pick};

/// The base protocol version rtpproxy answers to `V`.
pub const SUP_CPROTOVER: &str = "20040107";
/// The protocol extension nathelper needs (`VF`).
pub const REQ_CPROTOVER: &str = "20050322";

/// How a proxy is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Udp(String),
    Udp6(String),
    Unix(String),
}

/// One configured proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// as configured, without the weight (`udp:127.0.0.1:22222`)
    pub url: String,
    pub addr: Addr,
    pub weight: u32,
}

/// Parse `rtpproxy_sock`: space-separated `[udp:|udp6:|unix:]address[=weight]`
/// (no scheme = Unix socket path, as 1.2).
pub fn parse_nodes(s: &str) -> Result<Vec<Node>, String> {
    let mut v = Vec::new();
    for item in s.split_whitespace() {
        let (url, weight) = openser_core::relay::split_weight(item, "rtpproxy_sock")?;
        let addr = if let Some(a) = url.strip_prefix("udp:") {
            Addr::Udp(a.to_string())
        } else if let Some(a) = url.strip_prefix("udp6:") {
            Addr::Udp6(a.to_string())
        } else if let Some(a) = url.strip_prefix("unix:") {
            Addr::Unix(a.to_string())
        } else {
            Addr::Unix(url.to_string())
        };
        match &addr {
            Addr::Udp(a) | Addr::Udp6(a) if a.is_empty() => {
                return Err(format!("empty address in rtpproxy_sock `{item}`"));
            }
            Addr::Unix(a) if a.is_empty() => {
                return Err(format!("empty path in rtpproxy_sock `{item}`"));
            }
            _ => {}
        }
        v.push(Node {
            url: url.to_string(),
            addr,
            weight,
        });
    }
    Ok(v)
}

/// The UDP address of `host:port` (port 22222 if none, as 1.2's `CPORT`).
fn udp_target(a: &str, v6: bool) -> Result<SocketAddr, String> {
    let a = a.trim();
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, p) = rest.split_once(']').ok_or("bad IPv6 reference")?;
        (
            h.to_string(),
            p.strip_prefix(':').unwrap_or("22222").to_string(),
        )
    } else if v6 && a.matches(':').count() > 1 {
        (a.to_string(), "22222".to_string())
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.to_string()),
            None => (a.to_string(), "22222".to_string()),
        }
    };
    let port: u16 = port.parse().map_err(|_| format!("bad port in `{a}`"))?;
    (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .find(|s| s.is_ipv6() == v6)
        .ok_or_else(|| {
            format!(
                "no {} address for `{host}`",
                if v6 { "IPv6" } else { "IPv4" }
            )
        })
}

/// Timing of the control protocol.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// wait for one reply
    pub tout: Duration,
    /// attempts over UDP
    pub retr: u32,
    /// seconds a failed proxy stays disabled; negative = until enabled by MI
    pub disable_tout: i64,
}

/// The shared state of one proxy: 0 = enabled, else the time (unix seconds) from which
/// it may be re-tested; `u64::MAX` = disabled until MI enables it.
pub struct Shared(&'static [AtomicU64]);

pub const DISABLED_FOR_GOOD: u64 = u64::MAX;

impl Shared {
    /// `n` entries in shm if it exists (else private memory: unit tests, `-c`).
    pub fn new(n: usize) -> Shared {
        if shm_ready()
            && let Some(s) = shm::alloc_static_slice_with(n, |_| AtomicU64::new(0))
        {
            return Shared(s);
        }
        let v: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
        Shared(Box::leak(v.into_boxed_slice()))
    }
    pub fn get(&self, i: usize) -> u64 {
        self.0
            .get(i)
            .map(|a| a.load(Ordering::Relaxed))
            .unwrap_or(0)
    }
    pub fn set(&self, i: usize, v: u64) {
        if let Some(a) = self.0.get(i) {
            a.store(v, Ordering::Relaxed);
        }
    }
}

fn shm_ready() -> bool {
    shm::is_initialized()
}

/// A set of proxies with their shared state.
pub struct Set {
    pub nodes: Vec<Node>,
    pub state: Shared,
}

impl Set {
    pub fn new(nodes: Vec<Node>) -> Set {
        let n = nodes.len();
        Set {
            nodes,
            state: Shared::new(n),
        }
    }
    pub fn is_disabled(&self, i: usize) -> bool {
        self.state.get(i) != 0
    }
}

thread_local! {
    /// Per process: a connected UDP socket per proxy, and the cookie counter.
    static SOCKS: RefCell<Vec<Option<UdpSocket>>> = const { RefCell::new(Vec::new()) };
    static SEQ: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn cookie() -> String {
    let n = SEQ.with(|s| {
        let v = s.get();
        s.set(v.wrapping_add(1));
        v
    });
    format!("{}_{} ", openser_core::sys::getpid(), n)
}

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdError {
    Io(String),
    Timeout,
}

impl std::fmt::Display for CmdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CmdError::Io(e) => f.write_str(e),
            CmdError::Timeout => f.write_str("timeout waiting reply from a RTP proxy"),
        }
    }
}

fn udp_socket(i: usize, node: &Node) -> Result<UdpSocket, CmdError> {
    if let Some(s) = SOCKS.with(|v| {
        v.borrow()
            .get(i)
            .and_then(|s| s.as_ref().and_then(|s| s.try_clone().ok()))
    }) {
        return Ok(s);
    }
    let (a, v6) = match &node.addr {
        Addr::Udp(a) => (a, false),
        Addr::Udp6(a) => (a, true),
        Addr::Unix(_) => return Err(CmdError::Io("not a UDP proxy".into())),
    };
    let to = udp_target(a, v6).map_err(CmdError::Io)?;
    let bind: SocketAddr = if v6 {
        "[::]:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    };
    let s = UdpSocket::bind(bind).map_err(|e| CmdError::Io(format!("can't create socket: {e}")))?;
    s.connect(to)
        .map_err(|e| CmdError::Io(format!("can't connect to a RTP proxy: {e}")))?;
    let keep = s
        .try_clone()
        .map_err(|e| CmdError::Io(format!("socket: {e}")))?;
    SOCKS.with(|v| {
        let mut v = v.borrow_mut();
        if v.len() <= i {
            v.resize_with(i + 1, || None);
        }
        v[i] = Some(keep);
    });
    Ok(s)
}

fn drop_udp_socket(i: usize) {
    SOCKS.with(|v| {
        if let Some(s) = v.borrow_mut().get_mut(i) {
            *s = None;
        }
    });
}

/// Send `cmd` (without cookie) to `node` and return the reply without its cookie
/// and line end. Blocks at most `tout × retr` (UDP) or `2 × tout` plus the connect
/// (Unix socket).
pub fn send_command(i: usize, node: &Node, cmd: &str, t: &Timing) -> Result<String, CmdError> {
    match &node.addr {
        Addr::Unix(path) => send_unix(path, cmd, t),
        _ => {
            let r = send_udp(i, node, cmd, t);
            if matches!(r, Err(CmdError::Io(_))) {
                drop_udp_socket(i);
            }
            r
        }
    }
}

fn send_unix(path: &str, cmd: &str, t: &Timing) -> Result<String, CmdError> {
    // The reply can take up to the timeout: let the other receivers read meanwhile.
    openser_core::transport::turn::let_others_read();
    let mut s = UnixStream::connect(path)
        .map_err(|e| CmdError::Io(format!("can't connect to RTP proxy {path}: {e}")))?;
    let tout = Some(t.tout.max(Duration::from_millis(1)));
    let _ = s.set_read_timeout(tout);
    let _ = s.set_write_timeout(tout);
    s.write_all(cmd.as_bytes())
        .map_err(|e| CmdError::Io(format!("can't send command to a RTP proxy: {e}")))?;
    let mut buf = [0u8; 256];
    let n = loop {
        match s.read(&mut buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(CmdError::Timeout);
            }
            Err(e) => return Err(CmdError::Io(format!("can't read reply: {e}"))),
        }
    };
    if n == 0 {
        return Err(CmdError::Io("can't read reply from a RTP proxy".into()));
    }
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
}

fn send_udp(i: usize, node: &Node, cmd: &str, t: &Timing) -> Result<String, CmdError> {
    let s = udp_socket(i, node)?;
    let mut buf = [0u8; 1024];
    // Drain stale replies (late answers to earlier, timed-out commands).
    let _ = s.set_nonblocking(true);
    while s.recv(&mut buf).is_ok() {}
    let _ = s.set_nonblocking(false);
    // The reply can take up to the timeout: let the other receivers read meanwhile.
    openser_core::transport::turn::let_others_read();
    let ck = cookie();
    let ck_id = ck.trim_end();
    let mut pkt = Vec::with_capacity(ck.len() + cmd.len());
    pkt.extend_from_slice(ck.as_bytes());
    pkt.extend_from_slice(cmd.as_bytes());
    for _ in 0..t.retr.max(1) {
        loop {
            match s.send(&pkt) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(CmdError::Io(format!(
                        "can't send command to a RTP proxy: {e}"
                    )));
                }
            }
        }
        let deadline = Instant::now() + t.tout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = s.set_read_timeout(Some(left));
            match s.recv(&mut buf) {
                Ok(n) => {
                    let r = &buf[..n];
                    let Some(rest) = r.strip_prefix(ck_id.as_bytes()) else {
                        continue; // someone else's cookie
                    };
                    if !rest.is_empty() && rest[0] != b' ' {
                        continue;
                    }
                    return Ok(String::from_utf8_lossy(rest).trim().to_string());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => {
                    return Err(CmdError::Io(format!(
                        "can't read reply from a RTP proxy: {e}"
                    )));
                }
            }
        }
    }
    Err(CmdError::Timeout)
}

/// 1.2's `rtpp_test`: `V` must answer the supported version and `VF 20050322` `1`.
pub fn test_node(i: usize, node: &Node, t: &Timing) -> Result<(), String> {
    let v = send_command(i, node, "V", t).map_err(|e| format!("can't get version: {e}"))?;
    if v.trim() != SUP_CPROTOVER {
        return Err(format!(
            "unsupported version of RTP proxy <{}> found: {SUP_CPROTOVER} supported, {v} present",
            node.url
        ));
    }
    let f = send_command(i, node, &format!("VF {REQ_CPROTOVER}"), t)
        .map_err(|e| format!("RTP proxy went down during version query: {e}"))?;
    if f.starts_with('E') || f.trim() != "1" {
        return Err(format!(
            "RTP proxy <{}> doesn't support required protocol version {REQ_CPROTOVER}",
            node.url
        ));
    }
    Ok(())
}

/// Disable proxy `i` after a failure (for `disable_tout` seconds, or for good).
pub fn disable(set: &Set, i: usize, t: &Timing, now: i64) {
    let v = if t.disable_tout < 0 {
        DISABLED_FOR_GOOD
    } else {
        (now + t.disable_tout).max(1) as u64
    };
    set.state.set(i, v);
}

/// Choose the proxy for `callid`: re-test disabled proxies whose time has come, then
/// pick by hash over the weights of the enabled ones. `None` if none is enabled.
pub fn select(set: &Set, callid: &str, t: &Timing, now: i64) -> Option<usize> {
    if set.nodes.is_empty() {
        return None;
    }
    for (i, node) in set.nodes.iter().enumerate() {
        let st = set.state.get(i);
        if st != 0 && st != DISABLED_FOR_GOOD && st <= now.max(0) as u64 {
            match test_node(i, node, t) {
                Ok(()) => {
                    openser_core::log_info!(
                        "rtp proxy <{}> found, support for it re-enabled",
                        node.url
                    );
                    set.state.set(i, 0);
                }
                Err(e) => {
                    openser_core::log_warn!(
                        "{e}; support for RTP proxy <{}> stays disabled",
                        node.url
                    );
                    disable(set, i, t, now);
                }
            }
        }
    }
    let weights: Vec<u32> = set
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| if set.is_disabled(i) { 0 } else { n.weight })
        .collect();
    pick(&weights, callid_hash(callid))
}

/// Send `cmd` to the proxy chosen for `callid`; a failing proxy is disabled and the
/// next one tried, as 1.2 does. Returns the reply.
pub fn command(set: &Set, callid: &str, cmd: &str, t: &Timing) -> Result<String, String> {
    loop {
        let now = openser_core::clock::now();
        let Some(i) = select(set, callid, t, now) else {
            return Err("no available proxies".into());
        };
        let node = &set.nodes[i];
        match send_command(i, node, cmd, t) {
            Ok(r) => return Ok(r),
            Err(e) => {
                openser_core::log_err!("proxy <{}> does not respond ({e}), disable it", node.url);
                disable(set, i, t, now);
            }
        }
    }
}

/// The parsed answer to `U`/`L`: port, and the address if the proxy gave one.
pub fn parse_reply(r: &str) -> Result<(u16, Option<String>, bool), String> {
    let toks: Vec<&str> = r.split_whitespace().collect();
    let Some(first) = toks.first() else {
        return Err("no reply from rtp proxy".into());
    };
    if first.starts_with('E') {
        return Err(format!("rtp proxy error `{r}`"));
    }
    let port: i64 = first.parse().unwrap_or(0);
    if port <= 0 || port > 65535 {
        return Err(format!("incorrect port {first} in reply from rtp proxy"));
    }
    let v6 = toks.get(2).is_some_and(|t| t.starts_with('6'));
    Ok((port as u16, toks.get(1).map(|s| s.to_string()), v6))
}

static EMPTY: OnceLock<Set> = OnceLock::new();

/// A set with no proxies (`rtpproxy_disable`).
pub fn empty() -> &'static Set {
    EMPTY.get_or_init(|| Set::new(Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_list() {
        let v =
            parse_nodes("udp:127.0.0.1:22222=2  unix:/var/run/rtpproxy.sock udp6:[::1]:7").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].addr, Addr::Udp("127.0.0.1:22222".into()));
        assert_eq!(v[0].weight, 2);
        assert_eq!(v[0].url, "udp:127.0.0.1:22222");
        assert_eq!(v[1].addr, Addr::Unix("/var/run/rtpproxy.sock".into()));
        assert_eq!(v[2].addr, Addr::Udp6("[::1]:7".into()));
        assert!(parse_nodes("udp:1.2.3.4:5=x").is_err());
        assert!(parse_nodes("udp:").is_err());
        assert_eq!(
            udp_target("127.0.0.1", false).unwrap(),
            "127.0.0.1:22222".parse().unwrap()
        );
        assert_eq!(
            udp_target("[::1]:9", true).unwrap(),
            "[::1]:9".parse().unwrap()
        );
    }

    #[test]
    fn weighted_choice() {
        assert_eq!(pick(&[1], 200), Some(0));
        assert_eq!(pick(&[0, 0], 5), None);
        assert_eq!(pick(&[1, 3], 0), Some(0));
        assert_eq!(pick(&[1, 3], 1), Some(1));
        assert_eq!(pick(&[1, 3], 3), Some(1));
        assert_eq!(pick(&[0, 3], 0), Some(1));
        // All calls spread by weight.
        let mut n = [0u32; 2];
        for h in 0..256 {
            n[pick(&[1, 3], h).unwrap()] += 1;
        }
        assert_eq!(n, [64, 192]);
        assert_eq!(callid_hash("ab"), (97 + 98) & 0xff);
    }

    #[test]
    fn replies() {
        assert_eq!(
            parse_reply("30000 203.0.113.2 4").unwrap(),
            (30000, Some("203.0.113.2".into()), false)
        );
        assert_eq!(parse_reply("30000").unwrap(), (30000, None, false));
        assert_eq!(
            parse_reply("4000 2001:db8::1 6").unwrap(),
            (4000, Some("2001:db8::1".into()), true)
        );
        assert!(parse_reply("E7").is_err());
        assert!(parse_reply("").is_err());
        assert!(parse_reply("70000").is_err());
    }

    #[test]
    fn udp_cookie_retry_and_timeout() {
        // A proxy that answers the second copy of each command only, with a stale
        // reply first.
        let srv = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = srv.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            let (n, from) = srv.recv_from(&mut buf).unwrap();
            let first = String::from_utf8_lossy(&buf[..n]).to_string();
            let (n2, _) = srv.recv_from(&mut buf).unwrap();
            assert_eq!(first, String::from_utf8_lossy(&buf[..n2]));
            let ck = first.split(' ').next().unwrap().to_string();
            srv.send_to(b"999_1 stale", from).unwrap();
            srv.send_to(format!("{ck} 20040107\n").as_bytes(), from)
                .unwrap();
        });
        let node = &parse_nodes(&format!("udp:127.0.0.1:{port}")).unwrap()[0];
        let t = Timing {
            tout: Duration::from_millis(300),
            retr: 3,
            disable_tout: 60,
        };
        assert_eq!(send_command(0, node, "V", &t).unwrap(), "20040107");
        h.join().unwrap();
        // Nobody answers now: Timeout after retr attempts (the socket stays bound).
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let node2 = &parse_nodes(&format!("udp:{}", silent.local_addr().unwrap())).unwrap()[0];
        let t2 = Timing {
            tout: Duration::from_millis(50),
            retr: 2,
            disable_tout: 60,
        };
        assert_eq!(send_command(1, node2, "V", &t2), Err(CmdError::Timeout));
        let mut buf = [0u8; 64];
        silent
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        for _ in 0..2 {
            let n = silent.recv(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).ends_with(" V"));
        }
    }

    #[test]
    fn unix_socket_control() {
        use std::os::unix::net::UnixListener;
        let dir = std::env::temp_dir().join(format!("nh-rtpp-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("rtpproxy.sock");
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap();
        let h = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 256];
            let n = c.read(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"U c1 203.0.113.1 4000 f1;1");
            c.write_all(b"30000 203.0.113.2\n").unwrap();
        });
        let node = &parse_nodes(&format!("unix:{}", path.display())).unwrap()[0];
        let t = Timing {
            tout: Duration::from_secs(2),
            retr: 1,
            disable_tout: 60,
        };
        let r = send_command(0, node, "U c1 203.0.113.1 4000 f1;1", &t).unwrap();
        assert_eq!(
            parse_reply(&r).unwrap(),
            (30000, Some("203.0.113.2".into()), false)
        );
        h.join().unwrap();
        // Nobody listening: an error, not a hang.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            send_command(0, node, "V", &t),
            Err(CmdError::Io(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn disable_and_reenable() {
        let set = Set::new(parse_nodes("udp:127.0.0.1:9=1 udp:127.0.0.1:10=1").unwrap());
        let t = Timing {
            tout: Duration::from_millis(10),
            retr: 1,
            disable_tout: 60,
        };
        disable(&set, 0, &t, 1000);
        assert_eq!(set.state.get(0), 1060);
        assert!(set.is_disabled(0));
        let weights: Vec<u32> = (0..2)
            .map(|i| if set.is_disabled(i) { 0 } else { 1 })
            .collect();
        assert_eq!(pick(&weights, 0), Some(1));
        let forever = Timing {
            disable_tout: -1,
            ..t
        };
        disable(&set, 1, &forever, 1000);
        assert_eq!(set.state.get(1), DISABLED_FOR_GOOD);
    }
}
