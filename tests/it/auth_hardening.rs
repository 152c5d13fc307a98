//! Digest hardening (issue 18): the SHA-2 HA1 columns that openserctl add / passwd
//! fill, checked on every engine; then users provisioned with openserctl on SQLite and
//! dbtext and REGISTERs from a client computing its own digests: challenges offering
//! several algorithms, SHA-256 / SHA-512-256 / MD5 accepted, a captured Authorization
//! replayed refused with `stale=true` while a new nonce works, unknown and not-offered
//! algorithms refused, `qop=auth-int` checked against the body, and `one_time_nonce`
//! for nonces used without qop.

use crate::harness::engines::{Engine, Kind};
use crate::harness::*;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};

const REALM: &str = "auth.example.com";

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// H() of the algorithm (name as on the wire, `-sess` ignored here).
fn h(alg: &str, s: &[u8]) -> String {
    let base = alg.trim_end_matches("-sess").to_ascii_uppercase();
    match base.as_str() {
        "MD5" => hex(&Md5::digest(s)),
        "SHA-256" => hex(&Sha256::digest(s)),
        "SHA-512-256" => hex(&Sha512_256::digest(s)),
        other => panic!("test client: no hash for {other}"),
    }
}

fn code(reply: &str) -> u16 {
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// What the client puts in its Authorization header.
#[derive(Clone)]
struct Auth<'a> {
    user: &'a str,
    password: &'a str,
    nonce: String,
    /// Wire name; "" = no algorithm parameter (MD5).
    alg: &'a str,
    /// (qop, nc) or None.
    qop: Option<(&'a str, u32)>,
    /// The body the digest is computed over (auth-int), when it differs from the sent one.
    digest_body: Option<&'a str>,
}

fn authorization(a: &Auth, ruri: &str, body: &str) -> String {
    let alg = if a.alg.is_empty() { "MD5" } else { a.alg };
    let cnonce = "0a4f113b";
    let mut ha1 = h(alg, format!("{}:{REALM}:{}", a.user, a.password).as_bytes());
    if alg.to_ascii_lowercase().ends_with("-sess") {
        ha1 = h(alg, format!("{ha1}:{}:{cnonce}", a.nonce).as_bytes());
    }
    let ha2 = match a.qop {
        Some(("auth-int", _)) => {
            let hb = h(alg, a.digest_body.unwrap_or(body).as_bytes());
            h(alg, format!("REGISTER:{ruri}:{hb}").as_bytes())
        }
        _ => h(alg, format!("REGISTER:{ruri}").as_bytes()),
    };
    let (resp, extra) = match a.qop {
        None => (
            h(alg, format!("{ha1}:{}:{ha2}", a.nonce).as_bytes()),
            String::new(),
        ),
        Some((q, nc)) => (
            h(
                alg,
                format!("{ha1}:{}:{nc:08x}:{cnonce}:{q}:{ha2}", a.nonce).as_bytes(),
            ),
            format!(", qop={q}, nc={nc:08x}, cnonce=\"{cnonce}\""),
        ),
    };
    let alg_param = if a.alg.is_empty() {
        String::new()
    } else {
        format!(", algorithm={}", a.alg)
    };
    format!(
        "Authorization: Digest username=\"{}\", realm=\"{REALM}\", nonce=\"{}\", uri=\"{ruri}\", response=\"{resp}\"{alg_param}{extra}\r\n",
        a.user, a.nonce
    )
}

/// A REGISTER (with `body` when not empty) as text.
fn register_msg(c: &Client, user: &str, cseq: u32, auth: Option<&Auth>, body: &str) -> String {
    let ruri = format!("sip:{REALM}");
    let authz = auth
        .map(|a| authorization(a, &ruri, body))
        .unwrap_or_default();
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: text/plain\r\n"
    };
    format!(
        "REGISTER {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKhard{cseq}\r\n\
         From: <sip:{user}@{REALM}>;tag=h1\r\n\
         To: <sip:{user}@{REALM}>\r\n\
         Call-ID: hardening-{user}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@127.0.0.1:{p}>\r\n\
         Max-Forwards: 70\r\n\
         {authz}{ctype}\
         Content-Length: {}\r\n\r\n{body}",
        body.len(),
        p = c.port()
    )
}

fn exchange(s: &Server, c: &Client, msg: &str) -> String {
    c.send(s.addr(), msg);
    c.recv_matching("SIP/2.0")
        .unwrap_or_else(|| panic!("no reply\n{}", s.log()))
}

/// The challenges of a reply: (algorithm or "", nonce, stale).
fn challenges(reply: &str) -> Vec<(String, String, bool)> {
    headers(reply, "WWW-Authenticate")
        .into_iter()
        .map(|v| {
            let p = |name: &str| -> String {
                v.split(", ")
                    .find_map(|kv| {
                        let kv = kv.trim_start_matches("Digest ");
                        kv.strip_prefix(name)
                            .and_then(|r| r.strip_prefix('='))
                            .map(|r| r.trim_matches('"').to_string())
                    })
                    .unwrap_or_default()
            };
            (p("algorithm"), p("nonce"), p("stale") == "true")
        })
        .collect()
}

