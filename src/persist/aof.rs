//! The append-only file, in Redis 7's multi-part layout: inside `appenddirname`, a base file
//! (an RDB snapshot, or commands when `aof-use-rdb-preamble` is off), incremental files of
//! commands, and a manifest naming them in order.
//!
//! Commands that changed data are appended to a buffer in their deterministic form (see
//! `crate::commands::propagate`); the buffer reaches the file before any reply is written to
//! a client (`write_pending`), with an fsync first under `appendfsync always` and once a
//! second under `everysec`. So a client never sees an acknowledgement for a write that a
//! killed server could lose, and `always` also survives a machine crash. Under `always` the
//! clients ready together share one write and one fsync (group commit, as Redis syncs once
//! per turn of its event loop): a reply waits only until the commands fed before it was
//! made are on disk (`horizon`, `covers`).
//!
//! When the disk refuses data, Redis's rules hold: under `always` the server exits, as a
//! write that clients may have seen cannot be rolled back; otherwise the data stays buffered,
//! a short write is cut off the file again, and writes are refused with `-MISCONF` until a
//! retry (by the next reply or the cron) succeeds.
//!
//! BGREWRITEAOF opens a new incremental file for everything from now on, then forks a child
//! that writes a new base from the keyspace as it was at that instant. When the child
//! succeeds, the manifest becomes new base + new incremental file and the old files are
//! deleted. Every step writes the manifest atomically, so a crash at any point loads.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;

use super::child::Child;
use super::rdb;
use crate::config::{self, Config};
use crate::protocol::{encode_command as encode, split_args};
use crate::server::Server;
use crate::store::{Store, Value};
use crate::util::{format_double, strerror};

/// Elements per command when a rewrite writes collections as commands (Redis's
/// AOF_REWRITE_ITEMS_PER_CMD).
const ITEMS_PER_COMMAND: usize = 64;
/// Redis's AOF_WRITE_LOG_ERROR_RATE.
const WRITE_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Aof {
    /// Logging is on: commands are fed to the buffer.
    on: AtomicBool,
    /// Shared with the `everysec` fsync thread.
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    inner: Mutex<Inner>,
    /// Commands fed so far, and how many of them are in the file (and synced, under
    /// `always`); the reply path compares them without a lock.
    fed: AtomicU64,
    written: AtomicU64,
    /// `appendfsync always`.
    always: AtomicBool,
    /// A write or fsync failed and has not succeeded since: writes are refused.
    failing: AtomicBool,
    /// Held from a write to the file until `written` says so: the fsync runs outside
    /// `inner`'s lock, so that other threads go on feeding commands meanwhile, and one
    /// fsync at a time keeps `written` in order.
    writing: Mutex<()>,
    /// DEBUG AOF-FLUSH-SLEEP: microseconds to wait before each write, to show in tests that
    /// no reply leaves before its data is synced.
    flush_sleep_us: AtomicU64,
}

#[derive(Default, Clone)]
struct Manifest {
    base: Option<(String, u64)>,
    incrs: Vec<(String, u64)>,
    history: Vec<(String, u64)>,
}

struct Rewrite {
    child: Child,
    /// Incremental files older than this sequence number are covered by the new base.
    first_incr: u64,
}

#[derive(Default)]
struct Inner {
    buf: Vec<u8>,
    selected: Option<usize>,
    /// Shared with the fsync that runs outside the lock.
    file: Option<Arc<File>>,
    /// `aof-timestamp-enabled`: a `#TS:<unix seconds>` line before commands of a new second.
    timestamps: bool,
    last_timestamp: u64,
    /// Data written since the last fsync (for `everysec`).
    unsynced: bool,
    manifest: Manifest,
    base_size: u64,
    current_size: u64,
    rewrite: Option<Rewrite>,
    scheduled: bool,
    rewrites: u64,
    last_rewrite_failed: bool,
    last_rewrite_secs: Option<u64>,
    write_error: Option<String>,
    /// The `everysec` thread's last fsync failed (Redis's `aof_bio_fsync_status`).
    fsync_error: Option<String>,
    /// When a failed write was last logged: at most one such line every 30 s, as Redis.
    logged_error_at: Option<std::time::Instant>,
}

