//! Redis's RDB format, version 10 (Redis 7.0): snapshots of the whole keyspace and the
//! DUMP/RESTORE payload of one value.
//!
//! Oxidis writes every value in the plain RDB types (string, list, set, hash, zset with
//! binary scores), which every Redis since 2.6 loads and re-encodes by its own thresholds.
//! It reads everything Redis 2.6 to 7.0 writes, packed encodings included (see `blobs`).
//! Streams are the exception: their nodes are written as the listpacks Redis keeps, which is
//! how Oxidis keeps them too (`stream.rs`).

mod stream;

use std::io::{self, BufRead, Read, Write};

use bytes::Bytes;
use crc::{CRC_64_REDIS, Crc, Digest};

use super::blobs::{self, Element};
use super::lzf;
use crate::config::{self, Config};
use crate::store::clock::AccessClock;
use crate::store::evict::Policy;
use crate::store::{
    End, Entry, Fill, Hash, HashLimits, List, Set, Store, Str, Value, Zset, ZsetLimits,
};
use crate::util::{parse_f64, parse_i64};

pub static CRC64: Crc<u64> = Crc::<u64>::new(&CRC_64_REDIS);

pub const VERSION: u16 = 10;

// Value types.
const STRING: u8 = 0;
const LIST: u8 = 1;
const SET: u8 = 2;
const ZSET: u8 = 3;
const HASH: u8 = 4;
const ZSET_2: u8 = 5;
const HASH_ZIPMAP: u8 = 9;
const LIST_ZIPLIST: u8 = 10;
const SET_INTSET: u8 = 11;
const ZSET_ZIPLIST: u8 = 12;
const HASH_ZIPLIST: u8 = 13;
const LIST_QUICKLIST: u8 = 14;
const HASH_LISTPACK: u8 = 16;
const ZSET_LISTPACK: u8 = 17;
const LIST_QUICKLIST_2: u8 = 18;

// Opcodes between keys.
const OPCODE_FUNCTION2: u8 = 245;
const OPCODE_MODULE_AUX: u8 = 247;
const OPCODE_IDLE: u8 = 248;
const OPCODE_FREQ: u8 = 249;
const OPCODE_AUX: u8 = 250;
const OPCODE_RESIZEDB: u8 = 251;
const OPCODE_EXPIRETIME_MS: u8 = 252;
const OPCODE_EXPIRETIME: u8 = 253;
const OPCODE_SELECTDB: u8 = 254;
const OPCODE_EOF: u8 = 255;

// Special string encodings, flagged by the top two bits of a length byte.
const ENC_INT8: u8 = 0;
const ENC_INT16: u8 = 1;
const ENC_INT32: u8 = 2;
const ENC_LZF: u8 = 3;

/// Quicklist 2 node containers.
const CONTAINER_PLAIN: u64 = 1;
const CONTAINER_PACKED: u64 = 2;

/// The encoding limits a loaded value is built with, from the configuration.
pub struct Limits {
    pub hash: HashLimits,
    pub zset: ZsetLimits,
    pub fill: Fill,
    pub max_intset: usize,
}

impl Limits {
    pub fn from_config(config: &Config) -> Limits {
        Limits {
            hash: HashLimits::from_config(config),
            zset: ZsetLimits::from_config(config),
            fill: Fill(config.int(config::LIST_MAX_LISTPACK_SIZE)),
            max_intset: config.int(config::SET_MAX_INTSET_ENTRIES) as usize,
        }
    }
}

/// Serializes into a buffer; `save` drains it into the file as it grows.
pub struct Encoder {
    pub buf: Vec<u8>,
    compress: bool,
}

impl Encoder {
    pub fn new(compress: bool) -> Encoder {
        Encoder {
            buf: Vec::new(),
            compress,
        }
    }

    fn len(&mut self, n: u64) {
        if n < 1 << 6 {
            self.buf.push(n as u8);
        } else if n < 1 << 14 {
            self.buf.extend([0x40 | (n >> 8) as u8, n as u8]);
        } else if n <= u64::from(u32::MAX) {
            self.buf.push(0x80);
            self.buf.extend((n as u32).to_be_bytes());
        } else {
            self.buf.push(0x81);
            self.buf.extend(n.to_be_bytes());
        }
    }

