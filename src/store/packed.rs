//! A packed buffer of byte strings, as Redis's listpack: each entry is `len, bytes, back-len`,
//! where `len` is a LEB128 varint and `back-len` the same varint written in reverse, so the
//! buffer can be walked from either end. Small lists, hashes and sets live in one of these
//! instead of an allocation per element.

/// The entries lie in `data[front..]`. Unlike a listpack, which moves all its entries to insert
/// or delete at its head, the space before `front` takes pushes at the head, and a pop at the
/// head only moves `front`: LPUSH and LPOP then cost what RPUSH and RPOP do, instead of a move
/// of the whole node (up to 8 KB) each.
#[derive(Clone, Default)]
pub struct Packed {
    data: Vec<u8>,
    front: u32,
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

/// How much room to make for an entry of `needed` bytes beside `used` bytes of entries. Exact
/// growth up to 1 KB, as Redis reallocates a listpack per insert, so small hashes and short lists
/// hold no spare room; beyond, growth by an eighth, so a list node filling up to 8 KB
/// reallocates only every few pushes (exact growth there cost RPUSH 10% CPU).
fn room_for(needed: usize, used: usize) -> usize {
    const EXACT_UP_TO: usize = 1024;
    if used < EXACT_UP_TO {
        needed
    } else {
        needed.max(used / 8)
    }
}

/// Makes room at the end of a bare packed buffer for an entry of `needed` bytes.
fn reserve_entry(out: &mut Vec<u8>, needed: usize) {
    if out.capacity() - out.len() < needed {
        out.reserve_exact(room_for(needed, out.len()));
    }
}

fn write_entry(out: &mut Vec<u8>, value: &[u8]) {
    let (len, used) = varint(value.len());
    reserve_entry(out, 2 * used + value.len());
    out.extend_from_slice(&len[..used]);
    out.extend_from_slice(value);
    out.extend(len[..used].iter().rev());
}

/// Writes the entry of `value` into `slot`, which is exactly `encoded_len(value)` long.
fn write_entry_at(slot: &mut [u8], value: &[u8]) {
    let (len, used) = varint(value.len());
    let (header, rest) = slot.split_at_mut(used);
    header.copy_from_slice(&len[..used]);
    let (body, trailer) = rest.split_at_mut(value.len());
    body.copy_from_slice(value);
    for (slot, byte) in trailer.iter_mut().zip(len[..used].iter().rev()) {
        *slot = *byte;
    }
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

    /// Bytes the entries take.
    pub fn len_bytes(&self) -> usize {
        self.data.len() - self.front as usize
    }

    /// Bytes allocated, for MEMORY USAGE.
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    pub fn push_back(&mut self, value: &[u8]) {
        let needed = encoded_len(value);
        if self.front > 0 && self.data.capacity() - self.data.len() < needed {
            // The space freed at the head goes to the tail before the buffer grows.
            self.data.drain(..self.front as usize);
            self.front = 0;
        }
        write_entry(&mut self.data, value);
        self.count += 1;
    }

    pub fn push_front(&mut self, value: &[u8]) {
        let needed = encoded_len(value);
        let front = self.front as usize;
        if front < needed {
            let grow = room_for(needed, self.len_bytes()) - front;
            let old_len = self.data.len();
            self.data.reserve_exact(grow);
            self.data.resize(old_len + grow, 0);
            self.data.copy_within(front..old_len, front + grow);
            self.front += grow as u32;
        }
        let start = self.front as usize - needed;
        write_entry_at(&mut self.data[start..start + needed], value);
        self.front = start as u32;
        self.count += 1;
    }

    pub fn pop_front(&mut self) -> Vec<u8> {
        let (start, end, next) = read_forward(&self.data, self.front as usize);
        let value = self.data[start..end].to_vec();
        self.front = next as u32;
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
        iter_bytes(&self.data[self.front as usize..])
    }

    /// The entries as an exact-size buffer without the count, as small hashes keep them.
    pub fn into_bytes(mut self) -> Box<[u8]> {
        self.data.drain(..self.front as usize);
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

    #[test]
    fn pushes_and_pops_at_both_ends_match_a_deque() {
        // Values of 1 to 300 bytes, so the head's room is made both exactly (under 1 KB of
        // entries) and by an eighth, and pushes at the tail reclaim room freed at the head.
        let mut node = Packed::default();
        let mut model = std::collections::VecDeque::new();
        for i in 0..3000usize {
            let value: Vec<u8> = (0..1 + i * 37 % 300).map(|j| (i + j) as u8).collect();
            match i % 7 {
                0 | 3 | 5 => node.push_front(&value),
                1 | 4 => node.push_back(&value),
                2 => assert_eq!(Some(node.pop_front()), model.pop_front()),
                _ => assert_eq!(Some(node.pop_back()), model.pop_back()),
            }
            match i % 7 {
                0 | 3 | 5 => model.push_front(value),
                1 | 4 => model.push_back(value),
                _ => {}
            }
            assert_eq!(node.count as usize, model.len());
        }
        let entries: usize = model.iter().map(|v| encoded_len(v)).sum();
        assert_eq!(node.len_bytes(), entries);
        assert!(node.iter().eq(model.iter().map(Vec::as_slice)));
        assert!(node.iter().rev().eq(model.iter().rev().map(Vec::as_slice)));
        let bytes = node.into_bytes();
        assert!(iter_bytes(&bytes).eq(model.iter().map(Vec::as_slice)));
    }
}
