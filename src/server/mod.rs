//! Server-wide state shared by every connection, and the start-up sequence.

mod connection;
mod cron;
mod fd_limit;
mod listener;
pub mod loading;
pub use listener::PortKind;
pub mod stream;
mod tls;
mod unsent;

use crate::store::evict::{Limits, Outcome, Policy};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::acl::Acl;
use crate::client::{ClientHandle, ClientRegistry, FLAG_BLOCKED, OutputLimits};
use crate::commands::CommandTable;
use crate::config::{self, Config};
use crate::persist::Snapshots;
use crate::store::Store;
use crate::util::counter::Counter;
use crate::util::{now_ms, now_us, repr};

pub use listener::run;

/// The Redis version whose behaviour Oxidis matches, reported as `redis_version`.
pub const REDIS_VERSION: &str = "7.0.15";
pub const OXIDIS_VERSION: &str = env!("CARGO_PKG_VERSION");

pub struct Server {
    pub config: Config,
    pub store: Store,
    pub commands: CommandTable,
    pub acl: Acl,
    pub clients: ClientRegistry,
    pub stats: Stats,
    pub slowlog: Mutex<SlowLog>,
    pub monitors: Monitors,
    pub pause: Pause,
    pub loading: loading::Loading,
    pub started: Instant,
    pub run_id: String,
    /// Turned off by DEBUG SET-ACTIVE-EXPIRE 0.
    pub active_expire: AtomicBool,
    /// Set by DEBUG PAUSE-CRON 1: the background cycle skips its work.
    pub cron_paused: AtomicBool,
    /// Turned off by DEBUG REPLYBUFFER RESIZING 0: idle clients keep their reply buffers.
    pub reply_buffer_resizing: AtomicBool,
    pub lastsave: AtomicU64,
    pub snapshots: Snapshots,
    pub listen_port: AtomicU64,
    /// `client-output-buffer-limit normal`.
    pub normal_output_limits: OutputLimits,
    /// The TLS settings in force, when `tls-port` is set; CONFIG SET of a `tls-*` setting
    /// replaces them for the next connections.
    pub tls: std::sync::RwLock<Option<tokio_rustls::TlsAcceptor>>,
    pub ports: listener::Ports,
    pub scripts: crate::scripting::Scripts,
    pub replication: crate::replication::Replication,
    /// Woken when eviction ran out of time before a command: `cron::evict_on` goes on with it
    /// between other clients' commands, as Redis's eviction time event does.
    pub eviction_unfinished: Notify,
}

#[derive(Default)]
pub struct Stats {
    pub commands_processed: Counter,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    pub keyspace_hits: Counter,
    pub keyspace_misses: Counter,
    pub error_replies: AtomicU64,
    pub unexpected_error_replies: AtomicU64,
    /// Allocated bytes once the server was set up, before loading data (`used_memory_startup`).
    pub startup_allocated: AtomicU64,
    /// The most bytes allocated at once, as seen by the cron and memory reports.
    peak_allocated: AtomicU64,
    /// Error replies counted by their code (`ERR`, `WRONGTYPE` ...) for INFO errorstats.
    pub errors_by_code: Mutex<HashMap<String, u64>>,
}

impl Stats {
    pub fn count_error(&self, message: &str) {
        self.error_replies.fetch_add(1, Ordering::Relaxed);
        let code = message.split(' ').next().unwrap_or("ERR").to_string();
        *self
            .errors_by_code
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(code)
            .or_default() += 1;
    }

    /// Records `allocated` bytes toward the peak; returns the peak.
    pub fn note_memory_peak(&self, allocated: u64) -> u64 {
        self.peak_allocated
            .fetch_max(allocated, Ordering::Relaxed)
            .max(allocated)
    }

