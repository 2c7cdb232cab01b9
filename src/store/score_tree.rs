//! The order of a sorted set: an order-statistic B+tree of (score, member) entries.
//!
//! Redis uses a skiplist. A B+tree keeps up to 64 entries side by side in each leaf, so a
//! lookup touches about log64(n) nodes instead of one cache line per level, popping the lowest
//! entry works inside one hot leaf, and an entry costs 24 bytes instead of a node with links.
//! Every branch keeps the entry count under each child, which makes rank and select one walk
//! down the tree.
//!
//! Branch keys are copies: `keys[i]` is above every entry under `children[i]` and at or below
//! every entry under `children[i + 1]`. Removing entries never makes a key wrong, so keys only
//! change when children split, merge or share entries.

use std::cmp::Ordering;

use super::key::Key;

/// Entries per leaf and children per branch at most; a node below a quarter of it takes
/// entries from a sibling or merges with it.
const CAPACITY: usize = 64;
const MINIMUM: usize = CAPACITY / 4;

#[derive(Clone)]
struct Entry {
    score: f64,
    /// Members up to 22 bytes sit inside the entry: no allocation, no pointer to follow.
    member: Key,
}

/// Redis's order of sorted-set entries: by score, then by member bytes.
pub fn cmp_entry(score: f64, member: &[u8], other_score: f64, other_member: &[u8]) -> Ordering {
    score
        .partial_cmp(&other_score)
        .unwrap_or(Ordering::Equal)
        .then_with(|| member.cmp(other_member))
}

impl Entry {
    fn cmp_to(&self, score: f64, member: &[u8]) -> Ordering {
        cmp_entry(self.score, &self.member, score, member)
    }
}

#[derive(Clone)]
enum Node {
    Leaf(Vec<Entry>),
    Branch(Box<Branch>),
}

#[derive(Clone)]
struct Branch {
    keys: Vec<Entry>,
    children: Vec<Node>,
    /// Entries under each child.
    sizes: Vec<u32>,
}

#[derive(Clone)]
pub struct ScoreTree {
    root: Node,
    len: usize,
}

impl Default for ScoreTree {
    fn default() -> ScoreTree {
        ScoreTree {
            root: Node::Leaf(Vec::new()),
            len: 0,
        }
    }
}

impl ScoreTree {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Adds an entry that is not in the tree.
    pub fn insert(&mut self, score: f64, member: &[u8]) {
        let entry = Entry {
            score,
            member: member.into(),
        };
        let at_end = self.root.insert(entry);
        if self.root.width() >= CAPACITY {
            let old = std::mem::replace(&mut self.root, Node::Leaf(Vec::new()));
            let size = self.len as u32 + 1;
            let mut branch = Branch {
                keys: Vec::new(),
                children: vec![old],
                sizes: vec![size],
            };
            branch.split_child(0, at_end);
            self.root = Node::Branch(Box::new(branch));
        }
        self.len += 1;
    }

    /// Removes the entry; false when it is not in the tree.
    pub fn remove(&mut self, score: f64, member: &[u8]) -> bool {
        let found = self.root.remove(score, member);
        if found {
            self.len -= 1;
            self.collapse_root();
        }
        found
    }

    /// Removes and returns the entry at 0-based ascending `rank`.
    pub fn remove_at(&mut self, rank: usize) -> Option<(Key, f64)> {
        if rank >= self.len {
            return None;
        }
        let entry = self.root.remove_at(rank);
        self.len -= 1;
        self.collapse_root();
        Some((entry.member, entry.score))
    }

    /// A root branch left with one child gives way to it.
    fn collapse_root(&mut self) {
        if let Node::Branch(branch) = &mut self.root
            && branch.children.len() == 1
        {
            self.root = branch.children.pop().expect("one child");
        }
    }

    /// How many entries sort before the first one for which `at_or_after` holds; it must
    /// hold for a suffix of the order.
    pub fn count_before(&self, at_or_after: impl Fn(f64, &[u8]) -> bool) -> usize {
        let holds = |e: &Entry| at_or_after(e.score, &e.member);
        let (mut node, mut count) = (&self.root, 0);
        loop {
            match node {
                Node::Leaf(entries) => return count + entries.partition_point(|e| !holds(e)),
                Node::Branch(branch) => {
                    let child = branch.keys.partition_point(|k| !holds(k));
                    count += branch.sizes[..child]
                        .iter()
                        .map(|&s| s as usize)
                        .sum::<usize>();
                    node = &branch.children[child];
                }
            }
        }
    }

