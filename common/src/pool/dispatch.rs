//! The parent's side of the pool: one event loop over the workers' pipes, and the
//! lifecycle of every chunk of work.
//!
//! A call (`map`, `apply_async`, `imap`, ...) is a [`Job`]; its inputs are cut into
//! chunks, each of which goes through:
//!
//! ```text
//! fed (encoded from the job's Feeder) -> queued -> sent (to one worker)
//!     -> done (reply with outputs) | failed (a task panicked) | lost (worker died)
//! ```
//!
//! A chunk whose worker died before starting it (the chunk was not fully delivered, or
//! the worker's progress slot never named one of its inputs) is not lost work: it goes
//! back to the front of the queue for the replacement, and nobody is told. One whose
//! worker died while running it fails with [`PoolError::WorkerDied`], naming the input.
//!
//! The parent is single-threaded (it must stay so to fork replacements), so nothing
//! runs in the background: the loop turns whenever the pool or one of its handles is
//! called. Submitting work turns it once at once, so idle workers start right away.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::PoolError;
use super::wire::{REPLY_HEADER, ReplyHeader, STATUS_OK, TASK_HEADER, TaskHeader};
use super::worker::{INITIALIZING, Slots, Task, WorkerSetup, runner_of, worker_loop};
use crate::process::Process;
use crate::sys;

/// The least room the parent makes for a read from a worker's pipe. The buffer grows
/// (doubling) as replies need it, so a pool whose replies are small never touches more:
/// a fixed 1 MiB per worker made `process_pool` peak at 6.6 MiB.
const READ_SIZE: usize = 64 << 10;

/// Grows pipes to this size where the system allows, so that a chunk seldom waits.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// How long `terminate` gives a worker after SIGTERM before it sends SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_secs(1);

/// Where a job's inputs come from, a chunk at a time.
pub(super) trait Feeder {
    /// Appends the next chunk's inputs, encoded, to `frame` and returns how many it
    /// holds: 0 when there are no more.
    fn next_batch(&mut self, frame: &mut Vec<u8>) -> Result<usize, PoolError>;
    /// The address of the runner for the job's task type.
    fn runner(&self) -> u64;
    /// The address of the job's task.
    fn task(&self) -> u64;
}

/// Inputs already in a vector (`map`): chunks are encoded straight from its slices.
pub(super) struct SliceFeeder<F: Task> {
    pub(super) f: F,
    pub(super) inputs: Vec<F::Input>,
    pub(super) position: usize,
    pub(super) chunksize: usize,
}

impl<F: Task> Feeder for SliceFeeder<F> {
    fn next_batch(&mut self, frame: &mut Vec<u8>) -> Result<usize, PoolError> {
        let end = self
            .position
            .saturating_add(self.chunksize)
            .min(self.inputs.len());
        let count = end - self.position;
        if count > 0 {
            encode_into(&self.inputs[self.position..end], frame)?;
            self.position = end;
        }
        Ok(count)
    }
    fn runner(&self) -> u64 {
        runner_of::<F>() as usize as u64
    }
    fn task(&self) -> u64 {
        self.f.address() as u64
    }
}

/// Inputs from an iterator (`imap`), taken a chunk at a time.
pub(super) struct IterFeeder<F, I> {
    pub(super) f: F,
    pub(super) inputs: I,
    pub(super) chunksize: usize,
}

