//! Stream commands (Redis's t_stream.c): entries, trimming, reads (blocking ones too), and
//! consumer groups. The data structure is `store::stream`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{CmdResult, Ctx, Error, NOT_INTEGER, SYNTAX, int_arg, printable, reply_help};
use super::{subcommand_syntax_error, typed_mut, typed_or_new};
use crate::config;
use crate::protocol::Reply;
use crate::store::stream::{
    AddError, ENTRIES_READ_UNKNOWN, EntryRef, Group, Nack, NodeLimits, Stream, StreamId, Trim,
};
use crate::store::{Class, Locked, Value};
use crate::util::{eq_ignore_case, now_ms};

const INVALID_ID: &str = "ERR Invalid stream ID specified as stream command argument";
/// Entries a woken XREAD without COUNT gets at most (Redis's XREAD_BLOCKED_DEFAULT_COUNT).
const BLOCKED_DEFAULT_COUNT: usize = 1000;

fn stream_mut<'a>(locked: &'a mut Locked, key: &[u8]) -> Result<Option<&'a mut Stream>, Error> {
    typed_mut(locked, key, Value::as_stream_mut)
}

fn limits(ctx: &Ctx) -> NodeLimits {
    NodeLimits {
        max_bytes: ctx.server.config.int(config::STREAM_NODE_MAX_BYTES).max(0) as usize,
        max_entries: ctx
            .server
            .config
            .int(config::STREAM_NODE_MAX_ENTRIES)
            .max(0) as usize,
    }
}

/// Counts a change with no keyspace event nor WATCH signal (XACK, XREADGROUP bookkeeping).
fn count_change(ctx: &Ctx, n: u64) {
    ctx.server
        .store
        .notifier
        .dirty
        .fetch_add(n, Ordering::Relaxed);
}

fn now() -> i64 {
    now_ms() as i64
}

/// A number as Redis's string2ull reads it: digits only.
fn parse_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// An ID argument (Redis's streamGenericParseIDOrReply): `<ms>-<seq>`, `<ms>` with
/// `missing_seq`, and unless `strict` `-` and `+`. With `seq_given`, `<ms>-*` is accepted and
/// reported as having no sequence.
fn parse_id_full(
    arg: &[u8],
    missing_seq: u64,
    strict: bool,
    allow_auto_seq: bool,
) -> Result<(StreamId, bool), Error> {
    if arg.len() > 127 {
        return Err(INVALID_ID.into());
    }
    match arg {
        b"-" | b"+" if strict => return Err(INVALID_ID.into()),
        b"-" => return Ok((StreamId::MIN, true)),
        b"+" => return Ok((StreamId::MAX, true)),
        _ => {}
    }
    let (ms, seq) = match arg.iter().position(|&b| b == b'-') {
        Some(dash) => (&arg[..dash], Some(&arg[dash + 1..])),
        None => (arg, None),
    };
    let ms = parse_u64(ms).ok_or(Error::from(INVALID_ID))?;
    match seq {
        None => Ok((StreamId::new(ms, missing_seq), true)),
        Some(b"*") if allow_auto_seq => Ok((StreamId::new(ms, 0), false)),
        Some(seq) => {
            let seq = parse_u64(seq).ok_or(Error::from(INVALID_ID))?;
            Ok((StreamId::new(ms, seq), true))
        }
    }
}

fn parse_id(arg: &[u8], missing_seq: u64) -> Result<StreamId, Error> {
    Ok(parse_id_full(arg, missing_seq, false, false)?.0)
}

fn parse_strict_id(arg: &[u8]) -> Result<StreamId, Error> {
    Ok(parse_id_full(arg, 0, true, false)?.0)
}

/// A range bound: `(` makes it exclusive (moved by one ID, with Redis's errors past the ends).
fn parse_bound(arg: &[u8], start: bool) -> Result<StreamId, Error> {
    let missing_seq = if start { 0 } else { u64::MAX };
    if arg.len() > 1 && arg[0] == b'(' {
        let id = parse_id_full(&arg[1..], missing_seq, true, false)?.0;
        let moved = if start { id.incr() } else { id.decr() };
        let which = if start { "start" } else { "end" };
        return moved.ok_or_else(|| format!("ERR invalid {which} ID for the interval").into());
    }
    parse_id(arg, missing_seq)
}

fn bulk_id(reply: &mut Reply, id: StreamId) {
    reply.bulk(&id.to_text());
}

/// One entry as `[id, [field, value ...]]`.
fn reply_entry(reply: &mut Reply, entry: &EntryRef<'_>) {
    reply.array(2);
    bulk_id(reply, entry.id);
    reply.array(entry.fields * 2);
    let mut scratch = itoa::Buffer::new();
    for (field, value) in entry.pairs() {
        reply.bulk(field.bytes(&mut scratch));
        reply.bulk(value.bytes(&mut scratch));
    }
}

/// Entries of `start..=end` (at most `count`, 0 for all) as an array; the IDs sent.
fn reply_range(
    reply: &mut Reply,
    stream: &Stream,
    start: StreamId,
    end: StreamId,
    count: usize,
    rev: bool,
) -> Vec<StreamId> {
    let at = reply.buf.len();
    let mut sent = Vec::new();
    stream.range(start, end, rev, |entry| {
        reply_entry(reply, entry);
        sent.push(entry.id);
        count == 0 || sent.len() < count
    });
    reply.array_before(at, sent.len());
    sent
}

/// The one entry `id` without an array around it; false if there is no such entry.
fn reply_one(reply: &mut Reply, stream: &Stream, id: StreamId) -> bool {
    let mut found = false;
    stream.range(id, id, false, |entry| {
        reply_entry(reply, entry);
        found = true;
        false
    });
    found
}

/// The trimming options of XADD and XTRIM, and for XADD where its ID is.
struct TrimArgs {
    trim: Option<Trim>,
    approx: bool,
    limit: u64,
    /// Position of the MAXLEN/MINID threshold, rewritten for the log after `~` trimming.
    threshold_pos: usize,
    limit_pos: Option<usize>,
    no_mkstream: bool,
    /// XADD: the ID asked for (None for `*`), whether its sequence was, and its position.
    id: Option<(StreamId, bool)>,
    id_pos: usize,
}

