//! The generic database API (OpenSER's `db_func_t` / `bind_dbmod`): typed values, keys
//! with operators, and the five operations modules use (`query`, `insert`, `update`,
//! `delete`, `replace`). A driver module (`mysql`) declares the connector for its URL
//! scheme in its exports (`db_drivers`); users (usrloc, auth_db, acc) open their
//! `db_url` in `child_init` with [`open_in_child`] and work through [`with_conn`], so
//! every process has its own connection (never shared across fork), one per URL, with
//! the reconnect policy in one place. The attendant may open a short-lived connection in `mod_init` (a table
//! version check, usrloc preload) and must drop it before the fork.

use std::cell::RefCell;
use std::fmt;
use std::time::{Duration, Instant};

pub mod sql;

/// OpenSER 1.2's default `db_url` of the modules that only read (read-only user).
pub const DEFAULT_RO_URL: &str = "mysql://openserro:openserro@localhost/openser";

/// A column value.
#[derive(Clone, Debug, PartialEq)]
pub enum DbVal {
    Null,
    Int(i64),
    Double(f64),
    Str(String),
    /// A DATETIME column as seconds since the epoch (local time, as OpenSER stores it).
    DateTime(i64),
    Blob(Vec<u8>),
}

impl DbVal {
    /// The value as text (`None` for NULL; numbers formatted).
    pub fn as_str(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match self {
            DbVal::Null => None,
            DbVal::Int(i) => Some(Cow::Owned(i.to_string())),
            DbVal::Double(d) => Some(Cow::Owned(d.to_string())),
            DbVal::Str(s) => Some(Cow::Borrowed(s)),
            DbVal::DateTime(t) => Some(Cow::Owned(t.to_string())),
            DbVal::Blob(b) => Some(String::from_utf8_lossy(b)),
        }
    }
    /// The value as an integer (text is parsed; `None` for NULL or non-numbers).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            DbVal::Int(i) | DbVal::DateTime(i) => Some(*i),
            DbVal::Double(d) => Some(*d as i64),
            DbVal::Str(s) => s.trim().parse().ok(),
            DbVal::Blob(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
            DbVal::Null => None,
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self, DbVal::Null)
    }
}

impl From<&str> for DbVal {
    fn from(s: &str) -> DbVal {
        DbVal::Str(s.to_string())
    }
}
impl From<String> for DbVal {
    fn from(s: String) -> DbVal {
        DbVal::Str(s)
    }
}
impl From<i64> for DbVal {
    fn from(i: i64) -> DbVal {
        DbVal::Int(i)
    }
}
impl From<i32> for DbVal {
    fn from(i: i32) -> DbVal {
        DbVal::Int(i.into())
    }
}

/// Comparison operator of a key (OpenSER's `OP_EQ` ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

impl Op {
    pub fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Ge => ">=",
        }
    }
}

/// A `WHERE` term: column, operator, value. Terms are joined with AND.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub col: String,
    pub op: Op,
    pub val: DbVal,
}

impl Key {
    pub fn eq(col: &str, val: impl Into<DbVal>) -> Key {
        Key {
            col: col.to_string(),
            op: Op::Eq,
            val: val.into(),
        }
    }
    pub fn op(col: &str, op: Op, val: impl Into<DbVal>) -> Key {
        Key {
            col: col.to_string(),
            op,
            val: val.into(),
        }
    }
}

/// One result row: values in the order of the requested columns.
pub type Row = Vec<DbVal>;

/// A database failure: connection lost/refused, bad query, timeout...
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbError(pub String);

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

