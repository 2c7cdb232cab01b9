//! Fuzz targets, shared by `cargo fuzz` (the `fuzz/` crate) and the bounded runs in
//! `tests/fuzz.rs`: the request parser fed arbitrary bytes in arbitrary pieces, and
//! arbitrary command sequences run through the command table against a keyspace.

use bytes::{Bytes, BytesMut};

use crate::embedded::Session;
use crate::protocol::{Limits, RequestParser};

/// Feeds `data` to the parser in pieces whose sizes the data itself chooses, as a socket
/// may deliver it. Every request parsed must have arguments; a protocol error ends the
/// connection, as the server does.
pub fn parse_requests(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let piece = usize::from(split % 64) + 1;
    let limits = Limits {
        max_bulk_len: 512 * 1024 * 1024,
        authenticated: split & 0x80 == 0,
    };
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::new();
    let mut args = Vec::new();
    for chunk in data.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match parser.parse(&mut buf, &mut args, limits) {
                Ok(false) => break,
                Ok(true) => args.clear(),
                Err(_) => return,
            }
        }
    }
}

/// Commands the command fuzzer leaves out: they stop or fork the process, sleep, write
/// files, or change the process's settings (working directory, logging); PFSELFTEST takes a
/// second of ten million additions and reads no input (`hll_payload` fuzzes HLLs).
const LEFT_OUT: &[&str] = &[
    "pfselftest",
    "shutdown",
    "debug",
    "save",
    "bgsave",
    "bgrewriteaof",
    "config|set",
    "config|rewrite",
    "acl|save",
    "acl|load",
    "monitor",
    "client|pause",
    "failover",
    "replicaof",
    "slaveof",
    "sync",
    "psync",
];

/// Words command arguments are drawn from: key names that collide, numbers and their edge
/// cases, option keywords, and a few awkward strings.
const WORDS: &[&[u8]] = &[
    b"k",
    b"k2",
    b"{k}1",
    b"0",
    b"1",
    b"-1",
    b"2",
    b"10",
    b"-100",
    b"3.5",
    b"inf",
    b"-inf",
    b"nan",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"18446744073709551616",
    b"",
    b"*",
    b"[a-",
    b"\\",
    b"+inf",
    b"(1",
    b"[a",
    b"-",
    b"+",
    b"NX",
    b"XX",
    b"GT",
    b"LT",
    b"CH",
    b"INCR",
    b"EX",
    b"PX",
    b"EXAT",
    b"KEEPTTL",
    b"GET",
    b"LIMIT",
    b"WITHSCORES",
    b"REV",
    b"BYSCORE",
    b"BYLEX",
    b"COUNT",
    b"MATCH",
    b"TYPE",
    b"LEFT",
    b"RIGHT",
    b"BEFORE",
    b"AFTER",
    b"STORE",
    b"BY",
    b"ALPHA",
    b"DESC",
    b"WEIGHTS",
    b"AGGREGATE",
    b"MIN",
    b"MAX",
    b"SUM",
    b"WITHVALUES",
    b"REPLACE",
    b"ABSTTL",
    b"IDLETIME",
    b"FREQ",
    b"RANK",
    b"MAXLEN",
    b"LEN",
    b"IDX",
    b"MINMATCHLEN",
    b"WITHMATCHLEN",
    b"LASTSAVE",
    b"\x00\xff",
    b"a\r\nb",
    b"STREAMS",
    b"GROUP",
    b"g",
    b">",
    b"$",
    b"~",
    b"=",
    b"1-1",
    b"0-1",
    b"18446744073709551615-18446744073709551615",
    b"MINID",
    b"MKSTREAM",
    b"NOACK",
    b"BLOCK",
    b"JUSTID",
    b"FORCE",
    b"IDLE",
    b"FULL",
    b"ENTRIESREAD",
];

/// Runs command sequences against one server and client, as one connection would.
pub struct CommandFuzzer {
    session: Session,
    names: Vec<String>,
}

impl Default for CommandFuzzer {
    fn default() -> Self {
        let session = Session::default();
        // FLUSHALL saves a snapshot when save points are set: none, so that no run leaves a
        // dump.rdb behind.
        session
            .server
            .config
            .set("save", &[String::new()])
            .expect("an empty save setting");
        let names = session
            .server
            .commands
            .all_with_subcommands()
            .filter(|c| c.subcommands.is_empty() && !LEFT_OUT.contains(&c.name.as_str()))
            .map(|c| c.name.clone())
            .collect();
        CommandFuzzer { session, names }
    }
}

