//! The shape of Redis's command reference data (`spec.rs`), and the flag and ACL category bits
//! derived from it that dispatch, COMMAND and (later) ACL read.

pub struct CommandSpec {
    pub name: &'static str,
    pub container: Option<&'static str>,
    pub summary: &'static str,
    pub since: &'static str,
    pub group: &'static str,
    pub complexity: Option<&'static str>,
    pub doc_flags: &'static [&'static str],
    pub deprecated_since: Option<&'static str>,
    pub replaced_by: Option<&'static str>,
    pub history: &'static [(&'static str, &'static str)],
    pub arity: i32,
    pub flags: &'static [&'static str],
    pub acl_categories: &'static [&'static str],
    pub tips: &'static [&'static str],
    pub key_specs: &'static [KeySpec],
    pub args: &'static [Arg],
}

pub struct KeySpec {
    pub notes: Option<&'static str>,
    pub flags: &'static [&'static str],
    pub begin_search: BeginSearch,
    pub find_keys: FindKeys,
}

pub enum BeginSearch {
    Index(i32),
    Keyword {
        keyword: &'static str,
        startfrom: i32,
    },
    Unknown,
}

pub enum FindKeys {
    Range {
        lastkey: i32,
        step: i32,
        limit: i32,
    },
    Keynum {
        keynumidx: i32,
        firstkey: i32,
        step: i32,
    },
    Unknown,
}

pub struct Arg {
    pub name: &'static str,
    pub kind: &'static str,
    pub key_spec_index: i32,
    pub token: Option<&'static str>,
    pub summary: Option<&'static str>,
    pub since: Option<&'static str>,
    pub deprecated_since: Option<&'static str>,
    pub flags: &'static [&'static str],
    pub args: &'static [Arg],
}

/// Command flags in the order Redis's COMMAND reply lists them.
pub const FLAG_NAMES: &[&str] = &[
    "write",
    "readonly",
    "denyoom",
    "module",
    "admin",
    "pubsub",
    "noscript",
    "blocking",
    "loading",
    "stale",
    "skip_monitor",
    "skip_slowlog",
    "asking",
    "fast",
    "no_auth",
    "may_replicate",
    "sentinel",
    "only_sentinel",
    "no_mandatory_keys",
    "protected",
    "no_async_loading",
    "no_multi",
    "movablekeys",
    "allow_busy",
    "touches_arbitrary_keys",
];

/// Flags Redis keeps internal and leaves out of COMMAND replies.
const HIDDEN_FLAGS: &[&str] = &[
    "may_replicate",
    "sentinel",
    "only_sentinel",
    "protected",
    "touches_arbitrary_keys",
];

/// ACL categories in Redis's order.
pub const CATEGORY_NAMES: &[&str] = &[
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// The bit of a flag in `Command::flags`; usable in constants.
pub const fn flag_bit(name: &str) -> u32 {
    let mut index = 0;
    while index < FLAG_NAMES.len() {
        if const_str_eq(FLAG_NAMES[index], name) {
            return 1 << index;
        }
        index += 1;
    }
    panic!("unknown flag")
}

const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

pub fn category_bit(name: &str) -> u32 {
    let index = CATEGORY_NAMES
        .iter()
        .position(|c| *c == name)
        .unwrap_or_else(|| panic!("unknown category {name}"));
    1 << index
}

pub fn visible_flags(flags: u32) -> impl Iterator<Item = &'static str> {
    FLAG_NAMES
        .iter()
        .enumerate()
        .filter(move |(i, name)| flags & (1 << i) != 0 && !HIDDEN_FLAGS.contains(name))
        .map(|(_, name)| *name)
}

pub fn categories(bits: u32) -> impl Iterator<Item = &'static str> {
    CATEGORY_NAMES
        .iter()
        .enumerate()
        .filter(move |(i, _)| bits & (1 << i) != 0)
        .map(|(_, name)| *name)
}

/// Redis's `setImplicitACLCategories`: categories that follow from the command flags.
pub fn implicit_categories(flags: u32, mut acl: u32) -> u32 {
    let has = |f: &str| flags & flag_bit(f) != 0;
    if has("write") {
        acl |= category_bit("write");
    }
    if has("readonly") && acl & category_bit("scripting") == 0 {
        acl |= category_bit("read");
    }
    if has("admin") {
        acl |= category_bit("admin") | category_bit("dangerous");
    }
    if has("pubsub") {
        acl |= category_bit("pubsub");
    }
    if has("fast") {
        acl |= category_bit("fast");
    }
    if has("blocking") {
        acl |= category_bit("blocking");
    }
    if acl & category_bit("fast") == 0 {
        acl |= category_bit("slow");
    }
    acl
}

