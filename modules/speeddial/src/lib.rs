//! speeddial (OpenSER 1.2 `modules/speeddial`): per-user short numbers.
//!
//! * `sd_lookup(table[, owner])` (REQUEST) — the R-URI user is a short number of the
//!   caller (the From URI, or the URI `owner` expands to, PVs allowed): the R-URI
//!   becomes that row's `new_uri` (`sip:` put in front when missing). 1 when replaced,
//!   -1 when there is no such entry or on an error.
//!
//! Keys: `username` = the owner's user; with `use_domain` ≥ 1 also `domain` = the
//! owner's host; with `use_domain` ≥ 2 also `sd_domain` = the R-URI host (hosts
//! without `domain_prefix`); `sd_username` = the R-URI user.
//!
//! Parameters (1.2 defaults): `db_url` "mysql://openserro:openserro@localhost/openser",
//! `user_column` "username", `domain_column` "domain", `sd_user_column`
//! "sd_username", `sd_domain_column` "sd_domain", `new_uri_column` "new_uri",
//! `domain_prefix` none, `use_domain` 0.

use openser_core::db::{DbConn, Key};
use openser_core::module::{CmdExport, FixedArg, IntParam, ModuleExports, Param, StrParam};
use openser_core::parser::Uri;
use openser_core::route::REQUEST_ROUTE;
use openser_core::script::Ctx;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "speeddial",
    params: &[
        Param::str("db_url", &P.db_url),
        Param::str("user_column", &P.user_column),
        Param::str("domain_column", &P.domain_column),
        Param::str("sd_user_column", &P.sd_user_column),
        Param::str("sd_domain_column", &P.sd_domain_column),
        Param::str("new_uri_column", &P.new_uri_column),
        Param::str("domain_prefix", &P.domain_prefix),
        Param::int_range("use_domain", &P.use_domain, 0, 2),
    ],
    cmds: &[CmdExport::new(
        "sd_lookup",
        1,
        2,
        REQUEST_ROUTE,
        cmd_sd_lookup,
    )],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    ..ModuleExports::EMPTY
};

pub const DEFAULT_DB_URL: &str = openser_core::db::DEFAULT_RO_URL;

/// The `modparam` cells, with 1.2's defaults.
pub struct Params {
    pub db_url: StrParam,
    pub user_column: StrParam,
    pub domain_column: StrParam,
    pub sd_user_column: StrParam,
    pub sd_domain_column: StrParam,
    pub new_uri_column: StrParam,
    pub domain_prefix: StrParam,
    pub use_domain: IntParam,
}

pub static P: Params = Params {
    db_url: StrParam::new(DEFAULT_DB_URL),
    user_column: StrParam::new("username"),
    domain_column: StrParam::new("domain"),
    sd_user_column: StrParam::new("sd_username"),
    sd_domain_column: StrParam::new("sd_domain"),
    new_uri_column: StrParam::new("new_uri"),
    domain_prefix: StrParam::new(""),
    use_domain: IntParam::new(0),
};

fn mod_init() -> Result<(), String> {
    openser_core::db::check_url(P.db_url.get()).map_err(|e| format!("speeddial: {e}"))?;
    Ok(())
}

fn child_init(_rank: i32) -> Result<(), String> {
    openser_core::db::open_in_child("speeddial", P.db_url.get());
    Ok(())
}

use openser_core::msg::text::strip_prefix_ci as strip_prefix;

