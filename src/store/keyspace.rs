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

use super::clock;
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
    /// The expiry and the access clock in one word, so that the clock costs a key nothing:
    /// an expiry from `EXPIRE_BASE` on is kept as milliseconds since it in the 40 bits above
    /// the clock's 23 (0: no expiry). One outside those 34 years (before September 2020 or
    /// after June 2055) is kept whole with `WIDE` set, and such a key keeps no clock: it reads
    /// as just used (`Entry::clock`).
    meta: u64,
}

const EXPIRE_BASE: u64 = 1_600_000_000_000;
const WIDE: u64 = 1 << 63;
const CODE_MAX: u64 = (1 << 40) - 1;
const CLOCK_MASK: u64 = clock::MASK as u64;

impl Entry {
    fn new(value: Value, expire_at: Option<u64>, clock: u32) -> Entry {
        let mut entry = Entry { value, meta: 0 };
        entry.set_meta(expire_at, clock);
        entry
    }

    fn set_meta(&mut self, expire_at: Option<u64>, clock: u32) {
        let clock = clock as u64 & CLOCK_MASK;
        self.meta = match expire_at {
            None => clock,
            Some(at) if at >= EXPIRE_BASE && at - EXPIRE_BASE < CODE_MAX => {
                (at - EXPIRE_BASE + 1) << clock::BITS | clock
            }
            Some(at) => WIDE | at.min(i64::MAX as u64),
        };
    }

    pub fn expire_at(&self) -> Option<u64> {
        if self.meta & WIDE != 0 {
            return Some(self.meta & !WIDE);
        }
        match self.meta >> clock::BITS {
            0 => None,
            code => Some(EXPIRE_BASE + code - 1),
        }
    }

    /// The access clock (see `store::clock`); None for a key whose expiry is kept whole.
    pub fn clock(&self) -> Option<u32> {
        (self.meta & WIDE == 0).then_some((self.meta & CLOCK_MASK) as u32)
    }

    fn set_clock(&mut self, clock: u32) {
        if self.meta & WIDE == 0 {
            self.meta = self.meta & !CLOCK_MASK | clock as u64 & CLOCK_MASK;
        }
    }

    fn is_expired(&self, now: u64) -> bool {
        self.expire_at().is_some_and(|at| at <= now)
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

/// Where a database's next eviction sample starts: a shard and a bucket.
#[derive(Clone, Copy, Default)]
pub struct SamplePoint {
    shard: usize,
    start: u64,
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

    /// Like `lock`, for a caller that has read the time already (`now`, Unix milliseconds).
    pub fn lock_at(&self, key: &[u8], now: u64) -> Locked<'_> {
        self.lock_shard_at(shard_index(key), now)
    }

    fn lock_shard(&self, index: usize) -> Locked<'_> {
        self.lock_shard_at(index, crate::util::now_ms())
    }

