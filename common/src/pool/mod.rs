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
//! pool can be used again. A worker that dies between tasks is replaced without a word:
//! no task is blamed for it.
//!
//! Nothing runs in the background (the parent must stay single-threaded to fork): work
//! is handed to idle workers as soon as it is submitted, and the pool moves on whenever
//! it or one of its handles ([`AsyncResult`], [`Imap`]) is called. Handles borrow the
//! pool, so the pool outlives them: dropping it stops its workers.
//!
//! The code is cut by concept: `wire` (the frames and their length checks), `worker`
//! (all that runs after the fork), `dispatch` (the parent's event loop and the
//! lifecycle of each chunk), and this module (the public API).
//!
//! ```
//! use common::pool::Pool;
//! use common::workload::square;
//!
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..10)?, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
//! pool.close();
//! pool.join()?;
//! # Ok::<(), common::pool::PoolError>(())
//! ```

mod dispatch;
mod plain;
mod wire;
mod worker;

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::process::{ProcessError, exitcode_name};
use crate::shm::ShmError;
use dispatch::{Dispatcher, IterFeeder, Job, JobKind, OnComplete, Setup, SliceFeeder, State};
use worker::Task;

/// What can go wrong with a [`Pool`] call. Every failure is one of these: a call never
/// hangs on a dead worker and never loses a result silently.
///
/// ```
/// use common::pool::{Pool, PoolError};
///
/// let pool = Pool::new(1)?;
/// pool.close();
/// let refused = pool.map(common::workload::square, [1]);
/// assert!(matches!(refused, Err(PoolError::Closed)));
/// # Ok::<(), PoolError>(())
/// ```
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
    /// A chunk's inputs or results, encoded, exceed what a frame can carry
    /// (`max` bytes). Nothing of it was sent.
    #[error(
        "a chunk of {bytes} bytes is too large to send (at most {max}); use a smaller chunksize"
    )]
    TooLarge {
        /// The encoded size.
        bytes: usize,
        /// The largest size a frame carries.
        max: usize,
    },
    /// The pool's initializer failed in a worker; the pool cannot run tasks.
    #[error("{message}; the pool cannot run tasks")]
    InitializerFailed {
        /// Which worker, and how it ended.
        message: String,
    },
    /// `max_tasks_per_child(0)`.
    #[error("max_tasks_per_child must be at least 1")]
    ZeroMaxTasks,
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
    ///
    /// ```
    /// use common::pool::PoolError;
    /// use common::process::Signal;
    ///
    /// let died = PoolError::WorkerDied { pid: 42, exitcode: -9, index: 3 };
    /// assert_eq!(died.signal(), Some(Signal::SIGKILL));
    /// ```
    pub fn signal(&self) -> Option<crate::process::Signal> {
        match self {
            PoolError::WorkerDied { exitcode, .. } if *exitcode < 0 => {
                crate::process::Signal::from_number(-exitcode)
            }
            _ => None,
        }
    }
}

/// What a pool task takes and returns: a type that `serde` can send between
/// processes (`i64`, `String`, `Vec<f64>`, tuples, your `#[derive(Serialize,
/// Deserialize)]` structs). Implemented for every such type.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Point { x: f64, y: f64 }
///
/// fn norm(p: Point) -> f64 { (p.x * p.x + p.y * p.y).sqrt() }
///
/// let pool = common::pool::Pool::new(1)?;
/// assert_eq!(pool.map(norm, [Point { x: 3.0, y: 4.0 }])?, [5.0]);
/// # Ok::<(), common::pool::PoolError>(())
/// ```
pub trait Data: Serialize + DeserializeOwned + 'static {}

impl<T: Serialize + DeserializeOwned + 'static> Data for T {}

impl PoolError {
    /// The error of a batch whose first input is input `first` of its call.
    fn shifted(self, first: usize) -> PoolError {
        match self {
            PoolError::TaskFailed { index, message } => PoolError::TaskFailed {
                index: index + first,
                message,
            },
            PoolError::WorkerDied {
                pid,
                exitcode,
                index,
            } => PoolError::WorkerDied {
                pid,
                exitcode,
                index: index + first,
            },
            other => other,
        }
    }

    /// A copy of an error that a job keeps (so that `get_timeout` can give it again).
    fn replay(&self) -> PoolError {
        match self {
            PoolError::TaskFailed { index, message } => PoolError::TaskFailed {
                index: *index,
                message: message.clone(),
            },
            PoolError::WorkerDied {
                pid,
                exitcode,
                index,
            } => PoolError::WorkerDied {
                pid: *pid,
                exitcode: *exitcode,
                index: *index,
            },
            PoolError::TooLarge { bytes, max } => PoolError::TooLarge {
                bytes: *bytes,
                max: *max,
            },
            PoolError::InitializerFailed { message } => PoolError::InitializerFailed {
                message: message.clone(),
            },
            other => PoolError::Serialization(other.to_string()),
        }
    }
}

