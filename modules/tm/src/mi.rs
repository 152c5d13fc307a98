//! tm's MI commands (1.2's `mi.c`): `t_uac_dlg` (send a request, answer with its final
//! reply), `t_uac_cancel` (cancel a local INVITE by Call-ID and CSeq), `t_hash` (the
//! table's load per entry) and `t_reply` (answer a pending transaction by its
//! `hash:label`).
//!
//! 1.2's MI answers `t_uac_dlg` asynchronously from the process that got the reply; here
//! the MI process that runs the command keeps a counted reference to the transaction
//! and polls it (every 20 ms) until it is complete, bounded by the transaction's own
//! final-response timer plus a margin: tm's timer ends a request that got no final
//! reply with a local 408, so the wait always ends. No tm lock is held while sleeping.

use std::time::{Duration, Instant};

use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::parser::{HdrType, Proto, SipMsg};
use openser_core::transport::socket::sockets;

use super::h_table::*;
use super::lookup::tm_hash;
use super::uac::{LocalRequest, send_request_cell};
use super::{P, reply};

/// A header block given to `t_uac_dlg`: the ones tm builds itself and the rest.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HdrBlock {
    pub from: Option<String>,
    pub to: Option<String>,
    pub callid: Option<String>,
    pub cseq: Option<(u32, String)>,
    pub content_type: bool,
    pub content_length: bool,
    /// Other header lines, each ending in CRLF.
    pub rest: String,
}

/// Split the MI header argument (lines separated by LF or CRLF; continuation lines
/// starting with white space are folded into the previous header).
pub fn parse_headers(text: &str) -> Result<HdrBlock, &'static str> {
    let mut lines: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        let l = raw.trim_end_matches('\r');
        if l.trim().is_empty() {
            continue;
        }
        if l.starts_with([' ', '\t']) {
            match lines.last_mut() {
                Some(prev) => {
                    prev.push(' ');
                    prev.push_str(l.trim());
                }
                None => return Err("Bad headers"),
            }
        } else {
            lines.push(l.to_string());
        }
    }
    let mut h = HdrBlock::default();
    for l in lines {
        let Some((name, value)) = l.split_once(':') else {
            return Err("Bad headers");
        };
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err("Bad headers");
        }
        let value = value.trim().to_string();
        match name.to_ascii_lowercase().as_str() {
            "from" | "f" => h.from = Some(value),
            "to" | "t" => h.to = Some(value),
            "call-id" | "i" => h.callid = Some(value),
            "cseq" => {
                let mut it = value.split_whitespace();
                let n = it
                    .next()
                    .and_then(|n| n.parse::<u32>().ok())
                    .ok_or("Bad CSeq number")?;
                let m = it.next().unwrap_or("").to_string();
                h.cseq = Some((n, m));
            }
            other => {
                if other == "content-length" || other == "l" {
                    h.content_length = true;
                    continue;
                }
                if other == "content-type" || other == "c" {
                    h.content_type = true;
                }
                h.rest.push_str(name);
                h.rest.push_str(": ");
                h.rest.push_str(&value);
                h.rest.push_str("\r\n");
            }
        }
    }
    Ok(h)
}

fn msg(code: u16, reason: &str) -> MiReply {
    MiReply::err(code, reason)
}

