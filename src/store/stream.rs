//! Streams, laid out as Redis lays them out (t_stream.c): an ordered map from each node's
//! master ID to a listpack of up to `stream-node-max-entries` entries and
//! `stream-node-max-bytes` bytes. Redis keys the nodes in a radix tree of 128-bit big-endian
//! IDs; a B-tree keyed by the ID orders them the same and costs about as much per node.
//!
//! A node starts with its master entry, `count, deleted, num-fields, field..., 0`; each entry
//! is then `flags, ms-delta, seq-delta, [num-fields, field, value ... | value ...], lp-count`,
//! the field names omitted when they are the master entry's (SAMEFIELDS). Deleting marks an
//! entry's flags and leaves it in place, as Redis does. Keeping nodes in this exact format
//! makes RDB and DUMP a copy (see `crate::store::listpack`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::id_map::IdMap;
use super::listpack::{Element, Listpack};

const FLAG_DELETED: i64 = 1;
const FLAG_SAMEFIELDS: i64 = 2;
/// Redis's STREAM_LISTPACK_MAX_SIZE: no node, nor the fields of one entry, beyond 1 GB.
const NODE_MAX_SIZE: usize = 1 << 30;
/// A group's entries-read counter that is not known (Redis's SCG_INVALID_ENTRIES_READ).
pub const ENTRIES_READ_UNKNOWN: i64 = -1;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// The next ID, None past the last one.
    pub fn incr(self) -> Option<StreamId> {
        match (self.ms, self.seq) {
            (u64::MAX, u64::MAX) => None,
            (ms, u64::MAX) => Some(StreamId::new(ms + 1, 0)),
            (ms, seq) => Some(StreamId::new(ms, seq + 1)),
        }
    }

    /// The previous ID, None before 0-0.
    pub fn decr(self) -> Option<StreamId> {
        match (self.ms, self.seq) {
            (0, 0) => None,
            (ms, 0) => Some(StreamId::new(ms - 1, u64::MAX)),
            (ms, seq) => Some(StreamId::new(ms, seq - 1)),
        }
    }

    pub fn is_zero(self) -> bool {
        self == StreamId::MIN
    }

    /// The 128-bit big-endian form Redis uses as radix-tree key and in RDB PELs.
    pub fn to_be_bytes(self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.ms.to_be_bytes());
        out[8..].copy_from_slice(&self.seq.to_be_bytes());
        out
    }

    pub fn from_be_bytes(bytes: &[u8]) -> Option<StreamId> {
        let bytes: &[u8; 16] = bytes.try_into().ok()?;
        let ms = u64::from_be_bytes(bytes[..8].try_into().ok()?);
        let seq = u64::from_be_bytes(bytes[8..].try_into().ok()?);
        Some(StreamId::new(ms, seq))
    }

    /// `<ms>-<seq>`.
    pub fn to_text(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        out.extend_from_slice(itoa::Buffer::new().format(self.ms).as_bytes());
        out.push(b'-');
        out.extend_from_slice(itoa::Buffer::new().format(self.seq).as_bytes());
        out
    }
}

/// Node size limits, from `stream-node-max-bytes` and `stream-node-max-entries` (0: none).
#[derive(Clone, Copy)]
pub struct NodeLimits {
    pub max_bytes: usize,
    pub max_entries: usize,
}

/// An entry delivered to a consumer and not yet acknowledged.
#[derive(Clone)]
pub struct Nack {
    pub delivery_time: i64,
    pub delivery_count: u64,
    pub consumer: Arc<[u8]>,
}

#[derive(Clone)]
pub struct Consumer {
    pub seen_time: i64,
    pub pel: IdMap<()>,
}

#[derive(Clone)]
pub struct Group {
    pub last_id: StreamId,
    /// Entries the group has read, or ENTRIES_READ_UNKNOWN.
    pub entries_read: i64,
    pub pel: IdMap<Nack>,
    pub consumers: BTreeMap<Arc<[u8]>, Consumer>,
}

impl Group {
    pub fn new(last_id: StreamId, entries_read: i64) -> Group {
        Group {
            last_id,
            entries_read,
            pel: IdMap::default(),
            consumers: BTreeMap::new(),
        }
    }