/// How a [`Pool`] is made (Python's `Pool(processes, initializer, maxtasksperchild)`).
///
/// ```
/// use common::pool::Pool;
///
/// fn setup() {
///     // ... open a file, seed a generator: once in each worker ...
/// }
///
/// let pool = Pool::builder().workers(2).initializer(setup).max_tasks_per_child(100).build()?;
/// assert_eq!(pool.workers(), 2);
/// # Ok::<(), common::pool::PoolError>(())
/// ```
#[must_use]
pub struct PoolBuilder {
    workers: Option<usize>,
    initializer: Option<Rc<dyn Fn()>>,
    max_tasks: Option<u64>,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("workers", &self.workers)
            .field("initializer", &self.initializer.is_some())
            .field("max_tasks", &self.max_tasks)
            .finish()
    }
}

impl PoolBuilder {
    /// How many workers (Python's `processes`); one per CPU if not set.
    ///
    /// ```
    /// let pool = common::pool::Pool::builder().workers(3).build()?;
    /// assert_eq!(pool.workers(), 3);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    pub fn workers(mut self, workers: usize) -> PoolBuilder {
        self.workers = Some(workers);
        self
    }

    /// A function each worker runs once, when it starts (Python's `initializer`). If it
    /// panics, the pool cannot work: calls fail with [`PoolError::InitializerFailed`]
    /// instead of forking workers for ever, as Python does.
    ///
    /// ```
    /// use common::pool::{Pool, PoolError};
    ///
    /// let pool = Pool::builder().workers(1).initializer(|| panic!("no config")).build()?;
    /// assert!(matches!(pool.map(common::workload::square, [1]),
    ///     Err(PoolError::InitializerFailed { .. })));
    /// # Ok::<(), PoolError>(())
    /// ```
    pub fn initializer(mut self, initializer: impl Fn() + 'static) -> PoolBuilder {
        self.initializer = Some(Rc::new(initializer));
        self
    }

    /// Replaces a worker after it has run `tasks` chunks (Python's `maxtasksperchild`).
    ///
    /// ```
    /// let pool = common::pool::Pool::builder().workers(1).max_tasks_per_child(1).build()?;
    /// let first = pool.apply(|_: ()| std::process::id(), ())?;
    /// let second = pool.apply(|_: ()| std::process::id(), ())?;
    /// assert_ne!(first, second, "a new worker for each task");
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    pub fn max_tasks_per_child(mut self, tasks: u64) -> PoolBuilder {
        self.max_tasks = Some(tasks);
        self
    }

    /// Forks the workers.
    ///
    /// ```
    /// assert!(common::pool::Pool::builder().workers(1).build().is_ok());
    /// ```
    ///
    /// # Errors
    /// [`PoolError::NoWorkers`], [`PoolError::ZeroMaxTasks`], or as [`Pool::new`].
    pub fn build(self) -> Result<Pool, PoolError> {
        let workers = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
        if workers == 0 {
            return Err(PoolError::NoWorkers);
        }
        if self.max_tasks == Some(0) {
            return Err(PoolError::ZeroMaxTasks);
        }
        let setup = Setup {
            initializer: self.initializer,
            max_tasks: self.max_tasks,
        };
        // Mapped before the workers are forked, so that they all see it.
        let arena = plain::Arena::new(workers)?;
        Ok(Pool {
            dispatcher: RefCell::new(Dispatcher::new(workers, setup, arena.slots())?),
            arena,
        })
    }
}

