//! One set of permissions (Redis's `aclSelector`): the commands it allows, as a bitmap over
//! command ids plus allowed first arguments, and the key and channel patterns it may touch.
//! A user has a root selector and any number of extra ones; a command runs if one allows it.

use std::collections::HashMap;

use bytes::Bytes;

use super::RuleError;
use crate::commands::meta::CATEGORY_NAMES;
use crate::commands::{Command, CommandTable};
use crate::util::{eq_ignore_case, glob_match};

pub const READ: u8 = 1;
pub const WRITE: u8 = 2;
const READ_WRITE: u8 = READ | WRITE;

#[derive(Clone, PartialEq, Eq)]
pub struct KeyPattern {
    pub pattern: Bytes,
    /// READ, WRITE or both.
    pub access: u8,
}

impl KeyPattern {
    /// `~pat`, `%R~pat` or `%W~pat`, as ACL LIST and GETUSER show it.
    pub fn describe(&self) -> String {
        let prefix = match self.access {
            READ => "%R~",
            WRITE => "%W~",
            _ => "~",
        };
        format!("{prefix}{}", String::from_utf8_lossy(&self.pattern))
    }
}

/// Why a selector refused a command; ordered as Redis picks which refusal to report
/// (`ACL_DENIED_CMD` < `ACL_DENIED_KEY` < `ACL_DENIED_CHANNEL`), with the argument position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Denied {
    Command,
    Key(usize),
    Channel(usize),
}

#[derive(Clone, PartialEq, Eq)]
pub struct Selector {
    pub root: bool,
    pub all_keys: bool,
    pub all_channels: bool,
    pub all_commands: bool,
    /// Set by `+@all`: allows commands added later (Redis's reserved command bit).
    future_commands: bool,
    allowed: Vec<u64>,
    /// `+select|0`: first arguments allowed for an otherwise denied command, by command id.
    first_args: HashMap<usize, Vec<String>>,
    pub keys: Vec<KeyPattern>,
    pub channels: Vec<Bytes>,
}

impl Selector {
    pub fn new(root: bool, all_channels: bool, commands: &CommandTable) -> Selector {
        Selector {
            root,
            all_keys: false,
            all_channels,
            all_commands: false,
            future_commands: false,
            allowed: vec![0; commands.len().div_ceil(64)],
            first_args: HashMap::new(),
            keys: Vec::new(),
            channels: Vec::new(),
        }
    }

    fn bit(&self, id: usize) -> bool {
        self.allowed[id / 64] & (1 << (id % 64)) != 0
    }

    fn set_bit(&mut self, id: usize, on: bool) {
        if on {
            self.allowed[id / 64] |= 1 << (id % 64);
        } else {
            self.allowed[id / 64] &= !(1 << (id % 64));
            self.all_commands = false;
        }
    }

    /// Allows or denies a command and, for a container, all its subcommands.
    fn change(&mut self, command: &Command, allow: bool) {
        self.set_bit(command.id, allow);
        self.first_args.remove(&command.id);
        for sub in &command.subcommands {
            self.set_bit(sub.id, allow);
        }
    }

    fn change_category(&mut self, commands: &CommandTable, category: u32, allow: bool) {
        for command in commands.every() {
            if command.acl & category != 0 {
                self.change(command, allow);
            }
            for sub in command.subcommands.iter().filter(|s| s.acl & category != 0) {
                self.change(sub, allow);
            }
        }
    }

    fn set_all_commands(&mut self, allow: bool) {
        self.allowed.fill(if allow { u64::MAX } else { 0 });
        self.all_commands = allow;
        self.future_commands = allow;
        self.first_args.clear();
    }

    /// Redis's `ACLSetSelector`: applies one rule.
    pub fn apply(&mut self, op: &[u8], commands: &CommandTable) -> Result<(), RuleError> {
        let is = |word: &str| eq_ignore_case(op, word);
        if is("allkeys") || is("~*") {
            self.all_keys = true;
            self.keys.clear();
        } else if is("resetkeys") {
            self.all_keys = false;
            self.keys.clear();
        } else if is("allchannels") || is("&*") {
            self.all_channels = true;
            self.channels.clear();
        } else if is("resetchannels") {
            self.all_channels = false;
            self.channels.clear();
        } else if is("allcommands") || is("+@all") {
            self.set_all_commands(true);
        } else if is("nocommands") || is("-@all") {
            self.set_all_commands(false);
        } else if op[0] == b'~' || op[0] == b'%' {
            self.add_key_pattern(op)?;
        } else if op[0] == b'&' {
            if self.all_channels {
                return Err(RuleError::ChannelAfterAll);
            }
            let pattern = &op[1..];
            if has_spaces(pattern) {
                return Err(RuleError::Syntax);
            }
            if !self.channels.iter().any(|c| c == pattern) {
                self.channels.push(Bytes::copy_from_slice(pattern));
            }
            self.all_channels = false;
        } else if (op[0] == b'+' || op[0] == b'-') && op.get(1) == Some(&b'@') {
            let category = category_by_name(&op[2..]).ok_or(RuleError::UnknownCommand)?;
            self.change_category(commands, category, op[0] == b'+');
        } else if op[0] == b'+' {
            self.allow_command(&op[1..], commands)?;
        } else if op[0] == b'-' {
            let command = commands
                .any_by_full_name(&op[1..])
                .ok_or(RuleError::UnknownCommand)?;
            self.change(command, false);
        } else {
            return Err(RuleError::Syntax);
        }
        Ok(())
    }

