//! Lists, hashes, sets, transactions and pub/sub through the `redis` crate, with exact replies.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::TestServer;
use redis::{Commands, Value, cmd};

#[test]
fn lists_queue_and_blocking_pop() {
    let server = TestServer::start();
    let mut con = server.client();
    assert_eq!(con.rpush::<_, _, i64>("jobs", &["a", "b", "c"]).unwrap(), 3);
    assert_eq!(con.lpop::<_, String>("jobs", None).unwrap(), "a");
    assert_eq!(
        con.lrange::<_, Vec<String>>("jobs", 0, -1).unwrap(),
        ["b", "c"]
    );
    assert_eq!(
        con.blpop::<_, Option<(String, String)>>("jobs", 0.0)
            .unwrap(),
        Some(("jobs".into(), "b".into()))
    );
    // A worker blocked on an empty queue gets the next push.
    let port = server.port;
    let worker = std::thread::spawn(move || {
        let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        con.brpop::<_, Option<(String, String)>>("empty", 5.0)
            .unwrap()
    });
    while cmd("INFO")
        .arg("clients")
        .query::<String>(&mut con)
        .unwrap()
        .contains("blocked_clients:0")
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(con.lpush::<_, _, i64>("empty", "job-1").unwrap(), 1);
    assert_eq!(
        worker.join().unwrap(),
        Some(("empty".into(), "job-1".into()))
    );
    assert_eq!(con.exists::<_, i64>("empty").unwrap(), 0);
    assert_eq!(
        con.blpop::<_, Option<(String, String)>>("empty", 0.05)
            .unwrap(),
        None
    );
}

#[test]
fn hashes_and_sets() {
    let server = TestServer::start();
    let mut con = server.client();
    assert_eq!(
        con.hset_multiple::<_, _, _, String>(
            "sensor:17",
            &[("temperature", "25"), ("humidity", "0.5")]
        )
        .unwrap(),
        "OK"
    );
    let state: HashMap<String, String> = con.hgetall("sensor:17").unwrap();
    assert_eq!(
        state,
        HashMap::from([
            ("temperature".to_string(), "25".to_string()),
            ("humidity".to_string(), "0.5".to_string())
        ])
    );
    assert_eq!(
        con.hincr::<_, _, _, i64>("sensor:17", "temperature", 2)
            .unwrap(),
        27
    );
    assert_eq!(
        con.sadd::<_, _, i64>("online", &["r1", "r2", "r1"])
            .unwrap(),
        2
    );
    let members: HashSet<String> = con.smembers("online").unwrap();
    assert_eq!(members, HashSet::from(["r1".to_string(), "r2".to_string()]));
    let err = con.sadd::<_, _, i64>("sensor:17", "x").unwrap_err();
    assert_eq!(err.code(), Some("WRONGTYPE"));
}

#[test]
fn transactions_and_watch() {
    let server = TestServer::start();
    let mut con = server.client();
    let mut other = server.client();
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .incr("k", 1)
        .incr("k", 1)
        .query(&mut con)
        .unwrap();
    assert_eq!((a, b), (1, 2));
    let _: () = cmd("WATCH").arg("k").query(&mut con).unwrap();
    let _: () = other.set("k", 10).unwrap();
    let result: Value = redis::pipe().atomic().incr("k", 1).query(&mut con).unwrap();
    assert_eq!(result, Value::Nil);
    assert_eq!(con.get::<_, i64>("k").unwrap(), 10);
    let err = cmd("EXEC").query::<Value>(&mut con).unwrap_err();
    assert_eq!(err.detail(), Some("EXEC without MULTI"));
}

#[test]
fn publish_reaches_a_subscriber() {
    let server = TestServer::start();
    let mut con = server.client();
    let mut sub_con = server.client();
    let mut pubsub = sub_con.as_pubsub();
    pubsub.subscribe("readings").unwrap();
    assert_eq!(con.publish::<_, _, i64>("readings", "42").unwrap(), 1);
    let message = pubsub.get_message().unwrap();
    assert_eq!(message.get_channel_name(), "readings");
    assert_eq!(message.get_payload::<String>().unwrap(), "42");
}

#[test]
fn sorted_sets_schedule() {
    let server = TestServer::start();
    let mut con = server.client();
    assert_eq!(
        con.zadd_multiple::<_, _, _, i64>("jobs", &[(300, "c"), (100, "a"), (200, "b")])
            .unwrap(),
        3
    );
    let due: Vec<String> = con.zrangebyscore_limit("jobs", "-inf", 250, 0, 10).unwrap();
    assert_eq!(due, ["a", "b"]);
    assert_eq!(con.zrem::<_, _, i64>("jobs", "a").unwrap(), 1);
    assert_eq!(
        con.zrank::<_, _, Option<i64>>("jobs", "c").unwrap(),
        Some(1)
    );
    let top: Vec<(String, f64)> = con.zrevrange_withscores("jobs", 0, 0).unwrap();
    assert_eq!(top, [("c".to_string(), 300.0)]);
    let err = cmd("ZADD")
        .arg("jobs")
        .arg("soon")
        .arg("d")
        .query::<Value>(&mut con)
        .unwrap_err();
    assert_eq!(err.detail(), Some("value is not a valid float"));
}
