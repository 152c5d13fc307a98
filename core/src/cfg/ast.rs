//! The configuration AST, as produced by the parser and consumed by fixup and the
//! interpreter. Every node that a later stage may reject carries a `Span`.

pub use super::error::{Source, Span};
pub use super::pv::{AvpName, FmtPart, PvIndex, PvParam, PvSpec, TrParam, Transform};
use std::net::IpAddr;

/// A parsed configuration. The items are kept in per-kind vectors; `order` lists all
/// of them in source order (fixup needs `loadmodule` before `modparam`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub globals: Vec<GlobalAssign>,
    pub loadmodules: Vec<LoadModule>,
    pub modparams: Vec<ModParam>,
    pub routes: Vec<RouteBlock>,
    pub order: Vec<ItemRef>,
    /// Source files; `Span::file` indexes this.
    pub sources: Vec<Source>,
}

/// One top-level item, as an index into the matching vector of `Config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemRef {
    Global(usize),
    LoadModule(usize),
    ModParam(usize),
    Route(usize),
}

/// `name = value`
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalAssign {
    pub name: String,
    pub value: GlobalValue,
    /// position of the name
    pub span: Span,
    /// position of the value
    pub value_span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GlobalValue {
    Int(i64),
    /// `yes/true/on/enable` and `no/false/off/disable`
    Bool(bool),
    Str(String),
    /// a bare word or dotted host name (`LOG_LOCAL0`, `epoll`, `sip.example.com`)
    Ident(String),
    Ip(IpAddr),
    /// `listen` and `alias`: one or more `[proto:]host[:port]`
    Sockets(Vec<SockSpec>),
    /// `dst_blacklist = id:{ (proto, ip[/mask], port, "pattern"), ... }`
    Blacklist(Blacklist),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
    Tls,
    Sctp,
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    /// host name, interface name, or `*`
    Name(String),
}

/// `[proto:]host[:port]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SockSpec {
    pub proto: Option<Proto>,
    pub host: Host,
    pub port: Option<u16>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blacklist {
    pub name: String,
    pub entries: Vec<BlacklistEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlacklistEntry {
    pub proto: Option<Proto>,
    pub net: IpNet,
    pub port: u16,
    pub pattern: String,
    pub span: Span,
}

/// An address with a mask (`10.0.0.0/8` gives mask 255.0.0.0; `/255.255.0.0` kept as
/// written). A plain address in a net position has an all-ones mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub mask: IpAddr,
}

/// `loadmodule "path"`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadModule {
    pub path: String,
    pub span: Span,
}

