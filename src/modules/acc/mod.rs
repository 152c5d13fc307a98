//! acc (reference §8.13): transaction accounting to the log and to SQL.
//!
//! * Flagged transactions (message flags of the transaction, checked when it ends) are
//!   accounted through tm's callbacks (`tm::callbacks`): when the final reply goes
//!   upstream, a 2xx (or ≥300 with `failed_transaction_flag` set) gives
//!   `ACC: transaction answered: …` at `log_level` (`log_flag`) and/or a row in
//!   `db_table_acc` (`db_flag`). CANCEL transactions only with `report_cancels`.
//! * Missed calls: an INVITE with `log_missed_flag`/`db_missed_flag` whose first negative
//!   outcome is seen (before failure_route, or when the negative reply goes upstream)
//!   gives `ACC: call missed: …` / a row in `db_table_missed_calls`; the missed flag is
//!   then reset on the transaction (set it again in failure_route to report later
//!   attempts).
//! * `acc_log_request(comment)` / `acc_db_request(comment, table)` (REQUEST, FAILURE):
//!   account the current request now; the comment gives code and reason (`"200 OK"`:
//!   leading 3-digit code, then the reason; otherwise no code and reason = comment).
//! * `log_extra` / `db_extra`: `name=$pv;…`, evaluated against the request (with the
//!   transaction's AVPs); a PV without value is `<null>` in the log, NULL in SQL.
//!
//! Accepted but not implemented: `report_ack` (e2e ACKs are forwarded statelessly by tm,
//! no callback), `early_media` (no provisional-reply callback), `detect_direction`,
//! `multi_leg_info` (single leg only). RADIUS/DIAMETER are not built.
//!
//! The DB URL's driver is checked at mod_init; every process opens its own connection
//! in child_init and retries at first use when that failed.

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::sync::OnceLock;

use crate::core::cfg::ast::Arg;
use crate::core::cfg::pv::{PvSpec, parse_pv};
use crate::core::db::{self, DbConn, DbVal};
use crate::core::log::{self, L_NOTICE};
use crate::core::module::{
    CmdExport, FixedArg, ModParamValue, ModuleExports, ParamCell, ParamExport,
};
use crate::core::parser::{Method, SipMsg};
use crate::core::route::{FAILURE_ROUTE, REQUEST_ROUTE};
use crate::core::script::fixup::string_arg;
use crate::core::script::{Ctx, PvValue};
use crate::modules::tm::callbacks::{self, TmEvent, TmEventKind};

/// acc parameters (flags: −1 = unset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccParams {
    pub log_flag: i32,
    pub log_missed_flag: i32,
    pub log_level: i32,
    pub log_extra: String,
    pub db_flag: i32,
    pub db_missed_flag: i32,
    pub db_url: String,
    pub db_table_acc: String,
    pub db_table_missed_calls: String,
    pub db_extra: String,
    /// method, from_tag, to_tag, callid, sip_code, sip_reason, time
    pub columns: [String; 7],
    pub failed_transaction_flag: i32,
    pub report_cancels: bool,
    pub report_ack: bool,
    pub early_media: bool,
    pub detect_direction: bool,
    pub multi_leg_info: String,
}

pub const COLUMN_PARAMS: [&str; 7] = [
    "acc_method_column",
    "acc_from_tag_column",
    "acc_to_tag_column",
    "acc_callid_column",
    "acc_sip_code_column",
    "acc_sip_reason_column",
    "acc_time_column",
];

impl Default for AccParams {
    fn default() -> Self {
        AccParams {
            log_flag: -1,
            log_missed_flag: -1,
            log_level: L_NOTICE,
            log_extra: String::new(),
            db_flag: -1,
            db_missed_flag: -1,
            db_url: String::new(),
            db_table_acc: "acc".into(),
            db_table_missed_calls: "missed_calls".into(),
            db_extra: String::new(),
            columns: [
                "method",
                "from_tag",
                "to_tag",
                "callid",
                "sip_code",
                "sip_reason",
                "time",
            ]
            .map(String::from),
            failed_transaction_flag: -1,
            report_cancels: false,
            report_ack: false,
            early_media: false,
            detect_direction: false,
            multi_leg_info: String::new(),
        }
    }
}

/// One `name=$pv` of log_extra / db_extra.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extra {
    pub name: String,
    pub spec: PvSpec,
}