/// Redis's streamParseAddOrTrimArgsOrReply.
fn parse_trim_args(ctx: &Ctx, args: &[Bytes], xadd: bool) -> Result<TrimArgs, Error> {
    let mut parsed = TrimArgs {
        trim: None,
        approx: false,
        limit: 0,
        threshold_pos: 0,
        limit_pos: None,
        no_mkstream: false,
        id: None,
        id_pos: 0,
    };
    const BOTH: &str =
        "ERR syntax error, MAXLEN and MINID options at the same time are not compatible";
    let mut i = 2;
    let mut limit_given = false;
    while i < args.len() {
        let more = args.len() - 1 - i;
        let opt = &args[i][..];
        let is = |name: &str| eq_ignore_case(opt, name);
        if xadd && opt == b"*" {
            break;
        } else if (is("maxlen") || is("minid")) && more > 0 {
            if parsed.trim.is_some() {
                return Err(BOTH.into());
            }
            parsed.approx = false;
            let next = &args[i + 1][..];
            if more >= 2 && (next == b"~" || next == b"=") {
                parsed.approx = next == b"~";
                i += 1;
            }
            let threshold = &args[i + 1];
            parsed.trim = Some(if is("maxlen") {
                let max = int_arg(threshold)?;
                if max < 0 {
                    return Err("ERR The MAXLEN argument must be >= 0.".into());
                }
                Trim::MaxLen(max as u64)
            } else {
                Trim::MinId(parse_strict_id(threshold)?)
            });
            i += 1;
            parsed.threshold_pos = i;
        } else if is("limit") && more > 0 {
            let limit = int_arg(&args[i + 1])?;
            if limit < 0 {
                return Err("ERR The LIMIT argument must be >= 0.".into());
            }
            parsed.limit = limit as u64;
            parsed.limit_pos = Some(i);
            limit_given = true;
            i += 1;
        } else if xadd && is("nomkstream") {
            parsed.no_mkstream = true;
        } else if xadd {
            parsed.id = Some(parse_id_full(opt, 0, true, true)?);
            break;
        } else {
            return Err(SYNTAX.into());
        }
        i += 1;
    }
    parsed.id_pos = i;
    if parsed.limit > 0 && parsed.trim.is_none() {
        return Err(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy".into(),
        );
    }
    if !xadd && parsed.trim.is_none() {
        return Err("ERR syntax error, XTRIM must be called with a trimming strategy".into());
    }
    if limit_given {
        if !parsed.approx {
            return Err(
                "ERR syntax error, LIMIT cannot be used without the special ~ option".into(),
            );
        }
    } else if parsed.approx {
        let per_node = ctx.server.config.int(config::STREAM_NODE_MAX_ENTRIES);
        let limit = per_node.saturating_mul(100);
        parsed.limit = if limit <= 0 {
            10_000
        } else {
            limit.min(1_000_000)
        } as u64;
    }
    Ok(parsed)
}

/// After `~` trimming, the command is logged with `=` and the threshold the stream now has, so
/// that replaying it trims the same (Redis's streamRewriteTrimArgument); LIMIT is dropped, as
/// a replay must not stop early.
fn log_trimmed(ctx: &mut Ctx, args: &[Bytes], parsed: &TrimArgs, stream: &Stream, id: StreamId) {
    if !ctx.logging() {
        return;
    }
    let mut logged = args.to_vec();
    if parsed.approx {
        logged[parsed.threshold_pos - 1] = Bytes::from_static(b"=");
        logged[parsed.threshold_pos] = Bytes::from(match parsed.trim {
            Some(Trim::MaxLen(_)) => itoa::Buffer::new().format(stream.len()).as_bytes().to_vec(),
            _ => stream.edge_id(true, false).to_text(),
        });
    }
    if parsed.id_pos > 0 && parsed.id.is_none_or(|(_, seq_given)| !seq_given) {
        logged[parsed.id_pos] = Bytes::from(id.to_text());
    }
    if let Some(pos) = parsed.limit_pos.filter(|_| parsed.approx) {
        logged.drain(pos..pos + 2);
    }
    ctx.log_as(logged);
}

pub fn xadd(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let parsed = parse_trim_args(ctx, args, true)?;
    let fields_at = parsed.id_pos + 1;
    let pairs = args.get(fields_at..).unwrap_or_default();
    if pairs.len() < 2 || !pairs.len().is_multiple_of(2) {
        return Err("ERR wrong number of arguments for 'xadd' command".into());
    }
    if let Some((id, true)) = parsed.id
        && id.is_zero()
    {
        return Err("ERR The ID specified in XADD must be greater than 0-0".into());
    }
    let limits = limits(ctx);
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    if parsed.no_mkstream && stream_mut(&mut locked, key)?.is_none() {
        ctx.reply.null();
        return Ok(());
    }
    let stream = typed_or_new(&mut locked, key, Value::as_stream_mut, || {
        Value::Stream(Box::default())
    })?;
    if stream.last_id() == StreamId::MAX {
        return Err(
            "ERR The stream has exhausted the last possible ID, unable to add more items".into(),
        );
    }
    let (requested, seq_given) = parsed.id.map_or((None, true), |(id, s)| (Some(id), s));
    let added = stream
        .next_id(requested, seq_given, now_ms())
        .ok_or(AddError::NotGreater)
        .and_then(|id| stream.add(id, pairs, limits).map(|()| id));
    let id = match added {
        Ok(id) => id,
        Err(AddError::NotGreater) => {
            return Err(
                "ERR The ID specified in XADD is equal or smaller than the target stream top item"
                    .into(),
            );
        }
        Err(AddError::TooLarge) => return Err("ERR Elements are too large to be stored".into()),
    };
    bulk_id(ctx.reply, id);
    ctx.modified(key, Class::Stream, "xadd");
    if let Some(trim) = parsed.trim
        && stream.trim(trim, parsed.approx, parsed.limit) > 0
    {
        ctx.modified(key, Class::Stream, "xtrim");
    }
    let rewrite = parsed.approx || parsed.id.is_none_or(|(_, seq_given)| !seq_given);
    if rewrite {
        log_trimmed(ctx, args, &parsed, stream, id);
    }
    Ok(())
}

pub fn xtrim(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let mut parsed = parse_trim_args(ctx, args, false)?;
    parsed.id_pos = 0;
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let Some(stream) = stream_mut(&mut locked, key)? else {
        ctx.reply.int(0);
        return Ok(());
    };
    let trim = parsed.trim.expect("XTRIM has a strategy");
    let deleted = stream.trim(trim, parsed.approx, parsed.limit);
    if deleted > 0 {
        ctx.modified(key, Class::Stream, "xtrim");
        count_change(ctx, deleted - 1);
        if parsed.approx {
            log_trimmed(ctx, args, &parsed, stream, StreamId::MIN);
        }
    }
    ctx.reply.int(deleted as i64);
    Ok(())
}

fn range_command(ctx: &mut Ctx, args: &[Bytes], rev: bool) -> CmdResult {
    let (start_arg, end_arg) = if rev {
        (&args[3], &args[2])
    } else {
        (&args[2], &args[3])
    };
    let start = parse_bound(start_arg, true)?;
    let end = parse_bound(end_arg, false)?;
    let mut count = None;
    let mut i = 4;
    while i < args.len() {
        if eq_ignore_case(&args[i], "count") && i + 1 < args.len() {
            count = Some(int_arg(&args[i + 1])?.max(0) as usize);
            i += 2;
        } else {
            return Err(SYNTAX.into());
        }
    }
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let Some(stream) = stream_mut(&mut locked, &args[1])? else {
        ctx.reply.array(0);
        return Ok(());
    };
    match count {
        Some(0) => ctx.reply.null_array(),
        count => {
            reply_range(ctx.reply, stream, start, end, count.unwrap_or(0), rev);
        }
    }
    Ok(())
}