    pub fn reset(&self) {
        for counter in [
            &self.commands_processed,
            &self.keyspace_hits,
            &self.keyspace_misses,
        ] {
            counter.reset();
        }
        for counter in [
            &self.net_input_bytes,
            &self.net_output_bytes,
            &self.error_replies,
            &self.unexpected_error_replies,
            &self.peak_allocated,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        self.errors_by_code
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

pub struct SlowLogEntry {
    pub id: u64,
    pub time: u64,
    pub micros: u64,
    pub args: Vec<Bytes>,
    pub peer: String,
    pub name: Bytes,
}

#[derive(Default)]
pub struct SlowLog {
    pub entries: VecDeque<SlowLogEntry>,
    pub next_id: u64,
}

impl SlowLog {
    /// Records a slow command as Redis does: at most 32 arguments, each cut at 128 bytes.
    pub fn push(&mut self, args: &[Bytes], micros: u64, peer: String, name: Bytes, max_len: usize) {
        const MAX_ARGC: usize = 32;
        const MAX_STRING: usize = 128;
        let mut kept: Vec<Bytes> = Vec::new();
        for (i, arg) in args.iter().enumerate() {
            if i == MAX_ARGC - 1 && args.len() > MAX_ARGC {
                kept.push(Bytes::from(format!(
                    "... ({} more arguments)",
                    args.len() - MAX_ARGC + 1
                )));
                break;
            }
            if arg.len() > MAX_STRING {
                let mut cut = arg[..MAX_STRING].to_vec();
                cut.extend_from_slice(
                    format!("... ({} more bytes)", arg.len() - MAX_STRING).as_bytes(),
                );
                kept.push(cut.into());
            } else {
                kept.push(arg.clone());
            }
        }
        self.entries.push_front(SlowLogEntry {
            id: self.next_id,
            time: now_ms() / 1000,
            micros,
            args: kept,
            peer,
            name,
        });
        self.next_id += 1;
        self.entries.truncate(max_len);
    }
}

/// Clients in MONITOR mode; `active` lets the hot path skip the lock when there are none.
#[derive(Default)]
pub struct Monitors {
    active: AtomicBool,
    clients: Mutex<Vec<Arc<ClientHandle>>>,
}

impl Monitors {
    pub fn add(&self, client: Arc<ClientHandle>) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.push(client);
        self.active.store(true, Ordering::Release);
    }

    pub fn remove(&self, id: u64) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.retain(|c| c.id != id);
        self.active.store(!clients.is_empty(), Ordering::Release);
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Sends `+<time> [<db> <peer>] "arg" ...` to every monitor.
    pub fn feed(&self, db: usize, peer: &str, args: &[Bytes]) {
        let us = now_us();
        let mut line = format!(
            "+{}.{:06} [{} {}]",
            us / 1_000_000,
            us % 1_000_000,
            db,
            peer
        );
        for arg in args {
            line.push(' ');
            line.push_str(&repr(arg));
        }
        line.push_str("\r\n");
        let line = Bytes::from(line);
        for client in self
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            client.mailbox.push(line.clone());
        }
        crate::client::note_handoff();
    }
}

/// What holds clients back: CLIENT PAUSE, and the write pause of a FAILOVER in progress.
/// Either may end without ending the other, as Redis's pause purposes.
pub struct Pause {
    /// When the pause of either kind ends (Unix ms; `u64::MAX` while a failover holds
    /// writes): shared with the keyspace (`Notifier::pause_until`), which holds back
    /// deletions while it is ahead.
    until_ms: Arc<AtomicU64>,
    /// CLIENT PAUSE's end, and whether it holds writes only.
    client_until_ms: AtomicU64,
    write_only: AtomicBool,
    failover: AtomicBool,
    pub resumed: Notify,
    /// Clients whose command waits for the pause to end (counted in `blocked_clients`).
    pub postponed: AtomicUsize,
}

/// A client held by a pause, from `Pause::postpone` until dropped.
pub struct Postponed<'a> {
    pause: &'a Pause,
    handle: &'a ClientHandle,
}

impl Drop for Postponed<'_> {
    fn drop(&mut self) {
        self.pause.postponed.fetch_sub(1, Ordering::Relaxed);
        self.handle.set_flag(FLAG_BLOCKED, false);
    }
}

/// How often a write held by a failover looks again whether it may run.
const FAILOVER_RECHECK_MS: u64 = 100;

impl Pause {
    fn new(until_ms: Arc<AtomicU64>) -> Pause {
        Pause {
            until_ms,
            client_until_ms: AtomicU64::new(0),
            write_only: AtomicBool::new(false),
            failover: AtomicBool::new(false),
            resumed: Notify::new(),
            postponed: AtomicUsize::new(0),
        }
    }

    fn publish(&self) {
        let until = if self.failover.load(Ordering::Relaxed) {
            u64::MAX
        } else {
            self.client_until_ms.load(Ordering::Relaxed)
        };
        self.until_ms.store(until, Ordering::Relaxed);
    }

    /// CLIENT PAUSE until `until_ms`.
    pub fn start(&self, until_ms: u64, write_only: bool) {
        // A new pause never shortens a running one, as in Redis.
        if until_ms > self.client_until_ms.load(Ordering::Relaxed)
            || !crate::util::deadline_ahead(&self.client_until_ms)
        {
            self.client_until_ms.store(until_ms, Ordering::Relaxed);
        }
        self.write_only.store(write_only, Ordering::Relaxed);
        self.publish();
    }

