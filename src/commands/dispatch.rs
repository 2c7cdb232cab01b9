//! Dispatch: every request, from a socket, EXEC or a served blocked client, goes through the
//! checks Redis makes (`check`), MULTI queuing, the keyspace gate, and `call`, which runs the
//! handler and does the bookkeeping (statistics, slow log, MONITOR, propagation).

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::meta::flag_bit;
use super::table::{Access, Command, TxRole};
use super::{Ctx, Error, MISCONF, acl, propagate, pubsub, transactions};
use crate::blocking::Wake;
use crate::client::{Blocked, Client, Queued};
use crate::protocol::{Reply, peek_requests};
use crate::server::Server;
use crate::server::loading::LOADING_ERROR;
use crate::store::PREFETCH_BATCH;
use crate::store::evict::Outcome;
use crate::util::clock::Ticks;
use crate::util::eq_ignore_case;

const WRITE: u32 = flag_bit("write");
const STALE: u32 = flag_bit("stale");
const READONLY: u32 = flag_bit("readonly");
const PUBSUB: u32 = flag_bit("pubsub");
const DENYOOM: u32 = flag_bit("denyoom");
const ADMIN: u32 = flag_bit("admin");
const NO_AUTH: u32 = flag_bit("no_auth");
const NO_MULTI: u32 = flag_bit("no_multi");
const SKIP_MONITOR: u32 = flag_bit("skip_monitor");
const SKIP_SLOWLOG: u32 = flag_bit("skip_slowlog");
const ALLOW_BUSY: u32 = flag_bit("allow_busy");
const NOSCRIPT: u32 = flag_bit("noscript");
const MAY_REPLICATE: u32 = flag_bit("may_replicate");
const LOADING: u32 = flag_bit("loading");
const NO_ASYNC_LOADING: u32 = flag_bit("no_async_loading");

/// Prefetches the keys of the next requests waiting whole in `input` (see `Db::prefetch`).
/// Worth its cost only for different keys, which is where lookups miss the cache: runs of one
/// key (a client hammering one counter) and lone requests are left alone.
pub fn prefetch_keys(server: &Server, client: &mut Client, input: &[u8]) {
    let db = server.store.db(client.db);
    if !db.worth_prefetching() {
        return;
    }
    let mut keys: [&[u8]; PREFETCH_BATCH] = [&[]; PREFETCH_BATCH];
    let mut count = 0;
    peek_requests(input, PREFETCH_BATCH, |name, key| {
        if let Some(key) = key
            && (count == 0 || keys[count - 1] != key)
            && server
                .commands
                .first_argument_is_key(name, &mut client.recent_command)
        {
            keys[count] = key;
            count += 1;
        }
    });
    if count > 1 {
        db.prefetch(&keys[..count]);
    }
}

/// Runs one request for `client` and writes its reply: command lookup, arity and
/// authentication checks, MULTI queuing, the keyspace gate, blocking, and serving clients
/// blocked on keys this command filled.
pub fn execute(server: &Server, client: &mut Client, reply: &mut Reply, args: &[Bytes]) {
    execute_chained(server, client, reply, args, None);
}

