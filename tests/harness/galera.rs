//! A throwaway 3-node MariaDB Galera cluster on 127.0.0.1 for tests: each node its own
//! data directory under one temp dir, its own Unix socket and four free ports (SQL,
//! group communication, IST, SST). Node 1 bootstraps the cluster (`--wsrep-new-cluster`
//! on an installed data directory), nodes 2 and 3 join with an empty one and get the
//! state by rsync SST; a node stopped later rejoins with its data (IST from the gcache).
//! Every node is stopped by its PID (SIGTERM, then SIGKILL) and the directory removed
//! on drop.
//!
//! Run as root, the SST's rsync daemon switches to the user `nobody` (rsync's default
//! for a daemon started by root); a joiner's empty data directory is therefore given to
//! `nobody`, so that the transfer can write into it. The server itself still runs as
//! root (`--user=root`) and reads what was transferred.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::mariadb::{create_openser_db_at, free_tcp_port, install_db, tool, try_sql_at};
use super::{TempDir, have, skip};

/// The Galera provider library of the Debian package galera-4.
const PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";

/// How long a node may take to reach `Synced` (SST of a fresh data directory included).
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// One node: its ports and its process (`None` while stopped).
pub struct GaleraNode {
    pub sql_port: u16,
    gcomm_port: u16,
    ist_port: u16,
    sst_port: u16,
    child: Option<Child>,
}

pub struct Galera {
    dir: TempDir,
    pub nodes: Vec<GaleraNode>,
    /// How long the cluster took to have every node `Synced` (reported by the tests).
    pub startup: Duration,
}

