//! auth_db (reference §8.10): digest authorization against a subscriber table through
//! the generic DB API (`core::db`).
//!
//! * `www_authorize(realm, table)` / `proxy_authorize(realm, table)` (REQUEST): rc 1
//!   authorized (the `load_credentials` columns are loaded into AVPs), −1 not authorized
//!   (no credentials, unknown user, wrong response, stale or invalid nonce), 0 error
//!   with a reply already sent (500 on DB error, 400 on bad credentials).
//! * HA1 = the `password_column` value, or `password_column_2` (HA1B) when the digest
//!   username carries `@domain`; with `calculate_ha1` the column holds the plaintext
//!   password and HA1 = MD5(username:realm:password).
//! * SHA-256 and SHA-512/256 credentials (and their `-sess` forms; issue 18) read their
//!   HA1 from `password_column_sha256` / `password_column_2_sha256` (`ha1_sha256`,
//!   `ha1b_sha256`) and `password_column_sha512t256` / `password_column_2_sha512t256`
//!   (`ha1_sha512t256`, `ha1b_sha512t256`); with `calculate_ha1` the hash of the
//!   credential's algorithm is applied to the plaintext password. Which algorithms are
//!   accepted is auth's `algorithm` parameter.
//!
//! The URL's driver is checked at mod_init (a missing driver module is a start-up
//! error); every process opens its own connection in child_init and, if that failed,
//! retries at first use.

#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use auth::{self, Alg, PreAuth, api};
use openser_core::cfg::ast::Arg;
use openser_core::cfg::pv::{AvpName, PvParam, parse_pv};
use openser_core::db::{self, DbConn, DbVal, Key};
use openser_core::module::{BoolParam, CmdExport, FixedArg, ModuleExports, Param, StrParam};
use openser_core::parser::SipMsg;
use openser_core::route::REQUEST_ROUTE;
use openser_core::script::fixup::string_arg;
use openser_core::script::{AvpId, AvpList, Ctx, PvValue};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "auth_db",
    binds: &["auth"],
    params: &[
        Param::str("db_url", &P.db_url),
        Param::str("user_column", &P.user_column),
        Param::str("domain_column", &P.domain_column),
        Param::str("password_column", &P.password_column),
        Param::str("password_column_2", &P.password_column_2),
        Param::str("password_column_sha256", &P.password_column_sha256),
        Param::str("password_column_2_sha256", &P.password_column_2_sha256),
        Param::str("password_column_sha512t256", &P.password_column_sha512t256),
        Param::str(
            "password_column_2_sha512t256",
            &P.password_column_2_sha512t256,
        ),
        Param::bool("calculate_ha1", &P.calculate_ha1),
        Param::bool("use_domain", &P.use_domain),
        Param::str_with("load_credentials", &P.load_credentials, |s| {
            parse_credentials(s).map(|_| ())
        }),
    ],
    cmds: &[
        CmdExport::new("www_authorize", 2, 2, REQUEST_ROUTE, cmd_www_authorize)
            .fixup(fixup_authorize),
        CmdExport::new("proxy_authorize", 2, 2, REQUEST_ROUTE, cmd_proxy_authorize)
            .fixup(fixup_authorize),
    ],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    ..ModuleExports::EMPTY
};

pub const DEFAULT_DB_URL: &str = openser_core::db::DEFAULT_RO_URL;

/// The `modparam` cells (1.2 defaults).
pub struct Cells {
    pub db_url: StrParam,
    pub user_column: StrParam,
    pub domain_column: StrParam,
    pub password_column: StrParam,
    pub password_column_2: StrParam,
    pub password_column_sha256: StrParam,
    pub password_column_2_sha256: StrParam,
    pub password_column_sha512t256: StrParam,
    pub password_column_2_sha512t256: StrParam,
    pub calculate_ha1: BoolParam,
    pub use_domain: BoolParam,
    pub load_credentials: StrParam,
}

pub static P: Cells = Cells {
    db_url: StrParam::new(DEFAULT_DB_URL),
    user_column: StrParam::new("username"),
    domain_column: StrParam::new("domain"),
    password_column: StrParam::new("ha1"),
    password_column_2: StrParam::new("ha1b"),
    password_column_sha256: StrParam::new("ha1_sha256"),
    password_column_2_sha256: StrParam::new("ha1b_sha256"),
    password_column_sha512t256: StrParam::new("ha1_sha512t256"),
    password_column_2_sha512t256: StrParam::new("ha1b_sha512t256"),
    calculate_ha1: BoolParam::new(false),
    use_domain: BoolParam::new(false),
    load_credentials: StrParam::new("rpid"),
};

/// auth_db parameters as a value (what the authorization code reads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthDbParams {
    pub db_url: String,
    pub user_column: String,
    pub domain_column: String,
    pub password_column: String,
    pub password_column_2: String,
    pub password_column_sha256: String,
    pub password_column_2_sha256: String,
    pub password_column_sha512t256: String,
    pub password_column_2_sha512t256: String,
    pub calculate_ha1: bool,
    pub use_domain: bool,
    pub load_credentials: String,
}

