//! Remote-Party-ID from the AVP named by `rpid_avp` (filled by auth_db's
//! `load_credentials`, default column `rpid`): `append_rpid_hf()`,
//! `append_rpid_hf(prefix, suffix)` and `is_rpid_user_e164()` (reference §8.9).

use openser_core::cfg::pv::{AvpName, PvParam, parse_pv};
use openser_core::parser::Uri;
use openser_core::script::{AvpId, Ctx, PvValue};

/// The AVP of an `$avp(s:name)` / `$avp(i:n)` spec.
pub fn avp_of_spec(spec: &str) -> Result<AvpId, String> {
    let bad = || format!("auth: bad rpid_avp '{spec}'");
    let (pv, used) = parse_pv(spec.trim()).map_err(|e| format!("{}: {e}", bad()))?;
    if used != spec.trim().len() || pv.name != "avp" {
        return Err(bad());
    }
    match &pv.param {
        Some(PvParam::Avp(AvpName::Int(i))) => Ok(AvpId::Int(*i)),
        Some(PvParam::Avp(AvpName::Str(n) | AvpName::Alias(n))) => Ok(AvpId::Str(n.clone())),
        _ => Err(bad()),
    }
}

/// The RPID value of this message's AVPs, if set and not empty.
fn rpid(ctx: &Ctx, id: &AvpId) -> Option<String> {
    match ctx.avps.get(id)? {
        PvValue::Str(s) if !s.is_empty() => Some(s.clone()),
        PvValue::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Append `Remote-Party-ID: <prefix><rpid><suffix>` to the request; −1 without an RPID.
pub fn append_rpid_hf(ctx: &mut Ctx, id: &AvpId, prefix: &str, suffix: &str) -> i32 {
    let Some(v) = rpid(ctx, id) else {
        openser_core::log_dbg!("No rpid AVP");
        return -1;
    };
    ctx.msg
        .add_header_after_last(&format!("Remote-Party-ID: {prefix}{v}{suffix}\r\n"));
    1
}

pub use openser_core::parser::is_e164;

/// The user part of an RPID value (a name-addr or a bare URI) is E.164.
pub fn rpid_user_is_e164(v: &str) -> bool {
    let uri = match (v.find('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.split(';').next().unwrap_or(v).trim(),
    };
    Uri::parse(uri).is_ok_and(|u| is_e164(&u.user))
}

/// `is_rpid_user_e164()`: 1 when the RPID AVP's URI user is E.164, −1 otherwise.
pub fn is_rpid_user_e164(ctx: &Ctx, id: &AvpId) -> i32 {
    match rpid(ctx, id) {
        Some(v) if rpid_user_is_e164(&v) => 1,
        _ => -1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_rule() {
        for ok in ["+1", "+4930123456", "+123456789012345"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in ["", "+", "4930", "+49-30", "+1234567890123456", "+12a"] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn rpid_forms() {
        assert!(rpid_user_is_e164(
            "<sip:+4930123@example.com>;party=calling"
        ));
        assert!(rpid_user_is_e164("\"Alice\" <sip:+4930123@example.com>"));
        assert!(rpid_user_is_e164("sip:+4930123@example.com;user=phone"));
        assert!(!rpid_user_is_e164("<sip:alice@example.com>"));
        assert!(!rpid_user_is_e164("not a uri"));
    }

    #[test]
    fn avp_specs() {
        assert_eq!(
            avp_of_spec("$avp(s:rpid)").unwrap(),
            AvpId::Str("rpid".into())
        );
        assert_eq!(avp_of_spec("$avp(i:7)").unwrap(), AvpId::Int(7));
        assert!(avp_of_spec("$ru").is_err());
        assert!(avp_of_spec("rpid").is_err());
    }
}