    /// Counts `handle` as held by the pause (INFO's `blocked_clients`, CLIENT LIST's `b`)
    /// while the result lives.
    pub fn postpone<'a>(&'a self, handle: &'a ClientHandle) -> Postponed<'a> {
        self.postponed.fetch_add(1, Ordering::Relaxed);
        handle.set_flag(FLAG_BLOCKED, true);
        Postponed {
            pause: self,
            handle,
        }
    }

    /// CLIENT UNPAUSE.
    pub fn stop(&self) {
        self.client_until_ms.store(0, Ordering::Relaxed);
        self.publish();
        self.resumed.notify_waiters();
    }

    /// Holds writes while a FAILOVER waits for its replica, or lets them go.
    pub fn hold_writes_for_failover(&self, on: bool) {
        self.failover.store(on, Ordering::Relaxed);
        self.publish();
        if !on {
            self.resumed.notify_waiters();
        }
    }

    pub fn is_paused(&self) -> bool {
        crate::util::deadline_ahead(&self.until_ms)
    }

    /// How long a command with these properties must still wait, in milliseconds.
    pub fn wait_for(&self, is_write: bool) -> Option<u64> {
        if self.until_ms.load(Ordering::Relaxed) == 0 {
            return None;
        }
        if is_write && self.failover.load(Ordering::Relaxed) {
            return Some(FAILOVER_RECHECK_MS);
        }
        let until = self.client_until_ms.load(Ordering::Relaxed);
        let now = now_ms();
        if until <= now || (self.write_only.load(Ordering::Relaxed) && !is_write) {
            return None;
        }
        Some(until - now)
    }
}

impl Server {
    pub fn new(config: Config) -> Server {
        let databases = config.int(config::DATABASES) as usize;
        let store = Store::new(databases);
        let pause = Pause::new(store.notifier.pause_until.clone());
        crate::util::clock::calibrate();
        let mut rng = crate::util::Rng::new();
        let run_id = (0..5)
            .map(|_| format!("{:08x}", rng.next_u64() as u32))
            .collect();
        let commands = CommandTable::new();
        let acl = Acl::new(&commands);
        let server = Server {
            config,
            store,
            commands,
            acl,
            clients: ClientRegistry::default(),
            stats: Stats::default(),
            slowlog: Mutex::default(),
            monitors: Monitors::default(),
            pause,
            loading: Default::default(),
            started: Instant::now(),
            run_id,
            active_expire: AtomicBool::new(true),
            cron_paused: AtomicBool::new(false),
            reply_buffer_resizing: AtomicBool::new(true),
            lastsave: AtomicU64::new(now_ms() / 1000),
            snapshots: Snapshots::default(),
            listen_port: AtomicU64::new(0),
            normal_output_limits: OutputLimits::default(),
            replication: Default::default(),
            tls: Default::default(),
            ports: Default::default(),
            scripts: Default::default(),
            eviction_unfinished: Notify::new(),
        };
        server.apply_cached_settings();
        server.apply_oom_score();
        server
    }

    /// The users at start: `requirepass`, then the `user` lines of the configuration, then
    /// the ACL file (Redis's `ACLLoadUsersAtStartup`).
    pub fn load_users(&self) -> Result<(), String> {
        let password = self.config.text(config::REQUIREPASS);
        self.acl
            .set_default_password(password.as_bytes(), &self.commands);
        let users = self
            .config
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.acl.load_at_start(
            &users,
            &self.config.text(config::ACLFILE),
            self.config.text(config::ACL_PUBSUB_DEFAULT) == "allchannels",
            &self.commands,
        )
    }

    /// Builds the TLS settings again from the configuration (at start, and after CONFIG SET
    /// of a `tls-*` setting). Nothing changes when TLS is off or the settings are wrong.
    pub fn reload_tls(&self) -> Result<(), String> {
        if self.config.int(config::TLS_PORT) == 0 {
            return Ok(());
        }
        let acceptor = tls::acceptor(&self.config)?;
        *self.tls.write().unwrap_or_else(|e| e.into_inner()) = Some(acceptor);
        Ok(())
    }

    /// Sets the process's OOM-killer score as `oom-score-adj` says (see `util::oom_score`).
    pub fn apply_oom_score(&self) {
        let mode = self.config.text(config::OOM_SCORE_ADJ);
        let values = self.config.text(config::OOM_SCORE_ADJ_VALUES);
        let replica = self.replication.is_replica();
        if let Err(e) = crate::util::oom_score::apply(&mode, &values, replica) {
            tracing::warn!("Unable to set oom_score_adj: {e}");
        }
    }

