//! The `struct` library (Roberto Ierusalimschy's lua-struct, as Redis bundles it): `pack`,
//! `unpack` and `size` of binary records described by a format string (`>i4`, `<!4hd`, `c0`,
//! `s` ...), with the C library's sizes on x86-64 Linux (`long` of 8 bytes, `int` of 4).
//! Every read is checked against the data's length.

use std::ffi::c_int;

use crate::scripting::lua::*;

/// Integers up to this many bytes (`i32`).
const MAX_INT_SIZE: usize = 32;
/// The default and largest alignment (`!` alone): a double's.
const MAX_ALIGN: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endian {
    Big,
    Little,
}

struct Header {
    endian: Endian,
    align: usize,
}

impl Default for Header {
    fn default() -> Header {
        Header {
            endian: Endian::Little,
            align: 1,
        }
    }
}

/// A format string being read.
struct Format<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Format<'a> {
    fn new(text: &'a [u8]) -> Format<'a> {
        Format { text, pos: 0 }
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.text.get(self.pos).copied().filter(|&c| c != 0)?;
        self.pos += 1;
        Some(c)
    }

    /// A size after an option (`i4`, `c10`), or `default`.
    fn number(&mut self, default: usize) -> Result<usize, Outcome> {
        let mut value: usize = 0;
        let mut any = false;
        while let Some(&c) = self.text.get(self.pos).filter(|c| c.is_ascii_digit()) {
            let digit = (c - b'0') as usize;
            if value > i32::MAX as usize / 10 || value * 10 > i32::MAX as usize - digit {
                return Err(Outcome::Error("integral size overflow".into()));
            }
            value = value * 10 + digit;
            self.pos += 1;
            any = true;
        }
        Ok(if any { value } else { default })
    }

    /// The size of option `opt` (reading its number if it takes one); 0 for options that
    /// need no alignment.
    fn size_of(&mut self, opt: u8) -> Result<usize, Outcome> {
        Ok(match opt {
            b'B' | b'b' => 1,
            b'H' | b'h' => 2,
            b'L' | b'l' | b'T' | b'd' => 8,
            b'f' => 4,
            b'x' => 1,
            b'c' => self.number(1)?,
            b'i' | b'I' => {
                let size = self.number(4)?;
                if size > MAX_INT_SIZE {
                    return Err(Outcome::Error(format!(
                        "integral size {size} is larger than limit of {MAX_INT_SIZE}"
                    )));
                }
                size
            }
            _ => 0,
        })
    }

    /// The control options (` `, `>`, `<`, `!n`); anything else is an invalid option.
    fn control(&mut self, opt: u8, header: &mut Header) -> Result<(), Outcome> {
        match opt {
            b' ' => {}
            b'>' => header.endian = Endian::Big,
            b'<' => header.endian = Endian::Little,
            b'!' => {
                let align = self.number(MAX_ALIGN)?;
                if !align.is_power_of_two() {
                    return Err(Outcome::Error(format!(
                        "alignment {align} is not a power of 2"
                    )));
                }
                header.align = align;
            }
            _ => {
                return Err(Outcome::ArgError(
                    1,
                    format!("invalid format option '{}'", opt as char),
                ));
            }
        }
        Ok(())
    }
}

/// Padding before an item of `size` at offset `len` (lua-struct's `gettoalign`, whose bit
/// arithmetic is kept for sizes that are not powers of two).
fn padding(len: usize, header: &Header, opt: u8, size: usize) -> usize {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(header.align);
    size.wrapping_sub(len & size.wrapping_sub(1)) & size.wrapping_sub(1)
}

/// The format string argument, copied (the Lua string stays on the stack regardless).
unsafe fn format_arg(l: State) -> Result<Vec<u8>, Outcome> {
    unsafe {
        if lua_isstring(l, 1) == 0 {
            return Err(Outcome::NotString(1));
        }
        Ok(to_bytes(l, 1).unwrap_or_default().to_vec())
    }
}

unsafe fn number_arg(l: State, i: c_int) -> Result<f64, Outcome> {
    unsafe {
        if lua_isnumber(l, i) == 0 {
            return Err(Outcome::NotNumber(i));
        }
        Ok(lua_tonumber(l, i))
    }
}

unsafe extern "C-unwind" fn pack(l: State) -> c_int {
    unsafe { finish(l, || pack_inner(l).unwrap_or_else(|e| e)) }
}