/// Parse `name=$pv;name2=$avp(s:x)` (empty items ignored).
pub fn parse_extra(s: &str) -> Result<Vec<Extra>, String> {
    let mut out = Vec::new();
    for item in s.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        let bad = |why: &str| format!("acc: bad extra definition '{item}': {why}");
        let (name, pv) = item.split_once('=').ok_or_else(|| bad("no '='"))?;
        let (name, pv) = (name.trim(), pv.trim());
        if name.is_empty() {
            return Err(bad("empty name"));
        }
        let (spec, used) = parse_pv(pv).map_err(|e| bad(&e))?;
        if used != pv.len() {
            return Err(bad("trailing text after the pseudo-variable"));
        }
        out.push(Extra {
            name: name.to_string(),
            spec,
        });
    }
    Ok(out)
}

/// Parameters in effect, with the extras parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub p: AccParams,
    pub log_extra: Vec<Extra>,
    pub db_extra: Vec<Extra>,
}

impl Config {
    pub fn new(p: AccParams) -> Result<Config, String> {
        for (n, f) in [
            ("log_flag", p.log_flag),
            ("log_missed_flag", p.log_missed_flag),
            ("db_flag", p.db_flag),
            ("db_missed_flag", p.db_missed_flag),
            ("failed_transaction_flag", p.failed_transaction_flag),
        ] {
            if !(-1..32).contains(&f) {
                return Err(format!("acc: {n} out of range: {f} (0..31)"));
            }
        }
        Ok(Config {
            log_extra: parse_extra(&p.log_extra)?,
            db_extra: parse_extra(&p.db_extra)?,
            p,
        })
    }

    fn db_on(&self) -> bool {
        !self.p.db_url.is_empty()
    }
}

/// Whether flag `f` (−1 = unset) is set in `flags`.
pub fn flag_set(flags: u32, f: i32) -> bool {
    (0..32).contains(&f) && flags & (1u32 << f) != 0
}

fn flag_bit(f: i32) -> u32 {
    if (0..32).contains(&f) { 1u32 << f } else { 0 }
}

/// The fixed fields of one accounting record plus the evaluated extras.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub method: String,
    pub from_tag: String,
    pub to_tag: String,
    pub callid: String,
    pub code: String,
    pub reason: String,
    pub extra: Vec<(String, PvValue)>,
}

/// Record of `req` with `code`/`reason`; `to_tag` None = the request's own To tag.
pub fn record_of(req: &SipMsg, code: &str, reason: &str, to_tag: Option<&str>) -> Record {
    let tag = |t: Option<&crate::core::parser::NameAddr>| {
        t.and_then(|n| n.tag)
            .map(|s| String::from_utf8_lossy(s.bytes(req.buf())).into_owned())
            .unwrap_or_default()
    };
    Record {
        method: req.method_str().to_string(),
        from_tag: tag(req.from().ok()),
        to_tag: match to_tag {
            Some(t) => t.to_string(),
            None => tag(req.to().ok()),
        },
        callid: req.callid().unwrap_or("").trim().to_string(),
        code: code.to_string(),
        reason: reason.to_string(),
        extra: Vec::new(),
    }
}

/// Evaluate extras in `ctx`.
pub fn eval_extra(ctx: &mut Ctx, extra: &[Extra]) -> Vec<(String, PvValue)> {
    extra
        .iter()
        .map(|e| (e.name.clone(), ctx.get_pv(&e.spec)))
        .collect()
}

/// The log line (without newline): `<prefix>timestamp=…;method=…;…[;extra=…]`.
pub fn log_line(prefix: &str, ts: i64, r: &Record) -> String {
    let mut s = format!(
        "{prefix}timestamp={ts};method={};from_tag={};to_tag={};call_id={};code={};reason={}",
        r.method, r.from_tag, r.to_tag, r.callid, r.code, r.reason
    );
    for (n, v) in &r.extra {
        s.push(';');
        s.push_str(n);
        s.push('=');
        v.push_to(&mut s);
    }
    s
}

