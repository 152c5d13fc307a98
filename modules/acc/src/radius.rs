//! RADIUS accounting (1.2's `acc_rad_request`, built with `RAD_ACC`): a record is an
//! Accounting-Request to the `acctserver`s of `radius_config`, in parallel with the log
//! and SQL records of the same transaction.
//!
//! Attributes, in 1.2's order: `Acct-Status-Type` (`Start` for a 2xx to an INVITE or
//! its ACK, `Stop` for BYE and CANCEL, `Failed` otherwise or without a code),
//! `Service-Type` (acc's `service_type`, default the dictionary's `Sip-Session`),
//! `Sip-Response-Code`, `Sip-Method` (1.2's method bit: INVITE 1, CANCEL 2, ACK 4,
//! BYE 8, …), `Event-Timestamp`, `Sip-From-Tag`, `Sip-To-Tag`, `Acct-Session-Id` (the
//! Call-ID), then the `radius_extra` attributes (each name an attribute of the
//! dictionary; a PV without value is left out) and the `multi_leg_info` legs (their
//! names attributes too). A server that does not answer within the RADIUS timeout is
//! logged; the record is lost, as in 1.2.

use std::sync::OnceLock;

use openser_radius::{Attr, AttrDef, ClientConf, Service};

use super::{Config, Record};
use openser_core::script::PvValue;

/// What mod_init prepared.
pub struct RadState {
    pub conf: ClientConf,
    status: AttrDef,
    service_type: AttrDef,
    response_code: AttrDef,
    method: AttrDef,
    timestamp: AttrDef,
    from_tag: AttrDef,
    to_tag: AttrDef,
    session_id: AttrDef,
    extras: Vec<AttrDef>,
    legs: Vec<AttrDef>,
    start: u32,
    stop: u32,
    failed: u32,
    service: u32,
}

static RAD: OnceLock<RadState> = OnceLock::new();

/// Read radiusclient.conf and find every attribute (a start-up error names what is
/// missing).
pub fn prepare(c: &Config) -> Result<RadState, String> {
    let path = if c.p.radius_config.is_empty() {
        openser_radius::DEFAULT_CONFIG
    } else {
        &c.p.radius_config
    };
    let conf = openser_radius::load_config("acc", path)?;
    let e = |e: String| format!("acc: {e}");
    let d = &conf.dict;
    let st = RadState {
        status: d.need_attr("Acct-Status-Type").map_err(e)?,
        service_type: d.need_attr("Service-Type").map_err(e)?,
        response_code: d.need_attr("Sip-Response-Code").map_err(e)?,
        method: d.need_attr("Sip-Method").map_err(e)?,
        timestamp: d.need_attr("Event-Timestamp").map_err(e)?,
        from_tag: d.need_attr("Sip-From-Tag").map_err(e)?,
        to_tag: d.need_attr("Sip-To-Tag").map_err(e)?,
        session_id: d.need_attr("Acct-Session-Id").map_err(e)?,
        extras: c
            .rad_extra
            .iter()
            .map(|x| d.need_attr(&x.name).map_err(e))
            .collect::<Result<_, _>>()?,
        legs: c
            .legs
            .iter()
            .map(|x| d.need_attr(&x.name).map_err(e))
            .collect::<Result<_, _>>()?,
        start: d.need_value("Acct-Status-Type", "Start").map_err(e)?,
        stop: d.need_value("Acct-Status-Type", "Stop").map_err(e)?,
        failed: d.need_value("Acct-Status-Type", "Failed").map_err(e)?,
        service: match c.p.service_type {
            -1 => d.need_value("Service-Type", "Sip-Session").map_err(e)?,
            v => v as u32,
        },
        conf,
    };
    if st.conf.acct.is_empty() {
        return Err(format!("acc: no acctserver in {path}"));
    }
    Ok(st)
}

/// mod_init: prepare and keep the state for every process.
pub fn init(c: &Config) -> Result<(), String> {
    let st = prepare(c)?;
    let _ = RAD.set(st);
    Ok(())
}

/// Whether RADIUS accounting is set up.
pub fn on() -> bool {
    RAD.get().is_some()
}

/// 1.2's method numbers (`METHOD_*` bits) for `Sip-Method`.
pub fn method_bits(m: &str) -> u32 {
    match m {
        "INVITE" => 1,
        "CANCEL" => 2,
        "ACK" => 4,
        "BYE" => 8,
        "INFO" => 16,
        "OPTIONS" => 32,
        "UPDATE" => 64,
        "REGISTER" => 128,
        "MESSAGE" => 256,
        "SUBSCRIBE" => 512,
        "NOTIFY" => 1024,
        "PRACK" => 2048,
        "REFER" => 4096,
        _ => 8192,
    }
}

impl RadState {
    /// 1.2's `rad_status`.
    pub fn status_of(&self, method: &str, code: u32) -> u32 {
        if code == 0 {
            return self.failed;
        }
        if matches!(method, "INVITE" | "ACK") && (200..300).contains(&code) {
            return self.start;
        }
        if matches!(method, "BYE" | "CANCEL") {
            return self.stop;
        }
        self.failed
    }

    /// The Accounting-Request attributes of `r` at time `ts`.
    pub fn attrs_of(&self, r: &Record, ts: i64) -> Result<Vec<Attr>, String> {
        let code: u32 = r.code.trim().parse().unwrap_or(0);
        let d = &self.conf.dict;
        let mut out = vec![
            self.status.encode_int(self.status_of(&r.method, code))?,
            self.service_type.encode_int(self.service)?,
            self.response_code.encode_int(code)?,
            self.method.encode_int(method_bits(&r.method))?,
            self.timestamp.encode_int(u32::try_from(ts).unwrap_or(0))?,
            self.from_tag.encode_raw(r.from_tag.as_bytes())?,
            self.to_tag.encode_raw(r.to_tag.as_bytes())?,
            self.session_id.encode_raw(r.callid.as_bytes())?,
        ];
        let mut add = |def: &AttrDef, v: &PvValue| -> Result<(), String> {
            match v {
                PvValue::Null => Ok(()),
                v => {
                    out.push(def.encode_text(d, &v.to_text())?);
                    Ok(())
                }
            }
        };
        for (def, (_, v)) in self.extras.iter().zip(&r.extra) {
            add(def, v)?;
        }
        for leg in &r.legs {
            for (def, (_, v)) in self.legs.iter().zip(leg) {
                add(def, v)?;
            }
        }
        Ok(out)
    }
}

/// Send record `r`; false (logged) when it could not be built or no server answered.
pub fn emit(r: &Record) -> bool {
    let Some(st) = RAD.get() else {
        openser_core::log_err!("RADIUS accounting is not configured (radius_config)");
        return false;
    };
    let attrs = match st.attrs_of(r, openser_core::clock::now()) {
        Ok(a) => a,
        Err(e) => {
            openser_core::log_err!("cannot build the accounting request: {e}");
            return false;
        }
    };
    match openser_radius::send(&st.conf, Service::Acct, &attrs) {
        Ok(_) => true,
        Err(e) => {
            openser_core::log_err!("RADIUS accounting of call {} failed: {e}", r.callid);
            false
        }
    }
}
