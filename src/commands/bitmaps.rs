//! Bitmap commands on string values (Redis's bitops.c): GETBIT, SETBIT, BITCOUNT, BITPOS,
//! BITOP, BITFIELD and BITFIELD_RO. Bit 0 is the most significant bit of the first byte.
//! Counting and combining go a machine word at a time (see `popcount` and `combine`).

use bytes::Bytes;

use super::strings::string_mut;
use super::{CmdResult, Ctx, Error, NOT_INTEGER, SYNTAX, WRONGTYPE, entry_or_new, int_arg};
use crate::config;
use crate::store::{Class, Locked, Str, Value};
use crate::util::eq_ignore_case;

const BAD_OFFSET: &str = "ERR bit offset is not an integer or out of range";
const BAD_TYPE: &str = "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";

/// Redis's bit offset rule: 0 up to proto-max-bulk-len bytes. With `hash_bits`, BITFIELD's
/// `#n` form counts in fields of that many bits.
fn bit_offset(ctx: &Ctx, arg: &[u8], hash_bits: Option<u64>) -> Result<u64, Error> {
    let (digits, scale) = match (arg.first(), hash_bits) {
        (Some(b'#'), Some(bits)) => (&arg[1..], bits as i64),
        _ => (arg, 1),
    };
    let offset = crate::util::parse_i64(digits)
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| *n >= 0)
        .ok_or(Error::from(BAD_OFFSET))? as u64;
    if offset >> 3 >= ctx.server.config.int(config::PROTO_MAX_BULK_LEN) as u64 {
        return Err(BAD_OFFSET.into());
    }
    Ok(offset)
}

/// The string at `key` grown with zero bytes so that bit `last_bit` exists, created if absent,
/// in the growable encoding; with whether it was created or grown.
fn bits_for_write<'a>(
    locked: &'a mut Locked,
    key: &[u8],
    last_bit: u64,
) -> Result<(&'a mut Vec<u8>, bool), Error> {
    let needed = (last_bit >> 3) as usize + 1;
    let (entry, created) = entry_or_new(locked, key, || Value::Str(Str::Raw(Box::default())));
    let raw = entry
        .value
        .as_str_mut()
        .ok_or(Error::from(WRONGTYPE))?
        .make_raw();
    let grown = raw.len() < needed;
    if grown {
        raw.resize(needed, 0);
    }
    Ok((raw, created || grown))
}

/// Runs `read` on the bytes of the string at `key` (None when absent).
fn with_bytes<R>(ctx: &Ctx, key: &[u8], read: impl FnOnce(Option<&[u8]>) -> R) -> Result<R, Error> {
    let db = ctx.db();
    let mut locked = db.lock(key);
    let mut scratch = itoa::Buffer::new();
    Ok(match string_mut(&mut locked, key)? {
        Some(s) => read(Some(s.bytes(&mut scratch))),
        None => read(None),
    })
}

pub fn getbit(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let offset = bit_offset(ctx, &args[2], None)? as usize;
    let bit = with_bytes(ctx, &args[1], |data| {
        data.and_then(|d| d.get(offset >> 3))
            .map_or(0, |byte| (byte >> (7 - (offset & 7))) & 1)
    })?;
    ctx.reply.int(bit as i64);
    Ok(())
}

pub fn setbit(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let offset = bit_offset(ctx, &args[2], None)?;
    let on = match &args[3][..] {
        b"1" => true,
        b"0" => false,
        _ => return Err("ERR bit is not an integer or out of range".into()),
    };
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let (raw, grown) = bits_for_write(&mut locked, key, offset)?;
    let byte = &mut raw[(offset >> 3) as usize];
    let mask = 1u8 << (7 - (offset & 7));
    let old = *byte & mask != 0;
    if on {
        *byte |= mask;
    } else {
        *byte &= !mask;
    }
    drop(locked);
    // As Redis: a SETBIT that changes nothing is no write (no event, no dirty count).
    if grown || old != on {
        ctx.modified(key, Class::String, "setbit");
    }
    ctx.reply.int(old as i64);
    Ok(())
}

