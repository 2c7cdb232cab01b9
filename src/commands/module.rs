//! MODULE: Oxidis loads no modules (the C module API is out of its scope), so LIST answers
//! an empty list and LOAD fails as Redis fails to load a library it cannot open, with the
//! reason in the log.

use bytes::Bytes;

use super::{CmdResult, Ctx, reply_help};

pub fn list(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    ctx.reply.array(0);
    Ok(())
}

/// MODULE LOAD and LOADEX.
pub fn load(_ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    tracing::warn!(
        "Module {} failed to load: Oxidis does not support modules",
        String::from_utf8_lossy(&args[2])
    );
    Err("ERR Error loading the extension. Please check the server logs.".into())
}

pub fn unload(_ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    Err("ERR Error unloading module: no such module with that name".into())
}

pub fn help(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    reply_help(
        ctx,
        &[
            "LIST",
            "    Return a list of loaded modules.",
            "LOAD <path> [<arg> ...]",
            "    Load a module library from <path>, passing to it any optional arguments.",
            "LOADEX <path> [[CONFIG NAME VALUE] [CONFIG NAME VALUE]] [ARGS ...]",
            "    Load a module library from <path>, while passing it module configurations and optional arguments.",
            "UNLOAD <name>",
            "    Unload a module.",
        ],
    );
    Ok(())
}
