//! alias_db (OpenSER 1.2 `modules/alias_db`): Request-URI aliases looked up in a
//! database table on every call (no cache), instead of usrloc's alias contacts.
//!
//! * `alias_db_lookup(table)` (REQUEST, FAILURE) — looks the R-URI user (and, with
//!   `use_domain`, its host without `domain_prefix`) up as an alias in `table`; if it
//!   is one, the R-URI becomes `sip:username@domain` of the first row and 1 is
//!   returned; with `append_branches` every further row becomes a branch. -1 when it
//!   is no alias or the database failed. `table` may contain PVs.
//!
//! Parameters (1.2 defaults): `db_url` "mysql://openserro:openserro@localhost/openser",
//! `user_column` "username", `domain_column` "domain", `alias_user_column`
//! "alias_username", `alias_domain_column` "alias_domain", `use_domain` 0,
//! `domain_prefix` none; and, from Kamailio 1.4 for several results,
//! `append_branches` 0.

use openser_core::db::{DbConn, Key};
use openser_core::module::{BoolParam, CmdExport, FixedArg, ModuleExports, Param, StrParam};
use openser_core::route::{FAILURE_ROUTE, REQUEST_ROUTE};
use openser_core::script::{Branch, Ctx, Q_UNSPECIFIED};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "alias_db",
    params: &[
        Param::str("db_url", &P.db_url),
        Param::str("user_column", &P.user_column),
        Param::str("domain_column", &P.domain_column),
        Param::str("alias_user_column", &P.alias_user_column),
        Param::str("alias_domain_column", &P.alias_domain_column),
        Param::bool("use_domain", &P.use_domain),
        Param::str("domain_prefix", &P.domain_prefix),
        Param::bool("append_branches", &P.append_branches),
    ],
    cmds: &[CmdExport::new(
        "alias_db_lookup",
        1,
        1,
        REQUEST_ROUTE | FAILURE_ROUTE,
        cmd_alias_db_lookup,
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
    pub alias_user_column: StrParam,
    pub alias_domain_column: StrParam,
    pub use_domain: BoolParam,
    pub domain_prefix: StrParam,
    pub append_branches: BoolParam,
}

pub static P: Params = Params {
    db_url: StrParam::new(DEFAULT_DB_URL),
    user_column: StrParam::new("username"),
    domain_column: StrParam::new("domain"),
    alias_user_column: StrParam::new("alias_username"),
    alias_domain_column: StrParam::new("alias_domain"),
    use_domain: BoolParam::new(false),
    domain_prefix: StrParam::new(""),
    append_branches: BoolParam::new(false),
};

fn mod_init() -> Result<(), String> {
    openser_core::db::check_url(P.db_url.get()).map_err(|e| format!("alias_db: {e}"))?;
    Ok(())
}

fn child_init(_rank: i32) -> Result<(), String> {
    openser_core::db::open_in_child("alias_db", P.db_url.get());
    Ok(())
}

pub use openser_core::msg::text::strip_prefix_ci as strip_prefix;

/// The target URIs of alias (`user`, `host`) in `table`, in the database's order.
pub fn lookup(
    conn: &mut dyn DbConn,
    table: &str,
    user: &str,
    host: &str,
) -> Result<Vec<String>, String> {
    let mut keys = vec![Key::eq(P.alias_user_column.get(), user)];
    if P.use_domain.get() {
        keys.push(Key::eq(
            P.alias_domain_column.get(),
            strip_prefix(host, P.domain_prefix.get()),
        ));
    }
    let rows = conn
        .query(
            table,
            &keys,
            &[P.user_column.get(), P.domain_column.get()],
            None,
        )
        .map_err(|e| e.to_string())?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let u = r.first()?.as_str()?;
            let d = r.get(1)?.as_str()?;
            Some(format!("sip:{u}@{d}"))
        })
        .collect())
}

fn cmd_alias_db_lookup(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(t) = args.first() else { return -1 };
    let table = ctx.arg_str(t);
    let (user, host) = match ctx.msg.ruri_parsed() {
        Ok(u) => (u.user.to_string(), u.host.to_string()),
        Err(e) => {
            openser_core::log_err!("failed to parse R-URI: {e}");
            return -1;
        }
    };
    if user.is_empty() {
        openser_core::log_dbg!("no user in the R-URI");
        return -1;
    }
    let uris =
        match openser_core::db::with_conn(P.db_url.get(), |c| lookup(c, &table, &user, &host)) {
            Ok(Ok(u)) => u,
            Ok(Err(e)) | Err(openser_core::db::DbError(e)) => {
                openser_core::log_err!("error while querying database: {e}");
                return -1;
            }
        };
    let mut it = uris.into_iter();
    let Some(first) = it.next() else {
        openser_core::log_dbg!("no alias found for R-URI");
        return -1;
    };
    if openser_core::script::actions::set_ruri(ctx, &first) < 0 {
        return -1;
    }
    if P.append_branches.get() {
        for u in it {
            ctx.branches.push(Branch {
                uri: u,
                dst_uri: None,
                path: None,
                q: Q_UNSPECIFIED,
                bflags: 0,
                force_send_sock: ctx.msg.force_send_sock,
            });
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;
    use openser_core::db::{DbVal, MemDb};

    #[test]
    fn prefixes() {
        assert_eq!(strip_prefix("sip.a.com", "sip."), "a.com");
        assert_eq!(strip_prefix("SIP.a.com", "sip."), "a.com");
        assert_eq!(strip_prefix("a.com", "sip."), "a.com");
        assert_eq!(strip_prefix("sip.", "sip."), "sip.");
        assert_eq!(strip_prefix("a.com", ""), "a.com");
    }

    #[test]
    fn lookups() {
        let row = |a: &str, u: &str| {
            vec![
                ("alias_username", DbVal::from(a.to_string())),
                ("alias_domain", DbVal::from("a.com")),
                ("username", DbVal::from(u.to_string())),
                ("domain", DbVal::from("b.com")),
            ]
        };
        let mut db = MemDb::with_rows(
            "dbaliases",
            vec![row("sales", "alice"), row("sales", "bob")],
        );
        assert_eq!(
            lookup(&mut db, "dbaliases", "sales", "x.com"),
            Ok(vec![
                "sip:alice@b.com".to_string(),
                "sip:bob@b.com".to_string()
            ])
        );
        assert_eq!(lookup(&mut db, "dbaliases", "ceo", "a.com"), Ok(vec![]));
        assert!(lookup(&mut db, "nosuch", "sales", "a.com").is_err());
    }
}
