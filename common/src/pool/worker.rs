//! All that runs in a pool worker, after the fork: the loop that reads task frames and
//! writes replies, and the code that turns a function's address back into a function.
//!
//! A task is a plain function (`fn(T) -> R`), sent by address: valid in the worker
//! because the worker is a copy of the parent, the same binary mapped at the same
//! addresses. With it goes the address of a [`Runner`], `run_chunk::<F>` for the task's
//! type `F`, which knows how to decode the inputs and encode the outputs.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Data;
use super::wire::{REPLY_HEADER, ReplyHeader, STATUS_FAILED, STATUS_OK, TASK_HEADER, TaskHeader};
use crate::shm::Segment;
use crate::sys;
use crate::timeline::{self, What};

/// A function a worker can run on one input: implemented for plain function pointers.
pub(super) trait Task: Copy + 'static {
    type Input: Data;
    type Output: Data;
    fn call(self, input: Self::Input) -> Self::Output;
    fn address(self) -> usize;
    /// # Safety
    /// `address` must come from [`Task::address`] on a value of the same type, in this
    /// process or in the process it was forked from.
    unsafe fn from_address(address: usize) -> Self;
}

impl<T: Data, R: Data> Task for fn(T) -> R {
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

impl<A: Data, B: Data, R: Data> Task for fn(A, B) -> R {
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
/// progress), and returns the reply frame, header room included. Monomorphised per task
/// type; the parent sends its address.
pub(super) type Runner = fn(usize, &[u8], &Progress) -> Result<Vec<u8>, Failure>;

/// The runner for tasks of type `F`.
pub(super) fn runner_of<F: Task>() -> Runner {
    run_chunk::<F>
}

/// Why a chunk failed in a worker: the offset of the input in the chunk and a message.
pub(super) struct Failure {
    offset: u64,
    message: String,
}

impl Failure {
    /// The chunk cannot run at all: `message` says why.
    pub(super) fn cannot_run(message: String) -> Failure {
        Failure { offset: 0, message }
    }

    /// The input at `offset` of the chunk panicked (its message is the last panic's).
    pub(super) fn panicked_at(offset: u64) -> Failure {
        Failure {
            offset,
            message: take_panic_message(),
        }
    }
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
    progress.begin(inputs.len());
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
    // Room for the usual size up front, after the reply's header.
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

/// Where each worker records what it is doing, so that the parent can tell, when a
/// worker dies, which input it was on: its slot holds `start + offset + 1` while it
/// runs a chunk, [`INITIALIZING`] while it runs the pool's initializer, and 0 between
/// chunks.
///
/// One `u64` a worker, at the start of the pool's arena (`plain::Arena`): one shared
/// segment for the pool, not two (a segment costs nine system calls to make).
#[derive(Clone)]
pub(super) struct Slots {
    /// The arena's segment; the slots are its first `count` words, reserved.
    segment: Arc<Segment>,
    count: usize,
}

impl Slots {
    /// The first `count` words of `segment`.
    ///
    /// # Safety
    /// The segment's first `count * 8` bytes must be reserved, and used for nothing
    /// but these slots for as long as the segment lives.
    pub(super) unsafe fn new(segment: Arc<Segment>, count: usize) -> Slots {
        Slots { segment, count }
    }

    fn slot(&self, worker: usize) -> &AtomicU64 {
        assert!(worker < self.count, "worker {worker} of {}", self.count);
        // SAFETY: `worker` is a valid slot (just checked); the segment is page-aligned,
        // so every slot is aligned for u64; its first `count` words are reserved for the
        // slots alone (the contract of `new`) and mapped while `self.segment` lives. A
        // worker is the only writer of its slot, and the parent reads it: atomics are
        // the sound view of memory that other processes write.
        unsafe { AtomicU64::from_ptr(self.segment.as_ptr().cast::<u64>().add(worker)) }
    }

    /// What `worker` last recorded.
    pub(super) fn get(&self, worker: usize) -> u64 {
        self.slot(worker).load(Ordering::Relaxed)
    }

