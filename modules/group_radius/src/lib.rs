//! group_radius (1.2 `modules/group_radius`): group membership checked by a RADIUS
//! server.
//!
//! * `radius_is_user_in(uri, group)` (REQUEST): `uri` is `Request-URI`, `To`, `From`
//!   or `Credentials` (the credentials an authorize function accepted); `group` a
//!   string (PVs allowed). An Access-Request with `User-Name` = the user (with
//!   `use_domain`, `user@domain`), `Sip-Group` = the group and `Service-Type` =
//!   `Group-Check` (12) is sent; rc 1 on Access-Accept, −1 on Access-Reject, when no
//!   server answered (logged) or when the user cannot be found.
//!
//! Parameters (1.2 defaults): `radius_config`
//! (`/usr/local/etc/radiusclient-ng/radiusclient.conf`), `use_domain` (0).

use std::sync::OnceLock;

use openser_core::cfg::ast::Arg;
use openser_core::cfg::pv::parse_format;
use openser_core::module::{BoolParam, CmdExport, FixedArg, ModuleExports, Param, StrParam};
use openser_core::parser::{HdrType, SipMsg, Uri};
use openser_core::route::REQUEST_ROUTE;
use openser_core::script::Ctx;
use openser_core::script::fixup::string_arg;
use openser_radius::{AttrDef, ClientConf, Service, packet};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "group_radius",
    params: &[
        Param::str("radius_config", &P.radius_config),
        Param::bool("use_domain", &P.use_domain),
    ],
    cmds: &[
        CmdExport::new("radius_is_user_in", 2, 2, REQUEST_ROUTE, cmd_is_user_in)
            .fixup(fixup_is_user_in),
    ],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells (1.2 defaults).
pub struct Cells {
    pub radius_config: StrParam,
    pub use_domain: BoolParam,
}

pub static P: Cells = Cells {
    radius_config: StrParam::new(openser_radius::DEFAULT_CONFIG),
    use_domain: BoolParam::new(false),
};

struct State {
    conf: ClientConf,
    user_name: AttrDef,
    sip_group: AttrDef,
    service_type: AttrDef,
    group_check: u32,
}

static STATE: OnceLock<State> = OnceLock::new();

fn mod_init() -> Result<(), String> {
    let conf = openser_radius::load_config("group_radius", P.radius_config.get())?;
    let e = |e: String| format!("group_radius: {e}");
    let d = &conf.dict;
    let st = State {
        user_name: d.need_attr("User-Name").map_err(e)?,
        sip_group: d.need_attr("Sip-Group").map_err(e)?,
        service_type: d.need_attr("Service-Type").map_err(e)?,
        group_check: d.need_value("Service-Type", "Group-Check").map_err(e)?,
        conf,
    };
    if st.conf.auth.is_empty() {
        return Err(format!(
            "group_radius: no authserver in {}",
            P.radius_config.get()
        ));
    }
    let _ = STATE.set(st);
    Ok(())
}

/// Where the user comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Ruri,
    To,
    From,
    Credentials,
}

/// The `uri` argument (case-insensitive, as 1.2).
pub fn parse_source(s: &str) -> Result<Source, String> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "request-uri" => Source::Ruri,
        "to" => Source::To,
        "from" => Source::From,
        "credentials" => Source::Credentials,
        _ => {
            return Err(format!(
                "radius_is_user_in: unsupported header field identifier '{s}' \
                 (Request-URI, To, From or Credentials)"
            ));
        }
    })
}

fn fixup_is_user_in(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let src = parse_source(&string_arg(&args[0])?)?;
    let g = string_arg(&args[1])?;
    let g = if g.contains('$') {
        FixedArg::Fmt(parse_format(&g)?)
    } else {
        FixedArg::Str(g)
    };
    Ok(vec![FixedArg::Int(src as i64), g])
}

/// User and domain of the authorized credentials (user@domain in the username wins
/// over the realm).
pub fn credentials(msg: &SipMsg) -> Option<(String, String)> {
    let m = msg.auth_mark?;
    let h = msg.hdrs().get(m.hdr_idx)?;
    if !matches!(
        h.htype,
        HdrType::Authorization | HdrType::ProxyAuthorization
    ) {
        return None;
    }
    let d = openser_core::parser::typed::parse_digest(msg.buf(), h.body).ok()?;
    let user = msg.os(d.username)?.trim_matches('"').to_string();
    let realm = msg.os(d.realm).unwrap_or("").trim_matches('"').to_string();
    Some(match user.split_once('@') {
        Some((u, dom)) if !dom.is_empty() => (u.to_string(), dom.to_string()),
        _ => (user, realm),
    })
}

/// User and domain of `src` in `msg`.
pub fn user_domain(msg: &SipMsg, src: Source) -> Option<(String, String)> {
    let uri = match src {
        Source::Credentials => return credentials(msg),
        Source::Ruri => msg.ruri().to_string(),
        Source::To => msg.s(msg.to().ok()?.uri).to_string(),
        Source::From => msg.s(msg.from().ok()?.uri).to_string(),
    };
    let u = Uri::parse(&uri).ok()?;
    Some((u.user.to_string(), u.host.to_string()))
}

fn cmd_is_user_in(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(st) = STATE.get() else {
        return -1;
    };
    let src = match args.first() {
        Some(FixedArg::Int(0)) => Source::Ruri,
        Some(FixedArg::Int(1)) => Source::To,
        Some(FixedArg::Int(2)) => Source::From,
        _ => Source::Credentials,
    };
    let group = args.get(1).map(|a| ctx.arg_str(a)).unwrap_or_default();
    let Some((user, domain)) = user_domain(ctx.msg, src) else {
        openser_core::log_err!("no user found in {src:?} (no authorized credentials?)");
        return -1;
    };
    let name = if P.use_domain.get() {
        format!("{user}@{domain}")
    } else {
        user
    };
    let attrs = [
        st.user_name.encode_raw(name.as_bytes()),
        st.sip_group.encode_raw(group.as_bytes()),
        st.service_type.encode_int(st.group_check),
    ];
    let attrs: Result<Vec<_>, String> = attrs.into_iter().collect();
    let attrs = match attrs {
        Ok(a) => a,
        Err(e) => {
            openser_core::log_err!("{e}");
            return -1;
        }
    };
    match openser_radius::send(&st.conf, Service::Auth, &attrs) {
        Ok(r) if r.code == packet::ACCESS_ACCEPT => 1,
        Ok(_) => -1,
        Err(e) => {
            openser_core::log_err!("group check of '{name}' in '{group}' failed: {e}");
            -1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(parse_source("request-URI").unwrap(), Source::Ruri);
        assert_eq!(parse_source("Credentials").unwrap(), Source::Credentials);
        assert!(parse_source("Contact").is_err());
        let m = openser_core::parser::test_invite();
        assert_eq!(
            user_domain(&m, Source::From),
            Some(("alice".into(), "a.example".into()))
        );
        assert_eq!(
            user_domain(&m, Source::Ruri),
            Some(("bob".into(), "b.example".into()))
        );
        assert_eq!(user_domain(&m, Source::Credentials), None);
    }
}
