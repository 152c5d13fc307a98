//! The preprocessor (an extension: OpenSER 1.2 has none; the syntax is Kamailio's).
//!
//! Directives are lines whose first non-blank characters are `#!`:
//! `#!define NAME [value]` (value continued over lines ending in `\`), `#!trydef`,
//! `#!redefine`, `#!undef`, `#!ifdef NAME`, `#!ifndef NAME`, `#!else`, `#!endif`,
//! `#!subst "/pattern/replacement/flags"`. `#!KAMAILIO`, `#!OPENSER`, `#!SER`,
//! `#!MAXCOMPAT`, `#!ALL` and unknown `#!words` are comments.
//!
//! The output text has exactly the lines of the input (directive lines and lines in
//! false `#!ifdef` branches become empty), so positions stay valid. Defined names are
//! replaced as tokens after lexing (`expand`), and substitutions are applied to string
//! tokens that follow the `#!subst` line.
//!
//! `#!subst` patterns are POSIX extended regular expressions (the core's `re`); the
//! replacement may hold `\\N` back-references (`\\0` the whole match, `\\1`..`\\9` the
//! groups); flags `g` (every match, not only the first) and `i` (ignore case). A bad
//! pattern is a start-up error at the directive's position. Directives are recognised
//! inside `/* */` comments too.

use super::error::{CfgError, Span};
use super::lex::{Tok, Token, lex_at};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Define {
    pub body: String,
    pub span: Span,
}

/// A `#!subst` rule (applies to string tokens after `line`).
#[derive(Clone)]
pub struct Subst {
    pub line: u32,
    /// The compiled pattern (shared: `PpOutput` is cloned by includes).
    pub re: std::rc::Rc<crate::re::Regex>,
    /// The replacement: literal text and back-references.
    pub repl: Vec<ReplPart>,
    pub global: bool,
    pub icase: bool,
}

/// A piece of a `#!subst` replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplPart {
    Text(String),
    /// `\N`: group N of the match (0 = the whole match).
    Group(usize),
}

impl std::fmt::Debug for Subst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subst")
            .field("line", &self.line)
            .field("pattern", &self.re.as_str())
            .field("repl", &self.repl)
            .field("global", &self.global)
            .field("icase", &self.icase)
            .finish()
    }
}

impl PartialEq for Subst {
    fn eq(&self, o: &Subst) -> bool {
        self.line == o.line
            && self.re.as_str() == o.re.as_str()
            && self.repl == o.repl
            && self.global == o.global
            && self.icase == o.icase
    }
}

impl Eq for Subst {}

