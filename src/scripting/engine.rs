//! The Lua state scripts run in, set up as Redis 7.0 sets up its own (eval.c and
//! script_lua.c): the libraries Redis loads, the `redis` API, globals that cannot be read when
//! undeclared or changed at all, and the cache of EVAL scripts compiled into it.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_int};

use bytes::Bytes;

use super::api::{self, RunCtx};
use super::convert::{table_error, write_value};
use super::lua::*;
use super::{Sha, libs};
use crate::protocol::Reply;

/// EVAL scripts kept at most; the least recently used one goes first. Scripts loaded with
/// SCRIPT LOAD are never evicted (Redis 7.4's rule; 7.0 kept every script forever, so a
/// client sending endless different bodies grew the server without bound).
const EVAL_CACHE_LIMIT: usize = 500;

/// Redis steps Lua's collector every 50 scripts rather than letting it run full cycles.
const GC_PERIOD: u32 = 50;

/// Globals a script may see; the libraries define others (`print`, `dofile` ...) that are
/// removed. `setfenv`, `getfenv` and `newproxy` stay with `lua-enable-deprecated-api`.
const ALLOWED_GLOBALS: &[&str] = &[
    "string",
    "cjson",
    "bit",
    "cmsgpack",
    "math",
    "table",
    "struct",
    "redis",
    "__redis__err__handler",
    "xpcall",
    "tostring",
    "setmetatable",
    "next",
    "assert",
    "tonumber",
    "rawequal",
    "collectgarbage",
    "getmetatable",
    "rawset",
    "pcall",
    "coroutine",
    "type",
    "_G",
    "select",
    "unpack",
    "gcinfo",
    "pairs",
    "rawget",
    "loadstring",
    "ipairs",
    "_VERSION",
    "load",
    "error",
];
const DEPRECATED_GLOBALS: &[&str] = &["setfenv", "getfenv", "newproxy"];

/// Builds the error table of an error raised anywhere in a script: the error (a table, or a
/// message that becomes `{err = "ERR " .. message}`) with the source and line of the Lua code
/// that raised it, or that called the C function that did.
const ERROR_HANDLER: &str = "\
local getinfo = debug.getinfo
return function(err)
  local where = getinfo(2, 'nSl')
  if where and where.what == 'C' then
    where = getinfo(3, 'nSl')
  end
  if type(err) ~= 'table' then
    err = {err = 'ERR ' .. tostring(err)}
  end
  if where then
    err['source'] = where.source
    err['line'] = where.currentline
  end
  return err
end
";

/// Where the error handler is kept, in the registry (and, for EVAL, as a global too).
const ERROR_HANDLER_NAME: &CStr = c"__redis__err__handler";

pub struct EvalScript {
    pub body: Bytes,
    pub flags: u8,
    /// The compiled function, as a reference in Lua's registry.
    reference: c_int,
    /// Came through SCRIPT LOAD: never evicted.
    loaded: bool,
    last_used: u64,
}

/// A Lua state set up as Redis sets up its own: the libraries, the `redis` API, only the
/// allowed globals, and the error handler. EVAL and functions each have one.
pub struct Sandbox {
    pub l: State,
    runs: u32,
}

// SAFETY: the state is used by one thread at a time (each sandbox sits behind a mutex), and
// nothing in it belongs to a thread.
unsafe impl Send for Sandbox {}

impl Drop for Sandbox {
    fn drop(&mut self) {
        unsafe { lua_close(self.l) };
    }
}

/// What running a script wrote: its reply, or an error for the caller to count.
pub enum Outcome {
    /// The reply is written (errors in it already counted, or counted by the commands that
    /// raised them).
    Replied,
    /// The script failed; the error is the command's.
    Failed(String),
}

impl Sandbox {
    /// None when Lua cannot allocate the state.
    pub fn new(deprecated_api: bool) -> Option<Sandbox> {
        let l = new_state()?;
        let sandbox = Sandbox { l, runs: 0 };
        unsafe {
            for (name, open) in [
                (c"", luaopen_base as lua_CFunction),
                (c"table", luaopen_table),
                (c"string", luaopen_string),
                (c"math", luaopen_math),
                (c"debug", luaopen_debug),
            ] {
                lua_pushcclosure(l, open, 0);
                lua_pushstring_(l, name.as_ptr());
                lua_call(l, 1, 0);
            }
            libs::open(l);
            api::register(l);
            if luaL_loadbuffer(
                l,
                ERROR_HANDLER.as_ptr().cast(),
                ERROR_HANDLER.len(),
                c"@err_handler_def".as_ptr(),
            ) != 0
                || lua_pcall(l, 0, 1, 0) != 0
            {
                return None;
            }
            lua_setfield(l, LUA_REGISTRYINDEX, ERROR_HANDLER_NAME.as_ptr());
            remove_globals(l, deprecated_api);
        }
        Some(sandbox)
    }

