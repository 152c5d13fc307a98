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
//! * `multi_leg_info` (`name=$avp(…);…`, AVPs only): per-leg accounting of a forwarded
//!   call. The k-th values of the AVPs (newest first, as 1.2 walks them) make leg k;
//!   the log line gets every leg's `name=value` pairs appended, SQL gets one row per leg
//!   with the leg columns (one row with NULL leg columns when no AVP is set).
//! * `early_media`: a 183 relayed upstream for an accounted transaction gives an
//!   "answered" record with code 183 (tm's provisional event).
//! * `report_ack`: the end-to-end ACK of an accounted 2xx that reaches `t_relay` gives
//!   `ACC: request acknowledged: …` / a row in `db_table_acc` (method ACK, the ACK's
//!   tags, the transaction's final code).
//! * `detect_direction` (needs rr): an in-dialog request going upstream (callee to
//!   caller, found by loose_route through an rr callback) is accounted with From and
//!   To swapped — tags and every From/To pseudo-variable of the extras.
//! * Records of a transaction carry a branch's R-URI as `$ru`: a missed call the last
//!   branch's, an answered call the answering branch's (1.2).
//!
//! * RADIUS (`radius.rs`, 1.2's `RAD_ACC`): `radius_flag` / `radius_missed_flag`
//!   give Accounting-Requests to the `acctserver`s of `radius_config` (Start on a 2xx
//!   to an INVITE, Stop on BYE, Failed for missed calls), with the `radius_extra`
//!   attributes, in parallel with the log and SQL records; `acc_rad_request(comment)`
//!   (REQUEST, FAILURE) sends one for the current request now (`"200 Start"`).
//!   RADIUS is set up when `radius_config`, a RADIUS flag or `acc_rad_request` is used
//!   (1.2 always read its default radiusclient.conf when built with RADIUS); the file
//!   and every attribute name are checked at start-up. `service_type` (default the
//!   dictionary's `Sip-Session`) is the `Service-Type` sent.
//!
//! * CDRs from dialogs (`cdr.rs`, OpenSIPS's CDR mode with Kamailio's parameter names,
//!   binding the dialog module when `cdr_flag` is set): one record per answered call
//!   whose INVITE carried `cdr_flag`, when its dialog ends, to the log
//!   (`ACC: call ended: …`, `cdr_log_enable`) and to `cdrs_table`, with `cdr_extra`.
//!
//! DIAMETER is not built.
//!
//! The DB URL's driver is checked at mod_init; every process opens its own connection
//! in child_init and retries at first use when that failed.

