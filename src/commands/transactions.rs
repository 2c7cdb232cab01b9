//! MULTI, EXEC, DISCARD, WATCH, UNWATCH (Redis's multi.c).
//!
//! Queuing happens in `execute`: while a client is in MULTI, every command but the ones that
//! steer the transaction is checked and queued. EXEC runs with the keyspace gate held
//! exclusively (its row is `Exclusive`), so the whole block is one atomic step for every other
//! client, whichever shards its keys live in. WATCH registers the key with the modify hook,
//! which raises the client's dirty flag when the key changes.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{CmdResult, Ctx};
use crate::client::{Client, FLAG_MULTI};
use crate::server::Server;

pub const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

pub fn multi(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    if ctx.client.multi.is_some() {
        return Err("ERR MULTI calls can not be nested".into());
    }
    ctx.client.multi = Some(Box::default());
    ctx.client.handle.set_flag(FLAG_MULTI, true);
    ctx.reply.ok();
    Ok(())
}

pub fn discard(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    if ctx.client.multi.is_none() {
        return Err("ERR DISCARD without MULTI".into());
    }
    discard_transaction(ctx.server, ctx.client);
    ctx.reply.ok();
    Ok(())
}

/// Drops the queued commands and every watch (Redis's `discardTransaction`).
pub fn discard_transaction(server: &Server, client: &mut Client) {
    client.multi = None;
    client.handle.set_flag(FLAG_MULTI, false);
    unwatch_all(server, client);
}

pub fn unwatch_all(server: &Server, client: &mut Client) {
    let Some(watch) = client.watch.take() else {
        return;
    };
    let keys: Vec<(usize, Bytes)> = watch
        .keys
        .into_iter()
        .map(|(db, key, _)| (db, key))
        .collect();
    server.store.notifier.watches.unwatch(client.id, &keys);
}

pub fn exec(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let Some(multi) = ctx.client.multi.take() else {
        return Err("ERR EXEC without MULTI".into());
    };
    ctx.client.handle.set_flag(FLAG_MULTI, false);
    // A key that expired since WATCH counts as changed, unless it was expired already then.
    let dirty = ctx.client.watch.as_ref().is_some_and(|watch| {
        watch.dirty.load(Ordering::Relaxed)
            || watch.keys.iter().any(|(db, key, was_expired)| {
                !was_expired && ctx.server.store.db(*db).lock(key).is_expired(key)
            })
    });
    unwatch_all(ctx.server, ctx.client);
    if multi.aborted {
        return Err(EXECABORT.into());
    }
    if dirty {
        ctx.reply.null_array();
        return Ok(());
    }
    ctx.client.deny_blocking = true;
    ctx.reply.array(multi.queued.len());
    for queued in &multi.queued {
        super::dispatch::call_queued(ctx.server, ctx.client, ctx.reply, queued);
    }
    ctx.client.deny_blocking = false;
    Ok(())
}

pub fn watch(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if ctx.client.multi.is_some() {
        return Err("ERR WATCH inside MULTI is not allowed".into());
    }
    // Once dirty, further watches cannot change the outcome.
    let dirty = ctx.client.watch.get_or_insert_default().dirty.clone();
    if !dirty.load(Ordering::Relaxed) {
        let db = ctx.client.db;
        let mut watched = Vec::new();
        for key in &args[1..] {
            let expired = ctx.db().lock(key).is_expired(key);
            let watches = &ctx.server.store.notifier.watches;
            if watches.watch(db, key, ctx.client.id, &dirty, expired) {
                watched.push((db, key.clone(), expired));
            }
        }
        let watch = ctx.client.watch.get_or_insert_default();
        watch.keys.extend(watched);
    }
    ctx.reply.ok();
    Ok(())
}

pub fn unwatch(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    unwatch_all(ctx.server, ctx.client);
    ctx.reply.ok();
    Ok(())
}
