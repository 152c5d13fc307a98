//! DNS failover (Kamailio's `use_dns_failover`): when a branch to a name fails — its
//! send failed, it timed out (local 408), or it got a 503 without Retry-After — the
//! destination goes on the dynamic blacklist and a new branch goes to the next
//! target of the same resolution (RFC 3263: the next SRV target, address, ...).
//!
//! Runs under the cell's reply lock, so it never queries DNS: the targets come from
//! the DNS cache that the branch's own resolution filled (`uri_targets_with(.., true)`);
//! if they expired meanwhile, no failover. The new branch is a copy of the failed
//! one's request with its Via branch id changed, sent from the same socket, so only
//! targets of the same transport and address family as that socket are used. The
//! destination must have come from the branch's R-URI (a branch routed by a
//! `dst_uri`, whose URI tm does not keep, is not failed over). Off with
//! `disable_dns_failover=yes`, or per transaction with t_relay flag 0x04.

use std::net::SocketAddr;

use openser_core::dns::blacklist;
use openser_core::parser::Proto;
use openser_core::transport::send;

use super::P;
use super::fwd::{now_ms, send as send_buf};
use super::h_table::*;
use super::lookup::branch_id;

/// Branch flag: its failure was handled here (blacklisted, maybe failed over).
pub const B_DNS_FO: u16 = 32;

fn has_retry_after(reply: &[u8]) -> bool {
    reply.windows(13).any(|w| {
        w.eq_ignore_ascii_case(b"\nRetry-After:") || w[..13].eq_ignore_ascii_case(b"\nRetry-After ")
    })
}

/// Handle the failed branches of the current round not yet seen: blacklist their
/// destination and start new branches to the next targets. Returns the number of
/// branches started.
pub fn failover_locked(c: &super::h_table::CellRef, st: &mut CellState) -> usize {
    let g = openser_core::globals::get();
    let enabled = !g.disable_dns_failover && st.flags & T_NO_DNS_FAILOVER == 0;
    let mut started = 0;
    let first = (st.first_branch as usize).min(st.nr_branches as usize);
    let mut i = first;
    while i < st.nr_branches as usize {
        let b = &st.branches[i];
        let why = if b.flags & B_FINAL == 0 || b.flags & B_DNS_FO != 0 {
            None
        } else if b.flags & B_LOCAL_REPLY != 0 && b.last_code == 408 {
            Some(blacklist::ERR_TIMEOUT)
        } else if b.flags & B_LOCAL_REPLY != 0 && b.last_code < 200 {
            Some(blacklist::ERR_SEND)
        } else if b.last_code == 503 && !has_retry_after(b.reply.as_bytes()) {
            Some(blacklist::ERR_503)
        } else {
            None
        };
        let (Some(why), Some(dst)) = (why, b.dst.to_sa()) else {
            i += 1;
            continue;
        };
        st.branches[i].flags |= B_DNS_FO;
        let sock = st.branches[i].sock as usize;
        let proto = send::socket_proto(sock);
        blacklist::add(proto, dst, why);
        if enabled {
            started += next_target(c, st, i, dst, sock, proto);
        }
        i += 1;
    }
    started
}

/// Start a branch to the next target after branch `i`'s (`dst`); 1 if one was sent.
fn next_target(
    c: &super::h_table::CellRef,
    st: &mut CellState,
    i: usize,
    dst: SocketAddr,
    sock: usize,
    proto: Proto,
) -> usize {
    let uri = String::from_utf8_lossy(st.branches[i].uri.as_bytes()).into_owned();
    let Ok(targets) = send::uri_targets_with(&uri, true) else {
        return 0;
    };
    if !targets.iter().any(|t| t.addr == dst) {
        return 0;
    }
    let mut tried: Vec<SocketAddr> = st.branches[..st.nr_branches as usize]
        .iter()
        .filter_map(|b| b.dst.to_sa())
        .collect();
    let usable: Vec<openser_core::dns::Target> = targets
        .into_iter()
        .filter(|t| t.proto == proto && t.addr.is_ipv4() == dst.is_ipv4())
        .collect();
    let old_id = branch_id(c.hash_index, c.label, i as u32);
    while let Some(t) = openser_core::dns::pick(&usable, &tried) {
        tried.push(t.addr);
        let idx = st.nr_branches as usize;
        if idx >= MAX_BRANCHES {
            return 0;
        }
        let new_id = branch_id(c.hash_index, c.label, idx as u32);
        let old = st.branches[i].request.as_bytes();
        let Some(pos) = old
            .windows(old_id.len())
            .position(|w| w == old_id.as_bytes())
        else {
            return 0;
        };
        let mut buf = Vec::with_capacity(old.len() + 4);
        buf.extend_from_slice(&old[..pos]);
        buf.extend_from_slice(new_id.as_bytes());
        buf.extend_from_slice(&old[pos + old_id.len()..]);
        let (Some(req), Some(u)) = (
            shm::ShmStr::new(&buf),
            shm::ShmStr::new(st.branches[i].uri.as_bytes()),
        ) else {
            return 0;
        };
        st.nr_branches += 1;
        let br = &mut st.branches[idx];
        std::mem::replace(&mut br.request, req).free();
        std::mem::replace(&mut br.uri, u).free();
        std::mem::take(&mut br.reply).free();
        br.dst = Addr::from_sa(t.addr);
        br.sock = sock as u32;
        openser_core::log_info!(
            "DNS failover: branch {i} to {dst} failed, trying {}",
            t.addr
        );
        if !send_buf(sock, t.addr, &buf) {
            br.flags = B_FINAL | B_LOCAL_REPLY | B_DNS_FO;
            br.last_code = 0;
            blacklist::add(proto, t.addr, blacklist::ERR_SEND);
            continue;
        }
        let now = now_ms();
        br.flags = 0;
        br.last_code = 0;
        let mut due = u64::MAX;
        if proto == Proto::Udp {
            let t1 = if st.t1_ms != 0 { st.t1_ms } else { P.t1_t2().0 };
            br.retr_iv = t1;
            br.retr_at = now + u64::from(t1);
            due = br.retr_at;
        }
        br.fr_at = now + u64::from(st.fr_ms);
        due = due.min(br.fr_at);
        st.wait_at = 0;
        c.due(due);
        return 1;
    }
    0
}
