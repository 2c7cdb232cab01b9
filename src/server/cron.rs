//! The background cycle Redis calls serverCron: active expiry, idle-client timeouts, and
//! background saves (collecting finished ones, starting those save points ask for).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Server;
use crate::client::{FLAG_BLOCKED, FLAG_MONITOR};
use crate::config;
use crate::store::evict::Outcome;
use crate::util::now_ms;

/// Buckets visited per shard per step of the expiry sweep.
const EXPIRE_BUCKETS_PER_STEP: usize = 64;
/// Share of a cycle the expiry sweep may take, as Redis's 25% CPU budget.
const EXPIRE_TIME_BUDGET: f64 = 0.25;

pub async fn run(server: Arc<Server>) {
    let mut purger = crate::alloc::Purger::default();
    loop {
        let hz = server.config.int(config::HZ).clamp(1, 500) as u64;
        let period = Duration::from_millis(1000 / hz);
        crate::timer::sleep(period).await;
        if server.cron_paused.load(Ordering::Relaxed) {
            continue;
        }
        // A running script holds the keyspace: what needs it waits for the next tick.
        let script_busy = server.scripts.running.is_active();
        if server.active_expire.load(Ordering::Relaxed) && !script_busy {
            // In line, within its time budget, as in Redis's serverCron. On a thread of its own
            // it kept the process multi-threaded, and the kernel then counts a reference to the
            // file on every socket system call (fdget/fput): 0.4% of the CPU at -P 1.
            active_expire(&server, period);
        }
        let aof = &server.store.notifier.aof;
        server.snapshots.reap(&server);
        aof.reap(&server);
        aof.retry_failed_write();
        // One child at a time, as in Redis.
        let idle = !server.snapshots.in_progress() && !aof.rewriting();
        let due = server.snapshots.due(&server) || aof.rewrite_due(&server.config);
        if idle && !script_busy && due {
            let server = server.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let _gate = server.store.enter(true);
                if server.snapshots.due(&server) {
                    let _ = server.snapshots.start_background(&server);
                } else {
                    let _ = server.store.notifier.aof.start_rewrite(&server);
                }
            })
            .await;
        }
        check_clients(&server);
        crate::replication::cron(&server);
        server.store.notifier.tracking.enforce_limit();
        server.store.notifier.tracking.send_pending();
        let live = crate::alloc::allocated();
        server.stats.note_memory_peak(live as u64);
        purger.check(live, Instant::now());
    }
}

/// Goes on with eviction that ran out of time before a command, a round at a time with other
/// tasks served between rounds, until memory is within `maxmemory` or nothing is left to evict.
pub async fn evict_on(server: Arc<Server>) {
    loop {
        server.eviction_unfinished.notified().await;
        while !server.scripts.running.is_active() && server.evict() == Outcome::Running {
            tokio::task::yield_now().await;
        }
    }
}

/// Sweeps every database; keeps going while a step finds many expired keys, within budget.
fn active_expire(server: &Server, period: Duration) {
    let deadline = Instant::now() + period.mul_f64(EXPIRE_TIME_BUDGET);
    // Under the shared gate like any command, so a fork for BGSAVE (under the exclusive
    // gate) never happens while this thread holds a shard lock.
    let _gate = server.store.enter(false);
    for db in server.store.dbs() {
        loop {
            let removed = db.active_expire(EXPIRE_BUCKETS_PER_STEP);
            if removed < EXPIRE_BUCKETS_PER_STEP / 4 || Instant::now() >= deadline {
                break;
            }
        }
    }
}

/// How long a client must be idle before its query buffer is freed (Redis: 2 s).
const QUERY_BUFFER_IDLE_MS: u64 = 2000;

/// Redis's `clientsCronHandleTimeout` and the output buffer soft limit of subscribers that
/// receive nothing new. Blocked clients and subscribers are never idle.
fn check_clients(server: &Server) {
    let timeout = server.config.int(config::TIMEOUT) as u64;
    let pubsub = server.store.notifier.pubsub.limits.get();
    let normal = server.normal_output_limits.get();
    let now = now_ms();
    server.clients.evict();
    for client in server.clients.snapshot() {
        let subscribed = client.is_subscribed();
        client.check_output_limits(if subscribed { pubsub } else { normal });
        let idle = now.saturating_sub(client.last_interaction_ms.load(Ordering::Relaxed));
        if idle > QUERY_BUFFER_IDLE_MS && client.query_buffer_free.load(Ordering::Relaxed) > 0 {
            client.release_buffers.store(true, Ordering::Relaxed);
            client.wake();
        }
        if timeout > 0
            && idle > timeout * 1000
            && !subscribed
            && !client.has_flag(FLAG_MONITOR | FLAG_BLOCKED)
        {
            tracing::debug!("Closing idle client id={}", client.id);
            client.kill();
        }
    }
}