/// The DB row: the seven columns (time as DATETIME) + the extra columns.
pub fn db_row(cols: &[String; 7], ts: i64, r: &Record) -> Vec<(String, DbVal)> {
    let mut row = vec![
        (cols[0].clone(), DbVal::Str(r.method.clone())),
        (cols[1].clone(), DbVal::Str(r.from_tag.clone())),
        (cols[2].clone(), DbVal::Str(r.to_tag.clone())),
        (cols[3].clone(), DbVal::Str(r.callid.clone())),
        (cols[4].clone(), DbVal::Str(r.code.clone())),
        (cols[5].clone(), DbVal::Str(r.reason.clone())),
        (cols[6].clone(), DbVal::DateTime(ts)),
    ];
    for (n, v) in &r.extra {
        let dv = match v {
            PvValue::Null => DbVal::Null,
            PvValue::Int(i) => DbVal::Int(*i),
            PvValue::Str(s) => DbVal::Str(s.clone()),
        };
        row.push((n.clone(), dv));
    }
    row
}

/// Insert `r` into `table` over `conn`.
pub fn db_insert(
    conn: &mut dyn DbConn,
    cols: &[String; 7],
    table: &str,
    ts: i64,
    r: &Record,
) -> Result<(), db::DbError> {
    let row = db_row(cols, ts, r);
    let vals: Vec<(&str, DbVal)> = row.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
    conn.insert(table, &vals)
}

