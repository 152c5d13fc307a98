//! postgres: the PostgreSQL driver of the generic database API (reference §8.11; 1.2's
//! `postgres` module).
//!
//! `db_url` `postgres://user:password@host[:port]/database` (port 5432 by default),
//! over TCP (`localhost` is 127.0.0.1, resolved without a DNS query); no TLS, as 1.2. The client is this crate's own: a blocking socket with a connect timeout
//! and read/write timeouts on every call, speaking the frontend/backend protocol v3
//! with the framing and authentication (cleartext, MD5, SCRAM-SHA-256) of the
//! `postgres-protocol` crate. The `postgres` client crate is built on a tokio runtime:
//! it resolves host names on tokio's blocking thread pool (a thread per process for
//! `localhost`), and it has no per-call read timeout, so a hung server would hang a SIP
//! worker. Here a process has one socket and no threads.
//!
//! Every statement goes through the extended query protocol (Parse/Bind/Describe/
//! Execute/Sync, one round trip) with the values bound as text parameters of
//! unspecified type (the server types them from the column); identifiers are
//! double-quoted and refused if they hold a quote. DATETIME columns are `timestamp`
//! (without time zone) holding local time, as the other drivers store it.
//!
//! `replace` (MySQL's `REPLACE`, which PostgreSQL lacks) runs in a transaction: the
//! rows that clash with the new one on any unique index whose columns are all given
//! are deleted, then the row is inserted.
//!
//! A lost connection (server restart, reset, `57P01`/`57P02`/`57P03`) is reopened once
//! and the operation retried; a timeout is not retried (the call already waited).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::IsNull;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use openser_core::db::sql::{self, Dialect, Stmt};
use openser_core::db::{DbConn, DbError, DbUrl, DbVal, Key, Row};
use openser_core::module::{DbDriver, IntParam, ModuleExports, Param};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "postgres",
    params: &[Param::uint("timeout", &TIMEOUT)],
    db_drivers: &[DbDriver {
        scheme: "postgres",
        connect,
    }],
    ..ModuleExports::EMPTY
};

/// Default TCP port.
pub const DEFAULT_PORT: u16 = 5432;
/// Connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Read/write timeout of every operation, seconds.
static TIMEOUT: IntParam = IntParam::new(10);

const DIALECT: Dialect = Dialect {
    name: "postgres",
    quote: '"',
    numbered: true,
};

// Type OIDs (pg_type.h).
const BOOL: u32 = 16;
const BYTEA: u32 = 17;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const OID: u32 = 26;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const NUMERIC: u32 = 1700;
const DATE: u32 = 1082;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;

/// The connector the exports declare for `postgres://`.
pub fn connect(url: &DbUrl) -> Result<Box<dyn DbConn>, DbError> {
    let t = Duration::from_secs(TIMEOUT.get().max(1) as u64);
    Ok(Box::new(PgConn::open(url, t)?))
}

/// Where to connect and as whom.
#[derive(Clone)]
struct Target {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    database: String,
    label: String,
    timeout: Duration,
}

/// A failure: `lost` when the connection can't be used any more.
struct PgErr {
    msg: String,
    lost: bool,
    retry: bool,
}

impl PgErr {
    fn io(e: io::Error) -> PgErr {
        let timeout = matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        );
        PgErr {
            msg: if timeout {
                format!("timed out ({e})")
            } else {
                e.to_string()
            },
            lost: true,
            retry: !timeout,
        }
    }
    fn proto(m: impl Into<String>) -> PgErr {
        PgErr {
            msg: m.into(),
            lost: true,
            retry: false,
        }
    }
}

/// One open session.
struct Session {
    sock: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Prepared statements of this session: SQL text -> (name, result column types).
    stmts: HashMap<String, (String, Vec<u32>)>,
    next_stmt: u32,
}

/// At most this many named statements per session (the drivers' users have a handful
/// of statement shapes); past it, statements are parsed for each call.
const MAX_STATEMENTS: usize = 256;

