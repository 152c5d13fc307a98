//! openserctl, every command, against one real server and a real SQLite database: the
//! MI commands once over the FIFO (`CTLENGINE=FIFO`) and once over mi_datagram's Unix
//! socket (`CTLENGINE=UNIXSOCK`, socat), the database commands with their effect read
//! back with sqlite3, `ping` answered by a SIP peer of the test, `tls` checked with
//! `openssl verify`.

use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::engines::{Engine, Kind};
use crate::harness::*;

const CFG: &str = r#"
listen=udp:127.0.0.1:{PORT}
children=1
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "mi_fifo.so"
loadmodule "mi_datagram.so"
loadmodule "db_sqlite.so"
loadmodule "domain.so"
loadmodule "lcr.so"
loadmodule "dispatcher.so"
modparam("mi_fifo", "fifo_name", "{DIR}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{DIR}/")
modparam("mi_datagram", "socket_name", "{DIR}/openser.sock")
modparam("domain", "db_url", "{URL}")
modparam("domain", "db_mode", 1)
modparam("lcr", "db_url", "{URL}")
modparam("dispatcher", "db_url", "{URL}")
modparam("tm", "fr_timer", 3)
route {
    if (method == "REGISTER") { save("location"); exit; }
    sl_send_reply("404", "Not here");
}
"#;

/// A SIP peer answering every request with 200 OK (the target of `openserctl ping`),
/// until it has answered `n` requests.
fn answer_200(n: usize) -> (std::thread::JoinHandle<Vec<String>>, u16) {
    let c = Client::new();
    let port = c.port();
    let h = std::thread::spawn(move || {
        let mut got = Vec::new();
        while got.len() < n {
            let Some((req, from)) = c.recv_timeout(Duration::from_secs(20)) else {
                break;
            };
            if req.starts_with("SIP/2.0") {
                continue;
            }
            let mut reply = String::from("SIP/2.0 200 OK\r\n");
            for h in ["Via", "From", "Call-ID", "CSeq"] {
                for v in headers(&req, h) {
                    reply.push_str(&format!("{h}: {v}\r\n"));
                }
            }
            let to = header(&req, "To").unwrap_or("<sip:x@127.0.0.1>");
            reply.push_str(&format!(
                "To: {to};tag=ctlpeer\r\nContent-Length: 0\r\n\r\n"
            ));
            c.send(from, &reply);
            got.push(req);
        }
        got
    });
    (h, port)
}

struct Ctl<'a> {
    e: &'a Engine,
    rc: String,
}

impl Ctl<'_> {
    fn run(&self, args: &[&str]) -> Output {
        self.e.ctl(&self.rc, args)
    }
    /// The command's stdout; panics unless it succeeded.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "openserctl {args:?} ({}): {text}\n{}",
            self.rc.lines().next().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }
    /// The command fails and its output starts with `code` (an MI status).
    fn fails_with(&self, args: &[&str], code: &str) {
        let out = self.fails(args);
        assert!(
            out.starts_with(code),
            "openserctl {args:?} ({}): {code} expected: {out}",
            self.rc.lines().next().unwrap_or("")
        );
    }
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "openserctl {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

