//! avpops (OpenSER 1.2 `modules/avpops`): operations on AVPs from the script, and user
//! preferences kept as AVPs in the database.
//!
//! Functions (all in REQUEST, FAILURE, BRANCH and ONREPLY routes; 1 = true/done,
//! -1 = false/nothing done/error):
//!
//! * `avp_db_load(source, name)`, `avp_db_store(source, name)`,
//!   `avp_db_delete(source, name)` — `source` is `(pvar|string)['/'(username|domain|
//!   uri|uuid)]` (`$ru`, `$fu`, `$tu`, `$ou` default to `uri`, anything else to
//!   `uuid`); `name` is `($avp(name)|a|i|s[flags])['/'(table|'$'scheme)]` (a scheme for
//!   `avp_db_load` only). Load: 1 if some AVP was loaded. Store: 1 if a row was
//!   written. Delete: 1 unless the database failed.
//! * `avp_db_query(query[, dest])` — a raw SQL statement with PVs; the columns of
//!   each row go to the AVPs of `dest` (`$avp(a);$avp(b);…`, by default `i:1`, `i:2`,
//!   …), the first row newest. 1 unless the query failed.
//! * `avp_delete(name)` — `$avp(name)[/g]` (the newest value, every value with `g`)
//!   or `a`/`i`/`s` (every AVP, or those with integer/string names).
//! * `avp_pushto(dest, name)` — `dest` `$ru[/username|/domain]`, `$du` or `$br`;
//!   `name` an AVP (with `/g` every value: the first rewrites the R-URI, each further
//!   one first appends the current R-URI as a branch) or another PV.
//! * `avp_check(pv, op/value[/flags])` — operators `eq ne lt le gt ge re fm and or xor`,
//!   value `i:N` (also `0x` hex), `s:text`, text or a PV; flags `g` (any value of the
//!   AVP) and `i` (case-insensitive `eq`/`ne`; `lt`..`ge` compare case-insensitively and
//!   `re` ignores case, as in 1.2). A constant regular expression is compiled at
//!   start-up (a bad one stops the server with its `file:line:col`); one taken from a
//!   PV is compiled when used, and a bad one is logged and gives -1.
//! * `avp_copy(src, dst[/flags])` — flags `g` every value, `d` delete the source, `n`
//!   as integer, `s` as string.
//! * `avp_printf(dest, format)` — a format string with PVs into a new AVP.
//! * `avp_subst(src[/dst][/flags], /re/repl/flags)` — sed-like substitution on the
//!   string values of `src` (`\0`..`\9`, PVs in `repl`; flags `g` and `i`); the result
//!   replaces the source, or goes to `dst`; `d` deletes the source, `g` every value.
//! * `avp_op(src[/dst], op/value[/flags])` — `add sub mul div mod and or xor not` on
//!   integer values; flags `g`, `d`.
//! * `is_avp_set(name[/flags])` — flags `e` (empty value), `s` (string), `n` (number).
//! * `avp_print()` — every AVP to the log (INFO).
//!
//! Parameters (1.2 defaults): `db_url`/`avp_url` (none: the database functions are
//! refused at start-up), `avp_table` (none; required with a database), `use_domain`
//! 0, `uuid_column` "uuid", `username_column` "username", `domain_column` "domain",
//! `attribute_column` "attribute", `value_column` "value", `type_column` "type",
//! `db_scheme` (repeatable: `name:uuid_col=…;username_col=…;domain_col=…;value_col=…;
//! value_type=integer|string;table=…`).
//!
//! Not carried over: 1.2's AVP script flags (`$avp(i3:123)`): AVPs here have no flags,
//! the digits are accepted and ignored.

pub mod db;
pub mod ops;
pub mod parse;

use std::cell::RefCell;
use std::sync::Arc;

use openser_core::cfg::ast::Arg;
use openser_core::cfg::pv::{AvpName, PvIndex, PvSpec};
use openser_core::module::{
    BoolParam, CmdExport, FixedArg, ModParamValue, ModuleExports, Param, StrParam,
};
use openser_core::parser::Uri;
use openser_core::route::{BRANCH_ROUTE, FAILURE_ROUTE, ONREPLY_ROUTE, REQUEST_ROUTE};
use openser_core::script::fixup::string_arg;
use openser_core::script::pv::avp_id;
use openser_core::script::{AvpId, Branch, Ctx, PvValue, Q_UNSPECIFIED};

