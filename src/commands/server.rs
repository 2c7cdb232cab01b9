//! Server commands (Redis's server.c, db.c, debug.c, slowlog.c, latency.c): INFO, DBSIZE,
//! FLUSHDB/FLUSHALL, SWAPDB, TIME, DEBUG, SLOWLOG, LATENCY, MONITOR.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use super::memory::Overhead;
use super::{CmdResult, Ctx, DB_OUT_OF_RANGE, Error, SYNTAX, reply_help};
use crate::alloc;
use crate::client::FLAG_MONITOR;
use crate::config;
use crate::pubsub::Space;
use crate::server::{OXIDIS_VERSION, REDIS_VERSION, Server};
use crate::store::Value;
use crate::store::clock::AccessClock;
use crate::util::{eq_ignore_case, now_ms, now_us, parse_f64, parse_i64};

pub fn dbsize(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    ctx.reply.int(ctx.db().len() as i64);
    Ok(())
}

/// SYNC or ASYNC (without either, `lazyfree-lazy-user-flush` says); ASYNC frees the old
/// contents on the lazyfree thread.
fn flush_mode(ctx: &Ctx, args: &[Bytes]) -> Result<bool, Error> {
    match args.get(1) {
        None => Ok(ctx.server.config.bool(config::LAZYFREE_LAZY_USER_FLUSH)),
        Some(mode) if args.len() == 2 && eq_ignore_case(mode, "async") => Ok(true),
        Some(mode) if args.len() == 2 && eq_ignore_case(mode, "sync") => Ok(false),
        Some(_) => Err(SYNTAX.into()),
    }
}

fn flush_dbs(ctx: &Ctx, indexes: impl Iterator<Item = usize>, async_free: bool) {
    let mut garbage = Vec::new();
    let mut keys = 0;
    let notifier = &ctx.server.store.notifier;
    for index in indexes {
        touch_watched_existing(ctx, index, &[index]);
        let old = ctx.server.store.db(index).take_all();
        let removed: usize = old.iter().map(|d| d.len()).sum();
        notifier.dirty.fetch_add(removed as u64, Ordering::Relaxed);
        keys += removed as u64;
        garbage.extend(old);
        // XREADGROUP waiters on streams that are gone are answered with an error.
        notifier.blocking.signal_db(index);
    }
    notifier.tracking.flushed();
    if async_free {
        ctx.server.store.lazyfree.drop_all(Box::new(garbage), keys);
    }
}

/// Redis's `touchAllWatchedKeysInDb`: WATCHers of keys in `db` that exist in any of `dbs`
/// (the database being emptied or replaced, and its replacement) see a change.
fn touch_watched_existing(ctx: &Ctx, db: usize, dbs: &[usize]) {
    let notifier = &ctx.server.store.notifier;
    for key in notifier.watches.watched_in(db) {
        let exists = dbs
            .iter()
            .any(|&i| ctx.server.store.db(i).lock(&key).contains(&key));
        if exists {
            notifier.watches.touch(db, &key, false);
        }
    }
}

pub fn flushdb(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let async_free = flush_mode(ctx, args)?;
    ctx.log_as(args.to_vec());
    flush_dbs(ctx, std::iter::once(ctx.client.db), async_free);
    ctx.reply.ok();
    Ok(())
}

/// FLUSHALL also stops a background save and, when save points exist, saves the now empty
/// data set at once, so a restart does not bring the old keys back (as Redis does).
pub fn flushall(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let async_free = flush_mode(ctx, args)?;
    ctx.log_as(args.to_vec());
    flush_dbs(ctx, 0..ctx.server.store.dbs().len(), async_free);
    let snapshots = &ctx.server.snapshots;
    snapshots.kill_child();
    // With save points, the save leaves no change unsaved (Redis's flushAllDataAndResetRDB);
    // without, the keys removed count as changes.
    if !crate::persist::snapshot::save_points(&ctx.server.config).is_empty() {
        let _ = snapshots.save(ctx.server);
    }
    ctx.reply.ok();
    Ok(())
}

pub fn swapdb(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let count = ctx.server.store.dbs().len() as i64;
    let parse = |arg: &[u8], what: &'static str| -> Result<usize, Error> {
        let index = parse_i64(arg).ok_or(Error::from(what))?;
        if index < 0 || index >= count {
            Err(DB_OUT_OF_RANGE.into())
        } else {
            Ok(index as usize)
        }
    };
    let a = parse(&args[1], "ERR invalid first DB index")?;
    let b = parse(&args[2], "ERR invalid second DB index")?;
    if a != b {
        touch_watched_existing(ctx, a, &[a, b]);
        touch_watched_existing(ctx, b, &[a, b]);
        ctx.server.store.db(a).swap_with(ctx.server.store.db(b));
        for index in [a, b] {
            ctx.server.store.notifier.blocking.signal_db(index);
        }
    }
    ctx.reply.ok();
    Ok(())
}

/// SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]: saves first when asked to or when save points
/// exist (unless NOSAVE); a failed save cancels the shutdown unless FORCE. There are no
/// replicas to wait for, so NOW changes nothing. Like Redis, a shutdown sends no reply.
pub fn shutdown(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (mut save, mut nosave, mut abort, mut force) = (false, false, false, false);
    for arg in &args[1..] {
        if eq_ignore_case(arg, "nosave") {
            nosave = true;
        } else if eq_ignore_case(arg, "save") {
            save = true;
        } else if eq_ignore_case(arg, "abort") {
            abort = true;
        } else if eq_ignore_case(arg, "force") {
            force = true;
        } else if !eq_ignore_case(arg, "now") {
            return Err(SYNTAX.into());
        }
    }
    if (save && nosave) || (abort && args.len() > 2) {
        return Err(SYNTAX.into());
    }
    if abort {
        return Err("ERR No shutdown in progress.".into());
    }
    // Half a dataset is not saved over the whole one on disk.
    let wanted = if ctx.server.loading.refuses_commands() {
        Some(false)
    } else if save {
        Some(true)
    } else {
        nosave.then_some(false)
    };
    let saved = ctx.server.snapshots.on_shutdown(ctx.server, wanted);
    if saved.is_err() && !force {
        tracing::warn!(
            "Errors trying to shut down the server. Check the logs for more information."
        );
        return Err("ERR Errors trying to SHUTDOWN. Check logs.".into());
    }
    // Out at once, as Redis exits inside SHUTDOWN: the client must find the server gone, not
    // still accepting connections while it winds down (or runs exit handlers). Everything is
    // written already.
    tracing::warn!("Oxidis is now ready to exit, bye bye...");
    // SAFETY: ends the process; nothing after it runs.
    unsafe { libc::_exit(0) }
}

pub fn time(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let us = now_us();
    ctx.reply.array(2);
    ctx.reply.bulk_int((us / 1_000_000) as i64);
    ctx.reply.bulk_int((us % 1_000_000) as i64);
    Ok(())
}

/// LOLWUT [VERSION v]: the version line Redis 7 prints. The drawings Redis makes for
/// VERSION 5 and 6 are not reproduced: every version gets the line.
pub fn lolwut(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if args.len() >= 3 && eq_ignore_case(&args[1], "version") {
        super::int_arg(&args[2])?;
    }
    ctx.reply
        .verbatim("txt", format!("Redis ver. {REDIS_VERSION}\n").as_bytes());
    Ok(())
}

pub fn lastsave(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    ctx.reply
        .int(ctx.server.lastsave.load(Ordering::Relaxed) as i64);
    Ok(())
}

pub fn monitor(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    if !ctx.client.handle.has_flag(FLAG_MONITOR) {
        ctx.client.handle.set_flag(FLAG_MONITOR, true);
        ctx.server.monitors.add(ctx.client.handle.clone());
    }
    ctx.reply.ok();
    Ok(())
}

pub fn slowlog_get(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let count = match args.get(2) {
        None => 10,
        Some(arg) => match parse_i64(arg) {
            Some(n) if n >= -1 => n,
            _ => return Err("ERR count should be greater than or equal to -1".into()),
        },
    };
    let slowlog = ctx.server.slowlog.lock().unwrap_or_else(|e| e.into_inner());
    let shown = if count == -1 {
        slowlog.entries.len()
    } else {
        (count as usize).min(slowlog.entries.len())
    };
    ctx.reply.array(shown);
    for entry in slowlog.entries.iter().take(shown) {
        ctx.reply.array(6);
        ctx.reply.int(entry.id as i64);
        ctx.reply.int(entry.time as i64);
        ctx.reply.int(entry.micros as i64);
        ctx.reply.bulks(entry.args.iter().map(|a| &a[..]));
        ctx.reply.bulk(entry.peer.as_bytes());
        ctx.reply.bulk(&entry.name);
    }
    Ok(())
}

pub fn slowlog_len(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let len = ctx
        .server
        .slowlog
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entries
        .len();
    ctx.reply.int(len as i64);
    Ok(())
}

pub fn slowlog_reset(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    ctx.server
        .slowlog
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entries
        .clear();
    ctx.reply.ok();
    Ok(())
}

pub fn slowlog_help(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    reply_help(
        ctx,
        &[
            "GET [<count>]",
            "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
            "    Entries are made of:",
            "    id, timestamp, time in microseconds, arguments array, client IP and port,",
            "    client name",
            "LEN",
            "    Return the length of the slowlog.",
            "RESET",
            "    Reset the slowlog.",
        ],
    );
    Ok(())
}

// LATENCY: Oxidis does not yet sample latency events, so every report is empty.
pub fn latency_latest(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    ctx.reply.array(0);
    Ok(())
}

pub fn latency_history(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    ctx.reply.array(0);
    Ok(())
}

pub fn latency_reset(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    ctx.reply.int(0);
    Ok(())
}

pub fn latency_doctor(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let text = "Dave, no latency spike was observed during the lifetime of this Redis instance, not in the slightest bit. I honestly think you ought to sleep a little more.\n";
    ctx.reply.verbatim("txt", text.as_bytes());
    Ok(())
}

