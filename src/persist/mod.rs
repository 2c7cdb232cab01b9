//! Persistence beside the keyspace: the RDB format, snapshots (SAVE, BGSAVE in a forked
//! child, save points, shutdown) and loading at start.

pub mod aof;
mod blobs;
mod child;
mod lzf;
pub mod rdb;
pub mod snapshot;

pub use snapshot::Snapshots;