impl<F: Task, I: Iterator<Item = F::Input>> Feeder for IterFeeder<F, I> {
    fn next_batch(&mut self, frame: &mut Vec<u8>) -> Result<usize, PoolError> {
        let batch: Vec<F::Input> = self.inputs.by_ref().take(self.chunksize).collect();
        if !batch.is_empty() {
            encode_into(&batch, frame)?;
        }
        Ok(batch.len())
    }
    fn runner(&self) -> u64 {
        runner_of::<F>() as usize as u64
    }
    fn task(&self) -> u64 {
        self.f.address() as u64
    }
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

/// What runs when a job completes: given the job, it decodes the result and returns
/// the closure to call once the dispatcher is no longer borrowed (a callback may call
/// into the pool).
pub(super) type OnComplete = Box<dyn FnOnce(&Job) -> Box<dyn FnOnce()>>;

/// One call's chunks and what became of them.
pub(super) struct Job {
    /// Finished chunks, by number: their encoded outputs, or their error.
    pub(super) finished: BTreeMap<u64, Result<Vec<u8>, PoolError>>,
    /// The numbers of finished chunks in the order they finished (kept for
    /// `imap_unordered` only).
    pub(super) arrivals: VecDeque<u64>,
    keep_arrivals: bool,
    feeder: Option<Box<dyn Feeder>>,
    /// How many chunks have been fed (encoded and queued), and how many inputs.
    pub(super) fed: u64,
    /// How many chunks have finished (handed-out ones included).
    completed: u64,
    fed_inputs: usize,
    /// No more chunks will be fed.
    pub(super) exhausted: bool,
    /// `map`, `apply`: the first failure ends the job.
    fail_fast: bool,
    on_complete: Option<OnComplete>,
}

impl Job {
    /// Whether every chunk has finished, or (fail-fast) one has failed.
    pub(super) fn complete(&self) -> bool {
        (self.exhausted && self.completed == self.fed)
            || (self.fail_fast && self.first_failure().is_some())
    }

    /// The first failed chunk's error, in chunk order.
    pub(super) fn first_failure(&self) -> Option<&PoolError> {
        self.finished
            .values()
            .find_map(|outcome| outcome.as_ref().err())
    }

    fn finish(&mut self, chunk: u64, outcome: Result<Vec<u8>, PoolError>) {
        self.finished.insert(chunk, outcome);
        if self.keep_arrivals {
            self.arrivals.push_back(chunk);
        }
        self.completed += 1;
    }
}

/// How a job's results are taken.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum JobKind {
    /// `map`, `apply`, the `_async` calls: all together, and the first failure ends it.
    FailFast,
    /// `imap`: in order, a failure in its place.
    Ordered,
    /// `imap_unordered`: as they finish.
    Unordered,
}

/// A chunk on its way: queued, or given to a worker.
struct Chunk {
    call: u64,
    chunk: u64,
    /// The index of the chunk's first input in its call.
    start: usize,
    frame: Vec<u8>,
}

/// What the parent knows about one worker.
struct Worker {
    process: Process,
    /// Parent's end of the task pipe; `None` once the worker was told to stop.
    tasks: Option<File>,
    results: File,
    /// The chunk given to this worker, until its reply comes, and how much of its
    /// frame has been written.
    current: Option<Chunk>,
    written: usize,
    inbox: Vec<u8>,
    /// How many bytes at the start of `inbox` have been read and not yet parsed.
    filled: usize,
    /// Chunks it has finished; with `max_tasks`, it retires (takes no more) at the
    /// limit, then exits and is replaced.
    done: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum State {
    Running,
    Closed,
    Terminated,
}

/// How the pool's workers are made.
pub(super) struct Setup {
    pub(super) initializer: Option<Rc<dyn Fn()>>,
    pub(super) max_tasks: Option<u64>,
}

/// The parent's whole view of the pool.
pub(super) struct Dispatcher {
    workers: Vec<Worker>,
    progress: Slots,
    queue: VecDeque<Chunk>,
    pub(super) jobs: HashMap<u64, Job>,
    next_call: u64,
    pub(super) state: State,
    /// Why the pool cannot run tasks any more (its initializer failed).
    pub(super) broken: Option<String>,
    setup: Setup,
    /// Byte buffers to reuse: large fresh buffers cost a page fault per 4 KiB.
    spare: Vec<Vec<u8>>,
    /// Callbacks of completed jobs, to run once the dispatcher is released.
    pub(super) callbacks: Vec<Box<dyn FnOnce()>>,
}

impl Dispatcher {
    /// Forks `workers` workers, who record their progress in `progress`.
    pub(super) fn new(
        workers: usize,
        setup: Setup,
        progress: Slots,
    ) -> Result<Dispatcher, PoolError> {
        let mut dispatcher = Dispatcher {
            workers: Vec::with_capacity(workers),
            progress,
            queue: VecDeque::new(),
            jobs: HashMap::new(),
            next_call: 0,
            state: State::Running,
            broken: None,
            setup,
            spare: Vec::new(),
            callbacks: Vec::new(),
        };
        for slot in 0..workers {
            let worker = dispatcher.spawn(slot)?;
            dispatcher.workers.push(worker);
        }
        Ok(dispatcher)
    }

    pub(super) fn worker_count(&self) -> usize {
        self.workers.len()
    }

