//! The `redis` table scripts see (`redis.call`, `redis.pcall`, `redis.error_reply` ...), the
//! `pcall` that unwraps Redis's error tables, Redis's `math.random`, and the count hook that
//! notices a script running too long or killed (Redis's script_lua.c).

use std::cell::Cell;
use std::ffi::{c_char, c_int};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::convert::push_reply;
use super::lua::*;
use crate::client::Client;
use crate::commands::{ScriptRules, call_from_script};
use crate::protocol::{Protocol, Reply};
use crate::server::Server;

/// The script being run on this thread: what its `redis.call`s need.
pub struct RunCtx<'a> {
    pub server: &'a Server,
    /// The EVAL or FCALL that runs the script, whose failures it counts.
    pub caller: &'a crate::commands::Command,
    /// The script's own client: the caller's user and database, RESP2 until
    /// `redis.setresp(3)`.
    pub client: Client,
    pub rules: ScriptRules,
    /// Where called commands write their replies, reused call after call.
    pub reply: Reply,
    /// For the kill error's wording: SCRIPT KILL or FUNCTION KILL.
    pub eval: bool,
}

thread_local! {
    static CURRENT: Cell<*mut RunCtx<'static>> = const { Cell::new(std::ptr::null_mut()) };
}

/// Makes `run` the script of this thread while `body` runs.
pub fn with_current<R>(run: &mut RunCtx<'_>, body: impl FnOnce() -> R) -> R {
    struct Reset(*mut RunCtx<'static>);
    impl Drop for Reset {
        fn drop(&mut self) {
            CURRENT.set(self.0);
        }
    }
    let previous = CURRENT.replace((run as *mut RunCtx<'_>).cast());
    let _reset = Reset(previous);
    body()
}

/// The script running on this thread, if any.
fn current<'a>() -> Option<&'a mut RunCtx<'a>> {
    let run = CURRENT.get();
    // SAFETY: set by `with_current` for the duration of a script, on this thread only, and
    // the functions here use it only while Lua runs that script.
    unsafe { run.cast::<RunCtx<'a>>().as_mut() }
}

const PROPAGATE_AOF: i64 = 1;
const PROPAGATE_REPL: i64 = 2;

/// Registers the `redis` table, replaces `pcall`, `math.random` and `math.randomseed`.
///
/// # Safety
/// `l` is a live state being set up.
pub unsafe fn register(l: State) {
    unsafe {
        lua_pushcclosure(l, pcall, 0);
        lua_setfield(l, LUA_GLOBALSINDEX, c"pcall".as_ptr());

        lua_createtable(l, 0, 32);
        set_functions(
            l,
            &[
                (c"call", redis_call),
                (c"pcall", redis_pcall),
                (c"log", log),
                (c"setresp", setresp),
                (c"sha1hex", sha1hex),
                (c"error_reply", error_reply),
                (c"status_reply", status_reply),
                (c"set_repl", set_repl),
                (c"acl_check_cmd", acl_check_cmd),
                (c"replicate_commands", replicate_commands),
                (c"breakpoint", breakpoint),
                (c"debug", debug),
            ],
        );
        for (name, value) in [
            (c"LOG_DEBUG", 0),
            (c"LOG_VERBOSE", 1),
            (c"LOG_NOTICE", 2),
            (c"LOG_WARNING", 3),
            (c"REPL_NONE", 0),
            (c"REPL_AOF", PROPAGATE_AOF),
            (c"REPL_SLAVE", PROPAGATE_REPL),
            (c"REPL_REPLICA", PROPAGATE_REPL),
            (c"REPL_ALL", PROPAGATE_AOF | PROPAGATE_REPL),
            (c"REDIS_VERSION_NUM", redis_version_num()),
        ] {
            lua_pushnumber(l, value as f64);
            raw_set_field(l, -2, name);
        }
        push_str(l, crate::server::REDIS_VERSION);
        raw_set_field(l, -2, c"REDIS_VERSION");
        lua_setfield(l, LUA_GLOBALSINDEX, c"redis".as_ptr());

        lua_getfield_(l, LUA_GLOBALSINDEX, c"math".as_ptr());
        set_functions(l, &[(c"random", random), (c"randomseed", randomseed)]);
        lua_pop(l, 1);
    }
}

/// `0x00MMmmpp`, as Redis's REDIS_VERSION_NUM.
fn redis_version_num() -> i64 {
    crate::server::REDIS_VERSION
        .split('.')
        .map(|part| part.parse::<i64>().unwrap_or(0))
        .fold(0, |num, part| (num << 8) | part)
}

/// Sets the hook that checks, every 100,000 instructions, whether the script has run past
/// `busy-reply-threshold` or was killed; 0 turns the checks off, as in Redis.
///
/// # Safety
/// `l` is a live state.
pub unsafe fn set_hook(l: State, threshold_ms: i64) {
    unsafe {
        if threshold_ms > 0 {
            lua_sethook(l, Some(count_hook), LUA_MASKCOUNT, 100_000);
        } else {
            lua_sethook(l, None, 0, 0);
        }
    }
}

unsafe extern "C-unwind" fn count_hook(l: State, _ar: *mut lua_Debug) {
    let killed = {
        let Some(run) = current() else { return };
        let running = &run.server.scripts.running;
        if !running.is_timed_out() {
            let threshold = run
                .server
                .config
                .int(crate::config::BUSY_REPLY_THRESHOLD)
                .max(0) as u64;
            let elapsed = running.elapsed_ms();
            if elapsed < threshold {
                return;
            }
            let (command, name) = if run.eval {
                ("SCRIPT KILL", "eval script")
            } else {
                ("FUNCTION KILL", "function")
            };
            tracing::warn!(
                "Slow script detected: still in execution after {elapsed} milliseconds. You can \
                 try killing the script using the {command} command. Script name is: {name}."
            );
            running.set_timed_out();
        }
        super::slices::let_others_run();
        running.kill_requested()
    };
    if killed {
        tracing::warn!("Lua script killed by user with SCRIPT KILL.");
        unsafe {
            // Every line from now on raises again, so a pcall cannot catch the kill for good.
            lua_sethook(l, Some(count_hook), LUA_MASKLINE, 0);
            push_error_table(l, b"Script killed by user with SCRIPT KILL...");
            lua_error(l);
        }
    }
}

/// Redis's `luaRedisPcall`: Lua's pcall, except that an error table (what `redis.call` and
/// `error_reply` raise) comes back as its message, as scripts written before Redis 7 expect.
unsafe extern "C-unwind" fn pcall(l: State) -> c_int {
    unsafe {
        luaL_checkany(l, 1);
        let argc = lua_gettop(l);
        lua_pushboolean(l, 1);
        lua_insert(l, 1);
        if lua_pcall(l, argc - 1, LUA_MULTRET, 0) != 0 {
            lua_remove(l, 1);
            if lua_type(l, -1) == LUA_TTABLE {
                lua_getfield_(l, -1, c"err".as_ptr());
                if lua_isstring(l, -1) != 0 {
                    lua_replace(l, -2);
                }
            }
            lua_pushboolean(l, 0);
            lua_insert(l, 1);
        }
        lua_gettop(l)
    }
}

unsafe extern "C-unwind" fn redis_call(l: State) -> c_int {
    unsafe { finish(l, || call_command(l, true)) }
}

unsafe extern "C-unwind" fn redis_pcall(l: State) -> c_int {
    unsafe { finish(l, || call_command(l, false)) }
}

/// Raises the error table on top of the stack, or returns it (`redis.pcall`).
fn raise_or_return(raise: bool) -> Outcome {
    if raise {
        Outcome::Raise
    } else {
        Outcome::Return(1)
    }
}

/// Pushes an error table and raises it.
unsafe fn raise(l: State, message: &[u8]) -> Outcome {
    unsafe { push_error_table(l, message) };
    Outcome::Raise
}

/// Redis's `luaRedisGenericCommand`: runs a command through the dispatch path and pushes its
/// reply as Lua values.
unsafe fn call_command(l: State, raise_errors: bool) -> Outcome {
    unsafe {
        let Some(run) = current() else {
            return raise(
                l,
                b"redis.call/pcall can only be called inside a script invocation",
            );
        };
        let args = match command_args(l) {
            Ok(args) => args,
            Err(message) => {
                push_error_table(l, message);
                return raise_or_return(raise_errors);
            }
        };
        run.reply.clear();
        run.reply.protocol = run.client.protocol;
        let called = call_from_script(
            run.server,
            &mut run.client,
            &mut run.reply,
            &args,
            &mut run.rules,
        );
        drop(args);
        match called {
            Err(message) => {
                push_error_table(l, message.as_bytes());
                lua_pushboolean(l, 1);
                raw_set_field(l, -2, c"ignore_error_stats_update");
                raise_or_return(raise_errors)
            }
            Ok(()) => {
                let is_error = run.reply.buf.first() == Some(&b'-');
                push_reply(l, &run.reply.buf);
                raise_or_return(raise_errors && is_error)
            }
        }
    }
}

/// The arguments of a `redis.call`, popped from the stack (Redis's `luaArgsToRedisArgv`):
/// strings as they are, numbers as `%.17g` prints them.
unsafe fn command_args(l: State) -> Result<Vec<Bytes>, &'static [u8]> {
    unsafe {
        let argc = lua_gettop(l);
        if argc == 0 {
            return Err(b"Please specify at least one argument for this redis lib call");
        }
        // Every argument in one buffer: one allocation for the call, not one per argument.
        let mut text = bytes::BytesMut::with_capacity(256);
        let mut ends = Vec::with_capacity(argc as usize);
        for i in 1..=argc {
            if lua_type(l, i) == LUA_TNUMBER {
                text.extend_from_slice(&format_g17(lua_tonumber(l, i)));
            } else {
                match to_bytes(l, i) {
                    Some(bytes) => text.extend_from_slice(bytes),
                    None => break,
                }
            }
            ends.push(text.len());
        }
        lua_settop(l, 0);
        if ends.len() != argc as usize {
            return Err(b"Lua redis lib command arguments must be strings or integers");
        }
        let text = text.freeze();
        let mut start = 0;
        Ok(ends
            .into_iter()
            .map(|end| {
                let arg = text.slice(start..end);
                start = end;
                arg
            })
            .collect())
    }
}

/// A number as C's `%.17g` prints it (what Redis passes to commands for Lua numbers).
pub fn format_g17(value: f64) -> Vec<u8> {
    // Whole numbers, what scripts mostly pass, print as integers.
    if value.fract() == 0.0 && value.abs() < 1e17 && !(value == 0.0 && value.is_sign_negative()) {
        return itoa::Buffer::new().format(value as i64).as_bytes().to_vec();
    }
    let mut buf = [0u8; 64];
    // SAFETY: the format takes one double, and snprintf writes at most buf.len() bytes.
    let len = unsafe {
        libc::snprintf(
            buf.as_mut_ptr().cast::<c_char>(),
            buf.len(),
            c"%.17g".as_ptr(),
            value,
        )
    };
    buf[..(len.max(0) as usize).min(buf.len() - 1)].to_vec()
}

unsafe extern "C-unwind" fn sha1hex(l: State) -> c_int {
    unsafe {
        finish(l, || {
            if lua_gettop(l) != 1 {
                return raise(l, b"wrong number of arguments");
            }
            let digest = super::sha1_hex(to_bytes(l, 1).unwrap_or_default());
            push_bytes(l, &digest);
            Outcome::Return(1)
        })
    }
}

/// Whether the one argument is a string; if not, leaves Redis's error table as the result.
unsafe fn one_string_argument(l: State) -> bool {
    unsafe {
        if lua_gettop(l) != 1 || lua_type(l, -1) != LUA_TSTRING {
            push_error_table(l, b"wrong number or type of arguments");
            return false;
        }
        true
    }
}

unsafe extern "C-unwind" fn error_reply(l: State) -> c_int {
    unsafe {
        finish(l, || {
            if one_string_argument(l) {
                let text = to_bytes(l, 1).unwrap_or_default();
                if text.starts_with(b"-") {
                    push_error_table(l, text);
                } else {
                    let mut coded = Vec::with_capacity(text.len() + 1);
                    coded.push(b'-');
                    coded.extend_from_slice(text);
                    push_error_table(l, &coded);
                }
            }
            Outcome::Return(1)
        })
    }
}

unsafe extern "C-unwind" fn status_reply(l: State) -> c_int {
    unsafe {
        if one_string_argument(l) {
            lua_createtable(l, 0, 1);
            lua_pushvalue(l, 1);
            raw_set_field(l, -2, c"ok");
        }
        1
    }
}

unsafe extern "C-unwind" fn set_repl(l: State) -> c_int {
    unsafe {
        finish(l, || {
            let Some(run) = current() else {
                return raise(
                    l,
                    b"redis.set_repl can only be called inside a script invocation",
                );
            };
            if lua_gettop(l) != 1 {
                return raise(l, b"redis.set_repl() requires two arguments.");
            }
            let flags = lua_tonumber(l, -1) as i64;
            if flags & !(PROPAGATE_AOF | PROPAGATE_REPL) != 0 {
                return raise(
                    l,
                    b"Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
                );
            }
            run.client.propagate = flags & PROPAGATE_AOF != 0;
            Outcome::Return(0)
        })
    }
}

unsafe extern "C-unwind" fn acl_check_cmd(l: State) -> c_int {
    unsafe {
        finish(l, || {
            let Some(run) = current() else {
                return raise(
                    l,
                    b"redis.acl_check_cmd can only be called inside a script invocation",
                );
            };
            let args = match command_args(l) {
                Ok(args) => args,
                Err(message) => return raise(l, message),
            };
            let Ok(command) = run.server.commands.resolve(&args) else {
                return raise(l, b"Invalid command passed to redis.acl_check_cmd()");
            };
            let allowed = run.client.user.check(command, &args).is_ok();
            drop(args);
            lua_pushboolean(l, allowed as c_int);
            Outcome::Return(1)
        })
    }
}

unsafe extern "C-unwind" fn log(l: State) -> c_int {
    unsafe {
        finish(l, || {
            let argc = lua_gettop(l);
            if argc < 2 {
                return raise(l, b"redis.log() requires two arguments or more.");
            }
            if lua_isnumber(l, 1) == 0 {
                return raise(l, b"First argument must be a number (log level).");
            }
            let level = lua_tonumber(l, 1) as i64;
            if !(0..=3).contains(&level) {
                return raise(l, b"Invalid debug level.");
            }
            let mut line = Vec::new();
            for i in 2..=argc {
                if let Some(text) = to_bytes(l, i) {
                    if i != 2 {
                        line.push(b' ');
                    }
                    line.extend_from_slice(text);
                }
            }
            let line = String::from_utf8_lossy(&line);
            match level {
                0 | 1 => tracing::debug!("{line}"),
                2 => tracing::info!("{line}"),
                _ => tracing::warn!("{line}"),
            }
            Outcome::Return(0)
        })
    }
}

unsafe extern "C-unwind" fn setresp(l: State) -> c_int {
    unsafe {
        finish(l, || {
            let Some(run) = current() else {
                return raise(
                    l,
                    b"redis.setresp can only be called inside a script invocation",
                );
            };
            if lua_gettop(l) != 1 {
                return raise(l, b"redis.setresp() requires one argument.");
            }
            run.client.protocol = match lua_tonumber(l, 1) as i64 {
                2 => Protocol::Resp2,
                3 => Protocol::Resp3,
                _ => return raise(l, b"RESP version must be 2 or 3."),
            };
            Outcome::Return(0)
        })
    }
}

/// Effects are always replicated in Redis 7: kept for old scripts.
unsafe extern "C-unwind" fn replicate_commands(l: State) -> c_int {
    unsafe { lua_pushboolean(l, 1) };
    1
}

/// The Lua debugger is not built: a breakpoint never stops.
unsafe extern "C-unwind" fn breakpoint(l: State) -> c_int {
    unsafe { lua_pushboolean(l, 0) };
    1
}

/// Logs to the Lua debugger's console, which is never attached.
unsafe extern "C-unwind" fn debug(_l: State) -> c_int {
    0
}

/// The state of Redis's `math.random`: the 48-bit generator of POSIX `lrand48`, so a seed
/// gives the same numbers on every platform, as in Redis.
static RANDOM_STATE: AtomicU64 = AtomicU64::new(0x1234_ABCD_330E);

fn lrand48() -> i32 {
    let next = RANDOM_STATE
        .load(Ordering::Relaxed)
        .wrapping_mul(0x5_DEEC_E66D)
        .wrapping_add(0xB)
        & ((1 << 48) - 1);
    RANDOM_STATE.store(next, Ordering::Relaxed);
    (next >> 17) as i32
}

fn srand48(seed: i32) {
    RANDOM_STATE.store(((seed as u32 as u64) << 16) | 0x330E, Ordering::Relaxed);
}

unsafe extern "C-unwind" fn random(l: State) -> c_int {
    unsafe {
        if current().is_none() {
            return luaL_error(
                l,
                c"math.random can only be called inside a script invocation".as_ptr(),
            );
        }
        let r = (lrand48() % i32::MAX) as f64 / i32::MAX as f64;
        match lua_gettop(l) {
            0 => lua_pushnumber(l, r),
            1 => {
                let upper = luaL_checkinteger(l, 1) as i32;
                if upper < 1 {
                    luaL_argerror(l, 1, c"interval is empty".as_ptr());
                }
                lua_pushnumber(l, (r * upper as f64).floor() + 1.0);
            }
            2 => {
                let lower = luaL_checkinteger(l, 1) as i32;
                let upper = luaL_checkinteger(l, 2) as i32;
                if lower > upper {
                    luaL_argerror(l, 2, c"interval is empty".as_ptr());
                }
                let span = upper as f64 - lower as f64 + 1.0;
                lua_pushnumber(l, (r * span).floor() + lower as f64);
            }
            _ => return luaL_error(l, c"wrong number of arguments".as_ptr()),
        }
        1
    }
}

unsafe extern "C-unwind" fn randomseed(l: State) -> c_int {
    unsafe {
        if current().is_none() {
            return luaL_error(
                l,
                c"math.randomseed can only be called inside a script invocation".as_ptr(),
            );
        }
        srand48(luaL_checkinteger(l, 1) as i32);
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_redis_passes_them_to_commands() {
        assert_eq!(format_g17(1.0), b"1");
        assert_eq!(format_g17(0.1), b"0.10000000000000001");
        assert_eq!(format_g17(-3.5), b"-3.5");
        assert_eq!(format_g17(1e20), b"1e+20");
        assert_eq!(format_g17(-0.0), b"-0");
        assert_eq!(format_g17(12345678901234567.0), b"12345678901234568");
    }

    #[test]
    fn version_number_packs_three_parts() {
        assert_eq!(redis_version_num(), 0x07000f);
    }

    #[test]
    fn lrand48_follows_posix() {
        srand48(0);
        // The first values of lrand48() after srand48(0) on glibc.
        assert_eq!(lrand48(), 366850414);
        assert_eq!(lrand48(), 1610402240);
    }
}
