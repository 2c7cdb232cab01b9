//! A chained hash table with power-of-two bucket arrays, keyed by byte strings.
//!
//! Written by hand instead of using std's map because Redis semantics need bucket-level access:
//! SCAN/HSCAN/SSCAN must return every element present for the whole iteration even when the table
//! grows or shrinks between calls (Redis's reverse-binary cursor over power-of-two buckets), and
//! RANDOMKEY, eviction and active expiry need random and resumable sampling.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;

use super::key::Key;

struct Node<V> {
    key: Key,
    value: V,
    next: Link<V>,
}

type Link<V> = Option<Box<Node<V>>>;

/// A node's position: its bucket and how far down that bucket's chain it is.
#[derive(Clone, Copy)]
pub struct Place {
    bucket: usize,
    depth: usize,
}

pub struct Dict<V> {
    buckets: Vec<Link<V>>,
    len: usize,
    hasher: RandomState,
}

const MIN_BUCKETS: usize = 4;

impl<V> Default for Dict<V> {
    fn default() -> Self {
        Dict {
            buckets: Vec::new(),
            len: 0,
            hasher: RandomState::default(),
        }
    }
}

impl<V> Dict<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes of the table itself: buckets and nodes, without what keys and values point to.
    pub fn table_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Link<V>>()
            + self.len * std::mem::size_of::<Node<V>>()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn bucket_of(&self, key: &[u8]) -> usize {
        (self.hasher.hash_one(key) as usize) & (self.buckets.len() - 1)
    }

    pub fn get(&self, key: &[u8]) -> Option<&V> {
        if self.buckets.is_empty() {
            return None;
        }
        let mut link = &self.buckets[self.bucket_of(key)];
        while let Some(node) = link {
            if &*node.key == key {
                return Some(&node.value);
            }
            link = &node.next;
        }
        None
    }

    /// Where `key` is and its value: the place lets a caller that has looked at the value
    /// reach it mutably (`at_mut`) without hashing and comparing the key again.
    pub fn find(&self, key: &[u8]) -> Option<(Place, &V)> {
        if self.buckets.is_empty() {
            return None;
        }
        let bucket = self.bucket_of(key);
        let mut link = &self.buckets[bucket];
        let mut depth = 0;
        while let Some(node) = link {
            if &*node.key == key {
                return Some((Place { bucket, depth }, &node.value));
            }
            link = &node.next;
            depth += 1;
        }
        None
    }

    /// Like `find`, with the value mutable.
    pub fn find_mut(&mut self, key: &[u8]) -> Option<(Place, &mut V)> {
        if self.buckets.is_empty() {
            return None;
        }
        let bucket = self.bucket_of(key);
        let mut link = &mut self.buckets[bucket];
        let mut depth = 0;
        while let Some(node) = link {
            if &*node.key == key {
                return Some((Place { bucket, depth }, &mut node.value));
            }
            link = &mut node.next;
            depth += 1;
        }
        None
    }

    /// The value at a place `find` returned, the dict unchanged since.
    pub fn at_mut(&mut self, place: Place) -> &mut V {
        let mut node = self.buckets[place.bucket].as_mut().expect("found node");
        for _ in 0..place.depth {
            node = node.next.as_mut().expect("found node");
        }
        &mut node.value
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        if self.buckets.is_empty() {
            return None;
        }
        let index = self.bucket_of(key);
        let mut link = &mut self.buckets[index];
        while let Some(node) = link {
            if &*node.key == key {
                return Some(&mut node.value);
            }
            link = &mut node.next;
        }
        None
    }

    /// Starts loading the bucket where `key` would be; returns the key's hash for
    /// `prefetch_node`.
    pub fn prefetch_bucket(&self, key: &[u8]) -> u64 {
        let hash = self.hasher.hash_one(key);
        if let Some(bucket) = self
            .buckets
            .get(hash as usize & self.buckets.len().wrapping_sub(1))
        {
            crate::util::prefetch(bucket);
        }
        hash
    }

    /// Starts loading the first node of the bucket for `hash`, which `prefetch_bucket` made
    /// ready to read. The hash may be stale after a resize: the hint is then merely wrong.
    pub fn prefetch_node(&self, hash: u64) {
        let mask = self.buckets.len().wrapping_sub(1);
        if let Some(Some(node)) = self.buckets.get(hash as usize & mask) {
            crate::util::prefetch(&**node);
        }
    }

    /// Starts loading the bucket `sample` would start from with `start`.
    pub fn prefetch_slot(&self, start: u64) {
        if let Some(bucket) = self
            .buckets
            .get(start as usize & self.buckets.len().wrapping_sub(1))
        {
            crate::util::prefetch(bucket);
        }
    }

    /// Inserts or replaces; returns the previous value.
    pub fn insert(&mut self, key: &[u8], value: V) -> Option<V> {
        if let Some(slot) = self.get_mut(key) {
            return Some(std::mem::replace(slot, value));
        }
        self.insert_new(key, value);
        None
    }

    /// Inserts a key known to be absent.
    pub fn insert_new(&mut self, key: &[u8], value: V) -> &mut V {
        if self.len >= self.buckets.len() {
            self.resize((self.len + 1).next_power_of_two().max(MIN_BUCKETS));
        }
        let index = self.bucket_of(key);
        let next = self.buckets[index].take();
        self.len += 1;
        let node = self.buckets[index].insert(Box::new(Node {
            key: key.into(),
            value,
            next,
        }));
        &mut node.value
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<V> {
        self.remove_entry(key).map(|(_, value)| value)
    }

    pub fn remove_entry(&mut self, key: &[u8]) -> Option<(Key, V)> {
        if self.buckets.is_empty() {
            return None;
        }
        let index = self.bucket_of(key);
        let mut link = &mut self.buckets[index];
        loop {
            match link {
                None => return None,
                Some(node) if &*node.key == key => {
                    let node = link.take().expect("matched node");
                    *link = node.next;
                    self.len -= 1;
                    self.shrink_if_sparse();
                    return Some((node.key, node.value));
                }
                Some(node) => link = &mut node.next,
            }
        }
    }

    pub fn clear(&mut self) {
        let _old = std::mem::take(&mut self.buckets);
        self.len = 0;
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.buckets.iter().flat_map(|bucket| {
            std::iter::successors(bucket.as_deref(), |node| node.next.as_deref())
                .map(|node| (&*node.key, &node.value))
        })
    }

    /// Visits one bucket chosen by `cursor` and returns the next cursor (0 when done), with
    /// Redis's reverse-binary increment: elements present from start to end of a full
    /// iteration are visited at least once, whatever resizes happen between calls.
    pub fn scan(&self, cursor: u64, mut visit: impl FnMut(&[u8], &V)) -> u64 {
        if self.buckets.is_empty() {
            return 0;
        }
        let mask = (self.buckets.len() - 1) as u64;
        let mut link = &self.buckets[(cursor & mask) as usize];
        while let Some(node) = link {
            visit(&node.key, &node.value);
            link = &node.next;
        }
        next_cursor(cursor, mask)
    }

    /// Like `scan`, but removes the elements for which `keep` returns false.
    pub fn scan_retain(&mut self, cursor: u64, mut keep: impl FnMut(&[u8], &mut V) -> bool) -> u64 {
        if self.buckets.is_empty() {
            return 0;
        }
        let mask = (self.buckets.len() - 1) as u64;
        let mut link = &mut self.buckets[(cursor & mask) as usize];
        let mut removed = 0;
        while link.is_some() {
            let node = link.as_mut().expect("checked");
            if keep(&node.key, &mut node.value) {
                link = &mut link.as_mut().expect("checked").next;
            } else {
                let node = link.take().expect("checked");
                *link = node.next;
                removed += 1;
            }
        }
        self.len -= removed;
        if removed > 0 {
            self.shrink_if_sparse();
        }
        next_cursor(cursor, mask)
    }

    /// A uniformly random element, drawn by `rand` (which is called a few times): a random
    /// slot among `buckets x depth` is drawn until it holds a node, so elements in long chains
    /// are as likely as elements alone in their bucket (Redis's plain bucket pick is not).
    pub fn random(&self, mut rand: impl FnMut() -> u64) -> Option<(&[u8], &V)> {
        if self.len == 0 {
            return None;
        }
        let mask = self.buckets.len() - 1;
        let mut depth = 4;
        loop {
            let Some(head) = &self.buckets[rand() as usize & mask] else {
                continue;
            };
            let chain = || std::iter::successors(Some(&**head), |n| n.next.as_deref());
            // A chain deeper than any seen so far widens the draw for the next tries.
            depth = depth.max(chain().count());
            if let Some(node) = chain().nth(rand() as usize % depth) {
                return Some((&node.key, &node.value));
            }
        }
    }

    /// Visits up to `count` elements that `keep` accepts, from consecutive buckets from the
    /// one `start` picks (Redis's `dictGetSomeKeys`): at most `count * 10` buckets, but on
    /// through the whole table while none is found, so rare elements are still reached.
    /// Buckets are taken `count` at a time, their first nodes prefetched together, so that
    /// the cache misses of a sample overlap. Returns how many were visited.
    pub fn sample(
        &self,
        start: u64,
        count: usize,
        mut keep: impl FnMut(&V) -> bool,
        mut visit: impl FnMut(&[u8], &V),
    ) -> usize {
        if self.len == 0 || count == 0 {
            return 0;
        }
        let mask = self.buckets.len() - 1;
        let bucket = |step: usize| &self.buckets[(start as usize).wrapping_add(step) & mask];
        let mut found = 0;
        let mut step = 0;
        while found < count && step < self.buckets.len() && (found == 0 || step < count * 10) {
            let window = step..(step + count).min(self.buckets.len());
            for head in window.clone().filter_map(|s| bucket(s).as_deref()) {
                crate::util::prefetch(head);
            }
            for s in window {
                for node in std::iter::successors(bucket(s).as_deref(), |n| n.next.as_deref()) {
                    if found < count && keep(&node.value) {
                        visit(&node.key, &node.value);
                        found += 1;
                    }
                }
            }
            step += count;
        }
        found
    }

    fn shrink_if_sparse(&mut self) {
        if self.buckets.len() > MIN_BUCKETS && self.len * 8 < self.buckets.len() {
            self.resize(self.len.next_power_of_two().max(MIN_BUCKETS));
        }
    }

    fn resize(&mut self, size: usize) {
        let old = std::mem::replace(&mut self.buckets, (0..size).map(|_| None).collect());
        for mut link in old {
            while let Some(mut node) = link {
                link = node.next.take();
                let index = self.bucket_of(&node.key);
                node.next = self.buckets[index].take();
                self.buckets[index] = Some(node);
            }
        }
    }
}

