//! Creating transactions and forwarding requests statefully (t_newtran, t_relay,
//! t_replicate), plus the send/resolve helpers tm uses.

use std::net::SocketAddr;

use openser_core::cfg::ast::RouteKind;
use openser_core::msg::{build_local_reply, build_request, reply_addr};
use openser_core::parser::{Method, Proto, SipMsg};
use openser_core::route;
use openser_core::script::{Ctx, run_route};
use openser_core::transport::send::{self, our_via, send_udp};
use openser_core::transport::socket::sockets;

use super::clone::{avps_to_bytes, proto_code};
use super::h_table::*;
use super::lookup::{Want, branch_id, request_key, request_matches, tm_hash};
use super::{P, T_RELAY_NO_100, T_RELAY_NO_NEGATIVE_REPLY, cancel, reply};

/// Milliseconds on the shared timer clock (100 ms resolution).
pub fn now_ms() -> u64 {
    openser_core::process::timer::get_uticks() * 100
}

/// Send `buf` over UDP from listen socket `sock` (errors logged).
pub fn send(sock: usize, to: SocketAddr, buf: &[u8]) -> bool {
    match send_udp(sock, to, buf) {
        Ok(()) => true,
        Err(e) => {
            openser_core::log_err!("sendto {to}: {e}");
            false
        }
    }
}

/// Resolve host + port (IP literal, or a blocking lookup: never under a lock).
pub fn resolve_host(host: &str, port: u16) -> Option<SocketAddr> {
    send::resolve_host(host, port).ok()
}

/// Where a request for `uri` goes, and over which transport (an unserved transport
/// or an unresolvable host is logged and gives `None`).
pub fn uri_destination(uri: &str) -> Option<(SocketAddr, Proto)> {
    match send::uri_destination(uri) {
        Ok(d) => Some(d),
        Err(e) => {
            openser_core::log_err!("{e}");
            None
        }
    }
}

/// `[proto:]rest` → (transport, rest); UDP without a prefix.
pub fn split_proto(s: &str) -> (Proto, &str) {
    let s = s.trim();
    for (p, proto) in [
        ("udp:", Proto::Udp),
        ("tcp:", Proto::Tcp),
        ("tls:", Proto::Tls),
    ] {
        if let (Some(a), Some(rest)) = (s.get(..p.len()), s.get(p.len()..))
            && a.eq_ignore_ascii_case(p)
        {
            return (proto, rest);
        }
    }
    (Proto::Udp, s)
}

/// `[proto:]host[:port]` → address.
pub fn parse_hostport(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    let s = ["udp:", "tcp:", "tls:", "sctp:"]
        .iter()
        .find_map(|p| match (s.get(..p.len()), s.get(p.len()..)) {
            (Some(a), Some(rest)) if a.eq_ignore_ascii_case(p) && !rest.is_empty() => Some(rest),
            _ => None,
        })
        .unwrap_or(s);
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa);
    }
    let (h, p) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, p.parse().ok()?),
        _ => (s, 5060),
    };
    resolve_host(h, p)
}

/// Result of creating or finding a request's transaction.
pub enum NewTran {
    New(CellRef),
    Retrans(CellRef),
    Err,
}