    /// An integer in the smallest special encoding, as text if it needs more than 32 bits.
    fn int(&mut self, n: i64) {
        if let Ok(n) = i8::try_from(n) {
            self.buf.extend([0xc0 | ENC_INT8, n as u8]);
        } else if let Ok(n) = i16::try_from(n) {
            self.buf.push(0xc0 | ENC_INT16);
            self.buf.extend(n.to_le_bytes());
        } else if let Ok(n) = i32::try_from(n) {
            self.buf.push(0xc0 | ENC_INT32);
            self.buf.extend(n.to_le_bytes());
        } else {
            self.raw_string(itoa::Buffer::new().format(n).as_bytes());
        }
    }

    fn raw_string(&mut self, s: &[u8]) {
        self.len(s.len() as u64);
        self.buf.extend_from_slice(s);
    }

    /// A string as Redis writes it: integers that fit 32 bits in the integer encodings,
    /// strings over 20 bytes LZF-compressed when `rdbcompression` is on and it pays.
    fn string(&mut self, s: &[u8]) {
        if s.len() <= 11
            && let Some(n) = parse_i64(s)
            && i32::try_from(n).is_ok()
            && itoa::Buffer::new().format(n).as_bytes() == s
        {
            return self.int(n);
        }
        if self.compress
            && s.len() > 20
            && let Some(packed) = lzf::compress(s, s.len() - 4)
        {
            self.buf.push(0xc0 | ENC_LZF);
            self.len(packed.len() as u64);
            self.len(s.len() as u64);
            self.buf.extend_from_slice(&packed);
            return;
        }
        self.raw_string(s);
    }

    fn value_type(value: &Value) -> u8 {
        match value {
            Value::Str(_) => STRING,
            Value::List(_) => LIST,
            Value::Set(_) => SET,
            Value::Hash(_) => HASH,
            Value::Zset(_) => ZSET_2,
            Value::Stream(_) => stream::STREAM_LISTPACKS_2,
        }
    }

    fn value_body(&mut self, value: &Value) {
        match value {
            Value::Str(Str::Int(n)) => self.int(*n),
            Value::Str(s) => self.string(s.bytes(&mut itoa::Buffer::new())),
            Value::List(list) => {
                self.len(list.len() as u64);
                for item in list.iter() {
                    self.string(item);
                }
            }
            Value::Set(set) => {
                self.len(set.len() as u64);
                set.for_each(|member| self.string(member));
            }
            Value::Hash(hash) => {
                self.len(hash.len() as u64);
                for (field, value) in hash.iter() {
                    self.string(field);
                    self.string(value);
                }
            }
            Value::Zset(zset) => {
                self.len(zset.len() as u64);
                zset.visit_range(0, zset.len(), false, |member, score| {
                    self.string(member);
                    self.buf.extend(score.to_le_bytes());
                });
            }
            Value::Stream(s) => self.stream(s),
        }
    }

    /// One key with its expiry, as it appears in a snapshot.
    pub fn key(&mut self, key: &[u8], entry: &Entry, access: &Access, now: u64) {
        if let Some(at) = entry.expire_at() {
            self.buf.push(OPCODE_EXPIRETIME_MS);
            self.buf.extend(at.to_le_bytes());
        }
        // Redis keeps the access clock only under the policies that read it.
        let value = &entry.value;
        match (access.policy, entry.clock()) {
            (policy, clock) if policy.is_lru() => {
                self.buf.push(OPCODE_IDLE);
                self.len(clock.map_or(0, |c| AccessClock::idle_ms(c, now) / 1000));
            }
            (policy, clock) if policy.is_lfu() => {
                self.buf.push(OPCODE_FREQ);
                let freq = clock.map_or(0, |c| access.clock.frequency(c, now));
                self.buf.push(freq as u8);
            }
            _ => {}
        }
        self.buf.push(Self::value_type(value));
        self.string(key);
        self.value_body(value);
    }

    /// Each library's code after the function opcode (RDB_OPCODE_FUNCTION2).
    fn functions(&mut self, codes: &[Bytes]) {
        for code in codes {
            self.buf.push(OPCODE_FUNCTION2);
            self.string(code);
        }
    }

    fn aux(&mut self, name: &str, value: &[u8]) {
        self.buf.push(OPCODE_AUX);
        self.string(name.as_bytes());
        self.string(value);
    }
}

/// DUMP's payload: the value in RDB form, then the RDB version and a CRC64 of both.
pub fn dump(value: &Value) -> Vec<u8> {
    let mut encoder = Encoder::new(true);
    encoder.buf.push(Encoder::value_type(value));
    encoder.value_body(value);
    let mut payload = encoder.buf;
    payload.extend(VERSION.to_le_bytes());
    let crc = CRC64.checksum(&payload);
    payload.extend(crc.to_le_bytes());
    payload
}

