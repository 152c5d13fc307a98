//! uac (OpenSER 1.2 `modules/uac`): the proxy acting as a user agent client towards
//! the next hop — From rewriting (anonymisation, a carrier's account) and answering a
//! digest challenge with configured credentials.
//!
//! * `uac_replace_from(display, uri)` / `uac_replace_from(uri)` (REQUEST_ROUTE): set
//!   the From display name (`""` removes it; the one-argument form keeps it) and URI
//!   (`""` keeps it); both may hold pseudo-variables. Unless `from_restore_mode` is
//!   `none`, the original URI is stored in the Record-Route parameter
//!   `rr_store_param` (format in `from.rs`; call `record_route()` too, before or
//!   after), and replies of the transaction get the caller's From line back. In
//!   `auto` mode a request that already has a To tag is refused (rc −1), as in 1.2.
//! * `uac_restore_from()` (REQUEST_ROUTE, after `loose_route`): for an in-dialog
//!   request carrying the stored parameter, put the other URI back — the replacement
//!   into the From of a request going downstream, the caller's URI into the To of one
//!   going upstream (the callee's BYE) — and restore the replies. rc −1 when there is
//!   nothing to restore. In `auto` mode loose_route does this by itself (a callback
//!   registered with rr).
//! * `uac_auth()` (FAILURE_ROUTE): for the 401/407 that made the transaction fail,
//!   compute the digest answer (`auth.rs`) with a credential for the challenge's realm
//!   — first the AVP triple (`auth_realm_avp`, `auth_username_avp`,
//!   `auth_password_avp`) when its realm matches, then the `credential` list — add the
//!   `Authorization`/`Proxy-Authorization` header to the request and raise its CSeq
//!   by one; the script then calls `t_relay()`. rc −1 without a challenge we can
//!   answer. Replies of the new branch go upstream with the caller's CSeq.
//!
//! Parameters (1.2 defaults): `rr_store_param` `vsf` (alias `from_store_param`),
//! `from_restore_mode` `auto` (`none`/`manual`/`auto`, or 0/1/2), `from_passwd` ""
//! (XOR key of the stored value), `credential` (repeatable, `user:realm:password`),
//! `auth_realm_avp`, `auth_username_avp`, `auth_password_avp` (all three or none).
//!
//! * `uac_reg_lookup(uuid, dst)` (every route): remote registration's records
//!   (`reg.rs`, Kamailio 3.1's `uac_reg`, on when `reg_db_url` is set): `dst` gets
//!   `sip:l_username@l_domain` of the record with that `l_uuid`. MI `uac.reg_dump`
//!   (`uac_reg_dump`), `uac.reg_info`, `uac.reg_refresh` (`uac.reg_reload`). Its
//!   parameters: `reg_db_url`, `reg_db_table`, `reg_contact_addr`,
//!   `reg_timer_interval`, `reg_retry_interval`, `*_column`.
//!
//! Deviations from 1.2, for what an operator expects: `uac_auth` answers `qop=auth`
//! (1.2 sent no qop) and raises the CSeq (1.2 left it, and its README lists that as a
//! known limitation); `uac_restore_from()` also restores the replies. The replies tm
//! makes itself (a 408 after `fr_timer`) are restored too, through the same tm hook.
//! The caller's ACK to a 2xx after `uac_auth` keeps its CSeq (following it would need
//! dialog state; 1.2 did not raise the CSeq at all).

pub mod auth;
pub mod from;
pub mod reg;
mod reg_shm;

use std::cell::RefCell;
use std::sync::OnceLock;

