//! Redis's listpack, byte for byte: `<total bytes u32><count u16>`, the entries, then 0xFF.
//! Each entry is an encoding byte with its data (a small integer, a sized integer, or a string
//! with its length) followed by the entry's own length written backwards, so the buffer can be
//! walked from either end.
//!
//! Streams keep their nodes in this format (not `Packed`'s) because Redis's RDB, DUMP and
//! `redis-check-rdb` read stream nodes as raw listpacks: holding them as Redis writes them makes
//! saving a copy and loading a validation. The RDB readers of older packed blobs also decode
//! with `decode` here. Every read is bounds-checked, as RESTORE hands in untrusted bytes.

const HEADER: usize = 6;
const END: u8 = 0xff;
/// Redis's LP_HDR_NUMELE_UNKNOWN: past 65,534 elements the header no longer counts them.
const COUNT_UNKNOWN: u16 = u16::MAX;

/// One element: a string or an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element<'a> {
    Bytes(&'a [u8]),
    Int(i64),
}

impl Element<'_> {
    pub fn to_vec(&self) -> Vec<u8> {
        match self {
            Element::Bytes(b) => b.to_vec(),
            Element::Int(n) => itoa::Buffer::new().format(*n).as_bytes().to_vec(),
        }
    }

    /// The element as an integer: stream nodes keep their counters and ID deltas as integers,
    /// though Redis also reads one stored as a decimal string.
    pub fn int(&self) -> Option<i64> {
        match self {
            Element::Int(n) => Some(*n),
            Element::Bytes(b) => crate::util::parse_i64(b),
        }
    }

    /// The element's bytes; integers are rendered into `scratch`.
    pub fn bytes<'a>(&'a self, scratch: &'a mut itoa::Buffer) -> &'a [u8] {
        match self {
            Element::Bytes(b) => b,
            Element::Int(n) => scratch.format(*n).as_bytes(),
        }
    }
}

pub fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0, |acc, b| acc << 8 | u64::from(*b))
}

/// Sign-extends the low `bits` of `value`.
pub fn signed(value: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((value << shift) as i64) >> shift
}

/// Bytes the backwards length of an entry of `len` bytes takes.
fn backlen_size(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2097150 => 3,
        2097151..=268435454 => 4,
        _ => 5,
    }
}

/// The element at `pos` of `data` and where the next one starts; None if the bytes there are
/// not a whole entry (or are the end marker).
pub fn decode(data: &[u8], pos: usize) -> Option<(Element<'_>, usize)> {
    let byte = *data.get(pos)?;
    let field = |from: usize, n: usize| data.get(from..from.checked_add(n)?);
    let (element, len) = match byte {
        b if b & 0x80 == 0 => (Element::Int(i64::from(b)), 1),
        b if b & 0xc0 == 0x80 => {
            let n = (b & 0x3f) as usize;
            (Element::Bytes(field(pos + 1, n)?), 1 + n)
        }
        b if b & 0xe0 == 0xc0 => {
            let low = *data.get(pos + 1)?;
            let value = u64::from(b & 0x1f) << 8 | u64::from(low);
            (Element::Int(signed(value, 13)), 2)
        }
        b if b & 0xf0 == 0xe0 => {
            let n = ((b & 0x0f) as usize) << 8 | *data.get(pos + 1)? as usize;
            (Element::Bytes(field(pos + 2, n)?), 2 + n)
        }
        0xf0 => {
            let n = le(field(pos + 1, 4)?) as usize;
            (Element::Bytes(field(pos + 5, n)?), 5 + n)
        }
        0xf1 => (Element::Int(signed(le(field(pos + 1, 2)?), 16)), 3),
        0xf2 => (Element::Int(signed(le(field(pos + 1, 3)?), 24)), 4),
        0xf3 => (Element::Int(signed(le(field(pos + 1, 4)?), 32)), 5),
        0xf4 => (Element::Int(le(field(pos + 1, 8)?) as i64), 9),
        _ => return None,
    };
    let next = pos + len + backlen_size(len);
    (next <= data.len()).then_some((element, next))
}

/// The length of the element at `pos` (encoding and data, without the backwards length),
/// read from its encoding alone: walking past elements need not decode them.
fn element_len(data: &[u8], pos: usize) -> Option<usize> {
    let byte = *data.get(pos)?;
    Some(match byte {
        b if b & 0x80 == 0 => 1,
        b if b & 0xc0 == 0x80 => 1 + (b & 0x3f) as usize,
        b if b & 0xe0 == 0xc0 => 2,
        b if b & 0xf0 == 0xe0 => 2 + (((b & 0x0f) as usize) << 8 | *data.get(pos + 1)? as usize),
        0xf0 => 5 + le(data.get(pos + 1..pos + 5)?) as usize,
        0xf1 => 3,
        0xf2 => 4,
        0xf3 => 5,
        0xf4 => 9,
        _ => return None,
    })
}

