//! List commands (Redis's t_list.c), including the blocking pops. A blocking command that finds
//! nothing calls `Ctx::block`; the connection waits, and when a key gets data the server runs
//! the command again on the waiter's behalf (see `crate::blocking`).

use bytes::Bytes;

use super::{
    CmdResult, Ctx, Error, NO_SUCH_KEY, SYNTAX, first_nonempty, int_arg, mpop_args, timeout_arg,
    typed_mut, typed_or_new,
};
use crate::config;
use crate::store::{Class, End, Fill, List, Locked, Value};
use crate::util::eq_ignore_case;

fn fill(ctx: &Ctx) -> Fill {
    Fill(ctx.server.config.int(config::LIST_MAX_LISTPACK_SIZE))
}

/// The list at `key`, or WRONGTYPE if the key holds another type.
fn list_mut<'a>(locked: &'a mut Locked, key: &[u8]) -> Result<Option<&'a mut List>, Error> {
    typed_mut(locked, key, Value::as_list_mut)
}

fn list_or_new<'a>(locked: &'a mut Locked, key: &[u8]) -> Result<&'a mut List, Error> {
    typed_or_new(locked, key, Value::as_list_mut, || {
        Value::List(Box::default())
    })
}

/// Redis's `getRangeLongFromObjectOrReply` with a message: the same text for a value that is
/// not a number and one out of range.
fn range_arg(arg: &[u8], min: i64, max: i64, message: &'static str) -> Result<i64, Error> {
    crate::util::parse_i64(arg)
        .filter(|n| (min..=max).contains(n))
        .ok_or(Error::from(message))
}

fn end_arg(arg: &[u8]) -> Result<End, Error> {
    if eq_ignore_case(arg, "left") {
        Ok(End::Head)
    } else if eq_ignore_case(arg, "right") {
        Ok(End::Tail)
    } else {
        Err(SYNTAX.into())
    }
}

fn pop_event(end: End) -> &'static str {
    match end {
        End::Head => "lpop",
        End::Tail => "rpop",
    }
}

fn push_event(end: End) -> &'static str {
    match end {
        End::Head => "lpush",
        End::Tail => "rpush",
    }
}

/// Deletes `key` if its list became empty, as every list command that removes elements does.
fn delete_if_empty(ctx: &Ctx, locked: &mut Locked, key: &[u8]) {
    let empty = matches!(list_mut(locked, key), Ok(Some(list)) if list.is_empty());
    if empty {
        locked.remove(key);
        ctx.modified(key, Class::Generic, "del");
    }
}

fn push(ctx: &mut Ctx, args: &[Bytes], end: End, only_existing: bool) -> CmdResult {
    let key = &args[1];
    let fill = fill(ctx);
    let db = ctx.db();
    let mut locked = db.lock(key);
    let list = match list_mut(&mut locked, key)? {
        Some(list) => list,
        None if only_existing => {
            ctx.reply.int(0);
            return Ok(());
        }
        None => locked
            .insert_new(key, Value::List(Box::default()))
            .value
            .as_list_mut()
            .expect("just inserted a list"),
    };
    for value in &args[2..] {
        list.push(end, value, fill);
    }
    ctx.reply.int(list.len() as i64);
    ctx.modified(key, Class::List, push_event(end));
    Ok(())
}

pub fn lpush(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    push(ctx, args, End::Head, false)
}

pub fn rpush(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    push(ctx, args, End::Tail, false)
}

pub fn lpushx(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    push(ctx, args, End::Head, true)
}

pub fn rpushx(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    push(ctx, args, End::Tail, true)
}

/// Pops up to `count` elements from `end` of the list at `key` (which must exist) into an
/// array reply, with the notifications Redis sends.
fn pop_into_reply(ctx: &mut Ctx, locked: &mut Locked, key: &[u8], end: End, count: usize) {
    if let Ok(Some(list)) = list_mut(locked, key) {
        let count = count.min(list.len());
        ctx.reply.array(count);
        for _ in 0..count {
            let value = list.pop(end).expect("counted above");
            ctx.reply.bulk(&value);
        }
    }
    ctx.modified(key, Class::List, pop_event(end));
    delete_if_empty(ctx, locked, key);
}