    /// The consumer named `name`, created if absent (true when it was).
    pub fn consumer_or_new(&mut self, name: &[u8], now: i64) -> (Arc<[u8]>, bool) {
        if let Some((key, _)) = self.consumers.get_key_value(name) {
            return (key.clone(), false);
        }
        let key: Arc<[u8]> = name.into();
        let consumer = Consumer {
            seen_time: now,
            pel: IdMap::default(),
        };
        self.consumers.insert(key.clone(), consumer);
        (key, true)
    }

    /// Removes a consumer and its pending entries; how many it had.
    pub fn remove_consumer(&mut self, name: &[u8]) -> Option<usize> {
        let consumer = self.consumers.remove(name)?;
        for id in consumer.pel.keys() {
            self.pel.remove(id);
        }
        Some(consumer.pel.len())
    }

    /// Drops the pending entry `id` from the group and its owner.
    pub fn ack(&mut self, id: StreamId) -> bool {
        let Some(nack) = self.pel.remove(id) else {
            return false;
        };
        if let Some(owner) = self.consumers.get_mut(&nack.consumer) {
            owner.pel.remove(id);
        }
        true
    }

    /// Makes `consumer` own the pending entry `id` (it must exist), moving it from its owner.
    pub fn assign(&mut self, id: StreamId, consumer: &Arc<[u8]>) {
        let Some(nack) = self.pel.get_mut(id) else {
            return;
        };
        if nack.consumer != *consumer {
            if let Some(owner) = self.consumers.get_mut(&nack.consumer) {
                owner.pel.remove(id);
            }
            nack.consumer = consumer.clone();
        }
        if let Some(owner) = self.consumers.get_mut(consumer) {
            owner.pel.insert(id, ());
        }
    }
}

/// The stream's counters, apart from its nodes and groups so that a group can be changed while
/// they are read.
#[derive(Clone, Copy, Default)]
pub struct Counters {
    pub length: u64,
    pub last_id: StreamId,
    pub first_id: StreamId,
    pub max_deleted: StreamId,
    pub entries_added: u64,
}

impl Counters {
    /// Whether deleted entries may lie in `start..=end` (Redis's streamRangeHasTombstones).
    pub fn has_tombstones(&self, start: StreamId, end: StreamId) -> bool {
        if self.length == 0 || self.max_deleted.is_zero() || self.first_id > self.max_deleted {
            return false;
        }
        start <= self.max_deleted && self.max_deleted <= end
    }

    /// How many entries were added up to `id`, if that can be known (Redis's
    /// streamEstimateDistanceFromFirstEverEntry).
    pub fn entries_up_to(&self, id: StreamId) -> i64 {
        if self.entries_added == 0 {
            return 0;
        }
        let added = self.entries_added as i64;
        if self.length == 0 && id <= self.last_id {
            return added;
        }
        if id == self.last_id {
            return added;
        }
        if id > self.last_id {
            return ENTRIES_READ_UNKNOWN;
        }
        if self.max_deleted.is_zero() || self.max_deleted < self.first_id {
            if id < self.first_id {
                return added - self.length as i64;
            }
            if id == self.first_id {
                return added - self.length as i64 + 1;
            }
        }
        ENTRIES_READ_UNKNOWN
    }

    /// A group's lag: entries added and not yet read by it, if that can be known.
    pub fn lag(&self, group: &Group) -> Option<i64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if group.entries_read != ENTRIES_READ_UNKNOWN
            && !self.has_tombstones(group.last_id, StreamId::MAX)
        {
            return Some(self.entries_added as i64 - group.entries_read);
        }
        let read = self.entries_up_to(group.last_id);
        (read != ENTRIES_READ_UNKNOWN).then(|| self.entries_added as i64 - read)
    }

    /// The read counter after a group read `id` (Redis's streamReplyWithRange bookkeeping).
    pub fn read_counter_after(&self, group: &Group, id: StreamId) -> i64 {
        if group.entries_read != ENTRIES_READ_UNKNOWN && !self.has_tombstones(id, StreamId::MAX) {
            group.entries_read + 1
        } else if self.entries_added > 0 {
            self.entries_up_to(id)
        } else {
            group.entries_read
        }
    }
}

