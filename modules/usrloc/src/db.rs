//! usrloc and the database: `db_mode` 1 (write-through), 2 (write-back), 3 (DB only)
//! and the start-up load.
//!
//! Write-through without blocking under a slot lock: every change to a binding
//! (insert, update, delete, expiry) is queued in the process's own list while the slot
//! lock is held ([`queue`], called from the same place as the usrloc callbacks), and the
//! list is written to the database by [`super::SlotGuard::unlock_then_flush`], after the
//! lock is released ([`flush`]). Each process (SIP receivers, the timer, the MI FIFO
//! process) has its own connection (`core::db::with_conn`), opened on first use. A failed write is logged at L_ERR
//! and the memory table stays authoritative, as in OpenSER.
//!
//! Write-back: inserts and updates only mark the binding (state NEW or DIRTY); the
//! timer process writes marked bindings every `timer_interval` ([`sync_domain`]: the
//! slot lock is held only to copy them out and mark them SYNC) and the attendant does
//! the same at shutdown. Deletions and expiries of bindings the database has seen are
//! queued and written after the unlock, as in write-through (a binding never written
//! needs nothing).
//!
//! DB only (`db_mode` 3): the database is the table. Before an AOR's slot is locked its
//! rows are read (no lock held) and replace what memory holds for it ([`refresh_aor`]);
//! changes are written through as in `db_mode` 1; the timer also deletes expired rows
//! in the database (other servers' ones included). Memory is only a per-access copy.
//!
//! Start-up load ([`preload`]): when a domain (table) is registered in the attendant,
//! its rows are read and inserted into shared memory before the fork; the attendant's
//! connection is closed again at once.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicI32, Ordering};

use super::{ContactInfo, Q_UNSPECIFIED, UDomain, UlCbType, UsrlocParams};
use openser_core::db::{self, DbConn, DbVal, Key};

/// The `db_mode` in force (set by `mod_init`; 0 until then).
static DB_MODE: AtomicI32 = AtomicI32::new(0);

pub(super) fn set_mode(m: i32) {
    DB_MODE.store(m, Ordering::Relaxed);
}

/// Are changes written through to the database?
#[inline]
pub(super) fn write_through() -> bool {
    matches!(DB_MODE.load(Ordering::Relaxed), 1 | 3) && !LOADING.with(Cell::get)
}

/// Is the database the table (`db_mode` 3)?
#[inline]
pub(super) fn db_only() -> bool {
    DB_MODE.load(Ordering::Relaxed) == 3 && !LOADING.with(Cell::get)
}

/// Are marked bindings written back by the timer?
#[inline]
pub(super) fn write_back() -> bool {
    DB_MODE.load(Ordering::Relaxed) == 2 && !LOADING.with(Cell::get)
}

enum Op {
    Insert,
    Update,
    Delete,
}

struct Pending {
    op: Op,
    table: String,
    aor: Vec<u8>,
    ci: ContactInfo,
}

thread_local! {
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
    /// Set while the start-up load inserts rows (they are in the database already).
    static LOADING: Cell<bool> = const { Cell::new(false) };
}

/// Queue the change `kind` of binding `ci` of `aor` in domain `table` (slot lock held:
/// no I/O here).
pub(super) fn queue(kind: UlCbType, table: &str, aor: &[u8], ci: &ContactInfo) {
    let op = match kind {
        UlCbType::Insert => Op::Insert,
        UlCbType::Update => Op::Update,
        UlCbType::Delete | UlCbType::Expire => Op::Delete,
    };
    PENDING.with(|p| {
        p.borrow_mut().push(Pending {
            op,
            table: table.to_owned(),
            aor: aor.to_vec(),
            ci: ci.clone(),
        })
    });
}

/// Is anything waiting to be written?
#[inline]
pub(super) fn has_pending() -> bool {
    PENDING.with(|p| !p.borrow().is_empty())
}