    pub(super) fn worker_pids(&self) -> Vec<u32> {
        self.workers
            .iter()
            .filter_map(|w| w.process.pid())
            .collect()
    }

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
        let setup = WorkerSetup {
            tasks: task_read,
            results: result_write,
            slots: self.progress.clone(),
            worker: slot,
            initializer: self.setup.initializer.clone(),
            max_tasks: self.setup.max_tasks,
        };
        let mut process = Process::new(move || {
            for fd in parents_ends {
                let _ = nix::unistd::close(fd);
            }
            worker_loop(setup)
        })
        .daemon(true);
        let name = process.name().replacen("Process", "ForkPoolWorker", 1);
        process = process.with_name(name);
        process.start()?;
        let results = File::from(result_read);
        sys::set_pipe_blocking(results.as_fd(), false)?;
        let tasks = File::from(task_write);
        sys::set_pipe_blocking(tasks.as_fd(), false)?;
        Ok(Worker {
            process,
            tasks: Some(tasks),
            results,
            current: None,
            written: 0,
            inbox: Vec::new(),
            filled: 0,
            done: 0,
        })
    }

    /// An empty buffer, reused when one is spare.
    fn spare_buffer(&mut self) -> Vec<u8> {
        let mut buffer = self.spare.pop().unwrap_or_default();
        buffer.clear();
        buffer
    }

    /// Keeps `buffer` for reuse (a few per worker at most).
    pub(super) fn recycle(&mut self, buffer: Vec<u8>) {
        if self.spare.len() < 2 * self.workers.len() + 2 {
            self.spare.push(buffer);
        }
    }

    /// Opens a job fed by `feeder` and turns the loop once, so that idle workers start
    /// on it at once. Returns the job's number.
    pub(super) fn open(
        &mut self,
        feeder: Box<dyn Feeder>,
        kind: JobKind,
        on_complete: Option<OnComplete>,
    ) -> Result<u64, PoolError> {
        if let Some(reason) = &self.broken {
            return Err(PoolError::InitializerFailed {
                message: reason.clone(),
            });
        }
        if self.state != State::Running {
            return Err(PoolError::Closed);
        }
        let call = self.next_call;
        self.next_call += 1;
        self.jobs.insert(
            call,
            Job {
                finished: BTreeMap::new(),
                arrivals: VecDeque::new(),
                feeder: Some(feeder),
                fed: 0,
                completed: 0,
                fed_inputs: 0,
                exhausted: false,
                fail_fast: kind == JobKind::FailFast,
                keep_arrivals: kind == JobKind::Unordered,
                on_complete,
            },
        );
        self.pump(Some(Duration::ZERO))?;
        Ok(call)
    }

    /// Forgets job `call`: its queued chunks go, and replies still to come for it are
    /// dropped on arrival.
    pub(super) fn close_job(&mut self, call: u64) {
        if let Some(job) = self.jobs.remove(&call) {
            for bytes in job.finished.into_values().flatten() {
                self.recycle(bytes);
            }
        }
        self.queue.retain(|chunk| chunk.call != call);
    }

    /// Runs job `call` (fail-fast) to its end, handing each chunk's reply to `take` in
    /// chunk order as soon as its turn comes, then closes the job. The first failure,
    /// of a chunk or of `take`, ends it.
    pub(super) fn take_in_order(
        &mut self,
        call: u64,
        mut take: impl FnMut(u64, &[u8]) -> Result<(), PoolError>,
    ) -> Result<(), PoolError> {
        let mut taken = 0u64;
        let result = loop {
            let Some(job) = self.jobs.get_mut(&call) else {
                break Err(PoolError::Closed);
            };
            if let Some(failure) = job.first_failure() {
                break Err(failure.replay());
            }
            if let Some(Ok(reply)) = job.finished.remove(&taken) {
                let outcome = take(taken, &reply);
                self.recycle(reply);
                taken += 1;
                match outcome {
                    Ok(()) => continue,
                    Err(error) => break Err(error),
                }
            }
            if job.exhausted && taken == job.fed {
                break Ok(());
            }
            if self.state == State::Terminated {
                break Err(PoolError::Closed);
            }
            if let Err(error) = self.pump(None) {
                break Err(error);
            }
        };
        self.close_job(call);
        result
    }

