//! Sorted set commands (Redis's t_zset.c).

use bytes::Bytes;

use super::keys::ScanOptions;
use super::{
    CmdResult, Ctx, Error, NOT_FLOAT, SYNTAX, first_nonempty, int_arg, intercard_limit, mpop_args,
    timeout_arg, typed_mut, typed_or_new,
};
use crate::store::{Class, Locked, Value, Zset, ZsetLimits};
use crate::util::{Rng, eq_ignore_case, parse_f64, parse_i64};

/// Members with their scores, in reply order.
type Entries = Vec<(Vec<u8>, f64)>;

const NAN_SCORE: &str = "ERR resulting score is not a number (NaN)";
const NOT_FLOAT_RANGE: &str = "ERR min or max is not a float";
const NOT_LEX_RANGE: &str = "ERR min or max not valid string range item";

fn limits(ctx: &Ctx) -> ZsetLimits {
    ZsetLimits::from_config(&ctx.server.config)
}

pub(super) fn zset_mut<'a>(
    locked: &'a mut Locked,
    key: &[u8],
) -> Result<Option<&'a mut Zset>, Error> {
    typed_mut(locked, key, Value::as_zset_mut)
}

fn zset_or_new<'a>(locked: &'a mut Locked, key: &[u8]) -> Result<&'a mut Zset, Error> {
    typed_or_new(locked, key, Value::as_zset_mut, || {
        Value::Zset(Box::default())
    })
}

fn delete_if_empty(ctx: &Ctx, locked: &mut Locked, key: &[u8]) {
    if matches!(zset_mut(locked, key), Ok(Some(z)) if z.is_empty()) {
        locked.remove(key);
        ctx.modified(key, Class::Generic, "del");
    }
}

fn float_arg(arg: &[u8]) -> Result<f64, Error> {
    parse_f64(arg).ok_or(Error::from(NOT_FLOAT))
}

pub fn zadd(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    add_generic(ctx, args, false)
}

pub fn zincrby(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    add_generic(ctx, args, true)
}

fn add_generic(ctx: &mut Ctx, args: &[Bytes], zincrby: bool) -> CmdResult {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, zincrby);
    let mut i = 2;
    while !zincrby && i < args.len() {
        let opt = &args[i];
        if eq_ignore_case(opt, "nx") {
            nx = true;
        } else if eq_ignore_case(opt, "xx") {
            xx = true;
        } else if eq_ignore_case(opt, "gt") {
            gt = true;
        } else if eq_ignore_case(opt, "lt") {
            lt = true;
        } else if eq_ignore_case(opt, "ch") {
            ch = true;
        } else if eq_ignore_case(opt, "incr") {
            incr = true;
        } else {
            break;
        }
        i += 1;
    }
    let pairs = &args[i..];
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Err(SYNTAX.into());
    }
    if nx && xx {
        return Err("ERR XX and NX options at the same time are not compatible".into());
    }
    if [gt, lt, nx].iter().filter(|&&set| set).count() > 1 {
        return Err("ERR GT, LT, and/or NX options at the same time are not compatible".into());
    }
    if incr && pairs.len() > 2 {
        return Err("ERR INCR option supports a single increment-element pair".into());
    }
    let scores = pairs
        .chunks(2)
        .map(|pair| float_arg(&pair[0]))
        .collect::<Result<Vec<f64>, Error>>()?;
    let limits = limits(ctx);
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    if zset_mut(&mut locked, key)?.is_none() && xx {
        if incr {
            ctx.reply.null();
        } else {
            ctx.reply.int(0);
        }
        return Ok(());
    }
    let zset = zset_or_new(&mut locked, key)?;
    let (mut added, mut updated, mut last_score, mut processed) = (0, 0, 0.0, false);
    for (pair, &score) in pairs.chunks(2).zip(&scores) {
        let member = &pair[1];
        let old = zset.score(member);
        let new = match (old, incr) {
            (Some(old), true) => old + score,
            _ => score,
        };
        if new.is_nan() {
            delete_if_empty(ctx, &mut locked, key);
            return Err(NAN_SCORE.into());
        }
        let apply = match old {
            None => !xx,
            Some(old) => {
                let blocked_by_gt = gt && new <= old;
                let blocked_by_lt = lt && new >= old;
                !(nx || blocked_by_gt || blocked_by_lt)
            }
        };
        if !apply {
            continue;
        }
        processed = true;
        last_score = new;
        match old {
            None => added += 1,
            Some(old) if old != new => updated += 1,
            Some(_) => {}
        }
        zset.insert(member, new, limits);
    }
    if incr {
        if processed {
            ctx.reply.double(last_score);
        } else {
            ctx.reply.null();
        }
    } else {
        ctx.reply.int(if ch { added + updated } else { added });
    }
    if added + updated > 0 {
        ctx.modified(key, Class::ZSet, if incr { "zincr" } else { "zadd" });
    }
    delete_if_empty(ctx, &mut locked, key);
    Ok(())
}

