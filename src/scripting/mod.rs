//! Lua scripting as Redis 7.0 runs it: EVAL scripts and their cache, function libraries, and
//! the state of the script running now (for BUSY, SCRIPT KILL and FUNCTION KILL).
//!
//! One Lua state serves EVAL and one serves functions (`engine::Engine`, `Functions`, each
//! behind a mutex and made on first use, so an empty server pays nothing for them). A script
//! runs alone: it holds the keyspace gate exclusively, and its `redis.call`s go through the
//! same dispatch as a socket's commands (`commands::call_from_script`).
//!
//! A connection runs its script on its own thread, in slices once the script has run past
//! `busy-reply-threshold` (`slices`), so that other clients then get `-BUSY` and SCRIPT KILL,
//! FUNCTION KILL and SHUTDOWN NOSAVE get through. Inside EXEC, while loading the AOF and in
//! embedded sessions the script runs straight through on the calling thread.

mod api;
mod convert;
pub mod engine;
pub mod functions;
mod libs;
mod lua;
pub mod slices;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;

use crate::commands::meta::flag_bit;
use crate::server::Server;

pub use api::RunCtx;
pub use engine::Engine;
pub use functions::Functions;

pub const LUA_FAILED: &str = "ERR the Lua interpreter could not be started (out of memory)";

/// A script's SHA1 digest in lowercase hex, as EVALSHA names it.
pub type Sha = [u8; 40];

/// The flags a script declares in its shebang (`#!lua flags=no-writes,allow-oom`) or a
/// function in `redis.register_function`.
pub mod flags {
    pub const NO_WRITES: u8 = 1;
    pub const ALLOW_OOM: u8 = 2;
    pub const ALLOW_STALE: u8 = 4;
    pub const NO_CLUSTER: u8 = 8;
    pub const ALLOW_CROSS_SLOT: u8 = 16;
    /// An EVAL script without a shebang: it runs as in Redis 6, flags taken from the commands.
    pub const EVAL_COMPAT: u8 = 32;

    pub const NAMES: &[(u8, &str)] = &[
        (NO_WRITES, "no-writes"),
        (ALLOW_OOM, "allow-oom"),
        (ALLOW_STALE, "allow-stale"),
        (NO_CLUSTER, "no-cluster"),
        (ALLOW_CROSS_SLOT, "allow-cross-slot-keys"),
    ];
}

pub const BUSY_EVAL: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
pub const BUSY_FUNCTION: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";

/// The script running now, as other threads see it.
#[derive(Default)]
pub struct Running {
    active: AtomicBool,
    /// An EVAL script rather than a function (which KILL and which BUSY text apply).
    eval: AtomicBool,
    /// Has run past `busy-reply-threshold`: other clients get BUSY.
    timed_out: AtomicBool,
    /// SCRIPT KILL or FUNCTION KILL asked it to stop.
    killed: AtomicBool,
    /// It has called a write command, so it can no longer be killed.
    wrote: AtomicBool,
    /// When it started (`monotonic_ms`).
    started: AtomicU64,
    /// The function's name and the command that called it, for FUNCTION STATS.
    described: Mutex<Option<(String, Vec<Bytes>)>>,
    done: tokio::sync::Notify,
}

