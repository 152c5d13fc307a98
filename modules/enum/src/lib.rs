//! enum (OpenSER 1.2 `modules/enum`): E.164 numbers to URIs through ENUM (RFC 3761)
//! NAPTR lookups, on the core's resolver and DNS cache (`openser_core::dns`).
//!
//! * `enum_query([suffix[, service]])` (REQUEST) — the R-URI user must be `+` and
//!   2 to 15 digits. The digits, reversed and dot-separated, with `suffix` (default
//!   the `domain_suffix` parameter, "e164.arpa.") make the name whose NAPTR records
//!   are read. Records with flag `u` and the service asked for — none: `E2U+sip`
//!   (or `sip+E2U`); `svc`: `E2U+svc:sip`; `+svc1+svc2`: a compound NAPTR offering
//!   any of them — are sorted by order and preference; their regexp
//!   `!pattern!replacement!` applied to the user (`\1`…`\9` back-references) gives
//!   a URI, with `tel_uri_params` appended. The first replaces the R-URI (q 0.99),
//!   the others become new branches (q lowered by 0.01 per step of order/preference).
//!   1 when the R-URI was replaced, -1 otherwise (no record, DNS failure, bad user).
//! * `is_from_user_enum()` (REQUEST) — the From user is an E.164 number whose ENUM
//!   record (default suffix and service) points to this proxy (`myself`): 1, else -1.
//!
//! Parameters (1.2 defaults): `domain_suffix` "e164.arpa.", `tel_uri_params` "",
//! `i_enum_suffix`, `branchlabel`, `bl_algorithm` are accepted so 1.2 configs load, and
//! warn at start-up that they have no effect (`i_enum_query` is not built).

use openser_core::dns::msg::{Rdata, T_NAPTR};
use openser_core::dns::resolver::Deadline;
use openser_core::module::{CmdExport, FixedArg, ModuleExports, Param, StrParam};
use openser_core::parser::Uri;
use openser_core::re::Regex;
use openser_core::route::REQUEST_ROUTE;
use openser_core::script::Ctx;
use openser_core::script::ctx::Branch;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "enum",
    params: &[
        Param::str("domain_suffix", &P.domain_suffix),
        Param::str("tel_uri_params", &P.tel_uri_params),
        Param::no_effect("i_enum_suffix", "i_enum_query is not built"),
        Param::no_effect("branchlabel", "i_enum_query is not built"),
        Param::no_effect("bl_algorithm", "i_enum_query is not built"),
    ],
    cmds: &[
        CmdExport::new("enum_query", 0, 2, REQUEST_ROUTE, cmd_enum_query),
        CmdExport::new(
            "is_from_user_enum",
            0,
            0,
            REQUEST_ROUTE,
            cmd_is_from_user_enum,
        ),
    ],
    ..ModuleExports::EMPTY
};

/// The `modparam` cells, with 1.2's defaults.
pub struct Params {
    pub domain_suffix: StrParam,
    pub tel_uri_params: StrParam,
}

pub static P: Params = Params {
    domain_suffix: StrParam::new("e164.arpa."),
    tel_uri_params: StrParam::new(""),
};

