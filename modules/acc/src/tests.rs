use super::*;
use openser_core::db::MemDb;
use openser_core::script::{AvpId, AvpList};

const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc\r\n\
From: Alice <sip:alice@example.com>;tag=ftag1\r\n\
To: Bob <sip:bob@example.com>\r\n\
Call-ID: call-1@10.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n";

fn msg(b: &[u8]) -> SipMsg {
    SipMsg::parse(b).unwrap()
}

fn event(kind: TmEventKind, code: u16, reason: &str, flags: u32) -> TmEvent {
    let mut req = msg(INVITE);
    req.flags = flags;
    let mut avps = AvpList::new();
    avps.add(AvpId::Str("x".into()), PvValue::Str("xval".into()));
    TmEvent {
        kind,
        req,
        code,
        reason: reason.into(),
        to_tag: "ttag".into(),
        avps,
    }
}

fn config(f: impl FnOnce(&mut AccParams)) -> Config {
    let mut p = params();
    f(&mut p);
    Config::new(p).unwrap()
}

/// Run `account_event`, collecting (prefix, table, record).
fn run(c: &Config, ev: &mut TmEvent) -> (u32, Vec<(String, Option<String>, Record)>) {
    let mut out = Vec::new();
    let clear = account_event(c, ev, &mut |p, t, r| {
        let t = match t {
            Dest::Log => None,
            Dest::Db(t) => Some(t.to_string()),
            Dest::Radius => Some("<radius>".to_string()),
        };
        out.push((p.to_string(), t, r.clone()))
    });
    (clear, out)
}

#[test]
fn defaults() {
    let p = params();
    assert_eq!((p.log_flag, p.log_level, p.db_flag), (-1, 2, -1));
    assert_eq!(p.db_table_acc, "acc");
    assert_eq!(p.db_table_missed_calls, "missed_calls");
    assert_eq!(p.columns[6], "time");
    assert!(!p.report_cancels && !p.report_ack && !p.early_media);
    assert!(
        Config::new(AccParams {
            log_flag: 32,
            ..params()
        })
        .is_err()
    );
}

#[test]
fn extra_parsing() {
    let e = parse_extra(" src=$si; ua=$hdr(User-Agent) ;x=$avp(s:x);").unwrap();
    let names: Vec<&str> = e.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["src", "ua", "x"]);
    assert_eq!(e[0].spec.name, "si");
    assert!(parse_extra("").unwrap().is_empty());
    assert!(parse_extra("noequals").is_err());
    assert!(parse_extra("=$si").is_err());
    assert!(parse_extra("a=$si junk").is_err());
    assert!(parse_extra("a=notapv").is_err());
}

#[test]
fn comments() {
    assert_eq!(split_comment("200 OK"), ("200".into(), "OK".into()));
    assert_eq!(
        split_comment("486 Busy Here"),
        ("486".into(), "Busy Here".into())
    );
    assert_eq!(split_comment("404"), ("404".into(), "".into()));
    assert_eq!(split_comment("hello"), ("".into(), "hello".into()));
    assert_eq!(split_comment("2000 x"), ("".into(), "2000 x".into()));
    assert_eq!(split_comment(""), ("".into(), "".into()));
}

#[test]
fn log_line_format() {
    let m = msg(INVITE);
    let mut r = record_of(&m, "200", "OK", Some("tt"));
    assert_eq!(
        log_line(P_ANSWERED, 1_170_000_000, &r),
        "ACC: transaction answered: timestamp=1170000000;method=INVITE;from_tag=ftag1;\
to_tag=tt;call_id=call-1@10.0.0.1;code=200;reason=OK"
    );
    r.extra = vec![("a".into(), PvValue::Int(5)), ("b".into(), PvValue::Null)];
    assert!(log_line(P_MISSED, 1, &r).ends_with(";reason=OK;a=5;b=<null>"));
    assert!(log_line(P_MISSED, 1, &r).starts_with("ACC: call missed: timestamp=1;"));
    // to-tag of the request itself (none here).
    assert_eq!(record_of(&m, "", "c", None).to_tag, "");
}

