//! Function libraries (Redis's functions.c and function_lua.c): `FUNCTION LOAD` runs a
//! library's code once, in a sandbox of its own where the only global is a `redis` table with
//! `register_function`; the functions it registers are kept by reference and called by FCALL
//! with KEYS and ARGV as arguments. Libraries are named; function names are unique across
//! them; both ignore case.

use std::cell::Cell;
use std::ffi::{CStr, c_int};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::api::RunCtx;
use super::engine::{self, Sandbox, protect_recursively, push_array, set_error_metatable};
use super::lua::*;
use crate::protocol::Reply;

/// How long a library's code may run while it loads.
const LOAD_TIMEOUT: Duration = Duration::from_millis(500);

const LIBRARY_API: &CStr = c"__library_api__";
const GLOBALS: &CStr = c"__globals__";

pub const NAME_ERROR: &str = "Library names can only contain letters, numbers, or \
                              underscores(_) and must be at least one character long";

pub struct Function {
    pub name: String,
    pub description: Option<Bytes>,
    pub flags: u8,
    /// The callback, as a reference in Lua's registry.
    reference: c_int,
}

pub struct Library {
    pub name: String,
    /// The whole payload it was loaded from, shebang included (what DUMP and the RDB keep).
    pub code: Bytes,
    pub functions: Vec<Function>,
}

/// The libraries, in a sandbox made on first use.
pub struct Functions {
    sandbox: Sandbox,
    /// By lowercase name, in load order for FUNCTION LIST.
    libraries: Vec<Library>,
}

/// The library being loaded on this thread, for `redis.register_function`.
struct Loading {
    functions: Vec<Function>,
    deadline: Instant,
}

thread_local! {
    static LOADING: Cell<*mut Loading> = const { Cell::new(std::ptr::null_mut()) };
}

/// Whether `name` is a valid library or function name.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

/// A library payload's shebang: `#!<engine> name=<name>`, and the code after its line (the
/// newline kept, so line numbers stay the user's). Redis's `functionExtractLibMetaData`.
pub fn metadata(payload: &[u8]) -> Result<(String, String, &[u8]), String> {
    if !payload.starts_with(b"#!") {
        return Err("ERR Missing library metadata".into());
    }
    let end = payload
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("ERR Invalid library metadata")?;
    let parts = match crate::protocol::split_args(&payload[..end]) {
        Some(parts) if !parts.is_empty() => parts,
        _ => return Err("ERR Invalid library metadata".into()),
    };
    let engine = String::from_utf8_lossy(&parts[0][2..]).into_owned();
    let mut name = None;
    for part in &parts[1..] {
        if part.len() >= 5 && part[..5].eq_ignore_ascii_case(b"name=") {
            if name.is_some() {
                return Err(
                    "ERR Invalid metadata value, name argument was given multiple times".into(),
                );
            }
            name = Some(String::from_utf8_lossy(&part[5..]).into_owned());
            continue;
        }
        return Err(format!(
            "ERR Invalid metadata value given: {}",
            String::from_utf8_lossy(part)
        ));
    }
    let name = name.ok_or("ERR Library name was not given")?;
    Ok((engine, name, &payload[end..]))
}

