//! h350 (OpenSER 1.3's `modules/h350`): SIP account data from H.350 commObjects in an
//! LDAP directory (ITU-T H.350, H.350.4 `SIPIdentity`, H.350.6 `callPreferenceURI`),
//! searched through the ldap module's API; the result is the ldap module's last
//! result, so `ldap_result*` work on it too.
//!
//! * `h350_sipuri_lookup(sip_uri)` (REQUEST, FAILURE, BRANCH, ONREPLY): the entries
//!   with `SIPIdentitySIPURI` = the URI (PVs expanded, RFC 4515-escaped) under
//!   `base_dn`. n > 0 found, −1 internal/LDAP error, −2 none.
//! * `h350_auth_lookup(auth_username, "username_avp_spec/pwd_avp_spec")`: the entry
//!   with `SIPIdentityUserName` = the name; its `SIPIdentityUserName` and
//!   `SIPIdentityPassword` into the two AVPs, for auth's `pv_www_authorize` /
//!   `pv_proxy_authorize`. 1 found, −1 internal/LDAP error (also: several entries
//!   have that user name), −2 none (or it has no password).
//! * `h350_result_call_preferences(prefix)` (also `h350_call_preferences`): each
//!   `callPreferenceURI` value of the form `target_uri type[:ms]` (type `b` busy, `n`
//!   no answer, `u` unconditional, `f` not found) becomes AVP `prefix<type>` = the
//!   URI and, with an argument, AVP `prefix<type>_t` = the argument in seconds (ms /
//!   1000, integer) — `prefix` "callee_pref_" gives `$avp(s:callee_pref_u)`. Several
//!   rules of one type: the first is the newest value. n rules > 0, −1 no result, −2
//!   none matched.
//! * `h350_result_service_level(prefix)` (also `h350_service_level`): each
//!   `SIPIdentityServiceLevel` value v becomes AVP `prefix<v>` = 1. n > 0, −1 no
//!   result, −2 attribute absent.
//!
//! Parameters (1.3 defaults): `ldap_session` (""; a session of the ldap module's
//! file, checked at start-up), `base_dn` (""), `search_scope` (`one`; `base`, `one`,
//! `sub`).

use std::sync::{Arc, OnceLock};

use openser_core::cfg::ast::Arg;
use openser_core::cfg::pv::parse_format;
use openser_core::module::{CmdExport, FixedArg, ModuleExports, Param, StrParam};
use openser_core::route::{BRANCH_ROUTE, FAILURE_ROUTE, ONREPLY_ROUTE, REQUEST_ROUTE};
use openser_core::script::fixup::string_arg;
use openser_core::script::{AvpId, Ctx, PvValue};
use openser_ldap::Scope;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "h350",
    binds: &["ldap"],
    params: &[
        Param::str("ldap_session", &P.ldap_session),
        Param::str("base_dn", &P.base_dn),
        Param::str_with("search_scope", &P.search_scope, |s| {
            Scope::parse(s)
                .map(|_| ())
                .ok_or_else(|| format!("bad search_scope '{s}' (base, one or sub)"))
        }),
    ],
    cmds: &[
        CmdExport::new("h350_sipuri_lookup", 1, 1, ROUTES, cmd_sipuri_lookup).fixup(fixup_fmt),
        CmdExport::new("h350_auth_lookup", 2, 2, ROUTES, cmd_auth_lookup).fixup(fixup_auth_lookup),
        CmdExport::new(
            "h350_result_call_preferences",
            1,
            1,
            ROUTES,
            cmd_call_preferences,
        )
        .fixup(fixup_prefix),
        CmdExport::new("h350_call_preferences", 1, 1, ROUTES, cmd_call_preferences)
            .fixup(fixup_prefix),
        CmdExport::new("h350_result_service_level", 1, 1, ROUTES, cmd_service_level)
            .fixup(fixup_prefix),
        CmdExport::new("h350_service_level", 1, 1, ROUTES, cmd_service_level).fixup(fixup_prefix),
    ],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

const ROUTES: u32 = REQUEST_ROUTE | FAILURE_ROUTE | BRANCH_ROUTE | ONREPLY_ROUTE;

/// The `modparam` cells (1.3 defaults).
pub struct Cells {
    pub ldap_session: StrParam,
    pub base_dn: StrParam,
    pub search_scope: StrParam,
}

pub static P: Cells = Cells {
    ldap_session: StrParam::new(""),
    base_dn: StrParam::new(""),
    search_scope: StrParam::new("one"),
};

static SCOPE: OnceLock<Scope> = OnceLock::new();

fn mod_init() -> Result<(), String> {
    let name = P.ldap_session.get();
    ldap::sessions()?;
    if ldap::session(name).is_none() {
        return Err(format!(
            "h350: ldap_session '{name}' is not a session of the ldap module's config_file"
        ));
    }
    let _ = SCOPE.set(Scope::parse(P.search_scope.get()).unwrap_or(Scope::One));
    Ok(())
}

fn search(filter: &str, attrs: &[String]) -> Result<usize, String> {
    ldap::params_search(
        P.ldap_session.get(),
        P.base_dn.get(),
        *SCOPE.get().unwrap_or(&Scope::One),
        attrs,
        filter,
    )
}

fn fixup_fmt(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    Ok(vec![FixedArg::Fmt(parse_format(&string_arg(&args[0])?)?)])
}

fn cmd_sipuri_lookup(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let uri = ctx.arg_str(&args[0]);
    let f = format!(
        "(&(objectClass=SIPIdentity)(SIPIdentitySIPURI={}))",
        ldap::rfc4515_escape(&uri, false)
    );
    match search(&f, &[]) {
        Ok(0) => -2,
        Ok(n) => i32::try_from(n).unwrap_or(i32::MAX),
        Err(e) => {
            openser_core::log_err!("h350_sipuri_lookup: {e}");
            -1
        }
    }
}

