//! A private, throwaway PostgreSQL server for tests: `initdb` on a data directory under
//! the temp dir, `postgres` with its Unix socket there and a free TCP port on
//! 127.0.0.1. Local (socket) connections are trusted (the superuser `postgres` for the
//! scripts), TCP ones need SCRAM-SHA-256 passwords (what openser's driver uses). As
//! root, the server runs as the `postgres` user (PostgreSQL refuses root). Stopped
//! by PID on drop.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TempDir, skip};

pub struct Postgres {
    child: Option<Child>,
    dir: TempDir,
    port: u16,
    bin: PathBuf,
    run_as: Option<(u32, u32)>,
}

/// The directory of the server programs (`initdb`, `postgres`): Debian keeps them in
/// /usr/lib/postgresql/<version>/bin.
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists() && p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// uid/gid of `postgres` from /etc/passwd when we are root.
fn unprivileged() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .to_string();
    if uid != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let l = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let f: Vec<&str> = l.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

fn free_tcp_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind ephemeral TCP port");
    l.local_addr().unwrap().port()
}

fn chown_r(p: &Path, ids: Option<(u32, u32)>) {
    if let Some((u, g)) = ids {
        let st = Command::new("chown")
            .arg("-R")
            .arg(format!("{u}:{g}"))
            .arg(p)
            .status()
            .expect("chown");
        assert!(st.success(), "chown {}", p.display());
    }
}

impl Postgres {
    /// Start a server; `None` (after a loud SKIPPED line) when PostgreSQL is not
    /// installed, a panic instead when `CI=true`.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = bin_dir() else {
            skip("PostgreSQL is not installed (Debian postgresql)");
            return None;
        };
        let run_as = unprivileged();
        let dir = TempDir::new("pg");
        chown_r(dir.path(), run_as);
        let data = dir.file("data");
        let pwfile = dir.file("pw");
        std::fs::write(&pwfile, "postgres\n").unwrap();
        chown_r(&pwfile, run_as);
        let mut c = Command::new(bin.join("initdb"));
        c.arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-E", "UTF8", "--locale=C", "--no-sync"]);
        if let Some((u, g)) = run_as {
            c.uid(u).gid(g);
        }
        let out = c.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            child: None,
            dir,
            port: free_tcp_port(),
            bin,
            run_as,
        };
        pg.start_server();
        Some(pg)
    }

    fn start_server(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.file("postgres.log"))
            .expect("log file");
        let mut c = super::owned(self.bin.join("postgres"));
        c.arg("-D")
            .arg(self.dir.file("data"))
            .arg("-k")
            .arg(self.dir.path())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args([
                "-c",
                "fsync=off",
                "-c",
                "shared_buffers=16MB",
                "-c",
                "max_connections=60",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some((u, g)) = self.run_as {
            c.uid(u).gid(g);
        }
        self.child = Some(c.spawn().expect("start postgres"));
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "postgres exited ({st}) before it was ready:\n{}",
                    self.log()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.try_sql(None, "SELECT 1").is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < end,
                "postgres not ready in 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop the server (fast shutdown, SIGINT to its PID) and wait for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            super::stop_child(&mut c, 2, Duration::from_secs(30));
        }
    }

    /// Start the stopped server again (same data, same port).
    pub fn restart(&mut self) {
        self.stop();
        self.start_server();
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.file("postgres.log")).unwrap_or_default()
    }

    /// `postgres://user:pass@127.0.0.1:PORT/db`.
    pub fn url(&self, user: &str, pass: &str, db: &str) -> String {
        format!("postgres://{user}:{pass}@127.0.0.1:{}/{db}", self.port)
    }

    fn try_sql(&self, db: Option<&str>, stmt: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(self.dir.path())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db.unwrap_or("postgres"), "-c", stmt])
            .output()
            .map_err(|e| format!("run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Run `stmt` as the superuser over the socket; tab-separated rows.
    pub fn sql(&self, db: Option<&str>, stmt: &str) -> String {
        match self.try_sql(db, stmt) {
            Ok(s) => s,
            Err(e) => panic!("SQL failed: {stmt}\n{e}"),
        }
    }

    /// The environment for scripts/openserdbctl and openserctl against this server.
    pub fn script_env(&self) -> Vec<(String, String)> {
        vec![
            ("DBENGINE".into(), "PGSQL".into()),
            ("DBHOST".into(), self.dir.path().display().to_string()),
            ("DBPORT".into(), self.port.to_string()),
            ("PW".into(), String::new()),
            ("PSQL".into(), self.bin.join("psql").display().to_string()),
            (
                "PGDUMP".into(),
                self.bin.join("pg_dump").display().to_string(),
            ),
        ]
    }

    /// Run scripts/openser_postgresql.sh with `args` (rc files looked up under `home`).
    pub fn dbsh(&self, home: &Path, args: &[&str]) -> std::process::Output {
        Command::new("sh")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/openser_postgresql.sh"
            ))
            .args(args)
            .envs(self.script_env())
            .env("HOME", home)
            .output()
            .expect("run openser_postgresql.sh")
    }

    /// `openser_postgresql.sh create`: database `openser` with the 1.2 tables and the
    /// roles openser/openserrw and openserro/openserro. Panics on failure.
    pub fn create_openser_db(&self) {
        let out = self.dbsh(self.dir.path(), &["create"]);
        assert!(
            out.status.success(),
            "openser_postgresql.sh create failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