    fn add_key_pattern(&mut self, op: &[u8]) -> Result<(), RuleError> {
        if self.all_keys {
            return Err(RuleError::KeyAfterAll);
        }
        let (access, offset) = if op[0] == b'%' {
            let mut access = 0;
            let mut offset = 1;
            loop {
                match op.get(offset).map(u8::to_ascii_uppercase) {
                    Some(b'R') if access & READ == 0 => access |= READ,
                    Some(b'W') if access & WRITE == 0 => access |= WRITE,
                    Some(b'~') => {
                        offset += 1;
                        break;
                    }
                    // `%RW` alone: Redis accepts it as an empty pattern.
                    None => break,
                    _ => return Err(RuleError::Syntax),
                }
                offset += 1;
            }
            if access == 0 {
                return Err(RuleError::Syntax);
            }
            (access, offset)
        } else {
            (READ_WRITE, 1)
        };
        let pattern = &op[offset..];
        if has_spaces(pattern) {
            return Err(RuleError::Syntax);
        }
        match self.keys.iter_mut().find(|k| k.pattern == pattern) {
            Some(existing) => existing.access |= access,
            None => self.keys.push(KeyPattern {
                pattern: Bytes::copy_from_slice(pattern),
                access,
            }),
        }
        self.all_keys = false;
        Ok(())
    }

