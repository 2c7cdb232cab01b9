//! The replication stream as a master keeps it: every command that changed data, in the
//! deterministic form the append-only file logs too (`crate::commands::propagate`), counted
//! in bytes since the replication ID began (`master_repl_offset`). The last
//! `repl-backlog-size` bytes stay for replicas that reconnect and ask to go on where they were
//! (PSYNC); bytes a connected replica has not been sent yet stay as long as it needs them,
//! as Redis 7 shares one replication buffer between its backlog and its replicas, up to the
//! replica output buffer's hard limit.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::protocol::encode_command;

#[derive(Default)]
pub struct Backlog {
    /// A backlog exists: commands are fed to it.
    on: AtomicBool,
    inner: Mutex<Inner>,
    /// Woken when bytes are fed, for the replicas' writers.
    fed: Notify,
}

pub struct Inner {
    /// The current replication ID, and the previous one with the last offset it covers
    /// (PSYNC2: a promoted replica goes on serving its old master's replicas).
    pub replid: String,
    pub replid2: String,
    pub second_offset: i64,
    /// Bytes of the stream ever fed under these IDs (`master_repl_offset`).
    pub offset: u64,
    /// The last bytes of the stream, up to `offset`.
    data: VecDeque<u8>,
    size: usize,
    /// The database the stream selected last; None sends a SELECT before the next command.
    selected: Option<usize>,
    /// Each attached replica's position: the bytes it was sent so far.
    readers: HashMap<u64, u64>,
    /// How far a reader may fall behind before it is dropped.
    reader_limit: u64,
}

impl Default for Inner {
    fn default() -> Inner {
        Inner {
            replid: new_replid(),
            replid2: "0".repeat(40),
            second_offset: -1,
            offset: 0,
            data: VecDeque::new(),
            size: 1 << 20,
            selected: None,
            readers: HashMap::new(),
            reader_limit: u64::MAX,
        }
    }
}

/// What a replica's writer finds at its position.
pub enum Read {
    Bytes(Vec<u8>),
    /// Nothing new yet.
    Nothing,
    /// The replica fell too far behind (or was detached): its bytes are gone.
    Lost,
}

