//! The plain-data path of the Pool: `map_plain`, for inputs and outputs that are
//! [`Plain`] (numbers, byte arrays, `#[repr(C)]` structs of them).
//!
//! No input or output goes through a pipe, and nothing is encoded: the pool maps an
//! *arena* of shared memory before it forks its workers (so every worker, replacements
//! included, sees it at the same address). The parent copies a chunk's inputs into it
//! when it feeds the chunk, and the chunk's task frame carries three numbers only:
//! where its inputs are, where its outputs go, how many. A worker reads its inputs
//! there and writes its outputs there, recording its progress as for any chunk, so
//! that a death names its input and a panic its offset; its reply is a bare header.
//! The parent copies a chunk's outputs out as soon as it and those before it are done,
//! so its copying overlaps the workers' work.
//!
//! The arena's first page holds the workers' progress slots (see `worker::Slots`). After
//! it come 64 MiB of address space for the plain path, but memory is only reserved (in
//! `/dev/shm`, where a full device is an error, not a SIGBUS) for what a call needs, the
//! first time it needs it. A call with more inputs than fit is done in batches.

use std::cell::Cell;
use std::mem::{align_of, size_of};
use std::os::fd::OwnedFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use super::dispatch::{Feeder, JobKind};
use super::wire::REPLY_HEADER;
use super::worker::{Failure, Progress, Runner, Slots};
use super::{Pool, PoolError};
use crate::shm::{Plain, Segment, ShmError};
use crate::sys;

/// The arena's address space.
pub(super) const ARENA_BYTES: usize = 64 << 20;

/// Where the outputs of a batch start after its inputs: a cache line's alignment.
const OUTPUT_ALIGN: usize = 64;

/// The shared memory of the pool: the workers' progress [`Slots`] in its first
/// page(s), then the plain path's inputs and outputs.
pub(super) struct Arena {
    segment: Arc<Segment>,
    fd: OwnedFd,
    /// How many progress slots the segment starts with.
    workers: usize,
    /// Where the plain path's bytes start: after the slots, on a page boundary.
    data_at: usize,
    /// How many bytes from the start are reserved.
    reserved: Cell<usize>,
}

impl Arena {
    /// Maps the arena with room for the progress slots of `workers` workers, and
    /// reserves the slots.
    pub(super) fn new(workers: usize) -> Result<Arena, PoolError> {
        const PAGE: usize = 4096;
        let size = workers
            .checked_mul(size_of::<u64>())
            .and_then(|bytes| bytes.checked_next_multiple_of(PAGE))
            .and_then(|data_at| Some((data_at, data_at.checked_add(ARENA_BYTES)?)));
        let (data_at, size) = size.ok_or(ShmError::TooLarge {
            len: workers,
            element_size: size_of::<u64>(),
        })?;
        let (segment, fd) = Segment::unreserved(size)?;
        let arena = Arena {
            segment: Arc::new(segment),
            fd,
            workers,
            data_at,
            reserved: Cell::new(0),
        };
        arena.reserve_from_start(data_at)?;
        Ok(arena)
    }

    /// The workers' progress slots.
    pub(super) fn slots(&self) -> Slots {
        // SAFETY: `new` reserved the first `data_at` bytes, `workers` words at least,
        // and the plain path only uses the bytes after them.
        unsafe { Slots::new(Arc::clone(&self.segment), self.workers) }
    }

    /// Makes sure the first `len` bytes of the plain path's room are reserved.
    fn reserve(&self, len: usize) -> Result<(), PoolError> {
        self.reserve_from_start(self.data_at + len)
    }

    /// Makes sure the first `len` bytes of the segment are reserved.
    fn reserve_from_start(&self, len: usize) -> Result<(), PoolError> {
        if len > self.reserved.get() {
            sys::reserve(&self.fd, len).map_err(|code| ShmError::Create { code })?;
            self.reserved.set(len);
        }
        Ok(())
    }

    /// The first byte of the plain path's room (page-aligned).
    fn base(&self) -> *mut u8 {
        // SAFETY: `data_at` is within the mapping, which is `data_at + ARENA_BYTES`
        // bytes long.
        unsafe { self.segment.as_ptr().add(self.data_at) }
    }
}

