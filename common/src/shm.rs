//! Typed shared memory: Python's `multiprocessing.Value` and `multiprocessing.Array`.
//!
//! Memory created here is shared with every child forked afterwards: what one process
//! writes, the others read. It lives in a POSIX shared-memory segment made by the
//! `shared_memory` crate (mode 0600), which is unlinked from `/dev/shm` as soon as it
//! is mapped. Forked children inherit the mapping, so nothing needs the name any more,
//! and the memory itself is freed when the last process unmaps it.
//!
//! What is left in `/dev/shm` when a process dies: nothing, if it dies of a signal it
//! can catch (SIGINT, SIGTERM, ...), because those are held back during the few
//! microseconds between creating a segment and unlinking it. SIGKILL cannot be held
//! back: a process killed with it inside that window leaves one entry, named
//! `common.PID.N` after the dead process, which `rm /dev/shm/common.*` removes.
//!
//! The memory is reserved when the segment is created, so a full `/dev/shm` is an
//! error ([`ShmError::Create`]) then, not a SIGBUS at the first write.
//!
//! Elements of 1, 2, 4 or 8 bytes are read and written with atomic instructions: two
//! processes may read and write the same element at once, and each read sees a whole
//! value. A read-modify-write (`a.set(i, a.get(i) + 1)`) still races, as in Python:
//! guard it with a [`Lock`](crate::sync::Lock), or use a [`LockedArray`] (Python's
//! `Array(lock=True)`), which is also what larger elements (`u128`, structs) need,
//! since their reads and writes take several instructions and can tear.
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
//! p.join_timeout(std::time::Duration::from_secs(20))?;
//! assert_eq!(squares.to_vec(), [0, 1, 4, 9]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ops::Deref;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use shared_memory::{Shmem, ShmemConf, ShmemError};

use crate::sync::{LockError, LockGuard, RLock};
use crate::sys;

/// What can go wrong with shared memory.
///
/// ```
/// use common::shm::{SharedArray, ShmError};
///
/// assert!(matches!(SharedArray::<u8>::new(0), Err(ShmError::Empty)));
/// let a = SharedArray::<u8>::new(2)?;
/// assert!(matches!(a.set(5, 1), Err(ShmError::OutOfRange { index: 5, len: 2 })));
/// # Ok::<(), ShmError>(())
/// ```
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
    /// The segment could not be created, mapped or reserved.
    #[error("cannot create shared memory: {}{}", std::io::Error::from_raw_os_error(*.code), hint(*.code))]
    Create {
        /// The error number (`errno`) of the call that failed.
        code: i32,
    },
}

/// A hint for the errors that a look at `/dev/shm` explains.
fn hint(code: i32) -> &'static str {
    match code {
        libc::ENOSPC => " (/dev/shm is full: `df -h /dev/shm` shows it)",
        libc::ENOENT | libc::EACCES | libc::EROFS => " (is /dev/shm mounted and writable?)",
        _ => "",
    }
}

impl ShmError {
    fn from_shmem(error: &ShmemError) -> ShmError {
        let code = match error {
            ShmemError::MapCreateFailed(code)
            | ShmemError::MapOpenFailed(code)
            | ShmemError::UnknownOsError(code) => i32::try_from(*code).unwrap_or(libc::EIO),
            ShmemError::MappingIdExists => libc::EEXIST,
            _ => libc::EIO,
        };
        ShmError::Create { code }
    }
}

/// A name no other segment of any process has: this process's pid and a counter.
/// (A name drawn at random would be drawn again by every forked child, whose random
/// generator is a copy of its parent's.)
fn unique_name() -> String {
    static CREATED: AtomicUsize = AtomicUsize::new(0);
    let n = CREATED.fetch_add(1, Ordering::Relaxed);
    format!("/common.{}.{n}", sys::pid())
}

/// A shared-memory segment, already unlinked from `/dev/shm`, mapped read-write,
/// reserved and filled with zeros. Unmapped when dropped.
pub(crate) struct Segment {
    shmem: Shmem,
}