/// A statement's outcome.
struct Outcome {
    types: Vec<u32>,
    rows: Vec<Vec<Option<Vec<u8>>>>,
    tag: String,
}

impl Session {
    fn connect(t: &Target) -> Result<Session, PgErr> {
        let addrs: Vec<SocketAddr> = if t.host == "localhost" {
            vec![SocketAddr::from(([127, 0, 0, 1], t.port))]
        } else {
            let h = t
                .host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(&t.host);
            (h, t.port).to_socket_addrs().map_err(PgErr::io)?.collect()
        };
        let mut last = PgErr::proto("no address");
        let mut sock = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => last = PgErr::io(e),
            }
        }
        let sock = sock.ok_or(last)?;
        sock.set_read_timeout(Some(t.timeout)).map_err(PgErr::io)?;
        sock.set_write_timeout(Some(t.timeout)).map_err(PgErr::io)?;
        sock.set_nodelay(true).map_err(PgErr::io)?;
        let mut s = Session {
            sock,
            rbuf: BytesMut::with_capacity(8192),
            wbuf: BytesMut::with_capacity(1024),
            stmts: HashMap::new(),
            next_stmt: 0,
        };
        s.startup(t)?;
        Ok(s)
    }

    fn flush(&mut self) -> Result<(), PgErr> {
        let r = self.sock.write_all(&self.wbuf);
        self.wbuf.clear();
        r.map_err(PgErr::io)
    }

    fn read(&mut self) -> Result<Message, PgErr> {
        loop {
            if let Some(m) =
                Message::parse(&mut self.rbuf).map_err(|e| PgErr::proto(e.to_string()))?
            {
                return Ok(m);
            }
            let mut chunk = [0u8; 8192];
            let n = self.sock.read(&mut chunk).map_err(PgErr::io)?;
            if n == 0 {
                return Err(PgErr {
                    msg: "server closed the connection".into(),
                    lost: true,
                    retry: true,
                });
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    fn startup(&mut self, t: &Target) -> Result<(), PgErr> {
        let params = [
            ("user", t.user.as_str()),
            ("database", t.database.as_str()),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO"),
            ("application_name", "openser"),
        ];
        frontend::startup_message(params.iter().copied(), &mut self.wbuf).map_err(PgErr::io)?;
        self.flush()?;
        let pw = || {
            t.password.as_deref().ok_or_else(|| {
                PgErr::proto("the server asks for a password and the db_url has none")
            })
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            match self.read()? {
                Message::AuthenticationOk => {}
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(pw()?.as_bytes(), &mut self.wbuf)
                        .map_err(PgErr::io)?;
                    self.flush()?;
                }
                Message::AuthenticationMd5Password(b) => {
                    let h = md5_hash(t.user.as_bytes(), pw()?.as_bytes(), b.salt());
                    frontend::password_message(h.as_bytes(), &mut self.wbuf).map_err(PgErr::io)?;
                    self.flush()?;
                }
                Message::AuthenticationSasl(b) => {
                    let mut mechs = b.mechanisms();
                    let mut ok = false;
                    while let Some(m) = mechs.next().map_err(|e| PgErr::proto(e.to_string()))? {
                        ok |= m == SCRAM_SHA_256;
                    }
                    if !ok {
                        return Err(PgErr::proto(
                            "the server offers no supported SASL mechanism",
                        ));
                    }
                    let s = ScramSha256::new(pw()?.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut self.wbuf)
                        .map_err(PgErr::io)?;
                    self.flush()?;
                    scram = Some(s);
                }
                Message::AuthenticationSaslContinue(b) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| PgErr::proto("unexpected SASL message"))?;
                    s.update(b.data())
                        .map_err(|e| PgErr::proto(format!("SCRAM: {e}")))?;
                    frontend::sasl_response(s.message(), &mut self.wbuf).map_err(PgErr::io)?;
                    self.flush()?;
                }
                Message::AuthenticationSaslFinal(b) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| PgErr::proto("unexpected SASL message"))?;
                    s.finish(b.data())
                        .map_err(|e| PgErr::proto(format!("SCRAM: {e}")))?;
                }
                Message::ErrorResponse(b) => return Err(PgErr::proto(error_text(&b))),
                Message::ReadyForQuery(_) => return Ok(()),
                Message::ParameterStatus(_)
                | Message::BackendKeyData(_)
                | Message::NoticeResponse(_) => {}
                _ => return Err(PgErr::proto("unsupported authentication method")),
            }
        }
    }

    /// Read until ReadyForQuery, collecting rows; an ErrorResponse is the result.
    fn collect(&mut self, mut types: Vec<u32>) -> Result<Outcome, PgErr> {
        let mut rows = Vec::new();
        let mut tag = String::new();
        let mut error: Option<PgErr> = None;
        loop {
            match self.read()? {
                Message::ReadyForQuery(_) => break,
                Message::RowDescription(b) => {
                    types.clear();
                    let mut f = b.fields();
                    while let Some(f) = f.next().map_err(|e| PgErr::proto(e.to_string()))? {
                        types.push(f.type_oid());
                    }
                }
                Message::DataRow(b) => {
                    let buf = b.buffer();
                    let mut r = b.ranges();
                    let mut row = Vec::with_capacity(types.len());
                    while let Some(x) = r.next().map_err(|e| PgErr::proto(e.to_string()))? {
                        row.push(x.map(|x| buf[x].to_vec()));
                    }
                    rows.push(row);
                }
                Message::CommandComplete(b) => {
                    tag = b.tag().unwrap_or_default().to_string();
                }
                Message::ErrorResponse(b) => {
                    let code = error_code(&b);
                    // Administrator shutdown / crash / cannot connect now: the session ends.
                    let lost = matches!(code.as_str(), "57P01" | "57P02" | "57P03");
                    error = Some(PgErr {
                        msg: error_text(&b),
                        lost,
                        retry: lost,
                    });
                    if lost {
                        return Err(error.take().unwrap_or_else(|| PgErr::proto("lost")));
                    }
                }
                _ => {}
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(Outcome { types, rows, tag }),
        }
    }

    /// One statement with bound text parameters: parsed and described once per
    /// session (a named statement), then one round trip (Bind/Execute/Sync) per call.
    fn exec(&mut self, sql: &str, params: &[Option<Vec<u8>>]) -> Result<Outcome, PgErr> {
        let (name, types) = match self.stmts.get(sql) {
            Some((n, t)) => (n.clone(), t.clone()),
            None if self.stmts.len() < MAX_STATEMENTS => {
                let name = format!("openser_{}", self.next_stmt);
                self.next_stmt += 1;
                frontend::parse(&name, sql, std::iter::empty(), &mut self.wbuf)
                    .map_err(PgErr::io)?;
                frontend::describe(b'S', &name, &mut self.wbuf).map_err(PgErr::io)?;
                frontend::sync(&mut self.wbuf);
                self.flush()?;
                let out = self.collect(Vec::new())?;
                self.stmts
                    .insert(sql.to_string(), (name.clone(), out.types.clone()));
                (name, out.types)
            }
            None => {
                frontend::parse("", sql, std::iter::empty(), &mut self.wbuf).map_err(PgErr::io)?;
                (String::new(), Vec::new())
            }
        };
        let r = frontend::bind(
            "",
            &name,
            std::iter::once(0i16),
            params.iter(),
            |p, buf| match p {
                Some(v) => {
                    buf.extend_from_slice(v);
                    Ok(IsNull::No)
                }
                None => Ok(IsNull::Yes),
            },
            std::iter::once(0i16),
            &mut self.wbuf,
        );
        if r.is_err() {
            self.wbuf.clear();
            return Err(PgErr {
                msg: "cannot encode parameters".into(),
                lost: false,
                retry: false,
            });
        }
        if name.is_empty() {
            frontend::describe(b'P', "", &mut self.wbuf).map_err(PgErr::io)?;
        }
        frontend::execute("", 0, &mut self.wbuf).map_err(PgErr::io)?;
        frontend::sync(&mut self.wbuf);
        self.flush()?;
        let out = self.collect(types);
        if out.is_err() && !name.is_empty() {
            // A table changed under a cached plan, say: prepare it again next time.
            self.stmts.remove(sql);
        }
        out
    }

    /// A simple-protocol query (several statements allowed, no parameters).
    fn simple(&mut self, sql: &str) -> Result<Outcome, PgErr> {
        frontend::query(sql, &mut self.wbuf).map_err(PgErr::io)?;
        self.flush()?;
        self.collect(Vec::new())
    }
}

