//! uac_redirect (OpenSER 1.2 `modules/uac_redirect`): follow 3xx redirects from
//! failure_route — the Contacts of the transaction's 3xx replies become the new
//! destinations, filtered and ordered by q.
//!
//! * `get_redirects(max)` / `get_redirects(max, reason)` (FAILURE_ROUTE): for every
//!   branch of the transaction that ended with a 3xx, take its Contacts that pass the
//!   filters, highest q first (no q counts as 1.0; a contact with a bad q is skipped;
//!   at most 16 per reply, as 1.2), skip the ones already tried on this transaction
//!   (a redirect loop), and limit them by `max` = `total[:per_branch]` (`0` or `*` =
//!   unlimited). The first becomes the Request-URI, the others are appended as
//!   branches, so the script's `t_relay()` forks to them in that order, in parallel
//!   as 1.2 does; for one after the other by q, `serialize_branches(1);
//!   next_branches();` before `t_relay()` and `next_branches()` again in the next
//!   failure_route (tests/it/redirect.rs). rc 1 when a contact was added, −1 when not.
//!   With `reason`, each added contact is accounted through acc (`acc_function`:
//!   `acc_log_request`, or `acc_db_request` into `acc_db_table`) with `reason` as the
//!   comment and the contact as `$ru`.
//! * `set_accept_filter(re, flags)`, `set_deny_filter(re, flags)` (FAILURE_ROUTE):
//!   add a filter for the current message (`flags`: `reset_all`, `reset_default`,
//!   `reset_added` or ""; at most six per kind, default included). rc −1 when full.
//!
//! Parameters (1.2 defaults): `default_filter` `accept` (or `deny`), `deny_filter`,
//! `accept_filter` (POSIX extended, case-insensitive; checked at start-up),
//! `acc_function` `acc_log_request`, `acc_db_table` `acc`. Accounting needs acc loaded
//! (checked at start-up when the script uses the two-argument form).

pub mod filter;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use openser_core::cfg::ast::Arg;
use openser_core::module::{CmdExport, FixedArg, ModuleExports, Param, StrParam, is_loaded};
use openser_core::parser::SipMsg;
use openser_core::re::Regex;
use openser_core::route::FAILURE_ROUTE;
use openser_core::script::fixup::string_arg;
use openser_core::script::{Branch, Ctx};

use filter::{Filters, Kind};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "uac_redirect",
    binds: &["tm"],
    params: &[
        Param::str_with("default_filter", &P.default_filter, check_default),
        Param::str_with("deny_filter", &P.deny_filter, check_regex),
        Param::str_with("accept_filter", &P.accept_filter, check_regex),
        Param::str_with("acc_function", &P.acc_function, check_acc_function),
        Param::str("acc_db_table", &P.acc_db_table),
    ],
    cmds: &[
        CmdExport::new("get_redirects", 1, 2, FAILURE_ROUTE, cmd_get_redirects)
            .fixup(fixup_get_redirects),
        CmdExport::new("set_deny_filter", 2, 2, FAILURE_ROUTE, cmd_set_deny)
            .fixup(fixup_set_filter),
        CmdExport::new("set_accept_filter", 2, 2, FAILURE_ROUTE, cmd_set_accept)
            .fixup(fixup_set_filter),
    ],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

pub struct Params {
    pub default_filter: StrParam,
    pub deny_filter: StrParam,
    pub accept_filter: StrParam,
    pub acc_function: StrParam,
    pub acc_db_table: StrParam,
}

pub static P: Params = Params {
    default_filter: StrParam::new("accept"),
    deny_filter: StrParam::new(""),
    accept_filter: StrParam::new(""),
    acc_function: StrParam::new("acc_log_request"),
    acc_db_table: StrParam::new("acc"),
};

/// Contacts taken from one reply at most (1.2's `MAX_CONTACTS_PER_REPLY`).
pub const MAX_CONTACTS_PER_REPLY: usize = 16;

fn check_default(s: &str) -> Result<(), String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "accept" | "deny" => Ok(()),
        _ => Err(format!(
            "uac_redirect: default_filter must be accept or deny, not {s:?}"
        )),
    }
}

fn compile(s: &str) -> Result<Arc<Regex>, String> {
    Regex::new(s, true, true)
        .map(Arc::new)
        .map_err(|e| format!("uac_redirect: bad regular expression {s:?}: {e}"))
}

fn check_regex(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    compile(s).map(|_| ())
}

