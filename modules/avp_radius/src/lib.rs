//! avp_radius (1.2 `modules/avp_radius`): user attributes loaded from a RADIUS server
//! as AVPs.
//!
//! * `avp_load_radius(user)` (REQUEST, FAILURE; 1.2's name) and its alias
//!   `radius_load_avps(user)`: `user` is `caller` (the From URI), `callee` (the
//!   Request-URI, which must have a user) or `digest` (the authorized credentials'
//!   user and realm). An Access-Request with `User-Name` = `user@domain` and
//!   `Service-Type` = `caller_service_type` (default the dictionary's
//!   `SIP-Caller-AVPs`, 30) for caller and digest, `callee_service_type`
//!   (`SIP-Callee-AVPs`, 31) for callee. On Access-Accept every `SIP-AVP` reply
//!   attribute becomes an AVP (`name:str`, `name#int`, `#id:str`, `#id#int`); string
//!   names get the prefix `caller_` (caller, digest) or `callee_`, as in 1.2; rc 1.
//!   Access-Reject, no answer (logged) or no user: rc −1.
//!
//! Parameters (1.2 defaults): `radius_config`
//! (`/usr/local/etc/radiusclient-ng/radiusclient.conf`), `caller_service_type` (−1),
//! `callee_service_type` (−1).

use std::sync::OnceLock;

use openser_core::cfg::ast::Arg;
use openser_core::module::{CmdExport, FixedArg, IntParam, ModuleExports, Param, StrParam};
use openser_core::parser::{HdrType, SipMsg, Uri};
use openser_core::route::{FAILURE_ROUTE, REQUEST_ROUTE};
use openser_core::script::Ctx;
use openser_core::script::fixup::string_arg;
use openser_radius::{AttrDef, ClientConf, Service, packet, sipavp};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "avp_radius",
    params: &[
        Param::str("radius_config", &P.radius_config),
        Param::int_range(
            "caller_service_type",
            &P.caller_service_type,
            -1,
            u32::MAX as i64,
        ),
        Param::int_range(
            "callee_service_type",
            &P.callee_service_type,
            -1,
            u32::MAX as i64,
        ),
    ],
    cmds: &[
        CmdExport::new(
            "avp_load_radius",
            1,
            1,
            REQUEST_ROUTE | FAILURE_ROUTE,
            cmd_load,
        )
        .fixup(fixup_load),
        CmdExport::new(
            "radius_load_avps",
            1,
            1,
            REQUEST_ROUTE | FAILURE_ROUTE,
            cmd_load,
        )
        .fixup(fixup_load),
    ],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells (1.2 defaults).
pub struct Cells {
    pub radius_config: StrParam,
    pub caller_service_type: IntParam,
    pub callee_service_type: IntParam,
}

pub static P: Cells = Cells {
    radius_config: StrParam::new(openser_radius::DEFAULT_CONFIG),
    caller_service_type: IntParam::new(-1),
    callee_service_type: IntParam::new(-1),
};

pub const CALLER_PREFIX: &str = "caller_";
pub const CALLEE_PREFIX: &str = "callee_";

struct State {
    conf: ClientConf,
    user_name: AttrDef,
    service_type: AttrDef,
    sip_avp: AttrDef,
    caller: u32,
    callee: u32,
}

static STATE: OnceLock<State> = OnceLock::new();

fn mod_init() -> Result<(), String> {
    let conf = openser_radius::load_config("avp_radius", P.radius_config.get())?;
    let e = |e: String| format!("avp_radius: {e}");
    let d = &conf.dict;
    let pick = |p: &IntParam, name: &str| -> Result<u32, String> {
        match p.get() {
            -1 => d.need_value("Service-Type", name).map_err(e),
            v => Ok(v as u32),
        }
    };
    let st = State {
        user_name: d.need_attr("User-Name").map_err(e)?,
        service_type: d.need_attr("Service-Type").map_err(e)?,
        sip_avp: d.need_attr("SIP-AVP").map_err(e)?,
        caller: pick(&P.caller_service_type, "SIP-Caller-AVPs")?,
        callee: pick(&P.callee_service_type, "SIP-Callee-AVPs")?,
        conf,
    };
    if st.conf.auth.is_empty() {
        return Err(format!(
            "avp_radius: no authserver in {}",
            P.radius_config.get()
        ));
    }
    let _ = STATE.set(st);
    Ok(())
}