impl CommandFuzzer {
    /// Decodes `data` into commands (a command byte, an argument count, then each argument
    /// as a word or raw bytes) and runs them. Blocked commands are not waited for.
    pub fn run(&mut self, data: &[u8]) {
        // Each input starts from a fresh connection state (no MULTI, no subscriptions).
        self.execute(&[Bytes::from_static(b"RESET")]);
        let mut bytes = data.iter().copied();
        while let Some(pick) = bytes.next() {
            let name = &self.names[usize::from(pick) * self.names.len() / 256];
            let mut args: Vec<Bytes> = name
                .split('|')
                .map(|p| Bytes::from(p.to_string()))
                .collect();
            let count = bytes.next().unwrap_or(0) % 8;
            for _ in 0..count {
                // Mostly words; now and then raw bytes of a length the input picks.
                let word = usize::from(bytes.next().unwrap_or(0));
                let arg = if word < 7 * 32 {
                    Bytes::from_static(WORDS[word % WORDS.len()])
                } else {
                    Bytes::from(bytes.by_ref().take(word % 16).collect::<Vec<u8>>())
                };
                args.push(arg);
            }
            self.execute(&args);
        }
    }

    fn execute(&mut self, args: &[Bytes]) {
        self.session.execute(args);
    }
}

/// What the script fuzzer hands its payload to: the libraries Redis has had CVEs in, each
/// reading the payload (ARGV[1], and ARGV[2] where a second input is taken).
const LIBRARY_CALLS: &[&[u8]] = &[
    b"return cjson.decode(ARGV[1])",
    b"return cjson.encode(cjson.decode(ARGV[1]))",
    b"return cmsgpack.unpack(ARGV[1])",
    b"return {cmsgpack.unpack_limit(ARGV[1], 3, 1)}",
    b"return cmsgpack.pack(cmsgpack.unpack(ARGV[1]))",
    b"return {struct.unpack(ARGV[1], ARGV[2])}",
    b"return {struct.unpack(ARGV[1], ARGV[2], 3)}",
    b"return struct.pack(ARGV[1], 1, -2.5, 'abc', 4, 'de', 7)",
    b"return struct.size(ARGV[1])",
    b"return bit.tohex(#ARGV[1] * 977, #ARGV[2] - 9)",
];

/// Pieces of script the fuzzer strings together: calls into the libraries and the `redis`
/// API with awkward arguments, on values the script builds. None loops.
const SNIPPETS: &[&[u8]] = &[
    b"local t = cjson.decode(ARGV[1]) ",
    b"local t = {cmsgpack.unpack(ARGV[1])} ",
    b"local t = {1, 'a', {b = 2}, 3.5, true} ",
    b"t = cjson.encode(t) ",
    b"t = cmsgpack.pack(t, t, ARGV[2]) ",
    b"t = {struct.unpack('>i2h!4d', ARGV[1] .. ARGV[2] .. string.rep('x', 20))} ",
    b"t = string.rep(ARGV[2], #ARGV[1] % 50) ",
    b"t = bit.bxor(#ARGV[1], bit.lshift(1, #ARGV[2])) ",
    b"t = redis.pcall('set', KEYS[1], ARGV[1]) ",
    b"t = redis.pcall('lpush', KEYS[1], ARGV[2]) ",
    b"t = redis.pcall('hgetall', KEYS[1]) ",
    b"t = redis.pcall(ARGV[2], KEYS[1]) ",
    b"t = redis.pcall() ",
    b"redis.setresp(3) ",
    b"t = redis.sha1hex(ARGV[1]) ",
    b"t = redis.error_reply(ARGV[1]) ",
    b"t = {unpack({1, 2, 3}, #ARGV[1] - 3, #ARGV[2])} ",
    b"t = tostring(t) .. ARGV[1] ",
    b"t = pcall(error, ARGV[1]) ",
    b"t = loadstring(ARGV[1]) ",
    b"return t ",
    b"return {t, ARGV[1], {ok = ARGV[2]}, {double = 1.5}, {map = {a = 1}}} ",
];

/// Runs scripts built from the input against one server: library calls on the input's own
/// bytes, and scripts strung together from snippets the input picks.
#[derive(Default)]
pub struct ScriptFuzzer {
    session: Session,
}

impl ScriptFuzzer {
    /// The first byte picks a library call (below 128) or a snippet count; the next bytes
    /// pick snippets; the next one where the rest splits into the two arguments.
    /// Returns the reply.
    pub fn run(&mut self, data: &[u8]) -> &[u8] {
        let Some((&pick, rest)) = data.split_first() else {
            return b"";
        };
        let (script, rest) = if pick < 128 {
            (
                LIBRARY_CALLS[usize::from(pick) % LIBRARY_CALLS.len()].to_vec(),
                rest,
            )
        } else {
            let count = usize::from(pick % 8).min(rest.len());
            let script = rest[..count]
                .iter()
                .flat_map(|&s| SNIPPETS[usize::from(s) % SNIPPETS.len()].iter().copied())
                .collect();
            (script, &rest[count..])
        };
        let (split, rest) = rest.split_first().unwrap_or((&0, &[]));
        let (first, second) = rest.split_at(usize::from(*split).min(rest.len()));
        let args = [
            Bytes::from_static(b"EVAL"),
            Bytes::from(script),
            Bytes::from_static(b"1"),
            Bytes::from_static(b"fuzz"),
            Bytes::copy_from_slice(first),
            Bytes::copy_from_slice(second),
        ];
        self.session.execute(&args)
    }
}

