//! db_sqlite: the SQLite driver of the generic database API (not in OpenSER 1.2; the
//! module name is Kamailio's, so an operator moving between the two writes the same
//! `loadmodule "db_sqlite.so"`).
//!
//! `db_url` `sqlite:///absolute/path/to/openser.db` (or `sqlite://dir/file`, relative
//! to the working directory). The file must exist (`openser_sqlite.sh create` makes
//! it): a typo in the path is a start-up error, not a new empty database.
//!
//! SQLite is compiled into the binary (`rusqlite`'s `bundled`): one known version with
//! the features the driver relies on (WAL, `RETURNING`-free UPSERT-free SQL), nothing
//! to install, and no threads (SQLite starts none unless asked to). Concurrency across
//! the forked processes: each process opens its own connection in `child_init`
//! (`core::db::open_in_child`), the database runs in WAL mode (readers never block the
//! writer), and a writer waits up to `busy_timeout` ms for the write lock before the
//! operation fails — the timeout of every call.
//!
//! Values are always bound; identifiers double-quoted and refused if they hold a quote.
//! DATETIME columns hold local time as text `YYYY-MM-DD HH:MM:SS` (as the SQL servers
//! are sent it), read back as `DbVal::DateTime`.
//!
//! Params: `busy_timeout` (ms, default 5000); `synchronous` (0 OFF, 1 NORMAL — the
//! default: a committed write survives a crash of openser, the last ones may be lost
//! on power loss — 2 FULL, 3 EXTRA).

use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};

use openser_core::db::sql::{self, Dialect, Stmt};
use openser_core::db::{DbConn, DbError, DbUrl, DbVal, Key, Row};
use openser_core::module::{DbDriver, IntParam, ModuleExports, Param};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "db_sqlite",
    params: &[
        Param::uint("busy_timeout", &BUSY_TIMEOUT),
        Param::uint("synchronous", &SYNCHRONOUS),
    ],
    db_drivers: &[DbDriver {
        scheme: "sqlite",
        connect,
    }],
    ..ModuleExports::EMPTY
};

static BUSY_TIMEOUT: IntParam = IntParam::new(5000);
static SYNCHRONOUS: IntParam = IntParam::new(1);

const DIALECT: Dialect = Dialect {
    name: "sqlite",
    quote: '"',
    numbered: false,
};

/// The connector the exports declare for `sqlite://`.
pub fn connect(url: &DbUrl) -> Result<Box<dyn DbConn>, DbError> {
    let busy = Duration::from_millis(BUSY_TIMEOUT.get().max(0) as u64);
    Ok(Box::new(open(&url.file_path(), busy, SYNCHRONOUS.get())?))
}

/// Open the database file `path` (which must exist) in WAL mode.
pub fn open(path: &str, busy_timeout: Duration, synchronous: i64) -> Result<SqliteConn, DbError> {
    let err = |e: rusqlite::Error| DbError(format!("sqlite: cannot open {path}: {e}"));
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(err)?;
    conn.busy_timeout(busy_timeout).map_err(err)?;
    // A double-quoted name is an identifier only: without this, SQLite takes an unknown
    // "column" for a string literal and a typo becomes a silent constant.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DML, false)
        .map_err(err)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DDL, false)
        .map_err(err)?;
    // The journal mode is persistent in the file; setting it needs the write lock once.
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(DbError(format!(
            "sqlite: {path}: cannot switch to WAL mode (journal_mode is {mode})"
        )));
    }
    let sync = match synchronous {
        0 => "OFF",
        2 => "FULL",
        3 => "EXTRA",
        _ => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync}; PRAGMA foreign_keys=OFF;"
    ))
    .map_err(err)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(SqliteConn {
        conn,
        path: path.to_string(),
    })
}

/// A connection to one SQLite database file.
pub struct SqliteConn {
    conn: Connection,
    path: String,
}

/// A bound parameter for `v` (DATETIME as local text).
fn param(v: &DbVal) -> Result<Value, DbError> {
    Ok(match v {
        DbVal::Null => Value::Null,
        DbVal::Int(i) => Value::Integer(*i),
        DbVal::Double(d) => Value::Real(*d),
        DbVal::Str(s) => Value::Text(s.clone()),
        DbVal::Blob(b) => Value::Blob(b.clone()),
        DbVal::DateTime(t) => Value::Text(
            sql::local_datetime(*t)
                .ok_or_else(|| DbError(format!("sqlite: time {t} out of range")))?,
        ),
    })
}

/// How a declared column type reads back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    DateTime,
    Real,
    Other,
}

fn kind(decl: Option<&str>) -> Kind {
    let Some(d) = decl else { return Kind::Other };
    let d = d.to_ascii_lowercase();
    if d.contains("date") || d.contains("time") {
        Kind::DateTime
    } else if d.contains("real")
        || d.contains("floa")
        || d.contains("doub")
        || d.contains("numeric")
        || d.contains("decimal")
    {
        Kind::Real
    } else {
        Kind::Other
    }
}

fn to_dbval(v: ValueRef<'_>, k: Kind) -> DbVal {
    match (v, k) {
        (ValueRef::Null, _) => DbVal::Null,
        (ValueRef::Integer(i), Kind::DateTime) => DbVal::DateTime(i),
        (ValueRef::Integer(i), Kind::Real) => DbVal::Double(i as f64),
        (ValueRef::Integer(i), Kind::Other) => DbVal::Int(i),
        (ValueRef::Real(f), _) => DbVal::Double(f),
        (ValueRef::Text(t), k) => {
            let s = String::from_utf8_lossy(t);
            if k == Kind::DateTime
                && let Some(t) = sql::parse_local_datetime(&s)
            {
                return DbVal::DateTime(t);
            }
            DbVal::Str(s.into_owned())
        }
        (ValueRef::Blob(b), _) => DbVal::Blob(b.to_vec()),
    }
}

