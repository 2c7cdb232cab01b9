//! A replica's link to its master (Redis's `replicaof`): connect, handshake (PING, AUTH,
//! REPLCONF, PSYNC), a full resynchronisation from an RDB or a partial one from where the
//! link broke, then the master's stream applied in order through the one dispatch path, as
//! the master client, and passed on unchanged to this node's own replicas. Acknowledged
//! once a second and on REPLCONF GETACK. One task runs the link for the server's lifetime,
//! following REPLICAOF: on any failure it drops the link and tries again a second later.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{LINK_CONNECTING, LINK_HANDSHAKE, LINK_SYNCING, LINK_UP, Target, failover};
use crate::client::{Client, ClientHandle, FLAG_MASTER};
use crate::config;
use crate::mailbox::Inbox;
use crate::protocol::{Limits, Reply, RequestParser, encode_command};
use crate::server::Server;
use crate::store::notify::MasterStream;
use crate::util::{eq_ignore_case, now_ms};

/// Runs the link to whatever master REPLICAOF names, for the server's lifetime.
pub async fn run(server: Arc<Server>) {
    let replication = &server.replication;
    loop {
        let changed = replication.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let Some(target) = replication.target() else {
            changed.await;
            continue;
        };
        let outcome = tokio::select! {
            outcome = link(&server, &target) => outcome,
            _ = &mut changed => Ok(()),
        };
        // A transfer that failed starts again at once (Redis's cancelReplicationHandshake);
        // a link that broke after it, or never came up, waits for the next second.
        let transfer_failed =
            outcome.is_err() && replication.link.load(Ordering::Relaxed) == LINK_SYNCING;
        replication.link_down();
        match outcome {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => tracing::warn!("{e}"),
            Err(e) => tracing::warn!("Error condition on socket for SYNC: {e}"),
            Ok(()) => {}
        }
        if transfer_failed && replication.target().as_ref() == Some(&target) {
            tracing::info!(
                "Reconnecting to MASTER {}:{} after failure",
                target.host,
                target.port
            );
        } else if replication.target().as_ref() == Some(&target) {
            // The same master: try again in a second, as Redis's replicationCron does.
            let changed = replication.changed.notified();
            tokio::select! {
                _ = crate::timer::sleep(Duration::from_secs(1)) => {}
                _ = changed => {}
            }
        }
    }
}

/// The master's connection, with what was read but not used yet.
pub(super) struct Conn {
    stream: TcpStream,
    pub(super) buf: BytesMut,
    /// `repl-timeout`: how long a read may wait before the link is given up, and what to
    /// log then (it depends on the stage, as in Redis).
    timeout: Duration,
    timeout_message: &'static str,
}

const HANDSHAKE_TIMEOUT: &str = "Timeout connecting to the MASTER...";
const TRANSFER_TIMEOUT: &str = "Timeout receiving bulk data from MASTER... If the problem \
     persists try to set the 'repl-timeout' parameter in redis.conf to a larger value.";
const LINK_TIMEOUT: &str = "MASTER timeout: no data nor PING received...";

fn timed_out(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, message)
}

impl Conn {
    async fn send(&mut self, args: &[&[u8]]) -> io::Result<()> {
        let mut out = Vec::new();
        encode_command(&mut out, args);
        self.stream.write_all(&out).await
    }

    pub(super) async fn fill(&mut self) -> io::Result<()> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        let read = tokio::select! {
            read = self.stream.read_buf(&mut self.buf) => read?,
            _ = crate::timer::sleep(self.timeout) => return Err(timed_out(self.timeout_message)),
        };
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the master closed the connection",
            ));
        }
        Ok(())
    }

    /// One line of the master's replies, without its line end.
    async fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line = self.buf.split_to(end + 1);
                let text = String::from_utf8_lossy(&line[..end]);
                return Ok(text.trim_end_matches('\r').to_string());
            }
            if self.buf.len() > 64 * 1024 {
                return Err(io::Error::other("the master sent too long a line"));
            }
            self.fill().await?;
        }
    }

    async fn command(&mut self, args: &[&[u8]]) -> io::Result<String> {
        self.send(args).await?;
        self.line().await
    }
}

fn refused(what: &str, reply: &str) -> io::Error {
    io::Error::other(format!("{what}: {reply}"))
}

