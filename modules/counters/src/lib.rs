//! counters (SIP Router 3.1 / Kamailio `modules/counters`; not in OpenSER 1.2):
//! counters declared by the script writer and changed from the script.
//!
//! A counter is `group.name`. `modparam("counters", "script_counter", "[group.]name[
//! description]")` (repeatable; the description may also follow a `:`) declares one;
//! without a group it joins `script_cnt_grp_name` ("script"). The counters are the
//! server's shm statistics (`core::stats`, atomics in shared memory), so they are
//! read like every other statistic: MI `get_statistics group:name` or `group:`,
//! xhttp's metrics endpoint (`openser_group_name_total`), and the counters MI
//! commands below.
//!
//! Functions (every route; 1 on success, −1 when the counter is unknown at run time):
//! * `cnt_inc(name)` / `cnt.inc(name)` — add 1;
//! * `cnt_add(name, n)` / `cnt.add(name, n)` — add `n` (a number or a PV; negative
//!   subtracts);
//! * `cnt_reset(name)` / `cnt.reset(name)` — set to 0.
//!
//! `name` is `name` (the script group) or `group.name` (any registered statistic,
//! e.g. `tm.received_replies`; resolved at the first use in each process). A name
//! of the script group must be declared: an undeclared one is a start-up error at its
//! `file:line:col`. Kamailio's dotted spellings are accepted because the config
//! parser joins words glued by `.` into one function name.
//!
//! Deviation from Kamailio: a counter never goes below zero (the statistics are
//! unsigned; Kamailio's counters are signed sums of per-process values).
//!
//! MI (Kamailio's RPC names): `cnt.get group name`, `cnt.reset group name`,
//! `cnt.grps_list`, `cnt.var_list group`, `cnt.grp_get_all group`.

use std::cell::RefCell;
use std::collections::HashMap;

use openser_core::cfg::ast::{Arg, ArgValue};
use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::module::{
    CmdExport, FixedArg, MiExport, ModParamValue, ModuleExports, Param, StrParam,
};
use openser_core::route::ANY_ROUTE;
use openser_core::script::Ctx;
use openser_core::state::Registry;
use openser_core::stats::{self, Stat};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "counters",
    params: &[
        Param::func("script_counter", add_script_counter),
        Param::str_with("script_cnt_grp_name", &GROUP, check_group),
    ],
    cmds: &[
        CmdExport::new("cnt_inc", 1, 1, ANY_ROUTE, cmd_inc).fixup(fixup_name),
        CmdExport::new("cnt.inc", 1, 1, ANY_ROUTE, cmd_inc).fixup(fixup_name),
        CmdExport::new("cnt_add", 2, 2, ANY_ROUTE, cmd_add).fixup(fixup_add),
        CmdExport::new("cnt.add", 2, 2, ANY_ROUTE, cmd_add).fixup(fixup_add),
        CmdExport::new("cnt_reset", 1, 1, ANY_ROUTE, cmd_reset).fixup(fixup_name),
        CmdExport::new("cnt.reset", 1, 1, ANY_ROUTE, cmd_reset).fixup(fixup_name),
    ],
    mi: &[
        MiExport::new("cnt.get", mi_get),
        MiExport::new("cnt.reset", mi_reset),
        MiExport::new("cnt.grps_list", mi_grps_list).no_input(),
        MiExport::new("cnt.var_list", mi_var_list),
        MiExport::new("cnt.grp_get_all", mi_grp_get_all),
    ],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

/// The group of counters declared without one (Kamailio's default).
pub static GROUP: StrParam = StrParam::new("script");

/// A declared counter: group (None = `script_cnt_grp_name`), name, description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub group: Option<String>,
    pub name: String,
    pub desc: String,
}

static DECLARED: Registry<Declared> = Registry::new();

thread_local! {
    /// Resolved counters by `group:name`, per process.
    static CACHE: RefCell<HashMap<String, Option<Stat>>> = RefCell::new(HashMap::new());
}