fn cfg(e: &Engine, algs: &str, otn: bool) -> String {
    format!(
        "listen=udp:127.0.0.1:{{PORT}}\nchildren=2\n\
         loadmodule \"{m}.so\"\nloadmodule \"sl.so\"\nloadmodule \"usrloc.so\"\n\
         loadmodule \"registrar.so\"\nloadmodule \"auth.so\"\nloadmodule \"auth_db.so\"\n\
         modparam(\"auth_db\", \"db_url\", \"{url}\")\n\
         modparam(\"auth\", \"algorithm\", \"{algs}\")\n\
         modparam(\"auth\", \"one_time_nonce\", {otn})\n\
         route {{\n\
           if (method==\"REGISTER\") {{\n\
             if (!www_authorize(\"\", \"subscriber\")) {{ www_challenge(\"\", \"auth,auth-int\"); exit; }};\n\
             save(\"location\");\n\
             exit;\n\
           }};\n\
           sl_send_reply(\"404\", \"Not Found\");\n\
         }}\n",
        m = e.module(),
        url = e.url(),
        otn = u8::from(otn),
    )
}

/// openserctl add / passwd fill the SHA-2 HA1 columns (every engine: the tables come
/// from the engine's openser_*.sh script).
fn check_sha2_columns(e: &Engine, user: &str, password: &str) {
    let rows = e.rows(
        "subscriber",
        &[
            "username",
            "ha1",
            "ha1_sha256",
            "ha1b_sha256",
            "ha1_sha512t256",
            "ha1b_sha512t256",
        ],
        "username",
    );
    let row = rows
        .iter()
        .find(|r| r[0] == user)
        .unwrap_or_else(|| panic!("{user} not in {rows:?}"));
    let a1 = format!("{user}:{REALM}:{password}");
    let a1b = format!("{user}@{REALM}:{REALM}:{password}");
    assert_eq!(row[1], h("MD5", a1.as_bytes()), "{:?}", e.kind);
    assert_eq!(row[2], h("SHA-256", a1.as_bytes()), "{:?}", e.kind);
    assert_eq!(row[3], h("SHA-256", a1b.as_bytes()), "{:?}", e.kind);
    assert_eq!(row[4], h("SHA-512-256", a1.as_bytes()), "{:?}", e.kind);
    assert_eq!(row[5], h("SHA-512-256", a1b.as_bytes()), "{:?}", e.kind);
}

#[test]
fn openserctl_fills_the_sha2_ha1_columns() {
    for kind in [Kind::DbText, Kind::Sqlite, Kind::Mysql, Kind::Postgres] {
        let Some(e) = Engine::start(kind) else {
            return;
        };
        e.ok(&e.ctl("", &["add", &format!("carol@{REALM}"), "first"]));
        check_sha2_columns(&e, "carol", "first");
        e.ok(&e.ctl("", &["passwd", &format!("carol@{REALM}"), "second"]));
        check_sha2_columns(&e, "carol", "second");
    }
}

