//! Per-client state. `Client` is owned by the connection task and read and changed by
//! commands; `ClientHandle` is the part other clients see (CLIENT LIST, CLIENT KILL, MONITOR),
//! kept in the server's registry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::blocking::BlockRequest;
use crate::commands::CommandTable;
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
    pub user: String,
    pub reply_mode: ReplyMode,
    /// Set by QUIT (and on protocol errors): write pending replies, then disconnect.
    pub close_after_reply: bool,
    pub handle: Arc<ClientHandle>,
    /// Blocking commands answer "nothing" at once instead of waiting (inside EXEC).
    pub deny_blocking: bool,
    /// Set by a blocking command that found nothing: what to wait for.
    pub wants_block: Option<BlockRequest>,
    /// While a blocked client is being served: the key that got data. Blocking commands then
    /// look at that key only, as Redis serves from the key that became ready.
    pub ready_key: Option<Bytes>,
    /// The end of a wait this client is in, once registered.
    pub blocked: Option<Blocked>,
    /// Commands queued since MULTI.
    pub multi: Option<Multi>,
    pub watch: Watch,
}

/// A registered wait: how the connection learns it ended, and its deadline (0: none).
pub struct Blocked {
    pub wake: tokio::sync::oneshot::Receiver<crate::blocking::Wake>,
    pub deadline_ms: u64,
}

/// A transaction being queued.
#[derive(Default)]
pub struct Multi {
    pub queued: Vec<Vec<Bytes>>,
    /// A command was refused while queuing: EXEC fails with EXECABORT.
    pub aborted: bool,
}

/// The keys this client WATCHes, and the flag the keyspace raises when one changes.
#[derive(Default)]
pub struct Watch {
    /// Database, key, and whether the key was already expired when watched.
    pub keys: Vec<(usize, Bytes, bool)>,
    pub dirty: Arc<AtomicBool>,
}

impl Client {
    pub fn new(handle: Arc<ClientHandle>, authenticated: bool) -> Client {
        Client {
            id: handle.id,
            db: 0,
            protocol: Protocol::Resp2,
            authenticated,
            user: "default".into(),
            reply_mode: ReplyMode::On,
            close_after_reply: false,
            handle,
            deny_blocking: false,
            wants_block: None,
            ready_key: None,
            blocked: None,
            multi: None,
            watch: Watch::default(),
        }
    }
}

/// Client flags shown in CLIENT LIST.
pub const FLAG_MONITOR: u32 = 1 << 0;
pub const FLAG_NO_EVICT: u32 = 1 << 1;
pub const FLAG_NO_TOUCH: u32 = 1 << 2;
pub const FLAG_CLOSE_ASAP: u32 = 1 << 3;

pub const NO_COMMAND: usize = usize::MAX;

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
    pub name: Mutex<Option<Bytes>>,
    pub lib_name: Mutex<Option<Bytes>>,
    pub lib_ver: Mutex<Option<Bytes>>,
    pub query_buffer: AtomicUsize,
    pub query_buffer_free: AtomicUsize,
    pub output_buffer: AtomicUsize,
    /// Set when another client kills this one; the connection task then closes.
    pub killed: AtomicBool,
    /// Messages pushed to this client by others (MONITOR lines, later pub/sub messages). An
    /// empty message only wakes the connection task, to notice `killed`.
    pub push: mpsc::UnboundedSender<Bytes>,
}

impl ClientHandle {
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        let _ = self.push.send(Bytes::new());
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
    pub fn describe(&self, commands: &CommandTable) -> String {
        let now = now_ms();
        let text = |m: &Mutex<Option<Bytes>>| {
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let mut flags = String::new();
        if self.has_flag(FLAG_MONITOR) {
            flags.push('O');
        }
        if self.has_flag(FLAG_CLOSE_ASAP) {
            flags.push('A');
        }
        if self.has_flag(FLAG_NO_EVICT) {
            flags.push('e');
        }
        if self.has_flag(FLAG_NO_TOUCH) {
            flags.push('T');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let qbuf = self.query_buffer.load(Ordering::Relaxed);
        let omem = self.output_buffer.load(Ordering::Relaxed);
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub=0 psub=0 ssub=0 multi=-1 \
             qbuf={} qbuf-free={} argv-mem=0 multi-mem=0 rbs={} rbp=0 obl=0 oll=0 omem={} tot-mem={} events=r \
             cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            text(&self.name),
            (now.saturating_sub(self.created_ms)) / 1000,
            (now.saturating_sub(self.last_interaction_ms.load(Ordering::Relaxed))) / 1000,
            flags,
            self.db.load(Ordering::Relaxed),
            qbuf,
            self.query_buffer_free.load(Ordering::Relaxed),
            qbuf + self.query_buffer_free.load(Ordering::Relaxed),
            omem,
            qbuf + omem + 1024,
            commands.name_of(self.last_command.load(Ordering::Relaxed)),
            self.resp.load(Ordering::Relaxed),
            text(&self.lib_name),
            text(&self.lib_ver),
        )
    }
}

/// Every connected client, by id.
#[derive(Default)]
pub struct ClientRegistry {
    clients: Mutex<HashMap<u64, Arc<ClientHandle>>>,
    next_id: AtomicU64,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
}

impl ClientRegistry {
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn add(&self, handle: Arc<ClientHandle>) {
        self.total_connections.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(handle.id, handle);
    }

    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every client, ordered by id as Redis lists them.
    pub fn snapshot(&self) -> Vec<Arc<ClientHandle>> {
        let mut all: Vec<_> = self.lock().values().cloned().collect();
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