#[derive(Clone, Default)]
pub struct Stream {
    nodes: BTreeMap<StreamId, Listpack>,
    pub counters: Counters,
    pub groups: Option<Box<BTreeMap<Box<[u8]>, Group>>>,
}

/// Why XADD could not add.
pub enum AddError {
    /// The ID is not above the stream's last one.
    NotGreater,
    /// The fields and values are over 1 GB together.
    TooLarge,
}

/// What XADD and XTRIM trim by.
#[derive(Clone, Copy)]
pub enum Trim {
    MaxLen(u64),
    MinId(StreamId),
}

/// The master entry of a node: where its parts are.
struct Master {
    count_pos: usize,
    deleted_pos: usize,
    fields: usize,
    /// Position of the first master field, if any.
    fields_pos: Option<usize>,
    /// Position of the first entry's flags, if any.
    first_entry: Option<usize>,
}

fn master(lp: &Listpack) -> Master {
    let count_pos = lp.first().unwrap_or(0);
    let deleted_pos = lp.next(count_pos).unwrap_or(0);
    let num_pos = lp.next(deleted_pos).unwrap_or(0);
    let fields = lp.int(num_pos).max(0) as usize;
    let mut pos = lp.next(num_pos);
    let fields_pos = if fields > 0 { pos } else { None };
    for _ in 0..fields {
        pos = pos.and_then(|p| lp.next(p));
    }
    // `pos` is the master entry's closing 0.
    let first_entry = pos.and_then(|p| lp.next(p));
    Master {
        count_pos,
        deleted_pos,
        fields,
        fields_pos,
        first_entry,
    }
}

/// One entry of a node, as found in place.
pub struct EntryRef<'a> {
    lp: &'a Listpack,
    pub id: StreamId,
    flags_pos: usize,
    deleted: bool,
    /// Fields of the entry.
    pub fields: usize,
    /// Position of the first field (or value, when the names are the master's).
    content: Option<usize>,
    master_fields: Option<usize>,
    /// Position of the next entry's flags.
    next: Option<usize>,
}

impl<'a> EntryRef<'a> {
    fn at(lp: &'a Listpack, master_id: StreamId, master: &Master, pos: usize) -> EntryRef<'a> {
        let flags = lp.int(pos);
        let ms_pos = lp.next(pos).unwrap_or(pos);
        let seq_pos = lp.next(ms_pos).unwrap_or(ms_pos);
        let id = StreamId::new(
            master_id.ms.wrapping_add(lp.int(ms_pos) as u64),
            master_id.seq.wrapping_add(lp.int(seq_pos) as u64),
        );
        let same = flags & FLAG_SAMEFIELDS != 0;
        let (fields, content, elements) = if same {
            let content = lp.next(seq_pos);
            (master.fields, content, master.fields)
        } else {
            let num_pos = lp.next(seq_pos).unwrap_or(seq_pos);
            let fields = lp.int(num_pos).max(0) as usize;
            (fields, lp.next(num_pos), 2 * fields)
        };
        // Skip the fields to the lp-count, then past it.
        let mut last = content;
        for _ in 1..elements {
            last = last.and_then(|p| lp.next(p));
        }
        let count_pos = if elements == 0 {
            content
        } else {
            last.and_then(|p| lp.next(p))
        };
        EntryRef {
            lp,
            id,
            flags_pos: pos,
            deleted: flags & FLAG_DELETED != 0,
            fields,
            content: if elements == 0 { None } else { content },
            master_fields: if same { master.fields_pos } else { None },
            next: count_pos.and_then(|p| lp.next(p)),
        }
    }

    /// The entry's fields and values, in order.
    pub fn pairs(&self) -> Pairs<'a> {
        Pairs {
            lp: self.lp,
            left: self.fields,
            content: self.content,
            master_fields: self.master_fields,
        }
    }
}

