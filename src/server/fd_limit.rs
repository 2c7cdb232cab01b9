//! Redis's `adjustOpenFilesLimit`: raise the open files limit to what `maxclients` needs
//! (plus 32 for the server's own files), or lower `maxclients` to what the limit allows.

use crate::config::{self, Config};

/// Files the server keeps for itself besides clients (Redis's CONFIG_MIN_RESERVED_FDS).
const RESERVED_FDS: u64 = 32;

pub fn adjust(config: &Config) -> Result<(), String> {
    let maxclients = config.int(config::MAXCLIENTS) as u64;
    let wanted = maxclients + RESERVED_FDS;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        let error = std::io::Error::last_os_error();
        tracing::warn!(
            "Unable to obtain the current NOFILE limit ({}), assuming 1024 and setting the max \
             clients configuration accordingly.",
            crate::util::strerror(&error)
        );
        return set_maxclients(config, 1024 - RESERVED_FDS);
    }
    let old = limit.rlim_cur;
    if old >= wanted {
        return Ok(());
    }
    // As much as asked for, else as much as the hard limit lets an unprivileged process take.
    let mut error = None;
    let mut best = old;
    for candidate in [wanted, limit.rlim_max.min(wanted)] {
        let attempt = libc::rlimit {
            rlim_cur: candidate,
            rlim_max: candidate.max(limit.rlim_max),
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &attempt) } == 0 {
            best = candidate;
            break;
        }
        error.get_or_insert_with(std::io::Error::last_os_error);
    }
    if best >= wanted {
        tracing::info!(
            "Increased maximum number of open files to {wanted} (it was originally set to {old})."
        );
        return Ok(());
    }
    if best <= RESERVED_FDS {
        return Err(format!(
            "Your current 'ulimit -n' of {old} is not enough for the server to start. Please \
             increase your open file limit to at least {wanted}. Exiting."
        ));
    }
    tracing::warn!(
        "You requested maxclients of {maxclients} requiring at least {wanted} max file descriptors."
    );
    tracing::warn!(
        "Server can't set maximum open files to {wanted} because of OS error: {}.",
        error.map(|e| crate::util::strerror(&e)).unwrap_or_default()
    );
    tracing::warn!(
        "Current maximum open files is {best}. maxclients has been reduced to {} to compensate \
         for low ulimit. If you need higher maxclients increase 'ulimit -n'.",
        best - RESERVED_FDS
    );
    set_maxclients(config, best - RESERVED_FDS)
}

fn set_maxclients(config: &Config, value: u64) -> Result<(), String> {
    config.set("maxclients", &[value.to_string()])
}
