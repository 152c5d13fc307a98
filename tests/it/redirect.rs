//! uac_redirect (issue 15): a 302 with several contacts followed from failure_route,
//! in q order, through filters, with the accounting hook; a redirect server and a UAS
//! on UDP sockets of this test.

use super::uac::{expect, reply_to};
use crate::harness::*;
use std::time::Duration;

fn cfg(extra: &str) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=2
loadmodule "tm.so"
loadmodule "acc.so"
loadmodule "uac_redirect.so"
modparam("tm", "fr_inv_timer", 4)
modparam("acc", "log_extra", "ru=$ru")
modparam("uac_redirect", "deny_filter", ".*@blocked\.invalid")
{extra}
route {{
    t_on_failure("redir");
    t_relay();
}}
failure_route[redir] {{
    if (t_check_status("3[0-9][0-9]")) {{
        if ($rU == "filtered") {{
            set_accept_filter("^sip:vip@", "");
        }}
        if ($rU == "serial") {{
            # one contact after the other, highest q first
            if (get_redirects("*")) {{
                serialize_branches(1);
                next_branches();
                t_on_failure("next");
                t_relay();
            }}
            exit;
        }}
        if (get_redirects("*", "302 Redirected")) {{
            t_relay();
            exit;
        }}
        log(1, "no usable contact\n");
    }}
}}
failure_route[next] {{
    if (next_branches()) {{
        t_on_failure("next");
        t_relay();
    }}
}}
"#
    )
}

fn invite(ruri: &str, port: u16, callid: &str) -> String {
    request(
        "INVITE",
        ruri,
        port,
        callid,
        1,
        "Contact: <sip:alice@127.0.0.1>\r\n",
    )
}

/// Reply `code` to `req` from `c` (no Contact).
fn answer(c: &Client, req: &(String, std::net::SocketAddr), code: u16, reason: &str, tag: &str) {
    c.send(req.1, &reply_to(&req.0, code, reason, tag, ""));
}

fn ruri_of(req: &str) -> &str {
    req.split(' ').nth(1).unwrap_or("")
}

#[test]
fn a_302_with_two_contacts_is_followed_in_q_order() {
    let redirector = Client::new();
    let uas = Client::new();
    let s = Server::start(&cfg(""), &[]);
    let caller = Client::new();
    let p = uas.port();
    caller.send(
        s.addr(),
        &invite(
            &format!("sip:bob@127.0.0.1:{}", redirector.port()),
            caller.port(),
            "rd-1",
        ),
    );
    let first = expect(&redirector, "INVITE", Duration::from_secs(3)).expect("INVITE");
    // lower q first in the reply, one contact refused by the deny filter
    let mut moved = reply_to(&first.0, 302, "Moved Temporarily", "r1", "");
    moved = moved.replace(
        "Content-Length: 0\r\n",
        &format!(
            "Contact: <sip:second@127.0.0.1:{p}>;q=0.4, <sip:spam@blocked.invalid>;q=1.0\r\n\
             Contact: <sip:first@127.0.0.1:{p}>;q=0.9\r\nContent-Length: 0\r\n"
        ),
    );
    redirector.send(first.1, &moved);
    assert!(
        expect(&redirector, "ACK", Duration::from_secs(3)).is_some(),
        "302 ACKed"
    );
    // Both destinations get the INVITE, the higher q first (same socket: in order).
    let a = expect(&uas, "INVITE", Duration::from_secs(3)).expect("first INVITE");
    let b = expect(&uas, "INVITE", Duration::from_secs(3)).expect("second INVITE");
    assert_eq!(ruri_of(&a.0), format!("sip:first@127.0.0.1:{p}"));
    assert_eq!(ruri_of(&b.0), format!("sip:second@127.0.0.1:{p}"));
    // No third destination. The UAS has not answered yet, so on a loaded machine T1's
    // retransmission (500 ms) of either INVITE may arrive here: allowed, another R-URI not.
    let until = std::time::Instant::now() + Duration::from_millis(300);
    while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
        let Some(more) = expect(&uas, "INVITE", left) else {
            break;
        };
        let ruri = ruri_of(&more.0);
        assert!(
            ruri == ruri_of(&a.0) || ruri == ruri_of(&b.0),
            "no third destination: {ruri}"
        );
    }
    // The first is busy, the second answers: the caller gets the 200, not the 302.
    answer(&uas, &a, 486, "Busy Here", "u1");
    answer(&uas, &b, 200, "OK", "u2");
    let (fin, _) = expect(&caller, "SIP/2.0 2", Duration::from_secs(3)).expect("200");
    assert!(fin.contains(";tag=u2"), "{fin}");
    // One accounting record per followed contact, with the reason and the contact.
    for who in ["first", "second"] {
        let want = format!("reason=Redirected;ru=sip:{who}@127.0.0.1:{p}");
        assert!(
            s.wait_log(&want, Duration::from_secs(3)),
            "{want}\n{}",
            s.log()
        );
    }
    assert!(!s.log().contains("spam@blocked"), "{}", s.log());
}

