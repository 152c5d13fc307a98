//! exec through the real binary: exec_dset rewrites the Request-URI and adds branches
//! from a script's output, with 1.2's environment; exec_msg feeds the request to a
//! command; exec_avp fills AVPs; a hanging command is killed at time_to_kill while
//! the other receiver serves, the worker serves again afterwards and no process is
//! left behind.

use super::permissions::{ask, req_from, sock_on};
use crate::harness::*;
use std::time::Duration;

const CFG: &str = r#"
listen=udp:127.0.0.1:{PORT}
children=2
loadmodule "sl.so"
loadmodule "exec.so"
modparam("exec", "time_to_kill", 3)
route {
    if ($rU == "hang") {
        if (exec_msg("sleep 60")) { sl_send_reply("200", "Finished"); }
        else { sl_send_reply("500", "Killed"); };
        exit;
    };
    if ($rU == "msg") {
        if (exec_msg("cat > {FILES}/msg.txt")) { sl_send_reply("200", "Stored"); };
        exit;
    };
    if ($rU == "avp") {
        exec_avp("echo one; echo two", "$avp(s:a),$avp(s:b)");
        sl_send_reply("200", "$avp(s:a)-$avp(s:b)");
        exit;
    };
    if ($rU == "fail") {
        if (!exec_dset("false")) { sl_send_reply("500", "Failed"); };
        exit;
    };
    if (exec_dset("{FILES}/rewrite.sh")) {
        sl_send_reply("200", "$ru");
    } else {
        sl_send_reply("500", "exec failed");
    };
}
"#;

fn server(files: &TempDir) -> Server {
    let script = files.file("rewrite.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s|%s|%s|%s\\n' \"$1\" \"$SIP_HF_CALLID\" \"$SIP_SRCIP\" \"$SIP_OUSER\" > {}/args\n\
             echo \"sip:new-$SIP_USER@127.0.0.1:9\"\necho\necho \"sip:second@127.0.0.1:9\"\n",
            files.path().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    Server::start(
        &CFG.replace("{FILES}", &files.path().display().to_string()),
        &[],
    )
}

#[test]
fn exec_dset_msg_avp() {
    let files = TempDir::new("exec");
    let s = server(&files);
    let c = sock_on("127.0.0.1");
    let r = ask(
        &c,
        s.addr(),
        &req_from(&c, "INVITE", "sip:bob@example.com", "sip:a@b", "e1", ""),
    );
    assert_eq!(r, "SIP/2.0 200 sip:new-bob@127.0.0.1:9", "{}", s.log());
    let args = std::fs::read_to_string(files.file("args")).unwrap();
    assert_eq!(args.trim(), "sip:bob@example.com|e1|127.0.0.1|bob");
    // the R-URI is one shell word, whatever it holds
    let r = ask(
        &c,
        s.addr(),
        &req_from(
            &c,
            "INVITE",
            "sip:$(touch$IFS'pwned')@example.com",
            "sip:a@b",
            "e2",
            "",
        ),
    );
    assert!(r.starts_with("SIP/2.0 200 sip:new-$(touch"), "{r}");
    assert!(!s.dir.file("pwned").exists() && !files.file("pwned").exists());

    let r = ask(
        &c,
        s.addr(),
        &req_from(&c, "MESSAGE", "sip:msg@example.com", "sip:a@b", "e3", ""),
    );
    assert_eq!(r, "SIP/2.0 200 Stored");
    let stored = std::fs::read_to_string(files.file("msg.txt")).unwrap();
    assert!(
        stored.starts_with("MESSAGE sip:msg@example.com SIP/2.0\r\n")
            && stored.contains("Call-ID: e3\r\n"),
        "{stored}"
    );

    let r = ask(
        &c,
        s.addr(),
        &req_from(&c, "MESSAGE", "sip:avp@example.com", "sip:a@b", "e4", ""),
    );
    assert_eq!(r, "SIP/2.0 200 one-two");
    let r = ask(
        &c,
        s.addr(),
        &req_from(&c, "MESSAGE", "sip:fail@example.com", "sip:a@b", "e5", ""),
    );
    assert_eq!(r, "SIP/2.0 500 Failed");
}

#[test]
fn a_hanging_command_is_killed_and_the_workers_go_on() {
    let files = TempDir::new("exechang");
    let s = server(&files);
    let hung = sock_on("127.0.0.1");
    hung.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let m = req_from(
        &hung,
        "MESSAGE",
        "sip:hang@example.com",
        "sip:a@b",
        "h1",
        "",
    );
    hung.send_to(m.as_bytes(), s.addr()).unwrap();
    // while one receiver waits for the command, the other one serves
    let c = sock_on("127.0.0.1");
    std::thread::sleep(Duration::from_millis(300));
    let r = ask(
        &c,
        s.addr(),
        &req_from(&c, "MESSAGE", "sip:avp@example.com", "sip:a@b", "h2", ""),
    );
    assert_eq!(r, "SIP/2.0 200 one-two");
    let mut buf = vec![0u8; 4096];
    let (n, _) =
        crate::harness::recv_from(&hung, &mut buf).expect("an answer for the hanging command");
    assert!(
        buf[..n].starts_with(b"SIP/2.0 500 Killed"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(s.log().contains("killed"), "{}", s.log());
    // both receivers serve again, and nobody is left below them
    for i in 0..4 {
        let r = ask(
            &c,
            s.addr(),
            &req_from(
                &c,
                "MESSAGE",
                "sip:avp@example.com",
                "sip:a@b",
                &format!("h3{i}"),
                "",
            ),
        );
        assert_eq!(r, "SIP/2.0 200 one-two");
    }
    for child in children_of(s.pid()) {
        assert!(
            children_of(child).is_empty(),
            "process {child} has children: {:?}",
            children_of(child)
        );
    }
}
