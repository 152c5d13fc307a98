//! textopsx (Kamailio/SIP Router 3.1 `modules/textopsx`): textops extensions —
//! changes applied to the message at once, reply status changes, body and header
//! removal, shell-pattern matching.
//!
//! Changes a script makes to a message (`append_hf`, `remove_hf`, `subst`, …) are
//! lumps, applied when the message is sent: until then header checks and searches see
//! the message as received. `msg_apply_changes()` applies them now.
//!
//! Functions (rc 1 true, −1 false):
//! * `msg_apply_changes()` (REQUEST, ONREPLY): rebuild the message with its pending
//!   changes (Content-Length following a changed body) and parse it again, so later
//!   `is_present_hf`, `search`, `$hdr` see them; the R-URI, destination URI, flags and
//!   forced socket are kept. −1 and nothing changed when a pending change depends on
//!   the outgoing socket (`record_route()`: apply before it) or the result would not
//!   parse (Kamailio stops the script then; here the message stays as it was).
//! * `change_reply_status(code, reason)` (ONREPLY): the reply goes on with this status
//!   line (tm relays and selects it with the new code). A 1xx or 2xx cannot change its
//!   class, nor can a reply become a 1xx or 2xx (−1, as Kamailio).
//! * `remove_body()`: remove the body (Content-Length becomes 0; Content-Type stays,
//!   as in Kamailio). −1 when there is none.
//! * `keep_hf([regexp])`: remove every header whose name does not match the regular
//!   expression (POSIX extended, case-insensitive, not anchored), except Via, From,
//!   To, Call-ID, CSeq, Content-Length, Content-Type, Max-Forwards, Contact, Route and
//!   Record-Route; without it only those are kept.
//! * `fnmatch(value, pattern[, flags])`: shell wildcard match (`*`, `?`, `[...]` with
//!   ranges and `!`/`^`, `\` quoting); flags `i` = case-insensitive. The arguments
//!   may contain pseudo-variables.

use std::sync::Arc;

use openser_core::cfg::ast::{Arg, ArgValue};
use openser_core::module::{CmdExport, FixedArg, ModuleExports};
use openser_core::parser::{FirstLine, HdrType};
use openser_core::re::Regex;
use openser_core::route::{ANY_ROUTE, ONREPLY_ROUTE, REQUEST_ROUTE};
use openser_core::script::Ctx;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "textopsx",
    cmds: &[
        CmdExport::new(
            "msg_apply_changes",
            0,
            0,
            REQUEST_ROUTE | ONREPLY_ROUTE,
            cmd_msg_apply_changes,
        ),
        CmdExport::new(
            "change_reply_status",
            2,
            2,
            ONREPLY_ROUTE,
            cmd_change_reply_status,
        ),
        CmdExport::new("remove_body", 0, 0, ANY_ROUTE, cmd_remove_body),
        CmdExport::new("keep_hf", 0, 1, ANY_ROUTE, cmd_keep_hf).fixup(fixup_keep_hf),
        CmdExport::new("fnmatch", 2, 3, ANY_ROUTE, cmd_fnmatch),
    ],
    ..ModuleExports::EMPTY
};

fn rc(b: bool) -> i32 {
    if b { 1 } else { -1 }
}

fn cmd_msg_apply_changes(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    match openser_core::msg::apply_changes(ctx.msg) {
        Ok(()) => 1,
        Err(e) => {
            openser_core::log_err!("cannot apply the changes: {e}");
            -1
        }
    }
}

/// Whether a reply of status `old` may be given status `new` (Kamailio's rule: the
/// class of a provisional or positive reply never changes).
pub fn status_change_allowed(old: u16, new: u16) -> bool {
    (100..700).contains(&new) && (old / 100 == new / 100 || (old >= 300 && new >= 300))
}

fn cmd_change_reply_status(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let [a, b] = args else { return -1 };
    let code = ctx.arg_str(a);
    let reason = ctx.arg_str(b);
    let Some(code) = code.trim().parse::<u16>().ok() else {
        openser_core::log_err!("invalid status code {code:?}");
        return -1;
    };
    let FirstLine::Reply {
        status,
        status_text,
        reason: old_reason,
        ..
    } = *ctx.msg.first_line()
    else {
        return -1;
    };
    if !status_change_allowed(status, code) {
        openser_core::log_err!(
            "cannot change status {status} to {code}: the class of provisional or positive final replies cannot be changed"
        );
        return -1;
    }
    let reason = reason.replace(['\r', '\n'], " ");
    let start = status_text.start as usize;
    let end = (old_reason.end()).max(status_text.end());
    ctx.msg
        .lumps
        .replace(start, end - start, format!("{code} {}", reason.trim()));
    1
}

fn cmd_remove_body(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    if ctx.msg.body().is_empty() {
        return -1;
    }
    ctx.msg.set_body(b"");
    1
}

/// The headers `keep_hf` never removes.
fn always_kept(t: HdrType) -> bool {
    matches!(
        t,
        HdrType::Via
            | HdrType::From
            | HdrType::To
            | HdrType::CallId
            | HdrType::CSeq
            | HdrType::ContentLength
            | HdrType::ContentType
            | HdrType::MaxForwards
            | HdrType::Contact
            | HdrType::Route
            | HdrType::RecordRoute
    )
}

