//! presence (issue 24): PUBLISH and SUBSCRIBE against the real server with the
//! presence and presence_xml modules on SQLite. The watchers and publishers are UDP
//! user agents of this test (the harness client, answering every NOTIFY with 200):
//! Alice watches Bob (pending without rules, active once a pres-rules document allows
//! her and `refreshWatchers` runs), Bob publishes, modifies, lets his document
//! expire; polite-block, block and watcher-info; subscriptions and documents survive
//! a restart.

use crate::harness::engines::{Engine, Kind};
use crate::harness::*;
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

fn cfg(db_url: &str, extra: &str) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=2
debug=3
log_stderror=yes
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "mi_fifo.so"
loadmodule "db_sqlite.so"
loadmodule "presence.so"
loadmodule "presence_xml.so"
modparam("mi_fifo", "fifo_name", "{{DIR}}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{{DIR}}/")
modparam("presence", "db_url", "{db_url}")
modparam("presence", "clean_period", 1)
modparam("presence", "server_address", "sip:pres@127.0.0.1:{{PORT}}")
modparam("presence_xml", "integrated_xcap_server", 1)
{extra}
route {{
    if (method == "PUBLISH") {{
        handle_publish();
        exit;
    }}
    if (method == "SUBSCRIBE") {{
        handle_subscribe();
        exit;
    }}
    sl_send_reply("404", "Not here");
}}
"#
    )
}

/// A SQLite database with the core and presence tables.
fn database() -> Option<Engine> {
    let db = Engine::start(Kind::Sqlite)?;
    db.ok(&db.dbsh(&["presence"]));
    Some(db)
}

fn sql(db: &Engine, stmt: &str) {
    let out = Command::new("sqlite3")
        .arg(db.path())
        .arg(stmt)
        .output()
        .expect("run sqlite3");
    assert!(
        out.status.success(),
        "{stmt}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Store `user`'s pres-rules document: (watcher, sub-handling) rules.
fn set_rules(db: &Engine, user: &str, rules: &[(&str, &str)]) {
    let mut doc = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules" xmlns:cr="urn:ietf:params:xml:ns:common-policy">"#,
    );
    for (i, (who, what)) in rules.iter().enumerate() {
        doc.push_str(&format!(
            r#"<cr:rule id="r{i}"><cr:conditions><cr:identity><cr:one id="{who}"/></cr:identity></cr:conditions><cr:actions><sub-handling>{what}</sub-handling></cr:actions></cr:rule>"#
        ));
    }
    doc.push_str("</cr:ruleset>");
    sql(
        db,
        &format!("DELETE FROM xcap_xml WHERE username='{user}' AND domain='127.0.0.1'"),
    );
    sql(
        db,
        &format!(
            "INSERT INTO xcap_xml (username, domain, xcap, doc_type) VALUES ('{user}', '127.0.0.1', '{doc}', 1)"
        ),
    );
}

fn pidf(user: &str, basic: &str, note: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:{user}@127.0.0.1">
<tuple id="t-{user}"><status><basic>{basic}</basic></status><note>{note}</note></tuple>
</presence>
"#
    )
}

/// A user agent: sends requests, answers NOTIFYs with 200, keeps what it did not ask
/// for yet.
struct Ua {
    user: &'static str,
    c: Client,
    srv: SocketAddr,
    queue: VecDeque<String>,
    seen: HashSet<String>,
    n: u32,
}

impl Ua {
    fn new(user: &'static str, srv: SocketAddr) -> Ua {
        Ua {
            user,
            c: Client::new(),
            srv,
            queue: VecDeque::new(),
            seen: HashSet::new(),
            n: 0,
        }
    }

    fn port(&self) -> u16 {
        self.c.port()
    }