    /// `+cmd`, `+container|sub`, or `+cmd|first-arg` for a command without subcommands.
    fn allow_command(&mut self, name: &[u8], commands: &CommandTable) -> Result<(), RuleError> {
        let Some(bar) = name.iter().rposition(|&b| b == b'|') else {
            let command = commands
                .any_by_full_name(name)
                .ok_or(RuleError::UnknownCommand)?;
            self.change(command, true);
            return Ok(());
        };
        let (parent, sub) = (&name[..bar], &name[bar + 1..]);
        let command = commands
            .any_by_full_name(parent)
            .ok_or(RuleError::UnknownCommand)?;
        if command.name.contains('|') {
            return Err(RuleError::FirstArgOfSubcommand);
        }
        if sub.is_empty() {
            return Err(RuleError::Syntax);
        }
        if command.subcommands.is_empty() {
            tracing::warn!(
                "Deprecation warning: Allowing a first arg of an otherwise blocked command is a \
                 misuse of ACL and may get disabled in the future (offender: +{})",
                String::from_utf8_lossy(name)
            );
            let sub = String::from_utf8_lossy(sub).into_owned();
            let allowed = self.first_args.entry(command.id).or_default();
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(&sub)) {
                allowed.push(sub);
            }
        } else {
            let sub = commands
                .any_by_full_name(name)
                .ok_or(RuleError::UnknownCommand)?;
            self.change(sub, true);
        }
        Ok(())
    }

    /// Redis's `ACLSelectorCheckCmd`.
    pub fn check(&self, command: &Command, args: &[Bytes]) -> Result<(), Denied> {
        if !self.all_commands && !command.has_flag("no_auth") && !self.bit(command.id) {
            let index = if command.name.contains('|') { 2 } else { 1 };
            let allowed = self.first_args.get(&command.id).is_some_and(|firsts| {
                args.get(index).is_some_and(|arg| {
                    firsts
                        .iter()
                        .any(|f| arg.eq_ignore_ascii_case(f.as_bytes()))
                })
            });
            if args.len() < 2 || !allowed {
                return Err(Denied::Command);
            }
        }
        if !self.all_keys && !command.spec.key_specs.is_empty() {
            let mut refused = None;
            command.visit_keys_with_access(args, |position, access| {
                let allowed = self.may_touch_key(&args[position], access);
                if !allowed {
                    refused = Some(position);
                }
                allowed
            });
            if let Some(position) = refused {
                return Err(Denied::Key(position));
            }
        }
        if !self.all_channels {
            for (position, is_pattern) in channel_arguments(command, args) {
                if !channel_allowed(&self.channels, &args[position], is_pattern) {
                    return Err(Denied::Channel(position));
                }
            }
        }
        Ok(())
    }

    pub fn may_read_every_key(&self) -> bool {
        self.all_keys
            || self
                .keys
                .iter()
                .any(|p| p.access & READ != 0 && &p.pattern[..] == b"*")
    }

    fn may_touch_key(&self, key: &[u8], access: u8) -> bool {
        self.all_keys
            || self
                .keys
                .iter()
                .any(|p| p.access & access == access && glob_match(&p.pattern, key, false))
    }

    /// The command rules alone, shortest first: Redis's `ACLDescribeSelectorCommandRules`.
    /// It starts from `+@all` or `-@all`, adds the categories that fit best, then single
    /// commands, replaying each rule on a scratch selector until the bitmaps agree.
    pub fn describe_commands(&self, commands: &CommandTable) -> String {
        let additive = !self.future_commands;
        let mut rules = vec![if additive { "-@all" } else { "+@all" }.to_string()];
        let mut fake = Selector::new(false, false, commands);
        fake.set_all_commands(!additive);
        let mut temp = self.clone();
        let mut applied = [false; CATEGORY_NAMES.len()];
        loop {
            let mut best = None;
            let (mut min_diff, mut max_same) = (usize::MAX, 0);
            for (index, _) in CATEGORY_NAMES.iter().enumerate() {
                if applied[index] {
                    continue;
                }
                let (on, off) = temp.count_category(commands, 1 << index);
                let (diff, same) = if additive { (off, on) } else { (on, off) };
                if same > diff && (diff < min_diff || (diff == min_diff && same > max_same)) {
                    best = Some(index);
                    min_diff = diff;
                    max_same = same;
                }
            }
            let Some(best) = best else { break };
            fake.change_category(commands, 1 << best, additive);
            temp.change_category(commands, 1 << best, !additive);
            let sign = if additive { '+' } else { '-' };
            rules.push(format!("{sign}@{}", CATEGORY_NAMES[best]));
            applied[best] = true;
        }
        for command in commands.every() {
            for c in std::iter::once(command).chain(&command.subcommands) {
                let bit = self.bit(c.id);
                if bit != fake.bit(c.id) {
                    rules.push(format!("{}{}", if bit { '+' } else { '-' }, c.name));
                    fake.change(c, bit);
                }
            }
            if !self.bit(command.id)
                && let Some(firsts) = self.first_args.get(&command.id)
            {
                for first in firsts {
                    rules.push(format!("+{}|{first}", command.name));
                }
            }
        }
        rules.join(" ")
    }

    fn count_category(&self, commands: &CommandTable, category: u32) -> (usize, usize) {
        let mut on_off = (0, 0);
        for c in commands.every_with_subcommands() {
            if c.acl & category != 0 {
                if self.bit(c.id) {
                    on_off.0 += 1;
                } else {
                    on_off.1 += 1;
                }
            }
        }
        on_off
    }

    /// Keys, channels and commands, as one ACL LIST fragment (`ACLDescribeSelector`).
    pub fn describe(&self, commands: &CommandTable) -> String {
        let mut parts = Vec::new();
        if self.all_keys {
            parts.push("~*".to_string());
        } else {
            parts.extend(self.keys.iter().map(KeyPattern::describe));
        }
        if self.all_channels {
            parts.push("&*".to_string());
        } else {
            parts.push("resetchannels".to_string());
            parts.extend(
                self.channels
                    .iter()
                    .map(|c| format!("&{}", String::from_utf8_lossy(c))),
            );
        }
        parts.push(self.describe_commands(commands));
        parts.join(" ")
    }

    /// Key patterns as ACL GETUSER shows them.
    pub fn describe_keys(&self) -> String {
        if self.all_keys {
            return "~*".into();
        }
        let keys: Vec<String> = self.keys.iter().map(KeyPattern::describe).collect();
        keys.join(" ")
    }

    pub fn describe_channels(&self) -> String {
        if self.all_channels {
            return "&*".into();
        }
        let channels: Vec<String> = self
            .channels
            .iter()
            .map(|c| format!("&{}", String::from_utf8_lossy(c)))
            .collect();
        channels.join(" ")
    }
}

/// Usernames, key and channel patterns may not hold spaces or NUL bytes.
pub fn has_spaces(s: &[u8]) -> bool {
    s.iter()
        .any(|&b| b.is_ascii_whitespace() || b == 0 || b == 0x0b)
}

/// Redis's `ACLCheckChannelAgainstList`: a channel is matched against the patterns; a
/// PSUBSCRIBE pattern only equals one of them literally.
pub fn channel_allowed(list: &[Bytes], channel: &[u8], is_pattern: bool) -> bool {
    list.iter().any(|p| {
        if is_pattern {
            p == channel
        } else {
            glob_match(p, channel, false)
        }
    })
}

/// Redis's `commands_with_channels`: the arguments a command publishes or subscribes to,
/// and whether each is a pattern. Unsubscribing is never refused.
pub fn channel_arguments(command: &Command, args: &[Bytes]) -> Vec<(usize, bool)> {
    match command.name.as_str() {
        "subscribe" | "ssubscribe" => (1..args.len()).map(|i| (i, false)).collect(),
        "psubscribe" => (1..args.len()).map(|i| (i, true)).collect(),
        "publish" | "spublish" if args.len() > 1 => vec![(1, false)],
        _ => Vec::new(),
    }
}

/// The category bit for a name given by a client, any case.
pub fn category_by_name(name: &[u8]) -> Option<u32> {
    CATEGORY_NAMES
        .iter()
        .position(|c| eq_ignore_case(name, c))
        .map(|i| 1 << i)
}
