//! dbtext: 1.2's text-file database as a driver of the generic database API.
//!
//! `db_url` `dbtext:///path/to/dir` (also `db_text://`): a database is a directory, a
//! table a file in it named after the table. A relative path (`dbtext://dir/sub`) is
//! taken from the working directory, which is the configuration file's directory when
//! openser runs from there (1.2 prefixed `CFG_DIR`).
//!
//! The file format is 1.2's: the first line declares the columns,
//! `name(type[,null|,auto])` separated by spaces, with types `int`, `double`, `str`
//! (and `datetime`, seconds since the epoch, an addition read back as a DATETIME; 1.2
//! files store times in `int` columns); then one row per line, fields separated by
//! `:`, an empty field is NULL in a `null` column (the empty string in a `str` one),
//! and `\n`, `\r`, `\t`, `\\`, `:` and NUL are escaped (`\n`, `\r`, `\t`, `\\`, `\:`,
//! `\0`).
//!
//! 1.2 kept the tables in shared memory and wrote a changed table back at shutdown.
//! Here each process keeps its own copy, and the file is the truth: every operation
//! takes an advisory lock on the table file (waiting at most [`LOCK_TIMEOUT`]), reloads
//! the table if the file changed since it was read, and a change is written back
//! before the lock is released (a new file renamed over the old one, so a reader never
//! sees half a table). Every process therefore sees every other's writes, and a crash
//! loses nothing that was acknowledged. It stays what 1.2 meant it to be: for small
//! deployments and tests (a write rewrites the whole table).
//!
//! `replace` replaces the row with the same value in the `auto` column (the table's
//! primary key), else inserts. Raw SQL is not supported.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use openser_core::db::{DbConn, DbError, DbUrl, DbVal, Key, Op, Row};
use openser_core::module::{DbDriver, ModuleExports};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "dbtext",
    db_drivers: &[
        DbDriver {
            scheme: "dbtext",
            connect,
        },
        DbDriver {
            scheme: "db_text",
            connect,
        },
    ],
    ..ModuleExports::EMPTY
};

/// How long an operation waits for another process's lock on a table.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// The connector the exports declare for `dbtext://` and `db_text://`.
pub fn connect(url: &DbUrl) -> Result<Box<dyn DbConn>, DbError> {
    Ok(Box::new(TextDb::open(Path::new(&url.file_path()))?))
}

/// A column type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Int,
    Double,
    Str,
    DateTime,
}

/// A column declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: Type,
    pub null: bool,
    pub auto: bool,
}

/// A table as read from its file.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub cols: Vec<Column>,
    pub rows: Vec<Vec<DbVal>>,
}

fn err(m: impl Into<String>) -> DbError {
    DbError(format!("dbtext: {}", m.into()))
}

/// Parse the header line.
pub fn parse_header(line: &str) -> Result<Vec<Column>, String> {
    let mut cols = Vec::new();
    for def in line.split_whitespace() {
        let (name, rest) = def
            .split_once('(')
            .ok_or_else(|| format!("column '{def}' has no (type)"))?;
        let inner = rest
            .strip_suffix(')')
            .ok_or_else(|| format!("column '{def}': missing ')'"))?;
        let mut parts = inner.split(',').map(str::trim);
        let ty = match parts.next().unwrap_or("") {
            "int" => Type::Int,
            "double" => Type::Double,
            "str" | "string" => Type::Str,
            "datetime" => Type::DateTime,
            t => return Err(format!("column '{name}': unknown type '{t}'")),
        };
        let (mut null, mut auto) = (false, false);
        for a in parts {
            match a {
                "null" => null = true,
                "auto" if ty == Type::Int => auto = true,
                a => return Err(format!("column '{name}': unknown attribute '{a}'")),
            }
        }
        if name.is_empty() || cols.iter().any(|c: &Column| c.name == name) {
            return Err(format!("bad or repeated column name '{name}'"));
        }
        cols.push(Column {
            name: name.to_string(),
            ty,
            null,
            auto,
        });
    }
    if cols.is_empty() {
        return Err("no columns declared".into());
    }
    Ok(cols)
}

/// Split a row line at unescaped ':' and unescape the fields.
fn split_row(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut it = line.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => match it.next() {
                Some('n') => cur.push('\n'),
                Some('r') => cur.push('\r'),
                Some('t') => cur.push('\t'),
                Some('0') => cur.push('\0'),
                Some(c @ ('\\' | ':')) => cur.push(c),
                Some(c) => return Err(format!("unknown escape '\\{c}'")),
                None => return Err("escape at end of line".into()),
            },
            ':' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    Ok(out)
}

fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            '\\' => out.push_str("\\\\"),
            ':' => out.push_str("\\:"),
            c => out.push(c),
        }
    }
}

fn field(col: &Column, f: &str) -> Result<DbVal, String> {
    if f.is_empty() && (col.null || col.ty != Type::Str) {
        if col.null {
            return Ok(DbVal::Null);
        }
        return Err(format!("column '{}' cannot be null", col.name));
    }
    let bad = || format!("column '{}': bad value '{f}'", col.name);
    Ok(match col.ty {
        Type::Int => DbVal::Int(f.trim().parse().map_err(|_| bad())?),
        Type::Double => DbVal::Double(f.trim().parse().map_err(|_| bad())?),
        Type::DateTime => DbVal::DateTime(match f.trim().parse() {
            Ok(t) => t,
            Err(_) => openser_core::db::sql::parse_local_datetime(f).ok_or_else(bad)?,
        }),
        Type::Str => DbVal::Str(f.to_string()),
    })
}

/// Parse a whole table file (`name` for messages).
pub fn parse_table(name: &str, text: &str) -> Result<Table, DbError> {
    let mut lines = text.split('\n');
    let header = lines.next().unwrap_or("");
    let cols =
        parse_header(header.trim_end_matches('\r')).map_err(|e| err(format!("{name}:1: {e}")))?;
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let at = |e: String| err(format!("{name}:{}: {e}", i + 2));
        let fields = split_row(line).map_err(at)?;
        if fields.len() != cols.len() {
            return Err(at(format!(
                "{} fields, the header declares {}",
                fields.len(),
                cols.len()
            )));
        }
        let row = cols
            .iter()
            .zip(&fields)
            .map(|(c, f)| field(c, f))
            .collect::<Result<Vec<_>, _>>()
            .map_err(at)?;
        rows.push(row);
    }
    Ok(Table { cols, rows })
}

/// The file text of a table.
pub fn print_table(t: &Table) -> String {
    let mut s = String::new();
    for (i, c) in t.cols.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let ty = match c.ty {
            Type::Int => "int",
            Type::Double => "double",
            Type::Str => "str",
            Type::DateTime => "datetime",
        };
        s.push_str(&c.name);
        s.push('(');
        s.push_str(ty);
        if c.null {
            s.push_str(",null");
        } else if c.auto {
            s.push_str(",auto");
        }
        s.push(')');
    }
    s.push('\n');
    for r in &t.rows {
        for (i, v) in r.iter().enumerate() {
            if i > 0 {
                s.push(':');
            }
            match v {
                DbVal::Null => {}
                DbVal::Int(n) | DbVal::DateTime(n) => s.push_str(&n.to_string()),
                DbVal::Double(d) => s.push_str(&d.to_string()),
                DbVal::Str(x) => escape(x, &mut s),
                DbVal::Blob(b) => escape(&String::from_utf8_lossy(b), &mut s),
            }
        }
        s.push('\n');
    }
    s
}

/// `v` converted to the type of `col` (an error when it does not fit).
fn coerce(col: &Column, v: &DbVal) -> Result<DbVal, DbError> {
    if v.is_null() {
        return Ok(DbVal::Null);
    }
    let bad = || err(format!("value {v:?} does not fit column '{}'", col.name));
    Ok(match col.ty {
        Type::Int => DbVal::Int(v.as_int().ok_or_else(bad)?),
        Type::DateTime => DbVal::DateTime(v.as_int().ok_or_else(bad)?),
        Type::Double => match v {
            DbVal::Double(d) => DbVal::Double(*d),
            DbVal::Int(i) => DbVal::Double(*i as f64),
            other => DbVal::Double(
                other
                    .as_str()
                    .and_then(|s| s.trim().parse().ok())
                    .ok_or_else(bad)?,
            ),
        },
        Type::Str => match v {
            DbVal::Blob(b) => DbVal::Str(String::from_utf8_lossy(b).into_owned()),
            other => DbVal::Str(other.as_str().map(|s| s.into_owned()).unwrap_or_default()),
        },
    })
}

