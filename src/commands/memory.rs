//! MEMORY (Redis's object.c): a key's usage, the overhead report behind MEMORY STATS, MEMORY
//! DOCTOR and INFO's memory section, and the allocator's controls.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{CmdResult, Ctx, Error, SYNTAX, reply_help};
use crate::alloc;
use crate::server::Server;
use crate::util::{eq_ignore_case, parse_i64};

/// Where the server's memory goes, as Redis's `getMemoryOverheadData`. There are no replicas,
/// cluster links or scripts, so their shares are zero. Without jemalloc's statistics Redis
/// takes the allocator's active and resident bytes to be the process's RSS, as done here.
pub struct Overhead {
    pub total: u64,
    pub startup: u64,
    pub peak: u64,
    pub rss: u64,
    clients: u64,
    aof_buffer: u64,
    /// Database index and the bytes of its table (nodes and buckets), for databases with keys.
    tables: Vec<(usize, u64)>,
    keys: u64,
}

impl Overhead {
    pub fn measure(server: &Server) -> Overhead {
        let total = alloc::allocated() as u64;
        let clients = server
            .clients
            .snapshot()
            .iter()
            .map(|c| c.total_memory() as u64)
            .sum();
        let aof = server.store.notifier.aof.status();
        let mut tables = Vec::new();
        let mut keys = 0;
        for db in server.store.dbs() {
            let len = db.len() as u64;
            if len > 0 {
                keys += len;
                tables.push((db.index, db.table_bytes() as u64));
            }
        }
        Overhead {
            total,
            startup: server.stats.startup_allocated.load(Ordering::Relaxed),
            peak: server.stats.note_memory_peak(total),
            rss: alloc::resident() as u64,
            clients,
            aof_buffer: if aof.enabled { aof.buffer as u64 } else { 0 },
            tables,
            keys,
        }
    }

    /// Redis's `used_memory_overhead`: everything but the data itself.
    pub fn overhead(&self) -> u64 {
        self.startup + self.clients + self.aof_buffer + self.tables.iter().map(|t| t.1).sum::<u64>()
    }

    pub fn dataset(&self) -> u64 {
        self.total.saturating_sub(self.overhead())
    }

    /// Allocated bytes beyond those at startup (at least 1, as Redis divides by it).
    fn net_usage(&self) -> u64 {
        self.total.saturating_sub(self.startup).max(1)
    }

    // The ratios are single precision, as Redis computes them in `float`.
    pub fn dataset_percentage(&self) -> f32 {
        self.dataset() as f32 * 100.0 / self.net_usage() as f32
    }

    pub fn peak_percentage(&self) -> f32 {
        self.total as f32 * 100.0 / self.peak.max(1) as f32
    }

    fn fragmentation(&self) -> f32 {
        self.rss as f32 / self.total.max(1) as f32
    }

    fn fragmentation_bytes(&self) -> i64 {
        self.rss as i64 - self.total as i64
    }
}

