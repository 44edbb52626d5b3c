//! Thin, checked wrappers over the few Linux calls `common` needs beyond `nix`.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::unistd::Pid;

/// The number of threads of this process, or why it cannot be told (no procfs mounted,
/// as on other Unixes or in some containers).
///
/// One `stat` of `/proc/self/task`, whose link count is 2 plus the number of threads
/// (Linux's procfs), instead of reading and parsing `/proc/self/status`: a start
/// asks this every time. `/proc/self/status` is read only if the count looks wrong.
pub(crate) fn thread_count() -> Result<usize, String> {
    use std::os::unix::fs::MetadataExt;
    if surely_single_threaded() {
        return Ok(1);
    }
    let links = std::fs::metadata("/proc/self/task")
        .map_err(|e| e.to_string())?
        .nlink();
    match usize::try_from(links) {
        Ok(links) if links >= 3 => Ok(links - 2),
        _ => {
            let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
            status
                .lines()
                .find_map(|line| line.strip_prefix("Threads:"))
                .and_then(|count| count.trim().parse().ok())
                .ok_or_else(|| "no Threads: line".to_string())
        }
    }
}

/// Whether glibc says that this process has never had a second thread
/// (`__libc_single_threaded`, glibc 2.32 and later: true at the start, false from the
/// first `pthread_create` on, and, in the glibc versions so far, never true again).
/// True is a sound answer without a system call; false means "ask the kernel", since
/// the other threads may have ended since.
fn surely_single_threaded() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            static __libc_single_threaded: libc::c_char;
        }
        // SAFETY: glibc defines this byte for the life of the process; only glibc
        // writes it, and only when this process creates a thread, which cannot happen
        // concurrently with this read when the value read is true (one thread).
        unsafe { std::ptr::read_volatile(&raw const __libc_single_threaded) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Registers `handler` to run at `exit()`, with the exit code (glibc's `on_exit`);
/// elsewhere, with `atexit`, and the code passed on as 0.
pub(crate) fn on_exit(handler: extern "C" fn(libc::c_int, *mut libc::c_void)) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            // glibc; the libc crate does not declare it.
            fn on_exit(
                handler: extern "C" fn(libc::c_int, *mut libc::c_void),
                arg: *mut libc::c_void,
            ) -> libc::c_int;
        }
        // SAFETY: `handler` is a plain `extern "C"` function that takes the exit code
        // and an argument it ignores; the null argument is never dereferenced.
        unsafe { on_exit(handler, std::ptr::null_mut()) };
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        static HANDLER: std::sync::OnceLock<extern "C" fn(libc::c_int, *mut libc::c_void)> =
            std::sync::OnceLock::new();
        extern "C" fn call() {
            if let Some(handler) = HANDLER.get() {
                handler(0, std::ptr::null_mut());
            }
        }
        let _ = HANDLER.set(handler);
        // SAFETY: `call` is an `extern "C" fn()` that never unwinds.
        unsafe { libc::atexit(call) };
    }
}

/// Flushes Rust's stdout, so that `fork()` does not copy unwritten output into the
/// child (which would print it a second time), and so that a child's output is out
/// before it leaves. (Rust's stderr has no buffer: flushing it would only take its
/// lock, a write to a page that the fork shared, for nothing.)
pub(crate) fn flush_std() {
    let _ = std::io::stdout().flush();
}

/// Cuts `name` to the 15 bytes the kernel keeps as a thread's name (`/proc/PID/comm`),
/// at a character boundary so that the name stays valid UTF-8, NUL-terminated (and
/// cut at a NUL of its own), in a buffer that needs no allocation.
pub(crate) fn os_name(name: &str) -> [u8; 16] {
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let mut buffer = [0u8; 16];
    buffer[..end].copy_from_slice(&name.as_bytes()[..end]);
    buffer
}

