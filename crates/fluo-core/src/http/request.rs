//! The parsing of a request to Fluo's HTTP listener, IO-free: the request head from the bytes
//! read so far (httparse, bounded in size), the token check, the body's framing, and the
//! decoding of a Content-Length or chunked body as its bytes arrive. The listener
//! (fluo-server) reads the socket, with its timeouts, and calls these; the fuzzer
//! (`fuzz/fuzz_targets/http_request.rs`) calls [`fuzz_request`].

use super::HttpRefusal;

/// The largest request head (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most headers in a request.
pub const MAX_HEADERS: usize = 64;
/// Bytes the listener reads at a time while the head has not ended.
pub const HEAD_READ: usize = 4096;
/// Bytes read from the body at a time, and the most [`Body::decode`] hands over in one step.
pub const READ_SIZE: usize = 64 * 1024;
/// The longest chunk-size or trailer line taken.
const MAX_LINE: usize = 4096;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The method (`POST`, `OPTIONS` ...).
    pub method: String,
    /// The request target's path (before `?`).
    pub path: String,
    /// The request target's query (after `?`, empty without one).
    pub query: String,
    /// The headers, in their order, values trimmed.
    pub headers: Vec<(String, String)>,
    /// Bytes after the head (the body's start).
    pub rest: Vec<u8>,
}

impl Head {
    /// The head at the start of `buf` (the bytes read so far); `None` while it has not ended
    /// and may still come (at most [`MAX_HEAD`] bytes). A head too big (431), with too many
    /// headers (431) or malformed (400) is refused.
    pub fn parse(buf: &[u8]) -> Result<Option<Head>, HttpRefusal> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let too_big = || {
            let text = format!("the request head exceeds {MAX_HEAD} bytes");
            HttpRefusal::new(431, text)
        };
        match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => Err(too_big()),
            Ok(httparse::Status::Complete(len)) => {
                let target = req.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                Ok(Some(Head {
                    method: req.method.unwrap_or("").to_string(),
                    path: path.to_string(),
                    query: query.to_string(),
                    headers: (req.headers.iter())
                        .map(|h| {
                            let v = String::from_utf8_lossy(h.value).trim().to_string();
                            (h.name.to_string(), v)
                        })
                        .collect(),
                    rest: buf[len..].to_vec(),
                }))
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => Ok(None),
            Ok(httparse::Status::Partial) => Err(too_big()),
            Err(httparse::Error::TooManyHeaders) => Err(HttpRefusal::new(
                431,
                format!("more than {MAX_HEADERS} headers"),
            )),
            Err(e) => Err(HttpRefusal::new(400, format!("malformed request: {e}"))),
        }
    }

    /// The first value of the query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        (self.query.split('&'))
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(percent_decode)
    }

    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Whether the request carries `token` (`Authorization: Bearer` or `?access_token=`),
/// compared in constant time.
pub fn authorized(head: &Head, token: &str) -> bool {
    carries_token(head.header("authorization"), &head.query, token)
}

/// Whether a request whose `Authorization` header and query string are these carries `token`
/// (`Bearer <token>`, or `access_token=<token>` percent-decoded), compared in constant time:
/// the one rule of the HTTP listener and the WebSocket upgrade.
pub fn carries_token(authorization: Option<&str>, query: &str, token: &str) -> bool {
    let header = authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| v.trim().to_string());
    let query = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("access_token=").map(percent_decode));
    [header, query]
        .into_iter()
        .flatten()
        .any(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
}

