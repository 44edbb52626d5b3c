//! `Queue` and `JoinableQueue`: Python's `multiprocessing.Queue` and `JoinableQueue`,
//! for many producers and many consumers in different processes.
//!
//! How it moves data, and why: Python's Queue pickles each item in a *feeder thread*
//! of the producer, which writes it into a pipe; a process that put items cannot exit
//! before that thread has flushed them, and a thread in the parent makes every later
//! `fork()` unsound. This port must keep the parent single-threaded (it forks), so it
//! needs no thread: an item is encoded (postcard) by the process that puts it and
//! copied into a ring of shared memory (see `ring.rs`), under a robust [`Lock`] that
//! producers share; a getter decodes it from there under a second one that consumers
//! share, so a put and a get copy their bytes at the same time. `put` has returned once the item is in the queue: a
//! producer may exit at once, and nothing is lost with it.
//!
//! Processes waiting for an item (or for room) sleep on a futex word that every put
//! (or get) bumps, after a short spin when the machine has a core to spare; a waiter
//! sleeps 100 ms at most before it looks again.
//!
//! Killed at any moment, a producer or a consumer leaves the queue usable and whole:
//! the locks are robust (the next process gets the dead one's), and each side's change
//! is made current by one store, so the next holder finds either the state before the
//! dead process's change or the one after. An item a consumer had taken dies with it, as in Python;
//! nothing is taken twice. (Python's queue is protected by a semaphore that nobody can
//! release once its holder is killed: a consumer killed while it waits in `get()`
//! holds it, and every other consumer then waits forever.)
//!
//! Capacity: `maxsize` items (0: no limit on the count, as Python's default), and a
//! ring of [`DEFAULT_BYTES`] bytes unless [`Queue::with_capacity`] says otherwise.
//! Raw bytes go fastest as `serde_bytes::ByteBuf` (Python's `bytes`): serde hands a
//! plain `Vec<u8>` over one byte at a time. A
//! `put` waits while either is full; an item larger than half the ring (which might
//! never find room) is refused with [`QueueError::TooLarge`] rather than waited for.
//!
//! ```
//! use std::time::Duration;
//! use common::process::Process;
//! use common::queue::Queue;
//!
//! let queue = Queue::<String>::new()?;
//! let producer_queue = queue.clone();
//! let mut producer = Process::new(move || -> Result<(), common::queue::QueueError> {
//!     for i in 0..3 {
//!         producer_queue.put(format!("item {i}"))?;
//!     }
//!     Ok(())
//! });
//! producer.start()?;
//! for i in 0..3 {
//!     assert_eq!(queue.get_timeout(Duration::from_secs(20))?, format!("item {i}"));
//! }
//! producer.join_timeout(Duration::from_secs(20))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod ring;

use std::borrow::Borrow;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::shm::{Placed, ShmError};
use crate::sync::{Lock, LockError, LockGuard, nap};
use crate::sys;
use ring::{Header, Ring, between};

/// The ring's size when none is given: 1 MiB.
///
/// ```
/// let queue = common::queue::Queue::<u8>::new()?;
/// assert!(format!("{queue:?}").contains(&common::queue::DEFAULT_BYTES.to_string()));
/// # Ok::<(), common::queue::QueueError>(())
/// ```
pub const DEFAULT_BYTES: usize = 1 << 20;

/// How long a waiter spins, looking for a change, before it sleeps (only when the
/// machine has more than one core: with one, spinning keeps the other side off it).
const SPIN: Duration = Duration::from_micros(50);

