//! Per-client state. `Client` is owned by the connection task and read and changed by
//! commands; `ClientHandle` is the part other clients see (CLIENT LIST, CLIENT KILL, MONITOR),
//! kept in the server's registry.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::acl::{Acl, User};
use crate::blocking::BlockRequest;
use crate::commands::CommandTable;
use crate::mailbox::Mailbox;
use crate::protocol::Protocol;
use crate::util::now_ms;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    On,
    Off,
    /// Drop the reply of the next command only.
    SkipNext,
    Skipping,
}

pub struct Client {
    pub id: u64,
    pub db: usize,
    pub protocol: Protocol,
    pub authenticated: bool,
    /// The user as of `acl_generation`; see `commands::acl::follow_user_changes`.
    pub user: Arc<User>,
    /// `INTERNAL` for the server's own clients, which do not follow ACL changes.
    pub acl_generation: u64,
    pub reply_mode: ReplyMode,
    /// Set by QUIT (and on protocol errors): write pending replies, then disconnect.
    pub close_after_reply: bool,
    pub handle: Arc<ClientHandle>,
    /// Blocking commands answer "nothing" at once instead of waiting (inside EXEC).
    pub deny_blocking: bool,
    /// Set by a blocking command that found nothing: what to wait for.
    pub wants_block: Option<Box<BlockRequest>>,
    /// While a blocked client is being served: the key that got data. Blocking commands then
    /// look at that key only, as Redis serves from the key that became ready.
    pub ready_key: Option<Box<Bytes>>,
    /// The end of a wait this client is in, once registered.
    pub blocked: Option<Blocked>,
    /// Commands queued since MULTI.
    pub multi: Option<Box<Multi>>,
    /// On the heap from the first WATCH on, with its flag: most clients never watch.
    pub watch: Option<Box<Watch>>,
    pub subscriptions: Subscriptions,
    /// What the AOF logs for the running command instead of its arguments: none, one or
    /// several commands.
    pub log_as: Option<Box<Vec<Vec<Bytes>>>>,
    /// Inside EXEC or a script: what it propagated so far (see `commands::propagate`).
    pub exec_logged: Option<TxLog>,
    /// The command table's index of this client's last top-level command (see
    /// `CommandTable::resolve_recent`), `NO_COMMAND` before the first.
    pub recent_command: usize,
    /// Scripts this client calls are left to its connection, which can let other tasks run
    /// while a long one does (see `crate::scripting::slices`); set for connections.
    pub defer_scripts: bool,
    /// CLIENT TRACKING's mode while on (the shared state is in `crate::tracking`).
    pub tracking: Option<crate::tracking::Mode>,
    /// CLIENT CACHING YES (OPTIN) or NO (OPTOUT), for the next command only.
    pub tracking_caching: bool,
    /// What this client's BCAST prefixes take in the tracking table.
    pub tracking_memory: usize,
    /// The request just checked is a script command for the connection to run (see
    /// `commands::execute_deferred`).
    pub script_deferred: bool,
    /// Whether the writes this client runs reach the AOF (a script's `redis.set_repl`).
    pub propagate: bool,
    /// The client a script runs its commands as.
    pub in_script: bool,
    /// What a would-be replica said with REPLCONF, and its PSYNC once sent: the connection
    /// then serves it as a replica (see `crate::replication::master`).
    pub replication: Option<Box<crate::replication::Hello>>,
    /// The replication stream's offset after this client's last write (Redis's `woff`):
    /// what WAIT waits for replicas to acknowledge.
    pub woff: u64,
    /// WAIT numreplicas, its timeout (ms, 0: none) and offset, left to the connection.
    pub wait_acks: Option<(usize, u64, u64)>,
    /// This server's master, applying its stream: obeyed on a read-only replica, and its
    /// writes go on to our replicas as the master sent them, not as we log them.
    pub is_master: bool,
}

/// What this client is subscribed to, mirrored in the pub/sub hub. On the heap, from the
/// first subscription on: most connections never subscribe, and the sets would take 120 bytes
/// in every connection's task.
#[derive(Default)]
pub struct Subscriptions(Option<Box<SubscriptionSets>>);

#[derive(Default)]
pub struct SubscriptionSets {
    pub channels: HashSet<Bytes>,
    /// Patterns in subscription order, as Redis keeps them.
    pub patterns: Vec<Bytes>,
    pub shard_channels: HashSet<Bytes>,
}

