//! POSIX extended regular expressions through libc `regcomp`/`regexec`, as OpenSER
//! uses them (conditions `=~`, `modparam` module names, module functions).
#![allow(unsafe_code)]

use std::ffi::CString;

/// A compiled POSIX regular expression.
pub struct Regex {
    re: Box<libc::regex_t>,
    nsub: usize,
    nosub: bool,
    pattern: String,
}

// SAFETY: the compiled `regex_t` is owned exclusively by this value (boxed, never
// aliased); `regexec` only reads the compiled pattern (it keeps its match state on the
// stack), so sharing `&Regex` is sound. The server is single-threaded per process
// anyway; the bounds are needed to keep compiled regexes in `static`s and `Arc`s.
unsafe impl Send for Regex {}
// SAFETY: see above — `regexec` does not mutate the compiled pattern.
unsafe impl Sync for Regex {}

fn regerror_text(code: libc::c_int, re: &libc::regex_t) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `re` points to a regex_t passed to regcomp; buf is writable for its
    // whole length, which is what we pass; regerror NUL-terminates within that length.
    let n = unsafe { libc::regerror(code, re, buf.as_mut_ptr().cast(), buf.len()) };
    let n = n.min(buf.len());
    let end = buf[..n].iter().position(|&b| b == 0).unwrap_or(n);
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl Regex {
    /// Compile `pat` with REG_EXTENDED, plus REG_ICASE / REG_NOSUB when asked.
    pub fn new(pat: &str, icase: bool, nosub: bool) -> Result<Regex, String> {
        let c = CString::new(pat).map_err(|_| "regular expression contains NUL".to_string())?;
        let mut flags = libc::REG_EXTENDED;
        if icase {
            flags |= libc::REG_ICASE;
        }
        if nosub {
            flags |= libc::REG_NOSUB;
        }
        // SAFETY: regex_t is a plain C struct for which all-zero bytes is a valid
        // (uninitialised-but-harmless) value; regcomp initialises it.
        let mut re: Box<libc::regex_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `re` is a valid, exclusively owned regex_t; `c` is NUL-terminated and
        // lives across the call.
        let rc = unsafe { libc::regcomp(&mut *re, c.as_ptr(), flags) };
        if rc != 0 {
            let msg = regerror_text(rc, &re);
            // no regfree: on failure regcomp leaves nothing allocated to free
            return Err(format!("bad regular expression '{pat}': {msg}"));
        }
        Ok(Regex {
            // an upper bound of the number of groups (regexec sets unused slots to -1)
            nsub: pat.bytes().filter(|&b| b == b'(').count(),
            re,
            nosub,
            pattern: pat.to_string(),
        })
    }

    /// The source pattern.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the pattern matches somewhere in `s` (strings with NUL never match).
    pub fn is_match(&self, s: &str) -> bool {
        let Ok(c) = CString::new(s) else {
            return false;
        };
        // SAFETY: self.re was compiled by regcomp and not freed; `c` is NUL-terminated;
        // nmatch 0 with a null pmatch is allowed.
        let rc = unsafe { libc::regexec(&*self.re, c.as_ptr(), 0, std::ptr::null_mut(), 0) };
        rc == 0
    }

    /// Match and return the byte ranges of the whole match and every group (None
    /// for a group that did not participate). None if no match.
    pub fn captures(&self, s: &str) -> Option<Vec<Option<(usize, usize)>>> {
        let c = CString::new(s).ok()?;
        if self.nosub {
            return if self.is_match(s) { Some(vec![]) } else { None };
        }
        let n = self.nsub + 1;
        let mut m = vec![
            libc::regmatch_t {
                rm_so: -1,
                rm_eo: -1
            };
            n
        ];
        // SAFETY: compiled regex, NUL-terminated subject, `m` has room for exactly `n`
        // entries, which is the nmatch passed.
        let rc = unsafe { libc::regexec(&*self.re, c.as_ptr(), n, m.as_mut_ptr(), 0) };
        if rc != 0 {
            return None;
        }
        Some(
            m.iter()
                .map(|r| {
                    if r.rm_so < 0 || r.rm_eo < r.rm_so {
                        None
                    } else {
                        let (a, b) = (r.rm_so as usize, r.rm_eo as usize);
                        if b <= s.len() { Some((a, b)) } else { None }
                    }
                })
                .collect(),
        )
    }

    /// Match against the whole of `s` (OpenSER's anchored modparam module match).
    pub fn matches_whole(&self, s: &str) -> bool {
        if self.nosub {
            // need positions: compile an anchored copy
            return Regex::new(&format!("^({})$", self.pattern), false, true)
                .map(|r| r.is_match(s))
                .unwrap_or(false);
        }
        matches!(self.captures(s), Some(v) if v.first() == Some(&Some((0, s.len()))))
    }
}

impl Drop for Regex {
    fn drop(&mut self) {
        // SAFETY: self.re was successfully compiled by regcomp and is freed only here.
        unsafe { libc::regfree(&mut *self.re) };
    }
}

impl std::fmt::Debug for Regex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Regex({:?})", self.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic() {
        let r = Regex::new("^sip:[0-9]+@", false, false).unwrap();
        assert!(r.is_match("sip:123@x"));
        assert!(!r.is_match("sip:abc@x"));
        let r = Regex::new("ABC", true, true).unwrap();
        assert!(r.is_match("xabcx"));
        assert!(Regex::new("(", false, false).is_err());
        assert!(Regex::new("a\0b", false, false).is_err());
        assert!(!r.is_match("a\0bc"));
        let r = Regex::new("(a+)(x)?b", false, false).unwrap();
        let c = r.captures("zzaab").unwrap();
        assert_eq!(c, vec![Some((2, 5)), Some((2, 4)), None]);
        let r = Regex::new("tm|sl", false, false).unwrap();
        assert!(r.matches_whole("tm"));
        assert!(!r.matches_whole("tmx"));
    }
}
