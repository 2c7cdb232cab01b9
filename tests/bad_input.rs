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
        // A 4 GB bulk and a 2^31 multibulk count.
        (
            b"*1\r\n$4294967296\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*2147483648\r\n",
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

/// The server's resident memory, from /proc.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn unauthenticated_megabyte_is_refused_and_closed() {
    let server = TestServer::start_with(&["--requirepass", "secret"]);
    let mut bystander = server.client_with_password("secret");
    let mut raw = server.raw();
    let mut request = b"*1\r\n$1048576\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'x', 1 << 20));
    use std::io::Write;
    let _ = raw.write_all(&request);
    assert_eq!(
        read_some(&mut raw),
        "-ERR Protocol error: unauthenticated bulk length\r\n"
    );
    bystander_still_served(&mut bystander, 1);
}

#[test]
fn million_pipelined_commands_without_reading_keep_memory_bounded() {
    let server = TestServer::start();
    let mut bystander = server.client();
    // A million 1 KB replies (1 GB) cannot all sit in the kernel's socket buffers.
    let _: () = bystander.set("flood", "x".repeat(1000)).unwrap();
    let before = rss_kb(server.pid());
    let mut flood = server.raw();
    flood
        .set_write_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let batch = b"GET flood\r\n".repeat(10_000);
        let mut sent = 0;
        for _ in 0..100 {
            if flood.write_all(&batch).is_err() {
                break;
            }
            sent += 10_000;
        }
        (flood, sent)
    });
    for round in 0..20 {
        bystander_still_served(&mut bystander, round);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (flood, sent) = writer.join().unwrap();
    // The server stops reading a client whose unread replies pass 32 MB: the kernel buffers
    // fill and the writer is held back, instead of the server queueing a million replies.
    assert!(
        sent < 1_000_000,
        "all {sent} commands were taken without replies read"
    );
    let grown = rss_kb(server.pid()).saturating_sub(before);
    assert!(grown < 96 * 1024, "RSS grew by {grown} kB");
    drop(flood);
    bystander_still_served(&mut bystander, 100);
}

#[test]
fn silent_client_is_closed_by_timeout_and_others_are_served() {
    let server = TestServer::start_with(&["--timeout", "1"]);
    let mut bystander = server.client();
    let mut silent = server.raw();
    let started = std::time::Instant::now();
    silent
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    use std::io::Read;
    // While it waits, the bystander keeps the server busy and keeps being answered.
    let watcher = std::thread::spawn(move || silent.read(&mut buf).map(|n| (n, started.elapsed())));
    for round in 0..10 {
        bystander_still_served(&mut bystander, round);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (n, after) = watcher.join().unwrap().expect("closed, not timed out");
    assert_eq!(n, 0);
    assert!(
        after >= std::time::Duration::from_secs(1),
        "closed after {after:?}"
    );
}

#[test]
fn slowloris_request_completes_while_others_are_served() {
    let server = TestServer::start();
    let mut bystander = server.client();
    let mut slow = server.raw();
    use std::io::Write;
    let request = b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n";
    for (round, byte) in request.iter().enumerate() {
        slow.write_all(&[*byte]).unwrap();
        bystander_still_served(&mut bystander, round as i64);
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
    assert_eq!(read_some(&mut slow), "$2\r\nhi\r\n");
}

#[test]
fn unauthenticated_client_that_does_not_read_is_closed() {
    // A Unix socket: its buffers are small and fixed, so they fill after a few hundred
    // replies (TCP's grow to tens of megabytes).
    let socket = std::env::temp_dir().join(format!("oxidis-unread-{}.sock", std::process::id()));
    let server = TestServer::start_with(&[
        "--requirepass",
        "secret",
        "--unixsocket",
        socket.to_str().unwrap(),
    ]);
    let mut bystander = server.client_with_password("secret");
    let mut raw = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    raw.set_write_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // One small request at a time: the server answers each alone, so when its socket fills
    // only a few bytes of the last reply are left over, under the limit. The server must
    // keep reading (and so see the next replies push it over), not wait to write them.
    use std::io::Write;
    let refused = (0..100_000).find_map(|_| {
        std::thread::sleep(std::time::Duration::from_micros(20));
        raw.write_all(b"SET x 5\r\n").err()
    });
    let kind = refused
        .expect("the server never closed the connection")
        .kind();
    assert!(
        matches!(
            kind,
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ),
        "{kind:?}"
    );
    bystander_still_served(&mut bystander, 1);
    let _ = std::fs::remove_file(&socket);
}

#[test]
fn unauthenticated_pipeline_whose_replies_overflow_the_reply_buffer_is_closed() {
    let server = TestServer::start_with(&["--requirepass", "secret"]);
    let mut bystander = server.client_with_password("secret");
    // 4,000 requests in one write: every read of them makes tens of KB of NOAUTH replies at
    // once, over Redis's 16 KB reply buffer plus 1 KB, however much the socket would take.
    // The server closes the client without writing them, as Redis does.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    raw.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    use std::io::{Read, Write};
    raw.write_all(&b"SET x 5\r\n".repeat(4000)).unwrap();
    let mut received = Vec::new();
    let end = raw.read_to_end(&mut received);
    // Closed: an end of stream, or a reset when the unread requests were dropped.
    if let Err(e) = &end {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e:?}");
    }
    assert!(
        received.len() <= 17 * 1024,
        "{} bytes of replies",
        received.len()
    );
    bystander_still_served(&mut bystander, 1);
}
