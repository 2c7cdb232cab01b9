//! Pub/sub commands (Redis's pubsub.c). The hub (`crate::pubsub`) delivers messages; these
//! handlers keep the client's own subscription sets and the hub in step and write the
//! confirmations, which are push frames in RESP3.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{CmdResult, Ctx, reply_help};
use crate::client::Client;
use crate::protocol::Reply;
use crate::pubsub::{Hub, Space};
use crate::server::Server;

fn hub<'a>(ctx: &Ctx<'a>) -> &'a Hub {
    &ctx.server.store.notifier.pubsub
}

fn has(client: &Client, space: Space, name: &[u8]) -> bool {
    let Some(subs) = client.subscriptions.sets() else {
        return false;
    };
    match space {
        Space::Channel => subs.channels.contains(name),
        Space::Pattern => subs.patterns.iter().any(|p| p == name),
        Space::Shard => subs.shard_channels.contains(name),
    }
}

fn add(client: &mut Client, space: Space, name: &Bytes) {
    let subs = client.subscriptions.sets_mut();
    match space {
        Space::Channel => {
            subs.channels.insert(name.clone());
        }
        Space::Pattern => subs.patterns.push(name.clone()),
        Space::Shard => {
            subs.shard_channels.insert(name.clone());
        }
    }
    client.handle.subscriptions[space as usize].fetch_add(1, Ordering::Relaxed);
}

fn remove(client: &mut Client, space: Space, name: &[u8]) -> bool {
    let Some(subs) = client.subscriptions.existing_sets_mut() else {
        return false;
    };
    let removed = match space {
        Space::Channel => subs.channels.remove(name),
        Space::Pattern => {
            let before = subs.patterns.len();
            subs.patterns.retain(|p| p != name);
            subs.patterns.len() != before
        }
        Space::Shard => subs.shard_channels.remove(name),
    };
    if removed {
        client.handle.subscriptions[space as usize].fetch_sub(1, Ordering::Relaxed);
    }
    removed
}

fn names(client: &Client, space: Space) -> Vec<Bytes> {
    let Some(subs) = client.subscriptions.sets() else {
        return Vec::new();
    };
    match space {
        Space::Channel => subs.channels.iter().cloned().collect(),
        Space::Pattern => subs.patterns.clone(),
        Space::Shard => subs.shard_channels.iter().cloned().collect(),
    }
}

/// The count a confirmation carries: shard subscriptions are counted on their own.
fn count(client: &Client, space: Space) -> usize {
    match space {
        Space::Shard => client.subscriptions.shard_count(),
        _ => client.subscriptions.count(),
    }
}

fn confirm(reply: &mut Reply, kind: &[u8], name: Option<&[u8]>, count: usize) {
    reply.push(3);
    reply.bulk(kind);
    match name {
        Some(name) => reply.bulk(name),
        None => reply.null(),
    }
    reply.int(count as i64);
    reply.keep_pushed();
}

fn subscribe(ctx: &mut Ctx, args: &[Bytes], space: Space, kind: &[u8]) -> CmdResult {
    for name in &args[1..] {
        if !has(ctx.client, space, name) {
            add(ctx.client, space, name);
            hub(ctx).subscribe(space, name, &ctx.client.handle);
        }
        confirm(ctx.reply, kind, Some(name), count(ctx.client, space));
    }
    Ok(())
}

/// Unsubscribes from `names`, or from everything in `space` when `names` is empty; writes a
/// confirmation per name when `reply` is given.
fn unsubscribe_names(
    server: &Server,
    client: &mut Client,
    mut reply: Option<&mut Reply>,
    space: Space,
    kind: &[u8],
    names_given: &[Bytes],
) {
    let all = names_given.is_empty();
    let targets = if all {
        names(client, space)
    } else {
        names_given.to_vec()
    };
    for name in &targets {
        if remove(client, space, name) {
            server
                .store
                .notifier
                .pubsub
                .unsubscribe(space, name, client.id);
        }
        if let Some(reply) = reply.as_deref_mut() {
            confirm(reply, kind, Some(name), count(client, space));
        }
    }
    if all
        && targets.is_empty()
        && let Some(reply) = reply
    {
        confirm(reply, kind, None, count(client, space));
    }
}

