//! permissions (OpenSER 1.2 `modules/permissions`): who may route where, who may
//! register which contacts, and which peers are trusted without authentication.
//!
//! Functions (REQUEST and FAILURE routes; 1 = allowed, −1 = denied or error):
//! * `allow_routing()`, `allow_routing(basename)`, `allow_routing(allow_file,
//!   deny_file)`: the pairs (From URI, `sip:user@host` of the Request-URI) and, with
//!   `check_all_branches`, (From URI, each further branch) against the rule files
//!   (`default_allow_file`/`default_deny_file`, `basename` + `allow_suffix`/
//!   `deny_suffix`, or the two files named). All pairs in the allow file: allowed;
//!   else one pair in the deny file: denied; else allowed.
//! * `allow_register(basename)`, `allow_register(allow_file, deny_file)`: the pairs
//!   (To URI, each Contact URI) of a REGISTER; no Contact or `*`: allowed.
//! * `allow_uri(basename, pv)`: the pair (From URI, the PV's value).
//! * `allow_trusted()`: the source IP of the request against the `trusted` table: a
//!   row with this `src_ip`, a `proto` of `any` or the request's transport and a NULL
//!   `from_pattern` or one matching the From URI (POSIX extended, case-sensitive).
//!   The matching row's `tag` is stored in `peer_tag_avp` when that is set. With
//!   `db_mode` 1 the table is cached in shared memory, loaded at start-up and by MI
//!   `trusted_reload`; with 0 every call queries the database.
//!
//! Rule files (`rules.rs`) are read at start-up; relative names are in the
//! configuration file's directory. A malformed line is a start-up error naming
//! `file:line` (1.2 skipped it with a log line); a missing file is an empty one.
//!
//! Parameters (1.2 defaults): `default_allow_file` "permissions.allow",
//! `default_deny_file` "permissions.deny", `check_all_branches` 1, `allow_suffix`
//! ".allow", `deny_suffix` ".deny", `db_url` unset (allow_trusted disabled),
//! `db_mode` 0, `trusted_table` "trusted", `source_col` "src_ip", `proto_col` "proto",
//! `from_col` "from_pattern", `tag_col` "tag", `peer_tag_avp` unset.
//!
//! * `set_address_group(group)`, `allow_address(ip_pv, port_pv)`,
//!   `allow_source_address(group)`: the cached `address` table (`address.rs`).
//!
//! MI: `trusted_reload`, `trusted_dump` (db_mode 1), `address_reload`,
//! `address_dump`, `subnet_dump`. Parameters of the address table (1.2 defaults):
//! `address_table` "address", `grp_col` "grp", `ip_addr_col` "ip_addr", `mask_col`
//! "mask", `port_col` "port".

pub mod address;
pub mod rules;
pub mod snapshot;
pub mod trusted;

use openser_core::cfg::ast::{Arg, ArgValue};
use openser_core::cfg::pv::parse_pv;
use openser_core::module::{
    BoolParam, CmdExport, FixedArg, IntParam, MiExport, ModuleExports, Param, StrParam,
};
use openser_core::parser::Uri;
use openser_core::route::{FAILURE_ROUTE, REQUEST_ROUTE};
use openser_core::script::Ctx;
use openser_core::script::fixup::string_arg;
use rules::Rules;
use std::sync::Arc;

