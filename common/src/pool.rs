//! `Pool`: Python's `multiprocessing.Pool`, over forked workers that never leave a call
//! hanging.
//!
//! The workers are forked once, by [`Pool::new`], and reused: each reads tasks from a
//! pipe and writes results to another. A task names a plain function (`fn(T) -> R`,
//! the Rust match for Python's picklable top-level function) by its address, which is
//! valid in the worker because the worker is a copy of this process; its inputs and
//! results cross the pipes encoded with `postcard`. The parent side is single-threaded:
//! it polls the workers' pipes, so it can fork a replacement worker safely.
//!
//! Where Python's Pool hangs forever (a worker killed in the middle of a task,
//! cpython gh-66587), ours notices at once, because the dead worker's result pipe
//! closes: the call returns [`PoolError::WorkerDied`], the worker is replaced, and the
//! pool can be used again.
//!
//! ```
//! use common::pool::Pool;
//! use common::workload::square;
//!
//! let mut pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..10)?, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
//! pool.close();
//! pool.join()?;
//! # Ok::<(), common::pool::PoolError>(())
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::process::{Process, ProcessError, exitcode_name};
use crate::shm::{SharedArray, ShmError};
use crate::sys;

/// What can go wrong with a [`Pool`] call. Every failure is one of these: a call never
/// hangs on a dead worker and never loses a result silently.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// `Pool::new(0)`.
    #[error("a pool needs at least one worker")]
    NoWorkers,
    /// A chunksize of 0.
    #[error("chunksize must be at least 1")]
    ZeroChunksize,
    /// A call after `close()` or `terminate()` (Python: "Pool not running").
    #[error("the pool is closed; create a new Pool to run more tasks")]
    Closed,
    /// `join()` before `close()` or `terminate()` (Python: "Pool is still running").
    #[error("the pool is still running; call close() or terminate() before join()")]
    StillRunning,
    /// The task for input `index` panicked (Python re-raises the task's exception).
    /// The worker survives and the pool stays usable.
    #[error("the task for input {index} failed: {message}")]
    TaskFailed {
        /// The input's position in the call's inputs.
        index: usize,
        /// The panic message and where it happened.
        message: String,
    },
    /// A worker died in the middle of a task. It has been replaced, and the pool can
    /// be used again.
    #[error(
        "worker {pid} died ({}) while running the task for input {index}; it has been \
         replaced, and the pool can be used again",
        describe_death(*.exitcode)
    )]
    WorkerDied {
        /// The dead worker's pid.
        pid: u32,
        /// Its exit code in Python's convention: `-9` when SIGKILL ended it.
        exitcode: i32,
        /// The input it was working on.
        index: usize,
    },
    /// `AsyncResult::get_timeout` ran out of time; the result may still come.
    #[error("the result was not ready within the timeout")]
    Timeout,
    /// An input or a result could not be encoded or decoded with `postcard`.
    #[error("cannot send data to or from a worker: {0}")]
    Serialization(String),
    /// A worker could not be started.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The pool's shared memory could not be created.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// A pipe to a worker failed.
    #[error("talking to a worker failed: {0}")]
    Io(io::Error),
}

/// The cause is part of the message, so it is not also given as `source()`: an error
/// report that prints the chain names it once.
impl From<io::Error> for PoolError {
    fn from(error: io::Error) -> PoolError {
        PoolError::Io(error)
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;

    #[test]
    fn an_io_error_names_its_cause_once() {
        let error = PoolError::from(io::Error::from_raw_os_error(libc::EMFILE));
        assert_eq!(
            error.to_string(),
            "talking to a worker failed: Too many open files (os error 24)"
        );
        assert!(std::error::Error::source(&error).is_none());
    }
}

fn describe_death(exitcode: i32) -> String {
    if exitcode < 0 {
        format!(
            "killed by {}",
            exitcode_name(exitcode).trim_start_matches('-')
        )
    } else {
        format!("exited with code {exitcode}")
    }
}

impl PoolError {
    /// For a `WorkerDied`, the signal that killed the worker, if a signal did.
    pub fn signal(&self) -> Option<crate::process::Signal> {
        match self {
            PoolError::WorkerDied { exitcode, .. } if *exitcode < 0 => {
                crate::process::Signal::try_from(-exitcode).ok()
            }
            _ => None,
        }
    }
}

/// What a pool task takes and returns: a type that `serde` can send between
/// processes (`i64`, `String`, `Vec<f64>`, tuples, your `#[derive(Serialize,
/// Deserialize)]` structs). Implemented for every such type.
pub trait Data: Serialize + DeserializeOwned + 'static {}

impl<T: Serialize + DeserializeOwned + 'static> Data for T {}

/// A function a worker can run on one input: implemented for plain function pointers.
trait Task: Copy + 'static {
    type Input: Data;
    type Output: Data;
    fn call(self, input: Self::Input) -> Self::Output;
    fn address(self) -> usize;
    /// # Safety
    /// `address` must come from [`Task::address`] on a value of the same type, in this
    /// process or in the process it was forked from.
    unsafe fn from_address(address: usize) -> Self;
}

impl<T, R> Task for fn(T) -> R
where
    T: Data,
    R: Data,
{
    type Input = T;
    type Output = R;
    fn call(self, input: T) -> R {
        self(input)
    }
    fn address(self) -> usize {
        self as usize
    }
    unsafe fn from_address(address: usize) -> Self {
        // SAFETY: the caller guarantees that `address` is a `fn(T) -> R` of this very
        // binary, mapped at the same address in a forked copy.
        unsafe { std::mem::transmute::<usize, fn(T) -> R>(address) }
    }
}

