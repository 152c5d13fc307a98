//! The value operations of avpops, free of the message: `avp_check`'s comparison of two
//! values, `fm` (fnmatch) patterns, `avp_op`'s arithmetic and `avp_subst`'s
//! substitution.

use openser_core::re::Regex;
use openser_core::script::PvValue;

use crate::parse::{ArithOp, CheckOp, ReplPart, Subst};

/// Case-insensitive byte order, a shorter prefix first (1.2's `strncasecmp` over the
/// longer length).
fn ci_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let la = a.bytes().map(|c| c.to_ascii_lowercase());
    let lb = b.bytes().map(|c| c.to_ascii_lowercase());
    la.cmp(lb)
}

/// One comparison of `avp_check`: `v` (the AVP's value) against `c` (the operand).
/// `re` is the compiled expression for `re` (the operand text is used otherwise).
/// Values of different types never match (1.2 logs it and goes on).
pub fn check_one(
    op: CheckOp,
    icase: bool,
    v: &PvValue,
    c: &PvValue,
    re: Option<&Regex>,
) -> Result<bool, &'static str> {
    match (v, c) {
        (PvValue::Str(a), PvValue::Str(b)) => Ok(match op {
            CheckOp::Eq if icase => a.eq_ignore_ascii_case(b),
            CheckOp::Eq => a == b,
            CheckOp::Ne if icase => !a.eq_ignore_ascii_case(b),
            CheckOp::Ne => a != b,
            CheckOp::Lt => ci_cmp(a, b).is_lt(),
            CheckOp::Le => ci_cmp(a, b).is_le(),
            CheckOp::Gt => ci_cmp(a, b).is_gt(),
            CheckOp::Ge => ci_cmp(a, b).is_ge(),
            CheckOp::Re => match re {
                Some(r) => r.is_match(a),
                None => return Err("no regular expression"),
            },
            CheckOp::Fm => fnmatch(b, a),
            CheckOp::And | CheckOp::Or | CheckOp::Xor => {
                return Err("bit operation on string values");
            }
        }),
        (PvValue::Int(a), PvValue::Int(b)) => Ok(match op {
            CheckOp::Eq => a == b,
            CheckOp::Ne => a != b,
            CheckOp::Lt => a < b,
            CheckOp::Le => a <= b,
            CheckOp::Gt => a > b,
            CheckOp::Ge => a >= b,
            CheckOp::And => a & b != 0,
            CheckOp::Or => a | b != 0,
            CheckOp::Xor => a ^ b != 0,
            CheckOp::Re | CheckOp::Fm => return Err("pattern match on integer values"),
        }),
        _ => Err("value types don't match"),
    }
}

/// Shell wildcard match (`fnmatch(3)` without flags): `*`, `?`, `[...]` with ranges
/// and `!`/`^` negation, `\` quoting the next character.
pub fn fnmatch(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    glob(&p, &t)
}

fn glob(p: &[char], t: &[char]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some('?') => Some(1),
            Some('[') => class(&p[pi..], t[ti]),
            Some('\\') if pi + 1 < p.len() => (p[pi + 1] == t[ti]).then_some(2),
            Some(&c) => (c == t[ti]).then_some(1),
            None => None,
        };
        match step {
            Some(n) => {
                pi += n;
                ti += 1;
            }
            None => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Match `c` against the bracket expression at the start of `p`; the pattern length
/// consumed on a match. An unterminated `[` is an ordinary character.
fn class(p: &[char], c: char) -> Option<usize> {
    let mut i = 1;
    let neg = matches!(p.get(1), Some('!' | '^'));
    if neg {
        i += 1;
    }
    let start = i;
    let mut hit = false;
    while i < p.len() {
        if p[i] == ']' && i > start {
            return (hit != neg).then_some(i + 1);
        }
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            if p[i] <= c && c <= p[i + 2] {
                hit = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                hit = true;
            }
            i += 1;
        }
    }
    (c == '[').then_some(1)
}

/// `avp_op`'s arithmetic; division and modulo by zero give 0 (as 1.2, which logs it).
pub fn arith(op: ArithOp, a: i64, b: i64) -> i64 {
    match op {
        ArithOp::Add => a.wrapping_add(b),
        ArithOp::Sub => a.wrapping_sub(b),
        ArithOp::Mul => a.wrapping_mul(b),
        ArithOp::Div => a.checked_div(b).unwrap_or(0),
        ArithOp::Mod => a.checked_rem(b).unwrap_or(0),
        ArithOp::And => a & b,
        ArithOp::Or => a | b,
        ArithOp::Xor => a ^ b,
        ArithOp::Not => !b,
    }
}