const ROUTES: u32 = REQUEST_ROUTE | FAILURE_ROUTE;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "permissions",
    params: &[
        Param::str("default_allow_file", &P.default_allow_file),
        Param::str("default_deny_file", &P.default_deny_file),
        Param::bool("check_all_branches", &P.check_all_branches),
        Param::str("allow_suffix", &P.allow_suffix),
        Param::str("deny_suffix", &P.deny_suffix),
        Param::str("db_url", &P.db_url),
        Param::int_range("db_mode", &P.db_mode, 0, 1),
        Param::str("trusted_table", &P.trusted_table),
        Param::str("source_col", &P.source_col),
        Param::str("proto_col", &P.proto_col),
        Param::str("from_col", &P.from_col),
        Param::str("tag_col", &P.tag_col),
        Param::str_with("peer_tag_avp", &P.peer_tag_avp, trusted::check_tag_avp),
        Param::str("address_table", &P.address_table),
        Param::str("grp_col", &P.grp_col),
        Param::str("ip_addr_col", &P.ip_addr_col),
        Param::str("mask_col", &P.mask_col),
        Param::str("port_col", &P.port_col),
    ],
    cmds: &[
        CmdExport::new("allow_routing", 0, 2, ROUTES, cmd_allow_routing).fixup(fixup_files),
        CmdExport::new("allow_register", 1, 2, ROUTES, cmd_allow_register).fixup(fixup_files),
        CmdExport::new("allow_uri", 2, 2, ROUTES, cmd_allow_uri).fixup(fixup_uri),
        CmdExport::new("allow_trusted", 0, 0, ROUTES, trusted::cmd_allow_trusted),
        CmdExport::new(
            "set_address_group",
            1,
            1,
            ROUTES,
            address::cmd_set_address_group,
        )
        .fixup(address::fixup_group),
        CmdExport::new("allow_address", 2, 2, ROUTES, address::cmd_allow_address),
        CmdExport::new(
            "allow_source_address",
            1,
            1,
            ROUTES,
            address::cmd_allow_source_address,
        )
        .fixup(address::fixup_group),
    ],
    mi: &[
        MiExport::new("trusted_reload", trusted::mi_reload).no_input(),
        MiExport::new("trusted_dump", trusted::mi_dump).no_input(),
        MiExport::new("address_reload", address::mi_address_reload).no_input(),
        MiExport::new("address_dump", address::mi_address_dump).no_input(),
        MiExport::new("subnet_dump", address::mi_subnet_dump).no_input(),
    ],
    mod_init: Some(mod_init),
    child_init: Some(trusted::child_init),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells, with 1.2's defaults.
pub struct Params {
    pub default_allow_file: StrParam,
    pub default_deny_file: StrParam,
    pub check_all_branches: BoolParam,
    pub allow_suffix: StrParam,
    pub deny_suffix: StrParam,
    pub db_url: StrParam,
    pub db_mode: IntParam,
    pub trusted_table: StrParam,
    pub source_col: StrParam,
    pub proto_col: StrParam,
    pub from_col: StrParam,
    pub tag_col: StrParam,
    pub peer_tag_avp: StrParam,
    pub address_table: StrParam,
    pub grp_col: StrParam,
    pub ip_addr_col: StrParam,
    pub mask_col: StrParam,
    pub port_col: StrParam,
}

pub static P: Params = Params {
    default_allow_file: StrParam::new("permissions.allow"),
    default_deny_file: StrParam::new("permissions.deny"),
    check_all_branches: BoolParam::new(true),
    allow_suffix: StrParam::new(".allow"),
    deny_suffix: StrParam::new(".deny"),
    db_url: StrParam::new(""),
    db_mode: IntParam::new(0),
    trusted_table: StrParam::new("trusted"),
    source_col: StrParam::new("src_ip"),
    proto_col: StrParam::new("proto"),
    from_col: StrParam::new("from_pattern"),
    tag_col: StrParam::new("tag"),
    peer_tag_avp: StrParam::new(""),
    address_table: StrParam::new("address"),
    grp_col: StrParam::new("grp"),
    ip_addr_col: StrParam::new("ip_addr"),
    mask_col: StrParam::new("mask"),
    port_col: StrParam::new("port"),
};

/// The trusted cache (db_mode 1) and, with a `db_url`, the address table.
fn mod_init() -> Result<(), String> {
    trusted::mod_init()?;
    match trusted::url() {
        Some(url) => address::mod_init(url),
        None => Ok(()),
    }
}

/// An allow file and a deny file, parsed at start-up.
pub struct RulePair {
    pub allow: Rules,
    pub deny: Rules,
}

