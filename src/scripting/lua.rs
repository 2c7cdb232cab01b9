//! The Lua 5.1 C API as the scripting code uses it: a few safe-to-call helpers over mlua-sys's
//! raw bindings, and the read-only tables our Lua build adds (vendor/lua-src/OXIDIS.md).
//!
//! The raw API rather than mlua's high-level one, because Redis's scripting semantics live at
//! that level: errors are Lua tables (`{err = "..."}`) raised with `lua_error`, `pcall` is
//! replaced, a count hook raises the kill error, and globals are locked read-only. mlua wraps
//! every error raised from Rust in a userdata of its own, which a script would then see.
//!
//! Errors raised by Lua (`lua_error`, `luaL_error`) unwind with longjmp: Rust frames between
//! the raise and the catching `lua_pcall` must own nothing that needs dropping. The C
//! functions in `api.rs` and `libs/` therefore do their work in an inner function and raise
//! only from their outermost frame (see `raise_if`).

pub use mlua_sys::lua51::*;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

pub type State = *mut lua_State;

unsafe extern "C-unwind" {
    pub fn lua_enablereadonlytable(l: State, idx: c_int, enabled: c_int);
    pub fn lua_isreadonlytable(l: State, idx: c_int) -> c_int;
}

/// What every Lua state together may hold. Redis sets no limit; without one a script that
/// builds an endless table grows until the kernel kills the server. Past it Lua raises "not
/// enough memory" in the script, which fails cleanly.
const LUA_MEMORY_LIMIT: usize = 1 << 30;

/// Bytes all Lua states hold now.
static LUA_MEMORY: AtomicUsize = AtomicUsize::new(0);

/// Lua's allocator: mimalloc directly, outside the counted global allocator, so that Lua's
/// memory is reported apart from the dataset (`used_memory_vm_eval`) as Redis reports it.
unsafe extern "C" fn allocate(
    _ud: *mut c_void,
    ptr: *mut c_void,
    old: usize,
    new: usize,
) -> *mut c_void {
    // Lua passes the old size of a block it frees or resizes, and a type tag for a new one.
    let old = if ptr.is_null() { 0 } else { old };
    unsafe {
        if new == 0 {
            libmimalloc_sys::mi_free(ptr);
            LUA_MEMORY.fetch_sub(old, Ordering::Relaxed);
            return std::ptr::null_mut();
        }
        if new > old && LUA_MEMORY.load(Ordering::Relaxed) + (new - old) > LUA_MEMORY_LIMIT {
            return std::ptr::null_mut();
        }
        let block = libmimalloc_sys::mi_realloc(ptr, new);
        if !block.is_null() {
            LUA_MEMORY.fetch_add(new, Ordering::Relaxed);
            LUA_MEMORY.fetch_sub(old, Ordering::Relaxed);
        }
        block
    }
}

unsafe extern "C-unwind" fn panic_handler(l: State) -> c_int {
    let message = unsafe { to_bytes(l, -1) }.unwrap_or(b"unknown error");
    tracing::error!(
        "Lua panic (unprotected error): {}",
        String::from_utf8_lossy(message)
    );
    std::process::abort();
}

/// A new Lua state, or None when out of memory.
pub fn new_state() -> Option<State> {
    let l = unsafe { lua_newstate(allocate, std::ptr::null_mut()) };
    if l.is_null() {
        return None;
    }
    unsafe { lua_atpanic(l, panic_handler) };
    Some(l)
}