impl<A, B, R> Task for fn(A, B) -> R
where
    A: Data,
    B: Data,
    R: Data,
{
    type Input = (A, B);
    type Output = R;
    fn call(self, (a, b): (A, B)) -> R {
        self(a, b)
    }
    fn address(self) -> usize {
        self as usize
    }
    unsafe fn from_address(address: usize) -> Self {
        // SAFETY: as for `fn(T) -> R`.
        unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(address) }
    }
}

/// Runs a chunk in a worker: decodes the inputs, calls the task on each (recording its
/// progress), encodes the outputs after room for the reply's header. Monomorphised per
/// task type; the parent sends its address.
type Runner = fn(usize, &[u8], &Progress) -> Result<Vec<u8>, Failure>;

/// Why a chunk failed in a worker: the offset of the input in the chunk and a message.
struct Failure {
    offset: u64,
    message: String,
}

fn run_chunk<F: Task>(
    task: usize,
    payload: &[u8],
    progress: &Progress,
) -> Result<Vec<u8>, Failure> {
    // SAFETY: the parent sent the address of an `F`, taken with `F::address` in the
    // process this worker was forked from.
    let task = unsafe { F::from_address(task) };
    let inputs: Vec<F::Input> = postcard::from_bytes(payload).map_err(|error| Failure {
        offset: 0,
        message: format!("cannot decode the inputs: {error}"),
    })?;
    let mut outputs = Vec::with_capacity(inputs.len());
    for (offset, input) in inputs.into_iter().enumerate() {
        progress.record(offset as u64);
        match panic::catch_unwind(AssertUnwindSafe(|| task.call(input))) {
            Ok(output) => outputs.push(output),
            Err(_) => {
                return Err(Failure {
                    offset: offset as u64,
                    message: take_panic_message(),
                });
            }
        }
    }
    let mut reply = Vec::with_capacity(REPLY_HEADER + std::mem::size_of_val(&outputs[..]) + 16);
    reply.resize(REPLY_HEADER, 0);
    postcard::to_extend(&outputs, reply).map_err(|error| Failure {
        offset: 0,
        message: format!("cannot encode the results: {error}"),
    })
}

thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

fn take_panic_message() -> String {
    LAST_PANIC.with(|last| std::mem::take(&mut *last.borrow_mut()))
}

/// Where a worker records which input it is on, so that the parent can name it if
/// the worker dies: slot `worker` holds `start + offset + 1` (0: idle).
struct Progress {
    slots: SharedArray<u64>,
    worker: usize,
    start: u64,
}

impl Progress {
    fn record(&self, offset: u64) {
        debug_assert!(self.worker < self.slots.len());
        // SAFETY: `worker` is a valid slot (the pool made one per worker), the array's
        // memory is aligned for u64 and mapped while `self.slots` lives, and this worker
        // is the only writer of its slot: an atomic view of it is sound, and a relaxed
        // store is a plain store, cheap enough for every input.
        let slot = unsafe { AtomicU64::from_ptr(self.slots.as_ptr().add(self.worker)) };
        slot.store(self.start + offset + 1, Ordering::Relaxed);
    }
}

// Frames on the pipes, little-endian:
// task:  call u64 | chunk u64 | start u64 | runner u64 | task u64 | len u32 | payload
//        (a task frame whose runner is 0 tells the worker to exit)
// reply: call u64 | chunk u64 | status u8 | offset u64 | len u32 | payload
const TASK_HEADER: usize = 8 * 5 + 4;
const REPLY_HEADER: usize = 8 * 2 + 1 + 8 + 4;
const STATUS_OK: u8 = 0;
const STATUS_FAILED: u8 = 1;

/// How much room the parent makes for each read from a worker's pipe.
const READ_SIZE: usize = 1 << 20;

/// Grows pipes to this size where the system allows, so that a chunk seldom waits.
const PIPE_SIZE: libc::c_int = 1 << 20;

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// The loop a worker runs until its task pipe closes.
fn worker_loop(
    tasks: OwnedFd,
    results: OwnedFd,
    slots: SharedArray<u64>,
    worker: usize,
) -> io::Result<()> {
    panic::set_hook(Box::new(|info| {
        let message = info.to_string();
        LAST_PANIC.with(|last| *last.borrow_mut() = message);
    }));
    sys::keep_freed_memory();
    let mut tasks = File::from(tasks);
    let mut results = File::from(results);
    let mut header = [0u8; TASK_HEADER];
    let mut payload = Vec::new();
    loop {
        match tasks.read_exact(&mut header) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error),
        }
        let call = u64_at(&header, 0);
        let chunk = u64_at(&header, 8);
        let start = u64_at(&header, 16);
        let runner = u64_at(&header, 24) as usize;
        if runner == 0 {
            // The stop frame that `Pool::join` sends.
            return Ok(());
        }
        let task = u64_at(&header, 32) as usize;
        let len = u32_at(&header, 40) as usize;
        payload.resize(len, 0);
        tasks.read_exact(&mut payload)?;
        // SAFETY: the parent sent the address of a `Runner` (`run_chunk::<F>`) of this
        // binary, which this forked worker maps at the same address.
        let runner = unsafe { std::mem::transmute::<usize, Runner>(runner) };
        let progress = Progress {
            slots: slots.clone(),
            worker,
            start,
        };
        let outcome = runner(task, &payload, &progress);
        let _ = slots.set(worker, 0);
        let (status, offset, mut reply) = match outcome {
            Ok(reply) => (STATUS_OK, 0, reply),
            Err(failure) => {
                let mut reply = vec![0; REPLY_HEADER];
                reply.extend_from_slice(failure.message.as_bytes());
                (STATUS_FAILED, failure.offset, reply)
            }
        };
        let len = (reply.len() - REPLY_HEADER) as u32;
        reply[0..8].copy_from_slice(&call.to_le_bytes());
        reply[8..16].copy_from_slice(&chunk.to_le_bytes());
        reply[16] = status;
        reply[17..25].copy_from_slice(&offset.to_le_bytes());
        reply[25..29].copy_from_slice(&len.to_le_bytes());
        results.write_all(&reply)?;
    }
}