/// The parameters in effect (1.2 defaults where `modparam` set nothing).
pub fn params() -> AuthDbParams {
    AuthDbParams {
        db_url: P.db_url.get().into(),
        user_column: P.user_column.get().into(),
        domain_column: P.domain_column.get().into(),
        password_column: P.password_column.get().into(),
        password_column_2: P.password_column_2.get().into(),
        password_column_sha256: P.password_column_sha256.get().into(),
        password_column_2_sha256: P.password_column_2_sha256.get().into(),
        password_column_sha512t256: P.password_column_sha512t256.get().into(),
        password_column_2_sha512t256: P.password_column_2_sha512t256.get().into(),
        calculate_ha1: P.calculate_ha1.get(),
        use_domain: P.use_domain.get(),
        load_credentials: P.load_credentials.get().into(),
    }
}

/// Parameters in effect, with `load_credentials` parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub p: AuthDbParams,
    /// (AVP, column) pairs loaded on success.
    pub creds: Vec<(AvpId, String)>,
    /// The digest algorithms accepted (auth's `algorithm`; MD5 alone by default).
    pub algs: Vec<Alg>,
}

impl Config {
    pub fn new(p: AuthDbParams) -> Result<Config, String> {
        let creds = parse_credentials(&p.load_credentials)?;
        Ok(Config {
            p,
            creds,
            algs: vec![Alg::Md5],
        })
    }

    /// The HA1 column for a credential of algorithm `alg`, with (`true`) or without
    /// `@domain` in its username.
    pub fn ha1_column(&self, alg: Alg, with_domain: bool) -> &str {
        let p = &self.p;
        match (alg.base(), with_domain) {
            (Alg::Sha256, false) => &p.password_column_sha256,
            (Alg::Sha256, true) => &p.password_column_2_sha256,
            (Alg::Sha512_256, false) => &p.password_column_sha512t256,
            (Alg::Sha512_256, true) => &p.password_column_2_sha512t256,
            (_, false) => &p.password_column,
            (_, true) => &p.password_column_2,
        }
    }
}

static FROZEN: OnceLock<Config> = OnceLock::new();

/// Parse `load_credentials`: `[$avp(spec)=]column;...` (default AVP: the column name as
/// a string AVP).
pub fn parse_credentials(s: &str) -> Result<Vec<(AvpId, String)>, String> {
    let mut out = Vec::new();
    for item in s.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        let (avp, col) = match item.split_once('=') {
            None => (AvpId::Str(item.to_string()), item.to_string()),
            Some((spec, col)) => {
                let (spec, col) = (spec.trim(), col.trim());
                let bad = || format!("auth_db: bad load_credentials item '{item}'");
                let (pv, used) = parse_pv(spec).map_err(|e| format!("{}: {e}", bad()))?;
                if used != spec.len() || !matches!(pv.name.as_str(), "avp") {
                    return Err(bad());
                }
                let id = match &pv.param {
                    Some(PvParam::Avp(AvpName::Int(i))) => AvpId::Int(*i),
                    Some(PvParam::Avp(AvpName::Str(n) | AvpName::Alias(n))) => {
                        AvpId::Str(n.clone())
                    }
                    _ => return Err(bad()),
                };
                if col.is_empty() {
                    return Err(bad());
                }
                (id, col.to_string())
            }
        };
        out.push((avp, col));
    }
    Ok(out)
}

fn cfg() -> Config {
    match FROZEN.get() {
        Some(c) => c.clone(),
        None => Config::new(params()).unwrap_or_else(|_| Config {
            p: params(),
            creds: Vec::new(),
            algs: auth::frozen().algs.clone(),
        }),
    }
}

fn mod_init() -> Result<(), String> {
    let mut c = Config::new(params())?;
    c.algs = auth::frozen().algs.clone();
    db::check_url(&c.p.db_url).map_err(|e| format!("auth_db: {e}"))?;
    let _ = FROZEN.set(c);
    Ok(())
}

fn child_init(_rank: i32) -> Result<(), String> {
    db::open_in_child("auth_db", &cfg().p.db_url);
    Ok(())
}

fn fixup_authorize(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let realm = auth::fixup_realm(&args[0])?;
    let table = string_arg(&args[1])?;
    if table.is_empty() {
        return Err("auth_db: empty table name".into());
    }
    Ok(vec![realm, FixedArg::Str(table)])
}

/// The outcome of an authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authz {
    Authorized,
    NotAuthorized,
    /// Send this reply and stop the script (rc 0).
    Reply(u16, &'static str),
}

