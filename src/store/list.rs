//! The list type, shaped like Redis's quicklist: a deque of nodes, each node a packed buffer of
//! entries. Both ends are cheap (push and pop touch only the end node) and small lists cost a
//! few bytes per element instead of a heap allocation each.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use super::packed::{Packed, encoded_len};

/// Elements at least this long get a node of their own (Redis's "plain" quicklist nodes);
/// changed by DEBUG QUICKLIST-PACKED-THRESHOLD.
pub static PACKED_THRESHOLD: AtomicU64 = AtomicU64::new(1 << 30);

/// Redis's SIZE_SAFETY_LIMIT: a node limited by count never grows past this many bytes.
const SIZE_SAFETY_LIMIT: usize = 8192;

/// How full a node may get, from `list-max-listpack-size`: a positive value limits entries per
/// node, -1..-5 limit node bytes to 4, 8, 16, 32 or 64 KB.
#[derive(Clone, Copy)]
pub struct Fill(pub i64);

impl Fill {
    fn allows(self, node: &Packed, extra: usize) -> bool {
        if node.count == 0 {
            return true;
        }
        if extra as u64 >= PACKED_THRESHOLD.load(Ordering::Relaxed) || is_plain(node) {
            return false;
        }
        let bytes = node.len_bytes() + extra;
        if self.0 >= 0 {
            (node.count as i64) < self.0.max(1) && bytes <= SIZE_SAFETY_LIMIT
        } else {
            bytes <= 4096 << (self.0.unsigned_abs().min(5) - 1)
        }
    }
}

