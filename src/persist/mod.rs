//! Persistence beside the keyspace: the RDB format, snapshots (SAVE, BGSAVE in a forked
//! child, save points, shutdown) and loading at start.

pub mod aof;
mod blobs;
pub mod child;
mod lzf;
pub mod rdb;
pub mod snapshot;

pub use snapshot::Snapshots;
