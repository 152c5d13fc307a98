//! The RADIUS modules against a real FreeRADIUS (tests/harness/radius.rs): digest
//! REGISTERs (radius_www_authorize) and MESSAGEs (radius_proxy_authorize) authorized
//! by its `digest` module (401/407 on a wrong password, 200 on the
//! right one, SIP-AVP reply attributes as AVPs), 500 when it is stopped or silent and
//! the worker free for the next request, accounting Start/Stop records of a SIPp call
//! with the `radius_extra` attributes in its detail file (beside the log records), a
//! missed call (`radius_missed_flag`) as a Failed record,
//! `acc_rad_request`, and group, AVP and URI checks steering the script.

use crate::harness::digest::*;
use crate::harness::radius::{self, FreeRadius};
use crate::harness::*;
use std::net::UdpSocket;
use std::time::Duration;

const REALM: &str = "rad.example.com";

/// The users file shared by the tests.
const USERS: &str = r#"alice	Service-Type == Group-Check, Sip-Group == "pstn", Auth-Type := Accept

"alice@rad.example.com"	Service-Type == SIP-Caller-AVPs, Auth-Type := Accept
	SIP-AVP := "route:pstn",
	SIP-AVP += "limit#3"

"bob@rad.example.com"	Service-Type == Call-Check, Auth-Type := Accept
	SIP-AVP := "fwd:sip:bob@elsewhere.example"

"alice@rad.example.com"	Cleartext-Password := "alicepw"
	SIP-AVP := "email:alice@rad.example.com"
"#;

fn code(reply: &str) -> u16 {
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Send a REGISTER and wait (up to `wait`) for its final reply.
fn register(
    s: &Server,
    c: &Client,
    user: &str,
    cseq: u32,
    authz: Option<(&str, &str)>,
    wait: Duration,
) -> String {
    c.send(s.addr(), &register_msg(c, REALM, "rad", user, cseq, authz));
    let (r, _) = c
        .recv_timeout(wait)
        .unwrap_or_else(|| panic!("no reply to REGISTER {cseq}\n{}", s.log()));
    r
}

fn auth_cfg(conf: &std::path::Path) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=1
log_stderror=yes
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "auth_radius.so"
modparam("auth_radius", "radius_config", "{conf}")
route {{
    if (method == "REGISTER") {{
        if (!radius_www_authorize("{REALM}")) {{
            www_challenge("{REALM}", "1");
            exit;
        }}
        append_to_reply("X-Email: $avp(s:email)\r\n");
        save("location");
        exit;
    }}
    if (method == "MESSAGE") {{
        if (!radius_proxy_authorize("{REALM}", "$fU")) {{
            proxy_challenge("{REALM}", "1");
            exit;
        }}
        sl_send_reply("200", "Authorized");
        exit;
    }}
    sl_send_reply("404", "Not Found");
}}
"#,
        conf = conf.display()
    )
}

