//! One task per client: read into a buffer, parse every complete request, execute each, append
//! the replies to one output buffer, and write it once per batch, so pipelines cost one write.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Server;
use super::stream::{ClientStream, Peer};
use super::unsent::Unsent;
use crate::blocking::Wake;
use crate::client::{Blocked, Client, ClientHandle, FLAG_NO_EVICT, OUTPUT_LIMIT_DISCONNECTIONS};
use crate::commands;
use crate::config;
use crate::mailbox::Inbox;
use crate::protocol::{Limits, Reply, RequestParser};
use crate::util::clock::Ticks;
use crate::util::now_ms;

pub(crate) const READ_CHUNK: usize = 16 * 1024;
/// An empty query buffer larger than this is trimmed to READ_CHUNK for the next request.
const LARGE_QUERY_BUFFER: usize = 4 * READ_CHUNK;
/// Argument slots a connection keeps between commands.
const MANY_ARGS: usize = 1024;
/// Unwritten output a client that has not logged in may have. Redis closes such a client once
/// its replies overflow the 16 KB reply buffer by more than 1 KB (`checkClientOutputBufferLimits`
/// counts only the reply list beyond `c->buf`), checked as each reply is added.
const UNAUTHENTICATED_OUTPUT_LIMIT: usize = 16 * 1024 + 1024;
/// Replies held back while more of a pipeline is read (see `client_loop`) at most.
const HELD_REPLIES_LIMIT: usize = 4 * READ_CHUNK;
/// Unsent replies past which a client's next requests wait until the socket takes them.
/// Redis queues a normal client's replies without bound unless `client-output-buffer-limit
/// normal` is set; Oxidis bounds them at the hard limit Redis's defaults give a subscriber,
/// so that a client that pipelines without reading cannot grow the server by gigabytes.
const UNSENT_LIMIT: usize = 32 * 1024 * 1024;
/// What a connection takes before its buffers and state, for `tot-mem`.
const CONNECTION_MEMORY: usize =
    std::mem::size_of::<Client>() + std::mem::size_of::<ClientHandle>();

pub async fn serve<S: ClientStream>(server: Arc<Server>, mut stream: S, peer: Peer) {
    let local = peer.local;
    let handle = Arc::new(ClientHandle::new(
        server.clients.next_id(),
        peer.addr,
        peer.local_addr,
        stream.as_raw_fd(),
    ));
    handle.local.store(local, Ordering::Relaxed);
    if let Some(refusal) = refusal(&server, local) {
        let _ = stream.write_all(refusal.as_bytes()).await;
        server
            .clients
            .rejected_connections
            .fetch_add(1, Ordering::Relaxed);
        return;
    }
    server.clients.add(handle.clone());
    let mut client = Client::new(handle, &server.acl);
    client.defer_scripts = true;
    if let Err(e) = client_loop(&server, &mut stream, &mut client).await {
        tracing::debug!("Client id={} closed: {e}", client.id);
    }
    crate::commands::forget_client(&server, &mut client);
    server.monitors.remove(client.id);
    server.clients.remove(client.id);
}

const PROTECTED_MODE_DENIED: &str = "-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Setup a an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.\r\n";

/// Why a new connection is turned away, if it is: `maxclients` is reached, or protected
/// mode (no password for the default user) serves only loopback and Unix-socket clients.
fn refusal(server: &Server, local: bool) -> Option<&'static str> {
    if server.clients.len() >= server.config.int(config::MAXCLIENTS) as usize {
        return Some("-ERR max number of clients reached\r\n");
    }
    let protected =
        server.config.bool(config::PROTECTED_MODE) && server.acl.default_user().nopass();
    (protected && !local).then_some(PROTECTED_MODE_DENIED)
}

