//! What the append-only file logs and replicas are sent for a command that changed data: the command as it came,
//! or the deterministic form Redis propagates, so that replaying the log rebuilds the same
//! data at any later time. Relative expiry times become absolute, float increments become the
//! value they produced, random pops name what they took, blocking forms become plain ones.
//! Handlers that alone know the outcome set `Ctx::log_as`; the rest is read back here from
//! the keyspace after the command ran.

use bytes::Bytes;

use super::Ctx;
use crate::client::{Client, TxLog};
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

    /// Sends this command to replicas but not to the append-only file (PUBLISH: replicas'
    /// subscribers hear it too, while a restart has no one to tell), as Redis's
    /// `forceCommandPropagation(c, PROPAGATE_REPL)`. Only a top master does: a replica
    /// passes on its master's stream.
    pub fn replicate_only(&mut self, args: &[Bytes]) {
        let notifier = &self.server.store.notifier;
        if notifier.repl.is_on() && !self.client.is_master && !self.server.replication.is_replica()
        {
            let parts: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
            self.client.woff = notifier.repl.feed(Some(self.client.db), &parts);
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

/// Logs a command that changed data in database `db`. Inside a transaction (EXEC, a script)
/// the first command is held back: alone it goes out as it is, with others the lot is wrapped
/// in MULTI/EXEC (see `exec_started`/`exec_finished`), as Redis 7 propagates.
pub fn log(server: &Server, client: &mut Client, db: usize, name: &str, args: &[Bytes]) {
    let mut commands = match client.log_as.take() {
        Some(commands) => *commands,
        None => vec![deterministic(server, db, name, args).unwrap_or_else(|| args.to_vec())],
    };
    if commands.is_empty() {
        return;
    }
    let mut feed = Feed::new(server, client);
    let tx = client.exec_logged.take();
    client.exec_logged = match tx {
        None => {
            let wrap = commands.len() > 1;
            if wrap {
                feed.send(db, &[b"MULTI"]);
            }
            feed.all(db, &commands);
            if wrap {
                feed.send(db, &[b"EXEC"]);
            }
            None
        }
        Some(TxLog::Empty) if commands.len() == 1 => {
            Some(TxLog::First(db, commands.pop().expect("one")))
        }
        Some(TxLog::Empty) => {
            feed.send(db, &[b"MULTI"]);
            feed.all(db, &commands);
            Some(TxLog::Wrapped)
        }
        Some(TxLog::First(first_db, first)) => {
            feed.send(first_db, &[b"MULTI"]);
            feed.all(first_db, std::slice::from_ref(&first));
            feed.all(db, &commands);
            Some(TxLog::Wrapped)
        }
        Some(TxLog::Wrapped) => {
            feed.all(db, &commands);
            Some(TxLog::Wrapped)
        }
    };
    feed.done(client);
}

/// Where logged commands go: the AOF and replicas, or only the AOF for what this replica's
/// master sent (that goes on to our replicas as it came, see `replication::replica`).
struct Feed<'a> {
    notifier: &'a crate::store::notify::Notifier,
    from_master: bool,
    woff: Option<u64>,
}

impl<'a> Feed<'a> {
    fn new(server: &'a Server, client: &Client) -> Feed<'a> {
        Feed {
            notifier: &server.store.notifier,
            from_master: client.is_master,
            woff: None,
        }
    }

    fn send(&mut self, db: usize, args: &[&[u8]]) {
        if self.from_master {
            self.notifier.aof.feed(db, args);
        } else {
            self.woff = Some(self.notifier.propagate(db, args));
        }
    }

    fn all(&mut self, db: usize, commands: &[Vec<Bytes>]) {
        for command in commands {
            let parts: Vec<&[u8]> = command.iter().map(|a| &a[..]).collect();
            self.send(db, &parts);
        }
    }

    /// Records the stream offset after the client's writes, for WAIT.
    fn done(self, client: &mut Client) {
        if let Some(woff) = self.woff {
            client.woff = woff;
        }
    }
}

pub fn exec_started(client: &mut Client) {
    client.exec_logged = Some(TxLog::Empty);
}

pub fn exec_finished(server: &Server, client: &mut Client, db: usize) {
    let mut feed = Feed::new(server, client);
    match client.exec_logged.take() {
        Some(TxLog::First(first_db, first)) => feed.all(first_db, std::slice::from_ref(&first)),
        Some(TxLog::Wrapped) => feed.send(db, &[b"EXEC"]),
        Some(TxLog::Empty) | None => {}
    }
    feed.done(client);
}

fn has_option(args: &[Bytes], options: &[&str]) -> bool {
    args.iter()
        .any(|a| options.iter().any(|o| eq_ignore_case(a, o)))
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
        // An expiry becomes PXAT; SET without one is logged as called, less GET (Redis's
        // `setGenericCommand`).
        "set" if !has_option(&args[3..], &["ex", "px", "exat", "pxat"]) => {
            let options = args[3..].iter().filter(|a| !eq_ignore_case(a, "get"));
            out = Some(args[..3].iter().chain(options).cloned().collect());
        }
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
        // A relative TTL becomes absolute (ABSTTL added), as Redis rewrites it.
        "restore" => entry(&mut |found| {
            out = Some(match found {
                None => vec![bytes("DEL"), key.clone()],
                Some((_, None)) => args.to_vec(),
                Some((_, Some(at))) => {
                    let mut logged = args.to_vec();
                    logged[2] = bytes(at.to_string());
                    if !has_option(&args[4..], &["absttl"]) {
                        logged.push(bytes("ABSTTL"));
                    }
                    logged
                }
            });
        }),
        "getdel" => out = Some(vec![bytes("DEL"), key.clone()]),
        "blmove" => out = Some([&[bytes("LMOVE")], &args[1..5]].concat()),
        "brpoplpush" => out = Some([&[bytes("RPOPLPUSH")], &args[1..3]].concat()),
        _ => {}
    }
    out
}
