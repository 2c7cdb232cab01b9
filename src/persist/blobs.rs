//! Readers for the packed blobs older and current Redis versions put in RDB files as single
//! strings: listpack (7.0), ziplist (3.2 to 6.2), intset and zipmap (before 2.6). Oxidis only
//! reads them, turning each into its elements; it writes the plain RDB types instead.
//! Every reader is bounds-checked and returns None on malformed input, as RESTORE takes
//! untrusted payloads.

pub use crate::store::listpack::Element;
use crate::store::listpack::{le, signed};

/// Takes `n` bytes at `*pos`, advancing it.
fn take<'a>(data: &'a [u8], pos: &mut usize, n: usize) -> Option<&'a [u8]> {
    let bytes = data.get(*pos..pos.checked_add(n)?)?;
    *pos += n;
    Some(bytes)
}

/// The elements of a listpack (see `crate::store::listpack`).
pub fn listpack(data: &[u8]) -> Option<Vec<Element<'_>>> {
    if le(data.get(0..4)?) as usize != data.len() {
        return None;
    }
    let mut pos = 6;
    let mut out = Vec::new();
    while *data.get(pos)? != 0xff {
        let (element, next) = crate::store::listpack::decode(data, pos)?;
        out.push(element);
        pos = next;
    }
    (pos + 1 == data.len()).then_some(out)
}

/// The elements of a ziplist: `<bytes u32><tail u32><count u16>` then entries, then 0xFF.
/// Each entry is the previous entry's length (1 byte, or 0xFE and 4 bytes), an encoding
/// and its data.
pub fn ziplist(data: &[u8]) -> Option<Vec<Element<'_>>> {
    if le(data.get(0..4)?) as usize != data.len() {
        return None;
    }
    let mut pos = 10;
    let mut out = Vec::new();
    loop {
        if *data.get(pos)? == 0xff {
            pos += 1;
            break;
        }
        let prevlen = *take(data, &mut pos, 1)?.first()?;
        if prevlen == 0xfe {
            take(data, &mut pos, 4)?;
        }
        let byte = *take(data, &mut pos, 1)?.first()?;
        let element = match byte >> 6 {
            0 => Element::Bytes(take(data, &mut pos, (byte & 0x3f) as usize)?),
            1 => {
                let low = *take(data, &mut pos, 1)?.first()?;
                let len = ((byte & 0x3f) as usize) << 8 | low as usize;
                Element::Bytes(take(data, &mut pos, len)?)
            }
            2 => {
                let len = take(data, &mut pos, 4)?
                    .iter()
                    .fold(0usize, |acc, b| acc << 8 | *b as usize);
                Element::Bytes(take(data, &mut pos, len)?)
            }
            _ => match byte {
                0xc0 => Element::Int(signed(le(take(data, &mut pos, 2)?), 16)),
                0xd0 => Element::Int(signed(le(take(data, &mut pos, 4)?), 32)),
                0xe0 => Element::Int(le(take(data, &mut pos, 8)?) as i64),
                0xf0 => Element::Int(signed(le(take(data, &mut pos, 3)?), 24)),
                0xfe => Element::Int(signed(le(take(data, &mut pos, 1)?), 8)),
                0xf1..=0xfd => Element::Int(i64::from(byte & 0x0f) - 1),
                _ => return None,
            },
        };
        out.push(element);
    }
    (pos == data.len()).then_some(out)
}

/// The integers of an intset: `<width u32><count u32>` then `count` little-endian integers
/// of `width` bytes.
pub fn intset(data: &[u8]) -> Option<Vec<i64>> {
    let width = le(data.get(0..4)?) as usize;
    let count = le(data.get(4..8)?) as usize;
    if !matches!(width, 2 | 4 | 8) || data.len() != 8 + width.checked_mul(count)? {
        return None;
    }
    Some(
        data[8..]
            .chunks(width)
            .map(|c| signed(le(c), width as u32 * 8))
            .collect(),
    )
}

/// The fields and values of a zipmap (hashes before Redis 2.6): a count byte, then for each
/// pair `<len><field><len><free><value><free bytes>`, then 0xFF. A length is one byte, or
/// 0xFE and 4 bytes.
pub fn zipmap(data: &[u8]) -> Option<Vec<Element<'_>>> {
    let mut pos = 1;
    let mut out = Vec::new();
    let length = |pos: &mut usize| -> Option<usize> {
        match *take(data, pos, 1)?.first()? {
            0xfe => Some(le(take(data, pos, 4)?) as usize),
            0xff => None,
            n => Some(n as usize),
        }
    };
    loop {
        if *data.get(pos)? == 0xff {
            pos += 1;
            break;
        }
        let len = length(&mut pos)?;
        out.push(Element::Bytes(take(data, &mut pos, len)?));
        let len = length(&mut pos)?;
        let free = *take(data, &mut pos, 1)?.first()? as usize;
        out.push(Element::Bytes(take(data, &mut pos, len)?));
        take(data, &mut pos, free)?;
    }
    (pos == data.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(elements: Vec<Element<'_>>) -> Vec<Vec<u8>> {
        elements.iter().map(Element::to_vec).collect()
    }

    #[test]
    fn listpack_strings_and_ints() {
        // ["a", 5, -2, 300] as Redis encodes them.
        let mut lp = vec![0, 0, 0, 0, 4, 0];
        lp.extend([0x81, b'a', 2]);
        lp.extend([0x05, 1]);
        lp.extend([0xdf, 0xfe, 2]);
        lp.extend([0xc1, 0x2c, 2]);
        lp.push(0xff);
        let total = lp.len() as u32;
        lp[..4].copy_from_slice(&total.to_le_bytes());
        assert_eq!(
            strings(listpack(&lp).unwrap()),
            vec![
                b"a".to_vec(),
                b"5".to_vec(),
                b"-2".to_vec(),
                b"300".to_vec()
            ]
        );
        assert!(listpack(&lp[..lp.len() - 1]).is_none());
    }

    #[test]
    fn ziplist_and_intset() {
        // ["ab", 12, 1000]
        let mut zl = vec![0; 10];
        zl.extend([0, 0x02, b'a', b'b']);
        zl.extend([4, 0xfd]);
        zl.extend([2, 0xc0, 0xe8, 0x03]);
        zl.push(0xff);
        let total = zl.len() as u32;
        zl[..4].copy_from_slice(&total.to_le_bytes());
        assert_eq!(
            strings(ziplist(&zl).unwrap()),
            vec![b"ab".to_vec(), b"12".to_vec(), b"1000".to_vec()]
        );
        let is = [2, 0, 0, 0, 2, 0, 0, 0, 0xff, 0xff, 7, 0];
        assert_eq!(intset(&is).unwrap(), vec![-1, 7]);
        assert!(intset(&is[..11]).is_none());
    }

    #[test]
    fn zipmap_pairs() {
        let zm = [1, 1, b'f', 2, 0, b'v', b'w', 0xff];
        assert_eq!(
            strings(zipmap(&zm).unwrap()),
            vec![b"f".to_vec(), b"vw".to_vec()]
        );
    }
}
