//! Oxidis: a Redis-compatible in-memory server.

pub mod acl;
pub mod alloc;
pub mod blocking;
pub mod client;
pub mod commands;
pub mod config;
pub mod embedded;
pub mod fuzzing;
pub mod mailbox;
pub mod persist;
pub mod protocol;
pub mod pubsub;
pub mod replication;
pub mod scripting;
pub mod server;
pub mod store;
pub mod timer;
pub mod tracking;
pub mod util;