pub fn xrange(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    range_command(ctx, args, false)
}

pub fn xrevrange(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    range_command(ctx, args, true)
}

pub fn xlen(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let len = stream_mut(&mut locked, &args[1])?.map_or(0, |s| s.len());
    ctx.reply.int(len as i64);
    Ok(())
}

pub fn xdel(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let Some(stream) = stream_mut(&mut locked, key)? else {
        ctx.reply.int(0);
        return Ok(());
    };
    let ids = args[2..]
        .iter()
        .map(|a| parse_strict_id(a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut deleted = 0;
    let mut first_gone = false;
    for id in ids {
        if stream.delete(id) {
            first_gone |= id == stream.counters.first_id;
            if id > stream.counters.max_deleted {
                stream.counters.max_deleted = id;
            }
            deleted += 1;
        }
    }
    if deleted > 0 {
        if stream.is_empty() || first_gone {
            stream.refresh_first_id();
        }
        ctx.modified(key, Class::Stream, "xdel");
        count_change(ctx, deleted - 1);
    }
    ctx.reply.int(deleted as i64);
    Ok(())
}

/// What XREAD and XREADGROUP were asked.
struct ReadArgs<'a> {
    /// BLOCK's deadline (Unix ms, 0 for none) and the argument as given.
    block: Option<(u64, &'a Bytes)>,
    count: usize,
    noack: bool,
    group: Option<(&'a Bytes, &'a Bytes)>,
    keys: &'a [Bytes],
    ids: &'a [Bytes],
}

fn parse_read_args<'a>(
    ctx: &Ctx,
    args: &'a [Bytes],
    xreadgroup: bool,
) -> Result<ReadArgs<'a>, Error> {
    let mut parsed = ReadArgs {
        block: None,
        count: 0,
        noack: false,
        group: None,
        keys: &[],
        ids: &[],
    };
    let mut streams_at = None;
    let mut i = 1;
    while i < args.len() {
        let more = args.len() - 1 - i;
        let opt = &args[i][..];
        let is = |name: &str| eq_ignore_case(opt, name);
        if is("block") && more > 0 {
            if ctx.client.in_script {
                return Err(format!(
                    "ERR {} command is not allowed with BLOCK option from scripts",
                    String::from_utf8_lossy(&args[0])
                )
                .into());
            }
            i += 1;
            let ms = crate::util::parse_i64(&args[i])
                .ok_or(Error::from("ERR timeout is not an integer or out of range"))?;
            if ms < 0 {
                return Err("ERR timeout is negative".into());
            }
            let deadline = if ms == 0 {
                0
            } else {
                now_ms().saturating_add(ms as u64)
            };
            parsed.block = Some((deadline, &args[i]));
        } else if is("count") && more > 0 {
            i += 1;
            parsed.count = int_arg(&args[i])?.max(0) as usize;
        } else if is("streams") && more > 0 {
            streams_at = Some(i + 1);
            break;
        } else if is("group") && more >= 2 {
            if !xreadgroup {
                return Err(
                    "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead."
                        .into(),
                );
            }
            parsed.group = Some((&args[i + 1], &args[i + 2]));
            i += 2;
        } else if is("noack") {
            if !xreadgroup {
                return Err(
                    "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead."
                        .into(),
                );
            }
            parsed.noack = true;
        } else {
            return Err(SYNTAX.into());
        }
        i += 1;
    }
    let Some(at) = streams_at else {
        return Err(SYNTAX.into());
    };
    let rest = &args[at..];
    if !rest.len().is_multiple_of(2) {
        return Err("ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.".into());
    }
    if xreadgroup && parsed.group.is_none() {
        return Err("ERR Missing GROUP option for XREADGROUP".into());
    }
    (parsed.keys, parsed.ids) = rest.split_at(rest.len() / 2);
    Ok(parsed)
}

/// Where a read starts: past this ID, or, for XREADGROUP, past the group's last delivered ID
/// (`>`) or from this ID in the consumer's own history.
#[derive(Clone, Copy)]
enum ReadFrom {
    After(StreamId),
    New,
    History(StreamId),
}

pub fn xread(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    read(ctx, args, false)
}

pub fn xreadgroup(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    read(ctx, args, true)
}

