//! `Barrier`: Python's `multiprocessing.Barrier`, for processes, in shared memory.
//!
//! All of its state is one 64-bit atomic word, so every transition is a single
//! compare-and-swap:
//!
//! | bits | field |
//! | --- | --- |
//! | 0..31 | `count`: parties counted in this generation (`parties` while the action runs) |
//! | 31 | `broken` |
//! | 32..63 | `generation` (wraps) |
//! | 63 | `reset`: this generation began with a `reset()`, not a release |
//!
//! How a waiter knows that *its* generation was released, and not reset: the `reset`
//! flag of generation `g + 1` says how `g` ended, and it never changes while `g + 1`
//! lasts. Whoever moves the barrier out of `g + 1` first copies that flag into
//! `endings[g % ENDINGS]`, stamped with `g`, so a waiter that slept through several
//! generations still finds how its own one ended (as long as it slept through fewer
//! than [`ENDINGS`]; past that it reports [`BrokenReason::Unknown`] rather than guess).
//!
//! Who is waiting: before it is counted, a party claims the slot of the index it is
//! about to get (`slots[count]`, written `(generation << 32) | pid`) with a CAS, and only
//! then counts itself in with the CAS on the state; a claim that loses the second CAS is
//! undone. So every counted party's pid is in its slot before anyone can count on it,
//! a party killed between the two steps is seen (its claim is taken over), and a slot
//! is never overwritten by an older generation. Sleeping waiters mark their slot
//! ([`SLEEPING`]); a release makes the wake-up system call only when a mark is there,
//! and the mark of a waiter killed in its sleep goes with its slot's next claim.
//!
//! A waiter spins briefly (when there are cores enough for every party), then sleeps on
//! a futex word that every release, break and reset bumps. A sleeping waiter wakes every
//! [`LIVENESS_CHECK`] to see whether a party of its generation has died, and breaks the
//! barrier if so.

use std::cell::Cell;
use std::fmt;
use std::mem::size_of;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::shm::{Segment, ShmError};
use crate::sys;
use crate::timeline::{self, Mark};

const COUNT_MASK: u64 = (1 << 31) - 1;
const BROKEN: u64 = 1 << 31;
const RESET: u64 = 1 << 63;
const GENERATION_SHIFT: u32 = 32;
const GENERATION_MASK: u64 = (1 << 31) - 1;

/// A slot's mark: its party sleeps on the futex.
const SLEEPING: u64 = 1 << 63;

/// How many generations' endings are remembered (see the module doc).
const ENDINGS: usize = 256;

/// How often a sleeping waiter checks that the parties it waits with are alive.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);

/// Spin iterations before sleeping when every party can have a core of its own...
const SPIN_WITH_SPARE_CORES: u32 = 20_000;
/// ...and at most this long: on a loaded machine the other parties may not be running,
/// and spinning longer only keeps one of them off a core.
const SPIN_TIME: Duration = Duration::from_micros(50);
/// Spin iterations before sleeping when parties outnumber cores: spinning would only
/// take the core away from a party that still has to arrive.
const SPIN_OVERSUBSCRIBED: u32 = 50;
/// The least a waiter spins once spinning has stopped paying (see `spin_budget`).
const SPIN_LEAST: u32 = 50;
/// Every this many waits, a waiter spins its full budget again, to notice that the
/// cores are free again.
const SPIN_PROBE: u32 = 64;

/// Why a barrier is broken: what Python folds into one `BrokenBarrierError`.
///
/// ```
/// use common::sync::{Barrier, BarrierError, BrokenReason};
///
/// let barrier = Barrier::new(2)?;
/// barrier.abort();
/// let Err(BarrierError::Broken { reason }) = barrier.wait() else { panic!() };
/// assert_eq!(reason, BrokenReason::Aborted);
/// assert_eq!(reason.to_string(), "abort() was called");
/// # Ok::<(), BarrierError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokenReason {
    /// [`Barrier::abort`] was called.
    Aborted,
    /// [`Barrier::reset`] was called while this party waited.
    Reset,
    /// Another party's wait timed out (process `pid`).
    TimedOut {
        /// The party whose timeout ran out.
        pid: u32,
    },
    /// A waiting party died (process `pid`).
    PartyDied {
        /// The party that died.
        pid: u32,
    },
    /// The barrier's action panicked in process `pid`.
    ActionPanicked {
        /// The party that ran the action.
        pid: u32,
    },
    /// The barrier was broken, but the record of why has since been overwritten (the
    /// waiter slept through more generations than the barrier remembers).
    Unknown,
}

