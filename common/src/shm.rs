//! Typed shared memory: Python's `multiprocessing.Value` and `multiprocessing.Array`.
//!
//! Memory created here is shared with every child forked afterwards: what one process
//! writes, the others read. It lives in a POSIX shared-memory segment made by the
//! `shared_memory` crate (mode 0600, a random name), which is unlinked from `/dev/shm`
//! as soon as it is mapped. Forked children inherit the mapping, so nothing needs the
//! name any more, and nothing is left in `/dev/shm`, even when the parent is killed
//! with SIGKILL. The memory itself is freed when the last process unmaps it.
//!
//! Reads and writes are plain loads and stores: two processes writing the same element
//! at the same time race, as in Python. Guard shared updates with a
//! [`Lock`](crate::sync::Lock).
//!
//! ```
//! use common::process::Process;
//! use common::shm::SharedArray;
//!
//! let squares = SharedArray::<u64>::new(4)?;
//! let childs = squares.clone();
//! let mut p = Process::new(move || {
//!     for i in 0..4 {
//!         childs.set(i, (i * i) as u64).unwrap();
//!     }
//! });
//! p.start()?;
//! p.join()?;
//! assert_eq!(squares.to_vec(), [0, 1, 4, 9]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::rc::Rc;

use shared_memory::{Shmem, ShmemConf};

/// What can go wrong with shared memory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// A shared array of length 0 was asked for.
    #[error("a shared array needs at least one element")]
    Empty,
    /// The size in bytes does not fit in memory's address range.
    #[error("a shared array of {len} elements of {element_size} bytes is too large")]
    TooLarge {
        /// The number of elements asked for.
        len: usize,
        /// The size of one element in bytes.
        element_size: usize,
    },
    /// An index past the end of the array.
    #[error("index {index} is out of range for a shared array of length {len}")]
    OutOfRange {
        /// The index given.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// The segment could not be created or mapped.
    #[error("cannot create shared memory: {0} (is /dev/shm mounted and writable?)")]
    Create(String),
}

/// A shared-memory segment, already unlinked from `/dev/shm`, mapped read-write and
/// filled with zeros. Unmapped when the last handle in this process is dropped.
pub(crate) struct Segment {
    shmem: Shmem,
}

impl Segment {
    /// Creates, maps and unlinks a segment of at least `size` bytes (page-aligned).
    pub(crate) fn new(size: usize) -> Result<Segment, ShmError> {
        let mut shmem = ShmemConf::new()
            .size(size)
            .create()
            .map_err(|error| ShmError::Create(error.to_string()))?;
        // Forked children inherit the mapping, so the name is no longer needed: unlink
        // it now, and stop `shared_memory` from unlinking it again on drop (in a child,
        // that drop would remove a segment that another process might have created
        // under the same name since).
        let _ = nix::sys::mman::shm_unlink(shmem.get_os_id());
        shmem.set_owner(false);
        Ok(Segment { shmem })
    }

    /// The first byte of the mapping (page-aligned).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.shmem.as_ptr()
    }
}

// SAFETY: a `Segment` is a mapping of the whole process: any thread may read and write
// through its pointer (what is written there is the business of the types placed in
// it), and unmapping it on drop is valid from any thread.
unsafe impl Send for Segment {}
// SAFETY: as above; `&Segment` only hands out the mapping's address.
unsafe impl Sync for Segment {}

/// Plain data that may live in shared memory: every bit pattern of its size is a valid
/// value, zero included, and it holds no pointers (which would mean nothing in
/// another process).
///
/// # Safety
/// Implement it only for `Copy` types with no padding, no pointers or references, and
/// for which any bit pattern, all zeros included, is a valid value.
pub unsafe trait Plain: Copy + 'static {}

macro_rules! plain {
    ($($t:ty),*) => {
        // SAFETY: primitive integers and floats have no padding and no invalid bit
        // patterns, and hold no pointers.
        $(unsafe impl Plain for $t {})*
    };
}
plain!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
);

/// A fixed-length array in shared memory (Python's `multiprocessing.Array`).
///
/// Cloning gives another handle to the same memory: clone it into a child's closure,
/// keep the original in the parent.
#[derive(Clone)]
pub struct SharedArray<T: Plain> {
    segment: Rc<Segment>,
    len: usize,
    element: PhantomData<T>,
}

impl<T: Plain> SharedArray<T> {
    /// An array of `len` zeros (Python's `Array('d', len)`).
    ///
    /// # Errors
    /// [`ShmError::Empty`] for `len == 0`, [`ShmError::TooLarge`], or
    /// [`ShmError::Create`] when the system refuses the segment.
    pub fn new(len: usize) -> Result<Self, ShmError> {
        if len == 0 {
            return Err(ShmError::Empty);
        }
        let bytes = len.checked_mul(size_of::<T>()).ok_or(ShmError::TooLarge {
            len,
            element_size: size_of::<T>(),
        })?;
        let segment = Rc::new(Segment::new(bytes.max(1))?);
        debug_assert_eq!(segment.as_ptr().align_offset(align_of::<T>()), 0);
        Ok(SharedArray {
            segment,
            len,
            element: PhantomData,
        })
    }

    /// An array holding a copy of `values`.
    ///
    /// ```
    /// let a = common::shm::SharedArray::from_slice(&[1.5f64, 2.5])?;
    /// assert_eq!(a.to_vec(), [1.5, 2.5]);
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    ///
    /// # Errors
    /// As [`SharedArray::new`].
    pub fn from_slice(values: &[T]) -> Result<Self, ShmError> {
        let array = Self::new(values.len())?;
        array.copy_from(0, values)?;
        Ok(array)
    }