pub fn latency_help(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    reply_help(
        ctx,
        &[
            "DOCTOR",
            "    Return a human readable latency analysis report.",
            "GRAPH <event>",
            "    Return an ASCII latency graph for the <event> class.",
            "HISTORY <event>",
            "    Return time-latency samples for the <event> class.",
            "LATEST",
            "    Return the latest latency samples for all events.",
            "RESET [<event> ...]",
            "    Reset latency data of one or more <event> classes.",
            "    (default: reset all data for all event classes)",
            "HISTOGRAM [COMMAND ...]",
            "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
            "    If no commands are specified then all histograms are replied.",
        ],
    );
    Ok(())
}

/// DEBUG: the subset Redis's test suite and tools use. Refused unless enable-debug-command
/// allows it, as in Redis 7.
/// DEBUG POPULATE count [prefix] [size]: creates `prefix:N` (default `key:N`) holding
/// `value:N`, or that text cut or zero-padded to `size` bytes; existing keys are left alone.
fn debug_populate(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let count = parse_i64(&args[0])
        .filter(|n| *n >= 0)
        .ok_or(Error::from("ERR count must be greater than or equal to 0"))?;
    let prefix = args.get(1).map_or(&b"key"[..], |p| &p[..]);
    let size = match args.get(2) {
        None => None,
        Some(arg) => Some(
            parse_i64(arg)
                .filter(|n| *n > 0)
                .ok_or(Error::from("ERR value size must be greater than 0"))? as usize,
        ),
    };
    let db = ctx.db();
    for i in 0..count {
        let mut key = prefix.to_vec();
        key.extend_from_slice(format!(":{i}").as_bytes());
        let mut value = format!("value:{i}").into_bytes();
        if let Some(size) = size {
            value.resize(size, 0);
        }
        let mut locked = db.lock(&key);
        if !locked.contains(&key) {
            locked.set(&key, Value::string(&value));
        }
    }
    ctx.reply.ok();
    Ok(())
}

/// DEBUG RELOAD [NOSAVE] [NOFLUSH] [MERGE]: saves, empties the keyspace and the function
/// libraries, and loads the dump; NOFLUSH loads on top of what is there, MERGE lets the dump
/// replace what it collides with.
fn debug_reload(ctx: &mut Ctx, options: &[Bytes]) -> CmdResult {
    let (mut save, mut flush, mut merge) = (true, true, false);
    for option in options {
        if eq_ignore_case(option, "nosave") {
            save = false;
        } else if eq_ignore_case(option, "noflush") {
            flush = false;
        } else if eq_ignore_case(option, "merge") {
            merge = true;
        } else {
            return Err(format!(
                "ERR Unknown option '{}' for DEBUG RELOAD",
                String::from_utf8_lossy(option)
            )
            .into());
        }
    }
    ctx.server
        .snapshots
        .reload(ctx.server, save, flush, merge)
        .map_err(|e| Error::from(format!("ERR {e}")))?;
    tracing::info!("DB reloaded by DEBUG RELOAD");
    ctx.reply.ok();
    Ok(())
}

