//! mysql: the MySQL/MariaDB driver of the generic database API (reference §8.11).
//!
//! `db_url` `mysql://user:password@host[:port]/database`. Host `localhost` means the
//! server's Unix socket (`$MYSQL_UNIX_PORT`, else `/var/run/mysqld/mysqld.sock`, as
//! libmysqlclient does); any other host is TCP (port 3306 by default). Connections are
//! opened by the users of the API (`core::db::connect`) in `child_init`, one per process;
//! this module opens none itself and the `mysql` crate starts no threads for a plain
//! `Conn`.
//!
//! Every statement is a prepared statement with the values bound as parameters;
//! identifiers (tables, columns) are quoted with backticks and refused if they contain
//! one. DATETIME values are converted with the process's local time zone in both
//! directions (`localtime_r` / `mktime`, as OpenSER 1.2's `time2str`/`str2time` do).
//!
//! Params: `ping_interval` (s, default 300): ping the server before an operation when
//! the connection was idle longer; `auto_reconnect` (default 1): when the connection is
//! lost, reconnect once and retry the operation. With `auto_reconnect` 0 a lost
//! connection stays lost (every later operation fails), as with libmysqlclient.
//!
//! Bounded waits (not in 1.2, whose libmysqlclient used its own defaults): every
//! connect gives up after `connect_timeout` seconds (default 5) and every read or
//! write on the connection after `rw_timeout` seconds (default 10), so a worker never
//! waits on a dead or hung server longer than that. A failed reconnect is not retried
//! at once: the next attempt waits 1 s, doubling after each further failure up to
//! `reconnect_max_delay` seconds (default 8); meanwhile operations fail at once (the
//! caller answers 500) instead of every request of every process paying a connect
//! attempt — no reconnect storm against a database node that is down. The delay is
//! per connection, so per process. The first successful reconnect resets it.

use std::time::{Duration, Instant};

use mysql_client::consts::ColumnType;
use mysql_client::prelude::Queryable;
use mysql_client::{Column, Conn, Opts, OptsBuilder, Params, Value};

use openser_core::db::{DbConn, DbError, DbUrl, DbVal, Key, Op, Row};
use openser_core::module::{BoolParam, DbDriver, IntParam, ModuleExports, Param};
use openser_core::sys;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "mysql",
    params: &[
        Param::uint("ping_interval", &PING_INTERVAL),
        Param::bool("auto_reconnect", &AUTO_RECONNECT),
        Param::uint("connect_timeout", &CONNECT_TIMEOUT_S),
        Param::uint("rw_timeout", &RW_TIMEOUT_S),
        Param::uint("reconnect_max_delay", &RECONNECT_MAX_DELAY),
    ],
    db_drivers: &[DbDriver {
        scheme: "mysql",
        connect,
    }],
    ..ModuleExports::EMPTY
};

/// libmysqlclient's default socket path (Debian's MariaDB/MySQL packages).
pub const DEFAULT_SOCKET: &str = "/var/run/mysqld/mysqld.sock";
/// Default TCP port.
pub const DEFAULT_PORT: u16 = 3306;
/// Default connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default read and write timeout of every operation.
pub const RW_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait after a failed reconnect (then doubled up to `reconnect_max_delay`).
pub const RECONNECT_MIN_DELAY: Duration = Duration::from_secs(1);

static PING_INTERVAL: IntParam = IntParam::new(300);
static AUTO_RECONNECT: BoolParam = BoolParam::new(true);
static CONNECT_TIMEOUT_S: IntParam = IntParam::new(5);
static RW_TIMEOUT_S: IntParam = IntParam::new(10);
static RECONNECT_MAX_DELAY: IntParam = IntParam::new(8);

/// Per-connection behaviour (from the module parameters unless given explicitly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Ping before use when idle longer than this (0 = never ping).
    pub ping_interval: Duration,
    /// Reconnect once and retry when the connection is lost.
    pub auto_reconnect: bool,
    /// Connect timeout (at least 1 s).
    pub connect_timeout: Duration,
    /// Read and write timeout of each operation (at least 1 s).
    pub rw_timeout: Duration,
    /// Longest wait between two reconnect attempts after failures.
    pub reconnect_max_delay: Duration,
}

