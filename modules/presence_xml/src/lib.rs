//! presence_xml (Kamailio's `presence_xml`; in OpenSER 1.2 this was part of
//! `presence`): the XML event packages of the presence server, registered with the
//! presence module's API in `mod_init`.
//!
//! * `presence` (`application/pidf+xml`, RFC 3856/3863): PUBLISHed bodies must be
//!   well-formed PIDF (else 400). The NOTIFY body is the presentity's live documents
//!   composed into one (the first document's root, every document's tuples and other
//!   elements in publication order); with nothing published (all expired or removed),
//!   a PIDF with one closed tuple. A polite-blocked watcher gets that closed document
//!   whatever is published.
//! * `presence.winfo` (`application/watcherinfo+xml`, RFC 3857/3858): a presentity
//!   watching its own watchers; the body lists every watcher of its `presence`
//!   (state `full`, the version counting per subscription). Only the presentity itself
//!   may subscribe (others get 403).
//!
//! Authorisation of `presence` watchers: the presentity's pres-rules document (RFC
//! 5025) — the row of the `xcap_table` (`username`, `domain`, `doc_type` 1) — decides:
//! `allow` → active, `confirm` or no applying rule or no document → pending,
//! `polite-block` → active with the neutral (closed) body, `block` → an initial
//! SUBSCRIBE is answered 403 (an existing subscription, after `refreshWatchers`, ends
//! with `terminated;reason=rejected`). `force_active` (or presence's 1.2 parameter of
//! the same name) makes every watcher active without reading rules.
//!
//! Parameters: `force_active` 0; `integrated_xcap_server` 0 (Kamailio's default: with
//! 0 Kamailio fetches documents from an XCAP server through `xcap_client`, which does
//! not exist here, so the table is read either way; a warning says so); `xcap_table`
//! (default: presence's, `xcap_xml`); `db_url` (default: presence's).
//!
//! Functions: none. The XML code is `xml.rs` (fuzz target `presence_xml`).

pub mod xml;

use openser_core::db::{DbVal, Key};
use openser_core::module::{BoolParam, ModuleExports, Param, StrParam};
use presence::{Authz, EventPackage, ST_ACTIVE, ST_PENDING, ST_TERMINATED, WatcherInfo};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "presence_xml",
    binds: &["presence"],
    params: &[
        Param::bool("force_active", &P.force_active),
        Param::bool("integrated_xcap_server", &P.integrated_xcap_server),
        Param::str("xcap_table", &P.xcap_table),
        Param::str("db_url", &P.db_url),
    ],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells, with Kamailio's defaults.
pub struct Params {
    pub force_active: BoolParam,
    pub integrated_xcap_server: BoolParam,
    pub xcap_table: StrParam,
    pub db_url: StrParam,
}

pub static P: Params = Params {
    force_active: BoolParam::new(false),
    integrated_xcap_server: BoolParam::new(false),
    xcap_table: StrParam::new(""),
    db_url: StrParam::new(""),
};

/// The XCAP document type of pres-rules (1.2's `PRES_RULES`).
pub const PRES_RULES: i64 = 1;

fn url() -> &'static str {
    match P.db_url.get() {
        "" => presence::db_url(),
        u => u,
    }
}

fn table() -> &'static str {
    match P.xcap_table.get() {
        "" => presence::xcap_table(),
        t => t,
    }
}

fn mod_init() -> Result<(), String> {
    if !P.integrated_xcap_server.get() && !P.force_active.get() {
        openser_core::log_warn!(
            "integrated_xcap_server is 0 but there is no XCAP client: pres-rules are read from table {}",
            table()
        );
    }
    if !P.db_url.get().is_empty() {
        openser_core::db::check_url(P.db_url.get()).map_err(|e| format!("presence_xml: {e}"))?;
    }
    presence::register_event(EventPackage {
        name: "presence",
        content_type: "application/pidf+xml",
        winfo_of: None,
        check_body: Some(xml::check_pidf),
        compose: Some(xml::compose),
        offline_body: Some(closed),
        neutral_body: Some(closed),
        authorize: Some(authorize_presence),
        watcher_info: None,
    })?;
    presence::register_event(EventPackage {
        name: "presence.winfo",
        content_type: "application/watcherinfo+xml",
        winfo_of: Some("presence"),
        check_body: None,
        compose: None,
        offline_body: None,
        neutral_body: None,
        authorize: Some(authorize_winfo),
        watcher_info: Some(watcher_info),
    })?;
    Ok(())
}