#[test]
fn sha2_algorithms_replay_and_auth_int() {
    let Some(e) = Engine::start(Kind::Sqlite) else {
        return;
    };
    e.ok(&e.ctl("", &["add", &format!("alice@{REALM}"), "s3cr3t"]));
    let mut s = Server::start(&cfg(&e, "SHA-512-256 SHA-256 MD5", false), &[]);
    let c = Client::new();
    let mut cseq = 0;
    let mut next = || {
        cseq += 1;
        cseq
    };

    // One challenge per algorithm, strongest first, one nonce.
    let r = exchange(&s, &c, &register_msg(&c, "alice", next(), None, ""));
    assert_eq!(code(&r), 401, "{r}");
    let ch = challenges(&r);
    let algs: Vec<&str> = ch.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(algs, ["SHA-512-256", "SHA-256", "MD5"], "{r}");
    assert!(headers(&r, "WWW-Authenticate")[0].contains("qop=\"auth,auth-int\""));
    let nonce = ch[0].1.clone();
    assert_eq!(nonce.len(), 48, "a nonce with an id: {nonce}");

    let base = Auth {
        user: "alice",
        password: "s3cr3t",
        nonce: nonce.clone(),
        alg: "SHA-256",
        qop: Some(("auth", 1)),
        digest_body: None,
    };
    // SHA-256, nc 1: accepted.
    let captured = register_msg(&c, "alice", next(), Some(&base), "");
    let r = exchange(&s, &c, &captured);
    assert_eq!(code(&r), 200, "{r}\n{}", s.log());
    // The captured request replayed as it was: refused, fresh nonce, stale=true.
    let r = exchange(&s, &c, &captured);
    assert_eq!(code(&r), 401, "replay accepted: {r}");
    let ch = challenges(&r);
    assert!(ch.iter().all(|c| c.2), "stale=true expected: {r}");
    let fresh = ch[0].1.clone();
    assert_ne!(fresh, nonce);
    // The same nonce with a higher nc (the UA's next request): accepted.
    let r = exchange(
        &s,
        &c,
        &register_msg(
            &c,
            "alice",
            next(),
            Some(&Auth {
                qop: Some(("auth", 2)),
                ..base.clone()
            }),
            "",
        ),
    );
    assert_eq!(code(&r), 200, "{r}");
    // The fresh nonce works, with SHA-512-256.
    let sha512 = Auth {
        nonce: fresh.clone(),
        alg: "SHA-512-256",
        ..base.clone()
    };
    let r = exchange(
        &s,
        &c,
        &register_msg(&c, "alice", next(), Some(&sha512), ""),
    );
    assert_eq!(code(&r), 200, "{r}\n{}", s.log());
    // A wrong password: challenged again, not stale.
    let r = exchange(
        &s,
        &c,
        &register_msg(
            &c,
            "alice",
            next(),
            Some(&Auth {
                password: "wrong",
                qop: Some(("auth", 2)),
                ..sha512.clone()
            }),
            "",
        ),
    );
    assert_eq!(code(&r), 401, "{r}");
    assert!(challenges(&r).iter().all(|c| !c.2), "{r}");
    // MD5 without algorithm= and without qop, used twice (1.2 phones): accepted
    // both times (one_time_nonce off).
    let md5 = Auth {
        nonce: fresh.clone(),
        alg: "",
        qop: None,
        ..base.clone()
    };
    for _ in 0..2 {
        let r = exchange(&s, &c, &register_msg(&c, "alice", next(), Some(&md5), ""));
        assert_eq!(code(&r), 200, "{r}");
    }
    // Unknown and not offered algorithms are refused (a new challenge).
    for bad in ["SHA-1", "MD5-sess", "SHA-256-sess"] {
        let a = Auth {
            alg: bad,
            qop: Some(("auth", 9)),
            ..md5.clone()
        };
        let mut m = register_msg(
            &c,
            "alice",
            next(),
            Some(&Auth {
                alg: "MD5",
                ..a.clone()
            }),
            "",
        );
        if bad == "SHA-1" {
            // Computed as MD5, labelled SHA-1.
            m = m.replace("algorithm=MD5", "algorithm=SHA-1");
        } else {
            m = register_msg(&c, "alice", next(), Some(&a), "");
        }
        let r = exchange(&s, &c, &m);
        assert_eq!(code(&r), 401, "{bad} accepted: {r}");
    }
    // qop=auth-int: the body's hash is part of the digest.
    let body = "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\n";
    let int = Auth {
        qop: Some(("auth-int", 3)),
        ..base.clone()
    };
    let r = exchange(&s, &c, &register_msg(&c, "alice", next(), Some(&int), body));
    assert_eq!(code(&r), 200, "{r}\n{}", s.log());
    let tampered = Auth {
        qop: Some(("auth-int", 4)),
        digest_body: Some("v=0\r\no=mallory 1 1 IN IP4 127.0.0.1\r\n"),
        ..base.clone()
    };
    let r = exchange(
        &s,
        &c,
        &register_msg(&c, "alice", next(), Some(&tampered), body),
    );
    assert_eq!(
        code(&r),
        401,
        "auth-int with another body's hash accepted: {r}"
    );
    assert!(s.stop().success());
}

#[test]
fn one_time_nonce_refuses_a_second_use_without_qop() {
    let Some(e) = Engine::start(Kind::DbText) else {
        return;
    };
    e.ok(&e.ctl("", &["add", &format!("bob@{REALM}"), "pw"]));
    let mut s = Server::start(&cfg(&e, "MD5", true), &[]);
    let c = Client::new();
    let r = exchange(&s, &c, &register_msg(&c, "bob", 1, None, ""));
    assert_eq!(code(&r), 401, "{r}");
    let ch = challenges(&r);
    // The default MD5 alone: 1.2's challenge form, without algorithm=.
    assert_eq!(ch.len(), 1, "{r}");
    assert_eq!(ch[0].0, "", "{r}");
    let a = Auth {
        user: "bob",
        password: "pw",
        nonce: ch[0].1.clone(),
        alg: "",
        qop: None,
        digest_body: None,
    };
    let r = exchange(&s, &c, &register_msg(&c, "bob", 2, Some(&a), ""));
    assert_eq!(code(&r), 200, "{r}\n{}", s.log());
    let r = exchange(&s, &c, &register_msg(&c, "bob", 3, Some(&a), ""));
    assert_eq!(code(&r), 401, "second use accepted: {r}");
    let ch = challenges(&r);
    assert!(ch[0].2, "stale=true expected: {r}");
    let r = exchange(
        &s,
        &c,
        &register_msg(
            &c,
            "bob",
            4,
            Some(&Auth {
                nonce: ch[0].1.clone(),
                ..a.clone()
            }),
            "",
        ),
    );
    assert_eq!(code(&r), 200, "{r}");
    assert!(s.stop().success());
}