    /// Makes the globals read-only, and reading an undeclared one an error; the same for
    /// every table reachable from them and the basic types' metatables.
    pub fn protect_globals(&self) {
        let l = self.l;
        unsafe {
            lua_pushvalue(l, LUA_GLOBALSINDEX);
            set_error_metatable(l);
            protect_recursively(l);
            lua_pop(l, 1);
            protect_basic_type_metatables(l);
        }
    }

    /// Pushes the error handler, then the function a call runs.
    ///
    /// # Safety
    /// The function pushes exactly one value.
    pub unsafe fn push_handler_and(&self, push_function: impl FnOnce(State)) {
        unsafe {
            lua_getfield_(self.l, LUA_REGISTRYINDEX, ERROR_HANDLER_NAME.as_ptr());
            push_function(self.l);
        }
    }

    /// Runs the function on the stack (above the error handler, with `nargs` arguments) as
    /// Redis's `luaCallFunction` does: with the count hook, `run` as the current script, and
    /// its result written into `reply`. `name` is what errors call the script.
    pub fn call(
        &mut self,
        run: &mut RunCtx<'_>,
        nargs: c_int,
        name: &str,
        reply: &mut Reply,
    ) -> Outcome {
        let l = self.l;
        let threshold = run.server.config.int(crate::config::BUSY_REPLY_THRESHOLD);
        unsafe {
            api::set_hook(l, threshold);
            let status = api::with_current(run, || lua_pcall(l, nargs, 1, -2 - nargs));
            self.runs += 1;
            if status == LUA_ERRMEM {
                // Lua 5.1 does not collect before it gives up: what the failed script built is
                // garbage now, and would make the next script fail too.
                lua_gc(l, LUA_GCCOLLECT, 0);
            } else if self.runs == GC_PERIOD {
                lua_gc(l, LUA_GCSTEP, GC_PERIOD as c_int);
                self.runs = 0;
            }
            // Errors the commands that raised them counted already still make the call
            // a failed one, without counting them again (Redis's ERR_REPLY_FLAG_NO_STATS_UPDATE).
            let (server, caller) = (run.server, run.caller);
            let outcome = if status != 0 {
                let (message, counted) = error_message(l, name);
                if counted {
                    reply.error(&message);
                    caller.failed.add(1);
                    Outcome::Replied
                } else {
                    Outcome::Failed(message)
                }
            } else {
                let mut failed = false;
                write_value(l, reply, run.client.protocol, &mut |message, counted| {
                    if counted {
                        caller.failed.add(1);
                    } else {
                        server.stats.count_error(message);
                        failed = true;
                    }
                });
                if failed {
                    caller.failed.add(1);
                }
                Outcome::Replied
            };
            api::set_hook(l, 0);
            lua_settop(l, 0);
            outcome
        }
    }

    /// Bytes the Lua state holds.
    pub fn memory(&self) -> u64 {
        unsafe {
            lua_gc(self.l, LUA_GCCOUNT, 0) as u64 * 1024 + lua_gc(self.l, LUA_GCCOUNTB, 0) as u64
        }
    }
}

/// The EVAL side: its sandbox and the scripts compiled into it.
pub struct Engine {
    sandbox: Sandbox,
    scripts: HashMap<Sha, EvalScript, foldhash::fast::RandomState>,
    /// Bytes of script bodies and digests, for INFO's `used_memory_scripts_eval`.
    scripts_bytes: usize,
    evicted: u64,
    clock: u64,
}

impl Engine {
    /// A state set up as Redis's for EVAL; None when Lua cannot allocate it.
    pub fn new(deprecated_api: bool) -> Option<Engine> {
        let sandbox = Sandbox::new(deprecated_api)?;
        unsafe {
            // EVAL scripts see the handler as a global, as in Redis.
            lua_getfield_(sandbox.l, LUA_REGISTRYINDEX, ERROR_HANDLER_NAME.as_ptr());
            lua_setfield(sandbox.l, LUA_GLOBALSINDEX, ERROR_HANDLER_NAME.as_ptr());
        }
        sandbox.protect_globals();
        Some(Engine {
            sandbox,
            scripts: HashMap::default(),
            scripts_bytes: 0,
            evicted: 0,
            clock: 0,
        })
    }

    pub fn script(&self, sha: &Sha) -> Option<&EvalScript> {
        self.scripts.get(sha)
    }