impl fmt::Display for BrokenReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokenReason::Aborted => f.write_str("abort() was called"),
            BrokenReason::Reset => f.write_str("reset() was called during the wait"),
            BrokenReason::TimedOut { pid } => write!(f, "the wait of process {pid} timed out"),
            BrokenReason::PartyDied { pid } => write!(f, "waiting process {pid} died"),
            BrokenReason::ActionPanicked { pid } => {
                write!(f, "the barrier's action panicked in process {pid}")
            }
            BrokenReason::Unknown => f.write_str("the reason is no longer known"),
        }
    }
}

/// What can go wrong with a [`Barrier`].
///
/// ```
/// use std::time::Duration;
/// use common::sync::{Barrier, BarrierError};
///
/// let barrier = Barrier::new(2)?;
/// assert!(matches!(barrier.wait_timeout(Duration::from_millis(5)), Err(BarrierError::Timeout)));
/// assert!(matches!(barrier.wait(), Err(BarrierError::Broken { .. })));
/// # Ok::<(), BarrierError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierError {
    /// This party's own timeout ran out: it broke the barrier, so the other waiters get
    /// [`BarrierError::Broken`] (Python raises `BrokenBarrierError` in both cases).
    #[error("timed out waiting at the barrier; it is now broken for every party until reset()")]
    Timeout,
    /// The barrier is broken (Python's `BrokenBarrierError`); `reason` says how.
    #[error("the barrier is broken: {reason}; call reset() to use it again")]
    Broken {
        /// What broke it.
        reason: BrokenReason,
    },
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
}

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
    fn began_with_reset(self) -> bool {
        self.0 & RESET != 0
    }
    fn next_generation(self, reset: bool) -> State {
        let generation = (self.generation() + 1) & GENERATION_MASK;
        State((generation << GENERATION_SHIFT) | if reset { RESET } else { 0 })
    }
}

/// How many generations lie between `from` and `to`, counting with the wrap.
fn generations_between(from: u64, to: u64) -> u64 {
    to.wrapping_sub(from) & GENERATION_MASK
}

/// The reason codes stored in [`Header::reason`].
const REASON_ABORTED: u64 = 1;
const REASON_TIMED_OUT: u64 = 2;
const REASON_PARTY_DIED: u64 = 3;
const REASON_ACTION: u64 = 4;
/// Marks [`Header::reason`] as written (all zeros is the fresh barrier's).
const REASON_RECORDED: u64 = 1 << 31;

#[repr(C)]
struct Header {
    state: AtomicU64,
    /// Why the current break happened: `(generation << 32) | REASON_RECORDED |
    /// (code << 24) | pid`. Linux pids stay below 2^22, so 24 bits hold them.
    reason: AtomicU64,
    /// `(generation << 1) | reset` for generation `g` at `g % ENDINGS`: how it ended.
    endings: [AtomicU32; ENDINGS],
    /// Futex word: bumped after every release, break and reset.
    wakeups: AtomicU32,
    _pad: u32,
}

/// A barrier for `parties` processes: Python's `multiprocessing.Barrier(parties,
/// action=None, timeout=None)`.
///
/// Each `wait()` blocks until `parties` processes have called it, then all return
/// together, each with a different index in `0..parties`. The barrier is then ready for
/// the next round (a new generation). A timeout, [`abort`](Barrier::abort), a
/// [`reset`](Barrier::reset) during a wait, a waiting party that dies, or an action
/// that panics breaks it: every waiter gets [`BarrierError::Broken`] (the one whose
/// timeout ran out gets [`BarrierError::Timeout`]), as Python raises
/// `BrokenBarrierError`, and so does every later `wait()` until `reset()`.
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
/// p.join_timeout(std::time::Duration::from_secs(20))?;
/// assert_eq!(p.exitcode(), Some(0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    segment: Rc<Segment>,
    parties: u64,
    spin: u32,
    /// How long this process spins at its next wait: doubled (up to `spin`) when a spin
    /// ended in a release, quartered (down to [`SPIN_LEAST`]) when it ended in a sleep.
    /// On a loaded machine the others may be off their cores: spinning then only keeps
    /// them off longer, so a waiter soon goes to sleep at once, as `pthread_barrier_t`
    /// does.
    spin_budget: Cell<u32>,
    /// Waits so far, for the probes of [`SPIN_PROBE`].
    waits: Cell<u32>,
    action: Option<Rc<dyn Fn()>>,
    timeout: Option<Duration>,
}