pub fn zrem(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let Some(zset) = zset_mut(&mut locked, key)? else {
        ctx.reply.int(0);
        return Ok(());
    };
    let removed = args[2..]
        .iter()
        .filter(|m| zset.remove(m).is_some())
        .count();
    if removed > 0 {
        ctx.modified(key, Class::ZSet, "zrem");
        delete_if_empty(ctx, &mut locked, key);
    }
    ctx.reply.int(removed as i64);
    Ok(())
}

pub fn zcard(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let len = zset_mut(&mut locked, &args[1])?.map_or(0, |z| z.len());
    ctx.reply.int(len as i64);
    Ok(())
}

pub fn zscore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    match zset_mut(&mut locked, &args[1])?.and_then(|z| z.score(&args[2])) {
        Some(score) => ctx.reply.double(score),
        None => ctx.reply.null(),
    }
    Ok(())
}

pub fn zmscore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let zset = zset_mut(&mut locked, &args[1])?;
    ctx.reply.array(args.len() - 2);
    for member in &args[2..] {
        match zset.as_ref().and_then(|z| z.score(member)) {
            Some(score) => ctx.reply.double(score),
            None => ctx.reply.null(),
        }
    }
    Ok(())
}

fn rank_generic(ctx: &mut Ctx, args: &[Bytes], rev: bool) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let zset = zset_mut(&mut locked, &args[1])?;
    match zset.and_then(|z| z.rank(&args[2]).map(|r| (r, z.len()))) {
        Some((rank, len)) => ctx
            .reply
            .int(if rev { len - 1 - rank } else { rank } as i64),
        None => ctx.reply.null(),
    }
    Ok(())
}

pub fn zrank(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    rank_generic(ctx, args, false)
}

pub fn zrevrank(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    rank_generic(ctx, args, true)
}

/// A score range bound: the value and whether it is excluded (`(1.5`).
#[derive(Clone, Copy)]
struct ScoreBound {
    value: f64,
    exclusive: bool,
}

fn score_bound(arg: &[u8]) -> Result<ScoreBound, Error> {
    let (exclusive, text) = match arg.first() {
        Some(b'(') => (true, &arg[1..]),
        _ => (false, arg),
    };
    let value = parse_f64(text).ok_or(Error::from(NOT_FLOAT_RANGE))?;
    Ok(ScoreBound { value, exclusive })
}

/// A lex range bound: `-`, `+`, `[member` or `(member`.
#[derive(Clone)]
enum LexBound {
    Min,
    Max,
    Inclusive(Vec<u8>),
    Exclusive(Vec<u8>),
}

fn lex_bound(arg: &[u8]) -> Result<LexBound, Error> {
    match arg {
        b"-" => Ok(LexBound::Min),
        b"+" => Ok(LexBound::Max),
        [b'[', rest @ ..] => Ok(LexBound::Inclusive(rest.to_vec())),
        [b'(', rest @ ..] => Ok(LexBound::Exclusive(rest.to_vec())),
        _ => Err(NOT_LEX_RANGE.into()),
    }
}

