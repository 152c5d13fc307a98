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
//!
//! The URL's driver is checked at mod_init (a missing driver module is a start-up
//! error); every process opens its own connection in child_init and, if that failed,
//! retries at first use.

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::sync::OnceLock;

use crate::core::cfg::ast::Arg;
use crate::core::cfg::pv::{AvpName, PvParam, parse_pv};
use crate::core::db::{self, DbConn, DbVal, Key};
use crate::core::module::{
    CmdExport, FixedArg, ModParamValue, ModuleExports, ParamCell, ParamExport,
};
use crate::core::parser::SipMsg;
use crate::core::route::REQUEST_ROUTE;
use crate::core::script::fixup::string_arg;
use crate::core::script::{AvpId, AvpList, Ctx, PvValue};
use crate::modules::auth::{self, PreAuth, api};

pub const DEFAULT_DB_URL: &str = "mysql://openserro:openserro@localhost/openser";

/// auth_db parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthDbParams {
    pub db_url: String,
    pub user_column: String,
    pub domain_column: String,
    pub password_column: String,
    pub password_column_2: String,
    pub calculate_ha1: bool,
    pub use_domain: bool,
    pub load_credentials: String,
}

impl Default for AuthDbParams {
    fn default() -> Self {
        AuthDbParams {
            db_url: DEFAULT_DB_URL.into(),
            user_column: "username".into(),
            domain_column: "domain".into(),
            password_column: "ha1".into(),
            password_column_2: "ha1b".into(),
            calculate_ha1: false,
            use_domain: false,
            load_credentials: "rpid".into(),
        }
    }
}

/// Parameters in effect, with `load_credentials` parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub p: AuthDbParams,
    /// (AVP, column) pairs loaded on success.
    pub creds: Vec<(AvpId, String)>,
}

impl Config {
    pub fn new(p: AuthDbParams) -> Result<Config, String> {
        let creds = parse_credentials(&p.load_credentials)?;
        Ok(Config { p, creds })
    }
}

static PARAMS: ParamCell<AuthDbParams> = ParamCell::new();
static FROZEN: OnceLock<Config> = OnceLock::new();

thread_local! {
    /// This process's connection (opened in child_init or at first use).
    static CONN: RefCell<Option<Box<dyn DbConn>>> = const { RefCell::new(None) };
}

pub fn params() -> AuthDbParams {
    PARAMS.get()
}

/// A boolean parameter: an integer, or yes/no/true/false/on/off.
pub fn param_bool(v: &ModParamValue, name: &str) -> Result<bool, String> {
    match v {
        ModParamValue::Int(i) => Ok(*i != 0),
        ModParamValue::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" | "1" => Ok(true),
            "no" | "false" | "off" | "0" => Ok(false),
            _ => Err(format!(
                "auth_db: parameter {name} needs a boolean (yes/no, 1/0)"
            )),
        },
    }
}

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
        }),
    }
}

crate::param_text!(set_db_url, PARAMS, db_url);
crate::param_text!(set_user_column, PARAMS, user_column);
crate::param_text!(set_domain_column, PARAMS, domain_column);
crate::param_text!(set_password_column, PARAMS, password_column);
crate::param_text!(set_password_column_2, PARAMS, password_column_2);
crate::param_text!(set_load_credentials, PARAMS, load_credentials);

fn set_calculate_ha1(v: &ModParamValue) -> Result<(), String> {
    let b = param_bool(v, "calculate_ha1")?;
    PARAMS.update(|p| p.calculate_ha1 = b);
    Ok(())
}

fn set_use_domain(v: &ModParamValue) -> Result<(), String> {
    let b = param_bool(v, "use_domain")?;
    PARAMS.update(|p| p.use_domain = b);
    Ok(())
}

fn mod_init() -> Result<(), String> {
    if !crate::core::module::is_loaded("auth") {
        return Err("auth_db: module auth must be loaded".into());
    }
    let c = Config::new(params())?;
    db::check_url(&c.p.db_url).map_err(|e| format!("auth_db: {e}"))?;
    let _ = FROZEN.set(c);
    Ok(())
}

fn open_conn() -> Option<Box<dyn DbConn>> {
    let url = cfg().p.db_url;
    match db::connect(&url) {
        Ok(c) => Some(c),
        Err(e) => {
            crate::log_err!("ERROR:auth_db: can't connect to the database: {e}\n");
            None
        }
    }
}

