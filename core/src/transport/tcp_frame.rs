//! Where one SIP message ends in a byte stream (TCP, TLS): after the empty line that
//! ends the headers and `Content-Length` bytes of body (RFC 3261 §18.3).
//!
//! [`next_frame`] looks at the bytes read so far from a connection and says what is at
//! their start: a whole message, a CRLF keep-alive (RFC 5626 §3.5.1: a double CRLF
//! "ping" is answered with a single CRLF "pong"; a lone CRLF is skipped), not enough
//! bytes yet, a message that cannot be framed (no or a bad `Content-Length`), or more
//! bytes than a message may have. It never panics, whatever the input (fuzz target
//! `tcp_frame`).

/// What the start of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A whole message: the first `len` bytes.
    Msg { len: usize },
    /// A keep-alive of `len` bytes to drop; `pong`: answer it with one CRLF.
    KeepAlive { len: usize, pong: bool },
    /// More bytes are needed.
    Incomplete,
    /// The headers (`hdr_len` bytes) are complete but the message cannot be framed:
    /// answer 400 with `reason` if possible and close the connection.
    Bad {
        reason: &'static str,
        hdr_len: usize,
    },
    /// The message is (or will be) longer than `max`: close the connection (after a
    /// 400 if the headers, `hdr_len` bytes, are complete; 0 if they are not).
    TooBig { hdr_len: usize },
}

/// The frame at the start of `buf`. `max`: the largest message accepted;
/// `accept_no_cl`: a message without Content-Length has an empty body
/// (`tcp_accept_no_cl`) instead of being refused.
pub fn next_frame(buf: &[u8], max: usize, accept_no_cl: bool) -> Frame {
    if buf.starts_with(b"\r\n") {
        return match (buf.get(2), buf.get(3)) {
            (Some(b'\r'), Some(b'\n')) => Frame::KeepAlive { len: 4, pong: true },
            (Some(b'\r'), None) | (None, _) => Frame::Incomplete,
            _ => Frame::KeepAlive {
                len: 2,
                pong: false,
            },
        };
    }
    if buf.first() == Some(&b'\n') {
        // a bare LF between messages
        return Frame::KeepAlive {
            len: 1,
            pong: false,
        };
    }
    let Some(hdr_len) = headers_end(buf) else {
        return if buf.len() >= max {
            Frame::TooBig { hdr_len: 0 }
        } else {
            Frame::Incomplete
        };
    };
    if hdr_len > max {
        return Frame::TooBig { hdr_len: 0 };
    }
    let body = match content_length(&buf[..hdr_len]) {
        Ok(Some(n)) => n,
        Ok(None) if accept_no_cl => 0,
        Ok(None) => {
            return Frame::Bad {
                reason: "Content-Length missing",
                hdr_len,
            };
        }
        Err(reason) => return Frame::Bad { reason, hdr_len },
    };
    let Some(total) = hdr_len.checked_add(body) else {
        return Frame::TooBig { hdr_len };
    };
    if total > max {
        return Frame::TooBig { hdr_len };
    }
    if buf.len() < total {
        Frame::Incomplete
    } else {
        Frame::Msg { len: total }
    }
}

/// Length of the header block including the empty line (CRLF CRLF, or LF LF): one
/// pass over the line ends up to the first empty line, so the body and any pipelined
/// messages after it are never scanned.
fn headers_end(buf: &[u8]) -> Option<usize> {
    for i in memchr::memchr_iter(b'\n', buf) {
        match buf.get(i + 1) {
            Some(b'\n') => return Some(i + 2),
            Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some(i + 3),
            _ => {}
        }
    }
    None
}

