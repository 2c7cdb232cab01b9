//! An immutable byte string in one exact-size allocation, held as a pointer and a 32-bit length.
//!
//! `Box<[u8]>` holds the same bytes but fills two whole words, which leaves an enum around it no
//! spare bits for its tag: `Str` and `Value` would each add a word, and every key's entry with
//! them. Here the byte after the length has a single valid value, so the enums keep their tags
//! in it and a string value costs two words (`value::tests` checks the sizes).

use std::ops::Deref;
use std::ptr::NonNull;

pub struct ThinBytes {
    ptr: NonNull<u8>,
    len: u32,
    _tag_room: TagRoom,
}

/// One valid value; enums containing `ThinBytes` use the other 255 for their tags.
#[derive(Clone, Copy)]
#[repr(u8)]
enum TagRoom {
    Zero = 0,
}

// SAFETY: a ThinBytes owns its allocation alone and never mutates it, as a Box<[u8]> does.
unsafe impl Send for ThinBytes {}
unsafe impl Sync for ThinBytes {}

impl ThinBytes {
    /// The bytes, moved without copying; given back when they are longer than `u32::MAX`.
    pub fn new(bytes: Box<[u8]>) -> Result<ThinBytes, Box<[u8]>> {
        let Ok(len) = u32::try_from(bytes.len()) else {
            return Err(bytes);
        };
        Ok(ThinBytes {
            ptr: NonNull::from(Box::leak(bytes)).cast(),
            len,
            _tag_room: TagRoom::Zero,
        })
    }

    /// The bytes back as the Box they came in, without copying.
    pub fn into_boxed(self) -> Box<[u8]> {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: the Box leaked in `new`, still owned by this value, which is never dropped.
        unsafe { Box::from_raw(this.raw()) }
    }

    /// The owned bytes as the raw slice that `new` leaked.
    fn raw(&self) -> *mut [u8] {
        std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len as usize)
    }
}

impl Deref for ThinBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: ptr and len come from a leaked Box<[u8]> that this value still owns.
        unsafe { &*self.raw() }
    }
}

impl Drop for ThinBytes {
    fn drop(&mut self) {
        // SAFETY: the pointer and length are those of the Box leaked in `new`, freed only here.
        drop(unsafe { Box::from_raw(self.raw()) });
    }
}

impl Clone for ThinBytes {
    fn clone(&self) -> ThinBytes {
        match ThinBytes::new(Box::from(&**self)) {
            Ok(copy) => copy,
            Err(_) => unreachable!("a copy is as long as its original"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_and_copies_any_length_and_leaves_room_for_a_tag() {
        for len in [0, 1, 44, 45, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let bytes = ThinBytes::new(data.clone().into_boxed_slice()).unwrap();
            let copy = bytes.clone();
            drop(bytes);
            assert_eq!(&*copy, &data[..]);
        }
        assert_eq!(size_of::<Option<ThinBytes>>(), 16);
    }
}
