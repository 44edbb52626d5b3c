//! A recording of what the processes of a run did and when: the parent's starts, reaps
//! and signals, each child's first and last moment, and the moments that matter to the
//! primitives (a barrier party's arrival and departure, a lock taken and released, a
//! pool worker's chunk). It is what a demo's `--timeline` draws and its `--trace`
//! writes.
//!
//! [`record`] maps a log in shared memory (anonymous, so nothing can be left behind in
//! `/dev/shm`); the processes forked after it inherit the mapping and write their
//! events into it, each with one atomic addition to claim a slot and one store to
//! publish it, so a process killed half-way through a write leaves a slot that is
//! skipped, never a torn event. Until `record` is called, recording an event is one
//! load of a null pointer: the primitives cost nothing more when nobody watches.
//!
//! Times are read on `CLOCK_MONOTONIC`, the clock of Python's `time.monotonic_ns()`.
//!
//! ```
//! use common::timeline::{self, What};
//!
//! timeline::record()?;
//! let mut p = common::Process::new(|| ()).with_name("quick");
//! p.start()?;
//! p.join_timeout(std::time::Duration::from_secs(20))?;
//! let events = timeline::recorded().events;
//! let pid = p.pid().unwrap();
//! assert!(events.iter().any(|e| matches!(&e.what, What::Started { child, name, .. }
//!     if *child == pid && name == "quick")));
//! assert!(events.iter().any(|e| e.pid == pid && e.what == What::Exiting { code: 0 }));
//! assert!(events.iter().any(|e| e.what == What::Reaped { child: pid, code: 0 }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::sys;

/// How many events the log holds (64 bytes each: 4 MiB of address space, of which
/// only the pages written are ever backed by memory). Past it, events are counted in
/// [`Recording::lost`] instead.
///
/// ```
/// assert!(common::timeline::CAPACITY >= 4096, "room for a demo's events");
/// ```
pub const CAPACITY: usize = 1 << 16;

/// Frequent events (a lock taken or released) stop being recorded once the log is this
/// full, so that the rarer ones (a process's end above all) still find room.
const FREQUENT_LIMIT: u64 = (CAPACITY as u64) * 3 / 4;

/// Text kept with an event (a process's name): at most this many bytes.
const TEXT: usize = 28;

/// A slot's `kind` word once its event is complete.
const PUBLISHED: u32 = 1 << 31;

/// One event in shared memory: 64 bytes.
#[repr(C)]
struct Slot {
    /// The event's kind, with [`PUBLISHED`] set once every other field is written.
    kind: AtomicU32,
    pid: u32,
    /// Nanoseconds since the log's epoch.
    at: u64,
    a: i64,
    b: i64,
    text_len: u32,
    text: [u8; TEXT],
}

const _: () = assert!(std::mem::size_of::<Slot>() == 64);

/// The log: a header, then [`CAPACITY`] slots.
#[repr(C)]
struct Log {
    /// The next slot to claim (counts on past the capacity: the excess was lost).
    next: AtomicU64,
    /// The monotonic time at `record`, in nanoseconds.
    epoch: u64,
    /// Frequent events left out once the log was nearly full.
    skipped: AtomicU64,
    _pad: [u64; 5],
    slots: [Slot; CAPACITY],
}

static LOG: AtomicPtr<Log> = AtomicPtr::new(null_mut());

/// Why the recording could not start.
///
/// ```
/// let error = common::timeline::TimelineError::Map { code: libc::ENOMEM };
/// assert_eq!(error.to_string(), "cannot map the timeline's log (os error 12)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TimelineError {
    /// The log could not be mapped (`errno` in `code`).
    #[error("cannot map the timeline's log (os error {code})")]
    Map {
        /// The `errno` of `mmap`.
        code: i32,
    },
}

