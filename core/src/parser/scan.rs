//! Low-level scanning helpers shared by the header parsers: spans, whitespace
//! (including folded lines), tokens, quoted strings and `;name=value` parameters.

/// A range of the message buffer: `start` offset and `len`, both u32 (BUF_SIZE fits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    #[inline]
    pub fn new(start: usize, end: usize) -> Span {
        let end = end.max(start);
        Span {
            start: start as u32,
            len: (end - start) as u32,
        }
    }
    #[inline]
    pub fn end(&self) -> usize {
        self.start as usize + self.len as usize
    }
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The bytes of this span in `buf` (empty if out of range: never panics).
    #[inline]
    pub fn bytes<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start as usize..self.end()).unwrap_or(&[])
    }
    /// The span as text (empty if out of range or not UTF-8).
    #[inline]
    pub fn str<'a>(&self, buf: &'a [u8]) -> &'a str {
        std::str::from_utf8(self.bytes(buf)).unwrap_or("")
    }
}

/// Parameters of one element, in order. Headers rarely carry more than four, which stay
/// inline (no allocation on the parse path); longer lists move to the heap.
pub type Params = smallvec::SmallVec<[Param; 4]>;

/// One `name[=value]` parameter. `value` is `None` for a bare name and an empty span for
/// `name=`; quoted values are stored without the quotes. `full` covers `name[=value]`
/// (without the leading `;`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Param {
    pub name: Span,
    pub value: Option<Span>,
    pub full: Span,
}

#[inline]
pub fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Whitespace including CR/LF (folded header lines keep their CRLF in the buffer).
#[inline(always)]
pub fn is_lws(c: u8) -> bool {
    c == b' ' || c == b'\t' || c == b'\r' || c == b'\n'
}

const fn token_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
}

static TOKEN: [bool; 256] = token_table();

/// RFC 3261 `token` characters.
#[inline(always)]
pub fn is_token(c: u8) -> bool {
    TOKEN[c as usize]
}

/// Length of the run of token characters at the start of `b`. Kept out of line so the
/// loop gets its own registers (inlined into the big header loop it spilled to the stack).
#[inline(never)]
pub fn token_len(b: &[u8]) -> usize {
    b.iter().position(|&c| !is_token(c)).unwrap_or(b.len())
}

/// Index of the first `needle` in `h`, eight bytes per step (SWAR). Header lines are
/// short, where this beats `memchr`'s dispatch and vector set-up.
#[inline]
pub fn find_byte(h: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let rep = LO * needle as u64;
    // Lowest set bit of the result marks the first `needle` byte of `w` (borrows only
    // create false marks above a real one).
    let marks = |w: [u8; 8]| {
        let x = u64::from_le_bytes(w) ^ rep;
        x.wrapping_sub(LO) & !x & HI
    };
    let mut i = 0;
    while let Some(c) = h.get(i..i + 16) {
        let Ok(w) = <[u8; 16]>::try_from(c) else {
            break;
        };
        let (a, b) = w.split_at(8);
        let (ma, mb) = (
            marks(a.try_into().unwrap_or([0; 8])),
            marks(b.try_into().unwrap_or([0; 8])),
        );
        if ma | mb != 0 {
            return Some(if ma != 0 {
                i + (ma.trailing_zeros() / 8) as usize
            } else {
                i + 8 + (mb.trailing_zeros() / 8) as usize
            });
        }
        i += 16;
    }
    h.get(i..)?.iter().position(|&c| c == needle).map(|j| i + j)
}

/// A cursor over `buf[..end]` with absolute offsets. `buf` is cut at `end`, so one
/// bound check per byte covers both the span and the buffer.
pub struct Cur<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
    pub end: usize,
}

