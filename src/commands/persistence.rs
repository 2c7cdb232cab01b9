//! Persistence commands (Redis's rdb.c, aof.c and the DUMP/RESTORE pair of cluster.c): SAVE,
//! BGSAVE, BGREWRITEAOF, DUMP, RESTORE. LASTSAVE and SHUTDOWN live with the server commands.

use bytes::Bytes;

use super::{CmdResult, Ctx, Error, SYNTAX, int_arg};
use crate::persist::rdb::{self, Limits};
use crate::store::Class;
use crate::util::eq_ignore_case;

const IN_PROGRESS: &str = "ERR Background save already in progress";

pub fn save(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let snapshots = &ctx.server.snapshots;
    if snapshots.in_progress() {
        return Err(IN_PROGRESS.into());
    }
    snapshots.save(ctx.server).map_err(|_| Error::from("ERR"))?;
    ctx.reply.ok();
    Ok(())
}

/// BGSAVE [SCHEDULE]
pub fn bgsave(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let schedule = match args.get(1) {
        None => false,
        Some(arg) if args.len() == 2 && eq_ignore_case(arg, "schedule") => true,
        Some(_) => return Err(SYNTAX.into()),
    };
    let snapshots = &ctx.server.snapshots;
    if snapshots.in_progress() && !schedule {
        return Err(IN_PROGRESS.into());
    }
    if snapshots.in_progress() || ctx.server.store.notifier.aof.rewriting() {
        if !schedule {
            return Err("ERR Another child process is active (AOF?): can't BGSAVE right now. Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever possible.".into());
        }
        snapshots.schedule();
        ctx.reply.simple("Background saving scheduled");
        return Ok(());
    }
    snapshots
        .start_background(ctx.server)
        .map_err(|_| Error::from("ERR"))?;
    ctx.reply.simple("Background saving started");
    Ok(())
}

pub fn bgrewriteaof(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let aof = &ctx.server.store.notifier.aof;
    if aof.rewriting() {
        return Err("ERR Background append only file rewriting already in progress".into());
    }
    if ctx.server.snapshots.in_progress() {
        aof.schedule_rewrite();
        ctx.reply
            .simple("Background append only file rewriting scheduled");
        return Ok(());
    }
    aof.start_rewrite(ctx.server).map_err(|e| {
        tracing::warn!("Can't rewrite the append only file in background: {e}");
        Error::from("ERR Can't execute an AOF background rewriting. Please check the server logs for more information.")
    })?;
    ctx.reply
        .simple("Background append only file rewriting started");
    Ok(())
}

pub fn dump(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    match locked.get(key) {
        Some(entry) => ctx.reply.bulk(&rdb::dump(&entry.value)),
        None => ctx.reply.null(),
    }
    Ok(())
}

/// RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency]
pub fn restore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq): (Option<u64>, Option<u8>) = (None, None);
    let mut i = 4;
    while i < args.len() {
        let more = i + 1 < args.len();
        if eq_ignore_case(&args[i], "replace") {
            replace = true;
        } else if eq_ignore_case(&args[i], "absttl") {
            absttl = true;
        } else if eq_ignore_case(&args[i], "idletime") && more && freq.is_none() {
            let Ok(seconds) = u64::try_from(int_arg(&args[i + 1])?) else {
                return Err("ERR Invalid IDLETIME value, must be >= 0".into());
            };
            idle = Some(seconds);
            i += 1;
        } else if eq_ignore_case(&args[i], "freq") && more && idle.is_none() {
            let Ok(count) = u8::try_from(int_arg(&args[i + 1])?) else {
                return Err("ERR Invalid FREQ value, must be >= 0 and <= 255".into());
            };
            freq = Some(count);
            i += 1;
        } else {
            return Err(SYNTAX.into());
        }
        i += 1;
    }
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    if !replace && locked.contains(key) {
        return Err("BUSYKEY Target key name already exists.".into());
    }
    let ttl = int_arg(&args[2])?;
    if ttl < 0 {
        return Err("ERR Invalid TTL value, must be >= 0".into());
    }
    let value = rdb::undump(&args[3], &Limits::from_config(&ctx.server.config))?;
    let deleted = replace && locked.remove(key).is_some();
    let expire_at = match ttl {
        0 => None,
        ttl if absttl => Some(ttl as u64),
        ttl => Some(locked.now.saturating_add(ttl as u64)),
    };
    if expire_at.is_some_and(|at| at <= locked.now) {
        if deleted {
            ctx.modified(key, Class::Generic, "del");
        }
        ctx.reply.ok();
        return Ok(());
    }
    locked.set_with_expire(key, value, expire_at);
    locked.restore_clock(key, freq, idle);
    ctx.modified(key, Class::Generic, "restore");
    ctx.reply.ok();
    Ok(())
}