impl Running {
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    pub fn is_timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Acquire)
    }

    /// The BUSY error for other clients while a timed-out script runs.
    pub fn busy_error(&self) -> &'static str {
        if self.eval.load(Ordering::Relaxed) {
            BUSY_EVAL
        } else {
            BUSY_FUNCTION
        }
    }

    /// How long the script has run, in milliseconds.
    pub fn elapsed_ms(&self) -> u64 {
        monotonic_ms().saturating_sub(self.started.load(Ordering::Relaxed))
    }

    /// The running function's name and calling command, for FUNCTION STATS.
    pub fn described(&self) -> Option<(String, Vec<Bytes>)> {
        self.described
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A script starts: `function` is the function's name and its FCALL, for FUNCTION STATS
    /// (which refuses to describe an EVAL script).
    pub(crate) fn start(&self, eval: bool, function: Option<(&str, &[Bytes])>) {
        self.eval.store(eval, Ordering::Relaxed);
        self.timed_out.store(false, Ordering::Relaxed);
        self.killed.store(false, Ordering::Relaxed);
        self.wrote.store(false, Ordering::Relaxed);
        self.started.store(monotonic_ms(), Ordering::Relaxed);
        if let Some((name, command)) = function {
            *self.described.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((name.to_string(), command.to_vec()));
        }
        self.active.store(true, Ordering::Release);
    }

    pub(crate) fn finish(&self) {
        if !self.eval.load(Ordering::Relaxed) {
            *self.described.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        self.timed_out.store(false, Ordering::Release);
        self.active.store(false, Ordering::Release);
        self.done.notify_waiters();
    }

    pub(crate) fn set_timed_out(&self) {
        self.timed_out.store(true, Ordering::Release);
    }

    pub(crate) fn wrote(&self) {
        self.wrote.store(true, Ordering::Relaxed);
    }

    pub(crate) fn kill_requested(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    /// SCRIPT KILL (`eval`) or FUNCTION KILL: Redis's `scriptKill`.
    pub fn kill(&self, eval: bool) -> Result<(), &'static str> {
        if !self.is_active() {
            return Err("NOTBUSY No scripts in execution right now.");
        }
        if self.wrote.load(Ordering::Relaxed) {
            return Err(
                "UNKILLABLE Sorry the script already executed write commands against the dataset. \
                 You can either wait the script termination or kill the server in a hard way \
                 using the SHUTDOWN NOSAVE command.",
            );
        }
        let running_eval = self.eval.load(Ordering::Relaxed);
        if eval && !running_eval {
            return Err(BUSY_FUNCTION);
        }
        if !eval && running_eval {
            return Err(BUSY_EVAL);
        }
        self.killed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Waits until no script runs or waits to run.
    pub async fn wait_idle(&self) {
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if !self.is_active() {
                return;
            }
            done.await;
        }
    }

    /// Waits while a script runs that has not yet timed out: a client's commands wait for it
    /// as they would in Redis's single thread, and after `threshold_ms` they run (to get BUSY,
    /// or to kill it).
    pub async fn wait_while_young(&self, threshold_ms: u64) {
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if !self.is_active() || self.is_timed_out() {
                return;
            }
            // The script's count hook notices the threshold at its next check, within a
            // millisecond or so; look again shortly after.
            let left = threshold_ms.saturating_sub(self.elapsed_ms()).max(1);
            tokio::select! {
                _ = done => {}
                _ = crate::timer::sleep(Duration::from_millis(left)) => {}
            }
        }
    }
}

/// Milliseconds for timing a script, from the cycle counter (`util::clock::Ticks`): unlike
/// `util::now_ms`, never frozen at the start of the running command (the script's hook
/// measures its own run with it), and cheaper than a clock reading per script.
fn monotonic_ms() -> u64 {
    crate::util::clock::Ticks::now().unix_ms()
}

/// A cached EVAL script's flags, readable while the engine is busy (for the flags the
/// command runs with, `effective_flags`).
type KnownFlags = HashMap<Sha, u8, foldhash::fast::RandomState>;

/// The server's scripting state.
#[derive(Default)]
pub struct Scripts {
    engine: Mutex<Option<Engine>>,
    functions: Mutex<Option<Functions>>,
    pub running: Running,
    known: RwLock<KnownFlags>,
    /// Each function's flags by lowercase name, readable while a function runs.
    function_flags: RwLock<HashMap<String, u8>>,
    /// DEBUG SET-DISABLE-DENY-SCRIPTS: scripts may call commands flagged `noscript`.
    pub allow_noscript: AtomicBool,
    /// The client scripts run their commands as (`lua` in MONITOR), made on first use.
    pub client_handle: OnceLock<std::sync::Arc<crate::client::ClientHandle>>,
    /// That client and its reply buffer between scripts, so a script does not make them anew.
    spare: Mutex<Option<(crate::client::Client, crate::protocol::Reply)>>,
    /// Lua memory and cache figures as of the last script or SCRIPT/FUNCTION command, for INFO
    /// (which must not wait for a running script).
    pub stats: Stats,
}