    /// After job `call` was closed: waits until no worker runs a chunk of it any more,
    /// and drops its chunks still queued (a dead worker's may have come back), so that
    /// nothing it would write is still to come.
    pub(super) fn settle(&mut self, call: u64) -> Result<(), PoolError> {
        loop {
            self.queue.retain(|chunk| chunk.call != call);
            let running = self.workers.iter().any(|worker| {
                worker
                    .current
                    .as_ref()
                    .is_some_and(|chunk| chunk.call == call)
            });
            if !running || self.state == State::Terminated {
                return Ok(());
            }
            self.pump(None)?;
        }
    }

    /// Feeds each job one more chunk if fewer than two per worker are on their way
    /// (every chunk it has, with `drain`). Returns whether a job could take more, or
    /// a feeder ran out (its job may be complete now): either way, the caller should
    /// not wait for a pipe.
    fn feed(&mut self, drain: bool) -> bool {
        let window = 2 * self.workers.len() as u64;
        let calls: Vec<u64> = self.jobs.keys().copied().collect();
        let mut wants_more = false;
        for call in calls {
            while let Some(job) = self.jobs.get(&call) {
                let in_flight = job.fed - job.completed;
                if job.exhausted || (!drain && in_flight >= window) {
                    break;
                }
                let mut frame = self.spare_buffer();
                frame.resize(TASK_HEADER, 0);
                let job = self.jobs.get_mut(&call).expect("just seen");
                let feeder = job
                    .feeder
                    .as_mut()
                    .expect("a job not exhausted has a feeder");
                let fed = feeder.next_batch(&mut frame).and_then(|count| {
                    if count > 0 {
                        TaskHeader::write(
                            &mut frame,
                            call,
                            job.fed,
                            job.fed_inputs as u64,
                            feeder.runner(),
                            feeder.task(),
                        )?;
                    }
                    Ok(count)
                });
                match fed {
                    Ok(0) => {
                        job.exhausted = true;
                        job.feeder = None;
                        wants_more = true;
                        self.recycle(frame);
                        self.check_complete(call);
                    }
                    Ok(count) => {
                        self.queue.push_back(Chunk {
                            call,
                            chunk: job.fed,
                            start: job.fed_inputs,
                            frame,
                        });
                        job.fed += 1;
                        job.fed_inputs += count;
                    }
                    Err(error) => {
                        // The chunk that cannot be sent fails in its place; no more follow.
                        wants_more = true;
                        let chunk = job.fed;
                        job.fed += 1;
                        job.exhausted = true;
                        job.feeder = None;
                        job.finish(chunk, Err(error));
                        self.recycle(frame);
                        self.check_complete(call);
                    }
                }
                if !drain {
                    let job = &self.jobs[&call];
                    wants_more |= !job.exhausted && job.fed - job.completed < window;
                    break;
                }
            }
        }
        wants_more
    }

    /// Runs job `call`'s completion hook if it has just completed.
    fn check_complete(&mut self, call: u64) {
        let Some(job) = self.jobs.get_mut(&call) else {
            return;
        };
        if job.on_complete.is_some() && job.complete() {
            let hook = job.on_complete.take().expect("checked");
            let callback = hook(job);
            self.callbacks.push(callback);
        }
    }

    /// Gives queued chunks to idle workers.
    fn dispatch(&mut self) {
        for worker in &mut self.workers {
            let retiring = self.setup.max_tasks.is_some_and(|max| worker.done >= max);
            if worker.current.is_none() && worker.tasks.is_some() && !retiring {
                if let Some(chunk) = self.queue.pop_front() {
                    worker.current = Some(chunk);
                    worker.written = 0;
                }
            }
        }
    }

    /// One turn of the loop: feed, hand queued chunks to idle workers, wait (at most
    /// `timeout`, `None`: until something happens) until a pipe is ready, write what
    /// can be written, read what came, replace dead workers.
    pub(super) fn pump(&mut self, timeout: Option<Duration>) -> Result<(), PoolError> {
        self.pump_with(timeout, false)
    }