fn check_acc_function(s: &str) -> Result<(), String> {
    match s {
        "acc_log_request" | "acc_db_request" => Ok(()),
        "acc_rad_request" | "acc_diam_request" => Err(format!(
            "uac_redirect: acc_function {s}: RADIUS and DIAMETER accounting are not built"
        )),
        _ => Err(format!("uac_redirect: unknown acc_function {s:?}")),
    }
}

/// The default filters, compiled in mod_init.
static DEFAULTS: OnceLock<Filters> = OnceLock::new();

fn defaults() -> &'static Filters {
    DEFAULTS.get_or_init(|| Filters::new(true, None, None))
}

/// Set when the script calls `get_redirects(max, reason)` (fixup, before mod_init).
static ACC_USED: AtomicBool = AtomicBool::new(false);

fn mod_init() -> Result<(), String> {
    if ACC_USED.load(Ordering::Relaxed) && !is_loaded("acc") {
        return Err(
            "uac_redirect: get_redirects(max, reason) accounts through acc, which is not loaded"
                .into(),
        );
    }
    let opt = |s: &str| -> Result<Option<Arc<Regex>>, String> {
        if s.is_empty() {
            Ok(None)
        } else {
            compile(s).map(Some)
        }
    };
    let f = Filters::new(
        P.default_filter.get().eq_ignore_ascii_case("accept"),
        opt(P.accept_filter.get())?,
        opt(P.deny_filter.get())?,
    );
    let _ = DEFAULTS.set(f);
    Ok(())
}

thread_local! {
    /// Filters added for the message being routed: (message id, buffer address).
    static MSG_FILTERS: RefCell<Option<((u32, usize), Filters)>> = const { RefCell::new(None) };
}

fn msg_key(msg: &SipMsg) -> (u32, usize) {
    (msg.id, msg.buf().as_ptr() as usize)
}

/// The filters for `msg` (the defaults plus what the script added for it).
fn filters_for(msg: &SipMsg) -> Filters {
    MSG_FILTERS.with(|f| match &*f.borrow() {
        Some((k, fl)) if *k == msg_key(msg) => fl.clone(),
        _ => defaults().clone(),
    })
}

fn set_filter(ctx: &mut Ctx, args: &[FixedArg], kind: Kind) -> i32 {
    let (Some(FixedArg::Regex(re)), Some(FixedArg::Int(flags))) = (args.first(), args.get(1))
    else {
        return -1;
    };
    let mut f = filters_for(ctx.msg);
    if !f.add(kind, Arc::clone(re), *flags as u8) {
        openser_core::log_err!("too many filters of type {kind:?}");
        return -1;
    }
    let key = msg_key(ctx.msg);
    MSG_FILTERS.with(|m| *m.borrow_mut() = Some((key, f)));
    1
}

fn cmd_set_deny(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    set_filter(ctx, args, Kind::Deny)
}

fn cmd_set_accept(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    set_filter(ctx, args, Kind::Accept)
}

fn fixup_set_filter(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let [re, flags] = args else {
        return Err("two arguments expected: regular expression, flags".into());
    };
    let re = compile(&string_arg(re)?)?;
    let flags = filter::parse_flags(&string_arg(flags)?)?;
    Ok(vec![FixedArg::Regex(re), FixedArg::Int(i64::from(flags))])
}

/// `total[:per_branch]`, `*` or `0` = unlimited (0 in the result).
pub fn parse_max(s: &str) -> Result<(usize, usize), String> {
    let one = |t: &str| -> Result<usize, String> {
        let t = t.trim();
        if t == "*" {
            return Ok(0);
        }
        t.parse::<usize>()
            .map_err(|_| format!("bad number {t:?} in max {s:?}"))
    };
    match s.split_once(':') {
        Some((t, b)) => Ok((one(t)?, one(b)?)),
        None => Ok((one(s)?, 0)),
    }
}

fn fixup_get_redirects(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let max = args.first().ok_or("get_redirects: missing max")?;
    let (total, per) = parse_max(&string_arg(max)?).map_err(|e| format!("get_redirects: {e}"))?;
    let mut v = vec![FixedArg::Int(total as i64), FixedArg::Int(per as i64)];
    if let Some(r) = args.get(1) {
        ACC_USED.store(true, Ordering::Relaxed);
        v.push(FixedArg::Str(string_arg(r)?));
    }
    Ok(v)
}

/// A contact of a 3xx reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub uri: String,
    /// 0..1000
    pub q: i32,
}

