//! The presence tables (1.2's layouts, `scripts/openserdb.schema`, set `presence`):
//!
//! * `presentity` — the documents PUBLISHed: one row per (username, domain, event,
//!   etag) with its expiry and body. It is the store of published state (as in 1.2):
//!   every NOTIFY body is composed from the rows of the presentity.
//! * `active_watchers` — the subscriptions, written from shm every `db_update_period`
//!   seconds and at shutdown, deleted when a subscription ends, read back at start-up
//!   (and, with `fallback2db`, when an in-dialog SUBSCRIBE finds no subscription in
//!   shm). Column use: `cseq` is the CSeq of our last NOTIFY (the dialog goes on from
//!   it after a restart), `version` the watcher-info version, `status` `pending`,
//!   `active`, `terminated` or `polite-block` (active with neutral content).
//! * `watchers` — the last authorisation decision per (presentity, watcher).
//!
//! Every call here happens with no lock held.

use openser_core::db::{DbConn, DbVal, Key, Op};

use super::P;
use super::table::{
    F_CALLID, F_CONTACT, F_EVENT, F_EVENT_ID, F_FTAG, F_PRES, F_REASON, F_ROUTE, F_TTAG, F_WATCHER,
    FL_INDB, NF, ST_ACTIVE, ST_PENDING, ST_TERMINATED, SubInfo,
};

/// (user, domain) of a `sip:user@domain` URI.
pub fn split_uri(uri: &str) -> (String, String) {
    let s = uri
        .trim()
        .trim_start_matches("sips:")
        .trim_start_matches("sip:");
    match s.split_once('@') {
        Some((u, d)) => (u.to_string(), d.to_string()),
        None => (String::new(), s.to_string()),
    }
}

fn text(v: Option<&DbVal>) -> String {
    v.and_then(|v| v.as_str().map(|s| s.into_owned()))
        .unwrap_or_default()
}

fn int(v: Option<&DbVal>) -> i64 {
    v.and_then(DbVal::as_int).unwrap_or(0)
}

