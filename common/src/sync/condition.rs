//! `Condition`: Python's `multiprocessing.Condition`, a lock and a place to wait on it.
//!
//! Each waiting process has a slot of its own in shared memory (its pid, a ticket that
//! orders the waiters, and a state word that is its futex). `notify(n)` marks the `n`
//! oldest waiters' slots notified and wakes those slots alone, so exactly the
//! processes told wake up: no spurious wake-ups, and `wait_timeout` says truly whether
//! it was notified. Slots are only changed by the holder of the lock.
//!
//! Where Python hangs: its `notify()` waits for every sleeper it wakes to say it woke,
//! so a sleeper killed while waiting makes the next `notify()` wait forever. Here a
//! notifier skips the slot of a dead waiter (and frees it), and the notification goes
//! to the next live one.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::lock::TakenBack;
use super::{Lock, LockError, LockGuard, RLock, nap};
use crate::shm::{Placed, Zeroed};
use crate::sys;

/// How many processes may wait on one condition at the same time; one more gets
/// [`ConditionError::TooManyWaiters`].
///
/// ```
/// assert_eq!(common::sync::MAX_WAITERS, 64);
/// ```
pub const MAX_WAITERS: usize = 64;

const FREE: u32 = 0;
const WAITING: u32 = 1;
const NOTIFIED: u32 = 2;

#[repr(C)]
struct Slot {
    /// FREE, WAITING or NOTIFIED; the futex its waiter sleeps on.
    state: AtomicU32,
    pid: AtomicU32,
    /// When the waiter came: the oldest are notified first.
    ticket: AtomicU64,
}

#[repr(C)]
struct Shared {
    next_ticket: AtomicU64,
    slots: [Slot; MAX_WAITERS],
}

// SAFETY: atomics only, valid at zero (every slot free), no pointers.
unsafe impl Zeroed for Shared {}

/// What can go wrong with a [`Condition`].
///
/// ```
/// use common::sync::{Condition, ConditionError};
///
/// let cond = Condition::new()?;
/// assert!(matches!(cond.notify(), Err(ConditionError::NotHeld)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConditionError {
    /// `wait` or `notify` without holding the condition's lock (Python's
    /// `RuntimeError: cannot wait on un-acquired lock`).
    #[error("this process does not hold the condition's lock: acquire() it first")]
    NotHeld,
    /// More than [`MAX_WAITERS`] live processes wait at once.
    #[error("more than {MAX_WAITERS} processes wait on this condition at once")]
    TooManyWaiters,
    /// While this process waited, the process that took the lock died holding it. This
    /// process holds the lock again (through its guard), in the state the dead process
    /// left: check the data it protects.
    #[error(
        "the condition's lock was taken by a process{} that died holding it; this \
         process holds it again: check the data it protects",
        .pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    OwnerDied {
        /// The dead holder's pid, when it was recorded.
        pid: Option<u32>,
    },
    /// The lock itself failed.
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// A lock with a place to wait for a change that another process makes under it:
/// Python's `multiprocessing.Condition`.
///
/// Take the lock with [`acquire`](Condition::acquire) (Python's `with cond:`); while
/// holding it, [`wait`](Condition::wait) lets it go, sleeps until notified and takes
/// it back; [`notify`](Condition::notify) wakes the oldest waiter,
/// [`notify_all`](Condition::notify_all) every one.
///
/// ```
/// use std::time::Duration;
/// use common::process::Process;
/// use common::shm::SharedValue;
/// use common::sync::Condition;
///
/// let (cond, state) = (Condition::new()?, SharedValue::new(0u32)?);
/// let (childs_cond, childs_state) = (cond.clone(), state.clone());
/// let mut p = Process::new(move || -> Result<(), common::sync::ConditionError> {
///     let _guard = childs_cond.acquire()?;
///     childs_state.set(4);
///     childs_cond.notify()?;
///     Ok(())
/// });
/// let _guard = cond.acquire()?;
/// p.start()?;
/// assert!(cond.wait_for_timeout(|| state.get() == 4, Duration::from_secs(20))?);
/// # drop(_guard);
/// # p.join_timeout(Duration::from_secs(20))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Condition {
    lock: Lock,
    reentrant: bool,
    shared: Placed<Shared>,
}

