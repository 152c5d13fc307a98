//! Listen sockets: resolved and bound by the attendant before forking, inherited by
//! every receiver. The list is frozen with [`set_sockets`] and read with [`sockets`].

use crate::globals::{HostPort, Proto};
use crate::sys;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

/// One bound listen socket.
#[derive(Debug)]
pub struct SocketInfo {
    pub proto: Proto,
    /// The address bound.
    pub addr: SocketAddr,
    /// The name as written (host name or IP), used for aliases and display.
    pub name: String,
    /// `ip` text (IPv6 without brackets).
    pub address_str: String,
    pub port: u16,
    pub udp: Option<UdpSocket>,
    /// The listening socket of a TCP listen address (accepted by tcp main).
    pub tcp: Option<std::net::TcpListener>,
    /// Receive buffer size the kernel granted.
    pub rcvbuf: usize,
    /// The host as it goes into a Via or Record-Route (IPv6 in brackets), made once.
    pub via_host: String,
    /// `udp:127.0.0.1:5060` (usrloc's `socket` column, `received` sockets), made once.
    pub sock_text: String,
}

impl SocketInfo {
    /// A socket description (bound or not) with its texts made once.
    pub fn new(
        proto: Proto,
        addr: SocketAddr,
        name: String,
        udp: Option<UdpSocket>,
        rcvbuf: usize,
    ) -> SocketInfo {
        let via_host = match addr.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        let sock_text = format!(
            "{}:{via_host}:{}",
            proto.as_str().to_ascii_lowercase(),
            addr.port()
        );
        SocketInfo {
            proto,
            addr,
            address_str: addr.ip().to_string(),
            port: addr.port(),
            name,
            udp,
            tcp: None,
            rcvbuf,
            via_host,
            sock_text,
        }
    }
    /// `127.0.0.1:5060` / `[::1]:5060`.
    pub fn hostport(&self) -> String {
        match self.addr.ip() {
            IpAddr::V6(ip) => format!("[{ip}]:{}", self.port),
            IpAddr::V4(ip) => format!("{ip}:{}", self.port),
        }
    }
    /// Host as it goes into a Via or Record-Route (IPv6 in brackets).
    pub fn via_host(&self) -> &str {
        &self.via_host
    }
}

/// An alias: extra host[:port] matched by `myself`. Port 0 = any port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub proto: Proto,
    pub host: String,
    pub port: u16,
}

static SOCKETS: OnceLock<Vec<SocketInfo>> = OnceLock::new();
static ALIASES: OnceLock<Vec<Alias>> = OnceLock::new();

pub fn set_sockets(s: Vec<SocketInfo>, aliases: Vec<Alias>) {
    let _ = SOCKETS.set(s);
    let _ = ALIASES.set(aliases);
}

pub fn sockets() -> &'static [SocketInfo] {
    SOCKETS.get().map(|v| v.as_slice()).unwrap_or(&[])
}

pub fn aliases() -> &'static [Alias] {
    ALIASES.get().map(|v| v.as_slice()).unwrap_or(&[])
}

/// Bind one TCP listening socket (see [`bind_stream`]).
pub fn bind_tcp(addr: SocketAddr, name: String) -> Result<SocketInfo, String> {
    bind_stream(Proto::Tcp, addr, name)
}

