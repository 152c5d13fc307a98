//! usrloc and the database: `db_mode` 1 (write-through) and the start-up load.
//!
//! Write-through without blocking under a slot lock: every change to a binding
//! (insert, update, delete, expiry) is queued in the process's own list while the slot
//! lock is held ([`queue`], called from the same place as the usrloc callbacks), and the
//! list is written to the database when the [`super::SlotGuard`] is dropped, after the
//! lock is released ([`flush`]). Each process (SIP receivers, the timer, the MI FIFO
//! process) opens its own connection on first use. A failed write is logged at L_ERR
//! and the memory table stays authoritative, as in OpenSER.
//!
//! Start-up load ([`preload`]): when a domain (table) is registered in the attendant,
//! its rows are read and inserted into shared memory before the fork; the attendant's
//! connection is closed again at once.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicI32, Ordering};

use super::{ContactInfo, Q_UNSPECIFIED, UDomain, UlCbType, UsrlocParams};
use crate::core::db::{self, DbConn, DbVal, Key};

/// The `db_mode` in force (set by `mod_init`; 0 until then).
static DB_MODE: AtomicI32 = AtomicI32::new(0);

pub(super) fn set_mode(m: i32) {
    DB_MODE.store(m, Ordering::Relaxed);
}

/// Are changes written through to the database?
#[inline]
pub(super) fn write_through() -> bool {
    DB_MODE.load(Ordering::Relaxed) == 1 && !LOADING.with(Cell::get)
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
    static CONN: RefCell<Option<Box<dyn DbConn>>> = const { RefCell::new(None) };
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
    CONN.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            match db::connect(&params.db_url) {
                Ok(conn) => *c = Some(conn),
                Err(e) => {
                    crate::log_err!(
                        "ERROR:usrloc: cannot connect to the database: {e}; {} change(s) not written",
                        ops.len()
                    );
                    return;
                }
            }
        }
        let Some(conn) = c.as_mut() else { return };
        for p in &ops {
            if let Err(e) = write(conn.as_mut(), &params, p) {
                crate::log_err!(
                    "ERROR:usrloc: database write for {} in table {} failed: {e}",
                    String::from_utf8_lossy(&p.aor),
                    p.table
                );
            }
        }
    });
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
    match p.op {
        Op::Insert => {
            let mut v = vec![
                (col.user.as_str(), DbVal::Str(user.clone())),
                (col.contact.as_str(), DbVal::Str(ci.contact.clone())),
            ];
            if params.use_domain {
                v.push((col.domain.as_str(), DbVal::Str(domain.clone())));
            }
            v.extend(fields());
            conn.insert(&p.table, &v)
        }
        Op::Update => {
            let n = conn.update(&p.table, &row_keys(params, &user, &domain, ci), &fields())?;
            if n == 0 {
                // Not there (a failed earlier insert, or changed behind our back): add it.
                let mut v = vec![
                    (col.user.as_str(), DbVal::Str(user.clone())),
                    (col.contact.as_str(), DbVal::Str(ci.contact.clone())),
                ];
                if params.use_domain {
                    v.push((col.domain.as_str(), DbVal::Str(domain.clone())));
                }
                v.extend(fields());
                conn.insert(&p.table, &v)?;
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
    let cols = [
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
    ];
    let rows = conn
        .query(dom.name(), &[], &cols, None)
        .map_err(|e| format!("usrloc: cannot load table {}: {e}", dom.name()))?;
    let text = |v: &DbVal| v.as_str().map(|s| s.into_owned()).unwrap_or_default();
    let int = |v: &DbVal| v.as_int().unwrap_or(0);
    let mut loaded = 0;
    LOADING.with(|l| l.set(true));
    for r in &rows {
        if r.len() < cols.len() {
            continue;
        }
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
        if aor.is_empty() || ci.contact.is_empty() || (ci.expires != 0 && ci.expires <= now) {
            continue;
        }
        let mut g = dom.lock_slot(aor.as_bytes());
        let res = g
            .get_or_insert_urecord(aor.as_bytes())
            .and_then(|rid| g.insert_ucontact(rid, &ci));
        drop(g);
        match res {
            Ok(_) => loaded += 1,
            Err(e) => {
                LOADING.with(|l| l.set(false));
                return Err(format!(
                    "usrloc: cannot load {aor} into table {}: {e}",
                    dom.name()
                ));
            }
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