/// The figures INFO persistence reports.
pub struct Status {
    pub enabled: bool,
    pub rewriting: bool,
    pub scheduled: bool,
    pub rewrites: u64,
    pub last_rewrite_ok: bool,
    pub last_rewrite_secs: i64,
    pub write_ok: bool,
    pub current_size: u64,
    pub base_size: u64,
    pub buffer: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn names(config: &Config) -> (PathBuf, String) {
    (
        PathBuf::from(config.text(config::APPENDDIRNAME)),
        config.text(config::APPENDFILENAME),
    )
}

/// Why a manifest was refused, and the line number and text it stopped at.
type ManifestError = (Option<(usize, String)>, &'static str);

impl Manifest {
    /// Parses a manifest as Redis's `aofLoadManifestFromFile` does, refusing what it refuses
    /// with its words; the error carries the line it stopped at.
    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        const MAX_LINE: usize = 1024;
        const INVALID: &str = "Invalid AOF manifest file format";
        if text.is_empty() {
            return Err((None, "Found an empty AOF manifest"));
        }
        let mut manifest = Manifest::default();
        let mut max_seq = 0;
        for (index, raw) in text.split_inclusive('\n').enumerate() {
            if raw.starts_with('#') {
                continue;
            }
            let line = raw.trim_matches([' ', '\t', '\r', '\n']);
            let fail = |why| Err((Some((index + 1, line.to_string())), why));
            if raw.len() > MAX_LINE || !raw.ends_with('\n') {
                return fail("The AOF manifest file contains too long line");
            }
            let words = match split_args(line.as_bytes()) {
                Some(words) if words.len() >= 6 && words.len() % 2 == 0 => words,
                _ => return fail(INVALID),
            };
            let (mut file, mut seq, mut kind) = (None, 0u64, None);
            for pair in words.chunks(2) {
                let value = String::from_utf8_lossy(&pair[1]).into_owned();
                match pair[0].to_ascii_lowercase().as_slice() {
                    b"file" => {
                        if value.contains('/') {
                            return fail("File can't be a path, just a filename");
                        }
                        file = Some(value);
                    }
                    b"seq" => seq = value.parse().unwrap_or(0),
                    b"type" => kind = value.chars().next(),
                    _ => {}
                }
            }
            let (Some(file), true, Some(kind)) = (file, seq != 0, kind) else {
                return fail(INVALID);
            };
            match kind {
                'b' if manifest.base.is_some() => {
                    return fail("Found duplicate base file information");
                }
                'b' => manifest.base = Some((file, seq)),
                'h' => manifest.history.push((file, seq)),
                'i' if seq <= max_seq => return fail("Found a non-monotonic sequence number"),
                'i' => {
                    manifest.incrs.push((file, seq));
                    max_seq = seq;
                }
                _ => return fail("Unknown AOF file type"),
            }
        }
        Ok(manifest)
    }

    /// Reads the manifest in `dir`, if there is one, logging Redis's fatal message on error.
    fn read(dir: &Path, name: &str) -> Result<Option<Manifest>, String> {
        let text = match fs::read_to_string(dir.join(format!("{name}.manifest"))) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(format!(
                    "Fatal error: can't open the AOF manifest file {name}.manifest for reading: {e}"
                ));
            }
        };
        Manifest::parse(&text).map(Some).map_err(|(line, why)| {
            tracing::warn!("\n*** FATAL AOF MANIFEST FILE ERROR ***\n");
            if let Some((number, line)) = line {
                tracing::warn!("Reading the manifest file, at line {number}\n");
                tracing::warn!(">>> '{line}'\n");
            }
            why.to_string()
        })
    }

    fn render(&self) -> String {
        // File names with spaces or special characters are quoted, as `sdscatrepr` does.
        let quoted = |file: &str| {
            let plain = file
                .bytes()
                .all(|c| c.is_ascii_graphic() && c != b'\\' && c != b'"');
            if plain {
                file.to_string()
            } else {
                crate::util::repr(file.as_bytes())
            }
        };
        let mut out = String::new();
        let base = self.base.iter().map(|(f, s)| (f, s, 'b'));
        let history = self.history.iter().map(|(f, s)| (f, s, 'h'));
        let incrs = self.incrs.iter().map(|(f, s)| (f, s, 'i'));
        for (file, seq, kind) in base.chain(history).chain(incrs) {
            out.push_str(&format!("file {} seq {seq} type {kind}\n", quoted(file)));
        }
        out
    }

    /// Writes the manifest to a temporary file, syncs it and renames it into place.
    fn persist(&self, dir: &Path, name: &str) -> io::Result<()> {
        let temp = dir.join(format!("temp-{name}.manifest"));
        let mut file = File::create(&temp)?;
        file.write_all(self.render().as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, dir.join(format!("{name}.manifest")))?;
        File::open(dir)?.sync_all()
    }

    fn next_incr_seq(&self) -> u64 {
        self.incrs.last().map_or(1, |(_, seq)| seq + 1)
    }

    fn next_base_seq(&self) -> u64 {
        self.base.as_ref().map_or(1, |(_, seq)| seq + 1)
    }
}

/// Writes the keyspace and the function libraries as a base file: an RDB snapshot, or
/// commands that rebuild them.
fn write_base(store: &Store, config: &Config, functions: &[Bytes], path: &Path) -> io::Result<()> {
    let mut file = File::create(path)?;
    if config.bool(config::AOF_USE_RDB_PREAMBLE) {
        rdb::save(store, config, functions, true, None, &mut file)?;
    } else {
        let mut out = io::BufWriter::with_capacity(1 << 16, &mut file);
        if config.bool(config::AOF_TIMESTAMP_ENABLED) {
            write!(out, "#TS:{}\r\n", crate::util::now_ms() / 1000)?;
        }
        let mut buf = Vec::new();
        for code in functions {
            encode(&mut buf, &[b"FUNCTION", b"LOAD", code]);
        }
        out.write_all(&buf)?;
        write_commands(store, &mut out)?;
        out.flush()?;
    }
    file.sync_all()
}

/// The keyspace as commands, in batches of `ITEMS_PER_COMMAND` elements.
fn write_commands(store: &Store, out: &mut impl Write) -> io::Result<()> {
    let mut buf = Vec::new();
    for db in store.dbs() {
        if db.is_empty() {
            continue;
        }
        encode(&mut buf, &[b"SELECT", db.index.to_string().as_bytes()]);
        let mut result = Ok(());
        db.for_each(|key, entry| {
            if result.is_err() {
                return;
            }
            let pairs = |items: &mut dyn Iterator<Item = [Vec<u8>; 2]>| items.flatten().collect();
            match &entry.value {
                Value::Str(s) => {
                    let mut scratch = itoa::Buffer::new();
                    encode(&mut buf, &[b"SET", key, s.bytes(&mut scratch)]);
                }
                Value::List(list) => {
                    let items = list.iter().map(<[u8]>::to_vec).collect();
                    batched(&mut buf, b"RPUSH", key, items, 1);
                }
                Value::Set(set) => batched(&mut buf, b"SADD", key, set.members(), 1),
                Value::Hash(hash) => {
                    let items = pairs(&mut hash.iter().map(|(f, v)| [f.to_vec(), v.to_vec()]));
                    batched(&mut buf, b"HSET", key, items, 2);
                }
                Value::Zset(zset) => {
                    let entries = zset.all().into_iter();
                    let items =
                        pairs(&mut entries.map(|(m, s)| [format_double(s).into_bytes(), m]));
                    batched(&mut buf, b"ZADD", key, items, 2);
                }
                Value::Stream(stream) => write_stream(&mut buf, key, stream),
            }
            if let Some(at) = entry.expire_at() {
                encode(&mut buf, &[b"PEXPIREAT", key, at.to_string().as_bytes()]);
            }
            if buf.len() >= 1 << 16 {
                result = out.write_all(&buf);
                buf.clear();
            }
        });
        result?;
    }
    out.write_all(&buf)
}