#[test]
fn digest_register_against_freeradius() {
    let Some(mut rad) = FreeRadius::start(USERS) else {
        return;
    };
    let conf = rad.client_conf(rad.dir.path(), 1, 1);
    let mut s = Server::start(&auth_cfg(&conf), &[]);
    let c = Client::new();
    let w = Duration::from_secs(5);

    let r = register(&s, &c, "alice", 1, None, w);
    assert_eq!(code(&r), 401, "{r}");
    let nonce = nonce_of(&r);
    let r = register(&s, &c, "alice", 2, Some((&nonce, "wrong")), w);
    assert_eq!(code(&r), 401, "wrong password:\n{r}\n{}", s.log());
    let r = register(&s, &c, "alice", 3, Some((&nonce, "alicepw")), w);
    assert_eq!(code(&r), 200, "right password:\n{r}\n{}", s.log());
    // The SIP-AVP of the Access-Accept became $avp(s:email).
    assert_eq!(header(&r, "X-Email"), Some("alice@rad.example.com"), "{r}");
    // A user FreeRADIUS does not know.
    let r = register(&s, &c, "mallory", 4, Some((&nonce, "x")), w);
    assert_eq!(code(&r), 401, "{r}");
    assert!(
        rad.output().contains("Access-Accept") && rad.output().contains("Access-Reject"),
        "{}",
        rad.output()
    );

    // radius_proxy_authorize, Sip-URI-User from the From user.
    let m = |cseq: u32, authz: Option<(&str, &str)>| {
        let ruri = format!("sip:bob@{REALM}");
        let extra = authz
            .map(|(nonce, pw)| {
                let ha1 = md5_hex(&format!("alice:{REALM}:{pw}"));
                let ha2 = md5_hex(&format!("MESSAGE:{ruri}"));
                let resp = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
                format!(
                    "Proxy-Authorization: Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{ruri}\", response=\"{resp}\"\r\n"
                )
            })
            .unwrap_or_default();
        format!(
            "MESSAGE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKpm{cseq}\r\n\
             From: <sip:alice@{REALM}>;tag=pm\r\nTo: <{ruri}>\r\nCall-ID: radius-pm-{p}\r\n\
             CSeq: {cseq} MESSAGE\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n",
            p = c.port()
        )
    };
    c.send(s.addr(), &m(1, None));
    let (r, _) = c.recv_timeout(w).expect("407");
    assert_eq!(code(&r), 407, "{r}");
    let h = header(&r, "Proxy-Authenticate").expect("challenge");
    let start = h.find("nonce=\"").unwrap() + 7;
    let pnonce = h[start..start + h[start..].find('"').unwrap()].to_string();
    c.send(s.addr(), &m(2, Some((&pnonce, "alicepw"))));
    let (r, _) = c.recv_timeout(w).expect("reply");
    assert_eq!(code(&r), 200, "proxy authorization:\n{r}\n{}", s.log());
    c.send(s.addr(), &m(3, Some((&pnonce, "bad"))));
    let (r, _) = c.recv_timeout(w).expect("reply");
    assert_eq!(code(&r), 407, "{r}");

    // FreeRADIUS stopped: 500 (its port refuses at once), and the one worker answers
    // the next request.
    rad.stop();
    let r = register(
        &s,
        &c,
        "alice",
        5,
        Some((&nonce, "alicepw")),
        Duration::from_secs(10),
    );
    assert_eq!(code(&r), 500, "{r}");
    let r = register(&s, &c, "alice", 6, None, w);
    assert_eq!(code(&r), 401, "{r}");
    assert!(s.log().contains("no RADIUS server answered"), "{}", s.log());

    // Back again: served.
    rad.restart();
    let r = register(&s, &c, "alice", 7, Some((&nonce, "alicepw")), w);
    assert_eq!(code(&r), 200, "after restart:\n{r}\n{}", s.log());
    s.stop();
}

#[test]
fn silent_radius_server_gives_500_after_the_timeout() {
    // A "server" that reads and never answers: the client's timeout and retries.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = TempDir::new("radius-silent");
    let conf = radius::client_conf(
        dir.path(),
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{port}"),
        1,
        2,
    );
    let mut s = Server::start(&auth_cfg(&conf), &[]);
    let c = Client::new();
    let r = register(&s, &c, "alice", 1, None, Duration::from_secs(5));
    let nonce = nonce_of(&r);
    // 2 sends x 1 s; the client waits far longer than that.
    let r = register(
        &s,
        &c,
        "alice",
        2,
        Some((&nonce, "alicepw")),
        Duration::from_secs(15),
    );
    assert_eq!(code(&r), 500, "{r}");
    // Both sends arrived, the same Access-Request twice.
    silent
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut b1 = [0u8; 4096];
    let mut b2 = [0u8; 4096];
    let n1 = silent.recv(&mut b1).expect("first Access-Request");
    let n2 = silent.recv(&mut b2).expect("second Access-Request");
    assert_eq!(b1[0], 1, "Access-Request");
    assert_eq!(&b1[..n1], &b2[..n2], "a retry resends the same packet");
    silent
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        silent.recv(&mut b1).is_err(),
        "radius_retries 2: no third send"
    );
    // The single worker is free again.
    let r = register(&s, &c, "alice", 3, None, Duration::from_secs(5));
    assert_eq!(code(&r), 401, "{r}");
    s.stop();
}