impl Subst {
    /// Apply to `s`: `None` when nothing matched. `pv` gives the text of a PV in the
    /// replacement. With `g` every match is replaced; an empty match moves on by one
    /// character.
    pub fn apply(
        &self,
        s: &str,
        pv: &mut dyn FnMut(&openser_core::cfg::pv::PvSpec) -> String,
    ) -> Option<String> {
        let mut out = String::with_capacity(s.len() + 16);
        let mut pos = 0;
        let mut done = 0;
        let mut n = 0;
        while pos <= s.len() {
            if pos > 0 && self.anchored {
                break;
            }
            let Some(caps) = self.re.captures(&s[pos..]) else {
                break;
            };
            let Some(Some((a, b))) = caps.first().copied() else {
                break;
            };
            let (a, b) = (a + pos, b + pos);
            if !s.is_char_boundary(a) || !s.is_char_boundary(b) {
                // a byte-wise match inside a multi-byte character: stop here
                break;
            }
            out.push_str(&s[done..a]);
            for part in &self.repl {
                match part {
                    ReplPart::Lit(l) => out.push_str(l),
                    ReplPart::Group(g) => {
                        if let Some(Some((x, y))) = caps.get(*g)
                            && let Some(t) = s.get(x + pos..y + pos)
                        {
                            out.push_str(t);
                        }
                    }
                    ReplPart::Pv(spec) => out.push_str(&pv(spec)),
                }
            }
            done = b;
            n += 1;
            if !self.global {
                break;
            }
            pos = if a == b {
                // an empty match: copy one character and go on after it
                match s[b..].chars().next() {
                    Some(c) => b + c.len_utf8(),
                    None => break,
                }
            } else {
                b
            };
        }
        if n == 0 {
            return None;
        }
        out.push_str(&s[done..]);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{self, CheckOp::*};

    fn s(v: &str) -> PvValue {
        PvValue::Str(v.into())
    }
    fn i(v: i64) -> PvValue {
        PvValue::Int(v)
    }
    fn chk(op: CheckOp, v: &PvValue, c: &PvValue) -> bool {
        check_one(op, false, v, c, None).unwrap()
    }

    #[test]
    fn check_every_operator_on_integers() {
        assert!(chk(Eq, &i(5), &i(5)) && !chk(Eq, &i(5), &i(6)));
        assert!(chk(Ne, &i(5), &i(6)) && !chk(Ne, &i(5), &i(5)));
        assert!(chk(Lt, &i(4), &i(5)) && !chk(Lt, &i(5), &i(5)));
        assert!(chk(Le, &i(5), &i(5)) && !chk(Le, &i(6), &i(5)));
        assert!(chk(Gt, &i(6), &i(5)) && !chk(Gt, &i(5), &i(5)));
        assert!(chk(Ge, &i(5), &i(5)) && !chk(Ge, &i(4), &i(5)));
        assert!(chk(And, &i(6), &i(2)) && !chk(And, &i(4), &i(2)));
        assert!(chk(Or, &i(0), &i(2)) && !chk(Or, &i(0), &i(0)));
        assert!(chk(Xor, &i(6), &i(2)) && !chk(Xor, &i(2), &i(2)));
        assert!(check_one(Re, false, &i(1), &i(1), None).is_err());
        assert!(check_one(Fm, false, &i(1), &i(1), None).is_err());
    }

    #[test]
    fn check_every_operator_on_strings() {
        assert!(chk(Eq, &s("abc"), &s("abc")) && !chk(Eq, &s("abc"), &s("ABC")));
        assert!(check_one(Eq, true, &s("abc"), &s("ABC"), None).unwrap());
        assert!(chk(Ne, &s("abc"), &s("ABC")) && !chk(Ne, &s("abc"), &s("abc")));
        assert!(!check_one(Ne, true, &s("abc"), &s("ABC"), None).unwrap());
        // ordering is case-insensitive in 1.2, a prefix sorts first
        assert!(chk(Lt, &s("ab"), &s("abc")) && chk(Lt, &s("ABC"), &s("abd")));
        assert!(!chk(Lt, &s("abc"), &s("ABC")));
        assert!(chk(Le, &s("abc"), &s("ABC")) && !chk(Le, &s("b"), &s("a")));
        assert!(chk(Gt, &s("abcd"), &s("abc")) && !chk(Gt, &s("abc"), &s("ABC")));
        assert!(chk(Ge, &s("ABC"), &s("abc")) && !chk(Ge, &s("a"), &s("b")));
        let re = parse::compile_check_re("^sip:.*@bar\\.net$").unwrap();
        assert!(check_one(Re, false, &s("SIP:x@bar.net"), &s(""), Some(&re)).unwrap());
        assert!(!check_one(Re, false, &s("sip:x@baz.net"), &s(""), Some(&re)).unwrap());
        assert!(chk(Fm, &s("sip:alice@a.com"), &s("sip:*@?.com")));
        assert!(!chk(Fm, &s("sip:alice@ab.com"), &s("sip:*@?.com")));
        assert!(check_one(And, false, &s("1"), &s("1"), None).is_err());
        // different types never match
        assert!(check_one(Eq, false, &s("5"), &i(5), None).is_err());
    }

    #[test]
    fn fnmatch_forms() {
        assert!(fnmatch("*", ""));
        assert!(fnmatch("a*b*c", "axxbyyc"));
        assert!(!fnmatch("a*b*c", "axxbyy"));
        assert!(fnmatch("[a-c]x", "bx") && !fnmatch("[a-c]x", "dx"));
        assert!(fnmatch("[!a-c]x", "dx") && !fnmatch("[^a-c]x", "ax"));
        assert!(fnmatch("\\*", "*") && !fnmatch("\\*", "a"));
        assert!(fnmatch("[", "["));
        assert!(fnmatch("0049*", "00491234"));
    }

    #[test]
    fn arithmetic() {
        use ArithOp::*;
        assert_eq!(arith(Add, 2, 3), 5);
        assert_eq!(arith(Sub, 2, 3), -1);
        assert_eq!(arith(Mul, 4, 3), 12);
        assert_eq!(arith(Div, 7, 2), 3);
        assert_eq!(arith(Div, 7, 0), 0);
        assert_eq!(arith(Mod, 7, 4), 3);
        assert_eq!(arith(Mod, 7, 0), 0);
        assert_eq!(arith(And, 6, 3), 2);
        assert_eq!(arith(Or, 6, 3), 7);
        assert_eq!(arith(Xor, 6, 3), 5);
        assert_eq!(arith(Not, 0, 0), -1);
    }

    fn sub(expr: &str, text: &str) -> Option<String> {
        let st = parse::subst(expr).unwrap();
        st.apply(text, &mut |p| format!("<{}>", p.text))
    }

    #[test]
    fn subst_every_form() {
        // back references and a PV
        assert_eq!(
            sub("/(.*)@(.*)/\\1@$rd/", "alice@old.net").as_deref(),
            Some("alice@<$rd>")
        );
        assert_eq!(
            sub("/^([a-z]+)-([0-9]+)$/\\2-\\1 (\\0)/", "ab-12").as_deref(),
            Some("12-ab (ab-12)")
        );
        // no match
        assert_eq!(sub("/x/y/", "abc"), None);
        // first match only, then every match with g
        assert_eq!(sub("/a/X/", "banana").as_deref(), Some("bXnana"));
        assert_eq!(sub("/a/X/g", "banana").as_deref(), Some("bXnXnX"));
        // i: ignore case
        assert_eq!(sub("/A/x/gi", "aAa").as_deref(), Some("xxx"));
        assert_eq!(sub("/A/x/g", "aAa").as_deref(), Some("axa"));
        // anchored with g replaces once
        assert_eq!(sub("/^a/x/g", "aaa").as_deref(), Some("xaa"));
        // escapes, another separator, $$ and a literal separator
        assert_eq!(sub("#a#\\#\\t$$#", "a").as_deref(), Some("#\t$"));
        assert_eq!(sub("/a\\/b/c/", "xa/b").as_deref(), Some("xc"));
        // empty matches with g
        assert_eq!(sub("/x*/-/g", "ab").as_deref(), Some("-a-b-"));
        // an unmatched group gives nothing
        assert_eq!(sub("/(a)|(b)/[\\2]/", "a").as_deref(), Some("[]"));
    }
}
