//! auth (reference §8.9): digest challenges, nonces and the authorization pre-check
//! shared with the credential back-ends (auth_db).
//!
//! * `www_challenge(realm, qop)` / `proxy_challenge(realm, qop)` (REQUEST): 401 / 407
//!   with `WWW-Authenticate` / `Proxy-Authenticate: Digest realm="..", nonce=".."`
//!   `[, qop="auth"][, stale=true]`; rc 0 after sending (the script stops).
//! * `consume_credentials()` (REQUEST): removes the credentials header a successful
//!   authorize marked; −1 if there is none.
//! * `append_rpid_hf()` / `append_rpid_hf(prefix, suffix)` and `is_rpid_user_e164()`
//!   (REQUEST, BRANCH, FAILURE) on the `rpid_avp` AVP ([`rpid`]).
//!
//! The secret (`secret` parameter, else 32 random printable bytes) is fixed in the
//! attendant at mod_init, before the fork, so every child issues and accepts the same
//! nonces.

pub mod api;
pub mod digest;
pub mod nonce;
pub mod rpid;

#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use crate::core::cfg::ast::Arg;
use crate::core::cfg::pv::parse_format;
use crate::core::module::{
    CmdExport, FixedArg, ModParamValue, ModuleExports, ParamCell, ParamExport,
};
use crate::core::parser::{HdrType, SipMsg};
use crate::core::route::{BRANCH_ROUTE, FAILURE_ROUTE, REQUEST_ROUTE};
use crate::core::script::fixup::string_arg;
use crate::core::script::{AvpId, Ctx};

pub use api::{Cred, PreAuth};

/// auth parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthParams {
    /// None = random at start-up.
    pub secret: Option<Vec<u8>>,
    pub nonce_expire: u32,
    pub realm_prefix: String,
    pub rpid_prefix: String,
    pub rpid_suffix: String,
    pub rpid_avp: String,
}

impl Default for AuthParams {
    fn default() -> Self {
        AuthParams {
            secret: None,
            nonce_expire: 300,
            realm_prefix: String::new(),
            rpid_prefix: String::new(),
            rpid_suffix: ";party=calling;id-type=subscriber;screen=yes".into(),
            rpid_avp: "$avp(s:rpid)".into(),
        }
    }
}

/// The parameters in effect (secret resolved).
#[derive(Clone, Debug)]
pub struct Frozen {
    pub secret: Vec<u8>,
    pub nonce_expire: u32,
    pub realm_prefix: String,
    pub rpid_avp: AvpId,
    pub rpid_prefix: String,
    pub rpid_suffix: String,
}

static PARAMS: ParamCell<AuthParams> = ParamCell::new();
static FROZEN: OnceLock<Frozen> = OnceLock::new();

/// The parameters as set so far.
pub fn params() -> AuthParams {
    PARAMS.get()
}

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
    let p = params();
    let secret = match p.secret {
        Some(s) => s,
        None => random_secret()?,
    };
    let rpid_avp = rpid::avp_of_spec(&p.rpid_avp)?;
    Ok(FROZEN.get_or_init(|| Frozen {
        secret,
        nonce_expire: p.nonce_expire,
        realm_prefix: p.realm_prefix,
        rpid_avp,
        rpid_prefix: p.rpid_prefix,
        rpid_suffix: p.rpid_suffix,
    }))
}

/// The frozen parameters (fixed at mod_init; initialised on first use otherwise).
pub fn frozen() -> &'static Frozen {
    match freeze() {
        Ok(f) => f,
        Err(e) => {
            crate::log_err!("ERROR:auth: {e}\n");
            // Never reached in a started server (mod_init fails first); keep going
            // with a time-based secret rather than panicking.
            let t = now().to_string().into_bytes();
            FROZEN.get_or_init(|| Frozen {
                secret: t,
                nonce_expire: 300,
                realm_prefix: String::new(),
                rpid_avp: AvpId::Str("rpid".into()),
                rpid_prefix: String::new(),
                rpid_suffix: String::new(),
            })
        }
    }
}

/// Current unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A fresh nonce for a challenge (expires `nonce_expire` seconds from now).
pub fn new_nonce() -> String {
    let f = frozen();
    let exp = now().saturating_add(i64::from(f.nonce_expire));
    nonce::calc_nonce(u32::try_from(exp).unwrap_or(u32::MAX), &f.secret)
}

/// The pre-check for a back-end: `realm` as evaluated ("" = from the message),
/// `www` selects Authorization (true) or Proxy-Authorization.
pub fn pre_auth(msg: &mut SipMsg, realm: &str, www: bool) -> PreAuth {
    let f = frozen();
    api::pre_auth_with(msg, realm, api::cred_hdr(www), &f.secret, &f.realm_prefix)
}

/// The post-check after a correct response (stale nonce → not authorized).
pub fn post_auth(msg: &mut SipMsg, cred: &Cred) -> bool {
    api::post_auth_at(msg, cred, now())
}

/// Send a stateless reply (module sl's sender); false when it could not be sent.
pub fn send_reply(msg: &mut SipMsg, code: u16, reason: &str, hdrs: &[String]) -> bool {
    match crate::modules::sl::sl_reply(msg, code, reason, hdrs, &[]) {
        Ok(()) => true,
        Err(e) => {
            crate::log_err!("ERROR:auth: failed to send {code} reply: {e:?}\n");
            false
        }
    }
}

crate::param_text!(set_realm_prefix, PARAMS, realm_prefix);
crate::param_text!(set_rpid_prefix, PARAMS, rpid_prefix);
crate::param_text!(set_rpid_suffix, PARAMS, rpid_suffix);
crate::param_text!(set_rpid_avp, PARAMS, rpid_avp);