/// A connection to one database (one per process). Column and table names are
/// identifiers from the configuration (quoted by the driver); values are always bound
/// or escaped by the driver, never pasted.
pub trait DbConn: Send {
    /// `SELECT cols FROM table WHERE keys [ORDER BY order]`; empty `cols` = `*`.
    fn query(
        &mut self,
        table: &str,
        keys: &[Key],
        cols: &[&str],
        order: Option<&str>,
    ) -> Result<Vec<Row>, DbError>;
    /// `INSERT INTO table (cols) VALUES (vals)`.
    fn insert(&mut self, table: &str, vals: &[(&str, DbVal)]) -> Result<(), DbError>;
    /// `UPDATE table SET set WHERE keys`; returns the number of rows matched (whether or
    /// not their values changed: every driver counts the same way).
    fn update(&mut self, table: &str, keys: &[Key], set: &[(&str, DbVal)]) -> Result<u64, DbError>;
    /// `DELETE FROM table WHERE keys` (all rows when `keys` is empty); rows deleted.
    fn delete(&mut self, table: &str, keys: &[Key]) -> Result<u64, DbError>;
    /// `REPLACE INTO table (cols) VALUES (vals)`.
    fn replace(&mut self, table: &str, vals: &[(&str, DbVal)]) -> Result<(), DbError>;
    /// A raw statement (schema checks, tests). Rows as text values.
    fn raw_query(&mut self, sql: &str) -> Result<Vec<Row>, DbError>;
    /// [`DbConn::query`] returning at most `limit` rows (`LIMIT`), for reading a big
    /// table in pages (usrloc's start-up load, 1.2's `fetch_rows`). The default asks
    /// for everything and keeps the first `limit` rows; drivers send the limit.
    fn query_limit(
        &mut self,
        table: &str,
        keys: &[Key],
        cols: &[&str],
        order: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Row>, DbError> {
        let mut rows = self.query(table, keys, cols, order)?;
        rows.truncate(limit);
        Ok(rows)
    }
}

/// A parsed `db_url`: `scheme://[user[:password]@]host[:port]/database`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbUrl {
    pub scheme: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub database: String,
}

impl DbUrl {
    pub fn parse(url: &str) -> Result<DbUrl, DbError> {
        let bad = |w: &str| DbError(format!("bad db_url '{url}': {w}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("missing '://'"))?;
        if scheme.is_empty() {
            return Err(bad("empty scheme"));
        }
        // The file form of the file-based drivers (`sqlite:///var/db/openser.db`,
        // `dbtext:///var/dbtext`): no host, the database is the absolute path.
        if rest.starts_with('/') {
            if rest.len() < 2 {
                return Err(bad("empty path"));
            }
            return Ok(DbUrl {
                scheme: scheme.to_string(),
                user: None,
                password: None,
                host: String::new(),
                port: None,
                database: rest.to_string(),
            });
        }
        let (auth_host, database) = rest
            .rsplit_once('/')
            .ok_or_else(|| bad("missing '/database'"))?;
        if database.is_empty() {
            return Err(bad("empty database name"));
        }
        let (auth, hostport) = match auth_host.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, auth_host),
        };
        let (user, password) = match auth {
            None => (None, None),
            Some(a) => match a.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (Some(a.to_string()), None),
            },
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
                let port = p.parse::<u16>().map_err(|_| bad("bad port"))?;
                (h.to_string(), Some(port))
            }
            _ => (hostport.to_string(), None),
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        Ok(DbUrl {
            scheme: scheme.to_string(),
            user,
            password,
            host,
            port,
            database: database.to_string(),
        })
    }
}

impl DbUrl {
    /// For the file-based drivers: the path the URL names, `database` for the
    /// absolute form (`scheme:///path`), `host/database` for a relative one
    /// (`scheme://dir/file`).
    pub fn file_path(&self) -> String {
        if self.host.is_empty() {
            self.database.clone()
        } else {
            format!("{}/{}", self.host, self.database)
        }
    }
}

/// A driver's connector: open a connection for a parsed URL.
pub type Connector = fn(&DbUrl) -> Result<Box<dyn DbConn>, DbError>;

/// The driver for `url`'s scheme among the loaded modules' declared drivers. As
/// OpenSER's `bind_dbmod`, a driver module that is not loaded is a start-up error of
/// the module that needs it, naming the module to load.
pub fn check_url(url: &str) -> Result<(DbUrl, Connector), DbError> {
    let u = DbUrl::parse(url)?;
    match crate::module::find_db_driver(&u.scheme) {
        Ok(c) => Ok((u, c)),
        Err(Some(module)) => Err(DbError(format!(
            "db_url '{url}' needs module \"{module}\", which is not loaded"
        ))),
        Err(None) => Err(DbError(format!(
            "no database driver for '{}://' in db_url '{url}'",
            u.scheme
        ))),
    }
}

