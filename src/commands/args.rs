//! Helpers handlers share: argument parsing with Redis's error texts, typed access to a key's
//! value, HELP replies, and error texts quoting client input.

use bytes::Bytes;

use super::{Ctx, Error, NOT_INTEGER, SYNTAX, WRONGTYPE};
use crate::store::{Entry, Locked, Value};

/// Redis's `allowProtectedAction`: `enable-debug-command` and `enable-protected-configs` are
/// `yes`, `no`, or `local` (loopback clients only).
pub fn protected_action_allowed(ctx: &Ctx, setting: usize) -> bool {
    match ctx.server.config.text(setting).as_str() {
        "yes" => true,
        "local" => ctx.client.handle.is_local(),
        _ => false,
    }
}

/// Closes a client: another one at once, the caller after this reply.
pub fn close_client(ctx: &mut Ctx, handle: &crate::client::ClientHandle) {
    if handle.id == ctx.client.id {
        ctx.client.close_after_reply = true;
    } else {
        handle.kill();
        if handle.has_flag(crate::client::FLAG_REPLICA) {
            // A killed replica no longer holds the backlog's bytes back, from now on (as
            // Redis frees it at once): a write that follows trims them.
            ctx.server.store.notifier.repl.detach(handle.id);
        }
    }
}

/// Redis's `addReplyHelp`: a usage line, the command's lines, and the HELP entry.
pub fn reply_help(ctx: &mut Ctx, lines: &[&str]) {
    let container = ctx
        .command
        .name
        .split('|')
        .next()
        .unwrap_or_default()
        .to_uppercase();
    ctx.reply.array(lines.len() + 3);
    ctx.reply.simple(&format!(
        "{container} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    ));
    for line in lines {
        ctx.reply.simple(line);
    }
    ctx.reply.simple("HELP");
    ctx.reply.simple("    Prints this help.");
}

/// The value at `key` seen as one type through `view` (`Value::as_list_mut` ...): None when
/// the key is absent, WRONGTYPE when it holds another type.
pub fn typed_mut<'a, T: ?Sized>(
    locked: &'a mut Locked,
    key: &[u8],
    view: impl FnOnce(&'a mut Value) -> Option<&'a mut T>,
) -> Result<Option<&'a mut T>, Error> {
    match locked.get(key) {
        None => Ok(None),
        Some(entry) => view(&mut entry.value)
            .map(Some)
            .ok_or(Error::from(WRONGTYPE)),
    }
}

/// The value at `key` seen through `view`, created by `new` if absent; WRONGTYPE if `view`
/// rejects it.
pub fn typed_or_new<'a, T: ?Sized>(
    locked: &'a mut Locked,
    key: &[u8],
    view: impl FnOnce(&'a mut Value) -> Option<&'a mut T>,
    new: impl FnOnce() -> Value,
) -> Result<&'a mut T, Error> {
    let (entry, _) = entry_or_new(locked, key, new);
    view(&mut entry.value).ok_or(Error::from(WRONGTYPE))
}

/// The entry at `key`, created with `new` if absent, and whether it was. One lookup either
/// way (through `find`: a lookup then an insert, or a check then a second lookup, would hash
/// and compare the key twice).
pub fn entry_or_new<'a>(
    locked: &'a mut Locked,
    key: &[u8],
    new: impl FnOnce() -> Value,
) -> (&'a mut Entry, bool) {
    match locked.find(key) {
        Some(place) => (locked.entry_at(place), false),
        None => (locked.insert_new(key, new()), true),
    }
}

