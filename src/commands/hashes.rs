//! Hash commands (Redis's t_hash.c).

use bytes::Bytes;

use super::keys::ScanOptions;
use super::{CmdResult, Ctx, Error, NOT_FLOAT, OVERFLOW, int_arg, typed_mut, typed_or_new};
use crate::store::{Class, Hash, HashLimits, Locked, Value};
use crate::util::{Rng, format_human_double, parse_f64, parse_i64};

fn limits(ctx: &Ctx) -> HashLimits {
    HashLimits::from_config(&ctx.server.config)
}

/// The hash at `key`, or WRONGTYPE if the key holds another type.
fn hash_mut<'a>(locked: &'a mut Locked, key: &[u8]) -> Result<Option<&'a mut Hash>, Error> {
    typed_mut(locked, key, Value::as_hash_mut)
}

/// The hash at `key`, created empty if absent.
fn hash_or_new<'a>(locked: &'a mut Locked, key: &[u8]) -> Result<&'a mut Hash, Error> {
    typed_or_new(locked, key, Value::as_hash_mut, || {
        Value::Hash(Box::default())
    })
}

fn set_pairs(ctx: &mut Ctx, args: &[Bytes]) -> Result<usize, Error> {
    if !args.len().is_multiple_of(2) {
        return Err(format!("ERR wrong number of arguments for '{}' command", ctx.name()).into());
    }
    let limits = limits(ctx);
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let hash = hash_or_new(&mut locked, key)?;
    let added = args[2..]
        .chunks(2)
        .filter(|pair| hash.set(&pair[0], &pair[1], limits))
        .count();
    ctx.modified(key, Class::Hash, "hset");
    Ok(added)
}

pub fn hset(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let added = set_pairs(ctx, args)?;
    ctx.reply.int(added as i64);
    Ok(())
}

pub fn hmset(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    set_pairs(ctx, args)?;
    ctx.reply.ok();
    Ok(())
}

pub fn hsetnx(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let limits = limits(ctx);
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    if hash_mut(&mut locked, key)?.is_some_and(|h| h.get(&args[2]).is_some()) {
        ctx.reply.int(0);
        return Ok(());
    }
    hash_or_new(&mut locked, key)?.set(&args[2], &args[3], limits);
    ctx.modified(key, Class::Hash, "hset");
    ctx.reply.int(1);
    Ok(())
}

pub fn hget(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    match hash_mut(&mut locked, &args[1])?.and_then(|h| h.get(&args[2])) {
        Some(value) => ctx.reply.bulk(value),
        None => ctx.reply.null(),
    }
    Ok(())
}

pub fn hmget(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let hash = hash_mut(&mut locked, &args[1])?;
    ctx.reply.array(args.len() - 2);
    for field in &args[2..] {
        match hash.as_ref().and_then(|h| h.get(field)) {
            Some(value) => ctx.reply.bulk(value),
            None => ctx.reply.null(),
        }
    }
    Ok(())
}

pub fn hdel(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let Some(hash) = hash_mut(&mut locked, key)? else {
        ctx.reply.int(0);
        return Ok(());
    };
    let removed = args[2..].iter().filter(|f| hash.remove(f)).count();
    let empty = hash.is_empty();
    if removed > 0 {
        ctx.modified(key, Class::Hash, "hdel");
        if empty {
            locked.remove(key);
            ctx.modified(key, Class::Generic, "del");
        }
    }
    ctx.reply.int(removed as i64);
    Ok(())
}

/// Replies with a number computed from the hash at `args[1]` (0 when absent).
fn count(ctx: &mut Ctx, args: &[Bytes], measure: impl Fn(&Hash) -> usize) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let n = hash_mut(&mut locked, &args[1])?.map_or(0, |h| measure(h));
    ctx.reply.int(n as i64);
    Ok(())
}

pub fn hlen(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    count(ctx, args, Hash::len)
}

pub fn hstrlen(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    count(ctx, args, |h| h.get(&args[2]).map_or(0, <[u8]>::len))
}

pub fn hexists(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    count(ctx, args, |h| h.get(&args[2]).is_some() as usize)
}

/// HKEYS, HVALS, HGETALL: fields and/or values of the whole hash.
fn dump(ctx: &mut Ctx, args: &[Bytes], fields: bool, values: bool) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let hash = hash_mut(&mut locked, &args[1])?;
    let len = hash.as_ref().map_or(0, |h| h.len());
    if fields && values {
        ctx.reply.map(len);
    } else {
        ctx.reply.array(len);
    }
    for (field, value) in hash.iter().flat_map(|h| h.iter()) {
        if fields {
            ctx.reply.bulk(field);
        }
        if values {
            ctx.reply.bulk(value);
        }
    }
    Ok(())
}

pub fn hkeys(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    dump(ctx, args, true, false)
}

