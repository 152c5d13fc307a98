//! presence (OpenSER 1.2 `modules/presence`): a presence server (RFC 3265, RFC 3856,
//! RFC 3903). It stores what user agents PUBLISH, keeps the subscriptions of watchers
//! and sends them NOTIFYs — through tm, as local requests in the subscription's dialog
//! — when a subscription starts, is refreshed or ends, and whenever the published
//! state changes. The event packages themselves (what a body is, how several documents
//! make one, who may watch whom) come from other modules through [`register_event`]:
//! `presence_xml` registers `presence` (PIDF) and `presence.winfo` (watcher-info).
//!
//! Functions (REQUEST route):
//! * `handle_publish()` — a PUBLISH (RFC 3903) for the presentity of its To URI. No
//!   `SIP-If-Match`: a new document (body required) gets a fresh entity tag. With
//!   `SIP-If-Match`: the document of that tag is refreshed (no body), modified (a body)
//!   or removed (`Expires: 0`); an unknown tag is answered 412. An event no module
//!   registered is answered 489 with `Allow-Events`; `Expires` above `max_expires` is
//!   lowered to it, below `min_expires` (but not 0) answered 423. The 200 OK carries
//!   `SIP-ETag` and `Expires` (minus `expires_offset`). New, modified and removed
//!   documents make the watchers of the presentity get a NOTIFY. 1, or -1 when the
//!   request was refused (an error reply was sent).
//! * `handle_subscribe()` — a SUBSCRIBE. An initial one (no To tag) is authorised by
//!   the event package (blocked: 403), stored, answered 200 (active) or 202 (pending)
//!   with our To tag, `Contact: server_address` and `Expires`, and followed by a NOTIFY
//!   with its state. An in-dialog one is found by Call-ID and tags (else 481, after the
//!   database with `fallback2db`), refreshed (new expiry, Contact as new target) and
//!   followed by a NOTIFY; with `Expires: 0` it ends, with a final NOTIFY
//!   `Subscription-State: terminated;reason=timeout`. An initial SUBSCRIBE with
//!   `Expires: 0` is a fetch: 200 and one terminated NOTIFY with the state. 1, or -1
//!   when refused.
//!
//! NOTIFYs: Request-URI the watcher's Contact, `Route` the SUBSCRIBE's Record-Route
//! set (the first entry is the next hop), From the presentity with our tag, To the
//! watcher with its tag, the subscription's Call-ID, a CSeq one higher than the last
//! NOTIFY's, `Event`, `Contact: <server_address>`, `Subscription-State` (`active` or
//! `pending` with the remaining `expires`, or `terminated;reason=…`). Pending and
//! terminated NOTIFYs carry no body. A NOTIFY answered 481 or timing out (408) ends
//! its subscription. Subscriptions past their expiry are ended by the timer process
//! with a `terminated;reason=timeout` NOTIFY. Changes to the watchers of a presentity
//! are notified to the subscribers of its watcher-info package.
//!
//! Storage: subscriptions live in shared memory (`table.rs`: a pool of
//! `max_subscriptions` cells of 1 KiB in `hash_size` locked buckets) and in the
//! `active_watchers` table (written every `db_update_period` seconds and at shutdown,
//! loaded at start-up); published documents live in the `presentity` table, expired
//! ones are deleted every `clean_period` seconds (their watchers are notified). A
//! database (`db_url`) is required, as in 1.2.
//!
//! MI: `refreshWatchers <presentity_uri> <event>` (authorisation decided again, e.g.
//! after the rules document changed, and a NOTIFY to each watcher), `cleanup` (expired
//! documents and subscriptions now).
//!
//! Parameters (1.2 defaults): `db_url` (required), `presentity_table` "presentity",
//! `active_watchers_table` "active_watchers", `watchers_table` "watchers",
//! `xcap_table` "xcap_xml", `clean_period` 100, `to_tag_pref` "10", `lock_set_size`
//! (no effect), `expires_offset` 0, `force_active` 0, `max_expires` 3600,
//! `server_address` (default: `sip:` and the address of the listen socket); from
//! Kamailio: `min_expires` 0, `db_update_period` 100, `fallback2db` 0; of this server:
//! `hash_size` 1024 buckets, `max_subscriptions` 4096 cells.

mod db;
mod table;

pub use db::split_uri;
pub use table::{ST_ACTIVE, ST_PENDING, ST_TERMINATED};

use std::cell::Cell;
use std::sync::OnceLock;

use openser_core::mi::{MiArg, MiNode, MiReply};
use openser_core::module::{
    BoolParam, CmdExport, Every, FixedArg, IntParam, MiExport, ModuleExports, Param, StrParam,
    TimerExport,
};
use openser_core::msg::build_local_reply;
use openser_core::parser::{HdrType, SipMsg, Uri};
use openser_core::route::REQUEST_ROUTE;
use openser_core::script::Ctx;
use openser_core::state::Registry;
use openser_core::transport::{forward, send};