use parse::{
    Arith, AvpRef, Check, CheckOp, DbParam, DbSource, Operand, PushDest, Scheme, SrcDst, SrcVal,
    Subst,
};

const R: u32 = REQUEST_ROUTE | FAILURE_ROUTE | BRANCH_ROUTE | ONREPLY_ROUTE;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "avpops",
    params: &[
        Param::str("db_url", &P.db_url),
        Param::str("avp_url", &P.db_url),
        Param::str("avp_table", &P.avp_table),
        Param::bool("use_domain", &P.use_domain),
        Param::str("uuid_column", &P.uuid_column),
        Param::str("username_column", &P.username_column),
        Param::str("domain_column", &P.domain_column),
        Param::str("attribute_column", &P.attribute_column),
        Param::str("value_column", &P.value_column),
        Param::str("type_column", &P.type_column),
        Param::func("db_scheme", set_db_scheme),
    ],
    cmds: &[
        CmdExport::new("avp_print", 0, 0, R, cmd_print),
        CmdExport::new("avp_db_load", 2, 2, R, cmd_db_load).fixup(fix_db_load),
        CmdExport::new("avp_db_delete", 2, 2, R, cmd_db_delete).fixup(fix_db_other),
        CmdExport::new("avp_db_store", 2, 2, R, cmd_db_store).fixup(fix_db_other),
        CmdExport::new("avp_db_query", 1, 2, R, cmd_db_query).fixup(fix_db_query),
        CmdExport::new("avp_delete", 1, 1, R, cmd_delete).fixup(fix_delete),
        CmdExport::new("avp_copy", 2, 2, R, cmd_copy).fixup(fix_copy),
        CmdExport::new("avp_printf", 2, 2, R, cmd_printf).fixup(fix_printf),
        CmdExport::new("avp_pushto", 2, 2, R, cmd_pushto).fixup(fix_pushto),
        CmdExport::new("avp_check", 2, 2, R, cmd_check).fixup(fix_check),
        CmdExport::new("avp_op", 2, 2, R, cmd_op).fixup(fix_op),
        CmdExport::new("avp_subst", 2, 2, R, cmd_subst).fixup(fix_subst),
        CmdExport::new("is_avp_set", 1, 1, R, cmd_is_avp_set).fixup(fix_is_avp_set),
    ],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells, with 1.2's defaults.
pub struct Params {
    pub db_url: StrParam,
    pub avp_table: StrParam,
    pub use_domain: BoolParam,
    pub uuid_column: StrParam,
    pub username_column: StrParam,
    pub domain_column: StrParam,
    pub attribute_column: StrParam,
    pub value_column: StrParam,
    pub type_column: StrParam,
}

pub static P: Params = Params {
    db_url: StrParam::new(""),
    avp_table: StrParam::new(""),
    use_domain: BoolParam::new(false),
    uuid_column: StrParam::new("uuid"),
    username_column: StrParam::new("username"),
    domain_column: StrParam::new("domain"),
    attribute_column: StrParam::new("attribute"),
    value_column: StrParam::new("value"),
    type_column: StrParam::new("type"),
};

thread_local! {
    /// The `db_scheme` definitions (set while the configuration loads, before fork).
    static SCHEMES: RefCell<Vec<Scheme>> = const { RefCell::new(Vec::new()) };
}

fn set_db_scheme(v: &ModParamValue) -> Result<(), String> {
    let sc = parse::scheme(&v.text()).map_err(|e| format!("avpops: {e}"))?;
    SCHEMES.with(|l| {
        let mut l = l.borrow_mut();
        if l.iter().any(|x| x.name == sc.name) {
            return Err(format!("avpops: db_scheme '{}' defined twice", sc.name));
        }
        l.push(sc);
        Ok(())
    })
}

fn columns() -> db::Columns {
    db::Columns {
        uuid: P.uuid_column.get().into(),
        attribute: P.attribute_column.get().into(),
        value: P.value_column.get().into(),
        type_: P.type_column.get().into(),
        username: P.username_column.get().into(),
        domain: P.domain_column.get().into(),
    }
}