pub mod cdr;
pub mod radius;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use openser_core::cfg::ast::Arg;
use openser_core::cfg::pv::{PvIndex, PvParam};
use openser_core::cfg::pv::{PvSpec, parse_pv};
use openser_core::db::{self, DbConn, DbVal};
use openser_core::log::{self, L_NOTICE};
use openser_core::module::{
    BoolParam, CmdExport, FixedArg, IntParam, ModuleExports, Param, StrParam,
};
use openser_core::parser::HdrType;
use openser_core::parser::{Method, SipMsg};
use openser_core::route::{FAILURE_ROUTE, REQUEST_ROUTE};
use openser_core::script::AvpId;
use openser_core::script::fixup::string_arg;
use openser_core::script::{Ctx, PvValue};
use tm::callbacks::{self, TmEvent, TmEventKind};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "acc",
    binds: &["tm"],
    params: &[
        Param::int_range("log_flag", &P.log_flag, -1, 31),
        Param::int_range("log_missed_flag", &P.log_missed_flag, -1, 31),
        Param::int_range("log_level", &P.log_level, i32::MIN as i64, i32::MAX as i64),
        Param::str_with("log_extra", &P.log_extra, check_extra),
        Param::int_range("db_flag", &P.db_flag, -1, 31),
        Param::int_range("db_missed_flag", &P.db_missed_flag, -1, 31),
        Param::str("db_url", &P.db_url),
        Param::str_with("db_table_acc", &P.db_table_acc, not_empty),
        Param::str_with("db_table_missed_calls", &P.db_table_missed_calls, not_empty),
        Param::str_with("db_extra", &P.db_extra, check_extra),
        Param::str_with(COLUMN_PARAMS[0], &P.columns[0], not_empty),
        Param::str_with(COLUMN_PARAMS[1], &P.columns[1], not_empty),
        Param::str_with(COLUMN_PARAMS[2], &P.columns[2], not_empty),
        Param::str_with(COLUMN_PARAMS[3], &P.columns[3], not_empty),
        Param::str_with(COLUMN_PARAMS[4], &P.columns[4], not_empty),
        Param::str_with(COLUMN_PARAMS[5], &P.columns[5], not_empty),
        Param::str_with(COLUMN_PARAMS[6], &P.columns[6], not_empty),
        Param::int_range(
            "failed_transaction_flag",
            &P.failed_transaction_flag,
            -1,
            31,
        ),
        Param::bool("report_cancels", &P.report_cancels),
        Param::bool("report_ack", &P.report_ack),
        Param::bool("early_media", &P.early_media),
        Param::bool("detect_direction", &P.detect_direction),
        Param::str_with("multi_leg_info", &P.multi_leg_info, check_legs),
        Param::str("radius_config", &P.radius_config),
        Param::int_range("radius_flag", &P.radius_flag, -1, 31),
        Param::int_range("radius_missed_flag", &P.radius_missed_flag, -1, 31),
        Param::str_with("radius_extra", &P.radius_extra, check_extra),
        Param::int_range("service_type", &P.service_type, -1, u32::MAX as i64),
        Param::int_range("cdr_flag", &cdr::C.cdr_flag, -1, 31),
        Param::str_with("cdr_extra", &cdr::C.cdr_extra, check_extra),
        Param::bool("cdr_log_enable", &cdr::C.cdr_log_enable),
        Param::str_with("cdrs_table", &cdr::C.cdrs_table, cdr::check_table),
        Param::str_with("cdr_start_id", &cdr::C.cdr_start_id, cdr::check_id),
        Param::str_with("cdr_end_id", &cdr::C.cdr_end_id, cdr::check_id),
        Param::str_with("cdr_duration_id", &cdr::C.cdr_duration_id, cdr::check_id),
    ],
    cmds: &[
        CmdExport::new(
            "acc_log_request",
            1,
            1,
            REQUEST_ROUTE | FAILURE_ROUTE,
            cmd_acc_log_request,
        )
        .fixup(fixup_log_request),
        CmdExport::new(
            "acc_db_request",
            2,
            2,
            REQUEST_ROUTE | FAILURE_ROUTE,
            cmd_acc_db_request,
        )
        .fixup(fixup_db_request),
        CmdExport::new(
            "acc_rad_request",
            1,
            1,
            REQUEST_ROUTE | FAILURE_ROUTE,
            cmd_acc_rad_request,
        )
        .fixup(fixup_rad_request),
    ],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells (1.2 defaults; flags −1 = unset).
pub struct Cells {
    pub log_flag: IntParam,
    pub log_missed_flag: IntParam,
    pub log_level: IntParam,
    pub log_extra: StrParam,
    pub db_flag: IntParam,
    pub db_missed_flag: IntParam,
    pub db_url: StrParam,
    pub db_table_acc: StrParam,
    pub db_table_missed_calls: StrParam,
    pub db_extra: StrParam,
    pub columns: [StrParam; 7],
    pub failed_transaction_flag: IntParam,
    pub report_cancels: BoolParam,
    pub report_ack: BoolParam,
    pub early_media: BoolParam,
    pub detect_direction: BoolParam,
    pub multi_leg_info: StrParam,
    pub radius_config: StrParam,
    pub radius_flag: IntParam,
    pub radius_missed_flag: IntParam,
    pub radius_extra: StrParam,
    pub service_type: IntParam,
}

pub static P: Cells = Cells {
    log_flag: IntParam::new(-1),
    log_missed_flag: IntParam::new(-1),
    log_level: IntParam::new(L_NOTICE as i64),
    log_extra: StrParam::new(""),
    db_flag: IntParam::new(-1),
    db_missed_flag: IntParam::new(-1),
    db_url: StrParam::new(""),
    db_table_acc: StrParam::new("acc"),
    db_table_missed_calls: StrParam::new("missed_calls"),
    db_extra: StrParam::new(""),
    columns: [
        StrParam::new("method"),
        StrParam::new("from_tag"),
        StrParam::new("to_tag"),
        StrParam::new("callid"),
        StrParam::new("sip_code"),
        StrParam::new("sip_reason"),
        StrParam::new("time"),
    ],
    failed_transaction_flag: IntParam::new(-1),
    report_cancels: BoolParam::new(false),
    report_ack: BoolParam::new(false),
    early_media: BoolParam::new(false),
    detect_direction: BoolParam::new(false),
    multi_leg_info: StrParam::new(""),
    radius_config: StrParam::new(openser_radius::DEFAULT_CONFIG),
    radius_flag: IntParam::new(-1),
    radius_missed_flag: IntParam::new(-1),
    radius_extra: StrParam::new(""),
    service_type: IntParam::new(-1),
};

