//! THE command table. Each row pairs a command name with its handler; everything else a row
//! needs (arity, flags, key positions, ACL categories, docs) comes from Redis's own command
//! reference in `spec.rs`. Dispatch, arity errors, COMMAND and key extraction all read this.

use std::collections::HashMap;

use bytes::Bytes;

use super::meta::{self, CommandSpec, flag_bit};
use super::{
    CmdResult, Ctx, Handler, acl, bitmaps, command, config, connection, geo, hashes, hyperloglog,
    keys, lists, memory, module, persistence, printable, pubsub, replication, scripting, server,
    sets, sort, spec, streams, strings, transactions, zsets,
};
use crate::client::Queued;
use crate::util::counter::Counter;

/// Extra behaviour of a row that Redis's reference data does not carry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Decided by the number of keys in the call: one key runs beside other commands,
    /// several keys run alone.
    ByKeys,
    /// Touches whole databases: always runs alone.
    Exclusive,
    /// Runs a script (EVAL, FCALL ...): alone, and for a connection on the script thread (see
    /// `crate::scripting`).
    Script,
}

/// How a command behaves while its client is in MULTI.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TxRole {
    Queued,
    /// Runs at once: it steers the transaction or the connection.
    Immediate,
    /// EXEC: a refusal to run it discards the transaction.
    Exec,
}

/// A key's flags (`RW`, `ACCESS`, `UPDATE` ...): a key spec's, or those a command's own key
/// finder gives.
#[derive(Clone, Copy)]
pub enum KeyFlags {
    Spec(meta::Words),
    Fixed(&'static [&'static str]),
}

impl KeyFlags {
    pub fn iter(self) -> impl Iterator<Item = &'static str> {
        let (spec, fixed) = match self {
            KeyFlags::Spec(words) => (Some(words.iter()), None),
            KeyFlags::Fixed(flags) => (None, Some(flags.iter().copied())),
        };
        spec.into_iter()
            .flatten()
            .chain(fixed.into_iter().flatten())
    }
}

/// The ACL access a key with these flags needs, or None for a shard channel (NOT_KEY).
fn acl_access(flags: KeyFlags) -> Option<u8> {
    let mut access = 0;
    for flag in flags.iter() {
        match flag {
            "NOT_KEY" => return None,
            "ACCESS" => access |= crate::acl::selector::READ,
            "INSERT" | "DELETE" | "UPDATE" => access |= crate::acl::selector::WRITE,
            _ => {}
        }
    }
    Some(access)
}

/// Key positions, each with its flags.
type KeyFinder = fn(&[Bytes]) -> Vec<(usize, KeyFlags)>;

/// Commands whose keys their key specs cannot locate ("unknown" begin_search): Redis finds
/// them with a function of its own, and so do we.
/// SET's and BITFIELD's too, whose key flags depend on their arguments ("VARIABLE_FLAGS").
const KEY_FINDERS: &[(&str, KeyFinder)] = &[
    ("bitfield", bitmaps::bitfield_keys),
    ("set", strings::set_keys),
    ("sort", sort::keys),
];

/// Commands that run at once inside MULTI, as Redis's `processCommand` lists them.
const RUN_INSIDE_MULTI: &[&str] = &["discard", "multi", "watch", "quit", "reset"];

/// The only commands a RESP2 client may send while subscribed.
const ALLOWED_WHILE_SUBSCRIBED: &[&str] = &[
    "subscribe",
    "ssubscribe",
    "unsubscribe",
    "sunsubscribe",
    "psubscribe",
    "punsubscribe",
    "ping",
    "quit",
    "reset",
];

pub struct Command {
    /// Position in the table, counting subcommands (see `CommandTable::name_of`).
    pub id: usize,
    /// Lowercase full name: `get`, `client|kill`.
    pub name: String,
    pub spec: &'static CommandSpec,
    pub flags: u32,
    pub acl: u32,
    pub legacy_range: (i32, i32, i32),
    pub movable_keys: bool,
    handler: Option<Handler>,
    pub(super) access: Access,
    pub tx: TxRole,
    key_finder: Option<KeyFinder>,
    /// Runs for a RESP2 client in subscribed mode.
    pub while_subscribed: bool,
    pub subcommands: Vec<Command>,
    /// False for Redis commands Oxidis does not have: only ACL rules see them.
    pub implemented: bool,
    pub calls: Counter,
    pub usec: Counter,
    pub rejected: Counter,
    pub failed: Counter,
    /// Call durations for INFO latencystats, made on the first call.
    pub latency: std::sync::OnceLock<crate::util::histogram::Histogram>,
}

impl Command {
    pub fn has_flag(&self, name: &str) -> bool {
        self.flags & flag_bit(name) != 0
    }

    pub fn arity(&self) -> i32 {
        self.spec.arity
    }

