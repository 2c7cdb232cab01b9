//! Set commands (Redis's t_set.c).

use bytes::Bytes;

use super::keys::ScanOptions;
use super::{CmdResult, Ctx, Error, SYNTAX, int_arg, intercard_limit, typed_mut, typed_or_new};
use crate::config;
use crate::store::{Class, Locked, Set, Value};
use crate::util::Rng;

fn max_intset(ctx: &Ctx) -> usize {
    ctx.server.config.int(config::SET_MAX_INTSET_ENTRIES) as usize
}

fn set_mut<'a>(locked: &'a mut Locked, key: &[u8]) -> Result<Option<&'a mut Set>, Error> {
    typed_mut(locked, key, Value::as_set_mut)
}

fn set_or_new<'a>(locked: &'a mut Locked, key: &[u8]) -> Result<&'a mut Set, Error> {
    typed_or_new(
        locked,
        key,
        Value::as_set_mut,
        || Value::Set(Box::default()),
    )
}

/// Deletes `key` if its set became empty.
fn delete_if_empty(ctx: &Ctx, locked: &mut Locked, key: &[u8]) {
    if matches!(set_mut(locked, key), Ok(Some(set)) if set.is_empty()) {
        locked.remove(key);
        ctx.modified(key, Class::Generic, "del");
    }
}

fn reply_members(ctx: &mut Ctx, members: &[Vec<u8>]) {
    ctx.reply.set(members.len());
    for member in members {
        ctx.reply.bulk(member);
    }
}

pub fn sadd(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let max = max_intset(ctx);
    let db = ctx.db();
    let mut locked = db.lock(key);
    let set = set_or_new(&mut locked, key)?;
    let added = args[2..].iter().filter(|m| set.insert(m, max)).count();
    if added > 0 {
        ctx.modified(key, Class::Set, "sadd");
    }
    ctx.reply.int(added as i64);
    Ok(())
}

pub fn srem(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let Some(set) = set_mut(&mut locked, key)? else {
        ctx.reply.int(0);
        return Ok(());
    };
    let removed = args[2..].iter().filter(|m| set.remove(m)).count();
    if removed > 0 {
        ctx.modified(key, Class::Set, "srem");
        delete_if_empty(ctx, &mut locked, key);
    }
    ctx.reply.int(removed as i64);
    Ok(())
}

pub fn scard(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let len = set_mut(&mut locked, &args[1])?.map_or(0, |s| s.len());
    ctx.reply.int(len as i64);
    Ok(())
}

pub fn sismember(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let found = set_mut(&mut locked, &args[1])?.is_some_and(|s| s.contains(&args[2]));
    ctx.reply.int(found as i64);
    Ok(())
}

pub fn smismember(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let set = set_mut(&mut locked, &args[1])?;
    ctx.reply.array(args.len() - 2);
    for member in &args[2..] {
        let found = set.as_ref().is_some_and(|s| s.contains(member));
        ctx.reply.int(found as i64);
    }
    Ok(())
}

pub fn smembers(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let members = set_mut(&mut locked, &args[1])?.map_or_else(Vec::new, |s| s.members());
    reply_members(ctx, &members);
    Ok(())
}

pub fn srandmember(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if args.len() > 3 {
        return Err(SYNTAX.into());
    }
    let count = args.get(2).map(|a| int_arg(a)).transpose()?;
    if count == Some(i64::MIN) {
        return Err(
            "ERR value is out of range, value must between -9223372036854775807 and \
                    9223372036854775807"
                .into(),
        );
    }
    // An empty bulk string, the shortest reply a pick can have, is 6 bytes.
    let cap = ctx.server.reply_items_cap(6);
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let set = set_mut(&mut locked, &args[1])?;
    let mut rng = Rng::new();
    let Some(count) = count else {
        match set.and_then(|s| s.random(|| rng.next_u64())) {
            Some(member) => ctx.reply.bulk(&member),
            None => ctx.reply.null(),
        }
        return Ok(());
    };
    let Some(set) = set else {
        ctx.reply.array(0);
        return Ok(());
    };
    // A negative count may repeat members; a positive one returns distinct members.
    let picks: Vec<Vec<u8>> = if count < 0 {
        (0..count.unsigned_abs().min(cap))
            .filter_map(|_| set.random(|| rng.next_u64()))
            .collect()
    } else {
        sample(set, count as usize, &mut rng)
    };
    ctx.reply.array(picks.len());
    for member in &picks {
        ctx.reply.bulk(member);
    }
    Ok(())
}

