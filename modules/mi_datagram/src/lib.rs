//! Module `mi_datagram`: the MI over UDP or a Unix datagram socket (OpenSER 1.3's
//! module of that name; 1.2.0 shipped only mi_fifo and mi_xmlrpc).
//!
//! `socket_name` is `udp:host:port` or the path of a Unix datagram socket. The socket is
//! bound in `mod_init` (before fork) and shared by `children_count` processes (`MI
//! Datagram` in `ps`), each reading requests and answering the sender. A request is one
//! datagram in the FIFO's syntax without a reply name: `:command:` on the first line,
//! then one argument per line (`name::value` or a value, quoted values may span
//! lines). The reply is the FIFO's text (status line, one line per node, `reply_indent`
//! per level, an empty line); a reply longer than a datagram is sent in several, split
//! at line ends.

use openser_core::mi;
use openser_core::module::{IntParam, ModParamValue, ModuleExports, Param, ProcExport, StrParam};
use openser_core::process::{pt, signals};
use openser_core::sys;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use std::time::Duration;

/// The most processes `children_count` may ask for.
const MAX_CHILDREN: usize = 8;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "mi_datagram",
    params: &[
        Param::str("socket_name", &SOCKET_NAME),
        Param::int_with("children_count", &CHILDREN, children_ok),
        Param::func("unix_socket_mode", set_mode),
        Param::str("unix_socket_user", &SOCK_USER),
        Param::str("unix_socket_group", &SOCK_GROUP),
        Param::int("socket_timeout", &SOCKET_TIMEOUT),
        Param::str("reply_indent", &REPLY_INDENT),
    ],
    procs: &[
        ProcExport::new("MI Datagram", pt::PROC_FIFO, datagram_process).when(want::<1>),
        ProcExport::new("MI Datagram", pt::PROC_FIFO, datagram_process).when(want::<2>),
        ProcExport::new("MI Datagram", pt::PROC_FIFO, datagram_process).when(want::<3>),
        ProcExport::new("MI Datagram", pt::PROC_FIFO, datagram_process).when(want::<4>),
        ProcExport::new("MI Datagram", pt::PROC_FIFO, datagram_process).when(want::<5>),
        ProcExport::new("MI Datagram", pt::PROC_FIFO, datagram_process).when(want::<6>),
        ProcExport::new("MI Datagram", pt::PROC_FIFO, datagram_process).when(want::<7>),
        ProcExport::new("MI Datagram", pt::PROC_FIFO, datagram_process).when(want::<8>),
    ],
    mod_init: Some(mod_init),
    destroy: Some(destroy),
    ..ModuleExports::EMPTY
};

static SOCKET_NAME: StrParam = StrParam::new("");
static CHILDREN: IntParam = IntParam::new(1);
static SOCK_MODE: IntParam = IntParam::new(0o660);
static SOCK_USER: StrParam = StrParam::new("");
static SOCK_GROUP: StrParam = StrParam::new("");
/// Send timeout of a reply, in milliseconds (1.3's default).
static SOCKET_TIMEOUT: IntParam = IntParam::new(2000);
static REPLY_INDENT: StrParam = StrParam::new("\t");

/// The bound socket, inherited by the children.
enum Sock {
    Udp(UdpSocket),
    Unix(UnixDatagram, String),
}

static SOCK: OnceLock<Sock> = OnceLock::new();

/// Largest datagram we send (1.3's DATAGRAM_SOCK_BUF_SIZE).
const DGRAM_MAX: usize = 65457;

fn children_ok(n: i64) -> Result<(), String> {
    if !(1..=MAX_CHILDREN as i64).contains(&n) {
        return Err(format!("must be 1..{MAX_CHILDREN}"));
    }
    Ok(())
}

fn want<const N: i64>() -> bool {
    SOCK.get().is_some() && CHILDREN.get() >= N
}

/// An octal mode, as a number or a string ("0660").
fn set_mode(v: &ModParamValue) -> Result<(), String> {
    let m = match v {
        ModParamValue::Int(i) => *i,
        ModParamValue::Str(s) => i64::from_str_radix(s.trim_start_matches("0o"), 8)
            .map_err(|_| format!("bad unix_socket_mode '{s}'"))?,
    };
    SOCK_MODE.set(m & 0o7777);
    Ok(())
}

