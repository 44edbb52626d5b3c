//! The bytes of a [`Queue`](super::Queue): records in a ring of shared memory, written
//! by producers and read by consumers at the same time, each side's change made
//! current with one store.
//!
//! A record is an 8-byte header (its length) and its bytes, padded to 8. Positions
//! only grow (modulo 2^40; the ring index is the position modulo the capacity, a
//! power of two); a record that does not fit before the end of the ring is preceded
//! by a wrap marker and starts at the next turn. A record at most half the capacity
//! fits in an empty ring wherever its turn stands, so it never waits forever.
//!
//! Two sides, two locks: producers (holding the put lock) write a record past the
//! tail, where no consumer reads, then publish the new tail; consumers (holding the
//! get lock) read the record at the head, where no producer writes, then publish the
//! new head. So a put and a get copy their bytes at the same time. Each side's state
//! is one 64-bit word — its position (40 bits) and how many records it has passed
//! (24 bits) — published with one atomic store: a process killed at any instant leaves
//! its side either before its change or after it, never half-way. The next holder of
//! that side's robust lock finds a consistent queue, and a half-written record is
//! simply past the tail.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::shm::Zeroed;

/// The length a record header holds to say "the rest of this turn is empty".
const WRAP: u32 = u32::MAX;
/// The size of a record header.
const HEADER: u64 = 8;
/// Bits of a side's word that count records.
const COUNT_BITS: u32 = 24;
/// Records counted modulo this: a queue holds fewer (see [`MAX_CAPACITY`]).
pub(super) const COUNT_MODULUS: u64 = 1 << COUNT_BITS;
/// Positions are kept modulo this (a multiple of every capacity).
const POSITION_MODULUS: u64 = 1 << (64 - COUNT_BITS);
/// The largest ring: its records (8 bytes at least) can be counted in 24 bits.
pub(super) const MAX_CAPACITY: usize = 1 << 26;

/// One side's state: where it is, and how many records it has passed (both wrapping).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Side {
    pub(super) position: u64,
    pub(super) count: u64,
}

impl Side {
    fn unpack(word: u64) -> Side {
        Side {
            position: word >> COUNT_BITS,
            count: word & (COUNT_MODULUS - 1),
        }
    }

    fn pack(self) -> u64 {
        (self.position % POSITION_MODULUS) << COUNT_BITS | (self.count % COUNT_MODULUS)
    }
}

/// `later - earlier` for wrapping positions.
fn distance(earlier: u64, later: u64) -> u64 {
    later.wrapping_sub(earlier) % POSITION_MODULUS
}

/// `puts - gets` for wrapping counts: how many records are in the ring (or, with
/// `done` for `gets`, how many tasks are unfinished).
pub(super) fn between(earlier: u64, later: u64) -> u64 {
    later.wrapping_sub(earlier) % COUNT_MODULUS
}

/// The shared header of a queue, before its ring.
#[repr(C)]
pub(super) struct Header {
    /// The producers' side: the tail, and the records ever put.
    tail: AtomicU64,
    /// The consumers' side: the head, and the records ever taken.
    head: AtomicU64,
    /// Tasks marked done (a `JoinableQueue`), counted as the sides are.
    pub(super) done: AtomicU64,
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
    header: &'a Header,
    bytes: *mut u8,
    capacity: u64,
}

/// Rounds `len` up to a multiple of 8.
fn padded(len: u64) -> u64 {
    len.div_ceil(8) * 8
}

/// The bytes a record of `len` bytes takes, header included. The queue refuses a
/// record that takes more than half the ring (see the module doc).
pub(super) fn footprint(len: usize) -> u64 {
    HEADER + padded(len as u64)
}