/// A node holding one element at least as long as the packed threshold.
fn is_plain(node: &Packed) -> bool {
    node.count == 1 && node.len_bytes() as u64 >= PACKED_THRESHOLD.load(Ordering::Relaxed)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum End {
    Head,
    Tail,
}

#[derive(Clone, Default)]
pub struct List {
    nodes: VecDeque<Packed>,
    len: usize,
}

impl List {
    /// Packed nodes, each one allocation (Redis's quicklist length).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes held by the list, for MEMORY USAGE.
    pub fn allocated(&self) -> usize {
        std::mem::size_of::<List>()
            + self.nodes.capacity() * std::mem::size_of::<Packed>()
            + self.nodes.iter().map(Packed::capacity).sum::<usize>()
    }

    pub fn push(&mut self, end: End, value: &[u8], fill: Fill) {
        let extra = encoded_len(value);
        let node = match end {
            End::Head => self.nodes.front_mut(),
            End::Tail => self.nodes.back_mut(),
        };
        match node {
            Some(node) if fill.allows(node, extra) => match end {
                End::Head => node.push_front(value),
                End::Tail => node.push_back(value),
            },
            _ => {
                let node = Packed::of([value]);
                match end {
                    End::Head => self.nodes.push_front(node),
                    End::Tail => self.nodes.push_back(node),
                }
            }
        }
        self.len += 1;
    }

    pub fn pop(&mut self, end: End) -> Option<Vec<u8>> {
        let node = match end {
            End::Head => self.nodes.front_mut()?,
            End::Tail => self.nodes.back_mut()?,
        };
        let value = match end {
            End::Head => node.pop_front(),
            End::Tail => node.pop_back(),
        };
        if node.count == 0 {
            match end {
                End::Head => self.nodes.pop_front(),
                End::Tail => self.nodes.pop_back(),
            };
        }
        self.len -= 1;
        Some(value)
    }

    /// Resolves a Redis index (negative counts from the tail) to a position.
    pub fn position(&self, index: i64) -> Option<usize> {
        let position = if index < 0 {
            self.len as i64 + index
        } else {
            index
        };
        (0..self.len as i64)
            .contains(&position)
            .then_some(position as usize)
    }

    /// The node holding `position` and the position within it.
    fn locate(&self, mut position: usize) -> (usize, usize) {
        for (i, node) in self.nodes.iter().enumerate() {
            if position < node.count as usize {
                return (i, position);
            }
            position -= node.count as usize;
        }
        unreachable!("position checked against the length")
    }

    pub fn get(&self, position: usize) -> Option<&[u8]> {
        if position >= self.len {
            return None;
        }
        let (node, offset) = self.locate(position);
        self.nodes[node].iter().nth(offset)
    }

    /// Elements from head to tail.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &[u8]> {
        self.nodes.iter().flat_map(Packed::iter)
    }

    /// Elements from `position` towards the tail, skipping whole nodes before it.
    pub fn iter_from(&self, position: usize) -> impl Iterator<Item = &[u8]> {
        let (node, offset) = if position < self.len {
            self.locate(position)
        } else {
            (self.nodes.len(), 0)
        };
        self.nodes.range(node..).flat_map(Packed::iter).skip(offset)
    }

    /// Replaces node `index`, already taken out and holding `old_count` elements, with nodes
    /// built from `values` as `fill` requires.
    fn replace_node<'a>(
        &mut self,
        index: usize,
        old_count: u32,
        values: impl IntoIterator<Item = &'a [u8]>,
        fill: Fill,
    ) -> usize {
        let mut rebuilt: Vec<Packed> = Vec::new();
        for value in values {
            match rebuilt.last_mut() {
                Some(node) if fill.allows(node, encoded_len(value)) => node.push_back(value),
                _ => rebuilt.push(Packed::of([value])),
            }
        }
        self.nodes.remove(index);
        self.len -= old_count as usize;
        let produced = rebuilt.len();
        for (offset, node) in rebuilt.into_iter().enumerate() {
            self.len += node.count as usize;
            self.nodes.insert(index + offset, node);
        }
        produced
    }

    pub fn set(&mut self, position: usize, value: &[u8], fill: Fill) {
        let (index, offset) = self.locate(position);
        let node = std::mem::take(&mut self.nodes[index]);
        let values = node
            .iter()
            .enumerate()
            .map(|(i, old)| if i == offset { value } else { old });
        self.replace_node(index, node.count, values, fill);
    }

    /// Inserts `value` next to the first element equal to `pivot`; false if there is none.
    pub fn insert(&mut self, pivot: &[u8], value: &[u8], end: End, fill: Fill) -> bool {
        let found = self.nodes.iter().enumerate().find_map(|(index, node)| {
            node.iter()
                .position(|element| element == pivot)
                .map(|offset| (index, offset))
        });
        let Some((index, offset)) = found else {
            return false;
        };
        let node = std::mem::take(&mut self.nodes[index]);
        let at = if end == End::Head { offset } else { offset + 1 };
        let mut values: Vec<&[u8]> = node.iter().collect();
        values.insert(at, value);
        self.replace_node(index, node.count, values, fill);
        true
    }

    /// Removes up to `limit` elements equal to `value` (all when 0), from the end `from`.
    pub fn remove(&mut self, value: &[u8], limit: usize, from: End, fill: Fill) -> usize {
        let mut removed = 0;
        // Walking from the tail, node `i` is the one before `next`; from the head it is `next`.
        let mut next = match from {
            End::Head => 0,
            End::Tail => self.nodes.len(),
        };
        while limit == 0 || removed < limit {
            let index = match from {
                End::Head if next < self.nodes.len() => next,
                End::Tail if next > 0 => next - 1,
                _ => break,
            };
            let matches = self.nodes[index].iter().filter(|e| *e == value).count();
            let take = if limit == 0 {
                matches
            } else {
                matches.min(limit - removed)
            };
            let mut produced = 1;
            if take > 0 {
                let node = std::mem::take(&mut self.nodes[index]);
                let mut kept: Vec<&[u8]> = node.iter().collect();
                if from == End::Tail {
                    kept.reverse();
                }
                let mut dropped = 0;
                kept.retain(|e| {
                    let drop = dropped < take && *e == value;
                    dropped += drop as usize;
                    !drop
                });
                if from == End::Tail {
                    kept.reverse();
                }
                removed += take;
                produced = self.replace_node(index, node.count, kept, fill);
            }
            next = match from {
                End::Head => index + produced,
                End::Tail => index,
            };
        }
        removed
    }

    /// Drops `head` elements from the head and `tail` from the tail.
    pub fn trim(&mut self, head: usize, tail: usize) {
        for (end, count) in [(End::Head, head), (End::Tail, tail)] {
            let mut left = count;
            while left > 0 {
                let node = match end {
                    End::Head => self.nodes.front(),
                    End::Tail => self.nodes.back(),
                };
                let Some(node) = node else { break };
                if (node.count as usize) <= left {
                    left -= node.count as usize;
                    self.len -= node.count as usize;
                    match end {
                        End::Head => self.nodes.pop_front(),
                        End::Tail => self.nodes.pop_back(),
                    };
                } else {
                    self.pop(end);
                    left -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(list: &List) -> Vec<Vec<u8>> {
        list.iter().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn both_ends_and_node_splits() {
        let mut list = List::default();
        for i in 0..1000u32 {
            list.push(End::Tail, i.to_string().as_bytes(), Fill(4));
            list.push(End::Head, format!("-{i}").as_bytes(), Fill(4));
        }
        assert_eq!(list.len(), 2000);
        assert!(list.nodes.len() >= 500);
        assert_eq!(list.get(0).unwrap(), b"-999");
        assert_eq!(list.get(1999).unwrap(), b"999");
        assert_eq!(list.iter_from(1000).next().unwrap(), b"0");
        assert_eq!(list.iter().next_back().unwrap(), b"999");
        assert_eq!(list.pop(End::Tail).unwrap(), b"999");
        assert_eq!(list.pop(End::Head).unwrap(), b"-999");
        list.trim(998, 998);
        assert_eq!(collect(&list), vec![b"-0".to_vec(), b"0".to_vec()]);
    }

    #[test]
    fn long_entries_round_trip() {
        let long = vec![b'x'; 300];
        let mut list = List::default();
        list.push(End::Tail, &long, Fill(-2));
        list.push(End::Head, b"a", Fill(-2));
        assert_eq!(list.iter().next_back().unwrap(), &long[..]);
        assert_eq!(list.pop(End::Tail).unwrap(), long);
    }

    #[test]
    fn insert_set_remove() {
        let mut list = List::default();
        for v in ["a", "b", "a", "c", "a"] {
            list.push(End::Tail, v.as_bytes(), Fill(2));
        }
        assert!(list.insert(b"c", b"x", End::Head, Fill(2)));
        assert!(!list.insert(b"zz", b"x", End::Head, Fill(2)));
        list.set(0, b"first", Fill(2));
        assert_eq!(list.remove(b"a", 1, End::Tail, Fill(2)), 1);
        let text: Vec<String> = list
            .iter()
            .map(|e| String::from_utf8(e.to_vec()).unwrap())
            .collect();
        assert_eq!(text, ["first", "b", "a", "x", "c"]);
        assert_eq!(list.remove(b"a", 0, End::Head, Fill(2)), 1);
        assert_eq!(list.len(), 4);
    }
}
