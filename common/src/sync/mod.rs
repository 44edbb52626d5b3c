//! Locks and a Barrier in shared memory, for processes: Python's
//! `multiprocessing.Lock`, `multiprocessing.RLock` and `multiprocessing.Barrier`.
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
mod lock;
mod rlock;

pub use barrier::{Barrier, BarrierError, BrokenReason};
pub use lock::{Lock, LockError, LockGuard, OwnerDied};
pub use rlock::RLock;