async fn client_loop(
    server: &Arc<Server>,
    stream: &mut impl ClientStream,
    client: &mut Client,
) -> std::io::Result<()> {
    let handle = client.handle.clone();
    let mut inbox = Inbox::default();
    let mut buf = BytesMut::new();
    let mut parser = RequestParser::default();
    let mut args: Vec<Bytes> = Vec::with_capacity(8);
    let mut reply = Reply::new(client.protocol);
    let mut unsent = Unsent::default();
    let mut read_at = Ticks::now();
    // Input read without waiting, while the replies to the input before it are held back.
    let mut read_more = None;
    // Whether replies went out since the input last ran out (see the flush below).
    let mut replied_to_burst = false;
    loop {
        let event = match read_more.take() {
            Some(event) => event,
            None => {
                let awaited = parser.awaited(&buf);
                next_event(stream, &handle, &mut inbox, &unsent, &mut buf, awaited).await?
            }
        };
        let filled = match event {
            Event::Pushed => {
                take_pushed(&handle, &mut inbox, &mut reply);
                false
            }
            Event::Writable => {
                write_unsent(server, stream, &handle, &mut unsent)?;
                continue;
            }
            Event::Read { len: 0, .. } => return Ok(()),
            Event::Read { len: n, filled } => {
                if reply.buf.capacity() == 0 {
                    reply.buf.reserve(READ_CHUNK);
                }
                server
                    .stats
                    .net_input_bytes
                    .fetch_add(n as u64, Ordering::Relaxed);
                read_at = Ticks::now();
                handle
                    .last_interaction_ms
                    .store(read_at.unix_ms(), Ordering::Relaxed);
                filled
            }
        };
        // The cron asks clients idle for a while to give back their buffers, as Redis's
        // `clientsCronResizeQueryBuffer` and `clientsCronResizeOutputBuffer` do: thousands of
        // idle connections then hold none (the next input takes them again).
        if handle.release_buffers.load(Ordering::Relaxed)
            && handle.release_buffers.swap(false, Ordering::Relaxed)
            && buf.is_empty()
        {
            // Messages just taken from the inbox go out first: the loop goes back to waiting
            // without the flush below, and nothing else may come to send them.
            flush(server, stream, &handle, &mut reply, &mut unsent).await?;
            buf = BytesMut::new();
            handle.query_buffer_free.store(0, Ordering::Relaxed);
            if reply.buf.is_empty() && server.reply_buffer_resizing.load(Ordering::Relaxed) {
                reply.buf = Vec::new();
            }
            args = Vec::new();
            inbox.release();
            continue;
        }
        if handle.killed.load(Ordering::Relaxed)
            || !commands::acl::follow_user_changes(server, client)
        {
            return Ok(());
        }
        let limits = Limits {
            max_bulk_len: server.config.int(config::PROTO_MAX_BULK_LEN) as usize,
            authenticated: !commands::auth_required(server, client),
        };
        // While the batch runs, CLIENT LIST shows it whole as the query buffer, as Redis does.
        handle.query_buffer.store(buf.len(), Ordering::Relaxed);
        // The tick reading that ended the batch's last command (at first, the read), while
        // nothing has waited since.
        let mut chained = Some(read_at);
        let mut requests = 0usize;
        let handoffs = crate::client::handoffs();
        loop {
            match parser.parse(&mut buf, &mut args, limits) {
                Ok(false) => break,
                Ok(true) if args.is_empty() => continue,
                Ok(true) => {
                    requests += 1;
                    // With client eviction on, Redis counts an evictable client's memory after
                    // each command (replies held in the batch included) and evicts clients
                    // before the next, ahead of evicting keys.
                    if server.clients.memory.limit() > 0 {
                        if !handle.has_flag(FLAG_NO_EVICT) {
                            publish_memory(client, &buf, &args, &reply);
                        }
                        server.clients.evict();
                        if handle.killed.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                    }
                    // The first request of a pipeline is about to run; the rest may be worth
                    // prefetching, while a lone request is not.
                    if requests == 1 && !buf.is_empty() && limits.authenticated {
                        commands::prefetch_keys(server, client, &buf);
                    }
                    if server.pause.is_paused() {
                        Box::pin(wait_while_paused(
                            server,
                            client,
                            &args,
                            stream,
                            &mut reply,
                            &mut unsent,
                        ))
                        .await?;
                        chained = None;
                    }
                    if server.scripts.running.is_active() {
                        Box::pin(wait_for_script(
                            server,
                            stream,
                            &handle,
                            &mut reply,
                            &mut unsent,
                        ))
                        .await?;
                        chained = None;
                    }
                    chained = commands::execute_chained(server, client, &mut reply, &args, chained);
                    if std::mem::take(&mut client.script_deferred) {
                        Box::pin(commands::execute_deferred(
                            server, client, &mut reply, &args,
                        ))
                        .await;
                        chained = None;
                    }
                    args.clear();
                    // After a command of many arguments, the vector would keep their room
                    // (32 bytes each) for as long as the client stays connected.
                    if args.capacity() > MANY_ARGS {
                        args = Vec::with_capacity(8);
                    }
                    if client
                        .replication
                        .as_ref()
                        .is_some_and(|hello| hello.sync.is_some())
                    {
                        drain_to(0, server, stream, &handle, &mut reply, &mut unsent).await?;
                        let hello = *client.replication.take().expect("checked above");
                        let input = std::mem::take(&mut buf);
                        return Box::pin(crate::replication::master::serve(
                            server, stream, client, hello, input,
                        ))
                        .await;
                    }
                    if let Some((wanted, timeout, offset)) = client.wait_acks.take() {
                        chained = None;
                        drain_to(0, server, stream, &handle, &mut reply, &mut unsent).await?;
                        let acked = crate::replication::master::wait_acks(
                            server, &handle, wanted, timeout, offset,
                        )
                        .await;
                        reply.int(acked as i64);
                    }
                    if let Some(blocked) = client.blocked.take() {
                        chained = None;
                        reply.protocol = client.protocol;
                        drain_to(0, server, stream, &handle, &mut reply, &mut unsent).await?;
                        Box::pin(wait_blocked(
                            server, stream, client, blocked, &mut buf, &mut inbox, &mut reply,
                        ))
                        .await?;
                    }
                    if reply.buf.len() + unsent.len() > UNSENT_LIMIT {
                        chained = None;
                        drain_to(
                            UNSENT_LIMIT,
                            server,
                            stream,
                            &handle,
                            &mut reply,
                            &mut unsent,
                        )
                        .await?;
                    }
                    let pending = reply.buf.len() + unsent.len();
                    if !limits.authenticated
                        && pending > UNAUTHENTICATED_OUTPUT_LIMIT
                        && commands::auth_required(server, client)
                    {
                        log_unauthenticated_close(client, &handle);
                        return Ok(());
                    }
                    if server.over_output_limit(pending) {
                        OUTPUT_LIMIT_DISCONNECTIONS.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "Client id={} addr={} closed for overcoming of output buffer limits.",
                            client.id,
                            handle.addr
                        );
                        return Ok(());
                    }
                    if client.close_after_reply {
                        break;
                    }
                }
                Err(e) => {
                    reply.error(&format!("ERR Protocol error: {}", e.0));
                    server.stats.count_error("ERR");
                    tracing::debug!(
                        "Protocol error ({}) from client: id={} addr={}",
                        e.0,
                        client.id,
                        handle.addr
                    );
                    client.close_after_reply = true;
                    break;
                }
            }
        }
        if buf.len() > server.config.int(config::CLIENT_QUERY_BUFFER_LIMIT) as usize {
            tracing::warn!(
                "Closing client that reached max query buffer length: id={} addr={}",
                client.id,
                handle.addr
            );
            return Ok(());
        }
        if buf.is_empty() {
            // A normal buffer is rewound to its start (no allocation) for the next read. After
            // a big argument, rewinding allocates the buffer's original size again (the argument
            // still holds the old one), ready for another big one as Redis keeps it. A batch
            // that leaves that big buffer empty trims it to normal size, as Redis's
            // `clientsCronResizeQueryBuffer` trims to the recent peak.
            if buf.capacity() > LARGE_QUERY_BUFFER {
                buf = BytesMut::with_capacity(READ_CHUNK);
            } else {
                buf.reserve(READ_CHUNK);
            }
        }
        handle.query_buffer.store(buf.len(), Ordering::Relaxed);
        handle
            .query_buffer_free
            .store(buf.capacity() - buf.len(), Ordering::Relaxed);
        reply.protocol = client.protocol;
        if !commands::auth_required(server, client) {
            // A read that filled the buffer's space likely left more of a long pipeline in the
            // socket. The first replies to it leave at once; after that, the other clients
            // ready run, then what has arrived is read and its replies leave with the held
            // ones in one write. Each write wakes a client waiting for the rest of its
            // replies: with 16 requests of 1 KB per batch (MSET of 10 values), such wakeups
            // were most of the server's kernel time, 8.6 -> 4.5 us of CPU per request.
            if filled
                && replied_to_burst
                && reply.buf.len() < HELD_REPLIES_LIMIT
                && !client.close_after_reply
            {
                RunQueued::default().await;
                let awaited = parser.awaited(&buf);
                read_more = read_now(stream, &mut buf, awaited).await?;
                if read_more.is_some() {
                    continue;
                }
            }
            replied_to_burst = filled;
            // A pipelined batch's replies wait until the clients made ready by the same poll
            // have run, as Redis writes every client's replies in `beforeSleep`: a busy peer
            // then gets many replies per wakeup, and waking it is much of the kernel's work at
            // -P 16 (LPUSH of 1 KB values: 2.3 -> 2.0 us of CPU per request). A lone request
            // is answered at once: there the wait measured as a small cost, not a saving. Nor
            // does a batch that handed messages to other clients wait: those clients (pub/sub
            // subscribers, served blocked clients) were queued by the batch, not the poll, and
            // the replies would wait for their writes (fan-out to 10 subscribers: -17% msg/s).
            if requests > 1 && crate::client::handoffs() == handoffs {
                RunQueued::default().await;
            }
            flush(server, stream, &handle, &mut reply, &mut unsent).await?;
        } else {
            // A client that has not logged in may not make the server hold its replies
            // (Redis's `checkClientOutputBufferLimits`): one that never reads soon passes
            // the limit instead of growing the server's memory.
            flush(server, stream, &handle, &mut reply, &mut unsent).await?;
            if unsent.len() > UNAUTHENTICATED_OUTPUT_LIMIT {
                log_unauthenticated_close(client, &handle);
                return Ok(());
            }
        }
        if client.close_after_reply {
            return drain_to(0, server, stream, &handle, &mut reply, &mut unsent).await;
        }
        publish_memory(client, &buf, &args, &reply);
        server.clients.evict();
        if handle.killed.load(Ordering::Relaxed) {
            return Ok(());
        }
    }
}