pub fn memory_stats(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let m = Overhead::measure(ctx.server);
    let reply = &mut *ctx.reply;
    reply.map(27 + m.tables.len());
    let head = [
        ("peak.allocated", Stat::Int(m.peak as i64)),
        ("total.allocated", Stat::Int(m.total as i64)),
        ("startup.allocated", Stat::Int(m.startup as i64)),
        ("replication.backlog", Stat::Int(0)),
        ("clients.slaves", Stat::Int(0)),
        ("clients.normal", Stat::Int(m.clients as i64)),
        ("cluster.links", Stat::Int(0)),
        ("aof.buffer", Stat::Int(m.aof_buffer as i64)),
        ("lua.caches", Stat::Int(0)),
        ("functions.caches", Stat::Int(0)),
    ];
    put_stats(reply, &head);
    for (index, table) in &m.tables {
        reply.bulk(format!("db.{index}").as_bytes());
        reply.map(3);
        // Expiry times live in the table's entries, and there are no cluster slots.
        put_stats(
            reply,
            &[
                ("overhead.hashtable.main", Stat::Int(*table as i64)),
                ("overhead.hashtable.expires", Stat::Int(0)),
                ("overhead.hashtable.slot-to-keys", Stat::Int(0)),
            ],
        );
    }
    let fragmentation = m.fragmentation() as f64;
    let fragmentation_bytes = m.fragmentation_bytes();
    let bytes_per_key = m.net_usage().checked_div(m.keys).unwrap_or(0);
    let tail = [
        ("overhead.total", Stat::Int(m.overhead() as i64)),
        ("keys.count", Stat::Int(m.keys as i64)),
        ("keys.bytes-per-key", Stat::Int(bytes_per_key as i64)),
        ("dataset.bytes", Stat::Int(m.dataset() as i64)),
        (
            "dataset.percentage",
            Stat::Ratio(m.dataset_percentage() as f64),
        ),
        ("peak.percentage", Stat::Ratio(m.peak_percentage() as f64)),
        ("allocator.allocated", Stat::Int(m.total as i64)),
        ("allocator.active", Stat::Int(m.rss as i64)),
        ("allocator.resident", Stat::Int(m.rss as i64)),
        ("allocator-fragmentation.ratio", Stat::Ratio(fragmentation)),
        (
            "allocator-fragmentation.bytes",
            Stat::Int(fragmentation_bytes),
        ),
        ("allocator-rss.ratio", Stat::Ratio(1.0)),
        ("allocator-rss.bytes", Stat::Int(0)),
        ("rss-overhead.ratio", Stat::Ratio(1.0)),
        ("rss-overhead.bytes", Stat::Int(0)),
        ("fragmentation", Stat::Ratio(fragmentation)),
        ("fragmentation.bytes", Stat::Int(fragmentation_bytes)),
    ];
    put_stats(reply, &tail);
    Ok(())
}

fn put_stats(reply: &mut crate::protocol::Reply, stats: &[(&str, Stat)]) {
    for (name, value) in stats {
        reply.bulk(name.as_bytes());
        match *value {
            Stat::Int(n) => reply.int(n),
            Stat::Ratio(x) => reply.double(x),
        }
    }
}

enum Stat {
    Int(i64),
    Ratio(f64),
}

/// Redis 7.0's `getMemoryDoctorReport`, for the conditions that can arise here: a big peak,
/// fragmentation, and big client buffers.
pub fn memory_doctor(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let m = Overhead::measure(ctx.server);
    let clients = ctx.server.clients.len().max(1) as u64;
    let mut findings: Vec<&str> = Vec::new();
    let empty = m.total < 5 << 20;
    if !empty {
        if m.peak as f32 / m.total as f32 > 1.5 {
            findings.push(BIG_PEAK);
        }
        let (ratio, bytes) = (m.fragmentation(), m.fragmentation_bytes());
        if ratio > 1.4 && bytes > 10 << 20 {
            findings.push(HIGH_FRAGMENTATION);
        }
        if ratio > 1.1 && bytes > 10 << 20 {
            findings.push(HIGH_ALLOCATOR_FRAGMENTATION);
        }
        if m.clients / clients > 1024 * 200 {
            findings.push(BIG_CLIENT_BUFFERS);
        }
    }
    let report = if empty {
        EMPTY.to_string()
    } else if findings.is_empty() {
        "Hi Sam, I can't find any memory issue in your instance. I can only account for what \
         occurs on this base.\n"
            .to_string()
    } else {
        format!(
            "Sam, I detected a few issues in this Redis instance memory implants:\n\n{}I'm here \
             to keep you safe, Sam. I want to help you.\n",
            findings.concat()
        )
    };
    ctx.reply.verbatim("txt", report.as_bytes());
    Ok(())
}

