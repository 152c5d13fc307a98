//! ldap (OpenSER 1.3's `modules/ldap`; 1.2 had none): LDAP searches from the routing
//! script, their results into AVPs, and a search API for other modules (h350).
//!
//! * `ldap_search(ldap_url)` (REQUEST, FAILURE, BRANCH, ONREPLY): PVs in the URL are
//!   expanded, then `ldap://session/base?attrs?scope?filter` (RFC 4516, the host part
//!   naming a session of `config_file`; scope `base`, filter `(objectClass=*)` and all
//!   attributes by default) is searched with this process's connection of that
//!   session. Returns n > 0 entries found, −1 none found, −2 an LDAP or internal error
//!   (server unreachable or silent past its timeout, bad URL or filter, unknown
//!   session). The result is kept in this process until the next search.
//! * `ldap_result("attr/avp_spec[/avp_type]")`: every value of attribute `attr` of the
//!   current entry of the last result into AVP `avp_spec` — the first value is the
//!   newest (`$avp(name)`), the next at index 1, …; `avp_type` `str` (default) or
//!   `int` (values that are not integers are skipped). Returns n values stored, −1
//!   attribute absent (or no value converted), −2 no search result.
//! * `ldap_result_check("attr/string_to_match")`: 1 if a value of `attr` equals the
//!   string (PVs expanded), −1 if none does or `attr` is absent, −2 no search result.
//! * `ldap_result_next()`: the ldap_result* functions move to the next entry: 1, or −1
//!   at the end; −2 no search result.
//! * `ldap_filter_url_encode(string, avp_spec)`: the string (PVs expanded) with RFC 4515
//!   escapes (`*` `(` `)` `\` → `\2a` `\28` `\29` `\5c`) and `?` → `%3F`, into the AVP;
//!   1.
//!
//! The 1.3 module's optional `regex_subst` argument of `ldap_result` /
//! `ldap_result_check` is not supported (refused at start-up).
//!
//! Parameter: `config_file` (default `/usr/local/etc/openser/ldap.cfg`): the sessions
//! file, INI syntax, read at start-up (see `openser_ldap::conf`; errors name
//! `file:line`). Each process opens its own connection per session in child_init (a
//! failure there is logged and the connection is opened on first use instead).
//! Timeouts: `ldap_network_timeout` bounds each connect and a whole search,
//! `ldap_client_bind_timeout` the bind; a broken connection is remade once per search.
//!
//! Module API (for h350): [`sessions`], [`session`], [`params_search`], [`url_search`],
//! [`result_attr_vals`], [`result_next`], [`rfc4515_escape`].

use std::cell::RefCell;
use std::sync::OnceLock;

use openser_core::cfg::ast::Arg;
use openser_core::cfg::pv::parse_format;
use openser_core::module::{CmdExport, FixedArg, ModuleExports, Param, StrParam};
use openser_core::route::{BRANCH_ROUTE, FAILURE_ROUTE, ONREPLY_ROUTE, REQUEST_ROUTE};
use openser_core::script::fixup::string_arg;
use openser_core::script::{AvpId, Ctx, PvValue};
use openser_ldap::{Entry, Scope, Session, client, filter, url};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "ldap",
    params: &[Param::str("config_file", &P.config_file)],
    cmds: &[
        CmdExport::new("ldap_search", 1, 1, ROUTES, cmd_ldap_search).fixup(fixup_fmt),
        CmdExport::new("ldap_result", 1, 2, ROUTES, cmd_ldap_result).fixup(fixup_result),
        CmdExport::new("ldap_result_check", 1, 2, ROUTES, cmd_ldap_result_check)
            .fixup(fixup_result_check),
        CmdExport::new("ldap_result_next", 0, 0, ROUTES, cmd_ldap_result_next),
        CmdExport::new(
            "ldap_filter_url_encode",
            2,
            2,
            ROUTES,
            cmd_ldap_filter_url_encode,
        )
        .fixup(fixup_url_encode),
    ],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    destroy: Some(destroy),
    ..ModuleExports::EMPTY
};

const ROUTES: u32 = REQUEST_ROUTE | FAILURE_ROUTE | BRANCH_ROUTE | ONREPLY_ROUTE;

/// The `modparam` cells.
pub struct Cells {
    pub config_file: StrParam,
}

pub static P: Cells = Cells {
    config_file: StrParam::new("/usr/local/etc/openser/ldap.cfg"),
};

static SESSIONS: OnceLock<Vec<Session>> = OnceLock::new();

/// The sessions of `config_file`, read on first use (ldap's mod_init, or the mod_init
/// of a module using the API that was loaded before ldap).
pub fn sessions() -> Result<&'static [Session], String> {
    if let Some(s) = SESSIONS.get() {
        return Ok(s);
    }
    let s = openser_ldap::conf::load(P.config_file.get()).map_err(|e| format!("ldap: {e}"))?;
    Ok(SESSIONS.get_or_init(|| s))
}

