//! Generic key commands (Redis's db.c and expire.c): existence, deletion, renaming, copying,
//! expiry, iteration and OBJECT.

use bytes::Bytes;

use super::{CmdResult, Ctx, DB_OUT_OF_RANGE, Error, NO_SUCH_KEY, SYNTAX, int_arg, reply_help};
use crate::store::clock::AccessClock;
use crate::store::{Class, Entry};
use crate::util::{eq_ignore_case, glob_match, parse_i64};

pub fn del(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let lazy = ctx
        .server
        .config
        .bool(crate::config::LAZYFREE_LAZY_USER_DEL);
    delete_keys(ctx, args, lazy)
}

/// DEL whose big values are freed on the lazyfree thread.
pub fn unlink(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    delete_keys(ctx, args, true)
}

fn delete_keys(ctx: &mut Ctx, args: &[Bytes], lazy: bool) -> CmdResult {
    let db = ctx.db();
    let mut deleted = 0;
    for key in &args[1..] {
        let Some(entry) = db.lock(key).remove(key) else {
            continue;
        };
        if lazy {
            ctx.server.store.lazyfree.drop_value(entry.value);
        }
        deleted += 1;
        ctx.modified(key, Class::Generic, "del");
    }
    ctx.reply.int(deleted);
    Ok(())
}

pub fn exists(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    count_live(ctx, args, false)
}

/// Like EXISTS, but each key found counts as an access.
pub fn touch(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    count_live(ctx, args, true)
}

/// How many of the keys are live; with `access`, looking moves their clocks.
fn count_live(ctx: &mut Ctx, args: &[Bytes], access: bool) -> CmdResult {
    let db = ctx.db();
    let count = args[1..]
        .iter()
        .filter(|key| {
            let mut locked = db.lock(key);
            if access {
                locked.get(key).is_some()
            } else {
                locked.contains(key)
            }
        })
        .count();
    ctx.reply.int(count as i64);
    Ok(())
}

pub fn key_type(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let name = locked
        .peek(&args[1])
        .map_or("none", |e| e.value.kind().name());
    ctx.reply.simple(name);
    Ok(())
}

fn rename_generic(ctx: &mut Ctx, args: &[Bytes], nx: bool) -> CmdResult {
    let (src, dst) = (&args[1], &args[2]);
    let db = ctx.db();
    if src == dst {
        if !db.lock(src).contains(src) {
            return Err(NO_SUCH_KEY.into());
        }
        if nx {
            ctx.reply.int(0)
        } else {
            ctx.reply.ok()
        }
        return Ok(());
    }
    if !db.lock(src).contains(src) {
        return Err(NO_SUCH_KEY.into());
    }
    if nx && db.lock(dst).contains(dst) {
        ctx.reply.int(0);
        return Ok(());
    }
    let entry = db
        .lock(src)
        .remove(src)
        .expect("checked above under the exclusive gate");
    let expire = entry.expire_at();
    db.lock(dst).set_with_expire(dst, entry.value, expire);
    ctx.modified(src, Class::Generic, "rename_from");
    ctx.modified(dst, Class::Generic, "rename_to");
    if nx {
        ctx.reply.int(1)
    } else {
        ctx.reply.ok()
    }
    Ok(())
}

pub fn rename(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    rename_generic(ctx, args, false)
}

pub fn renamenx(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    rename_generic(ctx, args, true)
}

fn db_index_arg(ctx: &Ctx, arg: &[u8]) -> Result<usize, Error> {
    let index = parse_i64(arg).ok_or(Error::from("ERR value is not an integer or out of range"))?;
    if index < 0 || index as usize >= ctx.server.store.dbs().len() {
        return Err(DB_OUT_OF_RANGE.into());
    }
    Ok(index as usize)
}

pub fn copy(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (src, dst) = (&args[1], &args[2]);
    let mut target_db = ctx.client.db;
    let mut replace = false;
    let mut i = 3;
    while i < args.len() {
        if eq_ignore_case(&args[i], "replace") {
            replace = true;
        } else if eq_ignore_case(&args[i], "db") && i + 1 < args.len() {
            target_db = db_index_arg(ctx, &args[i + 1])?;
            i += 1;
        } else {
            return Err(SYNTAX.into());
        }
        i += 1;
    }
    if src == dst && target_db == ctx.client.db {
        return Err("ERR source and destination objects are the same".into());
    }
    let source = ctx
        .db()
        .lock(src)
        .get(src)
        .map(|e| (e.value.clone(), e.expire_at()));
    let Some((value, expire)) = source else {
        ctx.reply.int(0);
        return Ok(());
    };
    let target = ctx.server.store.db(target_db);
    let mut locked = target.lock(dst);
    if locked.contains(dst) && !replace {
        ctx.reply.int(0);
        return Ok(());
    }
    locked.set_with_expire(dst, value, expire);
    drop(locked);
    ctx.server
        .store
        .notifier
        .modified(target_db, dst, Class::Generic, "copy_to");
    ctx.reply.int(1);
    Ok(())
}

