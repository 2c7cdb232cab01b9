//! Incremental RESP request parser: multibulk (`*N\r\n$L\r\n...`) and inline commands.
//! Arguments are split off the read buffer as zero-copy `Bytes`. Partial requests keep their
//! state here, so a large bulk arriving in many reads is never rescanned.

use bytes::{Buf, Bytes, BytesMut};

use super::splitargs::split_args;
use crate::util::parse_i64;

/// Redis's PROTO_INLINE_MAX_SIZE: the longest inline request or header line.
pub const INLINE_MAX_SIZE: usize = 64 * 1024;
/// Bulk arguments at least this large get their whole buffer reserved up front.
const BIG_ARG: usize = 32 * 1024;

/// A protocol violation; the client gets `-ERR Protocol error: <msg>` and is disconnected.
#[derive(Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// What the parser enforces for one client.
#[derive(Clone, Copy)]
pub struct Limits {
    /// `proto-max-bulk-len`.
    pub max_bulk_len: usize,
    /// Unauthenticated clients may only send small requests, as in Redis.
    pub authenticated: bool,
}

#[derive(Default)]
pub struct RequestParser {
    /// Bulk arguments still expected by the multibulk request in progress.
    remaining: usize,
    /// Length of the bulk whose `$len` header has been read but whose payload has not.
    bulk_len: Option<usize>,
}

impl RequestParser {
    /// Parses at most one request from `buf`, pushing its arguments onto `args`.
    /// Returns `Ok(true)` when `args` holds a complete request (empty for a blank one, which the
    /// caller skips), `Ok(false)` when more bytes are needed; `args` then keeps what was parsed.
    pub fn parse(
        &mut self,
        buf: &mut BytesMut,
        args: &mut Vec<Bytes>,
        limits: Limits,
    ) -> Result<bool, ProtocolError> {
        if self.remaining == 0 {
            if buf.is_empty() {
                return Ok(false);
            }
            if buf[0] != b'*' {
                return parse_inline(buf, args);
            }
            // On the stack, not in the parser: the parser lives in every connection's task,
            // idle ones included.
            let mut spans = [(0, 0); FAST_ARGS];
            if let Some(count) = complete_request(buf, limits, &mut spans) {
                split_request(buf, &spans[..count], args);
                return Ok(true);
            }
            let Some(line_end) = find_crlf(buf, 1) else {
                return too_big(buf, "too big mbulk count string");
            };
            let count = parse_i64(&buf[1..line_end]);
            buf.advance(line_end + 2);
            match count {
                Some(n) if n <= i32::MAX as i64 => {
                    if n > 10 && !limits.authenticated {
                        return protocol_error("unauthenticated multibulk length");
                    }
                    if n <= 0 {
                        return Ok(true);
                    }
                    self.remaining = n as usize;
                    args.reserve(self.remaining.min(1024));
                }
                _ => return protocol_error("invalid multibulk length"),
            }
        }
        while self.remaining > 0 {
            let len = match self.bulk_len {
                Some(len) => len,
                None => {
                    if buf.is_empty() {
                        return Ok(false);
                    }
                    let Some(line_end) = find_crlf(buf, 1) else {
                        return too_big(buf, "too big bulk count string");
                    };
                    if buf[0] != b'$' {
                        return protocol_error(&format!("expected '$', got '{}'", buf[0] as char));
                    }
                    let len = match parse_i64(&buf[1..line_end]) {
                        Some(n) if n >= 0 && n as u64 <= limits.max_bulk_len as u64 => n as usize,
                        _ => return protocol_error("invalid bulk length"),
                    };
                    if len > 16384 && !limits.authenticated {
                        return protocol_error("unauthenticated bulk length");
                    }
                    buf.advance(line_end + 2);
                    // Room for exactly the rest of the argument, as Redis's
                    // `sdsMakeRoomForNonGreedy`: the buffer's size then does not depend on how
                    // much of the argument came with its header.
                    if len >= BIG_ARG {
                        buf.reserve((len + 2).saturating_sub(buf.len()));
                    }
                    self.bulk_len = Some(len);
                    len
                }
            };
            if buf.len() < len + 2 {
                return Ok(false);
            }
            args.push(buf.split_to(len).freeze());
            buf.advance(2);
            self.bulk_len = None;
            self.remaining -= 1;
        }
        Ok(true)
    }
}

