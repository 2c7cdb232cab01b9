//! Redis's conversion rules between command replies and Lua values, both ways.
//!
//! A command called from a script writes its reply in RESP (2 or 3, as the script chose with
//! `redis.setresp`); `push_reply` turns those bytes into Lua values (Redis's
//! `redisProtocolToLuaType`). A script's return value becomes the caller's reply through
//! `write_value` (Redis's `luaReplyToRedisReply`).

use std::ffi::c_int;

use super::lua::*;
use crate::protocol::{Protocol, Reply};

/// Pushes the Lua form of the one RESP reply at the start of `input`; returns the bytes it
/// took. The input is a reply our own encoder wrote, so it is well formed; anything cut short
/// pushes nil rather than reading past the end.
///
/// # Safety
/// `l` is a live state.
pub unsafe fn push_reply(l: State, input: &[u8]) -> usize {
    unsafe {
        if lua_checkstack(l, 5) == 0 {
            lua_pushnil(l);
            return input.len();
        }
        let Some((&kind, rest)) = input.split_first() else {
            lua_pushnil(l);
            return 0;
        };
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            lua_pushnil(l);
            return input.len();
        };
        let line = &rest[..line_end];
        let mut used = 1 + line_end + 2;
        let number = || {
            std::str::from_utf8(line)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
        };
        match kind {
            b':' => lua_pushnumber(l, number().unwrap_or(0) as f64),
            b'$' | b'=' => {
                // A null bulk string (or an unreadable length) is false, as in Redis.
                let Some(len) = number().and_then(|n| usize::try_from(n).ok()) else {
                    lua_pushboolean(l, 0);
                    return used;
                };
                let body = input.get(used..used + len).unwrap_or_default();
                used += len + 2;
                if kind == b'$' {
                    push_bytes(l, body);
                } else {
                    // "txt:..." : the format, then the text.
                    let (format, text) = body.split_at(body.len().min(4));
                    lua_createtable(l, 0, 1);
                    lua_createtable(l, 0, 2);
                    push_bytes(l, text);
                    raw_set_field(l, -2, c"string");
                    push_bytes(l, &format[..format.len().min(3)]);
                    raw_set_field(l, -2, c"format");
                    raw_set_field(l, -2, c"verbatim_string");
                }
            }
            b'+' => {
                lua_createtable(l, 0, 1);
                push_bytes(l, line);
                raw_set_field(l, -2, c"ok");
            }
            b'-' => {
                let mut coded = Vec::with_capacity(line.len() + 1);
                coded.push(b'-');
                coded.extend_from_slice(line);
                push_error_table(l, &coded);
                // The command already counted this error in the error statistics.
                lua_pushboolean(l, 1);
                raw_set_field(l, -2, c"ignore_error_stats_update");
            }
            b'*' | b'~' | b'%' | b'>' => {
                // A null array is false.
                let Some(len) = number().and_then(|n| usize::try_from(n).ok()) else {
                    lua_pushboolean(l, 0);
                    return used;
                };
                match kind {
                    b'%' => {
                        lua_createtable(l, 0, 1);
                        lua_createtable(l, 0, len.min(1024) as c_int);
                        for _ in 0..len {
                            used += push_reply(l, &input[used..]);
                            used += push_reply(l, &input[used..]);
                            set_pair(l);
                        }
                        raw_set_field(l, -2, c"map");
                    }
                    b'~' => {
                        lua_createtable(l, 0, 1);
                        lua_createtable(l, 0, len.min(1024) as c_int);
                        for _ in 0..len {
                            used += push_reply(l, &input[used..]);
                            lua_pushboolean(l, 1);
                            set_pair(l);
                        }
                        raw_set_field(l, -2, c"set");
                    }
                    _ => {
                        lua_createtable(l, len.min(1024) as c_int, 0);
                        for i in 0..len {
                            used += push_reply(l, &input[used..]);
                            lua_rawseti_(l, -2, i as c_int + 1);
                        }
                    }
                }
            }
            b'|' => {
                // Attributes are not shown to scripts: skip them, then read the reply itself.
                let len = number().unwrap_or(0).max(0) as usize;
                for _ in 0..2 * len {
                    used += push_reply(l, &input[used..]);
                    lua_pop(l, 1);
                }
                used += push_reply(l, &input[used..]);
            }
            b'_' => lua_pushnil(l),
            b'#' => lua_pushboolean(l, (line == b"t") as c_int),
            b',' => {
                let value = std::str::from_utf8(line)
                    .ok()
                    .and_then(|t| match t {
                        "inf" => Some(f64::INFINITY),
                        "-inf" => Some(f64::NEG_INFINITY),
                        _ => t.parse().ok(),
                    })
                    .unwrap_or(f64::NAN);
                lua_createtable(l, 0, 1);
                lua_pushnumber(l, value);
                raw_set_field(l, -2, c"double");
            }
            b'(' => {
                lua_createtable(l, 0, 1);
                push_bytes(l, line);
                raw_set_field(l, -2, c"big_number");
            }
            _ => lua_pushnil(l),
        }
        used
    }
}

/// `t[k] = v` for the table under the key and value on top; a nil key (which Lua tables
/// cannot hold) is dropped.
unsafe fn set_pair(l: State) {
    unsafe {
        if lua_type(l, -2) == LUA_TNIL {
            lua_pop(l, 2);
        } else {
            lua_rawset(l, -3);
        }
    }
}

/// An error a script returned (`{err = ...}`), with whether the command that raised it
/// already counted it in the error statistics.
pub struct ReturnedError {
    pub message: String,
    pub counted: bool,
}

