//! Sending datagrams: socket choice, name resolution, URI destinations.

use crate::globals;
use crate::parser::SipMsg;
use crate::parser::msg::Proto;
use crate::parser::uri::UriRef;
use crate::transport::socket::sockets;
use std::net::{IpAddr, SocketAddr};

/// Send `buf` from listen socket `sock_idx` to `to`: a datagram from a UDP socket;
/// from a TCP socket, over the connection to `to` (handed to tcp main, see
/// [`super::tcp`]). The name is historical: every sender goes through here.
pub fn send_udp(sock_idx: usize, to: SocketAddr, buf: &[u8]) -> std::io::Result<()> {
    let socks = sockets();
    let si = socks
        .get(sock_idx)
        .or_else(|| socks.first())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotConnected, "no listen socket"))?;
    if let Some(list) = crate::dns::blacklist::check_static(si.proto, to, buf) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("destination {to} blacklisted by list '{list}'"),
        ));
    }
    match si.proto {
        crate::globals::Proto::Tcp => {
            return super::tcp::send(super::tcp::P_TCP, sock_idx, to, buf);
        }
        crate::globals::Proto::Tls => {
            return super::tcp::send(super::tcp::P_TLS, sock_idx, to, buf);
        }
        _ => {}
    }
    let sock = si
        .udp
        .as_ref()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotConnected, "socket not bound"))?;
    loop {
        match sock.send_to(buf, to) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The UDP socket to send to `to` from: see [`choose_socket_for`].
pub fn choose_socket(to: &SocketAddr, forced: Option<usize>) -> usize {
    choose_socket_for(to, Proto::Udp, forced)
}

/// The socket to send to `to` over `proto` from: the forced one if it exists, else
/// the first socket of that transport and the same address family (OpenSER's default
/// send socket), else the first of that transport, else the first.
pub fn choose_socket_for(to: &SocketAddr, proto: Proto, forced: Option<usize>) -> usize {
    let socks = sockets();
    if let Some(f) = forced
        && f < socks.len()
    {
        return f;
    }
    let want = proto_of(proto);
    socks
        .iter()
        .position(|s| s.proto == want && s.addr.is_ipv4() == to.is_ipv4())
        .or_else(|| socks.iter().position(|s| s.proto == want))
        .unwrap_or(0)
}

/// A parsed transport as the socket table names it.
pub fn proto_of(p: Proto) -> crate::globals::Proto {
    match p {
        Proto::Udp => crate::globals::Proto::Udp,
        Proto::Tcp => crate::globals::Proto::Tcp,
        Proto::Tls => crate::globals::Proto::Tls,
    }
}

/// The transport of listen socket `sock_idx` (UDP if there is none).
pub fn socket_proto(sock_idx: usize) -> Proto {
    match sockets().get(sock_idx).map(|s| s.proto) {
        Some(crate::globals::Proto::Tcp) => Proto::Tcp,
        Some(crate::globals::Proto::Tls) => Proto::Tls,
        _ => Proto::Udp,
    }
}

/// Resolve `host` (IP literal, `[IPv6]`, or a name through A, then AAAA when
/// `dns_try_ipv6`) with `port`, through the DNS cache and resolver ([`crate::dns`]):
/// a lookup waits at most `dns_retr_time × dns_retr_no`.
pub fn resolve_host(host: &str, port: u16) -> Result<SocketAddr, String> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    if h.is_empty() {
        return Err("empty host".into());
    }
    let ips = crate::dns::host_addrs(h, crate::dns::resolver::Deadline::new())?;
    ips.first()
        .map(|ip| SocketAddr::new(*ip, port))
        .ok_or_else(|| format!("could not resolve {h}"))
}

/// Every target for a request to `uri`, in the order RFC 3263 gives (see
/// [`crate::dns::targets`]): maddr or host, the explicit port and transport if any
/// (`sips:` → TLS). A transport this server does not serve, or does not know, is an
/// error: the request is not sent over another one.
pub fn uri_targets(uri: &str) -> Result<Vec<crate::dns::Target>, String> {
    uri_targets_with(uri, false)
}

/// [`uri_targets`], from the DNS cache alone when `cached_only` (no query: for
/// callers holding a lock).
pub fn uri_targets_with(uri: &str, cached_only: bool) -> Result<Vec<crate::dns::Target>, String> {
    let u = UriRef::parse(uri).map_err(|e| format!("bad uri <{uri}>: {e:?}"))?;
    let sips = u.scheme == crate::parser::uri::UriScheme::Sips;
    let transport = u.transport();
    crate::transport::served::check_uri_transport(uri, sips, transport)?;
    let proto = if sips {
        Some(Proto::Tls)
    } else {
        match transport {
            Some(t) => Some(
                Proto::from_name(t.as_bytes())
                    .ok_or_else(|| format!("<{uri}>: unknown transport '{t}'"))?,
            ),
            None => None,
        }
    };
    let host = u.maddr().unwrap_or_else(|| u.host_unbracketed());
    if cached_only {
        crate::dns::targets_cached(host, u.port, proto, sips)
    } else {
        crate::dns::targets(host, u.port, proto, sips)
    }
}

/// Where a request for `uri` goes: the first of its targets ([`uri_targets`]) that
/// is not on the dynamic blacklist.
pub fn uri_destination(uri: &str) -> Result<(SocketAddr, Proto), String> {
    let ts = uri_targets(uri)?;
    let t = crate::dns::pick(&ts, &[]).ok_or_else(|| format!("<{uri}>: no destination"))?;
    Ok((t.addr, t.proto))
}

/// Host and port to advertise for socket `sock_idx` (advertised_address/port win).
pub fn advertised(sock_idx: usize) -> (&'static str, u16) {
    let g = globals::get();
    let si = sockets().get(sock_idx).or_else(|| sockets().first());
    let host = match (&g.advertised_address, si) {
        (Some(a), _) => a.as_str(),
        (None, Some(s)) => s.via_host(),
        (None, None) => "127.0.0.1",
    };
    let port = match (g.advertised_port, si) {
        (Some(p), _) => p,
        (None, Some(s)) => s.port,
        (None, None) => 5060,
    };
    (host, port)
}

/// Our Via for a request leaving on `sock_idx` with `branch`.
pub fn our_via<'a>(sock_idx: usize, branch: &'a str, msg: &SipMsg) -> crate::msg::ViaParams<'a> {
    let (host, port) = advertised(sock_idx);
    crate::msg::ViaParams {
        host,
        port,
        proto: socket_proto(sock_idx),
        branch,
        rport: msg.local_rport,
        extra_params: "",
    }
}
