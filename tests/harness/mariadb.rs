//! A private, throwaway MariaDB server for tests that need MySQL: its own data directory
//! under the temp dir, a Unix socket there, a free TCP port on 127.0.0.1, root over the
//! socket without a password. Killed and removed on drop.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TempDir, have, skip};

pub struct MariaDb {
    child: Child,
    dir: TempDir,
    port: u16,
}

pub(super) fn free_tcp_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind ephemeral TCP port");
    l.local_addr().unwrap().port()
}

impl MariaDb {
    /// Start a server; `None` (after a loud SKIPPED line) when `mariadbd` is not
    /// installed, a panic instead when `CI=true`.
    pub fn start() -> Option<MariaDb> {
        if !have("mariadbd") && !Path::new("/usr/sbin/mariadbd").exists() {
            skip("mariadbd is not installed (Debian mariadb-server)");
            return None;
        }
        let dir = TempDir::new("mariadb");
        let data = dir.file("data");
        // A private tmpdir: servers bootstrapping in parallel collide on temporary
        // table names in a shared one.
        let tmp = dir.file("tmp");
        std::fs::create_dir_all(&tmp).expect("create tmpdir");
        install_db(&data, &tmp);
        let port = free_tcp_port();
        let sock = dir.file("sock");
        let log = std::fs::File::create(dir.file("mariadbd.log")).expect("log file");
        let child = super::owned(tool("mariadbd"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--user=root")
            .arg(format!("--pid-file={}", dir.file("mariadbd.pid").display()))
            .arg("--innodb-buffer-pool-size=16M")
            .arg("--skip-log-bin")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start mariadbd");
        let mut db = MariaDb { child, dir, port };
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = db.child.try_wait() {
                panic!("mariadbd exited ({st}) before it was ready:\n{}", db.log());
            }
            if sock.exists()
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
                && db.try_sql(None, "SELECT 1").is_ok()
            {
                return Some(db);
            }
            assert!(
                Instant::now() < end,
                "mariadbd not ready in 60 s:\n{}",
                db.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.file("sock")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.file("mariadbd.log")).unwrap_or_default()
    }

    /// `mysql://user:pass@127.0.0.1:PORT/db`.
    pub fn url(&self, user: &str, pass: &str, db: &str) -> String {
        format!("mysql://{user}:{pass}@127.0.0.1:{}/{db}", self.port)
    }

    fn try_sql(&self, db: Option<&str>, stmt: &str) -> Result<String, String> {
        try_sql_at(&self.socket(), db, stmt)
    }

    /// Run scripts/openser_mysql.sh with `args` against this server (root over the
    /// socket, no password; rc files looked up under `home`).
    pub fn dbsh(&self, home: &Path, args: &[&str]) -> std::process::Output {
        dbsh_at(&self.socket(), home, args)
    }

    /// `openser_mysql.sh create`: database `openser` with the 1.2 tables and the users
    /// openser/openserrw and openserro/openserro. Panics on failure.
    pub fn create_openser_db(&self) {
        create_openser_db_at(&self.socket(), self.dir.path());
    }

    /// Run `stmt` as root over the socket; tab-separated rows, no column names.
    pub fn sql(&self, db: Option<&str>, stmt: &str) -> String {
        match self.try_sql(db, stmt) {
            Ok(s) => s,
            Err(e) => panic!("SQL failed: {stmt}\n{e}"),
        }
    }
}

/// `mariadb-install-db` into `data` (root authenticated over the socket, no test db).
pub(super) fn install_db(data: &Path, tmp: &Path) {
    let out = Command::new(tool("mariadb-install-db"))
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--user=root")
        .arg("--skip-test-db")
        .output()
        .expect("run mariadb-install-db");
    assert!(
        out.status.success(),
        "mariadb-install-db failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `stmt` as root over the Unix socket `sock`; tab-separated rows, no column names.
pub(super) fn try_sql_at(sock: &Path, db: Option<&str>, stmt: &str) -> Result<String, String> {
    let mut c = Command::new(tool("mariadb"));
    c.arg("--no-defaults")
        .arg(format!("--socket={}", sock.display()))
        .arg("--user=root")
        .arg("--batch")
        .arg("--skip-column-names")
        .arg("-e")
        .arg(stmt);
    if let Some(db) = db {
        c.arg(db);
    }
    let out = c.output().map_err(|e| format!("run mariadb: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// scripts/openser_mysql.sh with `args` against the server on socket `sock`.
pub(super) fn dbsh_at(sock: &Path, home: &Path, args: &[&str]) -> std::process::Output {
    Command::new("sh")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/openser_mysql.sh"
        ))
        .args(args)
        .env("DBSOCKET", sock)
        .env("PW", "")
        .env("HOME", home)
        .output()
        .expect("run openser_mysql.sh")
}

/// `openser_mysql.sh create` on the server at `sock`; panics on failure.
pub(super) fn create_openser_db_at(sock: &Path, home: &Path) {
    let out = dbsh_at(sock, home, &["create"]);
    assert!(
        out.status.success(),
        "openser_mysql.sh create failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A MariaDB program: from PATH, else the Debian location.
pub(super) fn tool(name: &str) -> String {
    if have(name) {
        return name.to_string();
    }
    for d in ["/usr/sbin", "/usr/bin"] {
        let p = Path::new(d).join(name);
        if p.exists() {
            return p.display().to_string();
        }
    }
    name.to_string()
}

impl MariaDb {
    /// Stop the server (SIGTERM to its PID: a clean shutdown) and wait for it.
    pub fn stop(&mut self) {
        super::stop_child(&mut self.child, 15, Duration::from_secs(30));
    }

    /// Start the stopped server again: same data, socket and port.
    pub fn start_again(&mut self) {
        let data = self.dir.file("data");
        let tmp = self.dir.file("tmp");
        let sock = self.socket();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.file("mariadbd.log"))
            .expect("log file");
        self.child = super::owned(tool("mariadbd"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg("--user=root")
            .arg(format!(
                "--pid-file={}",
                self.dir.file("mariadbd.pid").display()
            ))
            .arg("--innodb-buffer-pool-size=16M")
            .arg("--skip-log-bin")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start mariadbd");
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("mariadbd exited ({st}) on restart:\n{}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.try_sql(None, "SELECT 1").is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < end,
                "mariadbd not ready in 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
