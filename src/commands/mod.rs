//! Commands: the table (`table.rs`: each row pairs a name with its handler, the rest comes from
//! Redis's command reference in `spec.rs`), dispatch (`dispatch.rs`: the checks, MULTI queuing,
//! the keyspace gate, bookkeeping), helpers for handlers' arguments (`args.rs`), and one file
//! per family. What a handler sees is `Ctx`, defined here.

pub mod acl;
mod args;
mod bitmaps;
mod command;
mod config;
mod connection;
mod dispatch;
mod geo;
mod hashes;
mod hyperloglog;
mod keys;
mod lists;
mod memory;
pub mod meta;
mod module;
mod persistence;
mod propagate;
mod pubsub;
mod replication;
mod scripting;
mod server;
mod sets;
mod sort;
mod spec;
mod streams;
mod strings;
mod table;
mod transactions;
mod zsets;

use std::borrow::Cow;

use bytes::Bytes;

use crate::blocking::BlockRequest;
use crate::client::Client;
use crate::protocol::Reply;
use crate::server::Server;
use crate::store::{Class, Db};

pub use args::*;
pub use dispatch::{
    ScriptRules, auth_required, call_from_script, effective_flags, execute, execute_chained,
    execute_deferred, forget_client, paused_by_write_pause, prefetch_keys,
};
pub use table::{
    Access, Command, CommandTable, KeyFlags, TxRole, unknown_command_error,
    unknown_subcommand_error,
};

/// An error reply, with its code (`ERR`, `WRONGTYPE` ...) as Redis writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub Cow<'static, str>);

pub type CmdResult = Result<(), Error>;
pub type Handler = fn(&mut Ctx, &[Bytes]) -> CmdResult;

impl From<String> for Error {
    fn from(s: String) -> Error {
        Error(Cow::Owned(s))
    }
}

impl From<&'static str> for Error {
    fn from(s: &'static str) -> Error {
        Error(Cow::Borrowed(s))
    }
}

pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const NOT_FLOAT: &str = "ERR value is not a valid float";
pub const SYNTAX: &str = "ERR syntax error";
pub const NO_SUCH_KEY: &str = "ERR no such key";
pub const OVERFLOW: &str = "ERR increment or decrement would overflow";
pub const INVALID_EXPIRE: &str = "ERR invalid expire time in '{}' command";
pub const DB_OUT_OF_RANGE: &str = "ERR DB index is out of range";
pub(crate) const MISCONF: &str = "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. Commands that may modify the data set are disabled, because this instance is configured to report errors during writes if RDB snapshotting fails (stop-writes-on-bgsave-error option). Please check the Redis logs for details about the RDB error.";

/// What a handler sees: the server, the calling client, and the reply being written.
pub struct Ctx<'a> {
    pub server: &'a Server,
    pub client: &'a mut Client,
    pub reply: &'a mut Reply,
    pub command: &'a Command,
}

impl<'a> Ctx<'a> {
    /// The client's selected database; borrowed from the server, not from the context.
    pub fn db(&self) -> &'a Db {
        self.server.store.db(self.client.db)
    }

    /// The modify hook: every handler that changes a key calls this once per key.
    pub fn modified(&self, key: &[u8], class: Class, event: &str) {
        self.server
            .store
            .notifier
            .modified(self.client.db, key, class, event);
    }

    /// A change with no keyspace event (see `Notifier::modified_quietly`).
    pub fn modified_quietly(&self, key: &[u8]) {
        self.server
            .store
            .notifier
            .modified_quietly(self.client.db, key);
    }

    /// Asks to wait until one of `keys` gets data (0: no deadline). The caller has found
    /// nothing to serve and checked `client.deny_blocking`.
    pub fn block(&mut self, keys: Vec<Bytes>, deadline_ms: u64) {
        self.client.wants_block = Some(Box::new(BlockRequest {
            keys,
            deadline_ms,
            args: None,
            keep_serving: false,
        }));
    }

    /// Blocks a stream read: woken, it runs `args`, and finding nothing new it leaves the
    /// stream to the next waiter (see `BlockRequest`).
    pub fn block_reading(&mut self, keys: Vec<Bytes>, deadline_ms: u64, args: Vec<Bytes>) {
        self.client.wants_block = Some(Box::new(BlockRequest {
            keys,
            deadline_ms,
            args: Some(args),
            keep_serving: true,
        }));
    }

    /// The command's name as errors quote it.
    pub fn name(&self) -> &str {
        &self.command.name
    }
}
