//! auth (reference §8.9): digest challenges, nonces and the authorization pre-check
//! shared with the credential back-ends (auth_db).
//!
//! * `www_challenge(realm, qop)` / `proxy_challenge(realm, qop)` (REQUEST): 401 / 407
//!   with `WWW-Authenticate` / `Proxy-Authenticate: Digest realm="..", nonce=".."`
//!   `[, qop="auth"][, stale=true]`; rc 0 after sending (the script stops). `qop` is
//!   0/1 as in 1.2, or `auth`, `auth-int`, `auth,auth-int`. With `algorithm` listing
//!   several algorithms, one header per algorithm, in the order given (strongest
//!   first), each with `algorithm=`; the default `MD5` alone sends 1.2's form.
//! * Replay protection (issue 18, [`nc`]): `nonce_count` (default on) refuses an `nc`
//!   not above the last accepted one for the nonce, `one_time_nonce` (default off)
//!   lets a nonce without qop be used once; refused uses are answered by the script's
//!   challenge with `stale=true`. `nc_array_size` / `otn_in_flight_no` size the table.
//! * `consume_credentials()` (REQUEST): removes the credentials header a successful
//!   authorize marked; −1 if there is none.
//! * `pv_www_authorize(realm)` / `pv_proxy_authorize(realm)` (REQUEST; Kamailio's):
//!   the same check with the password taken from the `password_spec` PV (an HA1
//!   unless `calculate_ha1`), the user from `username_spec` ([`pvauth`]).
//! * `append_rpid_hf()` / `append_rpid_hf(prefix, suffix)` and `is_rpid_user_e164()`
//!   (REQUEST, BRANCH, FAILURE) on the `rpid_avp` AVP ([`rpid`]).
//!
//! The secret (`secret` parameter, else 32 random printable bytes) is fixed in the
//! attendant at mod_init, before the fork, so every child issues and accepts the same
//! nonces.

pub mod api;
pub mod digest;
pub mod nc;
pub mod nonce;
pub mod pvauth;
pub mod rpid;

#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use openser_core::cfg::ast::Arg;
use openser_core::cfg::pv::parse_format;
use openser_core::module::{
    BoolParam, CmdExport, FixedArg, IntParam, ModuleExports, Param, StrParam,
};
use openser_core::parser::{HdrType, SipMsg};
use openser_core::route::{BRANCH_ROUTE, FAILURE_ROUTE, REQUEST_ROUTE};
use openser_core::script::fixup::string_arg;
use openser_core::script::{AvpId, Ctx};

pub use api::{Cred, PreAuth};
pub use digest::Alg;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "auth",
    binds: &["sl"],
    params: &[
        Param::str("secret", &P.secret),
        Param::int_range("nonce_expire", &P.nonce_expire, 1, u32::MAX as i64),
        Param::str("realm_prefix", &P.realm_prefix),
        Param::str("rpid_prefix", &P.rpid_prefix),
        Param::str("rpid_suffix", &P.rpid_suffix),
        Param::str_with("rpid_avp", &P.rpid_avp, |s| {
            rpid::avp_of_spec(s).map(|_| ())
        }),
        Param::bool("nonce_count", &P.nonce_count),
        Param::bool("one_time_nonce", &P.one_time_nonce),
        Param::int_range("nc_array_size", &P.nc_array_size, 1024, 1 << 26),
        Param::int_range("otn_in_flight_no", &P.otn_in_flight_no, 0, 1 << 26),
        Param::str_with("algorithm", &P.algorithm, |s| {
            digest::parse_alg_list(s).map(|_| ())
        }),
        Param::str("username_spec", &P.username_spec),
        Param::str("password_spec", &P.password_spec),
        Param::bool("calculate_ha1", &P.calculate_ha1),
    ],
    cmds: &[
        CmdExport::new("www_challenge", 2, 2, REQUEST_ROUTE, cmd_www_challenge)
            .fixup(fixup_challenge),
        CmdExport::new("proxy_challenge", 2, 2, REQUEST_ROUTE, cmd_proxy_challenge)
            .fixup(fixup_challenge),
        CmdExport::new(
            "consume_credentials",
            0,
            0,
            REQUEST_ROUTE,
            cmd_consume_credentials,
        ),
        CmdExport::new(
            "pv_www_authorize",
            1,
            1,
            REQUEST_ROUTE,
            pvauth::cmd_pv_www_authorize,
        )
        .fixup(pvauth::fixup_pv_authorize),
        CmdExport::new(
            "pv_proxy_authorize",
            1,
            1,
            REQUEST_ROUTE,
            pvauth::cmd_pv_proxy_authorize,
        )
        .fixup(pvauth::fixup_pv_authorize),
        CmdExport::new("append_rpid_hf", 0, 2, RBF, cmd_append_rpid_hf).fixup(fixup_rpid_hf),
        CmdExport::new("is_rpid_user_e164", 0, 0, RBF, cmd_is_rpid_user_e164),
    ],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

