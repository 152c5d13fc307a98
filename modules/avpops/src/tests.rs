//! The script functions through a real `Ctx` (fixup included).

use super::*;
use openser_core::cfg::ast::{Arg, ArgValue};
use openser_core::parser::SipMsg;

const REQ: &str = "INVITE sip:bob@b.example.com SIP/2.0\r\n\
    Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
    From: <sip:alice@a.example.com>;tag=1\r\nTo: <sip:bob@b.example.com>\r\n\
    Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

fn msg() -> SipMsg {
    SipMsg::parse(REQ.as_bytes()).expect("test message parses")
}

fn arg(s: &str) -> Arg {
    Arg {
        value: ArgValue::Str(s.into()),
        span: Default::default(),
    }
}

fn args(a: &[&str]) -> Vec<Arg> {
    a.iter().map(|s| arg(s)).collect()
}

fn s(v: &str) -> PvValue {
    PvValue::Str(v.into())
}

fn sid(n: &str) -> AvpId {
    AvpId::Str(n.into())
}

fn run(ctx: &mut Ctx, f: CmdFn, fx: FixupFn, a: &[&str]) -> i32 {
    let fixed = fx(&args(a)).unwrap_or_else(|e| panic!("fixup of {a:?}: {e}"));
    f(ctx, &fixed)
}

type CmdFn = fn(&mut Ctx, &[FixedArg]) -> i32;
type FixupFn = fn(&[Arg]) -> Result<Vec<FixedArg>, String>;

#[test]
fn check_through_the_script() {
    let mut m = msg();
    let mut ctx = Ctx::new(&mut m, REQUEST_ROUTE);
    ctx.avps.add(sid("n"), PvValue::Int(100));
    ctx.avps.add(sid("n"), PvValue::Int(400));
    ctx.avps.add(sid("u"), s("sip:alice@bar.net"));
    // newest only without g, any with g
    assert_eq!(
        run(&mut ctx, cmd_check, fix_check, &["$avp(s:n)", "lt/i:345"]),
        -1
    );
    assert_eq!(
        run(&mut ctx, cmd_check, fix_check, &["$avp(s:n)", "lt/i:345/g"]),
        1
    );
    assert_eq!(
        run(&mut ctx, cmd_check, fix_check, &["$avp(s:n)", "eq/i:0x190"]),
        1
    );
    assert_eq!(
        run(
            &mut ctx,
            cmd_check,
            fix_check,
            &["$avp(s:u)", "re/sip:.*@BAR.net/g"]
        ),
        1
    );
    assert_eq!(
        run(
            &mut ctx,
            cmd_check,
            fix_check,
            &["$avp(s:u)", "fm/sip:*@bar.*"]
        ),
        1
    );
    // a PV on either side
    assert_eq!(
        run(&mut ctx, cmd_check, fix_check, &["$fd", "eq/a.example.com"]),
        1
    );
    assert_eq!(run(&mut ctx, cmd_check, fix_check, &["$fd", "eq/$td"]), -1);
    assert_eq!(run(&mut ctx, cmd_check, fix_check, &["$fd", "ne/$td"]), 1);
    // the operand AVP: any of its values
    ctx.avps.add(sid("lim"), PvValue::Int(400));
    ctx.avps.add(sid("lim"), PvValue::Int(7));
    assert_eq!(
        run(
            &mut ctx,
            cmd_check,
            fix_check,
            &["$avp(s:n)", "eq/$avp(s:lim)"]
        ),
        1
    );
    // a missing AVP is false
    assert_eq!(
        run(&mut ctx, cmd_check, fix_check, &["$avp(s:none)", "eq/i:1"]),
        -1
    );
}

