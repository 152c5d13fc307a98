//! The sl module's To-tag scheme (reference §8.1): 32 hex chars of
//! MD5("OpenSER-stateless" ‖ first listen IP ‖ its port as decimal text), then `.`, then
//! 4 lowercase hex chars of a CRC-16 over the top Via's host, port text and branch.
//!
//! CRC: CRC-16/CCITT polynomial 0x1021, initial value 0xFFFF, no reflection, final
//! complement (as OpenSER's `crcitt_string_array`: `ccitt = ~ccitt` at the end).

use md5::{Digest as _, Md5};

use crate::parser::{Method, SipMsg};

/// CRC-16/CCITT (poly 0x1021, init `init`, MSB first), without the final complement.
pub fn crc16_ccitt(data: &[u8], init: u16) -> u16 {
    let mut crc = init;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

/// The 32-hex-char tag prefix for the first listen socket `ip`:`port`.
pub fn sl_tag_prefix(ip: &str, port: u16) -> String {
    let mut h = Md5::new();
    h.update(b"OpenSER-stateless");
    h.update(ip.as_bytes());
    h.update(port.to_string().as_bytes());
    hex(&h.finalize())
}

/// The 4-hex-char suffix for `msg` (CRC over the top Via's host, port text and branch;
/// a message without a parsable Via hashes empty strings).
pub fn sl_suffix(msg: &SipMsg) -> String {
    let mut crc = 0xFFFFu16;
    if let Ok(v) = msg.via1() {
        crc = crc16_ccitt(v.host.bytes(msg.buf()), crc);
        crc = crc16_ccitt(v.port_text.bytes(msg.buf()), crc);
        if let Some(b) = v.branch {
            crc = crc16_ccitt(b.bytes(msg.buf()), crc);
        }
    }
    format!("{:04x}", !crc)
}

/// The To-tag sl puts in replies to `msg`: `prefix + "." + suffix`.
pub fn sl_totag(prefix: &str, msg: &SipMsg) -> String {
    format!("{prefix}.{}", sl_suffix(msg))
}

/// True if `msg` is an ACK whose To-tag is the tag sl would generate for it
/// (an ACK for a stateless reply: absorbed before the script).
pub fn is_sl_ack(prefix: &str, msg: &SipMsg) -> bool {
    if !msg.is_request() || msg.method() != Method::Ack {
        return false;
    }
    let Ok(to) = msg.to() else { return false };
    let Some(tag) = to.tag else { return false };
    msg.s(tag) == sl_totag(prefix, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn crc_check_value() {
        // CRC-16/CCITT-FALSE check value for "123456789" is 0x29B1.
        assert_eq!(crc16_ccitt(b"123456789", 0xFFFF), 0x29B1);
    }
    #[test]
    fn prefix_is_32_hex() {
        let p = sl_tag_prefix("127.0.0.1", 5060);
        assert_eq!(p.len(), 32);
        assert!(p.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(p, sl_tag_prefix("127.0.0.1", 5061));
    }
}
