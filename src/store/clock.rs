//! Keys' access clock: what each entry keeps of when it was last used (for the LRU policies and
//! OBJECT IDLETIME) or of how often (for the LFU policies and OBJECT FREQ), as Redis keeps it
//! in its objects' 24-bit `lru` field. Here it has 23 bits, the rest of the word the entry's
//! expiry uses (see `keyspace::Entry`):
//! - LRU: the time of the last access in seconds, wrapping every 97 days (Redis: 194);
//! - LFU: Redis's logarithmic counter in the low 8 bits, and above it the time of its last
//!   decrement in minutes, wrapping every 22 days (Redis: 45). A counter decays by one per
//!   `lfu-decay-time` minutes, so wrapping matters only for decay times above 130 minutes.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// Forked children writing a snapshot: while one runs, lookups leave clocks as they are, as
/// Redis does, so that reads do not copy the pages the child shares.
static CHILDREN: AtomicUsize = AtomicUsize::new(0);

pub fn child_started() {
    CHILDREN.fetch_add(1, Ordering::Relaxed);
}

pub fn child_ended() {
    CHILDREN.fetch_sub(1, Ordering::Relaxed);
}

thread_local! {
    /// Set while a command of a CLIENT NO-TOUCH client runs on this thread.
    static UNTOUCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with lookups leaving clocks as they are when `untouched` (or when an outer call
/// said so already: a script or transaction of such a client).
pub fn untouched_while<T>(untouched: bool, f: impl FnOnce() -> T) -> T {
    let outer = UNTOUCHED.get();
    UNTOUCHED.set(outer || untouched);
    let result = f();
    UNTOUCHED.set(outer);
    result
}

pub const BITS: u32 = 23;
pub const MASK: u32 = (1 << BITS) - 1;
const MINUTES_MASK: u32 = MASK >> 8;
/// The counter a new key starts with, so it is not evicted before it had a chance to be used.
const LFU_INIT: u32 = 5;

/// How the clock is kept and read, set from `maxmemory-policy`, `lfu-log-factor` and
/// `lfu-decay-time`.
#[derive(Default)]
pub struct AccessClock {
    lfu: AtomicBool,
    log_factor: AtomicU32,
    decay_minutes: AtomicU32,
}

fn lru_now(now_ms: u64) -> u32 {
    (now_ms / 1000) as u32 & MASK
}

fn minutes_now(now_ms: u64) -> u32 {
    (now_ms / 60_000) as u32 & MINUTES_MASK
}

impl AccessClock {
    pub fn configure(&self, lfu: bool, log_factor: u32, decay_minutes: u32) {
        self.lfu.store(lfu, Ordering::Relaxed);
        self.log_factor.store(log_factor, Ordering::Relaxed);
        self.decay_minutes.store(decay_minutes, Ordering::Relaxed);
    }

    pub fn is_lfu(&self) -> bool {
        self.lfu.load(Ordering::Relaxed)
    }

    /// The clock of a key created now.
    pub fn fresh(&self, now_ms: u64) -> u32 {
        if self.is_lfu() {
            minutes_now(now_ms) << 8 | LFU_INIT
        } else {
            lru_now(now_ms)
        }
    }

    /// The clock after an access now (Redis's `updateLFU`, or the LRU clock); unchanged
    /// while a snapshot child runs.
    pub fn touched(&self, clock: u32, now_ms: u64) -> u32 {
        if CHILDREN.load(Ordering::Relaxed) > 0 || UNTOUCHED.get() {
            return clock;
        }
        if !self.is_lfu() {
            return lru_now(now_ms);
        }
        let counter = self.frequency(clock, now_ms);
        let counter = self.log_increment(counter);
        minutes_now(now_ms) << 8 | counter
    }

    /// Milliseconds since the last access (Redis's `estimateObjectIdleTime`), for a clock kept
    /// as LRU.
    pub fn idle_ms(clock: u32, now_ms: u64) -> u64 {
        let now = lru_now(now_ms);
        let seconds = if now >= clock {
            now - clock
        } else {
            now + (MASK - clock)
        };
        seconds as u64 * 1000
    }

    /// The LFU counter once decayed for the minutes since its last decrement (Redis's
    /// `LFUDecrAndReturn`); the clock itself is not changed.
    pub fn frequency(&self, clock: u32, now_ms: u64) -> u32 {
        let counter = clock & 255;
        let decay = self.decay_minutes.load(Ordering::Relaxed);
        if decay == 0 {
            return counter;
        }
        let then = clock >> 8;
        let now = minutes_now(now_ms);
        let elapsed = if now >= then {
            now - then
        } else {
            MINUTES_MASK - then + now
        };
        counter.saturating_sub(elapsed / decay)
    }

    /// Redis's `LFULogIncr`: the higher the counter, the less likely it grows.
    fn log_increment(&self, counter: u32) -> u32 {
        if counter == 255 {
            return 255;
        }
        let base = counter.saturating_sub(LFU_INIT) as f64;
        let chance = 1.0 / (base * self.log_factor.load(Ordering::Relaxed) as f64 + 1.0);
        let draw = crate::util::thread_rng_f64();
        if draw < chance { counter + 1 } else { counter }
    }

    /// The clock RESTORE's IDLETIME or FREQ, or a dump's IDLE or FREQ, sets (Redis's
    /// `objectSetLRUOrLFU`): a frequency under an LFU policy, an idle time otherwise; None
    /// when the given one does not apply.
    pub fn restored(&self, freq: Option<u8>, idle_secs: Option<u64>, now_ms: u64) -> Option<u32> {
        if self.is_lfu() {
            return freq.map(|freq| minutes_now(now_ms) << 8 | freq as u32);
        }
        let idle = (idle_secs? % (MASK as u64 + 1)) as u32;
        let now = lru_now(now_ms);
        Some(if idle <= now {
            now - idle
        } else {
            now + MASK - idle
        })
    }

    /// How much a key deserves eviction, higher first: its idle time under LRU, 255 less its
    /// frequency under LFU (Redis's `evictionPoolPopulate`).
    pub fn eviction_score(&self, clock: u32, now_ms: u64) -> u64 {
        if self.is_lfu() {
            255 - self.frequency(clock, now_ms) as u64
        } else {
            Self::idle_ms(clock, now_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_idle_time_wraps_like_redis() {
        let now = 1_800_000_000_000;
        let clock = AccessClock::default();
        let fresh = clock.fresh(now);
        assert_eq!(AccessClock::idle_ms(fresh, now + 5_500), 5_000);
        let restored = clock.restored(None, Some(1000), now).unwrap();
        assert_eq!(AccessClock::idle_ms(restored, now), 1_000_000);
        // An idle time longer than the clock's current value wraps below zero.
        let long = clock
            .restored(None, Some(lru_now(now) as u64 + 10), now)
            .unwrap();
        assert_eq!(
            AccessClock::idle_ms(long, now),
            (lru_now(now) as u64 + 10) * 1000
        );
    }

    #[test]
    fn lfu_counter_starts_at_five_grows_slowly_and_decays() {
        let now = 1_800_000_000_000;
        let clock = AccessClock::default();
        clock.configure(true, 10, 1);
        let mut c = clock.fresh(now);
        assert_eq!(clock.frequency(c, now), 5);
        for _ in 0..1000 {
            c = clock.touched(c, now);
        }
        let counter = clock.frequency(c, now);
        assert!((10..40).contains(&counter), "{counter}");
        assert_eq!(clock.frequency(c, now + 3 * 60_000), counter - 3);
        assert_eq!(
            clock.restored(Some(100), Some(7), now).map(|c| c & 255),
            Some(100)
        );
        assert_eq!(clock.restored(None, Some(7), now), None);
    }
}