/// The value in a DUMP payload, if its version and checksum are right.
pub fn undump(payload: &[u8], limits: &Limits) -> Result<Value, &'static str> {
    let body = verified_body(payload).ok_or("ERR DUMP payload version or checksum are wrong")?;
    let mut decoder = Decoder::new(body, false);
    let kind = decoder.byte().map_err(|_| "ERR Bad data format")?;
    let value = decoder
        .value(kind, limits)
        .map_err(|_| "ERR Bad data format")?;
    if !decoder.input.is_empty() || value_is_empty(&value) {
        return Err("ERR Bad data format");
    }
    Ok(value)
}

/// FUNCTION DUMP's payload: each library's code after the function opcode, then the RDB
/// version and a CRC64, as DUMP's.
pub fn dump_functions(codes: &[Bytes], compress: bool) -> Vec<u8> {
    let mut encoder = Encoder::new(compress);
    encoder.functions(codes);
    let mut payload = encoder.buf;
    payload.extend(VERSION.to_le_bytes());
    let crc = CRC64.checksum(&payload);
    payload.extend(crc.to_le_bytes());
    payload
}

/// The library codes in a FUNCTION DUMP payload, if its version and checksum are right.
pub fn undump_functions(payload: &[u8]) -> Result<Vec<Bytes>, String> {
    let body = verified_body(payload).ok_or("ERR DUMP payload version or checksum are wrong")?;
    let mut decoder = Decoder::new(body, false);
    let mut codes = Vec::new();
    while !decoder.input.is_empty() {
        match decoder.byte() {
            Ok(OPCODE_FUNCTION2) => {}
            Ok(_) => return Err("ERR given type is not a function".into()),
            Err(_) => return Err("ERR can not read data type".into()),
        }
        let code = decoder
            .string()
            .map_err(|_| "ERR failed loading the given functions payload")?;
        codes.push(Bytes::from(code));
    }
    Ok(codes)
}

/// A DUMP payload's body, if the version and checksum after it are right.
fn verified_body(payload: &[u8]) -> Option<&[u8]> {
    if payload.len() < 10 {
        return None;
    }
    let (body, footer) = payload.split_at(payload.len() - 10);
    let version = u16::from_le_bytes([footer[0], footer[1]]);
    let crc = u64::from_le_bytes(footer[2..].try_into().expect("8 bytes"));
    if version > VERSION || (crc != 0 && CRC64.checksum(&payload[..payload.len() - 8]) != crc) {
        return None;
    }
    Some(body)
}

/// Writes a snapshot of every database and the function libraries (their codes) to `out`;
/// `aof_base` marks it as the base of an append-only file. The caller makes sure nothing
/// changes the keyspace meanwhile (the exclusive gate, or a forked child's private copy).
pub fn save(
    store: &Store,
    config: &Config,
    functions: &[Bytes],
    aof_base: bool,
    repl: Option<&ReplInfo>,
    mut out: impl Write,
) -> io::Result<()> {
    let checksum = config.bool(config::RDBCHECKSUM);
    // `rdb-key-save-delay`: microseconds to sleep per key, so tests can catch a save running.
    let key_delay =
        std::time::Duration::from_micros(config.int(config::RDB_KEY_SAVE_DELAY).max(0) as u64);
    let mut digest = CRC64.digest();
    let mut encoder = Encoder::new(config.bool(config::RDBCOMPRESSION));
    let mut flush = |encoder: &mut Encoder, digest: &mut Digest<'static, u64>| {
        if checksum {
            digest.update(&encoder.buf);
        }
        let written = out.write_all(&encoder.buf);
        encoder.buf.clear();
        written
    };
    encoder.buf.extend(format!("REDIS{VERSION:04}").as_bytes());
    encoder.aux("redis-ver", crate::server::REDIS_VERSION.as_bytes());
    encoder.aux("redis-bits", b"64");
    let now = crate::util::now_ms();
    encoder.aux("ctime", (now / 1000).to_string().as_bytes());
    encoder.aux("used-mem", crate::alloc::allocated().to_string().as_bytes());
    if let Some(repl) = repl {
        encoder.aux("repl-stream-db", repl.stream_db.to_string().as_bytes());
        encoder.aux("repl-id", repl.replid.as_bytes());
        encoder.aux("repl-offset", repl.offset.to_string().as_bytes());
    }
    encoder.aux("aof-base", if aof_base { b"1" } else { b"0" });
    encoder.functions(functions);
    let access = Access {
        policy: store.evictor.policy(),
        clock: &store.notifier.clock,
    };
    for db in store.dbs() {
        let (size, volatile) = (db.len(), db.volatile_len());
        if size == 0 {
            continue;
        }
        encoder.buf.push(OPCODE_SELECTDB);
        encoder.len(db.index as u64);
        encoder.buf.push(OPCODE_RESIZEDB);
        encoder.len(size as u64);
        encoder.len(volatile as u64);
        let mut result = Ok(());
        db.for_each(|key, entry| {
            // Keys past their expiry are written too, as Redis does; loading drops them.
            if result.is_err() {
                return;
            }
            encoder.key(key, entry, &access, now);
            if !key_delay.is_zero() {
                std::thread::sleep(key_delay);
            }
            // A slowed save (tests) writes as it goes, so that a reader sees it progress.
            if encoder.buf.len() >= 1 << 16 || !key_delay.is_zero() {
                result = flush(&mut encoder, &mut digest);
            }
        });
        result?;
    }
    encoder.buf.push(OPCODE_EOF);
    flush(&mut encoder, &mut digest)?;
    let crc = if checksum { digest.finalize() } else { 0 };
    encoder.buf.extend(crc.to_le_bytes());
    out.write_all(&encoder.buf)
}