/// Up to `count` distinct members of `set`, in random order. A few members of a big set are
/// drawn one by one; otherwise the whole set is shuffled, as Redis's SRANDMEMBER cases do.
fn sample(set: &Set, count: usize, rng: &mut Rng) -> Vec<Vec<u8>> {
    if count.saturating_mul(3) < set.len() {
        let mut picked = std::collections::HashSet::new();
        while picked.len() < count {
            picked.extend(set.random(|| rng.next_u64()));
        }
        return picked.into_iter().collect();
    }
    rng.sample(set.members(), count)
}

pub fn spop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if args.len() > 3 {
        return Err(SYNTAX.into());
    }
    let count = match args.get(2) {
        Some(arg) => Some(
            crate::util::parse_i64(arg)
                .filter(|n| *n >= 0)
                .ok_or(Error::from("ERR value is out of range, must be positive"))?
                as usize,
        ),
        None => None,
    };
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let Some(set) = set_mut(&mut locked, key)? else {
        match count {
            Some(_) => ctx.reply.set(0),
            None => ctx.reply.null(),
        }
        return Ok(());
    };
    let mut rng = Rng::new();
    let popped = sample(set, count.unwrap_or(1), &mut rng);
    for member in &popped {
        set.remove(member);
    }
    match count {
        Some(_) => reply_members(ctx, &popped),
        None => ctx.reply.bulk(&popped[0]),
    }
    if !popped.is_empty() {
        let mut logged = vec![Bytes::from_static(b"SREM"), key.clone()];
        logged.extend(popped.iter().map(|m| Bytes::copy_from_slice(m)));
        ctx.log_as(logged);
        ctx.modified(key, Class::Set, "spop");
        delete_if_empty(ctx, &mut locked, key);
    }
    Ok(())
}

pub fn smove(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (src, dst, member) = (&args[1], &args[2], &args[3]);
    let max = max_intset(ctx);
    let db = ctx.db();
    let src_present = set_mut(&mut db.lock(src), src)?.is_some();
    set_mut(&mut db.lock(dst), dst)?;
    if !src_present {
        ctx.reply.int(0);
        return Ok(());
    }
    // The command holds the gate exclusively when the keys differ, so these steps are atomic.
    if src == dst {
        let found = set_mut(&mut db.lock(src), src)?.is_some_and(|s| s.contains(member));
        ctx.reply.int(found as i64);
        return Ok(());
    }
    {
        let mut locked = db.lock(src);
        let set = set_mut(&mut locked, src)?.expect("checked above");
        if !set.remove(member) {
            ctx.reply.int(0);
            return Ok(());
        }
        ctx.modified(src, Class::Set, "srem");
        delete_if_empty(ctx, &mut locked, src);
    }
    let mut locked = db.lock(dst);
    if set_or_new(&mut locked, dst)?.insert(member, max) {
        ctx.modified(dst, Class::Set, "sadd");
    }
    ctx.reply.int(1);
    Ok(())
}

