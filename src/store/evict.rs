//! Eviction: while the allocator holds more than `maxmemory`, keys are deleted as the policy
//! says, before a command runs (Redis's `performEvictions`). The LRU, LFU and TTL policies
//! keep Redis's eviction pool: the best candidates of every sample, kept across calls, so each
//! eviction takes the best of many samples; the random policies pick keys at random.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::Store;
use super::key::Key;
use super::keyspace::{Entry, SamplePoint};
use crate::util::Rng;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Policy {
    NoEviction,
    AllKeysLru,
    AllKeysLfu,
    AllKeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

const POLICIES: [Policy; 8] = [
    Policy::NoEviction,
    Policy::AllKeysLru,
    Policy::AllKeysLfu,
    Policy::AllKeysRandom,
    Policy::VolatileLru,
    Policy::VolatileLfu,
    Policy::VolatileRandom,
    Policy::VolatileTtl,
];

impl Policy {
    /// A `maxmemory-policy` value (the config table has checked it).
    pub fn parse(name: &str) -> Policy {
        match name {
            "allkeys-lru" => Policy::AllKeysLru,
            "allkeys-lfu" => Policy::AllKeysLfu,
            "allkeys-random" => Policy::AllKeysRandom,
            "volatile-lru" => Policy::VolatileLru,
            "volatile-lfu" => Policy::VolatileLfu,
            "volatile-random" => Policy::VolatileRandom,
            "volatile-ttl" => Policy::VolatileTtl,
            _ => Policy::NoEviction,
        }
    }

    pub fn is_lfu(self) -> bool {
        matches!(self, Policy::AllKeysLfu | Policy::VolatileLfu)
    }

    pub fn is_lru(self) -> bool {
        matches!(self, Policy::AllKeysLru | Policy::VolatileLru)
    }

    fn volatile_only(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }

    fn random(self) -> bool {
        matches!(self, Policy::AllKeysRandom | Policy::VolatileRandom)
    }
}

/// What eviction works to, read from the configuration before each command.
pub struct Limits {
    pub maxmemory: usize,
    /// `maxmemory-samples`: keys sampled per database for each pool refill.
    pub samples: usize,
    /// How long one call may evict before it lets the command run (from
    /// `maxmemory-eviction-tenacity`, as Redis's `evictionTimeLimitUs`).
    pub time_limit_us: u64,
    /// `lazyfree-lazy-eviction`: big values are freed on the lazyfree thread.
    pub lazy: bool,
}

impl Limits {
    pub fn time_limit_us(tenacity: i64) -> u64 {
        match tenacity {
            t if t <= 10 => 50 * t as u64,
            t if t < 100 => (500.0 * 1.15f64.powi(t as i32 - 10)) as u64,
            _ => u64::MAX,
        }
    }
}

#[derive(PartialEq, Eq, Debug)]
pub enum Outcome {
    /// Memory is within the limit.
    Within,
    /// Over the limit still, but eviction made progress and goes on with the next command.
    Running,
    /// Over the limit and nothing can be evicted: commands that grow memory are refused.
    Failed,
}

/// Entries in the pool, as Redis's EVPOOL_SIZE.
const POOL_SIZE: usize = 16;

struct Candidate {
    score: u64,
    db: usize,
    /// Short names are kept inline: no allocation per candidate.
    key: Key,
}

/// How long the list of databases that hold keys is trusted before it is made again: making
/// it locks every shard of every database.
const LIVE_DBS_TTL: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Pool {
    /// Ascending by score: the best candidate is last.
    candidates: Vec<Candidate>,
    /// The databases that held keys (with an expiry, for the volatile policies) when last
    /// looked, and when that was.
    live_dbs: Vec<usize>,
    checked: Option<Instant>,
    rng: Rng,
    /// Where each database's next sample starts.
    points: Vec<SamplePoint>,
}

#[derive(Default)]
pub struct Evictor {
    pool: Mutex<Pool>,
    /// `maxmemory-policy`, parsed once when set.
    policy: AtomicU8,
    /// The database a random policy looks in next, so that every one gives up keys in turn.
    next_db: AtomicUsize,
    pub evicted_keys: AtomicU64,
}

impl Evictor {
    pub fn policy(&self) -> Policy {
        POLICIES[self.policy.load(Ordering::Relaxed) as usize]
    }

    pub fn set_policy(&self, policy: Policy) {
        self.policy.store(policy as u8, Ordering::Relaxed);
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).checked = None;
    }

    /// Puts a sampled key in the pool if it is among the best seen; its name is copied only
    /// then. A key sampled twice may sit in the pool twice: the second is found gone.
    fn offer(pool: &mut Vec<Candidate>, score: u64, db: usize, key: &[u8]) {
        if pool.len() == POOL_SIZE {
            if pool[0].score >= score {
                return;
            }
            pool.remove(0);
        }
        let at = pool.partition_point(|c| c.score < score);
        let key = key.into();
        pool.insert(at, Candidate { score, db, key });
    }
}

