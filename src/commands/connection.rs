//! Connection commands (Redis's networking.c and parts of server.c): PING, ECHO, HELLO, AUTH,
//! SELECT, QUIT, RESET and the CLIENT family.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{CmdResult, Ctx, DB_OUT_OF_RANGE, Error, SYNTAX, int_arg, reply_help};
use crate::blocking::Wake;
use crate::client::{FLAG_NO_EVICT, FLAG_NO_TOUCH, ReplyMode};
use crate::protocol::Protocol;
use crate::server::REDIS_VERSION;
use crate::tracking::{Mode, overlap};
use crate::util::{eq_ignore_case, now_ms, parse_i64};

pub fn ping(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if args.len() > 2 {
        return Err("ERR wrong number of arguments for 'ping' command".into());
    }
    // A RESP2 subscriber can only read arrays, so it gets ["pong", message].
    if ctx.client.protocol == Protocol::Resp2 && !ctx.client.subscriptions.is_empty() {
        ctx.reply.array(2);
        ctx.reply.bulk(b"pong");
        ctx.reply.bulk(args.get(1).map_or(&b""[..], |m| &m[..]));
        return Ok(());
    }
    match args.get(1) {
        None => ctx.reply.simple("PONG"),
        Some(message) if args.len() == 2 => ctx.reply.bulk(message),
        Some(_) => return Err("ERR wrong number of arguments for 'ping' command".into()),
    }
    Ok(())
}

pub fn echo(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    ctx.reply.bulk(&args[1]);
    Ok(())
}

pub fn quit(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    ctx.reply.ok();
    ctx.client.close_after_reply = true;
    Ok(())
}

pub fn select(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let index =
        parse_i64(&args[1]).ok_or(Error::from("ERR value is not an integer or out of range"))?;
    if index < 0 || index as usize >= ctx.server.store.dbs().len() {
        return Err(DB_OUT_OF_RANGE.into());
    }
    ctx.client.db = index as usize;
    ctx.client
        .handle
        .db
        .store(index as usize, Ordering::Relaxed);
    ctx.reply.ok();
    Ok(())
}

pub fn hello(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let mut protocol = None;
    let mut i = 1;
    if let Some(version) = args.get(1) {
        let version = parse_i64(version).ok_or(Error::from(
            "ERR Protocol version is not an integer or out of range",
        ))?;
        protocol = match version {
            2 => Some(Protocol::Resp2),
            3 => Some(Protocol::Resp3),
            _ => return Err("NOPROTO unsupported protocol version".into()),
        };
        i = 2;
    }
    let mut credentials = None;
    let mut name = None;
    while i < args.len() {
        let more = args.len() - i - 1;
        if eq_ignore_case(&args[i], "auth") && more >= 2 {
            credentials = Some((&args[i + 1], &args[i + 2]));
            i += 3;
        } else if eq_ignore_case(&args[i], "setname") && more >= 1 {
            name = Some(&args[i + 1]);
            i += 2;
        } else {
            return Err(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&args[i])
            )
            .into());
        }
    }
    if let Some((user, password)) = credentials {
        super::acl::authenticate(ctx, args, user, password)?;
    }
    if !ctx.client.authenticated {
        return Err("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into());
    }
    if let Some(name) = name {
        set_name(ctx, name)?;
    }
    if let Some(protocol) = protocol {
        ctx.client.protocol = protocol;
        ctx.reply.protocol = protocol;
        ctx.client.handle.resp.store(
            if protocol == Protocol::Resp3 { 3 } else { 2 },
            Ordering::Relaxed,
        );
    }
    let proto = if ctx.client.protocol == Protocol::Resp3 {
        3
    } else {
        2
    };
    let r = &mut *ctx.reply;
    r.map(7);
    r.bulk(b"server");
    r.bulk(b"redis");
    r.bulk(b"version");
    r.bulk(REDIS_VERSION.as_bytes());
    r.bulk(b"proto");
    r.int(proto);
    r.bulk(b"id");
    r.int(ctx.client.id as i64);
    r.bulk(b"mode");
    r.bulk(b"standalone");
    r.bulk(b"role");
    r.bulk(b"master");
    r.bulk(b"modules");
    r.array(0);
    Ok(())
}

