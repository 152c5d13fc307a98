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

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &[&str] = &[
        include_str!("../../../tests/data/cfg/good/seed-hello-world.cfg"),
        include_str!("../../../tests/data/cfg/good/seed-mysql-auth.cfg"),
        include_str!("../../../tests/data/cfg/good/expressions.cfg"),
        include_str!("../../../tests/data/cfg/good/assignments.cfg"),
        include_str!("../../../tests/data/cfg/good/extensions.cfg"),
        include_str!("../../../tests/data/cfg/good/globals.cfg"),
        include_str!("../../../tests/data/cfg/good/pvs.cfg"),
        include_str!("../../../tests/data/cfg/good/switch.cfg"),
        include_str!("../../../tests/data/cfg/good/statements.cfg"),
        include_str!("../../../tests/data/cfg/good/lexical.cfg"),
    ];

    /// Poor man's fuzzing: truncations and byte mutations of the corpus must never
    /// panic (the real fuzz target lives in fuzz/).
    #[test]
    fn mutations_never_panic() {
        const INTERESTING: &[u8] = b"\"'$(){}[];:,./*#!\\\n=~|&<>-+0x9aZ_ \t{}";
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for text in CORPUS {
            let bytes = text.as_bytes();
            for cut in (0..bytes.len()).step_by(7) {
                let s = String::from_utf8_lossy(&bytes[..cut]);
                let _ = parse_str("t", &s);
            }
            for _ in 0..300 {
                let mut b = bytes.to_vec();
                for _ in 0..(1 + next() % 4) {
                    let at = (next() as usize) % b.len().max(1);
                    let c = INTERESTING[(next() as usize) % INTERESTING.len()];
                    match next() % 3 {
                        0 if at < b.len() => b[at] = c,
                        1 => b.insert(at.min(b.len()), c),
                        _ if at < b.len() => {
                            b.remove(at);
                        }
                        _ => {}
                    }
                }
                let s = String::from_utf8_lossy(&b);
                let _ = parse_str("t", &s);
            }
        }
    }

    #[test]
    fn crlf_and_predefined() {
        let text = CORPUS[0].replace('\n', "\r\n");
        parse_str("crlf.cfg", &text).unwrap_or_else(|e| panic!("{e}"));
        let src = "#!ifdef TLS\nlisten=tls:1.2.3.4:5061\n#!endif\nroute { exit; }";
        let cfg = parse_str_with_defines("d.cfg", src, &[("TLS".into(), String::new())]).unwrap();
        assert_eq!(cfg.globals.len(), 1);
        let cfg = parse_str("d.cfg", src).unwrap();
        assert_eq!(cfg.globals.len(), 0);
    }

    #[test]
    fn missing_file() {
        let e = parse_file(Path::new("/nonexistent/openser.cfg")).unwrap_err();
        assert!(e.to_string().contains("cannot read the configuration file"));
    }
}
