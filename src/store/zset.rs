//! The sorted set: a member -> score table beside an order-statistic tree of (score, member),
//! so insert, delete, rank, and range by score, lex or rank are all O(log n), as Redis's
//! skiplist gives. The tree is a treap kept in an arena (`Vec` of nodes linked by index):
//! each node carries its subtree size, which makes rank and select walks down one path.
//!
//! OBJECT ENCODING reports `listpack` while the set is within `zset-max-listpack-entries` and
//! `zset-max-listpack-value`, `skiplist` once it outgrew them (sticky, as Redis converts once);
//! the representation itself is the same.

use std::cmp::Ordering;

use super::dict::Dict;

const NIL: u32 = u32::MAX;

#[derive(Clone)]
struct Node {
    score: f64,
    member: Box<[u8]>,
    priority: u32,
    size: u32,
    left: u32,
    right: u32,
}

/// `zset-max-listpack-entries` and `zset-max-listpack-value`.
#[derive(Clone, Copy)]
pub struct ZsetLimits {
    pub entries: usize,
    pub value: usize,
}

impl ZsetLimits {
    pub fn from_config(config: &crate::config::Config) -> ZsetLimits {
        ZsetLimits {
            entries: config.int(crate::config::ZSET_MAX_LISTPACK_ENTRIES) as usize,
            value: config.int(crate::config::ZSET_MAX_LISTPACK_VALUE) as usize,
        }
    }
}

pub struct Zset {
    scores: Dict<f64>,
    nodes: Vec<Node>,
    free: Vec<u32>,
    root: u32,
    seed: u32,
    big: bool,
}

impl Default for Zset {
    fn default() -> Zset {
        Zset {
            scores: Dict::default(),
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
            seed: 0x9e37_79b9,
            big: false,
        }
    }
}

impl Clone for Zset {
    fn clone(&self) -> Zset {
        let mut scores = Dict::default();
        for (member, score) in self.scores.iter() {
            scores.insert(member, *score);
        }
        Zset {
            scores,
            nodes: self.nodes.clone(),
            free: self.free.clone(),
            root: self.root,
            seed: self.seed,
            big: self.big,
        }
    }
}

/// Redis's order: by score, then by member bytes.
fn cmp_entry(score: f64, member: &[u8], other_score: f64, other_member: &[u8]) -> Ordering {
    score
        .partial_cmp(&other_score)
        .unwrap_or(Ordering::Equal)
        .then_with(|| member.cmp(other_member))
}

impl Zset {
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn encoding(&self) -> &'static str {
        if self.big { "skiplist" } else { "listpack" }
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    fn size(&self, node: u32) -> u32 {
        if node == NIL {
            0
        } else {
            self.nodes[node as usize].size
        }
    }

    fn update(&mut self, node: u32) {
        let (l, r) = {
            let n = &self.nodes[node as usize];
            (n.left, n.right)
        };
        self.nodes[node as usize].size = 1 + self.size(l) + self.size(r);
    }

