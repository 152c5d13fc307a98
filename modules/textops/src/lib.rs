//! textops: regular-expression search/replace on the message, header add/remove,
//! locally generated reply headers, and method/body/privacy tests (reference §8.7).
//!
//! `search*`/`replace*`/`subst*` work on the original received buffer (earlier changes
//! are not visible) and record their changes as lumps; `search`, `search_body` and
//! `subst_body` scan the whole message / the body, the others start after the first line.

pub mod rematch;
pub mod subst;

use std::sync::Arc;

use openser_core::cfg::ast::{Arg, ArgValue};
use openser_core::cfg::pv::{PvSpec, parse_format};
use openser_core::module::{CmdExport, FixedArg, ModuleExports};
use openser_core::parser::{Method, SipMsg};
use openser_core::route::{BRANCH_ROUTE, ERROR_ROUTE, FAILURE_ROUTE, ONREPLY_ROUTE, REQUEST_ROUTE};
use openser_core::script::{Ctx, PvValue};
use rematch::{Pattern, find, find_all, hay};
use subst::Subst;

const ALL4: u32 = REQUEST_ROUTE | ONREPLY_ROUTE | FAILURE_ROUTE | BRANCH_ROUTE;
const RFB: u32 = REQUEST_ROUTE | FAILURE_ROUTE | BRANCH_ROUTE;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "textops",
    cmds: &[
        CmdExport::new("search", 1, 1, ALL4, cmd_search).fixup(fix_re),
        CmdExport::new("search_body", 1, 1, ALL4, cmd_search_body).fixup(fix_re),
        CmdExport::new("search_append", 2, 2, ALL4, cmd_search_append).fixup(fix_re_str),
        CmdExport::new("search_append_body", 2, 2, ALL4, cmd_search_append_body).fixup(fix_re_str),
        CmdExport::new("replace", 2, 2, ALL4, cmd_replace).fixup(fix_re_str),
        CmdExport::new("replace_body", 2, 2, ALL4, cmd_replace_body).fixup(fix_re_str),
        CmdExport::new("replace_all", 2, 2, ALL4, cmd_replace_all).fixup(fix_re_str),
        CmdExport::new("replace_body_all", 2, 2, ALL4, cmd_replace_body_all).fixup(fix_re_str),
        CmdExport::new("subst", 1, 1, ALL4, cmd_subst).fixup(fix_subst),
        CmdExport::new("subst_uri", 1, 1, RFB, cmd_subst_uri).fixup(fix_subst),
        CmdExport::new("subst_user", 1, 1, RFB, cmd_subst_user).fixup(fix_subst),
        CmdExport::new("subst_body", 1, 1, ALL4, cmd_subst_body).fixup(fix_subst),
        CmdExport::new(
            "append_to_reply",
            1,
            1,
            REQUEST_ROUTE | BRANCH_ROUTE | ERROR_ROUTE,
            cmd_append_to_reply,
        )
        .fixup(fix_fmt),
        CmdExport::new("append_hf", 1, 2, ALL4, cmd_append_hf).fixup(fix_hf),
        CmdExport::new("insert_hf", 1, 2, ALL4, cmd_insert_hf).fixup(fix_hf),
        CmdExport::new("append_urihf", 2, 2, RFB, cmd_append_urihf).fixup(fix_fmt),
        CmdExport::new("remove_hf", 1, 1, ALL4, cmd_remove_hf).fixup(fix_str),
        CmdExport::new("is_present_hf", 1, 1, ALL4, cmd_is_present_hf).fixup(fix_str),
        CmdExport::new("append_time", 0, 0, RFB, cmd_append_time).fixup(fix_str),
        CmdExport::new("is_method", 1, 1, ALL4, cmd_is_method).fixup(fix_method),
        CmdExport::new("has_body", 0, 1, ALL4, cmd_has_body).fixup(fix_mime),
        CmdExport::new("is_privacy", 1, 1, ALL4, cmd_is_privacy).fixup(fix_privacy),
    ],
    ..ModuleExports::EMPTY
};

// ----- fixups -----