impl Condition {
    /// A condition over a new [`RLock`], as Python's `Condition()`.
    ///
    /// ```
    /// let cond = common::sync::Condition::new()?;
    /// let _a = cond.acquire()?;
    /// let _b = cond.acquire()?; // re-entrant
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`RLock::new`].
    pub fn new() -> Result<Condition, ConditionError> {
        Condition::with_rlock(&RLock::new()?)
    }

    /// A condition over `lock` (Python's `Condition(lock)`): acquiring either takes the
    /// same lock.
    ///
    /// ```
    /// use common::sync::{Condition, Lock};
    ///
    /// let lock = Lock::new()?;
    /// let cond = Condition::with_lock(&lock)?;
    /// let _guard = cond.acquire()?;
    /// assert!(lock.try_acquire().is_err(), "held by this process already");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ConditionError::Lock`] when the shared memory cannot be created.
    pub fn with_lock(lock: &Lock) -> Result<Condition, ConditionError> {
        Condition::over(lock.clone(), false)
    }

    /// A condition over `rlock` (Python's `Condition(rlock)`).
    ///
    /// ```
    /// use common::sync::{Condition, RLock};
    ///
    /// let rlock = RLock::new()?;
    /// let cond = Condition::with_rlock(&rlock)?;
    /// let _a = rlock.acquire()?;
    /// cond.notify_all()?; // held through the RLock
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Condition::with_lock`].
    pub fn with_rlock(rlock: &RLock) -> Result<Condition, ConditionError> {
        Condition::over(rlock.lock().clone(), true)
    }

    fn over(lock: Lock, reentrant: bool) -> Result<Condition, ConditionError> {
        let shared = Placed::new(0).map_err(LockError::from)?;
        Ok(Condition {
            lock,
            reentrant,
            shared,
        })
    }

    /// Takes the condition's lock (Python's `cond.acquire()` or `with cond:`).
    ///
    /// ```
    /// let cond = common::sync::Condition::new()?;
    /// let guard = cond.acquire()?;
    /// drop(guard); // released
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Lock::acquire`] (or [`RLock::acquire`]).
    pub fn acquire(&self) -> Result<LockGuard, LockError> {
        self.lock.acquire_blocking(self.reentrant)
    }

    fn check_held(&self) -> Result<(), ConditionError> {
        match self.lock.holder() {
            Some(pid) if pid == sys::pid() => Ok(()),
            _ => Err(ConditionError::NotHeld),
        }
    }

    /// Lets the lock go, sleeps until notified, and takes the lock back (Python's
    /// `cond.wait()`). The caller holds the lock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use common::process::Process;
    /// use common::sync::Condition;
    ///
    /// let cond = Condition::new()?;
    /// let childs = cond.clone();
    /// let mut p = Process::new(move || -> Result<(), common::sync::ConditionError> {
    ///     for _ in 0..2000 {
    ///         let _guard = childs.acquire()?;
    ///         if childs.notify()? == 1 {
    ///             return Ok(());
    ///         }
    ///         drop(_guard);
    ///         std::thread::sleep(Duration::from_millis(10));
    ///     }
    ///     panic!("nobody waited");
    /// });
    /// let _guard = cond.acquire()?;
    /// p.start()?;
    /// cond.wait()?;
    /// # drop(_guard);
    /// # p.join_timeout(Duration::from_secs(30))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ConditionError::NotHeld`], [`ConditionError::TooManyWaiters`], or
    /// [`ConditionError::OwnerDied`] (the lock is held again then).
    pub fn wait(&self) -> Result<(), ConditionError> {
        self.wait_until(None).map(drop)
    }

    /// As [`wait`](Condition::wait), for at most `timeout` (Python's
    /// `cond.wait(timeout)`): whether it was notified. The lock is held again either
    /// way.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let cond = common::sync::Condition::new()?;
    /// let _guard = cond.acquire()?;
    /// assert!(!cond.wait_timeout(Duration::from_millis(20))?, "nobody notified");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`wait`](Condition::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ConditionError> {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    /// Waits until `predicate` holds, checking it now and after every notification
    /// (Python's `cond.wait_for(predicate)`).
    ///
    /// ```
    /// let cond = common::sync::Condition::new()?;
    /// let _guard = cond.acquire()?;
    /// cond.wait_for(|| true)?; // already true: no wait
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`wait`](Condition::wait).
    pub fn wait_for(&self, mut predicate: impl FnMut() -> bool) -> Result<(), ConditionError> {
        while !predicate() {
            self.wait()?;
        }
        Ok(())
    }

    /// As [`wait_for`](Condition::wait_for), for at most `timeout` (Python's
    /// `cond.wait_for(predicate, timeout)`): the predicate's last value.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let cond = common::sync::Condition::new()?;
    /// let _guard = cond.acquire()?;
    /// assert!(!cond.wait_for_timeout(|| false, Duration::from_millis(20))?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`wait`](Condition::wait).
    pub fn wait_for_timeout(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool, ConditionError> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            self.wait_until(deadline)?;
        }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<bool, ConditionError> {
        self.check_held()?;
        let slot = self.claim_slot()?;
        let depth = self.lock.let_go();
        while slot.state.load(Ordering::SeqCst) == WAITING && nap(&slot.state, WAITING, deadline) {}
        let taken = self.lock.take_back(depth);
        // Under the lock again: a notification that came after the timeout counts.
        let notified = slot.state.swap(FREE, Ordering::SeqCst) == NOTIFIED;
        match taken? {
            TakenBack::Cleanly => Ok(notified),
            TakenBack::AfterDeathOf(pid) => Err(ConditionError::OwnerDied { pid }),
        }
    }

    /// Claims a free slot (or a dead waiter's) for this process. The caller holds the
    /// lock.
    fn claim_slot(&self) -> Result<&Slot, ConditionError> {
        let shared = self.shared.get();
        // A free slot; only when there is none, one whose waiter died (a system call
        // each, so not asked of every busy slot on the way to a free one).
        let slot = shared
            .slots
            .iter()
            .find(|slot| slot.state.load(Ordering::SeqCst) == FREE)
            .or_else(|| {
                shared
                    .slots
                    .iter()
                    .find(|slot| sys::has_exited(slot.pid.load(Ordering::SeqCst)))
            })
            .ok_or(ConditionError::TooManyWaiters)?;
        slot.pid.store(sys::pid(), Ordering::SeqCst);
        slot.ticket.store(
            shared.next_ticket.fetch_add(1, Ordering::SeqCst),
            Ordering::SeqCst,
        );
        slot.state.store(WAITING, Ordering::SeqCst);
        Ok(slot)
    }

    /// Wakes the waiter that has waited longest (Python's `cond.notify()`): how many
    /// were woken, 0 or 1. The caller holds the lock.
    ///
    /// ```
    /// let cond = common::sync::Condition::new()?;
    /// let _guard = cond.acquire()?;
    /// assert_eq!(cond.notify()?, 0, "nobody waits");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ConditionError::NotHeld`].
    pub fn notify(&self) -> Result<usize, ConditionError> {
        self.notify_n(1)
    }

    /// Wakes every waiter (Python's `cond.notify_all()`): how many were woken.
    ///
    /// ```
    /// let cond = common::sync::Condition::new()?;
    /// let _guard = cond.acquire()?;
    /// assert_eq!(cond.notify_all()?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ConditionError::NotHeld`].
    pub fn notify_all(&self) -> Result<usize, ConditionError> {
        self.notify_n(usize::MAX)
    }

    /// Wakes the `n` waiters that have waited longest, or all if fewer wait (Python's
    /// `cond.notify(n)`): how many were woken. Waiters that died are skipped.
    ///
    /// ```
    /// let cond = common::sync::Condition::new()?;
    /// let _guard = cond.acquire()?;
    /// assert_eq!(cond.notify_n(3)?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ConditionError::NotHeld`].
    pub fn notify_n(&self, n: usize) -> Result<usize, ConditionError> {
        self.check_held()?;
        let mut waiting: Vec<&Slot> = self
            .shared
            .get()
            .slots
            .iter()
            .filter(|slot| slot.state.load(Ordering::SeqCst) == WAITING)
            .collect();
        waiting.sort_by_key(|slot| slot.ticket.load(Ordering::SeqCst));
        let mut woken = 0;
        for slot in waiting {
            if woken == n {
                break;
            }
            if sys::has_exited(slot.pid.load(Ordering::SeqCst)) {
                slot.state.store(FREE, Ordering::SeqCst);
                continue;
            }
            slot.state.store(NOTIFIED, Ordering::SeqCst);
            sys::futex_wake(&slot.state, 1);
            woken += 1;
        }
        Ok(woken)
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let waiting = self
            .shared
            .get()
            .slots
            .iter()
            .filter(|slot| slot.state.load(Ordering::SeqCst) == WAITING)
            .count();
        write!(f, "<Condition({:?}, {waiting})>", self.lock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_or_notifying_without_the_lock_is_an_error() {
        let cond = Condition::new().unwrap();
        assert!(matches!(cond.wait(), Err(ConditionError::NotHeld)));
        assert!(matches!(
            cond.wait_timeout(Duration::ZERO),
            Err(ConditionError::NotHeld)
        ));
        assert!(matches!(cond.notify_all(), Err(ConditionError::NotHeld)));
    }

    #[test]
    fn a_timed_wait_times_out_and_holds_the_lock_again_at_its_depth() {
        let rlock = RLock::new().unwrap();
        let cond = Condition::with_rlock(&rlock).unwrap();
        let outer = cond.acquire().unwrap();
        let inner = cond.acquire().unwrap();
        let started = Instant::now();
        assert!(!cond.wait_timeout(Duration::from_millis(30)).unwrap());
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(started.elapsed() < Duration::from_secs(2), "late");
        assert_eq!(rlock.holder(), Some(std::process::id()));
        drop(inner);
        assert_eq!(rlock.holder(), Some(std::process::id()), "one level left");
        drop(outer);
        assert_eq!(rlock.holder(), None);
        assert_eq!(
            format!("{cond:?}"),
            "<Condition(<Lock(owner=None)>, 0)>",
            "the slot was given back"
        );
    }
}
