//! DNS: the resolver, the shm cache, RFC 3263 target selection and the
//! destination blacklist.
//!
//! - [`msg`]: the DNS message codec (fuzzed: `fuzz_targets/dns_msg.rs`).
//! - [`resolver`]: resolv.conf and queries with timeouts (no threads).
//! - [`cache`]: the answer cache in shm, shared by every process.
//! - [`blacklist`]: 1.2's static `dst_blacklist` lists and the dynamic blacklist.
//! - here: [`lookup`] (cache, then resolver, CNAMEs followed) and [`targets`] — RFC 3263
//!   §4: a numeric host or an explicit port skips NAPTR/SRV; otherwise NAPTR
//!   (`SIP+D2U`, `SIP+D2T`, `SIPS+D2T` among the transports we serve, by order and
//!   preference) → SRV (`_sip._udp`, `_sip._tcp`, `_sips._tcp`; priority, then the
//!   RFC 2782 weighted random choice) → A, then AAAA when `dns_try_ipv6`.

pub mod blacklist;
pub mod cache;
pub mod msg;
pub mod resolver;

use std::net::{IpAddr, SocketAddr};

use crate::globals::Proto as GProto;
use crate::parser::msg::Proto;
use msg::Rdata;
use resolver::{Deadline, Fail};

/// Allocate the shared tables (attendant, after `shm::init`, before forking).
pub fn init() -> Result<(), String> {
    cache::init()?;
    blacklist::init()
}

fn encode(recs: &[Rdata]) -> String {
    let mut s = String::new();
    for r in recs {
        match r {
            Rdata::A(a) => s.push_str(&format!("A\x1f{a}\n")),
            Rdata::Aaaa(a) => s.push_str(&format!("AAAA\x1f{a}\n")),
            Rdata::Cname(c) => s.push_str(&format!("CNAME\x1f{c}\n")),
            Rdata::Srv {
                priority,
                weight,
                port,
                target,
            } => s.push_str(&format!(
                "SRV\x1f{priority}\x1f{weight}\x1f{port}\x1f{target}\n"
            )),
            Rdata::Naptr {
                order,
                pref,
                flags,
                service,
                regexp,
                replacement,
            } => s.push_str(&format!(
                "NAPTR\x1f{order}\x1f{pref}\x1f{flags}\x1f{service}\x1f{regexp}\x1f{replacement}\n"
            )),
        }
    }
    s
}

fn decode(s: &str) -> Vec<Rdata> {
    s.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\x1f').collect();
            Some(match f.as_slice() {
                ["A", a] => Rdata::A(a.parse().ok()?),
                ["AAAA", a] => Rdata::Aaaa(a.parse().ok()?),
                ["CNAME", c] => Rdata::Cname(c.to_string()),
                ["SRV", p, w, port, t] => Rdata::Srv {
                    priority: p.parse().ok()?,
                    weight: w.parse().ok()?,
                    port: port.parse().ok()?,
                    target: t.to_string(),
                },
                ["NAPTR", o, p, fl, sv, re, rp] => Rdata::Naptr {
                    order: o.parse().ok()?,
                    pref: p.parse().ok()?,
                    flags: fl.to_string(),
                    service: sv.to_string(),
                    regexp: re.to_string(),
                    replacement: rp.to_string(),
                },
                _ => return None,
            })
        })
        .collect()
}

fn rtype(r: &Rdata) -> u16 {
    match r {
        Rdata::A(_) => msg::T_A,
        Rdata::Aaaa(_) => msg::T_AAAA,
        Rdata::Cname(_) => msg::T_CNAME,
        Rdata::Srv { .. } => msg::T_SRV,
        Rdata::Naptr { .. } => msg::T_NAPTR,
    }
}

/// The records of type `qtype` for `name` (search list applied, CNAMEs followed),
/// from the cache or the name servers. Negative answers are cached for
/// `dns_cache_negative_ttl` (or the SOA's minimum, whichever is smaller); a
/// timeout is not cached.
pub fn lookup(name: &str, qtype: u16, dl: Deadline) -> Result<Vec<Rdata>, Fail> {
    lookup_depth(name, qtype, dl, 0)
}

