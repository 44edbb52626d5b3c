//! `Semaphore` and `BoundedSemaphore`: Python's counters of permits, for processes.
//!
//! The count is one 32-bit word in shared memory, taken and given back with atomic
//! compare-and-swap; waiters sleep on it as a futex. A release wakes one sleeper, and
//! sleepers come back every 100 ms to look again, so a sleeper killed right after its
//! wake-up strands nobody (the same habit as the [`Lock`](super::Lock)'s). Nothing is
//! held while waiting: a process killed at any moment leaves the count as it was
//! (with the permits it had taken gone with it, as in Python).

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::nap;
use crate::shm::{Placed, ShmError, Zeroed};
use crate::sys;

#[repr(C)]
struct Shared {
    /// The permits left; the futex word of the sleepers.
    value: AtomicU32,
    /// How many processes sleep (or are about to): releases skip the wake-up when none.
    sleepers: AtomicU32,
}

// SAFETY: atomics only, valid at zero, no pointers.
unsafe impl Zeroed for Shared {}

/// What can go wrong when a permit is given back.
///
/// ```
/// use common::sync::{BoundedSemaphore, SemaphoreError};
///
/// let sem = BoundedSemaphore::new(1)?;
/// assert!(matches!(sem.release(), Err(SemaphoreError::ReleasedTooManyTimes { bound: 1 })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SemaphoreError {
    /// A [`BoundedSemaphore`] was released more often than it was acquired (Python's
    /// `ValueError: semaphore or lock released too many times`).
    #[error("semaphore released too many times: its value would exceed its bound of {bound}")]
    ReleasedTooManyTimes {
        /// The initial value, which the count may not exceed.
        bound: u32,
    },
    /// The count would pass `u32::MAX` (Python's `OverflowError`).
    #[error("semaphore released too many times: its value would overflow")]
    Overflow,
}

/// A counter of permits shared between processes: Python's `multiprocessing.Semaphore`.
///
/// `acquire()` takes a permit, waiting while there is none; `release()` gives one back,
/// from any process (the one that took it or another: a semaphore has no owner).
///
/// ```
/// use std::time::Duration;
/// use common::process::Process;
/// use common::sync::Semaphore;
///
/// let sleeping = Semaphore::new(0)?;
/// let childs = sleeping.clone();
/// let mut p = Process::new(move || childs.release());
/// p.start()?;
/// assert!(sleeping.acquire_timeout(Duration::from_secs(20)), "the child released it");
/// p.join_timeout(Duration::from_secs(20))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Semaphore {
    shared: Placed<Shared>,
    /// The largest value a release may make: `u32::MAX`, or the initial value of a
    /// [`BoundedSemaphore`].
    bound: u32,
}

/// A [`Semaphore`] that may not be released above its initial value: Python's
/// `multiprocessing.BoundedSemaphore`. It dereferences to a `Semaphore`, whose
/// [`release`](Semaphore::release) then returns
/// [`SemaphoreError::ReleasedTooManyTimes`] instead of raising the count.
///
/// ```
/// use common::sync::BoundedSemaphore;
///
/// let slots = BoundedSemaphore::new(2)?;
/// slots.acquire();
/// slots.release()?;
/// assert!(slots.release().is_err(), "a third permit was never handed out");
/// assert_eq!(slots.value(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    semaphore: Semaphore,
}

impl Semaphore {
    /// A semaphore with `value` permits (Python's `Semaphore(value)`).
    ///
    /// ```
    /// let sem = common::sync::Semaphore::new(2)?;
    /// assert_eq!(sem.value(), 2);
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    ///
    /// # Errors
    /// [`ShmError`] when the shared memory cannot be created.
    pub fn new(value: u32) -> Result<Semaphore, ShmError> {
        Semaphore::with_bound(value, u32::MAX)
    }

    fn with_bound(value: u32, bound: u32) -> Result<Semaphore, ShmError> {
        let semaphore = Semaphore {
            shared: Placed::new(0)?,
            bound,
        };
        semaphore.shared.get().value.store(value, Ordering::SeqCst);
        Ok(semaphore)
    }

    fn count(&self) -> &AtomicU32 {
        &self.shared.get().value
    }

    /// The permits left now (Python's `sem.get_value()`); another process may change
    /// it the next moment.
    ///
    /// ```
    /// let sem = common::sync::Semaphore::new(1)?;
    /// sem.acquire();
    /// assert_eq!(sem.value(), 0);
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    pub fn value(&self) -> u32 {
        self.count().load(Ordering::SeqCst)
    }

    /// Takes a permit if one is left (Python's `sem.acquire(False)`).
    ///
    /// ```
    /// let sem = common::sync::Semaphore::new(1)?;
    /// assert!(sem.try_acquire());
    /// assert!(!sem.try_acquire());
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    pub fn try_acquire(&self) -> bool {
        self.count()
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
            .is_ok()
    }

    /// Takes a permit, waiting for one however long it takes (Python's
    /// `sem.acquire()`).
    ///
    /// ```
    /// let sem = common::sync::Semaphore::new(1)?;
    /// sem.acquire();
    /// assert_eq!(sem.value(), 0);
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    pub fn acquire(&self) {
        self.acquire_until(None);
    }

