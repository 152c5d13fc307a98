//! uri (OpenSER 1.2 `modules/uri`): checks and changes of the Request-URI and the
//! request's identity, without a database.
//!
//! * `is_user("name")` (REQUEST): 1 if the user part of the digest username in the
//!   credentials a successful `www_authorize`/`proxy_authorize` marked equals `name`
//!   (byte for byte), else −1 (no authorized credentials is a script error, logged).
//! * `has_totag()` (REQUEST): 1 if the To header has a tag (an in-dialog request), else
//!   −1.
//! * `uri_param("name")` / `uri_param("name", "value")` (REQUEST): 1 if the R-URI has
//!   parameter `name` — without a value, or with exactly `value` — else −1. As in 1.2
//!   names and values compare case-sensitively and only the first parameter of that
//!   name counts.
//! * `add_uri_param("name[=value]")` (REQUEST): append `;name[=value]` to the R-URI
//!   parameters (before its `?headers`); "" changes nothing. rc 1, −1 on error.
//! * `tel2sip()` (REQUEST): a `tel:` R-URI becomes `sip:<number>@<From host>;user=phone`
//!   (rc 1; other schemes are left alone, rc 1).
//! * `is_uri_user_e164(pv)` (REQUEST, FAILURE): 1 if the user part of the URI held by
//!   the pseudo-variable is E.164 (`+` and 1 to 15 digits), else −1.
//!
//! Arguments are literal strings, as in 1.2 (a `$` is not a pseudo-variable here),
//! except `is_uri_user_e164`'s, which is a pseudo-variable.

use openser_core::cfg::ast::{Arg, ArgValue};
use openser_core::cfg::pv::parse_pv;
use openser_core::module::{CmdExport, FixedArg, ModuleExports};
use openser_core::parser::{HdrType, Parsed, SipMsg, Uri, is_e164};
use openser_core::route::{FAILURE_ROUTE, REQUEST_ROUTE};
use openser_core::script::fixup::string_arg;
use openser_core::script::{Ctx, PvValue, actions};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "uri",
    cmds: &[
        CmdExport::new("is_user", 1, 1, REQUEST_ROUTE, cmd_is_user).fixup(fixup_literal),
        CmdExport::new("has_totag", 0, 0, REQUEST_ROUTE, cmd_has_totag),
        CmdExport::new("uri_param", 1, 2, REQUEST_ROUTE, cmd_uri_param).fixup(fixup_literal),
        CmdExport::new("add_uri_param", 1, 1, REQUEST_ROUTE, cmd_add_uri_param)
            .fixup(fixup_literal),
        CmdExport::new("tel2sip", 0, 0, REQUEST_ROUTE, cmd_tel2sip),
        CmdExport::new(
            "is_uri_user_e164",
            1,
            1,
            REQUEST_ROUTE | FAILURE_ROUTE,
            cmd_is_uri_user_e164,
        )
        .fixup(fixup_pv),
    ],
    ..ModuleExports::EMPTY
};

/// Every argument as a literal string (1.2's `str_fixup`).
fn fixup_literal(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    args.iter()
        .map(|a| string_arg(a).map(FixedArg::Str))
        .collect()
}

/// The one argument is a pseudo-variable.
fn fixup_pv(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let spec = match args.first().map(|a| &a.value) {
        Some(ArgValue::Pv(p)) => p.clone(),
        Some(_) => {
            let text = string_arg(&args[0])?;
            let (pv, used) = parse_pv(text.trim())?;
            if used != text.trim().len() {
                return Err(format!("'{text}' is not one pseudo-variable"));
            }
            pv
        }
        None => return Err("a pseudo-variable is needed".into()),
    };
    Ok(vec![FixedArg::Pv(spec)])
}

fn lit(args: &[FixedArg], i: usize) -> Option<&str> {
    match args.get(i) {
        Some(FixedArg::Str(s)) => Some(s),
        _ => None,
    }
}

fn rc(b: bool) -> i32 {
    if b { 1 } else { -1 }
}

/// The user part of the digest username of the credentials marked authorized.
pub fn authorized_user(msg: &SipMsg) -> Option<&str> {
    let idx = msg.auth_mark?.hdr_idx;
    let h = msg.hdrs().get(idx)?;
    if !matches!(
        h.htype,
        HdrType::Authorization | HdrType::ProxyAuthorization
    ) {
        return None;
    }
    match msg.parsed(idx) {
        Ok(Parsed::Digest(d)) => {
            let name = msg.s(d.username?);
            Some(name.split_once('@').map_or(name, |p| p.0))
        }
        _ => None,
    }
}

fn cmd_is_user(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let want = lit(args, 0).unwrap_or_default();
    match authorized_user(ctx.msg) {
        Some(user) => rc(!user.is_empty() && user == want),
        None => {
            openser_core::log_err!(
                "No authorized credentials found (error in scripts): call {{www,proxy}}_authorize before is_user"
            );
            -1
        }
    }
}

/// Whether the To header carries a tag.
pub fn has_totag(msg: &SipMsg) -> bool {
    msg.to().is_ok_and(|t| t.tag.is_some_and(|s| !s.is_empty()))
}

fn cmd_has_totag(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    rc(has_totag(ctx.msg))
}

/// `uri_param(name[, value])` on a parsed URI: the first parameter called `name`
/// decides.
pub fn uri_param(u: &Uri, name: &str, value: Option<&str>) -> bool {
    match u.params.iter().find(|(n, _)| n == name) {
        None => false,
        Some((_, v)) => match (value, v.as_deref()) {
            (Some(want), Some(have)) => want == have,
            (Some(_), None) => false,
            (None, have) => have.is_none_or(str::is_empty),
        },
    }
}

