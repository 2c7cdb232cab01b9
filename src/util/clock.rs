//! Clocks for the hot path. Reading the system clock costs tens of nanoseconds per call, which
//! is a tenth of a pipelined command, so a command reads it once (`freeze`) and times itself
//! with the CPU's cycle counter.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

thread_local! {
    static FROZEN_MS: Cell<u64> = const { Cell::new(0) };
}

fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix time in milliseconds; inside a command, the time the command started.
pub fn now_ms() -> u64 {
    match FROZEN_MS.get() {
        0 => system_ms(),
        frozen => frozen,
    }
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
}

pub fn freeze() -> Frozen {
    let outer = FROZEN_MS.get() == 0;
    if outer {
        FROZEN_MS.set(system_ms());
    }
    Frozen { outer }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if self.outer {
            FROZEN_MS.set(0);
        }
    }
}

/// A cheap timestamp for measuring durations (`elapsed_us`).
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

/// Ticks per microsecond, measured once against the monotonic clock.
fn ticks_per_us() -> f64 {
    static RATE: OnceLock<f64> = OnceLock::new();
    *RATE.get_or_init(|| {
        let (start, ticks) = (Instant::now(), read_ticks());
        while start.elapsed().as_micros() < 2000 {
            std::hint::spin_loop();
        }
        let rate = (read_ticks() - ticks) as f64 / start.elapsed().as_micros() as f64;
        if rate > 0.0 { rate } else { 1000.0 }
    })
}

impl Ticks {
    pub fn now() -> Ticks {
        Ticks(read_ticks())
    }

    pub fn elapsed_us(self) -> u64 {
        self.elapsed_ns() / 1000
    }

    pub fn elapsed_ns(self) -> u64 {
        (read_ticks().saturating_sub(self.0) as f64 * 1000.0 / ticks_per_us()) as u64
    }
}

/// Measures the tick rate now rather than on the first command.
pub fn calibrate() {
    ticks_per_us();
}