fn acc_cfg(conf: &std::path::Path, uas: u16, busy: u16) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=2
log_stderror=yes
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "acc.so"
modparam("acc", "log_flag", 1)
modparam("acc", "radius_flag", 2)
modparam("acc", "radius_missed_flag", 3)
modparam("acc", "radius_config", "{conf}")
modparam("acc", "radius_extra", "Calling-Station-Id=$fu;Called-Station-Id=$tu")
route {{
    if (loose_route()) {{
        setflag(1);
        setflag(2);
        t_relay();
        exit;
    }}
    if ($rU == "missed") {{
        setflag(3);
        rewritehostport("127.0.0.1:{busy}");
        t_relay();
        exit;
    }}
    if ($rU == "radreq") {{
        acc_rad_request("200 Start");
        sl_send_reply("404", "Accounted");
        exit;
    }}
    if (method == "INVITE") {{
        record_route();
        setflag(1);
        setflag(2);
        rewritehostport("127.0.0.1:{uas}");
        t_relay();
        exit;
    }}
    sl_send_reply("404", "Not Found");
}}
"#,
        conf = conf.display()
    )
}

/// The detail records (blank-line separated) containing `needle`.
fn records<'a>(detail: &'a str, needle: &str) -> Vec<&'a str> {
    detail
        .split("\n\n")
        .filter(|r| r.contains(needle))
        .collect()
}

#[test]
fn accounting_start_stop_and_acc_rad_request() {
    if !require("sipp") {
        return;
    }
    let Some(rad) = FreeRadius::start(USERS) else {
        return;
    };
    let conf = rad.client_conf(rad.dir.path(), 2, 2);
    let dir = TempDir::new("radius-acc");
    let (_uas, uas_port) = sipp_uas_with(dir.path(), "uas.xml", &["-m", "1"]);
    let (_busy, busy_port) = sipp_uas_with(dir.path(), "uas_503.xml", &["-m", "1"]);
    let mut s = Server::start(&acc_cfg(&conf, uas_port, busy_port), &[]);
    sipp_calls(dir.path(), s.port, "callee", 1);
    assert!(
        wait_until(Duration::from_secs(10), || {
            rad.detail().contains("Acct-Status-Type = Stop")
        }),
        "no Stop record:\n{}\n{}",
        rad.detail(),
        s.log()
    );
    let detail = rad.detail();
    let start = records(&detail, "Acct-Status-Type = Start");
    let stop = records(&detail, "Acct-Status-Type = Stop");
    assert_eq!((start.len(), stop.len()), (1, 1), "{detail}");
    for r in [start[0], stop[0]] {
        // radius_extra: the From and To URIs (SIPp's caller@127.0.0.1 → callee@…).
        assert!(
            r.contains("Calling-Station-Id = \"sip:caller@127.0.0.1"),
            "{r}"
        );
        assert!(
            r.contains("Called-Station-Id = \"sip:callee@127.0.0.1"),
            "{r}"
        );
        assert!(r.contains("Acct-Session-Id = "), "{r}");
        // (FreeRADIUS's dictionary names 1.2's numbers its own way: Service-Type 15,
        // Sip-Method 101 … print as other attributes; the values are checked in
        // acc's unit tests.)
        assert!(r.contains("Event-Timestamp = "), "{r}");
    }
    let session = |r: &str| {
        r.lines()
            .find(|l| l.trim_start().starts_with("Acct-Session-Id"))
            .map(|l| l.trim().to_string())
    };
    assert_eq!(
        session(start[0]),
        session(stop[0]),
        "one call, one session id"
    );
    // The log accounting ran beside it (log_flag on the same transactions).
    assert!(
        s.log().contains("ACC: transaction answered:"),
        "{}",
        s.log()
    );

    // acc_rad_request: a record at once, before the reply goes out.
    let c = Client::new();
    c.send(
        s.addr(),
        &request(
            "INVITE",
            "sip:radreq@127.0.0.1",
            c.port(),
            "radreq-call-1",
            1,
            "Contact: <sip:alice@127.0.0.1>\r\n",
        ),
    );
    let r = c
        .recv_matching("404")
        .expect("reply to the accounted INVITE");
    assert!(r.contains("Accounted"), "{r}");
    let detail = rad.detail();
    let req = records(&detail, "radreq-call-1");
    assert_eq!(req.len(), 1, "{detail}");
    assert!(req[0].contains("Acct-Status-Type = Start"), "{}", req[0]);

    // radius_missed_flag: an INVITE answered 503 is a Failed record.
    c.send(
        s.addr(),
        &request(
            "INVITE",
            "sip:missed@127.0.0.1",
            c.port(),
            "radmissed-call-1",
            1,
            "Contact: <sip:alice@127.0.0.1>\r\n",
        ),
    );
    let r = c.recv_matching("503").expect("the callee's 503");
    assert!(r.contains("radmissed-call-1"), "{r}");
    assert!(
        wait_until(Duration::from_secs(10), || {
            !records(&rad.detail(), "radmissed-call-1").is_empty()
        }),
        "no missed-call record:\n{}\n{}",
        rad.detail(),
        s.log()
    );
    let detail = rad.detail();
    let missed = records(&detail, "radmissed-call-1");
    assert_eq!(missed.len(), 1, "{detail}");
    assert!(
        missed[0].contains("Acct-Status-Type = Failed"),
        "{}",
        missed[0]
    );
    s.stop();
}

