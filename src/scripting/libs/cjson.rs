//! The `cjson` library (lua-cjson 2.1.0 as Redis bundles it): `encode`, `decode`, their
//! settings, `cjson.null`. Written here rather than on serde_json because scripts see its exact
//! behaviour: numbers are doubles printed with `%.14g`, `/` is escaped, empty tables encode as
//! `{}`, sparse arrays are refused, NUL ends the input, and its error texts.

use std::ffi::{c_char, c_int};

use crate::scripting::lua::*;

/// A `cjson` table's settings, kept in a userdata every function of the table holds as its
/// upvalue (so `cjson.new()` makes an independent copy, as in lua-cjson).
#[repr(C)]
struct Config {
    /// The on/off settings are 0 or 1, as `enum_option` sets them.
    sparse_convert: c_int,
    sparse_ratio: c_int,
    sparse_safe: c_int,
    encode_max_depth: c_int,
    decode_max_depth: c_int,
    /// 0: refuse NaN and Inf; 1: write them (`nan`, `inf`); 2: write `null`.
    encode_invalid_numbers: c_int,
    decode_invalid_numbers: c_int,
    encode_keep_buffer: c_int,
    number_precision: c_int,
}

const DEFAULTS: Config = Config {
    sparse_convert: 0,
    sparse_ratio: 2,
    sparse_safe: 10,
    encode_max_depth: 1000,
    decode_max_depth: 1000,
    encode_invalid_numbers: 0,
    decode_invalid_numbers: 1,
    encode_keep_buffer: 1,
    number_precision: 14,
};

unsafe fn config<'a>(l: State) -> &'a mut Config {
    // SAFETY: every function of the table is made with the config userdata as upvalue 1.
    unsafe { &mut *lua_touserdata(l, lua_upvalueindex(1)).cast::<Config>() }
}

/// Sets the `cjson` global.
///
/// # Safety
/// `l` is a live state being set up.
pub unsafe fn open(l: State) {
    unsafe {
        new_table(l);
        lua_setfield(l, LUA_GLOBALSINDEX, c"cjson".as_ptr());
    }
}

/// Pushes a new `cjson` table with its own settings.
unsafe fn new_table(l: State) {
    unsafe {
        lua_createtable(l, 0, 14);
        let cfg = lua_newuserdata(l, std::mem::size_of::<Config>()).cast::<Config>();
        cfg.write(DEFAULTS);
        let functions: [(&std::ffi::CStr, lua_CFunction); 9] = [
            (c"encode", encode),
            (c"decode", decode),
            (c"encode_sparse_array", cfg_encode_sparse_array),
            (c"encode_max_depth", cfg_encode_max_depth),
            (c"decode_max_depth", cfg_decode_max_depth),
            (c"encode_number_precision", cfg_encode_number_precision),
            (c"encode_keep_buffer", cfg_encode_keep_buffer),
            (c"encode_invalid_numbers", cfg_encode_invalid_numbers),
            (c"decode_invalid_numbers", cfg_decode_invalid_numbers),
        ];
        for (name, function) in functions {
            lua_pushvalue(l, -1);
            lua_pushcclosure(l, function, 1);
            raw_set_field(l, -3, name);
        }
        lua_pop(l, 1);
        lua_pushcclosure(l, new, 0);
        raw_set_field(l, -2, c"new");
        lua_pushlightuserdata(l, std::ptr::null_mut());
        raw_set_field(l, -2, c"null");
        push_str(l, "cjson");
        raw_set_field(l, -2, c"_NAME");
        push_str(l, "2.1.0");
        raw_set_field(l, -2, c"_VERSION");
    }
}

unsafe extern "C-unwind" fn new(l: State) -> c_int {
    unsafe { new_table(l) };
    1
}

// ===== settings =====

/// lua-cjson's `json_arg_init`: at most `args` arguments, padded with nils.
unsafe fn setting_args(l: State, args: c_int) {
    unsafe {
        if lua_gettop(l) > args {
            luaL_argerror(l, args + 1, c"found too many arguments".as_ptr());
        }
        while lua_gettop(l) < args {
            lua_pushnil(l);
        }
    }
}

