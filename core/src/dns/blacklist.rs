//! The destination blacklist.
//!
//! - Static lists (1.2): `dst_blacklist = id:{ (proto, ip[/mask], port, "pattern"), … }`
//!   in the config; a request is checked against the lists the script turned on for
//!   the current message with `use_blacklist("id")` (off again with
//!   `unuse_blacklist`; none is on by default, as in 1.2). An entry matches when its
//!   transport (`any`) and port (0 = any) agree, the address is in its net, and the
//!   pattern (a shell wildcard, empty = any) matches the whole outgoing message. A
//!   matching send fails ("destination blacklisted"), which tm treats as a send error.
//! - The dynamic list (Kamailio's `use_dst_blacklist`): a destination that failed —
//!   send error, no answer before fr_timer, 503 — is skipped by DNS target selection
//!   for `dst_blacklist_expire` seconds. It lives in the shm DNS cache table (key
//!   `0 proto:addr`), so every process sees it. `dst_blacklist_{udp,tcp,tls}_imask`
//!   name the failures that do not count, as bits: 1 send error, 2 connect error,
//!   8 timeout, 16 a 503. A destination found not blocked is remembered by the
//!   process until the next addition anywhere (a counter in shm), so the common
//!   check takes no lock.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cfg::ast::{Blacklist, Proto as AProto};
use crate::parser::msg::Proto;

pub const ERR_SEND: u32 = 1;
pub const ERR_CONNECT: u32 = 2;
pub const ERR_TIMEOUT: u32 = 8;
pub const ERR_503: u32 = 16;

static LISTS: OnceLock<Vec<Blacklist>> = OnceLock::new();
/// Bumped (in shm) by every addition to the dynamic list: a process's memory of
/// destinations found not blocked is good while it is unchanged.
static ADDED: OnceLock<&'static AtomicU64> = OnceLock::new();

thread_local! {
    static MARKER: Cell<u64> = const { Cell::new(0) };
    static NOT_BLOCKED: RefCell<(u64, HashSet<String>)> = RefCell::new((0, HashSet::new()));
}

/// Take the static lists from the globals (attendant, before forking).
pub fn init() -> Result<(), String> {
    let _ = LISTS.set(crate::globals::get().dst_blacklists.clone());
    let a = shm::alloc_static(AtomicU64::new(1)).ok_or("no shm for the blacklist")?;
    let _ = ADDED.set(a);
    Ok(())
}

fn lists() -> &'static [Blacklist] {
    LISTS.get().map(Vec::as_slice).unwrap_or(&[])
}

/// Is `name` a list of the config? (fixup of `use_blacklist`).
pub fn index_of(name: &str) -> Option<usize> {
    lists()
        .iter()
        .position(|b| b.name == name)
        .filter(|i| *i < 64)
}

/// Turn list `i` on (`on`) or off for the current message.
pub fn mark(i: usize, on: bool) {
    MARKER.with(|m| {
        let b = 1u64 << (i & 63);
        m.set(if on { m.get() | b } else { m.get() & !b })
    });
}

/// A new message: no list is on.
pub fn reset_marker() {
    MARKER.with(|m| m.set(0));
}

fn in_net(ip: IpAddr, net: IpAddr, mask: IpAddr) -> bool {
    match (ip, net, mask) {
        (IpAddr::V4(a), IpAddr::V4(n), IpAddr::V4(m)) => {
            u32::from(a) & u32::from(m) == u32::from(n) & u32::from(m)
        }
        (IpAddr::V6(a), IpAddr::V6(n), IpAddr::V6(m)) => {
            u128::from(a) & u128::from(m) == u128::from(n) & u128::from(m)
        }
        _ => false,
    }
}

