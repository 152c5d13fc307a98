//! group (OpenSER 1.2 `modules/group`): group membership from the database, for ACLs.
//!
//! * `is_user_in(uri, group)` (REQUEST, FAILURE) — 1 if the user of `uri` is in
//!   `group` of the `grp` table (user and, with `use_domain`, domain), -1 if not or on
//!   a database error. `uri`: `Request-URI`, `To`, `From`, `Credentials` (the
//!   username, and realm as domain, of the credentials an authorize function accepted;
//!   a `user@domain` username gives its own domain) or a PV holding a URI
//!   (`$avp(s:caller)`). `group` may contain PVs.
//! * `get_user_group(uri, avp)` (REQUEST, FAILURE) — matches `sip:user@domain` of `uri`
//!   against the regular expressions of `re_table` (loaded and compiled at start-up,
//!   case-insensitive), adding the group id of each match (only the first with
//!   `multiple_gid` 0) as an integer AVP; 1 if some matched.
//!
//! Parameters (1.2 defaults): `db_url` "mysql://openserro:openserro@localhost/openser",
//! `table` "grp", `user_column` "username", `domain_column` "domain", `group_column`
//! "grp", `use_domain` 0, `re_table` none (no regular-expression groups), `re_exp_column`
//! "reg_exp", `re_gid_column` "group_id", `multiple_gid` 1. A bad regular expression in
//! `re_table` stops the server at start-up.

use std::sync::{Arc, OnceLock};

use openser_core::cfg::ast::Arg;
use openser_core::cfg::pv::{PvParam, PvSpec};
use openser_core::db::{DbConn, Key};
use openser_core::module::{BoolParam, CmdExport, FixedArg, ModuleExports, Param, StrParam};
use openser_core::parser::{HdrType, SipMsg, Uri};
use openser_core::re::Regex;
use openser_core::route::{FAILURE_ROUTE, REQUEST_ROUTE};
use openser_core::script::fixup::string_arg;
use openser_core::script::{Ctx, PvValue};

const RF: u32 = REQUEST_ROUTE | FAILURE_ROUTE;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "group",
    params: &[
        Param::str("db_url", &P.db_url),
        Param::str("table", &P.table),
        Param::str("user_column", &P.user_column),
        Param::str("domain_column", &P.domain_column),
        Param::str("group_column", &P.group_column),
        Param::bool("use_domain", &P.use_domain),
        Param::str("re_table", &P.re_table),
        Param::str("re_exp_column", &P.re_exp_column),
        Param::str("re_gid_column", &P.re_gid_column),
        Param::bool("multiple_gid", &P.multiple_gid),
    ],
    cmds: &[
        CmdExport::new("is_user_in", 2, 2, RF, cmd_is_user_in).fixup(fix_is_user_in),
        CmdExport::new("get_user_group", 2, 2, RF, cmd_get_user_group).fixup(fix_get_user_group),
    ],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    ..ModuleExports::EMPTY
};

pub const DEFAULT_DB_URL: &str = openser_core::db::DEFAULT_RO_URL;

/// The `modparam` cells, with 1.2's defaults.
pub struct Params {
    pub db_url: StrParam,
    pub table: StrParam,
    pub user_column: StrParam,
    pub domain_column: StrParam,
    pub group_column: StrParam,
    pub use_domain: BoolParam,
    pub re_table: StrParam,
    pub re_exp_column: StrParam,
    pub re_gid_column: StrParam,
    pub multiple_gid: BoolParam,
}

pub static P: Params = Params {
    db_url: StrParam::new(DEFAULT_DB_URL),
    table: StrParam::new("grp"),
    user_column: StrParam::new("username"),
    domain_column: StrParam::new("domain"),
    group_column: StrParam::new("grp"),
    use_domain: BoolParam::new(false),
    re_table: StrParam::new(""),
    re_exp_column: StrParam::new("reg_exp"),
    re_gid_column: StrParam::new("group_id"),
    multiple_gid: BoolParam::new(true),
};

/// The regular-expression groups, compiled at start-up (before fork).
static RE_GROUPS: OnceLock<Vec<(Regex, i64)>> = OnceLock::new();

/// Where the user comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Ruri,
    To,
    From,
    Credentials,
    Pv(PvSpec),
}

/// Parse the `uri` argument.
pub fn parse_source(s: &str) -> Result<Source, String> {
    let t = s.trim();
    Ok(match t.to_ascii_lowercase().as_str() {
        "request-uri" => Source::Ruri,
        "to" => Source::To,
        "from" => Source::From,
        "credentials" => Source::Credentials,
        _ if t.starts_with('$') => {
            let (spec, n) = openser_core::cfg::pv::parse_pv(t)?;
            if n != t.len() {
                return Err(format!("expected one pseudo-variable, found '{t}'"));
            }
            Source::Pv(spec)
        }
        _ => {
            return Err(format!(
                "unknown source '{t}' (Request-URI, To, From, Credentials or a PV)"
            ));
        }
    })
}