impl RulePair {
    fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// Load the two files for a call's arguments: none (the default files), a base
/// name, or two file names.
pub fn load_pair(args: &[String], cfg_file: Option<&str>) -> Result<RulePair, String> {
    let (allow, deny) = match args {
        [] => (
            P.default_allow_file.get().to_string(),
            P.default_deny_file.get().to_string(),
        ),
        [base] => (
            format!("{base}{}", P.allow_suffix.get()),
            format!("{base}{}", P.deny_suffix.get()),
        ),
        [a, d, ..] => (a.clone(), d.clone()),
    };
    Ok(RulePair {
        allow: rules::load(&rules::pathname(&allow, cfg_file))?,
        deny: rules::load(&rules::pathname(&deny, cfg_file))?,
    })
}

fn fixup_files(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let names = args.iter().map(string_arg).collect::<Result<Vec<_>, _>>()?;
    let pair = load_pair(&names, openser_core::config::cfg_file())?;
    Ok(vec![FixedArg::Any(Arc::new(pair))])
}

fn fixup_uri(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let base = string_arg(&args[0])?;
    let pv = match &args[1].value {
        ArgValue::Pv(pv) => pv.clone(),
        ArgValue::Str(s) if s.starts_with('$') => match parse_pv(s) {
            Ok((pv, n)) if n == s.len() => pv,
            _ => return Err(format!("bad pseudo-variable '{s}'")),
        },
        _ => return Err("second argument must be a pseudo-variable".into()),
    };
    let pair = load_pair(&[base], openser_core::config::cfg_file())?;
    Ok(vec![FixedArg::Any(Arc::new(pair)), FixedArg::Pv(pv)])
}

fn pair_of(args: &[FixedArg]) -> Option<&RulePair> {
    match args.first() {
        Some(FixedArg::Any(a)) => a.downcast_ref::<RulePair>(),
        _ => None,
    }
}

/// `sip:user@host` (or `sip:host`) of a URI, as 1.2's `get_plain_uri`.
pub fn plain_uri(uri: &str) -> Option<String> {
    let u = Uri::parse(uri).ok()?;
    Some(if u.user.is_empty() {
        format!("sip:{}", u.host)
    } else {
        format!("sip:{}@{}", u.user, u.host)
    })
}

fn from_uri(ctx: &Ctx) -> Option<String> {
    let f = ctx.msg.from().ok()?;
    Some(ctx.msg.s(f.uri).to_string())
}

/// allow_routing's decision for a From URI, the R-URI and the further branches.
pub fn check_routing(
    p: &RulePair,
    from: &str,
    ruri: &str,
    branches: &[String],
    all_branches: bool,
) -> i32 {
    if p.is_empty() {
        return 1;
    }
    if p.allow.search(from, ruri) {
        if !all_branches {
            return 1;
        }
    } else if p.deny.search(from, ruri) {
        openser_core::log_dbg!("deny rule found => routing is denied");
        return -1;
    } else if !all_branches {
        return 1;
    }
    for b in branches {
        if p.allow.search(from, b) {
            continue;
        }
        if p.deny.search(from, b) {
            openser_core::log_info!("deny rule found for one of the branches => routing is denied");
            return -1;
        }
    }
    1
}

fn cmd_allow_routing(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(p) = pair_of(args) else { return -1 };
    if p.is_empty() {
        return 1;
    }
    let Some(from) = from_uri(ctx) else {
        openser_core::log_err!("error while parsing the From header");
        return -1;
    };
    let Some(ruri) = plain_uri(ctx.ruri()) else {
        openser_core::log_err!("Request-URI parsing failed");
        return -1;
    };
    let mut branches = Vec::with_capacity(ctx.branches.len());
    for b in &ctx.branches {
        match plain_uri(&b.uri) {
            Some(u) => branches.push(u),
            None => {
                openser_core::log_err!("error while extracting the plain URI of a branch");
                return -1;
            }
        }
    }
    check_routing(p, &from, &ruri, &branches, P.check_all_branches.get())
}

/// allow_register's decision for a To URI and the Contact URIs (plain).
pub fn check_register(p: &RulePair, to: &str, contacts: &[String]) -> i32 {
    for c in contacts {
        if p.allow.search(to, c) {
            continue;
        }
        if p.deny.search(to, c) {
            openser_core::log_dbg!("deny rule found => REGISTER denied");
            return -1;
        }
    }
    1
}

fn cmd_allow_register(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(p) = pair_of(args) else { return -1 };
    if p.is_empty() {
        return 1;
    }
    let to = match ctx.msg.to() {
        Ok(t) => ctx.msg.s(t.uri).to_string(),
        Err(_) => {
            openser_core::log_err!("To or Contact not found");
            return -1;
        }
    };
    let list = match ctx.msg.contacts() {
        Ok(l) => l,
        Err(_) => {
            openser_core::log_err!("error while parsing the Contact header");
            return -1;
        }
    };
    if list.star {
        return 1;
    }
    let mut contacts = Vec::with_capacity(list.contacts.len());
    for c in &list.contacts {
        match plain_uri(ctx.msg.s(c.uri)) {
            Some(u) => contacts.push(u),
            None => {
                openser_core::log_err!("can't extract the plain Contact URI");
                return -1;
            }
        }
    }
    check_register(p, &to, &contacts)
}

fn cmd_allow_uri(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(p) = pair_of(args) else { return -1 };
    let Some(from) = from_uri(ctx) else {
        openser_core::log_err!("error while parsing the From header");
        return -1;
    };
    let Some(FixedArg::Pv(pv)) = args.get(1) else {
        return -1;
    };
    let v = ctx.get_pv(pv);
    if v.is_null() {
        openser_core::log_err!("pseudo variable value is not a string");
        return -1;
    }
    let uri = v.to_text();
    if p.allow.search(&from, &uri) {
        return 1;
    }
    if p.deny.search(&from, &uri) {
        return -1;
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(allow: &str, deny: &str) -> RulePair {
        RulePair {
            allow: rules::parse(allow, "a").unwrap(),
            deny: rules::parse(deny, "d").unwrap(),
        }
    }

    #[test]
    fn routing_first_match_wins() {
        let p = pair(
            "\"^sip:alice@\" : \"^sip:1[0-9]*@\"\n",
            "ALL : \"^sip:1[0-9]*@\"\n",
        );
        assert_eq!(
            check_routing(&p, "sip:alice@a", "sip:100@gw", &[], false),
            1
        );
        assert_eq!(check_routing(&p, "sip:bob@a", "sip:100@gw", &[], false), -1);
        assert_eq!(check_routing(&p, "sip:bob@a", "sip:bob@a", &[], false), 1);
        // a denied branch with check_all_branches
        let br = vec!["sip:150@gw".to_string()];
        assert_eq!(check_routing(&p, "sip:bob@a", "sip:bob@a", &br, true), -1);
        assert_eq!(check_routing(&p, "sip:bob@a", "sip:bob@a", &br, false), 1);
        assert_eq!(check_routing(&p, "sip:alice@a", "sip:1@gw", &br, true), 1);
        assert_eq!(check_routing(&pair("", ""), "x", "y", &br, true), 1);
    }

    #[test]
    fn register_pairs() {
        let p = pair("", "ALL : \"^sip:.*@10\\.0\\.0\\.1$\"\n");
        let ok = vec!["sip:a@192.0.2.1".to_string()];
        let gw = vec!["sip:a@192.0.2.1".to_string(), "sip:x@10.0.0.1".to_string()];
        assert_eq!(check_register(&p, "sip:a@d", &ok), 1);
        assert_eq!(check_register(&p, "sip:a@d", &gw), -1);
    }

    #[test]
    fn plain_uris() {
        assert_eq!(
            plain_uri("sip:bob@h:5060;transport=udp").as_deref(),
            Some("sip:bob@h")
        );
        assert_eq!(plain_uri("sip:h").as_deref(), Some("sip:h"));
        assert_eq!(plain_uri("garbage"), None);
    }

    #[test]
    fn exports_table() {
        for p in ["default_allow_file", "db_mode", "peer_tag_avp", "tag_col"] {
            assert!(EXPORTS.param(p).is_some(), "{p}");
        }
    }
}