fn steer_cfg(conf: &std::path::Path) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=1
log_stderror=yes
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "group_radius.so"
loadmodule "avp_radius.so"
loadmodule "uri_radius.so"
modparam("group_radius", "radius_config", "{conf}")
modparam("avp_radius", "radius_config", "{conf}")
modparam("uri_radius", "radius_config", "{conf}")
route {{
    if ($rU == "grp") {{
        if (radius_is_user_in("From", "pstn")) {{
            sl_send_reply("200", "In Group");
        }} else {{
            sl_send_reply("403", "Not In Group");
        }}
        exit;
    }}
    if ($rU == "avp") {{
        if (!radius_load_avps("caller")) {{
            sl_send_reply("404", "No Attributes");
            exit;
        }}
        if ($avp(s:caller_route) == "pstn") {{
            append_to_reply("X-Limit: $avp(s:caller_limit)\r\n");
            sl_send_reply("302", "To PSTN");
            exit;
        }}
        sl_send_reply("480", "Elsewhere");
        exit;
    }}
    if (radius_does_uri_exist()) {{
        append_to_reply("X-Fwd: $avp(s:fwd)\r\n");
        sl_send_reply("200", "Exists");
        exit;
    }}
    sl_send_reply("404", "No Such URI");
}}
"#,
        conf = conf.display()
    )
}

/// A MESSAGE from `from`@REALM to `ruri`; the reply.
fn ask(s: &Server, c: &Client, from: &str, ruri: &str, n: u32) -> String {
    let m = format!(
        "MESSAGE {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKsteer{n}\r\n\
         From: <sip:{from}@{REALM}>;tag=s{n}\r\n\
         To: <{ruri}>\r\n\
         Call-ID: steer-{n}-{p}\r\n\
         CSeq: 1 MESSAGE\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        p = c.port()
    );
    c.send(s.addr(), &m);
    c.recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no reply\n{}", s.log()))
        .0
}