pub fn move_key(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let target_db = db_index_arg(ctx, &args[2])?;
    if target_db == ctx.client.db {
        return Err("ERR source and destination objects are the same".into());
    }
    let target = ctx.server.store.db(target_db);
    if !ctx.db().lock(key).contains(key) || target.lock(key).contains(key) {
        ctx.reply.int(0);
        return Ok(());
    }
    let entry = ctx
        .db()
        .lock(key)
        .remove(key)
        .expect("checked above under the exclusive gate");
    let expire = entry.expire_at();
    target.lock(key).set_with_expire(key, entry.value, expire);
    ctx.modified(key, Class::Generic, "move_from");
    ctx.server
        .store
        .notifier
        .modified(target_db, key, Class::Generic, "move_to");
    ctx.reply.int(1);
    Ok(())
}

pub fn keys(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let pattern = &args[1];
    let all = &pattern[..] == b"*";
    let keys = ctx.db().keys(|key| all || glob_match(pattern, key, false));
    ctx.reply.bulks(keys.iter().map(|k| &k[..]));
    Ok(())
}

/// The arguments of SCAN and its per-type forms (HSCAN, SSCAN, ZSCAN): a cursor, then MATCH,
/// COUNT and (SCAN only) TYPE.
pub struct ScanOptions<'a> {
    pub cursor: u64,
    pub count: i64,
    pub pattern: Option<&'a Bytes>,
    pub type_filter: Option<String>,
}

impl<'a> ScanOptions<'a> {
    /// Parses `args` from the cursor on.
    pub fn parse(args: &'a [Bytes], allow_type: bool) -> Result<ScanOptions<'a>, Error> {
        let cursor = std::str::from_utf8(&args[0])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(Error::from("ERR invalid cursor"))?;
        let mut options = ScanOptions {
            cursor,
            count: 10,
            pattern: None,
            type_filter: None,
        };
        let mut i = 1;
        while i < args.len() {
            let has_value = i + 1 < args.len();
            if eq_ignore_case(&args[i], "count") && has_value {
                options.count = int_arg(&args[i + 1])?;
                if options.count < 1 {
                    return Err(SYNTAX.into());
                }
            } else if eq_ignore_case(&args[i], "match") && has_value {
                options.pattern = Some(&args[i + 1]);
            } else if allow_type && eq_ignore_case(&args[i], "type") && has_value {
                options.type_filter =
                    Some(String::from_utf8_lossy(&args[i + 1]).to_ascii_lowercase());
            } else {
                return Err(SYNTAX.into());
            }
            i += 2;
        }
        Ok(options)
    }

    pub fn matches(&self, name: &[u8]) -> bool {
        self.pattern.is_none_or(|p| glob_match(p, name, false))
    }

    /// Redis's scan loop: `step` visits from a cursor, pushes what matches and returns the next
    /// cursor; steps go on until COUNT elements were gathered, 10*COUNT steps were taken, or
    /// the cursor is back at 0. Returns the cursor to reply with and the elements.
    pub fn gather<T>(&self, mut step: impl FnMut(u64, &mut Vec<T>) -> u64) -> (u64, Vec<T>) {
        let mut found = Vec::new();
        let mut cursor = self.cursor;
        let mut budget = self.count.saturating_mul(10);
        loop {
            cursor = step(cursor, &mut found);
            budget -= 1;
            if cursor == 0 || budget <= 0 || found.len() as i64 >= self.count {
                return (cursor, found);
            }
        }
    }
}

pub fn scan(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let options = ScanOptions::parse(&args[1..], true)?;
    let db = ctx.db();
    let (cursor, found) = options.gather(|cursor, found: &mut Vec<Vec<u8>>| {
        db.scan(cursor, |key, value| {
            let type_ok = options
                .type_filter
                .as_deref()
                .is_none_or(|t| value.kind().name() == t);
            if options.matches(key) && type_ok {
                found.push(key.to_vec());
            }
        })
    });
    ctx.reply.array(2);
    ctx.reply
        .bulk(itoa::Buffer::new().format(cursor).as_bytes());
    ctx.reply.bulks(found.iter().map(|k| &k[..]));
    Ok(())
}

pub fn randomkey(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    match ctx.db().random_key() {
        Some(key) => ctx.reply.bulk(&key),
        None => ctx.reply.null(),
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct ExpireCommand {
    millis: bool,
    absolute: bool,
}

fn expire_generic(ctx: &mut Ctx, args: &[Bytes], how: ExpireCommand) -> CmdResult {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &args[3..] {
        match () {
            _ if eq_ignore_case(opt, "nx") => nx = true,
            _ if eq_ignore_case(opt, "xx") => xx = true,
            _ if eq_ignore_case(opt, "gt") => gt = true,
            _ if eq_ignore_case(opt, "lt") => lt = true,
            _ => {
                return Err(
                    format!("ERR Unsupported option {}", String::from_utf8_lossy(opt)).into(),
                );
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Err("ERR NX and XX, GT or LT options at the same time are not compatible".into());
    }
    if gt && lt {
        return Err("ERR GT and LT options at the same time are not compatible".into());
    }
    let mut when = int_arg(&args[2])?;
    let invalid = || {
        Error::from(format!(
            "ERR invalid expire time in '{}' command",
            ctx.name()
        ))
    };
    if !how.millis {
        when = when.checked_mul(1000).ok_or_else(invalid)?;
    }
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    if !how.absolute {
        when = when.checked_add(locked.now as i64).ok_or_else(invalid)?;
    }
    let Some(entry) = locked.get(key) else {
        ctx.reply.int(0);
        return Ok(());
    };
    let current = entry.expire_at().map(|t| t as i64);
    let refused = (nx && current.is_some())
        || (xx && current.is_none())
        || (gt && current.is_none_or(|c| when <= c))
        || (lt && current.is_some_and(|c| when >= c));
    if refused {
        ctx.reply.int(0);
        return Ok(());
    }
    if when <= locked.now as i64 {
        locked.remove(key);
        drop(locked);
        ctx.modified(key, Class::Generic, "del");
    } else {
        locked.set_expire(key, Some(when as u64));
        drop(locked);
        ctx.modified(key, Class::Generic, "expire");
    }
    ctx.reply.int(1);
    Ok(())
}

pub fn expire(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    expire_generic(
        ctx,
        args,
        ExpireCommand {
            millis: false,
            absolute: false,
        },
    )
}

pub fn pexpire(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    expire_generic(
        ctx,
        args,
        ExpireCommand {
            millis: true,
            absolute: false,
        },
    )
}

pub fn expireat(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    expire_generic(
        ctx,
        args,
        ExpireCommand {
            millis: false,
            absolute: true,
        },
    )
}

pub fn pexpireat(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    expire_generic(
        ctx,
        args,
        ExpireCommand {
            millis: true,
            absolute: true,
        },
    )
}

/// TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 for a missing key, -1 for no expiry.
fn ttl_generic(ctx: &mut Ctx, args: &[Bytes], millis: bool, absolute: bool) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let now = locked.now as i64;
    let reply = match locked.peek(&args[1]) {
        None => -2,
        Some(entry) => match entry.expire_at() {
            None => -1,
            Some(at) => {
                let ttl = if absolute {
                    at as i64
                } else {
                    (at as i64 - now).max(0)
                };
                if millis { ttl } else { (ttl + 500) / 1000 }
            }
        },
    };
    ctx.reply.int(reply);
    Ok(())
}

pub fn ttl(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, args, false, false)
}

pub fn pttl(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, args, true, false)
}

pub fn expiretime(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, args, false, true)
}

pub fn pexpiretime(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, args, true, true)
}