/// Publishes what this connection holds: CLIENT LIST's `tot-mem`, and this client's part of
/// the total that client eviction looks at.
fn publish_memory(client: &Client, buf: &BytesMut, args: &[Bytes], reply: &Reply) {
    let handle = &client.handle;
    // The arguments of a request that has not fully arrived, split off the query buffer.
    let argv: usize = args
        .iter()
        .map(|a| a.len() + std::mem::size_of::<Bytes>())
        .sum();
    let buffers = buf.capacity() + reply.buf.capacity();
    handle.memory.store(
        CONNECTION_MEMORY + buffers + argv + client.state_memory(),
        Ordering::Relaxed,
    );
    handle.argv_memory.store(argv, Ordering::Relaxed);
    let multi = client.multi.as_ref().map_or(0, |m| m.memory);
    handle.multi_memory.store(multi, Ordering::Relaxed);
    handle.recount();
}

/// What an idle connection waits for.
enum Event {
    /// Messages other clients pushed (pub/sub, MONITOR), now in the inbox, or an empty one to
    /// look at `killed` and ACL changes.
    Pushed,
    /// Room in the socket for replies it did not take before.
    Writable,
    /// Input, `len` bytes of it, now in the query buffer (0 when the client has closed);
    /// `filled` if it took all the space the buffer offered.
    Read { len: usize, filled: bool },
}

