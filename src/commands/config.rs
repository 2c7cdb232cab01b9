//! CONFIG GET, SET, RESETSTAT, REWRITE over the one settings table in `crate::config`.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{CmdResult, Ctx, Error, reply_help};
use crate::config::{self, Config, SETTINGS};
use crate::server::PortKind;
use crate::util::repr;

pub fn get(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let patterns: Vec<&[u8]> = args[2..].iter().map(|a| &a[..]).collect();
    let pairs = ctx.server.config.get_matching(&patterns);
    ctx.reply.map(pairs.len());
    for (name, value) in pairs {
        ctx.reply.bulk(name.as_bytes());
        ctx.reply.bulk(value.as_bytes());
    }
    Ok(())
}

/// Settings that cannot change under a load (Redis's `DENY_LOADING_CONFIG`).
const DENIED_WHILE_LOADING: [usize; 3] =
    [config::DIR, config::APPENDONLY, config::REPL_DISKLESS_LOAD];

pub fn set(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let pairs = &args[2..];
    if !pairs.len().is_multiple_of(2) {
        return Err("ERR wrong number of arguments for 'config|set' command".into());
    }
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let mut chosen: Vec<usize> = Vec::new();
    for pair in pairs.chunks(2) {
        let name = text(&pair[0]);
        let fail = |why: &str| {
            Error::from(format!(
                "ERR CONFIG SET failed (possibly related to argument '{name}') - {why}"
            ))
        };
        let Some(index) = Config::lookup(&name) else {
            return Err(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
            )
            .into());
        };
        let setting = &SETTINGS[index];
        if !setting.modifiable {
            return Err(fail("can't set immutable config"));
        }
        if setting.protected
            && !super::protected_action_allowed(ctx, config::ENABLE_PROTECTED_CONFIGS)
        {
            return Err(fail("can't set protected config"));
        }
        if DENIED_WHILE_LOADING.contains(&index) && ctx.server.loading.is_active() {
            return Err(crate::server::loading::LOADING_ERROR.into());
        }
        if chosen.contains(&index) {
            return Err(fail("duplicate parameter"));
        }
        chosen.push(index);
    }
    // Apply all or nothing: on the first failure, restore what was already changed.
    let previous: Vec<String> = chosen
        .iter()
        .map(|&i| ctx.server.config.render(i))
        .collect();
    let restore = |count: usize| {
        for (m, value) in previous.iter().enumerate().take(count) {
            let _ = ctx
                .server
                .config
                .set(SETTINGS[chosen[m]].name, std::slice::from_ref(value));
        }
    };
    for (n, pair) in pairs.chunks(2).enumerate() {
        if let Err(why) = ctx
            .server
            .config
            .set(SETTINGS[chosen[n]].name, &[text(&pair[1])])
        {
            restore(n);
            return Err(format!(
                "ERR CONFIG SET failed (possibly related to argument '{}') - {why}",
                text(&pair[0])
            )
            .into());
        }
    }
    // New certificates or TLS rules take effect for the next connections, or not at all.
    if let Some(n) = chosen
        .iter()
        .position(|&i| SETTINGS[i].name.starts_with("tls-"))
        && let Err(why) = ctx.server.reload_tls()
    {
        tracing::warn!("Failed applying new configuration. {why}");
        restore(chosen.len());
        return Err(format!(
            "ERR CONFIG SET failed (possibly related to argument '{}') - Unable to update TLS \
             configuration. Check server logs.",
            text(&pairs[2 * n])
        )
        .into());
    }
    // Ports moved by this command, with where they were, to move back if a later one fails.
    let mut moved: Vec<(PortKind, u16)> = Vec::new();
    for (n, &index) in chosen.iter().enumerate() {
        let kind = match index {
            config::PORT => PortKind::Tcp,
            config::TLS_PORT => PortKind::Tls,
            _ => continue,
        };
        let port = ctx.server.config.int(index) as u16;
        if ctx.server.config.render(index) == previous[n] {
            continue;
        }
        if let Err(e) = ctx.server.ports.change(kind, port) {
            tracing::warn!("Failed to listen on port {port}: {e}");
            for &(kind, old) in &moved {
                let _ = ctx.server.ports.change(kind, old);
            }
            restore(chosen.len());
            return Err(format!(
                "ERR CONFIG SET failed (possibly related to argument '{}') - Unable to listen \
                 on this port. Check server logs.",
                SETTINGS[index].name
            )
            .into());
        }
        moved.push((kind, previous[n].parse().unwrap_or(0)));
    }
    apply_side_effects(ctx, &chosen);
    ctx.reply.ok();
    Ok(())
}

