//! Interpreter unit tests on parsed messages (no network).

use super::fixup::{Script, fixup_with};
use super::{Ctx, PvValue};
use crate::cfg::ast::RouteKind;
use crate::cfg::pv::parse_pv;
use crate::parser::SipMsg;
use crate::route::REQUEST_ROUTE;

const INVITE: &str = "INVITE sip:bob@example.com;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: \"Alice\" <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@10.0.0.1>\r\n\
User-Agent: test-ua/1.0\r\n\
X-Multi: one\r\n\
X-Multi: two\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";

fn script(src: &str) -> &'static Script {
    let cfg = crate::cfg::parse_str("t.cfg", src).unwrap_or_else(|e| panic!("{e}"));
    let s = fixup_with(&cfg, &[], &["al=s:aliased;num=i:7".into()], false)
        .unwrap_or_else(|e| panic!("{}", e.join("\n")));
    Box::leak(Box::new(s))
}

fn msg() -> SipMsg {
    SipMsg::new(INVITE.as_bytes(), Default::default()).unwrap()
}

fn pv(ctx: &mut Ctx, s: &str) -> PvValue {
    let (p, _) = parse_pv(s).unwrap();
    ctx.get_pv(&p)
}

/// Run the main route of `src` on the INVITE; returns (rc, ctx values via closure).
fn run(src: &str, check: impl FnOnce(&mut Ctx, i32)) {
    let s = script(src);
    let mut m = msg();
    let mut ctx = Ctx::with_script(&mut m, REQUEST_ROUTE, s);
    let rc = super::run_route(RouteKind::Request, 0, &mut ctx);
    check(&mut ctx, rc);
}

fn var(ctx: &mut Ctx, n: &str) -> PvValue {
    pv(ctx, &format!("$var({n})"))
}

#[test]
fn return_codes_and_stop() {
    run(
        "route { $var(a) = 1; route(1); $var(a) = 2; }
         route[1] { return(-2); }",
        |c, _| assert_eq!(var(c, "a"), PvValue::Int(2)),
    );
    run(
        "route { $var(a) = 1; route(1); $var(a) = 3; }
         route[1] { return(0); }",
        |c, _| assert_eq!(var(c, "a"), PvValue::Int(1)),
    );
    // route() value: negative passes through, else 1
    run(
        "route { if (route(1)) { $var(r) = \"t\"; } else { $var(r) = \"f\"; } $var(rc) = $rc; }
         route[1] { return(-5); }",
        |c, _| {
            assert_eq!(var(c, "r"), PvValue::Str("f".into()));
        },
    );
    run(
        "route { route(1); $var(rc) = $retcode; }
         route[1] { return(7); }",
        |c, _| assert_eq!(var(c, "rc"), PvValue::Int(7)),
    );
    // exit stops everything; drop sets the DROP flag
    run("route { $var(x) = 1; exit; $var(x) = 2; }", |c, _| {
        assert_eq!(var(c, "x"), PvValue::Int(1));
        assert!(!c.drop_requested());
    });
    run(
        "route { route(1); $var(x) = 5; } route[1] { drop; }",
        |c, _| {
            assert!(c.drop_requested());
            assert_ne!(var(c, "x"), PvValue::Int(5));
        },
    );
    // a 0-returning function in a condition stops the script
    run(
        "route { $var(z) = 1; if (isflagset(3) || route(2)) { $var(z) = 2; } $var(z) = 3; }
         route[2] { return(0); }",
        |c, _| assert_eq!(var(c, "z"), PvValue::Int(1)),
    );
}

#[test]
fn recursion_limit() {
    run(
        "route { route(1); $var(done) = 1; } route[1] { route(1); }",
        |c, _| {
            assert_eq!(var(c, "done"), PvValue::Int(1));
        },
    );
}

#[test]
fn switch_and_while() {
    run(
        "route {
            $var(i) = 0; $var(n) = 0;
            while ($var(i) < 10) { $var(i) = $var(i) + 1; $var(n) = $var(n) + 2; }
            switch ($rm) {
              case \"invite\": $var(s) = \"inv\";
              case \"BYE\": $var(s2) = \"fell\"; break;
              default: $var(s) = \"def\";
            }
            switch ($var(i)) { case 3: $var(k) = 3; break; default: $var(k) = \"d\"; }
         }",
        |c, _| {
            assert_eq!(var(c, "i"), PvValue::Int(10));
            assert_eq!(var(c, "n"), PvValue::Int(20));
            assert_eq!(var(c, "s"), PvValue::Str("inv".into()));
            assert_eq!(var(c, "s2"), PvValue::Str("fell".into()));
            assert_eq!(var(c, "k"), PvValue::Str("d".into()));
        },
    );
    // max_while_loops (default 100)
    run(
        "route { $var(w) = 0; while (1) { $var(w) = $var(w) + 1; } }",
        |c, _| assert_eq!(var(c, "w"), PvValue::Int(100)),
    );
}