/// What `socket_name` names.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Udp(String),
    Unix(String),
}

/// `udp:host:port` (an IPv6 host in brackets) or a path.
pub fn parse_socket_name(s: &str) -> Result<Target, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("no socket configured (modparam \"socket_name\" is mandatory)".into());
    }
    if let Some(rest) = s.strip_prefix("udp:").or_else(|| s.strip_prefix("UDP:")) {
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("bad socket_name '{s}': udp:host:port expected"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("bad socket_name '{s}': udp:host:port expected"));
        }
        return Ok(Target::Udp(rest.to_string()));
    }
    Ok(Target::Unix(s.to_string()))
}

fn mod_init() -> Result<(), String> {
    let t = parse_socket_name(SOCKET_NAME.get()).map_err(|e| format!("mi_datagram: {e}"))?;
    let sock = match t {
        Target::Udp(hp) => {
            let addr: SocketAddr = hp
                .to_socket_addrs()
                .map_err(|e| format!("mi_datagram: cannot resolve {hp}: {e}"))?
                .next()
                .ok_or_else(|| format!("mi_datagram: cannot resolve {hp}"))?;
            let s = UdpSocket::bind(addr)
                .map_err(|e| format!("mi_datagram: cannot bind udp:{addr}: {e}"))?;
            Sock::Udp(s)
        }
        Target::Unix(path) => {
            if let Ok(m) = std::fs::symlink_metadata(&path) {
                if m.is_dir() {
                    return Err(format!("mi_datagram: {path} is a directory"));
                }
                std::fs::remove_file(&path)
                    .map_err(|e| format!("mi_datagram: cannot remove old {path}: {e}"))?;
            }
            let s = UnixDatagram::bind(&path)
                .map_err(|e| format!("mi_datagram: cannot bind {path}: {e}"))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(SOCK_MODE.get_u32()))
                .map_err(|e| format!("mi_datagram: cannot chmod {path}: {e}"))?;
            // Without unix_socket_user/group the socket belongs to the server's
            // `user`/`group` (-u/-g), so the unprivileged server can remove it at exit.
            let g = openser_core::globals::get();
            let or_core = |p: &str, c: &Option<String>| {
                if p.is_empty() {
                    c.clone().unwrap_or_default()
                } else {
                    p.to_string()
                }
            };
            let user = or_core(SOCK_USER.get(), &g.user);
            let group = or_core(SOCK_GROUP.get(), &g.group);
            let (user, group) = (user.as_str(), group.as_str());
            if !user.is_empty() || !group.is_empty() {
                let uid = if user.is_empty() {
                    u32::MAX
                } else {
                    sys::lookup_user(user)
                        .map_err(|e| format!("mi_datagram: {e}"))?
                        .0
                };
                let gid = if group.is_empty() {
                    u32::MAX
                } else {
                    sys::lookup_group(group).map_err(|e| format!("mi_datagram: {e}"))?
                };
                sys::chown(&path, uid, gid)
                    .map_err(|e| format!("mi_datagram: cannot chown {path}: {e}"))?;
            }
            Sock::Unix(s, path)
        }
    };
    let _ = SOCK.set(sock);
    Ok(())
}

fn destroy() {
    if let Some(Sock::Unix(_, path)) = SOCK.get() {
        let _ = std::fs::remove_file(path);
    }
}

/// Run one request datagram; the reply text (None: nothing to answer, the error is
/// logged).
pub fn handle(req: &[u8], indent: &str) -> Option<String> {
    let text = String::from_utf8_lossy(req);
    let mut lines: Vec<String> = text
        .split('\n')
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    while lines.first().is_some_and(|l| l.trim().is_empty()) {
        lines.remove(0);
    }
    let first = lines.first()?;
    let reply = match mi::parse_first_line(first) {
        Err(e) => {
            openser_core::log_err!("{e}");
            mi::MiReply::err(400, "bad request")
        }
        Ok((cmd, _)) if !mi::exists(&cmd) => {
            mi::MiReply::err(500, &format!("command '{cmd}' not available"))
        }
        Ok((cmd, _)) => {
            // the request ends at its first empty line outside a quoted value
            match mi::parse_args(&lines[1..]) {
                Ok(args) => mi::run(&cmd, &args),
                Err(e) => {
                    openser_core::log_err!("bad arguments for '{cmd}': {e}");
                    mi::MiReply::err(400, &format!("parse error in command '{cmd}'"))
                }
            }
        }
    };
    Some(mi::render(&reply, indent))
}