impl Functions {
    /// A sandbox set up as Redis's function engine; None when Lua cannot allocate it.
    pub fn new(deprecated_api: bool) -> Option<Functions> {
        let sandbox = Sandbox::new(deprecated_api)?;
        let l = sandbox.l;
        unsafe {
            // What a library's code sees while it loads: `redis` with register_function, log
            // and the version, nothing else.
            lua_createtable(l, 0, 1);
            lua_createtable(l, 0, 8);
            lua_pushcclosure(l, register_function, 0);
            raw_set_field(l, -2, c"register_function");
            for field in [
                c"log",
                c"LOG_DEBUG",
                c"LOG_VERBOSE",
                c"LOG_NOTICE",
                c"LOG_WARNING",
                c"REDIS_VERSION",
                c"REDIS_VERSION_NUM",
            ] {
                lua_getfield_(l, LUA_GLOBALSINDEX, c"redis".as_ptr());
                raw_get_field(l, -1, field);
                lua_remove(l, -2);
                raw_set_field(l, -2, field);
            }
            set_error_metatable(l);
            raw_set_field(l, -2, c"redis");
            set_error_metatable(l);
            protect_recursively(l);
            lua_setfield(l, LUA_REGISTRYINDEX, LIBRARY_API.as_ptr());
        }
        sandbox.protect_globals();
        unsafe {
            lua_pushvalue(l, LUA_GLOBALSINDEX);
            lua_setfield(l, LUA_REGISTRYINDEX, GLOBALS.as_ptr());
            // The globals functions see: an empty read-only table whose metatable reads the
            // real globals, or the library API while a library loads.
            lua_createtable(l, 0, 0);
            lua_createtable(l, 0, 1);
            lua_pushvalue(l, LUA_GLOBALSINDEX);
            raw_set_field(l, -2, c"__index");
            lua_enablereadonlytable(l, -1, 1);
            lua_setmetatable(l, -2);
            lua_enablereadonlytable(l, -1, 1);
            lua_replace(l, LUA_GLOBALSINDEX);
        }
        Some(Functions {
            sandbox,
            libraries: Vec::new(),
        })
    }

    pub fn libraries(&self) -> &[Library] {
        &self.libraries
    }

    fn library_index(&self, name: &str) -> Option<usize> {
        self.libraries
            .iter()
            .position(|lib| lib.name.eq_ignore_ascii_case(name))
    }

    /// The function called `name` (any case), with its library.
    pub fn function(&self, name: &[u8]) -> Option<(&Library, &Function)> {
        self.libraries.iter().find_map(|lib| {
            lib.functions
                .iter()
                .find(|f| f.name.as_bytes().eq_ignore_ascii_case(name))
                .map(|f| (lib, f))
        })
    }

    /// FUNCTION LOAD (Redis's `functionsCreateWithLibraryCtx`): loads `payload` as a library,
    /// replacing one of the same name if `replace`; returns its name. Nothing changes on
    /// failure.
    pub fn load(
        &mut self,
        payload: &Bytes,
        replace: bool,
        timeout: bool,
    ) -> Result<String, String> {
        let (engine, name, code) = metadata(payload)?;
        if !valid_name(name.as_bytes()) {
            return Err(format!("ERR {NAME_ERROR}"));
        }
        if !engine.eq_ignore_ascii_case("lua") {
            return Err(format!("ERR Engine '{engine}' not found"));
        }
        let old = self.library_index(&name);
        if old.is_some() && !replace {
            return Err(format!("ERR Library '{name}' already exists"));
        }
        let functions = self.run_library_code(code, timeout)?;
        let library = Library {
            name: name.clone(),
            code: payload.clone(),
            functions,
        };
        if library.functions.is_empty() {
            self.release(library);
            return Err("ERR No functions registered".into());
        }
        let taken = library.functions.iter().find(|f| {
            self.function(f.name.as_bytes())
                .is_some_and(|(lib, _)| !lib.name.eq_ignore_ascii_case(&name))
        });
        if let Some(taken) = taken {
            let error = format!("ERR Function {} already exists", taken.name);
            self.release(library);
            return Err(error);
        }
        match old {
            Some(i) => {
                let old = std::mem::replace(&mut self.libraries[i], library);
                self.release(old);
            }
            None => self.libraries.push(library),
        }
        Ok(name)
    }

