//! The sorted set: a member -> score table beside an order-statistic B+tree of (score,
//! member) (`score_tree`), so insert, delete, rank, and range by score, lex or rank are all
//! O(log n), as Redis's skiplist gives.
//!
//! OBJECT ENCODING reports `listpack` while the set is within `zset-max-listpack-entries` and
//! `zset-max-listpack-value`, `skiplist` once it outgrew them (sticky, as Redis converts once);
//! the representation itself is the same.

use std::cmp::Ordering;

use super::dict::Dict;
use super::score_tree::{ScoreTree, cmp_entry};

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

#[derive(Default)]
pub struct Zset {
    scores: Dict<f64>,
    order: ScoreTree,
    big: bool,
}

impl Clone for Zset {
    fn clone(&self) -> Zset {
        let mut scores = Dict::default();
        for (member, score) in self.scores.iter() {
            scores.insert(member, *score);
        }
        Zset {
            scores,
            order: self.order.clone(),
            big: self.big,
        }
    }
}

impl Zset {
    pub fn len(&self) -> usize {
        self.order.len()
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

    /// Sets `member`'s score; returns the old score if it was present.
    pub fn insert(&mut self, member: &[u8], score: f64, limits: ZsetLimits) -> Option<f64> {
        let is_new = self.scores.get(member).is_none();
        if (is_new && self.len() >= limits.entries) || member.len() > limits.value {
            self.big = true;
        }
        // Redis's listpack keeps a score that is a whole number as an integer, so -0 is
        // stored as 0 there; the skiplist keeps the double as it is.
        let score = if !self.big && score == 0.0 {
            0.0
        } else {
            score
        };
        let old = match self.scores.get_mut(member) {
            // Equal scores (0 and -0 too, as Redis compares them) leave the entry untouched.
            Some(slot) if *slot == score => return Some(*slot),
            Some(slot) => Some(std::mem::replace(slot, score)),
            None => {
                self.scores.insert_new(member, score);
                None
            }
        };
        if let Some(old) = old {
            self.order.remove(old, member);
        }
        self.order.insert(score, member);
        old
    }

    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let score = self.scores.remove(member)?;
        self.order.remove(score, member);
        Some(score)
    }

    /// How many entries sort before the first one for which `at_or_after` holds.
    pub fn count_before(&self, at_or_after: impl Fn(f64, &[u8]) -> bool) -> usize {
        self.order.count_before(at_or_after)
    }

    /// 0-based rank of `member` in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = self.score(member)?;
        Some(self.count_before(|s, m| cmp_entry(s, m, score, member) != Ordering::Less))
    }

    /// The entry at 0-based ascending `rank`.
    pub fn at(&self, rank: usize) -> Option<(&[u8], f64)> {
        self.order.at(rank)
    }

    /// Entries with ranks in `start..end`, ascending, or descending when `rev`.
    pub fn range(&self, start: usize, end: usize, rev: bool) -> Vec<(Vec<u8>, f64)> {
        let mut out = Vec::with_capacity(end.min(self.len()).saturating_sub(start));
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
        self.order.visit_range(start, end, rev, &mut visit);
    }

    /// Removes and returns the `count` lowest entries (ascending), or the highest (descending)
    /// when `highest`.
    pub fn pop(&mut self, count: usize, highest: bool) -> Vec<(Vec<u8>, f64)> {
        let mut popped = Vec::with_capacity(count.min(self.len()));
        while popped.len() < count && !self.is_empty() {
            let rank = if highest { self.len() - 1 } else { 0 };
            let (member, score) = self.order.remove_at(rank).expect("rank in range");
            self.scores.remove(&member);
            popped.push((member.to_vec(), score));
        }
        popped
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
        // The member table holds a node of about 40 bytes plus the member per entry.
        self.order.allocated()
            + self
                .scores
                .iter()
                .map(|(member, _)| member.len() + 40)
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

    #[test]
    fn an_equal_score_leaves_the_entry_as_it_was() {
        let mut z = Zset::default();
        z.insert(b"a", 0.0, LIMITS);
        assert_eq!(z.insert(b"a", -0.0, LIMITS), Some(0.0));
        assert!(z.score(b"a").unwrap().is_sign_positive());
        assert!(z.at(0).unwrap().1.is_sign_positive());
    }
}