pub struct Pairs<'a> {
    lp: &'a Listpack,
    left: usize,
    content: Option<usize>,
    master_fields: Option<usize>,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (Element<'a>, Element<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let lp = self.lp;
        let here = self.content?;
        let pair = match self.master_fields {
            Some(field) => {
                self.master_fields = lp.next(field);
                self.content = lp.next(here);
                (lp.get(field), lp.get(here))
            }
            None => {
                let value = lp.next(here)?;
                self.content = lp.next(value);
                (lp.get(here), lp.get(value))
            }
        };
        Some(pair)
    }
}

/// Every entry of a node (deleted ones included), first to last.
fn node_entries<'a>(master_id: StreamId, lp: &'a Listpack) -> impl Iterator<Item = EntryRef<'a>> {
    let master = master(lp);
    let mut pos = master.first_entry;
    std::iter::from_fn(move || {
        let entry = EntryRef::at(lp, master_id, &master, pos?);
        pos = entry.next;
        Some(entry)
    })
}

/// Every entry of a node (deleted ones included), last to first: each entry ends with its
/// number of elements (lp-count), which leads back to its flags.
fn node_entries_rev<'a>(
    master_id: StreamId,
    lp: &'a Listpack,
) -> impl Iterator<Item = EntryRef<'a>> {
    let master = master(lp);
    let first = master.first_entry;
    let mut count_pos = first.and_then(|_| lp.last());
    std::iter::from_fn(move || {
        let here = count_pos?;
        let mut flags_pos = here;
        for _ in 0..lp.int(here) {
            flags_pos = lp.prev(flags_pos)?;
        }
        if flags_pos < first? {
            return None;
        }
        count_pos = if Some(flags_pos) == first {
            None
        } else {
            lp.prev(flags_pos)
        };
        Some(EntryRef::at(lp, master_id, &master, flags_pos))
    })
}

impl Stream {
    pub fn len(&self) -> u64 {
        self.counters.length
    }

    pub fn is_empty(&self) -> bool {
        self.counters.length == 0
    }

    pub fn last_id(&self) -> StreamId {
        self.counters.last_id
    }

    /// Redis counts its radix tree's inner nodes (XINFO's radix-tree-nodes, lazyfree's
    /// effort); a B-tree has none of those, so this is the number of nodes a radix tree of
    /// that many 16-byte keys roughly needs.
    pub fn radix_nodes(&self) -> usize {
        self.node_count() * 2 + 1
    }