/// How keys' access clocks are kept, for the IDLE and FREQ a dump holds.
pub struct Access<'a> {
    policy: Policy,
    clock: &'a AccessClock,
}

/// Where a server's replication history stood when it saved (the `repl-*` aux fields), so
/// that after a restart its replicas, or its master, can continue with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplInfo {
    /// The database the replication stream had selected.
    pub stream_db: usize,
    pub replid: String,
    pub offset: u64,
}

/// Collects the `repl-*` aux fields; the three must all be there to count.
fn repl_aux(repl: &mut (Option<usize>, Option<String>, Option<u64>), name: &[u8], value: &[u8]) {
    let text = String::from_utf8_lossy(value);
    match name {
        b"repl-stream-db" => repl.0 = text.parse().ok(),
        b"repl-id" if value.len() == 40 => repl.1 = Some(text.into_owned()),
        b"repl-offset" => repl.2 = text.parse().ok(),
        _ => {}
    }
}

/// What a load found, for the log.
#[derive(Default, Debug)]
pub struct Loaded {
    pub keys: u64,
    pub expired: u64,
    pub empty: u64,
    /// The function libraries' codes, for the caller to load.
    pub functions: Vec<Bytes>,
    pub repl: Option<ReplInfo>,
}

/// Whether the dump at `path` is whole: its signature, and the CRC64 it ends with (unless it
/// was written without one). Checked before data is replaced by it, so that a transfer
/// damaged on its way leaves the old data in place.
pub fn check_file(path: &std::path::Path) -> Result<(), String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let mut header = [0u8; 9];
    file.read_exact(&mut header).map_err(short)?;
    let version = std::str::from_utf8(&header[5..])
        .ok()
        .and_then(|v| v.parse::<u16>().ok())
        .unwrap_or(0);
    if &header[..5] != b"REDIS" || !(1..=VERSION).contains(&version) {
        return Err("Wrong signature trying to load DB from file".into());
    }
    if version < 5 || size < 9 + 8 {
        return Ok(());
    }
    let mut digest = CRC64.digest();
    digest.update(&header);
    let mut body = io::BufReader::with_capacity(1 << 16, (&mut file).take(size - 9 - 8));
    loop {
        let chunk = body.fill_buf().map_err(|e| e.to_string())?;
        if chunk.is_empty() {
            break;
        }
        digest.update(chunk);
        let used = chunk.len();
        body.consume(used);
    }
    let mut stored = [0u8; 8];
    file.read_exact(&mut stored).map_err(short)?;
    let (stored, computed) = (u64::from_le_bytes(stored), digest.finalize());
    if stored != 0 && stored != computed {
        return Err(format!(
            "Wrong RDB checksum expected: ({stored:x}) got ({computed:x}). RDB CRC error"
        ));
    }
    Ok(())
}

