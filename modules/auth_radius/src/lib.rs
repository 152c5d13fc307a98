//! auth_radius (1.2 `modules/auth_radius`): digest authorization by a RADIUS server
//! (draft-sterman-aaa-sip, as FreeRADIUS's `digest` module speaks it).
//!
//! * `radius_www_authorize(realm)` / `radius_proxy_authorize(realm[, uri_user])`
//!   (REQUEST): the credentials for `realm` (text with PVs; "" = the To host of a
//!   REGISTER, else the From host) are checked by auth's pre-check (nonce ours and
//!   fresh, algorithm offered), then sent in an Access-Request: `User-Name` (the digest
//!   username, `@realm` added when it has no domain), `Digest-Response`, and inside
//!   `Digest-Attributes` the realm, nonce, URI, method, user name and — with qop — qop,
//!   nc and cnonce (`Digest-Body-Digest` = MD5 of the body for auth-int;
//!   `Digest-Algorithm` when not MD5), `Service-Type` = `service_type` (default the
//!   dictionary's `Sip-Session`, 15), `Sip-URI-User` = the `uri_user` PV or the user of
//!   the To (REGISTER) / From URI, unescaped; `Cisco-AVPair` `call-id=…` when the
//!   dictionary has that attribute. Access-Accept → auth's post-check (stale nonce, nc
//!   replay) and the `SIP-AVP` reply attributes are added as AVPs (`name:str`,
//!   `name#int`, `#id:str`, `#id#int`); rc 1. Access-Reject → rc −1 (the script
//!   challenges). No server answering within the RADIUS timeout → `500 Server Internal
//!   Error` sent and rc 0, as auth_db does on a database error (1.2 returned −1, which
//!   re-challenged the user forever while the server was down). Bad credentials → 400,
//!   rc 0. ACK and CANCEL are authorized without asking.
//! * `use_ruri_flag` (Kamailio's, default −1 = off): when that message flag is set, the
//!   Request-URI is sent as `Digest-URI` instead of the credentials' `uri` (for
//!   devices behind ALGs rewriting the URI).
//!
//! Parameters (1.2 defaults): `radius_config`
//! (`/usr/local/etc/radiusclient-ng/radiusclient.conf`), `service_type` (−1),
//! `use_ruri_flag` (−1). The configuration and dictionary are read in mod_init; a
//! missing file or attribute is a start-up error.

use std::sync::OnceLock;

use auth::{PreAuth, api};
use openser_core::cfg::ast::Arg;
use openser_core::cfg::pv::parse_pv;
use openser_core::module::{CmdExport, FixedArg, IntParam, ModuleExports, Param, StrParam};
use openser_core::parser::{Method, SipMsg, Uri};
use openser_core::route::REQUEST_ROUTE;
use openser_core::script::fixup::string_arg;
use openser_core::script::{Ctx, PvValue};
use openser_radius::{Attr, AttrDef, ClientConf, Service, packet, sipavp};

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "auth_radius",
    binds: &["auth"],
    params: &[
        Param::str("radius_config", &P.radius_config),
        Param::int_range("service_type", &P.service_type, -1, u32::MAX as i64),
        Param::int_range("use_ruri_flag", &P.use_ruri_flag, -1, 31),
    ],
    cmds: &[
        CmdExport::new(
            "radius_www_authorize",
            1,
            1,
            REQUEST_ROUTE,
            cmd_www_authorize,
        )
        .fixup(fixup_authorize),
        CmdExport::new(
            "radius_proxy_authorize",
            1,
            2,
            REQUEST_ROUTE,
            cmd_proxy_authorize,
        )
        .fixup(fixup_authorize),
    ],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells (1.2 defaults).
pub struct Cells {
    pub radius_config: StrParam,
    pub service_type: IntParam,
    pub use_ruri_flag: IntParam,
}

