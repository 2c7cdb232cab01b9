//! An ACL user (Redis's `user`): flags, hashed passwords and selectors, the rules that change
//! them, and the text form ACL LIST and the ACL file use.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::RuleError;
use super::selector::{Denied, Selector};
use crate::commands::{Command, CommandTable};
use crate::util::eq_ignore_case;

/// User flags in the order ACL LIST and GETUSER print them.
const FLAG_NAMES: [&str; 5] = [
    "on",
    "off",
    "nopass",
    "skip-sanitize-payload",
    "sanitize-payload",
];
const ENABLED: u8 = 1;
const DISABLED: u8 = 2;
const NOPASS: u8 = 4;
const SKIP_SANITIZE: u8 = 8;
const SANITIZE: u8 = 16;

#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub name: Bytes,
    /// Set when the user is created; kept by ACL SETUSER, new for a user ACL LOAD replaced,
    /// so clients can tell whether the user they logged in as still exists.
    pub serial: u64,
    flags: u8,
    /// SHA-256 hex digests.
    pub passwords: Vec<String>,
    /// The root selector first.
    pub selectors: Vec<Selector>,
}

pub fn hash_password(password: &[u8]) -> String {
    let digest = Sha256::digest(password);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two digests in time that does not depend on where they differ.
fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// The digest a password rule names: `>pass` and `<pass` hash a clear text, `#hash` and
/// `!hash` give the digest itself, which must be 64 lowercase hex digits.
fn password_digest(op: &[u8]) -> Result<String, RuleError> {
    let text = &op[1..];
    if op[0] == b'>' || op[0] == b'<' {
        return Ok(hash_password(text));
    }
    if text.len() == 64 && text.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(String::from_utf8_lossy(text).into_owned())
    } else {
        Err(RuleError::BadHash)
    }
}

impl User {
    /// A new user: disabled, no passwords, no permissions.
    pub fn new(name: Bytes, serial: u64, all_channels: bool, commands: &CommandTable) -> User {
        User {
            name,
            serial,
            flags: DISABLED,
            passwords: Vec::new(),
            selectors: vec![Selector::new(true, all_channels, commands)],
        }
    }

    pub fn enabled(&self) -> bool {
        self.flags & DISABLED == 0
    }

    pub fn nopass(&self) -> bool {
        self.flags & NOPASS != 0
    }

    pub fn flag_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        FLAG_NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.flags & (1 << i) != 0)
            .map(|(_, name)| *name)
    }

    pub fn root(&self) -> &Selector {
        &self.selectors[0]
    }

    fn set_flag(&mut self, on: u8, off: u8) {
        self.flags = (self.flags | on) & !off;
    }

    /// Redis's `ACLSetUser`: applies one rule. `all_channels` is `acl-pubsub-default`, which
    /// new selectors and `reset` start from.
    pub fn apply(
        &mut self,
        op: &[u8],
        all_channels: bool,
        commands: &CommandTable,
    ) -> Result<(), RuleError> {
        let is = |word: &str| eq_ignore_case(op, word);
        if op.is_empty() {
        } else if is("on") {
            self.set_flag(ENABLED, DISABLED);
        } else if is("off") {
            self.set_flag(DISABLED, ENABLED);
        } else if is("skip-sanitize-payload") {
            self.set_flag(SKIP_SANITIZE, SANITIZE);
        } else if is("sanitize-payload") {
            self.set_flag(SANITIZE, SKIP_SANITIZE);
        } else if is("nopass") {
            self.set_flag(NOPASS, 0);
            self.passwords.clear();
        } else if is("resetpass") {
            self.set_flag(0, NOPASS);
            self.passwords.clear();
        } else if op[0] == b'>' || op[0] == b'#' {
            let hash = password_digest(op)?;
            if !self.passwords.contains(&hash) {
                self.passwords.push(hash);
            }
            self.set_flag(0, NOPASS);
        } else if op[0] == b'<' || op[0] == b'!' {
            let hash = password_digest(op)?;
            let position = self.passwords.iter().position(|p| *p == hash);
            self.passwords
                .remove(position.ok_or(RuleError::NoSuchPassword)?);
        } else if op[0] == b'(' && op[op.len() - 1] == b')' {
            let mut selector = Selector::new(false, all_channels, commands);
            let inner = &op[1..op.len() - 1];
            let words = crate::protocol::split_args(inner).ok_or(RuleError::Syntax)?;
            for word in words {
                selector.apply(&word, commands)?;
            }
            self.selectors.push(selector);
        } else if is("clearselectors") {
            self.selectors.truncate(1);
        } else if is("reset") {
            for rule in ["resetpass", "resetkeys", "resetchannels"] {
                self.apply(rule.as_bytes(), all_channels, commands)?;
            }
            if all_channels {
                self.apply(b"allchannels", all_channels, commands)?;
            }
            for rule in ["off", "sanitize-payload", "clearselectors", "-@all"] {
                self.apply(rule.as_bytes(), all_channels, commands)?;
            }
        } else {
            self.selectors[0].apply(op, commands)?;
        }
        Ok(())
    }

    /// Whether `password` logs in as this user (the user must also be enabled).
    pub fn accepts(&self, password: &[u8]) -> bool {
        if !self.enabled() {
            return false;
        }
        if self.nopass() {
            return true;
        }
        let hash = hash_password(password);
        self.passwords.iter().any(|p| same_digest(p, &hash))
    }

    /// Redis's `ACLCheckAllUserCommandPerm`: allowed if one selector allows it; otherwise
    /// the most telling refusal.
    pub fn check(&self, command: &Command, args: &[Bytes]) -> Result<(), Denied> {
        // Most users may do anything: settle that before looking at the command.
        if self
            .selectors
            .first()
            .is_some_and(|s| s.all_commands && s.all_keys && s.all_channels)
        {
            return Ok(());
        }
        let mut worst = Denied::Command;
        for selector in &self.selectors {
            match selector.check(command, args) {
                Ok(()) => return Ok(()),
                Err(denied) => worst = worst.max(denied),
            }
        }
        Err(worst)
    }

    /// Whether a selector that allows this command also lets the user read every key
    /// (Redis's `ACLUserCheckCmdWithUnrestrictedKeyAccess`; SORT's BY and GET need it).
    pub fn may_read_every_key(&self, command: &Command, args: &[Bytes]) -> bool {
        self.selectors
            .iter()
            .any(|s| s.check(command, args).is_ok() && s.may_read_every_key())
    }

    /// Whether some selector lets this user use `channel` (Redis's `ACLUserCheckChannelPerm`).
    pub fn may_use_channel(&self, channel: &[u8], is_pattern: bool) -> bool {
        self.selectors.iter().any(|s| {
            s.all_channels || super::selector::channel_allowed(&s.channels, channel, is_pattern)
        })
    }

    /// Everything after the name in ACL LIST (`ACLDescribeUser`).
    pub fn describe(&self, commands: &CommandTable) -> String {
        let mut parts: Vec<String> = self.flag_names().map(String::from).collect();
        parts.extend(self.passwords.iter().map(|p| format!("#{p}")));
        for selector in &self.selectors {
            let text = selector.describe(commands);
            parts.push(if selector.root {
                text
            } else {
                format!("({text})")
            });
        }
        parts.join(" ")
    }
}
