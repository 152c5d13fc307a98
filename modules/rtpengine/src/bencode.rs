//! A small bencode codec for the rtpengine "ng" protocol.
//!
//! Why our own: the ng protocol uses four bencode types (byte strings, integers, lists,
//! dictionaries) in messages of a few kilobytes, and we need exactly a value tree, an
//! encoder and a decoder that never panics on a malformed reply. The maintained crates
//! bring serde derive machinery (`serde_bencode`, `bendy`) for what is about 150 lines
//! here, and we want to bound the nesting depth ourselves. Dictionary keys are kept in
//! insertion order when encoding (rtpengine accepts any order; canonical bencode sorts
//! keys, which [`Value::dict`] does not need).

use std::fmt;

/// A bencode value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Bytes(Vec<u8>),
    Int(i64),
    List(Vec<Value>),
    Dict(Vec<(Vec<u8>, Value)>),
}

/// Why a buffer is not bencode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str, pub usize);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad bencode: {} at offset {}", self.0, self.1)
    }
}

/// Deepest nesting accepted when decoding.
const MAX_DEPTH: usize = 32;

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }
    pub fn dict(items: Vec<(&str, Value)>) -> Value {
        Value::Dict(
            items
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }
    /// The value of `key` in a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.iter().find(|(k, _)| k == key.as_bytes()).map(|(_, v)| v),
            _ => None,
        }
    }
    /// The text of a byte string (lossy).
    pub fn as_str(&self) -> Option<String> {
        match self {
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Append the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Bytes(b) => {
                out.extend_from_slice(b.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(b);
            }
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Value::Bytes(k.clone()).encode_into(out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }
}

/// Decode one value that fills `buf` exactly.
pub fn decode(buf: &[u8]) -> Result<Value, DecodeError> {
    let mut pos = 0;
    let v = value(buf, &mut pos, 0)?;
    if pos != buf.len() {
        return Err(DecodeError("trailing bytes", pos));
    }
    Ok(v)
}

fn value(b: &[u8], pos: &mut usize, depth: usize) -> Result<Value, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError("nested too deep", *pos));
    }
    match b.get(*pos) {
        None => Err(DecodeError("unexpected end", *pos)),
        Some(b'i') => {
            *pos += 1;
            let end = find_e(b, *pos)?;
            let t =
                std::str::from_utf8(&b[*pos..end]).map_err(|_| DecodeError("bad integer", *pos))?;
            if t.is_empty()
                || t == "-0"
                || (t.len() > 1 && (t.starts_with('0') || t.starts_with("-0")))
            {
                return Err(DecodeError("bad integer", *pos));
            }
            let i = t
                .parse::<i64>()
                .map_err(|_| DecodeError("bad integer", *pos))?;
            *pos = end + 1;
            Ok(Value::Int(i))
        }
        Some(b'l') => {
            *pos += 1;
            let mut l = Vec::new();
            while b.get(*pos) != Some(&b'e') {
                l.push(value(b, pos, depth + 1)?);
            }
            *pos += 1;
            Ok(Value::List(l))
        }
        Some(b'd') => {
            *pos += 1;
            let mut d = Vec::new();
            while b.get(*pos) != Some(&b'e') {
                let k = bytes(b, pos)?;
                let v = value(b, pos, depth + 1)?;
                d.push((k, v));
            }
            *pos += 1;
            Ok(Value::Dict(d))
        }
        Some(c) if c.is_ascii_digit() => Ok(Value::Bytes(bytes(b, pos)?)),
        Some(_) => Err(DecodeError("unexpected byte", *pos)),
    }
}

fn find_e(b: &[u8], from: usize) -> Result<usize, DecodeError> {
    b[from..]
        .iter()
        .position(|&c| c == b'e')
        .map(|p| from + p)
        .ok_or(DecodeError("unterminated integer", from))
}

fn bytes(b: &[u8], pos: &mut usize) -> Result<Vec<u8>, DecodeError> {
    let start = *pos;
    let colon = b[start..]
        .iter()
        .take(12)
        .position(|&c| c == b':')
        .map(|p| start + p)
        .ok_or(DecodeError("bad string length", start))?;
    let t = &b[start..colon];
    if t.is_empty() || !t.iter().all(u8::is_ascii_digit) {
        return Err(DecodeError("bad string length", start));
    }
    let n: usize = std::str::from_utf8(t)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(DecodeError("bad string length", start))?;
    let s = colon + 1;
    let e = s
        .checked_add(n)
        .ok_or(DecodeError("string too long", start))?;
    if e > b.len() {
        return Err(DecodeError("string past the end", start));
    }
    *pos = e;
    Ok(b[s..e].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = Value::dict(vec![
            ("command", Value::str("offer")),
            ("sdp", Value::str("v=0\r\n")),
            ("flags", Value::List(vec![Value::str("trust-address")])),
            ("n", Value::Int(-42)),
        ]);
        let e = v.encode();
        assert_eq!(
            e,
            b"d7:command5:offer3:sdp5:v=0\r\n5:flagsl13:trust-addresse1:ni-42ee".to_vec()
        );
        assert_eq!(decode(&e).unwrap(), v);
        assert_eq!(
            decode(&e)
                .unwrap()
                .get("command")
                .unwrap()
                .as_str()
                .unwrap(),
            "offer"
        );
    }

    #[test]
    fn malformed() {
        for b in [
            &b""[..],
            b"i",
            b"i12",
            b"ie",
            b"i012e",
            b"i-0e",
            b"5:abc",
            b"l",
            b"d3:keye",
            b"d1:ai1e",
            b"x",
            b"99999999999999999999:",
            b"i1ei2e",
            b"18446744073709551615:x",
        ] {
            assert!(decode(b).is_err(), "{:?}", String::from_utf8_lossy(b));
        }
        let deep = format!("{}{}", "l".repeat(100), "e".repeat(100));
        assert!(decode(deep.as_bytes()).is_err());
        assert_eq!(decode(b"le").unwrap(), Value::List(vec![]));
        assert_eq!(decode(b"0:").unwrap(), Value::Bytes(vec![]));
    }
}