/// Redis's xreadCommand, for both commands. A woken waiter runs it again (see
/// `crate::blocking`) and then reads only the key that got data.
fn read(ctx: &mut Ctx, args: &[Bytes], xreadgroup: bool) -> CmdResult {
    let parsed = parse_read_args(ctx, args, xreadgroup)?;
    // What the command changes is logged as XCLAIM and XGROUP commands, never as itself.
    ctx.log_nothing();
    let serving = ctx.client.ready_key.as_deref().cloned();
    let db = ctx.db();
    let mut from = Vec::with_capacity(parsed.keys.len());
    for (key, id_arg) in parsed.keys.iter().zip(parsed.ids) {
        if serving.as_ref().is_some_and(|ready| ready != key) {
            from.push(None);
            continue;
        }
        let mut locked = db.lock(key);
        let stream = match stream_mut(&mut locked, key) {
            Ok(stream) => stream,
            Err(_) if serving.is_some() && parsed.group.is_some() => {
                return Err("UNBLOCKED the stream key no longer exists".into());
            }
            Err(_) if serving.is_some() => {
                from.push(None);
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some((group, _)) = parsed.group {
            match stream.as_deref() {
                None if serving.is_some() => {
                    return Err("UNBLOCKED the stream key no longer exists".into());
                }
                Some(s) if s.group(group).is_none() && serving.is_some() => {
                    return Err(
                        "NOGROUP the consumer group this client was blocked on no longer exists"
                            .into(),
                    );
                }
                Some(s) if s.group(group).is_some() => {}
                _ => {
                    return Err(format!(
                        "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                        printable(key, 1024),
                        printable(group, 1024)
                    )
                    .into());
                }
            }
        }
        let read_from = match &id_arg[..] {
            b"$" if xreadgroup => {
                return Err("ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.".into());
            }
            b"$" => ReadFrom::After(stream.as_deref().map_or(StreamId::MIN, |s| s.last_id())),
            b">" if !xreadgroup => {
                return Err("ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.".into());
            }
            b">" => ReadFrom::New,
            id if xreadgroup => ReadFrom::History(parse_strict_id(id)?),
            id => ReadFrom::After(parse_strict_id(id)?),
        };
        let start = stream.as_deref().and_then(|stream| match read_from {
            // Past the ID given; Redis's increment of the last possible ID wraps to 0-0.
            ReadFrom::History(id) => Some(id.incr().unwrap_or(StreamId::MIN)),
            ReadFrom::New => {
                let group = parsed.group.and_then(|(g, _)| stream.group(g))?;
                new_after(stream, group.last_id)
            }
            ReadFrom::After(id) => new_after(stream, id),
        });
        from.push(Some((read_from, start)));
    }
    let count = match (parsed.count, serving.is_some()) {
        (0, true) => BLOCKED_DEFAULT_COUNT,
        (count, _) => count,
    };
    let served = from
        .iter()
        .flatten()
        .filter(|(_, start)| start.is_some())
        .count();
    // RESP3: a map of key to entries; RESP2: an array of [key, entries] pairs.
    if served > 0 && ctx.reply.is_resp3() {
        ctx.reply.map(served);
    } else if served > 0 {
        ctx.reply.array(served);
    }
    for (key, from) in parsed.keys.iter().zip(&from) {
        let Some((read_from, Some(start))) = *from else {
            continue;
        };
        let mut locked = db.lock(key);
        let Ok(Some(stream)) = stream_mut(&mut locked, key) else {
            continue;
        };
        if !ctx.reply.is_resp3() {
            ctx.reply.array(2);
        }
        ctx.reply.bulk(key);
        match parsed.group {
            None => {
                reply_range(ctx.reply, stream, start, StreamId::MAX, count, false);
            }
            Some((group, consumer)) => {
                let read = GroupRead {
                    key,
                    group,
                    consumer,
                    count,
                    noack: parsed.noack,
                };
                let history = matches!(read_from, ReadFrom::History(_));
                read_group(ctx, stream, &read, start, history);
                count_change(ctx, 1);
            }
        }
    }
    if served > 0 {
        return Ok(());
    }
    match parsed.block {
        Some(_) if ctx.client.deny_blocking => ctx.reply.null_array(),
        Some((deadline, _)) if serving.is_some() => {
            // Woken with nothing new for it: wait on.
            ctx.block_reading(parsed.keys.to_vec(), deadline, args.to_vec());
        }
        Some((deadline, block_arg)) => {
            let woken = woken_args(args, &parsed, &from, block_arg, xreadgroup);
            ctx.block_reading(parsed.keys.to_vec(), deadline, woken);
        }
        None => ctx.reply.null_array(),
    }
    Ok(())
}

/// Where a read of entries after `id` starts, if the stream has any.
fn new_after(stream: &Stream, id: StreamId) -> Option<StreamId> {
    (!stream.is_empty() && stream.last_live_id() > id)
        .then(|| id.incr())
        .flatten()
}

/// The command a blocked reader runs when woken: `$` replaced by the ID it stood for, and a
/// COUNT (Redis serves a woken reader at most 1,000 entries unless it asked for fewer).
fn woken_args(
    args: &[Bytes],
    parsed: &ReadArgs<'_>,
    from: &[Option<(ReadFrom, Option<StreamId>)>],
    block_arg: &Bytes,
    xreadgroup: bool,
) -> Vec<Bytes> {
    let mut out = vec![args[0].clone()];
    if let Some((group, consumer)) = parsed.group {
        out.extend([
            Bytes::from_static(b"GROUP"),
            group.clone(),
            consumer.clone(),
        ]);
    }
    let count = match parsed.count {
        0 => BLOCKED_DEFAULT_COUNT,
        n => n,
    };
    out.extend([
        Bytes::from_static(b"COUNT"),
        Bytes::from(count.to_string()),
        Bytes::from_static(b"BLOCK"),
        block_arg.clone(),
    ]);
    if parsed.noack {
        out.push(Bytes::from_static(b"NOACK"));
    }
    out.push(Bytes::from_static(b"STREAMS"));
    out.extend(parsed.keys.iter().cloned());
    for (id_arg, from) in parsed.ids.iter().zip(from) {
        out.push(match from {
            Some((ReadFrom::After(id), _)) if !xreadgroup => Bytes::from(id.to_text()),
            _ => id_arg.clone(),
        });
    }
    out
}

/// Who reads through a group, and how.
struct GroupRead<'a> {
    key: &'a Bytes,
    group: &'a Bytes,
    consumer: &'a Bytes,
    count: usize,
    noack: bool,
}

/// The consumer `name` of `group`, created if absent with its keyspace event; seen now.
fn consumer_seen(ctx: &Ctx, group: &mut Group, key: &[u8], name: &[u8]) -> (Arc<[u8]>, bool) {
    let now = now();
    let (consumer, created) = group.consumer_or_new(name, now);
    if let Some(c) = group.consumers.get_mut(&consumer) {
        c.seen_time = now;
    }
    if created {
        ctx.modified(key, Class::Stream, "xgroup-createconsumer");
    }
    (consumer, created)
}

/// Redis's streamReplyWithRange with a group: delivers entries from `start` on to the
/// consumer (or, for `history`, its own pending entries), moving the group's last ID and
/// adding to its pending entries unless NOACK; logs the XCLAIM/XGROUP SETID that replay it.
fn read_group(
    ctx: &mut Ctx,
    stream: &mut Stream,
    read: &GroupRead<'_>,
    start: StreamId,
    history: bool,
) {
    // The groups are set aside while the entries are read, so that both can be at hand.
    let mut groups = stream.groups.take();
    if let Some(group) = groups.as_mut().and_then(|g| g.get_mut(&read.group[..])) {
        deliver(ctx, stream, group, read, start, history);
    } else {
        ctx.reply.array(0);
    }
    stream.groups = groups;
}

fn deliver(
    ctx: &mut Ctx,
    stream: &Stream,
    group: &mut Group,
    read: &GroupRead<'_>,
    start: StreamId,
    history: bool,
) {
    let (consumer, created) = consumer_seen(ctx, group, read.key, read.consumer);
    if created && read.noack && ctx.logging() {
        ctx.log_also(vec![
            Bytes::from_static(b"XGROUP"),
            Bytes::from_static(b"CREATECONSUMER"),
            read.key.clone(),
            read.group.clone(),
            read.consumer.clone(),
        ]);
    }
    if history {
        reply_history(ctx.reply, stream, group, &consumer, start, read.count);
        return;
    }
    let sent = reply_range(ctx.reply, stream, start, StreamId::MAX, read.count, false);
    let now = now();
    let mut moved = false;
    for id in sent {
        if id > group.last_id {
            group.entries_read = stream.counters.read_counter_after(group, id);
            group.last_id = id;
            moved = true;
        }
        if read.noack {
            continue;
        }
        let nack = Nack {
            delivery_time: now,
            delivery_count: 1,
            consumer: consumer.clone(),
        };
        if let Some(old) = group.pel.insert(id, nack)
            && let Some(owner) = group.consumers.get_mut(&old.consumer)
        {
            owner.pel.remove(id);
        }
        group.assign(id, &consumer);
        log_claim(ctx, read.key, read.group, group, id);
    }
    if read.noack && moved {
        log_group_id(ctx, read.key, read.group, group);
    }
}

/// Redis's streamReplyWithRangeFromConsumerPEL: the consumer's pending entries from `start`,
/// each counted as delivered again; one since deleted is sent as its ID and a null.
fn reply_history(
    body: &mut Reply,
    stream: &Stream,
    group: &mut Group,
    consumer: &Arc<[u8]>,
    start: StreamId,
    count: usize,
) {
    let ids: Vec<StreamId> = group
        .consumers
        .get(consumer)
        .map(|c| c.pel.range_from(start).map(|(id, _)| id).collect())
        .unwrap_or_default();
    let ids = &ids[..if count == 0 {
        ids.len()
    } else {
        count.min(ids.len())
    }];
    body.array(ids.len());
    let now = now();
    for &id in ids {
        if reply_one(body, stream, id) {
            if let Some(nack) = group.pel.get_mut(id) {
                nack.delivery_time = now;
                nack.delivery_count += 1;
            }
        } else {
            body.array(2);
            bulk_id(body, id);
            body.null_array();
        }
    }
}

/// Logs the pending entry `id` as Redis's streamPropagateXCLAIM does.
fn log_claim(ctx: &mut Ctx, key: &Bytes, group_name: &Bytes, group: &Group, id: StreamId) {
    let Some(nack) = group.pel.get(id).filter(|_| ctx.logging()) else {
        return;
    };
    let text = |n: i64| Bytes::from(itoa::Buffer::new().format(n).as_bytes().to_vec());
    ctx.log_also(vec![
        Bytes::from_static(b"XCLAIM"),
        key.clone(),
        group_name.clone(),
        Bytes::copy_from_slice(&nack.consumer),
        Bytes::from_static(b"0"),
        Bytes::from(id.to_text()),
        Bytes::from_static(b"TIME"),
        text(nack.delivery_time),
        Bytes::from_static(b"RETRYCOUNT"),
        text(nack.delivery_count as i64),
        Bytes::from_static(b"FORCE"),
        Bytes::from_static(b"JUSTID"),
        Bytes::from_static(b"LASTID"),
        Bytes::from(group.last_id.to_text()),
    ]);
}

/// Logs a group's position as XGROUP SETID ... ENTRIESREAD (Redis's streamPropagateGroupID).
fn log_group_id(ctx: &mut Ctx, key: &Bytes, group_name: &Bytes, group: &Group) {
    if !ctx.logging() {
        return;
    }
    ctx.log_also(vec![
        Bytes::from_static(b"XGROUP"),
        Bytes::from_static(b"SETID"),
        key.clone(),
        group_name.clone(),
        Bytes::from(group.last_id.to_text()),
        Bytes::from_static(b"ENTRIESREAD"),
        Bytes::from(group.entries_read.to_string()),
    ]);
}

fn no_group_error(key: &[u8], group: &[u8]) -> Error {
    format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        printable(key, 1024),
        printable(group, 1024)
    )
    .into()
}

