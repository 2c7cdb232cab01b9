//! SORT and SORT_RO (Redis's sort.c) over lists, sets and sorted sets. Both rows take the keyspace gate
//! exclusively: BY and GET patterns read keys the command's key specs do not name.

use std::cmp::Ordering;

use bytes::Bytes;

use super::{CmdResult, Ctx, Error, KeyFlags, SYNTAX, WRONGTYPE, int_arg};
use crate::store::{Class, Db, End, Fill, List, Value};
use crate::util::{eq_ignore_case, parse_f64};

struct Options<'a> {
    by: Option<&'a [u8]>,
    /// BY a pattern without `*`: keep the stored order.
    dont_sort: bool,
    limit: Option<(i64, i64)>,
    gets: Vec<&'a [u8]>,
    desc: bool,
    alpha: bool,
    store: Option<&'a Bytes>,
}

/// `full_key_access`: the user may read every key, which BY and GET patterns need.
fn parse(args: &[Bytes], allow_store: bool, full_key_access: bool) -> Result<Options<'_>, Error> {
    let mut o = Options {
        by: None,
        dont_sort: false,
        limit: None,
        gets: Vec::new(),
        desc: false,
        alpha: false,
        store: None,
    };
    let mut i = 2;
    while i < args.len() {
        let left = args.len() - i - 1;
        let arg = &args[i];
        if eq_ignore_case(arg, "asc") {
            o.desc = false;
        } else if eq_ignore_case(arg, "desc") {
            o.desc = true;
        } else if eq_ignore_case(arg, "alpha") {
            o.alpha = true;
        } else if eq_ignore_case(arg, "limit") && left >= 2 {
            o.limit = Some((int_arg(&args[i + 1])?, int_arg(&args[i + 2])?));
            i += 2;
        } else if allow_store && eq_ignore_case(arg, "store") && left >= 1 {
            o.store = Some(&args[i + 1]);
            i += 1;
        } else if eq_ignore_case(arg, "by") && left >= 1 {
            o.by = Some(&args[i + 1]);
            o.dont_sort = !args[i + 1].contains(&b'*');
            if !o.dont_sort && !full_key_access {
                return Err(
                    "ERR BY option of SORT denied due to insufficient ACL permissions.".into(),
                );
            }
            i += 1;
        } else if eq_ignore_case(arg, "get") && left >= 1 {
            if !full_key_access {
                return Err(
                    "ERR GET option of SORT denied due to insufficient ACL permissions.".into(),
                );
            }
            o.gets.push(&args[i + 1]);
            i += 1;
        } else {
            return Err(SYNTAX.into());
        }
        i += 1;
    }
    Ok(o)
}

/// Redis's `lookupKeyByPattern`: `#` is the element itself; otherwise the first `*` is
/// replaced by the element, and `key->field` reads a hash field instead of a string.
fn lookup(db: &Db, pattern: &[u8], element: &[u8]) -> Option<Vec<u8>> {
    if pattern == b"#" {
        return Some(element.to_vec());
    }
    let star = pattern.iter().position(|&b| b == b'*')?;
    let arrow = pattern[star + 1..]
        .windows(2)
        .position(|w| w == b"->")
        .map(|p| star + 1 + p)
        .filter(|&p| p + 2 < pattern.len());
    let key_end = arrow.unwrap_or(pattern.len());
    let mut key = pattern[..star].to_vec();
    key.extend_from_slice(element);
    key.extend_from_slice(&pattern[star + 1..key_end]);
    let mut locked = db.lock(&key);
    let value = &mut locked.get(&key)?.value;
    match arrow {
        Some(arrow) => value
            .as_hash_mut()?
            .get(&pattern[arrow + 2..])
            .map(<[u8]>::to_vec),
        None => value
            .as_str_mut()
            .map(|s| s.bytes(&mut itoa::Buffer::new()).to_vec()),
    }
}

/// The elements to sort, in stored order, or WRONGTYPE.
fn elements(db: &Db, key: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let mut locked = db.lock(key);
    let Some(entry) = locked.get(key) else {
        return Ok(Vec::new());
    };
    match &mut entry.value {
        Value::List(list) => Ok(list.iter().map(<[u8]>::to_vec).collect()),
        Value::Set(set) => Ok(set.members()),
        Value::Zset(zset) => Ok(zset.all().into_iter().map(|(m, _)| m).collect()),
        _ => Err(WRONGTYPE.into()),
    }
}

