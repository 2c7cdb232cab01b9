//! EVAL, EVALSHA, FCALL, their read-only forms, SCRIPT and FUNCTION (Redis's eval.c and
//! functions.c). The Lua side is in `crate::scripting`; here are the arguments, the checks
//! Redis makes before a script runs (`scriptPrepareForRun`), and the script's own client.

use std::sync::Arc;

use bytes::Bytes;

use super::dispatch::{NOREPLICAS, out_of_memory, too_few_replicas};
use super::{CmdResult, Ctx, Error, NOT_INTEGER, ScriptRules, propagate, reply_help};
use crate::client::{Client, ClientHandle};
use crate::protocol::{Protocol, Reply};
use crate::scripting::engine::Outcome;
use crate::scripting::{Engine, LUA_FAILED, RunCtx, Sha, flags, sha_arg};
use crate::server::Server;
use crate::util::parse_i64;

const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

pub fn eval(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    eval_generic(ctx, args, false, false)
}

pub fn eval_ro(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    eval_generic(ctx, args, false, true)
}

pub fn evalsha(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    eval_generic(ctx, args, true, false)
}

pub fn evalsha_ro(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    eval_generic(ctx, args, true, true)
}

/// Redis's `evalGenericCommand`.
fn eval_generic(ctx: &mut Ctx, args: &[Bytes], by_sha: bool, read_only: bool) -> CmdResult {
    let server = ctx.server;
    feed_monitors(ctx, args);
    if by_sha && args[1].len() != 40 {
        return Err(NOSCRIPT.into());
    }
    let numkeys = parse_i64(&args[2]).ok_or(Error::from(NOT_INTEGER))?;
    let (keys, argv) = split_keys(args, numkeys)?;
    let mut guard = server.scripts.engine(server);
    let engine = guard.as_mut().ok_or(Error::from(LUA_FAILED))?;
    let (sha, declared) = if by_sha {
        let sha = sha_arg(&args[1]).ok_or(Error::from(NOSCRIPT))?;
        let declared = engine.script(&sha).ok_or(Error::from(NOSCRIPT))?.flags;
        engine.touch(&sha);
        (sha, declared)
    } else {
        create_script(server, engine, &args[1], false)?
    };
    let rules = prepare(server, declared, read_only)?;
    let name = std::str::from_utf8(&sha).unwrap_or_default();
    run_script(ctx, rules, name, None, |run, reply| {
        engine.run_eval(&sha, name, run, keys, argv, reply)
    })
}

/// Feeds an EVAL or FCALL to MONITOR before the commands it runs, so that they show after it
/// (the command itself skips MONITOR in `call`).
fn feed_monitors(ctx: &Ctx, args: &[Bytes]) {
    let monitors = &ctx.server.monitors;
    if monitors.is_active() {
        monitors.feed(ctx.client.db, &ctx.client.handle.addr, args);
    }
}

/// KEYS and ARGV of an EVAL or FCALL with `numkeys` keys.
fn split_keys(args: &[Bytes], numkeys: i64) -> Result<(&[Bytes], &[Bytes]), Error> {
    if numkeys > args.len() as i64 - 3 {
        return Err("ERR Number of keys can't be greater than number of args".into());
    }
    if numkeys < 0 {
        return Err("ERR Number of keys can't be negative".into());
    }
    Ok(args[3..].split_at(numkeys as usize))
}

pub fn fcall(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    fcall_generic(ctx, args, false)
}

pub fn fcall_ro(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    fcall_generic(ctx, args, true)
}

/// Redis's `fcallCommandGeneric`.
fn fcall_generic(ctx: &mut Ctx, args: &[Bytes], read_only: bool) -> CmdResult {
    let server = ctx.server;
    feed_monitors(ctx, args);
    let mut guard = server.scripts.functions(server);
    let functions = guard.as_mut().ok_or(Error::from(LUA_FAILED))?;
    let (name, declared) = match functions.function(&args[1]) {
        Some((_, function)) => (function.name.clone(), function.flags),
        None => return Err("ERR Function not found".into()),
    };
    let numkeys = parse_i64(&args[2]).ok_or(Error::from("ERR Bad number of keys provided"))?;
    let (keys, argv) = split_keys(args, numkeys)?;
    let rules = prepare(server, declared, read_only)?;
    let outcome = run_script(ctx, rules, &name, Some(args), |run, reply| {
        functions.call(&args[1], run, keys, argv, reply)
    });
    server.scripts.publish_functions_memory(functions);
    outcome
}