use table::{
    Bucket, F_CALLID, F_CONTACT, F_EVENT, F_EVENT_ID, F_FTAG, F_PRES, F_REASON, F_ROUTE, F_TTAG,
    F_WATCHER, FL_INDB, NF, StoreError, SubInfo, Table,
};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "presence",
    binds: &["sl", "tm"],
    params: &[
        Param::str("db_url", &P.db_url),
        Param::str_with("presentity_table", &P.presentity_table, check_name),
        Param::str_with(
            "active_watchers_table",
            &P.active_watchers_table,
            check_name,
        ),
        Param::str_with("watchers_table", &P.watchers_table, check_name),
        Param::str_with("xcap_table", &P.xcap_table, check_name),
        Param::int_range("clean_period", &P.clean_period, 1, 86400),
        Param::str("to_tag_pref", &P.to_tag_pref),
        Param::no_effect(
            "lock_set_size",
            "every subscription bucket has its own lock (see hash_size)",
        ),
        Param::int_range("expires_offset", &P.expires_offset, 0, 86400),
        Param::bool("force_active", &P.force_active),
        Param::int_range("max_expires", &P.max_expires, 1, u32::MAX as i64 / 4),
        Param::int_range("min_expires", &P.min_expires, 0, u32::MAX as i64 / 4),
        Param::str("server_address", &P.server_address),
        Param::int_range("db_update_period", &P.db_update_period, 1, 86400),
        Param::bool("fallback2db", &P.fallback2db),
        Param::int_range("hash_size", &P.hash_size, 1, 1 << 20),
        Param::int_range("max_subscriptions", &P.max_subscriptions, 1, 1 << 22),
    ],
    cmds: &[
        CmdExport::new("handle_publish", 0, 0, REQUEST_ROUTE, cmd_handle_publish),
        CmdExport::new(
            "handle_subscribe",
            0,
            0,
            REQUEST_ROUTE,
            cmd_handle_subscribe,
        ),
    ],
    mi: &[
        MiExport::new("refreshWatchers", mi_refresh_watchers),
        MiExport::new("cleanup", mi_cleanup).no_input(),
    ],
    timers: &[
        TimerExport::new("presence-subscriptions", Every::Secs(1), subs_timer),
        TimerExport::new(
            "presence-clean",
            Every::SecsParam(&P.clean_period),
            clean_timer,
        ),
        TimerExport::new(
            "presence-db-update",
            Every::SecsParam(&P.db_update_period),
            db_update_timer,
        ),
    ],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    destroy: Some(destroy),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells, with 1.2's defaults (Kamailio's for its additions).
pub struct Params {
    pub db_url: StrParam,
    pub presentity_table: StrParam,
    pub active_watchers_table: StrParam,
    pub watchers_table: StrParam,
    pub xcap_table: StrParam,
    pub clean_period: IntParam,
    pub to_tag_pref: StrParam,
    pub expires_offset: IntParam,
    pub force_active: BoolParam,
    pub max_expires: IntParam,
    pub min_expires: IntParam,
    pub server_address: StrParam,
    pub db_update_period: IntParam,
    pub fallback2db: BoolParam,
    pub hash_size: IntParam,
    pub max_subscriptions: IntParam,
}

pub static P: Params = Params {
    db_url: StrParam::new(""),
    presentity_table: StrParam::new("presentity"),
    active_watchers_table: StrParam::new("active_watchers"),
    watchers_table: StrParam::new("watchers"),
    xcap_table: StrParam::new("xcap_xml"),
    clean_period: IntParam::new(100),
    to_tag_pref: StrParam::new("10"),
    expires_offset: IntParam::new(0),
    force_active: BoolParam::new(false),
    max_expires: IntParam::new(3600),
    min_expires: IntParam::new(0),
    server_address: StrParam::new(""),
    db_update_period: IntParam::new(100),
    fallback2db: BoolParam::new(false),
    hash_size: IntParam::new(1024),
    max_subscriptions: IntParam::new(4096),
};

fn check_name(s: &str) -> Result<(), String> {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(())
    } else {
        Err(format!("bad table name '{s}'"))
    }
}

// ---------------------------------------------------------------------------
// the event package API

/// An authorisation decision for a watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authz {
    /// [`ST_ACTIVE`], [`ST_PENDING`] or [`ST_TERMINATED`] (refused: 403 to an initial
    /// SUBSCRIBE, `terminated;reason=rejected` for an existing subscription)
    pub status: u32,
    /// why (`polite-block`: active, but the NOTIFYs carry the package's neutral body)
    pub reason: String,
}

impl Authz {
    pub fn active() -> Authz {
        Authz {
            status: ST_ACTIVE,
            reason: String::new(),
        }
    }
}

/// One watcher, as a watcher-info body lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatcherInfo {
    /// a stable id of the subscription (our tag)
    pub id: String,
    pub uri: String,
    /// `pending`, `active` or `terminated`
    pub status: &'static str,
    /// the event that brought it there (`subscribe`, `approved`, `timeout`, …)
    pub event: &'static str,
}

/// Checks a PUBLISHed body.
pub type CheckFn = fn(&[u8]) -> Result<(), String>;
/// Composes the documents of a presentity (oldest first) into one body.
pub type ComposeFn = fn(pres: &str, docs: &[Vec<u8>]) -> Option<Vec<u8>>;
/// A body of a presentity made without its documents.
pub type BodyFn = fn(pres: &str) -> Option<Vec<u8>>;
/// A watcher-info body: presentity, version, watchers.
pub type WinfoFn = fn(pres: &str, version: u32, watchers: &[WatcherInfo]) -> Vec<u8>;

/// An event package (RFC 3265 §4.4), registered by another module in its `mod_init`.
#[derive(Clone, Copy, Debug)]
pub struct EventPackage {
    /// the `Event` token, e.g. `presence`
    pub name: &'static str,
    /// the `Content-Type` of its bodies
    pub content_type: &'static str,
    /// a watcher-info package: the package whose watchers it lists (PUBLISH refused)
    pub winfo_of: Option<&'static str>,
    /// check a PUBLISHed body (`Err`: answered 400)
    pub check_body: Option<CheckFn>,
    /// one NOTIFY body from the live documents of a presentity (oldest first)
    pub compose: Option<ComposeFn>,
    /// the body when nothing is published (the closed state); `None`: no body
    pub offline_body: Option<BodyFn>,
    /// the body a polite-blocked watcher gets
    pub neutral_body: Option<BodyFn>,
    /// decide whether `watcher` may watch `pres` (`None`: everyone, active)
    pub authorize: Option<fn(watcher: &str, pres: &str) -> Authz>,
    /// the watcher-info body of `pres` (winfo packages)
    pub watcher_info: Option<WinfoFn>,
}

