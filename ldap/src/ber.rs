//! The BER subset LDAP needs (X.690 as RFC 4511 §5.1 restricts it): definite lengths
//! only, tags of one octet (LDAP's tags are all below 31), lengths up to four octets.
//! Encoding builds `Vec<u8>`s; decoding walks a borrowed slice and never panics.

/// Universal tags used by LDAP.
pub const BOOLEAN: u8 = 0x01;
pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const ENUMERATED: u8 = 0x0a;
pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;

/// The largest element accepted from a server (a whole LDAPMessage).
pub const MAX_LEN: usize = 16 << 20;

/// Append a length in definite form.
pub fn put_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// One element: tag, length, contents.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    put_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// An INTEGER (or ENUMERATED with `tag`), minimal two's complement.
pub fn int(tag: u8, v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    tlv(tag, &bytes[start..])
}

/// An element read from a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
}

/// Why a buffer does not hold a valid element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BerError {
    /// More bytes are needed (only from [`frame_len`]).
    Incomplete,
    /// Not valid BER (or outside the subset).
    Invalid(&'static str),
}

impl std::fmt::Display for BerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BerError::Incomplete => write!(f, "truncated element"),
            BerError::Invalid(w) => write!(f, "invalid BER: {w}"),
        }
    }
}

/// Header of the element at the start of `buf`: (tag, header length, content length).
fn header(buf: &[u8]) -> Result<(u8, usize, usize), BerError> {
    let tag = *buf.first().ok_or(BerError::Incomplete)?;
    if tag & 0x1f == 0x1f {
        return Err(BerError::Invalid("multi-octet tag"));
    }
    let l0 = *buf.get(1).ok_or(BerError::Incomplete)?;
    if l0 < 0x80 {
        return Ok((tag, 2, l0 as usize));
    }
    let n = (l0 & 0x7f) as usize;
    if n == 0 {
        return Err(BerError::Invalid("indefinite length"));
    }
    if n > 4 {
        return Err(BerError::Invalid("length too long"));
    }
    let bytes = buf.get(2..2 + n).ok_or(BerError::Incomplete)?;
    let len = bytes.iter().fold(0usize, |a, b| (a << 8) | *b as usize);
    if len > MAX_LEN {
        return Err(BerError::Invalid("element too large"));
    }
    Ok((tag, 2 + n, len))
}

/// The total size of the element starting `buf` once it is all there, for framing a
/// stream: `Incomplete` while the header itself is cut.
pub fn frame_len(buf: &[u8]) -> Result<usize, BerError> {
    let (_, h, l) = header(buf)?;
    Ok(h + l)
}

/// A reader over consecutive elements.
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The tag of the next element, if any.
    pub fn peek_tag(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// The next element.
    pub fn next_tlv(&mut self) -> Result<Tlv<'a>, BerError> {
        let (tag, h, l) = header(self.buf).map_err(|e| match e {
            BerError::Incomplete => BerError::Invalid("truncated element"),
            e => e,
        })?;
        let value = self
            .buf
            .get(h..h + l)
            .ok_or(BerError::Invalid("truncated element"))?;
        self.buf = &self.buf[h + l..];
        Ok(Tlv { tag, value })
    }

    /// The next element, which must have tag `tag`.
    pub fn expect(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], BerError> {
        let t = self.next_tlv()?;
        if t.tag != tag {
            return Err(BerError::Invalid(what));
        }
        Ok(t.value)
    }

    /// The next element as an INTEGER/ENUMERATED with tag `tag` (at most 8 octets).
    pub fn int(&mut self, tag: u8, what: &'static str) -> Result<i64, BerError> {
        let v = self.expect(tag, what)?;
        decode_int(v).ok_or(BerError::Invalid(what))
    }
}

/// The value of INTEGER contents.
pub fn decode_int(v: &[u8]) -> Option<i64> {
    if v.is_empty() || v.len() > 8 {
        return None;
    }
    let mut n: i64 = if v[0] & 0x80 != 0 { -1 } else { 0 };
    for b in v {
        n = (n << 8) | i64::from(*b);
    }
    Some(n)
}
