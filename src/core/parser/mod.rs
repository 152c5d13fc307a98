//! SIP message parser: zero-copy first line, header index, typed headers on demand.
