//! Running a script on its connection's own thread, in slices once it has run too long.
//!
//! Redis runs a script on its one thread; past `busy-reply-threshold` the script's hook calls
//! back into the event loop (`processEventsWhileBlocked`) so that other clients get `-BUSY`
//! and SCRIPT KILL can arrive. Here a connection runs the script on a stack of its own (a
//! coroutine, so the whole C and Lua call stack can be set aside at any point, even inside
//! `pcall` or a library call); once the script has timed out its hook suspends it every
//! 100,000 instructions, the connection's task lets the thread's other tasks run, and then
//! resumes it. Until then nothing else runs, as in Redis, and a script costs no more than the
//! command that carries it: no thread hand-off.
//!
//! Only on the single-threaded runtime (`io-threads 1`, the default), where a task never
//! leaves its thread; with `io-threads` above 1 the script runs in `block_in_place`, and the
//! other workers answer the other clients.

use std::cell::{Cell, RefCell};

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};

/// The coroutine's stack: Lua's own recursion is bounded (200 C levels), and the commands a
/// script calls need what they need on any thread. Touched pages only are resident.
const STACK_SIZE: usize = 8 << 20;

thread_local! {
    /// The running script's way back to its connection's task, while it runs in slices.
    static YIELDER: Cell<*const Yielder<(), ()>> = const { Cell::new(std::ptr::null()) };
    /// One stack per thread, reused script after script (making one maps memory).
    static STACK: RefCell<Option<DefaultStack>> = const { RefCell::new(None) };
}

/// A coroutine kept across awaits in the connection's future.
struct Slices<'a>(Option<Coroutine<(), (), (), &'a mut DefaultStack>>);

// SAFETY: made and resumed only on the single-threaded runtime, whose tasks never move to
// another thread; the future that holds it is Send only to satisfy `tokio::spawn`.
unsafe impl Send for Slices<'_> {}

impl Drop for Slices<'_> {
    fn drop(&mut self) {
        // A script cut off half-way (its task dropped as the process ends) is left as it is:
        // unwinding through Lua's C frames is not possible.
        if let Some(coroutine) = self.0.take()
            && !coroutine.done()
        {
            std::mem::forget(coroutine);
        }
    }
}

/// Runs `work` (a script command) on this thread, letting the thread's other tasks run each
/// time the script calls `let_others_run`.
pub async fn run_in_slices(work: impl FnOnce()) {
    let mut stack = STACK
        .take()
        .unwrap_or_else(|| DefaultStack::new(STACK_SIZE).expect("could not map a script stack"));
    {
        // SAFETY: `work` borrows only what outlives this block, which runs the coroutine to
        // its end before leaving (or leaks it, see `Slices`).
        let coroutine = unsafe {
            Coroutine::with_stack_unchecked(&mut stack, |yielder: &Yielder<(), ()>, ()| {
                YIELDER.set(yielder);
                work();
                YIELDER.set(std::ptr::null());
            })
        };
        let mut slices = Slices(Some(coroutine));
        while let Some(coroutine) = slices.0.as_mut() {
            match coroutine.resume(()) {
                CoroutineResult::Yield(()) => tokio::task::yield_now().await,
                CoroutineResult::Return(()) => break,
            }
        }
    }
    STACK.set(Some(stack));
}

/// Called by a timed-out script's hook: sets the script aside while the thread's other tasks
/// run (so they get BUSY, or kill it), if it runs in slices; returns when it is resumed.
pub fn let_others_run() {
    let yielder = YIELDER.get();
    if yielder.is_null() {
        return;
    }
    // What the thread believes of the running command is the script's, not theirs.
    let frozen = crate::util::clock::take_frozen();
    let held = crate::store::take_held();
    YIELDER.set(std::ptr::null());
    // SAFETY: set by `run_in_slices` for the coroutine this code runs on, which is alive.
    unsafe { (*yielder).suspend(()) };
    YIELDER.set(yielder);
    crate::store::restore_held(held);
    crate::util::clock::restore_frozen(frozen);
}
