//! xhttp: event_route[xhttp:request] answering curl, and the Prometheus endpoint
//! checked by promtool and scraped by a real Prometheus server.

use crate::harness::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port free over TCP (and UDP) below the ephemeral range (the harness's choice).
fn free_tcp_port() -> u16 {
    free_udp_port()
}

const CFG: &str = r#"
listen=udp:127.0.0.1:{PORT}
children=1
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "xhttp.so"
modparam("xhttp", "address", "127.0.0.1")
modparam("xhttp", "port", {HPORT})
modparam("xhttp", "metrics", 1)
route {
    sl_send_reply("200", "OK");
}
event_route[xhttp:request] {
    if ($hu =~ "^/welcome") {
        xhttp_reply("200", "OK", "text/html", "<html>hello $si:$sp, $rm $hu, x=$hdr(X-Test) body=$rb</html>");
        exit;
    }
    xhttp_reply("404", "Not found", "text/plain", "no page $hu");
}
"#;

fn start(hport: u16) -> Server {
    let s = Server::start(&CFG.replace("{HPORT}", &hport.to_string()), &["-DD", "-E"]);
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", hport)).is_err() {
        assert!(Instant::now() < end, "xhttp did not listen: {}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn event_route_answers_curl_with_pvs_of_the_request() {
    if !require("curl") {
        return;
    }
    let hport = free_tcp_port();
    let s = start(hport);
    let base = format!("http://127.0.0.1:{hport}");
    let r = curl(&[
        "-H",
        "X-Test: fromcurl",
        &format!("{base}/welcome/page?a=1"),
    ]);
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}\n{}", s.log());
    assert!(r.contains("Content-Type: text/html"), "{r}");
    assert!(r.contains("<html>hello 127.0.0.1:"), "{r}");
    assert!(
        r.contains(", GET /welcome/page?a=1, x=fromcurl body=</html>"),
        "{r}"
    );
    let r = curl(&["--data-binary", "payload", &format!("{base}/welcome")]);
    assert!(
        r.contains(", POST /welcome, x=<null> body=payload</html>"),
        "{r}"
    );
    let r = curl(&[&format!("{base}/other")]);
    assert!(r.starts_with("HTTP/1.1 404 Not found\r\n"), "{r}");
    assert!(r.ends_with("no page /other"), "{r}");
    // malformed requests get 400 and the process goes on
    let mut t = std::net::TcpStream::connect(("127.0.0.1", hport)).unwrap();
    use std::io::{Read, Write};
    t.write_all(b"GARBAGE\r\n\r\n").unwrap();
    let mut b = String::new();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = t.read_to_string(&mut b);
    assert!(b.starts_with("HTTP/1.1 400 "), "{b}");
    assert!(curl(&[&format!("{base}/welcome")]).starts_with("HTTP/1.1 200"));
}

/// A Prometheus server of the test's own (temp dir, own port), killed on drop.
struct Prom(Child);
impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn metrics_pass_promtool_and_prometheus_scrapes_them() {
    if !require("curl") || !require("promtool") || !require("prometheus") {
        return;
    }
    let hport = free_tcp_port();
    let s = start(hport);
    let c = Client::new();
    for i in 0..3 {
        c.send(
            s.addr(),
            &request(
                "OPTIONS",
                "sip:a@127.0.0.1",
                c.port(),
                &format!("prom{i}"),
                1,
                "",
            ),
        );
        assert!(c.recv().is_some());
    }
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            &format!("http://127.0.0.1:{hport}/metrics"),
        ])
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        page.contains(
            "# TYPE openser_core_rcv_requests_total counter\nopenser_core_rcv_requests_total 3\n"
        ),
        "{page}"
    );
    assert!(
        page.contains("openser_core_rcv_requests_options_total 3\n"),
        "{page}"
    );
    assert!(page.contains("openser_sl_2xx_replies_total 3\n"), "{page}");
    assert!(
        page.contains("# TYPE openser_shmem_used_size gauge\n"),
        "{page}"
    );
    assert!(
        page.contains("# TYPE openser_tm_inuse_transactions gauge\n"),
        "{page}"
    );
    assert!(page.contains("\nopenser_processes "), "{page}");
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        p.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    }
    let chk = p.wait_with_output().unwrap();
    assert!(
        chk.status.success(),
        "promtool: {} {}",
        String::from_utf8_lossy(&chk.stdout),
        String::from_utf8_lossy(&chk.stderr)
    );

    // A Prometheus server scraping us every second, asked through its HTTP API.
    let dir = TempDir::new("prom");
    let pport = free_tcp_port();
    std::fs::write(
        dir.file("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: openser\n    static_configs:\n      - targets: ['127.0.0.1:{hport}']\n"
        ),
    )
    .unwrap();
    let _prom = Prom(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.file("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.file("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{pport}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let url =
        format!("http://127.0.0.1:{pport}/api/v1/query?query=openser_core_rcv_requests_total");
    let end = Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    while Instant::now() < end {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", &url])
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        if last.contains("\"__name__\":\"openser_core_rcv_requests_total\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(last.contains("\"status\":\"success\""), "{last}");
    assert!(
        last.contains(&format!("\"instance\":\"127.0.0.1:{hport}\"")),
        "{last}"
    );
    assert!(
        last.ends_with(",\"3\"]}]}}") || last.contains(",\"3\"]"),
        "value 3: {last}"
    );
}