impl Segment {
    /// Creates, maps, reserves and unlinks a segment of at least `size` bytes
    /// (page-aligned). Catchable signals wait until the name is unlinked.
    pub(crate) fn new(size: usize) -> Result<Segment, ShmError> {
        let (segment, fd) = Segment::unreserved(size)?;
        sys::reserve(&fd, segment.shmem.len()).map_err(|code| ShmError::Create { code })?;
        Ok(segment)
    }

    /// As [`Segment::new`], but nothing is reserved yet: the caller reserves the bytes
    /// it is about to touch with [`sys::reserve`] on the descriptor returned (a byte
    /// touched unreserved may cost a SIGBUS when `/dev/shm` is full).
    pub(crate) fn unreserved(size: usize) -> Result<(Segment, std::os::fd::OwnedFd), ShmError> {
        let _held_back = sys::SignalsHeldBack::new();
        let name = unique_name();
        let mut shmem = ShmemConf::new()
            .size(size)
            .os_id(&name)
            .create()
            .map_err(|error| ShmError::from_shmem(&error))?;
        // A second descriptor, to reserve the memory once the name is gone.
        let fd = nix::sys::mman::shm_open(
            name.as_str(),
            nix::fcntl::OFlag::O_RDWR,
            nix::sys::stat::Mode::empty(),
        );
        // Forked children inherit the mapping, so the name is no longer needed: unlink
        // it now, and stop `shared_memory` from unlinking it again on drop (in a child,
        // that drop would remove a segment that another process might have created
        // under the same name since).
        let _ = nix::sys::mman::shm_unlink(name.as_str());
        shmem.set_owner(false);
        let fd = fd.map_err(|errno| ShmError::Create { code: errno as i32 })?;
        Ok((Segment { shmem }, fd))
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

/// Types for which all-zero bytes are a valid value: atomics, and `#[repr(C)]`
/// structs of them. A new segment is zero-filled, so such a type is ready to use the
/// moment its segment exists.
///
/// # Safety
/// Implement it only for types whose all-zero bit pattern is a valid value, that hold
/// no pointers, and that are `Sync` through atomics alone (they are shared between
/// processes, which no borrow checker sees).
pub(crate) unsafe trait Zeroed: Sync {}

/// A `T` at the start of a segment of its own, zero-initialised, followed by `extra`
/// bytes (page-aligned): the home of the shared state of a primitive such as an
/// `Event` or a `Queue`. Clones share the segment.
pub(crate) struct Placed<T: Zeroed> {
    segment: std::sync::Arc<Segment>,
    extra_at: usize,
    _type: PhantomData<T>,
}

impl<T: Zeroed> Clone for Placed<T> {
    fn clone(&self) -> Self {
        Placed {
            segment: std::sync::Arc::clone(&self.segment),
            extra_at: self.extra_at,
            _type: PhantomData,
        }
    }
}

impl<T: Zeroed> Placed<T> {
    /// A zeroed `T`, then `extra` zeroed bytes starting on a page boundary.
    pub(crate) fn new(extra: usize) -> Result<Self, ShmError> {
        const PAGE: usize = 4096;
        let extra_at = size_of::<T>().div_ceil(PAGE) * PAGE;
        let size = extra_at.checked_add(extra).ok_or(ShmError::TooLarge {
            len: extra,
            element_size: 1,
        })?;
        Ok(Placed {
            segment: std::sync::Arc::new(Segment::new(size.max(1))?),
            extra_at,
            _type: PhantomData,
        })
    }

    /// The shared `T`.
    pub(crate) fn get(&self) -> &T {
        // SAFETY: the segment is page-aligned (so aligned for `T`), at least
        // `size_of::<T>()` bytes long, zero-filled at creation (a valid `T`: `Zeroed`)
        // and mapped while `self.segment` lives; `T` is `Sync` through atomics, so
        // shared references to it are sound in every process that maps it.
        unsafe { &*self.segment.as_ptr().cast::<T>() }
    }

    /// The first of the `extra` bytes.
    pub(crate) fn extra(&self) -> *mut u8 {
        // SAFETY: `extra_at` is within the mapping (its size is `extra_at + extra`).
        unsafe { self.segment.as_ptr().add(self.extra_at) }
    }
}

/// Plain data that may live in shared memory: every bit pattern of its size is a valid
/// value, zero included, and it holds no pointers (which would mean nothing in
/// another process).
///
/// # Safety
/// Implement it only for `Copy` types with no padding, no pointers or references, and
/// for which any bit pattern, all zeros included, is a valid value.
///
/// ```
/// /// A point that may live in shared memory: two `f64`s, no padding, any bits valid.
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// #[repr(C)]
/// struct Point { x: f64, y: f64 }
///
/// // SAFETY: `#[repr(C)]` of two f64: no padding, no pointers, every bit pattern valid.
/// unsafe impl common::shm::Plain for Point {}
///
/// let points = common::shm::LockedArray::<Point>::new(1)?;
/// points.lock()?.set(0, Point { x: 1.0, y: 2.0 })?;
/// assert_eq!(points.lock()?.get(0), Some(Point { x: 1.0, y: 2.0 }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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

/// Reads the element at `at`: one atomic load for elements of 1, 2, 4 or 8 bytes, a
/// volatile read (which may tear if another process writes at the same time) otherwise.
///
/// # Safety
/// `at` points to a `T` inside a live mapping, aligned for `T` and, for the sizes read
/// atomically, to its size (true of every element of a page-aligned array of `T`).
unsafe fn load<T: Plain>(at: *const T) -> T {
    // SAFETY: (each arm) the caller's promise makes `at` valid and aligned for an
    // atomic of `T`'s size; `T: Plain`, so the bits read form a valid `T` whatever
    // another process wrote.
    unsafe {
        match size_of::<T>() {
            1 => {
                std::mem::transmute_copy(&AtomicU8::from_ptr(at as *mut u8).load(Ordering::Acquire))
            }
            2 => std::mem::transmute_copy(
                &AtomicU16::from_ptr(at as *mut u16).load(Ordering::Acquire),
            ),
            4 => std::mem::transmute_copy(
                &AtomicU32::from_ptr(at as *mut u32).load(Ordering::Acquire),
            ),
            8 => std::mem::transmute_copy(
                &AtomicU64::from_ptr(at as *mut u64).load(Ordering::Acquire),
            ),
            _ => at.read_volatile(),
        }
    }
}

/// Writes `value` at `at`, atomically for the sizes [`load`] reads atomically.
///
/// # Safety
/// As [`load`]; the mapping is writable.
unsafe fn store<T: Plain>(at: *mut T, value: T) {
    // SAFETY: (each arm) as in `load`; `T` has no drop glue (it is `Copy`).
    unsafe {
        match size_of::<T>() {
            1 => AtomicU8::from_ptr(at.cast())
                .store(std::mem::transmute_copy(&value), Ordering::Release),
            2 => AtomicU16::from_ptr(at.cast())
                .store(std::mem::transmute_copy(&value), Ordering::Release),
            4 => AtomicU32::from_ptr(at.cast())
                .store(std::mem::transmute_copy(&value), Ordering::Release),
            8 => AtomicU64::from_ptr(at.cast())
                .store(std::mem::transmute_copy(&value), Ordering::Release),
            _ => at.write_volatile(value),
        }
    }
}

/// A fixed-length array in shared memory (Python's `multiprocessing.Array`).
///
/// Cloning gives another handle to the same memory: clone it into a child's closure,
/// keep the original in the parent.
///
/// ```
/// use common::process::Process;
/// use common::shm::SharedArray;
///
/// let shared = SharedArray::<f64>::new(3)?;
/// let childs = shared.clone();
/// let mut p = Process::new(move || childs.copy_from(0, &[1.0, 2.0, 3.0]));
/// p.start()?;
/// p.join_timeout(std::time::Duration::from_secs(20))?;
/// assert_eq!(shared.to_vec(), [1.0, 2.0, 3.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    ///
    /// ```
    /// let a = common::shm::SharedArray::<i64>::new(4)?;
    /// assert_eq!(a.to_vec(), [0; 4]);
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    pub fn new(len: usize) -> Result<Self, ShmError> {
        if len == 0 {
            return Err(ShmError::Empty);
        }
        let bytes = len.checked_mul(size_of::<T>()).ok_or(ShmError::TooLarge {
            len,
            element_size: size_of::<T>(),
        })?;
        let segment = Rc::new(Segment::new(bytes.max(1))?);
        // Page-aligned: aligned for `T`, and every element of 1, 2, 4 or 8 bytes sits at
        // a multiple of its size, as the atomics in `load`/`store` need.
        debug_assert_eq!(segment.as_ptr().align_offset(align_of::<T>().max(8)), 0);
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
    ///
    /// ```
    /// assert!(!common::shm::SharedArray::<u8>::new(1)?.is_empty());
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The address of the first element, for code that places structures of its own in
    /// shared memory (as the tests do with `raw_sync`'s mutex). Valid while this
    /// handle, or a clone of it, lives.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let counters = common::shm::SharedArray::<u64>::new(1)?;
    /// // SAFETY: element 0 is an aligned u64 in a live mapping; every access to it is atomic.
    /// let counter = unsafe { AtomicU64::from_ptr(counters.as_ptr()) };
    /// counter.fetch_add(2, Ordering::SeqCst);
    /// assert_eq!(counters.get(0), Some(2));
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    pub fn as_ptr(&self) -> *mut T {
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
        // SAFETY: `index < len`: the element lies in the mapping (see `load`).
        Some(unsafe { load(self.as_ptr().add(index)) })
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
        // SAFETY: `index < len`: the element lies in the mapping (see `store`).
        unsafe { store(self.as_ptr().add(index), value) };
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
            unsafe { store(self.as_ptr().add(start + offset), *value) };
        }
        Ok(())
    }

    /// A copy of every element.
    ///
    /// ```
    /// let a = common::shm::SharedArray::from_slice(&[3u16, 4])?;
    /// assert_eq!(a.to_vec(), [3, 4]);
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len)
            // SAFETY: `i < len`; see `get`.
            .map(|i| unsafe { load(self.as_ptr().add(i)) })
            .collect()
    }
}

