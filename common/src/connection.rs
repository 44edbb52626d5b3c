//! `Pipe` and `Connection`: Python's `multiprocessing.Pipe()`, two ends that send
//! messages to each other.
//!
//! An end is a Unix stream socket of a `socketpair` (both ways; one way, each end is
//! shut down in the direction it may not use). A message is a frame: its length in 4
//! bytes (little-endian), then its bytes; `send` encodes a serde value with postcard,
//! `send_bytes` sends bytes as they are. A frame is written with one system call when
//! it fits the socket's buffer, and a read takes what is there (up to 64 KiB), so a
//! small message costs one `write` and one `read`, as a raw pipe does.
//!
//! When the other end is gone, a read says so: [`ConnectionError::Eof`] between
//! messages, [`ConnectionError::Truncated`] in the middle of one (its writer died
//! while sending). A write to a closed end is [`ConnectionError::Broken`], and never a
//! SIGPIPE (sockets are written with `MSG_NOSIGNAL`). The other end is gone when every
//! process holding it has closed it or ended.
//!
//! Who holds an end: a child holds the ends moved into its closure, and no other.
//! `fork()` copies every descriptor, so in Python a child also holds, unseen, every end
//! its parent kept: a child waiting for its parent to close a pipe holds that pipe open
//! itself and waits forever, unless it closes its copy by hand. Here
//! [`Process::start`](crate::process::Process::start) hands the ends over: once the
//! child is forked, the parent drops the closure (closing its copies of the ends moved
//! into it) and tells the child which ends it kept; the child closes those before its
//! target runs. (One pipe and two small messages per start, only while ends exist.)
//!
//! ```
//! use std::time::Duration;
//! use common::connection::pipe;
//! use common::process::Process;
//!
//! let (mut parent_end, mut child_end) = pipe()?;
//! let mut p = Process::new(move || -> Result<(), common::connection::ConnectionError> {
//!     let numbers: Vec<i64> = child_end.recv()?;
//!     child_end.send(&numbers.iter().map(|n| n * n).collect::<Vec<_>>())
//! });
//! p.start()?;
//! parent_end.send(&vec![1i64, 2, 3])?;
//! assert_eq!(parent_end.recv::<Vec<i64>>()?, [1, 4, 9]);
//! p.join_timeout(Duration::from_secs(20))?;
//! // The child is gone, and with it the only copy of its end:
//! assert!(matches!(parent_end.recv::<i64>(), Err(common::connection::ConnectionError::Eof)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::sys;

/// The size of a frame's length prefix.
const PREFIX: usize = 4;
/// How much one read takes at most into the buffer.
const READ_SIZE: usize = 64 * 1024;