fn cmp(a: &DbVal, b: &DbVal) -> Option<Ordering> {
    match (a, b) {
        (DbVal::Null, _) | (_, DbVal::Null) => None,
        (DbVal::Int(x) | DbVal::DateTime(x), DbVal::Int(y) | DbVal::DateTime(y)) => Some(x.cmp(y)),
        (DbVal::Double(x), DbVal::Double(y)) => x.partial_cmp(y),
        (DbVal::Str(x), DbVal::Str(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

impl Table {
    fn col(&self, name: &str) -> Result<usize, DbError> {
        self.cols
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| err(format!("no column '{name}'")))
    }

    /// The keys as (column index, op, value converted to the column's type).
    fn prepare(&self, keys: &[Key]) -> Result<Vec<(usize, Op, DbVal)>, DbError> {
        keys.iter()
            .map(|k| {
                let i = self.col(&k.col)?;
                Ok((i, k.op, coerce(&self.cols[i], &k.val)?))
            })
            .collect()
    }

    fn matches(row: &[DbVal], keys: &[(usize, Op, DbVal)]) -> bool {
        keys.iter().all(|(i, op, v)| {
            let cell = &row[*i];
            match (v, op) {
                (DbVal::Null, Op::Eq) => cell.is_null(),
                (DbVal::Null, Op::Ne) => !cell.is_null(),
                (DbVal::Null, _) => false,
                _ => match cmp(cell, v) {
                    None => false,
                    Some(o) => match op {
                        Op::Eq => o == Ordering::Equal,
                        Op::Ne => o != Ordering::Equal,
                        Op::Lt => o == Ordering::Less,
                        Op::Gt => o == Ordering::Greater,
                        Op::Le => o != Ordering::Greater,
                        Op::Ge => o != Ordering::Less,
                    },
                },
            }
        })
    }

    /// A new row from `vals`: unnamed `auto` columns get the next number, other unnamed
    /// columns NULL when nullable, else the type's zero.
    fn new_row(&self, vals: &[(&str, DbVal)]) -> Result<Vec<DbVal>, DbError> {
        let mut row: Vec<Option<DbVal>> = vec![None; self.cols.len()];
        for (n, v) in vals {
            let i = self.col(n)?;
            row[i] = Some(coerce(&self.cols[i], v)?);
        }
        row.into_iter()
            .enumerate()
            .map(|(i, v)| {
                let c = &self.cols[i];
                match v {
                    Some(DbVal::Null) if !c.null && !c.auto => {
                        Err(err(format!("column '{}' cannot be null", c.name)))
                    }
                    Some(DbVal::Null) | None if c.auto => {
                        let max = self
                            .rows
                            .iter()
                            .filter_map(|r| r[i].as_int())
                            .max()
                            .unwrap_or(0);
                        Ok(DbVal::Int(max + 1))
                    }
                    Some(v) => Ok(v),
                    None if c.null => Ok(DbVal::Null),
                    None => Ok(match c.ty {
                        Type::Int | Type::DateTime => DbVal::Int(0),
                        Type::Double => DbVal::Double(0.0),
                        Type::Str => DbVal::Str(String::new()),
                    }),
                }
                .map(|v| {
                    if c.ty == Type::DateTime {
                        coerce(c, &v).unwrap_or(v)
                    } else {
                        v
                    }
                })
            })
            .collect()
    }
}

/// File identity used to notice another process's write.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
    ino: u64,
}

fn stamp(p: &Path) -> Result<Stamp, std::io::Error> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(p)?;
    Ok(Stamp {
        mtime: m.modified().ok(),
        len: m.len(),
        ino: m.ino(),
    })
}

/// A dbtext database (a directory).
pub struct TextDb {
    dir: PathBuf,
    cache: HashMap<String, (Stamp, Table)>,
}

impl TextDb {
    /// Open the directory `dir` (which must exist).
    pub fn open(dir: &Path) -> Result<TextDb, DbError> {
        if !dir.is_dir() {
            return Err(err(format!("{} is not a directory", dir.display())));
        }
        Ok(TextDb {
            dir: dir.to_path_buf(),
            cache: HashMap::new(),
        })
    }

    fn path(&self, table: &str) -> Result<PathBuf, DbError> {
        if table.is_empty() || table.starts_with('.') || table.contains(['/', '\0']) {
            return Err(err(format!("invalid table name '{table}'")));
        }
        Ok(self.dir.join(table))
    }

    /// Run `f` on `table` under its lock, reloaded if it changed; `f` returns whether
    /// it modified the table, which is then written back.
    fn with_table<T>(
        &mut self,
        table: &str,
        f: impl FnOnce(&mut Table) -> Result<(T, bool), DbError>,
    ) -> Result<T, DbError> {
        let path = self.path(table)?;
        let lock_path = self.dir.join(format!(".{table}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| err(format!("{}: {e}", lock_path.display())))?;
        let end = Instant::now() + LOCK_TIMEOUT;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(err(format!("{}: cannot lock: {e}", path.display()))),
            }
        }
        let st =
            stamp(&path).map_err(|e| err(format!("table {table} ({}): {e}", path.display())))?;
        let fresh = matches!(self.cache.get(table), Some((s, _)) if *s == st);
        if !fresh {
            let text =
                fs::read_to_string(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
            let t = parse_table(&path.display().to_string(), &text)?;
            self.cache.insert(table.to_string(), (st, t));
        }
        let Some((_, t)) = self.cache.get_mut(table) else {
            return Err(err("table vanished"));
        };
        // `f` validates everything before it changes the table, so an error leaves
        // the cached copy as the file has it.
        let (out, changed) = f(t)?;
        if changed {
            let text = print_table(t);
            let tmp = self.dir.join(format!(".{table}.tmp"));
            let w = (|| -> std::io::Result<()> {
                let mut fh = File::create(&tmp)?;
                fh.write_all(text.as_bytes())?;
                fh.sync_data()?;
                fs::rename(&tmp, &path)
            })();
            let st = w.and_then(|()| stamp(&path));
            match st {
                Ok(st) => {
                    if let Some(e) = self.cache.get_mut(table) {
                        e.0 = st;
                    }
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    // The file still has the old rows: read it again next time.
                    self.cache.remove(table);
                    return Err(err(format!("cannot write {}: {e}", path.display())));
                }
            }
        }
        drop(lock);
        Ok(out)
    }
}

impl DbConn for TextDb {
    fn query(
        &mut self,
        table: &str,
        keys: &[Key],
        cols: &[&str],
        order: Option<&str>,
    ) -> Result<Vec<Row>, DbError> {
        self.with_table(table, |t| {
            let k = t.prepare(keys)?;
            let idx: Vec<usize> = if cols.is_empty() {
                (0..t.cols.len()).collect()
            } else {
                cols.iter().map(|c| t.col(c)).collect::<Result<_, _>>()?
            };
            let mut hits: Vec<&Vec<DbVal>> =
                t.rows.iter().filter(|r| Table::matches(r, &k)).collect();
            if let Some(o) = order {
                let mut it = o.split_whitespace();
                let c = t.col(it.next().unwrap_or(""))?;
                let desc = match it.next() {
                    None => false,
                    Some(d) if d.eq_ignore_ascii_case("asc") => false,
                    Some(d) if d.eq_ignore_ascii_case("desc") => true,
                    Some(d) => return Err(err(format!("invalid order direction '{d}'"))),
                };
                // NULLs first ascending, as MySQL and SQLite sort them.
                hits.sort_by(|a, b| {
                    let o = match (a[c].is_null(), b[c].is_null()) {
                        (true, true) => Ordering::Equal,
                        (true, false) => Ordering::Less,
                        (false, true) => Ordering::Greater,
                        _ => cmp(&a[c], &b[c]).unwrap_or(Ordering::Equal),
                    };
                    if desc { o.reverse() } else { o }
                });
            }
            Ok((
                hits.into_iter()
                    .map(|r| idx.iter().map(|i| r[*i].clone()).collect())
                    .collect(),
                false,
            ))
        })
    }

    fn insert(&mut self, table: &str, vals: &[(&str, DbVal)]) -> Result<(), DbError> {
        if vals.is_empty() {
            return Err(err(format!("insert into {table} without values")));
        }
        self.with_table(table, |t| {
            let r = t.new_row(vals)?;
            t.rows.push(r);
            Ok(((), true))
        })
    }

    fn update(&mut self, table: &str, keys: &[Key], set: &[(&str, DbVal)]) -> Result<u64, DbError> {
        if set.is_empty() {
            return Err(err(format!("update of {table} without values")));
        }
        self.with_table(table, |t| {
            let k = t.prepare(keys)?;
            let set = set
                .iter()
                .map(|(c, v)| {
                    let i = t.col(c)?;
                    let v = coerce(&t.cols[i], v)?;
                    if v.is_null() && !t.cols[i].null {
                        return Err(err(format!("column '{c}' cannot be null")));
                    }
                    Ok((i, v))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut n = 0;
            for r in t.rows.iter_mut().filter(|r| Table::matches(r, &k)) {
                for (i, v) in &set {
                    r[*i] = v.clone();
                }
                n += 1;
            }
            Ok((n, n > 0))
        })
    }

    fn delete(&mut self, table: &str, keys: &[Key]) -> Result<u64, DbError> {
        self.with_table(table, |t| {
            let k = t.prepare(keys)?;
            let before = t.rows.len();
            t.rows.retain(|r| !Table::matches(r, &k));
            let n = (before - t.rows.len()) as u64;
            Ok((n, n > 0))
        })
    }

    fn replace(&mut self, table: &str, vals: &[(&str, DbVal)]) -> Result<(), DbError> {
        self.with_table(table, |t| {
            let r = t.new_row(vals)?;
            let auto = t.cols.iter().position(|c| c.auto);
            let given = auto.filter(|a| vals.iter().any(|(n, _)| *n == t.cols[*a].name));
            match given.and_then(|a| t.rows.iter().position(|x| x[a] == r[a])) {
                Some(pos) => t.rows[pos] = r,
                None => t.rows.push(r),
            }
            Ok(((), true))
        })
    }

    fn raw_query(&mut self, _sql: &str) -> Result<Vec<Row>, DbError> {
        Err(err("raw SQL is not supported"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "id(int,auto) name(str) flag(double) desc(str,null)\n\
                          1:nick:0.34:a\\tgood\\: friend\n2:cole:-3.75:colleague\n3:bob:2.50:\n";

    #[test]
    fn the_1_2_sample_table() {
        let t = parse_table("t", SAMPLE).unwrap();
        assert_eq!(t.cols.len(), 4);
        assert!(t.cols[0].auto && t.cols[3].null);
        assert_eq!(t.rows[0][3], DbVal::Str("a\tgood: friend".into()));
        assert_eq!(t.rows[1][2], DbVal::Double(-3.75));
        assert_eq!(t.rows[2][3], DbVal::Null);
        let again = parse_table("t", &print_table(&t)).unwrap();
        assert_eq!(again, t);
    }

    #[test]
    fn escapes_round_trip() {
        let t = Table {
            cols: parse_header("s(str) n(int,null)").unwrap(),
            rows: vec![
                vec![DbVal::Str("a:b\\c\n\r\t\0'\"%😀".into()), DbVal::Null],
                vec![DbVal::Str(String::new()), DbVal::Int(-1)],
            ],
        };
        let text = print_table(&t);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert_eq!(parse_table("t", &text).unwrap(), t);
    }

    #[test]
    fn bad_files_name_the_line() {
        for (text, want) in [
            ("a(int) b(str)\n1:x\n2\n", "t:3:"),
            ("a(int)\nx\n", "t:2:"),
            ("a(blob)\n", "t:1:"),
            ("a(int\n", "t:1:"),
            ("a(int) a(str)\n", "t:1:"),
            ("a(str)\nx\\q\n", "t:2:"),
        ] {
            let e = parse_table("t", text).err().unwrap();
            assert!(e.0.contains(want), "{text:?}: {e}");
        }
    }

    /// Two connections (two processes, in effect) on one directory see each other's
    /// writes, and a failed change leaves the table as it was.
    #[test]
    fn two_connections_share_the_files() {
        let dir = std::env::temp_dir().join(format!("dbtext-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("t"), "id(int,auto) name(str) n(int,null)\n").unwrap();
        let mut a = TextDb::open(&dir).unwrap();
        let mut b = TextDb::open(&dir).unwrap();
        a.insert("t", &[("name", "x:y".into())]).unwrap();
        let rows = b.query("t", &[], &["id", "name", "n"], None).unwrap();
        assert_eq!(
            rows,
            vec![vec![DbVal::Int(1), DbVal::from("x:y"), DbVal::Null]]
        );
        assert_eq!(
            b.update("t", &[Key::eq("id", 1)], &[("n", DbVal::Int(5))])
                .unwrap(),
            1
        );
        b.insert("t", &[("name", "z".into())]).unwrap();
        let rows = a
            .query(
                "t",
                &[Key::op("id", Op::Ge, 1)],
                &["id", "n"],
                Some("id desc"),
            )
            .unwrap();
        assert_eq!(
            rows,
            vec![
                vec![DbVal::Int(2), DbVal::Null],
                vec![DbVal::Int(1), DbVal::Int(5)]
            ]
        );
        // Errors change nothing.
        assert!(a.insert("t", &[("nope", 1.into())]).is_err());
        assert!(
            a.update("t", &[], &[("name", DbVal::Null)]).is_err(),
            "not null"
        );
        assert!(
            a.update("t", &[], &[("n", "abc".into())]).is_err(),
            "not an int"
        );
        assert_eq!(b.query("t", &[], &[], None).unwrap().len(), 2);
        assert_eq!(
            fs::read_to_string(dir.join("t")).unwrap(),
            "id(int,auto) name(str) n(int,null)\n1:x\\:y:5\n2:z:\n"
        );
        assert!(a.query("../etc/passwd", &[], &[], None).is_err());
        assert!(a.query(".t.lock", &[], &[], None).is_err());
        assert!(a.query("missing", &[], &[], None).is_err());
        assert_eq!(a.delete("t", &[]).unwrap(), 2);
        assert!(b.query("t", &[], &[], None).unwrap().is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}