unsafe fn pack_inner(l: State) -> Result<Outcome, Outcome> {
    unsafe {
        let text = format_arg(l)?;
        let (mut format, mut header) = (Format::new(&text), Header::default());
        let mut arg: c_int = 2;
        let mut out = Vec::new();
        while let Some(opt) = format.next() {
            let mut size = format.size_of(opt)?;
            let pad = padding(out.len(), &header, opt, size);
            out.resize(out.len() + pad, 0);
            match opt {
                b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                    let n = number_arg(l, arg)?;
                    arg += 1;
                    let mut value = if n < 0.0 { n as i64 as u64 } else { n as u64 };
                    let mut bytes = [0u8; MAX_INT_SIZE];
                    for byte in bytes[..size].iter_mut() {
                        *byte = value as u8;
                        value = value.checked_shr(8).unwrap_or(0);
                    }
                    if header.endian == Endian::Big {
                        bytes[..size].reverse();
                    }
                    out.extend_from_slice(&bytes[..size]);
                }
                b'x' => out.push(0),
                b'f' => {
                    let f = number_arg(l, arg)? as f32;
                    arg += 1;
                    out.extend_from_slice(&match header.endian {
                        Endian::Big => f.to_be_bytes(),
                        Endian::Little => f.to_le_bytes(),
                    });
                }
                b'd' => {
                    let d = number_arg(l, arg)?;
                    arg += 1;
                    out.extend_from_slice(&match header.endian {
                        Endian::Big => d.to_be_bytes(),
                        Endian::Little => d.to_le_bytes(),
                    });
                }
                b'c' | b's' => {
                    if lua_isstring(l, arg) == 0 {
                        return Err(Outcome::NotString(arg));
                    }
                    let s = to_bytes(l, arg).unwrap_or_default();
                    arg += 1;
                    if size == 0 {
                        size = s.len();
                    }
                    if s.len() < size {
                        return Err(Outcome::ArgError(arg, "string too short".into()));
                    }
                    out.extend_from_slice(&s[..size]);
                    if opt == b's' {
                        out.push(0);
                    }
                }
                _ => format.control(opt, &mut header)?,
            }
        }
        push_bytes(l, &out);
        Ok(Outcome::Return(1))
    }
}

/// An integer of `bytes`, unsigned or sign-extended from its top bit (lua-struct keeps 64
/// bits, so longer integers lose their high bytes).
fn read_integer(bytes: &[u8], endian: Endian, signed: bool) -> f64 {
    let mut value: u64 = 0;
    let mut push = |byte: u8| value = value.checked_shl(8).unwrap_or(0) | byte as u64;
    match endian {
        Endian::Big => bytes.iter().for_each(|&b| push(b)),
        Endian::Little => bytes.iter().rev().for_each(|&b| push(b)),
    }
    if !signed {
        return value as f64;
    }
    // As C's shift on x86-64, whose count is taken modulo 64.
    let mask = u64::MAX.wrapping_shl((bytes.len() * 8).wrapping_sub(1) as u32);
    if value & mask != 0 {
        value |= mask;
    }
    value as i64 as f64
}

unsafe extern "C-unwind" fn unpack(l: State) -> c_int {
    unsafe { finish(l, || unpack_inner(l).unwrap_or_else(|e| e)) }
}

