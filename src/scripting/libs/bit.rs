//! The `bit` library (LuaBitOp 1.0, as Redis bundles it): bitwise operations on numbers taken
//! as 32-bit integers, results as signed 32-bit numbers.

use std::ffi::c_int;

use crate::scripting::lua::*;

/// Argument `i` as 32 bits: rounded to the nearest integer and wrapped modulo 2^32, as
/// LuaBitOp does by adding 2^52 + 2^51 and keeping the low word of the double.
unsafe fn bits(l: State, i: c_int) -> u32 {
    let number = unsafe { luaL_checknumber(l, i) };
    (number + 6_755_399_441_055_744.0).to_bits() as u32
}

unsafe fn ret(l: State, value: u32) -> c_int {
    unsafe { lua_pushnumber(l, value as i32 as f64) };
    1
}

unsafe extern "C-unwind" fn tobit(l: State) -> c_int {
    unsafe { ret(l, bits(l, 1)) }
}

unsafe extern "C-unwind" fn bnot(l: State) -> c_int {
    unsafe { ret(l, !bits(l, 1)) }
}

/// Folds every argument with `op`.
unsafe fn fold(l: State, op: fn(u32, u32) -> u32) -> c_int {
    unsafe {
        let mut value = bits(l, 1);
        for i in (2..=lua_gettop(l)).rev() {
            value = op(value, bits(l, i));
        }
        ret(l, value)
    }
}

unsafe extern "C-unwind" fn band(l: State) -> c_int {
    unsafe { fold(l, |a, b| a & b) }
}

unsafe extern "C-unwind" fn bor(l: State) -> c_int {
    unsafe { fold(l, |a, b| a | b) }
}

unsafe extern "C-unwind" fn bxor(l: State) -> c_int {
    unsafe { fold(l, |a, b| a ^ b) }
}

/// A shift by the second argument, taken modulo 32.
unsafe fn shift(l: State, op: fn(u32, u32) -> u32) -> c_int {
    unsafe {
        let value = bits(l, 1);
        let by = bits(l, 2) & 31;
        ret(l, op(value, by))
    }
}

unsafe extern "C-unwind" fn lshift(l: State) -> c_int {
    unsafe { shift(l, |v, n| v << n) }
}

unsafe extern "C-unwind" fn rshift(l: State) -> c_int {
    unsafe { shift(l, |v, n| v >> n) }
}

unsafe extern "C-unwind" fn arshift(l: State) -> c_int {
    unsafe { shift(l, |v, n| ((v as i32) >> n) as u32) }
}

unsafe extern "C-unwind" fn rol(l: State) -> c_int {
    unsafe { shift(l, |v, n| v.rotate_left(n)) }
}

unsafe extern "C-unwind" fn ror(l: State) -> c_int {
    unsafe { shift(l, |v, n| v.rotate_right(n)) }
}

unsafe extern "C-unwind" fn bswap(l: State) -> c_int {
    unsafe { ret(l, bits(l, 1).swap_bytes()) }
}

/// `tohex(x [, n])`: the low `n` hex digits (8 by default); negative `n` for upper case.
unsafe extern "C-unwind" fn tohex(l: State) -> c_int {
    unsafe {
        let mut value = bits(l, 1);
        let mut digits = if lua_type(l, 2) == LUA_TNONE {
            8
        } else {
            bits(l, 2) as i32
        };
        let alphabet: &[u8; 16] = if digits < 0 {
            digits = digits.saturating_neg();
            b"0123456789ABCDEF"
        } else {
            b"0123456789abcdef"
        };
        let digits = digits.min(8) as usize;
        let mut text = [0u8; 8];
        for place in text[..digits].iter_mut().rev() {
            *place = alphabet[(value & 15) as usize];
            value >>= 4;
        }
        push_bytes(l, &text[..digits]);
        1
    }
}

/// Sets the `bit` global.
///
/// # Safety
/// `l` is a live state being set up.
pub unsafe fn open(l: State) {
    unsafe {
        lua_createtable(l, 0, 12);
        set_functions(
            l,
            &[
                (c"tobit", tobit),
                (c"bnot", bnot),
                (c"band", band),
                (c"bor", bor),
                (c"bxor", bxor),
                (c"lshift", lshift),
                (c"rshift", rshift),
                (c"arshift", arshift),
                (c"rol", rol),
                (c"ror", ror),
                (c"bswap", bswap),
                (c"tohex", tohex),
            ],
        );
        lua_setfield(l, LUA_GLOBALSINDEX, c"bit".as_ptr());
    }
}