fn valid_word(w: &str) -> bool {
    !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_group(g: &str) -> Result<(), String> {
    if valid_word(g) {
        Ok(())
    } else {
        Err(format!("bad counter group '{g}'"))
    }
}

/// `[group.]name` into (group, name).
pub fn split_name(s: &str) -> Result<(Option<String>, String), String> {
    let s = s.trim();
    let (g, n) = match s.split_once('.') {
        Some((g, n)) => (Some(g), n),
        None => (None, s),
    };
    if let Some(g) = g
        && !valid_word(g)
    {
        return Err(format!("bad counter group in '{s}'"));
    }
    if !valid_word(n) {
        return Err(format!("bad counter name '{s}'"));
    }
    Ok((g.map(str::to_string), n.to_string()))
}

/// A `script_counter` value: `[group.]name[( |:)description]`.
pub fn parse_declaration(v: &str) -> Result<Declared, String> {
    let v = v.trim();
    let (head, desc) = match v.find([' ', '\t', ':']) {
        Some(i) => (&v[..i], v[i + 1..].trim()),
        None => (v, ""),
    };
    let (group, name) = split_name(head)?;
    Ok(Declared {
        group,
        name,
        desc: desc.to_string(),
    })
}

fn add_script_counter(v: &ModParamValue) -> Result<(), String> {
    let ModParamValue::Str(s) = v else {
        return Err("a string expected".into());
    };
    let d = parse_declaration(s)?;
    let mut all = DECLARED.lock();
    if all.iter().any(|x| x.group == d.group && x.name == d.name) {
        return Err(format!("counter '{}' declared twice", d.name));
    }
    all.push(d);
    Ok(())
}

/// Every declared counter as (group, name, description), groups resolved.
pub fn declared() -> Vec<(String, String, String)> {
    DECLARED
        .lock()
        .iter()
        .map(|d| {
            (
                d.group.clone().unwrap_or_else(|| GROUP.get().to_string()),
                d.name.clone(),
                d.desc.clone(),
            )
        })
        .collect()
}

fn mod_init() -> Result<(), String> {
    for (g, n, _) in declared() {
        stats::register(&g, &n, 0);
    }
    Ok(())
}

/// A counter argument: its `group:name` (the statistics registry's form). Names of
/// the script group must be declared.
fn counter_arg(a: &Arg) -> Result<FixedArg, String> {
    let text = match &a.value {
        ArgValue::Str(s) | ArgValue::Ident(s) => s.clone(),
        _ => return Err("a counter name expected".into()),
    };
    let (group, name) = split_name(&text)?;
    let group = group.unwrap_or_else(|| GROUP.get().to_string());
    if group == GROUP.get() && !declared().iter().any(|(g, n, _)| *g == group && *n == name) {
        return Err(format!(
            "counter '{group}.{name}' is not declared (modparam(\"counters\", \"script_counter\", \"{name}\"))"
        ));
    }
    Ok(FixedArg::Str(format!("{group}:{name}")))
}

fn fixup_name(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    Ok(vec![counter_arg(&args[0])?])
}

fn fixup_add(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let n = match &args[1].value {
        ArgValue::Pv(p) => FixedArg::Pv(p.clone()),
        ArgValue::Str(s) if s.contains('$') => {
            openser_core::script::fixup::default_fixup(&args[1..2])?.remove(0)
        }
        _ => FixedArg::Int(openser_core::script::fixup::int_arg(
            &args[1],
            "counter increment",
        )?),
    };
    Ok(vec![counter_arg(&args[0])?, n])
}

fn counter(full: &str) -> Option<Stat> {
    CACHE.with(|c| {
        *c.borrow_mut()
            .entry(full.to_string())
            .or_insert_with(|| stats::find(full))
    })
}

fn with_counter(args: &[FixedArg], f: impl FnOnce(Stat)) -> i32 {
    let Some(FixedArg::Str(full)) = args.first() else {
        return -1;
    };
    match counter(full) {
        Some(s) => {
            f(s);
            1
        }
        None => {
            openser_core::log_err!("no counter '{}'", full.replacen(':', ".", 1));
            -1
        }
    }
}

fn cmd_inc(_: &mut Ctx, args: &[FixedArg]) -> i32 {
    with_counter(args, |s| s.inc())
}

fn cmd_add(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(n) = args.get(1).and_then(|a| ctx.arg_int(a)) else {
        openser_core::log_err!("the increment is not a number");
        return -1;
    };
    with_counter(args, |s| s.update(n))
}

fn cmd_reset(_: &mut Ctx, args: &[FixedArg]) -> i32 {
    with_counter(args, |s| s.set(0))
}

// ---------------------------------------------------------------------------
// MI

fn group_of(args: &[MiArg]) -> Result<&str, MiReply> {
    match args.first() {
        Some(a) if !a.value.trim().is_empty() => Ok(a.value.trim()),
        _ => Err(MiReply::err(400, "Too few or too many arguments")),
    }
}

fn group_and_name(args: &[MiArg]) -> Result<String, MiReply> {
    if args.len() != 2 {
        return Err(MiReply::err(400, "Too few or too many arguments"));
    }
    Ok(format!("{}:{}", args[0].value.trim(), args[1].value.trim()))
}

fn mi_get(args: &[MiArg]) -> MiReply {
    let full = match group_and_name(args) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match stats::get(&full) {
        Some(v) => MiReply::ok(vec![MiNode::value(v.to_string())]),
        None => MiReply::err(404, "Counter not found"),
    }
}

fn mi_reset(args: &[MiArg]) -> MiReply {
    let full = match group_and_name(args) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match stats::find(&full) {
        Some(s) => {
            s.set(0);
            MiReply::ok(vec![])
        }
        None => MiReply::err(404, "Counter not found"),
    }
}

fn mi_grps_list(_: &[MiArg]) -> MiReply {
    let mut groups: Vec<String> = Vec::new();
    for s in stats::all() {
        if !groups.contains(&s.group) {
            groups.push(s.group);
        }
    }
    MiReply::ok(groups.into_iter().map(MiNode::value).collect())
}

fn in_group(group: &str) -> Vec<stats::StatInfo> {
    stats::all()
        .into_iter()
        .filter(|s| s.group.eq_ignore_ascii_case(group))
        .collect()
}

fn mi_var_list(args: &[MiArg]) -> MiReply {
    let g = match group_of(args) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let v = in_group(g);
    if v.is_empty() {
        return MiReply::err(404, "Group not found");
    }
    MiReply::ok(v.into_iter().map(|s| MiNode::value(s.name)).collect())
}

fn mi_grp_get_all(args: &[MiArg]) -> MiReply {
    let g = match group_of(args) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let v = in_group(g);
    if v.is_empty() {
        return MiReply::err(404, "Group not found");
    }
    MiReply::ok(
        v.into_iter()
            .map(|s| MiNode::new(&s.name, s.value.to_string()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations() {
        assert_eq!(
            parse_declaration("calls"),
            Ok(Declared {
                group: None,
                name: "calls".into(),
                desc: String::new()
            })
        );
        let d = parse_declaration("sip.fails Failed requests").unwrap();
        assert_eq!(
            (d.group.as_deref(), d.name.as_str(), d.desc.as_str()),
            (Some("sip"), "fails", "Failed requests")
        );
        let d = parse_declaration("x:desc here").unwrap();
        assert_eq!((d.name.as_str(), d.desc.as_str()), ("x", "desc here"));
        assert!(parse_declaration("").is_err());
        assert!(parse_declaration("a.b.c").is_err());
        assert!(parse_declaration(".x").is_err());
    }

    #[test]
    fn inc_add_reset() {
        let s = stats::register("ut_cnt", "hits", 0);
        let mut m = openser_core::parser::SipMsg::parse(
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        let mut ctx = Ctx::new(&mut m, openser_core::route::REQUEST_ROUTE);
        let name = FixedArg::Str("ut_cnt:hits".into());
        assert_eq!(cmd_inc(&mut ctx, std::slice::from_ref(&name)), 1);
        assert_eq!(cmd_add(&mut ctx, &[name.clone(), FixedArg::Int(41)]), 1);
        assert_eq!(s.get(), 42);
        assert_eq!(cmd_add(&mut ctx, &[name.clone(), FixedArg::Int(-2)]), 1);
        assert_eq!(s.get(), 40);
        assert_eq!(
            mi_get(&[
                MiArg {
                    name: None,
                    value: "ut_cnt".into()
                },
                MiArg {
                    name: None,
                    value: "hits".into()
                }
            ])
            .nodes[0]
                .value,
            "40"
        );
        assert_eq!(cmd_reset(&mut ctx, std::slice::from_ref(&name)), 1);
        assert_eq!(s.get(), 0);
        assert_eq!(
            cmd_inc(&mut ctx, &[FixedArg::Str("ut_cnt:none".into())]),
            -1
        );
    }
}
