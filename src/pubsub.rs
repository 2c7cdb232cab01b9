//! The pub/sub hub: channel -> subscribers, pattern -> subscribers, shard channel ->
//! subscribers. A message is encoded once per protocol and queued on each subscriber's own
//! connection (`ClientHandle::deliver`), so a publisher never waits for a subscriber; a
//! subscriber that stops reading is disconnected by its output buffer limit instead of
//! growing memory.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use crate::client::{ClientHandle, OutputLimits};
use crate::protocol::{Protocol, Reply};
use crate::util::glob_match;

/// The three subscription spaces; the discriminant indexes per-space arrays.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Space {
    Channel,
    Pattern,
    Shard,
}

type Subscribers = HashMap<Bytes, Vec<Arc<ClientHandle>>>;

#[derive(Default)]
pub struct Hub {
    spaces: [RwLock<Subscribers>; 3],
    /// `client-output-buffer-limit pubsub`.
    pub limits: OutputLimits,
}

/// One message, encoded lazily once per protocol for all its receivers.
struct Frame<'a> {
    parts: &'a [&'a [u8]],
    encoded: [Option<Bytes>; 2],
}

impl Frame<'_> {
    fn for_protocol(&mut self, protocol: Protocol) -> Bytes {
        let slot = (protocol == Protocol::Resp3) as usize;
        self.encoded[slot]
            .get_or_insert_with(|| {
                let size: usize = self.parts.iter().map(|p| p.len() + 16).sum();
                let mut reply = Reply::with_capacity(protocol, size + 8);
                reply.push(self.parts.len());
                for part in self.parts {
                    reply.bulk(part);
                }
                Bytes::from(reply.buf)
            })
            .clone()
    }
}

impl Hub {
    fn read(&self, space: Space) -> RwLockReadGuard<'_, Subscribers> {
        self.spaces[space as usize]
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, space: Space) -> RwLockWriteGuard<'_, Subscribers> {
        self.spaces[space as usize]
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a subscriber; the caller has checked that it was not subscribed to `name` yet.
    pub fn subscribe(&self, space: Space, name: &Bytes, client: &Arc<ClientHandle>) {
        self.write(space)
            .entry(name.clone())
            .or_default()
            .push(client.clone());
    }

    pub fn unsubscribe(&self, space: Space, name: &[u8], client: u64) {
        let mut subscribers = self.write(space);
        if let Some(list) = subscribers.get_mut(name) {
            list.retain(|c| c.id != client);
            if list.is_empty() {
                subscribers.remove(name);
            }
        }
    }

    /// What client `id` is subscribed to in `space`.
    pub fn subscriptions_of(&self, space: Space, id: u64) -> Vec<Bytes> {
        self.read(space)
            .iter()
            .filter(|(_, subscribers)| subscribers.iter().any(|c| c.id == id))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Sends `message` to the subscribers of `channel` and, unless sharded, of every matching
    /// pattern; returns how many deliveries were made, as PUBLISH replies.
    pub fn publish(&self, channel: &[u8], message: &[u8], sharded: bool) -> usize {
        let limits = self.limits.get();
        let mut receivers = 0;
        let (space, kind): (Space, &[u8]) = if sharded {
            (Space::Shard, b"smessage")
        } else {
            (Space::Channel, b"message")
        };
        if let Some(clients) = self.read(space).get(channel) {
            let mut frame = Frame {
                parts: &[kind, channel, message],
                encoded: [None, None],
            };
            for client in clients {
                client.deliver(frame.for_protocol(client.protocol()), limits);
                receivers += 1;
            }
        }
        if sharded {
            return receivers;
        }
        for (pattern, clients) in self.read(Space::Pattern).iter() {
            if !glob_match(pattern, channel, false) {
                continue;
            }
            let mut frame = Frame {
                parts: &[b"pmessage", pattern, channel, message],
                encoded: [None, None],
            };
            for client in clients {
                client.deliver(frame.for_protocol(client.protocol()), limits);
                receivers += 1;
            }
        }
        receivers
    }

    /// Names with at least one subscriber, optionally only those matching `pattern`.
    pub fn active(&self, space: Space, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.read(space)
            .keys()
            .filter(|name| pattern.is_none_or(|p| glob_match(p, name, false)))
            .cloned()
            .collect()
    }

    pub fn subscriber_count(&self, space: Space, name: &[u8]) -> usize {
        self.read(space).get(name).map_or(0, Vec::len)
    }

    /// Distinct subscribed names in a space (PUBSUB NUMPAT counts patterns this way).
    pub fn len(&self, space: Space) -> usize {
        self.read(space).len()
    }

    pub fn is_empty(&self) -> bool {
        [Space::Channel, Space::Pattern, Space::Shard]
            .iter()
            .all(|&space| self.len(space) == 0)
    }
}
