//! The environment 1.2 gives a command about the request (`exec_hf.c`):
//! `SIP_HF_<NAME>` for every header (repeated headers joined with `,`; the name in
//! capitals, other characters as `_`; headers with a compact form under 1.2's
//! canonical names `VIA`, `FROM`, `TO`, `CALLID`, `CONTACT`, `CONTENT_TYPE`,
//! `CONTENT_LENGTH`, `SUPPORTED`, `EVENT`), `SIP_SRCIP`, `SIP_RURI`, `SIP_USER`,
//! `SIP_ORURI` (1.2 misspelt it `SIP_ORUI`: both are set), `SIP_OUSER`, `SIP_TID` (an
//! MD5 of the fields that identify the transaction, the same for retransmissions)
//! and `SIP_DID` (the To tag, empty at first).

use md5::{Digest, Md5};
use openser_core::parser::{HdrType, SipMsg, Uri};

/// 1.2's variable name part for a header.
pub fn var_name(htype: HdrType, name: &str) -> String {
    let canonical = match htype {
        HdrType::Via => Some("VIA"),
        HdrType::From => Some("FROM"),
        HdrType::To => Some("TO"),
        HdrType::CallId => Some("CALLID"),
        HdrType::Contact => Some("CONTACT"),
        HdrType::ContentType => Some("CONTENT_TYPE"),
        HdrType::ContentLength => Some("CONTENT_LENGTH"),
        HdrType::Supported => Some("SUPPORTED"),
        HdrType::Event => Some("EVENT"),
        _ => None,
    };
    if let Some(c) = canonical {
        return c.to_string();
    }
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn clean(s: &str) -> String {
    s.replace('\0', "")
}

/// The transaction identifier: MD5 (hex) over From, To, Call-ID, the original
/// Request-URI, the CSeq number and the top Via's host, port and branch (1.2's
/// `char_msg_val`).
pub fn tid(msg: &SipMsg) -> String {
    let mut h = Md5::new();
    for n in ["From", "To", "Call-ID"] {
        h.update(msg.header(n).unwrap_or("").as_bytes());
    }
    h.update(msg.orig_ruri().as_bytes());
    if let Ok(c) = msg.cseq() {
        h.update(msg.s(c.num_text).as_bytes());
    }
    if let Ok(v) = msg.via1() {
        h.update(msg.s(v.host).as_bytes());
        h.update(msg.s(v.port_text).as_bytes());
        if let Some(b) = v.branch {
            h.update(msg.s(b).as_bytes());
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Every variable for `msg` whose current Request-URI is `ruri`.
pub fn vars(msg: &SipMsg, ruri: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for h in msg.hdrs() {
        let name = format!("SIP_HF_{}", var_name(h.htype, msg.s(h.name)));
        let body = clean(msg.s(h.body));
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push(',');
                v.push_str(&body);
            }
            None => out.push((name, body)),
        }
    }
    let user = |u: &str| Uri::parse(u).map(|u| u.user).unwrap_or_default();
    let oruri = msg.orig_ruri();
    let did = msg
        .to()
        .ok()
        .and_then(|t| t.tag)
        .map(|t| msg.s(t).to_string())
        .unwrap_or_default();
    out.extend([
        ("SIP_SRCIP".to_string(), msg.rcv.src.ip().to_string()),
        ("SIP_RURI".to_string(), clean(ruri)),
        ("SIP_USER".to_string(), clean(&user(ruri))),
        ("SIP_ORURI".to_string(), clean(oruri)),
        ("SIP_ORUI".to_string(), clean(oruri)),
        ("SIP_OUSER".to_string(), clean(&user(oruri))),
        ("SIP_TID".to_string(), tid(msg)),
        ("SIP_DID".to_string(), clean(&did)),
    ]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
        v: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKx1\r\n\
        Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKx0\r\n\
        f: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n\
        Call-ID: c1\r\nCSeq: 7 INVITE\r\nX-Custom.Hdr: yes\r\n\r\n";

    #[test]
    fn variables_as_1_2_names_them() {
        let m = SipMsg::parse(REQ.as_bytes()).unwrap();
        let v = vars(&m, "sip:carol@example.net");
        let get = |n: &str| v.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(
            get("SIP_HF_VIA"),
            Some(
                "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKx1,SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKx0"
            )
        );
        assert_eq!(get("SIP_HF_FROM"), Some("<sip:alice@example.com>;tag=a1"));
        assert_eq!(get("SIP_HF_CALLID"), Some("c1"));
        assert_eq!(get("SIP_HF_X_CUSTOM_HDR"), Some("yes"));
        assert_eq!(get("SIP_RURI"), Some("sip:carol@example.net"));
        assert_eq!(get("SIP_USER"), Some("carol"));
        assert_eq!(get("SIP_ORURI"), Some("sip:bob@example.com"));
        assert_eq!(get("SIP_OUSER"), Some("bob"));
        assert_eq!(get("SIP_DID"), Some(""));
        assert_eq!(get("SIP_TID").map(str::len), Some(32));
    }

    #[test]
    fn tid_is_stable_across_retransmissions() {
        let a = SipMsg::parse(REQ.as_bytes()).unwrap();
        let b = SipMsg::parse(REQ.replace("X-Custom.Hdr: yes\r\n", "").as_bytes()).unwrap();
        assert_eq!(tid(&a), tid(&b));
        let c = SipMsg::parse(REQ.replace("z9hG4bKx1", "z9hG4bKx2").as_bytes()).unwrap();
        assert_ne!(tid(&a), tid(&c));
    }
}
