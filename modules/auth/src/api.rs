//! The authorization API shared with the credential back-ends (auth_db): OpenSER 1.2's
//! `pre_auth` / `post_auth` (auth/api.c) and `get_realm` (auth/common.c).

use super::digest::{Alg, Qop, RespInput, check_response_alg};
use super::nc::{self, Checks, Verdict};
use super::nonce;
use openser_core::parser::{AuthMark, HdrType, Method, Parsed, SipMsg, Uri};

/// A well-formed credential found for the realm (values copied out of the message).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cred {
    /// Index of the credentials header in the message's header list.
    pub hdr_idx: usize,
    /// The whole digest username (`user` or `user@domain`).
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub qop: Option<String>,
    pub cnonce: String,
    pub nc: String,
    /// The `algorithm=` of the credential (absent = MD5), known and offered.
    pub alg: Alg,
}

impl Cred {
    /// The user part of the username (before `@`).
    pub fn user(&self) -> &str {
        self.username
            .split_once('@')
            .map_or(&self.username, |p| p.0)
    }
    /// The domain part of the username (after `@`), if any.
    pub fn user_domain(&self) -> Option<&str> {
        self.username
            .split_once('@')
            .map(|p| p.1)
            .filter(|d| !d.is_empty())
    }
    /// Whether `response` is correct for `ha1` (the stored HA1 of `self.alg.base()`)
    /// and `msg`'s method (and body for auth-int).
    pub fn response_ok(&self, msg: &SipMsg, ha1: &str) -> bool {
        let i = RespInput {
            method: msg.method_str(),
            uri: &self.uri,
            nonce: &self.nonce,
            qop: self.qop.as_deref(),
            cnonce: &self.cnonce,
            nc: &self.nc,
            body: msg.body(),
        };
        check_response_alg(self.alg, ha1, &i, &self.response)
    }
}

/// The outcome of the pre-check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreAuth {
    /// ACK / CANCEL: authorized without checking.
    Authorized,
    /// No credentials for the realm, or a bad/foreign nonce.
    NotAuthorized,
    /// An error; the reply (code, reason) is to be sent and the script stopped.
    Reply(u16, &'static str),
    /// Check the response of this credential.
    DoAuthorization(Cred),
}

/// Reason phrases of the module's error replies (OpenSER's `auth_400_err` / `auth_500_err`).
pub const MSG_400: &str = "Bad Credentials";
pub const MSG_500: &str = "Server Internal Error";

/// The credentials header type checked by `www_*` (Authorization) or `proxy_*`
/// (Proxy-Authorization).
pub fn cred_hdr(www: bool) -> HdrType {
    if www {
        HdrType::Authorization
    } else {
        HdrType::ProxyAuthorization
    }
}

/// Strip `prefix` from the front of `realm` when it starts with it (and is longer).
pub fn strip_realm<'a>(realm: &'a str, prefix: &str) -> &'a str {
    match realm.strip_prefix(prefix) {
        Some(r) if !prefix.is_empty() && !r.is_empty() => r,
        _ => realm,
    }
}

/// The default realm when the script gives an empty one: the To host of a REGISTER
/// checked with Authorization (`www_*`), else the From host; `realm_prefix` is stripped.
/// `None` when the URI can't be parsed.
pub fn get_realm(msg: &SipMsg, hf: HdrType, realm_prefix: &str) -> Option<String> {
    let na = if msg.method() == Method::Register && hf == HdrType::Authorization {
        msg.to().ok()?
    } else {
        msg.from().ok()?
    };
    let uri = Uri::parse(msg.s(na.uri)).ok()?;
    Some(strip_realm(&uri.host, realm_prefix).to_string())
}

/// The pre-check with an explicit secret (see [`super::pre_auth`]). `realm` is the
/// realm as evaluated from the script (may be empty). On `DoAuthorization` the header
/// is marked authorized in `msg.auth_mark`.
pub fn pre_auth_with(
    msg: &mut SipMsg,
    realm: &str,
    hf: HdrType,
    secret: &[u8],
    realm_prefix: &str,
) -> PreAuth {
    pre_auth_algs(msg, realm, hf, secret, realm_prefix, &[Alg::Md5])
}