fn pop(ctx: &mut Ctx, args: &[Bytes], end: End) -> CmdResult {
    if args.len() > 3 {
        return Err(format!("ERR wrong number of arguments for '{}' command", ctx.name()).into());
    }
    let count = match args.get(2) {
        Some(arg) => Some(range_arg(
            arg,
            0,
            i64::MAX,
            "ERR value is out of range, must be positive",
        )? as usize),
        None => None,
    };
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let Some(list) = list_mut(&mut locked, key)? else {
        match count {
            Some(_) => ctx.reply.null_array(),
            None => ctx.reply.null(),
        }
        return Ok(());
    };
    match count {
        Some(0) => ctx.reply.array(0),
        Some(count) => pop_into_reply(ctx, &mut locked, key, end, count),
        None => {
            let value = list.pop(end).expect("stored lists are never empty");
            ctx.reply.bulk(&value);
            ctx.modified(key, Class::List, pop_event(end));
            delete_if_empty(ctx, &mut locked, key);
        }
    }
    Ok(())
}

pub fn lpop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    pop(ctx, args, End::Head)
}

pub fn rpop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    pop(ctx, args, End::Tail)
}

pub fn llen(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let len = list_mut(&mut locked, &args[1])?.map_or(0, |l| l.len());
    ctx.reply.int(len as i64);
    Ok(())
}

pub fn lindex(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let Some(list) = list_mut(&mut locked, &args[1])? else {
        ctx.reply.null();
        return Ok(());
    };
    let index = int_arg(&args[2])?;
    match list.position(index).and_then(|p| list.get(p)) {
        Some(value) => ctx.reply.bulk(value),
        None => ctx.reply.null(),
    }
    Ok(())
}

pub fn lset(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let fill = fill(ctx);
    let db = ctx.db();
    let mut locked = db.lock(key);
    let list = list_mut(&mut locked, key)?.ok_or(Error::from(NO_SUCH_KEY))?;
    let index = int_arg(&args[2])?;
    let position = list
        .position(index)
        .ok_or(Error::from("ERR index out of range"))?;
    list.set(position, &args[3], fill);
    ctx.reply.ok();
    ctx.modified(key, Class::List, "lset");
    Ok(())
}

/// Converts a Redis start/stop pair to a position and a length within `len` elements.
fn range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 { len + stop } else { stop };
    if start > stop || start >= len {
        return None;
    }
    let stop = stop.min(len - 1);
    Some((start as usize, (stop - start + 1) as usize))
}

pub fn lrange(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let start = int_arg(&args[2])?;
    let stop = int_arg(&args[3])?;
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let Some(list) = list_mut(&mut locked, &args[1])? else {
        ctx.reply.array(0);
        return Ok(());
    };
    match range(start, stop, list.len()) {
        Some((start, count)) => {
            ctx.reply.array(count);
            for value in list.iter_from(start).take(count) {
                ctx.reply.bulk(value);
            }
        }
        None => ctx.reply.array(0),
    }
    Ok(())
}

pub fn ltrim(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let start = int_arg(&args[2])?;
    let stop = int_arg(&args[3])?;
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let Some(list) = list_mut(&mut locked, key)? else {
        ctx.reply.ok();
        return Ok(());
    };
    let len = list.len();
    let (head, tail) = match range(start, stop, len) {
        Some((start, count)) => (start, len - start - count),
        None => (len, 0),
    };
    list.trim(head, tail);
    ctx.modified(key, Class::List, "ltrim");
    delete_if_empty(ctx, &mut locked, key);
    ctx.reply.ok();
    Ok(())
}

pub fn lrem(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let count = int_arg(&args[2])?;
    let key = &args[1];
    let fill = fill(ctx);
    let db = ctx.db();
    let mut locked = db.lock(key);
    let Some(list) = list_mut(&mut locked, key)? else {
        ctx.reply.int(0);
        return Ok(());
    };
    let from = if count < 0 { End::Tail } else { End::Head };
    let limit = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
    let removed = list.remove(&args[3], limit, from, fill);
    if removed > 0 {
        ctx.modified(key, Class::List, "lrem");
    }
    delete_if_empty(ctx, &mut locked, key);
    ctx.reply.int(removed as i64);
    Ok(())
}