/// A chunk of a call waiting for a worker.
struct Chunk {
    call: u64,
    /// The index of the chunk's first input.
    start: usize,
    frame: Vec<u8>,
}

/// What the parent knows about one worker.
struct Worker {
    process: Process,
    /// Parent's end of the task pipe; `None` once closed (after `close()`).
    tasks: Option<File>,
    results: File,
    outbox: Vec<u8>,
    written: usize,
    inbox: Vec<u8>,
    /// How many bytes at the start of `inbox` have been read and not yet parsed.
    filled: usize,
    /// The chunk it is working on: (call, index of the chunk's first input).
    busy: Option<(u64, usize)>,
}

/// The results of one call, as they come in.
#[derive(Default)]
struct Job {
    chunks: BTreeMap<u64, Vec<u8>>,
    failure: Option<PoolError>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Closed,
    Terminated,
}

struct Inner {
    workers: Vec<Worker>,
    progress: SharedArray<u64>,
    queue: VecDeque<Chunk>,
    jobs: HashMap<u64, Job>,
    next_call: u64,
    state: State,
    /// Byte buffers to reuse: large fresh buffers cost a page fault per 4 KiB.
    spare: Vec<Vec<u8>>,
}

/// A pool of worker processes: Python's `multiprocessing.Pool`.
///
/// Dropping the pool terminates and reaps its workers (Python's `with Pool() as p:`).
/// Workers are daemonic: they die with the parent even when it is killed with SIGKILL.
pub struct Pool {
    inner: Rc<RefCell<Inner>>,
}

impl Pool {
    /// A pool of `workers` processes, forked now and reused by every call
    /// (Python's `Pool(workers)`).
    ///
    /// ```
    /// use common::pool::{Pool, PoolError};
    ///
    /// assert!(matches!(Pool::new(0), Err(PoolError::NoWorkers)));
    /// let pool = Pool::new(3)?;
    /// assert_eq!(pool.workers(), 3);
    /// # Ok::<(), PoolError>(())
    /// ```
    ///
    /// # Errors
    /// [`PoolError::NoWorkers`] for 0; [`PoolError::Process`] when a worker cannot be
    /// forked (in a multi-threaded process, for one).
    pub fn new(workers: usize) -> Result<Pool, PoolError> {
        if workers == 0 {
            return Err(PoolError::NoWorkers);
        }
        let mut inner = Inner {
            workers: Vec::with_capacity(workers),
            progress: SharedArray::new(workers)?,
            queue: VecDeque::new(),
            jobs: HashMap::new(),
            next_call: 0,
            state: State::Running,
            spare: Vec::new(),
        };
        for slot in 0..workers {
            let worker = inner.spawn(slot)?;
            inner.workers.push(worker);
        }
        Ok(Pool {
            inner: Rc::new(RefCell::new(inner)),
        })
    }