    pub fn arity_ok(&self, argc: usize) -> bool {
        let arity = self.spec.arity;
        (arity > 0 && argc == arity as usize) || (arity < 0 && argc >= (-arity) as usize)
    }

    /// Argument positions that hold keys in this call, each with its flags.
    pub fn keys(&self, args: &[Bytes]) -> Vec<(usize, KeyFlags)> {
        match self.key_finder {
            Some(find) => find(args),
            None => meta::key_positions(&self.spec.key_specs, args)
                .into_iter()
                .map(|(position, spec)| (position, KeyFlags::Spec(self.spec.key_specs[spec].flags)))
                .collect(),
        }
    }

    /// Argument positions that hold keys in this call.
    pub fn key_positions(&self, args: &[Bytes]) -> Vec<usize> {
        self.keys(args)
            .into_iter()
            .map(|(position, _)| position)
            .collect()
    }

    /// Calls `visit` with each key and the access ACL key patterns must grant it (`%R~`,
    /// `%W~`) until it returns false: reading for ACCESS, writing for INSERT, DELETE and
    /// UPDATE (Redis's `ACLSelectorCheckKey`). Shard channels (NOT_KEY) are not keys. Runs
    /// for every command of a user with key patterns, so it collects nothing.
    pub fn visit_keys_with_access(&self, args: &[Bytes], mut visit: impl FnMut(usize, u8) -> bool) {
        let mut visit_flags = |position: usize, flags: KeyFlags| match acl_access(flags) {
            Some(access) => visit(position, access),
            None => true,
        };
        match self.key_finder {
            Some(find) => {
                for (position, flags) in find(args) {
                    if !visit_flags(position, flags) {
                        return;
                    }
                }
            }
            None => meta::visit_keys(&self.spec.key_specs, args, |position, spec| {
                visit_flags(position, KeyFlags::Spec(self.spec.key_specs[spec].flags))
            }),
        }
    }

    /// Whether this call must run with the keyspace to itself.
    pub fn exclusive(&self, args: &[Bytes]) -> bool {
        match self.access {
            Access::Exclusive => true,
            Access::ByKeys if !self.movable_keys && self.legacy_range.0 == self.legacy_range.1 => {
                false
            }
            Access::ByKeys => self.key_positions(args).len() > 1,
            Access::Script => true,
        }
    }

    /// Runs the handler. A container (CLIENT, CONFIG ...) reaches here only with too few
    /// arguments, which the arity check already refused. A client with CLIENT NO-TOUCH moves
    /// no key's access clock, but with TOUCH; nor do the commands its scripts and
    /// transactions call.
    pub fn run(&self, ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
        match self.handler {
            Some(handler) => {
                let untouched = ctx.client.handle.has_flag(crate::client::FLAG_NO_TOUCH)
                    && self.name != "touch";
                crate::store::clock::untouched_while(untouched, || handler(ctx, args))
            }
            None => {
                Err(format!("ERR wrong number of arguments for '{}' command", self.name).into())
            }
        }
    }
}

pub struct CommandTable {
    commands: Vec<Command>,
    by_name: HashMap<Vec<u8>, usize, foldhash::fast::RandomState>,
    names: Vec<String>,
}

