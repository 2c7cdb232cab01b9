//! Micro benchmarks that need no server: the request parser, the reply encoder, the sorted set,
//! hash and dict structures, and whole commands through the command table (`embedded::Session`).
//! Run `cargo bench` in benches/micro; criterion compares each run with the previous one.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use oxidis::embedded::Session;
use oxidis::protocol::{Limits, Protocol, Reply, RequestParser};
use oxidis::store::dict::Dict;
use oxidis::store::hash::{Hash, HashLimits};
use oxidis::store::zset::{Zset, ZsetLimits};

/// xorshift64, so every run draws the same keys.
fn draws(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

fn request_parser(c: &mut Criterion) {
    let mut batch = Vec::new();
    for i in 0..16 {
        let key = format!("key:{i:012}");
        batch.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$3\r\nxyz\r\n",
                key.len()
            )
            .as_bytes(),
        );
    }
    let limits = Limits {
        max_bulk_len: 512 * 1024 * 1024,
        authenticated: true,
    };
    c.bench_function("parse 16 pipelined SET", |b| {
        let mut parser = RequestParser::default();
        let mut args = Vec::new();
        b.iter(|| {
            let mut buf = BytesMut::from(&batch[..]);
            while parser.parse(&mut buf, &mut args, limits).expect("valid") {
                black_box(&args);
                args.clear();
            }
        })
    });
    c.bench_function("parse inline PING", |b| {
        let mut parser = RequestParser::default();
        let mut args = Vec::new();
        b.iter(|| {
            let mut buf = BytesMut::from(&b"PING\r\n"[..]);
            assert!(parser.parse(&mut buf, &mut args, limits).expect("valid"));
            args.clear();
        })
    });
}

fn reply_encoder(c: &mut Criterion) {
    let items: Vec<Vec<u8>> = (0..100).map(|i| format!("item-{i}").into_bytes()).collect();
    c.bench_function("encode 100 bulks", |b| {
        let mut reply = Reply::new(Protocol::Resp2);
        b.iter(|| {
            reply.clear();
            reply.bulks(items.iter().map(|i| &i[..]));
            black_box(&reply.buf);
        })
    });
    for (name, protocol) in [("resp2", Protocol::Resp2), ("resp3", Protocol::Resp3)] {
        c.bench_function(&format!("encode 100 doubles {name}"), |b| {
            let mut reply = Reply::new(protocol);
            b.iter(|| {
                reply.clear();
                reply.array(100);
                for i in 0..100 {
                    reply.double(i as f64 * 1.25);
                }
                black_box(&reply.buf);
            })
        });
    }
}

fn structures(c: &mut Criterion) {
    const ZSET: ZsetLimits = ZsetLimits {
        entries: 128,
        value: 64,
    };
    let members: Vec<Vec<u8>> = (0..100_000)
        .map(|i| format!("element:{i:012}").into_bytes())
        .collect();
    let mut rand = draws(0x9e37_79b9_7f4a_7c15);
    let mut zset = Zset::default();
    for member in &members {
        zset.insert(member, (rand() % 1_000_000) as f64, ZSET);
    }
    c.bench_function("zset rescore a random member of 100k", |b| {
        b.iter(|| {
            let member = &members[rand() as usize % members.len()];
            zset.insert(member, (rand() % 1_000_000) as f64, ZSET);
        })
    });
    c.bench_function("zset rank of a random member of 100k", |b| {
        b.iter(|| black_box(zset.rank(&members[rand() as usize % members.len()])))
    });
    c.bench_function("zset pop 1000 lowest of 100k", |b| {
        b.iter_batched(
            || zset.clone(),
            // The set is returned so that dropping it is not timed.
            |mut copy| (black_box(copy.pop(1000, false)), copy),
            BatchSize::LargeInput,
        )
    });

    let hash_limits = HashLimits {
        entries: 128,
        value: 64,
    };
    c.bench_function("hash set 5 fields", |b| {
        b.iter(|| {
            let mut hash = Hash::default();
            for (field, value) in [
                (&b"temperature"[..], &b"25"[..]),
                (b"humidity", b"0.5"),
                (b"pressure", b"1013"),
                (b"status", b"ok"),
                (b"name", b"sensor-17"),
            ] {
                hash.set(field, value, hash_limits);
            }
            black_box(hash)
        })
    });

    let mut dict = Dict::default();
    for member in &members {
        dict.insert(member, 0u64);
    }
    c.bench_function("dict get a random key of 100k", |b| {
        b.iter(|| black_box(dict.get(&members[rand() as usize % members.len()])))
    });
}

fn commands(c: &mut Criterion) {
    let mut session = Session::default();
    let command = |words: &[&str]| -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    };
    for (name, args) in [
        ("SET", command(&["SET", "key:000000000001", "xyz"])),
        ("GET", command(&["GET", "key:000000000001"])),
        ("INCR", command(&["INCR", "counter"])),
        ("HSET", command(&["HSET", "h", "field", "xyz"])),
        ("SADD", command(&["SADD", "s", "member"])),
    ] {
        c.bench_function(&format!("command {name}"), |b| {
            b.iter(|| black_box(session.execute(&args).len()))
        });
    }
    let push = command(&["RPUSH", "list", "xyz"]);
    let pop = command(&["LPOP", "list"]);
    c.bench_function("command RPUSH + LPOP", |b| {
        b.iter(|| {
            session.execute(&push);
            black_box(session.execute(&pop).len())
        })
    });
}

criterion_group!(benches, request_parser, reply_encoder, structures, commands);
criterion_main!(benches);