/// Loads a snapshot into `store`, which the caller has emptied or wants merged into; with
/// `merge`, a key already there is replaced (DEBUG RELOAD MERGE), otherwise it is an error.
pub fn load(
    input: impl Read,
    store: &Store,
    config: &Config,
    merge: bool,
) -> Result<Loaded, String> {
    let limits = Limits::from_config(config);
    let mut key_delay = KeyDelay::new(config.int(config::KEY_LOAD_DELAY));
    let mut decoder = Decoder::new(input, config.bool(config::RDBCHECKSUM));
    let header = decoder.bytes(9).map_err(short)?;
    if &header[..5] != b"REDIS" {
        return Err("Wrong signature trying to load DB from file".into());
    }
    let version = std::str::from_utf8(&header[5..])
        .ok()
        .and_then(|v| v.parse::<u16>().ok())
        .unwrap_or(0);
    if !(1..=VERSION).contains(&version) {
        return Err(format!("Can't handle RDB format version {version}"));
    }
    let now = crate::util::now_ms();
    let mut loaded = Loaded::default();
    let mut repl = (None, None, None);
    let mut db = 0usize;
    let mut expire_at = None;
    let (mut freq, mut idle) = (None, None);
    loop {
        let kind = decoder.byte().map_err(short)?;
        match kind {
            OPCODE_EXPIRETIME_MS => {
                let ms =
                    u64::from_le_bytes(decoder.bytes(8).map_err(short)?.try_into().expect("8"));
                expire_at = Some(ms);
                continue;
            }
            OPCODE_EXPIRETIME => {
                let secs =
                    u32::from_le_bytes(decoder.bytes(4).map_err(short)?.try_into().expect("4"));
                expire_at = Some(u64::from(secs) * 1000);
                continue;
            }
            OPCODE_FREQ => {
                freq = Some(decoder.byte().map_err(short)?);
                continue;
            }
            OPCODE_IDLE => {
                idle = Some(decoder.len().map_err(short)?);
                continue;
            }
            OPCODE_SELECTDB => {
                db = decoder.len().map_err(short)? as usize;
                if db >= store.dbs().len() {
                    return Err(format!(
                        "FATAL: Data file was created with a Redis server configured to handle more than {} databases. Exiting",
                        store.dbs().len()
                    ));
                }
                continue;
            }
            OPCODE_RESIZEDB => {
                decoder.len().map_err(short)?;
                decoder.len().map_err(short)?;
                continue;
            }
            OPCODE_AUX => {
                let name = decoder.string().map_err(short)?;
                let value = decoder.string().map_err(short)?;
                repl_aux(&mut repl, &name, &value);
                continue;
            }
            OPCODE_FUNCTION2 => {
                let code = decoder.string().map_err(short)?;
                loaded.functions.push(Bytes::from(code));
                continue;
            }
            OPCODE_MODULE_AUX => {
                return Err(format!(
                    "The RDB file holds module data (opcode {kind}), which Oxidis does not support"
                ));
            }
            OPCODE_EOF => break,
            _ => {}
        }
        let key = decoder.string().map_err(short)?;
        let value = decoder.value(kind, &limits)?;
        let expire = expire_at.take();
        let (freq, idle) = (freq.take(), idle.take());
        if expire.is_some_and(|at| at <= now) {
            loaded.expired += 1;
            continue;
        }
        if value_is_empty(&value) {
            loaded.empty += 1;
            continue;
        }
        let mut locked = store.db(db).lock(&key);
        if !merge && locked.contains(&key) {
            return Err(format!(
                "RDB has duplicated key '{}' in DB {db}",
                String::from_utf8_lossy(&key)
            ));
        }
        locked.set_with_expire(&key, value, expire);
        locked.restore_clock(&key, freq, idle);
        loaded.keys += 1;
        key_delay.after_key();
    }
    if version >= 5 {
        let computed = decoder.digest.take().map(|d| d.finalize());
        let stored = u64::from_le_bytes(decoder.bytes(8).map_err(short)?.try_into().expect("8"));
        if let Some(computed) = computed
            && stored != 0
            && computed != stored
        {
            return Err(format!(
                "Wrong RDB checksum expected: ({stored:x}) got ({computed:x}). Aborting now. RDB CRC error"
            ));
        }
    }
    if let (Some(stream_db), Some(replid), Some(offset)) = repl {
        loaded.repl = Some(ReplInfo {
            stream_db,
            replid,
            offset,
        });
    }
    Ok(loaded)
}

/// `key-load-delay`: microseconds to sleep after each key loaded, so that tests can catch a
/// load running; a negative -N sleeps 1 µs once in N keys on average (Redis's `debugDelay`).
struct KeyDelay {
    micros: i64,
    rng: crate::util::Rng,
}

impl KeyDelay {
    fn new(micros: i64) -> KeyDelay {
        KeyDelay {
            micros,
            rng: crate::util::Rng::new(),
        }
    }

    fn after_key(&mut self) {
        let sleep = match self.micros {
            0 => return,
            n if n < 0 => u64::from(self.rng.next_u64().is_multiple_of(n.unsigned_abs())),
            n => n as u64,
        };
        if sleep > 0 {
            std::thread::sleep(std::time::Duration::from_micros(sleep));
        }
    }
}