/// Entries `[start, end)` by rank that a range selects.
enum Range {
    Score(ScoreBound, ScoreBound),
    Lex(LexBound, LexBound),
}

impl Range {
    /// The rank span `[start, end)` of the entries in range (ascending).
    fn span(&self, zset: &Zset) -> (usize, usize) {
        match self {
            Range::Score(min, max) => {
                let start = zset.count_before(|s, _| {
                    if min.exclusive {
                        s > min.value
                    } else {
                        s >= min.value
                    }
                });
                let end = zset.count_before(|s, _| {
                    if max.exclusive {
                        s >= max.value
                    } else {
                        s > max.value
                    }
                });
                (start, end.max(start))
            }
            Range::Lex(min, max) => {
                let start = zset.count_before(|_, m| match min {
                    LexBound::Min => true,
                    LexBound::Max => false,
                    LexBound::Inclusive(v) => m >= &v[..],
                    LexBound::Exclusive(v) => m > &v[..],
                });
                let end = zset.count_before(|_, m| match max {
                    LexBound::Min => true,
                    LexBound::Max => false,
                    LexBound::Inclusive(v) => m > &v[..],
                    LexBound::Exclusive(v) => m >= &v[..],
                });
                (start, end.max(start))
            }
        }
    }
}

fn count_range(ctx: &mut Ctx, args: &[Bytes], range: Range) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let count = zset_mut(&mut locked, &args[1])?.map_or(0, |z| {
        let (start, end) = range.span(z);
        end - start
    });
    ctx.reply.int(count as i64);
    Ok(())
}

pub fn zcount(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let range = Range::Score(score_bound(&args[2])?, score_bound(&args[3])?);
    count_range(ctx, args, range)
}

pub fn zlexcount(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let range = Range::Lex(lex_bound(&args[2])?, lex_bound(&args[3])?);
    count_range(ctx, args, range)
}

#[derive(Clone, Copy, PartialEq)]
enum By {
    Rank,
    Score,
    Lex,
}

/// A parsed ZRANGE-family request.
struct RangeRequest {
    by: By,
    rev: bool,
    with_scores: bool,
    limit: Option<(i64, i64)>,
}

/// The ascending rank window `[from, to)` a ZRANGE-family request selects; the reply walks it
/// backwards when the request is reversed.
fn window(
    zset: &Zset,
    req: &RangeRequest,
    min: &[u8],
    max: &[u8],
) -> Result<(usize, usize), Error> {
    let len = zset.len() as i64;
    if req.by == By::Rank {
        let (mut start, mut end) = (int_arg(min)?, int_arg(max)?);
        if start < 0 {
            start += len;
        }
        if end < 0 {
            end += len;
        }
        start = start.max(0);
        if start > end || start >= len {
            return Ok((0, 0));
        }
        end = end.min(len - 1);
        return Ok(if req.rev {
            ((len - 1 - end) as usize, (len - start) as usize)
        } else {
            (start as usize, (end + 1) as usize)
        });
    }
    // Reversed forms take max first.
    let (low, high) = if req.rev { (max, min) } else { (min, max) };
    let range = match req.by {
        By::Score => Range::Score(score_bound(low)?, score_bound(high)?),
        _ => Range::Lex(lex_bound(low)?, lex_bound(high)?),
    };
    let (start, end) = range.span(zset);
    let (offset, count) = req.limit.unwrap_or((0, -1));
    if offset < 0 {
        return Ok((0, 0));
    }
    let available = end - start;
    let skip = (offset as usize).min(available);
    let take = if count < 0 {
        available - skip
    } else {
        (count as usize).min(available - skip)
    };
    Ok(if req.rev {
        (end - skip - take, end - skip)
    } else {
        (start + skip, start + skip + take)
    })
}

/// The entries a ZRANGE-family request selects, in reply order.
fn select(zset: &Zset, req: &RangeRequest, min: &[u8], max: &[u8]) -> Result<Entries, Error> {
    let (from, to) = window(zset, req, min, max)?;
    Ok(zset.range(from, to, req.rev))
}