/// Waits for the next event, in that order of priority. Hand-written rather than `select!`
/// over futures for each: those cost about 450 instructions a wait, a third of the task's
/// own, at `redis-benchmark -P 1`. The wait for input is the read itself, so one readiness
/// check serves both.
fn next_event<'a>(
    stream: &'a mut impl ClientStream,
    handle: &'a ClientHandle,
    inbox: &'a mut Inbox,
    unsent: &'a Unsent,
    buf: &'a mut BytesMut,
    awaited: usize,
) -> impl std::future::Future<Output = std::io::Result<Event>> + 'a {
    std::future::poll_fn(move |cx| {
        if inbox.poll_take(&handle.mailbox, cx).is_ready() {
            return Poll::Ready(Ok(Event::Pushed));
        }
        if !unsent.is_empty() && stream.poll_write_ready(cx)?.is_ready() {
            return Poll::Ready(Ok(Event::Writable));
        }
        if unsent.len() > UNSENT_LIMIT {
            return Poll::Pending;
        }
        if short_of_room(buf, awaited) {
            // Only input makes an empty buffer take memory again: an idle client may have
            // given its buffer back (see `client_loop`).
            std::task::ready!(stream.poll_read_ready(cx))?;
            buf.reserve(READ_CHUNK);
        }
        poll_read(stream, cx, buf)
    })
}

