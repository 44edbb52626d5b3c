//! The bytes of a [`Queue`](super::Queue): records in a ring of shared memory, and a
//! state that changes with one store.
//!
//! A record is an 8-byte header (its length) and its bytes, padded to 8. Positions
//! only grow (the ring index is the position modulo the capacity); a record that does
//! not fit before the end of the ring is preceded by a wrap marker and starts at the
//! next turn. An empty ring starts its next record at a turn, so any record no larger
//! than the capacity fits once the ring is empty.
//!
//! Every change is made by the holder of the queue's lock, in two steps: first the
//! bytes (a record written past the tail, which nobody reads yet), then the state —
//! head, tail, count and the task counters — written whole into the spare of two
//! copies and made current with one atomic store. A process killed at any instant
//! leaves either the old state or the new one, never a mix: the next holder (told by
//! the robust lock that its holder died) finds a consistent queue, and a half-written
//! record is simply past the tail.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::shm::Zeroed;

/// The length a record header holds to say "the rest of this turn is empty".
const WRAP: u32 = u32::MAX;
/// The size of a record header.
const HEADER: u64 = 8;

/// A queue's state: everything that one commit changes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct State {
    /// Position of the oldest record.
    pub(super) head: u64,
    /// Position after the newest record.
    pub(super) tail: u64,
    /// Records between head and tail.
    pub(super) count: u64,
    /// Items ever put (a `JoinableQueue`'s unfinished tasks are `puts - done`).
    pub(super) puts: u64,
    /// Tasks ever marked done.
    pub(super) done: u64,
}

/// One copy of the state, in shared memory.
#[repr(C)]
struct StateCopy([AtomicU64; 5]);

impl StateCopy {
    fn load(&self) -> State {
        let [head, tail, count, puts, done] = self.0.each_ref().map(|w| w.load(Ordering::Acquire));
        State {
            head,
            tail,
            count,
            puts,
            done,
        }
    }

    fn store(&self, state: State) {
        let words = [state.head, state.tail, state.count, state.puts, state.done];
        for (word, value) in self.0.iter().zip(words) {
            word.store(value, Ordering::Release);
        }
    }
}

/// The shared header of a queue, before its ring.
#[repr(C)]
pub(super) struct Header {
    /// Which of `copies` is the state (0 or 1).
    current: AtomicU32,
    copies: [StateCopy; 2],
    /// Bumped by every put: the futex of getters waiting for an item.
    pub(super) items: AtomicU32,
    /// Bumped by every get: the futex of putters waiting for room.
    pub(super) room: AtomicU32,
    /// Bumped when the last unfinished task is done: the futex of `join`.
    pub(super) finished: AtomicU32,
    /// Processes asleep (or about to be) on each of the futexes above.
    pub(super) getters: AtomicU32,
    pub(super) putters: AtomicU32,
    pub(super) joiners: AtomicU32,
}

// SAFETY: atomics only, valid at zero (an empty queue: every position 0), no pointers.
unsafe impl Zeroed for Header {}

/// A record's length that cannot be, found where a record should start.
#[derive(Debug)]
pub(super) struct Corrupt {
    pub(super) at: u64,
    pub(super) len: u64,
}

/// The ring of one queue: the header, and `capacity` bytes at `bytes`.
pub(super) struct Ring<'a> {
    pub(super) header: &'a Header,
    bytes: *mut u8,
    capacity: u64,
}

/// Rounds `len` up to a multiple of 8.
fn padded(len: u64) -> u64 {
    len.div_ceil(8) * 8
}

/// The bytes a record of `len` bytes takes, header included.
pub(super) fn footprint(len: usize) -> u64 {
    HEADER + padded(len as u64)
}

