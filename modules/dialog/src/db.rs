//! Dialogs in a database table (`db_mode`), so they survive a restart: loaded at
//! start-up (attendant, a short-lived connection dropped before fork); with `db_mode`
//! 1 (and 2) a dialog's row is written when it is confirmed (after the 2xx, from tm's
//! final-reply callback, with no lock held) and again on its ACK, and deleted when it
//! ends; with 3 every dialog is written at shutdown. Rows are keyed by Call-ID and
//! From tag; writes happen after the bucket lock is released (no lock across a
//! database call).
//!
//! Columns (Kamailio 3.1's names, with OpenSIPS's `vars` and `profiles`): `h_entry`,
//! `h_id`, `callid`, `from_uri`, `from_tag`, `to_uri`, `to_tag`, `caller_cseq`,
//! `callee_cseq`, `caller_route_set`, `callee_route_set`, `caller_contact`,
//! `callee_contact`, `state`, `start_time`, `timeout` (the expiry, seconds since the
//! epoch), `vars` (`name=value;…`, `%`-escaped), `profiles` (`profile=key;…`).

use std::cell::RefCell;

use openser_core::db::{DbConn, DbVal, Key};

use super::table::{
    DlgInfo, F_CALLEE_CONTACT, F_CALLEE_ROUTE, F_CALLER_CONTACT, F_CALLER_ROUTE, F_CALLID, F_FROM,
    F_FTAG, F_TO, F_TTAG, NF, Table, callid_hash,
};
use super::{P, profiles};

const COLS: [&str; 18] = [
    "h_entry",
    "h_id",
    "callid",
    "from_uri",
    "from_tag",
    "to_uri",
    "to_tag",
    "caller_cseq",
    "callee_cseq",
    "caller_route_set",
    "callee_route_set",
    "caller_contact",
    "callee_contact",
    "state",
    "start_time",
    "timeout",
    "vars",
    "profiles",
];

thread_local! {
    /// Dialogs (entry, id) confirmed under a tm lock, written by [`flush`] once it is
    /// released.
    static DIRTY: RefCell<Vec<(u32, u32)>> = const { RefCell::new(Vec::new()) };
}

/// Whether rows are written as dialogs change (db_mode 1 or 2).
pub fn realtime() -> bool {
    matches!(P.db_mode.get(), 1 | 2)
}

pub fn enabled() -> bool {
    P.db_mode.get() != 0
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => o.push_str("%25"),
            ';' => o.push_str("%3B"),
            '=' => o.push_str("%3D"),
            c => o.push(c),
        }
    }
    o
}

fn unesc(s: &str) -> String {
    s.replace("%3D", "=")
        .replace("%3B", ";")
        .replace("%25", "%")
}

/// `name=value;…` of the variables.
pub fn vars_text(vars: &[(String, String)]) -> String {
    vars.iter()
        .map(|(n, v)| format!("{}={};", esc(n), esc(v)))
        .collect()
}

pub fn vars_parse(s: &str) -> Vec<(String, String)> {
    s.split(';')
        .filter_map(|p| p.split_once('='))
        .map(|(n, v)| (unesc(n), unesc(v)))
        .filter(|(n, _)| !n.is_empty())
        .collect()
}

/// `profile=key;…` of the profile links (the key of the value in hex, 0 = none).
fn profiles_text(links: &[(u32, u64)]) -> String {
    links
        .iter()
        .filter_map(|(p, v)| {
            profiles()
                .get(*p as usize)
                .map(|(n, _)| format!("{n}={v:x};"))
        })
        .collect()
}

/// The links of a `profiles` column; profiles no longer declared are dropped.
fn profiles_parse(s: &str) -> Vec<(u32, u64)> {
    s.split(';')
        .filter_map(|p| p.split_once('='))
        .filter_map(|(n, v)| {
            let idx = profiles().iter().position(|(pn, _)| pn == n)? as u32;
            Some((idx, u64::from_str_radix(v, 16).ok()?))
        })
        .collect()
}