    /// Runs a library's code with the library API as its globals (Redis's `luaEngineCreate`).
    fn run_library_code(&mut self, code: &[u8], timeout: bool) -> Result<Vec<Function>, String> {
        let l = self.sandbox.l;
        let mut loading = Loading {
            functions: Vec::new(),
            deadline: if timeout {
                Instant::now() + LOAD_TIMEOUT
            } else {
                Instant::now() + Duration::from_secs(u32::MAX as u64)
            },
        };
        unsafe {
            set_globals_index(l, LIBRARY_API);
            let result = if luaL_loadbuffer(
                l,
                code.as_ptr().cast(),
                code.len(),
                c"@user_function".as_ptr(),
            ) != 0
            {
                let message =
                    String::from_utf8_lossy(to_bytes(l, -1).unwrap_or_default()).into_owned();
                Err(format!("ERR Error compiling function: {message}"))
            } else {
                LOADING.set(&mut loading);
                lua_sethook(l, Some(load_hook), LUA_MASKCOUNT, 100_000);
                let status = lua_pcall(l, 0, 0, 0);
                lua_sethook(l, None, 0, 0);
                LOADING.set(std::ptr::null_mut());
                if status != 0 {
                    Err(format!(
                        "ERR Error registering functions: {}",
                        load_error(l)
                    ))
                } else {
                    Ok(())
                }
            };
            lua_settop(l, 0);
            set_globals_index(l, GLOBALS);
            match result {
                Ok(()) => Ok(loading.functions),
                Err(error) => {
                    for function in loading.functions {
                        luaL_unref(l, LUA_REGISTRYINDEX, function.reference);
                    }
                    Err(error)
                }
            }
        }
    }

    /// Frees a library's functions in Lua.
    fn release(&mut self, library: Library) {
        for function in library.functions {
            unsafe { luaL_unref(self.sandbox.l, LUA_REGISTRYINDEX, function.reference) };
        }
    }

    /// FUNCTION DELETE: false if there is no such library.
    pub fn delete(&mut self, name: &[u8]) -> bool {
        let Some(i) = self.library_index(&String::from_utf8_lossy(name)) else {
            return false;
        };
        let library = self.libraries.remove(i);
        self.release(library);
        true
    }

    /// FUNCTION RESTORE (and an RDB's functions): these libraries with those of `payloads`,
    /// in a new sandbox; these stay as they are if any payload fails. With `flush` the old
    /// libraries are dropped; otherwise one of the same name as a new one is an error, or
    /// replaced if `replace`.
    pub fn restored(
        &self,
        payloads: &[Bytes],
        flush: bool,
        replace: bool,
        deprecated_api: bool,
    ) -> Result<Functions, String> {
        let mut fresh = Functions::new(deprecated_api).ok_or(super::LUA_FAILED)?;
        let mut names = Vec::new();
        for payload in payloads {
            let (_, name, _) = metadata(payload)?;
            fresh.load(payload, false, false)?;
            names.push(name);
        }
        if flush {
            return Ok(fresh);
        }
        for library in &self.libraries {
            if names.iter().any(|n| n.eq_ignore_ascii_case(&library.name)) {
                if replace {
                    continue;
                }
                return Err(format!("ERR Library {} already exists", library.name));
            }
            fresh.load(&library.code, false, false)?;
        }
        Ok(fresh)
    }

    /// FCALL: runs `function` with KEYS and ARGV as its arguments.
    pub fn call(
        &mut self,
        function: &[u8],
        run: &mut RunCtx<'_>,
        keys: &[Bytes],
        argv: &[Bytes],
        reply: &mut Reply,
    ) -> engine::Outcome {
        let Some((_, found)) = self.function(function) else {
            return engine::Outcome::Failed("ERR Function not found".into());
        };
        let (reference, name) = (found.reference, found.name.clone());
        unsafe {
            self.sandbox.push_handler_and(|l| {
                lua_rawgeti_(l, LUA_REGISTRYINDEX, reference);
            });
            push_array(self.sandbox.l, keys);
            push_array(self.sandbox.l, argv);
        }
        self.sandbox.call(run, 2, &name, reply)
    }

    pub fn memory(&self) -> u64 {
        self.sandbox.memory()
    }

    pub fn function_count(&self) -> usize {
        self.libraries.iter().map(|l| l.functions.len()).sum()
    }
}