/// Does a static list turned on for this message match sending `buf` to `to`?
pub fn check_static(
    proto: crate::globals::Proto,
    to: SocketAddr,
    buf: &[u8],
) -> Option<&'static str> {
    let marker = MARKER.with(Cell::get);
    if marker == 0 {
        return None;
    }
    let text = String::from_utf8_lossy(buf);
    for (i, l) in lists().iter().enumerate().take(64) {
        if marker & (1 << i) == 0 {
            continue;
        }
        let hit = l.entries.iter().any(|e| {
            let p_ok = match e.proto {
                None | Some(AProto::Any) => true,
                Some(AProto::Udp) => proto == crate::globals::Proto::Udp,
                Some(AProto::Tcp) => proto == crate::globals::Proto::Tcp,
                Some(AProto::Tls) => proto == crate::globals::Proto::Tls,
                Some(AProto::Sctp) => false,
            };
            p_ok && (e.port == 0 || e.port == to.port())
                && in_net(to.ip(), e.net.addr, e.net.mask)
                && (e.pattern.is_empty() || wildcard(e.pattern.as_bytes(), text.as_bytes()))
        });
        if hit {
            return Some(l.name.as_str());
        }
    }
    None
}

/// A shell wildcard (`*`, `?`) matching all of `t`.
pub fn wildcard(p: &[u8], t: &[u8]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

fn key(proto: Proto, to: SocketAddr) -> String {
    format!("{}:{to}", proto.as_str())
}

/// Skip `to` for `dst_blacklist_expire` seconds after a failure of kind `why`
/// (one of the `ERR_*` bits), unless the transport's ignore mask has that bit.
pub fn add(proto: Proto, to: SocketAddr, why: u32) {
    let g = crate::globals::get();
    if !g.use_dst_blacklist || g.dst_blacklist_expire <= 0 {
        return;
    }
    let imask = match proto {
        Proto::Udp => g.dst_blacklist_udp_imask,
        Proto::Tcp => g.dst_blacklist_tcp_imask,
        Proto::Tls => g.dst_blacklist_tls_imask,
    } as u32;
    if imask & why != 0 {
        return;
    }
    crate::log_info!(
        "blacklisting {} for {}s (failure {why})",
        key(proto, to),
        g.dst_blacklist_expire
    );
    let _ = super::cache::put(
        0,
        &key(proto, to),
        &why.to_string(),
        g.dst_blacklist_expire as u32,
    );
    if let Some(a) = ADDED.get() {
        a.fetch_add(1, Ordering::SeqCst);
    }
}

/// Is `to` on the dynamic blacklist?
pub fn is_blocked(proto: Proto, to: SocketAddr) -> bool {
    let g = crate::globals::get();
    if !g.use_dst_blacklist {
        return false;
    }
    let k = key(proto, to);
    let added = ADDED.get().map(|a| a.load(Ordering::SeqCst)).unwrap_or(0);
    let known = NOT_BLOCKED.with(|n| {
        let mut n = n.borrow_mut();
        if n.0 != added {
            n.1.clear();
            n.0 = added;
        }
        n.1.contains(&k)
    });
    if known {
        return false;
    }
    let blocked = super::cache::get(0, &k).is_some();
    if !blocked {
        NOT_BLOCKED.with(|n| {
            let mut n = n.borrow_mut();
            if n.1.len() > 4096 {
                n.1.clear();
            }
            n.1.insert(k);
        });
    }
    blocked
}

/// MI `list_blacklists`: the static lists, then the dynamic entries.
pub fn mi_list(_args: &[crate::mi::MiArg]) -> crate::mi::MiReply {
    use crate::mi::MiNode;
    let mut nodes = Vec::new();
    for l in lists() {
        let mut n = MiNode::new("List", l.name.clone());
        for e in &l.entries {
            let p = match e.proto {
                None | Some(AProto::Any) => "any",
                Some(AProto::Udp) => "udp",
                Some(AProto::Tcp) => "tcp",
                Some(AProto::Tls) => "tls",
                Some(AProto::Sctp) => "sctp",
            };
            n.kids.push(MiNode::new(
                "Rule",
                format!(
                    "({p}, {}/{}, {}, \"{}\")",
                    e.net.addr, e.net.mask, e.port, e.pattern
                ),
            ));
        }
        nodes.push(n);
    }
    let mut d = MiNode::new("List", "dynamic");
    for (k, left, why) in super::cache::view() {
        if let Some(dst) = k.strip_prefix("0 ") {
            d.kids.push(MiNode::new(
                "Entry",
                format!("{dst} expires={left} reason={why}"),
            ));
        }
    }
    nodes.push(d);
    crate::mi::MiReply::ok(nodes)
}
