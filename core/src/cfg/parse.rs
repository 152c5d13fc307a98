//! Recursive-descent parser: tokens to `ast::Config`.
//!
//! Errors are collected; after an error the parser resumes at the next top-level
//! item (a route block is skipped to its matching `}`).

use super::ast::*;
use super::error::CfgError;
use super::lex::{Tok, Token};
use super::pv::is_assignable;
use std::collections::HashSet;
use std::net::IpAddr;

/// Highest numeric route index + 1 (OpenSER's `RT_NO`).
pub const RT_NO: i64 = 40;
const MAX_DEPTH: u32 = 100;
const MAX_ERRORS: usize = 100;

struct Fail;
type PResult<T> = Result<T, Fail>;

pub struct Parser {
    toks: Vec<Token>,
    pos: usize,
    errors: Vec<CfgError>,
    depth: u32,
    in_switch: u32,
    in_while: u32,
    /// a nesting error happened in this item: no statement-level recovery
    bail: bool,
    seen_routes: HashSet<(RouteKind, RouteName)>,
}

const TOP_KEYWORDS: &[&str] = &[
    "loadmodule",
    "modparam",
    "route",
    "request_route",
    "onreply_route",
    "reply_route",
    "failure_route",
    "branch_route",
    "onbranch_route",
    "error_route",
    "startup_route",
    "timer_route",
    "event_route",
    "local_route",
];

fn proto_of(s: &str) -> Option<Proto> {
    match s {
        "udp" | "UDP" => Some(Proto::Udp),
        "tcp" | "TCP" => Some(Proto::Tcp),
        "tls" | "TLS" => Some(Proto::Tls),
        "sctp" | "SCTP" => Some(Proto::Sctp),
        "any" | "ANY" => Some(Proto::Any),
        _ => None,
    }
}

fn bool_word(s: &str) -> Option<bool> {
    match s {
        "yes" | "true" | "on" | "enable" => Some(true),
        "no" | "false" | "off" | "disable" => Some(false),
        _ => None,
    }
}

fn keyword(s: &str) -> Option<Keyword> {
    Some(match s {
        "method" => Keyword::Method,
        "uri" => Keyword::Uri,
        "status" => Keyword::Status,
        "from_uri" => Keyword::FromUri,
        "to_uri" => Keyword::ToUri,
        "src_ip" => Keyword::SrcIp,
        "dst_ip" => Keyword::DstIp,
        "src_port" => Keyword::SrcPort,
        "dst_port" => Keyword::DstPort,
        "proto" => Keyword::Proto,
        "af" => Keyword::Af,
        "myself" => Keyword::Myself,
        "max_len" => Keyword::MaxLen,
        _ => return None,
    })
}

fn full_mask(a: &IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::BROADCAST),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(u128::MAX)),
    }
}

fn mask_from_bits(a: &IpAddr, bits: i64) -> Option<IpAddr> {
    match a {
        IpAddr::V4(_) if (0..=32).contains(&bits) => {
            let m: u32 = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            Some(IpAddr::V4(m.into()))
        }
        IpAddr::V6(_) if (0..=128).contains(&bits) => {
            let m: u128 = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            Some(IpAddr::V6(m.into()))
        }
        _ => None,
    }
}

impl Parser {
    pub fn new(toks: Vec<Token>) -> Parser {
        let mut toks = toks;
        if toks.last().is_none_or(|t| t.tok != Tok::Eof) {
            let span = toks.last().map(|t| t.span).unwrap_or_default();
            toks.push(Token {
                tok: Tok::Eof,
                span,
                space_before: true,
            });
        }
        Parser {
            toks,
            pos: 0,
            errors: Vec::new(),
            depth: 0,
            in_switch: 0,
            in_while: 0,
            bail: false,
            seen_routes: HashSet::new(),
        }
    }

    // ---- token helpers -------------------------------------------------------

    fn tok(&self) -> &Tok {
        &self.at(0).tok
    }

    fn at(&self, k: usize) -> &Token {
        let i = (self.pos + k).min(self.toks.len() - 1);
        &self.toks[i]
    }

    fn span(&self) -> Span {
        self.at(0).span
    }

    fn advance(&mut self) -> Token {
        let t = self.at(0).clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn is(&self, t: &Tok) -> bool {
        self.tok() == t
    }

    fn is_ident(&self, s: &str) -> bool {
        matches!(self.tok(), Tok::Ident(x) if x == s)
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.is(t) {
            self.advance();
            true
        } else {
            false
        }
    }

    /// glued to the previous token (no whitespace between)
    fn glued(&self, k: usize) -> bool {
        !self.at(k).space_before
    }

    /// A dotted function name and its `(` ahead of the current word (`cnt.inc(`).
    fn dotted_call_ahead(&self) -> bool {
        let mut k = 1;
        while self.at(k).tok == Tok::Dot
            && self.glued(k)
            && self.glued(k + 1)
            && matches!(self.at(k + 1).tok, Tok::Ident(_))
        {
            k += 2;
        }
        k > 1 && self.at(k).tok == Tok::LParen
    }

    fn error_at<T>(&mut self, span: Span, msg: String) -> PResult<T> {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(CfgError { span, msg });
        }
        Err(Fail)
    }

    fn expected<T>(&mut self, what: &str) -> PResult<T> {
        let found = self.tok().describe();
        let span = self.span();
        self.error_at(span, format!("expected {}, found {}", what, found))
    }

    fn expect(&mut self, t: Tok) -> PResult<()> {
        if self.eat(&t) {
            Ok(())
        } else {
            self.expected(&format!("`{}`", t.punct()))
        }
    }

    fn expect_semi(&mut self, after: &str) -> PResult<()> {
        if self.eat(&Tok::Semi) {
            Ok(())
        } else {
            self.expected(&format!("`;` after {}", after))
        }
    }