/// Split a reply into datagrams of at most `max` bytes, at line ends where possible.
pub fn chunks(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = rest[..max].rfind('\n').map(|i| i + 1).unwrap_or(0);
        if cut == 0 {
            cut = max;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out.push(rest);
    out
}

fn datagram_process() -> ! {
    let Some(sock) = SOCK.get() else {
        openser_core::log_crit!("no socket");
        std::process::exit(1);
    };
    let indent = REPLY_INDENT.get();
    let send_to = Some(Duration::from_millis(SOCKET_TIMEOUT.get().max(1) as u64));
    let tick = Some(Duration::from_millis(500));
    match sock {
        Sock::Udp(s) => {
            let _ = s.set_read_timeout(tick);
            let _ = s.set_write_timeout(send_to);
        }
        Sock::Unix(s, _) => {
            let _ = s.set_read_timeout(tick);
            let _ = s.set_write_timeout(send_to);
        }
    }
    let mut buf = vec![0u8; DGRAM_MAX + 1];
    loop {
        signals::child_check();
        match sock {
            Sock::Udp(s) => match s.recv_from(&mut buf) {
                Ok((n, from)) => {
                    if let Some(r) = handle(&buf[..n], indent) {
                        for c in chunks(&r, DGRAM_MAX) {
                            if let Err(e) = s.send_to(c.as_bytes(), from) {
                                openser_core::log_err!("reply to {from} failed: {e}");
                                break;
                            }
                        }
                    }
                }
                Err(e) if timeout(&e) => {}
                Err(e) => openser_core::log_err!("recv failed: {e}"),
            },
            Sock::Unix(s, _) => match s.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let r = handle(&buf[..n], indent);
                    match (r, from.as_pathname()) {
                        (Some(r), Some(p)) => {
                            for c in chunks(&r, DGRAM_MAX) {
                                if let Err(e) = s.send_to(c.as_bytes(), p) {
                                    openser_core::log_err!("reply to {} failed: {e}", p.display());
                                    break;
                                }
                            }
                        }
                        (Some(_), None) => {
                            openser_core::log_err!("request from an unbound socket: no reply")
                        }
                        (None, _) => {}
                    }
                }
                Err(e) if timeout(&e) => {}
                Err(e) => openser_core::log_err!("recv failed: {e}"),
            },
        }
    }
}

fn timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_names() {
        assert_eq!(
            parse_socket_name("udp:127.0.0.1:8080"),
            Ok(Target::Udp("127.0.0.1:8080".into()))
        );
        assert_eq!(
            parse_socket_name("udp:[::1]:8080"),
            Ok(Target::Udp("[::1]:8080".into()))
        );
        assert_eq!(
            parse_socket_name("/tmp/openser.sock"),
            Ok(Target::Unix("/tmp/openser.sock".into()))
        );
        assert!(parse_socket_name("udp:host").is_err());
        assert!(parse_socket_name("udp:host:x").is_err());
        assert!(parse_socket_name("").is_err());
    }

    #[test]
    fn requests() {
        mi::init_core();
        let r = handle(b":version:\n", "\t").unwrap();
        assert!(r.starts_with("200 OK\nServer:: OpenSER"), "{r}");
        assert!(r.ends_with("\n\n"));
        assert!(handle(b"version\n", "\t").unwrap().starts_with("400"));
        assert!(handle(b":nope:\n", "\t").unwrap().starts_with("500"));
        assert!(
            handle(b":get_statistics:\n\"open\n", "\t")
                .unwrap()
                .starts_with("400")
        );
        assert!(handle(b"\n\n", "\t").is_none());
        assert!(
            handle(&[0xff, 0xfe, b'\n'], "\t")
                .unwrap()
                .starts_with("400")
        );
    }

    #[test]
    fn long_replies_split_at_lines() {
        let t = "aaaa\nbbbb\ncccc\n";
        assert_eq!(chunks(t, 11), vec!["aaaa\nbbbb\n", "cccc\n"]);
        assert_eq!(chunks("abcdef", 4), vec!["abcd", "ef"]);
        assert_eq!(chunks(t, 100), vec![t]);
    }
}