/// An integer setting: sets it from argument `i` when given (within `min..=max`), pushes it.
unsafe fn integer_option(l: State, i: c_int, setting: &mut c_int, min: c_int, max: c_int) {
    unsafe {
        if lua_type(l, i) != LUA_TNIL {
            let value = luaL_checkinteger(l, i) as c_int;
            if !(min..=max).contains(&value) {
                // The text goes on Lua's stack, so nothing of Rust's is left when Lua raises.
                push_str(l, &format!("expected integer between {min} and {max}"));
                luaL_argerror(l, 1, lua_tolstring(l, -1, std::ptr::null_mut()));
            }
            *setting = value;
        }
        lua_pushinteger(l, *setting as _);
    }
}

/// An on/off setting (`true`, `false`, `"on"`, `"off"`, or `options` by name).
unsafe fn enum_option(l: State, i: c_int, setting: &mut c_int, options: &[&std::ffi::CStr]) {
    unsafe {
        if lua_type(l, i) != LUA_TNIL {
            if lua_type(l, i) == LUA_TBOOLEAN {
                *setting = lua_toboolean(l, i);
            } else {
                let mut names: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();
                names.push(std::ptr::null());
                let chosen = luaL_checkoption(l, i, std::ptr::null(), names.as_ptr());
                *setting = chosen;
            }
        }
        if *setting == 0 || *setting == 1 {
            lua_pushboolean(l, *setting);
        } else {
            lua_pushstring_(l, options[*setting as usize].as_ptr());
        }
    }
}

const ON_OFF: &[&std::ffi::CStr] = &[c"off", c"on"];

unsafe extern "C-unwind" fn cfg_encode_sparse_array(l: State) -> c_int {
    unsafe {
        setting_args(l, 3);
        let cfg = config(l);
        enum_option(l, 1, &mut cfg.sparse_convert, ON_OFF);
        integer_option(l, 2, &mut cfg.sparse_ratio, 0, c_int::MAX);
        integer_option(l, 3, &mut cfg.sparse_safe, 0, c_int::MAX);
        3
    }
}

unsafe extern "C-unwind" fn cfg_encode_max_depth(l: State) -> c_int {
    unsafe {
        setting_args(l, 1);
        integer_option(l, 1, &mut config(l).encode_max_depth, 1, c_int::MAX);
        1
    }
}

unsafe extern "C-unwind" fn cfg_decode_max_depth(l: State) -> c_int {
    unsafe {
        setting_args(l, 1);
        integer_option(l, 1, &mut config(l).decode_max_depth, 1, c_int::MAX);
        1
    }
}

unsafe extern "C-unwind" fn cfg_encode_number_precision(l: State) -> c_int {
    unsafe {
        setting_args(l, 1);
        integer_option(l, 1, &mut config(l).number_precision, 1, 14);
        1
    }
}

unsafe extern "C-unwind" fn cfg_encode_keep_buffer(l: State) -> c_int {
    unsafe {
        setting_args(l, 1);
        enum_option(l, 1, &mut config(l).encode_keep_buffer, ON_OFF);
        1
    }
}

unsafe extern "C-unwind" fn cfg_encode_invalid_numbers(l: State) -> c_int {
    unsafe {
        setting_args(l, 1);
        enum_option(
            l,
            1,
            &mut config(l).encode_invalid_numbers,
            &[c"off", c"on", c"null"],
        );
        1
    }
}

unsafe extern "C-unwind" fn cfg_decode_invalid_numbers(l: State) -> c_int {
    unsafe {
        setting_args(l, 1);
        enum_option(l, 1, &mut config(l).decode_invalid_numbers, ON_OFF);
        1
    }
}

// ===== encoding =====

unsafe extern "C-unwind" fn encode(l: State) -> c_int {
    unsafe {
        if lua_gettop(l) != 1 {
            luaL_argerror(l, 1, c"expected 1 argument".as_ptr());
        }
        finish(l, || {
            let cfg = config(l);
            let mut out = Vec::new();
            match encode_value(l, cfg, 0, &mut out) {
                Ok(()) => {
                    push_bytes(l, &out);
                    Outcome::Return(1)
                }
                Err(message) => Outcome::Error(message),
            }
        })
    }
}