/// The commands that rebuild a stream, as Redis's rewriteStreamObject writes them: XADD of
/// every entry (or of a placeholder trimmed away at once, for an empty stream), XSETID with the
/// counters, then each group with XGROUP CREATE, its pending entries as XCLAIM ... FORCE and
/// consumers that own nothing as XGROUP CREATECONSUMER.
fn write_stream(buf: &mut Vec<u8>, key: &[u8], stream: &crate::store::stream::Stream) {
    use crate::store::stream::StreamId;
    let text = |n: i64| itoa::Buffer::new().format(n).as_bytes().to_vec();
    if stream.is_empty() {
        let first = StreamId::new(0, 1).to_text();
        encode(buf, &[b"XADD", key, b"MAXLEN", b"0", &first, b"x", b"y"]);
    }
    stream.range(StreamId::MIN, StreamId::MAX, false, |entry| {
        let id = entry.id.to_text();
        let pairs: Vec<[Vec<u8>; 2]> = entry
            .pairs()
            .map(|(f, v)| [f.to_vec(), v.to_vec()])
            .collect();
        let mut args: Vec<&[u8]> = vec![b"XADD", key, &id];
        args.extend(pairs.iter().flatten().map(|p| &p[..]));
        encode(buf, &args);
        true
    });
    let c = &stream.counters;
    let added = text(c.entries_added as i64);
    encode(
        buf,
        &[
            b"XSETID",
            key,
            &c.last_id.to_text(),
            b"ENTRIESADDED",
            &added,
            b"MAXDELETEDID",
            &c.max_deleted.to_text(),
        ],
    );
    for (name, group) in stream.groups().into_iter().flatten() {
        let read = text(group.entries_read);
        encode(
            buf,
            &[
                b"XGROUP",
                b"CREATE",
                key,
                name,
                &group.last_id.to_text(),
                b"ENTRIESREAD",
                &read,
            ],
        );
        for (consumer_name, consumer) in &group.consumers {
            if consumer.pel.is_empty() {
                encode(
                    buf,
                    &[b"XGROUP", b"CREATECONSUMER", key, name, consumer_name],
                );
            }
            for id in consumer.pel.keys() {
                let Some(nack) = group.pel.get(id) else {
                    continue;
                };
                let (time, count) = (text(nack.delivery_time), text(nack.delivery_count as i64));
                encode(
                    buf,
                    &[
                        b"XCLAIM",
                        key,
                        name,
                        consumer_name,
                        b"0",
                        &id.to_text(),
                        b"TIME",
                        &time,
                        b"RETRYCOUNT",
                        &count,
                        b"JUSTID",
                        b"FORCE",
                    ],
                );
            }
        }
    }
}

/// `command key items...` with at most `ITEMS_PER_COMMAND` elements of `width` items each.
fn batched(buf: &mut Vec<u8>, command: &[u8], key: &[u8], items: Vec<Vec<u8>>, width: usize) {
    for chunk in items.chunks(ITEMS_PER_COMMAND * width) {
        let mut args: Vec<&[u8]> = vec![command, key];
        args.extend(chunk.iter().map(|i| &i[..]));
        encode(buf, &args);
    }
}

impl Shared {
    fn covers(&self, horizon: u64) -> bool {
        self.written.load(Ordering::Acquire) >= horizon
    }

    /// Writes what was fed to the file, then under `always` syncs it. Clients whose data an
    /// earlier write took along find it covered and leave at once.
    fn write_pending(&self) {
        if self.covers(self.fed.load(Ordering::Acquire)) {
            return;
        }
        let _writing = lock(&self.writing);
        let sleep = self.flush_sleep_us.load(Ordering::Relaxed);
        if sleep > 0 {
            std::thread::sleep(Duration::from_micros(sleep));
        }
        let (file, fed) = {
            let mut inner = lock(&self.inner);
            let inner = &mut *inner;
            let fed = self.fed.load(Ordering::Acquire);
            if self.covers(fed) {
                return;
            }
            let always = self.always.load(Ordering::Relaxed);
            let Some(file) = inner.file.clone() else {
                inner.buf.clear();
                self.written.store(fed, Ordering::Release);
                return;
            };
            if let Err((error, done)) = write_out(&file, &inner.buf) {
                return self.write_failed(inner, &file, error, done, always);
            }
            inner.current_size += inner.buf.len() as u64;
            inner.buf.clear();
            inner.unsynced = !always;
            if !always {
                return self.wrote(inner, fed);
            }
            (file, fed)
        };
        if let Err(e) = file.sync_data() {
            tracing::warn!(
                "Can't persist AOF for fsync error when the AOF fsync policy is 'always': {}. \
                 Exiting...",
                strerror(&e)
            );
            std::process::exit(1);
        }
        self.wrote(&mut lock(&self.inner), fed);
    }