/// `execute` for the next command of a pipelined batch: `started` is the tick reading that
/// ended the command before it, when that one ran and nothing waited since. Returns the
/// reading that ended this one. Reading the cycle counter costs as much as a tenth of a
/// pipelined command's own time in a VM, so one reading ends a command and starts the next;
/// the next command's parsing is then timed with it.
pub fn execute_chained(
    server: &Server,
    client: &mut Client,
    reply: &mut Reply,
    args: &[Bytes],
    started: Option<Ticks>,
) -> Option<Ticks> {
    if !acl::follow_user_changes(server, client) {
        client.close_after_reply = true;
        return None;
    }
    if is_cross_protocol(&args[0]) {
        refuse_cross_protocol(client, reply);
        return None;
    }
    let reply_start = reply.buf.len();
    let tracking = &server.store.notifier.tracking;
    let _tracking = tracking.scope(client.id);
    // A lowered `tracking-table-max-keys` applies before the next command, as in Redis.
    tracking.enforce_limit();
    tracking.write_own(client.id, reply);
    let command = match check(server, client, args) {
        Ok(command) => command,
        Err((command, message)) => {
            if let Some(multi) = &mut client.multi {
                multi.aborted = true;
            }
            if let Some(command) = command {
                command.rejected.add(1);
            }
            let message = match command {
                Some(c) if c.tx == TxRole::Exec => {
                    transactions::discard_transaction(server, client);
                    format!("EXECABORT Transaction discarded because of: {message}")
                }
                _ => message,
            };
            reply.error(&message);
            server.stats.count_error(&message);
            finish_reply(client, reply, reply_start);
            return None;
        }
    };
    if let Some(multi) = &mut client.multi
        && command.tx == TxRole::Queued
    {
        let queued = Queued {
            command: client.recent_command,
            args: args.to_vec(),
        };
        multi.memory += queued.memory();
        multi.queued.push(queued);
        reply.simple("QUEUED");
        finish_reply(client, reply, reply_start);
        return None;
    }
    if command.access == Access::Script && client.defer_scripts {
        client.script_deferred = true;
        return None;
    }
    // While a timed-out script holds the keyspace, the commands allowed to run (SCRIPT KILL,
    // MULTI, WATCH ...) must not wait for it.
    let needs_gate = (!command.spec.key_specs.is_empty()
        || matches!(command.access, Access::Exclusive | Access::Script))
        && !server.scripts.running.is_timed_out();
    let ended = {
        let _gate = needs_gate.then(|| {
            server
                .store
                .enter_for(command.exclusive(args), command.flags & WRITE != 0)
        });
        let time = crate::util::clock::freeze_at(started.unwrap_or_else(Ticks::now));
        // Invalidations of keys evicted before the command go before its reply, those of
        // keys it changed itself after (as Redis orders them).
        tracking.write_own(client.id, reply);
        let ended = call(server, client, reply, command, args, time.at());
        tracking.write_own(client.id, reply);
        if let Some(request) = client.wants_block.take() {
            let deadline_ms = request.deadline_ms;
            let wake = server.store.notifier.blocking.block(
                client.id,
                client.db,
                *request,
                args.to_vec(),
                client.protocol,
                client.handle.clone(),
            );
            client.blocked = Some(Blocked { wake, deadline_ms });
        }
        // Serving blocked clients takes time that is not the next command's. While a script
        // runs, the keys it filled are served when it ends, not by a command let through.
        if needs_gate && server.store.notifier.blocking.has_ready() {
            serve_blocked(server);
            None
        } else {
            Some(ended)
        }
    };
    finish_reply(client, reply, reply_start);
    ended
}

/// Whether a request is a line of HTTP (`POST ...`, `Host: ...`): a web page can make a
/// browser send one to a server on localhost, with Redis commands in its body ("cross
/// protocol scripting").
fn is_cross_protocol(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"post") || name.eq_ignore_ascii_case(b"host:")
}

/// Redis's `securityWarningCommand`: no reply, nothing more from this connection (not even
/// the replies of the commands before it in the same read), the connection closed, and a
/// warning at most once a minute.
#[cold]
fn refuse_cross_protocol(client: &mut Client, reply: &mut Reply) {
    static LOGGED_AT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = crate::util::now_ms() / 1000;
    let logged_at = LOGGED_AT.load(Ordering::Relaxed);
    if now.abs_diff(logged_at) > 60
        && LOGGED_AT
            .compare_exchange(logged_at, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            "Possible SECURITY ATTACK detected. It looks like somebody is sending POST or Host: \
             commands to Redis. This is likely due to an attacker attempting to use Cross \
             Protocol Scripting to compromise your Redis instance. Connection aborted."
        );
    }
    reply.clear();
    client.close_after_reply = true;
}