/// What can go wrong with a [`Queue`].
///
/// ```
/// use common::queue::{Queue, QueueError};
///
/// let queue = Queue::<u8>::bounded(1)?;
/// queue.put(1)?;
/// assert!(matches!(queue.try_put(2), Err(QueueError::Full)));
/// assert_eq!(queue.try_get()?, 1);
/// assert!(matches!(queue.try_get(), Err(QueueError::Empty)));
/// # Ok::<(), QueueError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// No item came in time (Python's `queue.Empty`).
    #[error("the queue is empty")]
    Empty,
    /// No room came in time (Python's `queue.Full`).
    #[error("the queue is full")]
    Full,
    /// This handle was closed with [`Queue::close`] (Python's `ValueError: Queue ...
    /// is closed`).
    #[error("the queue is closed in this process")]
    Closed,
    /// The item's encoding is larger than half the ring (see [`Queue::with_capacity`]):
    /// it might never fit.
    #[error(
        "an item of {len} bytes is too large for a queue of {capacity} bytes (at most \
         half of it): make the queue larger with Queue::with_capacity"
    )]
    TooLarge {
        /// The encoded item's size in bytes.
        len: usize,
        /// The ring's size in bytes.
        capacity: usize,
    },
    /// The item could not be encoded.
    #[error("cannot encode the item: {0}")]
    Encode(String),
    /// The bytes taken from the queue are not an item of this queue's type (a handle
    /// of another type put them there). The item is gone from the queue.
    #[error("cannot decode the item: {0}")]
    Decode(String),
    /// A record's length in shared memory cannot be right: something outside this
    /// crate wrote into the queue's memory.
    #[error("the queue's memory is corrupt: a record of {len} bytes at position {at}")]
    Corrupt {
        /// Where the record starts.
        at: u64,
        /// The length it claims.
        len: u64,
    },
    /// [`JoinableQueue::task_done`] was called more times than items were put
    /// (Python's `ValueError: task_done() called too many times`).
    #[error("task_done() called more times than items were put")]
    TaskDoneTooManyTimes,
    /// The shared memory could not be created.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// The queue's lock failed.
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// A first-in, first-out queue of `T` between processes: Python's
/// `multiprocessing.Queue`.
///
/// Clone it into the closures of the processes that use it. Items are `serde` types,
/// encoded by the process that puts them and decoded by the one that gets them.
///
/// ```
/// use common::queue::Queue;
///
/// let queue = Queue::<(u32, String)>::new()?;
/// queue.put((1, "one".to_string()))?;
/// queue.put(&(2, "two".to_string()))?; // by reference too
/// assert_eq!(queue.qsize(), 2);
/// assert_eq!(queue.get()?, (1, "one".to_string()));
/// # Ok::<(), common::queue::QueueError>(())
/// ```
pub struct Queue<T> {
    shared: Placed<Header>,
    /// Held by a producer while it writes a record and moves the tail.
    put_lock: Lock,
    /// Held by a consumer while it reads a record and moves the head.
    get_lock: Lock,
    capacity: usize,
    maxsize: usize,
    /// Closed by this handle (Python's `close()` is per process, too).
    closed: Cell<bool>,
    spin: bool,
    _items: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    /// Another handle to the same queue, open.
    fn clone(&self) -> Self {
        Queue {
            shared: self.shared.clone(),
            put_lock: self.put_lock.clone(),
            get_lock: self.get_lock.clone(),
            capacity: self.capacity,
            maxsize: self.maxsize,
            closed: Cell::new(false),
            spin: self.spin,
            _items: PhantomData,
        }
    }
}

/// A lock of the queue, held; a holder that died leaves a consistent queue (see the
/// module doc), so its death needs no repair.
fn locked(lock: &Lock) -> Result<LockGuard, QueueError> {
    match lock.acquire() {
        Ok(guard) => Ok(guard),
        Err(LockError::OwnerDied(died)) => Ok(died.into_guard()),
        Err(other) => Err(other.into()),
    }
}