pub fn hvals(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    dump(ctx, args, false, true)
}

pub fn hgetall(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    dump(ctx, args, true, true)
}

/// Replaces the value of `field` by `update(old)`, creating hash and field as needed.
fn update_field(
    ctx: &mut Ctx,
    args: &[Bytes],
    event: &str,
    update: impl FnOnce(Option<&[u8]>) -> Result<Vec<u8>, Error>,
) -> Result<Vec<u8>, Error> {
    let limits = limits(ctx);
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let old = hash_mut(&mut locked, key)?.and_then(|h| h.get(&args[2]).map(<[u8]>::to_vec));
    let new = update(old.as_deref())?;
    hash_or_new(&mut locked, key)?.set(&args[2], &new, limits);
    ctx.modified(key, Class::Hash, event);
    Ok(new)
}

pub fn hincrby(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let increment = int_arg(&args[3])?;
    let new = update_field(ctx, args, "hincrby", |old| {
        let current = match old {
            Some(text) => parse_i64(text).ok_or(Error::from("ERR hash value is not an integer"))?,
            None => 0,
        };
        let sum = current
            .checked_add(increment)
            .ok_or(Error::from(OVERFLOW))?;
        Ok(itoa::Buffer::new().format(sum).as_bytes().to_vec())
    })?;
    ctx.reply.int(parse_i64(&new).expect("just formatted"));
    Ok(())
}

pub fn hincrbyfloat(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let increment = parse_f64(&args[3]).ok_or(Error::from(NOT_FLOAT))?;
    if !increment.is_finite() {
        return Err("ERR value is NaN or Infinity".into());
    }
    let new = update_field(ctx, args, "hincrbyfloat", |old| {
        let current = match old {
            Some(text) => parse_f64(text).ok_or(Error::from("ERR hash value is not a float"))?,
            None => 0.0,
        };
        let sum = current + increment;
        if !sum.is_finite() {
            return Err("ERR increment would produce NaN or Infinity".into());
        }
        Ok(format_human_double(sum).into_bytes())
    })?;
    ctx.reply.bulk(&new);
    Ok(())
}

pub fn hrandfield(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let with_values = match args.get(3) {
        None => false,
        Some(arg) if args.len() == 4 && crate::util::eq_ignore_case(arg, "withvalues") => true,
        Some(_) => return Err(super::SYNTAX.into()),
    };
    let count = args.get(2).map(|arg| int_arg(arg)).transpose()?;
    if let Some(n) = count
        && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&n)
    {
        return Err("ERR value is out of range".into());
    }
    // An empty bulk string, the shortest reply a pick can have, is 6 bytes.
    let cap = ctx.server.reply_items_cap(6);
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let hash = hash_mut(&mut locked, &args[1])?;
    let mut rng = Rng::new();
    let Some(count) = count else {
        match hash.and_then(|h| h.random(|| rng.next_u64())) {
            Some((field, _)) => ctx.reply.bulk(field),
            None => ctx.reply.null(),
        }
        return Ok(());
    };
    let Some(hash) = hash else {
        ctx.reply.array(0);
        return Ok(());
    };
    // A negative count may repeat fields; a positive one returns distinct fields.
    let picks: Vec<(&[u8], &[u8])> = if count < 0 {
        (0..count.unsigned_abs().min(cap))
            .filter_map(|_| hash.random(|| rng.next_u64()))
            .collect()
    } else {
        rng.sample(hash.iter().collect(), count as usize)
    };
    if with_values && ctx.reply.is_resp3() {
        ctx.reply.array(picks.len());
        for (field, value) in &picks {
            ctx.reply.array(2);
            ctx.reply.bulk(field);
            ctx.reply.bulk(value);
        }
    } else {
        ctx.reply
            .array(picks.len() * if with_values { 2 } else { 1 });
        for (field, value) in &picks {
            ctx.reply.bulk(field);
            if with_values {
                ctx.reply.bulk(value);
            }
        }
    }
    Ok(())
}

pub fn hscan(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let options = ScanOptions::parse(&args[2..], false)?;
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let (cursor, found) = match hash_mut(&mut locked, &args[1])? {
        Some(value) => options.gather(|cursor, found: &mut Vec<(Vec<u8>, Vec<u8>)>| {
            value.scan(cursor, |member, value| {
                if options.matches(member) {
                    found.push((member.to_vec(), value.to_vec()));
                }
            })
        }),
        None => (0, Vec::new()),
    };
    drop(locked);
    ctx.reply.array(2);
    ctx.reply
        .bulk(itoa::Buffer::new().format(cursor).as_bytes());
    ctx.reply.array(found.len() * 2);
    for (field, value) in &found {
        ctx.reply.bulk(field);
        ctx.reply.bulk(value);
    }
    Ok(())
}
