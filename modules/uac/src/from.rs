//! The stored From URI: what `uac_replace_from` puts in its Record-Route parameter and
//! what `uac_restore_from` (or, in auto mode, the loose_route callback) reads back.
//!
//! Format of 1.2 (`modules/uac/from.c`), kept so a dialog set up by 1.2 survives an
//! upgrade: the old and the new URI are XOR-ed byte by byte (the shorter one padded
//! with zero bytes to the longer one's length), the result XOR-ed with `from_passwd`
//! (repeated) when one is set, then written in base64 with `-` instead of `=` as the
//! padding character (`=` may not appear in a URI parameter value). Whoever holds one
//! of the two URIs — the From of a request going downstream, the To of one going
//! upstream — gets the other back by XOR-ing again; trailing zero bytes are the
//! padding of the shorter URI and are dropped.

/// The longest value accepted (1.2's `MAX_URI_SIZE`).
pub const MAX_URI: usize = 1024;

const ENC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Why a stored value cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    TooLong,
    BadLength,
    BadChar(u8),
    /// The URI in the message is longer than the stored mix (not ours, or altered).
    Mismatch,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Empty => write!(f, "empty value"),
            DecodeError::TooLong => write!(f, "value too long"),
            DecodeError::BadLength => write!(f, "length is not a multiple of 4"),
            DecodeError::BadChar(c) => write!(f, "invalid character 0x{c:02x}"),
            DecodeError::Mismatch => write!(f, "value does not match the URI"),
        }
    }
}

/// base64 with `-` padding.
pub fn encode(src: &[u8]) -> String {
    let mut out = String::with_capacity(src.len().div_ceil(3) * 4);
    for chunk in src.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let block = (b(0) << 16) | (b(1) << 8) | b(2);
        let sym = |shift: u32| char::from(ENC[((block >> shift) & 0x3f) as usize]);
        out.push(sym(18));
        out.push(sym(12));
        out.push(if chunk.len() > 1 { sym(6) } else { '-' });
        out.push(if chunk.len() > 2 { sym(0) } else { '-' });
    }
    out
}

/// base64 symbol -> value, 0xff for anything else.
const DEC: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 64 {
        t[ENC[i] as usize] = i as u8;
        i += 1;
    }
    t
};

fn dec_char(c: u8) -> Result<u32, DecodeError> {
    match DEC[usize::from(c)] {
        0xff => Err(DecodeError::BadChar(c)),
        v => Ok(u32::from(v)),
    }
}

/// Inverse of [`encode`]; a value from the network: every byte is checked.
pub fn decode(src: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if src.is_empty() {
        return Err(DecodeError::Empty);
    }
    if src.len() > MAX_URI.div_ceil(3) * 4 {
        return Err(DecodeError::TooLong);
    }
    if !src.len().is_multiple_of(4) {
        return Err(DecodeError::BadLength);
    }
    let pad = src.iter().rev().take_while(|&&c| c == b'-').count();
    if pad > 2 {
        return Err(DecodeError::BadLength);
    }
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let last = src.len() / 4 - 1;
    for (k, q) in src.chunks(4).enumerate() {
        let n = if k == last { 4 - pad } else { 4 };
        let mut block = 0u32;
        for (j, &c) in q[..n].iter().enumerate() {
            block |= dec_char(c)? << (18 - 6 * j as u32);
        }
        let bytes = [(block >> 16) as u8, (block >> 8) as u8, block as u8];
        out.extend_from_slice(&bytes[..n - 1]);
    }
    Ok(out)
}

/// XOR `buf` with the password, repeated (its own inverse).
fn crypt(buf: &mut [u8], passwd: &[u8]) {
    if passwd.is_empty() {
        return;
    }
    for (b, p) in buf.iter_mut().zip(passwd.iter().cycle()) {
        *b ^= p;
    }
}

/// The parameter value for a From URI `old` replaced by `new`.
pub fn store(old: &[u8], new: &[u8], passwd: &[u8]) -> Result<String, DecodeError> {
    let (long, short) = if old.len() > new.len() {
        (old, new)
    } else {
        (new, old)
    };
    if long.len() > MAX_URI {
        return Err(DecodeError::TooLong);
    }
    let mut buf = long.to_vec();
    for (b, s) in buf.iter_mut().zip(short) {
        *b ^= s;
    }
    crypt(&mut buf, passwd);
    Ok(encode(&buf))
}

/// Given a stored value and the URI a message carries (one of the two), the other one.
pub fn restore(value: &[u8], present: &[u8], passwd: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut buf = decode(value)?;
    crypt(&mut buf, passwd);
    if buf.len() < present.len() {
        return Err(DecodeError::Mismatch);
    }
    for (b, p) in buf.iter_mut().zip(present) {
        *b ^= p;
    }
    if buf.len() == present.len() {
        while buf.last() == Some(&0) {
            buf.pop();
        }
    }
    if buf.is_empty() || buf.contains(&0) {
        return Err(DecodeError::Mismatch);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_matches_base64_with_dash_padding() {
        assert_eq!(encode(b"Man"), "TWFu");
        assert_eq!(encode(b"Ma"), "TWE-");
        assert_eq!(encode(b"M"), "TQ--");
        assert_eq!(encode(b""), "");
        for s in [
            &b"M"[..],
            b"Ma",
            b"Man",
            b"sip:alice@example.com",
            &[0, 255, 7, 9],
        ] {
            assert_eq!(decode(encode(s).as_bytes()).unwrap(), s);
        }
    }

    #[test]
    fn decode_rejects_bad_input() {
        assert_eq!(decode(b""), Err(DecodeError::Empty));
        assert_eq!(decode(b"TWF"), Err(DecodeError::BadLength));
        assert_eq!(decode(b"T---"), Err(DecodeError::BadLength));
        assert_eq!(decode(b"TW=u"), Err(DecodeError::BadChar(b'=')));
        assert_eq!(decode(b"TW-u"), Err(DecodeError::BadChar(b'-')));
        let long = vec![b'A'; 2000];
        assert_eq!(decode(&long), Err(DecodeError::TooLong));
    }

    #[test]
    fn both_directions_give_the_other_uri() {
        let old = b"sip:alice@example.com";
        let new = b"sip:anonymous@anonymous.invalid";
        for pw in [&b""[..], b"secret"] {
            let v = store(old, new, pw).unwrap();
            // downstream: the From carries the caller's URI -> the replacement
            assert_eq!(restore(v.as_bytes(), old, pw).unwrap(), new);
            // upstream: the To carries the replacement -> the caller's URI
            assert_eq!(restore(v.as_bytes(), new, pw).unwrap(), old);
        }
        // equal lengths
        let v = store(b"sip:a@x.org", b"sip:b@y.org", b"").unwrap();
        assert_eq!(
            restore(v.as_bytes(), b"sip:a@x.org", b"").unwrap(),
            b"sip:b@y.org"
        );
    }

    #[test]
    fn a_known_value() {
        // old XOR new, no password: "sip:" cancels out to zero bytes.
        let v = store(b"sip:a@h", b"sip:b@h", b"").unwrap();
        assert_eq!(decode(v.as_bytes()).unwrap(), [0, 0, 0, 0, 3, 0, 0]);
        assert_eq!(v, "AAAAAAMAAA--");
    }

    #[test]
    fn a_foreign_value_is_refused() {
        let v = store(b"sip:a@h", b"sip:b@h", b"").unwrap();
        assert_eq!(
            restore(v.as_bytes(), b"sip:someone-much-longer@h", b""),
            Err(DecodeError::Mismatch)
        );
    }
}