fn mod_init() -> Result<(), String> {
    let url = P.db_url.get();
    if url.is_empty() {
        return Ok(());
    }
    if P.avp_table.get().is_empty() {
        return Err("avpops: a db_url is set but avp_table is empty".into());
    }
    openser_core::db::check_url(url).map_err(|e| format!("avpops: {e}"))?;
    Ok(())
}

fn child_init(_rank: i32) -> Result<(), String> {
    let url = P.db_url.get();
    if !url.is_empty() {
        openser_core::db::open_in_child("avpops", url);
    }
    Ok(())
}

// ---------------------------------------------------------------- fixups

fn any<T: std::any::Any + Send + Sync>(v: T) -> FixedArg {
    FixedArg::Any(Arc::new(v))
}

fn get<T: 'static>(args: &[FixedArg], i: usize) -> Option<&T> {
    match args.get(i) {
        Some(FixedArg::Any(a)) => a.downcast_ref::<T>(),
        _ => None,
    }
}

fn text(args: &[Arg], i: usize) -> Result<String, String> {
    args.get(i)
        .ok_or_else(|| "missing argument".to_string())
        .and_then(string_arg)
}

fn need_db() -> Result<(), String> {
    if P.db_url.get().is_empty() {
        return Err("avp_db_* functions need a database: set modparam avpops db_url".into());
    }
    Ok(())
}

fn fix_db(args: &[Arg], schemes: bool) -> Result<Vec<FixedArg>, String> {
    need_db()?;
    let src = parse::db_source(&text(args, 0)?)?;
    let list = SCHEMES.with(|l| l.borrow().clone());
    let p = parse::db_param(&text(args, 1)?, schemes.then_some(list.as_slice()))?;
    Ok(vec![any(src), any(p)])
}

fn fix_db_load(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    fix_db(args, true)
}

fn fix_db_other(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    fix_db(args, false)
}

fn fix_db_query(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    need_db()?;
    let q = text(args, 0)?;
    let q = if q.contains('$') {
        FixedArg::Fmt(openser_core::cfg::pv::parse_format(&q)?)
    } else {
        FixedArg::Str(q)
    };
    let mut out = vec![q];
    if args.len() > 1 {
        let d = text(args, 1)?;
        let list = d
            .split(';')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(|x| parse::avp(x).map(|a| a.name))
            .collect::<Result<Vec<AvpName>, String>>()?;
        if list.is_empty() {
            return Err("empty AVP list".into());
        }
        out.push(any(list));
    }
    Ok(out)
}

/// What `avp_delete` removes.
#[derive(Debug)]
enum DelSpec {
    Avp {
        name: AvpName,
        all: bool,
    },
    /// every AVP (`a`), or those with integer (`i`) / string (`s`) names
    Kind(Option<bool>),
}

fn fix_delete(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let t = text(args, 0)?;
    let parts = parse::split_slash(t.trim());
    let (n, flags) = match parts.as_slice() {
        [n] => (*n, ""),
        [n, f] => (*n, *f),
        _ => return Err(format!("bad AVP '{t}'")),
    };
    let all = match flags.trim().to_ascii_lowercase().as_str() {
        "" => false,
        "g" => true,
        f => return Err(format!("unknown flag '{f}' in '{t}'")),
    };
    let spec = if n.starts_with('$') {
        DelSpec::Avp {
            name: parse::avp(n)?.name,
            all,
        }
    } else {
        let kind = match parse::db_param(n, None)?.name {
            parse::DbName::Any => None,
            parse::DbName::AnyInt => Some(true),
            parse::DbName::AnyStr => Some(false),
            parse::DbName::Avp(_) => return Err(format!("bad AVP '{t}'")),
        };
        DelSpec::Kind(kind)
    };
    Ok(vec![any(spec)])
}

fn fix_copy(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let src = parse::avp(&text(args, 0)?)?;
    let d = text(args, 1)?;
    let parts = parse::split_slash(d.trim());
    let dst = parse::avp(parts.first().copied().unwrap_or(""))?;
    let flags = match parts.as_slice() {
        [_] => String::new(),
        [_, f] => {
            let f = f.trim().to_ascii_lowercase();
            if let Some(c) = f.chars().find(|c| !"gdns".contains(*c)) {
                return Err(format!("unknown flag '{c}' in '{d}'"));
            }
            f
        }
        _ => return Err(format!("bad destination '{d}'")),
    };
    if flags.contains('n') && flags.contains('s') {
        return Err(format!("'{d}': flags n and s exclude each other"));
    }
    Ok(vec![
        any(src),
        any(SrcDst {
            src: dst.clone(),
            dst: Some(dst),
            flags,
        }),
    ])
}