fn reply_entries(ctx: &mut Ctx, entries: &[(Vec<u8>, f64)], with_scores: bool) {
    if with_scores && ctx.reply.is_resp3() {
        ctx.reply.array(entries.len());
        for (member, score) in entries {
            ctx.reply.array(2);
            ctx.reply.bulk(member);
            ctx.reply.double(*score);
        }
        return;
    }
    ctx.reply
        .array(entries.len() * if with_scores { 2 } else { 1 });
    for (member, score) in entries {
        ctx.reply.bulk(member);
        if with_scores {
            ctx.reply.double(*score);
        }
    }
}

/// Parses the options after `min max` of ZRANGE and ZRANGESTORE.
fn parse_range_options(
    args: &[Bytes],
    mut req: RangeRequest,
    allow_scores: bool,
) -> Result<RangeRequest, Error> {
    let mut i = 0;
    while i < args.len() {
        let opt = &args[i];
        if allow_scores && eq_ignore_case(opt, "withscores") {
            req.with_scores = true;
        } else if eq_ignore_case(opt, "limit") && i + 2 < args.len() {
            req.limit = Some((int_arg(&args[i + 1])?, int_arg(&args[i + 2])?));
            i += 2;
        } else if eq_ignore_case(opt, "byscore") && req.by == By::Rank {
            req.by = By::Score;
        } else if eq_ignore_case(opt, "bylex") && req.by == By::Rank {
            req.by = By::Lex;
        } else if eq_ignore_case(opt, "rev") {
            req.rev = true;
        } else {
            return Err(SYNTAX.into());
        }
        i += 1;
    }
    if req.limit.is_some() && req.by == By::Rank {
        return Err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
                .into(),
        );
    }
    if req.with_scores && req.by == By::Lex {
        return Err("ERR syntax error, WITHSCORES not supported in combination with BYLEX".into());
    }
    Ok(req)
}

fn range_reply(ctx: &mut Ctx, key: &Bytes, min: &[u8], max: &[u8], req: RangeRequest) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(key);
    let empty = Zset::default();
    // A missing key still has its range validated, as in Redis.
    let zset = zset_mut(&mut locked, key)?.map_or(&empty, |z| &*z);
    let (from, to) = window(zset, &req, min, max)?;
    let nested = req.with_scores && ctx.reply.is_resp3();
    let per_entry = if req.with_scores && !nested { 2 } else { 1 };
    ctx.reply.array((to - from) * per_entry);
    zset.visit_range(from, to, req.rev, |member, score| {
        if nested {
            ctx.reply.array(2);
        }
        ctx.reply.bulk(member);
        if req.with_scores {
            ctx.reply.double(score);
        }
    });
    Ok(())
}

fn request(by: By, rev: bool) -> RangeRequest {
    RangeRequest {
        by,
        rev,
        with_scores: false,
        limit: None,
    }
}

pub fn zrange(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let req = parse_range_options(&args[4..], request(By::Rank, false), true)?;
    range_reply(ctx, &args[1], &args[2], &args[3], req)
}

/// The legacy forms: ZREVRANGE, ZRANGEBYSCORE, ZREVRANGEBYSCORE, ZRANGEBYLEX, ZREVRANGEBYLEX.
fn legacy_range(ctx: &mut Ctx, args: &[Bytes], by: By, rev: bool) -> CmdResult {
    let mut req = request(by, rev);
    let mut i = 4;
    while i < args.len() {
        if by != By::Lex && eq_ignore_case(&args[i], "withscores") {
            req.with_scores = true;
        } else if by != By::Rank && eq_ignore_case(&args[i], "limit") && i + 2 < args.len() {
            req.limit = Some((int_arg(&args[i + 1])?, int_arg(&args[i + 2])?));
            i += 2;
        } else {
            return Err(SYNTAX.into());
        }
        i += 1;
    }
    range_reply(ctx, &args[1], &args[2], &args[3], req)
}

pub fn zrevrange(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    legacy_range(ctx, args, By::Rank, true)
}