impl SqliteConn {
    fn err(&self, what: &str, e: rusqlite::Error) -> DbError {
        DbError(format!("sqlite: {what} on {}: {e}", self.path))
    }

    fn exec(&mut self, what: &str, st: &Stmt) -> Result<u64, DbError> {
        let params = st.params.iter().map(param).collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&dyn ToSql> = params.iter().map(|p| p as &dyn ToSql).collect();
        let mut s = self
            .conn
            .prepare_cached(&st.sql)
            .map_err(|e| self.err(what, e))?;
        let n = s.execute(refs.as_slice()).map_err(|e| self.err(what, e))?;
        Ok(n as u64)
    }

    fn rows(&mut self, what: &str, st: &Stmt, as_text: bool) -> Result<Vec<Row>, DbError> {
        let params = st.params.iter().map(param).collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&dyn ToSql> = params.iter().map(|p| p as &dyn ToSql).collect();
        let mut s = self
            .conn
            .prepare_cached(&st.sql)
            .map_err(|e| self.err(what, e))?;
        let kinds: Vec<Kind> = s.columns().iter().map(|c| kind(c.decl_type())).collect();
        let mut rows = s.query(refs.as_slice()).map_err(|e| self.err(what, e))?;
        let mut out = Vec::new();
        loop {
            let r = match rows.next() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => return Err(DbError(format!("sqlite: {what} on {}: {e}", self.path))),
            };
            let mut row = Vec::with_capacity(kinds.len());
            for (i, k) in kinds.iter().enumerate() {
                let v = r
                    .get_ref(i)
                    .map_err(|e| DbError(format!("sqlite: {what} on {}: {e}", self.path)))?;
                row.push(if as_text {
                    match v {
                        ValueRef::Null => DbVal::Null,
                        ValueRef::Integer(i) => DbVal::Str(i.to_string()),
                        ValueRef::Real(f) => DbVal::Str(f.to_string()),
                        ValueRef::Text(t) | ValueRef::Blob(t) => {
                            DbVal::Str(String::from_utf8_lossy(t).into_owned())
                        }
                    }
                } else {
                    to_dbval(v, *k)
                });
            }
            out.push(row);
        }
        Ok(out)
    }
}

impl DbConn for SqliteConn {
    fn query(
        &mut self,
        table: &str,
        keys: &[Key],
        cols: &[&str],
        order: Option<&str>,
    ) -> Result<Vec<Row>, DbError> {
        let st = DIALECT.select(table, keys, cols, order)?;
        self.rows("query", &st, false)
    }

    fn query_limit(
        &mut self,
        table: &str,
        keys: &[Key],
        cols: &[&str],
        order: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Row>, DbError> {
        let st = DIALECT.select_limit(table, keys, cols, order, limit)?;
        self.rows("query", &st, false)
    }

    fn insert(&mut self, table: &str, vals: &[(&str, DbVal)]) -> Result<(), DbError> {
        let st = DIALECT.insert("INSERT", table, vals)?;
        self.exec("insert", &st).map(drop)
    }

    fn update(&mut self, table: &str, keys: &[Key], set: &[(&str, DbVal)]) -> Result<u64, DbError> {
        let st = DIALECT.update(table, keys, set)?;
        self.exec("update", &st)
    }

    fn delete(&mut self, table: &str, keys: &[Key]) -> Result<u64, DbError> {
        let st = DIALECT.delete(table, keys)?;
        self.exec("delete", &st)
    }

    fn replace(&mut self, table: &str, vals: &[(&str, DbVal)]) -> Result<(), DbError> {
        // SQLite's REPLACE is MySQL's: rows clashing on any unique key are removed first.
        let st = DIALECT.insert("REPLACE", table, vals)?;
        self.exec("replace", &st).map(drop)
    }

    fn raw_query(&mut self, sql: &str) -> Result<Vec<Row>, DbError> {
        let st = Stmt {
            sql: sql.to_string(),
            params: Vec::new(),
        };
        let has_cols = self
            .conn
            .prepare(sql)
            .map(|s| s.column_count() > 0)
            .map_err(|e| self.err("raw query", e))?;
        if has_cols {
            self.rows("raw query", &st, true)
        } else {
            self.conn
                .execute_batch(sql)
                .map_err(|e| self.err("raw query", e))?;
            Ok(Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert!(kind(Some("DATETIME")) == Kind::DateTime);
        assert!(kind(Some("timestamp")) == Kind::DateTime);
        assert!(kind(Some("FLOAT(10,2)")) == Kind::Real);
        assert!(kind(Some("varchar(64)")) == Kind::Other);
        assert!(kind(None) == Kind::Other);
        assert_eq!(
            to_dbval(ValueRef::Integer(3), Kind::Real),
            DbVal::Double(3.0)
        );
        assert_eq!(
            to_dbval(ValueRef::Text(b"x"), Kind::DateTime),
            DbVal::Str("x".into())
        );
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = open("/nonexistent-dir/x.db", Duration::from_millis(10), 1)
            .err()
            .unwrap();
        assert!(e.0.contains("cannot open"), "{e}");
    }
}