pub fn linsert(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let end = if eq_ignore_case(&args[2], "after") {
        End::Tail
    } else if eq_ignore_case(&args[2], "before") {
        End::Head
    } else {
        return Err(SYNTAX.into());
    };
    let key = &args[1];
    let fill = fill(ctx);
    let db = ctx.db();
    let mut locked = db.lock(key);
    let Some(list) = list_mut(&mut locked, key)? else {
        ctx.reply.int(0);
        return Ok(());
    };
    if list.insert(&args[3], &args[4], end, fill) {
        ctx.reply.int(list.len() as i64);
        ctx.modified(key, Class::List, "linsert");
    } else {
        ctx.reply.int(-1);
    }
    Ok(())
}

pub fn lpos(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0usize);
    let mut i = 3;
    while i < args.len() {
        let value = args.get(i + 1).ok_or(Error::from(SYNTAX))?;
        if eq_ignore_case(&args[i], "rank") {
            rank = int_arg(value)?;
            if rank == 0 {
                return Err(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from \
                            the second ... or use negative to start from the end of the list"
                        .into(),
                );
            }
        } else if eq_ignore_case(&args[i], "count") {
            count = Some(range_arg(value, 0, i64::MAX, "ERR COUNT can't be negative")? as usize);
        } else if eq_ignore_case(&args[i], "maxlen") {
            maxlen = range_arg(value, 0, i64::MAX, "ERR MAXLEN can't be negative")? as usize;
        } else {
            return Err(SYNTAX.into());
        }
        i += 2;
    }
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let Some(list) = list_mut(&mut locked, &args[1])? else {
        match count {
            Some(_) => ctx.reply.array(0),
            None => ctx.reply.null(),
        }
        return Ok(());
    };
    let len = list.len();
    let from_tail = rank < 0;
    let skip = rank.unsigned_abs() - 1;
    let scan = if maxlen == 0 { len } else { maxlen.min(len) };
    let elements: Box<dyn Iterator<Item = &[u8]>> = if from_tail {
        Box::new(list.iter().rev())
    } else {
        Box::new(list.iter())
    };
    let mut matches = elements
        .take(scan)
        .enumerate()
        .filter(|(_, element)| *element == &args[2][..])
        .map(|(i, _)| if from_tail { len - 1 - i } else { i } as i64)
        .skip(usize::try_from(skip).unwrap_or(usize::MAX));
    match count {
        None => match matches.next() {
            Some(index) => ctx.reply.int(index),
            None => ctx.reply.null(),
        },
        Some(count) => {
            let limit = if count == 0 { usize::MAX } else { count };
            let found: Vec<i64> = matches.take(limit).collect();
            ctx.reply.array(found.len());
            for index in found {
                ctx.reply.int(index);
            }
        }
    }
    Ok(())
}

/// Moves one element from `src` to `dst` (LMOVE and its blocking and older forms); replies
/// with the element, or null when `src` is empty.
fn move_element(ctx: &mut Ctx, src: &Bytes, dst: &Bytes, from: End, to: End) -> CmdResult {
    let db = ctx.db();
    if list_mut(&mut db.lock(src), src)?.is_none() {
        ctx.reply.null();
        return Ok(());
    }
    list_mut(&mut db.lock(dst), dst)?;
    // The command holds the gate exclusively when the keys differ, so these steps are atomic.
    let value = {
        let mut locked = db.lock(src);
        let list = list_mut(&mut locked, src)?.expect("checked above");
        list.pop(from).expect("stored lists are never empty")
    };
    let fill = fill(ctx);
    {
        let mut locked = db.lock(dst);
        list_or_new(&mut locked, dst)?.push(to, &value, fill);
    }
    ctx.modified(dst, Class::List, push_event(to));
    ctx.reply.bulk(&value);
    ctx.modified(src, Class::List, pop_event(from));
    delete_if_empty(ctx, &mut db.lock(src), src);
    Ok(())
}

pub fn lmove(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let from = end_arg(&args[3])?;
    let to = end_arg(&args[4])?;
    move_element(ctx, &args[1], &args[2], from, to)
}