impl<'a> Ring<'a> {
    /// # Safety
    /// `bytes` points to `capacity` bytes of shared memory, a multiple of 8 bytes
    /// long and 8-aligned, mapped while the ring is used; whoever calls the methods
    /// that read or write records holds the queue's lock.
    pub(super) unsafe fn new(header: &'a Header, bytes: *mut u8, capacity: usize) -> Ring<'a> {
        Ring {
            header,
            bytes,
            capacity: capacity as u64,
        }
    }

    /// The current state. Without the lock, a snapshot that may be stale by the time
    /// it is used (good enough for `qsize`, which Python calls approximate too).
    pub(super) fn state(&self) -> State {
        let current = self.header.current.load(Ordering::Acquire) as usize & 1;
        self.header.copies[current].load()
    }

    /// Makes `state` the current state, with one store.
    pub(super) fn commit(&self, state: State) {
        let spare = (self.header.current.load(Ordering::Acquire) as usize & 1) ^ 1;
        self.header.copies[spare].store(state);
        self.header.current.store(spare as u32, Ordering::Release);
    }

    fn at(&self, position: u64) -> *mut u8 {
        // SAFETY: `position % capacity` is within the ring (see `new`).
        unsafe { self.bytes.add((position % self.capacity) as usize) }
    }

    /// Writes a record of `bytes` past the tail of `state`, and returns the state
    /// that makes it the newest item, or `None` when there is no room for it now.
    pub(super) fn push(&self, state: State, bytes: &[u8]) -> Option<State> {
        let need = footprint(bytes.len());
        let mut state = state;
        if state.count == 0 {
            // Empty: start at a turn, so that any record up to the capacity fits.
            state.tail = state.tail.next_multiple_of(self.capacity);
            state.head = state.tail;
        }
        let left_in_turn = self.capacity - state.tail % self.capacity;
        let wrap = if left_in_turn < need { left_in_turn } else { 0 };
        let new_tail = state.tail + wrap + need;
        if new_tail - state.head > self.capacity {
            return None;
        }
        // SAFETY: the header positions are 8-aligned and inside the ring, with `need`
        // bytes after the record's start before the end of the turn; the region past
        // the tail is read by nobody until the commit, and only the lock holder writes.
        unsafe {
            if wrap > 0 {
                self.at(state.tail).cast::<u32>().write(WRAP);
            }
            let start = self.at(state.tail + wrap);
            start.cast::<u32>().write(bytes.len() as u32);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), start.add(HEADER as usize), bytes.len());
        }
        Some(State {
            tail: new_tail,
            count: state.count + 1,
            puts: state.puts + 1,
            ..state
        })
    }

    /// Hands the oldest record's bytes to `read` and returns its result with the state
    /// that drops the record; `None` when the ring is empty.
    pub(super) fn pop<R>(
        &self,
        state: State,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<(R, State)>, Corrupt> {
        if state.count == 0 {
            return Ok(None);
        }
        let mut head = state.head;
        // SAFETY: committed records lie between head and tail, written whole before
        // their commit; only the lock holder reads or writes them. Every length read
        // is checked against the turn before the bytes behind it are touched.
        unsafe {
            let mut len = self.at(head).cast::<u32>().read();
            if len == WRAP {
                head += self.capacity - head % self.capacity;
                len = self.at(head).cast::<u32>().read();
            }
            let len = u64::from(len);
            let left_in_turn = self.capacity - head % self.capacity;
            if HEADER + len > left_in_turn || head + footprint(len as usize) > state.tail {
                return Err(Corrupt { at: head, len });
            }
            let bytes =
                std::slice::from_raw_parts(self.at(head).add(HEADER as usize), len as usize);
            let result = read(bytes);
            Ok(Some((
                result,
                State {
                    head: head + footprint(len as usize),
                    count: state.count - 1,
                    ..state
                },
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeroed_header() -> Header {
        // SAFETY: `Header` is `Zeroed`: all zeros is a valid value.
        unsafe { std::mem::zeroed() }
    }

    fn ring_in<'a>(memory: &'a mut [u64], header: &'a Header) -> Ring<'a> {
        let capacity = memory.len() * 8;
        // SAFETY: `memory` is 8-aligned, `capacity` bytes long and borrowed for the
        // ring's life; the tests run in one thread, which stands for the lock holder.
        unsafe { Ring::new(header, memory.as_mut_ptr().cast(), capacity) }
    }

    fn pop_all(ring: &Ring<'_>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some((bytes, state)) = ring.pop(ring.state(), <[u8]>::to_vec).unwrap() {
            ring.commit(state);
            out.push(bytes);
        }
        out
    }

    #[test]
    fn records_wrap_around_the_turn_and_come_back_in_order() {
        let header = zeroed_header();
        let mut memory = vec![0u64; 8]; // 64 bytes
        let ring = ring_in(&mut memory, &header);
        for round in 0..20u8 {
            let a = vec![round; 13]; // 24 bytes with its header
            let b = vec![round + 100; 5]; // 16 bytes
            let state = ring.push(ring.state(), &a).expect("room for a");
            ring.commit(state);
            let state = ring.push(ring.state(), &b).expect("room for b");
            ring.commit(state);
            assert_eq!(pop_all(&ring), [a, b]);
        }
        let state = ring.state();
        assert_eq!((state.puts, state.count), (40, 0));
    }

    #[test]
    fn a_full_ring_says_so_and_an_empty_one_takes_a_record_as_large_as_itself() {
        let header = zeroed_header();
        let mut memory = vec![0u64; 8];
        let ring = ring_in(&mut memory, &header);
        let state = ring.push(ring.state(), &[1; 30]).unwrap(); // 40 bytes
        ring.commit(state);
        assert!(ring.push(ring.state(), &[2; 30]).is_none(), "no room");
        assert_eq!(pop_all(&ring).len(), 1);
        let state = ring.push(ring.state(), &[3; 56]).expect("the whole ring");
        ring.commit(state);
        assert_eq!(pop_all(&ring), [vec![3; 56]]);
    }

    #[test]
    fn an_uncommitted_record_is_not_there_and_a_bad_length_is_caught() {
        let header = zeroed_header();
        let mut memory = vec![0u64; 8];
        let ring = ring_in(&mut memory, &header);
        let _never_committed = ring.push(ring.state(), &[9; 8]).unwrap();
        assert!(ring.pop(ring.state(), |_| ()).unwrap().is_none());
        let state = ring.push(ring.state(), &[7; 8]).unwrap();
        ring.commit(state);
        memory[0] = 1000; // a length past the turn
        let ring = ring_in(&mut memory, &header);
        assert!(ring.pop(ring.state(), |_| ()).is_err());
    }
}
