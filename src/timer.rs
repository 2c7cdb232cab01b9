//! Sleeps and timeouts on one timerfd, in place of tokio's time driver. That driver reads the
//! clock and locks its timer wheel every time the runtime parks, which at `redis-benchmark
//! -P 1` is about once a request: 0.3 us of the 1.2 us of user time an idle tokio server spends
//! per request. The server sleeps only in the cron, blocked clients' timeouts, CLIENT PAUSE,
//! TLS handshakes and accept back-off, so its timers cost nothing while none is due.
//!
//! `drive` must run on the runtime for sleeps to end.

use std::collections::BTreeMap;
use std::future::Future;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

struct Timers {
    /// A CLOCK_MONOTONIC timerfd (the clock `Instant` reads), set for the earliest deadline.
    fd: OwnedFd,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The wakers of pending sleeps, by deadline; the number tells apart equal deadlines.
    pending: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
    /// The deadline the timerfd is set for. A sleep dropped before it is due leaves it set:
    /// the early expiry just sets the timerfd again.
    armed: Option<Instant>,
}

fn timers() -> &'static Timers {
    static TIMERS: OnceLock<Timers> = OnceLock::new();
    TIMERS.get_or_init(|| {
        // SAFETY: timerfd_create has no memory effects; the result is checked.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        assert!(
            fd >= 0,
            "timerfd_create: {}",
            std::io::Error::last_os_error()
        );
        Timers {
            // SAFETY: fd is a new descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            state: Mutex::default(),
        }
    })
}

impl Timers {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the timerfd to expire at `deadline` (at once if it has passed).
    fn arm(&self, state: &mut State, deadline: Instant) {
        state.armed = Some(deadline);
        // A zero value would disarm the timer.
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        let value = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: wait.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: the descriptor is open for the process's life and `value` is a valid
        // itimerspec; the old value is not asked for.
        let set =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &value, std::ptr::null_mut()) };
        debug_assert_eq!(set, 0, "timerfd_settime");
    }

    /// Wakes every sleep that is due and sets the timerfd for the next.
    fn expire(&self) {
        let now = Instant::now();
        let mut due = Vec::new();
        let mut state = self.lock();
        while let Some(entry) = state.pending.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        state.armed = None;
        if let Some(&(next, _)) = state.pending.keys().next() {
            self.arm(&mut state, next);
        }
        drop(state);
        due.into_iter().for_each(Waker::wake);
    }
}

/// Ends sleeps as they fall due. Runs for the runtime's life.
pub async fn drive() {
    let timers = timers();
    // SAFETY: the timerfd stays open for the process's life.
    let fd = match unsafe { AsyncFd::register_with_interest(timers.fd.as_fd(), Interest::READABLE) }
    {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!("Cannot watch the timer: {e}");
            return;
        }
    };
    loop {
        let mut ready = match fd.readable().await {
            Ok(ready) => ready,
            Err(e) => {
                tracing::error!("Cannot watch the timer: {e}");
                return;
            }
        };
        let mut expirations = [0u8; 8];
        // SAFETY: reads at most 8 bytes into an 8-byte buffer.
        let read = unsafe {
            libc::read(
                ready.get_inner().as_raw_fd(),
                expirations.as_mut_ptr().cast(),
                8,
            )
        };
        // The read empties the timerfd (or found it emptied by another runtime's driver);
        // an expiry after it is a new event, which clearing does not lose.
        ready.clear_ready();
        if read == 8 {
            timers.expire();
        }
    }
}

/// A future that is ready once `deadline` has passed.
pub struct Sleep {
    deadline: Instant,
    /// The key of this sleep's waker in `State::pending` while it waits.
    id: Option<u64>,
}

pub fn sleep(duration: Duration) -> Sleep {
    Sleep {
        deadline: Instant::now() + duration,
        id: None,
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let timers = timers();
        let mut state = timers.lock();
        if let Some(id) = self.id {
            // `expire` takes the waker out when the sleep is due.
            return match state.pending.get_mut(&(self.deadline, id)) {
                Some(waker) => {
                    waker.clone_from(cx.waker());
                    Poll::Pending
                }
                None => {
                    self.id = None;
                    Poll::Ready(())
                }
            };
        }
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        let id = state.next_id;
        state.next_id += 1;
        state
            .pending
            .insert((self.deadline, id), cx.waker().clone());
        self.id = Some(id);
        if state.armed.is_none_or(|armed| self.deadline < armed) {
            timers.arm(&mut state, self.deadline);
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            timers().lock().pending.remove(&(self.deadline, id));
        }
    }
}

/// The time limit of `timeout` passed first.
#[derive(Debug)]
pub struct Elapsed;

/// `future`'s output, unless `limit` passes first.
pub async fn timeout<F: Future>(limit: Duration, future: F) -> Result<F::Output, Elapsed> {
    tokio::select! {
        biased;
        output = future => Ok(output),
        () = sleep(limit) => Err(Elapsed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap()
    }

    #[test]
    fn sleeps_end_in_deadline_order_and_not_before() {
        runtime().block_on(async {
            tokio::spawn(drive());
            let start = Instant::now();
            let (order, mut ended) = tokio::sync::mpsc::unbounded_channel();
            for ms in [60u64, 20, 40] {
                let order = order.clone();
                tokio::spawn(async move {
                    sleep(Duration::from_millis(ms)).await;
                    order.send((ms, start.elapsed())).unwrap();
                });
            }
            for expected in [20, 40, 60] {
                let (ms, elapsed) = ended.recv().await.unwrap();
                assert_eq!(ms, expected);
                assert!(
                    elapsed >= Duration::from_millis(ms),
                    "{ms} ms ended at {elapsed:?}"
                );
            }
        });
    }

    #[test]
    fn a_dropped_sleep_does_not_hold_back_a_later_one() {
        runtime().block_on(async {
            tokio::spawn(drive());
            let start = Instant::now();
            assert!(
                timeout(Duration::from_millis(10), sleep(Duration::from_secs(60)))
                    .await
                    .is_err()
            );
            assert_eq!(
                timeout(Duration::from_secs(60), async { 7 }).await.unwrap(),
                7
            );
            sleep(Duration::from_millis(30)).await;
            let elapsed = start.elapsed();
            assert!(elapsed >= Duration::from_millis(40), "{elapsed:?}");
            assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
        });
    }
}