    /// Number of nodes (XINFO's radix-tree-keys).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn nodes(&self) -> impl Iterator<Item = (StreamId, &Listpack)> {
        self.nodes.iter().map(|(id, lp)| (*id, lp))
    }

    /// Heap bytes held, for MEMORY USAGE.
    pub fn allocated(&self) -> usize {
        // A B-tree slot holds the 16-byte key and the listpack's 24-byte Vec; nodes are
        // about two-thirds full.
        const SLOT: usize = (16 + 24) * 3 / 2;
        let nodes: usize = self.nodes.values().map(|lp| lp.allocated() + SLOT).sum();
        let groups: usize = self.groups().map_or(0, |groups| {
            groups
                .iter()
                .map(|(name, group)| {
                    let consumers: usize = group
                        .consumers
                        .iter()
                        .map(|(name, c)| name.len() + SLOT + c.pel.allocated())
                        .sum();
                    name.len() + SLOT + size_of::<Group>() + group.pel.allocated() + consumers
                })
                .sum()
        });
        size_of::<Stream>() + nodes + groups
    }

    /// The ID XADD would give: `requested` as given (`seq_given`), or with its sequence
    /// generated, or the next after the last ID at `now_ms`.
    pub fn next_id(
        &self,
        requested: Option<StreamId>,
        seq_given: bool,
        now_ms: u64,
    ) -> Option<StreamId> {
        let last = self.counters.last_id;
        let id = match requested {
            Some(id) if seq_given => id,
            Some(id) if id.ms == last.ms => StreamId::new(id.ms, last.seq.checked_add(1)?),
            Some(id) => StreamId::new(id.ms, 0),
            None if now_ms > last.ms => StreamId::new(now_ms, 0),
            None => last.incr()?,
        };
        (id > last).then_some(id)
    }

    /// Appends an entry with ID `id` (above the last one, from `next_id`); `pairs` holds
    /// field, value, field, value ...
    pub fn add<T: AsRef<[u8]>>(
        &mut self,
        id: StreamId,
        pairs: &[T],
        limits: NodeLimits,
    ) -> Result<(), AddError> {
        let total: usize = pairs.iter().map(|p| p.as_ref().len()).sum();
        if total > NODE_MAX_SIZE {
            return Err(AddError::TooLarge);
        }
        let max_bytes = match limits.max_bytes {
            0 => NODE_MAX_SIZE,
            n => n.min(NODE_MAX_SIZE),
        };
        let fields = pairs.len() / 2;
        let mut tail = self.nodes.last_entry();
        if let Some(node) = &mut tail {
            let lp = node.get();
            let m = master(lp);
            let entries = lp.int(m.count_pos) + lp.int(m.deleted_pos);
            let full = lp.size() + total >= max_bytes
                || (limits.max_entries > 0 && entries >= limits.max_entries as i64);
            if full {
                node.get_mut().shrink_to_fit();
                tail = None;
            }
        }
        let (master_id, lp, same) = match tail {
            Some(node) => {
                let master_id = *node.key();
                let lp = node.into_mut();
                let m = master(lp);
                let count = lp.int(m.count_pos);
                lp.replace_int(m.count_pos, count + 1);
                let m = master(lp);
                let same = m.fields == fields && {
                    let mut pos = m.fields_pos;
                    pairs.chunks(2).all(|pair| {
                        let Some(p) = pos else { return false };
                        pos = lp.next(p);
                        element_is(lp.get(p), pair[0].as_ref())
                    })
                };
                (master_id, lp, same)
            }
            None => {
                // Room for a whole node at once, as Redis preallocates (STREAM_LISTPACK_MAX_
                // PRE_ALLOCATE); a full node is shrunk to fit.
                let mut lp = Listpack::with_capacity(max_bytes.min(4096));
                lp.push_int(1);
                lp.push_int(0);
                lp.push_int(fields as i64);
                for pair in pairs.chunks(2) {
                    lp.push(Element::Bytes(pair[0].as_ref()));
                }
                lp.push_int(0);
                let lp = self.nodes.entry(id).or_insert(lp);
                (id, lp, true)
            }
        };
        let flags = if same { FLAG_SAMEFIELDS } else { 0 };
        lp.push_int(flags);
        lp.push_int(id.ms.wrapping_sub(master_id.ms) as i64);
        lp.push_int(id.seq.wrapping_sub(master_id.seq) as i64);
        if !same {
            lp.push_int(fields as i64);
        }
        for pair in pairs.chunks(2) {
            if !same {
                lp.push(Element::Bytes(pair[0].as_ref()));
            }
            lp.push(Element::Bytes(pair[1].as_ref()));
        }
        let elements = 3 + fields + if same { 0 } else { fields + 1 };
        lp.push_int(elements as i64);
        let c = &mut self.counters;
        c.length += 1;
        c.entries_added += 1;
        c.last_id = id;
        if c.length == 1 {
            c.first_id = id;
        }
        Ok(())
    }

    /// Visits the live entries in `start..=end`, in ID order or reversed, while `visit`
    /// returns true.
    pub fn range(
        &self,
        start: StreamId,
        end: StreamId,
        rev: bool,
        mut visit: impl FnMut(&EntryRef<'_>) -> bool,
    ) {
        if start > end {
            return;
        }
        // The node holding `start` is the last one keyed at or before it.
        let from = self
            .nodes
            .range(..=start)
            .next_back()
            .map_or(start, |(id, _)| *id);
        if !rev {
            for (master_id, lp) in self.nodes.range(from..=end) {
                for entry in node_entries(*master_id, lp) {
                    if entry.id > end {
                        return;
                    }
                    if entry.deleted || entry.id < start {
                        continue;
                    }
                    if !visit(&entry) {
                        return;
                    }
                }
            }
            return;
        }
        for (master_id, lp) in self.nodes.range(from..=end).rev() {
            for entry in node_entries_rev(*master_id, lp) {
                if entry.id < start {
                    return;
                }
                if entry.deleted || entry.id > end {
                    continue;
                }
                if !visit(&entry) {
                    return;
                }
            }
        }
    }

    /// The first (or last) entry's ID, deleted entries skipped or not; 0-0 when empty.
    pub fn edge_id(&self, first: bool, skip_deleted: bool) -> StreamId {
        if skip_deleted {
            let mut found = None;
            self.range(StreamId::MIN, StreamId::MAX, !first, |e| {
                found = Some(e.id);
                false
            });
            return found.unwrap_or(if first { StreamId::MAX } else { StreamId::MIN });
        }
        let node = if first {
            self.nodes.first_key_value()
        } else {
            self.nodes.last_key_value()
        };
        let Some((master_id, lp)) = node else {
            return StreamId::MIN;
        };
        let id = if first {
            node_entries(*master_id, lp).next().map(|e| e.id)
        } else {
            node_entries_rev(*master_id, lp).next().map(|e| e.id)
        };
        id.unwrap_or(*master_id)
    }

    /// The last live entry's ID (0-0 when the stream is empty).
    pub fn last_live_id(&self) -> StreamId {
        if self.is_empty() {
            return StreamId::MIN;
        }
        self.edge_id(false, true)
    }

    pub fn contains(&self, id: StreamId) -> bool {
        let mut found = false;
        self.range(id, id, false, |_| {
            found = true;
            false
        });
        found
    }

    /// Marks the entry `id` deleted; false if there is no such live entry.
    pub fn delete(&mut self, id: StreamId) -> bool {
        let Some(node) = self.nodes.range(..=id).next_back().map(|(k, _)| *k) else {
            return false;
        };
        let lp = self.nodes.get_mut(&node).expect("node");
        let Some(pos) = node_entries(node, lp)
            .find(|e| e.id == id && !e.deleted)
            .map(|e| e.flags_pos)
        else {
            return false;
        };
        let flags = lp.int(pos);
        lp.replace_int(pos, flags | FLAG_DELETED);
        let m = master(lp);
        let count = lp.int(m.count_pos);
        if count == 1 {
            self.nodes.remove(&node);
        } else {
            let deleted = lp.int(m.deleted_pos);
            lp.replace_int(m.count_pos, count - 1);
            let m = master(lp);
            lp.replace_int(m.deleted_pos, deleted + 1);
        }
        self.counters.length -= 1;
        true
    }

    /// Updates the recorded first ID after entries were deleted.
    pub fn refresh_first_id(&mut self) {
        self.counters.first_id = if self.is_empty() {
            StreamId::MIN
        } else {
            self.edge_id(true, true)
        };
    }

    /// Removes entries from the head (Redis's streamTrim): whole nodes while they fit, then,
    /// unless `approx`, entries inside the next node. `limit` (0: none) caps the entries
    /// removed. Returns how many were.
    pub fn trim(&mut self, trim: Trim, approx: bool, limit: u64) -> u64 {
        let mut deleted = 0u64;
        while let Some(mut node) = self.nodes.first_entry() {
            if let Trim::MaxLen(max) = trim
                && self.counters.length <= max
            {
                break;
            }
            let master_id = *node.key();
            let lp = node.get();
            let m = master(lp);
            let entries = lp.int(m.count_pos) as u64;
            if limit > 0 && deleted + entries > limit {
                break;
            }
            let remove_node = match trim {
                Trim::MaxLen(max) => self.counters.length - entries >= max,
                Trim::MinId(min) => {
                    node_entries(master_id, lp)
                        .last()
                        .map_or(master_id, |e| e.id)
                        < min
                }
            };
            if remove_node {
                node.remove();
                self.counters.length -= entries;
                deleted += entries;
                continue;
            }
            if approx {
                break;
            }
            let lp = node.get_mut();
            let mut marked = 0u64;
            let mut pos = master(lp).first_entry;
            while let Some(p) = pos {
                let entry = EntryRef::at(lp, master_id, &master(lp), p);
                let stop = match trim {
                    Trim::MaxLen(max) => self.counters.length <= max,
                    Trim::MinId(min) => entry.id >= min,
                };
                if stop {
                    break;
                }
                let (deleted_already, flags_pos) = (entry.deleted, entry.flags_pos);
                if deleted_already {
                    pos = entry.next;
                    continue;
                }
                let flags = lp.int(flags_pos);
                lp.replace_int(flags_pos, flags | FLAG_DELETED);
                marked += 1;
                self.counters.length -= 1;
                // The flags keep their size (1 byte), so the next entry is still where it was.
                pos = EntryRef::at(lp, master_id, &master(lp), flags_pos).next;
            }
            let m = master(lp);
            let was_deleted = lp.int(m.deleted_pos);
            lp.replace_int(m.count_pos, entries as i64 - marked as i64);
            let m = master(lp);
            lp.replace_int(m.deleted_pos, was_deleted + marked as i64);
            deleted += marked;
            break;
        }
        if self.is_empty() {
            self.counters.first_id = StreamId::MIN;
        } else if deleted > 0 {
            self.refresh_first_id();
        }
        deleted
    }

    pub fn groups(&self) -> Option<&BTreeMap<Box<[u8]>, Group>> {
        self.groups.as_deref()
    }

    pub fn group(&self, name: &[u8]) -> Option<&Group> {
        self.groups.as_ref()?.get(name)
    }

    pub fn group_mut(&mut self, name: &[u8]) -> Option<&mut Group> {
        self.groups.as_mut()?.get_mut(name)
    }

    /// Adds a group; false if one of that name exists.
    pub fn create_group(&mut self, name: &[u8], group: Group) -> bool {
        let groups = self.groups.get_or_insert_with(Default::default);
        if groups.contains_key(name) {
            return false;
        }
        groups.insert(name.into(), group);
        true
    }

    pub fn destroy_group(&mut self, name: &[u8]) -> bool {
        self.groups
            .as_mut()
            .is_some_and(|groups| groups.remove(name).is_some())
    }

    /// A stream rebuilt from RDB parts, each node checked as Redis's deep sanitization checks
    /// it; None if a node is malformed or keyed twice.
    pub fn from_nodes(nodes: Vec<(StreamId, Vec<u8>)>, counters: Counters) -> Option<Stream> {
        let mut map = BTreeMap::new();
        for (id, bytes) in nodes {
            let lp = Listpack::from_bytes(bytes)?;
            if !node_is_valid(&lp) || map.insert(id, lp).is_some() {
                return None;
            }
        }
        // Redis trusts the saved length; it is checked here against the nodes' counts, since
        // trimming and deleting count on it.
        let live: i64 = map.values().map(|lp| lp.int(master(lp).count_pos)).sum();
        if live != counters.length as i64 {
            return None;
        }
        Some(Stream {
            nodes: map,
            counters,
            groups: None,
        })
    }
}