/// The checks Redis makes before running or queuing a command; on failure, the command (if
/// known) and the error.
fn check<'s>(
    server: &'s Server,
    client: &mut Client,
    args: &[Bytes],
) -> Result<&'s Command, (Option<&'s Command>, String)> {
    let command = server
        .commands
        .resolve_recent(args, &mut client.recent_command)
        .map_err(|m| (None, m))?;
    if !command.arity_ok(args.len()) {
        let message = format!(
            "ERR wrong number of arguments for '{}' command",
            command.name
        );
        return Err((Some(command), message));
    }
    if auth_required(server, client) && command.flags & NO_AUTH == 0 {
        return Err((Some(command), "NOAUTH Authentication required.".into()));
    }
    if client.protocol == crate::protocol::Protocol::Resp2
        && !client.subscriptions.is_empty()
        && !command.while_subscribed
    {
        let message = format!(
            "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET \
             are allowed in this context",
            command.name
        );
        return Err((Some(command), message));
    }
    if client.multi.is_some() && command.flags & NO_MULTI != 0 {
        return Err((
            Some(command),
            "ERR Command not allowed inside a transaction".into(),
        ));
    }
    acl::check_permissions(server, client, command, args).map_err(|e| (Some(command), e))?;
    // A script's own flags are looked up only when a refusal could depend on them.
    let flags = || effective_flags(server, command, args);
    let running = &server.scripts.running;
    if client.is_master {
        // A replica obeys its master: the master made these checks already.
        return Ok(command);
    }
    if let Some(refusal) = replica_refusal(server, client, command, &flags) {
        return Err((Some(command), refusal.into()));
    }
    if loading_refusal(server, client, command) {
        return Err((Some(command), LOADING_ERROR.into()));
    }
    if !running.is_timed_out()
        && out_of_memory(server)
        && needs_memory(server, client, command, flags())
    {
        return Err((Some(command), OOM.into()));
    }
    if let Some(message) = write_refusal(server)
        && (command.name == "ping" || flags() & WRITE != 0)
    {
        return Err((Some(command), message));
    }
    if too_few_replicas(server) && writes(server, client, command, flags()) {
        return Err((Some(command), NOREPLICAS.into()));
    }
    if running.is_timed_out() && command.flags & ALLOW_BUSY == 0 {
        return Err((Some(command), running.busy_error().into()));
    }
    Ok(command)
}

/// On a replica: writes refused while `replica-read-only` is on, and commands that may not
/// serve stale data while the link to the master is down and `replica-serve-stale-data` is
/// off (Redis's checks in `processCommand`).
fn replica_refusal(
    server: &Server,
    client: &Client,
    command: &Command,
    flags: &dyn Fn() -> u32,
) -> Option<&'static str> {
    let replication = &server.replication;
    if !replication.is_replica() {
        return None;
    }
    let config = &server.config;
    if config.bool(crate::config::REPLICA_READ_ONLY) && writes(server, client, command, flags()) {
        return Some("READONLY You can't write against a read only replica.");
    }
    if !replication.link_up()
        && !config.bool(crate::config::REPLICA_SERVE_STALE_DATA)
        && denies_stale(server, client, command, flags())
    {
        return Some(
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        );
    }
    None
}

/// While a dump loads: commands that need the data (without the `loading` flag) wait for
/// it, or, while old data is served beside the load, those marked `no_async_loading`. The
/// server's own clients (the AOF's replay) are not refused.
fn loading_refusal(server: &Server, client: &Client, command: &Command) -> bool {
    let loading = &server.loading;
    client.acl_generation != Client::INTERNAL
        && ((loading.refuses_commands() && command.flags & LOADING == 0)
            || (loading.is_async() && command.flags & NO_ASYNC_LOADING != 0))
}

/// Why writes are refused now (a failed background save, a failed AOF write), if they are.
fn write_refusal(server: &Server) -> Option<String> {
    if server.snapshots.refuses_writes(&server.config) {
        return Some(MISCONF.into());
    }
    let error = server.store.notifier.aof.write_error()?;
    Some(format!("MISCONF Errors writing to the AOF file: {error}"))
}

const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

pub const NOREPLICAS: &str = "NOREPLICAS Not enough good replicas to write.";

/// `min-replicas-to-write` with `min-replicas-max-lag`: fewer replicas than required
/// acknowledged within the lag.
pub fn too_few_replicas(server: &Server) -> bool {
    let required = server.config.int(crate::config::MIN_REPLICAS_TO_WRITE);
    let max_lag = server.config.int(crate::config::MIN_REPLICAS_MAX_LAG);
    required > 0
        && max_lag > 0
        && (server.replication.good_replicas(max_lag as u64) as i64) < required
}

/// The flags a call runs with: its command's, except for a script that declares its own
/// (Redis's `getCommandFlags`).
pub fn effective_flags(server: &Server, command: &Command, args: &[Bytes]) -> u32 {
    if command.access != Access::Script {
        return command.flags;
    }
    match crate::scripting::declared_flags(server, &command.name, args) {
        Some(declared) => crate::scripting::command_flags_for(command.flags, declared),
        None => command.flags,
    }
}

