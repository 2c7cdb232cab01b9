//! ACL and AUTH (Redis's acl.c commands), the permission check every command goes through,
//! and how connections follow changes to their user.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{CmdResult, Command, Ctx, Error, SYNTAX, close_client, reply_help};
use crate::acl::selector::{category_by_name, channel_allowed, has_spaces};
use crate::acl::{Context, Denied, LogEntry, Reason, User};
use crate::client::Client;
use crate::config;
use crate::pubsub::Space;
use crate::server::Server;
use crate::util::{eq_ignore_case, now_ms, parse_i64};

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const GENPASS_MAX_BITS: i64 = 4096;

/// Whether `acl-pubsub-default` gives new users every channel.
fn all_channels_by_default(server: &Server) -> bool {
    server.config.text(config::ACL_PUBSUB_DEFAULT) == "allchannels"
}

/// Checks the caller's permissions for a command about to run or be queued; on refusal,
/// logs it and gives the NOPERM error.
pub fn check_permissions(
    server: &Server,
    client: &Client,
    command: &Command,
    args: &[Bytes],
) -> Result<(), String> {
    let Err(denied) = checked(server, client, command, args, context_of(client)) else {
        return Ok(());
    };
    Err(match denied {
        Denied::Command => format!(
            "NOPERM this user has no permissions to run the '{}' command",
            command.name
        ),
        Denied::Key(_) => {
            "NOPERM this user has no permissions to access one of the keys used as arguments".into()
        }
        Denied::Channel(_) => {
            "NOPERM this user has no permissions to access one of the channels used as arguments"
                .into()
        }
    })
}

/// Checks a command queued in MULTI again when EXEC runs it: the rules may have changed.
pub fn check_queued(
    server: &Server,
    client: &Client,
    command: &Command,
    args: &[Bytes],
) -> Result<(), String> {
    let Err(denied) = checked(server, client, command, args, Context::Multi) else {
        return Ok(());
    };
    let reason = match denied {
        Denied::Command => "no permission to execute the command or subcommand",
        Denied::Key(_) => "no permission to touch the specified keys",
        Denied::Channel(_) => "no permission to access one of the channels used as arguments",
    };
    Err(format!(
        "NOPERM ACLs rules changed between the moment the transaction was accumulated and the \
         EXEC call. This command is no longer allowed for the following reason: {reason}"
    ))
}

/// Checks a command a script calls, for the user who called the script (Redis's
/// `scriptVerifyACL`); a refusal goes to ACL LOG in the `lua` context.
pub fn check_from_script(
    server: &Server,
    client: &Client,
    command: &Command,
    args: &[Bytes],
) -> Result<(), &'static str> {
    checked(server, client, command, args, Context::Lua).map_err(|denied| match denied {
        Denied::Command => "can't run this command or subcommand",
        Denied::Key(_) => {
            "can't access at least one of the keys mentioned in the command arguments"
        }
        Denied::Channel(_) => "can't publish to the channel mentioned in the command",
    })
}

/// Where a refusal happened, for ACL LOG.
fn context_of(client: &Client) -> Context {
    if client.multi.is_some() {
        Context::Multi
    } else {
        Context::Toplevel
    }
}

/// The client's user's verdict on a command; a refusal goes to ACL LOG.
fn checked(
    server: &Server,
    client: &Client,
    command: &Command,
    args: &[Bytes],
    context: Context,
) -> Result<(), Denied> {
    let Err(denied) = client.user.check(command, args) else {
        return Ok(());
    };
    let (reason, object) = match denied {
        Denied::Command => (Reason::Command, Bytes::from(command.name.clone())),
        Denied::Key(i) => (Reason::Key, args[i].clone()),
        Denied::Channel(i) => (Reason::Channel, args[i].clone()),
    };
    let username = client.user.name.clone();
    add_log_entry(server, client, reason, context, object, username);
    Err(denied)
}

fn add_log_entry(
    server: &Server,
    client: &Client,
    reason: Reason,
    context: Context,
    object: Bytes,
    username: Bytes,
) {
    let entry = LogEntry {
        count: 1,
        reason,
        context,
        object,
        username,
        time_ms: now_ms(),
        client_info: client.handle.describe(&server.commands),
    };
    let max_len = server.config.int(config::ACLLOG_MAX_LEN) as usize;
    server
        .acl
        .log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .add(entry, max_len);
}

/// Makes `user` the client's user (AUTH, HELLO AUTH, RESET).
pub fn switch_user(server: &Server, client: &mut Client, user: Arc<User>, authenticated: bool) {
    client.authenticated = authenticated;
    client.acl_generation = server.acl.generation();
    client.handle.set_user(&user);
    client.user = user;
}