/// The options after `XGROUP CREATE|SETID key group id`: MKSTREAM and ENTRIESREAD.
fn group_options(args: &[Bytes], create: bool) -> Result<(bool, i64), Error> {
    let mut mkstream = false;
    let mut entries_read = ENTRIES_READ_UNKNOWN;
    let mut i = 5;
    while i < args.len() {
        if create && eq_ignore_case(&args[i], "mkstream") {
            mkstream = true;
            i += 1;
        } else if eq_ignore_case(&args[i], "entriesread") && i + 1 < args.len() {
            entries_read = int_arg(&args[i + 1])?;
            if entries_read < 0 && entries_read != ENTRIES_READ_UNKNOWN {
                return Err("ERR value for ENTRIESREAD must be positive or -1".into());
            }
            i += 2;
        } else {
            return Err(subcommand_syntax_error(args));
        }
    }
    Ok((mkstream, entries_read))
}

const KEY_REQUIRED: &str = "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.";

/// The stream an XGROUP subcommand works on, which must exist.
fn group_stream<'a>(locked: &'a mut Locked, key: &[u8]) -> Result<&'a mut Stream, Error> {
    stream_mut(locked, key)?.ok_or(Error::from(KEY_REQUIRED))
}

/// The group an XGROUP subcommand names, which must exist.
fn named_group<'a>(
    stream: &'a mut Stream,
    key: &[u8],
    name: &[u8],
) -> Result<&'a mut Group, Error> {
    stream.group_mut(name).ok_or_else(|| {
        format!(
            "NOGROUP No such consumer group '{}' for key name '{}'",
            printable(name, 1024),
            printable(key, 1024)
        )
        .into()
    })
}

pub fn xgroup_create(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (mkstream, entries_read) = group_options(args, true)?;
    if args.len() > 8 {
        return Err(subcommand_syntax_error(args));
    }
    let key = &args[2];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let exists = stream_mut(&mut locked, key)?.is_some();
    if !exists && !mkstream {
        return Err(KEY_REQUIRED.into());
    }
    let last = stream_mut(&mut locked, key)?.map_or(StreamId::MIN, |s| s.last_id());
    let id = match &args[4][..] {
        b"$" => last,
        id => parse_strict_id(id)?,
    };
    let stream = typed_or_new(&mut locked, key, Value::as_stream_mut, || {
        Value::Stream(Box::default())
    })?;
    if !stream.create_group(&args[3], Group::new(id, entries_read)) {
        return Err("BUSYGROUP Consumer Group name already exists".into());
    }
    ctx.modified(key, Class::Stream, "xgroup-create");
    ctx.reply.ok();
    Ok(())
}

pub fn xgroup_setid(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (_, entries_read) = group_options(args, false)?;
    if args.len() != 5 && args.len() != 7 {
        return Err(subcommand_syntax_error(args));
    }
    let key = &args[2];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let stream = group_stream(&mut locked, key)?;
    let last = stream.last_id();
    let group = named_group(stream, key, &args[3])?;
    group.last_id = match &args[4][..] {
        b"$" => last,
        id => parse_id(id, 0)?,
    };
    group.entries_read = entries_read;
    ctx.modified(key, Class::Stream, "xgroup-setid");
    ctx.reply.ok();
    Ok(())
}

/// An XGROUP subcommand that answers with an integer: `change` gives the reply and whether the
/// stream changed, which `event` announces.
fn group_change(
    ctx: &mut Ctx,
    args: &[Bytes],
    event: &str,
    change: impl FnOnce(&mut Stream, &[u8]) -> Result<(i64, bool), Error>,
) -> CmdResult {
    let key = &args[2];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let (reply, changed) = change(group_stream(&mut locked, key)?, key)?;
    if changed {
        ctx.modified(key, Class::Stream, event);
    }
    ctx.reply.int(reply);
    Ok(())
}

