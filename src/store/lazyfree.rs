//! Freeing big values away from the command that removed them (Redis's lazyfree): UNLINK,
//! FLUSHALL/FLUSHDB ASYNC and the `lazyfree-lazy-*` settings hand values over here, and a
//! thread frees them. A value cheap to free (an effort of at most 64 allocations, as Redis's
//! LAZYFREE_THRESHOLD) is freed at once. The thread runs only while there is work: a process
//! that stays single-threaded keeps the kernel from counting references on every socket call.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::value::Value;

const THRESHOLD: usize = 64;

type Garbage = (Box<dyn Send>, u64);

#[derive(Default)]
pub struct LazyFree {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// What waits to be freed, with how many objects each holds; None while no thread runs.
    queue: Mutex<Option<VecDeque<Garbage>>>,
    pending: AtomicU64,
    freed: AtomicU64,
}

/// About how many allocations freeing `value` takes (Redis's `lazyfreeGetFreeEffort`): one
/// for the compact encodings.
fn free_effort(value: &Value) -> usize {
    match value {
        Value::List(list) => list.node_count(),
        Value::Set(set) if set.encoding() == "hashtable" => set.len(),
        Value::Zset(zset) if zset.encoding() == "skiplist" => zset.len(),
        Value::Hash(hash) if hash.encoding() == "hashtable" => hash.len(),
        Value::Stream(stream) => {
            // The first group's pending entries stand for every group's, as in Redis.
            let groups = stream.groups().map_or(0, |groups| {
                let first = groups.values().next().map_or(0, |g| g.pel.len());
                groups.len() * (1 + first)
            });
            stream.radix_nodes() + groups
        }
        _ => 1,
    }
}

impl LazyFree {
    /// Frees `value` here if that is cheap, or on the lazyfree thread.
    pub fn drop_value(&self, value: Value) {
        if free_effort(&value) > THRESHOLD {
            self.hand_over(Box::new(value), 1);
        }
    }

    /// Frees whole databases' old contents, `objects` keys, on the lazyfree thread.
    pub fn drop_all(&self, garbage: Box<dyn Send>, objects: u64) {
        self.hand_over(garbage, objects);
    }

    fn hand_over(&self, garbage: Box<dyn Send>, objects: u64) {
        let inner = &self.inner;
        inner.pending.fetch_add(objects, Ordering::Relaxed);
        let mut queue = inner.queue.lock().unwrap_or_else(|e| e.into_inner());
        match queue.as_mut() {
            Some(waiting) => waiting.push_back((garbage, objects)),
            None => {
                *queue = Some(VecDeque::from([(garbage, objects)]));
                let inner = inner.clone();
                std::thread::Builder::new()
                    .name("lazyfree".into())
                    .spawn(move || inner.work())
                    .expect("spawn the lazyfree thread");
            }
        }
    }

    /// INFO's `lazyfree_pending_objects`.
    pub fn pending(&self) -> u64 {
        self.inner.pending.load(Ordering::Relaxed)
    }

    /// INFO's `lazyfreed_objects`, since the start or CONFIG RESETSTAT.
    pub fn freed(&self) -> u64 {
        self.inner.freed.load(Ordering::Relaxed)
    }

    pub fn reset_stats(&self) {
        self.inner.freed.store(0, Ordering::Relaxed);
    }
}

impl Inner {
    /// Frees what is queued until the queue is empty, then lets the thread end.
    fn work(&self) {
        loop {
            let next = {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                let next = queue.as_mut().and_then(VecDeque::pop_front);
                if next.is_none() {
                    *queue = None;
                }
                next
            };
            let Some((garbage, objects)) = next else {
                return;
            };
            drop(garbage);
            self.pending.fetch_sub(objects, Ordering::Relaxed);
            self.freed.fetch_add(objects, Ordering::Relaxed);
        }
    }
}
