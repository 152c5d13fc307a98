//! pua_usrloc (OpenSER 1.2 `modules/pua_usrloc`): users who register are published
//! as present, so phones without presence support show online/offline to watchers.
//!
//! `pua_set_publish()` (REQUEST) marks a REGISTER: when `save()` then inserts or
//! updates a binding, a PUBLISH (through pua) puts the AOR's presentity `open` — a
//! PIDF with one tuple — for as long as the binding lasts. When a binding is deleted
//! (unregistered) or expires, its document is removed (`Expires: 0`, so watchers get
//! the closed state); as in Kamailio this needs no mark (1.2 sent nothing on expiry
//! unless the timer process happened to be marked). One document per binding: the
//! publisher id is `UL_PUBLISH.<Call-ID of the REGISTER>`.
//!
//! The PUBLISHes go out after usrloc released its slot lock (usrloc's
//! `register_ulcb_unlocked`), from the process that changed the binding.
//!
//! Parameters: `default_domain` — the domain of presentity URIs whose AOR has none
//! (usrloc without `use_domain`); empty by default, as 1.2.

use std::cell::Cell;

use openser_core::module::{CmdExport, FixedArg, ModuleExports, Param, StrParam};
use openser_core::route::REQUEST_ROUTE;
use openser_core::script::Ctx;
use usrloc::{ContactInfo, UlCbType};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "pua_usrloc",
    binds: &["usrloc", "pua"],
    params: &[Param::str("default_domain", &P.default_domain)],
    cmds: &[CmdExport::new(
        "pua_set_publish",
        0,
        0,
        REQUEST_ROUTE,
        cmd_set_publish,
    )],
    mod_init: Some(mod_init),
    pre_script: Some(pre_script),
    ..ModuleExports::EMPTY
};

pub struct Params {
    pub default_domain: StrParam,
}

pub static P: Params = Params {
    default_domain: StrParam::new(""),
};

thread_local! {
    /// `pua_set_publish()` was called for the message being handled.
    static MARKED: Cell<bool> = const { Cell::new(false) };
}

fn mod_init() -> Result<(), String> {
    usrloc::register_ulcb_unlocked(
        UlCbType::Insert as u32
            | UlCbType::Update as u32
            | UlCbType::Delete as u32
            | UlCbType::Expire as u32,
        on_contact,
    );
    Ok(())
}

fn pre_script(msg: &mut openser_core::parser::SipMsg) -> bool {
    if msg.is_request() {
        MARKED.with(|m| m.set(false));
    }
    true
}

fn cmd_set_publish(_ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    MARKED.with(|m| m.set(true));
    1
}

/// The presentity URI of an AOR.
pub fn pres_uri(aor: &str) -> String {
    let aor = aor.trim_start_matches("sips:").trim_start_matches("sip:");
    let dd = P.default_domain.get();
    if aor.contains('@') || dd.is_empty() {
        format!("sip:{aor}")
    } else {
        format!("sip:{aor}@{dd}")
    }
}

fn on_contact(kind: UlCbType, _domain: &str, aor: &[u8], ci: &ContactInfo) {
    let aor = String::from_utf8_lossy(aor);
    let uri = pres_uri(&aor);
    let id = format!("UL_PUBLISH.{}", ci.callid);
    let now = openser_core::clock::now();
    let (body, expires) = match kind {
        UlCbType::Insert | UlCbType::Update => {
            if !MARKED.with(Cell::get) {
                return;
            }
            if ci.expires != 0 && ci.expires <= now {
                return;
            }
            let left = if ci.expires == 0 {
                None
            } else {
                Some(ci.expires - now)
            };
            let tuple = format!("ul{:x}", hash(&id));
            (Some(pua::pidf(&uri, &tuple, "open", None)), left)
        }
        UlCbType::Delete | UlCbType::Expire => (None, Some(0)),
    };
    let p = pua::Publ {
        pres_uri: &uri,
        id: &id,
        body: body.as_deref(),
        content_type: "application/pidf+xml",
        event: "presence",
        expires,
    };
    if let Err(e) = pua::send_publish(&p) {
        openser_core::log_err!("cannot publish the presence of {uri}: {e}");
    }
}

fn hash(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in s.as_bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(pres_uri("bob@example.com"), "sip:bob@example.com");
        assert_eq!(pres_uri("sip:bob@example.com"), "sip:bob@example.com");
        assert_eq!(pres_uri("bob"), "sip:bob");
    }
}
