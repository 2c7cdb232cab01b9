//! Replication in Redis's own protocol, so that Oxidis takes part in a set-up of Redis nodes
//! and Redis Sentinel: the master side (`master`: replicas attach with PSYNC and are fed the
//! stream `backlog` keeps) and the replica side (`replica`: the link to a master).

pub mod backlog;
pub mod failover;
pub mod master;
pub mod replica;
mod streamed_load;

use std::collections::HashSet;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
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

/// The master REPLICAOF names.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

/// Where the link to the master stands (Redis's `repl_state`, in the steps INFO tells).
pub const LINK_DOWN: u8 = 0;
pub const LINK_CONNECTING: u8 = 1;
pub const LINK_HANDSHAKE: u8 = 2;
pub const LINK_SYNCING: u8 = 3;
pub const LINK_UP: u8 = 4;

/// PSYNC replid offset, or SYNC (no partial resynchronisation possible).
pub struct SyncRequest {
    pub replid: String,
    pub offset: i64,
    pub psync: bool,
}

#[derive(Default)]
pub struct Replication {
    replicas: Mutex<Vec<Arc<Replica>>>,
    /// When the cron last saw replicas attached, or a reason to keep the backlog (Unix ms),
    /// for `repl-backlog-ttl`.
    alone_since_ms: AtomicU64,
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
    /// The replica side: the master REPLICAOF names, woken on a change for the link task.
    target: Mutex<Option<Target>>,
    replica: AtomicBool,
    pub changed: tokio::sync::Notify,
    own_volatile: Mutex<HashSet<(usize, Bytes)>>,
    link: AtomicU8,
    /// When the link went down, and when the master was last heard from (Unix ms).
    link_down_since_ms: AtomicU64,
    master_io_at_ms: AtomicU64,
    /// A full sync's payload: its size (0 while unknown) and the bytes read so far.
    transfer_size: AtomicU64,
    transfer_read: AtomicU64,
    /// The database the master's stream had selected when the link broke.
    master_db: AtomicUsize,
    /// Bytes of the master's stream read but not applied yet (`slave_read_repl_offset` is
    /// that much ahead of `slave_repl_offset`).
    read_ahead: AtomicU64,
    failover: Mutex<failover::Failover>,
    /// Children making a full sync's RDB (they count as a BGSAVE in progress, as Redis's).
    sync_children: Mutex<Vec<libc::pid_t>>,
}

impl Replication {
    pub fn replicas(&self) -> MutexGuard<'_, Vec<Arc<Replica>>> {
        self.replicas.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn sync_children(&self) -> MutexGuard<'_, Vec<libc::pid_t>> {
        self.sync_children.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a child making a full sync's RDB still runs.
    pub fn sync_child_running(&self) -> bool {
        self.sync_children()
            .iter()
            .any(|&pid| !crate::persist::child::Child::has_exited(pid))
    }

    pub fn add(&self, replica: Arc<Replica>) {
        self.replicas().push(replica);
    }

    pub fn remove(&self, replica: &Arc<Replica>) {
        self.replicas().retain(|r| !Arc::ptr_eq(r, replica));
    }

    /// Takes up the history a dump kept at start (Redis's `loadDataFromDisk`): a replica
    /// continues as it was, to ask its master for the rest; a master keeps it as its second
    /// ID, so that its replicas can continue from it.
    pub fn restore(&self, server: &Server, saved: Option<crate::persist::rdb::ReplInfo>) {
        let Some(saved) = saved else {
            return;
        };
        let backlog = &server.store.notifier.repl;
        let replica = !server.config.text(config::REPLICAOF).is_empty();
        backlog.start(server.config.int(config::REPL_BACKLOG_SIZE) as usize);
        let mut inner = backlog.lock();
        if replica {
            inner.adopt(&saved.replid, saved.offset);
            self.master_db.store(saved.stream_db, Ordering::Relaxed);
        } else {
            inner.replid2 = saved.replid;
            inner.second_offset = saved.offset as i64 + 1;
            inner.offset += saved.offset;
        }
    }

