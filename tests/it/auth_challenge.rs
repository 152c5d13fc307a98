//! auth / auth_db black-box tests that need no database: start-up checks of auth_db's
//! db_url and digest challenges from module auth (the full authorization flow against
//! MySQL is in `auth.rs`, registered once the mysql driver is merged).

use crate::harness::digest::*;
use crate::harness::*;
use std::time::Duration;

fn code(reply: &str) -> u16 {
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The realm and nonce of a `Digest realm="..", nonce=".."...` challenge.
fn realm_nonce(h: &str) -> (String, String) {
    let val = |name: &str| {
        let start = h.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
        let len = h[start..].find('"').expect("closing quote");
        h[start..start + len].to_string()
    };
    (val("realm"), val("nonce"))
}

#[test]
fn auth_db_with_unknown_db_scheme_fails_at_start_up() {
    let dir = TempDir::new("authdb");
    let p = dir.file("auth_db.cfg");
    let cfg = "listen=udp:127.0.0.1:{PORT}\nchildren=1\n\
        loadmodule \"sl.so\"\nloadmodule \"auth.so\"\nloadmodule \"auth_db.so\"\n\
        modparam(\"auth_db\", \"db_url\", \"nosuch://x/y\")\n\
        modparam(\"auth_db\", \"calculate_ha1\", yes)\n\
        route {\n if (!www_authorize(\"\", \"subscriber\")) { www_challenge(\"\", \"0\"); exit; };\n sl_send_reply(\"200\", \"OK\");\n}\n";
    std::fs::write(&p, expand(cfg, free_udp_port(), dir.path())).unwrap();
    let (code, _out, err) = run(&["-f", p.to_str().unwrap(), "-DD", "-E"]);
    assert_ne!(code, 0, "started with a bad db_url: {err}");
    assert!(err.contains("auth_db"), "{err}");
    assert!(err.contains("nosuch"), "{err}");
}

const CFG: &str = "listen=udp:127.0.0.1:{PORT}\nchildren=2\n\
    loadmodule \"sl.so\"\nloadmodule \"auth.so\"\n\
    modparam(\"auth\", \"secret\", \"t0p-s3cret\")\n\
    modparam(\"auth\", \"nonce_expire\", 120)\n\
    route {\n\
      if (method==\"REGISTER\") { www_challenge(\"\", \"0\"); exit; };\n\
      if (method==\"MESSAGE\") {\n\
        if (!consume_credentials()) { sl_send_reply(\"403\", \"Nothing Consumed\"); exit; };\n\
        exit;\n\
      };\n\
      if (method==\"OPTIONS\") { www_challenge(\"realm-$rU\", \"1\"); sl_send_reply(\"500\", \"Not Stopped\"); exit; };\n\
      proxy_challenge(\"\", \"1\");\n\
      sl_send_reply(\"500\", \"Not Stopped\");\n\
    }\n";

#[test]
fn www_challenge_on_register_uses_to_host_and_a_signed_nonce() {
    let mut s = Server::start(CFG, &[]);
    let c = Client::new();
    let m = request("REGISTER", "sip:alice@example.com", c.port(), "ch1", 1, "");
    c.send(s.addr(), &m);
    let r = c
        .recv_matching("SIP/2.0")
        .unwrap_or_else(|| panic!("no reply\n{}", s.log()));
    assert_eq!(code(&r), 401, "{r}");
    assert!(r.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{r}");
    assert!(header(&r, "To").unwrap().contains(";tag="), "{r}");
    let h = header(&r, "WWW-Authenticate").unwrap_or_else(|| panic!("{r}"));
    let (realm, nonce) = realm_nonce(h);
    assert_eq!(realm, "example.com", "{r}");
    assert_eq!(
        h,
        format!("Digest realm=\"example.com\", nonce=\"{nonce}\"")
    );
    // 1.2's form (expiry, MD5 of it and the secret) with the nonce id of the replay
    // protection (nonce_count, on by default) after the expiry: 8 + 8 + 32 hex chars.
    assert_eq!(nonce.len(), 48, "{nonce}");
    let (head, sig) = nonce.split_at(16);
    assert!(
        head.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(sig, md5_hex(&format!("{head}t0p-s3cret")), "{nonce}");
    let exp = u64::from_str_radix(&head[..8], 16).unwrap();
    let t = now();
    assert!(exp >= t + 115 && exp <= t + 125, "expiry {exp} vs now {t}");
    // The script stopped: nothing else comes.
    assert!(c.recv_timeout(Duration::from_millis(300)).is_none());
    s.stop();
}

#[test]
fn proxy_challenge_uses_from_host_qop_and_stops_the_script() {
    let mut s = Server::start(CFG, &[]);
    let c = Client::new();
    // From host is 127.0.0.1 in the harness's requests.
    let m = request("INVITE", "sip:bob@example.com", c.port(), "ch2", 1, "");
    c.send(s.addr(), &m);
    let r = c
        .recv_matching("SIP/2.0")
        .unwrap_or_else(|| panic!("no reply\n{}", s.log()));
    assert!(
        r.starts_with("SIP/2.0 407 Proxy Authentication Required\r\n"),
        "{r}"
    );
    assert_eq!(header(&r, "WWW-Authenticate"), None, "{r}");
    let h = header(&r, "Proxy-Authenticate").unwrap_or_else(|| panic!("{r}"));
    let (realm, nonce) = realm_nonce(h);
    assert_eq!(realm, "127.0.0.1");
    assert_eq!(
        h,
        format!("Digest realm=\"127.0.0.1\", nonce=\"{nonce}\", qop=\"auth\"")
    );
    assert!(c.recv_timeout(Duration::from_millis(300)).is_none());

    // A realm with pseudo-variables; www_challenge on a non-REGISTER.
    let m = request("OPTIONS", "sip:carol@example.com", c.port(), "ch3", 1, "");
    c.send(s.addr(), &m);
    let r = c.recv_matching("SIP/2.0").unwrap();
    assert_eq!(code(&r), 401, "{r}");
    let h = header(&r, "WWW-Authenticate").unwrap();
    assert!(
        h.starts_with("Digest realm=\"realm-carol\", nonce=\""),
        "{h}"
    );
    assert!(h.ends_with("\", qop=\"auth\""), "{h}");
    assert!(c.recv_timeout(Duration::from_millis(300)).is_none());

    // consume_credentials without a successful authorize is false.
    let m = request(
        "MESSAGE",
        "sip:bob@example.com",
        c.port(),
        "ch4",
        1,
        "Authorization: Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:x\", response=\"0\"\r\n",
    );
    c.send(s.addr(), &m);
    let r = c.recv_matching("SIP/2.0").unwrap();
    assert!(r.starts_with("SIP/2.0 403 Nothing Consumed"), "{r}");
    s.stop();
}

#[test]
fn challenge_functions_check_their_arguments() {
    let dir = TempDir::new("authbad");
    let p = dir.file("bad.cfg");
    let cfg = "listen=udp:127.0.0.1:{PORT}\nloadmodule \"sl.so\"\nloadmodule \"auth.so\"\n\
        route {\n www_challenge(\"\", \"maybe\");\n}\n";
    std::fs::write(&p, expand(cfg, free_udp_port(), dir.path())).unwrap();
    let (code, _out, err) = run(&["-c", "-f", p.to_str().unwrap()]);
    assert_ne!(code, 0, "bad qop accepted: {err}");
    // auth needs sl.
    let cfg = "listen=udp:127.0.0.1:{PORT}\nloadmodule \"auth.so\"\nroute {\n exit;\n}\n";
    std::fs::write(&p, expand(cfg, free_udp_port(), dir.path())).unwrap();
    let (code, _out, err) = run(&["-f", p.to_str().unwrap(), "-DD", "-E"]);
    assert_ne!(code, 0, "auth started without sl: {err}");
    assert!(err.contains("sl"), "{err}");
}
