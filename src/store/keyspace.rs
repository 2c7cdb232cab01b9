//! The databases: each a fixed set of shards, each shard a mutex around a `Dict` of entries.
//! Keys expire lazily on access (through `Locked`) and actively in a background sweep.
//!
//! Atomicity: a command that touches one key locks that key's shard only, so commands on
//! different keys run in parallel. Commands that touch several keys or the whole keyspace take
//! the store's gate exclusively (see `Store::gate`), so while they run no other command holds a
//! shard lock and they may lock shards one after the other. A caller never holds two shard locks
//! at once, so no lock order is needed.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

use foldhash::fast::FixedState;

use super::dict::{Dict, Place};
use super::notify::{Class, Notifier};
use super::value::Value;

pub const SHARDS: usize = 16;
/// How many keys `Db::prefetch` takes at a time.
pub const PREFETCH_BATCH: usize = 16;
/// Keys a shard holds before `Db::prefetch` works: 1,024 per shard, about 16,000 keys and 1.5 MB
/// of nodes and buckets, is where lookups start to miss this machine's 1 MB L2 cache.
const PREFETCH_MIN_SHARD_LEN: usize = 1024;
const SHARD_BITS: u32 = SHARDS.trailing_zeros();

pub struct Entry {
    pub value: Value,
    /// Absolute expiry in Unix milliseconds; 0 means the key does not expire.
    expire_at: u64,
}

impl Entry {
    pub fn new(value: Value) -> Entry {
        Entry {
            value,
            expire_at: 0,
        }
    }

    pub fn expire_at(&self) -> Option<u64> {
        (self.expire_at != 0).then_some(self.expire_at)
    }

    fn is_expired(&self, now: u64) -> bool {
        self.expire_at != 0 && self.expire_at <= now
    }
}

#[derive(Default)]
pub struct Shard {
    dict: Dict<Entry>,
    /// Keys in this shard with an expiry, so the active sweep can skip shards without any.
    volatile: usize,
    /// Where the active expiry sweep resumes in this shard.
    expire_cursor: u64,
}

pub struct Db {
    pub index: usize,
    shards: Box<[Mutex<Shard>]>,
    notifier: Arc<Notifier>,
}

/// Picks a key's shard; independent of each `Dict`'s own randomly seeded hasher.
fn shard_index(key: &[u8]) -> usize {
    FixedState::with_seed(0x6f78_6964_6973).hash_one(key) as usize & (SHARDS - 1)
}

impl Db {
    pub fn new(index: usize, notifier: Arc<Notifier>) -> Db {
        Db {
            index,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            notifier,
        }
    }

