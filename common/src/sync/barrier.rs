//! `Barrier`: Python's `multiprocessing.Barrier`, for processes, in shared memory.
//!
//! All of its state is one 64-bit atomic word, so every transition is a single
//! compare-and-swap:
//!
//! | bits | field |
//! | --- | --- |
//! | 0..31 | `count`: parties waiting in this generation |
//! | 31 | `broken` |
//! | 32..63 | `generation` (wraps) |
//! | 63 | `reset`: the last generation change was a `reset()`, not a release |
//!
//! A waiter spins briefly (when there are cores enough for every party), then sleeps on
//! a futex word that every release, break and reset bumps. A sleeping waiter wakes every
//! [`LIVENESS_CHECK`] to see whether a party of its generation has died, and breaks the
//! barrier if so.

use std::mem::size_of;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::SyncError;
use crate::shm::Segment;
use crate::sys;

const COUNT_MASK: u64 = (1 << 31) - 1;
const BROKEN: u64 = 1 << 31;
const RESET: u64 = 1 << 63;
const GENERATION_SHIFT: u32 = 32;
const GENERATION_MASK: u64 = (1 << 31) - 1;

/// How often a sleeping waiter checks that the parties it waits with are alive.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);

/// Spin iterations before sleeping when every party can have a core of its own.
const SPIN_WITH_SPARE_CORES: u32 = 20_000;
/// Spin iterations before sleeping when parties outnumber cores: spinning would only
/// take the core away from a party that still has to arrive.
const SPIN_OVERSUBSCRIBED: u32 = 50;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct State(u64);

impl State {
    fn count(self) -> u64 {
        self.0 & COUNT_MASK
    }
    fn broken(self) -> bool {
        self.0 & BROKEN != 0
    }
    fn generation(self) -> u64 {
        (self.0 >> GENERATION_SHIFT) & GENERATION_MASK
    }
    fn was_reset(self) -> bool {
        self.0 & RESET != 0
    }
    fn next_generation(self, reset: bool) -> State {
        let generation = (self.generation() + 1) & GENERATION_MASK;
        State((generation << GENERATION_SHIFT) | if reset { RESET } else { 0 })
    }
}

#[repr(C)]
struct Header {
    state: AtomicU64,
    /// Futex word: bumped after every release, break and reset.
    wakeups: AtomicU32,
    /// Waiters asleep on `wakeups`: a release makes the wake-up system call only then.
    sleepers: AtomicU32,
    parties: u64,
}

/// A barrier for `parties` processes: Python's `multiprocessing.Barrier(parties)`.
///
/// Each `wait()` blocks until `parties` processes have called it, then all return
/// together, each with a different index in `0..parties`. The barrier is then ready for
/// the next round (a new generation). A timeout, [`abort`](Barrier::abort), a
/// [`reset`](Barrier::reset) during a wait, or a waiting party that dies breaks it:
/// every waiter gets [`SyncError::Broken`], as Python raises `BrokenBarrierError`,
/// and so does every later `wait()` until `reset()`.
///
/// ```
/// use common::process::Process;
/// use common::sync::Barrier;
///
/// let barrier = Barrier::new(2)?;
/// let childs = barrier.clone();
/// let mut p = Process::new(move || childs.wait().map(|_| ()));
/// p.start()?;
/// let index = barrier.wait()?; // returns once the child has arrived too
/// assert!(index < 2);
/// p.join()?;
/// assert_eq!(p.exitcode(), Some(0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    segment: Rc<Segment>,
    parties: u64,
    spin: u32,
}

impl Barrier {
    /// The largest number of parties a barrier can count.
    pub const MAX_PARTIES: usize = COUNT_MASK as usize;

