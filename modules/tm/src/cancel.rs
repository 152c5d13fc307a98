//! CANCEL and hop-by-hop ACK requests built from a branch's outgoing INVITE
//! (RFC 3261 §9.1 and §17.1.1.3): same Request-URI, top Via (branch), From, Call-ID,
//! CSeq number and Route set; the ACK takes the To of the reply it acknowledges.

use std::fmt::Write as _;

use openser_core::parser::{FirstLine, HdrType, SipMsg};
use openser_core::script::Ctx;

use super::fwd::{self, send};
use super::h_table::*;
use super::reply;

/// Build a CANCEL (`to_from_reply` None) or an ACK (To header line of the reply) for the
/// INVITE in `branch_req`.
pub fn build_cancel_ack(branch_req: &[u8], ack_to: Option<&str>) -> Option<Vec<u8>> {
    build_cancel_ack_with(branch_req, ack_to, "")
}

/// [`build_cancel_ack`] with extra header lines (each ending in CRLF; the Reason
/// headers of a CANCEL, RFC 3326).
pub fn build_cancel_ack_with(
    branch_req: &[u8],
    ack_to: Option<&str>,
    extra: &str,
) -> Option<Vec<u8>> {
    let m = SipMsg::parse(branch_req).ok()?;
    let FirstLine::Request { uri, .. } = *m.first_line() else {
        return None;
    };
    let method = if ack_to.is_some() { "ACK" } else { "CANCEL" };
    let mut s = String::with_capacity(512);
    let _ = write!(s, "{method} {} SIP/2.0\r\n", m.s(uri));
    let v1 = m.via1().ok()?;
    let _ = write!(s, "Via: {}\r\n", m.s(v1.full));
    let buf = m.buf();
    for h in m.hdrs() {
        match h.htype {
            HdrType::From | HdrType::CallId | HdrType::Route => {
                s.push_str(std::str::from_utf8(h.full.bytes(buf)).ok()?.trim_end());
                s.push_str("\r\n");
            }
            HdrType::To if ack_to.is_none() => {
                s.push_str(std::str::from_utf8(h.full.bytes(buf)).ok()?.trim_end());
                s.push_str("\r\n");
            }
            _ => {}
        }
    }
    if let Some(to) = ack_to {
        s.push_str(to.trim_end());
        s.push_str("\r\n");
    }
    let cseq = m.cseq().ok()?;
    let _ = write!(s, "CSeq: {} {method}\r\n", m.s(cseq.num_text));
    s.push_str("Max-Forwards: 70\r\n");
    s.push_str(extra);
    s.push_str("Content-Length: 0\r\n\r\n");
    Some(s.into_bytes())
}

/// The complete To header line of a reply.
pub fn to_line(reply: &SipMsg) -> Option<String> {
    let i = reply.first_of(HdrType::To)?;
    let h = reply.hdrs().get(i)?;
    Some(
        String::from_utf8_lossy(h.full.bytes(reply.buf()))
            .trim_end()
            .to_string(),
    )
}

/// Send a CANCEL on branch `i` if it had a provisional reply, else remember to send
/// one when it does (RFC 3261 §9.1).
pub fn cancel_branch_locked(st: &mut CellState, i: usize) {
    let Some(b) = st.branches.get_mut(i) else {
        return;
    };
    if b.flags & B_CANCEL_SENT != 0 || b.request.is_empty() {
        return;
    }
    if b.flags & B_PROVISIONAL == 0 {
        b.flags |= B_CANCEL_PENDING;
        return;
    }
    let reason = std::str::from_utf8(st.cancel_reason.as_bytes()).unwrap_or("");
    let b = &mut st.branches[i];
    if let (Some(cb), Some(dst)) = (
        build_cancel_ack_with(b.request.as_bytes(), None, reason),
        b.dst.to_sa(),
    ) {
        send(b.sock as usize, dst, &cb);
        b.flags |= B_CANCEL_SENT;
        b.flags &= !B_CANCEL_PENDING;
    }
}

/// Set the Reason header lines of the CANCELs tm is about to send, unless some are
/// set already (the caller's, or an earlier reason).
pub fn set_reason_locked(st: &mut CellState, lines: &str) {
    if !st.cancel_reason.is_empty() || lines.is_empty() {
        return;
    }
    if let Some(r) = shm::ShmStr::new(lines.as_bytes()) {
        std::mem::replace(&mut st.cancel_reason, r).free();
    }
}