    /// Copies settings that hot paths read without parsing into where they are read.
    pub fn apply_cached_settings(&self) {
        let events = self.config.text(config::NOTIFY_KEYSPACE_EVENTS);
        if let Some(flags) = crate::store::notify::parse_event_flags(&events) {
            self.store.notifier.set_events(flags);
        }
        let limits = self.config.text(config::CLIENT_OUTPUT_BUFFER_LIMIT);
        let pubsub = config::output_buffer_limits(&limits, "pubsub");
        self.store.notifier.pubsub.limits.set(pubsub);
        let normal = config::output_buffer_limits(&limits, "normal");
        self.normal_output_limits.set(normal);
        let [replica_hard, _, _] = config::output_buffer_limits(&limits, "slave");
        let backlog_size = self.config.int(config::REPL_BACKLOG_SIZE) as usize;
        self.store
            .notifier
            .repl
            .configure(backlog_size, replica_hard);
        self.clients.set_memory_limit(self.client_memory_limit());
        let max_keys = self.config.int(config::TRACKING_TABLE_MAX_KEYS) as u64;
        self.store.notifier.tracking.set_max_keys(max_keys);
        let policy = Policy::parse(&self.config.text(config::MAXMEMORY_POLICY));
        self.store.evictor.set_policy(policy);
        self.store.notifier.clock.configure(
            policy.is_lfu(),
            self.config.int(config::LFU_LOG_FACTOR) as u32,
            self.config.int(config::LFU_DECAY_TIME) as u32,
        );
    }

    /// `maxmemory-clients` in bytes (0: no client eviction): a percentage is of `maxmemory`,
    /// and Redis never lets it go under 128 KB, so that a bad setting cannot cut everyone off.
    fn client_memory_limit(&self) -> usize {
        let setting = self.config.int(config::MAXMEMORY_CLIENTS);
        let limit = if setting < 0 {
            (self.config.int(config::MAXMEMORY) as i128 * -setting as i128 / 100) as usize
        } else {
            setting as usize
        };
        match limit {
            0 => 0,
            limit => limit.max(128 * 1024),
        }
    }

    /// Evicts keys while `maxmemory` is exceeded, within the time `maxmemory-eviction-tenacity`
    /// allows: before each command and when `maxmemory` is lowered.
    pub fn evict(&self) -> Outcome {
        let maxmemory = self.config.int(config::MAXMEMORY);
        if maxmemory <= 0 || crate::alloc::allocated() <= maxmemory as usize {
            return Outcome::Within;
        }
        let limits = Limits {
            maxmemory: maxmemory as usize + self.not_counted_for_eviction(),
            samples: self.config.int(config::MAXMEMORY_SAMPLES) as usize,
            time_limit_us: Limits::time_limit_us(
                self.config.int(config::MAXMEMORY_EVICTION_TENACITY),
            ),
            lazy: self.config.bool(config::LAZYFREE_LAZY_EVICTION),
        };
        let outcome = self.store.evict(&limits);
        if outcome == Outcome::Running {
            self.eviction_unfinished.notify_one();
        }
        outcome
    }

    /// Memory eviction leaves out (INFO's `mem_not_counted_for_evict`), so that what evictions
    /// send does not call for more of them: the AOF buffer, as in Redis, and output waiting
    /// for clients (keyspace events, invalidations, unsent replies) up to the 16 KB reply
    /// buffer each connection has, where Redis writes it into a buffer allocated already.
    pub fn not_counted_for_eviction(&self) -> usize {
        self.store.notifier.aof.buffered() + self.clients.pending_output(connection::READ_CHUNK)
    }

    /// Whether `pending` bytes of replies break the normal clients' hard output buffer limit.
    pub fn over_output_limit(&self, pending: usize) -> bool {
        let [hard, _, _] = self.normal_output_limits.get();
        let hard = hard as usize;
        hard > 0 && pending > hard
    }

    /// How many replies of at least `min_bytes` each fit under the normal clients' output
    /// limit. Commands that repeat elements a client asked for (HRANDFIELD key -1000000000)
    /// stop there: the client is closed for passing the limit anyway.
    pub fn reply_items_cap(&self, min_bytes: usize) -> u64 {
        match self.normal_output_limits.get()[0] as usize {
            0 => u64::MAX,
            hard => (hard / min_bytes + 1) as u64,
        }
    }
}
