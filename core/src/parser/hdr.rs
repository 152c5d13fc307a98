//! Header names: the type enum and case-insensitive lookup including compact forms.

use super::scan::is_token;

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

/// A header name compiled into three 8-byte words (names up to 24 bytes) for a
/// case-insensitive prefix test: word `i` of the line matches if
/// `(w | or) & keep == pat`. `or` sets bit 0x20 only where the name has a letter (so
/// only that letter's two cases match); other bytes compare exactly.
struct NamePat {
    len: usize,
    or: [u64; 3],
    keep: [u64; 3],
    pat: [u64; 3],
    t: HdrType,
}

const fn name_pat(name: &[u8], t: HdrType) -> NamePat {
    let len = name.len();
    let mut or = [0u64; 3];
    let mut keep = [0u64; 3];
    let mut pat = [0u64; 3];
    let mut at = 0;
    while at < len {
        let (w, sh) = (at / 8, 8 * (at % 8));
        let c = name[at].to_ascii_lowercase();
        keep[w] |= 0xff << sh;
        pat[w] |= (c as u64) << sh;
        if c.is_ascii_lowercase() {
            or[w] |= 0x20 << sh;
        }
        at += 1;
    }
    NamePat {
        len,
        or,
        keep,
        pat,
        t,
    }
}

impl NamePat {
    /// The line (first 24 bytes as words `w`, all of it as `line`) starts with this name
    /// followed by a non-token byte.
    #[inline(always)]
    fn matches(&self, w: &[u64; 3], line: &[u8]) -> bool {
        ((w[0] | self.or[0]) & self.keep[0] == self.pat[0])
            & ((w[1] | self.or[1]) & self.keep[1] == self.pat[1])
            & ((w[2] | self.or[2]) & self.keep[2] == self.pat[2])
            && line.get(self.len).is_some_and(|&c| !is_token(c))
    }
}

macro_rules! pats {
    ($($n:literal => $t:ident),* $(,)?) => {
        [$(name_pat($n, HdrType::$t)),*]
    };
}

// Candidates by the first letters; compact forms last.
static PAT_CA: [NamePat; 2] = pats![b"call-id" => CallId, b"c" => ContentType];
static PAT_CS: [NamePat; 2] = pats![b"cseq" => CSeq, b"c" => ContentType];
static PAT_CONTA: [NamePat; 1] = pats![b"contact" => Contact];
static PAT_CONTE: [NamePat; 3] = pats![
    b"content-length" => ContentLength, b"content-type" => ContentType,
    b"content-encoding" => ContentEncoding,
];
static PAT_C: [NamePat; 1] = pats![b"c" => ContentType];
static PAT_V: [NamePat; 2] = pats![b"via" => Via, b"v" => Via];
static PAT_F: [NamePat; 2] = pats![b"from" => From, b"f" => From];
static PAT_T: [NamePat; 2] = pats![b"to" => To, b"t" => To];
static PAT_M: [NamePat; 2] = pats![b"max-forwards" => MaxForwards, b"m" => Contact];
static PAT_R: [NamePat; 4] = pats![
    b"route" => Route, b"record-route" => RecordRoute, b"require" => Require, b"r" => ReferTo,
];
static PAT_I: [NamePat; 1] = pats![b"i" => CallId];
static PAT_L: [NamePat; 1] = pats![b"l" => ContentLength];

impl HdrType {
    /// Recognise a common header name at the start of `line` (the rest of the message
    /// from a header line's start) without scanning it byte by byte: `Some((type, name
    /// length))` when `line` starts with one of the names above followed by a non-token
    /// byte. `None` means "use the general path". When it answers, the answer is what a
    /// token scan plus [`HdrType::from_name`] gives.
    #[inline]
    pub(crate) fn match_line(line: &[u8]) -> Option<(HdrType, usize)> {
        let head: &[u8; 24] = line.get(..24)?.try_into().ok()?;
        let mut w = [0u64; 3];
        for (i, c) in head.chunks_exact(8).enumerate() {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            w[i] = u64::from_le_bytes(a);
        }
        let lower = w[0] | 0x2020_2020_2020_2020;
        let cands: &[NamePat] = match lower as u8 {
            b'c' => match (lower >> 8) as u8 {
                b'a' => &PAT_CA,
                b's' => &PAT_CS,
                b'o' if (lower >> 32) as u8 == b'a' => &PAT_CONTA,
                b'o' => &PAT_CONTE,
                _ => &PAT_C,
            },
            b'v' => &PAT_V,
            b'f' => &PAT_F,
            b't' => &PAT_T,
            b'm' => &PAT_M,
            b'r' => &PAT_R,
            b'i' => &PAT_I,
            b'l' => &PAT_L,
            _ => return None,
        };
        cands
            .iter()
            .find(|p| p.matches(&w, line))
            .map(|p| (p.t, p.len))
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

    /// `match_line` agrees with token scan + `from_name` on every name it recognises.
    #[test]
    fn match_line_agrees_with_from_name() {
        let names = [
            "Via",
            "v",
            "From",
            "f",
            "To",
            "t",
            "Call-ID",
            "i",
            "CSeq",
            "Contact",
            "m",
            "c",
            "Content-Length",
            "l",
            "Content-Type",
            "Content-Encoding",
            "Max-Forwards",
            "Route",
            "Record-Route",
            "Require",
            "r",
            "Viax",
            "Fro",
            "Toto",
            "Call-IDs",
            "CSeq2",
            "Contact-X",
            "Content-Lengths",
            "Max_Forwards",
            "Route-",
            "Rout",
            "Record-Routes",
            "X",
            "x-foo",
        ];
        let tails = [": x\r\n", " : x\r\n", ":\r\n", "\t:x\r\n\r\n", "x: y\r\n"]
            .map(|t| format!("{t}Content-Length: 0\r\n\r\n"));
        for n in names {
            for case in [n.to_string(), n.to_uppercase(), n.to_lowercase()] {
                for tail in &tails {
                    let line = format!("{case}{tail}");
                    let b = line.as_bytes();
                    let tl = b.iter().position(|&c| !is_token(c)).unwrap_or(b.len());
                    if let Some((t, l)) = HdrType::match_line(b) {
                        assert_eq!(l, tl, "{line:?}");
                        assert_eq!(t, HdrType::from_name(&b[..tl]), "{line:?}");
                    }
                }
            }
        }
        assert_eq!(
            HdrType::match_line(b"Content-Length: 0\r\nCSeq: 1 INVITE\r\n"),
            Some((HdrType::ContentLength, 14))
        );
        assert_eq!(
            HdrType::match_line(b"v: SIP/2.0/UDP x\r\nCSeq: 1 INVITE\r\n"),
            Some((HdrType::Via, 1))
        );
        // Control bytes that equal a letter after `| 0x20` must not match.
        assert_eq!(
            HdrType::match_line(b"Call\x0did: 1\r\nCSeq: 1 INVITE\r\n"),
            None
        );
    }
}