/// tm's own Reason line for the CANCELs sent after a final reply `code` (`reason`
/// its phrase) on another branch (`local_cancel_reason`): RFC 3326's
/// `SIP;cause=200;text="Call completed elsewhere"` for a 2xx.
pub fn local_reason_line(code: u16, reason: &str) -> String {
    let text = if (200..300).contains(&code) {
        "Call completed elsewhere".to_string()
    } else {
        reason.replace(['"', '\\', '\r', '\n'], "")
    };
    format!("Reason: SIP;cause={code};text=\"{}\"\r\n", text.trim())
}

/// The Reason header lines of a received CANCEL, each ending in CRLF.
pub fn reason_lines(msg: &SipMsg) -> String {
    let mut out = String::new();
    for i in msg.header_indices("Reason") {
        if let Some(h) = msg.hdrs().get(i)
            && let Ok(t) = std::str::from_utf8(h.full.bytes(msg.buf()))
        {
            out.push_str(t.trim_end());
            out.push_str("\r\n");
        }
    }
    out
}

/// Cancel INVITE transaction `c` as a CANCEL from its caller would (tmx's
/// `t_cancel_callid`, MI `t_cancel_callid`): mark it canceled, set `flags` in its
/// message flags, and CANCEL its pending branches with `reason` (Reason header lines,
/// may be empty). False when a final reply went upstream already.
pub fn cancel_transaction(c: &CellRef, reason: &str, flags: u32) -> bool {
    let mut g = c.lock_state();
    let st = g.st();
    let ok = st.flags & T_COMPLETED == 0;
    if ok {
        st.flags |= T_CANCELED;
        st.msg_flags |= flags;
        set_reason_locked(st, reason);
        cancel_branches_locked(st, None);
        if c.is_invite && super::suspend::cancel_locked(st) {
            reply::complete(c, g);
            return ok;
        }
    }
    g.unlock_then_run_callbacks();
    ok
}

/// Cancel every branch still without a final reply, except `except`.
pub fn cancel_branches_locked(st: &mut CellState, except: Option<usize>) {
    for i in 0..st.nr_branches as usize {
        if Some(i) == except || st.branches[i].flags & B_FINAL != 0 {
            continue;
        }
        cancel_branch_locked(st, i);
    }
}

/// A received CANCEL: when it matches an INVITE transaction, answer it 200 (through
/// its own transaction) and cancel the INVITE's branches; true = handled.
pub fn handle_cancel(ctx: &mut Ctx) -> bool {
    let Some(inv) = reply::find_invite(ctx.msg) else {
        return false;
    };
    match fwd::new_tran(ctx.msg) {
        fwd::NewTran::New(c) => {
            reply::t_reply_msg(&c, ctx.msg, 200, "canceling");
        }
        fwd::NewTran::Retrans(_) => return true,
        fwd::NewTran::Err => {}
    }
    // The caller's Reason headers go into the CANCELs we relay (RFC 3326).
    let reason = if super::P.e2e_cancel_reason() {
        reason_lines(ctx.msg)
    } else {
        String::new()
    };
    let mut g = inv.lock_state();
    let st = g.st();
    if st.flags & T_COMPLETED == 0 {
        st.flags |= T_CANCELED;
        if st.flags & T_NO_E2E_CANCEL_REASON == 0 {
            set_reason_locked(st, &reason);
        }
        cancel_branches_locked(st, None);
        // a suspended INVITE: nothing to cancel downstream, 487 from here
        if super::suspend::cancel_locked(st) {
            reply::complete(&inv, g);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_from_invite() {
        let inv = b"INVITE sip:b@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1.2.0\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKx\r\nRoute: <sip:r@x;lr>\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n";
        let c = String::from_utf8(build_cancel_ack(inv, None).unwrap()).unwrap();
        assert!(c.starts_with(
            "CANCEL sip:b@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1.2.0\r\n"
        ));
        assert!(c.contains("CSeq: 7 CANCEL\r\n"));
        assert!(c.contains("Route: <sip:r@x;lr>\r\n"));
        assert!(!c.contains("10.0.0.9"));
        let a =
            String::from_utf8(build_cancel_ack(inv, Some("To: <sip:b@x>;tag=9")).unwrap()).unwrap();
        assert!(a.starts_with("ACK "));
        assert!(a.contains("To: <sip:b@x>;tag=9\r\n"));
        assert!(a.contains("CSeq: 7 ACK\r\n"));
    }
}
