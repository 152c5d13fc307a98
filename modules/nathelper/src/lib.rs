//! nathelper (OpenSER 1.2 `modules/nathelper`): helpers for user agents behind NAT —
//! detecting them, rewriting what they advertise, keeping their NAT bindings open, and
//! steering their media through an RTP relay that speaks the rtpproxy protocol.
//!
//! Functions (return 1 on success, −1 on failure, as 1.2):
//! * `nat_uac_test(flags)` (REQUEST, ONREPLY, FAILURE, BRANCH): true if any selected
//!   test holds — 1 the Contact names an RFC 1918 address, 2 the top Via's host is not
//!   the source address, 4 the top Via's host is RFC 1918, 8 an SDP c= line is RFC 1918,
//!   16 the source port differs from the top Via's port (5060 if none).
//! * `fix_nated_contact()` (REQUEST, ONREPLY, BRANCH): the first Contact URI's host:port
//!   becomes the source address of the message.
//! * `fix_nated_sdp(flags[, ip])` (REQUEST, ONREPLY, FAILURE, BRANCH), 1.2's bits: 1 add
//!   `a=direction:active`, 2 rewrite every c= address, 4 add `nortpproxy_str`, 8 rewrite
//!   every o= address; the new address is `ip` (PVs allowed) or the source address. The
//!   old address is kept in an `a=oldmediaip:` line.
//! * `force_rtp_proxy([flags[, ip]])` (REQUEST, ONREPLY, FAILURE, BRANCH): allocate the
//!   call's streams on the RTP proxy (`U` for a request = offer, `L` for a reply =
//!   answer; flag `s` swaps) and point the SDP at it: every m= port, c= lines (media and
//!   session level), `a=rtcp` and with `o` the origin; `a=nortpproxy:yes` is added, and a
//!   body that already carries it is left alone unless `f`. Flags: `a` asymmetric, `i`/`e`
//!   internal/external (passed through), `l` lookup only, `f` force, `r` use the SDP
//!   address instead of the source address, `c` also the session c=, `o` origin, `s`
//!   swap. `ip` is the address to advertise if the proxy does not give one.
//! * `unforce_rtp_proxy()` (REQUEST, ONREPLY, FAILURE, BRANCH): `D` — delete the session.
//! * `add_rcv_param([flag])` (REQUEST): add `;received="sip:ip:port"` to every Contact
//!   (as a URI parameter if `flag` is non-zero, else a header parameter).
//! * `fix_nated_register()` (REQUEST): put that URI into `received_avp` for registrar's
//!   `save` (the parameter must be set — a config without it is rejected).
//!
//! Parameters (1.2 defaults): `natping_interval` 0 (s; 0 = no pinging), `ping_nated_only`
//! 0, `received_avp` "", `rtpproxy_sock` `unix:/var/run/rtpproxy.sock` (several:
//! space-separated, `=weight`), `rtpproxy_disable` 0, `rtpproxy_disable_tout` 60 (s,
//! negative = for good), `rtpproxy_tout` 1 (s), `rtpproxy_retr` 5, `force_socket` "",
//! `sipping_bflag` −1, `sipping_from` "", `sipping_method` `OPTIONS`, `nortpproxy_str`
//! `a=nortpproxy:yes\r\n`.
//!
//! NAT pinging ([`ping`]): with `natping_interval` > 0 a process "nathelper pinger"
//! walks usrloc's contacts (those with usrloc's `nat_bflag` if `ping_nated_only`) one
//! hash slot at a time, spreading a round over the interval, and sends each a 4-byte
//! keep-alive, or an OPTIONS request if the contact has `sipping_bflag`; replies to the
//! OPTIONS are absorbed.
//!
//! MI (from Kamailio, 1.2 has none): `nh_enable_ping [0|1]`, `nh_enable_rtpp url 0|1`,
//! `nh_show_rtpp`.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use openser_core::cfg::ast::{Arg, ArgValue};
use openser_core::module::{
    BoolParam, CmdExport, FixedArg, IntParam, MiExport, ModuleExports, Param, ProcExport, StrParam,
};
use openser_core::parser::{HdrType, Proto, SipMsg};
use openser_core::route::{BRANCH_ROUTE, FAILURE_ROUTE, ONREPLY_ROUTE, REQUEST_ROUTE};
use openser_core::script::{AvpId, Ctx, PvValue, fixup::default_fixup};

pub mod mi;
pub mod ping;
pub mod rtpp;
pub mod sdp;

