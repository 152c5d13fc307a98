//! presence_mwi (Kamailio's `presence_mwi`, not in OpenSER 1.2): the `message-summary`
//! event package (RFC 3842, message waiting indication) for the presence module. A
//! voicemail system PUBLISHes an `application/simple-message-summary` body for a
//! mailbox (its first line `Messages-Waiting: yes` or `no`, else 400); the mailbox's
//! subscribers get the latest document in their NOTIFYs (several publishers: the most
//! recent one). With nothing published the NOTIFY has no body. Every subscriber is
//! accepted (active), as in Kamailio.
//!
//! No parameters, no functions.

use openser_core::module::ModuleExports;
use presence::EventPackage;

pub static EXPORTS: ModuleExports = ModuleExports {
    name: "presence_mwi",
    binds: &["presence"],
    mod_init: Some(mod_init),
    ..ModuleExports::EMPTY
};

fn mod_init() -> Result<(), String> {
    presence::register_event(EventPackage {
        name: "message-summary",
        content_type: "application/simple-message-summary",
        winfo_of: None,
        check_body: Some(check_summary),
        compose: Some(latest),
        offline_body: None,
        neutral_body: None,
        authorize: None,
        watcher_info: None,
    })
}

/// A message summary starts with `Messages-Waiting: yes|no` (RFC 3842 §5.2).
pub fn check_summary(body: &[u8]) -> Result<(), String> {
    let s = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
    let first = s.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let (name, value) = first
        .split_once(':')
        .ok_or_else(|| "no Messages-Waiting line".to_string())?;
    if !name.trim().eq_ignore_ascii_case("Messages-Waiting") {
        return Err(format!("first line is not Messages-Waiting: {first:?}"));
    }
    match value.trim().to_ascii_lowercase().as_str() {
        "yes" | "no" => Ok(()),
        v => Err(format!("Messages-Waiting is {v:?}, not yes or no")),
    }
}

fn latest(_pres: &str, docs: &[Vec<u8>]) -> Option<Vec<u8>> {
    docs.last().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_checked() {
        assert!(check_summary(b"Messages-Waiting: yes\r\nVoice-Message: 2/8 (0/2)\r\n").is_ok());
        assert!(check_summary(b"\r\nmessages-waiting:no\r\n").is_ok());
        assert!(check_summary(b"Messages-Waiting: maybe\r\n").is_err());
        assert!(check_summary(b"Voice-Message: 2/8\r\n").is_err());
        assert!(check_summary(b"").is_err());
        assert!(check_summary(b"\xff").is_err());
        assert_eq!(
            latest("sip:x@y", &[b"a".to_vec(), b"b".to_vec()]),
            Some(b"b".to_vec())
        );
        assert_eq!(latest("sip:x@y", &[]), None);
    }
}
