//! The usrloc module's parameters and start-up: the `modparam` cells, their check,
//! mod_init, the timer and the per-domain statistics.
//!
//! Domains are registered by other modules' fixups (registrar's `save("location")`)
//! before fork; each new domain gets its `usrloc:<domain>-users`, `-contacts` and
//! `-expires` statistics (for up to [`MAX_STAT_DOMAINS`] domains).

use openser_core::module::{BoolParam, IntParam, StrParam};
use openser_core::stats;

use super::{ColumnNames, UsrlocParams, domains};

/// The `modparam` cells. [`Cells::new`] holds the 1.2 defaults, the only place they
/// are written down ([`UsrlocParams::default`] reads a fresh set).
pub struct Cells {
    pub db_url: StrParam,
    pub db_mode: IntParam,
    pub timer_interval: IntParam,
    pub use_domain: BoolParam,
    pub desc_time_order: BoolParam,
    pub matching_mode: IntParam,
    pub cseq_delay: IntParam,
    pub fetch_rows: IntParam,
    pub hash_size: IntParam,
    pub nat_bflag: IntParam,
    pub user_column: StrParam,
    pub domain_column: StrParam,
    pub contact_column: StrParam,
    pub expires_column: StrParam,
    pub q_column: StrParam,
    pub callid_column: StrParam,
    pub cseq_column: StrParam,
    pub flags_column: StrParam,
    pub cflags_column: StrParam,
    pub user_agent_column: StrParam,
    pub received_column: StrParam,
    pub path_column: StrParam,
    pub socket_column: StrParam,
    pub methods_column: StrParam,
}

impl Cells {
    pub const fn new() -> Cells {
        Cells {
            db_url: StrParam::new("mysql://openser:openserrw@localhost/openser"),
            db_mode: IntParam::new(0),
            timer_interval: IntParam::new(60),
            use_domain: BoolParam::new(false),
            desc_time_order: BoolParam::new(false),
            matching_mode: IntParam::new(0),
            cseq_delay: IntParam::new(20),
            fetch_rows: IntParam::new(2000),
            hash_size: IntParam::new(0),
            nat_bflag: IntParam::new(-1),
            user_column: StrParam::new("username"),
            domain_column: StrParam::new("domain"),
            contact_column: StrParam::new("contact"),
            expires_column: StrParam::new("expires"),
            q_column: StrParam::new("q"),
            callid_column: StrParam::new("callid"),
            cseq_column: StrParam::new("cseq"),
            flags_column: StrParam::new("flags"),
            cflags_column: StrParam::new("cflags"),
            user_agent_column: StrParam::new("user_agent"),
            received_column: StrParam::new("received"),
            path_column: StrParam::new("path"),
            socket_column: StrParam::new("socket"),
            methods_column: StrParam::new("methods"),
        }
    }

    /// The values of these cells as a [`UsrlocParams`].
    pub fn values(&self) -> UsrlocParams {
        let s = |p: &StrParam| p.get().to_owned();
        UsrlocParams {
            db_url: s(&self.db_url),
            db_mode: self.db_mode.get() as i32,
            timer_interval: self.timer_interval.get_u32(),
            use_domain: self.use_domain.get(),
            desc_time_order: self.desc_time_order.get(),
            matching_mode: self.matching_mode.get() as i32,
            cseq_delay: self.cseq_delay.get(),
            fetch_rows: self.fetch_rows.get_u32(),
            hash_size: self.hash_size.get_u32(),
            nat_bflag: self.nat_bflag.get() as i32,
            case_sensitive: false,
            columns: ColumnNames {
                user: s(&self.user_column),
                domain: s(&self.domain_column),
                contact: s(&self.contact_column),
                expires: s(&self.expires_column),
                q: s(&self.q_column),
                callid: s(&self.callid_column),
                cseq: s(&self.cseq_column),
                flags: s(&self.flags_column),
                cflags: s(&self.cflags_column),
                user_agent: s(&self.user_agent_column),
                received: s(&self.received_column),
                path: s(&self.path_column),
                socket: s(&self.socket_column),
                methods: s(&self.methods_column),
                last_modified: "last_modified".to_owned(),
            },
        }
    }
}

impl Default for Cells {
    fn default() -> Self {
        Cells::new()
    }
}

/// The module's parameters, as `modparam` set them.
pub static P: Cells = Cells::new();

/// `db_mode`: 0 memory only, 1 write-through, 2 write-back, 3 DB only.
pub fn check_db_mode(m: i64) -> Result<(), String> {
    if !(0..=3).contains(&m) {
        return Err(format!(
            "usrloc: invalid db_mode {m} (0 memory only, 1 write-through, 2 write-back, 3 DB only)"
        ));
    }
    Ok(())
}