    /// Everything fed up to `fed` is in the file.
    fn wrote(&self, inner: &mut Inner, fed: u64) {
        self.written.store(fed, Ordering::Release);
        if inner.write_error.take().is_some() {
            tracing::warn!("AOF write error looks solved, Redis can write again.");
            self.note_errors(inner);
        }
    }

    /// Mirrors whether a write or fsync error stands in `failing`, which every command reads.
    fn note_errors(&self, inner: &Inner) {
        let failing = inner.write_error.is_some() || inner.fsync_error.is_some();
        self.failing.store(failing, Ordering::Release);
    }

    /// Redis's handling of a failed AOF write: exit under `always` (clients may have read the
    /// data, which cannot be rolled back); otherwise undo a short write, keep the data for a
    /// retry and refuse writes until one succeeds.
    fn write_failed(
        &self,
        inner: &mut Inner,
        file: &File,
        error: io::Error,
        done: usize,
        always: bool,
    ) {
        let now = std::time::Instant::now();
        let log = inner
            .logged_error_at
            .is_none_or(|at| now.duration_since(at) >= WRITE_ERROR_LOG_INTERVAL);
        if log {
            inner.logged_error_at = Some(now);
        }
        let mut kept = done;
        if done > 0 {
            if log {
                tracing::warn!(
                    "Short write while writing to the AOF file: (nwritten={done}, expected={})",
                    inner.buf.len()
                );
            }
            let undone = file
                .metadata()
                .and_then(|meta| file.set_len(meta.len() - done as u64));
            match undone {
                Ok(()) => kept = 0,
                Err(e) if log => tracing::warn!(
                    "Could not remove short write from the append-only file.  Redis may refuse \
                     to load the AOF the next time it starts.  ftruncate: {}",
                    strerror(&e)
                ),
                Err(_) => {}
            }
        } else if log {
            tracing::warn!("Error writing to the AOF file: {}", strerror(&error));
        }
        if always {
            tracing::warn!(
                "Can't recover from AOF write error when the AOF fsync policy is 'always'. \
                 Exiting..."
            );
            std::process::exit(1);
        }
        // A short write that stays in the file is not written again.
        inner.buf.drain(..kept);
        inner.current_size += kept as u64;
        inner.write_error = Some(strerror(&error));
        self.note_errors(inner);
    }
}

/// Writes `data` at the end of the file; a failed write comes back with how much of the
/// data did reach the file.
fn write_out(mut file: &File, data: &[u8]) -> Result<(), (io::Error, usize)> {
    let mut done = 0;
    while done < data.len() {
        match file.write(&data[done..]) {
            Ok(0) => return Err((io::ErrorKind::WriteZero.into(), done)),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((e, done)),
        }
    }
    Ok(())
}

