//! String commands (Redis's t_string.c); the bit commands are in `bitmaps.rs`.

use bytes::Bytes;

use super::{
    CmdResult, Ctx, Error, NOT_FLOAT, NOT_INTEGER, OVERFLOW, SYNTAX, WRONGTYPE, int_arg, typed_mut,
};
use crate::config;
use crate::store::{Class, Locked, Str, Value};
use crate::util::{eq_ignore_case, format_human_double, parse_f64};

const TOO_BIG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

/// The string at `key`, or WRONGTYPE if the key holds another type.
pub fn string_mut<'a>(locked: &'a mut Locked, key: &[u8]) -> Result<Option<&'a mut Str>, Error> {
    typed_mut(locked, key, Value::as_str_mut)
}

fn reply_str(ctx: &mut Ctx, s: Option<&Str>) {
    match s {
        Some(s) => ctx.reply.bulk(s.bytes(&mut itoa::Buffer::new())),
        None => ctx.reply.null(),
    }
}

/// Counts a read as a hit or miss for INFO keyspace_hits/misses.
fn count_lookup(ctx: &Ctx, key: &[u8], found: bool) {
    if !found {
        let notifier = &ctx.server.store.notifier;
        notifier.notify(ctx.client.db, key, Class::KeyMiss, "keymiss");
    }
    let counter = if found {
        &ctx.server.stats.keyspace_hits
    } else {
        &ctx.server.stats.keyspace_misses
    };
    counter.add(1);
}

pub fn get(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let value = string_mut(&mut locked, &args[1])?;
    count_lookup(ctx, &args[1], value.is_some());
    reply_str(ctx, value.as_deref());
    Ok(())
}

/// The expiry options shared by SET and GETEX.
#[derive(Default, PartialEq)]
enum Expiry {
    #[default]
    None,
    /// Relative or absolute time as given, with its unit and whether it is absolute.
    At {
        arg: Bytes,
        millis: bool,
        absolute: bool,
    },
    KeepTtl,
    Persist,
}

impl Expiry {
    /// The absolute expiry in Unix milliseconds this option asks for, if any.
    fn deadline(&self, ctx: &Ctx, now: u64) -> Result<Option<i64>, Error> {
        match self {
            Expiry::At {
                arg,
                millis,
                absolute,
            } => expire_millis(ctx, arg, *millis, *absolute, now).map(Some),
            _ => Ok(None),
        }
    }
}

struct SetOptions {
    nx: bool,
    xx: bool,
    get: bool,
    expiry: Expiry,
}

/// Redis's `parseExtendedStringArgumentsOrReply`.
fn parse_set_options(args: &[Bytes], for_set: bool) -> Result<SetOptions, Error> {
    let mut o = SetOptions {
        nx: false,
        xx: false,
        get: false,
        expiry: Expiry::None,
    };
    let mut i = if for_set { 3 } else { 2 };
    while i < args.len() {
        let opt = &args[i];
        let next = args.get(i + 1);
        let no_expiry = o.expiry == Expiry::None;
        if for_set && eq_ignore_case(opt, "nx") && !o.xx {
            o.nx = true;
        } else if for_set && eq_ignore_case(opt, "xx") && !o.nx {
            o.xx = true;
        } else if for_set && eq_ignore_case(opt, "get") {
            o.get = true;
        } else if for_set && eq_ignore_case(opt, "keepttl") && no_expiry {
            o.expiry = Expiry::KeepTtl;
        } else if !for_set && eq_ignore_case(opt, "persist") && no_expiry {
            o.expiry = Expiry::Persist;
        } else if let (Some((millis, absolute)), Some(next), true) =
            (time_option(opt), next, no_expiry)
        {
            o.expiry = Expiry::At {
                arg: next.clone(),
                millis,
                absolute,
            };
            i += 1;
        } else {
            return Err(SYNTAX.into());
        }
        i += 1;
    }
    Ok(o)
}