pub fn reset(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let client = &mut *ctx.client;
    client.db = 0;
    client.handle.db.store(0, Ordering::Relaxed);
    client.protocol = Protocol::Resp2;
    client.handle.resp.store(2, Ordering::Relaxed);
    client.reply_mode = ReplyMode::On;
    let default = ctx.server.acl.default_user();
    let open = default.nopass() && default.enabled();
    super::acl::switch_user(ctx.server, client, default, open);
    client.handle.set_flag(FLAG_NO_EVICT | FLAG_NO_TOUCH, false);
    client.handle.edit_names(|names| names.name = None);
    if client.handle.has_flag(crate::client::FLAG_MONITOR) {
        client.handle.set_flag(crate::client::FLAG_MONITOR, false);
        ctx.server.monitors.remove(client.id);
    }
    super::transactions::discard_transaction(ctx.server, client);
    super::pubsub::unsubscribe_all(ctx.server, client);
    if client.tracking.take().is_some() {
        ctx.server.store.notifier.tracking.disable(client.id);
    }
    client.tracking_memory = 0;
    ctx.reply.protocol = Protocol::Resp2;
    ctx.reply.simple("RESET");
    Ok(())
}

pub fn client_id(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    ctx.reply.int(ctx.client.id as i64);
    Ok(())
}

/// Client names and library strings may not contain spaces or control characters.
fn valid_client_text(value: &[u8]) -> bool {
    value.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

fn set_name(ctx: &mut Ctx, name: &Bytes) -> CmdResult {
    if !valid_client_text(name) {
        return Err(
            "ERR Client names cannot contain spaces, newlines or special characters.".into(),
        );
    }
    let value = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
    ctx.client.handle.edit_names(|names| names.name = value);
    Ok(())
}

pub fn client_setname(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    set_name(ctx, &args[2])?;
    ctx.reply.ok();
    Ok(())
}

pub fn client_getname(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    match ctx.client.handle.names().name {
        Some(name) => ctx.reply.bulk(&name),
        None => ctx.reply.null(),
    }
    Ok(())
}

pub fn client_setinfo(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (attr, value) = (&args[2], &args[3]);
    let lib_name = eq_ignore_case(attr, "lib-name");
    if !lib_name && !eq_ignore_case(attr, "lib-ver") {
        return Err(format!(
            "ERR Unrecognized option '{}'",
            String::from_utf8_lossy(attr)
        )
        .into());
    };
    if !valid_client_text(value) {
        return Err(format!(
            "ERR {} cannot contain spaces, newlines or special characters.",
            String::from_utf8_lossy(attr).to_ascii_lowercase()
        )
        .into());
    }
    let value = (!value.is_empty()).then(|| Bytes::copy_from_slice(value));
    ctx.client.handle.edit_names(|names| match lib_name {
        true => names.lib_name = value,
        false => names.lib_ver = value,
    });
    ctx.reply.ok();
    Ok(())
}

/// A client type as CLIENT LIST and CLIENT KILL name it (`slave` is `replica`).
fn client_type(arg: &[u8]) -> Result<&'static str, Error> {
    ["normal", "master", "replica", "pubsub"]
        .into_iter()
        .find(|k| eq_ignore_case(arg, k))
        .or_else(|| eq_ignore_case(arg, "slave").then_some("replica"))
        .ok_or_else(|| format!("ERR Unknown client type '{}'", String::from_utf8_lossy(arg)).into())
}

pub fn client_list(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let mut ids: Option<Vec<u64>> = None;
    let mut kind = None;
    let mut i = 2;
    while i < args.len() {
        if eq_ignore_case(&args[i], "type") && i + 1 < args.len() {
            kind = Some(client_type(&args[i + 1])?);
            i += 2;
        } else if eq_ignore_case(&args[i], "id") && i + 1 < args.len() {
            let mut list = Vec::new();
            for arg in &args[i + 1..] {
                match parse_i64(arg) {
                    Some(id) if id > 0 => list.push(id as u64),
                    _ => return Err("ERR Invalid client ID".into()),
                }
            }
            ids = Some(list);
            i = args.len();
        } else {
            return Err(SYNTAX.into());
        }
    }
    let mut text = String::new();
    for client in ctx.server.clients.snapshot() {
        if ids.as_ref().is_none_or(|ids| ids.contains(&client.id))
            && kind.is_none_or(|kind| client.kind() == kind)
        {
            text.push_str(&client.describe(&ctx.server.commands));
            text.push('\n');
        }
    }
    ctx.reply.verbatim("txt", text.as_bytes());
    Ok(())
}

