//! The usrloc module descriptor: `modparam`s, start-up (timer, statistics).
//!
//! Domains are registered by other modules' fixups (registrar's `save("location")`)
//! before fork; each new domain gets its `usrloc:<domain>-users`, `-contacts` and
//! `-expires` statistics (for up to [`MAX_STAT_DOMAINS`] domains).

use crate::core::module::{ModParamValue, ModuleExports, ParamExport};
use crate::core::stats;

use super::{PARAMS, UsrlocParams, domains};

fn update(f: impl FnOnce(&mut UsrlocParams)) {
    if let Ok(mut g) = PARAMS.write() {
        let mut p = g.clone().unwrap_or_default();
        f(&mut p);
        *g = Some(p);
    }
}

macro_rules! p_int {
    ($f:ident, $field:ident, $t:ty) => {
        fn $f(v: &ModParamValue) -> Result<(), String> {
            let x: $t = v.ranged("usrloc", stringify!($field))?;
            update(|p| p.$field = x);
            Ok(())
        }
    };
}
macro_rules! p_bool {
    ($f:ident, $field:ident) => {
        fn $f(v: &ModParamValue) -> Result<(), String> {
            let x = v.int("usrloc", stringify!($field))? != 0;
            update(|p| p.$field = x);
            Ok(())
        }
    };
}
macro_rules! p_col {
    ($f:ident, $field:ident) => {
        fn $f(v: &ModParamValue) -> Result<(), String> {
            let x = v.text();
            update(|p| p.columns.$field = x);
            Ok(())
        }
    };
}

fn set_db_url(v: &ModParamValue) -> Result<(), String> {
    let s = v.text();
    update(|p| p.db_url = s);
    Ok(())
}
p_int!(set_db_mode, db_mode, i32);
p_int!(set_timer_interval, timer_interval, u32);
p_bool!(set_use_domain, use_domain);
p_bool!(set_desc_time_order, desc_time_order);
p_int!(set_matching_mode, matching_mode, i32);
p_int!(set_cseq_delay, cseq_delay, i64);
p_int!(set_fetch_rows, fetch_rows, u32);
p_int!(set_hash_size, hash_size, u32);
p_int!(set_nat_bflag, nat_bflag, i32);
p_col!(set_user_column, user);
p_col!(set_domain_column, domain);
p_col!(set_contact_column, contact);
p_col!(set_expires_column, expires);
p_col!(set_q_column, q);
p_col!(set_callid_column, callid);
p_col!(set_cseq_column, cseq);
p_col!(set_flags_column, flags);
p_col!(set_cflags_column, cflags);
p_col!(set_user_agent_column, user_agent);
p_col!(set_received_column, received);
p_col!(set_path_column, path);
p_col!(set_socket_column, socket);
p_col!(set_methods_column, methods);

static PARAM_EXPORTS: &[ParamExport] = &[
    ParamExport {
        name: "db_url",
        set: set_db_url,
    },
    ParamExport {
        name: "db_mode",
        set: set_db_mode,
    },
    ParamExport {
        name: "timer_interval",
        set: set_timer_interval,
    },
    ParamExport {
        name: "use_domain",
        set: set_use_domain,
    },
    ParamExport {
        name: "desc_time_order",
        set: set_desc_time_order,
    },
    ParamExport {
        name: "matching_mode",
        set: set_matching_mode,
    },
    ParamExport {
        name: "cseq_delay",
        set: set_cseq_delay,
    },
    ParamExport {
        name: "fetch_rows",
        set: set_fetch_rows,
    },
    ParamExport {
        name: "hash_size",
        set: set_hash_size,
    },
    ParamExport {
        name: "nat_bflag",
        set: set_nat_bflag,
    },
    ParamExport {
        name: "user_column",
        set: set_user_column,
    },
    ParamExport {
        name: "domain_column",
        set: set_domain_column,
    },
    ParamExport {
        name: "contact_column",
        set: set_contact_column,
    },
    ParamExport {
        name: "expires_column",
        set: set_expires_column,
    },
    ParamExport {
        name: "q_column",
        set: set_q_column,
    },
    ParamExport {
        name: "callid_column",
        set: set_callid_column,
    },
    ParamExport {
        name: "cseq_column",
        set: set_cseq_column,
    },
    ParamExport {
        name: "flags_column",
        set: set_flags_column,
    },
    ParamExport {
        name: "cflags_column",
        set: set_cflags_column,
    },
    ParamExport {
        name: "user_agent_column",
        set: set_user_agent_column,
    },
    ParamExport {
        name: "received_column",
        set: set_received_column,
    },
    ParamExport {
        name: "path_column",
        set: set_path_column,
    },
    ParamExport {
        name: "socket_column",
        set: set_socket_column,
    },
    ParamExport {
        name: "methods_column",
        set: set_methods_column,
    },
];

/// The usrloc module (no script functions).
pub static EXPORTS: ModuleExports = ModuleExports {
    name: "usrloc",
    params: PARAM_EXPORTS,
    cmds: &[],
    pvs: &[],
    mod_init: Some(mod_init),
    child_init: None,
    destroy: Some(destroy),
    pre_script: None,
    reply_hook: None,
};

/// Check the parameters (start-up error for what is not built).
pub fn check_params(p: &UsrlocParams) -> Result<(), String> {
    if !(0..=3).contains(&p.db_mode) {
        return Err(format!(
            "usrloc: invalid db_mode {} (0 memory only, 1 write-through, 2 write-back, 3 DB only)",
            p.db_mode
        ));
    }
    if !(0..=1).contains(&p.matching_mode) {
        return Err(format!("usrloc: invalid matching_mode {}", p.matching_mode));
    }
    if p.cseq_delay < 0 {
        return Err(format!("usrloc: invalid cseq_delay {}", p.cseq_delay));
    }
    Ok(())
}

fn mod_init() -> Result<(), String> {
    let p = super::params();
    check_params(&p)?;
    if p.db_mode != 0 {
        crate::core::db::check_url(&p.db_url).map_err(|e| format!("usrloc: {e}"))?;
    }
    super::db::set_mode(p.db_mode);
    crate::core::process::timer::register_timer("usrloc", p.timer_interval.max(1), ul_timer);
    stats::register_func("usrloc", "registered_users", super::registered_users);
    super::mi::register();
    Ok(())
}

fn destroy() {
    super::flush_to_db();
}

fn ul_timer(_ticks: u64) {
    super::timer(crate::modules::registrar::now());
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
        crate::log_warn!(
            "WARNING:usrloc: no statistics for domain {name} (more than {MAX_STAT_DOMAINS} domains)"
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
        let set = |n: &str, v: ModParamValue| {
            (EXPORTS.params.iter().find(|p| p.name == n).unwrap().set)(&v)
        };
        assert!(set("timer_interval", ModParamValue::Int(-1)).is_err());
        assert!(set("db_mode", ModParamValue::Str("x".into())).is_err());
    }
}