const ALL4: u32 = REQUEST_ROUTE | ONREPLY_ROUTE | FAILURE_ROUTE | BRANCH_ROUTE;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "nathelper",
    // usrloc is needed only for pinging (natping_interval > 0), as in 1.2: mod_init
    // checks that it is loaded then, so a proxy without a registrar can use nathelper.
    binds: &[],
    params: &[
        Param::int_range("natping_interval", &P.natping_interval, 0, u32::MAX as i64),
        Param::bool("ping_nated_only", &P.ping_nated_only),
        Param::str("nortpproxy_str", &P.nortpproxy_str),
        Param::str("rtpproxy_sock", &P.rtpproxy_sock),
        Param::bool("rtpproxy_disable", &P.rtpproxy_disable),
        Param::int("rtpproxy_disable_tout", &P.rtpproxy_disable_tout),
        Param::int_range("rtpproxy_retr", &P.rtpproxy_retr, 1, 100),
        Param::int_range("rtpproxy_tout", &P.rtpproxy_tout, 1, 60),
        Param::str_with("received_avp", &P.received_avp, check_avp),
        Param::str("force_socket", &P.force_socket),
        Param::str("sipping_from", &P.sipping_from),
        Param::str("sipping_method", &P.sipping_method),
        Param::int_range("sipping_bflag", &P.sipping_bflag, -1, 31),
    ],
    cmds: &[
        CmdExport::new(
            "fix_nated_contact",
            0,
            0,
            REQUEST_ROUTE | ONREPLY_ROUTE | BRANCH_ROUTE,
            cmd_fix_nated_contact,
        ),
        CmdExport::new("fix_nated_sdp", 1, 2, ALL4, cmd_fix_nated_sdp).fixup(fixup_flags_int),
        CmdExport::new("unforce_rtp_proxy", 0, 0, ALL4, cmd_unforce_rtp_proxy),
        CmdExport::new("force_rtp_proxy", 0, 2, ALL4, cmd_force_rtp_proxy).fixup(fixup_force),
        CmdExport::new("nat_uac_test", 1, 1, ALL4, cmd_nat_uac_test).fixup(fixup_flags_int),
        CmdExport::new(
            "fix_nated_register",
            0,
            0,
            REQUEST_ROUTE,
            cmd_fix_nated_register,
        )
        .fixup(fixup_fix_nated_register),
        CmdExport::new("add_rcv_param", 0, 1, REQUEST_ROUTE, cmd_add_rcv_param)
            .fixup(fixup_flags_int),
    ],
    mi: &[
        MiExport::new("nh_enable_ping", mi::nh_enable_ping),
        MiExport::new("nh_enable_rtpp", mi::nh_enable_rtpp),
        MiExport::new("nh_show_rtpp", mi::nh_show_rtpp).no_input(),
    ],
    procs: &[
        ProcExport::new("nathelper pinger", ping::PINGER_RANK, ping::pinger_main)
            .when(ping::wanted),
    ],
    reply_hook: Some(ping::absorb_reply),
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

/// The `modparam` cells, with 1.2's defaults.
pub struct Params {
    pub natping_interval: IntParam,
    pub ping_nated_only: BoolParam,
    pub nortpproxy_str: StrParam,
    pub rtpproxy_sock: StrParam,
    pub rtpproxy_disable: BoolParam,
    pub rtpproxy_disable_tout: IntParam,
    pub rtpproxy_retr: IntParam,
    pub rtpproxy_tout: IntParam,
    pub received_avp: StrParam,
    pub force_socket: StrParam,
    pub sipping_from: StrParam,
    pub sipping_method: StrParam,
    pub sipping_bflag: IntParam,
}

pub static P: Params = Params {
    natping_interval: IntParam::new(0),
    ping_nated_only: BoolParam::new(false),
    nortpproxy_str: StrParam::new("a=nortpproxy:yes\r\n"),
    rtpproxy_sock: StrParam::new("unix:/var/run/rtpproxy.sock"),
    rtpproxy_disable: BoolParam::new(false),
    rtpproxy_disable_tout: IntParam::new(60),
    rtpproxy_retr: IntParam::new(5),
    rtpproxy_tout: IntParam::new(1),
    received_avp: StrParam::new(""),
    force_socket: StrParam::new(""),
    sipping_from: StrParam::new(""),
    sipping_method: StrParam::new("OPTIONS"),
    sipping_bflag: IntParam::new(-1),
};