    /// A pool with one worker per available CPU (Python's `Pool()`).
    ///
    /// ```
    /// let pool = common::pool::Pool::with_cpus()?;
    /// assert!(pool.workers() >= 1);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Pool::new`].
    pub fn with_cpus() -> Result<Pool, PoolError> {
        Pool::new(std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// The number of workers.
    ///
    /// ```
    /// assert_eq!(common::pool::Pool::new(2)?.workers(), 2);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    pub fn workers(&self) -> usize {
        self.inner.borrow().workers.len()
    }

    /// The workers' pids, in slot order (a replaced worker's slot gets the new pid).
    ///
    /// ```
    /// let mut pool = common::pool::Pool::new(2)?;
    /// let pids = pool.worker_pids();
    /// let seen: Vec<u32> = pool.map_chunked(|_: u8| std::process::id(), 0..8, 1)?;
    /// assert!(seen.iter().all(|pid| pids.contains(pid)));
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    pub fn worker_pids(&self) -> Vec<u32> {
        let inner = self.inner.borrow();
        inner
            .workers
            .iter()
            .filter_map(|w| w.process.pid())
            .collect()
    }

    /// `f` applied to every input, results in input order (Python's `pool.map`), with
    /// Python's default chunksize: inputs / (4 × workers), rounded up.
    ///
    /// ```
    /// use common::pool::{Pool, PoolError};
    ///
    /// fn halve(x: u32) -> u32 {
    ///     assert!(x % 2 == 0, "{x} is odd");
    ///     x / 2
    /// }
    ///
    /// let mut pool = Pool::new(2)?;
    /// assert_eq!(pool.map(halve, [2, 4, 6])?, [1, 2, 3]);
    /// let failed = pool.map(halve, [2, 3, 4]);
    /// assert!(matches!(failed, Err(PoolError::TaskFailed { index: 1, .. })));
    /// assert_eq!(pool.map(halve, [8])?, [4], "the pool is still usable");
    /// # Ok::<(), PoolError>(())
    /// ```
    ///
    /// # Errors
    /// [`PoolError::TaskFailed`] if a task panics, [`PoolError::WorkerDied`] if a
    /// worker dies, [`PoolError::Closed`] after `close()`.
    pub fn map<T, R>(
        &mut self,
        f: fn(T) -> R,
        inputs: impl IntoIterator<Item = T>,
    ) -> Result<Vec<R>, PoolError>
    where
        T: Data,
        R: Data,
    {
        let inputs: Vec<T> = inputs.into_iter().collect();
        let chunksize = self.default_chunksize(inputs.len());
        self.run_all(f, inputs, chunksize)
    }

    /// [`Pool::map`] with a chunksize of your choice (Python's `map(f, xs, chunksize)`).
    ///
    /// ```
    /// let mut pool = common::pool::Pool::new(2)?;
    /// let doubled = pool.map_chunked(|x: u32| x * 2, 0..7, 3)?;
    /// assert_eq!(doubled, [0, 2, 4, 6, 8, 10, 12]);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// [`PoolError::ZeroChunksize`], or as [`Pool::map`].
    pub fn map_chunked<T, R>(
        &mut self,
        f: fn(T) -> R,
        inputs: impl IntoIterator<Item = T>,
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError>
    where
        T: Data,
        R: Data,
    {
        if chunksize == 0 {
            return Err(PoolError::ZeroChunksize);
        }
        self.run_all(f, inputs.into_iter().collect(), chunksize)
    }

    /// `f(a, b)` for every input pair, in order (Python's `pool.starmap`).
    ///
    /// ```
    /// let mut pool = common::pool::Pool::new(2)?;
    /// let sums = pool.starmap(|a: i32, b: i32| a + b, [(1, 2), (3, 4)])?;
    /// assert_eq!(sums, [3, 7]);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Pool::map`].
    pub fn starmap<A, B, R>(
        &mut self,
        f: fn(A, B) -> R,
        inputs: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>, PoolError>
    where
        A: Data,
        B: Data,
        R: Data,
    {
        let inputs: Vec<(A, B)> = inputs.into_iter().collect();
        let chunksize = self.default_chunksize(inputs.len());
        self.run_all(f, inputs, chunksize)
    }

    /// `f(input)` in a worker, waiting for the result (Python's `pool.apply`).
    ///
    /// ```
    /// let mut pool = common::pool::Pool::new(1)?;
    /// let worker = pool.apply(|_: ()| std::process::id(), ())?;
    /// assert_eq!(pool.worker_pids(), [worker]);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Pool::map`].
    pub fn apply<T, R>(&mut self, f: fn(T) -> R, input: T) -> Result<R, PoolError>
    where
        T: Data,
        R: Data,
    {
        self.apply_async(f, input)?.get()
    }

    /// Sends `f(input)` to a worker and returns at once (Python's `pool.apply_async`);
    /// [`AsyncResult::get`] waits for the result.
    ///
    /// ```
    /// let mut pool = common::pool::Pool::new(2)?;
    /// let pending = pool.apply_async(common::workload::square, 12)?;
    /// // ... other work here, while a worker computes ...
    /// assert_eq!(pending.get()?, 144);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// [`PoolError::Closed`], [`PoolError::Serialization`].
    pub fn apply_async<T, R>(
        &mut self,
        f: fn(T) -> R,
        input: T,
    ) -> Result<AsyncResult<R>, PoolError>
    where
        T: Data,
        R: Data,
    {
        let call = self.inner.borrow_mut().submit(f, &[input])?;
        Ok(AsyncResult {
            inner: Rc::clone(&self.inner),
            call,
            result: PhantomData,
        })
    }

    /// The results of `f` over `inputs`, in order, as they come (Python's
    /// `pool.imap`, chunksize 1): the first is there as soon as its task is done.
    /// Inputs are sent a few chunks ahead of the results read, not all at once.
    ///
    /// # Errors
    /// [`PoolError::Closed`]; each item is a `Result` of its own.
    pub fn imap<T, R, I>(
        &mut self,
        f: fn(T) -> R,
        inputs: I,
    ) -> Result<Imap<T, R, I::IntoIter>, PoolError>
    where
        T: Data,
        R: Data,
        I: IntoIterator<Item = T>,
    {
        self.imap_chunked(f, inputs, 1)
    }

    /// [`Pool::imap`] with a chunksize of your choice.
    ///
    /// # Errors
    /// [`PoolError::ZeroChunksize`], [`PoolError::Closed`].
    pub fn imap_chunked<T, R, I>(
        &mut self,
        f: fn(T) -> R,
        inputs: I,
        chunksize: usize,
    ) -> Result<Imap<T, R, I::IntoIter>, PoolError>
    where
        T: Data,
        R: Data,
        I: IntoIterator<Item = T>,
    {
        if chunksize == 0 {
            return Err(PoolError::ZeroChunksize);
        }
        self.imap_with(f, inputs, chunksize, true)
    }

    /// The results of `f` over `inputs` in the order they finish (Python's
    /// `pool.imap_unordered`).
    ///
    /// ```
    /// let mut pool = common::pool::Pool::new(2)?;
    /// let mut squares: Vec<i64> = pool
    ///     .imap_unordered(common::workload::square, 0..5)?
    ///     .collect::<Result<_, _>>()?;
    /// squares.sort();
    /// assert_eq!(squares, [0, 1, 4, 9, 16]);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// [`PoolError::Closed`]; each item is a `Result` of its own.
    pub fn imap_unordered<T, R, I>(
        &mut self,
        f: fn(T) -> R,
        inputs: I,
    ) -> Result<Imap<T, R, I::IntoIter>, PoolError>
    where
        T: Data,
        R: Data,
        I: IntoIterator<Item = T>,
    {
        self.imap_with(f, inputs, 1, false)
    }

    fn imap_with<T, R, I>(
        &mut self,
        f: fn(T) -> R,
        inputs: I,
        chunksize: usize,
        ordered: bool,
    ) -> Result<Imap<T, R, I::IntoIter>, PoolError>
    where
        T: Data,
        R: Data,
        I: IntoIterator<Item = T>,
    {
        let batches = IterBatches {
            inputs: inputs.into_iter(),
        };
        Ok(Imap {
            driver: Driver::new(&self.inner, f, batches, chunksize, ordered)?,
            ready: Vec::new().into_iter(),
            done: false,
        })
    }

    /// No more tasks may be sent (Python's `pool.close()`); tasks already sent still
    /// run. Then call [`Pool::join`].
    ///
    /// ```
    /// use common::pool::{Pool, PoolError};
    ///
    /// let mut pool = Pool::new(2)?;
    /// pool.close();
    /// assert!(matches!(pool.map(common::workload::square, [1]), Err(PoolError::Closed)));
    /// pool.join()?;
    /// # Ok::<(), PoolError>(())
    /// ```
    pub fn close(&mut self) {
        let mut inner = self.inner.borrow_mut();
        if inner.state == State::Running {
            inner.state = State::Closed;
        }
    }

    /// Stops the workers at once with SIGTERM (Python's `pool.terminate()`) and reaps
    /// them. Results not yet collected are lost.
    ///
    /// ```
    /// let mut pool = common::pool::Pool::new(2)?;
    /// let pids = pool.worker_pids();
    /// pool.terminate();
    /// pool.join()?;
    /// assert!(pids.iter().all(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()));
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    pub fn terminate(&mut self) {
        self.inner.borrow_mut().terminate();
    }

    /// Waits for the tasks already sent, then for the workers to exit, and reaps them
    /// (Python's `pool.join()`).
    ///
    /// ```
    /// use common::pool::{Pool, PoolError};
    ///
    /// let mut pool = Pool::new(2)?;
    /// assert!(matches!(pool.join(), Err(PoolError::StillRunning)));
    /// let pending = pool.apply_async(common::workload::square, 5)?;
    /// pool.close();
    /// pool.join()?; // waits for the task already sent
    /// assert_eq!(pending.get()?, 25);
    /// # Ok::<(), PoolError>(())
    /// ```
    ///
    /// # Errors
    /// [`PoolError::StillRunning`] before `close()` or `terminate()`.
    pub fn join(&mut self) -> Result<(), PoolError> {
        let mut inner = self.inner.borrow_mut();
        match inner.state {
            State::Running => return Err(PoolError::StillRunning),
            State::Terminated => return Ok(()),
            State::Closed => {}
        }
        while !inner.queue.is_empty() || inner.workers.iter().any(|w| w.busy.is_some()) {
            inner.pump(None)?;
        }
        // Tell each worker to stop with a frame of its own rather than by closing the
        // pipe: a child forked since the pool started holds a copy of the pipe's
        // writing end, and the worker would never see the pipe close.
        for worker in &mut inner.workers {
            if let Some(mut tasks) = worker.tasks.take() {
                let _ = sys::set_blocking(tasks.as_fd());
                let _ = tasks.write_all(&[0; TASK_HEADER]);
            }
        }
        for worker in &inner.workers {
            worker.process.join()?;
        }
        inner.state = State::Terminated;
        Ok(())
    }

    fn default_chunksize(&self, inputs: usize) -> usize {
        inputs.div_ceil(4 * self.workers()).max(1)
    }

    /// Feeds every chunk to the workers and puts the results back in order.
    fn run_all<F: Task>(
        &mut self,
        f: F,
        inputs: Vec<F::Input>,
        chunksize: usize,
    ) -> Result<Vec<F::Output>, PoolError> {
        let total = inputs.len();
        let batches = SliceBatches {
            inputs,
            position: 0,
        };
        let mut driver = Driver::new(&self.inner, f, batches, chunksize, true)?;
        let mut outputs = Vec::with_capacity(total);
        while driver.next_chunk_into(&mut outputs)? {}
        Ok(outputs)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.terminate();
    }
}

impl Inner {
    /// Forks the worker for `slot`.
    fn spawn(&self, slot: usize) -> Result<Worker, PoolError> {
        let (task_read, task_write) = sys::pipe()?;
        let (result_read, result_write) = sys::pipe()?;
        sys::grow_pipe(&task_write, PIPE_SIZE);
        sys::grow_pipe(&result_write, PIPE_SIZE);
        // The child closes the parent's ends of every worker's pipes, its own included,
        // so that only the parent can write tasks and a dead worker's pipe closes.
        let mut parents_ends: Vec<RawFd> = vec![task_write.as_raw_fd(), result_read.as_raw_fd()];
        for worker in &self.workers {
            if let Some(tasks) = &worker.tasks {
                parents_ends.push(tasks.as_raw_fd());
            }
            parents_ends.push(worker.results.as_raw_fd());
        }
        let slots = self.progress.clone();
        let mut process = Process::new(move || {
            for fd in parents_ends {
                let _ = nix::unistd::close(fd);
            }
            worker_loop(task_read, result_write, slots, slot)
        })
        .daemon(true);
        let name = process.get_name().replacen("Process", "ForkPoolWorker", 1);
        process = process.name(name);
        process.start()?;
        let results = File::from(result_read);
        sys::set_nonblocking(results.as_fd())?;
        let tasks = File::from(task_write);
        sys::set_nonblocking(tasks.as_fd())?;
        Ok(Worker {
            process,
            tasks: Some(tasks),
            results,
            outbox: Vec::new(),
            written: 0,
            inbox: Vec::new(),
            filled: 0,
            busy: None,
        })
    }

    /// An empty buffer, reused when one is spare.
    fn spare_buffer(&mut self) -> Vec<u8> {
        let mut buffer = self.spare.pop().unwrap_or_default();
        buffer.clear();
        buffer
    }

    /// Keeps `buffer` for reuse (a few per worker at most).
    fn recycle(&mut self, buffer: Vec<u8>) {
        recycle_into(&mut self.spare, buffer, self.workers.len());
    }

    fn open_call(&mut self) -> Result<u64, PoolError> {
        if self.state != State::Running {
            return Err(PoolError::Closed);
        }
        let call = self.next_call;
        self.next_call += 1;
        self.jobs.insert(call, Job::default());
        Ok(call)
    }

    /// Queues a call of one chunk, `inputs`, and returns the call's number.
    fn submit<F: Task>(&mut self, f: F, inputs: &[F::Input]) -> Result<u64, PoolError> {
        let call = self.open_call()?;
        let mut frame = vec![0; TASK_HEADER];
        encode_into(inputs, &mut frame)?;
        self.queue_chunk(f, call, 0, 0, frame);
        Ok(call)
    }

    /// Queues a chunk whose `frame` holds a task header's room and the encoded inputs.
    fn queue_chunk<F: Task>(
        &mut self,
        f: F,
        call: u64,
        chunk: u64,
        start: usize,
        mut frame: Vec<u8>,
    ) {
        let runner: Runner = run_chunk::<F>;
        let payload = (frame.len() - TASK_HEADER) as u32;
        frame[0..8].copy_from_slice(&call.to_le_bytes());
        frame[8..16].copy_from_slice(&chunk.to_le_bytes());
        frame[16..24].copy_from_slice(&(start as u64).to_le_bytes());
        frame[24..32].copy_from_slice(&(runner as usize as u64).to_le_bytes());
        frame[32..40].copy_from_slice(&(f.address() as u64).to_le_bytes());
        frame[40..44].copy_from_slice(&payload.to_le_bytes());
        self.queue.push_back(Chunk { call, start, frame });
    }

    /// One turn of the event loop: hand queued chunks to idle workers, wait (at most
    /// `timeout`) until a pipe is ready, write what can be written, read what came.
    fn pump(&mut self, timeout: Option<Duration>) -> Result<(), PoolError> {
        let workers = self.workers.len();
        for worker in &mut self.workers {
            if worker.busy.is_none() && worker.tasks.is_some() {
                if let Some(chunk) = self.queue.pop_front() {
                    worker.busy = Some((chunk.call, chunk.start));
                    worker.outbox = chunk.frame;
                    worker.written = 0;
                }
            }
            if let Some(sent) = worker.flush()? {
                recycle_into(&mut self.spare, sent, workers);
            }
        }
        let mut fds = Vec::new();
        let mut owners = Vec::new();
        for (index, worker) in self.workers.iter().enumerate() {
            fds.push((worker.results.as_fd(), libc::POLLIN));
            owners.push(index);
            if worker.written < worker.outbox.len() {
                if let Some(tasks) = &worker.tasks {
                    fds.push((tasks.as_fd(), libc::POLLOUT));
                    owners.push(index);
                }
            }
        }
        let ready = sys::poll(&fds, timeout.unwrap_or(Duration::from_secs(3600)))?;
        drop(fds);
        let mut dead = Vec::new();
        for index in ready {
            let slot = owners[index];
            let workers = self.workers.len();
            let worker = &mut self.workers[slot];
            if let Some(sent) = worker.flush()? {
                recycle_into(&mut self.spare, sent, workers);
            }
            if !worker.read_replies(&mut self.jobs, &mut self.spare)? {
                dead.push(slot);
            }
        }
        dead.dedup();
        for slot in dead {
            self.replace(slot)?;
        }
        Ok(())
    }

    /// Records the death of the worker in `slot`, fails its call, and forks a new one.
    fn replace(&mut self, slot: usize) -> Result<(), PoolError> {
        let worker = &self.workers[slot];
        let pid = worker.process.pid().unwrap_or(0);
        let exitcode = worker.process.join()?;
        let at = self.progress.get(slot).unwrap_or(0);
        let _ = self.progress.set(slot, 0);
        if let Some((call, start)) = worker.busy {
            let index = if at > 0 { at as usize - 1 } else { start };
            if let Some(job) = self.jobs.get_mut(&call) {
                job.failure.get_or_insert(PoolError::WorkerDied {
                    pid,
                    exitcode,
                    index,
                });
            }
        }
        if self.state == State::Terminated {
            return Ok(());
        }
        // Closed or not, the replacement takes tasks: a closed pool still runs the
        // tasks already sent (`open_call` is what refuses new ones).
        self.workers[slot] = self.spawn(slot)?;
        Ok(())
    }

    fn terminate(&mut self) {
        if self.state == State::Terminated {
            return;
        }
        self.state = State::Terminated;
        for worker in &mut self.workers {
            worker.tasks = None;
            let _ = worker.process.terminate();
        }
        for worker in &self.workers {
            let _ = worker.process.join();
        }
        self.queue.clear();
    }
}

/// Keeps `buffer` in `spare` for reuse, a few per worker at most.
fn recycle_into(spare: &mut Vec<Vec<u8>>, buffer: Vec<u8>, workers: usize) {
    if spare.len() < 2 * workers + 2 {
        spare.push(buffer);
    }
}

impl Worker {
    /// Writes as much of the outbox as the pipe takes without blocking; returns the
    /// outbox's buffer, for reuse, once all of it is written.
    fn flush(&mut self) -> Result<Option<Vec<u8>>, PoolError> {
        let Some(tasks) = &mut self.tasks else {
            return Ok(None);
        };
        while self.written < self.outbox.len() {
            match tasks.write(&self.outbox[self.written..]) {
                Ok(0) => break,
                Ok(n) => self.written += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // The worker died: its death shows on the result pipe.
                Err(error) if error.kind() == io::ErrorKind::BrokenPipe => break,
                Err(error) => return Err(error.into()),
            }
        }
        if self.written == self.outbox.len() && !self.outbox.is_empty() {
            self.written = 0;
            return Ok(Some(std::mem::take(&mut self.outbox)));
        }
        Ok(None)
    }

    /// Reads what the worker wrote and files complete replies under their calls.
    /// Returns `false` when the worker's pipe has closed: the worker is dead.
    fn read_replies(
        &mut self,
        jobs: &mut HashMap<u64, Job>,
        spare: &mut Vec<Vec<u8>>,
    ) -> Result<bool, PoolError> {
        let mut alive = true;
        loop {
            // `inbox` stays initialised up to its length; `filled` bytes of it are data.
            if self.inbox.len() - self.filled < READ_SIZE {
                self.inbox.resize(self.filled + READ_SIZE, 0);
            }
            match self.results.read(&mut self.inbox[self.filled..]) {
                Ok(0) => {
                    alive = false;
                    break;
                }
                Ok(got) => self.filled += got,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error.into()),
            }
        }
        let mut used = 0;
        while self.filled - used >= REPLY_HEADER {
            let header = &self.inbox[used..used + REPLY_HEADER];
            let len = u32_at(header, 25) as usize;
            if self.filled - used < REPLY_HEADER + len {
                break;
            }
            let call = u64_at(header, 0);
            let chunk = u64_at(header, 8);
            let status = header[16];
            let offset = u64_at(header, 17) as usize;
            let body = &self.inbox[used + REPLY_HEADER..used + REPLY_HEADER + len];
            let start = self.busy.map_or(0, |(_, start)| start);
            self.busy = None;
            if let Some(job) = jobs.get_mut(&call) {
                if status == STATUS_OK {
                    let mut bytes = spare.pop().unwrap_or_default();
                    bytes.clear();
                    bytes.extend_from_slice(body);
                    job.chunks.insert(chunk, bytes);
                } else {
                    job.failure.get_or_insert(PoolError::TaskFailed {
                        index: start + offset,
                        message: String::from_utf8_lossy(body).into_owned(),
                    });
                }
            }
            used += REPLY_HEADER + len;
        }
        self.inbox.copy_within(used..self.filled, 0);
        self.filled -= used;
        Ok(alive)
    }
}

/// A result on its way from a worker (Python's `AsyncResult`).
pub struct AsyncResult<R> {
    inner: Rc<RefCell<Inner>>,
    call: u64,
    result: PhantomData<R>,
}

impl<R: DeserializeOwned> AsyncResult<R> {
    /// Waits for the result (Python's `get()`).
    ///
    /// # Errors
    /// As [`Pool::map`].
    pub fn get(self) -> Result<R, PoolError> {
        self.wait(None)
    }

    /// Waits at most `timeout` for the result (Python's `get(timeout)`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use common::pool::{Pool, PoolError};
    ///
    /// fn nap(seconds: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_secs(seconds));
    ///     seconds
    /// }
    ///
    /// let mut pool = Pool::new(1)?;
    /// let pending = pool.apply_async(nap, 5)?;
    /// assert!(matches!(pending.get_timeout(Duration::from_millis(20)), Err(PoolError::Timeout)));
    /// assert!(!pending.ready());
    /// # Ok::<(), PoolError>(())
    /// ```
    ///
    /// # Errors
    /// [`PoolError::Timeout`] when the time runs out, or as [`Pool::map`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, PoolError> {
        self.wait(Some(Instant::now() + timeout))
    }

    /// Whether the result has arrived (Python's `ready()`), without waiting.
    pub fn ready(&self) -> bool {
        let mut inner = self.inner.borrow_mut();
        let _ = inner.pump(Some(Duration::ZERO));
        inner
            .jobs
            .get(&self.call)
            .is_none_or(|job| !job.chunks.is_empty() || job.failure.is_some())
    }

    fn wait(&self, deadline: Option<Instant>) -> Result<R, PoolError> {
        let mut inner = self.inner.borrow_mut();
        loop {
            let job = inner.jobs.get_mut(&self.call).ok_or(PoolError::Closed)?;
            if let Some(failure) = job.failure.take() {
                inner.jobs.remove(&self.call);
                return Err(failure);
            }
            if let Some(bytes) = job.chunks.get(&0) {
                let mut outputs: Vec<R> = postcard::from_bytes(bytes)
                    .map_err(|e| PoolError::Serialization(e.to_string()))?;
                inner.jobs.remove(&self.call);
                return outputs
                    .pop()
                    .ok_or(PoolError::Serialization("an empty result".into()));
            }
            if inner.state == State::Terminated {
                return Err(PoolError::Closed);
            }
            let timeout = match deadline {
                None => None,
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(PoolError::Timeout);
                    }
                    Some(deadline - now)
                }
            };
            inner.pump(timeout)?;
        }
    }
}

