//! COMMAND and its subcommands, answered from the command table in Redis 7's formats.

use bytes::Bytes;

use super::meta::{Arg, BeginSearch, FindKeys, KeySpec, categories, visible_flags};
use super::{CmdResult, Command, Ctx, KeyFlags, SYNTAX, reply_help};
use crate::protocol::Reply;
use crate::util::{eq_ignore_case, glob_match};

pub fn command(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let table = &ctx.server.commands;
    ctx.reply.array(table.all().count());
    for c in table.all() {
        write_info(ctx.reply, c);
    }
    Ok(())
}

pub fn count(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    ctx.reply.int(ctx.server.commands.all().count() as i64);
    Ok(())
}

pub fn info(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if args.len() == 2 {
        return command(ctx, args);
    }
    ctx.reply.array(args.len() - 2);
    for name in &args[2..] {
        match ctx.server.commands.by_full_name(name) {
            Some(c) => write_info(ctx.reply, c),
            None => ctx.reply.null_array(),
        }
    }
    Ok(())
}

pub fn docs(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let table = &ctx.server.commands;
    let chosen: Vec<&Command> = if args.len() == 2 {
        table.all().collect()
    } else {
        args[2..]
            .iter()
            .filter_map(|name| table.by_full_name(name))
            .collect()
    };
    ctx.reply.map(chosen.len());
    for c in chosen {
        ctx.reply.bulk(c.name.as_bytes());
        write_docs(ctx.reply, c);
    }
    Ok(())
}

pub fn list(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let mut filter: Option<(String, &Bytes)> = None;
    if args.len() > 2 {
        if args.len() != 5 || !eq_ignore_case(&args[2], "filterby") {
            return Err(SYNTAX.into());
        }
        let kind = String::from_utf8_lossy(&args[3]).to_ascii_lowercase();
        if !["module", "aclcat", "pattern"].contains(&kind.as_str()) {
            return Err(SYNTAX.into());
        }
        filter = Some((kind, &args[4]));
    }
    let names: Vec<&str> = ctx
        .server
        .commands
        .all_with_subcommands()
        .filter(|c| match &filter {
            None => true,
            Some((kind, arg)) => match kind.as_str() {
                "aclcat" => categories(c.acl).any(|cat| eq_ignore_case(arg, cat)),
                "pattern" => glob_match(arg, c.name.as_bytes(), true),
                _ => false,
            },
        })
        .map(|c| c.name.as_str())
        .collect();
    ctx.reply.bulks(names.iter().map(|n| n.as_bytes()));
    Ok(())
}

fn getkeys_impl(ctx: &mut Ctx, args: &[Bytes], with_flags: bool) -> CmdResult {
    let target = &args[2..];
    let command = ctx
        .server
        .commands
        .resolve(target)
        .map_err(|_| super::Error::from("ERR Invalid command specified"))?;
    if command.spec.key_specs.is_empty() {
        return Err("ERR The command has no key arguments".into());
    }
    if !command.arity_ok(target.len()) {
        return Err("ERR Invalid number of arguments specified for command".into());
    }
    let keys = command.keys(target);
    if keys.is_empty() {
        if command.has_flag("no_mandatory_keys") {
            ctx.reply.array(0);
            return Ok(());
        }
        return Err("ERR Invalid arguments specified for command".into());
    }
    ctx.reply.array(keys.len());
    for (pos, flags) in keys {
        if with_flags {
            ctx.reply.array(2);
            ctx.reply.bulk(&target[pos]);
            write_key_flags(ctx.reply, flags);
        } else {
            ctx.reply.bulk(&target[pos]);
        }
    }
    Ok(())
}

pub fn getkeys(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    getkeys_impl(ctx, args, false)
}

pub fn getkeysandflags(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    getkeys_impl(ctx, args, true)
}

pub fn help(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    reply_help(
        ctx,
        &[
            "(no subcommand)",
            "    Return details about all Redis commands.",
            "COUNT",
            "    Return the total number of commands in this Redis server.",
            "LIST",
            "    Return a list of all commands in this Redis server.",
            "INFO [<command-name> ...]",
            "    Return details about multiple Redis commands.",
            "    If no command names are given, documentation details for all",
            "    commands are returned.",
            "DOCS [<command-name> ...]",
            "    Return documentation details about multiple Redis commands.",
            "    If no command names are given, documentation details for all",
            "    commands are returned.",
            "GETKEYS <full-command>",
            "    Return the keys from a full Redis command.",
            "GETKEYSANDFLAGS <full-command>",
            "    Return the keys and the access flags from a full Redis command.",
        ],
    );
    Ok(())
}

/// One COMMAND INFO entry: Redis's 10-element array.
fn write_info(r: &mut Reply, c: &Command) {
    r.array(10);
    r.bulk(c.name.as_bytes());
    r.int(c.spec.arity as i64);
    let flags: Vec<&str> = visible_flags(c.flags).collect();
    r.set(flags.len());
    flags.iter().for_each(|f| r.simple(f));
    let (first, last, step) = c.legacy_range;
    r.int(first as i64);
    r.int(last as i64);
    r.int(step as i64);
    let cats: Vec<&str> = categories(c.acl).collect();
    r.set(cats.len());
    cats.iter().for_each(|cat| r.simple(&format!("@{cat}")));
    r.set(c.spec.tips.len());
    c.spec.tips.iter().for_each(|t| r.bulk(t.as_bytes()));
    r.set(c.spec.key_specs.len());
    for spec in c.spec.key_specs {
        write_key_spec(r, spec);
    }
    r.array(c.subcommands.len());
    for sub in &c.subcommands {
        write_info(r, sub);
    }
}

