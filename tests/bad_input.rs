//! Malformed requests get Redis's error text, the offending connection is closed where Redis
//! closes it, and a second client connected throughout keeps getting correct answers.

mod common;

use common::{TestServer, read_some, send_raw};
use redis::Commands;

/// Checks the bystander client still gets exact answers.
fn bystander_still_served(con: &mut redis::Connection, round: i64) {
    let _: () = con.set("bystander", round).unwrap();
    assert_eq!(con.get::<_, i64>("bystander").unwrap(), round);
}

#[test]
fn malformed_requests_get_redis_errors_and_others_are_served() {
    let server = TestServer::start();
    let mut bystander = server.client();
    let cases: &[(&[u8], &str)] = &[
        (
            b"*1\r\n$536870913\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*3000000000\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\nfoo\r\n",
            "-ERR Protocol error: expected '$', got 'f'\r\n",
        ),
        (
            b"*1\r\n$-10\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"set \"unbalanced value\r\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ];
    for (round, (input, expected)) in cases.iter().enumerate() {
        let mut raw = server.raw();
        assert_eq!(
            send_raw(&mut raw, input),
            *expected,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
        bystander_still_served(&mut bystander, round as i64);
    }
}

#[test]
fn negative_multibulk_length_is_ignored() {
    let server = TestServer::start();
    let mut raw = server.raw();
    assert_eq!(send_raw(&mut raw, b"*-10\r\nPING\r\n"), "+PONG\r\n");
}

#[test]
fn huge_inline_line_is_refused() {
    let server = TestServer::start();
    let mut bystander = server.client();
    let mut raw = server.raw();
    let line = vec![b'a'; 100 * 1024];
    assert_eq!(
        send_raw(&mut raw, &line),
        "-ERR Protocol error: too big inline request\r\n"
    );
    bystander_still_served(&mut bystander, 1);
}

#[test]
fn random_bytes_do_not_hurt_the_server() {
    let server = TestServer::start();
    let mut bystander = server.client();
    // A fixed pseudo-random stream, so a failure can be replayed.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..20 {
        let mut raw = server.raw();
        let bytes: Vec<u8> = (0..4096)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        use std::io::Write;
        let _ = raw.write_all(&bytes);
        let _ = read_some(&mut raw);
        bystander_still_served(&mut bystander, round);
    }
}

#[test]
fn request_cut_in_the_middle_waits_then_completes() {
    let server = TestServer::start();
    let mut bystander = server.client();
    let mut raw = server.raw();
    assert_eq!(
        send_raw(&mut raw, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhel"),
        ""
    );
    bystander_still_served(&mut bystander, 7);
    assert_eq!(send_raw(&mut raw, b"lo\r\n"), "+OK\r\n");
    assert_eq!(bystander.get::<_, String>("k").unwrap(), "hello");
    // A client that disconnects mid-request leaves nothing behind.
    let mut cut = server.raw();
    use std::io::Write;
    cut.write_all(b"*3\r\n$3\r\nSET\r\n$3\r\ncut\r\n$10\r\nabc")
        .unwrap();
    drop(cut);
    bystander_still_served(&mut bystander, 8);
    assert!(!bystander.exists::<_, bool>("cut").unwrap());
}

#[test]
fn unauthenticated_clients_may_not_send_big_requests() {
    let server = TestServer::start_with(&["--requirepass", "secret"]);
    let mut raw = server.raw();
    assert_eq!(
        send_raw(&mut raw, b"GET k\r\n"),
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        send_raw(&mut raw, b"*20\r\n"),
        "-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
}