const RBF: u32 = REQUEST_ROUTE | BRANCH_ROUTE | FAILURE_ROUTE;

/// auth parameters (1.2 defaults).
pub struct AuthParams {
    /// "" = 32 random characters at start-up
    pub secret: StrParam,
    pub nonce_expire: IntParam,
    pub realm_prefix: StrParam,
    pub rpid_prefix: StrParam,
    pub rpid_suffix: StrParam,
    pub rpid_avp: StrParam,
    pub nonce_count: BoolParam,
    pub one_time_nonce: BoolParam,
    pub nc_array_size: IntParam,
    pub otn_in_flight_no: IntParam,
    /// Algorithms offered and accepted, strongest first.
    pub algorithm: StrParam,
    /// pv_*_authorize: the PV holding the username ("" = not checked).
    pub username_spec: StrParam,
    /// pv_*_authorize: the PV holding the password or HA1.
    pub password_spec: StrParam,
    /// pv_*_authorize: the password PV holds the plaintext password (else the HA1).
    pub calculate_ha1: BoolParam,
}

pub static P: AuthParams = AuthParams {
    secret: StrParam::new(""),
    nonce_expire: IntParam::new(300),
    realm_prefix: StrParam::new(""),
    rpid_prefix: StrParam::new(""),
    rpid_suffix: StrParam::new(";party=calling;id-type=subscriber;screen=yes"),
    rpid_avp: StrParam::new("$avp(s:rpid)"),
    nonce_count: BoolParam::new(true),
    one_time_nonce: BoolParam::new(false),
    nc_array_size: IntParam::new(65536),
    otn_in_flight_no: IntParam::new(0),
    algorithm: StrParam::new("MD5"),
    username_spec: StrParam::new(""),
    password_spec: StrParam::new(""),
    calculate_ha1: BoolParam::new(false),
};

/// The parameters in effect (secret resolved).
#[derive(Clone, Debug)]
pub struct Frozen {
    pub secret: Vec<u8>,
    pub nonce_expire: u32,
    pub realm_prefix: String,
    pub rpid_avp: AvpId,
    pub rpid_prefix: String,
    pub rpid_suffix: String,
    pub checks: nc::Checks,
    /// Nonce table slots (max of nc_array_size and otn_in_flight_no).
    pub nc_slots: usize,
    pub algs: Vec<Alg>,
}

static FROZEN: OnceLock<Frozen> = OnceLock::new();

/// 32 random printable characters (as OpenSER's `generate_random_secret`).
pub fn random_secret() -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("auth: can't read /dev/urandom for the secret: {e}"))?;
    Ok(b.iter().map(|c| 32 + c % 95).collect())
}

fn freeze() -> Result<&'static Frozen, String> {
    if let Some(f) = FROZEN.get() {
        return Ok(f);
    }
    let secret = match P.secret.get() {
        "" => random_secret()?,
        s => s.as_bytes().to_vec(),
    };
    let rpid_avp = rpid::avp_of_spec(P.rpid_avp.get())?;
    let algs = digest::parse_alg_list(P.algorithm.get()).map_err(|e| format!("auth: {e}"))?;
    Ok(FROZEN.get_or_init(|| Frozen {
        secret,
        nonce_expire: P.nonce_expire.get_u32(),
        realm_prefix: P.realm_prefix.get().to_string(),
        rpid_avp,
        rpid_prefix: P.rpid_prefix.get().to_string(),
        rpid_suffix: P.rpid_suffix.get().to_string(),
        checks: nc::Checks {
            nonce_count: P.nonce_count.get(),
            one_time_nonce: P.one_time_nonce.get(),
        },
        nc_slots: usize::try_from(P.nc_array_size.get().max(P.otn_in_flight_no.get()))
            .unwrap_or(65536),
        algs,
    }))
}

