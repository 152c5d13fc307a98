//! The lexer: text (already preprocessed) to tokens with positions.
//!
//! Comments: `#` to end of line, `/* */` nesting. Backslash-newline is whitespace.
//! Strings: `"..."` with `\n \r \a \t \" \\ \xH[H] \ooo` (2-3 octal digits; a single
//! digit `\N` and unknown escapes are kept literally) and backslash-newline removed;
//! `'...'` raw. Numbers: decimal, `0x` hex, leading-0 octal. IPv4 and IPv6 literals.
//! `$...` is lexed as one pseudo-variable token (see `pv.rs`).

use super::error::{CfgError, Span};
use super::pv::{PvSpec, parse_pv};
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Ident(String),
    Int(i64),
    Str(String),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    Pv(Box<PvSpec>),
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBrack,
    RBrack,
    Semi,
    Comma,
    Colon,
    Dot,
    Assign,
    Eq,
    Ne,
    Match,
    NoMatch,
    Gt,
    Lt,
    Ge,
    Le,
    Not,
    AndAnd,
    OrOr,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Amp,
    Pipe,
    Caret,
    Tilde,
    PlusEq,
    MinusEq,
    StarEq,
    SlashEq,
    PercentEq,
    AmpEq,
    PipeEq,
    CaretEq,
    Eof,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
    /// whitespace or a comment precedes this token (used to glue host names)
    pub space_before: bool,
}

