//! Sending datagrams: socket choice, name resolution, URI destinations.

use crate::globals;
use crate::parser::SipMsg;
use crate::parser::msg::Proto;
use crate::parser::uri::UriRef;
use crate::transport::socket::sockets;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// Send `buf` from listen socket `sock_idx` to `to`: a datagram from a UDP socket;
/// from a TCP socket, over the connection to `to` (handed to tcp main, see
/// [`super::tcp`]). The name is historical: every sender goes through here.
pub fn send_udp(sock_idx: usize, to: SocketAddr, buf: &[u8]) -> std::io::Result<()> {
    let socks = sockets();
    let si = socks
        .get(sock_idx)
        .or_else(|| socks.first())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotConnected, "no listen socket"))?;
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

/// Resolve `host` (IP literal, `[IPv6]`, or a name through A/AAAA) with `port`.
pub fn resolve_host(host: &str, port: u16) -> Result<SocketAddr, String> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    if h.is_empty() {
        return Err("empty host".into());
    }
    // A DNS lookup can wait: let the other receivers read meanwhile.
    crate::transport::turn::let_others_read();
    let want_v6 = globals::get().dns_try_ipv6;
    let addrs: Vec<SocketAddr> = (h, port)
        .to_socket_addrs()
        .map_err(|e| format!("could not resolve {h}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| if want_v6 { addrs.first() } else { None })
        .copied()
        .ok_or_else(|| format!("could not resolve {h}"))
}

/// Where a request for `uri` goes: maddr or host, port (default 5060/5061), and
/// the transport (`sips:` → TLS, else the transport parameter, else UDP). A transport
/// this server does not serve, or does not know, is an error: the request is not
/// sent over another one.
pub fn uri_destination(uri: &str) -> Result<(SocketAddr, Proto), String> {
    let u = UriRef::parse(uri).map_err(|e| format!("bad uri <{uri}>: {e:?}"))?;
    let sips = u.scheme == crate::parser::uri::UriScheme::Sips;
    let transport = u.transport();
    crate::transport::served::check_uri_transport(uri, sips, transport)?;
    let proto = if sips {
        Proto::Tls
    } else {
        match transport {
            Some(t) => Proto::from_name(t.as_bytes())
                .ok_or_else(|| format!("<{uri}>: unknown transport '{t}'"))?,
            None => Proto::Udp,
        }
    };
    let host = u.maddr().unwrap_or_else(|| u.host_unbracketed());
    let port = u.port_or_default();
    Ok((resolve_host(host, port)?, proto))
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
