//! Call detail records from dialogs (OpenSIPS 1.x's CDR mode, Kamailio's `cdr_enable`):
//! one record per answered call, written when its dialog ends.
//!
//! The scheme is OpenSIPS's: an initial INVITE carrying message flag `cdr_flag` whose
//! dialog the dialog module tracks (`dlg_flag` / `dlg_manage()`) is marked for a CDR when
//! its dialog is created (dialog variable `acc_cdr`, so the mark survives a restart with
//! the dialog's `db_mode`). When a confirmed, marked dialog ends — a BYE from either side,
//! its timeout, `dlg_bye()` or MI `dlg_end_dlg` — the record is
//! `ACC: call ended: <start>=…;<end>=…;<duration>=…;call_id=…;from_tag=…;to_tag=…;
//! from_uri=…;to_uri=…;cause=bye|timeout|terminated[;cdr_extra…]` in the log
//! (`cdr_log_enable`, at `log_level`), and a row in `cdrs_table` on `db_url` when that
//! table is named. Start is the 2xx, end the moment the dialog ended, duration their
//! difference in seconds; `<start>`, `<end>` and `<duration>` are the names of
//! `cdr_start_id`, `cdr_end_id` and `cdr_duration_id` (Kamailio's). `cdr_extra`
//! (`name=$pv;…`) is evaluated at the end on the message that ended the call (the BYE;
//! for a timeout or MI a fake request), where `$dlg_var(x)` reads the dialog's stored
//! variables. Calls never answered give no CDR (missed calls are acc's usual records).

use openser_core::db::DbVal;
use openser_core::log;
use openser_core::module::{BoolParam, IntParam, StrParam};
use openser_core::script::{Ctx, PvValue};

use crate::{Extra, eval_extra, flag_set, parse_extra};

/// The CDR parameters (`modparam("acc", …)`).
pub struct CdrParams {
    pub cdr_flag: IntParam,
    pub cdr_extra: StrParam,
    pub cdr_log_enable: BoolParam,
    pub cdrs_table: StrParam,
    pub cdr_start_id: StrParam,
    pub cdr_end_id: StrParam,
    pub cdr_duration_id: StrParam,
}

pub static C: CdrParams = CdrParams {
    cdr_flag: IntParam::new(-1),
    cdr_extra: StrParam::new(""),
    cdr_log_enable: BoolParam::new(true),
    cdrs_table: StrParam::new(""),
    cdr_start_id: StrParam::new("start_time"),
    cdr_end_id: StrParam::new("end_time"),
    cdr_duration_id: StrParam::new("duration"),
};

/// The dialog variable marking a dialog for a CDR.
pub const MARK: &str = "acc_cdr";

pub const P_CDR: &str = "ACC: call ended: ";

/// One CDR.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cdr {
    /// seconds since the epoch: the 2xx, the end
    pub start: i64,
    pub end: i64,
    pub callid: String,
    pub from_tag: String,
    pub to_tag: String,
    pub from_uri: String,
    pub to_uri: String,
    pub cause: &'static str,
    pub extra: Vec<(String, PvValue)>,
}

impl Cdr {
    pub fn duration(&self) -> i64 {
        (self.end - self.start).max(0)
    }

    /// The log line (no prefix, no newline).
    pub fn log_line(&self, ids: [&str; 3]) -> String {
        let mut s = format!(
            "{}={};{}={};{}={};call_id={};from_tag={};to_tag={};from_uri={};to_uri={};cause={}",
            ids[0],
            self.start,
            ids[1],
            self.end,
            ids[2],
            self.duration(),
            self.callid,
            self.from_tag,
            self.to_tag,
            self.from_uri,
            self.to_uri,
            self.cause
        );
        for (n, v) in &self.extra {
            s.push(';');
            s.push_str(n);
            s.push('=');
            v.push_to(&mut s);
        }
        s
    }

    /// The row of `cdrs_table`: the times (DATETIME), the duration (seconds), the call's
    /// identity, the cause, then the extras.
    pub fn db_row(&self, ids: [&str; 3]) -> Vec<(String, DbVal)> {
        let st = |v: &str| DbVal::Str(v.to_string());
        let mut row = vec![
            (ids[0].to_string(), DbVal::DateTime(self.start)),
            (ids[1].to_string(), DbVal::DateTime(self.end)),
            (ids[2].to_string(), DbVal::Int(self.duration())),
            ("callid".to_string(), st(&self.callid)),
            ("from_tag".to_string(), st(&self.from_tag)),
            ("to_tag".to_string(), st(&self.to_tag)),
            ("from_uri".to_string(), st(&self.from_uri)),
            ("to_uri".to_string(), st(&self.to_uri)),
            ("cause".to_string(), st(self.cause)),
        ];
        for (n, v) in &self.extra {
            row.push((n.clone(), crate::db_val(v)));
        }
        row
    }
}

fn ids() -> [&'static str; 3] {
    [
        C.cdr_start_id.get(),
        C.cdr_end_id.get(),
        C.cdr_duration_id.get(),
    ]
}