impl Default for Settings {
    /// The parameters' defaults.
    fn default() -> Settings {
        Settings {
            ping_interval: Duration::from_secs(300),
            auto_reconnect: true,
            connect_timeout: CONNECT_TIMEOUT,
            rw_timeout: RW_TIMEOUT,
            reconnect_max_delay: Duration::from_secs(8),
        }
    }
}

impl Settings {
    /// The values of the module parameters `ping_interval` and `auto_reconnect`.
    pub fn from_params() -> Settings {
        Settings {
            ping_interval: Duration::from_secs(PING_INTERVAL.get().max(0) as u64),
            auto_reconnect: AUTO_RECONNECT.get(),
            connect_timeout: secs_at_least_1(CONNECT_TIMEOUT_S.get()),
            rw_timeout: secs_at_least_1(RW_TIMEOUT_S.get()),
            reconnect_max_delay: Duration::from_secs(RECONNECT_MAX_DELAY.get().max(0) as u64),
        }
    }
}

fn secs_at_least_1(v: i64) -> Duration {
    Duration::from_secs(v.max(1) as u64)
}

/// The connector the exports declare for `mysql://`.
pub fn connect(url: &DbUrl) -> Result<Box<dyn DbConn>, DbError> {
    Ok(Box::new(connect_with(url, Settings::from_params())?))
}

/// Open a connection with explicit settings.
pub fn connect_with(url: &DbUrl, settings: Settings) -> Result<MysqlConn, DbError> {
    connect_at(
        url,
        std::env::var("MYSQL_UNIX_PORT").ok().as_deref(),
        settings,
    )
}

/// Open a connection, `unix_port` standing in for `$MYSQL_UNIX_PORT` (the socket used
/// for host `localhost`).
pub fn connect_at(
    url: &DbUrl,
    unix_port: Option<&str>,
    settings: Settings,
) -> Result<MysqlConn, DbError> {
    if url.host.is_empty() {
        return Err(DbError(format!(
            "mysql: db_url needs a host: {}",
            url.database
        )));
    }
    let opts = opts_for(url, unix_port, &settings);
    let label = label(url);
    let conn = open(&opts, &label)?;
    Ok(MysqlConn {
        opts,
        label,
        settings,
        conn: Some(conn),
        last_use: Instant::now(),
        retry_at: None,
        delay: Duration::ZERO,
    })
}

/// Where a connection goes: the Unix socket path or (host, port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Socket(String),
    Tcp(String, u16),
}

/// Host `localhost` is the Unix socket (`unix_port` = `$MYSQL_UNIX_PORT` if set and
/// not empty, else [`DEFAULT_SOCKET`]); anything else TCP, brackets of an IPv6 literal
/// removed.
pub fn target(url: &DbUrl, unix_port: Option<&str>) -> Target {
    if url.host == "localhost" {
        let s = unix_port
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_SOCKET);
        return Target::Socket(s.to_string());
    }
    let h = url
        .host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(&url.host);
    Target::Tcp(h.to_string(), url.port.unwrap_or(DEFAULT_PORT))
}

fn opts_for(url: &DbUrl, unix_port: Option<&str>, st: &Settings) -> Opts {
    let b = OptsBuilder::new()
        .user(url.user.clone())
        .pass(url.password.clone())
        .db_name(Some(url.database.clone()))
        .prefer_socket(false)
        .tcp_connect_timeout(Some(st.connect_timeout))
        .read_timeout(Some(st.rw_timeout))
        .write_timeout(Some(st.rw_timeout))
        .stmt_cache_size(64usize)
        // `update` counts the rows matched, not only those whose values changed: the
        // same count as the other drivers, and a refresh that rewrites identical values
        // is not mistaken for a missing row (usrloc inserts when an update finds none).
        .additional_capabilities(mysql_client::consts::CapabilityFlags::CLIENT_FOUND_ROWS);
    let b = match target(url, unix_port) {
        Target::Socket(s) => b.socket(Some(s)),
        Target::Tcp(h, p) => b.ip_or_hostname(Some(h)).tcp_port(p),
    };
    b.into()
}

