//! options (OpenSER 1.2 `modules/options`): answer an OPTIONS request addressed to the
//! server itself — the SIP-level "ping" monitoring systems and peers send.
//!
//! `options_reply()` (REQUEST): for an OPTIONS whose Request-URI has no user part, send
//! `200 OK` statelessly (module sl) with the four capability headers below, then stop
//! the script (rc 0, as 1.2). rc −1 for another method or a Request-URI with a user
//! (the request is for someone else: route it instead). If the 200 cannot be sent, a
//! `500 Server internal error` is tried (rc 0 when that went out, −1 when not).
//!
//! Parameters (1.2 defaults): `accept` `*/*`, `accept_encoding` "", `accept_language`
//! `en`, `support` "". As in 1.2 every header is sent, an empty value as an empty
//! header (`Supported: `): the grammar of each of these four allows an empty list.
//!
//! This module is the smallest complete example of the module template: see
//! ARCHITECTURE.md, "Writing a module".

use openser_core::module::{CmdExport, FixedArg, ModuleExports, Param, StrParam};
use openser_core::parser::{Method, SipMsg};
use openser_core::route::REQUEST_ROUTE;
use openser_core::script::Ctx;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "options",
    binds: &["sl"],
    params: &[
        Param::str("accept", &P.accept),
        Param::str("accept_encoding", &P.accept_encoding),
        Param::str("accept_language", &P.accept_language),
        Param::str("support", &P.support),
    ],
    cmds: &[CmdExport::new(
        "options_reply",
        0,
        0,
        REQUEST_ROUTE,
        cmd_options_reply,
    )],
    ..ModuleExports::EMPTY
};

/// The `modparam` cells, with 1.2's defaults.
pub struct Params {
    pub accept: StrParam,
    pub accept_encoding: StrParam,
    pub accept_language: StrParam,
    pub support: StrParam,
}

pub static P: Params = Params {
    accept: StrParam::new("*/*"),
    accept_encoding: StrParam::new(""),
    accept_language: StrParam::new("en"),
    support: StrParam::new(""),
};

/// The header lines `options_reply()` adds to its 200 OK, in 1.2's order.
pub fn capability_headers(p: &Params) -> Vec<String> {
    [
        ("Accept", &p.accept),
        ("Accept-Encoding", &p.accept_encoding),
        ("Accept-Language", &p.accept_language),
        ("Supported", &p.support),
    ]
    .iter()
    .map(|(name, cell)| format!("{name}: {}\r\n", cell.get()))
    .collect()
}

/// Why `options_reply()` refuses a request, if it does.
pub fn refusal(msg: &SipMsg) -> Option<&'static str> {
    if !msg.is_request() || msg.method() != Method::Options {
        return Some("called for non-OPTIONS request");
    }
    match msg.ruri_parsed() {
        Ok(u) if u.user.is_empty() => None,
        Ok(_) => Some("ruri contains username"),
        Err(_) => Some("bad Request-URI"),
    }
}

fn cmd_options_reply(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    if let Some(why) = refusal(ctx.msg) {
        openser_core::log_err!("{why}");
        return -1;
    }
    let hdrs = capability_headers(&P);
    if sl::sl_reply(ctx.msg, 200, "OK", &hdrs, b"").is_ok() {
        return 0;
    }
    openser_core::log_err!("failed to send 200 via send_reply");
    match sl::sl_reply(ctx.msg, 500, "Server internal error", &[], b"") {
        Ok(()) => 0,
        Err(_) => {
            openser_core::log_err!("failed to send 500 via send_reply");
            -1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> SipMsg {
        SipMsg::parse(text.as_bytes()).expect("test message parses")
    }

    const OPTIONS: &str = "OPTIONS sip:proxy.example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
        From: <sip:mon@example.com>;tag=1\r\nTo: <sip:proxy.example.com>\r\n\
        Call-ID: o1\r\nCSeq: 1 OPTIONS\r\n\r\n";

    #[test]
    fn defaults_give_1_2_headers() {
        let p = Params {
            accept: StrParam::new("*/*"),
            accept_encoding: StrParam::new(""),
            accept_language: StrParam::new("en"),
            support: StrParam::new(""),
        };
        assert_eq!(
            capability_headers(&p).concat(),
            "Accept: */*\r\nAccept-Encoding: \r\nAccept-Language: en\r\nSupported: \r\n"
        );
    }

    #[test]
    fn only_options_to_the_server_itself() {
        assert_eq!(refusal(&msg(OPTIONS)), None);
        let to_user = OPTIONS.replace("OPTIONS sip:proxy", "OPTIONS sip:bob@proxy");
        assert_eq!(refusal(&msg(&to_user)), Some("ruri contains username"));
        let invite = OPTIONS
            .replace("OPTIONS sip:", "INVITE sip:")
            .replace("1 OPTIONS", "1 INVITE");
        assert_eq!(
            refusal(&msg(&invite)),
            Some("called for non-OPTIONS request")
        );
    }

    #[test]
    fn exports_table() {
        assert_eq!(EXPORTS.binds, ["sl"]);
        for p in ["accept", "accept_encoding", "accept_language", "support"] {
            assert!(EXPORTS.param(p).is_some(), "{p}");
        }
        assert_eq!(EXPORTS.cmds[0].routes, REQUEST_ROUTE);
    }
}