fn element_is(element: Element<'_>, bytes: &[u8]) -> bool {
    match element {
        Element::Bytes(b) => b == bytes,
        Element::Int(n) => itoa::Buffer::new().format(n).as_bytes() == bytes,
    }
}

/// Redis's streamValidateListpackIntegrity, deep: the master entry, then every entry with the
/// number of elements its lp-count claims, and nothing after them.
fn node_is_valid(lp: &Listpack) -> bool {
    let mut c = Walk {
        lp,
        pos: lp.first(),
    };
    let check = (|| -> Option<bool> {
        let count = c.int()?;
        let deleted = c.int()?;
        let fields = c.int()?;
        if count < 0 || deleted < 0 || fields < 0 {
            return Some(false);
        }
        c.skip(fields)?;
        if c.int()? != 0 {
            return Some(false);
        }
        for _ in 0..count + deleted {
            let flags = c.int()?;
            c.int()?;
            c.int()?;
            let (entry_fields, extra) = if flags & FLAG_SAMEFIELDS != 0 {
                (fields, 3)
            } else {
                let n = c.int()?;
                if n < 0 {
                    return Some(false);
                }
                c.skip(n)?;
                (n, 3 + n + 1)
            };
            c.skip(entry_fields)?;
            if c.int()? != entry_fields + extra {
                return Some(false);
            }
        }
        Some(c.pos.is_none())
    })();
    check == Some(true)
}