/// [`pre_auth_with`] accepting the algorithms `algs` (those the challenges offer): a
/// credential with another or an unknown `algorithm=` is not authorized (the script's
/// challenge then offers the right ones).
pub fn pre_auth_algs(
    msg: &mut SipMsg,
    realm: &str,
    hf: HdrType,
    secret: &[u8],
    realm_prefix: &str,
    algs: &[Alg],
) -> PreAuth {
    if matches!(msg.method(), Method::Ack | Method::Cancel) {
        return PreAuth::Authorized;
    }
    let realm = if realm.is_empty() {
        match get_realm(msg, hf, realm_prefix) {
            Some(r) => r,
            None => {
                openser_core::log_err!("Error while extracting realm");
                return PreAuth::Reply(400, MSG_400);
            }
        }
    } else {
        realm.to_string()
    };
    let cred = match find_credentials(msg, &realm, hf) {
        Err(()) => {
            openser_core::log_err!("Error while looking for credentials");
            return PreAuth::Reply(400, MSG_400);
        }
        Ok(None) => return PreAuth::NotAuthorized,
        Ok(Some(c)) => c,
    };
    let Some(cred) = cred else {
        openser_core::log_err!("Credentials received are not filled properly");
        return PreAuth::Reply(400, MSG_400);
    };
    msg.auth_mark = Some(AuthMark {
        hdr_idx: cred.hdr_idx,
        stale: false,
    });
    if !nonce::check_nonce(&cred.nonce, secret) {
        openser_core::log_dbg!("Invalid nonce value received");
        return PreAuth::NotAuthorized;
    }
    if !algs.contains(&cred.alg) {
        openser_core::log_info!(
            "digest algorithm {} not offered (user '{}')",
            cred.alg.name(),
            cred.username
        );
        return PreAuth::NotAuthorized;
    }
    PreAuth::DoAuthorization(cred)
}

/// Find the credentials of type `hf` for `realm` (case-insensitive), in header order.
/// `Err` for an unparsable credentials header met on the way; `Ok(Some(None))` for a
/// credential of the realm that lacks a mandatory parameter.
#[allow(clippy::type_complexity)]
fn find_credentials(msg: &SipMsg, realm: &str, hf: HdrType) -> Result<Option<Option<Cred>>, ()> {
    for i in msg.all_of(hf).collect::<Vec<_>>() {
        let d = match msg.parsed(i) {
            Ok(Parsed::Digest(d)) => d,
            Ok(_) => continue,
            Err(_) => return Err(()),
        };
        if !msg.s(d.scheme).eq_ignore_ascii_case("digest") {
            continue;
        }
        let Some(r) = d.realm else {
            // A digest credential without realm is malformed.
            return Ok(Some(None));
        };
        if !msg.s(r).eq_ignore_ascii_case(realm) {
            continue;
        }
        let get = |s: Option<openser_core::parser::Span>| s.map(|s| msg.s(s).to_string());
        let qop = get(d.qop);
        let needs_cnonce = matches!(Qop::parse(qop.as_deref()), Qop::Auth | Qop::AuthInt);
        let (Some(username), Some(nonce), Some(uri), Some(response)) =
            (get(d.username), get(d.nonce), get(d.uri), get(d.response))
        else {
            return Ok(Some(None));
        };
        let cnonce = get(d.cnonce);
        let nc = get(d.nc);
        if needs_cnonce && (cnonce.is_none() || nc.is_none()) {
            return Ok(Some(None));
        }
        let algorithm = get(d.algorithm);
        let Some(alg) = Alg::parse(algorithm.as_deref()) else {
            openser_core::log_info!(
                "unknown digest algorithm '{}' (user '{username}')",
                algorithm.unwrap_or_default()
            );
            return Ok(None);
        };
        if alg.is_sess() && cnonce.is_none() {
            // A -sess HA1 needs the cnonce.
            return Ok(Some(None));
        }
        return Ok(Some(Some(Cred {
            hdr_idx: i,
            username,
            realm: msg.s(r).to_string(),
            nonce,
            uri,
            response,
            qop,
            cnonce: cnonce.unwrap_or_default(),
            nc: nc.unwrap_or_default(),
            alg,
        })));
    }
    Ok(None)
}