fn error_fields(b: &postgres_protocol::message::backend::ErrorResponseBody) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    let mut f = b.fields();
    while let Ok(Some(x)) = f.next() {
        out.push((
            x.type_(),
            String::from_utf8_lossy(x.value_bytes()).into_owned(),
        ));
    }
    out
}

fn error_text(b: &postgres_protocol::message::backend::ErrorResponseBody) -> String {
    let f = error_fields(b);
    let get = |t: u8| {
        f.iter()
            .find(|(k, _)| *k == t)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    format!("{}: {} ({})", get(b'S'), get(b'M'), get(b'C'))
}

fn error_code(b: &postgres_protocol::message::backend::ErrorResponseBody) -> String {
    error_fields(b)
        .into_iter()
        .find(|(k, _)| *k == b'C')
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// A value as a text parameter (DATETIME as local time text; bytea as hex).
fn param(v: &DbVal) -> Result<Option<Vec<u8>>, DbError> {
    Ok(match v {
        DbVal::Null => None,
        DbVal::Int(i) => Some(i.to_string().into_bytes()),
        DbVal::Double(d) => Some(d.to_string().into_bytes()),
        DbVal::Str(s) => {
            if s.contains('\0') {
                return Err(DbError("postgres: a text value cannot hold NUL".into()));
            }
            Some(s.as_bytes().to_vec())
        }
        DbVal::Blob(b) => {
            let mut s = String::from("\\x");
            for c in b {
                s.push_str(&format!("{c:02x}"));
            }
            Some(s.into_bytes())
        }
        DbVal::DateTime(t) => Some(
            sql::local_datetime(*t)
                .ok_or_else(|| DbError(format!("postgres: time {t} out of range")))?
                .into_bytes(),
        ),
    })
}

fn hex_decode(s: &[u8]) -> Option<Vec<u8>> {
    let s = s.strip_prefix(b"\\x")?;
    if s.len() % 2 != 0 {
        return None;
    }
    s.chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
        .collect()
}

/// A text-format column value as a `DbVal`, typed by its OID.
fn to_dbval(v: Option<&[u8]>, oid: u32) -> DbVal {
    let Some(v) = v else { return DbVal::Null };
    let s = || String::from_utf8_lossy(v).into_owned();
    match oid {
        BOOL => DbVal::Int(i64::from(v == b"t")),
        INT2 | INT4 | INT8 | OID => s()
            .parse()
            .map(DbVal::Int)
            .unwrap_or_else(|_| DbVal::Str(s())),
        FLOAT4 | FLOAT8 | NUMERIC => s()
            .parse()
            .map(DbVal::Double)
            .unwrap_or_else(|_| DbVal::Str(s())),
        DATE | TIMESTAMP | TIMESTAMPTZ => match sql::parse_local_datetime(&s()) {
            Some(t) => DbVal::DateTime(t),
            None => DbVal::Str(s()),
        },
        BYTEA => hex_decode(v)
            .map(DbVal::Blob)
            .unwrap_or_else(|| DbVal::Blob(v.to_vec())),
        _ => DbVal::Str(s()),
    }
}

/// A connection to one PostgreSQL database.
pub struct PgConn {
    target: Target,
    session: Option<Session>,
    /// Unique indexes (column lists) per table, for `replace`.
    unique: HashMap<String, Vec<Vec<String>>>,
}

impl PgConn {
    /// Connect with read/write timeout `timeout`.
    pub fn open(url: &DbUrl, timeout: Duration) -> Result<PgConn, DbError> {
        if url.host.is_empty() {
            return Err(DbError(format!(
                "postgres: db_url needs a host: {}",
                url.database
            )));
        }
        let user = url.user.clone().unwrap_or_else(|| "postgres".into());
        let port = url.port.unwrap_or(DEFAULT_PORT);
        let target = Target {
            label: format!("postgres://{user}@{}:{port}/{}", url.host, url.database),
            host: url.host.clone(),
            port,
            user,
            password: url.password.clone(),
            database: url.database.clone(),
            timeout,
        };
        let session = Session::connect(&target).map_err(|e| {
            DbError(format!(
                "postgres: cannot connect to {}: {}",
                target.label, e.msg
            ))
        })?;
        Ok(PgConn {
            target,
            session: Some(session),
            unique: HashMap::new(),
        })
    }

    /// Run `f` on the session, reconnecting once when the connection was lost.
    fn run<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&mut Session) -> Result<T, PgErr>,
    ) -> Result<T, DbError> {
        let mut retried = false;
        loop {
            if self.session.is_none() {
                retried = true;
                match Session::connect(&self.target) {
                    Ok(s) => self.session = Some(s),
                    Err(e) => {
                        return Err(DbError(format!(
                            "postgres: {what} on {}: cannot reconnect: {}",
                            self.target.label, e.msg
                        )));
                    }
                }
            }
            let Some(s) = self.session.as_mut() else {
                continue;
            };
            match f(s) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if e.lost {
                        self.session = None;
                    }
                    if e.lost && e.retry && !retried {
                        openser_core::log_warn!(
                            "postgres: connection to {} lost ({}), reconnecting",
                            self.target.label,
                            e.msg
                        );
                        continue;
                    }
                    return Err(DbError(format!(
                        "postgres: {what} on {}: {}",
                        self.target.label, e.msg
                    )));
                }
            }
        }
    }

    fn exec(&mut self, what: &str, st: &Stmt) -> Result<Outcome, DbError> {
        let params = st.params.iter().map(param).collect::<Result<Vec<_>, _>>()?;
        self.run(what, |s| s.exec(&st.sql, &params))
    }

    fn unique_keys(&mut self, table: &str) -> Result<Vec<Vec<String>>, DbError> {
        if let Some(u) = self.unique.get(table) {
            return Ok(u.clone());
        }
        let st = Stmt {
            sql: "SELECT i.indexrelid::int8, a.attname::text FROM pg_index i JOIN pg_attribute a \
                  ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                  WHERE i.indisunique AND i.indrelid = $1::text::regclass ORDER BY 1"
                .into(),
            params: vec![DbVal::Str(DIALECT.ident(table)?)],
        };
        let out = self.exec("replace", &st)?;
        let mut keys: Vec<(Vec<u8>, Vec<String>)> = Vec::new();
        for r in out.rows {
            let (Some(Some(id)), Some(Some(col))) = (r.first(), r.get(1)) else {
                continue;
            };
            let col = String::from_utf8_lossy(col).into_owned();
            match keys.iter_mut().find(|(k, _)| k == id) {
                Some((_, cols)) => cols.push(col),
                None => keys.push((id.clone(), vec![col])),
            }
        }
        let keys: Vec<Vec<String>> = keys.into_iter().map(|(_, c)| c).collect();
        self.unique.insert(table.to_string(), keys.clone());
        Ok(keys)
    }
}