pub fn debug(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if !super::protected_action_allowed(ctx, config::ENABLE_DEBUG_COMMAND) {
        return Err("ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server.".into());
    }
    let sub = &args[1];
    let argc = args.len();
    let server = ctx.server;
    if eq_ignore_case(sub, "sleep") && argc == 3 {
        let seconds = parse_f64(&args[2]).unwrap_or(0.0);
        std::thread::sleep(std::time::Duration::from_secs_f64(seconds.max(0.0)));
        ctx.reply.ok();
    } else if eq_ignore_case(sub, "populate") && (3..=5).contains(&argc) {
        debug_populate(ctx, &args[2..])?;
    } else if eq_ignore_case(sub, "loadaof") && argc == 2 {
        ctx.server
            .store
            .notifier
            .aof
            .reload(ctx.server)
            .map_err(|e| Error::from(format!("ERR {e}")))?;
        tracing::warn!("Append Only File loaded by DEBUG LOADAOF");
        ctx.reply.ok();
    } else if eq_ignore_case(sub, "reload") {
        debug_reload(ctx, &args[2..])?;
    } else if eq_ignore_case(sub, "set-disable-deny-scripts") && argc == 3 {
        set_switch(ctx, &server.scripts.allow_noscript, &args[2]);
    } else if eq_ignore_case(sub, "aof-flush-sleep") && argc == 3 {
        let micros = parse_i64(&args[2]).unwrap_or(0).max(0) as u64;
        ctx.server.store.notifier.aof.set_flush_sleep(micros);
        ctx.reply.ok();
    } else if eq_ignore_case(sub, "pause-cron") && argc == 3 {
        set_switch(ctx, &server.cron_paused, &args[2]);
    } else if eq_ignore_case(sub, "replicate") && argc >= 3 {
        // Straight into the replication stream, as a way to test how replicas take what
        // they cannot run.
        if !server.replication.is_replica() {
            let parts: Vec<&[u8]> = args[2..].iter().map(|a| &a[..]).collect();
            server.store.notifier.repl.feed(None, &parts);
        }
        ctx.reply.ok();
    } else if eq_ignore_case(sub, "error") && argc == 3 {
        // The error as given, prefix and all (redis-py's tests map prefixes to exceptions
        // with it); like Redis's, it is not counted in the error stats.
        let text = String::from_utf8_lossy(&args[2]);
        ctx.reply.error(&text);
    } else if eq_ignore_case(sub, "replybuffer")
        && argc == 4
        && eq_ignore_case(&args[2], "resizing")
    {
        set_switch(ctx, &server.reply_buffer_resizing, &args[3]);
    } else if eq_ignore_case(sub, "set-active-expire") && argc == 3 {
        set_switch(ctx, &server.active_expire, &args[2]);
    } else if eq_ignore_case(sub, "object") && argc == 3 {
        debug_object(ctx, &args[2])?;
    } else if eq_ignore_case(sub, "digest") && argc == 2 {
        ctx.reply.bulk(digest_hex(keyspace_digest(ctx)).as_bytes());
    } else if eq_ignore_case(sub, "digest-value") && argc >= 2 {
        let db = ctx.db();
        ctx.reply.array(argc - 2);
        for key in &args[2..] {
            let digest = db
                .lock(key)
                .peek(key)
                .map_or(0, |e| value_digest(&mut e.value));
            ctx.reply.bulk(digest_hex(digest).as_bytes());
        }
    } else if eq_ignore_case(sub, "quicklist-packed-threshold") && argc == 3 {
        let size = std::str::from_utf8(&args[2])
            .ok()
            .and_then(config::parse_memory)
            .filter(|n| (0..=(1 << 32) - (1 << 20)).contains(n))
            .ok_or(Error::from(
                "ERR argument must be a memory value bigger than 1 and smaller than 4gb",
            ))?;
        let size = if size == 0 { 1 << 30 } else { size as u64 };
        crate::store::list::PACKED_THRESHOLD.store(size, Ordering::Relaxed);
        ctx.reply.ok();
    } else if eq_ignore_case(sub, "protocol") && argc == 3 {
        debug_protocol(ctx, &args[2])?;
    } else if eq_ignore_case(sub, "log") && argc == 3 {
        tracing::warn!("DEBUG LOG: {}", String::from_utf8_lossy(&args[2]));
        ctx.reply.ok();
    } else if eq_ignore_case(sub, "change-repl-id") && argc == 2 {
        ctx.reply.ok();
    } else if eq_ignore_case(sub, "stringmatch-len") && argc == 3 {
        crate::util::glob_match(&args[2], b"", false);
        ctx.reply.ok();
    } else if eq_ignore_case(sub, "help") {
        reply_help(
            ctx,
            &[
                "AOF-FLUSH-SLEEP <microsec>",
                "    Server will sleep before flushing the AOF, this is used for testing.",
                "DIGEST",
                "    Output a hex signature representing the current DB content.",
                "DIGEST-VALUE <key> [<key> ...]",
                "    Output a hex signature of the values of all the specified keys.",
                "ERROR <string>",
                "    Return a Redis protocol error with <string> as message. Useful for clients",
                "    unit tests to simulate Redis errors.",
                "LOG <message>",
                "    Write <message> to the server log.",
                "OBJECT <key>",
                "    Show low level info about the key and associated value.",
                "PROTOCOL <type>",
                "    Reply with a test value of the specified type. <type> can be: string,",
                "    integer, double, bignum, null, array, set, map, attrib, push, verbatim,",
                "    true, false.",
                "REPLYBUFFER RESIZING <0|1>",
                "    Enable or disable the reply buffer resize cron job.",
                "SET-ACTIVE-EXPIRE <0|1>",
                "    Setting it to 0 disables expiring keys in background when they are not",
                "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
                "    default.",
                "SLEEP <seconds>",
                "    Stop the server for <seconds>. Decimals allowed.",
            ],
        );
    } else {
        return Err(super::subcommand_syntax_error(args));
    }
    Ok(())
}

/// DEBUG's on/off settings: any argument but `0` turns `switch` on.
fn set_switch(ctx: &mut Ctx, switch: &AtomicBool, arg: &[u8]) {
    switch.store(arg != b"0", Ordering::Relaxed);
    ctx.reply.ok();
}

fn debug_object(ctx: &mut Ctx, key: &[u8]) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(key);
    let Some(entry) = locked.get_even_expired(key) else {
        return Err(super::NO_SUCH_KEY.into());
    };
    let value = &entry.value;
    let clock = entry.clock().unwrap_or(0);
    let length = match value {
        Value::Str(s) => s.len(),
        _ => value.allocated(),
    };
    let line = format!(
        "Value at:{:p} refcount:{} encoding:{} serializedlength:{} lru:{} lru_seconds_idle:{}",
        value as *const Value,
        value.refcount(super::keys::shares_integers(ctx.server)),
        value.encoding(),
        length.max(1),
        clock,
        AccessClock::idle_ms(clock, crate::util::now_ms()) / 1000,
    );
    drop(locked);
    ctx.reply.simple(&line);
    Ok(())
}

