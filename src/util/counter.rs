//! Statistics counters (INFO commandstats, keyspace hits, latency histograms) that every
//! command adds to. When one thread runs all commands (`io-threads 1`, the default) they add
//! with a plain load and store: a locked addition costs about 5 ns more, and a GET at
//! `-P 16` adds to five of them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static ONE_THREAD: AtomicBool = AtomicBool::new(false);

/// Declares that only the calling thread will add to counters from now on (the server's
/// single-threaded runtime). Without it counters add atomically, as embedded sessions and
/// tests on several threads need.
pub fn commands_run_on_one_thread() {
    ONE_THREAD.store(true, Ordering::Relaxed);
}

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        if ONE_THREAD.load(Ordering::Relaxed) {
            // The one adding thread: readers on other threads see either value, never a tear.
            self.0
                .store(self.0.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        } else {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}