/// Waits for `word` to move past `seen`: spins for [`SPIN`] first when `spin`, then
/// sleeps (not past `deadline`, and at most [`NAP`](crate::sync::NAP)), counted in
/// `sleepers` while it does. The caller looks at its condition again afterwards.
///
/// The sleeper counts itself, then looks at the word; the waker bumps the word, then
/// looks at the count (all sequentially consistent): one of them sees the other, so
/// a wake-up is never missed, and a waker that sees no sleeper skips the system call.
fn wait_for_change(
    word: &AtomicU32,
    seen: u32,
    sleepers: &AtomicU32,
    spin: bool,
    deadline: Option<Instant>,
) {
    if spin {
        let started = Instant::now();
        let mut turn = 0u32;
        while word.load(Ordering::Acquire) == seen {
            turn = turn.wrapping_add(1);
            if turn % 128 == 0 && started.elapsed() > SPIN {
                break;
            }
            std::hint::spin_loop();
        }
    }
    sleepers.fetch_add(1, Ordering::SeqCst);
    if word.load(Ordering::SeqCst) == seen {
        nap(word, seen, deadline);
    }
    sleepers.fetch_sub(1, Ordering::SeqCst);
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// A queue with no limit on the number of items (Python's `Queue()`), in a ring of
    /// [`DEFAULT_BYTES`].
    ///
    /// ```
    /// let queue = common::queue::Queue::<f64>::new()?;
    /// assert!(queue.empty());
    /// # Ok::<(), common::queue::QueueError>(())
    /// ```
    ///
    /// # Errors
    /// [`QueueError::Shm`] or [`QueueError::Lock`] when the shared memory cannot be
    /// created.
    pub fn new() -> Result<Queue<T>, QueueError> {
        Queue::with_capacity(0, DEFAULT_BYTES)
    }

    /// A queue of at most `maxsize` items (Python's `Queue(maxsize)`; 0 means no
    /// limit).
    ///
    /// ```
    /// let queue = common::queue::Queue::<u8>::bounded(2)?;
    /// queue.put(1)?;
    /// queue.put(2)?;
    /// assert!(queue.full());
    /// # Ok::<(), common::queue::QueueError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Queue::new`].
    pub fn bounded(maxsize: usize) -> Result<Queue<T>, QueueError> {
        Queue::with_capacity(maxsize, DEFAULT_BYTES)
    }

    /// A queue of at most `maxsize` items (0: no limit; below 2^24) in a ring of
    /// `bytes` bytes (rounded up to a power of two, from 64 bytes to 64 MiB). An item
    /// takes its encoded size plus 8 to 15 bytes, and may take half the ring at most.
    ///
    /// ```
    /// use common::queue::{Queue, QueueError};
    ///
    /// let queue = Queue::<Vec<u8>>::with_capacity(0, 4096)?;
    /// assert!(matches!(queue.put(vec![0u8; 5000]), Err(QueueError::TooLarge { .. })));
    /// # Ok::<(), QueueError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Queue::new`].
    pub fn with_capacity(maxsize: usize, bytes: usize) -> Result<Queue<T>, QueueError> {
        if bytes > ring::MAX_CAPACITY || maxsize as u64 >= ring::COUNT_MODULUS {
            return Err(QueueError::TooLarge {
                len: bytes.max(maxsize),
                capacity: ring::MAX_CAPACITY,
            });
        }
        let capacity = bytes.max(64).next_power_of_two();
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Queue {
            shared: Placed::new(capacity)?,
            put_lock: Lock::new()?,
            get_lock: Lock::new()?,
            capacity,
            maxsize,
            closed: Cell::new(false),
            spin: cores > 1,
            _items: PhantomData,
        })
    }

    fn check_open(&self) -> Result<(), QueueError> {
        if self.closed.get() {
            Err(QueueError::Closed)
        } else {
            Ok(())
        }
    }

    /// Puts `item` at the end of the queue, waiting for room however long it takes
    /// (Python's `q.put(item)`).
    ///
    /// ```
    /// let queue = common::queue::Queue::<Vec<i32>>::new()?;
    /// queue.put(vec![1, 2, 3])?;
    /// assert_eq!(queue.get()?, [1, 2, 3]);
    /// # Ok::<(), common::queue::QueueError>(())
    /// ```
    ///
    /// # Errors
    /// [`QueueError::Closed`], [`QueueError::TooLarge`], [`QueueError::Encode`].
    pub fn put(&self, item: impl Borrow<T>) -> Result<(), QueueError> {
        self.put_until(item.borrow(), None)
    }

    /// Puts `item`, waiting at most `timeout` for room (Python's
    /// `q.put(item, timeout=t)`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use common::queue::{Queue, QueueError};
    ///
    /// let queue = Queue::<u8>::bounded(1)?;
    /// queue.put_timeout(1, Duration::from_millis(10))?;
    /// assert!(matches!(queue.put_timeout(2, Duration::from_millis(10)), Err(QueueError::Full)));
    /// # Ok::<(), QueueError>(())
    /// ```
    ///
    /// # Errors
    /// [`QueueError::Full`] when no room came in time, or as [`Queue::put`].
    pub fn put_timeout(&self, item: impl Borrow<T>, timeout: Duration) -> Result<(), QueueError> {
        self.put_until(item.borrow(), Instant::now().checked_add(timeout))
    }

    /// Puts `item` if there is room now (Python's `q.put_nowait(item)`).
    ///
    /// ```
    /// let queue = common::queue::Queue::<u8>::bounded(1)?;
    /// queue.try_put(1)?;
    /// assert!(queue.try_put(2).is_err());
    /// # Ok::<(), common::queue::QueueError>(())
    /// ```
    ///
    /// # Errors
    /// [`QueueError::Full`], or as [`Queue::put`].
    pub fn try_put(&self, item: impl Borrow<T>) -> Result<(), QueueError> {
        self.put_until(item.borrow(), Some(Instant::now()))
    }

    /// `deadline`: `None` waits for ever (a timeout too long to express, too).
    fn put_until(&self, item: &T, deadline: Option<Instant>) -> Result<(), QueueError> {
        self.check_open()?;
        // Measured first, then encoded straight into the ring: one copy, not two.
        let len = postcard::experimental::serialized_size(item)
            .map_err(|e| QueueError::Encode(e.to_string()))?;
        if ring::footprint(len) > self.capacity as u64 / 2 {
            return Err(QueueError::TooLarge {
                len,
                capacity: self.capacity,
            });
        }
        let header = self.shared.get();
        loop {
            let guard = locked(&self.put_lock)?;
            let ring = self.ring();
            // Read before looking for room: a get that makes room after it bumps it.
            let seen = header.room.load(Ordering::SeqCst);
            let counted_full = self.maxsize > 0 && ring.len() >= self.maxsize as u64;
            let encode = |place: &mut [u8]| {
                postcard::to_slice(item, place)
                    .map(drop)
                    .map_err(|e| QueueError::Encode(e.to_string()))
            };
            if !counted_full && ring.push_with(len, encode)? {
                header.items.fetch_add(1, Ordering::SeqCst);
                let wake = header.getters.load(Ordering::SeqCst) > 0;
                drop(guard);
                if wake {
                    sys::futex_wake(&header.items, 1);
                }
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(QueueError::Full);
            }
            drop(guard);
            wait_for_change(&header.room, seen, &header.putters, self.spin, deadline);
        }
    }

    /// Takes the oldest item, waiting for one however long it takes (Python's
    /// `q.get()`).
    ///
    /// ```
    /// let queue = common::queue::Queue::<char>::new()?;
    /// queue.put('a')?;
    /// assert_eq!(queue.get()?, 'a');
    /// # Ok::<(), common::queue::QueueError>(())
    /// ```
    ///
    /// # Errors
    /// [`QueueError::Closed`], [`QueueError::Decode`].
    pub fn get(&self) -> Result<T, QueueError> {
        self.get_until(None)
    }

    /// Takes the oldest item, waiting at most `timeout` for one (Python's
    /// `q.get(timeout=t)`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use common::queue::{Queue, QueueError};
    ///
    /// let queue = Queue::<u8>::new()?;
    /// assert!(matches!(queue.get_timeout(Duration::from_millis(10)), Err(QueueError::Empty)));
    /// # Ok::<(), QueueError>(())
    /// ```
    ///
    /// # Errors
    /// [`QueueError::Empty`] when no item came in time, or as [`Queue::get`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, QueueError> {
        self.get_until(Instant::now().checked_add(timeout))
    }

    /// Takes the oldest item if there is one (Python's `q.get_nowait()`).
    ///
    /// ```
    /// let queue = common::queue::Queue::<u8>::new()?;
    /// assert!(queue.try_get().is_err());
    /// # Ok::<(), common::queue::QueueError>(())
    /// ```
    ///
    /// # Errors
    /// [`QueueError::Empty`], or as [`Queue::get`].
    pub fn try_get(&self) -> Result<T, QueueError> {
        self.get_until(Some(Instant::now()))
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<T, QueueError> {
        self.check_open()?;
        let header = self.shared.get();
        loop {
            let guard = locked(&self.get_lock)?;
            let ring = self.ring();
            // Read before looking for an item: a put that brings one after it bumps it.
            let seen = header.items.load(Ordering::SeqCst);
            let popped = ring
                .pop(|bytes| postcard::from_bytes::<T>(bytes))
                .map_err(|c| QueueError::Corrupt {
                    at: c.at,
                    len: c.len,
                })?;
            if let Some(item) = popped {
                header.room.fetch_add(1, Ordering::SeqCst);
                let wake = header.putters.load(Ordering::SeqCst) > 0;
                drop(guard);
                if wake {
                    sys::futex_wake_all(&header.room);
                }
                return item.map_err(|e| QueueError::Decode(e.to_string()));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(QueueError::Empty);
            }
            drop(guard);
            wait_for_change(&header.items, seen, &header.getters, self.spin, deadline);
        }
    }

    /// The number of items in the queue now (Python's `q.qsize()`): approximate, as
    /// Python says, since other processes may change it the next moment.
    ///
    /// ```
    /// let queue = common::queue::Queue::<u8>::new()?;
    /// queue.put(1)?;
    /// assert_eq!(queue.qsize(), 1);
    /// # Ok::<(), common::queue::QueueError>(())
    /// ```
    pub fn qsize(&self) -> usize {
        usize::try_from(self.ring().len()).unwrap_or(usize::MAX)
    }

    /// Whether the queue is empty now (Python's `q.empty()`; approximate).
    ///
    /// ```
    /// let queue = common::queue::Queue::<u8>::new()?;
    /// assert!(queue.empty());
    /// # Ok::<(), common::queue::QueueError>(())
    /// ```
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether the queue holds `maxsize` items now (Python's `q.full()`; approximate;
    /// always `false` without a `maxsize`).
    ///
    /// ```
    /// let queue = common::queue::Queue::<u8>::bounded(1)?;
    /// assert!(!queue.full());
    /// queue.put(7)?;
    /// assert!(queue.full());
    /// # Ok::<(), common::queue::QueueError>(())
    /// ```
    pub fn full(&self) -> bool {
        self.maxsize > 0 && self.qsize() >= self.maxsize
    }

    /// Closes this handle (Python's `q.close()`): its `put` and `get` return
    /// [`QueueError::Closed`] from now on. Other handles, and other processes, go on.
    /// There is no feeder thread to flush or join: a put item is in the queue already.
    ///
    /// ```
    /// use common::queue::{Queue, QueueError};
    ///
    /// let queue = Queue::<u8>::new()?;
    /// let other = queue.clone();
    /// queue.close();
    /// assert!(matches!(queue.put(1), Err(QueueError::Closed)));
    /// other.put(1)?;
    /// # Ok::<(), QueueError>(())
    /// ```
    pub fn close(&self) {
        self.closed.set(true);
    }
}

impl<T> Queue<T> {
    fn ring(&self) -> Ring<'_> {
        // SAFETY: the segment holds the header and then `capacity` bytes (see
        // `with_capacity`), page-aligned, mapped while `self.shared` lives, a power of
        // two within bounds; every caller pushes under the put lock and pops under the
        // get lock.
        unsafe { Ring::new(self.shared.get(), self.shared.extra(), self.capacity) }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<Queue(qsize={}, maxsize={}, bytes={})>",
            self.ring().len(),
            self.maxsize,
            self.capacity
        )
    }
}