    /// After a failed statement: skip to just after the next `;` or to just before an
    /// unmatched `}` (balancing braces on the way), so the enclosing block goes on and
    /// later errors are reported too. Gives up (returns the failure) after a nesting
    /// error or when too many errors were seen.
    fn recover_stmt(&mut self, f: Fail) -> PResult<()> {
        if self.bail || self.errors.len() >= MAX_ERRORS {
            return Err(f);
        }
        let mut depth = 0usize;
        loop {
            match self.tok() {
                Tok::Eof => return Err(f),
                Tok::Semi if depth == 0 => {
                    self.advance();
                    return Ok(());
                }
                Tok::LBrace => depth += 1,
                Tok::RBrace => {
                    if depth == 0 {
                        return Ok(());
                    }
                    depth -= 1;
                    if depth == 0 {
                        self.advance();
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.advance();
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.bail = true;
            let span = self.span();
            return self.error_at(span, "nesting too deep".into());
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn signed_int(&mut self, what: &str) -> PResult<i64> {
        let neg = self.eat(&Tok::Minus);
        if let Tok::Int(n) = *self.tok() {
            self.advance();
            Ok(if neg { n.wrapping_neg() } else { n })
        } else {
            self.expected(what)
        }
    }

    // ---- top level -----------------------------------------------------------

    pub fn parse_config(mut self) -> (Config, Vec<CfgError>) {
        let mut cfg = Config::default();
        while !self.is(&Tok::Eof) {
            if self.errors.len() >= MAX_ERRORS {
                break;
            }
            let start = self.pos;
            if let Err(Fail) = self.item(&mut cfg) {
                self.recover(start);
            }
            self.depth = 0;
            self.bail = false;
            self.in_switch = 0;
            self.in_while = 0;
        }
        (cfg, self.errors)
    }

    /// Skip to the next top-level item: past balanced braces, to a token on a later
    /// line that starts an item.
    fn recover(&mut self, start: usize) {
        let err_line = self.span().line;
        // restart from the item's first token to balance braces correctly
        self.pos = start;
        let mut depth: i64 = 0;
        let mut first = true;
        while !self.is(&Tok::Eof) {
            let t = self.at(0);
            let starts_item = match &t.tok {
                Tok::Ident(s) => {
                    TOP_KEYWORDS.contains(&s.as_str())
                        || self.at(1).tok == Tok::Assign
                        || s == "cfgengine"
                }
                _ => false,
            };
            if !first && depth <= 0 && t.span.line > err_line && starts_item {
                return;
            }
            first = false;
            match t.tok {
                Tok::LBrace => depth += 1,
                Tok::RBrace => {
                    depth -= 1;
                    if depth == 0 && self.at(0).span.line >= err_line {
                        self.advance();
                        return;
                    }
                }
                _ => {}
            }
            self.advance();
        }
    }

    fn item(&mut self, cfg: &mut Config) -> PResult<()> {
        let span = self.span();
        let name = match self.tok() {
            Tok::Semi => {
                self.advance();
                return Ok(());
            }
            Tok::Ident(s) => s.clone(),
            _ => {
                return self
                    .expected("a global parameter, `loadmodule`, `modparam` or a route block");
            }
        };
        match name.as_str() {
            "loadmodule" => {
                self.advance();
                let Tok::Str(path) = self.tok().clone() else {
                    return self.expected("module path string after `loadmodule`");
                };
                self.advance();
                self.eat(&Tok::Semi);
                cfg.order.push(ItemRef::LoadModule(cfg.loadmodules.len()));
                cfg.loadmodules.push(LoadModule { path, span });
            }
            "modparam" => {
                self.advance();
                self.expect(Tok::LParen)?;
                let Tok::Str(module) = self.tok().clone() else {
                    return self.expected("module name string");
                };
                self.advance();
                self.expect(Tok::Comma)?;
                let Tok::Str(param) = self.tok().clone() else {
                    return self.expected("parameter name string");
                };
                self.advance();
                self.expect(Tok::Comma)?;
                let value_span = self.span();
                let value = match self.tok().clone() {
                    Tok::Str(s) => {
                        self.advance();
                        ModParamValue::Str(s)
                    }
                    Tok::Int(_) | Tok::Minus => ModParamValue::Int(self.signed_int("a number")?),
                    Tok::Ident(w) if bool_word(&w).is_some() => {
                        self.advance();
                        ModParamValue::Int(i64::from(bool_word(&w) == Some(true)))
                    }
                    _ => return self.expected("a string or number as parameter value"),
                };
                self.expect(Tok::RParen)?;
                self.eat(&Tok::Semi);
                cfg.order.push(ItemRef::ModParam(cfg.modparams.len()));
                cfg.modparams.push(ModParam {
                    module,
                    param,
                    value,
                    span,
                    value_span,
                });
            }
            // Kamailio's form without `=`: `cfgengine "lua"` (`cfgengine = "lua"` is the
            // ordinary global below).
            "cfgengine" if matches!(self.at(1).tok, Tok::Str(_)) => {
                self.advance();
                let value_span = self.span();
                let Tok::Str(engine) = self.advance().tok else {
                    return self.expected("an engine name string after `cfgengine`");
                };
                self.eat(&Tok::Semi);
                cfg.order.push(ItemRef::Global(cfg.globals.len()));
                cfg.globals.push(GlobalAssign {
                    name,
                    value: GlobalValue::Str(engine),
                    span,
                    value_span,
                });
            }
            "tls_server_domain" | "tls_client_domain" if self.at(1).tok == Tok::LBrack => {
                self.tls_domain(cfg, name, span)?;
            }
            n if TOP_KEYWORDS.contains(&n) => {
                let r = self.route_block()?;
                cfg.order.push(ItemRef::Route(cfg.routes.len()));
                cfg.routes.push(r);
            }
            _ => {
                self.advance();
                if !self.eat(&Tok::Assign) {
                    return self.expected(&format!("`=` after global parameter `{}`", name));
                }
                let value_span = self.span();
                let value = self.global_value(&name)?;
                cfg.order.push(ItemRef::Global(cfg.globals.len()));
                cfg.globals.push(GlobalAssign {
                    name,
                    value,
                    span,
                    value_span,
                });
            }
        }
        Ok(())
    }

    /// `tls_server_domain[ip:port] { name = value ... }` (and `tls_client_domain`):
    /// one global assignment naming the block (its address as a string), then one
    /// per setting inside, named `@domain.<name>`.
    fn tls_domain(&mut self, cfg: &mut Config, name: String, span: Span) -> PResult<()> {
        self.advance();
        self.expect(Tok::LBrack)?;
        let value_span = self.span();
        let spec = self.sock_spec(false)?;
        self.expect(Tok::RBrack)?;
        let addr = match (&spec.host, spec.port) {
            (Host::Ip(IpAddr::V6(ip)), Some(p)) => format!("[{ip}]:{p}"),
            (Host::Ip(ip), Some(p)) => format!("{ip}:{p}"),
            _ => return self.error_at(value_span, format!("{name}: ip:port expected")),
        };
        cfg.order.push(ItemRef::Global(cfg.globals.len()));
        cfg.globals.push(GlobalAssign {
            name,
            value: GlobalValue::Str(addr),
            span,
            value_span,
        });
        self.expect(Tok::LBrace)?;
        loop {
            if self.eat(&Tok::RBrace) {
                break;
            }
            if self.eat(&Tok::Semi) {
                continue;
            }
            let span = self.span();
            let Tok::Ident(inner) = self.tok().clone() else {
                return self.expected("a TLS setting or `}`");
            };
            self.advance();
            if !self.eat(&Tok::Assign) {
                return self.expected(&format!("`=` after `{inner}`"));
            }
            let value_span = self.span();
            let value = self.global_value(&inner)?;
            cfg.order.push(ItemRef::Global(cfg.globals.len()));
            cfg.globals.push(GlobalAssign {
                name: format!("@domain.{inner}"),
                value,
                span,
                value_span,
            });
        }
        Ok(())
    }

    fn global_value(&mut self, name: &str) -> PResult<GlobalValue> {
        match name {
            "listen" | "alias" => {
                let mut v = vec![self.sock_spec(true)?];
                loop {
                    if self.is(&Tok::Comma) {
                        self.advance();
                        v.push(self.sock_spec(true)?);
                        continue;
                    }
                    let more = match self.tok() {
                        Tok::Ident(s) => {
                            !TOP_KEYWORDS.contains(&s.as_str())
                                && s != "cfgengine"
                                && self.at(1).tok != Tok::Assign
                        }
                        Tok::Ipv4(_) | Tok::Ipv6(_) | Tok::Str(_) | Tok::LBrack => true,
                        _ => false,
                    };
                    if !more {
                        break;
                    }
                    v.push(self.sock_spec(true)?);
                }
                Ok(GlobalValue::Sockets(v))
            }
            "dst_blacklist" => self.blacklist().map(GlobalValue::Blacklist),
            _ => match self.tok().clone() {
                Tok::Str(s) => {
                    self.advance();
                    Ok(GlobalValue::Str(s))
                }
                Tok::Int(_) | Tok::Minus => Ok(GlobalValue::Int(self.signed_int("a number")?)),
                Tok::Ipv4(a) => {
                    self.advance();
                    Ok(GlobalValue::Ip(IpAddr::V4(a)))
                }
                Tok::Ipv6(a) => {
                    self.advance();
                    Ok(GlobalValue::Ip(IpAddr::V6(a)))
                }
                Tok::Ident(w) if !TOP_KEYWORDS.contains(&w.as_str()) => {
                    if let Some(b) = bool_word(&w) {
                        self.advance();
                        return Ok(GlobalValue::Bool(b));
                    }
                    Ok(GlobalValue::Ident(self.host_name()?))
                }
                _ => self.expected(&format!("a value for `{}`", name)),
            },
        }
    }

    /// A host name: words and numbers joined by `.` or `-` without spaces.
    fn host_name(&mut self) -> PResult<String> {
        let mut s = match self.tok().clone() {
            Tok::Ident(w) => w,
            Tok::Int(n) => n.to_string(),
            Tok::Star => "*".to_string(),
            _ => return self.expected("a host name"),
        };
        self.advance();
        while matches!(self.tok(), Tok::Dot | Tok::Minus)
            && self.glued(0)
            && self.glued(1)
            && matches!(self.at(1).tok, Tok::Ident(_) | Tok::Int(_))
        {
            s.push_str(self.tok().punct());
            self.advance();
            match self.advance().tok {
                Tok::Ident(w) => s.push_str(&w),
                Tok::Int(n) => s.push_str(&n.to_string()),
                _ => {}
            }
        }
        Ok(s)
    }

    fn port(&mut self) -> PResult<u16> {
        let span = self.span();
        let Tok::Int(n) = *self.tok() else {
            return self.expected("a port number");
        };
        self.advance();
        if (0..=65535).contains(&n) {
            Ok(n as u16)
        } else {
            self.error_at(span, format!("port {} out of range 0..65535", n))
        }
    }

    /// `[proto:]host[:port]`; with `allow_str` a quoted host is accepted.
    fn sock_spec(&mut self, allow_str: bool) -> PResult<SockSpec> {
        let span = self.span();
        let mut proto = None;
        if let Tok::Ident(w) = self.tok()
            && let Some(p) = proto_of(w)
            && self.at(1).tok == Tok::Colon
        {
            proto = Some(p);
            self.advance();
            self.advance();
        }
        let host = match self.tok().clone() {
            Tok::Ipv4(a) => {
                self.advance();
                Host::Ip(IpAddr::V4(a))
            }
            Tok::Ipv6(a) => {
                self.advance();
                Host::Ip(IpAddr::V6(a))
            }
            Tok::LBrack => {
                self.advance();
                let Tok::Ipv6(a) = *self.tok() else {
                    return self.expected("an IPv6 address after `[`");
                };
                self.advance();
                self.expect(Tok::RBrack)?;
                Host::Ip(IpAddr::V6(a))
            }
            Tok::Str(s) if allow_str => {
                self.advance();
                match s.parse::<IpAddr>() {
                    Ok(a) => Host::Ip(a),
                    Err(_) => Host::Name(s),
                }
            }
            Tok::Ident(_) | Tok::Int(_) | Tok::Star => Host::Name(self.host_name()?),
            _ => return self.expected("an address or host name"),
        };
        let port = if self.is(&Tok::Colon) {
            self.advance();
            Some(self.port()?)
        } else {
            None
        };
        Ok(SockSpec {
            proto,
            host,
            port,
            span,
        })
    }

    fn ip(&mut self, what: &str) -> PResult<IpAddr> {
        match *self.tok() {
            Tok::Ipv4(a) => {
                self.advance();
                Ok(IpAddr::V4(a))
            }
            Tok::Ipv6(a) => {
                self.advance();
                Ok(IpAddr::V6(a))
            }
            _ => self.expected(what),
        }
    }

    /// After an address: optional `/bits` or `/mask`.
    fn net_suffix(&mut self, addr: IpAddr) -> PResult<Option<IpNet>> {
        if !self.is(&Tok::Slash) {
            return Ok(None);
        }
        self.advance();
        let span = self.span();
        match *self.tok() {
            Tok::Int(bits) => {
                self.advance();
                match mask_from_bits(&addr, bits) {
                    Some(mask) => Ok(Some(IpNet { addr, mask })),
                    None => self.error_at(span, format!("bad network mask length /{}", bits)),
                }
            }
            Tok::Ipv4(_) | Tok::Ipv6(_) => {
                let mask = self.ip("a mask")?;
                if mask.is_ipv4() != addr.is_ipv4() {
                    return self.error_at(span, "mask and address families differ".into());
                }
                Ok(Some(IpNet { addr, mask }))
            }
            _ => self.expected("a mask length or address after `/`"),
        }
    }

    fn blacklist(&mut self) -> PResult<Blacklist> {
        let Tok::Ident(name) = self.tok().clone() else {
            return self.expected("a blacklist name");
        };
        self.advance();
        self.expect(Tok::Colon)?;
        self.expect(Tok::LBrace)?;
        let mut entries = Vec::new();
        loop {
            if self.eat(&Tok::RBrace) {
                break;
            }
            if !entries.is_empty() {
                self.expect(Tok::Comma)?;
            }
            let span = self.span();
            self.expect(Tok::LParen)?;
            let proto = match self.tok().clone() {
                Tok::Ident(w) => match proto_of(&w) {
                    Some(Proto::Any) => {
                        self.advance();
                        None
                    }
                    Some(p) => {
                        self.advance();
                        Some(p)
                    }
                    None => return self.expected("`udp`, `tcp`, `tls`, `sctp` or `any`"),
                },
                Tok::Int(0) => {
                    self.advance();
                    None
                }
                _ => return self.expected("`udp`, `tcp`, `tls`, `sctp` or `any`"),
            };
            self.expect(Tok::Comma)?;
            let addr = self.ip("an IP address")?;
            let net = self.net_suffix(addr)?.unwrap_or(IpNet {
                addr,
                mask: full_mask(&addr),
            });
            self.expect(Tok::Comma)?;
            let port = self.port()?;
            self.expect(Tok::Comma)?;
            let Tok::Str(pattern) = self.tok().clone() else {
                return self.expected("a pattern string");
            };
            self.advance();
            self.expect(Tok::RParen)?;
            entries.push(BlacklistEntry {
                proto,
                net,
                port,
                pattern,
                span,
            });
        }
        Ok(Blacklist { name, entries })
    }

    // ---- route blocks --------------------------------------------------------

    fn route_name(&mut self, kind: RouteKind) -> PResult<RouteName> {
        let span = self.span();
        match self.tok().clone() {
            Tok::Int(n) => {
                self.advance();
                if !(0..RT_NO).contains(&n) {
                    return self.error_at(
                        span,
                        format!("route index {} out of range 0..{}", n, RT_NO - 1),
                    );
                }
                Ok(RouteName::Num(n as u32))
            }
            Tok::Str(s) if !s.is_empty() => {
                self.advance();
                Ok(RouteName::Named(s))
            }
            Tok::Ident(_) => {
                // names like `tm:local-request` for event_route
                let mut s = self.host_name()?;
                while kind == RouteKind::Event && self.is(&Tok::Colon) {
                    self.advance();
                    s.push(':');
                    s.push_str(&self.host_name()?);
                }
                Ok(RouteName::Named(s))
            }
            _ => self.expected("a route number or name"),
        }
    }

    fn route_block(&mut self) -> PResult<RouteBlock> {
        let span = self.span();
        let Tok::Ident(kw) = self.advance().tok else {
            return self.error_at(span, "expected a route keyword".into());
        };
        let (kind, needs_index, takes_index) = match kw.as_str() {
            "route" | "request_route" => (RouteKind::Request, false, kw == "route"),
            "onreply_route" | "reply_route" => (RouteKind::OnReply, false, true),
            "failure_route" => (RouteKind::Failure, true, true),
            "branch_route" | "onbranch_route" => (RouteKind::Branch, true, true),
            "error_route" => (RouteKind::Error, false, false),
            "startup_route" => (RouteKind::Startup, false, false),
            "timer_route" => (RouteKind::Timer, true, true),
            "event_route" => (RouteKind::Event, true, true),
            _ => (RouteKind::Local, false, false),
        };
        let mut name = RouteName::Num(0);
        let mut interval = None;
        if self.is(&Tok::LBrack) {
            if !takes_index {
                return self.expected(&format!("`{{` after `{}` (it takes no index)", kw));
            }
            self.advance();
            name = self.route_name(kind)?;
            if kind == RouteKind::Timer {
                self.expect(Tok::Comma)?;
                let sspan = self.span();
                let secs = self.signed_int("the interval in seconds")?;
                if !(1..=i64::from(u32::MAX)).contains(&secs) {
                    return self.error_at(sspan, format!("bad timer interval {}", secs));
                }
                interval = Some(secs as u32);
            }
            self.expect(Tok::RBrack)?;
        } else if needs_index {
            return self.expected(&format!(
                "`[` after `{}`{}",
                kw,
                if kind == RouteKind::Timer {
                    " (timer_route[name, seconds])"
                } else {
                    ""
                }
            ));
        }
        if !self.seen_routes.insert((kind, name.clone())) {
            let shown = match &name {
                RouteName::Num(n) => n.to_string(),
                RouteName::Named(s) => s.clone(),
            };
            return self.error_at(span, format!("`{}[{}]` is defined twice", kw, shown));
        }
        if !self.is(&Tok::LBrace) {
            return self.expected(&format!("`{{` to open the `{}` block", kw));
        }
        let body = self.block()?;
        Ok(RouteBlock {
            kind,
            name,
            interval,
            body,
            span,
        })
    }

    // ---- statements ----------------------------------------------------------

    fn block(&mut self) -> PResult<Block> {
        self.enter()?;
        let r = self.block_inner();
        self.leave();
        r
    }

    fn block_inner(&mut self) -> PResult<Block> {
        self.expect(Tok::LBrace)?;
        let mut v = Vec::new();
        while !self.is(&Tok::RBrace) {
            if self.is(&Tok::Eof) {
                return self.expected("`}`");
            }
            match self.stmt() {
                Ok(Some(s)) => v.push(s),
                Ok(None) => {}
                Err(f) => self.recover_stmt(f)?,
            }
        }
        self.advance();
        Ok(v)
    }

    /// A statement as the body of `if`/`else`/`while`: a block or one statement.
    fn body(&mut self) -> PResult<Block> {
        if self.is(&Tok::LBrace) {
            self.block()
        } else {
            Ok(self.stmt()?.into_iter().collect())
        }
    }

    fn stmt(&mut self) -> PResult<Option<Stmt>> {
        self.enter()?;
        let r = self.stmt_inner();
        self.leave();
        r
    }

    fn stmt_inner(&mut self) -> PResult<Option<Stmt>> {
        let span = self.span();
        let word = match self.tok().clone() {
            Tok::Semi => {
                self.advance();
                return Ok(None);
            }
            Tok::LBrace => return Ok(Some(Stmt::Block(self.block()?))),
            Tok::Pv(spec) => {
                self.advance();
                return self.assignment(Pv { spec: *spec, span }).map(Some);
            }
            Tok::Ident(w) => w,
            _ => return self.expected("a statement"),
        };
        let next_is_paren = self.at(1).tok == Tok::LParen;
        match word.as_str() {
            "if" => {
                self.advance();
                let cond = self.cond_paren("if")?;
                let then = self.body()?;
                // tolerate `if (...) { ... }; else ...`
                if self.is(&Tok::Semi) && matches!(&self.at(1).tok, Tok::Ident(w) if w == "else") {
                    self.advance();
                }
                let els = if self.is_ident("else") {
                    self.advance();
                    Some(self.body()?)
                } else {
                    None
                };
                Ok(Some(Stmt::If {
                    cond,
                    then,
                    els,
                    span,
                }))
            }
            "while" => {
                self.advance();
                let cond = self.cond_paren("while")?;
                self.in_while += 1;
                let body = self.body();
                self.in_while -= 1;
                Ok(Some(Stmt::While {
                    cond,
                    body: body?,
                    span,
                }))
            }
            "switch" => self.switch(span).map(Some),
            "else" => self.error_at(span, "found `else` without a matching `if`".into()),
            "case" | "default" if !next_is_paren => {
                self.error_at(span, format!("found `{}` outside of a `switch`", word))
            }
            "exit" | "drop" => {
                self.advance();
                if self.eat(&Tok::LParen) {
                    self.expect(Tok::RParen)?;
                }
                self.expect_semi(&format!("`{}`", word))?;
                Ok(Some(if word == "exit" {
                    Stmt::Exit(span)
                } else {
                    Stmt::Drop(span)
                }))
            }
            "return" => {
                self.advance();
                let value = if self.eat(&Tok::LParen) {
                    let v = if self.is(&Tok::RParen) {
                        None
                    } else {
                        Some(self.signed_int("a number in `return(...)`")?)
                    };
                    self.expect(Tok::RParen)?;
                    v
                } else if matches!(self.tok(), Tok::Int(_) | Tok::Minus) {
                    Some(self.signed_int("a number")?)
                } else {
                    None
                };
                self.expect_semi("`return`")?;
                Ok(Some(Stmt::Return { value, span }))
            }
            "route" if next_is_paren => {
                self.advance();
                self.advance();
                let target = self.route_name(RouteKind::Request)?;
                self.expect(Tok::RParen)?;
                self.expect_semi("`route(...)`")?;
                Ok(Some(Stmt::Route { target, span }))
            }
            "route" => {
                self.advance();
                self.expected("`(` after `route` (route(N) calls a route block)")
            }
            "break" | "esac" if !next_is_paren => {
                self.advance();
                if self.in_switch == 0 && self.in_while == 0 {
                    return self.error_at(span, format!("found `{}` outside of a `switch`", word));
                }
                self.expect_semi(&format!("`{}`", word))?;
                Ok(Some(Stmt::Break(span)))
            }
            _ => {
                let call = self.call()?;
                self.expect_semi(&format!("`{}(...)`", call.name))?;
                Ok(Some(Stmt::Call(call)))
            }
        }
    }

    fn cond_paren(&mut self, kw: &str) -> PResult<Expr> {
        if !self.is(&Tok::LParen) {
            return self.expected(&format!("`(` after `{}`", kw));
        }
        self.expr()
    }

    fn assignment(&mut self, lhs: Pv) -> PResult<Stmt> {
        let op = match self.tok() {
            Tok::Assign => AssignOp::Set,
            Tok::PlusEq => AssignOp::Add,
            Tok::MinusEq => AssignOp::Sub,
            Tok::StarEq => AssignOp::Mul,
            Tok::SlashEq => AssignOp::Div,
            Tok::PercentEq => AssignOp::Mod,
            Tok::AmpEq => AssignOp::BitAnd,
            Tok::PipeEq => AssignOp::BitOr,
            Tok::CaretEq => AssignOp::BitXor,
            _ => {
                return self.expected(&format!("an assignment operator after `{}`", lhs.spec.text));
            }
        };
        if !is_assignable(&lhs.spec) {
            let msg = if lhs.spec.trans.is_empty() {
                format!(
                    "cannot assign to `{}` (only $avp, $var, $ru, $rU, $rd, $du and writable module PVs such as $dlg_var can be assigned)",
                    lhs.spec.text
                )
            } else {
                format!(
                    "cannot assign to `{}`: transformations are not allowed on the left side",
                    lhs.spec.text
                )
            };
            return self.error_at(lhs.span, msg);
        }
        self.advance();
        let rhs = self.expr()?;
        let span = lhs.span;
        self.expect_semi("the assignment")?;
        Ok(Stmt::Assign(Assign { lhs, op, rhs, span }))
    }

    fn switch(&mut self, span: Span) -> PResult<Stmt> {
        self.advance();
        self.expect(Tok::LParen)?;
        let pspan = self.span();
        let Tok::Pv(spec) = self.tok().clone() else {
            return self.expected("a pseudo-variable in `switch (...)`");
        };
        self.advance();
        self.expect(Tok::RParen)?;
        self.expect(Tok::LBrace)?;
        let mut arms: Vec<Case> = Vec::new();
        self.in_switch += 1;
        let r = (|| {
            loop {
                let cspan = self.span();
                if self.eat(&Tok::RBrace) {
                    return Ok(());
                }
                let label = if self.is_ident("case") {
                    self.advance();
                    match self.tok().clone() {
                        Tok::Str(s) => {
                            self.advance();
                            CaseLabel::Str(s)
                        }
                        Tok::Int(_) | Tok::Minus => CaseLabel::Int(self.signed_int("a number")?),
                        _ => return self.expected("a number or string after `case`"),
                    }
                } else if self.is_ident("default") {
                    self.advance();
                    if arms.iter().any(|a| a.label == CaseLabel::Default) {
                        return self.error_at(cspan, "second `default` in `switch`".into());
                    }
                    CaseLabel::Default
                } else {
                    return self.expected("`case`, `default` or `}`");
                };
                self.expect(Tok::Colon)?;
                let mut body = Vec::new();
                while !(self.is(&Tok::RBrace)
                    || ((self.is_ident("case") || self.is_ident("default"))
                        && self.at(1).tok != Tok::LParen))
                {
                    if self.is(&Tok::Eof) {
                        return self.expected("`}` to close `switch`");
                    }
                    match self.stmt() {
                        Ok(Some(s)) => body.push(s),
                        Ok(None) => {}
                        Err(f) => self.recover_stmt(f)?,
                    }
                }
                arms.push(Case {
                    label,
                    body,
                    span: cspan,
                });
            }
        })();
        self.in_switch -= 1;
        r?;
        Ok(Stmt::Switch {
            pv: Pv {
                spec: *spec,
                span: pspan,
            },
            arms,
            span,
        })
    }

    fn call(&mut self) -> PResult<Call> {
        let span = self.span();
        let Tok::Ident(mut name) = self.advance().tok else {
            return self.error_at(span, "expected a function name".into());
        };
        // Kamailio's dotted function names (`cnt.inc(...)`): words joined by `.`
        // without spaces.
        while self.is(&Tok::Dot)
            && self.glued(0)
            && self.glued(1)
            && matches!(self.at(1).tok, Tok::Ident(_))
        {
            self.advance();
            if let Tok::Ident(w) = self.advance().tok {
                name.push('.');
                name.push_str(&w);
            }
        }
        let mut args = Vec::new();
        if self.eat(&Tok::LParen) && !self.eat(&Tok::RParen) {
            loop {
                args.push(self.arg()?);
                if self.eat(&Tok::RParen) {
                    break;
                }
                if !self.eat(&Tok::Comma) {
                    return self.expected("`,` or `)` in the argument list");
                }
            }
        }
        Ok(Call { name, args, span })
    }

    fn arg(&mut self) -> PResult<Arg> {
        let span = self.span();
        let value = match self.tok().clone() {
            Tok::Str(s) => {
                self.advance();
                ArgValue::Str(s)
            }
            Tok::Int(_) | Tok::Minus => {
                if matches!(self.tok(), Tok::Int(_)) && self.at(1).tok == Tok::Colon {
                    ArgValue::Sock(self.sock_spec(false)?)
                } else {
                    ArgValue::Int(self.signed_int("a number")?)
                }
            }
            Tok::Pv(p) => {
                self.advance();
                ArgValue::Pv(*p)
            }
            Tok::Ipv4(_) | Tok::Ipv6(_) | Tok::LBrack => {
                if self.at(1).tok == Tok::Colon || self.is(&Tok::LBrack) {
                    ArgValue::Sock(self.sock_spec(false)?)
                } else {
                    let a = self.ip("an address")?;
                    match self.net_suffix(a)? {
                        Some(n) => ArgValue::Net(n),
                        None => ArgValue::Ip(a),
                    }
                }
            }
            Tok::Ident(w) => {
                if proto_of(&w).is_some() && self.at(1).tok == Tok::Colon {
                    ArgValue::Sock(self.sock_spec(false)?)
                } else {
                    let h = self.host_name()?;
                    if self.is(&Tok::Colon) {
                        match self.at(1).tok.clone() {
                            Tok::Int(_) => {
                                self.advance();
                                let port = self.port()?;
                                ArgValue::Sock(SockSpec {
                                    proto: None,
                                    host: Host::Name(h),
                                    port: Some(port),
                                    span,
                                })
                            }
                            Tok::Ident(w2) => {
                                // uri:host, uri:port
                                self.advance();
                                self.advance();
                                ArgValue::Ident(format!("{}:{}", h, w2))
                            }
                            _ => return self.expected("an argument"),
                        }
                    } else {
                        ArgValue::Ident(h)
                    }
                }
            }
            _ => return self.expected("a function argument (string, number, word or $pv)"),
        };
        Ok(Arg { value, span })
    }

    // ---- expressions ---------------------------------------------------------

    /// `a || b && c` is `(a || b) && c`: one precedence level, left-associative.
    fn expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let r = self.expr_inner();
        self.leave();
        r
    }

    fn expr_inner(&mut self) -> PResult<Expr> {
        let mut left = self.not_expr()?;
        loop {
            let is_and = match self.tok() {
                Tok::AndAnd => true,
                Tok::OrOr => false,
                Tok::Ident(w) if w == "and" => true,
                Tok::Ident(w) if w == "or" => false,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.not_expr()?;
            left = if is_and {
                Expr::And(Box::new(left), Box::new(right))
            } else {
                Expr::Or(Box::new(left), Box::new(right))
            };
        }
    }

    fn not_expr(&mut self) -> PResult<Expr> {
        if self.is(&Tok::Not) || self.is_ident("not") {
            self.advance();
            self.enter()?;
            let e = self.not_expr();
            self.leave();
            return Ok(Expr::Not(Box::new(e?)));
        }
        self.cmp_expr()
    }

    fn cmp_expr(&mut self) -> PResult<Expr> {
        let lspan = self.span();
        let left = self.arith(0)?;
        let op = match self.tok() {
            Tok::Eq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            Tok::Match => CmpOp::Match,
            Tok::NoMatch => CmpOp::NoMatch,
            Tok::Gt => CmpOp::Gt,
            Tok::Lt => CmpOp::Lt,
            Tok::Ge => CmpOp::Ge,
            Tok::Le => CmpOp::Le,
            Tok::Assign => {
                return self.expected("`==` (`=` is assignment)");
            }
            _ => {
                if let Expr::Kw(k, _) = left
                    && k != Keyword::MaxLen
                {
                    return self.error_at(
                        lspan,
                        format!(
                            "expected a comparison operator after `{}`, found {}",
                            kw_text(k),
                            self.tok().describe()
                        ),
                    );
                }
                return Ok(left);
            }
        };
        let span = self.span();
        self.advance();
        let right = self.arith(0)?;
        Ok(Expr::Cmp {
            op,
            left: Box::new(left),
            right: Box::new(right),
            span,
        })
    }

    /// Binary arithmetic by precedence level: 0 `|`, 1 `^`, 2 `&`, 3 `+ -`, 4 `* / %`.
    fn arith(&mut self, level: u8) -> PResult<Expr> {
        if level > 4 {
            return self.unary();
        }
        let mut left = self.arith(level + 1)?;
        loop {
            let op = match (level, self.tok()) {
                (0, Tok::Pipe) => ArithOp::BitOr,
                (1, Tok::Caret) => ArithOp::BitXor,
                (2, Tok::Amp) => ArithOp::BitAnd,
                (3, Tok::Plus) => ArithOp::Add,
                (3, Tok::Minus) => ArithOp::Sub,
                (4, Tok::Star) => ArithOp::Mul,
                (4, Tok::Slash) => ArithOp::Div,
                (4, Tok::Percent) => ArithOp::Mod,
                _ => return Ok(left),
            };
            let span = self.span();
            self.advance();
            let right = self.arith(level + 1)?;
            left = Expr::Arith {
                op,
                left: Box::new(left),
                right: Box::new(right),
                span,
            };
        }
    }

    fn unary(&mut self) -> PResult<Expr> {
        self.enter()?;
        let r = match self.tok() {
            Tok::Minus => {
                self.advance();
                match self.unary() {
                    Ok(Expr::Int(n)) => Ok(Expr::Int(n.wrapping_neg())),
                    Ok(e) => Ok(Expr::Neg(Box::new(e))),
                    Err(f) => Err(f),
                }
            }
            Tok::Tilde => {
                self.advance();
                self.unary().map(|e| Expr::BitNot(Box::new(e)))
            }
            _ => self.primary(),
        };
        self.leave();
        r
    }

    fn primary(&mut self) -> PResult<Expr> {
        let span = self.span();
        match self.tok().clone() {
            Tok::LParen => {
                self.advance();
                let e = self.expr()?;
                self.expect(Tok::RParen)?;
                Ok(e)
            }
            Tok::LBrack => {
                self.advance();
                let e = self.expr()?;
                self.expect(Tok::RBrack)?;
                Ok(e)
            }
            Tok::Int(n) => {
                self.advance();
                Ok(Expr::Int(n))
            }
            Tok::Str(s) => {
                self.advance();
                Ok(Expr::Str(s))
            }
            Tok::Pv(p) => {
                self.advance();
                Ok(Expr::Pv(Pv { spec: *p, span }))
            }
            Tok::Ipv4(_) | Tok::Ipv6(_) => {
                let a = self.ip("an address")?;
                Ok(match self.net_suffix(a)? {
                    Some(n) => Expr::Net(n),
                    None => Expr::Ip(a),
                })
            }
            Tok::Ident(w) => {
                if self.at(1).tok == Tok::LParen || self.dotted_call_ahead() {
                    return Ok(Expr::Call(self.call()?));
                }
                if w == "msg"
                    && self.at(1).tok == Tok::Colon
                    && matches!(&self.at(2).tok, Tok::Ident(l) if l == "len")
                {
                    self.advance();
                    self.advance();
                    self.advance();
                    return Ok(Expr::Kw(Keyword::MsgLen, span));
                }
                if let Some(k) = keyword(&w) {
                    self.advance();
                    return Ok(Expr::Kw(k, span));
                }
                if w == "null" {
                    self.advance();
                    return Ok(Expr::Null);
                }
                if let Some(b) = bool_word(&w) {
                    self.advance();
                    return Ok(Expr::Int(i64::from(b)));
                }
                if matches!(w.as_str(), "and" | "or" | "not" | "if" | "else") {
                    return self.expected("an operand");
                }
                Ok(Expr::Ident(self.host_name()?))
            }
            _ => self.expected("an operand"),
        }
    }
}

fn kw_text(k: Keyword) -> &'static str {
    match k {
        Keyword::Method => "method",
        Keyword::Uri => "uri",
        Keyword::Status => "status",
        Keyword::FromUri => "from_uri",
        Keyword::ToUri => "to_uri",
        Keyword::SrcIp => "src_ip",
        Keyword::DstIp => "dst_ip",
        Keyword::SrcPort => "src_port",
        Keyword::DstPort => "dst_port",
        Keyword::Proto => "proto",
        Keyword::Af => "af",
        Keyword::MsgLen => "msg:len",
        Keyword::Myself => "myself",
        Keyword::MaxLen => "max_len",
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_str;
    use super::*;

    fn cond(src: &str) -> Expr {
        let cfg = parse_str("t.cfg", &format!("route {{ if ({}) exit; }}", src))
            .unwrap_or_else(|e| panic!("{e}"));
        match &cfg.routes[0].body[0] {
            Stmt::If { cond, .. } => cond.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cfgengine_with_and_without_assign() {
        for src in [
            "listen=udp:127.0.0.1:5060\ncfgengine \"lua\"\nchildren=2\n",
            "listen=udp:127.0.0.1:5060\ncfgengine = \"lua\"\nchildren=2\n",
            "cfgengine \"lua\";\nlisten=udp:127.0.0.1:5060\n",
        ] {
            let cfg = parse_str("t.cfg", src).unwrap_or_else(|e| panic!("{src}: {e}"));
            let g = cfg
                .globals
                .iter()
                .find(|g| g.name == "cfgengine")
                .unwrap_or_else(|| panic!("{src}"));
            assert_eq!(g.value, GlobalValue::Str("lua".into()), "{src}");
            let listen = cfg.globals.iter().find(|g| g.name == "listen").unwrap();
            assert!(
                matches!(&listen.value, GlobalValue::Sockets(v) if v.len() == 1),
                "{src}"
            );
        }
    }

    fn call(name: &str) -> Box<Expr> {
        Box::new(Expr::Call(Call {
            name: name.into(),
            args: vec![],
            span: Span::default(),
        }))
    }

    /// Strip spans for structural comparison.
    fn norm(e: &Expr) -> Expr {
        let b = |x: &Expr| Box::new(norm(x));
        match e {
            Expr::Call(c) => Expr::Call(Call {
                name: c.name.clone(),
                args: vec![],
                span: Span::default(),
            }),
            Expr::And(l, r) => Expr::And(b(l), b(r)),
            Expr::Or(l, r) => Expr::Or(b(l), b(r)),
            Expr::Not(x) => Expr::Not(b(x)),
            other => other.clone(),
        }
    }

    #[test]
    fn dotted_function_names() {
        assert_eq!(norm(&cond("cnt.inc() && !x.y.z()")), {
            let not = Box::new(Expr::Not(call("x.y.z")));
            Expr::And(call("cnt.inc"), not)
        });
        let cfg = parse_str("t.cfg", "route { cnt.add(\"a\", 2); }").unwrap();
        match &cfg.routes[0].body[0] {
            Stmt::Call(c) => assert_eq!((c.name.as_str(), c.args.len()), ("cnt.add", 2)),
            other => panic!("{other:?}"),
        }
        // a space breaks the name: `cnt .inc()` is not a call
        assert!(parse_str("t.cfg", "route { cnt .inc(); }").is_err());
    }

    #[test]
    fn and_or_equal_precedence_left_assoc() {
        assert_eq!(
            norm(&cond("a() || b() && c()")),
            Expr::And(Box::new(Expr::Or(call("a"), call("b"))), call("c"))
        );
        assert_eq!(
            norm(&cond("a() && b() || c()")),
            Expr::Or(Box::new(Expr::And(call("a"), call("b"))), call("c"))
        );
        assert_eq!(
            norm(&cond("a() or b() and not c()")),
            Expr::And(
                Box::new(Expr::Or(call("a"), call("b"))),
                Box::new(Expr::Not(call("c")))
            )
        );
        assert_eq!(
            norm(&cond("a() || (b() && c())")),
            Expr::Or(call("a"), Box::new(Expr::And(call("b"), call("c"))))
        );
    }

    #[test]
    fn not_applies_to_comparison() {
        match cond("!uri==myself") {
            Expr::Not(inner) => match *inner {
                Expr::Cmp {
                    op, left, right, ..
                } => {
                    assert_eq!(op, CmpOp::Eq);
                    assert!(matches!(*left, Expr::Kw(Keyword::Uri, _)));
                    assert!(matches!(*right, Expr::Kw(Keyword::Myself, _)));
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn arithmetic_precedence() {
        let cfg = parse_str("t", "route { $var(x) = 1 + 2 * 3 | 4; }").unwrap();
        let Stmt::Assign(a) = &cfg.routes[0].body[0] else {
            panic!()
        };
        // (1 + (2 * 3)) | 4
        let Expr::Arith {
            op: ArithOp::BitOr,
            left,
            ..
        } = &a.rhs
        else {
            panic!("{:?}", a.rhs)
        };
        let Expr::Arith {
            op: ArithOp::Add,
            right,
            ..
        } = &**left
        else {
            panic!()
        };
        assert!(matches!(
            **right,
            Expr::Arith {
                op: ArithOp::Mul,
                ..
            }
        ));
    }

    #[test]
    fn nets_and_msg_len() {
        match cond("src_ip == 10.1.0.0/16") {
            Expr::Cmp { right, .. } => assert_eq!(
                *right,
                Expr::Net(IpNet {
                    addr: "10.1.0.0".parse().unwrap(),
                    mask: "255.255.0.0".parse().unwrap()
                })
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            cond("msg:len >= max_len"),
            Expr::Cmp { op: CmpOp::Ge, .. }
        ));
    }

    #[test]
    fn seeds_parse_with_order_and_spans() {
        let text = include_str!("../../../tests/data/cfg/good/seed-mysql-auth.cfg");
        let cfg = parse_str("mysql-auth.cfg", text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.loadmodules.len(), 12);
        assert_eq!(cfg.modparams.len(), 6);
        assert_eq!(cfg.routes.len(), 2);
        // loadmodule items come before modparam items
        let first_mp = cfg
            .order
            .iter()
            .position(|i| matches!(i, ItemRef::ModParam(_)))
            .unwrap();
        let last_lm = cfg
            .order
            .iter()
            .rposition(|i| matches!(i, ItemRef::LoadModule(_)))
            .unwrap();
        assert!(last_lm < first_mp);
        assert_eq!(cfg.loadmodules[0].span, Span::new(0, 22, 1));
        assert_eq!(
            cfg.modparams[3].value,
            ModParamValue::Int(1),
            "calculate_ha1 yes"
        );
        let rendered = cfg.render(cfg.loadmodules[0].span, "module `mysql` not found");
        assert!(rendered.starts_with(
            "mysql-auth.cfg:22:1: module `mysql` not found\n  loadmodule \"mysql.so\"\n  ^"
        ));
    }

    #[test]
    fn deep_input_does_not_overflow() {
        for n in [50usize, 1000, 100_000] {
            let src = format!(
                "route {{ if ({}a(){}) exit; }}",
                "(".repeat(n),
                ")".repeat(n)
            );
            let _ = parse_str("t", &src);
            let src = format!("route {{ {} }}", "{".repeat(n));
            let _ = parse_str("t", &src);
            let src = format!("route {{ $var(x) = {}1; }}", "-".repeat(n));
            let _ = parse_str("t", &src);
            let src = format!("route {{ if ({}a()) exit; }}", "!".repeat(n));
            let _ = parse_str("t", &src);
            let src = format!("route {{ {} exit; }}", "if (a()) ".repeat(n));
            let _ = parse_str("t", &src);
        }
    }
}