/// Digests for DEBUG DIGEST and DIGEST-VALUE: equal contents give equal digests (members of
/// sets and hashes in any order), and an absent key or empty keyspace gives zeros, as in Redis.
/// The digest function is not Redis's SHA1 mix; only equality is meaningful.
fn hash_bytes(parts: &[&[u8]]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = foldhash::fast::FixedState::with_seed(0x0d16_e575).build_hasher();
    for part in parts {
        hasher.write_usize(part.len());
        hasher.write(part);
    }
    hasher.finish()
}

fn value_digest(value: &mut Value) -> u64 {
    let kind = value.kind().name().as_bytes();
    match value {
        Value::Str(s) => hash_bytes(&[kind, s.bytes(&mut itoa::Buffer::new())]),
        Value::List(list) => list.iter().fold(hash_bytes(&[kind]), |acc, element| {
            hash_bytes(&[&acc.to_le_bytes(), element])
        }),
        Value::Hash(hash) => hash
            .iter()
            .fold(hash_bytes(&[kind]), |acc, (f, v)| acc ^ hash_bytes(&[f, v])),
        Value::Set(set) => set
            .members()
            .iter()
            .fold(hash_bytes(&[kind]), |acc, m| acc ^ hash_bytes(&[m])),
        Value::Zset(zset) => zset.all().iter().fold(hash_bytes(&[kind]), |acc, (m, s)| {
            hash_bytes(&[&acc.to_le_bytes(), m, &s.to_bits().to_le_bytes()])
        }),
        Value::Stream(stream) => stream_digest(kind, stream),
    }
}

/// A stream's entries, counters and groups, in order.
fn stream_digest(kind: &[u8], stream: &crate::store::stream::Stream) -> u64 {
    use crate::store::stream::StreamId;
    let mut acc = hash_bytes(&[kind]);
    let mut mix = |parts: &[&[u8]]| {
        let mut all: Vec<&[u8]> = vec![&[]; 1];
        let prev = acc.to_le_bytes();
        all[0] = &prev;
        all.extend_from_slice(parts);
        acc = hash_bytes(&all);
    };
    stream.range(StreamId::MIN, StreamId::MAX, false, |entry| {
        mix(&[&entry.id.to_be_bytes()]);
        for (field, value) in entry.pairs() {
            mix(&[&field.to_vec(), &value.to_vec()]);
        }
        true
    });
    let c = &stream.counters;
    mix(&[&c.last_id.to_be_bytes(), &c.entries_added.to_le_bytes()]);
    for (name, group) in stream.groups().into_iter().flatten() {
        mix(&[
            name,
            &group.last_id.to_be_bytes(),
            &group.entries_read.to_le_bytes(),
        ]);
        for (id, nack) in group.pel.iter() {
            mix(&[
                &id.to_be_bytes(),
                &nack.consumer,
                &nack.delivery_count.to_le_bytes(),
            ]);
        }
        for name in group.consumers.keys() {
            mix(&[name]);
        }
    }
    acc
}

fn keyspace_digest(ctx: &Ctx) -> u64 {
    let mut digest = 0;
    for db in ctx.server.store.dbs() {
        for key in db.keys(|_| true) {
            let mut locked = db.lock(&key);
            if let Some(entry) = locked.peek(&key) {
                let expire = entry.expire_at().unwrap_or(0).to_le_bytes();
                let value = value_digest(&mut entry.value).to_le_bytes();
                digest ^= hash_bytes(&[&db.index.to_le_bytes(), &key, &value, &expire]);
            }
        }
    }
    digest
}

fn digest_hex(digest: u64) -> String {
    if digest == 0 {
        return "0".repeat(40);
    }
    format!(
        "{digest:016x}{:024x}",
        hash_bytes(&[&digest.to_le_bytes()]) as u128
    )
}

/// The value Redis's DEBUG PROTOCOL DOUBLE replies with (not an approximation of pi).
#[allow(clippy::approx_constant)]
const DEBUG_DOUBLE: f64 = 3.141;

fn debug_protocol(ctx: &mut Ctx, kind: &[u8]) -> CmdResult {
    let r = &mut *ctx.reply;
    let kind = String::from_utf8_lossy(kind).to_ascii_lowercase();
    match kind.as_str() {
        "string" => r.bulk(b"Hello World"),
        "integer" => r.int(12345),
        "double" => r.double(DEBUG_DOUBLE),
        "bignum" => r.big_number("1234567999999999999999999999999999999"),
        "null" => r.null(),
        "array" | "set" => {
            if kind == "set" { r.set(3) } else { r.array(3) }
            (0..3).for_each(|j| r.int(j));
        }
        "map" => {
            r.map(3);
            for j in 0..3 {
                r.int(j);
                r.boolean(j == 1);
            }
        }
        "attrib" => {
            if r.is_resp3() {
                r.attribute(1);
                r.bulk(b"key-popularity");
                r.array(2);
                r.bulk(b"key:123");
                r.int(90);
            }
            r.bulk(b"Some real reply following the attribute");
        }
        "push" => {
            if !r.is_resp3() {
                return Err("ERR RESP2 is not supported by this command".into());
            }
            r.push(2);
            r.bulk(b"server-cpu-usage");
            r.int(42);
            r.bulk(b"Some real reply following the push reply");
        }
        "true" => r.boolean(true),
        "false" => r.boolean(false),
        "verbatim" => r.verbatim("txt", b"This is a verbatim\nstring"),
        _ => return Err("ERR Wrong protocol type name. Please use one of the following: string|integer|double|bignum|null|array|set|map|attrib|push|verbatim|true|false".into()),
    }
    Ok(())
}