impl RequestParser {
    /// Bytes still to come of the bulk argument being read (with its CRLF), 0 when none is.
    pub fn awaited(&self, buf: &BytesMut) -> usize {
        self.bulk_len
            .map_or(0, |len| (len + 2).saturating_sub(buf.len()))
    }

    /// Whether the next byte of input starts a new request (no request is half parsed).
    pub fn at_request_start(&self) -> bool {
        self.remaining == 0
    }
}

/// Most arguments a request may have to take the fast path; longer ones go through `parse`.
const FAST_ARGS: usize = 16;

/// How many arguments the request at the start of `buf` has, with where each lies written to
/// `spans`, when the request is a well-formed multibulk of 1 to `FAST_ARGS` arguments that
/// has fully arrived and is within `limits`. Anything else (incomplete, malformed, over a
/// limit) is left to the incremental parser, which reports Redis's errors and keeps its place
/// across reads.
fn complete_request(
    buf: &[u8],
    limits: Limits,
    spans: &mut [(usize, usize); FAST_ARGS],
) -> Option<usize> {
    let (count, mut at) = peek_number(buf, 0)?;
    let max_count = if limits.authenticated { FAST_ARGS } else { 10 };
    if count == 0 || count > max_count {
        return None;
    }
    let max_len = if limits.authenticated {
        limits.max_bulk_len
    } else {
        limits.max_bulk_len.min(16384)
    };
    for span in &mut spans[..count] {
        if buf.get(at) != Some(&b'$') {
            return None;
        }
        let (len, start) = peek_number(buf, at)?;
        let end = start + len;
        if len > max_len || end + 2 > buf.len() {
            return None;
        }
        *span = (start, end);
        at = end + 2;
    }
    Some(count)
}

/// Takes the request that `complete_request` measured off `buf` with one split, its arguments
/// sharing that one allocation: the header bytes are skipped by slicing, not by advancing.
fn split_request(buf: &mut BytesMut, spans: &[(usize, usize)], args: &mut Vec<Bytes>) {
    let (&(last_start, last_end), others) = spans.split_last().expect("at least one argument");
    let mut request = buf.split_to(last_end + 2).freeze();
    args.extend(others.iter().map(|&(start, end)| request.slice(start..end)));
    request.truncate(last_end);
    request.advance(last_start);
    args.push(request);
}

/// Calls `visit` with the first and second arguments of each complete multibulk request at the
/// start of `buf`, at most `max` of them, without consuming anything; stops at the first request
/// that is incomplete, inline or malformed. For hints only (key prefetching): `parse` alone
/// checks the limits and reports errors.
pub fn peek_requests<'a>(
    buf: &'a [u8],
    max: usize,
    mut visit: impl FnMut(&'a [u8], Option<&'a [u8]>),
) {
    let mut pos = 0;
    for _ in 0..max {
        if buf.get(pos) != Some(&b'*') {
            return;
        }
        let Some((count, mut at)) = peek_number(buf, pos) else {
            return;
        };
        let mut first_two: [Option<&[u8]>; 2] = [None; 2];
        for index in 0..count {
            if buf.get(at) != Some(&b'$') {
                return;
            }
            let Some((len, start)) = peek_number(buf, at) else {
                return;
            };
            let end = start + len;
            if end + 2 > buf.len() {
                return;
            }
            if let Some(slot) = first_two.get_mut(index) {
                *slot = Some(&buf[start..end]);
            }
            at = end + 2;
        }
        let Some(name) = first_two[0] else {
            return;
        };
        visit(name, first_two[1]);
        pos = at;
    }
}