/// After a correct response: a stale nonce makes the request not authorized (ACK and
/// CANCEL excepted) and marks the message so the next challenge says `stale=true`.
/// With replay protection on (a nonce table exists), the nonce's use is checked and
/// recorded: a replayed `nc`, a reused one-time nonce, a nonce without id or one whose
/// slot was given to a newer nonce is stale too. Returns true when authorized.
pub fn post_auth_at(msg: &mut SipMsg, cred: &Cred, now: i64) -> bool {
    let f = super::frozen();
    post_auth_checks(msg, cred, now, nc::table(), f.checks)
}

/// [`post_auth_at`] with the table and the checks passed in.
pub fn post_auth_checks(
    msg: &mut SipMsg,
    cred: &Cred,
    now: i64,
    table: Option<&nc::NcTable>,
    checks: Checks,
) -> bool {
    if matches!(msg.method(), Method::Ack | Method::Cancel) {
        return true;
    }
    let stale = if nonce::is_stale(&cred.nonce, now) {
        openser_core::log_dbg!("Response is OK, but nonce is stale");
        true
    } else if let Some(t) = table {
        let nc = match Qop::parse(cred.qop.as_deref()) {
            Qop::None => None,
            _ => Some(nc::parse_nc(&cred.nc).unwrap_or(0)),
        };
        let v = match nonce::nonce_id(&cred.nonce) {
            Some(id) => t.check(id, nc, checks),
            None => Verdict::Overwritten,
        };
        if v != Verdict::Ok {
            openser_core::log_info!(
                "nonce refused for '{}' ({v:?}): challenged again, stale",
                cred.username
            );
        }
        v != Verdict::Ok
    } else {
        false
    };
    if stale {
        msg.auth_mark = Some(AuthMark {
            hdr_idx: cred.hdr_idx,
            stale: true,
        });
        return false;
    }
    true
}

/// The WWW-/Proxy-Authenticate header line of a challenge (with CRLF).
pub fn build_auth_hf(www: bool, realm: &str, nonce: &str, qop: bool, stale: bool) -> String {
    build_auth_hf_alg(
        www,
        realm,
        nonce,
        if qop { Some("auth") } else { None },
        stale,
        None,
    )
}

/// A challenge header line with an explicit qop list (`auth`, `auth-int`,
/// `auth,auth-int`) and `algorithm=` (omitted when `None`: 1.2's MD5 form).
pub fn build_auth_hf_alg(
    www: bool,
    realm: &str,
    nonce: &str,
    qop: Option<&str>,
    stale: bool,
    alg: Option<Alg>,
) -> String {
    format!(
        "{}: Digest realm=\"{realm}\", nonce=\"{nonce}\"{}{}{}\r\n",
        if www {
            "WWW-Authenticate"
        } else {
            "Proxy-Authenticate"
        },
        qop.map(|q| format!(", qop=\"{q}\"")).unwrap_or_default(),
        alg.map(|a| format!(", algorithm={}", a.name()))
            .unwrap_or_default(),
        if stale { ", stale=true" } else { "" },
    )
}

/// Whether the credentials header marked on `msg` (of type `hf`) had a stale nonce.
pub fn marked_stale(msg: &SipMsg, hf: HdrType) -> bool {
    msg.auth_mark
        .is_some_and(|m| m.stale && msg.hdrs().get(m.hdr_idx).is_some_and(|h| h.htype == hf))
}