impl Barrier {
    /// The largest number of parties a barrier can count.
    pub const MAX_PARTIES: usize = (COUNT_MASK - 1) as usize;

    /// A barrier for `parties` processes (Python's `Barrier(parties)`).
    ///
    /// ```
    /// use common::sync::{Barrier, BarrierError};
    ///
    /// assert!(matches!(Barrier::new(0), Err(BarrierError::InvalidParties { .. })));
    /// assert_eq!(Barrier::new(4)?.parties(), 4);
    /// # Ok::<(), BarrierError>(())
    /// ```
    ///
    /// # Errors
    /// [`BarrierError::InvalidParties`] for 0 or more than [`Barrier::MAX_PARTIES`];
    /// [`BarrierError::Shm`] when the shared memory cannot be created.
    pub fn new(parties: usize) -> Result<Barrier, BarrierError> {
        let invalid = BarrierError::InvalidParties {
            parties,
            max: Self::MAX_PARTIES,
        };
        if parties == 0 || parties > Self::MAX_PARTIES {
            return Err(invalid);
        }
        let size = parties
            .checked_mul(size_of::<AtomicU64>())
            .and_then(|slots| slots.checked_add(size_of::<Header>()))
            .ok_or(invalid)?;
        let segment = Rc::new(Segment::new(size)?);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let spin = if parties <= cores {
            SPIN_WITH_SPARE_CORES
        } else {
            SPIN_OVERSUBSCRIBED
        };
        Ok(Barrier {
            segment,
            parties: parties as u64,
            spin,
            spin_budget: Cell::new(spin),
            waits: Cell::new(0),
            action: None,
            timeout: None,
        })
    }

