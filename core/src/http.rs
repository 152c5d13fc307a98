//! A small HTTP/1.1 server side for the management listeners (`mi_xmlrpc`, `xhttp`):
//! the request parser ([`parse_request`], fuzzed), a reader with a size limit and
//! timeouts ([`read_request`]) and the response text ([`response`]).
//!
//! One request per connection: every response carries `Connection: close` (clients
//! reconnect; these listeners serve operators and scrapers, not browsers at volume).
//! Bodies need a `Content-Length`; chunked request bodies are refused (411).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Largest header block accepted.
pub const MAX_HEAD: usize = 16 * 1024;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpRequest {
    pub method: String,
    /// The request target as sent (`/path?query`).
    pub target: String,
    /// `HTTP/1.x` minor version.
    pub minor: u8,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// A header's value (first of that name, case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The path part of the target.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    /// The query part of the target (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }
}

/// The outcome of parsing what was read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A complete request.
    Done(HttpRequest),
    /// A malformed or unacceptable request: answer with this status and close.
    Error(u16, &'static str),
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parse one request from the start of `buf` (a body larger than `max_body` is an
/// error, 413).
pub fn parse_request(buf: &[u8], max_body: usize) -> Parsed {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Parsed::Error(431, "Request Header Fields Too Large");
        }
        return Parsed::Incomplete;
    };
    if head_end > MAX_HEAD {
        return Parsed::Error(431, "Request Header Fields Too Large");
    }
    let Ok(head) = std::str::from_utf8(&buf[..head_end]) else {
        return Parsed::Error(400, "Bad Request");
    };
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Error(400, "Bad Request");
    };
    if !is_token(method) || target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Parsed::Error(400, "Bad Request");
    }
    let minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        _ => return Parsed::Error(505, "HTTP Version Not Supported"),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for l in lines {
        if l.starts_with([' ', '\t']) {
            // obsolete line folding (RFC 7230 §3.2.4): refuse
            return Parsed::Error(400, "Bad Request");
        }
        let Some((n, v)) = l.split_once(':') else {
            return Parsed::Error(400, "Bad Request");
        };
        if !is_token(n) || v.bytes().any(|b| b < b' ' && b != b'\t') {
            return Parsed::Error(400, "Bad Request");
        }
        headers.push((n.to_string(), v.trim().to_string()));
        if headers.len() > 100 {
            return Parsed::Error(431, "Request Header Fields Too Large");
        }
    }
    let req_hdr = |name: &str| {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    if !req_hdr("Transfer-Encoding").is_empty() {
        return Parsed::Error(411, "Length Required");
    }
    let cl = req_hdr("Content-Length");
    let len = match cl.as_slice() {
        [] => 0,
        [v] => match v.parse::<usize>() {
            Ok(n) if v.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Parsed::Error(400, "Bad Request"),
        },
        _ => return Parsed::Error(400, "Bad Request"),
    };
    if len > max_body {
        return Parsed::Error(413, "Content Too Large");
    }
    let body_start = head_end + 4;
    if buf.len() < body_start + len {
        return Parsed::Incomplete;
    }
    Parsed::Done(HttpRequest {
        method: method.to_string(),
        target: target.to_string(),
        minor,
        headers,
        body: buf[body_start..body_start + len].to_vec(),
    })
}

/// Read one request from `s` within `timeout` in total (the socket's read timeout is
/// set to what remains before each read). Err: the status to answer (0: the peer went
/// away or timed out; answer nothing).
pub fn read_request(
    s: &mut std::net::TcpStream,
    max_body: usize,
    timeout: Duration,
) -> Result<HttpRequest, (u16, &'static str)> {
    let end = Instant::now() + timeout;
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 8192];
    loop {
        match parse_request(&buf, max_body) {
            Parsed::Done(r) => return Ok(r),
            Parsed::Error(c, t) => return Err((c, t)),
            Parsed::Incomplete => {}
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err((0, "timeout"));
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut chunk) {
            Ok(0) => return Err((0, "closed")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err((0, "read failed")),
        }
    }
}

/// A complete response (`Connection: close`); `extra` are header lines without CRLF.
pub fn response(code: u16, reason: &str, ctype: &str, body: &[u8], extra: &[&str]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {code} {reason}\r\n");
    if !ctype.is_empty() {
        out.push_str(&format!("Content-Type: {ctype}\r\n"));
    }
    for h in extra {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut v = out.into_bytes();
    v.extend_from_slice(body);
    v
}

/// The body of a listener process: [`serve_forever`] on the listener bound before the
/// fork, or a clean exit when there is none (it was not bound: nothing to serve).
pub fn listener_process(
    listener: Option<&std::net::TcpListener>,
    serve: impl FnMut(std::net::TcpStream, std::net::SocketAddr),
) -> ! {
    let Some(l) = listener else {
        crate::log_crit!("no listener");
        std::process::exit(1);
    };
    serve_forever(l, serve)
}

/// The accept loop of a listener process (non-blocking `listener`, polled every 20 ms
/// so a terminating signal is seen): every connection goes to `serve`, one at a time.
pub fn serve_forever(
    listener: &std::net::TcpListener,
    mut serve: impl FnMut(std::net::TcpStream, std::net::SocketAddr),
) -> ! {
    loop {
        crate::process::signals::child_check();
        match listener.accept() {
            Ok((s, peer)) => serve(s, peer),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                crate::log_err!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Write `bytes` with a write timeout; errors are only logged by callers.
pub fn send(s: &mut std::net::TcpStream, bytes: &[u8], timeout: Duration) -> std::io::Result<()> {
    s.set_write_timeout(Some(timeout))?;
    s.write_all(bytes)?;
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_request_with_body() {
        let b = b"POST /RPC2?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcEXTRA";
        let Parsed::Done(r) = parse_request(b, 100) else {
            panic!()
        };
        assert_eq!(r.method, "POST");
        assert_eq!(r.path(), "/RPC2");
        assert_eq!(r.query(), Some("x=1"));
        assert_eq!(r.header("host"), Some("a"));
        assert_eq!(r.body, b"abc");
        assert_eq!(r.minor, 1);
    }

    #[test]
    fn partial_and_bad() {
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n", 10), Parsed::Incomplete);
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", 10),
            Parsed::Incomplete
        );
        let err = |b: &[u8]| match parse_request(b, 10) {
            Parsed::Error(c, _) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(err(b"GET /\r\n\r\n"), 400);
        assert_eq!(err(b"GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(err(b"GET / HTTP/1.1\r\nNoColon\r\n\r\n"), 400);
        assert_eq!(err(b"GET / HTTP/1.1\r\n folded\r\n\r\n"), 400);
        assert_eq!(err(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n"), 413);
        assert_eq!(err(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400);
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        assert_eq!(err(&[b'a'; MAX_HEAD + 1]), 431);
        assert_eq!(err(b"G\xffT / HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn response_text() {
        let r = response(200, "OK", "text/plain", b"hi", &["X-A: 1"]);
        assert_eq!(
            r,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
        );
    }
}