/// What `mod_init` derives from the parameters.
struct Derived {
    rtpp: rtpp::Set,
    received_avp: Option<AvpId>,
}

static DERIVED: OnceLock<Derived> = OnceLock::new();

fn timing() -> rtpp::Timing {
    rtpp::Timing {
        tout: Duration::from_secs(P.rtpproxy_tout.get().max(1) as u64),
        retr: P.rtpproxy_retr.get().max(1) as u32,
        disable_tout: if P.rtpproxy_disable.get() {
            -1
        } else {
            P.rtpproxy_disable_tout.get()
        },
    }
}

fn derived() -> &'static Derived {
    DERIVED.get_or_init(|| {
        derive().unwrap_or_else(|_| Derived {
            rtpp: rtpp::Set::new(Vec::new()),
            received_avp: None,
        })
    })
}

fn derive() -> Result<Derived, String> {
    let nodes = if P.rtpproxy_disable.get() {
        Vec::new()
    } else {
        rtpp::parse_nodes(P.rtpproxy_sock.get()).map_err(|e| format!("nathelper: {e}"))?
    };
    let received_avp = match P.received_avp.get() {
        "" => None,
        s => Some(parse_avp(s)?),
    };
    Ok(Derived {
        rtpp: rtpp::Set::new(nodes),
        received_avp,
    })
}

fn mod_init() -> Result<(), String> {
    let d = derive()?;
    let _ = DERIVED.set(d);
    ping::init()?;
    Ok(())
}

/// The proxies (for MI).
pub fn rtpp_set() -> &'static rtpp::Set {
    &derived().rtpp
}

/// An AVP parameter → AVP id (`AvpId::parse_param`), the error naming nathelper.
pub fn parse_avp(s: &str) -> Result<AvpId, String> {
    AvpId::parse_param(s).map_err(|e| format!("nathelper: {e}"))
}

fn check_avp(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    parse_avp(s).map(|_| ())
}

// ---------------------------------------------------------------- fixups

fn int_of(a: &Arg) -> Result<i64, String> {
    match &a.value {
        ArgValue::Int(n) => Ok(*n),
        ArgValue::Str(s) | ArgValue::Ident(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("bad number <{s}>")),
        _ => Err("bad number".into()),
    }
}

/// First argument a number (flags), the rest as the default fixup makes them.
fn fixup_flags_int(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let mut out = Vec::with_capacity(args.len());
    if let Some(a) = args.first() {
        let n = int_of(a)?;
        if n < 0 {
            return Err(format!("bad number <{n}>"));
        }
        out.push(FixedArg::Int(n));
    }
    if args.len() > 1 {
        out.extend(default_fixup(&args[1..])?);
    }
    Ok(out)
}

/// `force_rtp_proxy` flags are letters; unknown ones are a config error.
fn fixup_force(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    let mut out = default_fixup(args)?;
    if let Some(a) = args.first() {
        let s = match &a.value {
            ArgValue::Str(s) | ArgValue::Ident(s) => s.clone(),
            ArgValue::Int(n) => n.to_string(),
            _ => return Err("flags must be a string".into()),
        };
        parse_force_flags(&s)?;
        out[0] = FixedArg::Str(s);
    }
    Ok(out)
}

fn fixup_fix_nated_register(args: &[Arg]) -> Result<Vec<FixedArg>, String> {
    if !P.received_avp.is_set() || P.received_avp.get().is_empty() {
        return Err(
            "you must set 'received_avp' parameter. Must be same value as \
                    parameter 'received_avp' of registrar module"
                .into(),
        );
    }
    default_fixup(args)
}

// ---------------------------------------------------------------- nat_uac_test

pub const NAT_UAC_TEST_C_1918: i64 = 0x01;
pub const NAT_UAC_TEST_RCVD: i64 = 0x02;
pub const NAT_UAC_TEST_V_1918: i64 = 0x04;
pub const NAT_UAC_TEST_S_1918: i64 = 0x08;
pub const NAT_UAC_TEST_RPORT: i64 = 0x10;

/// The first Contact URI of the message, if any.
fn first_contact_uri(msg: &SipMsg) -> Option<(openser_core::parser::Span, String)> {
    let cl = msg.contacts().ok()?;
    let c = cl.contacts.first()?;
    Some((c.uri, msg.s(c.uri).to_string()))
}

/// The host of a SIP URI text.
fn uri_host(uri: &str) -> Option<String> {
    openser_core::parser::uri::Uri::parse(uri)
        .ok()
        .map(|u| u.host_unbracketed().to_string())
}