#[derive(Default)]
pub struct Stats {
    pub vm_eval_bytes: AtomicU64,
    pub vm_functions_bytes: AtomicU64,
    pub eval_scripts: AtomicU64,
    pub eval_scripts_bytes: AtomicU64,
    pub evicted_scripts: AtomicU64,
    pub functions: AtomicU64,
    pub libraries: AtomicU64,
}

impl Stats {
    /// INFO's script lines of the memory section, in Redis's order.
    pub fn info_memory(&self, human: fn(u64) -> String) -> String {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        let (eval, functions) = (load(&self.vm_eval_bytes), load(&self.vm_functions_bytes));
        let scripts = load(&self.eval_scripts_bytes);
        format!(
            "used_memory_lua:{eval}\r\nused_memory_vm_eval:{eval}\r\nused_memory_lua_human:{}\r\n\
             used_memory_scripts_eval:{scripts}\r\nnumber_of_cached_scripts:{}\r\n\
             number_of_functions:{}\r\nnumber_of_libraries:{}\r\n\
             used_memory_vm_functions:{functions}\r\nused_memory_vm_total:{}\r\n\
             used_memory_vm_total_human:{}\r\nused_memory_functions:0\r\n\
             used_memory_scripts:{scripts}\r\nused_memory_scripts_human:{}\r\n",
            human(eval),
            load(&self.eval_scripts),
            load(&self.functions),
            load(&self.libraries),
            eval + functions,
            human(eval + functions),
            human(scripts),
        )
    }
}

