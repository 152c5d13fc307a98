//! pua (OpenSER 1.2 `modules/pua`): the presence user agent other modules publish
//! through. [`send_publish`] sends a PUBLISH (RFC 3903) for a presentity as a tm local
//! request — to the presentity's URI, or to `outbound_proxy` — and remembers, per
//! (presentity URI, publisher id), the entity tag the presence server returned, so
//! the next PUBLISH of the same publisher modifies (a body) or removes (`expires` 0)
//! that document with `SIP-If-Match` instead of adding another.
//!
//! The records are rows of the `pua` table (1.2's layout: `pres_uri`, `pres_id`,
//! `expires`, `flag`, `etag`, `tuple_id`, `call_id`, …), which every process reads and
//! writes — 1.2 kept them in a shared-memory hash table written to that table; here
//! the table is the shared store, so `db_url` is required. The entity tag arrives with
//! the 200 OK, which tm's reply-in hook hands to [`on_reply`]: the row whose `call_id`
//! is the PUBLISH's gets it; a 412 (the server forgot the document) deletes the row,
//! so the next PUBLISH starts a new document.
//!
//! Parameters (1.2 defaults): `db_url` (required), `db_table` "pua", `hash_size`
//! (no effect: no hash table), `min_expires` 0 (a PUBLISH for less is not sent),
//! `default_expires` 3600 (used when a publisher gives none), `update_period`
//! (no effect: documents are not refreshed by pua, their publishers send them again);
//! from Kamailio: `outbound_proxy` (the next hop of every PUBLISH).

use std::cell::Cell;
use std::sync::OnceLock;

use openser_core::db::{DbVal, Key};
use openser_core::module::{IntParam, ModuleExports, Param, StrParam};
use openser_core::parser::{Method, SipMsg};
use openser_core::script::AvpList;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "pua",
    binds: &["tm"],
    params: &[
        Param::str("db_url", &P.db_url),
        Param::str("db_table", &P.db_table),
        Param::no_effect("hash_size", "publish records live in the pua table"),
        Param::int_range("min_expires", &P.min_expires, 0, 1 << 30),
        Param::int_range("default_expires", &P.default_expires, 1, 1 << 30),
        Param::no_effect(
            "update_period",
            "documents are not refreshed by pua: their publishers send them again",
        ),
        Param::str("outbound_proxy", &P.outbound_proxy),
    ],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    ..ModuleExports::EMPTY
};

pub struct Params {
    pub db_url: StrParam,
    pub db_table: StrParam,
    pub min_expires: IntParam,
    pub default_expires: IntParam,
    pub outbound_proxy: StrParam,
}

pub static P: Params = Params {
    db_url: StrParam::new(""),
    db_table: StrParam::new("pua"),
    min_expires: IntParam::new(0),
    default_expires: IntParam::new(3600),
    outbound_proxy: StrParam::new(""),
};

/// The prefix of the Call-IDs of our PUBLISHes (how [`on_reply`] knows them).
const CALLID_PREFIX: &str = "pua.";

static REGISTERED: OnceLock<()> = OnceLock::new();

thread_local! {
    static COUNTER: Cell<u64> = const { Cell::new(0) };
}

fn mod_init() -> Result<(), String> {
    if P.db_url.get().is_empty() {
        return Err("pua: db_url is required (publish records live in the database)".into());
    }
    openser_core::db::check_url(P.db_url.get()).map_err(|e| format!("pua: {e}"))?;
    if REGISTERED.set(()).is_ok() {
        tm::callbacks::register_reply_in(on_reply);
    }
    Ok(())
}

fn child_init(_rank: i32) -> Result<(), String> {
    openser_core::db::open_in_child("pua", P.db_url.get());
    Ok(())
}

fn now() -> i64 {
    openser_core::clock::now()
}

/// What to publish.
#[derive(Clone, Debug)]
pub struct Publ<'a> {
    /// the presentity (`sip:user@domain`)
    pub pres_uri: &'a str,
    /// who publishes (one document per publisher and presentity), e.g.
    /// `UL_PUBLISH.<call-id>`
    pub id: &'a str,
    /// the document; `None` refreshes (or, with `expires` 0, removes) the last one
    pub body: Option<&'a [u8]>,
    pub content_type: &'a str,
    pub event: &'a str,
    /// seconds; 0 removes the document; `None`: `default_expires`
    pub expires: Option<i64>,
}

fn with<T>(
    what: &str,
    f: impl FnOnce(&mut dyn openser_core::db::DbConn) -> Result<T, openser_core::db::DbError>,
) -> Option<T> {
    match openser_core::db::with_conn(P.db_url.get(), f) {
        Ok(Ok(v)) => Some(v),
        Err(e) | Ok(Err(e)) => {
            openser_core::log_err!("{what}: {e}");
            None
        }
    }
}

fn keys(pres_uri: &str, id: &str) -> Vec<Key> {
    vec![Key::eq("pres_uri", pres_uri), Key::eq("pres_id", id)]
}

fn new_callid() -> String {
    let n = COUNTER.with(|c| {
        let v = c.get().wrapping_add(1);
        c.set(v);
        v
    });
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{CALLID_PREFIX}{:x}.{:x}.{n:x}", std::process::id(), t)
}