/// A pool of worker processes: Python's `multiprocessing.Pool`.
///
/// Dropping the pool terminates and reaps its workers (Python's `with Pool() as p:`).
/// Workers are daemonic: they die with the parent even when it is killed with SIGKILL.
///
/// ```
/// let pool = common::pool::Pool::new(2)?;
/// let squares = pool.map(common::workload::square, 0..4)?;
/// assert_eq!(squares, [0, 1, 4, 9]);
/// drop(pool); // terminates and reaps the workers
/// # Ok::<(), common::pool::PoolError>(())
/// ```
pub struct Pool {
    dispatcher: RefCell<Dispatcher>,
    /// The shared memory of the workers' progress and of `map_plain`.
    arena: plain::Arena,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.dispatcher.try_borrow() {
            Ok(d) => write!(f, "<Pool workers={} state={:?}>", d.worker_count(), d.state),
            Err(_) => f.write_str("<Pool (busy)>"),
        }
    }
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
        Pool::builder().workers(workers).build()
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
        Pool::builder().build()
    }

    /// A [`PoolBuilder`], for an initializer or `max_tasks_per_child`.
    ///
    /// ```
    /// let pool = common::pool::Pool::builder().workers(2).build()?;
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            workers: None,
            initializer: None,
            max_tasks: None,
        }
    }

    /// The number of workers.
    ///
    /// ```
    /// assert_eq!(common::pool::Pool::new(2)?.workers(), 2);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    pub fn workers(&self) -> usize {
        self.dispatcher.borrow().worker_count()
    }

    /// The workers' pids, in slot order (a replaced worker's slot gets the new pid).
    ///
    /// ```
    /// let pool = common::pool::Pool::new(2)?;
    /// let pids = pool.worker_pids();
    /// let seen: Vec<u32> = pool.map_chunked(|_: u8| std::process::id(), 0..8, 1)?;
    /// assert!(seen.iter().all(|pid| pids.contains(pid)));
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    pub fn worker_pids(&self) -> Vec<u32> {
        self.dispatcher.borrow().worker_pids()
    }

    fn default_chunksize(&self, inputs: usize) -> usize {
        inputs.div_ceil(4 * self.workers()).max(1)
    }

    /// Runs the callbacks of the jobs that completed, now that the dispatcher is free
    /// (a callback may call into the pool).
    fn run_callbacks(&self) {
        loop {
            let callback = self.dispatcher.borrow_mut().callbacks.pop();
            match callback {
                Some(callback) => callback(),
                None => return,
            }
        }
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
    /// let pool = Pool::new(2)?;
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
    pub fn map<T: Data, R: Data>(
        &self,
        f: fn(T) -> R,
        inputs: impl IntoIterator<Item = T>,
    ) -> Result<Vec<R>, PoolError> {
        let inputs: Vec<T> = inputs.into_iter().collect();
        let chunksize = self.default_chunksize(inputs.len());
        self.run_all(f, inputs, chunksize)
    }

    /// [`Pool::map`] with a chunksize of your choice (Python's `map(f, xs, chunksize)`).
    ///
    /// ```
    /// let pool = common::pool::Pool::new(2)?;
    /// let doubled = pool.map_chunked(|x: u32| x * 2, 0..7, 3)?;
    /// assert_eq!(doubled, [0, 2, 4, 6, 8, 10, 12]);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// [`PoolError::ZeroChunksize`], or as [`Pool::map`].
    pub fn map_chunked<T: Data, R: Data>(
        &self,
        f: fn(T) -> R,
        inputs: impl IntoIterator<Item = T>,
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError> {
        if chunksize == 0 {
            return Err(PoolError::ZeroChunksize);
        }
        self.run_all(f, inputs.into_iter().collect(), chunksize)
    }

    /// `f(a, b)` for every input pair, in order (Python's `pool.starmap`).
    ///
    /// ```
    /// let pool = common::pool::Pool::new(2)?;
    /// let sums = pool.starmap(|a: i32, b: i32| a + b, [(1, 2), (3, 4)])?;
    /// assert_eq!(sums, [3, 7]);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Pool::map`].
    pub fn starmap<A: Data, B: Data, R: Data>(
        &self,
        f: fn(A, B) -> R,
        inputs: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>, PoolError> {
        let inputs: Vec<(A, B)> = inputs.into_iter().collect();
        let chunksize = self.default_chunksize(inputs.len());
        self.run_all(f, inputs, chunksize)
    }

    /// [`Pool::starmap`] with a chunksize of your choice.
    ///
    /// ```
    /// let pool = common::pool::Pool::new(2)?;
    /// let products = pool.starmap_chunked(|a: i32, b: i32| a * b, [(1, 2), (3, 4), (5, 6)], 2)?;
    /// assert_eq!(products, [2, 12, 30]);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// [`PoolError::ZeroChunksize`], or as [`Pool::map`].
    pub fn starmap_chunked<A: Data, B: Data, R: Data>(
        &self,
        f: fn(A, B) -> R,
        inputs: impl IntoIterator<Item = (A, B)>,
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError> {
        if chunksize == 0 {
            return Err(PoolError::ZeroChunksize);
        }
        self.run_all(f, inputs.into_iter().collect(), chunksize)
    }

    /// Feeds every chunk to the workers and puts the results back in order, decoding
    /// each chunk straight into the output as soon as its turn comes.
    fn run_all<F: Task>(
        &self,
        f: F,
        inputs: Vec<F::Input>,
        chunksize: usize,
    ) -> Result<Vec<F::Output>, PoolError> {
        let total = inputs.len();
        let feeder = SliceFeeder {
            f,
            inputs,
            position: 0,
            chunksize,
        };
        let mut dispatcher = self.dispatcher.borrow_mut();
        let call = dispatcher.open(Box::new(feeder), JobKind::FailFast, None)?;
        let mut outputs = Vec::with_capacity(total);
        let result = dispatcher.take_in_order(call, |_, bytes| decode_append(bytes, &mut outputs));
        drop(dispatcher);
        self.run_callbacks();
        result.map(|()| outputs)
    }

    /// `f(input)` in a worker, waiting for the result (Python's `pool.apply`).
    ///
    /// ```
    /// let pool = common::pool::Pool::new(1)?;
    /// let worker = pool.apply(|_: ()| std::process::id(), ())?;
    /// assert_eq!(pool.worker_pids(), [worker]);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Pool::map`].
    pub fn apply<T: Data, R: Data>(&self, f: fn(T) -> R, input: T) -> Result<R, PoolError> {
        self.apply_async(f, input)?.get()
    }

    /// Sends `f(input)` to an idle worker at once and returns (Python's
    /// `pool.apply_async`); [`AsyncResult::get`] waits for the result.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// let pool = common::pool::Pool::new(2)?;
    /// let started = Instant::now();
    /// let pending = pool.apply_async(nap, 300)?;
    /// std::thread::sleep(Duration::from_millis(300)); // the parent works meanwhile
    /// assert_eq!(pending.get()?, 300);
    /// assert!(started.elapsed() < Duration::from_millis(550), "the two ran together");
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// [`PoolError::Closed`], [`PoolError::Serialization`].
    pub fn apply_async<T: Data, R: Data>(
        &self,
        f: fn(T) -> R,
        input: T,
    ) -> Result<AsyncResult<'_, R>, PoolError> {
        self.submit(f, vec![input], 1, decode_one::<R>, None)
    }

    /// [`Pool::apply_async`] with Python's `callback` and `error_callback`: one of them
    /// runs in this process once the result is in, during a later call into the pool
    /// or its handles (nothing runs in the background here).
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    ///
    /// let pool = common::pool::Pool::new(1)?;
    /// let seen = Rc::new(Cell::new(0));
    /// let on_result = Rc::clone(&seen);
    /// let pending = pool.apply_async_with(
    ///     common::workload::square,
    ///     7,
    ///     move |r: &i64| on_result.set(*r),
    ///     |e| eprintln!("failed: {e}"),
    /// )?;
    /// pending.wait();
    /// assert_eq!(seen.get(), 49);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Pool::apply_async`].
    pub fn apply_async_with<T: Data, R: Data>(
        &self,
        f: fn(T) -> R,
        input: T,
        callback: impl FnOnce(&R) + 'static,
        error_callback: impl FnOnce(&PoolError) + 'static,
    ) -> Result<AsyncResult<'_, R>, PoolError> {
        let hook = on_complete(decode_one::<R>, callback, error_callback);
        self.submit(f, vec![input], 1, decode_one::<R>, Some(hook))
    }

    /// [`Pool::map`] without waiting (Python's `pool.map_async`): the chunks go to idle
    /// workers at once; [`AsyncResult::get`] waits for all the results.
    ///
    /// ```
    /// let pool = common::pool::Pool::new(2)?;
    /// let pending = pool.map_async(common::workload::square, 0..4)?;
    /// assert_eq!(pending.get()?, [0, 1, 4, 9]);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Pool::apply_async`].
    pub fn map_async<T: Data, R: Data>(
        &self,
        f: fn(T) -> R,
        inputs: impl IntoIterator<Item = T>,
    ) -> Result<AsyncResult<'_, Vec<R>>, PoolError> {
        let inputs: Vec<T> = inputs.into_iter().collect();
        let chunksize = self.default_chunksize(inputs.len());
        self.submit(f, inputs, chunksize, decode_all::<R>, None)
    }

    /// [`Pool::map_async`] with Python's `callback` and `error_callback` (see
    /// [`Pool::apply_async_with`]).
    ///
    /// ```
    /// let pool = common::pool::Pool::new(2)?;
    /// let pending = pool.map_async_with(
    ///     common::workload::square,
    ///     0..3,
    ///     |all: &Vec<i64>| assert_eq!(all, &[0, 1, 4]),
    ///     |e| panic!("{e}"),
    /// )?;
    /// assert!(pending.wait_timeout(std::time::Duration::from_secs(10)));
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Pool::apply_async`].
    pub fn map_async_with<T: Data, R: Data>(
        &self,
        f: fn(T) -> R,
        inputs: impl IntoIterator<Item = T>,
        callback: impl FnOnce(&Vec<R>) + 'static,
        error_callback: impl FnOnce(&PoolError) + 'static,
    ) -> Result<AsyncResult<'_, Vec<R>>, PoolError> {
        let inputs: Vec<T> = inputs.into_iter().collect();
        let chunksize = self.default_chunksize(inputs.len());
        let hook = on_complete(decode_all::<R>, callback, error_callback);
        self.submit(f, inputs, chunksize, decode_all::<R>, Some(hook))
    }

    /// [`Pool::starmap`] without waiting (Python's `pool.starmap_async`).
    ///
    /// ```
    /// let pool = common::pool::Pool::new(2)?;
    /// let pending = pool.starmap_async(|a: u8, b: u8| a + b, [(1, 1), (2, 2)])?;
    /// assert_eq!(pending.get()?, [2, 4]);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Pool::apply_async`].
    pub fn starmap_async<A: Data, B: Data, R: Data>(
        &self,
        f: fn(A, B) -> R,
        inputs: impl IntoIterator<Item = (A, B)>,
    ) -> Result<AsyncResult<'_, Vec<R>>, PoolError> {
        let inputs: Vec<(A, B)> = inputs.into_iter().collect();
        let chunksize = self.default_chunksize(inputs.len());
        self.submit(f, inputs, chunksize, decode_all::<R>, None)
    }

    fn submit<F: Task, V>(
        &self,
        f: F,
        inputs: Vec<F::Input>,
        chunksize: usize,
        decode: fn(&Job) -> Result<V, PoolError>,
        hook: Option<OnComplete>,
    ) -> Result<AsyncResult<'_, V>, PoolError> {
        let feeder = SliceFeeder {
            f,
            inputs,
            position: 0,
            chunksize,
        };
        let call = self
            .dispatcher
            .borrow_mut()
            .open(Box::new(feeder), JobKind::FailFast, hook)?;
        self.run_callbacks();
        Ok(AsyncResult {
            pool: self,
            call,
            decode,
        })
    }

    /// The results of `f` over `inputs`, in order, as they come (Python's
    /// `pool.imap`, chunksize 1): the first is there as soon as its task is done. A
    /// failed task gives an `Err` in its place, and the results after it follow.
    /// Inputs are sent a few chunks ahead of the results, not all at once, so the
    /// input may be endless; `close()` then `join()` runs every input left (an endless
    /// one for ever, as in Python).
    ///
    /// ```
    /// let pool = common::pool::Pool::new(2)?;
    /// let first: Vec<i64> = pool
    ///     .imap(common::workload::square, 0..)? // endless
    ///     .take(3)
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(first, [0, 1, 4]);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// [`PoolError::Closed`]; each item is a `Result` of its own.
    pub fn imap<T: Data, R: Data, I>(
        &self,
        f: fn(T) -> R,
        inputs: I,
    ) -> Result<Imap<'_, R>, PoolError>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: 'static,
    {
        self.imap_with(f, inputs, 1, true)
    }

    /// [`Pool::imap`] with a chunksize of your choice (a failed task gives one `Err` in
    /// place of its whole chunk, as in Python).
    ///
    /// ```
    /// let pool = common::pool::Pool::new(2)?;
    /// let all: Vec<i64> = pool.imap_chunked(common::workload::square, 0..5, 2)?
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(all, [0, 1, 4, 9, 16]);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// [`PoolError::ZeroChunksize`], [`PoolError::Closed`].
    pub fn imap_chunked<T: Data, R: Data, I>(
        &self,
        f: fn(T) -> R,
        inputs: I,
        chunksize: usize,
    ) -> Result<Imap<'_, R>, PoolError>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: 'static,
    {
        if chunksize == 0 {
            return Err(PoolError::ZeroChunksize);
        }
        self.imap_with(f, inputs, chunksize, true)
    }

    /// The results of `f` over `inputs` in the order they finish (Python's
    /// `pool.imap_unordered`); failures come as `Err` items when they happen, and the
    /// iterator goes on.
    ///
    /// ```
    /// let pool = common::pool::Pool::new(2)?;
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
    pub fn imap_unordered<T: Data, R: Data, I>(
        &self,
        f: fn(T) -> R,
        inputs: I,
    ) -> Result<Imap<'_, R>, PoolError>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: 'static,
    {
        self.imap_with(f, inputs, 1, false)
    }

    /// [`Pool::imap_unordered`] with a chunksize of your choice.
    ///
    /// ```
    /// let pool = common::pool::Pool::new(2)?;
    /// let count = pool.imap_unordered_chunked(common::workload::square, 0..10, 3)?.count();
    /// assert_eq!(count, 10);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// [`PoolError::ZeroChunksize`], [`PoolError::Closed`].
    pub fn imap_unordered_chunked<T: Data, R: Data, I>(
        &self,
        f: fn(T) -> R,
        inputs: I,
        chunksize: usize,
    ) -> Result<Imap<'_, R>, PoolError>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: 'static,
    {
        if chunksize == 0 {
            return Err(PoolError::ZeroChunksize);
        }
        self.imap_with(f, inputs, chunksize, false)
    }

    fn imap_with<T: Data, R: Data, I>(
        &self,
        f: fn(T) -> R,
        inputs: I,
        chunksize: usize,
        ordered: bool,
    ) -> Result<Imap<'_, R>, PoolError>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: 'static,
    {
        let feeder = IterFeeder {
            f,
            inputs: inputs.into_iter(),
            chunksize,
        };
        let call = self.dispatcher.borrow_mut().open(
            Box::new(feeder),
            if ordered {
                JobKind::Ordered
            } else {
                JobKind::Unordered
            },
            None,
        )?;
        self.run_callbacks();
        Ok(Imap {
            pool: self,
            call,
            ordered,
            taken: 0,
            next_in_order: 0,
            ready: Vec::new().into_iter(),
            done: false,
        })
    }

    /// No more tasks may be sent (Python's `pool.close()`); what was sent still runs,
    /// `imap` inputs not yet sent included. Then call [`Pool::join`].
    ///
    /// ```
    /// use common::pool::{Pool, PoolError};
    ///
    /// let pool = Pool::new(2)?;
    /// pool.close();
    /// assert!(matches!(pool.map(common::workload::square, [1]), Err(PoolError::Closed)));
    /// pool.join()?;
    /// # Ok::<(), PoolError>(())
    /// ```
    pub fn close(&self) {
        let mut dispatcher = self.dispatcher.borrow_mut();
        if dispatcher.state == State::Running {
            dispatcher.state = State::Closed;
        }
    }

    /// Stops the workers at once (Python's `pool.terminate()`): SIGTERM, then SIGKILL
    /// for a worker still there a second later; reaps them. Results not yet collected
    /// are lost.
    ///
    /// ```
    /// let pool = common::pool::Pool::new(2)?;
    /// let pids = pool.worker_pids();
    /// pool.terminate();
    /// pool.join()?;
    /// assert!(pids.iter().all(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()));
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    pub fn terminate(&self) {
        self.dispatcher.borrow_mut().terminate();
    }

    /// Waits for every task sent (and every `imap` input), then for the workers to
    /// exit, and reaps them (Python's `pool.join()`). Results stay with their handles.
    ///
    /// ```
    /// use common::pool::{Pool, PoolError};
    ///
    /// let pool = Pool::new(2)?;
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
    pub fn join(&self) -> Result<(), PoolError> {
        let mut dispatcher = self.dispatcher.borrow_mut();
        let outcome = match dispatcher.state {
            State::Running => Err(PoolError::StillRunning),
            State::Terminated => Ok(()),
            State::Closed => dispatcher.join(),
        };
        drop(dispatcher);
        self.run_callbacks();
        outcome
    }
}