fn row_of(d: &DlgInfo) -> Vec<(&'static str, DbVal)> {
    let f = &d.f;
    let s = |k: usize| DbVal::Str(f[k].clone());
    let vals = [
        DbVal::Int(i64::from(d.h_entry)),
        DbVal::Int(i64::from(d.h_id)),
        s(F_CALLID),
        s(F_FROM),
        s(F_FTAG),
        s(F_TO),
        s(F_TTAG),
        DbVal::Int(i64::from(d.cseq_caller)),
        DbVal::Int(i64::from(d.cseq_callee)),
        s(F_CALLER_ROUTE),
        s(F_CALLEE_ROUTE),
        s(F_CALLER_CONTACT),
        s(F_CALLEE_CONTACT),
        DbVal::Int(i64::from(d.state)),
        DbVal::Int(i64::from(d.start)),
        DbVal::Int(i64::from(d.expires)),
        DbVal::Str(vars_text(&d.vars)),
        DbVal::Str(profiles_text(&d.profiles)),
    ];
    COLS.iter().copied().zip(vals).collect()
}

fn keys_of(d: &DlgInfo) -> Vec<Key> {
    vec![
        Key::eq("callid", d.f[F_CALLID].as_str()),
        Key::eq("from_tag", d.f[F_FTAG].as_str()),
    ]
}

fn write(c: &mut dyn DbConn, d: &DlgInfo) -> Result<(), openser_core::db::DbError> {
    c.delete(P.table_name.get(), &keys_of(d))?;
    c.insert(P.table_name.get(), &row_of(d))
}

/// Write (replace) the row of `d` now (no lock held).
pub fn store(d: &DlgInfo) {
    let r = openser_core::db::with_conn(P.db_url.get(), |c| write(c, d));
    if let Err(e) | Ok(Err(e)) = r {
        openser_core::log_err!("cannot store dialog {}: {e}", d.callid());
    }
}

/// Delete the row of `d` now (no lock held).
pub fn delete(d: &DlgInfo) {
    let r = openser_core::db::with_conn(P.db_url.get(), |c| {
        c.delete(P.table_name.get(), &keys_of(d)).map(drop)
    });
    if let Err(e) | Ok(Err(e)) = r {
        openser_core::log_err!("cannot delete dialog {}: {e}", d.callid());
    }
}

/// Queue dialog (entry, id) to be stored by [`flush`] (called under a lock).
pub fn mark(entry: u32, id: u32) {
    DIRTY.with(|q| q.borrow_mut().push((entry, id)));
}

/// Store the queued dialogs (no lock held).
pub fn flush(t: &Table) {
    let q = DIRTY.with(|q| std::mem::take(&mut *q.borrow_mut()));
    for (e, i) in q {
        let Some(b) = t.lock_bucket(e) else { continue };
        let Some(c) = b.find_id(i) else { continue };
        let d = b.db_claim(c).then(|| b.info(c));
        drop(b);
        if let Some(d) = d {
            write_loop(t, d);
        }
    }
}

/// The dialog of cell `c` changed: store it now unless a write is running, which
/// then writes it again (`b`: its bucket, released before the write).
pub fn changed(t: &Table, b: super::table::Bucket<'_>, c: u32) {
    let d = b.db_claim(c).then(|| b.info(c));
    drop(b);
    if let Some(d) = d {
        write_loop(t, d);
    }
}

/// Write `d`, then again while the dialog changed during the write; when it ended
/// meanwhile, delete its row (so a write racing its end leaves no row behind).
fn write_loop(t: &Table, mut d: DlgInfo) {
    for _ in 0..8 {
        store(&d);
        let Some(b) = t.lock_bucket(d.h_entry) else {
            return;
        };
        match b.find_id(d.h_id) {
            None => {
                drop(b);
                delete(&d);
                return;
            }
            Some(c) => {
                if !b.db_release(c) {
                    return;
                }
                d = b.info(c);
            }
        }
    }
}