fn arg_text(a: &Arg) -> Result<String, String> {
    match &a.value {
        ArgValue::Ip(ip) => Ok(ip.to_string()),
        _ => openser_core::script::fixup::string_arg(a),
    }
}

fn fmt_arg(a: &Arg) -> Result<FixedArg, String> {
    let s = arg_text(a)?;
    if s.contains('$') {
        Ok(FixedArg::Fmt(parse_format(&s)?))
    } else {
        Ok(FixedArg::Str(s))
    }
}

fn pattern_arg(a: &Arg) -> Result<FixedArg, String> {
    let s = arg_text(a)?;
    // textops compiles with REG_EXTENDED|REG_ICASE|REG_NEWLINE
    Ok(FixedArg::Any(Arc::new(Pattern::new(&s, true, true)?)))
}

fn fix_re(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    args.iter().map(pattern_arg).collect()
}

fn fix_re_str(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let mut v = vec![pattern_arg(args.first().ok_or("missing argument")?)?];
    for a in &args[1..] {
        v.push(FixedArg::Str(arg_text(a)?));
    }
    Ok(v)
}

fn fix_subst(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    args.iter()
        .map(|a| Ok(FixedArg::Any(Arc::new(subst::parse(&arg_text(a)?)?))))
        .collect()
}

fn fix_fmt(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    args.iter().map(fmt_arg).collect()
}

fn fix_str(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    args.iter()
        .map(|a| Ok(FixedArg::Str(arg_text(a)?)))
        .collect()
}

fn fix_hf(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let mut v = vec![fmt_arg(args.first().ok_or("missing argument")?)?];
    if let Some(h) = args.get(1) {
        let name = arg_text(h)?;
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(format!("bad header name '{name}'"));
        }
        v.push(FixedArg::Str(name));
    }
    Ok(v)
}

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

/// The methods of `is_method`: known ones by id, others by name.
#[derive(Debug, Default)]
pub struct MethodSet {
    pub known: Vec<Method>,
    pub names: Vec<String>,
}

impl MethodSet {
    pub fn parse(s: &str) -> Result<MethodSet, String> {
        let mut m = MethodSet::default();
        for n in s.split(['|', ',']).map(str::trim) {
            if n.is_empty() || !n.bytes().all(is_token_char) {
                return Err(format!("bad method list '{s}'"));
            }
            let up = n.to_ascii_uppercase();
            match Method::from_bytes(up.as_bytes()) {
                Method::Other => m.names.push(n.to_string()),
                k => m.known.push(k),
            }
            m.names.push(n.to_string());
        }
        Ok(m)
    }
    pub fn matches(&self, msg: &SipMsg) -> bool {
        let id = msg.method();
        if id != Method::Other {
            return self.known.contains(&id);
        }
        let text = msg.method_str();
        self.names.iter().any(|n| n.eq_ignore_ascii_case(text))
    }
}

fn fix_method(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let s = arg_text(args.first().ok_or("missing argument")?)?;
    Ok(vec![FixedArg::Any(Arc::new(MethodSet::parse(&s)?))])
}

fn fix_mime(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let mut v = Vec::new();
    if let Some(a) = args.first() {
        let s = arg_text(a)?;
        let Some((t, st)) = s.split_once('/') else {
            return Err(format!("bad MIME type '{s}'"));
        };
        let (t, st) = (t.trim(), st.trim());
        if t.is_empty() || st.is_empty() {
            return Err(format!("bad MIME type '{s}'"));
        }
        v.push(FixedArg::Str(format!("{t}/{st}")));
    }
    Ok(v)
}

const PRIVACY_VALUES: [&str; 6] = ["header", "session", "user", "none", "id", "critical"];

fn fix_privacy(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let s = arg_text(args.first().ok_or("missing argument")?)?;
    let l = s.trim().to_ascii_lowercase();
    if !PRIVACY_VALUES.contains(&l.as_str()) {
        return Err(format!("bad privacy value '{s}'"));
    }
    Ok(vec![FixedArg::Str(l)])
}

// ----- argument access -----