/// Decodes a postcard sequence onto the end of a vector, with no vector of its own
/// in between (a chunk's results go straight to where the caller wants them).
struct Append<'a, R>(&'a mut Vec<R>);

impl<'de, R: Deserialize<'de>> DeserializeSeed<'de> for Append<'_, R> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, R: Deserialize<'de>> Visitor<'de> for Append<'_, R> {
    type Value = ();
    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a sequence of results")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.reserve(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            self.0.push(item);
        }
        Ok(())
    }
}

fn decode_append<R: DeserializeOwned>(bytes: &[u8], out: &mut Vec<R>) -> Result<(), PoolError> {
    let mut deserializer = postcard::Deserializer::from_bytes(bytes);
    Append(out)
        .deserialize(&mut deserializer)
        .map_err(|e| PoolError::Serialization(e.to_string()))
}

/// Encodes `inputs` (a sequence, as postcard writes a `Vec`) at the end of `frame`.
fn encode_into<T: Serialize>(inputs: &[T], frame: &mut Vec<u8>) -> Result<(), PoolError> {
    // Room for the usual size up front: growing the buffer step by step costs more
    // than the encoding itself.
    frame.reserve(std::mem::size_of_val(inputs) + 16);
    let encoded = postcard::to_extend(inputs, std::mem::take(frame))
        .map_err(|e| PoolError::Serialization(e.to_string()))?;
    *frame = encoded;
    Ok(())
}

