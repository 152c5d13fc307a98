//! uac (issue 15): From replacing with the original restored in replies and in-dialog
//! requests both ways (a caller and a callee on UDP sockets of this test), and
//! `uac_auth` answering a SIPp UAS that challenges with 407.

use crate::harness::digest::md5_hex;
use crate::harness::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A reply to `req` echoing Via, Record-Route, From, To (+ tag), Call-ID, CSeq.
pub fn reply_to(req: &str, code: u16, reason: &str, totag: &str, contact: &str) -> String {
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
    if to.contains("tag=") || totag.is_empty() {
        s.push_str(&format!("To: {to}\r\n"));
    } else {
        s.push_str(&format!("To: {to};tag={totag}\r\n"));
    }
    if !contact.is_empty() {
        s.push_str(&format!("Contact: <{contact}>\r\n"));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

/// The next message whose first line contains `needle`, within `t`.
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

const REPLACE_CFG: &str = r#"listen=udp:127.0.0.1:{PORT}
children=2
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "uac.so"
modparam("uac", "from_passwd", "s3cret")
modparam("uac", "rr_store_param", "vsf")
modparam("uac", "from_restore_mode", "auto")
route {
    if (loose_route()) {
        t_relay();
        exit;
    }
    if (method == "INVITE") {
        record_route();
        uac_replace_from("Anonymous", "sip:anonymous@anonymous.invalid");
    }
    t_relay();
}
"#;

#[test]
fn replaced_from_is_restored_in_replies_and_both_directions() {
    let callee = Client::new();
    let caller = Client::new();
    let s = Server::start(REPLACE_CFG, &[]);
    let ruri = format!("sip:bob@127.0.0.1:{}", callee.port());
    let caller_uri = format!("sip:alice@127.0.0.1:{}", caller.port());
    let from_line = "\"Alice\" <sip:alice@127.0.0.1>;tag=a77";
    let inv = format!(
        "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKu1\r\n\
         From: {from_line}\r\nTo: <{ruri}>\r\nCall-ID: uac-1\r\nCSeq: 10 INVITE\r\n\
         Contact: <{caller_uri}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        p = caller.port()
    );
    caller.send(s.addr(), &inv);
    let (got, from) = expect(&callee, "INVITE", Duration::from_secs(3)).expect("INVITE");
    // The UAS sees the replaced From (display and URI), the tag kept.
    assert_eq!(
        header(&got, "From"),
        Some("Anonymous <sip:anonymous@anonymous.invalid>;tag=a77"),
        "{got}"
    );
    let rr = header(&got, "Record-Route")
        .expect("Record-Route")
        .to_string();
    assert!(rr.contains(";vsf="), "{rr}");
    assert!(
        !header(&got, "From").unwrap().contains("alice"),
        "the caller's identity leaked: {got}"
    );
    let callee_uri = format!("sip:bob@127.0.0.1:{}", callee.port());
    callee.send(from, &reply_to(&got, 180, "Ringing", "b1", &callee_uri));
    callee.send(from, &reply_to(&got, 200, "OK", "b1", &callee_uri));
    // The caller sees its own From in the replies.
    let (ring, _) = expect(&caller, "180", Duration::from_secs(3)).expect("180");
    assert_eq!(header(&ring, "From"), Some(from_line), "{ring}");
    let (ok, _) = expect(&caller, "200", Duration::from_secs(3)).expect("200");
    assert_eq!(header(&ok, "From"), Some(from_line), "{ok}");
    assert_eq!(header(&ok, "CSeq"), Some("10 INVITE"));
    let rr_uri = rr
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    // ACK downstream: From replaced again.
    let ack = format!(
        "ACK {callee_uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKu2\r\n\
         Route: <{rr_uri}>\r\nFrom: {from_line}\r\nTo: <{ruri}>;tag=b1\r\nCall-ID: uac-1\r\n\
         CSeq: 10 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        p = caller.port()
    );
    caller.send(s.addr(), &ack);
    let (ack_in, _) = expect(&callee, "ACK", Duration::from_secs(3)).expect("ACK");
    let f = header(&ack_in, "From").unwrap();
    assert!(
        f.contains("<sip:anonymous@anonymous.invalid>;tag=a77"),
        "{ack_in}"
    );
    // The callee hangs up: its BYE has the replaced URI in To; the caller gets its own.
    let bye = format!(
        "BYE {caller_uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKb1\r\n\
         Route: <{rr_uri}>\r\nFrom: <{ruri}>;tag=b1\r\n\
         To: Anonymous <sip:anonymous@anonymous.invalid>;tag=a77\r\nCall-ID: uac-1\r\n\
         CSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        p = callee.port()
    );
    callee.send(s.addr(), &bye);
    let (bye_in, bfrom) = expect(&caller, "BYE", Duration::from_secs(3)).expect("BYE");
    assert_eq!(
        header(&bye_in, "To"),
        Some("Anonymous <sip:alice@127.0.0.1>;tag=a77"),
        "{bye_in}"
    );
    // The caller's 200 goes back to the callee with the To it sent.
    caller.send(bfrom, &reply_to(&bye_in, 200, "OK", "", ""));
    let (bye_ok, _) = expect(&callee, "200", Duration::from_secs(3)).expect("200 for BYE");
    assert_eq!(
        header(&bye_ok, "To"),
        Some("Anonymous <sip:anonymous@anonymous.invalid>;tag=a77"),
        "{bye_ok}"
    );
    assert_eq!(header(&bye_ok, "CSeq"), Some("1 BYE"));
    let log = s.log();
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn a_foreign_store_parameter_is_left_alone() {
    // An in-dialog request whose vsf value does not decode against its URIs keeps
    // its headers; the server logs and carries on.
    let callee = Client::new();
    let caller = Client::new();
    let s = Server::start(REPLACE_CFG, &[]);
    let ruri = format!("sip:bob@127.0.0.1:{}", callee.port());
    let bye = format!(
        "BYE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKf1\r\n\
         Route: <sip:127.0.0.1:{port};lr;ftag=a1;vsf=AAAA>\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\n\
         To: <{ruri}>;tag=b1\r\nCall-ID: uac-2\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        p = caller.port(),
        port = s.port
    );
    caller.send(s.addr(), &bye);
    let (got, _) = expect(&callee, "BYE", Duration::from_secs(3))
        .unwrap_or_else(|| panic!("BYE not forwarded; log:\n{}", s.log()));
    assert_eq!(header(&got, "From"), Some("<sip:alice@127.0.0.1>;tag=a1"));
    assert!(
        s.wait_log("failed to decode uri", Duration::from_secs(3)),
        "{}",
        s.log()
    );
}

fn auth_cfg(extra: &str) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=2
loadmodule "tm.so"
loadmodule "uac.so"
modparam("uac", "from_restore_mode", "none")
modparam("uac", "credential", "other:elsewhere.example:nope")
{extra}
route {{
    if (method == "INVITE") {{
        t_on_failure("auth");
    }}
    t_relay();
}}
failure_route[auth] {{
    if (t_check_status("40[17]")) {{
        if (uac_auth()) {{
            t_relay();
            exit;
        }}
        log(1, "uac_auth refused\n");
    }}
}}
"#
    )
}

/// Through the server to a SIPp UAS that challenges with 407: the final reply the
/// caller gets, and the Proxy-Authorization SIPp received (from its message trace).
fn call_through_407(cfg: &str, want: &str, callid: &str) -> (String, Option<String>) {
    let dir = TempDir::new("uac-auth");
    let port = free_udp_port();
    let _uas = sipp_spawn(
        dir.path(),
        &[
            "-sf".into(),
            scenario("uas_407.xml"),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-m".into(),
            "1".into(),
            "-trace_msg".into(),
            "-message_file".into(),
            dir.file("msgs.log").display().to_string(),
        ],
    );
    assert!(wait_udp_bound(port, Duration::from_secs(20)), "SIPp UAS");
    let s = Server::start(cfg, &[]);
    let caller = Client::new();
    let ruri = format!("sip:acct@127.0.0.1:{port}");
    caller.send(
        s.addr(),
        &request(
            "INVITE",
            &ruri,
            caller.port(),
            callid,
            1,
            "Contact: <sip:alice@127.0.0.1>\r\n",
        ),
    );
    let (fin, _) = expect(&caller, want, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no {want} at the caller; log:\n{}", s.log()));
    let end = Instant::now() + Duration::from_secs(3);
    let mut pa = None;
    while pa.is_none() && Instant::now() < end {
        let trace = std::fs::read_to_string(dir.file("msgs.log")).unwrap_or_default();
        pa = trace
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("Proxy-Authorization:"))
            .map(|v| v.trim().to_string());
        if pa.is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    (fin, pa)
}

/// Check a Proxy-Authorization answering the scenario's challenge (RFC 2617 with
/// qop=auth) for acct / pw123, computed here independently.
fn check_digest(pa: &str, ruri: &str) {
    let field = |name: &str| {
        pa.split(',')
            .map(str::trim)
            .find_map(|p| {
                let p = p.strip_prefix("Digest ").unwrap_or(p);
                let (n, v) = p.split_once('=')?;
                (n.trim() == name).then(|| v.trim().trim_matches('"').to_string())
            })
            .unwrap_or_else(|| panic!("no {name} in {pa}"))
    };
    assert_eq!(field("username"), "acct");
    assert_eq!(field("realm"), "carrier.example");
    assert_eq!(field("uri"), ruri);
    assert_eq!(field("opaque"), "op1");
    assert_eq!(field("qop"), "auth");
    let ha1 = md5_hex("acct:carrier.example:pw123");
    let ha2 = md5_hex(&format!("INVITE:{ruri}"));
    let want = md5_hex(&format!(
        "{ha1}:{}:{}:{}:auth:{ha2}",
        field("nonce"),
        field("nc"),
        field("cnonce")
    ));
    assert_eq!(field("response"), want, "{pa}");
}

/// The R-URI the call went to (the To URI of its reply).
fn field_uri(reply: &str) -> String {
    let to = header(reply, "To").unwrap();
    to.trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn uac_auth_answers_a_407_with_a_credential_param() {
    if !require("sipp") {
        return;
    }
    let cfg = auth_cfg(r#"modparam("uac", "credential", "acct:carrier.example:pw123")"#);
    let (ok, pa) = call_through_407(&cfg, "200", "uac-auth-1");
    // SIPp answered 200 only to an INVITE with CSeq 2 and credentials; the caller
    // sees its own CSeq.
    assert_eq!(header(&ok, "CSeq"), Some("1 INVITE"), "{ok}");
    let pa = pa.expect("Proxy-Authorization in SIPp's trace");
    let uri = field_uri(&ok);
    check_digest(&pa, &uri);
}

#[test]
fn uac_auth_takes_credentials_from_avps() {
    if !require("sipp") {
        return;
    }
    let cfg = auth_cfg(
        r#"modparam("uac", "auth_realm_avp", "$avp(i:10)")
modparam("uac", "auth_username_avp", "$avp(i:11)")
modparam("uac", "auth_password_avp", "$avp(s:pw)")"#,
    )
    .replace(
        "t_on_failure(\"auth\");",
        "t_on_failure(\"auth\");\n        $avp(i:10) = \"carrier.example\";\n        $avp(i:11) = \"acct\";\n        $avp(s:pw) = \"pw123\";",
    );
    let (ok, pa) = call_through_407(&cfg, "200", "uac-auth-2");
    check_digest(&pa.expect("Proxy-Authorization"), &field_uri(&ok));
}

#[test]
fn without_a_credential_for_the_realm_the_407_goes_upstream() {
    if !require("sipp") {
        return;
    }
    let cfg = auth_cfg("");
    let (r, pa) = call_through_407(&cfg, "407", "uac-auth-3");
    assert_eq!(pa, None, "no retry without a credential");
    assert!(
        header(&r, "Proxy-Authenticate").is_some_and(|h| h.contains("carrier.example")),
        "{r}"
    );
}

#[test]
fn bad_uac_params_stop_the_start() {
    let dir = TempDir::new("uac-bad");
    for (line, want) in [
        (
            r#"modparam("uac", "from_restore_mode", "sometimes")"#,
            "from_restore_mode",
        ),
        (
            r#"modparam("uac", "credential", "justauser")"#,
            "credential",
        ),
        (
            r#"modparam("uac", "auth_realm_avp", "$avp()")"#,
            "auth_realm_avp",
        ),
    ] {
        let cfg = dir.file("bad.cfg");
        std::fs::write(
            &cfg,
            format!(
                "loadmodule \"tm.so\"\nloadmodule \"rr.so\"\nloadmodule \"uac.so\"\n{line}\nroute {{ t_relay(); }}\n"
            ),
        )
        .unwrap();
        let (rc, out, err) = run(&["-c", "-f", cfg.to_str().unwrap()]);
        assert_ne!(rc, 0, "{line}: {out}{err}");
        assert!(
            err.contains(want) || out.contains(want),
            "{line}: {out}{err}"
        );
    }
}

/// `uac_replace_from` before `record_route` (the parameter waits for the header), in
/// manual mode: the reply is restored, and the in-dialog request only when the script
/// calls `uac_restore_from()`.
#[test]
fn replace_before_record_route_and_manual_restore() {
    let cfg = r#"listen=udp:127.0.0.1:{PORT}
children=2
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "uac.so"
modparam("uac", "from_restore_mode", "manual")
modparam("uac", "rr_store_param", "uacp")
route {
    if (loose_route()) {
        if ($rU == "restore") {
            uac_restore_from();
        }
        t_relay();
        exit;
    }
    uac_replace_from("sip:hidden@example.net");
    record_route();
    t_relay();
}
"#;
    let callee = Client::new();
    let caller = Client::new();
    let s = Server::start(cfg, &[]);
    let ruri = format!("sip:bob@127.0.0.1:{}", callee.port());
    caller.send(
        s.addr(),
        &request("INVITE", &ruri, caller.port(), "uac-m", 1, ""),
    );
    let (got, from) = expect(&callee, "INVITE", Duration::from_secs(3)).expect("INVITE");
    assert_eq!(
        header(&got, "From"),
        Some("<sip:hidden@example.net>;tag=auac-m")
    );
    let rr = header(&got, "Record-Route").unwrap().to_string();
    assert!(rr.contains(";uacp=") && rr.ends_with('>'), "{rr}");
    callee.send(from, &reply_to(&got, 200, "OK", "b9", &ruri));
    let (ok, _) = expect(&caller, "200", Duration::from_secs(3)).expect("200");
    assert_eq!(
        header(&ok, "From"),
        Some("<sip:alice@127.0.0.1>;tag=auac-m")
    );
    let rr_uri = rr.trim_start_matches('<').trim_end_matches('>').to_string();
    // two in-dialog requests downstream: restored only where the script asks
    for (user, want) in [
        ("norestore", "alice@127.0.0.1"),
        ("restore", "hidden@example.net"),
    ] {
        let p = caller.port();
        caller.send(
            s.addr(),
            &format!(
                "INFO sip:{user}@127.0.0.1:{c} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK{user}\r\n\
                 Route: <{rr_uri}>\r\nFrom: <sip:alice@127.0.0.1>;tag=auac-m\r\nTo: <{ruri}>;tag=b9\r\n\
                 Call-ID: uac-m\r\nCSeq: 2 INFO\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                c = callee.port()
            ),
        );
        let (info, _) = expect(&callee, "INFO", Duration::from_secs(3)).expect("INFO");
        assert!(
            header(&info, "From").unwrap().contains(want),
            "{user}: {info}"
        );
    }
}

/// A reply tm makes itself (408 after fr_timer, the callee silent) is made from the
/// request as forwarded: the caller still gets its own From.
#[test]
fn local_timeout_reply_has_the_callers_from() {
    let silent = Client::new();
    let caller = Client::new();
    let cfg = REPLACE_CFG.replace(
        "loadmodule \"uac.so\"",
        "loadmodule \"uac.so\"\nmodparam(\"tm\", \"fr_timer\", 1)",
    );
    let s = Server::start(&cfg, &[]);
    let ruri = format!("sip:bob@127.0.0.1:{}", silent.port());
    caller.send(
        s.addr(),
        &request("INVITE", &ruri, caller.port(), "uac-408", 1, ""),
    );
    assert!(expect(&silent, "INVITE", Duration::from_secs(3)).is_some());
    let (r, _) = expect(&caller, "408", Duration::from_secs(5)).expect("408");
    assert_eq!(
        header(&r, "From"),
        Some("<sip:alice@127.0.0.1>;tag=auac-408"),
        "{r}"
    );
}