/// The URL without its password, for messages.
fn label(url: &DbUrl) -> String {
    let user = url
        .user
        .as_deref()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let port = url.port.map(|p| format!(":{p}")).unwrap_or_default();
    format!("mysql://{user}{}{port}/{}", url.host, url.database)
}

fn open(opts: &Opts, label: &str) -> Result<Conn, DbError> {
    Conn::new(opts.clone()).map_err(|e| DbError(format!("mysql: cannot connect to {label}: {e}")))
}

/// Whether `e` means the connection is unusable (lost, closed, timed out).
fn connection_lost(e: &mysql_client::Error) -> bool {
    use mysql_client::{DriverError, Error};
    match e {
        Error::IoError(_) | Error::CodecError(_) => true,
        Error::DriverError(d) => !matches!(
            d,
            DriverError::MismatchedStmtParams(..)
                | DriverError::Params(_)
                | DriverError::MixedParams
        ),
        // 1053 server shutdown, 1927 connection killed (MariaDB), 2006 gone away,
        // 2013 lost during query, 4031 disconnected for inactivity (MySQL 8).
        Error::MySqlError(m) => matches!(m.code, 1053 | 1927 | 2006 | 2013 | 4031),
        _ => false,
    }
}

/// A connection to one MySQL/MariaDB database.
pub struct MysqlConn {
    opts: Opts,
    label: String,
    settings: Settings,
    /// `None` after the connection was lost (and not reopened).
    conn: Option<Conn>,
    last_use: Instant,
    /// After a failed reconnect: no new attempt before this instant.
    retry_at: Option<Instant>,
    /// The current wait between reconnect attempts (zero after a success).
    delay: Duration,
}

impl MysqlConn {
    /// Run a SELECT with bound parameters; rows as DB values.
    fn select(&mut self, sql: String, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        self.run("query", |c| {
            let res = c.exec_iter(sql.as_str(), params_of(&params))?;
            let mut rows = Vec::new();
            for r in res {
                let r = r?;
                let cols = r.columns();
                let vals = r.unwrap();
                rows.push(
                    vals.into_iter()
                        .zip(cols.iter())
                        .map(|(v, col)| to_dbval(v, col))
                        .collect(),
                );
            }
            Ok(rows)
        })
    }

    /// Reconnect, unless a failed attempt was too recent (then fail at once); a
    /// failure doubles the wait before the next attempt, up to `reconnect_max_delay`.
    fn reopen(&mut self, what: &str) -> Result<(), DbError> {
        let now = Instant::now();
        if let Some(t) = self.retry_at
            && now < t
        {
            return Err(DbError(format!(
                "mysql: {what} on {}: no connection (next reconnect in {} ms)",
                self.label,
                (t - now).as_millis()
            )));
        }
        match open(&self.opts, &self.label) {
            Ok(c) => {
                if !self.delay.is_zero() {
                    openser_core::log_notice!("mysql: reconnected to {}", self.label);
                }
                self.conn = Some(c);
                self.retry_at = None;
                self.delay = Duration::ZERO;
                Ok(())
            }
            Err(e) => {
                self.delay = next_delay(self.delay, self.settings.reconnect_max_delay);
                self.retry_at = Some(Instant::now() + self.delay);
                Err(e)
            }
        }
    }

    /// The server's id of this connection (`CONNECTION_ID()`), if connected.
    pub fn connection_id(&self) -> Option<u32> {
        self.conn.as_ref().map(|c| c.connection_id())
    }

    fn err(&self, what: &str, e: &mysql_client::Error) -> DbError {
        DbError(format!("mysql: {what} on {}: {e}", self.label))
    }