pub fn rpoplpush(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    move_element(ctx, &args[1], &args[2], End::Tail, End::Head)
}

fn blocking_move(ctx: &mut Ctx, args: &[Bytes], from: End, to: End, timeout: &[u8]) -> CmdResult {
    let deadline = timeout_arg(timeout)?;
    let src = &args[1];
    let present = {
        let db = ctx.db();
        let mut locked = db.lock(src);
        match list_mut(&mut locked, src) {
            Ok(list) => list.is_some(),
            // A waiter is served only from a list; another type keeps it waiting.
            Err(_) if ctx.client.ready_key.is_some() => false,
            Err(e) => return Err(e),
        }
    };
    if present {
        return move_element(ctx, src, &args[2], from, to);
    }
    if ctx.client.deny_blocking {
        ctx.reply.null();
    } else {
        ctx.block(vec![src.clone()], deadline);
    }
    Ok(())
}

pub fn blmove(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let from = end_arg(&args[3])?;
    let to = end_arg(&args[4])?;
    blocking_move(ctx, args, from, to, &args[5])
}

pub fn brpoplpush(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    blocking_move(ctx, args, End::Tail, End::Head, &args[3])
}

/// Pops from the first non-empty list among `keys`: one element as `[key, element]`, or with
/// `count` (the MPOP forms) `[key, [elements...]]`. Returns false if every list is empty.
fn pop_first(ctx: &mut Ctx, keys: &[Bytes], end: End, count: Option<usize>) -> Result<bool, Error> {
    let Some((key, mut locked)) = first_nonempty(ctx, keys, Value::as_list_mut)? else {
        return Ok(false);
    };
    ctx.reply.array(2);
    ctx.reply.bulk(key);
    // Logged as a plain pop from the key it served, with the count it popped, as Redis
    // propagates it.
    let pop = Bytes::from_static(if end == End::Head { b"LPOP" } else { b"RPOP" });
    let mut logged = vec![pop, key.clone()];
    let len = locked
        .peek(key)
        .and_then(|e| e.value.as_list_mut())
        .map_or(0, |list| list.len());
    logged.extend(count.map(|n| Bytes::from(n.min(len).to_string())));
    ctx.log_as(logged);
    match count {
        Some(count) => pop_into_reply(ctx, &mut locked, key, end, count),
        None => {
            let list = list_mut(&mut locked, key)?.expect("found above");
            let value = list.pop(end).expect("stored lists are never empty");
            ctx.reply.bulk(&value);
            ctx.modified(key, Class::List, pop_event(end));
            delete_if_empty(ctx, &mut locked, key);
        }
    }
    Ok(true)
}

fn blocking_pop(
    ctx: &mut Ctx,
    keys: &[Bytes],
    end: End,
    count: Option<usize>,
    timeout: &[u8],
) -> CmdResult {
    let deadline = timeout_arg(timeout)?;
    if pop_first(ctx, keys, end, count)? {
        return Ok(());
    }
    if ctx.client.deny_blocking {
        ctx.reply.null_array();
    } else {
        ctx.block(keys.to_vec(), deadline);
    }
    Ok(())
}

pub fn blpop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    blocking_pop(
        ctx,
        &args[1..args.len() - 1],
        End::Head,
        None,
        &args[args.len() - 1],
    )
}

pub fn brpop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    blocking_pop(
        ctx,
        &args[1..args.len() - 1],
        End::Tail,
        None,
        &args[args.len() - 1],
    )
}

/// The arguments of LMPOP and BLMPOP from `numkeys` on: keys, end and count.
fn parse_mpop(args: &[Bytes]) -> Result<(&[Bytes], End, usize), Error> {
    let (keys, right, count) = mpop_args(args, ["left", "right"])?;
    Ok((keys, if right { End::Tail } else { End::Head }, count))
}

pub fn lmpop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (keys, end, count) = parse_mpop(&args[1..])?;
    if !pop_first(ctx, keys, end, Some(count))? {
        ctx.reply.null_array();
    }
    Ok(())
}

pub fn blmpop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (keys, end, count) = parse_mpop(&args[2..])?;
    blocking_pop(ctx, keys, end, Some(count), &args[1])
}