fn time_option(opt: &[u8]) -> Option<(bool, bool)> {
    ["ex", "px", "exat", "pxat"]
        .iter()
        .position(|name| eq_ignore_case(opt, name))
        .map(|i| (i % 2 == 1, i >= 2))
}

/// Redis's `getExpireMillisecondsOrReply`: the absolute expiry in Unix milliseconds.
fn expire_millis(
    ctx: &Ctx,
    arg: &[u8],
    millis: bool,
    absolute: bool,
    now: u64,
) -> Result<i64, Error> {
    let mut value = int_arg(arg)?;
    let invalid = || {
        Error::from(format!(
            "ERR invalid expire time in '{}' command",
            ctx.name()
        ))
    };
    if value <= 0 || (!millis && value > i64::MAX / 1000) {
        return Err(invalid());
    }
    if !millis {
        value *= 1000;
    }
    if !absolute {
        value = value.checked_add(now as i64).ok_or_else(invalid)?;
    }
    Ok(value)
}

/// Redis's `setGetKeys`: SET only reads its key with GET.
pub fn set_keys(args: &[Bytes]) -> Vec<(usize, super::KeyFlags)> {
    let reads = args.iter().skip(3).any(|a| eq_ignore_case(a, "get"));
    let flags: &[&str] = if reads {
        &["RW", "ACCESS", "UPDATE"]
    } else {
        &["OW", "UPDATE"]
    };
    vec![(1, super::KeyFlags::Fixed(flags))]
}

pub fn set(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let options = parse_set_options(args, true)?;
    set_generic(ctx, &args[1], &args[2], &options, SetReply::Ok)
}

#[derive(PartialEq)]
enum SetReply {
    /// +OK, or a null when NX/XX stopped the write.
    Ok,
    /// :1 or :0 (SETNX).
    Int,
}

fn set_generic(
    ctx: &mut Ctx,
    key: &[u8],
    value: &[u8],
    o: &SetOptions,
    style: SetReply,
) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(key);
    let expire_at = o.expiry.deadline(ctx, locked.now)?;
    let found = locked.find(key);
    if o.get {
        match found {
            Some(place) => {
                let old = locked.entry_at(place).value.as_str_mut();
                let old = old.ok_or(Error::from(WRONGTYPE))?;
                ctx.reply.bulk(old.bytes(&mut itoa::Buffer::new()));
            }
            None => ctx.reply.null(),
        }
    }
    if (o.nx && found.is_some()) || (o.xx && found.is_none()) {
        if !o.get {
            match style {
                SetReply::Ok => ctx.reply.null(),
                SetReply::Int => ctx.reply.int(0),
            }
        }
        return Ok(());
    }
    let old_expiry = match found {
        Some(place) if o.expiry == Expiry::KeepTtl => locked.entry_at(place).expire_at(),
        _ => None,
    };
    match expire_at {
        Some(at) if at <= locked.now as i64 => {
            // An expiry already in the past (EXAT/PXAT): the key is set and gone at once.
            locked.remove(key);
        }
        Some(at) => locked.store(found, key, Value::string(value), Some(at as u64)),
        None => locked.store(found, key, Value::string(value), old_expiry),
    }
    drop(locked);
    ctx.modified(key, Class::String, "set");
    if expire_at.is_some() {
        ctx.modified(key, Class::Generic, "expire");
    }
    if !o.get {
        match style {
            SetReply::Ok => ctx.reply.ok(),
            SetReply::Int => ctx.reply.int(1),
        }
    }
    Ok(())
}

pub fn setnx(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let options = SetOptions {
        nx: true,
        xx: false,
        get: false,
        expiry: Expiry::None,
    };
    set_generic(ctx, &args[1], &args[2], &options, SetReply::Int)
}

fn set_with_relative_expiry(ctx: &mut Ctx, args: &[Bytes], millis: bool) -> CmdResult {
    let expiry = Expiry::At {
        arg: args[2].clone(),
        millis,
        absolute: false,
    };
    let options = SetOptions {
        nx: false,
        xx: false,
        get: false,
        expiry,
    };
    set_generic(ctx, &args[1], &args[3], &options, SetReply::Ok)
}

