//! One database of each engine behind one interface, for the tests that run the same
//! body on every engine: a private MariaDB or PostgreSQL server, or an SQLite file or
//! dbtext directory in a temp dir, each holding a fresh `openser` database made by the
//! engine's 1.2 script (openser_mysql.sh, openser_postgresql.sh, openser_sqlite.sh,
//! openser_dbtext.sh). Rows are read back independently of openser's drivers: with
//! the engine's own client (mariadb, psql, sqlite3) or, for dbtext, from the file.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::mariadb::MariaDb;
use super::postgres::Postgres;
use super::{TempDir, require};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Mysql,
    Postgres,
    Sqlite,
    DbText,
}

pub struct Engine {
    pub kind: Kind,
    pub my: Option<MariaDb>,
    pub pg: Option<Postgres>,
    pub dir: TempDir,
}

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts");

impl Engine {
    /// Start (or make) a database of `kind` with the openser tables; `None` after a
    /// loud SKIPPED line when the engine's programs are missing (a failure in CI).
    pub fn start(kind: Kind) -> Option<Engine> {
        let dir = TempDir::new("engine");
        let mut e = Engine {
            kind,
            my: None,
            pg: None,
            dir,
        };
        match kind {
            Kind::Mysql => {
                let m = MariaDb::start()?;
                m.create_openser_db();
                e.my = Some(m);
            }
            Kind::Postgres => {
                let p = Postgres::start()?;
                p.create_openser_db();
                e.pg = Some(p);
            }
            Kind::Sqlite => {
                if !require("sqlite3") {
                    return None;
                }
                e.ok(&e.dbsh(&["create"]));
            }
            Kind::DbText => {
                if !require("flock") {
                    return None;
                }
                e.ok(&e.dbsh(&["create"]));
            }
        }
        Some(e)
    }

