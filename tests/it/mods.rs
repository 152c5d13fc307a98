//! Modules sl, maxfwd, textops, xlog over the wire (issue 4 item 8, issue 3 item 5).

use crate::harness::*;
use std::time::Duration;

const HEAD: &str = "listen=udp:127.0.0.1:{PORT}\nchildren=1\n\
loadmodule \"sl.so\"\nloadmodule \"maxfwd.so\"\nloadmodule \"textops.so\"\nloadmodule \"xlog.so\"\n";

fn cfg(route: &str) -> String {
    format!("{HEAD}{route}")
}

fn tag_of(to: &str) -> &str {
    to.split(";tag=").nth(1).unwrap_or("")
}

fn msg_with(first: &str, port: u16, callid: &str, extra: &str, body: &str) -> String {
    let method = first.split(' ').next().unwrap_or("");
    format!(
        "{first} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{callid}\r\n\
         From: <sip:alice@127.0.0.1>;tag=a{callid}\r\n\
         To: <sip:bob@127.0.0.1>\r\n\
         Call-ID: {callid}\r\n\
         CSeq: 1 {method}\r\n\
         {extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn options_answered_by_sl_send_reply() {
    let mut s = Server::start(
        &cfg(
            "route {\n if (method==\"OPTIONS\") { sl_send_reply(\"200\", \"OK\"); exit; }\n sl_send_reply(\"404\", \"Not Here\");\n}\n",
        ),
        &[],
    );
    let c = Client::new();
    c.send(
        s.addr(),
        &request("OPTIONS", "sip:bob@127.0.0.1", c.port(), "opt1", 1, ""),
    );
    let r = c
        .recv_matching("200")
        .unwrap_or_else(|| panic!("no reply\n{}", s.log()));
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
    let via = header(&r, "Via").unwrap();
    assert_eq!(
        via,
        format!("SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKopt11", c.port())
    );
    let tag = tag_of(header(&r, "To").unwrap());
    assert_eq!(tag.len(), 37, "{r}");
    assert_eq!(tag.as_bytes()[32], b'.');
    assert!(
        tag.bytes()
            .enumerate()
            .all(|(i, b)| i == 32 || b.is_ascii_hexdigit())
    );
    assert!(
        header(&r, "Server").unwrap().starts_with("OpenSER ("),
        "{r}"
    );
    assert_eq!(header(&r, "Content-Length"), Some("0"));
    assert_eq!(header(&r, "Call-ID"), Some("opt1"));
    assert_eq!(header(&r, "CSeq"), Some("1 OPTIONS"));
    // the same Via gives the same tag; another branch another suffix
    c.send(
        s.addr(),
        &request("OPTIONS", "sip:bob@127.0.0.1", c.port(), "opt1", 1, ""),
    );
    let r2 = c.recv_matching("200").unwrap();
    assert_eq!(tag_of(header(&r2, "To").unwrap()), tag);
    c.send(
        s.addr(),
        &request("OPTIONS", "sip:bob@127.0.0.1", c.port(), "opt2", 1, ""),
    );
    let r3 = c.recv_matching("200").unwrap();
    let t3 = tag_of(header(&r3, "To").unwrap());
    assert_eq!(&t3[..33], &tag[..33]);
    s.stop();
}

#[test]
fn reply_follows_rport_and_received() {
    let mut s = Server::start(
        &cfg(
            "route {\n if (method==\"INFO\") force_rport();\n sl_send_reply(\"488\", \"Not $rm\");\n}\n",
        ),
        &[],
    );
    let c = Client::new();
    // Via claims another host and asks for rport: the reply comes back to the source.
    let m = request("OPTIONS", "sip:bob@127.0.0.1", c.port(), "rp1", 1, "").replace(
        &format!("127.0.0.1:{};branch", c.port()),
        "10.9.9.9:5999;rport;branch",
    );
    c.send(s.addr(), &m);
    let r = c
        .recv_matching("488")
        .unwrap_or_else(|| panic!("no reply\n{}", s.log()));
    assert!(r.starts_with("SIP/2.0 488 Not OPTIONS\r\n"), "{r}");
    assert_eq!(
        header(&r, "Via").unwrap(),
        format!(
            "SIP/2.0/UDP 10.9.9.9:5999;rport={};branch=z9hG4bKrp11;received=127.0.0.1",
            c.port()
        )
    );
    // no rport in the Via but force_rport(): same
    let m = request("INFO", "sip:bob@127.0.0.1", c.port(), "rp2", 1, "").replace(
        &format!("127.0.0.1:{};branch", c.port()),
        "127.0.0.1:9;branch",
    );
    c.send(s.addr(), &m);
    let r = c
        .recv_matching("488")
        .unwrap_or_else(|| panic!("no reply\n{}", s.log()));
    assert!(
        header(&r, "Via")
            .unwrap()
            .contains(&format!(";rport={}", c.port())),
        "{r}"
    );
    s.stop();
}

#[test]
fn ack_to_stateless_reply_is_absorbed() {
    let mut s = Server::start(
        &cfg(
            "route {\n xlog(\"L_ERR\", \"REQ $rm $ci\\n\");\n if (method==\"ACK\") exit;\n sl_send_reply(\"404\", \"Not Found\");\n}\n",
        ),
        &[],
    );
    let c = Client::new();
    let inv = msg_with("INVITE sip:bob@127.0.0.1", c.port(), "ack1", "", "");
    c.send(s.addr(), &inv);
    let r = c
        .recv_matching("404")
        .unwrap_or_else(|| panic!("no reply\n{}", s.log()));
    let tag = tag_of(header(&r, "To").unwrap()).to_string();
    let ack = msg_with("ACK sip:bob@127.0.0.1", c.port(), "ack1", "", "").replace(
        "To: <sip:bob@127.0.0.1>",
        &format!("To: <sip:bob@127.0.0.1>;tag={tag}"),
    );
    c.send(s.addr(), &ack);
    // an ACK with a foreign tag reaches the script
    let ack2 = msg_with("ACK sip:bob@127.0.0.1", c.port(), "ack2", "", "").replace(
        "To: <sip:bob@127.0.0.1>",
        "To: <sip:bob@127.0.0.1>;tag=other",
    );
    c.send(s.addr(), &ack2);
    assert!(
        s.wait_log("REQ ACK ack2", Duration::from_secs(3)),
        "{}",
        s.log()
    );
    let log = s.log();
    assert!(log.contains("REQ INVITE ack1"), "{log}");
    assert!(!log.contains("REQ ACK ack1"), "{log}");
    s.stop();
}

#[test]
fn maxfwd_limits_and_forwarding() {
    let sink = Client::new();
    let route = format!(
        "route {{\n if (!mf_process_maxfwd_header(\"10\")) {{ sl_send_reply(\"483\", \"Too Many Hops\"); exit; }}\n\
         if (is_maxfwd_lt(\"5\")) {{ append_hf(\"X-Low: yes\\r\\n\"); }}\n\
         forward(\"127.0.0.1:{}\");\n}}\n",
        sink.port()
    );
    let mut s = Server::start(&cfg(&route), &[]);
    let c = Client::new();
    // Max-Forwards: 0 -> 483
    c.send(
        s.addr(),
        &msg_with(
            "MESSAGE sip:bob@127.0.0.1",
            c.port(),
            "mf0",
            "Max-Forwards: 0\r\n",
            "",
        ),
    );
    let r = c
        .recv_matching("483")
        .unwrap_or_else(|| panic!("no 483\n{}", s.log()));
    assert!(r.starts_with("SIP/2.0 483 Too Many Hops\r\n"), "{r}");
    // absent -> added with the given value
    c.send(
        s.addr(),
        &msg_with("MESSAGE sip:bob@127.0.0.1", c.port(), "mf1", "", ""),
    );
    let (f, _) = sink
        .recv()
        .unwrap_or_else(|| panic!("not forwarded\n{}", s.log()));
    assert_eq!(header(&f, "Max-Forwards"), Some("10"), "{f}");
    assert_eq!(header(&f, "Call-ID"), Some("mf1"));
    assert!(header(&f, "X-Low").is_none());
    // present -> decremented
    c.send(
        s.addr(),
        &msg_with(
            "MESSAGE sip:bob@127.0.0.1",
            c.port(),
            "mf2",
            "Max-Forwards: 70\r\n",
            "",
        ),
    );
    let (f, _) = sink.recv().unwrap();
    assert_eq!(header(&f, "Max-Forwards"), Some("69"), "{f}");
    // low value -> is_maxfwd_lt true (checked on the received value)
    c.send(
        s.addr(),
        &msg_with(
            "MESSAGE sip:bob@127.0.0.1",
            c.port(),
            "mf3",
            "Max-Forwards: 3\r\n",
            "",
        ),
    );
    let (f, _) = sink.recv().unwrap();
    assert_eq!(header(&f, "Max-Forwards"), Some("2"), "{f}");
    assert_eq!(header(&f, "X-Low"), Some("yes"), "{f}");
    s.stop();
}

#[test]
fn message_too_big() {
    let mut s = Server::start(
        &cfg(
            "route {\n if (msg:len >= max_len) { sl_send_reply(\"513\", \"Over max_len\"); exit; }\n if (msg:len > 1000) { sl_send_reply(\"513\", \"Message too big\"); exit; }\n sl_send_reply(\"200\", \"OK\");\n}\n",
        ),
        &[],
    );
    let c = Client::new();
    let pad = format!("X-Pad: {}\r\n", "p".repeat(2000));
    c.send(
        s.addr(),
        &msg_with("MESSAGE sip:bob@127.0.0.1", c.port(), "big1", &pad, ""),
    );
    let r = c
        .recv_matching("513")
        .unwrap_or_else(|| panic!("no 513\n{}", s.log()));
    assert!(r.starts_with("SIP/2.0 513 Message too big\r\n"));
    c.send(
        s.addr(),
        &msg_with("MESSAGE sip:bob@127.0.0.1", c.port(), "small", "", ""),
    );
    assert!(c.recv_matching("200").is_some());
    // near the UDP limit: still answered
    let pad = format!("X-Pad: {}\r\n", "q".repeat(60000));
    c.send(
        s.addr(),
        &msg_with("MESSAGE sip:bob@127.0.0.1", c.port(), "huge", &pad, ""),
    );
    let r = c
        .recv_matching("513")
        .unwrap_or_else(|| panic!("no 513 for 60 kB\n{}", s.log()));
    assert_eq!(header(&r, "Call-ID"), Some("huge"));
    // the largest datagram UDP/IPv4 carries is still below max_len (65535)
    let base = msg_with(
        "MESSAGE sip:bob@127.0.0.1",
        c.port(),
        "max",
        "X-Pad: \r\n",
        "",
    )
    .len();
    let pad = format!("X-Pad: {}\r\n", "m".repeat(65507 - base));
    let m = msg_with("MESSAGE sip:bob@127.0.0.1", c.port(), "max", &pad, "");
    assert_eq!(m.len(), 65507);
    c.send(s.addr(), &m);
    let r = c
        .recv_matching("513")
        .unwrap_or_else(|| panic!("no 513 for 65507 B\n{}", s.log()));
    assert!(r.starts_with("SIP/2.0 513 Message too big\r\n"), "{r}");
    assert_eq!(header(&r, "Call-ID"), Some("max"));
    s.stop();
}

#[test]
fn textops_edits_in_forwarded_request() {
    let sink = Client::new();
    let route = format!(
        "route {{\n\
         if (is_method(\"REGISTER|OPTIONS\")) {{ append_to_reply(\"X-Method: $rm\\r\\n\"); sl_send_reply(\"200\", \"OK\"); exit; }}\n\
         if (!is_present_hf(\"X-Remove\")) {{ sl_send_reply(\"400\", \"Missing X-Remove\"); exit; }}\n\
         remove_hf(\"X-Remove\");\n\
         append_hf(\"X-Added: $ci\\r\\n\");\n\
         insert_hf(\"X-First: 1\\r\\n\");\n\
         append_hf(\"X-After-CSeq: 1\\r\\n\", \"CSeq\");\n\
         replace(\"Agent: [a-z]+\", \"Agent: Replaced\");\n\
         subst_uri(\"/^sip:([a-z]+)@(.*)$/sip:\\1-x@\\2/\");\n\
         if (has_body(\"text/plain\")) {{ append_hf(\"X-Body: text\\r\\n\"); }}\n\
         if (search_body(\"hello\")) {{ replace_body(\"hello\", \"HELLO\"); }}\n\
         forward(\"127.0.0.1:{}\");\n}}\n",
        sink.port()
    );
    let mut s = Server::start(&cfg(&route), &[]);
    let c = Client::new();
    // append_to_reply shows in the sl reply
    c.send(
        s.addr(),
        &request("REGISTER", "sip:127.0.0.1", c.port(), "to1", 1, ""),
    );
    let r = c
        .recv_matching("200")
        .unwrap_or_else(|| panic!("no reply\n{}", s.log()));
    assert_eq!(header(&r, "X-Method"), Some("REGISTER"), "{r}");
    // condition false -> 400
    c.send(
        s.addr(),
        &msg_with("MESSAGE sip:bob@127.0.0.1", c.port(), "to2", "", ""),
    );
    assert!(c.recv_matching("400").is_some(), "{}", s.log());
    // the edits
    let extra = "User-Agent: phone\r\nX-Remove: a\r\nx-remove: b\r\nContent-Type: text/plain\r\n";
    c.send(
        s.addr(),
        &msg_with(
            "MESSAGE sip:bob@127.0.0.1",
            c.port(),
            "to3",
            extra,
            "hello world",
        ),
    );
    let (f, _) = sink
        .recv()
        .unwrap_or_else(|| panic!("not forwarded\n{}", s.log()));
    assert!(
        f.starts_with("MESSAGE sip:bob-x@127.0.0.1 SIP/2.0\r\n"),
        "{f}"
    );
    assert!(headers(&f, "X-Remove").is_empty(), "{f}");
    assert_eq!(header(&f, "X-Added"), Some("to3"), "{f}");
    assert_eq!(header(&f, "User-Agent"), Some("Replaced"), "{f}");
    assert_eq!(header(&f, "X-Body"), Some("text"), "{f}");
    let names: Vec<&str> = f
        .split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(names[0], "Via", "{f}"); // our Via goes on top of everything
    assert!(names.contains(&"X-First"), "{f}");
    let cseq = names.iter().position(|n| *n == "CSeq").unwrap();
    assert_eq!(names[cseq + 1], "X-After-CSeq", "{f}");
    assert!(f.ends_with("\r\n\r\nHELLO world"), "{f}");
    assert_eq!(header(&f, "Content-Length"), Some("11"));
    s.stop();
}

#[test]
fn xlog_expands_pvs_and_respects_levels() {
    let mut s = Server::start(
        &cfg("route {\n $var(x) = \"vv\";\n $avp(s:a) = \"avpval\";\n\
              xlog(\"L_ERR\", \"XL1 m=$rm u=$ru f=$fu c=$ci h=$hdr(X-Test) a=$avp(s:a) v=$var(x) n=$hdr(X-None)\\n\");\n\
              xlog(\"L_INFO\", \"XL2 info\\n\");\n\
              xlog(\"XL3 default $cs\\n\");\n\
              xdbg(\"XL4 dbg\\n\");\n\
              xlog(\"L_NOTICE\", \"XL5 $Cbxcolour$Cxx\\n\");\n\
              sl_send_reply(\"200\", \"OK\");\n}\n"),
        &[],
    );
    let c = Client::new();
    c.send(
        s.addr(),
        &request(
            "OPTIONS",
            "sip:bob@127.0.0.1",
            c.port(),
            "xl1",
            5,
            "X-Test: hello\r\n",
        ),
    );
    assert!(c.recv_matching("200").is_some(), "{}", s.log());
    assert!(s.wait_log("XL5", Duration::from_secs(3)), "{}", s.log());
    let log = s.log();
    assert!(
        log.contains(
            "XL1 m=OPTIONS u=sip:bob@127.0.0.1 f=sip:alice@127.0.0.1 c=xl1 h=hello a=avpval v=vv n=<null>"
        ),
        "{log}"
    );
    assert!(log.contains("XL3 default 5"), "{log}");
    assert!(!log.contains("XL2"), "{log}");
    assert!(!log.contains("XL4"), "{log}");
    assert!(
        log.contains("XL5 \x1b[0;34;49mcolour\x1b[0;39;49m"),
        "{log:?}"
    );
    s.stop();

    // with debug=4 the info and debug lines show up
    let mut s = Server::start(
        &cfg(
            "debug=4\nroute {\n xlog(\"L_INFO\", \"XL2 info\\n\");\n xdbg(\"XL4 dbg $rm\\n\");\n sl_send_reply(\"200\", \"OK\");\n}\n",
        ),
        &[],
    );
    c.send(
        s.addr(),
        &request("OPTIONS", "sip:bob@127.0.0.1", c.port(), "xl2", 1, ""),
    );
    assert!(c.recv_matching("200").is_some(), "{}", s.log());
    assert!(
        s.wait_log("XL4 dbg OPTIONS", Duration::from_secs(3)),
        "{}",
        s.log()
    );
    assert!(s.log().contains("XL2 info"));
    s.stop();
}

#[test]
fn bad_arguments_are_startup_errors() {
    for route in [
        "route { sl_send_reply(\"99\", \"x\"); }\n",
        "route { mf_process_maxfwd_header(\"300\"); }\n",
        "route { search(\"(\"); }\n",
        "route { subst(\"/a/b\"); }\n",
        "route { xlog(\"L_Q\", \"x\"); }\n",
        "route { is_privacy(\"bogus\"); }\n",
    ] {
        let dir = TempDir::new("badcfg");
        let p = dir.file("bad.cfg");
        std::fs::write(&p, cfg(route).replace("{PORT}", "5999")).unwrap();
        let (code, _out, err) = run(&["-c", "-f", p.to_str().unwrap()]);
        assert_ne!(code, 0, "{route} accepted: {err}");
    }
}

#[test]
fn parse_errors_reach_error_route_and_sl_reply_error() {
    let route = "route {\n if (!subst_user(\"/a/b/\")) { sl_reply_error(); exit; }\n sl_send_reply(\"200\", \"OK\");\n}\n";
    let mut s = Server::start(&cfg(route), &[]);
    let c = Client::new();
    c.send(
        s.addr(),
        &msg_with("MESSAGE sip:alice@127.0.0.1", c.port(), "pe1", "", ""),
    );
    assert!(c.recv_matching("200").is_some(), "{}", s.log());
    c.send(
        s.addr(),
        &msg_with("MESSAGE sip:bob@", c.port(), "pe2", "", ""),
    );
    let r = c
        .recv_matching("400")
        .unwrap_or_else(|| panic!("no 400\n{}", s.log()));
    assert!(
        r.starts_with("SIP/2.0 400 Bad Request-URI (479/SL)\r\n"),
        "{r}"
    );
    s.stop();

    let with_error_route = format!(
        "{route}error_route {{\n xlog(\"L_ERR\", \"ERR-ROUTE $err.rcode\\n\");\n sl_send_reply(\"$err.rcode\", \"$err.rreason\");\n exit;\n}}\n"
    );
    let mut s = Server::start(&cfg(&with_error_route), &[]);
    c.send(
        s.addr(),
        &msg_with("MESSAGE sip:bob@", c.port(), "pe3", "", ""),
    );
    let r = c
        .recv_matching("400")
        .unwrap_or_else(|| panic!("no 400\n{}", s.log()));
    assert!(r.starts_with("SIP/2.0 400 Bad Request-URI\r\n"), "{r}");
    assert!(
        s.wait_log("ERR-ROUTE 400", Duration::from_secs(2)),
        "{}",
        s.log()
    );
    s.stop();
}

#[test]
fn module_parameters() {
    let sink = Client::new();
    let route = format!(
        "modparam(\"maxfwd\", \"max_limit\", 16)\nmodparam(\"sl\", \"enable_stats\", 0)\n\
         modparam(\"xlog\", \"buf_size\", 12)\nmodparam(\"xlog\", \"force_color\", 1)\n\
         route {{\n mf_process_maxfwd_header(\"10\");\n xlog(\"BUFTEST-0123456789\\n\");\n\
         forward(\"127.0.0.1:{}\");\n}}\n",
        sink.port()
    );
    let mut s = Server::start(&cfg(&route), &[]);
    let c = Client::new();
    c.send(
        s.addr(),
        &msg_with(
            "MESSAGE sip:bob@127.0.0.1",
            c.port(),
            "mp1",
            "Max-Forwards: 70\r\n",
            "",
        ),
    );
    let (f, _) = sink
        .recv()
        .unwrap_or_else(|| panic!("not forwarded\n{}", s.log()));
    assert_eq!(header(&f, "Max-Forwards"), Some("16"), "{f}");
    assert!(
        s.wait_log("BUFTEST-0123", Duration::from_secs(2)),
        "{}",
        s.log()
    );
    assert!(!s.log().contains("BUFTEST-01234"), "{}", s.log());
    s.stop();
    // out-of-range values are start-up errors
    let dir = TempDir::new("badparam");
    let p = dir.file("bad.cfg");
    std::fs::write(
        &p,
        cfg("modparam(\"maxfwd\", \"max_limit\", 300)\nroute { exit; }\n")
            .replace("{PORT}", "5999"),
    )
    .unwrap();
    let (code, _o, err) = run(&["-c", "-f", p.to_str().unwrap()]);
    assert_ne!(code, 0, "{err}");
}
