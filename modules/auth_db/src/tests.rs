use super::*;
use auth::digest::{RespInput, calc_ha1, calc_ha1_alg, calc_response_alg};
use auth::nonce::calc_nonce;
use openser_core::db::MemDb;
use openser_core::module::ModParamValue;

const SECRET: &[u8] = b"k3y";
const NOW: i64 = 1_700_000_000;

/// The subscriber table of these tests.
fn db() -> MemDb {
    MemDb::with_rows(
        "subscriber",
        vec![
            vec![
                ("username", "alice".into()),
                ("domain", "example.com".into()),
                ("password", "secret".into()),
                ("ha1", calc_ha1("alice", "example.com", "secret").into()),
                (
                    "ha1b",
                    calc_ha1("alice@example.com", "example.com", "secret").into(),
                ),
                ("rpid", "sip:+4930123@example.com".into()),
                ("level", DbVal::Int(7)),
            ],
            vec![
                ("username", "bob".into()),
                ("domain", "other.org".into()),
                ("password", "bobpw".into()),
                ("ha1", calc_ha1("bob", "example.com", "bobpw").into()),
                ("ha1b", DbVal::Null),
                ("rpid", DbVal::Null),
                ("level", DbVal::Int(1)),
            ],
        ],
    )
}

fn conf(f: impl FnOnce(&mut AuthDbParams)) -> Config {
    let mut p = params();
    f(&mut p);
    Config::new(p).unwrap()
}

struct Creds<'a> {
    user: &'a str,
    realm: &'a str,
    password: &'a str,
    nonce: String,
    qop: bool,
    /// `algorithm=` sent (None: absent, MD5).
    alg: Option<Alg>,
}

fn creds<'a>(user: &'a str, password: &'a str) -> Creds<'a> {
    Creds {
        user,
        realm: "example.com",
        password,
        nonce: calc_nonce(NOW as u32 + 300, SECRET),
        qop: false,
        alg: None,
    }
}

/// A REGISTER to example.com carrying an Authorization header for `c`.
fn register(c: &Creds) -> SipMsg {
    let uri = "sip:example.com";
    let alg = c.alg.unwrap_or(Alg::Md5);
    let ha1 = calc_ha1_alg(alg.base(), c.user, c.realm, c.password);
    let (qop, cnonce, nc) = if c.qop || alg.is_sess() {
        (Some("auth"), "f00ba4", "00000001")
    } else {
        (None, "", "")
    };
    let resp = calc_response_alg(
        alg,
        &ha1,
        &RespInput {
            method: "REGISTER",
            uri,
            nonce: &c.nonce,
            qop,
            cnonce,
            nc,
            body: b"",
        },
    )
    .unwrap();
    let mut qop_params = if qop.is_some() {
        format!(", qop=auth, cnonce=\"{cnonce}\", nc={nc}")
    } else {
        String::new()
    };
    if let Some(a) = c.alg {
        qop_params += &format!(", algorithm={}", a.name());
    }
    let s = format!(
        "REGISTER {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc\r\n\
         From: <sip:{au}@example.com>;tag=1\r\n\
         To: <sip:{au}@example.com>\r\n\
         Call-ID: c1\r\n\
         CSeq: 1 REGISTER\r\n\
         Authorization: Digest username=\"{u}\", realm=\"{r}\", nonce=\"{n}\", uri=\"{uri}\", response=\"{resp}\"{qop_params}\r\n\
         Content-Length: 0\r\n\r\n",
        u = c.user,
        au = c.user.split('@').next().unwrap_or(""),
        r = c.realm,
        n = c.nonce,
    );
    SipMsg::parse(s.as_bytes()).expect("parse")
}

fn run(msg: &mut SipMsg, c: &Config, db: &mut MemDb, now: i64) -> (Authz, AvpList) {
    let mut avps = AvpList::new();
    let r = authorize_with(
        msg,
        &mut avps,
        "",
        "subscriber",
        true,
        c,
        Some(db),
        SECRET,
        "",
        now,
    );
    (r, avps)
}

#[test]
fn plaintext_password_with_calculate_ha1() {
    let c = conf(|p| {
        p.calculate_ha1 = true;
        p.password_column = "password".into();
    });
    let mut d = db();
    let mut m = register(&creds("alice", "secret"));
    let (r, avps) = run(&mut m, &c, &mut d, NOW);
    assert_eq!((r.clone(), r.rc()), (Authz::Authorized, 1));
    assert_eq!(
        avps.get(&AvpId::Str("rpid".into())),
        Some(&PvValue::Str("sip:+4930123@example.com".into()))
    );
    let (table, keys, cols) = &d.queries[0];
    assert_eq!(table, "subscriber");
    assert_eq!(keys, &vec![Key::eq("username", "alice")]);
    assert_eq!(cols, &vec!["password".to_string(), "rpid".to_string()]);
    assert!(m.auth_mark.is_some_and(|k| !k.stale));

    // Wrong password.
    let mut m = register(&creds("alice", "guess"));
    let (r, avps) = run(&mut m, &c, &mut d, NOW);
    assert_eq!((r.clone(), r.rc()), (Authz::NotAuthorized, -1));
    assert!(avps.is_empty());
    // Unknown user.
    let mut m = register(&creds("carol", "secret"));
    assert_eq!(run(&mut m, &c, &mut d, NOW).0, Authz::NotAuthorized);
}

