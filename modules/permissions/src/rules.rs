//! 1.2's permission rule files (`permissions.allow`, `register.deny`, …), in the
//! syntax of tcpd's hosts.allow:
//!
//! ```text
//! from_list [EXCEPT from_list] : req_uri_list [EXCEPT req_uri_list]
//! ```
//!
//! Lists are comma separated, each element a POSIX extended regular expression
//! (case-insensitive, optionally in double quotes); `ALL` matches anything; `#`
//! outside quotes starts a comment. A line that is not empty or a comment must have
//! both sides and only valid expressions: 1.2 logged such a line and skipped it, here
//! it is an error naming `file:line`, so a typo cannot silently open or close a
//! gateway. A missing file is an empty one (1.2: rules switched off), with a warning.

use openser_core::re::Regex;

/// One element list, or `ALL` (`None`).
type Exprs = Option<Vec<Regex>>;

/// One rule line.
pub struct Rule {
    left: Exprs,
    left_except: Vec<Regex>,
    right: Exprs,
    right_except: Vec<Regex>,
}

fn any_match(list: &[Regex], s: &str) -> bool {
    list.iter().any(|r| r.is_match(s))
}

impl Rule {
    fn matches(&self, left: &str, right: &str) -> bool {
        self.left.as_ref().is_none_or(|l| any_match(l, left))
            && !any_match(&self.left_except, left)
            && self.right.as_ref().is_none_or(|r| any_match(r, right))
            && !any_match(&self.right_except, right)
    }
}

/// The rules of one file, first match wins.
#[derive(Default)]
pub struct Rules {
    pub path: String,
    pub rules: Vec<Rule>,
}

impl Rules {
    /// Whether a rule matches the pair.
    pub fn search(&self, left: &str, right: &str) -> bool {
        self.rules.iter().any(|r| r.matches(left, right))
    }
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Split a list at commas outside quotes; each element loses surrounding blanks
/// and one pair of quotes.
fn parse_list(s: &str) -> Result<Vec<Regex>, String> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    let b = s.as_bytes();
    for i in 0..=b.len() {
        let c = b.get(i).copied();
        match c {
            Some(b'"') => quoted = !quoted,
            Some(b',') if !quoted => {}
            Some(_) => continue,
            None => {}
        }
        if c == Some(b'"') {
            continue;
        }
        let word = s[start..i].trim_matches([' ', '\t']);
        let word = word.strip_prefix('"').unwrap_or(word);
        let word = word.strip_suffix('"').unwrap_or(word);
        if word.is_empty() {
            return Err("empty expression in a list".into());
        }
        let re = Regex::new(word, true, true)
            .map_err(|e| format!("bad regular expression \"{word}\": {e}"))?;
        out.push(re);
        start = i + 1;
    }
    Ok(out)
}

/// One side: `ALL` or a list, optionally followed by ` EXCEPT ` and a list.
fn parse_side(s: &str) -> Result<(Exprs, Vec<Regex>), String> {
    let (main, except) = match s.find(" EXCEPT ") {
        Some(i) => (&s[..i], Some(&s[i + 8..])),
        None => (s, None),
    };
    let except = match except {
        Some(e) => parse_list(e)?,
        None => Vec::new(),
    };
    let main = main.trim();
    if main.is_empty() {
        return Err("missing expression".into());
    }
    if main == "ALL" {
        return Ok((None, except));
    }
    Ok((Some(parse_list(main)?), except))
}

