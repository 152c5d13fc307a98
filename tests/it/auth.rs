//! auth + auth_db against a private MariaDB (the guide's mysql-auth.cfg flow, reduced
//! to REGISTER): challenge, right and wrong passwords, unknown user, forged nonce, and a
//! stale nonce re-challenged with `stale=true`.

use crate::harness::digest::*;
use crate::harness::mariadb::MariaDb;
use crate::harness::*;
use std::time::Duration;

/// A private server with the openser schema.
fn database() -> Option<MariaDb> {
    let db = MariaDb::start()?;
    db.create_openser_db();
    Some(db)
}

fn code(reply: &str) -> u16 {
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn cfg(db: &MariaDb, nonce_expire: u32) -> String {
    format!(
        "listen=udp:127.0.0.1:{{PORT}}\nchildren=2\n\
         loadmodule \"mysql.so\"\nloadmodule \"sl.so\"\nloadmodule \"usrloc.so\"\n\
         loadmodule \"registrar.so\"\nloadmodule \"auth.so\"\nloadmodule \"auth_db.so\"\n\
         modparam(\"auth_db\", \"db_url\", \"{url}\")\n\
         modparam(\"auth_db\", \"calculate_ha1\", yes)\n\
         modparam(\"auth_db\", \"password_column\", \"password\")\n\
         modparam(\"auth\", \"nonce_expire\", {nonce_expire})\n\
         route {{\n\
           if (method==\"REGISTER\") {{\n\
             if (!www_authorize(\"\", \"subscriber\")) {{ www_challenge(\"\", \"0\"); exit; }};\n\
             consume_credentials();\n\
             save(\"location\");\n\
             exit;\n\
           }};\n\
           sl_send_reply(\"404\", \"Not Found\");\n\
         }}\n",
        url = db.url("openserro", "openserro", "openser")
    )
}

const REALM: &str = "auth.example.com";

fn register(s: &Server, c: &Client, user: &str, cseq: u32, authz: Option<(&str, &str)>) -> String {
    let ruri = format!("sip:{REALM}");
    let extra = match authz {
        None => String::new(),
        Some((nonce, password)) => {
            let ha1 = md5_hex(&format!("{user}:{REALM}:{password}"));
            let ha2 = md5_hex(&format!("REGISTER:{ruri}"));
            let resp = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
            format!(
                "Authorization: Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{ruri}\", response=\"{resp}\"\r\n"
            )
        }
    };
    let m = format!(
        "REGISTER {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKauth{cseq}\r\n\
         From: <sip:{user}@{REALM}>;tag=a1\r\n\
         To: <sip:{user}@{REALM}>\r\n\
         Call-ID: authtest-{user}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@127.0.0.1:{p}>\r\n\
         Max-Forwards: 70\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n",
        p = c.port()
    );
    c.send(s.addr(), &m);
    c.recv_matching("SIP/2.0")
        .unwrap_or_else(|| panic!("no reply\n{}", s.log()))
}

fn add_user(db: &MariaDb, user: &str, password: &str) {
    db.sql(
        Some("openser"),
        &format!(
            "DELETE FROM subscriber WHERE username='{user}'; \
         INSERT INTO subscriber (username, domain, password, ha1, ha1b, email_address) \
         VALUES ('{user}', '{REALM}', '{password}', '{}', '{}', '');",
            md5_hex(&format!("{user}:{REALM}:{password}")),
            md5_hex(&format!("{user}@{REALM}:{REALM}:{password}")),
        ),
    );
}

#[test]
fn register_with_digest_against_mysql() {
    let Some(db) = database() else { return };
    add_user(&db, "authtest", "s3cr3t");
    let mut s = Server::start(&cfg(&db, 300), &[]);
    let c = Client::new();
    // No credentials: 401 with realm = To host.
    let r = register(&s, &c, "authtest", 1, None);
    assert_eq!(code(&r), 401, "{r}");
    assert!(
        header(&r, "WWW-Authenticate")
            .unwrap()
            .starts_with(&format!("Digest realm=\"{REALM}\", nonce=\"")),
        "{r}"
    );
    let nonce = nonce_of(&r);
    // Correct password: 200 from save().
    let r = register(&s, &c, "authtest", 2, Some((&nonce, "s3cr3t")));
    assert_eq!(code(&r), 200, "{r}\n{}", s.log());
    // Wrong password: challenged again, not stale.
    let r = register(&s, &c, "authtest", 3, Some((&nonce, "wrong")));
    assert_eq!(code(&r), 401, "{r}");
    assert!(
        !header(&r, "WWW-Authenticate").unwrap().contains("stale"),
        "{r}"
    );
    // Unknown user.
    let r = register(&s, &c, "nosuchuser", 4, Some((&nonce, "s3cr3t")));
    assert_eq!(code(&r), 401, "{r}");
    // A nonce signed with another secret.
    let forged = format!("{}{}", &nonce[..8], md5_hex("forged"));
    let r = register(&s, &c, "authtest", 5, Some((&forged, "s3cr3t")));
    assert_eq!(code(&r), 401, "{r}");
    assert!(s.stop().success());
}

#[test]
fn stale_nonce_is_rechallenged_with_stale_true() {
    let Some(db) = database() else { return };
    add_user(&db, "authstale", "pw");
    let mut s = Server::start(&cfg(&db, 1), &[]);
    let c = Client::new();
    let r = register(&s, &c, "authstale", 1, None);
    let nonce = nonce_of(&r);
    std::thread::sleep(Duration::from_millis(2500));
    let r = register(&s, &c, "authstale", 2, Some((&nonce, "pw")));
    assert_eq!(code(&r), 401, "{r}");
    let h = header(&r, "WWW-Authenticate").unwrap();
    assert!(h.ends_with(", stale=true"), "{r}");
    assert_ne!(nonce_of(&r), nonce);
    // The fresh nonce works.
    let fresh = nonce_of(&r);
    let r = register(&s, &c, "authstale", 3, Some((&fresh, "pw")));
    assert_eq!(code(&r), 200, "{r}");
    assert!(s.stop().success());
}

/// proxy_authorize on an INVITE loads the subscriber's `rpid` column into
/// `$avp(s:rpid)` (load_credentials' default); `is_rpid_user_e164()` and
/// `append_rpid_hf()` then add the Remote-Party-ID header to the forwarded request —
/// for an E.164 RPID only — and consume_credentials removes Proxy-Authorization.
#[test]
fn proxy_authorize_loads_rpid_and_appends_remote_party_id() {
    let Some(db) = database() else { return };
    add_user(&db, "rpid164", "pw1");
    add_user(&db, "rpidname", "pw2");
    db.sql(
        Some("openser"),
        &format!(
            "UPDATE subscriber SET rpid='<sip:+4930123456@{REALM}>' WHERE username='rpid164'; \
             UPDATE subscriber SET rpid='<sip:bob@{REALM}>' WHERE username='rpidname';"
        ),
    );
    let sink = Client::new();
    let cfg = format!(
        "listen=udp:127.0.0.1:{{PORT}}\nchildren=1\n\
         loadmodule \"mysql.so\"\nloadmodule \"sl.so\"\n\
         loadmodule \"auth.so\"\nloadmodule \"auth_db.so\"\n\
         modparam(\"auth_db\", \"db_url\", \"{url}\")\n\
         modparam(\"auth_db\", \"calculate_ha1\", 1)\n\
         modparam(\"auth_db\", \"password_column\", \"password\")\n\
         route {{\n\
           if (!proxy_authorize(\"\", \"subscriber\")) {{ proxy_challenge(\"\", \"0\"); exit; }};\n\
           consume_credentials();\n\
           if (is_rpid_user_e164()) {{ append_rpid_hf(); }};\n\
           forward(\"127.0.0.1:{sink}\");\n\
         }}\n",
        url = db.url("openserro", "openserro", "openser"),
        sink = sink.port()
    );
    let mut s = Server::start(&cfg, &["-DD", "-E"]);
    let c = Client::new();
    let ruri = format!("sip:carol@{REALM}");
    for (user, pw, want) in [
        (
            "rpid164",
            "pw1",
            Some(format!(
                "<sip:+4930123456@{REALM}>;party=calling;id-type=subscriber;screen=yes"
            )),
        ),
        ("rpidname", "pw2", None),
    ] {
        let invite = |cseq: u32, extra: &str| {
            format!(
                "INVITE {ruri} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKrpid{user}{cseq}\r\n\
                 From: <sip:{user}@{REALM}>;tag=r1\r\n\
                 To: <{ruri}>\r\n\
                 Call-ID: rpid-{user}\r\n\
                 CSeq: {cseq} INVITE\r\n\
                 Max-Forwards: 70\r\n\
                 {extra}Content-Length: 0\r\n\r\n",
                p = c.port()
            )
        };
        c.send(s.addr(), &invite(1, ""));
        let r = c.recv_matching("SIP/2.0 407").expect("no 407");
        let h = header(&r, "Proxy-Authenticate").expect("no Proxy-Authenticate");
        let start = h.find("nonce=\"").expect("nonce") + 7;
        let nonce = &h[start..start + h[start..].find('"').expect("closing quote")];
        let ha1 = md5_hex(&format!("{user}:{REALM}:{pw}"));
        let ha2 = md5_hex(&format!("INVITE:{ruri}"));
        let resp = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
        c.send(
            s.addr(),
            &invite(
                2,
                &format!(
                    "Proxy-Authorization: Digest username=\"{user}\", realm=\"{REALM}\", \
                     nonce=\"{nonce}\", uri=\"{ruri}\", response=\"{resp}\"\r\n"
                ),
            ),
        );
        let fwd = sink
            .recv_matching("INVITE ")
            .unwrap_or_else(|| panic!("{user}: not forwarded\n{}", s.log()));
        assert!(fwd.contains(&format!("Call-ID: rpid-{user}\r\n")), "{fwd}");
        assert!(header(&fwd, "Proxy-Authorization").is_none(), "{fwd}");
        assert_eq!(
            header(&fwd, "Remote-Party-ID").map(str::to_string),
            want,
            "{fwd}"
        );
    }
    assert!(s.stop().success());
}