pub fn setex(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    set_with_relative_expiry(ctx, args, false)
}

pub fn psetex(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    set_with_relative_expiry(ctx, args, true)
}

pub fn getex(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let options = parse_set_options(args, false)?;
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let Some(value) = string_mut(&mut locked, key)? else {
        ctx.reply.null();
        return Ok(());
    };
    let value = value.bytes(&mut itoa::Buffer::new()).to_vec();
    let expire_at = options.expiry.deadline(ctx, locked.now)?;
    ctx.reply.bulk(&value);
    match (expire_at, &options.expiry) {
        (Some(at), _) if at <= locked.now as i64 => {
            locked.remove(key);
            drop(locked);
            ctx.modified(key, Class::Generic, "del");
        }
        (Some(at), _) => {
            locked.set_expire(key, Some(at as u64));
            drop(locked);
            ctx.modified(key, Class::Generic, "expire");
        }
        (None, Expiry::Persist) => {
            let had_ttl = locked.get(key).and_then(|e| e.expire_at()).is_some();
            if had_ttl {
                locked.set_expire(key, None);
                drop(locked);
                ctx.modified(key, Class::Generic, "persist");
            }
        }
        _ => {}
    }
    Ok(())
}

pub fn getdel(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let Some(value) = string_mut(&mut locked, key)? else {
        ctx.reply.null();
        return Ok(());
    };
    ctx.reply.bulk(value.bytes(&mut itoa::Buffer::new()));
    locked.remove(key);
    drop(locked);
    ctx.modified(key, Class::Generic, "del");
    Ok(())
}

pub fn getset(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let old = string_mut(&mut locked, key)?;
    reply_str(ctx, old.as_deref());
    locked.set(key, Value::string(&args[2]));
    drop(locked);
    ctx.modified(key, Class::String, "set");
    Ok(())
}

pub fn mget(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    ctx.reply.array(args.len() - 1);
    let db = ctx.db();
    for batch in db.prefetched_chunks(&args[1..], 1) {
        for key in batch {
            let mut locked = db.lock(key);
            match locked.get(key).and_then(|e| e.value.as_str_mut()) {
                Some(s) => ctx.reply.bulk(s.bytes(&mut itoa::Buffer::new())),
                None => ctx.reply.null(),
            }
        }
    }
    Ok(())
}

fn mset_generic(ctx: &mut Ctx, args: &[Bytes], nx: bool) -> CmdResult {
    if args.len().is_multiple_of(2) {
        return Err(format!("ERR wrong number of arguments for '{}' command", ctx.name()).into());
    }
    let db = ctx.db();
    if nx
        && args[1..]
            .chunks(2)
            .any(|pair| db.lock(&pair[0]).contains(&pair[0]))
    {
        ctx.reply.int(0);
        return Ok(());
    }
    for batch in db.prefetched_chunks(&args[1..], 2) {
        for pair in batch.chunks(2) {
            db.lock(&pair[0]).set(&pair[0], Value::string(&pair[1]));
            ctx.modified(&pair[0], Class::String, "set");
        }
    }
    if nx {
        ctx.reply.int(1)
    } else {
        ctx.reply.ok()
    }
    Ok(())
}

pub fn mset(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    mset_generic(ctx, args, false)
}

pub fn msetnx(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    mset_generic(ctx, args, true)
}

fn incr_by(ctx: &mut Ctx, key: &[u8], increment: i64) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(key);
    let result = match string_mut(&mut locked, key)? {
        Some(s) => {
            let current = s.as_int().ok_or(Error::from(NOT_INTEGER))?;
            let value = current
                .checked_add(increment)
                .ok_or(Error::from(OVERFLOW))?;
            *s = Str::Int(value);
            value
        }
        None => {
            locked.insert_new(key, Value::Str(Str::Int(increment)));
            increment
        }
    };
    drop(locked);
    ctx.modified(key, Class::String, "incrby");
    ctx.reply.int(result);
    Ok(())
}

