//! Process model, command line, logging (issue 2).

use crate::harness::*;
use std::time::Duration;

const MINIMAL: &str = "listen=udp:127.0.0.1:{PORT}\nchildren=4\n";

#[test]
fn forked_foreground_has_attendant_receivers_and_timer() {
    let mut s = Server::start(MINIMAL, &["-DD", "-E"]);
    let kids = children_of(s.pid());
    // 4 receivers + timer, all children of the attendant.
    assert_eq!(kids.len(), 5, "children: {kids:?}\n{}", s.log());
    let st = s.stop();
    assert!(st.success(), "exit status {st:?}");
    for k in kids {
        assert!(!alive(k), "child {k} survived shutdown");
    }
}

#[test]
fn children_count_from_command_line_overrides_config() {
    let mut s = Server::start(MINIMAL, &["-DD", "-E", "-n", "2"]);
    assert_eq!(children_of(s.pid()).len(), 3, "{}", s.log());
    assert!(s.stop().success());
}

#[test]
fn no_fork_serves_first_socket_only() {
    let p1 = free_udp_port();
    let p2 = free_udp_port();
    let cfg = format!(
        "listen=udp:127.0.0.1:{p1}\nlisten=udp:127.0.0.1:{p2}\n\
         loadmodule \"sl.so\"\nloadmodule \"xlog.so\"\n\
         route {{ xlog(\"L_ERR\", \"served-by=$pp\\n\"); sl_send_reply(\"200\", \"OK\"); }}\n"
    );
    let mut s = Server::start_on(p1, &cfg, &["-D", "-E"]);
    // Only the timer is forked; the attendant itself receives.
    assert_eq!(children_of(s.pid()).len(), 1, "{}", s.log());
    assert!(
        s.log().contains("using only the first listen address"),
        "{}",
        s.log()
    );
    let c = Client::new();
    c.send(
        s.addr(),
        &request("OPTIONS", "sip:a@127.0.0.1", c.port(), "nofork1", 1, ""),
    );
    let (reply, _) = c.recv().expect("no reply from the stand-alone receiver");
    assert!(reply.starts_with("SIP/2.0 200 OK"), "{reply}");
    assert!(
        s.wait_log("served-by=", Duration::from_secs(3)),
        "{}",
        s.log()
    );
    assert!(
        s.log().contains(&format!("served-by={}", s.pid())),
        "{}",
        s.log()
    );
    // The second socket is not served.
    c.send(
        std::net::SocketAddr::from(([127, 0, 0, 1], p2)),
        &request("OPTIONS", "sip:a@127.0.0.1", c.port(), "nofork2", 1, ""),
    );
    assert!(c.recv_timeout(Duration::from_millis(500)).is_none());
    assert!(s.stop().success());
}