impl<'a> Cur<'a> {
    #[inline]
    pub fn new(buf: &'a [u8], span: Span) -> Cur<'a> {
        let end = span.end().min(buf.len());
        Cur {
            buf: &buf[..end],
            pos: (span.start as usize).min(end),
            end,
        }
    }
    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }
    #[inline]
    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }
    #[inline]
    pub fn skip_lws(&mut self) {
        while let Some(&c) = self.buf.get(self.pos)
            && is_lws(c)
        {
            self.pos += 1;
        }
    }
    /// Consume `c` (after optional LWS); true if it was there.
    #[inline]
    pub fn eat(&mut self, c: u8) -> bool {
        let mut p = self.pos;
        while let Some(&x) = self.buf.get(p) {
            if x == c {
                self.pos = p + 1;
                return true;
            }
            if !is_lws(x) {
                break;
            }
            p += 1;
        }
        false
    }
    /// A run of token characters (may be empty).
    #[inline]
    pub fn token(&mut self) -> Span {
        self.until_class(C_NOTOKEN)
    }
    /// Characters until one of `stops` or LWS.
    #[inline]
    pub fn until(&mut self, stops: &[u8]) -> Span {
        self.until_by(|c| is_lws(c) || stops.contains(&c))
    }
    /// Characters until `stop(c)` is true.
    #[inline]
    pub fn until_by(&mut self, stop: impl Fn(u8) -> bool) -> Span {
        let s = self.pos;
        let mut p = s;
        while let Some(&c) = self.buf.get(p)
            && !stop(c)
        {
            p += 1;
        }
        self.pos = p;
        Span::new(s, p)
    }
    /// A quoted string starting at the current `"`; returns the inside span.
    pub fn quoted(&mut self) -> Option<Span> {
        if self.peek() != Some(b'"') {
            return None;
        }
        self.pos += 1;
        let s = self.pos;
        // Jump from one `"` or `\` to the next (values such as nonces are long).
        while let Some(i) = memchr::memchr2(b'"', b'\\', self.buf.get(self.pos..).unwrap_or(&[])) {
            let at = self.pos + i;
            if self.buf.get(at) == Some(&b'"') {
                self.pos = at + 1;
                return Some(Span::new(s, at));
            }
            self.pos = at + 2;
        }
        self.pos = self.buf.len();
        None
    }
    /// Parameters `*(LWS ; LWS name [LWS = LWS value])`, stopping (without consuming)
    /// at `,` (if `comma_stops`), at any other unexpected character, or at the end.
    /// Values are tokens, quoted strings or `[..]` / any run without `; , LWS`.
    pub fn params(&mut self, comma_stops: bool) -> Result<Params, &'static str> {
        let mut out = Params::new();
        self.each_param(comma_stops, |p| out.push(p))?;
        Ok(out)
    }
    /// As [`Cur::params`], handing each parameter to `f` instead of collecting them.
    /// Returns the span from the first `;` to the end of the last parameter (empty, at
    /// the cursor, when there is none).
    #[inline]
    pub fn each_param(
        &mut self,
        comma_stops: bool,
        mut f: impl FnMut(Param),
    ) -> Result<Span, &'static str> {
        let value_stop = if comma_stops {
            C_LWS | C_SEMI | C_COMMA
        } else {
            C_LWS | C_SEMI
        };
        let mut first = None;
        let mut last_end = self.pos;
        loop {
            let save = self.pos;
            self.skip_lws();
            if self.peek() != Some(b';') {
                self.pos = save;
                let s = first.unwrap_or(save);
                return Ok(Span::new(s, last_end.max(s)));
            }
            first.get_or_insert(self.pos);
            self.pos += 1;
            self.skip_lws();
            let name = self.until_class(C_LWS | C_SEMI | C_COMMA | C_EQ | C_QMARK | C_GT);
            if name.is_empty() {
                return Err("empty parameter name");
            }
            let mut value = None;
            let mut full_end = name.end();
            let save2 = self.pos;
            self.skip_lws();
            if self.peek() == Some(b'=') {
                self.pos += 1;
                self.skip_lws();
                if self.peek() == Some(b'"') {
                    let q = self.quoted().ok_or("unterminated quoted parameter value")?;
                    value = Some(q);
                    full_end = self.pos;
                } else {
                    let v = self.until_class(value_stop);
                    value = Some(v);
                    full_end = v.end();
                }
            } else {
                self.pos = save2;
            }
            last_end = full_end;
            f(Param {
                name,
                value,
                full: Span::new(name.start as usize, full_end),
            });
        }
    }
    /// Characters until one whose class (see `C_*`) intersects `stop`.
    #[inline(always)]
    pub fn until_class(&mut self, stop: u8) -> Span {
        let s = self.pos;
        let mut p = s;
        while let Some(&c) = self.buf.get(p)
            && CLASS[c as usize] & stop == 0
        {
            p += 1;
        }
        self.pos = p;
        Span::new(s, p)
    }
}