/// Logs in as `user` with `password` for AUTH and HELLO; failures go to the ACL log.
pub fn authenticate(ctx: &mut Ctx, args: &[Bytes], user: &[u8], password: &[u8]) -> CmdResult {
    match ctx.server.acl.authenticate(user, password) {
        Some(user) => {
            switch_user(ctx.server, ctx.client, user, true);
            Ok(())
        }
        None => {
            let username = Bytes::copy_from_slice(user);
            let context = context_of(ctx.client);
            add_log_entry(
                ctx.server,
                ctx.client,
                Reason::Auth,
                context,
                args[0].clone(),
                username,
            );
            Err(WRONGPASS.into())
        }
    }
}

pub fn auth(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if args.len() > 3 {
        return Err(SYNTAX.into());
    }
    let (user, password) = match args {
        [_, password] => (&b"default"[..], password),
        [_, user, password] => (&user[..], password),
        _ => unreachable!("arity is checked"),
    };
    if args.len() == 2 && ctx.server.acl.default_user().nopass() {
        return Err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?".into());
    }
    authenticate(ctx, args, user, password)?;
    ctx.reply.ok();
    Ok(())
}

/// Follows changes to the client's user since it last looked. False when the client must be
/// closed: its user was deleted or replaced (ACL DELUSER, ACL LOAD).
pub fn follow_user_changes(server: &Server, client: &mut Client) -> bool {
    let generation = server.acl.generation();
    if generation == client.acl_generation || client.acl_generation == Client::INTERNAL {
        return true;
    }
    client.acl_generation = generation;
    match server.acl.get(&client.user.name) {
        Some(user) if user.serial == client.user.serial => {
            client.user = user;
            true
        }
        _ => false,
    }
}

/// Redis's `ACLKillPubsubClientsIfNeeded`: whether client `id`, a subscriber logged in as
/// `old`, listens to a channel or pattern that `new` no longer allows.
fn loses_subscriptions(server: &Server, id: u64, old: &User, new: &User) -> bool {
    if new.selectors.iter().any(|s| s.all_channels) {
        return false;
    }
    let upcoming: Vec<Bytes> = new
        .selectors
        .iter()
        .flat_map(|s| s.channels.iter().cloned())
        .collect();
    let superset = old
        .selectors
        .iter()
        .all(|s| !s.all_channels && s.channels.iter().all(|c| upcoming.contains(c)));
    if superset {
        return false;
    }
    let hub = &server.store.notifier.pubsub;
    hub.subscriptions_of(Space::Pattern, id)
        .iter()
        .any(|p| !channel_allowed(&upcoming, p, true))
        || [Space::Channel, Space::Shard].into_iter().any(|space| {
            hub.subscriptions_of(space, id)
                .iter()
                .any(|c| !channel_allowed(&upcoming, c, false))
        })
}

/// Closes the subscribers of a changed user that lost a channel they listen to.
fn close_lost_subscribers(ctx: &mut Ctx, old: &User, new: &User) {
    for handle in ctx.server.clients.snapshot() {
        let subscribed = handle
            .subscriptions
            .iter()
            .any(|n| n.load(Ordering::Relaxed) > 0);
        if handle.user_serial.load(Ordering::Relaxed) == old.serial
            && subscribed
            && loses_subscriptions(ctx.server, handle.id, old, new)
        {
            close_client(ctx, &handle);
        }
    }
}

pub fn setuser(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let name = &args[2];
    if has_spaces(name) {
        return Err("ERR Usernames can't contain spaces or null characters".into());
    }
    let old = ctx
        .server
        .acl
        .set_user(
            name,
            &args[3..],
            all_channels_by_default(ctx.server),
            &ctx.server.commands,
        )
        .map_err(|e| Error::from(format!("ERR {e}")))?;
    if let (Some(old), Some(new)) = (old, ctx.server.acl.get(name)) {
        close_lost_subscribers(ctx, &old, &new);
    }
    ctx.reply.ok();
    Ok(())
}

pub fn deluser(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if args[2..].iter().any(|name| &name[..] == b"default") {
        return Err("ERR The 'default' user cannot be removed".into());
    }
    let mut deleted = 0;
    for name in &args[2..] {
        if let Some(user) = ctx.server.acl.delete(name) {
            deleted += 1;
            close_clients_of(ctx, user.serial);
        }
    }
    ctx.reply.int(deleted);
    Ok(())
}

