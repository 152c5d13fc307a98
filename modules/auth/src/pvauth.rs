//! `pv_www_authorize(realm)` / `pv_proxy_authorize(realm)` (Kamailio's auth functions
//! of that name; 1.2 had no equivalent): digest authorization against a password a
//! script or another module put into a pseudo-variable — h350's `h350_auth_lookup`
//! fills such AVPs from an LDAP directory.
//!
//! The password (or, with `calculate_ha1` 0, the HA1) is the value of `password_spec`;
//! when `username_spec` is set its value must equal the credentials' username (whole,
//! or its user part), so a password looked up for one user never authorizes another.
//! Same pre- and post-checks and return codes as auth_db's `www_authorize`: 1
//! authorized, −1 not (no credentials, password PV unset, wrong response, stale
//! nonce), 0 after an error reply (400 bad credentials, 500).

use std::sync::OnceLock;

use openser_core::cfg::ast::Arg;
use openser_core::cfg::pv::{PvSpec, parse_pv};
use openser_core::module::FixedArg;
use openser_core::script::{Ctx, PvValue};

use crate::{P, PreAuth, digest, fixup_realm, post_auth, pre_auth, send_reply};

/// The parsed `username_spec` / `password_spec`.
struct Specs {
    username: Option<PvSpec>,
    password: PvSpec,
}

static SPECS: OnceLock<Specs> = OnceLock::new();

fn one_pv(param: &str, s: &str) -> Result<PvSpec, String> {
    let (spec, used) = parse_pv(s.trim()).map_err(|e| format!("auth: {param}: {e}"))?;
    if used != s.trim().len() {
        return Err(format!("auth: {param} '{s}' is not one pseudo-variable"));
    }
    Ok(spec)
}

fn specs() -> Result<&'static Specs, String> {
    if let Some(s) = SPECS.get() {
        return Ok(s);
    }
    let pw = P.password_spec.get();
    if pw.trim().is_empty() {
        return Err(
            "auth: pv_www_authorize/pv_proxy_authorize need the password_spec parameter".into(),
        );
    }
    let password = one_pv("password_spec", pw)?;
    let u = P.username_spec.get();
    let username = if u.trim().is_empty() {
        None
    } else {
        Some(one_pv("username_spec", u)?)
    };
    Ok(SPECS.get_or_init(|| Specs { username, password }))
}

/// Fixup: the realm, and the specs checked now so a bad one stops the start-up.
pub fn fixup_pv_authorize(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    specs()?;
    Ok(vec![fixup_realm(&args[0])?])
}

fn text(v: PvValue) -> Option<String> {
    match v {
        PvValue::Null => None,
        v => Some(v.to_text()),
    }
}

/// The authorization with the password from the PVs.
pub fn pv_authorize(ctx: &mut Ctx, realm: &str, www: bool) -> i32 {
    let specs = match specs() {
        Ok(s) => s,
        Err(e) => {
            openser_core::log_err!("{e}");
            send_reply(ctx.msg, 500, crate::api::MSG_500, &[]);
            return 0;
        }
    };
    let cred = match pre_auth(ctx.msg, realm, www) {
        PreAuth::Authorized => return 1,
        PreAuth::NotAuthorized => return -1,
        PreAuth::Reply(code, reason) => {
            send_reply(ctx.msg, code, reason, &[]);
            return 0;
        }
        PreAuth::DoAuthorization(c) => c,
    };
    let Some(secret) = text(ctx.get_pv(&specs.password)) else {
        openser_core::log_dbg!("no password for '{}'", cred.username);
        return -1;
    };
    if let Some(u) = &specs.username {
        match text(ctx.get_pv(u)) {
            Some(u) if u == cred.username || u == cred.user() => {}
            _ => {
                openser_core::log_dbg!("username_spec does not match '{}'", cred.username);
                return -1;
            }
        }
    }
    let ha1 = if P.calculate_ha1.get() {
        digest::calc_ha1_alg(cred.alg.base(), &cred.username, &cred.realm, &secret)
    } else {
        secret
    };
    if !cred.response_ok(ctx.msg, &ha1) {
        openser_core::log_dbg!("invalid response for '{}'", cred.username);
        return -1;
    }
    if !post_auth(ctx.msg, &cred) {
        return -1;
    }
    1
}

pub fn cmd_pv_www_authorize(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let realm = args.first().map(|a| ctx.arg_str(a)).unwrap_or_default();
    pv_authorize(ctx, &realm, true)
}

pub fn cmd_pv_proxy_authorize(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let realm = args.first().map(|a| ctx.arg_str(a)).unwrap_or_default();
    pv_authorize(ctx, &realm, false)
}