fn not_empty(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(())
}

fn check_extra(s: &str) -> Result<(), String> {
    parse_extra(s).map(|_| ())
}

fn check_legs(s: &str) -> Result<(), String> {
    parse_legs(s).map(|_| ())
}

/// `multi_leg_info`: like an extra definition, every value an AVP.
pub fn parse_legs(s: &str) -> Result<Vec<Extra>, String> {
    let legs = parse_extra(s)?;
    for l in &legs {
        if !matches!(l.spec.param, Some(PvParam::Avp(_))) || l.spec.index.is_some() {
            return Err(format!(
                "acc: multi_leg_info: {} is not a plain AVP",
                l.spec.text
            ));
        }
    }
    Ok(legs)
}

/// At most this many legs per record (a loop in the script cannot flood the log).
pub const MAX_LEGS: i64 = 32;

/// The legs of the current request: the k-th value of every leg AVP for k = 0, 1, …
/// while one has a value; one all-NULL leg when none has (1.2's `legs2strar`).
pub fn eval_legs(ctx: &mut Ctx, legs: &[Extra]) -> Vec<Vec<(String, PvValue)>> {
    let mut out = Vec::new();
    if legs.is_empty() {
        return out;
    }
    for k in 0..MAX_LEGS {
        let leg: Vec<(String, PvValue)> = legs
            .iter()
            .map(|l| {
                let mut spec = l.spec.clone();
                spec.index = Some(PvIndex::Int(k));
                (l.name.clone(), ctx.get_pv(&spec))
            })
            .collect();
        if leg.iter().all(|(_, v)| *v == PvValue::Null) {
            if k == 0 {
                out.push(leg);
            }
            break;
        }
        out.push(leg);
    }
    out
}

/// acc parameters as a value (flags: −1 = unset).
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
    /// `radius_config` when `modparam` set it, else "" (the 1.2 default path is used
    /// when RADIUS is on for another reason).
    pub radius_config: String,
    pub radius_flag: i32,
    pub radius_missed_flag: i32,
    pub radius_extra: String,
    pub service_type: i64,
}

/// The parameters in effect (1.2 defaults where `modparam` set nothing).
pub fn params() -> AccParams {
    let int = |p: &IntParam| p.get() as i32;
    AccParams {
        log_flag: int(&P.log_flag),
        log_missed_flag: int(&P.log_missed_flag),
        log_level: int(&P.log_level),
        log_extra: P.log_extra.get().into(),
        db_flag: int(&P.db_flag),
        db_missed_flag: int(&P.db_missed_flag),
        db_url: P.db_url.get().into(),
        db_table_acc: P.db_table_acc.get().into(),
        db_table_missed_calls: P.db_table_missed_calls.get().into(),
        db_extra: P.db_extra.get().into(),
        columns: P.columns.each_ref().map(|c| c.get().to_string()),
        failed_transaction_flag: int(&P.failed_transaction_flag),
        report_cancels: P.report_cancels.get(),
        report_ack: P.report_ack.get(),
        early_media: P.early_media.get(),
        detect_direction: P.detect_direction.get(),
        multi_leg_info: P.multi_leg_info.get().into(),
        radius_config: if P.radius_config.is_set() {
            P.radius_config.get().into()
        } else {
            String::new()
        },
        radius_flag: int(&P.radius_flag),
        radius_missed_flag: int(&P.radius_missed_flag),
        radius_extra: P.radius_extra.get().into(),
        service_type: P.service_type.get(),
    }
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
    pub legs: Vec<Extra>,
    pub rad_extra: Vec<Extra>,
}