/// `+` and 2 to 15 digits.
pub fn is_e164(user: &str) -> bool {
    user.strip_prefix('+')
        .is_some_and(|d| (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The ENUM name of `+digits` under `suffix`.
pub fn enum_name(user: &str, suffix: &str) -> String {
    let mut n = String::with_capacity(user.len() * 2 + suffix.len());
    for c in user[1..].chars().rev() {
        n.push(c);
        n.push('.');
    }
    n.push_str(suffix);
    n
}

/// Does a NAPTR's flags/services fit `service` (1.2's rules, see the module doc)?
pub fn service_matches(flags: &str, services: &str, service: &str) -> bool {
    if !flags.eq_ignore_ascii_case("u") {
        return false;
    }
    if service.is_empty() {
        return services.eq_ignore_ascii_case("e2u+sip")
            || services.eq_ignore_ascii_case("sip+e2u");
    }
    let Some(rest) = services
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("e2u+"))
        .and_then(|_| services.get(4..))
    else {
        return false;
    };
    if let Some(wanted) = service.strip_prefix('+') {
        // compound: "E2U+voice:sip+video:sip" offers voice and video
        rest.split('+').any(|offered| {
            wanted
                .split('+')
                .any(|w| !w.is_empty() && offered.eq_ignore_ascii_case(&format!("{w}:sip")))
        })
    } else {
        rest.eq_ignore_ascii_case(&format!("{service}:sip"))
    }
}

/// `!pattern!replacement!` applied to `user`: the replacement with `\N` replaced
/// by group N of the match. None when the regexp is malformed or does not match.
pub fn apply_regexp(regexp: &str, user: &str) -> Option<String> {
    let delim = regexp.chars().next()?;
    if delim != '!' {
        return None;
    }
    let mut parts = regexp[1..].splitn(3, '!');
    let (pat, rep) = (parts.next()?, parts.next()?);
    parts.next()?; // the closing '!' (flags after it ignored, as 1.2)
    let re = Regex::new(pat, false, false).ok()?;
    let caps = re.captures(user)?;
    let mut out = String::new();
    let mut it = rep.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\\'
            && let Some(d) = it.peek().and_then(|d| d.to_digit(10))
        {
            it.next();
            if let Some(Some((a, b))) = caps.get(d as usize) {
                out.push_str(&user[*a..*b]);
            }
            continue;
        }
        out.push(c);
    }
    Some(out)
}

/// `uri` with `params` (e.g. ";npdi") appended before any headers.
fn add_params(uri: &str, params: &str) -> String {
    if params.is_empty() {
        return uri.to_string();
    }
    match uri.split_once('?') {
        Some((u, h)) => format!("{u}{params}?{h}"),
        None => format!("{uri}{params}"),
    }
}

/// The URIs of `user`'s ENUM records under `suffix` for `service`, best first, each
/// with its `(order << 16) + preference`.
pub fn query(user: &str, suffix: &str, service: &str) -> Vec<(u32, String)> {
    let name = enum_name(user, suffix);
    let Ok(recs) = openser_core::dns::lookup(&name, T_NAPTR, Deadline::new()) else {
        openser_core::log_dbg!("no NAPTR record found for {name}");
        return Vec::new();
    };
    let mut n: Vec<(u32, String)> = recs
        .into_iter()
        .filter_map(|r| match r {
            Rdata::Naptr {
                order,
                pref,
                flags,
                service: svc,
                regexp,
                ..
            } if service_matches(&flags, &svc, service) => {
                let uri = apply_regexp(&regexp, user).or_else(|| {
                    openser_core::log_err!("bad or unmatched NAPTR regexp '{regexp}' for {user}");
                    None
                })?;
                Some(((u32::from(order) << 16) + u32::from(pref), uri))
            }
            _ => None,
        })
        .collect();
    n.sort_by_key(|r| r.0);
    n
}

fn cmd_enum_query(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let suffix = args
        .first()
        .map(|a| ctx.arg_str(a))
        .unwrap_or_else(|| P.domain_suffix.get().to_string());
    let service = args.get(1).map(|a| ctx.arg_str(a)).unwrap_or_default();
    let user = match ctx.msg.ruri_parsed() {
        Ok(u) => u.user.to_string(),
        Err(e) => {
            openser_core::log_err!("R-URI parsing failed: {e}");
            return -1;
        }
    };
    if !is_e164(&user) {
        openser_core::log_err!("R-URI user is not an E164 number");
        return -1;
    }
    let params = P.tel_uri_params.get();
    let mut q = 990;
    let mut cur = None;
    let mut first = true;
    for (prio, uri) in query(&user, &suffix, &service) {
        let uri = add_params(&uri, params);
        if Uri::parse(&uri).is_err() {
            openser_core::log_err!("ENUM gave a bad URI <{uri}>");
            continue;
        }
        if first {
            if openser_core::script::actions::set_ruri(ctx, &uri) < 0 {
                return -1;
            }
            ctx.ruri_q = q;
            cur = Some(prio);
            first = false;
        } else {
            if cur.is_some_and(|c| prio > c) {
                q -= 10;
                cur = Some(prio);
            }
            ctx.branches.push(Branch {
                uri,
                dst_uri: None,
                path: None,
                q,
                bflags: 0,
                force_send_sock: None,
            });
        }
    }
    if first { -1 } else { 1 }
}

fn cmd_is_from_user_enum(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    let from = match ctx.msg.from() {
        Ok(na) => ctx.msg.s(na.uri).to_string(),
        Err(_) => {
            openser_core::log_err!("error while parsing From header");
            return -1;
        }
    };
    let Ok(u) = Uri::parse(&from) else {
        openser_core::log_err!("bad From uri <{from}>");
        return -1;
    };
    if !is_e164(&u.user) {
        openser_core::log_err!("From user is not an E164 number");
        return -1;
    }
    for (_, uri) in query(&u.user, P.domain_suffix.get(), "") {
        if let Ok(r) = Uri::parse(&uri)
            && openser_core::transport::socket::is_myself(&r.host, r.port.unwrap_or(5060))
        {
            return 1;
        }
    }
    -1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_services_regexps() {
        assert!(is_e164("+4412345"));
        assert!(!is_e164("4412345") && !is_e164("+1") && !is_e164("+12a"));
        assert_eq!(
            enum_name("+4412345", "e164.arpa."),
            "5.4.3.2.1.4.4.e164.arpa."
        );
        assert!(service_matches("u", "E2U+sip", ""));
        assert!(service_matches("U", "sip+E2U", ""));
        assert!(!service_matches("s", "E2U+sip", ""));
        assert!(service_matches("u", "E2U+voice:sip", "voice"));
        assert!(!service_matches("u", "E2U+sip", "voice"));
        assert!(service_matches("u", "E2U+voice:sip+video:sip", "+video"));
        assert!(!service_matches("u", "E2U+voice:sip", "+video+fax"));
        assert_eq!(
            apply_regexp("!^\\+44(.*)$!sip:\\1@uk.example!", "+4412345").as_deref(),
            Some("sip:12345@uk.example")
        );
        assert_eq!(
            apply_regexp("!^.*$!sip:a@b!", "+1").as_deref(),
            Some("sip:a@b")
        );
        assert_eq!(apply_regexp("!^\\+1!x!", "+44"), None);
        assert_eq!(apply_regexp("/a/b/", "a"), None);
        assert_eq!(add_params("sip:a@b", ";npdi"), "sip:a@b;npdi");
        assert_eq!(add_params("sip:a@b?X=1", ";npdi"), "sip:a@b;npdi?X=1");
    }
}