pub fn zrangebyscore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    legacy_range(ctx, args, By::Score, false)
}

pub fn zrevrangebyscore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    legacy_range(ctx, args, By::Score, true)
}

pub fn zrangebylex(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    legacy_range(ctx, args, By::Lex, false)
}

pub fn zrevrangebylex(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    legacy_range(ctx, args, By::Lex, true)
}

/// Stores `entries` as a sorted set at `dst` (deleting it when empty); replies the size.
pub(super) fn store(ctx: &mut Ctx, dst: &[u8], entries: &[(Vec<u8>, f64)], event: &str) {
    let limits = limits(ctx);
    let db = ctx.db();
    let mut locked = db.lock(dst);
    if entries.is_empty() {
        if locked.remove(dst).is_some() {
            ctx.modified(dst, Class::Generic, "del");
        }
    } else {
        let mut zset = Zset::default();
        for (member, score) in entries {
            zset.insert(member, *score, limits);
        }
        locked.set(dst, Value::Zset(Box::new(zset)));
        ctx.modified(dst, Class::ZSet, event);
    }
    ctx.reply.int(entries.len() as i64);
}

pub fn zrangestore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let req = parse_range_options(&args[5..], request(By::Rank, false), false)?;
    let src = &args[2];
    let db = ctx.db();
    let entries = {
        let mut locked = db.lock(src);
        match zset_mut(&mut locked, src)? {
            Some(zset) => select(zset, &req, &args[3], &args[4])?,
            None => select(&Zset::default(), &req, &args[3], &args[4])?,
        }
    };
    store(ctx, &args[1], &entries, "zrangestore");
    Ok(())
}

fn remove_range(ctx: &mut Ctx, args: &[Bytes], by: By) -> CmdResult {
    let req = request(by, false);
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let Some(zset) = zset_mut(&mut locked, key)? else {
        // Validate the range all the same.
        select(&Zset::default(), &req, &args[2], &args[3])?;
        ctx.reply.int(0);
        return Ok(());
    };
    let doomed = select(zset, &req, &args[2], &args[3])?;
    for (member, _) in &doomed {
        zset.remove(member);
    }
    if !doomed.is_empty() {
        let event = match by {
            By::Rank => "zremrangebyrank",
            By::Score => "zremrangebyscore",
            By::Lex => "zremrangebylex",
        };
        ctx.modified(key, Class::ZSet, event);
        delete_if_empty(ctx, &mut locked, key);
    }
    ctx.reply.int(doomed.len() as i64);
    Ok(())
}

pub fn zremrangebyrank(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    remove_range(ctx, args, By::Rank)
}

pub fn zremrangebyscore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    remove_range(ctx, args, By::Score)
}

pub fn zremrangebylex(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    remove_range(ctx, args, By::Lex)
}

/// Pops up to `count` entries from the low (`max` false) or high end of the first non-empty
/// sorted set among `keys`. Returns the key and entries, or None when all are empty.
fn pop_first(
    ctx: &mut Ctx,
    keys: &[Bytes],
    max: bool,
    count: usize,
) -> Result<Option<(Bytes, Entries)>, Error> {
    let Some((key, mut locked)) = first_nonempty(ctx, keys, Value::as_zset_mut)? else {
        return Ok(None);
    };
    let zset = zset_mut(&mut locked, key)?.expect("found above");
    let entries = zset.pop(count, max);
    // Logged with the count it popped, as Redis propagates it.
    let pop = Bytes::from_static(if max { b"ZPOPMAX" } else { b"ZPOPMIN" });
    ctx.log_as(vec![
        pop,
        key.clone(),
        Bytes::from(entries.len().to_string()),
    ]);
    ctx.modified(key, Class::ZSet, if max { "zpopmax" } else { "zpopmin" });
    delete_if_empty(ctx, &mut locked, key);
    Ok(Some((key.clone(), entries)))
}