/// Writes the value on top of the stack as a reply and pops it. `script_protocol` is the
/// protocol the script set with `redis.setresp` (booleans differ). Each error inside the
/// value goes to `on_error` before it is written, with whether the command that raised it
/// already counted it in the error statistics.
///
/// # Safety
/// `l` is a live state with a value on top.
pub unsafe fn write_value(
    l: State,
    reply: &mut Reply,
    script_protocol: Protocol,
    on_error: &mut dyn FnMut(&str, bool),
) {
    unsafe {
        if lua_checkstack(l, 8) == 0 {
            lua_pop(l, 1);
            on_error("ERR reached lua stack limit", false);
            reply.error("ERR reached lua stack limit");
            return;
        }
        match lua_type(l, -1) {
            LUA_TSTRING => reply.bulk(to_bytes(l, -1).unwrap_or_default()),
            LUA_TBOOLEAN => {
                let value = lua_toboolean(l, -1) != 0;
                match (script_protocol, value) {
                    (Protocol::Resp2, true) => reply.int(1),
                    (Protocol::Resp2, false) => reply.null(),
                    (Protocol::Resp3, value) => reply.boolean(value),
                }
            }
            LUA_TNUMBER => reply.int(lua_tonumber(l, -1) as i64),
            LUA_TTABLE => {
                write_table(l, reply, script_protocol, on_error);
                return;
            }
            _ => reply.null(),
        }
        lua_pop(l, 1);
    }
}

/// The error a table holds in its `err` field, if it is a string.
///
/// # Safety
/// `l` is a live state with a table at `idx`.
pub unsafe fn table_error(l: State, idx: c_int) -> Option<ReturnedError> {
    unsafe {
        let idx = absolute(l, idx);
        if raw_get_field(l, idx, c"err") != LUA_TSTRING {
            lua_pop(l, 1);
            return None;
        }
        let message = String::from_utf8_lossy(to_bytes(l, -1).unwrap_or_default()).into_owned();
        lua_pop(l, 1);
        let counted = raw_get_field(l, idx, c"ignore_error_stats_update") == LUA_TBOOLEAN
            && lua_toboolean(l, -1) != 0;
        lua_pop(l, 1);
        Some(ReturnedError { message, counted })
    }
}

unsafe fn write_table(
    l: State,
    reply: &mut Reply,
    script_protocol: Protocol,
    on_error: &mut dyn FnMut(&str, bool),
) {
    unsafe {
        let table = lua_gettop(l);
        if let Some(error) = table_error(l, table) {
            let message = error.message.replace(['\r', '\n'], " ");
            on_error(&message, error.counted);
            reply.error(&message);
        } else if field(l, table, c"ok") == LUA_TSTRING {
            let status = String::from_utf8_lossy(to_bytes(l, -1).unwrap_or_default())
                .replace(['\r', '\n'], " ");
            reply.simple(&status);
        } else if field(l, table, c"double") == LUA_TNUMBER {
            reply.double(lua_tonumber(l, -1));
        } else if field(l, table, c"big_number") == LUA_TSTRING {
            let digits = String::from_utf8_lossy(to_bytes(l, -1).unwrap_or_default())
                .replace(['\r', '\n'], " ");
            reply.big_number(&digits);
        } else if field(l, table, c"verbatim_string") == LUA_TTABLE
            && raw_get_field(l, -1, c"format") == LUA_TSTRING
            && raw_get_field(l, -2, c"string") == LUA_TSTRING
        {
            let format = String::from_utf8_lossy(to_bytes(l, -2).unwrap_or_default());
            reply.verbatim(&format, to_bytes(l, -1).unwrap_or_default());
        } else if field(l, table, c"map") == LUA_TTABLE {
            reply.map(count_pairs(l));
            lua_pushnil(l);
            while lua_next(l, -2) != 0 {
                lua_pushvalue(l, -2);
                write_value(l, reply, script_protocol, on_error);
                write_value(l, reply, script_protocol, on_error);
            }
        } else if field(l, table, c"set") == LUA_TTABLE {
            reply.set(count_pairs(l));
            lua_pushnil(l);
            while lua_next(l, -2) != 0 {
                lua_pop(l, 1);
                lua_pushvalue(l, -1);
                write_value(l, reply, script_protocol, on_error);
            }
        } else {
            // An array: elements 1, 2 ... up to the first nil.
            lua_settop(l, table);
            let mut len = 0;
            while {
                lua_rawgeti_(l, table, len as c_int + 1);
                let present = lua_type(l, -1) != LUA_TNIL;
                lua_pop(l, 1);
                present
            } {
                len += 1;
            }
            reply.array(len);
            for i in 0..len {
                lua_rawgeti_(l, table, i as c_int + 1);
                write_value(l, reply, script_protocol, on_error);
            }
        }
        lua_settop(l, table - 1);
    }
}

/// Pushes field `name` of the table at `table` (the top of the stack once what earlier
/// probes pushed is dropped); returns its type.
unsafe fn field(l: State, table: c_int, name: &std::ffi::CStr) -> c_int {
    unsafe {
        lua_settop(l, table);
        raw_get_field(l, table, name)
    }
}

/// The number of pairs in the table on top.
unsafe fn count_pairs(l: State) -> usize {
    let mut count = 0;
    unsafe {
        lua_pushnil(l);
        while lua_next(l, -2) != 0 {
            lua_pop(l, 1);
            count += 1;
        }
    }
    count
}
