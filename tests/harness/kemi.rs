//! The KEMI engines' shared test flows (app_lua, app_python): the hello-world
//! configuration with its routing in a script, the guide's hello-world flows, and the
//! small SIP helpers their tests use. One `Kemi` per language.

use super::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A routing language: its `cfgengine` name, module, tests/data directory, script file
/// extension, and the prefix of its tests' Call-IDs and temp dirs.
pub struct Kemi {
    pub engine: &'static str,
    pub module: &'static str,
    pub data: &'static str,
    pub ext: &'static str,
    pub tag: &'static str,
}
impl Kemi {
    /// `name` from the language's directory of tests/data.
    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/data/{}/{name}",
            env!("CARGO_MANIFEST_DIR"),
            self.data
        ))
        .unwrap()
    }

    /// The hello-world configuration's globals and modules with its routing in the
    /// script `script` (`cfgengine` of the language).
    pub fn cfg(&self, children: u32, script: &std::path::Path, extra: &str) -> String {
        format!(
            r#"debug=3
listen=udp:127.0.0.1:{{PORT}}
children={children}
cfgengine "{engine}"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "options.so"
loadmodule "{module}.so"
modparam("usrloc", "db_mode", 0)
modparam("rr", "enable_full_lr", 1)
modparam("{module}", "load", "{script}")
{extra}
"#,
            engine = self.engine,
            module = self.module,
            script = script.display()
        )
    }

    /// `name` from the language's tests/data directory written into `dir` (with `edit`
    /// applied).
    pub fn script_in(
        &self,
        dir: &TempDir,
        name: &str,
        edit: impl Fn(String) -> String,
    ) -> std::path::PathBuf {
        let p = dir.file(name);
        std::fs::write(&p, edit(self.file(name))).unwrap();
        p
    }

    /// The guide's hello world in the engine's language: a SIPp callee registers and 20 SIPp calls reach it
    /// (INVITE/180/200/ACK/BYE, loose-routed in-dialog requests); a call CANCELled while
    /// ringing ends with 487; an unknown user gets 404, Max-Forwards 0 gets 483, an
    /// oversize request 513 — the flows tests/it/seed.rs runs against etc/openser.cfg.
    pub fn hello_world(&self) {
        if !require("sipp") {
            return;
        }
        let dir = TempDir::new(&format!("{}-hello", self.tag));
        // As seed.rs does: max_len (65535) cannot be reached over UDP, so the 513 check
        // compares with 2048 (the guide's MySQL chapter's limit).
        let script = self.script_in(&dir, &format!("hello.{}", self.ext), |s| {
            s.replace("MAX_LEN = 65535", "MAX_LEN = 2048")
        });
        let mut s = Server::start(&self.cfg(4, &script, ""), &["-DD", "-E"]);
        let (mut uas, uas_port) = sipp_uas(dir.path());
        let reg = sipp_once(
            dir.path(),
            "reg.xml",
            s.port,
            &["-s", "bob", "-key", "contact_port", &uas_port.to_string()],
        );
        assert!(
            reg.status.success(),
            "REGISTER failed: {}\n{}",
            String::from_utf8_lossy(&reg.stdout),
            s.log()
        );
        sipp_calls(dir.path(), s.port, "bob", 20);
        uas.kill();

        // CANCEL of a ringing call to a registered harness UAS: 200 for the CANCEL, the
        // CANCEL downstream on the INVITE's branch, 487 back to the caller.
        let callee = Client::new();
        let reg = sipp_once(
            dir.path(),
            "reg.xml",
            s.port,
            &[
                "-s",
                "carol",
                "-key",
                "contact_port",
                &callee.port().to_string(),
            ],
        );
        assert!(reg.status.success(), "{}", s.log());
        let caller = Client::new();
        let ruri = format!("sip:carol@127.0.0.1:{}", s.port);
        let inv = request(
            "INVITE",
            &ruri,
            caller.port(),
            &format!("{}cancel", self.tag),
            1,
            "Contact: <sip:alice@127.0.0.1>\r\n",
        );
        caller.send(s.addr(), &inv);
        let (dinv, from) =
            expect(&callee, "INVITE", Duration::from_secs(5)).expect("INVITE at the callee");
        assert!(
            header(&dinv, "Record-Route").is_some_and(|r| r.contains(";lr")),
            "{dinv}"
        );
        assert!(dinv.contains("P-hint: usrloc applied"), "{dinv}");
        callee.send(from, &reply_to(&dinv, 180, "Ringing", "c1"));
        expect(&caller, "180", Duration::from_secs(5)).expect("180 relayed");
        caller.send(
            s.addr(),
            &request(
                "CANCEL",
                &ruri,
                caller.port(),
                &format!("{}cancel", self.tag),
                1,
                "",
            ),
        );
        let (ok, _) = expect(&caller, "200", Duration::from_secs(5)).expect("200 for the CANCEL");
        assert!(header(&ok, "CSeq").unwrap().contains("CANCEL"), "{ok}");
        let (dcan, from) =
            expect(&callee, "CANCEL", Duration::from_secs(5)).expect("CANCEL downstream");
        assert_eq!(header(&dcan, "Via"), header(&dinv, "Via"));
        callee.send(from, &reply_to(&dcan, 200, "OK", "c1"));
        callee.send(from, &reply_to(&dinv, 487, "Request Terminated", "c1"));
        let (r, _) = expect(&caller, "487", Duration::from_secs(5)).expect("487 for the INVITE");
        assert!(header(&r, "CSeq").unwrap().contains("INVITE"), "{r}");

        // 404, 483, 513 from the script.
        let c = Client::new();
        c.send(
            s.addr(),
            &request(
                "INVITE",
                &format!("sip:nobody@127.0.0.1:{}", s.port),
                c.port(),
                &format!("{}404", self.tag),
                1,
                "",
            ),
        );
        let r = c.recv_matching("SIP/2.0 404").expect("no 404");
        assert!(r.contains("404 Not Found"), "{r}");
        let m = options(s.port, c.port(), &format!("{}483", self.tag), "")
            .replace("Max-Forwards: 70", "Max-Forwards: 0");
        c.send(s.addr(), &m);
        let r = c.recv_matching("SIP/2.0 483").expect("no 483");
        assert!(r.contains("Too Many Hops"), "{r}");
        let big = format!("X-Filler: {}\r\n", "a".repeat(3000));
        c.send(
            s.addr(),
            &options(s.port, c.port(), &format!("{}513", self.tag), &big),
        );
        let r = c.recv_matching("SIP/2.0 513").expect("no 513");
        assert!(r.contains("Message too big"), "{r}");
        // A scanner is dropped without an answer; the next request is served.
        c.send(
            s.addr(),
            &options(
                s.port,
                c.port(),
                &format!("{}scan", self.tag),
                "User-Agent: friendly-scanner\r\n",
            ),
        );
        c.send(
            s.addr(),
            &request(
                "OPTIONS",
                &format!("sip:127.0.0.1:{}", s.port),
                c.port(),
                &format!("{}ping", self.tag),
                1,
                "",
            ),
        );
        let (r, _) = c.recv().expect("an answer to the ping");
        assert!(
            r.starts_with("SIP/2.0 200"),
            "the scanner got an answer: {r}"
        );
        assert!(
            header(&r, "Call-ID") == Some(format!("{}ping", self.tag).as_str()),
            "{r}"
        );
        assert!(s.stop().success());
        let log = s.log();
        assert!(!log.contains(&format!("ERROR:{}", self.module)), "{log}");
    }
}