/// Where the message's SDP is: absolute offsets in the message buffer.
pub fn sdp_of(msg: &SipMsg) -> Option<(usize, usize)> {
    let body = msg.body();
    if body.is_empty() {
        return None;
    }
    let ct = msg
        .first_of(HdrType::ContentType)
        .map(|i| msg.s(msg.hdrs()[i].body).to_string())
        .unwrap_or_default();
    let (s, e) = sdp::sdp_range(&ct, body)?;
    let base = msg.body_span().start as usize;
    Some((base + s, base + e))
}

/// `nat_uac_test(flags)` on a message: 1 if any selected test holds, else −1.
pub fn nat_uac_test(msg: &SipMsg, tests: i64) -> i32 {
    let Ok(v) = msg.via1() else {
        return -1;
    };
    let src = msg.rcv.src;
    if tests & NAT_UAC_TEST_RPORT != 0 && src.port() != v.port.unwrap_or(5060) {
        return 1;
    }
    let via_host = msg.s(v.host).trim_start_matches('[').trim_end_matches(']');
    if tests & NAT_UAC_TEST_RCVD != 0 && via_host.parse::<IpAddr>().ok() != Some(src.ip()) {
        return 1;
    }
    if tests & NAT_UAC_TEST_C_1918 != 0
        && first_contact_uri(msg)
            .and_then(|(_, u)| uri_host(&u))
            .is_some_and(|h| sdp::is_1918(&h))
    {
        return 1;
    }
    if tests & NAT_UAC_TEST_S_1918 != 0
        && let Some((s, e)) = sdp_of(msg)
        && sdp::has_private_media(&msg.buf()[s..e])
    {
        return 1;
    }
    if tests & NAT_UAC_TEST_V_1918 != 0 && sdp::is_1918(via_host) {
        return 1;
    }
    -1
}

fn cmd_nat_uac_test(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let t = args.first().and_then(|a| ctx.arg_int(a)).unwrap_or(0);
    nat_uac_test(ctx.msg, t)
}

// ---------------------------------------------------------------- Contact / received

/// `ip:port` of the source, IPv6 bracketed.
fn src_hostport(msg: &SipMsg) -> String {
    match msg.rcv.src.ip() {
        IpAddr::V4(a) => format!("{a}:{}", msg.rcv.src.port()),
        IpAddr::V6(a) => format!("[{a}]:{}", msg.rcv.src.port()),
    }
}

