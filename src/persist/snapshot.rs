//! RDB snapshots of the running server: SAVE in the foreground, BGSAVE in a forked child
//! (`super::child`), save points, and loading at start.

use bytes::Bytes;
use std::fs::File;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::child::Child;
use super::rdb;
use crate::config::{self, Config};
use crate::server::Server;
use crate::store::Store;
use crate::util::now_ms;

/// How long to wait after a failed background save before a save point retries (Redis's
/// CONFIG_BGSAVE_RETRY_DELAY).
const RETRY_DELAY_SECONDS: u64 = 5;

#[derive(Default)]
pub struct Snapshots {
    state: Mutex<State>,
    /// The last save failed; read on every write command, hence outside the lock.
    failing: AtomicBool,
}

struct State {
    child: Option<Child>,
    /// `dirty` when the child was forked: what the snapshot covers.
    dirty_at_fork: u64,
    last_attempt_ms: u64,
    last_bgsave_secs: i64,
    saves: u64,
    /// Set by BGSAVE SCHEDULE: start one when nothing else is running.
    scheduled: bool,
    last_load: rdb::Loaded,
}

impl Default for State {
    fn default() -> State {
        State {
            child: None,
            dirty_at_fork: 0,
            last_attempt_ms: 0,
            last_bgsave_secs: -1,
            saves: 0,
            scheduled: false,
            last_load: rdb::Loaded::default(),
        }
    }
}

/// The figures INFO persistence reports.
pub struct Status {
    pub in_progress: bool,
    pub last_ok: bool,
    pub last_bgsave_secs: i64,
    pub current_secs: i64,
    pub saves: u64,
    pub keys_loaded: u64,
    pub keys_expired: u64,
}

/// What a dump holds besides the keys, read before a fork: the child must take no lock
/// another thread might hold.
struct Extras {
    functions: Vec<Bytes>,
    repl: Option<rdb::ReplInfo>,
}

impl Extras {
    fn read(server: &Server) -> Extras {
        Extras {
            functions: server.scripts.library_codes(),
            repl: crate::replication::save_info(server),
        }
    }
}