/// Closes the connections logged in as a user that no longer exists.
fn close_clients_of(ctx: &mut Ctx, serial: u64) {
    for handle in ctx.server.clients.snapshot() {
        if handle.user_serial.load(Ordering::Relaxed) == serial {
            close_client(ctx, &handle);
        }
    }
}

pub fn getuser(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let Some(user) = ctx.server.acl.get(&args[2]) else {
        ctx.reply.null();
        return Ok(());
    };
    let commands = &ctx.server.commands;
    let r = &mut *ctx.reply;
    r.map(6);
    r.bulk(b"flags");
    let flags: Vec<&str> = user.flag_names().collect();
    r.set(flags.len());
    for flag in flags {
        r.bulk(flag.as_bytes());
    }
    r.bulk(b"passwords");
    r.bulks(user.passwords.iter().map(|p| p.as_bytes()));
    describe_selector_fields(r, user.root(), commands);
    r.bulk(b"selectors");
    r.array(user.selectors.len() - 1);
    for selector in &user.selectors[1..] {
        r.map(3);
        describe_selector_fields(r, selector, commands);
    }
    Ok(())
}

fn describe_selector_fields(
    r: &mut crate::protocol::Reply,
    selector: &crate::acl::selector::Selector,
    commands: &super::CommandTable,
) {
    r.bulk(b"commands");
    r.bulk(selector.describe_commands(commands).as_bytes());
    r.bulk(b"keys");
    r.bulk(selector.describe_keys().as_bytes());
    r.bulk(b"channels");
    r.bulk(selector.describe_channels().as_bytes());
}

pub fn list(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let users = ctx.server.acl.all();
    ctx.reply.array(users.len());
    for user in users {
        let line = format!(
            "user {} {}",
            String::from_utf8_lossy(&user.name),
            user.describe(&ctx.server.commands)
        );
        ctx.reply.bulk(line.as_bytes());
    }
    Ok(())
}

pub fn users(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let users = ctx.server.acl.all();
    ctx.reply.bulks(users.iter().map(|u| &u.name[..]));
    Ok(())
}

pub fn whoami(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    ctx.reply.bulk(&ctx.client.user.name);
    Ok(())
}

/// ACL CAT, GENPASS and LOG take at most one argument.
fn at_most_one_argument(args: &[Bytes]) -> CmdResult {
    if args.len() > 3 {
        return Err(super::subcommand_syntax_error(args));
    }
    Ok(())
}

pub fn cat(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    at_most_one_argument(args)?;
    let Some(name) = args.get(2) else {
        let names = crate::commands::meta::CATEGORY_NAMES;
        ctx.reply.bulks(names.iter().map(|n| n.as_bytes()));
        return Ok(());
    };
    let Some(category) = category_by_name(name) else {
        return Err(format!("ERR Unknown category '{}'", super::printable(name, 128)).into());
    };
    let names: Vec<&str> = ctx
        .server
        .commands
        .every_with_subcommands()
        .filter(|c| c.acl & category != 0)
        .map(|c| c.name.as_str())
        .collect();
    ctx.reply.bulks(names.iter().map(|n| n.as_bytes()));
    Ok(())
}

pub fn genpass(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    at_most_one_argument(args)?;
    let bits = match args.get(2) {
        Some(arg) => parse_i64(arg).ok_or(Error::from(super::NOT_INTEGER))?,
        None => 256,
    };
    if bits <= 0 || bits > GENPASS_MAX_BITS {
        return Err(format!(
            "ERR ACL GENPASS argument must be the number of bits for the output password, a \
             positive number up to {GENPASS_MAX_BITS}"
        )
        .into());
    }
    let chars = (bits as usize).div_ceil(4);
    let mut random = vec![0u8; chars.div_ceil(2)];
    crate::util::random_bytes(&mut random);
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    ctx.reply.bulk(&hex.as_bytes()[..chars]);
    Ok(())
}

pub fn log(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    at_most_one_argument(args)?;
    let mut count = 10;
    if let Some(arg) = args.get(2) {
        if eq_ignore_case(arg, "reset") {
            ctx.server
                .acl
                .log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .reset();
            ctx.reply.ok();
            return Ok(());
        }
        count = parse_i64(arg)
            .ok_or(Error::from(super::NOT_INTEGER))?
            .max(0) as usize;
    }
    let log = ctx.server.acl.log.lock().unwrap_or_else(|e| e.into_inner());
    let now = now_ms();
    let r = &mut *ctx.reply;
    r.array(count.min(log.len()));
    for entry in log.newest(count) {
        r.map(7);
        r.bulk(b"count");
        r.int(entry.count as i64);
        r.bulk(b"reason");
        r.bulk(entry.reason.name().as_bytes());
        r.bulk(b"context");
        r.bulk(entry.context.name().as_bytes());
        r.bulk(b"object");
        r.bulk(&entry.object);
        r.bulk(b"username");
        r.bulk(&entry.username);
        r.bulk(b"age-seconds");
        r.double(now.saturating_sub(entry.time_ms) as f64 / 1000.0);
        r.bulk(b"client-info");
        r.bulk(entry.client_info.as_bytes());
    }
    Ok(())
}

