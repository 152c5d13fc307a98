//! Modules options and uri over the wire (issue 10: the two template modules), and
//! `$C` giving the same bytes in xlog and in any other PV format.

use crate::harness::*;
use std::time::Duration;

const HEAD: &str = "listen=udp:127.0.0.1:{PORT}\nchildren=1\n\
loadmodule \"sl.so\"\nloadmodule \"options.so\"\nloadmodule \"uri.so\"\n\
loadmodule \"textops.so\"\nloadmodule \"xlog.so\"\n";

fn cfg(body: &str) -> String {
    format!("{HEAD}{body}")
}

#[test]
fn options_reply_answers_options_to_the_server_with_the_configured_headers() {
    let mut s = Server::start(
        &cfg("modparam(\"options\", \"accept\", \"application/sdp\")\n\
              modparam(\"options\", \"accept_language\", \"de\")\n\
              modparam(\"options\", \"support\", \"path\")\n\
              route {\n if (method==\"OPTIONS\") { options_reply(); }\n\
              sl_send_reply(\"404\", \"Not Here\");\n}\n"),
        &[],
    );
    let c = Client::new();
    let ruri = format!("sip:{}", s.addr());
    c.send(s.addr(), &request("OPTIONS", &ruri, c.port(), "op1", 1, ""));
    let r = c
        .recv_timeout(Duration::from_secs(3))
        .map(|(r, _)| r)
        .unwrap_or_else(|| panic!("no reply\n{}", s.log()));
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
    assert_eq!(header(&r, "Accept"), Some("application/sdp"), "{r}");
    assert_eq!(
        header(&r, "Accept-Encoding"),
        Some(""),
        "1.2 sends it empty: {r}"
    );
    assert_eq!(header(&r, "Accept-Language"), Some("de"), "{r}");
    assert_eq!(header(&r, "Supported"), Some("path"), "{r}");
    // rc 0 stopped the script: nothing else came back.
    assert!(c.recv_timeout(Duration::from_millis(300)).is_none());

    // An OPTIONS for a user is not for the server: rc -1, the script goes on.
    c.send(
        s.addr(),
        &request("OPTIONS", "sip:bob@127.0.0.1", c.port(), "op2", 1, ""),
    );
    let r = c.recv_matching("SIP/2.0").unwrap_or_default();
    assert!(r.starts_with("SIP/2.0 404 Not Here\r\n"), "{r}");
    assert!(header(&r, "Accept-Language").is_none(), "{r}");
    assert!(
        s.wait_log("ruri contains username", Duration::from_secs(2)),
        "{}",
        s.log()
    );
    assert!(
        s.log()
            .contains("ERROR:options:cmd_options_reply: ruri contains username")
    );
    assert!(s.stop().success());
}

#[test]
fn options_needs_sl() {
    let dir = TempDir::new("optsl");
    let p = dir.file("o.cfg");
    std::fs::write(
        &p,
        "listen=udp:127.0.0.1:5999\nloadmodule \"options.so\"\nroute { options_reply(); }\n",
    )
    .unwrap();
    let (rc, _, err) = run(&["-c", "-f", p.to_str().unwrap()]);
    assert_ne!(rc, 0, "{err}");
    assert!(
        err.contains(&format!(
            "{}:2:1: module 'options' needs module 'sl', which is not loaded",
            p.display()
        )),
        "{err}"
    );
}

#[test]
fn has_totag_routes_in_dialog_requests() {
    let sink = Client::new();
    let mut s = Server::start(
        &cfg(&format!(
            "route {{\n if (has_totag()) {{ forward(\"127.0.0.1:{}\"); exit; }}\n\
             sl_send_reply(\"403\", \"Initial requests not served\");\n}}\n",
            sink.port()
        )),
        &[],
    );
    let c = Client::new();
    // In-dialog (To tag): forwarded.
    let bye = request("BYE", "sip:bob@127.0.0.1", c.port(), "td1", 2, "")
        .replace("To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=b77");
    c.send(s.addr(), &bye);
    let (f, _) = sink
        .recv()
        .unwrap_or_else(|| panic!("in-dialog BYE not forwarded\n{}", s.log()));
    assert!(f.starts_with("BYE sip:bob@127.0.0.1 SIP/2.0\r\n"), "{f}");
    // Initial (no To tag): refused.
    c.send(
        s.addr(),
        &request("INVITE", "sip:bob@127.0.0.1", c.port(), "td2", 1, ""),
    );
    let r = c.recv_matching("SIP/2.0").unwrap_or_default();
    assert!(r.starts_with("SIP/2.0 403 "), "{r}");
    assert!(sink.recv_timeout(Duration::from_millis(300)).is_none());
    assert!(s.stop().success());
}