/// The job's one result (`apply`): the first output of its only chunk.
fn decode_one<R: DeserializeOwned>(job: &Job) -> Result<R, PoolError> {
    if let Some(failure) = job.first_failure() {
        return Err(failure.replay());
    }
    let Some(Ok(bytes)) = job.finished.get(&0) else {
        return Err(PoolError::Closed);
    };
    let mut outputs: Vec<R> =
        postcard::from_bytes(bytes).map_err(|e| PoolError::Serialization(e.to_string()))?;
    outputs
        .pop()
        .ok_or(PoolError::Serialization("an empty result".into()))
}

/// All the job's results, in order (`map_async`).
fn decode_all<R: DeserializeOwned>(job: &Job) -> Result<Vec<R>, PoolError> {
    if let Some(failure) = job.first_failure() {
        return Err(failure.replay());
    }
    let mut outputs = Vec::new();
    for outcome in job.finished.values() {
        match outcome {
            Ok(bytes) => decode_append(bytes, &mut outputs)?,
            Err(failure) => return Err(failure.replay()),
        }
    }
    Ok(outputs)
}

/// The completion hook that decodes a job's value and calls `callback` or
/// `error_callback` with it, once the pool is free.
fn on_complete<V: 'static>(
    decode: fn(&Job) -> Result<V, PoolError>,
    callback: impl FnOnce(&V) + 'static,
    error_callback: impl FnOnce(&PoolError) + 'static,
) -> OnComplete {
    Box::new(move |job: &Job| {
        let value = decode(job);
        Box::new(move || match value {
            Ok(value) => callback(&value),
            Err(error) => error_callback(&error),
        })
    })
}