fn mod_init() -> Result<(), String> {
    sessions().map(|_| ())
}

fn child_init(rank: i32) -> Result<(), String> {
    // The attendant itself does not search.
    if rank == openser_core::process::pt::PROC_MAIN {
        return Ok(());
    }
    for s in SESSIONS.get().map(Vec::as_slice).unwrap_or(&[]) {
        if let Err(e) = client::connect(s) {
            openser_core::log_warn!("LDAP session [{}]: {e}; will connect on first use", s.name);
        }
    }
    Ok(())
}

fn destroy() {
    client::close_all(std::time::Duration::from_millis(100));
}

/// The last search's result in this process.
struct Last {
    entries: Vec<Entry>,
    idx: usize,
}

thread_local! {
    static LAST: RefCell<Option<Last>> = const { RefCell::new(None) };
}

/// The session named `name` (None if the sessions file has none of that name).
pub fn session(name: &str) -> Option<&'static Session> {
    SESSIONS.get()?.iter().find(|s| s.name == name)
}

/// Search and keep the result (replacing the previous one; on error there is none).
/// Ok(number of entries).
pub fn params_search(
    session_name: &str,
    base: &str,
    scope: Scope,
    attrs: &[String],
    filter: &str,
) -> Result<usize, String> {
    LAST.with(|l| *l.borrow_mut() = None);
    let s = session(session_name).ok_or_else(|| format!("no LDAP session [{session_name}]"))?;
    let entries = client::search(s, base, scope, filter, attrs, 0)
        .map_err(|e| format!("LDAP session [{session_name}]: {e}"))?;
    let n = entries.len();
    LAST.with(|l| *l.borrow_mut() = Some(Last { entries, idx: 0 }));
    Ok(n)
}

/// Search an `ldap://session/…` URL and keep the result.
pub fn url_search(ldap_url: &str) -> Result<usize, String> {
    LAST.with(|l| *l.borrow_mut() = None);
    let u = url::parse(ldap_url)?;
    params_search(&u.session, &u.base, u.scope, &u.attrs, &u.filter)
}

/// The values of `attr` in the current entry of the last result: Err(()) when there
/// is no result (or no entry left), Ok(None) when the attribute is absent.
#[allow(clippy::result_unit_err)]
pub fn result_attr_vals(attr: &str) -> Result<Option<Vec<Vec<u8>>>, ()> {
    LAST.with(|l| {
        let l = l.borrow();
        let last = l.as_ref().ok_or(())?;
        let e = last.entries.get(last.idx).ok_or(())?;
        Ok(e.values(attr).map(<[Vec<u8>]>::to_vec))
    })
}

/// Move to the next entry: 0 moved, 1 no more entries, −1 no result.
pub fn result_next() -> i32 {
    LAST.with(|l| match l.borrow_mut().as_mut() {
        None => -1,
        Some(last) if last.idx + 1 < last.entries.len() => {
            last.idx += 1;
            0
        }
        Some(_) => 1,
    })
}

/// RFC 4515 escaping (and `?` → `%3F` with `url_encode`).
pub fn rfc4515_escape(s: &str, url_encode: bool) -> String {
    filter::escape(s, url_encode)
}

fn fixup_fmt(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let s = string_arg(&args[0])?;
    Ok(vec![FixedArg::Fmt(parse_format(&s)?)])
}

/// `ldap_result`'s first argument, prepared.
#[derive(Debug)]
struct ResultSpec {
    attr: String,
    avp: AvpId,
    int: bool,
}

fn no_subst(args: &[Arg]) -> Result<(), String> {
    if args.len() > 1 {
        return Err("ldap: the regex_subst argument is not supported".into());
    }
    Ok(())
}

fn fixup_result(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    no_subst(args)?;
    let s = string_arg(&args[0])?;
    let (attr, rest) = s
        .split_once('/')
        .ok_or_else(|| format!("ldap_result: '{s}' is not 'attr/avp_spec[/type]'"))?;
    let (spec, int) = match rest.rsplit_once('/') {
        Some((spec, "int")) => (spec, true),
        Some((spec, "str")) => (spec, false),
        Some((_, t)) if !rest.ends_with(')') => {
            return Err(format!("ldap_result: bad AVP type '{t}' (int or str)"));
        }
        _ => (rest, false),
    };
    if attr.trim().is_empty() {
        return Err(format!("ldap_result: '{s}' names no attribute"));
    }
    let avp = AvpId::parse_param(spec).map_err(|e| format!("ldap_result: {e}"))?;
    Ok(vec![FixedArg::Any(std::sync::Arc::new(ResultSpec {
        attr: attr.trim().to_string(),
        avp,
        int,
    }))])
}

