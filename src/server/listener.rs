//! Start-up: bind the configured addresses, accept clients, run the background cycle, and shut
//! down cleanly on SIGTERM/SIGINT or SHUTDOWN.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::AbortHandle;

use super::stream::Peer;
use super::{Server, connection, cron};
use crate::config::{self, Config};

/// Runs the server until it is told to stop. Returns an error if no address could be bound.
pub async fn run(config: Config) -> std::io::Result<()> {
    let server = Arc::new(Server::new(config));
    server.load_users().map_err(std::io::Error::other)?;
    super::fd_limit::adjust(&server.config).map_err(std::io::Error::other)?;
    let tls_port = server.config.int(config::TLS_PORT) as u16;
    server.reload_tls().map_err(std::io::Error::other)?;
    let tls_listeners = bind_all(&server, tls_port, "tls")?;
    let unix = bind_unix(&server.config)?;
    // The plain port opens last: whoever waits for it to accept (scripts, tests) can then use
    // the TLS port and the socket too, however long loading the certificates took.
    let port = server.config.int(config::PORT) as u16;
    let listeners = bind_all(&server, port, "tcp")?;
    let bound_port = first_port(&listeners);
    if server.config.bool(config::ALWAYS_SHOW_LOGO) {
        // Redis's logo carries these fields; tools (Redis's own test suite) look for them.
        tracing::info!(
            "Oxidis {} (Redis {} compatible), 64 bit, standalone mode\n    Port: {}\n     PID: {}",
            super::OXIDIS_VERSION,
            super::REDIS_VERSION,
            bound_port,
            std::process::id()
        );
    } else {
        tracing::info!(
            "Oxidis {} (Redis {} compatible) started, pid {}, port {}",
            super::OXIDIS_VERSION,
            super::REDIS_VERSION,
            std::process::id(),
            bound_port
        );
    }
    server
        .stats
        .startup_allocated
        .store(crate::alloc::allocated() as u64, Ordering::Relaxed);
    // Clients are served while the data loads: those that need it get -LOADING meanwhile.
    let _ = server.ports.server.set(Arc::downgrade(&server));
    server.ports.start(&server, PortKind::Tcp, listeners);
    let (tls, has_unix) = (!tls_listeners.is_empty(), unix.is_some());
    server.ports.start(&server, PortKind::Tls, tls_listeners);
    if let Some((listener, path)) = unix {
        tokio::spawn(unix_accept_loop(server.clone(), listener, path));
    }
    tokio::spawn(crate::timer::drive());
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let loader = server.clone();
    tokio::select! {
        loaded = tokio::task::spawn_blocking(move || load_data(&loader)) => {
            loaded.map_err(std::io::Error::other)?.map_err(std::io::Error::other)?;
        }
        _ = sigterm.recv() => exit_while_loading("SIGTERM"),
        _ = sigint.recv() => exit_while_loading("SIGINT"),
    }
    tracing::info!("Ready to accept connections tcp");
    if tls {
        tracing::info!("Ready to accept connections tls");
    }
    if has_unix {
        tracing::info!("Ready to accept connections unix");
    }
    tokio::spawn(cron::run(server.clone()));
    tokio::spawn(cron::evict_on(server.clone()));
    crate::replication::start(&server);

    loop {
        tokio::select! {
            _ = sigterm.recv() => tracing::warn!("Received SIGTERM scheduling shutdown..."),
            _ = sigint.recv() => tracing::warn!("Received SIGINT scheduling shutdown..."),
        }
        tracing::warn!("User requested shutdown...");
        let saving = server.clone();
        let saved = tokio::task::spawn_blocking(move || {
            let _gate = saving.store.enter(true);
            saving.snapshots.on_shutdown(&saving, None)
        })
        .await;
        if matches!(saved, Ok(Ok(()))) {
            break;
        }
        // As Redis: a signal does not take down a server that could not save its data.
        tracing::warn!("Error trying to save the DB, can't exit.");
    }
    tracing::warn!("Oxidis is now ready to exit, bye bye...");
    Ok(())
}

#[derive(Clone, Copy)]
pub enum PortKind {
    Tcp,
    Tls,
}

/// The accept loops of `port` and `tls-port`, so that CONFIG SET can move them.
#[derive(Default)]
pub struct Ports {
    /// The server the accept loops serve, set once it is running.
    server: OnceLock<Weak<Server>>,
    tcp: Mutex<Vec<Listening>>,
    tls: Mutex<Vec<Listening>>,
}

/// One listening socket and the task that accepts on it (and owns it).
struct Listening {
    fd: RawFd,
    task: AbortHandle,
}

impl Ports {
    /// Redis's `changeListenPort`: binds the new port (none for 0) before the old one is
    /// closed, so a port that cannot be bound leaves things as they were.
    pub fn change(&self, kind: PortKind, port: u16) -> std::io::Result<()> {
        let server = self
            .server
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| std::io::Error::other("the server is not accepting clients yet"))?;
        let listeners = bind_all(&server, port, kind.name())?;
        for old in std::mem::take(&mut *self.of(kind)) {
            old.close();
        }
        self.start(&server, kind, listeners);
        Ok(())
    }

    fn start(&self, server: &Arc<Server>, kind: PortKind, listeners: Vec<TcpListener>) {
        if let PortKind::Tcp = kind {
            let port = first_port(&listeners);
            server.listen_port.store(port as u64, Ordering::Relaxed);
        }
        let mut running = self.of(kind);
        for listener in listeners {
            let fd = listener.as_raw_fd();
            let task = match kind {
                PortKind::Tcp => tokio::spawn(accept_loop(server.clone(), listener)),
                PortKind::Tls => tokio::spawn(super::tls::accept_loop(server.clone(), listener)),
            };
            running.push(Listening {
                fd,
                task: task.abort_handle(),
            });
        }
    }

    fn of(&self, kind: PortKind) -> std::sync::MutexGuard<'_, Vec<Listening>> {
        match kind {
            PortKind::Tcp => &self.tcp,
            PortKind::Tls => &self.tls,
        }
        .lock()
        .unwrap_or_else(|e| e.into_inner())
    }
}

