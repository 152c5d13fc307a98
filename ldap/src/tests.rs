use crate::ber::{self, int, tlv};
use crate::filter::{self, Filter};
use crate::proto::{self, Response, Scope};
use crate::{conf, url};

fn msg(id: i64, op: Vec<u8>) -> Vec<u8> {
    let mut c = int(ber::INTEGER, id);
    c.extend(op);
    tlv(ber::SEQUENCE, &c)
}

fn result(tag: u8, code: i64, text: &str) -> Vec<u8> {
    let mut c = int(ber::ENUMERATED, code);
    c.extend(tlv(ber::OCTET_STRING, b""));
    c.extend(tlv(ber::OCTET_STRING, text.as_bytes()));
    tlv(tag, &c)
}

#[test]
fn integers_are_minimal() {
    assert_eq!(int(ber::INTEGER, 0), vec![2, 1, 0]);
    assert_eq!(int(ber::INTEGER, 127), vec![2, 1, 127]);
    assert_eq!(int(ber::INTEGER, 128), vec![2, 2, 0, 128]);
    assert_eq!(int(ber::INTEGER, -1), vec![2, 1, 0xff]);
    assert_eq!(int(ber::INTEGER, 256), vec![2, 2, 1, 0]);
    for v in [
        0,
        1,
        -1,
        127,
        128,
        255,
        256,
        -129,
        i64::from(i32::MAX),
        i64::MIN,
    ] {
        assert_eq!(ber::decode_int(&int(ber::INTEGER, v)[2..]), Some(v));
    }
}

#[test]
fn long_lengths() {
    let v = vec![7u8; 300];
    let t = tlv(ber::OCTET_STRING, &v);
    assert_eq!(&t[..4], &[4, 0x82, 1, 44]);
    assert_eq!(ber::frame_len(&t), Ok(304));
    assert_eq!(ber::frame_len(&t[..3]), Err(ber::BerError::Incomplete));
}

#[test]
fn bind_request_bytes() {
    // RFC 4511 simple bind, id 1, v3, anonymous
    assert_eq!(
        proto::bind_request(1, 3, "", ""),
        vec![
            0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00
        ]
    );
}

#[test]
fn decodes_entry_and_done() {
    let mut pa = tlv(ber::OCTET_STRING, b"cn");
    pa.extend(tlv(ber::SET, &[tlv(4, b"alice"), tlv(4, b"al")].concat()));
    let mut e = tlv(ber::OCTET_STRING, b"cn=alice,dc=x");
    e.extend(tlv(ber::SEQUENCE, &tlv(ber::SEQUENCE, &pa)));
    let m = msg(5, tlv(0x64, &e));
    let (id, r) = proto::decode(&m).unwrap();
    assert_eq!(id, 5);
    let Response::Entry(e) = r else { panic!() };
    assert_eq!(e.dn, "cn=alice,dc=x");
    assert_eq!(
        e.values("CN").unwrap(),
        &[b"alice".to_vec(), b"al".to_vec()]
    );
    let (_, r) = proto::decode(&msg(5, result(0x65, 0, ""))).unwrap();
    assert!(matches!(r, Response::Done(ref x) if x.code == 0));
    let (_, r) = proto::decode(&msg(0, result(0x78, 52, "bye"))).unwrap();
    assert!(matches!(r, Response::Notice(_)));
}

#[test]
fn rejects_garbage() {
    assert!(proto::decode(&[]).is_err());
    assert!(proto::decode(&[0x30, 0x80, 0, 0]).is_err());
    assert!(proto::decode(&msg(-3, result(0x65, 0, ""))).is_err());
    let mut m = msg(1, result(0x65, 0, ""));
    m.push(0);
    assert!(proto::decode(&m).is_err());
    // a truncated inner element
    let m = vec![0x30, 0x05, 0x02, 0x01, 0x01, 0x65, 0x09];
    assert!(proto::decode(&m).is_err());
}