impl Config {
    pub fn new(p: AccParams) -> Result<Config, String> {
        for (n, f) in [
            ("log_flag", p.log_flag),
            ("log_missed_flag", p.log_missed_flag),
            ("db_flag", p.db_flag),
            ("db_missed_flag", p.db_missed_flag),
            ("failed_transaction_flag", p.failed_transaction_flag),
            ("radius_flag", p.radius_flag),
            ("radius_missed_flag", p.radius_missed_flag),
        ] {
            if !(-1..32).contains(&f) {
                return Err(format!("acc: {n} out of range: {f} (0..31)"));
            }
        }
        Ok(Config {
            log_extra: parse_extra(&p.log_extra)?,
            db_extra: parse_extra(&p.db_extra)?,
            legs: parse_legs(&p.multi_leg_info)?,
            rad_extra: parse_extra(&p.radius_extra)?,
            p,
        })
    }

    fn db_on(&self) -> bool {
        !self.p.db_url.is_empty()
    }

    /// Whether RADIUS accounting is wanted (set up at mod_init).
    pub fn rad_wanted(&self) -> bool {
        !self.p.radius_config.is_empty()
            || self.p.radius_flag != -1
            || self.p.radius_missed_flag != -1
            || RAD_REQUESTED.load(Ordering::Relaxed)
    }

    fn rad_on(&self) -> bool {
        radius::on()
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
    /// `multi_leg_info` values, one set per leg (empty without multi_leg_info).
    pub legs: Vec<Vec<(String, PvValue)>>,
}

/// Record of `req` with `code`/`reason`; `to_tag` None = the request's own To tag.
pub fn record_of(req: &SipMsg, code: &str, reason: &str, to_tag: Option<&str>) -> Record {
    let tag = |t: Option<&openser_core::parser::NameAddr>| {
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
        legs: Vec::new(),
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
    for (n, v) in r.extra.iter().chain(r.legs.iter().flatten()) {
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
        row.push((n.clone(), db_val(v)));
    }
    row
}

/// Insert `r` into `table` over `conn`: one row, or one per leg with the leg columns.
pub fn db_insert(
    conn: &mut dyn DbConn,
    cols: &[String; 7],
    table: &str,
    ts: i64,
    r: &Record,
) -> Result<(), db::DbError> {
    let row = db_row(cols, ts, r);
    let base: Vec<(&str, DbVal)> = row.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
    if r.legs.is_empty() {
        return conn.insert(table, &base);
    }
    for leg in &r.legs {
        let mut vals = base.clone();
        for (n, v) in leg {
            vals.push((n.as_str(), db_val(v)));
        }
        conn.insert(table, &vals)?;
    }
    Ok(())
}

pub(crate) fn db_val(v: &PvValue) -> DbVal {
    match v {
        PvValue::Null => DbVal::Null,
        PvValue::Int(i) => DbVal::Int(*i),
        PvValue::Str(s) => DbVal::Str(s.clone()),
    }
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

// ------------------------------------------------------------------ parameters

static FROZEN: OnceLock<Config> = OnceLock::new();

/// The script calls `acc_rad_request` (set by its fixup, while the config loads).
static RAD_REQUESTED: AtomicBool = AtomicBool::new(false);

fn cfg() -> &'static Config {
    static FALLBACK: OnceLock<Config> = OnceLock::new();
    FROZEN
        .get()
        .unwrap_or_else(|| FALLBACK.get_or_init(|| Config::new(params()).expect("default config")))
}

// ------------------------------------------------------------------ init

fn mod_init() -> Result<(), String> {
    let c = Config::new(params())?;
    if c.p.detect_direction {
        if !openser_core::module::is_loaded("rr") {
            return Err("acc: detect_direction needs the rr module".into());
        }
        rr::register_rrcb(mark_upstream);
    }
    if c.p.early_media {
        callbacks::want_provisional();
    }
    if c.p.report_ack {
        callbacks::want_e2e_ack();
    }
    if c.db_on() {
        db::check_url(&c.p.db_url).map_err(|e| format!("acc: {e}"))?;
    }
    if c.rad_wanted() {
        radius::init(&c)?;
    }
    // Only transactions carrying one of these flags produce records.
    let p = &c.p;
    let flags = flag_bit(p.log_flag)
        | flag_bit(p.log_missed_flag)
        | flag_bit(p.db_flag)
        | flag_bit(p.db_missed_flag)
        | flag_bit(p.radius_flag)
        | flag_bit(p.radius_missed_flag);
    let db_url = c.p.db_url.clone();
    let _ = FROZEN.set(c);
    callbacks::register(on_tm_event, flags);
    cdr::init(&db_url)
}

fn child_init(_rank: i32) -> Result<(), String> {
    if cfg().db_on() {
        db::open_in_child("acc", &cfg().p.db_url);
    }
    Ok(())
}

// ------------------------------------------------------------------ output

fn emit_log(prefix: &str, r: &Record) {
    let level = cfg().p.log_level;
    if log::enabled(level) {
        log::emit(
            level,
            &format!("{}\n", log_line(prefix, openser_core::clock::now(), r)),
        );
    }
}

/// Insert into `table` with this process's connection; false on error (logged).
fn emit_db(table: &str, r: &Record) -> bool {
    let c = cfg();
    if !c.db_on() {
        return false;
    }
    let now = openser_core::clock::now();
    match db::with_conn(&c.p.db_url, |conn| {
        db_insert(conn, &c.p.columns, table, now, r)
    }) {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            openser_core::log_err!("failed to insert into {table}: {e}");
            false
        }
        Err(e) => {
            openser_core::log_err!("can't connect to the database: {e}");
            false
        }
    }
}

// ------------------------------------------------------------------ tm callbacks

/// The tm hook: transaction and missed-call accounting; returns the missed-call flags
/// to reset on the transaction.
fn on_tm_event(ev: &mut TmEvent) -> u32 {
    account_event(cfg(), ev, &mut |prefix, dest, r| {
        match dest {
            Dest::Log => emit_log(prefix, r),
            Dest::Db(t) => {
                emit_db(t, r);
            }
            Dest::Radius => {
                radius::emit(r);
            }
        };
    })
}

/// Where a record goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest<'a> {
    Log,
    /// This SQL table.
    Db(&'a str),
    Radius,
}

/// Sink for records: (log prefix, destination, record).
pub type Sink<'a> = dyn FnMut(&str, Dest<'_>, &Record) + 'a;