/// The bytes of the string (or number, converted in place) at `idx`; None for other types.
/// The slice lives as long as the value stays on the stack.
///
/// # Safety
/// `l` is a live state and `idx` a valid index.
pub unsafe fn to_bytes<'a>(l: State, idx: c_int) -> Option<&'a [u8]> {
    let mut len = 0usize;
    let ptr = unsafe { lua_tolstring(l, idx, &mut len) };
    if ptr.is_null() {
        return None;
    }
    Some(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}

/// # Safety
/// `l` is a live state with room on its stack.
pub unsafe fn push_bytes(l: State, bytes: &[u8]) {
    unsafe { lua_pushlstring_(l, bytes.as_ptr().cast::<c_char>(), bytes.len()) };
}

/// # Safety
/// As `push_bytes`.
pub unsafe fn push_str(l: State, text: &str) {
    unsafe { push_bytes(l, text.as_bytes()) };
}

/// `idx` counted from the bottom of the stack, so it stays valid as values are pushed.
///
/// # Safety
/// `l` is a live state; `idx` a valid stack index (not a pseudo-index).
pub unsafe fn absolute(l: State, idx: c_int) -> c_int {
    if idx < 0 {
        unsafe { lua_gettop(l) + idx + 1 }
    } else {
        idx
    }
}

/// Sets `t[name] = v` for the table at `idx` (not a pseudo-index), popping `v`, without
/// metamethods.
///
/// # Safety
/// `l` is a live state, `idx` a table, a value on top.
pub unsafe fn raw_set_field(l: State, idx: c_int, name: &CStr) {
    unsafe {
        let idx = absolute(l, idx);
        lua_pushstring_(l, name.as_ptr());
        lua_insert(l, -2);
        lua_rawset(l, idx);
    }
}

/// Pushes `t[name]` for the table at `idx`, without metamethods; returns its type.
///
/// # Safety
/// `l` is a live state, `idx` a table.
pub unsafe fn raw_get_field(l: State, idx: c_int, name: &CStr) -> c_int {
    unsafe {
        let idx = absolute(l, idx);
        lua_pushstring_(l, name.as_ptr());
        lua_rawget_(l, idx);
        lua_type(l, -1)
    }
}

/// Registers C functions into the table on top of the stack.
///
/// # Safety
/// `l` is a live state with a table on top.
pub unsafe fn set_functions(l: State, functions: &[(&CStr, lua_CFunction)]) {
    for &(name, function) in functions {
        unsafe {
            lua_pushcclosure(l, function, 0);
            raw_set_field(l, -2, name);
        }
    }
}

/// Pushes Redis's error table `{err = "CODE message"}` (Redis's `luaPushErrorBuff`): a
/// message starting with `-` carries its own code, any other gets `ERR`; a trailing newline is
/// trimmed.
///
/// # Safety
/// `l` is a live state with room on its stack.
pub unsafe fn push_error_table(l: State, error: &[u8]) {
    let mut text = Vec::with_capacity(error.len() + 4);
    match error.strip_prefix(b"-") {
        Some(coded) => match coded.iter().position(|&b| b == b' ') {
            Some(space) => {
                text.extend_from_slice(&coded[..space]);
                text.push(b' ');
                text.extend_from_slice(&coded[space + 1..]);
            }
            None => {
                text.extend_from_slice(b"ERR ");
                text.extend_from_slice(coded);
            }
        },
        None => {
            text.extend_from_slice(b"ERR ");
            text.extend_from_slice(error);
        }
    }
    while text.last().is_some_and(|&b| b == b'\r' || b == b'\n') {
        text.pop();
    }
    unsafe {
        lua_createtable(l, 0, 1);
        push_bytes(l, &text);
        raw_set_field(l, -2, c"err");
    }
}

/// Pushes `message` prefixed with where the calling Lua code is (`user_script:3: `), as
/// `luaL_error` raises it.
///
/// # Safety
/// `l` is the state a C function was called with.
pub unsafe fn push_located(l: State, message: &str) {
    unsafe {
        luaL_where(l, 1);
        push_str(l, message);
        lua_concat(l, 2);
    }
}

/// What a C function's inner part decided: return values, or raise an error (each way of
/// raising matches a C library call's message).
pub enum Outcome {
    Return(c_int),
    /// Raise the value left on top of the stack.
    Raise,
    /// As `luaL_error`: the message, after where the calling Lua code is.
    Error(String),
    /// As `luaL_argerror` for argument `n`: `bad argument #n to 'f' (message)`.
    ArgError(c_int, String),
    /// The error `luaL_checknumber` gives for argument `n`, which is not a number.
    NotNumber(c_int),
    /// The error `luaL_checklstring` gives for argument `n`, which is not a string.
    NotString(c_int),
}

/// The end of every C function that owns Rust values: returns, or raises as the outcome
/// says. Called from the function's outermost frame, after its inner part (and every Rust
/// value it owned) is gone, so Lua's longjmp skips no destructor. A panic in the inner part
/// becomes a Lua error rather than unwinding through Lua's C frames.
///
/// # Safety
/// `l` is the state the C function was called with.
pub unsafe fn finish(l: State, inner: impl FnOnce() -> Outcome) -> c_int {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(inner))
        .unwrap_or_else(|_| Outcome::Error("internal error in a script library function".into()));
    unsafe {
        match outcome {
            Outcome::Return(n) => return n,
            Outcome::Raise => {}
            Outcome::Error(message) => {
                push_located(l, &message);
                drop(message);
            }
            Outcome::ArgError(n, message) => {
                push_str(l, &message);
                drop(message);
                // The text is on Lua's stack, so nothing of Rust's is left when it raises.
                luaL_argerror(l, n, lua_tolstring(l, -1, std::ptr::null_mut()));
            }
            Outcome::NotNumber(n) => {
                luaL_checknumber(l, n);
            }
            Outcome::NotString(n) => {
                luaL_checklstring(l, n, std::ptr::null_mut());
            }
        }
        lua_error(l)
    }
}