fn fix_printf(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let dst = parse::avp(&text(args, 0)?)?;
    let f = text(args, 1)?;
    let fmt = openser_core::cfg::pv::parse_format(&f)?;
    Ok(vec![any(dst), FixedArg::Fmt(fmt)])
}

/// The source of `avp_pushto`.
#[derive(Debug)]
struct PushSrc {
    spec: PvSpec,
    all: bool,
}

fn fix_pushto(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let dest = parse::push_dest(&text(args, 0)?)?;
    let t = text(args, 1)?;
    let parts = parse::split_slash(t.trim());
    let (n, all) = match parts.as_slice() {
        [n] => (*n, false),
        [n, f] if f.trim().eq_ignore_ascii_case("g") => (*n, true),
        [_, f] => return Err(format!("unknown flag '{f}' in '{t}'")),
        _ => return Err(format!("bad AVP '{t}'")),
    };
    let spec = parse::pv(n)?;
    Ok(vec![any(dest), any(PushSrc { spec, all })])
}

fn fix_check(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let spec = parse::pv(&text(args, 0)?)?;
    let c = parse::check(&text(args, 1)?)?;
    Ok(vec![any(spec), any(c)])
}

fn fix_op(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let sd = parse::src_dst(&text(args, 0)?, "", "avp_op name")?;
    let a = parse::arith(&text(args, 1)?)?;
    Ok(vec![any(sd), any(a)])
}

fn fix_subst(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let sd = parse::src_dst(&text(args, 0)?, "gd", "avp_subst name")?;
    let s = parse::subst(&text(args, 1)?)?;
    Ok(vec![any(sd), any(s)])
}

/// What `is_avp_set` tests.
#[derive(Debug)]
struct IsSet {
    avp: AvpRef,
    flags: String,
}

fn fix_is_avp_set(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let t = text(args, 0)?;
    let parts = parse::split_slash(t.trim());
    let (n, flags) = match parts.as_slice() {
        [n] => (*n, String::new()),
        [n, f] => {
            let f = f.trim().to_ascii_lowercase();
            if f.is_empty() {
                return Err(format!("empty flags in '{t}'"));
            }
            if let Some(c) = f.chars().find(|c| !"esn".contains(*c)) {
                return Err(format!("unknown flag '{c}' in '{t}'"));
            }
            (*n, f)
        }
        _ => return Err(format!("bad AVP '{t}'")),
    };
    Ok(vec![any(IsSet {
        avp: parse::avp(n)?,
        flags,
    })])
}

// ---------------------------------------------------------------- helpers

/// The values of an AVP, newest first (cloned).
fn values(ctx: &mut Ctx, name: &AvpName) -> Option<(AvpId, Vec<PvValue>)> {
    let id = avp_id(ctx, name)?;
    let v = ctx.avps.get_all(&id).into_iter().cloned().collect();
    Some((id, v))
}

fn val_text(v: &PvValue) -> Option<String> {
    match v {
        PvValue::Str(s) => Some(s.clone()),
        PvValue::Int(i) => Some(i.to_string()),
        PvValue::Null => None,
    }
}

/// The key of a database operation from its source.
fn source_keys(ctx: &mut Ctx, src: &DbSource) -> Option<db::Keys> {
    let t = match &src.val {
        SrcVal::Const(s) => s.clone(),
        SrcVal::Pv(spec) => match ctx.get_pv(spec) {
            PvValue::Null => {
                openser_core::log_err!("no value for first param");
                return None;
            }
            v => v.to_text(),
        },
    };
    if t.is_empty() {
        openser_core::log_err!("no value for first param");
        return None;
    }
    match db::keys_of(src.kind, &t, P.use_domain.get()) {
        Ok(k) => Some(k),
        Err(e) => {
            openser_core::log_err!("{e}");
            None
        }
    }
}

/// The AVP id a database name stands for (None: matching flags, every attribute);
/// `Err` when a dynamic name has no value.
fn db_name_id(ctx: &mut Ctx, p: &DbParam) -> Result<Option<AvpId>, ()> {
    match &p.name {
        parse::DbName::Avp(n) => match avp_id(ctx, n) {
            Some(id) => Ok(Some(id)),
            None => {
                openser_core::log_info!("no value for the AVP name");
                Err(())
            }
        },
        _ => Ok(None),
    }
}

