//! FAILOVER: a master hands its role to one of its replicas without losing a write (Redis's
//! coordinated failover). Writes are held while a replica catches up with the stream; then
//! the master becomes that replica's replica and asks it, with `PSYNC <replid> <offset>
//! FAILOVER`, to become the master and take it back with a partial resynchronisation.

use std::sync::MutexGuard;
use std::sync::atomic::Ordering;

use super::{Replication, Target};
use crate::server::Server;
use crate::util::now_ms;

#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub enum State {
    #[default]
    None,
    /// Writes are held until a replica has acknowledged the whole stream.
    WaitForSync,
    /// This node follows the replica and has asked it to take over.
    InProgress,
}

impl State {
    /// As INFO's `master_failover_state` says it.
    pub fn name(self) -> &'static str {
        match self {
            State::None => "no-failover",
            State::WaitForSync => "waiting-for-sync",
            State::InProgress => "failover-in-progress",
        }
    }
}

#[derive(Default)]
pub struct Failover {
    pub state: State,
    /// The replica asked for, or the first to catch up.
    target: Option<Target>,
    /// When waiting ends (Unix ms; 0: never), and whether it then fails over all the same.
    end_ms: u64,
    force: bool,
}

/// FAILOVER's arguments, checked against where the node stands.
pub struct Request {
    pub target: Option<Target>,
    pub timeout_ms: u64,
    pub force: bool,
}

impl Replication {
    pub fn failover(&self) -> MutexGuard<'_, Failover> {
        self.failover.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn failover_state(&self) -> State {
        self.failover().state
    }
}

/// Starts waiting for a replica to catch up, with writes held (Redis's failoverCommand).
pub fn start(server: &Server, request: Request) -> Result<(), String> {
    let replication = &server.replication;
    let mut failover = replication.failover();
    if failover.state != State::None {
        return Err("ERR FAILOVER already in progress.".into());
    }
    if replication.is_replica() {
        return Err("ERR FAILOVER is not valid when server is a replica.".into());
    }
    if replication.replicas().is_empty() {
        return Err("ERR FAILOVER requires connected replicas.".into());
    }
    if request.force && (request.timeout_ms == 0 || request.target.is_none()) {
        return Err(
            "ERR FAILOVER with force option requires both a timeout and target HOST and IP.".into(),
        );
    }
    if let Some(target) = &request.target {
        let replicas = replication.replicas();
        let Some(replica) = replicas
            .iter()
            .find(|r| r.ip == target.host && r.port == target.port)
        else {
            return Err("ERR FAILOVER target HOST and PORT is not a replica.".into());
        };
        if !replica.is_online() {
            return Err("ERR FAILOVER target replica is not online.".into());
        }
        tracing::info!("FAILOVER requested to {}:{}.", target.host, target.port);
    } else {
        tracing::info!("FAILOVER requested to any replica.");
    }
    *failover = Failover {
        state: State::WaitForSync,
        target: request.target,
        end_ms: if request.timeout_ms > 0 {
            now_ms() + request.timeout_ms
        } else {
            0
        },
        force: request.force,
    };
    server.pause.hold_writes_for_failover(true);
    Ok(())
}

/// Ends the failover, done or not, and lets writes go (Redis's clearFailoverState).
pub fn clear(server: &Server) {
    *server.replication.failover() = Failover::default();
    server.pause.hold_writes_for_failover(false);
}

/// Gives the failover up, a master again if it had started following the replica (Redis's
/// abortFailover). False when none was in progress.
pub fn abort(server: &Server, reason: &str) -> bool {
    let failover = server.replication.failover();
    if failover.state == State::None {
        return false;
    }
    match &failover.target {
        Some(target) => tracing::info!(
            "FAILOVER to {}:{} aborted: {reason}",
            target.host,
            target.port
        ),
        None => tracing::info!("FAILOVER to any replica aborted: {reason}"),
    }
    let following = failover.state == State::InProgress;
    drop(failover);
    if following {
        server.replication.set_target(server, None);
    }
    clear(server);
    true
}

/// What the replica said to `PSYNC ... FAILOVER`: a resynchronisation of either kind ends
/// the failover, anything else gives it up.
pub fn target_answered(server: &Server, accepted: bool) {
    if server.replication.failover_state() != State::InProgress {
        return;
    }
    if accepted {
        clear(server);
    } else {
        abort(server, "Failover target rejected psync request");
    }
}

/// Run by every cron tick while waiting (Redis's updateFailoverStatus): fails over to the
/// replica once it acknowledged the whole stream, or when the time is up with FORCE; gives
/// up when it is up without.
pub fn cron(server: &Server) {
    let replication = &server.replication;
    let mut failover = replication.failover();
    if failover.state != State::WaitForSync {
        return;
    }
    if failover.end_ms != 0 && failover.end_ms <= now_ms() {
        if !failover.force {
            drop(failover);
            abort(server, "Replica never caught up before timeout");
            return;
        }
        let target = failover.target.clone().expect("FORCE needs a target");
        tracing::info!(
            "FAILOVER to {}:{} time out exceeded, failing over.",
            target.host,
            target.port
        );
        failover.state = State::InProgress;
        drop(failover);
        replication.set_target(server, Some(target));
        return;
    }
    let offset = server.store.notifier.repl.lock().offset;
    let caught_up = replication.replicas().iter().find_map(|r| {
        let wanted = match &failover.target {
            Some(target) => r.ip == target.host && r.port == target.port,
            None => true,
        };
        (wanted && r.ack_offset.load(Ordering::Relaxed) == offset).then(|| Target {
            host: r.ip.clone(),
            port: r.port,
        })
    });
    let Some(target) = caught_up else {
        return;
    };
    tracing::info!(
        "Failover target {}:{} is synced, failing over.",
        target.host,
        target.port
    );
    failover.state = State::InProgress;
    failover.target = Some(target.clone());
    drop(failover);
    replication.set_target(server, Some(target));
}