/// What can go wrong with a [`Connection`].
///
/// ```
/// use common::connection::{pipe, ConnectionError};
///
/// let (mut a, b) = pipe()?;
/// drop(b);
/// assert!(matches!(a.recv_bytes(), Err(ConnectionError::Eof)));
/// assert!(matches!(a.send_bytes(b"hello"), Err(ConnectionError::Broken)));
/// # Ok::<(), ConnectionError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The other end is closed, and every message it sent has been read (Python's
    /// `EOFError`).
    #[error("the other end of the pipe is closed: no more messages will come")]
    Eof,
    /// The other end closed in the middle of a message: its sender died while
    /// sending, or closed its end half-way.
    #[error("the other end closed after {got} of the {expected} bytes of a message")]
    Truncated {
        /// The bytes the message should have had.
        expected: usize,
        /// The bytes that came.
        got: usize,
    },
    /// Nobody can read what this end writes: the other end is closed (Python's
    /// `BrokenPipeError`).
    #[error("the other end of the pipe is closed: nobody will read this message")]
    Broken,
    /// This end was closed with [`Connection::close`] (Python's `OSError: handle is
    /// closed`).
    #[error("this end of the pipe is closed")]
    Closed,
    /// A one-way pipe's reading end was asked to send (Python's `OSError:
    /// connection is read-only`).
    #[error("this end of a one-way pipe only receives")]
    ReadOnly,
    /// A one-way pipe's writing end was asked to receive (Python's `OSError:
    /// connection is write-only`).
    #[error("this end of a one-way pipe only sends")]
    WriteOnly,
    /// A message longer than a frame can say (4 GiB less one byte), or longer than
    /// the `maxlength` given to [`Connection::recv_bytes_max`]. A message too long to
    /// receive is left unread.
    #[error("a message of {len} bytes is longer than the {limit} bytes allowed")]
    TooLarge {
        /// The message's length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// The message does not fit the buffer given to [`Connection::recv_bytes_into`]
    /// (Python's `BufferTooShort`, which also carries the message).
    #[error("a message of {} bytes does not fit a buffer of {buffer} bytes", .message.len())]
    BufferTooShort {
        /// The whole message, received.
        message: Vec<u8>,
        /// The buffer's length.
        buffer: usize,
    },
    /// `send_bytes`' range lies outside the bytes given (Python's `ValueError`).
    #[error("bytes {offset}..{end} are outside a buffer of {len} bytes")]
    OutOfRange {
        /// The range's start.
        offset: usize,
        /// The range's end.
        end: usize,
        /// The buffer's length.
        len: usize,
    },
    /// The value could not be encoded.
    #[error("cannot encode the message: {0}")]
    Encode(String),
    /// The message is not a value of the type asked for.
    #[error("cannot decode the message: {0}")]
    Decode(String),
    /// A system call failed.
    #[error("{call} failed: {}", std::io::Error::from_raw_os_error(*.code))]
    Os {
        /// The call that failed.
        call: &'static str,
        /// Its error number.
        code: i32,
    },
}

fn os_error(call: &'static str) -> ConnectionError {
    let code = std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO);
    ConnectionError::Os { call, code }
}

/// Two connected ends that both send and receive (Python's `Pipe()`, or
/// `Pipe(duplex=True)`).
///
/// ```
/// let (mut a, mut b) = common::connection::pipe()?;
/// a.send(&"ping")?;
/// assert_eq!(b.recv::<String>()?, "ping");
/// b.send(&"pong")?;
/// assert_eq!(a.recv::<String>()?, "pong");
/// # Ok::<(), common::connection::ConnectionError>(())
/// ```
///
/// # Errors
/// [`ConnectionError::Os`] when the sockets cannot be created.
pub fn pipe() -> Result<(Connection, Connection), ConnectionError> {
    let (a, b) = socket_pair()?;
    Ok((
        Connection::new(a, true, true),
        Connection::new(b, true, true),
    ))
}

/// Two ends, the first only receiving and the second only sending (Python's
/// `Pipe(duplex=False)`, which returns `(reader, writer)` too).
///
/// ```
/// use common::connection::{pipe_one_way, ConnectionError};
///
/// let (mut reader, mut writer) = pipe_one_way()?;
/// writer.send(&1u8)?;
/// assert_eq!(reader.recv::<u8>()?, 1);
/// assert!(matches!(reader.send(&2u8), Err(ConnectionError::ReadOnly)));
/// assert!(matches!(writer.recv::<u8>(), Err(ConnectionError::WriteOnly)));
/// # Ok::<(), ConnectionError>(())
/// ```
///
/// # Errors
/// As [`pipe`].
pub fn pipe_one_way() -> Result<(Connection, Connection), ConnectionError> {
    let (reader, writer) = socket_pair()?;
    // SAFETY: both descriptors are open sockets owned here; shutdown takes integers.
    unsafe {
        libc::shutdown(reader.as_raw_fd(), libc::SHUT_WR);
        libc::shutdown(writer.as_raw_fd(), libc::SHUT_RD);
    }
    Ok((
        Connection::new(reader, true, false),
        Connection::new(writer, false, true),
    ))
}

/// Whether this process (or the one it was forked from) ever opened an end: until
/// then, a start need not look at [`OPEN_ENDS`], whose lock would write to a page the
/// last fork shared (a page fault).
static EVER_OPENED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The descriptors of the ends open in this process.
static OPEN_ENDS: std::sync::Mutex<Vec<RawFd>> = std::sync::Mutex::new(Vec::new());