/// The frozen parameters (fixed at mod_init; initialised on first use otherwise).
pub fn frozen() -> &'static Frozen {
    match freeze() {
        Ok(f) => f,
        Err(e) => {
            openser_core::log_err!("{e}");
            // Never reached in a started server (mod_init fails first); keep going
            // with a time-based secret rather than panicking.
            let t = openser_core::clock::now().to_string().into_bytes();
            FROZEN.get_or_init(|| Frozen {
                secret: t,
                nonce_expire: 300,
                realm_prefix: String::new(),
                rpid_avp: AvpId::Str("rpid".into()),
                rpid_prefix: String::new(),
                rpid_suffix: String::new(),
                checks: nc::Checks {
                    nonce_count: true,
                    one_time_nonce: false,
                },
                nc_slots: 65536,
                algs: vec![Alg::Md5],
            })
        }
    }
}

/// A fresh nonce for a challenge (expires `nonce_expire` seconds from now); with
/// replay protection on, it carries an id of the nonce table.
pub fn new_nonce() -> String {
    let f = frozen();
    let exp = openser_core::clock::now().saturating_add(i64::from(f.nonce_expire));
    let exp = u32::try_from(exp).unwrap_or(u32::MAX);
    match nc::table() {
        Some(t) => nonce::calc_nonce_id(exp, t.issue(), &f.secret),
        None => nonce::calc_nonce(exp, &f.secret),
    }
}

/// The pre-check for a back-end: `realm` as evaluated ("" = from the message),
/// `www` selects Authorization (true) or Proxy-Authorization.
pub fn pre_auth(msg: &mut SipMsg, realm: &str, www: bool) -> PreAuth {
    let f = frozen();
    api::pre_auth_algs(
        msg,
        realm,
        api::cred_hdr(www),
        &f.secret,
        &f.realm_prefix,
        &f.algs,
    )
}

/// The post-check after a correct response (stale nonce → not authorized).
pub fn post_auth(msg: &mut SipMsg, cred: &Cred) -> bool {
    api::post_auth_at(msg, cred, openser_core::clock::now())
}

/// Send a stateless reply (module sl's sender); false when it could not be sent.
pub fn send_reply(msg: &mut SipMsg, code: u16, reason: &str, hdrs: &[String]) -> bool {
    match sl::sl_reply(msg, code, reason, hdrs, &[]) {
        Ok(()) => true,
        Err(e) => {
            openser_core::log_err!("failed to send {code} reply: {e:?}");
            false
        }
    }
}

fn mod_init() -> Result<(), String> {
    let f = freeze()?;
    if f.checks.nonce_count || f.checks.one_time_nonce {
        nc::init(f.nc_slots)?;
    }
    Ok(())
}

/// `append_rpid_hf()` or `append_rpid_hf(prefix, suffix)` (both or neither).
fn fixup_rpid_hf(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    match args.len() {
        0 => Ok(Vec::new()),
        2 => Ok(vec![
            FixedArg::Str(string_arg(&args[0])?),
            FixedArg::Str(string_arg(&args[1])?),
        ]),
        _ => Err("append_rpid_hf: give both prefix and suffix, or neither".into()),
    }
}

fn cmd_append_rpid_hf(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let f = frozen();
    let (prefix, suffix) = match args {
        [FixedArg::Str(p), FixedArg::Str(s)] => (p.as_str(), s.as_str()),
        _ => (f.rpid_prefix.as_str(), f.rpid_suffix.as_str()),
    };
    rpid::append_rpid_hf(ctx, &f.rpid_avp, prefix, suffix)
}

fn cmd_is_rpid_user_e164(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    rpid::is_rpid_user_e164(ctx, &frozen().rpid_avp)
}

/// A realm argument: text, or a format when it holds PVs.
pub fn fixup_realm(a: &Arg) -> Result<FixedArg, String> {
    let s = string_arg(a)?;
    if s.contains('$') {
        Ok(FixedArg::Fmt(parse_format(&s)?))
    } else {
        Ok(FixedArg::Str(s))
    }
}