#[test]
fn flags() {
    run(
        "route {
            setflag(3); setsflag(4); setbflag(5); setbflag(0, 6);
            if (isflagset(3) && issflagset(4) && isbflagset(5)) { $var(f) = 1; }
            resetflag(3);
            if (!isflagset(3)) { $var(g) = 1; }
         }",
        |c, _| {
            assert_eq!(var(c, "f"), PvValue::Int(1));
            assert_eq!(var(c, "g"), PvValue::Int(1));
            assert_eq!(pv(c, "$bf"), PvValue::Int(96));
            assert_eq!(pv(c, "$sF"), PvValue::Str("0x10".into()));
            assert_eq!(pv(c, "$mf"), PvValue::Int(0));
        },
    );
}

#[test]
fn avps_and_vars() {
    run(
        "route {
            $avp(s:x) = 1; $avp(s:x) = \"two\"; $avp(i:5) = 9; $avp(al) = \"A\"; $avp(num) = 70;
            $var(top) = $avp(s:x); $var(old) = $avp(s:x[-1]); $var(all) = $(avp(s:x)[*]);
            $avp(s:x) = null;
            $var(after) = $avp(s:x);
            $var(v) = $avp(i:7);
         }",
        |c, _| {
            assert_eq!(var(c, "top"), PvValue::Str("two".into()));
            assert_eq!(var(c, "old"), PvValue::Int(1));
            assert_eq!(var(c, "all"), PvValue::Str("two, 1".into()));
            assert_eq!(var(c, "after"), PvValue::Int(1));
            assert_eq!(var(c, "v"), PvValue::Int(70));
            assert_eq!(pv(c, "$avp(s:aliased)"), PvValue::Str("A".into()));
        },
    );
    // $var survives to the next message (same thread = same process)
    run("route { $var(keep) = \"k\"; }", |_, _| {});
    run("route { $var(seen) = $var(keep); }", |c, _| {
        assert_eq!(var(c, "seen"), PvValue::Str("k".into()));
    });
    // = null on $var sets 0; compound ops behave like =
    run(
        "route { $var(q) = 5; $var(q) += 3; $var(z) = 4; $var(z) = null; }",
        |c, _| {
            assert_eq!(var(c, "q"), PvValue::Int(3));
            assert_eq!(var(c, "z"), PvValue::Int(0));
        },
    );
}