    /// The entry at 0-based ascending `rank`.
    pub fn at(&self, mut rank: usize) -> Option<(&[u8], f64)> {
        if rank >= self.len {
            return None;
        }
        let mut node = &self.root;
        loop {
            match node {
                Node::Leaf(entries) => {
                    let entry = &entries[rank];
                    return Some((&entry.member, entry.score));
                }
                Node::Branch(branch) => {
                    let child = branch.child_at(&mut rank);
                    node = &branch.children[child];
                }
            }
        }
    }

    /// Calls `visit` on the entries with ranks in `start..end`, ascending, or descending when
    /// `rev`.
    pub fn visit_range(
        &self,
        start: usize,
        end: usize,
        rev: bool,
        visit: &mut impl FnMut(&[u8], f64),
    ) {
        self.root.visit(0, start, end.min(self.len), rev, visit);
    }

    /// Heap bytes held by the tree.
    pub fn allocated(&self) -> usize {
        self.root.allocated()
    }
}

impl Node {
    /// Entries of a leaf, children of a branch.
    fn width(&self) -> usize {
        match self {
            Node::Leaf(entries) => entries.len(),
            Node::Branch(branch) => branch.children.len(),
        }
    }

    /// Returns whether the entry went after every other entry under this node.
    fn insert(&mut self, entry: Entry) -> bool {
        match self {
            Node::Leaf(entries) => {
                let at = entries.partition_point(|e| e.cmp_to(entry.score, &entry.member).is_lt());
                entries.insert(at, entry);
                at + 1 == entries.len()
            }
            Node::Branch(branch) => {
                let child = branch.route(entry.score, &entry.member);
                branch.sizes[child] += 1;
                let at_end =
                    branch.children[child].insert(entry) && child + 1 == branch.children.len();
                if branch.children[child].width() >= CAPACITY {
                    branch.split_child(child, at_end);
                }
                at_end
            }
        }
    }

    fn remove(&mut self, score: f64, member: &[u8]) -> bool {
        match self {
            Node::Leaf(entries) => match entries.binary_search_by(|e| e.cmp_to(score, member)) {
                Ok(at) => {
                    entries.remove(at);
                    true
                }
                Err(_) => false,
            },
            Node::Branch(branch) => {
                let child = branch.route(score, member);
                if !branch.children[child].remove(score, member) {
                    return false;
                }
                branch.sizes[child] -= 1;
                branch.refill(child);
                true
            }
        }
    }

    fn remove_at(&mut self, mut rank: usize) -> Entry {
        match self {
            Node::Leaf(entries) => entries.remove(rank),
            Node::Branch(branch) => {
                let child = branch.child_at(&mut rank);
                let entry = branch.children[child].remove_at(rank);
                branch.sizes[child] -= 1;
                branch.refill(child);
                entry
            }
        }
    }

    /// `offset` is the rank of this node's first entry.
    fn visit(
        &self,
        offset: usize,
        start: usize,
        end: usize,
        rev: bool,
        visit: &mut impl FnMut(&[u8], f64),
    ) {
        match self {
            Node::Leaf(entries) => {
                let from = start.saturating_sub(offset).min(entries.len());
                let to = end.saturating_sub(offset).min(entries.len());
                let span = entries[from..to.max(from)].iter();
                if rev {
                    span.rev().for_each(|e| visit(&e.member, e.score));
                } else {
                    span.for_each(|e| visit(&e.member, e.score));
                }
            }
            Node::Branch(branch) => {
                let mut first = offset;
                let mut spans = Vec::with_capacity(branch.children.len());
                for (child, &size) in branch.children.iter().zip(&branch.sizes) {
                    let last = first + size as usize;
                    if first < end && last > start {
                        spans.push((child, first));
                    }
                    first = last;
                }
                if rev {
                    spans.reverse();
                }
                for (child, first) in spans {
                    child.visit(first, start, end, rev, visit);
                }
            }
        }
    }

    /// Moves this node's upper part into a new node; returns the key between them, the new
    /// node and its entry count. A node that was filled at its end (ascending inserts) keeps
    /// all but its last entry or child, so loading in order leaves full nodes behind.
    fn split(&mut self, at_end: bool) -> (Entry, Node, u32) {
        let at = if at_end {
            self.width() - 1
        } else {
            self.width() / 2
        };
        match self {
            Node::Leaf(entries) => {
                let upper = entries.split_off(at);
                let key = upper[0].clone();
                let size = upper.len() as u32;
                (key, Node::Leaf(upper), size)
            }
            Node::Branch(branch) => {
                let children = branch.children.split_off(at);
                let sizes = branch.sizes.split_off(at);
                let keys = branch.keys.split_off(at);
                let key = branch.keys.pop().expect("a key between the halves");
                let size = sizes.iter().sum();
                let upper = Branch {
                    keys,
                    children,
                    sizes,
                };
                (key, Node::Branch(Box::new(upper)), size)
            }
        }
    }