impl Aof {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.shared.inner)
    }

    /// Bytes of commands waiting to be written.
    pub fn buffered(&self) -> usize {
        if !self.is_on() {
            return 0;
        }
        self.inner().buf.capacity()
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Logs one command run against database `db`.
    pub fn feed(&self, db: usize, args: &[&[u8]]) {
        if !self.is_on() {
            return;
        }
        let mut inner = self.inner();
        if inner.timestamps {
            let now = crate::util::now_ms() / 1000;
            if now > inner.last_timestamp {
                inner.last_timestamp = now;
                inner
                    .buf
                    .extend_from_slice(format!("#TS:{now}\r\n").as_bytes());
            }
        }
        if inner.selected != Some(db) {
            encode(&mut inner.buf, &[b"SELECT", db.to_string().as_bytes()]);
            inner.selected = Some(db);
        }
        encode(&mut inner.buf, args);
        // Under the lock, so that a count read under it matches the buffer.
        self.shared.fed.fetch_add(1, Ordering::Release);
    }

    /// What a reply made now depends on: every command fed so far, its own and those of
    /// other clients whose effects it may have read.
    pub fn horizon(&self) -> u64 {
        self.shared.fed.load(Ordering::Acquire)
    }

    /// Whether the commands up to `horizon` are in the file (and on disk, under `always`).
    pub fn covers(&self, horizon: u64) -> bool {
        self.shared.covers(horizon)
    }

    /// Writes what was fed to the file (and syncs it under `appendfsync always`); called
    /// before replies go out, and before the file changes hands. Under `always` the clients
    /// ready together share one write and one fsync: see `server::connection::flush`.
    pub fn write_pending(&self) {
        self.shared.write_pending();
    }

    /// `appendfsync always`: a reply waits for an fsync, which the other clients ready now
    /// had better share.
    pub fn syncs_every_write(&self) -> bool {
        self.shared.always.load(Ordering::Relaxed)
    }

    /// DEBUG AOF-FLUSH-SLEEP.
    pub fn set_flush_sleep(&self, micros: u64) {
        self.shared.flush_sleep_us.store(micros, Ordering::Relaxed);
    }

    /// The error that makes write commands fail while the AOF cannot be written.
    pub fn write_error(&self) -> Option<String> {
        if !self.is_on() || !self.shared.failing.load(Ordering::Acquire) {
            return None;
        }
        let inner = self.inner();
        inner.write_error.clone().or(inner.fsync_error.clone())
    }

    /// The cron's retry of a failed write, so that the server recovers by itself once there
    /// is room again even if no client writes.
    pub fn retry_failed_write(&self) {
        if self.shared.failing.load(Ordering::Relaxed) {
            self.write_pending();
        }
    }

    /// `appendfsync everysec`: a thread syncs the file once a second when it has new data.
    /// A failed fsync refuses writes until one succeeds, as Redis's `aof_bio_fsync_status`.
    fn start_fsync_thread(&self) {
        static STARTED: OnceLock<()> = OnceLock::new();
        STARTED.get_or_init(|| {
            let shared = self.shared.clone();
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                    let file = {
                        let mut inner = lock(&shared.inner);
                        if !std::mem::take(&mut inner.unsynced) {
                            continue;
                        }
                        inner.file.clone()
                    };
                    let Some(file) = file else { continue };
                    let synced = file.sync_data();
                    let mut inner = lock(&shared.inner);
                    match synced {
                        Ok(()) => inner.fsync_error = None,
                        Err(e) => {
                            tracing::warn!(
                                "Error trying to fsync the append only file: {}",
                                strerror(&e)
                            );
                            inner.fsync_error = Some(strerror(&e));
                            inner.unsynced = true;
                        }
                    }
                    shared.note_errors(&inner);
                }
            });
        });
    }

    /// Reads `appendfsync` and `aof-timestamp-enabled` (at start and on CONFIG SET).
    pub fn apply_config(&self, config: &Config) {
        let mut inner = self.inner();
        let always = config.text(config::APPENDFSYNC) == "always";
        self.shared.always.store(always, Ordering::Relaxed);
        inner.timestamps = config.bool(config::AOF_TIMESTAMP_ENABLED);
    }

    pub fn status(&self) -> Status {
        let inner = self.inner();
        Status {
            enabled: self.is_on(),
            rewriting: inner.rewrite.is_some(),
            scheduled: inner.scheduled,
            rewrites: inner.rewrites,
            last_rewrite_ok: !inner.last_rewrite_failed,
            last_rewrite_secs: inner.last_rewrite_secs.map_or(-1, |s| s as i64),
            write_ok: inner.write_error.is_none() && inner.fsync_error.is_none(),
            current_size: inner.current_size,
            base_size: inner.base_size,
            buffer: inner.buf.len(),
        }
    }

    pub fn rewriting(&self) -> bool {
        self.inner().rewrite.is_some()
    }

    /// At start with `appendonly yes`: loads the files the manifest names, or creates a base
    /// and an incremental file when there is no AOF yet; then turns logging on.
    pub fn start(&self, server: &Server) -> Result<(), String> {
        let (dir, name) = names(&server.config);
        self.apply_config(&server.config);
        let manifest = upgrade_old_file(&dir, &name, Manifest::read(&dir, &name)?)?;
        let mut inner = self.inner();
        match manifest {
            Some(manifest) if manifest.base.is_some() || !manifest.incrs.is_empty() => {
                let started = std::time::Instant::now();
                (inner.base_size, inner.current_size) = replay(server, &dir, &manifest)?;
                tracing::info!(
                    "DB loaded from append only file: {:.3} seconds",
                    started.elapsed().as_secs_f64()
                );
                inner.manifest = manifest;
            }
            _ => {
                fs::create_dir_all(&dir)
                    .map_err(|e| format!("Can't create the AOF directory: {e}"))?;
                let seq = inner.manifest.next_base_seq();
                let base = format!("{name}.{seq}.base.{}", base_extension(&server.config));
                let functions = server.scripts.library_codes();
                write_base(&server.store, &server.config, &functions, &dir.join(&base))
                    .map_err(|e| format!("Can't write the AOF base file: {e}"))?;
                inner.base_size = fs::metadata(dir.join(&base)).map_or(0, |m| m.len());
                inner.current_size = inner.base_size;
                inner.manifest.base = Some((base, seq));
                tracing::info!("Creating AOF base file {name}.{seq}.base on server start");
            }
        }
        if inner.manifest.incrs.is_empty() {
            let seq = inner.manifest.next_incr_seq();
            inner
                .manifest
                .incrs
                .push((format!("{name}.{seq}.incr.aof"), seq));
        }
        inner
            .manifest
            .persist(&dir, &name)
            .map_err(|e| format!("Can't persist the AOF manifest: {e}"))?;
        let (incr, _) = inner
            .manifest
            .incrs
            .last()
            .expect("one incremental file")
            .clone();
        inner.file = Some(Arc::new(
            open_append(&dir.join(incr)).map_err(|e| e.to_string())?,
        ));
        inner.selected = None;
        drop(inner);
        self.on.store(true, Ordering::Release);
        self.start_fsync_thread();
        Ok(())
    }

    /// DEBUG LOADAOF: writes what is buffered, empties the keyspace and loads the files again.
    /// The caller holds the gate exclusively.
    pub fn reload(&self, server: &Server) -> Result<(), String> {
        self.write_pending();
        let (dir, _) = names(&server.config);
        let manifest = self.inner().manifest.clone();
        server.store.empty();
        // The replayed commands must not be logged again.
        let was_on = self.on.swap(false, Ordering::AcqRel);
        server.store.notifier.loading.store(true, Ordering::Relaxed);
        let replayed = replay(server, &dir, &manifest);
        server
            .store
            .notifier
            .loading
            .store(false, Ordering::Relaxed);
        self.on.store(was_on, Ordering::Release);
        let (base_size, current_size) = replayed?;
        let mut inner = self.inner();
        inner.base_size = base_size;
        inner.current_size = current_size;
        Ok(())
    }

    /// CONFIG SET appendonly yes: logs from now on into a new incremental file and rewrites
    /// a base from the current data. The caller holds the gate exclusively.
    pub fn enable(&self, server: &Server) -> io::Result<()> {
        if self.is_on() {
            return Ok(());
        }
        let (dir, name) = names(&server.config);
        fs::create_dir_all(&dir)?;
        self.apply_config(&server.config);
        {
            let mut inner = self.inner();
            if let Some(manifest) = Manifest::read(&dir, &name).map_err(io::Error::other)? {
                inner.manifest = manifest;
            }
            inner.buf.clear();
            let fed = self.shared.fed.load(Ordering::Acquire);
            self.shared.written.store(fed, Ordering::Release);
            inner.selected = None;
        }
        self.on.store(true, Ordering::Release);
        self.start_fsync_thread();
        self.start_rewrite(server)
    }

    /// CONFIG SET appendonly no: writes and syncs what is buffered, stops logging.
    pub fn disable(&self) {
        self.write_pending();
        self.on.store(false, Ordering::Release);
        let mut inner = self.inner();
        if let Some(file) = inner.file.take() {
            let _ = file.sync_data();
        }
        if let Some(rewrite) = inner.rewrite.take() {
            rewrite.child.kill();
            let _ = fs::remove_file(temp_rewrite(rewrite.child.pid));
        }
    }

    /// At shutdown: everything buffered reaches the disk.
    pub fn flush_for_shutdown(&self) {
        self.write_pending();
        let mut inner = self.inner();
        if let Some(file) = &inner.file {
            let _ = file.sync_data();
        }
        if let Some(rewrite) = inner.rewrite.take() {
            rewrite.child.kill();
            let _ = fs::remove_file(temp_rewrite(rewrite.child.pid));
        }
    }

    /// BGREWRITEAOF: switches to a new incremental file and forks a child that writes a new
    /// base. The caller holds the gate exclusively.
    pub fn start_rewrite(&self, server: &Server) -> io::Result<()> {
        self.write_pending();
        let (dir, name) = names(&server.config);
        fs::create_dir_all(&dir)?;
        let mut inner = self.inner();
        if inner.rewrite.is_some() {
            return Err(io::Error::other(
                "Background append only file rewriting already in progress",
            ));
        }
        inner.scheduled = false;
        // With logging on, what comes next goes to a new incremental file, which the new base
        // does not cover; with it off, the new base covers every incremental file.
        let first_incr = if self.is_on() {
            let seq = inner.manifest.next_incr_seq();
            let incr = format!("{name}.{seq}.incr.aof");
            let file = Arc::new(open_append(&dir.join(&incr))?);
            let mut manifest = inner.manifest.clone();
            manifest.incrs.push((incr, seq));
            manifest.persist(&dir, &name)?;
            inner.manifest = manifest;
            if let Some(old) = inner.file.replace(file) {
                let _ = old.sync_data();
            }
            inner.selected = None;
            seq
        } else {
            u64::MAX
        };
        // Read before the fork: the child must take no lock another thread might hold.
        let functions = server.scripts.library_codes();
        let child = Child::spawn(|| {
            write_base(
                &server.store,
                &server.config,
                &functions,
                Path::new(&temp_rewrite(std::process::id() as i32)),
            )
            .is_ok()
        })?;
        tracing::info!(
            "Background append only file rewriting started by pid {}",
            child.pid
        );
        inner.rewrite = Some(Rewrite { child, first_incr });
        Ok(())
    }

    pub fn schedule_rewrite(&self) {
        self.inner().scheduled = true;
    }

    /// Collects a finished rewrite child: installs its base and drops the files it covers.
    pub fn reap(&self, server: &Server) {
        let mut inner = self.inner();
        let Some(done) = inner.rewrite.as_ref().and_then(|r| r.child.poll()) else {
            return;
        };
        let rewrite = inner.rewrite.take().expect("checked above");
        let temp = temp_rewrite(rewrite.child.pid);
        inner.last_rewrite_secs = Some(rewrite.child.started.elapsed().as_secs());
        let installed = if done {
            self.install_base(&mut inner, server, &temp, rewrite.first_incr)
        } else {
            Err(io::Error::other("child failed"))
        };
        match installed {
            Ok(()) => {
                inner.rewrites += 1;
                inner.last_rewrite_failed = false;
                tracing::info!("Background AOF rewrite finished successfully");
            }
            Err(e) => {
                let _ = fs::remove_file(&temp);
                inner.last_rewrite_failed = true;
                tracing::warn!("Background AOF rewrite failed: {e}");
            }
        }
    }

    fn install_base(
        &self,
        inner: &mut Inner,
        server: &Server,
        temp: &str,
        first_incr: u64,
    ) -> io::Result<()> {
        let (dir, name) = names(&server.config);
        let seq = inner.manifest.next_base_seq();
        let base = format!("{name}.{seq}.base.{}", base_extension(&server.config));
        fs::rename(temp, dir.join(&base))?;
        let mut manifest = inner.manifest.clone();
        let old_base = manifest.base.replace((base.clone(), seq));
        let (covered, kept): (Vec<_>, Vec<_>) = manifest
            .incrs
            .into_iter()
            .partition(|(_, s)| *s < first_incr);
        manifest.incrs = kept;
        // The files the new base covers become history, newest first as Redis lists them:
        // deleted at once, or kept while `aof-disable-auto-gc` is on.
        let older = std::mem::take(&mut manifest.history);
        manifest.history = covered.into_iter().chain(old_base).chain(older).collect();
        let dropped = if server.config.bool(config::AOF_DISABLE_AUTO_GC) {
            Vec::new()
        } else {
            std::mem::take(&mut manifest.history)
        };
        manifest.persist(&dir, &name)?;
        inner.manifest = manifest;
        for (file, _) in dropped {
            let _ = fs::remove_file(dir.join(file));
        }
        inner.base_size = fs::metadata(dir.join(&base)).map_or(0, |m| m.len());
        let incr_size: u64 = inner
            .manifest
            .incrs
            .iter()
            .map(|(f, _)| fs::metadata(dir.join(f)).map_or(0, |m| m.len()))
            .sum();
        inner.current_size = inner.base_size + incr_size;
        Ok(())
    }

    /// CONFIG SET aof-disable-auto-gc no: deletes the history files kept meanwhile.
    pub fn delete_history(&self, config: &Config) {
        let (dir, name) = names(config);
        let mut inner = self.inner();
        if inner.manifest.history.is_empty() {
            return;
        }
        let mut manifest = inner.manifest.clone();
        let history = std::mem::take(&mut manifest.history);
        if manifest.persist(&dir, &name).is_ok() {
            inner.manifest = manifest;
            for (file, _) in history {
                let _ = fs::remove_file(dir.join(file));
            }
        }
    }

    /// Whether BGREWRITEAOF SCHEDULE or `auto-aof-rewrite-percentage` asks for a rewrite now.
    pub fn rewrite_due(&self, config: &Config) -> bool {
        let inner = self.inner();
        if inner.rewrite.is_some() {
            return false;
        }
        if inner.scheduled {
            return true;
        }
        if !self.is_on() {
            return false;
        }
        let percentage = config.int(config::AUTO_AOF_REWRITE_PERCENTAGE) as u64;
        let min_size = config.int(config::AUTO_AOF_REWRITE_MIN_SIZE) as u64;
        let base = inner.base_size.max(1);
        percentage > 0
            && inner.current_size >= min_size
            && (inner.current_size - base.min(inner.current_size)) * 100 / base >= percentage
    }
}

