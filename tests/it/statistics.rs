//! The statistics module: script-defined counters read over MI and the metrics page.

use crate::harness::*;
use std::time::Duration;

const CFG: &str = r#"
listen=udp:127.0.0.1:{PORT}
children=2
loadmodule "sl.so"
loadmodule "statistics.so"
loadmodule "mi_fifo.so"
modparam("mi_fifo", "fifo_name", "{DIR}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{DIR}/")
modparam("statistics", "variable", "register_counter")
modparam("statistics", "variable", "active_calls/no_reset")
route {
    if (method == "INFO") {
        reset_stat("register_counter");
        reset_stat("active_calls");
        update_stat("sent_replies", "+100");
    } else {
        update_stat("register_counter", "+1");
        update_stat("active_calls", "+2");
        if (method == "BYE") { update_stat("active_calls", "-3"); }
    }
    sl_send_reply("200", "OK");
}
"#;

#[test]
fn update_and_reset_script_statistics() {
    let s = Server::start(CFG, &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let c = Client::new();
    let send = |m: &str, id: &str| {
        c.send(
            s.addr(),
            &request(m, "sip:a@127.0.0.1", c.port(), id, 1, ""),
        );
        assert!(c.recv().is_some());
    };
    send("OPTIONS", "st1");
    send("OPTIONS", "st2");
    send("BYE", "st3");
    let st = mi(&dir, "get_statistics", &["script:"]);
    assert!(st.contains("script:register_counter = 3"), "{st}");
    assert!(st.contains("script:active_calls = 3"), "2+2+2-3: {st}");
    send("INFO", "st4");
    let st = mi(&dir, "get_statistics", &["script:"]);
    assert!(st.contains("script:register_counter = 0"), "{st}");
    assert!(st.contains("script:active_calls = 3"), "no_reset: {st}");
    // Another module's counter, by its bare name. sl counts a reply after sending it,
    // so the fourth may arrive here before its worker has counted it: poll.
    let mut st = String::new();
    let counted = wait_until(Duration::from_secs(5), || {
        st = mi(&dir, "get_statistics", &["sl:sent_replies"]);
        st.contains("sl:sent_replies = 104")
    });
    assert!(counted, "4 replies + 100: {st}");
}

#[test]
fn bad_statistics_config_is_refused() {
    let tmp = TempDir::new("statcfg");
    let p = tmp.file("bad.cfg");
    std::fs::write(
        &p,
        "loadmodule \"statistics.so\"\nmodparam(\"statistics\", \"variable\", \"x\")\nroute {\n    update_stat(\"x\", \"0\");\n}\n",
    )
    .unwrap();
    let (code, _o, err) = run(&["-c", "-f", p.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("update with 0"), "{err}");
    assert!(err.contains(":4:"), "file:line:col: {err}");
    std::fs::write(
        &p,
        "loadmodule \"statistics.so\"\nmodparam(\"statistics\", \"variable\", \"x/sometimes\")\n",
    )
    .unwrap();
    let (code, _o, err) = run(&["-c", "-f", p.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("unsupported flag"), "{err}");
}