fn cmd_ldap_search(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let u = ctx.arg_str(&args[0]);
    match url_search(&u) {
        Ok(0) => -1,
        Ok(n) => i32::try_from(n).unwrap_or(i32::MAX),
        Err(e) => {
            openser_core::log_err!("ldap_search: {e}");
            -2
        }
    }
}

fn cmd_ldap_result(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(FixedArg::Any(a)) = args.first() else {
        return -2;
    };
    let Some(spec) = a.downcast_ref::<ResultSpec>() else {
        return -2;
    };
    let vals = match result_attr_vals(&spec.attr) {
        Err(()) => {
            openser_core::log_err!("ldap_result: no LDAP search result");
            return -2;
        }
        Ok(None) => return -1,
        Ok(Some(v)) => v,
    };
    store_values(ctx, &spec.avp, &vals, spec.int)
}

/// Add `vals` to `avp` so that the first is the newest; returns the count or −1.
pub fn store_values(ctx: &mut Ctx, avp: &AvpId, vals: &[Vec<u8>], int: bool) -> i32 {
    let mut n = 0;
    for v in vals.iter().rev() {
        let s = String::from_utf8_lossy(v);
        let pv = if int {
            match s.trim().parse::<i64>() {
                Ok(i) => PvValue::Int(i),
                Err(_) => continue,
            }
        } else {
            PvValue::Str(s.into_owned())
        };
        ctx.avps.add(avp.clone(), pv);
        n += 1;
    }
    if n == 0 { -1 } else { n }
}

fn fixup_result_check(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    no_subst(args)?;
    let s = string_arg(&args[0])?;
    let (attr, m) = s
        .split_once('/')
        .ok_or_else(|| format!("ldap_result_check: '{s}' is not 'attr/string_to_match'"))?;
    if attr.trim().is_empty() {
        return Err(format!("ldap_result_check: '{s}' names no attribute"));
    }
    Ok(vec![
        FixedArg::Str(attr.trim().to_string()),
        FixedArg::Fmt(parse_format(m)?),
    ])
}

fn cmd_ldap_result_check(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let attr = ctx.arg_str(&args[0]);
    let want = ctx.arg_str(&args[1]);
    match result_attr_vals(&attr) {
        Err(()) => {
            openser_core::log_err!("ldap_result_check: no LDAP search result");
            -2
        }
        Ok(Some(v)) if v.iter().any(|x| x == want.as_bytes()) => 1,
        Ok(_) => -1,
    }
}

fn cmd_ldap_result_next(_ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    match result_next() {
        0 => 1,
        1 => -1,
        _ => -2,
    }
}

fn fixup_url_encode(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let s = string_arg(&args[0])?;
    let spec = string_arg(&args[1])?;
    let avp = AvpId::parse_param(&spec).map_err(|e| format!("ldap_filter_url_encode: {e}"))?;
    Ok(vec![
        FixedArg::Fmt(parse_format(&s)?),
        FixedArg::Any(std::sync::Arc::new(avp)),
    ])
}

fn cmd_ldap_filter_url_encode(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let s = ctx.arg_str(&args[0]);
    let Some(FixedArg::Any(a)) = args.get(1) else {
        return -1;
    };
    let Some(avp) = a.downcast_ref::<AvpId>() else {
        return -1;
    };
    ctx.avps
        .add(avp.clone(), PvValue::Str(rfc4515_escape(&s, true)));
    1
}

#[cfg(test)]
mod tests {
    use super::*;
    use openser_core::cfg::ast::ArgValue;

    fn arg(s: &str) -> Arg {
        Arg {
            value: ArgValue::Str(s.into()),
            span: Default::default(),
        }
    }

    #[test]
    fn result_spec() {
        let f = fixup_result(&[arg("telephoneNumber/$avp(s:tel)/int")]).unwrap();
        let FixedArg::Any(a) = &f[0] else { panic!() };
        let r = a.downcast_ref::<ResultSpec>().unwrap();
        assert_eq!(r.attr, "telephoneNumber");
        assert_eq!(r.avp, AvpId::Str("tel".into()));
        assert!(r.int);
        let f = fixup_result(&[arg("cn/$avp(i:3)")]).unwrap();
        let FixedArg::Any(a) = &f[0] else { panic!() };
        assert!(!a.downcast_ref::<ResultSpec>().unwrap().int);
        assert!(fixup_result(&[arg("cn")]).is_err());
        assert!(fixup_result(&[arg("cn/$avp(s:x)/float")]).is_err());
        assert!(fixup_result(&[arg("cn/$avp(s:x)"), arg("/a/b/")]).is_err());
    }

    #[test]
    fn no_result_yet() {
        assert_eq!(result_next(), -1);
        assert!(result_attr_vals("cn").is_err());
        assert!(url_search("ldap://nosuch/dc=x").is_err());
    }
}