#[test]
fn ruri_assignment_and_actions() {
    run(
        "route { $rU = \"carol\"; $rd = \"biloxi.com\"; $var(a) = $ru; prefix(\"00\"); strip(1);
                 $var(b) = $rU; strip_tail(2); $var(c) = $rU; rewritehostport(\"h.org:5070\");
                 $var(d) = $ru; revert_uri(); $var(e) = $ru; $du = \"sip:p.org\"; $var(f) = $dd;
                 if (isdsturiset()) { $var(g) = 1; } resetdsturi(); seturi(\"sip:x@y\"); }",
        |c, _| {
            assert_eq!(
                var(c, "a"),
                PvValue::Str("sip:carol@biloxi.com;transport=udp".into())
            );
            assert_eq!(var(c, "b"), PvValue::Str("0carol".into()));
            assert_eq!(var(c, "c"), PvValue::Str("0car".into()));
            assert_eq!(
                var(c, "d"),
                PvValue::Str("sip:0car@h.org:5070;transport=udp".into())
            );
            assert_eq!(
                var(c, "e"),
                PvValue::Str("sip:bob@example.com;transport=udp".into())
            );
            assert_eq!(var(c, "f"), PvValue::Str("p.org".into()));
            assert_eq!(var(c, "g"), PvValue::Int(1));
            assert_eq!(c.msg.dst_uri, None);
            assert_eq!(c.msg.ruri(), "sip:x@y");
        },
    );
    run(
        "route { append_branch(); append_branch(\"sip:b2@h\", \"0.5\"); $var(ds) = $ds; }",
        |c, _| {
            assert_eq!(c.branches.len(), 2);
            assert_eq!(c.branches[1].q, 500);
            assert_eq!(
                var(c, "ds"),
                PvValue::Str(
                    "sip:bob@example.com;transport=udp, <sip:bob@example.com;transport=udp>, <sip:b2@h>;q=0.5"
                        .into()
                )
            );
        },
    );
}

#[test]
fn pvs() {
    run("route { }", |c, _| {
        assert_eq!(pv(c, "$rm"), PvValue::Str("INVITE".into()));
        assert_eq!(pv(c, "$rU"), PvValue::Str("bob".into()));
        assert_eq!(pv(c, "$rd"), PvValue::Str("example.com".into()));
        assert_eq!(pv(c, "$rp"), PvValue::Int(5060));
        assert_eq!(pv(c, "$rP"), PvValue::Str("udp".into()));
        assert_eq!(pv(c, "$fu"), PvValue::Str("sip:alice@atlanta.com".into()));
        assert_eq!(pv(c, "$fU"), PvValue::Str("alice".into()));
        assert_eq!(pv(c, "$fn"), PvValue::Str("Alice".into()));
        assert_eq!(pv(c, "$ft"), PvValue::Str("1928301774".into()));
        assert_eq!(pv(c, "$tt"), PvValue::Null);
        assert_eq!(pv(c, "$tn"), PvValue::Str("Bob".into()));
        assert_eq!(
            pv(c, "$ci"),
            PvValue::Str("a84b4c76e66710@pc33.atlanta.com".into())
        );
        assert_eq!(pv(c, "$cs"), PvValue::Int(314159));
        assert_eq!(pv(c, "$cl"), PvValue::Int(4));
        assert_eq!(pv(c, "$ua"), PvValue::Str("test-ua/1.0".into()));
        assert_eq!(pv(c, "$rb"), PvValue::Str("v=0\n".into()));
        assert_eq!(pv(c, "$cT"), PvValue::Str("application/sdp".into()));
        assert_eq!(pv(c, "$hdr(x-multi)"), PvValue::Str("one".into()));
        assert_eq!(pv(c, "$hdr(X-Multi[-1])"), PvValue::Str("two".into()));
        assert_eq!(pv(c, "$hdr(X-Multi[*])"), PvValue::Str("one, two".into()));
        assert_eq!(pv(c, "$hdr(f)"), pv(c, "$hdr(From)"));
        assert_eq!(pv(c, "$hdr(Nope)"), PvValue::Null);
        assert_eq!(pv(c, "$rs"), PvValue::Null);
        assert_eq!(pv(c, "$si"), PvValue::Str("0.0.0.0".into()));
        assert_eq!(pv(c, "$err.class"), PvValue::Int(0));
        let f = crate::cfg::pv::parse_format("[$rm] $fU->$tU $null").unwrap_or_default();
        let _ = f;
        let f = crate::cfg::pv::parse_format("[$rm] $fU->$tU $du").unwrap();
        assert_eq!(c.format(&f), "[INVITE] alice->bob <null>");
    });
}

#[test]
fn next_hop_and_time_pvs() {
    run("route { }", |c, _| {
        let s = |v: &str| PvValue::Str(v.into());
        assert_eq!(pv(c, "$nh(u)"), s("sip:bob@example.com;transport=udp"));
        assert_eq!(pv(c, "$nh(U)"), s("bob"));
        assert_eq!(pv(c, "$nh(d)"), s("example.com"));
        assert_eq!(pv(c, "$nh(p)"), PvValue::Null);
        assert_eq!(pv(c, "$nh(P)"), s("udp"));
        let t = pv(c, "$TV(s)").as_int().unwrap();
        assert!(t > 1_600_000_000);
        assert!((0..1_000_000).contains(&pv(c, "$TV(un)").as_int().unwrap()));
        let tv = pv(c, "$TV").to_text();
        assert!(tv.contains('.') && tv.len() > 11, "{tv}");
    });
    run(
        "route { $du = \"sip:proxy.example.net:5070;transport=udp\"; $var(u) = $nh(u); $var(d) = $nh(d); $var(p) = $nh(p); $var(t) = $nh(P); }",
        |c, _| {
            assert_eq!(
                var(c, "u"),
                PvValue::Str("sip:proxy.example.net:5070;transport=udp".into())
            );
            assert_eq!(var(c, "d"), PvValue::Str("proxy.example.net".into()));
            assert_eq!(var(c, "p"), PvValue::Int(5070));
            assert_eq!(var(c, "t"), PvValue::Str("udp".into()));
        },
    );
    let cfg = crate::cfg::parse_str("t.cfg", "route {\n $var(a) = $nh(x);\n}").unwrap();
    let e = fixup_with(&cfg, &[], &[], false)
        .err()
        .expect("$nh(x) must fail");
    assert!(e.join("\n").contains("unknown key 'x' of '$nh'"), "{e:?}");
}

#[test]
fn transformations() {
    run("route { }", |c, _| {
        let t = |c: &mut Ctx, s: &str| pv(c, s);
        assert_eq!(t(c, "$(fu{s.len})"), PvValue::Int(21));
        assert_eq!(t(c, "$(fu{s.substr,4,5})"), PvValue::Str("alice".into()));
        assert_eq!(t(c, "$(fu{s.substr,-3,0})"), PvValue::Str("com".into()));
        assert_eq!(
            t(c, "$(hdr(Contact){uri.host})"),
            PvValue::Str("10.0.0.1".into())
        );
        assert_eq!(t(c, "$(ru{uri.transport})"), PvValue::Str("udp".into()));
        assert_eq!(
            t(c, "$(ru{uri.param,transport})"),
            PvValue::Str("udp".into())
        );
        assert_eq!(t(c, "$(cs{s.int})"), PvValue::Int(314159));
        assert_eq!(t(c, "$(rU{s.encode.hexa})"), PvValue::Str("626f62".into()));
        assert_eq!(
            t(c, "$(rU{s.encode.hexa}{s.decode.hexa})"),
            PvValue::Str("bob".into())
        );
        assert_eq!(
            t(c, "$(ci{s.select,1,@})"),
            PvValue::Str("pc33.atlanta.com".into())
        );
        assert_eq!(
            t(c, "$(hdr(From){param.value,tag})"),
            PvValue::Str("1928301774".into())
        );
        assert_eq!(t(c, "$(hdr(From){param.count})"), PvValue::Int(2));
        assert_eq!(t(c, "$(hdr(Nope){s.len})"), PvValue::Null);
        // SIP Router 3.1 additions (values as the Kamailio transformation docs give them).
        let s = |v: &str| PvValue::Str(v.into());
        assert_eq!(t(c, "$(fu{s.strip,4})"), s("alice@atlanta.com"));
        assert_eq!(t(c, "$(fu{s.striptail,12})"), s("sip:alice"));
        assert_eq!(t(c, "$(fu{s.strip,99})"), s(""));
        assert_eq!(t(c, "$(rU{s.prefixes})"), s("b,bo,bob"));
        assert_eq!(t(c, "$(rU{s.prefixes,2})"), s("b,bo"));
        assert_eq!(t(c, "$(rU{s.prefixes.quoted})"), s("'b','bo','bob'"));
        assert_eq!(t(c, "$(rU{s.md5})"), s("9f9d51bc70ef21ca5c14f307980a29d8"));
        assert_eq!(t(c, "$(fU{s.toupper})"), s("ALICE"));
        assert_eq!(t(c, "$(fU{s.toupper}{s.tolower})"), s("alice"));
        assert_eq!(t(c, "$(ru{uri.scheme})"), s("sip"));
        assert_eq!(t(c, "$(hdr(From){nameaddr.name})"), s("\"Alice\""));
        assert_eq!(
            t(c, "$(hdr(From){nameaddr.uri})"),
            s("sip:alice@atlanta.com")
        );
        assert_eq!(
            t(c, "$(hdr(From){nameaddr.len})"),
            PvValue::Int("\"Alice\" <sip:alice@atlanta.com>".len() as i64)
        );
        assert_eq!(t(c, "$(hdr(From){tobody.display})"), s("\"Alice\""));
        assert_eq!(t(c, "$(hdr(From){tobody.uri})"), s("sip:alice@atlanta.com"));
        assert_eq!(t(c, "$(hdr(From){tobody.tag})"), s("1928301774"));
        assert_eq!(t(c, "$(hdr(From){tobody.user})"), s("alice"));
        assert_eq!(t(c, "$(hdr(From){tobody.host})"), s("atlanta.com"));
        assert_eq!(t(c, "$(hdr(From){tobody.params})"), s("tag=1928301774"));
        assert_eq!(t(c, "$(hdr(To){tobody.tag})"), s(""));
    });
    run(
        "route { $var(u) = \"a b@c\"; $var(e) = $(var(u){s.escape.user}); $var(d) = $(var(e){s.unescape.user}); }",
        |c, _| {
            assert_eq!(var(c, "e"), PvValue::Str("a%20b%40c".into()));
            assert_eq!(var(c, "d"), PvValue::Str("a b@c".into()));
        },
    );
}

#[test]
fn expressions_and_quirks() {
    run(
        "route {
            if (method == \"invite\") { $var(a) = 1; }
            if (method =~ \"^INV\") { $var(b) = 1; }
            if (uri !~ \"nomatch\") { $var(c) = 1; } else { $var(c) = 2; }
            if (uri =~ \"BOB@\") { $var(d) = 1; }
            if ($rU == \"BOB\") { $var(e) = 1; }
            if ($cs > 1000 && $cs < 400000) { $var(f) = 1; }
            if (msg:len < max_len) { $var(g) = 1; }
            if (1 || 0 && 0) { $var(h) = 1; } else { $var(h) = 2; }
            if ($du == null) { $var(i) = 1; }
            if ($rU == 5) { $var(j) = 1; } else { $var(j) = 2; }
            if (src_ip == 0.0.0.0 && src_ip == 0.0.0.0/8 && proto == udp) { $var(k) = 1; }
            if ($var(nonexistent)) { $var(l) = 1; } else { $var(l) = 2; }
            $var(m) = 3 * 4 + 1;
            $var(n) = \"ab\" + \"cd\";
            if (!(uri =~ \"xyz\")) { $var(o) = 1; }
            if ($hdr(X-Multi) =~ \"^O\") { $var(p) = 1; }
            if (uri == myself) { $var(q) = 1; } else { $var(q) = 2; }
         }",
        |c, _| {
            for (n, want) in [
                ("a", 1),
                ("b", 1),
                ("c", 2),
                ("d", 1),
                ("e", 1),
                ("f", 1),
                ("g", 1),
                ("h", 2),
                ("i", 1),
                ("j", 2),
                ("k", 1),
                ("l", 2),
                ("m", 13),
                ("o", 1),
                ("p", 1),
                ("q", 2),
            ] {
                assert_eq!(var(c, n), PvValue::Int(want), "$var({n})");
            }
            assert_eq!(var(c, "n"), PvValue::Str("abcd".into()));
        },
    );
}

#[test]
fn sflags_reset_per_top_level_route() {
    let s = script("route { if (issflagset(1)) { $var(sf) = \"was set\"; } setsflag(1); }");
    let mut m = msg();
    let mut ctx = Ctx::with_script(&mut m, REQUEST_ROUTE, s);
    super::run_route(RouteKind::Request, 0, &mut ctx);
    super::run_route(RouteKind::Request, 0, &mut ctx);
    assert_eq!(var(&mut ctx, "sf"), PvValue::Int(0));
}

fn fixup_err(src: &str, check: bool) -> String {
    let cfg = crate::cfg::parse_str("t.cfg", src).unwrap_or_else(|e| panic!("{e}"));
    match fixup_with(&cfg, &[], &[], check) {
        Ok(_) => String::new(),
        Err(e) => e.join("\n"),
    }
}

#[test]
fn fixup_errors() {
    assert!(
        fixup_err("route { nosuch(); }", false).contains("t.cfg:1:9: unknown function 'nosuch'")
    );
    assert!(
        fixup_err("route {\n  lookup(\"location\");\n}", false).contains(
            "t.cfg:2:3: function 'lookup' is exported by module 'registrar', which is not loaded"
        )
    );
    assert!(
        fixup_err("route { strip(); }", false)
            .contains("function 'strip' called with 0 arguments, it takes 1")
    );
    assert!(fixup_err("route { route(3); }", false).contains("route '3' is not defined"));
    assert!(
        fixup_err("route { if (uri =~ \"(\") { exit; } }", false)
            .contains("bad regular expression")
    );
    assert!(fixup_err("route { $var(x) = $nosuch; }", false).contains("unknown pseudo-variable"));
    assert!(fixup_err("route { $var(x) = $avp(foo); }", false).contains("unknown AVP alias 'foo'"));
    assert!(
        fixup_err("route { $var(x) = $(ru{s.nope}); }", false).contains("unknown transformation")
    );
    assert!(fixup_err("route { setflag(40); }", false).contains("out of range"));
    assert_eq!(fixup_err("route { forward(); }", false), "");
    assert!(
        fixup_err("route { exit; } onreply_route[1] { forward(); }", true)
            .contains("t.cfg:1:36: function 'forward' is not allowed in onreply_route")
    );
    assert_eq!(
        fixup_err("route { exit; } onreply_route[1] { forward(); }", false),
        ""
    );
    // reachability through route(N)
    assert!(
        fixup_err(
            "route { exit; } onreply_route { route(2); } route[2] { forward(); }",
            true
        )
        .contains("not allowed in onreply_route")
    );
}

#[test]
fn route_type_check_through_condition_route() {
    assert!(
        fixup_err(
            "route { exit; } onreply_route { if (route(2)) { exit; } } route[2] { forward(); }",
            true
        )
        .contains("not allowed in onreply_route")
    );
}

/// Fixup and a run over mutated corpus configs must never panic.
#[test]
fn fixup_and_run_never_panic_on_corpus() {
    const CORPUS: &[&str] = &[
        include_str!("../../../tests/data/cfg/fixup/good/core-actions.cfg"),
        include_str!("../../../tests/data/cfg/good/expressions.cfg"),
        include_str!("../../../tests/data/cfg/good/assignments.cfg"),
        include_str!("../../../tests/data/cfg/good/pvs.cfg"),
        include_str!("../../../tests/data/cfg/good/switch.cfg"),
        include_str!("../../../tests/data/cfg/good/statements.cfg"),
        include_str!("../../../tests/data/cfg/good/extensions.cfg"),
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const INTERESTING: &[u8] = b"\"$(){}[];:,.=~!0-9aZ_ ";
    for text in CORPUS {
        for round in 0..60 {
            let mut b = text.as_bytes().to_vec();
            if round > 0 {
                for _ in 0..(1 + next() % 3) {
                    let at = (next() as usize) % b.len().max(1);
                    let c = INTERESTING[(next() as usize) % INTERESTING.len()];
                    if at < b.len() {
                        b[at] = c;
                    }
                }
            }
            let s = String::from_utf8_lossy(&b);
            let Ok(cfg) = crate::cfg::parse_str("m.cfg", &s) else {
                continue;
            };
            let aliases = ["caller=s:caller;n=i:12".to_string()];
            if let Ok(sc) = fixup_with(&cfg, &[], &aliases, true) {
                // run without forwarding anywhere: only scripts without forward/send
                if s.contains("forward") || s.contains("send(") {
                    continue;
                }
                let sc: &'static Script = Box::leak(Box::new(sc));
                let mut m = msg();
                let mut ctx = Ctx::with_script(&mut m, REQUEST_ROUTE, sc);
                super::run_route(RouteKind::Request, 0, &mut ctx);
            }
        }
    }
}

mod testmod {
    use crate::module::{CmdExport, FixedArg, ModuleExports, PvExport};
    use crate::parser::{ParseError, ParseErrorKind};
    use crate::route::{ANY_ROUTE, REQUEST_ROUTE};
    use crate::script::{Ctx, PvValue};

    fn cmd_bad_parse(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
        ctx.msg.parse_error = Some(ParseError::new(ParseErrorKind::BadHeader, "test error", 0));
        1
    }
    fn cmd_ret(ctx: &mut Ctx, a: &[FixedArg]) -> i32 {
        ctx.arg_int(&a[0]).unwrap_or(1) as i32
    }
    fn cmd_echo(ctx: &mut Ctx, a: &[FixedArg]) -> i32 {
        let s = ctx.arg_str(&a[0]);
        crate::script::pv::var_set("echo", PvValue::Str(s));
        1
    }
    fn pv_answer(_: &mut Ctx, _: &crate::cfg::pv::PvSpec) -> PvValue {
        PvValue::Int(42)
    }
    pub static EXPORTS: ModuleExports = ModuleExports {
        name: "testmod",
        cmds: &[
            CmdExport::new("bad_parse", 0, 0, ANY_ROUTE, cmd_bad_parse),
            CmdExport::new("ret", 1, 1, ANY_ROUTE, cmd_ret),
            CmdExport::new("echo", 1, 1, REQUEST_ROUTE, cmd_echo),
        ],
        pvs: &[PvExport::new("T_answer", pv_answer)],
        ..ModuleExports::EMPTY
    };
}

fn mod_script(src: &str) -> &'static Script {
    let cfg = crate::cfg::parse_str("t.cfg", src).unwrap_or_else(|e| panic!("{e}"));
    let s = fixup_with(&cfg, &[&testmod::EXPORTS], &[], false)
        .unwrap_or_else(|e| panic!("{}", e.join("\n")));
    Box::leak(Box::new(s))
}

#[test]
fn module_functions_error_route_and_module_pvs() {
    let s = mod_script(
        "route { $var(er) = 0; bad_parse(); $var(after) = 1; echo(\"m=$rm $T_answer\");
                 if (ret(\"-3\")) { $var(neg) = 1; } else { $var(neg) = 2; }
                 if (ret(0)) { $var(never) = 1; } $var(never) = 2; }
         error_route { $var(er) = $err.info; }",
    );
    let mut m = msg();
    let mut ctx = Ctx::with_script(&mut m, REQUEST_ROUTE, s);
    super::run_route(RouteKind::Request, 0, &mut ctx);
    assert_eq!(var(&mut ctx, "er"), PvValue::Str("test error".into()));
    assert!(ctx.msg.parse_error.is_none(), "cleared after error_route");
    assert_eq!(var(&mut ctx, "after"), PvValue::Int(1));
    assert_eq!(var(&mut ctx, "echo"), PvValue::Str("m=INVITE 42".into()));
    assert_eq!(var(&mut ctx, "neg"), PvValue::Int(2));
    assert_ne!(var(&mut ctx, "never"), PvValue::Int(2));
    // error_route that exits stops the interrupted route
    let s = mod_script("route { $var(x2) = 0; bad_parse(); $var(x2) = 1; } error_route { exit; }");
    let mut m = msg();
    let mut ctx = Ctx::with_script(&mut m, REQUEST_ROUTE, s);
    super::run_route(RouteKind::Request, 0, &mut ctx);
    assert_eq!(var(&mut ctx, "x2"), PvValue::Int(0));
    // -C: echo only in request routes
    let cfg = crate::cfg::parse_str("t.cfg", "route { exit; } failure_route[1] { echo(\"x\"); }")
        .unwrap();
    let e = fixup_with(&cfg, &[&testmod::EXPORTS], &[], true)
        .err()
        .unwrap();
    assert!(
        e[0].contains("t.cfg:1:36: function 'echo' is not allowed in failure_route"),
        "{e:?}"
    );
    // arity against a module function
    let cfg = crate::cfg::parse_str("t.cfg", "route { ret(); }").unwrap();
    let e = fixup_with(&cfg, &[&testmod::EXPORTS], &[], false)
        .err()
        .unwrap();
    assert!(
        e[0].contains("function 'ret' called with 0 arguments, it takes 1"),
        "{e:?}"
    );
}

/// Every core PV and transformation over mutated messages: never panics.
#[test]
fn pvs_never_panic_on_mutated_messages() {
    // Every core PV the engine knows (its own table), so new PVs are covered too.
    let names = super::pv::CORE_PVS;
    let mut src = String::from("route {\n");
    for n in names.iter() {
        src.push_str(&format!(
            "$var(x) = ${n}; $var(y) = $({n}{{s.len}}); $var(z) = $({n}{{uri.user}}{{s.substr,1,2}});\n\
             $var(w) = $({n}{{param.value,tag}}{{s.select,0,;}}); if (${n} =~ \"a\") {{ $var(q) = 1; }}\n"
        ));
    }
    src.push_str(
        "$var(h) = $hdr(Via[-1]); $var(h) = $hdr(Via[*]); $var(h) = $(hdr(From){uri.host});\n\
         if (uri == myself || from_uri =~ \"x\" || to_uri == \"y\" || method == \"INVITE\") { $var(k) = 1; }\n\
         append_branch(); strip(2); prefix(\"9\"); $rU = \"u\"; $rd = \"h\"; rewritehostport(\"a:1\");\n}\n",
    );
    let s = script(&src);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const INTERESTING: &[u8] = b"<>;:@\"=,\r\n \t%\\0aZ\xff";
    let base = INVITE.as_bytes();
    let mut ran = 0;
    for _ in 0..2000 {
        let mut b = base.to_vec();
        for _ in 0..(1 + next() % 4) {
            let at = (next() as usize) % b.len();
            b[at] = INTERESTING[(next() as usize) % INTERESTING.len()];
        }
        let Ok(mut m) = SipMsg::new(&b, Default::default()) else {
            continue;
        };
        let mut ctx = Ctx::with_script(&mut m, REQUEST_ROUTE, s);
        super::run_route(RouteKind::Request, 0, &mut ctx);
        ran += 1;
    }
    assert!(ran > 100);
}

#[test]
fn route_index_during_and_after_fixup() {
    use crate::module::{CmdExport, FixedArg, ModuleExports};
    fn fix_route_arg(args: &[crate::cfg::ast::Arg]) -> Result<Vec<FixedArg>, String> {
        let name = crate::script::fixup::arg_text(&args[0].value);
        match super::route_index(RouteKind::Failure, &name) {
            Some(i) => Ok(vec![FixedArg::Int(i as i64)]),
            None => Err(format!("failure_route '{name}' is not defined")),
        }
    }
    fn cmd_idx(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
        let i = super::route_index(RouteKind::Failure, "NAMED").map_or(-1, |i| i as i64);
        crate::script::pv::var_set("fidx", PvValue::Int(i));
        let _ = ctx;
        1
    }
    static M: ModuleExports = ModuleExports {
        name: "arm",
        cmds: &[CmdExport::new("arm", 1, 1, crate::route::ANY_ROUTE, cmd_idx).fixup(fix_route_arg)],
        ..ModuleExports::EMPTY
    };
    let src = "route { arm(\"2\"); arm(\"NAMED\"); } failure_route[2] { exit; } failure_route[NAMED] { exit; }";
    let cfg = crate::cfg::parse_str("t.cfg", src).unwrap();
    let s: &'static Script = Box::leak(Box::new(fixup_with(&cfg, &[&M], &[], false).unwrap()));
    let mut m = msg();
    let mut ctx = Ctx::with_script(&mut m, REQUEST_ROUTE, s);
    super::run_route(RouteKind::Request, 0, &mut ctx);
    assert_eq!(var(&mut ctx, "fidx"), PvValue::Int(3));
    let cfg = crate::cfg::parse_str("t.cfg", "route { arm(\"5\"); }").unwrap();
    let e = fixup_with(&cfg, &[&M], &[], false).err().unwrap();
    assert!(e[0].contains("failure_route '5' is not defined"), "{e:?}");
}

/// The run-time fixups app_lua uses: a core action through `dyn_call` with its route
/// check, PVs by text through `dyn_pv`/`dyn_lhs`, errors as the configuration's.
#[test]
fn dyn_call_and_dyn_pv() {
    use super::fixup::{dyn_call, dyn_lhs, dyn_pv};
    use super::interp::run_dyn_call;
    use crate::cfg::ast::{Arg, ArgValue, Span};
    let arg = |v: ArgValue| Arg {
        value: v,
        span: Span::default(),
    };
    let mut m = msg();
    let mut ctx = Ctx::new(&mut m, REQUEST_ROUTE);
    let set = dyn_call("setflag", vec![arg(ArgValue::Int(3))]).unwrap();
    assert_eq!(run_dyn_call(&mut ctx, &set), Ok(1));
    let is = dyn_call("isflagset", vec![arg(ArgValue::Str("3".into()))]).unwrap();
    assert_eq!(run_dyn_call(&mut ctx, &is), Ok(1));
    let e = dyn_call("setflag", vec![]).err().unwrap();
    assert!(e.contains("called with 0 arguments"), "{e}");
    let e = dyn_call("no_such_function", vec![]).err().unwrap();
    assert!(e.contains("unknown function"), "{e}");
    // A function refused in the route type the context runs in.
    let drop_rpl = dyn_call("setflag", vec![arg(ArgValue::Int(1))]).unwrap();
    let limited = super::interp::CallOp {
        routes: crate::route::FAILURE_ROUTE,
        ..drop_rpl
    };
    let e = run_dyn_call(&mut ctx, &limited).unwrap_err();
    assert!(e.contains("not allowed in request_route"), "{e}");

    let spec = dyn_pv("$var(lua)").unwrap();
    let lhs = dyn_lhs(&spec).unwrap();
    assert_eq!(super::pv::assign(&mut ctx, &lhs, PvValue::Int(5)), 1);
    assert_eq!(var(&mut ctx, "lua"), PvValue::Int(5));
    let ru = dyn_pv("$rU").unwrap();
    assert_eq!(ctx.get_pv(&ru), PvValue::Str("bob".into()));
    assert!(dyn_lhs(&dyn_pv("$fu").unwrap()).is_err());
    assert!(dyn_pv("$nope_pv").is_err());
    assert!(dyn_pv("$var(a) trailing").is_err());
}

#[test]
fn action_trace_points() {
    use crate::module::ModuleExports;
    use std::cell::RefCell;
    thread_local! {
        static SEEN: RefCell<Vec<(u32, u32, &'static str)>> = const { RefCell::new(Vec::new()) };
    }
    fn hook(_ctx: &mut Ctx, t: &super::interp::TracePoint) {
        SEEN.with(|s| s.borrow_mut().push((t.line, t.col, t.action)));
    }
    static M: ModuleExports = ModuleExports {
        name: "tracer",
        action_trace: Some(hook),
        ..ModuleExports::EMPTY
    };
    let src = "route {\n  $var(a) = 1;\n  if ($var(a) == 1) {\n    $var(b) = 2;\n  } else {\n    $var(b) = 3;\n  }\n  { return(4); }\n}";
    let run_with = |mods: &[&'static ModuleExports]| {
        let cfg = crate::cfg::parse_str("t.cfg", src).unwrap();
        let s: &'static Script = Box::leak(Box::new(fixup_with(&cfg, mods, &[], false).unwrap()));
        let mut m = msg();
        let mut ctx = Ctx::with_script(&mut m, REQUEST_ROUTE, s);
        let rc = super::run_route(RouteKind::Request, 0, &mut ctx);
        (rc, var(&mut ctx, "b"))
    };
    // without a hook: no trace points, same result
    assert_eq!(run_with(&[]), (4, PvValue::Int(2)));
    assert!(SEEN.with(|s| s.borrow().is_empty()));
    // with one: every executed action, in order, the branch not taken left out
    assert_eq!(run_with(&[&M]), (4, PvValue::Int(2)));
    let seen = SEEN.with(|s| s.borrow().clone());
    let lines: Vec<(u32, &str)> = seen.iter().map(|(l, _, a)| (*l, *a)).collect();
    assert_eq!(
        lines,
        vec![(2, "assign"), (3, "if"), (4, "assign"), (8, "return")]
    );
    assert_eq!(seen[0].1, 3);
}