/// Starts recording: the calling process and every process it forks from now on write
/// their events into one log. Calling it again changes nothing.
///
/// ```
/// common::timeline::record()?;
/// assert!(common::timeline::is_recording());
/// # Ok::<(), common::timeline::TimelineError>(())
/// ```
///
/// # Errors
/// [`TimelineError::Map`] when the log cannot be mapped.
pub fn record() -> Result<(), TimelineError> {
    if is_recording() {
        return Ok(());
    }
    let size = std::mem::size_of::<Log>();
    // SAFETY: an anonymous shared mapping of `size` bytes at an address of the
    // kernel's choosing: no existing memory is touched. Its pages read as zeros, a
    // valid `Log` (every field is an integer or an atomic one).
    let address = unsafe {
        libc::mmap(
            null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if address == libc::MAP_FAILED {
        return Err(TimelineError::Map {
            code: std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        });
    }
    let name = crate::process::current_process().name().to_owned();
    let log = address.cast::<Log>();
    // SAFETY: `log` points to the new mapping, which nobody else sees yet.
    unsafe { (*log).epoch = now() };
    if LOG
        .compare_exchange(null_mut(), log, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // Another thread won the race: its log stays, ours goes.
        // SAFETY: `address` is our own mapping of `size` bytes, never shared.
        unsafe { libc::munmap(address, size) };
        return Ok(());
    }
    note(What::Running { name });
    Ok(())
}

/// Whether [`record`] has been called in this process or in a process it was forked
/// from (after `record`).
///
/// ```
/// // Nothing records until someone asks.
/// assert!(!common::timeline::is_recording());
/// ```
pub fn is_recording() -> bool {
    !LOG.load(Ordering::Relaxed).is_null()
}

/// The monotonic clock in nanoseconds.
fn now() -> u64 {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid, exclusively borrowed timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut time) };
    (time.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(time.tv_nsec as u64)
}

/// What happened.
///
/// ```
/// use common::timeline::{self, What};
///
/// timeline::record()?;
/// let barrier = common::Barrier::new(1)?;
/// barrier.wait()?;
/// let mine: Vec<What> = timeline::recorded().events.into_iter()
///     .filter(|e| e.pid == std::process::id()).map(|e| e.what).collect();
/// assert!(mine.ends_with(&[What::BarrierArrived, What::BarrierPassed]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum What {
    /// The process began to run (a child's first step; the recording process's at
    /// [`record`]).
    Running {
        /// Its name.
        name: String,
    },
    /// This process started `child` (recorded by the parent, right after the fork).
    Started {
        /// The child's pid.
        child: u32,
        /// The child's name.
        name: String,
        /// Whether the child is daemonic.
        daemon: bool,
    },
    /// The process is about to leave with `code` (a child's last step).
    Exiting {
        /// Its exit code.
        code: i32,
    },
    /// This process reaped `child`, which had ended with `code` (`-N`: signal `N`).
    Reaped {
        /// The child's pid.
        child: u32,
        /// Its exit code, as `Process::exitcode` tells it.
        code: i32,
    },
    /// This process sent `signal` to `child` (`terminate`, `kill`, the exit hook).
    SignalSent {
        /// The child's pid.
        child: u32,
        /// The signal's number.
        signal: i32,
    },
    /// The process arrived at a barrier.
    BarrierArrived,
    /// The process passed the barrier.
    BarrierPassed,
    /// The barrier broke while the process waited, or it gave up waiting.
    BarrierBroke,
    /// The process took a lock.
    LockAcquired,
    /// The process released a lock.
    LockReleased,
    /// A pool worker began a chunk of `count` inputs, the first at `first`.
    ChunkStarted {
        /// The index of the chunk's first input in the map's inputs.
        first: u64,
        /// How many inputs the chunk holds.
        count: u64,
    },
    /// A pool worker finished the chunk that began at `first`.
    ChunkEnded {
        /// The index of the chunk's first input.
        first: u64,
    },
}