/// t_newtran: the current transaction of this message, or a new one; a retransmission
/// gets the last reply re-sent.
pub fn new_tran(msg: &SipMsg) -> NewTran {
    if let Some(c) = super::current() {
        return NewTran::New(c);
    }
    // The transaction keeps the request with the changes made so far (record_route...).
    let applied;
    let base: &SipMsg = if msg.lumps.is_empty() {
        msg
    } else {
        match SipMsg::new(&msg.lumps.apply(msg.buf()), msg.rcv) {
            Ok(m) => {
                applied = m;
                &applied
            }
            Err(_) => msg,
        }
    };
    let (Some(key), Some(mkey)) = (request_key(base), request_key(msg)) else {
        openser_core::log_err!("cannot get the transaction key");
        return NewTran::Err;
    };
    let callid = mkey.callid.of(msg.buf());
    let cseq = mkey.cseq_num.of(msg.buf());
    let hash = tm_hash(callid, cseq);
    let uas_dst = reply_addr(msg).ok();
    let (ruri_m, via1_m) = (P.ruri_matching(), P.via1_matching());
    let is_invite = msg.method() == Method::Invite;
    let r = find_or_insert(
        hash,
        |c| request_matches(c, msg, &mkey, Want::Same, ruri_m, via1_m),
        || {
            let req = shm::ShmStr::new(base.buf())?;
            let st = CellState {
                flags: T_ALL_LOCAL
                    | if is_invite { T_INVITE } else { 0 }
                    | if msg.rcv.proto == Proto::Udp {
                        T_UDP
                    } else {
                        0
                    },
                msg_flags: msg.flags,
                uas_dst: uas_dst.map(Addr::from_sa).unwrap_or_default(),
                uas_sock: msg.rcv.sock_idx as u32,
                fr_ms: P.fr_ms(),
                fr_inv_ms: P.fr_inv_ms(),
                // Safety net: a transaction nobody forwards or answers goes away after
                // fr_timer + wt_timer (cleared when branches are sent).
                wait_at: now_ms() + u64::from(P.fr_ms()) + u64::from(P.wt_ms()),
                ..Default::default()
            };
            let init = CellInit {
                rcv_src: Addr::from_sa(msg.rcv.src),
                rcv_dst: Addr::from_sa(msg.rcv.dst),
                rcv_sock: msg.rcv.sock_idx as u32,
                rcv_proto: proto_code(msg.rcv.proto),
            };
            let c = new_cell(hash, req, key, init, st);
            if c.is_none() {
                req.free();
            }
            c
        },
    );
    match r {
        Some((c, true)) => {
            {
                let mut g = c.lock_state();
                let w = g.st().wait_at;
                c.due(w);
            }
            super::stats().uas.inc();
            super::set_current(&c);
            NewTran::New(c)
        }
        Some((c, false)) => {
            reply::resend_last(&c);
            NewTran::Retrans(c)
        }
        None => {
            openser_core::log_dbg!("out of shm memory"); // counted, logged by the timer (issue 18)
            NewTran::Err
        }
    }
}

/// A built branch: request, R-URI, destination, socket.
type Built = (Vec<u8>, String, SocketAddr, usize);

/// One destination of a t_relay.
struct Dest {
    uri: String,
    dst_uri: Option<String>,
    sock: Option<usize>,
    addr: Option<(SocketAddr, Proto)>,
}

