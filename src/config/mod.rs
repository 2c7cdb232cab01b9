//! Every setting in one table (`table.rs`, Redis 7.0's full list with its defaults and bounds),
//! the current values, redis.conf parsing, and the rules CONFIG GET/SET/REWRITE follow.

mod table;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, RwLock};

pub use table::*;

use crate::protocol::split_args;
use crate::util::{glob_match, parse_i64};

pub enum Kind {
    Bool,
    Int {
        min: i64,
        max: i64,
        unit: Unit,
    },
    Enum(&'static [&'static str]),
    Text,
    /// Settings with their own syntax (save, bind, dir, client-output-buffer-limit ...).
    Special,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Plain,
    Memory,
    MemoryOrPercent,
    Octal,
}

pub struct Setting {
    pub name: &'static str,
    pub alias: Option<&'static str>,
    pub kind: Kind,
    pub default: &'static str,
    pub modifiable: bool,
    pub protected: bool,
    pub sensitive: bool,
    pub hidden: bool,
    pub multi_arg: bool,
}

/// A setting's current value. Numbers and booleans are atomics so hot paths read them without
/// a lock; everything else is kept in its canonical text form.
enum Slot {
    Number(AtomicI64),
    Text(RwLock<String>),
}

pub struct Config {
    slots: Vec<Slot>,
    /// The config file given at start, for CONFIG REWRITE.
    pub file: Option<PathBuf>,
    /// `user` lines of the configuration (name, then rules), loaded once the server exists.
    pub users: Mutex<Vec<Vec<String>>>,
    /// A `save` line was read: later ones add save points instead of replacing them.
    save_loaded: std::sync::atomic::AtomicBool,
}

/// Where a directive came from, for Redis's fatal config error report.
pub struct ConfigError {
    pub line: Option<(usize, String)>,
    pub message: String,
}

impl Config {
    pub fn new() -> Config {
        let config = Config {
            slots: SETTINGS
                .iter()
                .map(|s| match s.kind {
                    Kind::Bool | Kind::Int { .. } => Slot::Number(AtomicI64::new(0)),
                    _ => Slot::Text(RwLock::new(String::new())),
                })
                .collect(),
            file: None,
            users: Mutex::default(),
            save_loaded: Default::default(),
        };
        for (index, setting) in SETTINGS.iter().enumerate().filter(|(i, _)| *i != DIR) {
            let words: Vec<String> = if setting.multi_arg && !setting.default.is_empty() {
                setting.default.split(' ').map(String::from).collect()
            } else {
                vec![setting.default.to_string()]
            };
            config
                .set_index(index, &words)
                .expect("every default parses");
        }
        let cwd = std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        config.set_text(DIR, cwd);
        config
    }

    pub fn int(&self, index: usize) -> i64 {
        match &self.slots[index] {
            Slot::Number(n) => n.load(Ordering::Relaxed),
            Slot::Text(_) => panic!("{} is not numeric", SETTINGS[index].name),
        }
    }

    pub fn bool(&self, index: usize) -> bool {
        self.int(index) != 0
    }

    pub fn text(&self, index: usize) -> String {
        match &self.slots[index] {
            Slot::Text(t) => t.read().unwrap_or_else(|e| e.into_inner()).clone(),
            Slot::Number(_) => self.render(index),
        }
    }

    fn set_text(&self, index: usize, value: String) {
        if let Slot::Text(t) = &self.slots[index] {
            *t.write().unwrap_or_else(|e| e.into_inner()) = value;
        }
    }

    /// Whether a setting's value is a secret (masterauth, requirepass ...): CONFIG SET shows it
    /// redacted in the slow log and to MONITOR.
    pub fn is_sensitive(name: &str) -> bool {
        Config::lookup(name).is_some_and(|index| SETTINGS[index].sensitive)
    }

    pub fn lookup(name: &str) -> Option<usize> {
        let name = name.to_ascii_lowercase();
        SETTINGS
            .iter()
            .position(|s| s.name == name || s.alias == Some(name.as_str()))
    }