fn child_init(_rank: i32) -> Result<(), String> {
    if !P.db_url.get().is_empty() {
        openser_core::db::open_in_child("presence_xml", P.db_url.get());
    }
    Ok(())
}

fn closed(pres: &str) -> Option<Vec<u8>> {
    Some(xml::closed_body(pres))
}

/// The pres-rules document of `pres` (`None`: none, or the database failed).
fn rules_of(pres: &str) -> Option<String> {
    let (user, domain) = presence::split_uri(pres);
    let keys = [
        Key::eq("username", user.as_str()),
        Key::eq("domain", domain.as_str()),
        Key::eq("doc_type", DbVal::Int(PRES_RULES)),
    ];
    let r = openser_core::db::with_conn(url(), |c| c.query(table(), &keys, &["xcap"], None));
    match r {
        Ok(Ok(rows)) => rows.first().and_then(|r| match r.first() {
            Some(DbVal::Blob(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Some(v) => v.as_str().map(|s| s.into_owned()),
            None => None,
        }),
        Err(e) | Ok(Err(e)) => {
            openser_core::log_err!("cannot read the pres-rules of {pres}: {e}");
            None
        }
    }
}

/// The decision for `watcher` from `pres`'s rules document (none: pending).
pub fn decide(rules: Option<&str>, watcher: &str) -> Authz {
    let pending = Authz {
        status: ST_PENDING,
        reason: String::new(),
    };
    let Some(doc) = rules else { return pending };
    match xml::evaluate(doc, watcher) {
        Ok(Some(xml::SubHandling::Allow)) => Authz::active(),
        Ok(Some(xml::SubHandling::PoliteBlock)) => Authz {
            status: ST_ACTIVE,
            reason: "polite-block".into(),
        },
        Ok(Some(xml::SubHandling::Block)) => Authz {
            status: ST_TERMINATED,
            reason: "rejected".into(),
        },
        Ok(Some(xml::SubHandling::Confirm)) | Ok(None) => pending,
        Err(e) => {
            openser_core::log_warn!("bad pres-rules document: {e}");
            pending
        }
    }
}

fn authorize_presence(watcher: &str, pres: &str) -> Authz {
    if P.force_active.get() {
        return Authz::active();
    }
    decide(rules_of(pres).as_deref(), watcher)
}

fn authorize_winfo(watcher: &str, pres: &str) -> Authz {
    if watcher.eq_ignore_ascii_case(pres) {
        Authz::active()
    } else {
        Authz {
            status: ST_TERMINATED,
            reason: "rejected".into(),
        }
    }
}

fn watcher_info(pres: &str, version: u32, watchers: &[WatcherInfo]) -> Vec<u8> {
    let list: Vec<(&str, &str, &str, &str)> = watchers
        .iter()
        .map(|w| (w.id.as_str(), w.uri.as_str(), w.status, w.event))
        .collect();
    xml::winfo_body(pres, "presence", version, &list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let doc = r#"<ruleset xmlns="urn:ietf:params:xml:ns:common-policy">
<rule id="1"><conditions><identity><one id="sip:alice@a"/></identity></conditions><actions><sub-handling xmlns="urn:ietf:params:xml:ns:pres-rules">allow</sub-handling></actions></rule>
<rule id="2"><conditions><identity><one id="sip:carol@a"/></identity></conditions><actions><sub-handling>polite-block</sub-handling></actions></rule>
<rule id="3"><conditions><identity><one id="sip:eve@a"/></identity></conditions><actions><sub-handling>block</sub-handling></actions></rule>
</ruleset>"#;
        assert_eq!(decide(Some(doc), "sip:alice@a").status, ST_ACTIVE);
        let pb = decide(Some(doc), "sip:carol@a");
        assert_eq!((pb.status, pb.reason.as_str()), (ST_ACTIVE, "polite-block"));
        assert_eq!(decide(Some(doc), "sip:eve@a").status, ST_TERMINATED);
        assert_eq!(decide(Some(doc), "sip:bob@a").status, ST_PENDING);
        assert_eq!(decide(None, "sip:bob@a").status, ST_PENDING);
        assert_eq!(decide(Some("<x"), "sip:bob@a").status, ST_PENDING);
        assert_eq!(authorize_winfo("sip:bob@a", "sip:bob@a").status, ST_ACTIVE);
        assert_eq!(
            authorize_winfo("sip:eve@a", "sip:bob@a").status,
            ST_TERMINATED
        );
    }
}
