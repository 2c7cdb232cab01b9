//! Access control lists, as Redis 7.0's acl.c: the users, how rules change them, the ACL file,
//! and the security log. Each command is checked against the caller's user in
//! `commands::execute`; the default user (`+@all ~* &* nopass`) passes at the first test.

mod log;
pub mod selector;
pub mod user;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

pub use log::{Context, LogEntry, Reason, SecurityLog};
pub use selector::Denied;
pub use user::User;

use crate::commands::CommandTable;
use selector::has_spaces;

/// Why a rule was refused (the errno values of Redis's `ACLSetUser`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleError {
    UnknownCommand,
    Syntax,
    KeyAfterAll,
    ChannelAfterAll,
    NoSuchPassword,
    BadHash,
    FirstArgOfSubcommand,
}

impl RuleError {
    /// Redis's `ACLSetUserStringError`.
    pub fn message(self) -> &'static str {
        match self {
            RuleError::UnknownCommand => "Unknown command or category name in ACL",
            RuleError::Syntax => "Syntax error",
            RuleError::KeyAfterAll => {
                "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and \
                 does not have any effect. Try 'resetkeys' to start with an empty list of patterns"
            }
            RuleError::ChannelAfterAll => {
                "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid \
                 and does not have any effect. Try 'resetchannels' to start with an empty list \
                 of channels"
            }
            RuleError::NoSuchPassword => {
                "The password you are trying to remove from the user does not exist"
            }
            RuleError::BadHash => {
                "The password hash must be exactly 64 characters and contain only lowercase \
                 hexadecimal characters"
            }
            RuleError::FirstArgOfSubcommand => {
                "Allowing first-arg of a subcommand is not supported"
            }
        }
    }
}

pub struct Acl {
    users: RwLock<BTreeMap<Bytes, Arc<User>>>,
    /// Bumped on every change, so a connection knows when to look its user up again.
    generation: AtomicU64,
    next_serial: AtomicU64,
    /// The default user is `nopass` and on: new connections start authenticated.
    default_open: AtomicBool,
    pub log: Mutex<SecurityLog>,
    /// The rights of the server's own clients.
    unrestricted: Arc<User>,
}

/// Redis's `ACLMergeSelectorArguments`: a selector spread over several arguments
/// (`(~key* +get)` sent as two) becomes one. On an unclosed parenthesis, the index of the
/// argument that opened it.
pub fn merge_selector_args<T: AsRef<[u8]>>(args: &[T]) -> Result<Vec<Vec<u8>>, usize> {
    let mut merged = Vec::new();
    let mut open: Option<(usize, Vec<u8>)> = None;
    for (index, arg) in args.iter().enumerate() {
        let op = arg.as_ref();
        if let Some((_, selector)) = &mut open {
            selector.push(b' ');
            selector.extend_from_slice(op);
            if op.last() == Some(&b')') {
                merged.push(open.take().expect("open selector").1);
            }
        } else if op.first() == Some(&b'(') && op.last() != Some(&b')') {
            open = Some((index, op.to_vec()));
        } else {
            merged.push(op.to_vec());
        }
    }
    match open {
        Some((index, _)) => Err(index),
        None => Ok(merged),
    }
}

impl Acl {
    pub fn new(commands: &CommandTable) -> Acl {
        let acl = Acl {
            users: RwLock::default(),
            generation: AtomicU64::new(0),
            next_serial: AtomicU64::new(1),
            default_open: AtomicBool::new(true),
            log: Mutex::default(),
            unrestricted: Arc::new(Acl::default_rules(0, commands)),
        };
        let default = Acl::default_rules(acl.next_serial.fetch_add(1, Ordering::Relaxed), commands);
        acl.users_mut()
            .insert(default.name.clone(), Arc::new(default));
        acl
    }

    /// Redis's `ACLCreateDefaultUser`.
    fn default_rules(serial: u64, commands: &CommandTable) -> User {
        let mut user = User::new(Bytes::from_static(b"default"), serial, false, commands);
        for rule in ["+@all", "~*", "&*", "on", "nopass"] {
            user.apply(rule.as_bytes(), false, commands)
                .expect("default rules are valid");
        }
        user
    }

    pub fn new_user(&self, name: Bytes, all_channels: bool, commands: &CommandTable) -> User {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        User::new(name, serial, all_channels, commands)
    }

