//! Network namespaces for NAT tests: a LAN, a NAT router and a WAN, joined by veth
//! pairs, with nftables masquerading on the router and a short UDP conntrack timeout.
//!
//! ```text
//!  LAN ns                NAT ns                              WAN ns
//!  phone 10.77.0.2 ---- 10.77.0.1 | 203.0.113.1 (masquerade) ---- 203.0.113.2 proxy, relay
//!                                                                 203.0.113.3 caller
//! ```
//!
//! Every name carries the test process's pid and a counter, so tests run in parallel
//! with their own namespaces (the addresses repeat, but each set lives in its own
//! namespaces). [`Topo`]'s `Drop` deletes the namespaces, which removes the veth pairs
//! — also when a test fails half-way. Processes started in a namespace ([`NsProc`])
//! are killed by their own `Drop` first (declare them after the `Topo`). Traffic only
//! ever goes to these addresses. Needs root (`ip netns`, `nft`).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub const PHONE_IP: &str = "10.77.0.2";
pub const NAT_LAN_IP: &str = "10.77.0.1";
pub const NAT_WAN_IP: &str = "203.0.113.1";
pub const PROXY_IP: &str = "203.0.113.2";
pub const CALLER_IP: &str = "203.0.113.3";

static N: AtomicUsize = AtomicUsize::new(0);

/// The three namespaces of one test.
pub struct Topo {
    pub lan: String,
    pub nat: String,
    pub wan: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Run `cmd` in namespace `ns` and wait for it.
pub fn ns_run(ns: &str, cmd: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("ip netns exec")
}

fn ns_ok(ns: &str, cmd: &[&str]) -> Result<(), String> {
    let o = ns_run(ns, cmd);
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{ns}: {}: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

/// Whether this process may build namespaces (root with `ip` and `nft`).
pub fn available() -> Result<(), String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Err("network namespace tests need root".into());
    }
    for c in ["ip", "nft"] {
        if !super::have(c) {
            return Err(format!("`{c}` is not installed"));
        }
    }
    Ok(())
}

impl Topo {
    /// Build the topology; the router forgets an idle UDP mapping after
    /// `udp_timeout_s` seconds.
    pub fn new(udp_timeout_s: u32) -> Result<Topo, String> {
        let id = format!(
            "{}x{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::SeqCst)
        );
        let t = Topo {
            lan: format!("osl{id}"),
            nat: format!("osn{id}"),
            wan: format!("osw{id}"),
        };
        for ns in [&t.lan, &t.nat, &t.wan] {
            ip(&["netns", "add", ns])?;
        }
        // Interface names are limited to 15 bytes.
        let (la, lb) = (format!("l{id}a"), format!("l{id}b"));
        let (wa, wb) = (format!("w{id}a"), format!("w{id}b"));
        ip(&["link", "add", &la, "type", "veth", "peer", "name", &lb])?;
        ip(&["link", "set", &la, "netns", &t.lan])?;
        ip(&["link", "set", &lb, "netns", &t.nat])?;
        ip(&["link", "add", &wa, "type", "veth", "peer", "name", &wb])?;
        ip(&["link", "set", &wa, "netns", &t.wan])?;
        ip(&["link", "set", &wb, "netns", &t.nat])?;
        let lan_cidr = format!("{PHONE_IP}/24");
        let natl_cidr = format!("{NAT_LAN_IP}/24");
        let natw_cidr = format!("{NAT_WAN_IP}/24");
        let proxy_cidr = format!("{PROXY_IP}/24");
        let caller_cidr = format!("{CALLER_IP}/24");
        ip(&["-n", &t.lan, "addr", "add", &lan_cidr, "dev", &la])?;
        ip(&["-n", &t.nat, "addr", "add", &natl_cidr, "dev", &lb])?;
        ip(&["-n", &t.nat, "addr", "add", &natw_cidr, "dev", &wb])?;
        ip(&["-n", &t.wan, "addr", "add", &proxy_cidr, "dev", &wa])?;
        ip(&["-n", &t.wan, "addr", "add", &caller_cidr, "dev", &wa])?;
        for (ns, dev) in [(&t.lan, &la), (&t.nat, &lb), (&t.nat, &wb), (&t.wan, &wa)] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        for ns in [&t.lan, &t.nat, &t.wan] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&["-n", &t.lan, "route", "add", "default", "via", NAT_LAN_IP])?;
        ns_ok(&t.nat, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        let rules = format!(
            "table ip nat {{\n chain post {{\n  type nat hook postrouting priority 100;\n  \
             oifname \"{wb}\" masquerade\n }}\n}}\n"
        );
        let rules_file = std::env::temp_dir().join(format!("openser-nft-{id}.nft"));
        std::fs::write(&rules_file, rules).map_err(|e| e.to_string())?;
        let r = ns_ok(&t.nat, &["nft", "-f", &rules_file.display().to_string()]);
        let _ = std::fs::remove_file(&rules_file);
        r?;
        let to = udp_timeout_s.to_string();
        ns_ok(
            &t.nat,
            &[
                "sysctl",
                "-qw",
                &format!("net.netfilter.nf_conntrack_udp_timeout={to}"),
                &format!("net.netfilter.nf_conntrack_udp_timeout_stream={to}"),
            ],
        )?;
        Ok(t)
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        for ns in [&self.lan, &self.nat, &self.wan] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// A process running in a namespace, killed (SIGTERM, then SIGKILL) when dropped.
pub struct NsProc {
    pub child: Option<Child>,
    pub name: String,
}

impl NsProc {
    /// Start `cmd` in `ns` with stdout/stderr to `log`.
    pub fn spawn(ns: &str, cmd: &[&str], env: &[(&str, String)], log: &Path, name: &str) -> NsProc {
        let f = std::fs::File::create(log).expect("create log");
        let f2 = f.try_clone().expect("clone log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(cmd)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        NsProc {
            child: Some(child),
            name: name.to_string(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn signal(&self, sig: i32) {
        super::signal_pid(self.pid() as u32, sig);
    }

    /// Wait for the process to end by itself (at most `t`); its exit success.
    pub fn wait(&mut self, t: Duration) -> Option<bool> {
        let st = super::wait_child(self.child.as_mut()?, t)?;
        self.child = None;
        Some(st.success())
    }

    pub fn stop(&mut self) {
        if self.child.is_some() {
            self.signal(18); // SIGCONT, in case a test stopped it
            self.signal(15);
            if self.wait(Duration::from_secs(5)).is_none()
                && let Some(mut c) = self.child.take()
            {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for NsProc {
    fn drop(&mut self) {
        self.stop();
    }
}