fn short(_: io::Error) -> String {
    "Short read or OOM loading DB. Unrecoverable error, aborting now.".into()
}

fn value_is_empty(value: &Value) -> bool {
    match value {
        Value::Str(_) => false,
        Value::List(list) => list.is_empty(),
        Value::Set(set) => set.is_empty(),
        Value::Hash(hash) => hash.is_empty(),
        Value::Zset(zset) => zset.is_empty(),
        // An empty stream is a value of its own (its IDs and groups remain).
        Value::Stream(_) => false,
    }
}

/// Reads RDB values, keeping a running CRC64 of what it read when asked to.
struct Decoder<R> {
    input: R,
    digest: Option<Digest<'static, u64>>,
}

impl<R: Read> Decoder<R> {
    fn new(input: R, checksum: bool) -> Decoder<R> {
        Decoder {
            input,
            digest: checksum.then(|| CRC64.digest()),
        }
    }

    fn bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        (&mut self.input).take(n as u64).read_to_end(&mut out)?;
        if out.len() != n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(digest) = &mut self.digest {
            digest.update(&out);
        }
        Ok(out)
    }

    fn byte(&mut self) -> io::Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    /// A length, or the special encoding number when the length byte says so.
    fn len_or_encoding(&mut self) -> io::Result<(u64, bool)> {
        let first = self.byte()?;
        Ok(match first >> 6 {
            0 => (u64::from(first & 0x3f), false),
            1 => (
                u64::from(first & 0x3f) << 8 | u64::from(self.byte()?),
                false,
            ),
            2 if first == 0x80 => {
                let b = self.bytes(4)?;
                (
                    u64::from(u32::from_be_bytes(b.try_into().expect("4"))),
                    false,
                )
            }
            2 if first == 0x81 => {
                let b = self.bytes(8)?;
                (u64::from_be_bytes(b.try_into().expect("8")), false)
            }
            2 => return Err(io::ErrorKind::InvalidData.into()),
            _ => (u64::from(first & 0x3f), true),
        })
    }

    fn len(&mut self) -> io::Result<u64> {
        match self.len_or_encoding()? {
            (n, false) => Ok(n),
            (_, true) => Err(io::ErrorKind::InvalidData.into()),
        }
    }

    fn string(&mut self) -> io::Result<Vec<u8>> {
        let invalid = || io::Error::from(io::ErrorKind::InvalidData);
        let (n, encoded) = self.len_or_encoding()?;
        if !encoded {
            return self.bytes(n as usize);
        }
        let int = match n as u8 {
            ENC_INT8 => i64::from(self.byte()? as i8),
            ENC_INT16 => i64::from(i16::from_le_bytes(self.bytes(2)?.try_into().expect("2"))),
            ENC_INT32 => i64::from(i32::from_le_bytes(self.bytes(4)?.try_into().expect("4"))),
            ENC_LZF => {
                let packed_len = self.len()? as usize;
                let len = self.len()? as usize;
                let packed = self.bytes(packed_len)?;
                return lzf::decompress(&packed, len).ok_or_else(invalid);
            }
            _ => return Err(invalid()),
        };
        Ok(itoa::Buffer::new().format(int).as_bytes().to_vec())
    }

    /// A score as Redis before 2.8 wrote it: a length byte, then text; 253 to 255 mean
    /// NaN, +inf and -inf.
    fn text_double(&mut self) -> io::Result<f64> {
        Ok(match self.byte()? {
            253 => f64::NAN,
            254 => f64::INFINITY,
            255 => f64::NEG_INFINITY,
            n => {
                let text = self.bytes(n as usize)?;
                parse_f64(&text).ok_or(io::ErrorKind::InvalidData)?
            }
        })
    }

    fn binary_double(&mut self) -> io::Result<f64> {
        Ok(f64::from_le_bytes(self.bytes(8)?.try_into().expect("8")))
    }

    /// The value of RDB type `kind`.
    fn value(&mut self, kind: u8, limits: &Limits) -> Result<Value, String> {
        let bad = |e: io::Error| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                short(e)
            } else {
                format!("Bad data format in RDB value of type {kind}")
            }
        };
        let malformed = || format!("Corrupt packed value of RDB type {kind}");
        Ok(match kind {
            STRING => Value::string(&self.string().map_err(bad)?),
            LIST => {
                let mut list = List::default();
                for _ in 0..self.len().map_err(bad)? {
                    list.push(End::Tail, &self.string().map_err(bad)?, limits.fill);
                }
                Value::List(Box::new(list))
            }
            SET => {
                let mut set = Set::default();
                for _ in 0..self.len().map_err(bad)? {
                    set.insert(&self.string().map_err(bad)?, limits.max_intset);
                }
                Value::Set(Box::new(set))
            }
            ZSET | ZSET_2 => {
                let mut zset = Zset::default();
                for _ in 0..self.len().map_err(bad)? {
                    let member = self.string().map_err(bad)?;
                    let score = if kind == ZSET {
                        self.text_double()
                    } else {
                        self.binary_double()
                    }
                    .map_err(bad)?;
                    if score.is_nan() {
                        return Err(malformed());
                    }
                    zset.insert(&member, score, limits.zset);
                }
                Value::Zset(Box::new(zset))
            }
            HASH => {
                let mut hash = Hash::default();
                for _ in 0..self.len().map_err(bad)? {
                    let field = self.string().map_err(bad)?;
                    hash.set(&field, &self.string().map_err(bad)?, limits.hash);
                }
                Value::Hash(Box::new(hash))
            }
            SET_INTSET => {
                let blob = self.string().map_err(bad)?;
                let mut set = Set::default();
                for n in blobs::intset(&blob).ok_or_else(malformed)? {
                    set.insert(itoa::Buffer::new().format(n).as_bytes(), limits.max_intset);
                }
                Value::Set(Box::new(set))
            }
            LIST_ZIPLIST => {
                let blob = self.string().map_err(bad)?;
                let mut list = List::default();
                push_all(
                    &mut list,
                    blobs::ziplist(&blob).ok_or_else(malformed)?,
                    limits,
                );
                Value::List(Box::new(list))
            }
            LIST_QUICKLIST | LIST_QUICKLIST_2 => {
                let mut list = List::default();
                for _ in 0..self.len().map_err(bad)? {
                    let container = if kind == LIST_QUICKLIST_2 {
                        self.len().map_err(bad)?
                    } else {
                        CONTAINER_PACKED
                    };
                    let blob = self.string().map_err(bad)?;
                    match container {
                        CONTAINER_PLAIN => list.push(End::Tail, &blob, limits.fill),
                        CONTAINER_PACKED => {
                            let elements = if kind == LIST_QUICKLIST_2 {
                                blobs::listpack(&blob)
                            } else {
                                blobs::ziplist(&blob)
                            };
                            push_all(&mut list, elements.ok_or_else(malformed)?, limits);
                        }
                        _ => return Err(malformed()),
                    }
                }
                Value::List(Box::new(list))
            }
            HASH_ZIPMAP | HASH_ZIPLIST | HASH_LISTPACK => {
                let blob = self.string().map_err(bad)?;
                let elements = match kind {
                    HASH_ZIPMAP => blobs::zipmap(&blob),
                    HASH_ZIPLIST => blobs::ziplist(&blob),
                    _ => blobs::listpack(&blob),
                }
                .filter(|e| e.len() % 2 == 0)
                .ok_or_else(malformed)?;
                let mut hash = Hash::default();
                for pair in elements.chunks(2) {
                    hash.set(&pair[0].to_vec(), &pair[1].to_vec(), limits.hash);
                }
                Value::Hash(Box::new(hash))
            }
            ZSET_ZIPLIST | ZSET_LISTPACK => {
                let blob = self.string().map_err(bad)?;
                let elements = if kind == ZSET_ZIPLIST {
                    blobs::ziplist(&blob)
                } else {
                    blobs::listpack(&blob)
                }
                .filter(|e| e.len() % 2 == 0)
                .ok_or_else(malformed)?;
                let mut zset = Zset::default();
                for pair in elements.chunks(2) {
                    let score = match pair[1] {
                        Element::Int(n) => n as f64,
                        Element::Bytes(b) => parse_f64(b).ok_or_else(malformed)?,
                    };
                    zset.insert(&pair[0].to_vec(), score, limits.zset);
                }
                Value::Zset(Box::new(zset))
            }
            stream::STREAM_LISTPACKS | stream::STREAM_LISTPACKS_2 => match self.stream(kind) {
                Ok(s) => Value::Stream(Box::new(s)),
                Err(stream::StreamError::Io(e)) => return Err(bad(e)),
                Err(stream::StreamError::Corrupt) => return Err(malformed()),
            },
            _ => {
                return Err(format!(
                    "Unknown RDB value type {kind} (modules are not supported)"
                ));
            }
        })
    }
}