/// Gives the calling process the name that `ps` and `top` show (Linux's
/// `PR_SET_NAME`), from a buffer made by [`os_name`].
///
/// `prctl` is called directly, not through `nix`: a freshly forked child has none of
/// its parent's code pages mapped yet, so each function it calls for the first time
/// may cost it a page fault, and `nix`'s wrapper (and its check of the string) were
/// two of them.
#[inline]
pub(crate) fn set_os_name(name: &[u8; 16]) {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_NAME reads at most 15 bytes from the pointer, up to a NUL, and
    // `name` is 16 bytes long, borrowed for the call.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr());
    }
    #[cfg(not(target_os = "linux"))]
    let _ = name;
}

/// Opens a pidfd for `pid` (Linux 5.3 and later): it becomes readable when the process
/// exits, so a wait with a timeout needs no polling loop. `None` where unsupported.
pub(crate) fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: pidfd_open takes a pid and a flags word and returns a new file
        // descriptor or -1; it reads and writes no memory of ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
        Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// Waits until one of `fds` is readable (or hung up), or until `timeout` has passed.
/// Returns the indexes of the ready descriptors: empty on timeout or on a signal.
pub(crate) fn poll_readable(
    fds: &[BorrowedFd<'_>],
    timeout: Duration,
) -> std::io::Result<Vec<usize>> {
    let fds: Vec<(BorrowedFd<'_>, libc::c_short)> =
        fds.iter().map(|fd| (*fd, libc::POLLIN)).collect();
    poll(&fds, timeout)
}

/// Waits until one of `fds` is ready for its events (or hung up, or in error), or
/// until `timeout` has passed. Returns the indexes of the ready descriptors: empty on
/// timeout or on a signal.
pub(crate) fn poll(
    fds: &[(BorrowedFd<'_>, libc::c_short)],
    timeout: Duration,
) -> std::io::Result<Vec<usize>> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|(fd, events)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: *events,
            revents: 0,
        })
        .collect();
    // Round up, so that a wait never ends before the timeout it was given.
    let millis = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pollfds` is a valid, exclusively borrowed array of `pollfds.len()`
    // entries for the duration of the call, and every fd in it is borrowed open.
    let ready = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, millis) };
    if ready < 0 {
        let error = std::io::Error::last_os_error();
        if error.kind() == std::io::ErrorKind::Interrupted {
            return Ok(Vec::new());
        }
        return Err(error);
    }
    Ok(pollfds
        .iter()
        .enumerate()
        .filter(|(_, p)| p.revents != 0)
        .map(|(i, _)| i)
        .collect())
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub(crate) fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// Grows a pipe's buffer to `size` bytes where the system allows (Linux); a refusal
/// only costs speed, so it is ignored.
pub(crate) fn grow_pipe(fd: &OwnedFd, size: libc::c_int) {
    #[cfg(target_os = "linux")]
    // SAFETY: F_SETPIPE_SZ takes an int and touches no memory of ours; `fd` is open.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (fd, size);
}

/// Makes reads and writes on an end of a [`pipe`] wait (`true`) or return
/// `WouldBlock` instead (`false`).
///
/// One system call, not a read of the flags and a write: `F_SETFL` ignores the access
/// mode, and `O_NONBLOCK` is the only status flag our pipes ever carry, so the new flags
/// are known without asking. (Not for a descriptor that may carry `O_APPEND` or
/// `O_ASYNC`: they would be cleared.)
pub(crate) fn set_pipe_blocking(fd: BorrowedFd<'_>, blocking: bool) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = if blocking {
        OFlag::empty()
    } else {
        OFlag::O_NONBLOCK
    };
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
    Ok(())
}

/// Tells the allocator to keep freed memory for reuse instead of handing it back to
/// the kernel (glibc): a pool worker allocates and frees buffers of the same large size
/// for every chunk, and fresh memory costs a page fault per 4 KiB.
pub(crate) fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters; any value is accepted
    // or refused with a return code.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

/// The pid of a child of this process that has ended and is not reaped yet, without
/// reaping it (`waitid` with `WNOWAIT`); `None` when there is none.
pub(crate) fn an_ended_child() -> Option<i32> {
    // SAFETY: a zeroed siginfo_t is a valid value for waitid to fill in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes into `info`, a live siginfo_t; WNOWAIT leaves the child as
    // it is, WNOHANG returns at once.
    let code = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if code != 0 {
        return None;
    }
    // SAFETY: waitid filled `info` in; si_pid is 0 when no child had ended.
    let pid = unsafe { info.si_pid() };
    (pid != 0).then_some(pid)
}

/// Holds back every signal that can be held back (all but SIGKILL and SIGSTOP) until
/// dropped; those that arrive meanwhile are delivered then. Used around the few system
/// calls between creating a shared-memory name and unlinking it, so that Ctrl-C or a
/// SIGTERM cannot leave the name behind.
pub(crate) struct SignalsHeldBack {
    previous: libc::sigset_t,
}

impl SignalsHeldBack {
    pub(crate) fn new() -> SignalsHeldBack {
        let mut all = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        let mut previous = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `sigfillset` initialises `all`; `pthread_sigmask` reads `all` and
        // initialises `previous` (it cannot fail with SIG_BLOCK and valid pointers).
        unsafe {
            libc::sigfillset(all.as_mut_ptr());
            libc::pthread_sigmask(libc::SIG_BLOCK, all.as_ptr(), previous.as_mut_ptr());
            SignalsHeldBack {
                previous: previous.assume_init(),
            }
        }
    }
}

impl Drop for SignalsHeldBack {
    fn drop(&mut self) {
        // SAFETY: `previous` is the mask saved in `new`, a valid sigset_t.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut()) };
    }
}

/// Holds back SIGPIPE until dropped, so that a write into a pipe whose reader is gone
/// fails with EPIPE whatever the program does with the signal (a program that restores
/// its default action would otherwise die of it). After such a failure, `consume`
/// takes the SIGPIPE that the write raised, unless one was pending already (that one
/// belongs to the program and is delivered when this is dropped).
pub(crate) struct SigpipeHeldBack {
    previous: libc::sigset_t,
    pending_before: bool,
}

fn sigpipe_set() -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises `set`; sigaddset adds a valid signal to it.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        set.assume_init()
    }
}

fn sigpipe_pending() -> bool {
    let mut pending = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigpending initialises `pending`; sigismember only reads it.
    unsafe {
        libc::sigpending(pending.as_mut_ptr());
        libc::sigismember(pending.as_ptr(), libc::SIGPIPE) == 1
    }
}

impl SigpipeHeldBack {
    pub(crate) fn new() -> SigpipeHeldBack {
        let set = sigpipe_set();
        let mut previous = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `set` is initialised; pthread_sigmask initialises `previous`.
        let previous = unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, previous.as_mut_ptr());
            previous.assume_init()
        };
        SigpipeHeldBack {
            previous,
            pending_before: sigpipe_pending(),
        }
    }

    /// Takes the SIGPIPE that a failed write just raised, if it is ours to take.
    pub(crate) fn consume(&self) {
        if self.pending_before || !sigpipe_pending() {
            return;
        }
        let set = sigpipe_set();
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `set` and `zero` are valid for the call; the signal's details are not
        // wanted (null).
        unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) };
    }
}

impl Drop for SigpipeHeldBack {
    fn drop(&mut self) {
        // SAFETY: `previous` is the mask saved in `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut()) };
    }
}

