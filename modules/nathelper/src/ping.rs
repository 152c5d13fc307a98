//! NAT pinging: keep the NAT bindings of registered user agents open.
//!
//! With `natping_interval` > 0 the attendant forks one process, "nathelper pinger".
//! Every 100 ms it takes the next part of usrloc's hash slots (over all domains) so that
//! one round over the whole table takes `natping_interval` seconds, copies out the
//! contacts of those slots that carry usrloc's `nat_bflag` (every contact if
//! `ping_nated_only` is off, as 1.2) — each slot locked only while it is copied — and,
//! with no lock held, sends each one a ping:
//!
//! * a 4-byte keep-alive (four zero bytes, as 1.2), or
//! * for contacts with `sipping_bflag`, a `sipping_method` request (OPTIONS) from
//!   `sipping_from`, whose replies [`absorb_reply`] swallows (Call-ID prefix and CSeq
//!   method, as 1.2's `sipping_rpl_filter`).
//!
//! A ping goes to the contact's `received` address if it has one (the NAT's public side
//! as `fix_nated_register` saw it), else to the Contact URI, and leaves from the socket
//! the contact registered on (usrloc's `socket`), else from `force_socket`, else the
//! default socket for the destination. A contact registered over TCP or TLS (its
//! `socket`, else its URI's `;transport=`) is pinged over the connection it registered
//! on — a double-CRLF keep-alive (RFC 5626; four zero bytes would break the stream's
//! framing) or the OPTIONS — and only if tcp main still has that connection: a new one
//! would not go through the phone's NAT pinhole (`tcp::send_existing`).
//!
//! The pings are stateless, as in 1.2 (nathelper.c's timer builds the OPTIONS itself
//! and hands it to `udp_send`; replies are dropped by its response filter, no tm): a
//! transaction per ping would cost a tm cell and its retransmission timers for each of
//! up to a million contacts a round, for a reply nobody waits for. tm's `t_uac` is
//! for requests whose answer matters (MI `t_uac_dlg`, `openserctl ping`).
//!
//! MI `nh_enable_ping 0|1` switches pinging off and on (state in shm).

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openser_core::parser::Proto;
use openser_core::parser::{Method, SipMsg};
use openser_core::process::signals;
use openser_core::transport::send::{choose_socket_for, resolve_host, send_udp};
use openser_core::transport::socket::sockets;
use openser_core::transport::tcp;
use usrloc::ContactInfo;

use crate::P;

/// The pinger's rank for `child_init` (not a SIP worker).
pub const PINGER_RANK: i32 = -8;
/// Steps per second: one part of the table every 100 ms.
pub const STEPS_PER_SEC: u64 = 10;
/// The keep-alive 1.2 sends.
pub const KEEPALIVE: [u8; 4] = [0, 0, 0, 0];

struct Shared {
    /// 1 = pinging on (MI `nh_enable_ping`)
    enabled: &'static AtomicU64,
    /// pings sent (for MI and tests)
    sent: &'static AtomicU64,
    /// the constant part of the OPTIONS Call-IDs
    callid_prefix: String,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

fn cell(v: u64) -> &'static AtomicU64 {
    if shm::is_initialized()
        && let Some(a) = shm::alloc_static(AtomicU64::new(v))
    {
        return a;
    }
    Box::leak(Box::new(AtomicU64::new(v)))
}

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| Shared {
        enabled: cell(1),
        sent: cell(0),
        callid_prefix: format!("{:08x}", std::process::id().wrapping_mul(2654435761)),
    })
}

/// mod_init: check the ping parameters, set up the shared state.
pub fn init() -> Result<(), String> {
    let _ = shared();
    if P.natping_interval.get() <= 0 {
        return Ok(());
    }
    if !openser_core::module::is_loaded("usrloc") {
        return Err("nathelper: natping_interval is set but module usrloc is not loaded".into());
    }
    let p = usrloc::params();
    if P.ping_nated_only.get() && p.nat_bflag_mask() == 0 {
        return Err(
            "nathelper: Bad config - ping_nated_only enabled, but no nat bflag set in usrloc module"
                .into(),
        );
    }
    if sipping_mask() != 0 {
        if P.sipping_from.get().is_empty() {
            return Err("nathelper: SIP ping enabled, but SIP ping FROM is empty!".into());
        }
        if P.sipping_method.get().is_empty() {
            return Err("nathelper: SIP ping enabled, but SIP ping method is empty!".into());
        }
    }
    Ok(())
}

/// Whether the attendant forks the pinger.
pub fn wanted() -> bool {
    P.natping_interval.get() > 0
}

pub fn set_enabled(on: bool) {
    shared().enabled.store(u64::from(on), Ordering::Relaxed);
}

pub fn enabled() -> bool {
    shared().enabled.load(Ordering::Relaxed) != 0
}

/// Pings sent since start.
pub fn sent() -> u64 {
    shared().sent.load(Ordering::Relaxed)
}

fn sipping_mask() -> u32 {
    match u32::try_from(P.sipping_bflag.get()) {
        Ok(b) if b < 32 => 1 << b,
        _ => 0,
    }
}