    pub fn target(&self) -> Option<Target> {
        self.target
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Read before every command: an atomic, not the target's lock.
    pub fn is_replica(&self) -> bool {
        self.replica.load(Ordering::Relaxed)
    }

    /// A key with a time to live that a client wrote on a writable replica: the replica
    /// expires it itself, as its master knows nothing of it (Redis's
    /// `rememberSlaveKeyWithExpire`).
    pub fn remember_own_volatile(&self, db: usize, key: Bytes) {
        self.own_volatile
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((db, key));
    }

    pub fn own_volatile_count(&self) -> usize {
        self.own_volatile
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// REPLICAOF: follows `target` from now on (None: becomes a master). Returns false when
    /// that is already the master.
    pub fn set_target(&self, server: &Server, target: Option<Target>) -> bool {
        let mut current = self.target.lock().unwrap_or_else(|e| e.into_inner());
        if *current == target {
            return false;
        }
        let was_replica = current.is_some();
        // CONFIG REWRITE keeps the role over a restart, as Sentinel relies on.
        let setting: Vec<String> = target
            .iter()
            .flat_map(|t| [t.host.clone(), t.port.to_string()])
            .collect();
        let _ = server.config.set("replicaof", &setting);
        *current = target;
        let now_replica = current.is_some();
        drop(current);
        // A replica keeps keys past their expiry until its master deletes them.
        let notifier = &server.store.notifier;
        notifier.replica.store(now_replica, Ordering::Relaxed);
        self.replica.store(now_replica, Ordering::Relaxed);
        self.own_volatile
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        if was_replica && !now_replica {
            // A history of our own from here, our master's kept as the second, so that
            // our replicas continue with us (Redis's shiftReplicationId); they are told by
            // reconnecting.
            notifier.repl.lock().shift_replid();
            notifier.repl.reselect();
            self.disconnect_replicas();
        }
        if now_replica {
            self.link_down_since_ms.store(0, Ordering::Relaxed);
            if !was_replica {
                // Data they wait for would come from the master now, not from a client.
                notifier
                    .blocking
                    .finish_all(|| crate::blocking::Wake::RoleChange);
            }
        }
        self.link.store(LINK_DOWN, Ordering::Relaxed);
        self.changed.notify_waiters();
        server.apply_oom_score();
        true
    }

    fn set_link(&self, state: u8) {
        self.link.store(state, Ordering::Relaxed);
    }

    /// The link's state as ROLE names it.
    pub fn link_state_name(&self) -> &'static str {
        match self.link.load(Ordering::Relaxed) {
            LINK_DOWN => "connect",
            LINK_CONNECTING => "connecting",
            LINK_HANDSHAKE => "handshake",
            LINK_SYNCING => "sync",
            _ => "connected",
        }
    }

    pub fn link_up(&self) -> bool {
        self.link.load(Ordering::Relaxed) == LINK_UP
    }

    fn link_down(&self) {
        if self.link.swap(LINK_DOWN, Ordering::Relaxed) == LINK_UP {
            self.link_down_since_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    fn master_io(&self) {
        self.master_io_at_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn master_io_ms(&self) -> u64 {
        self.master_io_at_ms.load(Ordering::Relaxed)
    }

    fn transfer_started(&self, size: u64) {
        self.transfer_size.store(size, Ordering::Relaxed);
        self.transfer_read.store(0, Ordering::Relaxed);
        self.master_io();
    }

    fn transfer_read(&self, bytes: u64) {
        self.transfer_read.fetch_add(bytes, Ordering::Relaxed);
        self.master_io();
    }

    fn transfer_read_bytes(&self) -> u64 {
        self.transfer_read.load(Ordering::Relaxed)
    }

    /// What PSYNC asks for: our history and the next byte of it, or `? -1` with none.
    fn psync_position(&self, server: &Server) -> (String, String) {
        let backlog = &server.store.notifier.repl;
        if !backlog.is_on() {
            return ("?".into(), "-1".into());
        }
        let inner = backlog.lock();
        (inner.replid.clone(), (inner.offset + 1).to_string())
    }

    /// Closes every replica's connection (our history or data changed under them).
    pub fn disconnect_replicas(&self) {
        for replica in self.replicas().iter() {
            replica.handle.kill();
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

/// Where the replication history stands, for a dump to keep (None without a backlog: no
/// history worth continuing).
pub fn save_info(server: &Server) -> Option<crate::persist::rdb::ReplInfo> {
    let backlog = &server.store.notifier.repl;
    if !backlog.is_on() {
        return None;
    }
    let inner = backlog.lock();
    let stream_db = if server.replication.is_replica() {
        server.replication.master_db.load(Ordering::Relaxed)
    } else {
        inner.selected().unwrap_or(0)
    };
    Some(crate::persist::rdb::ReplInfo {
        stream_db,
        replid: inner.replid.clone(),
        offset: inner.offset,
    })
}

/// Starts the link task, following the `replicaof` setting from the start.
pub fn start(server: &Arc<Server>) {
    tokio::spawn(replica::run(server.clone()));
    let setting = server.config.text(config::REPLICAOF);
    if let Some((host, port)) = setting.split_once(' ')
        && let Ok(port) = port.parse()
        && !setting.eq_ignore_ascii_case("no one")
    {
        let target = Target {
            host: host.to_string(),
            port,
        };
        server.replication.set_target(server, Some(target));
    }
}

/// Redis's `replicationCron`, run by the server's cron and acting once a second: a PING
/// into the stream every `repl-ping-replica-period` seconds while replicas are attached, so
/// that they can tell a quiet master from a lost link; the backlog freed `repl-backlog-ttl`
/// seconds after the last replica left.
pub fn cron(server: &Server) {
    failover::cron(server);
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
    expire_own_volatile(server);
    let top_master = !replication.is_replica();
    if attached && top_master && loops.is_multiple_of(period) && !server.pause.is_paused() {
        let _gate = server.store.enter(false);
        backlog.feed(None, &[b"PING"]);
    }
    // A replica keeps its backlog: its replicas, or its master's other replicas after a
    // failover, may want to continue from it.
    let ttl = server.config.int(config::REPL_BACKLOG_TTL) as u64;
    let alone_since = replication.alone_since_ms.load(Ordering::Relaxed);
    if attached || replication.is_replica() || alone_since == 0 {
        replication.alone_since_ms.store(now, Ordering::Relaxed);
    } else if backlog.is_on() && ttl > 0 && now - alone_since > ttl * 1000 {
        backlog.lock().restart_history();
        backlog.stop();
        tracing::info!("Replication backlog freed after {ttl} seconds without connected replicas.");
    }
}

/// Deletes the keys a writable replica's clients wrote with a time to live once it passes
/// (Redis's `expireSlaveKeys`), and forgets those gone or made persistent.
fn expire_own_volatile(server: &Server) {
    let replication = &server.replication;
    let mut keys = replication
        .own_volatile
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if keys.is_empty() {
        return;
    }
    let _gate = server.store.enter(false);
    keys.retain(|(db, key)| server.store.db(*db).lock(key).expire_if_due(key));
}

/// INFO's `# Replication` section, field for field as Redis writes it.
pub fn info(server: &Server, w: &mut String) {
    let replication = &server.replication;
    let target = replication.target();
    let _ = write!(
        w,
        "# Replication\r\nrole:{}\r\n",
        if target.is_some() { "slave" } else { "master" }
    );
    let backlog = &server.store.notifier.repl;
    if let Some(target) = target {
        let offset = backlog.lock().offset;
        let link = replication.link.load(Ordering::Relaxed);
        let now = now_ms();
        let seconds_since = |ms: u64| (now.saturating_sub(ms) / 1000) as i64;
        let _ = write!(
            w,
            "master_host:{}\r\nmaster_port:{}\r\nmaster_link_status:{}\r\n\
             master_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:{}\r\n\
             slave_read_repl_offset:{}\r\nslave_repl_offset:{offset}\r\n",
            target.host,
            target.port,
            if link == LINK_UP { "up" } else { "down" },
            if link == LINK_UP {
                seconds_since(replication.master_io_ms())
            } else {
                -1
            },
            (link == LINK_SYNCING) as u8,
            offset + replication.read_ahead.load(Ordering::Relaxed),
        );
        if link == LINK_SYNCING {
            let size = replication.transfer_size.load(Ordering::Relaxed);
            let read = replication.transfer_read_bytes();
            let perc = if size > 0 {
                read as f64 / size as f64 * 100.0
            } else {
                0.0
            };
            let _ = write!(
                w,
                "master_sync_total_bytes:{}\r\nmaster_sync_read_bytes:{read}\r\n\
                 master_sync_left_bytes:{}\r\nmaster_sync_perc:{perc:.2}\r\n\
                 master_sync_last_io_seconds_ago:{}\r\n",
                size as i64,
                size as i64 - read as i64,
                seconds_since(replication.master_io_ms()),
            );
        }
        if link != LINK_UP {
            let since = replication.link_down_since_ms.load(Ordering::Relaxed);
            let _ = write!(
                w,
                "master_link_down_since_seconds:{}\r\n",
                if since == 0 { -1 } else { seconds_since(since) }
            );
        }
        let _ = write!(
            w,
            "slave_priority:{}\r\nslave_read_only:{}\r\nreplica_announced:{}\r\n",
            server.config.int(config::REPLICA_PRIORITY),
            server.config.bool(config::REPLICA_READ_ONLY) as u8,
            server.config.bool(config::REPLICA_ANNOUNCED) as u8,
        );
    }
    let replicas = replication.replicas();
    let _ = write!(w, "connected_slaves:{}\r\n", replicas.len());
    let min_replicas = server.config.int(config::MIN_REPLICAS_TO_WRITE);
    let max_lag = server.config.int(config::MIN_REPLICAS_MAX_LAG);
    if min_replicas > 0 && max_lag > 0 {
        let good = replicas
            .iter()
            .filter(|r| r.is_online() && r.lag() <= max_lag as u64)
            .count();
        let _ = write!(w, "min_slaves_good_slaves:{good}\r\n");
    }
    for (i, replica) in replicas.iter().enumerate() {
        let _ = write!(
            w,
            "slave{i}:ip={},port={},state={},offset={},lag={}\r\n",
            replica.ip,
            replica.port,
            replica.state_name(),
            replica.ack_offset.load(Ordering::Relaxed),
            if replica.is_online() {
                replica.lag()
            } else {
                0
            }
        );
    }
    drop(replicas);
    let failover_state = replication.failover_state().name();
    let on = backlog.is_on();
    let inner = backlog.lock();
    let _ = write!(
        w,
        "master_failover_state:{}\r\nmaster_replid:{}\r\nmaster_replid2:{}\r\n\
         master_repl_offset:{}\r\nsecond_repl_offset:{}\r\nrepl_backlog_active:{}\r\n\
         repl_backlog_size:{}\r\nrepl_backlog_first_byte_offset:{}\r\nrepl_backlog_histlen:{}\r\n",
        failover_state,
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
