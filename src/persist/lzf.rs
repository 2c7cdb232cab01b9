//! LZF, the compression Redis applies to strings in RDB files (`rdbcompression`).
//! Written here because the Rust `lzf` crate is deprecated; the format is small: a control
//! byte below 32 starts a run of `ctrl + 1` literal bytes, anything else is a back-reference
//! of `(ctrl >> 5) + 2` bytes (7 meaning "add the next byte") at distance
//! `((ctrl & 31) << 8 | next byte) + 1`.

const MAX_LITERAL: usize = 32;
const MAX_OFFSET: usize = 1 << 13;
const MAX_MATCH: usize = (1 << 8) + (1 << 3);
const HASH_BITS: u32 = 14;

/// Compresses `input`; None when the result would not be shorter than `limit` bytes.
pub fn compress(input: &[u8], limit: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(limit);
    let mut table = vec![0u32; 1 << HASH_BITS];
    let mut literals = 0usize;
    // Index in `out` of the control byte of the literal run being built.
    let mut run_start = 0usize;
    out.push(0);
    let mut i = 0usize;
    let hash = |i: usize| {
        let v = u32::from(input[i]) << 16 | u32::from(input[i + 1]) << 8 | u32::from(input[i + 2]);
        (v.wrapping_mul(2_654_435_761) >> (32 - HASH_BITS)) as usize
    };
    while i + 2 < input.len() {
        let slot = hash(i);
        let candidate = table[slot] as usize;
        table[slot] = i as u32 + 1;
        let found = candidate > 0 && i - (candidate - 1) <= MAX_OFFSET;
        let reference = candidate.wrapping_sub(1);
        if found && input[reference..reference + 3] == input[i..i + 3] {
            let longest = (input.len() - i).min(MAX_MATCH);
            let mut len = 3;
            while len < longest && input[reference + len] == input[i + len] {
                len += 1;
            }
            if literals == 0 {
                out.pop();
            } else {
                out[run_start] = (literals - 1) as u8;
            }
            let distance = i - reference - 1;
            let coded = len - 2;
            if coded < 7 {
                out.push(((coded << 5) | (distance >> 8)) as u8);
            } else {
                out.push(((7 << 5) | (distance >> 8)) as u8);
                out.push((coded - 7) as u8);
            }
            out.push(distance as u8);
            i += len;
            literals = 0;
            run_start = out.len();
            out.push(0);
        } else {
            push_literal(&mut out, &mut literals, &mut run_start, input[i]);
            i += 1;
        }
        if out.len() >= limit {
            return None;
        }
    }
    while i < input.len() {
        push_literal(&mut out, &mut literals, &mut run_start, input[i]);
        i += 1;
    }
    if literals == 0 {
        out.pop();
    } else {
        out[run_start] = (literals - 1) as u8;
    }
    (out.len() < limit).then_some(out)
}

fn push_literal(out: &mut Vec<u8>, literals: &mut usize, run_start: &mut usize, byte: u8) {
    out.push(byte);
    *literals += 1;
    if *literals == MAX_LITERAL {
        out[*run_start] = (MAX_LITERAL - 1) as u8;
        *literals = 0;
        *run_start = out.len();
        out.push(0);
    }
}

/// Decompresses `input` into exactly `len` bytes; None if the data is malformed.
pub fn decompress(input: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    let mut i = 0;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < MAX_LITERAL {
            let run = input.get(i..i + ctrl + 1)?;
            out.extend_from_slice(run);
            i += ctrl + 1;
        } else {
            let mut count = ctrl >> 5;
            if count == 7 {
                count += *input.get(i)? as usize;
                i += 1;
            }
            let distance = ((ctrl & 0x1f) << 8 | *input.get(i)? as usize) + 1;
            i += 1;
            let start = out.len().checked_sub(distance)?;
            for k in 0..count + 2 {
                out.push(out[start + k]);
            }
        }
        if out.len() > len {
            return None;
        }
    }
    (out.len() == len).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_compresses_repetition() {
        let samples: Vec<Vec<u8>> = vec![
            b"a".repeat(1000),
            b"hello world, hello world, hello world, hello!".to_vec(),
            (0..5000u32).flat_map(|i| (i % 251).to_le_bytes()).collect(),
            (0..3000u32).map(|i| (i * 7919 % 256) as u8).collect(),
        ];
        for input in samples {
            match compress(&input, input.len()) {
                Some(packed) => assert_eq!(decompress(&packed, input.len()).unwrap(), input),
                None => assert!(input.len() < 100 || input[0] != input[1]),
            }
        }
        assert!(compress(&b"a".repeat(1000), 1000).unwrap().len() < 30);
    }

    #[test]
    fn reads_what_liblzf_writes() {
        // "aaaaaaaaaaaaaaaaaaaa" as Redis's lzf_compress encodes it.
        assert_eq!(
            decompress(&[0x00, b'a', 0xe0, 0x03, 0x00], 13).unwrap(),
            b"a".repeat(13)
        );
        assert_eq!(decompress(&[0x01, b'a'], 1), None);
    }
}