fn unsubscribe_command(ctx: &mut Ctx, args: &[Bytes], space: Space, kind: &[u8]) -> CmdResult {
    unsubscribe_names(
        ctx.server,
        ctx.client,
        Some(ctx.reply),
        space,
        kind,
        &args[1..],
    );
    Ok(())
}

/// Drops every subscription silently (RESET, disconnect).
pub fn unsubscribe_all(server: &Server, client: &mut Client) {
    for space in [Space::Channel, Space::Pattern, Space::Shard] {
        unsubscribe_names(server, client, None, space, b"", &[]);
    }
}

pub fn subscribe_channels(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    subscribe(ctx, args, Space::Channel, b"subscribe")
}

pub fn psubscribe(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    subscribe(ctx, args, Space::Pattern, b"psubscribe")
}

pub fn ssubscribe(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    subscribe(ctx, args, Space::Shard, b"ssubscribe")
}

pub fn unsubscribe(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    unsubscribe_command(ctx, args, Space::Channel, b"unsubscribe")
}

pub fn punsubscribe(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    unsubscribe_command(ctx, args, Space::Pattern, b"punsubscribe")
}

pub fn sunsubscribe(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    unsubscribe_command(ctx, args, Space::Shard, b"sunsubscribe")
}

pub fn publish(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let receivers = hub(ctx).publish(&args[1], &args[2], false);
    ctx.replicate_only(args);
    ctx.reply.int(receivers as i64);
    Ok(())
}

pub fn spublish(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let receivers = hub(ctx).publish(&args[1], &args[2], true);
    ctx.replicate_only(args);
    ctx.reply.int(receivers as i64);
    Ok(())
}

fn list_active(ctx: &mut Ctx, args: &[Bytes], space: Space) -> CmdResult {
    let active = hub(ctx).active(space, args.get(2).map(|p| &p[..]));
    ctx.reply.array(active.len());
    for name in &active {
        ctx.reply.bulk(name);
    }
    Ok(())
}

fn count_subscribers(ctx: &mut Ctx, args: &[Bytes], space: Space) -> CmdResult {
    ctx.reply.array((args.len() - 2) * 2);
    for name in &args[2..] {
        ctx.reply.bulk(name);
        ctx.reply.int(hub(ctx).subscriber_count(space, name) as i64);
    }
    Ok(())
}

pub fn pubsub_channels(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    list_active(ctx, args, Space::Channel)
}

pub fn pubsub_shardchannels(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    list_active(ctx, args, Space::Shard)
}

pub fn pubsub_numsub(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    count_subscribers(ctx, args, Space::Channel)
}

pub fn pubsub_shardnumsub(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    count_subscribers(ctx, args, Space::Shard)
}

pub fn pubsub_numpat(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    ctx.reply.int(hub(ctx).len(Space::Pattern) as i64);
    Ok(())
}

pub fn pubsub_help(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    reply_help(
        ctx,
        &[
            "CHANNELS [<pattern>]",
            "    Return the currently active channels matching a <pattern> (default: '*').",
            "NUMPAT",
            "    Return number of subscriptions to patterns.",
            "NUMSUB [<channel> ...]",
            "    Return the number of subscribers for the specified channels, excluding",
            "    pattern subscriptions(default: no channels).",
            "SHARDCHANNELS [<pattern>]",
            "    Return the currently active shard level channels matching a <pattern> (default: '*').",
            "SHARDNUMSUB [<shardchannel> ...]",
            "    Return the number of subscribers for the specified shard level channel(s)",
        ],
    );
    Ok(())
}
