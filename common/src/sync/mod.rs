//! Locks, a Barrier and the signalling primitives in shared memory, for processes:
//! Python's `multiprocessing.Lock`, `RLock`, `Barrier`, `Event`, `Semaphore`,
//! `BoundedSemaphore` and `Condition`.
//!
//! All of them live in a shared-memory segment (see [`crate::shm`]): create them in the
//! parent, clone them into the children's closures before `start()`.
//!
//! Where Python hangs, these report an error:
//! - a [`Lock`] whose holder died gives the next `acquire()` a
//!   [`LockError::OwnerDied`] at once, and that error holds the lock, so the process
//!   told can repair what the lock protects before anyone else sees it (Python's Lock
//!   deadlocks: cpython gh-88304);
//! - a [`Barrier`] whose waiting party was killed breaks within about 100 ms, so the
//!   others get [`BarrierError::Broken`] with [`BrokenReason::PartyDied`] (Python's
//!   never returns: cpython gh-123899).
//!
//! About `raw_sync`: its mutex cannot be made robust (its initialiser takes no
//! attributes, and it reduces the `EOWNERDEAD` return code to a string), and its timed
//! waits build their absolute deadline without carrying nanoseconds into seconds, so
//! that most sub-second timeouts fail at once with `EINVAL` (its issue #39). The tests
//! in `common_tests/tests/sync.rs` show both problems. So the Lock is a robust,
//! process-shared pthread mutex set up here, with monotonic deadlines; the Barrier
//! counts arrivals with one atomic word, spins briefly, then sleeps on a futex with a
//! relative timeout.
//!
//! ```
//! use common::process::Process;
//! use common::sync::{Barrier, Lock};
//!
//! let (barrier, lock) = (Barrier::new(2)?, Lock::new()?);
//! let (childs_barrier, childs_lock) = (barrier.clone(), lock.clone());
//! let mut p = Process::new(move || -> Result<(), Box<dyn std::error::Error>> {
//!     childs_barrier.wait()?;
//!     let _guard = childs_lock.acquire()?;
//!     Ok(())
//! });
//! p.start()?;
//! barrier.wait()?;
//! drop(lock.acquire()?);
//! assert_eq!(p.join_timeout(std::time::Duration::from_secs(20))?, Some(0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod barrier;
mod condition;
mod event;
mod lock;
mod rlock;
mod semaphore;

pub use barrier::{Barrier, BarrierError, BrokenReason};
pub use condition::{Condition, ConditionError, MAX_WAITERS};
pub use event::Event;
pub use lock::{Lock, LockError, LockGuard, OwnerDied};
pub use rlock::RLock;
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreError};

use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

/// The longest a waiter of an [`Event`], a [`Semaphore`], a [`Condition`] or a
/// [`Queue`](crate::queue::Queue) sleeps before it looks again: a wake-up taken to the
/// grave by a process killed right after it strands the others for this long at most.
pub(crate) const NAP: Duration = Duration::from_millis(100);

/// Sleeps while `word` holds `expected`, for at most [`NAP`] and not past `deadline`
/// (`None`: no deadline). Returns `false`, without sleeping, once the deadline has
/// passed. Spurious returns happen: callers look at their condition again.
pub(crate) fn nap(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
    let left = match deadline {
        None => NAP,
        Some(deadline) => {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            (deadline - now).min(NAP)
        }
    };
    crate::sys::futex_wait(word, expected, Some(left));
    true
}