/// Whether CLIENT PAUSE WRITE holds this request (Redis's `is_may_replicate_command`): a
/// command that writes or may replicate, a script as its declared flags say, and EXEC of a
/// transaction holding one of those.
pub fn paused_by_write_pause(server: &Server, client: &Client, args: &[Bytes]) -> bool {
    // A call Redis refuses anyway (unknown command, wrong arity) is answered at once.
    let Ok(command) = server.commands.resolve(args) else {
        return false;
    };
    if !command.arity_ok(args.len()) {
        return false;
    }
    let flags = effective_flags(server, command, args);
    call_has(server, client, command, flags, |f| {
        f & (WRITE | MAY_REPLICATE) != 0
    })
}

/// Evicts keys as `maxmemory-policy` says while `maxmemory` is exceeded (before every
/// command, as Redis's `processCommand` does); whether memory is still over the limit with
/// nothing left to evict, so that commands which may grow it are refused.
pub(super) fn out_of_memory(server: &Server) -> bool {
    server.evict() == Outcome::Failed
}

/// Whether a call may not serve stale data (Redis's `is_denystale_command`): a command
/// without the `stale` flag, or EXEC of a transaction that queued one.
fn denies_stale(server: &Server, client: &Client, command: &Command, flags: u32) -> bool {
    call_has(server, client, command, flags, |f| f & STALE == 0)
}

/// Whether a call writes (Redis's `is_write_command`): a write command, or EXEC of a
/// transaction that queued one.
fn writes(server: &Server, client: &Client, command: &Command, flags: u32) -> bool {
    call_has(server, client, command, flags, |f| f & WRITE != 0)
}

/// Whether the call's flags pass `test`, or for EXEC, those of a command it queued.
fn call_has(
    server: &Server,
    client: &Client,
    command: &Command,
    flags: u32,
    test: impl Fn(u32) -> bool,
) -> bool {
    match (&client.multi, command.tx) {
        (Some(multi), TxRole::Exec) => multi.queued.iter().any(|queued| {
            server
                .commands
                .resolve_queued(queued)
                .is_ok_and(|c| test(effective_flags(server, c, &queued.args)))
        }),
        _ => test(flags),
    }
}

/// Which commands Redis refuses when out of memory: those that may grow the dataset, every
/// command being queued in MULTI, and EXEC of a transaction holding one of the former.
fn needs_memory(server: &Server, client: &Client, command: &Command, flags: u32) -> bool {
    if client.multi.is_some() && command.tx == TxRole::Queued {
        return true;
    }
    call_has(server, client, command, flags, |f| f & DENYOOM != 0)
}

/// Runs a command queued by MULTI, inside EXEC (which holds the gate).
pub(super) fn call_queued(
    server: &Server,
    client: &mut Client,
    reply: &mut Reply,
    queued: &Queued,
) {
    let args = &queued.args;
    let checked = server
        .commands
        .resolve_queued(queued)
        .and_then(|command| acl::check_queued(server, client, command, args).map(|()| command));
    match checked {
        Ok(command) => {
            call(server, client, reply, command, args, Ticks::now());
        }
        Err(message) => reply.error(&message),
    }
}

/// Redis's `authRequired`: the client has not logged in, and the default user needs a
/// password (or is off).
pub fn auth_required(server: &Server, client: &Client) -> bool {
    !client.authenticated && !server.acl.default_open()
}