impl Scripts {
    /// The engine, made on first use; None when Lua cannot start (out of memory).
    pub fn engine(&self, server: &Server) -> MutexGuard<'_, Option<Engine>> {
        let mut engine = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        if engine.is_none() {
            *engine = Engine::new(server.config.bool(crate::config::LUA_ENABLE_DEPRECATED_API));
        }
        engine
    }

    /// The function libraries, made on first use; None when Lua cannot start.
    pub fn functions(&self, server: &Server) -> MutexGuard<'_, Option<Functions>> {
        let mut functions = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        if functions.is_none() {
            let deprecated = server.config.bool(crate::config::LUA_ENABLE_DEPRECATED_API);
            *functions = Functions::new(deprecated);
        }
        functions
    }

    /// The code of every library, for the RDB, the AOF and FUNCTION DUMP; without making the
    /// function sandbox if no library was ever loaded.
    pub fn library_codes(&self) -> Vec<Bytes> {
        let functions = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        functions.as_ref().map_or_else(Vec::new, |f| {
            f.libraries().iter().map(|l| l.code.clone()).collect()
        })
    }

    /// The script client kept from the last script, if any.
    pub fn spare_client(&self) -> Option<(crate::client::Client, crate::protocol::Reply)> {
        self.spare.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub fn keep_client(&self, client: crate::client::Client, mut reply: crate::protocol::Reply) {
        reply.clear();
        *self.spare.lock().unwrap_or_else(|e| e.into_inner()) = Some((client, reply));
    }

    /// The function sandbox's memory, for INFO, after a call.
    pub fn publish_functions_memory(&self, functions: &Functions) {
        self.stats
            .vm_functions_bytes
            .store(functions.memory(), Ordering::Relaxed);
    }

    /// After a change to the libraries: the flags other threads read, and INFO's figures.
    pub fn publish_functions(&self, functions: &Functions) {
        let mut flags = self
            .function_flags
            .write()
            .unwrap_or_else(|e| e.into_inner());
        flags.clear();
        for library in functions.libraries() {
            for function in &library.functions {
                flags.insert(function.name.to_ascii_lowercase(), function.flags);
            }
        }
        let stats = &self.stats;
        stats
            .vm_functions_bytes
            .store(functions.memory(), Ordering::Relaxed);
        stats
            .functions
            .store(functions.function_count() as u64, Ordering::Relaxed);
        stats
            .libraries
            .store(functions.libraries().len() as u64, Ordering::Relaxed);
    }

    /// Loads the libraries a dump held (at start, DEBUG RELOAD, an AOF's RDB preamble); one
    /// already there is an error unless `replace`.
    pub fn load_libraries(
        &self,
        server: &Server,
        codes: &[Bytes],
        replace: bool,
    ) -> Result<(), String> {
        if codes.is_empty() {
            return Ok(());
        }
        let mut guard = self.functions(server);
        let functions = guard.as_mut().ok_or(LUA_FAILED)?;
        for code in codes {
            functions.load(code, replace, false)?;
        }
        self.publish_functions(functions);
        Ok(())
    }

    /// Drops every library (FLUSHALL does not; FUNCTION FLUSH and DEBUG RELOAD do).
    pub fn flush_functions(&self, server: &Server) {
        let mut guard = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_some() {
            let deprecated = server.config.bool(crate::config::LUA_ENABLE_DEPRECATED_API);
            *guard = Functions::new(deprecated);
            if let Some(functions) = guard.as_ref() {
                self.publish_functions(functions);
            }
        }
    }

    /// SCRIPT FLUSH: a new Lua state and an empty cache (the next script makes the state).
    pub fn flush_eval(&self) {
        let old = self.engine.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.set_known(|known| known.clear());
        drop(old);
        for counter in [
            &self.stats.vm_eval_bytes,
            &self.stats.eval_scripts,
            &self.stats.eval_scripts_bytes,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    /// Publishes the engine's figures for INFO.
    pub fn publish_stats(&self, engine: &Engine) {
        let stats = &self.stats;
        stats
            .vm_eval_bytes
            .store(engine.memory(), Ordering::Relaxed);
        stats
            .eval_scripts
            .store(engine.script_count() as u64, Ordering::Relaxed);
        stats
            .eval_scripts_bytes
            .store(engine.scripts_bytes() as u64, Ordering::Relaxed);
        stats
            .evicted_scripts
            .store(engine.evicted(), Ordering::Relaxed);
    }

    /// The flags of a cached EVAL script.
    pub fn known_flags(&self, sha: &Sha) -> Option<u8> {
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(sha)
            .copied()
    }

    pub(crate) fn set_known(&self, update: impl FnOnce(&mut KnownFlags)) {
        update(&mut self.known.write().unwrap_or_else(|e| e.into_inner()));
    }
}

/// The flags a script command's script declared, if it is known (Redis's
/// `evalGetCommandFlags`): an EVAL body's shebang, a cached script's flags.
pub fn declared_flags(server: &Server, command: &str, args: &[Bytes]) -> Option<u8> {
    match command {
        "eval" | "eval_ro" => {
            let body = args.get(1)?;
            let sha = sha1_hex(body);
            server
                .scripts
                .known_flags(&sha)
                .or_else(|| shebang_flags(body).ok().map(|(flags, _)| flags))
        }
        "evalsha" | "evalsha_ro" => server.scripts.known_flags(&sha_arg(args.get(1)?)?),
        "fcall" | "fcall_ro" => {
            let name = String::from_utf8_lossy(args.get(1)?).to_ascii_lowercase();
            let flags = server.scripts.function_flags.read();
            flags.unwrap_or_else(|e| e.into_inner()).get(&name).copied()
        }
        _ => None,
    }
}

/// The SHA1 of `body` in lowercase hex.
pub fn sha1_hex(body: &[u8]) -> Sha {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(body);
    let mut hex = [0u8; 40];
    for (i, byte) in digest.iter().enumerate() {
        hex[2 * i] = b"0123456789abcdef"[(byte >> 4) as usize];
        hex[2 * i + 1] = b"0123456789abcdef"[(byte & 15) as usize];
    }
    hex
}

/// An EVALSHA argument as a lowercase digest, if it has a digest's length.
pub fn sha_arg(arg: &[u8]) -> Option<Sha> {
    let mut sha: Sha = arg.try_into().ok()?;
    sha.make_ascii_lowercase();
    Some(sha)
}

/// Redis's `evalExtractShebangFlags`: a script's flags and the length of its shebang line
/// (0 without one, which means EVAL_COMPAT).
pub fn shebang_flags(body: &[u8]) -> Result<(u8, usize), String> {
    if !body.starts_with(b"#!") {
        return Ok((flags::EVAL_COMPAT, 0));
    }
    let Some(end) = body.iter().position(|&b| b == b'\n') else {
        return Err("ERR Invalid script shebang".into());
    };
    let parts = match crate::protocol::split_args(&body[..end]) {
        Some(parts) if !parts.is_empty() => parts,
        _ => return Err("ERR Invalid engine in script shebang".into()),
    };
    if parts[0] != b"#!lua" {
        return Err(format!(
            "ERR Unexpected engine in script shebang: {}",
            String::from_utf8_lossy(&parts[0])
        ));
    }
    let mut declared = 0;
    for part in &parts[1..] {
        let Some(list) = part.strip_prefix(b"flags=") else {
            return Err(format!(
                "ERR Unknown lua shebang option: {}",
                String::from_utf8_lossy(part)
            ));
        };
        declared |= parse_flag_list(list.split(|&b| b == b',').filter(|f| !f.is_empty()))
            .map_err(|flag| format!("ERR Unexpected flag in script shebang: {flag}"))?;
    }
    Ok((declared, end))
}

/// The flags named in `names`, or the first unknown name.
pub fn parse_flag_list<'a>(names: impl Iterator<Item = &'a [u8]>) -> Result<u8, String> {
    let mut declared = 0;
    for name in names {
        match flags::NAMES.iter().find(|(_, n)| n.as_bytes() == name) {
            Some((flag, _)) => declared |= flag,
            None => return Err(String::from_utf8_lossy(name).into_owned()),
        }
    }
    Ok(declared)
}

/// Redis's `scriptFlagsToCmdFlags`: the command flags an EVAL or FCALL runs with when its
/// script declared flags.
pub fn command_flags_for(command_flags: u32, script: u8) -> u32 {
    if script & flags::EVAL_COMPAT != 0 {
        return command_flags;
    }
    let (write, denyoom, stale) = (flag_bit("write"), flag_bit("denyoom"), flag_bit("stale"));
    let mut result = command_flags & !(write | denyoom | stale | flag_bit("may_replicate"));
    if script & (flags::ALLOW_OOM | flags::NO_WRITES) == 0 {
        result |= denyoom;
    }
    if script & flags::NO_WRITES == 0 {
        result |= write;
    }
    if script & flags::ALLOW_STALE != 0 {
        result |= stale;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebangs_parse_as_redis_parses_them() {
        assert_eq!(shebang_flags(b"return 1"), Ok((flags::EVAL_COMPAT, 0)));
        assert_eq!(shebang_flags(b"#!lua\nreturn 1"), Ok((0, 5)));
        assert_eq!(
            shebang_flags(b"#!lua flags=no-writes,allow-oom\nreturn 1"),
            Ok((flags::NO_WRITES | flags::ALLOW_OOM, 31))
        );
        assert_eq!(
            shebang_flags(b"#!lua"),
            Err("ERR Invalid script shebang".into())
        );
        assert_eq!(
            shebang_flags(b"#!python\n"),
            Err("ERR Unexpected engine in script shebang: #!python".into())
        );
        assert_eq!(
            shebang_flags(b"#!lua flags=bad\n"),
            Err("ERR Unexpected flag in script shebang: bad".into())
        );
        assert_eq!(
            shebang_flags(b"#!lua name=x\n"),
            Err("ERR Unknown lua shebang option: name=x".into())
        );
    }

    #[test]
    fn sha1_is_lowercase_hex() {
        assert_eq!(&sha1_hex(b""), b"da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            sha_arg(b"DA39A3EE5E6B4B0D3255BFEF95601890AFD80709"),
            Some(sha1_hex(b""))
        );
        assert_eq!(sha_arg(b"abc"), None);
    }
}
