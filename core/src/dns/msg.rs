//! The DNS message codec: a query for one name and type, and the answers we use
//! (A, AAAA, CNAME, SRV, NAPTR) out of a response.
//!
//! Our own small codec rather than a crate: we need five record types, one question
//! and a strict parser (every length checked, compression pointers only backwards and
//! at most [`MAX_PTRS`] of them per name, names at most 255 bytes), which is a few
//! hundred lines that the fuzz target `dns_msg` exercises.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const T_A: u16 = 1;
pub const T_CNAME: u16 = 5;
pub const T_AAAA: u16 = 28;
pub const T_SRV: u16 = 33;
pub const T_NAPTR: u16 = 35;

/// Compression pointers followed in one name at most (a loop is refused).
pub const MAX_PTRS: usize = 16;

/// One answer record's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rdata {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Naptr {
        order: u16,
        pref: u16,
        flags: String,
        service: String,
        regexp: String,
        replacement: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub ttl: u32,
    pub data: Rdata,
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub id: u16,
    pub rcode: u8,
    pub truncated: bool,
    pub answers: Vec<Record>,
    /// The minimum TTL of the SOA in the authority section (negative caching), if any.
    pub neg_ttl: Option<u32>,
}

/// A standard query (RD set) for `name` and `qtype`; `None` for a name that is not
/// a valid DNS name.
pub fn build_query(id: u16, name: &str, qtype: u16) -> Option<Vec<u8>> {
    let mut b = Vec::with_capacity(name.len() + 18);
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        b.push(label.len() as u8);
        b.extend_from_slice(label.as_bytes());
    }
    b.push(0);
    b.extend_from_slice(&qtype.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    Some(b)
}

struct Rd<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Rd<'a> {
    fn u8(&mut self) -> Result<u8, String> {
        let v = *self.b.get(self.pos).ok_or("truncated")?;
        self.pos += 1;
        Ok(v)
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(((self.u16()? as u32) << 16) | self.u16()? as u32)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("truncated")?;
        let s = self.b.get(self.pos..end).ok_or("truncated")?;
        self.pos = end;
        Ok(s)
    }
    /// A character-string (length byte + bytes).
    fn cstr(&mut self) -> Result<String, String> {
        let n = self.u8()? as usize;
        let s = self.take(n)?;
        Ok(String::from_utf8_lossy(s).into_owned())
    }
    /// A possibly compressed domain name; the cursor ends after its in-place part.
    fn name(&mut self) -> Result<String, String> {
        let mut out = String::new();
        let mut pos = self.pos;
        let mut jumped = false;
        let mut ptrs = 0;
        let mut lowest = pos;
        loop {
            let len = *self.b.get(pos).ok_or("truncated name")? as usize;
            match len & 0xC0 {
                0xC0 => {
                    let lo = *self.b.get(pos + 1).ok_or("truncated pointer")? as usize;
                    let target = ((len & 0x3F) << 8) | lo;
                    // Pointers go strictly backwards from everything read so far: no loops.
                    if target >= lowest {
                        return Err("bad compression pointer".into());
                    }
                    ptrs += 1;
                    if ptrs > MAX_PTRS {
                        return Err("too many compression pointers".into());
                    }
                    if !jumped {
                        self.pos = pos + 2;
                        jumped = true;
                    }
                    lowest = target;
                    pos = target;
                }
                0x00 => {
                    if len == 0 {
                        if !jumped {
                            self.pos = pos + 1;
                        }
                        if out.is_empty() {
                            out.push('.');
                        }
                        return Ok(out);
                    }
                    let label = self
                        .b
                        .get(pos + 1..pos + 1 + len)
                        .ok_or("truncated label")?;
                    if !out.is_empty() {
                        out.push('.');
                    }
                    for &c in label {
                        out.push(if c.is_ascii_graphic() { c as char } else { '?' });
                    }
                    if out.len() > 255 {
                        return Err("name too long".into());
                    }
                    pos += 1 + len;
                }
                _ => return Err("bad label type".into()),
            }
        }
    }
}

