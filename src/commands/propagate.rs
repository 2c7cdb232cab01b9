//! What the append-only file logs and replicas are sent for a command that changed data: the command as it came,
//! or the deterministic form Redis propagates, so that replaying the log rebuilds the same
//! data at any later time. Relative expiry times become absolute, float increments become the
//! value they produced, random pops name what they took, blocking forms become plain ones.
//! Handlers that alone know the outcome set `Ctx::log_as`; the rest is read back here from
//! the keyspace after the command ran.

use bytes::Bytes;

use super::Ctx;
use crate::client::Client;
use crate::server::Server;
use crate::store::Value;
use crate::util::eq_ignore_case;

impl Ctx<'_> {
    /// Logs this command as `args` instead of as it was called; also logs it when it changed
    /// nothing (FLUSHDB on an empty database, as Redis's forceCommandPropagation).
    pub fn log_as(&mut self, args: Vec<Bytes>) {
        if self.server.store.notifier.propagating() {
            self.client.log_as = Some(Box::new(vec![args]));
        }
    }

    /// Logs `args` among the commands this one is logged as (Redis's alsoPropagate, with the
    /// command's own propagation prevented): a command that logs nothing this way is not
    /// logged at all, one that logs several has them logged inside MULTI/EXEC.
    pub fn log_also(&mut self, args: Vec<Bytes>) {
        if self.server.store.notifier.propagating() {
            self.client
                .log_as
                .get_or_insert_with(Default::default)
                .push(args);
        }
    }

    /// Whether commands are being logged: what to log need not be built otherwise.
    pub fn logging(&self) -> bool {
        self.server.store.notifier.propagating()
    }

    /// Logs nothing for this command unless `log_also` adds something.
    pub fn log_nothing(&mut self) {
        if self.server.store.notifier.propagating() {
            self.client.log_as.get_or_insert_with(Default::default);
        }
    }
}

/// Logs a command that changed data in database `db`. Inside EXEC, the first one logged is
/// preceded by MULTI (see `exec_started`/`exec_finished`).
pub fn log(server: &Server, client: &mut Client, db: usize, name: &str, args: &[Bytes]) {
    let notifier = &server.store.notifier;
    let mut woff = 0;
    // What the master sent goes on to our replicas as it came (see `replication::replica`).
    let from_master = client.is_master;
    let mut feed = |args: &[&[u8]]| match from_master {
        true => notifier.aof.feed(db, args),
        false => woff = notifier.propagate(db, args),
    };
    let logged = client.log_as.take();
    if logged.as_ref().is_some_and(|commands| commands.is_empty()) {
        return;
    }
    if client.exec_logged == Some(false) {
        feed(&[b"MULTI"]);
        client.exec_logged = Some(true);
    }
    match logged {
        Some(commands) => {
            let wrap = commands.len() > 1 && client.exec_logged.is_none();
            if wrap {
                feed(&[b"MULTI"]);
            }
            for command in commands.iter() {
                feed(&parts(command));
            }
            if wrap {
                feed(&[b"EXEC"]);
            }
        }
        None => feed(&parts(
            deterministic(server, db, name, args)
                .as_deref()
                .unwrap_or(args),
        )),
    }
    client.woff = woff;
}

fn parts(args: &[Bytes]) -> Vec<&[u8]> {
    args.iter().map(|a| &a[..]).collect()
}

pub fn exec_started(client: &mut Client) {
    client.exec_logged = Some(false);
}

pub fn exec_finished(server: &Server, client: &mut Client, db: usize) {
    if client.exec_logged.take() == Some(true) {
        if client.is_master {
            server.store.notifier.aof.feed(db, &[b"EXEC"]);
        } else {
            client.woff = server.store.notifier.propagate(db, &[b"EXEC"]);
        }
    }
}

fn bytes(text: impl Into<String>) -> Bytes {
    Bytes::from(text.into())
}

/// A key's value and expiry after the command, if it still exists.
type Found<'a> = Option<(&'a Value, Option<u64>)>;

/// The form to log for commands whose effect depends on when or how they ran; None to log
/// the command as called.
fn deterministic(server: &Server, db: usize, name: &str, args: &[Bytes]) -> Option<Vec<Bytes>> {
    let key = args.get(1)?;
    let entry = |visit: &mut dyn FnMut(Found<'_>)| {
        let db = server.store.db(db);
        let mut locked = db.lock(key);
        match locked.peek(key) {
            Some(entry) => {
                let at = entry.expire_at();
                visit(Some((&entry.value, at)))
            }
            None => visit(None),
        }
    };
    let mut out = None;
    match name {
        "expire" | "pexpire" | "expireat" | "pexpireat" | "getex" => entry(&mut |found| {
            out = Some(match found {
                None => vec![bytes("DEL"), key.clone()],
                Some((_, Some(at))) => vec![bytes("PEXPIREAT"), key.clone(), bytes(at.to_string())],
                Some((_, None)) => vec![bytes("PERSIST"), key.clone()],
            });
        }),
        "set" | "setex" | "psetex" => {
            let value = if name == "set" { &args[2] } else { &args[3] };
            entry(&mut |found| {
                let mut logged = vec![bytes("SET"), key.clone(), value.clone()];
                if let Some((_, Some(at))) = found {
                    logged.extend([bytes("PXAT"), bytes(at.to_string())]);
                }
                out = Some(logged);
            });
        }
        // GETSET is SET with a reply of its own, as Redis propagates it.
        "getset" => out = Some(vec![bytes("SET"), key.clone(), args[2].clone()]),
        "incrbyfloat" => entry(&mut |found| {
            if let Some((Value::Str(s), _)) = found {
                let value = Bytes::copy_from_slice(s.bytes(&mut itoa::Buffer::new()));
                out = Some(vec![bytes("SET"), key.clone(), value, bytes("KEEPTTL")]);
            }
        }),
        "hincrbyfloat" => entry(&mut |found| {
            if let Some((Value::Hash(hash), _)) = found
                && let Some(value) = hash.get(&args[2])
            {
                let value = Bytes::copy_from_slice(value);
                out = Some(vec![bytes("HSET"), key.clone(), args[2].clone(), value]);
            }
        }),
        "restore" => entry(&mut |found| {
            out = Some(match found {
                None => vec![bytes("DEL"), key.clone()],
                Some((_, at)) => {
                    let mut logged = vec![
                        bytes("RESTORE"),
                        key.clone(),
                        bytes(at.unwrap_or(0).to_string()),
                        args[3].clone(),
                        bytes("REPLACE"),
                        bytes("ABSTTL"),
                    ];
                    let options = args[4..]
                        .iter()
                        .filter(|a| !eq_ignore_case(a, "replace") && !eq_ignore_case(a, "absttl"));
                    logged.extend(options.cloned());
                    logged
                }
            });
        }),
        "blmove" => out = Some([&[bytes("LMOVE")], &args[1..5]].concat()),
        "brpoplpush" => out = Some([&[bytes("RPOPLPUSH")], &args[1..3]].concat()),
        _ => {}
    }
    out
}