/// Receive the next message whose first line contains `needle`, within `t`.
pub fn expect(c: &Client, needle: &str, t: Duration) -> Option<(String, SocketAddr)> {
    let end = Instant::now() + t;
    while Instant::now() < end {
        let left = end
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let (m, from) = c.recv_timeout(left)?;
        if m.lines().next().unwrap_or("").contains(needle) {
            return Some((m, from));
        }
    }
    None
}

/// A reply to `req` (its Vias, Record-Routes, From, Call-ID, CSeq; To with a tag).
pub fn reply_to(req: &str, code: u16, reason: &str, totag: &str) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in headers(req, "Via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    for v in headers(req, "Record-Route") {
        s.push_str(&format!("Record-Route: {v}\r\n"));
    }
    for n in ["From", "Call-ID", "CSeq"] {
        if let Some(v) = header(req, n) {
            s.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    let to = header(req, "To").unwrap_or("");
    if to.contains("tag=") {
        s.push_str(&format!("To: {to}\r\n"));
    } else {
        s.push_str(&format!("To: {to};tag={totag}\r\n"));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

/// An OPTIONS to bob at the server on `port`.
pub fn options(port: u16, client: u16, callid: &str, extra: &str) -> String {
    request(
        "OPTIONS",
        &format!("sip:bob@127.0.0.1:{port}"),
        client,
        callid,
        1,
        extra,
    )
}