    /// Splits `node` into (entries for which `goes_left` holds, the rest); `goes_left` must
    /// hold for a prefix of the order.
    fn split(&mut self, node: u32, goes_left: &impl Fn(&Node) -> bool) -> (u32, u32) {
        if node == NIL {
            return (NIL, NIL);
        }
        if goes_left(&self.nodes[node as usize]) {
            let right = self.nodes[node as usize].right;
            let (a, b) = self.split(right, goes_left);
            self.nodes[node as usize].right = a;
            self.update(node);
            (node, b)
        } else {
            let left = self.nodes[node as usize].left;
            let (a, b) = self.split(left, goes_left);
            self.nodes[node as usize].left = b;
            self.update(node);
            (a, node)
        }
    }

    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].priority > self.nodes[b as usize].priority {
            let right = self.nodes[a as usize].right;
            let merged = self.merge(right, b);
            self.nodes[a as usize].right = merged;
            self.update(a);
            a
        } else {
            let left = self.nodes[b as usize].left;
            let merged = self.merge(a, left);
            self.nodes[b as usize].left = merged;
            self.update(b);
            b
        }
    }

    fn next_priority(&mut self) -> u32 {
        // xorshift32: priorities only need to look random to keep the tree balanced.
        let mut x = self.seed;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.seed = x;
        x
    }

    fn tree_insert(&mut self, score: f64, member: &[u8]) {
        let node = Node {
            score,
            member: member.into(),
            priority: self.next_priority(),
            size: 1,
            left: NIL,
            right: NIL,
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.nodes[index as usize] = node;
                index
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        let (l, r) = self.split(self.root, &|n: &Node| {
            cmp_entry(n.score, &n.member, score, member) == Ordering::Less
        });
        let left = self.merge(l, index);
        self.root = self.merge(left, r);
    }

    fn tree_remove(&mut self, score: f64, member: &[u8]) {
        let (l, rest) = self.split(self.root, &|n: &Node| {
            cmp_entry(n.score, &n.member, score, member) == Ordering::Less
        });
        let (found, r) = self.split(rest, &|n: &Node| {
            cmp_entry(n.score, &n.member, score, member) != Ordering::Greater
        });
        if found != NIL {
            self.nodes[found as usize].member = Box::default();
            self.free.push(found);
        }
        self.root = self.merge(l, r);
    }

    /// Sets `member`'s score; returns the old score if it was present.
    pub fn insert(&mut self, member: &[u8], score: f64, limits: ZsetLimits) -> Option<f64> {
        let old = self.score(member);
        if old == Some(score) {
            return old;
        }
        if let Some(old) = old {
            self.tree_remove(old, member);
        }
        self.scores.insert(member, score);
        self.tree_insert(score, member);
        if self.len() > limits.entries || member.len() > limits.value {
            self.big = true;
        }
        old
    }

    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let score = self.scores.remove(member)?;
        self.tree_remove(score, member);
        Some(score)
    }

    /// How many entries sort before the first one for which `at_or_after` holds.
    pub fn count_before(&self, at_or_after: impl Fn(f64, &[u8]) -> bool) -> usize {
        let (mut node, mut count) = (self.root, 0);
        while node != NIL {
            let n = &self.nodes[node as usize];
            if at_or_after(n.score, &n.member) {
                node = n.left;
            } else {
                count += self.size(n.left) as usize + 1;
                node = n.right;
            }
        }
        count
    }

    /// 0-based rank of `member` in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = self.score(member)?;
        Some(self.count_before(|s, m| cmp_entry(s, m, score, member) != Ordering::Less))
    }

    /// The entry at 0-based ascending `rank`.
    pub fn at(&self, mut rank: usize) -> Option<(&[u8], f64)> {
        let mut node = self.root;
        while node != NIL {
            let n = &self.nodes[node as usize];
            let left = self.size(n.left) as usize;
            match rank.cmp(&left) {
                Ordering::Less => node = n.left,
                Ordering::Equal => return Some((&n.member, n.score)),
                Ordering::Greater => {
                    rank -= left + 1;
                    node = n.right;
                }
            }
        }
        None
    }

    /// Entries with ranks in `start..end`, ascending, or descending when `rev`.
    pub fn range(&self, start: usize, end: usize, rev: bool) -> Vec<(Vec<u8>, f64)> {
        let mut out = Vec::with_capacity(end.saturating_sub(start));
        self.visit_range(start, end, rev, |member, score| {
            out.push((member.to_vec(), score))
        });
        out
    }

    /// Calls `visit` on the entries with ranks in `start..end`, ascending, or descending when
    /// `rev`, without copying them.
    pub fn visit_range(
        &self,
        start: usize,
        end: usize,
        rev: bool,
        mut visit: impl FnMut(&[u8], f64),
    ) {
        self.walk(self.root, 0, start, end.min(self.len()), rev, &mut visit);
    }

    /// In-order walk (reversed when `rev`) of the ranks in `start..end`; `offset` is the rank
    /// of the leftmost entry under `node`.
    fn walk(
        &self,
        node: u32,
        offset: usize,
        start: usize,
        end: usize,
        rev: bool,
        visit: &mut impl FnMut(&[u8], f64),
    ) {
        if node == NIL || offset >= end || offset + self.size(node) as usize <= start {
            return;
        }
        let n = &self.nodes[node as usize];
        let rank = offset + self.size(n.left) as usize;
        let (first, second, first_offset, second_offset) = if rev {
            (n.right, n.left, rank + 1, offset)
        } else {
            (n.left, n.right, offset, rank + 1)
        };
        self.walk(first, first_offset, start, end, rev, visit);
        if (start..end).contains(&rank) {
            visit(&n.member, n.score);
        }
        self.walk(second, second_offset, start, end, rev, visit);
    }

    /// Removes and returns the `count` lowest entries (ascending), or the highest (descending)
    /// when `highest`.
    pub fn pop(&mut self, count: usize, highest: bool) -> Vec<(Vec<u8>, f64)> {
        let mut popped = Vec::with_capacity(count.min(self.len()));
        while popped.len() < count
            && let Some(entry) = self.pop_end(highest)
        {
            self.scores.remove(&entry.0);
            popped.push(entry);
        }
        popped
    }

    /// Unlinks the lowest (or highest) node: it has no child on that side, so its parent
    /// adopts its other child; sizes shrink along the path. O(depth), no rebalancing needed.
    fn pop_end(&mut self, highest: bool) -> Option<(Vec<u8>, f64)> {
        if self.root == NIL {
            return None;
        }
        let side = |n: &Node| if highest { n.right } else { n.left };
        let (mut parent, mut node) = (NIL, self.root);
        while side(&self.nodes[node as usize]) != NIL {
            self.nodes[node as usize].size -= 1;
            parent = node;
            node = side(&self.nodes[node as usize]);
        }
        let n = &mut self.nodes[node as usize];
        let other = if highest { n.left } else { n.right };
        let entry = (std::mem::take(&mut n.member).into_vec(), n.score);
        if parent == NIL {
            self.root = other;
        } else if highest {
            self.nodes[parent as usize].right = other;
        } else {
            self.nodes[parent as usize].left = other;
        }
        self.free.push(node);
        Some(entry)
    }

    /// Members and scores in ascending order.
    pub fn all(&self) -> Vec<(Vec<u8>, f64)> {
        self.range(0, self.len(), false)
    }

    pub fn scan(&self, cursor: u64, mut visit: impl FnMut(&[u8], f64)) -> u64 {
        if !self.big {
            for (member, score) in self.all() {
                visit(&member, score);
            }
            return 0;
        }
        self.scores
            .scan(cursor, |member, score| visit(member, *score))
    }

    pub fn random(&self, rand: impl FnMut() -> u64) -> Option<(&[u8], f64)> {
        self.scores.random(rand).map(|(m, s)| (m, *s))
    }

    pub fn allocated(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self
                .nodes
                .iter()
                .map(|n| 2 * n.member.len() + 40)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ZsetLimits = ZsetLimits {
        entries: 128,
        value: 64,
    };

    #[test]
    fn order_rank_and_ranges() {
        let mut z = Zset::default();
        for i in 0..1000u32 {
            let member = format!("m{i:04}");
            z.insert(member.as_bytes(), (i % 10) as f64, LIMITS);
        }
        assert_eq!(z.len(), 1000);
        assert_eq!(z.encoding(), "skiplist");
        // Score 0 holds m0000, m0010, ... in member order.
        assert_eq!(z.at(0).unwrap().0, b"m0000");
        assert_eq!(z.at(1).unwrap().0, b"m0010");
        assert_eq!(z.rank(b"m0010"), Some(1));
        assert_eq!(z.rank(b"m0001"), Some(100));
        assert_eq!(z.count_before(|s, _| s >= 5.0), 500);
        z.insert(b"m0001", -1.0, LIMITS);
        assert_eq!(z.rank(b"m0001"), Some(0));
        assert_eq!(z.remove(b"m0001"), Some(-1.0));
        assert_eq!(z.rank(b"m0001"), None);
        let top: Vec<Vec<u8>> = z
            .range(997, 999, true)
            .into_iter()
            .map(|(m, _)| m)
            .collect();
        assert_eq!(top, vec![b"m0999".to_vec(), b"m0989".to_vec()]);
        for (rank, (member, _)) in z.all().iter().enumerate() {
            assert_eq!(z.rank(member), Some(rank));
        }
    }
}
