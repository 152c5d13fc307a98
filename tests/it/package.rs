//! `make deb`'s package on this machine (issue 19): built from the test binary by
//! packaging/deb/build-deb.sh, installed with `dpkg -i`, started through its init
//! script (fork=yes, pid file, running as the `openser` user made by postinst),
//! answered an OPTIONS, asked `openserctl ps` over the packaged FIFO, stopped and
//! purged; nothing of it may remain but the `openser` system user and group (kept on
//! purge, as Debian policy has it). Needs root; several runs on one machine take turns
//! (a lock file), and the packaged config is moved off 5060 to a free port first.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::harness::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What the package installs (all gone after the purge).
const FILES: &[&str] = &[
    "/usr/sbin/openser",
    "/usr/sbin/openserctl",
    "/usr/sbin/openserdbctl",
    "/usr/sbin/openser_mysql.sh",
    "/usr/share/openser/openserdb.schema",
    "/etc/openser/openser.cfg",
    "/etc/openser/openserctlrc",
    "/etc/default/openser",
    "/etc/init.d/openser",
    "/lib/systemd/system/openser.service",
    "/usr/share/man/man8/openser.8.gz",
    "/usr/share/man/man8/openserctl.8.gz",
    "/usr/share/man/man5/openser.cfg.5.gz",
    "/usr/share/doc/openser/copyright",
];

