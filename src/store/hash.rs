//! The hash type with Redis 7.0's two encodings: a packed buffer of field, value, field, value
//! ... while the hash is small (`listpack`), a hash table once it outgrows
//! `hash-max-listpack-entries` or `hash-max-listpack-value` (`hashtable`). Like Redis, a hash
//! never converts back.

use std::ops::Range;

use super::dict::Dict;
use super::packed::{self, Packed};

/// `hash-max-listpack-entries` and `hash-max-listpack-value`.
#[derive(Clone, Copy)]
pub struct HashLimits {
    pub entries: usize,
    pub value: usize,
}

impl HashLimits {
    pub fn from_config(config: &crate::config::Config) -> HashLimits {
        HashLimits {
            entries: config.int(crate::config::HASH_MAX_LISTPACK_ENTRIES) as usize,
            value: config.int(crate::config::HASH_MAX_LISTPACK_VALUE) as usize,
        }
    }
}

/// The packed form is a bare exact-size buffer and the table sits behind one pointer: two words,
/// which `Value` boxes so that every key's entry stays two words.
pub enum Hash {
    Pack(Box<[u8]>),
    Table(Box<Dict<Box<[u8]>>>),
}

impl Clone for Hash {
    fn clone(&self) -> Hash {
        match self {
            Hash::Pack(bytes) => Hash::Pack(bytes.clone()),
            Hash::Table(table) => {
                let mut copy = Box::<Dict<_>>::default();
                for (field, value) in table.iter() {
                    copy.insert(field, value.clone());
                }
                Hash::Table(copy)
            }
        }
    }
}

impl Default for Hash {
    fn default() -> Hash {
        Hash::Pack(Box::default())
    }
}

impl Hash {
    pub fn len(&self) -> usize {
        match self {
            Hash::Pack(bytes) => packed::iter_bytes(bytes).count() / 2,
            Hash::Table(table) => table.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Hash::Pack(bytes) => bytes.is_empty(),
            Hash::Table(table) => table.is_empty(),
        }
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            Hash::Pack(_) => "listpack",
            Hash::Table(_) => "hashtable",
        }
    }

    /// Field, value pairs in storage order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&[u8], &[u8])> + '_> {
        match self {
            Hash::Pack(bytes) => {
                let mut entries = packed::iter_bytes(bytes);
                Box::new(std::iter::from_fn(move || {
                    Some((entries.next()?, entries.next()?))
                }))
            }
            Hash::Table(table) => Box::new(table.iter().map(|(f, v)| (f, &v[..]))),
        }
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match self {
            Hash::Pack(bytes) => find_pair(bytes, field).ok().map(|(_, value)| &bytes[value]),
            Hash::Table(table) => table.get(field).map(|v| &v[..]),
        }
    }

    fn convert_to_table(&mut self) {
        if let Hash::Pack(_) = self {
            let mut table = Box::<Dict<_>>::default();
            for (field, value) in self.iter() {
                table.insert(field, value.into());
            }
            *self = Hash::Table(table);
        }
    }

    /// Sets `field` to `value`; returns true if the field is new.
    pub fn set(&mut self, field: &[u8], value: &[u8], limits: HashLimits) -> bool {
        if let Hash::Pack(_) = self
            && (field.len() > limits.value || value.len() > limits.value)
        {
            self.convert_to_table();
        }
        match self {
            Hash::Pack(bytes) => match find_pair(bytes, field) {
                Ok((index, old)) => {
                    if old.len() == value.len() {
                        // Same length, same length prefixes: overwritten where it is.
                        bytes[old].copy_from_slice(value);
                    } else {
                        *bytes = rebuilt(
                            bytes,
                            |i, entry| {
                                if i == index * 2 + 1 { value } else { entry }
                            },
                        );
                    }
                    false
                }
                Err(pairs) => {
                    packed::append(bytes, &[field, value]);
                    if pairs + 1 > limits.entries {
                        self.convert_to_table();
                    }
                    true
                }
            },
            Hash::Table(table) => table.insert(field, value.into()).is_none(),
        }
    }

    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            Hash::Pack(bytes) => match find_pair(bytes, field) {
                Ok((index, _)) => {
                    let kept = packed::iter_bytes(bytes)
                        .enumerate()
                        .filter(|(i, _)| i / 2 != index)
                        .map(|(_, entry)| entry);
                    *bytes = Packed::of(kept).into_bytes();
                    true
                }
                Err(_) => false,
            },
            Hash::Table(table) => table.remove(field).is_some(),
        }
    }

    /// One step of HSCAN: a packed hash is returned whole, with cursor 0.
    pub fn scan(&self, cursor: u64, mut visit: impl FnMut(&[u8], &[u8])) -> u64 {
        match self {
            Hash::Pack(_) => {
                for (field, value) in self.iter() {
                    visit(field, value);
                }
                0
            }
            Hash::Table(table) => table.scan(cursor, |field, value| visit(field, value)),
        }
    }

    /// A random field and value.
    pub fn random(&self, mut rand: impl FnMut() -> u64) -> Option<(&[u8], &[u8])> {
        match self {
            Hash::Pack(_) => {
                let len = self.len();
                if len == 0 {
                    return None;
                }
                self.iter().nth((rand() % len as u64) as usize)
            }
            Hash::Table(table) => table.random(rand).map(|(f, v)| (f, &v[..])),
        }
    }

    pub fn allocated(&self) -> usize {
        match self {
            Hash::Pack(bytes) => bytes.len(),
            Hash::Table(table) => table
                .iter()
                .map(|(f, v)| f.len() + v.len() + 48)
                .sum::<usize>(),
        }
    }
}

