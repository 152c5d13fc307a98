//! The ldap and h350 modules against a real OpenLDAP slapd (tests/harness/slapd.rs):
//! `ldap_search` + `ldap_result` load a directory attribute into an AVP that rewrites
//! the Request-URI of a forwarded request, `ldap_result_check`, `ldap_result_next` and
//! `ldap_filter_url_encode` steer the script; `h350_auth_lookup` feeds auth's
//! `pv_www_authorize` (401 wrong password, 200 right one); `h350_sipuri_lookup`,
//! `h350_result_call_preferences`/`h350_call_preferences` and
//! `h350_result_service_level`/`h350_service_level` fill AVPs the script sees; and a
//! stopped slapd gets 500 from the one worker, which answers the next request and
//! finds the directory again after slapd's restart.

use crate::harness::digest::*;
use crate::harness::slapd::{BASE, Slapd};
use crate::harness::*;
use std::time::Duration;

const REALM: &str = "example.com";

const ENTRIES: &str = "\
dn: commUniqueId=bob1,ou=h350,dc=example,dc=com
objectClass: organizationalUnit
objectClass: commObject
objectClass: SIPIdentity
objectClass: callPreferenceURIObject
ou: bob
commUniqueId: bob1
SIPIdentitySIPURI: sip:bob@example.com
SIPIdentitySIPURI: sip:+4930123@example.com
SIPIdentityUserName: bob
SIPIdentityPassword: bobpw
SIPIdentityServiceLevel: international
SIPIdentityServiceLevel: conferencing
callPreferenceURI: sip:bob@voicemail.example.com n:20000
callPreferenceURI: sip:bob-mobile@example.com u
telephoneNumber: 4711
description: 42

dn: commUniqueId=carol1,ou=h350,dc=example,dc=com
objectClass: organizationalUnit
objectClass: commObject
objectClass: SIPIdentity
ou: carol
commUniqueId: carol1
SIPIdentitySIPURI: sip:carol@example.com
SIPIdentityUserName: carol
SIPIdentityPassword: carolpw
telephoneNumber: 4712
telephoneNumber: 4713

dn: commUniqueId=star1,ou=h350,dc=example,dc=com
objectClass: organizationalUnit
objectClass: commObject
objectClass: SIPIdentity
ou: st*r
commUniqueId: star1
SIPIdentityUserName: st*r
telephoneNumber: 4799
";

fn code(reply: &str) -> u16 {
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn reason(reply: &str) -> &str {
    let line = reply.lines().next().unwrap_or("");
    line.splitn(3, ' ').nth(2).unwrap_or("")
}

const W: Duration = Duration::from_secs(5);

fn send(s: &Server, c: &Client, msg: &str) -> String {
    c.send(s.addr(), msg);
    c.recv_timeout(W)
        .unwrap_or_else(|| panic!("no reply to\n{msg}\nlog:\n{}", s.log()))
        .0
}

fn search_cfg(sessions: &std::path::Path) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=1
log_stderror=yes
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "ldap.so"
modparam("ldap", "config_file", "{conf}")
route {{
    if ($rU == "esc") {{
        ldap_filter_url_encode("$hdr(X-Name)", "$avp(s:esc)");
        if (ldap_search("ldap://dir/{BASE}?telephoneNumber?one?(ou=$avp(s:esc))")) {{
            ldap_result("telephoneNumber/$avp(s:tel)");
            sl_send_reply("200", "esc $avp(s:esc) tel $avp(s:tel)");
            exit;
        }}
        sl_send_reply("404", "esc $avp(s:esc) rc $rc");
        exit;
    }}
    ldap_search("ldap://dir/{BASE}?telephoneNumber,description,ou?one?(SIPIdentityUserName=$rU)");
    $var(n) = $rc;
    if ($var(n) == -2) {{
        sl_send_reply("500", "Directory Unavailable");
        exit;
    }}
    if ($var(n) == -1) {{
        sl_send_reply("404", "Not In Directory");
        exit;
    }}
    if (!ldap_result_check("ou/$rU")) {{
        sl_send_reply("403", "ou mismatch");
        exit;
    }}
    ldap_result("telephoneNumber/$avp(s:tel)");
    $var(vals) = $rc;
    if (ldap_result("description/$avp(s:desc)/int")) {{
        $var(d) = $avp(s:desc) + 1;
    }} else {{
        $var(d) = "none";
    }}
    if ($rU == "carol") {{
        sl_send_reply("200", "tel $avp(s:tel) $(avp(s:tel)[1]) n $var(vals)");
        exit;
    }}
    if (ldap_result_next()) {{
        sl_send_reply("500", "more than one entry");
        exit;
    }}
    # The directory's number becomes the user of the Request-URI.
    $rU = $avp(s:tel);
    append_hf("X-Desc: $var(d)\r\n");
    forward();
}}
"#,
        conf = sessions.display()
    )
}

