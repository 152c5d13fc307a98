//! uri_db (OpenSER 1.2 `modules/uri_db`): checks of the URIs a user may use.
//!
//! * `check_to()`, `check_from()` (REQUEST) — the user of the To / From URI against the
//!   credentials an authorize function accepted: with `use_uri_table`, a row of the
//!   `uri` table (digest username, realm, URI user) must exist; without, the URI user
//!   must equal the digest username (case-insensitively; no database needed). 1 = the
//!   user may use the URI, -1 = spoofed, no credentials or an error.
//! * `does_uri_exist()` (REQUEST) — the Request-URI user (and host with `use_domain`)
//!   is a row of the `uri` table (`use_uri_table`) or of `subscriber`. 1 / -1.
//!
//! Parameters (1.2 defaults): `db_url` "mysql://openserro:openserro@localhost/openser"
//! (empty: no database, `check_to`/`check_from` still work without `use_uri_table`),
//! `uri_table` "uri", `uri_user_column` "username", `uri_domain_column` "domain",
//! `uri_uriuser_column` "uri_user", `subscriber_table` "subscriber",
//! `subscriber_user_column` "username", `subscriber_domain_column` "domain",
//! `use_uri_table` 0, `use_domain` 0.

use openser_core::cfg::ast::Arg;
use openser_core::db::{DbConn, Key};
use openser_core::module::{BoolParam, CmdExport, FixedArg, ModuleExports, Param, StrParam};
use openser_core::parser::{HdrType, SipMsg, Uri};
use openser_core::route::REQUEST_ROUTE;
use openser_core::script::Ctx;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "uri_db",
    params: &[
        Param::str("db_url", &P.db_url),
        Param::str("uri_table", &P.uri_table),
        Param::str("uri_user_column", &P.uri_user_column),
        Param::str("uri_domain_column", &P.uri_domain_column),
        Param::str("uri_uriuser_column", &P.uri_uriuser_column),
        Param::str("subscriber_table", &P.subscriber_table),
        Param::str("subscriber_user_column", &P.subscriber_user_column),
        Param::str("subscriber_domain_column", &P.subscriber_domain_column),
        Param::bool("use_uri_table", &P.use_uri_table),
        Param::bool("use_domain", &P.use_domain),
    ],
    cmds: &[
        CmdExport::new("check_to", 0, 0, REQUEST_ROUTE, cmd_check_to),
        CmdExport::new("check_from", 0, 0, REQUEST_ROUTE, cmd_check_from),
        CmdExport::new("does_uri_exist", 0, 0, REQUEST_ROUTE, cmd_does_uri_exist)
            .fixup(fix_needs_db),
    ],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    ..ModuleExports::EMPTY
};

pub const DEFAULT_DB_URL: &str = openser_core::db::DEFAULT_RO_URL;

/// The `modparam` cells, with 1.2's defaults.
pub struct Params {
    pub db_url: StrParam,
    pub uri_table: StrParam,
    pub uri_user_column: StrParam,
    pub uri_domain_column: StrParam,
    pub uri_uriuser_column: StrParam,
    pub subscriber_table: StrParam,
    pub subscriber_user_column: StrParam,
    pub subscriber_domain_column: StrParam,
    pub use_uri_table: BoolParam,
    pub use_domain: BoolParam,
}

pub static P: Params = Params {
    db_url: StrParam::new(DEFAULT_DB_URL),
    uri_table: StrParam::new("uri"),
    uri_user_column: StrParam::new("username"),
    uri_domain_column: StrParam::new("domain"),
    uri_uriuser_column: StrParam::new("uri_user"),
    subscriber_table: StrParam::new("subscriber"),
    subscriber_user_column: StrParam::new("username"),
    subscriber_domain_column: StrParam::new("domain"),
    use_uri_table: BoolParam::new(false),
    use_domain: BoolParam::new(false),
};

fn mod_init() -> Result<(), String> {
    let url = P.db_url.get();
    if url.is_empty() {
        if P.use_uri_table.get() {
            return Err("uri_db: use_uri_table needs a db_url".into());
        }
        return Ok(());
    }
    openser_core::db::check_url(url).map_err(|e| format!("uri_db: {e}"))?;
    Ok(())
}

fn child_init(_rank: i32) -> Result<(), String> {
    let url = P.db_url.get();
    if !url.is_empty() {
        openser_core::db::open_in_child("uri_db", url);
    }
    Ok(())
}

fn fix_needs_db(_: &[Arg]) -> Result<Vec<FixedArg>, String> {
    if P.db_url.get().is_empty() {
        return Err("does_uri_exist needs a database: set modparam uri_db db_url".into());
    }
    Ok(Vec::new())
}

/// The digest username (its user part) and realm of the credentials an authorize
/// function accepted.
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
    let user = msg.os(d.username)?.trim_matches('"');
    let user = user.split_once('@').map_or(user, |(u, _)| u).to_string();
    let realm = msg.os(d.realm).unwrap_or("").trim_matches('"').to_string();
    Some((user, realm))
}

