//! The libraries Redis loads beside Lua's own, written here in Rust: `bit`, `cjson`, `struct`
//! and `cmsgpack`. Each matches the C library Redis bundles, case by case, and never reads or
//! writes outside its input, whatever the script hands it.

mod bit;
mod cjson;
mod cmsgpack;
mod structlib;

use super::lua::State;

/// Sets every library's global table.
///
/// # Safety
/// `l` is a live state being set up.
pub unsafe fn open(l: State) {
    unsafe {
        bit::open(l);
        cjson::open(l);
        structlib::open(l);
        cmsgpack::open(l);
    }
}