    /// The value as CONFIG GET shows it.
    pub fn render(&self, index: usize) -> String {
        let setting = &SETTINGS[index];
        match (&setting.kind, &self.slots[index]) {
            (Kind::Bool, Slot::Number(n)) => {
                if n.load(Ordering::Relaxed) != 0 {
                    "yes".into()
                } else {
                    "no".into()
                }
            }
            (Kind::Int { unit, .. }, Slot::Number(n)) => {
                let v = n.load(Ordering::Relaxed);
                match unit {
                    Unit::Octal => format!("{v:o}"),
                    Unit::MemoryOrPercent if v < 0 => format!("{}%", -v),
                    _ => v.to_string(),
                }
            }
            (_, Slot::Text(t)) => t.read().unwrap_or_else(|e| e.into_inner()).clone(),
            _ => unreachable!("slot kinds follow setting kinds"),
        }
    }

    /// Applies a directive by name, as a config file line, a `--name` argument or CONFIG SET.
    pub fn set(&self, name: &str, args: &[String]) -> Result<(), String> {
        let index = Config::lookup(name)
            .ok_or_else(|| "Bad directive or wrong number of arguments".to_string())?;
        let setting = &SETTINGS[index];
        if !setting.multi_arg && args.len() != 1 {
            return Err("wrong number of arguments".into());
        }
        // A multi-argument setting given as one non-empty word ("save '900 1'") is split.
        if setting.multi_arg && args.len() == 1 && !args[0].is_empty() {
            let words =
                split_args(args[0].as_bytes()).ok_or("Unbalanced quotes in configuration line")?;
            let words: Vec<String> = words
                .into_iter()
                .map(|w| String::from_utf8_lossy(&w).into_owned())
                .collect();
            return self.set_index(index, &words);
        }
        self.set_index(index, args)
    }

    fn set_index(&self, index: usize, args: &[String]) -> Result<(), String> {
        let setting = &SETTINGS[index];
        match (&setting.kind, &self.slots[index]) {
            (Kind::Bool, Slot::Number(n)) => {
                let v = match args[0].to_ascii_lowercase().as_str() {
                    "yes" => 1,
                    "no" => 0,
                    _ => return Err("argument must be 'yes' or 'no'".into()),
                };
                n.store(v, Ordering::Relaxed);
            }
            (Kind::Int { min, max, unit }, Slot::Number(n)) => {
                n.store(
                    parse_number(&args[0], *min, *max, *unit)?,
                    Ordering::Relaxed,
                );
            }
            (Kind::Enum(values), Slot::Text(_)) => {
                let mut chosen = Vec::new();
                for arg in args {
                    let arg = arg.to_ascii_lowercase();
                    match values.iter().find(|v| **v == arg) {
                        Some(v) => chosen.push(*v),
                        None => {
                            return Err(format!(
                                "argument(s) must be one of the following: {}",
                                values.join(", ")
                            ));
                        }
                    }
                }
                // Several flags (shutdown-on-sigint nosave force now) read back in the
                // order Redis defines them.
                chosen.sort_by_key(|c| values.iter().position(|v| v == c));
                chosen.dedup();
                if chosen.is_empty() {
                    return Err(format!(
                        "argument(s) must be one of the following: {}",
                        values.join(", ")
                    ));
                }
                self.set_text(index, chosen.join(" "));
            }
            (Kind::Text, Slot::Text(_)) => self.set_text(index, args[0].clone()),
            (Kind::Special, Slot::Text(_)) => self.set_text(index, special_value(index, args)?),
            _ => unreachable!("slot kinds follow setting kinds"),
        }
        Ok(())
    }