/// A CDR field or column name.
pub fn check_id(s: &str) -> Result<(), String> {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(())
    } else {
        Err(format!("bad CDR field name '{s}'"))
    }
}

/// `cdrs_table`: empty (no DB records) or a table name.
pub fn check_table(s: &str) -> Result<(), String> {
    if s.is_empty() { Ok(()) } else { check_id(s) }
}

/// The parsed `cdr_extra`, set at mod_init.
static EXTRA: std::sync::OnceLock<Vec<Extra>> = std::sync::OnceLock::new();

/// mod_init: with `cdr_flag` set, bind the dialog module's creation and end callbacks.
pub fn init(db_url: &str) -> Result<(), String> {
    if C.cdr_flag.get() < 0 {
        return Ok(());
    }
    if !openser_core::module::is_loaded("dialog") {
        return Err("acc: cdr_flag needs the dialog module".into());
    }
    if !C.cdrs_table.get().is_empty() && db_url.is_empty() {
        return Err("acc: cdrs_table needs db_url".into());
    }
    let _ = EXTRA.set(parse_extra(C.cdr_extra.get())?);
    dialog::register_create_cb(on_create);
    dialog::register_end_cb(on_end);
    Ok(())
}

/// A dialog is being created: mark it when its INVITE carries `cdr_flag`.
fn on_create(ctx: &mut Ctx) -> Vec<(String, String)> {
    if flag_set(ctx.msg.flags, C.cdr_flag.get() as i32) {
        vec![(MARK.to_string(), "1".to_string())]
    } else {
        Vec::new()
    }
}

fn cause_name(c: dialog::EndCause) -> &'static str {
    match c {
        dialog::EndCause::Bye => "bye",
        dialog::EndCause::Timeout => "timeout",
        dialog::EndCause::Terminated => "terminated",
    }
}

/// The CDR of ended dialog `d` (None when it is not marked).
pub fn cdr_of(
    ctx: &mut Ctx,
    d: &dialog::DlgInfo,
    cause: dialog::EndCause,
    end: u32,
    extra: &[Extra],
) -> Option<Cdr> {
    if !d.vars.iter().any(|(k, _)| k == MARK) {
        return None;
    }
    let f = &d.f;
    Some(Cdr {
        start: i64::from(d.start),
        end: i64::from(end),
        callid: f[dialog::F_CALLID].clone(),
        from_tag: f[dialog::F_FTAG].clone(),
        to_tag: f[dialog::F_TTAG].clone(),
        from_uri: f[dialog::F_FROM].clone(),
        to_uri: f[dialog::F_TO].clone(),
        cause: cause_name(cause),
        extra: eval_extra(ctx, extra),
    })
}

/// A confirmed dialog ended (no lock held): its CDR to the log and the table.
fn on_end(ctx: &mut Ctx, d: &dialog::DlgInfo, cause: dialog::EndCause, end: u32) {
    let extra = EXTRA.get().map(Vec::as_slice).unwrap_or(&[]);
    let Some(cdr) = cdr_of(ctx, d, cause, end, extra) else {
        return;
    };
    if C.cdr_log_enable.get() {
        let level = crate::cfg().p.log_level;
        if log::enabled(level) {
            log::emit(level, &format!("{P_CDR}{}\n", cdr.log_line(ids())));
        }
    }
    let table = C.cdrs_table.get();
    if table.is_empty() {
        return;
    }
    let url = &crate::cfg().p.db_url;
    let row = cdr.db_row(ids());
    let vals: Vec<(&str, DbVal)> = row.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
    match openser_core::db::with_conn(url, |conn| conn.insert(table, &vals)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => openser_core::log_err!("failed to insert the CDR into {table}: {e}"),
        Err(e) => openser_core::log_err!("can't connect to the database: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdr_line_and_row() {
        let c = Cdr {
            start: 100,
            end: 103,
            callid: "c1".into(),
            from_tag: "f".into(),
            to_tag: "t".into(),
            from_uri: "sip:a@x".into(),
            to_uri: "sip:b@x".into(),
            cause: "bye",
            extra: vec![
                ("who".into(), PvValue::Str("alice".into())),
                ("none".into(), PvValue::Null),
            ],
        };
        let ids = ["start_time", "end_time", "duration"];
        assert_eq!(
            c.log_line(ids),
            "start_time=100;end_time=103;duration=3;call_id=c1;from_tag=f;to_tag=t;\
             from_uri=sip:a@x;to_uri=sip:b@x;cause=bye;who=alice;none=<null>"
        );
        let row = c.db_row(ids);
        assert_eq!(row[0], ("start_time".into(), DbVal::DateTime(100)));
        assert_eq!(row[2], ("duration".into(), DbVal::Int(3)));
        assert_eq!(row[9], ("who".into(), DbVal::Str("alice".into())));
        assert_eq!(row[10], ("none".into(), DbVal::Null));
        // a clock step back never gives a negative duration
        let back = Cdr {
            end: 90,
            ..c.clone()
        };
        assert_eq!(back.duration(), 0);
        assert!(check_id("start_time").is_ok());
        assert!(check_id("a b").is_err());
        assert!(check_table("").is_ok());
    }
}