/// Runs a checked command that started at `started` and does its bookkeeping: statistics,
/// slow log, MONITOR feed. Returns the tick reading that ended it.
fn call(
    server: &Server,
    client: &mut Client,
    reply: &mut Reply,
    command: &Command,
    args: &[Bytes],
    started: Ticks,
) -> Ticks {
    client
        .handle
        .last_command
        .store(command.id, Ordering::Relaxed);
    let db_before = client.db;
    let dirty_before = (server.store.notifier.propagating() && client.propagate)
        .then(|| server.store.notifier.dirty.load(Ordering::Relaxed));
    if dirty_before.is_some() && command.tx == TxRole::Exec {
        propagate::exec_started(client);
    }
    let result = {
        let mut ctx = Ctx {
            server,
            client: &mut *client,
            reply: &mut *reply,
            command,
        };
        command.run(&mut ctx, args)
    };
    // A script counts as reading its declared keys when a command it ran read (the
    // read-only script commands themselves only through those).
    let read = if command.access == Access::Script {
        crate::tracking::script_read()
    } else {
        command.flags & READONLY != 0
    };
    if read {
        crate::tracking::note_read(client.id);
    }
    if client.tracking.is_some() {
        remember_tracked_keys(server, client, command, args, read);
    }
    let ended = Ticks::now();
    let nanos = ended.ns_since(started);
    let micros = nanos / 1000;
    if server.config.bool(crate::config::LATENCY_TRACKING) {
        command.latency.get_or_init(Default::default).record(nanos);
    }
    if let Some(before) = dirty_before {
        if command.tx == TxRole::Exec {
            propagate::exec_finished(server, client, client.db);
        } else if command.flags & WRITE != 0
            && (server.store.notifier.dirty.load(Ordering::Relaxed) != before
                || client.log_as.is_some())
        {
            propagate::log(server, client, db_before, &command.name, args);
        }
        client.log_as = None;
    }
    if command.flags & WRITE != 0 && server.replication.is_replica() && !client.is_master {
        remember_own_volatile(server, client.db, command, args);
    }
    if let Err(Error(message)) = &result {
        reply.error(message);
        server.stats.count_error(message);
        command.failed.add(1);
    }
    // A call that blocks is counted when its wait ends (served, timed out or unblocked), as
    // Redis's updateStatsOnUnblock counts it.
    if client.wants_block.is_none() {
        command.calls.add(1);
    }
    command.usec.add(micros);
    server.stats.commands_processed.add(1);
    log_if_slow(server, &client.handle, command, args, micros);
    if server.monitors.is_active() && command.flags & (SKIP_MONITOR | ADMIN) == 0 {
        server
            .monitors
            .feed(db_before, &client.handle.addr, &redacted(command, args));
    }
    ended
}

/// A write on a writable replica: its keys that now have a time to live are the replica's
/// to expire.
fn remember_own_volatile(server: &Server, db: usize, command: &Command, args: &[Bytes]) {
    for position in command.key_positions(args) {
        let key = &args[position];
        let volatile = server
            .store
            .db(db)
            .lock(key)
            .peek(key)
            .is_some_and(|entry| entry.expire_at().is_some());
        if volatile {
            server.replication.remember_own_volatile(db, key.clone());
        }
    }
}

/// After a read-only command of a client with CLIENT TRACKING on (not BCAST): the keys it read
/// are remembered, unless OPTIN without CLIENT CACHING YES or OPTOUT with CLIENT CACHING NO
/// (Redis's `trackingRememberKeys`). CLIENT CACHING lasts one command, or one transaction.
fn remember_tracked_keys(
    server: &Server,
    client: &mut Client,
    command: &Command,
    args: &[Bytes],
    read: bool,
) {
    let Some(mode) = client.tracking else {
        return;
    };
    let caching = client.tracking_caching;
    if client.multi.is_none() && !command.name.starts_with("client") {
        client.tracking_caching = false;
    }
    if mode.bcast
        || !read
        || command.flags & PUBSUB != 0
        || (mode.optin && !caching)
        || (mode.optout && caching)
    {
        return;
    }
    let keys: Vec<&[u8]> = command
        .key_positions(args)
        .into_iter()
        .map(|i| &args[i][..])
        .collect();
    if !keys.is_empty() {
        server.store.notifier.tracking.remember(client.id, &keys);
    }
}

/// Runs the script command that `execute_chained` checked and left to the connection
/// (`client.script_deferred`), and writes its reply: on this thread, in slices once it runs too
/// long (see `scripting::slices`), or with `io-threads` in `block_in_place`, so that the other
/// clients are answered meanwhile.
pub async fn execute_deferred(
    server: &Server,
    client: &mut Client,
    reply: &mut Reply,
    args: &[Bytes],
) {
    let reply_start = reply.buf.len();
    let flavor = tokio::runtime::Handle::current().runtime_flavor();
    if flavor == tokio::runtime::RuntimeFlavor::CurrentThread {
        crate::scripting::slices::run_in_slices(|| run_alone(server, client, reply, args)).await;
    } else {
        tokio::task::block_in_place(|| run_alone(server, client, reply, args));
    }
    finish_reply(client, reply, reply_start);
}

/// Runs a checked command with the keyspace to itself, then serves the clients blocked on
/// keys it filled.
fn run_alone(server: &Server, client: &mut Client, reply: &mut Reply, args: &[Bytes]) {
    let Ok(command) = server
        .commands
        .resolve_recent(args, &mut client.recent_command)
    else {
        return;
    };
    let _gate = server.store.enter(true);
    let tracking = &server.store.notifier.tracking;
    let _tracking = tracking.scope(client.id);
    let time = crate::util::clock::freeze_at(Ticks::now());
    call(server, client, reply, command, args, time.at());
    tracking.write_own(client.id, reply);
    if server.store.notifier.blocking.has_ready() {
        serve_blocked(server);
    }
}