/// Open a connection to `url` with its scheme's driver (a short-lived one in the
/// attendant; processes use [`with_conn`]).
pub fn connect(url: &str) -> Result<Box<dyn DbConn>, DbError> {
    let (u, c) = check_url(url)?;
    c(&u)
}

/// After a failed connect, the next attempt for the same URL waits this long: during
/// an outage a worker fails fast instead of paying a connect timeout per request.
const RETRY_AFTER: Duration = Duration::from_secs(1);

struct ProcConn {
    url: String,
    conn: Option<Box<dyn DbConn>>,
    failed_at: Option<Instant>,
}

thread_local! {
    /// This process's connections, one per `db_url` (as 1.2's connection pool shares
    /// one connection among the modules of a process that use the same URL).
    static CONNS: RefCell<Vec<ProcConn>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` on this process's connection to `url`, opening it if there is none (a
/// failed attempt is retried at most every [`RETRY_AFTER`]). The connection is never
/// shared across fork: open it in `child_init` with [`open_in_child`].
pub fn with_conn<T>(url: &str, f: impl FnOnce(&mut dyn DbConn) -> T) -> Result<T, DbError> {
    // A query waits on another process: let the other receivers read meanwhile.
    crate::transport::turn::let_others_read();
    // Take the connection out while `f` runs, so a nested call cannot alias it.
    let taken = CONNS.with(|c| {
        let mut c = c.borrow_mut();
        match c.iter_mut().find(|p| p.url == url) {
            Some(p) => match p.conn.take() {
                Some(conn) => Ok(Some(conn)),
                None if p.failed_at.is_some_and(|t| t.elapsed() < RETRY_AFTER) => Err(DbError(
                    format!("no connection to {} (retried shortly)", redact(url)),
                )),
                None => Ok(None),
            },
            None => {
                c.push(ProcConn {
                    url: url.to_string(),
                    conn: None,
                    failed_at: None,
                });
                Ok(None)
            }
        }
    })?;
    let mut conn = match taken {
        Some(c) => c,
        None => match connect(url) {
            Ok(c) => c,
            Err(e) => {
                set_conn(url, None, Some(Instant::now()));
                return Err(e);
            }
        },
    };
    let r = f(conn.as_mut());
    set_conn(url, Some(conn), None);
    Ok(r)
}

fn set_conn(url: &str, conn: Option<Box<dyn DbConn>>, failed_at: Option<Instant>) {
    CONNS.with(|c| {
        if let Some(p) = c.borrow_mut().iter_mut().find(|p| p.url == url) {
            p.conn = conn;
            p.failed_at = failed_at;
        }
    });
}

/// `child_init`: open this process's connection to `url` now. A failure is logged
/// for `module` and is not fatal: [`with_conn`] tries again at first use.
pub fn open_in_child(module: &str, url: &str) {
    if let Err(e) = with_conn(url, |_| ()) {
        crate::log_err!("{module}: can't connect to the database: {e}");
    }
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let cred = &url[s + 3..at];
            match cred.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// An in-memory `DbConn` for unit tests of the modules that use the DB API: inserted
/// rows in order (table, columns), `query` filtered by `=` keys over them (a table
/// without rows is an error, as a missing table is), every query recorded, and `fail`
/// to make queries fail like a lost connection. Other operations are not supported.
#[cfg(any(test, feature = "test-util"))]
#[derive(Default)]
pub struct MemDb {
    pub rows: Vec<(String, Vec<(String, DbVal)>)>,
    pub fail: bool,
    pub queries: Vec<(String, Vec<Key>, Vec<String>)>,
}

#[cfg(any(test, feature = "test-util"))]
impl MemDb {
    /// A table `table` holding `rows`.
    pub fn with_rows(table: &str, rows: Vec<Vec<(&str, DbVal)>>) -> MemDb {
        let mut m = MemDb::default();
        for r in rows {
            let _ = m.insert(table, &r);
        }
        m
    }
}

#[cfg(any(test, feature = "test-util"))]
impl DbConn for MemDb {
    fn query(
        &mut self,
        table: &str,
        keys: &[Key],
        cols: &[&str],
        _order: Option<&str>,
    ) -> Result<Vec<Row>, DbError> {
        self.queries.push((
            table.to_string(),
            keys.to_vec(),
            cols.iter().map(|c| c.to_string()).collect(),
        ));
        if self.fail {
            return Err(DbError("connection lost".into()));
        }
        if !self.rows.iter().any(|(t, _)| t == table) {
            return Err(DbError(format!("no table {table}")));
        }
        let get =
            |r: &[(String, DbVal)], c: &str| r.iter().find(|(n, _)| n == c).map(|(_, v)| v.clone());
        let mut out = Vec::new();
        for (_, r) in self.rows.iter().filter(|(t, _)| t == table) {
            let hit = keys.iter().all(|k| {
                assert_eq!(k.op, Op::Eq, "MemDb matches = keys only");
                get(r, &k.col).as_ref() == Some(&k.val)
            });
            if hit {
                let row: Option<Row> = cols.iter().map(|c| get(r, c)).collect();
                out.push(row.ok_or_else(|| DbError("unknown column".into()))?);
            }
        }
        Ok(out)
    }
    fn insert(&mut self, table: &str, vals: &[(&str, DbVal)]) -> Result<(), DbError> {
        self.rows.push((
            table.to_string(),
            vals.iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect(),
        ));
        Ok(())
    }
    fn update(&mut self, _: &str, _: &[Key], _: &[(&str, DbVal)]) -> Result<u64, DbError> {
        Err(DbError("not supported".into()))
    }
    fn delete(&mut self, _: &str, _: &[Key]) -> Result<u64, DbError> {
        Err(DbError("not supported".into()))
    }
    fn replace(&mut self, _: &str, _: &[(&str, DbVal)]) -> Result<(), DbError> {
        Err(DbError("not supported".into()))
    }
    fn raw_query(&mut self, _: &str) -> Result<Vec<Row>, DbError> {
        Err(DbError("not supported".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        let u = DbUrl::parse("mysql://openser:openserrw@localhost/openser").unwrap();
        assert_eq!(u.scheme, "mysql");
        assert_eq!(u.user.as_deref(), Some("openser"));
        assert_eq!(u.password.as_deref(), Some("openserrw"));
        assert_eq!(u.host, "localhost");
        assert_eq!(u.port, None);
        assert_eq!(u.database, "openser");
        let u = DbUrl::parse("mysql://u@127.0.0.1:3307/db").unwrap();
        assert_eq!(
            (u.user.as_deref(), u.password, u.host.as_str(), u.port),
            (Some("u"), None, "127.0.0.1", Some(3307))
        );
        let u = DbUrl::parse("mysql://h/db").unwrap();
        assert_eq!((u.user, u.host.as_str()), (None, "h"));
        let u = DbUrl::parse("sqlite:///var/lib/openser/db.sqlite").unwrap();
        assert_eq!(
            (u.host.as_str(), u.database.as_str()),
            ("", "/var/lib/openser/db.sqlite")
        );
        assert_eq!(u.file_path(), "/var/lib/openser/db.sqlite");
        assert_eq!(
            DbUrl::parse("dbtext://db/text").unwrap().file_path(),
            "db/text"
        );
        for bad in [
            "sqlite://",
            "sqlite:///",
            "mysql:/h/db",
            "mysql://h/",
            "mysql://h",
            "://h/db",
            "mysql://u:p@h:x/db",
            "mysql://u:p@/db",
        ] {
            assert!(DbUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values() {
        assert_eq!(DbVal::Str(" 42 ".into()).as_int(), Some(42));
        assert_eq!(DbVal::Null.as_str(), None);
        assert_eq!(DbVal::Int(7).as_str().as_deref(), Some("7"));
        assert!(DbVal::Null.is_null());
    }

    #[test]
    fn unknown_scheme_is_an_error() {
        let e = connect("nosuchdb://h/db").err().unwrap();
        assert!(e.0.contains("nosuchdb"), "{e}");
    }
}