/// The number in the header line at `at` (after its `*` or `$`) and where the line's end is
/// passed, if the line is complete and holds digits only, up to `i32::MAX`.
fn peek_number(buf: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut n = 0usize;
    let mut pos = at + 1;
    loop {
        let byte = *buf.get(pos)?;
        if byte == b'\r' {
            break;
        }
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 || n > i32::MAX as usize / 10 {
            return None;
        }
        n = n * 10 + digit as usize;
        pos += 1;
    }
    (pos > at + 1 && pos + 1 < buf.len()).then_some((n, pos + 2))
}

fn parse_inline(buf: &mut BytesMut, args: &mut Vec<Bytes>) -> Result<bool, ProtocolError> {
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        return too_big(buf, "too big inline request");
    };
    let line_end = if newline > 0 && buf[newline - 1] == b'\r' {
        newline - 1
    } else {
        newline
    };
    let line = buf.split_to(newline + 1);
    match split_args(&line[..line_end]) {
        Some(words) => {
            args.extend(words.into_iter().map(Bytes::from));
            Ok(true)
        }
        None => protocol_error("unbalanced quotes in request"),
    }
}

/// Position of the `\r` that ends the header line starting at `buf[0]`, if complete.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let pos = from
        + buf[from.min(buf.len())..]
            .iter()
            .position(|&b| b == b'\r')?;
    (pos + 1 < buf.len()).then_some(pos)
}

fn too_big(buf: &BytesMut, what: &str) -> Result<bool, ProtocolError> {
    if buf.len() > INLINE_MAX_SIZE {
        protocol_error(what)
    } else {
        Ok(false)
    }
}