/// Write the queued changes (no lock held). Errors are logged; the queue is emptied.
pub(super) fn flush() {
    let ops = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if ops.is_empty() {
        return;
    }
    let params = super::params();
    let res = with_conn(&params, |conn| {
        for p in &ops {
            if let Err(e) = write(conn, &params, p) {
                note_failure(DbFailure::Write);
                openser_core::log_err!(
                    "database write for {} in table {} failed: {e}",
                    String::from_utf8_lossy(&p.aor),
                    p.table
                );
            }
        }
    });
    if let Err(e) = res {
        note_failure(DbFailure::Write);
        openser_core::log_err!(
            "cannot connect to the database: {e}; {} change(s) not written",
            ops.len()
        );
    }
}

/// What failed in this process's last database access (`db_mode` 3, see
/// [`take_db_failure`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbFailure {
    /// An AOR's rows could not be read: memory does not hold its bindings.
    Read,
    /// A change could not be written.
    Write,
}

thread_local! {
    /// The first database failure since [`take_db_failure`] was last called.
    static FAILURE: Cell<Option<DbFailure>> = const { Cell::new(None) };
}

/// Remember a failure (only with `db_mode` 3: in modes 1 and 2 memory stays
/// authoritative and a failed write is only logged, as in OpenSER).
fn note_failure(f: DbFailure) {
    if db_only() {
        FAILURE.with(|c| {
            if c.get().is_none() {
                c.set(Some(f));
            }
        });
    }
}

/// `db_mode` 3: the database failure (read or write) of this process since the last
/// call, cleared. The registrar calls it before and after `save()`/`lookup()` to answer
/// 500 / return −3 instead of acting on bindings it could not read or store.
pub fn take_db_failure() -> Option<DbFailure> {
    FAILURE.with(|c| c.take())
}

/// Run `f` on this process's connection to the module's `db_url`.
fn with_conn<T>(
    params: &UsrlocParams,
    f: impl FnOnce(&mut dyn DbConn) -> T,
) -> Result<T, db::DbError> {
    db::with_conn(&params.db_url, f)
}

/// The columns read back from a location table, in [`row_contact`]'s order.
fn read_cols(params: &UsrlocParams) -> [&str; 15] {
    let col = &params.columns;
    [
        col.user.as_str(),
        col.domain.as_str(),
        col.contact.as_str(),
        col.expires.as_str(),
        col.q.as_str(),
        col.callid.as_str(),
        col.cseq.as_str(),
        col.flags.as_str(),
        col.cflags.as_str(),
        col.user_agent.as_str(),
        col.received.as_str(),
        col.path.as_str(),
        col.socket.as_str(),
        col.methods.as_str(),
        col.last_modified.as_str(),
    ]
}

/// A row of [`read_cols`] as (AOR, binding); `None` for a short row.
fn row_contact(params: &UsrlocParams, r: &[DbVal]) -> Option<(String, ContactInfo)> {
    if r.len() < 15 {
        return None;
    }
    let text = |v: &DbVal| v.as_str().map(|s| s.into_owned()).unwrap_or_default();
    let int = |v: &DbVal| v.as_int().unwrap_or(0);
    let user = text(&r[0]);
    let domain = text(&r[1]);
    let aor = if params.use_domain && !domain.is_empty() {
        format!("{user}@{domain}")
    } else {
        user
    };
    let ci = ContactInfo {
        contact: text(&r[2]),
        expires: int(&r[3]),
        q: q_from_db(&r[4]),
        callid: text(&r[5]),
        cseq: int(&r[6]) as i32,
        flags: int(&r[7]) as u32,
        cflags: int(&r[8]) as u32,
        user_agent: text(&r[9]),
        received: text(&r[10]),
        path: text(&r[11]),
        socket: text(&r[12]),
        methods: r[13].as_int().map_or(super::ALL_METHODS, |m| m as u32),
        last_modified: int(&r[14]),
        ..ContactInfo::default()
    };
    Some((aor, ci))
}