/// Split an acc_*_request comment: `"200 OK"` → ("200", "OK"); else ("", comment).
pub fn split_comment(c: &str) -> (String, String) {
    let b = c.as_bytes();
    if b.len() >= 3
        && b[..3].iter().all(u8::is_ascii_digit)
        && (b.len() == 3 || b[3] == b' ' || b[3] == b'\t')
    {
        (c[..3].to_string(), c[3..].trim_start().to_string())
    } else {
        (String::new(), c.to_string())
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// ------------------------------------------------------------------ parameters

static PARAMS: ParamCell<AccParams> = ParamCell::new();
static FROZEN: OnceLock<Config> = OnceLock::new();

thread_local! {
    /// This process's connection (opened in child_init or at first use).
    static CONN: RefCell<Option<Box<dyn DbConn>>> = const { RefCell::new(None) };
}

pub fn params() -> AccParams {
    PARAMS.get()
}

fn cfg() -> &'static Config {
    static FALLBACK: OnceLock<Config> = OnceLock::new();
    FROZEN.get().unwrap_or_else(|| {
        FALLBACK.get_or_init(|| Config::new(AccParams::default()).expect("default config"))
    })
}

macro_rules! p_int {
    ($f:ident, $field:ident) => {
        fn $f(v: &ModParamValue) -> Result<(), String> {
            let x: i32 = v.ranged("acc", stringify!($field))?;
            PARAMS.update(|p| p.$field = x);
            Ok(())
        }
    };
}
macro_rules! p_bool {
    ($f:ident, $field:ident) => {
        fn $f(v: &ModParamValue) -> Result<(), String> {
            let x = v.int("acc", stringify!($field))? != 0;
            PARAMS.update(|p| p.$field = x);
            Ok(())
        }
    };
}
macro_rules! p_col {
    ($f:ident, $i:expr) => {
        fn $f(v: &ModParamValue) -> Result<(), String> {
            let x = v.text();
            if x.is_empty() {
                return Err(format!("acc: {} must not be empty", COLUMN_PARAMS[$i]));
            }
            PARAMS.update(|p| p.columns[$i] = x);
            Ok(())
        }
    };
}
p_int!(set_log_flag, log_flag);
p_int!(set_log_missed_flag, log_missed_flag);
p_int!(set_log_level, log_level);
p_int!(set_db_flag, db_flag);
p_int!(set_db_missed_flag, db_missed_flag);
p_int!(set_failed_transaction_flag, failed_transaction_flag);
p_bool!(set_report_cancels, report_cancels);
p_bool!(set_report_ack, report_ack);
p_bool!(set_early_media, early_media);
p_bool!(set_detect_direction, detect_direction);
crate::param_text!(set_log_extra, PARAMS, log_extra);
crate::param_text!(set_db_url, PARAMS, db_url);
crate::param_text!(set_db_table_acc, PARAMS, db_table_acc);
crate::param_text!(set_db_table_missed_calls, PARAMS, db_table_missed_calls);
crate::param_text!(set_db_extra, PARAMS, db_extra);
crate::param_text!(set_multi_leg_info, PARAMS, multi_leg_info);
p_col!(set_method_col, 0);
p_col!(set_from_tag_col, 1);
p_col!(set_to_tag_col, 2);
p_col!(set_callid_col, 3);
p_col!(set_code_col, 4);
p_col!(set_reason_col, 5);
p_col!(set_time_col, 6);

macro_rules! param {
    ($n:expr, $f:ident) => {
        ParamExport { name: $n, set: $f }
    };
}

static PARAM_LIST: [ParamExport; 23] = [
    param!("log_flag", set_log_flag),
    param!("log_missed_flag", set_log_missed_flag),
    param!("log_level", set_log_level),
    param!("log_extra", set_log_extra),
    param!("db_flag", set_db_flag),
    param!("db_missed_flag", set_db_missed_flag),
    param!("db_url", set_db_url),
    param!("db_table_acc", set_db_table_acc),
    param!("db_table_missed_calls", set_db_table_missed_calls),
    param!("db_extra", set_db_extra),
    param!("acc_method_column", set_method_col),
    param!("acc_from_tag_column", set_from_tag_col),
    param!("acc_to_tag_column", set_to_tag_col),
    param!("acc_callid_column", set_callid_col),
    param!("acc_sip_code_column", set_code_col),
    param!("acc_sip_reason_column", set_reason_col),
    param!("acc_time_column", set_time_col),
    param!("failed_transaction_flag", set_failed_transaction_flag),
    param!("report_cancels", set_report_cancels),
    param!("report_ack", set_report_ack),
    param!("early_media", set_early_media),
    param!("detect_direction", set_detect_direction),
    param!("multi_leg_info", set_multi_leg_info),
];

// ------------------------------------------------------------------ init

fn mod_init() -> Result<(), String> {
    if !crate::core::module::is_loaded("tm") {
        return Err("acc: module tm must be loaded".into());
    }
    let c = Config::new(params())?;
    if c.db_on() {
        db::check_url(&c.p.db_url).map_err(|e| format!("acc: {e}"))?;
    }
    // Only transactions carrying one of these flags produce records.
    let p = &c.p;
    let flags = flag_bit(p.log_flag)
        | flag_bit(p.log_missed_flag)
        | flag_bit(p.db_flag)
        | flag_bit(p.db_missed_flag);
    let _ = FROZEN.set(c);
    callbacks::register(on_tm_event, flags);
    Ok(())
}

fn open_conn() -> Option<Box<dyn DbConn>> {
    match db::connect(&cfg().p.db_url) {
        Ok(c) => Some(c),
        Err(e) => {
            crate::log_err!("ERROR:acc: can't connect to the database: {e}\n");
            None
        }
    }
}

fn child_init(_rank: i32) -> Result<(), String> {
    if cfg().db_on() {
        let c = open_conn();
        CONN.with(|cell| *cell.borrow_mut() = c);
    }
    Ok(())
}

// ------------------------------------------------------------------ output

fn emit_log(prefix: &str, r: &Record) {
    let level = cfg().p.log_level;
    if log::enabled(level) {
        log::emit(level, &format!("{}\n", log_line(prefix, now(), r)));
    }
}

/// Insert into `table` with this process's connection; false on error (logged).
fn emit_db(table: &str, r: &Record) -> bool {
    let c = cfg();
    if !c.db_on() {
        return false;
    }
    CONN.with(|cell| {
        let mut g = cell.borrow_mut();
        if g.is_none() {
            *g = open_conn();
        }
        let Some(conn) = g.as_mut() else {
            return false;
        };
        match db_insert(conn.as_mut(), &c.p.columns, table, now(), r) {
            Ok(()) => true,
            Err(e) => {
                crate::log_err!("ERROR:acc:acc_db_request: failed to insert into {table}: {e}\n");
                false
            }
        }
    })
}

// ------------------------------------------------------------------ tm callbacks

/// The tm hook: transaction and missed-call accounting; returns the missed-call flags
/// to reset on the transaction.
fn on_tm_event(ev: &mut TmEvent) -> u32 {
    account_event(cfg(), ev, &mut |prefix, table, r| {
        match table {
            None => emit_log(prefix, r),
            Some(t) => {
                emit_db(t, r);
            }
        };
    })
}

/// Sink for records: (log prefix, Some(table) for SQL / None for the log, record).
pub type Sink<'a> = dyn FnMut(&str, Option<&str>, &Record) + 'a;

pub const P_ANSWERED: &str = "ACC: transaction answered: ";
pub const P_MISSED: &str = "ACC: call missed: ";
pub const P_REQUEST: &str = "ACC: request accounted: ";

/// The accounting decisions for one tm event (testable with any sink).
pub fn account_event(c: &Config, ev: &mut TmEvent, out: &mut Sink<'_>) -> u32 {
    let p = &c.p;
    let flags = ev.req.flags;
    let method = ev.req.method();
    if method == Method::Cancel && !p.report_cancels {
        return 0;
    }
    let want_log = flag_set(flags, p.log_flag);
    let want_db = c.db_on() && flag_set(flags, p.db_flag);
    let miss_log = flag_set(flags, p.log_missed_flag);
    let miss_db = c.db_on() && flag_set(flags, p.db_missed_flag);
    if !(want_log || want_db || miss_log || miss_db) {
        return 0;
    }
    let code = ev.code;
    let kind = ev.kind;
    let is_invite = method == Method::Invite;
    let base = record_of(&ev.req, &code.to_string(), &ev.reason, Some(&ev.to_tag));
    let mut clear = 0;
    let mut ctx = Ctx::new(&mut ev.req, FAILURE_ROUTE);
    ctx.avps = std::mem::take(&mut ev.avps);
    let with = |ctx: &mut Ctx, extra: &[Extra]| {
        let mut r = base.clone();
        r.extra = eval_extra(ctx, extra);
        r
    };
    if is_invite && code >= 300 && (miss_log || miss_db) {
        if miss_log {
            out(P_MISSED, None, &with(&mut ctx, &c.log_extra));
            clear |= flag_bit(p.log_missed_flag);
        }
        if miss_db {
            out(
                P_MISSED,
                Some(&p.db_table_missed_calls),
                &with(&mut ctx, &c.db_extra),
            );
            clear |= flag_bit(p.db_missed_flag);
        }
    }
    // Transaction records only when the final reply goes upstream.
    let accountable = kind == TmEventKind::ReplyOut
        && ((200..300).contains(&code)
            || (code >= 300 && flag_set(flags, p.failed_transaction_flag)));
    if accountable {
        if want_log {
            out(P_ANSWERED, None, &with(&mut ctx, &c.log_extra));
        }
        if want_db {
            out(
                P_ANSWERED,
                Some(&p.db_table_acc),
                &with(&mut ctx, &c.db_extra),
            );
        }
    }
    clear
}

// ------------------------------------------------------------------ script functions

fn fixup_log_request(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let c = args.first().ok_or("acc_log_request: missing comment")?;
    Ok(vec![FixedArg::Str(string_arg(c)?)])
}

fn fixup_db_request(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let [c, t] = args else {
        return Err("acc_db_request takes 2 arguments".into());
    };
    let t = string_arg(t)?;
    if t.is_empty() {
        return Err("acc_db_request: empty table name".into());
    }
    Ok(vec![FixedArg::Str(string_arg(c)?), FixedArg::Str(t)])
}

fn comment_of(args: &[FixedArg]) -> String {
    match args.first() {
        Some(FixedArg::Str(s)) => s.clone(),
        _ => String::new(),
    }
}

/// The record for the current request with the comment's code and reason.
pub fn request_record(ctx: &mut Ctx, comment: &str, extra: &[Extra]) -> Record {
    let (code, reason) = split_comment(comment);
    let mut r = record_of(ctx.msg, &code, &reason, None);
    r.extra = eval_extra(ctx, extra);
    r
}

fn cmd_acc_log_request(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let c = cfg();
    let r = request_record(ctx, &comment_of(args), &c.log_extra);
    emit_log(P_REQUEST, &r);
    1
}

fn cmd_acc_db_request(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let c = cfg();
    if !c.db_on() {
        crate::log_err!("ERROR:acc:acc_db_request: no db_url configured\n");
        return -1;
    }
    let table = match args.get(1) {
        Some(FixedArg::Str(t)) => t.clone(),
        _ => return -1,
    };
    let r = request_record(ctx, &comment_of(args), &c.db_extra);
    if emit_db(&table, &r) { 1 } else { -1 }
}

static CMDS: [CmdExport; 2] = [
    CmdExport {
        name: "acc_log_request",
        min_args: 1,
        max_args: 1,
        fixup: Some(fixup_log_request),
        handler: cmd_acc_log_request,
        routes: REQUEST_ROUTE | FAILURE_ROUTE,
    },
    CmdExport {
        name: "acc_db_request",
        min_args: 2,
        max_args: 2,
        fixup: Some(fixup_db_request),
        handler: cmd_acc_db_request,
        routes: REQUEST_ROUTE | FAILURE_ROUTE,
    },
];

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "acc",
    params: &PARAM_LIST,
    cmds: &CMDS,
    pvs: &[],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    destroy: None,
    pre_script: None,
    reply_hook: None,
};