/// The Content-Length (or compact `l`) of a header block: `Ok(None)` when absent;
/// two different values, or one that is not a number, are an error.
fn content_length(hdrs: &[u8]) -> Result<Option<usize>, &'static str> {
    let mut found: Option<usize> = None;
    // Each header line after the first (request or status) line; only a line whose
    // name starts with `c` or `l` is looked into, so the cost is one `memchr` pass
    // over the line ends plus a byte per line.
    let mut ends = memchr::memchr_iter(b'\n', hdrs);
    let Some(mut prev) = ends.next() else {
        return Ok(None);
    };
    for end in ends {
        let line = &hdrs[prev + 1..end];
        prev = end;
        if !matches!(line.first(), Some(b'c' | b'C' | b'l' | b'L')) {
            continue;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = trim(&line[..colon]);
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let v = trim(&line[colon + 1..]);
        if v.is_empty() || v.len() > 9 || !v.iter().all(u8::is_ascii_digit) {
            return Err("bad Content-Length");
        }
        let n = v
            .iter()
            .fold(0usize, |a, &d| a * 10 + usize::from(d - b'0'));
        match found {
            Some(m) if m != n => return Err("conflicting Content-Length headers"),
            _ => found = Some(n),
        }
    }
    Ok(found)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &s[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 65535;

    fn msg(body: &str, cl: Option<&str>) -> String {
        let mut s = String::from(
            "OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5090;branch=z9hG4bK1\r\n\
             Call-ID: c1\r\nCSeq: 1 OPTIONS\r\n",
        );
        if let Some(cl) = cl {
            s.push_str(&format!("Content-Length: {cl}\r\n"));
        }
        s.push_str("\r\n");
        s.push_str(body);
        s
    }

    #[test]
    fn whole_messages_are_framed_by_content_length() {
        let m = msg("hello", Some("5"));
        assert_eq!(
            next_frame(m.as_bytes(), MAX, false),
            Frame::Msg { len: m.len() }
        );
        // two in a row: the first one only
        let two = format!("{m}{m}");
        assert_eq!(
            next_frame(two.as_bytes(), MAX, false),
            Frame::Msg { len: m.len() }
        );
        // every proper prefix is incomplete
        for i in 1..m.len() {
            assert_eq!(
                next_frame(&m.as_bytes()[..i], MAX, false),
                Frame::Incomplete,
                "prefix {i}"
            );
        }
        // compact form, spaces
        let c = m.replace("Content-Length: 5", "l :  5 ");
        assert_eq!(
            next_frame(c.as_bytes(), MAX, false),
            Frame::Msg { len: c.len() }
        );
        // lower case, and a header whose name only starts like it
        let lc = m.replace(
            "Content-Length: 5",
            "X-Content-Length: 7\r\ncontent-length: 5",
        );
        assert_eq!(
            next_frame(lc.as_bytes(), MAX, false),
            Frame::Msg { len: lc.len() }
        );
        // LF-only line ends
        let lf = m.replace("\r\n", "\n");
        assert_eq!(
            next_frame(lf.as_bytes(), MAX, false),
            Frame::Msg { len: lf.len() }
        );
    }

    #[test]
    fn no_content_length() {
        let m = msg("", None);
        assert!(matches!(
            next_frame(m.as_bytes(), MAX, false),
            Frame::Bad { reason: "Content-Length missing", hdr_len } if hdr_len == m.len()
        ));
        assert_eq!(
            next_frame(m.as_bytes(), MAX, true),
            Frame::Msg { len: m.len() }
        );
        for bad in ["x", "-1", "", "1 2", "99999999999"] {
            let m = msg("", Some(bad));
            assert!(
                matches!(next_frame(m.as_bytes(), MAX, false), Frame::Bad { .. }),
                "{bad:?}"
            );
        }
        let m = msg("ab", Some("2")).replace("\r\n\r\n", "\r\nl: 3\r\n\r\n");
        assert!(matches!(
            next_frame(m.as_bytes(), MAX, false),
            Frame::Bad {
                reason: "conflicting Content-Length headers",
                ..
            }
        ));
    }

    #[test]
    fn keep_alives() {
        assert_eq!(
            next_frame(b"\r\n\r\n", MAX, false),
            Frame::KeepAlive { len: 4, pong: true }
        );
        assert_eq!(next_frame(b"\r\n", MAX, false), Frame::Incomplete);
        assert_eq!(next_frame(b"\r\n\r", MAX, false), Frame::Incomplete);
        assert_eq!(
            next_frame(b"\r\nOPTIONS", MAX, false),
            Frame::KeepAlive {
                len: 2,
                pong: false
            }
        );
        assert_eq!(
            next_frame(b"\nX", MAX, false),
            Frame::KeepAlive {
                len: 1,
                pong: false
            }
        );
    }

    #[test]
    fn too_big() {
        let m = msg("", Some("70000"));
        assert!(matches!(
            next_frame(m.as_bytes(), MAX, false),
            Frame::TooBig { hdr_len } if hdr_len > 0
        ));
        let endless = vec![b'a'; MAX];
        assert_eq!(
            next_frame(&endless, MAX, false),
            Frame::TooBig { hdr_len: 0 }
        );
        assert_eq!(next_frame(&endless[..100], MAX, false), Frame::Incomplete);
    }
}
