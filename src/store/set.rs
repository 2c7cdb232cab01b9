//! The set type with Redis 7.0's two encodings: a sorted array of integers while every member
//! is an integer and there are at most `set-max-intset-entries` of them (`intset`), a hash
//! table otherwise (`hashtable`). Like Redis, a set never converts back.

use super::dict::Dict;
use crate::util::parse_i64;

pub enum Set {
    Ints(Vec<i64>),
    Table(Dict<()>),
}

impl Clone for Set {
    fn clone(&self) -> Set {
        match self {
            Set::Ints(ints) => Set::Ints(ints.clone()),
            Set::Table(table) => {
                let mut copy = Dict::default();
                for (member, _) in table.iter() {
                    copy.insert(member, ());
                }
                Set::Table(copy)
            }
        }
    }
}

impl Default for Set {
    fn default() -> Set {
        Set::Ints(Vec::new())
    }
}

/// A member as an intset stores it: canonical decimal integers only ("01" stays a string).
fn as_int(member: &[u8]) -> Option<i64> {
    parse_i64(member).filter(|n| itoa::Buffer::new().format(*n).as_bytes() == member)
}

impl Set {
    /// A set holding `members`, encoded as Redis would encode it.
    pub fn of<'a>(members: impl IntoIterator<Item = &'a [u8]>, max_intset: usize) -> Set {
        let mut set = Set::default();
        for member in members {
            set.insert(member, max_intset);
        }
        set
    }

    pub fn len(&self) -> usize {
        match self {
            Set::Ints(ints) => ints.len(),
            Set::Table(table) => table.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            Set::Ints(_) => "intset",
            Set::Table(_) => "hashtable",
        }
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        match self {
            Set::Ints(ints) => as_int(member).is_some_and(|n| ints.binary_search(&n).is_ok()),
            Set::Table(table) => table.get(member).is_some(),
        }
    }

    fn convert_to_table(&mut self) {
        if let Set::Ints(ints) = self {
            let mut table = Dict::default();
            for n in ints.iter() {
                table.insert(itoa::Buffer::new().format(*n).as_bytes(), ());
            }
            *self = Set::Table(table);
        }
    }

    /// Adds `member`; returns true if it was not there.
    pub fn insert(&mut self, member: &[u8], max_intset: usize) -> bool {
        if let Set::Ints(ints) = self {
            match as_int(member) {
                Some(n) => match ints.binary_search(&n) {
                    Ok(_) => return false,
                    Err(at) => {
                        ints.insert(at, n);
                        if ints.len() > max_intset {
                            self.convert_to_table();
                        }
                        return true;
                    }
                },
                None => self.convert_to_table(),
            }
        }
        match self {
            Set::Table(table) => table.insert(member, ()).is_none(),
            Set::Ints(_) => unreachable!("converted above"),
        }
    }

    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self {
            Set::Ints(ints) => match as_int(member).map(|n| ints.binary_search(&n)) {
                Some(Ok(at)) => {
                    ints.remove(at);
                    true
                }
                _ => false,
            },
            Set::Table(table) => table.remove(member).is_some(),
        }
    }

    /// Every member, as owned bytes.
    pub fn members(&self) -> Vec<Vec<u8>> {
        let mut members = Vec::with_capacity(self.len());
        self.for_each(|member| members.push(member.to_vec()));
        members
    }

    pub fn for_each(&self, mut visit: impl FnMut(&[u8])) {
        match self {
            Set::Ints(ints) => {
                let mut text = itoa::Buffer::new();
                for n in ints {
                    visit(text.format(*n).as_bytes());
                }
            }
            Set::Table(table) => table.iter().for_each(|(member, _)| visit(member)),
        }
    }

    /// A uniformly random member.
    pub fn random(&self, mut rand: impl FnMut() -> u64) -> Option<Vec<u8>> {
        match self {
            Set::Ints(ints) if ints.is_empty() => None,
            Set::Ints(ints) => {
                let n = ints[(rand() % ints.len() as u64) as usize];
                Some(itoa::Buffer::new().format(n).as_bytes().to_vec())
            }
            Set::Table(table) => table.random(rand).map(|(m, _)| m.to_vec()),
        }
    }

    /// One step of SSCAN: an intset is returned whole, with cursor 0.
    pub fn scan(&self, cursor: u64, mut visit: impl FnMut(&[u8])) -> u64 {
        match self {
            Set::Ints(_) => {
                for member in self.members() {
                    visit(&member);
                }
                0
            }
            Set::Table(table) => table.scan(cursor, |member, _| visit(member)),
        }
    }

    pub fn allocated(&self) -> usize {
        match self {
            Set::Ints(ints) => ints.capacity() * 8,
            Set::Table(table) => table.iter().map(|(m, _)| m.len() + 40).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intset_until_a_string_or_the_limit() {
        let mut set = Set::default();
        assert!(set.insert(b"3", 2));
        assert!(set.insert(b"1", 2));
        assert!(!set.insert(b"1", 2));
        assert_eq!(set.encoding(), "intset");
        assert_eq!(set.members(), vec![b"1".to_vec(), b"3".to_vec()]);
        assert!(!set.contains(b"01"));
        assert!(set.insert(b"2", 2));
        assert_eq!(set.encoding(), "hashtable");
        assert!(set.contains(b"2") && set.contains(b"3"));
        let mut strings = Set::default();
        strings.insert(b"a", 10);
        assert_eq!(strings.encoding(), "hashtable");
        assert!(strings.remove(b"a") && strings.is_empty());
    }
}