#[derive(Debug, Default)]
pub struct PpOutput {
    pub text: String,
    pub defines: HashMap<String, Define>,
    pub substs: Vec<Subst>,
    pub errors: Vec<CfgError>,
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// Run the preprocessor over `text`. `predefined` are names defined before the first
/// line (for a `-A`-style command-line option).
pub fn preprocess(file: u16, text: &str, predefined: &[(String, String)]) -> PpOutput {
    let mut out = PpOutput::default();
    for (k, v) in predefined {
        out.defines.insert(
            k.clone(),
            Define {
                body: v.clone(),
                span: Span::new(file, 0, 0),
            },
        );
    }
    // (active, else_seen, parent_active, span)
    let mut stack: Vec<(bool, bool, bool, Span)> = Vec::new();
    let lines: Vec<&str> = text.split('\n').collect();
    let mut k = 0usize;
    let nlines = lines.len();
    while k < nlines {
        let line = lines[k];
        let line_no = (k + 1) as u32;
        let active = stack.last().is_none_or(|t| t.0);
        let trimmed = line.trim_start();
        let indent = (line.chars().count() - trimmed.chars().count()) as u32;
        let span = Span::new(file, line_no, indent + 1);
        if !trimmed.starts_with("#!") {
            if active {
                out.text.push_str(line);
            }
            k += 1;
            if k < nlines {
                out.text.push('\n');
            }
            continue;
        }
        // collect continuation lines for defines
        let mut full = trimmed.trim_end_matches('\r').to_string();
        let mut consumed = 1;
        while full.ends_with('\\') && k + consumed < nlines {
            full.pop();
            full.push(' ');
            full.push_str(lines[k + consumed].trim_end_matches('\r').trim());
            consumed += 1;
        }
        let body = &full[2..];
        let word_end = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        let word = &body[..word_end];
        let rest = body[word_end..].trim();
        let arg_name = rest.split_whitespace().next().unwrap_or("");
        match word {
            "ifdef" | "ifndef" => {
                let cond = if is_ident(arg_name) {
                    out.defines.contains_key(arg_name) == (word == "ifdef")
                } else {
                    if active {
                        out.errors.push(CfgError {
                            span,
                            msg: format!("`#!{}`: expected a name, found `{}`", word, rest),
                        });
                    }
                    false
                };
                stack.push((active && cond, false, active, span));
            }
            "else" => match stack.last_mut() {
                Some(top) if !top.1 => {
                    top.1 = true;
                    top.0 = top.2 && !top.0;
                }
                Some(_) => out.errors.push(CfgError {
                    span,
                    msg: "second `#!else` for the same `#!ifdef`".into(),
                }),
                None => out.errors.push(CfgError {
                    span,
                    msg: "`#!else` without `#!ifdef`/`#!ifndef`".into(),
                }),
            },
            "endif" if stack.pop().is_none() => {
                out.errors.push(CfgError {
                    span,
                    msg: "`#!endif` without `#!ifdef`/`#!ifndef`".into(),
                });
            }
            "define" | "trydef" | "redefine" if active => {
                let name_end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
                let name = &rest[..name_end];
                let value = rest[name_end..].trim();
                if !is_ident(name) {
                    out.errors.push(CfgError {
                        span,
                        msg: format!(
                            "`#!{}`: expected a name, found `{}`",
                            word,
                            if name.is_empty() { "end of line" } else { name }
                        ),
                    });
                } else if word == "define" && out.defines.contains_key(name) {
                    out.errors.push(CfgError {
                        span,
                        msg: format!("`{}` is already defined (use `#!redefine`)", name),
                    });
                } else if !(word == "trydef" && out.defines.contains_key(name)) {
                    out.defines.insert(
                        name.to_string(),
                        Define {
                            body: value.to_string(),
                            span,
                        },
                    );
                }
            }
            "undef" if active => {
                out.defines.remove(arg_name);
            }
            "subst" if active => match parse_subst(rest, line_no) {
                Ok(s) => out.substs.push(s),
                Err(msg) => out.errors.push(CfgError { span, msg }),
            },
            _ => {}
        }
        for _ in 0..consumed {
            k += 1;
            if k < nlines {
                out.text.push('\n');
            }
        }
    }
    for (_, _, _, span) in stack {
        out.errors.push(CfgError {
            span,
            msg: "`#!ifdef`/`#!ifndef` without `#!endif` before end of file".into(),
        });
    }
    out
}

fn parse_subst(rest: &str, line: u32) -> Result<Subst, String> {
    let bad = || "`#!subst`: expected \"/pattern/replacement/flags\"".to_string();
    let inner = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or_else(bad)?;
    let mut chars = inner.chars();
    let delim = chars.next().ok_or_else(bad)?;
    // split into 3 parts on unescaped delimiters
    let mut parts: Vec<String> = vec![String::new()];
    let mut esc = false;
    for c in chars {
        if esc {
            if c != delim {
                parts.last_mut().ok_or_else(bad)?.push('\\');
            }
            parts.last_mut().ok_or_else(bad)?.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == delim {
            parts.push(String::new());
        } else {
            parts.last_mut().ok_or_else(bad)?.push(c);
        }
    }
    if parts.len() != 3 {
        return Err(bad());
    }
    if parts[0].is_empty() {
        return Err("`#!subst`: empty pattern".into());
    }
    let mut global = false;
    let mut icase = false;
    for f in parts[2].chars() {
        match f {
            'g' => global = true,
            'i' => icase = true,
            _ => return Err(format!("`#!subst`: unknown flag `{}`", f)),
        }
    }
    let re =
        crate::re::Regex::new(&parts[0], icase, false).map_err(|e| format!("`#!subst`: {e}"))?;
    let groups = parts[0].bytes().filter(|&b| b == b'(').count();
    let mut repl = Vec::new();
    let mut lit = String::new();
    let mut it = parts[1].chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some(n) if n.is_ascii_digit() => {
                    let g = (n as u8 - b'0') as usize;
                    if g > groups {
                        return Err(format!(
                            "`#!subst`: back-reference `\\{g}` but the pattern has {groups} group(s)"
                        ));
                    }
                    if !lit.is_empty() {
                        repl.push(ReplPart::Text(std::mem::take(&mut lit)));
                    }
                    repl.push(ReplPart::Group(g));
                }
                Some(n) => lit.push(n),
                None => lit.push('\\'),
            }
        } else {
            lit.push(c);
        }
    }
    if !lit.is_empty() {
        repl.push(ReplPart::Text(lit));
    }
    Ok(Subst {
        line,
        re: std::rc::Rc::new(re),
        repl,
        global,
        icase,
    })
}

