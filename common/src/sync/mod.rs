//! A Lock and a Barrier in shared memory, for processes: Python's
//! `multiprocessing.Lock` and `multiprocessing.Barrier`.
//!
//! Both live in a shared-memory segment (see [`crate::shm`]): create them in the parent,
//! clone them into the children's closures before `start()`.
//!
//! Where Python hangs, these report an error:
//! - a [`Lock`] whose holder died gives the next `acquire()` a
//!   [`SyncError::OwnerDied`] at once, and works again afterwards (Python's Lock
//!   deadlocks: cpython gh-88304);
//! - a [`Barrier`] whose waiting party was killed breaks within about 100 ms, so the
//!   others get [`SyncError::Broken`] (Python's never returns: cpython gh-123899).
//!
//! About `raw_sync`: its mutex cannot be made robust (its initialiser takes no
//! attributes, and it reduces the `EOWNERDEAD` return code to a string), and its timed
//! waits build their absolute deadline without carrying nanoseconds into seconds, so
//! that most sub-second timeouts fail at once with `EINVAL` (its issue #39). The tests
//! in `tests/sync.rs` show both problems. So the Lock is a robust, process-shared
//! pthread mutex set up here, with deadlines computed here; the Barrier counts arrivals
//! with one atomic word, spins briefly, then sleeps on a futex with a relative timeout.

mod barrier;
mod lock;

pub use barrier::Barrier;
pub use lock::{Lock, LockGuard};

use nix::errno::Errno;

use crate::shm::ShmError;

/// What can go wrong with a [`Lock`] or a [`Barrier`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The process holding the lock died without releasing it. The lock has been
    /// released and can be acquired again; what it protected may be half-updated.
    #[error(
        "the lock's holder{} died while holding it; the lock is free again, but check \
         the data it protects",
        .pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    OwnerDied {
        /// The dead holder's pid, when it was recorded.
        pid: Option<u32>,
    },
    /// The lock was not acquired within the timeout.
    #[error("timed out waiting for the lock")]
    Timeout,
    /// This process already holds the lock: acquiring it again would wait forever.
    #[error("this process already holds the lock; acquiring it again would deadlock")]
    AlreadyHeld,
    /// The barrier is broken (a timeout, `abort()`, `reset()` during the wait, or a
    /// waiting party that died): Python's `BrokenBarrierError`.
    #[error(
        "the barrier is broken (a wait timed out, it was aborted or reset, or a waiting \
         process died); call reset() to use it again"
    )]
    Broken,
    /// `Barrier::new` with no parties, or more than it can count.
    #[error("a barrier needs between 1 and {max} parties, not {parties}")]
    InvalidParties {
        /// The number asked for.
        parties: usize,
        /// The largest number supported.
        max: usize,
    },
    /// The shared memory could not be created.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// A pthread call failed.
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The error it returned.
        #[source]
        source: Errno,
    },
}
