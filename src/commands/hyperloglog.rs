//! HyperLogLog commands (Redis's hyperloglog.c): PFADD, PFCOUNT, PFMERGE, PFDEBUG,
//! PFSELFTEST. The values are plain strings in Redis's HLL format (`store::hll`).

use bytes::Bytes;

use super::strings::string_mut;
use super::{CmdResult, Ctx, Error, WRONGTYPE, entry_or_new};
use crate::config;
use crate::store::{Class, Locked, Str, Value, hll};
use crate::util::eq_ignore_case;

fn corrupt(_: hll::Corrupt) -> Error {
    hll::CORRUPT.into()
}

fn sparse_max_bytes(ctx: &Ctx) -> usize {
    ctx.server.config.int(config::HLL_SPARSE_MAX_BYTES) as usize
}

/// Runs `edit` on the HLL at `key` as a growable buffer, then stores it back in one
/// allocation of its length (as Redis's sds, where a Vec would keep spare room: 234 bytes per
/// 20-element HLL key against Redis's 190). Taking the bytes out and putting them back copies
/// nothing when the length stays, as a dense HLL's does. Absent keys are created empty when
/// `create` (`edit` is told so), None otherwise; NOT_HLL for a string that is no HLL, checked
/// before anything changes, WRONGTYPE for another type.
fn edit_hll<R>(
    locked: &mut Locked,
    key: &[u8],
    create: bool,
    edit: impl FnOnce(&mut Vec<u8>, bool) -> R,
) -> Result<Option<(R, bool)>, Error> {
    let (entry, created) = if create {
        entry_or_new(locked, key, || Value::Str(Str::from_vec(hll::new())))
    } else {
        match locked.get(key) {
            Some(entry) => (entry, false),
            None => return Ok(None),
        }
    };
    let s = entry.value.as_str_mut().ok_or(Error::from(WRONGTYPE))?;
    if !hll::is_hll(s.bytes(&mut itoa::Buffer::new())) {
        return Err(hll::NOT_HLL.into());
    }
    let mut bytes = s.take_bytes();
    let out = edit(&mut bytes, created);
    *s = Str::from_vec(bytes);
    Ok(Some((out, created)))
}

/// Raises `max` to the registers of every HLL among `keys` (missing keys count as empty);
/// with whether one of them was dense.
fn merge_keys(ctx: &Ctx, keys: &[Bytes], max: &mut [u8; hll::REGISTERS]) -> Result<bool, Error> {
    let db = ctx.db();
    let mut any_dense = false;
    for key in keys {
        let mut locked = db.lock(key);
        let Some(s) = string_mut(&mut locked, key)? else {
            continue;
        };
        let mut scratch = itoa::Buffer::new();
        let bytes = s.bytes(&mut scratch);
        if !hll::is_hll(bytes) {
            return Err(hll::NOT_HLL.into());
        }
        any_dense |= !hll::is_sparse(bytes);
        hll::merge_into(max, bytes).map_err(corrupt)?;
    }
    Ok(any_dense)
}

pub fn pfadd(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let max_bytes = sparse_max_bytes(ctx);
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let (updated, _) = edit_hll(&mut locked, key, true, |hll, created| {
        let mut updated = created;
        for element in &args[2..] {
            updated |= hll::add(hll, element, max_bytes).map_err(corrupt)?;
        }
        if updated {
            hll::invalidate_cache(hll);
        }
        Ok::<_, Error>(updated)
    })?
    .expect("created when absent");
    let updated = updated?;
    drop(locked);
    if updated {
        ctx.modified(key, Class::String, "pfadd");
    }
    ctx.reply.int(updated as i64);
    Ok(())
}

pub fn pfcount(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if args.len() > 2 {
        let mut max = Box::new([0u8; hll::REGISTERS]);
        merge_keys(ctx, &args[1..], &mut max)?;
        ctx.reply.int(hll::count_registers(&max) as i64);
        return Ok(());
    }
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let counted = edit_hll(&mut locked, key, false, |hll, _| {
        if let Some(count) = hll::cached_count(hll) {
            return Ok((count, false));
        }
        let count = hll::count(hll).map_err(corrupt)?;
        hll::store_count(hll, count);
        Ok::<_, Error>((count, true))
    })?;
    drop(locked);
    let count = match counted {
        None => 0,
        Some((counted, _)) => {
            let (count, stored) = counted?;
            // The count is cached in the value itself: a change, as in Redis.
            if stored {
                ctx.modified_quietly(key);
            }
            count
        }
    };
    ctx.reply.int(count as i64);
    Ok(())
}