/// Ones in `bytes`. With the CPU's popcount instruction when it has one: Rust's portable
/// `count_ones` is a dozen instructions per word, the instruction is one.
fn popcount(bytes: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: the CPU has the feature the function is compiled for.
        return unsafe { popcount_with_popcnt(bytes) };
    }
    popcount_words(bytes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn popcount_with_popcnt(bytes: &[u8]) -> u64 {
    popcount_words(bytes)
}

/// Four independent words per step, so that the counts overlap in the CPU.
#[inline(always)]
fn popcount_words(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(32);
    let mut sums = [0u64; 4];
    for chunk in &mut chunks {
        for (sum, word) in sums.iter_mut().zip(chunk.chunks_exact(8)) {
            *sum += u64::from_ne_bytes(word.try_into().expect("8 bytes")).count_ones() as u64;
        }
    }
    let tail: u64 = chunks
        .remainder()
        .iter()
        .map(|b| b.count_ones() as u64)
        .sum();
    sums.iter().sum::<u64>() + tail
}

/// The first bit equal to `bit` in `bytes`, a word at a time.
fn first_bit(bytes: &[u8], bit: bool) -> Option<u64> {
    let skip = if bit { 0u8 } else { 0xff };
    let mut words = bytes.chunks_exact(8);
    let mut base = 0u64;
    for word in &mut words {
        let w = u64::from_be_bytes(word.try_into().expect("8 bytes"));
        let w = if bit { w } else { !w };
        if w != 0 {
            return Some(base + w.leading_zeros() as u64);
        }
        base += 64;
    }
    let rest = words.remainder();
    let (i, byte) = rest.iter().enumerate().find(|(_, b)| **b != skip)?;
    let byte = if bit { *byte } else { !*byte };
    Some(base + i as u64 * 8 + byte.leading_zeros() as u64)
}

/// A BITCOUNT/BITPOS range in bits, inclusive, clamped to a string of `len` bytes as Redis
/// does; None when it is empty.
fn bit_range(start: i64, end: i64, in_bits: bool, len: usize) -> Option<(u64, u64)> {
    let total = if in_bits { len as i64 * 8 } else { len as i64 };
    let clamp = |n: i64| if n < 0 { (total + n).max(0) } else { n };
    let (start, end) = (clamp(start), clamp(end).min(total - 1));
    if start > end {
        return None;
    }
    let (start, end) = (start as u64, end as u64);
    Some(if in_bits {
        (start, end)
    } else {
        (start * 8, end * 8 + 7)
    })
}

/// The `BYTE`/`BIT` unit argument of BITCOUNT and BITPOS.
fn unit_in_bits(arg: Option<&Bytes>) -> Result<bool, Error> {
    match arg {
        None => Ok(false),
        Some(a) if eq_ignore_case(a, "bit") => Ok(true),
        Some(a) if eq_ignore_case(a, "byte") => Ok(false),
        Some(_) => Err(SYNTAX.into()),
    }
}

/// Ones between bits `first` and `last` (inclusive) of `data`.
fn count_range(data: &[u8], first: u64, last: u64) -> u64 {
    let (first_byte, last_byte) = ((first >> 3) as usize, (last >> 3) as usize);
    let whole = popcount(&data[first_byte..=last_byte]);
    let before = (data[first_byte] as u16 >> (8 - (first & 7))).count_ones() as u64;
    let after = (data[last_byte] & ((1u16 << (7 - (last & 7))) - 1) as u8).count_ones() as u64;
    whole - before - after
}

pub fn bitcount(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    // Redis looks the key up before it reads the range, so a missing key answers 0 to any
    // arguments.
    let count = with_bytes(ctx, &args[1], |data| -> Result<u64, Error> {
        let Some(data) = data else { return Ok(0) };
        let range = match args.len() {
            2 => (!data.is_empty()).then(|| (0, data.len() as u64 * 8 - 1)),
            4 | 5 => {
                let (start, end) = (int_arg(&args[2])?, int_arg(&args[3])?);
                if start < 0 && end < 0 && start > end {
                    return Ok(0);
                }
                bit_range(start, end, unit_in_bits(args.get(4))?, data.len())
            }
            _ => return Err(SYNTAX.into()),
        };
        Ok(range.map_or(0, |(first, last)| count_range(data, first, last)))
    })??;
    ctx.reply.int(count as i64);
    Ok(())
}

pub fn bitpos(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let bit = match crate::util::parse_i64(&args[2]) {
        Some(0) => false,
        Some(1) => true,
        Some(_) => return Err("ERR The bit argument must be 1 or 0.".into()),
        None => return Err(NOT_INTEGER.into()),
    };
    let pos = with_bytes(ctx, &args[1], |data| -> Result<i64, Error> {
        // A missing key is an endless run of zeros.
        let Some(data) = data else {
            return Ok(if bit { -1 } else { 0 });
        };
        let (range, end_given) = match args.len() {
            3 => (bit_range(0, -1, false, data.len()), false),
            4..=6 => {
                let start = int_arg(&args[3])?;
                let in_bits = unit_in_bits(args.get(5))?;
                let end = args.get(4).map(|a| int_arg(a)).transpose()?;
                (
                    bit_range(start, end.unwrap_or(-1), in_bits, data.len()),
                    end.is_some(),
                )
            }
            _ => return Err(SYNTAX.into()),
        };
        let Some((first, last)) = range else {
            return Ok(-1);
        };
        let found = first_bit_between(data, first, last, bit);
        Ok(match found {
            Some(pos) => pos as i64,
            // Looking for a zero with no end given, the string goes on with zeros.
            None if !bit && !end_given => last as i64 + 1,
            None => -1,
        })
    })??;
    ctx.reply.int(pos);
    Ok(())
}

/// The first bit equal to `bit` between bits `first` and `last` (inclusive) of `data`.
fn first_bit_between(data: &[u8], first: u64, last: u64, bit: bool) -> Option<u64> {
    let (first_byte, last_byte) = ((first >> 3) as usize, (last >> 3) as usize);
    let base = first_byte as u64 * 8;
    let lead = first - base;
    // The first byte with the bits before `first` made to differ from `bit`, then the rest.
    let head = data[first_byte];
    let mask = (0xffu16 << (8 - lead)) as u8;
    let head = if bit { head & !mask } else { head | mask };
    let found = first_bit(&[head], bit)
        .or_else(|| first_bit(&data[first_byte + 1..=last_byte], bit).map(|p| p + 8))?;
    let pos = base + found;
    (pos <= last).then_some(pos)
}

#[derive(Clone, Copy, PartialEq)]
enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

/// Combines `src` into `acc` a word at a time; `acc` is at least as long as `src`, and its
/// bytes past `src` are left to the caller. One copy of the loop per operation, each inlined
/// and vectorised by the compiler (through a function pointer it ran at half Redis's speed).
fn combine(op: BitOp, acc: &mut [u8], src: &[u8]) {
    match op {
        BitOp::And => combine_with(acc, src, |a, s| a & s),
        BitOp::Or => combine_with(acc, src, |a, s| a | s),
        BitOp::Xor => combine_with(acc, src, |a, s| a ^ s),
        BitOp::Not => combine_with(acc, src, |_, s| !s),
    }
}

#[inline(always)]
fn combine_with(acc: &mut [u8], src: &[u8], op: impl Fn(u64, u64) -> u64) {
    let acc = &mut acc[..src.len()];
    let mut acc_words = acc.chunks_exact_mut(8);
    let mut src_words = src.chunks_exact(8);
    for (a, s) in (&mut acc_words).zip(&mut src_words) {
        let word = op(
            u64::from_ne_bytes((&*a).try_into().expect("8 bytes")),
            u64::from_ne_bytes(s.try_into().expect("8 bytes")),
        );
        a.copy_from_slice(&word.to_ne_bytes());
    }
    for (a, s) in acc_words
        .into_remainder()
        .iter_mut()
        .zip(src_words.remainder())
    {
        *a = op(*a as u64, *s as u64) as u8;
    }
}

pub fn bitop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let ops = [
        ("and", BitOp::And),
        ("or", BitOp::Or),
        ("xor", BitOp::Xor),
        ("not", BitOp::Not),
    ];
    let op = ops
        .iter()
        .find(|(name, _)| eq_ignore_case(&args[1], name))
        .ok_or(Error::from(SYNTAX))?
        .1;
    if op == BitOp::Not && args.len() != 4 {
        return Err("ERR BITOP NOT must be called with a single source key.".into());
    }
    let db = ctx.db();
    let sources = &args[3..];
    // A first pass for the type check and the result's length, a second that combines each
    // source straight from the keyspace (its shard locked one at a time) without a copy.
    let mut lengths = Vec::with_capacity(sources.len());
    for key in sources {
        lengths.push(with_bytes(ctx, key, |data| data.map_or(0, <[u8]>::len))?);
    }
    let longest = lengths.iter().copied().max().unwrap_or(0);
    let mut result = Vec::with_capacity(longest);
    for (i, key) in sources.iter().enumerate() {
        with_bytes(ctx, key, |data| {
            let data = data.unwrap_or_default();
            match (i, op) {
                // NOT has one source, as long as the result.
                (0, BitOp::Not) => {
                    result.resize(longest, 0);
                    combine(op, &mut result, data);
                }
                (0, _) => {
                    result.extend_from_slice(data);
                    result.resize(longest, 0);
                }
                _ => combine(op, &mut result, data),
            }
        })?;
        // Shorter sources are zero-padded: AND clears the rest.
        if i > 0 && op == BitOp::And {
            result[lengths[i]..].fill(0);
        }
    }
    let dst = &args[2];
    let mut locked = db.lock(dst);
    if longest == 0 {
        if locked.remove(dst).is_some() {
            ctx.modified(dst, Class::Generic, "del");
        }
    } else {
        locked.set(dst, Value::Str(Str::Raw(Box::new(result))));
        ctx.modified(dst, Class::String, "set");
    }
    ctx.reply.int(longest as i64);
    Ok(())
}

