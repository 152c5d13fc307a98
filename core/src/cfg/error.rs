//! Positions and error reporting for the configuration language.
//!
//! Every error is rendered as
//!
//! ```text
//! file:line:col: message
//!   <the source line>
//!   <spaces>^
//! ```
//!
//! `render_error` is public so that later stages (fixup) report their errors the
//! same way, at the span kept on the AST node.

use std::fmt;

/// A position in a configuration source: file index into `Config::sources`,
/// 1-based line and 1-based column (counted in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    pub file: u16,
    pub line: u32,
    pub col: u32,
}

impl Span {
    pub fn new(file: u16, line: u32, col: u32) -> Span {
        Span { file, line, col }
    }
}

/// One configuration source (file name and its original text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// One error at one position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfgError {
    pub span: Span,
    pub msg: String,
}

/// All errors found in one parse, with the sources needed to render them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfgErrors {
    pub errors: Vec<CfgError>,
    pub sources: Vec<Source>,
}

impl CfgErrors {
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Render one error: `file:line:col: msg`, the source line, and a caret under the
/// column. Tabs before the column are copied so the caret lines up.
pub fn render_error(file_name: &str, source_text: &str, span: Span, msg: &str) -> String {
    let mut out = format!("{}:{}:{}: {}", file_name, span.line, span.col, msg);
    let line_no = span.line as usize;
    if line_no == 0 {
        return out;
    }
    if let Some(line) = source_text.split('\n').nth(line_no - 1) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        out.push_str("\n  ");
        out.push_str(line);
        out.push_str("\n  ");
        for (i, c) in line.chars().enumerate() {
            if i + 1 >= span.col as usize {
                break;
            }
            out.push(if c == '\t' { '\t' } else { ' ' });
        }
        // column past the end of the line (e.g. end of file): pad with spaces
        let len = line.chars().count();
        if span.col as usize > len + 1 {
            for _ in 0..(span.col as usize - len - 1) {
                out.push(' ');
            }
        }
        out.push('^');
    }
    out
}

/// Render an error against a list of sources (file index taken from the span).
pub fn render_in(sources: &[Source], span: Span, msg: &str) -> String {
    match sources.get(span.file as usize) {
        Some(src) => render_error(&src.name, &src.text, span, msg),
        None => format!("<unknown>:{}:{}: {}", span.line, span.col, msg),
    }
}

impl fmt::Display for CfgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.span.line, self.span.col, self.msg)
    }
}

impl fmt::Display for CfgErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            writeln!(f, "{}", render_in(&self.sources, e.span, &e.msg))?;
        }
        let n = self.errors.len();
        write!(f, "{} error{}", n, if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for CfgErrors {}