    /// One message off the wire; a NOTIFY is answered 200 (retransmissions dropped).
    fn recv_one(&mut self) -> Option<String> {
        loop {
            let (m, from) = self.c.recv_timeout(Duration::from_millis(500))?;
            if m.starts_with("NOTIFY ") {
                let mut ok = String::from("SIP/2.0 200 OK\r\n");
                for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
                    for v in headers(&m, h) {
                        ok.push_str(&format!("{h}: {v}\r\n"));
                    }
                }
                ok.push_str("Content-Length: 0\r\n\r\n");
                self.c.send(from, &ok);
                let key = format!(
                    "{}/{}",
                    header(&m, "Call-ID").unwrap_or(""),
                    header(&m, "CSeq").unwrap_or("")
                );
                if !self.seen.insert(key) {
                    continue;
                }
            }
            return Some(m);
        }
    }

    /// The first message (queued or new) for which `f` holds, within 10 s.
    fn expect(&mut self, what: &str, f: impl Fn(&str) -> bool) -> String {
        if let Some(i) = self.queue.iter().position(|m| f(m)) {
            return self.queue.remove(i).unwrap();
        }
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Some(m) = self.recv_one() {
                if f(&m) {
                    return m;
                }
                self.queue.push_back(m);
            }
        }
        panic!("{} did not get {what}; got:\n{:#?}", self.user, self.queue);
    }

    /// A reply to the request of Call-ID `callid` and CSeq number `cseq`.
    fn reply_to(&mut self, callid: &str, cseq: u32) -> String {
        self.expect(&format!("a reply to {callid}/{cseq}"), |m| {
            m.starts_with("SIP/2.0 ")
                && header(m, "Call-ID") == Some(callid)
                && header(m, "CSeq").is_some_and(|c| c.starts_with(&format!("{cseq} ")))
        })
    }

    /// The next NOTIFY of subscription `callid`.
    fn notify(&mut self, callid: &str, what: &str, f: impl Fn(&str) -> bool) -> String {
        self.expect(what, |m| {
            m.starts_with("NOTIFY ") && header(m, "Call-ID") == Some(callid) && f(m)
        })
    }

    /// Send a SUBSCRIBE to `to`'s `event` in dialog `callid`; returns its CSeq.
    fn subscribe(
        &mut self,
        to: &str,
        event: &str,
        callid: &str,
        totag: Option<&str>,
        expires: u32,
        extra: &str,
    ) -> u32 {
        self.n += 1;
        let cseq = self.n;
        let tag = totag.map(|t| format!(";tag={t}")).unwrap_or_default();
        let port = self.port();
        let user = self.user;
        let m = format!(
            "SUBSCRIBE sip:{to}@127.0.0.1:{srv} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{callid}{cseq}\r\n\
             From: <sip:{user}@127.0.0.1>;tag=f{callid}\r\n\
             To: <sip:{to}@127.0.0.1>{tag}\r\n\
             Call-ID: {callid}\r\n\
             CSeq: {cseq} SUBSCRIBE\r\n\
             Max-Forwards: 70\r\n\
             Contact: <sip:{user}@127.0.0.1:{port}>\r\n\
             Event: {event}\r\n\
             Expires: {expires}\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n",
            srv = self.srv.port()
        );
        self.c.send(self.srv, &m);
        cseq
    }

    /// Send a PUBLISH of `body` (none: a refresh or removal); returns the reply.
    fn publish(&mut self, body: &str, expires: u32, if_match: Option<&str>) -> String {
        self.publish_event("presence", body, expires, if_match)
    }

    /// Publish a new `event` document of content type `ctype`, for 60 s.
    fn publish_as(&mut self, event: &str, ctype: &str, body: &str) -> String {
        self.publish_full(event, ctype, body, 60, None)
    }

    fn publish_event(
        &mut self,
        event: &str,
        body: &str,
        expires: u32,
        if_match: Option<&str>,
    ) -> String {
        self.publish_full(event, "application/pidf+xml", body, expires, if_match)
    }

    fn publish_full(
        &mut self,
        event: &str,
        ctype: &str,
        body: &str,
        expires: u32,
        if_match: Option<&str>,
    ) -> String {
        self.n += 1;
        let cseq = self.n;
        let callid = format!("pub-{}-{cseq}-{}", self.user, self.port());
        let port = self.port();
        let user = self.user;
        let m = format!(
            "PUBLISH sip:{user}@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{callid}\r\n\
             From: <sip:{user}@127.0.0.1>;tag=p{cseq}\r\n\
             To: <sip:{user}@127.0.0.1>\r\n\
             Call-ID: {callid}\r\n\
             CSeq: {cseq} PUBLISH\r\n\
             Max-Forwards: 70\r\n\
             Event: {event}\r\n\
             Expires: {expires}\r\n\
             {}{}\
             Content-Length: {}\r\n\r\n{body}",
            if_match
                .map(|t| format!("SIP-If-Match: {t}\r\n"))
                .unwrap_or_default(),
            if body.is_empty() {
                String::new()
            } else {
                format!("Content-Type: {ctype}\r\n")
            },
            body.len()
        );
        self.c.send(self.srv, &m);
        self.reply_to(&callid, cseq)
    }
}