/// The entry sizes and the decoded backwards length that ends just before `end`.
fn backlen_before(data: &[u8], end: usize) -> Option<(usize, usize)> {
    let mut value = 0usize;
    let mut used = 0;
    loop {
        let byte = *data.get(end.checked_sub(used + 1)?)?;
        value |= ((byte & 127) as usize) << (7 * used);
        used += 1;
        if byte & 128 == 0 {
            return Some((value, used));
        }
        if used == 5 {
            return None;
        }
    }
}

/// An integer in the smallest listpack form, with its backwards length (one byte: an integer
/// entry is at most 9 bytes): at most 10 bytes, in a buffer and its used length.
fn int_entry(n: i64) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    let len = match n {
        0..=127 => {
            out[0] = n as u8;
            1
        }
        -4096..=4095 => {
            let v = (n as u64) & 0x1fff;
            out[0] = 0xc0 | (v >> 8) as u8;
            out[1] = v as u8;
            2
        }
        _ => {
            let (tag, bytes) = match n {
                -32768..=32767 => (0xf1, 2),
                -8_388_608..=8_388_607 => (0xf2, 3),
                -2_147_483_648..=2_147_483_647 => (0xf3, 4),
                _ => (0xf4, 8),
            };
            out[0] = tag;
            out[1..1 + bytes].copy_from_slice(&n.to_le_bytes()[..bytes]);
            1 + bytes
        }
    };
    out[len] = len as u8;
    (out, len + 1)
}

fn encode_str(s: &[u8], out: &mut Vec<u8>) {
    let len = s.len();
    if len < 64 {
        out.push(0x80 | len as u8);
    } else if len < 4096 {
        out.push(0xe0 | (len >> 8) as u8);
        out.push(len as u8);
    } else {
        out.push(0xf0);
        out.extend_from_slice(&(len as u32).to_le_bytes());
    }
    out.extend_from_slice(s);
}

/// Appends the backwards length of an entry of `len` bytes.
fn encode_backlen(len: usize, out: &mut Vec<u8>) {
    let size = backlen_size(len);
    for i in (0..size).rev() {
        let group = ((len >> (7 * i)) & 127) as u8;
        out.push(if i == size - 1 { group } else { group | 128 });
    }
}

/// Appends one element as an entry, with its backwards length. Redis stores a string that reads
/// as an integer in integer form.
fn encode_entry(element: Element<'_>, out: &mut Vec<u8>) {
    let int = match element {
        Element::Int(n) => Some(n),
        Element::Bytes(b) if b.len() <= 20 => crate::util::parse_i64(b),
        Element::Bytes(_) => None,
    };
    match (int, element) {
        (Some(n), _) => {
            let (bytes, len) = int_entry(n);
            out.extend_from_slice(&bytes[..len]);
        }
        (None, Element::Bytes(b)) => {
            let start = out.len();
            encode_str(b, out);
            let len = out.len() - start;
            encode_backlen(len, out);
        }
        (None, Element::Int(_)) => unreachable!("integers have an integer form"),
    }
}

/// A listpack in Redis's exact format.
#[derive(Clone)]
pub struct Listpack {
    data: Vec<u8>,
}

impl Default for Listpack {
    fn default() -> Self {
        Listpack::new()
    }
}

impl Listpack {
    pub fn new() -> Listpack {
        Listpack::with_capacity(HEADER + 1)
    }