    /// `(name, value)` of every setting whose name or alias matches one of `patterns`.
    /// CONFIG GET: a name without glob characters is looked up exactly (hidden settings
    /// too); a pattern matches every setting that is not hidden.
    pub fn get_matching(&self, patterns: &[&[u8]]) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = Vec::new();
        let mut add = |name: &'static str, index: usize| {
            if !out.iter().any(|(n, _)| *n == name) {
                out.push((name, self.render(index)));
            }
        };
        for pattern in patterns {
            if !pattern.iter().any(|b| b"[*?".contains(b)) {
                let name = String::from_utf8_lossy(pattern).to_ascii_lowercase();
                if let Some(index) = Config::lookup(&name) {
                    let setting = &SETTINGS[index];
                    let canonical = std::iter::once(setting.name)
                        .chain(setting.alias)
                        .find(|n| *n == name)
                        .unwrap_or(setting.name);
                    add(canonical, index);
                }
                continue;
            }
            for (index, setting) in SETTINGS.iter().enumerate().filter(|(_, s)| !s.hidden) {
                for name in std::iter::once(setting.name).chain(setting.alias) {
                    if glob_match(pattern, name.as_bytes(), true) {
                        add(name, index);
                    }
                }
            }
        }
        out
    }

    /// Loads a redis.conf file followed by command-line directives (which win).
    pub fn load(&self, path: Option<&Path>, overrides: &str) -> Result<(), ConfigError> {
        if let Some(path) = path {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                line: None,
                message: format!(
                    "Fatal error, can't open config file '{}': {e}",
                    path.display()
                ),
            })?;
            self.load_text(&text)?;
        }
        self.load_text(overrides)
    }

    fn load_text(&self, text: &str) -> Result<(), ConfigError> {
        for (number, raw) in text.split('\n').enumerate() {
            let line = raw.trim_matches([' ', '\t', '\r', '\n']);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |message: String| ConfigError {
                line: Some((number + 1, line.to_string())),
                message,
            };
            let words = split_args(line.as_bytes())
                .ok_or_else(|| fail("Unbalanced quotes in configuration line".into()))?;
            let words: Vec<String> = words
                .into_iter()
                .map(|w| String::from_utf8_lossy(&w).into_owned())
                .collect();
            let Some((name, args)) = words.split_first() else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            if name == "include" && args.len() == 1 {
                self.load(Some(Path::new(&args[0])), "")?;
                continue;
            }
            if name == "save" && !args.is_empty() {
                self.load_save_line(args).map_err(fail)?;
                continue;
            }
            if name == "user" && !args.is_empty() {
                self.add_user(args).map_err(fail)?;
                continue;
            }
            if Config::lookup(&name).is_none() {
                return Err(fail("Bad directive or wrong number of arguments".into()));
            }
            self.set(&name, args).map_err(fail)?;
        }
        Ok(())
    }
}

impl Config {
    /// In configuration files the first `save` line replaces the default save points and
    /// the next ones add to them (Redis's `setConfigSaveOption`).
    fn load_save_line(&self, args: &[String]) -> Result<(), String> {
        let first = !self.save_loaded.swap(true, Ordering::Relaxed);
        let current = self.text(SAVE);
        let empty = args.len() == 1 && args[0].is_empty();
        if first || empty || current.is_empty() {
            return self.set("save", args);
        }
        self.set("save", &[format!("{current} {}", args.join(" "))])
    }

