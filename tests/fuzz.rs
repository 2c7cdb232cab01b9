//! Bounded runs of the fuzz targets (`fuzz/`, for `cargo fuzz`): every input of the corpus
//! in the repository, then pseudo-random inputs from a fixed seed, so a failure can be
//! replayed. A panic anywhere fails the test.

use oxidis::embedded::Session;
use oxidis::fuzzing::{CommandFuzzer, ScriptFuzzer, hll_payload, parse_requests, stream_payload};

/// SplitMix64: a fixed, seedable stream for the generated inputs.
fn generator(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("the corpus is in the repository")
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "empty corpus {}", dir.display());
    inputs
}

/// Random bytes biased towards RESP: mostly pieces of valid requests, with garbage mixed in.
fn resp_like(next: &mut impl FnMut() -> u64) -> Vec<u8> {
    const PIECES: &[&[u8]] = &[
        b"*",
        b"$",
        b"\r\n",
        b"\r",
        b"\n",
        b"3",
        b"-1",
        b"0",
        b"1",
        b"2147483648",
        b"512",
        b"4294967296",
        b"SET",
        b"GET",
        b"PING",
        b" ",
        b"\"",
        b"'",
        b"\\x",
        b"\x00",
    ];
    let len = (next() % 64) as usize;
    let mut out = Vec::new();
    for _ in 0..len {
        match next() % 4 {
            0 => out.push(next() as u8),
            _ => out.extend_from_slice(PIECES[(next() as usize) % PIECES.len()]),
        }
    }
    out
}

#[test]
fn request_parser_survives_its_corpus_and_random_input() {
    for input in corpus("request_parser") {
        parse_requests(&input);
    }
    let mut next = generator(0x0dd5_eed5);
    for _ in 0..200_000 {
        parse_requests(&resp_like(&mut next));
    }
}

#[test]
fn command_sequences_survive_their_corpus_and_random_input() {
    let mut fuzzer = CommandFuzzer::default();
    for input in corpus("commands") {
        fuzzer.run(&input);
    }
    let mut next = generator(0xc0ff_ee00);
    for _ in 0..200_000 {
        let len = (next() % 48) as usize;
        let input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        fuzzer.run(&input);
    }
}

#[test]
fn scripts_and_their_libraries_survive_their_corpus_and_random_input() {
    let mut fuzzer = ScriptFuzzer::default();
    // The fuzzer does reach the libraries: a JSON array decoded and encoded again.
    assert_eq!(fuzzer.run(b"\x01\xff[1,\"a\"]"), b"$7\r\n[1,\"a\"]\r\n");
    assert_eq!(
        fuzzer.run(b"\x02\xff\x93\x01\x02\x03"),
        b"*3\r\n:1\r\n:2\r\n:3\r\n"
    );
    for input in corpus("scripts") {
        fuzzer.run(&input);
    }
    let mut next = generator(0x5c41_97ed);
    for _ in 0..100_000 {
        let len = (next() % 96) as usize;
        let input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        fuzzer.run(&input);
    }
}

#[test]
fn hll_payloads_survive_their_corpus_and_mutations() {
    let inputs = corpus("hll");
    for input in &inputs {
        hll_payload(input);
    }
    // Real HLLs (sparse and dense, written by redis-server) with a few bytes changed, cut or
    // extended: the damage Redis's own corrupt-HLL tests make.
    let mut next = generator(0x4b11_0000);
    for _ in 0..20_000 {
        let mut input = inputs[(next() as usize) % inputs.len()].clone();
        for _ in 0..=(next() % 4) {
            match next() % 6 {
                0 => input.truncate((next() as usize) % (input.len() + 1)),
                1 => input.push(next() as u8),
                _ if input.len() > 1 => {
                    let at = 1 + (next() as usize) % (input.len() - 1);
                    input[at] = next() as u8;
                }
                _ => {}
            }
        }
        hll_payload(&input);
    }
}

#[test]
fn stream_payloads_survive_their_corpus_and_mutations() {
    let inputs = corpus("streams");
    let mut session = Session::default();
    for input in &inputs {
        assert!(
            stream_payload(&mut session, input),
            "redis-server's own stream refused"
        );
    }
    // Streams written by redis-server (with groups, consumers, pending and deleted entries),
    // a few bytes changed, cut or extended.
    let mut next = generator(0x5742_0000);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut input = inputs[(next() as usize) % inputs.len()].clone();
        for _ in 0..=(next() % 3) {
            match next() % 6 {
                0 => input.truncate((next() as usize) % (input.len() + 1)),
                1 => input.push(next() as u8),
                _ if input.len() > 1 => {
                    let at = 1 + (next() as usize) % (input.len() - 1);
                    input[at] = next() as u8;
                }
                _ => {}
            }
        }
        accepted += stream_payload(&mut session, &input) as usize;
    }
    // Changes to values and IDs leave valid streams: those went through every command.
    assert!(accepted > 1_000, "{accepted} accepted");
}
