//! Replication in Redis's own protocol, so that Oxidis takes part in a set-up of Redis nodes
//! and Redis Sentinel: the master side (`master`: replicas attach with PSYNC and are fed the
//! stream `backlog` keeps) and the replica side (`replica`: the link to a master).

pub mod backlog;
pub mod master;

use std::fmt::Write;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::client::ClientHandle;
use crate::config;
use crate::server::Server;
use crate::util::now_ms;

/// A replica as its master sees it.
pub struct Replica {
    pub handle: Arc<ClientHandle>,
    pub ip: String,
    /// The port it serves clients on (REPLCONF listening-port).
    pub port: u16,
    pub state: AtomicU8,
    /// The stream offset it last acknowledged (REPLCONF ACK), and when (Unix ms).
    pub ack_offset: AtomicU64,
    pub ack_at_ms: AtomicU64,
}

/// Where a replica's synchronisation stands (Redis's `replstate` of a replica client).
pub const WAIT_BGSAVE: u8 = 0;
pub const SEND_BULK: u8 = 1;
pub const ONLINE: u8 = 2;

impl Replica {
    fn state_name(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            WAIT_BGSAVE => "wait_bgsave",
            SEND_BULK => "send_bulk",
            _ => "online",
        }
    }

    pub fn is_online(&self) -> bool {
        self.state.load(Ordering::Relaxed) == ONLINE
    }

    /// Seconds since its last acknowledgement.
    pub fn lag(&self) -> u64 {
        now_ms().saturating_sub(self.ack_at_ms.load(Ordering::Relaxed)) / 1000
    }
}

/// What a client that means to become a replica said before PSYNC (REPLCONF), and how it
/// asked to synchronise.
#[derive(Default)]
pub struct Hello {
    pub listening_port: u16,
    pub ip_address: Option<String>,
    /// `capa eof`: it reads a payload of unknown length (diskless sync).
    pub capa_eof: bool,
    /// `capa psync2`: it understands `+CONTINUE <replid>`.
    pub capa_psync2: bool,
    pub sync: Option<SyncRequest>,
}

/// PSYNC replid offset, or SYNC (no partial resynchronisation possible).
pub struct SyncRequest {
    pub replid: String,
    pub offset: i64,
    pub psync: bool,
}

#[derive(Default)]
pub struct Replication {
    replicas: Mutex<Vec<Arc<Replica>>>,
    /// When the last replica left (Unix ms), for `repl-backlog-ttl`.
    pub alone_since_ms: AtomicU64,
    /// Full and partial resynchronisations served and refused (INFO stats).
    pub sync_full: AtomicU64,
    pub sync_partial_ok: AtomicU64,
    pub sync_partial_err: AtomicU64,
    /// Woken by every replica's acknowledgement, for WAIT.
    pub acked: tokio::sync::Notify,
    /// Seconds the once-a-second cron has run (Redis's `replication_cron_loops`), and when
    /// it last did (Unix ms).
    cron_loops: AtomicU64,
    cron_at_ms: AtomicU64,
}

impl Replication {
    pub fn replicas(&self) -> MutexGuard<'_, Vec<Arc<Replica>>> {
        self.replicas.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, replica: Arc<Replica>) {
        self.replicas().push(replica);
    }

    pub fn remove(&self, replica: &Arc<Replica>) {
        let mut replicas = self.replicas();
        replicas.retain(|r| !Arc::ptr_eq(r, replica));
        if replicas.is_empty() {
            self.alone_since_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// Online replicas whose acknowledged offset reached `offset`.
    pub fn acknowledged(&self, offset: u64) -> usize {
        self.replicas()
            .iter()
            .filter(|r| r.is_online() && r.ack_offset.load(Ordering::Relaxed) >= offset)
            .count()
    }

    /// Online replicas that acknowledged within `max_lag` seconds (`min-replicas-max-lag`).
    pub fn good_replicas(&self, max_lag: u64) -> usize {
        self.replicas()
            .iter()
            .filter(|r| r.is_online() && r.lag() <= max_lag)
            .count()
    }
}

/// Redis's `replicationCron`, run by the server's cron and acting once a second: a PING
/// into the stream every `repl-ping-replica-period` seconds while replicas are attached, so
/// that they can tell a quiet master from a lost link; the backlog freed `repl-backlog-ttl`
/// seconds after the last replica left.
pub fn cron(server: &Server) {
    let replication = &server.replication;
    let now = now_ms();
    if now.saturating_sub(replication.cron_at_ms.load(Ordering::Relaxed)) < 1000 {
        return;
    }
    replication.cron_at_ms.store(now, Ordering::Relaxed);
    let loops = replication.cron_loops.fetch_add(1, Ordering::Relaxed);
    let backlog = &server.store.notifier.repl;
    let attached = !replication.replicas().is_empty();
    let period = server.config.int(config::REPL_PING_REPLICA_PERIOD).max(1) as u64;
    if attached && loops.is_multiple_of(period) && !server.pause.is_paused() {
        let _gate = server.store.enter(false);
        backlog.feed(None, &[b"PING"]);
    }
    let ttl = server.config.int(config::REPL_BACKLOG_TTL) as u64;
    let alone_for = now.saturating_sub(replication.alone_since_ms.load(Ordering::Relaxed));
    if !attached && backlog.is_on() && ttl > 0 && alone_for > ttl * 1000 {
        backlog.lock().restart_history();
        backlog.stop();
        tracing::info!("Replication backlog freed after {ttl} seconds without connected replicas.");
    }
}

/// INFO's `# Replication` section, field for field as Redis writes it.
pub fn info(server: &Server, w: &mut String) {
    let replicas = server.replication.replicas();
    let _ = write!(
        w,
        "# Replication\r\nrole:master\r\nconnected_slaves:{}\r\n",
        replicas.len()
    );
    for (i, replica) in replicas.iter().enumerate() {
        let _ = write!(
            w,
            "slave{i}:ip={},port={},state={},offset={},lag={}\r\n",
            replica.ip,
            replica.port,
            replica.state_name(),
            replica.ack_offset.load(Ordering::Relaxed),
            replica.lag()
        );
    }
    drop(replicas);
    let backlog = &server.store.notifier.repl;
    let on = backlog.is_on();
    let inner = backlog.lock();
    let _ = write!(
        w,
        "master_failover_state:no-failover\r\nmaster_replid:{}\r\nmaster_replid2:{}\r\n\
         master_repl_offset:{}\r\nsecond_repl_offset:{}\r\nrepl_backlog_active:{}\r\n\
         repl_backlog_size:{}\r\nrepl_backlog_first_byte_offset:{}\r\nrepl_backlog_histlen:{}\r\n",
        inner.replid,
        inner.replid2,
        inner.offset,
        inner.second_offset,
        on as u8,
        inner.size(),
        if on { inner.first_byte_offset() } else { 0 },
        inner.histlen(),
    );
}