const EMPTY: &str = "Hi Sam, this instance is empty or is using very little memory, my issues \
    detector can't be used in these conditions. Please, leave for your mission on Earth and fill \
    it with some data. The new Sam and I will be back to our programming as soon as I finished \
    rebooting.\n";
const BIG_PEAK: &str = " * Peak memory: In the past this instance used more than 150% the memory \
    that is currently using. The allocator is normally not able to release memory after a peak, \
    so you can expect to see a big fragmentation ratio, however this is actually harmless and is \
    only due to the memory peak, and if the Redis instance Resident Set Size (RSS) is currently \
    bigger than expected, the memory will be used as soon as you fill the Redis instance with \
    more data. If the memory peak was only occasional and you want to try to reclaim memory, \
    please try the MEMORY PURGE command, otherwise the only other option is to shutdown and \
    restart the instance.\n\n";
const HIGH_FRAGMENTATION: &str = " * High total RSS: This instance has a memory fragmentation \
    and RSS overhead greater than 1.4 (this means that the Resident Set Size of the Redis process \
    is much larger than the sum of the logical allocations Redis performed). This problem is \
    usually due either to a large peak memory (check if there is a peak memory entry above in the \
    report) or may result from a workload that causes the allocator to fragment memory a lot. If \
    the problem is a large peak memory, then there is no issue. Otherwise, make sure you are \
    using the Jemalloc allocator and not the default libc malloc. Note: The currently used \
    allocator is \"libc\".\n\n";
const HIGH_ALLOCATOR_FRAGMENTATION: &str = " * High allocator fragmentation: This instance has \
    an allocator external fragmentation greater than 1.1. This problem is usually due either to \
    a large peak memory (check if there is a peak memory entry above in the report) or may \
    result from a workload that causes the allocator to fragment memory a lot. You can try \
    enabling 'activedefrag' config option.\n\n";
const BIG_CLIENT_BUFFERS: &str = " * Big client buffers: The clients output buffers in this \
    instance are greater than 200K per client (on average). This may result from different \
    causes, like Pub/Sub clients subscribed to channels bot not receiving data fast enough, so \
    that data piles on the Redis instance output buffer, or clients sending commands with large \
    replies or very large sequences of commands in the same pipeline. Please use the CLIENT LIST \
    command in order to investigate the issue if it causes problems in your instance, or to \
    understand better why certain clients are using a big amount of memory.\n\n";

pub fn memory_purge(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    alloc::purge();
    ctx.reply.ok();
    Ok(())
}

/// What Redis built without jemalloc answers.
pub fn memory_malloc_stats(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    ctx.reply
        .bulk(b"Stats not supported for the current allocator");
    Ok(())
}

pub fn memory_help(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    reply_help(
        ctx,
        &[
            "DOCTOR",
            "    Return memory problems reports.",
            "MALLOC-STATS",
            "    Return internal statistics report from the memory allocator.",
            "PURGE",
            "    Attempt to purge dirty pages for reclamation by the allocator.",
            "STATS",
            "    Return information about the memory usage of the server.",
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value. Nested values are",
            "    sampled up to <count> times (default: 5, 0 means sample all).",
        ],
    );
    Ok(())
}

pub fn memory_usage(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[2];
    match args.get(3) {
        None => {}
        Some(opt) if args.len() == 5 && eq_ignore_case(opt, "samples") => {
            parse_i64(&args[4]).ok_or(Error::from(super::NOT_INTEGER))?;
        }
        Some(_) => return Err(SYNTAX.into()),
    }
    let db = ctx.db();
    let mut locked = db.lock(key);
    match locked.peek(key) {
        Some(entry) => {
            // Key bytes, value bytes and the per-entry node, as allocated.
            let value = entry.value.allocated();
            let node = std::mem::size_of::<crate::store::Entry>() + 16 + 8;
            ctx.reply.int((key.len() + value + node) as i64);
        }
        None => ctx.reply.null(),
    }
    Ok(())
}