/// A forward walk over a listpack's elements, for validation.
struct Walk<'a> {
    lp: &'a Listpack,
    pos: Option<usize>,
}

impl Walk<'_> {
    fn int(&mut self) -> Option<i64> {
        let here = self.pos?;
        self.pos = self.lp.next(here);
        self.lp.get(here).int()
    }

    fn skip(&mut self, n: i64) -> Option<()> {
        for _ in 0..n {
            self.pos = self.lp.next(self.pos?);
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: NodeLimits = NodeLimits {
        max_bytes: 4096,
        max_entries: 100,
    };

    fn ids(stream: &Stream, rev: bool) -> Vec<StreamId> {
        let mut out = Vec::new();
        stream.range(StreamId::MIN, StreamId::MAX, rev, |e| {
            out.push(e.id);
            true
        });
        out
    }

    fn filled(n: u64) -> Stream {
        let mut s = Stream::default();
        for i in 1..=n {
            let field: &[u8] = if i % 3 == 0 { b"other" } else { b"f" };
            let value = i.to_string();
            s.add(StreamId::new(i, 0), &[field, value.as_bytes()], LIMITS)
                .ok()
                .expect("add");
        }
        s
    }

    #[test]
    fn adds_ranges_and_reads_fields() {
        let s = filled(250);
        assert_eq!(s.len(), 250);
        assert_eq!(s.node_count(), 3);
        let forward = ids(&s, false);
        assert_eq!(forward.len(), 250);
        let mut backward = ids(&s, true);
        backward.reverse();
        assert_eq!(forward, backward);
        let mut seen = Vec::new();
        s.range(StreamId::new(3, 0), StreamId::new(4, 0), false, |e| {
            for (f, v) in e.pairs() {
                seen.push((f.to_vec(), v.to_vec()));
            }
            true
        });
        assert_eq!(
            seen,
            vec![
                (b"other".to_vec(), b"3".to_vec()),
                (b"f".to_vec(), b"4".to_vec())
            ]
        );
        for (id, lp) in s.nodes() {
            let copy = Listpack::from_bytes(lp.as_bytes().to_vec()).unwrap();
            assert!(node_is_valid(&copy), "node {id:?}");
        }
    }

    #[test]
    fn delete_and_trim() {
        let mut s = filled(250);
        assert!(s.delete(StreamId::new(1, 0)));
        assert!(!s.delete(StreamId::new(1, 0)));
        s.refresh_first_id();
        assert_eq!(s.counters.first_id, StreamId::new(2, 0));
        assert_eq!(s.trim(Trim::MaxLen(200), false, 0), 49);
        assert_eq!(s.len(), 200);
        assert_eq!(ids(&s, false)[0], StreamId::new(51, 0));
        // Approximate trimming only drops whole nodes.
        assert_eq!(s.trim(Trim::MaxLen(10), true, 0), 150);
        assert_eq!(s.len(), 50);
        assert_eq!(s.trim(Trim::MinId(StreamId::new(240, 0)), false, 0), 39);
        assert_eq!(ids(&s, false)[0], StreamId::new(240, 0));
        for (_, lp) in s.nodes() {
            assert!(node_is_valid(lp));
        }
    }

    #[test]
    fn next_id_rules() {
        let mut s = Stream::default();
        assert_eq!(s.next_id(None, true, 5), Some(StreamId::new(5, 0)));
        s.add(StreamId::new(5, 3), &[b"a", b"b"], LIMITS)
            .ok()
            .unwrap();
        assert_eq!(s.next_id(None, true, 5), Some(StreamId::new(5, 4)));
        assert_eq!(
            s.next_id(Some(StreamId::new(5, 0)), false, 0),
            Some(StreamId::new(5, 4))
        );
        assert_eq!(s.next_id(Some(StreamId::new(5, 3)), true, 0), None);
        assert_eq!(
            s.next_id(Some(StreamId::new(6, 0)), false, 0),
            Some(StreamId::new(6, 0))
        );
    }
}