pub fn xgroup_destroy(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    // The keyspace change also wakes XREADGROUP waiters on the group: they get NOGROUP.
    group_change(ctx, args, "xgroup-destroy", |stream, _| {
        let destroyed = stream.destroy_group(&args[3]);
        Ok((destroyed as i64, destroyed))
    })
}

pub fn xgroup_createconsumer(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    group_change(ctx, args, "xgroup-createconsumer", |stream, key| {
        let group = named_group(stream, key, &args[3])?;
        let (_, created) = group.consumer_or_new(&args[4], now());
        Ok((created as i64, created))
    })
}

pub fn xgroup_delconsumer(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    group_change(ctx, args, "xgroup-delconsumer", |stream, key| {
        let pending = named_group(stream, key, &args[3])?.remove_consumer(&args[4]);
        Ok((pending.unwrap_or(0) as i64, pending.is_some()))
    })
}

pub fn xgroup_help(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    reply_help(
        ctx,
        &[
            "CREATE <key> <groupname> <id|$> [option]",
            "    Create a new consumer group. Options are:",
            "    * MKSTREAM",
            "      Create the empty stream if it does not exist.",
            "    * ENTRIESREAD entries_read",
            "      Set the group's entries_read counter (internal use).",
            "CREATECONSUMER <key> <groupname> <consumer>",
            "    Create a new consumer in the specified group.",
            "DELCONSUMER <key> <groupname> <consumer>",
            "    Remove the specified consumer.",
            "DESTROY <key> <groupname>",
            "    Remove the specified group.",
            "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
            "    Set the current group ID and entries_read counter.",
        ],
    );
    Ok(())
}

pub fn xsetid(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let id = parse_strict_id(&args[2])?;
    let mut entries_added = None;
    let mut max_deleted = StreamId::MIN;
    let mut i = 3;
    while i < args.len() {
        let has_value = i + 1 < args.len();
        if eq_ignore_case(&args[i], "entriesadded") && has_value {
            let n = int_arg(&args[i + 1])?;
            if n < 0 {
                return Err("ERR entries_added must be positive".into());
            }
            entries_added = Some(n as u64);
        } else if eq_ignore_case(&args[i], "maxdeletedid") && has_value {
            max_deleted = parse_strict_id(&args[i + 1])?;
            if id < max_deleted {
                return Err("ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id".into());
            }
        } else {
            return Err(SYNTAX.into());
        }
        i += 2;
    }
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let stream = stream_mut(&mut locked, key)?.ok_or(Error::from(super::NO_SUCH_KEY))?;
    if !stream.is_empty() {
        if id < stream.last_live_id() {
            return Err(
                "ERR The ID specified in XSETID is smaller than the target stream top item".into(),
            );
        }
        if entries_added.is_some_and(|added| stream.len() > added) {
            return Err("ERR The entries_added specified in XSETID is smaller than the target stream length".into());
        }
    }
    stream.counters.last_id = id;
    if let Some(added) = entries_added {
        stream.counters.entries_added = added;
    }
    if !max_deleted.is_zero() {
        stream.counters.max_deleted = max_deleted;
    }
    ctx.modified(key, Class::Stream, "xsetid");
    ctx.reply.ok();
    Ok(())
}

pub fn xack(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let Some(group) = stream_mut(&mut locked, key)?.and_then(|s| s.group_mut(&args[2])) else {
        ctx.reply.int(0);
        return Ok(());
    };
    let ids = args[3..]
        .iter()
        .map(|a| parse_strict_id(a))
        .collect::<Result<Vec<_>, _>>()?;
    let acked = ids.into_iter().filter(|&id| group.ack(id)).count();
    count_change(ctx, acked as u64);
    ctx.reply.int(acked as i64);
    Ok(())
}

pub fn xpending(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let summary = args.len() == 3;
    if !summary && !(6..=9).contains(&args.len()) {
        return Err(SYNTAX.into());
    }
    let mut range = None;
    if !summary {
        let mut at = 3;
        let mut min_idle = 0;
        if eq_ignore_case(&args[3], "idle") {
            min_idle = int_arg(&args[4])?;
            if args.len() < 8 {
                return Err(SYNTAX.into());
            }
            at += 2;
        }
        let count = int_arg(args.get(at + 2).ok_or(Error::from(SYNTAX))?)?.max(0) as usize;
        let start = parse_bound(&args[at], true)?;
        let end = parse_bound(&args[at + 1], false)?;
        range = Some((start, end, count, min_idle, args.get(at + 3)));
    }
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let group = stream_mut(&mut locked, key)?
        .and_then(|s| s.group_mut(&args[2]))
        .ok_or_else(|| no_group_error(key, &args[2]))?;
    let reply = &mut *ctx.reply;
    let Some((start, end, count, min_idle, consumer)) = range else {
        reply.array(4);
        reply.int(group.pel.len() as i64);
        match (group.pel.first(), group.pel.last()) {
            (Some((first, _)), Some((last, _))) => {
                bulk_id(reply, first);
                bulk_id(reply, last);
                let owners: Vec<_> = group
                    .consumers
                    .iter()
                    .filter(|(_, c)| !c.pel.is_empty())
                    .collect();
                reply.array(owners.len());
                for (name, consumer) in owners {
                    reply.array(2);
                    reply.bulk(name);
                    reply.bulk_int(consumer.pel.len() as i64);
                }
            }
            _ => {
                reply.null();
                reply.null();
                reply.null_array();
            }
        }
        return Ok(());
    };
    let ids: Vec<StreamId> = match consumer {
        Some(name) => match group.consumers.get(&name[..]) {
            Some(c) => c
                .pel
                .range_from(start)
                .map(|(id, _)| id)
                .take_while(|&id| id <= end)
                .collect(),
            None => {
                reply.array(0);
                return Ok(());
            }
        },
        None => group
            .pel
            .range_from(start)
            .map(|(id, _)| id)
            .take_while(|&id| id <= end)
            .collect(),
    };
    let now = now();
    let mut body = reply.sibling();
    let mut sent = 0;
    for id in ids.into_iter().filter(|&id| id <= end) {
        if sent == count {
            break;
        }
        let Some(nack) = group.pel.get(id) else {
            continue;
        };
        let idle = (now - nack.delivery_time).max(0);
        if min_idle > 0 && idle < min_idle {
            continue;
        }
        sent += 1;
        body.array(4);
        bulk_id(&mut body, id);
        body.bulk(&nack.consumer);
        body.int(idle);
        body.int(nack.delivery_count as i64);
    }
    reply.array_of(sent, body);
    Ok(())
}

/// A millisecond argument of XCLAIM/XAUTOCLAIM, with the command's own error text.
fn millis_arg(arg: &[u8], what: &str) -> Result<i64, Error> {
    crate::util::parse_i64(arg).ok_or_else(|| format!("ERR Invalid {what}").into())
}