#[test]
fn ldap_search_routes_by_directory_attribute() {
    let Some(mut d) = Slapd::start(ENTRIES) else {
        return;
    };
    let work = TempDir::new("ldapcfg");
    let conf = d.sessions_file(work.path(), "dir", false);
    let mut s = Server::start(&search_cfg(&conf), &[]);
    let c = Client::new();
    let uas = Client::new();

    // bob's telephoneNumber rewrites the R-URI of the forwarded INVITE.
    let ruri = format!("sip:bob@127.0.0.1:{}", uas.port());
    c.send(
        s.addr(),
        &request("INVITE", &ruri, c.port(), "ldap-1", 1, ""),
    );
    let (fwd, _) = uas
        .recv_timeout(W)
        .unwrap_or_else(|| panic!("nothing forwarded\n{}", s.log()));
    assert!(
        fwd.starts_with(&format!("INVITE sip:4711@127.0.0.1:{} SIP/2.0", uas.port())),
        "{fwd}"
    );
    // description 42 stored as an int AVP and incremented by the script.
    assert_eq!(header(&fwd, "X-Desc"), Some("43"), "{fwd}");
    // The client starts no thread: every process of the server, each holding its LDAP
    // connection now, has one task.
    let procs = children_of(s.pid());
    assert!(!procs.is_empty());
    for pid in procs.into_iter().chain([s.pid()]) {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count())
            .unwrap_or(1);
        assert_eq!(tasks, 1, "process {pid} has {tasks} threads");
    }

    // A multi-valued attribute: both values, the first the newest; 2 values stored.
    let r = send(
        &s,
        &c,
        &request(
            "OPTIONS",
            "sip:carol@example.com",
            c.port(),
            "ldap-2",
            1,
            "",
        ),
    );
    assert_eq!(code(&r), 200, "{r}");
    assert_eq!(reason(&r), "tel 4712 4713 n 2", "{r}");

    // No entry: -1.
    let r = send(
        &s,
        &c,
        &request(
            "OPTIONS",
            "sip:nobody@example.com",
            c.port(),
            "ldap-3",
            1,
            "",
        ),
    );
    assert_eq!((code(&r), reason(&r)), (404, "Not In Directory"), "{r}");

    // ldap_filter_url_encode: the '*' of a name is escaped, so it matches only the
    // entry whose ou really is "st*r" (unescaped, it would be a substring filter).
    let r = send(
        &s,
        &c,
        &request(
            "OPTIONS",
            "sip:esc@example.com",
            c.port(),
            "ldap-4",
            1,
            "X-Name: st*r\r\n",
        ),
    );
    assert_eq!((code(&r), reason(&r)), (200, "esc st\\2ar tel 4799"), "{r}");
    let r = send(
        &s,
        &c,
        &request(
            "OPTIONS",
            "sip:esc@example.com",
            c.port(),
            "ldap-5",
            1,
            "X-Name: *\r\n",
        ),
    );
    assert_eq!((code(&r), reason(&r)), (404, "esc \\2a rc -1"), "{r}");
    d.stop();
    s.stop();
}