pub fn incr(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    incr_by(ctx, &args[1], 1)
}

pub fn decr(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    incr_by(ctx, &args[1], -1)
}

pub fn incrby(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let increment = int_arg(&args[2])?;
    incr_by(ctx, &args[1], increment)
}

pub fn decrby(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let decrement = int_arg(&args[2])?;
    if decrement == i64::MIN {
        return Err("ERR decrement would overflow".into());
    }
    incr_by(ctx, &args[1], -decrement)
}

pub fn incrbyfloat(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let current = match string_mut(&mut locked, key)? {
        Some(s) => parse_f64(s.bytes(&mut itoa::Buffer::new())).ok_or(Error::from(NOT_FLOAT))?,
        None => 0.0,
    };
    let increment = parse_f64(&args[2]).ok_or(Error::from(NOT_FLOAT))?;
    let value = current + increment;
    if !value.is_finite() {
        return Err("ERR increment would produce NaN or Infinity".into());
    }
    let text = format_human_double(value);
    let expire = locked.get(key).and_then(|e| e.expire_at());
    locked.set_with_expire(key, Value::string(text.as_bytes()), expire);
    drop(locked);
    ctx.modified(key, Class::String, "incrbyfloat");
    ctx.reply.bulk(text.as_bytes());
    Ok(())
}

/// Redis's `checkStringLength`: a string may not grow past proto-max-bulk-len.
fn check_length(ctx: &Ctx, size: usize, append: usize) -> CmdResult {
    let max = ctx.server.config.int(config::PROTO_MAX_BULK_LEN) as u64;
    if size as u64 + append as u64 > max {
        Err(TOO_BIG.into())
    } else {
        Ok(())
    }
}

pub fn append(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let len = match string_mut(&mut locked, key)? {
        Some(s) => {
            check_length(ctx, s.len(), args[2].len())?;
            let raw = s.make_raw();
            raw.extend_from_slice(&args[2]);
            raw.len()
        }
        None => {
            locked.insert_new(key, Value::string(&args[2]));
            args[2].len()
        }
    };
    drop(locked);
    ctx.modified(key, Class::String, "append");
    ctx.reply.int(len as i64);
    Ok(())
}

pub fn strlen(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let len = string_mut(&mut locked, &args[1])?.map_or(0, |s| s.len());
    ctx.reply.int(len as i64);
    Ok(())
}

pub fn setrange(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let offset = int_arg(&args[2])?;
    if offset < 0 {
        return Err("ERR offset is out of range".into());
    }
    let offset = offset as usize;
    let value = &args[3];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let len = match string_mut(&mut locked, key)? {
        None if value.is_empty() => 0,
        None => {
            check_length(ctx, offset, value.len())?;
            let mut data = vec![0u8; offset + value.len()];
            data[offset..].copy_from_slice(value);
            locked.insert_new(key, Value::Str(Str::Raw(Box::new(data))));
            offset + value.len()
        }
        Some(s) if value.is_empty() => s.len(),
        Some(s) => {
            check_length(ctx, offset, value.len())?;
            let raw = s.make_raw();
            if raw.len() < offset + value.len() {
                raw.resize(offset + value.len(), 0);
            }
            raw[offset..offset + value.len()].copy_from_slice(value);
            raw.len()
        }
    };
    drop(locked);
    if !value.is_empty() {
        ctx.modified(key, Class::String, "setrange");
    }
    ctx.reply.int(len as i64);
    Ok(())
}

pub fn getrange(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let mut start = int_arg(&args[2])?;
    let mut end = int_arg(&args[3])?;
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let Some(s) = string_mut(&mut locked, &args[1])? else {
        ctx.reply.bulk(b"");
        return Ok(());
    };
    let mut scratch = itoa::Buffer::new();
    let data = s.bytes(&mut scratch);
    let len = data.len() as i64;
    if start < 0 && end < 0 && start > end {
        ctx.reply.bulk(b"");
        return Ok(());
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        ctx.reply.bulk(b"");
    } else {
        ctx.reply.bulk(&data[start as usize..=end as usize]);
    }
    Ok(())
}

