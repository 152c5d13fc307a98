//! The clock: wall time in seconds since the epoch, the one time source for expiry
//! (usrloc, nonces), accounting timestamps and `$Ts`. Transaction timers use the
//! timer process's ticks instead (`process::timer::get_ticks`, `get_uticks`).

/// Seconds since 1970-01-01 UTC (0 if the system clock is before the epoch).
#[inline]
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_after_2020() {
        assert!(super::now() > 1_577_836_800);
    }
}