    fn allocated(&self) -> usize {
        const ENTRY: usize = std::mem::size_of::<Entry>();
        match self {
            Node::Leaf(entries) => {
                entries.capacity() * ENTRY
                    + entries.iter().map(|e| e.member.heap_bytes()).sum::<usize>()
            }
            Node::Branch(branch) => {
                std::mem::size_of::<Branch>()
                    + branch.keys.capacity() * ENTRY
                    + branch.children.capacity() * std::mem::size_of::<Node>()
                    + branch.sizes.capacity() * 4
                    + branch.children.iter().map(Node::allocated).sum::<usize>()
            }
        }
    }
}

impl Branch {
    /// The child whose range holds (score, member).
    fn route(&self, score: f64, member: &[u8]) -> usize {
        self.keys
            .partition_point(|k| k.cmp_to(score, member) != Ordering::Greater)
    }

    /// The child holding 0-based `rank`; `rank` becomes the rank inside that child.
    fn child_at(&self, rank: &mut usize) -> usize {
        for (child, &size) in self.sizes.iter().enumerate() {
            if *rank < size as usize {
                return child;
            }
            *rank -= size as usize;
        }
        unreachable!("rank below the branch's size")
    }

    fn split_child(&mut self, child: usize, at_end: bool) {
        let (key, upper, size) = self.children[child].split(at_end);
        self.sizes[child] -= size;
        self.keys.insert(child, key);
        self.children.insert(child + 1, upper);
        self.sizes.insert(child + 1, size);
    }

    /// After a removal under `child`: a child below the minimum merges with a sibling, or
    /// takes entries from it when both would not fit in one node.
    fn refill(&mut self, child: usize) {
        if self.children[child].width() >= MINIMUM || self.children.len() < 2 {
            return;
        }
        let left = if child + 1 < self.children.len() {
            child
        } else {
            child - 1
        };
        let (lower, upper) = self.children.split_at_mut(left + 1);
        let (lower, upper) = (&mut lower[left], &mut upper[0]);
        if lower.width() + upper.width() < CAPACITY {
            let key = self.keys.remove(left);
            let upper = self.children.remove(left + 1);
            let size = self.sizes.remove(left + 1);
            self.children[left].absorb(key, upper);
            self.sizes[left] += size;
        } else {
            let moved = share(lower, upper, &mut self.keys[left]);
            self.sizes[left] = (self.sizes[left] as i64 + moved) as u32;
            self.sizes[left + 1] = (self.sizes[left + 1] as i64 - moved) as u32;
        }
    }
}

impl Node {
    /// Appends `upper`, the next sibling, whose key was `key`.
    fn absorb(&mut self, key: Entry, upper: Node) {
        match (self, upper) {
            (Node::Leaf(entries), Node::Leaf(more)) => entries.extend(more),
            (Node::Branch(branch), Node::Branch(more)) => {
                let more = *more;
                branch.keys.push(key);
                branch.keys.extend(more.keys);
                branch.children.extend(more.children);
                branch.sizes.extend(more.sizes);
            }
            _ => unreachable!("siblings are on one level"),
        }
    }
}