#[test]
fn group_avps_and_uri_steer_routing() {
    let Some(rad) = FreeRadius::start(USERS) else {
        return;
    };
    let conf = rad.client_conf(rad.dir.path(), 2, 1);
    let mut s = Server::start(&steer_cfg(&conf), &[]);
    let c = Client::new();
    let grp = format!("sip:grp@{REALM}");
    let avp = format!("sip:avp@{REALM}");

    let r = ask(&s, &c, "alice", &grp, 1);
    assert_eq!(code(&r), 200, "alice is in pstn:\n{r}\n{}", s.log());
    let r = ask(&s, &c, "carol", &grp, 2);
    assert_eq!(code(&r), 403, "carol is not:\n{r}");

    let r = ask(&s, &c, "alice", &avp, 3);
    assert_eq!(code(&r), 302, "alice's route AVP:\n{r}\n{}", s.log());
    assert_eq!(header(&r, "X-Limit"), Some("3"), "integer SIP-AVP:\n{r}");
    let r = ask(&s, &c, "carol", &avp, 4);
    assert_eq!(code(&r), 404, "{r}");

    let r = ask(&s, &c, "alice", &format!("sip:bob@{REALM}"), 5);
    assert_eq!(code(&r), 200, "bob exists:\n{r}\n{}", s.log());
    assert_eq!(
        header(&r, "X-Fwd"),
        Some("sip:bob@elsewhere.example"),
        "{r}"
    );
    let r = ask(&s, &c, "alice", &format!("sip:nobody@{REALM}"), 6);
    assert_eq!(code(&r), 404, "{r}");
    s.stop();
}

/// Start the server with `cfg`; it must exit with an error whose text contains `needle`.
fn must_fail(cfg: &str, needle: &str) {
    let dir = TempDir::new("radius-badcfg");
    let path = dir.file("openser.cfg");
    std::fs::write(&path, expand(cfg, free_udp_port(), dir.path())).unwrap();
    let log = dir.file("stderr.log");
    let mut child = owned(BIN)
        .args(["-f", &path.display().to_string(), "-DD", "-E"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let st = wait_child(&mut child, Duration::from_secs(15));
    if st.is_none() {
        stop_child(&mut child, 9, Duration::from_secs(1));
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(st.is_some_and(|s| !s.success()), "server started:\n{text}");
    assert!(text.contains(needle), "expected `{needle}` in:\n{text}");
}

#[test]
fn bad_radius_configuration_stops_the_start() {
    let dir = TempDir::new("radius-conf");
    let conf = dir.file("radiusclient.conf");
    // A server without a secret (no servers file).
    std::fs::write(
        &conf,
        "authserver 127.0.0.1:1812\nacctserver 127.0.0.1:1813\n",
    )
    .unwrap();
    let head = "listen=udp:127.0.0.1:{PORT}\nloadmodule \"sl.so\"\nloadmodule \"tm.so\"\n\
                loadmodule \"auth.so\"\nloadmodule \"acc.so\"\nloadmodule \"auth_radius.so\"\n";
    must_fail(
        &format!(
            "{head}modparam(\"auth_radius\", \"radius_config\", \"{}\")\nroute {{ exit; }}\n",
            conf.display()
        ),
        "no secret for RADIUS server '127.0.0.1'",
    );
    // A missing file.
    must_fail(
        &format!(
            "{head}modparam(\"auth_radius\", \"radius_config\", \"{}\")\nroute {{ exit; }}\n",
            dir.file("missing.conf").display()
        ),
        "cannot read RADIUS client configuration",
    );
    // An accounting attribute the dictionary does not have.
    let good = radius::client_conf(dir.path(), "127.0.0.1:1812", "127.0.0.1:1813", 1, 1);
    must_fail(
        &format!(
            "{head}modparam(\"auth_radius\", \"radius_config\", \"{c}\")\n\
             modparam(\"acc\", \"radius_config\", \"{c}\")\n\
             modparam(\"acc\", \"radius_extra\", \"No-Such-Attribute=$fu\")\n\
             route {{ exit; }}\n",
            c = good.display()
        ),
        "no attribute 'No-Such-Attribute'",
    );
}
