//! mqueue: items passed from the request route (SIP workers) to a timer_route (the
//! timer process) through a queue in shared memory; a bounded queue dropping its
//! oldest item; MI.

use crate::harness::*;
use std::time::Duration;

const CFG: &str = r#"
listen=udp:127.0.0.1:{PORT}
children=2
loadmodule "sl.so"
loadmodule "mqueue.so"
loadmodule "mi_fifo.so"
modparam("mi_fifo", "fifo_name", "{DIR}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{DIR}/")
modparam("mqueue", "mqueue", "name=jobs")
modparam("mqueue", "mqueue", "name=done")
modparam("mqueue", "mqueue", "name=kept;size=3")
route {
    if (method == "MESSAGE") {
        mq_add("kept", "$ci", "from $fU");
        sl_send_reply("200", "kept");
        exit;
    }
    if (!mq_add("jobs", "$ci", "user $fU")) {
        sl_send_reply("500", "not queued");
        exit;
    }
    sl_send_reply("200", "queued");
}
timer_route[drain, 1] {
    # the timer process takes the items and hands them on, tagged, to "done"
    while (mq_fetch("jobs")) {
        mq_add("done", "$mqk(jobs)", "timer got $mqv(jobs)");
    }
}
"#;

#[test]
fn request_route_to_timer_route() {
    let s = Server::start(CFG, &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let c = Client::new();
    let send = |m: &str, id: &str| {
        c.send(
            s.addr(),
            &request(m, "sip:a@127.0.0.1", c.port(), id, 1, ""),
        );
        let r = c.recv().expect("a reply");
        assert!(r.0.starts_with("SIP/2.0 200"), "{}", r.0);
    };
    for i in 0..5 {
        send("OPTIONS", &format!("job-{i}"));
    }
    // the timer process takes every item within a tick or two
    let drained = wait_until(Duration::from_secs(10), || {
        mi(&dir, "mq_get_size", &["done"]).contains("size=5")
    });
    assert!(drained, "{}\n{}", mi(&dir, "mq_get_sizes", &[]), s.log());
    assert!(mi(&dir, "mq_get_size", &["jobs"]).contains("size=0"));
    for i in 0..5 {
        let f = mi(&dir, "mq_fetch", &["done"]);
        assert!(
            f.contains(&format!("key:: job-{i}\n")) && f.contains("value:: timer got user alice"),
            "in order, once each: {f}"
        );
    }
    assert!(
        mi(&dir, "mq_fetch", &["done"]).starts_with("404"),
        "nothing more"
    );
    // a bounded queue nobody drains keeps the newest 3
    for i in 0..5 {
        send("MESSAGE", &format!("kept-{i}"));
    }
    let size = mi(&dir, "mq_get_size", &["kept"]);
    assert!(size.contains("size=3"), "{size}");
    assert!(size.contains("dropped=2"), "{size}");
    let f = mi(&dir, "mq_fetch", &["kept"]);
    assert!(
        f.contains("key:: kept-2") && f.contains("value:: from alice"),
        "{f}"
    );
    let sizes = mi(&dir, "mq_get_sizes", &[]);
    assert!(sizes.contains("name=kept size=2"), "{sizes}");
    assert!(sizes.contains("name=jobs size=0"), "{sizes}");
    assert!(mi(&dir, "mq_get_size", &["none"]).starts_with("404"));
}

#[test]
fn undeclared_queue_is_a_startup_error() {
    let tmp = TempDir::new("mqcfg");
    let p = tmp.file("bad.cfg");
    std::fs::write(
        &p,
        "loadmodule \"mqueue.so\"\nmodparam(\"mqueue\", \"mqueue\", \"name=a\")\nroute {\n    mq_add(\"b\", \"k\", \"v\");\n}\n",
    )
    .unwrap();
    let (code, _o, err) = run(&["-c", "-f", p.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("mqueue 'b' is not declared"), "{err}");
    assert!(err.contains(":4:"), "file:line:col: {err}");
    std::fs::write(
        &p,
        "loadmodule \"mqueue.so\"\nmodparam(\"mqueue\", \"mqueue\", \"name=a;size=many\")\n",
    )
    .unwrap();
    let (code, _o, err) = run(&["-c", "-f", p.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("size 'many' is not a number"), "{err}");
}