/// What a running script allows the commands it calls (Redis's script run flags).
pub struct ScriptRules {
    /// EVAL_RO, FCALL_RO, or a script declared `no-writes`.
    pub read_only: bool,
    pub allow_oom: bool,
    /// `maxmemory` was exceeded when the script started.
    pub oom_at_start: bool,
    /// A write command ran: the script can no longer be refused half-way (or killed).
    pub wrote: bool,
}

/// Redis's `scriptCall`: checks a command a script calls, then runs it as `call` runs any
/// command. A refusal is counted and returned as Redis words it: `-CODE message`, or a bare
/// message to which the script adds `ERR`.
pub fn call_from_script(
    server: &Server,
    client: &mut Client,
    reply: &mut Reply,
    args: &[Bytes],
    rules: &mut ScriptRules,
) -> Result<(), String> {
    let refuse = |command: Option<&Command>, message: String| {
        if let Some(command) = command {
            command.rejected.add(1);
        }
        server
            .stats
            .count_error(message.strip_prefix('-').unwrap_or("ERR"));
        Err(message)
    };
    const NOT_ALLOWED: &str = "This Redis command is not allowed from script";
    let command = match server.commands.resolve(args) {
        Ok(command) if command.arity_ok(args.len()) => command,
        Ok(command) => {
            let message = "Wrong number of args calling Redis command from script";
            return refuse(Some(command), message.into());
        }
        // A Redis command Oxidis does not have is refused as Redis refuses it in a script.
        Err(_)
            if server
                .commands
                .any_called(args)
                .is_some_and(|c| c.flags & NOSCRIPT != 0) =>
        {
            return refuse(None, NOT_ALLOWED.into());
        }
        Err(_) => return refuse(None, "Unknown Redis command called from script".into()),
    };
    let allow_noscript = server.scripts.allow_noscript.load(Ordering::Relaxed);
    if command.flags & NOSCRIPT != 0 && !allow_noscript {
        return refuse(Some(command), NOT_ALLOWED.into());
    }
    if let Err(reason) = acl::check_from_script(server, client, command, args) {
        let message = format!("The user executing the script {reason}");
        return refuse(Some(command), message);
    }
    if rules.read_only && command.flags & (WRITE | MAY_REPLICATE) != 0 {
        let message = "Write commands are not allowed from read-only scripts.";
        return refuse(Some(command), message.into());
    }
    let write = command.flags & WRITE != 0;
    if write
        && !rules.wrote
        && let Some(message) = write_refusal(server)
            .or_else(|| too_few_replicas(server).then(|| NOREPLICAS.to_string()))
    {
        return refuse(Some(command), format!("-{message}"));
    }
    if !rules.allow_oom
        && !rules.wrote
        && rules.oom_at_start
        && server.config.int(crate::config::MAXMEMORY) > 0
        && command.flags & DENYOOM != 0
    {
        return refuse(Some(command), format!("-{OOM}"));
    }
    if write {
        rules.wrote = true;
        server.scripts.running.wrote();
    }
    call(server, client, reply, command, args, Ticks::now());
    Ok(())
}

/// Adds the call to the slow log if it took at least `slowlog-log-slower-than`.
fn log_if_slow(
    server: &Server,
    handle: &crate::client::ClientHandle,
    command: &Command,
    args: &[Bytes],
    micros: u64,
) {
    let slower_than = server.config.int(crate::config::SLOWLOG_LOG_SLOWER_THAN);
    if slower_than >= 0 && micros >= slower_than as u64 && command.flags & SKIP_SLOWLOG == 0 {
        let name = handle.names().name.unwrap_or_default();
        let max_len = server.config.int(crate::config::SLOWLOG_MAX_LEN) as usize;
        let args = redacted(command, args);
        let mut slowlog = server.slowlog.lock().unwrap_or_else(|e| e.into_inner());
        slowlog.push(&args, micros, handle.addr.clone(), name, max_len);
    }
}