/// Points the `__index` of the globals' metatable at the registry table `source`.
unsafe fn set_globals_index(l: State, source: &CStr) {
    unsafe {
        lua_getmetatable(l, LUA_GLOBALSINDEX);
        lua_enablereadonlytable(l, -1, 0);
        lua_getfield_(l, LUA_REGISTRYINDEX, source.as_ptr());
        raw_set_field(l, -2, c"__index");
        lua_enablereadonlytable(l, -1, 1);
        lua_pop(l, 1);
    }
}

/// The message of the error on top of the stack, as Redis's `luaExtractErrorInformation`
/// reads it: a table's `err`, or `ERR ` and a string.
unsafe fn load_error(l: State) -> String {
    unsafe {
        if lua_type(l, -1) == LUA_TTABLE {
            raw_get_field(l, -1, c"err");
        } else if lua_isstring(l, -1) != 0 {
            let message = String::from_utf8_lossy(to_bytes(l, -1).unwrap_or_default());
            return format!("ERR {message}");
        }
        String::from_utf8_lossy(to_bytes(l, -1).unwrap_or_default()).into_owned()
    }
}

unsafe extern "C-unwind" fn load_hook(l: State, _ar: *mut lua_Debug) {
    let loading = LOADING.get();
    // SAFETY: set while a library loads on this thread.
    let expired = unsafe { loading.as_ref() }.is_some_and(|l| Instant::now() > l.deadline);
    if expired {
        unsafe {
            lua_sethook(l, Some(load_hook), LUA_MASKLINE, 0);
            push_error_table(l, b"FUNCTION LOAD timeout");
            lua_error(l);
        }
    }
}

/// `redis.register_function(name, callback)` or `redis.register_function{function_name=...,
/// callback=..., description=..., flags={...}}` (Redis's `luaRegisterFunction`).
unsafe extern "C-unwind" fn register_function(l: State) -> c_int {
    unsafe {
        finish(l, || match register(l) {
            Ok(()) => Outcome::Return(0),
            Err(message) => {
                push_error_table(l, message.as_bytes());
                Outcome::Raise
            }
        })
    }
}

unsafe fn register(l: State) -> Result<(), String> {
    unsafe {
        let Some(loading) = LOADING.get().as_mut() else {
            return Err(
                "redis.register_function can only be called on FUNCTION LOAD command".into(),
            );
        };
        let function = match lua_gettop(l) {
            1 => named_arguments(l)?,
            2 => {
                if lua_isstring(l, 1) == 0 {
                    return Err("first argument to redis.register_function must be a string".into());
                }
                if lua_type(l, 2) != LUA_TFUNCTION {
                    return Err(
                        "second argument to redis.register_function must be a function".into(),
                    );
                }
                let name = String::from_utf8_lossy(to_bytes(l, 1).unwrap_or_default()).into_owned();
                Function {
                    name,
                    description: None,
                    flags: 0,
                    reference: luaL_ref(l, LUA_REGISTRYINDEX),
                }
            }
            _ => return Err("wrong number of arguments to redis.register_function".into()),
        };
        let error = if !valid_name(function.name.as_bytes()) {
            Some(NAME_ERROR.to_string())
        } else if loading
            .functions
            .iter()
            .any(|f| f.name.eq_ignore_ascii_case(&function.name))
        {
            Some("Function already exists in the library".to_string())
        } else {
            None
        };
        if let Some(error) = error {
            luaL_unref(l, LUA_REGISTRYINDEX, function.reference);
            return Err(error);
        }
        loading.functions.push(function);
        Ok(())
    }
}