fn child_init(_rank: i32) -> Result<(), String> {
    // A failure is not fatal: the connection is retried at first use.
    let c = open_conn();
    CONN.with(|cell| *cell.borrow_mut() = c);
    Ok(())
}

static PARAM_LIST: [ParamExport; 8] = [
    ParamExport {
        name: "db_url",
        set: set_db_url,
    },
    ParamExport {
        name: "user_column",
        set: set_user_column,
    },
    ParamExport {
        name: "domain_column",
        set: set_domain_column,
    },
    ParamExport {
        name: "password_column",
        set: set_password_column,
    },
    ParamExport {
        name: "password_column_2",
        set: set_password_column_2,
    },
    ParamExport {
        name: "calculate_ha1",
        set: set_calculate_ha1,
    },
    ParamExport {
        name: "use_domain",
        set: set_use_domain,
    },
    ParamExport {
        name: "load_credentials",
        set: set_load_credentials,
    },
];

static CMDS: [CmdExport; 2] = [
    CmdExport {
        name: "www_authorize",
        min_args: 2,
        max_args: 2,
        fixup: Some(fixup_authorize),
        handler: cmd_www_authorize,
        routes: REQUEST_ROUTE,
    },
    CmdExport {
        name: "proxy_authorize",
        min_args: 2,
        max_args: 2,
        fixup: Some(fixup_authorize),
        handler: cmd_proxy_authorize,
        routes: REQUEST_ROUTE,
    },
];

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "auth_db",
    params: &PARAM_LIST,
    cmds: &CMDS,
    pvs: &[],
    mod_init: Some(mod_init),
    child_init: Some(child_init),
    destroy: None,
    pre_script: None,
    reply_hook: None,
};

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
    let pass_col = if cred.user_domain().is_some() && !p.calculate_ha1 {
        p.password_column_2.as_str()
    } else {
        p.password_column.as_str()
    };
    let mut keys = vec![Key::eq(&p.user_column, cred.user())];
    if p.use_domain {
        keys.push(Key::eq(&p.domain_column, cred.realm.as_str()));
    }
    let mut cols: Vec<&str> = vec![pass_col];
    cols.extend(c.creds.iter().map(|(_, col)| col.as_str()));
    let rows = conn.query(table, &keys, &cols, None)?;
    let Some(mut row) = rows.into_iter().next() else {
        crate::log_dbg!(
            "DEBUG:auth_db:get_ha1: no result for user '{}'\n",
            cred.user()
        );
        return Ok(None);
    };
    if row.is_empty() {
        return Ok(None);
    }
    let rest = row.split_off(1);
    let secret = row[0].as_str().map(|s| s.into_owned()).unwrap_or_default();
    let ha1 = if p.calculate_ha1 {
        auth::digest::calc_ha1(&cred.username, &cred.realm, &secret)
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
    let cred = match api::pre_auth_with(msg, realm, api::cred_hdr(www), secret, realm_prefix) {
        PreAuth::Authorized => return Authz::Authorized,
        PreAuth::NotAuthorized => return Authz::NotAuthorized,
        PreAuth::Reply(code, reason) => return Authz::Reply(code, reason),
        PreAuth::DoAuthorization(cred) => cred,
    };
    let Some(conn) = conn else {
        crate::log_err!("ERROR:auth_db:authorize: no database connection\n");
        return Authz::Reply(500, api::MSG_500);
    };
    let (ha1, vals) = match get_ha1(conn, c, &cred, table) {
        Err(e) => {
            crate::log_err!("ERROR:auth_db:authorize: database error: {e}\n");
            return Authz::Reply(500, api::MSG_500);
        }
        Ok(None) => return Authz::NotAuthorized,
        Ok(Some(x)) => x,
    };
    if !cred.response_ok(msg, &ha1) {
        crate::log_dbg!(
            "DEBUG:auth_db:authorize: invalid response for '{}'\n",
            cred.username
        );
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
    let now = auth::now();
    let r = CONN.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = open_conn();
        }
        let conn: Option<&mut dyn DbConn> = match slot.as_mut() {
            Some(b) => Some(b.as_mut()),
            None => None,
        };
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
    });
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
