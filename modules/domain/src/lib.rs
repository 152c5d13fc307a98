//! domain (OpenSER 1.2 `modules/domain`): is a domain one of ours? The local domains
//! are the rows of the `domain` table.
//!
//! Functions (1 = local, -1 = not local or error):
//! * `is_from_local()` (REQUEST) — the host of the From URI;
//! * `is_uri_host_local()` (REQUEST, FAILURE, BRANCH) — the host of the Request-URI
//!   (in a branch route the branch's URI, which is the R-URI the branch runs with);
//! * `is_domain_local(pv)` (REQUEST, FAILURE, BRANCH) — the value of any PV
//!   (`"$rd"`, `"$fd"`, `"$avp(s:dom)"`).
//!
//! Parameters (1.2 defaults): `db_url` "mysql://openserro:openserro@localhost/openser",
//! `db_mode` 0 (every check is a query) or 1 (the table is loaded into shared memory at
//! start-up and by MI `domain_reload`), `domain_table` "domain", `domain_col` "domain".
//! With the cache, names compare case-insensitively.
//!
//! MI (`db_mode` 1): `domain_reload` re-reads the table (500 "Domain table reload
//! failed" if the database fails, the old list staying in use); `domain_dump` lists the
//! cached domains, one per line. Each process notices a reload at its next check (an
//! atomic generation counter) and copies the new list into private memory, so a check
//! takes no lock.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::OnceLock;

use openser_core::cfg::ast::Arg;
use openser_core::db::{DbConn, Key};
use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::module::{
    CmdExport, FixedArg, IntParam, MiExport, ModuleExports, Param, StrParam,
};
use openser_core::parser::Uri;
use openser_core::route::{BRANCH_ROUTE, FAILURE_ROUTE, REQUEST_ROUTE};
use openser_core::script::{Ctx, PvValue};

pub use shm::SharedBlob as Cache;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "domain",
    params: &[
        Param::str("db_url", &P.db_url),
        Param::int_range("db_mode", &P.db_mode, 0, 1),
        Param::str("domain_table", &P.domain_table),
        Param::str("domain_col", &P.domain_col),
    ],
    cmds: &[
        CmdExport::new("is_from_local", 0, 0, REQUEST_ROUTE, cmd_is_from_local),
        CmdExport::new(
            "is_uri_host_local",
            0,
            0,
            REQUEST_ROUTE | FAILURE_ROUTE | BRANCH_ROUTE,
            cmd_is_uri_host_local,
        ),
        CmdExport::new(
            "is_domain_local",
            1,
            1,
            REQUEST_ROUTE | FAILURE_ROUTE | BRANCH_ROUTE,
            cmd_is_domain_local,
        )
        .fixup(fix_pv),
    ],
    mi: &[
        MiExport::new("domain_reload", mi_reload).no_input(),
        MiExport::new("domain_dump", mi_dump).no_input(),
    ],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    ..ModuleExports::EMPTY
};

pub const DEFAULT_DB_URL: &str = openser_core::db::DEFAULT_RO_URL;

/// The `modparam` cells, with 1.2's defaults.
pub struct Params {
    pub db_url: StrParam,
    pub db_mode: IntParam,
    pub domain_table: StrParam,
    pub domain_col: StrParam,
}

pub static P: Params = Params {
    db_url: StrParam::new(DEFAULT_DB_URL),
    db_mode: IntParam::new(0),
    domain_table: StrParam::new("domain"),
    domain_col: StrParam::new("domain"),
};

/// The shared cache (`db_mode` 1), made by `mod_init`.
static CACHE: OnceLock<&'static Cache> = OnceLock::new();

thread_local! {
    /// This process's copy of the cached list and its generation.
    static LOCAL: RefCell<(u64, HashSet<String>)> = RefCell::new((u64::MAX, HashSet::new()));
}