fn write_key_flags(r: &mut Reply, flags: KeyFlags) {
    r.set(flags.iter().count());
    for flag in flags.iter() {
        // Redis prints the access-type flags in capitals and the rest in lower case.
        if ["RO", "RW", "OW", "RM"].contains(&flag) {
            r.simple(flag);
        } else {
            r.simple(&flag.to_ascii_lowercase());
        }
    }
}

fn write_key_spec(r: &mut Reply, spec: &KeySpec) {
    r.map(3 + spec.notes.is_some() as usize);
    if let Some(notes) = spec.notes {
        r.bulk(b"notes");
        r.bulk(notes.as_bytes());
    }
    r.bulk(b"flags");
    write_key_flags(r, KeyFlags::Spec(spec.flags));
    r.bulk(b"begin_search");
    r.map(2);
    r.bulk(b"type");
    match &spec.begin_search {
        BeginSearch::Index(pos) => {
            r.bulk(b"index");
            r.bulk(b"spec");
            r.map(1);
            r.bulk(b"index");
            r.int(*pos as i64);
        }
        BeginSearch::Keyword { keyword, startfrom } => {
            r.bulk(b"keyword");
            r.bulk(b"spec");
            r.map(2);
            r.bulk(b"keyword");
            r.bulk(keyword.as_bytes());
            r.bulk(b"startfrom");
            r.int(*startfrom as i64);
        }
        BeginSearch::Unknown => {
            r.bulk(b"unknown");
            r.bulk(b"spec");
            r.map(0);
        }
    }
    r.bulk(b"find_keys");
    r.map(2);
    r.bulk(b"type");
    match &spec.find_keys {
        FindKeys::Range {
            lastkey,
            step,
            limit,
        } => {
            r.bulk(b"range");
            r.bulk(b"spec");
            r.map(3);
            for (name, value) in [("lastkey", lastkey), ("keystep", step), ("limit", limit)] {
                r.bulk(name.as_bytes());
                r.int(*value as i64);
            }
        }
        FindKeys::Keynum {
            keynumidx,
            firstkey,
            step,
        } => {
            r.bulk(b"keynum");
            r.bulk(b"spec");
            r.map(3);
            for (name, value) in [
                ("keynumidx", keynumidx),
                ("firstkey", firstkey),
                ("keystep", step),
            ] {
                r.bulk(name.as_bytes());
                r.int(*value as i64);
            }
        }
        FindKeys::Unknown => {
            r.bulk(b"unknown");
            r.bulk(b"spec");
            r.map(0);
        }
    }
}

/// One COMMAND DOCS entry.
fn write_docs(r: &mut Reply, c: &Command) {
    let s = c.spec;
    let fields = 3
        + s.complexity.is_some() as usize
        + !s.doc_flags.is_empty() as usize
        + s.deprecated_since.is_some() as usize
        + s.replaced_by.is_some() as usize
        + !s.history.is_empty() as usize
        + !s.args.is_empty() as usize
        + !c.subcommands.is_empty() as usize;
    r.map(fields);
    r.bulk(b"summary");
    r.bulk(s.summary.as_bytes());
    r.bulk(b"since");
    r.bulk(s.since.as_bytes());
    r.bulk(b"group");
    r.bulk(s.group.as_bytes());
    if let Some(complexity) = s.complexity {
        r.bulk(b"complexity");
        r.bulk(complexity.as_bytes());
    }
    if !s.doc_flags.is_empty() {
        r.bulk(b"doc_flags");
        r.set(s.doc_flags.len());
        s.doc_flags.iter().for_each(|f| r.simple(f));
    }
    for (name, value) in [
        ("deprecated_since", s.deprecated_since),
        ("replaced_by", s.replaced_by),
    ] {
        if let Some(value) = value {
            r.bulk(name.as_bytes());
            r.bulk(value.as_bytes());
        }
    }
    if !s.history.is_empty() {
        r.bulk(b"history");
        r.set(s.history.len());
        for (version, change) in s.history {
            r.array(2);
            r.bulk(version.as_bytes());
            r.bulk(change.as_bytes());
        }
    }
    if !s.args.is_empty() {
        r.bulk(b"arguments");
        write_args(r, &s.args);
    }
    if !c.subcommands.is_empty() {
        r.bulk(b"subcommands");
        r.map(c.subcommands.len());
        for sub in &c.subcommands {
            r.bulk(sub.name.as_bytes());
            write_docs(r, sub);
        }
    }
}

fn write_args(r: &mut Reply, args: &[Arg]) {
    r.array(args.len());
    for arg in args {
        let has_children = matches!(&*arg.kind, "oneof" | "block");
        let fields = 2
            + (arg.key_spec_index != -1) as usize
            + arg.token.is_some() as usize
            + arg.summary.is_some() as usize
            + arg.since.is_some() as usize
            + arg.deprecated_since.is_some() as usize
            + !arg.flags.is_empty() as usize
            + has_children as usize;
        r.map(fields);
        r.bulk(b"name");
        r.bulk(arg.name.as_bytes());
        r.bulk(b"type");
        r.bulk(arg.kind.as_bytes());
        if arg.key_spec_index != -1 {
            r.bulk(b"key_spec_index");
            r.int(arg.key_spec_index as i64);
        }
        for (name, value) in [
            ("token", arg.token),
            ("summary", arg.summary),
            ("since", arg.since),
            ("deprecated_since", arg.deprecated_since),
        ] {
            if let Some(value) = value {
                r.bulk(name.as_bytes());
                r.bulk(value.as_bytes());
            }
        }
        if !arg.flags.is_empty() {
            r.bulk(b"flags");
            r.set(arg.flags.len());
            arg.flags.iter().for_each(|f| r.simple(f));
        }
        if has_children {
            r.bulk(b"arguments");
            write_args(r, &arg.args);
        }
    }
}
