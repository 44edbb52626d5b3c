//! `RLock`: Python's `multiprocessing.RLock`, a lock its holder may take again.

use std::fmt;
use std::time::Duration;

use super::lock::{Lock, LockError, LockGuard};

/// A re-entrant lock shared between processes: Python's `multiprocessing.RLock`.
///
/// The process (the thread, to be exact) that holds it may acquire it again; it is
/// released when the last of its guards is dropped. Every other process waits, as with
/// a [`Lock`], and the same robustness holds: a holder that dies gives the next
/// `acquire()` a [`LockError::OwnerDied`] that holds the lock.
///
/// ```
/// use common::process::Process;
/// use common::sync::RLock;
///
/// let rlock = RLock::new()?;
/// let outer = rlock.acquire()?;
/// let inner = rlock.acquire()?; // a Lock would say AlreadyHeld here
/// drop(inner);
/// let childs = rlock.clone();
/// let mut p = Process::new(move || childs.try_acquire().map(|g| assert!(g.is_none())));
/// p.start()?;
/// assert_eq!(p.join_timeout(std::time::Duration::from_secs(20))?, Some(0), "still held by the outer guard");
/// drop(outer);
/// assert!(rlock.try_acquire()?.is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct RLock {
    lock: Lock,
}

impl RLock {
    /// A new, free re-entrant lock in shared memory.
    ///
    /// ```
    /// let rlock = common::sync::RLock::new()?;
    /// assert_eq!(format!("{rlock:?}"), "<RLock(owner=None)>");
    /// # Ok::<(), common::sync::LockError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Lock::new`].
    pub fn new() -> Result<RLock, LockError> {
        Ok(RLock { lock: Lock::new()? })
    }

    /// Takes the lock, waiting for it unless this process holds it already
    /// (Python's `rlock.acquire()`).
    ///
    /// ```
    /// let rlock = common::sync::RLock::new()?;
    /// let _a = rlock.acquire()?;
    /// let _b = rlock.acquire()?;
    /// # Ok::<(), common::sync::LockError>(())
    /// ```
    ///
    /// # Errors
    /// [`LockError::OwnerDied`] when the previous holder died holding it.
    pub fn acquire(&self) -> Result<LockGuard, LockError> {
        self.lock.acquire_blocking(true)
    }

    /// Takes the lock if it is free or this process holds it: `None` when another
    /// process holds it.
    ///
    /// ```
    /// let rlock = common::sync::RLock::new()?;
    /// let _a = rlock.acquire()?;
    /// assert!(rlock.try_acquire()?.is_some());
    /// # Ok::<(), common::sync::LockError>(())
    /// ```
    ///
    /// # Errors
    /// As [`RLock::acquire`].
    pub fn try_acquire(&self) -> Result<Option<LockGuard>, LockError> {
        match self.lock.acquire_within(Duration::ZERO, true) {
            Err(LockError::Timeout) => Ok(None),
            other => other.map(Some),
        }
    }

    /// Waits at most `timeout` for the lock (Python's `rlock.acquire(timeout=t)`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let rlock = common::sync::RLock::new()?;
    /// let _a = rlock.acquire_timeout(Duration::from_millis(5))?;
    /// # Ok::<(), common::sync::LockError>(())
    /// ```
    ///
    /// # Errors
    /// [`LockError::Timeout`] when the time runs out, or as [`RLock::acquire`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard, LockError> {
        self.lock.acquire_within(timeout, true)
    }

    /// The pid of the process holding the lock, `None` when it is free.
    ///
    /// ```
    /// let rlock = common::sync::RLock::new()?;
    /// assert_eq!(rlock.holder(), None);
    /// # Ok::<(), common::sync::LockError>(())
    /// ```
    pub fn holder(&self) -> Option<u32> {
        self.lock.holder()
    }
}

impl RLock {
    /// The mutex underneath, for a [`Condition`](super::Condition).
    pub(super) fn lock(&self) -> &Lock {
        &self.lock
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.holder() {
            Some(pid) => write!(f, "<RLock(owner={pid})>"),
            None => f.write_str("<RLock(owner=None)>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_released_when_the_last_guard_goes() {
        let rlock = RLock::new().unwrap();
        let a = rlock.acquire().unwrap();
        let b = rlock.try_acquire().unwrap().unwrap();
        let c = rlock.acquire_timeout(Duration::from_millis(1)).unwrap();
        drop(a);
        drop(c);
        assert_eq!(rlock.holder(), Some(std::process::id()));
        drop(b);
        assert_eq!(rlock.holder(), None);
    }
}
