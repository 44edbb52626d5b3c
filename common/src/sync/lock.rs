//! `Lock`: a robust, process-shared mutex whose waiters cannot be stranded.
//!
//! Two attributes of the pthread mutex make it keep its promises between processes:
//! - robust: when its holder dies, the next locker gets `EOWNERDEAD` and holds the
//!   lock; [`LockError::OwnerDied`] hands that possession on, with the guard inside;
//! - error checking: a second lock by the holder is [`LockError::AlreadyHeld`], not a
//!   deadlock.
//!
//! And one habit: a waiter never sleeps for more than [`RETRY`] at a time. Unlock wakes
//! one waiter; a waiter killed right after that wake-up takes the wake-up to its grave,
//! and the others would sleep on with the lock free (seen in 32 of 150 trials with one
//! of three contending processes killed at random). Coming back every [`RETRY`] to try
//! again, they find the lock free and take it. A priority-inheriting mutex, where the
//! kernel hands the lock over, cures it too, but makes every contended acquire a
//! system call: 2.2 µs against 0.06 µs here (`compare bench --only lock-2`).
//!
//! Timed waits use `pthread_mutex_clocklock` on `CLOCK_MONOTONIC`, so a step of the wall
//! clock (NTP, an administrator, a laptop resuming) neither shortens nor lengthens them.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::size_of;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::shm::{Segment, ShmError};
use crate::sys;
use crate::timeline::{self, Mark};

/// The longest a waiter sleeps before it tries the lock again (see the module doc).
const RETRY: Duration = Duration::from_millis(100);

#[repr(C)]
struct Shared {
    mutex: UnsafeCell<libc::pthread_mutex_t>,
    /// The pid of the process holding the mutex, 0 when free: what `OwnerDied` reports.
    holder: AtomicU32,
    /// How many guards the holder has ([`RLock`](super::RLock) re-entry); 1 for a Lock.
    depth: AtomicU32,
}

/// How [`Lock::take_back`] got the lock back.
pub(super) enum TakenBack {
    /// Free, or released by its holder.
    Cleanly,
    /// From a holder that died holding it (its pid, when recorded).
    AfterDeathOf(Option<u32>),
}

/// What can go wrong with a [`Lock`] or an [`RLock`](super::RLock).
///
/// ```
/// use common::sync::{Lock, LockError};
///
/// let lock = Lock::new()?;
/// let _guard = lock.acquire()?;
/// assert!(matches!(lock.acquire(), Err(LockError::AlreadyHeld)));
/// # Ok::<(), LockError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The process holding the lock died without releasing it. This process holds the
    /// lock now (see [`OwnerDied`]).
    #[error(transparent)]
    OwnerDied(OwnerDied),
    /// The lock was not acquired within the timeout.
    #[error("timed out waiting for the lock")]
    Timeout,
    /// This process already holds the lock: acquiring it again would wait forever
    /// (use an [`RLock`](super::RLock) for re-entry).
    #[error(
        "this process already holds the lock; acquiring it again would deadlock \
         (use an RLock to re-enter)"
    )]
    AlreadyHeld,
    /// The shared memory could not be created.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// A pthread call failed.
    #[error("{call} failed: {}", std::io::Error::from_raw_os_error(*.code))]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The error number it returned.
        code: i32,
    },
}

/// The holder of a lock died while holding it, and the calling process holds the lock
/// now, in the state the dead process left what it protects: the match for
/// [`std::sync::PoisonError`]. Repair the data, then drop this error (which releases
/// the lock) or keep the lock with [`into_guard`](OwnerDied::into_guard).
#[derive(Debug, thiserror::Error)]
#[error(
    "the lock's holder{} died while holding it; this process holds the lock now: check \
     the data it protects",
    .pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
)]
///
/// ```
/// use common::process::Process;
/// use common::sync::{Lock, LockError};
///
/// let lock = Lock::new()?;
/// let childs = lock.clone();
/// let mut p = Process::new(move || std::mem::forget(childs.acquire().expect("free")));
/// p.start()?;
/// p.join_timeout(std::time::Duration::from_secs(20))?;
/// match lock.acquire() {
///     Err(LockError::OwnerDied(died)) => {
///         assert_eq!(died.pid(), p.pid());
///         assert_eq!(lock.holder(), Some(std::process::id()), "the one told holds it");
///     }
///     other => panic!("{other:?}"),
/// }
/// assert!(lock.try_acquire()?.is_some(), "released with the error");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct OwnerDied {
    pid: Option<u32>,
    guard: LockGuard,
}