/// A BITFIELD integer type: `i1`..`i64` or `u1`..`u63`.
#[derive(Clone, Copy)]
struct FieldType {
    signed: bool,
    bits: u32,
}

impl FieldType {
    fn parse(arg: &[u8]) -> Result<FieldType, Error> {
        let signed = match arg.first() {
            Some(b'i') => true,
            Some(b'u') => false,
            _ => return Err(BAD_TYPE.into()),
        };
        let max = if signed { 64 } else { 63 };
        match crate::util::parse_i64(&arg[1..]) {
            Some(bits) if (1..=max).contains(&bits) => Ok(FieldType {
                signed,
                bits: bits as u32,
            }),
            _ => Err(BAD_TYPE.into()),
        }
    }

    fn max(self) -> i128 {
        if self.signed {
            (1i128 << (self.bits - 1)) - 1
        } else {
            (1i128 << self.bits) - 1
        }
    }

    fn min(self) -> i128 {
        if self.signed {
            -(1i128 << (self.bits - 1))
        } else {
            0
        }
    }

    /// The field's bits read as this type.
    fn decode(self, raw: u64) -> i64 {
        if self.signed && self.bits < 64 {
            let shift = 64 - self.bits;
            ((raw << shift) as i64) >> shift
        } else {
            raw as i64
        }
    }