    /// Run `f` on the connection: ping first when idle longer than `ping_interval`;
    /// when the connection is lost and `auto_reconnect` is on, reconnect once and run
    /// `f` again.
    fn run<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&mut Conn) -> Result<T, mysql_client::Error>,
    ) -> Result<T, DbError> {
        let reconnect = self.settings.auto_reconnect;
        let idle = self.last_use.elapsed();
        self.last_use = Instant::now();
        if let Some(c) = self.conn.as_mut()
            && !self.settings.ping_interval.is_zero()
            && idle > self.settings.ping_interval
            && c.ping().is_err()
        {
            self.conn = None;
        }
        let mut retried = false;
        loop {
            if self.conn.is_none() {
                if !reconnect {
                    return Err(DbError(format!(
                        "mysql: {what} on {}: connection lost (auto_reconnect is off)",
                        self.label
                    )));
                }
                self.reopen(what)?;
                retried = true;
            }
            let Some(c) = self.conn.as_mut() else {
                continue;
            };
            match f(c) {
                Ok(v) => return Ok(v),
                Err(e) if connection_lost(&e) => {
                    self.conn = None;
                    if !reconnect || retried {
                        return Err(self.err(what, &e));
                    }
                    openser_core::log_warn!(
                        "mysql: connection to {} lost ({e}), reconnecting",
                        self.label
                    );
                }
                Err(e) => return Err(self.err(what, &e)),
            }
        }
    }
}

/// The wait after a failed reconnect when the previous wait was `prev`: 1 s first,
/// then doubled, never above `max`.
pub fn next_delay(prev: Duration, max: Duration) -> Duration {
    let d = if prev.is_zero() {
        RECONNECT_MIN_DELAY
    } else {
        prev * 2
    };
    d.min(max)
}

/// `` `name` `` for an identifier; refused when empty or containing a backtick or NUL.
pub fn quote_ident(name: &str) -> Result<String, DbError> {
    if name.is_empty() || name.contains('`') || name.contains('\0') {
        return Err(DbError(format!("mysql: invalid identifier '{name}'")));
    }
    Ok(format!("`{name}`"))
}

/// `ORDER BY` argument: a column name, optionally followed by `ASC` or `DESC`.
fn order_clause(order: &str) -> Result<String, DbError> {
    let mut it = order.split_whitespace();
    let col = it
        .next()
        .ok_or_else(|| DbError("mysql: empty order".into()))?;
    let dir = match it.next() {
        None => "",
        Some(d) if d.eq_ignore_ascii_case("asc") => " ASC",
        Some(d) if d.eq_ignore_ascii_case("desc") => " DESC",
        Some(d) => return Err(DbError(format!("mysql: invalid order direction '{d}'"))),
    };
    if it.next().is_some() {
        return Err(DbError(format!("mysql: invalid order '{order}'")));
    }
    Ok(format!(" ORDER BY {}{dir}", quote_ident(col)?))
}

/// A bound parameter for `v` (DATETIME as local 'YYYY-MM-DD HH:MM:SS').
fn param(v: &DbVal) -> Result<Value, DbError> {
    Ok(match v {
        DbVal::Null => Value::NULL,
        DbVal::Int(i) => Value::Int(*i),
        DbVal::Double(d) => Value::Double(*d),
        DbVal::Str(s) => Value::Bytes(s.as_bytes().to_vec()),
        DbVal::Blob(b) => Value::Bytes(b.clone()),
        DbVal::DateTime(t) => {
            let (y, mo, d, h, mi, s) = sys::local_time(*t)
                .ok_or_else(|| DbError(format!("mysql: time {t} out of range")))?;
            let y =
                u16::try_from(y).map_err(|_| DbError(format!("mysql: time {t} out of range")))?;
            Value::Date(y, mo as u8, d as u8, h as u8, mi as u8, s as u8, 0)
        }
    })
}

/// `WHERE` clause and its parameters (empty when there are no keys). NULL compares with
/// `IS NULL` / `IS NOT NULL` for `Eq` / `Ne`.
fn where_clause(keys: &[Key], params: &mut Vec<Value>) -> Result<String, DbError> {
    let mut sql = String::new();
    for (i, k) in keys.iter().enumerate() {
        sql.push_str(if i == 0 { " WHERE " } else { " AND " });
        sql.push_str(&quote_ident(&k.col)?);
        match (&k.val, k.op) {
            (DbVal::Null, Op::Eq) => sql.push_str(" IS NULL"),
            (DbVal::Null, Op::Ne) => sql.push_str(" IS NOT NULL"),
            (v, op) => {
                sql.push(' ');
                sql.push_str(op.sql());
                sql.push_str(" ?");
                params.push(param(v)?);
            }
        }
    }
    Ok(sql)
}