#[test]
fn bad_regexes() {
    // constant: refused at start-up
    let e = fix_check(&args(&["$avp(s:u)", "re/sip:(.*/g"])).unwrap_err();
    assert!(e.contains("bad regular expression"), "{e}");
    assert!(fix_subst(&args(&["$avp(s:u)", "/a[/b/"])).is_err());
    // dynamic: -1 at run time, nothing crashes
    let mut m = msg();
    let mut ctx = Ctx::new(&mut m, REQUEST_ROUTE);
    ctx.avps.add(sid("u"), s("abc"));
    ctx.avps.add(sid("re"), s("a(b"));
    assert_eq!(
        run(
            &mut ctx,
            cmd_check,
            fix_check,
            &["$avp(s:u)", "re/$avp(s:re)"]
        ),
        -1
    );
    ctx.avps.add(sid("re"), s("^a.c$"));
    assert_eq!(
        run(
            &mut ctx,
            cmd_check,
            fix_check,
            &["$avp(s:u)", "re/$avp(s:re)"]
        ),
        1
    );
}

#[test]
fn subst_op_copy_printf() {
    let mut m = msg();
    let mut ctx = Ctx::new(&mut m, REQUEST_ROUTE);
    ctx.avps.add(sid("e"), s("alice@old.net"));
    ctx.avps.add(sid("e"), s("bob@old.net"));
    // replace the newest in place
    assert_eq!(
        run(
            &mut ctx,
            cmd_subst,
            fix_subst,
            &["$avp(s:e)", "/(.*)@(.*)/\\1@$rd/"]
        ),
        1
    );
    assert_eq!(
        ctx.avps.get_all(&sid("e")),
        [&s("bob@b.example.com"), &s("alice@old.net")]
    );
    // every value into another AVP, the source kept
    assert_eq!(
        run(
            &mut ctx,
            cmd_subst,
            fix_subst,
            &["$avp(s:e)/$avp(s:d)/g", "/@.*$//"]
        ),
        1
    );
    assert_eq!(ctx.avps.get_all(&sid("d")), [&s("alice"), &s("bob")]);
    assert_eq!(ctx.avps.get_all(&sid("e")).len(), 2);
    // d: the source goes
    assert_eq!(
        run(
            &mut ctx,
            cmd_subst,
            fix_subst,
            &["$avp(s:e)/$avp(s:f)/gd", "/o/0/g"]
        ),
        1
    );
    assert!(ctx.avps.get(&sid("e")).is_none());
    assert_eq!(
        run(&mut ctx, cmd_subst, fix_subst, &["$avp(s:f)", "/zzz/y/"]),
        -1
    );

    ctx.avps.add(sid("n"), PvValue::Int(10));
    assert_eq!(
        run(&mut ctx, cmd_op, fix_op, &["$avp(s:n)", "add/i:5/d"]),
        1
    );
    assert_eq!(ctx.avps.get_all(&sid("n")), [&PvValue::Int(15)]);
    ctx.avps.add(sid("k"), PvValue::Int(3));
    assert_eq!(
        run(
            &mut ctx,
            cmd_op,
            fix_op,
            &["$avp(s:n)/$avp(s:m)", "mul/$avp(s:k)"]
        ),
        1
    );
    assert_eq!(ctx.avps.get(&sid("m")), Some(&PvValue::Int(45)));
    assert_eq!(run(&mut ctx, cmd_op, fix_op, &["$avp(s:f)", "add/i:1"]), -1);
    assert!(fix_op(&args(&["$avp(s:n)", "add/s:x"])).is_err());

    assert_eq!(
        run(&mut ctx, cmd_copy, fix_copy, &["$avp(s:n)", "$avp(s:c)/s"]),
        1
    );
    assert_eq!(ctx.avps.get(&sid("c")), Some(&s("15")));
    assert_eq!(
        run(
            &mut ctx,
            cmd_copy,
            fix_copy,
            &["$avp(s:c)", "$avp(s:c2)/nd"]
        ),
        1
    );
    assert_eq!(ctx.avps.get(&sid("c2")), Some(&PvValue::Int(15)));
    assert!(ctx.avps.get(&sid("c")).is_none());

    assert_eq!(
        run(
            &mut ctx,
            cmd_printf,
            fix_printf,
            &["$avp(i:20)", "$rm to $rU"]
        ),
        1
    );
    assert_eq!(ctx.avps.get(&AvpId::Int(20)), Some(&s("INVITE to bob")));
}

