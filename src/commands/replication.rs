//! The commands of replication: what a replica sends its master (REPLCONF, PSYNC, SYNC) and
//! what tells a node's place in a set-up (ROLE).

use bytes::Bytes;

use super::{CmdResult, Ctx, Error, NOT_INTEGER};
use crate::replication::{Hello, SyncRequest, Target, failover};
use crate::util::{eq_ignore_case, parse_i64};

/// REPLCONF option value ...: what a replica tells its master before and after PSYNC.
pub fn replconf(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if args.len().is_multiple_of(2) {
        return Err(format!("ERR wrong number of arguments for '{}' command", ctx.name()).into());
    }
    for pair in args[1..].chunks(2) {
        let (option, value) = (&pair[0], &pair[1]);
        let hello = ctx.client.replication.get_or_insert_with(Box::default);
        if eq_ignore_case(option, "listening-port") {
            let port = parse_i64(value).ok_or(Error::from(NOT_INTEGER))?;
            hello.listening_port = port as u16;
        } else if eq_ignore_case(option, "ip-address") {
            hello.ip_address = Some(String::from_utf8_lossy(value).into_owned());
        } else if eq_ignore_case(option, "capa") {
            if eq_ignore_case(value, "eof") {
                hello.capa_eof = true;
            } else if eq_ignore_case(value, "psync2") {
                hello.capa_psync2 = true;
            }
        } else if eq_ignore_case(option, "ack") || eq_ignore_case(option, "getack") {
            // Acknowledgements come from replicas, which their own connection serves; from
            // anyone else they get no reply, as in Redis.
            return Ok(());
        } else if eq_ignore_case(option, "rdb-only") || eq_ignore_case(option, "rdb-filter-only") {
        } else {
            return Err(format!(
                "ERR Unrecognized REPLCONF option: {}",
                String::from_utf8_lossy(option)
            )
            .into());
        }
    }
    ctx.reply.ok();
    Ok(())
}

/// PSYNC replid offset: answered by the connection, which becomes the replica's.
pub fn psync(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let Some(offset) = parse_i64(&args[2]) else {
        tracing::warn!(
            "Replica {} asks for synchronization but with a wrong offset",
            ctx.client.handle.addr
        );
        return Err(NOT_INTEGER.into());
    };
    if args.len() > 3 && eq_ignore_case(&args[3], "failover") {
        take_over(ctx, &args[1])?;
    }
    start_sync(
        ctx,
        SyncRequest {
            replid: String::from_utf8_lossy(&args[1]).into_owned(),
            offset,
            psync: true,
        },
    )
}

/// `PSYNC <replid> <offset> FAILOVER`: our master hands its role over to us; we become the
/// master if we follow its history, and it goes on as our replica.
fn take_over(ctx: &mut Ctx, replid: &[u8]) -> CmdResult {
    let server = ctx.server;
    tracing::warn!(
        "Failover request received for replid {}.",
        String::from_utf8_lossy(replid)
    );
    if !server.replication.is_replica() {
        return Err("ERR PSYNC FAILOVER can't be sent to a master.".into());
    }
    if server.store.notifier.repl.lock().replid.as_bytes() != replid {
        return Err("ERR PSYNC FAILOVER replid must match my replid.".into());
    }
    server.replication.set_target(server, None);
    let who = ctx.client.handle.describe(&server.commands);
    tracing::info!("MASTER MODE enabled (failover request from '{who}')");
    Ok(())
}

/// FAILOVER [TO host port [FORCE]] [TIMEOUT ms] | ABORT: hands the master's role to a
/// replica (see `replication::failover`).
pub fn failover(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let server = ctx.server;
    if args.len() == 2 && eq_ignore_case(&args[1], "abort") {
        if !failover::abort(server, "Failover manually aborted") {
            return Err("ERR No failover in progress.".into());
        }
        ctx.reply.ok();
        return Ok(());
    }
    let mut request = failover::Request {
        target: None,
        timeout_ms: 0,
        force: false,
    };
    let mut i = 1;
    while i < args.len() {
        let left = args.len() - i - 1;
        if eq_ignore_case(&args[i], "timeout") && left >= 1 && request.timeout_ms == 0 {
            let timeout = parse_i64(&args[i + 1]).ok_or(Error::from(NOT_INTEGER))?;
            if timeout <= 0 {
                return Err("ERR FAILOVER timeout must be greater than 0".into());
            }
            request.timeout_ms = timeout as u64;
            i += 2;
        } else if eq_ignore_case(&args[i], "to") && left >= 2 && request.target.is_none() {
            let port = parse_i64(&args[i + 2]).ok_or(Error::from(NOT_INTEGER))?;
            request.target = Some(Target {
                host: String::from_utf8_lossy(&args[i + 1]).into_owned(),
                port: u16::try_from(port).unwrap_or(0),
            });
            i += 3;
        } else if eq_ignore_case(&args[i], "force") && !request.force {
            request.force = true;
            i += 1;
        } else {
            return Err(super::SYNTAX.into());
        }
    }
    failover::start(server, request).map_err(Error::from)?;
    ctx.reply.ok();
    Ok(())
}