/// The rows: full command name, access, handler.
const ROWS: &[(&str, Access, Handler)] = {
    use Access::*;
    &[
        // strings
        ("append", ByKeys, strings::append),
        ("decr", ByKeys, strings::decr),
        ("decrby", ByKeys, strings::decrby),
        ("get", ByKeys, strings::get),
        ("getdel", ByKeys, strings::getdel),
        ("getex", ByKeys, strings::getex),
        ("getrange", ByKeys, strings::getrange),
        ("getset", ByKeys, strings::getset),
        ("incr", ByKeys, strings::incr),
        ("incrby", ByKeys, strings::incrby),
        ("incrbyfloat", ByKeys, strings::incrbyfloat),
        ("lcs", ByKeys, strings::lcs),
        ("mget", ByKeys, strings::mget),
        ("mset", ByKeys, strings::mset),
        ("msetnx", ByKeys, strings::msetnx),
        ("psetex", ByKeys, strings::psetex),
        ("set", ByKeys, strings::set),
        ("setex", ByKeys, strings::setex),
        ("setnx", ByKeys, strings::setnx),
        ("setrange", ByKeys, strings::setrange),
        ("strlen", ByKeys, strings::strlen),
        ("substr", ByKeys, strings::getrange),
        // bitmaps
        ("bitcount", ByKeys, bitmaps::bitcount),
        ("bitfield", ByKeys, bitmaps::bitfield),
        ("bitfield_ro", ByKeys, bitmaps::bitfield_ro),
        ("bitop", ByKeys, bitmaps::bitop),
        ("bitpos", ByKeys, bitmaps::bitpos),
        ("getbit", ByKeys, bitmaps::getbit),
        ("setbit", ByKeys, bitmaps::setbit),
        // geo
        ("geoadd", ByKeys, geo::geoadd),
        ("geodist", ByKeys, geo::geodist),
        ("geohash", ByKeys, geo::geohash),
        ("geopos", ByKeys, geo::geopos),
        ("georadius", ByKeys, geo::georadius),
        ("georadius_ro", ByKeys, geo::georadius_ro),
        ("georadiusbymember", ByKeys, geo::georadiusbymember),
        ("georadiusbymember_ro", ByKeys, geo::georadiusbymember_ro),
        ("geosearch", ByKeys, geo::geosearch),
        ("geosearchstore", ByKeys, geo::geosearchstore),
        // HyperLogLog
        ("pfadd", ByKeys, hyperloglog::pfadd),
        ("pfcount", ByKeys, hyperloglog::pfcount),
        ("pfdebug", ByKeys, hyperloglog::pfdebug),
        ("pfmerge", ByKeys, hyperloglog::pfmerge),
        ("pfselftest", ByKeys, hyperloglog::pfselftest),
        // streams
        ("xack", ByKeys, streams::xack),
        ("xadd", ByKeys, streams::xadd),
        ("xautoclaim", ByKeys, streams::xautoclaim),
        ("xclaim", ByKeys, streams::xclaim),
        ("xdel", ByKeys, streams::xdel),
        ("xgroup|create", ByKeys, streams::xgroup_create),
        (
            "xgroup|createconsumer",
            ByKeys,
            streams::xgroup_createconsumer,
        ),
        ("xgroup|delconsumer", ByKeys, streams::xgroup_delconsumer),
        ("xgroup|destroy", ByKeys, streams::xgroup_destroy),
        ("xgroup|help", ByKeys, streams::xgroup_help),
        ("xgroup|setid", ByKeys, streams::xgroup_setid),
        ("xinfo|consumers", ByKeys, streams::xinfo_consumers),
        ("xinfo|groups", ByKeys, streams::xinfo_groups),
        ("xinfo|help", ByKeys, streams::xinfo_help),
        ("xinfo|stream", ByKeys, streams::xinfo_stream),
        ("xlen", ByKeys, streams::xlen),
        ("xpending", ByKeys, streams::xpending),
        ("xrange", ByKeys, streams::xrange),
        ("xread", Exclusive, streams::xread),
        ("xreadgroup", Exclusive, streams::xreadgroup),
        ("xrevrange", ByKeys, streams::xrevrange),
        ("xsetid", ByKeys, streams::xsetid),
        ("xtrim", ByKeys, streams::xtrim),
        // hashes
        ("hdel", ByKeys, hashes::hdel),
        ("hexists", ByKeys, hashes::hexists),
        ("hget", ByKeys, hashes::hget),
        ("hgetall", ByKeys, hashes::hgetall),
        ("hincrby", ByKeys, hashes::hincrby),
        ("hincrbyfloat", ByKeys, hashes::hincrbyfloat),
        ("hkeys", ByKeys, hashes::hkeys),
        ("hlen", ByKeys, hashes::hlen),
        ("hmget", ByKeys, hashes::hmget),
        ("hmset", ByKeys, hashes::hmset),
        ("hrandfield", ByKeys, hashes::hrandfield),
        ("hscan", ByKeys, hashes::hscan),
        ("hset", ByKeys, hashes::hset),
        ("hsetnx", ByKeys, hashes::hsetnx),
        ("hstrlen", ByKeys, hashes::hstrlen),
        ("hvals", ByKeys, hashes::hvals),
        // lists
        ("blmove", Exclusive, lists::blmove),
        ("blmpop", Exclusive, lists::blmpop),
        ("blpop", Exclusive, lists::blpop),
        ("brpop", Exclusive, lists::brpop),
        ("brpoplpush", Exclusive, lists::brpoplpush),
        ("lindex", ByKeys, lists::lindex),
        ("linsert", ByKeys, lists::linsert),
        ("llen", ByKeys, lists::llen),
        ("lmove", ByKeys, lists::lmove),
        ("lmpop", ByKeys, lists::lmpop),
        ("lpop", ByKeys, lists::lpop),
        ("lpos", ByKeys, lists::lpos),
        ("lpush", ByKeys, lists::lpush),
        ("lpushx", ByKeys, lists::lpushx),
        ("lrange", ByKeys, lists::lrange),
        ("lrem", ByKeys, lists::lrem),
        ("lset", ByKeys, lists::lset),
        ("ltrim", ByKeys, lists::ltrim),
        ("rpop", ByKeys, lists::rpop),
        ("rpoplpush", ByKeys, lists::rpoplpush),
        ("rpush", ByKeys, lists::rpush),
        ("rpushx", ByKeys, lists::rpushx),
        // pub/sub
        ("psubscribe", ByKeys, pubsub::psubscribe),
        ("publish", ByKeys, pubsub::publish),
        ("pubsub|channels", ByKeys, pubsub::pubsub_channels),
        ("pubsub|help", ByKeys, pubsub::pubsub_help),
        ("pubsub|numpat", ByKeys, pubsub::pubsub_numpat),
        ("pubsub|numsub", ByKeys, pubsub::pubsub_numsub),
        ("pubsub|shardchannels", ByKeys, pubsub::pubsub_shardchannels),
        ("pubsub|shardnumsub", ByKeys, pubsub::pubsub_shardnumsub),
        ("punsubscribe", ByKeys, pubsub::punsubscribe),
        ("spublish", ByKeys, pubsub::spublish),
        ("ssubscribe", ByKeys, pubsub::ssubscribe),
        ("subscribe", ByKeys, pubsub::subscribe_channels),
        ("sunsubscribe", ByKeys, pubsub::sunsubscribe),
        ("unsubscribe", ByKeys, pubsub::unsubscribe),
        // sets
        ("sadd", ByKeys, sets::sadd),
        ("scard", ByKeys, sets::scard),
        ("sdiff", ByKeys, sets::sdiff),
        ("sdiffstore", ByKeys, sets::sdiffstore),
        ("sinter", ByKeys, sets::sinter),
        ("sintercard", ByKeys, sets::sintercard),
        ("sinterstore", ByKeys, sets::sinterstore),
        ("sismember", ByKeys, sets::sismember),
        ("smembers", ByKeys, sets::smembers),
        ("smismember", ByKeys, sets::smismember),
        ("smove", ByKeys, sets::smove),
        ("spop", ByKeys, sets::spop),
        ("srandmember", ByKeys, sets::srandmember),
        ("srem", ByKeys, sets::srem),
        ("sscan", ByKeys, sets::sscan),
        ("sunion", ByKeys, sets::sunion),
        ("sunionstore", ByKeys, sets::sunionstore),
        // sorted sets
        ("bzmpop", Exclusive, zsets::bzmpop),
        ("bzpopmax", Exclusive, zsets::bzpopmax),
        ("bzpopmin", Exclusive, zsets::bzpopmin),
        ("zadd", ByKeys, zsets::zadd),
        ("zcard", ByKeys, zsets::zcard),
        ("zcount", ByKeys, zsets::zcount),
        ("zdiff", ByKeys, zsets::zdiff),
        ("zdiffstore", ByKeys, zsets::zdiffstore),
        ("zincrby", ByKeys, zsets::zincrby),
        ("zinter", ByKeys, zsets::zinter),
        ("zintercard", ByKeys, zsets::zintercard),
        ("zinterstore", ByKeys, zsets::zinterstore),
        ("zlexcount", ByKeys, zsets::zlexcount),
        ("zmpop", ByKeys, zsets::zmpop),
        ("zmscore", ByKeys, zsets::zmscore),
        ("zpopmax", ByKeys, zsets::zpopmax),
        ("zpopmin", ByKeys, zsets::zpopmin),
        ("zrandmember", ByKeys, zsets::zrandmember),
        ("zrange", ByKeys, zsets::zrange),
        ("zrangebylex", ByKeys, zsets::zrangebylex),
        ("zrangebyscore", ByKeys, zsets::zrangebyscore),
        ("zrangestore", ByKeys, zsets::zrangestore),
        ("zrank", ByKeys, zsets::zrank),
        ("zrem", ByKeys, zsets::zrem),
        ("zremrangebylex", ByKeys, zsets::zremrangebylex),
        ("zremrangebyrank", ByKeys, zsets::zremrangebyrank),
        ("zremrangebyscore", ByKeys, zsets::zremrangebyscore),
        ("zrevrange", ByKeys, zsets::zrevrange),
        ("zrevrangebylex", ByKeys, zsets::zrevrangebylex),
        ("zrevrangebyscore", ByKeys, zsets::zrevrangebyscore),
        ("zrevrank", ByKeys, zsets::zrevrank),
        ("zscan", ByKeys, zsets::zscan),
        ("zscore", ByKeys, zsets::zscore),
        ("zunion", ByKeys, zsets::zunion),
        ("zunionstore", ByKeys, zsets::zunionstore),
        // access control
        ("acl|cat", ByKeys, acl::cat),
        ("acl|deluser", Exclusive, acl::deluser),
        ("acl|dryrun", ByKeys, acl::dryrun),
        ("acl|genpass", ByKeys, acl::genpass),
        ("acl|getuser", ByKeys, acl::getuser),
        ("acl|help", ByKeys, acl::help),
        ("acl|list", ByKeys, acl::list),
        ("acl|load", Exclusive, acl::load),
        ("acl|log", ByKeys, acl::log),
        ("acl|save", ByKeys, acl::save),
        ("acl|setuser", Exclusive, acl::setuser),
        ("acl|users", ByKeys, acl::users),
        ("acl|whoami", ByKeys, acl::whoami),
        // scripting
        ("eval", Script, scripting::eval),
        ("eval_ro", Script, scripting::eval_ro),
        ("evalsha", Script, scripting::evalsha),
        ("evalsha_ro", Script, scripting::evalsha_ro),
        ("fcall", Script, scripting::fcall),
        ("fcall_ro", Script, scripting::fcall_ro),
        ("function|delete", Exclusive, scripting::function_delete),
        ("function|dump", ByKeys, scripting::function_dump),
        ("function|flush", Exclusive, scripting::function_flush),
        ("function|help", ByKeys, scripting::function_help),
        ("function|kill", ByKeys, scripting::function_kill),
        ("function|list", ByKeys, scripting::function_list),
        ("function|load", Exclusive, scripting::function_load),
        ("function|restore", Exclusive, scripting::function_restore),
        ("function|stats", ByKeys, scripting::function_stats),
        ("script|exists", ByKeys, scripting::script_exists),
        ("script|flush", ByKeys, scripting::script_flush),
        ("script|help", ByKeys, scripting::script_help),
        ("script|kill", ByKeys, scripting::script_kill),
        ("script|load", ByKeys, scripting::script_load),
        // transactions
        ("discard", ByKeys, transactions::discard),
        ("exec", Exclusive, transactions::exec),
        ("multi", ByKeys, transactions::multi),
        ("unwatch", ByKeys, transactions::unwatch),
        ("watch", ByKeys, transactions::watch),
        // keys
        ("copy", ByKeys, keys::copy),
        ("del", ByKeys, keys::del),
        ("exists", ByKeys, keys::exists),
        ("expire", ByKeys, keys::expire),
        ("expireat", ByKeys, keys::expireat),
        ("expiretime", ByKeys, keys::expiretime),
        ("keys", Exclusive, keys::keys),
        ("move", Exclusive, keys::move_key),
        ("object|encoding", ByKeys, keys::object_encoding),
        ("object|freq", ByKeys, keys::object_freq),
        ("object|help", ByKeys, keys::object_help),
        ("object|idletime", ByKeys, keys::object_idletime),
        ("object|refcount", ByKeys, keys::object_refcount),
        ("persist", ByKeys, keys::persist),
        ("pexpire", ByKeys, keys::pexpire),
        ("pexpireat", ByKeys, keys::pexpireat),
        ("pexpiretime", ByKeys, keys::pexpiretime),
        ("pttl", ByKeys, keys::pttl),
        ("randomkey", Exclusive, keys::randomkey),
        ("rename", ByKeys, keys::rename),
        ("renamenx", ByKeys, keys::renamenx),
        ("scan", Exclusive, keys::scan),
        ("sort", Exclusive, sort::sort),
        ("sort_ro", Exclusive, sort::sort_ro),
        ("touch", ByKeys, keys::touch),
        ("ttl", ByKeys, keys::ttl),
        ("type", ByKeys, keys::key_type),
        ("unlink", ByKeys, keys::unlink),
        // connection
        ("auth", ByKeys, acl::auth),
        ("client|caching", ByKeys, connection::client_caching),
        ("client|getname", ByKeys, connection::client_getname),
        ("client|getredir", ByKeys, connection::client_getredir),
        ("client|help", ByKeys, connection::client_help),
        ("client|id", ByKeys, connection::client_id),
        ("client|info", ByKeys, connection::client_info),
        ("client|kill", ByKeys, connection::client_kill),
        ("client|list", ByKeys, connection::client_list),
        ("client|no-evict", ByKeys, connection::client_no_evict),
        ("client|no-touch", ByKeys, connection::client_no_touch),
        ("client|pause", ByKeys, connection::client_pause),
        ("client|reply", ByKeys, connection::client_reply),
        ("client|setinfo", ByKeys, connection::client_setinfo),
        ("client|setname", ByKeys, connection::client_setname),
        ("client|tracking", ByKeys, connection::client_tracking),
        (
            "client|trackinginfo",
            ByKeys,
            connection::client_trackinginfo,
        ),
        ("client|unblock", Exclusive, connection::client_unblock),
        ("client|unpause", ByKeys, connection::client_unpause),
        ("echo", ByKeys, connection::echo),
        ("hello", ByKeys, connection::hello),
        ("ping", ByKeys, connection::ping),
        ("quit", ByKeys, connection::quit),
        ("reset", ByKeys, connection::reset),
        ("select", ByKeys, connection::select),
        // server
        ("command", ByKeys, command::command),
        ("command|count", ByKeys, command::count),
        ("command|docs", ByKeys, command::docs),
        ("command|getkeys", ByKeys, command::getkeys),
        ("command|getkeysandflags", ByKeys, command::getkeysandflags),
        ("command|help", ByKeys, command::help),
        ("command|info", ByKeys, command::info),
        ("command|list", ByKeys, command::list),
        ("config|get", ByKeys, config::get),
        ("config|help", ByKeys, config::help),
        ("config|resetstat", ByKeys, config::resetstat),
        ("config|rewrite", ByKeys, config::rewrite),
        ("config|set", Exclusive, config::set),
        // persistence
        ("bgrewriteaof", Exclusive, persistence::bgrewriteaof),
        ("bgsave", Exclusive, persistence::bgsave),
        ("dump", ByKeys, persistence::dump),
        ("restore", ByKeys, persistence::restore),
        ("save", Exclusive, persistence::save),
        // replication
        ("failover", Exclusive, replication::failover),
        ("psync", ByKeys, replication::psync),
        ("replconf", ByKeys, replication::replconf),
        ("replicaof", Exclusive, replication::replicaof),
        ("slaveof", Exclusive, replication::replicaof),
        ("role", ByKeys, replication::role),
        ("sync", ByKeys, replication::sync),
        ("wait", ByKeys, replication::wait),
        // server
        ("dbsize", ByKeys, server::dbsize),
        ("debug", Exclusive, server::debug),
        ("flushall", Exclusive, server::flushall),
        ("flushdb", Exclusive, server::flushdb),
        ("info", ByKeys, server::info),
        ("lastsave", ByKeys, server::lastsave),
        ("latency|doctor", ByKeys, server::latency_doctor),
        ("latency|help", ByKeys, server::latency_help),
        ("latency|history", ByKeys, server::latency_history),
        ("latency|latest", ByKeys, server::latency_latest),
        ("latency|reset", ByKeys, server::latency_reset),
        ("memory|doctor", ByKeys, memory::memory_doctor),
        ("memory|help", ByKeys, memory::memory_help),
        ("memory|malloc-stats", ByKeys, memory::memory_malloc_stats),
        ("memory|purge", ByKeys, memory::memory_purge),
        ("memory|stats", ByKeys, memory::memory_stats),
        ("memory|usage", ByKeys, memory::memory_usage),
        ("lolwut", ByKeys, server::lolwut),
        ("module|help", ByKeys, module::help),
        ("module|list", ByKeys, module::list),
        ("module|load", Exclusive, module::load),
        ("module|loadex", Exclusive, module::load),
        ("module|unload", Exclusive, module::unload),
        ("monitor", ByKeys, server::monitor),
        ("slowlog|get", ByKeys, server::slowlog_get),
        ("slowlog|help", ByKeys, server::slowlog_help),
        ("slowlog|len", ByKeys, server::slowlog_len),
        ("slowlog|reset", ByKeys, server::slowlog_reset),
        ("shutdown", Exclusive, server::shutdown),
        ("swapdb", Exclusive, server::swapdb),
        ("time", ByKeys, server::time),
    ]
};