fn int(v: Option<&DbVal>) -> u32 {
    v.and_then(DbVal::as_int)
        .map_or(0, |i| i.clamp(0, i64::from(u32::MAX)) as u32)
}

fn text(v: Option<&DbVal>) -> String {
    v.and_then(|v| v.as_str().map(|s| s.into_owned()))
        .unwrap_or_default()
}

/// Start-up (attendant): the dialogs of the table into `t`; with `db_mode` 3 the rows
/// are then deleted (they are written again at shutdown). Returns how many, and how
/// many of them are confirmed.
pub fn load(t: &Table) -> Result<(usize, u64), String> {
    let url = P.db_url.get();
    let table = P.table_name.get();
    let mut c = openser_core::db::connect(url).map_err(|e| format!("dialog: {e}"))?;
    let rows = c
        .query(table, &[], &COLS, None)
        .map_err(|e| format!("dialog: cannot load table {table}: {e}"))?;
    let mut n = 0;
    let mut confirmed = 0;
    for r in &rows {
        let mut f: [String; NF] = Default::default();
        for (k, col) in [
            (F_CALLID, 2),
            (F_FROM, 3),
            (F_FTAG, 4),
            (F_TO, 5),
            (F_TTAG, 6),
            (F_CALLER_ROUTE, 9),
            (F_CALLEE_ROUTE, 10),
            (F_CALLER_CONTACT, 11),
            (F_CALLEE_CONTACT, 12),
        ] {
            f[k] = text(r.get(col));
        }
        if f[F_CALLID].is_empty() {
            continue;
        }
        let d = DlgInfo {
            h_entry: callid_hash(&f[F_CALLID], t.size()),
            h_id: int(r.get(1)),
            state: int(r.get(13)),
            start: int(r.get(14)),
            expires: int(r.get(15)),
            cseq_caller: int(r.get(7)),
            cseq_callee: int(r.get(8)),
            vars: vars_parse(&text(r.get(16))),
            profiles: profiles_parse(&text(r.get(17))),
            f,
            ..DlgInfo::default()
        };
        let Some(b) = t.lock_bucket(d.h_entry) else {
            continue;
        };
        if b.find(d.callid(), &d.f[F_FTAG], None).is_some() {
            continue;
        }
        match b.restore(&d) {
            Ok(_) => {
                n += 1;
                if super::is_confirmed(d.state) {
                    confirmed += 1;
                }
            }
            Err(e) => {
                openser_core::log_err!("dialog {} not restored: {e:?}", d.callid());
            }
        }
    }
    if P.db_mode.get() == 3 {
        c.delete(table, &[])
            .map_err(|e| format!("dialog: cannot empty table {table}: {e}"))?;
    }
    Ok((n, confirmed))
}

/// Shutdown (attendant, db_mode 3): every dialog into the table.
pub fn store_all(t: &Table) {
    let mut all = Vec::new();
    for e in 0..t.size() {
        if let Some(b) = t.lock_bucket(e) {
            all.extend(b.cells().into_iter().map(|c| b.info(c)));
        }
    }
    let mut c = match openser_core::db::connect(P.db_url.get()) {
        Ok(c) => c,
        Err(e) => {
            openser_core::log_err!("cannot store {} dialogs: {e}", all.len());
            return;
        }
    };
    for d in all.iter().filter(|d| super::is_confirmed(d.state)) {
        if let Err(e) = write(c.as_mut(), d) {
            openser_core::log_err!("cannot store dialog {}: {e}", d.callid());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_text_round_trip() {
        let v = vec![
            ("a".to_string(), "x;y=z%".to_string()),
            ("b".to_string(), String::new()),
        ];
        assert_eq!(vars_parse(&vars_text(&v)), v);
        assert!(vars_parse("").is_empty());
        assert!(vars_parse(";;=x;").is_empty());
    }
}