    fn users(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Bytes, Arc<User>>> {
        self.users.read().unwrap_or_else(|e| e.into_inner())
    }

    fn users_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Bytes, Arc<User>>> {
        self.users.write().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        let open = self
            .users()
            .get(&b"default"[..])
            .is_some_and(|u| u.nopass() && u.enabled());
        self.default_open.store(open, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether clients need no AUTH (Redis's `authRequired` is false for everyone).
    pub fn default_open(&self) -> bool {
        self.default_open.load(Ordering::Relaxed)
    }

    pub fn get(&self, name: &[u8]) -> Option<Arc<User>> {
        self.users().get(name).cloned()
    }

    pub fn unrestricted(&self) -> Arc<User> {
        self.unrestricted.clone()
    }

    pub fn default_user(&self) -> Arc<User> {
        self.get(b"default")
            .expect("the default user always exists")
    }

    /// Every user, ordered by name.
    pub fn all(&self) -> Vec<Arc<User>> {
        self.users().values().cloned().collect()
    }

    /// Stores `user` under its name (a changed or a new user).
    pub fn put(&self, user: User) {
        self.users_mut().insert(user.name.clone(), Arc::new(user));
        self.changed();
    }

    pub fn delete(&self, name: &[u8]) -> Option<Arc<User>> {
        let removed = self.users_mut().remove(name);
        self.changed();
        removed
    }

    /// Replaces every user (ACL LOAD). The default user keeps its serial, so its clients stay.
    pub fn replace_all(&self, users: BTreeMap<Bytes, User>) {
        let serial = self.default_user().serial;
        let mut new: BTreeMap<Bytes, Arc<User>> = BTreeMap::new();
        for (name, mut user) in users {
            if &name[..] == b"default" {
                user.serial = serial;
            }
            new.insert(name, Arc::new(user));
        }
        *self.users_mut() = new;
        self.changed();
    }

    /// The user `name` if `password` logs in as it.
    pub fn authenticate(&self, name: &[u8], password: &[u8]) -> Option<Arc<User>> {
        self.get(name).filter(|u| u.accepts(password))
    }

    /// `requirepass`: the default user's only password, or `nopass` when empty
    /// (Redis's `ACLUpdateDefaultUserPassword`).
    pub fn set_default_password(&self, password: &[u8], commands: &CommandTable) {
        let mut user = (*self.default_user()).clone();
        let _ = user.apply(b"resetpass", false, commands);
        let rule = if password.is_empty() {
            b"nopass".to_vec()
        } else {
            [b">", password].concat()
        };
        let _ = user.apply(&rule, false, commands);
        self.put(user);
    }

    /// Redis's `ACLStringSetUser`: applies every rule to a copy of the user (or a new one),
    /// and stores it only if all of them are valid. Returns the user as it was before.
    pub fn set_user(
        &self,
        name: &[u8],
        rules: &[Bytes],
        all_channels: bool,
        commands: &CommandTable,
    ) -> Result<Option<Arc<User>>, String> {
        let rules = merge_selector_args(rules).map_err(|index| {
            format!(
                "Unmatched parenthesis in acl selector starting at '{}'.",
                String::from_utf8_lossy(&rules[index])
            )
        })?;
        let old = self.get(name);
        let mut user = match &old {
            Some(user) => (**user).clone(),
            None => self.new_user(Bytes::copy_from_slice(name), all_channels, commands),
        };
        for rule in &rules {
            user.apply(rule, all_channels, commands).map_err(|e| {
                format!(
                    "Error in ACL SETUSER modifier '{}': {}",
                    String::from_utf8_lossy(rule),
                    e.message()
                )
            })?;
        }
        self.put(user);
        Ok(old)
    }

    /// Redis's `ACLLoadFromFile`: every user of the file, or one line of all the errors found.
    pub fn parse_file(
        &self,
        path: &str,
        all_channels: bool,
        commands: &CommandTable,
    ) -> Result<BTreeMap<Bytes, User>, String> {
        let text = std::fs::read(path).map_err(|e| {
            format!(
                "Error loading ACLs, opening file '{path}': {}",
                crate::util::strerror(&e)
            )
        })?;
        let mut users = BTreeMap::new();
        let mut errors = String::new();
        for (index, line) in text.split(|&b| b == b'\n').enumerate() {
            let number = index + 1;
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            let words: Vec<&[u8]> = line
                .split(|&b| b == b' ')
                .filter(|w| !w.is_empty())
                .collect();
            if words.first() != Some(&&b"user"[..]) || words.len() < 2 {
                errors.push_str(&format!(
                    "{path}:{number} should start with user keyword followed by the username. "
                ));
                continue;
            }
            let name = words[1];
            if has_spaces(name) {
                errors.push_str(&format!(
                    "'{path}:{number}: username '{}' contains invalid characters. ",
                    String::from_utf8_lossy(name)
                ));
                continue;
            }
            if users.contains_key(name) {
                errors.push_str(&format!(
                    "WARNING: Duplicate user '{}' found on line {number}. ",
                    String::from_utf8_lossy(name)
                ));
                continue;
            }
            let mut user = self.new_user(Bytes::copy_from_slice(name), all_channels, commands);
            let Ok(rules) = merge_selector_args(&words[2..]) else {
                errors.push_str(&format!(
                    "{path}:{number}: Unmatched parenthesis in selector definition."
                ));
                continue;
            };
            let mut syntax_error = false;
            for rule in &rules {
                let rule = rule.trim_ascii();
                match user.apply(rule, all_channels, commands) {
                    Ok(()) => {}
                    Err(RuleError::UnknownCommand) => errors.push_str(&format!(
                        "{path}:{number}: Error in applying operation '{}': {}. ",
                        String::from_utf8_lossy(rule),
                        RuleError::UnknownCommand.message()
                    )),
                    Err(e) if !syntax_error => {
                        errors.push_str(&format!("{path}:{number}: {}. ", e.message()));
                        syntax_error = true;
                    }
                    Err(_) => {}
                }
            }
            users.insert(user.name.clone(), user);
        }
        if !errors.is_empty() {
            errors.push_str(
                "WARNING: ACL errors detected, no change to the previously active ACL rules was \
                 performed",
            );
            return Err(errors);
        }
        if !users.contains_key(&b"default"[..]) {
            let default = Acl::default_rules(0, commands);
            users.insert(default.name.clone(), default);
        }
        Ok(users)
    }

    /// The ACL file text: one `user` line per user (`ACLSaveToFile`).
    pub fn file_text(&self, commands: &CommandTable) -> String {
        self.all()
            .iter()
            .map(|u| {
                format!(
                    "user {} {}\n",
                    String::from_utf8_lossy(&u.name),
                    u.describe(commands)
                )
            })
            .collect()
    }

    /// Redis's `ACLLoadUsersAtStartup`: the `user` lines of the configuration, then the
    /// ACL file; an error stops the server.
    pub fn load_at_start(
        &self,
        config_users: &[Vec<String>],
        aclfile: &str,
        all_channels: bool,
        commands: &CommandTable,
    ) -> Result<(), String> {
        if !aclfile.is_empty() && !config_users.is_empty() {
            return Err(
                "Configuring Redis with users defined in redis.conf and at the same \
                        setting an ACL file path is invalid. This setup is very likely to lead \
                        to configuration errors and security holes, please define either an \
                        ACL file or declare users directly in your redis.conf, but not both."
                    .into(),
            );
        }
        for words in config_users {
            let name = words[0].as_bytes();
            let mut user = match self.get(name) {
                Some(existing) => {
                    let mut user = (*existing).clone();
                    let _ = user.apply(b"reset", all_channels, commands);
                    user
                }
                None => self.new_user(Bytes::copy_from_slice(name), all_channels, commands),
            };
            let rules = merge_selector_args(&words[1..]).map_err(|index| {
                format!(
                    "Unmatched parenthesis in acl selector starting at '{}'.",
                    words[1 + index]
                )
            })?;
            for rule in &rules {
                user.apply(rule, all_channels, commands).map_err(|e| {
                    format!(
                        "Error loading ACL rule '{}' for the user named '{}': {}",
                        String::from_utf8_lossy(rule),
                        words[0],
                        e.message()
                    )
                })?;
            }
            if !user.enabled() {
                tracing::info!(
                    "The user '{}' is disabled (there is no 'on' modifier in the user \
                     description). Make sure this is not a configuration error.",
                    words[0]
                );
            }
            self.put(user);
        }
        if !aclfile.is_empty() {
            let users = self
                .parse_file(aclfile, all_channels, commands)
                .map_err(|e| format!("Aborting Redis startup because of ACL errors: {e}"))?;
            self.replace_all(users);
        }
        Ok(())
    }
}