impl CommandTable {
    pub fn new() -> CommandTable {
        let spec_of = |full: &str| -> &'static CommandSpec {
            let (container, name) = match full.split_once('|') {
                Some((c, n)) => (Some(c), n),
                None => (None, full),
            };
            spec::SPECS
                .iter()
                .find(|s| &*s.name == name && s.container.as_deref() == container)
                .unwrap_or_else(|| panic!("no spec for {full}"))
        };
        let build = |name: &str, access: Access, handler: Option<Handler>| {
            let spec = spec_of(name);
            let mut flags = spec.flags.iter().fold(0, |acc, f| acc | flag_bit(f));
            let acl = spec
                .acl_categories
                .iter()
                .fold(0, |acc, c| acc | meta::category_bit(c));
            let (legacy_range, movable_keys) = meta::legacy_range(&spec.key_specs);
            if movable_keys {
                flags |= flag_bit("movablekeys");
            }
            Command {
                id: 0,
                name: name.to_string(),
                spec,
                flags,
                acl: meta::implicit_categories(flags, acl),
                legacy_range,
                movable_keys,
                handler,
                access,
                tx: if name == "exec" {
                    TxRole::Exec
                } else if RUN_INSIDE_MULTI.contains(&name) {
                    TxRole::Immediate
                } else {
                    TxRole::Queued
                },
                while_subscribed: ALLOWED_WHILE_SUBSCRIBED.contains(&name),
                key_finder: KEY_FINDERS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|&(_, find)| find),
                implemented: handler.is_some(),
                subcommands: Vec::new(),
                calls: Counter::default(),
                usec: Counter::default(),
                rejected: Counter::default(),
                failed: Counter::default(),
                latency: std::sync::OnceLock::new(),
            }
        };
        let mut commands: Vec<Command> = Vec::new();
        let parent_of = |commands: &mut Vec<Command>, container: &str| match commands
            .iter()
            .position(|c| c.name == container)
        {
            Some(i) => i,
            None => {
                commands.push(build(container, Access::ByKeys, None));
                commands.len() - 1
            }
        };
        for &(name, access, handler) in ROWS {
            match name.split_once('|') {
                None => commands.push(build(name, access, Some(handler))),
                Some((container, _)) => {
                    let parent = parent_of(&mut commands, container);
                    commands[parent]
                        .subcommands
                        .push(build(name, access, Some(handler)));
                }
            }
        }
        // Redis's other commands are in the table too, unimplemented: ACL rules name them
        // (`+eval`, `-@hyperloglog`) and must mean what they mean in Redis.
        for spec in &spec::SPECS {
            let name: &str = &spec.name;
            match spec.container.as_deref() {
                None if !commands.iter().any(|c| c.name == name) => {
                    commands.push(build(name, Access::ByKeys, None));
                }
                Some(container) => {
                    let full = format!("{container}|{name}");
                    let parent = parent_of(&mut commands, container);
                    if !commands[parent].subcommands.iter().any(|c| c.name == full) {
                        commands[parent]
                            .subcommands
                            .push(build(&full, Access::ByKeys, None));
                    }
                }
                None => {}
            }
        }
        for command in &mut commands {
            command.implemented = if command.subcommands.is_empty() {
                command.handler.is_some()
            } else {
                command.subcommands.iter().any(|s| s.implemented)
            };
        }
        let mut names = Vec::new();
        for command in &mut commands {
            command.id = names.len();
            names.push(command.name.clone());
            for sub in &mut command.subcommands {
                sub.id = names.len();
                names.push(sub.name.clone());
            }
        }
        let by_name = commands
            .iter()
            .enumerate()
            .filter(|(_, c)| c.implemented)
            .map(|(i, c)| (c.name.as_bytes().to_vec(), i))
            .collect();
        CommandTable {
            commands,
            by_name,
            names,
        }
    }

    /// Finds a top-level command by name, ignoring case.
    pub fn get(&self, name: &[u8]) -> Option<&Command> {
        self.index_of(name).map(|i| &self.commands[i])
    }

    fn index_of(&self, name: &[u8]) -> Option<usize> {
        let mut lower = [0u8; 32];
        if name.len() > lower.len() {
            return None;
        }
        let lower = &mut lower[..name.len()];
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        self.by_name.get(&lower[..]).copied()
    }

    /// Finds the command or subcommand a request names (`CLIENT KILL` -> `client|kill`), or
    /// the error Redis gives for an unknown one.
    pub fn resolve(&self, args: &[Bytes]) -> Result<&Command, String> {
        let mut no_recent = crate::client::NO_COMMAND;
        self.resolve_recent(args, &mut no_recent)
    }

    /// `resolve`, first comparing the name with the top-level command at `recent`, which it
    /// then sets to the one named: a client mostly sends one command over and over, and a
    /// comparison is cheaper than the table lookup.
    pub fn resolve_recent(&self, args: &[Bytes], recent: &mut usize) -> Result<&Command, String> {
        *recent = self
            .recent_index(&args[0], *recent)
            .ok_or_else(|| unknown_command_error(args))?;
        let command = &self.commands[*recent];
        if command.subcommands.is_empty() || args.len() < 2 {
            return Ok(command);
        }
        command
            .find_subcommand(&args[1])
            .ok_or_else(|| unknown_subcommand_error(args))
    }

    /// `resolve` for a command queued by MULTI, starting from the command it had when queued.
    pub fn resolve_queued(&self, queued: &Queued) -> Result<&Command, String> {
        self.resolve_recent(&queued.args, &mut queued.command.clone())
    }

    /// The index of the top-level command `name`, comparing with the one at `recent` first.
    fn recent_index(&self, name: &[u8], recent: usize) -> Option<usize> {
        match self.commands.get(recent) {
            Some(command) if is_spelling_of(command.name.as_bytes(), name) => Some(recent),
            _ => self.index_of(name),
        }
    }

    /// Whether the command `name` takes a key as its first argument (GET, SET, LPUSH, ...);
    /// `recent` as for `resolve_recent`.
    pub fn first_argument_is_key(&self, name: &[u8], recent: &mut usize) -> bool {
        let Some(index) = self.recent_index(name, *recent) else {
            return false;
        };
        *recent = index;
        let command = &self.commands[index];
        command.subcommands.is_empty() && command.legacy_range.0 == 1
    }

    pub fn all(&self) -> impl Iterator<Item = &Command> {
        self.commands.iter().filter(|c| c.implemented)
    }

    /// Every command and subcommand.
    pub fn all_with_subcommands(&self) -> impl Iterator<Item = &Command> {
        self.every_with_subcommands().filter(|c| c.implemented)
    }

    /// Every command Redis has, with or without an implementation (what ACL rules see).
    pub fn every(&self) -> impl Iterator<Item = &Command> {
        self.commands.iter()
    }

    pub fn every_with_subcommands(&self) -> impl Iterator<Item = &Command> {
        self.commands
            .iter()
            .flat_map(|c| std::iter::once(c).chain(c.subcommands.iter()))
    }

    /// How many commands and subcommands there are: ids run from 0 to this.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// A command or `container|sub` by its full name.
    pub fn by_full_name(&self, name: &[u8]) -> Option<&Command> {
        self.any_by_full_name(name).filter(|c| c.implemented)
    }

    /// Like `by_full_name`, including the commands Oxidis does not have (for ACL rules).
    pub fn any_by_full_name(&self, name: &[u8]) -> Option<&Command> {
        let text = String::from_utf8_lossy(name).to_ascii_lowercase();
        let (parent, sub) = match text.split_once('|') {
            Some((parent, sub)) => (parent, Some(sub)),
            None => (text.as_str(), None),
        };
        let command = self.commands.iter().find(|c| c.name == parent)?;
        match sub {
            Some(sub) => command
                .subcommands
                .iter()
                .find(|s| s.name[parent.len() + 1..] == *sub),
            None => Some(command),
        }
    }

    /// The command or subcommand a request names, whether Oxidis has it or not.
    pub fn any_called(&self, args: &[Bytes]) -> Option<&Command> {
        let container = self.any_by_full_name(&args[0])?;
        let sub = args.get(1).filter(|_| !container.subcommands.is_empty());
        match sub {
            Some(sub) => {
                let full = [&args[0][..], b"|", &sub[..]].concat();
                self.any_by_full_name(&full)
            }
            None => Some(container),
        }
    }

    pub fn by_id(&self, id: usize) -> Option<&Command> {
        self.every_with_subcommands().find(|c| c.id == id)
    }

    /// The full name of the command with this `id`; `NULL` for none, as CLIENT LIST shows.
    pub fn name_of(&self, id: usize) -> &str {
        self.names.get(id).map(String::as_str).unwrap_or("NULL")
    }

    pub fn reset_stats(&self) {
        for c in self.all_with_subcommands() {
            for counter in [&c.calls, &c.usec, &c.rejected, &c.failed] {
                counter.reset();
            }
            if let Some(latency) = c.latency.get() {
                latency.reset();
            }
        }
    }
}