thread_local! {
    static CACHE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// [`targets`] from the cache alone, never asking a name server (for callers that
/// hold a lock, e.g. tm's DNS failover: the first resolution filled the cache).
pub fn targets_cached(
    host: &str,
    port: Option<u16>,
    proto: Option<Proto>,
    sips: bool,
) -> Result<Vec<Target>, String> {
    let prev = CACHE_ONLY.with(|c| c.replace(true));
    let r = targets(host, port, proto, sips);
    CACHE_ONLY.with(|c| c.set(prev));
    r
}

fn lookup_depth(name: &str, qtype: u16, dl: Deadline, depth: u8) -> Result<Vec<Rdata>, Fail> {
    if let Some(e) = cache::get(qtype, name) {
        note_expiry(e.expires);
        return if e.value.is_empty() {
            Err(Fail::NoData(None))
        } else {
            let recs = decode(&e.value);
            match recs.first() {
                Some(Rdata::Cname(c)) if qtype != msg::T_CNAME && depth < 5 => {
                    lookup_depth(c, qtype, dl, depth + 1)
                }
                _ => Ok(recs),
            }
        };
    }
    if CACHE_ONLY.with(|c| c.get()) {
        return Err(Fail::Timeout);
    }
    // A DNS lookup can wait: let the other receivers read meanwhile.
    crate::transport::turn::let_others_read();
    let mut last = Fail::NoData(None);
    for cand in resolver::candidates(name) {
        match resolver::query(&cand, qtype, dl) {
            Ok(r) => {
                let ttl = r.answers.iter().map(|a| a.ttl).min().unwrap_or(0);
                let mine: Vec<Rdata> = r
                    .answers
                    .iter()
                    .filter(|a| rtype(&a.data) == qtype)
                    .map(|a| a.data.clone())
                    .collect();
                if !mine.is_empty() {
                    note_expiry(cache::put(qtype, name, &encode(&mine), ttl));
                    return Ok(mine);
                }
                if let Some(Rdata::Cname(c)) = r
                    .answers
                    .iter()
                    .find(|a| matches!(a.data, Rdata::Cname(_)))
                    .map(|a| a.data.clone())
                    && depth < 5
                {
                    note_expiry(cache::put(
                        qtype,
                        name,
                        &encode(&[Rdata::Cname(c.clone())]),
                        ttl,
                    ));
                    return lookup_depth(&c, qtype, dl, depth + 1);
                }
                last = Fail::NoData(None);
            }
            Err(Fail::Timeout) => return Err(Fail::Timeout),
            Err(f) => last = f,
        }
    }
    if let Fail::NoData(soa) = last {
        let g = crate::globals::get();
        let ttl = soa
            .map(|s| (s as i64).min(g.dns_cache_negative_ttl))
            .unwrap_or(g.dns_cache_negative_ttl);
        note_expiry(cache::put(qtype, name, "", ttl.max(0) as u32));
    }
    Err(last)
}

/// The A or AAAA addresses of `h`; `Err(true)` on a DNS timeout, `Err(false)` when
/// there are none.
fn addrs_of(h: &str, qtype: u16, dl: Deadline) -> Result<Vec<IpAddr>, bool> {
    let v = lookup(h, qtype, dl).map_err(|e| matches!(e, Fail::Timeout))?;
    let a: Vec<IpAddr> = v
        .iter()
        .filter_map(|r| match r {
            Rdata::A(a) => Some(IpAddr::V4(*a)),
            Rdata::Aaaa(a) => Some(IpAddr::V6(*a)),
            _ => None,
        })
        .collect();
    if a.is_empty() { Err(false) } else { Ok(a) }
}

/// The addresses of `name`: A records, then AAAA when `dns_try_ipv6` (1.2 tries
/// IPv6 only if IPv4 gives nothing).
pub fn host_addrs(name: &str, dl: Deadline) -> Result<Vec<IpAddr>, String> {
    let h = name.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let timeout = match addrs_of(h, msg::T_A, dl) {
        Ok(a) => return Ok(a),
        Err(timeout) => timeout,
    };
    let timeout = if crate::globals::get().dns_try_ipv6 && !timeout {
        match addrs_of(h, msg::T_AAAA, dl) {
            Ok(a) => return Ok(a),
            Err(timeout) => timeout,
        }
    } else {
        timeout
    };
    if timeout {
        Err(format!("could not resolve {h}: DNS timeout"))
    } else {
        Err(format!("could not resolve {h}: no such host"))
    }
}

/// One place to send to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub proto: Proto,
}