    fn pump_with(&mut self, timeout: Option<Duration>, drain: bool) -> Result<(), PoolError> {
        let wants_more = self.feed(drain);
        self.dispatch();
        self.flush_all()?;
        let mut fds = Vec::new();
        let mut owners = Vec::new();
        for (index, worker) in self.workers.iter().enumerate() {
            fds.push((worker.results.as_fd(), libc::POLLIN));
            owners.push(index);
            let pending = worker
                .current
                .as_ref()
                .is_some_and(|chunk| worker.written < chunk.frame.len());
            if let (true, Some(tasks)) = (pending, &worker.tasks) {
                fds.push((tasks.as_fd(), libc::POLLOUT));
                owners.push(index);
            }
        }
        // While a job can take more chunks, only look: encoding the next chunk
        // overlaps with the workers' work. (And a job whose feeder just ran out may be
        // complete: its caller must see that before anything else happens.)
        let timeout = if wants_more {
            Duration::ZERO
        } else {
            timeout.unwrap_or(Duration::from_secs(3600))
        };
        let ready = sys::poll(&fds, timeout)?;
        drop(fds);
        let mut dead = Vec::new();
        for index in ready {
            let slot = owners[index];
            if !self.read_replies(slot)? {
                dead.push(slot);
            }
        }
        self.flush_all()?;
        dead.dedup();
        for slot in dead {
            self.replace(slot)?;
        }
        Ok(())
    }

