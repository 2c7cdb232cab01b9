//! Clocks for the hot path. Reading the system clock costs tens of nanoseconds per call, which
//! is a tenth of a pipelined command, so a command reads the time once (`freeze`) and times
//! itself with the CPU's cycle counter; that time is itself the last system clock reading
//! (at most `WALL_REFRESH_US` old) moved on by the cycle counter.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

thread_local! {
    static FROZEN_MS: Cell<u64> = const { Cell::new(0) };
    /// This thread's last system clock reading: (ticks, Unix time in microseconds).
    static WALL_BASE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// How long a system clock reading is carried forward by the cycle counter. The tick rate is
/// measured to about 0.05%, so the time drifts by a few microseconds at most before the next
/// reading, and a step of the system clock (NTP, settimeofday) shows within this time.
const WALL_REFRESH_US: u64 = 10_000;

/// Unix time in microseconds at `ticks`, carried forward from this thread's last system clock
/// reading.
fn system_us(ticks: u64) -> u64 {
    let (base_ticks, base_us) = WALL_BASE.get();
    // A counter behind the base (another CPU's) wraps to a huge value and forces a reading.
    let since_base_us = ticks_to_ns(ticks.wrapping_sub(base_ticks)) / 1000;
    if base_us == 0 || since_base_us >= WALL_REFRESH_US {
        let now = now_us();
        WALL_BASE.set((read_ticks(), now));
        return now;
    }
    base_us + since_base_us
}

/// Unix time in milliseconds; inside a command, the time the command started.
pub fn now_ms() -> u64 {
    match FROZEN_MS.get() {
        0 => Ticks::now().unix_ms(),
        frozen => frozen,
    }
}

/// Whether the Unix-ms deadline in `until` (0: none) is still ahead. A passed one is cleared,
/// so later checks need no clock read.
pub fn deadline_ahead(until: &std::sync::atomic::AtomicU64) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    let deadline = until.load(Relaxed);
    if deadline == 0 {
        return false;
    }
    if now_ms() < deadline {
        return true;
    }
    let _ = until.compare_exchange(deadline, 0, Relaxed, Relaxed);
    false
}

/// Unix time in microseconds, always read fresh.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// While alive, `now_ms` returns one reading, as Redis's command time snapshot: every key a
/// command (or a whole EXEC) touches expires against the same time. Nested freezes keep the
/// outer reading.
pub struct Frozen {
    outer: bool,
    at: Ticks,
}

pub fn freeze() -> Frozen {
    freeze_at(Ticks::now())
}

/// `freeze` at a tick reading just taken: the end of the command before, in one batch.
pub fn freeze_at(at: Ticks) -> Frozen {
    let outer = FROZEN_MS.get() == 0;
    if outer {
        FROZEN_MS.set(at.unix_ms());
    }
    Frozen { outer, at }
}

/// Takes this thread's frozen time away (a script set aside while other tasks run on the
/// thread); `restore_frozen` puts it back.
pub fn take_frozen() -> u64 {
    FROZEN_MS.replace(0)
}

pub fn restore_frozen(ms: u64) {
    FROZEN_MS.set(ms);
}

impl Frozen {
    /// When the freeze began: the start of the command it covers.
    pub fn at(&self) -> Ticks {
        self.at
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if self.outer {
            FROZEN_MS.set(0);
        }
    }
}

/// A cheap timestamp for measuring durations (`ns_since`).
#[derive(Clone, Copy)]
pub struct Ticks(u64);

#[cfg(target_arch = "x86_64")]
fn read_ticks() -> u64 {
    // The time stamp counter runs at a constant rate on every x86_64 CPU Linux supports for
    // this (constant_tsc); it is read without a system call.
    unsafe { std::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn read_ticks() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Nanoseconds per tick in 32.32 fixed point, measured once against the monotonic clock.
/// Kept as a factor because every command converts ticks twice and a multiplication takes a
/// fraction of a division's time; in integers because converting a u64 to and from f64 takes
/// tens of instructions on x86_64.
fn ns_per_tick_fixed() -> u64 {
    static FACTOR: OnceLock<u64> = OnceLock::new();
    *FACTOR.get_or_init(|| {
        let (start, start_ticks) = paired_reading();
        while start.elapsed().as_micros() < 2000 {
            std::hint::spin_loop();
        }
        let (end, end_ticks) = paired_reading();
        match end_ticks.saturating_sub(start_ticks) {
            0 => 1 << 32,
            ticks => {
                u64::try_from(((end - start).as_nanos() << 32) / ticks as u128).unwrap_or(u64::MAX)
            }
        }
    })
}

/// Nanoseconds in `ticks`, saturating (a counter read behind its base wraps to a huge count).
fn ticks_to_ns(ticks: u64) -> u64 {
    let ns = (ticks as u128 * ns_per_tick_fixed() as u128) >> 32;
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// The monotonic clock and the tick counter read at one instant: the tick reading brackets
/// the clock reading, and is taken again if the thread was interrupted in between.
fn paired_reading() -> (Instant, u64) {
    let mut best = None;
    for _ in 0..100 {
        let before = read_ticks();
        let at = Instant::now();
        let after = read_ticks();
        let gap = after.saturating_sub(before);
        if best.is_none_or(|(_, _, best_gap)| gap < best_gap) {
            best = Some((at, before + gap / 2, gap));
        }
        if gap < 1000 {
            break;
        }
    }
    let (at, ticks, _) = best.expect("at least one reading");
    (at, ticks)
}

impl Ticks {
    pub fn now() -> Ticks {
        Ticks(read_ticks())
    }

    /// Unix time in milliseconds at this reading.
    pub fn unix_ms(self) -> u64 {
        system_us(self.0) / 1000
    }

    pub fn ns_since(self, earlier: Ticks) -> u64 {
        ticks_to_ns(self.0.saturating_sub(earlier.0))
    }
}

/// Measures the tick rate now rather than on the first command.
pub fn calibrate() {
    ns_per_tick_fixed();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carried_forward_time_keeps_to_the_system_clock() {
        let start = Instant::now();
        let mut checked = 0;
        // Several refresh periods, so both the carried-forward and the fresh path are taken.
        while start.elapsed().as_millis() < 60 {
            // The rate is measured to about 0.05%: 5 µs over a refresh period.
            let before = now_us() - 20;
            let ours = system_us(read_ticks());
            let after = now_us() + 20;
            assert!(
                before <= ours && ours <= after,
                "{before} <= {ours} <= {after}"
            );
            checked += 1;
        }
        assert!(checked > 100);
    }

    #[test]
    fn a_frozen_command_sees_one_time() {
        let frozen = freeze();
        let first = now_ms();
        std::thread::sleep(std::time::Duration::from_millis(3));
        assert_eq!(now_ms(), first);
        drop(frozen);
        assert!(now_ms() >= first + 3);
    }
}