/// Where the outputs of a batch of `count` inputs of type `T` start.
fn outputs_at<T>(count: usize) -> usize {
    (count * size_of::<T>()).next_multiple_of(OUTPUT_ALIGN)
}

/// How many inputs of type `T` with outputs of type `R` fit in the arena at once.
fn batch_capacity<T, R>() -> usize {
    let per_item = size_of::<T>() + size_of::<R>();
    (ARENA_BYTES - OUTPUT_ALIGN) / per_item.max(1)
}

/// A plain chunk's frame payload: inputs' address, outputs' address, count.
const DESCRIPTOR: usize = 24;

/// Feeds the chunks of one batch: copies a chunk's inputs into the arena, and sends
/// the descriptor of its ranges there.
struct PlainFeeder<T, R> {
    task: u64,
    /// The batch's inputs, in the caller's memory.
    source: *const T,
    /// Where the batch's inputs and outputs go in the arena.
    inputs: *mut T,
    outputs: *mut R,
    count: usize,
    position: usize,
    chunksize: usize,
}

impl<T: Plain, R: Plain> Feeder for PlainFeeder<T, R> {
    fn next_batch(&mut self, frame: &mut Vec<u8>) -> Result<usize, PoolError> {
        let end = self.position.saturating_add(self.chunksize).min(self.count);
        let count = end - self.position;
        if count > 0 {
            // SAFETY: `source` holds `self.count` inputs and outlives the job (the call
            // closes the job before it returns, and the job owns this feeder); the
            // arena has room for them (reserved by the call), and no worker reads this
            // range before the frame below is sent.
            let (inputs, outputs) = unsafe {
                let inputs = self.inputs.add(self.position);
                std::ptr::copy_nonoverlapping(self.source.add(self.position), inputs, count);
                (inputs, self.outputs.add(self.position))
            };
            for word in [inputs as u64, outputs as u64, count as u64] {
                frame.extend_from_slice(&word.to_le_bytes());
            }
            self.position = end;
        }
        Ok(count)
    }
    fn runner(&self) -> u64 {
        run_plain_chunk::<T, R> as Runner as usize as u64
    }
    fn task(&self) -> u64 {
        self.task
    }
}

/// Runs a plain chunk in a worker: `f` over the inputs the descriptor points to,
/// straight into the outputs it points to.
fn run_plain_chunk<T: Plain, R: Plain>(
    task: usize,
    payload: &[u8],
    progress: &Progress,
) -> Result<Vec<u8>, Failure> {
    let word = |i: usize| -> usize {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&payload[i * 8..i * 8 + 8]);
        u64::from_le_bytes(bytes) as usize
    };
    if payload.len() != DESCRIPTOR {
        return Err(Failure::cannot_run(format!(
            "a plain chunk's frame holds {} bytes, not {DESCRIPTOR}",
            payload.len()
        )));
    }
    let (inputs, outputs, count) = (word(0), word(1), word(2));
    // SAFETY: the parent sent the address of an `fn(T) -> R` of this binary, which
    // this forked worker maps at the same address.
    let f = unsafe { std::mem::transmute::<usize, fn(T) -> R>(task) };
    // SAFETY: the descriptor points into the pool's arena, mapped at the same address
    // in this worker (it was mapped before the fork); the parent wrote `count` inputs
    // there and touches neither range until this chunk's reply comes; no other
    // worker is given an overlapping range. `T` and `R` are `Plain`: any bits are
    // valid values, and both ranges are aligned for their type.
    let (inputs, outputs) = unsafe {
        (
            std::slice::from_raw_parts(inputs as *const T, count),
            std::slice::from_raw_parts_mut(outputs as *mut R, count),
        )
    };
    progress.begin(count);
    let mut offset = 0;
    let ran = panic::catch_unwind(AssertUnwindSafe(|| {
        for (output, &input) in outputs.iter_mut().zip(inputs) {
            progress.record(offset as u64);
            *output = f(input);
            offset += 1;
        }
    }));
    match ran {
        Ok(()) => Ok(vec![0; REPLY_HEADER]),
        Err(_) => Err(Failure::panicked_at(offset as u64)),
    }
}