fn auth_cfg(sessions: &std::path::Path) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{{PORT}}
children=1
log_stderror=yes
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "avpops.so"
loadmodule "auth.so"
# h350 before the ldap module it uses: it reads the sessions file itself then.
loadmodule "h350.so"
loadmodule "ldap.so"
modparam("ldap", "config_file", "{conf}")
modparam("h350", "ldap_session", "h350")
modparam("h350", "base_dn", "{BASE}")
modparam("h350", "search_scope", "one")
modparam("auth", "username_spec", "$avp(s:auth_user)")
modparam("auth", "password_spec", "$avp(s:auth_pwd)")
modparam("auth", "calculate_ha1", 1)
route {{
    if (method == "REGISTER") {{
        if (!is_present_hf("Authorization")) {{
            www_challenge("{REALM}", "1");
            exit;
        }}
        if (!h350_auth_lookup("$au", "$avp(s:auth_user)/$avp(s:auth_pwd)")) {{
            if ($rc == -2) {{
                www_challenge("{REALM}", "1");
                exit;
            }}
            sl_send_reply("500", "Internal Server Error");
            exit;
        }}
        if (!pv_www_authorize("{REALM}")) {{
            www_challenge("{REALM}", "1");
            exit;
        }}
        consume_credentials();
        sl_send_reply("200", "OK");
        exit;
    }}
    # INVITE: the callee's H.350 entry.
    h350_sipuri_lookup("sip:$rU@$rd");
    $var(found) = $rc;
    if ($var(found) == -1) {{
        sl_send_reply("500", "Directory Unavailable");
        exit;
    }}
    if ($var(found) == -2) {{
        sl_send_reply("404", "Not Found");
        exit;
    }}
    h350_result_call_preferences("callee_pref_");
    $var(prefs) = $rc;
    h350_service_level("sl_");
    $var(levels) = $rc;
    if ($rU == "carol") {{
        sl_send_reply("480", "prefs $var(prefs) levels $var(levels)");
        exit;
    }}
    if (is_avp_set("$avp(s:sl_international)")) {{
        sl_send_reply("302", "u=$avp(s:callee_pref_u) n=$avp(s:callee_pref_n) t=$avp(s:callee_pref_n_t) prefs $var(prefs) levels $var(levels) conf $avp(s:sl_conferencing)");
        exit;
    }}
    sl_send_reply("403", "No International Service");
}}
"#,
        conf = sessions.display()
    )
}

#[test]
fn h350_digest_register_and_callee_data() {
    let Some(mut d) = Slapd::start(ENTRIES) else {
        return;
    };
    let work = TempDir::new("h350cfg");
    // Anonymous bind: slapd's default access lets anyone read.
    let conf = d.sessions_file(work.path(), "h350", true);
    let mut s = Server::start(&auth_cfg(&conf), &[]);
    let c = Client::new();

    let r = send(&s, &c, &register_msg(&c, REALM, "h350", "bob", 1, None));
    assert_eq!(code(&r), 401, "{r}");
    let nonce = nonce_of(&r);
    let r = send(
        &s,
        &c,
        &register_msg(&c, REALM, "h350", "bob", 2, Some((&nonce, "wrong"))),
    );
    assert_eq!(code(&r), 401, "wrong password:\n{r}\n{}", s.log());
    let r = send(
        &s,
        &c,
        &register_msg(&c, REALM, "h350", "bob", 3, Some((&nonce, "bobpw"))),
    );
    assert_eq!(code(&r), 200, "right password:\n{r}\n{}", s.log());
    // carol's password does not open bob's account, nor an unknown user's.
    let r = send(
        &s,
        &c,
        &register_msg(&c, REALM, "h350", "bob", 4, Some((&nonce, "carolpw"))),
    );
    assert_eq!(code(&r), 401, "{r}");
    let r = send(
        &s,
        &c,
        &register_msg(&c, REALM, "h350", "mallory", 5, Some((&nonce, "x"))),
    );
    assert_eq!(code(&r), 401, "{r}");
    let r = send(
        &s,
        &c,
        &register_msg(&c, REALM, "h350", "carol", 6, Some((&nonce, "carolpw"))),
    );
    assert_eq!(code(&r), 200, "{r}");

    // bob's entry by one of his SIP URIs: call preferences and service levels.
    let r = send(
        &s,
        &c,
        &request(
            "INVITE",
            "sip:+4930123@example.com",
            c.port(),
            "h350-i1",
            1,
            "",
        ),
    );
    assert_eq!(code(&r), 302, "{r}\n{}", s.log());
    assert_eq!(
        reason(&r),
        "u=sip:bob-mobile@example.com n=sip:bob@voicemail.example.com t=20 prefs 2 levels 2 conf 1",
        "{r}"
    );
    // carol has neither attribute: both functions return -2.
    let r = send(
        &s,
        &c,
        &request(
            "INVITE",
            "sip:carol@example.com",
            c.port(),
            "h350-i2",
            1,
            "",
        ),
    );
    assert_eq!((code(&r), reason(&r)), (480, "prefs -2 levels -2"), "{r}");
    let r = send(
        &s,
        &c,
        &request(
            "INVITE",
            "sip:nobody@example.com",
            c.port(),
            "h350-i3",
            1,
            "",
        ),
    );
    assert_eq!(code(&r), 404, "{r}");
    d.stop();
    s.stop();
}