/// The port the listeners were bound to (0 when there are none), as INFO and the logo show it.
fn first_port(listeners: &[TcpListener]) -> u16 {
    listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .map_or(0, |a| a.port())
}

impl PortKind {
    fn name(self) -> &'static str {
        match self {
            PortKind::Tcp => "tcp",
            PortKind::Tls => "tls",
        }
    }
}

impl Listening {
    /// Stops listening at once, so the port can be bound again by the next command. The task
    /// that owns the socket is only dropped later (after this command, on a current-thread
    /// runtime), so the socket is shut down here rather than closed.
    fn close(self) {
        // SAFETY: the accept task owns this descriptor and never ends on its own: it stays open
        // until the task is aborted below.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Read);
        self.task.abort();
    }
}

/// Listens on `port` at every `bind` address (none when the port is 0). An address marked
/// optional (`-::1`) may fail; any other failure stops the server with Redis's words.
fn bind_all(server: &Server, port: u16, kind: &str) -> std::io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    if port != 0 {
        for spec in server
            .config
            .text(config::BIND)
            .split(' ')
            .filter(|s| !s.is_empty())
        {
            let (optional, addr) = match spec.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, spec),
            };
            let ip: IpAddr = match addr {
                "*" => "0.0.0.0".parse().expect("literal"),
                "::*" => "::".parse().expect("literal"),
                other => other.parse().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("Invalid bind address '{other}'"),
                    )
                })?,
            };
            match bind(
                SocketAddr::new(ip, port),
                server.config.int(config::TCP_BACKLOG) as i32,
            ) {
                Ok(listener) => listeners.push(listener),
                Err(e) if optional => tracing::debug!("Skipping optional address {addr}: {e}"),
                Err(e) => {
                    tracing::warn!(
                        "Warning: Could not create server TCP listening socket {addr}:{port}: {e}"
                    );
                    // Redis's words; tools that start servers on guessed ports look for them.
                    tracing::warn!("Failed listening on port {port} ({kind}), aborting.");
                    return Err(e);
                }
            }
        }
        if listeners.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                "Failed listening on any address",
            ));
        }
    }
    Ok(listeners)
}

/// `unixsocket`: listens on a Unix socket too, with `unixsocketperm` as its mode (Redis
/// removes a stale socket file first).
fn bind_unix(config: &Config) -> std::io::Result<Option<(UnixListener, String)>> {
    let path = config.text(config::UNIXSOCKET);
    if path.is_empty() {
        return Ok(None);
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).inspect_err(|e| {
        tracing::warn!("Failed opening Unix socket: {e}");
    })?;
    let mode = config.int(config::UNIXSOCKETPERM) as u32;
    if mode != 0 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(Some((listener, path)))
}

async fn unix_accept_loop(server: Arc<Server>, listener: UnixListener, path: String) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection::serve(server.clone(), stream, Peer::unix(&path)));
            }
            Err(e) => {
                tracing::warn!("Accepting client connection: {e}");
                crate::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// A shutdown signal while the data loads: nothing to save (the files on disk hold more than
/// memory does), so out at once.
fn exit_while_loading(signal: &str) -> ! {
    tracing::warn!("Received {signal} scheduling shutdown...");
    tracing::warn!("Oxidis is now ready to exit, bye bye...");
    std::process::exit(0);
}

/// Loads the append-only file when `appendonly` is on (creating it if there is none), else
/// the RDB dump, as Redis does; nothing expires while loading.
fn load_data(server: &Server) -> Result<(), String> {
    let notifier = &server.store.notifier;
    notifier.loading.store(true, Ordering::Relaxed);
    let loaded = if server.config.bool(config::APPENDONLY) {
        notifier.aof.start(server)
    } else {
        server.snapshots.load_at_start(server)
    };
    notifier.loading.store(false, Ordering::Relaxed);
    loaded
}

fn bind(addr: SocketAddr, backlog: i32) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // Like Redis: "::" serves IPv6 only, so it can sit beside "0.0.0.0" on the same port.
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.max(1))?;
    TcpListener::from_std(socket.into())
}

async fn accept_loop(server: Arc<Server>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => accept(&server, stream, peer),
            Err(e) => {
                tracing::warn!("Accepting client connection: {e}");
                crate::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

fn accept(server: &Arc<Server>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let keepalive = server.config.int(config::TCP_KEEPALIVE);
    if keepalive > 0 {
        let params = socket2::TcpKeepalive::new()
            .with_time(std::time::Duration::from_secs(keepalive as u64));
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&params);
    }
    let peer = Peer::tcp(&stream, peer);
    tokio::spawn(connection::serve(server.clone(), stream, peer));
}