#[test]
fn pushto_delete_is_set() {
    let mut m = msg();
    let mut ctx = Ctx::new(&mut m, REQUEST_ROUTE);
    ctx.avps.add(sid("h"), s("c.example.com"));
    ctx.avps.add(sid("h"), s("d.example.com"));
    assert_eq!(
        run(
            &mut ctx,
            cmd_pushto,
            fix_pushto,
            &["$ru/domain", "$avp(s:h)/g"]
        ),
        1
    );
    assert_eq!(ctx.msg.ruri(), "sip:bob@c.example.com");
    assert_eq!(ctx.branches.len(), 1);
    assert_eq!(ctx.branches[0].uri, "sip:bob@d.example.com");
    assert_eq!(
        run(&mut ctx, cmd_pushto, fix_pushto, &["$ru/username", "$fU"]),
        1
    );
    assert_eq!(ctx.msg.ruri(), "sip:alice@c.example.com");
    ctx.avps.add(sid("gw"), s("sip:10.0.0.9:5060"));
    assert_eq!(
        run(&mut ctx, cmd_pushto, fix_pushto, &["$du", "$avp(s:gw)"]),
        1
    );
    assert_eq!(ctx.msg.dst_uri.as_deref(), Some("sip:10.0.0.9:5060"));
    assert_eq!(
        run(&mut ctx, cmd_pushto, fix_pushto, &["$br", "$avp(s:gw)"]),
        1
    );
    assert_eq!(ctx.branches.len(), 2);
    assert!(fix_pushto(&args(&["$fu", "$avp(s:gw)"])).is_err());

    ctx.avps.add(sid("z"), s(""));
    ctx.avps.add(AvpId::Int(3), PvValue::Int(0));
    assert_eq!(
        run(&mut ctx, cmd_is_avp_set, fix_is_avp_set, &["$avp(s:z)"]),
        1
    );
    assert_eq!(
        run(&mut ctx, cmd_is_avp_set, fix_is_avp_set, &["$avp(s:z)/e"]),
        1
    );
    assert_eq!(
        run(&mut ctx, cmd_is_avp_set, fix_is_avp_set, &["$avp(s:z)/n"]),
        -1
    );
    assert_eq!(
        run(&mut ctx, cmd_is_avp_set, fix_is_avp_set, &["$avp(i:3)/ne"]),
        1
    );
    assert_eq!(
        run(&mut ctx, cmd_is_avp_set, fix_is_avp_set, &["$avp(s:h)/e"]),
        -1
    );
    assert_eq!(
        run(&mut ctx, cmd_is_avp_set, fix_is_avp_set, &["$avp(s:none)"]),
        -1
    );

    assert_eq!(run(&mut ctx, cmd_delete, fix_delete, &["$avp(s:h)"]), 1);
    assert_eq!(ctx.avps.get_all(&sid("h")).len(), 1);
    assert_eq!(run(&mut ctx, cmd_delete, fix_delete, &["i"]), 1);
    assert!(ctx.avps.get(&AvpId::Int(3)).is_none());
    assert!(ctx.avps.get(&sid("z")).is_some());
    assert_eq!(run(&mut ctx, cmd_delete, fix_delete, &["a"]), 1);
    assert!(ctx.avps.is_empty());
    assert_eq!(cmd_print(&mut ctx, &[]), 1);
}

#[test]
fn db_functions_need_a_url() {
    let e = fix_db_load(&args(&["$fu", "a"])).unwrap_err();
    assert!(e.contains("db_url"), "{e}");
}

#[test]
fn exports_table() {
    for p in [
        "db_url",
        "avp_url",
        "avp_table",
        "use_domain",
        "uuid_column",
        "username_column",
        "domain_column",
        "attribute_column",
        "value_column",
        "type_column",
        "db_scheme",
    ] {
        assert!(EXPORTS.param(p).is_some(), "{p}");
    }
    assert_eq!(EXPORTS.cmds.len(), 13);
}