/// User and domain of the credentials an authorize function marked.
pub fn credentials(msg: &SipMsg) -> Option<(String, String)> {
    let m = msg.auth_mark?;
    let h = msg.hdrs().get(m.hdr_idx)?;
    if !matches!(
        h.htype,
        HdrType::Authorization | HdrType::ProxyAuthorization
    ) {
        return None;
    }
    let d = openser_core::parser::typed::parse_digest(msg.buf(), h.body).ok()?;
    let user = msg.os(d.username)?.trim_matches('"').to_string();
    let realm = msg.os(d.realm).unwrap_or("").trim_matches('"').to_string();
    Some(match user.split_once('@') {
        Some((u, dom)) if !dom.is_empty() => (u.to_string(), dom.to_string()),
        _ => (user, realm),
    })
}

/// User and domain of a source.
pub fn user_domain(ctx: &mut Ctx, src: &Source) -> Option<(String, String)> {
    let uri = match src {
        Source::Credentials => {
            let r = credentials(ctx.msg);
            if r.is_none() {
                openser_core::log_err!("no authorized credentials found");
            }
            return r;
        }
        Source::Ruri => ctx.msg.ruri().to_string(),
        Source::To | Source::From => {
            let na = if matches!(src, Source::To) {
                ctx.msg.to()
            } else {
                ctx.msg.from()
            };
            match na {
                Ok(na) => ctx.msg.s(na.uri).to_string(),
                Err(_) => {
                    openser_core::log_err!("error while parsing the header");
                    return None;
                }
            }
        }
        Source::Pv(spec) => match ctx.get_pv(spec) {
            PvValue::Str(s) => s,
            _ => {
                openser_core::log_dbg!("no value for {}", spec.text);
                return None;
            }
        },
    };
    match Uri::parse(&uri) {
        Ok(u) => Some((u.user.to_string(), u.host.to_string())),
        Err(e) => {
            openser_core::log_err!("bad uri <{uri}>: {e}");
            None
        }
    }
}

fn fix_is_user_in(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let src = parse_source(&string_arg(&args[0])?)?;
    let g = string_arg(&args[1])?;
    let g = if g.contains('$') {
        FixedArg::Fmt(openser_core::cfg::pv::parse_format(&g)?)
    } else {
        FixedArg::Str(g)
    };
    Ok(vec![FixedArg::Any(Arc::new(src)), g])
}

fn fix_get_user_group(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    if P.re_table.get().is_empty() {
        return Err("get_user_group needs modparam group re_table".into());
    }
    let src = parse_source(&string_arg(&args[0])?)?;
    let a = string_arg(&args[1])?;
    let a = a.trim();
    let spec = if a.starts_with('$') {
        openser_core::cfg::pv::parse_pv(a)?.0
    } else {
        // 1.2's bare AVP forms: `i:10`, `s:name`, `name` (an alias)
        openser_core::cfg::pv::parse_pv(&format!("$avp({a})"))?.0
    };
    if !matches!(spec.param, Some(PvParam::Avp(_))) {
        return Err(format!("'{a}' is not an AVP"));
    }
    Ok(vec![FixedArg::Any(Arc::new(src)), FixedArg::Pv(spec)])
}

/// Whether (`user`, `domain`) is in `group`.
pub fn is_in(conn: &mut dyn DbConn, user: &str, domain: &str, group: &str) -> Result<bool, String> {
    let mut keys = vec![
        Key::eq(P.user_column.get(), user),
        Key::eq(P.group_column.get(), group),
    ];
    if P.use_domain.get() {
        keys.push(Key::eq(P.domain_column.get(), domain));
    }
    let rows = conn
        .query(P.table.get(), &keys, &[P.group_column.get()], None)
        .map_err(|e| e.to_string())?;
    Ok(!rows.is_empty())
}

fn cmd_is_user_in(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(FixedArg::Any(a)) = args.first() else {
        return -1;
    };
    let Some(src) = a.downcast_ref::<Source>() else {
        return -1;
    };
    let Some(g) = args.get(1) else { return -1 };
    let group = ctx.arg_str(g);
    let Some((user, domain)) = user_domain(ctx, src) else {
        return -1;
    };
    if user.is_empty() {
        openser_core::log_err!("username missing");
        return -1;
    }
    match openser_core::db::with_conn(P.db_url.get(), |c| is_in(c, &user, &domain, &group)) {
        Ok(Ok(true)) => 1,
        Ok(Ok(false)) => -1,
        Ok(Err(e)) | Err(openser_core::db::DbError(e)) => {
            openser_core::log_err!("error while querying database: {e}");
            -1
        }
    }
}