impl Subscriptions {
    pub fn sets(&self) -> Option<&SubscriptionSets> {
        self.0.as_deref()
    }

    pub fn existing_sets_mut(&mut self) -> Option<&mut SubscriptionSets> {
        self.0.as_deref_mut()
    }

    pub fn sets_mut(&mut self) -> &mut SubscriptionSets {
        self.0.get_or_insert_default()
    }

    /// SUBSCRIBE and PSUBSCRIBE replies count channels and patterns together.
    pub fn count(&self) -> usize {
        self.sets()
            .map_or(0, |s| s.channels.len() + s.patterns.len())
    }

    pub fn shard_count(&self) -> usize {
        self.sets().map_or(0, |s| s.shard_channels.len())
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0 && self.shard_count() == 0
    }
}

/// A registered wait: how the connection learns it ended, and its deadline (0: none).
pub struct Blocked {
    pub wake: tokio::sync::oneshot::Receiver<crate::blocking::Wake>,
    pub deadline_ms: u64,
}

/// A transaction being queued.
#[derive(Default)]
pub struct Multi {
    pub queued: Vec<Queued>,
    /// What the queued commands hold, for CLIENT LIST's `multi-mem`.
    pub memory: usize,
    /// A command was refused while queuing: EXEC fails with EXECABORT.
    pub aborted: bool,
}

/// A command queued by MULTI.
pub struct Queued {
    /// The table index of its top-level command, found when it was queued: EXEC resolves it
    /// again (the ACL rules may have changed) with one name comparison instead of a lookup.
    pub command: usize,
    pub args: Vec<Bytes>,
}

impl Queued {
    /// Bytes the queued command holds: its arguments and their handles.
    pub fn memory(&self) -> usize {
        std::mem::size_of::<Queued>()
            + self
                .args
                .iter()
                .map(|a| a.len() + std::mem::size_of::<Bytes>())
                .sum::<usize>()
    }
}

/// The keys this client WATCHes, and the flag the keyspace raises when one changes.
#[derive(Default)]
pub struct Watch {
    /// Database, key, and whether the key was already expired when watched.
    pub keys: Vec<(usize, Bytes, bool)>,
    pub dirty: Arc<AtomicBool>,
}

impl Client {
    /// A new connection, logged in as the default user; authenticated if that needs no
    /// password.
    pub fn new(handle: Arc<ClientHandle>, acl: &Acl) -> Client {
        let user = acl.default_user();
        handle.set_user(&user);
        let mut client = Client::new_unchecked(handle, user);
        client.acl_generation = acl.generation();
        client
    }

    fn new_unchecked(handle: Arc<ClientHandle>, user: Arc<User>) -> Client {
        Client {
            id: handle.id,
            db: 0,
            protocol: Protocol::Resp2,
            authenticated: user.nopass() && user.enabled(),
            user,
            acl_generation: 0,
            reply_mode: ReplyMode::On,
            close_after_reply: false,
            handle,
            deny_blocking: false,
            wants_block: None,
            ready_key: None,
            blocked: None,
            multi: None,
            watch: None,
            subscriptions: Subscriptions::default(),
            log_as: None,
            exec_logged: None,
            recent_command: NO_COMMAND,
            defer_scripts: false,
            tracking: None,
            tracking_caching: false,
            tracking_memory: 0,
            script_deferred: false,
            propagate: true,
            in_script: false,
            replication: None,
            woff: 0,
            wait_acks: None,
            is_master: false,
        }
    }
}

/// What a watched key costs its client beyond the key: its place in the client's list and in
/// the keyspace's table of watchers.
const WATCHED_KEY_MEMORY: usize = std::mem::size_of::<(usize, Bytes, bool)>() + 48;
/// What a subscription costs its client: its place in the client's set and in the hub's list.
const SUBSCRIPTION_MEMORY: usize = std::mem::size_of::<Bytes>() * 2;