pub fn xclaim(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let stream = stream_mut(&mut locked, key)?
        .filter(|s| s.group(&args[2]).is_some())
        .ok_or_else(|| no_group_error(key, &args[2]))?;
    let min_idle = millis_arg(&args[4], "min-idle-time argument for XCLAIM")?.max(0);
    let mut ids = Vec::new();
    let mut j = 5;
    while j < args.len() {
        match parse_id_full(&args[j], 0, true, false) {
            Ok((id, _)) => ids.push(id),
            Err(_) => break,
        }
        j += 1;
    }
    let now = now();
    let (mut force, mut justid) = (false, false);
    let mut delivery_time = None;
    let mut retry_count = None;
    let mut last_id = StreamId::MIN;
    while j < args.len() {
        let more = j + 1 < args.len();
        let opt = &args[j][..];
        let is = |name: &str| eq_ignore_case(opt, name);
        if is("force") {
            force = true;
        } else if is("justid") {
            justid = true;
        } else if is("idle") && more {
            j += 1;
            delivery_time = Some(now - millis_arg(&args[j], "IDLE option argument for XCLAIM")?);
        } else if is("time") && more {
            j += 1;
            delivery_time = Some(millis_arg(&args[j], "TIME option argument for XCLAIM")?);
        } else if is("retrycount") && more {
            j += 1;
            retry_count = Some(millis_arg(
                &args[j],
                "RETRYCOUNT option argument for XCLAIM",
            )?);
        } else if is("lastid") && more {
            j += 1;
            last_id = parse_strict_id(&args[j])?;
        } else {
            return Err(
                format!("ERR Unrecognized XCLAIM option '{}'", printable(opt, 1024)).into(),
            );
        }
        j += 1;
    }
    let delivery_time = delivery_time
        .filter(|&t| (0..=now).contains(&t))
        .unwrap_or(now);
    ctx.log_nothing();
    let counters_stream: &Stream = stream;
    let exists: Vec<bool> = ids.iter().map(|&id| counters_stream.contains(id)).collect();
    // The groups are set aside while entries are read, so that both can be at hand.
    let mut groups = stream.groups.take();
    let group = groups
        .as_mut()
        .and_then(|g| g.get_mut(&args[2][..]))
        .expect("checked");
    let mut propagate_last_id = false;
    if last_id > group.last_id {
        group.last_id = last_id;
        propagate_last_id = true;
    }
    let mut body = ctx.reply.sibling();
    let mut claimed = 0;
    let mut consumer: Option<Arc<[u8]>> = None;
    for (&id, &exists) in ids.iter().zip(&exists) {
        if !exists {
            if group.pel.contains(id) {
                log_claim(ctx, key, &args[2], group, id);
                propagate_last_id = false;
                count_change(ctx, 1);
                group.ack(id);
            }
            continue;
        }
        if force && !group.pel.contains(id) {
            let (owner, _) = match &consumer {
                Some(c) => (c.clone(), false),
                None => consumer_seen(ctx, group, key, &args[3]),
            };
            consumer = Some(owner.clone());
            let nack = Nack {
                delivery_time: now,
                delivery_count: 0,
                consumer: owner.clone(),
            };
            group.pel.insert(id, nack);
            group.assign(id, &owner);
        }
        let Some(nack) = group.pel.get(id) else {
            continue;
        };
        if min_idle > 0 && now - nack.delivery_time < min_idle {
            continue;
        }
        let owner = match &consumer {
            Some(c) => c.clone(),
            None => consumer_seen(ctx, group, key, &args[3]).0,
        };
        consumer = Some(owner.clone());
        group.assign(id, &owner);
        let nack = group.pel.get_mut(id).expect("pending");
        nack.delivery_time = delivery_time;
        match retry_count {
            Some(n) if n >= 0 => nack.delivery_count = n as u64,
            _ if !justid => nack.delivery_count += 1,
            _ => {}
        }
        if justid {
            bulk_id(&mut body, id);
        } else {
            reply_one(&mut body, stream, id);
        }
        claimed += 1;
        log_claim(ctx, key, &args[2], group, id);
        propagate_last_id = false;
        count_change(ctx, 1);
    }
    if propagate_last_id {
        log_group_id(ctx, key, &args[2], group);
        count_change(ctx, 1);
    }
    stream.groups = groups;
    ctx.reply.array_of(claimed, body);
    Ok(())
}

pub fn xautoclaim(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let min_idle = millis_arg(&args[4], "min-idle-time argument for XAUTOCLAIM")?.max(0);
    let start = parse_bound(&args[5], true)?;
    let mut count: usize = 100;
    let mut justid = false;
    let mut j = 6;
    while j < args.len() {
        if eq_ignore_case(&args[j], "count") && j + 1 < args.len() {
            let max = i64::MAX / 16;
            count = crate::util::parse_i64(&args[j + 1])
                .filter(|n| (1..=max).contains(n))
                .ok_or(Error::from("ERR COUNT must be > 0"))? as usize;
            j += 1;
        } else if eq_ignore_case(&args[j], "justid") {
            justid = true;
        } else {
            return Err(SYNTAX.into());
        }
        j += 1;
    }
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let stream = stream_mut(&mut locked, key)?
        .filter(|s| s.group(&args[2]).is_some())
        .ok_or_else(|| no_group_error(key, &args[2]))?;
    ctx.log_nothing();
    // The groups are set aside while entries are read, so that both can be at hand.
    let mut groups = stream.groups.take();
    let group = groups
        .as_mut()
        .and_then(|g| g.get_mut(&args[2][..]))
        .expect("checked");
    let now = now();
    let mut attempts = count.saturating_mul(10);
    let mut left = count;
    let mut body = ctx.reply.sibling();
    let mut claimed = 0;
    let mut deleted = Vec::new();
    let mut consumer: Option<Arc<[u8]>> = None;
    let mut cursor = group.pel.range_from(start).map(|(id, _)| id).next();
    while attempts > 0 && left > 0 {
        let Some(id) = cursor else { break };
        attempts -= 1;
        cursor = group.pel.range_from(id).nth(1).map(|(id, _)| id);
        if !stream.contains(id) {
            log_claim(ctx, key, &args[2], group, id);
            count_change(ctx, 1);
            group.ack(id);
            deleted.push(id);
            left -= 1;
            continue;
        }
        let idle = now - group.pel.get(id).expect("pending").delivery_time;
        if min_idle > 0 && idle < min_idle {
            continue;
        }
        let owner = match &consumer {
            Some(c) => c.clone(),
            None => consumer_seen(ctx, group, key, &args[3]).0,
        };
        consumer = Some(owner.clone());
        group.assign(id, &owner);
        let nack = group.pel.get_mut(id).expect("pending");
        nack.delivery_time = now;
        if !justid {
            nack.delivery_count += 1;
        }
        if justid {
            bulk_id(&mut body, id);
        } else {
            reply_one(&mut body, stream, id);
        }
        claimed += 1;
        left -= 1;
        log_claim(ctx, key, &args[2], group, id);
        count_change(ctx, 1);
    }
    stream.groups = groups;
    let reply = &mut *ctx.reply;
    reply.array(3);
    bulk_id(reply, cursor.unwrap_or(StreamId::MIN));
    reply.array_of(claimed, body);
    reply.array(deleted.len());
    for id in deleted {
        bulk_id(reply, id);
    }
    Ok(())
}

