//! The one hook every write goes through. Commands call `modified` after changing a key; the
//! keyspace calls `expired` when it drops an expired key. This is the only place that knows
//! about WATCH, blocked clients, keyspace notifications and client-side caching: it counts
//! changes (for save points and INFO), touches watchers, marks keys with blocked clients ready,
//! and keeps the notification classes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::clock::AccessClock;
use super::watch::Watches;
use crate::blocking::Blocking;
use crate::persist::aof::Aof;
use crate::pubsub::Hub;
use crate::replication::backlog::Backlog;

/// Keyspace event classes, as the letters of `notify-keyspace-events`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum Class {
    Generic = 1 << 2,
    String = 1 << 3,
    List = 1 << 4,
    Set = 1 << 5,
    Hash = 1 << 6,
    ZSet = 1 << 7,
    Expired = 1 << 8,
    Evicted = 1 << 9,
    Stream = 1 << 10,
    KeyMiss = 1 << 11,
    Module = 1 << 13,
    New = 1 << 14,
}

const KEYSPACE: u32 = 1 << 0;
const KEYEVENT: u32 = 1 << 1;
/// `A`: every class but key-miss and new-key events.
const ALL: u32 = 0b10_0111_1111_1100;

#[derive(Default)]
pub struct Notifier {
    /// Changes since the last save (Redis's `server.dirty`).
    pub dirty: AtomicU64,
    pub expired_keys: AtomicU64,
    /// Parsed `notify-keyspace-events`.
    flags: AtomicU32,
    pub watches: Watches,
    pub blocking: Blocking,
    /// Pub/sub lives beside the hook because keyspace events are published through it.
    pub pubsub: Hub,
    /// Client-side caching: the clients to tell when a key they may cache changes.
    pub tracking: crate::tracking::Tracking,
    /// So do the append-only file and the replication stream, because expired keys are
    /// logged as deletions through it.
    pub aof: Aof,
    pub repl: Backlog,
    /// Keys' access clock: how lookups through any database keep it. Beside the hook, as the
    /// loading flag is, because every database reaches the hook.
    pub clock: AccessClock,
    /// Set while a dump or AOF loads: keys do not expire then, so replayed commands see the
    /// data as it was when they were logged (Redis's `server.loading`).
    pub loading: AtomicBool,
    /// The end of a CLIENT PAUSE (Unix ms, 0: none), shared with the server's `Pause`: while
    /// it lasts, expired keys read as gone but stay, and active expiry waits, as Redis's
    /// `checkClientPauseTimeoutAndReturnIfPaused` keeps them until the pause ends.
    pub pause_until: Arc<AtomicU64>,
    /// This server replicates a master: keys past their expiry read as gone but stay until
    /// the master's DEL comes (Redis's replicas do not expire keys themselves).
    pub replica: AtomicBool,
}