    /// Sets the action (Python's `action=`): run by exactly one party, the last to
    /// arrive, before any party is released. If it panics, the barrier breaks (the
    /// others get [`BrokenReason::ActionPanicked`]) and the panic goes on in the party
    /// that ran it. Set it before the children are started: each process runs its own
    /// copy.
    ///
    /// ```
    /// use common::process::Process;
    /// use common::shm::SharedValue;
    /// use common::sync::Barrier;
    ///
    /// let rounds = SharedValue::new(0u32)?;
    /// let counter = rounds.clone();
    /// let barrier = Barrier::new(2)?.action(move || counter.set(counter.get() + 1));
    /// let childs = barrier.clone();
    /// let mut p = Process::new(move || childs.wait().map(|_| ()));
    /// p.start()?;
    /// barrier.wait()?;
    /// assert_eq!(rounds.get(), 1, "the action ran once, before the release");
    /// p.join_timeout(std::time::Duration::from_secs(20))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn action(mut self, action: impl Fn() + 'static) -> Barrier {
        self.action = Some(Rc::new(action));
        self
    }

    /// Sets the default timeout of [`wait`](Barrier::wait) (Python's `timeout=`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use common::sync::{Barrier, BarrierError};
    ///
    /// let barrier = Barrier::new(2)?.timeout(Duration::from_millis(20));
    /// assert!(matches!(barrier.wait(), Err(BarrierError::Timeout)));
    /// # Ok::<(), BarrierError>(())
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Barrier {
        self.timeout = Some(timeout);
        self
    }

    fn header(&self) -> &Header {
        // SAFETY: the segment holds a zero-initialised `Header` at its page-aligned start
        // (all zeros is a valid `Header`: atomics and an integer) and lives as long as
        // `self.segment`; every field that changes is an atomic.
        unsafe { &*self.segment.as_ptr().cast::<Header>() }
    }

    /// The slot of the party with index `index`: `(generation << 32) | pid`, and
    /// [`SLEEPING`] while that party sleeps.
    fn slot(&self, index: u64) -> &AtomicU64 {
        assert!(index < self.parties, "slot {index} of {}", self.parties);
        // SAFETY: the segment holds `parties` zeroed slots right after the header (see
        // `new`), aligned for u64 since the header's size is a multiple of 8;
        // `index < parties` was just checked.
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

    /// Moves the barrier out of `current` into `new`, first recording how the
    /// generation before `current` ended (see the module doc).
    fn leave_generation(&self, current: State, new: State) -> Result<(), State> {
        let previous = current.generation().wrapping_sub(1) & GENERATION_MASK;
        let ending = (previous << 1) | u64::from(current.began_with_reset());
        self.header().endings[previous as usize % ENDINGS].store(ending as u32, Ordering::SeqCst);
        self.swap_state(current, new)
    }

    /// Wakes every waiter after a state change; the system call only when one sleeps.
    fn wake_all(&self) {
        let header = self.header();
        header.wakeups.fetch_add(1, Ordering::SeqCst);
        let sleeping =
            (0..self.parties).any(|i| self.slot(i).load(Ordering::SeqCst) & SLEEPING != 0);
        if sleeping {
            sys::futex_wake_all(&header.wakeups);
        }
    }

    /// The number of parties (Python's `b.parties`).
    ///
    /// ```
    /// assert_eq!(common::sync::Barrier::new(3)?.parties(), 3);
    /// # Ok::<(), common::sync::BarrierError>(())
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
    /// let started = std::time::Instant::now();
    /// while barrier.n_waiting() < 1 { // the child has arrived
    ///     assert!(started.elapsed().as_secs() < 20, "waited too long");
    /// }
    /// barrier.wait()?;
    /// p.join_timeout(std::time::Duration::from_secs(20))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn n_waiting(&self) -> usize {
        let state = self.load();
        if state.broken() {
            0
        } else {
            state.count().min(self.parties - 1) as usize
        }
    }

    /// Whether the barrier is broken (Python's `b.broken`).
    ///
    /// ```
    /// let barrier = common::sync::Barrier::new(2)?;
    /// assert!(!barrier.is_broken());
    /// barrier.abort();
    /// assert!(barrier.is_broken());
    /// # Ok::<(), common::sync::BarrierError>(())
    /// ```
    pub fn is_broken(&self) -> bool {
        self.load().broken()
    }

    /// Waits until all parties have called `wait()` (Python's `b.wait()`), and returns
    /// this party's index in `0..parties`: the order of arrival, `parties - 1` for the
    /// last one. Waits at most the barrier's [`timeout`](Barrier::timeout), if it has
    /// one.
    ///
    /// ```
    /// let barrier = common::sync::Barrier::new(1)?;
    /// assert_eq!(barrier.wait()?, 0, "a barrier of one never waits");
    /// # Ok::<(), common::sync::BarrierError>(())
    /// ```
    ///
    /// # Errors
    /// [`BarrierError::Broken`] if the barrier is or becomes broken;
    /// [`BarrierError::Timeout`] when the default timeout runs out.
    pub fn wait(&self) -> Result<usize, BarrierError> {
        self.wait_until(self.timeout.and_then(|t| Instant::now().checked_add(t)))
    }

    /// As [`Barrier::wait`], but when `timeout` passes first, breaks the barrier
    /// (Python's `b.wait(timeout)`): this waiter gets [`BarrierError::Timeout`] and
    /// every other one [`BarrierError::Broken`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use common::sync::{Barrier, BarrierError, BrokenReason};
    ///
    /// let barrier = Barrier::new(2)?;
    /// let outcome = barrier.wait_timeout(Duration::from_millis(20));
    /// assert!(matches!(outcome, Err(BarrierError::Timeout)));
    /// assert!(barrier.is_broken());
    /// assert!(matches!(barrier.wait(),
    ///     Err(BarrierError::Broken { reason: BrokenReason::TimedOut { .. } })));
    /// barrier.reset();
    /// assert!(!barrier.is_broken());
    /// # Ok::<(), BarrierError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Barrier::wait`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, BarrierError> {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    /// Breaks the barrier (Python's `b.abort()`): every waiter, and every later
    /// `wait()` until [`reset`](Barrier::reset), gets [`BarrierError::Broken`] with
    /// [`BrokenReason::Aborted`].
    ///
    /// ```
    /// use common::process::Process;
    /// use common::sync::{Barrier, BarrierError, BrokenReason};
    ///
    /// let barrier = Barrier::new(2)?;
    /// let childs = barrier.clone();
    /// let mut p = Process::new(move || match childs.wait() {
    ///     Err(BarrierError::Broken { reason: BrokenReason::Aborted }) => Ok(()),
    ///     other => Err(format!("expected Broken, got {other:?}")),
    /// });
    /// p.start()?;
    /// let started = std::time::Instant::now();
    /// while barrier.n_waiting() < 1 {
    ///     assert!(started.elapsed().as_secs() < 20, "waited too long");
    /// }
    /// barrier.abort();
    /// assert_eq!(p.join_timeout(std::time::Duration::from_secs(10))?, Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn abort(&self) {
        self.break_with(REASON_ABORTED, sys::pid());
    }

    /// Returns the barrier to its empty, unbroken state (Python's `b.reset()`). Parties
    /// waiting at that moment get [`BarrierError::Broken`] with [`BrokenReason::Reset`].
    /// With nobody waiting and the barrier unbroken, it changes nothing.
    ///
    /// ```
    /// let barrier = common::sync::Barrier::new(1)?;
    /// barrier.abort();
    /// assert!(barrier.wait().is_err());
    /// barrier.reset();
    /// assert_eq!(barrier.wait()?, 0);
    /// # Ok::<(), common::sync::BarrierError>(())
    /// ```
    pub fn reset(&self) {
        let mut state = self.load();
        loop {
            if state.count() == 0 && !state.broken() {
                return;
            }
            match self.leave_generation(state, state.next_generation(true)) {
                Ok(()) => break,
                Err(now) => state = now,
            }
        }
        self.wake_all();
    }

    /// Sets the broken flag on the current generation, recording `code` and `pid` as
    /// the reason unless a reason for this generation is there already.
    fn break_with(&self, code: u64, pid: u32) {
        let mut state = self.load();
        loop {
            if state.broken() {
                break;
            }
            let generation = state.generation();
            let reason = &self.header().reason;
            let recorded = reason.load(Ordering::SeqCst);
            if recorded >> 32 != generation || recorded & REASON_RECORDED == 0 {
                let mine = (generation << 32)
                    | REASON_RECORDED
                    | (code << 24)
                    | u64::from(pid & 0xff_ffff);
                let _ = reason.compare_exchange(recorded, mine, Ordering::SeqCst, Ordering::SeqCst);
            }
            match self.swap_state(state, State(state.0 | BROKEN)) {
                Ok(()) => break,
                Err(now) => state = now,
            }
        }
        self.wake_all();
    }

    /// The error for a wait that found `generation` broken.
    fn broken(&self, generation: u64) -> BarrierError {
        let recorded = self.header().reason.load(Ordering::SeqCst);
        let pid = (recorded & 0xff_ffff) as u32;
        let reason = if recorded >> 32 != generation || recorded & REASON_RECORDED == 0 {
            BrokenReason::Unknown
        } else {
            match (recorded >> 24) & 0x7f {
                REASON_ABORTED => BrokenReason::Aborted,
                REASON_TIMED_OUT => BrokenReason::TimedOut { pid },
                REASON_PARTY_DIED => BrokenReason::PartyDied { pid },
                REASON_ACTION => BrokenReason::ActionPanicked { pid },
                _ => BrokenReason::Unknown,
            }
        };
        BarrierError::Broken { reason }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<usize, BarrierError> {
        timeline::mark(Mark::BarrierArrived);
        let passed = self.pass(deadline);
        timeline::mark(match passed {
            Ok(_) => Mark::BarrierPassed,
            Err(_) => Mark::BarrierBroke,
        });
        passed
    }

    /// The barrier's part of [`Barrier::wait_until`], between the arrival and the
    /// departure it records.
    fn pass(&self, deadline: Option<Instant>) -> Result<usize, BarrierError> {
        let (index, generation) = match self.arrive(deadline)? {
            Arrival::Released(index) => return Ok(index),
            Arrival::Counted { index, generation } => (index, generation),
        };
        if self.action.is_some() && index == self.parties - 1 {
            return self.run_action_and_release(generation);
        }
        self.wait_for_release(index, generation, deadline)
    }

    /// Counts this party in: returns at once when it completes the generation (and no
    /// action has to run), or its index and generation otherwise.
    fn arrive(&self, deadline: Option<Instant>) -> Result<Arrival, BarrierError> {
        let me = u64::from(sys::pid());
        let mut tries = 0u32;
        loop {
            tries = tries.wrapping_add(1);
            let state = self.load();
            if state.broken() {
                return Err(self.broken(state.generation()));
            }
            let (count, generation) = (state.count(), state.generation());
            if count >= self.parties {
                // The last party runs the action: the next generation is about to start.
                self.pause(tries, deadline)?;
                continue;
            }
            if count + 1 == self.parties && self.action.is_none() {
                if self
                    .leave_generation(state, state.next_generation(false))
                    .is_ok()
                {
                    self.wake_all();
                    return Ok(Arrival::Released(count as usize));
                }
                continue;
            }
            // Claim the slot of index `count`, then count this party in.
            let slot = self.slot(count);
            let claimed = slot.load(Ordering::SeqCst);
            let claimer = claimed & u64::from(u32::MAX);
            let claimed_now = (claimed & !SLEEPING) >> 32 == generation && claimer != 0;
            // Another party is between its claim and its count: let it finish, unless it
            // died there (asked only now and then: the question is a system call).
            if claimed_now
                && claimer != me
                && (tries % 1024 != 0 || !sys::has_exited(claimer as u32))
            {
                self.pause(tries, deadline)?;
                continue;
            }
            let mine = (generation << 32) | me;
            if slot
                .compare_exchange(claimed, mine, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                continue;
            }
            if self.swap_state(state, State(state.0 + 1)).is_ok() {
                return Ok(Arrival::Counted {
                    index: count,
                    generation,
                });
            }
            // Lost the count: give the slot back, unless a later claim took it already.
            let _ = slot.compare_exchange(mine, claimed, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    /// A short pause while another party finishes a step: spin first, then yield.
    fn pause(&self, tries: u32, deadline: Option<Instant>) -> Result<(), BarrierError> {
        if tries < 100 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(BarrierError::Timeout);
            }
        }
        Ok(())
    }

    /// The last party, with an action to run: runs it, then releases the generation.
    fn run_action_and_release(&self, generation: u64) -> Result<usize, BarrierError> {
        if let Some(action) = self.action.as_ref().map(Rc::clone) {
            if let Err(panic) = panic::catch_unwind(AssertUnwindSafe(|| action())) {
                self.break_with(REASON_ACTION, sys::pid());
                panic::resume_unwind(panic);
            }
        }
        let mut state = self.load();
        loop {
            if state.generation() != generation || state.broken() {
                // Reset or broken while the action ran.
                return Err(match self.outcome(state, generation, 0) {
                    Some(Err(error)) => error,
                    _ => self.broken(generation),
                });
            }
            match self.leave_generation(state, state.next_generation(false)) {
                Ok(()) => {
                    self.wake_all();
                    return Ok(self.parties as usize - 1);
                }
                Err(now) => state = now,
            }
        }
    }

    /// Spins, then sleeps, until `generation` is released or broken.
    fn wait_for_release(
        &self,
        index: u64,
        generation: u64,
        deadline: Option<Instant>,
    ) -> Result<usize, BarrierError> {
        // Spin: with a core for every party, the others are probably just about to come.
        // The clock is read every 256 turns only: a turn costs a few nanoseconds.
        let waits = self.waits.get().wrapping_add(1);
        self.waits.set(waits);
        let budget = if waits % SPIN_PROBE == 0 {
            self.spin
        } else {
            self.spin_budget.get().min(self.spin)
        };
        let spin_started = Instant::now();
        for turn in 0..budget {
            if let Some(outcome) = self.outcome(self.load(), generation, index) {
                self.spin_budget.set(
                    budget
                        .saturating_mul(2)
                        .clamp(SPIN_LEAST.min(self.spin), self.spin),
                );
                return outcome;
            }
            if turn % 256 == 255 && spin_started.elapsed() > SPIN_TIME {
                break;
            }
            std::hint::spin_loop();
        }

        // Spinning did not pay this time: spin less next time.
        self.spin_budget
            .set((budget / 4).max(SPIN_LEAST.min(self.spin)));

        // Sleep until a release, a break or a reset; check the others' health meanwhile.
        let header = self.header();
        let slot = self.slot(index);
        let mine = (generation << 32) | u64::from(sys::pid());
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
                    return self.time_out(generation, index);
                }
                nap = nap.min(deadline - now);
            }
            // Mark the slot, so that a release knows to make the wake-up call; a slot
            // that is no longer ours means that our generation has ended.
            if slot
                .compare_exchange(mine, mine | SLEEPING, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                sys::futex_wait(&header.wakeups, seen, Some(nap));
                let _ = slot.compare_exchange(
                    mine | SLEEPING,
                    mine,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
            }
            if header.wakeups.load(Ordering::SeqCst) == seen {
                if let Some(pid) = self.a_dead_party(generation) {
                    self.break_with(REASON_PARTY_DIED, pid);
                }
            }
        }
    }

    /// This waiter's timeout ran out: break its generation, unless it has just been
    /// released or broken, in which case that is the outcome.
    fn time_out(&self, generation: u64, index: u64) -> Result<usize, BarrierError> {
        let state = self.load();
        if let Some(outcome) = self.outcome(state, generation, index) {
            return outcome;
        }
        self.break_with(REASON_TIMED_OUT, sys::pid());
        match self.outcome(self.load(), generation, index) {
            Some(Err(BarrierError::Broken {
                reason: BrokenReason::TimedOut { pid },
            })) if pid == sys::pid() => Err(BarrierError::Timeout),
            Some(outcome) => outcome,
            None => Err(BarrierError::Timeout),
        }
    }

    /// How a wait in `generation` ends given `state`, or `None` while it goes on.
    fn outcome(
        &self,
        state: State,
        generation: u64,
        index: u64,
    ) -> Option<Result<usize, BarrierError>> {
        let released = Ok(index as usize);
        let reset = Err(BarrierError::Broken {
            reason: BrokenReason::Reset,
        });
        match generations_between(generation, state.generation()) {
            0 if state.broken() => Some(Err(self.broken(generation))),
            0 => None,
            // The next generation's flag says how ours ended.
            1 if state.began_with_reset() => Some(reset),
            1 => Some(released),
            // Several generations later: the record of endings says.
            _ => {
                let ending =
                    self.header().endings[generation as usize % ENDINGS].load(Ordering::SeqCst);
                Some(if u64::from(ending >> 1) != generation {
                    Err(BarrierError::Broken {
                        reason: BrokenReason::Unknown,
                    })
                } else if ending & 1 == 1 {
                    reset
                } else {
                    released
                })
            }
        }
    }

    /// A party counted in `generation` that has died, other than this process.
    fn a_dead_party(&self, generation: u64) -> Option<u32> {
        let state = self.load();
        if state.generation() != generation {
            return None;
        }
        let me = sys::pid();
        (0..state.count().min(self.parties)).find_map(|index| {
            let slot = self.slot(index).load(Ordering::SeqCst) & !SLEEPING;
            let pid = (slot & u64::from(u32::MAX)) as u32;
            (slot >> 32 == generation && pid != me && pid != 0 && sys::has_exited(pid))
                .then_some(pid)
        })
    }
}