    /// Locks a shard with the time its lookups expire keys by.
    fn lock_shard_at(&self, index: usize, now: u64) -> Locked<'_> {
        // While loading nothing expires: `now` 0 is before every expiry time.
        let loading = self
            .notifier
            .loading
            .load(std::sync::atomic::Ordering::Relaxed);
        let now = if loading { 0 } else { now };
        Locked {
            shard: self.shards[index].lock().unwrap_or_else(|e| e.into_inner()),
            db: self,
            now,
            expire_now: if self.notifier.applying_master_stream() {
                0
            } else {
                now
            },
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

    /// Visits up to `count` keys live at `now` (only keys with an expiry when `volatile`),
    /// from the random shard and bucket `point` holds, for eviction. Picks the point of the
    /// next sample and starts loading its bucket, so that the next sample does not wait for
    /// it (under constant eviction, each command samples once).
    pub fn sample(
        &self,
        point: &mut SamplePoint,
        rng: &mut crate::util::Rng,
        count: usize,
        volatile: bool,
        now: u64,
        mut visit: impl FnMut(&[u8], &Entry),
    ) {
        for offset in 0..SHARDS {
            let locked = self.lock_shard_at(point.shard.wrapping_add(offset) & (SHARDS - 1), now);
            let shard = &locked.shard;
            if shard.dict.is_empty() || (volatile && shard.volatile == 0) {
                continue;
            }
            let now = locked.now;
            let keep = |entry: &Entry| {
                !entry.is_expired(now) && (!volatile || entry.expire_at().is_some())
            };
            let start = if offset == 0 {
                point.start
            } else {
                rng.next_u64()
            };
            if shard.dict.sample(start, count, keep, &mut visit) > 0 {
                break;
            }
        }
        point.shard = rng.next_u64() as usize & (SHARDS - 1);
        point.start = rng.next_u64();
        let next = self.shards[point.shard]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        next.dict.prefetch_slot(point.start);
    }

    /// One pass of active expiry over up to `budget` buckets per shard; returns keys removed.
    pub fn active_expire(&self, budget: usize) -> usize {
        if self.notifier.deletions_paused() {
            return 0;
        }
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
    /// The time lookups expire keys by: `now`, or 0 (nothing expires) while the master's
    /// stream is applied on a replica, as Redis's master client sees no key expire.
    expire_now: u64,
}

impl Locked<'_> {
    /// The live entry for `key`, deleting it first if it has expired. Counts as an access.
    pub fn get(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let place = self.find(key)?;
        Some(self.entry_at(place))
    }

    /// Like `get`, without counting as an access (Redis's LOOKUP_NOTOUCH: TYPE, TTL, OBJECT).
    pub fn peek(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let place = self.find_untouched(key)?;
        Some(self.entry_at(place))
    }

    /// Where the live entry for `key` is, deleting it first if it has expired; counts as an
    /// access. The place stays valid until the shard next changes; `entry_at` and `store`
    /// use it without hashing and comparing the key again.
    pub fn find(&mut self, key: &[u8]) -> Option<Place> {
        let now = self.expire_now;
        let clock_now = self.clock_now();
        let db = self.db;
        let (place, entry) = self.shard.dict.find_mut(key)?;
        if entry.is_expired(now) {
            self.drop_expired(key);
            return None;
        }
        if let Some(clock) = entry.clock() {
            let touched = db.notifier.clock.touched(clock, clock_now);
            if touched != clock {
                entry.set_clock(touched);
            }
        }
        Some(place)
    }

    fn find_untouched(&mut self, key: &[u8]) -> Option<Place> {
        let (place, entry) = self.shard.dict.find(key)?;
        if entry.is_expired(self.expire_now) {
            self.drop_expired(key);
            return None;
        }
        Some(place)
    }

    /// The time for access clocks: `now` is 0 while loading, to keep keys from expiring.
    fn clock_now(&self) -> u64 {
        if self.now == 0 {
            crate::util::now_ms()
        } else {
            self.now
        }
    }

    /// Deletes an expired key, unless a CLIENT PAUSE holds deletions: then it only reads as
    /// gone.
    fn drop_expired(&mut self, key: &[u8]) {
        if self.db.notifier.deletions_paused() {
            return;
        }
        self.shard.dict.remove(key);
        self.shard.volatile -= 1;
        self.db.notifier.expired(self.db.index, key);
    }

    pub fn entry_at(&mut self, place: Place) -> &mut Entry {
        self.shard.dict.at_mut(place)
    }

    /// Deletes `key` if its time to live has passed, even where expired keys otherwise stay
    /// (a writable replica's own keys); returns whether it is still there with one.
    pub fn expire_if_due(&mut self, key: &[u8]) -> bool {
        let Some(at) = self.shard.dict.get(key).and_then(|e| e.expire_at()) else {
            return false;
        };
        if at > crate::util::now_ms() {
            return true;
        }
        self.shard.dict.remove(key);
        self.shard.volatile -= 1;
        self.db.notifier.expired(self.db.index, key);
        false
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
            .is_some_and(|entry| entry.is_expired(self.expire_now))
    }

    /// Whether `key` is live; not an access (EXISTS).
    pub fn contains(&mut self, key: &[u8]) -> bool {
        self.find_untouched(key).is_some()
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
    /// where the key was (`find`), the shard unchanged since. A new value starts a new
    /// clock, except that under LFU it keeps the old one's count (Redis's `dbOverwrite`).
    pub fn store(
        &mut self,
        found: Option<Place>,
        key: &[u8],
        value: Value,
        expire_at: Option<u64>,
    ) {
        let access = &self.db.notifier.clock;
        let mut clock = access.fresh(self.clock_now());
        let added = expire_at.is_some();
        match found {
            Some(place) => {
                let old = self.shard.dict.at_mut(place);
                if access.is_lfu()
                    && let Some(old_clock) = old.clock()
                {
                    clock = old_clock;
                }
                let old = std::mem::replace(old, Entry::new(value, expire_at, clock));
                if old.expire_at().is_some() {
                    self.shard.volatile -= 1;
                }
            }
            None => {
                self.created(key);
                self.replace_kept_expired(key);
                self.shard
                    .dict
                    .insert_new(key, Entry::new(value, expire_at, clock));
            }
        }
        if added {
            self.shard.volatile += 1;
        }
    }

    /// Inserts a key the caller has just found absent; returns its entry.
    pub fn insert_new(&mut self, key: &[u8], value: Value) -> &mut Entry {
        self.created(key);
        self.replace_kept_expired(key);
        let clock = self.db.notifier.clock.fresh(self.clock_now());
        self.shard
            .dict
            .insert_new(key, Entry::new(value, None, clock))
    }

    /// A key that expired while a pause or a replica's role held deletions is still in the
    /// shard, though lookups found it gone: a write that creates the key replaces it.
    fn replace_kept_expired(&mut self, key: &[u8]) {
        use std::sync::atomic::Ordering::Relaxed;
        let notifier = &self.db.notifier;
        if notifier.pause_until.load(Relaxed) == 0 && !notifier.replica.load(Relaxed) {
            return;
        }
        if let Some(old) = self.shard.dict.remove(key)
            && old.expire_at().is_some()
        {
            self.shard.volatile -= 1;
        }
    }

    fn created(&self, key: &[u8]) {
        self.db
            .notifier
            .notify(self.db.index, key, Class::New, "new");
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        self.find_untouched(key)?;
        let entry = self.shard.dict.remove(key)?;
        if entry.expire_at().is_some() {
            self.shard.volatile -= 1;
        }
        Some(entry)
    }

    /// Sets or clears (None) the expiry of an existing live key; returns false if absent.
    pub fn set_expire(&mut self, key: &[u8], expire_at: Option<u64>) -> bool {
        let fresh = self.db.notifier.clock.fresh(self.clock_now());
        let Some(entry) = self.peek(key) else {
            return false;
        };
        let had = entry.expire_at().is_some();
        let clock = entry.clock().unwrap_or(fresh);
        entry.set_meta(expire_at, clock);
        match (had, expire_at.is_some()) {
            (false, true) => self.shard.volatile += 1,
            (true, false) => self.shard.volatile -= 1,
            _ => {}
        }
        true
    }

    /// Sets the access clock of a live key from a frequency or idle time (RESTORE's FREQ and
    /// IDLETIME, a dump's FREQ and IDLE), where the policy keeps that kind of clock.
    pub fn restore_clock(&mut self, key: &[u8], freq: Option<u8>, idle_secs: Option<u64>) {
        let Some(clock) = self
            .db
            .notifier
            .clock
            .restored(freq, idle_secs, self.clock_now())
        else {
            return;
        };
        if let Some(entry) = self.peek(key) {
            entry.set_clock(clock);
        }
    }

    pub fn db_index(&self) -> usize {
        self.db.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Str;

    #[test]
    fn the_clock_shares_the_expiry_word() {
        assert_eq!(size_of::<Entry>(), 24);
        let value = || Value::Str(Str::Int(1));
        let now = 1_800_000_000_123;
        for expire in [
            None,
            Some(now),
            Some(EXPIRE_BASE),
            Some(EXPIRE_BASE + CODE_MAX - 2),
        ] {
            let entry = Entry::new(value(), expire, clock::MASK);
            assert_eq!(entry.expire_at(), expire);
            assert_eq!(entry.clock(), Some(clock::MASK));
        }
        // Outside the 40 bits the expiry is kept whole, and the key keeps no clock.
        for far in [
            1,
            EXPIRE_BASE - 1,
            EXPIRE_BASE + CODE_MAX,
            9_223_372_036_854_770_000,
        ] {
            let mut entry = Entry::new(value(), Some(far), 77);
            assert_eq!(entry.expire_at(), Some(far));
            assert_eq!(entry.clock(), None);
            entry.set_clock(5);
            assert_eq!(entry.expire_at(), Some(far));
        }
        let mut entry = Entry::new(value(), Some(now), 12);
        entry.set_clock(99);
        assert_eq!((entry.expire_at(), entry.clock()), (Some(now), Some(99)));
        assert!(entry.is_expired(now) && !entry.is_expired(now - 1));
    }
}