thread_local! {
    static APPLYING_MASTER_STREAM: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// While it lives, this thread applies the master's stream: keys do not expire for it.
pub struct MasterStream(());

impl MasterStream {
    pub fn enter() -> MasterStream {
        APPLYING_MASTER_STREAM.set(true);
        MasterStream(())
    }
}

impl Drop for MasterStream {
    fn drop(&mut self) {
        APPLYING_MASTER_STREAM.set(false);
    }
}

impl Notifier {
    /// Whether this thread applies the master's stream on a replica (see `MasterStream`).
    pub fn applying_master_stream(&self) -> bool {
        self.replica.load(Ordering::Relaxed) && APPLYING_MASTER_STREAM.get()
    }

    /// Whether expired keys stay: during a CLIENT PAUSE, and on a replica.
    pub fn deletions_paused(&self) -> bool {
        self.replica.load(Ordering::Relaxed) || crate::util::deadline_ahead(&self.pause_until)
    }

    /// Signals that `key` in database `db` was modified by an event of `class`.
    pub fn modified(&self, db: usize, key: &[u8], class: Class, event: &str) {
        self.dirty.fetch_add(1, Ordering::Relaxed);
        self.touched(db, key, class, event);
    }

    /// A change that sends no keyspace event and wakes no one: PFCOUNT caching its count,
    /// PFDEBUG changing an HLL's encoding. Redis signals the key to WATCH and counts the
    /// change (so it is saved and logged), nothing more.
    pub fn modified_quietly(&self, db: usize, key: &[u8]) {
        self.dirty.fetch_add(1, Ordering::Relaxed);
        self.watches.touch(db, key, false);
        self.tracking.invalidate(key);
    }

    /// What every change sets off, counted as a change to save or not.
    fn touched(&self, db: usize, key: &[u8], class: Class, event: &str) {
        self.notify(db, key, class, event);
        let deleted = matches!(event, "del" | "expired" | "evicted");
        self.watches.touch(db, key, deleted);
        self.tracking.invalidate(key);
        // A deleted key is signalled too: XREADGROUP waiters on a stream that is gone are
        // answered with an error (a list's waiters find nothing and wait on).
        self.blocking.signal(db, key);
    }

    /// Publishes a keyspace event if `notify-keyspace-events` asks for its class: on
    /// `__keyspace@<db>__:<key>` with the event as message, and on `__keyevent@<db>__:<event>`
    /// with the key as message.
    pub fn notify(&self, db: usize, key: &[u8], class: Class, event: &str) {
        let flags = self.events();
        if flags & class as u32 == 0 || flags & (KEYSPACE | KEYEVENT) == 0 {
            return;
        }
        if flags & KEYSPACE != 0 {
            let mut channel = format!("__keyspace@{db}__:").into_bytes();
            channel.extend_from_slice(key);
            self.pubsub.publish(&channel, event.as_bytes(), false);
        }
        if flags & KEYEVENT != 0 {
            let channel = format!("__keyevent@{db}__:{event}");
            self.pubsub.publish(channel.as_bytes(), key, false);
        }
    }

    /// Signals that the keyspace removed `key` because its time to live passed.
    /// Not a change to save (as in Redis); logged to the AOF as a deletion.
    pub fn expired(&self, db: usize, key: &[u8]) {
        self.expired_keys.fetch_add(1, Ordering::Relaxed);
        self.touched(db, key, Class::Expired, "expired");
        self.propagate(db, &[b"DEL", key]);
    }

    /// Signals that eviction removed `key`: logged as a deletion (UNLINK when freed lazily,
    /// as Redis's `propagateDeletion`).
    pub fn evicted(&self, db: usize, key: &[u8], lazy: bool) {
        self.touched(db, key, Class::Evicted, "evicted");
        let command: &[u8] = if lazy { b"UNLINK" } else { b"DEL" };
        self.propagate(db, &[command, key]);
    }

    /// Whether changes are propagated (to the append-only file or to replicas): what to
    /// propagate need not be built otherwise.
    pub fn propagating(&self) -> bool {
        self.aof.is_on() || self.repl.is_on()
    }

    /// Propagates one command run against database `db` to the append-only file and to
    /// replicas (see `crate::commands::propagate`); returns the replication stream's offset
    /// after it, for WAIT.
    pub fn propagate(&self, db: usize, args: &[&[u8]]) -> u64 {
        self.aof.feed(db, args);
        // A replica passes on its master's stream only, never writes of its own, so that
        // offsets agree along a chain (Redis's `replicationFeedSlaves`).
        if self.replica.load(Ordering::Relaxed) {
            return 0;
        }
        self.repl.feed(Some(db), args)
    }

    pub fn set_events(&self, flags: u32) {
        self.flags.store(flags, Ordering::Relaxed);
    }

    pub fn events(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }
}

/// Parses a `notify-keyspace-events` string as Redis's `keyspaceEventsStringToFlags`.
pub fn parse_event_flags(s: &str) -> Option<u32> {
    let mut flags = 0;
    for c in s.chars() {
        flags |= match c {
            'A' => ALL,
            'g' => Class::Generic as u32,
            '$' => Class::String as u32,
            'l' => Class::List as u32,
            's' => Class::Set as u32,
            'h' => Class::Hash as u32,
            'z' => Class::ZSet as u32,
            'x' => Class::Expired as u32,
            'e' => Class::Evicted as u32,
            'K' => KEYSPACE,
            'E' => KEYEVENT,
            't' => Class::Stream as u32,
            'm' => Class::KeyMiss as u32,
            'd' => Class::Module as u32,
            'n' => Class::New as u32,
            _ => return None,
        };
    }
    Some(flags)
}

/// Renders flags back as Redis's `keyspaceEventsFlagsToString`.
pub fn format_event_flags(flags: u32) -> String {
    let mut out = String::new();
    if flags & ALL == ALL {
        out.push('A');
    } else {
        for (bit, c) in [
            (Class::Generic as u32, 'g'),
            (Class::String as u32, '$'),
            (Class::List as u32, 'l'),
            (Class::Set as u32, 's'),
            (Class::Hash as u32, 'h'),
            (Class::ZSet as u32, 'z'),
            (Class::Expired as u32, 'x'),
            (Class::Evicted as u32, 'e'),
            (Class::Stream as u32, 't'),
            (Class::Module as u32, 'd'),
            (Class::New as u32, 'n'),
        ] {
            if flags & bit != 0 {
                out.push(c);
            }
        }
    }
    for (bit, c) in [
        (KEYSPACE, 'K'),
        (KEYEVENT, 'E'),
        (Class::KeyMiss as u32, 'm'),
    ] {
        if flags & bit != 0 {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_flags_round_trip_like_redis() {
        assert_eq!(format_event_flags(parse_event_flags("KEA").unwrap()), "AKE");
        assert_eq!(format_event_flags(parse_event_flags("Ex$").unwrap()), "$xE");
        assert_eq!(parse_event_flags("Q"), None);
        assert_eq!(format_event_flags(0), "");
    }
}