fn table_of(p: &DbParam) -> String {
    p.table
        .clone()
        .unwrap_or_else(|| P.avp_table.get().to_string())
}

// ---------------------------------------------------------------- functions

fn cmd_print(ctx: &mut Ctx, _: &[FixedArg]) -> i32 {
    for (id, v) in ctx.avps.iter() {
        let name = match id {
            AvpId::Int(i) => format!("i:{i}"),
            AvpId::Str(s) => format!("s:{s}"),
        };
        match v {
            PvValue::Int(i) => openser_core::log_info!("name=<{name}> val_int=<{i}>"),
            PvValue::Str(s) => openser_core::log_info!("name=<{name}> val_str=<{s}>"),
            PvValue::Null => openser_core::log_info!("name=<{name}> null"),
        }
    }
    1
}

fn cmd_db_load(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (Some(src), Some(p)) = (get::<DbSource>(args, 0), get::<DbParam>(args, 1)) else {
        return -1;
    };
    let Some(keys) = source_keys(ctx, src) else {
        return -1;
    };
    let Ok(id) = db_name_id(ctx, p) else {
        return -1;
    };
    let (cols, table) = (columns(), table_of(p));
    let mut loaded = openser_core::script::AvpList::new();
    let r = openser_core::db::with_conn(P.db_url.get(), |c| {
        db::load(c, &cols, &table, &keys, p, id.as_ref(), &mut loaded)
    });
    match r {
        Ok(Ok(n)) if n > 0 => {
            // in the order the rows came, each the newest of its name
            let items: Vec<_> = loaded.iter().map(|(i, v)| (i.clone(), v.clone())).collect();
            for (i, v) in items.into_iter().rev() {
                ctx.avps.add(i, v);
            }
            1
        }
        Ok(Ok(_)) => -1,
        Ok(Err(e)) | Err(openser_core::db::DbError(e)) => {
            openser_core::log_err!("db_load failed: {e}");
            -1
        }
    }
}

fn cmd_db_store(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (Some(src), Some(p)) = (get::<DbSource>(args, 0), get::<DbParam>(args, 1)) else {
        return -1;
    };
    let Some(keys) = source_keys(ctx, src) else {
        return -1;
    };
    let Ok(id) = db_name_id(ctx, p) else {
        return -1;
    };
    let items: Vec<(AvpId, PvValue)> = match &id {
        Some(id) => ctx
            .avps
            .get_all(id)
            .into_iter()
            .map(|v| (id.clone(), v.clone()))
            .collect(),
        None => ctx
            .avps
            .iter()
            .filter(|(i, _)| match p.name {
                parse::DbName::AnyInt => matches!(i, AvpId::Int(_)),
                parse::DbName::AnyStr => matches!(i, AvpId::Str(_)),
                _ => true,
            })
            .map(|(i, v)| (i.clone(), v.clone()))
            .collect(),
    };
    if items.is_empty() {
        return -1;
    }
    let (cols, table) = (columns(), table_of(p));
    match openser_core::db::with_conn(P.db_url.get(), |c| {
        db::store(c, &cols, &table, &keys, &items)
    }) {
        Ok(Ok(n)) if n > 0 => 1,
        Ok(Ok(_)) => -1,
        Ok(Err(e)) | Err(openser_core::db::DbError(e)) => {
            openser_core::log_err!("db_store failed: {e}");
            -1
        }
    }
}

fn cmd_db_delete(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (Some(src), Some(p)) = (get::<DbSource>(args, 0), get::<DbParam>(args, 1)) else {
        return -1;
    };
    let Some(keys) = source_keys(ctx, src) else {
        return -1;
    };
    let Ok(id) = db_name_id(ctx, p) else {
        return -1;
    };
    let (cols, table) = (columns(), table_of(p));
    match openser_core::db::with_conn(P.db_url.get(), |c| {
        db::delete(c, &cols, &table, &keys, id.as_ref())
    }) {
        Ok(Ok(_)) => 1,
        Ok(Err(e)) | Err(openser_core::db::DbError(e)) => {
            openser_core::log_err!("db_delete failed: {e}");
            -1
        }
    }
}

