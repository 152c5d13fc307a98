//! Reply headers of `save()` (OpenSER 1.2 `reply.c`).
//!
//! 200 OK: one `Contact:` header listing every valid binding,
//! `<uri>[;q=0.5];expires=<remaining>[;received="<uri>"]`, comma separated, plus the
//! Path echo. Errors: `P-Registrar-Error: <text>`, `Retry-After` on 503 when
//! `retry_after` is set, `Unsupported: path` on 420. Like 1.2, no `Date:` header is
//! added (1.2 only adds one through the separate `append_time()` of textops).

use openser_core::parser::SipMsg;
use usrloc::ContactInfo;

use super::RegParams;
use super::save::{RegError, Saved, q_str};

/// Code, reason and extra headers (each line ending in CRLF) of a `save()` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub reason: &'static str,
    pub headers: String,
}

/// The `Contact:` header for `contacts` at `now` ("" if there are none).
pub fn contact_header(contacts: &[ContactInfo], p: &RegParams, now: i64) -> String {
    if contacts.is_empty() {
        return String::new();
    }
    let mut h = String::with_capacity(32 + contacts.len() * 64);
    h.push_str("Contact: ");
    for (i, c) in contacts.iter().enumerate() {
        if i > 0 {
            h.push_str(", ");
        }
        h.push('<');
        h.push_str(&c.contact);
        h.push('>');
        if let Some(q) = q_str(c.q) {
            h.push_str(";q=");
            h.push_str(&q);
        }
        let rem = if c.expires == 0 {
            0
        } else {
            (c.expires - now).max(0)
        };
        h.push_str(";expires=");
        h.push_str(&rem.to_string());
        if !p.received_param.is_empty() && !c.received.is_empty() {
            h.push(';');
            h.push_str(&p.received_param);
            h.push_str("=\"");
            h.push_str(&c.received);
            h.push('"');
        }
    }
    h.push_str("\r\n");
    h
}

/// The reply for a successful save.
pub fn ok_reply(s: &Saved, p: &RegParams, now: i64) -> Reply {
    let mut headers = contact_header(&s.contacts, p, now);
    if let Some(path) = &s.path_echo {
        headers.push_str("Path: ");
        headers.push_str(path);
        headers.push_str("\r\n");
    }
    Reply {
        code: 200,
        reason: "OK",
        headers,
    }
}

/// The reply for an error.
pub fn err_reply(e: RegError, p: &RegParams) -> Reply {
    let (code, reason) = e.reply();
    let mut headers = format!("P-Registrar-Error: {}\r\n", e.text());
    if code == 503 && p.retry_after > 0 {
        headers.push_str(&format!("Retry-After: {}\r\n", p.retry_after));
    }
    if e == RegError::PathUnsup {
        headers.push_str("Unsupported: path\r\n");
    }
    Reply {
        code,
        reason,
        headers,
    }
}

/// Send `r` statelessly for `req` (module sl's `sl_reply`, which also counts sl's
/// reply statistics).
pub fn send(req: &mut SipMsg, r: &Reply) -> Result<(), String> {
    let hdrs: Vec<String> = r
        .headers
        .split_inclusive("\r\n")
        .map(str::to_owned)
        .collect();
    sl::sl_reply(req, r.code, r.reason, &hdrs, b"").map_err(|e| format!("{e:?}"))
}