/// Whether the URI user `uri_user` may be used by the digest user (`user`, `realm`).
pub fn may_use(
    conn: Option<&mut dyn DbConn>,
    user: &str,
    realm: &str,
    uri_user: &str,
) -> Result<bool, String> {
    match conn {
        Some(c) => {
            let keys = [
                Key::eq(P.uri_user_column.get(), user),
                Key::eq(P.uri_domain_column.get(), realm),
                Key::eq(P.uri_uriuser_column.get(), uri_user),
            ];
            let rows = c
                .query(P.uri_table.get(), &keys, &[P.uri_user_column.get()], None)
                .map_err(|e| e.to_string())?;
            Ok(!rows.is_empty())
        }
        None => Ok(uri_user.eq_ignore_ascii_case(user)),
    }
}

fn check(ctx: &mut Ctx, to: bool) -> i32 {
    let na = if to { ctx.msg.to() } else { ctx.msg.from() };
    let uri = match na {
        Ok(na) => ctx.msg.s(na.uri).to_string(),
        Err(_) => {
            openser_core::log_err!("error while parsing the header");
            return -1;
        }
    };
    let Some((user, realm)) = credentials(ctx.msg) else {
        openser_core::log_err!(
            "no authorized credentials found (call {{www,proxy}}_authorize first)"
        );
        return -1;
    };
    let uri_user = match Uri::parse(&uri) {
        Ok(u) => u.user.to_string(),
        Err(e) => {
            openser_core::log_err!("bad uri <{uri}>: {e}");
            return -1;
        }
    };
    if uri_user.is_empty() {
        openser_core::log_err!("username not found in URI");
        return -1;
    }
    let r = if P.use_uri_table.get() {
        match openser_core::db::with_conn(P.db_url.get(), |c| {
            may_use(Some(c), &user, &realm, &uri_user)
        }) {
            Ok(r) => r,
            Err(e) => Err(e.to_string()),
        }
    } else {
        may_use(None, &user, &realm, &uri_user)
    };
    match r {
        Ok(true) => 1,
        Ok(false) => {
            openser_core::log_dbg!("user '{uri_user}' is spoofed");
            -1
        }
        Err(e) => {
            openser_core::log_err!("error while querying database: {e}");
            -1
        }
    }
}

fn cmd_check_to(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    check(ctx, true)
}

fn cmd_check_from(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    check(ctx, false)
}

/// Whether the user (and domain, with `use_domain`) exists.
pub fn exists(conn: &mut dyn DbConn, user: &str, host: &str) -> Result<bool, String> {
    let (table, ucol, dcol) = if P.use_uri_table.get() {
        (
            P.uri_table.get(),
            P.uri_uriuser_column.get(),
            P.uri_domain_column.get(),
        )
    } else {
        (
            P.subscriber_table.get(),
            P.subscriber_user_column.get(),
            P.subscriber_domain_column.get(),
        )
    };
    let mut keys = vec![Key::eq(ucol, user)];
    if P.use_domain.get() {
        keys.push(Key::eq(dcol, host));
    }
    let rows = conn
        .query(table, &keys, &[ucol], None)
        .map_err(|e| e.to_string())?;
    Ok(!rows.is_empty())
}

fn cmd_does_uri_exist(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    let (user, host) = match ctx.msg.ruri_parsed() {
        Ok(u) => (u.user.to_string(), u.host.to_string()),
        Err(e) => {
            openser_core::log_err!("error while parsing URI: {e}");
            return -1;
        }
    };
    match openser_core::db::with_conn(P.db_url.get(), |c| exists(c, &user, &host)) {
        Ok(Ok(true)) => 1,
        Ok(Ok(false)) => -1,
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
    fn without_the_uri_table() {
        assert_eq!(may_use(None, "alice", "a.com", "Alice"), Ok(true));
        assert_eq!(may_use(None, "alice", "a.com", "bob"), Ok(false));
    }

    #[test]
    fn with_the_uri_table() {
        let mut db = MemDb::with_rows(
            "uri",
            vec![vec![
                ("username", DbVal::from("alice")),
                ("domain", DbVal::from("a.com")),
                ("uri_user", DbVal::from("sales")),
            ]],
        );
        assert_eq!(
            may_use(Some(&mut db as &mut dyn DbConn), "alice", "a.com", "sales"),
            Ok(true)
        );
        assert_eq!(
            may_use(Some(&mut db as &mut dyn DbConn), "alice", "a.com", "ceo"),
            Ok(false)
        );
        let mut sub = MemDb::with_rows(
            "subscriber",
            vec![vec![
                ("username", DbVal::from("alice")),
                ("domain", DbVal::from("a.com")),
            ]],
        );
        assert_eq!(exists(&mut sub, "alice", "x.com"), Ok(true));
        assert_eq!(exists(&mut sub, "bob", "a.com"), Ok(false));
    }

    #[test]
    fn exports_table() {
        assert_eq!(EXPORTS.params.len(), 10);
        assert_eq!(EXPORTS.cmds.len(), 3);
    }
}