fn cmd_db_query(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(q) = args.first() else { return -1 };
    let q = ctx.arg_str(q);
    let mut dest = Vec::new();
    if let Some(list) = get::<Vec<AvpName>>(args, 1) {
        for n in list {
            match avp_id(ctx, n) {
                Some(id) => dest.push(id),
                None => {
                    openser_core::log_err!("cannot get the name of a destination AVP");
                    return -1;
                }
            }
        }
    }
    match openser_core::db::with_conn(P.db_url.get(), |c| c.raw_query(&q)) {
        Ok(Ok(rows)) => {
            db::query_avps(&rows, &dest, &mut ctx.avps);
            1
        }
        Ok(Err(e)) | Err(e) => {
            openser_core::log_err!("cannot do the query: {e}");
            -1
        }
    }
}

fn cmd_delete(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(spec) = get::<DelSpec>(args, 0) else {
        return -1;
    };
    match spec {
        DelSpec::Avp { name, all } => {
            let Some(id) = avp_id(ctx, name) else {
                return -1;
            };
            if *all {
                ctx.avps.del_all(&id);
            } else {
                ctx.avps.del_one(&id);
            }
        }
        DelSpec::Kind(None) => ctx.avps.clear(),
        DelSpec::Kind(Some(int)) => {
            let int = *int;
            ctx.avps.retain(|i, _| matches!(i, AvpId::Int(_)) != int);
        }
    }
    1
}

fn cmd_copy(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (Some(src), Some(d)) = (get::<AvpRef>(args, 0), get::<SrcDst>(args, 1)) else {
        return -1;
    };
    let Some((sid, vals)) = values(ctx, &src.name) else {
        return -1;
    };
    let Some(dst) = &d.dst else { return -1 };
    let Some(did) = avp_id(ctx, &dst.name) else {
        return -1;
    };
    if vals.is_empty() {
        return -1;
    }
    let all = d.flags.contains('g');
    let n = if all { vals.len() } else { 1 };
    let mut out = Vec::with_capacity(n);
    for v in vals.iter().take(n) {
        let v = if d.flags.contains('n') {
            match v {
                PvValue::Str(s) => match parse::parse_int(s) {
                    Some(i) => PvValue::Int(i),
                    None => {
                        openser_core::log_err!("cannot convert <{s}> to an integer");
                        return -1;
                    }
                },
                v => v.clone(),
            }
        } else if d.flags.contains('s') {
            match v {
                PvValue::Int(i) => PvValue::Str(i.to_string()),
                v => v.clone(),
            }
        } else {
            v.clone()
        };
        out.push(v);
    }
    if d.flags.contains('d') {
        for k in (0..n).rev() {
            ctx.avps.del_nth(&sid, k);
        }
    }
    // 1.2 adds each copy in turn, so the oldest copied value ends up newest
    for v in out {
        ctx.avps.add(did.clone(), v);
    }
    1
}

fn cmd_printf(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (Some(dst), Some(FixedArg::Fmt(f))) = (get::<AvpRef>(args, 0), args.get(1)) else {
        return -1;
    };
    let Some(id) = avp_id(ctx, &dst.name) else {
        return -1;
    };
    let s = ctx.format(f);
    ctx.avps.add(id, PvValue::Str(s));
    1
}

/// Append the current R-URI as a branch (`append_branch()` without arguments).
fn ruri_to_branch(ctx: &mut Ctx) {
    let b = Branch {
        uri: ctx.msg.ruri().to_string(),
        dst_uri: ctx.msg.dst_uri.take(),
        path: None,
        q: ctx.ruri_q,
        bflags: ctx.ruri_bflags,
        force_send_sock: ctx.msg.force_send_sock.take(),
    };
    ctx.branches.push(b);
    ctx.ruri_bflags = 0;
}