/// Appends the JSON of the value on top of the stack (left there).
unsafe fn encode_value(
    l: State,
    cfg: &Config,
    depth: c_int,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    unsafe {
        match lua_type(l, -1) {
            LUA_TSTRING => encode_string(to_bytes(l, -1).unwrap_or_default(), out),
            LUA_TNUMBER => encode_number(l, cfg, -1, out)?,
            LUA_TBOOLEAN => out.extend_from_slice(if lua_toboolean(l, -1) != 0 {
                b"true"
            } else {
                b"false"
            }),
            LUA_TTABLE => {
                let depth = depth + 1;
                if depth > cfg.encode_max_depth || lua_checkstack(l, 3) == 0 {
                    return Err(format!("Cannot serialise, excessive nesting ({depth})"));
                }
                match array_length(l, cfg)? {
                    Some(len) if len > 0 => {
                        out.push(b'[');
                        for i in 1..=len {
                            if i > 1 {
                                out.push(b',');
                            }
                            lua_rawgeti_(l, -1, i as c_int);
                            let encoded = encode_value(l, cfg, depth, out);
                            lua_pop(l, 1);
                            encoded?;
                        }
                        out.push(b']');
                    }
                    _ => encode_object(l, cfg, depth, out)?,
                }
            }
            LUA_TNIL => out.extend_from_slice(b"null"),
            LUA_TLIGHTUSERDATA if lua_touserdata(l, -1).is_null() => out.extend_from_slice(b"null"),
            _ => return Err(cannot_serialise(l, -1, "type not supported")),
        }
        Ok(())
    }
}

unsafe fn cannot_serialise(l: State, idx: c_int, reason: &str) -> String {
    let type_name = unsafe { std::ffi::CStr::from_ptr(lua_typename(l, lua_type(l, idx))) };
    format!("Cannot serialise {}: {reason}", type_name.to_string_lossy())
}

unsafe fn encode_object(
    l: State,
    cfg: &Config,
    depth: c_int,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    unsafe {
        out.push(b'{');
        let mut first = true;
        lua_pushnil(l);
        while lua_next(l, -2) != 0 {
            if !first {
                out.push(b',');
            }
            first = false;
            match lua_type(l, -2) {
                LUA_TNUMBER => {
                    out.push(b'"');
                    if let Err(e) = encode_number(l, cfg, -2, out) {
                        lua_pop(l, 2);
                        return Err(e);
                    }
                    out.extend_from_slice(b"\":");
                }
                LUA_TSTRING => {
                    encode_string(to_bytes(l, -2).unwrap_or_default(), out);
                    out.push(b':');
                }
                _ => {
                    let error = cannot_serialise(l, -2, "table key must be a number or string");
                    lua_pop(l, 2);
                    return Err(error);
                }
            }
            let encoded = encode_value(l, cfg, depth, out);
            lua_pop(l, 1);
            if let Err(e) = encoded {
                lua_pop(l, 1);
                return Err(e);
            }
        }
        out.push(b'}');
        Ok(())
    }
}

/// lua-cjson's `lua_array_length`: the array's length if every key is an integer from 1
/// (None for an object); an excessively sparse array is an error, or an object when
/// `encode_sparse_array` converts.
unsafe fn array_length(l: State, cfg: &Config) -> Result<Option<u64>, String> {
    unsafe {
        let (mut max, mut items) = (0f64, 0f64);
        lua_pushnil(l);
        while lua_next(l, -2) != 0 {
            let key = lua_tonumber(l, -2);
            if lua_type(l, -2) == LUA_TNUMBER && key != 0.0 && key.floor() == key && key >= 1.0 {
                max = max.max(key);
                items += 1.0;
                lua_pop(l, 1);
                continue;
            }
            lua_pop(l, 2);
            return Ok(None);
        }
        let max = max.min(c_int::MAX as f64);
        if cfg.sparse_ratio > 0
            && max > items * cfg.sparse_ratio as f64
            && max > cfg.sparse_safe as f64
        {
            if cfg.sparse_convert == 0 {
                return Err(cannot_serialise(l, -1, "excessively sparse array"));
            }
            return Ok(None);
        }
        Ok(Some(max as u64))
    }
}

