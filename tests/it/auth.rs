//! auth + auth_db against a private MariaDB (the guide's mysql-auth.cfg flow, reduced
//! to REGISTER): challenge, right and wrong passwords, unknown user, forged nonce, and a
//! stale nonce re-challenged with `stale=true`.

use crate::harness::mariadb::MariaDb;
use crate::harness::*;
use md5::{Digest, Md5};
use std::time::Duration;

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

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

fn nonce_of(reply: &str) -> String {
    let h = header(reply, "WWW-Authenticate").unwrap_or_else(|| panic!("{reply}"));
    let start = h.find("nonce=\"").expect("nonce") + 7;
    h[start..start + 40].to_string()
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