/// Whether the query buffer has too little space left for the next read. A big argument
/// has room made for exactly its rest (see `RequestParser::awaited`): more would double the
/// buffer for nothing, and CLIENT LIST and client eviction would see it.
fn short_of_room(buf: &BytesMut, awaited: usize) -> bool {
    let spare = buf.capacity() - buf.len();
    spare < READ_CHUNK / 4 && (awaited == 0 || spare < awaited)
}

fn poll_read(
    stream: &mut impl ClientStream,
    cx: &mut std::task::Context<'_>,
    buf: &mut BytesMut,
) -> Poll<std::io::Result<Event>> {
    let space = buf.capacity() - buf.len();
    stream.poll_read_buf(cx, buf).map_ok(|len| Event::Read {
        len,
        filled: len == space,
    })
}

/// Reads what has already arrived, without waiting; None if nothing has. The end of input is
/// None too: the held replies go out first, and the next wait finds the end again.
async fn read_now(
    stream: &mut impl ClientStream,
    buf: &mut BytesMut,
    awaited: usize,
) -> std::io::Result<Option<Event>> {
    if short_of_room(buf, awaited) {
        buf.reserve(READ_CHUNK);
    }
    std::future::poll_fn(|cx| match poll_read(stream, cx, buf) {
        Poll::Ready(Ok(Event::Read { len: 0, .. })) | Poll::Pending => Poll::Ready(Ok(None)),
        Poll::Ready(event) => Poll::Ready(event.map(Some)),
    })
    .await
}

/// Writes what the socket takes now of the replies it did not take before.
fn write_unsent(
    server: &Server,
    stream: &impl ClientStream,
    handle: &ClientHandle,
    unsent: &mut Unsent,
) -> std::io::Result<()> {
    let written = unsent.write_to(stream)?;
    handle.delivered(written);
    server
        .stats
        .net_output_bytes
        .fetch_add(written as u64, Ordering::Relaxed);
    Ok(())
}

fn log_unauthenticated_close(client: &Client, handle: &ClientHandle) {
    tracing::warn!(
        "Client id={} addr={} closed: output buffer over {UNAUTHENTICATED_OUTPUT_LIMIT} bytes \
         before authenticating",
        client.id,
        handle.addr
    );
}

/// Moves messages other clients pushed (pub/sub, MONITOR) into the output buffer.
fn take_pushed(handle: &ClientHandle, inbox: &mut Inbox, reply: &mut Reply) {
    let mut taken = 0;
    inbox.drain(|message| {
        taken += message.len();
        reply.buf.extend_from_slice(&message);
    });
    handle.delivered(taken);
}