use openser_core::module::{
    CmdExport, Every, FixedArg, MiExport, ModParamValue, ModuleExports, Param, StrParam,
    TimerExport, is_loaded,
};
use openser_core::parser::{HdrType, SipMsg};
use openser_core::route::{ANY_ROUTE, FAILURE_ROUTE, REQUEST_ROUTE};
use openser_core::script::{AvpId, AvpList, Ctx, PvValue};
use reg::RP;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "uac",
    binds: &["tm"],
    params: &[
        Param::str_with("rr_store_param", &P.rr_store_param, check_param_name),
        Param::str_with("from_store_param", &P.rr_store_param, check_param_name),
        Param::str_with("from_restore_mode", &P.restore_mode, check_mode),
        Param::str("from_passwd", &P.passwd),
        Param::func("credential", set_credential),
        Param::str_with("auth_realm_avp", &P.realm_avp, check_avp),
        Param::str_with("auth_username_avp", &P.user_avp, check_avp),
        Param::str_with("auth_password_avp", &P.passwd_avp, check_avp),
        // remote registration (reg.rs)
        Param::str("reg_db_url", &RP.db_url),
        Param::str("reg_db_table", &RP.table),
        Param::str("reg_contact_addr", &RP.contact_addr),
        Param::uint("reg_timer_interval", &RP.timer_interval),
        Param::uint("reg_retry_interval", &RP.retry_interval),
        Param::str("l_uuid_column", &RP.cols[0]),
        Param::str("l_username_column", &RP.cols[1]),
        Param::str("l_domain_column", &RP.cols[2]),
        Param::str("r_username_column", &RP.cols[3]),
        Param::str("r_domain_column", &RP.cols[4]),
        Param::str("realm_column", &RP.cols[5]),
        Param::str("auth_username_column", &RP.cols[6]),
        Param::str("auth_password_column", &RP.cols[7]),
        Param::str("auth_proxy_column", &RP.cols[8]),
        Param::str("expires_column", &RP.cols[9]),
    ],
    cmds: &[
        CmdExport::new("uac_replace_from", 1, 2, REQUEST_ROUTE, cmd_replace_from),
        CmdExport::new("uac_restore_from", 0, 0, REQUEST_ROUTE, cmd_restore_from),
        CmdExport::new("uac_auth", 0, 0, FAILURE_ROUTE, cmd_uac_auth),
        CmdExport::new("uac_reg_lookup", 2, 2, ANY_ROUTE, reg::cmd_lookup).fixup(reg::fixup_lookup),
    ],
    mi: &[
        MiExport::new("uac.reg_dump", reg::mi_dump).no_input(),
        MiExport::new("uac_reg_dump", reg::mi_dump).no_input(),
        MiExport::new("uac.reg_info", reg::mi_info),
        MiExport::new("uac.reg_refresh", reg::mi_refresh),
        MiExport::new("uac.reg_reload", reg::mi_refresh),
    ],
    timers: &[TimerExport::new("uac-reg", Every::Secs(1), reg::timer)],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

pub struct Params {
    pub rr_store_param: StrParam,
    pub restore_mode: StrParam,
    pub passwd: StrParam,
    pub realm_avp: StrParam,
    pub user_avp: StrParam,
    pub passwd_avp: StrParam,
}

pub static P: Params = Params {
    rr_store_param: StrParam::new("vsf"),
    restore_mode: StrParam::new("auto"),
    passwd: StrParam::new(""),
    realm_avp: StrParam::new(""),
    user_avp: StrParam::new(""),
    passwd_avp: StrParam::new(""),
};

/// `from_restore_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    None,
    Manual,
    Auto,
}

pub fn parse_mode(s: &str) -> Option<Mode> {
    match s.trim().to_ascii_lowercase().as_str() {
        "none" | "0" => Some(Mode::None),
        "manual" | "1" => Some(Mode::Manual),
        "auto" | "2" => Some(Mode::Auto),
        _ => None,
    }
}

fn check_mode(s: &str) -> Result<(), String> {
    parse_mode(s)
        .map(|_| ())
        .ok_or_else(|| format!("uac: bad from_restore_mode {s:?} (none, manual or auto)"))
}

fn check_param_name(s: &str) -> Result<(), String> {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'".contains(&b))
    {
        Ok(())
    } else {
        Err(format!("uac: bad Record-Route parameter name {s:?}"))
    }
}

