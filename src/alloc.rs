//! The global allocator: mimalloc, counting live bytes for INFO's `used_memory`.
//! Each thread adds to its own cache-padded counter, so counting costs no contended atomics;
//! the first `SLOTS - 1` threads own theirs alone and add without a locked instruction.

use libmimalloc_sys::{mi_collect, mi_option_set, mi_option_t, mi_zalloc, mi_zalloc_aligned};
use libmimalloc_sys::{mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned};
use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::ffi::c_long;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SLOTS: usize = 64;
/// The slot that every thread past the first `SHARED` ones (and any thread whose
/// thread-locals are gone) adds to, with atomic additions.
const SHARED: usize = SLOTS - 1;

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
                slot.set(NEXT_SLOT.fetch_add(1, Ordering::Relaxed).min(SHARED));
            }
            slot.get()
        })
        .unwrap_or(SHARED);
    let counter = &COUNTERS[slot].0;
    if slot == SHARED {
        counter.fetch_add(delta, Ordering::Relaxed);
    } else {
        // This thread is the slot's only writer; readers only sum the slots.
        counter.store(counter.load(Ordering::Relaxed) + delta, Ordering::Relaxed);
    }
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

/// Sizes up to this take mimalloc's small-block path (its MI_SMALL_SIZE_MAX on 64-bit).
const SMALL_SIZE_MAX: usize = 1024;

/// A block for an alignment above PLAIN_ALIGN. The same trap as in `plain`: a size class whose
/// pages only aligned requests ask for never gets a page, so every such request over-allocates
/// into the next class (tokio's 896-byte task cell, 128-aligned, took a 1024-byte block: 128
/// bytes per connection). A small size that is a multiple of its alignment is asked for plainly
/// first; mimalloc starts those pages' blocks aligned, and a block that is not is given back.
///
/// # Safety
/// As `mi_malloc_aligned` (or `mi_zalloc_aligned` with `zero`).
unsafe fn aligned(size: usize, align: usize, zero: bool) -> *mut std::ffi::c_void {
    if size.is_multiple_of(align) && size <= SMALL_SIZE_MAX {
        let ptr = unsafe {
            if zero {
                mi_zalloc(size)
            } else {
                mi_malloc(size)
            }
        };
        if (ptr as usize).is_multiple_of(align) {
            return ptr;
        }
        unsafe { mi_free(ptr) };
    }
    unsafe {
        if zero {
            mi_zalloc_aligned(size, align)
        } else {
            mi_malloc_aligned(size, align)
        }
    }
}

// SAFETY: each method forwards to the mimalloc call made for the layout's alignment, and
// `mi_free` frees blocks from any of them.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        let ptr = if plain(layout.size(), layout.align()) {
            unsafe { mi_malloc(layout.size()) }
        } else {
            unsafe { aligned(layout.size(), layout.align(), false) }
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
            unsafe { aligned(layout.size(), layout.align(), true) }
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

/// mimalloc's option numbers (`mi_option_e` in mimalloc.h of v3, the version libmimalloc-sys
/// builds by default); libmimalloc-sys names only some.
const OPTION_PURGE_DELAY: mi_option_t = 15;
const OPTION_ARENA_PURGE_MULT: mi_option_t = 24;

/// mimalloc's own purge delay, set so long that it never purges by itself: `Purger` decides.
/// mimalloc purges at a deadline set by the first free after its last purge, and then hands
/// back everything free at that moment, however recently freed. A list deleted and filled again
/// every few seconds (a work queue that drains and refills, `compare.sh`'s rounds) then had its
/// pages purged between a DEL and the pushes that would reuse them: each page cost a fault and
/// zeroing again (RPUSH of 1 KB values at -P 16: 1.4-1.9 us per push against 1.1-1.3).
const NEVER_MS: c_long = 1 << 40;

/// Sets mimalloc's purge delay, unless the environment sets it (MIMALLOC_PURGE_DELAY).
pub fn configure() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: setting an option only stores its value.
        unsafe {
            mi_option_set(OPTION_PURGE_DELAY, NEVER_MS);
            mi_option_set(OPTION_ARENA_PURGE_MULT, 1);
        }
    }
}

/// How long memory must sit free before it goes back to the system, as jemalloc's
/// `dirty_decay_ms` default in Redis.
const PURGE_AFTER: Duration = Duration::from_secs(10);
/// Freed memory smaller than this, or than an eighth of the live data, is not worth a purge.
const PURGE_MIN_BYTES: usize = 16 << 20;

/// Hands freed memory back to the system once it has stayed unused for `PURGE_AFTER`, as
/// jemalloc's decay does for Redis. The live data's drop below its peak since the last purge
/// is the memory freed; it is being used again while the live data climbs back from its low.
/// A purge follows when the drop has stayed over the minimum, with no such climb, for
/// `PURGE_AFTER`. A list deleted and filled again within that time is never purged, and an
/// idle server shrinks `PURGE_AFTER` after a big delete. (Resident size beyond the live data
/// would not do as the measure: it also counts the rounding of live blocks to mimalloc's size
/// classes, a fifth of a list of 1 KB values. Nor would the peak alone: a refill stays below
/// a peak that included a big request's query buffer.)
#[derive(Default)]
pub struct Purger {
    /// The most live data since the last purge.
    peak: usize,
    /// While the drop is over the minimum: the least live data since it last climbed, and
    /// since when it has not climbed.
    unused: Option<(usize, Instant)>,
}

impl Purger {
    /// Takes the live data now (`allocated()`); the cron calls this at every tick, so that the
    /// peak of a load deleted soon after is seen too.
    pub fn check(&mut self, live: usize, now: Instant) {
        self.peak = self.peak.max(live);
        let minimum = PURGE_MIN_BYTES.max(live / 8);
        if self.peak - live <= minimum {
            self.unused = None;
            return;
        }
        match self.unused {
            Some((low, since)) if live <= low + minimum => {
                if now.duration_since(since) >= PURGE_AFTER {
                    purge();
                    self.peak = live;
                    self.unused = None;
                } else {
                    self.unused = Some((low.min(live), since));
                }
            }
            // The drop begins, or the freed memory is being used again.
            _ => self.unused = Some((live, now)),
        }
    }
}

/// MEMORY PURGE: hands the pages mimalloc holds free back to the system.
pub fn purge() {
    // SAFETY: mi_collect only walks mimalloc's own bookkeeping.
    unsafe { mi_collect(true) }
}

/// Bytes currently allocated by the process through Rust's allocator.
pub fn allocated() -> usize {
    // Only slots some thread took count: eviction reads this before every command.
    let used = NEXT_SLOT.load(Ordering::Relaxed).min(SHARED);
    COUNTERS[..used]
        .iter()
        .chain(std::iter::once(&COUNTERS[SHARED]))
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