pub static P: Cells = Cells {
    radius_config: StrParam::new(openser_radius::DEFAULT_CONFIG),
    service_type: IntParam::new(-1),
    use_ruri_flag: IntParam::new(-1),
};

/// The attributes an Access-Request carries, found in the dictionary at mod_init.
#[derive(Clone, Debug)]
pub struct Attrs {
    pub user_name: AttrDef,
    pub service_type: AttrDef,
    pub sip_uri_user: AttrDef,
    pub digest_response: AttrDef,
    pub digest_realm: AttrDef,
    pub digest_nonce: AttrDef,
    pub digest_method: AttrDef,
    pub digest_uri: AttrDef,
    pub digest_qop: AttrDef,
    pub digest_algorithm: AttrDef,
    pub digest_body_digest: AttrDef,
    pub digest_cnonce: AttrDef,
    pub digest_nonce_count: AttrDef,
    pub digest_user_name: AttrDef,
    pub sip_avp: AttrDef,
    /// Only when the dictionary has the Cisco vendor's attribute (as 1.2).
    pub cisco_avpair: Option<AttrDef>,
}

impl Attrs {
    pub fn from_dict(d: &openser_radius::Dict) -> Result<Attrs, String> {
        Ok(Attrs {
            user_name: d.need_attr("User-Name")?,
            service_type: d.need_attr("Service-Type")?,
            sip_uri_user: d.need_attr("Sip-URI-User")?,
            digest_response: d.need_attr("Digest-Response")?,
            digest_realm: d.need_attr("Digest-Realm")?,
            digest_nonce: d.need_attr("Digest-Nonce")?,
            digest_method: d.need_attr("Digest-Method")?,
            digest_uri: d.need_attr("Digest-URI")?,
            digest_qop: d.need_attr("Digest-QOP")?,
            digest_algorithm: d.need_attr("Digest-Algorithm")?,
            digest_body_digest: d.need_attr("Digest-Body-Digest")?,
            digest_cnonce: d.need_attr("Digest-CNonce")?,
            digest_nonce_count: d.need_attr("Digest-Nonce-Count")?,
            digest_user_name: d.need_attr("Digest-User-Name")?,
            sip_avp: d.need_attr("SIP-AVP")?,
            cisco_avpair: d
                .vendor("Cisco")
                .and_then(|_| d.attr("Cisco-AVPair").cloned()),
        })
    }
}

/// What mod_init prepared.
pub struct State {
    pub conf: ClientConf,
    pub attrs: Attrs,
    pub service: u32,
    pub use_ruri_flag: i32,
}

static STATE: OnceLock<State> = OnceLock::new();

fn mod_init() -> Result<(), String> {
    let conf = openser_radius::load_config("auth_radius", P.radius_config.get())?;
    let attrs = Attrs::from_dict(&conf.dict).map_err(|e| format!("auth_radius: {e}"))?;
    let service = match P.service_type.get() {
        -1 => conf
            .dict
            .need_value("Service-Type", "Sip-Session")
            .map_err(|e| format!("auth_radius: {e}"))?,
        v => v as u32,
    };
    if conf.auth.is_empty() {
        return Err(format!(
            "auth_radius: no authserver in {}",
            P.radius_config.get()
        ));
    }
    let _ = STATE.set(State {
        conf,
        attrs,
        service,
        use_ruri_flag: P.use_ruri_flag.get() as i32,
    });
    Ok(())
}

fn fixup_authorize(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let mut out = vec![auth::fixup_realm(&args[0])?];
    if let Some(a) = args.get(1) {
        let s = string_arg(a)?;
        let (spec, used) = parse_pv(&s).map_err(|e| format!("uri_user: {e}"))?;
        if used != s.len() {
            return Err(format!("uri_user '{s}' is not one pseudo-variable"));
        }
        out.push(FixedArg::Pv(spec));
    }
    Ok(out)
}