/// One life of the link: from connecting until it breaks.
async fn link(server: &Arc<Server>, target: &Target) -> io::Result<()> {
    let replication = &server.replication;
    replication.set_link(LINK_CONNECTING);
    tracing::info!("Connecting to MASTER {}:{}", target.host, target.port);
    let timeout = Duration::from_secs(server.config.int(config::REPL_TIMEOUT).max(1) as u64);
    let stream = tokio::select! {
        stream = TcpStream::connect((target.host.as_str(), target.port)) => stream?,
        _ = crate::timer::sleep(timeout) => return Err(timed_out(HANDSHAKE_TIMEOUT)),
    };
    stream.set_nodelay(true)?;
    tracing::info!("MASTER <-> REPLICA sync started");
    replication.set_link(LINK_HANDSHAKE);
    let mut conn = Conn {
        stream,
        buf: BytesMut::new(),
        timeout,
        timeout_message: HANDSHAKE_TIMEOUT,
    };
    let (replid, offset) = handshake(server, &mut conn).await?;
    let continued = match offset {
        Some(offset) => {
            tracing::info!("Full resync from master: {replid}:{offset}");
            full_sync(server, &mut conn, &replid, offset).await?;
            false
        }
        None => true,
    };
    if continued {
        tracing::info!("MASTER <-> REPLICA sync: Master accepted a Partial Resynchronization.");
    } else {
        server.replication.master_db.store(0, Ordering::Relaxed);
    }
    apply_stream(server, conn, target).await
}