fn push_one(ctx: &mut Ctx, dest: PushDest, v: &PvValue, n: usize) -> bool {
    let Some(t) = val_text(v) else { return false };
    match dest {
        PushDest::Ruri | PushDest::RuriUser | PushDest::RuriHost => {
            if n > 0 {
                ruri_to_branch(ctx);
            }
            let new = if dest == PushDest::Ruri {
                match Uri::parse(&t) {
                    Ok(_) => t,
                    Err(e) => {
                        openser_core::log_err!("bad uri <{t}>: {e}");
                        return false;
                    }
                }
            } else {
                let mut u = match Uri::parse(ctx.msg.ruri()) {
                    Ok(u) => u,
                    Err(e) => {
                        openser_core::log_err!("bad uri <{}>: {e}", ctx.msg.ruri());
                        return false;
                    }
                };
                let r = if dest == PushDest::RuriUser {
                    u.set_user(&t)
                } else {
                    u.set_host(&t)
                };
                if let Err(e) = r {
                    openser_core::log_err!("{e}");
                    return false;
                }
                u.to_string()
            };
            ctx.msg.new_uri = Some(new);
            true
        }
        PushDest::DstUri | PushDest::Branch => {
            if !matches!(v, PvValue::Str(_)) || Uri::parse(&t).is_err() {
                openser_core::log_err!("not a URI <{t}>");
                return false;
            }
            if dest == PushDest::DstUri {
                ctx.msg.dst_uri = Some(t);
            } else {
                let sock = ctx.msg.force_send_sock;
                ctx.branches.push(Branch {
                    uri: t,
                    dst_uri: None,
                    path: None,
                    q: Q_UNSPECIFIED,
                    bflags: 0,
                    force_send_sock: sock,
                });
            }
            true
        }
    }
}

fn cmd_pushto(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (Some(dest), Some(src)) = (get::<PushDest>(args, 0), get::<PushSrc>(args, 1)) else {
        return -1;
    };
    let vals = match parse::avp_of(&src.spec) {
        Some(a) => match values(ctx, &a.name) {
            Some((_, v)) if !v.is_empty() => v,
            _ => return -1,
        },
        None => match ctx.get_pv(&src.spec) {
            PvValue::Null => return -1,
            v => vec![v],
        },
    };
    let n = if src.all { vals.len() } else { 1 };
    for (i, v) in vals.iter().take(n).enumerate() {
        if !push_one(ctx, *dest, v, i) {
            return -1;
        }
    }
    1
}

/// The values of an operand: a constant, or every value of an AVP, or a PV's value.
fn operand_values(ctx: &mut Ctx, o: &Operand) -> Option<Vec<PvValue>> {
    match o {
        Operand::Val(v) => Some(vec![v.clone()]),
        Operand::Re(_) => Some(vec![PvValue::Str(String::new())]),
        Operand::Pv(spec) => match parse::avp_of(spec) {
            Some(a) => match values(ctx, &a.name) {
                Some((_, v)) if !v.is_empty() => Some(v),
                _ => None,
            },
            None => match ctx.get_pv(spec) {
                PvValue::Null => None,
                v => Some(vec![v]),
            },
        },
    }
}

/// `avp_check` on explicit values (the unit tests' entry point): 1 if some value of
/// `vals` (only the first without `g`) matches some operand value.
pub fn check_values(c: &Check, vals: &[PvValue], ops: &[PvValue]) -> i32 {
    let n = if c.all { vals.len() } else { vals.len().min(1) };
    for v in &vals[..n] {
        for o in ops {
            let dyn_re;
            let re = match (&c.val, c.op) {
                (Operand::Re(r), _) => Some(&**r),
                (_, CheckOp::Re) => {
                    let PvValue::Str(pat) = o else {
                        openser_core::log_err!("value types don't match");
                        continue;
                    };
                    match parse::compile_check_re(pat) {
                        Ok(r) => {
                            dyn_re = r;
                            Some(&dyn_re)
                        }
                        Err(e) => {
                            openser_core::log_err!("{e}");
                            return -1;
                        }
                    }
                }
                _ => None,
            };
            match ops::check_one(c.op, c.icase, v, o, re) {
                Ok(true) => return 1,
                Ok(false) => {}
                Err(e) => openser_core::log_err!("{e}"),
            }
        }
    }
    -1
}

fn cmd_check(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (Some(spec), Some(c)) = (get::<PvSpec>(args, 0), get::<Check>(args, 1)) else {
        return -1;
    };
    let vals = match parse::avp_of(spec) {
        Some(a) => match values(ctx, &a.name) {
            Some((_, v)) if !v.is_empty() => v,
            _ => return -1,
        },
        None => match ctx.get_pv(spec) {
            PvValue::Null => return -1,
            v => vec![v],
        },
    };
    let Some(ops) = operand_values(ctx, &c.val) else {
        return -1;
    };
    check_values(c, &vals, &ops)
}

