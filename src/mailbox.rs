//! What other clients push to one client (pub/sub messages, MONITOR lines, wakeups), for its
//! connection task to write.
//!
//! Not tokio's mpsc channel: its receiver must be polled on every wait, as a concurrent send
//! can use up its registration unseen, and that poll cost about 300 instructions a wait, a
//! tenth of all a request costs at `redis-benchmark -P 1`. Here the waker is kept under the
//! lock that guards the messages, and a push takes it only while it marks the mailbox full: a
//! task whose waker is in place looks at one flag.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

#[derive(Default)]
pub struct Mailbox {
    /// Set by each push, under the lock; cleared when the messages are taken.
    full: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    messages: Vec<Bytes>,
    /// The waker of the task that takes the messages, until a push takes it to wake the task.
    waker: Option<Waker>,
}

impl Mailbox {
    pub fn push(&self, message: Bytes) {
        let waker = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.messages.push(message);
            self.full.store(true, Ordering::Release);
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The taking side, kept by the connection task.
#[derive(Default)]
pub struct Inbox {
    /// This task's waker is in the mailbox: no push has taken it since it was left there (a
    /// push that takes it also sets `full`, which the task sees once woken).
    watching: bool,
    /// Messages taken and not yet written.
    messages: Vec<Bytes>,
}

/// Room for messages an inbox keeps between bursts; a bigger burst's room is given back.
const KEPT_ROOM: usize = 64;

impl Inbox {
    /// Takes every message pushed so far into `messages`; with none, leaves this task's waker
    /// for the next push.
    pub fn poll_take(&mut self, mailbox: &Mailbox, cx: &mut Context<'_>) -> Poll<()> {
        if self.watching && !mailbox.full.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        let mut inner = mailbox.inner.lock().unwrap_or_else(|e| e.into_inner());
        mailbox.full.store(false, Ordering::Relaxed);
        if inner.messages.is_empty() {
            if !inner
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                inner.waker = Some(cx.waker().clone());
            }
            self.watching = true;
            return Poll::Pending;
        }
        if self.messages.is_empty() {
            // The usual case, as `drain` follows each take: the vectors trade places.
            std::mem::swap(&mut self.messages, &mut inner.messages);
        } else {
            self.messages.append(&mut inner.messages);
        }
        self.watching = false;
        Poll::Ready(())
    }

    /// Hands each message taken to `write`, oldest first.
    pub fn drain(&mut self, mut write: impl FnMut(Bytes)) {
        self.messages.drain(..).for_each(&mut write);
        if self.messages.capacity() > KEPT_ROOM {
            self.messages = Vec::new();
        }
    }

    /// Gives back the room kept for messages (an idle connection's).
    pub fn release(&mut self) {
        if self.messages.is_empty() {
            self.messages = Vec::new();
        }
    }

    /// Waits for messages (`poll_take` as a future).
    pub async fn take(&mut self, mailbox: &Mailbox) {
        std::future::poll_fn(|cx| self.poll_take(mailbox, cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Pushes from several threads race the task's waits; every message must arrive, in each
    /// thread's order, without the task missing a wakeup (it would then wait forever).
    #[test]
    fn every_push_from_racing_threads_reaches_a_waiting_task() {
        const THREADS: u64 = 4;
        const PUSHES: u64 = 20_000;
        let mailbox = Arc::new(Mailbox::default());
        let pushers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let mailbox = mailbox.clone();
                std::thread::spawn(move || {
                    for i in 0..PUSHES {
                        mailbox.push(Bytes::from(format!("{thread}:{i}")));
                        if i % 64 == 0 {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let next = runtime.block_on(async {
            tokio::spawn(crate::timer::drive());
            let mut inbox = Inbox::default();
            let mut next = [0u64; THREADS as usize];
            while next.iter().sum::<u64>() < THREADS * PUSHES {
                let wait =
                    crate::timer::timeout(std::time::Duration::from_secs(10), inbox.take(&mailbox));
                wait.await.expect("a push did not wake the task");
                inbox.drain(|message| {
                    let text = std::str::from_utf8(&message).unwrap();
                    let (thread, i) = text.split_once(':').unwrap();
                    let thread: usize = thread.parse().unwrap();
                    assert_eq!(i.parse::<u64>().unwrap(), next[thread]);
                    next[thread] += 1;
                });
            }
            next
        });
        for pusher in pushers {
            pusher.join().unwrap();
        }
        assert_eq!(next, [PUSHES; THREADS as usize]);
    }
}