#[test]
fn filters() {
    assert_eq!(
        filter::parse("(cn=alice)").unwrap(),
        Filter::Equal("cn".into(), b"alice".to_vec())
    );
    assert_eq!(
        filter::parse("cn=alice").unwrap(),
        filter::parse("(cn=alice)").unwrap()
    );
    assert_eq!(
        filter::parse("").unwrap(),
        Filter::Present("objectClass".into())
    );
    assert_eq!(
        filter::parse("(&(objectClass=SIPIdentity)(!(uid=*))(|(a>=1)(b<=2)(c~=x)))").unwrap(),
        Filter::And(vec![
            Filter::Equal("objectClass".into(), b"SIPIdentity".to_vec()),
            Filter::Not(Box::new(Filter::Present("uid".into()))),
            Filter::Or(vec![
                Filter::GreaterOrEqual("a".into(), b"1".to_vec()),
                Filter::LessOrEqual("b".into(), b"2".to_vec()),
                Filter::Approx("c".into(), b"x".to_vec()),
            ]),
        ])
    );
    assert_eq!(
        filter::parse("(cn=a*b*c)").unwrap(),
        Filter::Substrings {
            attr: "cn".into(),
            initial: Some(b"a".to_vec()),
            any: vec![b"b".to_vec()],
            fin: Some(b"c".to_vec())
        }
    );
    assert_eq!(
        filter::parse("(cn=\\2a\\28x\\29)").unwrap(),
        Filter::Equal("cn".into(), b"*(x)".to_vec())
    );
    assert_eq!(
        filter::parse("(cn:dn:2.5.13.5:=Bob)").unwrap(),
        Filter::Extensible {
            rule: Some("2.5.13.5".into()),
            attr: Some("cn".into()),
            value: b"Bob".to_vec(),
            dn: true
        }
    );
    // RFC 4515 §4 example encodings
    assert_eq!(
        filter::parse("(cn=Babs Jensen)").unwrap().encode(),
        [
            &[0xa3, 0x11, 0x04, 0x02][..],
            b"cn",
            &[0x04, 0x0b],
            b"Babs Jensen"
        ]
        .concat()
    );
    for bad in [
        "(cn=a",
        "(cn=a))",
        "((cn=a)",
        "(&)",
        "(cn=\\zz)",
        "(=x)",
        "(c n=x)",
        "(cn=a**b)",
    ] {
        assert!(filter::parse(bad).is_err(), "{bad}");
    }
    let deep = "(!".repeat(100) + "(a=b)" + &")".repeat(100);
    assert!(filter::parse(&deep).is_err());
}

#[test]
fn escaping() {
    assert_eq!(filter::escape("a*(b)\\?", false), "a\\2a\\28b\\29\\5c?");
    assert_eq!(filter::escape("a?b", true), "a%3Fb");
    let e = filter::escape("x*y(z)\\", false);
    assert_eq!(
        filter::parse(&format!("(cn={e})")).unwrap(),
        Filter::Equal("cn".into(), b"x*y(z)\\".to_vec())
    );
}

#[test]
fn urls() {
    let u = url::parse("ldap://h350/ou=sip,dc=example,dc=com?cn,sn?one?(cn=bob)").unwrap();
    assert_eq!(u.session, "h350");
    assert_eq!(u.base, "ou=sip,dc=example,dc=com");
    assert_eq!(u.attrs, vec!["cn", "sn"]);
    assert_eq!(u.scope, Scope::One);
    assert_eq!(u.filter, "(cn=bob)");
    let u = url::parse("LDAP://s/dc=x").unwrap();
    assert_eq!(u.scope, Scope::Base);
    assert!(u.attrs.is_empty());
    assert_eq!(u.filter, "(objectClass=*)");
    let u = url::parse("ldap://s/dc=x??sub?(cn=a%3Fb)").unwrap();
    assert_eq!(u.filter, "(cn=a?b)");
    assert!(url::parse("http://s/dc=x").is_err());
    assert!(url::parse("ldap:///dc=x").is_err());
    assert!(url::parse("ldap://s/dc=x??deep").is_err());
    assert!(url::parse("ldap://s/dc=x%zz").is_err());
}

#[test]
fn sessions_file() {
    let text = "# comment\n[h350]\nldap_server_url = \"ldap://127.0.0.1:3890, ldap://[::1]\"\n\
                ldap_bind_dn = \"cn=root,dc=x\" ; who\nldap_bind_password = pw\n\
                ldap_network_timeout = 500\n\n[anon]\nldap_version = 2\nldap_server_url = ldap://127.0.0.1\n";
    let s = conf::parse(text, "ldap.cfg").unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].name, "h350");
    assert_eq!(s[0].servers.len(), 2);
    assert_eq!(s[0].servers[0].1[0].port(), 3890);
    assert_eq!(s[0].servers[1].1[0].port(), 389);
    assert_eq!(s[0].bind_dn, "cn=root,dc=x");
    assert_eq!(s[0].bind_password, "pw");
    assert_eq!(s[0].network_timeout.as_millis(), 500);
    assert_eq!(s[0].bind_timeout.as_millis(), 1000);
    assert_eq!(s[1].version, 2);
    for (bad, line) in [
        (
            "[a]\nldap_server_url = ldap://127.0.0.1\nbogus = 1\n",
            "ldap.cfg:3",
        ),
        ("[a]\nldap_network_timeout = soon\n", "ldap.cfg:2"),
        ("[a]\nldap_bind_dn = x\n", "ldap.cfg:1"),
        ("x = 1\n", "ldap.cfg:1"),
        ("[a]\nldap_server_url = ldaps://127.0.0.1\n", "ldap.cfg:1"),
        (
            "[a]\nldap_server_url = ldap://127.0.0.1\nldap_version = 4\n",
            "ldap.cfg:3",
        ),
    ] {
        let e = conf::parse(bad, "ldap.cfg").unwrap_err();
        assert!(e.starts_with(line), "{e}");
    }
}