    /// Takes a permit, waiting at most `timeout` for one (Python's
    /// `sem.acquire(timeout=t)`): whether it was taken.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let sem = common::sync::Semaphore::new(0)?;
    /// let started = Instant::now();
    /// assert!(!sem.acquire_timeout(Duration::from_millis(50)));
    /// assert!(started.elapsed() >= Duration::from_millis(50));
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.acquire_until(Instant::now().checked_add(timeout))
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> bool {
        let shared = self.shared.get();
        loop {
            if self.try_acquire() {
                return true;
            }
            // Counted before looking at the value, and the releaser adds before it
            // looks at the count (both SeqCst): a release is never missed.
            shared.sleepers.fetch_add(1, Ordering::SeqCst);
            let more = nap(&shared.value, 0, deadline);
            shared.sleepers.fetch_sub(1, Ordering::SeqCst);
            if !more {
                return self.try_acquire();
            }
        }
    }

    /// Gives a permit back and wakes one waiting process (Python's `sem.release()`).
    ///
    /// ```
    /// let sem = common::sync::Semaphore::new(0)?;
    /// sem.release()?;
    /// assert!(sem.try_acquire());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`SemaphoreError::ReleasedTooManyTimes`] for a [`BoundedSemaphore`] already at
    /// its bound, [`SemaphoreError::Overflow`] at `u32::MAX`; the value is unchanged.
    pub fn release(&self) -> Result<(), SemaphoreError> {
        let bound = self.bound;
        self.count()
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                v.checked_add(1).filter(|&v| v <= bound)
            })
            .map_err(|_| match bound {
                u32::MAX => SemaphoreError::Overflow,
                bound => SemaphoreError::ReleasedTooManyTimes { bound },
            })?;
        if self.shared.get().sleepers.load(Ordering::SeqCst) > 0 {
            sys::futex_wake(self.count(), 1);
        }
        Ok(())
    }
}

impl BoundedSemaphore {
    /// A semaphore with `value` permits that may never hold more (Python's
    /// `BoundedSemaphore(value)`).
    ///
    /// ```
    /// let sem = common::sync::BoundedSemaphore::new(3)?;
    /// assert_eq!(sem.value(), 3);
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    ///
    /// # Errors
    /// [`ShmError`] when the shared memory cannot be created.
    pub fn new(value: u32) -> Result<BoundedSemaphore, ShmError> {
        Ok(BoundedSemaphore {
            semaphore: Semaphore::with_bound(value, value)?,
        })
    }
}

impl std::ops::Deref for BoundedSemaphore {
    type Target = Semaphore;

    fn deref(&self) -> &Semaphore {
        &self.semaphore
    }
}

impl fmt::Debug for Semaphore {
    /// Python's repr: `<Semaphore(value=2)>`, or `<BoundedSemaphore(value=1, maxvalue=2)>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bound {
            u32::MAX => write!(f, "<Semaphore(value={})>", self.value()),
            bound => write!(
                f,
                "<BoundedSemaphore(value={}, maxvalue={bound})>",
                self.value()
            ),
        }
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.semaphore.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPython's `_TestSemaphore._test_semaphore`, in one process.
    fn counts_like_python(sem: &Semaphore) {
        assert_eq!(sem.value(), 2);
        sem.acquire();
        assert_eq!(sem.value(), 1);
        assert!(sem.try_acquire());
        assert_eq!(sem.value(), 0);
        assert!(!sem.try_acquire());
        sem.release().unwrap();
        assert_eq!(sem.value(), 1);
        sem.release().unwrap();
        assert_eq!(sem.value(), 2);
    }

    #[test]
    fn a_semaphore_counts_and_goes_past_its_initial_value() {
        let sem = Semaphore::new(2).unwrap();
        counts_like_python(&sem);
        sem.release().unwrap();
        assert_eq!(format!("{sem:?}"), "<Semaphore(value=3)>");
    }

    #[test]
    fn a_bounded_semaphore_refuses_a_release_past_its_bound() {
        let sem = BoundedSemaphore::new(2).unwrap();
        counts_like_python(&sem);
        assert!(matches!(
            sem.release(),
            Err(SemaphoreError::ReleasedTooManyTimes { bound: 2 })
        ));
        assert_eq!(sem.value(), 2);
        assert_eq!(
            format!("{sem:?}"),
            "<BoundedSemaphore(value=2, maxvalue=2)>"
        );
    }

    #[test]
    fn timeouts_of_an_empty_semaphore() {
        let sem = Semaphore::new(0).unwrap();
        let started = Instant::now();
        assert!(!sem.try_acquire());
        assert!(!sem.acquire_timeout(Duration::ZERO));
        assert!(started.elapsed() < Duration::from_millis(50));
        assert!(!sem.acquire_timeout(Duration::from_millis(40)));
        assert!(started.elapsed() >= Duration::from_millis(40));
        assert!(started.elapsed() < Duration::from_secs(2), "late");
    }

    #[test]
    fn the_count_does_not_overflow() {
        let sem = Semaphore::new(u32::MAX).unwrap();
        assert!(matches!(sem.release(), Err(SemaphoreError::Overflow)));
        assert_eq!(sem.value(), u32::MAX);
    }
}