impl<T: Plain> std::fmt::Debug for SharedArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SharedArray<{}>(len={})",
            std::any::type_name::<T>(),
            self.len
        )
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
/// p.join_timeout(std::time::Duration::from_secs(20))?;
/// assert_eq!(answer.get(), 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SharedValue<T: Plain> {
    array: SharedArray<T>,
}

impl<T: Plain> std::fmt::Debug for SharedValue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedValue<{}>", std::any::type_name::<T>())
    }
}

impl<T: Plain> SharedValue<T> {
    /// A shared value holding `value`.
    ///
    /// # Errors
    /// [`ShmError::Create`] when the system refuses the segment.
    ///
    /// ```
    /// let v = common::shm::SharedValue::new(-1i32)?;
    /// assert_eq!(v.get(), -1);
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    pub fn new(value: T) -> Result<Self, ShmError> {
        Ok(SharedValue {
            array: SharedArray::from_slice(&[value])?,
        })
    }

    /// The current value.
    ///
    /// ```
    /// assert_eq!(common::shm::SharedValue::new(7u8)?.get(), 7);
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    pub fn get(&self) -> T {
        // SAFETY: a shared value is an array of one element; see `SharedArray::get`.
        unsafe { load(self.array.as_ptr()) }
    }

    /// Replaces the value.
    ///
    /// ```
    /// let v = common::shm::SharedValue::new(1.5f64)?;
    /// v.set(2.5);
    /// assert_eq!(v.get(), 2.5);
    /// # Ok::<(), common::shm::ShmError>(())
    /// ```
    pub fn set(&self, value: T) {
        // SAFETY: as in `get`.
        unsafe { store(self.array.as_ptr(), value) }
    }
}