pub const P_ANSWERED: &str = "ACC: transaction answered: ";
pub const P_MISSED: &str = "ACC: call missed: ";
pub const P_REQUEST: &str = "ACC: request accounted: ";
pub const P_ACKED: &str = "ACC: request acknowledged: ";

/// The transaction AVP marking an in-dialog request that goes upstream
/// (`detect_direction`).
const UPSTREAM_AVP: &str = "acc:upstream";

/// rr callback (detect_direction): mark a request going upstream.
fn mark_upstream(ctx: &mut Ctx, params: &str) {
    if rr::is_upstream_in(ctx.msg, params) == Some(true) {
        let id = AvpId::Str(UPSTREAM_AVP.into());
        ctx.avps.del_all(&id);
        ctx.avps.add(id, PvValue::Int(1));
    }
}

/// `req` with the bodies of its From and To headers exchanged (None if it lacks one).
pub fn swap_from_to(req: &SipMsg) -> Option<SipMsg> {
    let f = req.hdrs().get(req.first_of(HdrType::From)?)?.body;
    let t = req.hdrs().get(req.first_of(HdrType::To)?)?.body;
    let mut lumps = openser_core::msg::lumps::Lumps::default();
    lumps.replace(f.start as usize, f.len as usize, t.bytes(req.buf()));
    lumps.replace(t.start as usize, t.len as usize, f.bytes(req.buf()));
    let mut m = SipMsg::new(&lumps.apply(req.buf()), req.rcv).ok()?;
    m.flags = req.flags;
    m.new_uri = req.new_uri.clone();
    Some(m)
}