/// Writes the output buffer, as much as the socket takes now; the rest waits in `unsent`
/// while the client's next commands run (see `crate::server::unsent`).
async fn flush(
    server: &Server,
    stream: &mut impl ClientStream,
    handle: &ClientHandle,
    reply: &mut Reply,
    unsent: &mut Unsent,
) -> std::io::Result<()> {
    if reply.buf.is_empty() {
        return Ok(());
    }
    // Acknowledged writes, and writes this reply may have read, are in the append-only file
    // before the client hears of them.
    let aof = &server.store.notifier.aof;
    let horizon = aof.horizon();
    if !aof.covers(horizon) {
        if aof.syncs_every_write() {
            // Group commit: the other clients ready now run first and add their writes, so
            // that one write and one fsync serve them all, as Redis syncs once per turn of its
            // event loop before any reply leaves. Whoever writes first takes everyone's data
            // along; the others find theirs covered. (An fsync on a thread of its own, with
            // the event loop going on meanwhile, measured slower: every client of the turn
            // waits for the same fsync, so the loop only sleeps and is woken, 18% of its
            // time in context switches against Redis's 6% at 64 clients.)
            RunQueued::default().await;
        }
        aof.write_pending();
    }
    if !unsent.is_empty() {
        handle
            .output_buffer
            .fetch_add(reply.buf.len(), Ordering::Relaxed);
        unsent.push(std::mem::take(&mut reply.buf), 0);
        reply.clear();
        return write_unsent(server, stream, handle, unsent);
    }
    // Most replies fit in the socket at once.
    let written = match stream.try_write(&reply.buf) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    server
        .stats
        .net_output_bytes
        .fetch_add(written as u64, Ordering::Relaxed);
    if written < reply.buf.len() {
        handle
            .output_buffer
            .fetch_add(reply.buf.len() - written, Ordering::Relaxed);
        unsent.push(std::mem::take(&mut reply.buf), written);
    } else if reply.buf.capacity() > 2 * READ_CHUNK {
        // Replies (or pushed messages) that outgrew the buffer leave it, as Redis frees the
        // reply blocks beyond a client's 16 KB buffer once written: otherwise every client
        // that once got a big reply would hold that much for as long as it stays, and
        // invalidations sent by eviction would call for more eviction.
        reply.buf = Vec::with_capacity(READ_CHUNK);
    }
    reply.clear();
    Ok(())
}

/// Writes the output buffer, then waits for the socket until no more than `left` bytes wait
/// unsent: all of them (0) before the connection waits for something else (a blocking
/// command, a pause, a script) or closes, or down to UNSENT_LIMIT before the next request.
/// Killing the client ends the wait.
async fn drain_to(
    left: usize,
    server: &Server,
    stream: &mut impl ClientStream,
    handle: &ClientHandle,
    reply: &mut Reply,
    unsent: &mut Unsent,
) -> std::io::Result<()> {
    flush(server, stream, handle, reply, unsent).await?;
    while unsent.len() > left {
        tokio::select! {
            biased;
            _ = handle.kill_notify.notified() => {
                return Err(std::io::ErrorKind::ConnectionAborted.into());
            }
            ready = std::future::poll_fn(|cx| stream.poll_write_ready(cx)) => ready?,
        }
        write_unsent(server, stream, handle, unsent)?;
    }
    Ok(())
}