impl PgConn {
    /// A SELECT's rows, typed by the columns' OIDs.
    fn select(&mut self, st: &Stmt) -> Result<Vec<Row>, DbError> {
        let out = self.exec("query", st)?;
        Ok(out
            .rows
            .iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .map(|(i, v)| to_dbval(v.as_deref(), out.types.get(i).copied().unwrap_or(0)))
                    .collect()
            })
            .collect())
    }
}

fn affected(tag: &str) -> u64 {
    tag.rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl DbConn for PgConn {
    fn query(
        &mut self,
        table: &str,
        keys: &[Key],
        cols: &[&str],
        order: Option<&str>,
    ) -> Result<Vec<Row>, DbError> {
        let st = DIALECT.select(table, keys, cols, order)?;
        self.select(&st)
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
        self.select(&st)
    }

    fn insert(&mut self, table: &str, vals: &[(&str, DbVal)]) -> Result<(), DbError> {
        let st = DIALECT.insert("INSERT", table, vals)?;
        self.exec("insert", &st).map(drop)
    }

    fn update(&mut self, table: &str, keys: &[Key], set: &[(&str, DbVal)]) -> Result<u64, DbError> {
        let st = DIALECT.update(table, keys, set)?;
        Ok(affected(&self.exec("update", &st)?.tag))
    }

    fn delete(&mut self, table: &str, keys: &[Key]) -> Result<u64, DbError> {
        let st = DIALECT.delete(table, keys)?;
        Ok(affected(&self.exec("delete", &st)?.tag))
    }

    fn replace(&mut self, table: &str, vals: &[(&str, DbVal)]) -> Result<(), DbError> {
        let ins = DIALECT.insert("INSERT", table, vals)?;
        let mut dels = Vec::new();
        for cols in self.unique_keys(table)? {
            let keys: Option<Vec<Key>> = cols
                .iter()
                .map(|c| {
                    vals.iter()
                        .find(|(n, _)| n == c)
                        .map(|(n, v)| Key::eq(n, v.clone()))
                })
                .collect();
            if let Some(keys) = keys {
                dels.push(DIALECT.delete(table, &keys)?);
            }
        }
        let mut stmts = Vec::new();
        for st in dels.iter().chain(std::iter::once(&ins)) {
            stmts.push((
                st.sql.clone(),
                st.params.iter().map(param).collect::<Result<Vec<_>, _>>()?,
            ));
        }
        self.run("replace", |s| {
            s.simple("BEGIN")?;
            for (sql, params) in &stmts {
                if let Err(e) = s.exec(sql, params) {
                    if !e.lost {
                        s.simple("ROLLBACK")?;
                    }
                    return Err(e);
                }
            }
            s.simple("COMMIT").map(drop)
        })
    }

    fn raw_query(&mut self, sql: &str) -> Result<Vec<Row>, DbError> {
        let out = self.run("raw query", |s| s.simple(sql))?;
        Ok(out
            .rows
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|v| match v {
                        None => DbVal::Null,
                        Some(b) => DbVal::Str(String::from_utf8_lossy(&b).into_owned()),
                    })
                    .collect()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(to_dbval(None, INT4), DbVal::Null);
        assert_eq!(to_dbval(Some(b"-7"), INT4), DbVal::Int(-7));
        assert_eq!(to_dbval(Some(b"0.8"), FLOAT4), DbVal::Double(0.8));
        assert_eq!(to_dbval(Some(b"t"), BOOL), DbVal::Int(1));
        assert_eq!(to_dbval(Some(b"\\x00ff"), BYTEA), DbVal::Blob(vec![0, 255]));
        assert_eq!(to_dbval(Some(b"abc"), 25), DbVal::Str("abc".into()));
        let t = 1_200_000_000;
        let s = sql::local_datetime(t).unwrap();
        assert_eq!(to_dbval(Some(s.as_bytes()), TIMESTAMP), DbVal::DateTime(t));
        assert_eq!(
            param(&DbVal::Blob(vec![1, 0xab])).unwrap(),
            Some(b"\\x01ab".to_vec())
        );
        assert!(param(&DbVal::Str("a\0b".into())).is_err());
        assert_eq!(affected("UPDATE 3"), 3);
        assert_eq!(affected("INSERT 0 1"), 1);
    }

    #[test]
    fn connect_errors() {
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let u = DbUrl::parse(&format!("postgres://u:secret@127.0.0.1:{refused}/db")).unwrap();
        let e = PgConn::open(&u, Duration::from_secs(1)).err().unwrap();
        assert!(e.0.contains("cannot connect"), "{e}");
        assert!(!e.0.contains("secret"), "{e}");
        let u = DbUrl::parse("postgres:///db").unwrap();
        assert!(PgConn::open(&u, Duration::from_secs(1)).is_err());
    }
}
