//! The values a key can hold, with Redis's encodings.

use super::hash::Hash;
use super::list::List;
use super::set::Set;
use super::stream::Stream;
use super::thin_bytes::ThinBytes;
use super::zset::Zset;
use crate::util::parse_i64;

/// Longest string Redis keeps in the immutable `embstr` encoding.
const EMBSTR_MAX: usize = 44;

#[derive(Clone)]
pub enum Value {
    Str(Str),
    List(Box<List>),
    Hash(Box<Hash>),
    Set(Box<Set>),
    Zset(Box<Zset>),
    Stream(Box<Stream>),
}

/// A string value, in the encodings OBJECT ENCODING reports: integers are kept as numbers,
/// strings stored whole as an exact-size immutable buffer (`embstr` up to 44 bytes, `raw`
/// beyond, as Redis names them), and strings modified in place (APPEND, SETRANGE, SETBIT) as
/// growable buffers, boxed so that a string value stays two words.
#[derive(Clone)]
pub enum Str {
    Int(i64),
    Whole(ThinBytes),
    Raw(Box<Vec<u8>>),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    String,
    List,
    Hash,
    Set,
    Zset,
    Stream,
}

impl Value {
    pub fn kind(&self) -> Kind {
        match self {
            Value::Str(_) => Kind::String,
            Value::List(_) => Kind::List,
            Value::Hash(_) => Kind::Hash,
            Value::Set(_) => Kind::Set,
            Value::Zset(_) => Kind::Zset,
            Value::Stream(_) => Kind::Stream,
        }
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Str(Str::Int(_)) => "int",
            Value::Str(Str::Whole(b)) if b.len() <= EMBSTR_MAX => "embstr",
            Value::Str(_) => "raw",
            Value::List(_) => "quicklist",
            Value::Hash(hash) => hash.encoding(),
            Value::Set(set) => set.encoding(),
            Value::Zset(zset) => zset.encoding(),
            Value::Stream(_) => "stream",
        }
    }

    pub fn as_str_mut(&mut self) -> Option<&mut Str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_hash_mut(&mut self) -> Option<&mut Hash> {
        match self {
            Value::Hash(hash) => Some(hash),
            _ => None,
        }
    }

    pub fn as_zset_mut(&mut self) -> Option<&mut Zset> {
        match self {
            Value::Zset(zset) => Some(zset),
            _ => None,
        }
    }

    pub fn as_set_mut(&mut self) -> Option<&mut Set> {
        match self {
            Value::Set(set) => Some(set),
            _ => None,
        }
    }

    pub fn as_stream_mut(&mut self) -> Option<&mut Stream> {
        match self {
            Value::Stream(stream) => Some(stream),
            _ => None,
        }
    }

    pub fn as_list_mut(&mut self) -> Option<&mut List> {
        match self {
            Value::List(list) => Some(list),
            _ => None,
        }
    }

    /// OBJECT REFCOUNT: Redis shares the integers 0..9999 between keys (when `shared`) and
    /// reports such shared objects with INT_MAX references; every other value is referenced
    /// once.
    pub fn refcount(&self, shared: bool) -> i64 {
        match self {
            Value::Str(Str::Int(n)) if shared && (0..10_000).contains(n) => i32::MAX as i64,
            _ => 1,
        }
    }

    /// Heap bytes the value holds beyond the entry itself, for MEMORY USAGE.
    pub fn allocated(&self) -> usize {
        match self {
            Value::Str(Str::Int(_)) => 0,
            Value::Str(Str::Whole(b)) => b.len(),
            Value::Str(Str::Raw(v)) => size_of::<Vec<u8>>() + v.capacity(),
            Value::List(list) => list.allocated(),
            Value::Hash(hash) => size_of::<Hash>() + hash.allocated(),
            Value::Set(set) => set.allocated(),
            Value::Zset(zset) => zset.allocated(),
            Value::Stream(stream) => stream.allocated(),
        }
    }

    /// A string value stored the way Redis's `tryObjectEncoding` would store it.
    pub fn string(data: &[u8]) -> Value {
        Value::Str(Str::from_bytes(data))
    }
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::List => "list",
            Kind::Hash => "hash",
            Kind::Set => "set",
            Kind::Zset => "zset",
            Kind::Stream => "stream",
        }
    }
}

impl Str {
    pub fn from_bytes(data: &[u8]) -> Str {
        if data.len() <= 20
            && let Some(n) = parse_i64(data)
        {
            return Str::Int(n);
        }
        Str::whole(data.into())
    }

    /// Bytes stored as they are, in one allocation of their length.
    pub fn from_vec(data: Vec<u8>) -> Str {
        Str::whole(data.into_boxed_slice())
    }

    /// Takes the bytes out to edit them (without copying unless the string is an integer),
    /// leaving an empty string; `from_vec` puts them back.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        match std::mem::replace(self, Str::Int(0)) {
            Str::Int(n) => itoa::Buffer::new().format(n).as_bytes().to_vec(),
            Str::Whole(b) => b.into_boxed().into_vec(),
            Str::Raw(v) => *v,
        }
    }

    /// Bytes stored as they are; only strings longer than 4 GB need the growable form.
    fn whole(data: Box<[u8]>) -> Str {
        match ThinBytes::new(data) {
            Ok(bytes) => Str::Whole(bytes),
            Err(data) => Str::Raw(Box::new(data.into_vec())),
        }
    }

    /// The string's bytes; integers are rendered into `scratch`.
    pub fn bytes<'a>(&'a self, scratch: &'a mut itoa::Buffer) -> &'a [u8] {
        match self {
            Str::Int(n) => scratch.format(*n).as_bytes(),
            Str::Whole(b) => b,
            Str::Raw(v) => v,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        match self {
            Str::Int(n) => itoa::Buffer::new().format(*n).len(),
            Str::Whole(b) => b.len(),
            Str::Raw(v) => v.len(),
        }
    }

    /// The buffer for in-place modification; converts to the `raw` encoding as Redis does.
    pub fn make_raw(&mut self) -> &mut Vec<u8> {
        if !matches!(self, Str::Raw(_)) {
            let bytes = self.bytes(&mut itoa::Buffer::new()).to_vec();
            *self = Str::Raw(Box::new(bytes));
        }
        match self {
            Str::Raw(v) => v,
            _ => unreachable!("converted to raw above"),
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Str::Int(n) => Some(*n),
            Str::Whole(b) => parse_i64(b),
            Str::Raw(v) => parse_i64(v),
        }
    }
}
#[cfg(test)]
mod tests {
    /// Every key's entry holds a Value: two words keep a key with a short string value in a
    /// 56-byte node.
    #[test]
    fn value_fits_in_two_words() {
        assert_eq!(size_of::<super::Str>(), 16);
        assert_eq!(size_of::<super::Value>(), 16);
    }
}