impl Store {
    /// Evicts keys until they have freed what memory exceeded `limits` by when the call
    /// began, or the time limit passes, or nothing is left to evict. What the evictions
    /// themselves allocate (invalidation messages to tracking clients, keyspace events)
    /// does not call for more eviction in the same call: that would feed on itself (Redis
    /// counts freed memory the same way).
    pub fn evict(&self, limits: &Limits) -> Outcome {
        let allocated = crate::alloc::allocated;
        let over = || allocated() > limits.maxmemory;
        let Some(to_free) = allocated().checked_sub(limits.maxmemory).filter(|&n| n > 0) else {
            return Outcome::Within;
        };
        if limits.maxmemory == 0 {
            return Outcome::Within;
        }
        let policy = self.evictor.policy();
        if policy == Policy::NoEviction {
            return Outcome::Failed;
        }
        let _gate = self.enter(false);
        let mut pool = self.evictor.pool.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let now = crate::util::now_ms();
        let mut tries = 0u64;
        let deadline = started + Duration::from_micros(limits.time_limit_us.min(1_000_000));
        let mut freed = 0;
        // Lazily freed values come back on the lazyfree thread: then memory itself is the
        // measure.
        while if limits.lazy { over() } else { freed < to_free } {
            // Values handed to the lazyfree thread are memory about to come back: wait for
            // it rather than evict keys that need not go.
            if limits.lazy && self.lazyfree.pending() > 0 {
                if !self.wait_for_lazyfree(deadline) {
                    return Outcome::Running;
                }
                continue;
            }
            let Some((db, key)) = self.victim(&mut pool, policy, limits.samples, (started, now))
            else {
                return Outcome::Failed;
            };
            // A candidate may have gone (or lost its expiry) since it was sampled.
            let mut locked = self.db(db).lock_at(&key, now);
            let live = locked
                .peek(&key)
                .is_some_and(|e| !policy.volatile_only() || e.expire_at().is_some());
            if live {
                let before = allocated();
                let entry = locked.remove(&key);
                drop(locked);
                match entry {
                    Some(entry) if limits.lazy => self.lazyfree.drop_value(entry.value),
                    entry => drop(entry),
                }
                freed += before.saturating_sub(allocated());
                self.notifier.evicted(db, &key, limits.lazy);
                self.evictor.evicted_keys.fetch_add(1, Ordering::Relaxed);
            }
            tries += 1;
            if tries.is_multiple_of(16)
                && started.elapsed().as_micros() as u64 > limits.time_limit_us
            {
                return Outcome::Running;
            }
        }
        Outcome::Within
    }

    /// Waits until the lazyfree thread has freed what it was given, or `deadline`; whether
    /// it has.
    fn wait_for_lazyfree(&self, deadline: Instant) -> bool {
        while self.lazyfree.pending() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(20));
        }
        true
    }

    /// The next key to evict: at random, or the best in the pool once refilled from every
    /// database that holds keys (Redis's `evictionPoolPopulate`). Looks at every database
    /// again before it gives up.
    fn victim(
        &self,
        pool: &mut Pool,
        policy: Policy,
        samples: usize,
        (started, now): (Instant, u64),
    ) -> Option<(usize, Key)> {
        let volatile = policy.volatile_only();
        let dbs = self.dbs();
        pool.points.resize(dbs.len(), SamplePoint::default());
        for fresh_look in [false, true] {
            let stale = pool
                .checked
                .is_none_or(|at| started.saturating_duration_since(at) > LIVE_DBS_TTL);
            if fresh_look || stale {
                pool.live_dbs = (0..dbs.len())
                    .filter(|&i| match volatile {
                        true => dbs[i].volatile_len() > 0,
                        false => !dbs[i].is_empty(),
                    })
                    .collect();
                pool.checked = Some(started);
            }
            if pool.live_dbs.is_empty() {
                continue;
            }
            if policy.random() {
                let live = &pool.live_dbs;
                for _ in 0..live.len() {
                    let turn = self.evictor.next_db.fetch_add(1, Ordering::Relaxed);
                    let db = live[turn % live.len()];
                    let mut found = None;
                    let (rng, point) = (&mut pool.rng, &mut pool.points[db]);
                    dbs[db].sample(point, rng, 1, volatile, now, |key, _| {
                        found = Some(key.into())
                    });
                    if let Some(key) = found {
                        return Some((db, key));
                    }
                }
                continue;
            }
            let clock = &self.notifier.clock;
            let Pool {
                candidates,
                live_dbs,
                rng,
                points,
                ..
            } = pool;
            for &index in live_dbs.iter() {
                let point = &mut points[index];
                dbs[index].sample(point, rng, samples, volatile, now, |key, entry: &Entry| {
                    let score = match (policy, entry.clock()) {
                        (Policy::VolatileTtl, _) => u64::MAX - entry.expire_at().unwrap_or(0),
                        (_, Some(c)) => clock.eviction_score(c, now),
                        // A key whose expiry is kept whole keeps no clock: just used.
                        (_, None) => 0,
                    };
                    Evictor::offer(candidates, score, index, key);
                });
            }
            if let Some(best) = candidates.pop() {
                return Some((best.db, best.key));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_keeps_the_sixteen_best_in_order() {
        let mut pool = Vec::new();
        for score in [
            5u64, 1, 9, 3, 7, 20, 2, 8, 11, 4, 6, 15, 13, 12, 10, 14, 16, 0, 30,
        ] {
            Evictor::offer(&mut pool, score, 0, score.to_string().as_bytes());
        }
        let scores: Vec<u64> = pool.iter().map(|c| c.score).collect();
        let best: Vec<u64> = (3..=16).chain([20, 30]).collect();
        assert_eq!(scores, best);
        assert_eq!(Limits::time_limit_us(10), 500);
        assert_eq!(Limits::time_limit_us(100), u64::MAX);
    }
}