    /// Keeps a `user` line for later; a user may be defined only once.
    fn add_user(&self, words: &[String]) -> Result<(), String> {
        // `--user "alice on >pw ~*"`: one argument holding the whole line, as multi-argument
        // settings accept.
        let split;
        let words = match words {
            [line] if line.contains(' ') => {
                split = split_args(line.as_bytes())
                    .ok_or("Unbalanced quotes in configuration line")?
                    .into_iter()
                    .map(|w| String::from_utf8_lossy(&w).into_owned())
                    .collect::<Vec<_>>();
                &split[..]
            }
            _ => words,
        };
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if users.iter().any(|u| u[0] == words[0]) {
            return Err(format!(
                "Error in user declaration '{}': Duplicate user found. A user can only be \
                 defined once in config files",
                words[0]
            ));
        }
        users.push(words.to_vec());
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

/// The `[hard, soft, soft_seconds]` limits of one client class (`normal`, `replica`, `pubsub`)
/// from the normalized `client-output-buffer-limit` value.
pub fn output_buffer_limits(value: &str, class: &str) -> [u64; 3] {
    let words: Vec<&str> = value.split_whitespace().collect();
    words
        .chunks(4)
        .find(|chunk| chunk[0] == class)
        .map(|chunk| [1, 2, 3].map(|i| chunk.get(i).and_then(|w| w.parse().ok()).unwrap_or(0)))
        .unwrap_or([0; 3])
}

/// Redis's `memtoull`: digits with an optional b, k, kb, m, mb, g, gb unit (any case).
pub fn parse_memory(s: &str) -> Option<i64> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let mul: i64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    digits.parse::<i64>().ok()?.checked_mul(mul)
}

fn parse_number(s: &str, min: i64, max: i64, unit: Unit) -> Result<i64, String> {
    let value = match unit {
        Unit::Plain => parse_i64(s.as_bytes()),
        Unit::Memory => parse_memory(s),
        Unit::MemoryOrPercent => parse_memory(s).or_else(|| {
            let pct = parse_i64(s.strip_suffix('%')?.as_bytes())?;
            (pct >= 0).then_some(-pct)
        }),
        Unit::Octal => i64::from_str_radix(s, 8).ok(),
    };
    let value = value.ok_or_else(|| {
        match unit {
            Unit::Plain => "argument couldn't be parsed into an integer",
            Unit::Memory => "argument must be a memory value",
            Unit::MemoryOrPercent => "argument must be a memory or percent value",
            Unit::Octal => "argument couldn't be parsed as an octal number",
        }
        .to_string()
    })?;
    if unit == Unit::MemoryOrPercent && value < 0 {
        if value < min {
            return Err(format!(
                "percentage argument must be less or equal to {}",
                -min
            ));
        }
    } else if value < min || value > max {
        return Err(match unit {
            Unit::Octal => format!("argument must be between {min:o} and {max:o} inclusive"),
            _ => format!("argument must be between {min} and {max} inclusive"),
        });
    }
    Ok(value)
}

/// Validates and normalises the settings with a syntax of their own.
fn special_value(index: usize, args: &[String]) -> Result<String, String> {
    let empty = args.len() == 1 && args[0].is_empty();
    match index {
        SAVE | REPLICAOF | LATENCY_TRACKING_INFO_PERCENTILES if empty => Ok(String::new()),
        LATENCY_TRACKING_INFO_PERCENTILES => {
            let mut values = Vec::new();
            for arg in args {
                let value = crate::util::parse_f64(arg.as_bytes())
                    .ok_or("Invalid latency-tracking-info-percentiles parameters")?;
                if !(0.0..=100.0).contains(&value) {
                    return Err(
                        "latency-tracking-info-percentiles parameters should sit between \
                         [0.0,100.0]"
                            .into(),
                    );
                }
                values.push(value.to_string());
            }
            Ok(values.join(" "))
        }
        SAVE => {
            if !args.len().is_multiple_of(2)
                || args
                    .iter()
                    .any(|a| parse_i64(a.as_bytes()).is_none_or(|n| n < 0))
            {
                return Err("Invalid save parameters".into());
            }
            Ok(args.join(" "))
        }
        NOTIFY_KEYSPACE_EVENTS => {
            let flags = crate::store::notify::parse_event_flags(&args[0])
                .ok_or("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")?;
            Ok(crate::store::notify::format_event_flags(flags))
        }
        CLIENT_OUTPUT_BUFFER_LIMIT => {
            if !args.len().is_multiple_of(4) {
                return Err("Wrong number of arguments in buffer limit configuration.".into());
            }
            let mut classes = [
                ("normal", [0i64, 0, 0]),
                ("slave", [268435456, 67108864, 60]),
                ("pubsub", [33554432, 8388608, 60]),
            ];
            for chunk in args.chunks(4) {
                let class = match chunk[0].to_ascii_lowercase().as_str() {
                    "normal" => 0,
                    "slave" | "replica" => 1,
                    "pubsub" => 2,
                    _ => {
                        return Err(
                            "Invalid client class specified in buffer limit configuration.".into(),
                        );
                    }
                };
                let hard = parse_memory(&chunk[1]);
                let soft = parse_memory(&chunk[2]);
                let secs = parse_i64(chunk[3].as_bytes()).filter(|s| *s >= 0);
                match (hard, soft, secs) {
                    (Some(h), Some(s), Some(t)) => classes[class].1 = [h, s, t],
                    _ => return Err("Error in hard, soft or soft_seconds setting in buffer limit configuration.".into()),
                }
            }
            Ok(classes
                .iter()
                .map(|(name, [h, s, t])| format!("{name} {h} {s} {t}"))
                .collect::<Vec<_>>()
                .join(" "))
        }
        DIR => {
            std::env::set_current_dir(&args[0]).map_err(|e| crate::util::strerror(&e))?;
            Ok(std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| args[0].clone()))
        }
        BIND => {
            if args.len() > 16 {
                return Err("Too many bind addresses specified.".into());
            }
            Ok(args.join(" "))
        }
        OOM_SCORE_ADJ_VALUES => {
            if args.len() != 3 {
                return Err("wrong number of arguments".into());
            }
            if args
                .iter()
                .any(|a| parse_i64(a.as_bytes()).is_none_or(|n| !(-2000..=2000).contains(&n)))
            {
                return Err(
                    "Invalid oom-score-adj-values, elements must be between -2000 and 2000.".into(),
                );
            }
            Ok(args.join(" "))
        }
        REPLICAOF => {
            if args.len() != 2 {
                return Err("wrong number of arguments".into());
            }
            let no_one = args[0].eq_ignore_ascii_case("no") && args[1].eq_ignore_ascii_case("one");
            if !no_one && args[1].parse::<u16>().is_err() {
                return Err("Invalid master port".into());
            }
            Ok(args.join(" "))
        }
        _ => Ok(args.join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_redis() {
        let c = Config::new();
        assert_eq!(c.int(PORT), 6379);
        assert_eq!(c.int(PROTO_MAX_BULK_LEN), 512 * 1024 * 1024);
        assert_eq!(c.text(SAVE), "3600 1 300 100 60 10000");
        assert_eq!(c.render(APPENDONLY), "no");
        assert_eq!(c.text(MAXMEMORY_POLICY), "noeviction");
    }

    #[test]
    fn parses_units_quotes_and_overrides() {
        let c = Config::new();
        c.load_text("maxmemory 1gb\nsave \"\"\n# comment\nport 7000\n")
            .ok()
            .unwrap();
        assert_eq!(c.int(MAXMEMORY), 1 << 30);
        assert_eq!(c.text(SAVE), "");
        c.load_text("port 7001").ok().unwrap();
        assert_eq!(c.int(PORT), 7001);
    }

    #[test]
    fn rejects_bad_directives_like_redis() {
        let c = Config::new();
        let err = c.load_text("port 1\nfoo bar").err().unwrap();
        assert_eq!(err.line, Some((2, "foo bar".into())));
        assert_eq!(err.message, "Bad directive or wrong number of arguments");
        assert_eq!(
            c.set("port", &["x".into()]).unwrap_err(),
            "argument couldn't be parsed into an integer"
        );
        assert_eq!(
            c.set("port", &["70000".into()]).unwrap_err(),
            "argument must be between 0 and 65535 inclusive"
        );
        assert_eq!(
            c.set("appendonly", &["maybe".into()]).unwrap_err(),
            "argument must be 'yes' or 'no'"
        );
    }
}