fn open_ends() -> std::sync::MutexGuard<'static, Vec<RawFd>> {
    OPEN_ENDS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How a starting process hands its ends over to its child (see the module doc): made
/// before the fork, then used once on each side.
pub(crate) struct Handover {
    read: OwnedFd,
    write: OwnedFd,
}

impl Handover {
    /// `None` when no end is open: then there is nothing to hand over.
    pub(crate) fn before_fork() -> std::io::Result<Option<Handover>> {
        if !EVER_OPENED.load(std::sync::atomic::Ordering::Relaxed) || open_ends().is_empty() {
            return Ok(None);
        }
        let (read, write) = sys::pipe()?;
        Ok(Some(Handover { read, write }))
    }

    /// In the parent, once the child's closure is dropped: tells the child which ends
    /// the parent still holds.
    pub(crate) fn in_parent(self) {
        let kept: Vec<u8> = open_ends().iter().flat_map(|fd| fd.to_le_bytes()).collect();
        drop(self.read);
        let mut written = 0;
        while written < kept.len() {
            let rest = &kept[written..];
            // SAFETY: `rest` is valid for reads of its length; the descriptor is open.
            let n =
                unsafe { libc::write(self.write.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
            if n <= 0 {
                if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return; // the child is gone
            }
            written += n as usize;
        }
    }

    /// In the child, before its target runs: closes the ends the parent kept.
    pub(crate) fn in_child(self) {
        drop(self.write);
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            // SAFETY: `chunk` is writable for its length; the descriptor is open.
            let n = unsafe {
                libc::read(
                    self.read.as_raw_fd(),
                    chunk.as_mut_ptr().cast(),
                    chunk.len(),
                )
            };
            if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            if n <= 0 {
                break; // all said (or the parent died: then nothing to close)
            }
            bytes.extend_from_slice(&chunk[..n as usize]);
        }
        let mut ends = open_ends();
        for fd in bytes.chunks_exact(4) {
            let fd = RawFd::from_le_bytes(fd.try_into().expect("4 bytes"));
            if let Some(at) = ends.iter().position(|&open| open == fd) {
                ends.swap_remove(at);
                // SAFETY: `fd` is this child's copy of an end its parent kept; no code
                // of the child can reach the `Connection` that owns it (it was not
                // moved into the child's closure), and that `Connection` is never
                // dropped here (a child leaves with `_exit`).
                unsafe { libc::close(fd) };
            }
        }
    }
}

fn socket_pair() -> Result<(OwnedFd, OwnedFd), ConnectionError> {
    let mut fds: [RawFd; 2] = [-1, -1];
    // SAFETY: `fds` is a valid array of two descriptors for the kernel to fill.
    let done = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if done != 0 {
        return Err(os_error("socketpair"));
    }
    // SAFETY: socketpair succeeded: both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// One end of a [`pipe`]: Python's `multiprocessing.connection.Connection`.
///
/// Move it into the closure of the process that uses it. Messages arrive whole and in
/// the order sent.
///
/// ```
/// let (mut a, mut b) = common::connection::pipe()?;
/// a.send_bytes(b"raw bytes")?;
/// assert_eq!(b.recv_bytes()?, b"raw bytes");
/// # Ok::<(), common::connection::ConnectionError>(())
/// ```
pub struct Connection {
    fd: Option<OwnedFd>,
    readable: bool,
    writable: bool,
    /// Bytes read but not yet handed out: `buffer[start..]`.
    buffer: Vec<u8>,
    start: usize,
    /// The frame being sent, prefix and body, kept between sends.
    outgoing: Vec<u8>,
}

impl Connection {
    fn new(fd: OwnedFd, readable: bool, writable: bool) -> Connection {
        EVER_OPENED.store(true, std::sync::atomic::Ordering::Relaxed);
        open_ends().push(fd.as_raw_fd());
        Connection {
            fd: Some(fd),
            readable,
            writable,
            buffer: Vec::new(),
            start: 0,
            outgoing: Vec::new(),
        }
    }

    /// Whether this end receives (Python's `conn.readable`).
    ///
    /// ```
    /// let (reader, writer) = common::connection::pipe_one_way()?;
    /// assert!(reader.readable() && !writer.readable());
    /// # Ok::<(), common::connection::ConnectionError>(())
    /// ```
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end sends (Python's `conn.writable`).
    ///
    /// ```
    /// let (reader, writer) = common::connection::pipe_one_way()?;
    /// assert!(writer.writable() && !reader.writable());
    /// # Ok::<(), common::connection::ConnectionError>(())
    /// ```
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Whether [`close`](Connection::close) was called (Python's `conn.closed`).
    ///
    /// ```
    /// let (mut a, _b) = common::connection::pipe()?;
    /// a.close();
    /// assert!(a.closed());
    /// # Ok::<(), common::connection::ConnectionError>(())
    /// ```
    pub fn closed(&self) -> bool {
        self.fd.is_none()
    }

    /// Closes this end (Python's `conn.close()`); dropping it does the same. Once every
    /// copy of an end is closed, the other end reads [`ConnectionError::Eof`].
    ///
    /// ```
    /// use common::connection::{pipe, ConnectionError};
    ///
    /// let (mut a, mut b) = pipe()?;
    /// a.close();
    /// assert!(matches!(a.send(&1), Err(ConnectionError::Closed)));
    /// assert!(matches!(b.recv::<i32>(), Err(ConnectionError::Eof)));
    /// # Ok::<(), ConnectionError>(())
    /// ```
    pub fn close(&mut self) {
        if let Some(fd) = self.fd.take() {
            let mut ends = open_ends();
            if let Some(at) = ends.iter().position(|&open| open == fd.as_raw_fd()) {
                ends.swap_remove(at);
            }
        }
    }

    fn fd(&self) -> Result<RawFd, ConnectionError> {
        self.fd
            .as_ref()
            .map(AsRawFd::as_raw_fd)
            .ok_or(ConnectionError::Closed)
    }

    /// Sends `value`, encoded with postcard (Python's `conn.send(obj)`).
    ///
    /// ```
    /// let (mut a, mut b) = common::connection::pipe()?;
    /// a.send(&(1u8, 2.25f64, None::<String>))?;
    /// assert_eq!(b.recv::<(u8, f64, Option<String>)>()?, (1, 2.25, None));
    /// # Ok::<(), common::connection::ConnectionError>(())
    /// ```
    ///
    /// # Errors
    /// [`ConnectionError::Broken`] when the other end is closed,
    /// [`ConnectionError::Closed`], [`ConnectionError::ReadOnly`],
    /// [`ConnectionError::Encode`], [`ConnectionError::TooLarge`].
    pub fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ConnectionError> {
        let mut frame = std::mem::take(&mut self.outgoing);
        frame.clear();
        frame.extend_from_slice(&[0; PREFIX]);
        let encoded = postcard::to_io(value, &mut frame)
            .map(drop)
            .map_err(|e| ConnectionError::Encode(e.to_string()));
        let sent = encoded.and_then(|()| self.send_frame(&mut frame));
        self.outgoing = frame;
        sent
    }

    /// Sends `bytes` as one message (Python's `conn.send_bytes(buf)`).
    ///
    /// ```
    /// let (mut a, mut b) = common::connection::pipe()?;
    /// a.send_bytes(b"")?;
    /// assert_eq!(b.recv_bytes()?, b"");
    /// # Ok::<(), common::connection::ConnectionError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Connection::send`], but for the encoding.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), ConnectionError> {
        self.send_bytes_range(bytes, 0, bytes.len())
    }

    /// Sends `bytes[offset..offset + size]` as one message (Python's
    /// `conn.send_bytes(buf, offset, size)`).
    ///
    /// ```
    /// use common::connection::{pipe, ConnectionError};
    ///
    /// let (mut a, mut b) = pipe()?;
    /// let msg = b"abcdefghijklmnopqrstuvwxyz";
    /// a.send_bytes_range(msg, 7, 8)?;
    /// assert_eq!(b.recv_bytes()?, b"hijklmno");
    /// assert!(matches!(a.send_bytes_range(msg, 22, 5), Err(ConnectionError::OutOfRange { .. })));
    /// # Ok::<(), ConnectionError>(())
    /// ```
    ///
    /// # Errors
    /// [`ConnectionError::OutOfRange`] when the range is not within `bytes`, or as
    /// [`Connection::send_bytes`].
    pub fn send_bytes_range(
        &mut self,
        bytes: &[u8],
        offset: usize,
        size: usize,
    ) -> Result<(), ConnectionError> {
        let end = offset.checked_add(size).filter(|&end| end <= bytes.len());
        let Some(end) = end else {
            return Err(ConnectionError::OutOfRange {
                offset,
                end: offset.saturating_add(size),
                len: bytes.len(),
            });
        };
        let mut frame = std::mem::take(&mut self.outgoing);
        frame.clear();
        frame.extend_from_slice(&[0; PREFIX]);
        frame.extend_from_slice(&bytes[offset..end]);
        let sent = self.send_frame(&mut frame);
        self.outgoing = frame;
        sent
    }

    /// Fills in the length prefix of `frame` (body after [`PREFIX`] bytes) and writes
    /// it whole.
    fn send_frame(&mut self, frame: &mut [u8]) -> Result<(), ConnectionError> {
        let fd = self.fd()?;
        if !self.writable {
            return Err(ConnectionError::ReadOnly);
        }
        let body = frame.len() - PREFIX;
        let len = u32::try_from(body).map_err(|_| ConnectionError::TooLarge {
            len: body as u64,
            limit: u64::from(u32::MAX),
        })?;
        frame[..PREFIX].copy_from_slice(&len.to_le_bytes());
        let mut written = 0;
        while written < frame.len() {
            let rest = &frame[written..];
            // SAFETY: `rest` is valid for reads of its length; `fd` is open (owned by
            // `self`). MSG_NOSIGNAL: a closed reader gives EPIPE, not SIGPIPE.
            let n = unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) };
            if n < 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EPIPE | libc::ECONNRESET) => return Err(ConnectionError::Broken),
                    _ => return Err(os_error("send")),
                }
            }
            written += n as usize;
        }
        Ok(())
    }

    /// Receives one message and decodes it as a `T` (Python's `conn.recv()`), waiting
    /// for it however long it takes: see [`poll`](Connection::poll) to wait less.
    ///
    /// ```
    /// let (mut a, mut b) = common::connection::pipe()?;
    /// a.send(&vec!["one".to_string()])?;
    /// assert_eq!(b.recv::<Vec<String>>()?, ["one"]);
    /// # Ok::<(), common::connection::ConnectionError>(())
    /// ```
    ///
    /// # Errors
    /// [`ConnectionError::Eof`] when the other end is closed and nothing is left,
    /// [`ConnectionError::Truncated`], [`ConnectionError::Decode`] (the message is
    /// consumed), [`ConnectionError::Closed`], [`ConnectionError::WriteOnly`].
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T, ConnectionError> {
        let len = self.next_frame(u64::from(u32::MAX))?;
        let body = &self.buffer[self.start..self.start + len];
        let value = postcard::from_bytes(body).map_err(|e| ConnectionError::Decode(e.to_string()));
        self.start += len;
        value
    }

    /// Receives one message's bytes (Python's `conn.recv_bytes()`).
    ///
    /// ```
    /// let (mut a, mut b) = common::connection::pipe()?;
    /// a.send_bytes(&[7u8; 100_000])?;
    /// assert_eq!(b.recv_bytes()?, [7u8; 100_000]);
    /// # Ok::<(), common::connection::ConnectionError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Connection::recv`], but for the decoding.
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>, ConnectionError> {
        self.recv_bytes_max(u64::from(u32::MAX))
    }

    /// Receives one message's bytes if it is at most `maxlength` long (Python's
    /// `conn.recv_bytes(maxlength)`); a longer one is left unread.
    ///
    /// ```
    /// use common::connection::{pipe, ConnectionError};
    ///
    /// let (mut a, mut b) = pipe()?;
    /// a.send_bytes(b"too long")?;
    /// assert!(matches!(b.recv_bytes_max(3), Err(ConnectionError::TooLarge { len: 8, limit: 3 })));
    /// assert_eq!(b.recv_bytes()?, b"too long");
    /// # Ok::<(), ConnectionError>(())
    /// ```
    ///
    /// # Errors
    /// [`ConnectionError::TooLarge`], or as [`Connection::recv_bytes`].
    pub fn recv_bytes_max(&mut self, maxlength: u64) -> Result<Vec<u8>, ConnectionError> {
        let len = self.next_frame(maxlength)?;
        let message = self.buffer[self.start..self.start + len].to_vec();
        self.start += len;
        Ok(message)
    }

    /// Receives one message into `buffer` and returns its length (Python's
    /// `conn.recv_bytes_into(buf)`).
    ///
    /// ```
    /// use common::connection::{pipe, ConnectionError};
    ///
    /// let (mut a, mut b) = pipe()?;
    /// let mut buffer = [0u8; 8];
    /// a.send_bytes(b"four")?;
    /// assert_eq!(b.recv_bytes_into(&mut buffer)?, 4);
    /// assert_eq!(&buffer[..4], b"four");
    /// a.send_bytes(b"much too long")?;
    /// match b.recv_bytes_into(&mut buffer) {
    ///     Err(ConnectionError::BufferTooShort { message, .. }) => assert_eq!(message, b"much too long"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), ConnectionError>(())
    /// ```
    ///
    /// # Errors
    /// [`ConnectionError::BufferTooShort`] (with the message, which is consumed), or
    /// as [`Connection::recv_bytes`].
    pub fn recv_bytes_into(&mut self, buffer: &mut [u8]) -> Result<usize, ConnectionError> {
        let message = self.recv_bytes()?;
        match buffer.get_mut(..message.len()) {
            Some(place) => {
                place.copy_from_slice(&message);
                Ok(message.len())
            }
            None => Err(ConnectionError::BufferTooShort {
                buffer: buffer.len(),
                message,
            }),
        }
    }

    /// Whether there is something to receive within `timeout` (Python's
    /// `conn.poll(timeout)`; `Duration::ZERO` only looks). A closed other end counts:
    /// the next receive then says [`ConnectionError::Eof`] at once.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (mut a, mut b) = common::connection::pipe()?;
    /// assert!(!b.poll(Duration::from_millis(10))?);
    /// a.send(&())?;
    /// assert!(b.poll(Duration::ZERO)?);
    /// # Ok::<(), common::connection::ConnectionError>(())
    /// ```
    ///
    /// # Errors
    /// [`ConnectionError::Closed`], [`ConnectionError::WriteOnly`].
    pub fn poll(&mut self, timeout: Duration) -> Result<bool, ConnectionError> {
        self.fd()?;
        if !self.readable {
            return Err(ConnectionError::WriteOnly);
        }
        if self.start < self.buffer.len() {
            return Ok(true);
        }
        let fd = self.fd.as_ref().ok_or(ConnectionError::Closed)?;
        sys::poll_readable(&[fd.as_fd()], timeout)
            .map(|ready| !ready.is_empty())
            .map_err(|e| ConnectionError::Os {
                call: "poll",
                code: e.raw_os_error().unwrap_or(libc::EIO),
            })
    }

    /// Reads until a whole frame is buffered, and returns its body's length; the body
    /// is `buffer[start..start + len]` then. A frame longer than `limit` is left unread.
    fn next_frame(&mut self, limit: u64) -> Result<usize, ConnectionError> {
        self.fd()?;
        if !self.readable {
            return Err(ConnectionError::WriteOnly);
        }
        self.fill(PREFIX, true)?;
        let prefix: [u8; PREFIX] = self.buffer[self.start..self.start + PREFIX]
            .try_into()
            .expect("PREFIX bytes");
        let len = u32::from_le_bytes(prefix);
        if u64::from(len) > limit {
            return Err(ConnectionError::TooLarge {
                len: u64::from(len),
                limit,
            });
        }
        let len = usize::try_from(len).map_err(|_| ConnectionError::TooLarge {
            len: u64::from(len),
            limit: usize::MAX as u64,
        })?;
        self.fill(PREFIX + len, false)?;
        self.start += PREFIX;
        Ok(len)
    }

    /// Reads until `buffer[start..]` holds at least `wanted` bytes. `between` says
    /// whether an end of file before them falls between messages (nothing buffered)
    /// or inside one.
    fn fill(&mut self, wanted: usize, between: bool) -> Result<(), ConnectionError> {
        if self.buffer.len() - self.start >= wanted {
            return Ok(());
        }
        // Move what is left to the front, and make room for the rest.
        self.buffer.drain(..self.start);
        self.start = 0;
        let fd = self.fd()?;
        while self.buffer.len() < wanted {
            let have = self.buffer.len();
            let room = (wanted - have).max(READ_SIZE);
            self.buffer.reserve(room);
            let spare = self.buffer.spare_capacity_mut();
            // SAFETY: `spare` is writable memory of at least `room` bytes owned by the
            // buffer; `fd` is open. The kernel writes at most `room` bytes.
            let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), room.min(spare.len())) };
            if n < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(os_error("read"));
            }
            if n == 0 {
                return Err(if between && have == 0 {
                    ConnectionError::Eof
                } else {
                    truncated(&self.buffer)
                });
            }
            // SAFETY: the kernel initialised `n` more bytes of the spare capacity.
            unsafe { self.buffer.set_len(have + n as usize) };
        }
        Ok(())
    }
}