    /// A barrier for `parties` processes (Python's `Barrier(parties)`).
    ///
    /// ```
    /// use common::sync::{Barrier, SyncError};
    ///
    /// assert!(matches!(Barrier::new(0), Err(SyncError::InvalidParties { .. })));
    /// assert_eq!(Barrier::new(4)?.parties(), 4);
    /// # Ok::<(), SyncError>(())
    /// ```
    ///
    /// # Errors
    /// [`SyncError::InvalidParties`] for 0 or more than [`Barrier::MAX_PARTIES`];
    /// [`SyncError::Shm`] when the shared memory cannot be created.
    pub fn new(parties: usize) -> Result<Barrier, SyncError> {
        if parties == 0 || parties > Self::MAX_PARTIES {
            return Err(SyncError::InvalidParties {
                parties,
                max: Self::MAX_PARTIES,
            });
        }
        let slots = parties.checked_mul(size_of::<AtomicU64>());
        let size = slots.and_then(|s| s.checked_add(size_of::<Header>()));
        let size = size.ok_or(SyncError::InvalidParties {
            parties,
            max: Self::MAX_PARTIES,
        })?;
        let segment = Segment::new(size)?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let barrier = Barrier {
            segment,
            parties: parties as u64,
            spin: if parties <= cores {
                SPIN_WITH_SPARE_CORES
            } else {
                SPIN_OVERSUBSCRIBED
            },
        };
        // SAFETY: the segment is fresh and private to this process until a fork; the
        // header is at its page-aligned start.
        unsafe { (*barrier.segment.as_ptr().cast::<Header>()).parties = parties as u64 };
        Ok(barrier)
    }

    fn header(&self) -> &Header {
        // SAFETY: the segment holds a zero-initialised (hence valid) `Header` at its
        // page-aligned start and lives as long as `self.segment`; its fields that
        // change are atomics.
        unsafe { &*self.segment.as_ptr().cast::<Header>() }
    }

    /// The slot where the party with index `index` records `(generation << 32) | pid`,
    /// so that sleeping waiters can see whether it died.
    fn slot(&self, index: u64) -> &AtomicU64 {
        debug_assert!(index < self.parties);
        // SAFETY: the segment holds `parties` slots right after the header (see `new`),
        // aligned for u64 since the header's size is a multiple of 8; `index < parties`.
        unsafe {
            &*self
                .segment
                .as_ptr()
                .add(size_of::<Header>())
                .cast::<AtomicU64>()
                .add(index as usize)
        }
    }

    fn load(&self) -> State {
        State(self.header().state.load(Ordering::SeqCst))
    }

    fn swap_state(&self, current: State, new: State) -> Result<(), State> {
        self.header()
            .state
            .compare_exchange(current.0, new.0, Ordering::SeqCst, Ordering::SeqCst)
            .map(|_| ())
            .map_err(State)
    }

    /// Wakes every waiter after a state change.
    fn wake_all(&self) {
        let header = self.header();
        header.wakeups.fetch_add(1, Ordering::SeqCst);
        if header.sleepers.load(Ordering::SeqCst) > 0 {
            sys::futex_wake_all(&header.wakeups);
        }
    }

    /// The number of parties (Python's `b.parties`).
    ///
    /// ```
    /// assert_eq!(common::sync::Barrier::new(3)?.parties(), 3);
    /// # Ok::<(), common::sync::SyncError>(())
    /// ```
    pub fn parties(&self) -> usize {
        self.parties as usize
    }