fn set_secret(v: &ModParamValue) -> Result<(), String> {
    let s = v.text();
    if s.is_empty() {
        return Err("auth: parameter secret must not be empty".into());
    }
    PARAMS.update(|p| p.secret = Some(s.into_bytes()));
    Ok(())
}

fn set_nonce_expire(v: &ModParamValue) -> Result<(), String> {
    let x: u32 = v.ranged("auth", "nonce_expire")?;
    if x == 0 {
        return Err("auth: parameter nonce_expire must be positive".into());
    }
    PARAMS.update(|p| p.nonce_expire = x);
    Ok(())
}

fn mod_init() -> Result<(), String> {
    if !crate::core::module::is_loaded("sl") {
        return Err("auth: can't load SL API (module sl must be loaded)".into());
    }
    freeze().map(|_| ())
}

static PARAM_LIST: [ParamExport; 6] = [
    ParamExport {
        name: "secret",
        set: set_secret,
    },
    ParamExport {
        name: "nonce_expire",
        set: set_nonce_expire,
    },
    ParamExport {
        name: "realm_prefix",
        set: set_realm_prefix,
    },
    ParamExport {
        name: "rpid_prefix",
        set: set_rpid_prefix,
    },
    ParamExport {
        name: "rpid_suffix",
        set: set_rpid_suffix,
    },
    ParamExport {
        name: "rpid_avp",
        set: set_rpid_avp,
    },
];

static CMDS: [CmdExport; 5] = [
    CmdExport {
        name: "www_challenge",
        min_args: 2,
        max_args: 2,
        fixup: Some(fixup_challenge),
        handler: cmd_www_challenge,
        routes: REQUEST_ROUTE,
    },
    CmdExport {
        name: "proxy_challenge",
        min_args: 2,
        max_args: 2,
        fixup: Some(fixup_challenge),
        handler: cmd_proxy_challenge,
        routes: REQUEST_ROUTE,
    },
    CmdExport {
        name: "consume_credentials",
        min_args: 0,
        max_args: 0,
        fixup: None,
        handler: cmd_consume_credentials,
        routes: REQUEST_ROUTE,
    },
    CmdExport {
        name: "append_rpid_hf",
        min_args: 0,
        max_args: 2,
        fixup: Some(fixup_rpid_hf),
        handler: cmd_append_rpid_hf,
        routes: REQUEST_ROUTE | BRANCH_ROUTE | FAILURE_ROUTE,
    },
    CmdExport {
        name: "is_rpid_user_e164",
        min_args: 0,
        max_args: 0,
        fixup: None,
        handler: cmd_is_rpid_user_e164,
        routes: REQUEST_ROUTE | BRANCH_ROUTE | FAILURE_ROUTE,
    },
];

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

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "auth",
    params: &PARAM_LIST,
    cmds: &CMDS,
    pvs: &[],
    mod_init: Some(mod_init),
    child_init: None,
    destroy: None,
    pre_script: None,
    reply_hook: None,
};

/// A realm argument: text, or a format when it holds PVs.
pub fn fixup_realm(a: &Arg) -> Result<FixedArg, String> {
    let s = string_arg(a)?;
    if s.contains('$') {
        Ok(FixedArg::Fmt(parse_format(&s)?))
    } else {
        Ok(FixedArg::Str(s))
    }
}

/// realm (text/PVs), qop ("0"/"1", any integer: non-zero adds `qop="auth"`).
fn fixup_challenge(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let realm = fixup_realm(&args[0])?;
    let q = string_arg(&args[1])?;
    let qop: i64 = q
        .trim()
        .parse()
        .map_err(|_| format!("auth: bad qop parameter '{q}' (expected 0 or 1)"))?;
    Ok(vec![realm, FixedArg::Int(qop)])
}

/// The challenge itself: code 401 (www) or 407.
pub fn challenge(msg: &mut SipMsg, realm: &str, qop: bool, www: bool) -> i32 {
    let hf = api::cred_hdr(www);
    let f = frozen();
    let realm = if realm.is_empty() {
        match api::get_realm(msg, hf, &f.realm_prefix) {
            Some(r) => r,
            None => {
                crate::log_err!("ERROR:auth:challenge: Error while extracting URI\n");
                send_reply(msg, 400, api::MSG_400, &[]);
                return 0;
            }
        }
    } else {
        realm.to_string()
    };
    let stale = api::marked_stale(msg, hf);
    let hdr = api::build_auth_hf(www, &realm, &new_nonce(), qop, stale);
    let (code, reason) = if www {
        (401, "Unauthorized")
    } else {
        (407, "Proxy Authentication Required")
    };
    if send_reply(msg, code, reason, &[hdr]) {
        0
    } else {
        -1
    }
}

fn challenge_cmd(ctx: &mut Ctx, args: &[FixedArg], www: bool) -> i32 {
    let realm = args.first().map(|a| ctx.arg_str(a)).unwrap_or_default();
    let qop = args.get(1).and_then(|a| ctx.arg_int(a)).unwrap_or(0) != 0;
    challenge(ctx.msg, &realm, qop, www)
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
            use crate::core::parser::Method;
            if !matches!(msg.method(), Method::Ack | Method::Cancel) {
                crate::log_err!(
                    "ERROR:auth:consume_credentials: No authorized credentials found (error in scripts)\n"
                );
            }
            -1
        }
    }
}

fn cmd_consume_credentials(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    consume_credentials(ctx.msg)
}