pub fn lcs(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let fetch = |key: &[u8]| -> Result<Vec<u8>, Error> {
        let mut locked = db.lock(key);
        match locked.get(key) {
            None => Ok(Vec::new()),
            Some(entry) => entry
                .value
                .as_str_mut()
                .map(|s| s.bytes(&mut itoa::Buffer::new()).to_vec())
                .ok_or(Error::from(
                    "ERR The specified keys must contain string values",
                )),
        }
    };
    let (a, b) = (fetch(&args[1]), fetch(&args[2]));
    let (a, b) = (a?, b?);
    let (mut get_len, mut get_idx, mut with_match_len, mut min_match_len) =
        (false, false, false, 0i64);
    let mut i = 3;
    while i < args.len() {
        let opt = &args[i];
        if eq_ignore_case(opt, "idx") {
            get_idx = true;
        } else if eq_ignore_case(opt, "len") {
            get_len = true;
        } else if eq_ignore_case(opt, "withmatchlen") {
            with_match_len = true;
        } else if eq_ignore_case(opt, "minmatchlen") && i + 1 < args.len() {
            min_match_len = int_arg(&args[i + 1])?.max(0);
            i += 1;
        } else {
            return Err(SYNTAX.into());
        }
        i += 1;
    }
    if get_len && get_idx {
        return Err("ERR If you want both the length and indexes, please just use IDX.".into());
    }
    let (alen, blen) = (a.len(), b.len());
    let cells = (alen as u64 + 1) * (blen as u64 + 1);
    if cells * 4 > ctx.server.config.int(config::PROTO_MAX_BULK_LEN) as u64 {
        return Err(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len".into(),
        );
    }
    let width = blen + 1;
    let mut table = vec![0u32; cells as usize];
    for i in 1..=alen {
        for j in 1..=blen {
            table[i * width + j] = if a[i - 1] == b[j - 1] {
                table[(i - 1) * width + j - 1] + 1
            } else {
                table[(i - 1) * width + j].max(table[i * width + j - 1])
            };
        }
    }
    let lcs_len = table[alen * width + blen];
    if get_len {
        ctx.reply.int(lcs_len as i64);
        return Ok(());
    }
    // Walk back from the end, collecting the common string and the matching ranges.
    let mut result = vec![0u8; lcs_len as usize];
    let mut ranges = ctx.reply.sibling();
    let mut range_count = 0;
    let (mut i, mut j, mut idx) = (alen, blen, lcs_len as usize);
    let (mut a_start, mut a_end, mut b_start, mut b_end) = (alen, 0, 0, 0);
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            result[idx - 1] = a[i - 1];
            if a_start == alen {
                (a_start, a_end, b_start, b_end) = (i - 1, i - 1, j - 1, j - 1);
            } else if a_start == i && b_start == j {
                a_start -= 1;
                b_start -= 1;
            } else {
                emit = true;
            }
            if a_start == 0 || b_start == 0 {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            j -= 1;
        } else {
            if table[(i - 1) * width + j] > table[i * width + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            if a_start != alen {
                emit = true;
            }
        }
        let match_len = a_end - a_start + 1;
        if emit {
            if get_idx && (min_match_len == 0 || match_len as i64 >= min_match_len) {
                ranges.array(2 + with_match_len as usize);
                for (s, e) in [(a_start, a_end), (b_start, b_end)] {
                    ranges.array(2);
                    ranges.int(s as i64);
                    ranges.int(e as i64);
                }
                if with_match_len {
                    ranges.int(match_len as i64);
                }
                range_count += 1;
            }
            a_start = alen;
        }
    }
    if get_idx {
        ctx.reply.map(2);
        ctx.reply.bulk(b"matches");
        ctx.reply.array_of(range_count, ranges);
        ctx.reply.bulk(b"len");
        ctx.reply.int(lcs_len as i64);
    } else {
        ctx.reply.bulk(&result);
    }
    Ok(())
}