/// Redis's `populateCommandLegacyRangeSpec`: the (first, last, step) triple of COMMAND INFO,
/// and whether the command has keys that triple cannot describe ("movablekeys").
pub fn legacy_range(specs: &[KeySpec]) -> ((i32, i32, i32), bool) {
    if specs.is_empty() {
        return ((0, 0, 0), false);
    }
    let incomplete = |s: &KeySpec| s.flags.contains(&"INCOMPLETE");
    if let [spec] = specs
        && let (BeginSearch::Index(pos), FindKeys::Range { lastkey, step, .. }) =
            (&spec.begin_search, &spec.find_keys)
    {
        let last = if *lastkey >= 0 {
            pos + lastkey
        } else {
            *lastkey
        };
        return ((*pos, last, *step), incomplete(spec));
    }
    let (mut first, mut last, mut prev_last) = (i32::MAX, 0i32, 0i32);
    let mut movable = false;
    for spec in specs {
        let (BeginSearch::Index(pos), FindKeys::Range { lastkey, step, .. }) =
            (&spec.begin_search, &spec.find_keys)
        else {
            movable = true;
            continue;
        };
        if *step != 1 || (prev_last != 0 && prev_last != pos - 1) {
            movable = true;
            continue;
        }
        movable |= incomplete(spec);
        first = first.min(*pos);
        let abs = if *lastkey >= 0 {
            lastkey + pos
        } else {
            *lastkey
        };
        last = (last as u32).max(abs as u32) as i32;
        prev_last = last;
    }
    if first == i32::MAX {
        return ((0, 0, 0), true);
    }
    ((first, last, 1), movable)
}

/// Redis's `getKeysUsingKeySpecs`: the argument positions holding keys, each with the index
/// of the key spec that found it.
pub fn key_positions(specs: &[KeySpec], args: &[bytes::Bytes]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    visit_keys(specs, args, |position, spec| {
        out.push((position, spec));
        true
    });
    out
}

/// Calls `visit` with each key position and its key spec's index, without collecting them,
/// until it returns false.
pub fn visit_keys(
    specs: &[KeySpec],
    args: &[bytes::Bytes],
    mut visit: impl FnMut(usize, usize) -> bool,
) {
    let argc = args.len() as i32;
    for (spec_index, spec) in specs.iter().enumerate() {
        let first = match &spec.begin_search {
            BeginSearch::Index(pos) => *pos,
            BeginSearch::Keyword { keyword, startfrom } => {
                let (start, end, step) = if *startfrom >= 0 {
                    (*startfrom, argc, 1)
                } else {
                    (argc + startfrom, 0, -1)
                };
                let mut i = start;
                let mut found = None;
                while (step > 0 && i < end) || (step < 0 && i > end) {
                    if i > 0
                        && i < argc
                        && args[i as usize].eq_ignore_ascii_case(keyword.as_bytes())
                    {
                        found = Some(i + 1);
                        break;
                    }
                    i += step;
                }
                match found {
                    Some(i) => i,
                    None => continue,
                }
            }
            BeginSearch::Unknown => continue,
        };
        let (last, step) = match &spec.find_keys {
            FindKeys::Range {
                lastkey,
                step,
                limit,
            } => {
                let last = if *lastkey >= 0 {
                    first + lastkey
                } else if *limit <= 1 {
                    argc + lastkey
                } else {
                    first + ((argc - first) / limit + lastkey)
                };
                (last, *step)
            }
            FindKeys::Keynum {
                keynumidx,
                firstkey,
                step,
            } => {
                let idx = (first + keynumidx) as usize;
                let Some(count) = args.get(idx).and_then(|a| crate::util::parse_i64(a)) else {
                    continue;
                };
                let start = first + firstkey;
                (start + (count as i32 - 1) * step, *step)
            }
            FindKeys::Unknown => continue,
        };
        let start = match &spec.find_keys {
            FindKeys::Keynum { firstkey, .. } => first + firstkey,
            _ => first,
        };
        let mut i = start;
        while i <= last && i < argc && step > 0 {
            if !visit(i as usize, spec_index) {
                return;
            }
            i += step;
        }
    }
}
