//! Forked children that write a snapshot of the keyspace (BGSAVE, BGREWRITEAOF).
//!
//! The child gets a copy-on-write image of the keyspace frozen at one instant across every
//! shard, so clients keep being served and memory grows only by the pages written meanwhile.
//! The fork happens under the exclusive gate, so no thread holds a shard lock in the image the
//! child inherits; the child then only reads the keyspace, writes its file and leaves with
//! `_exit`, never returning to the runtime.

use std::io;
use std::time::Instant;

pub struct Child {
    pub pid: libc::pid_t,
    pub started: Instant,
}

impl Child {
    /// Forks; the child runs `work` and exits with 0 if it returned true. The caller holds
    /// the gate exclusively.
    pub fn spawn(work: impl FnOnce() -> bool) -> io::Result<Child> {
        // SAFETY: fork duplicates only this thread. See the module comment for why the child
        // cannot meet a lock another thread held; it leaves with _exit, running no destructors.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            crate::util::oom_score::enter_child();
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) };
        }
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        crate::store::clock::child_started();
        Ok(Child {
            pid,
            started: Instant::now(),
        })
    }

    /// Whether child `pid` has ended, without reaping it (its owner does that).
    pub fn has_exited(pid: libc::pid_t) -> bool {
        // SAFETY: a zeroed siginfo_t is valid; waitid with WNOWAIT leaves the child as it is.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let options = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
            libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, options) != 0
                || info.si_pid() != 0
        }
    }

    /// None while the child runs; then whether it succeeded.
    pub fn poll(&self) -> Option<bool> {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let done = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        match done {
            0 => None,
            pid if pid == self.pid => {
                Some(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0)
            }
            _ => Some(false),
        }
    }

    /// Stops the child and waits for it.
    pub fn kill(&self) {
        // SAFETY: signalling and reaping our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGUSR1);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

impl Drop for Child {
    /// Dropped once reaped or killed: keys' access clocks move again.
    fn drop(&mut self) {
        crate::store::clock::child_ended();
    }
}