/// Parse a response: header, the question(s) skipped, answers of the types we use
/// (others skipped), the SOA minimum of the authority section. Any length that runs
/// past the end, a bad pointer or a pointer loop is an error.
pub fn parse_response(b: &[u8]) -> Result<Response, String> {
    let mut r = Rd { b, pos: 0 };
    let id = r.u16()?;
    let flags = r.u16()?;
    if flags & 0x8000 == 0 {
        return Err("not a response".into());
    }
    let qd = r.u16()?;
    let an = r.u16()?;
    let ns = r.u16()?;
    let _ar = r.u16()?;
    let truncated = flags & 0x0200 != 0;
    let rcode = (flags & 0x000F) as u8;
    for _ in 0..qd {
        r.name()?;
        r.take(4)?;
    }
    let mut answers = Vec::new();
    let mut neg_ttl = None;
    for i in 0..(an as usize + ns as usize) {
        let name = r.name()?;
        let rtype = r.u16()?;
        let _class = r.u16()?;
        let ttl = r.u32()?.min(0x7FFF_FFFF);
        let rdlen = r.u16()? as usize;
        let start = r.pos;
        let end = start.checked_add(rdlen).ok_or("truncated")?;
        if end > b.len() {
            return Err("truncated rdata".into());
        }
        let data = if i >= an as usize {
            if rtype == 6 {
                // SOA: mname, rname, serial, refresh, retry, expire, minimum.
                r.name()?;
                r.name()?;
                r.take(16)?;
                let min = r.u32()?;
                neg_ttl = Some(min.min(ttl));
            }
            None
        } else {
            match rtype {
                T_A if rdlen == 4 => {
                    let s = r.take(4)?;
                    Some(Rdata::A(Ipv4Addr::new(s[0], s[1], s[2], s[3])))
                }
                T_AAAA if rdlen == 16 => {
                    let s: [u8; 16] = r.take(16)?.try_into().map_err(|_| "truncated")?;
                    Some(Rdata::Aaaa(Ipv6Addr::from(s)))
                }
                T_A | T_AAAA => return Err("bad address length".into()),
                T_CNAME => Some(Rdata::Cname(r.name()?)),
                T_SRV => Some(Rdata::Srv {
                    priority: r.u16()?,
                    weight: r.u16()?,
                    port: r.u16()?,
                    target: r.name()?,
                }),
                T_NAPTR => Some(Rdata::Naptr {
                    order: r.u16()?,
                    pref: r.u16()?,
                    flags: r.cstr()?,
                    service: r.cstr()?,
                    regexp: r.cstr()?,
                    replacement: r.name()?,
                }),
                _ => None,
            }
        };
        if r.pos > end {
            return Err("record data overruns its length".into());
        }
        r.pos = end;
        if let Some(data) = data {
            answers.push(Record { name, ttl, data });
        }
    }
    Ok(Response {
        id,
        rcode,
        truncated,
        answers,
        neg_ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp_with(answer: &[u8], an: u16) -> Vec<u8> {
        let mut b = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, an as u8, 0, 0, 0, 0];
        b.extend_from_slice(&build_query(0, "a.example", T_SRV).unwrap()[12..]);
        b.extend_from_slice(answer);
        b
    }

    #[test]
    fn srv_with_pointer() {
        // name = pointer to the question name (offset 12)
        let mut ans = vec![0xC0, 12, 0, 33, 0, 1, 0, 0, 0, 60, 0, 0];
        let rd = [0u8, 1, 0, 3, 0x13, 0xC4, 1, b'x', 0xC0, 12];
        ans[11] = rd.len() as u8;
        ans.extend_from_slice(&rd);
        let r = parse_response(&resp_with(&ans, 1)).unwrap();
        assert_eq!(
            r.answers[0].data,
            Rdata::Srv {
                priority: 1,
                weight: 3,
                port: 5060,
                target: "x.a.example".into()
            }
        );
        assert_eq!(r.answers[0].name, "a.example");
    }

    #[test]
    fn loops_and_forward_pointers_rejected() {
        // a pointer to itself
        let ans = vec![0xC0, 27, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4];
        let b = resp_with(&ans, 1);
        assert_eq!(b[27], 0xC0);
        assert!(parse_response(&b).is_err());
        // a forward pointer
        let ans = vec![0xC0, 40, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4];
        assert!(parse_response(&resp_with(&ans, 1)).is_err());
    }

    #[test]
    fn truncation_rejected() {
        let ans = vec![0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4];
        let b = resp_with(&ans, 1);
        assert!(parse_response(&b).is_ok());
        for n in 0..b.len() {
            assert!(parse_response(&b[..n]).is_err(), "{n}");
        }
    }
}