fn sort_generic(ctx: &mut Ctx, args: &[Bytes], allow_store: bool) -> CmdResult {
    let full_key_access = ctx.client.user.may_read_every_key(ctx.command, args);
    let mut o = parse(args, allow_store, full_key_access)?;
    let db = ctx.db();
    let is_set = {
        let mut locked = db.lock(&args[1]);
        matches!(locked.get(&args[1]).map(|e| &e.value), Some(Value::Set(_)))
    };
    let mut items = elements(db, &args[1])?;
    // An unsorted set has no defined order, so a stored result, or one a script sees, is
    // sorted anyway (what a script does must be the same on every replica).
    if o.dont_sort && is_set && (o.store.is_some() || ctx.client.in_script) {
        o.dont_sort = false;
        o.alpha = true;
        o.by = None;
    }
    if o.dont_sort && !is_set && o.desc {
        items.reverse();
    }
    if !o.dont_sort {
        sort_items(db, &mut items, &o)?;
    }
    let len = items.len() as i64;
    let (start, end) = match o.limit {
        None => (0, len - 1),
        Some((offset, count)) => {
            let start = offset.clamp(0, len);
            let count = count.clamp(-1, len);
            let end = if count < 0 {
                len - 1
            } else {
                start + count - 1
            };
            (start, end.min(len - 1))
        }
    };
    let chosen: &[Vec<u8>] = if start > end {
        &[]
    } else {
        &items[start as usize..=end as usize]
    };
    let output: Vec<Option<Vec<u8>>> = if o.gets.is_empty() {
        chosen.iter().map(|e| Some(e.clone())).collect()
    } else {
        chosen
            .iter()
            .flat_map(|e| o.gets.iter().map(|p| lookup(db, p, e)))
            .collect()
    };
    match o.store {
        None => {
            ctx.reply.array(output.len());
            for value in &output {
                match value {
                    Some(value) => ctx.reply.bulk(value),
                    None => ctx.reply.null(),
                }
            }
        }
        Some(dst) => {
            let mut locked = db.lock(dst);
            if output.is_empty() {
                if locked.remove(dst).is_some() {
                    ctx.modified(dst, Class::Generic, "del");
                }
            } else {
                let fill = Fill(ctx.server.config.int(crate::config::LIST_MAX_LISTPACK_SIZE));
                let mut list = List::default();
                for value in &output {
                    list.push(End::Tail, value.as_deref().unwrap_or_default(), fill);
                }
                locked.set(dst, Value::List(Box::new(list)));
                ctx.modified(dst, Class::List, "sortstore");
            }
            ctx.reply.int(output.len() as i64);
        }
    }
    Ok(())
}

/// Sorts by the elements or their BY values: numbers (ties broken by the element's bytes)
/// or, with ALPHA, bytes; a missing BY value sorts as 0, or first with ALPHA.
fn sort_items(db: &Db, items: &mut [Vec<u8>], o: &Options) -> Result<(), Error> {
    let by_value = |item: &Vec<u8>| match o.by {
        Some(pattern) => lookup(db, pattern, item),
        None => Some(item.clone()),
    };
    let mut keyed: Vec<(Option<Vec<u8>>, f64, Vec<u8>)> = Vec::with_capacity(items.len());
    for item in items.iter() {
        let value = by_value(item);
        let score = if o.alpha {
            0.0
        } else {
            match &value {
                Some(v) => parse_f64(v).filter(|s| !s.is_nan()).ok_or(Error::from(
                    "ERR One or more scores can't be converted into double",
                ))?,
                None => 0.0,
            }
        };
        keyed.push((value, score, item.clone()));
    }
    keyed.sort_by(|a, b| {
        let order = if o.alpha {
            match o.by {
                Some(_) => a.0.cmp(&b.0),
                None => a.2.cmp(&b.2),
            }
        } else {
            a.1.partial_cmp(&b.1)
                .unwrap_or(Ordering::Equal)
                .then_with(|| a.2.cmp(&b.2))
        };
        if o.desc { order.reverse() } else { order }
    });
    for (slot, (_, _, item)) in items.iter_mut().zip(keyed) {
        *slot = item;
    }
    Ok(())
}

/// Redis's `sortGetKeys`: the sorted key, and the destination of the last STORE.
pub fn keys(args: &[Bytes]) -> Vec<(usize, KeyFlags)> {
    let mut positions = vec![(1, KeyFlags::Fixed(&["RO", "ACCESS"]))];
    let mut store = None;
    let mut i = 2;
    while i < args.len() {
        if eq_ignore_case(&args[i], "limit") {
            i += 2;
        } else if eq_ignore_case(&args[i], "get") || eq_ignore_case(&args[i], "by") {
            i += 1;
        } else if eq_ignore_case(&args[i], "store") && i + 1 < args.len() {
            store = Some((i + 1, KeyFlags::Fixed(&["OW", "UPDATE"])));
        }
        i += 1;
    }
    positions.extend(store);
    positions
}

pub fn sort(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    sort_generic(ctx, args, true)
}

pub fn sort_ro(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    sort_generic(ctx, args, false)
}