/// `db_mode` 3: make memory hold exactly the database's bindings of `aor` (called
/// before its slot is locked; the query runs without a lock). On a database error
/// memory is left as it is.
pub(super) fn refresh_aor(dom: &UDomain, aor: &[u8]) {
    let params = super::params();
    let (user, domain) = split_aor(aor, params.use_domain);
    let mut keys = vec![Key::eq(&params.columns.user, user)];
    if params.use_domain {
        keys.push(Key::eq(&params.columns.domain, domain));
    }
    let cols = read_cols(&params);
    let rows = match with_conn(&params, |c| c.query(dom.name(), &keys, &cols, None)) {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) | Err(e) => {
            note_failure(DbFailure::Read);
            openser_core::log_err!(
                "cannot read {} from table {}: {e}",
                String::from_utf8_lossy(aor),
                dom.name()
            );
            return;
        }
    };
    LOADING.with(|l| l.set(true));
    {
        let mut g = dom.lock_slot_cached(aor);
        if let Some(r) = g.get_urecord(aor) {
            for c in g.contact_ids(r).unwrap_or_default() {
                let _ = g.delete_ucontact(r, c);
            }
            let _ = g.release_urecord(r);
        }
        let binds: Vec<ContactInfo> = rows
            .iter()
            .filter_map(|r| row_contact(&params, r))
            .map(|(_, ci)| ci)
            .filter(|ci| !ci.contact.is_empty())
            .collect();
        if !binds.is_empty()
            && let Ok(rid) = g.get_or_insert_urecord(aor)
        {
            for ci in &binds {
                if let Ok(cid) = g.insert_ucontact(rid, ci) {
                    let _ = g.set_contact_state(rid, cid, super::ContactState::Sync);
                }
            }
        }
    }
    LOADING.with(|l| l.set(false));
}

/// `db_mode` 3 timer: delete rows past their expiry from `dom`'s table.
pub(super) fn expire_db(dom: &UDomain, now: i64) {
    let params = super::params();
    let col = &params.columns.expires;
    let keys = [
        Key::op(col, db::Op::Lt, DbVal::DateTime(now)),
        Key::op(col, db::Op::Gt, DbVal::DateTime(0)),
    ];
    match with_conn(&params, |c| c.delete(dom.name(), &keys)) {
        Ok(Ok(_)) => {}
        Ok(Err(e)) | Err(e) => {
            openser_core::log_err!("cannot delete expired rows of table {}: {e}", dom.name())
        }
    }
}

/// Split an AOR into the `username` and `domain` column values (domain only with
/// `use_domain`, as 1.2 stores it).
fn split_aor(aor: &[u8], use_domain: bool) -> (String, String) {
    let s = String::from_utf8_lossy(aor);
    if use_domain && let Some((u, d)) = s.split_once('@') {
        return (u.to_owned(), d.to_owned());
    }
    (s.into_owned(), String::new())
}

fn q_to_db(q: i32) -> DbVal {
    if q == Q_UNSPECIFIED {
        DbVal::Double(-1.0)
    } else {
        DbVal::Double(f64::from(q) / 100.0)
    }
}

fn q_from_db(v: &DbVal) -> i32 {
    let f = match v {
        DbVal::Double(d) => *d,
        other => other.as_str().and_then(|s| s.parse().ok()).unwrap_or(-1.0),
    };
    if f < 0.0 {
        Q_UNSPECIFIED
    } else {
        (f * 100.0).round().clamp(0.0, 100.0) as i32
    }
}

fn opt_str(s: &str) -> DbVal {
    if s.is_empty() {
        DbVal::Null
    } else {
        DbVal::Str(s.to_owned())
    }
}

/// The row keys of a binding: user [+ domain] + contact [+ Call-ID with matching_mode 1].
fn row_keys(params: &UsrlocParams, user: &str, domain: &str, ci: &ContactInfo) -> Vec<Key> {
    let col = &params.columns;
    let mut k = vec![
        Key::eq(&col.user, user),
        Key::eq(&col.contact, ci.contact.as_str()),
    ];
    if params.use_domain {
        k.push(Key::eq(&col.domain, domain));
    }
    if params.matching_mode == 1 {
        k.push(Key::eq(&col.callid, ci.callid.as_str()));
    }
    k
}