/// A single `appendfilename` file in the working directory is an AOF from before Redis 7:
/// it moves into the AOF directory as the base, as Redis's `aofUpgradePrepare` does, when
/// there is no manifest yet or one that only names that file as its base.
fn upgrade_old_file(
    dir: &Path,
    name: &str,
    manifest: Option<Manifest>,
) -> Result<Option<Manifest>, String> {
    let old = Path::new(name);
    if !old.is_file() {
        return Ok(manifest);
    }
    let upgrade = match &manifest {
        None => true,
        Some(m) => {
            (m.base.is_none() && m.incrs.is_empty())
                || (m.incrs.is_empty()
                    && m.base.as_ref().is_some_and(|(f, _)| f == name)
                    && !dir.join(name).exists())
        }
    };
    if !upgrade {
        return Ok(manifest);
    }
    let fail = |e: io::Error| {
        format!(
            "Error trying to move the old AOF file {name} into dir {}: {e}",
            dir.display()
        )
    };
    fs::create_dir_all(dir).map_err(fail)?;
    let mut manifest = manifest.unwrap_or_default();
    manifest.base = Some((name.to_string(), 1));
    manifest.persist(dir, name).map_err(fail)?;
    fs::rename(old, dir.join(name)).map_err(fail)?;
    tracing::info!(
        "Successfully migrated an old-style AOF file ({name}) into the AOF directory ({}).",
        dir.display()
    );
    Ok(Some(manifest))
}