/// `SELECT` statement and parameters.
pub fn select_sql(
    table: &str,
    keys: &[Key],
    cols: &[&str],
    order: Option<&str>,
) -> Result<(String, Vec<Value>), DbError> {
    let mut params = Vec::new();
    let cols = if cols.is_empty() {
        "*".to_string()
    } else {
        cols.iter()
            .map(|c| quote_ident(c))
            .collect::<Result<Vec<_>, _>>()?
            .join(",")
    };
    let mut sql = format!("SELECT {cols} FROM {}", quote_ident(table)?);
    sql.push_str(&where_clause(keys, &mut params)?);
    if let Some(o) = order {
        sql.push_str(&order_clause(o)?);
    }
    Ok((sql, params))
}

/// `INSERT` or `REPLACE` statement and parameters.
pub fn insert_sql(
    verb: &str,
    table: &str,
    vals: &[(&str, DbVal)],
) -> Result<(String, Vec<Value>), DbError> {
    if vals.is_empty() {
        return Err(DbError(format!(
            "mysql: {verb} into {table} without values"
        )));
    }
    let cols = vals
        .iter()
        .map(|(c, _)| quote_ident(c))
        .collect::<Result<Vec<_>, _>>()?
        .join(",");
    let marks = vec!["?"; vals.len()].join(",");
    let params = vals
        .iter()
        .map(|(_, v)| param(v))
        .collect::<Result<_, _>>()?;
    Ok((
        format!(
            "{verb} INTO {} ({cols}) VALUES ({marks})",
            quote_ident(table)?
        ),
        params,
    ))
}

/// `UPDATE` statement and parameters.
pub fn update_sql(
    table: &str,
    keys: &[Key],
    set: &[(&str, DbVal)],
) -> Result<(String, Vec<Value>), DbError> {
    if set.is_empty() {
        return Err(DbError(format!("mysql: update of {table} without values")));
    }
    let mut params = Vec::new();
    let mut sql = format!("UPDATE {} SET ", quote_ident(table)?);
    for (i, (c, v)) in set.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&quote_ident(c)?);
        sql.push_str("=?");
        params.push(param(v)?);
    }
    sql.push_str(&where_clause(keys, &mut params)?);
    Ok((sql, params))
}

/// `DELETE` statement and parameters.
pub fn delete_sql(table: &str, keys: &[Key]) -> Result<(String, Vec<Value>), DbError> {
    let mut params = Vec::new();
    let mut sql = format!("DELETE FROM {}", quote_ident(table)?);
    sql.push_str(&where_clause(keys, &mut params)?);
    Ok((sql, params))
}

fn params_of(v: &[Value]) -> Params {
    if v.is_empty() {
        Params::Empty
    } else {
        Params::Positional(v.to_vec())
    }
}