/// The new URI for short number (`sd_user`, `sd_host`) of owner (`user`, `host`).
pub fn lookup(
    conn: &mut dyn DbConn,
    table: &str,
    owner: (&str, &str),
    sd: (&str, &str),
    use_domain: i64,
) -> Result<Option<String>, String> {
    let prefix = P.domain_prefix.get();
    let mut keys = vec![Key::eq(P.user_column.get(), owner.0)];
    if use_domain >= 1 {
        keys.push(Key::eq(
            P.domain_column.get(),
            strip_prefix(owner.1, prefix),
        ));
    }
    keys.push(Key::eq(P.sd_user_column.get(), sd.0));
    if use_domain >= 2 {
        keys.push(Key::eq(
            P.sd_domain_column.get(),
            strip_prefix(sd.1, prefix),
        ));
    }
    let rows = conn
        .query(table, &keys, &[P.new_uri_column.get()], None)
        .map_err(|e| e.to_string())?;
    let Some(v) = rows.first().and_then(|r| r.first()) else {
        return Ok(None);
    };
    let Some(u) = v.as_str().filter(|_| !v.is_null()) else {
        return Ok(None);
    };
    Ok(Some(if u.starts_with("sip:") {
        u.into_owned()
    } else {
        format!("sip:{u}")
    }))
}

fn cmd_sd_lookup(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(t) = args.first() else { return -1 };
    let table = ctx.arg_str(t);
    let owner = match args.get(1) {
        Some(o) => ctx.arg_str(o),
        None => match ctx.msg.from() {
            Ok(na) => ctx.msg.s(na.uri).to_string(),
            Err(_) => {
                openser_core::log_err!("error while parsing From header");
                return -1;
            }
        },
    };
    let owner = match Uri::parse(&owner) {
        Ok(u) => (u.user.to_string(), u.host.to_string()),
        Err(e) => {
            openser_core::log_err!("bad owner uri <{owner}>: {e}");
            return -1;
        }
    };
    let sd = match ctx.msg.ruri_parsed() {
        Ok(u) => (u.user.to_string(), u.host.to_string()),
        Err(e) => {
            openser_core::log_err!("error while parsing R-URI: {e}");
            return -1;
        }
    };
    let r = openser_core::db::with_conn(P.db_url.get(), |c| {
        lookup(
            c,
            &table,
            (&owner.0, &owner.1),
            (&sd.0, &sd.1),
            P.use_domain.get(),
        )
    });
    match r {
        Ok(Ok(Some(uri))) => {
            if openser_core::script::actions::set_ruri(ctx, &uri) < 0 {
                openser_core::log_err!("cannot replace the R-URI");
                return -1;
            }
            1
        }
        Ok(Ok(None)) => {
            openser_core::log_dbg!("no sip address found for R-URI");
            -1
        }
        Ok(Err(e)) | Err(openser_core::db::DbError(e)) => {
            openser_core::log_err!("error while querying database: {e}");
            -1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openser_core::db::{DbVal, MemDb};

    #[test]
    fn lookups() {
        let mut db = MemDb::with_rows(
            "speed_dial",
            vec![
                vec![
                    ("username", DbVal::from("alice")),
                    ("domain", DbVal::from("a.com")),
                    ("sd_username", DbVal::from("11")),
                    ("sd_domain", DbVal::from("a.com")),
                    ("new_uri", DbVal::from("bob@b.com")),
                ],
                vec![
                    ("username", DbVal::from("alice")),
                    ("domain", DbVal::from("a.com")),
                    ("sd_username", DbVal::from("12")),
                    ("sd_domain", DbVal::from("a.com")),
                    ("new_uri", DbVal::from("sip:carol@c.com")),
                ],
            ],
        );
        let t = "speed_dial";
        assert_eq!(
            lookup(&mut db, t, ("alice", "x"), ("11", "y"), 0),
            Ok(Some("sip:bob@b.com".into()))
        );
        assert_eq!(
            lookup(&mut db, t, ("alice", "a.com"), ("12", "a.com"), 2),
            Ok(Some("sip:carol@c.com".into()))
        );
        assert_eq!(
            lookup(&mut db, t, ("alice", "x.com"), ("12", "a.com"), 1),
            Ok(None)
        );
        assert_eq!(
            lookup(&mut db, t, ("bob", "a.com"), ("11", "a.com"), 0),
            Ok(None)
        );
    }
}