fn gproto(p: Proto) -> GProto {
    match p {
        Proto::Udp => GProto::Udp,
        Proto::Tcp => GProto::Tcp,
        Proto::Tls => GProto::Tls,
    }
}

fn served(p: Proto) -> bool {
    crate::transport::served::served(gproto(p))
}

fn srv_prefix(p: Proto) -> &'static str {
    match p {
        Proto::Udp => "_sip._udp.",
        Proto::Tcp => "_sip._tcp.",
        Proto::Tls => "_sips._tcp.",
    }
}

/// SRV records `(priority, weight, port, target)` in the order to try: see
/// [`order_weighted`].
pub fn order_srv(recs: Vec<(u16, u16, u16, String)>) -> Vec<(u16, String)> {
    order_weighted(
        recs.into_iter()
            .map(|(p, w, port, t)| (p, w, 0, (port, t)))
            .collect(),
    )
}

/// Items `(priority, weight, _, item)` in the order to try: by priority, and within a
/// priority by RFC 2782's weighted random selection (weight 0 records first in the
/// running sum, as the RFC asks, so they are picked only rarely).
pub fn order_weighted<T>(mut recs: Vec<(u16, u16, u16, T)>) -> Vec<T> {
    recs.sort_by_key(|r| (r.0, r.1 != 0));
    let mut out = Vec::with_capacity(recs.len());
    let mut rest = recs.into_iter().peekable();
    while let Some(first) = rest.next() {
        let prio = first.0;
        let mut group = vec![first];
        while let Some(r) = rest.next_if(|r| r.0 == prio) {
            group.push(r);
        }
        while !group.is_empty() {
            let total: u64 = group.iter().map(|r| r.1 as u64).sum();
            let pick = if total == 0 {
                0
            } else {
                // RFC 2782 draws from [0, sum] so that weight-0 records get a
                // small chance; without any, [1, sum] keeps the ratio exact.
                let x = if group.iter().any(|r| r.1 == 0) {
                    resolver::rand_u64() % (total + 1)
                } else {
                    1 + resolver::rand_u64() % total
                };
                let mut run = 0u64;
                group
                    .iter()
                    .position(|r| {
                        run += r.1 as u64;
                        run >= x
                    })
                    .unwrap_or(0)
            };
            out.push(group.remove(pick).3);
        }
    }
    out
}

/// The targets of one SRV record (or of a plain address lookup: one group).
#[derive(Debug, Clone)]
struct Group {
    prio: u16,
    weight: u16,
    targets: Vec<Target>,
}

/// The targets of an SRV name, one group per SRV record (not yet ordered).
fn srv_targets(name: &str, proto: Proto, dl: Deadline) -> Result<Vec<Group>, Fail> {
    let recs = lookup(name, msg::T_SRV, dl)?;
    let mut out = Vec::new();
    for r in recs {
        let Rdata::Srv {
            priority,
            weight,
            port,
            target,
        } = r
        else {
            continue;
        };
        if target == "." {
            continue;
        }
        if let Ok(ips) = host_addrs(&target, dl) {
            out.push(Group {
                prio: priority,
                weight,
                targets: ips
                    .into_iter()
                    .map(|ip| Target {
                        addr: SocketAddr::new(ip, port),
                        proto,
                    })
                    .collect(),
            });
        }
    }
    if out.is_empty() {
        return Err(Fail::NoData(None));
    }
    Ok(out)
}

fn single(ts: Vec<Target>) -> Vec<Group> {
    vec![Group {
        prio: 0,
        weight: 0,
        targets: ts,
    }]
}

/// The groups in the order to try (SRV priority, then RFC 2782 weights), flattened.
fn ordered(groups: &[Group]) -> Vec<Target> {
    if groups.len() == 1 {
        return groups[0].targets.clone();
    }
    let items: Vec<(u16, u16, u16, usize)> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.prio, g.weight, 0, i))
        .collect();
    order_weighted(items)
        .into_iter()
        .flat_map(|i| groups[i].targets.iter().copied())
        .collect()
}