#[test]
fn stored_ha1_and_qop_auth() {
    let c = conf(|_| {});
    let mut d = db();
    let mut m = register(&Creds {
        qop: true,
        ..creds("alice", "secret")
    });
    assert_eq!(run(&mut m, &c, &mut d, NOW).0, Authz::Authorized);
    assert_eq!(d.queries[0].2, vec!["ha1".to_string(), "rpid".to_string()]);
    let mut m = register(&Creds {
        qop: true,
        ..creds("alice", "nope")
    });
    assert_eq!(run(&mut m, &c, &mut d, NOW).0, Authz::NotAuthorized);
}

#[test]
fn username_with_domain_uses_ha1b() {
    let c = conf(|_| {});
    let mut d = db();
    let mut m = register(&creds("alice@example.com", "secret"));
    assert_eq!(run(&mut m, &c, &mut d, NOW).0, Authz::Authorized);
    let (_, keys, cols) = &d.queries[0];
    assert_eq!(keys, &vec![Key::eq("username", "alice")]);
    assert_eq!(cols[0], "ha1b");
}

#[test]
fn use_domain_adds_the_realm_key() {
    let c = conf(|p| p.use_domain = true);
    let mut d = db();
    let mut m = register(&creds("alice", "secret"));
    assert_eq!(run(&mut m, &c, &mut d, NOW).0, Authz::Authorized);
    assert_eq!(
        d.queries[0].1,
        vec![
            Key::eq("username", "alice"),
            Key::eq("domain", "example.com")
        ]
    );
    // bob's row is in another domain.
    let mut m = register(&creds("bob", "bobpw"));
    assert_eq!(run(&mut m, &c, &mut d, NOW).0, Authz::NotAuthorized);
    // Without use_domain bob is found.
    let c = conf(|_| {});
    let mut m = register(&creds("bob", "bobpw"));
    let (r, avps) = run(&mut m, &c, &mut d, NOW);
    assert_eq!(r, Authz::Authorized);
    // NULL rpid: no AVP.
    assert!(avps.is_empty());
}