/// One line: `None` for a blank or comment line.
fn parse_line(line: &str) -> Result<Option<Rule>, String> {
    let mut quoted = false;
    let mut colon = None;
    let mut end = line.len();
    let mut content = false;
    for (i, c) in line.bytes().enumerate() {
        match c {
            b'"' => {
                quoted = !quoted;
                content = true;
            }
            b':' if !quoted => {
                colon = Some(i);
                content = true;
            }
            b'#' if !quoted => {
                end = i;
                break;
            }
            b'\r' | b'\n' => {
                end = i;
                break;
            }
            b' ' | b'\t' => {}
            _ => content = true,
        }
    }
    if !content {
        return Ok(None);
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    let Some(colon) = colon else {
        return Err("missing ':' between the two sides of the rule".into());
    };
    let (l, r) = (&line[..colon], &line[colon + 1..end]);
    let (left, left_except) = parse_side(l).map_err(|e| format!("left side: {e}"))?;
    let (right, right_except) = parse_side(r).map_err(|e| format!("right side: {e}"))?;
    Ok(Some(Rule {
        left,
        left_except,
        right,
        right_except,
    }))
}

/// Parse a whole file's text; errors read `path:line: what`.
pub fn parse(text: &str, path: &str) -> Result<Rules, String> {
    let mut rules = Vec::new();
    for (n, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some(r)) => rules.push(r),
            Ok(None) => {}
            Err(e) => return Err(format!("{path}:{}: {e}", n + 1)),
        }
    }
    Ok(Rules {
        path: path.to_string(),
        rules,
    })
}

/// Read and parse `path`; a missing file is an empty rule set (with a warning).
pub fn load(path: &str) -> Result<Rules, String> {
    match std::fs::read(path) {
        Ok(b) => parse(&String::from_utf8_lossy(&b), path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            openser_core::log_warn!("file not found: {path}");
            Ok(Rules {
                path: path.to_string(),
                rules: Vec::new(),
            })
        }
        Err(e) => Err(format!("{path}: {e}")),
    }
}

/// `name` as 1.2 finds it: as given when it contains a `/`, else in the directory of
/// the configuration file.
pub fn pathname(name: &str, cfg_file: Option<&str>) -> String {
    if name.contains('/') {
        return name.to_string();
    }
    match cfg_file.and_then(|c| c.rfind('/').map(|i| &c[..=i])) {
        Some(dir) => format!("{dir}{name}"),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# comment
ALL : "^sip:361[0-9]*@abc\.com$" EXCEPT "^sip:361[0-9]*3@abc\.com$", "^sip:361[0-9]*4@abc\.com$"

"^sip:3677[0-9]*@abc\.com$" :  "^sip:361[0-9]*@abc\.com$"   # trailing comment
"^sip:gw@" EXCEPT "^sip:gw@bad" : ALL
"#;

    #[test]
    fn sample_file() {
        let r = parse(SAMPLE, "p.allow").unwrap();
        assert_eq!(r.rules.len(), 3);
        assert!(r.search("sip:x@y", "sip:3610@abc.com"));
        assert!(r.search("sip:x@y", "SIP:3610@ABC.COM"), "case-insensitive");
        assert!(!r.search("sip:x@y", "sip:3613@abc.com"), "EXCEPT");
        assert!(!r.search("sip:x@y", "sip:3614@abc.com"), "second EXCEPT");
        assert!(r.search("sip:gw@h", "sip:anything@else"));
        assert!(!r.search("sip:gw@bad.net", "sip:anything@else"));
        assert!(!r.search("sip:x@y", "sip:999@abc.com"));
    }

    #[test]
    fn all_all() {
        let r = parse("ALL : ALL\n", "f").unwrap();
        assert!(r.search("", ""));
        assert!(parse("\n# only\n   \n", "f").unwrap().is_empty());
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        for (text, what) in [
            ("ALL : ALL\nALL ALL\n", "f.allow:2: missing ':'"),
            (
                "\"^sip:(\" : ALL\n",
                "f.allow:1: left side: bad regular expression",
            ),
            ("ALL : \"abc\n", "f.allow:1: unterminated quote"),
            ("ALL :\n", "f.allow:1: right side: missing expression"),
            ("ALL : a,,b\n", "f.allow:1: right side: empty expression"),
            (": ALL\n", "f.allow:1: left side: missing expression"),
        ] {
            let e = parse(text, "f.allow")
                .err()
                .unwrap_or_else(|| panic!("{text:?}"));
            assert!(e.starts_with(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn paths_relative_to_the_config() {
        assert_eq!(
            pathname("p.allow", Some("/etc/openser/openser.cfg")),
            "/etc/openser/p.allow"
        );
        assert_eq!(pathname("p.allow", Some("openser.cfg")), "p.allow");
        assert_eq!(pathname("/x/p.allow", Some("/etc/o.cfg")), "/x/p.allow");
        assert_eq!(pathname("d/p.allow", None), "d/p.allow");
    }
}