    /// An empty listpack with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Listpack {
        let mut data = Vec::with_capacity(bytes.max(HEADER + 1));
        data.extend_from_slice(&7u32.to_le_bytes());
        data.extend_from_slice(&0u16.to_le_bytes());
        data.push(END);
        Listpack { data }
    }

    /// Takes bytes that claim to be a listpack: their header, every entry's encoding and
    /// backwards length, and the end marker are checked.
    pub fn from_bytes(data: Vec<u8>) -> Option<Listpack> {
        if data.len() < HEADER + 1 || le(&data[..4]) as usize != data.len() {
            return None;
        }
        let mut pos = HEADER;
        let mut count = 0usize;
        while data[pos] != END {
            let (_, next) = decode(&data, pos)?;
            let (len, used) = backlen_before(&data, next)?;
            if used != backlen_size(len) || pos + len + used != next {
                return None;
            }
            pos = next;
            count += 1;
            if pos >= data.len() {
                return None;
            }
        }
        let header_count = le(&data[4..6]) as u16;
        let counted_ok = header_count == COUNT_UNKNOWN || header_count as usize == count;
        (pos + 1 == data.len() && counted_ok).then_some(Listpack { data })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// Bytes the listpack occupies (Redis's lpBytes).
    pub fn size(&self) -> usize {
        self.data.len()
    }

    pub fn allocated(&self) -> usize {
        self.data.capacity()
    }

    pub fn shrink_to_fit(&mut self) {
        self.data.shrink_to_fit();
    }

    /// Position of the first element.
    pub fn first(&self) -> Option<usize> {
        (self.data[HEADER] != END).then_some(HEADER)
    }

    /// Position of the last element.
    pub fn last(&self) -> Option<usize> {
        self.prev(self.data.len() - 1)
    }

    /// The element after the one at `pos`.
    pub fn next(&self, pos: usize) -> Option<usize> {
        let len = element_len(&self.data, pos)?;
        let next = pos + len + backlen_size(len);
        (*self.data.get(next)? != END).then_some(next)
    }

    /// The element before the one at (or the end marker at) `pos`.
    pub fn prev(&self, pos: usize) -> Option<usize> {
        if pos <= HEADER {
            return None;
        }
        let (len, used) = backlen_before(&self.data, pos)?;
        pos.checked_sub(len + used).filter(|&p| p >= HEADER)
    }

    pub fn get(&self, pos: usize) -> Element<'_> {
        decode(&self.data, pos).map_or(Element::Int(0), |(e, _)| e)
    }

    /// The integer at `pos` (0 if it is not one, which a validated stream node never has).
    pub fn int(&self, pos: usize) -> i64 {
        match self.data.get(pos) {
            // Flags, small counts and ID deltas: 7-bit integers, the common case.
            Some(&byte) if byte & 0x80 == 0 => i64::from(byte),
            _ => self.get(pos).int().unwrap_or(0),
        }
    }

    pub fn push(&mut self, element: Element<'_>) {
        self.data.pop();
        encode_entry(element, &mut self.data);
        self.data.push(END);
        self.finish_edit(1);
    }

    pub fn push_int(&mut self, n: i64) {
        self.push(Element::Int(n));
    }

    /// Replaces the integer at `pos`; the element keeps its position, the ones after it move
    /// (only when the new value takes another number of bytes).
    pub fn replace_int(&mut self, pos: usize, n: i64) {
        let Some((_, next)) = decode(&self.data, pos) else {
            return;
        };
        let (bytes, len) = int_entry(n);
        if next - pos == len {
            self.data[pos..next].copy_from_slice(&bytes[..len]);
        } else {
            self.data.splice(pos..next, bytes[..len].iter().copied());
            self.finish_edit(0);
        }
    }

    /// Rewrites the header after `added` elements were appended.
    fn finish_edit(&mut self, added: u16) {
        let total = self.data.len() as u32;
        self.data[..4].copy_from_slice(&total.to_le_bytes());
        let count = le(&self.data[4..6]) as u16;
        let count = if count == COUNT_UNKNOWN {
            COUNT_UNKNOWN
        } else {
            count.saturating_add(added)
        };
        self.data[4..6].copy_from_slice(&count.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_encoding() {
        let values: Vec<i64> = vec![
            0,
            127,
            128,
            -1,
            -4096,
            4095,
            -32768,
            32767,
            8_388_607,
            -8_388_608,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ];
        let mut lp = Listpack::new();
        for &v in &values {
            lp.push_int(v);
        }
        let long = vec![b'x'; 5000];
        lp.push(Element::Bytes(b"hello"));
        lp.push(Element::Bytes(&long[..100]));
        lp.push(Element::Bytes(&long));
        lp.push(Element::Bytes(b"12"));
        let lp = Listpack::from_bytes(lp.as_bytes().to_vec()).expect("valid");
        let mut out = Vec::new();
        let mut pos = lp.first();
        while let Some(p) = pos {
            out.push(lp.get(p).to_vec());
            pos = lp.next(p);
        }
        let mut expected: Vec<Vec<u8>> =
            values.iter().map(|v| v.to_string().into_bytes()).collect();
        expected.extend([b"hello".to_vec(), long[..100].to_vec(), long.clone()]);
        expected.push(b"12".to_vec());
        assert_eq!(out, expected);
        // Walking back from the end visits the same elements.
        let mut back = Vec::new();
        let mut pos = lp.last();
        while let Some(p) = pos {
            back.push(lp.get(p).to_vec());
            pos = lp.prev(p);
        }
        back.reverse();
        assert_eq!(back, expected);
        assert_eq!(lp.get(lp.last().unwrap()), Element::Int(12));
    }

    #[test]
    fn replace_keeps_neighbours() {
        let mut lp = Listpack::new();
        for v in [1, 2, 3] {
            lp.push_int(v);
        }
        let second = lp.next(lp.first().unwrap()).unwrap();
        lp.replace_int(second, 1_000_000);
        let lp = Listpack::from_bytes(lp.as_bytes().to_vec()).expect("valid");
        let third = lp.next(second).unwrap();
        assert_eq!(lp.int(second), 1_000_000);
        assert_eq!(lp.int(third), 3);
        assert_eq!(lp.prev(third), Some(second));
    }

    #[test]
    fn rejects_truncated_and_bad_backlen() {
        let mut lp = Listpack::new();
        lp.push(Element::Bytes(b"abc"));
        let bytes = lp.as_bytes().to_vec();
        assert!(Listpack::from_bytes(bytes[..bytes.len() - 1].to_vec()).is_none());
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 2] = 9;
        assert!(Listpack::from_bytes(bad).is_none());
    }
}