static PACKAGES: Registry<EventPackage> = Registry::new();

/// Register an event package (`mod_init` of the module providing it, before fork).
pub fn register_event(p: EventPackage) -> Result<(), String> {
    let mut v = PACKAGES.lock();
    if v.iter().any(|q| q.name.eq_ignore_ascii_case(p.name)) {
        return Err(format!("presence: event '{}' registered twice", p.name));
    }
    v.push(p);
    Ok(())
}

fn package(name: &str) -> Option<EventPackage> {
    PACKAGES
        .lock()
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .copied()
}

fn winfo_packages_of(name: &str) -> Vec<EventPackage> {
    PACKAGES
        .lock()
        .iter()
        .filter(|p| p.winfo_of.is_some_and(|w| w.eq_ignore_ascii_case(name)))
        .copied()
        .collect()
}

fn allow_events() -> String {
    let names: Vec<&str> = PACKAGES.lock().iter().map(|p| p.name).collect();
    format!("Allow-Events: {}", names.join(", "))
}

/// The database URL (for packages reading their own tables, e.g. the XCAP documents).
pub fn db_url() -> &'static str {
    P.db_url.get()
}

/// The XCAP documents' table (`xcap_table`).
pub fn xcap_table() -> &'static str {
    P.xcap_table.get()
}

// ---------------------------------------------------------------------------
// module life

static TABLE: OnceLock<Table> = OnceLock::new();
/// the tm callback id of our NOTIFYs
static NOTIFY_CB: OnceLock<u32> = OnceLock::new();

thread_local! {
    static COUNTER: Cell<u64> = const { Cell::new(0) };
}

fn now() -> i64 {
    openser_core::clock::now()
}

fn now32() -> u32 {
    now().clamp(0, i64::from(u32::MAX)) as u32
}

fn unique() -> String {
    let n = COUNTER.with(|c| {
        let v = c.get().wrapping_add(1);
        c.set(v);
        v
    });
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!(
        "{:x}.{:x}.{:x}",
        std::process::id(),
        t & 0xffff_ffff_ffff,
        n
    )
}

fn mod_init() -> Result<(), String> {
    if P.db_url.get().is_empty() {
        return Err("presence: db_url is required (published state lives in the database)".into());
    }
    openser_core::db::check_url(P.db_url.get()).map_err(|e| format!("presence: {e}"))?;
    let t = Table::new(P.max_subscriptions.get() as u32, P.hash_size.get() as u32).ok_or(
        "presence: no shared memory for the subscription table (see max_subscriptions, -m)",
    )?;
    let (locks, len, pool) = t.lock_spans();
    if TABLE.set(t).is_ok() {
        shm::register_repair(locks, len, "presence subscription bucket", repair_bucket);
        shm::register_repair(
            pool,
            size_of::<shm::FastLock>(),
            "presence subscription pool",
            repair_pool,
        );
    }
    let _ = NOTIFY_CB.set(tm::uac::register_callback(on_notify_done));
    let t = TABLE.get().ok_or("presence: no table")?;
    let subs = db::aw_load(now())?;
    let mut n = 0;
    for s in subs {
        if let Some(b) = t.lock_key(s.pres(), s.event()) {
            if b.find_dialog(&s.f[F_CALLID], &s.f[F_FTAG], &s.f[F_TTAG])
                .is_some()
            {
                continue;
            }
            match b.create(&s) {
                Ok(_) => n += 1,
                Err(e) => {
                    openser_core::log_err!("subscription {} not restored: {e:?}", s.f[F_CALLID])
                }
            }
        }
    }
    openser_core::log_info!(
        "{n} subscriptions loaded from table {}",
        P.active_watchers_table.get()
    );
    Ok(())
}

fn child_init(_rank: i32) -> Result<(), String> {
    openser_core::db::open_in_child("presence", P.db_url.get());
    Ok(())
}

fn destroy() {
    if let Some(t) = TABLE.get() {
        db::aw_store_all(&take_dirty(t));
    }
}

/// Repair hook: a process died holding a bucket's lock.
fn repair_bucket(lock: usize, g: shm::FastLockGuard<'static>) -> Result<Vec<String>, String> {
    let t = TABLE.get().ok_or("presence: no table")?;
    let b = t
        .bucket_of_lock(lock)
        .ok_or_else(|| format!("presence: no bucket lock at {lock:#x}"))?;
    let done = t.repair_bucket(b, &g);
    drop(g);
    Ok(done)
}

/// Repair hook: a process died holding the pool's lock.
fn repair_pool(_lock: usize, g: shm::FastLockGuard<'static>) -> Result<Vec<String>, String> {
    let t = TABLE.get().ok_or("presence: no table")?;
    let done = t.repair_pool(&g);
    drop(g);
    Ok(done)
}