impl Authz {
    /// Script return code: 1 / −1 / 0.
    pub fn rc(&self) -> i32 {
        match self {
            Authz::Authorized => 1,
            Authz::NotAuthorized => -1,
            Authz::Reply(..) => 0,
        }
    }
}

/// Look up the HA1 of `cred` and the credential columns. `Ok(None)` = no such user.
pub fn get_ha1(
    conn: &mut dyn DbConn,
    c: &Config,
    cred: &api::Cred,
    table: &str,
) -> Result<Option<(String, Vec<DbVal>)>, db::DbError> {
    let p = &c.p;
    // With calculate_ha1 the one password column holds the plaintext for every algorithm.
    let pass_col = if p.calculate_ha1 {
        p.password_column.as_str()
    } else {
        c.ha1_column(cred.alg, cred.user_domain().is_some())
    };
    let mut keys = vec![Key::eq(&p.user_column, cred.user())];
    if p.use_domain {
        keys.push(Key::eq(&p.domain_column, cred.realm.as_str()));
    }
    let mut cols: Vec<&str> = vec![pass_col];
    cols.extend(c.creds.iter().map(|(_, col)| col.as_str()));
    let rows = conn.query(table, &keys, &cols, None)?;
    let Some(mut row) = rows.into_iter().next() else {
        openser_core::log_dbg!("no result for user '{}'", cred.user());
        return Ok(None);
    };
    if row.is_empty() {
        return Ok(None);
    }
    let rest = row.split_off(1);
    let secret = row[0].as_str().map(|s| s.into_owned()).unwrap_or_default();
    let ha1 = if p.calculate_ha1 {
        auth::digest::calc_ha1_alg(cred.alg.base(), &cred.username, &cred.realm, &secret)
    } else {
        secret
    };
    Ok(Some((ha1, rest)))
}

/// The authorization logic with the process's connection and the auth secret passed
/// in (unit-testable). `conn` None = no database connection (500).
#[allow(clippy::too_many_arguments)]
pub fn authorize_with(
    msg: &mut SipMsg,
    avps: &mut AvpList,
    realm: &str,
    table: &str,
    www: bool,
    c: &Config,
    conn: Option<&mut dyn DbConn>,
    secret: &[u8],
    realm_prefix: &str,
    now: i64,
) -> Authz {
    let hf = api::cred_hdr(www);
    let cred = match api::pre_auth_algs(msg, realm, hf, secret, realm_prefix, &c.algs) {
        PreAuth::Authorized => return Authz::Authorized,
        PreAuth::NotAuthorized => return Authz::NotAuthorized,
        PreAuth::Reply(code, reason) => return Authz::Reply(code, reason),
        PreAuth::DoAuthorization(cred) => cred,
    };
    let Some(conn) = conn else {
        openser_core::log_err!("no database connection");
        return Authz::Reply(500, api::MSG_500);
    };
    let (ha1, vals) = match get_ha1(conn, c, &cred, table) {
        Err(e) => {
            openser_core::log_err!("database error: {e}");
            return Authz::Reply(500, api::MSG_500);
        }
        Ok(None) => return Authz::NotAuthorized,
        Ok(Some(x)) => x,
    };
    if !cred.response_ok(msg, &ha1) {
        openser_core::log_dbg!("invalid response for '{}'", cred.username);
        return Authz::NotAuthorized;
    }
    if !api::post_auth_at(msg, &cred, now) {
        return Authz::NotAuthorized;
    }
    for ((avp, _), v) in c.creds.iter().zip(vals) {
        let pv = match v {
            DbVal::Null => continue,
            DbVal::Int(i) => PvValue::Int(i),
            other => PvValue::Str(other.as_str().map(|s| s.into_owned()).unwrap_or_default()),
        };
        avps.add(avp.clone(), pv);
    }
    Authz::Authorized
}

fn authorize(ctx: &mut Ctx, args: &[FixedArg], www: bool) -> i32 {
    let realm = args.first().map(|a| ctx.arg_str(a)).unwrap_or_default();
    let table = args.get(1).map(|a| ctx.arg_str(a)).unwrap_or_default();
    let c = cfg();
    let f = auth::frozen();
    let now = openser_core::clock::now();
    let mut run = |conn: Option<&mut dyn DbConn>| {
        authorize_with(
            ctx.msg,
            &mut ctx.avps,
            &realm,
            &table,
            www,
            &c,
            conn,
            &f.secret,
            &f.realm_prefix,
            now,
        )
    };
    let r = match db::with_conn(&c.p.db_url, |conn| run(Some(conn))) {
        Ok(r) => r,
        Err(e) => {
            openser_core::log_err!("can't connect to the database: {e}");
            run(None)
        }
    };
    if let Authz::Reply(code, reason) = r {
        auth::send_reply(ctx.msg, code, reason, &[]);
    }
    r.rc()
}

fn cmd_www_authorize(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    authorize(ctx, args, true)
}

fn cmd_proxy_authorize(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    authorize(ctx, args, false)
}