impl Subst {
    /// Apply to one string: the first match (every match with `g`) replaced.
    pub fn apply(&self, input: &str) -> String {
        let anchored = self.re.as_str().starts_with('^');
        let mut out = String::with_capacity(input.len());
        let mut pos = 0;
        while pos <= input.len() {
            let rest = &input[pos..];
            let Some(caps) = self.re.captures(rest) else {
                break;
            };
            let Some(Some((a, b))) = caps.first().copied() else {
                break;
            };
            out.push_str(&rest[..a]);
            for part in &self.repl {
                match part {
                    ReplPart::Text(t) => out.push_str(t),
                    ReplPart::Group(g) => {
                        if let Some(Some((x, y))) = caps.get(*g) {
                            out.push_str(&rest[*x..*y]);
                        }
                    }
                }
            }
            pos += b;
            if b == a {
                // an empty match: copy one character and go on past it
                match input[pos..].chars().next() {
                    Some(c) => {
                        out.push(c);
                        pos += c.len_utf8();
                    }
                    None => {
                        pos = input.len() + 1;
                        break;
                    }
                }
            }
            // `^` anchors at the start of the string: a later match cannot exist
            if !self.global || anchored {
                break;
            }
        }
        if pos <= input.len() {
            out.push_str(&input[pos..]);
        }
        out
    }
}

const MAX_EXPAND_DEPTH: u32 = 16;
const MAX_TOKENS: usize = 2_000_000;