/// Where a call's inputs come from, a chunk at a time.
trait Batches {
    /// Appends the next chunk of at most `chunksize` inputs, encoded, to `frame`, and
    /// returns how many inputs it holds: 0 when there are no more.
    fn next_batch(&mut self, chunksize: usize, frame: &mut Vec<u8>) -> Result<usize, PoolError>;
}

/// Inputs already in a vector (`map`): chunks are encoded straight from its slices.
struct SliceBatches<T> {
    inputs: Vec<T>,
    position: usize,
}

impl<T: Serialize> Batches for SliceBatches<T> {
    fn next_batch(&mut self, chunksize: usize, frame: &mut Vec<u8>) -> Result<usize, PoolError> {
        let end = self
            .position
            .saturating_add(chunksize)
            .min(self.inputs.len());
        let count = end - self.position;
        if count > 0 {
            encode_into(&self.inputs[self.position..end], frame)?;
            self.position = end;
        }
        Ok(count)
    }
}

/// Inputs from an iterator (`imap`), taken a chunk at a time.
struct IterBatches<I> {
    inputs: I,
}

impl<I> Batches for IterBatches<I>
where
    I: Iterator,
    I::Item: Serialize,
{
    fn next_batch(&mut self, chunksize: usize, frame: &mut Vec<u8>) -> Result<usize, PoolError> {
        let batch: Vec<I::Item> = self.inputs.by_ref().take(chunksize).collect();
        if !batch.is_empty() {
            encode_into(&batch, frame)?;
        }
        Ok(batch.len())
    }
}