    /// Locks the shard holding `key`. Do not hold the result while locking another shard.
    pub fn lock(&self, key: &[u8]) -> Locked<'_> {
        self.lock_shard(shard_index(key))
    }

    fn lock_shard(&self, index: usize) -> Locked<'_> {
        // While loading nothing expires: `now` 0 is before every expiry time.
        let loading = self
            .notifier
            .loading
            .load(std::sync::atomic::Ordering::Relaxed);
        Locked {
            shard: self.shards[index].lock().unwrap_or_else(|e| e.into_inner()),
            db: self,
            now: if loading { 0 } else { crate::util::now_ms() },
        }
    }

    /// Whether the keyspace is big enough for `prefetch` to pay: a small one stays in the CPU's
    /// cache. One shard stands for all, as keys spread evenly over them.
    pub fn worth_prefetching(&self) -> bool {
        self.shards[0]
            .try_lock()
            .is_ok_and(|shard| shard.dict.len() >= PREFETCH_MIN_SHARD_LEN)
    }

    /// Starts loading what looking up `keys` will read, so that the cache misses of a batch of
    /// keys overlap instead of stalling each command in turn (Valkey 8 does the same for the
    /// commands its I/O threads parse). In two passes, as the node's address is in the bucket.
    /// A shard locked elsewhere is skipped: this is only a hint.
    pub fn prefetch(&self, keys: &[&[u8]]) {
        let mut hashes = [None; PREFETCH_BATCH];
        for (key, hash) in keys.iter().zip(hashes.iter_mut()) {
            let shard = shard_index(key);
            if let Ok(locked) = self.shards[shard].try_lock() {
                *hash = Some((shard, locked.dict.prefetch_bucket(key)));
            }
        }
        for (shard, hash) in hashes.into_iter().flatten() {
            if let Ok(locked) = self.shards[shard].try_lock() {
                locked.dict.prefetch_node(hash);
            }
        }
    }

    /// `items` in chunks of at most a batch of keys, every `step`th item a key (MSET's pairs:
    /// 2), each chunk's keys prefetched as it is handed out: a command that looks its keys up in
    /// turn (MGET, MSET) then misses the cache once a chunk. Only when there are several keys
    /// and the keyspace is big enough.
    pub fn prefetched_chunks<'i, K: AsRef<[u8]>>(
        &self,
        items: &'i [K],
        step: usize,
    ) -> impl Iterator<Item = &'i [K]> {
        let worth = items.len() > step && self.worth_prefetching();
        items.chunks(step * PREFETCH_BATCH).inspect(move |chunk| {
            if worth && chunk.len() > step {
                let mut keys: [&[u8]; PREFETCH_BATCH] = [&[]; PREFETCH_BATCH];
                let mut count = 0;
                for (slot, key) in keys.iter_mut().zip(chunk.iter().step_by(step)) {
                    *slot = key.as_ref();
                    count += 1;
                }
                self.prefetch(&keys[..count]);
            }
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.sum_over_shards(|shard| shard.dict.len())
    }

    /// MEMORY STATS's `overhead.hashtable.main`.
    pub fn table_bytes(&self) -> usize {
        self.sum_over_shards(|shard| shard.dict.table_bytes())
    }

    pub fn volatile_len(&self) -> usize {
        self.sum_over_shards(|shard| shard.volatile)
    }

    fn sum_over_shards(&self, count: impl Fn(&Shard) -> usize) -> usize {
        self.shards
            .iter()
            .map(|s| count(&s.lock().unwrap_or_else(|e| e.into_inner())))
            .sum()
    }

    /// Removes every key; returns the old contents so a caller can free them elsewhere.
    pub fn take_all(&self) -> Vec<Dict<Entry>> {
        self.shards
            .iter()
            .map(|s| {
                let mut shard = s.lock().unwrap_or_else(|e| e.into_inner());
                std::mem::take(&mut *shard).dict
            })
            .collect()
    }

    /// Exchanges the contents of two databases (SWAPDB). Caller holds the gate exclusively.
    pub fn swap_with(&self, other: &Db) {
        for (a, b) in self.shards.iter().zip(other.shards.iter()) {
            let mut a = a.lock().unwrap_or_else(|e| e.into_inner());
            let mut b = b.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut *a, &mut *b);
        }
    }

    /// One step of SCAN over all shards. The cursor keeps the shard in its low bits and the
    /// shard's own reverse-binary cursor above them. Expired keys are skipped (and deleted).
    pub fn scan(&self, cursor: u64, mut visit: impl FnMut(&[u8], &Value)) -> u64 {
        let mut shard_no = (cursor as usize) & (SHARDS - 1);
        let mut inner = cursor >> SHARD_BITS;
        let mut locked = self.lock_shard(shard_no);
        let now = locked.now;
        let mut expired = Vec::new();
        inner = locked.shard.dict.scan(inner, |key, entry| {
            if entry.is_expired(now) {
                expired.push(key.to_vec());
            } else {
                visit(key, &entry.value);
            }
        });
        for key in expired {
            locked.get(&key);
        }
        if inner == 0 {
            shard_no += 1;
            if shard_no == SHARDS {
                return 0;
            }
        }
        (inner << SHARD_BITS) | shard_no as u64
    }

    /// Visits every entry, expired ones included, one shard at a time.
    pub fn for_each(&self, mut visit: impl FnMut(&[u8], &Entry)) {
        for index in 0..SHARDS {
            let locked = self.lock_shard(index);
            for (key, entry) in locked.shard.dict.iter() {
                visit(key, entry);
            }
        }
    }

    /// Every live key matching `keep`, for KEYS.
    pub fn keys(&self, mut keep: impl FnMut(&[u8]) -> bool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for index in 0..SHARDS {
            let locked = self.lock_shard(index);
            let now = locked.now;
            for (key, entry) in locked.shard.dict.iter() {
                if !entry.is_expired(now) && keep(key) {
                    out.push(key.to_vec());
                }
            }
        }
        out
    }

    /// A random live key, or None when the database is empty.
    pub fn random_key(&self) -> Option<Vec<u8>> {
        let mut rand = crate::util::Rng::new();
        // Expired keys met on the way are deleted; give up after many tries as Redis does when
        // every key is volatile and expired.
        for _ in 0..100 {
            let sizes: Vec<usize> = (0..SHARDS)
                .map(|i| self.lock_shard(i).shard.dict.len())
                .collect();
            let total: usize = sizes.iter().sum();
            if total == 0 {
                return None;
            }
            let mut pick = rand.next_u64() as usize % total;
            let mut index = 0;
            while pick >= sizes[index] {
                pick -= sizes[index];
                index += 1;
            }
            let mut locked = self.lock_shard(index);
            let key = locked
                .shard
                .dict
                .random(|| rand.next_u64())
                .map(|(k, _)| k.to_vec())?;
            if locked.get(&key).is_some() {
                return Some(key);
            }
        }
        None
    }

    /// One pass of active expiry over up to `budget` buckets per shard; returns keys removed.
    pub fn active_expire(&self, budget: usize) -> usize {
        let mut removed_total = 0;
        for index in 0..SHARDS {
            let mut locked = self.lock_shard(index);
            if locked.shard.volatile == 0 {
                continue;
            }
            let now = locked.now;
            let mut removed = Vec::new();
            let shard = &mut *locked.shard;
            let mut cursor = shard.expire_cursor;
            for _ in 0..budget {
                cursor = shard.dict.scan_retain(cursor, |key, entry| {
                    let expired = entry.is_expired(now);
                    if expired {
                        removed.push(key.to_vec());
                    }
                    !expired
                });
                if cursor == 0 {
                    break;
                }
            }
            shard.expire_cursor = cursor;
            shard.volatile -= removed.len();
            removed_total += removed.len();
            drop(locked);
            for key in removed {
                self.notifier.expired(self.index, &key);
            }
        }
        removed_total
    }
}