/// Writes the snapshot to a temporary file, syncs it and renames it over `dbfilename`, so a
/// crash at any point leaves the previous dump whole.
fn write_file(store: &Store, config: &Config, extras: &Extras, pid: u32) -> io::Result<()> {
    let temp = format!("temp-{pid}.rdb");
    let result = (|| {
        let mut file = File::create(&temp)?;
        let repl = extras.repl.as_ref();
        rdb::save(store, config, &extras.functions, false, repl, &mut file)?;
        file.sync_all()?;
        std::fs::rename(&temp, config.text(config::DBFILENAME))?;
        File::open(".")?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

impl Snapshots {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn in_progress(&self) -> bool {
        self.state().child.is_some()
    }

    pub fn status(&self) -> Status {
        let state = self.state();
        Status {
            in_progress: state.child.is_some(),
            last_ok: !self.failing.load(Ordering::Relaxed),
            last_bgsave_secs: state.last_bgsave_secs,
            current_secs: state
                .child
                .as_ref()
                .map_or(-1, |c| c.started.elapsed().as_secs() as i64),
            saves: state.saves,
            keys_loaded: state.last_load.keys,
            keys_expired: state.last_load.expired,
        }
    }

    /// SAVE: writes the snapshot from this thread. The caller holds the gate exclusively.
    pub fn save(&self, server: &Server) -> io::Result<()> {
        let dirty = server.store.notifier.dirty.load(Ordering::Relaxed);
        let extras = Extras::read(server);
        let result = write_file(&server.store, &server.config, &extras, std::process::id());
        let mut state = self.state();
        match &result {
            Ok(()) => {
                tracing::info!("DB saved on disk");
                server
                    .store
                    .notifier
                    .dirty
                    .fetch_sub(dirty, Ordering::Relaxed);
                server.lastsave.store(now_ms() / 1000, Ordering::Relaxed);
                self.failing.store(false, Ordering::Relaxed);
                state.saves += 1;
            }
            Err(e) => {
                tracing::warn!("Failed saving the DB: {e}");
                self.failing.store(true, Ordering::Relaxed);
            }
        }
        result
    }

    /// BGSAVE: forks a child that writes the snapshot. The caller holds the gate exclusively.
    pub fn start_background(&self, server: &Server) -> io::Result<()> {
        let mut state = self.state();
        if state.child.is_some() {
            return Err(io::Error::other("Background save already in progress"));
        }
        if server.store.notifier.aof.rewriting() {
            return Err(io::Error::other("Another child process is active"));
        }
        state.last_attempt_ms = now_ms();
        state.scheduled = false;
        let dirty_at_fork = server.store.notifier.dirty.load(Ordering::Relaxed);
        let extras = Extras::read(server);
        let child = Child::spawn(|| {
            write_file(&server.store, &server.config, &extras, std::process::id()).is_ok()
        })
        .inspect_err(|e| {
            tracing::warn!("Can't save in background: fork: {e}");
            self.failing.store(true, Ordering::Relaxed);
        })?;
        tracing::info!("Background saving started by pid {}", child.pid);
        state.child = Some(child);
        state.dirty_at_fork = dirty_at_fork;
        Ok(())
    }

    /// Whether writes are refused because the last save failed (`stop-writes-on-bgsave-error`,
    /// when save points are configured).
    pub fn refuses_writes(&self, config: &Config) -> bool {
        self.failing.load(Ordering::Relaxed)
            && config.bool(config::STOP_WRITES_ON_BGSAVE_ERROR)
            && !save_points(config).is_empty()
    }

    /// BGSAVE SCHEDULE while a child runs: start one as soon as it is done.
    pub fn schedule(&self) {
        self.state().scheduled = true;
    }

    /// Collects a finished child, if any (from the background cycle).
    pub fn reap(&self, server: &Server) {
        let mut state = self.state();
        let Some(child) = &state.child else {
            return;
        };
        let Some(ok) = child.poll() else {
            return;
        };
        let child = state.child.take().expect("checked above");
        state.last_bgsave_secs = child.started.elapsed().as_secs() as i64;
        if ok {
            tracing::info!("Background saving terminated with success");
            server
                .store
                .notifier
                .dirty
                .fetch_sub(state.dirty_at_fork, Ordering::Relaxed);
            server.lastsave.store(now_ms() / 1000, Ordering::Relaxed);
            self.failing.store(false, Ordering::Relaxed);
            state.saves += 1;
        } else {
            tracing::warn!("Background saving error");
            self.failing.store(true, Ordering::Relaxed);
            let _ = std::fs::remove_file(format!("temp-{}.rdb", child.pid));
        }
    }

    /// Stops a running child and removes its temporary file (SHUTDOWN, FLUSHALL).
    pub fn kill_child(&self) {
        let mut state = self.state();
        if let Some(child) = state.child.take() {
            tracing::warn!("Killing the background saving child {}", child.pid);
            child.kill();
            let _ = std::fs::remove_file(format!("temp-{}.rdb", child.pid));
        }
    }

    /// Whether a save point (`save <seconds> <changes>`) or BGSAVE SCHEDULE asks for a
    /// background save now.
    pub fn due(&self, server: &Server) -> bool {
        let state = self.state();
        if state.child.is_some() {
            return false;
        }
        if state.scheduled {
            return true;
        }
        // In whole seconds and strictly more than the limits, as Redis's serverCron counts:
        // `save 1 1` fires between 1 and 2 seconds after the last save, a retry after a failed
        // save between 5 and 6 seconds after it.
        let now = now_ms() / 1000;
        if self.failing.load(Ordering::Relaxed)
            && now.saturating_sub(state.last_attempt_ms / 1000) <= RETRY_DELAY_SECONDS
        {
            return false;
        }
        let dirty = server.store.notifier.dirty.load(Ordering::Relaxed);
        let since_save = now.saturating_sub(server.lastsave.load(Ordering::Relaxed));
        save_points(&server.config)
            .iter()
            .any(|&(seconds, changes)| dirty >= changes && since_save > seconds)
    }

    /// Loads `dbfilename` if it exists; called once at start, before clients are accepted.
    pub fn load_at_start(&self, server: &Server) -> Result<(), String> {
        let path = server.config.text(config::DBFILENAME);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("Fatal error loading the DB: {e}. Exiting.")),
        };
        let started = Instant::now();
        let size = file.metadata().map_or(0, |m| m.len());
        let _loading = server.loading.start(size, false);
        let reader = io::BufReader::with_capacity(1 << 16, server.loading.counting(file));
        let loaded = rdb::load(reader, &server.store, &server.config, false)?;
        server
            .scripts
            .load_libraries(server, &loaded.functions, false)?;
        tracing::info!(
            "Done loading RDB, keys loaded: {}, keys expired: {}, empty keys skipped: {}.",
            loaded.keys,
            loaded.expired,
            loaded.empty
        );
        tracing::info!(
            "DB loaded from disk: {:.3} seconds",
            started.elapsed().as_secs_f64()
        );
        server.replication.restore(server, loaded.repl.clone());
        self.state().last_load = loaded;
        Ok(())
    }

    /// Before exiting: stops a running child, then saves if `save` says so or, when it says
    /// nothing, if save points are configured. The caller holds the gate exclusively.
    pub fn on_shutdown(&self, server: &Server, save: Option<bool>) -> io::Result<()> {
        self.kill_child();
        server.store.notifier.aof.flush_for_shutdown();
        if save.unwrap_or_else(|| !save_points(&server.config).is_empty()) {
            tracing::info!("Saving the final RDB snapshot before exiting.");
            self.save(server)?;
        }
        Ok(())
    }

    /// DEBUG RELOAD: saves (unless `save` is false), empties the keyspace and the function
    /// libraries (unless `flush` is false) and loads the file; with `merge`, what the file
    /// holds replaces what is there. The caller holds the gate exclusively.
    pub fn reload(
        &self,
        server: &Server,
        save: bool,
        flush: bool,
        merge: bool,
    ) -> Result<(), String> {
        if save {
            self.save(server)
                .map_err(|e| format!("Error trying to save the DB: {e}"))?;
        }
        if flush {
            server.store.empty();
            server.scripts.flush_functions(server);
        }
        let loaded = File::open(server.config.text(config::DBFILENAME))
            .map_err(|e| e.to_string())
            .and_then(|file| {
                let loaded = rdb::load(
                    io::BufReader::new(file),
                    &server.store,
                    &server.config,
                    merge,
                )?;
                server
                    .scripts
                    .load_libraries(server, &loaded.functions, merge)?;
                Ok(loaded)
            })
            .map_err(|e| {
                tracing::warn!("DEBUG RELOAD could not load the RDB dump: {e}");
                "Error trying to load the RDB dump, check server logs.".to_string()
            })?;
        self.state().last_load = loaded;
        Ok(())
    }
}

/// The `save` setting as (seconds, changes) pairs.
pub fn save_points(config: &Config) -> Vec<(u64, u64)> {
    let text = config.text(config::SAVE);
    let numbers: Vec<u64> = text
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    numbers.chunks_exact(2).map(|p| (p[0], p[1])).collect()
}