fn check_avp(s: &str) -> Result<(), String> {
    tm::parse_avp_id(s)
        .map(|_| ())
        .ok_or_else(|| format!("uac: bad AVP spec {s:?}"))
}

thread_local! {
    /// `credential` rows, filled while the config loads (before fork).
    static CREDENTIALS: RefCell<Vec<auth::Credential>> = const { RefCell::new(Vec::new()) };
}

fn set_credential(v: &ModParamValue) -> Result<(), String> {
    let c = auth::parse_credential(&v.text()).map_err(|e| format!("uac: {e}"))?;
    CREDENTIALS.with(|l| l.borrow_mut().push(c));
    Ok(())
}

/// What mod_init derives from the parameters.
struct Conf {
    mode: Mode,
    auth_avps: Option<(AvpId, AvpId, AvpId)>,
}

static CONF: OnceLock<Conf> = OnceLock::new();

fn conf() -> &'static Conf {
    CONF.get_or_init(|| Conf {
        mode: parse_mode(P.restore_mode.get()).unwrap_or(Mode::Auto),
        auth_avps: None,
    })
}

fn mod_init() -> Result<(), String> {
    let mode = parse_mode(P.restore_mode.get()).unwrap_or(Mode::Auto);
    let avps = [&P.realm_avp, &P.user_avp, &P.passwd_avp].map(|p| tm::parse_avp_id(p.get()));
    let auth_avps = match avps {
        [Some(r), Some(u), Some(p)] => Some((r, u, p)),
        [None, None, None] => None,
        _ => {
            return Err(
                "uac: auth_realm_avp, auth_username_avp and auth_password_avp go together".into(),
            );
        }
    };
    if mode == Mode::Auto {
        if !is_loaded("rr") {
            return Err("uac: from_restore_mode \"auto\" needs the rr module".into());
        }
        rr::register_rrcb(rr_checker);
    }
    let _ = CONF.set(Conf { mode, auth_avps });
    tm::callbacks::register_reply_in(reply_in);
    reg::init()
}

/// The transaction AVP naming the header line the replies get back: `F` or `T` and
/// the line as the request carried it.
const RESTORE_AVP: &str = "uac:restore";
/// The transaction AVP holding the caller's CSeq number after `uac_auth` raised it.
const CSEQ_AVP: &str = "uac:cseq";