/// Allocates the `len` bytes of the file `fd` now (tmpfs pages for shared memory), so
/// that a full file system is an error here rather than a SIGBUS at the first write.
/// Returns the error number on failure.
pub(crate) fn reserve(fd: &OwnedFd, len: usize) -> Result<(), i32> {
    let len = libc::off_t::try_from(len).map_err(|_| libc::EFBIG)?;
    // SAFETY: posix_fallocate takes a descriptor, which `fd` keeps open, and integers.
    match unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        code => Err(code),
    }
}

/// Leaves the process at once with `code`: no destructors, no `atexit` handlers.
/// Flushes Rust's stdout and stderr first.
pub(crate) fn exit_now(code: i32) -> ! {
    flush_std();
    // SAFETY: `_exit` ends the process without running any code of ours; it is always
    // safe to call, and is what a forked child must use to avoid running the parent's
    // destructors and exit handlers.
    unsafe { libc::_exit(code) }
}

/// This process's pid, cached: a `Lock` records its holder and a `Barrier` its waiting
/// parties on every call, and `getpid` is a system call. A `pthread_atfork` handler
/// clears the cache in every forked child, whoever forks.
pub(crate) fn pid() -> u32 {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        extern "C" fn forget() {
            crate::process::this_process()
                .pid
                .store(0, Ordering::Relaxed);
        }
        // SAFETY: `forget` is an `extern "C" fn()` that only stores an integer, so it
        // is safe to run in a freshly forked child; the other two handlers are absent.
        unsafe {
            libc::pthread_atfork(None, None, Some(forget));
        }
    });
    // A forked child learns its pid when it first asks (0: not known yet), so that a
    // child that never asks makes no system call for it.
    let cached = &crate::process::this_process().pid;
    match cached.load(Ordering::Relaxed) {
        0 => {
            let pid = std::process::id();
            cached.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

/// Whether process `pid` has ended (reaped, or a zombie waiting to be reaped).
pub(crate) fn has_exited(pid: u32) -> bool {
    let pid = Pid::from_raw(pid as i32);
    match pidfd_open(pid) {
        // A pidfd becomes readable when its process has ended, zombie or not.
        Some(fd) => {
            poll_readable(&[fd.as_fd()], Duration::ZERO).is_ok_and(|ready| !ready.is_empty())
        }
        None => nix::sys::signal::kill(pid, None) == Err(nix::errno::Errno::ESRCH),
    }
}

/// Locks `mutex`, waiting at most `timeout` measured on `CLOCK_MONOTONIC` (so that a
/// step of the wall clock changes nothing), and returns the pthread return code.
///
/// The deadline is computed here with the nanoseconds carried into seconds (raw_sync
/// forgets the carry) and saturated instead of overflowing.
pub(crate) fn mutex_lock_monotonic(mutex: *mut libc::pthread_mutex_t, timeout: Duration) -> i32 {
    let deadline = deadline_on(libc::CLOCK_MONOTONIC, timeout);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            // glibc 2.30 and later; the libc crate does not declare it.
            fn pthread_mutex_clocklock(
                mutex: *mut libc::pthread_mutex_t,
                clock: libc::clockid_t,
                abstime: *const libc::timespec,
            ) -> libc::c_int;
        }
        // SAFETY: the caller passes an initialised, mapped mutex; `deadline` is a valid
        // timespec for the duration of the call.
        unsafe { pthread_mutex_clocklock(mutex, libc::CLOCK_MONOTONIC, &deadline) }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let deadline = deadline_on(libc::CLOCK_REALTIME, timeout);
        // SAFETY: as above.
        unsafe { libc::pthread_mutex_timedlock(mutex, &deadline) }
    }
}

