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

/// An entry's length varint: its bytes and how many are used.
fn varint(mut n: usize) -> ([u8; 10], usize) {
    let mut bytes = [0u8; 10];
    let mut used = 0;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        bytes[used] = if n > 0 { byte | 0x80 } else { byte };
        used += 1;
        if n == 0 {
            return (bytes, used);
        }
    }
}

/// Makes room for an entry of `needed` bytes. Exact growth up to 1 KB, as Redis reallocates a
/// listpack per insert, so small hashes and short lists hold no spare room; beyond, growth by
/// an eighth, so a list node filling up to 8 KB reallocates only every few pushes (exact growth
/// there cost RPUSH 10% CPU).
fn reserve_entry(out: &mut Vec<u8>, needed: usize) {
    const EXACT_UP_TO: usize = 1024;
    if out.capacity() - out.len() < needed {
        let room = if out.len() < EXACT_UP_TO {
            needed
        } else {
            needed.max(out.len() / 8)
        };
        out.reserve_exact(room);
    }
}

fn write_entry(out: &mut Vec<u8>, value: &[u8]) {
    let (len, used) = varint(value.len());
    reserve_entry(out, 2 * used + value.len());
    out.extend_from_slice(&len[..used]);
    out.extend_from_slice(value);
    out.extend(len[..used].iter().rev());
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
        let (len, used) = varint(value.len());
        let entry_len = 2 * used + value.len();
        reserve_entry(&mut self.data, entry_len);
        // One move of the old entries (a rotate moved them several times over: 9% of LPUSH's
        // CPU with 1 KB values), then the entry is written in front.
        let old_len = self.data.len();
        self.data.resize(old_len + entry_len, 0);
        self.data.copy_within(..old_len, entry_len);
        let (header, rest) = self.data.split_at_mut(used);
        header.copy_from_slice(&len[..used]);
        rest[..value.len()].copy_from_slice(value);
        for (slot, byte) in rest[value.len()..entry_len - used]
            .iter_mut()
            .zip(len[..used].iter().rev())
        {
            *slot = *byte;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_pushed_at_either_end_read_back_from_both() {
        // Lengths around the varint's one- and two-byte limits, and a three-byte one.
        let values: Vec<Vec<u8>> = [0usize, 1, 127, 128, 300, 20_000]
            .iter()
            .map(|&n| (0..n).map(|i| (i * 7 + n) as u8).collect())
            .collect();
        let mut node = Packed::default();
        for (i, value) in values.iter().enumerate() {
            if i % 2 == 0 {
                node.push_front(value);
            } else {
                node.push_back(value);
            }
        }
        // Fronts were pushed in order 0, 2, 4, so they read 4, 2, 0; backs follow as 1, 3, 5.
        let order = [4, 2, 0, 1, 3, 5];
        let forward: Vec<&[u8]> = node.iter().collect();
        let expected: Vec<&[u8]> = order.iter().map(|&i| values[i].as_slice()).collect();
        assert_eq!(forward, expected);
        let backward: Vec<&[u8]> = node.iter().rev().collect();
        let reversed: Vec<&[u8]> = expected.iter().rev().copied().collect();
        assert_eq!(backward, reversed);
        assert_eq!(node.pop_front(), values[4]);
        assert_eq!(node.pop_back(), values[5]);
        assert_eq!(node.count, 4);
    }
}