impl Command {
    pub fn find_subcommand(&self, name: &[u8]) -> Option<&Command> {
        let prefix = self.name.len() + 1;
        self.subcommands
            .iter()
            .find(|s| s.implemented && s.name.as_bytes()[prefix..].eq_ignore_ascii_case(name))
    }
}

impl Default for CommandTable {
    fn default() -> Self {
        CommandTable::new()
    }
}

/// Whether `input` is the lowercase command name `name` in any case.
fn is_spelling_of(name: &[u8], input: &[u8]) -> bool {
    name.len() == input.len()
        && name
            .iter()
            .zip(input)
            .all(|(n, i)| *n == i.to_ascii_lowercase())
}

/// The error for an unknown command, as Redis's `commandCheckExistence` words it.
#[cold]
#[inline(never)]
pub fn unknown_command_error(args: &[Bytes]) -> String {
    let mut quoted = String::new();
    for arg in &args[1..] {
        if quoted.len() >= 128 {
            break;
        }
        quoted.push_str(&format!("'{}' ", printable(arg, 128 - quoted.len())));
    }
    format!(
        "ERR unknown command '{}', with args beginning with: {quoted}",
        printable(&args[0], 128)
    )
}

#[cold]
#[inline(never)]
pub fn unknown_subcommand_error(args: &[Bytes]) -> String {
    format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        printable(&args[1], 128),
        String::from_utf8_lossy(&args[0]).to_uppercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_in_any_case_from_any_recent_command() {
        let table = CommandTable::new();
        for command in table.every() {
            assert_eq!(command.name, command.name.to_ascii_lowercase());
        }
        let get = table.index_of(b"get").unwrap();
        let args = |name: &'static [u8]| vec![Bytes::from_static(name), Bytes::from_static(b"k")];
        for (name, recent) in [
            (&b"GET"[..], get),
            (b"gEt", get),
            (b"get", 0),
            (b"Set", get),
        ] {
            let mut recent = recent;
            let command = table.resolve_recent(&args(name), &mut recent).unwrap();
            assert!(command.name.as_bytes().eq_ignore_ascii_case(name));
            assert_eq!(table.commands[recent].name, command.name);
        }
        let mut recent = get;
        assert!(table.resolve_recent(&args(b"GETX"), &mut recent).is_err());
        assert!(table.resolve_recent(&args(b"GE"), &mut recent).is_err());
    }
}