    /// Records `value` for `worker` (a relaxed store is a plain store: cheap enough for
    /// every input).
    pub(super) fn set(&self, worker: usize, value: u64) {
        self.slot(worker).store(value, Ordering::Relaxed);
    }
}

/// A worker's own view of its slot, and the first input of the chunk it runs.
pub(super) struct Progress {
    /// This worker's slot, found once: [`Progress::record`] runs for every input, and
    /// finding the slot there (a bounds check, and the segment's address through the
    /// `shared_memory` crate, which does not inline) cost more than the store:
    /// `map_plain(square)` spent 43% of its workers' time on it.
    slot: NonNull<AtomicU64>,
    /// Keeps the slot's segment mapped.
    _slots: Slots,
    start: u64,
}

/// A worker's progress while it runs the initializer.
pub(super) const INITIALIZING: u64 = u64::MAX;

impl Progress {
    fn new(slots: Slots, worker: usize) -> Progress {
        // The slot is in the shared mapping, not in `slots`: moving `slots` into the
        // struct leaves the pointer valid.
        let slot = NonNull::from(slots.slot(worker));
        Progress {
            slot,
            _slots: slots,
            start: 0,
        }
    }

    #[inline]
    fn store(&self, value: u64) {
        // SAFETY: `slot` came from `Slots::slot` (bounds-checked) and points into the
        // segment that `self._slots` keeps mapped; an atomic is sound to share.
        let slot = unsafe { self.slot.as_ref() };
        slot.store(value, Ordering::Relaxed);
    }

    /// Records that this worker is at input `offset` of its chunk: one plain store.
    #[inline]
    pub(super) fn record(&self, offset: u64) {
        self.store(self.start + offset + 1);
    }

    /// Notes on the timeline that this worker begins a chunk of `count` inputs.
    pub(super) fn begin(&self, count: usize) {
        timeline::note(What::ChunkStarted {
            first: self.start,
            count: count as u64,
        });
    }
}

/// What a worker needs, moved into its closure before the fork.
pub(super) struct WorkerSetup {
    pub(super) tasks: OwnedFd,
    pub(super) results: OwnedFd,
    pub(super) slots: Slots,
    pub(super) worker: usize,
    pub(super) initializer: Option<Rc<dyn Fn()>>,
    /// Exit after this many chunks (Python's `maxtasksperchild`).
    pub(super) max_tasks: Option<u64>,
}

/// The loop a worker runs until told to stop, its task pipe closes, or it has done its
/// `max_tasks`.
pub(super) fn worker_loop(setup: WorkerSetup) -> io::Result<()> {
    panic::set_hook(Box::new(|info| {
        let message = info.to_string();
        LAST_PANIC.with(|last| *last.borrow_mut() = message);
    }));
    let mut progress = Progress::new(setup.slots, setup.worker);
    if let Some(initializer) = &setup.initializer {
        progress.store(INITIALIZING);
        if panic::catch_unwind(AssertUnwindSafe(|| initializer())).is_err() {
            // The slot stays at INITIALIZING: the parent reads it as "the initializer
            // failed" when it sees this worker die.
            return Err(io::Error::other(take_panic_message()));
        }
        progress.store(0);
    }
    // A worker allocates and frees buffers of the same large size for every chunk:
    // keep freed memory for reuse instead of paying a page fault per 4 KiB again.
    sys::keep_freed_memory();
    let mut tasks = File::from(setup.tasks);
    let mut results = File::from(setup.results);
    let mut header = [0u8; TASK_HEADER];
    let mut payload = Vec::new();
    let mut done = 0u64;
    while setup.max_tasks.is_none_or(|max| done < max) {
        match tasks.read_exact(&mut header) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error),
        }
        let task = TaskHeader::read(&header);
        if task.runner == 0 {
            return Ok(());
        }
        payload.resize(task.len as usize, 0);
        tasks.read_exact(&mut payload)?;
        // SAFETY: the parent sent the address of a `Runner` (`run_chunk::<F>`) of this
        // binary, which this forked worker maps at the same address.
        let runner = unsafe { std::mem::transmute::<usize, Runner>(task.runner as usize) };
        progress.start = task.start;
        let outcome = runner(task.task as usize, &payload, &progress);
        progress.store(0);
        timeline::note(What::ChunkEnded { first: task.start });
        let reply = match outcome {
            Ok(mut reply) => ReplyHeader::write(&mut reply, task.call, task.chunk, STATUS_OK, 0)
                .map(|()| reply)
                .map_err(|error| Failure {
                    offset: 0,
                    message: format!("cannot send the results: {error}"),
                }),
            Err(failure) => Err(failure),
        };
        let reply = reply.unwrap_or_else(|failure| {
            let mut reply = vec![0; REPLY_HEADER];
            reply.extend_from_slice(failure.message.as_bytes());
            reply.truncate(REPLY_HEADER + 64 * 1024);
            let _ = ReplyHeader::write(
                &mut reply,
                task.call,
                task.chunk,
                STATUS_FAILED,
                failure.offset,
            );
            reply
        });
        results.write_all(&reply)?;
        done += 1;
    }
    Ok(())
}