impl<'a> Ring<'a> {
    /// # Safety
    /// `bytes` points to `capacity` bytes of shared memory, 8-aligned, mapped while
    /// the ring is used; `capacity` is a power of two from 64 to [`MAX_CAPACITY`].
    /// Whoever calls [`push`](Ring::push) holds the put lock, whoever calls
    /// [`pop`](Ring::pop) the get lock.
    pub(super) unsafe fn new(header: &'a Header, bytes: *mut u8, capacity: usize) -> Ring<'a> {
        Ring {
            header,
            bytes,
            capacity: capacity as u64,
        }
    }

    /// The producers' side now.
    pub(super) fn tail(&self) -> Side {
        Side::unpack(self.header.tail.load(Ordering::SeqCst))
    }

    /// The consumers' side now.
    pub(super) fn head(&self) -> Side {
        Side::unpack(self.header.head.load(Ordering::SeqCst))
    }

    /// Records in the ring now (a snapshot: either side may move the next moment).
    pub(super) fn len(&self) -> u64 {
        let head = self.head();
        between(head.count, self.tail().count)
    }

    fn at(&self, position: u64) -> *mut u8 {
        // SAFETY: `position % capacity` is within the ring (see `new`).
        unsafe { self.bytes.add((position % self.capacity) as usize) }
    }

    /// Writes a record of `bytes` past the tail and publishes it; `false` when there is
    /// no room for it now. The caller holds the put lock.
    #[cfg(test)]
    pub(super) fn push(&self, bytes: &[u8]) -> bool {
        let written = self.push_with(bytes.len(), |place| {
            place.copy_from_slice(bytes);
            Ok::<(), ()>(())
        });
        written == Ok(true)
    }

    /// Makes room for a record of `len` bytes past the tail, lets `write` fill it, and
    /// publishes it unless `write` fails: `Ok(false)` when there is no room now. The
    /// caller holds the put lock.
    pub(super) fn push_with<E>(
        &self,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<bool, E> {
        let need = footprint(len);
        let tail = self.tail();
        let head = self.head();
        let left_in_turn = self.capacity - tail.position % self.capacity;
        let wrap = if left_in_turn < need { left_in_turn } else { 0 };
        if distance(head.position, tail.position) + wrap + need > self.capacity {
            return Ok(false);
        }
        // SAFETY: the region from the tail on is free (checked just above) and read by
        // no consumer until the tail is published below; only the put lock's holder
        // writes there. Record starts are 8-aligned with `need` bytes left in the turn.
        unsafe {
            if wrap > 0 {
                self.at(tail.position).cast::<u32>().write(WRAP);
            }
            let start = self.at(tail.position + wrap);
            start.cast::<u32>().write(len as u32);
            write(std::slice::from_raw_parts_mut(
                start.add(HEADER as usize),
                len,
            ))?;
        }
        let published = Side {
            position: tail.position + wrap + need,
            count: tail.count + 1,
        };
        self.header.tail.store(published.pack(), Ordering::SeqCst);
        Ok(true)
    }

    /// Hands the oldest record's bytes to `read`, then drops the record and publishes
    /// the new head; `None` when the ring is empty. The caller holds the get lock.
    pub(super) fn pop<R>(&self, read: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, Corrupt> {
        let head = self.head();
        let tail = self.tail();
        if head.position == tail.position {
            return Ok(None);
        }
        let mut at = head.position;
        // SAFETY: published records lie between head and tail, written whole before
        // the tail was published; no producer writes there until the head moves past
        // them. Every length is checked against the turn and the tail before the
        // bytes behind it are touched.
        unsafe {
            let mut len = self.at(at).cast::<u32>().read();
            if len == WRAP {
                at += self.capacity - at % self.capacity;
                len = self.at(at).cast::<u32>().read();
            }
            let len = u64::from(len);
            let left_in_turn = self.capacity - at % self.capacity;
            let end = at + footprint(len as usize);
            if HEADER + len > left_in_turn
                || distance(head.position, end) > distance(head.position, tail.position)
            {
                return Err(Corrupt { at, len });
            }
            let bytes = std::slice::from_raw_parts(self.at(at).add(HEADER as usize), len as usize);
            let result = read(bytes);
            let published = Side {
                position: end,
                count: head.count + 1,
            };
            self.header.head.store(published.pack(), Ordering::SeqCst);
            Ok(Some(result))
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
        // SAFETY: `memory` is 8-aligned, `capacity` bytes long (a power of two) and
        // borrowed for the ring's life; the test's one thread holds both "locks".
        unsafe { Ring::new(header, memory.as_mut_ptr().cast(), capacity) }
    }

    fn pop_all(ring: &Ring<'_>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(bytes) = ring.pop(<[u8]>::to_vec).unwrap() {
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
            assert!(ring.push(&a), "room for a");
            assert!(ring.push(&b), "room for b");
            assert_eq!(ring.len(), 2);
            assert_eq!(pop_all(&ring), [a, b]);
        }
        assert_eq!((ring.tail().count, ring.len()), (40, 0));
    }

    #[test]
    fn a_full_ring_says_so_and_an_empty_one_takes_a_record_of_half_its_size() {
        let header = zeroed_header();
        let mut memory = vec![0u64; 8];
        let ring = ring_in(&mut memory, &header);
        // Leave the empty ring's tail at every offset of the turn in turn.
        for _ in 0..8 {
            assert!(
                ring.push(&[2; 24]),
                "half the ring, from {}",
                ring.tail().position
            );
            assert!(!ring.push(&[3; 40]), "no room");
            assert_eq!(pop_all(&ring), [vec![2; 24]]);
            assert!(ring.push(&[]));
            assert_eq!(pop_all(&ring).len(), 1);
        }
    }

    #[test]
    fn positions_and_counts_wrap_without_harm() {
        let header = zeroed_header();
        let near_the_end = Side {
            position: POSITION_MODULUS - 64,
            count: COUNT_MODULUS - 1,
        };
        header.tail.store(near_the_end.pack(), Ordering::SeqCst);
        header.head.store(near_the_end.pack(), Ordering::SeqCst);
        let mut memory = vec![0u64; 8];
        let ring = ring_in(&mut memory, &header);
        for round in 0..10u8 {
            assert!(ring.push(&[round; 20]));
            assert!(ring.push(&[round; 4]));
            assert_eq!(ring.len(), 2);
            assert_eq!(pop_all(&ring), [vec![round; 20], vec![round; 4]]);
        }
    }

    #[test]
    fn an_unpublished_record_is_not_there_and_a_bad_length_is_caught() {
        let header = zeroed_header();
        let mut memory = vec![0u64; 8];
        {
            let ring = ring_in(&mut memory, &header);
            assert!(ring.push(&[7; 8]));
        }
        memory[0] = 1000; // a length past the turn
        let ring = ring_in(&mut memory, &header);
        assert!(ring.pop(|_| ()).is_err());
    }
}