fn pattern(a: Option<&FixedArg>) -> Option<&Pattern> {
    match a {
        Some(FixedArg::Any(x)) => x.downcast_ref::<Pattern>(),
        _ => None,
    }
}

fn subst_of(a: Option<&FixedArg>) -> Option<&Subst> {
    match a {
        Some(FixedArg::Any(x)) => x.downcast_ref::<Subst>(),
        _ => None,
    }
}

fn text_arg(ctx: &mut Ctx, a: Option<&FixedArg>) -> String {
    a.map(|a| ctx.arg_str(a)).unwrap_or_default()
}

fn pv_text(ctx: &mut Ctx, spec: &PvSpec) -> String {
    match ctx.get_pv(spec) {
        PvValue::Null => String::new(),
        v => v.to_text(),
    }
}

/// A header/URI parse failure: recorded on the message (error_route, `$err.*`) and as
/// the last internal error (`sl_reply_error`), as OpenSER's parser does.
fn record_error(msg: &mut SipMsg, e: openser_core::parser::ParseError) {
    sl::set_prev_error(openser_core::msg::SipError::from_parse(&e));
    msg.parse_error = Some(e);
}

fn rc(b: bool) -> i32 {
    if b { 1 } else { -1 }
}

// ----- the operations on a message -----

/// Where a search runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// the whole message
    All,
    /// from the first header to the end
    Headers,
    /// the body
    Body,
}

fn region_start(msg: &SipMsg, r: Region) -> usize {
    match r {
        Region::All => 0,
        Region::Headers => msg.hdrs_start(),
        Region::Body => msg.body_span().start as usize,
    }
}

/// `search` / `search_body`.
pub fn search(msg: &SipMsg, p: &Pattern, r: Region) -> bool {
    let h = hay(msg.buf());
    find(p, &h, region_start(msg, r), h.len()).is_some()
}

/// `search_append` / `search_append_body`: insert `txt` after the first match.
pub fn search_append(msg: &mut SipMsg, p: &Pattern, r: Region, txt: &str) -> bool {
    let end = {
        let h = hay(msg.buf());
        match find(p, &h, region_start(msg, r), h.len()) {
            Some(c) => match c.first().copied().flatten() {
                Some((_, b)) => b,
                None => return false,
            },
            None => return false,
        }
    };
    msg.lumps.insert(end, txt);
    true
}

/// `replace*`: replace the first (or every) match with `txt`; false if none matched or a
/// match was empty (`replace_all`).
pub fn replace(msg: &mut SipMsg, p: &Pattern, r: Region, txt: &str, all: bool) -> bool {
    let spans: Vec<(usize, usize)> = {
        let h = hay(msg.buf());
        let from = region_start(msg, r);
        let ms = if all {
            match find_all(p, &h, from, h.len()) {
                Some(v) => v,
                None => {
                    openser_core::log_err!("matched string is empty... invalid regexp?");
                    return false;
                }
            }
        } else {
            find(p, &h, from, h.len()).into_iter().collect()
        };
        ms.iter()
            .filter_map(|c| c.first().copied().flatten())
            .collect()
    };
    for &(a, b) in &spans {
        msg.lumps.replace(a, b - a, txt);
    }
    !spans.is_empty()
}

/// The edits of a `subst` over `text[from..]`: (offset, length, replacement).
pub fn subst_edits(
    text: &[u8],
    from: usize,
    s: &Subst,
    pv: &mut dyn FnMut(&PvSpec) -> String,
) -> Vec<(usize, usize, Vec<u8>)> {
    let matches = {
        let h = hay(text);
        s.matches(&h, from, h.len())
    };
    matches
        .iter()
        .filter_map(|c| {
            let (a, b) = c.first().copied().flatten()?;
            Some((a, b - a, s.expand(c, text, pv)))
        })
        .collect()
}

/// `subst` / `subst_body` with a PV resolver.
pub fn subst_msg(
    msg: &mut SipMsg,
    s: &Subst,
    r: Region,
    pv: &mut dyn FnMut(&PvSpec) -> String,
) -> bool {
    let text = msg.buf().to_vec();
    let edits = subst_edits(&text, region_start(msg, r), s, pv);
    for (a, n, t) in &edits {
        msg.lumps.replace(*a, *n, t);
    }
    !edits.is_empty()
}