#[test]
fn load_credentials_into_named_avps() {
    let c = conf(|p| p.load_credentials = "$avp(i:12)=level; rpid ;$avp(s:who)=username".into());
    let mut d = db();
    let mut m = register(&creds("alice", "secret"));
    let (r, avps) = run(&mut m, &c, &mut d, NOW);
    assert_eq!(r, Authz::Authorized);
    assert_eq!(
        d.queries[0].2,
        vec!["ha1", "level", "rpid", "username"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    );
    assert_eq!(avps.get(&AvpId::Int(12)), Some(&PvValue::Int(7)));
    assert_eq!(
        avps.get(&AvpId::Str("who".into())),
        Some(&PvValue::Str("alice".into()))
    );
    assert!(avps.get(&AvpId::Str("rpid".into())).is_some());
}

#[test]
fn db_errors_answer_500() {
    let c = conf(|_| {});
    let mut d = MemDb { fail: true, ..db() };
    let mut m = register(&creds("alice", "secret"));
    let (r, _) = run(&mut m, &c, &mut d, NOW);
    assert_eq!(
        (r.clone(), r.rc()),
        (Authz::Reply(500, "Server Internal Error"), 0)
    );
    // No connection at all.
    let mut m = register(&creds("alice", "secret"));
    let mut avps = AvpList::new();
    let r = authorize_with(
        &mut m,
        &mut avps,
        "",
        "subscriber",
        true,
        &c,
        None,
        SECRET,
        "",
        NOW,
    );
    assert_eq!(r, Authz::Reply(500, "Server Internal Error"));
}

#[test]
fn nonce_checks() {
    let c = conf(|_| {});
    let mut d = db();
    // Foreign nonce: not authorized, the DB isn't asked.
    let mut m = register(&Creds {
        nonce: calc_nonce(NOW as u32 + 300, b"someone else"),
        ..creds("alice", "secret")
    });
    assert_eq!(run(&mut m, &c, &mut d, NOW).0, Authz::NotAuthorized);
    assert!(d.queries.is_empty());
    // Expired nonce, correct response: not authorized, and stale is remembered.
    let old = calc_nonce(NOW as u32 - 10, SECRET);
    let mut m = register(&Creds {
        nonce: old.clone(),
        ..creds("alice", "secret")
    });
    assert_eq!(run(&mut m, &c, &mut d, NOW).0, Authz::NotAuthorized);
    assert!(api::marked_stale(
        &m,
        openser_core::parser::HdrType::Authorization
    ));
    // Expired nonce, wrong response: not authorized, not stale.
    let mut m = register(&Creds {
        nonce: old,
        ..creds("alice", "wrong")
    });
    assert_eq!(run(&mut m, &c, &mut d, NOW).0, Authz::NotAuthorized);
    assert!(!api::marked_stale(
        &m,
        openser_core::parser::HdrType::Authorization
    ));
}

#[test]
fn no_credentials_and_realm_mismatch() {
    let c = conf(|_| {});
    let mut d = db();
    let mut m = register(&Creds {
        realm: "elsewhere.net",
        ..creds("alice", "secret")
    });
    // The default realm is the To host (example.com): no matching credentials.
    assert_eq!(run(&mut m, &c, &mut d, NOW).0, Authz::NotAuthorized);
    // proxy_authorize looks at Proxy-Authorization only.
    let mut m = register(&creds("alice", "secret"));
    let mut avps = AvpList::new();
    let r = authorize_with(
        &mut m,
        &mut avps,
        "example.com",
        "subscriber",
        false,
        &c,
        Some(&mut d),
        SECRET,
        "",
        NOW,
    );
    assert_eq!(r, Authz::NotAuthorized);
    assert!(d.queries.is_empty());
}

#[test]
fn params_parsing() {
    for (v, b) in [
        (ModParamValue::Int(1), true),
        (ModParamValue::Int(0), false),
        (ModParamValue::Str("yes".into()), true),
        (ModParamValue::Str("No".into()), false),
        (ModParamValue::Str("true".into()), true),
        (ModParamValue::Str("0".into()), false),
    ] {
        assert_eq!(v.flag("auth_db", "x"), Ok(b));
    }
    assert!(
        ModParamValue::Str("maybe".into())
            .flag("auth_db", "x")
            .is_err()
    );
    assert_eq!(
        parse_credentials("rpid").unwrap(),
        vec![(AvpId::Str("rpid".into()), "rpid".into())]
    );
    assert!(parse_credentials("").unwrap().is_empty());
    assert!(parse_credentials("$var(x)=rpid").is_err());
    assert!(parse_credentials("$avp(s:x)=").is_err());
}

#[test]
fn sha2_credentials_read_their_columns() {
    let mut d = MemDb::with_rows(
        "subscriber",
        vec![vec![
            ("username", "alice".into()),
            ("ha1", calc_ha1("alice", "example.com", "secret").into()),
            (
                "ha1_sha256",
                calc_ha1_alg(Alg::Sha256, "alice", "example.com", "secret").into(),
            ),
            (
                "ha1_sha512t256",
                calc_ha1_alg(Alg::Sha512_256, "alice", "example.com", "secret").into(),
            ),
            ("rpid", DbVal::Null),
        ]],
    );
    let mut c = conf(|_| {});
    // MD5 only (the default): a SHA-256 credential is not authorized, no query made.
    let mut m = register(&Creds {
        alg: Some(Alg::Sha256),
        ..creds("alice", "secret")
    });
    assert_eq!(run(&mut m, &c, &mut d, NOW).0, Authz::NotAuthorized);
    assert!(d.queries.is_empty());
    c.algs = vec![Alg::Sha512_256, Alg::Sha256, Alg::Sha256Sess, Alg::Md5];
    for alg in [Alg::Sha256, Alg::Sha512_256, Alg::Sha256Sess] {
        let mut m = register(&Creds {
            alg: Some(alg),
            ..creds("alice", "secret")
        });
        assert_eq!(run(&mut m, &c, &mut d, NOW).0, Authz::Authorized, "{alg:?}");
        let mut m = register(&Creds {
            alg: Some(alg),
            ..creds("alice", "wrong")
        });
        assert_eq!(
            run(&mut m, &c, &mut d, NOW).0,
            Authz::NotAuthorized,
            "{alg:?}"
        );
    }
    let cols: Vec<&str> = d.queries.iter().map(|q| q.2[0].as_str()).collect();
    assert_eq!(
        cols,
        [
            "ha1_sha256",
            "ha1_sha256",
            "ha1_sha512t256",
            "ha1_sha512t256",
            "ha1_sha256",
            "ha1_sha256"
        ]
    );
    // Not offered (MD5-sess) and unknown algorithms are refused.
    for bad in ["MD5-sess", "SHA-1"] {
        let mut m = register(&creds("alice", "secret"));
        let raw = String::from_utf8_lossy(m.buf()).replace(
            "response=",
            &format!("algorithm={bad}, cnonce=\"c\", response="),
        );
        m = SipMsg::parse(raw.as_bytes()).unwrap();
        assert_eq!(
            run(&mut m, &c, &mut d, NOW).0,
            Authz::NotAuthorized,
            "{bad}"
        );
    }
    // calculate_ha1 hashes the plaintext with the credential's algorithm.
    let mut c2 = conf(|p| {
        p.calculate_ha1 = true;
        p.password_column = "password".into();
    });
    c2.algs = vec![Alg::Sha256];
    let mut d2 = db();
    let mut m = register(&Creds {
        alg: Some(Alg::Sha256),
        ..creds("alice", "secret")
    });
    assert_eq!(run(&mut m, &c2, &mut d2, NOW).0, Authz::Authorized);
}