fn zpop(ctx: &mut Ctx, args: &[Bytes], max: bool) -> CmdResult {
    if args.len() > 3 {
        return Err(SYNTAX.into());
    }
    let count = match args.get(2) {
        Some(arg) => Some(
            parse_i64(arg)
                .filter(|n| *n >= 0)
                .ok_or(Error::from("ERR value is out of range, must be positive"))?
                as usize,
        ),
        None => None,
    };
    let popped = match count {
        Some(0) => {
            // Nothing to pop, but the type is still checked.
            zset_mut(&mut ctx.db().lock(&args[1]), &args[1])?;
            None
        }
        _ => pop_first(ctx, &args[1..2], max, count.unwrap_or(1))?,
    };
    let entries = popped.map(|(_, e)| e).unwrap_or_default();
    // ZPOPMIN with a count replies pairs like WITHSCORES; without, a flat [member, score].
    if count.is_some() {
        reply_entries(ctx, &entries, true);
    } else {
        ctx.reply.array(entries.len() * 2);
        for (member, score) in &entries {
            ctx.reply.bulk(member);
            ctx.reply.double(*score);
        }
    }
    Ok(())
}

pub fn zpopmin(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    zpop(ctx, args, false)
}

pub fn zpopmax(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    zpop(ctx, args, true)
}

fn bzpop(ctx: &mut Ctx, args: &[Bytes], max: bool) -> CmdResult {
    let deadline = timeout_arg(&args[args.len() - 1])?;
    let keys = &args[1..args.len() - 1];
    if let Some((key, entries)) = pop_first(ctx, keys, max, 1)? {
        let (member, score) = &entries[0];
        ctx.reply.array(3);
        ctx.reply.bulk(&key);
        ctx.reply.bulk(member);
        ctx.reply.double(*score);
        return Ok(());
    }
    if ctx.client.deny_blocking {
        ctx.reply.null_array();
    } else {
        ctx.block(keys.to_vec(), deadline);
    }
    Ok(())
}

pub fn bzpopmin(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    bzpop(ctx, args, false)
}

pub fn bzpopmax(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    bzpop(ctx, args, true)
}

/// ZMPOP/BZMPOP from `numkeys` on: keys, whether MAX, and COUNT.
fn parse_mpop(args: &[Bytes]) -> Result<(&[Bytes], bool, usize), Error> {
    mpop_args(args, ["min", "max"])
}

/// ZMPOP's reply: the key, then [member, score] pairs, nested in both protocols.
fn reply_mpop(ctx: &mut Ctx, key: &[u8], entries: &[(Vec<u8>, f64)]) {
    ctx.reply.array(2);
    ctx.reply.bulk(key);
    ctx.reply.array(entries.len());
    for (member, score) in entries {
        ctx.reply.array(2);
        ctx.reply.bulk(member);
        ctx.reply.double(*score);
    }
}

pub fn zmpop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (keys, max, count) = parse_mpop(&args[1..])?;
    match pop_first(ctx, keys, max, count)? {
        Some((key, entries)) => reply_mpop(ctx, &key, &entries),
        None => ctx.reply.null_array(),
    }
    Ok(())
}

pub fn bzmpop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (keys, max, count) = parse_mpop(&args[2..])?;
    let deadline = timeout_arg(&args[1])?;
    if let Some((key, entries)) = pop_first(ctx, keys, max, count)? {
        reply_mpop(ctx, &key, &entries);
        return Ok(());
    }
    if ctx.client.deny_blocking {
        ctx.reply.null_array();
    } else {
        ctx.block(keys.to_vec(), deadline);
    }
    Ok(())
}

