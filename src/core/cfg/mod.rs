//! The configuration language: lexer, preprocessor, parser, AST and error reporting.
//!
//! `parse_file` / `parse_str` run the whole front end: preprocessor (`pp`), lexer
//! (`lex`), define expansion, parser (`parse`). Errors carry `file:line:col` and
//! render with the source line and a caret (`error::render_error`); fixup reports its
//! own errors at the `Span`s kept in the AST the same way (`ast::Config::render`).

pub mod ast;
pub mod error;
pub mod lex;
pub mod parse;
pub mod pp;
pub mod pv;

pub use error::{CfgError, CfgErrors, Source, Span, render_error};

use std::path::Path;

/// Parse a configuration file.
pub fn parse_file(path: &Path) -> Result<ast::Config, CfgErrors> {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            parse_str(&name, &text)
        }
        Err(e) => Err(CfgErrors {
            errors: vec![CfgError {
                span: Span::new(0, 0, 0),
                msg: format!("cannot read the configuration file: {}", e),
            }],
            sources: vec![Source {
                name,
                text: String::new(),
            }],
        }),
    }
}

/// Parse configuration text; `file_name` is used in messages.
pub fn parse_str(file_name: &str, text: &str) -> Result<ast::Config, CfgErrors> {
    parse_str_with_defines(file_name, text, &[])
}

/// As `parse_str`, with names defined for the preprocessor before the first line.
pub fn parse_str_with_defines(
    file_name: &str,
    text: &str,
    defines: &[(String, String)],
) -> Result<ast::Config, CfgErrors> {
    let file = 0u16;
    let pp_out = pp::preprocess(file, text, defines);
    let mut errors = pp_out.errors.clone();
    let (toks, lex_errors) = lex::lex(file, &pp_out.text);
    errors.extend(lex_errors);
    let toks = pp::expand(toks, &pp_out, &mut errors);
    let (mut cfg, parse_errors) = parse::Parser::new(toks).parse_config();
    errors.extend(parse_errors);
    let sources = vec![Source {
        name: file_name.to_string(),
        text: text.to_string(),
    }];
    if errors.is_empty() {
        cfg.sources = sources;
        Ok(cfg)
    } else {
        errors.sort_by_key(|e| e.span);
        errors.dedup();
        Err(CfgErrors { errors, sources })
    }
}