    /// How many parties are waiting now (Python's `b.n_waiting`).
    ///
    /// ```
    /// use common::process::Process;
    ///
    /// let barrier = common::sync::Barrier::new(2)?;
    /// assert_eq!(barrier.n_waiting(), 0);
    /// let childs = barrier.clone();
    /// let mut p = Process::new(move || childs.wait().map(|_| ()));
    /// p.start()?;
    /// while barrier.n_waiting() < 1 {} // the child has arrived
    /// barrier.wait()?;
    /// p.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn n_waiting(&self) -> usize {
        let state = self.load();
        if state.broken() {
            0
        } else {
            state.count() as usize
        }
    }

    /// Whether the barrier is broken (Python's `b.broken`).
    ///
    /// ```
    /// let barrier = common::sync::Barrier::new(2)?;
    /// assert!(!barrier.is_broken());
    /// barrier.abort();
    /// assert!(barrier.is_broken());
    /// # Ok::<(), common::sync::SyncError>(())
    /// ```
    pub fn is_broken(&self) -> bool {
        self.load().broken()
    }

    /// Waits until all parties have called `wait()` (Python's `b.wait()`), and returns
    /// this party's index in `0..parties`: the order of arrival, `parties - 1` for the
    /// last one.
    ///
    /// ```
    /// let barrier = common::sync::Barrier::new(1)?;
    /// assert_eq!(barrier.wait()?, 0, "a barrier of one never waits");
    /// # Ok::<(), common::sync::SyncError>(())
    /// ```
    ///
    /// # Errors
    /// [`SyncError::Broken`] if the barrier is or becomes broken.
    pub fn wait(&self) -> Result<usize, SyncError> {
        self.wait_until(None)
    }

    /// As [`Barrier::wait`], but when `timeout` passes first, breaks the barrier
    /// (Python's `b.wait(timeout)`): this waiter and every other one get
    /// [`SyncError::Broken`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use common::sync::{Barrier, SyncError};
    ///
    /// let barrier = Barrier::new(2)?;
    /// let outcome = barrier.wait_timeout(Duration::from_millis(20));
    /// assert!(matches!(outcome, Err(SyncError::Broken)));
    /// assert!(barrier.is_broken());
    /// barrier.reset();
    /// assert!(!barrier.is_broken());
    /// # Ok::<(), SyncError>(())
    /// ```
    ///
    /// # Errors
    /// [`SyncError::Broken`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, SyncError> {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    /// Breaks the barrier (Python's `b.abort()`): every waiter, and every later
    /// `wait()` until [`reset`](Barrier::reset), gets [`SyncError::Broken`].
    ///
    /// ```
    /// use common::process::Process;
    /// use common::sync::{Barrier, SyncError};
    ///
    /// let barrier = Barrier::new(2)?;
    /// let childs = barrier.clone();
    /// let mut p = Process::new(move || match childs.wait() {
    ///     Err(SyncError::Broken) => Ok(()),
    ///     other => Err(format!("expected Broken, got {other:?}")),
    /// });
    /// p.start()?;
    /// while barrier.n_waiting() < 1 {}
    /// barrier.abort();
    /// assert_eq!(p.join()?, 0, "the waiting child got Broken");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn abort(&self) {
        let mut state = self.load();
        while !state.broken() {
            match self.swap_state(state, State(state.0 | BROKEN)) {
                Ok(()) => break,
                Err(now) => state = now,
            }
        }
        self.wake_all();
    }

    /// Returns the barrier to its empty, unbroken state (Python's `b.reset()`). Parties
    /// waiting at that moment get [`SyncError::Broken`].
    ///
    /// ```
    /// let barrier = common::sync::Barrier::new(1)?;
    /// barrier.abort();
    /// assert!(barrier.wait().is_err());
    /// barrier.reset();
    /// assert_eq!(barrier.wait()?, 0);
    /// # Ok::<(), common::sync::SyncError>(())
    /// ```
    pub fn reset(&self) {
        let mut state = self.load();
        while let Err(now) = self.swap_state(state, state.next_generation(true)) {
            state = now;
        }
        self.wake_all();
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<usize, SyncError> {
        // Arrive: count this party in, or release everyone if it is the last.
        let mut state = self.load();
        let (index, generation) = loop {
            if state.broken() {
                return Err(SyncError::Broken);
            }
            let index = state.count();
            if index + 1 == self.parties {
                match self.swap_state(state, state.next_generation(false)) {
                    Ok(()) => {
                        self.wake_all();
                        return Ok(index as usize);
                    }
                    Err(now) => state = now,
                }
            } else {
                match self.swap_state(state, State(state.0 + 1)) {
                    Ok(()) => break (index, state.generation()),
                    Err(now) => state = now,
                }
            }
        };
        self.slot(index)
            .store((generation << 32) | u64::from(sys::pid()), Ordering::SeqCst);

        // Spin: with a core for every party, the others are probably just about to come.
        for _ in 0..self.spin {
            if let Some(outcome) = self.outcome(self.load(), generation, index) {
                return outcome;
            }
            std::hint::spin_loop();
        }

        // Sleep until a release, a break or a reset; check the others' health meanwhile.
        let header = self.header();
        loop {
            let seen = header.wakeups.load(Ordering::SeqCst);
            let state = self.load();
            if let Some(outcome) = self.outcome(state, generation, index) {
                return outcome;
            }
            let mut nap = LIVENESS_CHECK;
            if let Some(deadline) = deadline {
                let now = Instant::now();
                if now >= deadline {
                    return self.break_generation(state, generation, index);
                }
                nap = nap.min(deadline - now);
            }
            header.sleepers.fetch_add(1, Ordering::SeqCst);
            sys::futex_wait(&header.wakeups, seen, Some(nap));
            header.sleepers.fetch_sub(1, Ordering::SeqCst);
            if header.wakeups.load(Ordering::SeqCst) == seen && self.a_party_died(generation) {
                return self.break_generation(self.load(), generation, index);
            }
        }
    }

    /// How a wait in `generation` ends given `state`, or `None` while it goes on.
    fn outcome(
        &self,
        state: State,
        generation: u64,
        index: u64,
    ) -> Option<Result<usize, SyncError>> {
        if state.generation() == generation {
            return state.broken().then_some(Err(SyncError::Broken));
        }
        // The generation moved on: released, unless a reset moved it. (Had it moved by
        // more than one, other processes than the parties used the barrier, and our
        // generation was released.)
        let reset = state.was_reset() && state.generation() == (generation + 1) & GENERATION_MASK;
        Some(if reset {
            Err(SyncError::Broken)
        } else {
            Ok(index as usize)
        })
    }

    /// Breaks `generation` (after a timeout or a dead party), unless it has just been
    /// released, in which case the wait succeeded after all.
    fn break_generation(
        &self,
        mut state: State,
        generation: u64,
        index: u64,
    ) -> Result<usize, SyncError> {
        loop {
            if let Some(outcome) = self.outcome(state, generation, index) {
                return outcome;
            }
            match self.swap_state(state, State(state.0 | BROKEN)) {
                Ok(()) => {
                    self.wake_all();
                    return Err(SyncError::Broken);
                }
                Err(now) => state = now,
            }
        }
    }

    /// Whether a party that arrived in `generation` has died.
    fn a_party_died(&self, generation: u64) -> bool {
        let state = self.load();
        if state.generation() != generation {
            return false;
        }
        let me = sys::pid();
        (0..state.count().min(self.parties)).any(|index| {
            let slot = self.slot(index).load(Ordering::SeqCst);
            let pid = (slot & u64::from(u32::MAX)) as u32;
            slot >> 32 == generation && pid != me && pid != 0 && sys::has_exited(pid)
        })
    }
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "<Barrier parties={} waiting={} broken={}>",
            self.parties,
            self.n_waiting(),
            self.is_broken()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_parties_is_an_error() {
        assert!(matches!(
            Barrier::new(0),
            Err(SyncError::InvalidParties { parties: 0, .. })
        ));
        assert!(Barrier::new(usize::MAX).is_err());
    }

    #[test]
    fn one_party_never_waits() {
        let barrier = Barrier::new(1).unwrap();
        for _ in 0..3 {
            assert_eq!(barrier.wait().unwrap(), 0);
        }
        assert_eq!(barrier.n_waiting(), 0);
    }

    #[test]
    fn abort_breaks_until_reset() {
        let barrier = Barrier::new(3).unwrap();
        barrier.abort();
        assert!(barrier.is_broken());
        assert!(matches!(barrier.wait(), Err(SyncError::Broken)));
        barrier.reset();
        assert!(!barrier.is_broken());
        assert_eq!(
            format!("{barrier:?}"),
            "<Barrier parties=3 waiting=0 broken=false>"
        );
    }

    #[test]
    fn the_generation_wraps_without_touching_the_flags() {
        let top = State(GENERATION_MASK << GENERATION_SHIFT | 5);
        let next = top.next_generation(false);
        assert_eq!(
            (
                next.generation(),
                next.count(),
                next.broken(),
                next.was_reset()
            ),
            (0, 0, false, false)
        );
        assert!(top.next_generation(true).was_reset());
    }
}
