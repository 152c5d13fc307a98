//! etc/examples/pstn-gateway.cfg (the guide's "PBX/PSTN Gateway" chapter) end to end
//! against a private MariaDB and SIPp: a user's calls to numbers are normalised and go
//! through lcr to the gateways, failing over on no answer (408) and on 503; a call
//! from a gateway reaches a registered user without authentication; acc keeps the
//! answered calls, the BYEs and each failed gateway attempt.

use super::lcr::gateways;
use crate::harness::mariadb::MariaDb;
use crate::harness::*;

const EXAMPLE: &str = include_str!("../../etc/examples/pstn-gateway.cfg");
const DEFAULT_URL: &str = "mysql://openser:openserrw@localhost/openser";

fn config(url: &str) -> String {
    let cfg = EXAMPLE
        .replace(DEFAULT_URL, url)
        .replace("listen=udp:127.0.0.1:5060", "listen=udp:127.0.0.1:{PORT}")
        .replace("children=4", "children=2")
        .replace(
            "modparam(\"tm\", \"fr_timer\", 3)",
            "modparam(\"tm\", \"fr_timer\", 2)",
        )
        .replace("debug=2", "debug=3")
        .replace(
            "modparam(\"mi_fifo\", \"fifo_name\", \"/tmp/openser_fifo\")",
            "modparam(\"mi_fifo\", \"fifo_name\", \"{DIR}/openser_fifo\")\n\
             modparam(\"mi_fifo\", \"reply_dir\", \"{DIR}/\")",
        );
    assert!(
        !cfg.contains(DEFAULT_URL) && cfg.contains("{PORT}") && cfg.contains("fr_timer\", 2"),
        "the example changed: adapt this test"
    );
    cfg
}

#[test]
fn example_config_checks() {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/examples/pstn-gateway.cfg");
    let (rc, _out, err) = run(&["-c", "-f", p]);
    assert_eq!(rc, 0, "{err}");
}

fn count(db: &MariaDb, sql: &str) -> usize {
    db.sql(Some("openser"), sql).trim().parse().unwrap_or(0)
}

#[test]
fn pstn_gateway_example_end_to_end() {
    if !require("sipp") {
        return;
    }
    let Some(db) = MariaDb::start() else {
        return;
    };
    db.create_openser_db();
    let work = TempDir::new("pstn");
    let g = gateways(work.path());
    // silent (priority 1), busy 503 (2), good (3): every number 49… tries all three
    db.sql(
        Some("openser"),
        &format!(
            "INSERT INTO subscriber (username, domain, password) VALUES \
               ('alice', '127.0.0.1', 'alicepw'), ('bob', '127.0.0.1', 'bobpw'); \
             INSERT INTO gw (gw_name, grp_id, ip_addr, port, uri_scheme, transport, strip, prefix) VALUES \
               ('silent', 1, '127.0.0.4', {}, NULL, NULL, 0, NULL), \
               ('busy', 2, '127.0.0.2', {}, NULL, NULL, 0, NULL), \
               ('good', 3, '127.0.0.3', {}, NULL, NULL, 0, NULL); \
             INSERT INTO lcr (prefix, from_uri, grp_id, priority) VALUES \
               ('49', NULL, 1, 1), ('49', NULL, 2, 2), ('49', NULL, 3, 3)",
            g.psil, g.p503, g.pok
        ),
    );
    let mut s = Server::start(&config(&db.url("openser", "openserrw", "openser")), &[]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());

    // alice calls two numbers, written +49… and national 0…: both reach the good
    // gateway as 49…, after the silent one timed out and the busy one said 503.
    for (i, number) in ["+4930555", "030777"].iter().enumerate() {
        let out = sipp_run(
            &dir,
            &[
                "-sf".into(),
                scenario("uac_auth.xml"),
                format!("127.0.0.1:{}", s.port),
                "-s".into(),
                number.to_string(),
                "-key".into(),
                "caller".into(),
                "alice".into(),
                "-au".into(),
                "alice".into(),
                "-ap".into(),
                "alicepw".into(),
                "-i".into(),
                "127.0.0.1".into(),
                "-p".into(),
                free_udp_port().to_string(),
                "-m".into(),
                "1".into(),
            ],
        );
        assert!(
            out.status.success(),
            "call {i} to {number} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            s.log()
        );
    }
    let log = s.log();
    let pstn: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once("PSTN: ").map(|(_, t)| t))
        .collect();
    assert_eq!(
        pstn,
        [
            format!("alice calls sip:4930555@127.0.0.4:{}", g.psil),
            format!("408, next gateway sip:4930555@127.0.0.2:{}", g.p503),
            format!("503, next gateway sip:4930555@127.0.0.3:{}", g.pok),
            format!("alice calls sip:4930777@127.0.0.4:{}", g.psil),
            format!("408, next gateway sip:4930777@127.0.0.2:{}", g.p503),
            format!("503, next gateway sip:4930777@127.0.0.3:{}", g.pok),
        ],
        "{log}"
    );
    let mut buf = [0u8; 4096];
    let (n, _) = g
        .silent
        .recv_from(&mut buf)
        .expect("the silent gateway was tried");
    assert!(buf[..n].starts_with(b"INVITE sip:4930555@127.0.0.4:"));

    // without credentials, a number is challenged (127.0.0.1 is not a gateway)
    let c = Client::new();
    c.send(
        s.addr(),
        &request(
            "INVITE",
            "sip:4930555@127.0.0.1",
            c.port(),
            "pstn-noauth",
            1,
            "",
        ),
    );
    assert!(c.recv_matching("407").is_some(), "{}", s.log());

    // bob registers his phone; the good gateway calls him: no challenge
    let (_phone, phone_port) = sipp_uas(&dir);
    let out = sipp_once(
        &dir,
        "reg_auth.xml",
        s.port,
        &[
            "-s",
            "bob",
            "-au",
            "bob",
            "-ap",
            "bobpw",
            "-key",
            "contact_port",
            &phone_port.to_string(),
        ],
    );
    assert!(out.status.success(), "REGISTER failed: {}", s.log());
    let out = sipp_run(
        &dir,
        &[
            "-sf".into(),
            scenario("uac.xml"),
            format!("127.0.0.1:{}", s.port),
            "-s".into(),
            "bob".into(),
            "-i".into(),
            "127.0.0.3".into(),
            "-p".into(),
            free_udp_port().to_string(),
            "-m".into(),
            "1".into(),
        ],
    );
    assert!(
        out.status.success(),
        "call from the gateway failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        s.log()
    );
    assert!(
        s.log().contains("PSTN: incoming call from caller to bob"),
        "{}",
        s.log()
    );

    // acc: both calls out and the call in, answered, with their BYEs; each failed
    // gateway attempt of the calls out as a missed call (408 and 503 twice).
    let acc = |m: &str, code: &str| {
        count(
            &db,
            &format!("SELECT COUNT(*) FROM acc WHERE method = '{m}' AND sip_code = '{code}'"),
        )
    };
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while acc("BYE", "200") < 3 && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        acc("INVITE", "200"),
        3,
        "{}",
        db.sql(Some("openser"), "SELECT * FROM acc")
    );
    assert_eq!(acc("BYE", "200"), 3);
    let missed = |code: &str| {
        count(
            &db,
            &format!(
                "SELECT COUNT(*) FROM missed_calls WHERE method = 'INVITE' AND sip_code = '{code}'"
            ),
        )
    };
    assert_eq!(
        (missed("408"), missed("503")),
        (2, 2),
        "{}",
        db.sql(Some("openser"), "SELECT * FROM missed_calls")
    );
    assert!(s.stop().success());
}
