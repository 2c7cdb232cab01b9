//! EVAL, EVALSHA, their read-only forms, and SCRIPT (Redis's eval.c). The Lua side is in
//! `crate::scripting`; here are the arguments, the checks Redis makes before a script runs
//! (`scriptPrepareForRun`), and the script's own client.

use std::sync::Arc;

use bytes::Bytes;

use super::dispatch::over_maxmemory;
use super::{CmdResult, Ctx, Error, NOT_INTEGER, ScriptRules, propagate, reply_help};
use crate::client::{Client, ClientHandle};
use crate::protocol::{Protocol, Reply};
use crate::scripting::engine::Outcome;
use crate::scripting::{Engine, RunCtx, Sha, flags, sha_arg};
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
    // Fed here, before its commands, so that MONITOR shows them after it (EVAL itself skips
    // MONITOR in `call`).
    if server.monitors.is_active() {
        server
            .monitors
            .feed(ctx.client.db, &ctx.client.handle.addr, args);
    }
    if by_sha && args[1].len() != 40 {
        return Err(NOSCRIPT.into());
    }
    let numkeys = parse_i64(&args[2]).ok_or(Error::from(NOT_INTEGER))?;
    if numkeys > args.len() as i64 - 3 {
        return Err("ERR Number of keys can't be greater than number of args".into());
    }
    if numkeys < 0 {
        return Err("ERR Number of keys can't be negative".into());
    }
    let (keys, argv) = args[3..].split_at(numkeys as usize);
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
    prepare(server, declared, read_only)?;
    let compat = declared & flags::EVAL_COMPAT != 0;
    let rules = ScriptRules {
        read_only: read_only || (!compat && declared & flags::NO_WRITES != 0),
        allow_oom: !compat && declared & flags::ALLOW_OOM != 0,
        oom_at_start: over_maxmemory(server),
        wrote: false,
    };
    let name = String::from_utf8_lossy(&sha).into_owned();
    let outcome = run_script(
        ctx,
        rules,
        name,
        true,
        |engine, run, reply| engine.run_eval(&sha, run, keys, argv, reply),
        engine,
    );
    drop(guard);
    outcome
}

const LUA_FAILED: &str = "ERR the Lua interpreter could not be started (out of memory)";

/// Compiles and caches an EVAL body; keeps the flags other threads read in step.
fn create_script(
    server: &Server,
    engine: &mut Engine,
    body: &Bytes,
    loaded: bool,
) -> Result<(Sha, u8), Error> {
    let mut evicted = Vec::new();
    let (sha, declared) = engine.create(body, loaded, &mut evicted)?;
    server.scripts.set_known(|known| {
        for gone in &evicted {
            known.remove(gone);
        }
        known.insert(sha, declared);
    });
    Ok((sha, declared))
}

/// Redis's `scriptPrepareForRun`: refusals that depend on the script's declared flags.
fn prepare(server: &Server, declared: u8, read_only: bool) -> CmdResult {
    if declared & flags::EVAL_COMPAT != 0 {
        return Ok(());
    }
    if declared & flags::NO_WRITES == 0 {
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
    }
    if over_maxmemory(server) && declared & (flags::ALLOW_OOM | flags::NO_WRITES) == 0 {
        return Err(
            "OOM allow-oom flag is not set on the script, can not run it when used \
                    memory > 'maxmemory'"
                .into(),
        );
    }
    Ok(())
}

/// Runs a script for the caller: sets up the script's client (the caller's user and
/// database, RESP2, no blocking), marks it running for other clients, wraps what it writes to
/// the AOF in MULTI/EXEC, and publishes the engine's figures for INFO.
fn run_script(
    ctx: &mut Ctx,
    rules: ScriptRules,
    name: String,
    eval: bool,
    body: impl FnOnce(&mut Engine, &mut RunCtx<'_>, &mut Reply) -> Outcome,
    engine: &mut Engine,
) -> CmdResult {
    let server = ctx.server;
    let mut client = Client::internal(script_client_handle(server), &server.acl);
    client.user = ctx.client.user.clone();
    client.db = ctx.client.db;
    client.protocol = Protocol::Resp2;
    client.deny_blocking = true;
    if server.store.notifier.aof.is_on() {
        propagate::exec_started(&mut client);
    }
    let mut run = RunCtx {
        server,
        client,
        rules,
        reply: Reply::with_capacity(Protocol::Resp2, 1024),
        eval,
    };
    let running = &server.scripts.running;
    running.start(eval, name, &[]);
    let outcome = body(engine, &mut run, ctx.reply);
    running.finish();
    let db = run.client.db;
    propagate::exec_finished(server, &mut run.client, db);
    server.scripts.publish_stats(engine);
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