/// Settings that other parts of the server cache.
fn apply_side_effects(ctx: &Ctx, changed: &[usize]) {
    let aof = &ctx.server.store.notifier.aof;
    if changed.contains(&config::APPENDFSYNC) || changed.contains(&config::AOF_TIMESTAMP_ENABLED) {
        aof.apply_config(&ctx.server.config);
    }
    if changed.contains(&config::AOF_DISABLE_AUTO_GC)
        && !ctx.server.config.bool(config::AOF_DISABLE_AUTO_GC)
    {
        aof.delete_history(&ctx.server.config);
    }
    if changed.contains(&config::APPENDONLY) {
        if !ctx.server.config.bool(config::APPENDONLY) {
            aof.disable();
        } else if let Err(e) = aof.enable(ctx.server) {
            tracing::warn!("Can't turn the append only file on: {e}");
        }
    }
    if changed.contains(&config::OOM_SCORE_ADJ) || changed.contains(&config::OOM_SCORE_ADJ_VALUES) {
        ctx.server.apply_oom_score();
    }
    if changed.contains(&config::REQUIREPASS) {
        let password = ctx.server.config.text(config::REQUIREPASS);
        ctx.server
            .acl
            .set_default_password(password.as_bytes(), &ctx.server.commands);
    }
    let cached = [
        config::NOTIFY_KEYSPACE_EVENTS,
        config::CLIENT_OUTPUT_BUFFER_LIMIT,
        config::MAXMEMORY_POLICY,
        config::LFU_LOG_FACTOR,
        config::LFU_DECAY_TIME,
        config::TRACKING_TABLE_MAX_KEYS,
        config::MAXMEMORY,
        config::MAXMEMORY_CLIENTS,
        config::REPL_BACKLOG_SIZE,
    ];
    if cached.iter().any(|index| changed.contains(index)) {
        ctx.server.apply_cached_settings();
    }
    // After the policy, when one CONFIG SET changes both.
    if changed.contains(&config::MAXMEMORY) {
        ctx.server.evict();
    }
    ctx.server.clients.evict();
}

pub fn resetstat(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    ctx.server.stats.reset();
    for counter in [
        &ctx.server.clients.memory.evicted,
        &ctx.server.store.evictor.evicted_keys,
        &ctx.server.store.notifier.expired_keys,
    ] {
        counter.store(0, Ordering::Relaxed);
    }
    ctx.server.store.lazyfree.reset_stats();
    ctx.server.commands.reset_stats();
    ctx.reply.ok();
    Ok(())
}

pub fn rewrite(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let Some(path) = ctx.server.config.file.clone() else {
        return Err("ERR The server is running without a config file".into());
    };
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    // Users are kept in the file unless an ACL file holds them (Redis's
    // `rewriteConfigUserOption`).
    let users = if ctx.server.config.text(config::ACLFILE).is_empty() {
        ctx.server.acl.file_text(&ctx.server.commands)
    } else {
        String::new()
    };
    let text = rewritten(&ctx.server.config, &old, &users);
    let tmp = path.with_extension("tmp-rewrite");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::from(format!("ERR Rewriting config file: {e}")))?;
    ctx.reply.ok();
    Ok(())
}

/// Redis's rewrite rules: a directive already in the file keeps its place with the current
/// value; a changed setting missing from the file is appended; duplicates are dropped.
/// `users` (`user ...` lines) replace the file's user lines.
fn rewritten(config: &Config, old: &str, users: &str) -> String {
    let mut written = vec![false; SETTINGS.len()];
    let mut users_written = false;
    let mut out = String::new();
    for line in old.lines() {
        let words = crate::protocol::split_args(line.trim().as_bytes()).unwrap_or_default();
        if words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case(b"user"))
        {
            if !users_written {
                out.push_str(users);
                users_written = true;
            }
            continue;
        }
        let index = words
            .first()
            .and_then(|w| Config::lookup(&String::from_utf8_lossy(w)));
        match index {
            Some(i) if !line.trim_start().starts_with('#') => {
                if !written[i] {
                    written[i] = true;
                    out.push_str(&directive(config, i));
                    out.push('\n');
                }
            }
            _ => {
                if line != "# Generated by CONFIG REWRITE" {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
    }
    let defaults = Config::new();
    let mut header = false;
    for (i, already) in written.iter().enumerate() {
        if *already || i == config::DIR {
            continue;
        }
        if config.render(i) != defaults.render(i) {
            if !header {
                out.push_str("# Generated by CONFIG REWRITE\n");
                header = true;
            }
            out.push_str(&directive(config, i));
            out.push('\n');
        }
    }
    if !users_written {
        out.push_str(users);
    }
    out
}

fn directive(config: &Config, index: usize) -> String {
    let setting = &SETTINGS[index];
    let value = config.render(index);
    if setting.multi_arg && !value.is_empty() {
        format!("{} {}", setting.name, value)
    } else if value.is_empty() || value.contains([' ', '"', '\'']) {
        format!("{} {}", setting.name, repr(value.as_bytes()))
    } else {
        format!("{} {}", setting.name, value)
    }
}

pub fn help(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    reply_help(
        ctx,
        &[
            "GET <pattern>",
            "    Return parameters matching the glob-like <pattern> and their values.",
            "SET <directive> <value>",
            "    Set the configuration <directive> to <value>.",
            "RESETSTAT",
            "    Reset statistics reported by the INFO command.",
            "REWRITE",
            "    Rewrite the configuration file.",
        ],
    );
    Ok(())
}
