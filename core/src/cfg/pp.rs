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
//! Limitation: `#!subst` patterns support literal text, `\x` escapes and `.` (any
//! character) only — POSIX regex comes later; other metacharacters are an error.
//! Directives are recognised inside `/* */` comments too.

use super::error::{CfgError, Span};
use super::lex::{Tok, Token, lex_at};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Define {
    pub body: String,
    pub span: Span,
}

/// A `#!subst` rule (applies to string tokens after `line`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subst {
    pub line: u32,
    /// pattern: `Some(c)` a literal char, `None` any char (`.`)
    pub pattern: Vec<Option<char>>,
    pub repl: String,
    pub global: bool,
    pub icase: bool,
}

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
    let mut pattern = Vec::new();
    let mut it = parts[0].chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => match it.next() {
                Some(n) if !n.is_ascii_alphanumeric() => pattern.push(Some(n)),
                _ => {
                    return Err(
                        "`#!subst`: only literal text, `\\` escapes of punctuation and `.` are supported in patterns (no POSIX regex yet)".into(),
                    );
                }
            },
            '.' => pattern.push(None),
            '*' | '+' | '?' | '[' | ']' | '(' | ')' | '{' | '}' | '|' | '^' | '$' => {
                return Err(format!(
                    "`#!subst`: regex operator `{}` is not supported (only literal text and `.`)",
                    c
                ));
            }
            _ => pattern.push(Some(c)),
        }
    }
    if pattern.is_empty() {
        return Err("`#!subst`: empty pattern".into());
    }
    let mut repl = String::new();
    let mut it = parts[1].chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some(n) if n.is_ascii_digit() => {
                    return Err("`#!subst`: back-references are not supported".into());
                }
                Some(n) => repl.push(n),
                None => repl.push('\\'),
            }
        } else {
            repl.push(c);
        }
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
    Ok(Subst {
        line,
        pattern,
        repl,
        global,
        icase,
    })
}

impl Subst {
    fn matches_at(&self, s: &[char], at: usize) -> bool {
        if at + self.pattern.len() > s.len() {
            return false;
        }
        self.pattern.iter().enumerate().all(|(k, p)| match p {
            None => true,
            Some(c) if self.icase => c.to_lowercase().eq(s[at + k].to_lowercase()),
            Some(c) => *c == s[at + k],
        })
    }

    /// Apply to one string.
    pub fn apply(&self, input: &str) -> String {
        let s: Vec<char> = input.chars().collect();
        let mut out = String::with_capacity(input.len());
        let mut i = 0;
        let mut done = false;
        while i < s.len() {
            if !done && self.matches_at(&s, i) {
                out.push_str(&self.repl);
                i += self.pattern.len();
                done = !self.global;
            } else {
                out.push(s[i]);
                i += 1;
            }
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
        assert_eq!(preprocess(0, "#!subst \"/a*/b/\"", &[]).errors.len(), 1);
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
    }
}