#[test]
fn request_record_with_extra() {
    let mut m = msg(INVITE);
    let mut ctx = Ctx::new(&mut m, REQUEST_ROUTE);
    ctx.avps
        .add(AvpId::Str("x".into()), PvValue::Str("v1".into()));
    let ex = parse_extra("cid=$ci;x=$avp(s:x);y=$avp(s:nope)").unwrap();
    let r = request_record(&mut ctx, "403 Forbidden", &ex);
    assert_eq!((r.code.as_str(), r.reason.as_str()), ("403", "Forbidden"));
    assert_eq!(r.method, "INVITE");
    assert_eq!(
        r.extra,
        vec![
            ("cid".into(), PvValue::Str("call-1@10.0.0.1".into())),
            ("x".into(), PvValue::Str("v1".into())),
            ("y".into(), PvValue::Null),
        ]
    );
}

#[test]
fn db_row_and_fake_insert() {
    let m = msg(INVITE);
    let mut r = record_of(&m, "200", "OK", Some("tt"));
    r.extra = vec![
        ("src_ip".into(), PvValue::Str("10.0.0.1".into())),
        ("n".into(), PvValue::Null),
    ];
    let mut cols = params().columns;
    cols[3] = "cid".into();
    let mut db = MemDb::default();
    db_insert(&mut db, &cols, "acc", 1_170_000_000, &r).unwrap();
    assert_eq!(db.rows.len(), 1);
    let (table, row) = &db.rows[0];
    assert_eq!(table, "acc");
    let names: Vec<&str> = row.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "method",
            "from_tag",
            "to_tag",
            "cid",
            "sip_code",
            "sip_reason",
            "time",
            "src_ip",
            "n"
        ]
    );
    assert_eq!(row[0].1, DbVal::Str("INVITE".into()));
    assert_eq!(row[1].1, DbVal::Str("ftag1".into()));
    assert_eq!(row[2].1, DbVal::Str("tt".into()));
    assert_eq!(row[3].1, DbVal::Str("call-1@10.0.0.1".into()));
    assert_eq!(row[4].1, DbVal::Str("200".into()));
    assert_eq!(row[5].1, DbVal::Str("OK".into()));
    assert_eq!(row[6].1, DbVal::DateTime(1_170_000_000));
    assert_eq!(row[7].1, DbVal::Str("10.0.0.1".into()));
    assert_eq!(row[8].1, DbVal::Null);
}

#[test]
fn answered_only_when_flagged() {
    let c = config(|p| p.log_flag = 1);
    let (clear, out) = run(&c, &mut event(TmEventKind::ReplyOut, 200, "OK", 0));
    assert_eq!((clear, out.len()), (0, 0));
    let (clear, out) = run(&c, &mut event(TmEventKind::ReplyOut, 200, "OK", 1 << 1));
    assert_eq!(clear, 0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, P_ANSWERED);
    assert_eq!(out[0].1, None);
    assert_eq!(out[0].2.to_tag, "ttag");
    assert_eq!(out[0].2.code, "200");
    // A 486 is not accounted without failed_transaction_flag.
    let (_, out) = run(&c, &mut event(TmEventKind::ReplyOut, 486, "Busy", 1 << 1));
    assert!(out.is_empty());
}

#[test]
fn failed_and_missed() {
    let c = config(|p| {
        p.log_flag = 1;
        p.log_missed_flag = 2;
        p.failed_transaction_flag = 3;
        p.log_extra = "x=$avp(s:x)".into();
    });
    let flags = (1 << 1) | (1 << 2) | (1 << 3);
    let (clear, out) = run(
        &c,
        &mut event(TmEventKind::ReplyOut, 486, "Busy Here", flags),
    );
    assert_eq!(clear, 1 << 2, "missed flag reset");
    let prefixes: Vec<&str> = out.iter().map(|o| o.0.as_str()).collect();
    assert_eq!(prefixes, [P_MISSED, P_ANSWERED]);
    assert_eq!(out[0].2.reason, "Busy Here");
    assert_eq!(
        out[0].2.extra,
        vec![("x".into(), PvValue::Str("xval".into()))]
    );
    // Before failure_route: only the missed call, no transaction record.
    let (clear, out) = run(
        &c,
        &mut event(TmEventKind::Failure, 486, "Busy Here", flags),
    );
    assert_eq!(clear, 1 << 2);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, P_MISSED);
    // Missed flag already reset: nothing more for the missed call.
    let (clear, out) = run(
        &c,
        &mut event(TmEventKind::ReplyOut, 486, "Busy Here", flags & !(1 << 2)),
    );
    assert_eq!(clear, 0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, P_ANSWERED);
}