pub fn dryrun(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let Some(user) = ctx.server.acl.get(&args[2]) else {
        return Err(format!("ERR User '{}' not found", String::from_utf8_lossy(&args[2])).into());
    };
    let target = &args[3..];
    // Any Redis command, implemented here or not: the question is about the rules.
    let commands = &ctx.server.commands;
    let command = commands
        .any_by_full_name(&target[0])
        .and_then(|c| match target.get(1) {
            Some(sub) if !c.subcommands.is_empty() => {
                commands.any_by_full_name(&[&target[0][..], b"|", sub].concat())
            }
            _ => Some(c),
        })
        .ok_or_else(|| {
            Error::from(format!(
                "ERR Command '{}' not found",
                String::from_utf8_lossy(&target[0])
            ))
        })?;
    if !command.arity_ok(target.len()) {
        return Err(format!(
            "ERR wrong number of arguments for '{}' command",
            command.name
        )
        .into());
    }
    let refusal = match user.check(command, target) {
        Ok(()) => {
            ctx.reply.ok();
            return Ok(());
        }
        Err(Denied::Command) => format!(
            "This user has no permissions to run the '{}' command",
            command.name
        ),
        Err(Denied::Key(i)) => format!(
            "This user has no permissions to access the '{}' key",
            String::from_utf8_lossy(&target[i])
        ),
        Err(Denied::Channel(i)) => format!(
            "This user has no permissions to access the '{}' channel",
            String::from_utf8_lossy(&target[i])
        ),
    };
    ctx.reply.bulk(refusal.as_bytes());
    Ok(())
}

fn aclfile(ctx: &Ctx) -> Result<String, Error> {
    let path = ctx.server.config.text(config::ACLFILE);
    if path.is_empty() {
        return Err("ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.".into());
    }
    Ok(path)
}

pub fn load(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let path = aclfile(ctx)?;
    let server = ctx.server;
    let users = server
        .acl
        .parse_file(&path, all_channels_by_default(server), &server.commands)
        .map_err(|e| Error::from(format!("ERR {e}")))?;
    server.acl.replace_all(users);
    // Every user but the default one was replaced: their clients are closed.
    let default_serial = server.acl.default_user().serial;
    for handle in server.clients.snapshot() {
        if handle.user_serial.load(Ordering::Relaxed) != default_serial {
            close_client(ctx, &handle);
        }
    }
    ctx.reply.ok();
    Ok(())
}

pub fn save(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let path = aclfile(ctx)?;
    let text = ctx.server.acl.file_text(&ctx.server.commands);
    let temp = format!("{path}.tmp-{}-{}", std::process::id(), now_ms());
    let written = std::fs::write(&temp, text).and_then(|()| std::fs::rename(&temp, &path));
    if let Err(e) = written {
        tracing::warn!("Writing ACL file for ACL SAVE: {e}");
        let _ = std::fs::remove_file(&temp);
        return Err("ERR There was an error trying to save the ACLs. Please check the server logs for more information".into());
    }
    ctx.reply.ok();
    Ok(())
}

pub fn help(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    reply_help(
        ctx,
        &[
            "CAT [<category>]",
            "    List all commands that belong to <category>, or all command categories",
            "    when no category is specified.",
            "DELUSER <username> [<username> ...]",
            "    Delete a list of users.",
            "DRYRUN <username> <command> [<arg> ...]",
            "    Returns whether the user can execute the given command without executing the command.",
            "GETUSER <username>",
            "    Get the user's details.",
            "GENPASS [<bits>]",
            "    Generate a secure 256-bit user password. The optional `bits` argument can",
            "    be used to specify a different size.",
            "LIST",
            "    Show users details in config file format.",
            "LOAD",
            "    Reload users from the ACL file.",
            "LOG [<count> | RESET]",
            "    Show the ACL log entries.",
            "SAVE",
            "    Save the current config to the ACL file.",
            "SETUSER <username> <attribute> [<attribute> ...]",
            "    Create or modify a user with the specified attributes.",
            "USERS",
            "    List all the registered usernames.",
            "WHOAMI",
            "    Return the current connection username.",
        ],
    );
    Ok(())
}