/// `register_function`'s one-table form.
unsafe fn named_arguments(l: State) -> Result<Function, String> {
    unsafe {
        if lua_type(l, 1) != LUA_TTABLE {
            return Err(
                "calling redis.register_function with a single argument is only \
                        applicable to Lua table (representing named arguments)."
                    .into(),
            );
        }
        let mut name = None;
        let mut description = None;
        let mut reference = None;
        let mut flags = 0;
        let release = |reference: Option<c_int>| {
            if let Some(reference) = reference {
                luaL_unref(l, LUA_REGISTRYINDEX, reference);
            }
        };
        lua_pushnil(l);
        while lua_next(l, 1) != 0 {
            if lua_type(l, -2) != LUA_TSTRING {
                release(reference);
                return Err(
                    "named argument key given to redis.register_function is not a string".into(),
                );
            }
            let key = to_bytes(l, -2).unwrap_or_default();
            let problem = if key.eq_ignore_ascii_case(b"function_name") {
                match lua_isstring(l, -1) {
                    0 => Some(
                        "function_name argument given to redis.register_function must be a string",
                    ),
                    _ => {
                        name = Some(
                            String::from_utf8_lossy(to_bytes(l, -1).unwrap_or_default())
                                .into_owned(),
                        );
                        None
                    }
                }
            } else if key.eq_ignore_ascii_case(b"description") {
                match lua_isstring(l, -1) {
                    0 => Some(
                        "description argument given to redis.register_function must be a string",
                    ),
                    _ => {
                        description =
                            Some(Bytes::copy_from_slice(to_bytes(l, -1).unwrap_or_default()));
                        None
                    }
                }
            } else if key.eq_ignore_ascii_case(b"callback") {
                if lua_type(l, -1) != LUA_TFUNCTION {
                    Some("callback argument given to redis.register_function must be a function")
                } else {
                    release(reference.take());
                    reference = Some(luaL_ref(l, LUA_REGISTRYINDEX));
                    continue;
                }
            } else if key.eq_ignore_ascii_case(b"flags") {
                if lua_type(l, -1) != LUA_TTABLE {
                    Some(
                        "flags argument to redis.register_function must be a table representing function flags",
                    )
                } else {
                    match read_flags(l) {
                        Some(read) => {
                            flags = read;
                            None
                        }
                        None => Some("unknown flag given"),
                    }
                }
            } else {
                Some("unknown argument given to redis.register_function")
            };
            if let Some(problem) = problem {
                release(reference);
                return Err(problem.into());
            }
            lua_pop(l, 1);
        }
        let Some(name) = name else {
            release(reference);
            return Err("redis.register_function must get a function name argument".into());
        };
        let Some(reference) = reference else {
            return Err("redis.register_function must get a callback argument".into());
        };
        Ok(Function {
            name,
            description,
            flags,
            reference,
        })
    }
}

/// The flags in the array on top of the stack; None if one is unknown or not a string.
unsafe fn read_flags(l: State) -> Option<u8> {
    unsafe {
        let mut flags = 0;
        for i in 1.. {
            lua_rawgeti_(l, -1, i);
            let kind = lua_type(l, -1);
            if kind == LUA_TNIL {
                lua_pop(l, 1);
                return Some(flags);
            }
            let name = (lua_isstring(l, -1) != 0)
                .then(|| to_bytes(l, -1).unwrap_or_default().to_ascii_lowercase());
            lua_pop(l, 1);
            flags |= super::parse_flag_list(std::iter::once(name?.as_slice())).ok()?;
        }
        Some(flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebangs_name_the_library() {
        let (engine, name, code) = metadata(b"#!lua name=mylib\nreturn 1").unwrap();
        assert_eq!(
            (engine.as_str(), name.as_str(), code),
            ("lua", "mylib", &b"\nreturn 1"[..])
        );
        assert_eq!(
            metadata(b"return 1").unwrap_err(),
            "ERR Missing library metadata"
        );
        assert_eq!(
            metadata(b"#!lua\n").unwrap_err(),
            "ERR Library name was not given"
        );
        assert_eq!(
            metadata(b"#!lua name=a name=b\n").unwrap_err(),
            "ERR Invalid metadata value, name argument was given multiple times"
        );
        assert_eq!(
            metadata(b"#!lua foo=bar\n").unwrap_err(),
            "ERR Invalid metadata value given: foo=bar"
        );
    }
}
