//! Reply encoder for RESP2 and RESP3. Handlers write straight into the client's output buffer;
//! each RESP3-only type has the RESP2 fallback Redis uses (map -> flat array, null -> `$-1`/`*-1`,
//! double -> bulk string, boolean -> integer, push -> array).

use crate::util::format_double;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

pub struct Reply {
    pub buf: Vec<u8>,
    pub protocol: Protocol,
    /// `buf` up to here holds pushes (pub/sub confirmations), which CLIENT REPLY OFF does not
    /// suppress.
    pub pushed_until: usize,
}

impl Reply {
    pub fn new(protocol: Protocol) -> Self {
        Reply::with_capacity(protocol, 16 * 1024)
    }

    pub fn with_capacity(protocol: Protocol, capacity: usize) -> Self {
        Reply {
            buf: Vec::with_capacity(capacity),
            protocol,
            pushed_until: 0,
        }
    }

    /// Clears the buffer after it was written out.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pushed_until = 0;
    }

    /// Marks everything written so far as pushes that must reach the client.
    pub fn keep_pushed(&mut self) {
        self.pushed_until = self.buf.len();
    }

    pub fn is_resp3(&self) -> bool {
        self.protocol == Protocol::Resp3
    }

    fn header(&mut self, prefix: u8, n: i64) {
        self.buf.push(prefix);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    pub fn ok(&mut self) {
        self.buf.extend_from_slice(b"+OK\r\n");
    }

    pub fn simple(&mut self, s: &str) {
        self.buf.push(b'+');
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    /// An error reply; `msg` carries its code (`ERR ...`, `WRONGTYPE ...`). Newlines are replaced,
    /// as Redis does, so an error can never break the framing.
    pub fn error(&mut self, msg: &str) {
        self.buf.push(b'-');
        self.buf.extend(
            msg.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        self.buf.extend_from_slice(b"\r\n");
    }

    pub fn int(&mut self, n: i64) {
        self.header(b':', n);
    }

    pub fn bulk(&mut self, data: &[u8]) {
        // Room for the whole of it at once: growing for the data and then again for its CRLF
        // would double a buffer that a big value has just sized.
        self.buf.reserve(data.len() + 24);
        self.header(b'$', data.len() as i64);
        self.buf.extend_from_slice(data);
        self.buf.extend_from_slice(b"\r\n");
    }

    pub fn bulk_int(&mut self, n: i64) {
        self.bulk(itoa::Buffer::new().format(n).as_bytes());
    }

    /// The null bulk string: `$-1` in RESP2, `_` in RESP3.
    pub fn null(&mut self) {
        self.buf.extend_from_slice(if self.is_resp3() {
            b"_\r\n"
        } else {
            b"$-1\r\n"
        });
    }

    /// The null array: `*-1` in RESP2, `_` in RESP3.
    pub fn null_array(&mut self) {
        self.buf.extend_from_slice(if self.is_resp3() {
            b"_\r\n"
        } else {
            b"*-1\r\n"
        });
    }

    pub fn array(&mut self, len: usize) {
        self.header(b'*', len as i64);
    }

    /// A map of `len` pairs; a flat array of 2*len elements in RESP2.
    pub fn map(&mut self, len: usize) {
        if self.is_resp3() {
            self.header(b'%', len as i64);
        } else {
            self.header(b'*', 2 * len as i64);
        }
    }

    pub fn set(&mut self, len: usize) {
        self.header(if self.is_resp3() { b'~' } else { b'*' }, len as i64);
    }

    pub fn push(&mut self, len: usize) {
        self.header(if self.is_resp3() { b'>' } else { b'*' }, len as i64);
    }

    pub fn attribute(&mut self, len: usize) {
        if self.is_resp3() {
            self.header(b'|', len as i64);
        }
    }

    pub fn double(&mut self, value: f64) {
        self.double_text(&format_double(value));
    }

    /// A double already printed: a RESP3 double, or a bulk string in RESP2.
    pub fn double_text(&mut self, text: &str) {
        if self.is_resp3() {
            self.buf.push(b',');
            self.buf.extend_from_slice(text.as_bytes());
            self.buf.extend_from_slice(b"\r\n");
        } else {
            self.bulk(text.as_bytes());
        }
    }

    pub fn boolean(&mut self, value: bool) {
        if self.is_resp3() {
            self.buf
                .extend_from_slice(if value { b"#t\r\n" } else { b"#f\r\n" });
        } else {
            self.int(value as i64);
        }
    }

    /// A verbatim string (`=len\r\ntxt:...`) in RESP3, a bulk string in RESP2.
    pub fn verbatim(&mut self, format: &str, text: &[u8]) {
        if self.is_resp3() {
            self.header(b'=', (text.len() + 4) as i64);
            self.buf.extend_from_slice(format.as_bytes());
            self.buf.push(b':');
            self.buf.extend_from_slice(text);
            self.buf.extend_from_slice(b"\r\n");
        } else {
            self.bulk(text);
        }
    }

    pub fn big_number(&mut self, digits: &str) {
        if self.is_resp3() {
            self.buf.push(b'(');
            self.buf.extend_from_slice(digits.as_bytes());
            self.buf.extend_from_slice(b"\r\n");
        } else {
            self.bulk(digits.as_bytes());
        }
    }

    pub fn bulks<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a [u8]>) {
        self.array(items.len());
        for item in items {
            self.bulk(item);
        }
    }

    /// Appends an array whose length is only known after its elements were written into
    /// `body` (a reply of the same protocol), as Redis's deferred lengths do.
    pub fn array_of(&mut self, len: usize, body: Reply) {
        self.array(len);
        self.buf.extend_from_slice(&body.buf);
    }

    /// Inserts an array header of `len` at `at`, before the elements written since (a deferred
    /// length: the elements are counted as they are written).
    pub fn array_before(&mut self, at: usize, len: usize) {
        let mut header = [0u8; 24];
        header[0] = b'*';
        let mut digits = itoa::Buffer::new();
        let text = digits.format(len).as_bytes();
        header[1..1 + text.len()].copy_from_slice(text);
        let end = 1 + text.len();
        header[end..end + 2].copy_from_slice(b"\r\n");
        self.buf.splice(at..at, header[..end + 2].iter().copied());
    }

    /// A fresh reply buffer with the same protocol, for building a deferred part.
    pub fn sibling(&self) -> Reply {
        Reply::with_capacity(self.protocol, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(protocol: Protocol, f: impl FnOnce(&mut Reply)) -> String {
        let mut r = Reply::with_capacity(protocol, 0);
        f(&mut r);
        String::from_utf8(r.buf).unwrap()
    }

    #[test]
    fn resp3_types_fall_back_in_resp2() {
        let both = |f: fn(&mut Reply)| (encode(Protocol::Resp2, f), encode(Protocol::Resp3, f));
        assert_eq!(both(|r| r.null()), ("$-1\r\n".into(), "_\r\n".into()));
        assert_eq!(both(|r| r.null_array()), ("*-1\r\n".into(), "_\r\n".into()));
        assert_eq!(both(|r| r.map(2)), ("*4\r\n".into(), "%2\r\n".into()));
        assert_eq!(
            both(|r| r.boolean(true)),
            (":1\r\n".into(), "#t\r\n".into())
        );
        assert_eq!(
            both(|r| r.double(1.5)),
            ("$3\r\n1.5\r\n".into(), ",1.5\r\n".into())
        );
        assert_eq!(
            both(|r| r.error("ERR a\r\nb")),
            ("-ERR a  b\r\n".into(), "-ERR a  b\r\n".into())
        );
    }
}