fn protocol_error(msg: &str) -> Result<bool, ProtocolError> {
    Err(ProtocolError(msg.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bulk_len: 512 << 20,
        authenticated: true,
    };

    fn parse_all(input: &[u8]) -> Result<Vec<Vec<String>>, ProtocolError> {
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        let mut args = Vec::new();
        while parser.parse(&mut buf, &mut args, LIMITS)? {
            out.push(
                args.drain(..)
                    .map(|a| String::from_utf8_lossy(&a).into_owned())
                    .collect(),
            );
            if buf.is_empty() {
                break;
            }
        }
        Ok(out)
    }

    #[test]
    fn parses_pipelined_multibulk_and_inline() {
        let got = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\nset a \"b c\"\r\n").unwrap();
        assert_eq!(
            got,
            vec![vec!["GET", "k"], vec!["PING"], vec!["set", "a", "b c"]]
        );
    }

    #[test]
    fn resumes_a_request_split_across_reads() {
        let mut parser = RequestParser::default();
        let mut args = Vec::new();
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$5\r\nhel"[..]);
        assert_eq!(parser.parse(&mut buf, &mut args, LIMITS), Ok(false));
        buf.extend_from_slice(b"lo\r\n");
        assert_eq!(parser.parse(&mut buf, &mut args, LIMITS), Ok(true));
        assert_eq!(args, vec![Bytes::from("GET"), Bytes::from("hello")]);
    }

    #[test]
    fn reports_redis_protocol_errors() {
        let err = |input: &[u8]| parse_all(input).unwrap_err().0;
        assert_eq!(err(b"*3000000000\r\n"), "invalid multibulk length");
        assert_eq!(err(b"*1\r\nfoo\r\n"), "expected '$', got 'f'");
        assert_eq!(err(b"*1\r\n$-10\r\n"), "invalid bulk length");
        assert_eq!(err(b"*1\r\n$blabla\r\n"), "invalid bulk length");
        assert_eq!(err(b"set \"a\r\n"), "unbalanced quotes in request");
        assert_eq!(err(&[b'x'; 70_000]), "too big inline request");
        assert_eq!(parse_all(b"*-10\r\n").unwrap(), vec![Vec::<String>::new()]);
    }

    #[test]
    fn complete_and_partial_requests_parse_alike() {
        let request = |count: usize| {
            let mut out = format!("*{count}\r\n");
            for i in 0..count {
                let arg = "x".repeat(i);
                out += &format!("${}\r\n{arg}\r\n", arg.len());
            }
            out
        };
        let input = request(1) + &request(FAST_ARGS) + &request(FAST_ARGS + 1) + &request(2);
        let whole = parse_all(input.as_bytes()).unwrap();
        let sizes: Vec<usize> = whole.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, FAST_ARGS, FAST_ARGS + 1, 2]);
        assert_eq!(whole[1][FAST_ARGS - 1], "x".repeat(FAST_ARGS - 1));
        // Fed a byte at a time, every request takes the incremental path.
        let mut parser = RequestParser::default();
        let (mut buf, mut args, mut bytewise) = (BytesMut::new(), Vec::new(), Vec::new());
        for &byte in input.as_bytes() {
            buf.extend_from_slice(&[byte]);
            if parser.parse(&mut buf, &mut args, LIMITS).unwrap() {
                let text = args
                    .drain(..)
                    .map(|a| String::from_utf8_lossy(&a).into_owned());
                bytewise.push(text.collect::<Vec<_>>());
            }
        }
        assert_eq!(bytewise, whole);
    }

    #[test]
    fn limits_unauthenticated_clients() {
        let mut parser = RequestParser::default();
        let limits = Limits {
            authenticated: false,
            ..LIMITS
        };
        let mut buf = BytesMut::from(&b"*11\r\n"[..]);
        let err = parser.parse(&mut buf, &mut Vec::new(), limits).unwrap_err();
        assert_eq!(err.0, "unauthenticated multibulk length");
        let complete = "*11\r\n".to_owned() + &"$1\r\nx\r\n".repeat(11);
        let mut buf = BytesMut::from(complete.as_bytes());
        let err = parser.parse(&mut buf, &mut Vec::new(), limits).unwrap_err();
        assert_eq!(err.0, "unauthenticated multibulk length");
        let big = format!("*1\r\n$16385\r\n{}\r\n", "x".repeat(16385));
        let mut buf = BytesMut::from(big.as_bytes());
        let err = RequestParser::default()
            .parse(&mut buf, &mut Vec::new(), limits)
            .unwrap_err();
        assert_eq!(err.0, "unauthenticated bulk length");
    }

    #[test]
    fn peeks_at_complete_requests_without_consuming() {
        let input = b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$1\r\nv\r\n*1\r\n$4\r\nPING\r\n\
                      *2\r\n$3\r\nGET\r\n$2\r\nk2\r\n*2\r\n$3\r\nGET\r\n$2\r\nk";
        let mut seen = Vec::new();
        peek_requests(input, 16, |name, key| seen.push((name, key)));
        let expected: Vec<(&[u8], Option<&[u8]>)> = vec![
            (b"SET", Some(b"k1")),
            (b"PING", None),
            (b"GET", Some(b"k2")),
        ];
        assert_eq!(seen, expected);
        seen.clear();
        peek_requests(input, 2, |name, key| seen.push((name, key)));
        assert_eq!(seen.len(), 2);
        // Inline requests and garbage end the peek; nothing after them is seen.
        seen.clear();
        peek_requests(b"PING\r\n*1\r\n$4\r\nPING\r\n", 16, |n, k| {
            seen.push((n, k))
        });
        peek_requests(b"*1\r\n$-1\r\n*1\r\n$4\r\nPING\r\n", 16, |n, k| {
            seen.push((n, k))
        });
        peek_requests(b"*1\r\n$99999999999999999999\r\n", 16, |n, k| {
            seen.push((n, k))
        });
        assert!(seen.is_empty());
    }
}
