//! A master's side of a replica's connection, once it sent PSYNC (or SYNC): a partial
//! resynchronisation from the backlog when the replica's history is ours and still kept,
//! otherwise a full one (an RDB of the data, made by a forked child, then the stream from
//! the offset of the fork); then the stream as it grows, while the replica's REPLCONF ACKs
//! come back on the same connection.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::backlog::{self, Read};
use super::{Hello, ONLINE, Replica, SEND_BULK, SyncRequest, WAIT_BGSAVE};
use crate::client::{Client, ClientHandle, FLAG_REPLICA};
use crate::config;
use crate::mailbox::Inbox;
use crate::persist::child::Child;
use crate::persist::rdb;
use crate::protocol::{Limits, RequestParser};
use crate::server::Server;
use crate::server::stream::ClientStream;
use crate::util::{eq_ignore_case, now_ms, parse_i64};

/// How much of the stream one write to a replica takes at most.
const WRITE_CHUNK: usize = 64 * 1024;

pub async fn serve<S: ClientStream>(
    server: &Arc<Server>,
    stream: &mut S,
    client: &mut Client,
    hello: Hello,
    input: BytesMut,
) -> io::Result<()> {
    let Some(request) = hello.sync else {
        return Ok(());
    };
    let handle = client.handle.clone();
    let ip = match hello.ip_address {
        Some(ip) => ip,
        None => handle
            .addr
            .rsplit_once(':')
            .map_or(handle.addr.clone(), |(ip, _)| ip.to_string()),
    };
    let replica = Arc::new(Replica {
        handle: handle.clone(),
        ip,
        port: hello.listening_port,
        state: WAIT_BGSAVE.into(),
        ack_offset: 0.into(),
        ack_at_ms: now_ms().into(),
    });
    handle.set_flag(FLAG_REPLICA, true);
    server.replication.add(replica.clone());
    let backlog = &server.store.notifier.repl;
    let mut from = FromReplica {
        input,
        parser: RequestParser::default(),
        args: Vec::new(),
    };
    let served = async {
        if !from.take(server, &replica) {
            return Ok(());
        }
        if !try_partial(server, stream, &replica, &request, hello.capa_psync2).await? {
            full_sync(server, stream, &replica, hello.capa_eof, request.psync).await?;
        }
        feed(server, stream, &replica, &mut from).await
    }
    .await;
    backlog.detach(handle.id);
    server.replication.remove(&replica);
    served
}

/// Answers `+CONTINUE` and attaches the replica where it stopped, when the backlog has it
/// all (Redis's `masterTryPartialResynchronization`).
async fn try_partial<S: ClientStream>(
    server: &Server,
    stream: &mut S,
    replica: &Replica,
    request: &SyncRequest,
    psync2: bool,
) -> io::Result<bool> {
    let backlog = &server.store.notifier.repl;
    let stats = &server.replication;
    let answer = u64::try_from(request.offset)
        .ok()
        .filter(|_| request.psync)
        .and_then(|offset| backlog.continue_from(replica.handle.id, &request.replid, offset))
        .map(|replid| match psync2 {
            true => format!("+CONTINUE {replid}\r\n"),
            false => "+CONTINUE\r\n".to_string(),
        });
    let Some(answer) = answer else {
        if request.psync && request.replid != "?" {
            stats.sync_partial_err.fetch_add(1, Ordering::Relaxed);
        }
        return Ok(false);
    };
    stats.sync_partial_ok.fetch_add(1, Ordering::Relaxed);
    stream.write_all(answer.as_bytes()).await?;
    replica.state.store(ONLINE, Ordering::Relaxed);
    Ok(true)
}