/// The arguments as the slow log and MONITOR show them: passwords, ACL rules and secret
/// settings replaced by `(redacted)`, as Redis's `redactClientCommandArgument` does.
fn redacted<'a>(command: &Command, args: &'a [Bytes]) -> std::borrow::Cow<'a, [Bytes]> {
    // Which arguments hold a secret, by command; None: the command holds none.
    let secret: Option<&dyn Fn(usize) -> bool> = match command.name.as_str() {
        "auth" => Some(&|i| i >= 1),
        "acl|setuser" => Some(&|i| i >= 2),
        "hello" => Some(&|i| (2..i).any(|j| eq_ignore_case(&args[j], "auth") && i - j <= 2)),
        "config|set" => Some(&|i| {
            i >= 3
                && i % 2 == 1
                && crate::config::Config::is_sensitive(
                    &String::from_utf8_lossy(&args[i - 1]).to_ascii_lowercase(),
                )
        }),
        _ => None,
    };
    let Some(secret) = secret else {
        return std::borrow::Cow::Borrowed(args);
    };
    let redaction = Bytes::from_static(b"(redacted)");
    args.iter()
        .enumerate()
        .map(|(i, arg)| {
            if secret(i) {
                redaction.clone()
            } else {
                arg.clone()
            }
        })
        .collect()
}

/// Serves clients blocked on keys that received data, oldest first, by running each one's
/// command again on its behalf. The caller holds the gate exclusively (see `crate::blocking`).
fn serve_blocked(server: &Server) {
    let blocking = &server.store.notifier.blocking;
    while let Some(key) = blocking.next_ready() {
        let mut after = None;
        while let Some((id, waiter)) = blocking.next_waiter(&key, after) {
            let Ok(command) = server.commands.resolve(&waiter.args) else {
                break;
            };
            let mut proxy = Client::internal(waiter.handle, &server.acl);
            proxy.db = waiter.db;
            proxy.protocol = waiter.protocol;
            proxy.ready_key = Some(Box::new(key.1.clone()));
            let mut reply = Reply::new(waiter.protocol);
            let started = Ticks::now();
            let dirty_before = server.store.notifier.dirty.load(Ordering::Relaxed);
            let tracking = &server.store.notifier.tracking;
            let _tracking = tracking.serving(proxy.id);
            let result = {
                let mut ctx = Ctx {
                    server,
                    client: &mut proxy,
                    reply: &mut reply,
                    command,
                };
                command.run(&mut ctx, &waiter.args)
            };
            // Asking to block again means the key has nothing left for anyone, unless what
            // the waiter waits for is its own (a stream read past its own ID).
            if proxy.wants_block.is_some() {
                if waiter.keep_serving {
                    after = Some(id);
                    continue;
                }
                break;
            }
            if server.store.notifier.propagating()
                && server.store.notifier.dirty.load(Ordering::Relaxed) != dirty_before
            {
                propagate::log(server, &mut proxy, waiter.db, &command.name, &waiter.args);
            }
            if let Err(Error(message)) = result {
                reply.error(&message);
                server.stats.count_error(&message);
                command.failed.add(1);
            }
            command.calls.add(1);
            // Served, the call goes to the slow log as the client sent it, as Redis's
            // `updateStatsOnUnblock` logs it (with the time of the serve, not of the wait).
            let micros = Ticks::now().ns_since(started) / 1000;
            log_if_slow(server, &proxy.handle, command, &waiter.args, micros);
            tracking.write_own(proxy.id, &mut reply);
            blocking.finish(id, Wake::Reply(reply.buf));
        }
    }
}

/// Drops what the server keeps for a client that disconnected: watches, subscriptions.
pub fn forget_client(server: &Server, client: &mut Client) {
    transactions::unwatch_all(server, client);
    pubsub::unsubscribe_all(server, client);
    if client.tracking.take().is_some() {
        server.store.notifier.tracking.disable(client.id);
    }
}

/// Applies CLIENT REPLY OFF/SKIP by dropping what the command wrote.
fn finish_reply(client: &mut Client, reply: &mut Reply, start: usize) {
    let keep = start.max(reply.pushed_until);
    match client.reply_mode {
        crate::client::ReplyMode::On => {}
        crate::client::ReplyMode::Off => reply.buf.truncate(keep),
        crate::client::ReplyMode::SkipNext => {
            client.reply_mode = crate::client::ReplyMode::Skipping
        }
        crate::client::ReplyMode::Skipping => {
            reply.buf.truncate(keep);
            client.reply_mode = crate::client::ReplyMode::On;
        }
    }
}
