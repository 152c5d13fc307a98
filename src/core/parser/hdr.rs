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
        let cands: &[(&str, HdrType)] = match name.len() {
            2 => &[("To", HdrType::To)],
            3 => &[("Via", HdrType::Via)],
            4 => &[("From", HdrType::From), ("CSeq", HdrType::CSeq)],
            5 => &[
                ("Route", HdrType::Route),
                ("Event", HdrType::Event),
                ("Allow", HdrType::Allow),
            ],
            6 => &[("Accept", HdrType::Accept), ("Server", HdrType::Server)],
            7 => &[
                ("Call-ID", HdrType::CallId),
                ("Contact", HdrType::Contact),
                ("Expires", HdrType::Expires),
                ("Require", HdrType::Require),
                ("Subject", HdrType::Subject),
            ],
            8 => &[("Refer-To", HdrType::ReferTo)],
            9 => &[("Supported", HdrType::Supported)],
            10 => &[("User-Agent", HdrType::UserAgent)],
            11 => &[("Unsupported", HdrType::Unsupported)],
            12 => &[
                ("Max-Forwards", HdrType::MaxForwards),
                ("Record-Route", HdrType::RecordRoute),
                ("Content-Type", HdrType::ContentType),
                ("Allow-Events", HdrType::AllowEvents),
            ],
            13 => &[
                ("Authorization", HdrType::Authorization),
                ("Proxy-Require", HdrType::ProxyRequire),
            ],
            14 => &[("Content-Length", HdrType::ContentLength)],
            15 => &[("Session-Expires", HdrType::SessionExpires)],
            16 => &[
                ("WWW-Authenticate", HdrType::WwwAuthenticate),
                ("Content-Encoding", HdrType::ContentEncoding),
            ],
            18 => &[("Proxy-Authenticate", HdrType::ProxyAuthenticate)],
            19 => &[("Proxy-Authorization", HdrType::ProxyAuthorization)],
            _ => &[],
        };
        for (n, t) in cands {
            if n.as_bytes().eq_ignore_ascii_case(name) {
                return *t;
            }
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