/// A value of a binary-protocol row as a `DbVal`, typed by its column.
fn to_dbval(v: Value, col: &Column) -> DbVal {
    match v {
        Value::NULL => DbVal::Null,
        Value::Int(i) => DbVal::Int(i),
        Value::UInt(u) => DbVal::Int(i64::try_from(u).unwrap_or(i64::MAX)),
        // Through the shortest decimal text, so FLOAT 0.8 reads as 0.8, not 0.800000011.
        Value::Float(f) => DbVal::Double(f.to_string().parse().unwrap_or(f64::from(f))),
        Value::Double(d) => DbVal::Double(d),
        Value::Date(y, mo, d, h, mi, s, _) => {
            if y == 0 && mo == 0 && d == 0 {
                // '0000-00-00 00:00:00'
                DbVal::DateTime(0)
            } else {
                match sys::local_mktime(
                    y.into(),
                    mo.into(),
                    d.into(),
                    h.into(),
                    mi.into(),
                    s.into(),
                ) {
                    Some(t) => DbVal::DateTime(t),
                    None => DbVal::Str(format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")),
                }
            }
        }
        Value::Time(neg, days, h, mi, s, _) => {
            let h = u32::from(h) + days * 24;
            DbVal::Str(format!(
                "{}{h:02}:{mi:02}:{s:02}",
                if neg { "-" } else { "" }
            ))
        }
        Value::Bytes(b) => match col.column_type() {
            ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL => {
                let s = String::from_utf8_lossy(&b);
                s.trim()
                    .parse()
                    .map(DbVal::Double)
                    .unwrap_or_else(|_| DbVal::Str(s.into_owned()))
            }
            // character set 63 = binary: BLOB, VARBINARY, BINARY.
            ColumnType::MYSQL_TYPE_BLOB
            | ColumnType::MYSQL_TYPE_TINY_BLOB
            | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
            | ColumnType::MYSQL_TYPE_LONG_BLOB
            | ColumnType::MYSQL_TYPE_VAR_STRING
            | ColumnType::MYSQL_TYPE_STRING
                if col.character_set() == 63 =>
            {
                DbVal::Blob(b)
            }
            _ => match String::from_utf8(b) {
                Ok(s) => DbVal::Str(s),
                Err(e) => DbVal::Blob(e.into_bytes()),
            },
        },
    }
}

impl DbConn for MysqlConn {
    fn query(
        &mut self,
        table: &str,
        keys: &[Key],
        cols: &[&str],
        order: Option<&str>,
    ) -> Result<Vec<Row>, DbError> {
        let (sql, params) = select_sql(table, keys, cols, order)?;
        self.select(sql, params)
    }

    fn query_limit(
        &mut self,
        table: &str,
        keys: &[Key],
        cols: &[&str],
        order: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Row>, DbError> {
        let (mut sql, params) = select_sql(table, keys, cols, order)?;
        sql.push_str(&format!(" LIMIT {limit}"));
        self.select(sql, params)
    }

    fn insert(&mut self, table: &str, vals: &[(&str, DbVal)]) -> Result<(), DbError> {
        let (sql, params) = insert_sql("INSERT", table, vals)?;
        self.run("insert", |c| c.exec_drop(sql.as_str(), params_of(&params)))
    }

    fn update(&mut self, table: &str, keys: &[Key], set: &[(&str, DbVal)]) -> Result<u64, DbError> {
        let (sql, params) = update_sql(table, keys, set)?;
        self.run("update", |c| {
            c.exec_drop(sql.as_str(), params_of(&params))?;
            Ok(c.affected_rows())
        })
    }

    fn delete(&mut self, table: &str, keys: &[Key]) -> Result<u64, DbError> {
        let (sql, params) = delete_sql(table, keys)?;
        self.run("delete", |c| {
            c.exec_drop(sql.as_str(), params_of(&params))?;
            Ok(c.affected_rows())
        })
    }

    fn replace(&mut self, table: &str, vals: &[(&str, DbVal)]) -> Result<(), DbError> {
        let (sql, params) = insert_sql("REPLACE", table, vals)?;
        self.run("replace", |c| c.exec_drop(sql.as_str(), params_of(&params)))
    }

    fn raw_query(&mut self, sql: &str) -> Result<Vec<Row>, DbError> {
        self.run("raw query", |c| {
            let mut rows = Vec::new();
            let mut res = c.query_iter(sql)?;
            while let Some(set) = res.iter() {
                for r in set {
                    let r = r?;
                    rows.push(
                        r.unwrap()
                            .into_iter()
                            .map(|v| match v {
                                Value::NULL => DbVal::Null,
                                Value::Bytes(b) => {
                                    DbVal::Str(String::from_utf8_lossy(&b).into_owned())
                                }
                                other => DbVal::Str(other.as_sql(true)),
                            })
                            .collect(),
                    );
                }
            }
            Ok(rows)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> DbUrl {
        DbUrl::parse(s).unwrap()
    }

    #[test]
    fn localhost_is_the_socket() {
        let u = url("mysql://a:b@localhost/openser");
        assert_eq!(target(&u, None), Target::Socket(DEFAULT_SOCKET.into()));
        assert_eq!(target(&u, Some("")), Target::Socket(DEFAULT_SOCKET.into()));
        assert_eq!(target(&u, Some("/tmp/s")), Target::Socket("/tmp/s".into()));
        let u = url("mysql://a:b@127.0.0.1/openser");
        assert_eq!(
            target(&u, Some("/tmp/s")),
            Target::Tcp("127.0.0.1".into(), 3306)
        );
        let u = url("mysql://db.example.com:3307/openser");
        assert_eq!(target(&u, None), Target::Tcp("db.example.com".into(), 3307));
        let u = url("mysql://[::1]:3307/openser");
        assert_eq!(target(&u, None), Target::Tcp("::1".into(), 3307));
    }

    #[test]
    fn reconnect_delay_doubles_up_to_the_maximum() {
        let max = Duration::from_secs(8);
        let mut d = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..6 {
            d = next_delay(d, max);
            seen.push(d.as_secs());
        }
        assert_eq!(seen, [1, 2, 4, 8, 8, 8]);
        assert_eq!(next_delay(Duration::ZERO, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn label_hides_the_password() {
        let l = label(&url("mysql://openser:secret@h:1/db"));
        assert_eq!(l, "mysql://openser@h:1/db");
    }

    #[test]
    fn identifiers() {
        assert_eq!(quote_ident("location").unwrap(), "`location`");
        assert!(quote_ident("a`b").is_err());
        assert!(quote_ident("").is_err());
        assert!(quote_ident("a\0").is_err());
    }

    #[test]
    fn statements() {
        let (sql, p) = select_sql(
            "location",
            &[
                Key::eq("username", "alice"),
                Key::op("expires", Op::Gt, DbVal::Int(5)),
            ],
            &["contact", "q"],
            Some("q DESC"),
        )
        .unwrap();
        assert_eq!(
            sql,
            "SELECT `contact`,`q` FROM `location` WHERE `username` = ? AND `expires` > ? ORDER BY `q` DESC"
        );
        assert_eq!(p, vec![Value::Bytes(b"alice".to_vec()), Value::Int(5)]);
        let (sql, p) = select_sql(
            "t",
            &[Key::eq("a", DbVal::Null), Key::op("b", Op::Ne, DbVal::Null)],
            &[],
            None,
        )
        .unwrap();
        assert_eq!(
            sql,
            "SELECT * FROM `t` WHERE `a` IS NULL AND `b` IS NOT NULL"
        );
        assert!(p.is_empty());
        let (sql, p) =
            insert_sql("REPLACE", "t", &[("a", DbVal::Int(1)), ("b", "x'y".into())]).unwrap();
        assert_eq!(sql, "REPLACE INTO `t` (`a`,`b`) VALUES (?,?)");
        assert_eq!(p.len(), 2);
        let (sql, _) = update_sql(
            "t",
            &[Key::eq("id", 3)],
            &[("a", DbVal::Int(1)), ("b", DbVal::Null)],
        )
        .unwrap();
        assert_eq!(sql, "UPDATE `t` SET `a`=?,`b`=? WHERE `id` = ?");
        let (sql, p) = delete_sql("t", &[]).unwrap();
        assert_eq!((sql.as_str(), p.len()), ("DELETE FROM `t`", 0));
        assert!(select_sql("t", &[], &["a`; DROP TABLE t; --"], None).is_err());
        assert!(select_sql("t", &[], &[], Some("a; DROP")).is_err());
        assert!(select_sql("t", &[], &[], Some("a DESC x")).is_err());
        assert!(insert_sql("INSERT", "t", &[]).is_err());
        assert!(update_sql("t", &[], &[]).is_err());
    }

    #[test]
    fn datetime_parameter_is_local_time() {
        let t = 1_200_000_000;
        let Value::Date(y, mo, d, h, mi, s, 0) = param(&DbVal::DateTime(t)).unwrap() else {
            panic!("not a date");
        };
        let back = sys::local_mktime(y.into(), mo.into(), d.into(), h.into(), mi.into(), s.into());
        assert_eq!(back, Some(t));
    }

    #[test]
    fn params_parse() {
        use openser_core::module::ModParamValue;
        let set = |n: &str, v: ModParamValue| EXPORTS.param(n).unwrap().set("mysql", &v);
        assert!(set("ping_interval", ModParamValue::Int(-1)).is_err());
        assert!(set("auto_reconnect", ModParamValue::Str("x".into())).is_err());
    }
}