/// The contacts of a 3xx reply that pass `accept`, highest q first (stable), at most
/// [`MAX_CONTACTS_PER_REPLY`]; None when the reply or its Contact does not parse.
pub fn reply_contacts(reply: &[u8], accept: impl Fn(&str) -> bool) -> Option<Vec<Contact>> {
    let m = SipMsg::parse(reply).ok()?;
    let cl = m.contacts().ok()?;
    let mut out = Vec::new();
    for c in &cl.contacts {
        let uri = m.s(c.uri).to_string();
        if !accept(&uri) {
            continue;
        }
        let q = match c.q {
            None => 1000,
            Some(sp) => match openser_core::script::actions::parse_q(m.s(sp)) {
                Some(q) => q,
                None => {
                    openser_core::log_err!("invalid q param in <{uri}>");
                    continue;
                }
            },
        };
        out.push(Contact { uri, q });
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.q));
    out.truncate(MAX_CONTACTS_PER_REPLY);
    Some(out)
}

fn cmd_get_redirects(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (total, per) = match args {
        [FixedArg::Int(t), FixedArg::Int(p), ..] => (*t as usize, *p as usize),
        _ => return -1,
    };
    let reason = match args.get(2) {
        Some(FixedArg::Str(r)) => Some(r.clone()),
        _ => None,
    };
    let filters = filters_for(ctx.msg);
    MSG_FILTERS.with(|m| *m.borrow_mut() = None);
    let branches = tm::reply::t_branches();
    let mut chosen: Vec<Contact> = Vec::new();
    for b in &branches {
        if !(300..400).contains(&b.code) {
            continue;
        }
        let Some(reply) = b.reply.as_deref() else {
            continue;
        };
        let left = if total == 0 {
            usize::MAX
        } else {
            total.saturating_sub(chosen.len())
        };
        let max = if per == 0 { left } else { left.min(per) };
        if max == 0 {
            continue;
        }
        let Some(cts) = reply_contacts(reply, |u| filters.accepts(u)) else {
            openser_core::log_err!("get contact from the reply of branch {} failed", b.uri);
            continue;
        };
        let fresh: Vec<Contact> = cts
            .into_iter()
            .filter(|c| {
                !branches.iter().any(|o| o.uri == c.uri) && !chosen.iter().any(|o| o.uri == c.uri)
            })
            .take(max)
            .collect();
        chosen.extend(fresh);
    }
    if chosen.is_empty() {
        return -1;
    }
    if let Some(reason) = &reason {
        let table = (P.acc_function.get() == "acc_db_request").then(|| P.acc_db_table.get());
        let saved = ctx.msg.new_uri.clone();
        for c in &chosen {
            ctx.msg.new_uri = Some(c.uri.clone());
            acc::acc_request(ctx, reason, table);
        }
        ctx.msg.new_uri = saved;
    }
    let mut it = chosen.into_iter();
    if let Some(first) = it.next() {
        ctx.msg.new_uri = Some(first.uri);
        ctx.msg.dst_uri = None;
        ctx.ruri_q = first.q;
    }
    for c in it {
        ctx.branches.push(Branch {
            uri: c.uri,
            dst_uri: None,
            path: None,
            q: c.q,
            bflags: 0,
            force_send_sock: None,
        });
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_syntax() {
        assert_eq!(parse_max("*").unwrap(), (0, 0));
        assert_eq!(parse_max("6:*").unwrap(), (6, 0));
        assert_eq!(parse_max("*:2").unwrap(), (0, 2));
        assert_eq!(parse_max("4:1").unwrap(), (4, 1));
        assert!(parse_max("x").is_err());
        assert!(parse_max("1:-2").is_err());
    }

    #[test]
    fn contacts_by_q() {
        let r = b"SIP/2.0 302 Moved\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
            Contact: <sip:low@h>;q=0.1, <sip:none@h>\r\nContact: <sip:mid@h>;q=0.5, <sip:bad@h>;q=7\r\n\
            Contact: <sip:deny@x>\r\n\r\n";
        let c = reply_contacts(r, |u| !u.contains("@x")).unwrap();
        let uris: Vec<&str> = c.iter().map(|c| c.uri.as_str()).collect();
        assert_eq!(uris, ["sip:none@h", "sip:mid@h", "sip:low@h"]);
        assert_eq!(c[1].q, 500);
        assert!(reply_contacts(b"garbage", |_| true).is_none());
    }

    #[test]
    fn params_checked() {
        assert!(check_default("Deny").is_ok());
        assert!(check_default("maybe").is_err());
        assert!(check_regex("(").is_err());
        assert!(check_acc_function("acc_db_request").is_ok());
        assert!(check_acc_function("acc_rad_request").is_err());
    }
}
