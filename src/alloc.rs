//! The global allocator: mimalloc, counting live bytes for INFO's `used_memory`.
//! Each thread adds to its own cache-padded counter, so counting costs no contended atomics.

use libmimalloc_sys::{mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned};
use libmimalloc_sys::{mi_zalloc, mi_zalloc_aligned};
use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

const SLOTS: usize = 64;

#[repr(align(64))]
struct Slot(AtomicIsize);

static COUNTERS: [Slot; SLOTS] = [const { Slot(AtomicIsize::new(0)) }; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MY_SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn add(delta: isize) {
    let slot = MY_SLOT
        .try_with(|slot| {
            if slot.get() == usize::MAX {
                slot.set(NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS);
            }
            slot.get()
        })
        .unwrap_or(0);
    COUNTERS[slot].0.fetch_add(delta, Ordering::Relaxed);
}

pub struct CountingAllocator;

/// The alignment every mimalloc block of at least this size has: `.cargo/config.toml` builds
/// mimalloc with `MI_MAX_ALIGN_SIZE=8` (16 by default, which satisfies this too).
const PLAIN_ALIGN: usize = 8;

/// Whether a plain `mi_malloc` block satisfies `layout`. Asking `mi_malloc_aligned` instead would
/// be correct too, but until a size class has a page it over-allocates by the alignment, and its
/// pages are made only by plain requests: every 56-byte node would take a 64-byte block.
fn plain(size: usize, align: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: each method forwards to the mimalloc call made for the layout's alignment, and
// `mi_free` frees blocks from any of them.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        let ptr = if plain(layout.size(), layout.align()) {
            unsafe { mi_malloc(layout.size()) }
        } else {
            unsafe { mi_malloc_aligned(layout.size(), layout.align()) }
        };
        ptr.cast()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        unsafe { mi_free(ptr.cast()) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        let ptr = if plain(layout.size(), layout.align()) {
            unsafe { mi_zalloc(layout.size()) }
        } else {
            unsafe { mi_zalloc_aligned(layout.size(), layout.align()) }
        };
        ptr.cast()
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        let ptr = if plain(new_size, layout.align()) {
            unsafe { mi_realloc(ptr.cast(), new_size) }
        } else {
            unsafe { mi_realloc_aligned(ptr.cast(), new_size, layout.align()) }
        };
        ptr.cast()
    }
}

/// MEMORY PURGE: hands the pages mimalloc holds free back to the system.
pub fn purge() {
    // SAFETY: mi_collect only walks mimalloc's own bookkeeping.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Bytes currently allocated by the process through Rust's allocator.
pub fn allocated() -> usize {
    COUNTERS
        .iter()
        .map(|s| s.0.load(Ordering::Relaxed))
        .sum::<isize>()
        .max(0) as usize
}

/// Resident set size in bytes, from /proc/self/statm.
pub fn resident() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// User and system CPU seconds of this process, from /proc/self/stat.
pub fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (ticks(11), ticks(12))
}
