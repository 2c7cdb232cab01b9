//! Starts the real `oxidis` binary on a free port for a test, and stops it afterwards.
// Each test crate uses a different part of these helpers.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub struct TestServer {
    pub port: u16,
    child: Child,
    /// The server's own working directory, so no dump or AOF leaks between servers.
    dir: std::path::PathBuf,
}

/// A port below Linux's ephemeral range (32768 and up), so no client socket of another
/// test can hold it or be connected to itself on it. Each call takes the next port of a
/// block chosen by process id, and checks that nothing listens there yet.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let block = 20_000 + (std::process::id() % 100) as u16 * 120;
    loop {
        let port = block + NEXT.fetch_add(1, Ordering::Relaxed) % 120;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// `args` come first, so they may start with a config file path.
    ///
    /// Another program may bind the port before our server does: then the server exits,
    /// and we try again on the next port.
    pub fn start_with(args: &[&str]) -> TestServer {
        for _ in 0..5 {
            let port = free_port();
            let dir =
                std::env::temp_dir().join(format!("oxidis-test-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create the server's directory");
            let child = Command::new(env!("CARGO_BIN_EXE_oxidis"))
                .args(args)
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--dir",
                    dir.to_str().expect("utf-8 path"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start oxidis");
            let mut server = TestServer { port, child, dir };
            if server.wait_ready() {
                return server;
            }
        }
        panic!("oxidis did not start on any of five free ports");
    }

    /// True once the server answers on the port; false if it exited first (port taken).
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("oxidis did not start on port {}", self.port);
    }

    pub fn client(&self) -> redis::Connection {
        self.connect(&format!("redis://127.0.0.1:{}/", self.port))
    }

    /// A client logged in as the default user, for a server started with `--requirepass`.
    pub fn client_with_password(&self, password: &str) -> redis::Connection {
        self.connect(&format!("redis://:{password}@127.0.0.1:{}/", self.port))
    }

    fn connect(&self, url: &str) -> redis::Connection {
        redis::Client::open(url).unwrap().get_connection().unwrap()
    }

    /// A raw socket, for sending bytes no client library would send.
    pub fn raw(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `bytes` and reads until the server closes or `want` bytes arrived.
pub fn send_raw(stream: &mut TcpStream, bytes: &[u8]) -> String {
    stream.write_all(bytes).unwrap();
    read_some(stream)
}

/// Reads what the server sends until it stops sending for a moment or closes.
pub fn read_some(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}