/// `subst_user`: `uri` with the user part substituted (None: no match / error).
pub fn subst_user_uri(
    mut uri: openser_core::parser::Uri,
    s: &Subst,
    pv: &mut dyn FnMut(&PvSpec) -> String,
) -> Option<String> {
    let user = s.apply_str(&uri.user, pv)?;
    if let Err(e) = uri.set_user(&user) {
        openser_core::log_err!("{e}");
        return None;
    }
    Some(uri.to_string())
}

/// `append_hf` / `insert_hf`: add `txt` after the last / before the first header, or
/// after / before the first header called `hdr`.
pub fn add_hf(msg: &mut SipMsg, txt: &str, hdr: Option<&str>, after: bool) -> bool {
    match hdr {
        None => {
            if after {
                msg.add_header_after_last(txt);
            } else {
                msg.add_header_before_first(txt);
            }
            true
        }
        Some(name) => match msg.header_indices(name).first() {
            Some(&i) => {
                if after {
                    msg.add_header_after(i, txt)
                } else {
                    msg.add_header_before(i, txt)
                }
            }
            None => false,
        },
    }
}

/// `has_body([mime])`.
pub fn has_body(msg: &SipMsg, mime: Option<&str>) -> bool {
    let len = match msg.content_length() {
        Some(n) => n as usize,
        None => msg.body().len(),
    };
    if len == 0 {
        return false;
    }
    let Some(mime) = mime else { return true };
    let Ok(Some(ct)) = msg.content_type() else {
        return false;
    };
    let (t, st) = mime.split_once('/').unwrap_or((mime, ""));
    msg.s(ct.mtype).eq_ignore_ascii_case(t) && msg.s(ct.subtype).eq_ignore_ascii_case(st)
}

/// `is_privacy(value)`: a Privacy header lists `value`.
pub fn is_privacy(msg: &SipMsg, value: &str) -> bool {
    msg.headers_by_name("Privacy").iter().any(|b| {
        b.split([';', ','])
            .any(|v| v.trim().eq_ignore_ascii_case(value))
    })
}