/// Loads every file of `manifest`, base first; returns the base's size and the total size.
fn replay(server: &Server, dir: &Path, manifest: &Manifest) -> Result<(u64, u64), String> {
    let _loading = server.loading.start(0, false);
    let files: Vec<&String> = manifest
        .base
        .iter()
        .map(|(f, _)| f)
        .chain(manifest.incrs.iter().map(|(f, _)| f))
        .collect();
    let (mut base_size, mut total) = (0, 0);
    for (i, file) in files.iter().enumerate() {
        let path = dir.join(file);
        load_file(server, &path, i + 1 == files.len())?;
        let size = fs::metadata(&path).map_or(0, |m| m.len());
        if i == 0 && manifest.base.is_some() {
            base_size = size;
        }
        total += size;
    }
    Ok((base_size, total))
}

fn base_extension(config: &Config) -> &'static str {
    if config.bool(config::AOF_USE_RDB_PREAMBLE) {
        "rdb"
    } else {
        "aof"
    }
}

fn temp_rewrite(pid: i32) -> String {
    format!("temp-rewriteaof-bg-{pid}.aof")
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Runs the commands (or loads the RDB snapshot) in one AOF file. A command cut short at the
/// end of the last file is dropped, and the file truncated, when `aof-load-truncated` allows.
fn load_file(server: &Server, path: &Path, last: bool) -> Result<(), String> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|e| {
        format!("Fatal error: can't open the append log file {shown} for reading: {e}")
    })?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut offset = 0u64;
    if reader
        .fill_buf()
        .map_err(|e| e.to_string())?
        .starts_with(b"REDIS")
    {
        let mut counted = CountingReader {
            inner: &mut reader,
            count: 0,
        };
        let loaded = rdb::load(&mut counted, &server.store, &server.config, false)?;
        server
            .scripts
            .load_libraries(server, &loaded.functions, false)?;
        offset = counted.count;
    }
    let mut replay = Replay::new(server);
    loop {
        match read_command(&mut reader) {
            Ok(Some((args, len))) => {
                replay.run(&args, offset, &shown)?;
                offset += len;
            }
            Ok(None) => break,
            Err(ReadError::Truncated) => {
                return truncated(server, path, last, offset);
            }
            Err(ReadError::Format) => {
                return Err(format!(
                    "Bad file format reading the append only file {shown}: make a backup of your AOF file, then use ./redis-check-aof --fix <filename.manifest>"
                ));
            }
        }
    }
    if let Some(multi_start) = replay.open_multi() {
        tracing::warn!("Revert incomplete MULTI/EXEC transaction in AOF file {shown}");
        return truncated(server, path, last, multi_start);
    }
    Ok(())
}