/// Compiles and caches an EVAL body; keeps the flags other threads read in step.
fn create_script(
    server: &Server,
    engine: &mut Engine,
    body: &Bytes,
    loaded: bool,
) -> Result<(Sha, u8), Error> {
    let mut evicted = Vec::new();
    let known_before = engine.script_count();
    let (sha, declared) = engine.create(body, loaded, &mut evicted)?;
    if engine.script_count() != known_before || !evicted.is_empty() {
        server.scripts.set_known(|known| {
            for gone in &evicted {
                known.remove(gone);
            }
            known.insert(sha, declared);
        });
        server.scripts.publish_stats(engine);
    }
    Ok((sha, declared))
}

/// Redis's `scriptPrepareForRun`: refusals that depend on the script's declared flags, and
/// the rules the commands it calls run under. An EVAL script without a shebang (EVAL_COMPAT)
/// declares nothing: only the command it is run with can make it read-only.
fn prepare(server: &Server, declared: u8, read_only: bool) -> Result<ScriptRules, Error> {
    let compat = declared & flags::EVAL_COMPAT != 0;
    let oom = out_of_memory(server);
    if !compat && declared & flags::NO_WRITES == 0 {
        if server.snapshots.refuses_writes(&server.config) {
            return Err(
                "MISCONF Redis is configured to save RDB snapshots, but it's currently \
                        unable to persist to disk. Writable scripts are blocked. Use 'no-writes' \
                        flag for read only scripts."
                    .into(),
            );
        }
        if let Some(error) = server.store.notifier.aof.write_error() {
            return Err(format!(
                "MISCONF Redis is configured to persist data to AOF, but it's currently unable \
                 to persist to disk. Writable scripts are blocked. Use 'no-writes' flag for read \
                 only scripts. AOF error: {error}"
            )
            .into());
        }
        if read_only {
            return Err("ERR Can not execute a script with write flag using *_ro command.".into());
        }
        if too_few_replicas(server) {
            return Err(NOREPLICAS.into());
        }
    }
    if !compat && oom && declared & (flags::ALLOW_OOM | flags::NO_WRITES) == 0 {
        return Err(
            "OOM allow-oom flag is not set on the script, can not run it when used \
                    memory > 'maxmemory'"
                .into(),
        );
    }
    Ok(ScriptRules {
        read_only: read_only || (!compat && declared & flags::NO_WRITES != 0),
        allow_oom: !compat && declared & flags::ALLOW_OOM != 0,
        oom_at_start: oom,
        wrote: false,
    })
}

