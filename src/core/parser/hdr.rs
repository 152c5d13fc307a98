//! Header names: the type enum and case-insensitive lookup including compact forms.

/// Header types known to the parser. `Other` is any other name (match by text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HdrType {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    Contact,
    Expires,
    ContentLength,
    ContentType,
    ContentEncoding,
    Route,
    RecordRoute,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    Event,
    AllowEvents,
    Supported,
    Require,
    ProxyRequire,
    Unsupported,
    Allow,
    Accept,
    UserAgent,
    Server,
    Subject,
    ReferTo,
    SessionExpires,
    Other,
}

impl HdrType {
    /// Type of a header name (case-insensitive; compact forms `v f t i m l c e k s o r u x`).
    pub fn from_name(name: &[u8]) -> HdrType {
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'v' => HdrType::Via,
                b'f' => HdrType::From,
                b't' => HdrType::To,
                b'i' => HdrType::CallId,
                b'm' => HdrType::Contact,
                b'l' => HdrType::ContentLength,
                b'c' => HdrType::ContentType,
                b'e' => HdrType::ContentEncoding,
                b'k' => HdrType::Supported,
                b's' => HdrType::Subject,
                b'o' => HdrType::Event,
                b'r' => HdrType::ReferTo,
                b'u' => HdrType::AllowEvents,
                b'x' => HdrType::SessionExpires,
                _ => HdrType::Other,
            };
        }
        // Dispatch on (length, lower-cased first letter): at most one comparison.
        let first = name.first().map(|c| c.to_ascii_lowercase()).unwrap_or(0);
        let (cand, t) = match (name.len(), first) {
            (2, b't') => ("To", HdrType::To),
            (3, b'v') => ("Via", HdrType::Via),
            (4, b'f') => ("From", HdrType::From),
            (4, b'c') => ("CSeq", HdrType::CSeq),
            (5, b'r') => ("Route", HdrType::Route),
            (5, b'e') => ("Event", HdrType::Event),
            (5, b'a') => ("Allow", HdrType::Allow),
            (6, b'a') => ("Accept", HdrType::Accept),
            (6, b's') => ("Server", HdrType::Server),
            (7, b'c') => {
                if name.get(1).is_some_and(|c| c.eq_ignore_ascii_case(&b'a')) {
                    ("Call-ID", HdrType::CallId)
                } else {
                    ("Contact", HdrType::Contact)
                }
            }
            (7, b'e') => ("Expires", HdrType::Expires),
            (7, b'r') => ("Require", HdrType::Require),
            (7, b's') => ("Subject", HdrType::Subject),
            (8, b'r') => ("Refer-To", HdrType::ReferTo),
            (9, b's') => ("Supported", HdrType::Supported),
            (10, b'u') => ("User-Agent", HdrType::UserAgent),
            (11, b'u') => ("Unsupported", HdrType::Unsupported),
            (12, b'm') => ("Max-Forwards", HdrType::MaxForwards),
            (12, b'r') => ("Record-Route", HdrType::RecordRoute),
            (12, b'c') => ("Content-Type", HdrType::ContentType),
            (12, b'a') => ("Allow-Events", HdrType::AllowEvents),
            (13, b'a') => ("Authorization", HdrType::Authorization),
            (13, b'p') => ("Proxy-Require", HdrType::ProxyRequire),
            (14, b'c') => ("Content-Length", HdrType::ContentLength),
            (15, b's') => ("Session-Expires", HdrType::SessionExpires),
            (16, b'w') => ("WWW-Authenticate", HdrType::WwwAuthenticate),
            (16, b'c') => ("Content-Encoding", HdrType::ContentEncoding),
            (18, b'p') => ("Proxy-Authenticate", HdrType::ProxyAuthenticate),
            (19, b'p') => ("Proxy-Authorization", HdrType::ProxyAuthorization),
            _ => return HdrType::Other,
        };
        if cand.as_bytes() == name || cand.as_bytes().eq_ignore_ascii_case(name) {
            return t;
        }
        HdrType::Other
    }

    /// Canonical long name ("" for `Other`).
    pub fn name(self) -> &'static str {
        match self {
            HdrType::Via => "Via",
            HdrType::From => "From",
            HdrType::To => "To",
            HdrType::CallId => "Call-ID",
            HdrType::CSeq => "CSeq",
            HdrType::MaxForwards => "Max-Forwards",
            HdrType::Contact => "Contact",
            HdrType::Expires => "Expires",
            HdrType::ContentLength => "Content-Length",
            HdrType::ContentType => "Content-Type",
            HdrType::ContentEncoding => "Content-Encoding",
            HdrType::Route => "Route",
            HdrType::RecordRoute => "Record-Route",
            HdrType::Authorization => "Authorization",
            HdrType::ProxyAuthorization => "Proxy-Authorization",
            HdrType::WwwAuthenticate => "WWW-Authenticate",
            HdrType::ProxyAuthenticate => "Proxy-Authenticate",
            HdrType::Event => "Event",
            HdrType::AllowEvents => "Allow-Events",
            HdrType::Supported => "Supported",
            HdrType::Require => "Require",
            HdrType::ProxyRequire => "Proxy-Require",
            HdrType::Unsupported => "Unsupported",
            HdrType::Allow => "Allow",
            HdrType::Accept => "Accept",
            HdrType::UserAgent => "User-Agent",
            HdrType::Server => "Server",
            HdrType::Subject => "Subject",
            HdrType::ReferTo => "Refer-To",
            HdrType::SessionExpires => "Session-Expires",
            HdrType::Other => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names_roundtrip_and_compact() {
        for t in [
            HdrType::Via,
            HdrType::ProxyAuthorization,
            HdrType::WwwAuthenticate,
            HdrType::CallId,
        ] {
            assert_eq!(HdrType::from_name(t.name().as_bytes()), t);
            assert_eq!(HdrType::from_name(t.name().to_uppercase().as_bytes()), t);
        }
        assert_eq!(HdrType::from_name(b"V"), HdrType::Via);
        assert_eq!(HdrType::from_name(b"i"), HdrType::CallId);
        assert_eq!(HdrType::from_name(b"X-Foo"), HdrType::Other);
        assert_eq!(HdrType::from_name(b""), HdrType::Other);
    }
}