fn status(m: &str) -> u16 {
    m.get(8..11).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn body(m: &str) -> &str {
    m.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn cseq_of(m: &str) -> u32 {
    header(m, "CSeq")
        .and_then(|c| c.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn to_tag(m: &str) -> String {
    header(m, "To")
        .and_then(|t| t.split(";tag=").nth(1))
        .map(|t| t.split(';').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[test]
fn watch_a_published_state() {
    let Some(db) = database() else { return };
    let s = Server::start(&cfg(&db.url(), ""), &[]);
    assert!(wait_fifo(s.dir.path()));
    let mut alice = Ua::new("alice", s.addr());
    let mut bob = Ua::new("bob", s.addr());

    // no rules: pending, a NOTIFY without state
    let rr = format!("Record-Route: <sip:127.0.0.1:{};lr>\r\n", alice.port());
    let cseq = alice.subscribe("bob", "presence", "w1", None, 600, &rr);
    let r = alice.reply_to("w1", cseq);
    assert_eq!(status(&r), 202, "{r}");
    let tag = to_tag(&r);
    assert!(!tag.is_empty(), "{r}");
    assert_eq!(
        header(&r, "Contact"),
        Some(&*format!("<sip:pres@127.0.0.1:{}>", s.port))
    );
    let n1 = alice.notify("w1", "a pending NOTIFY", |m| {
        header(m, "Subscription-State").is_some_and(|v| v.starts_with("pending"))
    });
    assert!(body(&n1).is_empty(), "{n1}");
    assert_eq!(header(&n1, "Event"), Some("presence"));
    assert_eq!(
        header(&n1, "Route"),
        Some(&*format!("<sip:127.0.0.1:{};lr>", alice.port()))
    );
    assert!(header(&n1, "From").unwrap().contains(&format!("tag={tag}")));
    assert!(header(&n1, "To").unwrap().contains("tag=fw1"));
    assert!(n1.starts_with(&format!("NOTIFY sip:alice@127.0.0.1:{} ", alice.port())));

    // Bob allows Alice; refreshWatchers makes her active (closed: nothing published)
    set_rules(&db, "bob", &[("sip:alice@127.0.0.1", "allow")]);
    let out = mi(
        s.dir.path(),
        "refreshWatchers",
        &["sip:bob@127.0.0.1", "presence"],
    );
    assert!(out.starts_with("200"), "{out}");
    let n2 = alice.notify("w1", "an active NOTIFY", |m| {
        header(m, "Subscription-State").is_some_and(|v| v.starts_with("active;expires="))
    });
    assert!(cseq_of(&n2) > cseq_of(&n1));
    assert_eq!(header(&n2, "Content-Type"), Some("application/pidf+xml"));
    assert!(body(&n2).contains("<basic>closed</basic>"), "{n2}");

    // Bob publishes open: Alice gets his document
    let r = bob.publish(&pidf("bob", "open", "at my desk"), 30, None);
    assert_eq!(status(&r), 200, "{r}");
    let etag = header(&r, "SIP-ETag").expect("SIP-ETag").to_string();
    assert_eq!(header(&r, "Expires"), Some("30"));
    let n3 = alice.notify("w1", "Bob's open state", |m| body(m).contains("at my desk"));
    assert!(body(&n3).contains("<basic>open</basic>"), "{n3}");
    assert!(cseq_of(&n3) > cseq_of(&n2));

    // an unknown entity tag: 412; an unknown event: 489
    let r = bob.publish("", 60, Some("no-such-etag"));
    assert_eq!(status(&r), 412, "{r}");
    let r = bob.publish_event("no-such-event", &pidf("bob", "open", "x"), 60, None);
    assert_eq!(status(&r), 489, "{r}");
    assert!(header(&r, "Allow-Events").is_some_and(|v| v.contains("presence")));
    let r = bob.publish("<presence", 60, None);
    assert_eq!(status(&r), 400, "{r}");

    // modify: a new entity tag, Alice sees the new note
    let r = bob.publish(&pidf("bob", "open", "in a meeting"), 2, Some(&etag));
    assert_eq!(status(&r), 200, "{r}");
    let etag2 = header(&r, "SIP-ETag").unwrap().to_string();
    assert_ne!(etag, etag2);
    alice.notify("w1", "the modified state", |m| {
        body(m).contains("in a meeting")
    });
    // the old tag is gone
    let r = bob.publish("", 60, Some(&etag));
    assert_eq!(status(&r), 412, "{r}");

    // the document expires: Alice gets the closed state
    let n5 = alice.notify("w1", "the closed state after expiry", |m| {
        body(m).contains("<basic>closed</basic>")
    });
    assert!(!body(&n5).contains("in a meeting"));

    // a refresh keeps the subscription; an unsubscribe ends it
    let c2 = alice.subscribe("bob", "presence", "w1", Some(&tag), 300, "");
    assert_eq!(status(&alice.reply_to("w1", c2)), 200);
    let n = alice.notify("w1", "the NOTIFY of the refresh", |m| {
        header(m, "Subscription-State").is_some_and(|v| v.starts_with("active;expires="))
    });
    let left: u32 = header(&n, "Subscription-State").unwrap()["active;expires=".len()..]
        .parse()
        .unwrap();
    assert!((290..=300).contains(&left), "{n}");
    let c3 = alice.subscribe("bob", "presence", "w1", Some(&tag), 0, "");
    let r = alice.reply_to("w1", c3);
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(header(&r, "Expires"), Some("0"));
    alice.notify("w1", "the final NOTIFY", |m| {
        header(m, "Subscription-State") == Some("terminated;reason=timeout")
    });
    // gone: a refresh is 481
    let c4 = alice.subscribe("bob", "presence", "w1", Some(&tag), 300, "");
    assert_eq!(status(&alice.reply_to("w1", c4)), 481);
    // an unknown event
    let c5 = alice.subscribe("bob", "dialog-info-x", "w2", None, 300, "");
    assert_eq!(status(&alice.reply_to("w2", c5)), 489);
}

#[test]
fn watcher_authorisation_and_winfo() {
    let Some(db) = database() else { return };
    set_rules(
        &db,
        "bob",
        &[
            ("sip:carol@127.0.0.1", "polite-block"),
            ("sip:eve@127.0.0.1", "block"),
            ("sip:alice@127.0.0.1", "allow"),
        ],
    );
    let s = Server::start(&cfg(&db.url(), ""), &[]);
    let mut bob = Ua::new("bob", s.addr());
    let mut alice = Ua::new("alice", s.addr());
    let mut carol = Ua::new("carol", s.addr());
    let mut eve = Ua::new("eve", s.addr());

    // Bob watches his watchers: none yet
    let c = bob.subscribe("bob", "presence.winfo", "wi1", None, 600, "");
    assert_eq!(status(&bob.reply_to("wi1", c)), 200);
    let w0 = bob.notify("wi1", "an empty watcher list", |_| true);
    assert_eq!(
        header(&w0, "Content-Type"),
        Some("application/watcherinfo+xml")
    );
    assert!(body(&w0).contains("version=\"0\""), "{w0}");
    assert!(!body(&w0).contains("<watcher "), "{w0}");
    // somebody else may not
    let c = eve.subscribe("bob", "presence.winfo", "wi2", None, 600, "");
    assert_eq!(status(&eve.reply_to("wi2", c)), 403);

    let r = bob.publish(&pidf("bob", "open", "secret plans"), 60, None);
    assert_eq!(status(&r), 200, "{r}");

    // allowed: active with the document; Bob's watcher list shows Alice
    let c = alice.subscribe("bob", "presence", "a1", None, 600, "");
    assert_eq!(status(&alice.reply_to("a1", c)), 200);
    let n = alice.notify("a1", "Bob's state", |_| true);
    assert!(body(&n).contains("secret plans"), "{n}");
    let w1 = bob.notify("wi1", "Alice in the watcher list", |m| {
        body(m).contains("sip:alice@127.0.0.1")
    });
    assert!(body(&w1).contains("status=\"active\""), "{w1}");

    // polite-block: active, but neutral (closed) content
    let c = carol.subscribe("bob", "presence", "c1", None, 600, "");
    assert_eq!(status(&carol.reply_to("c1", c)), 200);
    let n = carol.notify("c1", "a neutral state", |_| true);
    assert!(
        header(&n, "Subscription-State").is_some_and(|v| v.starts_with("active")),
        "{n}"
    );
    assert!(body(&n).contains("<basic>closed</basic>"), "{n}");
    assert!(!body(&n).contains("secret plans"), "{n}");
    bob.notify("wi1", "Carol in the watcher list", |m| {
        body(m).contains("sip:carol@127.0.0.1")
    });

    // block: 403, no subscription
    let c = eve.subscribe("bob", "presence", "e1", None, 600, "");
    assert_eq!(status(&eve.reply_to("e1", c)), 403);

    // Bob changes his mind about Alice: block, refreshWatchers ends her subscription
    set_rules(
        &db,
        "bob",
        &[
            ("sip:carol@127.0.0.1", "polite-block"),
            ("sip:alice@127.0.0.1", "block"),
        ],
    );
    let out = mi(
        s.dir.path(),
        "refreshWatchers",
        &["sip:bob@127.0.0.1", "presence"],
    );
    assert!(out.starts_with("200"), "{out}");
    alice.notify("a1", "a rejected subscription", |m| {
        header(m, "Subscription-State") == Some("terminated;reason=rejected")
    });
    let w = bob.notify("wi1", "Alice gone from the watcher list", |m| {
        !body(m).contains("sip:alice@127.0.0.1") && body(m).contains("sip:carol@127.0.0.1")
    });
    assert!(body(&w).contains("<watcher "), "{w}");
}

#[test]
fn subscriptions_and_documents_survive_a_restart() {
    let Some(db) = database() else { return };
    set_rules(&db, "bob", &[("sip:alice@127.0.0.1", "allow")]);
    let conf = cfg(
        &db.url(),
        "modparam(\"presence\", \"db_update_period\", 3600)\nmodparam(\"presence\", \"fallback2db\", 1)\n",
    );
    let mut s = Server::start(&conf, &[]);
    let port = s.port;
    let mut alice = Ua::new("alice", s.addr());
    let mut bob = Ua::new("bob", s.addr());
    let r = bob.publish(&pidf("bob", "open", "before the restart"), 600, None);
    assert_eq!(status(&r), 200, "{r}");
    let etag = header(&r, "SIP-ETag").unwrap().to_string();
    let c = alice.subscribe("bob", "presence", "r1", None, 600, "");
    let r = alice.reply_to("r1", c);
    assert_eq!(status(&r), 200, "{r}");
    let tag = to_tag(&r);
    let n = alice.notify("r1", "the state before", |m| {
        body(m).contains("before the restart")
    });
    let last = cseq_of(&n);
    s.stop();
    // written at shutdown
    let rows = db.rows("active_watchers", &["to_tag", "status"], "id");
    assert_eq!(
        rows,
        vec![vec![tag.clone(), "active".to_string()]],
        "{}",
        s.log()
    );

    let s = Server::start_on(port, &conf, &[]);
    assert!(
        s.wait_log("1 subscriptions loaded", Duration::from_secs(5)),
        "{}",
        s.log()
    );
    // Bob's document is still known by its entity tag; Alice hears of the change in
    // the same dialog, with a higher CSeq
    let r = bob.publish(&pidf("bob", "open", "after the restart"), 600, Some(&etag));
    assert_eq!(status(&r), 200, "{r}\n{}", s.log());
    let n = alice.notify("r1", "the state after", |m| {
        body(m).contains("after the restart")
    });
    assert!(cseq_of(&n) > last, "{n}");
    assert!(header(&n, "From").unwrap().contains(&tag));
    // and her refresh is known
    let c = alice.subscribe("bob", "presence", "r1", Some(&tag), 600, "");
    assert_eq!(status(&alice.reply_to("r1", c)), 200);
}

#[test]
fn pua_usrloc_publishes_registrations() {
    let Some(db) = database() else { return };
    let conf = format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=2
debug=3
log_stderror=yes
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "mi_fifo.so"
loadmodule "db_sqlite.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "presence.so"
loadmodule "presence_xml.so"
loadmodule "pua.so"
loadmodule "pua_usrloc.so"
loadmodule "pua_mi.so"
modparam("mi_fifo", "fifo_name", "{{DIR}}/openser_fifo")
modparam("mi_fifo", "reply_dir", "{{DIR}}/")
modparam("presence", "db_url", "{url}")
modparam("presence", "clean_period", 1)
modparam("presence_xml", "force_active", 1)
modparam("pua", "db_url", "{url}")
modparam("pua", "outbound_proxy", "sip:127.0.0.1:{{PORT}}")
modparam("pua_usrloc", "default_domain", "127.0.0.1")
route {{
    if (method == "REGISTER") {{
        pua_set_publish();
        save("location");
        exit;
    }}
    if (method == "PUBLISH") {{
        handle_publish();
        exit;
    }}
    if (method == "SUBSCRIBE") {{
        handle_subscribe();
        exit;
    }}
    sl_send_reply("404", "Not here");
}}
"#,
        url = db.url()
    );
    let s = Server::start(&conf, &[]);
    assert!(wait_fifo(s.dir.path()));
    let mut alice = Ua::new("alice", s.addr());
    let bob = Client::new();
    let c = alice.subscribe("bob", "presence", "u1", None, 600, "");
    assert_eq!(status(&alice.reply_to("u1", c)), 200);
    alice.notify("u1", "Bob offline", |m| {
        body(m).contains("<basic>closed</basic>")
    });

    // Bob registers: pua_usrloc publishes him open
    let contact = format!(
        "Contact: <sip:bob@127.0.0.1:{}>\r\nExpires: 60\r\n",
        bob.port()
    );
    bob.send(
        s.addr(),
        &request(
            "REGISTER",
            "sip:127.0.0.1",
            bob.port(),
            "reg-bob",
            1,
            &contact,
        )
        .replace("alice", "bob")
        .replace("To: <sip:127.0.0.1>", "To: <sip:bob@127.0.0.1>"),
    );
    let r = bob.recv_matching("SIP/2.0").expect("a reply to REGISTER");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let n = alice.notify("u1", "Bob open after his REGISTER", |m| {
        body(m).contains("<basic>open</basic>")
    });
    assert!(body(&n).contains("pres:bob@127.0.0.1"), "{n}");
    // the presence server's entity tag is kept
    assert!(
        wait_until(Duration::from_secs(5), || {
            db.rows("pua", &["etag"], "id")
                .first()
                .is_some_and(|r| !r[0].is_empty())
        }),
        "{:?}\n{}",
        db.rows("pua", &["pres_uri", "etag"], "id"),
        s.log()
    );

    // Bob unregisters: the document is removed, Alice sees him closed
    let gone = format!("Contact: <sip:bob@127.0.0.1:{}>;expires=0\r\n", bob.port());
    bob.send(
        s.addr(),
        &request("REGISTER", "sip:127.0.0.1", bob.port(), "reg-bob", 2, &gone)
            .replace("alice", "bob")
            .replace("To: <sip:127.0.0.1>", "To: <sip:bob@127.0.0.1>"),
    );
    let r = bob.recv_matching("SIP/2.0").expect("a reply to REGISTER");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    alice.notify("u1", "Bob closed after unregistering", |m| {
        body(m).contains("<basic>closed</basic>")
    });
    assert!(
        wait_until(Duration::from_secs(5), || db
            .rows("presentity", &["etag"], "id")
            .is_empty()),
        "{}",
        s.log()
    );

    // pua_mi: a document published over MI reaches Alice too
    // on one line, with single quotes (as 1.2's example: MI values may not hold `"`)
    let doc = pidf("bob", "open", "published over MI")
        .replace('\n', "")
        .replace('"', "'");
    let out = mi(
        s.dir.path(),
        "pua_publish",
        &["sip:bob@127.0.0.1", "60", &doc],
    );
    assert!(out.starts_with("202"), "{out}");
    alice.notify("u1", "the MI document", |m| {
        body(m).contains("published over MI")
    });
}

/// baresip's module directory, if its presence module is installed.
fn baresip_modules() -> Option<&'static str> {
    [
        "/usr/lib/baresip/modules",
        "/usr/lib/x86_64-linux-gnu/baresip/modules",
        "/usr/local/lib/baresip/modules",
    ]
    .into_iter()
    .find(|d| std::path::Path::new(d).join("presence.so").exists())
}

#[test]
fn baresip_sees_a_buddy_change_state() {
    if !require("baresip") {
        return;
    }
    let Some(modules) = baresip_modules() else {
        skip("baresip's presence module is not installed");
        return;
    };
    let Some(db) = database() else { return };
    let s = Server::start(
        &cfg(
            &db.url(),
            "modparam(\"presence_xml\", \"force_active\", 1)\n",
        ),
        &[],
    );
    // Alice is baresip: her buddy Bob is watched (;presence=p2p) through the server
    let home = TempDir::new("baresip");
    let uport = free_udp_port();
    std::fs::write(
        home.file("config"),
        format!(
            "sip_listen\t127.0.0.1:{uport}\nnet_interface\t127.0.0.1\nmodule_path\t{modules}\n\
             module\t\t\taccount.so\nmodule\t\t\tcontact.so\nmodule\t\t\tpresence.so\n"
        ),
    )
    .unwrap();
    std::fs::write(
        home.file("accounts"),
        format!(
            "<sip:alice@127.0.0.1>;regint=0;outbound=\"sip:127.0.0.1:{}\"\n",
            s.port
        ),
    )
    .unwrap();
    std::fs::write(
        home.file("contacts"),
        "\"Bob\" <sip:bob@127.0.0.1>;presence=p2p\n",
    )
    .unwrap();
    let log_path = home.file("baresip.log");
    let mut ua = owned("baresip")
        .arg("-f")
        .arg(home.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start baresip");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    // subscribed: the server has her subscription (and sent the closed state)
    let subscribed = wait_until(Duration::from_secs(15), || {
        let n = Command::new("sqlite3")
            .arg(db.path())
            .arg("SELECT count(*) FROM watchers WHERE w_user='alice'")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        n == "1"
    });
    assert!(
        subscribed,
        "baresip did not subscribe:\n{}\n{}",
        log(),
        s.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    // Bob comes online
    let mut bob = Ua::new("bob", s.addr());
    let r = bob.publish(&pidf("bob", "open", "hello"), 60, None);
    assert_eq!(status(&r), 200, "{r}");
    let seen = wait_until(Duration::from_secs(10), || {
        log().lines().any(|l| {
            l.contains("sip:bob@127.0.0.1")
                && l.contains("changed status from")
                && l.contains("Online")
        })
    });
    stop_child(&mut ua, 15, Duration::from_secs(5));
    assert!(
        seen,
        "baresip did not log Bob's change:\n{}\n{}",
        log(),
        s.log()
    );
}

#[test]
fn message_waiting_indication() {
    let Some(db) = database() else { return };
    let s = Server::start(
        &cfg(&db.url(), "").replace(
            "loadmodule \"presence_xml.so\"\n",
            "loadmodule \"presence_xml.so\"\nloadmodule \"presence_mwi.so\"\n",
        ),
        &[],
    );
    let mut phone = Ua::new("bob", s.addr());
    let mut vm = Ua::new("bob", s.addr());
    let c = phone.subscribe("bob", "message-summary", "m1", None, 600, "");
    assert_eq!(status(&phone.reply_to("m1", c)), 200);
    let n = phone.notify("m1", "an empty summary", |_| true);
    assert!(body(&n).is_empty(), "{n}");
    assert_eq!(header(&n, "Event"), Some("message-summary"));
    let summary = "Messages-Waiting: yes\r\nVoice-Message: 2/8 (0/2)\r\n";
    let r = vm.publish_as(
        "message-summary",
        "application/simple-message-summary",
        summary,
    );
    assert_eq!(status(&r), 200, "{r}");
    let n = phone.notify("m1", "the summary", |m| body(m) == summary);
    assert_eq!(
        header(&n, "Content-Type"),
        Some("application/simple-message-summary")
    );
    let r = vm.publish_as(
        "message-summary",
        "application/simple-message-summary",
        "Voice-Message: 2/8\r\n",
    );
    assert_eq!(status(&r), 400, "{r}");
}
