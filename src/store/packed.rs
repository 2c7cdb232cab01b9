//! A packed buffer of byte strings, as Redis's listpack: each entry is `len, bytes, back-len`,
//! where `len` is a LEB128 varint and `back-len` the same varint written in reverse, so the
//! buffer can be walked from either end. Small lists, hashes and sets live in one of these
//! instead of an allocation per element.

#[derive(Clone, Default)]
pub struct Packed {
    pub data: Vec<u8>,
    pub count: u32,
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

pub fn encoded_len(value: &[u8]) -> usize {
    2 * varint_len(value.len()) + value.len()
}

fn write_entry(out: &mut Vec<u8>, value: &[u8]) {
    let mut varint = [0u8; 10];
    let mut n = value.len();
    let mut used = 0;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        varint[used] = if n > 0 { byte | 0x80 } else { byte };
        used += 1;
        if n == 0 {
            break;
        }
    }
    // Exact growth up to 1 KB, as Redis reallocates a listpack per insert, so small hashes and
    // short lists hold no spare room; beyond, growth by an eighth, so a list node filling up
    // to 8 KB reallocates only every few pushes (exact growth there cost RPUSH 10% CPU).
    const EXACT_UP_TO: usize = 1024;
    let needed = 2 * used + value.len();
    if out.capacity() - out.len() < needed {
        let room = if out.len() < EXACT_UP_TO {
            needed
        } else {
            needed.max(out.len() / 8)
        };
        out.reserve_exact(room);
    }
    out.extend_from_slice(&varint[..used]);
    out.extend_from_slice(value);
    out.extend(varint[..used].iter().rev());
}

/// The entry starting at `pos`: its value range and the start of the next entry.
fn read_forward(data: &[u8], mut pos: usize) -> (usize, usize, usize) {
    let (mut len, mut shift, mut header) = (0usize, 0, 0);
    loop {
        let byte = data[pos];
        len |= ((byte & 0x7f) as usize) << shift;
        shift += 7;
        pos += 1;
        header += 1;
        if byte & 0x80 == 0 {
            break;
        }
    }
    (pos, pos + len, pos + len + header)
}

/// The entry ending at `end`: its value range and its start.
fn read_backward(data: &[u8], mut end: usize) -> (usize, usize, usize) {
    let (mut len, mut shift, mut trailer) = (0usize, 0, 0);
    loop {
        end -= 1;
        let byte = data[end];
        len |= ((byte & 0x7f) as usize) << shift;
        shift += 7;
        trailer += 1;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let value_end = end;
    let value_start = value_end - len;
    (value_start, value_end, value_start - trailer)
}

impl Packed {
    pub fn of<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Packed {
        let mut node = Packed::default();
        for value in values {
            node.push_back(value);
        }
        node
    }

    pub fn push_back(&mut self, value: &[u8]) {
        write_entry(&mut self.data, value);
        self.count += 1;
    }

    pub fn push_front(&mut self, value: &[u8]) {
        let old_len = self.data.len();
        write_entry(&mut self.data, value);
        // The entry went to the end; rotate it to the front in one move.
        let entry_len = self.data.len() - old_len;
        self.data.rotate_right(entry_len);
        self.count += 1;
    }

    pub fn pop_front(&mut self) -> Vec<u8> {
        let (start, end, next) = read_forward(&self.data, 0);
        let value = self.data[start..end].to_vec();
        self.data.drain(..next);
        self.count -= 1;
        value
    }

    pub fn pop_back(&mut self) -> Vec<u8> {
        let (start, end, entry_start) = read_backward(&self.data, self.data.len());
        let value = self.data[start..end].to_vec();
        self.data.truncate(entry_start);
        self.count -= 1;
        value
    }

    pub fn iter(&self) -> PackedIter<'_> {
        iter_bytes(&self.data)
    }

    /// The entries as an exact-size buffer without the count, as small hashes keep them.
    pub fn into_bytes(self) -> Box<[u8]> {
        self.data.into_boxed_slice()
    }
}

/// The entries of a bare packed buffer.
pub fn iter_bytes(data: &[u8]) -> PackedIter<'_> {
    PackedIter {
        data,
        front: 0,
        back: data.len(),
    }
}

/// Appends `values` to a bare packed buffer.
pub fn append(bytes: &mut Box<[u8]>, values: &[&[u8]]) {
    let mut data = std::mem::take(bytes).into_vec();
    for value in values {
        write_entry(&mut data, value);
    }
    *bytes = data.into_boxed_slice();
}

pub struct PackedIter<'a> {
    data: &'a [u8],
    front: usize,
    back: usize,
}

impl<'a> Iterator for PackedIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.front >= self.back {
            return None;
        }
        let (start, end, next) = read_forward(self.data, self.front);
        self.front = next;
        Some(&self.data[start..end])
    }
}

impl<'a> DoubleEndedIterator for PackedIter<'a> {
    fn next_back(&mut self) -> Option<&'a [u8]> {
        if self.front >= self.back {
            return None;
        }
        let (start, end, entry_start) = read_backward(self.data, self.back);
        self.back = entry_start;
        Some(&self.data[start..end])
    }
}