/// `Date:` header line for `secs` since the epoch (`%a, %d %b %Y %H:%M:%S GMT`).
pub fn date_header(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // civil_from_days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "Date: {}, {:02} {} {} {:02}:{:02}:{:02} GMT\r\n",
        DAYS[(days.rem_euclid(7)) as usize],
        d,
        MONS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ----- handlers -----

fn cmd_search(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    pattern(args.first()).map_or(-1, |p| rc(search(ctx.msg, p, Region::All)))
}

fn cmd_search_body(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    pattern(args.first()).map_or(-1, |p| rc(search(ctx.msg, p, Region::Body)))
}

fn search_append_cmd(ctx: &mut Ctx, args: &[FixedArg], r: Region) -> i32 {
    let txt = text_arg(ctx, args.get(1));
    pattern(args.first()).map_or(-1, |p| rc(search_append(ctx.msg, p, r, &txt)))
}

fn cmd_search_append(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    search_append_cmd(ctx, args, Region::Headers)
}

fn cmd_search_append_body(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    search_append_cmd(ctx, args, Region::Body)
}

fn replace_cmd(ctx: &mut Ctx, args: &[FixedArg], r: Region, all: bool) -> i32 {
    let txt = text_arg(ctx, args.get(1));
    pattern(args.first()).map_or(-1, |p| rc(replace(ctx.msg, p, r, &txt, all)))
}

fn cmd_replace(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    replace_cmd(ctx, args, Region::Headers, false)
}

fn cmd_replace_body(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    replace_cmd(ctx, args, Region::Body, false)
}

fn cmd_replace_all(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    replace_cmd(ctx, args, Region::Headers, true)
}

fn cmd_replace_body_all(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    replace_cmd(ctx, args, Region::Body, true)
}

fn subst_cmd(ctx: &mut Ctx, args: &[FixedArg], r: Region) -> i32 {
    let Some(s) = subst_of(args.first()) else {
        return -1;
    };
    let text = ctx.msg.buf().to_vec();
    let from = region_start(ctx.msg, r);
    let edits = subst_edits(&text, from, s, &mut |spec: &PvSpec| pv_text(ctx, spec));
    for (a, n, t) in &edits {
        ctx.msg.lumps.replace(*a, *n, t);
    }
    rc(!edits.is_empty())
}

fn cmd_subst(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    subst_cmd(ctx, args, Region::Headers)
}

fn cmd_subst_body(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    subst_cmd(ctx, args, Region::Body)
}

fn cmd_subst_uri(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(s) = subst_of(args.first()) else {
        return -1;
    };
    if !ctx.msg.is_request() {
        return -1;
    }
    let uri = ctx.msg.ruri().to_string();
    let mut pv = |spec: &PvSpec| pv_text(ctx, spec);
    match s.apply_str(&uri, &mut pv) {
        Some(n) => {
            ctx.msg.new_uri = Some(n);
            1
        }
        None => -1,
    }
}

fn cmd_subst_user(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(s) = subst_of(args.first()) else {
        return -1;
    };
    if !ctx.msg.is_request() {
        return -1;
    }
    let uri = match ctx.msg.ruri_parsed() {
        Ok(u) => u,
        Err(e) => {
            openser_core::log_err!("cannot parse the R-URI");
            record_error(ctx.msg, e);
            return -1;
        }
    };
    let mut pv = |spec: &PvSpec| pv_text(ctx, spec);
    match subst_user_uri(uri, s, &mut pv) {
        Some(n) => {
            ctx.msg.new_uri = Some(n);
            1
        }
        None => -1,
    }
}

fn cmd_append_to_reply(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let t = text_arg(ctx, args.first());
    if t.is_empty() {
        return -1;
    }
    ctx.msg.reply_lumps.push(t);
    1
}

fn hf_cmd(ctx: &mut Ctx, args: &[FixedArg], after: bool) -> i32 {
    let t = text_arg(ctx, args.first());
    let hdr = match args.get(1) {
        Some(FixedArg::Str(s)) => Some(s.as_str()),
        _ => None,
    };
    rc(add_hf(ctx.msg, &t, hdr, after))
}

fn cmd_append_hf(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    hf_cmd(ctx, args, true)
}

fn cmd_insert_hf(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    hf_cmd(ctx, args, false)
}

fn cmd_append_urihf(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let pre = text_arg(ctx, args.first());
    let suf = text_arg(ctx, args.get(1));
    if !ctx.msg.is_request() {
        return -1;
    }
    let t = format!("{pre}{}{suf}", ctx.msg.ruri());
    let pos = ctx.msg.hdrs_end();
    ctx.msg.lumps.insert(pos, t);
    1
}

fn cmd_remove_hf(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(FixedArg::Str(n)) = args.first() else {
        return -1;
    };
    rc(ctx.msg.remove_headers_by_name(n) > 0)
}

fn cmd_is_present_hf(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(FixedArg::Str(n)) = args.first() else {
        return -1;
    };
    rc(!ctx.msg.header_indices(n).is_empty())
}

fn cmd_append_time(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    let secs = openser_core::clock::now() as u64;
    ctx.msg.reply_lumps.push(date_header(secs));
    1
}

fn cmd_is_method(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    match args.first() {
        Some(FixedArg::Any(a)) => a
            .downcast_ref::<MethodSet>()
            .map_or(-1, |m| rc(m.matches(ctx.msg))),
        _ => -1,
    }
}

fn cmd_has_body(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let mime = match args.first() {
        Some(FixedArg::Str(s)) => Some(s.as_str()),
        _ => None,
    };
    if mime.is_some()
        && let Err(e) = ctx.msg.content_type()
    {
        openser_core::log_err!("bad Content-Type header");
        record_error(ctx.msg, e);
        return -1;
    }
    rc(has_body(ctx.msg, mime))
}

fn cmd_is_privacy(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(FixedArg::Str(v)) = args.first() else {
        return -1;
    };
    rc(is_privacy(ctx.msg, v))
}

#[cfg(test)]
mod tests;