fn write(conn: &mut dyn DbConn, params: &UsrlocParams, p: &Pending) -> Result<(), db::DbError> {
    let (user, domain) = split_aor(&p.aor, params.use_domain);
    let col = &params.columns;
    let ci = &p.ci;
    let fields = || -> Vec<(&str, DbVal)> {
        vec![
            (col.expires.as_str(), DbVal::DateTime(ci.expires)),
            (col.q.as_str(), q_to_db(ci.q)),
            (col.callid.as_str(), DbVal::Str(ci.callid.clone())),
            (col.cseq.as_str(), DbVal::Int(ci.cseq.into())),
            (col.flags.as_str(), DbVal::Int((ci.flags as i32).into())),
            (col.cflags.as_str(), DbVal::Int((ci.cflags as i32).into())),
            (col.user_agent.as_str(), DbVal::Str(ci.user_agent.clone())),
            (col.received.as_str(), opt_str(&ci.received)),
            (col.path.as_str(), opt_str(&ci.path)),
            (col.socket.as_str(), opt_str(&ci.socket)),
            // The 1.2 columns are signed int(11): bit masks go in as their i32 pattern.
            (col.methods.as_str(), DbVal::Int((ci.methods as i32).into())),
            (
                col.last_modified.as_str(),
                DbVal::DateTime(ci.last_modified),
            ),
        ]
    };
    // The key columns and then the fields: a new row.
    let whole_row = || {
        let mut v = vec![
            (col.user.as_str(), DbVal::Str(user.clone())),
            (col.contact.as_str(), DbVal::Str(ci.contact.clone())),
        ];
        if params.use_domain {
            v.push((col.domain.as_str(), DbVal::Str(domain.clone())));
        }
        v.extend(fields());
        v
    };
    match p.op {
        Op::Insert => conn.insert(&p.table, &whole_row()),
        Op::Update => {
            let n = conn.update(&p.table, &row_keys(params, &user, &domain, ci), &fields())?;
            if n == 0 {
                // Not there (a failed earlier insert, or changed behind our back): add it.
                conn.insert(&p.table, &whole_row())?;
            }
            Ok(())
        }
        Op::Delete => conn
            .delete(&p.table, &row_keys(params, &user, &domain, ci))
            .map(|_| ()),
    }
}

/// Load table `dom.name()` into `dom` (attendant, before fork). Rows already expired
/// are skipped (the database copy goes at the next expiry of its binding, or stays
/// harmlessly: 1.2 loads them and lets the timer delete them; here they are deleted
/// from the database right away).
pub(super) fn preload(dom: &UDomain, params: &UsrlocParams, now: i64) -> Result<usize, String> {
    let mut conn = db::connect(&params.db_url).map_err(|e| {
        format!(
            "usrloc: cannot load table {} from the database: {e}",
            dom.name()
        )
    })?;
    let col = &params.columns;
    // Read in pages of `fetch_rows` rows by id (1.2's fetch_rows), so a table of a
    // million rows never sits in the attendant's memory all at once.
    let mut cols: Vec<&str> = read_cols(params).to_vec();
    cols.push("id");
    let fetch = params.fetch_rows.max(1) as usize;
    let mut last_id = 0i64;
    let mut loaded = 0;
    LOADING.with(|l| l.set(true));
    loop {
        let rows = match conn.query_limit(
            dom.name(),
            &[Key::op("id", db::Op::Gt, DbVal::Int(last_id))],
            &cols,
            Some("id"),
            fetch,
        ) {
            Ok(r) => r,
            Err(e) => {
                LOADING.with(|l| l.set(false));
                return Err(format!("usrloc: cannot load table {}: {e}", dom.name()));
            }
        };
        let page = rows.len();
        for r in &rows {
            if let Some(DbVal::Int(id)) = r.last() {
                last_id = last_id.max(*id);
            }
            if let Err(e) = load_row(dom, params, r, now, &mut loaded) {
                LOADING.with(|l| l.set(false));
                return Err(e);
            }
        }
        if page < fetch {
            break;
        }
    }
    LOADING.with(|l| l.set(false));
    // Rows past their expiry: delete them now rather than keep them forever.
    let _ = conn.delete(
        dom.name(),
        &[
            Key::op(&col.expires, db::Op::Lt, DbVal::DateTime(now)),
            Key::op(&col.expires, db::Op::Gt, DbVal::DateTime(0)),
        ],
    );
    Ok(loaded)
}

