//! counters: script counters changed by requests, read over MI (the counters
//! commands and get_statistics) and on xhttp's metrics page.

use crate::harness::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const CFG: &str = r#"
listen=udp:127.0.0.1:{PORT}
children=2
loadmodule "sl.so"
loadmodule "counters.so"
loadmodule "mi_fifo.so"
loadmodule "xhttp.so"
modparam("mi_fifo", "fifo_name", "{DIR}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{DIR}/")
modparam("xhttp", "address", "127.0.0.1")
modparam("xhttp", "port", {HPORT})
modparam("xhttp", "metrics", 1)
modparam("counters", "script_counter", "requests Requests seen")
modparam("counters", "script_counter", "sip.weighted:weighted requests")
route {
    if (method == "INFO") {
        cnt.reset("requests");
        sl_send_reply("200", "OK");
        exit;
    }
    cnt_inc("requests");
    $var(w) = 3;
    cnt.add("sip.weighted", "$var(w)");
    if (method == "BYE") {
        cnt_add("sip.weighted", -1);
    }
    sl_send_reply("200", "OK");
}
"#;

fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect xhttp");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn counters_in_mi_and_metrics() {
    let hport = free_udp_port();
    let s = Server::start(&CFG.replace("{HPORT}", &hport.to_string()), &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", hport)).is_err() {
        assert!(Instant::now() < end, "xhttp did not listen: {}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let c = Client::new();
    let send = |m: &str, id: &str| {
        c.send(
            s.addr(),
            &request(m, "sip:a@127.0.0.1", c.port(), id, 1, ""),
        );
        let r = c.recv().expect("a reply");
        assert!(r.0.starts_with("SIP/2.0 200"), "{}", r.0);
    };
    const N: u64 = 7;
    for i in 0..N {
        send("OPTIONS", &format!("cnt{i}"));
    }
    send("BYE", "cntbye");
    // the reply goes out after the counters changed, in the same worker
    let get = |g: &str, n: &str| mi(&dir, "cnt.get", &[g, n]);
    let r = get("script", "requests");
    assert!(r.contains(&format!("\n{}\n", N + 1)), "{r}");
    let w = 3 * (N + 1) - 1;
    let r = get("sip", "weighted");
    assert!(r.contains(&format!("\n{w}\n")), "{r}");
    assert_eq!(stat(&dir, "script:requests"), N + 1);
    assert_eq!(stat(&dir, "sip:weighted"), w);
    let all = mi(&dir, "cnt.grp_get_all", &["sip"]);
    assert!(all.contains(&format!("weighted:: {w}")), "{all}");
    assert!(mi(&dir, "cnt.grps_list", &[]).contains("script"));
    assert!(mi(&dir, "cnt.get", &["script", "nothing"]).starts_with("404"));
    let page = http_get(hport, "/metrics");
    assert!(
        page.contains(&format!("\nopenser_script_requests_total {}\n", N + 1)),
        "{page}"
    );
    assert!(
        page.contains(&format!("\nopenser_sip_weighted_total {w}\n")),
        "{page}"
    );
    // cnt.reset from the script, cnt.reset over MI
    send("INFO", "cntreset");
    assert_eq!(stat(&dir, "script:requests"), 0);
    assert!(mi(&dir, "cnt.reset", &["sip", "weighted"]).starts_with("200"));
    assert_eq!(stat(&dir, "sip:weighted"), 0);
}

#[test]
fn undeclared_counter_is_a_startup_error() {
    let tmp = TempDir::new("cntcfg");
    let p = tmp.file("bad.cfg");
    std::fs::write(
        &p,
        "loadmodule \"counters.so\"\nmodparam(\"counters\", \"script_counter\", \"known\")\nroute {\n    cnt_inc(\"known\");\n    cnt.inc(\"unknown\");\n}\n",
    )
    .unwrap();
    let (code, _o, err) = run(&["-c", "-f", p.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("counter 'script.unknown' is not declared"),
        "{err}"
    );
    assert!(err.contains(":5:"), "file:line:col: {err}");
    std::fs::write(
        &p,
        "loadmodule \"counters.so\"\nmodparam(\"counters\", \"script_counter\", \"a.b.c\")\n",
    )
    .unwrap();
    let (code, _o, err) = run(&["-c", "-f", p.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("bad counter"), "{err}");
}