/// Character classes for [`Cur::until_class`]: one table load per byte instead of a
/// chain of compares.
pub const C_LWS: u8 = 1;
pub const C_SEMI: u8 = 2;
pub const C_COMMA: u8 = 4;
pub const C_EQ: u8 = 8;
pub const C_QMARK: u8 = 16;
pub const C_GT: u8 = 32;
pub const C_COLON: u8 = 64;
pub const C_NOTOKEN: u8 = 128;

const fn class_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut k = match c {
            b' ' | b'\t' | b'\r' | b'\n' => C_LWS,
            b';' => C_SEMI,
            b',' => C_COMMA,
            b'=' => C_EQ,
            b'?' => C_QMARK,
            b'>' => C_GT,
            b':' => C_COLON,
            _ => 0,
        };
        if !TOKEN[i] {
            k |= C_NOTOKEN;
        }
        t[i] = k;
        i += 1;
    }
    t
}

static CLASS: [u8; 256] = class_table();

/// Find a parameter by name (case-insensitive).
pub fn find_param<'p>(buf: &[u8], params: &'p [Param], name: &str) -> Option<&'p Param> {
    params
        .iter()
        .find(|p| p.name.bytes(buf).eq_ignore_ascii_case(name.as_bytes()))
}

/// Parse a string of `;name=value` parameters (a leading `;` is optional) into owned
/// pairs. Used by script transformations (`param.*`) and fuzzing.
pub fn parse_params_str(s: &str) -> Result<Vec<(String, Option<String>)>, &'static str> {
    let owned;
    let text = if s.trim_start().starts_with(';') {
        s
    } else {
        owned = format!(";{s}");
        &owned
    };
    let buf = text.as_bytes();
    let mut c = Cur::new(buf, Span::new(0, buf.len()));
    let ps = c.params(false)?;
    c.skip_lws();
    if !c.at_end() {
        return Err("garbage after parameters");
    }
    Ok(ps
        .iter()
        .map(|p| {
            (
                p.name.str(buf).to_string(),
                p.value.map(|v| v.str(buf).to_string()),
            )
        })
        .collect())
}

/// Parse an unsigned decimal (no sign, at most 10 digits, value within u32).
pub fn parse_u32(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 10 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u64;
    }
    u32::try_from(v).ok()
}

/// Trim LWS at both ends of a span.
#[inline]
pub fn trim(buf: &[u8], sp: Span) -> Span {
    let mut s = sp.start as usize;
    let mut e = sp.end().min(buf.len());
    while s < e && is_lws(buf[s]) {
        s += 1;
    }
    while e > s && is_lws(buf[e - 1]) {
        e -= 1;
    }
    Span::new(s, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_byte_matches_naive() {
        let data: Vec<u8> = (0..200u32)
            .map(|i| [b'a', b'\n', 0x8a, 0x0b, 0x09, b'\r'][(i * 7 % 13 % 6) as usize])
            .collect();
        for start in 0..data.len() {
            for end in start..data.len().min(start + 40) {
                let h = &data[start..end];
                for n in [b'\n', b'\r', 0x8a, 0x0b, b'x'] {
                    assert_eq!(find_byte(h, n), h.iter().position(|&c| c == n));
                }
            }
        }
    }
}