/// A read-only look at the stream an XINFO subcommand names, which must exist.
fn info_stream<'a>(locked: &'a mut Locked, key: &[u8]) -> Result<&'a mut Stream, Error> {
    stream_mut(locked, key)?.ok_or(Error::from(super::NO_SUCH_KEY))
}

fn entries_read_reply(reply: &mut Reply, group: &Group) {
    match group.entries_read {
        ENTRIES_READ_UNKNOWN => reply.null(),
        n => reply.int(n),
    }
}

fn lag_reply(reply: &mut Reply, stream: &Stream, group: &Group) {
    match stream.counters.lag(group) {
        Some(lag) => reply.int(lag),
        None => reply.null(),
    }
}

pub fn xinfo_consumers(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[2];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let stream = info_stream(&mut locked, key)?;
    let group = named_group(stream, key, &args[3])?;
    let now = now();
    let reply = &mut *ctx.reply;
    reply.array(group.consumers.len());
    for (name, consumer) in &group.consumers {
        reply.map(3);
        reply.bulk(b"name");
        reply.bulk(name);
        reply.bulk(b"pending");
        reply.int(consumer.pel.len() as i64);
        reply.bulk(b"idle");
        reply.int((now - consumer.seen_time).max(0));
    }
    Ok(())
}

pub fn xinfo_groups(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[2];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let stream = info_stream(&mut locked, key)?;
    let reply = &mut *ctx.reply;
    let groups: Vec<_> = stream.groups().into_iter().flatten().collect();
    reply.array(groups.len());
    for (name, group) in groups {
        reply.map(6);
        reply.bulk(b"name");
        reply.bulk(name);
        reply.bulk(b"consumers");
        reply.int(group.consumers.len() as i64);
        reply.bulk(b"pending");
        reply.int(group.pel.len() as i64);
        reply.bulk(b"last-delivered-id");
        bulk_id(reply, group.last_id);
        reply.bulk(b"entries-read");
        entries_read_reply(reply, group);
        reply.bulk(b"lag");
        lag_reply(reply, stream, group);
    }
    Ok(())
}

pub fn xinfo_stream(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let options = &args[3..];
    let full = !options.is_empty();
    let mut count = 10;
    if full {
        if (options.len() != 1 && options.len() != 3) || !eq_ignore_case(&options[0], "full") {
            return Err(subcommand_syntax_error(args));
        }
        if options.len() == 3 {
            if !eq_ignore_case(&options[1], "count") {
                return Err(subcommand_syntax_error(args));
            }
            count = crate::util::parse_i64(&options[2]).ok_or(Error::from(NOT_INTEGER))?;
            if count < 0 {
                count = 10;
            }
        }
    }
    let key = &args[2];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let stream = info_stream(&mut locked, key)?;
    let reply = &mut *ctx.reply;
    let c = stream.counters;
    reply.map(if full { 9 } else { 10 });
    reply.bulk(b"length");
    reply.int(c.length as i64);
    reply.bulk(b"radix-tree-keys");
    reply.int(stream.node_count() as i64);
    reply.bulk(b"radix-tree-nodes");
    reply.int(stream.radix_nodes() as i64);
    reply.bulk(b"last-generated-id");
    bulk_id(reply, c.last_id);
    reply.bulk(b"max-deleted-entry-id");
    bulk_id(reply, c.max_deleted);
    reply.bulk(b"entries-added");
    reply.int(c.entries_added as i64);
    reply.bulk(b"recorded-first-entry-id");
    bulk_id(reply, c.first_id);
    if !full {
        reply.bulk(b"groups");
        reply.int(stream.groups().map_or(0, |g| g.len()) as i64);
        for (label, rev) in [(&b"first-entry"[..], false), (b"last-entry", true)] {
            reply.bulk(label);
            let mut found = false;
            stream.range(StreamId::MIN, StreamId::MAX, rev, |entry| {
                reply_entry(reply, entry);
                found = true;
                false
            });
            if !found {
                reply.null();
            }
        }
        return Ok(());
    }
    let count = count as usize;
    let within = |n: usize| count == 0 || n < count;
    reply.bulk(b"entries");
    reply_range(reply, stream, StreamId::MIN, StreamId::MAX, count, false);
    reply.bulk(b"groups");
    let groups: Vec<_> = stream.groups().into_iter().flatten().collect();
    reply.array(groups.len());
    for (name, group) in groups {
        reply.map(7);
        reply.bulk(b"name");
        reply.bulk(name);
        reply.bulk(b"last-delivered-id");
        bulk_id(reply, group.last_id);
        reply.bulk(b"entries-read");
        entries_read_reply(reply, group);
        reply.bulk(b"lag");
        lag_reply(reply, stream, group);
        reply.bulk(b"pel-count");
        reply.int(group.pel.len() as i64);
        reply.bulk(b"pending");
        let pending: Vec<_> = group
            .pel
            .iter()
            .enumerate()
            .take_while(|(i, _)| within(*i))
            .collect();
        reply.array(pending.len());
        for (_, (id, nack)) in pending {
            reply.array(4);
            bulk_id(reply, id);
            reply.bulk(&nack.consumer);
            reply.int(nack.delivery_time);
            reply.int(nack.delivery_count as i64);
        }
        reply.bulk(b"consumers");
        reply.array(group.consumers.len());
        for (name, consumer) in &group.consumers {
            reply.map(4);
            reply.bulk(b"name");
            reply.bulk(name);
            reply.bulk(b"seen-time");
            reply.int(consumer.seen_time);
            reply.bulk(b"pel-count");
            reply.int(consumer.pel.len() as i64);
            reply.bulk(b"pending");
            let ids: Vec<_> = consumer
                .pel
                .iter()
                .enumerate()
                .take_while(|(i, _)| within(*i))
                .collect();
            reply.array(ids.len());
            for (_, (id, ())) in ids {
                let Some(nack) = group.pel.get(id) else {
                    continue;
                };
                reply.array(3);
                bulk_id(reply, id);
                reply.int(nack.delivery_time);
                reply.int(nack.delivery_count as i64);
            }
        }
    }
    Ok(())
}

pub fn xinfo_help(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    reply_help(
        ctx,
        &[
            "CONSUMERS <key> <groupname>",
            "    Show consumers of <groupname>.",
            "GROUPS <key>",
            "    Show the stream consumer groups.",
            "STREAM <key> [FULL [COUNT <count>]",
            "    Show information about the stream.",
        ],
    );
    Ok(())
}