/// The subscriptions changed since they were last written (their marks taken).
fn take_dirty(t: &Table) -> Vec<SubInfo> {
    let mut out = Vec::new();
    for e in 0..t.size() {
        let Some(b) = t.lock_bucket(e) else { continue };
        for c in b.cells() {
            if b.take_dirty(c) {
                out.push(b.info(c));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// message helpers

/// `sip:user@host` of a URI text (`None` if it does not parse).
fn aor_of(uri: &str) -> Option<String> {
    let u = Uri::parse(uri.trim()).ok()?;
    if u.user.is_empty() {
        Some(format!("sip:{}", u.host.to_ascii_lowercase()))
    } else {
        Some(format!("sip:{}@{}", u.user, u.host.to_ascii_lowercase()))
    }
}

fn tag_of(msg: &SipMsg, to: bool) -> Option<String> {
    let na = if to { msg.to().ok()? } else { msg.from().ok()? };
    na.tag
        .map(|t| msg.s(t).to_string())
        .filter(|t| !t.is_empty())
}

fn uri_of(msg: &SipMsg, to: bool) -> Option<String> {
    let na = if to { msg.to().ok()? } else { msg.from().ok()? };
    aor_of(msg.s(na.uri))
}

/// The event name and its `id` parameter.
fn event_of(msg: &SipMsg) -> Option<(String, String)> {
    let ev = msg.event().ok()??;
    let id = ev
        .params
        .iter()
        .find(|p| msg.s(p.name).eq_ignore_ascii_case("id"))
        .and_then(|p| p.value.map(|v| msg.s(v).to_string()))
        .unwrap_or_default();
    Some((msg.s(ev.name).to_string(), id))
}

fn first_contact(msg: &SipMsg) -> Option<String> {
    msg.contacts()
        .ok()
        .and_then(|c| c.contacts.first().map(|n| msg.s(n.uri).to_string()))
        .filter(|c| !c.is_empty())
}

/// The Record-Route entries of `msg`, whole, in order.
fn rr_set(msg: &SipMsg) -> String {
    msg.routes(HdrType::RecordRoute)
        .map(|v| {
            v.iter()
                .map(|n| msg.s(n.full).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The URI of the first entry of a route set.
fn first_route_uri(route: &str) -> Option<String> {
    let s = route.trim();
    if s.is_empty() {
        return None;
    }
    let start = s.find('<')? + 1;
    let end = start + s[start..].find('>')?;
    Some(s[start..end].to_string())
}

/// The Expires of a request, lowered to `max_expires` (`default` when absent).
fn expires_of(msg: &SipMsg, default: i64) -> Result<i64, ()> {
    let e = match msg.expires() {
        Ok(Some(e)) => i64::from(e),
        Ok(None) => default,
        Err(_) => return Err(()),
    };
    Ok(e.min(P.max_expires.get()))
}

/// Our Contact: `server_address`, else the address of listen socket `sock`.
fn server_contact(sock: Option<usize>) -> String {
    let s = P.server_address.get();
    if !s.is_empty() {
        return s.to_string();
    }
    let (host, port) = send::advertised(sock.unwrap_or(0));
    format!("sip:{host}:{port}")
}

fn reply(msg: &mut SipMsg, code: u16, reason: &str, extra: &[String]) -> i32 {
    if sl::sl_reply(msg, code, reason, extra, &[]).is_err() {
        openser_core::log_err!("cannot send the {code} reply");
    }
    if code < 300 { 1 } else { -1 }
}

/// A reply with our To tag (SUBSCRIBE's 2xx).
fn reply_tagged(msg: &SipMsg, code: u16, reason: &str, tag: &str, extra: &[String]) {
    let g = openser_core::globals::get();
    let mut lines: Vec<&str> = extra.iter().map(String::as_str).collect();
    if g.server_signature && !g.server_header.is_empty() {
        lines.push(&g.server_header);
    }
    match build_local_reply(msg, code, reason, Some(tag), &lines, &[], None) {
        Ok(buf) => {
            if forward::send_reply(msg, &buf).is_err() {
                openser_core::log_err!("cannot send the {code} reply");
            }
        }
        Err(e) => openser_core::log_err!("cannot build the {code} reply: {e}"),
    }
}

// ---------------------------------------------------------------------------
// NOTIFYs

/// A NOTIFY to send once the locks are released.
struct Notify {
    ruri: String,
    route: String,
    from: String,
    to: String,
    callid: String,
    cseq: u32,
    event: String,
    state: String,
    ctype: &'static str,
    body: Option<Vec<u8>>,
    sock: Option<usize>,
    param: u64,
}

/// The state of the presentity, computed once for all its watchers.
#[derive(Default)]
struct State {
    /// body for active watchers
    full: Option<Vec<u8>>,
    /// body for polite-blocked watchers
    neutral: Option<Vec<u8>>,
}

fn state_of(pkg: &EventPackage, pres: &str) -> State {
    if pkg.winfo_of.is_some() {
        return State::default();
    }
    let (u, d) = split_uri(pres);
    let docs = db::pres_bodies(&u, &d, pkg.name, now());
    let full = if docs.is_empty() {
        pkg.offline_body.and_then(|f| f(pres))
    } else {
        pkg.compose.and_then(|f| f(pres, &docs))
    };
    State {
        full,
        neutral: pkg.neutral_body.and_then(|f| f(pres)),
    }
}

fn status_word(st: u32) -> &'static str {
    match st {
        ST_PENDING => "pending",
        ST_ACTIVE => "active",
        _ => "terminated",
    }
}

/// The NOTIFY of subscription `c` (its CSeq moves on): `terminated` gives the reason
/// of a final NOTIFY, `winfo` the watcher list of a watcher-info subscription.
fn make_notify(
    b: &Bucket<'_>,
    c: u32,
    pkg: &EventPackage,
    st: &State,
    terminated: Option<&str>,
    winfo: Option<&[WatcherInfo]>,
) -> Notify {
    let cseq = b.next_cseq(c);
    let version = if winfo.is_some() && terminated.is_none() {
        b.next_version(c)
    } else {
        0
    };
    let s = b.info(c);
    notify_of(&s, cseq, version, pkg, st, terminated, winfo)
}

fn notify_of(
    s: &SubInfo,
    cseq: u32,
    version: u32,
    pkg: &EventPackage,
    st: &State,
    terminated: Option<&str>,
    winfo: Option<&[WatcherInfo]>,
) -> Notify {
    let left = i64::from(s.expires) - now();
    let (state, body) = match terminated {
        Some(reason) => (format!("terminated;reason={reason}"), None),
        None => {
            let state = format!("{};expires={}", status_word(s.status), left.max(0));
            let body = if s.status != ST_ACTIVE {
                None
            } else if let Some(list) = winfo {
                pkg.watcher_info.map(|f| f(s.pres(), version, list))
            } else if s.f[F_REASON] == "polite-block" {
                st.neutral.clone()
            } else {
                st.full.clone()
            };
            (state, body)
        }
    };
    let event = if s.f[F_EVENT_ID].is_empty() {
        s.f[F_EVENT].clone()
    } else {
        format!("{};id={}", s.f[F_EVENT], s.f[F_EVENT_ID])
    };
    Notify {
        ruri: s.f[F_CONTACT].clone(),
        route: s.f[F_ROUTE].clone(),
        from: format!("<{}>;tag={}", s.f[F_PRES], s.f[F_TTAG]),
        to: format!("<{}>;tag={}", s.f[F_WATCHER], s.f[F_FTAG]),
        callid: s.f[F_CALLID].clone(),
        cseq,
        event,
        state,
        ctype: pkg.content_type,
        body,
        sock: s.sock.checked_sub(1).map(|v| v as usize),
        param: (u64::from(s.entry) << 32) | u64::from(s.h_id),
    }
}

/// Send a NOTIFY (no lock held).
fn send_notify(n: &Notify) {
    let mut headers = String::with_capacity(256);
    if !n.route.is_empty() {
        headers.push_str(&format!("Route: {}\r\n", n.route));
    }
    headers.push_str(&format!("Event: {}\r\n", n.event));
    headers.push_str(&format!("Contact: <{}>\r\n", server_contact(n.sock)));
    headers.push_str(&format!("Subscription-State: {}\r\n", n.state));
    if n.body.is_some() {
        headers.push_str(&format!("Content-Type: {}\r\n", n.ctype));
    }
    let dst = first_route_uri(&n.route);
    let r = tm::uac::LocalRequest {
        method: "NOTIFY",
        ruri: &n.ruri,
        from: &n.from,
        to: &n.to,
        dst: dst.as_deref(),
        headers: &headers,
        body: n.body.as_deref().unwrap_or(&[]),
        callback: NOTIFY_CB.get().map(|&id| (id, n.param)),
        callid: Some(&n.callid),
        cseq: Some(n.cseq),
        sock: n.sock,
    };
    if let Err(e) = tm::uac::send_request(&r) {
        openser_core::log_err!("cannot send a NOTIFY to {}: {e}", n.ruri);
    }
}

/// tm callback of a NOTIFY: 481 (or no answer) ends the subscription.
fn on_notify_done(d: &tm::uac::UacDone) {
    if d.code != 481 && d.code != 408 {
        return;
    }
    let Some(t) = TABLE.get() else { return };
    let (entry, id) = ((d.param >> 32) as u32, d.param as u32);
    let Some(b) = t.lock_bucket(entry) else {
        return;
    };
    let Some(c) = b.find_id(id) else { return };
    let s = b.info(c);
    b.remove(c);
    drop(b);
    openser_core::log_info!(
        "subscription of {} to {} ended: its NOTIFY got {}",
        s.f[F_WATCHER],
        s.pres(),
        d.code
    );
    ended(&[s]);
}

/// After subscriptions were removed (no lock held): rows deleted, watcher-info sent.
fn ended(subs: &[SubInfo]) {
    let mut seen: Vec<(String, String)> = Vec::new();
    for s in subs {
        if s.flags & FL_INDB != 0 {
            db::aw_delete(&s.f[F_TTAG]);
        }
        let k = (s.pres().to_string(), s.event().to_ascii_lowercase());
        if !seen.contains(&k) {
            seen.push(k);
        }
    }
    for (pres, event) in seen {
        notify_winfo(&pres, &event);
    }
}

/// NOTIFY every watcher of `pres` for `event` with the current state.
pub fn notify_watchers(pres: &str, event: &str) {
    let Some(t) = TABLE.get() else { return };
    let Some(pkg) = package(event) else { return };
    {
        let Some(b) = t.lock_key(pres, pkg.name) else {
            return;
        };
        if b.watchers_of(pres, pkg.name).is_empty() {
            return;
        }
    }
    let st = state_of(&pkg, pres);
    let jobs: Vec<Notify> = {
        let Some(b) = t.lock_key(pres, pkg.name) else {
            return;
        };
        b.watchers_of(pres, pkg.name)
            .into_iter()
            .map(|c| make_notify(&b, c, &pkg, &st, None, None))
            .collect()
    };
    for j in &jobs {
        send_notify(j);
    }
}

/// The watchers of `pres` for `event`, as watcher-info lists them.
fn watcher_list(t: &Table, pres: &str, event: &str) -> Vec<WatcherInfo> {
    let Some(b) = t.lock_key(pres, event) else {
        return Vec::new();
    };
    b.watchers_of(pres, event)
        .into_iter()
        .map(|c| {
            let s = b.info(c);
            let status = status_word(s.status);
            WatcherInfo {
                id: s.f[F_TTAG].clone(),
                uri: s.f[F_WATCHER].clone(),
                status,
                event: if s.status == ST_ACTIVE {
                    "approved"
                } else {
                    "subscribe"
                },
            }
        })
        .collect()
}

/// The watchers of `pres` for `event` changed: NOTIFY the watcher-info subscribers.
fn notify_winfo(pres: &str, event: &str) {
    let Some(t) = TABLE.get() else { return };
    for wp in winfo_packages_of(event) {
        let list = watcher_list(t, pres, event);
        let jobs: Vec<Notify> = {
            let Some(b) = t.lock_key(pres, wp.name) else {
                continue;
            };
            b.watchers_of(pres, wp.name)
                .into_iter()
                .map(|c| make_notify(&b, c, &wp, &State::default(), None, Some(&list)))
                .collect()
        };
        for j in &jobs {
            send_notify(j);
        }
    }
}

// ---------------------------------------------------------------------------
// PUBLISH

fn new_etag() -> String {
    format!("a.{}", unique())
}

fn cmd_handle_publish(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    handle_publish(ctx.msg)
}

/// `handle_publish()`.
pub fn handle_publish(msg: &mut SipMsg) -> i32 {
    let Some((event, _)) = event_of(msg) else {
        return reply(msg, 489, "Bad Event", &[allow_events()]);
    };
    let Some(pkg) = package(&event).filter(|p| p.winfo_of.is_none()) else {
        return reply(msg, 489, "Bad Event", &[allow_events()]);
    };
    let Some(pres) = uri_of(msg, true) else {
        return reply(msg, 400, "Bad request", &[]);
    };
    let Ok(expires) = expires_of(msg, 3600) else {
        return reply(msg, 400, "Bad Expires", &[]);
    };
    let min = P.min_expires.get();
    if expires > 0 && expires < min {
        return reply(
            msg,
            423,
            "Interval Too Brief",
            &[format!("Min-Expires: {min}")],
        );
    }
    let body = msg.body().to_vec();
    if !body.is_empty()
        && let Ok(Some(ct)) = msg.content_type()
    {
        let t = format!("{}/{}", msg.s(ct.mtype), msg.s(ct.subtype));
        if !t.eq_ignore_ascii_case(pkg.content_type) {
            return reply(
                msg,
                415,
                "Unsupported media type",
                &[format!("Accept: {}", pkg.content_type)],
            );
        }
    }
    if !body.is_empty()
        && let Some(check) = pkg.check_body
        && let Err(e) = check(&body)
    {
        openser_core::log_warn!("PUBLISH for {pres}: bad body: {e}");
        return reply(msg, 400, "Bad request body", &[]);
    }
    let (user, domain) = split_uri(&pres);
    let now = now();
    let if_match = msg.header("SIP-If-Match").map(|s| s.trim().to_string());
    let (etag, changed) = match if_match {
        None => {
            if body.is_empty() {
                return reply(msg, 400, "Missing body", &[]);
            }
            if expires == 0 {
                return reply(msg, 400, "Expires 0 without SIP-If-Match", &[]);
            }
            let etag = new_etag();
            if !db::pres_insert(&user, &domain, pkg.name, &etag, now + expires, now, &body) {
                return reply(msg, 500, "Server Internal Error", &[]);
            }
            (etag, true)
        }
        Some(old) => {
            match db::pres_find(&user, &domain, pkg.name, &old) {
                Err(()) => return reply(msg, 500, "Server Internal Error", &[]),
                Ok(None) => return reply(msg, 412, "Conditional request failed", &[]),
                Ok(Some(_)) => {}
            }
            if expires == 0 {
                db::pres_delete(&user, &domain, pkg.name, &old);
                (old, true)
            } else {
                let etag = new_etag();
                let b = (!body.is_empty()).then_some(body.as_slice());
                if !db::pres_update(&user, &domain, pkg.name, &old, &etag, now + expires, now, b) {
                    return reply(msg, 412, "Conditional request failed", &[]);
                }
                (etag, b.is_some())
            }
        }
    };
    let shown = (expires - P.expires_offset.get()).max(0);
    let rc = reply(
        msg,
        200,
        "OK",
        &[format!("SIP-ETag: {etag}"), format!("Expires: {shown}")],
    );
    if changed {
        notify_watchers(&pres, pkg.name);
    }
    rc
}

// ---------------------------------------------------------------------------
// SUBSCRIBE

fn cmd_handle_subscribe(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    handle_subscribe(ctx.msg)
}

fn authorize(pkg: &EventPackage, watcher: &str, pres: &str) -> Authz {
    if P.force_active.get() {
        return Authz::active();
    }
    match pkg.authorize {
        Some(f) => f(watcher, pres),
        None => Authz::active(),
    }
}

/// `handle_subscribe()`.
pub fn handle_subscribe(msg: &mut SipMsg) -> i32 {
    let Some(t) = TABLE.get() else {
        return reply(msg, 500, "Server Internal Error", &[]);
    };
    let Some((event, event_id)) = event_of(msg) else {
        return reply(msg, 489, "Bad Event", &[allow_events()]);
    };
    let Some(pkg) = package(&event) else {
        return reply(msg, 489, "Bad Event", &[allow_events()]);
    };
    let (Some(pres), Some(watcher), Some(callid), Some(ftag)) = (
        uri_of(msg, true),
        uri_of(msg, false),
        msg.callid().map(|c| c.trim().to_string()),
        tag_of(msg, false),
    ) else {
        return reply(msg, 400, "Bad request", &[]);
    };
    let Ok(expires) = expires_of(msg, 3600) else {
        return reply(msg, 400, "Bad Expires", &[]);
    };
    let min = P.min_expires.get();
    if expires > 0 && expires < min {
        return reply(
            msg,
            423,
            "Interval Too Brief",
            &[format!("Min-Expires: {min}")],
        );
    }
    let rcseq = msg.cseq().map(|c| c.num).unwrap_or(0);
    let sock = msg.rcv.sock_idx;
    match tag_of(msg, true) {
        None => initial_subscribe(
            t, msg, &pkg, pres, watcher, callid, ftag, event_id, expires, rcseq, sock,
        ),
        Some(ttag) => in_dialog_subscribe(
            t, msg, &pkg, &pres, &callid, &ftag, &ttag, expires, rcseq, sock,
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn initial_subscribe(
    t: &Table,
    msg: &mut SipMsg,
    pkg: &EventPackage,
    pres: String,
    watcher: String,
    callid: String,
    ftag: String,
    event_id: String,
    expires: i64,
    rcseq: u32,
    sock: usize,
) -> i32 {
    let Some(contact) = first_contact(msg) else {
        return reply(msg, 400, "Missing Contact", &[]);
    };
    let authz = authorize(pkg, &watcher, &pres);
    let now = now();
    if pkg.winfo_of.is_none() {
        db::watchers_store(
            &pres,
            &watcher,
            status_word(authz.status),
            &authz.reason,
            now,
        );
    }
    if authz.status == ST_TERMINATED {
        openser_core::log_info!("{watcher} may not watch {pres} ({})", authz.reason);
        return reply(msg, 403, "Forbidden", &[]);
    }
    let ttag = format!("{}{}", P.to_tag_pref.get(), unique().replace('.', ""));
    let mut f: [String; NF] = Default::default();
    f[F_PRES] = pres.clone();
    f[F_EVENT] = pkg.name.to_string();
    f[F_EVENT_ID] = event_id;
    f[F_WATCHER] = watcher;
    f[F_CALLID] = callid;
    f[F_FTAG] = ftag;
    f[F_TTAG] = ttag.clone();
    f[F_CONTACT] = contact;
    f[F_ROUTE] = rr_set(msg);
    f[F_REASON] = authz.reason.clone();
    let s = SubInfo {
        expires: (now + expires).clamp(0, i64::from(u32::MAX)) as u32,
        status: authz.status,
        rcseq,
        sock: sock as u32 + 1,
        flags: table::FL_DIRTY,
        f,
        ..SubInfo::default()
    };
    let (code, reason) = if authz.status == ST_ACTIVE {
        (200, "OK")
    } else {
        (202, "Accepted")
    };
    let extra = [
        format!("Expires: {expires}"),
        format!("Contact: <{}>", server_contact(Some(sock))),
    ];
    let list = pkg
        .winfo_of
        .map(|of| watcher_list(t, &pres, of))
        .unwrap_or_default();
    let st = state_of(pkg, &pres);
    if expires == 0 {
        // a fetch: one NOTIFY with the state, no subscription kept
        reply_tagged(msg, code, reason, &ttag, &extra);
        let n = notify_of(
            &s,
            1,
            0,
            pkg,
            &st,
            None,
            pkg.winfo_of.map(|_| list.as_slice()),
        );
        let n = Notify {
            state: "terminated;reason=timeout".into(),
            ..n
        };
        send_notify(&n);
        return 1;
    }
    let job = {
        let Some(b) = t.lock_key(&pres, pkg.name) else {
            return reply(msg, 500, "Server Internal Error", &[]);
        };
        match b.create(&s) {
            Ok((c, _)) => make_notify(&b, c, pkg, &st, None, pkg.winfo_of.map(|_| list.as_slice())),
            Err(StoreError::Full) => {
                drop(b);
                openser_core::log_err!(
                    "no room for another subscription (max_subscriptions {})",
                    P.max_subscriptions.get()
                );
                return reply(msg, 500, "Server Internal Error", &[]);
            }
            Err(StoreError::TooLong) => {
                drop(b);
                return reply(msg, 500, "Subscription too large", &[]);
            }
        }
    };
    reply_tagged(msg, code, reason, &ttag, &extra);
    send_notify(&job);
    notify_winfo(&pres, pkg.name);
    1
}

#[allow(clippy::too_many_arguments)]
fn in_dialog_subscribe(
    t: &Table,
    msg: &mut SipMsg,
    pkg: &EventPackage,
    pres: &str,
    callid: &str,
    ftag: &str,
    ttag: &str,
    expires: i64,
    rcseq: u32,
    sock: usize,
) -> i32 {
    let found = t
        .lock_key(pres, pkg.name)
        .is_some_and(|b| b.find_dialog(callid, ftag, ttag).is_some());
    if !found
        && P.fallback2db.get()
        && let Some(s) = db::aw_find(callid, ftag, ttag)
        && i64::from(s.expires) > now()
        && s.pres().eq_ignore_ascii_case(pres)
        && let Some(b) = t.lock_key(pres, pkg.name)
        && b.find_dialog(callid, ftag, ttag).is_none()
        && let Err(e) = b.create(&s)
    {
        openser_core::log_err!("subscription {callid} not restored from the database: {e:?}");
    }
    let st = if expires > 0 {
        state_of(pkg, pres)
    } else {
        State::default()
    };
    let list = pkg
        .winfo_of
        .map(|of| watcher_list(t, pres, of))
        .unwrap_or_default();
    let contact = first_contact(msg);
    let now = now();
    let (job, status, gone) = {
        let Some(b) = t.lock_key(pres, pkg.name) else {
            return reply(msg, 500, "Server Internal Error", &[]);
        };
        let Some(c) = b.find_dialog(callid, ftag, ttag) else {
            drop(b);
            return reply(msg, 481, "Subscription does not exist", &[]);
        };
        if rcseq != 0 && rcseq < b.rcseq(c) {
            drop(b);
            return reply(msg, 500, "CSeq lower than the last one", &[]);
        }
        b.set_rcseq(c, rcseq);
        b.set_sock(c, sock as u32 + 1);
        if expires == 0 {
            let job = make_notify(&b, c, pkg, &st, Some("timeout"), None);
            let s = b.info(c);
            b.remove(c);
            (job, ST_ACTIVE, Some(s))
        } else {
            b.set_expires(c, (now + expires).clamp(0, i64::from(u32::MAX)) as u32);
            if let Some(ct) = &contact {
                let _ = b.update_fields(c, &[(F_CONTACT, ct)]);
            }
            let job = make_notify(&b, c, pkg, &st, None, pkg.winfo_of.map(|_| list.as_slice()));
            (job, b.status(c), None)
        }
    };
    let (code, reason) = if status == ST_PENDING {
        (202, "Accepted")
    } else {
        (200, "OK")
    };
    reply_tagged(
        msg,
        code,
        reason,
        ttag,
        &[
            format!("Expires: {expires}"),
            format!("Contact: <{}>", server_contact(Some(sock))),
        ],
    );
    send_notify(&job);
    if let Some(s) = gone {
        ended(&[s]);
    }
    1
}

// ---------------------------------------------------------------------------
// timers and MI

/// Every second: subscriptions past their expiry end with a final NOTIFY.
fn subs_timer(_ticks: u64) {
    expire_subscriptions();
}

fn expire_subscriptions() {
    let Some(t) = TABLE.get() else { return };
    if t.count() == 0 {
        return;
    }
    let now = now32();
    let mut jobs = Vec::new();
    let mut gone = Vec::new();
    for e in 0..t.size() {
        let Some(b) = t.lock_bucket(e) else { continue };
        for c in b.cells() {
            if b.expires(c) > now {
                continue;
            }
            let s = b.info(c);
            if let Some(pkg) = package(s.event()) {
                jobs.push(make_notify(
                    &b,
                    c,
                    &pkg,
                    &State::default(),
                    Some("timeout"),
                    None,
                ));
            }
            gone.push(b.info(c));
            b.remove(c);
        }
    }
    for j in &jobs {
        send_notify(j);
    }
    if !gone.is_empty() {
        ended(&gone);
    }
}

/// Every `clean_period` seconds: expired documents go, their watchers are notified.
fn clean_timer(_ticks: u64) {
    clean_presentities();
}

fn clean_presentities() {
    for (u, d, e) in db::pres_expire(now()) {
        let pres = if u.is_empty() {
            format!("sip:{d}")
        } else {
            format!("sip:{u}@{d}")
        };
        notify_watchers(&pres, &e);
    }
}

/// Every `db_update_period` seconds: changed subscriptions are written.
fn db_update_timer(_ticks: u64) {
    if let Some(t) = TABLE.get() {
        db::aw_store(&take_dirty(t));
    }
}

/// `refreshWatchers <presentity_uri> <event>`.
fn mi_refresh_watchers(args: &[MiArg]) -> MiReply {
    let (Some(uri), Some(event)) = (args.first(), args.get(1)) else {
        return MiReply::err(400, "Too few arguments");
    };
    let Some(pres) = aor_of(&uri.value) else {
        return MiReply::err(400, "Bad presentity URI");
    };
    let Some(pkg) = package(event.value.trim()) else {
        return MiReply::err(400, "Unknown event");
    };
    let n = refresh_watchers(&pres, &pkg);
    MiReply::ok(vec![MiNode::new("notified", n.to_string())])
}

/// Decide again for every watcher of `pres` and NOTIFY each; returns how many.
fn refresh_watchers(pres: &str, pkg: &EventPackage) -> usize {
    let Some(t) = TABLE.get() else { return 0 };
    let who: Vec<(u32, String)> = match t.lock_key(pres, pkg.name) {
        Some(b) => b
            .watchers_of(pres, pkg.name)
            .into_iter()
            .map(|c| (b.info(c).h_id, b.fields(c)[F_WATCHER].clone()))
            .collect(),
        None => return 0,
    };
    let decisions: Vec<(u32, Authz)> = who
        .into_iter()
        .map(|(id, w)| {
            let a = authorize(pkg, &w, pres);
            if pkg.winfo_of.is_none() {
                db::watchers_store(pres, &w, status_word(a.status), &a.reason, now());
            }
            (id, a)
        })
        .collect();
    let st = state_of(pkg, pres);
    let list = pkg
        .winfo_of
        .map(|of| watcher_list(t, pres, of))
        .unwrap_or_default();
    let mut jobs = Vec::new();
    let mut gone = Vec::new();
    if let Some(b) = t.lock_key(pres, pkg.name) {
        for (id, a) in decisions {
            let Some(c) = b.find_id(id) else { continue };
            if a.status == ST_TERMINATED {
                jobs.push(make_notify(&b, c, pkg, &st, Some("rejected"), None));
                gone.push(b.info(c));
                b.remove(c);
                continue;
            }
            b.set_status(c, a.status);
            let _ = b.update_fields(c, &[(F_REASON, &a.reason)]);
            jobs.push(make_notify(
                &b,
                c,
                pkg,
                &st,
                None,
                pkg.winfo_of.map(|_| list.as_slice()),
            ));
        }
    }
    for j in &jobs {
        send_notify(j);
    }
    if gone.is_empty() {
        notify_winfo(pres, pkg.name);
    } else {
        ended(&gone);
    }
    jobs.len()
}

/// `cleanup`: expired documents and subscriptions now.
fn mi_cleanup(_args: &[MiArg]) -> MiReply {
    clean_presentities();
    expire_subscriptions();
    MiReply::ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aors_and_routes() {
        assert_eq!(
            aor_of("sip:bob@Example.COM:5060;transport=udp").as_deref(),
            Some("sip:bob@example.com")
        );
        assert_eq!(aor_of("garbage"), None);
        assert_eq!(
            first_route_uri("<sip:p1.example.com;lr>, <sip:p2;lr>").as_deref(),
            Some("sip:p1.example.com;lr")
        );
        assert_eq!(first_route_uri(""), None);
    }

    #[test]
    fn table_names_checked() {
        assert!(check_name("presentity").is_ok());
        assert!(check_name("a b").is_err());
        assert!(check_name("").is_err());
    }
}
