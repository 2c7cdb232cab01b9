//! Reference data for commands newer than Redis 7.0 that today's clients send (redis-py sends
//! CLIENT SETINFO on connect), written in the form of `spec.rs` from Redis 7.2's JSON files.

use super::meta::{Arg, CommandSpec};

const fn token(name: &'static str, token: &'static str, kind: &'static str) -> Arg {
    Arg {
        name,
        kind,
        key_spec_index: -1,
        token: Some(token),
        summary: None,
        since: None,
        deprecated_since: None,
        flags: &[],
        args: &[],
    }
}

const fn oneof(name: &'static str, args: &'static [Arg]) -> Arg {
    Arg {
        kind: "oneof",
        token: None,
        args,
        ..token(name, "", "oneof")
    }
}

pub static EXTRA_SPECS: &[CommandSpec] = &[
    CommandSpec {
        name: "no-touch",
        container: Some("client"),
        summary: "Controls whether commands sent by the client affect the LRU/LFU of accessed keys.",
        since: "7.2.0",
        group: "connection",
        complexity: Some("O(1)"),
        doc_flags: &[],
        deprecated_since: None,
        replaced_by: None,
        history: &[],
        arity: 3,
        flags: &["noscript", "loading", "stale"],
        acl_categories: &["connection"],
        tips: &[],
        key_specs: &[],
        args: &[oneof(
            "enabled",
            &[
                token("on", "ON", "pure-token"),
                token("off", "OFF", "pure-token"),
            ],
        )],
    },
    CommandSpec {
        name: "setinfo",
        container: Some("client"),
        summary: "Sets information specific to the client or connection.",
        since: "7.2.0",
        group: "connection",
        complexity: Some("O(1)"),
        doc_flags: &[],
        deprecated_since: None,
        replaced_by: None,
        history: &[],
        arity: 4,
        flags: &["noscript", "loading", "stale", "sentinel"],
        acl_categories: &["connection"],
        tips: &["request_policy:all_nodes", "response_policy:all_succeeded"],
        key_specs: &[],
        args: &[oneof(
            "attr",
            &[
                token("libname", "LIB-NAME", "string"),
                token("libver", "LIB-VER", "string"),
            ],
        )],
    },
];