pub fn client_info(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let mut line = ctx.client.handle.describe(&ctx.server.commands);
    line.push('\n');
    ctx.reply.verbatim("txt", line.as_bytes());
    Ok(())
}

pub fn client_unblock(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let wake = match args.get(3) {
        None => Wake::Timeout,
        Some(reason) if eq_ignore_case(reason, "timeout") => Wake::Timeout,
        Some(reason) if eq_ignore_case(reason, "error") => Wake::Error,
        Some(_) => return Err("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR".into()),
    };
    if args.len() > 4 {
        return Err(SYNTAX.into());
    }
    let id = parse_i64(&args[2]).ok_or(Error::from(super::NOT_INTEGER))?;
    // Runs with the gate held exclusively (its table row), so no serve is under way.
    let unblocked =
        u64::try_from(id).is_ok_and(|id| ctx.server.store.notifier.blocking.finish(id, wake));
    ctx.reply.int(unblocked as i64);
    Ok(())
}

pub fn client_kill(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let me = ctx.client.id;
    if args.len() == 3 {
        // Old form: CLIENT KILL addr:port
        let target = ctx
            .server
            .clients
            .snapshot()
            .into_iter()
            .find(|c| c.addr.as_bytes() == &args[2][..]);
        return match target {
            Some(client) => {
                super::close_client(ctx, &client);
                ctx.reply.ok();
                Ok(())
            }
            None => Err("ERR No such client".into()),
        };
    }
    let (mut id, mut addr, mut laddr, mut user, mut skip_me) = (None, None, None, None, true);
    let mut kind = None;
    let mut i = 2;
    while i + 1 < args.len() {
        let value = &args[i + 1];
        if eq_ignore_case(&args[i], "id") {
            id = Some(
                parse_i64(value)
                    .filter(|v| *v > 0)
                    .ok_or(Error::from("ERR client-id should be greater than 0"))?,
            );
        } else if eq_ignore_case(&args[i], "type") {
            kind = Some(client_type(value)?);
        } else if eq_ignore_case(&args[i], "addr") {
            addr = Some(value.clone());
        } else if eq_ignore_case(&args[i], "laddr") {
            laddr = Some(value.clone());
        } else if eq_ignore_case(&args[i], "user") {
            let found = ctx.server.acl.get(value).ok_or_else(|| {
                Error::from(format!(
                    "ERR No such user '{}'",
                    String::from_utf8_lossy(value)
                ))
            })?;
            user = Some(found.serial);
        } else if eq_ignore_case(&args[i], "skipme") {
            skip_me = match () {
                _ if eq_ignore_case(value, "yes") => true,
                _ if eq_ignore_case(value, "no") => false,
                _ => return Err(SYNTAX.into()),
            };
        } else {
            return Err(SYNTAX.into());
        }
        i += 2;
    }
    if i != args.len() {
        return Err(SYNTAX.into());
    }
    let mut killed = 0;
    for client in ctx.server.clients.snapshot() {
        let matches = id.is_none_or(|id| client.id == id as u64)
            && addr
                .as_ref()
                .is_none_or(|a| client.addr.as_bytes() == &a[..])
            && laddr
                .as_ref()
                .is_none_or(|a| client.laddr.as_bytes() == &a[..])
            && user.is_none_or(|serial| client.user_serial.load(Ordering::Relaxed) == serial)
            && kind.is_none_or(|k| client.kind() == k)
            && !(skip_me && client.id == me);
        if matches {
            super::close_client(ctx, &client);
            killed += 1;
        }
    }
    ctx.reply.int(killed);
    Ok(())
}

fn on_off(arg: &[u8]) -> Result<bool, Error> {
    match () {
        _ if eq_ignore_case(arg, "on") => Ok(true),
        _ if eq_ignore_case(arg, "off") => Ok(false),
        _ => Err(SYNTAX.into()),
    }
}

/// CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN] [OPTOUT] [NOLOOP], with
/// Redis's checks in Redis's order.
pub fn client_tracking(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let mut mode = Mode::default();
    let mut redirect: Option<Arc<crate::client::ClientHandle>> = None;
    let mut prefixes: Vec<Bytes> = Vec::new();
    let mut i = 3;
    while i < args.len() {
        let more = i + 1 < args.len();
        let arg = &args[i];
        if eq_ignore_case(arg, "redirect") && more {
            i += 1;
            if redirect.is_some() {
                return Err("ERR A client can only redirect to a single other client".into());
            }
            let id = int_arg(&args[i])?;
            let target = u64::try_from(id)
                .ok()
                .and_then(|id| ctx.server.clients.get(id));
            let Some(target) = target else {
                return Err("ERR The client ID you want redirect to does not exist".into());
            };
            redirect = Some(target);
        } else if eq_ignore_case(arg, "bcast") {
            mode.bcast = true;
        } else if eq_ignore_case(arg, "optin") {
            mode.optin = true;
        } else if eq_ignore_case(arg, "optout") {
            mode.optout = true;
        } else if eq_ignore_case(arg, "noloop") {
            mode.noloop = true;
        } else if eq_ignore_case(arg, "prefix") && more {
            i += 1;
            prefixes.push(args[i].clone());
        } else {
            return Err(SYNTAX.into());
        }
        i += 1;
    }
    let tracking = &ctx.server.store.notifier.tracking;
    if !on_off(&args[2])? {
        if ctx.client.tracking.take().is_some() {
            tracking.disable(ctx.client.id);
        }
        ctx.client.tracking_caching = false;
        ctx.client.tracking_memory = 0;
        ctx.reply.ok();
        return Ok(());
    }
    if !mode.bcast && !prefixes.is_empty() {
        return Err("ERR PREFIX option requires BCAST mode to be enabled".into());
    }
    if let Some(old) = ctx.client.tracking
        && old.bcast != mode.bcast
    {
        return Err("ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.".into());
    }
    if mode.bcast && (mode.optin || mode.optout) {
        return Err("ERR OPTIN and OPTOUT are not compatible with BCAST".into());
    }
    if mode.optin && mode.optout {
        return Err("ERR You can't specify both OPTIN mode and OPTOUT mode".into());
    }
    if let Some(old) = ctx.client.tracking
        && ((mode.optin && old.optout) || (mode.optout && old.optin))
    {
        return Err("ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode.".into());
    }
    if mode.bcast {
        for (n, prefix) in prefixes.iter().enumerate() {
            if let Some(existing) = tracking.overlapping(ctx.client.id, prefix) {
                return Err(format!(
                    "ERR Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single client must not overlap.",
                    String::from_utf8_lossy(prefix),
                    String::from_utf8_lossy(&existing)
                )
                .into());
            }
            if let Some(other) = prefixes[n + 1..].iter().find(|p| overlap(prefix, p)) {
                return Err(format!(
                    "ERR Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a single client must not overlap.",
                    String::from_utf8_lossy(prefix),
                    String::from_utf8_lossy(other)
                )
                .into());
            }
        }
    }
    ctx.client.tracking_memory =
        tracking.enable(&ctx.client.handle, mode, redirect.as_ref(), prefixes);
    ctx.client.tracking = Some(mode);
    ctx.reply.ok();
    Ok(())
}

pub fn client_caching(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let Some(mode) = ctx.client.tracking else {
        return Err("ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled".into());
    };
    if eq_ignore_case(&args[2], "yes") {
        if !mode.optin {
            return Err(
                "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode."
                    .into(),
            );
        }
    } else if eq_ignore_case(&args[2], "no") {
        if !mode.optout {
            return Err(
                "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode."
                    .into(),
            );
        }
    } else {
        return Err(SYNTAX.into());
    }
    ctx.client.tracking_caching = true;
    ctx.reply.ok();
    Ok(())
}

/// The client invalidations go to: -1 when tracking is off, 0 for the client itself.
pub fn client_getredir(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let info = ctx.server.store.notifier.tracking.info(ctx.client.id);
    ctx.reply
        .int(info.map_or(-1, |(_, redirect, _, _)| redirect as i64));
    Ok(())
}