/// `modparam("module-regex", "param", value)`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModParam {
    pub module: String,
    pub param: String,
    pub value: ModParamValue,
    pub span: Span,
    pub value_span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModParamValue {
    /// numbers and `yes/no/...` (1/0)
    Int(i64),
    Str(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// `route`, `route[N]`, `request_route`
    Request,
    /// `onreply_route`, `onreply_route[N]`, `reply_route`
    OnReply,
    /// `failure_route[N]`
    Failure,
    /// `branch_route[N]`, `onbranch_route[N]`
    Branch,
    /// `error_route`
    Error,
    /// `startup_route` (extension)
    Startup,
    /// `timer_route[name, seconds]` (extension)
    Timer,
    /// `event_route[name]` (extension)
    Event,
    /// `local_route` (extension)
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteName {
    /// numeric index; the unindexed blocks (`route {}`, `onreply_route {}`,
    /// `error_route {}`, `startup_route {}`, `local_route {}`) are `Num(0)`
    Num(u32),
    /// named route (extension)
    Named(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteBlock {
    pub kind: RouteKind,
    pub name: RouteName,
    /// `timer_route[name, seconds]`: the interval in seconds
    pub interval: Option<u32>,
    pub body: Block,
    pub span: Span,
}

pub type Block = Vec<Stmt>;

#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    /// module function or core action: `name(args);` or `name;`
    Call(Call),
    /// `$pv op expr;`
    Assign(Assign),
    If {
        cond: Expr,
        then: Block,
        els: Option<Block>,
        span: Span,
    },
    /// `switch ($pv) { case ...: ... }`. Arms in source order; execution starts at the
    /// matching arm (or `default`) and falls through until `Break`.
    Switch { pv: Pv, arms: Vec<Case>, span: Span },
    /// `while (cond) stmt` (extension; limited by `max_while_loops`)
    While { cond: Expr, body: Block, span: Span },
    /// `{ ... }` written as a statement
    Block(Block),
    /// `exit` / `exit()`
    Exit(Span),
    /// `drop` / `drop()`
    Drop(Span),
    /// `return`, `return(n)`; `None` = 1
    Return { value: Option<i64>, span: Span },
    /// `route(N)` / `route(NAME)`
    Route { target: RouteName, span: Span },
    /// `break` / `esac` (inside `switch`, or `while`)
    Break(Span),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub label: CaseLabel,
    pub body: Block,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseLabel {
    Int(i64),
    Str(String),
    Default,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: String,
    pub args: Vec<Arg>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub value: ArgValue,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ArgValue {
    Str(String),
    Int(i64),
    /// bare word or dotted host name; `uri:host`-style words are joined with `:`
    Ident(String),
    Pv(PvSpec),
    Ip(IpAddr),
    Net(IpNet),
    /// `proto:host[:port]` or `host:port`
    Sock(SockSpec),
}

/// A pseudo-variable use, with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Pv {
    pub spec: PvSpec,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assign {
    pub lhs: Pv,
    pub op: AssignOp,
    pub rhs: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignOp {
    /// `=`
    Set,
    /// `+=`
    Add,
    /// `-=`
    Sub,
    /// `*=`
    Mul,
    /// `/=`
    Div,
    /// `%=`
    Mod,
    /// `&=`
    BitAnd,
    /// `|=`
    BitOr,
    /// `^=`
    BitXor,
}

/// Keyword operands of conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    Method,
    Uri,
    /// `status` (a lexer alias of `uri` in 1.2; kept apart here)
    Status,
    FromUri,
    ToUri,
    SrcIp,
    DstIp,
    SrcPort,
    DstPort,
    Proto,
    Af,
    /// `msg:len`
    MsgLen,
    Myself,
    /// `max_len`
    MaxLen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `=~`
    Match,
    /// `!~`
    NoMatch,
    Gt,
    Lt,
    Ge,
    Le,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    BitAnd,
    BitOr,
    BitXor,
}

/// Conditions and right-hand sides share one expression type. `&&`/`||` are
/// `And`/`Or` built left-associatively with equal precedence (`a || b && c` is
/// `And(Or(a, b), c)`). `[ e ]` in a condition is just `e`.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Int(i64),
    Str(String),
    /// a bare word (`INVITE`, `udp`, `inet`, a host name)
    Ident(String),
    Null,
    Kw(Keyword, Span),
    Pv(Pv),
    Ip(IpAddr),
    Net(IpNet),
    /// a function call used as a value (its return code)
    Call(Call),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    /// comparison; `span` is the operator's position
    Cmp {
        op: CmpOp,
        left: Box<Expr>,
        right: Box<Expr>,
        span: Span,
    },
    /// arithmetic / bitwise; `span` is the operator's position
    Arith {
        op: ArithOp,
        left: Box<Expr>,
        right: Box<Expr>,
        span: Span,
    },
    /// unary minus
    Neg(Box<Expr>),
    /// `~`
    BitNot(Box<Expr>),
}

impl Config {
    /// Render a message at `span` the way parse errors are rendered
    /// (`file:line:col: msg`, source line, caret).
    pub fn render(&self, span: Span, msg: &str) -> String {
        super::error::render_in(&self.sources, span, msg)
    }

    /// The route block of `kind` and `name`, if defined.
    pub fn route(&self, kind: RouteKind, name: &RouteName) -> Option<&RouteBlock> {
        self.routes
            .iter()
            .find(|r| r.kind == kind && r.name == *name)
    }
}