/// Whose attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    Caller,
    Callee,
    Digest,
}

pub fn parse_who(s: &str) -> Result<Who, String> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "caller" => Who::Caller,
        "callee" => Who::Callee,
        "digest" => Who::Digest,
        _ => {
            return Err(format!(
                "unknown parameter '{s}' (caller, callee or digest)"
            ));
        }
    })
}

fn fixup_load(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    Ok(vec![FixedArg::Int(
        parse_who(&string_arg(&args[0])?)? as i64
    )])
}

/// `user@domain` to ask for.
pub fn user_at_domain(msg: &SipMsg, who: Who) -> Result<String, String> {
    let (user, domain) = match who {
        Who::Caller => {
            let na = msg
                .from()
                .map_err(|_| "error while parsing the From header")?;
            let u = Uri::parse(msg.s(na.uri)).map_err(|e| format!("From URI: {e}"))?;
            (u.user, u.host)
        }
        Who::Callee => {
            let u = Uri::parse(msg.ruri()).map_err(|e| format!("Request-URI: {e}"))?;
            if u.user.is_empty() {
                return Err("Request-URI user is missing".into());
            }
            (u.user, u.host)
        }
        Who::Digest => {
            let m = msg.auth_mark.ok_or("no authorized credentials")?;
            let h = msg
                .hdrs()
                .get(m.hdr_idx)
                .ok_or("no authorized credentials")?;
            if !matches!(
                h.htype,
                HdrType::Authorization | HdrType::ProxyAuthorization
            ) {
                return Err("no authorized credentials".into());
            }
            let d = openser_core::parser::typed::parse_digest(msg.buf(), h.body)
                .map_err(|_| "bad credentials")?;
            let user = msg
                .os(d.username)
                .unwrap_or("")
                .trim_matches('"')
                .to_string();
            let realm = msg.os(d.realm).unwrap_or("").trim_matches('"').to_string();
            let user = user
                .split_once('@')
                .map_or(user.clone(), |(u, _)| u.to_string());
            (user, realm)
        }
    };
    Ok(format!("{user}@{domain}"))
}

fn cmd_load(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(st) = STATE.get() else {
        return -1;
    };
    let who = match args.first() {
        Some(FixedArg::Int(0)) => Who::Caller,
        Some(FixedArg::Int(1)) => Who::Callee,
        _ => Who::Digest,
    };
    let name = match user_at_domain(ctx.msg, who) {
        Ok(n) => n,
        Err(e) => {
            openser_core::log_err!("{e}");
            return -1;
        }
    };
    let (service, prefix) = match who {
        Who::Callee => (st.callee, CALLEE_PREFIX),
        _ => (st.caller, CALLER_PREFIX),
    };
    let attrs: Result<Vec<_>, String> = [
        st.user_name.encode_raw(name.as_bytes()),
        st.service_type.encode_int(service),
    ]
    .into_iter()
    .collect();
    let attrs = match attrs {
        Ok(a) => a,
        Err(e) => {
            openser_core::log_err!("{e}");
            return -1;
        }
    };
    match openser_radius::send(&st.conf, Service::Auth, &attrs) {
        Ok(r) if r.code == packet::ACCESS_ACCEPT => {
            sipavp::load_avps(
                &r,
                &st.sip_avp,
                &mut ctx.avps,
                prefix,
                sipavp::parse_sip_avp,
            );
            1
        }
        Ok(_) => {
            openser_core::log_dbg!("no attributes for '{name}'");
            -1
        }
        Err(e) => {
            openser_core::log_err!("loading the attributes of '{name}' failed: {e}");
            -1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_and_names() {
        assert_eq!(parse_who("Caller").unwrap(), Who::Caller);
        assert!(parse_who("nobody").is_err());
        let m = openser_core::parser::test_invite();
        assert_eq!(user_at_domain(&m, Who::Caller).unwrap(), "alice@a.example");
        assert_eq!(user_at_domain(&m, Who::Callee).unwrap(), "bob@b.example");
        assert!(user_at_domain(&m, Who::Digest).is_err());
    }
}