impl Pool {
    /// [`Pool::map`] for plain data: `f(x)` for every input, in order, with the inputs
    /// and outputs passed through shared memory instead of pipes, and not encoded at
    /// all. Same results, same errors (a worker's death names its input); many times
    /// faster for small tasks. The chunksize is Python's default.
    ///
    /// ```
    /// let pool = common::pool::Pool::new(2)?;
    /// let inputs: Vec<i64> = (0..100_000).collect();
    /// let squares = pool.map_plain(common::workload::square, &inputs)?;
    /// assert_eq!(squares[99_999], 99_999 * 99_999);
    /// assert_eq!(squares, pool.map(common::workload::square, inputs)?);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Pool::map`]; [`PoolError::Shm`] when `/dev/shm` has no room for the batch.
    pub fn map_plain<T: Plain, R: Plain>(
        &self,
        f: fn(T) -> R,
        inputs: &[T],
    ) -> Result<Vec<R>, PoolError> {
        let chunksize = self.default_chunksize(inputs.len());
        self.map_plain_chunked(f, inputs, chunksize)
    }

    /// [`Pool::map_plain`] with a chunksize of your choice.
    ///
    /// ```
    /// let pool = common::pool::Pool::new(2)?;
    /// let halves = pool.map_plain_chunked(|x: f64| x / 2.0, &[1.0, 2.0, 3.0], 2)?;
    /// assert_eq!(halves, [0.5, 1.0, 1.5]);
    /// # Ok::<(), common::pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// [`PoolError::ZeroChunksize`], or as [`Pool::map_plain`].
    pub fn map_plain_chunked<T: Plain, R: Plain>(
        &self,
        f: fn(T) -> R,
        inputs: &[T],
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError> {
        if chunksize == 0 {
            return Err(PoolError::ZeroChunksize);
        }
        const {
            assert!(align_of::<T>() <= OUTPUT_ALIGN && align_of::<R>() <= OUTPUT_ALIGN);
        }
        let mut outputs: Vec<R> = Vec::with_capacity(inputs.len());
        for (batch_number, batch) in inputs.chunks(batch_capacity::<T, R>()).enumerate() {
            let first = batch_number * batch_capacity::<T, R>();
            self.run_plain_batch(f, batch, chunksize, &mut outputs)
                .map_err(|error| error.shifted(first))?;
        }
        Ok(outputs)
    }

    /// Runs one batch that fits in the arena, appending its outputs to `outputs`.
    fn run_plain_batch<T: Plain, R: Plain>(
        &self,
        f: fn(T) -> R,
        batch: &[T],
        chunksize: usize,
        outputs: &mut Vec<R>,
    ) -> Result<(), PoolError> {
        let arena = &self.arena;
        let outputs_at = outputs_at::<T>(batch.len());
        arena.reserve(outputs_at + batch.len() * size_of::<R>())?;
        let base = arena.base();
        // SAFETY: within the arena (reserved just above); page-aligned, and the outputs
        // at a multiple of OUTPUT_ALIGN, so both aligned for their type.
        let (inputs_in_arena, outputs_in_arena) =
            unsafe { (base.cast::<T>(), base.add(outputs_at).cast::<R>()) };
        let feeder = PlainFeeder {
            task: f as usize as u64,
            source: batch.as_ptr(),
            inputs: inputs_in_arena,
            outputs: outputs_in_arena,
            count: batch.len(),
            position: 0,
            chunksize,
        };
        let mut dispatcher = self.dispatcher.borrow_mut();
        let call = dispatcher.open(Box::new(feeder), JobKind::FailFast, None)?;
        let result = dispatcher.take_in_order(call, |chunk, _| {
            let start = chunk as usize * chunksize;
            let end = start.saturating_add(chunksize).min(batch.len());
            // SAFETY: chunk `chunk` has come back: its worker wrote these outputs
            // (aligned `R`s) and writes there no more.
            let written =
                unsafe { std::slice::from_raw_parts(outputs_in_arena.add(start), end - start) };
            outputs.extend_from_slice(written);
            Ok(())
        });
        // The arena is used again by the next batch or call: no worker may still be
        // writing into it.
        let settled = dispatcher.settle(call);
        drop(dispatcher);
        self.run_callbacks();
        result?;
        settled
    }
}