#[test]
fn ldap_down_is_500_and_the_worker_goes_on() {
    let Some(mut d) = Slapd::start(ENTRIES) else {
        return;
    };
    let work = TempDir::new("ldapdown");
    let conf = d.sessions_file(work.path(), "dir", false);
    let mut s = Server::start(&search_cfg(&conf), &[]);
    let c = Client::new();
    let carol = |id: &str| request("OPTIONS", "sip:carol@example.com", c.port(), id, 1, "");

    let r = send(&s, &c, &carol("down-1"));
    assert_eq!(code(&r), 200, "{r}");
    // slapd stopped: the one worker answers 500 (the connection is found broken, the
    // reconnect refused) and then the next request too.
    d.stop();
    let r = send(&s, &c, &carol("down-2"));
    assert_eq!(
        (code(&r), reason(&r)),
        (500, "Directory Unavailable"),
        "{r}"
    );
    let r = send(&s, &c, &carol("down-3"));
    assert_eq!(code(&r), 500, "{r}");
    // The first found the connection broken and tried once more; both were refused.
    let log = s.log();
    assert!(
        log.contains("broken") && log.contains("reconnecting"),
        "{log}"
    );
    assert!(
        log.contains("ldap_search: LDAP session [dir]: cannot connect"),
        "{log}"
    );
    // slapd back on the same port: the next search connects again.
    d.restart();
    let r = send(&s, &c, &carol("down-4"));
    assert_eq!((code(&r), reason(&r)), (200, "tel 4712 4713 n 2"), "{r}");
    d.stop();
    s.stop();
}

#[test]
fn bad_sessions_file_stops_the_start() {
    let work = TempDir::new("ldapbad");
    let conf = work.file("ldap.cfg");
    std::fs::write(
        &conf,
        "[dir]\nldap_server_url = \"ldap://127.0.0.1:1\"\nldap_network_timeout = soon\n",
    )
    .unwrap();
    let cfg = work.file("openser.cfg");
    std::fs::write(
        &cfg,
        format!(
            "listen=udp:127.0.0.1:{}\nloadmodule \"ldap.so\"\nmodparam(\"ldap\", \"config_file\", \"{}\")\nroute {{ drop; }}\n",
            free_udp_port(),
            conf.display()
        ),
    )
    .unwrap();
    let err = start_refused(&cfg);
    assert!(
        err.contains(&format!("{}:3: ldap_network_timeout", conf.display())),
        "{err}"
    );
}

#[test]
fn silent_directory_is_500_after_the_timeout() {
    // A "server" that accepts connections (the kernel's backlog) and never answers:
    // the bind waits ldap_client_bind_timeout, the request gets 500, and the one
    // worker answers the next request the same way instead of hanging.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let work = TempDir::new("ldapsilent");
    let conf = work.file("ldap.cfg");
    std::fs::write(
        &conf,
        format!(
            "[dir]\nldap_server_url = \"ldap://127.0.0.1:{}\"\n\
             ldap_network_timeout = 300\nldap_client_bind_timeout = 300\n",
            silent.local_addr().unwrap().port()
        ),
    )
    .unwrap();
    let mut s = Server::start(&search_cfg(&conf), &[]);
    let c = Client::new();
    for i in 0..2 {
        let r = send(
            &s,
            &c,
            &request(
                "OPTIONS",
                "sip:carol@example.com",
                c.port(),
                &format!("silent-{i}"),
                1,
                "",
            ),
        );
        assert_eq!(
            (code(&r), reason(&r)),
            (500, "Directory Unavailable"),
            "{r}"
        );
    }
    assert!(s.log().contains("bind: timed out"), "{}", s.log());
    s.stop();
}