/// Forward statefully to the destination set (or `fixed`) on transaction `c`.
/// Returns the number of branches sent.
pub fn relay_branches(ctx: &mut Ctx, c: &CellRef, fixed: Option<(SocketAddr, Proto)>) -> usize {
    let mut dests = Vec::new();
    let ruri = ctx.msg.ruri().to_string();
    // 1.2 forks only the destination set from failure_route, so its idiom there is
    // `rewriteuri(…); append_branch(); t_relay();`: the R-URI is already a branch then,
    // and is sent once.
    let in_set = ctx.route_type == route::FAILURE_ROUTE
        && fixed.is_none()
        && ctx
            .branches
            .iter()
            .any(|b| b.uri == ruri && (ctx.msg.dst_uri.is_none() || b.dst_uri == ctx.msg.dst_uri));
    if !in_set {
        dests.push(Dest {
            uri: ruri,
            dst_uri: ctx.msg.dst_uri.clone(),
            sock: ctx.msg.force_send_sock,
            addr: fixed,
        });
    }
    if fixed.is_none() {
        for b in std::mem::take(&mut ctx.branches) {
            dests.push(Dest {
                uri: b.uri,
                dst_uri: b.dst_uri,
                sock: b.force_send_sock,
                addr: None,
            });
        }
    }
    // Resolve outside any lock.
    for d in dests.iter_mut() {
        if d.addr.is_none() {
            d.addr = uri_destination(d.dst_uri.as_deref().unwrap_or(&d.uri));
            if d.addr.is_none() {
                openser_core::log_err!("cannot resolve {}", d.dst_uri.as_deref().unwrap_or(&d.uri));
            }
        }
    }
    // Per-transaction timers from AVPs.
    let fr = super::avp_secs(ctx, true);
    let fr_inv = super::avp_secs(ctx, false);
    let avps = avps_to_bytes(&ctx.avps);
    // Reserve branch slots.
    let (base, on_branch) = {
        let mut g = c.lock_state();
        let st = g.st();
        let room = MAX_BRANCHES.saturating_sub(st.nr_branches as usize);
        if dests.len() > room {
            openser_core::log_err!("maximum number of branches exceeded");
            dests.truncate(room);
        }
        let base = st.nr_branches as usize;
        if ctx.route_type == route::FAILURE_ROUTE {
            st.first_branch = base as u32;
        }
        st.nr_branches += dests.len() as u32;
        for b in &mut st.branches[base..base + dests.len()] {
            b.flags = B_FINAL | B_LOCAL_REPLY; // until sent
            b.last_code = 0;
        }
        if let Some(f) = fr {
            st.fr_ms = f;
        }
        if let Some(f) = fr_inv {
            st.fr_inv_ms = f;
        }
        // t_set_fr / t_set_retr / t_set_no_e2e_cancel_reason win over the AVPs (read
        // before take_pending resets them).
        super::apply_settings(st);
        let pend = super::take_pending();
        if ctx.route_type == route::REQUEST_ROUTE {
            st.on_failure = pend[0];
            st.on_reply = pend[1];
            st.on_branch = pend[2];
        } else {
            if pend[0] != 0 {
                st.on_failure = pend[0];
            }
            if pend[1] != 0 {
                st.on_reply = pend[1];
            }
            if pend[2] != 0 {
                st.on_branch = pend[2];
            }
        }
        st.msg_flags = ctx.msg.flags;
        if let Some(a) = shm::ShmStr::new(&avps) {
            std::mem::replace(&mut st.avps, a).free();
        }
        (base, st.on_branch)
    };
    // Build every branch (no lock held: branch routes run here).
    let mut built: Vec<Option<Built>> = Vec::with_capacity(dests.len());
    for (k, d) in dests.iter().enumerate() {
        let idx = base + k;
        let Some((addr, proto)) = d.addr else {
            built.push(None);
            continue;
        };
        let sock = send::choose_socket_for(&addr, proto, d.sock);
        if sockets().get(sock).is_none() {
            built.push(None);
            continue;
        }
        let branch = branch_id(c.hash_index, c.label, idx as u32);
        let via = our_via(sock, &branch, ctx.msg);
        let out = if on_branch != 0 {
            let mut m2 = ctx.msg.clone();
            m2.new_uri = Some(d.uri.clone());
            m2.dst_uri = d.dst_uri.clone();
            let mut c2 = Ctx::new(&mut m2, route::BRANCH_ROUTE);
            c2.avps = ctx.avps.clone();
            c2.branch_idx = (idx + 1) as u32;
            let prev = super::swap_current(Some(c));
            run_route(RouteKind::Branch, (on_branch - 1) as usize, &mut c2);
            super::swap_current(prev.as_ref());
            if c2.drop_requested() {
                openser_core::log_dbg!("branch {idx} dropped in branch_route");
                built.push(None);
                continue;
            }
            let uri = m2.ruri().to_string();
            build_request(&m2, &via, &[]).ok().map(|b| (b, uri))
        } else {
            let saved = ctx.msg.new_uri.replace(d.uri.clone());
            let r = build_request(ctx.msg, &via, &[]).ok();
            ctx.msg.new_uri = saved;
            r.map(|b| (b, d.uri.clone()))
        };
        built.push(out.map(|(b, u)| (b, u, addr, sock)));
    }
    // Store and send under the reply lock (UDP sends do not block).
    let now = now_ms();
    let mut sent = 0;
    let mut g = c.lock_state();
    let st = g.st();
    let (t1, _) = P.t1_t2_of(st);
    let mut due = u64::MAX;
    let msg_flags = st.msg_flags;
    let trace = super::callbacks::traces(msg_flags);
    let mut traced = Vec::new();
    for (k, b) in built.into_iter().enumerate() {
        let idx = base + k;
        let Some((buf, uri, addr, sock)) = b else {
            continue;
        };
        let (Some(req), Some(u)) = (shm::ShmStr::new(&buf), shm::ShmStr::new(uri.as_bytes()))
        else {
            openser_core::log_dbg!("out of shm memory for a branch"); // counted, logged by the timer
            continue;
        };
        let br = &mut st.branches[idx];
        std::mem::replace(&mut br.request, req).free();
        std::mem::replace(&mut br.uri, u).free();
        br.dst = Addr::from_sa(addr);
        br.sock = sock as u32;
        if !send(sock, addr, &buf) {
            continue;
        }
        if trace {
            traced.push(super::callbacks::TraceEvent {
                dir: super::callbacks::TraceDir::RequestOut,
                buf: buf.clone(),
                local: super::callbacks::sock_addr(sock),
                peer: addr,
                flags: msg_flags,
                avps: ctx.avps.clone(),
            });
        }
        br.flags = 0;
        br.last_code = 0;
        // retransmissions over UDP only (RFC 3261 §17.1.1.2, §17.1.2.2)
        if send::socket_proto(sock) == Proto::Udp {
            br.retr_iv = t1;
            br.retr_at = now + u64::from(t1);
            due = due.min(br.retr_at);
        }
        br.fr_at = now + u64::from(st.fr_ms);
        due = due.min(br.fr_at);
        sent += 1;
    }
    if sent > 0 {
        st.wait_at = 0;
    }
    c.due(due);
    // Branches whose send failed: blacklist, and the next DNS target.
    sent += super::dns_failover::failover_locked(c, st);
    drop(g);
    for ev in &traced {
        super::callbacks::trace_now(ev);
    }
    sent
}