    /// `value` brought into range under `overflow`; None to refuse (FAIL).
    fn fit(self, value: i128, overflow: Overflow) -> Option<i128> {
        if (self.min()..=self.max()).contains(&value) {
            return Some(value);
        }
        match overflow {
            Overflow::Fail => None,
            Overflow::Sat => Some(value.clamp(self.min(), self.max())),
            Overflow::Wrap => Some(self.decode(value as u64 & mask(self.bits)) as i128),
        }
    }
}

fn mask(bits: u32) -> u64 {
    if bits == 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

/// The `bits` bits at bit `offset` of `data`, which reads as zeros past its end.
fn read_field(data: &[u8], offset: u64, bits: u32) -> u64 {
    let byte = (offset >> 3) as usize;
    let mut window = [0u8; 16];
    if byte < data.len() {
        let avail = (data.len() - byte).min(9);
        window[..avail].copy_from_slice(&data[byte..byte + avail]);
    }
    let w = u128::from_be_bytes(window) << (offset & 7);
    (w >> (128 - bits)) as u64
}

/// Writes the low `bits` bits of `value` at bit `offset`; `data` holds every byte touched.
fn write_field(data: &mut [u8], offset: u64, bits: u32, value: u64) {
    let byte = (offset >> 3) as usize;
    let span = ((offset & 7) as usize + bits as usize).div_ceil(8);
    let mut window = [0u8; 16];
    window[..span].copy_from_slice(&data[byte..byte + span]);
    let shift = 128 - bits - (offset & 7) as u32;
    let field = (mask(bits) as u128) << shift;
    let w = (u128::from_be_bytes(window) & !field) | ((value as u128) << shift & field);
    data[byte..byte + span].copy_from_slice(&w.to_be_bytes()[..span]);
}

#[derive(Clone, Copy, PartialEq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

enum FieldOp {
    Get,
    Set(i64),
    IncrBy(i64),
}

struct Field {
    op: FieldOp,
    ty: FieldType,
    offset: u64,
    overflow: Overflow,
}

fn parse_fields(ctx: &Ctx, args: &[Bytes]) -> Result<Vec<Field>, Error> {
    let mut fields = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut i = 2;
    while i < args.len() {
        let remaining = args.len() - i - 1;
        let sub = &args[i];
        let takes_value = if eq_ignore_case(sub, "get") && remaining >= 2 {
            false
        } else if (eq_ignore_case(sub, "set") || eq_ignore_case(sub, "incrby")) && remaining >= 3 {
            true
        } else if eq_ignore_case(sub, "overflow") && remaining >= 1 {
            let kind = &args[i + 1];
            overflow = if eq_ignore_case(kind, "wrap") {
                Overflow::Wrap
            } else if eq_ignore_case(kind, "sat") {
                Overflow::Sat
            } else if eq_ignore_case(kind, "fail") {
                Overflow::Fail
            } else {
                return Err("ERR Invalid OVERFLOW type specified".into());
            };
            i += 2;
            continue;
        } else {
            return Err(SYNTAX.into());
        };
        let ty = FieldType::parse(&args[i + 1])?;
        let offset = bit_offset(ctx, &args[i + 2], Some(ty.bits as u64))?;
        let op = if !takes_value {
            FieldOp::Get
        } else {
            let value = int_arg(&args[i + 3])?;
            if eq_ignore_case(sub, "set") {
                FieldOp::Set(value)
            } else {
                FieldOp::IncrBy(value)
            }
        };
        fields.push(Field {
            op,
            ty,
            offset,
            overflow,
        });
        i += if takes_value { 4 } else { 3 };
    }
    Ok(fields)
}

/// BITFIELD's key flags, which depend on its subcommands (Redis's `bitfieldGetKeys`): read
/// only when every one up to the first write or bad word is a GET.
pub fn bitfield_keys(args: &[Bytes]) -> Vec<(usize, super::KeyFlags)> {
    let mut read_only = true;
    let mut i = 2;
    while i < args.len() {
        let remaining = args.len() - i - 1;
        let sub = &args[i];
        if eq_ignore_case(sub, "get") && remaining >= 2 {
            i += 3;
        } else if eq_ignore_case(sub, "overflow") && remaining >= 1 {
            i += 2;
        } else {
            // SET, INCRBY, or a syntax error: safer counted as a write, as Redis does.
            read_only = false;
            break;
        }
    }
    let flags: &[&str] = if read_only {
        &["RO", "ACCESS"]
    } else {
        &["RW", "ACCESS", "UPDATE"]
    };
    vec![(1, super::KeyFlags::Fixed(flags))]
}

pub fn bitfield(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    bitfield_generic(ctx, args, false)
}

pub fn bitfield_ro(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    bitfield_generic(ctx, args, true)
}

fn bitfield_generic(ctx: &mut Ctx, args: &[Bytes], read_only: bool) -> CmdResult {
    let fields = parse_fields(ctx, args)?;
    let last_written = fields
        .iter()
        .filter(|f| !matches!(f.op, FieldOp::Get))
        .map(|f| f.offset + f.ty.bits as u64 - 1)
        .max();
    let key = &args[1];
    let Some(last_written) = last_written else {
        let values = with_bytes(ctx, key, |data| {
            let data = data.unwrap_or_default();
            fields
                .iter()
                .map(|f| f.ty.decode(read_field(data, f.offset, f.ty.bits)))
                .collect::<Vec<_>>()
        })?;
        ctx.reply.array(values.len());
        for value in values {
            ctx.reply.int(value);
        }
        return Ok(());
    };
    if read_only {
        return Err("ERR BITFIELD_RO only supports the GET subcommand".into());
    }
    let db = ctx.db();
    let mut locked = db.lock(key);
    let (data, grown) = bits_for_write(&mut locked, key, last_written)?;
    let mut changed = false;
    let mut replies = Vec::with_capacity(fields.len());
    for f in &fields {
        let (ty, offset) = (f.ty, f.offset);
        let old = ty.decode(read_field(data, offset, ty.bits)) as i128;
        let (new, reply_new) = match f.op {
            FieldOp::Get => {
                replies.push(Some(old as i64));
                continue;
            }
            // Redis reads an unsigned field's new value as unsigned: -1 is 2^64-1.
            FieldOp::Set(value) if !ty.signed => (ty.fit(value as u64 as i128, f.overflow), false),
            FieldOp::Set(value) => (ty.fit(value as i128, f.overflow), false),
            FieldOp::IncrBy(by) => (ty.fit(old + by as i128, f.overflow), true),
        };
        let Some(new) = new else {
            replies.push(None);
            continue;
        };
        write_field(data, offset, ty.bits, new as u64);
        changed |= grown || new != old;
        replies.push(Some(if reply_new { new } else { old } as i64));
    }
    drop(locked);
    if changed {
        ctx.modified(key, Class::String, "setbit");
    }
    ctx.reply.array(replies.len());
    for reply in replies {
        match reply {
            Some(n) => ctx.reply.int(n),
            None => ctx.reply.null(),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_and_write_across_bytes() {
        let mut data = vec![0u8; 10];
        write_field(&mut data, 5, 64, 0xdead_beef_0123_4567);
        assert_eq!(read_field(&data, 5, 64), 0xdead_beef_0123_4567);
        write_field(&mut data, 3, 4, 0b1011);
        assert_eq!(read_field(&data, 3, 4), 0b1011);
        assert_eq!(read_field(&[0xff], 4, 8), 0xf0);
    }

    #[test]
    fn counts_and_positions_match_a_bit_by_bit_walk() {
        let data: Vec<u8> = (0..77u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let bit_at = |i: u64| (data[(i >> 3) as usize] >> (7 - (i & 7))) & 1 == 1;
        let total = data.len() as u64 * 8;
        for first in (0..total).step_by(7) {
            for last in (first..total).step_by(13) {
                let ones = (first..=last).filter(|&i| bit_at(i)).count() as u64;
                assert_eq!(count_range(&data, first, last), ones);
                for bit in [false, true] {
                    let pos = (first..=last).find(|&i| bit_at(i) == bit);
                    assert_eq!(first_bit_between(&data, first, last, bit), pos);
                }
            }
        }
    }
}