/// Memoised resolutions: key → (cache generation, expiry, groups).
type Memo = std::collections::HashMap<String, (u64, i64, Vec<Group>)>;

thread_local! {
    /// The earliest expiry of the cache entries read or written by the current
    /// resolution (what a memoised result may live for).
    static EXPIRES: std::cell::Cell<i64> = const { std::cell::Cell::new(i64::MAX) };
    /// Resolutions memoised per process: (cache generation, expiry, groups).
    static MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::new(Memo::new());
}

fn note_expiry(exp: i64) {
    EXPIRES.with(|e| e.set(e.get().min(exp)));
}

/// RFC 3263 §4: every target for a request to `host`, in the order to try.
/// `port` is the URI's explicit port, `proto` its explicit transport (`sips:` gives
/// TLS), `sips` whether only TLS is acceptable. The resolution (before the weighted
/// ordering, which is drawn anew each time) is memoised per process until the
/// earliest expiry of the records it used or a cache flush.
pub fn targets(
    host: &str,
    port: Option<u16>,
    proto: Option<Proto>,
    sips: bool,
) -> Result<Vec<Target>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return resolve_groups(host, port, proto, sips).map(|g| ordered(&g));
    }
    let key = format!("{host}|{port:?}|{proto:?}|{sips}");
    let gen_now = cache::generation();
    let now = crate::clock::now();
    let hit = MEMO.with(|m| {
        m.borrow()
            .get(&key)
            .filter(|(g, exp, _)| *g == gen_now && *exp > now)
            .map(|(_, _, groups)| ordered(groups))
    });
    if let Some(t) = hit {
        return Ok(t);
    }
    let prev = EXPIRES.with(|e| e.replace(i64::MAX));
    let r = resolve_groups(host, port, proto, sips);
    let exp = EXPIRES.with(|e| e.replace(prev));
    note_expiry(exp);
    let groups = r?;
    let out = ordered(&groups);
    if exp > now && exp != i64::MAX {
        MEMO.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() > 1024 {
                m.clear();
            }
            m.insert(key, (gen_now, exp, groups));
        });
    }
    Ok(out)
}

/// The resolution behind [`targets`], as groups of targets.
fn resolve_groups(
    host: &str,
    port: Option<u16>,
    proto: Option<Proto>,
    sips: bool,
) -> Result<Vec<Group>, String> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.is_empty() {
        return Err("empty host".into());
    }
    let default_port = |p: Proto| if p == Proto::Tls { 5061 } else { 5060 };
    if let Ok(ip) = h.parse::<IpAddr>() {
        let p = proto.unwrap_or(Proto::Udp);
        return Ok(single(vec![Target {
            addr: SocketAddr::new(ip, port.unwrap_or(default_port(p))),
            proto: p,
        }]));
    }
    let dl = Deadline::new();
    if let Some(port) = port {
        let p = proto.unwrap_or(Proto::Udp);
        return Ok(single(
            host_addrs(h, dl)?
                .into_iter()
                .map(|ip| Target {
                    addr: SocketAddr::new(ip, port),
                    proto: p,
                })
                .collect(),
        ));
    }
    let mut timed_out = false;
    if proto.is_none() {
        // NAPTR
        match lookup(h, msg::T_NAPTR, dl) {
            Ok(recs) => {
                let mut n: Vec<(u16, u16, Proto, String)> = recs
                    .into_iter()
                    .filter_map(|r| match r {
                        Rdata::Naptr {
                            order,
                            pref,
                            flags,
                            service,
                            replacement,
                            ..
                        } if flags.eq_ignore_ascii_case("s") => {
                            let p = match service.to_ascii_uppercase().as_str() {
                                "SIP+D2U" if !sips => Proto::Udp,
                                "SIP+D2T" if !sips => Proto::Tcp,
                                "SIPS+D2T" => Proto::Tls,
                                _ => return None,
                            };
                            served(p).then_some((order, pref, p, replacement))
                        }
                        _ => None,
                    })
                    .collect();
                n.sort_by_key(|r| (r.0, r.1));
                for (_, _, p, repl) in n {
                    match srv_targets(&repl, p, dl) {
                        Ok(t) => return Ok(t),
                        Err(Fail::Timeout) => timed_out = true,
                        Err(_) => {}
                    }
                }
            }
            Err(Fail::Timeout) => timed_out = true,
            Err(_) => {}
        }
    }
    if !timed_out {
        // SRV for the transports allowed, in the order UDP, TCP, TLS.
        let protos: Vec<Proto> = match proto {
            Some(p) => vec![p],
            None if sips => vec![Proto::Tls],
            None => [Proto::Udp, Proto::Tcp, Proto::Tls]
                .into_iter()
                .filter(|p| served(*p))
                .collect(),
        };
        for p in protos {
            match srv_targets(&format!("{}{h}", srv_prefix(p)), p, dl) {
                Ok(t) => return Ok(t),
                Err(Fail::Timeout) => {
                    timed_out = true;
                    break;
                }
                Err(_) => {}
            }
        }
    }
    if timed_out {
        return Err(format!("could not resolve {h}: DNS timeout"));
    }
    let p = proto.unwrap_or(if sips { Proto::Tls } else { Proto::Udp });
    Ok(single(
        host_addrs(h, dl)?
            .into_iter()
            .map(|ip| Target {
                addr: SocketAddr::new(ip, default_port(p)),
                proto: p,
            })
            .collect(),
    ))
}