/// Sends the data as an RDB made by a forked child, announced with `+FULLRESYNC replid
/// offset` (not to SYNC, which expects the payload at once): without a known length
/// (`$EOF:<mark>`) to a replica that reads one (`capa eof`) with `repl-diskless-sync` on,
/// otherwise with its length.
async fn full_sync<S: ClientStream>(
    server: &Arc<Server>,
    stream: &mut S,
    replica: &Replica,
    capa_eof: bool,
    psync: bool,
) -> io::Result<()> {
    let backlog = &server.store.notifier.repl;
    server.replication.sync_full.fetch_add(1, Ordering::Relaxed);
    let diskless = capa_eof && server.config.bool(config::REPL_DISKLESS_SYNC);
    if diskless {
        // Other replicas may be on their way (`repl-diskless-sync-delay`); newlines keep the
        // waiting replica from timing out, as Redis sends them.
        let delay = server.config.int(config::REPL_DISKLESS_SYNC_DELAY) as u64;
        for _ in 0..delay {
            stream.write_all(b"\n").await?;
            crate::timer::sleep(Duration::from_secs(1)).await;
        }
    }
    let (child, pipe, replid, offset) = {
        let _gate = server.store.enter(true);
        if !backlog.is_on() {
            // The first replica starts a new history (Redis's changeReplicationId).
            backlog.lock().restart_history();
            backlog.start(server.config.int(config::REPL_BACKLOG_SIZE) as usize);
        }
        let (replid, offset) = {
            let inner = backlog.lock();
            (inner.replid.clone(), inner.offset)
        };
        backlog.reselect();
        backlog.attach(replica.handle.id, offset);
        let (child, pipe) = fork_rdb(server)?;
        (SyncChild::new(server, child), pipe, replid, offset)
    };
    tracing::info!(
        "Starting BGSAVE for SYNC with target: {}",
        if diskless { "replicas sockets" } else { "disk" }
    );
    if psync {
        stream
            .write_all(format!("+FULLRESYNC {replid} {offset}\r\n").as_bytes())
            .await?;
    }
    // `wait_bgsave` while the child makes the RDB (streamed as it comes when diskless), then
    // `send_bulk` while a payload with a length goes out, as Redis's states say.
    let sending = async {
        if diskless {
            send_eof_marked(stream, pipe).await
        } else {
            send_with_length(stream, pipe, replica).await
        }
    };
    // CLIENT KILL ends the transfer (and the child that makes it) at once.
    let sent = tokio::select! {
        sent = sending => sent,
        _ = replica.handle.kill_notify.notified() => {
            child.child.kill();
            Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the replica was killed"))
        }
    };
    let ok = reap(&child.child).await;
    drop(child);
    sent?;
    if !ok {
        return Err(io::Error::other("the child making the RDB for SYNC failed"));
    }
    tracing::info!(
        "Synchronization with replica {}:{} succeeded",
        replica.ip,
        replica.port
    );
    replica.ack_at_ms.store(now_ms(), Ordering::Relaxed);
    replica.state.store(ONLINE, Ordering::Relaxed);
    Ok(())
}

/// The child making a full sync's RDB, counted in INFO's `rdb_bgsave_in_progress` while it
/// runs; if the sync ends before it is reaped (the replica left), it is stopped.
struct SyncChild<'a> {
    child: Child,
    server: &'a Server,
}

impl<'a> SyncChild<'a> {
    fn new(server: &'a Server, child: Child) -> SyncChild<'a> {
        server.replication.sync_children().push(child.pid);
        SyncChild { child, server }
    }
}

impl Drop for SyncChild<'_> {
    fn drop(&mut self) {
        if self.child.poll().is_none() {
            self.child.kill();
        }
        let pid = self.child.pid;
        self.server
            .replication
            .sync_children()
            .retain(|&p| p != pid);
    }
}

/// Forks a child that writes an RDB of the data to a pipe; the caller holds the gate
/// exclusively.
fn fork_rdb(server: &Server) -> io::Result<(Child, tokio::net::unix::pipe::Receiver)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let functions = server.scripts.library_codes();
    let repl = super::save_info(server);
    // The closure owns the write end: the parent's copy closes when `spawn` returns, so the
    // pipe ends when the child is done.
    let read_end = read.as_raw_fd();
    let child = Child::spawn(move || {
        // The child's copy of the read end goes: once the parent's is gone (it died), the
        // next write fails and the child ends.
        // SAFETY: closing a descriptor the child owns a copy of and never uses.
        unsafe { libc::close(read_end) };
        let out = std::fs::File::from(write);
        rdb::save(
            &server.store,
            &server.config,
            &functions,
            false,
            repl.as_ref(),
            out,
        )
        .is_ok()
    })?;
    let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(read)?;
    Ok((child, pipe))
}

async fn send_eof_marked<S: ClientStream>(
    stream: &mut S,
    mut pipe: impl AsyncRead + Unpin,
) -> io::Result<()> {
    let mark = backlog::new_replid();
    stream
        .write_all(format!("$EOF:{mark}\r\n").as_bytes())
        .await?;
    tokio::io::copy(&mut pipe, stream).await?;
    stream.write_all(mark.as_bytes()).await
}

/// The RDB into a temporary file first, to know its length.
async fn send_with_length<S: ClientStream>(
    stream: &mut S,
    mut pipe: impl AsyncRead + Unpin,
    replica: &Replica,
) -> io::Result<()> {
    let mut payload = Vec::new();
    pipe.read_to_end(&mut payload).await?;
    replica.state.store(SEND_BULK, Ordering::Relaxed);
    stream
        .write_all(format!("${}\r\n", payload.len()).as_bytes())
        .await?;
    stream.write_all(&payload).await
}