/// Is the Galera stack installed (mariadbd, the provider, rsync)? Skips (fails in CI)
/// otherwise.
pub fn available() -> bool {
    if !have("mariadbd") && !Path::new("/usr/sbin/mariadbd").exists() {
        skip("mariadbd is not installed (Debian mariadb-server)");
        return false;
    }
    if !Path::new(PROVIDER).exists() {
        skip("the Galera provider is not installed (Debian galera-4)");
        return false;
    }
    if !have("rsync") {
        skip("rsync is not installed (Galera's rsync SST)");
        return false;
    }
    true
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

impl Galera {
    /// Start a cluster of `n` nodes and wait until every node is `Synced` and the
    /// cluster size is `n`; then create the openser database (replicated to all).
    /// `None` (after a SKIPPED line) when Galera is not installed.
    pub fn start(n: usize) -> Option<Galera> {
        if !available() {
            return None;
        }
        let t0 = Instant::now();
        let dir = TempDir::new("galera");
        let nodes = (0..n)
            .map(|_| GaleraNode {
                sql_port: free_tcp_port(),
                gcomm_port: free_tcp_port(),
                ist_port: free_tcp_port(),
                sst_port: free_tcp_port(),
                child: None,
            })
            .collect();
        let mut g = Galera {
            dir,
            nodes,
            startup: Duration::ZERO,
        };
        for i in 0..n {
            let data = g.data(i);
            let tmp = g.node_dir(i).join("tmp");
            std::fs::create_dir_all(&tmp).expect("create tmpdir");
            if i == 0 {
                install_db(&data, &tmp);
            } else {
                std::fs::create_dir_all(&data).expect("create datadir");
                if running_as_root() {
                    let st = Command::new("chown")
                        .arg("nobody")
                        .arg(&data)
                        .status()
                        .expect("run chown");
                    assert!(st.success(), "chown nobody {}", data.display());
                }
            }
            g.spawn(i, i == 0);
            g.wait_synced(i);
        }
        assert_eq!(g.status(0, "wsrep_cluster_size"), n.to_string());
        g.startup = t0.elapsed();
        create_openser_db_at(&g.socket(0), g.dir.path());
        // The schema is replicated: wait until every node sees the location table.
        for i in 1..n {
            g.wait_for(i, "SELECT COUNT(*) FROM openser.location", "0");
        }
        Some(g)
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.file(&format!("node{}", i + 1))
    }

    fn data(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("data")
    }

    /// Node `i`'s Unix socket (root without password).
    pub fn socket(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("sock")
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.node_dir(i).join("mariadbd.log")).unwrap_or_default()
    }

    /// `mysql://user:pass@127.0.0.1:PORT/db` of node `i`.
    pub fn url(&self, i: usize, user: &str, pass: &str, db: &str) -> String {
        format!(
            "mysql://{user}:{pass}@127.0.0.1:{}/{db}",
            self.nodes[i].sql_port
        )
    }

    /// The read-write openser user's URL of node `i`.
    pub fn openser_url(&self, i: usize) -> String {
        self.url(i, "openser", "openserrw", "openser")
    }

    fn spawn(&mut self, i: usize, bootstrap: bool) {
        let addr = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.gcomm_port))
            .collect::<Vec<_>>()
            .join(",");
        let nd = self.node_dir(i);
        let node = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(nd.join("mariadbd.log"))
            .expect("log file");
        let mut c = super::owned(tool("mariadbd"));
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", nd.join("data").display()))
            .arg(format!("--socket={}", nd.join("sock").display()))
            .arg(format!("--tmpdir={}", nd.join("tmp").display()))
            .arg(format!("--pid-file={}", nd.join("mariadbd.pid").display()))
            .arg(format!("--port={}", node.sql_port))
            .arg("--bind-address=127.0.0.1")
            .arg("--user=root")
            .arg("--innodb-buffer-pool-size=16M")
            .arg("--innodb-log-file-size=8M")
            .arg("--binlog-format=ROW")
            .arg("--innodb-autoinc-lock-mode=2")
            .arg("--wsrep-on=ON")
            .arg(format!("--wsrep-provider={PROVIDER}"))
            .arg(format!("--wsrep-cluster-address=gcomm://{addr}"))
            .arg("--wsrep-cluster-name=openser-test")
            .arg(format!("--wsrep-node-name=node{}", i + 1))
            .arg(format!(
                "--wsrep-node-address=127.0.0.1:{}",
                node.gcomm_port
            ))
            .arg(format!(
                "--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:{}; \
                 ist.recv_addr=127.0.0.1:{}; gcache.size=32M",
                node.gcomm_port, node.ist_port
            ))
            .arg(format!(
                "--wsrep-sst-receive-address=127.0.0.1:{}",
                node.sst_port
            ))
            .arg("--wsrep-sst-method=rsync");
        if bootstrap {
            c.arg("--wsrep-new-cluster");
        }
        let child = c
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start mariadbd (galera)");
        self.nodes[i].child = Some(child);
    }

    /// A `SHOW STATUS` value of node `i` (empty when it does not answer).
    pub fn status(&self, i: usize, var: &str) -> String {
        try_sql_at(&self.socket(i), None, &format!("SHOW STATUS LIKE '{var}'"))
            .ok()
            .and_then(|s| s.split('\t').nth(1).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    }

    /// Run `stmt` as root on node `i`; panics on failure.
    pub fn sql(&self, i: usize, stmt: &str) -> String {
        try_sql_at(&self.socket(i), None, stmt)
            .unwrap_or_else(|e| panic!("SQL on node {} failed: {stmt}\n{e}", i + 1))
    }

    fn wait_synced(&mut self, i: usize) {
        let end = Instant::now() + SYNC_TIMEOUT;
        loop {
            if let Some(Ok(Some(st))) = self.nodes[i].child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "galera node {} exited ({st}) before it was synced:\n{}",
                    i + 1,
                    self.log(i)
                );
            }
            if TcpStream::connect(("127.0.0.1", self.nodes[i].sql_port)).is_ok()
                && self.status(i, "wsrep_local_state_comment") == "Synced"
                && self.status(i, "wsrep_ready") == "ON"
            {
                return;
            }
            assert!(
                Instant::now() < end,
                "galera node {} not synced in {SYNC_TIMEOUT:?}:\n{}",
                i + 1,
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait (up to 30 s) until `stmt` on node `i` returns `want` (trimmed); panics
    /// with the last answer otherwise.
    pub fn wait_for(&self, i: usize, stmt: &str, want: &str) {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let got = try_sql_at(&self.socket(i), None, stmt);
            if got.as_deref().map(str::trim) == Ok(want) {
                return;
            }
            assert!(
                Instant::now() < end,
                "node {}: `{stmt}` gave {got:?}, waited for {want}",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// Send node `i` SIGTERM without waiting (it leaves the cluster cleanly while the
    /// caller carries on); [`Galera::stop_node`] then waits for it.
    pub fn begin_stop(&self, i: usize) {
        if let Some(c) = &self.nodes[i].child {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
        }
    }

    /// Stop node `i` (SIGTERM to its PID: it leaves the cluster cleanly) and wait.
    pub fn stop_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            super::stop_child(&mut c, 15, Duration::from_secs(60));
        }
    }

    /// Start the stopped node `i` again with its data: it rejoins (IST, or SST when
    /// the gcache no longer covers the gap) and this returns once it is `Synced`.
    pub fn restart_node(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_none(), "node {} is running", i + 1);
        self.spawn(i, false);
        self.wait_synced(i);
    }
}

impl Drop for Galera {
    fn drop(&mut self) {
        // SIGTERM to every node first, so that they shut down in parallel.
        for n in &self.nodes {
            if let Some(c) = &n.child {
                let _ = Command::new("kill").arg(c.id().to_string()).status();
            }
        }
        let end = Instant::now() + Duration::from_secs(20);
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                loop {
                    if let Ok(Some(_)) = c.try_wait() {
                        break;
                    }
                    if Instant::now() >= end {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}