/// The first target not in `skip` and not blacklisted (the first not in `skip`
/// when every one is blacklisted: better a likely failure than none tried; a single
/// target is taken as it is).
pub fn pick(ts: &[Target], skip: &[SocketAddr]) -> Option<Target> {
    if let [only] = ts {
        // Nothing to choose from (a numeric host): no blacklist look-up.
        return (!skip.contains(&only.addr)).then_some(*only);
    }
    let fresh: Vec<&Target> = ts.iter().filter(|t| !skip.contains(&t.addr)).collect();
    fresh
        .iter()
        .find(|t| !blacklist::is_blocked(t.proto, t.addr))
        .or(fresh.first())
        .map(|t| **t)
}

/// MI `dns_cache_view`.
pub fn mi_cache_view(_args: &[crate::mi::MiArg]) -> crate::mi::MiReply {
    let mut nodes = Vec::new();
    for (k, left, v) in cache::view() {
        if k.starts_with("0 ") {
            continue;
        }
        let (t, name) = k.split_once(' ').unwrap_or(("", &k));
        let tname = match t.parse::<u16>().unwrap_or(0) {
            msg::T_A => "A",
            msg::T_AAAA => "AAAA",
            msg::T_SRV => "SRV",
            msg::T_NAPTR => "NAPTR",
            msg::T_CNAME => "CNAME",
            _ => "?",
        };
        let mut n = crate::mi::MiNode::new("Entry", format!("{name} {tname} ttl={left}"));
        if v.is_empty() {
            n.kids.push(crate::mi::MiNode::new("negative", "yes"));
        }
        for r in v.lines() {
            n.kids
                .push(crate::mi::MiNode::new("record", r.replace('\x1f', " ")));
        }
        nodes.push(n);
    }
    crate::mi::MiReply::ok(nodes)
}

/// MI `dns_cache_flush`.
pub fn mi_cache_flush(_args: &[crate::mi::MiArg]) -> crate::mi::MiReply {
    cache::flush();
    crate::mi::MiReply::ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode() {
        let r = vec![
            Rdata::A("1.2.3.4".parse().unwrap()),
            Rdata::Srv {
                priority: 1,
                weight: 2,
                port: 3,
                target: "x.y".into(),
            },
            Rdata::Naptr {
                order: 1,
                pref: 2,
                flags: "s".into(),
                service: "SIP+D2T".into(),
                regexp: "!^.*$!sip:a b@c!".into(),
                replacement: "_sip._tcp.x".into(),
            },
        ];
        assert_eq!(decode(&encode(&r)), r);
    }

    #[test]
    fn srv_weights() {
        let mut first = [0u32; 2];
        for _ in 0..4000 {
            let o = order_srv(vec![
                (0, 3, 1, "a".into()),
                (0, 1, 2, "b".into()),
                (1, 100, 3, "c".into()),
            ]);
            assert_eq!(o.len(), 3);
            assert_eq!(o[2].0, 3);
            first[(o[0].0 - 1) as usize] += 1;
        }
        assert!(first[0] > 2700 && first[0] < 3300, "{first:?}");
    }
}