/// The span of `host[:port]` inside a SIP URI text.
pub fn hostport_range(uri: &str) -> Option<(usize, usize)> {
    let u = openser_core::parser::uri::Uri::parse(uri).ok()?;
    let colon = uri.find(':')?;
    let rest = &uri[colon + 1..];
    // The user part ends at the last '@' before any parameter or header.
    let end_userinfo = rest.find([';', '?']).unwrap_or(rest.len());
    let host_start = colon + 1 + rest[..end_userinfo].rfind('@').map(|p| p + 1).unwrap_or(0);
    if !uri[host_start..].starts_with(&u.host) {
        return None;
    }
    let mut end = host_start + u.host.len();
    if let Some(p) = u.port {
        let ps = format!(":{p}");
        if uri[end..].starts_with(&ps) {
            end += ps.len();
        } else {
            // a port written with leading zeros
            let digits = uri[end + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            end += 1 + digits;
        }
    }
    Some((host_start, end))
}

thread_local! {
    /// The message whose Contact was fixed last (1.2 refuses a second call).
    static CONTACT_FIXED: std::cell::Cell<(u32, usize)> = const { std::cell::Cell::new((0, 0)) };
}

fn cmd_fix_nated_contact(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    let msg = &mut *ctx.msg;
    let Some((span, uri)) = first_contact_uri(msg) else {
        return -1;
    };
    let mark = (msg.id, msg.buf().as_ptr() as usize);
    if CONTACT_FIXED.with(|c| c.get()) == mark {
        openser_core::log_err!("you can't call fix_nated_contact twice, check your config!");
        return -1;
    }
    let Some((hs, he)) = hostport_range(&uri) else {
        openser_core::log_err!("can't parse Contact URI <{uri}>");
        return -1;
    };
    let start = span.start as usize;
    msg.lumps.replace(start + hs, he - hs, src_hostport(msg));
    CONTACT_FIXED.with(|c| c.set(mark));
    1
}

/// 1.2's `create_rcv_uri`: `sip:ip:port` of the source, `;transport=` for TCP/TLS.
pub fn rcv_uri(msg: &SipMsg) -> String {
    let t = match msg.rcv.proto {
        Proto::Tcp => ";transport=TCP",
        Proto::Tls => ";transport=TLS",
        _ => "",
    };
    format!("sip:{}{t}", src_hostport(msg))
}

fn cmd_add_rcv_param(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let as_uri_param = args.first().and_then(|a| ctx.arg_int(a)).unwrap_or(0) != 0;
    let uri = rcv_uri(ctx.msg);
    let Ok(cl) = ctx.msg.contacts() else {
        return -1;
    };
    let mut at = Vec::new();
    for c in &cl.contacts {
        let pos = if as_uri_param {
            c.uri.end()
        } else {
            c.full.end()
        };
        at.push(pos);
    }
    if at.is_empty() {
        return -1;
    }
    for pos in at {
        ctx.msg.lumps.insert(pos, format!(";received=\"{uri}\""));
    }
    1
}

fn cmd_fix_nated_register(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    let Some(id) = derived().received_avp.clone() else {
        return 1;
    };
    let uri = rcv_uri(ctx.msg);
    ctx.avps.add(id, PvValue::Str(uri));
    1
}

// ---------------------------------------------------------------- SDP

fn apply_edits(msg: &mut SipMsg, base: usize, edits: Vec<sdp::Edit>) {
    for e in edits {
        msg.lumps.replace(base + e.pos, e.del, e.text);
    }
}

fn cmd_fix_nated_sdp(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let flags = args.first().and_then(|a| ctx.arg_int(a)).unwrap_or(0) as u32;
    let ip = match args.get(1) {
        Some(a) => ctx.arg_str(a),
        None => ctx.msg.rcv.src.ip().to_string(),
    };
    let Some((s, e)) = sdp_of(ctx.msg) else {
        openser_core::log_err!("cannot extract body from msg!");
        return -1;
    };
    let body = &ctx.msg.buf()[s..e];
    match sdp::fix_nated_sdp(body, flags, &ip, P.nortpproxy_str.get()) {
        Ok(edits) => {
            apply_edits(ctx.msg, s, edits);
            1
        }
        Err(err) => {
            openser_core::log_err!("{err}");
            -1
        }
    }
}

/// Parsed `force_rtp_proxy` flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForceFlags {
    /// letters passed to the proxy (`A`, `I`, `E`)
    pub opts: String,
    pub asymmetric: bool,
    pub lookup: bool,
    pub force: bool,
    pub real: bool,
    pub common_ip: bool,
    pub origin: bool,
    pub swap: bool,
}

pub fn parse_force_flags(s: &str) -> Result<ForceFlags, String> {
    let mut f = ForceFlags::default();
    for c in s.chars() {
        match c.to_ascii_lowercase() {
            'a' => {
                f.opts.push('A');
                f.asymmetric = true;
                f.real = true;
            }
            'i' => f.opts.push('I'),
            'e' => f.opts.push('E'),
            'l' => f.lookup = true,
            'f' => f.force = true,
            'r' => f.real = true,
            'c' => f.common_ip = true,
            'o' => f.origin = true,
            's' => f.swap = true,
            other => return Err(format!("unknown option `{other}'")),
        }
    }
    Ok(f)
}

/// Call-ID, From tag and To tag ("" if none) of a message.
pub fn dialog_ids(msg: &SipMsg) -> Result<(String, String, String), &'static str> {
    let callid = msg.callid().map(str::trim).unwrap_or("");
    if callid.is_empty() {
        return Err("can't get Call-Id field");
    }
    let to_tag = match msg.to() {
        Ok(t) => t.tag.map(|s| msg.s(s).to_string()).unwrap_or_default(),
        Err(_) => return Err("can't get To tag"),
    };
    let from_tag = match msg.from() {
        Ok(f) => f.tag.map(|s| msg.s(s).to_string()).unwrap_or_default(),
        Err(_) => return Err("can't get From tag"),
    };
    if from_tag.is_empty() {
        return Err("can't get From tag");
    }
    Ok((callid.to_string(), from_tag, to_tag))
}