/// The sets at `keys` (None for a missing key), or WRONGTYPE.
fn load_sets(ctx: &Ctx, keys: &[Bytes]) -> Result<Vec<Option<Set>>, Error> {
    let db = ctx.db();
    keys.iter()
        .map(|key| Ok(set_mut(&mut db.lock(key), key)?.map(|s| s.clone())))
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Algebra {
    Inter,
    Union,
    Diff,
}

/// Members of the intersection, union or difference of the sets at `keys`.
fn combine(ctx: &Ctx, keys: &[Bytes], op: Algebra, limit: usize) -> Result<Vec<Vec<u8>>, Error> {
    let sets = load_sets(ctx, keys)?;
    let mut out = Vec::new();
    match op {
        Algebra::Inter => {
            if sets.iter().any(Option::is_none) {
                return Ok(out);
            }
            let mut sets: Vec<Set> = sets.into_iter().flatten().collect();
            sets.sort_by_key(Set::len);
            for member in sets[0].members() {
                if sets[1..].iter().all(|s| s.contains(&member)) {
                    out.push(member);
                    if limit != 0 && out.len() == limit {
                        break;
                    }
                }
            }
        }
        Algebra::Union => {
            let mut seen = Set::Table(Default::default());
            for set in sets.iter().flatten() {
                for member in set.members() {
                    if seen.insert(&member, 0) {
                        out.push(member);
                    }
                }
            }
        }
        Algebra::Diff => {
            if let Some(Some(first)) = sets.first() {
                for member in first.members() {
                    if !sets[1..].iter().flatten().any(|s| s.contains(&member)) {
                        out.push(member);
                    }
                }
            }
        }
    }
    Ok(out)
}

fn algebra(ctx: &mut Ctx, args: &[Bytes], op: Algebra) -> CmdResult {
    let members = combine(ctx, &args[1..], op, 0)?;
    reply_members(ctx, &members);
    Ok(())
}

fn algebra_store(ctx: &mut Ctx, args: &[Bytes], op: Algebra, event: &str) -> CmdResult {
    let members = combine(ctx, &args[2..], op, 0)?;
    let dst = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(dst);
    if members.is_empty() {
        if locked.remove(dst).is_some() {
            ctx.modified(dst, Class::Generic, "del");
        }
    } else {
        let set = Set::of(members.iter().map(|m| &m[..]), max_intset(ctx));
        locked.set(dst, Value::Set(Box::new(set)));
        ctx.modified(dst, Class::Set, event);
    }
    ctx.reply.int(members.len() as i64);
    Ok(())
}

pub fn sinter(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    algebra(ctx, args, Algebra::Inter)
}

pub fn sunion(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    algebra(ctx, args, Algebra::Union)
}

pub fn sdiff(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    algebra(ctx, args, Algebra::Diff)
}

pub fn sinterstore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    algebra_store(ctx, args, Algebra::Inter, "sinterstore")
}

pub fn sunionstore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    algebra_store(ctx, args, Algebra::Union, "sunionstore")
}

pub fn sdiffstore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    algebra_store(ctx, args, Algebra::Diff, "sdiffstore")
}

pub fn sintercard(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let numkeys = crate::util::parse_i64(&args[1])
        .filter(|n| *n >= 1)
        .ok_or(Error::from("ERR numkeys should be greater than 0"))? as usize;
    if numkeys > args.len() - 2 {
        return Err("ERR Number of keys can't be greater than number of args".into());
    }
    let limit = intercard_limit(&args[2 + numkeys..])?;
    let members = combine(ctx, &args[2..2 + numkeys], Algebra::Inter, limit)?;
    ctx.reply.int(members.len() as i64);
    Ok(())
}

pub fn sscan(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let options = ScanOptions::parse(&args[2..], false)?;
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let (cursor, found) = match set_mut(&mut locked, &args[1])? {
        Some(value) => options.gather(|cursor, found: &mut Vec<Vec<u8>>| {
            value.scan(cursor, |member| {
                if options.matches(member) {
                    found.push(member.to_vec());
                }
            })
        }),
        None => (0, Vec::new()),
    };
    drop(locked);
    ctx.reply.array(2);
    ctx.reply
        .bulk(itoa::Buffer::new().format(cursor).as_bytes());
    ctx.reply.array(found.len());
    for member in &found {
        ctx.reply.bulk(member);
    }
    Ok(())
}