/// An HLL value built from `data` and put through every HLL operation: counting, adding,
/// merging, converting and decoding must never panic or read outside the value, and a value
/// that reads as valid must count the same sparse and dense. The first byte picks a valid
/// header (sparse, dense, or none) for the rest, so most inputs get past the header checks.
pub fn hll_payload(data: &[u8]) {
    use crate::store::hll;
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let mut value = match mode % 3 {
        0 => body.to_vec(),
        kind => {
            let mut v = b"HYLL".to_vec();
            v.push(if kind == 1 { 1 } else { 0 });
            v.resize(hll::HEADER, 0);
            v.extend_from_slice(body);
            if kind == 2 {
                // Dense: the body repeated to the exact size.
                let registers = body
                    .iter()
                    .copied()
                    .cycle()
                    .take(hll::DENSE_SIZE - hll::HEADER);
                v.truncate(hll::HEADER);
                v.extend(registers);
                v.resize(hll::DENSE_SIZE, 0);
            }
            v
        }
    };
    if !hll::is_hll(&value) {
        return;
    }
    let counted = hll::count(&value);
    let mut max = Box::new([0u8; hll::REGISTERS]);
    let merged = hll::merge_into(&mut max, &value);
    assert_eq!(counted.is_ok(), merged.is_ok());
    if let Ok(count) = counted {
        assert_eq!(hll::count_registers(&max), count);
        let mut dense = value.clone();
        hll::to_dense(&mut dense).expect("a value that counts converts");
        assert_eq!(hll::count(&dense), Ok(count));
    }
    let _ = hll::decode(&value);
    let _ = hll::registers(&value);
    for element in body.chunks(3).take(64) {
        if hll::add(&mut value, element, 300).is_err() {
            break;
        }
    }
    if hll::count(&value).is_ok() {
        let mut dense = value.clone();
        hll::to_dense(&mut dense).expect("a value that counts converts");
    }
}

/// A stream value read from `data` (a DUMP payload without its version and checksum: a type
/// byte, then the value) and put through the stream commands: whatever RESTORE accepts must
/// answer every read, take writes, and DUMP and RESTORE again unchanged. Returns whether
/// RESTORE accepted it.
pub fn stream_payload(session: &mut Session, data: &[u8]) -> bool {
    let mut payload = data.to_vec();
    payload.extend(crate::persist::rdb::VERSION.to_le_bytes());
    // A zero checksum is not checked, so the value alone is judged.
    payload.extend([0u8; 8]);
    let run = |session: &mut Session, args: &[&[u8]]| {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        session.execute(&args).to_vec()
    };
    run(session, &[b"DEL", b"s", b"copy"]);
    if run(session, &[b"RESTORE", b"s", b"0", &payload]) != b"+OK\r\n" {
        return false;
    }
    let dumped = run(session, &[b"DUMP", b"s"]);
    let before = run(session, &[b"XRANGE", b"s", b"-", b"+"]);
    for command in [
        &[&b"XREVRANGE"[..], b"s", b"+", b"-", b"COUNT", b"7"][..],
        &[b"XRANGE", b"s", b"(0-1", b"+", b"COUNT", b"3"],
        &[b"XLEN", b"s"],
        &[b"XINFO", b"STREAM", b"s", b"FULL", b"COUNT", b"0"],
        &[b"XINFO", b"STREAM", b"s"],
        &[b"XINFO", b"GROUPS", b"s"],
        &[b"XREAD", b"COUNT", b"5", b"STREAMS", b"s", b"0-0"],
        &[b"MEMORY", b"USAGE", b"s"],
    ] {
        run(session, command);
    }
    // DUMP of what was restored restores the same.
    if let Some(body) = dumped.strip_prefix(b"$").and_then(|rest| {
        let newline = rest.iter().position(|&b| b == b'\r')?;
        rest.get(newline + 2..rest.len() - 2)
    }) {
        assert_eq!(run(session, &[b"RESTORE", b"copy", b"0", body]), b"+OK\r\n");
        assert_eq!(run(session, &[b"XRANGE", b"copy", b"-", b"+"]), before);
    }
    for command in [
        &[&b"XADD"[..], b"s", b"*", b"f", b"v"][..],
        &[b"XADD", b"s", b"MAXLEN", b"~", b"2", b"*", b"f", b"v"],
        &[b"XDEL", b"s", b"0-1", b"1-0", b"1-1"],
        &[b"XTRIM", b"s", b"MINID", b"1-1"],
        &[b"XGROUP", b"CREATE", b"s", b"g", b"0"],
        &[
            b"XREADGROUP",
            b"GROUP",
            b"g",
            b"c",
            b"COUNT",
            b"3",
            b"STREAMS",
            b"s",
            b">",
        ],
        &[b"XPENDING", b"s", b"g", b"-", b"+", b"10"],
        &[b"XAUTOCLAIM", b"s", b"g", b"d", b"0", b"0-0"],
        &[b"XTRIM", b"s", b"MAXLEN", b"0"],
        &[b"XINFO", b"STREAM", b"s", b"FULL"],
    ] {
        run(session, command);
    }
    true
}