fn sh(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// dpkg with `args`, retried while another dpkg/apt holds the lock (up to 5 min).
fn dpkg(args: &[&str]) -> Output {
    let end = Instant::now() + Duration::from_secs(300);
    loop {
        let o = Command::new("dpkg")
            .args(args)
            .env("OPENSER_NO_START", "1")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("dpkg");
        if o.status.success() || !text(&o).contains("lock") || Instant::now() > end {
            return o;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn installed() -> bool {
    sh("dpkg-query", &["-W", "-f=${Status}", "openser"])
        .stdout
        .starts_with(b"install ok")
}

/// Stops the service and purges the package however the test ends.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        if Path::new("/etc/init.d/openser").exists() {
            let _ = sh("/etc/init.d/openser", &["stop"]);
        }
        if installed() || Path::new("/etc/openser").exists() {
            let _ = dpkg(&["--purge", "openser"]);
        }
    }
}

#[test]
fn deb_builds_installs_starts_answers_stops_and_purges() {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        skip("installing a package needs root");
        return;
    }
    if !require("dpkg-deb") || !require("flock") {
        return;
    }
    // One run at a time on this machine (other worktrees run the same test).
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/run/lock/openser-rs-package-test.lock")
        .or_else(|_| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(std::env::temp_dir().join("openser-rs-package-test.lock"))
        })
        .expect("lock file");
    let flock = Command::new("flock")
        .args(["-w", "600", "-x", "0"])
        .stdin(lock.try_clone().unwrap())
        .status()
        .expect("flock");
    assert!(flock.success(), "another package test held the lock 10 min");
    // flock(1) took the lock on our open file description: it stays ours until `lock`
    // is closed at the end of the test.

    // A package left by an interrupted run is ours to remove; any other is not.
    if installed() {
        let who = sh("dpkg-query", &["-W", "-f=${Maintainer}", "openser"]);
        assert!(
            String::from_utf8_lossy(&who.stdout).contains("openser-rs"),
            "a foreign openser package is installed; not touching it"
        );
        let o = dpkg(&["--purge", "openser"]);
        assert!(o.status.success(), "{}", text(&o));
    }

    // Build from the binary under test (make deb packages the release binary).
    let out = TempDir::new("deb");
    let bin = env!("CARGO_BIN_EXE_openser");
    let b = Command::new("sh")
        .arg(format!("{ROOT}/packaging/deb/build-deb.sh"))
        .args([bin, out.path().to_str().unwrap()])
        .env("DEB_COMPRESS", "gzip")
        .output()
        .expect("build-deb.sh");
    assert!(b.status.success(), "{}", text(&b));
    let deb = String::from_utf8_lossy(&b.stdout).trim().to_string();
    assert!(deb.ends_with(".deb") && Path::new(&deb).exists(), "{deb}");
    let info = text(&sh("dpkg-deb", &["-f", &deb, "Package", "Depends"]));
    assert!(info.contains("Package: openser"), "{info}");
    let conffiles = text(&sh("dpkg-deb", &["-I", &deb, "conffiles"]));
    for c in [
        "/etc/openser/openser.cfg",
        "/etc/openser/openserctlrc",
        "/etc/default/openser",
    ] {
        assert!(conffiles.contains(c), "{c} not a conffile: {conffiles}");
    }

    let _cleanup = Cleanup;
    let o = dpkg(&["-i", &deb]);
    assert!(o.status.success(), "dpkg -i: {}", text(&o));
    for f in FILES {
        assert!(Path::new(f).exists(), "{f} not installed");
    }
    let id = sh("id", &["-u", "openser"]);
    assert!(id.status.success(), "postinst made no openser user");
    let uid = String::from_utf8_lossy(&id.stdout).trim().to_string();

    // Off 5060 (other servers of the test suite or the benchmarks may have it).
    let port = free_udp_port();
    let cfg = std::fs::read_to_string("/etc/openser/openser.cfg").unwrap();
    assert!(cfg.contains("fork=yes") && cfg.contains("mi_fifo"), "{cfg}");
    let cfg = cfg
        .replace(
            "listen=udp:127.0.0.1:5060",
            &format!("listen=udp:127.0.0.1:{port}"),
        )
        .replace("port=5060", &format!("port={port}"));
    std::fs::write("/etc/openser/openser.cfg", cfg).unwrap();

    let st = sh("/etc/init.d/openser", &["start"]);
    assert!(st.status.success(), "init start: {}", text(&st));
    let pid: i32 = std::fs::read_to_string("/run/openser/openser.pid")
        .expect("pid file")
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ruid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    assert_eq!(ruid, uid, "the server runs as openser");
    let status = sh("/etc/init.d/openser", &["status"]);
    assert!(status.status.success(), "{}", text(&status));

    // OPTIONS to the server itself: the options module answers 200.
    assert!(
        wait_udp_bound(port, Duration::from_secs(10)),
        "nothing on {port}"
    );
    let c = Client::new();
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    c.send(
        to,
        &request(
            "OPTIONS",
            &format!("sip:127.0.0.1:{port}"),
            c.port(),
            "pkg1",
            1,
            "",
        ),
    );
    let (reply, _) = c
        .recv_timeout(Duration::from_secs(5))
        .expect("no answer to OPTIONS from the packaged server");
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");

    // openserctl ps with the packaged openserctlrc and FIFO.
    let ps = Command::new("/usr/sbin/openserctl")
        .arg("ps")
        .env("HOME", out.path())
        .output()
        .unwrap();
    let pst = text(&ps);
    assert!(
        ps.status.success() && pst.contains("attendant") && pst.contains("timer"),
        "openserctl ps: {pst}"
    );

    let st = sh("/etc/init.d/openser", &["stop"]);
    assert!(st.status.success(), "init stop: {}", text(&st));
    let end = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "the server did not stop");
    assert!(!Path::new("/run/openser/openser.pid").exists());
    assert!(!Path::new("/tmp/openser_fifo").exists(), "FIFO left behind");

    let o = dpkg(&["--purge", "openser"]);
    assert!(o.status.success(), "dpkg --purge: {}", text(&o));
    assert!(!installed());
    for f in FILES.iter().chain(&[
        "/etc/openser",
        "/run/openser",
        "/usr/share/openser",
        "/usr/share/doc/openser",
        "/etc/systemd/system/multi-user.target.wants/openser.service",
    ]) {
        assert!(!Path::new(f).exists(), "{f} left after the purge");
    }
    for rc in [
        "rc0.d", "rc1.d", "rc2.d", "rc3.d", "rc4.d", "rc5.d", "rc6.d",
    ] {
        if let Ok(d) = std::fs::read_dir(Path::new("/etc").join(rc)) {
            for e in d.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                assert!(
                    !n.ends_with("openser"),
                    "/etc/{rc}/{n} left after the purge"
                );
            }
        }
    }
    let left = sh("dpkg-query", &["-W", "openser"]);
    assert!(
        !left.status.success(),
        "dpkg still knows openser: {}",
        text(&left)
    );
    // The system user stays (Debian policy); its id is not reused by anyone else.
    assert!(sh("id", &["-u", "openser"]).status.success());
    drop(lock);
}
