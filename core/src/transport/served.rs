//! Which transports this server serves.
//!
//! A configuration that passes `-c` and then fails in traffic is the worst kind of
//! failure, so every place that names a transport is checked against this set before
//! the server starts: `listen` lines (by the config loader, at their `file:line:col`),
//! `forward`/`send`/`t_relay` destinations, `forward_tcp`-style functions and constant
//! destination URIs (`;transport=`, `sips:`) in the script (by their fixups). At run
//! time a destination on a transport that is not served is an error of that one
//! request, never a silent fall-back to UDP.
//!
//! The set is written once by the config loader (attendant, before the script is fixed
//! up and before fork) and read by every process: configuration state.

use crate::globals::{Globals, Proto};
use std::sync::atomic::{AtomicU8, Ordering};

/// The transports this build implements (SCTP is not built).
pub const BUILT: &[Proto] = &[Proto::Udp, Proto::Tcp, Proto::Tls];

const UDP: u8 = 1;
const TCP: u8 = 2;
const TLS: u8 = 4;

/// Served transports (bits above). UDP until the loader says otherwise (unit tests).
static SERVED: AtomicU8 = AtomicU8::new(UDP);

fn bit(p: Proto) -> u8 {
    match p {
        Proto::Udp => UDP,
        Proto::Tcp => TCP,
        Proto::Tls => TLS,
        Proto::Any => UDP | TCP | TLS,
    }
}

/// Does this build implement transport `p`?
pub fn is_built(p: Proto) -> bool {
    BUILT.contains(&p)
}

/// A `listen` entry's protocol: `Err` names it when this server cannot serve it.
pub fn check_listen(p: Proto) -> Result<(), String> {
    if p == Proto::Any || is_built(p) {
        Ok(())
    } else {
        Err(format!(
            "listen on {}: the {} transport is not supported by this server (it serves {})",
            p.as_str(),
            p.as_str().to_ascii_uppercase(),
            built_list()
        ))
    }
}

/// The text of an SCTP `listen` (SCTP is never built).
pub fn sctp_listen_error() -> String {
    format!(
        "listen on sctp: the SCTP transport is not supported by this server (it serves {})",
        built_list()
    )
}