/// A shared array with a lock: Python's `multiprocessing.Array(typecode, n, lock=True)`.
///
/// [`lock`](LockedArray::lock) holds the lock and gives the array, so that a
/// read-modify-write by one process is never lost to another's. The lock is an
/// [`RLock`], as Python's, so a process holding it may lock again.
///
/// ```
/// use common::process::Process;
/// use common::shm::LockedArray;
///
/// let counters = LockedArray::<u128>::new(1)?;
/// let mut workers = Vec::new();
/// for _ in 0..2 {
///     let counters = counters.clone();
///     let mut p = Process::new(move || -> Result<(), Box<dyn std::error::Error>> {
///         for _ in 0..1000 {
///             let array = counters.lock()?;
///             array.set(0, array.get(0).unwrap_or(0) + 1)?;
///         }
///         Ok(())
///     });
///     p.start()?;
///     workers.push(p);
/// }
/// for p in &workers {
///     assert_eq!(p.join_timeout(std::time::Duration::from_secs(20))?, Some(0));
/// }
/// assert_eq!(counters.lock()?.get(0), Some(2000));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct LockedArray<T: Plain> {
    array: SharedArray<T>,
    lock: RLock,
}

/// The array of a [`LockedArray`], its lock held until this is dropped.
///
/// ```
/// let a = common::shm::LockedArray::<u32>::new(2)?;
/// let slice = a.lock()?; // held until `slice` is dropped
/// slice.set(0, slice.get(0).unwrap_or(0) + 1)?;
/// assert_eq!(slice.to_vec(), [1, 0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct LockedSlice<'a, T: Plain> {
    array: &'a SharedArray<T>,
    _guard: LockGuard,
}