/// A locked shard. Every lookup through it deletes the key first if it has expired.
pub struct Locked<'a> {
    shard: MutexGuard<'a, Shard>,
    db: &'a Db,
    pub now: u64,
}

impl Locked<'_> {
    /// The live entry for `key`, deleting it first if it has expired.
    pub fn get(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let place = self.find(key)?;
        Some(self.entry_at(place))
    }

    /// Where the live entry for `key` is, deleting it first if it has expired. The place stays
    /// valid until the shard next changes; `entry_at` and `store` use it without hashing and
    /// comparing the key again.
    pub fn find(&mut self, key: &[u8]) -> Option<Place> {
        let (place, entry) = self.shard.dict.find(key)?;
        if entry.is_expired(self.now) {
            self.shard.dict.remove(key);
            self.shard.volatile -= 1;
            self.db.notifier.expired(self.db.index, key);
            return None;
        }
        Some(place)
    }

    pub fn entry_at(&mut self, place: Place) -> &mut Entry {
        self.shard.dict.at_mut(place)
    }

    /// The entry for `key` even if it has expired, which stays (DEBUG OBJECT looks this way).
    pub fn get_even_expired(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let (place, _) = self.shard.dict.find(key)?;
        Some(self.entry_at(place))
    }

    /// Whether `key` is present but past its expiry, without deleting it (WATCH needs this).
    pub fn is_expired(&self, key: &[u8]) -> bool {
        self.shard
            .dict
            .get(key)
            .is_some_and(|entry| entry.is_expired(self.now))
    }

    pub fn contains(&mut self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Stores `value` at `key`, dropping any previous value and its expiry.
    pub fn set(&mut self, key: &[u8], value: Value) {
        self.set_with_expire(key, value, None);
    }

    pub fn set_with_expire(&mut self, key: &[u8], value: Value, expire_at: Option<u64>) {
        let found = self.shard.dict.find(key).map(|(place, _)| place);
        self.store(found, key, value, expire_at);
    }

    /// Stores `value` at `key`, dropping any previous value and its expiry, where `found` is
    /// where the key was (`find`), the shard unchanged since.
    pub fn store(
        &mut self,
        found: Option<Place>,
        key: &[u8],
        value: Value,
        expire_at: Option<u64>,
    ) {
        let entry = Entry {
            value,
            expire_at: expire_at.unwrap_or(0),
        };
        let added = entry.expire_at != 0;
        match found {
            Some(place) => {
                let old = std::mem::replace(self.shard.dict.at_mut(place), entry);
                if old.expire_at != 0 {
                    self.shard.volatile -= 1;
                }
            }
            None => {
                self.created(key);
                self.shard.dict.insert_new(key, entry);
            }
        }
        if added {
            self.shard.volatile += 1;
        }
    }

    /// Inserts a key the caller has just found absent; returns its entry.
    pub fn insert_new(&mut self, key: &[u8], value: Value) -> &mut Entry {
        self.created(key);
        self.shard.dict.insert_new(key, Entry::new(value))
    }

    fn created(&self, key: &[u8]) {
        self.db
            .notifier
            .notify(self.db.index, key, Class::New, "new");
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let live = self.get(key).is_some();
        let entry = if live {
            self.shard.dict.remove(key)
        } else {
            None
        }?;
        if entry.expire_at != 0 {
            self.shard.volatile -= 1;
        }
        Some(entry)
    }

    /// Sets or clears (None) the expiry of an existing live key; returns false if absent.
    pub fn set_expire(&mut self, key: &[u8], expire_at: Option<u64>) -> bool {
        let Some(entry) = self.get(key) else {
            return false;
        };
        let had = entry.expire_at != 0;
        entry.expire_at = expire_at.unwrap_or(0);
        let has = entry.expire_at != 0;
        match (had, has) {
            (false, true) => self.shard.volatile += 1,
            (true, false) => self.shard.volatile -= 1,
            _ => {}
        }
        true
    }

    pub fn db_index(&self) -> usize {
        self.db.index
    }
}