/// A listen socket given as `[proto:]host[:port]`.
fn find_socket(s: &str) -> Option<usize> {
    let (proto, rest) = match s.split_once(':') {
        Some((p, r)) if Proto::from_name(p.as_bytes()).is_some() => {
            (Some(p.to_ascii_lowercase()), r)
        }
        _ => (None, s),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && p.parse::<u16>().is_ok() => (h, p.parse::<u16>().ok()),
        _ => (rest, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    sockets().iter().position(|si| {
        proto.as_deref().is_none_or(|p| p == si.proto.as_str())
            && port.is_none_or(|p| p == si.port)
            && (si.address_str.trim_start_matches('[').trim_end_matches(']') == host
                || si.name == host)
    })
}

/// `t_uac_dlg`: method, R-URI, next hop or ".", socket or ".", headers or ".", [body].
pub fn mi_uac_dlg(args: &[MiArg]) -> MiReply {
    if !(5..=6).contains(&args.len()) {
        return msg(400, "Too few or too many arguments");
    }
    let method = args[0].value.trim();
    if method.is_empty() || method.contains(char::is_whitespace) {
        return msg(400, "Invalid method");
    }
    let ruri = args[1].value.trim();
    if openser_core::parser::Uri::parse(ruri).is_err() {
        return msg(400, "Invalid RURI");
    }
    let nexthop = match args[2].value.trim() {
        "." => None,
        n => {
            if openser_core::parser::Uri::parse(n).is_err() {
                return msg(400, "Invalid NEXTHOP");
            }
            Some(n)
        }
    };
    let sock = match args[3].value.trim() {
        "." => None,
        s => match find_socket(s) {
            Some(i) => Some(i),
            None => return msg(404, "Local socket not found"),
        },
    };
    let hdrs = match args[4].value.trim() {
        "." => HdrBlock::default(),
        t => match parse_headers(t) {
            Ok(h) => h,
            Err(e) => return msg(400, e),
        },
    };
    let body = args.get(5).map(|a| a.value.as_bytes()).unwrap_or(b"");
    if !body.is_empty() && !hdrs.content_type {
        return msg(400, "Content-Type missing");
    }
    if !body.is_empty() && hdrs.content_length {
        return msg(400, "Content-Length disallowed");
    }
    let Some(to) = hdrs.to.as_deref() else {
        return msg(400, "To missing");
    };
    let Some(from) = hdrs.from.as_deref() else {
        return msg(400, "From missing");
    };
    if let Some((_, m)) = &hdrs.cseq
        && m != method
    {
        return msg(400, "CSeq method mismatch");
    }
    let r = LocalRequest {
        method,
        ruri,
        from,
        to,
        dst: nexthop,
        headers: &hdrs.rest,
        body,
        callback: None,
        callid: hdrs.callid.as_deref(),
        cseq: hdrs.cseq.as_ref().map(|c| c.0),
        sock,
    };
    let c = match send_request_cell(&r) {
        Ok(c) => c,
        Err(e) => {
            openser_core::log_err!("t_uac_dlg: {e}");
            return MiReply::ok(vec![MiNode::value("500 MI/UAC failed")]);
        }
    };
    let is_invite = method.eq_ignore_ascii_case("INVITE");
    let fr = if is_invite { P.fr_inv_ms() } else { P.fr_ms() };
    let limit = Duration::from_millis(u64::from(fr) + 5000);
    let start = Instant::now();
    let outcome = loop {
        {
            let mut g = c.lock_state();
            let st = g.st();
            if st.flags & T_COMPLETED != 0 {
                let b = &st.branches[0];
                break Some((b.last_code, b.reply.as_bytes().to_vec()));
            }
        }
        if start.elapsed() > limit {
            break None;
        }
        openser_core::process::signals::child_check();
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(c);
    let Some((code, buf)) = outcome else {
        return MiReply::ok(vec![
            MiNode::value("408 Request Timeout"),
            MiNode::value("."),
            MiNode::value("."),
            MiNode::value("."),
            MiNode::value("."),
        ]);
    };
    reply_nodes(code, &buf, nexthop.unwrap_or(ruri))
}

/// 1.2's answer: the status line; for a 2xx the dialog's remote target, next hop and
/// route set (else "." three times); the reply's headers and body ("." for a local one).
fn reply_nodes(code: u16, buf: &[u8], next_hop: &str) -> MiReply {
    let Ok(m) = SipMsg::parse(buf) else {
        let mut v = vec![MiNode::value(format!("{code} {}", reason_of(code)))];
        v.extend((0..4).map(|_| MiNode::value(".")));
        return MiReply::ok(v);
    };
    let mut v = vec![MiNode::value(format!(
        "{} {}",
        m.status().unwrap_or(code),
        m.reason().unwrap_or("")
    ))];
    if (200..300).contains(&code) {
        let target = m
            .contacts()
            .ok()
            .and_then(|l| l.contacts.first().map(|c| m.s(c.uri).to_string()));
        v.push(MiNode::value(target.unwrap_or_else(|| ".".into())));
        v.push(MiNode::value(next_hop));
        let routes: Vec<String> = m
            .routes(HdrType::RecordRoute)
            .map(|rr| {
                rr.iter()
                    .rev()
                    .map(|r| format!("<{}>{}", m.s(r.uri), m.s(r.params_span)))
                    .collect()
            })
            .unwrap_or_default();
        if routes.is_empty() {
            v.push(MiNode::value("."));
        } else {
            v.push(MiNode::value(format!("Route: {}", routes.join(", "))));
        }
    } else {
        v.extend((0..3).map(|_| MiNode::value(".")));
    }
    let start = m.hdrs_start();
    let rest = String::from_utf8_lossy(&buf[start.min(buf.len())..]);
    v.push(MiNode::value(rest.trim_end().to_string()));
    MiReply::ok(v)
}

fn reason_of(code: u16) -> &'static str {
    match code {
        408 => "Request Timeout",
        500 => "Server Internal Error",
        _ => "Local Reply",
    }
}

/// `t_uac_cancel`: Call-ID, CSeq number of a local INVITE still pending.
pub fn mi_uac_cancel(args: &[MiArg]) -> MiReply {
    if args.len() != 2 {
        return msg(400, "Too few or too many arguments");
    }
    let callid = args[0].value.trim().as_bytes();
    let cseq = args[1].value.trim().as_bytes();
    let hash = tm_hash(callid, cseq);
    let Some(c) = find_in_entry(hash, |c| {
        c.k(c.key.callid) == callid && c.k(c.key.cseq_num) == cseq && c.is_invite
    }) else {
        return msg(481, "No such transaction");
    };
    let mut g = c.lock_state();
    let st = g.st();
    st.flags |= T_CANCELED;
    super::cancel::cancel_branches_locked(st, None);
    g.unlock_then_run_callbacks();
    MiReply::ok(Vec::new())
}

/// `t_hash`: one line per hash entry, with the transactions in it now (`Current`) and
/// the labels given out so far (`Total`, 1.2's `acc_entries`).
pub fn mi_hash(_: &[MiArg]) -> MiReply {
    let mut nodes = Vec::with_capacity(TABLE_ENTRIES);
    for i in 0..TABLE_ENTRIES as u32 {
        let (cur, total) = entry_load(i);
        nodes.push(
            MiNode::value(i.to_string())
                .attr("Current", cur.to_string())
                .attr("Total", total.to_string()),
        );
    }
    MiReply::ok(nodes)
}

/// `t_reply`: code, reason, `hash:label`, To tag, headers or ".", [body].
pub fn mi_reply(args: &[MiArg]) -> MiReply {
    if !(5..=6).contains(&args.len()) {
        return msg(400, "Too few or too many arguments");
    }
    let Some(code) = args[0]
        .value
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|c| (100..700).contains(c))
    else {
        return msg(400, "Invalid reply code");
    };
    let reason = args[1].value.trim();
    let Some((h, l)) = args[2].value.trim().split_once(':') else {
        return msg(400, "Invalid trans_id");
    };
    let Some(hash) = h
        .parse::<u32>()
        .ok()
        .filter(|h| (*h as usize) < TABLE_ENTRIES)
    else {
        return msg(400, "Invalid index in trans_id");
    };
    let Ok(label) = l.parse::<u32>() else {
        return msg(400, "Invalid label in trans_id");
    };
    let Some(c) = find_in_entry(hash, |c| c.label == label) else {
        return msg(404, "Transaction not found");
    };
    let totag = args[3].value.trim();
    let hdr_text = args[4].value.trim();
    let mut lines: Vec<String> = Vec::new();
    if hdr_text != "." {
        for l in hdr_text.split('\n') {
            let l = l.trim_end_matches('\r');
            if !l.trim().is_empty() {
                lines.push(format!("{l}\r\n"));
            }
        }
    }
    let hdrs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let body = args.get(5).map(|a| a.value.as_bytes()).unwrap_or(b"");
    if reply::t_reply_with_body(&c, code, reason, totag, &hdrs, body) {
        MiReply::ok(Vec::new())
    } else {
        msg(500, "Reply failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_block() {
        let h = parse_headers(
            "From: <sip:a@x>;tag=1\r\nt: <sip:b@y>\nCSeq: 5 OPTIONS\nContact: <sip:a@1.2.3.4>\n  ;expires=5\nContent-Type: text/plain\n",
        )
        .unwrap();
        assert_eq!(h.from.as_deref(), Some("<sip:a@x>;tag=1"));
        assert_eq!(h.to.as_deref(), Some("<sip:b@y>"));
        assert_eq!(h.cseq, Some((5, "OPTIONS".into())));
        assert!(h.content_type && !h.content_length);
        assert_eq!(
            h.rest,
            "Contact: <sip:a@1.2.3.4> ;expires=5\r\nContent-Type: text/plain\r\n"
        );
        assert_eq!(parse_headers("no colon"), Err("Bad headers"));
        assert_eq!(parse_headers("CSeq: x INVITE"), Err("Bad CSeq number"));
        assert_eq!(parse_headers(" folded first"), Err("Bad headers"));
    }

    fn a(v: &str) -> MiArg {
        MiArg {
            name: None,
            value: v.into(),
        }
    }

    #[test]
    fn uac_dlg_checks_before_sending() {
        let base = |h: &str, body: Option<&str>| {
            let mut v = vec![a("OPTIONS"), a("sip:x@127.0.0.1"), a("."), a("."), a(h)];
            if let Some(b) = body {
                v.push(a(b));
            }
            mi_uac_dlg(&v)
        };
        assert_eq!(mi_uac_dlg(&[a("OPTIONS")]).code, 400);
        assert_eq!(base("From: <sip:a@b>", None).reason, "To missing");
        assert_eq!(base("To: <sip:a@b>", None).reason, "From missing");
        assert_eq!(
            base("To: <sip:a@b>\nFrom: <sip:c@d>", Some("v=0")).reason,
            "Content-Type missing"
        );
        assert_eq!(
            base(
                "To: <sip:a@b>\nFrom: <sip:c@d>\nContent-Type: a/b\nContent-Length: 3",
                Some("v=0")
            )
            .reason,
            "Content-Length disallowed"
        );
        assert_eq!(
            base("To: <sip:a@b>\nFrom: <sip:c@d>\nCSeq: 1 INVITE", None).reason,
            "CSeq method mismatch"
        );
        let r = mi_uac_dlg(&[a("OPTIONS"), a("nonsense"), a("."), a("."), a(".")]);
        assert_eq!(r.reason, "Invalid RURI");
    }

    #[test]
    fn reply_args() {
        assert_eq!(mi_reply(&[a("x")]).code, 400);
        let r = |code: &str, id: &str| mi_reply(&[a(code), a("OK"), a(id), a("t"), a(".")]);
        assert_eq!(r("999", "1:1").reason, "Invalid reply code");
        assert_eq!(r("200", "11").reason, "Invalid trans_id");
        assert_eq!(r("200", "x:1").reason, "Invalid index in trans_id");
        assert_eq!(r("200", "1:y").reason, "Invalid label in trans_id");
        assert_eq!(mi_uac_cancel(&[a("x")]).code, 400);
    }
}