#[test]
fn every_command_over_fifo_and_unixsock() {
    if !require("socat") || !require("sqlite3") || !require("openssl") {
        return;
    }
    let Some(e) = Engine::start(Kind::Sqlite) else {
        return;
    };
    let rows = |t: &str, cols: &[&str], order: &str| e.rows(t, cols, order);
    let offline = Ctl {
        e: &e,
        rc: "SIP_DOMAIN=example.com\n".into(),
    };

    // Before the server runs: the tables, and lcr's changes wait for the next start.
    offline.ok(&["dispatcher", "addgw", "1", "sip:127.0.0.1:5091", "first"]);
    offline.ok(&["lcr", "addgw_grp", "pstn", "1"]);
    let out = offline.ok(&[
        "lcr",
        "addgw",
        "gw-a",
        "127.0.0.2",
        "5070",
        "sip",
        "udp",
        "1",
        "+49",
        "1",
    ]);
    assert!(out.contains("not running"), "{out}");
    offline.ok(&["domain", "add", "pre.example"]);
    offline.fails(&["ps"]);

    let cfg = CFG.replace("{URL}", &e.url());
    let s = Server::start(&cfg, &["-DD", "-E"]);
    let dir = s.dir.path().to_path_buf();
    assert!(wait_fifo(&dir), "{}", s.log());
    let sock = dir.join("openser.sock");
    for _ in 0..50 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let reply_tmp = TempDir::new("ctlreply");

    for engine in ["FIFO", "UNIXSOCK"] {
        let c = Ctl {
            e: &e,
            rc: format!(
                "CTLENGINE={engine}\nOSER_FIFO={}\nOSER_UNIXSOCK={}\nREPLY_DIR={}\nSIP_DOMAIN=example.com\nETCDIR={}\n",
                dir.join("openser_fifo").display(),
                sock.display(),
                if engine == "FIFO" {
                    dir.display().to_string()
                } else {
                    reply_tmp.path().display().to_string()
                },
                reply_tmp.path().display(),
            ),
        };
        let lc = engine.to_lowercase();

        // ps, fifo, monitor/moni (one cycle)
        let ps = c.ok(&["ps"]);
        assert!(ps.starts_with("200 OK"), "{engine}: {ps}");
        assert!(ps.contains("attendant") && ps.contains("timer"), "{ps}");
        let v = c.ok(&["fifo", "version"]);
        assert!(v.contains("Server:: "), "{engine}: {v}");
        c.fails_with(&["fifo", "no_such_command"], "500");
        for m in ["monitor", "moni"] {
            let mon = c.ok(&[m, "1"]);
            assert!(mon.contains("Up time::"), "{engine} {m}: {mon}");
            assert!(mon.contains("inuse_transactions"), "{engine} {m}: {mon}");
        }

        // ul add/show/rm and online
        let aor = format!("ctl-{lc}@example.com");
        let contact = format!("sip:{lc}@127.0.0.1:5999");
        c.ok(&["ul", "add", &aor, &contact, "0"]);
        let show = c.ok(&["ul", "show", &aor]);
        assert!(show.contains(&contact), "{engine}: {show}");
        assert!(c.ok(&["ul", "show"]).contains(&aor));
        assert!(c.ok(&["ul", "show", "--brief"]).contains(&aor));
        let online = c.ok(&["online"]);
        assert!(online.lines().any(|l| l == aor), "{engine}: {online}");
        c.ok(&["ul", "rm", &aor]);
        c.fails_with(&["ul", "show", &aor], "404");
        assert!(!c.ok(&["online"]).contains(&aor));

        // ping through t_uac_dlg, answered by the test's peer
        let (peer, port) = answer_200(1);
        let out = c.ok(&["ping", &format!("sip:peer@127.0.0.1:{port}")]);
        let got = peer.join().unwrap();
        assert_eq!(got.len(), 1, "{engine}: the peer got no request; {out}");
        assert!(
            got[0].starts_with("OPTIONS sip:peer@127.0.0.1:"),
            "{}",
            got[0]
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(&lines[..2], &["200 OK", "200 OK"], "{engine}: {out}");
        assert!(out.contains("tag=ctlpeer"), "{engine}: {out}");

        // domain: the table and the cache
        let d = format!("{lc}.example");
        c.ok(&["domain", "add", &d]);
        assert!(c.fails(&["domain", "add", &d]).contains("exists"));
        assert!(c.ok(&["domain", "showdb"]).contains(&d));
        assert!(!c.ok(&["domain", "show"]).contains(&d), "not loaded yet");
        c.ok(&["domain", "reload"]);
        let shown = c.ok(&["domain", "show"]);
        assert!(
            shown.contains(&d) && shown.contains("pre.example"),
            "{shown}"
        );
        c.ok(&["domain", "rm", &d]);
        c.ok(&["domain", "reload"]);
        assert!(!c.ok(&["domain", "show"]).contains(&d));

        // dispatcher: the loaded sets, states, the table
        let ds = c.ok(&["dispatcher", "show"]);
        assert!(
            ds.contains("SET:: 1") && ds.contains("sip:127.0.0.1:5091"),
            "{ds}"
        );
        c.ok(&["dispatcher", "set", "i", "1", "sip:127.0.0.1:5091"]);
        assert!(
            c.ok(&["dispatcher", "show"]).contains("flags=I"),
            "inactive"
        );
        c.ok(&["dispatcher", "set", "a", "1", "sip:127.0.0.1:5091"]);
        assert!(c.ok(&["dispatcher", "show"]).contains("flags=A"), "active");
        c.fails_with(&["dispatcher", "set", "a", "1", "sip:127.0.0.1:1"], "404");
        let uri = format!("sip:{lc}.ds.example:5060");
        c.ok(&["dispatcher", "addgw", "2", &uri, "second"]);
        assert!(c.ok(&["dispatcher", "showdb"]).contains(&uri));
        c.ok(&["dispatcher", "reload"]);
        assert!(c.ok(&["dispatcher", "show"]).contains(&uri));
        c.ok(&["dispatcher", "rmgw", "2", &uri]);
        c.ok(&["dispatcher", "reload"]);
        assert!(!c.ok(&["dispatcher", "show"]).contains(&uri));

        // lcr: every change reloads
        let dump = c.ok(&["lcr", "dump"]);
        assert!(
            dump.contains("URI=sip:127.0.0.2:5070;transport=udp") && dump.contains("PREFIX=+49"),
            "{engine}: {dump}"
        );
        let gw = format!("gw-{lc}");
        c.ok(&["lcr", "addgw_grp", &format!("grp-{lc}")]);
        c.ok(&["lcr", "addgw", &gw, "127.0.0.3", "5080", "sips", "tls", "1"]);
        assert!(
            c.fails(&["lcr", "addgw", &gw, "127.0.0.3", "5080", "sip", "udp", "1"])
                .contains("exists")
        );
        assert!(
            c.ok(&["lcr", "dump"])
                .contains("URI=sips:127.0.0.3:5080;transport=tls"),
            "reloaded after addgw"
        );
        c.ok(&["lcr", "addroute", "0049", "", "1", "2"]);
        let show = c.ok(&["lcr", "show"]);
        assert!(
            show.contains("lcr routes") && show.contains("0049") && show.contains(&gw),
            "{show}"
        );
        assert!(show.contains(&format!("grp-{lc}")), "{show}");
        assert!(c.ok(&["lcr", "dump"]).contains("PREFIX=0049"));
        c.ok(&["lcr", "rmroute", "0049", "", "1", "2"]);
        c.fails(&["lcr", "rmroute", "0049", "", "1", "2"]);
        c.ok(&["lcr", "rmgw", &gw]);
        let dump = c.ok(&["lcr", "dump"]);
        assert!(
            !dump.contains("127.0.0.3") && !dump.contains("0049"),
            "{dump}"
        );
        c.ok(&["lcr", "reload"]);
        let grp_id = rows("gw_grp", &["grp_id", "grp_name"], "grp_id")
            .into_iter()
            .find(|r| r[1] == format!("grp-{lc}"))
            .expect("the new gateway group")[0]
            .clone();
        c.ok(&["lcr", "rmgw_grp", &grp_id]);
        assert!(
            !rows("gw_grp", &["grp_name"], "grp_id")
                .iter()
                .any(|r| r[0] == format!("grp-{lc}"))
        );

        // subscribers: add/passwd/rm (rm also drops the user's contacts)
        let user = format!("u{lc}@example.com");
        c.ok(&["add", &user, "pw1", "u@mail.example.com"]);
        c.fails(&["add", &user, "pw1"]);
        c.ok(&["passwd", &user, "pw2"]);
        let sub = rows("subscriber", &["username", "password"], "id");
        assert!(
            sub.contains(&vec![format!("u{lc}"), "pw2".into()]),
            "{sub:?}"
        );
        // rpid
        c.ok(&["rpid", "add", &user, "<sip:+4930123@example.com>"]);
        assert!(c.ok(&["rpid", "show", &user]).contains("+4930123"));
        c.ok(&["rpid", "rm", &user]);
        assert!(!c.ok(&["rpid", "show", &user]).contains("+4930123"));
        // acl
        c.ok(&["acl", "grant", &user, "voicemail"]);
        c.fails(&["acl", "grant", &user, "voicemail"]);
        assert!(c.ok(&["acl", "show", &user]).contains("voicemail"));
        c.ok(&["acl", "revoke", &user, "voicemail"]);
        assert!(!c.ok(&["acl", "show", &user]).contains("voicemail"));
        // avp
        c.ok(&["avp", "add", &user, "fwd", "0", "sip:fwd@example.com"]);
        assert!(
            c.ok(&["avp", "list", &user])
                .contains("sip:fwd@example.com")
        );
        c.ok(&["avp", "rm", &user, "fwd"]);
        assert!(!c.ok(&["avp", "list", &user]).contains("fwd"));
        // alias (alias_db)
        let alias = format!("a{lc}@example.com");
        c.ok(&["alias", "add", &alias, &format!("sip:{user}")]);
        assert!(c.ok(&["alias", "show", &alias]).contains(&format!("u{lc}")));
        assert!(c.ok(&["alias_db", "list"]).contains(&format!("a{lc}")));
        c.ok(&["alias", "rm", &alias]);
        assert!(!c.ok(&["alias", "list"]).contains(&format!("a{lc}")));
        // speeddial
        c.ok(&[
            "speeddial",
            "add",
            &user,
            "sd1@example.com",
            "sip:target@example.net",
            "T",
            "Arget",
        ]);
        assert!(
            c.ok(&["speeddial", "list", &user])
                .contains("sip:target@example.net")
        );
        c.ok(&["speeddial", "rm", &user, "sd1@example.com"]);
        assert!(!c.ok(&["speeddial", "show", &user]).contains("target"));
        // db show / showdb
        assert!(
            c.ok(&["db", "show", "subscriber"])
                .contains(&format!("u{lc}"))
        );
        assert!(c.ok(&["showdb", "subscriber"]).contains(&format!("u{lc}")));
        c.fails(&["db", "show", "subscriber; DROP TABLE x"]);
        // rm removes the subscriber and its contacts in usrloc
        c.ok(&["ul", "add", &user, "sip:dev@127.0.0.1:5998", "0"]);
        c.ok(&["rm", &user]);
        c.fails(&["rm", &user]);
        c.fails_with(&["ul", "show", &user], "404");
        assert!(
            !rows("subscriber", &["username"], "id")
                .iter()
                .any(|r| r[0] == format!("u{lc}"))
        );
    }

    // tls: a root CA and a user certificate signed by it
    let tls = TempDir::new("ctltls");
    let base = tls.path().to_str().unwrap();
    offline.ok(&["tls", "rootCA", base]);
    offline.ok(&["tls", "userCERT", "alice", base]);
    let ca = tls.file("rootCA/cacert.pem");
    let cert = tls.file("alice/alice-cert.pem");
    let v = Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            ca.to_str().unwrap(),
            cert.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    let subj = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in", cert.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&subj.stdout).contains("alice"));
    use std::os::unix::fs::PermissionsExt;
    for k in ["rootCA/private/cakey.pem", "alice/alice-privkey.pem"] {
        let mode = std::fs::metadata(tls.file(k)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{k}");
    }
    assert!(
        std::fs::read_to_string(tls.file("alice/alice-calist.pem"))
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    // an existing CA is kept unless the operator says y
    offline.fails(&["tls", "rootCA", base]);
    assert!(ca.exists());
    offline.fails(&["tls", "userCERT", "bob", tls.file("none").to_str().unwrap()]);
    drop(s);
}