/// Insert one loaded row into `dom` (expired or empty rows are skipped).
fn load_row(
    dom: &UDomain,
    params: &UsrlocParams,
    r: &[DbVal],
    now: i64,
    loaded: &mut usize,
) -> Result<(), String> {
    let Some((aor, ci)) = row_contact(params, r) else {
        return Ok(());
    };
    if aor.is_empty() || ci.contact.is_empty() || (ci.expires != 0 && ci.expires <= now) {
        return Ok(());
    }
    let mut g = dom.lock_slot_cached(aor.as_bytes());
    let res = g.get_or_insert_urecord(aor.as_bytes()).and_then(|rid| {
        let cid = g.insert_ucontact(rid, &ci)?;
        // The row is in the database already.
        g.set_contact_state(rid, cid, super::ContactState::Sync)
    });
    drop(g);
    match res {
        Ok(_) => {
            *loaded += 1;
            Ok(())
        }
        Err(e) => Err(format!(
            "usrloc: cannot load {aor} into table {}: {e}",
            dom.name()
        )),
    }
}

/// Write-back pass over `dom` (timer process, and the attendant at shutdown): every
/// binding not in SYNC state is copied out and marked SYNC under its slot lock, then
/// written (insert for NEW, update-or-insert for DIRTY) after the unlock. A binding
/// changed again meanwhile is DIRTY again and goes at the next pass.
pub(super) fn sync_domain(dom: &UDomain) {
    use super::ContactState;
    for i in 0..dom.size() {
        {
            let mut g = dom.lock_index(i);
            for r in g.records() {
                let Ok(aor) = g.aor(r) else { continue };
                let Ok(ids) = g.contact_ids(r) else { continue };
                for c in ids {
                    let Ok(ci) = g.contact(r, c) else { continue };
                    let op = match ci.state {
                        ContactState::Sync => continue,
                        ContactState::New => UlCbType::Insert,
                        ContactState::Dirty => UlCbType::Update,
                    };
                    if g.set_contact_state(r, c, ContactState::Sync).is_ok() {
                        queue(op, dom.name(), &aor, &ci);
                    }
                }
            }
            g.unlock_then_flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_conversion_round_trips() {
        for q in [Q_UNSPECIFIED, 0, 10, 70, 100] {
            assert_eq!(q_from_db(&q_to_db(q)), q);
        }
        assert_eq!(q_from_db(&DbVal::Str("0.5".into())), 50);
        assert_eq!(q_from_db(&DbVal::Null), Q_UNSPECIFIED);
    }

    #[test]
    fn aor_split_follows_use_domain() {
        assert_eq!(
            split_aor(b"alice@example.com", true),
            ("alice".into(), "example.com".into())
        );
        assert_eq!(
            split_aor(b"alice@example.com", false),
            ("alice@example.com".into(), String::new())
        );
        assert_eq!(split_aor(b"bob", true), ("bob".into(), String::new()));
    }

    #[test]
    fn keys_follow_matching_mode_and_use_domain() {
        let mut p = UsrlocParams::default();
        let ci = ContactInfo {
            contact: "sip:a@h".into(),
            callid: "c1".into(),
            ..ContactInfo::default()
        };
        let k = row_keys(&p, "alice", "", &ci);
        assert_eq!(
            k.iter().map(|k| k.col.as_str()).collect::<Vec<_>>(),
            ["username", "contact"]
        );
        p.use_domain = true;
        p.matching_mode = 1;
        let k = row_keys(&p, "alice", "d", &ci);
        assert_eq!(
            k.iter().map(|k| k.col.as_str()).collect::<Vec<_>>(),
            ["username", "contact", "domain", "callid"]
        );
    }
}