pub fn pfmerge(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let max_bytes = sparse_max_bytes(ctx);
    let mut max = Box::new([0u8; hll::REGISTERS]);
    // The destination's own registers take part, as in Redis.
    let any_dense = merge_keys(ctx, &args[1..], &mut max)?;
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let (merged, _) = edit_hll(&mut locked, key, true, |hll, _| {
        if any_dense {
            hll::to_dense(hll).map_err(corrupt)?;
        }
        for (index, &value) in max.iter().enumerate() {
            if value != 0 {
                // Redis ignores a failure here: the destination was read without error above.
                let _ = hll::set(hll, index, value, max_bytes);
            }
        }
        hll::invalidate_cache(hll);
        Ok::<_, Error>(())
    })?
    .expect("created when absent");
    merged?;
    drop(locked);
    ctx.modified(key, Class::String, "pfadd");
    ctx.reply.ok();
    Ok(())
}

/// What a PFDEBUG subcommand answers.
enum Debugged {
    /// The registers, and whether the HLL was turned dense to read them.
    Registers(Box<[u8; hll::REGISTERS]>, bool),
    Converted(bool),
    Decoded(String),
    Encoding(&'static str),
}

pub fn pfdebug(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let sub = &args[1];
    let key = &args[2];
    let sub_name = String::from_utf8_lossy(sub);
    let db = ctx.db();
    let mut locked = db.lock(key);
    let debugged = edit_hll(&mut locked, key, false, |hll, _| {
        let known = ["getreg", "todense", "decode", "encoding"];
        if !known.iter().any(|name| eq_ignore_case(sub, name)) {
            return Err(format!("ERR Unknown PFDEBUG subcommand '{sub_name}'").into());
        }
        if args.len() != 3 {
            let error = format!("ERR Wrong number of arguments for the '{sub_name}' subcommand");
            return Err(error.into());
        }
        let sparse = hll::is_sparse(hll);
        if eq_ignore_case(sub, "getreg") || eq_ignore_case(sub, "todense") {
            hll::to_dense(hll).map_err(corrupt)?;
            if eq_ignore_case(sub, "todense") {
                return Ok(Debugged::Converted(sparse));
            }
            let registers = hll::registers(hll).map_err(corrupt)?;
            return Ok(Debugged::Registers(registers, sparse));
        }
        if eq_ignore_case(sub, "encoding") {
            return Ok(Debugged::Encoding(if sparse { "sparse" } else { "dense" }));
        }
        if !sparse {
            return Err("ERR HLL encoding is not sparse".into());
        }
        Ok::<_, Error>(Debugged::Decoded(hll::decode(hll).map_err(corrupt)?))
    })?;
    drop(locked);
    let (debugged, _) = debugged.ok_or(Error::from("ERR The specified key does not exist"))?;
    match debugged? {
        Debugged::Registers(registers, converted) => {
            // GETREG turns a sparse HLL dense, a change Redis counts.
            if converted {
                ctx.modified_quietly(key);
            }
            ctx.reply.array(registers.len());
            for value in registers.iter() {
                ctx.reply.int(*value as i64);
            }
        }
        Debugged::Converted(converted) => {
            if converted {
                ctx.modified_quietly(key);
            }
            ctx.reply.int(converted as i64);
        }
        Debugged::Decoded(text) => ctx.reply.bulk(text.as_bytes()),
        Debugged::Encoding(name) => ctx.reply.simple(name),
    }
    Ok(())
}

pub fn pfselftest(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let mut rng = crate::util::Rng::new();
    hll::self_test(sparse_max_bytes(ctx), || rng.next_u64())?;
    ctx.reply.ok();
    Ok(())
}