impl What {
    fn encode(&self) -> (u32, i64, i64, &str) {
        match self {
            What::Running { name } => (1, 0, 0, name),
            What::Started {
                child,
                name,
                daemon,
            } => (2, i64::from(*child), i64::from(*daemon), name),
            What::Exiting { code } => (3, i64::from(*code), 0, ""),
            What::Reaped { child, code } => (4, i64::from(*child), i64::from(*code), ""),
            What::SignalSent { child, signal } => (5, i64::from(*child), i64::from(*signal), ""),
            What::BarrierArrived => (6, 0, 0, ""),
            What::BarrierPassed => (7, 0, 0, ""),
            What::BarrierBroke => (8, 0, 0, ""),
            What::LockAcquired => (9, 0, 0, ""),
            What::LockReleased => (10, 0, 0, ""),
            What::ChunkStarted { first, count } => (11, *first as i64, *count as i64, ""),
            What::ChunkEnded { first } => (12, *first as i64, 0, ""),
        }
    }

    fn decode(kind: u32, a: i64, b: i64, text: &str) -> Option<What> {
        let pid = |value: i64| u32::try_from(value).ok();
        let int = |value: i64| i32::try_from(value).ok();
        Some(match kind {
            1 => What::Running { name: text.into() },
            2 => What::Started {
                child: pid(a)?,
                name: text.into(),
                daemon: b != 0,
            },
            3 => What::Exiting { code: int(a)? },
            4 => What::Reaped {
                child: pid(a)?,
                code: int(b)?,
            },
            5 => What::SignalSent {
                child: pid(a)?,
                signal: int(b)?,
            },
            6 => What::BarrierArrived,
            7 => What::BarrierPassed,
            8 => What::BarrierBroke,
            9 => What::LockAcquired,
            10 => What::LockReleased,
            11 => What::ChunkStarted {
                first: a as u64,
                count: b as u64,
            },
            12 => What::ChunkEnded { first: a as u64 },
            _ => return None,
        })
    }
}

/// Whether an event of this kind is frequent enough to yield its room to the others
/// when the log fills up (a lock taken or released).
fn is_frequent(kind: u32) -> bool {
    matches!(kind, 9 | 10)
}

/// One recorded event.
///
/// ```
/// use common::timeline::{self, What};
///
/// timeline::record()?;
/// drop(common::Lock::new()?.acquire()?);
/// let events = timeline::recorded().events;
/// let taken = events.iter().find(|e| e.what == What::LockAcquired).unwrap();
/// assert_eq!(taken.pid, std::process::id());
/// assert!(events.iter().any(|e| e.what == What::LockReleased && e.at >= taken.at));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// When, since [`record`] was called.
    pub at: Duration,
    /// The process that recorded it.
    pub pid: u32,
    /// What happened.
    pub what: What,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>10.3} ms  {:>7}  {:?}",
            self.at.as_secs_f64() * 1e3,
            self.pid,
            self.what
        )
    }
}

/// What [`recorded`] read from the log.
///
/// ```
/// let nothing = common::timeline::recorded(); // never recording in this process
/// assert!(nothing.events.is_empty());
/// assert_eq!((nothing.lost, nothing.elapsed), (0, std::time::Duration::ZERO));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recording {
    /// The events, oldest first.
    pub events: Vec<Event>,
    /// How many events found the log full and were not recorded.
    pub lost: u64,
    /// How long the recording has lasted, when read.
    pub elapsed: Duration,
}

/// Records `what` for this process, if the recording is on. Lock-free and
/// allocation-free: it may run in a forked child, or while a lock is held.
#[inline]
pub(crate) fn note(what: What) {
    let log = LOG.load(Ordering::Relaxed);
    if !log.is_null() {
        // Encoded here, so that `write` sees plain numbers: for an event without a
        // payload (a lock's), nothing of `what` is left to drop on this path.
        let (kind, a, b, text) = what.encode();
        write(log, kind, a, b, text);
    }
}

/// The events without a payload, noted on hot paths (a lock's, a barrier's): a
/// plain number, so that noting one builds nothing and leaves nothing to drop.
#[derive(Clone, Copy, Debug)]
#[repr(u32)]
pub(crate) enum Mark {
    BarrierArrived = 6,
    BarrierPassed = 7,
    BarrierBroke = 8,
    LockAcquired = 9,
    LockReleased = 10,
}