impl<V> Drop for Dict<V> {
    // Unlink chains iteratively: dropping a long chain recursively could overflow the stack.
    fn drop(&mut self) {
        for bucket in &mut self.buckets {
            let mut link = bucket.take();
            while let Some(mut node) = link {
                link = node.next.take();
            }
        }
    }
}

fn next_cursor(cursor: u64, mask: u64) -> u64 {
    let v = (cursor | !mask)
        .reverse_bits()
        .wrapping_add(1)
        .reverse_bits();
    v & mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn insert_get_remove() {
        let mut d = Dict::default();
        for i in 0..1000u32 {
            assert_eq!(d.insert(&i.to_be_bytes(), i), None);
        }
        assert_eq!(d.len(), 1000);
        assert_eq!(d.insert(&5u32.to_be_bytes(), 50), Some(5));
        assert_eq!(d.get(&5u32.to_be_bytes()), Some(&50));
        for i in 0..1000u32 {
            assert!(d.remove(&i.to_be_bytes()).is_some());
        }
        assert!(d.is_empty());
        assert_eq!(d.get(&1u32.to_be_bytes()), None);
    }

    #[test]
    fn scan_survives_resizes_between_calls() {
        let mut d = Dict::default();
        for i in 0..500u32 {
            d.insert(&i.to_be_bytes(), ());
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut step = 0u32;
        loop {
            cursor = d.scan(cursor, |k, _| {
                seen.insert(k.to_vec());
            });
            step += 1;
            // Grow and then shrink the table while the iteration is in progress.
            if step == 10 {
                for i in 1000..5000u32 {
                    d.insert(&i.to_be_bytes(), ());
                }
            }
            if step == 40 {
                for i in 1000..5000u32 {
                    d.remove(&i.to_be_bytes());
                }
            }
            if cursor == 0 {
                break;
            }
        }
        for i in 0..500u32 {
            assert!(seen.contains(i.to_be_bytes().as_slice()), "missed {i}");
        }
    }

    #[test]
    fn scan_retain_removes_and_random_finds() {
        let mut d = Dict::default();
        for i in 0..100u32 {
            d.insert(&i.to_be_bytes(), i);
        }
        let mut cursor = 0;
        loop {
            cursor = d.scan_retain(cursor, |_, v| *v % 2 == 0);
            if cursor == 0 {
                break;
            }
        }
        assert_eq!(d.len(), 50);
        let mut seed = 7u64;
        let (_, v) = d
            .random(|| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                seed >> 33
            })
            .unwrap();
        assert_eq!(v % 2, 0);
    }
}