/// `matching_mode`: 0 contact only, 1 contact and Call-ID.
pub fn check_matching_mode(m: i64) -> Result<(), String> {
    if !(0..=1).contains(&m) {
        return Err(format!("usrloc: invalid matching_mode {m}"));
    }
    Ok(())
}

pub fn check_cseq_delay(d: i64) -> Result<(), String> {
    if d < 0 {
        return Err(format!("usrloc: invalid cseq_delay {d}"));
    }
    Ok(())
}

/// Check a whole set of parameters (the `modparam` rows check each value as it is set).
pub fn check_params(p: &UsrlocParams) -> Result<(), String> {
    check_db_mode(i64::from(p.db_mode))?;
    check_matching_mode(i64::from(p.matching_mode))?;
    check_cseq_delay(p.cseq_delay)
}

pub(super) fn mod_init() -> Result<(), String> {
    let p = super::params();
    check_params(&p)?;
    if p.db_mode != 0 {
        openser_core::db::check_url(&p.db_url).map_err(|e| format!("usrloc: {e}"))?;
    }
    super::db::set_mode(p.db_mode);
    super::repair::init_debug_pause();
    Ok(())
}

pub(super) fn destroy() {
    super::flush_to_db();
}

pub(super) fn ul_timer(ticks: u64) {
    super::timer_tick(openser_core::clock::now(), ticks);
}

/// Per-domain statistics exist for the first this many domains.
pub const MAX_STAT_DOMAINS: usize = 8;

macro_rules! dom_stat_fns {
    ($($i:literal => $u:ident, $c:ident, $e:ident;)*) => {
        $(
            fn $u() -> u64 { domains().get($i).map_or(0, |d| d.users()) }
            fn $c() -> u64 { domains().get($i).map_or(0, |d| d.contacts()) }
            fn $e() -> u64 { domains().get($i).map_or(0, |d| d.expires()) }
        )*
        const DOM_STAT_FNS: [[fn() -> u64; 3]; MAX_STAT_DOMAINS] = [$([$u, $c, $e]),*];
    };
}

dom_stat_fns! {
    0 => u0, c0, e0;
    1 => u1, c1, e1;
    2 => u2, c2, e2;
    3 => u3, c3, e3;
    4 => u4, c4, e4;
    5 => u5, c5, e5;
    6 => u6, c6, e6;
    7 => u7, c7, e7;
}

/// Register the statistics of the domain at index `idx` named `name` (called when the
/// domain is created). `<domain>-expires` is computed too, so MI `reset_statistics`
/// cannot reset it (deviation: 1.2 allows resetting it).
pub(super) fn domain_stats(idx: usize, name: &str) {
    let Some(f) = DOM_STAT_FNS.get(idx) else {
        openser_core::log_warn!(
            "no statistics for domain {name} (more than {MAX_STAT_DOMAINS} domains)"
        );
        return;
    };
    stats::register_func("usrloc", &format!("{name}-users"), f[0]);
    stats::register_func("usrloc", &format!("{name}-contacts"), f[1]);
    stats::register_func("usrloc", &format!("{name}-expires"), f[2]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EXPORTS;
    use openser_core::module::ModParamValue;

    #[test]
    fn db_mode_out_of_range_is_a_startup_error() {
        let mut p = UsrlocParams::default();
        assert!(check_params(&p).is_ok());
        p.db_mode = 4;
        assert_eq!(
            check_params(&p).unwrap_err(),
            "usrloc: invalid db_mode 4 (0 memory only, 1 write-through, 2 write-back, 3 DB only)"
        );
        for m in 0..=3 {
            p.db_mode = m;
            assert!(check_params(&p).is_ok());
        }
        p.db_mode = 1;
        assert!(check_params(&p).is_ok());
        p.db_mode = 0;
        p.matching_mode = 3;
        assert!(check_params(&p).is_err());
    }

    #[test]
    fn params_exported() {
        for n in [
            "db_url",
            "db_mode",
            "timer_interval",
            "use_domain",
            "hash_size",
            "nat_bflag",
        ] {
            assert!(EXPORTS.params.iter().any(|p| p.name == n), "{n}");
        }
        let set = |n: &str, v: ModParamValue| EXPORTS.param(n).unwrap().set("usrloc", &v);
        assert!(set("timer_interval", ModParamValue::Int(-1)).is_err());
        assert!(set("db_mode", ModParamValue::Str("x".into())).is_err());
    }
}