impl Client {
    /// What this client's own state holds beyond its buffers, for `tot-mem` and client
    /// eviction: the MULTI queue, watched keys, subscriptions and tracking prefixes. Keys and
    /// channel names are left out, as Redis leaves them: they are shared with the keyspace
    /// and the hub.
    pub fn state_memory(&self) -> usize {
        let subscriptions = self.subscriptions.count() + self.subscriptions.shard_count();
        self.multi.as_ref().map_or(0, |m| m.memory)
            + self
                .watch
                .as_ref()
                .map_or(0, |w| w.keys.len() * WATCHED_KEY_MEMORY)
            + subscriptions * SUBSCRIPTION_MEMORY
            + self.tracking_memory
    }

    /// The `acl_generation` of internal clients.
    pub const INTERNAL: u64 = u64::MAX;

    /// A client the server runs commands for itself (AOF replay, serving a blocked client
    /// again): every command, key and channel is allowed, as for Redis's user-less clients.
    pub fn internal(handle: Arc<ClientHandle>, acl: &Acl) -> Client {
        let mut client = Client::new_unchecked(handle, acl.unrestricted());
        client.acl_generation = Client::INTERNAL;
        client
    }
}

/// What a transaction (EXEC, a script) has propagated so far (see `commands::propagate`).
pub enum TxLog {
    Empty,
    /// The first command, held back with its database: alone, it goes out unwrapped.
    First(usize, Vec<Bytes>),
    /// MULTI went out: EXEC closes it.
    Wrapped,
}

/// Client flags shown in CLIENT LIST.
pub const FLAG_MONITOR: u32 = 1 << 0;
pub const FLAG_NO_EVICT: u32 = 1 << 1;
pub const FLAG_NO_TOUCH: u32 = 1 << 2;
pub const FLAG_CLOSE_ASAP: u32 = 1 << 3;
pub const FLAG_BLOCKED: u32 = 1 << 4;
pub const FLAG_MULTI: u32 = 1 << 5;
pub const FLAG_TRACKING: u32 = 1 << 6;
pub const FLAG_TRACKING_BCAST: u32 = 1 << 7;
pub const FLAG_TRACKING_BROKEN_REDIRECT: u32 = 1 << 8;
/// A replica's connection to this server, and this server's connection to its master.
pub const FLAG_REPLICA: u32 = 1 << 9;
pub const FLAG_MASTER: u32 = 1 << 10;

pub const NO_COMMAND: usize = usize::MAX;