async fn reap(child: &Child) -> bool {
    loop {
        if let Some(ok) = child.poll() {
            return ok;
        }
        crate::timer::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends the stream as it grows, and reads the replica's acknowledgements meanwhile, until
/// the replica leaves, is killed, or falls further behind than its output buffer allows.
async fn feed<S: ClientStream>(
    server: &Server,
    stream: &mut S,
    replica: &Replica,
    from: &mut FromReplica,
) -> io::Result<()> {
    let backlog = &server.store.notifier.repl;
    let handle = &replica.handle;
    let mut inbox = Inbox::default();
    if !from.take(server, replica) {
        return Ok(());
    }
    loop {
        if handle.killed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let fed = backlog.fed();
        tokio::pin!(fed);
        fed.as_mut().enable();
        match backlog.read(handle.id, WRITE_CHUNK) {
            Read::Bytes(bytes) => {
                stream.write_all(&bytes).await?;
                continue;
            }
            Read::Lost => {
                tracing::warn!(
                    "Client id={} addr={} closed for overcoming of output buffer limits.",
                    handle.id,
                    handle.addr
                );
                crate::client::OUTPUT_LIMIT_DISCONNECTIONS.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Read::Nothing => {}
        }
        if from.input.capacity() - from.input.len() < 1024 {
            from.input.reserve(4096);
        }
        tokio::select! {
            _ = &mut fed => {}
            _ = std::future::poll_fn(|cx| inbox.poll_take(&handle.mailbox, cx)) => {
                inbox.drain(|_| {});
            }
            read = stream.read_buf(&mut from.input) => {
                if read? == 0 {
                    return Ok(());
                }
                if !from.take(server, replica) {
                    return Ok(());
                }
            }
        }
    }
}

/// What a replica sent and was not taken yet (a command may come over several reads).
struct FromReplica {
    input: BytesMut,
    parser: RequestParser,
    args: Vec<Bytes>,
}

impl FromReplica {
    /// Takes the whole commands read; false when one of them gets the replica dropped.
    fn take(&mut self, server: &Server, replica: &Replica) -> bool {
        let limits = Limits {
            max_bulk_len: server.config.int(config::PROTO_MAX_BULK_LEN) as usize,
            authenticated: true,
        };
        while let Ok(true) = self.parser.parse(&mut self.input, &mut self.args, limits) {
            if !from_replica(server, replica, &self.args) {
                return false;
            }
            self.args.clear();
        }
        true
    }
}

/// What a replica sends: REPLCONF ACK <offset> records how far it got, other REPLCONFs are
/// ignored. Anything else would put a reply into the replication stream: as Redis, the master
/// drops the replica then, saying why (false).
fn from_replica(server: &Server, replica: &Replica, args: &[Bytes]) -> bool {
    let Some(name) = args.first() else {
        return true;
    };
    if eq_ignore_case(name, "replconf") {
        acknowledged(server, replica, args);
        return true;
    }
    let command = server.commands.resolve(args).ok();
    let name = command.map_or_else(
        || String::from_utf8_lossy(name).to_lowercase(),
        |c| c.name.clone(),
    );
    let keyspace = command.is_some_and(|c| c.flags & KEYSPACE_FLAGS != 0);
    if keyspace {
        tracing::warn!(
            "== CRITICAL == This master is sending an error to its replica: 'Replica can't \
             interact with the keyspace' after processing the command '{name}'"
        );
    }
    tracing::warn!(
        "Replica generated a reply to command '{name}', disconnecting it: {}",
        replica.handle.describe(&server.commands)
    );
    false
}

/// Commands a replica may not run on its master (Redis's read, write and may-replicate).
const KEYSPACE_FLAGS: u32 = crate::commands::meta::flag_bit("readonly")
    | crate::commands::meta::flag_bit("write")
    | crate::commands::meta::flag_bit("may_replicate");

fn acknowledged(server: &Server, replica: &Replica, args: &[Bytes]) {
    if let [name, sub, offset, ..] = args
        && eq_ignore_case(name, "replconf")
        && eq_ignore_case(sub, "ack")
        && let Some(offset) = parse_i64(offset)
    {
        replica
            .ack_offset
            .fetch_max(offset.max(0) as u64, Ordering::Relaxed);
        replica.ack_at_ms.store(now_ms(), Ordering::Relaxed);
        replica
            .handle
            .last_interaction_ms
            .store(now_ms(), Ordering::Relaxed);
        server.replication.acked.notify_waiters();
    }
}

/// WAIT: asks the replicas for their offsets (`REPLCONF GETACK *` in the stream), then
/// counts those that acknowledged `offset` until `wanted` did or `timeout` ms (0: none)
/// pass, or the client is killed.
pub async fn wait_acks(
    server: &Server,
    handle: &ClientHandle,
    wanted: usize,
    timeout: u64,
    offset: u64,
) -> usize {
    let replication = &server.replication;
    let deadline = (timeout > 0).then(|| Instant::now() + Duration::from_millis(timeout));
    {
        let _gate = server.store.enter(false);
        let getack: &[&[u8]] = &[b"REPLCONF", b"GETACK", b"*"];
        server.store.notifier.repl.feed(None, getack);
    }
    loop {
        let acked = replication.acked.notified();
        tokio::pin!(acked);
        acked.as_mut().enable();
        let count = replication.acknowledged(offset);
        let now = Instant::now();
        let timed_out = deadline.is_some_and(|d| now >= d);
        if count >= wanted || timed_out || handle.killed.load(Ordering::Relaxed) {
            return count;
        }
        // A tick now and then notices a kill.
        let tick = Duration::from_millis(100);
        let tick = deadline.map_or(tick, |d| (d - now).min(tick));
        tokio::select! {
            _ = acked => {}
            _ = crate::timer::sleep(tick) => {}
        }
    }
}
