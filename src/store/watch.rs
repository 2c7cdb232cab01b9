//! WATCHed keys: which clients watch which key, and the flag each raises when its key changes.
//! The modify hook calls `touch`; with nobody watching it costs one atomic load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

struct Watcher {
    client: u64,
    dirty: Arc<AtomicBool>,
    /// The key was already logically expired when WATCHed: its deletion is no change.
    expired: bool,
}

#[derive(Default)]
pub struct Watches {
    /// Number of (client, key) watches; zero means `touch` has nothing to do.
    count: AtomicUsize,
    keys: Mutex<HashMap<(usize, Bytes), Vec<Watcher>>>,
}

impl Watches {
    fn lock(&self) -> MutexGuard<'_, HashMap<(usize, Bytes), Vec<Watcher>>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a watch; returns false if this client already watches the key.
    pub fn watch(
        &self,
        db: usize,
        key: &Bytes,
        client: u64,
        dirty: &Arc<AtomicBool>,
        expired: bool,
    ) -> bool {
        let mut keys = self.lock();
        let watchers = keys.entry((db, key.clone())).or_default();
        if watchers.iter().any(|w| w.client == client) {
            return false;
        }
        watchers.push(Watcher {
            client,
            dirty: dirty.clone(),
            expired,
        });
        self.count.fetch_add(1, Ordering::Relaxed);
        true
    }

    pub fn unwatch(&self, client: u64, watched: &[(usize, Bytes)]) {
        if watched.is_empty() {
            return;
        }
        let mut keys = self.lock();
        for db_key in watched {
            if let Some(watchers) = keys.get_mut(db_key) {
                let before = watchers.len();
                watchers.retain(|w| w.client != client);
                self.count
                    .fetch_sub(before - watchers.len(), Ordering::Relaxed);
                if watchers.is_empty() {
                    keys.remove(db_key);
                }
            }
        }
    }

    /// A key changed. `deleted` tells whether the change removed it, which is no change for
    /// watchers that saw it already expired (Redis's `touchWatchedKey`).
    pub fn touch(&self, db: usize, key: &[u8], deleted: bool) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut keys = self.lock();
        let Some(watchers) = keys.get_mut(&(db, Bytes::copy_from_slice(key))) else {
            return;
        };
        for watcher in watchers {
            if watcher.expired {
                if deleted {
                    watcher.expired = false;
                }
                continue;
            }
            watcher.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// The keys of `db` someone watches, for FLUSHDB and SWAPDB to touch those that exist.
    pub fn watched_in(&self, db: usize) -> Vec<Bytes> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        self.lock()
            .keys()
            .filter(|(d, _)| *d == db)
            .map(|(_, k)| k.clone())
            .collect()
    }
}