/// The standard reason phrase of a 2xx (for the record of an ACK).
fn reason_2xx(code: u16) -> &'static str {
    match code {
        200 => "OK",
        202 => "Accepted",
        _ => "",
    }
}

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
    let want_rad = c.rad_on() && flag_set(flags, p.radius_flag);
    let miss_rad = c.rad_on() && flag_set(flags, p.radius_missed_flag);
    if !(want_log || want_db || miss_log || miss_db || want_rad || miss_rad) {
        return 0;
    }
    let code = ev.code;
    let kind = ev.kind;
    let is_invite = method == Method::Invite;
    let upstream = p.detect_direction && ev.avps.get(&AvpId::Str(UPSTREAM_AVP.into())).is_some();
    let mut base = match kind {
        TmEventKind::E2eAck => record_of(&ev.req, &code.to_string(), reason_2xx(code), None),
        _ => record_of(&ev.req, &code.to_string(), &ev.reason, Some(&ev.to_tag)),
    };
    if upstream {
        std::mem::swap(&mut base.from_tag, &mut base.to_tag);
        if let Some(m) = swap_from_to(&ev.req) {
            ev.req = m;
        }
    }
    let mut clear = 0;
    let mut ctx = Ctx::new(&mut ev.req, FAILURE_ROUTE);
    ctx.avps = std::mem::take(&mut ev.avps);
    let legs = eval_legs(&mut ctx, &c.legs);
    let with = |ctx: &mut Ctx, extra: &[Extra]| {
        let mut r = base.clone();
        r.extra = eval_extra(ctx, extra);
        r.legs = legs.clone();
        r
    };
    if kind == TmEventKind::E2eAck {
        if p.report_ack {
            if want_log {
                out(P_ACKED, Dest::Log, &with(&mut ctx, &c.log_extra));
            }
            if want_db {
                out(
                    P_ACKED,
                    Dest::Db(&p.db_table_acc),
                    &with(&mut ctx, &c.db_extra),
                );
            }
            if want_rad {
                out(P_ACKED, Dest::Radius, &with(&mut ctx, &c.rad_extra));
            }
        }
        return 0;
    }
    if is_invite
        && code >= 300
        && (miss_log || miss_db || miss_rad)
        && matches!(kind, TmEventKind::ReplyOut | TmEventKind::Failure)
    {
        if miss_log {
            out(P_MISSED, Dest::Log, &with(&mut ctx, &c.log_extra));
            clear |= flag_bit(p.log_missed_flag);
        }
        if miss_db {
            out(
                P_MISSED,
                Dest::Db(&p.db_table_missed_calls),
                &with(&mut ctx, &c.db_extra),
            );
            clear |= flag_bit(p.db_missed_flag);
        }
        if miss_rad {
            out(P_MISSED, Dest::Radius, &with(&mut ctx, &c.rad_extra));
            clear |= flag_bit(p.radius_missed_flag);
        }
    }
    // Transaction records only when the final reply (or, early_media, a 183) goes
    // upstream.
    let accountable = match kind {
        TmEventKind::ReplyOut => {
            (200..300).contains(&code)
                || (code >= 300 && flag_set(flags, p.failed_transaction_flag))
        }
        TmEventKind::Provisional => p.early_media && code == 183,
        _ => false,
    };
    if accountable {
        if want_log {
            out(P_ANSWERED, Dest::Log, &with(&mut ctx, &c.log_extra));
        }
        if want_db {
            out(
                P_ANSWERED,
                Dest::Db(&p.db_table_acc),
                &with(&mut ctx, &c.db_extra),
            );
        }
        if want_rad {
            out(P_ANSWERED, Dest::Radius, &with(&mut ctx, &c.rad_extra));
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

fn fixup_rad_request(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let c = args.first().ok_or("acc_rad_request: missing comment")?;
    RAD_REQUESTED.store(true, Ordering::Relaxed);
    Ok(vec![FixedArg::Str(string_arg(c)?)])
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
    r.legs = eval_legs(ctx, &cfg().legs);
    r
}

/// Account the current request now (1.2's `acc_log_request` / `acc_db_request` as
/// another module calls them: uac_redirect's accounting of followed redirects): to the
/// log when `table` is None, else into `table`. The script's rc.
pub fn acc_request(ctx: &mut Ctx, comment: &str, table: Option<&str>) -> i32 {
    let c = cfg();
    match table {
        None => {
            let r = request_record(ctx, comment, &c.log_extra);
            emit_log(P_REQUEST, &r);
            1
        }
        Some(t) => {
            if !c.db_on() {
                openser_core::log_err!("no db_url configured");
                return -1;
            }
            let r = request_record(ctx, comment, &c.db_extra);
            if emit_db(t, &r) { 1 } else { -1 }
        }
    }
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
        openser_core::log_err!("no db_url configured");
        return -1;
    }
    let table = match args.get(1) {
        Some(FixedArg::Str(t)) => t.clone(),
        _ => return -1,
    };
    let r = request_record(ctx, &comment_of(args), &c.db_extra);
    if emit_db(&table, &r) { 1 } else { -1 }
}

fn cmd_acc_rad_request(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let c = cfg();
    let r = request_record(ctx, &comment_of(args), &c.rad_extra);
    if radius::emit(&r) { 1 } else { -1 }
}