    /// The number of elements.
    ///
    /// ```
    /// assert_eq!(common::shm::SharedArray::<f64>::new(3)?.len(), 3);
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: a shared array has at least one element.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The address of the first element, for code that places structures of its own in
    /// shared memory (as the tests do with `raw_sync`'s mutex). Valid while this
    /// handle, or a clone of it, lives.
    pub fn as_ptr(&self) -> *mut T {
        self.base()
    }

    fn base(&self) -> *mut T {
        self.segment.as_ptr().cast::<T>()
    }

    fn check(&self, index: usize) -> Result<(), ShmError> {
        if index < self.len {
            Ok(())
        } else {
            Err(ShmError::OutOfRange {
                index,
                len: self.len,
            })
        }
    }

    /// The element at `index`, `None` past the end.
    ///
    /// ```
    /// let a = common::shm::SharedArray::from_slice(&[7u8, 8])?;
    /// assert_eq!((a.get(1), a.get(2)), (Some(8), None));
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    pub fn get(&self, index: usize) -> Option<T> {
        self.check(index).ok()?;
        // SAFETY: `index < len`, the mapping holds `len` elements of `T`, is aligned for
        // `T` (page-aligned) and lives as long as `self.segment`; `T: Plain`, so any bits
        // another process wrote form a valid `T`. Volatile: other processes write here.
        Some(unsafe { self.base().add(index).read_volatile() })
    }

    /// Writes `value` at `index`.
    ///
    /// ```
    /// let a = common::shm::SharedArray::<i32>::new(2)?;
    /// a.set(0, -5)?;
    /// assert!(a.set(2, 1).is_err());
    /// assert_eq!(a.to_vec(), [-5, 0]);
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    ///
    /// # Errors
    /// [`ShmError::OutOfRange`] past the end.
    pub fn set(&self, index: usize, value: T) -> Result<(), ShmError> {
        self.check(index)?;
        // SAFETY: as in `get`; the memory is writable and `T` has no drop glue.
        unsafe { self.base().add(index).write_volatile(value) };
        Ok(())
    }

    /// Writes `values` from `start` on.
    ///
    /// ```
    /// let a = common::shm::SharedArray::<u16>::new(4)?;
    /// a.copy_from(1, &[1, 2, 3])?;
    /// assert_eq!(a.to_vec(), [0, 1, 2, 3]);
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    ///
    /// # Errors
    /// [`ShmError::OutOfRange`] when they do not fit, and then nothing is written.
    pub fn copy_from(&self, start: usize, values: &[T]) -> Result<(), ShmError> {
        let end = start.saturating_add(values.len());
        if end > self.len {
            return Err(ShmError::OutOfRange {
                index: end - 1,
                len: self.len,
            });
        }
        for (offset, value) in values.iter().enumerate() {
            // SAFETY: `start + offset < end <= len`; see `set`.
            unsafe { self.base().add(start + offset).write_volatile(*value) };
        }
        Ok(())
    }

    /// A copy of every element.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len)
            // SAFETY: `i < len`; see `get`.
            .map(|i| unsafe { self.base().add(i).read_volatile() })
            .collect()
    }
}

/// One value in shared memory (Python's `multiprocessing.Value`).
///
/// ```
/// use common::process::Process;
/// use common::shm::SharedValue;
///
/// let answer = SharedValue::new(0i64)?;
/// let childs = answer.clone();
/// let mut p = Process::new(move || childs.set(42));
/// p.start()?;
/// p.join()?;
/// assert_eq!(answer.get(), 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SharedValue<T: Plain> {
    array: SharedArray<T>,
}

impl<T: Plain> SharedValue<T> {
    /// A shared value holding `value`.
    ///
    /// # Errors
    /// [`ShmError::Create`] when the system refuses the segment.
    pub fn new(value: T) -> Result<Self, ShmError> {
        Ok(SharedValue {
            array: SharedArray::from_slice(&[value])?,
        })
    }

    /// The current value.
    pub fn get(&self) -> T {
        self.array.to_vec()[0]
    }

    /// Replaces the value.
    pub fn set(&self, value: T) {
        let _ = self.array.set(0, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_length_is_an_error() {
        assert!(matches!(SharedArray::<u8>::new(0), Err(ShmError::Empty)));
    }

    #[test]
    fn huge_length_is_an_error_not_a_panic() {
        assert!(matches!(
            SharedArray::<u64>::new(usize::MAX),
            Err(ShmError::TooLarge { .. })
        ));
    }

    #[test]
    fn out_of_range_is_an_error() {
        let a = SharedArray::<u32>::new(3).unwrap();
        assert!(a.get(3).is_none());
        assert!(matches!(
            a.set(3, 1),
            Err(ShmError::OutOfRange { index: 3, len: 3 })
        ));
        assert!(a.copy_from(2, &[1, 2]).is_err());
        assert_eq!(a.to_vec(), [0, 0, 0], "a failed copy writes nothing");
    }

    #[test]
    fn starts_zeroed_and_clones_share_memory() {
        let a = SharedArray::<f64>::new(5).unwrap();
        assert_eq!(a.to_vec(), [0.0; 5]);
        let b = a.clone();
        b.set(4, 2.5).unwrap();
        assert_eq!(a.get(4), Some(2.5));
    }
}
