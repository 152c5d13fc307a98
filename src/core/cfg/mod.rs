//! The configuration language: lexer, preprocessor, parser, AST and error reporting.