#[test]
fn daemon_mode_writes_pid_file_and_stops_cleanly() {
    let dir = TempDir::new("daemon");
    let port = free_udp_port();
    let cfg = dir.file("d.cfg");
    std::fs::write(
        &cfg,
        format!("listen=udp:127.0.0.1:{port}\nchildren=2\nfork=yes\n"),
    )
    .unwrap();
    let pidf = dir.file("openser.pid");
    // The daemon keeps stderr (-E), so the launcher's stderr goes to a file, not a pipe.
    let errf = dir.file("stderr.log");
    let st = std::process::Command::new(BIN)
        .args([
            "-f",
            cfg.to_str().unwrap(),
            "-P",
            pidf.to_str().unwrap(),
            "-E",
            "-w",
            dir.path().to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&errf).unwrap())
        .status()
        .unwrap();
    assert!(
        st.success(),
        "launcher exit {st:?}: {}",
        std::fs::read_to_string(&errf).unwrap_or_default()
    );
    assert!(wait_udp_bound(port, Duration::from_secs(5)));
    let mut pid = 0;
    for _ in 0..100 {
        if let Ok(t) = std::fs::read_to_string(&pidf)
            && let Ok(p) = t.trim().parse::<i32>()
        {
            pid = p;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(pid > 0 && alive(pid), "pid file {pidf:?} not written");
    std::thread::sleep(Duration::from_millis(200));
    let kids = children_of(pid);
    assert_eq!(kids.len(), 3, "2 receivers + timer expected, got {kids:?}");
    // After setsid and the second fork the daemon is in a session of its own (led
    // by the vanished first child), not in ours, and has no controlling terminal.
    let fields = |p: String| -> Vec<String> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap();
        stat.rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let d = fields(pid.to_string());
    let me = fields("self".into());
    assert_ne!(d[3], me[3], "daemon still in the test's session");
    assert_eq!(d[2], d[3], "daemon's process group must be its session's");
    assert_eq!(d[4], "0", "daemon must have no controlling terminal");
    std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap();
    for _ in 0..250 {
        if !alive(pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "daemon still running");
    for k in kids {
        assert!(!alive(k), "child {k} still running");
    }
    assert!(!pidf.exists(), "pid file not removed");
}

#[test]
fn running_pid_file_refuses_second_start() {
    let dir = TempDir::new("pidtwice");
    let pidf = dir.file("p.pid");
    // Our own (live) pid in the file.
    std::fs::write(&pidf, format!("{}\n", std::process::id())).unwrap();
    let port = free_udp_port();
    let cfg = dir.file("c.cfg");
    std::fs::write(&cfg, format!("listen=udp:127.0.0.1:{port}\n")).unwrap();
    let (code, _, err) = run(&[
        "-f",
        cfg.to_str().unwrap(),
        "-P",
        pidf.to_str().unwrap(),
        "-DD",
        "-E",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("running process found in the pid file"),
        "{err}"
    );
}

#[test]
fn killed_receiver_takes_the_server_down_with_respawn_children_no() {
    // 1.2's behaviour, kept by `respawn_children=no` (the default replaces the dead
    // child: see respawn.rs).
    let cfg = format!("respawn_children=no\n{MINIMAL}");
    let mut s = Server::start(&cfg, &["-DD", "-E"]);
    let kids = children_of(s.pid());
    assert_eq!(kids.len(), 5);
    let victim = kids[0];
    std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    let st = s
        .wait_exit(Duration::from_secs(10))
        .expect("server did not exit after a child died");
    assert!(!st.success(), "exit status must be non-zero, got {st:?}");
    let log = s.log();
    assert!(
        log.contains(&format!(
            "child process {victim} (receiver child=0 sock= 127.0.0.1:{})",
            s.port
        )) && log.contains("signal 9"),
        "log must name the dead child:\n{log}"
    );
    assert!(
        log.contains("terminating due to SIGCHLD") && !log.contains("respawned"),
        "{log}"
    );
    std::thread::sleep(Duration::from_millis(100));
    for k in kids {
        assert!(!alive(k), "child {k} survived");
    }
}

#[test]
fn unknown_option_and_bad_values() {
    let (code, _, err) = run(&["-p", "5060"]);
    assert_ne!(code, 0);
    assert!(err.contains("Unknown option '-p'"), "{err}");
    let (code, _, err) = run(&["-m", "lots"]);
    assert_ne!(code, 0);
    assert!(err.contains("-m"), "{err}");
}

#[test]
fn version_and_help() {
    let (code, out, _) = run(&["-V"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("version: openser 1.2.0"), "{out}");
    assert!(out.contains("BUF_SIZE 65535"));
    assert!(out.contains("\ntransports: udp, tcp, tls"), "{out}");
    assert!(out.contains("\nTLS library: rustls"), "{out}");
    let mods: Vec<&str> = out
        .lines()
        .find_map(|l| l.strip_prefix("modules ("))
        .and_then(|l| l.split_once("): "))
        .map(|(_, list)| list.split(", ").collect())
        .expect("the modules line");
    for m in [
        "tm",
        "sl",
        "mi_fifo",
        "mi_datagram",
        "mi_xmlrpc",
        "xhttp",
        "statistics",
    ] {
        assert!(mods.contains(&m), "{m} in {mods:?}");
    }
    let (code, out, _) = run(&["-h"]);
    assert_eq!(code, 0);
    assert!(out.contains("Usage:") && out.contains("-f file"), "{out}");
}

#[test]
fn log_lines_respect_debug_level() {
    // Default debug=2: INFO (3) and DBG (4) lines stay out.
    let mut s = Server::start(MINIMAL, &["-DD", "-E"]);
    let c = Client::new();
    c.send(s.addr(), "OPTIONS sip:a@127.0.0.1 SIP/2.0\r\n\r\n");
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.stop().success());
    let log = s.log();
    assert!(!log.contains("INFO: listening"), "{log}");
    assert!(!log.contains("DBG:"), "{log}");
    // -d → 3: INFO appears, DBG does not.
    let mut s = Server::start(MINIMAL, &["-DD", "-E", "-d"]);
    assert!(s.stop().success());
    let log = s.log();
    assert!(log.contains("INFO: listening on udp:127.0.0.1"), "{log}");
    assert!(!log.contains("DBG:"), "{log}");
    // debug=4 from the config file: DBG appears, with the ` N(pid) ` prefix.
    let mut s = Server::start(&format!("{MINIMAL}debug=4\n"), &["-DD", "-E"]);
    assert!(s.stop().success());
    let log = s.log();
    let dbg = log
        .lines()
        .find(|l| l.contains("DBG:"))
        .unwrap_or_else(|| panic!("no DBG line:\n{log}"));
    let prefix = dbg.split(')').next().unwrap();
    assert!(
        prefix.trim_start().split('(').count() == 2,
        "bad prefix in {dbg}"
    );
}

#[test]
fn sigusr1_dumps_memory_and_sighup_is_ignored() {
    let mut s = Server::start(&format!("{MINIMAL}debug=4\n"), &["-DD", "-E"]);
    s.signal(10);
    assert!(
        s.wait_log("shm heap status", Duration::from_secs(3)),
        "{}",
        s.log()
    );
    s.signal(1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        children_of(s.pid()).len(),
        5,
        "SIGHUP must not stop anything"
    );
    assert!(s.stop().success());
}

#[test]
fn check_mode_good_config() {
    let dir = TempDir::new("check");
    let cfg = dir.file("good.cfg");
    std::fs::write(
        &cfg,
        "debug=3\nfork=no\nlisten=udp:127.0.0.1:5999\nchildren=2\nalias=\"sip.example.com\"\n",
    )
    .unwrap();
    let (code, out, err) = run(&["-c", "-f", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("config file ok, exiting..."), "{err}");
    assert!(
        out.contains("Listening on") && out.contains("udp: 127.0.0.1 [127.0.0.1]:5999"),
        "{out}"
    );
    assert!(out.contains("sip.example.com"), "{out}");
    // Nothing was bound or started.
    assert!(std::net::UdpSocket::bind("127.0.0.1:5999").is_ok());
}

#[test]
fn check_mode_bad_global_reports_position() {
    let dir = TempDir::new("checkbad");
    let cfg = dir.file("bad.cfg");
    std::fs::write(&cfg, "debug=3\nfork=maybe\nchildren=4\n").unwrap();
    let (code, _, err) = run(&["-c", "-f", cfg.to_str().unwrap()]);
    assert_ne!(code, 0);
    let want = format!("{}:2:6:", cfg.display());
    assert!(err.contains(&want), "expected {want} in:\n{err}");
    assert!(err.contains("boolean") && err.contains("maybe"), "{err}");
    assert!(err.contains("^"), "caret line missing:\n{err}");
    assert!(err.contains("bad config file (1 errors)"), "{err}");

    std::fs::write(&cfg, "debug=3\nlog_facility=LOG_NOWHERE\nno_such_param=1\n").unwrap();
    let (code, _, err) = run(&["-c", "-f", cfg.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains(":2:14:") && err.contains("bad facility"),
        "{err}"
    );
    assert!(
        err.contains(":3:") && err.contains("no_such_param"),
        "{err}"
    );

    // A syntax error: the server does not start either.
    std::fs::write(&cfg, "debug=3\nroute {\n  forward(;\n}\n").unwrap();
    let (code, _, err) = run(&["-f", cfg.to_str().unwrap(), "-DD", "-E"]);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("{}:3:", cfg.display())), "{err}");
}

#[test]
fn missing_config_file() {
    let (code, _, err) = run(&["-c", "-f", "/nonexistent/openser.cfg"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("loading config file(/nonexistent/openser.cfg)"),
        "{err}"
    );
}

fn status_ids(pid: i32) -> (String, String) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("")
            .to_string()
    };
    (get("Uid:"), get("Gid:"))
}

#[test]
fn drops_privileges_after_binding() {
    let (uid, _) = status_ids(std::process::id() as i32);
    if uid != "0" {
        eprintln!("SKIPPED: privilege drop needs root");
        return;
    }
    let mut s = Server::start(MINIMAL, &["-DD", "-E", "-u", "65534", "-g", "65534"]);
    let (u, g) = status_ids(s.pid());
    assert_eq!(
        (u.as_str(), g.as_str()),
        ("65534", "65534"),
        "attendant ids"
    );
    for k in children_of(s.pid()) {
        assert_eq!(status_ids(k).0, "65534", "child {k} still privileged");
    }
    assert!(s.stop().success());
    let (code, _, err) = run(&["-f", "/dev/null", "-c", "-u", "no-such-user-x"]);
    // -c stops before privileges are dropped, so the bad user only shows when running.
    assert_eq!(code, 0, "{err}");
    let port = free_udp_port();
    let dir = TempDir::new("baduser");
    let cfg = dir.file("c.cfg");
    std::fs::write(&cfg, format!("listen=udp:127.0.0.1:{port}\n")).unwrap();
    let (code, _, err) = run(&[
        "-f",
        cfg.to_str().unwrap(),
        "-DD",
        "-E",
        "-u",
        "no-such-user-x",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("no-such-user-x"), "{err}");
}

/// `-u nobody -g nogroup` (1.2's names): the MI FIFO and mi_datagram's socket are
/// created before the drop and handed to that user, so `openserctl ps` works over both
/// and the server removes them when it stops.
#[test]
fn user_and_group_names_keep_the_mi_usable() {
    let (uid, _) = status_ids(std::process::id() as i32);
    if uid != "0" {
        eprintln!("SKIPPED: privilege drop needs root");
        return;
    }
    if !require("socat") {
        return;
    }
    let cfg = "listen=udp:127.0.0.1:{PORT}\nchildren=1\nloadmodule \"mi_fifo.so\"\n\
        loadmodule \"mi_datagram.so\"\n\
        modparam(\"mi_fifo\", \"fifo_name\", \"{DIR}/run/openser_fifo\")\n\
        modparam(\"mi_fifo\", \"reply_dir\", \"{DIR}/run/\")\n\
        modparam(\"mi_datagram\", \"socket_name\", \"{DIR}/run/openser.sock\")\n";
    // The run directory belongs to root and is world-writable with the sticky bit,
    // as /tmp: only the owner of a file there may remove it.
    let port = free_udp_port();
    let mut s = {
        let dir = TempDir::new("drop");
        let run = dir.file("run");
        std::fs::create_dir(&run).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let text = cfg.replace("{DIR}", dir.path().to_str().unwrap());
        let srv = Server::start_on(port, &text, &["-DD", "-E", "-u", "nobody", "-g", "nogroup"]);
        (srv, dir)
    };
    let run = s.1.file("run");
    let fifo = run.join("openser_fifo");
    let sock = run.join("openser.sock");
    for _ in 0..100 {
        if fifo.exists() && sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (u, g) = status_ids(s.0.pid());
    assert_eq!(
        (u.as_str(), g.as_str()),
        ("65534", "65534"),
        "{}",
        s.0.log()
    );
    use std::os::unix::fs::MetadataExt;
    for f in [&fifo, &sock] {
        let m =
            std::fs::metadata(f).unwrap_or_else(|e| panic!("{}: {e}\n{}", f.display(), s.0.log()));
        assert_eq!((m.uid(), m.gid()), (65534, 65534), "{} owner", f.display());
    }
    let ctl = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/openserctl");
    for engine in ["FIFO", "UNIXSOCK"] {
        let out = std::process::Command::new("sh")
            .arg(ctl)
            .arg("ps")
            .env("CTLENGINE", engine)
            .env("OSER_FIFO", &fifo)
            .env("OSER_UNIXSOCK", &sock)
            .env("REPLY_DIR", &run)
            .env("HOME", s.1.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("attendant"),
            "{engine}: {text}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            s.0.log()
        );
    }
    assert!(s.0.stop().success());
    assert!(
        !fifo.exists(),
        "the FIFO is removed by the unprivileged server"
    );
    assert!(
        !sock.exists(),
        "the socket is removed by the unprivileged server"
    );
}

/// The pid that served the request tagged `tag` (the script logs `served <tag> by $pp`).
fn served_by(s: &Server, tag: &str) -> Option<i32> {
    let needle = format!("served {tag} by ");
    s.wait_log(&needle, Duration::from_secs(3));
    let log = s.log();
    let at = log.find(&needle)? + needle.len();
    log[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn stopped_receiver_does_not_stop_its_socket() {
    // One receiver reads a socket while the others sleep (core/src/transport/turn.rs).
    // Stopped while it holds the turn (as under a debugger), the timer hands the
    // socket to another receiver, and requests keep being answered.
    let cfg = "listen=udp:127.0.0.1:{PORT}\nchildren=3\n\
               loadmodule \"sl.so\"\nloadmodule \"xlog.so\"\n\
               route { xlog(\"L_ERR\", \"served $ci by $pp\\n\"); sl_send_reply(\"200\", \"OK\"); }\n";
    let mut s = Server::start(cfg, &["-DD", "-E"]);
    let c = Client::new();
    // The hand-over waits for two timer ticks; on a loaded machine the timer itself
    // can be late, so a request is retransmitted, as a UAC would, for up to 30 s.
    let ask = |tag: &str| {
        let req = request("OPTIONS", "sip:a@127.0.0.1", c.port(), tag, 1, "");
        for _ in 0..6 {
            c.send(s.addr(), &req);
            if let Some((r, _)) = c.recv_timeout(Duration::from_secs(5)) {
                return r;
            }
        }
        String::new()
    };
    assert!(ask("turn-0").starts_with("SIP/2.0 200"), "{}", s.log());
    let reader = served_by(&s, "turn-0").expect("the script logs its pid");
    assert!(
        children_of(s.pid()).contains(&reader),
        "{reader} is a receiver"
    );
    s_signal(reader, "STOP");
    let mut others = Vec::new();
    for i in 1..=5 {
        let tag = format!("turn-{i}");
        let reply = ask(&tag);
        assert!(
            reply.starts_with("SIP/2.0 200"),
            "request {i} unanswered with receiver {reader} stopped:\n{}",
            s.log()
        );
        others.push(served_by(&s, &tag).expect("served"));
    }
    s_signal(reader, "CONT");
    assert!(!others.contains(&reader), "{others:?} {reader}");
    assert!(ask("turn-6").starts_with("SIP/2.0 200"));
    assert!(s.stop().success());
}

fn s_signal(pid: i32, sig: &str) {
    let st = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
}