/// The group ids whose expression matches `text` (every one, or the first).
pub fn match_groups(groups: &[(Regex, i64)], text: &str, multiple: bool) -> Vec<i64> {
    let mut out = Vec::new();
    for (re, gid) in groups {
        if re.is_match(text) {
            out.push(*gid);
            if !multiple {
                break;
            }
        }
    }
    out
}

fn cmd_get_user_group(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (Some(FixedArg::Any(a)), Some(FixedArg::Pv(spec))) = (args.first(), args.get(1)) else {
        return -1;
    };
    let Some(src) = a.downcast_ref::<Source>() else {
        return -1;
    };
    let Some((user, domain)) = user_domain(ctx, src) else {
        return -1;
    };
    let Some(PvParam::Avp(name)) = &spec.param else {
        return -1;
    };
    let Some(id) = openser_core::script::pv::avp_id(ctx, name) else {
        return -1;
    };
    let text = format!("sip:{user}@{domain}");
    let groups = RE_GROUPS.get().map(Vec::as_slice).unwrap_or(&[]);
    let ids = match_groups(groups, &text, P.multiple_gid.get());
    if ids.is_empty() {
        return -1;
    }
    for g in ids {
        ctx.avps.add(id.clone(), PvValue::Int(g));
    }
    1
}

/// Read and compile the `re_table` rows (in table order).
pub fn load_re_groups(conn: &mut dyn DbConn) -> Result<Vec<(Regex, i64)>, String> {
    let rows = conn
        .query(
            P.re_table.get(),
            &[],
            &[P.re_exp_column.get(), P.re_gid_column.get()],
            None,
        )
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (Some(re), Some(gid)) = (
            r.first().and_then(|v| v.as_str().map(|s| s.into_owned())),
            r.get(1)
                .and_then(|v| v.as_int().or_else(|| v.as_str()?.trim().parse().ok())),
        ) else {
            return Err("re_table row with NULL or badly typed fields".into());
        };
        let compiled = Regex::new(&re, true, true)
            .map_err(|e| format!("{} row for group {gid}: {e}", P.re_table.get()))?;
        out.push((compiled, gid));
    }
    Ok(out)
}

fn mod_init() -> Result<(), String> {
    openser_core::db::check_url(P.db_url.get()).map_err(|e| format!("group: {e}"))?;
    if P.re_table.get().is_empty() {
        return Ok(());
    }
    let mut conn = openser_core::db::connect(P.db_url.get())
        .map_err(|e| format!("group: can't connect to the database: {e}"))?;
    let groups = load_re_groups(conn.as_mut()).map_err(|e| format!("group: {e}"))?;
    drop(conn);
    let _ = RE_GROUPS.set(groups);
    Ok(())
}

fn child_init(_rank: i32) -> Result<(), String> {
    openser_core::db::open_in_child("group", P.db_url.get());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openser_core::db::{DbVal, MemDb};

    #[test]
    fn sources() {
        assert!(matches!(parse_source("Request-URI"), Ok(Source::Ruri)));
        assert!(matches!(parse_source("to"), Ok(Source::To)));
        assert!(matches!(parse_source("From"), Ok(Source::From)));
        assert!(matches!(
            parse_source("Credentials"),
            Ok(Source::Credentials)
        ));
        assert!(matches!(parse_source("$avp(s:x)"), Ok(Source::Pv(_))));
        assert!(parse_source("Contact").is_err());
    }

    #[test]
    fn membership_query() {
        let mut db = MemDb::with_rows(
            "grp",
            vec![vec![
                ("username", DbVal::from("alice")),
                ("domain", DbVal::from("a.com")),
                ("grp", DbVal::from("pstn")),
            ]],
        );
        assert_eq!(is_in(&mut db, "alice", "a.com", "pstn"), Ok(true));
        assert_eq!(is_in(&mut db, "alice", "a.com", "intl"), Ok(false));
        assert_eq!(is_in(&mut db, "bob", "a.com", "pstn"), Ok(false));
    }

    #[test]
    fn regex_groups() {
        let mut db = MemDb::with_rows(
            "re_grp",
            vec![
                vec![
                    ("reg_exp", DbVal::from("^sip:1[0-9]+@")),
                    ("group_id", DbVal::Int(1)),
                ],
                vec![
                    ("reg_exp", DbVal::from("@A\\.com$")),
                    ("group_id", DbVal::Int(2)),
                ],
            ],
        );
        P.re_table.set("re_grp");
        let g = load_re_groups(&mut db).unwrap();
        assert_eq!(match_groups(&g, "sip:123@a.com", true), [1, 2]);
        assert_eq!(match_groups(&g, "sip:123@a.com", false), [1]);
        assert!(match_groups(&g, "sip:bob@b.com", true).is_empty());
        let mut bad = MemDb::with_rows(
            "re_grp",
            vec![vec![
                ("reg_exp", DbVal::from("(")),
                ("group_id", DbVal::Int(1)),
            ]],
        );
        assert!(load_re_groups(&mut bad).is_err());
    }
}
