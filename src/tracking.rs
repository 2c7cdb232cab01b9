//! Client-side caching (CLIENT TRACKING): which clients may hold which keys, and the
//! invalidation messages they get when those keys change. Fed by the modify hook, as WATCH and
//! blocked clients are.
//!
//! In the default mode the server remembers, per key, the clients that read it; a change to
//! the key sends each of them one invalidation and forgets them (they read it again to track
//! it again). In BCAST mode a client names key prefixes instead, and gets every change to a
//! key under them, batched per command. Keys are names, not per database, as in Redis.
//! Messages go to the client itself as RESP3 pushes (`>2 invalidate [keys]`), or to the client
//! it redirects to: a RESP3 push there too, or, to a RESP2 client subscribed to
//! `__redis__:invalidate`, a pub/sub message.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;

use crate::client::{
    ClientHandle, FLAG_TRACKING, FLAG_TRACKING_BCAST, FLAG_TRACKING_BROKEN_REDIRECT,
};
use crate::protocol::{Protocol, Reply};

pub const CHANNEL: &[u8] = b"__redis__:invalidate";

/// CLIENT TRACKING's options.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Mode {
    pub bcast: bool,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
}

/// What a BCAST prefix costs beyond its bytes: its place in the client's list and in the
/// table's map of prefixes.
const PREFIX_MEMORY: usize = 128;

struct Tracker {
    handle: Weak<ClientHandle>,
    mode: Mode,
    redirect: u64,
    /// The client invalidations are redirected to, while it is connected.
    target: Option<Weak<ClientHandle>>,
    broken_redirect: bool,
    prefixes: Vec<Bytes>,
}

impl Tracker {
    /// Invalidations reach this client as RESP3 pushes on its own connection.
    fn pushes_on_own_connection(&self) -> bool {
        self.target.is_none()
            && self
                .handle
                .upgrade()
                .is_some_and(|h| h.protocol() == Protocol::Resp3)
    }
}

#[derive(Default)]
struct Prefix {
    clients: BTreeSet<u64>,
    /// Keys changed since the last broadcast, each with the client that changed it last (0:
    /// the server itself), for NOLOOP.
    keys: BTreeMap<Bytes, u64>,
}

#[derive(Default)]
struct State {
    trackers: HashMap<u64, Tracker>,
    /// Key -> clients that may have it cached (default mode).
    table: HashMap<Bytes, HashSet<u64>>,
    /// Client ids across the table's sets (INFO's `tracking_total_items`).
    items: usize,
    prefixes: BTreeMap<Bytes, Prefix>,
    /// Invalidations for the client whose command runs, pushed on its own connection: they
    /// go into its reply buffer (`write_own`), before or after the reply as Redis puts them,
    /// where the mailbox could pass the reply. None: a flush.
    pending_own: Vec<(u64, Option<Bytes>)>,
}

#[derive(Default)]
pub struct Tracking {
    /// Clients with tracking on: everything is skipped while there are none.
    clients: AtomicUsize,
    /// `tracking-table-max-keys` (0: no limit).
    max_keys: AtomicU64,
    state: Mutex<State>,
}

thread_local! {
    /// The client whose command runs on this thread (0: none), for NOLOOP and for the
    /// invalidations a client causes itself: the outermost one, whose script may run
    /// commands as a client of its own.
    static CURRENT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// A script of the current client ran a read-only command.
    static SCRIPT_READ: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Notes that client `id` ran a read-only command: inside another client's command (a
/// script's), that client's script counts as reading its declared keys (Redis tracks them
/// for the script's caller).
pub fn note_read(id: u64) {
    let current = CURRENT.get();
    if current != 0 && current != id {
        SCRIPT_READ.set(true);
    }
}

/// Whether the script that just ran read anything (and forgets it).
pub fn script_read() -> bool {
    SCRIPT_READ.replace(false)
}

/// The message body: an array of keys, or a null (everything) for a flush.
enum Keys<'a> {
    Some(&'a [&'a [u8]]),
    All,
}

