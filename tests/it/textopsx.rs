//! textopsx (issue 22, second part): `msg_apply_changes` makes a header added by the
//! script visible to later checks, `change_reply_status` rewrites a relayed reply (and
//! refuses to change a 2xx's class), `remove_body` and `keep_hf` on a relayed
//! request, `fnmatch`.

use crate::harness::*;
use std::time::Duration;

fn cfg(uas: u16) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=2
debug=3
log_stderror=yes
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "textops.so"
loadmodule "textopsx.so"
loadmodule "xlog.so"
route {{
    if ($rU == "apply") {{
        append_hf("X-Added: yes\r\n");
        remove_hf("X-Gone");
        if (is_present_hf("X-Added") || !is_present_hf("X-Gone")) {{
            sl_send_reply("500", "Changed Before Apply");
            exit;
        }}
        if (!msg_apply_changes()) {{
            sl_send_reply("500", "Apply Failed");
            exit;
        }}
        if (is_present_hf("X-Added") && search("X-Added: yes") && $hdr(X-Added) == "yes"
            && !is_present_hf("X-Gone")) {{
            sl_send_reply("200", "Seen After Apply");
        }} else {{
            sl_send_reply("404", "Not Seen");
        }}
        exit;
    }}
    if ($rU == "fn") {{
        if (fnmatch("$hdr(X-Num)", "12*") && fnmatch("$hdr(X-Name)", "ALI[a-z]?", "i")
            && !fnmatch("$hdr(X-Name)", "ALI[a-z]?")) {{
            sl_send_reply("200", "Match");
        }} else {{
            sl_send_reply("404", "No Match");
        }}
        exit;
    }}
    if ($rU == "strip") {{
        keep_hf("^X-Keep");
        remove_body();
    }}
    t_on_reply("1");
    rewritehostport("127.0.0.1:{uas}");
    t_relay();
}}
onreply_route[1] {{
    if (status == "603") {{
        change_reply_status("404", "Not Found Here");
    }}
    if (status == "202") {{
        if (!change_reply_status("403", "Forbidden")) {{
            xlog("L_INFO", "CLASS-CHANGE-REFUSED\n");
        }}
    }}
}}
"#
    )
}

fn code(m: &str) -> u16 {
    m.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A UAS reply to `req` with its Vias, From, To (tagged), Call-ID and CSeq.
fn reply(req: &str, code: u16, reason: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if ["via", "from", "call-id", "cseq"].contains(&name.as_str()) {
            out.push_str(line);
            out.push_str("\r\n");
        } else if name == "to" {
            out.push_str(line);
            out.push_str(";tag=x1\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

#[test]
fn msg_apply_changes_makes_later_checks_see_the_change() {
    let srv = Server::start(&cfg(9), &[]);
    let c = Client::new();
    c.send(
        srv.addr(),
        &request(
            "OPTIONS",
            "sip:apply@127.0.0.1",
            c.port(),
            "apply-1",
            1,
            "X-Gone: soon\r\n",
        ),
    );
    let (r, _) = c.recv().expect("reply");
    assert!(
        r.starts_with("SIP/2.0 200 Seen After Apply\r\n"),
        "{r}\n{}",
        srv.log()
    );

    c.send(
        srv.addr(),
        &request(
            "OPTIONS",
            "sip:fn@127.0.0.1",
            c.port(),
            "fn-1",
            1,
            "X-Num: 12345\r\nX-Name: Alice\r\n",
        ),
    );
    let (r, _) = c.recv().expect("reply");
    assert!(r.starts_with("SIP/2.0 200 Match\r\n"), "{r}");
    c.send(
        srv.addr(),
        &request(
            "OPTIONS",
            "sip:fn@127.0.0.1",
            c.port(),
            "fn-2",
            1,
            "X-Num: 2345\r\nX-Name: Alice\r\n",
        ),
    );
    let (r, _) = c.recv().expect("reply");
    assert!(r.starts_with("SIP/2.0 404 No Match\r\n"), "{r}");
}

#[test]
fn relayed_request_stripped_and_reply_status_changed() {
    let uas = Client::new();
    let srv = Server::start(&cfg(uas.port()), &[]);
    let caller = Client::new();

    // keep_hf + remove_body on a MESSAGE with a body.
    let body = "hello there";
    let msg = format!(
        "MESSAGE sip:strip@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKstrip1\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\n\
         To: <sip:strip@127.0.0.1>\r\n\
         Call-ID: strip-1\r\n\
         CSeq: 1 MESSAGE\r\n\
         Max-Forwards: 70\r\n\
         Contact: <sip:alice@127.0.0.1:{p}>\r\n\
         X-Keep-Me: 1\r\n\
         X-Drop-Me: 2\r\n\
         Subject: dropped too\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len(),
        p = caller.port()
    );
    caller.send(srv.addr(), &msg);
    let (got, from) = uas.recv().expect("the relayed MESSAGE");
    assert!(got.starts_with("MESSAGE sip:strip@127.0.0.1:"), "{got}");
    assert_eq!(header(&got, "X-Keep-Me"), Some("1"), "{got}");
    assert_eq!(header(&got, "X-Drop-Me"), None, "{got}");
    assert_eq!(header(&got, "Subject"), None, "{got}");
    for h in [
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Max-Forwards",
        "Contact",
    ] {
        assert!(header(&got, h).is_some(), "{h} kept: {got}");
    }
    assert_eq!(header(&got, "Content-Length"), Some("0"), "{got}");
    assert!(got.ends_with("\r\n\r\n"), "no body: {got}");
    uas.send(from, &reply(&got, 200, "OK"));
    let (r, _) = caller.recv().expect("200 relayed");
    assert_eq!(code(&r), 200, "{r}");

    // 603 from the callee goes on as "404 Not Found Here".
    caller.send(
        srv.addr(),
        &request(
            "MESSAGE",
            "sip:bob@127.0.0.1",
            caller.port(),
            "status-1",
            1,
            "",
        ),
    );
    let (got, from) = uas.recv().expect("the relayed MESSAGE");
    uas.send(from, &reply(&got, 603, "Decline"));
    let (r, _) = caller.recv().expect("the changed reply");
    assert!(r.starts_with("SIP/2.0 404 Not Found Here\r\n"), "{r}");

    // A 2xx cannot become a 403.
    caller.send(
        srv.addr(),
        &request(
            "MESSAGE",
            "sip:bob@127.0.0.1",
            caller.port(),
            "status-2",
            1,
            "",
        ),
    );
    let (got, from) = uas.recv().expect("the relayed MESSAGE");
    uas.send(from, &reply(&got, 202, "Accepted"));
    let (r, _) = caller.recv().expect("the 202");
    assert!(r.starts_with("SIP/2.0 202 Accepted\r\n"), "{r}");
    assert!(srv.wait_log("CLASS-CHANGE-REFUSED", Duration::from_secs(5)));
}