/// Feeds one call's chunks to the workers, a few ahead of the results it hands out,
/// and hands the results out a chunk at a time: in input order, or as they finish.
struct Driver<F, B> {
    inner: Rc<RefCell<Inner>>,
    f: F,
    batches: B,
    chunksize: usize,
    call: u64,
    sent_chunks: u64,
    sent_inputs: usize,
    taken_chunks: u64,
    exhausted: bool,
    ordered: bool,
}

impl<F: Task, B: Batches> Driver<F, B> {
    fn new(
        inner: &Rc<RefCell<Inner>>,
        f: F,
        batches: B,
        chunksize: usize,
        ordered: bool,
    ) -> Result<Self, PoolError> {
        let call = inner.borrow_mut().open_call()?;
        Ok(Driver {
            inner: Rc::clone(inner),
            f,
            batches,
            chunksize,
            call,
            sent_chunks: 0,
            sent_inputs: 0,
            taken_chunks: 0,
            exhausted: false,
            ordered,
        })
    }

    /// Whether another chunk should be encoded now: two per worker may be on their way.
    fn wants_more(&self, inner: &Inner) -> bool {
        !self.exhausted && self.sent_chunks - self.taken_chunks < 2 * inner.workers.len() as u64
    }

    /// Encodes and queues one more chunk, unless enough are on their way.
    fn send_one(&mut self, inner: &mut Inner) -> Result<(), PoolError> {
        if !self.wants_more(inner) {
            return Ok(());
        }
        let mut frame = inner.spare_buffer();
        frame.resize(TASK_HEADER, 0);
        let count = self.batches.next_batch(self.chunksize, &mut frame)?;
        if count == 0 {
            self.exhausted = true;
            inner.recycle(frame);
            return Ok(());
        }
        inner.queue_chunk(self.f, self.call, self.sent_chunks, self.sent_inputs, frame);
        self.sent_chunks += 1;
        self.sent_inputs += count;
        Ok(())
    }

