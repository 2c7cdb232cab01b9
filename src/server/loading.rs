//! A dump or AOF loading while clients are served (Redis's `server.loading`): commands that
//! need the data get `-LOADING` until it is in, and INFO tells the progress. An asynchronous
//! load (a replica's `repl-diskless-load swapdb` of its master's same history) keeps serving
//! the old data meanwhile, refusing only what would not make sense then.

use std::fmt::Write as _;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::util::now_ms;

pub const LOADING_ERROR: &str = "LOADING Redis is loading the dataset in memory";

#[derive(Default)]
pub struct Loading {
    active: AtomicBool,
    asynchronous: AtomicBool,
    start_s: AtomicU64,
    /// The payload's size (0: unknown, as a streamed one's), and how much of it is in.
    total_bytes: AtomicU64,
    loaded_bytes: AtomicU64,
}

/// Ends the load it was made for when dropped, whatever way loading ended.
pub struct Guard<'a>(&'a Loading);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.active.store(false, Ordering::Relaxed);
        self.0.asynchronous.store(false, Ordering::Relaxed);
    }
}

impl Loading {
    pub fn start(&self, total_bytes: u64, asynchronous: bool) -> Guard<'_> {
        self.start_s.store(now_ms() / 1000, Ordering::Relaxed);
        self.total_bytes.store(total_bytes, Ordering::Relaxed);
        self.loaded_bytes.store(0, Ordering::Relaxed);
        self.asynchronous.store(asynchronous, Ordering::Relaxed);
        self.active.store(true, Ordering::Relaxed);
        Guard(self)
    }

    /// Whether a load of either kind runs.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    pub fn loaded_bytes(&self) -> u64 {
        self.loaded_bytes.load(Ordering::Relaxed)
    }

    /// Whether commands that need the data are refused (a load that replaces it).
    pub fn refuses_commands(&self) -> bool {
        self.active.load(Ordering::Relaxed) && !self.asynchronous.load(Ordering::Relaxed)
    }

    /// Whether old data is served while new data loads beside it.
    pub fn is_async(&self) -> bool {
        self.active.load(Ordering::Relaxed) && self.asynchronous.load(Ordering::Relaxed)
    }

    /// `input`, counting what is read from it as loaded.
    pub fn counting<R: Read>(&self, input: R) -> Counting<'_, R> {
        Counting {
            input,
            loading: self,
        }
    }

    /// INFO's `loading` fields, and the progress ones while loading.
    pub fn info(&self, w: &mut String) {
        let asynchronous = self.is_async();
        let _ = write!(
            w,
            "loading:{}\r\nasync_loading:{}\r\n",
            self.refuses_commands() as u8,
            asynchronous as u8
        );
    }

    /// Redis's progress fields, shown after the AOF's while a load runs.
    pub fn progress_info(&self, w: &mut String) {
        if !self.active.load(Ordering::Relaxed) {
            return;
        }
        let start = self.start_s.load(Ordering::Relaxed);
        let total = self.total_bytes.load(Ordering::Relaxed);
        let loaded = self.loaded_bytes.load(Ordering::Relaxed);
        let (perc, remaining) = if total > 0 {
            (
                loaded as f64 / total as f64 * 100.0,
                total.saturating_sub(loaded),
            )
        } else {
            (0.0, 1)
        };
        let elapsed = (now_ms() / 1000).saturating_sub(start);
        let eta = if elapsed == 0 {
            1
        } else {
            elapsed * remaining / (loaded + 1)
        };
        let _ = write!(
            w,
            "loading_start_time:{start}\r\nloading_total_bytes:{total}\r\n\
             loading_rdb_used_mem:0\r\nloading_loaded_bytes:{loaded}\r\n\
             loading_loaded_perc:{perc:.2}\r\nloading_eta_seconds:{eta}\r\n"
        );
    }
}

pub struct Counting<'a, R> {
    input: R,
    loading: &'a Loading,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.input.read(buf)?;
        self.loading
            .loaded_bytes
            .fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}