fn built_list() -> String {
    BUILT
        .iter()
        .map(|p| p.as_str().to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The served set for `g`: the protocols of its `listen` lines, minus `disable_tcp`.
/// A line without a protocol, or no `listen` at all, serves UDP (1.2 also listened on
/// TCP then: here TCP is served where a `listen=tcp:` asks for it).
pub fn served_by(g: &Globals) -> u8 {
    let built: u8 = BUILT.iter().fold(0, |m, p| m | bit(*p));
    let mut m = if g.listen.is_empty() { UDP } else { 0 };
    for hp in &g.listen {
        m |= match hp.proto {
            Proto::Any => UDP,
            p => bit(p) & built,
        };
    }
    if g.disable_tcp {
        // TLS runs over TCP
        m &= !(TCP | TLS);
    }
    if g.tls.disable {
        m &= !TLS;
    }
    m
}

/// Record the served set (config loader, before fixup).
pub fn set_from(g: &Globals) {
    SERVED.store(served_by(g), Ordering::Relaxed);
}

/// Is `p` served?
pub fn served(p: Proto) -> bool {
    p != Proto::Any && SERVED.load(Ordering::Relaxed) & bit(p) != 0
}

/// A transport by name (`udp`, `TCP`, `tls`, `sctp`, … as in a URI's `transport=`, a
/// Via or a `proto:` prefix): `Ok` if served, else the reason.
pub fn check_served(name: &str) -> Result<(), String> {
    // Per relayed message: no allocation on the way to Ok.
    let is = |t: &str| name.eq_ignore_ascii_case(t);
    let p = if is("udp") {
        Proto::Udp
    } else if is("tcp") {
        Proto::Tcp
    } else if is("tls") {
        Proto::Tls
    } else if is("sctp") {
        return Err("transport SCTP is not supported by this server".into());
    } else {
        return Err(format!("unknown transport '{name}'"));
    };
    if served(p) {
        return Ok(());
    }
    let up = p.as_str().to_ascii_uppercase();
    if is_built(p) {
        Err(format!(
            "transport {up} is not served (no {} listen socket)",
            p.as_str()
        ))
    } else {
        Err(format!(
            "transport {up} is not supported by this server (it serves {})",
            built_list()
        ))
    }
}

/// The transport a destination URI asks for (`sips:` → TLS, else `;transport=`, else
/// UDP), checked. Text that is not a URI is left to the code that uses it.
pub fn check_uri(uri: &str) -> Result<(), String> {
    match crate::parser::uri::UriRef::parse(uri) {
        Ok(u) => check_uri_transport(
            uri,
            u.scheme == crate::parser::uri::UriScheme::Sips,
            u.transport(),
        ),
        Err(_) => Ok(()),
    }
}

/// [`check_uri`] for a URI the caller has parsed already: `sips` its scheme,
/// `transport` its `;transport=` value (`uri` is its text, for the message).
pub fn check_uri_transport(uri: &str, sips: bool, transport: Option<&str>) -> Result<(), String> {
    if sips {
        return check_served("tls").map_err(|e| format!("<{uri}>: sips: needs TLS: {e}"));
    }
    match transport {
        Some(t) => check_served(t).map_err(|e| format!("<{uri}>: {e}")),
        None => Ok(()),
    }
}

/// The transport prefix of a `[proto:]host[:port]` destination (`udp:`, `tcp:`, …,
/// any case), checked; `Ok(rest)` is the text after it.
pub fn check_dest_prefix(text: &str) -> Result<&str, String> {
    let t = text.trim();
    for p in ["udp", "tcp", "tls", "sctp"] {
        if let (Some(a), Some(b)) = (t.get(..p.len()), t.get(p.len()..))
            && a.eq_ignore_ascii_case(p)
            && let Some(rest) = b.strip_prefix(':')
        {
            check_served(p).map_err(|e| format!("destination '{text}': {e}"))?;
            return Ok(rest);
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::globals::HostPort;

    #[test]
    fn served_set_follows_listen() {
        let mut g = Globals::default();
        assert_eq!(served_by(&g), UDP);
        g.listen
            .push(HostPort::parse("udp:127.0.0.1:5060").unwrap());
        assert_eq!(served_by(&g), UDP);
        g.listen.push(HostPort::parse("127.0.0.2").unwrap());
        assert_eq!(served_by(&g), UDP);
        g.listen
            .push(HostPort::parse("tcp:127.0.0.1:5060").unwrap());
        assert_eq!(served_by(&g), UDP | TCP);
        g.disable_tcp = true;
        assert_eq!(served_by(&g), UDP);
        g.disable_tcp = false;
        g.listen
            .push(HostPort::parse("tls:127.0.0.1:5061").unwrap());
        assert_eq!(served_by(&g) & TLS, TLS);
        g.tls.disable = true;
        assert_eq!(served_by(&g) & TLS, 0, "disable_tls");
    }

    #[test]
    fn unserved_transports_are_named() {
        // SERVED is UDP by default in unit tests
        assert!(check_served("udp").is_ok());
        assert!(check_served("UDP").is_ok());
        let e = check_served("tcp").unwrap_err();
        assert!(e.contains("TCP"), "{e}");
        let e = check_served("sctp").unwrap_err();
        assert!(e.contains("SCTP"), "{e}");
        let e = check_served("ws").unwrap_err();
        assert!(e.contains("unknown transport 'ws'"), "{e}");
        assert!(check_uri("sip:a@127.0.0.1").is_ok());
        assert!(check_uri("sip:a@127.0.0.1;transport=udp").is_ok());
        assert!(check_uri("sip:a@127.0.0.1;transport=tcp").is_err());
        assert!(check_uri("sip:a@127.0.0.1;transport=TLS").is_err());
        let e = check_uri("sips:a@127.0.0.1").unwrap_err();
        assert!(e.contains("TLS"), "{e}");
        assert_eq!(check_dest_prefix("udp:1.2.3.4:5"), Ok("1.2.3.4:5"));
        assert_eq!(check_dest_prefix("1.2.3.4:5"), Ok("1.2.3.4:5"));
        assert!(check_dest_prefix("TCP:1.2.3.4").is_err());
        assert!(check_dest_prefix("sctp:1.2.3.4").is_err());
        assert!(check_listen(Proto::Udp).is_ok());
        assert!(check_listen(Proto::Tcp).is_ok());
        assert!(check_listen(Proto::Tls).is_ok());
    }
}