pub fn info(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let text = info_text(ctx.server, &args[1..]);
    ctx.reply.verbatim("txt", text.as_bytes());
    Ok(())
}

const ALL_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "module_list",
    "commandstats",
    "errorstats",
    "latencystats",
    "cluster",
    "keyspace",
];

/// The INFO text for the requested sections, in Redis's section order and field names.
pub fn info_text(server: &Server, args: &[Bytes]) -> String {
    let mut wanted: Vec<String> = Vec::new();
    let mut all = false;
    // The default sections are all but the per-command ones, as in Redis.
    let defaults = ALL_SECTIONS
        .iter()
        .filter(|s| !["commandstats", "latencystats"].contains(s));
    if args.is_empty() {
        wanted.extend(defaults.clone().map(|s| s.to_string()));
    }
    for arg in args {
        let name = String::from_utf8_lossy(arg).to_ascii_lowercase();
        match name.as_str() {
            "default" => wanted.extend(defaults.clone().map(|s| s.to_string())),
            "all" | "everything" => all = true,
            "modules" => wanted.push("module_list".into()),
            _ => wanted.push(name),
        }
    }
    let mut out = String::new();
    for section in ALL_SECTIONS {
        if !all && !wanted.iter().any(|w| w == section) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        write_section(server, section, &mut out);
    }
    out
}

fn human_bytes(n: u64) -> String {
    let n = n as f64;
    match n {
        _ if n < 1024.0 => format!("{}B", n as u64),
        _ if n < 1024.0 * 1024.0 => format!("{:.2}K", n / 1024.0),
        _ if n < 1024.0 * 1024.0 * 1024.0 => format!("{:.2}M", n / (1024.0 * 1024.0)),
        _ => format!("{:.2}G", n / (1024.0 * 1024.0 * 1024.0)),
    }
}