pub fn zrandmember(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let with_scores = match args.get(3) {
        None => false,
        Some(arg) if args.len() == 4 && eq_ignore_case(arg, "withscores") => true,
        Some(_) => return Err(SYNTAX.into()),
    };
    let count = args.get(2).map(|a| int_arg(a)).transpose()?;
    if let Some(n) = count
        && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&n)
    {
        return Err("ERR value is out of range".into());
    }
    // An empty bulk string, the shortest reply a pick can have, is 6 bytes.
    let cap = ctx.server.reply_items_cap(6);
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let zset = zset_mut(&mut locked, &args[1])?;
    let mut rng = Rng::new();
    let Some(count) = count else {
        match zset.and_then(|z| z.random(|| rng.next_u64())) {
            Some((member, _)) => ctx.reply.bulk(member),
            None => ctx.reply.null(),
        }
        return Ok(());
    };
    let Some(zset) = zset else {
        ctx.reply.array(0);
        return Ok(());
    };
    let picks: Entries = if count < 0 {
        (0..count.unsigned_abs().min(cap))
            .filter_map(|_| zset.random(|| rng.next_u64()).map(|(m, s)| (m.to_vec(), s)))
            .collect()
    } else {
        rng.sample(zset.all(), count as usize)
    };
    drop(locked);
    reply_entries(ctx, &picks, with_scores);
    Ok(())
}

