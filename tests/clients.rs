//! The real binary driven by the `redis` crate: strings, keys, errors, pipelining, config.

mod common;

use common::TestServer;
use redis::{Commands, RedisResult, Value, cmd};

fn error_text(result: RedisResult<Value>) -> String {
    let err = result.expect_err("expected an error reply");
    format!(
        "{} {}",
        err.code().unwrap_or("?"),
        err.detail().unwrap_or("")
    )
}

#[test]
fn strings_round_trip_with_exact_replies() {
    let server = TestServer::start();
    let mut con = server.client();
    let _: () = con.set("data", r#"{"a":123,"b":321}"#).unwrap();
    let got: String = con.get("data").unwrap();
    assert_eq!(got, r#"{"a":123,"b":321}"#);
    assert_eq!(con.incr::<_, _, i64>("counter", 5).unwrap(), 5);
    assert_eq!(con.incr::<_, _, i64>("counter", -7).unwrap(), -2);
    assert_eq!(
        cmd("INCRBYFLOAT")
            .arg("f")
            .arg("10.5")
            .query::<String>(&mut con)
            .unwrap(),
        "10.5"
    );
    assert_eq!(
        cmd("INCRBYFLOAT")
            .arg("f")
            .arg("0.1")
            .query::<String>(&mut con)
            .unwrap(),
        "10.6"
    );
    assert_eq!(con.append::<_, _, i64>("s", "abc").unwrap(), 3);
    assert_eq!(con.append::<_, _, i64>("s", "def").unwrap(), 6);
    assert_eq!(
        cmd("GETRANGE")
            .arg("s")
            .arg(1)
            .arg(-2)
            .query::<String>(&mut con)
            .unwrap(),
        "bcde"
    );
    assert_eq!(
        cmd("SETRANGE")
            .arg("s")
            .arg(8)
            .arg("x")
            .query::<i64>(&mut con)
            .unwrap(),
        9
    );
    assert_eq!(con.get::<_, Vec<u8>>("s").unwrap(), b"abcdef\0\0x");
    assert_eq!(
        cmd("MSET")
            .arg("k1")
            .arg("v1")
            .arg("k2")
            .arg("v2")
            .query::<String>(&mut con)
            .unwrap(),
        "OK"
    );
    let values: Vec<Option<String>> = cmd("MGET")
        .arg("k1")
        .arg("nokey")
        .arg("k2")
        .query(&mut con)
        .unwrap();
    assert_eq!(values, vec![Some("v1".into()), None, Some("v2".into())]);
    assert_eq!(
        cmd("MSETNX")
            .arg("k1")
            .arg("x")
            .arg("k3")
            .arg("y")
            .query::<i64>(&mut con)
            .unwrap(),
        0
    );
    assert_eq!(
        cmd("LCS")
            .arg("k1")
            .arg("k2")
            .query::<String>(&mut con)
            .unwrap(),
        "v"
    );
}

#[test]
fn set_options_follow_redis() {
    let server = TestServer::start();
    let mut con = server.client();
    assert_eq!(
        cmd("SET")
            .arg("k")
            .arg("1")
            .arg("NX")
            .query::<Value>(&mut con)
            .unwrap(),
        Value::Okay
    );
    assert_eq!(
        cmd("SET")
            .arg("k")
            .arg("2")
            .arg("NX")
            .query::<Value>(&mut con)
            .unwrap(),
        Value::Nil
    );
    assert_eq!(
        cmd("SET")
            .arg("k")
            .arg("3")
            .arg("XX")
            .arg("GET")
            .query::<String>(&mut con)
            .unwrap(),
        "1"
    );
    assert_eq!(
        cmd("SET")
            .arg("k")
            .arg("4")
            .arg("EX")
            .arg(100)
            .query::<Value>(&mut con)
            .unwrap(),
        Value::Okay
    );
    let ttl: i64 = con.ttl("k").unwrap();
    assert!((99..=100).contains(&ttl), "ttl {ttl}");
    assert_eq!(
        cmd("SET")
            .arg("k")
            .arg("5")
            .arg("KEEPTTL")
            .query::<Value>(&mut con)
            .unwrap(),
        Value::Okay
    );
    assert!(con.pttl::<_, i64>("k").unwrap() > 98_000);
    assert_eq!(
        error_text(
            cmd("SET")
                .arg("k")
                .arg("v")
                .arg("NX")
                .arg("XX")
                .query(&mut con)
        ),
        "ERR syntax error"
    );
    assert_eq!(
        error_text(
            cmd("SET")
                .arg("k")
                .arg("v")
                .arg("EX")
                .arg(0)
                .query(&mut con)
        ),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        error_text(
            cmd("SET")
                .arg("k")
                .arg("v")
                .arg("EX")
                .arg("x")
                .query(&mut con)
        ),
        "ERR value is not an integer or out of range"
    );
}

#[test]
fn keys_expire_rename_scan() {
    let server = TestServer::start();
    let mut con = server.client();
    for i in 0..100 {
        let _: () = con.set(format!("key:{i}"), i).unwrap();
    }
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 100);
    let mut cursor = 0u64;
    let mut seen = std::collections::HashSet::new();
    loop {
        let (next, keys): (u64, Vec<String>) = cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("key:1*")
            .arg("COUNT")
            .arg(7)
            .query(&mut con)
            .unwrap();
        seen.extend(keys);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 11, "key:1 and key:10..key:19");
    let mut keys: Vec<String> = con.keys("key:9?").unwrap();
    keys.sort();
    assert_eq!(
        keys,
        (90..100).map(|i| format!("key:{i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        cmd("RENAME")
            .arg("key:1")
            .arg("renamed")
            .query::<String>(&mut con)
            .unwrap(),
        "OK"
    );
    assert_eq!(
        error_text(cmd("RENAME").arg("key:1").arg("x").query(&mut con)),
        "ERR no such key"
    );
    assert_eq!(
        cmd("PEXPIRE")
            .arg("renamed")
            .arg(50)
            .query::<i64>(&mut con)
            .unwrap(),
        1
    );
    std::thread::sleep(std::time::Duration::from_millis(120));
    assert_eq!(con.exists::<_, i64>("renamed").unwrap(), 0);
    assert_eq!(
        cmd("TYPE").arg("key:2").query::<String>(&mut con).unwrap(),
        "string"
    );
    assert_eq!(
        cmd("OBJECT")
            .arg("ENCODING")
            .arg("key:2")
            .query::<String>(&mut con)
            .unwrap(),
        "int"
    );
    assert_eq!(
        cmd("DEL")
            .arg("key:2")
            .arg("key:3")
            .arg("nope")
            .query::<i64>(&mut con)
            .unwrap(),
        2
    );
    assert_eq!(
        cmd("COPY")
            .arg("key:4")
            .arg("copy")
            .query::<i64>(&mut con)
            .unwrap(),
        1
    );
    assert_eq!(
        cmd("MOVE")
            .arg("copy")
            .arg(1)
            .query::<i64>(&mut con)
            .unwrap(),
        1
    );
    assert_eq!(cmd("EXISTS").arg("copy").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(
        cmd("SELECT").arg(1).query::<String>(&mut con).unwrap(),
        "OK"
    );
    assert_eq!(con.get::<_, String>("copy").unwrap(), "4");
    assert_eq!(cmd("FLUSHALL").query::<String>(&mut con).unwrap(), "OK");
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 0);
}

#[test]
fn keys_expire_without_being_read() {
    let server = TestServer::start();
    let mut con = server.client();
    for i in 0..200 {
        let _: () = cmd("SET")
            .arg(format!("k{i}"))
            .arg("v")
            .arg("PX")
            .arg(30)
            .query(&mut con)
            .unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let info: String = cmd("INFO").arg("keyspace").query(&mut con).unwrap();
    assert_eq!(
        info.trim_end(),
        "# Keyspace",
        "active expiry left keys behind: {info}"
    );
}

#[test]
fn errors_use_redis_text() {
    let server = TestServer::start();
    let mut con = server.client();
    assert_eq!(
        error_text(cmd("GET").query(&mut con)),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        error_text(cmd("NOSUCH").arg("a").arg("b").query(&mut con)),
        "ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' "
    );
    assert_eq!(
        error_text(cmd("CLIENT").arg("BOGUS").query(&mut con)),
        "ERR unknown subcommand 'BOGUS'. Try CLIENT HELP."
    );
    let _: () = con.set("s", "abc").unwrap();
    assert_eq!(
        error_text(cmd("INCR").arg("s").query(&mut con)),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        error_text(cmd("SELECT").arg(16).query(&mut con)),
        "ERR DB index is out of range"
    );
}

#[test]
fn pipelines_answer_in_order() {
    let server = TestServer::start();
    let mut con = server.client();
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("SET").arg(format!("p{i}")).arg(i).ignore();
    }
    for i in 0..1000 {
        pipe.cmd("GET").arg(format!("p{i}"));
    }
    let values: Vec<i64> = pipe.query(&mut con).unwrap();
    assert_eq!(values, (0..1000).collect::<Vec<i64>>());
}

/// A pipeline of big requests fills the server's read buffer again and again, and requests
/// straddle reads; replies the server holds back while it reads on must come out whole and in
/// order, also past the amount it holds at most.
#[test]
fn pipelines_of_big_requests_answer_in_order() {
    let server = TestServer::start();
    let mut con = server.client();
    let value = |i: usize, k: usize| format!("{i}:{k}:").repeat(1 + (i * 7 + k) % 300);
    let mut pipe = redis::pipe();
    for i in 0..150 {
        let mut mset = cmd("MSET");
        for k in 0..10 {
            mset.arg(format!("big:{k}")).arg(value(i, k));
        }
        pipe.add_command(mset);
        pipe.cmd("MGET").arg("big:0").arg("big:9");
    }
    let replies: Vec<Value> = pipe.query(&mut con).unwrap();
    let mut expected = Vec::new();
    for i in 0..150 {
        expected.push(Value::Okay);
        let bulk = |k| Value::BulkString(value(i, k).into_bytes());
        expected.push(Value::Array(vec![bulk(0), bulk(9)]));
    }
    assert_eq!(replies, expected);
}

/// A client that sends a pipeline and then shuts its side of the connection (as `nc -N`
/// does) still gets every reply, also those the server held while reading on. The server is
/// kept busy (DEBUG SLEEP) until all of it has arrived, and the requests are 1 KB each, so
/// that its 16 KB reads end where the input does and the end of input is found while
/// replies are held.
#[test]
fn pipeline_then_half_close_gets_every_reply() {
    use std::io::{Read, Write};
    let server = TestServer::start_with(&["--enable-debug-command", "yes"]);
    let mut raw = server.raw();
    let mut sleeper = server.client();
    let busy = std::thread::spawn(move || {
        let () = cmd("DEBUG")
            .arg("SLEEP")
            .arg("0.5")
            .query(&mut sleeper)
            .unwrap();
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    let value = "v".repeat(996);
    let request = format!(
        "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n{value}\r\n",
        value.len()
    );
    assert_eq!(request.len(), 1024);
    raw.write_all(request.repeat(48).as_bytes()).unwrap();
    raw.shutdown(std::net::Shutdown::Write).unwrap();
    busy.join().unwrap();
    let mut replies = String::new();
    raw.read_to_string(&mut replies).unwrap();
    assert_eq!(replies, "+OK\r\n".repeat(48));
}

/// Past about 16,000 keys the server prefetches the keys of a pipelined batch before running
/// it (a hint read from the raw input); the replies must be exactly those without it, also
/// when the batch changes database midway or mixes in keyless and multi-key commands.
#[test]
fn pipelines_over_a_large_keyspace_answer_in_order() {
    let server = TestServer::start();
    let mut con = server.client();
    let keys = 40_000;
    let mut load = redis::pipe();
    for i in 0..keys {
        load.cmd("SET").arg(format!("key:{i:012}")).arg(i).ignore();
    }
    let () = load.query(&mut con).unwrap();
    let mut pipe = redis::pipe();
    for i in (0..keys).step_by(7) {
        pipe.cmd("GET").arg(format!("key:{i:012}"));
        pipe.cmd("INCR").arg(format!("key:{i:012}"));
        pipe.cmd("PING");
        pipe.cmd("MGET").arg(format!("key:{i:012}")).arg("missing");
    }
    pipe.cmd("SELECT").arg(1);
    pipe.cmd("GET").arg("key:000000000000");
    pipe.cmd("SET").arg("key:000000000000").arg("db1");
    pipe.cmd("SELECT").arg(0);
    pipe.cmd("GET").arg("key:000000000000");
    let replies: Vec<Value> = pipe.query(&mut con).unwrap();
    let bulk = |n: i64| Value::BulkString(n.to_string().into_bytes());
    let mut expected = Vec::new();
    for i in (0..keys).step_by(7) {
        expected.push(bulk(i));
        expected.push(Value::Int(i + 1));
        expected.push(Value::SimpleString("PONG".into()));
        expected.push(Value::Array(vec![bulk(i + 1), Value::Nil]));
    }
    expected.push(Value::Okay);
    expected.push(Value::Nil);
    expected.push(Value::Okay);
    expected.push(Value::Okay);
    expected.push(bulk(1));
    assert_eq!(replies, expected);
    // MSET and MGET prefetch their own keys, a batch of 16 at a time.
    let pairs: Vec<(String, i64)> = (0..40)
        .map(|i| (format!("key:{:012}", i * 997), -i))
        .collect();
    let () = con.mset(&pairs).unwrap();
    let names: Vec<&String> = pairs.iter().map(|(name, _)| name).collect();
    let values: Vec<i64> = con.mget(&names).unwrap();
    assert_eq!(values, (0..40).map(|i| -i).collect::<Vec<i64>>());
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut con).unwrap(), keys);
}

#[test]
fn hello_command_and_client_commands() {
    let server = TestServer::start();
    let mut con = server.client();
    let hello: Vec<Value> = cmd("HELLO").arg(2).query(&mut con).unwrap();
    assert_eq!(hello.len(), 14);
    assert_eq!(hello[1], Value::BulkString(b"redis".to_vec()));
    assert_eq!(hello[5], Value::Int(2));
    assert_eq!(
        error_text(cmd("HELLO").arg(4).query(&mut con)),
        "NOPROTO unsupported protocol version"
    );
    assert_eq!(
        cmd("CLIENT")
            .arg("SETNAME")
            .arg("worker-1")
            .query::<String>(&mut con)
            .unwrap(),
        "OK"
    );
    assert_eq!(
        cmd("CLIENT")
            .arg("GETNAME")
            .query::<String>(&mut con)
            .unwrap(),
        "worker-1"
    );
    let list: String = cmd("CLIENT").arg("LIST").query(&mut con).unwrap();
    assert!(list.contains(" name=worker-1 "), "{list}");
    let count: i64 = cmd("COMMAND").arg("COUNT").query(&mut con).unwrap();
    let names: Vec<String> = cmd("COMMAND").arg("LIST").query(&mut con).unwrap();
    assert!(names.len() as i64 > count && names.contains(&"client|kill".to_string()));
    let keys: Vec<String> = cmd("COMMAND")
        .arg("GETKEYS")
        .arg("MSET")
        .arg("a")
        .arg("1")
        .arg("b")
        .arg("2")
        .query(&mut con)
        .unwrap();
    assert_eq!(keys, vec!["a", "b"]);
    let info: Vec<Value> = cmd("COMMAND")
        .arg("INFO")
        .arg("get")
        .query(&mut con)
        .unwrap();
    let Value::Array(get) = &info[0] else {
        panic!("{info:?}")
    };
    assert_eq!(get[0], Value::BulkString(b"get".to_vec()));
    assert_eq!(get[1], Value::Int(2));
}

#[test]
fn config_get_set_and_rewrite() {
    let dir = std::env::temp_dir().join(format!("oxidis-conf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("redis.conf");
    std::fs::write(&conf, "# test\nmaxmemory 100mb\nhz 20\n").unwrap();
    let server = TestServer::start_with(&[conf.to_str().unwrap(), "--hz", "15"]);
    let mut con = server.client();
    let got: Vec<String> = cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query(&mut con)
        .unwrap();
    assert_eq!(got, vec!["maxmemory", "104857600"]);
    let hz: Vec<String> = cmd("CONFIG").arg("GET").arg("hz").query(&mut con).unwrap();
    assert_eq!(hz, vec!["hz", "15"], "arguments override the file");
    assert_eq!(
        cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg("1gb")
            .query::<String>(&mut con)
            .unwrap(),
        "OK"
    );
    assert_eq!(
        error_text(
            cmd("CONFIG")
                .arg("SET")
                .arg("port")
                .arg("x")
                .query(&mut con)
        ),
        "ERR CONFIG SET failed (possibly related to argument 'port') - argument couldn't be parsed into an integer"
    );
    assert_eq!(
        cmd("CONFIG")
            .arg("REWRITE")
            .query::<String>(&mut con)
            .unwrap(),
        "OK"
    );
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("maxmemory 1073741824\n"), "{text}");
    assert!(text.starts_with("# test\n"), "{text}");
}

#[test]
fn unknown_directive_is_fatal() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oxidis"))
        .args(["--port", "0", "--no-such-thing", "yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***"),
        "{stderr}"
    );
    assert!(stderr.contains(">>> 'no-such-thing \"yes\"'"), "{stderr}");
    assert!(
        stderr.contains("Bad directive or wrong number of arguments"),
        "{stderr}"
    );
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = TestServer::start();
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(server.pid().to_string())
        .status()
        .unwrap();
    let status = server
        .wait_exit(std::time::Duration::from_secs(5))
        .expect("exited after SIGTERM");
    assert!(status.success(), "{status:?}");
}