    /// Writes as much of every worker's current frame as its pipe takes without
    /// blocking. SIGPIPE is held back meanwhile: a write to a dead worker's pipe then
    /// fails with EPIPE, whatever the program does with the signal, and the death shows
    /// on the result pipe.
    fn flush_all(&mut self) -> Result<(), PoolError> {
        let pending = self.workers.iter().any(|w| {
            w.current
                .as_ref()
                .is_some_and(|chunk| w.written < chunk.frame.len())
        });
        if !pending {
            return Ok(());
        }
        let sigpipe = sys::SigpipeHeldBack::new();
        for worker in &mut self.workers {
            let (Some(tasks), Some(chunk)) = (&mut worker.tasks, &worker.current) else {
                continue;
            };
            while worker.written < chunk.frame.len() {
                match tasks.write(&chunk.frame[worker.written..]) {
                    Ok(0) => break,
                    Ok(n) => worker.written += n,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                        sigpipe.consume();
                        break;
                    }
                    Err(error) => return Err(error.into()),
                }
            }
        }
        Ok(())
    }

    /// Reads what worker `slot` wrote and files complete replies under their jobs.
    /// Returns `false` when its pipe has closed: the worker is gone.
    fn read_replies(&mut self, slot: usize) -> Result<bool, PoolError> {
        let mut alive = true;
        let worker = &mut self.workers[slot];
        loop {
            // `inbox` stays initialised up to its length; `filled` bytes of it are data.
            if worker.inbox.len() - worker.filled < READ_SIZE {
                let grown = (worker.filled + READ_SIZE).max(2 * worker.inbox.len());
                worker.inbox.resize(grown, 0);
            }
            match worker.results.read(&mut worker.inbox[worker.filled..]) {
                Ok(0) => {
                    alive = false;
                    break;
                }
                Ok(got) => worker.filled += got,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error.into()),
            }
        }
        let mut used = 0;
        loop {
            let worker = &mut self.workers[slot];
            if worker.filled - used < REPLY_HEADER {
                break;
            }
            let reply = ReplyHeader::read(&worker.inbox[used..]);
            let len = reply.len as usize;
            if worker.filled - used < REPLY_HEADER + len {
                break;
            }
            let body = used + REPLY_HEADER..used + REPLY_HEADER + len;
            used = body.end;
            let start = worker.current.as_ref().map_or(0, |chunk| chunk.start);
            if let Some(chunk) = worker.current.take() {
                let frame = chunk.frame;
                self.recycle(frame);
            }
            let worker = &mut self.workers[slot];
            worker.done += 1;
            if !self.jobs.contains_key(&reply.call) {
                continue; // a job closed since: its results are not wanted
            }
            let outcome = if reply.status == STATUS_OK {
                let mut bytes = self.spare_buffer();
                bytes.extend_from_slice(&self.workers[slot].inbox[body]);
                Ok(bytes)
            } else {
                Err(PoolError::TaskFailed {
                    index: start + reply.offset as usize,
                    message: String::from_utf8_lossy(&self.workers[slot].inbox[body]).into_owned(),
                })
            };
            if let Some(job) = self.jobs.get_mut(&reply.call) {
                job.finish(reply.chunk, outcome);
            }
            self.check_complete(reply.call);
        }
        let worker = &mut self.workers[slot];
        worker.inbox.copy_within(used..worker.filled, 0);
        worker.filled -= used;
        Ok(alive)
    }

    /// Deals with the end of the worker in `slot` (its result pipe closed): files what
    /// became of its chunk, and forks its replacement.
    fn replace(&mut self, slot: usize) -> Result<(), PoolError> {
        let worker = &mut self.workers[slot];
        let pid = worker.process.pid().unwrap_or(0);
        let exitcode = worker.process.join()?;
        let current = worker.current.take();
        let delivered = current
            .as_ref()
            .is_some_and(|chunk| worker.written == chunk.frame.len());
        let at = self.progress.get(slot);
        self.progress.set(slot, 0);
        if at == INITIALIZING {
            // The initializer failed: every worker would do the same. Fail every job
            // now rather than fork replacements for ever.
            let message = format!(
                "the pool's initializer failed in worker {pid} ({})",
                super::describe_death(exitcode)
            );
            self.broken = Some(message.clone());
            self.queue.clear();
            let calls: Vec<u64> = self.jobs.keys().copied().collect();
            for call in calls {
                let job = self.jobs.get_mut(&call).expect("listed");
                let chunk = job.fed;
                job.fed += 1;
                job.exhausted = true;
                job.feeder = None;
                job.finish(
                    chunk,
                    Err(PoolError::InitializerFailed {
                        message: message.clone(),
                    }),
                );
                self.check_complete(call);
            }
            self.terminate();
            return Ok(());
        }
        if let Some(chunk) = current {
            if at == 0 || !delivered {
                // It never started this chunk: not lost work. The replacement takes it.
                self.queue.push_front(chunk);
            } else {
                let error = PoolError::WorkerDied {
                    pid,
                    exitcode,
                    index: at as usize - 1,
                };
                if let Some(job) = self.jobs.get_mut(&chunk.call) {
                    job.finish(chunk.chunk, Err(error));
                }
                self.check_complete(chunk.call);
                self.recycle(chunk.frame);
            }
        }
        if self.state == State::Terminated {
            return Ok(());
        }
        // Closed or not, the replacement takes tasks: a closed pool still runs the
        // chunks it has (`open` is what refuses new ones).
        self.workers[slot] = self.spawn(slot)?;
        Ok(())
    }

    /// Runs every chunk of every job to its end (feeding them all, however many), then
    /// tells the workers to stop and reaps them.
    pub(super) fn join(&mut self) -> Result<(), PoolError> {
        loop {
            let busy = !self.queue.is_empty()
                || self.workers.iter().any(|w| w.current.is_some())
                || self.jobs.values().any(|job| !job.exhausted);
            if !busy || self.state == State::Terminated {
                break;
            }
            self.pump_with(None, true)?;
        }
        // Tell each worker to stop with a frame of its own rather than by closing the
        // pipe: a child forked since the pool started holds a copy of the pipe's
        // writing end, and the worker would never see the pipe close.
        let sigpipe = sys::SigpipeHeldBack::new();
        for worker in &mut self.workers {
            if let Some(mut tasks) = worker.tasks.take() {
                let _ = sys::set_pipe_blocking(tasks.as_fd(), true);
                if tasks.write_all(&TaskHeader::stop()).is_err() {
                    sigpipe.consume();
                }
            }
        }
        drop(sigpipe);
        for worker in &self.workers {
            worker.process.join()?;
        }
        self.state = State::Terminated;
        Ok(())
    }

    /// Stops every worker now: SIGTERM, then SIGKILL for one still there after
    /// [`TERMINATE_GRACE`]; reaps them all.
    pub(super) fn terminate(&mut self) {
        if self.state == State::Terminated && self.workers.iter().all(|w| w.tasks.is_none()) {
            return;
        }
        self.state = State::Terminated;
        for worker in &mut self.workers {
            worker.tasks = None;
            let _ = worker.process.terminate();
        }
        let deadline = Instant::now() + TERMINATE_GRACE;
        for worker in &self.workers {
            let left = deadline.saturating_duration_since(Instant::now());
            if matches!(worker.process.join_timeout(left), Ok(None)) {
                let _ = worker.process.kill();
                let _ = worker.process.join();
            }
        }
        self.queue.clear();
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.terminate();
    }
}
