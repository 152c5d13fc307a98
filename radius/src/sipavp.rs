//! `SIP-AVP` reply attributes (1.2's auth_radius and avp_radius): a value
//! `name:string`, `name#number`, `#id:string` or `#id#number` becomes an AVP — a string
//! name or (after `#`) a numeric id, a string value (after `:`) or an integer (after
//! `#`). uri_radius reads the simpler `name:value` form (everything a string).

use openser_core::script::{AvpId, AvpList, PvValue};

use crate::dict::AttrDef;
use crate::packet::Reply;

/// Parse one `SIP-AVP` value (1.2's `extract_avp`); `None` for an empty name or value,
/// a value without separator, or an id or number that is not an unsigned integer.
pub fn parse_sip_avp(v: &[u8]) -> Option<(AvpId, PvValue)> {
    let s = String::from_utf8_lossy(v);
    let (str_name, rest) = match s.strip_prefix('#') {
        Some(r) => (false, r),
        None => (true, &s[..]),
    };
    let sep = rest.find([':', '#'])?;
    let name = &rest[..sep];
    let value = &rest[sep + 1..];
    if name.is_empty() || value.is_empty() {
        return None;
    }
    let id = if str_name {
        AvpId::Str(name.to_string())
    } else {
        AvpId::Int(i64::from(name.parse::<u32>().ok()?))
    };
    let val = if rest.as_bytes()[sep] == b':' {
        PvValue::Str(value.to_string())
    } else {
        // 1.2 reads an unsigned number and stores it as a C int.
        PvValue::Int(i64::from(value.parse::<u32>().ok()? as i32))
    };
    Some((id, val))
}

/// uri_radius's form: `name:value`, both strings; `None` without `:` or with an empty
/// name.
pub fn parse_name_value(v: &[u8]) -> Option<(AvpId, PvValue)> {
    let s = String::from_utf8_lossy(v);
    let (n, val) = s.split_once(':')?;
    if n.is_empty() {
        return None;
    }
    Some((AvpId::Str(n.to_string()), PvValue::Str(val.to_string())))
}

/// Add every `attr` value of `reply` parsed by `parse` to `avps`, string names
/// prefixed with `prefix`; how many were added (bad values are logged and skipped).
pub fn load_avps(
    reply: &Reply,
    attr: &AttrDef,
    avps: &mut AvpList,
    prefix: &str,
    parse: fn(&[u8]) -> Option<(AvpId, PvValue)>,
) -> usize {
    let mut n = 0;
    for a in &reply.attrs {
        let Some(v) = attr.value_of(a) else { continue };
        match parse(v) {
            Some((id, val)) => {
                let id = match id {
                    AvpId::Str(s) if !prefix.is_empty() => AvpId::Str(format!("{prefix}{s}")),
                    other => other,
                };
                avps.add(id, val);
                n += 1;
            }
            None => {
                openser_core::log_err!("bad {} value '{}'", attr.name, String::from_utf8_lossy(v))
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_forms() {
        assert_eq!(
            parse_sip_avp(b"email:joe@yahoo.com"),
            Some((
                AvpId::Str("email".into()),
                PvValue::Str("joe@yahoo.com".into())
            ))
        );
        assert_eq!(
            parse_sip_avp(b"#14:joe@yahoo.com"),
            Some((AvpId::Int(14), PvValue::Str("joe@yahoo.com".into())))
        );
        assert_eq!(
            parse_sip_avp(b"age#28"),
            Some((AvpId::Str("age".into()), PvValue::Int(28)))
        );
        assert_eq!(
            parse_sip_avp(b"#14#28"),
            Some((AvpId::Int(14), PvValue::Int(28)))
        );
        // A value may contain the separators.
        assert_eq!(
            parse_sip_avp(b"uri:sip:a@b"),
            Some((AvpId::Str("uri".into()), PvValue::Str("sip:a@b".into())))
        );
        for bad in [
            &b""[..],
            b"noseparator",
            b":v",
            b"#:v",
            b"n:",
            b"#x:v",
            b"n#12a",
            b"#",
        ] {
            assert_eq!(
                parse_sip_avp(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse_name_value(b"a:b:c"),
            Some((AvpId::Str("a".into()), PvValue::Str("b:c".into())))
        );
        assert_eq!(parse_name_value(b"abc"), None);
    }
}