pub fn client_trackinginfo(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let info = ctx.server.store.notifier.tracking.info(ctx.client.id);
    let caching = ctx.client.tracking_caching;
    let reply = &mut *ctx.reply;
    reply.map(3);
    reply.bulk(b"flags");
    let Some((mode, redirect, broken, prefixes)) = info else {
        reply.set(1);
        reply.bulk(b"off");
        reply.bulk(b"redirect");
        reply.int(-1);
        reply.bulk(b"prefixes");
        reply.array(0);
        return Ok(());
    };
    let flags: Vec<&[u8]> = [
        (true, &b"on"[..]),
        (mode.bcast, b"bcast"),
        (mode.optin, b"optin"),
        (mode.optin && caching, b"caching-yes"),
        (mode.optout, b"optout"),
        (mode.optout && caching, b"caching-no"),
        (mode.noloop, b"noloop"),
        (broken, b"broken_redirect"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    reply.set(flags.len());
    for flag in flags {
        reply.bulk(flag);
    }
    reply.bulk(b"redirect");
    reply.int(redirect as i64);
    reply.bulk(b"prefixes");
    reply.array(prefixes.len());
    for prefix in &prefixes {
        reply.bulk(prefix);
    }
    Ok(())
}

pub fn client_no_evict(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    ctx.client.handle.set_flag(FLAG_NO_EVICT, on_off(&args[2])?);
    ctx.server.clients.eviction_changed();
    ctx.reply.ok();
    Ok(())
}

pub fn client_no_touch(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    ctx.client.handle.set_flag(FLAG_NO_TOUCH, on_off(&args[2])?);
    ctx.reply.ok();
    Ok(())
}

pub fn client_reply(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let mode = &args[2];
    ctx.client.reply_mode = match () {
        _ if eq_ignore_case(mode, "on") => {
            ctx.reply.ok();
            ReplyMode::On
        }
        _ if eq_ignore_case(mode, "off") => ReplyMode::Off,
        _ if eq_ignore_case(mode, "skip") => ReplyMode::SkipNext,
        _ => return Err(SYNTAX.into()),
    };
    Ok(())
}

pub fn client_pause(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let timeout = super::millis_arg(&args[2])?;
    let write_only = match args.get(3) {
        None => false,
        Some(mode) if eq_ignore_case(mode, "write") => true,
        Some(mode) if eq_ignore_case(mode, "all") => false,
        Some(_) => return Err(SYNTAX.into()),
    };
    if args.len() > 4 {
        return Err(SYNTAX.into());
    }
    ctx.server.pause.start(now_ms() + timeout, write_only);
    ctx.reply.ok();
    Ok(())
}

pub fn client_unpause(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    ctx.server.pause.stop();
    ctx.reply.ok();
    Ok(())
}

pub fn client_help(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    reply_help(
        ctx,
        &[
            "GETNAME",
            "    Return the name of the current connection.",
            "ID",
            "    Return the ID of the current connection.",
            "INFO",
            "    Return information about the current client connection.",
            "KILL <ip:port>",
            "    Kill connection made from <ip:port>.",
            "KILL <option> <value> [<option> <value> [...]]",
            "    Kill connections. Options are:",
            "    * ADDR (<ip:port>|<unixsocket>:0)",
            "      Kill connections made from the specified address",
            "    * LADDR (<ip:port>|<unixsocket>:0)",
            "      Kill connections made to specified local address",
            "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
            "      Kill connections by type.",
            "    * USER <username>",
            "      Kill connections authenticated by <username>.",
            "    * SKIPME (YES|NO)",
            "      Skip killing current connection (default: yes).",
            "    * ID <client-id>",
            "      Kill connections by client id.",
            "LIST [options ...]",
            "    Return information about client connections. Options:",
            "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
            "      Return clients of specified type.",
            "UNPAUSE",
            "    Stop the current client pause, resuming traffic.",
            "PAUSE <timeout> [WRITE|ALL]",
            "    Suspend all, or just write, clients for <timeout> milliseconds.",
            "REPLY (ON|OFF|SKIP)",
            "    Control the replies sent to the current connection.",
            "SETNAME <name>",
            "    Assign the name <name> to the current connection.",
            "SETINFO <option> <value>",
            "    Set client meta attr. Options are:",
            "    * LIB-NAME: the client lib name.",
            "    * LIB-VER: the client lib version.",
            "NO-EVICT (ON|OFF)",
            "    Protect current client connection from eviction.",
            "NO-TOUCH (ON|OFF)",
            "    Will not touch LRU/LFU stats when this mode is on.",
        ],
    );
    Ok(())
}