unsafe fn encode_number(
    l: State,
    cfg: &Config,
    idx: c_int,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let number = unsafe { lua_tonumber(l, idx) };
    match cfg.encode_invalid_numbers {
        0 if !number.is_finite() => {
            return Err(unsafe { cannot_serialise(l, idx, "must not be NaN or Inf") });
        }
        1 if number.is_nan() => {
            out.extend_from_slice(b"nan");
            return Ok(());
        }
        2 if !number.is_finite() => {
            out.extend_from_slice(b"null");
            return Ok(());
        }
        _ => {}
    }
    out.extend_from_slice(&format_g(number, cfg.number_precision));
    Ok(())
}

/// A number as C's `%.<precision>g` prints it.
pub fn format_g(value: f64, precision: c_int) -> Vec<u8> {
    let mut buf = [0u8; 64];
    // SAFETY: the format takes an int and a double; snprintf writes at most buf.len() bytes.
    let len = unsafe {
        libc::snprintf(
            buf.as_mut_ptr().cast::<c_char>(),
            buf.len(),
            c"%.*g".as_ptr(),
            precision,
            value,
        )
    };
    buf[..(len.max(0) as usize).min(buf.len() - 1)].to_vec()
}

fn encode_string(text: &[u8], out: &mut Vec<u8>) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    for &byte in text {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\x08' => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\x0c' => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0..=0x1f | 0x7f => {
                out.extend_from_slice(b"\\u00");
                out.push(b"0123456789abcdef"[(byte >> 4) as usize]);
                out.push(b"0123456789abcdef"[(byte & 15) as usize]);
            }
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

// ===== decoding =====

#[derive(Clone, Copy, PartialEq)]
enum Token {
    ObjectBegin,
    ObjectEnd,
    ArrayBegin,
    ArrayEnd,
    String,
    Number(f64),
    Boolean(bool),
    Null,
    Colon,
    Comma,
    End,
    /// With its description (`invalid token`, `invalid number` ...).
    Error(&'static str),
}

impl Token {
    fn name(self) -> &'static str {
        match self {
            Token::ObjectBegin => "T_OBJ_BEGIN",
            Token::ObjectEnd => "T_OBJ_END",
            Token::ArrayBegin => "T_ARR_BEGIN",
            Token::ArrayEnd => "T_ARR_END",
            Token::String => "T_STRING",
            Token::Number(_) => "T_NUMBER",
            Token::Boolean(_) => "T_BOOLEAN",
            Token::Null => "T_NULL",
            Token::Colon => "T_COLON",
            Token::Comma => "T_COMMA",
            Token::End => "T_END",
            Token::Error(what) => what,
        }
    }
}

struct Parser<'a> {
    data: &'a [u8],
    pos: usize,
    /// The text of the last string token.
    text: Vec<u8>,
    depth: c_int,
    max_depth: c_int,
    invalid_numbers: bool,
}