fn cmd_uri_param(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let name = lit(args, 0).unwrap_or_default();
    match ctx.msg.ruri_parsed() {
        Ok(u) => rc(uri_param(&u, name, lit(args, 1))),
        Err(_) => {
            openser_core::log_err!("ruri parsing failed");
            -1
        }
    }
}

/// `uri` with `;param` appended to its parameters (before any `?headers`).
pub fn with_param(uri: &str, param: &str) -> Result<String, String> {
    let parsed = Uri::parse(uri).map_err(|e| e.to_string())?;
    let at = match &parsed.headers {
        // The header part is the text after the last `?` of this length.
        Some(h) => uri.len() - h.len() - 1,
        None => uri.len(),
    };
    Ok(format!("{};{param}{}", &uri[..at], &uri[at..]))
}

fn cmd_add_uri_param(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let param = lit(args, 0).unwrap_or_default();
    if param.is_empty() {
        return 1;
    }
    match with_param(ctx.msg.ruri(), param) {
        Ok(new) => actions::set_ruri(ctx, &new),
        Err(e) => {
            openser_core::log_err!("ruri parsing failed: {e}");
            -1
        }
    }
}

/// 1.2's `tel2sip`: `tel:NUMBER` → `sip:NUMBER@from_host;user=phone`; None for other
/// schemes.
pub fn tel2sip(ruri: &str, from_host: &str) -> Option<String> {
    let number = ruri.strip_prefix("tel:")?;
    Some(format!("sip:{number}@{from_host};user=phone"))
}

fn cmd_tel2sip(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    if !ctx.msg.ruri().starts_with("tel:") {
        return 1;
    }
    let host = match ctx.msg.from() {
        Ok(f) => Uri::parse(ctx.msg.s(f.uri)).map(|u| u.host),
        Err(_) => {
            openser_core::log_err!("Error while parsing From header");
            return -1;
        }
    };
    let Ok(host) = host else {
        openser_core::log_err!("Error while parsing the From URI");
        return -1;
    };
    match tel2sip(ctx.msg.ruri(), &host) {
        Some(new) => actions::set_ruri(ctx, &new),
        None => 1,
    }
}

fn cmd_is_uri_user_e164(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(FixedArg::Pv(spec)) = args.first() else {
        return -1;
    };
    match ctx.get_pv(spec) {
        PvValue::Str(s) => match Uri::parse(&s) {
            Ok(u) => rc(is_e164(&u.user)),
            Err(_) => {
                openser_core::log_err!("Error while parsing URI");
                -1
            }
        },
        _ => {
            openser_core::log_err!("pseudo variable value is not string");
            -1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        Uri::parse(s).expect("test URI parses")
    }

    #[test]
    fn uri_param_forms() {
        let u = uri("sip:a@h;transport=udp;lr;user=phone;x=1;x=2");
        assert!(uri_param(&u, "lr", None));
        assert!(!uri_param(&u, "transport", None), "has a value");
        assert!(uri_param(&u, "transport", Some("udp")));
        assert!(
            !uri_param(&u, "transport", Some("UDP")),
            "values compare exactly"
        );
        assert!(
            !uri_param(&u, "Transport", Some("udp")),
            "names too, as 1.2"
        );
        assert!(!uri_param(&u, "lr", Some("on")));
        assert!(uri_param(&u, "x", Some("1")));
        assert!(!uri_param(&u, "x", Some("2")), "only the first x counts");
        assert!(!uri_param(&u, "maddr", None));
    }

    #[test]
    fn add_param_before_headers() {
        assert_eq!(
            with_param("sip:bob@h:5060;lr", "foo=bar").unwrap(),
            "sip:bob@h:5060;lr;foo=bar"
        );
        assert_eq!(
            with_param("sip:bob@h?subject=x%20y", "user=phone").unwrap(),
            "sip:bob@h;user=phone?subject=x%20y"
        );
        assert!(with_param("not a uri", "x").is_err());
    }

    #[test]
    fn tel_to_sip() {
        assert_eq!(
            tel2sip("tel:+493012345", "example.com").as_deref(),
            Some("sip:+493012345@example.com;user=phone")
        );
        assert_eq!(tel2sip("sip:+4930@h", "example.com"), None);
    }

    #[test]
    fn totag_and_user() {
        let req = |to: &str, auth: &str| {
            SipMsg::parse(
                format!(
                    "BYE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                     From: <sip:a@h>;tag=1\r\nTo: {to}\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n{auth}\r\n"
                )
                .as_bytes(),
            )
            .expect("test message parses")
        };
        assert!(has_totag(&req("<sip:b@h>;tag=x9", "")));
        assert!(!has_totag(&req("<sip:b@h>", "")));
        let mut m = req(
            "<sip:b@h>",
            "Authorization: Digest username=\"alice@example.com\", realm=\"example.com\", nonce=\"n\", uri=\"sip:b@h\", response=\"r\"\r\n",
        );
        assert_eq!(authorized_user(&m), None, "not authorized yet");
        let idx = m.first_of(HdrType::Authorization).unwrap();
        m.auth_mark = Some(openser_core::parser::AuthMark {
            hdr_idx: idx,
            stale: false,
        });
        assert_eq!(authorized_user(&m), Some("alice"));
    }
}