fn push_all(list: &mut List, elements: Vec<Element<'_>>, limits: &Limits) {
    for element in elements {
        list.push(End::Tail, &element.to_vec(), limits.fill);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::from_config(&Config::new())
    }

    #[test]
    fn crc64_is_redis_jones() {
        assert_eq!(CRC64.checksum(b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    #[test]
    fn dump_matches_redis_for_small_values() {
        // redis-cli DUMP of SET k 1 and SET k hello against Redis 7.0.15.
        let int = dump(&Value::string(b"1"));
        assert_eq!(&int[..int.len() - 8], b"\x00\xc0\x01\x0a\x00");
        let text = dump(&Value::string(b"hello"));
        assert_eq!(&text[..text.len() - 8], b"\x00\x05hello\x0a\x00");
    }

    /// The elements of a value, sorted where the type has no order.
    fn contents(value: &Value) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        match value {
            Value::Str(s) => out.push(s.bytes(&mut itoa::Buffer::new()).to_vec()),
            Value::List(list) => return list.iter().map(<[u8]>::to_vec).collect(),
            Value::Set(set) => out = set.members(),
            Value::Hash(hash) => {
                out = hash.iter().map(|(f, v)| [f, b"=", v].concat()).collect();
            }
            Value::Zset(zset) => {
                let scored = |(member, score): (Vec<u8>, f64)| {
                    [member, score.to_le_bytes().to_vec()].concat()
                };
                return zset.all().into_iter().map(scored).collect();
            }
            Value::Stream(stream) => {
                use crate::store::stream::StreamId;
                stream.range(StreamId::MIN, StreamId::MAX, false, |entry| {
                    out.push(entry.id.to_text());
                    out.extend(
                        entry
                            .pairs()
                            .map(|(f, v)| [f.to_vec(), v.to_vec()].concat()),
                    );
                    true
                });
                for (name, group) in stream.groups().into_iter().flatten() {
                    out.push(name.to_vec());
                    out.extend(group.pel.keys().map(|id| id.to_text()));
                }
                return out;
            }
        }
        out.sort();
        out
    }

    #[test]
    fn values_round_trip_through_dump() {
        let limits = limits();
        let mut list = List::default();
        let mut hash = Hash::default();
        let mut zset = Zset::default();
        let mut set = Set::default();
        for i in 0..300 {
            let item = format!("item-{i}-{}", "x".repeat(i % 40));
            list.push(End::Tail, item.as_bytes(), limits.fill);
            hash.set(item.as_bytes(), &i.to_string().into_bytes(), limits.hash);
            zset.insert(item.as_bytes(), i as f64 / 3.0, limits.zset);
            set.insert(item.as_bytes(), limits.max_intset);
        }
        let mut stream = crate::store::stream::Stream::default();
        let node = crate::store::stream::NodeLimits {
            max_bytes: 4096,
            max_entries: 100,
        };
        for i in 1..=250u64 {
            let id = crate::store::stream::StreamId::new(i, i % 3);
            let value = format!("{i}-{}", "y".repeat(i as usize % 30));
            let field: &[u8] = if i % 7 == 0 { b"rare" } else { b"temp" };
            stream
                .add(id, &[field, value.as_bytes()], node)
                .ok()
                .unwrap();
        }
        stream.delete(crate::store::stream::StreamId::new(5, 2));
        let mut group = crate::store::stream::Group::new(stream.last_id(), 250);
        let (owner, _) = group.consumer_or_new(b"alice", 7);
        for i in [2u64, 9, 30] {
            let id = crate::store::stream::StreamId::new(i, i % 3);
            let nack = crate::store::stream::Nack {
                delivery_time: 1000,
                delivery_count: 2,
                consumer: owner.clone(),
            };
            group.pel.insert(id, nack);
            group.assign(id, &owner);
        }
        stream.create_group(b"workers", group);
        for value in [
            Value::Stream(Box::new(stream)),
            Value::string(&b"compress me ".repeat(20)),
            Value::string(b"-123456789012"),
            Value::List(Box::new(list)),
            Value::Hash(Box::new(hash)),
            Value::Zset(Box::new(zset)),
            Value::Set(Box::new(set)),
        ] {
            let payload = dump(&value);
            let back = undump(&payload, &limits).unwrap();
            assert_eq!(contents(&back), contents(&value));
            assert_eq!(back.encoding(), value.encoding());
            let mut corrupt = payload.clone();
            corrupt[3] ^= 1;
            assert!(undump(&corrupt, &limits).is_err());
        }
    }
}
