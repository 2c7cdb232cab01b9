//! The `cmsgpack` library (lua-cmsgpack 0.4.0, as Redis bundles it): `pack`, `unpack`,
//! `unpack_one`, `unpack_limit`. Written here rather than on rmp because scripts see its exact
//! choices: whole numbers become the smallest integer type, other numbers a float when that
//! loses nothing, tables an array when their keys are exactly 1..n, nesting past 16 levels nil;
//! and its error texts. Decoding checks every length against the input.

use std::ffi::c_int;

use crate::scripting::lua::*;

/// Tables nested deeper are packed as nil (so circular references end).
const MAX_NESTING: usize = 16;

/// Whether a double is exactly an integer of the C type with `bits` (what lua-cmsgpack's
/// `(T)x == x` test means on x86-64, where an out-of-range cast gives the type's minimum).
fn whole_in(x: f64, bits: u32) -> bool {
    let limit = 2f64.powi(bits as i32 - 1);
    x.is_finite() && x >= -limit && x < limit && x.trunc() == x
}

fn encode_int(n: i64, out: &mut Vec<u8>) {
    match n {
        0..=127 => out.push(n as u8),
        128..=0xff => out.extend_from_slice(&[0xcc, n as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        0x1_0000_0000.. => {
            out.push(0xcf);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
        -32..=-1 => out.push(n as i8 as u8),
        -128..=-33 => out.extend_from_slice(&[0xd0, n as i8 as u8]),
        -32768..=-129 => {
            out.push(0xd1);
            out.extend_from_slice(&(n as i16).to_be_bytes());
        }
        -2147483648..=-32769 => {
            out.push(0xd2);
            out.extend_from_slice(&(n as i32).to_be_bytes());
        }
        _ => {
            out.push(0xd3);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn encode_number(x: f64, out: &mut Vec<u8>) {
    if whole_in(x, 64) {
        encode_int(x as i64, out);
    } else if x == x as f32 as f64 {
        out.push(0xca);
        out.extend_from_slice(&(x as f32).to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&x.to_be_bytes());
    }
}

fn encode_bytes(s: &[u8], out: &mut Vec<u8>) {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

/// A container header: `fix` (0x90 arrays, 0x80 maps) up to 15 items, then 16 and 32 bits.
fn encode_header(n: usize, fix: u8, wide: u8, out: &mut Vec<u8>) {
    if n <= 15 {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(wide);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(wide + 1);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// The length of the table on top if its keys are exactly 1..n (lua-cmsgpack's
/// `table_is_an_array`); the empty table is an array.
unsafe fn array_length(l: State) -> Option<usize> {
    unsafe {
        let (mut count, mut max) = (0usize, 0usize);
        lua_pushnil(l);
        while lua_next(l, -2) != 0 {
            lua_pop(l, 1);
            let key = lua_tonumber(l, -1);
            if lua_type(l, -1) != LUA_TNUMBER || key <= 0.0 || !whole_in(key, 32) {
                lua_pop(l, 1);
                return None;
            }
            max = max.max(key as usize);
            count += 1;
        }
        (max == count).then_some(count)
    }
}

/// Appends the value on top of the stack and pops it.
unsafe fn encode_value(l: State, level: usize, out: &mut Vec<u8>) -> Result<(), Outcome> {
    unsafe {
        if lua_checkstack(l, 3) == 0 {
            return Err(Outcome::Error(
                "stack overflow (in function mp_encode)".into(),
            ));
        }
        match lua_type(l, -1) {
            LUA_TSTRING => encode_bytes(to_bytes(l, -1).unwrap_or_default(), out),
            LUA_TBOOLEAN => out.push(if lua_toboolean(l, -1) != 0 {
                0xc3
            } else {
                0xc2
            }),
            LUA_TNUMBER => encode_number(lua_tonumber(l, -1), out),
            LUA_TTABLE if level < MAX_NESTING => match array_length(l) {
                Some(len) => {
                    encode_header(len, 0x90, 0xdc, out);
                    for i in 1..=len {
                        lua_rawgeti_(l, -1, i as c_int);
                        encode_value(l, level + 1, out)?;
                    }
                }
                None => {
                    let mut len = 0;
                    lua_pushnil(l);
                    while lua_next(l, -2) != 0 {
                        lua_pop(l, 1);
                        len += 1;
                    }
                    encode_header(len, 0x80, 0xde, out);
                    lua_pushnil(l);
                    while lua_next(l, -2) != 0 {
                        lua_pushvalue(l, -2);
                        encode_value(l, level + 1, out)?;
                        encode_value(l, level + 1, out)?;
                    }
                }
            },
            _ => out.push(0xc0),
        }
        lua_pop(l, 1);
        Ok(())
    }
}

unsafe extern "C-unwind" fn pack(l: State) -> c_int {
    unsafe {
        finish(l, || {
            let args = lua_gettop(l);
            if args == 0 {
                return Outcome::ArgError(0, "MessagePack pack needs input.".into());
            }
            if lua_checkstack(l, args) == 0 {
                return Outcome::ArgError(0, "Too many arguments for MessagePack pack.".into());
            }
            let mut out = Vec::new();
            for i in 1..=args {
                lua_pushvalue(l, i);
                if let Err(error) = encode_value(l, 0, &mut out) {
                    return error;
                }
            }
            push_bytes(l, &out);
            Outcome::Return(1)
        })
    }
}

/// Why decoding stopped.
enum DecodeError {
    /// The input ends inside a value.
    Missing,
    /// A byte no value starts with.
    BadFormat,
    /// Lua's stack cannot hold more.
    Stack,
    /// A map key Lua tables cannot hold (`table index is nil`, `... is NaN`).
    Key(&'static str),
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or(DecodeError::Missing)?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn number<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().unwrap_or([0; N]))
    }

    fn left(&self) -> usize {
        self.data.len() - self.pos
    }
}

/// Pushes the value at the cursor.
unsafe fn decode_value(l: State, c: &mut Cursor) -> Result<(), DecodeError> {
    unsafe {
        if lua_checkstack(l, 2) == 0 {
            return Err(DecodeError::Stack);
        }
        let kind = c.take(1)?[0];
        match kind {
            0x00..=0x7f => lua_pushnumber(l, kind as f64),
            0xe0..=0xff => lua_pushnumber(l, kind as i8 as f64),
            0xcc => lua_pushnumber(l, c.number::<1>()?[0] as f64),
            0xd0 => lua_pushnumber(l, c.number::<1>()?[0] as i8 as f64),
            0xcd => lua_pushnumber(l, u16::from_be_bytes(c.number()?) as f64),
            0xd1 => lua_pushnumber(l, i16::from_be_bytes(c.number()?) as f64),
            0xce => lua_pushnumber(l, u32::from_be_bytes(c.number()?) as f64),
            0xd2 => lua_pushnumber(l, i32::from_be_bytes(c.number()?) as f64),
            0xcf => lua_pushnumber(l, u64::from_be_bytes(c.number()?) as f64),
            0xd3 => lua_pushnumber(l, i64::from_be_bytes(c.number()?) as f64),
            0xc0 => lua_pushnil(l),
            0xc3 => lua_pushboolean(l, 1),
            0xc2 => lua_pushboolean(l, 0),
            0xca => lua_pushnumber(l, f32::from_be_bytes(c.number()?) as f64),
            0xcb => lua_pushnumber(l, f64::from_be_bytes(c.number()?)),
            0xa0..=0xbf => push_bytes(l, c.take((kind & 0x1f) as usize)?),
            0xd9 => {
                let len = c.number::<1>()?[0] as usize;
                push_bytes(l, c.take(len)?);
            }
            0xda => {
                let len = u16::from_be_bytes(c.number()?) as usize;
                push_bytes(l, c.take(len)?);
            }
            0xdb => {
                let len = u32::from_be_bytes(c.number()?) as usize;
                push_bytes(l, c.take(len)?);
            }
            0x90..=0x9f => decode_array(l, c, (kind & 0xf) as usize)?,
            0xdc => {
                let len = u16::from_be_bytes(c.number()?) as usize;
                decode_array(l, c, len)?;
            }
            0xdd => {
                let len = u32::from_be_bytes(c.number()?) as usize;
                decode_array(l, c, len)?;
            }
            0x80..=0x8f => decode_map(l, c, (kind & 0xf) as usize)?,
            0xde => {
                let len = u16::from_be_bytes(c.number()?) as usize;
                decode_map(l, c, len)?;
            }
            0xdf => {
                let len = u32::from_be_bytes(c.number()?) as usize;
                decode_map(l, c, len)?;
            }
            _ => return Err(DecodeError::BadFormat),
        }
        Ok(())
    }
}

unsafe fn decode_array(l: State, c: &mut Cursor, len: usize) -> Result<(), DecodeError> {
    unsafe {
        lua_createtable(l, 0, 0);
        for i in 1..=len {
            decode_value(l, c)?;
            lua_rawseti_(l, -2, i as c_int);
        }
        Ok(())
    }
}

unsafe fn decode_map(l: State, c: &mut Cursor, len: usize) -> Result<(), DecodeError> {
    unsafe {
        lua_createtable(l, 0, 0);
        for _ in 0..len {
            decode_value(l, c)?;
            decode_value(l, c)?;
            // lua_settable would raise these from inside the library.
            if lua_type(l, -2) == LUA_TNIL {
                return Err(DecodeError::Key("table index is nil"));
            }
            if lua_type(l, -2) == LUA_TNUMBER && lua_tonumber(l, -2).is_nan() {
                return Err(DecodeError::Key("table index is NaN"));
            }
            lua_rawset(l, -3);
        }
        Ok(())
    }
}

/// lua-cmsgpack's `mp_unpack_full`: decodes up to `limit` values from `offset` (both 0:
/// every value, without the next offset).
unsafe fn unpack_full(l: State, limit: i64, offset: i64) -> Outcome {
    unsafe {
        if lua_isstring(l, 1) == 0 {
            return Outcome::NotString(1);
        }
        let data = to_bytes(l, 1).unwrap_or_default();
        let len = data.len();
        let all = limit == 0 && offset == 0;
        if offset < 0 || limit < 0 {
            return Outcome::Error(format!(
                "Invalid request to unpack with offset of {} and limit of {}.",
                offset as c_int, len as c_int
            ));
        }
        if offset as u64 > len as u64 {
            return Outcome::Error(format!(
                "Start offset {} greater than input length {}.",
                offset as c_int, len as c_int
            ));
        }
        let limit = if all { c_int::MAX as i64 } else { limit };
        let mut cursor = Cursor {
            data,
            pos: offset as usize,
        };
        let mut count: c_int = 0;
        while cursor.left() > 0 && (count as i64) < limit {
            match decode_value(l, &mut cursor) {
                Ok(()) => count += 1,
                Err(DecodeError::Missing) => {
                    return Outcome::Error("Missing bytes in input.".into());
                }
                Err(DecodeError::BadFormat) => {
                    return Outcome::Error("Bad data format in input.".into());
                }
                Err(DecodeError::Key(message)) => {
                    push_str(l, message);
                    return Outcome::Raise;
                }
                Err(DecodeError::Stack) => {
                    return Outcome::Error(
                        "stack overflow (too many return values at once; use unpack_one or \
                         unpack_limit instead.)"
                            .into(),
                    );
                }
            }
        }
        if !all {
            if lua_checkstack(l, 1) == 0 {
                return Outcome::Error("stack overflow (in function mp_unpack_full)".into());
            }
            let next = if cursor.left() == 0 {
                -1
            } else {
                cursor.pos as i64
            };
            lua_pushinteger(l, next as _);
            lua_insert(l, 2);
            count += 1;
        }
        Outcome::Return(count)
    }
}

/// Optional integer argument `i` (lua's `luaL_optinteger`).
unsafe fn opt_integer(l: State, i: c_int, default: i64) -> Result<i64, Outcome> {
    unsafe {
        match lua_type(l, i) {
            LUA_TNONE | LUA_TNIL => Ok(default),
            _ if lua_isnumber(l, i) != 0 => Ok(lua_tonumber(l, i) as i64),
            _ => Err(Outcome::NotNumber(i)),
        }
    }
}

unsafe extern "C-unwind" fn unpack(l: State) -> c_int {
    unsafe { finish(l, || unpack_full(l, 0, 0)) }
}

unsafe extern "C-unwind" fn unpack_one(l: State) -> c_int {
    unsafe {
        finish(l, || {
            let offset = match opt_integer(l, 2, 0) {
                Ok(offset) => offset,
                Err(error) => return error,
            };
            lua_settop(l, 1);
            unpack_full(l, 1, offset)
        })
    }
}

unsafe extern "C-unwind" fn unpack_limit(l: State) -> c_int {
    unsafe {
        finish(l, || {
            if lua_isnumber(l, 2) == 0 {
                return Outcome::NotNumber(2);
            }
            let limit = lua_tonumber(l, 2) as i64;
            let offset = match opt_integer(l, 3, 0) {
                Ok(offset) => offset,
                Err(error) => return error,
            };
            lua_settop(l, 1);
            unpack_full(l, limit, offset)
        })
    }
}

/// Sets the `cmsgpack` global.
///
/// # Safety
/// `l` is a live state being set up.
pub unsafe fn open(l: State) {
    unsafe {
        lua_createtable(l, 0, 8);
        set_functions(
            l,
            &[
                (c"pack", pack),
                (c"unpack", unpack),
                (c"unpack_one", unpack_one),
                (c"unpack_limit", unpack_limit),
            ],
        );
        for (name, value) in [
            (c"_NAME", "cmsgpack"),
            (c"_VERSION", "lua-cmsgpack 0.4.0"),
            (c"_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo"),
            (c"_DESCRIPTION", "MessagePack C implementation for Lua"),
        ] {
            push_str(l, value);
            raw_set_field(l, -2, name);
        }
        lua_setfield(l, LUA_GLOBALSINDEX, c"cmsgpack".as_ptr());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut out);
        out
    }

    #[test]
    fn numbers_take_the_smallest_form() {
        assert_eq!(packed(|o| encode_number(5.0, o)), [5]);
        assert_eq!(packed(|o| encode_number(-1.0, o)), [0xff]);
        assert_eq!(packed(|o| encode_number(200.0, o)), [0xcc, 200]);
        assert_eq!(
            packed(|o| encode_number(-1099511627776.0, o)),
            [0xd3, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0]
        );
        assert_eq!(packed(|o| encode_number(0.5, o)), [0xca, 0x3f, 0, 0, 0]);
        assert_eq!(packed(|o| encode_number(0.1, o))[0], 0xcb);
        assert_eq!(packed(|o| encode_number(2f64.powi(63), o))[0], 0xca);
    }
}