    /// Appends the results of the next chunk to `out`; `false` when every chunk has
    /// been handed out.
    fn next_chunk_into(&mut self, out: &mut Vec<F::Output>) -> Result<bool, PoolError> {
        let cell = Rc::clone(&self.inner);
        let mut inner = cell.borrow_mut();
        loop {
            self.send_one(&mut inner)?;
            let job = inner.jobs.get_mut(&self.call).ok_or(PoolError::Closed)?;
            if let Some(failure) = job.failure.take() {
                self.exhausted = true;
                return Err(failure);
            }
            let key = if self.ordered {
                job.chunks
                    .contains_key(&self.taken_chunks)
                    .then_some(self.taken_chunks)
            } else {
                job.chunks.keys().next().copied()
            };
            if let Some(bytes) = key.and_then(|key| job.chunks.remove(&key)) {
                self.taken_chunks += 1;
                let decoded = decode_append(&bytes, out);
                inner.recycle(bytes);
                return decoded.map(|()| true);
            }
            if self.exhausted && self.taken_chunks == self.sent_chunks {
                return Ok(false);
            }
            if inner.state == State::Terminated {
                return Err(PoolError::Closed);
            }
            // While chunks remain to be encoded, only look at the pipes: encoding the
            // next chunk overlaps with the workers' work.
            let timeout = self.wants_more(&inner).then_some(Duration::ZERO);
            inner.pump(timeout)?;
        }
    }
}

impl<F, B> Drop for Driver<F, B> {
    fn drop(&mut self) {
        let mut inner = self.inner.borrow_mut();
        inner.jobs.remove(&self.call);
        let call = self.call;
        inner.queue.retain(|chunk| chunk.call != call);
    }
}

/// The results of [`Pool::imap`] or [`Pool::imap_unordered`], as an iterator.
pub struct Imap<T, R, I> {
    driver: Driver<fn(T) -> R, IterBatches<I>>,
    ready: std::vec::IntoIter<R>,
    done: bool,
}

impl<T, R, I> Iterator for Imap<T, R, I>
where
    T: Data,
    R: Data,
    I: Iterator<Item = T>,
{
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(result) = self.ready.next() {
                return Some(Ok(result));
            }
            if self.done {
                return None;
            }
            let mut chunk = Vec::new();
            match self.driver.next_chunk_into(&mut chunk) {
                Ok(true) => self.ready = chunk.into_iter(),
                Ok(false) => self.done = true,
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            }
        }
    }
}
