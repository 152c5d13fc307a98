//! Contact filters (1.2's `rd_filter.c`): up to six accept and six deny regular
//! expressions, the first of each kind being the module's default (`accept_filter`,
//! `deny_filter`), the others added per message by `set_accept_filter` /
//! `set_deny_filter`.
//!
//! A contact is accepted when an accept filter matches; else, unless the default rule
//! is deny, refused when a deny filter matches; else the default rule decides.

use std::sync::Arc;

use openser_core::re::Regex;

/// Filters per kind, default included.
pub const MAX_FILTERS: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Accept,
    Deny,
}

/// `set_*_filter` flags.
pub const RESET_ADDED: u8 = 1;
pub const RESET_DEFAULT: u8 = 2;

/// `reset_all`, `reset_default`, `reset_added` or "" (comma-separated).
pub fn parse_flags(s: &str) -> Result<u8, String> {
    let mut f = 0;
    for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        f |= match t.to_ascii_lowercase().as_str() {
            "reset_all" => RESET_ADDED | RESET_DEFAULT,
            "reset_default" => RESET_DEFAULT,
            "reset_added" => RESET_ADDED,
            _ => return Err(format!("unknown filter flag {t:?}")),
        };
    }
    Ok(f)
}

#[derive(Clone, Default)]
struct Set {
    default: Option<Arc<Regex>>,
    use_default: bool,
    added: Vec<Arc<Regex>>,
}

impl Set {
    fn matches(&self, uri: &str) -> bool {
        self.use_default && self.default.as_ref().is_some_and(|r| r.is_match(uri))
            || self.added.iter().any(|r| r.is_match(uri))
    }
}

/// The filters in effect for one message.
#[derive(Clone)]
pub struct Filters {
    pub default_accept: bool,
    accept: Set,
    deny: Set,
}

impl Filters {
    pub fn new(
        default_accept: bool,
        accept: Option<Arc<Regex>>,
        deny: Option<Arc<Regex>>,
    ) -> Filters {
        let set = |d| Set {
            default: d,
            use_default: true,
            added: Vec::new(),
        };
        Filters {
            default_accept,
            accept: set(accept),
            deny: set(deny),
        }
    }

    /// Add a filter for this message; false when six are in use.
    pub fn add(&mut self, kind: Kind, re: Arc<Regex>, flags: u8) -> bool {
        let s = match kind {
            Kind::Accept => &mut self.accept,
            Kind::Deny => &mut self.deny,
        };
        if flags & RESET_ADDED != 0 {
            s.added.clear();
        }
        if flags & RESET_DEFAULT != 0 {
            s.use_default = false;
        }
        if s.added.len() + 1 >= MAX_FILTERS {
            return false;
        }
        s.added.push(re);
        true
    }

    /// Whether contact `uri` may be used.
    pub fn accepts(&self, uri: &str) -> bool {
        if self.accept.matches(uri) {
            return true;
        }
        if self.default_accept && self.deny.matches(uri) {
            return false;
        }
        self.default_accept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(s: &str) -> Arc<Regex> {
        Arc::new(Regex::new(s, true, true).unwrap())
    }

    #[test]
    fn default_accept_with_deny() {
        let f = Filters::new(true, None, Some(re(".*@siphub\\.net")));
        assert!(f.accepts("sip:a@example.com"));
        assert!(!f.accepts("sip:a@SIPHUB.net"));
    }

    #[test]
    fn default_deny_with_accept() {
        let f = Filters::new(false, Some(re("@good\\.org$")), Some(re(".*")));
        assert!(f.accepts("sip:x@good.org"));
        assert!(!f.accepts("sip:x@bad.org"));
    }

    #[test]
    fn added_filters_and_resets() {
        let mut f = Filters::new(true, None, Some(re("@a\\.net")));
        assert!(f.add(Kind::Deny, re("@b\\.net"), 0));
        assert!(!f.accepts("sip:x@a.net") && !f.accepts("sip:x@b.net"));
        // reset_default: the default deny goes, the added one stays
        assert!(f.add(Kind::Deny, re("@c\\.net"), RESET_DEFAULT));
        assert!(f.accepts("sip:x@a.net") && !f.accepts("sip:x@b.net"));
        // reset_added: only the new one
        assert!(f.add(Kind::Deny, re("@d\\.net"), RESET_ADDED));
        assert!(f.accepts("sip:x@b.net") && !f.accepts("sip:x@d.net"));
        // an accept filter wins over a deny
        assert!(f.add(Kind::Accept, re("^sip:boss@"), 0));
        assert!(f.accepts("sip:boss@d.net"));
        // at most six per kind, default included
        for _ in 0..4 {
            assert!(f.add(Kind::Deny, re("x"), 0));
        }
        assert!(!f.add(Kind::Deny, re("y"), 0));
        assert_eq!(parse_flags("reset_all").unwrap(), 3);
        assert_eq!(parse_flags("").unwrap(), 0);
        assert!(parse_flags("reset_some").is_err());
    }
}
