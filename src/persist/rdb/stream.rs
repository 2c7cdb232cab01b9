//! Streams in RDB (types 15 and 19): the nodes as their listpacks, the counters, then each
//! consumer group with its pending entries and consumers, as Redis 7.0's rdbSaveObject writes
//! them. Type 15 (Redis 5 to 6.2) lacks the first ID, the deleted-ID mark, the added count and
//! the groups' read counters; they are derived as Redis derives them.

use std::io::{self, Read};
use std::sync::Arc;

use super::{Decoder, Encoder};
use crate::store::stream::{Counters, ENTRIES_READ_UNKNOWN, Group, Nack, Stream, StreamId};

pub const STREAM_LISTPACKS: u8 = 15;
pub const STREAM_LISTPACKS_2: u8 = 19;

impl Encoder {
    fn id_parts(&mut self, id: StreamId) {
        self.len(id.ms);
        self.len(id.seq);
    }

    pub(super) fn stream(&mut self, stream: &Stream) {
        self.len(stream.node_count() as u64);
        for (master_id, lp) in stream.nodes() {
            self.string(&master_id.to_be_bytes());
            self.string(lp.as_bytes());
        }
        let c = &stream.counters;
        self.len(c.length);
        self.id_parts(c.last_id);
        self.id_parts(c.first_id);
        self.id_parts(c.max_deleted);
        self.len(c.entries_added);
        let groups = stream.groups();
        self.len(groups.map_or(0, |g| g.len()) as u64);
        for (name, group) in groups.into_iter().flatten() {
            self.string(name);
            self.id_parts(group.last_id);
            self.len(group.entries_read as u64);
            self.len(group.pel.len() as u64);
            for (id, nack) in group.pel.iter() {
                self.buf.extend(id.to_be_bytes());
                self.buf.extend(nack.delivery_time.to_le_bytes());
                self.len(nack.delivery_count);
            }
            self.len(group.consumers.len() as u64);
            for (name, consumer) in &group.consumers {
                self.string(name);
                self.buf.extend(consumer.seen_time.to_le_bytes());
                self.len(consumer.pel.len() as u64);
                for id in consumer.pel.keys() {
                    self.buf.extend(id.to_be_bytes());
                }
            }
        }
    }
}

/// What can go wrong reading a stream: a short or unreadable input, or parts that contradict
/// each other.
pub enum StreamError {
    Io(io::Error),
    Corrupt,
}

impl From<io::Error> for StreamError {
    fn from(e: io::Error) -> StreamError {
        StreamError::Io(e)
    }
}

impl<R: Read> Decoder<R> {
    fn id_parts(&mut self) -> io::Result<StreamId> {
        Ok(StreamId::new(self.len()?, self.len()?))
    }

    fn raw_id(&mut self) -> io::Result<StreamId> {
        let bytes = self.bytes(16)?;
        Ok(StreamId::from_be_bytes(&bytes).expect("16 bytes"))
    }

    fn millis(&mut self) -> io::Result<i64> {
        Ok(i64::from_le_bytes(self.bytes(8)?.try_into().expect("8")))
    }

    pub(super) fn stream(&mut self, kind: u8) -> Result<Stream, StreamError> {
        let node_count = self.len()?;
        let mut nodes = Vec::new();
        for _ in 0..node_count {
            let key = self.string()?;
            let master_id = StreamId::from_be_bytes(&key).ok_or(StreamError::Corrupt)?;
            nodes.push((master_id, self.string()?));
        }
        let length = self.len()?;
        let last_id = self.id_parts()?;
        let v2 = kind == STREAM_LISTPACKS_2;
        let mut counters = Counters {
            length,
            last_id,
            ..Counters::default()
        };
        if v2 {
            counters.first_id = self.id_parts()?;
            counters.max_deleted = self.id_parts()?;
            counters.entries_added = self.len()?;
        } else {
            counters.entries_added = length;
        }
        let mut stream = Stream::from_nodes(nodes, counters).ok_or(StreamError::Corrupt)?;
        if !v2 {
            stream.refresh_first_id();
        }
        for _ in 0..self.len()? {
            let name = self.string()?;
            let last_id = self.id_parts()?;
            let entries_read = if v2 {
                self.len()? as i64
            } else {
                stream.counters.entries_up_to(last_id)
            };
            let mut group = Group::new(last_id, entries_read.max(ENTRIES_READ_UNKNOWN));
            let mut unowned = Vec::new();
            for _ in 0..self.len()? {
                let id = self.raw_id()?;
                let delivery_time = self.millis()?;
                let delivery_count = self.len()?;
                unowned.push((id, delivery_time, delivery_count));
            }
            let mut owners: std::collections::BTreeMap<StreamId, Arc<[u8]>> = Default::default();
            for _ in 0..self.len()? {
                let consumer_name = self.string()?;
                let seen_time = self.millis()?;
                let (name, created) = group.consumer_or_new(&consumer_name, seen_time);
                if !created {
                    return Err(StreamError::Corrupt);
                }
                for _ in 0..self.len()? {
                    let id = self.raw_id()?;
                    if owners.insert(id, name.clone()).is_some() {
                        return Err(StreamError::Corrupt);
                    }
                }
            }
            // Every pending entry belongs to exactly one consumer, and only pending entries
            // are owned.
            if owners.len() != unowned.len() {
                return Err(StreamError::Corrupt);
            }
            for (id, delivery_time, delivery_count) in unowned {
                let consumer = owners.get(&id).ok_or(StreamError::Corrupt)?.clone();
                let nack = Nack {
                    delivery_time,
                    delivery_count,
                    consumer: consumer.clone(),
                };
                if group.pel.insert(id, nack).is_some() {
                    return Err(StreamError::Corrupt);
                }
                group.assign(id, &consumer);
            }
            if !stream.create_group(&name, group) {
                return Err(StreamError::Corrupt);
            }
        }
        Ok(stream)
    }
}
