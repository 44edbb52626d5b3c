//! `Event`: Python's `multiprocessing.Event`, a flag that processes wait for.
//!
//! One 32-bit word in shared memory is the flag and the futex its waiters sleep on.
//! Setting it is one store and one wake-up of every sleeper; nothing is held while a
//! process waits, so a process killed at any moment leaves nothing locked behind.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::nap;
use crate::shm::{Placed, ShmError, Zeroed};
use crate::sys;

#[repr(C)]
struct Shared {
    /// 1 when set, 0 when clear; the futex word of the waiters.
    flag: AtomicU32,
}

// SAFETY: one atomic, valid at zero (a clear event), no pointers.
unsafe impl Zeroed for Shared {}

/// A flag shared between processes: Python's `multiprocessing.Event`.
///
/// `wait()` returns as soon as the flag is set (at once if it is set already);
/// `clear()` lowers it again. Clone the event into a child's closure to share it.
///
/// ```
/// use std::time::Duration;
/// use common::process::Process;
/// use common::sync::Event;
///
/// let ready = Event::new()?;
/// let childs = ready.clone();
/// let mut p = Process::new(move || childs.set());
/// p.start()?;
/// assert!(ready.wait_timeout(Duration::from_secs(20)), "the child set it");
/// p.join_timeout(Duration::from_secs(20))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Event {
    shared: Placed<Shared>,
}

impl Event {
    /// A new event, not set.
    ///
    /// ```
    /// let event = common::sync::Event::new()?;
    /// assert!(!event.is_set());
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    ///
    /// # Errors
    /// [`ShmError`] when the shared memory cannot be created.
    pub fn new() -> Result<Event, ShmError> {
        Ok(Event {
            shared: Placed::new(0)?,
        })
    }

    fn flag(&self) -> &AtomicU32 {
        &self.shared.get().flag
    }

    /// Whether the flag is set (Python's `event.is_set()`).
    ///
    /// ```
    /// let event = common::sync::Event::new()?;
    /// event.set();
    /// assert!(event.is_set());
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    pub fn is_set(&self) -> bool {
        self.flag().load(Ordering::SeqCst) == 1
    }

    /// Sets the flag and wakes every process waiting for it (Python's `event.set()`).
    ///
    /// ```
    /// let event = common::sync::Event::new()?;
    /// event.set();
    /// assert!(event.wait_timeout(std::time::Duration::ZERO));
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    pub fn set(&self) {
        if self.flag().swap(1, Ordering::SeqCst) == 0 {
            sys::futex_wake_all(self.flag());
        }
    }

    /// Lowers the flag (Python's `event.clear()`): waits from now on wait again.
    ///
    /// ```
    /// let event = common::sync::Event::new()?;
    /// event.set();
    /// event.clear();
    /// assert!(!event.is_set());
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    pub fn clear(&self) {
        self.flag().store(0, Ordering::SeqCst);
    }

    /// Waits until the flag is set (Python's `event.wait()`), however long it takes.
    ///
    /// ```
    /// let event = common::sync::Event::new()?;
    /// event.set();
    /// event.wait(); // returns at once: the flag is set
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout` for the flag (Python's `event.wait(timeout)`): whether
    /// it is set. A zero timeout only looks.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let event = common::sync::Event::new()?;
    /// let started = Instant::now();
    /// assert!(!event.wait_timeout(Duration::from_millis(50)));
    /// assert!(started.elapsed() >= Duration::from_millis(50));
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.is_set() {
                return true;
            }
            if !nap(self.flag(), 0, deadline) {
                return self.is_set();
            }
        }
    }
}

impl fmt::Debug for Event {
    /// Python's repr: `<Event set>` or `<Event unset>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.is_set() { "set" } else { "unset" };
        write!(f, "<Event {state}>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_clear_and_timed_waits_in_one_process() {
        let event = Event::new().unwrap();
        assert_eq!(format!("{event:?}"), "<Event unset>");
        let started = Instant::now();
        assert!(!event.wait_timeout(Duration::ZERO));
        assert!(started.elapsed() < Duration::from_millis(50));
        assert!(!event.wait_timeout(Duration::from_millis(30)));
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(started.elapsed() < Duration::from_secs(2), "late");
        event.set();
        assert_eq!(format!("{event:?}"), "<Event set>");
        assert!(event.wait_timeout(Duration::from_secs(5)));
        event.wait();
        event.clear();
        assert!(!event.is_set());
    }
}