/// SYNC: a full synchronisation, as old replicas ask.
pub fn sync(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    start_sync(
        ctx,
        SyncRequest {
            replid: "?".into(),
            offset: -1,
            psync: false,
        },
    )
}

fn start_sync(ctx: &mut Ctx, request: SyncRequest) -> CmdResult {
    let replication = &ctx.server.replication;
    if replication.failover_state() != failover::State::None {
        return Err("NOMASTERLINK Can't SYNC while failing over".into());
    }
    if replication.is_replica() && !replication.link_up() {
        return Err("NOMASTERLINK Can't SYNC while not connected with my master".into());
    }
    let hello: &mut Hello = ctx.client.replication.get_or_insert_with(Box::default);
    if hello.sync.is_none() {
        hello.sync = Some(request);
    }
    Ok(())
}

/// ROLE: `master`, the stream offset, and each replica's address and acknowledged offset;
/// or `slave`, its master, the link's state and the offset applied.
pub fn role(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let replication = &ctx.server.replication;
    let offset = ctx.server.store.notifier.repl.lock().offset;
    if let Some(target) = replication.target() {
        let r = &mut *ctx.reply;
        r.array(5);
        r.bulk(b"slave");
        r.bulk(target.host.as_bytes());
        r.int(target.port as i64);
        r.bulk(replication.link_state_name().as_bytes());
        r.int(if replication.link_up() {
            offset as i64
        } else {
            -1
        });
        return Ok(());
    }
    let replicas = ctx.server.replication.replicas();
    let r = &mut *ctx.reply;
    r.array(3);
    r.bulk(b"master");
    r.int(offset as i64);
    r.array(replicas.len());
    for replica in replicas.iter() {
        r.array(3);
        r.bulk(replica.ip.as_bytes());
        r.bulk(replica.port.to_string().as_bytes());
        r.bulk(
            replica
                .ack_offset
                .load(std::sync::atomic::Ordering::Relaxed)
                .to_string()
                .as_bytes(),
        );
    }
    Ok(())
}

/// WAIT numreplicas timeout: how many replicas acknowledged this client's writes, waiting
/// (in the connection) up to `timeout` ms for `numreplicas` of them.
pub fn wait(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if ctx.server.replication.is_replica() {
        return Err("ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.".into());
    }
    let wanted = parse_i64(&args[1]).ok_or(Error::from(NOT_INTEGER))?;
    let timeout = super::millis_arg(&args[2])?;
    let offset = ctx.client.woff;
    let acked = ctx.server.replication.acknowledged(offset);
    if acked as i64 >= wanted || ctx.client.deny_blocking {
        ctx.reply.int(acked as i64);
        return Ok(());
    }
    ctx.client.wait_acks = Some((wanted as usize, timeout, offset));
    Ok(())
}

/// REPLICAOF host port | NO ONE (and SLAVEOF): follow a master, or become one.
pub fn replicaof(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let server = ctx.server;
    if server.replication.failover_state() != failover::State::None {
        return Err("ERR REPLICAOF not allowed while failing over.".into());
    }
    let who = ctx.client.handle.describe(&server.commands);
    if eq_ignore_case(&args[1], "no") && eq_ignore_case(&args[2], "one") {
        if server.replication.set_target(server, None) {
            tracing::info!("MASTER MODE enabled (user request from '{who}')");
        }
        ctx.reply.ok();
        return Ok(());
    }
    if ctx.client.handle.has_flag(crate::client::FLAG_REPLICA) {
        return Err("ERR Command is not valid when client is a replica.".into());
    }
    let port = parse_i64(&args[2])
        .filter(|p| (0..=65535).contains(p))
        .ok_or(Error::from("ERR Invalid master port"))?;
    let target = Target {
        host: String::from_utf8_lossy(&args[1]).into_owned(),
        port: port as u16,
    };
    let (host, port) = (target.host.clone(), target.port);
    if !server.replication.set_target(server, Some(target)) {
        tracing::info!(
            "REPLICAOF would result into synchronization with the master we are already connected with. No operation performed."
        );
        ctx.reply.simple("OK Already connected to specified master");
        return Ok(());
    }
    tracing::info!("REPLICAOF {host}:{port} enabled (user request from '{who}')");
    ctx.reply.ok();
    Ok(())
}