impl Tok {
    /// How the token is shown in messages (`found ...`).
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{}`", s),
            Tok::Int(n) => format!("number `{}`", n),
            Tok::Str(s) => {
                let mut t: String = s.chars().take(30).collect();
                if s.chars().count() > 30 {
                    t.push_str("...");
                }
                format!("string \"{}\"", t.escape_debug())
            }
            Tok::Ipv4(a) => format!("address `{}`", a),
            Tok::Ipv6(a) => format!("address `{}`", a),
            Tok::Pv(p) => format!("`{}`", p.text),
            Tok::Eof => "end of file".into(),
            other => format!("`{}`", other.punct()),
        }
    }

    pub fn punct(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LBrack => "[",
            Tok::RBrack => "]",
            Tok::Semi => ";",
            Tok::Comma => ",",
            Tok::Colon => ":",
            Tok::Dot => ".",
            Tok::Assign => "=",
            Tok::Eq => "==",
            Tok::Ne => "!=",
            Tok::Match => "=~",
            Tok::NoMatch => "!~",
            Tok::Gt => ">",
            Tok::Lt => "<",
            Tok::Ge => ">=",
            Tok::Le => "<=",
            Tok::Not => "!",
            Tok::AndAnd => "&&",
            Tok::OrOr => "||",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::Amp => "&",
            Tok::Pipe => "|",
            Tok::Caret => "^",
            Tok::Tilde => "~",
            Tok::PlusEq => "+=",
            Tok::MinusEq => "-=",
            Tok::StarEq => "*=",
            Tok::SlashEq => "/=",
            Tok::PercentEq => "%=",
            Tok::AmpEq => "&=",
            Tok::PipeEq => "|=",
            Tok::CaretEq => "^=",
            _ => "?",
        }
    }
}

struct Lexer<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    line: u32,
    col: u32,
    file: u16,
    toks: Vec<Token>,
    errors: Vec<CfgError>,
    space: bool,
}

/// Tokenize `text`. Always ends with an `Eof` token. Errors are collected; the bad
/// input is skipped.
pub fn lex(file: u16, text: &str) -> (Vec<Token>, Vec<CfgError>) {
    lex_at(file, text, 1, 1)
}

/// As `lex`, with the first character at `line:col`.
pub fn lex_at(file: u16, text: &str, line: u32, col: u32) -> (Vec<Token>, Vec<CfgError>) {
    let mut l = Lexer {
        s: text,
        b: text.as_bytes(),
        i: 0,
        line,
        col,
        file,
        toks: Vec::new(),
        errors: Vec::new(),
        space: true,
    };
    l.run();
    let span = l.span();
    l.toks.push(Token {
        tok: Tok::Eof,
        span,
        space_before: true,
    });
    (l.toks, l.errors)
}

impl<'a> Lexer<'a> {
    fn span(&self) -> Span {
        Span::new(self.file, self.line, self.col)
    }

    fn peek(&self, k: usize) -> u8 {
        self.b.get(self.i + k).copied().unwrap_or(0)
    }

    /// Advance one byte, keeping line/col (columns count characters).
    fn bump(&mut self) {
        if let Some(&c) = self.b.get(self.i) {
            self.i += 1;
            if c == b'\n' {
                self.line += 1;
                self.col = 1;
            } else if c & 0xC0 != 0x80 {
                self.col += 1;
            }
        }
    }

    fn bump_n(&mut self, n: usize) {
        for _ in 0..n {
            self.bump();
        }
    }

    fn err(&mut self, span: Span, msg: impl Into<String>) {
        self.errors.push(CfgError {
            span,
            msg: msg.into(),
        });
    }

    fn push(&mut self, tok: Tok, span: Span) {
        self.toks.push(Token {
            tok,
            span,
            space_before: self.space,
        });
        self.space = false;
    }

    fn run(&mut self) {
        while self.i < self.b.len() {
            let c = self.b[self.i];
            let start = self.span();
            match c {
                b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c => {
                    self.bump();
                    self.space = true;
                }
                b'#' => {
                    while self.i < self.b.len() && self.b[self.i] != b'\n' {
                        self.bump();
                    }
                    self.space = true;
                }
                b'/' if self.peek(1) == b'*' => self.block_comment(start),
                b'\\' if self.peek(1) == b'\n' => {
                    self.bump_n(2);
                    self.space = true;
                }
                b'\\' if self.peek(1) == b'\r' && self.peek(2) == b'\n' => {
                    self.bump_n(3);
                    self.space = true;
                }
                b'"' => self.dq_string(start),
                b'\'' => self.sq_string(start),
                b'$' => self.pv(start),
                _ => {
                    if self.try_ipv6(start) {
                        continue;
                    }
                    if c.is_ascii_digit() {
                        self.number(start);
                    } else if c.is_ascii_alphabetic() || c == b'_' {
                        let st = self.i;
                        while self.i < self.b.len()
                            && (self.b[self.i].is_ascii_alphanumeric() || self.b[self.i] == b'_')
                        {
                            self.bump();
                        }
                        let id = self.s.get(st..self.i).unwrap_or("").to_string();
                        self.push(Tok::Ident(id), start);
                    } else {
                        self.punct(start);
                    }
                }
            }
        }
    }

    fn block_comment(&mut self, start: Span) {
        let mut depth = 0usize;
        loop {
            if self.i >= self.b.len() {
                self.err(
                    start,
                    "unterminated comment: expected `*/`, found end of file",
                );
                return;
            }
            if self.peek(0) == b'/' && self.peek(1) == b'*' {
                depth += 1;
                self.bump_n(2);
            } else if self.peek(0) == b'*' && self.peek(1) == b'/' {
                depth -= 1;
                self.bump_n(2);
                if depth == 0 {
                    self.space = true;
                    return;
                }
            } else {
                self.bump();
            }
        }
    }

    fn dq_string(&mut self, start: Span) {
        self.bump();
        let mut out: Vec<u8> = Vec::new();
        loop {
            if self.i >= self.b.len() {
                self.err(
                    start,
                    "unterminated string: expected `\"`, found end of file",
                );
                return;
            }
            let c = self.b[self.i];
            if c == b'"' {
                self.bump();
                break;
            }
            if c != b'\\' {
                out.push(c);
                self.bump();
                continue;
            }
            let n = self.peek(1);
            match n {
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b'a' => out.push(7),
                b't' => out.push(b'\t'),
                b'"' => out.push(b'"'),
                b'\\' => out.push(b'\\'),
                b'\n' => {}
                b'\r' if self.peek(2) == b'\n' => {
                    self.bump();
                }
                b'x' if self.peek(2).is_ascii_hexdigit() => {
                    let mut v = hexval(self.peek(2));
                    let mut len = 3;
                    if self.peek(3).is_ascii_hexdigit() {
                        v = v * 16 + hexval(self.peek(3));
                        len = 4;
                    }
                    out.push(v);
                    self.bump_n(len);
                    continue;
                }
                b'0'..=b'7' if (b'0'..=b'7').contains(&self.peek(2)) => {
                    let mut v: u32 = u32::from(n - b'0') * 8 + u32::from(self.peek(2) - b'0');
                    let mut len = 3;
                    if (b'0'..=b'7').contains(&self.peek(3)) {
                        v = v * 8 + u32::from(self.peek(3) - b'0');
                        len = 4;
                    }
                    out.push((v & 0xff) as u8);
                    self.bump_n(len);
                    continue;
                }
                0 if self.i + 1 >= self.b.len() => {
                    self.bump();
                    continue;
                }
                _ => {
                    // kept literally: `\1`, `\.`, `\d` (regex escapes survive)
                    out.push(b'\\');
                    self.bump();
                    continue;
                }
            }
            self.bump_n(2);
        }
        match String::from_utf8(out) {
            Ok(s) => self.push(Tok::Str(s), start),
            Err(e) => {
                let s = String::from_utf8_lossy(e.as_bytes()).into_owned();
                self.err(start, "string is not valid UTF-8 after escapes");
                self.push(Tok::Str(s), start);
            }
        }
    }

    fn sq_string(&mut self, start: Span) {
        self.bump();
        let st = self.i;
        while self.i < self.b.len() && self.b[self.i] != b'\'' {
            self.bump();
        }
        if self.i >= self.b.len() {
            self.err(
                start,
                "unterminated string: expected `'`, found end of file",
            );
            return;
        }
        let s = self.s.get(st..self.i).unwrap_or("").to_string();
        self.bump();
        self.push(Tok::Str(s), start);
    }

    fn pv(&mut self, start: Span) {
        let st = self.i;
        let rest = self.s.get(self.i..).unwrap_or("");
        match parse_pv(rest) {
            Ok((spec, n)) => {
                self.bump_n(n.max(1));
                self.push(Tok::Pv(Box::new(spec)), start);
            }
            Err(msg) => {
                self.err(start, msg);
                // skip the `$`, the name and a balanced `(...)` on the same line, and
                // stand in a placeholder so the parser does not report the same spot
                self.bump();
                while self.i < self.b.len()
                    && (self.b[self.i].is_ascii_alphanumeric() || self.b[self.i] == b'_')
                {
                    self.bump();
                }
                if self.peek(0) == b'(' {
                    let mut depth = 0usize;
                    while self.i < self.b.len() && self.b[self.i] != b'\n' {
                        match self.b[self.i] {
                            b'(' => depth += 1,
                            b')' => {
                                depth -= 1;
                                if depth == 0 {
                                    self.bump();
                                    break;
                                }
                            }
                            _ => {}
                        }
                        self.bump();
                    }
                }
                let text = self.s.get(st..self.i).unwrap_or("$").to_string();
                self.push(
                    Tok::Pv(Box::new(PvSpec {
                        name: String::new(),
                        param: None,
                        index: None,
                        trans: Vec::new(),
                        text,
                    })),
                    start,
                );
            }
        }
    }

    /// IPv6 literal: the longest run of hex digits, `:` and `.` that has at least two
    /// colons and parses as an IPv6 address.
    fn try_ipv6(&mut self, start: Span) -> bool {
        let c = self.b[self.i];
        if !(c.is_ascii_hexdigit() || c == b':') {
            return false;
        }
        let mut j = self.i;
        let mut colons = 0;
        while j < self.b.len()
            && (self.b[j].is_ascii_hexdigit() || self.b[j] == b':' || self.b[j] == b'.')
        {
            if self.b[j] == b':' {
                colons += 1;
            }
            j += 1;
        }
        if colons < 2
            || self
                .b
                .get(j)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            return false;
        }
        let run = self.s.get(self.i..j).unwrap_or("");
        match run.parse::<Ipv6Addr>() {
            Ok(a) => {
                self.bump_n(j - self.i);
                self.push(Tok::Ipv6(a), start);
                true
            }
            Err(_) => false,
        }
    }

    fn number(&mut self, start: Span) {
        // IPv4: d.d.d.d
        let mut j = self.i;
        let mut parts = 0;
        loop {
            let ds = j;
            while j < self.b.len() && self.b[j].is_ascii_digit() {
                j += 1;
            }
            if j == ds {
                break;
            }
            parts += 1;
            if parts == 4 || self.b.get(j) != Some(&b'.') {
                break;
            }
            j += 1;
        }
        if parts == 4 {
            let text = self.s.get(self.i..j).unwrap_or("");
            match text.parse::<Ipv4Addr>() {
                Ok(a) => {
                    self.bump_n(j - self.i);
                    self.push(Tok::Ipv4(a), start);
                }
                Err(_) => {
                    self.err(start, format!("bad IPv4 address `{}`", text));
                    self.bump_n(j - self.i);
                }
            }
            return;
        }
        let st = self.i;
        let (radix, digits_start) = if self.peek(0) == b'0' && matches!(self.peek(1), b'x' | b'X') {
            (16, st + 2)
        } else if self.peek(0) == b'0' && self.peek(1).is_ascii_digit() {
            (8, st + 1)
        } else {
            (10, st)
        };
        let mut j = digits_start;
        while j < self.b.len() && self.b[j].is_ascii_alphanumeric() {
            j += 1;
        }
        let digits = self.s.get(digits_start..j).unwrap_or("");
        let text = self.s.get(st..j).unwrap_or("").to_string();
        self.bump_n(j - st);
        match i64::from_str_radix(digits, radix) {
            Ok(v) if !digits.is_empty() && !digits.starts_with('+') => {
                self.push(Tok::Int(v), start)
            }
            _ => self.err(start, format!("bad number `{}`", text)),
        }
    }

    fn punct(&mut self, start: Span) {
        let c = self.b[self.i];
        let n = self.peek(1);
        let (tok, len) = match (c, n) {
            (b'(', _) => (Tok::LParen, 1),
            (b')', _) => (Tok::RParen, 1),
            (b'{', _) => (Tok::LBrace, 1),
            (b'}', _) => (Tok::RBrace, 1),
            (b'[', _) => (Tok::LBrack, 1),
            (b']', _) => (Tok::RBrack, 1),
            (b';', _) => (Tok::Semi, 1),
            (b',', _) => (Tok::Comma, 1),
            (b':', _) => (Tok::Colon, 1),
            (b'.', _) => (Tok::Dot, 1),
            (b'=', b'=') => (Tok::Eq, 2),
            (b'=', b'~') => (Tok::Match, 2),
            (b'=', _) => (Tok::Assign, 1),
            (b'!', b'=') => (Tok::Ne, 2),
            (b'!', b'~') => (Tok::NoMatch, 2),
            (b'!', _) => (Tok::Not, 1),
            (b'>', b'=') => (Tok::Ge, 2),
            (b'>', _) => (Tok::Gt, 1),
            (b'<', b'=') => (Tok::Le, 2),
            (b'<', _) => (Tok::Lt, 1),
            (b'&', b'&') => (Tok::AndAnd, 2),
            (b'&', b'=') => (Tok::AmpEq, 2),
            (b'&', _) => (Tok::Amp, 1),
            (b'|', b'|') => (Tok::OrOr, 2),
            (b'|', b'=') => (Tok::PipeEq, 2),
            (b'|', _) => (Tok::Pipe, 1),
            (b'+', b'=') => (Tok::PlusEq, 2),
            (b'+', _) => (Tok::Plus, 1),
            (b'-', b'=') => (Tok::MinusEq, 2),
            (b'-', _) => (Tok::Minus, 1),
            (b'*', b'=') => (Tok::StarEq, 2),
            (b'*', _) => (Tok::Star, 1),
            (b'/', b'=') => (Tok::SlashEq, 2),
            (b'/', _) => (Tok::Slash, 1),
            (b'%', b'=') => (Tok::PercentEq, 2),
            (b'%', _) => (Tok::Percent, 1),
            (b'^', b'=') => (Tok::CaretEq, 2),
            (b'^', _) => (Tok::Caret, 1),
            (b'~', _) => (Tok::Tilde, 1),
            _ => {
                let ch = self
                    .s
                    .get(self.i..)
                    .and_then(|r| r.chars().next())
                    .unwrap_or('?');
                self.err(
                    start,
                    format!("unexpected character `{}`", ch.escape_debug()),
                );
                self.bump();
                return;
            }
        };
        self.bump_n(len);
        self.push(tok, start);
    }
}