/// The user part (unescaped) of the To URI of a REGISTER, else of the From URI.
pub fn uri_user_of(msg: &SipMsg) -> Option<String> {
    let na = if msg.method() == Method::Register {
        msg.to().ok()?
    } else {
        msg.from().ok()?
    };
    Uri::parse(msg.s(na.uri)).ok().map(|u| u.user_unescaped())
}

/// The Access-Request attributes for credential `cred` of `msg`.
pub fn request_attrs(
    st: &State,
    msg: &SipMsg,
    cred: &api::Cred,
    uri_user: &str,
) -> Result<Vec<Attr>, String> {
    let a = &st.attrs;
    let s = |d: &AttrDef, v: &str| d.encode_raw(v.as_bytes());
    let mut out = Vec::with_capacity(16);
    let user_name = if cred.user_domain().is_some() {
        cred.username.clone()
    } else {
        format!("{}@{}", cred.username, cred.realm)
    };
    out.push(s(&a.user_name, &user_name)?);
    out.push(s(&a.digest_user_name, &cred.username)?);
    out.push(s(&a.digest_realm, &cred.realm)?);
    out.push(s(&a.digest_nonce, &cred.nonce)?);
    let uri = if st.use_ruri_flag >= 0 && msg.flags & (1u32 << st.use_ruri_flag) != 0 {
        msg.ruri().to_string()
    } else {
        cred.uri.clone()
    };
    out.push(s(&a.digest_uri, &uri)?);
    out.push(s(&a.digest_method, msg.method_str())?);
    match auth::digest::Qop::parse(cred.qop.as_deref()) {
        auth::digest::Qop::Auth => {
            out.push(s(&a.digest_qop, "auth")?);
            out.push(s(&a.digest_nonce_count, &cred.nc)?);
            out.push(s(&a.digest_cnonce, &cred.cnonce)?);
        }
        auth::digest::Qop::AuthInt => {
            out.push(s(&a.digest_qop, "auth-int")?);
            out.push(s(&a.digest_nonce_count, &cred.nc)?);
            out.push(s(&a.digest_cnonce, &cred.cnonce)?);
            out.push(s(
                &a.digest_body_digest,
                &auth::digest::md5_hex(&[msg.body()]),
            )?);
        }
        _ => {}
    }
    if cred.alg != auth::Alg::Md5 {
        out.push(s(&a.digest_algorithm, cred.alg.name())?);
    }
    out.push(s(&a.digest_response, &cred.response)?);
    out.push(a.service_type.encode_int(st.service)?);
    out.push(s(&a.sip_uri_user, uri_user)?);
    if let Some(c) = &a.cisco_avpair {
        let callid = msg.callid().unwrap_or("").trim();
        out.push(s(c, &format!("call-id={callid}"))?);
    }
    Ok(out)
}

fn authorize(ctx: &mut Ctx, args: &[FixedArg], www: bool) -> i32 {
    let Some(st) = STATE.get() else {
        openser_core::log_err!("module not initialised");
        return -1;
    };
    let realm = args.first().map(|a| ctx.arg_str(a)).unwrap_or_default();
    let cred = match auth::pre_auth(ctx.msg, &realm, www) {
        PreAuth::Authorized => return 1,
        PreAuth::NotAuthorized => return -1,
        PreAuth::Reply(code, reason) => {
            auth::send_reply(ctx.msg, code, reason, &[]);
            return 0;
        }
        PreAuth::DoAuthorization(c) => c,
    };
    let uri_user = match args.get(1) {
        Some(FixedArg::Pv(spec)) => match ctx.get_pv(spec) {
            PvValue::Str(s) => s,
            _ => {
                openser_core::log_err!(
                    "uri_user pseudo-variable {} has no string value",
                    spec.text
                );
                return -1;
            }
        },
        _ => match uri_user_of(ctx.msg) {
            Some(u) => u,
            None => {
                openser_core::log_err!("To/From URI not found");
                return -1;
            }
        },
    };
    let attrs = match request_attrs(st, ctx.msg, &cred, &uri_user) {
        Ok(a) => a,
        Err(e) => {
            openser_core::log_err!(
                "cannot build the Access-Request for '{}': {e}",
                cred.username
            );
            return -1;
        }
    };
    match openser_radius::send(&st.conf, Service::Auth, &attrs) {
        Ok(r) if r.code == packet::ACCESS_ACCEPT => {
            if !auth::post_auth(ctx.msg, &cred) {
                return -1;
            }
            sipavp::load_avps(
                &r,
                &st.attrs.sip_avp,
                &mut ctx.avps,
                "",
                sipavp::parse_sip_avp,
            );
            1
        }
        Ok(_) => {
            openser_core::log_dbg!("RADIUS refused '{}'", cred.username);
            -1
        }
        Err(e) => {
            openser_core::log_err!("authorization of '{}' failed: {e}", cred.username);
            auth::send_reply(ctx.msg, 500, api::MSG_500, &[]);
            0
        }
    }
}

