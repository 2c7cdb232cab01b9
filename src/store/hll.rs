//! HyperLogLog in Redis's exact representation (hyperloglog.c), so that the bytes of an HLL
//! move between Oxidis and Redis through GET/SET, DUMP/RESTORE and RDB files and count the
//! same in both. Written here rather than taken from a crate because the format, the sparse
//! opcodes' editing order and the estimator must be Redis's to the byte.
//!
//! A value is a 16-byte header (`HYLL`, encoding, 3 unused bytes, the cached cardinality as
//! 8 little-endian bytes whose top bit marks it stale) and then either
//! - dense: 16384 registers of 6 bits, packed least significant bit first (12288 bytes), or
//! - sparse: opcodes `00xxxxxx` (ZERO: 1-64 zero registers), `01xxxxxx yyyyyyyy` (XZERO:
//!   1-16384 zero registers) and `1vvvvvxx` (VAL: 1-4 registers holding 1-32).
//!
//! Every read is bounds-checked: a corrupt value is an error, never a read or write outside
//! its buffer.

pub const HEADER: usize = 16;
const P: u32 = 14;
pub const REGISTERS: usize = 1 << P;
const Q: usize = 64 - P as usize;
pub const DENSE_SIZE: usize = HEADER + REGISTERS * 6 / 8;
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
const SPARSE_VAL_MAX: u8 = 32;
const SPARSE_VAL_MAX_LEN: usize = 4;
const SPARSE_ZERO_MAX_LEN: usize = 64;
const STALE: u8 = 0x80;

/// The registers' contents could not be read: Redis's INVALIDOBJ.
#[derive(Debug, PartialEq)]
pub struct Corrupt;

pub const CORRUPT: &str = "INVALIDOBJ Corrupted HLL object detected";
pub const NOT_HLL: &str = "WRONGTYPE Key is not a valid HyperLogLog string value.";

/// Whether `bytes` has an HLL's header and, if dense, its exact size (Redis's
/// `isHLLObjectOrReply`); the sparse opcodes are checked as they are read.
pub fn is_hll(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER
        && &bytes[..4] == b"HYLL"
        && bytes[4] <= SPARSE
        && (bytes[4] != DENSE || bytes.len() == DENSE_SIZE)
}

pub fn is_sparse(hll: &[u8]) -> bool {
    hll[4] == SPARSE
}

/// An empty HLL: sparse, one XZERO covering every register.
pub fn new() -> Vec<u8> {
    let mut hll = Vec::with_capacity(HEADER + 2);
    hll.extend_from_slice(b"HYLL");
    hll.push(SPARSE);
    hll.resize(HEADER, 0);
    push_xzero(&mut hll, REGISTERS);
    hll
}