// SAFETY: the guard inside is `!Send` only to keep a lock on the thread that took it;
// nothing in it is unsafe to touch from another thread: its memory is an `Arc` of a
// `Send + Sync` segment, and the mutex is error-checking and robust, so an unlock from
// a thread that does not own it is refused with EPERM (the lock then stays held),
// which is defined behaviour. Being `Send + Sync` lets the error travel in
// `anyhow::Error` and `Box<dyn Error + Send + Sync>` like any other.
unsafe impl Send for OwnerDied {}
// SAFETY: `&OwnerDied` gives access to the pid only.
unsafe impl Sync for OwnerDied {}

impl OwnerDied {
    /// The dead holder's pid, when it was recorded.
    ///
    /// ```
    /// # use common::sync::{Lock, LockError};
    /// # let lock = Lock::new()?;
    /// if let Err(LockError::OwnerDied(died)) = lock.acquire() {
    ///     eprintln!("process {:?} died holding the lock", died.pid());
    /// }
    /// # Ok::<(), LockError>(())
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The guard of the lock, to go on holding it (std's `PoisonError::into_inner`).
    ///
    /// ```
    /// use common::process::Process;
    /// use common::shm::SharedValue;
    /// use common::sync::{Lock, LockError};
    ///
    /// let (lock, balance) = (Lock::new()?, SharedValue::new(100i64)?);
    /// let (childs_lock, childs_balance) = (lock.clone(), balance.clone());
    /// let mut p = Process::new(move || {
    ///     let guard = childs_lock.acquire().expect("free");
    ///     childs_balance.set(-1); // half-way through an update...
    ///     std::mem::forget(guard); // ...and gone, holding the lock
    /// });
    /// p.start()?;
    /// p.join_timeout(std::time::Duration::from_secs(20))?;
    /// let _guard = match lock.acquire() {
    ///     Ok(guard) => guard,
    ///     Err(LockError::OwnerDied(died)) => {
    ///         balance.set(100); // repair, still holding the lock
    ///         died.into_guard()
    ///     }
    ///     Err(other) => return Err(other.into()),
    /// };
    /// assert_eq!(balance.get(), 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_guard(self) -> LockGuard {
        self.guard
    }
}

/// A lock shared between processes: Python's `multiprocessing.Lock`.
///
/// `acquire()` returns a guard that releases the lock when dropped, the match for
/// Python's `with lock:`. Clone the lock into a child's closure to share it.
///
/// The mutex is robust: if its holder dies (exits or is killed) while holding it, the
/// next `acquire()` returns [`LockError::OwnerDied`] at once instead of waiting
/// forever, and that error holds the lock until it is dropped.
///
/// ```
/// use common::process::Process;
/// use common::shm::SharedValue;
/// use common::sync::{Lock, LockError};
///
/// let lock = Lock::new()?;
/// let counter = SharedValue::new(0u64)?;
/// let mut workers = Vec::new();
/// for _ in 0..2 {
///     let (lock, counter) = (lock.clone(), counter.clone());
///     let mut p = Process::new(move || -> Result<(), LockError> {
///         for _ in 0..1000 {
///             let _guard = lock.acquire()?;
///             counter.set(counter.get() + 1);
///         }
///         Ok(())
///     });
///     p.start()?;
///     workers.push(p);
/// }
/// for p in &workers {
///     assert_eq!(p.join_timeout(std::time::Duration::from_secs(20))?, Some(0));
/// }
/// assert_eq!(counter.get(), 2000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Lock {
    segment: Arc<Segment>,
}

/// Holds a [`Lock`] (or an [`RLock`](super::RLock)) until dropped. It keeps the lock's
/// memory mapped, so it may outlive the `Lock` it came from.
///
/// ```
/// let lock = common::sync::Lock::new()?;
/// let guard = lock.acquire()?;
/// drop(lock); // the guard keeps the lock's memory
/// drop(guard);
/// # Ok::<(), common::sync::LockError>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    lock: Lock,
    /// A guard stays on the thread that took the lock, as std's `MutexGuard` does: the
    /// mutex belongs to that thread, and only it can unlock it.
    _not_send: PhantomData<*const ()>,
}