impl<T: Plain> Deref for LockedSlice<'_, T> {
    type Target = SharedArray<T>;

    fn deref(&self) -> &SharedArray<T> {
        self.array
    }
}

impl<T: Plain> LockedArray<T> {
    /// An array of `len` zeros with its lock (Python's `Array('d', len, lock=True)`).
    ///
    /// ```
    /// let a = common::shm::LockedArray::<f64>::new(3)?;
    /// assert_eq!(a.lock()?.to_vec(), [0.0; 3]);
    /// # Ok::<(), common::sync::LockError>(())
    /// ```
    ///
    /// # Errors
    /// [`LockError::Shm`] as [`SharedArray::new`], or as [`RLock::new`].
    pub fn new(len: usize) -> Result<Self, LockError> {
        Ok(LockedArray {
            array: SharedArray::new(len)?,
            lock: RLock::new()?,
        })
    }

    /// Takes the lock and gives the array (Python's `with arr.get_lock():`).
    ///
    /// ```
    /// let a = common::shm::LockedArray::<i32>::new(2)?;
    /// let array = a.lock()?;
    /// array.set(1, array.get(1).unwrap_or(0) - 5)?;
    /// assert_eq!(array.to_vec(), [0, -5]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`RLock::acquire`]: [`LockError::OwnerDied`] when a process died holding the
    /// lock (repair through [`array`](LockedArray::array) while holding its guard).
    pub fn lock(&self) -> Result<LockedSlice<'_, T>, LockError> {
        Ok(LockedSlice {
            array: &self.array,
            _guard: self.lock.acquire()?,
        })
    }

    /// The lock (Python's `arr.get_lock()`).
    ///
    /// ```
    /// let a = common::shm::LockedArray::<u8>::new(1)?;
    /// let _guard = a.rlock().acquire()?;
    /// assert!(a.lock().is_ok(), "re-entrant");
    /// # Ok::<(), common::sync::LockError>(())
    /// ```
    pub fn rlock(&self) -> &RLock {
        &self.lock
    }

    /// The array without its lock (Python's `arr.get_obj()`).
    ///
    /// ```
    /// let a = common::shm::LockedArray::<u8>::new(4)?;
    /// assert_eq!(a.array().len(), 4);
    /// # Ok::<(), common::sync::LockError>(())
    /// ```
    pub fn array(&self) -> &SharedArray<T> {
        &self.array
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_shm_hint_comes_only_with_errors_it_explains() {
        let full = ShmError::Create { code: libc::ENOSPC }.to_string();
        assert!(
            full.ends_with("(/dev/shm is full: `df -h /dev/shm` shows it)"),
            "{full}"
        );
        let files = ShmError::Create { code: libc::EMFILE }.to_string();
        assert_eq!(
            files,
            "cannot create shared memory: Too many open files (os error 24)"
        );
        let missing = ShmError::Create { code: libc::ENOENT }.to_string();
        assert!(
            missing.ends_with("(is /dev/shm mounted and writable?)"),
            "{missing}"
        );
    }

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