#[test]
fn filters_and_limits_decide_which_contacts_are_tried() {
    let redirector = Client::new();
    let uas = Client::new();
    let s = Server::start(
        &cfg(r#"modparam("uac_redirect", "default_filter", "deny")"#),
        &[],
    );
    let caller = Client::new();
    let p = uas.port();
    // default deny and no accept filter for this R-URI: nothing to follow, the 302
    // goes upstream
    caller.send(
        s.addr(),
        &invite(
            &format!("sip:bob@127.0.0.1:{}", redirector.port()),
            caller.port(),
            "rd-2",
        ),
    );
    let inv = expect(&redirector, "INVITE", Duration::from_secs(3)).expect("INVITE");
    let moved = reply_to(
        &inv.0,
        302,
        "Moved",
        "r2",
        &format!("sip:vip@127.0.0.1:{p}"),
    );
    redirector.send(inv.1, &moved);
    let (fin, _) = expect(&caller, "302", Duration::from_secs(3)).expect("302 upstream");
    assert!(fin.contains("sip:vip@"), "{fin}");
    assert!(s.wait_log("no usable contact", Duration::from_secs(3)));
    // the same with an accept filter set in failure_route: followed
    caller.send(
        s.addr(),
        &invite(
            &format!("sip:filtered@127.0.0.1:{}", redirector.port()),
            caller.port(),
            "rd-3",
        ),
    );
    let inv = expect(&redirector, "INVITE", Duration::from_secs(3)).expect("INVITE");
    let moved = reply_to(
        &inv.0,
        302,
        "Moved",
        "r3",
        &format!("sip:vip@127.0.0.1:{p}"),
    );
    redirector.send(inv.1, &moved);
    let got = expect(&uas, "INVITE", Duration::from_secs(3)).expect("followed");
    assert_eq!(ruri_of(&got.0), format!("sip:vip@127.0.0.1:{p}"));
    answer(&uas, &got, 200, "OK", "v1");
    assert!(expect(&caller, "200", Duration::from_secs(3)).is_some());
}

#[test]
fn get_redirects_with_a_reason_needs_acc() {
    let dir = TempDir::new("rd-bad");
    let f = dir.file("bad.cfg");
    std::fs::write(
        &f,
        "loadmodule \"tm.so\"\nloadmodule \"uac_redirect.so\"\n\
         route { t_on_failure(\"1\"); t_relay(); }\n\
         failure_route[1] { get_redirects(\"2:1\", \"Redirected\"); }\n",
    )
    .unwrap();
    // known once the modules initialise: a real start, which stops at once
    let port = free_udp_port();
    let cfg = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, format!("listen=udp:127.0.0.1:{port}\n{cfg}")).unwrap();
    let (rc, out, err) = run(&["-f", f.to_str().unwrap(), "-DD", "-E"]);
    assert_ne!(rc, 0, "{out}{err}");
    assert!(err.contains("acc, which is not loaded"), "{err}");
    std::fs::write(
        &f,
        "loadmodule \"tm.so\"\nloadmodule \"uac_redirect.so\"\n\
         modparam(\"uac_redirect\", \"deny_filter\", \"(\")\nroute { t_relay(); }\n",
    )
    .unwrap();
    let (rc, out, err) = run(&["-c", "-f", f.to_str().unwrap()]);
    assert_ne!(rc, 0, "{out}{err}");
    assert!(err.contains("bad.cfg:3"), "{err}");
}

#[test]
fn redirect_contacts_tried_one_after_the_other_by_q() {
    let redirector = Client::new();
    let uas = Client::new();
    let s = Server::start(&cfg(""), &[]);
    let caller = Client::new();
    let p = uas.port();
    caller.send(
        s.addr(),
        &invite(
            &format!("sip:serial@127.0.0.1:{}", redirector.port()),
            caller.port(),
            "rd-4",
        ),
    );
    let first = expect(&redirector, "INVITE", Duration::from_secs(3)).expect("INVITE");
    let moved = reply_to(&first.0, 302, "Moved", "r4", "").replace(
        "Content-Length: 0\r\n",
        &format!(
            "Contact: <sip:low@127.0.0.1:{p}>;q=0.2, <sip:high@127.0.0.1:{p}>;q=0.8, \
             <sip:mid@127.0.0.1:{p}>;q=0.5\r\nContent-Length: 0\r\n"
        ),
    );
    redirector.send(first.1, &moved);
    // one at a time: each gets the INVITE only after the previous one failed
    for (who, code) in [("high", 486), ("mid", 480), ("low", 200)] {
        let inv = expect(&uas, "INVITE", Duration::from_secs(3))
            .unwrap_or_else(|| panic!("INVITE for {who}; log:\n{}", s.log()));
        assert_eq!(ruri_of(&inv.0), format!("sip:{who}@127.0.0.1:{p}"));
        assert!(
            expect(&uas, "INVITE", Duration::from_millis(300)).is_none(),
            "only one destination at a time"
        );
        answer(&uas, &inv, code, if code == 200 { "OK" } else { "No" }, who);
    }
    let (fin, _) = expect(&caller, "SIP/2.0 2", Duration::from_secs(3)).expect("200");
    assert!(fin.contains(";tag=low"), "{fin}");
}
