//! The byte string a `Dict` node keys on: up to `INLINE` bytes are kept inside the node,
//! longer ones on the heap. Most Redis keys and fields are short ("sensor:17", "user:1000"),
//! so this saves an allocation and a pointer chase per element. Written here because the
//! small-vector crates keep fewer bytes inline in the same 24-byte footprint.

use std::ops::Deref;

const INLINE: usize = 22;

#[derive(Clone)]
pub enum Key {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl From<&[u8]> for Key {
    fn from(value: &[u8]) -> Key {
        if value.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..value.len()].copy_from_slice(value);
            Key::Inline {
                len: value.len() as u8,
                bytes,
            }
        } else {
            Key::Heap(value.into())
        }
    }
}

impl Key {
    /// Bytes held outside the key itself.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Key::Inline { .. } => 0,
            Key::Heap(bytes) => bytes.len(),
        }
    }
}

impl Deref for Key {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize],
            Key::Heap(bytes) => bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_in_three_words_and_round_trips() {
        assert_eq!(size_of::<Key>(), 24);
        for len in [0, 1, INLINE, INLINE + 1, 100] {
            let value: Vec<u8> = (0..len as u8).collect();
            assert_eq!(&*Key::from(&value[..]), &value[..]);
        }
    }
}
