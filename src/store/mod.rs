//! The keyspace: databases of sharded dictionaries, values, and the modify hook.

pub mod clock;
pub mod dict;
pub mod evict;
pub mod hash;
pub mod hll;
mod id_map;
mod key;
pub mod keyspace;
pub mod lazyfree;
pub mod list;
pub mod listpack;
pub mod notify;
pub mod packed;
mod score_tree;
pub mod set;
pub mod stream;
mod thin_bytes;
pub mod value;
pub mod watch;
pub mod zset;

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use hash::{Hash, HashLimits};
pub use id_map::IdMap;
pub use keyspace::{Db, Entry, Locked, PREFETCH_BATCH};
pub use list::{End, Fill, List};
pub use notify::{Class, Notifier};
pub use set::Set;
pub use value::{Kind, Str, Value};
pub use zset::{Zset, ZsetLimits};

pub struct Store {
    dbs: Box<[Db]>,
    /// Taken shared by every command that touches a single key, exclusively by commands that
    /// touch several keys or whole databases (and later by EXEC and scripts): exclusive holders
    /// see and leave the keyspace as one atomic step. Never held across an await.
    gate: RwLock<()>,
    pub notifier: Arc<Notifier>,
    pub evictor: evict::Evictor,
    pub lazyfree: lazyfree::LazyFree,
}

/// Proof that the gate is held; released on drop.
pub enum Gate<'a> {
    Shared {
        _guard: RwLockReadGuard<'a, ()>,
        _held: HeldMarker,
    },
    Exclusive {
        _guard: RwLockWriteGuard<'a, ()>,
        _held: HeldMarker,
    },
    /// This thread holds the gate already (DEBUG LOADAOF replaying commands under its own
    /// exclusive gate); the outer hold covers the inner one.
    Nested,
}

thread_local! {
    static HELD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Takes away this thread's mark of holding the gate (a script holding it is set aside while
/// other tasks run on the thread, which must not think they hold it); `restore_held` puts
/// it back.
pub fn take_held() -> bool {
    HELD.replace(false)
}

pub fn restore_held(held: bool) {
    HELD.set(held);
}

/// Marks this thread as holding the gate until dropped.
pub struct HeldMarker;

impl HeldMarker {
    fn new() -> HeldMarker {
        HELD.set(true);
        HeldMarker
    }
}

impl Drop for HeldMarker {
    fn drop(&mut self) {
        HELD.set(false);
    }
}

impl Store {
    pub fn new(databases: usize) -> Store {
        let notifier = Arc::new(Notifier::default());
        Store {
            dbs: (0..databases)
                .map(|i| Db::new(i, notifier.clone()))
                .collect(),
            gate: RwLock::new(()),
            notifier,
            evictor: evict::Evictor::default(),
            lazyfree: lazyfree::LazyFree::default(),
        }
    }

    pub fn db(&self, index: usize) -> &Db {
        &self.dbs[index]
    }

    pub fn dbs(&self) -> &[Db] {
        &self.dbs
    }

    /// Drops every key of every database, before a dump or AOF is loaded again (DEBUG RELOAD,
    /// DEBUG LOADAOF); unlike FLUSHALL it tells no watcher and counts no change.
    pub fn empty(&self) {
        for db in self.dbs.iter() {
            drop(db.take_all());
        }
    }

    /// Takes the gate for a command. `write` commands run alone while any client is blocked on
    /// a key, so that data they add reaches the waiters before anyone else can see it (see
    /// `crate::blocking`). Waiters only register under the exclusive gate, so the count read
    /// under the shared gate cannot grow before it is released.
    ///
    /// With the append-only file on or replicas fed, writes also run alone, so the order they
    /// reach the log and the stream is the order they changed the data.
    pub fn enter_for(&self, exclusive: bool, write: bool) -> Gate<'_> {
        let waiting =
            || write && (self.notifier.blocking.waiting() > 0 || self.notifier.propagating());
        if exclusive || waiting() {
            return self.enter(true);
        }
        let gate = self.enter(false);
        if waiting() {
            drop(gate);
            return self.enter(true);
        }
        gate
    }

    pub fn enter(&self, exclusive: bool) -> Gate<'_> {
        if HELD.get() {
            return Gate::Nested;
        }
        if exclusive {
            Gate::Exclusive {
                _guard: self.gate.write().unwrap_or_else(|e| e.into_inner()),
                _held: HeldMarker::new(),
            }
        } else {
            Gate::Shared {
                _guard: self.gate.read().unwrap_or_else(|e| e.into_inner()),
                _held: HeldMarker::new(),
            }
        }
    }
}