/// A result on its way from the workers (Python's `AsyncResult`). It borrows its pool,
/// and dropping it frees its result.
///
/// The pool cannot go while a handle lives (dropping it would stop the workers the
/// handle waits for):
///
/// ```compile_fail
/// let pool = common::pool::Pool::new(1)?;
/// let pending = pool.apply_async(common::workload::square, 2)?;
/// drop(pool); // error: `pool` is still borrowed by `pending`
/// pending.get()?;
/// # Ok::<(), common::pool::PoolError>(())
/// ```
pub struct AsyncResult<'pool, R> {
    pool: &'pool Pool,
    call: u64,
    decode: fn(&Job) -> Result<R, PoolError>,
}

impl<R> std::fmt::Debug for AsyncResult<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<AsyncResult call={}>", self.call)
    }
}

impl<R> AsyncResult<'_, R> {
    /// Waits for the result (Python's `get()`).
    ///
    /// ```
    /// let pool = common::pool::Pool::new(1)?;
    /// assert_eq!(pool.apply_async(common::workload::square, 3)?.get()?, 9);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Pool::map`].
    pub fn get(self) -> Result<R, PoolError> {
        self.get_until(None)
    }

    /// Waits at most `timeout` for the result (Python's `get(timeout)`); it can be
    /// asked again, and gives the same result each time.
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
    /// let pool = Pool::new(1)?;
    /// let pending = pool.apply_async(nap, 5)?;
    /// assert!(matches!(pending.get_timeout(Duration::from_millis(20)), Err(PoolError::Timeout)));
    /// assert!(!pending.ready());
    /// # Ok::<(), PoolError>(())
    /// ```
    ///
    /// # Errors
    /// [`PoolError::Timeout`] when the time runs out, or as [`Pool::map`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, PoolError> {
        self.get_until(Instant::now().checked_add(timeout))
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<R, PoolError> {
        if !self.wait_until(deadline)? {
            return Err(PoolError::Timeout);
        }
        let dispatcher = self.pool.dispatcher.borrow();
        let job = dispatcher.jobs.get(&self.call).ok_or(PoolError::Closed)?;
        (self.decode)(job)
    }

    /// Whether the result has arrived (Python's `ready()`), without waiting.
    ///
    /// ```
    /// let pool = common::pool::Pool::new(1)?;
    /// let pending = pool.apply_async(common::workload::square, 3)?;
    /// pending.wait();
    /// assert!(pending.ready());
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    pub fn ready(&self) -> bool {
        self.wait_until(Some(Instant::now())).unwrap_or(true)
    }

    /// `Some(true)` if the result arrived and is not an error, `Some(false)` if it is
    /// one, `None` while it has not arrived (Python's `successful()`, which raises then).
    ///
    /// ```
    /// let pool = common::pool::Pool::new(1)?;
    /// let pending = pool.apply_async(|x: u8| x.checked_sub(1).expect("underflow"), 0)?;
    /// pending.wait();
    /// assert_eq!(pending.successful(), Some(false));
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    pub fn successful(&self) -> Option<bool> {
        if !self.ready() {
            return None;
        }
        let dispatcher = self.pool.dispatcher.borrow();
        let job = dispatcher.jobs.get(&self.call)?;
        Some(job.complete() && job.first_failure().is_none())
    }

    /// Waits until the result has arrived (Python's `wait()`).
    ///
    /// ```
    /// let pool = common::pool::Pool::new(1)?;
    /// let pending = pool.apply_async(common::workload::square, 3)?;
    /// pending.wait();
    /// assert!(pending.ready());
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    pub fn wait(&self) {
        let _ = self.wait_until(None);
    }

    /// Waits at most `timeout` for the result (Python's `wait(timeout)`); whether it
    /// has arrived.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = common::pool::Pool::new(1)?;
    /// let pending = pool.apply_async(common::workload::square, 3)?;
    /// assert!(pending.wait_timeout(Duration::from_secs(10)));
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Instant::now().checked_add(timeout))
            .unwrap_or(true)
    }

    /// Turns the pool's loop until the job is complete (`true`) or `deadline` passes
    /// (`false`).
    fn wait_until(&self, deadline: Option<Instant>) -> Result<bool, PoolError> {
        let outcome = self.wait_in_loop(deadline);
        self.pool.run_callbacks();
        outcome
    }

    fn wait_in_loop(&self, deadline: Option<Instant>) -> Result<bool, PoolError> {
        let mut dispatcher = self.pool.dispatcher.borrow_mut();
        loop {
            let job = dispatcher.jobs.get(&self.call).ok_or(PoolError::Closed)?;
            if job.complete() {
                return Ok(true);
            }
            if dispatcher.state == State::Terminated {
                return Err(PoolError::Closed);
            }
            let timeout = match deadline {
                None => None,
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        // One last look, without waiting.
                        dispatcher.pump(Some(Duration::ZERO))?;
                        let job = dispatcher.jobs.get(&self.call).ok_or(PoolError::Closed)?;
                        return Ok(job.complete());
                    }
                    Some(deadline - now)
                }
            };
            dispatcher.pump(timeout)?;
        }
    }
}

