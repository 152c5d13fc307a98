//! Nonces (OpenSER 1.2 `nonce.c`): 8 lower-case hex chars of the expiry time (seconds
//! since the epoch) followed by 32 hex chars of MD5(those 8 chars + secret) — 40 chars.

use super::digest::md5_hex;

pub const NONCE_LEN: usize = 40;

/// The nonce expiring at `expires`.
pub fn calc_nonce(expires: u32, secret: &[u8]) -> String {
    let head = format!("{expires:08x}");
    let sig = md5_hex(&[head.as_bytes(), secret]);
    head + &sig
}

/// The expiry time encoded in a nonce (its first 8 hex chars).
pub fn nonce_expires(nonce: &str) -> Option<u32> {
    let head = nonce.get(..8)?;
    if !head.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(head, 16).ok()
}

/// Whether `nonce` was generated with `secret` (OpenSER's `check_nonce` == 0).
pub fn check_nonce(nonce: &str, secret: &[u8]) -> bool {
    if nonce.len() != NONCE_LEN {
        return false;
    }
    match nonce_expires(nonce) {
        Some(e) => calc_nonce(e, secret) == nonce,
        None => false,
    }
}

/// Whether the nonce's expiry time lies before `now`.
pub fn is_stale(nonce: &str, now: i64) -> bool {
    nonce_expires(nonce).is_none_or(|e| i64::from(e) < now)
}