fn cmd_op(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (Some(sd), Some(a)) = (get::<SrcDst>(args, 0), get::<Arith>(args, 1)) else {
        return -1;
    };
    let Some((sid, vals)) = values(ctx, &sd.src.name) else {
        return -1;
    };
    let did = match &sd.dst {
        Some(d) => match avp_id(ctx, &d.name) {
            Some(i) => i,
            None => return -1,
        },
        None => sid.clone(),
    };
    let operand = match operand_values(ctx, &a.val) {
        Some(v) => v.into_iter().find_map(|v| match v {
            PvValue::Int(i) => Some(i),
            _ => None,
        }),
        None => None,
    };
    let Some(b) = operand else {
        openser_core::log_err!("no integer value for the operand");
        return -1;
    };
    // the integer values processed, by index (newest first)
    let picked: Vec<(usize, i64)> = vals
        .iter()
        .enumerate()
        .filter_map(|(k, v)| match v {
            PvValue::Int(i) => Some((k, *i)),
            _ => None,
        })
        .take(if a.all { usize::MAX } else { 1 })
        .collect();
    if picked.is_empty() {
        return -1;
    }
    if a.delete {
        for (k, _) in picked.iter().rev() {
            ctx.avps.del_nth(&sid, *k);
        }
    }
    for (_, x) in &picked {
        ctx.avps
            .add(did.clone(), PvValue::Int(ops::arith(a.op, *x, b)));
    }
    1
}

fn cmd_subst(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let (Some(sd), Some(s)) = (get::<SrcDst>(args, 0), get::<Subst>(args, 1)) else {
        return -1;
    };
    let Some((sid, vals)) = values(ctx, &sd.src.name) else {
        return -1;
    };
    let did = match &sd.dst {
        Some(d) => match avp_id(ctx, &d.name) {
            Some(i) => i,
            None => return -1,
        },
        None => sid.clone(),
    };
    let all = sd.flags.contains('g');
    let delete = sd.flags.contains('d') || sd.dst.is_none();
    let mut done: Vec<(usize, String)> = Vec::new();
    for (k, v) in vals.iter().enumerate() {
        let PvValue::Str(t) = v else { continue };
        let r = s.apply(t, &mut |p| ctx.get_pv(p).to_text());
        if let Some(r) = r {
            done.push((k, r));
            if !all {
                break;
            }
        }
    }
    if done.is_empty() {
        return -1;
    }
    if delete {
        for (k, _) in done.iter().rev() {
            ctx.avps.del_nth(&sid, *k);
        }
    }
    for (_, r) in done {
        ctx.avps.add(did.clone(), PvValue::Str(r));
    }
    1
}

fn cmd_is_avp_set(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(q) = get::<IsSet>(args, 0) else {
        return -1;
    };
    let Some((_, vals)) = values(ctx, &q.avp.name) else {
        return -1;
    };
    let picked: Vec<&PvValue> = match &q.avp.index {
        Some(PvIndex::All) => vals.iter().collect(),
        Some(PvIndex::Int(n)) => {
            let k = if *n < 0 { vals.len() as i64 + n } else { *n };
            usize::try_from(k)
                .ok()
                .and_then(|k| vals.get(k))
                .into_iter()
                .collect()
        }
        Some(PvIndex::Pv(p)) => {
            let n = ctx.get_pv(p).as_int().unwrap_or(0);
            let k = if n < 0 { vals.len() as i64 + n } else { n };
            usize::try_from(k)
                .ok()
                .and_then(|k| vals.get(k))
                .into_iter()
                .collect()
        }
        None => vals.first().into_iter().collect(),
    };
    let ok = picked.iter().any(|v| is_set_ok(v, &q.flags));
    if ok { 1 } else { -1 }
}

/// Whether a value passes `is_avp_set`'s flags.
fn is_set_ok(v: &PvValue, flags: &str) -> bool {
    if flags.contains('s') && !matches!(v, PvValue::Str(_)) {
        return false;
    }
    if flags.contains('n') && !matches!(v, PvValue::Int(_)) {
        return false;
    }
    if flags.contains('e') {
        return match v {
            PvValue::Str(s) => s.is_empty(),
            PvValue::Int(i) => *i == 0,
            PvValue::Null => true,
        };
    }
    true
}

#[cfg(test)]
mod tests;