/// Waits for a blocking command to be served, time out, or be unblocked, and writes its reply.
/// Meanwhile the socket is still read, so pipelined commands queue up and a disconnect ends
/// the wait; pushed messages (MONITOR) are still delivered.
async fn wait_blocked(
    server: &Server,
    stream: &mut impl ClientStream,
    client: &mut Client,
    mut blocked: Blocked,
    buf: &mut BytesMut,
    inbox: &mut Inbox,
    reply: &mut Reply,
) -> std::io::Result<()> {
    // Output is drained before the wait and after each message: none stays unsent.
    let mut unsent = Unsent::default();
    let blocking = &server.store.notifier.blocking;
    // Leaving the registry under the shared gate cannot overlap a serve (see crate::blocking).
    // A script holds the gate while it runs: wait for it without holding up the thread.
    let id = client.id;
    let cancel = async |wake: Wake| {
        server.scripts.running.wait_idle().await;
        let _gate = server.store.enter(false);
        blocking.finish(id, wake);
    };
    let timeout = async {
        match blocked.deadline_ms {
            0 => std::future::pending().await,
            deadline => {
                let wait = deadline.saturating_sub(now_ms());
                crate::timer::sleep(Duration::from_millis(wait)).await
            }
        }
    };
    tokio::pin!(timeout);
    let mut timed_out = false;
    loop {
        tokio::select! {
            wake = &mut blocked.wake => {
                // Served, the waiter's call was counted where it ran; otherwise here.
                let command = server
                    .commands
                    .by_id(client.handle.last_command.load(Ordering::Relaxed));
                match wake {
                    Ok(Wake::Reply(bytes)) => reply.buf.extend_from_slice(&bytes),
                    Ok(Wake::Timeout) | Err(_) => {
                        reply.null_array();
                        if let Some(command) = command {
                            command.calls.add(1);
                        }
                    }
                    Ok(wake @ (Wake::Error | Wake::RoleChange)) => {
                        let error = if matches!(wake, Wake::Error) {
                            "UNBLOCKED client unblocked via CLIENT UNBLOCK"
                        } else {
                            client.close_after_reply = true;
                            "UNBLOCKED force unblock from blocking operation, instance state \
                             changed (master -> replica?)"
                        };
                        reply.error(error);
                        server.stats.count_error(error);
                        if let Some(command) = command {
                            command.calls.add(1);
                            command.failed.add(1);
                        }
                    }
                }
                return Ok(());
            }
            _ = &mut timeout, if !timed_out => {
                timed_out = true;
                cancel(Wake::Timeout).await;
            }
            read = stream.read_buf(buf) => {
                let n = read?;
                if n == 0 {
                    cancel(Wake::Timeout).await;
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                server.stats.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            () = inbox.take(&client.handle.mailbox) => {
                if client.handle.killed.load(Ordering::Relaxed)
                    || !commands::acl::follow_user_changes(server, client)
                {
                    cancel(Wake::Timeout).await;
                    return Err(std::io::ErrorKind::ConnectionAborted.into());
                }
                take_pushed(&client.handle, inbox, reply);
                drain_to(0, server, stream, &client.handle, reply, &mut unsent).await?;
            }
        }
    }
}

/// CLIENT PAUSE, while the server is paused: holds this client's next command until the pause
/// ends (if it applies to the command), after sending the replies already computed. A held
/// client counts as blocked, as Redis's postponed clients do.
async fn wait_while_paused(
    server: &Server,
    client: &Client,
    args: &[Bytes],
    stream: &mut impl ClientStream,
    reply: &mut Reply,
    unsent: &mut Unsent,
) -> std::io::Result<()> {
    let is_write = commands::paused_by_write_pause(server, client, args);
    if server.pause.wait_for(is_write).is_none() {
        return Ok(());
    }
    let handle = &client.handle;
    drain_to(0, server, stream, handle, reply, unsent).await?;
    let _postponed = server.pause.postpone(handle);
    loop {
        // Listening before looking: an UNPAUSE between the two still wakes this wait.
        let resumed = server.pause.resumed.notified();
        tokio::pin!(resumed);
        resumed.as_mut().enable();
        let Some(ms) = server.pause.wait_for(is_write) else {
            return Ok(());
        };
        tokio::select! {
            _ = resumed => {}
            _ = crate::timer::sleep(Duration::from_millis(ms)) => {}
            _ = handle.kill_notify.notified() => {
                return Err(std::io::ErrorKind::ConnectionAborted.into());
            }
        }
    }
}

/// While a script runs, a client's next command waits for it (as it would behind Redis's one
/// thread) until the script ends or runs past `busy-reply-threshold`; then the command runs,
/// to be refused with BUSY or, if it is SCRIPT KILL and the like, to act on the script.
async fn wait_for_script(
    server: &Server,
    stream: &mut impl ClientStream,
    handle: &ClientHandle,
    reply: &mut Reply,
    unsent: &mut Unsent,
) -> std::io::Result<()> {
    let running = &server.scripts.running;
    if running.is_timed_out() {
        return Ok(());
    }
    drain_to(0, server, stream, handle, reply, unsent).await?;
    let threshold = server.config.int(config::BUSY_REPLY_THRESHOLD);
    // 0 turns the threshold off: wait for the script's end.
    let threshold = if threshold > 0 {
        threshold as u64
    } else {
        u64::MAX
    };
    running.wait_while_young(threshold).await;
    Ok(())
}

/// Lets every task already in the runtime's queue run before this one goes on. Not tokio's
/// `yield_now`, which also waits for the next poll of the I/O driver: one more epoll_wait per
/// loop, for nothing, as the tasks that poll readied are queued already.
#[derive(Default)]
struct RunQueued {
    requeued: bool,
}

impl std::future::Future for RunQueued {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.requeued {
            return std::task::Poll::Ready(());
        }
        self.requeued = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}