    /// The module to `loadmodule` for this engine.
    pub fn module(&self) -> &'static str {
        match self.kind {
            Kind::Mysql => "mysql",
            Kind::Postgres => "postgres",
            Kind::Sqlite => "db_sqlite",
            Kind::DbText => "dbtext",
        }
    }

    /// SQLite file / dbtext directory.
    pub fn path(&self) -> PathBuf {
        match self.kind {
            Kind::Sqlite => self.dir.file("openser.sqlite"),
            _ => self.dir.file("dbtext"),
        }
    }

    /// The read-write `db_url` of the openser database.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Mysql => self
                .my
                .as_ref()
                .unwrap()
                .url("openser", "openserrw", "openser"),
            Kind::Postgres => self
                .pg
                .as_ref()
                .unwrap()
                .url("openser", "openserrw", "openser"),
            Kind::Sqlite => format!("sqlite://{}", self.path().display()),
            Kind::DbText => format!("dbtext://{}", self.path().display()),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut v = match self.kind {
            Kind::Mysql => vec![
                ("DBENGINE".into(), "MYSQL".into()),
                (
                    "DBSOCKET".into(),
                    self.my.as_ref().unwrap().socket().display().to_string(),
                ),
                ("PW".into(), String::new()),
            ],
            Kind::Postgres => self.pg.as_ref().unwrap().script_env(),
            Kind::Sqlite => vec![("DBENGINE".into(), "SQLITE".into())],
            Kind::DbText => vec![("DBENGINE".into(), "DBTEXT".into())],
        };
        v.push(("DB_PATH".into(), self.path().display().to_string()));
        v.push(("HOME".into(), self.dir.path().display().to_string()));
        v
    }

    /// Run the engine's 1.2 database script (openser_<engine>.sh) with `args`.
    pub fn dbsh(&self, args: &[&str]) -> Output {
        let script = match self.kind {
            Kind::Mysql => "openser_mysql.sh",
            Kind::Postgres => "openser_postgresql.sh",
            Kind::Sqlite => "openser_sqlite.sh",
            Kind::DbText => "openser_dbtext.sh",
        };
        Command::new("sh")
            .arg(format!("{SCRIPTS}/{script}"))
            .args(args)
            .envs(self.env())
            .output()
            .expect("run the db script")
    }

    /// Run openserctl with an openserctlrc for this engine plus `rc_extra` lines.
    pub fn ctl(&self, rc_extra: &str, args: &[&str]) -> Output {
        let rc = self.dir.file("openserctlrc");
        let mut text = String::new();
        for (k, v) in self.env() {
            if k != "HOME" && k != "PW" {
                text.push_str(&format!("{k}='{v}'\n"));
            }
        }
        if self.kind == Kind::Mysql {
            text.push_str("DBNAME=openser\nDBRWUSER=openser\nDBRWPW=openserrw\n");
        }
        text.push_str(&format!(
            "OSER_FIFO={}\n",
            self.dir.file("no_fifo").display()
        ));
        text.push_str(rc_extra);
        std::fs::write(&rc, text).unwrap();
        Command::new("sh")
            .arg(format!("{SCRIPTS}/openserctl"))
            .args(args)
            .env("OPENSERCTLRC", &rc)
            .env("HOME", self.dir.path())
            .output()
            .expect("run openserctl")
    }

    /// Panic unless `out` succeeded; its stdout.
    pub fn ok(&self, out: &Output) -> String {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{:?}: {text}\n{}",
            self.kind,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// `cols` of `table`'s rows ordered by `order`, read without openser's drivers;
    /// values as text (NULL and the empty string both read as "").
    pub fn rows(&self, table: &str, cols: &[&str], order: &str) -> Vec<Vec<String>> {
        let sql = format!("SELECT {} FROM {table} ORDER BY {order}", cols.join(", "));
        let text = match self.kind {
            Kind::Mysql => {
                // The client's own character set must be utf8mb4 to print 4-byte UTF-8.
                let client = if super::have("mariadb") {
                    "mariadb"
                } else {
                    "mysql"
                };
                let out = Command::new(client)
                    .arg("--no-defaults")
                    .arg(format!(
                        "--socket={}",
                        self.my.as_ref().unwrap().socket().display()
                    ))
                    .args([
                        "--user=root",
                        "--batch",
                        "--skip-column-names",
                        "--default-character-set=utf8mb4",
                    ])
                    .args(["-e", &sql, "openser"])
                    .output()
                    .expect("run mariadb");
                self.ok(&out)
            }
            Kind::Postgres => self.pg.as_ref().unwrap().sql(Some("openser"), &sql),
            Kind::Sqlite => {
                let out = Command::new("sqlite3")
                    .args(["-batch", "-separator", "\t"])
                    .arg(self.path())
                    .arg(&sql)
                    .output()
                    .expect("run sqlite3");
                self.ok(&out)
            }
            Kind::DbText => {
                let p = self.path().join(table);
                let t = db_text::parse_table(table, &std::fs::read_to_string(&p).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                let idx = |c: &str| t.cols.iter().position(|x| x.name == c).expect("column");
                let mut rows = t.rows.clone();
                let o = idx(order);
                rows.sort_by_key(|r| r[o].as_str().map(|s| s.into_owned()).unwrap_or_default());
                let mut s = String::new();
                for r in rows {
                    let f: Vec<String> = cols
                        .iter()
                        .map(|c| {
                            r[idx(c)]
                                .as_str()
                                .map(|s| s.into_owned())
                                .unwrap_or_default()
                        })
                        .collect();
                    s.push_str(&f.join("\t"));
                    s.push('\n');
                }
                s
            }
        };
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split('\t')
                    .map(|f| match self.kind {
                        // mariadb --batch prints NULL as NULL and escapes \\, \t, \n, NUL.
                        Kind::Mysql if f == "NULL" => String::new(),
                        Kind::Mysql => unescape_batch(f),
                        _ => f.to_string(),
                    })
                    .collect()
            })
            .collect()
    }
}

/// A field of `mariadb --batch` output, unescaped.
fn unescape_batch(f: &str) -> String {
    let mut out = String::new();
    let mut it = f.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}