/// The qop argument of a challenge: an integer (1.2: non-zero adds `qop="auth"`), or
/// `auth`, `auth-int`, `auth,auth-int` (as Kamailio). `None` = no qop.
pub fn parse_qop_arg(q: &str) -> Result<Option<&'static str>, String> {
    let t = q.trim();
    if let Ok(n) = t.parse::<i64>() {
        return Ok((n != 0).then_some("auth"));
    }
    let mut auth = false;
    let mut int = false;
    for v in t.split(',').map(str::trim) {
        match v {
            "auth" => auth = true,
            "auth-int" => int = true,
            _ => {
                return Err(format!(
                    "auth: bad qop parameter '{q}' (expected 0, 1, auth, auth-int or auth,auth-int)"
                ));
            }
        }
    }
    Ok(match (auth, int) {
        (true, true) => Some("auth,auth-int"),
        (false, true) => Some("auth-int"),
        _ => Some("auth"),
    })
}

/// realm (text/PVs), qop (see [`parse_qop_arg`]; kept as its text).
fn fixup_challenge(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let realm = fixup_realm(&args[0])?;
    let q = string_arg(&args[1])?;
    let qop = parse_qop_arg(&q)?.unwrap_or("");
    Ok(vec![realm, FixedArg::Str(qop.to_string())])
}

/// The challenge itself: code 401 (www) or 407.
pub fn challenge(msg: &mut SipMsg, realm: &str, qop: bool, www: bool) -> i32 {
    challenge_qop(msg, realm, if qop { Some("auth") } else { None }, www)
}

/// The challenge with a qop list: one header per configured algorithm.
pub fn challenge_qop(msg: &mut SipMsg, realm: &str, qop: Option<&str>, www: bool) -> i32 {
    let hf = api::cred_hdr(www);
    let f = frozen();
    let realm = if realm.is_empty() {
        match api::get_realm(msg, hf, &f.realm_prefix) {
            Some(r) => r,
            None => {
                openser_core::log_err!("Error while extracting URI");
                send_reply(msg, 400, api::MSG_400, &[]);
                return 0;
            }
        }
    } else {
        realm.to_string()
    };
    let stale = api::marked_stale(msg, hf);
    let nonce = new_nonce();
    let hdrs: Vec<String> = if f.algs == [Alg::Md5] {
        vec![api::build_auth_hf_alg(
            www, &realm, &nonce, qop, stale, None,
        )]
    } else {
        f.algs
            .iter()
            .map(|&a| api::build_auth_hf_alg(www, &realm, &nonce, qop, stale, Some(a)))
            .collect()
    };
    let (code, reason) = if www {
        (401, "Unauthorized")
    } else {
        (407, "Proxy Authentication Required")
    };
    if send_reply(msg, code, reason, &hdrs) {
        0
    } else {
        -1
    }
}

fn challenge_cmd(ctx: &mut Ctx, args: &[FixedArg], www: bool) -> i32 {
    let realm = args.first().map(|a| ctx.arg_str(a)).unwrap_or_default();
    let qop = args.get(1).map(|a| ctx.arg_str(a)).unwrap_or_default();
    let qop = (!qop.is_empty()).then_some(qop.as_str());
    challenge_qop(ctx.msg, &realm, qop, www)
}

fn cmd_www_challenge(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    challenge_cmd(ctx, args, true)
}

fn cmd_proxy_challenge(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    challenge_cmd(ctx, args, false)
}

/// Remove the credentials header marked by a successful authorize.
pub fn consume_credentials(msg: &mut SipMsg) -> i32 {
    let idx = msg.auth_mark.map(|m| m.hdr_idx).filter(|&i| {
        msg.hdrs().get(i).is_some_and(|h| {
            matches!(
                h.htype,
                HdrType::Authorization | HdrType::ProxyAuthorization
            )
        })
    });
    match idx {
        Some(i) if msg.remove_header(i) => 1,
        _ => {
            use openser_core::parser::Method;
            if !matches!(msg.method(), Method::Ack | Method::Cancel) {
                openser_core::log_err!("No authorized credentials found (error in scripts)");
            }
            -1
        }
    }
}

fn cmd_consume_credentials(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    consume_credentials(ctx.msg)
}
