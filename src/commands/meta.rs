//! The shape of Redis's command reference data (`spec.rs`), and the flag and ACL category bits
//! derived from it that dispatch, COMMAND and (later) ACL read.

use super::spec;

/// A string of the reference data: a range of `spec::TEXT`, which holds each string once.
/// The tables hold ranges rather than `&'static str` (and `List`s rather than slices) so that
/// they contain no pointers: a position-independent executable would have every pointer
/// rewritten by the loader at start, which copies the whole 300 KB of tables into private
/// memory, although most of it is read only by COMMAND DOCS.
#[derive(Clone, Copy)]
pub struct Text(pub(super) u32, pub(super) u32);

impl Text {
    pub fn as_str(self) -> &'static str {
        &spec::TEXT[self.0 as usize..][..self.1 as usize]
    }
}

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// A list of words (flags, ACL categories, tips): one `Text` with the words space-separated.
#[derive(Clone, Copy)]
pub struct Words(pub(super) Text);

impl Words {
    pub fn iter(self) -> std::str::SplitAsciiWhitespace<'static> {
        self.0.as_str().split_ascii_whitespace()
    }

    pub fn len(self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(self) -> bool {
        self.0.1 == 0
    }

    pub fn contains(self, word: &str) -> bool {
        self.iter().any(|w| w == word)
    }
}

/// A run of rows of one of the tables in `spec`, as a slice of it.
pub struct List<T: 'static> {
    at: u16,
    len: u16,
    rows: std::marker::PhantomData<&'static T>,
}

impl<T> List<T> {
    pub(super) const fn new(at: u16, len: u16) -> List<T> {
        List {
            at,
            len,
            rows: std::marker::PhantomData,
        }
    }
}

impl<T> Clone for List<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for List<T> {}

impl<T: Table> IntoIterator for List<T> {
    type Item = &'static T;
    type IntoIter = std::slice::Iter<'static, T>;

    fn into_iter(self) -> Self::IntoIter {
        T::table()[self.at as usize..][..self.len as usize].iter()
    }
}

/// The table a `List<Self>` is a run of.
pub trait Table: Sized + 'static {
    fn table() -> &'static [Self];
}

impl Table for Arg {
    fn table() -> &'static [Arg] {
        &spec::ARGS
    }
}

impl Table for KeySpec {
    fn table() -> &'static [KeySpec] {
        &spec::KEY_SPECS
    }
}

impl Table for (Text, Text) {
    fn table() -> &'static [(Text, Text)] {
        &spec::HISTORY
    }
}

impl<T: Table> std::ops::Deref for List<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.into_iter().as_slice()
    }
}

pub struct CommandSpec {
    pub name: Text,
    pub container: Option<Text>,
    pub summary: Text,
    pub since: Text,
    pub group: Text,
    pub complexity: Option<Text>,
    pub doc_flags: Words,
    pub deprecated_since: Option<Text>,
    pub replaced_by: Option<Text>,
    /// (version, change) pairs.
    pub history: List<(Text, Text)>,
    pub arity: i32,
    pub flags: Words,
    pub acl_categories: Words,
    pub tips: Words,
    pub key_specs: List<KeySpec>,
    pub args: List<Arg>,
}

pub struct KeySpec {
    pub notes: Option<Text>,
    pub flags: Words,
    pub begin_search: BeginSearch,
    pub find_keys: FindKeys,
}

pub enum BeginSearch {
    Index(i32),
    Keyword { keyword: Text, startfrom: i32 },
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
    pub name: Text,
    pub kind: Text,
    pub key_spec_index: i32,
    pub token: Option<Text>,
    pub summary: Option<Text>,
    pub since: Option<Text>,
    pub deprecated_since: Option<Text>,
    pub flags: Words,
    pub args: List<Arg>,
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
    let incomplete = |s: &KeySpec| s.flags.contains("INCOMPLETE");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(full: &str) -> &'static CommandSpec {
        spec::SPECS
            .iter()
            .find(|s| match &s.container {
                Some(container) => full == format!("{}|{}", &**container, &*s.name),
                None => full == &*s.name,
            })
            .unwrap()
    }

    fn visit_args(args: &[Arg], names: &mut Vec<String>) {
        for arg in args {
            names.push(format!("{}:{}", &*arg.name, &*arg.kind));
            visit_args(&arg.args, names);
        }
    }

    #[test]
    fn tables_read_back_as_generated() {
        let get = spec("get");
        assert_eq!(get.arity, 2);
        assert_eq!(get.flags.iter().collect::<Vec<_>>(), ["readonly", "fast"]);
        assert_eq!(get.acl_categories.iter().collect::<Vec<_>>(), ["string"]);
        assert_eq!(get.key_specs.len(), 1);
        assert_eq!(
            get.key_specs[0].flags.iter().collect::<Vec<_>>(),
            ["RO", "ACCESS"]
        );
        assert!(matches!(
            get.key_specs[0].begin_search,
            BeginSearch::Index(1)
        ));
        assert_eq!(&*get.summary, "Get the value of a key");

        let set = spec("set");
        assert_eq!(set.history.len(), 4);
        assert_eq!(
            (&*set.history[0].0, &*set.history[0].1),
            ("2.6.12", "Added the `EX`, `PX`, `NX` and `XX` options.")
        );
        let mut names = Vec::new();
        visit_args(&set.args, &mut names);
        assert_eq!(names[..3], ["key:key", "value:string", "condition:oneof"]);

        let setinfo = spec("client|setinfo");
        assert_eq!(&*setinfo.since, "7.2.0");
        assert_eq!(setinfo.args[0].args[0].token.as_deref(), Some("LIB-NAME"));
        assert!(setinfo.doc_flags.is_empty());
        assert_eq!(setinfo.tips.len(), 2);
    }

    #[test]
    fn every_range_is_inside_its_table() {
        let mut names = Vec::new();
        for s in &spec::SPECS {
            assert!(!s.name.is_empty());
            visit_args(&s.args, &mut names);
            for k in &*s.key_specs {
                k.flags.iter().for_each(|f| assert!(!f.is_empty()));
            }
            assert!(s.history.iter().all(|(v, _)| !v.is_empty()));
        }
        assert_eq!(spec::SPECS.len(), 390);
        assert_eq!(names.len(), spec::ARGS.len());
    }
}