/// As [`note`], for an event without a payload.
#[inline(always)]
pub(crate) fn mark(mark: Mark) {
    let log = LOG.load(Ordering::Relaxed);
    if !log.is_null() {
        write(log, mark as u32, 0, 0, "");
    }
}

/// As [`note`], for events whose [`What`] needs building: `make` runs only when
/// the recording is on.
#[inline]
pub(crate) fn note_with(make: impl FnOnce() -> What) {
    let log = LOG.load(Ordering::Relaxed);
    if !log.is_null() {
        let what = make();
        let (kind, a, b, text) = what.encode();
        write(log, kind, a, b, text);
    }
}

#[cold]
#[inline(never)]
fn write(log: *mut Log, kind: u32, a: i64, b: i64, text: &str) {
    // SAFETY: a non-null LOG points to a mapping made by `record` and never unmapped
    // (in this process or in the one it was forked from, at the same address).
    let log = unsafe { &*log };
    if is_frequent(kind) && log.next.load(Ordering::Relaxed) >= FREQUENT_LIMIT {
        log.skipped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let index = log.next.fetch_add(1, Ordering::Relaxed);
    let Some(slot) = usize::try_from(index)
        .ok()
        .and_then(|index| log.slots.get(index))
    else {
        return;
    };
    let mut len = text.len().min(TEXT);
    while !text.is_char_boundary(len) {
        len -= 1;
    }
    let slot_ptr = std::ptr::from_ref(slot).cast_mut();
    // SAFETY: the slot at `index` was claimed by the `fetch_add` above, by this call
    // alone: no other process writes its plain fields, and no reader looks at them
    // before `kind` is published below (Release pairs with the reader's Acquire).
    unsafe {
        (*slot_ptr).pid = sys::pid();
        (*slot_ptr).at = now().saturating_sub(log.epoch);
        (*slot_ptr).a = a;
        (*slot_ptr).b = b;
        (*slot_ptr).text_len = len as u32;
        std::ptr::copy_nonoverlapping(text.as_ptr(), (&raw mut (*slot_ptr).text).cast::<u8>(), len);
    }
    slot.kind.store(kind | PUBLISHED, Ordering::Release);
}

/// Reads what has been recorded so far by every process (an empty recording if
/// [`record`] was never called). Events still being written, or whose process died
/// while writing them, are left out.
///
/// ```
/// use common::timeline;
///
/// timeline::record()?;
/// let recording = timeline::recorded();
/// assert!(matches!(&recording.events[0].what, timeline::What::Running { name }
///     if name == "MainProcess"));
/// assert_eq!(recording.lost, 0);
/// # Ok::<(), timeline::TimelineError>(())
/// ```
pub fn recorded() -> Recording {
    let log = LOG.load(Ordering::Acquire);
    if log.is_null() {
        return Recording::default();
    }
    // SAFETY: as in `write`.
    let log = unsafe { &*log };
    let claimed = log.next.load(Ordering::Acquire);
    let kept = usize::try_from(claimed).map_or(CAPACITY, |n| n.min(CAPACITY));
    let mut events: Vec<Event> = log.slots[..kept]
        .iter()
        .filter_map(|slot| {
            let kind = slot.kind.load(Ordering::Acquire);
            if kind & PUBLISHED == 0 {
                return None;
            }
            let len = (slot.text_len as usize).min(TEXT);
            let text = String::from_utf8_lossy(&slot.text[..len]);
            Some(Event {
                at: Duration::from_nanos(slot.at),
                pid: slot.pid,
                what: What::decode(kind & !PUBLISHED, slot.a, slot.b, &text)?,
            })
        })
        .collect();
    events.sort_by_key(|event| event.at);
    Recording {
        events,
        lost: claimed
            .saturating_sub(CAPACITY as u64)
            .saturating_add(log.skipped.load(Ordering::Relaxed)),
        elapsed: Duration::from_nanos(now().saturating_sub(log.epoch)),
    }
}
