//! ACL LOG: the most recent refusals, with similar ones grouped (Redis's `addACLLogEntry`).

use std::collections::VecDeque;

use bytes::Bytes;

/// Entries this close in time (ms) with the same reason, context, object and user are one.
const GROUPING_WINDOW_MS: u64 = 60_000;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Command,
    Key,
    Channel,
    Auth,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Command => "command",
            Reason::Key => "key",
            Reason::Channel => "channel",
            Reason::Auth => "auth",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Toplevel,
    Multi,
    Lua,
}

impl Context {
    pub fn name(self) -> &'static str {
        match self {
            Context::Toplevel => "toplevel",
            Context::Multi => "multi",
            Context::Lua => "lua",
        }
    }
}

pub struct LogEntry {
    pub count: u64,
    pub reason: Reason,
    pub context: Context,
    /// The command, key, channel, or AUTH.
    pub object: Bytes,
    pub username: Bytes,
    pub time_ms: u64,
    /// CLIENT INFO of the client, the last one when grouped.
    pub client_info: String,
}

#[derive(Default)]
pub struct SecurityLog {
    /// Newest first.
    entries: VecDeque<LogEntry>,
}

impl SecurityLog {
    /// Adds `entry`, or counts it on a similar one among the ten newest (which moves first).
    pub fn add(&mut self, entry: LogEntry, max_len: usize) {
        let similar = self.entries.iter().take(10).position(|e| {
            e.reason == entry.reason
                && e.context == entry.context
                && e.time_ms.abs_diff(entry.time_ms) <= GROUPING_WINDOW_MS
                && e.object == entry.object
                && e.username == entry.username
        });
        match similar {
            Some(index) => {
                let mut existing = self.entries.remove(index).expect("found above");
                existing.count += 1;
                existing.time_ms = entry.time_ms;
                existing.client_info = entry.client_info;
                self.entries.push_front(existing);
            }
            None => {
                self.entries.push_front(entry);
                self.entries.truncate(max_len);
            }
        }
    }

    pub fn reset(&mut self) {
        self.entries.clear();
    }

    pub fn newest(&self, count: usize) -> impl Iterator<Item = &LogEntry> {
        self.entries.iter().take(count)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