fn fixup_auth_lookup(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let user = parse_format(&string_arg(&args[0])?)?;
    let specs = string_arg(&args[1])?;
    let (u, p) = specs.split_once('/').ok_or_else(|| {
        format!("h350_auth_lookup: '{specs}' is not 'username_avp_spec/pwd_avp_spec'")
    })?;
    let u = AvpId::parse_param(u).map_err(|e| format!("h350_auth_lookup: {e}"))?;
    let p = AvpId::parse_param(p).map_err(|e| format!("h350_auth_lookup: {e}"))?;
    Ok(vec![FixedArg::Fmt(user), FixedArg::Any(Arc::new((u, p)))])
}

const USER_NAME: &str = "SIPIdentityUserName";
const PASSWORD: &str = "SIPIdentityPassword";

fn first_value(attr: &str) -> Option<String> {
    ldap::result_attr_vals(attr)
        .ok()
        .flatten()
        .and_then(|v| v.into_iter().next())
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

fn cmd_auth_lookup(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let user = ctx.arg_str(&args[0]);
    let Some(FixedArg::Any(a)) = args.get(1) else {
        return -1;
    };
    let Some((u_avp, p_avp)) = a.downcast_ref::<(AvpId, AvpId)>() else {
        return -1;
    };
    if user.is_empty() {
        return -2;
    }
    let f = format!(
        "(&(objectClass=SIPIdentity)({USER_NAME}={}))",
        ldap::rfc4515_escape(&user, false)
    );
    match search(&f, &[USER_NAME.into(), PASSWORD.into()]) {
        Ok(0) => return -2,
        Ok(1) => {}
        Ok(n) => {
            openser_core::log_err!("h350_auth_lookup: {n} entries have {USER_NAME} '{user}'");
            return -1;
        }
        Err(e) => {
            openser_core::log_err!("h350_auth_lookup: {e}");
            return -1;
        }
    }
    let (Some(name), Some(pw)) = (first_value(USER_NAME), first_value(PASSWORD)) else {
        return -2;
    };
    ctx.avps.add(u_avp.clone(), PvValue::Str(name));
    ctx.avps.add(p_avp.clone(), PvValue::Str(pw));
    1
}

fn fixup_prefix(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let s = string_arg(&args[0])?;
    let s = s.strip_prefix("s:").unwrap_or(&s).to_string();
    if s.is_empty() {
        return Err("h350: empty AVP name prefix".into());
    }
    Ok(vec![FixedArg::Str(s)])
}

/// A simple call forwarding rule `target_uri type[:argument]` (H.350.6).
pub fn parse_call_pref(v: &str) -> Option<(String, char, Option<i64>)> {
    let mut it = v.split_whitespace();
    let uri = it.next()?;
    let rule = it.next()?;
    if it.next().is_some() {
        return None;
    }
    let (t, arg) = match rule.split_once(':') {
        Some((t, a)) => (t, Some(a.parse::<i64>().ok().filter(|n| *n >= 0)?)),
        None => (rule, None),
    };
    let t = match t {
        "b" | "n" | "u" | "f" => t.chars().next()?,
        _ => return None,
    };
    Some((uri.to_string(), t, arg.map(|ms| ms / 1000)))
}

fn cmd_call_preferences(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let prefix = ctx.arg_str(&args[0]);
    let vals = match ldap::result_attr_vals("callPreferenceURI") {
        Err(()) => {
            openser_core::log_err!("h350_result_call_preferences: no LDAP search result");
            return -1;
        }
        Ok(None) => return -2,
        Ok(Some(v)) => v,
    };
    let rules: Vec<_> = vals
        .iter()
        .filter_map(|v| parse_call_pref(&String::from_utf8_lossy(v)))
        .collect();
    for (uri, t, secs) in rules.iter().rev() {
        ctx.avps.add(
            AvpId::Str(format!("{prefix}{t}")),
            PvValue::Str(uri.clone()),
        );
        if let Some(s) = secs {
            ctx.avps
                .add(AvpId::Str(format!("{prefix}{t}_t")), PvValue::Int(*s));
        }
    }
    if rules.is_empty() {
        -2
    } else {
        i32::try_from(rules.len()).unwrap_or(i32::MAX)
    }
}

fn cmd_service_level(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let prefix = ctx.arg_str(&args[0]);
    let vals = match ldap::result_attr_vals("SIPIdentityServiceLevel") {
        Err(()) => {
            openser_core::log_err!("h350_result_service_level: no LDAP search result");
            return -1;
        }
        Ok(None) => return -2,
        Ok(Some(v)) => v,
    };
    let mut n = 0;
    for v in &vals {
        let v = String::from_utf8_lossy(v);
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        ctx.avps
            .add(AvpId::Str(format!("{prefix}{v}")), PvValue::Int(1));
        n += 1;
    }
    if n == 0 { -2 } else { n }
}

#[cfg(test)]
mod tests {
    use super::parse_call_pref;

    #[test]
    fn call_preferences() {
        assert_eq!(
            parse_call_pref("sip:bob@voicemail.example.com n:20000"),
            Some(("sip:bob@voicemail.example.com".into(), 'n', Some(20)))
        );
        assert_eq!(
            parse_call_pref("sip:alice@example.com u"),
            Some(("sip:alice@example.com".into(), 'u', None))
        );
        assert_eq!(parse_call_pref("sip:a@b x"), None);
        assert_eq!(parse_call_pref("sip:a@b n:soon"), None);
        assert_eq!(parse_call_pref("sip:a@b"), None);
        assert_eq!(parse_call_pref("http://cpl u extra"), None);
    }
}