/// For the pops that take several keys (BLPOP, LMPOP, BZPOPMIN, ZMPOP ...): the first of
/// `keys` holding a value that `view` accepts, with its shard locked. While a woken waiter is
/// served (`client.ready_key`), only the key that got data counts, and a value of another type
/// there means nothing to pop rather than an error.
pub fn first_nonempty<'a, 'k, T: ?Sized>(
    ctx: &Ctx<'a>,
    keys: &'k [Bytes],
    view: impl Fn(&mut Value) -> Option<&mut T>,
) -> Result<Option<(&'k Bytes, Locked<'a>)>, Error> {
    let db = ctx.db();
    let serving = ctx.client.ready_key.as_deref();
    for key in keys {
        if serving.is_some_and(|ready| ready != key) {
            continue;
        }
        let mut locked = db.lock(key);
        let found = typed_mut(&mut locked, key, &view).map(|v| v.is_some());
        match found {
            Ok(true) => return Ok(Some((key, locked))),
            Ok(false) => continue,
            Err(_) if serving.is_some() => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Redis's `getTimeoutFromObjectOrReply` in seconds, for the blocking commands of every
/// family: the deadline in Unix ms, 0 for none.
pub fn timeout_arg(arg: &[u8]) -> Result<u64, Error> {
    let seconds = crate::util::parse_f64(arg)
        .filter(|s| s.is_finite())
        .ok_or(Error::from("ERR timeout is not a float or out of range"))?;
    let millis = (seconds * 1000.0).ceil();
    if millis < 0.0 {
        return Err("ERR timeout is negative".into());
    }
    if millis == 0.0 {
        return Ok(0);
    }
    Ok(crate::util::now_ms().saturating_add(millis as u64))
}

/// Redis's `getTimeoutFromObjectOrReply` in milliseconds (CLIENT PAUSE, WAIT): the
/// timeout itself, not a deadline.
pub fn millis_arg(arg: &[u8]) -> Result<u64, Error> {
    let millis = crate::util::parse_i64(arg)
        .ok_or(Error::from("ERR timeout is not an integer or out of range"))?;
    u64::try_from(millis).map_err(|_| "ERR timeout is negative".into())
}

/// The arguments of LMPOP/ZMPOP and their blocking forms from `numkeys` on: the keys, whether
/// the second of `sides` (`RIGHT`, `MAX`) was named, and COUNT (default 1).
pub fn mpop_args<'a>(
    args: &'a [Bytes],
    sides: [&str; 2],
) -> Result<(&'a [Bytes], bool, usize), Error> {
    let positive = |arg: &[u8], message: &'static str| {
        crate::util::parse_i64(arg)
            .filter(|n| *n >= 1)
            .map(|n| n as usize)
            .ok_or(Error::from(message))
    };
    let numkeys = positive(&args[0], "ERR numkeys should be greater than 0")?;
    let side_index = numkeys
        .checked_add(1)
        .filter(|&i| i < args.len())
        .ok_or(Error::from(SYNTAX))?;
    let second = match &args[side_index] {
        side if crate::util::eq_ignore_case(side, sides[0]) => false,
        side if crate::util::eq_ignore_case(side, sides[1]) => true,
        _ => return Err(SYNTAX.into()),
    };
    let mut count = None;
    let mut i = side_index + 1;
    while i < args.len() {
        match args.get(i + 1) {
            Some(value) if count.is_none() && crate::util::eq_ignore_case(&args[i], "count") => {
                count = Some(positive(value, "ERR count should be greater than 0")?);
            }
            _ => return Err(SYNTAX.into()),
        }
        i += 2;
    }
    Ok((&args[1..side_index], second, count.unwrap_or(1)))
}

/// The `[LIMIT limit]` options after SINTERCARD's and ZINTERCARD's keys (0: no limit).
pub fn intercard_limit(options: &[Bytes]) -> Result<usize, Error> {
    let mut limit = 0;
    for pair in options.chunks(2) {
        match pair {
            [name, value] if crate::util::eq_ignore_case(name, "limit") => {
                limit = crate::util::parse_i64(value)
                    .filter(|n| *n >= 0)
                    .ok_or(Error::from("ERR LIMIT can't be negative"))?
                    as usize;
            }
            _ => return Err(SYNTAX.into()),
        }
    }
    Ok(limit)
}

/// Parses an integer argument with Redis's error text.
pub fn int_arg(arg: &[u8]) -> Result<i64, Error> {
    crate::util::parse_i64(arg).ok_or(Error::from(NOT_INTEGER))
}

/// Redis's `addReplySubcommandSyntaxError`: a subcommand with the wrong number of arguments.
pub fn subcommand_syntax_error(args: &[Bytes]) -> Error {
    format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {} HELP.",
        printable(&args[1], 128),
        String::from_utf8_lossy(&args[0]).to_uppercase()
    )
    .into()
}

/// Client input quoted in an error: cut at `max` bytes, newlines blanked.
pub fn printable(arg: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&arg[..arg.len().min(max)]);
    text.replace(['\r', '\n'], " ")
}