/// t_relay for a request that has (or gets) a transaction. Returns the script rc.
pub fn t_relay(ctx: &mut Ctx, fixed: Option<(SocketAddr, Proto)>, flags: i64) -> i32 {
    let m = ctx.msg.method();
    if m == Method::Ack {
        return relay_ack(ctx, fixed);
    }
    if m == Method::Cancel && ctx.route_type == route::REQUEST_ROUTE && cancel::handle_cancel(ctx) {
        return 1;
    }
    let c = if ctx.route_type == route::FAILURE_ROUTE {
        match super::current() {
            Some(c) => c,
            None => return -1,
        }
    } else {
        match new_tran(ctx.msg) {
            NewTran::New(c) => c,
            NewTran::Retrans(_) => return 0,
            NewTran::Err => {
                if flags & T_RELAY_NO_NEGATIVE_REPLY != 0 {
                    return -1;
                }
                // No transaction (shm exhausted or broken headers): answer statelessly.
                if let Ok(b) = build_local_reply(
                    ctx.msg,
                    500,
                    "Server Internal Error (TM)",
                    None,
                    &[],
                    b"",
                    None,
                ) {
                    let _ = openser_core::transport::forward::send_reply(ctx.msg, &b);
                }
                return 0;
            }
        }
    };
    if ctx.route_type == route::REQUEST_ROUTE && c.is_invite && flags & T_RELAY_NO_100 == 0 {
        reply::reply_local_if_none(&c, ctx.msg, 100, "trying -- your call is important to us");
    }
    if flags & super::T_RELAY_NO_DNS_FAILOVER != 0 {
        c.lock_state().st().flags |= T_NO_DNS_FAILOVER;
    }
    if ctx.route_type == route::REQUEST_ROUTE {
        super::callbacks::run_request_in(ctx);
    }
    let n = relay_branches(ctx, &c, fixed);
    if n == 0 {
        if ctx.route_type == route::FAILURE_ROUTE {
            return -1;
        }
        if flags & T_RELAY_NO_NEGATIVE_REPLY != 0 {
            return -1;
        }
        reply::t_reply_msg(&c, ctx.msg, 500, "Unable to forward (1/TM)");
        return 0;
    }
    1
}

/// Run the E2eAck hooks for the ACK of a 2xx of one of our transactions (no lock held).
fn e2e_ack_event(ack: &SipMsg) {
    let Some((flags, code, avps)) = reply::find_e2e_ack(ack) else {
        return;
    };
    if !super::callbacks::wants(flags) {
        return;
    }
    let mut req = ack.clone();
    req.flags = flags;
    let to_tag = ack
        .to()
        .ok()
        .and_then(|t| t.tag)
        .map(|t| ack.s(t).to_string())
        .unwrap_or_default();
    let mut ev = super::callbacks::TmEvent {
        kind: super::callbacks::TmEventKind::E2eAck,
        req,
        code,
        reason: String::new(),
        to_tag,
        avps,
    };
    super::callbacks::run_hooks(&mut ev);
}

/// ACK: absorbed when it acknowledges our negative final reply, else forwarded
/// statelessly (2xx ACKs are end-to-end).
fn relay_ack(ctx: &mut Ctx, fixed: Option<(SocketAddr, Proto)>) -> i32 {
    if reply::absorb_ack(ctx.msg) {
        return 0;
    }
    if super::callbacks::e2e_ack_wanted() {
        e2e_ack_event(ctx.msg);
    }
    match openser_core::transport::forward::forward_request_on(ctx.msg, fixed) {
        Ok(()) => 1,
        Err(_) => -1,
    }
}