fn write_section(server: &Server, section: &str, out: &mut String) {
    let uptime = server.started.elapsed().as_secs();
    let stats = &server.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let w = out;
    match section {
        "server" => {
            let _ = write!(
                w,
                "# Server\r\nredis_version:{REDIS_VERSION}\r\noxidis_version:{OXIDIS_VERSION}\r\nredis_git_sha1:00000000\r\n\
                 redis_git_dirty:0\r\nredis_build_id:0\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\n\
                 monotonic_clock:POSIX clock_gettime\r\nmultiplexing_api:epoll\r\natomicvar_api:c11-builtin\r\n\
                 gcc_version:0.0.0\r\nprocess_id:{}\r\nprocess_supervised:no\r\nrun_id:{}\r\ntcp_port:{}\r\n\
                 server_time_usec:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nhz:{}\r\nconfigured_hz:{}\r\n\
                 lru_clock:{}\r\nexecutable:{}\r\nconfig_file:{}\r\nio_threads_active:0\r\n",
                std::env::consts::OS,
                std::env::consts::ARCH,
                std::process::id(),
                server.run_id,
                server.listen_port.load(Ordering::Relaxed),
                now_us(),
                uptime / 86400,
                server.config.int(config::HZ),
                server.config.int(config::HZ),
                (now_ms() / 1000) & ((1 << 24) - 1),
                std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                server
                    .config
                    .file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            );
        }
        "clients" => {
            let _ = write!(
                w,
                "# Clients\r\nconnected_clients:{}\r\ncluster_connections:0\r\nmaxclients:{}\r\n\
                 client_recent_max_input_buffer:0\r\nclient_recent_max_output_buffer:0\r\nblocked_clients:{}\r\n\
                 tracking_clients:{}\r\nclients_in_timeout_table:0\r\n",
                server.clients.len(),
                server.config.int(config::MAXCLIENTS),
                server.store.notifier.blocking.waiting()
                    + server.pause.postponed.load(Ordering::Relaxed),
                server.store.notifier.tracking.stats()[0],
            );
        }
        "memory" => {
            let memory = Overhead::measure(server);
            let (used, rss, peak) = (memory.total, memory.rss, memory.peak);
            let maxmemory = server.config.int(config::MAXMEMORY) as u64;
            let system = system_memory();
            let _ = write!(
                w,
                "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\n\
                 used_memory_rss_human:{}\r\nused_memory_peak:{peak}\r\nused_memory_peak_human:{}\r\n\
                 used_memory_peak_perc:{:.2}%\r\nused_memory_overhead:{}\r\nused_memory_startup:{}\r\n\
                 used_memory_dataset:{}\r\nused_memory_dataset_perc:{:.2}%\r\ntotal_system_memory:{system}\r\n\
                 total_system_memory_human:{}\r\n{}maxmemory:{maxmemory}\r\n\
                 maxmemory_human:{}\r\nmaxmemory_policy:{}\r\nmem_fragmentation_ratio:{:.2}\r\nmem_not_counted_for_evict:{}\r\n\
                 mem_clients_slaves:0\r\nmem_clients_normal:{}\r\nmem_allocator:libc\r\n\
                 lazyfree_pending_objects:{}\r\nlazyfreed_objects:{}\r\n",
                human_bytes(used),
                human_bytes(rss),
                human_bytes(peak),
                memory.peak_percentage(),
                memory.overhead(),
                memory.startup,
                memory.dataset(),
                memory.dataset_percentage(),
                human_bytes(system),
                server.scripts.stats.info_memory(human_bytes),
                human_bytes(maxmemory),
                server.config.text(config::MAXMEMORY_POLICY),
                if used > 0 {
                    rss as f64 / used as f64
                } else {
                    0.0
                },
                server.not_counted_for_eviction(),
                server.clients.total_memory(),
                server.store.lazyfree.pending(),
                server.store.lazyfree.freed(),
            );
        }
        "persistence" => {
            let snapshot = server.snapshots.status();
            let aof = server.store.notifier.aof.status();
            w.push_str("# Persistence\r\n");
            server.loading.info(w);
            let _ = write!(
                w,
                "current_cow_peak:0\r\ncurrent_cow_size:0\r\n\
                 current_cow_size_age:0\r\ncurrent_fork_perc:0.00\r\ncurrent_save_keys_processed:0\r\n\
                 current_save_keys_total:0\r\nrdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:{}\r\n\
                 rdb_last_save_time:{}\r\nrdb_last_bgsave_status:{}\r\nrdb_last_bgsave_time_sec:{}\r\n\
                 rdb_current_bgsave_time_sec:{}\r\nrdb_saves:{}\r\nrdb_last_cow_size:0\r\nrdb_last_load_keys_expired:{}\r\n\
                 rdb_last_load_keys_loaded:{}\r\naof_enabled:{}\r\naof_rewrite_in_progress:{}\r\naof_rewrite_scheduled:{}\r\n\
                 aof_last_rewrite_time_sec:{}\r\naof_current_rewrite_time_sec:-1\r\naof_last_bgrewrite_status:{}\r\n\
                 aof_rewrites:{}\r\naof_rewrites_consecutive_failures:0\r\naof_last_write_status:{}\r\n\
                 aof_last_cow_size:0\r\nmodule_fork_in_progress:0\r\nmodule_fork_last_cow_size:0\r\n",
                load(&server.store.notifier.dirty),
                u8::from(snapshot.in_progress || server.replication.sync_child_running()),
                server.lastsave.load(Ordering::Relaxed),
                if snapshot.last_ok { "ok" } else { "err" },
                snapshot.last_bgsave_secs,
                snapshot.current_secs,
                snapshot.saves,
                snapshot.keys_expired,
                snapshot.keys_loaded,
                u8::from(aof.enabled),
                u8::from(aof.rewriting),
                u8::from(aof.scheduled),
                aof.last_rewrite_secs,
                if aof.last_rewrite_ok { "ok" } else { "err" },
                aof.rewrites,
                if aof.write_ok { "ok" } else { "err" },
            );
            if aof.enabled {
                let _ = write!(
                    w,
                    "aof_current_size:{}\r\naof_base_size:{}\r\naof_pending_rewrite:0\r\n\
                     aof_buffer_length:{}\r\naof_pending_bio_fsync:0\r\naof_delayed_fsync:0\r\n",
                    aof.current_size, aof.base_size, aof.buffer
                );
            }
            server.loading.progress_info(w);
        }
        "stats" => {
            let hub = &server.store.notifier.pubsub;
            let tracking = server.store.notifier.tracking.stats();
            let _ = write!(
                w,
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ninstantaneous_ops_per_sec:0\r\n\
                 total_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\ntotal_net_repl_input_bytes:0\r\n\
                 total_net_repl_output_bytes:0\r\ninstantaneous_input_kbps:0.00\r\ninstantaneous_output_kbps:0.00\r\n\
                 instantaneous_input_repl_kbps:0.00\r\ninstantaneous_output_repl_kbps:0.00\r\nrejected_connections:{}\r\n\
                 sync_full:{}\r\nsync_partial_ok:{}\r\nsync_partial_err:{}\r\nexpired_keys:{}\r\nexpired_stale_perc:0.00\r\n\
                 expired_time_cap_reached_count:0\r\nexpire_cycle_cpu_milliseconds:0\r\nevicted_keys:{}\r\n\
                 evicted_clients:{}\r\nevicted_scripts:{}\r\ntotal_eviction_exceeded_time:0\r\ncurrent_eviction_exceeded_time:0\r\n\
                 keyspace_hits:{}\r\nkeyspace_misses:{}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\n\
                 pubsubshard_channels:{}\r\nlatest_fork_usec:0\r\ntotal_forks:0\r\nmigrate_cached_sockets:0\r\n\
                 slave_expires_tracked_keys:{}\r\nactive_defrag_hits:0\r\nactive_defrag_misses:0\r\n\
                 active_defrag_key_hits:0\r\nactive_defrag_key_misses:0\r\ntotal_active_defrag_time:0\r\n\
                 current_active_defrag_time:0\r\ntracking_total_keys:{}\r\ntracking_total_items:{}\r\n\
                 tracking_total_prefixes:{}\r\nunexpected_error_replies:{}\r\ntotal_error_replies:{}\r\n\
                 dump_payload_sanitizations:0\r\ntotal_reads_processed:0\r\ntotal_writes_processed:0\r\n\
                 io_threaded_reads_processed:0\r\nio_threaded_writes_processed:0\r\nreply_buffer_shrinks:0\r\n\
                 reply_buffer_expands:0\r\nclient_output_buffer_limit_disconnections:{}\r\n",
                load(&server.clients.total_connections),
                stats.commands_processed.get(),
                load(&stats.net_input_bytes),
                load(&stats.net_output_bytes),
                load(&server.clients.rejected_connections),
                load(&server.replication.sync_full),
                load(&server.replication.sync_partial_ok),
                load(&server.replication.sync_partial_err),
                load(&server.store.notifier.expired_keys),
                load(&server.store.evictor.evicted_keys),
                load(&server.clients.memory.evicted),
                load(&server.scripts.stats.evicted_scripts),
                stats.keyspace_hits.get(),
                stats.keyspace_misses.get(),
                hub.len(Space::Channel),
                hub.len(Space::Pattern),
                hub.len(Space::Shard),
                server.replication.own_volatile_count(),
                tracking[1],
                tracking[2],
                tracking[3],
                load(&stats.unexpected_error_replies),
                load(&stats.error_replies),
                load(&crate::client::OUTPUT_LIMIT_DISCONNECTIONS),
            );
        }
        "replication" => crate::replication::info(server, w),
        "cpu" => {
            let (user, sys) = alloc::cpu_seconds();
            let _ = write!(
                w,
                "# CPU\r\nused_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\nused_cpu_sys_children:0.000000\r\n\
                 used_cpu_user_children:0.000000\r\nused_cpu_sys_main_thread:{sys:.6}\r\nused_cpu_user_main_thread:{user:.6}\r\n"
            );
        }
        "module_list" => w.push_str("# Modules\r\n"),
        "commandstats" => {
            w.push_str("# Commandstats\r\n");
            for c in server.commands.all_with_subcommands() {
                let (calls, usec) = (c.calls.get(), c.usec.get());
                let (rejected, failed) = (c.rejected.get(), c.failed.get());
                if calls == 0 && rejected == 0 && failed == 0 {
                    continue;
                }
                let per_call = if calls > 0 {
                    usec as f64 / calls as f64
                } else {
                    0.0
                };
                let _ = write!(
                    w,
                    "cmdstat_{}:calls={calls},usec={usec},usec_per_call={per_call:.2},rejected_calls={rejected},failed_calls={failed}\r\n",
                    c.name
                );
            }
        }
        "errorstats" => {
            w.push_str("# Errorstats\r\n");
            let errors = stats
                .errors_by_code
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let mut codes: Vec<_> = errors.iter().collect();
            codes.sort();
            for (code, count) in codes {
                let _ = write!(w, "errorstat_{code}:count={count}\r\n");
            }
        }
        "latencystats" => {
            w.push_str("# Latencystats\r\n");
            if server.config.bool(config::LATENCY_TRACKING) {
                let text = server
                    .config
                    .text(config::LATENCY_TRACKING_INFO_PERCENTILES);
                let percentiles: Vec<&str> = text.split(' ').filter(|p| !p.is_empty()).collect();
                for c in server.commands.all_with_subcommands() {
                    let Some(latency) = c.latency.get().filter(|l| l.total() > 0) else {
                        continue;
                    };
                    let values: Vec<String> = percentiles
                        .iter()
                        .map(|p| {
                            let value = latency.value_at(p.parse().unwrap_or(0.0));
                            format!("p{p}={:.3}", value as f64 / 1000.0)
                        })
                        .collect();
                    let _ = write!(
                        w,
                        "latency_percentiles_usec_{}:{}\r\n",
                        c.name,
                        values.join(",")
                    );
                }
            }
        }
        "cluster" => w.push_str("# Cluster\r\ncluster_enabled:0\r\n"),
        "keyspace" => {
            w.push_str("# Keyspace\r\n");
            for db in server.store.dbs() {
                let keys = db.len();
                if keys > 0 {
                    let _ = write!(
                        w,
                        "db{}:keys={keys},expires={},avg_ttl=0\r\n",
                        db.index,
                        db.volatile_len()
                    );
                }
            }
        }
        _ => {}
    }
}

fn system_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}
