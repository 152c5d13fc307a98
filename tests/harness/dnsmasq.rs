//! A throwaway dnsmasq for DNS tests: its own zone data given as command-line records
//! (`--srv-host`, `--naptr-record`, `--host-record`) plus an `--addn-hosts` file the
//! test may rewrite (re-read on SIGHUP), listening on 127.0.0.1 at a free port
//! (UDP and TCP), stopped by PID on drop. The server under test reaches it through a
//! private resolv.conf (`nameserver 127.0.0.1#port`, the `dns_resolv_conf` global).

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub struct Dnsmasq {
    pub child: Child,
    pub port: u16,
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
}

/// A port free for both UDP and TCP on 127.0.0.1.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let p = super::free_udp_port();
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port for dnsmasq");
}

impl Dnsmasq {
    /// Start dnsmasq with `ttl` seconds for its records, the `records` options and
    /// `hosts` as the contents of its hosts file; write `dir/resolv.conf` for it with
    /// `options` (e.g. `timeout:1 attempts:2`).
    pub fn start(dir: &Path, ttl: u32, records: &[String], hosts: &str, options: &str) -> Dnsmasq {
        // A port found free can be taken by a parallel test before dnsmasq binds it:
        // then dnsmasq exits, and another port is tried.
        let mut why = String::new();
        for _ in 0..3 {
            match Self::try_start(dir, ttl, records, hosts, options) {
                Ok(d) => return d,
                Err(e) => why = e,
            }
        }
        panic!("dnsmasq did not start: {why}");
    }

    fn try_start(
        dir: &Path,
        ttl: u32,
        records: &[String],
        hosts: &str,
        options: &str,
    ) -> Result<Dnsmasq, String> {
        let port = free_port();
        let hosts_path = dir.join(format!("dnsmasq-hosts-{port}"));
        std::fs::write(&hosts_path, hosts).unwrap();
        let log = std::fs::File::create(dir.join(format!("dnsmasq-{port}.log"))).unwrap();
        let child = super::owned("dnsmasq")
            .args([
                "--keep-in-foreground".to_string(),
                "--conf-file=/dev/null".into(),
                "--no-resolv".into(),
                "--no-hosts".into(),
                "--no-poll".into(),
                "--user=root".into(),
                "--bind-interfaces".into(),
                "--listen-address=127.0.0.1".into(),
                "--except-interface=nonexistent0".into(),
                format!("--port={port}"),
                format!("--local-ttl={ttl}"),
                format!("--neg-ttl={ttl}"),
                format!("--addn-hosts={}", hosts_path.display()),
                "--log-queries".into(),
                "--log-facility=-".into(),
            ])
            .args(records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dnsmasq");
        let resolv_conf = dir.join(format!("resolv-{port}.conf"));
        std::fs::write(
            &resolv_conf,
            format!("# dnsmasq of this test\nnameserver 127.0.0.1#{port}\noptions {options}\n"),
        )
        .unwrap();
        let mut d = Dnsmasq {
            child,
            port,
            hosts: hosts_path,
            resolv_conf,
        };
        // Ready when it answers a query.
        let until = Instant::now() + Duration::from_secs(10);
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let q = [
            0x12u8, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, b'p', b'r', b'o', b'b', b'e', 0, 0, 1,
            0, 1,
        ];
        loop {
            let _ = s.send_to(&q, ("127.0.0.1", port));
            let mut b = [0u8; 512];
            if crate::harness::recv_from(&s, &mut b).is_ok() {
                return Ok(d);
            }
            let log = || {
                std::fs::read_to_string(dir.join(format!("dnsmasq-{port}.log"))).unwrap_or_default()
            };
            if let Ok(Some(st)) = d.child.try_wait() {
                return Err(format!("on port {port} it exited ({st}): {}", log()));
            }
            if Instant::now() >= until {
                d.stop();
                return Err(format!("no answer on port {port} in 10 s: {}", log()));
            }
        }
    }

    /// Replace the hosts file and make dnsmasq re-read it.
    pub fn set_hosts(&self, hosts: &str) {
        std::fs::write(&self.hosts, hosts).unwrap();
        self.signal(libc_sighup());
        std::thread::sleep(Duration::from_millis(300));
    }

    fn signal(&self, sig: i32) {
        super::signal_pid(self.child.id(), sig);
    }

    /// Stop it (the name server is down from now on).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn libc_sighup() -> i32 {
    1
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}