fn avp(name: &'static str) -> &'static AvpId {
    static IDS: OnceLock<[AvpId; 2]> = OnceLock::new();
    let ids = IDS.get_or_init(|| [RESTORE_AVP, CSEQ_AVP].map(|n| AvpId::Str(n.to_string())));
    if name == CSEQ_AVP { &ids[1] } else { &ids[0] }
}

/// The header line (with its line end) of header `t` as received.
fn header_line(msg: &SipMsg, t: HdrType) -> Option<String> {
    let i = msg.first_of(t)?;
    let h = msg.hdrs().get(i)?;
    Some(String::from_utf8_lossy(h.full.bytes(msg.buf())).into_owned())
}

fn mark_restore(ctx: &mut Ctx, t: HdrType) {
    let kind = if t == HdrType::From { "F" } else { "T" };
    if let Some(line) = header_line(ctx.msg, t) {
        let id = avp(RESTORE_AVP);
        ctx.avps.del_all(id);
        ctx.avps
            .add(id.clone(), PvValue::Str(format!("{kind}{line}")));
    }
}

// ---------------------------------------------------------------- From replacing

/// Put `display` before the URI of a From without a display name.
fn insert_display(msg: &mut SipMsg, display: &str) {
    let Ok(f) = msg.from() else { return };
    let (uri, full) = (f.uri, f.full);
    let buf = msg.buf();
    let lt = buf[full.start as usize..uri.start as usize]
        .iter()
        .rposition(|&b| b == b'<')
        .map(|i| full.start as usize + i);
    match lt {
        Some(lt) => msg.lumps.add(lt, 0, format!("{display} "), -1),
        None => {
            msg.lumps
                .add(uri.start as usize, 0, format!("{display} <"), -1);
            msg.lumps.add(uri.end(), 0, ">", 1);
        }
    }
}

fn replace_from(ctx: &mut Ctx, display: Option<&str>, uri: &str) -> i32 {
    let mode = conf().mode;
    if mode == Mode::Auto && !uri.is_empty() && ctx.msg.to().is_ok_and(|t| t.tag.is_some()) {
        openser_core::log_err!(
            "decline FROM replacing in sequential request in auto mode (has TO tag)"
        );
        return -1;
    }
    let Ok(f) = ctx.msg.from() else {
        openser_core::log_err!("failed to find/parse FROM hdr");
        return -1;
    };
    if f.tag.is_none() {
        openser_core::log_err!("broken FROM hdr; no tag param");
        return -1;
    }
    let (old_display, old_uri) = (f.display, f.uri);
    if let Some(d) = display {
        match old_display {
            Some(od) => ctx.msg.lumps.replace(od.start as usize, od.len as usize, d),
            None if !d.is_empty() => insert_display(ctx.msg, d),
            None => {}
        }
    }
    if uri.is_empty() {
        return 1;
    }
    let old = old_uri.bytes(ctx.msg.buf()).to_vec();
    let line = header_line(ctx.msg, HdrType::From);
    ctx.msg
        .lumps
        .replace(old_uri.start as usize, old_uri.len as usize, uri);
    if mode == Mode::None {
        return 1;
    }
    let v = match from::store(&old, uri.as_bytes(), P.passwd.get().as_bytes()) {
        Ok(v) => v,
        Err(e) => {
            openser_core::log_err!("failed to encode uris: {e}");
            return -1;
        }
    };
    rr::add_rr_param(ctx.msg, &format!(";{}={v}", P.rr_store_param.get()));
    if let Some(line) = line {
        let id = avp(RESTORE_AVP);
        ctx.avps.del_all(id);
        ctx.avps.add(id.clone(), PvValue::Str(format!("F{line}")));
    }
    1
}

fn cmd_replace_from(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    match args {
        [u] => {
            let uri = ctx.arg_str(u);
            replace_from(ctx, None, &uri)
        }
        [d, u] => {
            let display = ctx.arg_str(d);
            let uri = ctx.arg_str(u);
            replace_from(ctx, Some(&display), &uri)
        }
        _ => -1,
    }
}

/// Put the other URI back into an in-dialog request (From downstream, To upstream);
/// true when done. `params`: the parameters of our Route (looked up when None).
fn restore_from(ctx: &mut Ctx, params: Option<&str>) -> bool {
    let looked_up;
    let params = match params {
        Some(p) => p,
        None => match rr::route_params(ctx.msg) {
            Some(p) => {
                looked_up = p;
                &looked_up
            }
            None => return false,
        },
    };
    let Some(v) = rr::param_in(params, P.rr_store_param.get()) else {
        return false;
    };
    let t = if rr::is_upstream_in(ctx.msg, params) == Some(true) {
        HdrType::To
    } else {
        HdrType::From
    };
    let na = if t == HdrType::To {
        ctx.msg.to()
    } else {
        ctx.msg.from()
    };
    let Ok(na) = na else {
        openser_core::log_err!("failed to parse the {t:?} header");
        return false;
    };
    let span = na.uri;
    let present = span.bytes(ctx.msg.buf());
    let other = match from::restore(v.as_bytes(), present, P.passwd.get().as_bytes()) {
        Ok(o) => o,
        Err(e) => {
            openser_core::log_err!("failed to decode uri: {e}");
            return false;
        }
    };
    mark_restore(ctx, t);
    ctx.msg
        .lumps
        .replace(span.start as usize, span.len as usize, other);
    true
}

fn cmd_restore_from(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    if restore_from(ctx, None) { 1 } else { -1 }
}

/// loose_route consumed our Route (auto mode).
fn rr_checker(ctx: &mut Ctx, params: &str) {
    restore_from(ctx, Some(params));
}

/// tm reply-in hook: give the reply the From/To line of the request as the caller
/// sent it, and the caller's CSeq.
fn reply_in(reply: &mut SipMsg, avps: &AvpList) {
    if let Some(PvValue::Str(v)) = avps.get(avp(RESTORE_AVP)) {
        let t = if v.starts_with('T') {
            HdrType::To
        } else {
            HdrType::From
        };
        if let Some(h) = reply.first_of(t).and_then(|i| reply.hdrs().get(i)) {
            let full = h.full;
            reply.lumps.replace(
                full.start as usize,
                full.len as usize,
                v.get(1..).unwrap_or(""),
            );
        }
    }
    if let Some(PvValue::Str(n)) = avps.get(avp(CSEQ_AVP))
        && let Ok(c) = reply.cseq()
    {
        let sp = c.num_text;
        reply.lumps.replace(sp.start as usize, sp.len as usize, n);
    }
}

// ---------------------------------------------------------------- uac_auth

/// The credential for `realm`: the AVP triple first, then the `credential` list.
fn credential_for(ctx: &mut Ctx, realm: &str) -> Option<auth::Credential> {
    if let Some((r, u, p)) = &conf().auth_avps {
        let text = |v: Option<&PvValue>| match v {
            Some(PvValue::Str(s)) if !s.is_empty() => Some(s.clone()),
            Some(PvValue::Int(i)) => Some(i.to_string()),
            _ => None,
        };
        if text(ctx.avps.get(r)).as_deref() == Some(realm)
            && let (Some(user), Some(password)) = (text(ctx.avps.get(u)), text(ctx.avps.get(p)))
        {
            return Some(auth::Credential {
                user,
                realm: realm.to_string(),
                password,
            });
        }
    }
    CREDENTIALS.with(|l| l.borrow().iter().find(|c| c.realm == realm).cloned())
}

fn cmd_uac_auth(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    let Some(picked) = tm::reply::picked_branch() else {
        openser_core::log_crit!("BUG: no picked branch");
        return -1;
    };
    let branches = tm::reply::t_branches();
    let Some(b) = branches.get(picked) else {
        return -1;
    };
    let Some(rpl) = b.reply.as_deref() else {
        openser_core::log_err!("cannot process a FAKED reply");
        return -1;
    };
    let name = match b.code {
        401 => "WWW-Authenticate",
        407 => "Proxy-Authenticate",
        c => {
            openser_core::log_err!("reply {c} is not an auth request");
            return -1;
        }
    };
    let Ok(rpl) = SipMsg::parse(rpl) else {
        return -1;
    };
    let mut found = None;
    for v in rpl.headers_by_name(name) {
        let Some(ch) = auth::Challenge::from_header(v.as_bytes()) else {
            continue;
        };
        if let Err(e) = ch.supported() {
            openser_core::log_err!("cannot answer the challenge for {:?}: {e}", ch.realm);
            continue;
        }
        if let Some(c) = credential_for(ctx, &ch.realm) {
            found = Some((ch, c));
            break;
        }
        openser_core::log_dbg!("no credential for realm {:?}", ch.realm);
    }
    let Some((ch, cred)) = found else {
        openser_core::log_err!("no credential for the challenge(s) of the {} reply", b.code);
        return -1;
    };
    let method = ctx.msg.method_str().to_string();
    let line = auth::credentials_header(b.code, &cred, &ch, &method, &b.uri, &auth::new_cnonce());
    // The next CSeq after the one sent on the challenged branch.
    let sent = SipMsg::parse(&b.request)
        .ok()
        .and_then(|m| m.cseq().ok().map(|c| c.num));
    let Ok(cseq) = ctx.msg.cseq() else {
        return -1;
    };
    let (orig, span) = (cseq.num, cseq.num_text);
    let next = sent.unwrap_or(orig).wrapping_add(1);
    ctx.msg.add_header_after_last(&line);
    ctx.msg
        .lumps
        .replace(span.start as usize, span.len as usize, next.to_string());
    ctx.msg.new_uri = Some(b.uri.clone());
    let id = avp(CSEQ_AVP);
    if ctx.avps.get(id).is_none() {
        ctx.avps.add(id.clone(), PvValue::Str(orig.to_string()));
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_names() {
        assert_eq!(parse_mode("AUTO"), Some(Mode::Auto));
        assert_eq!(parse_mode("1"), Some(Mode::Manual));
        assert_eq!(parse_mode("none"), Some(Mode::None));
        assert_eq!(parse_mode("sometimes"), None);
        assert!(check_param_name("vsf").is_ok());
        assert!(check_param_name("a;b").is_err());
        assert!(check_param_name("").is_err());
    }

    #[test]
    fn exports_table() {
        assert_eq!(EXPORTS.binds, ["tm"]);
        for p in [
            "rr_store_param",
            "from_store_param",
            "from_restore_mode",
            "from_passwd",
            "credential",
            "auth_realm_avp",
            "auth_username_avp",
            "auth_password_avp",
            "reg_db_url",
            "reg_db_table",
            "reg_contact_addr",
            "reg_timer_interval",
            "reg_retry_interval",
            "l_uuid_column",
            "expires_column",
        ] {
            assert!(EXPORTS.param(p).is_some(), "{p}");
        }
        for m in [
            "uac.reg_dump",
            "uac_reg_dump",
            "uac.reg_info",
            "uac.reg_refresh",
        ] {
            assert!(EXPORTS.mi.iter().any(|e| e.name == m), "{m}");
        }
        assert!(EXPORTS.cmds.iter().any(|c| c.name == "uac_reg_lookup"));
    }

    fn run_replace(text: &str, display: Option<&str>, uri: &str) -> (i32, String) {
        let mut m = SipMsg::parse(text.as_bytes()).unwrap();
        let mut ctx = Ctx::new(&mut m, REQUEST_ROUTE);
        let rc = replace_from(&mut ctx, display, uri);
        let out = String::from_utf8(m.lumps.apply(m.buf())).unwrap();
        (rc, out)
    }

    const INV: &str = "INVITE sip:bob@h SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n\
        From: FROM_VALUE\r\nTo: <sip:bob@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";

    fn from_line(out: &str) -> &str {
        out.split("\r\n").find(|l| l.starts_with("From:")).unwrap()
    }

    #[test]
    fn display_and_uri_edits() {
        let inv = INV.replace("FROM_VALUE", "\"Alice\" <sip:alice@a.org>;tag=1");
        let (rc, out) = run_replace(&inv, Some("Anon"), "sip:anon@x.org");
        assert_eq!(rc, 1);
        assert_eq!(from_line(&out), "From: Anon <sip:anon@x.org>;tag=1");
        let (_, out) = run_replace(&inv, None, "sip:anon@x.org");
        assert_eq!(from_line(&out), "From: \"Alice\" <sip:anon@x.org>;tag=1");
        let (_, out) = run_replace(&inv, Some(""), "");
        assert_eq!(from_line(&out), "From:  <sip:alice@a.org>;tag=1");
        // no display, bracketed / unbracketed
        let inv = INV.replace("FROM_VALUE", "<sip:alice@a.org>;tag=1");
        let (_, out) = run_replace(&inv, Some("\"B\""), "sip:b@x");
        assert_eq!(from_line(&out), "From: \"B\" <sip:b@x>;tag=1");
        let inv = INV.replace("FROM_VALUE", "sip:alice@a.org;tag=1");
        let (_, out) = run_replace(&inv, Some("B"), "sip:b@x");
        assert_eq!(from_line(&out), "From: B <sip:b@x>;tag=1");
        // no tag: refused
        let inv = INV.replace("FROM_VALUE", "<sip:alice@a.org>");
        assert_eq!(run_replace(&inv, None, "sip:b@x").0, -1);
    }
}