/// The absolute time on `clock` that lies `timeout` from now, nanoseconds carried into
/// seconds, saturated instead of overflowing.
pub(crate) fn deadline_on(clock: libc::clockid_t, timeout: Duration) -> libc::timespec {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(clock, &mut now) };
    let mut nanos = now.tv_nsec as u64 + u64::from(timeout.subsec_nanos());
    let carry = nanos / 1_000_000_000;
    nanos %= 1_000_000_000;
    let secs = i64::try_from(timeout.as_secs())
        .unwrap_or(i64::MAX)
        .saturating_add(seconds_of(now))
        .saturating_add(carry as i64);
    libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: nanos as libc::c_long,
    }
}

/// The seconds of `time` as an `i64`, whatever the width of the platform's `time_t`.
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn seconds_of(time: libc::timespec) -> i64 {
    time.tv_sec as i64
}

/// Sleeps until `word` no longer holds `expected`, a wake-up, a signal, or `timeout`
/// (`None`: no limit). Spurious returns happen: callers re-check their condition. The
/// word may live in memory shared between processes (a non-private futex).
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    #[cfg(target_os = "linux")]
    {
        let relative = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let relative_ptr = relative
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `word` is a valid, aligned 32-bit atomic for the call; the kernel
        // only reads it, and reads `relative_ptr`, which is null or points to a live
        // timespec. FUTEX_WAIT without FUTEX_PRIVATE_FLAG works across processes.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                expected,
                relative_ptr,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        if word.load(Ordering::SeqCst) == expected {
            let nap = Duration::from_micros(200);
            std::thread::sleep(timeout.map_or(nap, |t| t.min(nap)));
        }
    }
}