/// Whether `a` and `b` are equal, in a time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `s` with its `%XX` escapes decoded and `+` as a space (a malformed escape stays as is).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => match std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                None => out.push(b'%'),
            },
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How a request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`: this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// The body's framing (a Content-Length above `max` is 413), or the refusal of a request
/// without a usable one.
pub fn framing(head: &Head, max: u64) -> Result<Framing, HttpRefusal> {
    let te = head.header("transfer-encoding");
    let cl = head.header("content-length");
    match (te, cl) {
        (Some(_), Some(_)) => Err(HttpRefusal::new(
            400,
            "both Transfer-Encoding and Content-Length are given",
        )),
        (Some(t), None) if t.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
        (Some(t), None) => Err(HttpRefusal::new(
            501,
            format!("Transfer-Encoding '{t}' is not supported"),
        )),
        (None, Some(l)) => {
            let n: u64 = l.parse().map_err(|_| {
                HttpRefusal::new(400, format!("Content-Length '{l}' is not a number"))
            })?;
            if n > max {
                return Err(HttpRefusal::new(413, too_big(max)));
            }
            Ok(Framing::Length(n))
        }
        (None, None) => Err(HttpRefusal::new(
            411,
            "the body needs a Content-Length or chunked Transfer-Encoding",
        )),
    }
}

/// The text of a 413: the body exceeds `max` bytes.
pub fn too_big(max: u64) -> String {
    format!("the body exceeds this server's limit of {max} bytes (--http-max-body)")
}

/// A body being decoded: its framing's state and the bytes read but not yet decoded.
pub struct Body {
    framing: Framing,
    pending: Vec<u8>,
    /// Length: bytes still to come. Chunked: the current chunk's bytes still to come.
    left: u64,
    chunk: ChunkState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk-size line.
    Size,
    /// Reading a chunk's data (`left` bytes to come).
    Data,
    /// Reading the CRLF after a chunk's data.
    DataEnd,
    /// Reading trailer lines after the last chunk.
    Trailers,
    /// The body ended.
    Done,
}

impl Body {
    /// A body framed by `framing` whose first bytes are `rest` (those after the head).
    pub fn new(framing: Framing, rest: Vec<u8>) -> Body {
        let left = match framing {
            Framing::Length(n) => n,
            Framing::Chunked => 0,
        };
        Body {
            framing,
            pending: rest,
            left,
            chunk: ChunkState::Size,
        }
    }

    /// More bytes read from the connection.
    pub fn input(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// Moves the decodable body bytes (at most [`READ_SIZE`]) into `out`; whether the body
    /// ended. A malformed chunked body is an error (its text for a 400).
    pub fn decode(&mut self, out: &mut Vec<u8>) -> Result<bool, &'static str> {
        match self.framing {
            Framing::Length(_) => {
                let n = (self.left as usize).min(self.pending.len()).min(READ_SIZE);
                out.extend(self.pending.drain(..n));
                self.left -= n as u64;
                Ok(self.left == 0 && out.is_empty())
            }
            Framing::Chunked => self.decode_chunked(out),
        }
    }

    fn line(&mut self) -> Result<Option<String>, &'static str> {
        match self.pending.windows(2).position(|w| w == b"\r\n") {
            Some(i) => {
                let line = String::from_utf8_lossy(&self.pending[..i]).into_owned();
                self.pending.drain(..i + 2);
                Ok(Some(line))
            }
            None if self.pending.len() > MAX_LINE => Err("a chunk line is too long"),
            None => Ok(None),
        }
    }

    fn decode_chunked(&mut self, out: &mut Vec<u8>) -> Result<bool, &'static str> {
        loop {
            match self.chunk {
                ChunkState::Size => {
                    let Some(line) = self.line()? else {
                        return Ok(false);
                    };
                    let hex = line.split(';').next().unwrap_or("").trim();
                    let size =
                        u64::from_str_radix(hex, 16).map_err(|_| "a chunk size is malformed")?;
                    self.left = size;
                    self.chunk = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data
                    };
                }
                ChunkState::Data => {
                    let room = READ_SIZE.saturating_sub(out.len());
                    let n = (self.left as usize).min(self.pending.len()).min(room);
                    out.extend(self.pending.drain(..n));
                    self.left -= n as u64;
                    if self.left > 0 {
                        return Ok(false);
                    }
                    self.chunk = ChunkState::DataEnd;
                }
                ChunkState::DataEnd => {
                    if self.pending.len() < 2 {
                        return Ok(false);
                    }
                    if &self.pending[..2] != b"\r\n" {
                        return Err("a chunk does not end with CRLF");
                    }
                    self.pending.drain(..2);
                    self.chunk = ChunkState::Size;
                    if out.len() >= READ_SIZE {
                        return Ok(false);
                    }
                }
                ChunkState::Trailers => {
                    let Some(line) = self.line()? else {
                        return Ok(false);
                    };
                    if line.is_empty() {
                        self.chunk = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(out.is_empty()),
            }
        }
    }
}

/// For the fuzzer (`fuzz/fuzz_targets/http_request.rs`): `data[1..]` as the bytes of one
/// connection, read as the listener reads them: the head parsed after each read of
/// [`HEAD_READ`] bytes, its token and framing checked, the body decoded to its end or its
/// error, arriving in pieces of `data[0]` bytes (at least one). It must never panic, nor
/// loop without taking input. Public as `fluo_core::fuzzing::http_request`.
#[doc(hidden)]
pub fn fuzz_request(data: &[u8]) {
    let Some((piece, conn)) = data.split_first() else {
        return;
    };
    let piece = usize::from(*piece).max(1);
    let mut read = 0;
    let head = loop {
        if read == conn.len() {
            return;
        }
        read = (read + HEAD_READ).min(conn.len());
        match Head::parse(&conn[..read]) {
            Ok(Some(head)) => break head,
            Ok(None) => {}
            Err(_) => return,
        }
    };
    let mut rest = &conn[read..];
    let _ = authorized(&head, "token");
    let Ok(framing) = framing(&head, 1 << 20) else {
        return;
    };
    let mut body = Body::new(framing, head.rest.clone());
    let mut out = Vec::new();
    loop {
        match body.decode(&mut out) {
            Ok(true) | Err(_) => return,
            Ok(false) if !out.is_empty() => out.clear(),
            Ok(false) if rest.is_empty() => return,
            Ok(false) => {
                let n = piece.min(rest.len());
                body.input(&rest[..n]);
                rest = &rest[n..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(framing: Framing, parts: &[&[u8]]) -> Result<(Vec<u8>, bool), &'static str> {
        let mut b = Body::new(framing, Vec::new());
        let mut got = Vec::new();
        let mut done = false;
        for p in parts {
            b.input(p);
            loop {
                let mut out = Vec::new();
                done = b.decode(&mut out)?;
                if out.is_empty() {
                    break;
                }
                got.extend(out);
            }
        }
        Ok((got, done))
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let wire = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for split in 0..wire.len() {
            let (a, b) = wire.split_at(split);
            let (got, done) = decode_all(Framing::Chunked, &[a, b]).unwrap();
            assert_eq!(got, b"hello, world", "split at {split}");
            assert!(done, "split at {split}");
        }
        let (got, done) = decode_all(Framing::Chunked, &[b"5\r\nhel"]).unwrap();
        assert_eq!((got.as_slice(), done), (&b"hel"[..], false));
        assert!(decode_all(Framing::Chunked, &[b"zz\r\n"]).is_err());
        assert!(decode_all(Framing::Chunked, &[b"2\r\nabXY"]).is_err());
        assert!(decode_all(Framing::Chunked, &[&[b'1'; 5000][..]]).is_err());
    }

    #[test]
    fn length_bodies_stop_at_their_length() {
        let (got, done) = decode_all(Framing::Length(5), &[b"hel", b"loEXTRA"]).unwrap();
        assert_eq!((got.as_slice(), done), (&b"hello"[..], true));
        let (got, done) = decode_all(Framing::Length(5), &[b"hel"]).unwrap();
        assert_eq!((got.as_slice(), done), (&b"hel"[..], false));
    }

    #[test]
    fn a_head_parses_once_it_ended_and_is_refused_when_too_big_or_malformed() {
        let wire = b"POST /post/x?access_token=a%20b&n=1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(Head::parse(&wire[..20]), Ok(None));
        let head = Head::parse(wire).unwrap().unwrap();
        assert_eq!(head.method, "POST");
        assert_eq!(head.path, "/post/x");
        assert_eq!(head.query_param("n").as_deref(), Some("1"));
        assert_eq!(head.header("content-length"), Some("3"));
        assert_eq!(head.rest, b"abc");
        assert!(authorized(&head, "a b"));
        assert!(!authorized(&head, "a c"));
        assert_eq!(framing(&head, 1024), Ok(Framing::Length(3)));
        assert_eq!(framing(&head, 2).unwrap_err().status, 413);
        let refused = |wire: &[u8]| Head::parse(wire).unwrap_err().status;
        let endless = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; MAX_HEAD]].concat();
        assert_eq!(refused(&endless), 431);
        // A head that ends in the same read but is longer than the limit is refused too.
        let ended = [endless.as_slice(), b"\r\n\r\n"].concat();
        assert_eq!(refused(&ended), 431);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(refused(many.as_bytes()), 431);
        assert_eq!(refused(b"\x01\x02 / HTTP/1.1\r\n\r\n"), 400);
    }
}