    /// Compiles and caches `body` (Redis's `luaCreateFunction`) unless cached already; returns
    /// its digest and flags, or the error Redis gives. `loaded` for SCRIPT LOAD, whose scripts
    /// are never evicted. `evicted` gets the digests of scripts evicted to make room.
    pub fn create(
        &mut self,
        body: &Bytes,
        loaded: bool,
        evicted: &mut Vec<Sha>,
    ) -> Result<(Sha, u8), String> {
        let sha = super::sha1_hex(body);
        self.clock += 1;
        if let Some(script) = self.scripts.get_mut(&sha) {
            script.loaded |= loaded;
            script.last_used = self.clock;
            return Ok((sha, script.flags));
        }
        let (flags, shebang_len) = super::shebang_flags(body)?;
        let l = self.sandbox.l;
        unsafe {
            // The shebang line is left out, its newline kept, so line numbers stay the user's.
            let code = &body[shebang_len..];
            if luaL_loadbuffer(
                l,
                code.as_ptr().cast(),
                code.len(),
                c"@user_script".as_ptr(),
            ) != 0
            {
                let message = to_bytes(l, -1).unwrap_or_default();
                let error = format!(
                    "ERR Error compiling script (new function): {}",
                    String::from_utf8_lossy(message)
                );
                lua_pop(l, 1);
                return Err(error);
            }
        }
        let reference = unsafe { luaL_ref(l, LUA_REGISTRYINDEX) };
        if !loaded && self.scripts.values().filter(|s| !s.loaded).count() >= EVAL_CACHE_LIMIT {
            self.evict_oldest(evicted);
        }
        self.scripts_bytes += body.len() + sha.len();
        self.scripts.insert(
            sha,
            EvalScript {
                body: body.clone(),
                flags,
                reference,
                loaded,
                last_used: self.clock,
            },
        );
        Ok((sha, flags))
    }

    fn evict_oldest(&mut self, evicted: &mut Vec<Sha>) {
        let oldest = self
            .scripts
            .iter()
            .filter(|(_, s)| !s.loaded)
            .min_by_key(|(_, s)| s.last_used)
            .map(|(sha, _)| *sha);
        if let Some(sha) = oldest {
            if let Some(script) = self.scripts.remove(&sha) {
                self.scripts_bytes -= script.body.len() + sha.len();
                unsafe { luaL_unref(self.sandbox.l, LUA_REGISTRYINDEX, script.reference) };
            }
            self.evicted += 1;
            evicted.push(sha);
        }
    }

    /// Marks a cached script as just used (EVALSHA).
    pub fn touch(&mut self, sha: &Sha) {
        self.clock += 1;
        if let Some(script) = self.scripts.get_mut(sha) {
            script.last_used = self.clock;
        }
    }

    /// Runs the cached script `sha` with KEYS and ARGV as globals (Redis's `luaCallFunction`
    /// in EVAL mode), writing its result into `reply` as the caller's reply.
    pub fn run_eval(
        &mut self,
        sha: &Sha,
        name: &str,
        run: &mut RunCtx<'_>,
        keys: &[Bytes],
        argv: &[Bytes],
        reply: &mut Reply,
    ) -> Outcome {
        let l = self.sandbox.l;
        let reference = self.scripts.get(sha).map_or(LUA_REFNIL, |s| s.reference);
        unsafe {
            self.sandbox.push_handler_and(|l| {
                lua_rawgeti_(l, LUA_REGISTRYINDEX, reference);
            });
            for (name, values) in [(c"KEYS", keys), (c"ARGV", argv)] {
                push_array(l, values);
                lua_enablereadonlytable(l, LUA_GLOBALSINDEX, 0);
                lua_setfield(l, LUA_GLOBALSINDEX, name.as_ptr());
                lua_enablereadonlytable(l, LUA_GLOBALSINDEX, 1);
            }
        }
        self.sandbox.call(run, 0, name, reply)
    }

    pub fn memory(&self) -> u64 {
        self.sandbox.memory()
    }

    pub fn script_count(&self) -> usize {
        self.scripts.len()
    }

