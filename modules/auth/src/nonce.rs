//! Nonces (OpenSER 1.2 `nonce.c`): 8 lower-case hex chars of the expiry time (seconds
//! since the epoch) followed by 32 hex chars of MD5(those 8 chars + secret) — 40 chars.
//! With replay protection on (issue 18, [`super::nc`]) a nonce also carries its id:
//! 8 hex chars of expiry, 8 of id, then MD5(those 16 chars + secret) — 48 chars.

use super::digest::md5_hex;

pub const NONCE_LEN: usize = 40;
/// Length of a nonce that carries an id.
pub const NONCE_ID_LEN: usize = 48;

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

/// The nonce expiring at `expires` with id `id` (replay protection).
pub fn calc_nonce_id(expires: u32, id: u32, secret: &[u8]) -> String {
    let head = format!("{expires:08x}{id:08x}");
    let sig = md5_hex(&[head.as_bytes(), secret]);
    head + &sig
}

/// The id of a nonce of the 48-char form (not checked against the secret).
pub fn nonce_id(nonce: &str) -> Option<u32> {
    if nonce.len() != NONCE_ID_LEN {
        return None;
    }
    let h = nonce.get(8..16)?;
    if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(h, 16).ok()
}

/// Whether `nonce` was generated with `secret` (OpenSER's `check_nonce` == 0), in
/// either form.
pub fn check_nonce(nonce: &str, secret: &[u8]) -> bool {
    let Some(e) = nonce_expires(nonce) else {
        return false;
    };
    match nonce.len() {
        NONCE_LEN => calc_nonce(e, secret) == nonce,
        NONCE_ID_LEN => nonce_id(nonce).is_some_and(|id| calc_nonce_id(e, id, secret) == nonce),
        _ => false,
    }
}

/// Whether the nonce's expiry time lies before `now`.
pub fn is_stale(nonce: &str, now: i64) -> bool {
    nonce_expires(nonce).is_none_or(|e| i64::from(e) < now)
}