fn fixup_keep_hf(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    match args {
        [] => Ok(Vec::new()),
        [a] => {
            let text = match &a.value {
                ArgValue::Str(s) | ArgValue::Ident(s) => s.clone(),
                _ => return Err("keep_hf: the parameter must be a regular expression".into()),
            };
            let re = Regex::new(&text, true, true).map_err(|e| format!("keep_hf: {e}"))?;
            Ok(vec![FixedArg::Regex(Arc::new(re))])
        }
        _ => Err("keep_hf: too many parameters".into()),
    }
}

fn cmd_keep_hf(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let re = match args.first() {
        Some(FixedArg::Regex(r)) => Some(r.clone()),
        _ => None,
    };
    let doomed: Vec<usize> = ctx
        .msg
        .hdrs()
        .iter()
        .enumerate()
        .filter(|(_, h)| !always_kept(h.htype))
        .filter(|(_, h)| re.as_ref().is_none_or(|re| !re.is_match(ctx.msg.s(h.name))))
        .map(|(i, _)| i)
        .collect();
    for i in doomed {
        ctx.msg.remove_header(i);
    }
    1
}

/// Shell wildcard match of `text` against `pat`: `*`, `?`, bracket expressions with
/// ranges and `!`/`^` negation, `\` quoting the next character (fnmatch(3) without
/// flags, on characters).
pub fn fnmatch(pat: &str, text: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Backtracking over the last `*` only: linear in practice, no recursion.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut resume: Option<(usize, usize)> = None;
    loop {
        if ti == t.len() {
            return p[pi.min(p.len())..].iter().all(|&c| c == '*');
        }
        let advance = match p.get(pi) {
            Some('*') => {
                resume = Some((pi + 1, ti));
                pi += 1;
                continue;
            }
            Some('?') => Some(1),
            Some('[') => bracket(&p[pi..], t[ti]),
            Some('\\') if pi + 1 < p.len() => (p[pi + 1] == t[ti]).then_some(2),
            Some(&c) => (c == t[ti]).then_some(1),
            None => None,
        };
        match (advance, resume) {
            (Some(n), _) => {
                pi += n;
                ti += 1;
            }
            (None, Some((rp, rt))) => {
                // let the last `*` take one more character
                pi = rp;
                ti = rt + 1;
                resume = Some((rp, rt + 1));
            }
            (None, None) => return false,
        }
    }
}

/// A bracket expression at the start of `p` against `c`: the pattern length it takes
/// when `c` matches. An unterminated `[` is an ordinary character.
fn bracket(p: &[char], c: char) -> Option<usize> {
    let Some(close) = (2..p.len()).find(|&i| p[i] == ']') else {
        return (c == '[').then_some(1);
    };
    let neg = matches!(p.get(1), Some('!' | '^'));
    let first = if neg { 2 } else { 1 };
    // a `]` right after `[` or `[!` is a member
    let close = if close == first {
        match (first + 1..p.len()).find(|&i| p[i] == ']') {
            Some(x) => x,
            None => return (c == '[').then_some(1),
        }
    } else {
        close
    };
    let set = &p[first..close];
    let mut hit = false;
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == '-' {
            if set[i] <= c && c <= set[i + 2] {
                hit = true;
            }
            i += 3;
        } else {
            if set[i] == c {
                hit = true;
            }
            i += 1;
        }
    }
    (hit != neg).then_some(close + 1)
}

fn cmd_fnmatch(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let [a, b, rest @ ..] = args else { return -1 };
    let value = ctx.arg_str(a);
    let pat = ctx.arg_str(b);
    let flags = rest.first().map(|f| ctx.arg_str(f)).unwrap_or_default();
    if flags.contains(['i', 'I']) {
        rc(fnmatch(&pat.to_lowercase(), &value.to_lowercase()))
    } else {
        rc(fnmatch(&pat, &value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(fnmatch("123*", "12345"));
        assert!(!fnmatch("123*", "1245"));
        assert!(fnmatch("*", ""));
        assert!(fnmatch("a?c", "abc"));
        assert!(!fnmatch("a?c", "ac"));
        assert!(fnmatch("*b*c", "aabxbc"));
        assert!(fnmatch("[a-c]x", "bx"));
        assert!(!fnmatch("[!a-c]x", "bx"));
        assert!(fnmatch("[^a-c]x", "dx"));
        assert!(fnmatch("[]a]", "]"));
        assert!(fnmatch("\\*", "*"));
        assert!(!fnmatch("\\*", "a"));
        assert!(fnmatch("[", "["));
        assert!(!fnmatch("abc", "abcd"));
        assert!(fnmatch("a*b*c*d", "axxbyyczzd"));
        assert!(!fnmatch("a*b*c*d", "axxbyyczz"));
    }

    #[test]
    fn status_classes() {
        assert!(status_change_allowed(603, 404));
        assert!(status_change_allowed(486, 600));
        assert!(status_change_allowed(180, 183));
        assert!(status_change_allowed(200, 202));
        assert!(!status_change_allowed(200, 404));
        assert!(!status_change_allowed(404, 200));
        assert!(!status_change_allowed(183, 486));
        assert!(!status_change_allowed(404, 99));
        assert!(!status_change_allowed(404, 700));
    }
}
