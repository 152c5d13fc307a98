//! pua_mi (OpenSER 1.2 `modules/pua_mi`): PUBLISH through the management interface,
//! for scripts and applications that publish state unrelated to SIP (a system's load,
//! a queue's length).
//!
//! MI `mi_pua_publish` (1.2's name) and `pua_publish` (Kamailio's), through pua:
//! * `presentity_uri expires body` (1.2): a `presence` document
//!   (`application/pidf+xml`, on one line for the FIFO);
//! * `presentity_uri expires event content_type body` (Kamailio's order, without its
//!   ETag and extra-headers arguments).
//!
//! `expires` 0 removes the document. The publisher id is `MI_PUBLISH` (one document
//! per presentity, modified by the next command). Replies: 202 Accepted when the
//! PUBLISH went out (the presence server's answer arrives later), 200 when there was
//! nothing to remove, 400 for bad arguments, 500 when it could not be sent.

use openser_core::mi::{MiArg, MiReply};
use openser_core::module::{MiExport, ModuleExports};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "pua_mi",
    binds: &["pua"],
    mi: &[
        MiExport::new("mi_pua_publish", mi_publish),
        MiExport::new("pua_publish", mi_publish),
    ],
    ..ModuleExports::EMPTY
};

fn mi_publish(args: &[MiArg]) -> MiReply {
    let v: Vec<&str> = args.iter().map(|a| a.value.trim()).collect();
    let (uri, expires, event, ctype, body) = match v.as_slice() {
        [u, e, b] => (*u, *e, "presence", "application/pidf+xml", *b),
        [u, e, ev, ct, b] => (*u, *e, *ev, *ct, *b),
        _ => return MiReply::err(400, "Too few or too many arguments"),
    };
    if !uri.starts_with("sip:") && !uri.starts_with("sips:") {
        return MiReply::err(400, "Bad presentity URI");
    }
    let Ok(expires) = expires.parse::<i64>() else {
        return MiReply::err(400, "Bad expires");
    };
    if expires < 0 || event.is_empty() || ctype.is_empty() {
        return MiReply::err(400, "Bad arguments");
    }
    let body = (!body.is_empty() && body != ".").then_some(body.as_bytes());
    let p = pua::Publ {
        pres_uri: uri,
        id: "MI_PUBLISH",
        body,
        content_type: ctype,
        event,
        expires: Some(expires),
    };
    match pua::send_publish(&p) {
        Ok(true) => MiReply {
            code: 202,
            reason: "Accepted".into(),
            nodes: Vec::new(),
        },
        Ok(false) => MiReply::ok(Vec::new()),
        Err(e) => {
            openser_core::log_err!("mi_pua_publish: {e}");
            MiReply::err(500, "Cannot send the PUBLISH")
        }
    }
}