    pub fn scripts_bytes(&self) -> usize {
        self.scripts_bytes
    }

    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

/// The error reply for a script that raised the error on top of the stack, as Redis's
/// `luaCallFunction` words it, and whether a command counted it already.
///
/// # Safety
/// `l` is a live state with the error on top.
unsafe fn error_message(l: State, name: &str) -> (String, bool) {
    unsafe {
        if lua_type(l, -1) != LUA_TTABLE {
            let message = to_bytes(l, -1)
                .map(|m| String::from_utf8_lossy(&m[..m.len().min(100)]).into_owned())
                .unwrap_or_else(|| "execution failure".into());
            return (
                format!("ERR Error running script {name}, {message}\n"),
                false,
            );
        }
        let (mut message, counted) = table_error(l, -1)
            .map(|e| (e.message, e.counted))
            .unwrap_or_default();
        if let (Some(source), Some(line)) = (field_text(l, c"source"), field_text(l, c"line")) {
            message.push_str(&format!(" script: {name}, on {source}:{line}."));
        }
        (message, counted)
    }
}

/// The string (or number) in field `name` of the table on top.
unsafe fn field_text(l: State, name: &CStr) -> Option<String> {
    unsafe {
        raw_get_field(l, -1, name);
        let text = (lua_isstring(l, -1) != 0)
            .then(|| String::from_utf8_lossy(to_bytes(l, -1).unwrap_or_default()).into_owned());
        lua_pop(l, 1);
        text
    }
}

/// Pushes a Lua array of `values`.
pub(super) unsafe fn push_array(l: State, values: &[Bytes]) {
    unsafe {
        lua_createtable(l, values.len() as c_int, 0);
        for (i, value) in values.iter().enumerate() {
            push_bytes(l, value);
            lua_rawseti_(l, -2, i as c_int + 1);
        }
    }
}

/// Removes the globals the libraries define that scripts may not use.
unsafe fn remove_globals(l: State, deprecated_api: bool) {
    unsafe {
        let mut remove = Vec::new();
        lua_pushnil(l);
        while lua_next(l, LUA_GLOBALSINDEX) != 0 {
            lua_pop(l, 1);
            if let Some(name) = to_bytes(l, -1).filter(|_| lua_type(l, -1) == LUA_TSTRING) {
                let allowed = ALLOWED_GLOBALS.iter().any(|a| a.as_bytes() == name)
                    || (deprecated_api && DEPRECATED_GLOBALS.iter().any(|a| a.as_bytes() == name));
                if !allowed {
                    remove.push(CString::new(name).unwrap_or_default());
                }
            }
        }
        for name in remove {
            lua_pushnil(l);
            lua_setfield(l, LUA_GLOBALSINDEX, name.as_ptr());
        }
    }
}

/// Gives the table on top a metatable whose `__index` raises Redis's error for a name that
/// does not exist.
pub(super) unsafe fn set_error_metatable(l: State) {
    unsafe {
        lua_createtable(l, 0, 1);
        lua_pushcclosure(l, undeclared_global, 0);
        raw_set_field(l, -2, c"__index");
        lua_setmetatable(l, -2);
    }
}

/// The `__index` of the globals table: reading an undeclared global is an error.
unsafe extern "C-unwind" fn undeclared_global(l: State) -> c_int {
    unsafe {
        if lua_gettop(l) != 2 {
            return luaL_error(
                l,
                c"Wrong number of arguments to luaProtectedTableError".as_ptr(),
            );
        }
        if lua_isstring(l, -1) == 0 && lua_isnumber(l, -1) == 0 {
            return luaL_error(
                l,
                c"Second argument to luaProtectedTableError must be a string or number".as_ptr(),
            );
        }
        let name = lua_tolstring(l, -1, std::ptr::null_mut());
        luaL_error(
            l,
            c"Script attempted to access nonexistent global variable '%s'".as_ptr(),
            name,
        )
    }
}

/// Makes the table on top read-only, with every table it holds and their metatables.
pub(super) unsafe fn protect_recursively(l: State) {
    unsafe {
        if lua_isreadonlytable(l, -1) != 0 {
            return;
        }
        lua_enablereadonlytable(l, -1, 1);
        lua_checkstack(l, 2);
        lua_pushnil(l);
        while lua_next(l, -2) != 0 {
            if lua_type(l, -1) == LUA_TTABLE {
                protect_recursively(l);
            }
            lua_pop(l, 1);
        }
        if lua_getmetatable(l, -1) != 0 {
            protect_recursively(l);
            lua_pop(l, 1);
        }
    }
}

/// Makes the metatables of strings, numbers and the other basic types read-only.
unsafe fn protect_basic_type_metatables(l: State) {
    unsafe {
        let pushers: [&dyn Fn(); 6] = [
            &|| push_bytes(l, b""),
            &|| lua_pushnumber(l, 0.0),
            &|| lua_pushboolean(l, 0),
            &|| lua_pushnil(l),
            &|| {
                lua_newthread(l);
            },
            &|| lua_pushlightuserdata(l, l.cast()),
        ];
        for push in pushers {
            push();
            if lua_getmetatable(l, -1) != 0 {
                protect_recursively(l);
                lua_pop(l, 1);
            }
            lua_pop(l, 1);
        }
    }
}