/// Send a PUBLISH (no lock may be held: it uses the database and tm). `Ok(false)`:
/// nothing to send (a removal of a document never published).
pub fn send_publish(p: &Publ) -> Result<bool, String> {
    let expires = p.expires.unwrap_or(P.default_expires.get()).max(0);
    if expires > 0 && expires < P.min_expires.get() {
        return Ok(false);
    }
    let table = P.db_table.get();
    let etag: Option<String> = with("cannot read the pua table", |c| {
        c.query(table, &keys(p.pres_uri, p.id), &["etag"], None)
    })
    .ok_or("database error")?
    .first()
    .map(|r| {
        r.first()
            .and_then(|v| v.as_str().map(|s| s.into_owned()))
            .unwrap_or_default()
    });
    let etag = etag.filter(|e| !e.is_empty());
    if expires == 0 && etag.is_none() {
        with("cannot delete from the pua table", |c| {
            c.delete(table, &keys(p.pres_uri, p.id))
        });
        return Ok(false);
    }
    if p.body.is_none() && etag.is_none() {
        return Ok(false);
    }
    let callid = new_callid();
    if expires == 0 {
        with("cannot delete from the pua table", |c| {
            c.delete(table, &keys(p.pres_uri, p.id))
        });
    } else {
        let row = [
            ("pres_uri", DbVal::Str(p.pres_uri.into())),
            ("pres_id", DbVal::Str(p.id.into())),
            ("expires", DbVal::Int(now() + expires)),
            ("flag", DbVal::Int(0)),
            ("etag", DbVal::Str(etag.clone().unwrap_or_default())),
            ("tuple_id", DbVal::Str(String::new())),
            ("watcher_uri", DbVal::Str(String::new())),
            ("call_id", DbVal::Str(callid.clone())),
            ("to_tag", DbVal::Str(String::new())),
            ("from_tag", DbVal::Str(String::new())),
            ("cseq", DbVal::Int(1)),
        ];
        with("cannot write the pua table", |c| {
            c.delete(table, &keys(p.pres_uri, p.id))?;
            c.insert(table, &row)
        })
        .ok_or("database error")?;
    }
    let mut headers = format!("Event: {}\r\nExpires: {expires}\r\n", p.event);
    if let Some(e) = &etag {
        headers.push_str(&format!("SIP-If-Match: {e}\r\n"));
    }
    if p.body.is_some() {
        headers.push_str(&format!("Content-Type: {}\r\n", p.content_type));
    }
    let proxy = P.outbound_proxy.get();
    let r = tm::uac::LocalRequest {
        method: "PUBLISH",
        ruri: p.pres_uri,
        from: p.pres_uri,
        to: p.pres_uri,
        dst: (!proxy.is_empty()).then_some(proxy),
        headers: &headers,
        body: p.body.unwrap_or(&[]),
        callid: Some(&callid),
        ..Default::default()
    };
    tm::uac::send_request(&r)?;
    Ok(true)
}

/// tm's reply-in hook: the entity tag of a 2xx to our PUBLISH is kept; a 412 forgets
/// the document.
pub fn on_reply(reply: &mut SipMsg, _avps: &AvpList) {
    let Some(callid) = reply.callid().map(|c| c.trim().to_string()) else {
        return;
    };
    if !callid.starts_with(CALLID_PREFIX)
        || reply.cseq().map(|c| c.method).ok() != Some(Method::Publish)
        || reply.rcv.src.port() == 0
    {
        return;
    }
    let Some(code) = reply.status() else { return };
    let table = P.db_table.get();
    let by_call = [Key::eq("call_id", callid.as_str())];
    if (200..300).contains(&code) {
        let Some(etag) = reply.header("SIP-ETag").map(|s| s.trim().to_string()) else {
            return;
        };
        let mut set = vec![("etag", DbVal::Str(etag))];
        if let Ok(Some(e)) = reply.expires() {
            set.push(("expires", DbVal::Int(now() + i64::from(e))));
        }
        with("cannot update the pua table", |c| {
            c.update(table, &by_call, &set)
        });
    } else if code >= 300 {
        openser_core::log_warn!("PUBLISH {callid} answered {code}");
        with("cannot delete from the pua table", |c| {
            c.delete(table, &by_call)
        });
    }
}

/// A PIDF document with one tuple (pua_usrloc's and pua_mi's helper): `basic` is
/// `open` or `closed`.
pub fn pidf(pres_uri: &str, tuple_id: &str, basic: &str, note: Option<&str>) -> Vec<u8> {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let entity = pres_uri
        .trim_start_matches("sips:")
        .trim_start_matches("sip:");
    let note = note
        .map(|n| format!("<note>{}</note>", esc(n)))
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:{}\">\n\
         <tuple id=\"{}\"><status><basic>{basic}</basic></status>{note}</tuple>\n\
         </presence>\n",
        esc(entity),
        esc(tuple_id)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidf_is_escaped() {
        let b = String::from_utf8(pidf("sip:bob@x", "t\"1", "open", Some("a<b"))).unwrap();
        assert!(b.contains("entity=\"pres:bob@x\""));
        assert!(b.contains("id=\"t&quot;1\""));
        assert!(b.contains("<note>a&lt;b</note>"));
        assert!(b.contains("<basic>open</basic>"));
    }

    #[test]
    fn callids_are_ours() {
        assert!(new_callid().starts_with(CALLID_PREFIX));
        assert_ne!(new_callid(), new_callid());
    }
}