/// The `U`/`L` command for one stream.
#[allow(clippy::too_many_arguments)]
pub fn offer_command(
    create: bool,
    opts: &str,
    v6: bool,
    callid: &str,
    ip: &str,
    port: u16,
    from_tag: &str,
    to_tag: &str,
    medianum: u32,
) -> String {
    let mut c = String::with_capacity(128);
    c.push(if create { 'U' } else { 'L' });
    c.push_str(opts);
    if v6 {
        c.push('6');
    }
    c.push_str(&format!(" {callid} {ip} {port} {from_tag};{medianum}"));
    if !to_tag.is_empty() {
        c.push_str(&format!(" {to_tag};{medianum}"));
    }
    c
}

fn cmd_force_rtp_proxy(ctx: &mut Ctx, args: &[FixedArg]) -> i32 {
    let flags_s = match args.first() {
        Some(a) => ctx.arg_str(a),
        None => String::new(),
    };
    let f = match parse_force_flags(&flags_s) {
        Ok(f) => f,
        Err(e) => {
            openser_core::log_err!("{e}");
            return -1;
        }
    };
    let fallback_ip = match args.get(1) {
        Some(a) => ctx.arg_str(a),
        None => ctx.msg.rcv.dst.ip().to_string(),
    };
    force_rtp_proxy(ctx.msg, &f, &fallback_ip)
}

/// `force_rtp_proxy` on a message with parsed flags; 1 or −1.
pub fn force_rtp_proxy(msg: &mut SipMsg, f: &ForceFlags, fallback_ip: &str) -> i32 {
    let mut create = if msg.is_request() { !f.swap } else { f.swap };
    let Some((s, e)) = sdp_of(msg) else {
        openser_core::log_err!("can't extract body from the message");
        return -1;
    };
    let (callid, mut from_tag, mut to_tag) = match dialog_ids(msg) {
        Ok(x) => x,
        Err(why) => {
            openser_core::log_err!("{why}");
            return -1;
        }
    };
    if f.lookup {
        if !create || to_tag.is_empty() {
            return -1;
        }
        create = false;
        std::mem::swap(&mut from_tag, &mut to_tag);
    }
    let marker = P.nortpproxy_str.get();
    let body = msg.buf()[s..e].to_vec();
    if sdp::has_marker(&body, marker) && !f.force {
        return -1;
    }
    let src_ip = msg.rcv.src.ip().to_string();
    let set = &derived().rtpp;
    let t = timing();
    let mut relay = |st: &sdp::Stream| -> Result<sdp::Relayed, sdp::SdpError> {
        let ip = if f.asymmetric || f.real {
            st.ip.clone()
        } else {
            src_ip.clone()
        };
        let cmd = offer_command(
            create,
            &f.opts,
            st.af == sdp::Af::V6,
            &callid,
            &ip,
            st.port,
            &from_tag,
            &to_tag,
            st.medianum,
        );
        let reply = rtpp::command(set, &callid, &cmd, &t).map_err(sdp::SdpError::Proxy)?;
        openser_core::log_dbg!("proxy reply: {reply}");
        let (port, addr, v6) = rtpp::parse_reply(&reply).map_err(sdp::SdpError::Proxy)?;
        Ok(sdp::Relayed {
            ip: addr.unwrap_or_else(|| fallback_ip.to_string()),
            af: if v6 { sdp::Af::V6 } else { sdp::Af::V4 },
            port,
        })
    };
    let opts = sdp::RewriteOpts {
        common_ip: f.common_ip,
        origin: f.origin,
    };
    match sdp::force_rtp_proxy(&body, opts, marker, &mut relay) {
        Ok((edits, _)) => {
            apply_edits(msg, s, edits);
            1
        }
        Err(err) => {
            openser_core::log_err!("{err}");
            -1
        }
    }
}

fn cmd_unforce_rtp_proxy(ctx: &mut Ctx, _args: &[FixedArg]) -> i32 {
    unforce_rtp_proxy(ctx.msg)
}

/// `unforce_rtp_proxy`: `D callid from_tag [to_tag]`.
pub fn unforce_rtp_proxy(msg: &SipMsg) -> i32 {
    let (callid, from_tag, to_tag) = match dialog_ids(msg) {
        Ok(x) => x,
        Err(why) => {
            openser_core::log_err!("{why}");
            return -1;
        }
    };
    let mut cmd = format!("D {callid} {from_tag}");
    if !to_tag.is_empty() {
        cmd.push(' ');
        cmd.push_str(&to_tag);
    }
    match rtpp::command(&derived().rtpp, &callid, &cmd, &timing()) {
        Ok(_) => 1,
        Err(e) => {
            openser_core::log_err!("{e}");
            -1
        }
    }
}

#[cfg(test)]
mod tests;