fn bytes(v: Option<&DbVal>) -> Vec<u8> {
    match v {
        Some(DbVal::Blob(b)) => b.clone(),
        Some(v) => v
            .as_str()
            .map(|s| s.as_bytes().to_vec())
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

fn with<T>(
    what: &str,
    f: impl FnOnce(&mut dyn DbConn) -> Result<T, openser_core::db::DbError>,
) -> Option<T> {
    match openser_core::db::with_conn(P.db_url.get(), f) {
        Ok(Ok(v)) => Some(v),
        Err(e) | Ok(Err(e)) => {
            openser_core::log_err!("{what}: {e}");
            None
        }
    }
}

fn pres_keys(user: &str, domain: &str, event: &str) -> Vec<Key> {
    vec![
        Key::eq("username", user),
        Key::eq("domain", domain),
        Key::eq("event", event),
    ]
}

/// A published document's expiry, if the (presentity, event, etag) row exists.
pub fn pres_find(user: &str, domain: &str, event: &str, etag: &str) -> Result<Option<i64>, ()> {
    let mut keys = pres_keys(user, domain, event);
    keys.push(Key::eq("etag", etag));
    let table = P.presentity_table.get();
    with("cannot read the presentity table", |c| {
        c.query(table, &keys, &["expires"], None)
    })
    .map(|rows| rows.first().map(|r| int(r.first())))
    .ok_or(())
}

/// Store a new document.
pub fn pres_insert(
    user: &str,
    domain: &str,
    event: &str,
    etag: &str,
    expires: i64,
    now: i64,
    body: &[u8],
) -> bool {
    let table = P.presentity_table.get();
    with("cannot insert into the presentity table", |c| {
        c.insert(
            table,
            &[
                ("username", DbVal::Str(user.into())),
                ("domain", DbVal::Str(domain.into())),
                ("event", DbVal::Str(event.into())),
                ("etag", DbVal::Str(etag.into())),
                ("expires", DbVal::Int(expires)),
                ("received_time", DbVal::Int(now)),
                (
                    "body",
                    DbVal::Str(String::from_utf8_lossy(body).into_owned()),
                ),
            ],
        )
    })
    .is_some()
}

/// Refresh (`body` None) or modify a document; its etag becomes `new_etag`.
#[allow(clippy::too_many_arguments)]
pub fn pres_update(
    user: &str,
    domain: &str,
    event: &str,
    etag: &str,
    new_etag: &str,
    expires: i64,
    now: i64,
    body: Option<&[u8]>,
) -> bool {
    let mut keys = pres_keys(user, domain, event);
    keys.push(Key::eq("etag", etag));
    let mut set = vec![
        ("etag", DbVal::Str(new_etag.into())),
        ("expires", DbVal::Int(expires)),
    ];
    if let Some(b) = body {
        set.push(("body", DbVal::Str(String::from_utf8_lossy(b).into_owned())));
        set.push(("received_time", DbVal::Int(now)));
    }
    let table = P.presentity_table.get();
    with("cannot update the presentity table", |c| {
        c.update(table, &keys, &set)
    })
    .is_some_and(|n| n > 0)
}

/// Remove a document.
pub fn pres_delete(user: &str, domain: &str, event: &str, etag: &str) -> bool {
    let mut keys = pres_keys(user, domain, event);
    keys.push(Key::eq("etag", etag));
    let table = P.presentity_table.get();
    with("cannot delete from the presentity table", |c| {
        c.delete(table, &keys)
    })
    .is_some()
}

/// The live documents of a presentity for an event, oldest first.
pub fn pres_bodies(user: &str, domain: &str, event: &str, now: i64) -> Vec<Vec<u8>> {
    let mut keys = pres_keys(user, domain, event);
    keys.push(Key::op("expires", Op::Gt, now));
    let table = P.presentity_table.get();
    with("cannot read the presentity table", |c| {
        c.query(table, &keys, &["body"], Some("received_time"))
    })
    .unwrap_or_default()
    .iter()
    .map(|r| bytes(r.first()))
    .filter(|b| !b.is_empty())
    .collect()
}

/// Delete the documents expired at `now`: their (user, domain, event), once each.
pub fn pres_expire(now: i64) -> Vec<(String, String, String)> {
    let table = P.presentity_table.get();
    let keys = [Key::op("expires", Op::Le, now)];
    let Some(rows) = with("cannot read the presentity table", |c| {
        c.query(table, &keys, &["username", "domain", "event", "etag"], None)
    }) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String, String)> = Vec::new();
    for r in &rows {
        let (u, d, e, tag) = (
            text(r.first()),
            text(r.get(1)),
            text(r.get(2)),
            text(r.get(3)),
        );
        pres_delete(&u, &d, &e, &tag);
        if !out.iter().any(|(a, b, c)| *a == u && *b == d && *c == e) {
            out.push((u, d, e));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// active_watchers

const AW_COLS: [&str; 15] = [
    "to_user",
    "to_domain",
    "from_user",
    "from_domain",
    "event",
    "event_id",
    "to_tag",
    "from_tag",
    "callid",
    "cseq",
    "contact",
    "record_route",
    "expires",
    "status",
    "version",
];

fn status_text(s: &SubInfo) -> &'static str {
    match s.status {
        ST_PENDING => "pending",
        ST_TERMINATED => "terminated",
        _ if s.f[F_REASON] == "polite-block" => "polite-block",
        _ => "active",
    }
}

fn aw_row(s: &SubInfo) -> Vec<(&'static str, DbVal)> {
    let (tu, td) = split_uri(&s.f[F_PRES]);
    let (fu, fd) = split_uri(&s.f[F_WATCHER]);
    let st = |k: usize| DbVal::Str(s.f[k].clone());
    let vals = [
        DbVal::Str(tu),
        DbVal::Str(td),
        DbVal::Str(fu),
        DbVal::Str(fd),
        st(F_EVENT),
        if s.f[F_EVENT_ID].is_empty() {
            DbVal::Null
        } else {
            st(F_EVENT_ID)
        },
        st(F_TTAG),
        st(F_FTAG),
        st(F_CALLID),
        DbVal::Int(i64::from(s.lcseq)),
        st(F_CONTACT),
        st(F_ROUTE),
        DbVal::Int(i64::from(s.expires)),
        DbVal::Str(status_text(s).into()),
        DbVal::Int(i64::from(s.version)),
    ];
    AW_COLS.iter().copied().zip(vals).collect()
}

fn aw_write(c: &mut dyn DbConn, s: &SubInfo) -> Result<(), openser_core::db::DbError> {
    let table = P.active_watchers_table.get();
    c.delete(table, &[Key::eq("to_tag", s.f[F_TTAG].as_str())])?;
    c.insert(table, &aw_row(s))
}

/// Write (replace) the rows of `subs` (a worker or the timer process).
pub fn aw_store(subs: &[SubInfo]) {
    if subs.is_empty() {
        return;
    }
    with("cannot write the active_watchers table", |c| {
        for s in subs {
            aw_write(c, s)?;
        }
        Ok(())
    });
}

/// Delete the row of an ended subscription.
pub fn aw_delete(ttag: &str) {
    let table = P.active_watchers_table.get();
    with("cannot delete from the active_watchers table", |c| {
        c.delete(table, &[Key::eq("to_tag", ttag)])
    });
}

fn sub_of_row(r: &[DbVal]) -> SubInfo {
    let mut f: [String; NF] = Default::default();
    let uri = |u: String, d: String| {
        if u.is_empty() {
            format!("sip:{d}")
        } else {
            format!("sip:{u}@{d}")
        }
    };
    f[F_PRES] = uri(text(r.first()), text(r.get(1)));
    f[F_WATCHER] = uri(text(r.get(2)), text(r.get(3)));
    f[F_EVENT] = text(r.get(4));
    f[F_EVENT_ID] = text(r.get(5));
    f[F_TTAG] = text(r.get(6));
    f[F_FTAG] = text(r.get(7));
    f[F_CALLID] = text(r.get(8));
    f[F_CONTACT] = text(r.get(10));
    f[F_ROUTE] = text(r.get(11));
    let status = match text(r.get(13)).as_str() {
        "pending" => ST_PENDING,
        "terminated" => ST_TERMINATED,
        "polite-block" => {
            f[F_REASON] = "polite-block".into();
            ST_ACTIVE
        }
        _ => ST_ACTIVE,
    };
    let u = |v: i64| v.clamp(0, i64::from(u32::MAX)) as u32;
    SubInfo {
        lcseq: u(int(r.get(9))),
        expires: u(int(r.get(12))),
        version: u(int(r.get(14))),
        status,
        flags: FL_INDB,
        f,
        ..SubInfo::default()
    }
}

/// `fallback2db`: the subscription of an in-dialog SUBSCRIBE from its row.
pub fn aw_find(callid: &str, ftag: &str, ttag: &str) -> Option<SubInfo> {
    let table = P.active_watchers_table.get();
    let keys = [
        Key::eq("to_tag", ttag),
        Key::eq("from_tag", ftag),
        Key::eq("callid", callid),
    ];
    let rows = with("cannot read the active_watchers table", |c| {
        c.query(table, &keys, &AW_COLS, None)
    })?;
    rows.first().map(|r| sub_of_row(r))
}

/// Start-up (attendant, a short-lived connection): the live rows; expired ones are
/// deleted.
pub fn aw_load(now: i64) -> Result<Vec<SubInfo>, String> {
    let url = P.db_url.get();
    let table = P.active_watchers_table.get();
    let mut c = openser_core::db::connect(url).map_err(|e| format!("presence: {e}"))?;
    let rows = c
        .query(table, &[], &AW_COLS, None)
        .map_err(|e| format!("presence: cannot load table {table}: {e}"))?;
    c.delete(table, &[Key::op("expires", Op::Le, now)])
        .map_err(|e| format!("presence: cannot clean table {table}: {e}"))?;
    Ok(rows
        .iter()
        .map(|r| sub_of_row(r))
        .filter(|s| i64::from(s.expires) > now && !s.f[F_TTAG].is_empty())
        .collect())
}

/// Shutdown (attendant): the subscriptions changed since their last write.
pub fn aw_store_all(subs: &[SubInfo]) {
    if subs.is_empty() {
        return;
    }
    let mut c = match openser_core::db::connect(P.db_url.get()) {
        Ok(c) => c,
        Err(e) => {
            openser_core::log_err!("cannot store {} subscriptions: {e}", subs.len());
            return;
        }
    };
    for s in subs {
        if let Err(e) = aw_write(c.as_mut(), s) {
            openser_core::log_err!("cannot store subscription {}: {e}", s.f[F_CALLID]);
        }
    }
}

/// Record the authorisation decision for (presentity, watcher) in `watchers`.
pub fn watchers_store(pres: &str, watcher: &str, status: &str, reason: &str, now: i64) {
    let (pu, pd) = split_uri(pres);
    let (wu, wd) = split_uri(watcher);
    let table = P.watchers_table.get();
    let keys = [
        Key::eq("p_user", pu.as_str()),
        Key::eq("p_domain", pd.as_str()),
        Key::eq("w_user", wu.as_str()),
        Key::eq("w_domain", wd.as_str()),
    ];
    with("cannot write the watchers table", |c| {
        c.delete(table, &keys)?;
        c.insert(
            table,
            &[
                ("p_user", DbVal::Str(pu.clone())),
                ("p_domain", DbVal::Str(pd.clone())),
                ("w_user", DbVal::Str(wu.clone())),
                ("w_domain", DbVal::Str(wd.clone())),
                ("subs_status", DbVal::Str(status.into())),
                (
                    "reason",
                    if reason.is_empty() {
                        DbVal::Null
                    } else {
                        DbVal::Str(reason.into())
                    },
                ),
                ("inserted_time", DbVal::Int(now)),
            ],
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_split() {
        assert_eq!(
            split_uri("sip:bob@example.com"),
            ("bob".into(), "example.com".into())
        );
        assert_eq!(
            split_uri("sip:example.com"),
            ("".into(), "example.com".into())
        );
    }

    #[test]
    fn rows_round_trip() {
        let mut f: [String; NF] = Default::default();
        f[F_PRES] = "sip:bob@example.com".into();
        f[F_WATCHER] = "sip:alice@example.com".into();
        f[F_EVENT] = "presence".into();
        f[F_TTAG] = "t1".into();
        f[F_FTAG] = "f1".into();
        f[F_CALLID] = "c1".into();
        f[F_CONTACT] = "sip:alice@127.0.0.1:5070".into();
        f[F_ROUTE] = "<sip:p1;lr>".into();
        f[F_REASON] = "polite-block".into();
        let s = SubInfo {
            expires: 100,
            status: ST_ACTIVE,
            lcseq: 3,
            version: 2,
            flags: FL_INDB,
            f,
            ..SubInfo::default()
        };
        let row: Vec<DbVal> = aw_row(&s).into_iter().map(|(_, v)| v).collect();
        assert_eq!(sub_of_row(&row), s);
    }
}