/// A [`Queue`] that counts unfinished tasks: Python's `multiprocessing.JoinableQueue`.
///
/// Every `put` adds a task; a consumer calls [`task_done`](JoinableQueue::task_done)
/// when it has handled an item it got; [`join`](JoinableQueue::join) waits until every
/// task put is done. It dereferences to its [`Queue`] for `put`, `get` and the rest.
/// Tasks are counted modulo 2^24: at most 16,777,215 may be unfinished at once.
///
/// ```
/// use std::time::Duration;
/// use common::process::Process;
/// use common::queue::JoinableQueue;
///
/// let tasks = JoinableQueue::<u64>::new()?;
/// let workers_tasks = tasks.clone();
/// let mut worker = Process::new(move || -> Result<(), common::queue::QueueError> {
///     for _ in 0..3 {
///         let _n = workers_tasks.get()?;
///         workers_tasks.task_done()?;
///     }
///     Ok(())
/// });
/// worker.start()?;
/// for n in 0..3 {
///     tasks.put(n)?;
/// }
/// assert!(tasks.join_timeout(Duration::from_secs(20)), "every task done");
/// worker.join_timeout(Duration::from_secs(20))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> std::ops::Deref for JoinableQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<JoinableQueue {:?}>", self.queue)
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// A joinable queue with no limit on the number of items (Python's
    /// `JoinableQueue()`).
    ///
    /// ```
    /// let tasks = common::queue::JoinableQueue::<u8>::new()?;
    /// tasks.join(); // nothing put: nothing to wait for
    /// # Ok::<(), common::queue::QueueError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Queue::new`].
    pub fn new() -> Result<JoinableQueue<T>, QueueError> {
        JoinableQueue::with_capacity(0, DEFAULT_BYTES)
    }

    /// A joinable queue of at most `maxsize` items (0: no limit) in a ring of `bytes`
    /// bytes, as [`Queue::with_capacity`].
    ///
    /// ```
    /// let tasks = common::queue::JoinableQueue::<u8>::with_capacity(4, 4096)?;
    /// assert_eq!(tasks.qsize(), 0);
    /// # Ok::<(), common::queue::QueueError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Queue::new`].
    pub fn with_capacity(maxsize: usize, bytes: usize) -> Result<JoinableQueue<T>, QueueError> {
        Ok(JoinableQueue {
            queue: Queue::with_capacity(maxsize, bytes)?,
        })
    }

    /// Marks one task got from the queue as done (Python's `q.task_done()`).
    ///
    /// ```
    /// use common::queue::{JoinableQueue, QueueError};
    ///
    /// let tasks = JoinableQueue::<u8>::new()?;
    /// tasks.put(1)?;
    /// tasks.get()?;
    /// tasks.task_done()?;
    /// assert!(matches!(tasks.task_done(), Err(QueueError::TaskDoneTooManyTimes)));
    /// # Ok::<(), QueueError>(())
    /// ```
    ///
    /// # Errors
    /// [`QueueError::TaskDoneTooManyTimes`] when every task put is done already.
    pub fn task_done(&self) -> Result<(), QueueError> {
        let queue = &self.queue;
        let header = queue.shared.get();
        let puts = queue.ring().tail().count;
        // One atomic step: a process killed here leaves the count before or after.
        let before = header
            .done
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |done| {
                (between(done, puts) > 0).then_some((done + 1) % ring::COUNT_MODULUS)
            })
            .map_err(|_| QueueError::TaskDoneTooManyTimes)?;
        if between(before, puts) == 1 {
            header.finished.fetch_add(1, Ordering::SeqCst);
            if header.joiners.load(Ordering::SeqCst) > 0 {
                sys::futex_wake_all(&header.finished);
            }
        }
        Ok(())
    }

    /// Waits until every task put has been marked done (Python's `q.join()`).
    ///
    /// ```
    /// let tasks = common::queue::JoinableQueue::<u8>::new()?;
    /// tasks.put(1)?;
    /// tasks.get()?;
    /// tasks.task_done()?;
    /// tasks.join();
    /// # Ok::<(), common::queue::QueueError>(())
    /// ```
    pub fn join(&self) {
        self.join_until(None);
    }

    /// Waits at most `timeout` for every task to be done: whether they are. (Python's
    /// `join()` has no timeout, and waits for ever for a task whose consumer died.)
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let tasks = common::queue::JoinableQueue::<u8>::new()?;
    /// tasks.put(1)?;
    /// assert!(!tasks.join_timeout(Duration::from_millis(10)), "one task is not done");
    /// # Ok::<(), common::queue::QueueError>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.join_until(Instant::now().checked_add(timeout))
    }

    fn join_until(&self, deadline: Option<Instant>) -> bool {
        let queue = &self.queue;
        let header = queue.shared.get();
        loop {
            // Read before looking: the last task_done bumps it after its count.
            let seen = header.finished.load(Ordering::SeqCst);
            let unfinished = between(
                header.done.load(Ordering::SeqCst),
                queue.ring().tail().count,
            );
            if unfinished == 0 {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            wait_for_change(&header.finished, seen, &header.joiners, false, deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_and_gets_like_cpythons_test_put_and_test_get() {
        let queue = Queue::<i32>::bounded(6).unwrap();
        assert!(queue.empty() && !queue.full());
        for i in 1..=6 {
            queue.put(i).unwrap();
        }
        assert!(!queue.empty() && queue.full());
        let started = Instant::now();
        assert!(matches!(queue.try_put(7), Err(QueueError::Full)));
        assert!(started.elapsed() < Duration::from_millis(50));
        assert!(matches!(
            queue.put_timeout(7, Duration::from_millis(30)),
            Err(QueueError::Full)
        ));
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(started.elapsed() < Duration::from_secs(2), "late");
        for i in 1..=6 {
            assert_eq!(queue.get().unwrap(), i);
        }
        let started = Instant::now();
        assert!(matches!(queue.try_get(), Err(QueueError::Empty)));
        assert!(matches!(
            queue.get_timeout(Duration::from_millis(30)),
            Err(QueueError::Empty)
        ));
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(started.elapsed() < Duration::from_secs(2), "late");
    }

    #[test]
    fn qsize_counts_like_cpythons_test_qsize() {
        let queue = Queue::<i32>::new().unwrap();
        assert_eq!(queue.qsize(), 0);
        queue.put(1).unwrap();
        queue.put(5).unwrap();
        assert_eq!(queue.qsize(), 2);
        queue.get().unwrap();
        assert_eq!(queue.qsize(), 1);
        assert_eq!(
            format!("{queue:?}"),
            "<Queue(qsize=1, maxsize=0, bytes=1048576)>"
        );
    }

    #[test]
    fn a_closed_handle_refuses_put_and_get() {
        let queue = Queue::<i32>::new().unwrap();
        queue.close();
        assert!(matches!(queue.put(1), Err(QueueError::Closed)));
        assert!(matches!(queue.get(), Err(QueueError::Closed)));
    }

    #[test]
    fn an_item_of_the_wrong_type_is_a_decode_error() {
        let strings = Queue::<String>::new().unwrap();
        let numbers: Queue<Vec<u64>> = Queue {
            shared: strings.shared.clone(),
            put_lock: strings.put_lock.clone(),
            get_lock: strings.get_lock.clone(),
            capacity: strings.capacity,
            maxsize: 0,
            closed: Cell::new(false),
            spin: false,
            _items: PhantomData,
        };
        numbers.put(vec![u64::MAX]).unwrap();
        assert!(matches!(strings.get(), Err(QueueError::Decode(_))));
        assert!(strings.empty());
    }

    #[test]
    fn many_items_wrap_the_ring_many_times() {
        let queue = Queue::<Vec<u8>>::with_capacity(0, 256).unwrap();
        for round in 0..500usize {
            let item = vec![round as u8; round % 50];
            queue.put(&item).unwrap();
            if round % 3 == 0 {
                queue.put(&item).unwrap();
                assert_eq!(queue.get().unwrap(), item);
            }
            assert_eq!(queue.get().unwrap(), item);
        }
        assert!(queue.empty());
    }
}
