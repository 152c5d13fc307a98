//! MI over the FIFO (mi_fifo) and openserctl.

use crate::harness::*;
use std::time::Duration;

const CFG: &str = r#"
listen=udp:127.0.0.1:{PORT}
children=2
loadmodule "sl.so"
loadmodule "mi_fifo.so"
modparam("mi_fifo", "fifo_name", "{DIR}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{DIR}/")
route {
    sl_send_reply("200", "OK");
}
"#;

#[test]
fn fifo_core_commands() {
    let mut s = Server::start(CFG, &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let ps = mi(&dir, "ps", &[]);
    assert!(ps.starts_with("200 OK\n"), "{ps}");
    assert!(ps.contains("Type=attendant"), "{ps}");
    assert_eq!(ps.matches("Type=receiver child=").count(), 2, "{ps}");
    assert!(
        ps.contains("Type=timer") && ps.contains("Type=MI FIFO"),
        "{ps}"
    );
    assert!(
        ps.ends_with("\n\n"),
        "reply must end with an empty line: {ps:?}"
    );
    // The FIFO process is supervised like the others: one of the attendant's children.
    assert_eq!(
        children_of(s.pid()).len(),
        4,
        "2 receivers + timer + MI FIFO"
    );

    let v = mi(&dir, "version", &[]);
    assert!(v.contains("Server:: OpenSER (1.2.0"), "{v}");
    let up = mi(&dir, "uptime", &[]);
    assert!(up.contains("Up time:: ") && up.contains("[sec]"), "{up}");

    // Statistics through MI, after one request.
    let c = Client::new();
    c.send(
        s.addr(),
        &request("OPTIONS", "sip:a@127.0.0.1", c.port(), "mi1", 1, ""),
    );
    assert!(c.recv().is_some());
    let st = mi(
        &dir,
        "get_statistics",
        &["rcv_requests", "sl:", "shmem:used_size"],
    );
    assert!(st.contains("core:rcv_requests = 1"), "{st}");
    assert!(
        st.contains("sl:sent_replies = 1") && st.contains("sl:2xx_replies = 1"),
        "{st}"
    );
    assert!(st.contains("shmem:used_size = "), "{st}");
    assert!(mi(&dir, "reset_statistics", &["sent_replies"]).starts_with("200"));
    assert!(mi(&dir, "get_statistics", &["sl:sent_replies"]).contains("sl:sent_replies = 0"));
    assert!(mi(&dir, "get_statistics", &["no_such_stat"]).starts_with("404"));
    assert!(mi(&dir, "get_statistics", &[]).starts_with("400"));
    assert!(
        mi(&dir, "no_such_command", &[]).starts_with("500 command 'no_such_command' not available")
    );
    let which = mi(&dir, "which", &[]);
    assert!(which.contains("\nget_statistics\n"), "{which}");

    // `kill` stops the server like SIGTERM.
    let _ = mi(&dir, "kill", &[]);
    let st = s
        .wait_exit(Duration::from_secs(10))
        .expect("server did not stop on MI kill");
    assert!(st.success(), "{st:?}");
    assert!(
        !dir.join("openser_fifo").exists(),
        "fifo not removed at shutdown"
    );
}

#[test]
fn openserctl_over_the_fifo() {
    let s = Server::start(CFG, &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let ctl = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/openserctl");
    let run = |args: &[&str]| {
        std::process::Command::new("sh")
            .arg(ctl)
            .args(args)
            .env("OSER_FIFO", dir.join("openser_fifo"))
            .env("REPLY_DIR", &dir)
            .env("HOME", &dir)
            .output()
            .unwrap()
    };
    let out = run(&["ps"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Type=attendant"), "{text}");
    let out = run(&["fifo", "get_statistics", "core:"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("core:rcv_requests"),
        "{out:?}"
    );
    let out = run(&["fifo", "nonsense"]);
    assert!(!out.status.success());
    assert!(run(&["version"]).status.success());
}
