//! Version strings and compile-time constants shown by `-V`.

pub const NAME: &str = "openser";
pub const VERSION: &str = "1.2.0";
pub const RS_VERSION: &str = env!("CARGO_PKG_VERSION");
pub const DEFAULT_CFG_FILE: &str = "/usr/local/etc/openser/openser.cfg";
pub const BUF_SIZE: usize = 65535;
pub const MAX_RECV_BUFFER_SIZE: usize = 262144;
pub const MAX_LISTEN: usize = 16;
pub const MAX_URI_SIZE: usize = 1024;
pub const ADAPTIVE_WAIT_LOOPS: usize = 1024;

pub fn arch_os() -> String {
    format!("{}/{}", std::env::consts::ARCH, std::env::consts::OS)
}

/// `version: openser 1.2.0 (x86_64/linux)`
pub fn version_line() -> String {
    format!("version: {NAME} {VERSION} ({})", arch_os())
}

/// The default `Server:` header line (without CRLF).
pub fn server_header() -> String {
    format!("Server: OpenSER ({VERSION} ({}))", arch_os())
}

pub fn user_agent_header() -> String {
    format!("User-Agent: OpenSER ({VERSION} ({}))", arch_os())
}

/// The full `-V` text.
pub fn full_version() -> String {
    format!(
        "{}\nflags: STATS: On, SHM_MEM, SHM_MMAP, PKG_MALLOC (Rust), SHM_ALLOC (openser-rs boundary-tag), USE_IPV6, FAST_LOCK-ADAPTIVE_WAIT\n\
         ADAPTIVE_WAIT_LOOPS={ADAPTIVE_WAIT_LOOPS}, MAX_RECV_BUFFER_SIZE {MAX_RECV_BUFFER_SIZE}, MAX_LISTEN {MAX_LISTEN}, MAX_URI_SIZE {MAX_URI_SIZE}, BUF_SIZE {BUF_SIZE}\n\
         poll method support: poll, epoll_lt, epoll_et, sigio_rt, select.\n\
         implementation: openser-rs {RS_VERSION}\n",
        version_line()
    )
}