impl<R> Drop for AsyncResult<'_, R> {
    fn drop(&mut self) {
        if let Ok(mut dispatcher) = self.pool.dispatcher.try_borrow_mut() {
            dispatcher.close_job(self.call);
        }
    }
}

/// The results of [`Pool::imap`] or [`Pool::imap_unordered`], as an iterator. It
/// borrows its pool; dropping it drops the results still to come.
///
/// ```
/// let pool = common::pool::Pool::new(2)?;
/// let mut results = pool.imap(common::workload::square, 0..3)?;
/// assert_eq!(results.next().transpose()?, Some(0));
/// assert_eq!(results.collect::<Result<Vec<_>, _>>()?, [1, 4]);
/// # Ok::<(), common::pool::PoolError>(())
/// ```
pub struct Imap<'pool, R> {
    pool: &'pool Pool,
    call: u64,
    ordered: bool,
    /// How many chunks have been handed out, and (in order) the next one's number.
    taken: u64,
    next_in_order: u64,
    ready: std::vec::IntoIter<R>,
    done: bool,
}

impl<R> std::fmt::Debug for Imap<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<Imap call={} ordered={}>", self.call, self.ordered)
    }
}

impl<R: Data> Iterator for Imap<'_, R> {
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(result) = self.ready.next() {
                return Some(Ok(result));
            }
            if self.done {
                return None;
            }
            let item = self.next_chunk();
            self.pool.run_callbacks();
            match item {
                Ok(true) => {}
                Ok(false) => self.done = true,
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

impl<R: Data> Imap<'_, R> {
    /// Moves the next chunk's results into `ready`: `Ok(false)` when there are no
    /// more, `Err` for a chunk that failed (the next call goes on after it).
    fn next_chunk(&mut self) -> Result<bool, PoolError> {
        let mut dispatcher = self.pool.dispatcher.borrow_mut();
        loop {
            let job = dispatcher
                .jobs
                .get_mut(&self.call)
                .ok_or(PoolError::Closed)?;
            let key = if self.ordered {
                job.finished
                    .contains_key(&self.next_in_order)
                    .then_some(self.next_in_order)
            } else {
                job.arrivals.pop_front()
            };
            if let Some(outcome) = key.and_then(|key| job.finished.remove(&key)) {
                self.taken += 1;
                self.next_in_order += 1;
                let bytes = outcome?;
                let mut chunk = Vec::new();
                let decoded = decode_append(&bytes, &mut chunk);
                dispatcher.recycle(bytes);
                decoded?;
                self.ready = chunk.into_iter();
                return Ok(true);
            }
            if job.exhausted && self.taken == job.fed {
                return Ok(false);
            }
            if dispatcher.state == State::Terminated {
                self.done = true;
                return Err(PoolError::Closed);
            }
            dispatcher.pump(None)?;
        }
    }
}

impl<R> Drop for Imap<'_, R> {
    fn drop(&mut self) {
        if let Ok(mut dispatcher) = self.pool.dispatcher.try_borrow_mut() {
            dispatcher.close_job(self.call);
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

    #[test]
    fn more_workers_than_memory_can_count_is_an_error_not_a_panic() {
        // Refused before anything is forked: the workers' progress slots alone would not
        // fit in the address space.
        for workers in [usize::MAX, usize::MAX / 8 + 1] {
            let outcome = Pool::new(workers);
            assert!(
                matches!(outcome, Err(PoolError::Shm(ShmError::TooLarge { len, .. })) if len == workers),
                "{workers}: {outcome:?}"
            );
        }
    }
}