/// Evens out two siblings separated by `key`, updating it; returns how many entries moved
/// from `upper` into `lower` (negative when they moved the other way).
fn share(lower: &mut Node, upper: &mut Node, key: &mut Entry) -> i64 {
    let (low, high) = (lower.width(), upper.width());
    match (lower, upper) {
        (Node::Leaf(lower), Node::Leaf(upper)) => {
            let moved = if low < high {
                let count = (high - low) / 2;
                lower.extend(upper.drain(..count));
                count as i64
            } else {
                let count = (low - high) / 2;
                let tail = lower.split_off(low - count);
                upper.splice(0..0, tail);
                -(count as i64)
            };
            *key = upper[0].clone();
            moved
        }
        (Node::Branch(lower), Node::Branch(upper)) => {
            if low < high {
                let count = (high - low) / 2;
                let moved: u32 = upper.sizes[..count].iter().sum();
                let next_key = upper.keys.remove(count - 1);
                lower.keys.push(std::mem::replace(key, next_key));
                lower.keys.extend(upper.keys.drain(..count - 1));
                lower.children.extend(upper.children.drain(..count));
                lower.sizes.extend(upper.sizes.drain(..count));
                moved as i64
            } else {
                let count = (low - high) / 2;
                let from = low - count;
                let moved: u32 = lower.sizes[from..].iter().sum();
                let mut keys: Vec<Entry> = lower.keys.drain(from..).collect();
                let next_key = lower.keys.pop().expect("a key before the moved children");
                keys.push(std::mem::replace(key, next_key));
                upper.keys.splice(0..0, keys);
                let children: Vec<Node> = lower.children.drain(from..).collect();
                upper.children.splice(0..0, children);
                let sizes: Vec<u32> = lower.sizes.drain(from..).collect();
                upper.sizes.splice(0..0, sizes);
                -(moved as i64)
            }
        }
        _ => unreachable!("siblings are on one level"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks sizes, key bounds and order against a sorted model.
    fn check(tree: &ScoreTree, model: &[(f64, Vec<u8>)]) {
        assert_eq!(tree.len(), model.len());
        let mut seen = Vec::new();
        tree.visit_range(0, usize::MAX, false, &mut |m, s| seen.push((s, m.to_vec())));
        assert_eq!(seen, model);
        /// Returns the entries under `node`, checking each branch's sizes and keys on the way.
        fn entries(node: &Node) -> Vec<&Entry> {
            match node {
                Node::Leaf(entries) => entries.iter().collect(),
                Node::Branch(branch) => {
                    assert_eq!(branch.keys.len() + 1, branch.children.len());
                    let mut all = Vec::new();
                    for (i, child) in branch.children.iter().enumerate() {
                        let under = entries(child);
                        assert_eq!(under.len(), branch.sizes[i] as usize);
                        if let (Some(key), Some(last)) = (branch.keys.get(i), under.last()) {
                            assert!(last.cmp_to(key.score, &key.member).is_lt());
                        }
                        if let (Some(key), Some(first)) = (i.checked_sub(1), under.first()) {
                            let key = &branch.keys[key];
                            assert!(first.cmp_to(key.score, &key.member).is_ge());
                        }
                        all.extend(under);
                    }
                    all
                }
            }
        }
        assert_eq!(entries(&tree.root).len(), model.len());
    }

    #[test]
    fn matches_a_sorted_model_through_inserts_removes_and_pops() {
        let mut tree = ScoreTree::default();
        let mut model: Vec<(f64, Vec<u8>)> = Vec::new();
        let mut seed = 0x2545_f491_u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // Inserts dominate for the first half and removals for the second, so the tree grows
        // a few levels deep and then merges and shares entries at every level on the way down.
        for round in 0..120_000u32 {
            let inserts = if round < 60_000 { 6 } else { 1 };
            let score = (rand() % 500) as f64;
            let member = format!("m{}", rand() % 3000).into_bytes();
            let at = model.partition_point(|(s, m)| (*s, m.as_slice()) < (score, &member));
            let present = model
                .get(at)
                .is_some_and(|(s, m)| *s == score && *m == member);
            let op = rand() % 8;
            if op < inserts && !present {
                tree.insert(score, &member);
                model.insert(at, (score, member));
            } else if op % 2 == 0 {
                assert_eq!(tree.remove(score, &member), present);
                if present {
                    model.remove(at);
                }
            } else if !model.is_empty() {
                let rank = (rand() as usize) % model.len();
                let (member, score) = tree.remove_at(rank).expect("rank in range");
                assert_eq!((score, member.to_vec()), model.remove(rank));
            }
            if round.is_multiple_of(997) {
                check(&tree, &model);
            }
        }
        check(&tree, &model);
        assert!(matches!(&tree.root, Node::Branch(b) if matches!(b.children[0], Node::Branch(_))));
        for (rank, (score, member)) in model.iter().enumerate() {
            assert_eq!(tree.at(rank), Some((member.as_slice(), *score)));
            assert_eq!(
                tree.count_before(|s, m| (s, m) >= (*score, member.as_slice())),
                rank
            );
        }
        let mut descending = Vec::new();
        tree.visit_range(10, 20, true, &mut |m, s| descending.push((s, m.to_vec())));
        let expected: Vec<_> = model[10..20].iter().rev().cloned().collect();
        assert_eq!(descending, expected);
        while let Some((member, score)) = tree.remove_at(0) {
            assert_eq!((score, member.to_vec()), model.remove(0));
            if model.len().is_multiple_of(997) {
                check(&tree, &model);
            }
        }
        check(&tree, &model);
    }

    #[test]
    fn ascending_loads_leave_full_leaves() {
        let mut tree = ScoreTree::default();
        for i in 0..10_000 {
            tree.insert(i as f64, b"m");
        }
        fn leaves(node: &Node) -> usize {
            match node {
                Node::Leaf(_) => 1,
                Node::Branch(branch) => branch.children.iter().map(leaves).sum(),
            }
        }
        let leaves = leaves(&tree.root);
        assert_eq!(
            leaves,
            10_000usize.div_ceil(CAPACITY - 1),
            "{leaves} leaves"
        );
    }
}
