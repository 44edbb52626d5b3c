//! `Lock`: a robust, process-shared mutex.

use std::cell::UnsafeCell;
use std::mem::size_of;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::errno::Errno;

use super::SyncError;
use crate::shm::Segment;
use crate::sys;

#[repr(C)]
struct Shared {
    mutex: UnsafeCell<libc::pthread_mutex_t>,
    /// The pid of the process holding the mutex, 0 when free: what `OwnerDied` reports.
    holder: AtomicU32,
}

/// A lock shared between processes: Python's `multiprocessing.Lock`.
///
/// `acquire()` returns a guard that releases the lock when dropped, the match for
/// Python's `with lock:`. Clone the lock into a child's closure to share it.
///
/// The mutex is robust: if its holder dies (exits or is killed) while holding it, the
/// next `acquire()` returns [`SyncError::OwnerDied`] at once instead of waiting
/// forever, and the lock can be acquired again after that.
///
/// ```
/// use common::process::Process;
/// use common::shm::SharedValue;
/// use common::sync::Lock;
///
/// let lock = Lock::new()?;
/// let counter = SharedValue::new(0u64)?;
/// let mut workers = Vec::new();
/// for _ in 0..2 {
///     let (lock, counter) = (lock.clone(), counter.clone());
///     let mut p = Process::new(move || -> Result<(), common::sync::SyncError> {
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
///     p.join()?;
/// }
/// assert_eq!(counter.get(), 2000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Lock {
    segment: Rc<Segment>,
}

/// Holds a [`Lock`] until dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl Lock {
    /// A new, free lock in shared memory.
    ///
    /// # Errors
    /// [`SyncError::Shm`] when the segment cannot be created, [`SyncError::Os`] when
    /// the mutex cannot be set up.
    pub fn new() -> Result<Lock, SyncError> {
        let segment = Segment::new(size_of::<Shared>())?;
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

    fn init(&self) -> Result<(), SyncError> {
        let check = |call: &'static str, code: libc::c_int| match code {
            0 => Ok(()),
            code => Err(SyncError::Os {
                call,
                source: Errno::from_raw(code),
            }),
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
    /// # Ok::<(), common::sync::SyncError>(())
    /// ```
    ///
    /// # Errors
    /// [`SyncError::OwnerDied`] when the previous holder died holding it (the lock is
    /// then free again), [`SyncError::AlreadyHeld`] when this process holds it.
    pub fn acquire(&self) -> Result<LockGuard<'_>, SyncError> {
        // SAFETY: `mutex()` points to the mutex initialised in `new`, mapped while
        // `self` lives.
        let code = unsafe { libc::pthread_mutex_lock(self.mutex()) };
        self.taken("pthread_mutex_lock", code)
    }

    /// Takes the lock if it is free (Python's `lock.acquire(block=False)`): `None` when
    /// another process holds it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use common::process::Process;
    /// use common::sync::Lock;
    ///
    /// let lock = Lock::new()?;
    /// let childs = lock.clone();
    /// let mut holder = Process::new(move || -> Result<(), common::sync::SyncError> {
    ///     let _guard = childs.acquire()?;
    ///     std::thread::sleep(Duration::from_secs(9));
    ///     Ok(())
    /// });
    /// holder.start()?;
    /// while lock.try_acquire()?.is_some() {} // until the child holds it
    /// holder.kill()?;
    /// holder.join()?;
    /// // The holder died holding it: the next acquire says so, once.
    /// assert!(matches!(lock.acquire(), Err(common::sync::SyncError::OwnerDied { .. })));
    /// assert!(lock.try_acquire()?.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Lock::acquire`].
    pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>, SyncError> {
        // SAFETY: as in `acquire`.
        let code = unsafe { libc::pthread_mutex_trylock(self.mutex()) };
        if code == libc::EBUSY {
            return Ok(None);
        }
        self.taken("pthread_mutex_trylock", code).map(Some)
    }

    /// Waits at most `timeout` for the lock (Python's `lock.acquire(timeout=t)`).
    /// Correct for every duration, sub-second parts included: the deadline is
    /// computed here, not by `raw_sync`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use common::sync::{Lock, SyncError};
    ///
    /// let lock = Lock::new()?;
    /// let guard = lock.acquire_timeout(Duration::from_millis(10))?;
    /// drop(guard);
    /// assert!(lock.try_acquire()?.is_some());
    /// # Ok::<(), SyncError>(())
    /// ```
    ///
    /// # Errors
    /// [`SyncError::Timeout`] when the time runs out, or as [`Lock::acquire`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>, SyncError> {
        let deadline = sys::realtime_deadline(timeout);
        // SAFETY: as in `acquire`; `deadline` is a valid timespec for the call.
        let code = unsafe { libc::pthread_mutex_timedlock(self.mutex(), &deadline) };
        if code == libc::ETIMEDOUT {
            return Err(SyncError::Timeout);
        }
        self.taken("pthread_mutex_timedlock", code)
    }

    /// Turns a lock call's return code into a guard or an error.
    fn taken(&self, call: &'static str, code: libc::c_int) -> Result<LockGuard<'_>, SyncError> {
        let holder = &self.shared().holder;
        match code {
            0 => {
                holder.store(sys::pid(), Ordering::Relaxed);
                Ok(LockGuard { lock: self })
            }
            libc::EOWNERDEAD => {
                // We hold the mutex now, in the state its dead holder left it in.
                let dead = holder.swap(0, Ordering::Relaxed);
                // SAFETY: this process holds the mutex (EOWNERDEAD), which is what
                // `pthread_mutex_consistent` and `pthread_mutex_unlock` require.
                unsafe {
                    libc::pthread_mutex_consistent(self.mutex());
                    libc::pthread_mutex_unlock(self.mutex());
                }
                Err(SyncError::OwnerDied {
                    pid: (dead != 0).then_some(dead),
                })
            }
            libc::EDEADLK => Err(SyncError::AlreadyHeld),
            code => Err(SyncError::Os {
                call,
                source: Errno::from_raw(code),
            }),
        }
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.shared().holder.store(0, Ordering::Relaxed);
        // SAFETY: the guard exists only while this process holds the mutex.
        unsafe {
            libc::pthread_mutex_unlock(self.lock.mutex());
        }
    }
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let holder = self.shared().holder.load(Ordering::Relaxed);
        write!(
            f,
            "<Lock(owner={})>",
            if holder == 0 {
                "None".to_string()
            } else {
                holder.to_string()
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_acquire_in_the_same_process_is_an_error_not_a_deadlock() {
        let lock = Lock::new().unwrap();
        let _guard = lock.acquire().unwrap();
        assert!(matches!(lock.acquire(), Err(SyncError::AlreadyHeld)));
        assert!(matches!(lock.try_acquire(), Err(SyncError::AlreadyHeld)));
    }

    #[test]
    fn the_guard_releases_on_drop() {
        let lock = Lock::new().unwrap();
        drop(lock.acquire().unwrap());
        assert!(lock.try_acquire().unwrap().is_some());
        assert_eq!(format!("{lock:?}"), "<Lock(owner=None)>");
    }
}