/// Runs a script for the caller: sets up the script's client (the caller's user and
/// database, RESP2, no blocking), marks it running for other clients, and wraps what it
/// writes to the AOF in MULTI/EXEC.
fn run_script(
    ctx: &mut Ctx,
    rules: ScriptRules,
    name: &str,
    function: Option<&[Bytes]>,
    body: impl FnOnce(&mut RunCtx<'_>, &mut Reply) -> Outcome,
) -> CmdResult {
    let server = ctx.server;
    let (mut client, reply) = server.scripts.spare_client().unwrap_or_else(|| {
        let mut client = Client::internal(script_client_handle(server), &server.acl);
        client.deny_blocking = true;
        client.in_script = true;
        (client, Reply::with_capacity(Protocol::Resp2, 1024))
    });
    client.user = ctx.client.user.clone();
    client.db = ctx.client.db;
    client.protocol = Protocol::Resp2;
    client.propagate = true;
    if server.store.notifier.propagating() {
        propagate::exec_started(&mut client);
    }
    let eval = function.is_none();
    let mut run = RunCtx {
        server,
        caller: ctx.command,
        client,
        rules,
        reply,
        eval,
    };
    let running = &server.scripts.running;
    running.start(eval, function.map(|command| (name, command)));
    let outcome = body(&mut run, ctx.reply);
    running.finish();
    let db = run.client.db;
    propagate::exec_finished(server, &mut run.client, db);
    server.scripts.keep_client(run.client, run.reply);
    match outcome {
        Outcome::Replied => Ok(()),
        Outcome::Failed(message) => Err(message.into()),
    }
}

/// The client scripts run their commands as: `lua` in MONITOR and the slow log.
fn script_client_handle(server: &Server) -> Arc<ClientHandle> {
    server
        .scripts
        .client_handle
        .get_or_init(|| {
            Arc::new(ClientHandle::new(
                server.clients.next_id(),
                "lua".into(),
                String::new(),
                -1,
            ))
        })
        .clone()
}

pub fn script_load(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let server = ctx.server;
    let mut guard = server.scripts.engine(server);
    let engine = guard.as_mut().ok_or(Error::from(LUA_FAILED))?;
    let (sha, _) = create_script(server, engine, &args[2], true)?;
    server.scripts.publish_stats(engine);
    ctx.reply.bulk(&sha);
    Ok(())
}

pub fn script_exists(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let scripts = &ctx.server.scripts;
    ctx.reply.array(args.len() - 2);
    for arg in &args[2..] {
        let known = sha_arg(arg).is_some_and(|sha| scripts.known_flags(&sha).is_some());
        ctx.reply.int(known as i64);
    }
    Ok(())
}

pub fn script_flush(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    match &args[2..] {
        [] => {}
        [mode] if mode.eq_ignore_ascii_case(b"sync") || mode.eq_ignore_ascii_case(b"async") => {}
        _ => return Err("ERR SCRIPT FLUSH only support SYNC|ASYNC option".into()),
    }
    ctx.server.scripts.flush_eval();
    ctx.reply.ok();
    Ok(())
}

pub fn script_kill(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    ctx.server.scripts.running.kill(true)?;
    ctx.reply.ok();
    Ok(())
}

pub fn script_help(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    reply_help(
        ctx,
        &[
            "EXISTS <sha1> [<sha1> ...]",
            "    Return information about the existence of the scripts in the script cache.",
            "FLUSH [ASYNC|SYNC]",
            "    Flush the Lua scripts cache. Very dangerous on replicas.",
            "    When called without the optional mode argument, the behavior is determined by the",
            "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
            "    * ASYNC: Asynchronously flush the scripts cache.",
            "    * SYNC: Synchronously flush the scripts cache.",
            "KILL",
            "    Kill the currently executing Lua script.",
            "LOAD <script>",
            "    Load a script into the scripts cache without executing it.",
        ],
    );
    Ok(())
}

/// A change to the libraries counts as a change to the data: it reaches the AOF and counts
/// toward save points.
fn libraries_changed(ctx: &Ctx, functions: &crate::scripting::Functions) {
    ctx.server.scripts.publish_functions(functions);
    ctx.server
        .store
        .notifier
        .dirty
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

pub fn function_load(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let mut replace = false;
    let mut at = 2;
    while at < args.len() - 1 {
        if !args[at].eq_ignore_ascii_case(b"replace") {
            return Err(format!(
                "ERR Unknown option given: {}",
                String::from_utf8_lossy(&args[at])
            )
            .into());
        }
        replace = true;
        at += 1;
    }
    if at >= args.len() {
        return Err("ERR Function code is missing".into());
    }
    let server = ctx.server;
    let mut guard = server.scripts.functions(server);
    let functions = guard.as_mut().ok_or(Error::from(LUA_FAILED))?;
    // Replaying the AOF may take as long as the library took when it was first loaded.
    let timeout = ctx.client.acl_generation != Client::INTERNAL;
    let name = functions.load(&args[at], replace, timeout)?;
    libraries_changed(ctx, functions);
    ctx.reply.bulk(name.as_bytes());
    Ok(())
}

pub fn function_delete(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let server = ctx.server;
    let mut guard = server.scripts.functions(server);
    let functions = guard.as_mut().ok_or(Error::from(LUA_FAILED))?;
    if !functions.delete(&args[2]) {
        return Err("ERR Library not found".into());
    }
    libraries_changed(ctx, functions);
    ctx.reply.ok();
    Ok(())
}

pub fn function_flush(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    match &args[2..] {
        [] => {}
        [mode] if mode.eq_ignore_ascii_case(b"sync") || mode.eq_ignore_ascii_case(b"async") => {}
        [_] => return Err("ERR FUNCTION FLUSH only supports SYNC|ASYNC option".into()),
        _ => return Err(super::subcommand_syntax_error(args)),
    }
    let server = ctx.server;
    server.scripts.flush_functions(server);
    server
        .store
        .notifier
        .dirty
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ctx.reply.ok();
    Ok(())
}

pub fn function_list(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let mut with_code = false;
    let mut pattern: Option<&Bytes> = None;
    let mut i = 2;
    while i < args.len() {
        let arg = &args[i];
        if !with_code && arg.eq_ignore_ascii_case(b"withcode") {
            with_code = true;
        } else if pattern.is_none() && arg.eq_ignore_ascii_case(b"libraryname") {
            i += 1;
            pattern = Some(
                args.get(i)
                    .ok_or(Error::from("ERR library name argument was not given"))?,
            );
        } else {
            return Err(format!("ERR Unknown argument {}", String::from_utf8_lossy(arg)).into());
        }
        i += 1;
    }
    let server = ctx.server;
    let guard = server.scripts.functions(server);
    let functions = guard.as_ref().ok_or(Error::from(LUA_FAILED))?;
    let listed: Vec<_> = functions
        .libraries()
        .iter()
        .filter(|lib| pattern.is_none_or(|p| crate::util::glob_match(p, lib.name.as_bytes(), true)))
        .collect();
    let reply = &mut *ctx.reply;
    reply.array(listed.len());
    for library in listed {
        reply.map(if with_code { 4 } else { 3 });
        reply.bulk(b"library_name");
        reply.bulk(library.name.as_bytes());
        reply.bulk(b"engine");
        reply.bulk(b"LUA");
        reply.bulk(b"functions");
        reply.array(library.functions.len());
        for function in &library.functions {
            reply.map(3);
            reply.bulk(b"name");
            reply.bulk(function.name.as_bytes());
            reply.bulk(b"description");
            match &function.description {
                Some(text) => reply.bulk(text),
                None => reply.null(),
            }
            reply.bulk(b"flags");
            let names: Vec<&str> = flags::NAMES
                .iter()
                .filter(|(flag, _)| function.flags & flag != 0)
                .map(|(_, name)| *name)
                .collect();
            reply.set(names.len());
            for name in names {
                reply.simple(name);
            }
        }
        if with_code {
            reply.bulk(b"library_code");
            reply.bulk(&library.code);
        }
    }
    Ok(())
}

pub fn function_dump(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let compress = ctx.server.config.bool(crate::config::RDBCOMPRESSION);
    let payload =
        crate::persist::rdb::dump_functions(&ctx.server.scripts.library_codes(), compress);
    ctx.reply.bulk(&payload);
    Ok(())
}

pub fn function_restore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if args.len() > 4 {
        return Err(super::subcommand_syntax_error(args));
    }
    let (flush, replace) = match args.get(3) {
        None => (false, false),
        Some(p) if p.eq_ignore_ascii_case(b"append") => (false, false),
        Some(p) if p.eq_ignore_ascii_case(b"replace") => (false, true),
        Some(p) if p.eq_ignore_ascii_case(b"flush") => (true, false),
        Some(_) => {
            return Err(
                "ERR Wrong restore policy given, value should be either FLUSH, APPEND \
                        or REPLACE."
                    .into(),
            );
        }
    };
    let payloads = crate::persist::rdb::undump_functions(&args[2])?;
    let server = ctx.server;
    let mut guard = server.scripts.functions(server);
    let functions = guard.as_mut().ok_or(Error::from(LUA_FAILED))?;
    let deprecated = server.config.bool(crate::config::LUA_ENABLE_DEPRECATED_API);
    *functions = functions.restored(&payloads, flush, replace, deprecated)?;
    libraries_changed(ctx, functions);
    ctx.reply.ok();
    Ok(())
}

pub fn function_stats(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let scripts = &ctx.server.scripts;
    let running = &scripts.running;
    let described = running.is_active().then(|| running.described()).flatten();
    if described.is_some() && running.busy_error() == crate::scripting::BUSY_EVAL {
        return Err(crate::scripting::BUSY_EVAL.into());
    }
    let reply = &mut *ctx.reply;
    reply.map(2);
    reply.bulk(b"running_script");
    match described {
        None => reply.null(),
        Some((name, command)) => {
            reply.map(3);
            reply.bulk(b"name");
            reply.bulk(name.as_bytes());
            reply.bulk(b"command");
            reply.bulks(command.iter().map(|a| &a[..]));
            reply.bulk(b"duration_ms");
            reply.int(running.elapsed_ms() as i64);
        }
    }
    reply.bulk(b"engines");
    reply.map(1);
    reply.bulk(b"LUA");
    reply.map(2);
    let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    reply.bulk(b"libraries_count");
    reply.int(load(&scripts.stats.libraries) as i64);
    reply.bulk(b"functions_count");
    reply.int(load(&scripts.stats.functions) as i64);
    Ok(())
}

pub fn function_kill(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    ctx.server.scripts.running.kill(false)?;
    ctx.reply.ok();
    Ok(())
}

pub fn function_help(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    reply_help(
        ctx,
        &[
            "LOAD [REPLACE] <FUNCTION CODE>",
            "    Create a new library with the given library name and code.",
            "DELETE <LIBRARY NAME>",
            "    Delete the given library.",
            "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
            "    Return general information on all the libraries:",
            "    * Library name",
            "    * The engine used to run the Library",
            "    * Library description",
            "    * Functions list",
            "    * Library code (if WITHCODE is given)",
            "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
            "STATS",
            "    Return information about the current function running:",
            "    * Function name",
            "    * Command used to run the function",
            "    * Duration in MS that the function is running",
            "    If no function is running, return nil",
            "    In addition, returns a list of available engines.",
            "KILL",
            "    Kill the current running function.",
            "FLUSH [ASYNC|SYNC]",
            "    Delete all the libraries.",
            "    When called without the optional mode argument, the behavior is determined by the",
            "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
            "    * ASYNC: Asynchronously flush the libraries.",
            "    * SYNC: Synchronously flush the libraries.",
            "DUMP",
            "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
            "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
            "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
            "    control how to handle existing libraries (default APPEND):",
            "    * FLUSH: delete all existing libraries.",
            "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
            "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
            "      libraries with the new libraries (notice that even on this option there is a chance of failure",
            "      in case of functions name collision with another library).",
        ],
    );
    Ok(())
}