pub fn zscan(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let options = ScanOptions::parse(&args[2..], false)?;
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let (cursor, found) = match zset_mut(&mut locked, &args[1])? {
        Some(value) => options.gather(|cursor, found: &mut Entries| {
            value.scan(cursor, |member, score| {
                if options.matches(member) {
                    found.push((member.to_vec(), score));
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
    for (member, score) in &found {
        ctx.reply.bulk(member);
        ctx.reply
            .bulk(crate::util::format_double(*score).as_bytes());
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

/// The `numkeys` at `args[0]`, checked against the arguments after it.
fn parse_numkeys(ctx: &Ctx, args: &[Bytes]) -> Result<usize, Error> {
    let numkeys = int_arg(&args[0])?;
    if numkeys < 1 {
        return Err(format!(
            "ERR at least 1 input key is needed for '{}' command",
            ctx.name()
        )
        .into());
    }
    if numkeys as usize > args.len() - 1 {
        return Err(SYNTAX.into());
    }
    Ok(numkeys as usize)
}

/// ZUNION/ZINTER/ZDIFF (and their STORE forms, and ZINTERCARD) from `numkeys` on.
fn combine(
    ctx: &mut Ctx,
    args: &[Bytes],
    op: SetOp,
    allow_scores: bool,
) -> Result<(Entries, bool), Error> {
    let numkeys = parse_numkeys(ctx, args)?;
    let keys = &args[1..=numkeys];
    let mut weights = vec![1.0; numkeys];
    let mut aggregate = Aggregate::Sum;
    let mut with_scores = false;
    let mut i = numkeys + 1;
    while i < args.len() {
        let opt = &args[i];
        let left = args.len() - i - 1;
        if op != SetOp::Diff && eq_ignore_case(opt, "weights") && left >= numkeys {
            for (slot, arg) in weights.iter_mut().zip(&args[i + 1..=i + numkeys]) {
                *slot = parse_f64(arg).ok_or(Error::from("ERR weight value is not a float"))?;
            }
            i += numkeys;
        } else if op != SetOp::Diff && eq_ignore_case(opt, "aggregate") && left >= 1 {
            let kind = &args[i + 1];
            aggregate = if eq_ignore_case(kind, "sum") {
                Aggregate::Sum
            } else if eq_ignore_case(kind, "min") {
                Aggregate::Min
            } else if eq_ignore_case(kind, "max") {
                Aggregate::Max
            } else {
                return Err(SYNTAX.into());
            };
            i += 1;
        } else if allow_scores && eq_ignore_case(opt, "withscores") {
            with_scores = true;
        } else {
            return Err(SYNTAX.into());
        }
        i += 1;
    }
    // Sets count as sorted sets with every score 1, as in Redis.
    let db = ctx.db();
    let mut inputs: Vec<Option<Entries>> = Vec::with_capacity(numkeys);
    for key in keys {
        let mut locked = db.lock(key);
        let input = match locked.get(key).map(|e| &mut e.value) {
            None => None,
            Some(Value::Zset(zset)) => Some(zset.all()),
            Some(Value::Set(set)) => Some(set.members().into_iter().map(|m| (m, 1.0)).collect()),
            Some(_) => return Err(super::WRONGTYPE.into()),
        };
        inputs.push(input);
    }
    let combine_scores = |a: f64, b: f64| {
        let v = match aggregate {
            Aggregate::Sum => a + b,
            Aggregate::Min => a.min(b),
            Aggregate::Max => a.max(b),
        };
        if v.is_nan() { 0.0 } else { v }
    };
    let weighted = |score: f64, weight: f64| {
        let v = score * weight;
        if v.is_nan() { 0.0 } else { v }
    };
    let mut result: Entries = Vec::new();
    match op {
        SetOp::Union => {
            let mut index: std::collections::HashMap<Vec<u8>, usize> = Default::default();
            for (input, &weight) in inputs.iter().zip(&weights) {
                for (member, score) in input.iter().flatten() {
                    let score = weighted(*score, weight);
                    match index.get(member) {
                        Some(&at) => result[at].1 = combine_scores(result[at].1, score),
                        None => {
                            index.insert(member.clone(), result.len());
                            result.push((member.clone(), score));
                        }
                    }
                }
            }
        }
        SetOp::Inter => {
            if inputs.iter().all(Option::is_some) {
                let maps: Vec<std::collections::HashMap<&[u8], f64>> = inputs
                    .iter()
                    .flatten()
                    .map(|entries| entries.iter().map(|(m, s)| (&m[..], *s)).collect())
                    .collect();
                for (member, score) in inputs[0].iter().flatten() {
                    let mut total = weighted(*score, weights[0]);
                    let mut everywhere = true;
                    for (map, &weight) in maps[1..].iter().zip(&weights[1..]) {
                        match map.get(&member[..]) {
                            Some(s) => total = combine_scores(total, weighted(*s, weight)),
                            None => {
                                everywhere = false;
                                break;
                            }
                        }
                    }
                    if everywhere {
                        result.push((member.clone(), total));
                    }
                }
            }
        }
        SetOp::Diff => {
            if let Some(Some(first)) = inputs.first() {
                let others: std::collections::HashSet<&[u8]> = inputs[1..]
                    .iter()
                    .flatten()
                    .flat_map(|e| e.iter().map(|(m, _)| &m[..]))
                    .collect();
                result = first
                    .iter()
                    .filter(|(m, _)| !others.contains(&m[..]))
                    .cloned()
                    .collect();
            }
        }
    }
    result.sort_by(|a, b| {
        a.1.partial_cmp(&b.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    });
    Ok((result, with_scores))
}

fn combine_reply(ctx: &mut Ctx, args: &[Bytes], op: SetOp) -> CmdResult {
    let (entries, with_scores) = combine(ctx, &args[1..], op, true)?;
    reply_entries(ctx, &entries, with_scores);
    Ok(())
}

fn combine_store(ctx: &mut Ctx, args: &[Bytes], op: SetOp, event: &str) -> CmdResult {
    let (entries, _) = combine(ctx, &args[2..], op, false)?;
    store(ctx, &args[1], &entries, event);
    Ok(())
}

pub fn zunion(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    combine_reply(ctx, args, SetOp::Union)
}

pub fn zinter(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    combine_reply(ctx, args, SetOp::Inter)
}

pub fn zdiff(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    combine_reply(ctx, args, SetOp::Diff)
}

pub fn zunionstore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    combine_store(ctx, args, SetOp::Union, "zunionstore")
}

pub fn zinterstore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    combine_store(ctx, args, SetOp::Inter, "zinterstore")
}

pub fn zdiffstore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    combine_store(ctx, args, SetOp::Diff, "zdiffstore")
}

pub fn zintercard(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let numkeys = parse_numkeys(ctx, &args[1..])?;
    let limit = intercard_limit(&args[2 + numkeys..])?;
    let (entries, _) = combine(ctx, &args[1..2 + numkeys], SetOp::Inter, false)?;
    let count = if limit == 0 {
        entries.len()
    } else {
        entries.len().min(limit)
    };
    ctx.reply.int(count as i64);
    Ok(())
}