fn truncated(server: &Server, path: &Path, last: bool, valid: u64) -> Result<(), String> {
    let shown = path.display();
    if !last || !server.config.bool(config::AOF_LOAD_TRUNCATED) {
        return Err(format!(
            "Unexpected end of file reading the append only file {shown}. You can: 1) Make a backup of your AOF file, then use ./redis-check-aof --fix <filename.manifest>. 2) Alternatively you can set the 'aof-load-truncated' configuration option to yes and restart the server."
        ));
    }
    tracing::warn!("!!! Warning: short read while loading the AOF file {shown}!!!");
    tracing::warn!("!!! Truncating the AOF {shown} at offset {valid} !!!");
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(valid))
        .map_err(|e| format!("Error truncating the AOF file {shown}: {e}"))?;
    tracing::warn!("AOF {shown} loaded anyway because aof-load-truncated is enabled");
    Ok(())
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

enum ReadError {
    Truncated,
    Format,
}

/// One `*N` command of bulk strings; None at a clean end of file. Also returns its length.
fn read_command(reader: &mut impl BufRead) -> Result<Option<(Vec<Bytes>, u64)>, ReadError> {
    let mut line = Vec::new();
    let mut len = 0u64;
    let read_line = |reader: &mut dyn BufRead, line: &mut Vec<u8>| -> Result<usize, ReadError> {
        line.clear();
        let n = reader
            .read_until(b'\n', line)
            .map_err(|_| ReadError::Format)?;
        if n > 0 && !line.ends_with(b"\r\n") {
            return Err(ReadError::Truncated);
        }
        Ok(n)
    };
    // Annotations (`#TS:...`) are skipped.
    let mut n = read_line(reader, &mut line)?;
    while n > 0 && line.starts_with(b"#") {
        len += n as u64;
        n = read_line(reader, &mut line)?;
    }
    if n == 0 {
        return Ok(None);
    }
    len += n as u64;
    let count = parse_header(&line, b'*').ok_or(ReadError::Format)?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let n = read_line(reader, &mut line)?;
        if n == 0 {
            return Err(ReadError::Truncated);
        }
        len += n as u64;
        let size = parse_header(&line, b'$').ok_or(ReadError::Format)?;
        let mut arg = vec![0; size + 2];
        reader
            .read_exact(&mut arg)
            .map_err(|_| ReadError::Truncated)?;
        if !arg.ends_with(b"\r\n") {
            return Err(ReadError::Format);
        }
        arg.truncate(size);
        len += size as u64 + 2;
        args.push(Bytes::from(arg));
    }
    Ok(Some((args, len)))
}

fn parse_header(line: &[u8], marker: u8) -> Option<usize> {
    let body = line.strip_prefix(&[marker])?.strip_suffix(b"\r\n")?;
    std::str::from_utf8(body).ok()?.parse().ok()
}

/// Runs logged commands as Redis's fake AOF client does: no replies, no blocking.
struct Replay<'a> {
    server: &'a Server,
    client: crate::client::Client,
    reply: crate::protocol::Reply,
    multi_start: u64,
}

impl<'a> Replay<'a> {
    fn new(server: &'a Server) -> Replay<'a> {
        let handle = crate::client::ClientHandle::new(0, String::new(), String::new(), -1);
        let mut client = crate::client::Client::internal(std::sync::Arc::new(handle), &server.acl);
        client.deny_blocking = true;
        Replay {
            server,
            client,
            reply: crate::protocol::Reply::new(crate::protocol::Protocol::Resp2),
            multi_start: 0,
        }
    }

    fn run(&mut self, args: &[Bytes], offset: u64, file: &str) -> Result<(), String> {
        if self.server.commands.resolve(args).is_err() {
            return Err(format!(
                "Unknown command '{}' reading the append only file {file}",
                String::from_utf8_lossy(&args[0])
            ));
        }
        if self.client.multi.is_none() {
            self.multi_start = offset;
        }
        crate::commands::execute(self.server, &mut self.client, &mut self.reply, args);
        self.reply.clear();
        Ok(())
    }

    /// Where a MULTI without its EXEC began.
    fn open_multi(&self) -> Option<u64> {
        self.client.multi.as_ref().map(|_| self.multi_start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_redis_format() {
        let text = "file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\nfile appendonly.aof.2.incr.aof seq 2 type i\n";
        let manifest = Manifest::parse(text).unwrap();
        assert_eq!(manifest.render(), text);
        assert_eq!(manifest.next_incr_seq(), 3);
        assert_eq!(manifest.next_base_seq(), 2);
        assert!(Manifest::parse("file x seq 1\n").is_err());
    }

    #[test]
    fn reads_commands_and_spots_a_cut_tail() {
        let mut log = Vec::new();
        encode(&mut log, &[b"SET", b"k", b"v"]);
        let (args, len) = read_command(&mut &log[..]).ok().flatten().unwrap();
        assert_eq!(
            args,
            vec![Bytes::from("SET"), Bytes::from("k"), Bytes::from("v")]
        );
        assert_eq!(len, log.len() as u64);
        for cut in 1..log.len() {
            assert!(
                matches!(read_command(&mut &log[..cut]), Err(ReadError::Truncated)),
                "{cut}"
            );
        }
        assert!(matches!(
            read_command(&mut &b"GARBAGE\r\n"[..]),
            Err(ReadError::Format)
        ));
    }
}
