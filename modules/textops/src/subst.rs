//! `subst('/re/repl/flags')` expressions (OpenSER's re.c): parsing, matching and
//! building the replacement (back-references `\0`..`\9` and PVs).

use super::rematch::{Caps, Pattern, find};
use openser_core::cfg::pv::{PvSpec, parse_pv};

/// A piece of the replacement text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplPart {
    Lit(Vec<u8>),
    /// `\N`: the N-th group (0 = whole match)
    Group(usize),
    Pv(PvSpec),
}

/// A compiled subst expression.
#[derive(Debug)]
pub struct Subst {
    pub pat: Pattern,
    pub repl: Vec<ReplPart>,
    pub global: bool,
    pub max_group: usize,
}

/// Parse `/re/repl/flags` (any first character is the separator; `\sep` escapes it).
pub fn parse(expr: &str) -> Result<Subst, String> {
    let b = expr.as_bytes();
    let Some(&sep) = b.first() else {
        return Err("empty subst expression".into());
    };
    if sep == b'\\' || sep.is_ascii_alphanumeric() {
        return Err(format!("bad separator in subst expression '{expr}'"));
    }
    // regular expression
    let mut i = 1;
    let mut re = Vec::new();
    loop {
        match b.get(i) {
            None => return Err(format!("no end of regular expression in '{expr}'")),
            Some(&c) if c == sep => break,
            Some(b'\\') if b.get(i + 1) == Some(&sep) => {
                re.push(sep);
                i += 2;
            }
            Some(b'\\') if i + 1 < b.len() => {
                re.extend_from_slice(&b[i..i + 2]);
                i += 2;
            }
            Some(&c) => {
                re.push(c);
                i += 1;
            }
        }
    }
    i += 1;
    // replacement
    let mut repl = Vec::new();
    let mut lit = Vec::new();
    let mut max_group = 0;
    loop {
        match b.get(i) {
            None => return Err(format!("no end of replacement in '{expr}'")),
            Some(&c) if c == sep => break,
            Some(b'\\') => {
                let Some(&e) = b.get(i + 1) else {
                    return Err(format!("unfinished escape in '{expr}'"));
                };
                match e {
                    b'0'..=b'9' => {
                        if !lit.is_empty() {
                            repl.push(ReplPart::Lit(std::mem::take(&mut lit)));
                        }
                        let g = (e - b'0') as usize;
                        max_group = max_group.max(g);
                        repl.push(ReplPart::Group(g));
                    }
                    b'\\' => lit.push(b'\\'),
                    b'n' => lit.push(b'\n'),
                    b'r' => lit.push(b'\r'),
                    b't' => lit.push(b'\t'),
                    c if c == sep => lit.push(sep),
                    _ => return Err(format!("unknown escape '\\{}' in '{expr}'", e as char)),
                }
                i += 2;
            }
            Some(b'$') => {
                let rest = expr.get(i..).unwrap_or("");
                if rest.starts_with("$$") {
                    lit.push(b'$');
                    i += 2;
                    continue;
                }
                let (spec, n) = parse_pv(rest)?;
                if !lit.is_empty() {
                    repl.push(ReplPart::Lit(std::mem::take(&mut lit)));
                }
                repl.push(ReplPart::Pv(spec));
                i += n.max(1);
            }
            Some(&c) => {
                lit.push(c);
                i += 1;
            }
        }
    }
    if !lit.is_empty() {
        repl.push(ReplPart::Lit(lit));
    }
    i += 1;
    let (mut icase, mut newline, mut global) = (false, true, false);
    for &f in b.get(i..).unwrap_or(&[]) {
        match f {
            b'i' => icase = true,
            b's' => newline = false,
            b'g' => global = true,
            _ => return Err(format!("unknown flag '{}' in '{expr}'", f as char)),
        }
    }
    let re = String::from_utf8(re).map_err(|_| "bad regular expression".to_string())?;
    let pat = Pattern::new(&re, icase, newline)?;
    Ok(Subst {
        pat,
        repl,
        global,
        max_group,
    })
}

impl Subst {
    /// The matches in `s[from..end]` (one unless `g`). Empty matches advance by one.
    pub fn matches(&self, s: &str, from: usize, end: usize) -> Vec<Caps> {
        let mut out = Vec::new();
        let mut pos = from;
        while pos <= end {
            let Some(c) = find(&self.pat, s, pos, end) else {
                break;
            };
            let Some(Some((a, b))) = c.first().copied() else {
                break;
            };
            out.push(c);
            if !self.global {
                break;
            }
            pos = if a == b { b + 1 } else { b };
        }
        out
    }

    /// The replacement text for one match of `text`.
    pub fn expand(
        &self,
        caps: &Caps,
        text: &[u8],
        pv: &mut dyn FnMut(&PvSpec) -> String,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &self.repl {
            match p {
                ReplPart::Lit(l) => out.extend_from_slice(l),
                ReplPart::Group(g) => {
                    if let Some(Some((a, b))) = caps.get(*g)
                        && let Some(t) = text.get(*a..*b)
                    {
                        out.extend_from_slice(t);
                    }
                }
                ReplPart::Pv(spec) => out.extend_from_slice(pv(spec).as_bytes()),
            }
        }
        out
    }

    /// Apply to a whole string (`subst_uri`, `subst_user`): None if nothing matched.
    pub fn apply_str(&self, s: &str, pv: &mut dyn FnMut(&PvSpec) -> String) -> Option<String> {
        let ms = self.matches(s, 0, s.len());
        if ms.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(s.len() + 32);
        let mut cur = 0;
        for c in &ms {
            let Some(Some((a, b))) = c.first().copied() else {
                continue;
            };
            out.extend_from_slice(&s.as_bytes()[cur..a]);
            out.extend(self.expand(c, s.as_bytes(), pv));
            cur = b;
        }
        out.extend_from_slice(&s.as_bytes()[cur..]);
        Some(String::from_utf8_lossy(&out).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nopv(_: &PvSpec) -> String {
        "PV".into()
    }

    #[test]
    fn parse_and_apply() {
        let s = parse("/^sip:([0-9]+)@(.*)$/sip:\\1@example.net/").unwrap();
        assert_eq!(s.max_group, 1);
        assert_eq!(
            s.apply_str("sip:123@a.b", &mut nopv).as_deref(),
            Some("sip:123@example.net")
        );
        assert!(s.apply_str("sip:abc@a.b", &mut nopv).is_none());
        let s = parse("#a#b\\#$rU#gi").unwrap();
        assert!(s.global);
        assert_eq!(
            s.apply_str("xAya", &mut nopv).as_deref(),
            Some("xb#PVyb#PV")
        );
        let s = parse("/a\\/b/c/").unwrap();
        assert_eq!(s.apply_str("a/b", &mut nopv).as_deref(), Some("c"));
    }

    #[test]
    fn bad_exprs() {
        assert!(parse("").is_err());
        assert!(parse("/abc").is_err());
        assert!(parse("/a/b").is_err());
        assert!(parse("/a/b/q").is_err());
        assert!(parse("/a/\\q/").is_err());
        assert!(parse("/(/b/").is_err());
    }

    #[test]
    fn empty_match_global() {
        let s = parse("/x*/-/g").unwrap();
        assert_eq!(s.apply_str("ab", &mut nopv).as_deref(), Some("-a-b-"));
    }
}