fn encode(protocol: Protocol, pubsub: bool, keys: &Keys<'_>) -> Bytes {
    let mut reply = Reply::with_capacity(protocol, 64);
    if pubsub {
        reply.push(3);
        reply.bulk(b"message");
        reply.bulk(CHANNEL);
    } else {
        reply.push(2);
        reply.bulk(b"invalidate");
    }
    match keys {
        Keys::Some(keys) => {
            reply.array(keys.len());
            for key in keys.iter() {
                reply.bulk(key);
            }
        }
        Keys::All => reply.null(),
    }
    Bytes::from(reply.buf)
}

impl Tracking {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn active(&self) -> bool {
        self.clients.load(Ordering::Relaxed) > 0
    }

    /// Makes client `id` the one whose command runs (unless a command of another runs
    /// already: a script's client runs inside its caller's), until the scope is dropped;
    /// then the BCAST batches of the keys changed meanwhile go out.
    pub fn scope(&self, id: u64) -> Scope<'_> {
        let outermost = CURRENT.get() == 0;
        if outermost {
            CURRENT.set(id);
        }
        Scope {
            tracking: self,
            restore: outermost.then_some(0),
        }
    }

    /// Makes `id` the client whose command runs while a blocked client is served on its
    /// behalf; the previous one comes back when the scope is dropped.
    pub fn serving(&self, id: u64) -> Scope<'_> {
        let previous = CURRENT.replace(id);
        Scope {
            tracking: self,
            restore: Some(previous),
        }
    }

    /// Writes the invalidations queued for client `id` into its reply buffer.
    pub fn write_own(&self, id: u64, reply: &mut Reply) {
        if !self.active() {
            return;
        }
        let mut state = self.lock();
        if state.pending_own.is_empty() {
            return;
        }
        let (mine, others) = std::mem::take(&mut state.pending_own)
            .into_iter()
            .partition(|(to, _)| *to == id);
        state.pending_own = others;
        for (_, key) in mine {
            let message = match &key {
                Some(key) => encode(Protocol::Resp3, false, &Keys::Some(&[&key[..]])),
                None => encode(Protocol::Resp3, false, &Keys::All),
            };
            reply.buf.extend_from_slice(&message);
        }
    }

    pub fn set_max_keys(&self, max: u64) {
        self.max_keys.store(max, Ordering::Relaxed);
    }

    /// CLIENT TRACKING ON: `target` is the redirect client, found by the caller. Returns what
    /// the client's prefixes take in the table, for its `tot-mem`.
    pub fn enable(
        &self,
        handle: &Arc<ClientHandle>,
        mode: Mode,
        redirect: Option<&Arc<ClientHandle>>,
        prefixes: Vec<Bytes>,
    ) -> usize {
        let mut state = self.lock();
        let id = handle.id;
        if !state.trackers.contains_key(&id) {
            self.clients.fetch_add(1, Ordering::Relaxed);
        }
        let mut tracker = state.trackers.remove(&id).unwrap_or(Tracker {
            handle: Arc::downgrade(handle),
            mode,
            redirect: 0,
            target: None,
            broken_redirect: false,
            prefixes: Vec::new(),
        });
        tracker.mode = mode;
        tracker.redirect = redirect.map_or(0, |target| target.id);
        tracker.target = redirect.map(Arc::downgrade);
        tracker.broken_redirect = false;
        handle.set_flag(FLAG_TRACKING_BROKEN_REDIRECT, false);
        handle.set_flag(FLAG_TRACKING, true);
        handle.set_flag(FLAG_TRACKING_BCAST, mode.bcast);
        if mode.bcast {
            let wanted = if prefixes.is_empty() {
                vec![Bytes::new()]
            } else {
                prefixes
            };
            for prefix in wanted {
                let entry = state.prefixes.entry(prefix.clone()).or_default();
                if entry.clients.insert(id) {
                    tracker.prefixes.push(prefix);
                }
            }
        }
        let memory = tracker
            .prefixes
            .iter()
            .map(|p| p.len() + PREFIX_MEMORY)
            .sum();
        state.trackers.insert(id, tracker);
        memory
    }

    /// CLIENT TRACKING OFF, or the client left. Its ids in the key table go lazily, as in
    /// Redis: an invalidation finds them gone.
    pub fn disable(&self, id: u64) {
        if !self.active() {
            return;
        }
        let mut state = self.lock();
        let Some(tracker) = state.trackers.remove(&id) else {
            return;
        };
        self.clients.fetch_sub(1, Ordering::Relaxed);
        if let Some(handle) = tracker.handle.upgrade() {
            let flags = FLAG_TRACKING | FLAG_TRACKING_BCAST | FLAG_TRACKING_BROKEN_REDIRECT;
            handle.set_flag(flags, false);
        }
        for prefix in tracker.prefixes {
            if let Some(entry) = state.prefixes.get_mut(&prefix) {
                entry.clients.remove(&id);
                if entry.clients.is_empty() {
                    state.prefixes.remove(&prefix);
                }
            }
        }
    }

    /// The client's mode, redirect id and prefixes, if it tracks.
    pub fn info(&self, id: u64) -> Option<(Mode, u64, bool, Vec<Bytes>)> {
        if !self.active() {
            return None;
        }
        let state = self.lock();
        let tracker = state.trackers.get(&id)?;
        let mut prefixes = tracker.prefixes.clone();
        prefixes.sort();
        Some((
            tracker.mode,
            tracker.redirect,
            tracker.broken_redirect,
            prefixes,
        ))
    }

    /// Prefixes of `id` (BCAST) that overlap `prefix`: one is a prefix of the other.
    pub fn overlapping(&self, id: u64, prefix: &[u8]) -> Option<Bytes> {
        let state = self.lock();
        let tracker = state.trackers.get(&id)?;
        let mut mine = tracker.prefixes.clone();
        mine.sort();
        mine.into_iter().find(|p| overlap(p, prefix))
    }

    /// Remembers that client `id` read `keys` (default mode), then keeps the table within
    /// `tracking-table-max-keys` by invalidating keys at random.
    pub fn remember(&self, id: u64, keys: &[&[u8]]) {
        let mut state = self.lock();
        for key in keys {
            let ids = state.table.entry(Bytes::copy_from_slice(key)).or_default();
            if ids.insert(id) {
                state.items += 1;
            }
        }
        self.limit_table(&mut state);
    }

    /// From the cron: keeps the table within `tracking-table-max-keys` after it was lowered.
    pub fn enforce_limit(&self) {
        if self.active() {
            self.limit_table(&mut self.lock());
        }
    }

    /// Invalidates keys (in the table's own order, which is random) until the table holds
    /// at most `tracking-table-max-keys`, as if they had changed (Redis's
    /// `trackingLimitUsedSlots`).
    fn limit_table(&self, state: &mut State) {
        let max = self.max_keys.load(Ordering::Relaxed) as usize;
        while max > 0 && state.table.len() > max {
            let Some(key) = state.table.keys().next().cloned() else {
                break;
            };
            self.invalidate_locked(state, &key, false);
        }
    }

    /// The modify hook: `key` changed (or expired, or was evicted).
    pub fn invalidate(&self, key: &[u8]) {
        if !self.active() {
            return;
        }
        let mut state = self.lock();
        self.invalidate_locked(&mut state, key, true);
    }

    fn invalidate_locked(&self, state: &mut State, key: &[u8], bcast: bool) {
        let current = CURRENT.get();
        if bcast {
            for (prefix, entry) in state.prefixes.iter_mut() {
                if key.starts_with(prefix) {
                    entry.keys.insert(Bytes::copy_from_slice(key), current);
                }
            }
        }
        let Some(ids) = state.table.remove(key) else {
            return;
        };
        state.items -= ids.len();
        for id in ids {
            let Some(tracker) = state.trackers.get(&id) else {
                continue;
            };
            if tracker.mode.bcast || (tracker.mode.noloop && id == current) {
                continue;
            }
            if id == current && tracker.pushes_on_own_connection() {
                state
                    .pending_own
                    .push((id, Some(Bytes::copy_from_slice(key))));
            } else {
                Self::send(state, id, &Keys::Some(&[key]));
            }
        }
    }

    /// FLUSHALL, FLUSHDB: every tracking client is told that everything changed, and the
    /// table is emptied.
    pub fn flushed(&self) {
        let mut state = self.lock();
        let current = CURRENT.get();
        let ids: Vec<u64> = state.trackers.keys().copied().collect();
        for id in ids {
            let own = state.trackers[&id].pushes_on_own_connection();
            if id == current && own {
                state.pending_own.push((id, None));
            } else {
                Self::send(&mut state, id, &Keys::All);
            }
        }
        state.table.clear();
        state.items = 0;
    }

    /// The BCAST batches of the keys changed since the last call (after each command, and
    /// from the cron for keys that expired), and any invalidation still queued for a client's
    /// own reply buffer, through its mailbox.
    pub fn send_pending(&self) {
        if !self.active() {
            return;
        }
        let mut state = self.lock();
        for (id, key) in std::mem::take(&mut state.pending_own) {
            match key {
                Some(key) => Self::send(&mut state, id, &Keys::Some(&[&key])),
                None => Self::send(&mut state, id, &Keys::All),
            }
        }
        let batches: Vec<(Vec<u64>, BTreeMap<Bytes, u64>)> = state
            .prefixes
            .values_mut()
            .filter(|p| !p.keys.is_empty())
            .map(|p| {
                (
                    p.clients.iter().copied().collect(),
                    std::mem::take(&mut p.keys),
                )
            })
            .collect();
        for (clients, keys) in batches {
            for id in clients {
                let noloop = state.trackers.get(&id).is_some_and(|t| t.mode.noloop);
                let names: Vec<&[u8]> = keys
                    .iter()
                    .filter(|(_, by)| !noloop || **by != id)
                    .map(|(key, _)| &key[..])
                    .collect();
                if !names.is_empty() {
                    Self::send(&mut state, id, &Keys::Some(&names));
                }
            }
        }
    }

    /// Sends one invalidation message for tracking client `id` (Redis's
    /// `sendTrackingMessage`).
    fn send(state: &mut State, id: u64, keys: &Keys<'_>) {
        let Some(tracker) = state.trackers.get_mut(&id) else {
            return;
        };
        let Some(handle) = tracker.handle.upgrade() else {
            return;
        };
        let Some(target) = &tracker.target else {
            // RESP2 has no pushes on the connection itself.
            if handle.protocol() == Protocol::Resp3 {
                handle.deliver(encode(Protocol::Resp3, false, keys), [0; 3]);
            }
            return;
        };
        let Some(target) = target
            .upgrade()
            .filter(|t| !t.killed.load(Ordering::Relaxed))
        else {
            tracker.broken_redirect = true;
            handle.set_flag(FLAG_TRACKING_BROKEN_REDIRECT, true);
            if handle.protocol() == Protocol::Resp3 {
                let mut reply = Reply::with_capacity(Protocol::Resp3, 48);
                reply.push(2);
                reply.bulk(b"tracking-redir-broken");
                reply.int(tracker.redirect as i64);
                handle.deliver(Bytes::from(reply.buf), [0; 3]);
            }
            return;
        };
        let message = match target.protocol() {
            Protocol::Resp3 => encode(Protocol::Resp3, false, keys),
            Protocol::Resp2 if target.is_subscribed() => encode(Protocol::Resp2, true, keys),
            Protocol::Resp2 => return,
        };
        target.deliver(message, [0; 3]);
    }

    /// INFO's `tracking_clients`, `tracking_total_keys`, `tracking_total_items` and
    /// `tracking_total_prefixes`.
    pub fn stats(&self) -> [usize; 4] {
        let clients = self.clients.load(Ordering::Relaxed);
        let state = self.lock();
        [
            clients,
            state.table.len(),
            state.items,
            state.prefixes.len(),
        ]
    }
}

/// Whether one of two prefixes starts the other (a key under both would be sent twice).
pub fn overlap(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// See `Tracking::scope` and `Tracking::serving`.
pub struct Scope<'a> {
    tracking: &'a Tracking,
    /// The client to make current again when dropped; None for a nested scope.
    restore: Option<u64>,
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        if let Some(previous) = self.restore {
            CURRENT.set(previous);
            if previous == 0 {
                self.tracking.send_pending();
            }
        }
    }
}