/// The pair index of `field` in a packed hash and where its value lies in `bytes`, or the
/// number of pairs when it is absent, so that an insert needs no second walk to count them.
fn find_pair(bytes: &[u8], field: &[u8]) -> Result<(usize, Range<usize>), usize> {
    let mut entries = packed::iter_bytes(bytes);
    let mut pairs = 0;
    while let (Some(f), Some(value)) = (entries.next(), entries.next()) {
        if f == field {
            let start = value.as_ptr() as usize - bytes.as_ptr() as usize;
            return Ok((pairs, start..start + value.len()));
        }
        pairs += 1;
    }
    Err(pairs)
}

/// A copy of `packed` with each entry passed through `map` (entry index, entry).
fn rebuilt<'a>(bytes: &'a [u8], map: impl Fn(usize, &'a [u8]) -> &'a [u8]) -> Box<[u8]> {
    Packed::of(
        packed::iter_bytes(bytes)
            .enumerate()
            .map(|(i, e)| map(i, e)),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HashLimits = HashLimits {
        entries: 2,
        value: 8,
    };

    #[test]
    fn packed_until_limits_then_table() {
        let mut hash = Hash::default();
        assert!(hash.set(b"a", b"1", LIMITS));
        assert!(!hash.set(b"a", b"2", LIMITS));
        assert!(hash.set(b"b", b"3", LIMITS));
        assert_eq!(hash.encoding(), "listpack");
        assert_eq!(hash.get(b"a"), Some(&b"2"[..]));
        assert!(hash.remove(b"a"));
        assert!(!hash.remove(b"a"));
        assert_eq!(hash.len(), 1);
        assert!(hash.set(b"c", b"4", LIMITS));
        assert!(hash.set(b"d", b"5", LIMITS));
        assert_eq!(hash.encoding(), "hashtable");
        assert_eq!(hash.len(), 3);
        assert_eq!(hash.get(b"d"), Some(&b"5"[..]));
        let mut long = Hash::default();
        long.set(b"f", b"a value longer than eight", LIMITS);
        assert_eq!(long.encoding(), "hashtable");
    }

    #[test]
    fn updates_keep_the_other_pairs() {
        let mut hash = Hash::default();
        hash.set(b"a", b"one", LIMITS);
        hash.set(b"b", b"two", LIMITS);
        // Same length (written in place), then longer and shorter (rebuilt).
        for value in [&b"TWO"[..], b"2", b"two-two", b"tw"] {
            assert!(!hash.set(b"b", value, LIMITS));
            assert_eq!(hash.get(b"b"), Some(value));
            assert_eq!(hash.get(b"a"), Some(&b"one"[..]));
            assert_eq!(hash.len(), 2);
            assert_eq!(hash.encoding(), "listpack");
        }
    }
}