#[test]
fn uri_param_add_uri_param_tel2sip_and_e164_on_real_ruris() {
    let sink = Client::new();
    let mut s = Server::start(
        &cfg(&format!(
            "route {{\n\
             if (uri_param(\"transport\", \"tcp\")) {{ sl_send_reply(\"488\", \"No TCP here\"); exit; }}\n\
             if (uri_param(\"lr\")) {{ append_hf(\"X-Had-Lr: yes\\r\\n\"); }}\n\
             tel2sip();\n\
             if (is_uri_user_e164(\"$ru\")) {{ append_hf(\"X-E164: yes\\r\\n\"); }}\n\
             add_uri_param(\"foo=bar\");\n\
             forward(\"127.0.0.1:{}\");\n}}\n",
            sink.port()
        )),
        &[],
    );
    let c = Client::new();
    let got = |ruri: &str, callid: &str| -> String {
        c.send(s.addr(), &request("MESSAGE", ruri, c.port(), callid, 1, ""));
        sink.recv()
            .map(|(m, _)| m)
            .unwrap_or_else(|| panic!("{ruri} not forwarded\n{}", s.log()))
    };
    let f = got("sip:bob@127.0.0.1;lr", "up1");
    assert!(
        f.starts_with("MESSAGE sip:bob@127.0.0.1;lr;foo=bar SIP/2.0\r\n"),
        "{f}"
    );
    assert_eq!(header(&f, "X-Had-Lr"), Some("yes"));
    assert!(header(&f, "X-E164").is_none());

    let f = got("tel:+4930123456", "up2");
    assert!(
        f.starts_with("MESSAGE sip:+4930123456@127.0.0.1;user=phone;foo=bar SIP/2.0\r\n"),
        "{f}"
    );
    assert_eq!(header(&f, "X-E164"), Some("yes"), "{f}");

    // A received Request-URI with a header part is refused before the script (RFC 3261
    // §19.1.1; RFC 4475 escruri, issue 18): 400, nothing forwarded.
    c.send(
        s.addr(),
        &request(
            "MESSAGE",
            "sip:carol@127.0.0.1?subject=hi",
            c.port(),
            "up3",
            1,
            "",
        ),
    );
    let r = c.recv_matching("SIP/2.0").unwrap_or_default();
    assert!(r.starts_with("SIP/2.0 400 "), "{r}");
    assert!(sink.recv_timeout(Duration::from_millis(300)).is_none());

    c.send(
        s.addr(),
        &request(
            "MESSAGE",
            "sip:bob@127.0.0.1;transport=tcp",
            c.port(),
            "up4",
            1,
            "",
        ),
    );
    let r = c.recv_matching("SIP/2.0").unwrap_or_default();
    assert!(r.starts_with("SIP/2.0 488 No TCP here"), "{r}");
    assert!(s.stop().success());
}

/// `$C(rx)` is built by one function: xlog's output and another PV format (a header
/// added with append_to_reply) carry the same bytes, those of 1.2's xlog.
#[test]
fn color_escape_is_the_same_in_xlog_and_in_pv_formats() {
    let mut s = Server::start(
        &cfg("route {\n xlog(\"L_ERR\", \"COLOR[$C(rx)]\\n\");\n\
              append_to_reply(\"X-Color: [$C(rx)]\\r\\n\");\n\
              sl_send_reply(\"200\", \"OK\");\n}\n"),
        &[],
    );
    let c = Client::new();
    c.send(
        s.addr(),
        &request("OPTIONS", "sip:bob@127.0.0.1", c.port(), "col1", 1, ""),
    );
    let r = c.recv_matching("200").unwrap_or_default();
    let in_reply = header(&r, "X-Color").unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(in_reply, "[\x1b[0;31;49m]", "{r:?}");
    assert!(s.wait_log("COLOR[", Duration::from_secs(2)), "{}", s.log());
    let log = s.log();
    let line = log
        .lines()
        .find(|l| l.contains("COLOR["))
        .unwrap_or_default();
    let in_log = &line[line.find("COLOR").unwrap_or(0) + 5..];
    assert_eq!(in_log, in_reply, "{log:?}");
    assert!(s.stop().success());
}
