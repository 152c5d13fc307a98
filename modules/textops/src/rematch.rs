//! Regex matching over message bytes with POSIX `REG_NEWLINE` semantics.
//!
//! OpenSER's textops compiles its patterns with `REG_NEWLINE` (`.` and `[^…]` do not match
//! a newline; `^`/`$` match at line boundaries) and runs `regexec` on the NUL-terminated
//! message buffer. `core::re::Regex` has no `REG_NEWLINE` flag, so a pattern without a
//! literal newline is matched line by line here, which gives the same results. A pattern
//! that contains a newline (or a `subst` with the `s` flag) is matched over the whole text.
//!
//! Bytes are mapped to a matchable `&str`: valid UTF-8 is used as is; otherwise every
//! non-ASCII byte becomes `0x7f` (offsets stay byte offsets of the original buffer). As
//! with C strings, the text ends at the first NUL byte.

use std::borrow::Cow;

use openser_core::re::Regex;

/// A group list as returned by `Regex::captures`, with absolute offsets.
pub type Caps = Vec<Option<(usize, usize)>>;

/// Text to match for `bytes` (see the module comment).
pub fn hay(bytes: &[u8]) -> Cow<'_, str> {
    let end = memchr::memchr(0, bytes).unwrap_or(bytes.len());
    let b = &bytes[..end];
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(
            b.iter()
                .map(|&c| if c < 0x80 { c as char } else { '\x7f' })
                .collect(),
        ),
    }
}

/// A compiled pattern plus how to run it.
#[derive(Debug)]
pub struct Pattern {
    pub re: Regex,
    /// Emulate REG_NEWLINE (line-by-line matching).
    pub newline: bool,
    /// The pattern starts with `^` (cannot match in the middle of a line).
    pub bol_anchored: bool,
}

impl Pattern {
    /// Compile with REG_EXTENDED (+REG_ICASE when `icase`), REG_NEWLINE emulated when
    /// `newline`.
    pub fn new(pat: &str, icase: bool, newline: bool) -> Result<Pattern, String> {
        let re = Regex::new(pat, icase, false)?;
        Ok(Pattern {
            re,
            newline: newline && !pat.contains('\n'),
            bol_anchored: pat.starts_with('^'),
        })
    }
}

fn shift(c: Caps, base: usize) -> Caps {
    c.into_iter()
        .map(|g| g.map(|(a, b)| (a + base, b + base)))
        .collect()
}

fn next_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Match `re` against `s[from..end]` where `from` may be in the middle of the text
/// (then `^` must not match there: REG_NOTBOL, approximated for anchored patterns).
pub fn find(p: &Pattern, s: &str, from: usize, end: usize) -> Option<Caps> {
    let end = end.min(s.len());
    let from = next_boundary(s, from);
    if from > end {
        return None;
    }
    let notbol = from > 0;
    if !p.newline {
        if notbol && p.bol_anchored {
            return None;
        }
        let sub = s.get(from..end)?;
        return p.re.captures(sub).map(|c| shift(c, from));
    }
    let mut ls = from;
    loop {
        let le = memchr::memchr(b'\n', &s.as_bytes()[ls..end]).map_or(end, |k| ls + k);
        let mid_line = ls > 0 && s.as_bytes()[ls - 1] != b'\n';
        if !(mid_line && p.bol_anchored)
            && let Some(line) = s.get(ls..le)
            && let Some(c) = p.re.captures(line)
        {
            return Some(shift(c, ls));
        }
        if le >= end {
            return None;
        }
        ls = le + 1;
    }
}

/// All non-overlapping matches in `s[from..end]` (stops, returning None, on an empty
/// match as OpenSER does: "matched string is empty").
pub fn find_all(p: &Pattern, s: &str, from: usize, end: usize) -> Option<Vec<Caps>> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos < end {
        let Some(c) = find(p, s, pos, end) else { break };
        let Some(Some((a, b))) = c.first().copied() else {
            break;
        };
        if a == b {
            return None;
        }
        pos = b;
        out.push(c);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newline_semantics() {
        let p = Pattern::new("User-Agent: .*", true, true).unwrap();
        let s = "INVITE x SIP/2.0\r\nuser-agent: foo\r\nVia: x\r\n\r\n";
        let c = find(&p, s, 0, s.len()).unwrap();
        let (a, b) = c[0].unwrap();
        assert_eq!(&s[a..b], "user-agent: foo\r");
        let p = Pattern::new("^Via", false, true).unwrap();
        let c = find(&p, s, 0, s.len()).unwrap();
        assert_eq!(c[0].unwrap().0, s.find("Via").unwrap());
        assert!(find(&p, s, s.find("Via").unwrap() + 1, s.len()).is_none());
    }

    #[test]
    fn all_and_empty() {
        let p = Pattern::new("a", false, true).unwrap();
        let s = "xaxa\nab";
        assert_eq!(find_all(&p, s, 0, s.len()).unwrap().len(), 3);
        let p = Pattern::new("x*", false, true).unwrap();
        assert!(find_all(&p, "abc", 0, 3).is_none());
    }

    #[test]
    fn non_utf8_and_nul() {
        let h = hay(b"ab\xffcd\0ef");
        assert_eq!(h.len(), 5);
        assert_eq!(&h[3..], "cd");
    }
}