#[test]
fn db_records_need_url_and_cancels_are_skipped() {
    let c = config(|p| {
        p.db_flag = 1;
        p.db_missed_flag = 2;
    });
    let (_, out) = run(&c, &mut event(TmEventKind::ReplyOut, 200, "OK", 0b110));
    assert!(out.is_empty(), "no db_url, no SQL accounting");
    let c = config(|p| {
        p.db_flag = 1;
        p.db_missed_flag = 2;
        p.db_url = "mysql://u:p@h/db".into();
    });
    let (_, out) = run(&c, &mut event(TmEventKind::ReplyOut, 200, "OK", 0b110));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.as_deref(), Some("acc"));
    let (clear, out) = run(
        &c,
        &mut event(TmEventKind::Failure, 404, "Not Found", 0b110),
    );
    assert_eq!(clear, 0b100);
    assert_eq!(out[0].1.as_deref(), Some("missed_calls"));

    let cancel = b"CANCEL sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc\r\n\
From: <sip:alice@example.com>;tag=f\r\nTo: <sip:bob@example.com>\r\n\
Call-ID: c2\r\nCSeq: 1 CANCEL\r\n\r\n";
    let c = config(|p| p.log_flag = 1);
    let mut ev = event(TmEventKind::ReplyOut, 200, "OK", 0b10);
    ev.req = msg(cancel);
    ev.req.flags = 0b10;
    assert!(run(&c, &mut ev).1.is_empty());
    let c = config(|p| {
        p.log_flag = 1;
        p.report_cancels = true;
    });
    let mut ev = event(TmEventKind::ReplyOut, 200, "OK", 0b10);
    ev.req = msg(cancel);
    ev.req.flags = 0b10;
    let (_, out) = run(&c, &mut ev);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].2.method, "CANCEL");
}

fn legs_config() -> Config {
    config(|p| {
        p.log_flag = 1;
        p.multi_leg_info = "leg_src=$avp(i:901);leg_dst=$avp(i:902)".into();
    })
}

#[test]
fn multi_leg_records() {
    assert!(parse_legs("a=$avp(i:1);b=$avp(s:x)").is_ok());
    assert!(parse_legs("a=$ru").is_err());
    let c = legs_config();
    let mut ev = event(TmEventKind::ReplyOut, 200, "OK", 1 << 1);
    for (s, d) in [("alice", "bob"), ("bob", "carol")] {
        ev.avps.add(AvpId::Int(901), PvValue::Str(s.into()));
        ev.avps.add(AvpId::Int(902), PvValue::Str(d.into()));
    }
    let (_, out) = run(&c, &mut ev);
    assert_eq!(out.len(), 1);
    let line = log_line(P_ANSWERED, 7, &out[0].2);
    // newest leg first, as 1.2 walks the AVPs
    assert!(
        line.ends_with(";leg_src=bob;leg_dst=carol;leg_src=alice;leg_dst=bob"),
        "{line}"
    );
    // SQL: one row per leg
    let mut db = MemDb::default();
    db_insert(&mut db, &c.p.columns, "acc", 7, &out[0].2).unwrap();
    assert_eq!(db.rows.len(), 2);
    let leg = |i: usize, col: &str| {
        db.rows[i]
            .1
            .iter()
            .find(|(n, _)| n == col)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(leg(0, "leg_src"), Some(DbVal::Str("bob".into())));
    assert_eq!(leg(1, "leg_dst"), Some(DbVal::Str("bob".into())));
    // no leg AVP: one leg of NULLs
    let mut ev = event(TmEventKind::ReplyOut, 200, "OK", 1 << 1);
    let (_, out) = run(&c, &mut ev);
    assert_eq!(out[0].2.legs.len(), 1);
    assert!(log_line("", 1, &out[0].2).ends_with(";leg_src=<null>;leg_dst=<null>"));
}

#[test]
fn early_media_and_acks() {
    let c = config(|p| {
        p.log_flag = 1;
        p.early_media = true;
        p.report_ack = true;
    });
    let (_, out) = run(
        &c,
        &mut event(TmEventKind::Provisional, 183, "Session Progress", 2),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].2.code, "183");
    let (_, out) = run(&c, &mut event(TmEventKind::Provisional, 180, "Ringing", 2));
    assert!(out.is_empty());
    let mut ack = event(TmEventKind::E2eAck, 200, "", 2);
    let text = String::from_utf8_lossy(INVITE)
        .replace("INVITE", "ACK")
        .replace(
            "To: Bob <sip:bob@example.com>",
            "To: Bob <sip:bob@example.com>;tag=tt",
        );
    ack.req = msg(text.as_bytes());
    ack.req.flags = 2;
    let (_, out) = run(&c, &mut ack);
    assert_eq!(out[0].0, P_ACKED);
    assert_eq!(
        (out[0].2.method.as_str(), out[0].2.to_tag.as_str()),
        ("ACK", "tt")
    );
    assert_eq!(out[0].2.reason, "OK");
    let off = config(|p| p.log_flag = 1);
    assert!(
        run(&off, &mut event(TmEventKind::Provisional, 183, "SP", 2))
            .1
            .is_empty()
    );
}

