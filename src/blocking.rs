//! Clients blocked on keys (BLPOP, BLMOVE, BLMPOP ...), first come first served per key.
//!
//! How a wait works, and why no element is lost or handed out twice:
//! - Blocking commands run with the keyspace gate held exclusively, so "every key is empty"
//!   and "register as waiter" happen with no other command in between.
//! - While anyone waits, every write command also takes the gate exclusively (see
//!   `Store::enter`). A write that adds data calls the modify hook, which marks the key ready
//!   here; before that write releases the gate, the server re-runs each waiter's command on the
//!   waiter's behalf, in arrival order, and sends the reply through the waiter's channel. So a
//!   pushed element goes straight to the oldest waiter and nobody can take it in between.
//! - A waiter leaves the registry exactly once: served (under the exclusive gate), or by
//!   timeout, CLIENT UNBLOCK or disconnect, which remove it while holding the gate shared and
//!   so can never overlap a serve.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::client::{ClientHandle, FLAG_BLOCKED};
use crate::protocol::Protocol;

/// What a blocking command asks for when it finds nothing: the keys to wait on and when to
/// give up (Unix milliseconds, 0 for never).
pub struct BlockRequest {
    pub keys: Vec<Bytes>,
    pub deadline_ms: u64,
    /// The command to run when woken, if not the one called (XREAD's `$` becomes the ID it
    /// stood for).
    pub args: Option<Vec<Bytes>>,
    /// Serving this waiter takes nothing from the ones after it (stream reads), so one that
    /// finds nothing yet does not end the serving of the key.
    pub keep_serving: bool,
}

/// How a wait ended for the waiting connection.
pub enum Wake {
    /// Served: the reply the command produced.
    Reply(Vec<u8>),
    /// CLIENT UNBLOCK ... TIMEOUT: reply as on timeout.
    Timeout,
    /// CLIENT UNBLOCK ... ERROR.
    Error,
    /// The server became a replica: an error, then the connection closes (Redis's
    /// `disconnectAllBlockedClients`), as what the client waited for may never come.
    RoleChange,
}

/// A blocked client: everything needed to run its command again on its behalf.
pub struct Waiter {
    pub db: usize,
    pub keys: Vec<Bytes>,
    pub args: Vec<Bytes>,
    pub protocol: Protocol,
    pub handle: Arc<ClientHandle>,
    keep_serving: bool,
    wake: oneshot::Sender<Wake>,
}

type DbKey = (usize, Bytes);

#[derive(Default)]
struct Registry {
    waiters: HashMap<u64, Waiter>,
    by_key: HashMap<DbKey, VecDeque<u64>>,
    ready: VecDeque<DbKey>,
    ready_set: HashSet<DbKey>,
}

#[derive(Default)]
pub struct Blocking {
    /// Number of blocked clients; zero means the modify hook has nothing to do here.
    waiting: AtomicUsize,
    has_ready: AtomicBool,
    registry: Mutex<Registry>,
}

impl Blocking {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    pub fn has_ready(&self) -> bool {
        self.has_ready.load(Ordering::Relaxed)
    }

    /// Registers a waiter; the receiver resolves when the wait ends by serve or unblock.
    pub fn block(
        &self,
        id: u64,
        db: usize,
        request: BlockRequest,
        args: Vec<Bytes>,
        protocol: Protocol,
        handle: Arc<ClientHandle>,
    ) -> oneshot::Receiver<Wake> {
        let BlockRequest {
            keys,
            args: rewritten,
            keep_serving,
            ..
        } = request;
        let args = rewritten.unwrap_or(args);
        let (wake, receiver) = oneshot::channel();
        handle.set_flag(FLAG_BLOCKED, true);
        let mut registry = self.lock();
        for key in &keys {
            let queue = registry.by_key.entry((db, key.clone())).or_default();
            // BLPOP k k 0 waits once on k.
            if !queue.contains(&id) {
                queue.push_back(id);
            }
        }
        registry.waiters.insert(
            id,
            Waiter {
                db,
                keys,
                args,
                protocol,
                handle,
                keep_serving,
                wake,
            },
        );
        self.waiting.fetch_add(1, Ordering::Relaxed);
        receiver
    }

    /// The modify hook's part: a key changed, so its waiters may be servable.
    pub fn signal(&self, db: usize, key: &[u8]) {
        if self.waiting() == 0 {
            return;
        }
        let mut registry = self.lock();
        let db_key = (db, Bytes::copy_from_slice(key));
        if registry.by_key.contains_key(&db_key) && registry.ready_set.insert(db_key.clone()) {
            registry.ready.push_back(db_key);
            self.has_ready.store(true, Ordering::Relaxed);
        }
    }

    /// Marks every waited-on key of `db` ready, after SWAPDB or FLUSHDB replaced its contents.
    pub fn signal_db(&self, db: usize) {
        if self.waiting() == 0 {
            return;
        }
        let keys: Vec<Bytes> = self
            .lock()
            .by_key
            .keys()
            .filter(|(d, _)| *d == db)
            .map(|(_, k)| k.clone())
            .collect();
        for key in keys {
            self.signal(db, &key);
        }
    }

    /// The next ready key, if any.
    pub fn next_ready(&self) -> Option<DbKey> {
        let mut registry = self.lock();
        let next = registry.ready.pop_front();
        match &next {
            Some(key) => {
                registry.ready_set.remove(key);
            }
            None => self.has_ready.store(false, Ordering::Relaxed),
        }
        next
    }

    /// The oldest waiter on `key` after `after` (or the oldest of all): its id, and a copy of
    /// what running its command needs.
    pub fn next_waiter(&self, key: &DbKey, after: Option<u64>) -> Option<(u64, WaiterView)> {
        let registry = self.lock();
        let queue = registry.by_key.get(key)?;
        let id = match after {
            None => *queue.front()?,
            Some(after) => *queue.iter().skip_while(|&&w| w != after).nth(1)?,
        };
        let w = registry.waiters.get(&id)?;
        Some((
            id,
            WaiterView {
                db: w.db,
                args: w.args.clone(),
                protocol: w.protocol,
                handle: w.handle.clone(),
                keep_serving: w.keep_serving,
            },
        ))
    }

    /// Ends a wait with `wake`. Returns false if the client was not (or no longer) waiting.
    pub fn finish(&self, id: u64, wake: Wake) -> bool {
        let mut registry = self.lock();
        let Some(waiter) = registry.waiters.remove(&id) else {
            return false;
        };
        for key in &waiter.keys {
            let db_key = (waiter.db, key.clone());
            if let Some(queue) = registry.by_key.get_mut(&db_key) {
                queue.retain(|&w| w != id);
                if queue.is_empty() {
                    registry.by_key.remove(&db_key);
                }
            }
        }
        drop(registry);
        waiter.handle.set_flag(FLAG_BLOCKED, false);
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        // The receiver is gone only if the connection task ended; nothing to deliver then.
        let _ = waiter.wake.send(wake);
        crate::client::note_handoff();
        true
    }

    /// Ends every wait with `wake`.
    pub fn finish_all(&self, wake: impl Fn() -> Wake) {
        let ids: Vec<u64> = self.lock().waiters.keys().copied().collect();
        for id in ids {
            self.finish(id, wake());
        }
    }

    pub fn is_blocked(&self, id: u64) -> bool {
        self.waiting() > 0 && self.lock().waiters.contains_key(&id)
    }
}

/// What the serve loop needs of a waiter.
pub struct WaiterView {
    pub db: usize,
    pub args: Vec<Bytes>,
    pub protocol: Protocol,
    pub handle: Arc<ClientHandle>,
    pub keep_serving: bool,
}
