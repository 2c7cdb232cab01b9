//! HyperLogLog commands (Redis's hyperloglog.c): PFADD, PFCOUNT, PFMERGE, PFDEBUG,
//! PFSELFTEST. The values are plain strings in Redis's HLL format (`store::hll`).

use bytes::Bytes;

use super::strings::string_mut;
use super::{CmdResult, Ctx, Error};
use crate::config;
use crate::store::{Class, Locked, Str, Value, hll};
use crate::util::eq_ignore_case;

fn corrupt(_: hll::Corrupt) -> Error {
    hll::CORRUPT.into()
}

fn sparse_max_bytes(ctx: &Ctx) -> usize {
    ctx.server.config.int(config::HLL_SPARSE_MAX_BYTES) as usize
}

/// The HLL at `key` for writing, if the key exists; NOT_HLL if it holds a string that is no
/// HLL, WRONGTYPE if another type. Checked before the string is made growable, so a refused
/// string keeps its encoding.
fn hll_mut<'a>(locked: &'a mut Locked, key: &[u8]) -> Result<Option<&'a mut Vec<u8>>, Error> {
    let Some(s) = string_mut(locked, key)? else {
        return Ok(None);
    };
    if !hll::is_hll(s.bytes(&mut itoa::Buffer::new())) {
        return Err(hll::NOT_HLL.into());
    }
    Ok(Some(s.make_raw()))
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

/// The HLL at `key` for writing, created empty (sparse) if absent; with whether it was.
fn hll_or_new<'a>(locked: &'a mut Locked, key: &[u8]) -> Result<(&'a mut Vec<u8>, bool), Error> {
    let created = locked.find(key).is_none();
    if created {
        locked.insert_new(key, Value::Str(Str::Raw(Box::new(hll::new()))));
    }
    let hll = hll_mut(locked, key)?.expect("present or just created");
    Ok((hll, created))
}

pub fn pfadd(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let max_bytes = sparse_max_bytes(ctx);
    let key = &args[1];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let (hll, mut updated) = hll_or_new(&mut locked, key)?;
    for element in &args[2..] {
        updated |= hll::add(hll, element, max_bytes).map_err(corrupt)?;
    }
    if updated {
        hll::invalidate_cache(hll);
    }
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
    let Some(hll) = hll_mut(&mut locked, key)? else {
        ctx.reply.int(0);
        return Ok(());
    };
    let count = match hll::cached_count(hll) {
        Some(count) => count,
        None => {
            // The count is cached in the value itself: a change, as in Redis.
            let count = hll::count(hll).map_err(corrupt)?;
            hll::store_count(hll, count);
            drop(locked);
            ctx.modified_quietly(key);
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
    let (hll, _) = hll_or_new(&mut locked, key)?;
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
    drop(locked);
    ctx.modified(key, Class::String, "pfadd");
    ctx.reply.ok();
    Ok(())
}

pub fn pfdebug(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let sub = &args[1];
    let key = &args[2];
    let db = ctx.db();
    let mut locked = db.lock(key);
    let hll =
        hll_mut(&mut locked, key)?.ok_or(Error::from("ERR The specified key does not exist"))?;
    let sub_name = String::from_utf8_lossy(sub);
    let known = ["getreg", "todense", "decode", "encoding"];
    if !known.iter().any(|name| eq_ignore_case(sub, name)) {
        return Err(format!("ERR Unknown PFDEBUG subcommand '{sub_name}'").into());
    }
    if args.len() != 3 {
        return Err(
            format!("ERR Wrong number of arguments for the '{sub_name}' subcommand").into(),
        );
    }
    if eq_ignore_case(sub, "getreg") || eq_ignore_case(sub, "todense") {
        let converted = hll::is_sparse(hll);
        hll::to_dense(hll).map_err(corrupt)?;
        let registers = eq_ignore_case(sub, "getreg")
            .then(|| hll::registers(hll).map_err(corrupt))
            .transpose()?;
        drop(locked);
        if converted {
            ctx.modified_quietly(key);
        }
        match registers {
            Some(registers) => {
                ctx.reply.array(registers.len());
                for value in registers.iter() {
                    ctx.reply.int(*value as i64);
                }
            }
            None => ctx.reply.int(converted as i64),
        }
    } else if eq_ignore_case(sub, "decode") {
        if !hll::is_sparse(hll) {
            return Err("ERR HLL encoding is not sparse".into());
        }
        let decoded = hll::decode(hll).map_err(corrupt)?;
        ctx.reply.bulk(decoded.as_bytes());
    } else {
        ctx.reply.simple(if hll::is_sparse(hll) {
            "sparse"
        } else {
            "dense"
        });
    }
    Ok(())
}

pub fn pfselftest(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let mut rng = crate::util::Rng::new();
    hll::self_test(sparse_max_bytes(ctx), || rng.next_u64())?;
    ctx.reply.ok();
    Ok(())
}