fn ping_mask() -> u32 {
    if P.ping_nated_only.get() {
        usrloc::params().nat_bflag_mask()
    } else {
        0
    }
}

/// How many slots one step covers so that a round of `total` slots takes
/// `interval_s` seconds (at least one slot per step).
pub fn slots_per_step(total: usize, interval_s: u64) -> usize {
    let steps = (interval_s.max(1) * STEPS_PER_SEC) as usize;
    total.div_ceil(steps).max(1)
}

/// The pinger process: a step every 100 ms until told to stop.
pub fn pinger_main() -> ! {
    let interval = P.natping_interval.get().max(1) as u64;
    let step = Duration::from_millis(1000 / STEPS_PER_SEC);
    let mut next = Instant::now() + step;
    let mut cursor = 0usize;
    openser_core::log_info!("NAT pinger started: a round every {interval} s");
    loop {
        signals::child_check();
        let total = usrloc::total_slots();
        if total > 0 && enabled() {
            let n = slots_per_step(total, interval);
            let to = (cursor + n).min(total);
            let now = openser_core::clock::now();
            let contacts = usrloc::get_ucontacts_of_slots(ping_mask(), now, cursor, to);
            for c in &contacts {
                ping_contact(c);
            }
            cursor = if to >= total { 0 } else { to };
        }
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
            next += step;
        } else {
            // Behind (a very large step): start the next one now.
            next = now + step;
        }
    }
}

/// Run one full round at once (benchmarks and tests): the number of pings sent.
pub fn round_now(now: i64) -> usize {
    let total = usrloc::total_slots();
    let contacts = usrloc::get_ucontacts_of_slots(ping_mask(), now, 0, total);
    contacts.iter().filter(|c| ping_contact(c)).count()
}

/// The listen socket of a stored `proto:ip:port` text.
fn socket_index(text: &str) -> Option<usize> {
    if text.is_empty() {
        return None;
    }
    let (proto, hp) = text.split_once(':')?;
    let proto = openser_core::parser::Proto::from_name(proto.as_bytes())?;
    let want: SocketAddr = hp.parse().ok().or_else(|| {
        resolve_host(hp.rsplit_once(':')?.0, hp.rsplit_once(':')?.1.parse().ok()?).ok()
    })?;
    sockets().iter().position(|s| {
        s.addr.ip() == want.ip()
            && s.port == want.port()
            && s.proto == openser_core::transport::send::proto_of(proto)
    })
}

fn force_socket() -> Option<usize> {
    let f = P.force_socket.get();
    if f.is_empty() {
        return None;
    }
    let t = if f.contains(':') && !f.starts_with("udp:") {
        format!("udp:{f}")
    } else {
        f.to_string()
    };
    socket_index(&t).or_else(|| {
        // a bare address: any socket on it
        sockets().iter().position(|s| s.addr.ip().to_string() == f)
    })
}

/// Where to send the ping of `c` and over which transport (the socket it registered
/// on, else the URI's `;transport=`), or None (unparsable, unknown transport).
pub fn destination(c: &ContactInfo) -> Option<(SocketAddr, Proto)> {
    let target = if c.received.is_empty() {
        &c.contact
    } else {
        &c.received
    };
    let u = openser_core::parser::uri::Uri::parse(target).ok()?;
    let by_socket = c
        .socket
        .split_once(':')
        .and_then(|(p, _)| Proto::from_name(p.as_bytes()));
    let proto = match (by_socket, u.transport()) {
        (Some(p), _) => p,
        (None, Some(t)) => Proto::from_name(t.as_bytes())?,
        (None, None) => Proto::Udp,
    };
    let to = resolve_host(u.host_unbracketed(), u.port_or_default()).ok()?;
    Some((to, proto))
}

thread_local! {
    static PING_SEQ: Cell<u32> = const { Cell::new(0) };
}

/// The OPTIONS request pinging `c` from socket `sock` (1.2's `build_sipping`).
pub fn build_sipping(c: &ContactInfo, sock: usize) -> String {
    let (host, port) = openser_core::transport::send::advertised(sock);
    let n = PING_SEQ.with(|s| {
        let v = s.get();
        s.set(v.wrapping_add(1));
        v
    });
    let method = P.sipping_method.get();
    let prefix = &shared().callid_prefix;
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{via} {host}:{port};branch=z9hG4bKnhp{n:x}\r\n\
         From: {from};tag={n:08x}\r\nTo: <{uri}>\r\nCall-ID: {prefix}-{n:08x}@{host}\r\n\
         CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        uri = c.contact,
        from = P.sipping_from.get(),
        via = openser_core::transport::send::socket_proto(sock).as_str(),
    )
}