/// The error for a frame cut short: how much of it came.
fn truncated(buffer: &[u8]) -> ConnectionError {
    match buffer.get(..PREFIX) {
        Some(prefix) => ConnectionError::Truncated {
            expected: u32::from_le_bytes(prefix.try_into().expect("PREFIX bytes")) as usize,
            got: buffer.len() - PREFIX,
        },
        None => ConnectionError::Truncated {
            expected: PREFIX,
            got: buffer.len(),
        },
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let way = match (self.readable, self.writable) {
            (true, true) => "duplex",
            (true, false) => "read-only",
            _ => "write-only",
        };
        match &self.fd {
            Some(fd) => write!(f, "<Connection fd={} {way}>", fd.as_raw_fd()),
            None => write!(f, "<Connection closed {way}>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_bytes_ranges_like_cpythons_test_sendbytes() {
        let (mut a, mut b) = pipe().unwrap();
        let msg = b"abcdefghijklmnopqrstuvwxyz";
        a.send_bytes(msg).unwrap();
        assert_eq!(b.recv_bytes().unwrap(), msg);
        a.send_bytes_range(msg, 5, 21).unwrap();
        assert_eq!(b.recv_bytes().unwrap(), &msg[5..]);
        a.send_bytes_range(msg, 26, 0).unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"");
        for (offset, size) in [(27, 0), (22, 5), (26, 1), (usize::MAX, 2)] {
            assert!(
                matches!(
                    a.send_bytes_range(msg, offset, size),
                    Err(ConnectionError::OutOfRange { .. })
                ),
                "{offset} {size}"
            );
        }
    }

    #[test]
    fn many_small_messages_arrive_whole_and_in_order() {
        let (mut a, mut b) = pipe().unwrap();
        for i in 0..100u32 {
            a.send(&i).unwrap();
        }
        for i in 0..100u32 {
            assert_eq!(b.recv::<u32>().unwrap(), i);
        }
    }

    #[test]
    fn a_message_cut_short_is_truncated_not_eof() {
        let (a, mut b) = pipe().unwrap();
        let fd = a.fd.as_ref().unwrap().as_raw_fd();
        let partial = [10u8, 0, 0, 0, b'h', b'i'];
        // SAFETY: `partial` is valid for reads of its length; `fd` is open.
        unsafe { libc::write(fd, partial.as_ptr().cast(), partial.len()) };
        drop(a);
        assert!(matches!(
            b.recv_bytes(),
            Err(ConnectionError::Truncated {
                expected: 10,
                got: 2
            })
        ));
    }
}