impl Parser<'_> {
    /// The byte at `i`; the input ends at its first NUL, as C strings do.
    fn at(&self, i: usize) -> u8 {
        self.data.get(i).copied().unwrap_or(0)
    }

    /// The next token and where it starts.
    fn next(&mut self) -> (Token, usize) {
        while matches!(self.at(self.pos), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
        let start = self.pos;
        let single = match self.at(self.pos) {
            b'{' => Some(Token::ObjectBegin),
            b'}' => Some(Token::ObjectEnd),
            b'[' => Some(Token::ArrayBegin),
            b']' => Some(Token::ArrayEnd),
            b',' => Some(Token::Comma),
            b':' => Some(Token::Colon),
            0 => return (Token::End, start),
            _ => None,
        };
        if let Some(token) = single {
            self.pos += 1;
            return (token, start);
        }
        let c = self.at(self.pos);
        let rest = &self.data[self.pos.min(self.data.len())..];
        let token = match c {
            b'"' => self.string(),
            b'-' | b'0'..=b'9' => {
                if !self.invalid_numbers && self.is_invalid_number() {
                    Token::Error("invalid number")
                } else {
                    self.number()
                }
            }
            _ if rest.starts_with(b"true") => {
                self.pos += 4;
                Token::Boolean(true)
            }
            _ if rest.starts_with(b"false") => {
                self.pos += 5;
                Token::Boolean(false)
            }
            _ if rest.starts_with(b"null") => {
                self.pos += 4;
                Token::Null
            }
            b'f' | b'i' | b'I' | b'n' | b'N' | b't' | b'+'
                if self.invalid_numbers && self.is_invalid_number() =>
            {
                self.number()
            }
            _ => Token::Error("invalid token"),
        };
        // An error points at where it was found.
        let at = if matches!(token, Token::Error(_)) {
            self.pos
        } else {
            start
        };
        (token, at)
    }

    /// lua-cjson's `json_is_invalid_number`: forms strtod takes that JSON does not.
    fn is_invalid_number(&self) -> bool {
        let mut p = self.pos;
        if self.at(p) == b'+' {
            return true;
        }
        if self.at(p) == b'-' {
            p += 1;
        }
        let c = self.at(p);
        if c == b'0' {
            let next = self.at(p + 1);
            return next | 0x20 == b'x' || next.is_ascii_digit();
        }
        if c <= b'9' {
            return false;
        }
        let word = [self.at(p), self.at(p + 1), self.at(p + 2)];
        word.eq_ignore_ascii_case(b"inf") || word.eq_ignore_ascii_case(b"nan")
    }

    /// A number as C's strtod reads it.
    fn number(&mut self) -> Token {
        let len = self.data[self.pos.min(self.data.len())..]
            .iter()
            .take_while(|&&c| {
                c.is_ascii_digit()
                    || matches!(c, b'-' | b'+' | b'.')
                    || (b'a'..=b'y').contains(&(c | 0x20))
            })
            .count();
        let mut text = self.data[self.pos..self.pos + len].to_vec();
        text.push(0);
        let mut end: *mut c_char = std::ptr::null_mut();
        // SAFETY: `text` is NUL-terminated; strtod reads up to the NUL and sets `end` in it.
        let value = unsafe { libc::strtod(text.as_ptr().cast(), &mut end) };
        let used = (end as usize).saturating_sub(text.as_ptr() as usize);
        if used == 0 {
            return Token::Error("invalid number");
        }
        self.pos += used;
        Token::Number(value)
    }

    fn string(&mut self) -> Token {
        self.pos += 1;
        self.text.clear();
        loop {
            let c = self.at(self.pos);
            match c {
                b'"' => {
                    self.pos += 1;
                    return Token::String;
                }
                0 => return Token::Error("unexpected end of string"),
                b'\\' => {
                    let translated = match self.at(self.pos + 1) {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => b'\x08',
                        b't' => b'\t',
                        b'n' => b'\n',
                        b'f' => b'\x0c',
                        b'r' => b'\r',
                        b'u' => {
                            if self.unicode_escape() {
                                continue;
                            }
                            return Token::Error("invalid unicode escape code");
                        }
                        _ => return Token::Error("invalid escape code"),
                    };
                    self.text.push(translated);
                    self.pos += 2;
                }
                _ => {
                    self.text.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// After an object's or array's item: the next item's first token, or None at `end`.
    fn next_item(&mut self, end: Token, what: &str) -> Result<Option<(Token, usize)>, String> {
        let token = self.next();
        if token.0 == end {
            return Ok(None);
        }
        if token.0 != Token::Comma {
            return Err(expected(what, token));
        }
        Ok(Some(self.next()))
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let mut value = 0;
        for i in 0..4 {
            value = value << 4 | (self.at(at + i) as char).to_digit(16)?;
        }
        Some(value)
    }

    /// `\uXXXX` (or a surrogate pair of them) at the position, as UTF-8.
    fn unicode_escape(&mut self) -> bool {
        let Some(mut code) = self.hex4(self.pos + 2) else {
            return false;
        };
        let mut len = 6;
        if code & 0xF800 == 0xD800 {
            if code & 0x400 != 0 || self.at(self.pos + 6) != b'\\' || self.at(self.pos + 7) != b'u'
            {
                return false;
            }
            let Some(low) = self.hex4(self.pos + 8) else {
                return false;
            };
            if low & 0xFC00 != 0xDC00 {
                return false;
            }
            code = (((code & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000;
            len = 12;
        }
        match char::from_u32(code) {
            Some(ch) => {
                let mut utf8 = [0u8; 4];
                self.text
                    .extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
            }
            // Lone low surrogates are not chars; lua-cjson writes their 3-byte form anyway.
            None => self.text.extend_from_slice(&[
                (code >> 12) as u8 | 0xE0,
                ((code >> 6) & 0x3F) as u8 | 0x80,
                (code & 0x3F) as u8 | 0x80,
            ]),
        }
        self.pos += len;
        true
    }
}

unsafe extern "C-unwind" fn decode(l: State) -> c_int {
    unsafe {
        if lua_gettop(l) != 1 {
            luaL_argerror(l, 1, c"expected 1 argument".as_ptr());
        }
        let mut len = 0usize;
        let data = luaL_checklstring(l, 1, &mut len);
        finish(l, || {
            let data = std::slice::from_raw_parts(data.cast::<u8>(), len);
            if data.len() >= 2 && (data[0] == 0 || data[1] == 0) {
                return Outcome::Error("JSON parser does not support UTF-16 or UTF-32".into());
            }
            let cfg = config(l);
            let mut parser = Parser {
                data,
                pos: 0,
                text: Vec::new(),
                depth: 0,
                max_depth: cfg.decode_max_depth,
                invalid_numbers: cfg.decode_invalid_numbers != 0,
            };
            let first = parser.next();
            let result = push_value(l, &mut parser, first).and_then(|()| match parser.next() {
                (Token::End, _) => Ok(()),
                token => Err(expected("the end", token)),
            });
            match result {
                Ok(()) => Outcome::Return(1),
                Err(message) => Outcome::Error(message),
            }
        })
    }
}

fn expected(what: &str, (token, at): (Token, usize)) -> String {
    format!(
        "Expected {what} but found {} at character {}",
        token.name(),
        at + 1
    )
}

unsafe fn descend(l: State, parser: &mut Parser, slots: c_int) -> Result<(), String> {
    parser.depth += 1;
    if parser.depth <= parser.max_depth && unsafe { lua_checkstack(l, slots) } != 0 {
        return Ok(());
    }
    Err(format!(
        "Found too many nested data structures ({}) at character {}",
        parser.depth, parser.pos
    ))
}

/// Pushes the value that starts with `token`.
unsafe fn push_value(l: State, parser: &mut Parser, token: (Token, usize)) -> Result<(), String> {
    unsafe {
        match token.0 {
            Token::String => push_bytes(l, &parser.text),
            Token::Number(n) => lua_pushnumber(l, n),
            Token::Boolean(b) => lua_pushboolean(l, b as c_int),
            Token::Null => lua_pushlightuserdata(l, std::ptr::null_mut()),
            Token::ObjectBegin => {
                descend(l, parser, 3)?;
                lua_createtable(l, 0, 0);
                let mut item = Some(parser.next()).filter(|t| t.0 != Token::ObjectEnd);
                while let Some(key) = item {
                    if key.0 != Token::String {
                        return Err(expected("object key string", key));
                    }
                    push_bytes(l, &parser.text);
                    let colon = parser.next();
                    if colon.0 != Token::Colon {
                        return Err(expected("colon", colon));
                    }
                    let value = parser.next();
                    push_value(l, parser, value)?;
                    lua_rawset(l, -3);
                    item = parser.next_item(Token::ObjectEnd, "comma or object end")?;
                }
                parser.depth -= 1;
            }
            Token::ArrayBegin => {
                descend(l, parser, 2)?;
                lua_createtable(l, 0, 0);
                let mut item = Some(parser.next()).filter(|t| t.0 != Token::ArrayEnd);
                let mut i: c_int = 1;
                while let Some(value) = item {
                    push_value(l, parser, value)?;
                    lua_rawseti_(l, -2, i);
                    i = i.wrapping_add(1);
                    item = parser.next_item(Token::ArrayEnd, "comma or array end")?;
                }
                parser.depth -= 1;
            }
            _ => return Err(expected("value", token)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_as_lua_cjson_escapes_them() {
        let mut out = Vec::new();
        encode_string(b"a/\"\\\n\x01\x7f\xc3\xa9", &mut out);
        assert_eq!(out, b"\"a\\/\\\"\\\\\\n\\u0001\\u007f\xc3\xa9\"");
    }

    #[test]
    fn numbers_print_with_14_digits() {
        assert_eq!(format_g(100.0, 14), b"100");
        assert_eq!(format_g(0.1, 14), b"0.1");
        assert_eq!(format_g(1.0 / 3.0, 14), b"0.33333333333333");
        assert_eq!(format_g(1e20, 14), b"1e+20");
    }
}