/// Replace defined names in `toks` by their lexed bodies (recursively), and apply the
/// substitutions to string tokens. Expanded tokens take the position of the name.
pub fn expand(toks: Vec<Token>, pp: &PpOutput, errors: &mut Vec<CfgError>) -> Vec<Token> {
    if pp.defines.is_empty() && pp.substs.is_empty() {
        return toks;
    }
    let mut cache: HashMap<String, Vec<Token>> = HashMap::new();
    let mut out = Vec::with_capacity(toks.len());
    let mut stack: Vec<String> = Vec::new();
    for t in toks {
        expand_one(t, pp, errors, &mut cache, &mut out, &mut stack, 0, None);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn expand_one(
    mut t: Token,
    pp: &PpOutput,
    errors: &mut Vec<CfgError>,
    cache: &mut HashMap<String, Vec<Token>>,
    out: &mut Vec<Token>,
    stack: &mut Vec<String>,
    depth: u32,
    at: Option<(Span, bool)>,
) {
    if out.len() > MAX_TOKENS {
        return;
    }
    if let Some((span, space)) = at {
        t.span = span;
        t.space_before = space || t.space_before;
    }
    if let Tok::Ident(name) = &t.tok
        && let Some(def) = pp.defines.get(name)
        && !stack.contains(name)
    {
        if depth >= MAX_EXPAND_DEPTH {
            errors.push(CfgError {
                span: t.span,
                msg: format!("`{}`: defines nested too deeply", name),
            });
            return;
        }
        let name = name.clone();
        if out.len() + cache.get(&name).map_or(0, Vec::len) > MAX_TOKENS {
            errors.push(CfgError {
                span: t.span,
                msg: "too many tokens after expanding defines".into(),
            });
            return;
        }
        let body = cache.entry(name.clone()).or_insert_with(|| {
            let (mut bt, be) = lex_at(t.span.file, &def.body, def.span.line, def.span.col);
            for e in be {
                errors.push(CfgError {
                    span: t.span,
                    msg: format!("in the value of `{}`: {}", name, e.msg),
                });
            }
            bt.pop(); // Eof
            bt
        });
        let body = body.clone();
        stack.push(name);
        let mut first = true;
        for bt in body {
            let space = if first {
                t.space_before
            } else {
                bt.space_before
            };
            first = false;
            expand_one(
                bt,
                pp,
                errors,
                cache,
                out,
                stack,
                depth + 1,
                Some((t.span, space)),
            );
        }
        stack.pop();
        return;
    }
    if let Tok::Str(s) = &mut t.tok {
        for sub in &pp.substs {
            if t.span.line > sub.line {
                *s = sub.apply(s);
            }
        }
    }
    out.push(t);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cfg::lex::lex;

    #[test]
    fn ifdef_and_lines() {
        let src = "#!define A\n#!ifdef A\na\n#!else\nb\n#!endif\n#!ifndef A\nc\n#!endif\nd";
        let o = preprocess(0, src, &[]);
        assert!(o.errors.is_empty(), "{:?}", o.errors);
        assert_eq!(o.text, "\n\na\n\n\n\n\n\n\nd");
        assert_eq!(o.text.split('\n').count(), src.split('\n').count());
    }

    #[test]
    fn nested_ifdef() {
        let src = "#!ifdef X\n#!ifdef Y\na\n#!else\nb\n#!endif\n#!else\nc\n#!endif";
        let o = preprocess(0, src, &[("X".into(), String::new())]);
        assert_eq!(o.text.trim(), "b");
        let o = preprocess(0, src, &[]);
        assert_eq!(o.text.trim(), "c");
    }

    #[test]
    fn errors() {
        assert_eq!(preprocess(0, "#!endif", &[]).errors.len(), 1);
        assert_eq!(preprocess(0, "#!else", &[]).errors.len(), 1);
        assert_eq!(
            preprocess(0, "x\n  #!ifdef A\n", &[]).errors[0].span,
            Span::new(0, 2, 3)
        );
        assert_eq!(
            preprocess(0, "#!define A 1\n#!define A 2", &[])
                .errors
                .len(),
            1
        );
        assert_eq!(preprocess(0, "#!subst \"/a[/b/\"", &[]).errors.len(), 1);
        assert_eq!(preprocess(0, "#!define 1x", &[]).errors.len(), 1);
    }

    #[test]
    fn define_expansion() {
        let src = "#!define N 12\n#!define TWO N \\\n  N\nx = TWO;";
        let o = preprocess(0, src, &[]);
        assert!(o.errors.is_empty());
        let (t, e) = lex(0, &o.text);
        assert!(e.is_empty());
        let mut errs = Vec::new();
        let t = expand(t, &o, &mut errs);
        let kinds: Vec<Tok> = t.iter().map(|t| t.tok.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                Tok::Ident("x".into()),
                Tok::Assign,
                Tok::Int(12),
                Tok::Int(12),
                Tok::Semi,
                Tok::Eof
            ]
        );
        assert_eq!(t[2].span, Span::new(0, 4, 5));
        // self reference does not loop
        let o = preprocess(0, "#!define A A B\n#!define B A\nA", &[]);
        let (t, _) = lex(0, &o.text);
        let mut errs = Vec::new();
        let t = expand(t, &o, &mut errs);
        assert!(t.len() < 10);
    }

    #[test]
    fn subst() {
        let o = preprocess(0, "\"PW\"\n#!subst \"/PW/secret/\"\n\"x PW PW\" PW", &[]);
        assert!(o.errors.is_empty(), "{:?}", o.errors);
        let (t, _) = lex(0, &o.text);
        let mut errs = Vec::new();
        let t = expand(t, &o, &mut errs);
        assert_eq!(t[0].tok, Tok::Str("PW".into()));
        assert_eq!(t[1].tok, Tok::Str("x secret PW".into()));
        assert_eq!(t[2].tok, Tok::Ident("PW".into()));
        let s = parse_subst("\"/a.c/X/gi\"", 1).unwrap();
        assert_eq!(s.apply("abc AXC abd"), "X X abd");
        // regular expressions, back-references, flags
        let s = parse_subst("\"/([0-9]+)\\.([0-9]+)/\\2-\\1/g\"", 1).unwrap();
        assert_eq!(s.apply("v 1.2 and 33.44"), "v 2-1 and 44-33");
        let s = parse_subst("\"/([0-9]+)\\.([0-9]+)/\\2-\\1/\"", 1).unwrap();
        assert_eq!(s.apply("v 1.2 and 33.44"), "v 2-1 and 33.44");
        let s = parse_subst("\"/^sip:(.*)@HOST$/<\\0|\\1>/i\"", 1).unwrap();
        assert_eq!(s.apply("sip:bob@host"), "<sip:bob@host|bob>");
        assert_eq!(s.apply("x sip:bob@host"), "x sip:bob@host");
        let s = parse_subst("\"/x*/-/g\"", 1).unwrap();
        assert_eq!(s.apply("ab"), "-a-b-");
        assert!(parse_subst("\"/a(/b/\"", 1).is_err());
        assert!(parse_subst("\"/a/\\1/\"", 1).is_err());
        assert!(parse_subst("\"/a/b/q\"", 1).is_err());
    }
}