/// Read every domain of the table: lower-case, sorted, without duplicates.
pub fn load_domains(conn: &mut dyn DbConn, table: &str, col: &str) -> Result<Vec<String>, String> {
    let rows = conn
        .query(table, &[], &[col], None)
        .map_err(|e| e.to_string())?;
    let mut v: Vec<String> = rows
        .iter()
        .filter_map(|r| r.first()?.as_str().map(|s| s.trim().to_ascii_lowercase()))
        .filter(|s| !s.is_empty())
        .collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// Parse the cached form (`\n`-separated) into a set.
pub fn parse_list(bytes: &[u8]) -> HashSet<String> {
    String::from_utf8_lossy(bytes)
        .split('\n')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn reload_with(conn: &mut dyn DbConn, cache: &Cache) -> Result<usize, String> {
    let list = load_domains(conn, P.domain_table.get(), P.domain_col.get())?;
    if !cache.replace(list.join("\n").as_bytes()) {
        return Err("out of shared memory".into());
    }
    Ok(list.len())
}

fn mod_init() -> Result<(), String> {
    openser_core::db::check_url(P.db_url.get()).map_err(|e| format!("domain: {e}"))?;
    if P.db_mode.get() == 0 {
        return Ok(());
    }
    let cache = Cache::new_static("domain cache")
        .ok_or_else(|| "domain: no shared memory for the domain cache".to_string())?;
    // a connection of the attendant's own, closed before it forks
    let mut conn = openser_core::db::connect(P.db_url.get())
        .map_err(|e| format!("domain: can't connect to the database: {e}"))?;
    let n = reload_with(conn.as_mut(), cache)
        .map_err(|e| format!("domain: reading the domain table failed: {e}"))?;
    drop(conn);
    openser_core::log_dbg!("{n} domains cached");
    let _ = CACHE.set(cache);
    Ok(())
}

fn child_init(_rank: i32) -> Result<(), String> {
    if P.db_mode.get() == 0 {
        openser_core::db::open_in_child("domain", P.db_url.get());
    }
    Ok(())
}

/// Whether `host` is a local domain: 1, -1 (also when the database fails).
pub fn is_domain_local(host: &str) -> i32 {
    if host.is_empty() {
        return -1;
    }
    if let Some(cache) = CACHE.get() {
        let g = cache.generation();
        let host = host.to_ascii_lowercase();
        return LOCAL.with(|l| {
            let mut l = l.borrow_mut();
            if l.0 != g {
                let (g, bytes) = cache.read();
                *l = (g, parse_list(&bytes));
            }
            if l.1.contains(&host) { 1 } else { -1 }
        });
    }
    let r = openser_core::db::with_conn(P.db_url.get(), |c| {
        c.query(
            P.domain_table.get(),
            &[Key::eq(P.domain_col.get(), host)],
            &[P.domain_col.get()],
            None,
        )
    });
    match r {
        Ok(Ok(rows)) if !rows.is_empty() => 1,
        Ok(Ok(_)) => -1,
        Ok(Err(e)) | Err(e) => {
            openser_core::log_err!("domain query failed: {e}");
            -1
        }
    }
}

fn host_of(uri: &str) -> Option<String> {
    match Uri::parse(uri) {
        Ok(u) => Some(u.host.to_string()),
        Err(e) => {
            openser_core::log_err!("bad uri <{uri}>: {e}");
            None
        }
    }
}

fn cmd_is_from_local(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    let uri = match ctx.msg.from() {
        Ok(na) => ctx.msg.s(na.uri).to_string(),
        Err(_) => {
            openser_core::log_err!("error while parsing From header");
            return -1;
        }
    };
    match host_of(&uri) {
        Some(h) => is_domain_local(&h),
        None => -1,
    }
}

fn cmd_is_uri_host_local(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    let uri = ctx.msg.ruri().to_string();
    match host_of(&uri) {
        Some(h) => is_domain_local(&h),
        None => -1,
    }
}

fn fix_pv(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let a = args.first().ok_or("missing argument")?;
    let t = openser_core::script::fixup::string_arg(a)?;
    let t = t.trim();
    let (spec, n) = openser_core::cfg::pv::parse_pv(t)?;
    if n != t.len() {
        return Err(format!("expected one pseudo-variable, found '{t}'"));
    }
    Ok(vec![FixedArg::Pv(spec)])
}

fn cmd_is_domain_local(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(FixedArg::Pv(spec)) = args.first() else {
        return -1;
    };
    match ctx.get_pv(spec) {
        PvValue::Str(s) => is_domain_local(&s),
        PvValue::Int(i) => is_domain_local(&i.to_string()),
        PvValue::Null => {
            openser_core::log_dbg!("no value for {}", spec.text);
            -1
        }
    }
}

fn mi_reload(_: &[MiArg]) -> MiReply {
    let Some(cache) = CACHE.get() else {
        return MiReply::err(500, "Domain cache not enabled (db_mode 0)");
    };
    match openser_core::db::with_conn(P.db_url.get(), |c| reload_with(c, cache)) {
        Ok(Ok(_)) => MiReply::ok(Vec::new()),
        Ok(Err(e)) | Err(openser_core::db::DbError(e)) => {
            openser_core::log_err!("domain table reload failed: {e}");
            MiReply::err(500, "Domain table reload failed")
        }
    }
}

fn mi_dump(_: &[MiArg]) -> MiReply {
    let Some(cache) = CACHE.get() else {
        return MiReply::err(500, "Domain cache not enabled (db_mode 0)");
    };
    let (_, bytes) = cache.read();
    let mut list: Vec<String> = parse_list(&bytes).into_iter().collect();
    list.sort();
    MiReply::ok(list.into_iter().map(MiNode::value).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openser_core::db::{DbVal, MemDb};

    #[test]
    fn loading_normalises() {
        let mut db = MemDb::with_rows(
            "domain",
            vec![
                vec![("domain", DbVal::from("B.example.com"))],
                vec![("domain", DbVal::from("a.example.com"))],
                vec![("domain", DbVal::from("b.example.com"))],
            ],
        );
        let l = load_domains(&mut db, "domain", "domain").unwrap();
        assert_eq!(l, ["a.example.com", "b.example.com"]);
        let set = parse_list(l.join("\n").as_bytes());
        assert!(set.contains("b.example.com") && set.len() == 2);
        assert!(parse_list(b"").is_empty());
        db.fail = true;
        assert!(load_domains(&mut db, "domain", "domain").is_err());
    }

    #[test]
    fn shared_cache_generations() {
        let _ = shm::init(16 << 20);
        assert!(shm::is_initialized());
        let c = shm::alloc_static(Cache::new()).expect("shm");
        assert_eq!(c.generation(), 0);
        assert_eq!(c.read(), (0, Vec::new()));
        assert!(c.replace(b"a.com\nb.com"));
        assert!(c.replace(b"c.com"));
        let (g, bytes) = c.read();
        assert_eq!(g, 2);
        assert_eq!(parse_list(&bytes), HashSet::from(["c.com".to_string()]));
        assert!(c.replace(b""));
        assert!(parse_list(&c.read().1).is_empty());
    }

    #[test]
    fn exports_table() {
        for p in ["db_url", "db_mode", "domain_table", "domain_col"] {
            assert!(EXPORTS.param(p).is_some(), "{p}");
        }
        assert_eq!(EXPORTS.mi.len(), 2);
        assert_eq!(EXPORTS.cmds.len(), 3);
    }
}