/// Send the ping of one contact; false if it could not be sent.
pub fn ping_contact(c: &ContactInfo) -> bool {
    let Some((to, proto)) = destination(c) else {
        openser_core::log_dbg!("not pinging <{}>: no destination", c.contact);
        return false;
    };
    let sock = socket_index(&c.socket)
        .or_else(force_socket)
        .filter(|&i| openser_core::transport::send::socket_proto(i) == proto)
        .unwrap_or_else(|| choose_socket_for(&to, proto, None));
    let sm = sipping_mask();
    let sipping = sm != 0 && c.cflags & sm != 0;
    let r = match proto {
        Proto::Udp if sipping => send_udp(sock, to, build_sipping(c, sock).as_bytes()),
        Proto::Udp => send_udp(sock, to, &KEEPALIVE),
        Proto::Tcp | Proto::Tls => {
            let p = if proto == Proto::Tls {
                openser_core::transport::tcp::P_TLS
            } else {
                openser_core::transport::tcp::P_TCP
            };
            if sipping {
                tcp::send_existing(p, sock, to, build_sipping(c, sock).as_bytes())
            } else {
                tcp::send_existing(p, sock, to, b"\r\n\r\n")
            }
        }
    };
    match r {
        Ok(()) => {
            shared().sent.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(e) => {
            openser_core::log_err!("sending the NAT ping to {to} failed: {e}");
            false
        }
    }
}

/// Reply hook: a reply to one of our SIP pings is consumed here (true).
pub fn absorb_reply(rpl: &mut SipMsg) -> bool {
    if sipping_mask() == 0 || P.natping_interval.get() <= 0 {
        return false;
    }
    if rpl.vias().map(|v| v.len()).unwrap_or(0) != 1 {
        return false;
    }
    let Ok(cseq) = rpl.cseq() else {
        return false;
    };
    let method = P.sipping_method.get();
    let m_ok = match cseq.method {
        Method::Other => rpl.s(cseq.method_text) == method,
        m => m.as_str().eq_ignore_ascii_case(method),
    };
    if !m_ok {
        return false;
    }
    let prefix = &shared().callid_prefix;
    let ok = rpl.callid().is_some_and(|cid| {
        cid.trim()
            .strip_prefix(prefix.as_str())
            .is_some_and(|r| r.starts_with('-'))
    });
    if ok {
        openser_core::log_dbg!("reply for SIP natping filtered");
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_spread_a_round() {
        // 100,000 contacts over 512 slots and 30 s: 2 slots per 100 ms step.
        assert_eq!(slots_per_step(512, 30), 2);
        assert_eq!(slots_per_step(512, 1), 52);
        assert_eq!(slots_per_step(0, 10), 1);
        assert_eq!(slots_per_step(65536, 60), 110);
    }

    #[test]
    fn ping_destinations() {
        let c = ContactInfo {
            contact: "sip:alice@10.0.0.2:5070".into(),
            received: "sip:203.0.113.1:40001".into(),
            ..ContactInfo::default()
        };
        assert_eq!(
            destination(&c),
            Some(("203.0.113.1:40001".parse().unwrap(), Proto::Udp))
        );
        let c2 = ContactInfo {
            contact: "sip:alice@198.51.100.4".into(),
            ..ContactInfo::default()
        };
        assert_eq!(
            destination(&c2),
            Some(("198.51.100.4:5060".parse().unwrap(), Proto::Udp))
        );
        let tcp = ContactInfo {
            contact: "sip:alice@198.51.100.4;transport=tcp".into(),
            ..ContactInfo::default()
        };
        assert_eq!(
            destination(&tcp),
            Some(("198.51.100.4:5060".parse().unwrap(), Proto::Tcp))
        );
        // the socket it registered on wins over the URI
        let tls = ContactInfo {
            contact: "sip:alice@198.51.100.4:5070".into(),
            received: "sip:203.0.113.1:40001".into(),
            socket: "tls:127.0.0.1:5061".into(),
            ..ContactInfo::default()
        };
        assert_eq!(
            destination(&tls),
            Some(("203.0.113.1:40001".parse().unwrap(), Proto::Tls))
        );
        let odd = ContactInfo {
            contact: "sip:alice@198.51.100.4;transport=sctp".into(),
            ..ContactInfo::default()
        };
        assert_eq!(destination(&odd), None);
    }

    #[test]
    fn options_ping_and_its_reply() {
        P.sipping_from.set("sip:pinger@example.net");
        let c = ContactInfo {
            contact: "sip:alice@10.0.0.2:5070".into(),
            ..ContactInfo::default()
        };
        let req = build_sipping(&c, 0);
        let m = SipMsg::parse(req.as_bytes()).expect("ping parses");
        assert_eq!(m.method(), Method::Options);
        assert_eq!(m.ruri(), "sip:alice@10.0.0.2:5070");
        let cid = m.callid().unwrap().to_string();
        assert!(cid.starts_with(&format!("{}-", shared().callid_prefix)));
        let reply = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnhp0\r\n\
             From: <sip:pinger@example.net>;tag=1\r\nTo: <sip:alice@10.0.0.2>;tag=2\r\n\
             Call-ID: {cid}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let mut r = SipMsg::parse(reply.as_bytes()).unwrap();
        P.natping_interval.set(10);
        P.sipping_bflag.set(3);
        assert!(absorb_reply(&mut r));
        let other = reply.replace(&cid, "someone-else");
        assert!(!absorb_reply(&mut SipMsg::parse(other.as_bytes()).unwrap()));
        P.natping_interval.set(0);
        P.sipping_bflag.set(-1);
    }
}