/// A random 40-character hex ID, as Redis's `changeReplicationId`.
pub fn new_replid() -> String {
    let mut bytes = [0u8; 20];
    crate::util::random_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Inner {
    /// The offset of the oldest byte still kept, as Redis's `repl_backlog_first_byte_offset`
    /// (the first byte of the stream is offset 1).
    pub fn first_byte_offset(&self) -> u64 {
        self.offset - self.data.len() as u64 + 1
    }

    pub fn histlen(&self) -> usize {
        self.data.len()
    }

    /// The database the stream selected last.
    pub fn selected(&self) -> Option<usize> {
        self.selected
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether the bytes from `psync_offset` on (the first byte a replica is missing) are
    /// all here.
    fn covers(&self, psync_offset: u64) -> bool {
        psync_offset >= self.first_byte_offset() && psync_offset <= self.offset + 1
    }

    /// Keeps the backlog's size, and whatever attached replicas still need within their limit.
    fn trim(&mut self) {
        let limit = self.reader_limit;
        let offset = self.offset;
        self.readers.retain(|_, at| offset - *at <= limit);
        let needed = self
            .readers
            .values()
            .map(|at| (offset - at) as usize)
            .max()
            .unwrap_or(0);
        let keep = needed.max(self.size);
        if self.data.len() > keep {
            let excess = self.data.len() - keep;
            self.data.drain(..excess);
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        self.data.extend(bytes);
        self.offset += bytes.len() as u64;
    }

    /// A history of its own, forgetting the previous one (Redis's `changeReplicationId` with
    /// `clearReplicationId2`).
    pub fn restart_history(&mut self) {
        self.replid = new_replid();
        self.replid2 = "0".repeat(40);
        self.second_offset = -1;
    }

    /// A new history: new ID, the old one kept as the second (Redis's `shiftReplicationId`).
    pub fn shift_replid(&mut self) {
        self.replid2 = std::mem::replace(&mut self.replid, new_replid());
        self.second_offset = self.offset as i64 + 1;
    }

    /// Takes the master's history as its own after a full sync: its ID, the offset the RDB
    /// stands for, nothing kept from before.
    pub fn adopt(&mut self, replid: &str, offset: u64) {
        self.data.clear();
        self.replid = replid.to_string();
        self.replid2 = "0".repeat(40);
        self.second_offset = -1;
        self.offset = offset;
        self.selected = None;
    }
}

impl Backlog {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Creates the backlog (with the first replica, or on a replica for its own replicas).
    pub fn start(&self, size: usize) {
        let mut inner = self.lock();
        inner.size = size.max(16 * 1024);
        self.on.store(true, Ordering::Relaxed);
    }

    /// Frees the backlog (`repl-backlog-ttl` after the last replica left).
    pub fn stop(&self) {
        let mut inner = self.lock();
        self.on.store(false, Ordering::Relaxed);
        inner.data = VecDeque::new();
        inner.readers.clear();
    }

    pub fn configure(&self, size: usize, reader_limit: u64) {
        let mut inner = self.lock();
        inner.size = size.max(16 * 1024);
        inner.reader_limit = if reader_limit == 0 {
            u64::MAX
        } else {
            reader_limit
        };
        inner.trim();
    }

    /// Feeds one command run against database `db` (None: one that is not about data, as
    /// the PINGs a master sends its replicas).
    /// Returns the stream's offset after it (0 with no backlog).
    pub fn feed(&self, db: Option<usize>, args: &[&[u8]]) -> u64 {
        if !self.is_on() {
            return 0;
        }
        let mut buf = Vec::new();
        let offset = {
            let mut inner = self.lock();
            if let Some(db) = db
                && inner.selected != Some(db)
            {
                let db_text = itoa::Buffer::new().format(db).as_bytes().to_vec();
                encode_command(&mut buf, &[b"SELECT", &db_text]);
                inner.selected = Some(db);
            }
            encode_command(&mut buf, args);
            inner.append(&buf);
            inner.trim();
            inner.offset
        };
        self.fed.notify_waiters();
        offset
    }

    /// Feeds bytes as they came from this server's master (a replica passes its master's
    /// stream on unchanged, so that offsets agree along the chain).
    pub fn feed_raw(&self, bytes: &[u8]) {
        if !self.is_on() {
            return;
        }
        {
            let mut inner = self.lock();
            inner.append(bytes);
            inner.trim();
        }
        self.fed.notify_waiters();
    }

    /// Makes the next command select its database (a full sync starts a new stream).
    pub fn reselect(&self) {
        self.lock().selected = None;
    }

    /// PSYNC: attaches reader `id` from `psync_offset` (the first byte it lacks) when `replid`
    /// names this history, or the previous one up to where it ended, and every byte from
    /// there is still kept; returns the current ID to answer `+CONTINUE` with.
    pub fn continue_from(&self, id: u64, replid: &str, psync_offset: u64) -> Option<String> {
        if !self.is_on() {
            return None;
        }
        let mut inner = self.lock();
        let ours = replid == inner.replid
            || (replid == inner.replid2 && psync_offset as i64 <= inner.second_offset);
        if !ours || !inner.covers(psync_offset) {
            return None;
        }
        inner.readers.insert(id, psync_offset - 1);
        Some(inner.replid.clone())
    }

    /// Attaches a replica's writer at `at` bytes of the stream.
    pub fn attach(&self, id: u64, at: u64) {
        self.lock().readers.insert(id, at);
    }

    pub fn detach(&self, id: u64) {
        let mut inner = self.lock();
        inner.readers.remove(&id);
        inner.trim();
    }

    /// The bytes after reader `id`'s position, at most `max` of them, moving it past them.
    pub fn read(&self, id: u64, max: usize) -> Read {
        let mut inner = self.lock();
        let Some(&at) = inner.readers.get(&id) else {
            return Read::Lost;
        };
        if at == inner.offset {
            return Read::Nothing;
        }
        let first = inner.offset - inner.data.len() as u64;
        if at < first {
            inner.readers.remove(&id);
            return Read::Lost;
        }
        let start = (at - first) as usize;
        let end = inner.data.len().min(start + max);
        let (front, back) = inner.data.as_slices();
        let mut bytes = Vec::with_capacity(end - start);
        if start < front.len() {
            bytes.extend_from_slice(&front[start..end.min(front.len())]);
        }
        if end > front.len() {
            bytes.extend_from_slice(&back[start.saturating_sub(front.len())..end - front.len()]);
        }
        inner.readers.insert(id, at + bytes.len() as u64);
        inner.trim();
        Read::Bytes(bytes)
    }

    /// Waits until something is fed after `notified` was made; make it before reading.
    pub fn fed(&self) -> tokio::sync::futures::Notified<'_> {
        self.fed.notified()
    }
}