/// The register an element updates and the value it proposes: the index from the low 14 bits
/// of Redis's MurmurHash64A (seed 0xadc83b19), then one more than the trailing zeros of the
/// rest, at most 51.
pub fn pattern(element: &[u8]) -> (usize, u8) {
    let hash = murmur_hash64a(element, 0xadc8_3b19);
    let index = hash as usize & (REGISTERS - 1);
    let rest = (hash >> P) | (1 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// Austin Appleby's MurmurHash64A, reading words little-endian as Redis does on x86.
fn murmur_hash64a(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (data.len() as u64).wrapping_mul(M);
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let mut k = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate() {
            h ^= (*byte as u64) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// Adds an element; true if a register grew.
pub fn add(hll: &mut Vec<u8>, element: &[u8], sparse_max_bytes: usize) -> Result<bool, Corrupt> {
    let (index, count) = pattern(element);
    set(hll, index, count, sparse_max_bytes)
}

/// Raises register `index` to `count` if it is lower; true if it grew. A sparse HLL turns
/// dense when the value needs it or the sparse form would pass `sparse_max_bytes`.
pub fn set(
    hll: &mut Vec<u8>,
    index: usize,
    count: u8,
    sparse_max_bytes: usize,
) -> Result<bool, Corrupt> {
    let grew = if is_sparse(hll) {
        sparse_set(hll, index, count, sparse_max_bytes)?
    } else {
        dense_set(&mut hll[HEADER..], index, count)
    };
    if grew {
        invalidate_cache(hll);
    }
    Ok(grew)
}

pub fn invalidate_cache(hll: &mut [u8]) {
    hll[15] |= STALE;
}

/// The cardinality cached in the header, if still valid.
pub fn cached_count(hll: &[u8]) -> Option<u64> {
    (hll[15] & STALE == 0).then(|| u64::from_le_bytes(hll[8..16].try_into().expect("8 bytes")))
}

pub fn store_count(hll: &mut [u8], count: u64) {
    hll[8..16].copy_from_slice(&count.to_le_bytes());
}

fn dense_get(registers: &[u8], index: usize) -> u8 {
    let bit = index * 6;
    let (byte, shift) = (bit / 8, bit % 8);
    let low = registers[byte] as u16;
    let high = registers.get(byte + 1).copied().unwrap_or(0) as u16;
    (((low | high << 8) >> shift) & 63) as u8
}

fn dense_put(registers: &mut [u8], index: usize, value: u8) {
    let bit = index * 6;
    let (byte, shift) = (bit / 8, bit % 8);
    let field = 63u16 << shift;
    let value = (value as u16) << shift;
    registers[byte] = (registers[byte] & !field as u8) | value as u8;
    if let Some(next) = registers.get_mut(byte + 1) {
        *next = (*next & !(field >> 8) as u8) | (value >> 8) as u8;
    }
}

fn dense_set(registers: &mut [u8], index: usize, count: u8) -> bool {
    if dense_get(registers, index) >= count {
        return false;
    }
    dense_put(registers, index, count);
    true
}

/// Calls `visit` for every four registers of a dense HLL, three bytes at a time.
fn dense_quads(registers: &[u8], mut visit: impl FnMut(usize, [u8; 4])) {
    for (i, bytes) in registers.chunks_exact(3).enumerate() {
        let word = bytes[0] as u32 | (bytes[1] as u32) << 8 | (bytes[2] as u32) << 16;
        let quad = [0, 6, 12, 18].map(|shift| ((word >> shift) & 63) as u8);
        visit(i * 4, quad);
    }
}

/// One sparse opcode.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Op {
    Zero(usize),
    XZero(usize),
    Val(u8, usize),
}

impl Op {
    fn len(self) -> usize {
        match self {
            Op::Zero(n) | Op::XZero(n) | Op::Val(_, n) => n,
        }
    }

    fn bytes(self) -> usize {
        if matches!(self, Op::XZero(_)) { 2 } else { 1 }
    }
}

/// The opcode at `at`; Corrupt if an XZERO is cut off.
fn op_at(sparse: &[u8], at: usize) -> Result<Op, Corrupt> {
    let byte = sparse[at];
    Ok(match byte & 0xc0 {
        0x00 => Op::Zero((byte & 0x3f) as usize + 1),
        0x40 => {
            let low = *sparse.get(at + 1).ok_or(Corrupt)?;
            Op::XZero((((byte & 0x3f) as usize) << 8 | low as usize) + 1)
        }
        _ => Op::Val(((byte >> 2) & 0x1f) + 1, (byte & 3) as usize + 1),
    })
}

fn push_xzero(out: &mut Vec<u8>, len: usize) {
    let n = len - 1;
    out.push(0x40 | (n >> 8) as u8);
    out.push(n as u8);
}

fn val_byte(value: u8, len: usize) -> u8 {
    0x80 | (value - 1) << 2 | (len - 1) as u8
}

/// A run of zero registers as Redis writes it: ZERO up to 64, XZERO beyond.
fn push_zeros(out: &mut Vec<u8>, len: usize) {
    if len > SPARSE_ZERO_MAX_LEN {
        push_xzero(out, len);
    } else {
        out.push((len - 1) as u8);
    }
}

/// Visits the runs of a sparse HLL's opcodes as (first register, op); Corrupt unless they
/// cover exactly the 16384 registers.
fn sparse_runs(hll: &[u8], mut visit: impl FnMut(usize, Op)) -> Result<(), Corrupt> {
    let mut at = HEADER;
    let mut index = 0;
    while at < hll.len() {
        let op = op_at(hll, at)?;
        if index + op.len() > REGISTERS {
            return Err(Corrupt);
        }
        visit(index, op);
        index += op.len();
        at += op.bytes();
    }
    if index == REGISTERS {
        Ok(())
    } else {
        Err(Corrupt)
    }
}

/// Redis's `hllSparseSet`, step for step: the sparse bytes it leaves are Redis's.
fn sparse_set(
    hll: &mut Vec<u8>,
    index: usize,
    count: u8,
    max_bytes: usize,
) -> Result<bool, Corrupt> {
    if count > SPARSE_VAL_MAX {
        return promote(hll, index, count);
    }
    // Find the opcode covering the register, and the one before it.
    let (mut at, mut first, mut prev) = (HEADER, 0, None);
    let op = loop {
        if at >= hll.len() {
            return Err(Corrupt);
        }
        let op = op_at(hll, at)?;
        if index < first + op.len() {
            break op;
        }
        prev = Some(at);
        at += op.bytes();
        first += op.len();
    };
    let last = first + op.len() - 1;
    match op {
        Op::Val(old, _) if old >= count => return Ok(false),
        Op::Val(_, 1) | Op::Zero(1) => hll[at] = val_byte(count, 1),
        _ => {
            // Split the run into what lies before the register, the register, and after.
            let mut seq = Vec::with_capacity(5);
            match op {
                Op::Val(old, _) => {
                    if index != first {
                        seq.push(val_byte(old, index - first));
                    }
                    seq.push(val_byte(count, 1));
                    if index != last {
                        seq.push(val_byte(old, last - index));
                    }
                }
                _ => {
                    if index != first {
                        push_zeros(&mut seq, index - first);
                    }
                    seq.push(val_byte(count, 1));
                    if index != last {
                        push_zeros(&mut seq, last - index);
                    }
                }
            }
            if seq.len() > op.bytes() && hll.len() + seq.len() - op.bytes() > max_bytes {
                return promote(hll, index, count);
            }
            hll.splice(at..at + op.bytes(), seq);
        }
    }
    merge_vals(hll, prev.unwrap_or(HEADER));
    Ok(true)
}

/// Merges adjacent VAL opcodes of equal value whose lengths fit one, over at most five
/// opcodes from `at` (Redis's step 4).
fn merge_vals(hll: &mut Vec<u8>, mut at: usize) {
    let mut scan = 5;
    while at < hll.len() && scan > 0 {
        scan -= 1;
        let Ok(op) = op_at(hll, at) else { return };
        let Op::Val(value, len) = op else {
            at += op.bytes();
            continue;
        };
        if let Some(&next) = hll.get(at + 1)
            && next & 0x80 != 0
            && let Ok(Op::Val(next_value, next_len)) = op_at(hll, at + 1)
            && next_value == value
            && len + next_len <= SPARSE_VAL_MAX_LEN
        {
            hll[at + 1] = val_byte(value, len + next_len);
            hll.remove(at);
            continue;
        }
        at += 1;
    }
}

/// Turns a sparse HLL dense, then sets the register (which must grow).
fn promote(hll: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, Corrupt> {
    to_dense(hll)?;
    Ok(dense_set(&mut hll[HEADER..], index, count))
}

/// Converts a sparse HLL to the dense encoding, keeping the header's cached count.
pub fn to_dense(hll: &mut Vec<u8>) -> Result<(), Corrupt> {
    if !is_sparse(hll) {
        return Ok(());
    }
    let mut dense = vec![0u8; DENSE_SIZE];
    dense[..HEADER].copy_from_slice(&hll[..HEADER]);
    dense[4] = DENSE;
    let registers = &mut dense[HEADER..];
    sparse_runs(hll, |first, op| {
        if let Op::Val(value, len) = op {
            for index in first..first + len {
                dense_put(registers, index, value);
            }
        }
    })?;
    *hll = dense;
    Ok(())
}

/// Raises each of `max` (one byte per register) to the HLL's register.
pub fn merge_into(max: &mut [u8; REGISTERS], hll: &[u8]) -> Result<(), Corrupt> {
    if is_sparse(hll) {
        sparse_runs(hll, |first, op| {
            if let Op::Val(value, len) = op {
                for m in &mut max[first..first + len] {
                    *m = (*m).max(value);
                }
            }
        })
    } else {
        dense_quads(&hll[HEADER..], |first, quad| {
            for (m, value) in max[first..first + 4].iter_mut().zip(quad) {
                *m = (*m).max(value);
            }
        });
        Ok(())
    }
}

/// Every register's value, one byte each.
pub fn registers(hll: &[u8]) -> Result<Box<[u8; REGISTERS]>, Corrupt> {
    let mut all = Box::new([0u8; REGISTERS]);
    merge_into(&mut all, hll)?;
    Ok(all)
}

/// The estimated cardinality of an HLL.
pub fn count(hll: &[u8]) -> Result<u64, Corrupt> {
    let mut histogram = [0u32; 64];
    if is_sparse(hll) {
        sparse_runs(hll, |_, op| match op {
            Op::Val(value, len) => histogram[value as usize] += len as u32,
            _ => histogram[0] += op.len() as u32,
        })?;
    } else {
        dense_quads(&hll[HEADER..], |_, quad| {
            for value in quad {
                histogram[value as usize] += 1;
            }
        });
    }
    Ok(estimate(&histogram))
}

/// The estimated cardinality of registers held one per byte (a PFCOUNT of several keys).
pub fn count_registers(registers: &[u8; REGISTERS]) -> u64 {
    let mut histogram = [0u32; 64];
    for value in registers {
        histogram[(*value & 63) as usize] += 1;
    }
    estimate(&histogram)
}

/// Redis 7's estimator (Otmar Ertl, "New cardinality estimation algorithms for HyperLogLog
/// sketches", arXiv:1702.01284), in the same floating-point steps so the result is Redis's.
fn estimate(histogram: &[u32; 64]) -> u64 {
    const ALPHA_INF: f64 = 0.721_347_520_444_481_7; // 0.5 / ln 2
    let m = REGISTERS as f64;
    let mut z = m * tau((m - histogram[Q + 1] as f64) / m);
    for j in (1..=Q).rev() {
        z += histogram[j] as f64;
        z *= 0.5;
    }
    z += m * sigma(histogram[0] as f64 / m);
    (ALPHA_INF * m * m / z).round() as u64
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if before == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if before == z {
            return z / 3.0;
        }
    }
}

/// PFDEBUG DECODE: the sparse opcodes as Redis prints them.
pub fn decode(hll: &[u8]) -> Result<String, Corrupt> {
    let mut out = Vec::new();
    let mut at = HEADER;
    while at < hll.len() {
        let op = op_at(hll, at)?;
        out.push(match op {
            Op::Zero(n) => format!("z:{n}"),
            Op::XZero(n) => format!("Z:{n}"),
            Op::Val(v, n) => format!("v:{v},{n}"),
        });
        at += op.bytes();
    }
    Ok(out.join(" "))
}

/// PFSELFTEST: the checks Redis's self test makes, on this implementation. Err names what
/// failed, in Redis's words.
pub fn self_test(sparse_max_bytes: usize, mut rand: impl FnMut() -> u64) -> Result<(), String> {
    // Registers keep what is written to them without disturbing their neighbours.
    let mut registers = vec![0u8; DENSE_SIZE - HEADER];
    let mut expected = vec![0u8; REGISTERS];
    for _ in 0..1000 {
        for (i, e) in expected.iter_mut().enumerate() {
            *e = (rand() & 63) as u8;
            dense_put(&mut registers, i, *e);
        }
        for (i, e) in expected.iter().enumerate() {
            let got = dense_get(&registers, i);
            if got != *e {
                return Err(format!(
                    "TESTFAILED Register {i} should be {e} but is {got}"
                ));
            }
        }
    }
    // Dense and sparse agree, and the error stays within six standard errors.
    let mut dense = new();
    to_dense(&mut dense).map_err(|_| "TESTFAILED conversion".to_string())?;
    let mut sparse = new();
    let relative_error = 1.04 / (REGISTERS as f64).sqrt();
    let seed = rand();
    let mut checkpoint = 1u64;
    for j in 1..=10_000_000u64 {
        let element = (j ^ seed).to_ne_bytes();
        let failed = |_| "TESTFAILED corrupt".to_string();
        add(&mut dense, &element, sparse_max_bytes).map_err(failed)?;
        add(&mut sparse, &element, sparse_max_bytes).map_err(failed)?;
        if j != checkpoint {
            continue;
        }
        if j < sparse_max_bytes as u64 / 2 && !is_sparse(&sparse) {
            return Err("TESTFAILED sparse encoding not used".into());
        }
        let estimated = count(&dense).map_err(failed)?;
        if Ok(estimated) != count(&sparse) {
            return Err("TESTFAILED dense/sparse disagree".into());
        }
        let max_error = if j == 10 {
            1
        } else {
            (relative_error * 6.0 * j as f64).ceil() as u64
        };
        let error = j.abs_diff(estimated);
        if error > max_error {
            return Err(format!("TESTFAILED Too big error. card:{j} abserr:{error}"));
        }
        checkpoint *= 10;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_registers_and_opcodes_as_redis() {
        // What redis-server 7.0.15 answers to PFDEBUG DECODE after these PFADDs.
        assert_eq!(pattern(b"foo"), (7348, 5));
        let mut hll = new();
        for e in [&b"a"[..], b"b", b"c", b"hello", b""] {
            add(&mut hll, e, 3000).unwrap();
        }
        assert_eq!(
            decode(&hll).unwrap(),
            "Z:5938 v:2,1 Z:2497 v:1,1 Z:779 v:1,1 Z:3494 v:2,1 Z:3068 v:1,1 Z:603"
        );
        assert_eq!(count(&hll), Ok(5));
    }

    #[test]
    fn sparse_and_dense_count_alike_and_stay_valid() {
        let mut sparse = new();
        let mut dense = new();
        to_dense(&mut dense).unwrap();
        for i in 0..5000u32 {
            let e = i.to_string();
            add(&mut sparse, e.as_bytes(), 3000).unwrap();
            add(&mut dense, e.as_bytes(), 3000).unwrap();
            if i % 97 == 0 {
                assert_eq!(count(&sparse), count(&dense));
                assert!(sparse.len() <= 3000 || !is_sparse(&sparse));
            }
        }
        assert!(!is_sparse(&sparse));
        assert_eq!(sparse[HEADER..], dense[HEADER..]);
        let estimated = count(&dense).unwrap() as f64;
        assert!((estimated - 5000.0).abs() < 5000.0 * 0.05, "{estimated}");
    }

    #[test]
    fn corrupt_sparse_values_are_refused() {
        let mut hll = new();
        hll.push(0x00); // one register too many
        assert_eq!(count(&hll), Err(Corrupt));
        let mut cut = new();
        cut.truncate(HEADER + 1); // a cut-off XZERO
        assert_eq!(count(&cut), Err(Corrupt));
        assert_eq!(set(&mut cut, 5, 3, 3000), Err(Corrupt));
    }
}