/// Wakes every process sleeping in [`futex_wait`] on `word`.
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    futex_wake(word, i32::MAX);
}

/// Wakes at most `count` processes sleeping in [`futex_wait`] on `word`.
pub(crate) fn futex_wake(word: &AtomicU32, count: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: `word` is a valid, aligned 32-bit atomic; FUTEX_WAKE reads no memory.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, count);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (word, count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_end_switches_between_waiting_and_not() {
        use std::io::{Read, Write};
        let (read, write) = pipe().unwrap();
        let mut reader = std::fs::File::from(read);
        let mut writer = std::fs::File::from(write);
        set_pipe_blocking(reader.as_fd(), false).unwrap();
        set_pipe_blocking(writer.as_fd(), false).unwrap();
        let mut byte = [0u8];
        let empty = reader.read(&mut byte).unwrap_err();
        assert_eq!(empty.kind(), std::io::ErrorKind::WouldBlock);
        // The access modes are untouched: the write end still writes, the read end reads.
        writer.write_all(b"x").unwrap();
        assert_eq!(reader.read(&mut byte).unwrap(), 1);
        set_pipe_blocking(reader.as_fd(), true).unwrap();
        // SAFETY: F_GETFL takes a descriptor, which `reader` keeps open.
        let flags = unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags & libc::O_NONBLOCK, 0, "waiting again");
        assert_eq!(flags & libc::O_ACCMODE, libc::O_RDONLY);
    }

    #[test]
    fn os_name_is_cut_to_fifteen_bytes() {
        let text = |name: [u8; 16]| {
            let name = std::ffi::CStr::from_bytes_until_nul(&name).unwrap();
            name.to_bytes().to_vec()
        };
        assert_eq!(text(os_name("do_something process 1")), b"do_something pr");
        assert_eq!(text(os_name("short")), b"short");
    }

    #[test]
    fn os_name_cuts_at_a_character_boundary() {
        // 'é' is two bytes: 14 ASCII bytes then 'é' would straddle byte 15.
        let name = "abcdefghijklmné";
        assert_eq!(&os_name(name)[..15], b"abcdefghijklmn\0");
    }

    #[test]
    fn deadlines_carry_nanoseconds() {
        for millis in [0, 1, 999, 1000, 1500, 123_456] {
            let deadline = deadline_on(libc::CLOCK_MONOTONIC, Duration::from_millis(millis));
            assert!(
                (0..1_000_000_000).contains(&deadline.tv_nsec),
                "{millis} ms"
            );
        }
        let far = deadline_on(libc::CLOCK_MONOTONIC, Duration::MAX);
        assert_eq!(far.tv_sec, i64::MAX as libc::time_t);
    }

    #[test]
    fn this_process_has_not_exited() {
        assert!(!has_exited(std::process::id()));
        assert_eq!(pid(), std::process::id());
    }

    #[test]
    fn futex_wait_returns_at_once_when_the_word_differs() {
        let word = AtomicU32::new(1);
        let started = std::time::Instant::now();
        futex_wait(&word, 0, Some(Duration::from_secs(5)));
        assert!(started.elapsed() < Duration::from_secs(1));
        futex_wait(&word, 1, Some(Duration::from_millis(20)));
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn thread_count_sees_the_test_harness_threads() {
        let handle = std::thread::spawn(thread_count);
        let seen = handle.join().unwrap();
        assert!(seen.clone().unwrap_or(2) >= 2, "{seen:?}");
    }
}