fn cmd_www_authorize(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    authorize(ctx, args, true)
}

fn cmd_proxy_authorize(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    authorize(ctx, args, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let conf = ClientConf::from_text(
            "authserver 127.0.0.1:1812:s\n",
            "t",
            std::path::Path::new("."),
        )
        .unwrap();
        let attrs = Attrs::from_dict(&conf.dict).unwrap();
        State {
            conf,
            attrs,
            service: 15,
            use_ruri_flag: 3,
        }
    }

    const REG: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc\r\n\
From: <sip:al%69ce@example.com>;tag=f\r\n\
To: <sip:al%69ce@example.com>\r\n\
Call-ID: c1\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn access_request_attributes() {
        let st = state();
        let mut msg = SipMsg::parse(REG).unwrap();
        assert_eq!(uri_user_of(&msg).as_deref(), Some("alice"));
        let cred = api::Cred {
            username: "alice".into(),
            realm: "example.com".into(),
            nonce: "n0nce".into(),
            uri: "sip:example.com".into(),
            response: "0123456789abcdef0123456789abcdef".into(),
            qop: Some("auth".into()),
            cnonce: "cn".into(),
            nc: "00000001".into(),
            ..Default::default()
        };
        let a = request_attrs(&st, &msg, &cred, "alice").unwrap();
        assert_eq!(a[0], Attr::new(1, b"alice@example.com"));
        // Digest-Attributes sub-types: user name 10, realm 1, nonce 2, uri 4, method 3,
        // qop 5, nc 9, cnonce 8.
        let subs: Vec<(u8, Vec<u8>)> = a
            .iter()
            .filter(|x| x.typ == 207)
            .map(|x| (x.value[0], x.value[2..].to_vec()))
            .collect();
        assert_eq!(
            subs.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![10, 1, 2, 4, 3, 5, 9, 8]
        );
        assert_eq!(subs[3].1, b"sip:example.com");
        assert_eq!(subs[4].1, b"REGISTER");
        assert!(a.contains(&Attr::new(206, cred.response.as_bytes())));
        assert!(a.contains(&Attr::new(6, &15u32.to_be_bytes())));
        assert!(a.contains(&Attr::new(208, b"alice")));
        // use_ruri_flag: the Request-URI as Digest-URI.
        msg.flags |= 1 << 3;
        msg.new_uri = Some("sip:rewritten.example.com".into());
        let a = request_attrs(&st, &msg, &cred, "alice").unwrap();
        assert!(a.iter().any(|x| x.typ == 207
            && x.value[0] == 4
            && &x.value[2..] == b"sip:rewritten.example.com"));
        // A username with a domain is sent as it is.
        let c2 = api::Cred {
            username: "bob@other.net".into(),
            qop: None,
            ..cred
        };
        let a = request_attrs(&st, &msg, &c2, "bob").unwrap();
        assert_eq!(a[0], Attr::new(1, b"bob@other.net"));
        assert!(!a.iter().any(|x| x.typ == 207 && x.value[0] == 5));
    }
}