/// How [`Barrier::arrive`] ended.
enum Arrival {
    /// This party completed the generation and released it.
    Released(usize),
    /// This party is counted in `generation` with `index`, and must wait.
    Counted { index: u64, generation: u64 },
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
            Err(BarrierError::InvalidParties { parties: 0, .. })
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
        assert!(matches!(
            barrier.wait(),
            Err(BarrierError::Broken {
                reason: BrokenReason::Aborted
            })
        ));
        barrier.reset();
        assert!(!barrier.is_broken());
        assert_eq!(
            format!("{barrier:?}"),
            "<Barrier parties=3 waiting=0 broken=false>"
        );
    }

    #[test]
    fn reset_with_nobody_waiting_changes_nothing() {
        let barrier = Barrier::new(2).unwrap();
        let before = barrier.load();
        barrier.reset();
        barrier.reset();
        assert_eq!(barrier.load(), before);
    }

    #[test]
    fn a_panicking_action_breaks_the_barrier_and_the_panic_goes_on() {
        let barrier = Barrier::new(1).unwrap().action(|| panic!("action failed"));
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| barrier.wait()));
        assert!(outcome.is_err(), "the panic reaches the party that ran it");
        assert!(matches!(
            barrier.wait(),
            Err(BarrierError::Broken {
                reason: BrokenReason::ActionPanicked { .. }
            })
        ));
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
                next.began_with_reset()
            ),
            (0, 0, false, false)
        );
        assert!(top.next_generation(true).began_with_reset());
        assert_eq!(generations_between(GENERATION_MASK, 1), 2);
    }
}