thread_local! {
    /// Messages and wakeups this thread handed to other clients' connection tasks.
    static HANDOFFS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts a message (pub/sub, MONITOR) or a served blocked command handed to another
/// client's connection task.
pub fn note_handoff() {
    HANDOFFS.set(HANDOFFS.get() + 1);
}

/// How many handoffs this thread has made (see `note_handoff`).
pub fn handoffs() -> u64 {
    HANDOFFS.get()
}

/// A class's `client-output-buffer-limit`: hard bytes, soft bytes, soft seconds (0 disables
/// each).
#[derive(Default)]
pub struct OutputLimits([AtomicU64; 3]);

impl OutputLimits {
    pub fn set(&self, limits: [u64; 3]) {
        for (slot, value) in self.0.iter().zip(limits) {
            slot.store(value, Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> [u64; 3] {
        [0, 1, 2].map(|i| self.0[i].load(Ordering::Relaxed))
    }
}

/// Clients closed for exceeding an output buffer limit, for INFO.
pub static OUTPUT_LIMIT_DISCONNECTIONS: AtomicU64 = AtomicU64::new(0);

pub struct ClientHandle {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub fd: i32,
    pub created_ms: u64,
    pub last_interaction_ms: AtomicU64,
    pub db: AtomicUsize,
    pub resp: AtomicU8,
    pub flags: AtomicU32,
    /// `Command::id` of the last command run, for CLIENT LIST (`NO_COMMAND` before the first).
    pub last_command: AtomicUsize,
    /// On the heap once one is set: most clients set none.
    names: Mutex<Option<Box<ClientNames>>>,
    pub query_buffer: AtomicUsize,
    pub query_buffer_free: AtomicUsize,
    /// Output waiting for this client: messages in `mailbox`, and replies the socket has not
    /// taken yet (CLIENT LIST's `omem`).
    pub output_buffer: AtomicUsize,
    /// Set when another client kills this one; the connection task then closes.
    pub killed: AtomicBool,
    /// Messages pushed to this client by others (pub/sub messages, invalidations, MONITOR
    /// lines; pub/sub and invalidations are counted in `output_buffer` until written). An empty message only wakes the connection task, to
    /// notice `killed`.
    pub mailbox: Mailbox,
    /// Wakes a connection stuck writing to a peer that does not read, when it is killed.
    pub kill_notify: Notify,
    /// When the output buffer went over the soft limit (Unix ms), 0 when under it.
    soft_limit_since_ms: AtomicU64,
    /// Channel, pattern and shard channel subscription counts, for CLIENT LIST.
    pub subscriptions: [AtomicU32; 3],
    /// The name and serial of the ACL user, for CLIENT LIST, CLIENT KILL USER and ACL changes.
    pub user_name: Mutex<Bytes>,
    pub user_serial: AtomicU64,
    /// Set by the cron for an idle client: give back the query and reply buffers (when empty),
    /// so that an idle connection holds no buffers.
    pub release_buffers: AtomicBool,
    /// Connected over the loopback interface or a Unix socket.
    pub local: AtomicBool,
    /// What the connection holds besides pending output: its buffers and its state (see
    /// `Client::state_memory`), as its task last saw them.
    pub memory: AtomicUsize,
    /// The parts of `memory` CLIENT LIST shows: the arguments of a request still arriving,
    /// and the MULTI queue.
    pub argv_memory: AtomicUsize,
    pub multi_memory: AtomicUsize,
    /// This client's part of `ClientsMemory::total`, while client eviction is on.
    counted: AtomicUsize,
    /// The registry's totals, once the client is registered.
    clients_memory: OnceLock<Arc<ClientsMemory>>,
}

/// What CLIENT SETNAME and CLIENT SETINFO set.
#[derive(Default, Clone)]
pub struct ClientNames {
    pub name: Option<Bytes>,
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
}

impl ClientHandle {
    pub fn names(&self) -> ClientNames {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.as_deref().cloned().unwrap_or_default()
    }

    pub fn edit_names(&self, edit: impl FnOnce(&mut ClientNames)) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        edit(names.get_or_insert_default());
    }

    pub fn new(id: u64, addr: String, laddr: String, fd: i32) -> ClientHandle {
        let now = now_ms();
        ClientHandle {
            id,
            addr,
            laddr,
            fd,
            created_ms: now,
            last_interaction_ms: AtomicU64::new(now),
            db: AtomicUsize::new(0),
            resp: AtomicU8::new(2),
            flags: AtomicU32::new(0),
            last_command: AtomicUsize::new(NO_COMMAND),
            names: Mutex::default(),
            query_buffer: AtomicUsize::new(0),
            query_buffer_free: AtomicUsize::new(0),
            output_buffer: AtomicUsize::new(0),
            killed: AtomicBool::new(false),
            mailbox: Mailbox::default(),
            kill_notify: Notify::new(),
            soft_limit_since_ms: AtomicU64::new(0),
            subscriptions: Default::default(),
            user_name: Mutex::new(Bytes::from_static(b"default")),
            user_serial: AtomicU64::new(0),
            release_buffers: AtomicBool::new(false),
            local: AtomicBool::new(false),
            memory: AtomicUsize::new(0),
            argv_memory: AtomicUsize::new(0),
            multi_memory: AtomicUsize::new(0),
            counted: AtomicUsize::new(0),
            clients_memory: OnceLock::new(),
        }
    }

    /// Returns false when the client was already killed.
    pub fn kill(&self) -> bool {
        if self.killed.swap(true, Ordering::Relaxed) {
            return false;
        }
        if let Some(shared) = self.clients_memory.get() {
            shared.replace(&self.counted, 0);
        }
        self.wake();
        self.kill_notify.notify_one();
        true
    }

    /// Makes the connection task look at its state (killed, ACL changes) without a message.
    pub fn wake(&self) {
        self.mailbox.push(Bytes::new());
    }

    pub fn set_user(&self, user: &User) {
        *self.user_name.lock().unwrap_or_else(|e| e.into_inner()) = user.name.clone();
        self.user_serial.store(user.serial, Ordering::Relaxed);
    }

    pub fn user_name(&self) -> Bytes {
        self.user_name
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Connected over the loopback interface or a Unix socket.
    pub fn is_local(&self) -> bool {
        self.local.load(Ordering::Relaxed)
    }

    /// In pub/sub mode: subscribed to a channel, pattern or shard channel.
    pub fn is_subscribed(&self) -> bool {
        self.subscriptions
            .iter()
            .any(|n| n.load(Ordering::Relaxed) > 0)
    }

    pub fn protocol(&self) -> Protocol {
        if self.resp.load(Ordering::Relaxed) == 3 {
            Protocol::Resp3
        } else {
            Protocol::Resp2
        }
    }

    /// Queues a message from another client, enforcing output buffer `limits` (hard bytes,
    /// soft bytes, soft seconds; 0 disables each).
    pub fn deliver(&self, message: Bytes, limits: [u64; 3]) {
        if self.killed.load(Ordering::Relaxed) {
            return;
        }
        let pending = (self
            .output_buffer
            .fetch_add(message.len(), Ordering::Relaxed)
            + message.len()) as u64;
        if self.breaks_limits(pending, limits) {
            self.close_for_limits();
            return;
        }
        self.mailbox.push(message);
        note_handoff();
        self.recount();
    }

    /// For the server cron: a client that stays over its soft limit with no new traffic is
    /// closed once its time is up. Returns whether this call closed it.
    pub fn check_output_limits(&self, limits: [u64; 3]) -> bool {
        let pending = self.output_buffer.load(Ordering::Relaxed) as u64;
        pending > 0
            && !self.killed.load(Ordering::Relaxed)
            && self.breaks_limits(pending, limits)
            && self.close_for_limits()
    }

    /// Redis's `checkClientOutputBufferLimits`: over the hard limit, or over the soft one for
    /// longer than allowed. Starts or clears the soft limit's timer.
    fn breaks_limits(&self, pending: u64, [hard, soft, soft_seconds]: [u64; 3]) -> bool {
        let over_soft = soft > 0 && pending >= soft;
        let soft_expired = over_soft && {
            let now = now_ms();
            match self.soft_limit_since_ms.load(Ordering::Relaxed) {
                0 => {
                    self.soft_limit_since_ms.store(now, Ordering::Relaxed);
                    false
                }
                since => now.saturating_sub(since) > soft_seconds * 1000,
            }
        };
        if !over_soft {
            self.soft_limit_since_ms.store(0, Ordering::Relaxed);
        }
        (hard > 0 && pending >= hard) || soft_expired
    }

    /// A publisher's thread and the cron can find the client over its limit at the same time:
    /// only the one that kills it counts and logs the close.
    fn close_for_limits(&self) -> bool {
        self.set_flag(FLAG_CLOSE_ASAP, true);
        if !self.kill() {
            return false;
        }
        OUTPUT_LIMIT_DISCONNECTIONS.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "Client id={} addr={} scheduled to be closed ASAP for overcoming of output buffer limits.",
            self.id,
            self.addr
        );
        true
    }

    /// The connection took `bytes` of output off `output_buffer`: written them to the socket,
    /// or moved pushed messages into its own buffer, which `memory` counts.
    pub fn delivered(&self, bytes: usize) {
        self.output_buffer.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// CLIENT LIST's `tot-mem`: buffers, pending output, and the client's own state.
    pub fn total_memory(&self) -> usize {
        self.memory.load(Ordering::Relaxed) + self.output_buffer.load(Ordering::Relaxed)
    }

    /// Brings this client's part of the clients' total up to date, while client eviction is
    /// on (the total is only read then; turning it on counts every client first). A killed
    /// client is no longer counted.
    pub fn recount(&self) {
        let Some(shared) = self.clients_memory.get() else {
            return;
        };
        if shared.limit() == 0 {
            return;
        }
        let now = if self.killed.load(Ordering::Relaxed) {
            0
        } else {
            self.total_memory()
        };
        shared.replace(&self.counted, now);
    }

    pub fn has_flag(&self, flag: u32) -> bool {
        self.flags.load(Ordering::Relaxed) & flag != 0
    }

    pub fn set_flag(&self, flag: u32, on: bool) {
        if on {
            self.flags.fetch_or(flag, Ordering::Relaxed);
        } else {
            self.flags.fetch_and(!flag, Ordering::Relaxed);
        }
    }

    /// One line of CLIENT LIST / CLIENT INFO, in Redis's field order.
    /// The client's type as CLIENT LIST TYPE and CLIENT KILL TYPE filter it (Redis's
    /// `getClientType`).
    pub fn kind(&self) -> &'static str {
        if self.has_flag(FLAG_MASTER) {
            "master"
        } else if self.has_flag(FLAG_REPLICA) {
            "replica"
        } else if self.is_subscribed() {
            "pubsub"
        } else {
            "normal"
        }
    }

    pub fn describe(&self, commands: &CommandTable) -> String {
        let now = now_ms();
        let names = self.names();
        let text = |b: &Option<Bytes>| {
            b.as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let mut flags = String::new();
        if self.has_flag(FLAG_MONITOR) {
            flags.push('O');
        }
        if self.has_flag(FLAG_REPLICA) {
            flags.push('S');
        }
        if self.has_flag(FLAG_MASTER) {
            flags.push('M');
        }
        if self.has_flag(FLAG_CLOSE_ASAP) {
            flags.push('A');
        }
        if self.has_flag(FLAG_BLOCKED) {
            flags.push('b');
        }
        for (flag, letter) in [
            (FLAG_TRACKING, 't'),
            (FLAG_TRACKING_BROKEN_REDIRECT, 'R'),
            (FLAG_TRACKING_BCAST, 'B'),
        ] {
            if self.has_flag(flag) {
                flags.push(letter);
            }
        }
        if self.has_flag(FLAG_NO_EVICT) {
            flags.push('e');
        }
        if self.has_flag(FLAG_NO_TOUCH) {
            flags.push('T');
        }
        if self.is_subscribed() {
            flags.push('P');
        }
        if self.has_flag(FLAG_MULTI) {
            flags.push('x');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let qbuf = self.query_buffer.load(Ordering::Relaxed);
        let omem = self.output_buffer.load(Ordering::Relaxed);
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} multi=-1 \
             qbuf={} qbuf-free={} argv-mem={} multi-mem={} rbs={} rbp=0 obl=0 oll=0 omem={} tot-mem={} events=r \
             cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            text(&names.name),
            (now.saturating_sub(self.created_ms)) / 1000,
            (now.saturating_sub(self.last_interaction_ms.load(Ordering::Relaxed))) / 1000,
            flags,
            self.db.load(Ordering::Relaxed),
            self.subscriptions[0].load(Ordering::Relaxed),
            self.subscriptions[1].load(Ordering::Relaxed),
            self.subscriptions[2].load(Ordering::Relaxed),
            qbuf,
            self.query_buffer_free.load(Ordering::Relaxed),
            self.argv_memory.load(Ordering::Relaxed),
            self.multi_memory.load(Ordering::Relaxed),
            qbuf + self.query_buffer_free.load(Ordering::Relaxed),
            omem,
            self.total_memory(),
            commands.name_of(self.last_command.load(Ordering::Relaxed)),
            String::from_utf8_lossy(&self.user_name()),
            self.resp.load(Ordering::Relaxed),
            text(&names.lib_name),
            text(&names.lib_ver),
        )
    }
}

/// The memory of every client (their `tot-mem`) and `maxmemory-clients` in bytes, for
/// client eviction (Redis 7's `evictClients`).
#[derive(Default)]
pub struct ClientsMemory {
    /// The sum of the clients' `counted` parts; kept while `limit` is set.
    total: AtomicUsize,
    /// 0 when client eviction is off.
    limit: AtomicUsize,
    /// The total when the last eviction found no client it could close, so that each
    /// command does not look again until something changes.
    stuck_at: AtomicUsize,
    /// INFO's `evicted_clients`.
    pub evicted: AtomicU64,
}

impl ClientsMemory {
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Whether the clients hold more than `maxmemory-clients` allows and an eviction may help.
    pub fn over_limit(&self) -> bool {
        let limit = self.limit();
        if limit == 0 {
            return false;
        }
        let total = self.total.load(Ordering::Relaxed);
        total > limit && total != self.stuck_at.load(Ordering::Relaxed)
    }

    /// Sets a client's part of the total to `now`.
    fn replace(&self, counted: &AtomicUsize, now: usize) {
        let before = counted.swap(now, Ordering::Relaxed);
        if now > before {
            self.total.fetch_add(now - before, Ordering::Relaxed);
        } else if before > now {
            self.total.fetch_sub(before - now, Ordering::Relaxed);
        }
    }
}

/// Every connected client, by id.
#[derive(Default)]
pub struct ClientRegistry {
    clients: Mutex<HashMap<u64, Arc<ClientHandle>>>,
    next_id: AtomicU64,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub memory: Arc<ClientsMemory>,
}

impl ClientRegistry {
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn add(&self, handle: Arc<ClientHandle>) {
        self.total_connections.fetch_add(1, Ordering::Relaxed);
        let _ = handle.clients_memory.set(self.memory.clone());
        self.lock().insert(handle.id, handle);
    }

    pub fn remove(&self, id: u64) {
        if let Some(handle) = self.lock().remove(&id) {
            self.memory.replace(&handle.counted, 0);
        }
    }

    /// Sets `maxmemory-clients` in bytes (0: off), counting every client afresh.
    pub fn set_memory_limit(&self, limit: usize) {
        let memory = &self.memory;
        memory.limit.store(limit, Ordering::Relaxed);
        memory.stuck_at.store(0, Ordering::Relaxed);
        for client in self.lock().values() {
            client.recount();
        }
    }

    /// A client's NO-EVICT flag changed: the next check looks at every client again.
    pub fn eviction_changed(&self) {
        self.memory.stuck_at.store(0, Ordering::Relaxed);
    }

    /// Closes clients, largest first, until the clients' memory is within
    /// `maxmemory-clients`. Clients with NO-EVICT and MONITOR clients are never closed;
    /// Redis closes those it can, then logs that it could not get under the limit.
    pub fn evict(&self) {
        let memory = &self.memory;
        if !memory.over_limit() {
            return;
        }
        let mut candidates: Vec<(usize, Arc<ClientHandle>)> = self
            .lock()
            .values()
            .filter(|c| !c.killed.load(Ordering::Relaxed) && !c.has_flag(FLAG_NO_EVICT))
            .filter(|c| !c.has_flag(FLAG_MONITOR))
            .map(|c| (c.counted.load(Ordering::Relaxed), c.clone()))
            .collect();
        candidates.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
        let limit = memory.limit();
        for (size, client) in candidates {
            if memory.total.load(Ordering::Relaxed) <= limit {
                return;
            }
            if client.kill() {
                memory.evicted.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    "Evicting client: id={} addr={} tot-mem={size}",
                    client.id,
                    client.addr
                );
            }
        }
        let total = memory.total.load(Ordering::Relaxed);
        if total > limit {
            memory.stuck_at.store(total, Ordering::Relaxed);
            tracing::warn!("Over client maxmemory after evicting all evictable clients");
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The memory of every client (INFO's `mem_clients_normal`).
    pub fn total_memory(&self) -> usize {
        self.lock().values().map(|c| c.total_memory()).sum()
    }

    /// Output waiting for clients (see `ClientHandle::output_buffer`), up to `per_client`
    /// bytes each.
    pub fn pending_output(&self, per_client: usize) -> usize {
        self.lock()
            .values()
            .map(|c| c.output_buffer.load(Ordering::Relaxed).min(per_client))
            .sum()
    }

    /// Every client, ordered by id as Redis lists them. Killed clients are gone already,
    /// even if their connection has not closed yet.
    pub fn snapshot(&self) -> Vec<Arc<ClientHandle>> {
        let mut all: Vec<_> = self
            .lock()
            .values()
            .filter(|c| !c.killed.load(Ordering::Relaxed))
            .cloned()
            .collect();
        all.sort_by_key(|c| c.id);
        all
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientHandle>> {
        self.lock().get(&id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ClientHandle>>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn a_client_over_its_limit_is_closed_once_when_threads_race() {
        const THREADS: usize = 4;
        for _ in 0..200 {
            let handle = Arc::new(ClientHandle::new(1, "a".into(), "b".into(), -1));
            handle.output_buffer.store(2048, Ordering::Relaxed);
            let barrier = Arc::new(Barrier::new(THREADS));
            let closers: Vec<_> = (0..THREADS)
                .map(|_| {
                    let (handle, barrier) = (handle.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        handle.check_output_limits([1024, 0, 0])
                    })
                })
                .collect();
            let closed = closers
                .into_iter()
                .filter_map(|t| t.join().unwrap().then_some(()))
                .count();
            assert_eq!(closed, 1);
            assert!(handle.has_flag(FLAG_CLOSE_ASAP));
        }
    }
}