#[test]
fn upstream_requests_swap_from_and_to() {
    let c = config(|p| {
        p.log_flag = 1;
        p.detect_direction = true;
        p.log_extra = "fu=$fu;tu=$tu".into();
    });
    let c = Config::new(c.p).unwrap();
    let mut ev = event(TmEventKind::ReplyOut, 200, "OK", 2);
    ev.avps
        .add(AvpId::Str("acc:upstream".into()), PvValue::Int(1));
    let (_, out) = run(&c, &mut ev);
    let r = &out[0].2;
    assert_eq!((r.from_tag.as_str(), r.to_tag.as_str()), ("ttag", "ftag1"));
    let line = log_line("", 1, r);
    assert!(
        line.contains("fu=sip:bob@example.com;tu=sip:alice@example.com"),
        "{line}"
    );
}

#[test]
fn radius_records() {
    use openser_radius::Attr;
    let dir = std::env::temp_dir().join(format!("acc-radius-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("radiusclient.conf");
    std::fs::write(&conf, "acctserver 127.0.0.1:1813:s3\n").unwrap();
    let c = config(|p| {
        p.radius_config = conf.display().to_string();
        p.radius_flag = 2;
        p.radius_extra = "Calling-Station-Id=$fu;Called-Station-Id=$avp(s:none)".into();
    });
    assert!(c.rad_wanted());
    let st = radius::prepare(&c).unwrap();
    let mut r = Record {
        method: "INVITE".into(),
        from_tag: "ft".into(),
        to_tag: "tt".into(),
        callid: "cid".into(),
        code: "200".into(),
        reason: "OK".into(),
        extra: vec![
            ("Calling-Station-Id".into(), PvValue::Str("sip:a@b".into())),
            ("Called-Station-Id".into(), PvValue::Null),
        ],
        legs: vec![],
    };
    let a = st.attrs_of(&r, 1000).unwrap();
    let int = |t: u8, v: u32| Attr::new(t, &v.to_be_bytes());
    assert_eq!(a[0], int(40, 1), "Start");
    assert_eq!(a[1], int(6, 15), "Sip-Session");
    assert_eq!(a[2], int(102, 200));
    assert_eq!(a[3], int(101, 1), "INVITE");
    assert_eq!(a[4], int(55, 1000));
    assert_eq!(a[5], Attr::new(105, b"ft"));
    assert_eq!(a[6], Attr::new(104, b"tt"));
    assert_eq!(a[7], Attr::new(44, b"cid"));
    assert_eq!(a[8], Attr::new(31, b"sip:a@b"));
    assert_eq!(a.len(), 9, "the NULL extra is left out");
    r.method = "BYE".into();
    assert_eq!(st.attrs_of(&r, 1).unwrap()[0], int(40, 2), "Stop");
    r.method = "INVITE".into();
    r.code = "486".into();
    assert_eq!(st.attrs_of(&r, 1).unwrap()[0], int(40, 15), "Failed");
    r.code = String::new();
    assert_eq!(st.attrs_of(&r, 1).unwrap()[0], int(40, 15), "no code");
    // An extra that names no attribute is a start-up error.
    let bad = config(|p| {
        p.radius_config = conf.display().to_string();
        p.radius_extra = "No-Such-Attribute=$fu".into();
    });
    assert!(radius::prepare(&bad).is_err());
    // Nothing RADIUS configured: not wanted.
    assert!(!config(|_| {}).rad_wanted());
    let _ = std::fs::remove_dir_all(&dir);
}
