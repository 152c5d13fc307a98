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

/// The TLS library the TLS transport is built with (`core/Cargo.toml`; `None` in a
/// build without TLS).
pub const TLS_LIBRARY: Option<&str> = Some("rustls 0.23 (ring provider; TLS 1.2, 1.3)");

/// The full `-V` text (no module list).
pub fn full_version() -> String {
    full_version_with(&[])
}

/// The full `-V` text: 1.2's lines (the flags line names the transports built, as
/// 1.2's USE_TCP/USE_TLS), then the transports, the TLS library and the built-in
/// modules.
pub fn full_version_with(modules: &[&str]) -> String {
    use crate::globals::Proto;
    use crate::transport::served::BUILT;
    let mut flags = String::from(
        "STATS: On, SHM_MEM, SHM_MMAP, PKG_MALLOC (Rust), SHM_ALLOC (openser-rs boundary-tag), USE_IPV6",
    );
    if BUILT.contains(&Proto::Tcp) {
        flags.push_str(", USE_TCP");
    }
    if BUILT.contains(&Proto::Tls) {
        flags.push_str(", USE_TLS");
    }
    flags.push_str(", FAST_LOCK-ADAPTIVE_WAIT");
    let transports: Vec<&str> = BUILT.iter().map(|p| p.as_str()).collect();
    let mut mods: Vec<&str> = modules.to_vec();
    mods.sort_unstable();
    format!(
        "{}\nflags: {flags}\n\
         ADAPTIVE_WAIT_LOOPS={ADAPTIVE_WAIT_LOOPS}, MAX_RECV_BUFFER_SIZE {MAX_RECV_BUFFER_SIZE}, MAX_LISTEN {MAX_LISTEN}, MAX_URI_SIZE {MAX_URI_SIZE}, BUF_SIZE {BUF_SIZE}\n\
         poll method support: poll, epoll_lt, epoll_et, sigio_rt, select.\n\
         transports: {}\n\
         TLS library: {}\n\
         modules ({}): {}\n\
         implementation: openser-rs {RS_VERSION}\n",
        version_line(),
        transports.join(", "),
        TLS_LIBRARY.unwrap_or("none (no TLS transport in this build)"),
        mods.len(),
        mods.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_text_lists_transports_and_modules() {
        let v = full_version_with(&["tm", "acc", "sl"]);
        assert!(v.starts_with("version: openser 1.2.0 ("), "{v}");
        assert!(v.contains("\nflags: STATS: On, "), "{v}");
        assert!(v.contains(", USE_TCP, USE_TLS, "), "{v}");
        assert!(v.contains("\ntransports: udp, tcp, tls"), "{v}");
        assert!(v.contains("\nTLS library: rustls 0.23"), "{v}");
        assert!(v.contains("\nTLS library: "), "{v}");
        assert!(v.contains("\nmodules (3): acc, sl, tm\n"), "{v}");
    }
}