/// PING, AUTH, REPLCONF and PSYNC; returns the master's replication ID and, for a full
/// resynchronisation, the offset the RDB stands for (None: the master continues).
async fn handshake(server: &Server, conn: &mut Conn) -> io::Result<(String, Option<u64>)> {
    let config = &server.config;
    let pong = conn.command(&[b"PING"]).await?;
    // A master that wants a password says so later, at AUTH: an error about that is fine here.
    if pong.starts_with('-')
        && !pong.starts_with("-NOAUTH")
        && !pong.starts_with("-NOPERM")
        && !pong.starts_with("-ERR operation not permitted")
    {
        return Err(refused("Error reply to PING from master", &pong));
    }
    let password = config.text(config::MASTERAUTH);
    if !password.is_empty() {
        let user = config.text(config::MASTERUSER);
        let reply = if user.is_empty() {
            conn.command(&[b"AUTH", password.as_bytes()]).await?
        } else {
            conn.command(&[b"AUTH", user.as_bytes(), password.as_bytes()])
                .await?
        };
        if reply.starts_with('-') {
            return Err(refused("Unable to AUTH to MASTER", &reply));
        }
    }
    let announced_port = config.int(config::REPLICA_ANNOUNCE_PORT);
    let port = if announced_port > 0 {
        announced_port as u64
    } else {
        server.listen_port.load(Ordering::Relaxed)
    };
    let port = port.to_string();
    // Old masters refuse what they do not know; that is no reason to stop.
    let _ = conn
        .command(&[b"REPLCONF", b"listening-port", port.as_bytes()])
        .await?;
    let ip = config.text(config::REPLICA_ANNOUNCE_IP);
    if !ip.is_empty() {
        let _ = conn
            .command(&[b"REPLCONF", b"ip-address", ip.as_bytes()])
            .await?;
    }
    let _ = conn
        .command(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"])
        .await?;
    let (replid, next) = server.replication.psync_position(server);
    tracing::info!("Trying a partial resynchronization (request {replid}:{next}).");
    // A master handing its role over asks the replica it follows now to take it.
    let failing_over = server.replication.failover_state() == failover::State::InProgress;
    let mut psync: Vec<&[u8]> = vec![b"PSYNC", replid.as_bytes(), next.as_bytes()];
    if failing_over {
        psync.push(b"FAILOVER");
    }
    conn.send(&psync).await?;
    let reply = loop {
        // Newlines keep the link alive until the master is ready to answer.
        let line = conn.line().await?;
        if !line.is_empty() {
            break line;
        }
    };
    if failing_over {
        let accepted = reply.starts_with("+FULLRESYNC") || reply.starts_with("+CONTINUE");
        failover::target_answered(server, accepted);
        if !accepted {
            return Err(refused("Unexpected reply to PSYNC from master", &reply));
        }
    }
    let words: Vec<&str> = reply.split_whitespace().collect();
    match words.as_slice() {
        ["+FULLRESYNC", id, offset] => {
            let offset = offset
                .parse()
                .map_err(|_| refused("Bad FULLRESYNC offset", &reply))?;
            Ok((id.to_string(), Some(offset)))
        }
        ["+CONTINUE", rest @ ..] => {
            let backlog = &server.store.notifier.repl;
            let mut inner = backlog.lock();
            if let [new_id] = rest
                && *new_id != inner.replid
            {
                // The master's history changed name (it was promoted): the old one stays as
                // our second, so that our own replicas can still continue.
                inner.replid2 = std::mem::replace(&mut inner.replid, new_id.to_string());
                inner.second_offset = inner.offset as i64 + 1;
                drop(inner);
                server.replication.disconnect_replicas();
            }
            Ok((replid, None))
        }
        _ => Err(refused("Unexpected reply to PSYNC from master", &reply)),
    }
}

/// Reads the RDB (`$<length>` or `$EOF:<mark>`): into a temporary file as Redis's
/// `repl-diskless-load disabled` does, then replaces the data with it; or, under `swapdb`
/// (and `on-empty-db` with no data), straight from the socket beside the old data
/// (`streamed_load`).
async fn full_sync(
    server: &Arc<Server>,
    conn: &mut Conn,
    replid: &str,
    offset: u64,
) -> io::Result<()> {
    let replication = &server.replication;
    replication.set_link(LINK_SYNCING);
    conn.timeout_message = TRANSFER_TIMEOUT;
    let header = loop {
        // Newlines keep the link alive while the master prepares the RDB.
        let line = conn.line().await?;
        if !line.is_empty() {
            break line;
        }
    };
    if header.starts_with('-') {
        return Err(refused("MASTER aborted replication", &header));
    }
    let Some(size) = header.strip_prefix('$') else {
        return Err(refused(
            "Bad protocol from MASTER, the first byte is not '$'",
            &header,
        ));
    };
    let streamed = match server.config.text(config::REPL_DISKLESS_LOAD).as_str() {
        "swapdb" => true,
        "on-empty-db" => server.store.dbs().iter().all(|db| db.is_empty()),
        _ => false,
    };
    if streamed {
        return super::streamed_load::run(server, conn, size, replid, offset).await;
    }
    let temp = format!("temp-{}.{}.rdb", now_ms() / 1000, std::process::id());
    let received = receive_payload(server, conn, size, &temp).await;
    let loaded = received.and_then(|()| load(server, &temp, replid, offset));
    let _ = std::fs::remove_file(&temp);
    loaded
}

async fn receive_payload(
    server: &Server,
    conn: &mut Conn,
    size: &str,
    temp: &str,
) -> io::Result<()> {
    let replication = &server.replication;
    let mut file = io::BufWriter::new(std::fs::File::create(temp)?);
    if let Some(mark) = size.strip_prefix("EOF:") {
        let mark = mark.as_bytes().to_vec();
        tracing::info!(
            "MASTER <-> REPLICA sync: receiving streamed RDB from master with EOF to disk"
        );
        replication.transfer_started(0);
        // The last bytes written, so that a mark split between reads is found.
        let mut tail: Vec<u8> = Vec::new();
        loop {
            if conn.buf.is_empty() {
                conn.fill().await?;
            }
            let mut window = std::mem::take(&mut tail);
            let kept = window.len();
            window.extend_from_slice(&conn.buf);
            if let Some(at) = find(&window, &mark) {
                // Everything before the mark is the RDB; what follows it is the stream.
                let rdb_part = at.saturating_sub(kept);
                file.write_all(&conn.buf[..rdb_part])?;
                let _ = conn.buf.split_to(at + mark.len() - kept);
                replication.transfer_read(rdb_part as u64);
                break;
            }
            let chunk = conn.buf.split();
            file.write_all(&chunk)?;
            replication.transfer_read(chunk.len() as u64);
            let keep = window.len().min(mark.len());
            tail = window[window.len() - keep..].to_vec();
        }
        // The mark may have begun in bytes already written: cut them off the file.
        let mut file = file.into_inner().map_err(|e| e.into_error())?;
        file.flush()?;
        let written = file.metadata()?.len();
        let expected = replication.transfer_read_bytes();
        if written > expected {
            file.set_len(expected)?;
        }
        file.sync_all()?;
    } else {
        let size: u64 = size
            .parse()
            .map_err(|_| refused("Bad protocol from MASTER, bad bulk length", size))?;
        tracing::info!("MASTER <-> REPLICA sync: receiving {size} bytes from master to disk");
        replication.transfer_started(size);
        let mut left = size;
        while left > 0 {
            if conn.buf.is_empty() {
                conn.fill().await?;
            }
            let take = (conn.buf.len() as u64).min(left) as usize;
            let chunk = conn.buf.split_to(take);
            file.write_all(&chunk)?;
            replication.transfer_read(take as u64);
            left -= take as u64;
        }
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Replaces the data with the RDB in `path`, and takes the master's history as this node's.
fn load(server: &Server, path: &str, replid: &str, offset: u64) -> io::Result<()> {
    let notifier = &server.store.notifier;
    if server.config.bool(config::RDBCHECKSUM)
        && let Err(e) = crate::persist::rdb::check_file(std::path::Path::new(path))
    {
        tracing::warn!(
            "MASTER <-> REPLICA sync: the RDB received from the MASTER is damaged, keeping the old data: {e}"
        );
        return Err(io::Error::other(e));
    }
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let _loading = server.loading.start(size, false);
    let _gate = server.store.enter(true);
    tracing::info!("MASTER <-> REPLICA sync: Flushing old data");
    notifier.loading.store(true, Ordering::Relaxed);
    server.store.empty();
    server.scripts.flush_functions(server);
    tracing::info!("MASTER <-> REPLICA sync: Loading DB in memory");
    let loaded = std::fs::File::open(path)
        .map_err(|e| e.to_string())
        .and_then(|file| {
            let reader = io::BufReader::with_capacity(1 << 16, server.loading.counting(file));
            let loaded = crate::persist::rdb::load(reader, &server.store, &server.config, false)?;
            server
                .scripts
                .load_libraries(server, &loaded.functions, false)?;
            Ok(loaded)
        });
    notifier.loading.store(false, Ordering::Relaxed);
    let loaded = loaded.map_err(|e| {
        tracing::warn!("Failed trying to load the MASTER synchronization DB from disk: {e}");
        // What was loaded before the error is no copy of anything: dropped, as Redis does.
        server.store.empty();
        io::Error::other(e)
    })?;
    tracing::info!(
        "Done loading RDB, keys loaded: {}, keys expired: {}.",
        loaded.keys,
        loaded.expired
    );
    took_new_data(server, replid, offset);
    Ok(())
}

/// After a full sync replaced the data: our history is the master's from `offset`, our own
/// replicas and AOF start again from the new data. The caller holds the gate exclusively.
pub(super) fn took_new_data(server: &Server, replid: &str, offset: u64) {
    let notifier = &server.store.notifier;
    // Our replicas held the old data: they must synchronise again.
    server.replication.disconnect_replicas();
    let backlog = &notifier.repl;
    backlog.lock().adopt(replid, offset);
    if !backlog.is_on() {
        backlog.start(server.config.int(config::REPL_BACKLOG_SIZE) as usize);
    }
    if notifier.aof.is_on() {
        // The log must describe the new data: a rewrite starts it again from it.
        if let Err(e) = notifier.aof.start_rewrite(server) {
            tracing::warn!("Failed to restart the append only file after the sync: {e}");
        }
    }
    tracing::info!("MASTER <-> REPLICA sync: Finished with success");
}

/// Applies the master's stream, as the master client, until the link breaks, times out, is
/// killed or REPLICAOF points elsewhere.
async fn apply_stream(server: &Arc<Server>, mut conn: Conn, target: &Target) -> io::Result<()> {
    let replication = &server.replication;
    let addr = format!("{}:{}", target.host, target.port);
    let laddr = conn
        .stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    use std::os::fd::AsRawFd;
    let handle = Arc::new(ClientHandle::new(
        server.clients.next_id(),
        addr,
        laddr,
        conn.stream.as_raw_fd(),
    ));
    handle.set_flag(FLAG_MASTER, true);
    server.clients.add(handle.clone());
    let mut client = Client::internal(handle.clone(), &server.acl);
    client.authenticated = true;
    client.is_master = true;
    // A continued stream goes on in the database the old link had selected (Redis keeps
    // its master client cached for that).
    client.db = replication.master_db.load(Ordering::Relaxed);
    replication.set_link(LINK_UP);
    replication.master_io();
    let applied = apply(server, &mut conn, &mut client).await;
    replication.master_db.store(client.db, Ordering::Relaxed);
    replication.read_ahead.store(0, Ordering::Relaxed);
    crate::commands::forget_client(server, &mut client);
    server.clients.remove(handle.id);
    applied
}

async fn apply(server: &Server, conn: &mut Conn, client: &mut Client) -> io::Result<()> {
    let replication = &server.replication;
    let backlog = &server.store.notifier.repl;
    let handle = client.handle.clone();
    let mut inbox = Inbox::default();
    let mut parser = RequestParser::default();
    let mut args: Vec<Bytes> = Vec::new();
    let mut reply = Reply::new(crate::protocol::Protocol::Resp2);
    let limits = Limits {
        max_bulk_len: usize::MAX,
        authenticated: true,
    };
    // What was read and not applied yet, as it came: passed on to our replicas unchanged.
    let mut raw: Vec<u8> = conn.buf.to_vec();
    let mut parsed = std::mem::take(&mut conn.buf);
    let timeout_ms = server.config.int(config::REPL_TIMEOUT).max(1) as u64 * 1000;
    // Acknowledged at once, then once a second (Redis's replicationCron).
    let mut next_ack = Instant::now();
    loop {
        // A paused replica reads its master's stream but applies nothing until the pause
        // ends, as Redis's PAUSE_ACTION_REPLICA (so its offset does not move meanwhile).
        let paused = server.pause.is_paused();
        while !paused && !parsed.is_empty() {
            match parser.parse(&mut parsed, &mut args, limits) {
                Ok(false) => break,
                Ok(true) => {
                    if !args.is_empty() {
                        if is_getack(&args) {
                            let offset = backlog.lock().offset.to_string();
                            conn.send(&[b"REPLCONF", b"ACK", offset.as_bytes()]).await?;
                        } else {
                            let _obeying = MasterStream::enter();
                            crate::commands::execute(server, client, &mut reply, &args);
                            report_error(server, &reply, &args);
                            reply.clear();
                        }
                    }
                    // What was applied: every byte consumed so far, over however many reads
                    // a big argument took; a transaction only once EXEC ran, so that a
                    // link lost in the middle continues from its MULTI (Redis's `reploff`).
                    if client.multi.is_none() {
                        let used = raw.len() - parsed.len();
                        backlog.feed_raw(&raw[..used]);
                        raw.drain(..used);
                        replication
                            .read_ahead
                            .store(raw.len() as u64, Ordering::Relaxed);
                    }
                    args.clear();
                }
                Err(e) => {
                    return Err(io::Error::other(format!(
                        "protocol error from MASTER: {}",
                        e.0
                    )));
                }
            }
        }
        if parsed.capacity() - parsed.len() < 4096 {
            parsed.reserve(16 * 1024);
        }
        let now = Instant::now();
        if now >= next_ack {
            next_ack = now + Duration::from_secs(1);
            let offset = backlog.lock().offset.to_string();
            conn.send(&[b"REPLCONF", b"ACK", offset.as_bytes()]).await?;
            if now_ms().saturating_sub(replication.master_io_ms()) > timeout_ms {
                return Err(timed_out(LINK_TIMEOUT));
            }
        }
        tokio::select! {
            read = conn.stream.read_buf(&mut parsed) => {
                let n = read?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the MASTER closed the connection",
                    ));
                }
                raw.extend_from_slice(&parsed[parsed.len() - n..]);
                replication.master_io();
                replication.read_ahead.store(raw.len() as u64, Ordering::Relaxed);
            }
            _ = std::future::poll_fn(|cx| inbox.poll_take(&handle.mailbox, cx)) => {
                inbox.drain(|_| {});
                if handle.killed.load(Ordering::Relaxed) {
                    return Err(io::Error::other("the MASTER client was killed"));
                }
            }
            _ = crate::timer::sleep(next_ack - now), if !paused => {}
            _ = crate::timer::sleep(Duration::from_millis(10).min(next_ack - now)), if paused => {}
        }
    }
}

/// Logs an error the master's command got here, as Redis does (the master never hears of
/// it): the data may have diverged.
fn report_error(server: &Server, reply: &Reply, args: &[Bytes]) {
    let Some(error) = reply.buf.strip_prefix(b"-") else {
        return;
    };
    server
        .stats
        .unexpected_error_replies
        .fetch_add(1, Ordering::Relaxed);
    let error = String::from_utf8_lossy(error);
    let command = server.commands.resolve(args).ok();
    tracing::warn!(
        "== CRITICAL == This replica is sending an error to its master: '{}' after processing \
         the command '{}'",
        error.trim_end(),
        command.map_or("<unknown>", |c| c.name.as_str())
    );
}

fn is_getack(args: &[Bytes]) -> bool {
    args.len() >= 2 && eq_ignore_case(&args[0], "replconf") && eq_ignore_case(&args[1], "getack")
}