/// Listen addresses to bind: each `listen`, resolved. With no `listen` at all, every
/// local IPv4 address (OpenSER listens on all interfaces by default). A TLS line
/// without a port gets `tls_port_no`.
pub fn resolve_listen(
    listen: &[HostPort],
    default_port: u16,
    tls_port: u16,
) -> Result<Vec<(Proto, SocketAddr, String)>, String> {
    let mut out: Vec<(Proto, SocketAddr, String)> = Vec::new();
    let mut push = |p: Proto, a: SocketAddr, n: String| {
        if !out.iter().any(|(pp, aa, _)| *pp == p && *aa == a) {
            out.push((p, a, n));
        }
    };
    if listen.is_empty() {
        for ip in sys::interface_addrs() {
            push(
                Proto::Udp,
                SocketAddr::new(ip, default_port),
                ip.to_string(),
            );
        }
    }
    for hp in listen {
        // The config loader refuses unserved protocols at their file:line:col; this
        // is the last guard (never a silent downgrade to UDP).
        crate::transport::served::check_listen(hp.proto)?;
        let proto = match hp.proto {
            Proto::Any => Proto::Udp,
            p => p,
        };
        let port = match hp.port {
            0 if proto == Proto::Tls => tls_port,
            0 => default_port,
            p => p,
        };
        let addrs: Vec<SocketAddr> = if let Ok(ip) = hp.host.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else if let Some(ips) = sys::interface_addrs_of(&hp.host) {
            ips.into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect()
        } else {
            (hp.host.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| format!("could not resolve listen address {}: {e}", hp.host))?
                .filter(|a| a.is_ipv4())
                .take(1)
                .collect()
        };
        if addrs.is_empty() {
            return Err(format!("could not resolve listen address {}", hp.host));
        }
        for a in addrs {
            push(proto, a, hp.host.clone());
        }
    }
    Ok(out)
}

/// Bind one UDP socket and grow its receive buffer up to `maxbuffer` (OpenSER's
/// auto-probe: the largest size the kernel accepts, halving on refusal).
pub fn bind_udp(addr: SocketAddr, name: String, maxbuffer: usize) -> Result<SocketInfo, String> {
    let sock = UdpSocket::bind(addr).map_err(|e| format!("bind({addr}) failed: {e}"))?;
    let fd = sock.as_raw_fd();
    let mut want = maxbuffer.min(i32::MAX as usize) as i32;
    while want >= 4096 {
        if sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, want).is_ok() {
            break;
        }
        want /= 2;
    }
    let rcvbuf = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap_or(0) as usize;
    let local = sock.local_addr().map_err(|e| format!("getsockname: {e}"))?;
    Ok(SocketInfo::new(Proto::Udp, local, name, Some(sock), rcvbuf))
}

/// Bind one TCP (or TLS: `proto`) listening socket (`SO_REUSEADDR`; accepted by
/// tcp main).
pub fn bind_stream(proto: Proto, addr: SocketAddr, name: String) -> Result<SocketInfo, String> {
    let l = std::net::TcpListener::bind(addr)
        .map_err(|e| format!("bind({} {addr}) failed: {e}", proto.as_str()))?;
    let local = l.local_addr().map_err(|e| format!("getsockname: {e}"))?;
    let mut si = SocketInfo::new(proto, local, name, None, 0);
    si.tcp = Some(l);
    Ok(si)
}

/// Is `host[:port]` one of our addresses or aliases (`myself`)? Port 0 = default 5060.
pub fn is_myself(host: &str, port: u16) -> bool {
    let port = if port == 0 { 5060 } else { port };
    let h = host.trim_start_matches('[').trim_end_matches(']');
    let ip = h.parse::<IpAddr>().ok();
    for s in sockets() {
        if s.port != port {
            continue;
        }
        if let Some(ip) = ip {
            if ip == s.addr.ip() {
                return true;
            }
        } else if s.name.eq_ignore_ascii_case(h) {
            return true;
        }
    }
    aliases().iter().any(|a| {
        (a.port == 0 || a.port == port)
            && a.host
                .trim_matches(|c| c == '[' || c == ']')
                .eq_ignore_ascii_case(h)
    })
}

/// The `Listening on` / `Aliases:` block OpenSER prints at start-up.
pub fn listening_text() -> String {
    let mut s = String::from("Listening on \n");
    for si in sockets() {
        s.push_str(&format!(
            "             {}: {} [{}]:{}\n",
            si.proto.as_str(),
            si.name,
            si.address_str,
            si.port
        ));
    }
    s.push_str("Aliases: \n");
    for a in aliases() {
        let port = if a.port == 0 {
            "*".to_string()
        } else {
            a.port.to_string()
        };
        s.push_str(&format!(
            "             {}: {}:{}\n",
            a.proto.as_str(),
            a.host,
            port
        ));
    }
    s
}