unsafe fn unpack_inner(l: State) -> Result<Outcome, Outcome> {
    unsafe {
        let text = format_arg(l)?;
        if lua_isstring(l, 2) == 0 {
            return Err(Outcome::NotString(2));
        }
        let data = to_bytes(l, 2).unwrap_or_default();
        let start = match lua_type(l, 3) {
            LUA_TNONE | LUA_TNIL => 1,
            _ => number_arg(l, 3)? as i64,
        };
        // As C's size_t: a negative offset wraps to a huge one, which is then too far.
        let mut pos = start as u64 as usize;
        if pos == 0 {
            return Err(Outcome::ArgError(3, "offset must be 1 or greater".into()));
        }
        pos -= 1;
        let (mut format, mut header) = (Format::new(&text), Header::default());
        let mut results: c_int = 0;
        let too_short = || Outcome::ArgError(2, "data string too short".into());
        while let Some(opt) = format.next() {
            let mut size = format.size_of(opt)?;
            pos = pos.wrapping_add(padding(pos, &header, opt, size));
            if size > data.len() || pos > data.len() - size {
                return Err(too_short());
            }
            if lua_checkstack(l, 2) == 0 {
                return Err(Outcome::Error("stack overflow (too many results)".into()));
            }
            match opt {
                b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                    let bytes = &data[pos..pos + size];
                    lua_pushnumber(
                        l,
                        read_integer(bytes, header.endian, opt.is_ascii_lowercase()),
                    );
                    results += 1;
                }
                b'x' => {}
                b'f' => {
                    let bytes: [u8; 4] = data[pos..pos + 4].try_into().unwrap_or_default();
                    let f = match header.endian {
                        Endian::Big => f32::from_be_bytes(bytes),
                        Endian::Little => f32::from_le_bytes(bytes),
                    };
                    lua_pushnumber(l, f as f64);
                    results += 1;
                }
                b'd' => {
                    let bytes: [u8; 8] = data[pos..pos + 8].try_into().unwrap_or_default();
                    let d = match header.endian {
                        Endian::Big => f64::from_be_bytes(bytes),
                        Endian::Little => f64::from_le_bytes(bytes),
                    };
                    lua_pushnumber(l, d);
                    results += 1;
                }
                b'c' => {
                    if size == 0 {
                        if results == 0 || lua_isnumber(l, -1) == 0 {
                            return Err(Outcome::Error("format 'c0' needs a previous size".into()));
                        }
                        size = lua_tonumber(l, -1) as u64 as usize;
                        lua_pop(l, 1);
                        results -= 1;
                        if size > data.len() || pos > data.len() - size {
                            return Err(too_short());
                        }
                    }
                    push_bytes(l, &data[pos..pos + size]);
                    results += 1;
                }
                b's' => {
                    let Some(end) = data[pos..].iter().position(|&b| b == 0) else {
                        return Err(Outcome::Error("unfinished string in data".into()));
                    };
                    push_bytes(l, &data[pos..pos + end]);
                    size = end + 1;
                    results += 1;
                }
                _ => format.control(opt, &mut header)?,
            }
            pos = pos.wrapping_add(size);
        }
        lua_pushinteger(l, pos.wrapping_add(1) as _);
        Ok(Outcome::Return(results + 1))
    }
}

unsafe extern "C-unwind" fn size(l: State) -> c_int {
    unsafe { finish(l, || size_inner(l).unwrap_or_else(|e| e)) }
}

unsafe fn size_inner(l: State) -> Result<Outcome, Outcome> {
    unsafe {
        let text = format_arg(l)?;
        let (mut format, mut header) = (Format::new(&text), Header::default());
        let mut pos: usize = 0;
        while let Some(opt) = format.next() {
            let size = format.size_of(opt)?;
            pos = pos.wrapping_add(padding(pos, &header, opt, size));
            if opt == b's' {
                return Err(Outcome::ArgError(1, "option 's' has no fixed size".into()));
            }
            if opt == b'c' && size == 0 {
                return Err(Outcome::ArgError(1, "option 'c0' has no fixed size".into()));
            }
            if !opt.is_ascii_alphanumeric() {
                format.control(opt, &mut header)?;
            }
            pos = pos.wrapping_add(size);
        }
        lua_pushinteger(l, pos as _);
        Ok(Outcome::Return(1))
    }
}

/// Sets the `struct` global.
///
/// # Safety
/// `l` is a live state being set up.
pub unsafe fn open(l: State) {
    unsafe {
        lua_createtable(l, 0, 3);
        set_functions(l, &[(c"pack", pack), (c"unpack", unpack), (c"size", size)]);
        lua_setfield(l, LUA_GLOBALSINDEX, c"struct".as_ptr());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_read_back_signed_and_unsigned() {
        assert_eq!(read_integer(&[0xff, 0xfe], Endian::Big, true), -2.0);
        assert_eq!(read_integer(&[0xff, 0xfe], Endian::Big, false), 65534.0);
        assert_eq!(read_integer(&[0x01, 0x00], Endian::Little, true), 1.0);
    }

    #[test]
    fn alignment_pads_to_the_item_size_up_to_the_limit() {
        let header = Header {
            endian: Endian::Little,
            align: 4,
        };
        assert_eq!(padding(1, &header, b'i', 4), 3);
        assert_eq!(padding(1, &header, b'd', 8), 3);
        assert_eq!(padding(1, &header, b'c', 4), 0);
        assert_eq!(padding(1, &Header::default(), b'i', 4), 0);
    }
}