fn hexval(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        let (t, e) = lex(0, s);
        assert!(e.is_empty(), "{e:?}");
        t.into_iter()
            .map(|t| t.tok)
            .filter(|t| *t != Tok::Eof)
            .collect()
    }

    fn one_str(s: &str) -> String {
        match toks(s).as_slice() {
            [Tok::Str(x)] => x.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(
            toks("10 0x1F 017 0"),
            vec![Tok::Int(10), Tok::Int(31), Tok::Int(15), Tok::Int(0)]
        );
        assert_eq!(toks("1.2.3.4"), vec![Tok::Ipv4(Ipv4Addr::new(1, 2, 3, 4))]);
        assert_eq!(toks("::1"), vec![Tok::Ipv6(Ipv6Addr::LOCALHOST)]);
        assert!(matches!(toks("fe80::1").as_slice(), [Tok::Ipv6(_)]));
        assert!(lex(0, "99999999999999999999").1.len() == 1);
        assert!(lex(0, "09").1.len() == 1);
        assert!(lex(0, "0x").1.len() == 1);
        assert!(lex(0, "1.2.3.256").1.len() == 1);
        assert_eq!(
            toks("msg:len"),
            vec![
                Tok::Ident("msg".into()),
                Tok::Colon,
                Tok::Ident("len".into())
            ]
        );
        assert_eq!(
            toks("default:"),
            vec![Tok::Ident("default".into()), Tok::Colon]
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(one_str(r#""a\nb\r\t\a\"\\""#), "a\nb\r\t\x07\"\\");
        assert_eq!(one_str(r#""\x41\x4a\x7""#), "AJ\x07");
        assert_eq!(one_str(r#""\101\60""#), "A0");
        assert_eq!(one_str(r#""\1 \. \d""#), "\\1 \\. \\d");
        assert_eq!(one_str("\"ab\\\ncd\""), "abcd");
        assert_eq!(one_str("'raw \\n\nline'"), "raw \\n\nline");
        assert_eq!(lex(0, "\"\\xff\"").1.len(), 1);
        assert_eq!(lex(0, "\"abc").1[0].span, Span::new(0, 1, 1));
    }

    #[test]
    fn comments() {
        assert_eq!(
            toks("a /* x /* y */ z */ b"),
            vec![Tok::Ident("a".into()), Tok::Ident("b".into())]
        );
        assert_eq!(
            toks("a # c\nb"),
            vec![Tok::Ident("a".into()), Tok::Ident("b".into())]
        );
        assert_eq!(
            toks("a \\\n b"),
            vec![Tok::Ident("a".into()), Tok::Ident("b".into())]
        );
        let (_, e) = lex(0, "x /* /* */");
        assert_eq!(e[0].span, Span::new(0, 1, 3));
    }

    #[test]
    fn operators_and_positions() {
        assert_eq!(
            toks("== != =~ !~ >= <= && || += |= ! = ~"),
            vec![
                Tok::Eq,
                Tok::Ne,
                Tok::Match,
                Tok::NoMatch,
                Tok::Ge,
                Tok::Le,
                Tok::AndAnd,
                Tok::OrOr,
                Tok::PlusEq,
                Tok::PipeEq,
                Tok::Not,
                Tok::Assign,
                Tok::Tilde
            ]
        );
        let (t, _) = lex(0, "a\n  'é' b");
        assert_eq!(t[1].span, Span::new(0, 2, 3));
        assert_eq!(t[2].span, Span::new(0, 2, 7));
        let (t, _) = lex(0, "$avp(s:x) = 1");
        assert!(matches!(&t[0].tok, Tok::Pv(p) if p.name == "avp"));
        assert_eq!(t[1].span.col, 11);
    }

    #[test]
    fn no_panic_on_garbage() {
        for s in [
            "\"\\", "\"\\x", "\"\\0", "'", "$", "$(", "/*", "\\", "0x", "::", "1.", "\u{0}", "é$é",
        ] {
            let _ = lex(0, s);
        }
    }
}
