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
        // Dispatch on (length, lower-cased first letter), then one fixed-length
        // case-insensitive comparison (unrolled: no memcmp call).
        macro_rules! is {
            ($lit:literal, $t:expr) => {
                if ci_eq(name, $lit) {
                    $t
                } else {
                    HdrType::Other
                }
            };
        }
        let first = name.first().map(|c| c.to_ascii_lowercase()).unwrap_or(0);
        match (name.len(), first) {
            (2, b't') => is!(b"to", HdrType::To),
            (3, b'v') => is!(b"via", HdrType::Via),
            (4, b'f') => is!(b"from", HdrType::From),
            (4, b'c') => is!(b"cseq", HdrType::CSeq),
            (5, b'r') => is!(b"route", HdrType::Route),
            (5, b'e') => is!(b"event", HdrType::Event),
            (5, b'a') => is!(b"allow", HdrType::Allow),
            (6, b'a') => is!(b"accept", HdrType::Accept),
            (6, b's') => is!(b"server", HdrType::Server),
            (7, b'c') => {
                if name.get(1).is_some_and(|c| c.eq_ignore_ascii_case(&b'a')) {
                    is!(b"call-id", HdrType::CallId)
                } else {
                    is!(b"contact", HdrType::Contact)
                }
            }
            (7, b'e') => is!(b"expires", HdrType::Expires),
            (7, b'r') => is!(b"require", HdrType::Require),
            (7, b's') => is!(b"subject", HdrType::Subject),
            (8, b'r') => is!(b"refer-to", HdrType::ReferTo),
            (9, b's') => is!(b"supported", HdrType::Supported),
            (10, b'u') => is!(b"user-agent", HdrType::UserAgent),
            (11, b'u') => is!(b"unsupported", HdrType::Unsupported),
            (12, b'm') => is!(b"max-forwards", HdrType::MaxForwards),
            (12, b'r') => is!(b"record-route", HdrType::RecordRoute),
            (12, b'c') => is!(b"content-type", HdrType::ContentType),
            (12, b'a') => is!(b"allow-events", HdrType::AllowEvents),
            (13, b'a') => is!(b"authorization", HdrType::Authorization),
            (13, b'p') => is!(b"proxy-require", HdrType::ProxyRequire),
            (14, b'c') => is!(b"content-length", HdrType::ContentLength),
            (15, b's') => is!(b"session-expires", HdrType::SessionExpires),
            (16, b'w') => is!(b"www-authenticate", HdrType::WwwAuthenticate),
            (16, b'c') => is!(b"content-encoding", HdrType::ContentEncoding),
            (18, b'p') => is!(b"proxy-authenticate", HdrType::ProxyAuthenticate),
            (19, b'p') => is!(b"proxy-authorization", HdrType::ProxyAuthorization),
            _ => HdrType::Other,
        }
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

/// `name` equals the lower-case `lower` ignoring ASCII case (fixed length: unrolled).
#[inline(always)]
fn ci_eq<const N: usize>(name: &[u8], lower: &[u8; N]) -> bool {
    let Ok(a) = <&[u8; N]>::try_from(name) else {
        return false;
    };
    let mut diff = 0u8;
    for i in 0..N {
        diff |= a[i].to_ascii_lowercase() ^ lower[i];
    }
    diff == 0
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
