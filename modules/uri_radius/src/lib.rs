//! uri_radius (1.2 `modules/uri_radius`): whether a Request-URI exists, asked of a
//! RADIUS server.
//!
//! * `radius_does_uri_exist()` (REQUEST): an Access-Request with `User-Name` =
//!   `user@host` of the Request-URI and `Service-Type` = `service_type` (default the
//!   dictionary's `Call-Check`, 10). Access-Accept: rc 1, and each `SIP-AVP` reply
//!   attribute `name:value` becomes a string AVP, as in 1.2. Access-Reject or no answer
//!   (logged): rc −1. `radius_does_uri_exist(pv)` (Kamailio's form) asks for the URI
//!   held by the pseudo-variable instead.
//!
//! Parameters (1.2 defaults): `radius_config`
//! (`/usr/local/etc/radiusclient-ng/radiusclient.conf`), `service_type` (−1).

use std::sync::OnceLock;

use openser_core::cfg::ast::Arg;
use openser_core::cfg::pv::parse_pv;
use openser_core::module::{CmdExport, FixedArg, IntParam, ModuleExports, Param, StrParam};
use openser_core::parser::Uri;
use openser_core::route::REQUEST_ROUTE;
use openser_core::script::Ctx;
use openser_core::script::fixup::string_arg;
use openser_radius::{AttrDef, ClientConf, Service, packet, sipavp};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "uri_radius",
    params: &[
        Param::str("radius_config", &P.radius_config),
        Param::int_range("service_type", &P.service_type, -1, u32::MAX as i64),
    ],
    cmds: &[CmdExport::new(
        "radius_does_uri_exist",
        0,
        1,
        REQUEST_ROUTE,
        cmd_does_uri_exist,
    )
    .fixup(fixup_uri)],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells (1.2 defaults).
pub struct Cells {
    pub radius_config: StrParam,
    pub service_type: IntParam,
}

pub static P: Cells = Cells {
    radius_config: StrParam::new(openser_radius::DEFAULT_CONFIG),
    service_type: IntParam::new(-1),
};

struct State {
    conf: ClientConf,
    user_name: AttrDef,
    service_type: AttrDef,
    sip_avp: AttrDef,
    service: u32,
}

static STATE: OnceLock<State> = OnceLock::new();

fn mod_init() -> Result<(), String> {
    let conf = openser_radius::load_config("uri_radius", P.radius_config.get())?;
    let e = |e: String| format!("uri_radius: {e}");
    let d = &conf.dict;
    let st = State {
        user_name: d.need_attr("User-Name").map_err(e)?,
        service_type: d.need_attr("Service-Type").map_err(e)?,
        sip_avp: d.need_attr("SIP-AVP").map_err(e)?,
        service: match P.service_type.get() {
            -1 => d.need_value("Service-Type", "Call-Check").map_err(e)?,
            v => v as u32,
        },
        conf,
    };
    if st.conf.auth.is_empty() {
        return Err(format!(
            "uri_radius: no authserver in {}",
            P.radius_config.get()
        ));
    }
    let _ = STATE.set(st);
    Ok(())
}

fn fixup_uri(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let Some(a) = args.first() else {
        return Ok(Vec::new());
    };
    let s = string_arg(a)?;
    let (spec, used) = parse_pv(&s)?;
    if used != s.len() {
        return Err(format!(
            "radius_does_uri_exist: '{s}' is not one pseudo-variable"
        ));
    }
    Ok(vec![FixedArg::Pv(spec)])
}

fn cmd_does_uri_exist(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let Some(st) = STATE.get() else {
        return -1;
    };
    let uri = match args.first() {
        Some(a) => ctx.arg_str(a),
        None => ctx.msg.ruri().to_string(),
    };
    let u = match Uri::parse(&uri) {
        Ok(u) => u,
        Err(e) => {
            openser_core::log_err!("error while parsing URI <{uri}>: {e}");
            return -1;
        }
    };
    let name = format!("{}@{}", u.user, u.host);
    let attrs: Result<Vec<_>, String> = [
        st.user_name.encode_raw(name.as_bytes()),
        st.service_type.encode_int(st.service),
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
            sipavp::load_avps(&r, &st.sip_avp, &mut ctx.avps, "", sipavp::parse_name_value);
            1
        }
        Ok(_) => -1,
        Err(e) => {
            openser_core::log_err!("check of '{name}' failed: {e}");
            -1
        }
    }
}