pub fn persist(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let had = locked.get(key).and_then(|e| e.expire_at()).is_some();
    if had {
        locked.set_expire(key, None);
        drop(locked);
        ctx.modified(key, Class::Generic, "persist");
    }
    ctx.reply.int(had as i64);
    Ok(())
}

/// Runs `f` on the entry at `key`, or replies null when the key is missing (OBJECT's rule).
/// Looking is not an access.
fn with_object(
    ctx: &mut Ctx,
    key: &[u8],
    f: impl FnOnce(&mut Ctx, &Entry) -> CmdResult,
) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(key);
    match locked.peek(key) {
        Some(entry) => f(ctx, entry),
        None => {
            ctx.reply.null();
            Ok(())
        }
    }
}

pub fn object_encoding(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    with_object(ctx, &args[2], |ctx, entry| {
        ctx.reply.bulk(entry.value.encoding().as_bytes());
        Ok(())
    })
}

/// Redis shares the integers 0..9999 between keys and reports them with INT_MAX references,
/// except under the LRU and LFU policies, where each key needs its own clock.
pub fn object_refcount(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let shared = shares_integers(ctx.server);
    with_object(ctx, &args[2], |ctx, entry| {
        ctx.reply.int(entry.value.refcount(shared));
        Ok(())
    })
}

pub(super) fn shares_integers(server: &crate::server::Server) -> bool {
    let policy = server.store.evictor.policy();
    server.config.int(crate::config::MAXMEMORY) == 0 || !(policy.is_lru() || policy.is_lfu())
}

pub fn object_idletime(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    with_object(ctx, &args[2], |ctx, entry| {
        if ctx.server.store.notifier.clock.is_lfu() {
            return Err("ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.".into());
        }
        let idle = entry.clock().map_or(0, |clock| {
            AccessClock::idle_ms(clock, crate::util::now_ms())
        });
        ctx.reply.int((idle / 1000) as i64);
        Ok(())
    })
}

pub fn object_freq(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    with_object(ctx, &args[2], |ctx, entry| {
        let clock = &ctx.server.store.notifier.clock;
        if !clock.is_lfu() {
            return Err("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.".into());
        }
        let freq = entry
            .clock()
            .map_or(0, |c| clock.frequency(c, crate::util::now_ms()));
        ctx.reply.int(freq as i64);
        Ok(())
    })
}

pub fn object_help(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    reply_help(
        ctx,
        &[
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key>. The returned integer is",
            "    proportional to the logarithm of the recent access frequency of the key.",
            "IDLETIME <key>",
            "    Return the idle time of the <key>, that is the approximated number of",
            "    seconds elapsed since the last access to the key.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
        ],
    );
    Ok(())
}