impl Lock {
    /// A new, free lock in shared memory.
    ///
    /// ```
    /// let lock = common::sync::Lock::new()?;
    /// assert_eq!(format!("{lock:?}"), "<Lock(owner=None)>");
    /// # Ok::<(), common::sync::LockError>(())
    /// ```
    ///
    /// # Errors
    /// [`LockError::Shm`] when the segment cannot be created, [`LockError::Os`] when
    /// the mutex cannot be set up.
    pub fn new() -> Result<Lock, LockError> {
        let segment = Arc::new(Segment::new(size_of::<Shared>())?);
        let lock = Lock { segment };
        lock.init()?;
        Ok(lock)
    }

    fn shared(&self) -> &Shared {
        // SAFETY: the segment is at least `size_of::<Shared>()` bytes, page-aligned,
        // zero-initialised (a valid `Shared`: the mutex is then initialised by `init`)
        // and mapped for as long as `self.segment` lives.
        unsafe { &*self.segment.as_ptr().cast::<Shared>() }
    }

    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        self.shared().mutex.get()
    }

    fn init(&self) -> Result<(), LockError> {
        let check = |call: &'static str, code: libc::c_int| match code {
            0 => Ok(()),
            code => Err(LockError::Os { call, code }),
        };
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is initialised by `pthread_mutexattr_init` before any other
        // use, and destroyed at the end; the mutex lives in our mapping and no other
        // process can see it yet (no child has been forked since its creation).
        unsafe {
            check(
                "pthread_mutexattr_init",
                libc::pthread_mutexattr_init(attr.as_mut_ptr()),
            )?;
            let attr = attr.as_mut_ptr();
            let result = check(
                "pthread_mutexattr_setpshared",
                libc::pthread_mutexattr_setpshared(attr, libc::PTHREAD_PROCESS_SHARED),
            )
            .and_then(|()| {
                check(
                    "pthread_mutexattr_setrobust",
                    libc::pthread_mutexattr_setrobust(attr, libc::PTHREAD_MUTEX_ROBUST),
                )
            })
            .and_then(|()| {
                check(
                    "pthread_mutexattr_settype",
                    libc::pthread_mutexattr_settype(attr, libc::PTHREAD_MUTEX_ERRORCHECK),
                )
            })
            .and_then(|()| {
                check(
                    "pthread_mutex_init",
                    libc::pthread_mutex_init(self.mutex(), attr),
                )
            });
            libc::pthread_mutexattr_destroy(attr);
            result
        }
    }

    /// Waits for the lock and takes it (Python's `lock.acquire()` or `with lock:`).
    ///
    /// ```
    /// let lock = common::sync::Lock::new()?;
    /// {
    ///     let _guard = lock.acquire()?;
    ///     // ... only one process at a time here ...
    /// }
    /// assert!(lock.try_acquire()?.is_some(), "released when the guard went");
    /// # Ok::<(), common::sync::LockError>(())
    /// ```
    ///
    /// # Errors
    /// [`LockError::OwnerDied`] when the previous holder died holding it (this process
    /// holds it then), [`LockError::AlreadyHeld`] when this process holds it.
    pub fn acquire(&self) -> Result<LockGuard, LockError> {
        self.acquire_blocking(false)
    }

    pub(super) fn acquire_blocking(&self, reentrant: bool) -> Result<LockGuard, LockError> {
        // No deadline: `acquire_within` still sleeps at most RETRY at a time.
        self.acquire_within(Duration::MAX, reentrant)
    }

    /// Takes the lock if it is free (Python's `lock.acquire(block=False)`): `None` when
    /// another process holds it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use common::process::Process;
    /// use common::sync::{Lock, LockError};
    ///
    /// let lock = Lock::new()?;
    /// let childs = lock.clone();
    /// let mut holder = Process::new(move || -> Result<(), LockError> {
    ///     let _guard = childs.acquire()?;
    ///     std::thread::sleep(Duration::from_secs(9));
    ///     Ok(())
    /// });
    /// holder.start()?;
    /// let started = std::time::Instant::now();
    /// while lock.try_acquire()?.is_some() { // until the child holds it
    ///     assert!(started.elapsed().as_secs() < 20, "waited too long");
    /// }
    /// holder.kill()?;
    /// holder.join_timeout(std::time::Duration::from_secs(20))?;
    /// // The holder died holding it: the next acquire says so, and holds it.
    /// let Err(LockError::OwnerDied(died)) = lock.acquire() else { panic!("not told") };
    /// drop(died);
    /// assert!(lock.try_acquire()?.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Lock::acquire`].
    pub fn try_acquire(&self) -> Result<Option<LockGuard>, LockError> {
        // SAFETY: as in `acquire`.
        let code = unsafe { libc::pthread_mutex_trylock(self.mutex()) };
        if code == libc::EBUSY {
            return Ok(None);
        }
        self.taken("pthread_mutex_trylock", code, false).map(Some)
    }

    /// Waits at most `timeout` for the lock (Python's `lock.acquire(timeout=t)`),
    /// measured on the monotonic clock: correct for every duration, sub-second parts
    /// included, and unmoved by steps of the wall clock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use common::sync::{Lock, LockError};
    ///
    /// let lock = Lock::new()?;
    /// let guard = lock.acquire_timeout(Duration::from_millis(10))?;
    /// drop(guard);
    /// assert!(lock.try_acquire()?.is_some());
    /// # Ok::<(), LockError>(())
    /// ```
    ///
    /// # Errors
    /// [`LockError::Timeout`] when the time runs out, or as [`Lock::acquire`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard, LockError> {
        self.acquire_within(timeout, false)
    }

    pub(super) fn acquire_within(
        &self,
        timeout: Duration,
        reentrant: bool,
    ) -> Result<LockGuard, LockError> {
        // SAFETY: `mutex()` points to the mutex initialised in `new`, mapped while
        // `self` lives.
        let code = unsafe { libc::pthread_mutex_trylock(self.mutex()) };
        if code != libc::EBUSY {
            return self.taken("pthread_mutex_trylock", code, reentrant);
        }
        let deadline = std::time::Instant::now().checked_add(timeout);
        loop {
            let left = deadline.map_or(RETRY, |d| {
                d.saturating_duration_since(std::time::Instant::now())
            });
            // Sleep at most RETRY at a time: see the module doc.
            let code = sys::mutex_lock_monotonic(self.mutex(), left.min(RETRY));
            if code != libc::ETIMEDOUT {
                return self.taken("pthread_mutex_clocklock", code, reentrant);
            }
            if deadline.is_some() && left <= RETRY {
                return Err(LockError::Timeout);
            }
        }
    }

    /// Turns a lock call's return code into a guard or an error. With `reentrant`, a
    /// lock this thread holds already (`EDEADLK`) is entered once more.
    fn taken(
        &self,
        call: &'static str,
        code: libc::c_int,
        reentrant: bool,
    ) -> Result<LockGuard, LockError> {
        let shared = self.shared();
        let guard = || LockGuard {
            lock: self.clone(),
            _not_send: PhantomData,
        };
        match code {
            0 => {
                shared.holder.store(sys::pid(), Ordering::Relaxed);
                shared.depth.store(1, Ordering::Relaxed);
                timeline::mark(Mark::LockAcquired);
                Ok(guard())
            }
            libc::EDEADLK if reentrant => {
                shared.depth.fetch_add(1, Ordering::Relaxed);
                Ok(guard())
            }
            libc::EOWNERDEAD => {
                // We hold the mutex now, in the state its dead holder left it in: mark it
                // consistent, so that unlocking it later leaves it usable, and hand the
                // possession to the caller inside the error.
                let dead = shared.holder.swap(sys::pid(), Ordering::Relaxed);
                shared.depth.store(1, Ordering::Relaxed);
                // SAFETY: this process holds the mutex (EOWNERDEAD), which is what
                // `pthread_mutex_consistent` requires.
                unsafe { libc::pthread_mutex_consistent(self.mutex()) };
                timeline::mark(Mark::LockAcquired);
                Err(LockError::OwnerDied(OwnerDied {
                    pid: (dead != 0).then_some(dead),
                    guard: guard(),
                }))
            }
            libc::EDEADLK => Err(LockError::AlreadyHeld),
            code => Err(LockError::Os { call, code }),
        }
    }

    /// For a [`Condition`](super::Condition)'s wait: lets the lock go, however many
    /// guards this process holds, and returns that depth for [`Lock::take_back`]. The
    /// caller holds the lock.
    pub(super) fn let_go(&self) -> u32 {
        let shared = self.shared();
        let depth = shared.depth.swap(0, Ordering::Relaxed);
        shared.holder.store(0, Ordering::Relaxed);
        // SAFETY: the caller holds the mutex (checked by the Condition before a wait).
        unsafe {
            libc::pthread_mutex_unlock(self.mutex());
        }
        depth
    }

    /// After a [`Condition`](super::Condition)'s wait: takes the lock back at `depth`,
    /// for the guards the caller still has, and says whether its holder died
    /// meanwhile (this process holds it all the same then).
    pub(super) fn take_back(&self, depth: u32) -> Result<TakenBack, LockError> {
        let taken = match self.acquire_blocking(false) {
            Ok(guard) => {
                // The caller's guards release it: this one must not.
                std::mem::forget(guard);
                TakenBack::Cleanly
            }
            Err(LockError::OwnerDied(died)) => {
                let pid = died.pid();
                std::mem::forget(died.into_guard());
                TakenBack::AfterDeathOf(pid)
            }
            Err(other) => return Err(other),
        };
        self.shared().depth.store(depth, Ordering::Relaxed);
        Ok(taken)
    }

    /// The pid of the process holding the lock, `None` when it is free.
    ///
    /// ```
    /// let lock = common::sync::Lock::new()?;
    /// let guard = lock.acquire()?;
    /// assert_eq!(lock.holder(), Some(std::process::id()));
    /// drop(guard);
    /// assert_eq!(lock.holder(), None);
    /// # Ok::<(), common::sync::LockError>(())
    /// ```
    pub fn holder(&self) -> Option<u32> {
        let holder = self.shared().holder.load(Ordering::Relaxed);
        (holder != 0).then_some(holder)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let shared = self.lock.shared();
        if shared.depth.load(Ordering::Relaxed) > 1 {
            // An RLock entered more than once: this guard leaves one level.
            shared.depth.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        shared.depth.store(0, Ordering::Relaxed);
        shared.holder.store(0, Ordering::Relaxed);
        // Noted while still held: the next holder's acquisition is noted after it.
        timeline::mark(Mark::LockReleased);
        // SAFETY: the guard exists only while this process holds the mutex.
        unsafe {
            libc::pthread_mutex_unlock(self.lock.mutex());
        }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<LockGuard of {:?}>", self.lock)
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.holder() {
            Some(pid) => write!(f, "<Lock(owner={pid})>"),
            None => f.write_str("<Lock(owner=None)>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_acquire_in_the_same_process_is_an_error_not_a_deadlock() {
        let lock = Lock::new().unwrap();
        let _guard = lock.acquire().unwrap();
        assert!(matches!(lock.acquire(), Err(LockError::AlreadyHeld)));
        assert!(matches!(lock.try_acquire(), Err(LockError::AlreadyHeld)));
        assert!(matches!(
            lock.acquire_timeout(Duration::from_millis(1)),
            Err(LockError::AlreadyHeld)
        ));
    }

    #[test]
    fn the_guard_releases_on_drop_even_after_the_lock_is_gone() {
        let lock = Lock::new().unwrap();
        let other = lock.clone();
        let guard = lock.acquire().unwrap();
        drop(lock);
        assert_eq!(other.holder(), Some(std::process::id()));
        drop(guard);
        assert!(other.try_acquire().unwrap().is_some());
        assert_eq!(format!("{other:?}"), "<Lock(owner=None)>");
    }

    #[test]
    fn os_errors_name_their_cause_once() {
        let error = LockError::Os {
            call: "pthread_mutex_init",
            code: libc::EAGAIN,
        };
        assert_eq!(
            error.to_string(),
            "pthread_mutex_init failed: Resource temporarily unavailable (os error 11)"
        );
        assert!(std::error::Error::source(&error).is_none());
    }
}
