//! `Process`: Python's `multiprocessing.Process`, over `fork()`.
//!
//! (Python's names and this crate's side by side: the repository's `ARCHITECTURE.md`.)
//!
//! The target is a closure. It runs in a forked child, which is a copy of the parent:
//! whatever the closure captured is the child's own copy, and what the child changes in
//! it the parent never sees (use [`crate::shm`] to share memory).
//!
//! What happens around the target, as in Python:
//! - the child's exit code is 0 when the target returns (or returns `Ok`), 1 when it
//!   panics or returns `Err` (after printing `Process NAME:` and the message to stderr),
//!   [`OUTPUT_FAILED`] (120, without a report) when it panics because its standard
//!   output cannot be written, and `-N` when a signal `N` ends it (`-15` after
//!   [`Process::terminate`]);
//! - when the parent leaves (returns from `main` or calls `std::process::exit`), the
//!   children it has not joined are handled by an exit hook: daemonic ones are
//!   terminated (and killed if they ignore SIGTERM for a second), then all are joined;
//! - a daemonic child is also killed by the kernel when its parent dies without running
//!   exit hooks, say by SIGKILL (`PR_SET_PDEATHSIG`), which Python cannot promise.
//!
//! ```
//! use common::process::Process;
//!
//! let mut p = Process::new(|| println!("hello from the child")).with_name("greeter");
//! p.start()?;
//! p.join_timeout(std::time::Duration::from_secs(20))?;
//! assert_eq!(p.exitcode(), Some(0));
//! # Ok::<(), common::process::ProcessError>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::io::Write;
use std::os::fd::AsFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::prctl;
use nix::sys::signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{self, ForkResult, Pid};

use crate::sys;
use crate::timeline::{self, What};

/// How long the exit hook gives a terminated daemonic child before it sends SIGKILL.
const DAEMON_GRACE: Duration = Duration::from_secs(1);

/// A signal (Python's `signal.SIGTERM` and friends), by its number: `common`'s own
/// type, so that a user of this crate is not tied to the version of `nix` it uses.
///
/// ```
/// use common::process::Signal;
///
/// assert_eq!(Signal::SIGTERM.number(), 15);
/// assert_eq!(Signal::SIGKILL.to_string(), "SIGKILL");
/// assert_eq!(Signal::from_number(9), Some(Signal::SIGKILL));
/// assert_eq!(Signal::from_number(0), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(i32);

impl Signal {
    /// Hangup.
    pub const SIGHUP: Signal = Signal(libc::SIGHUP);
    /// Interrupt (Ctrl-C).
    pub const SIGINT: Signal = Signal(libc::SIGINT);
    /// Quit (Ctrl-\\).
    pub const SIGQUIT: Signal = Signal(libc::SIGQUIT);
    /// Kill: cannot be caught or ignored.
    pub const SIGKILL: Signal = Signal(libc::SIGKILL);
    /// User-defined signal 1.
    pub const SIGUSR1: Signal = Signal(libc::SIGUSR1);
    /// User-defined signal 2.
    pub const SIGUSR2: Signal = Signal(libc::SIGUSR2);
    /// Write to a pipe with no reader.
    pub const SIGPIPE: Signal = Signal(libc::SIGPIPE);
    /// Alarm clock.
    pub const SIGALRM: Signal = Signal(libc::SIGALRM);
    /// Termination: what `terminate()` sends.
    pub const SIGTERM: Signal = Signal(libc::SIGTERM);
    /// Continue a stopped process.
    pub const SIGCONT: Signal = Signal(libc::SIGCONT);
    /// Stop: cannot be caught or ignored.
    pub const SIGSTOP: Signal = Signal(libc::SIGSTOP);

    /// The signal with this number, if there is one.
    ///
    /// ```
    /// assert!(common::process::Signal::from_number(15).is_some());
    /// ```
    pub fn from_number(number: i32) -> Option<Signal> {
        nix::sys::signal::Signal::try_from(number)
            .ok()
            .map(|_| Signal(number))
    }

    /// The signal's number (15 for SIGTERM).
    ///
    /// ```
    /// assert_eq!(common::process::Signal::SIGINT.number(), 2);
    /// ```
    pub fn number(self) -> i32 {
        self.0
    }

    /// The signal's name, as Python's `signal.Signals(n).name` gives it.
    ///
    /// ```
    /// assert_eq!(common::process::Signal::SIGUSR1.as_str(), "SIGUSR1");
    /// ```
    pub fn as_str(self) -> &'static str {
        self.to_nix()
            .map_or("SIG?", nix::sys::signal::Signal::as_str)
    }

    fn to_nix(self) -> Option<nix::sys::signal::Signal> {
        nix::sys::signal::Signal::try_from(self.0).ok()
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can go wrong when starting, joining or signalling a [`Process`].
///
/// ```
/// use common::process::{Process, ProcessError};
///
/// let p = Process::new(|| ());
/// assert!(matches!(p.join(), Err(ProcessError::NotStarted { .. })));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// `start()` was called a second time; a process can be started once, as in Python.
    #[error("process '{name}' was already started; create a new Process to run the target again")]
    AlreadyStarted {
        /// The process's name.
        name: String,
    },
    /// `join()`, `terminate()`, `kill()` or `signal()` before `start()`.
    #[error("process '{name}' has not been started; call start() first")]
    NotStarted {
        /// The process's name.
        name: String,
    },
    /// The name holds a NUL byte, which no OS process name can carry.
    #[error("process name {name:?} contains a NUL byte; use a name without one")]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// `fork()` was refused because the process runs more than one thread.
    #[error(
        "cannot fork: this process runs {threads} threads, and fork() is only sound with one \
         (a lock held by another thread would stay locked in the child); \
         start processes before starting threads"
    )]
    MultiThreaded {
        /// The number of threads seen in `/proc/self/status`.
        threads: usize,
    },
    /// A daemonic process tried to start a child, which Python forbids too: the
    /// daemon's children would be orphaned when the daemon is terminated.
    #[error("daemonic processes are not allowed to have children (as in Python)")]
    DaemonicParent,
    /// The `Process` was created by another process (a copy inherited through fork).
    #[error(
        "process '{name}' was created by process {owner}; only that process can start, \
         join or signal it"
    )]
    NotOwner {
        /// The process's name.
        name: String,
        /// The pid of the process that created the `Process` value.
        owner: u32,
    },
    /// `start()` could not tell whether other threads run (`/proc/self/status` could
    /// not be read), so it refuses to fork rather than risk it.
    #[error(
        "cannot fork: unable to tell whether this process runs other threads \
         (/proc/self/status: {reason}); fork() is only sound with one thread"
    )]
    ThreadsUnknown {
        /// Why the thread count could not be read.
        reason: String,
    },
    /// A system call failed.
    #[error("{call} failed: {}", std::io::Error::from_raw_os_error(*.code))]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The error number it returned (`errno`).
        code: i32,
    },
}

impl ProcessError {
    fn os(call: &'static str, errno: Errno) -> ProcessError {
        ProcessError::Os {
            call,
            code: errno as i32,
        }
    }
}

/// What a target may return: `()`, or a `Result` whose error fails the process
/// (exit code 1, the error printed to stderr like a Python traceback).
///
/// ```
/// use common::process::Process;
///
/// let mut fails = Process::new(|| -> Result<(), String> { Err("no input".into()) });
/// fails.start()?;
/// assert_eq!(fails.join_timeout(std::time::Duration::from_secs(20))?, Some(1), "an Err is a failure, as an exception is");
/// # Ok::<(), common::process::ProcessError>(())
/// ```
pub trait TargetResult {
    /// `Ok` for success, `Err` with the message to print for a failure.
    fn into_outcome(self) -> Result<(), String>;
}

impl TargetResult for () {
    fn into_outcome(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display> TargetResult for Result<(), E> {
    fn into_outcome(self) -> Result<(), String> {
        self.map_err(|error| format!("{error:#}"))
    }
}

/// A process's target, boxed. Not a boxed `FnOnce`: calling one frees the box, and
/// in a forked child that free (or any write to the heap) copies the allocator's
/// pages (a page fault each) for nothing, since the child leaves with `_exit` right
/// after. A child runs its target with [`RunOnce::run_in_place`] instead, which reads
/// the closure out of the box and writes nothing there.
type Target = Box<dyn RunOnce>;

trait RunOnce {
    /// Runs the closure, read out of `self`.
    ///
    /// # Safety
    /// Once only, and `self` must then never be used or dropped again (the forked
    /// child forgets it, and leaves with `_exit`): the closure has moved out.
    unsafe fn run_in_place(&mut self) -> Result<(), String>;
}

/// A closure kept for [`RunOnce`]; dropped normally when it never ran (the parent's
/// copy, or a process never started).
struct OnceTarget<F>(std::mem::ManuallyDrop<F>);

impl<F: FnOnce() -> R, R: TargetResult> RunOnce for OnceTarget<F> {
    unsafe fn run_in_place(&mut self) -> Result<(), String> {
        // SAFETY: the caller runs this once and never touches `self` again, so the
        // closure read here is not used or dropped twice. `take` reads; it writes
        // nothing into the box.
        let target = unsafe { std::mem::ManuallyDrop::take(&mut self.0) };
        target().into_outcome()
    }
}

impl<F> Drop for OnceTarget<F> {
    fn drop(&mut self) {
        // SAFETY: a `OnceTarget` that is dropped never ran (see `run_in_place`'s contract),
        // so it still holds its closure, dropped here once.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.0) }
    }
}

/// A child process running a closure: Python's `multiprocessing.Process`.
///
/// Build it with [`Process::new`], [`Process::name`] and [`Process::daemon`], then
/// [`start`](Process::start) it. Dropping a `Process` neither kills nor joins the
/// child: as in Python, it is joined when the parent exits.
///
/// ```
/// use common::process::Process;
///
/// let mut p = Process::new(|| std::thread::sleep(std::time::Duration::from_secs(10)));
/// assert_eq!(p.to_string(), format!("<Process name='{}' parent={} initial>",
///     p.name(), std::process::id()));
/// p.start()?;
/// assert!(p.is_alive());
/// p.terminate()?;
/// p.join_timeout(std::time::Duration::from_secs(20))?;
/// assert_eq!(p.exitcode(), Some(-15));
/// assert!(p.to_string().ends_with("stopped exitcode=-SIGTERM>"));
/// # Ok::<(), common::process::ProcessError>(())
/// ```
pub struct Process {
    name: String,
    daemon: bool,
    identity: Vec<u32>,
    parent: Pid,
    target: Option<Target>,
    child: Option<Arc<Child>>,
}

impl Process {
    /// A process that will run `target` once started, named `Process-N` where `N`
    /// counts the processes created so far by this process (as in Python, a process
    /// given a name of its own uses up a number too). A child's own children are named
    /// `Process-N:M`.
    ///
    /// ```
    /// use common::process::Process;
    ///
    /// let first = Process::new(|| ());
    /// let second = Process::new(|| ()).with_name("worker");
    /// let third = Process::new(|| ());
    /// assert_eq!(first.name(), "Process-1");
    /// assert_eq!(second.name(), "worker");
    /// assert_eq!(third.name(), "Process-3");
    /// ```
    pub fn new<F, R>(target: F) -> Self
    where
        F: FnOnce() -> R + 'static,
        R: TargetResult,
    {
        let identity = {
            let mut current = current();
            current.created += 1;
            let mut identity = current.identity.to_vec();
            identity.push(current.created);
            identity
        };
        let numbers: Vec<String> = identity.iter().map(u32::to_string).collect();
        Process {
            name: format!("Process-{}", numbers.join(":")),
            daemon: false,
            identity,
            parent: Pid::from_raw(sys::pid() as i32),
            target: Some(Box::new(OnceTarget(std::mem::ManuallyDrop::new(target)))),
            child: None,
        }
    }

    /// Sets the process's name (Python's `name=`), shown by [`current_process`] in the
    /// child and, cut to 15 bytes, as the child's OS name in `ps` and `/proc/PID/comm`.
    ///
    /// ```
    /// let p = common::process::Process::new(|| ()).with_name("do_something process 1");
    /// assert_eq!(p.name(), "do_something process 1");
    /// ```
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Makes the process daemonic (Python's `daemon=True`): it is terminated, not
    /// waited for, when the parent exits, and killed by the kernel if the parent dies.
    ///
    /// ```
    /// let p = common::process::Process::new(|| ()).daemon(true);
    /// assert!(p.is_daemon());
    /// ```
    #[must_use]
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// The process's name (Python's `p.name`); [`with_name`](Process::with_name) sets
    /// it.
    ///
    /// ```
    /// let p = common::process::Process::new(|| ()).with_name("worker");
    /// assert_eq!(p.name(), "worker");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the process is daemonic (Python's `p.daemon`).
    ///
    /// ```
    /// assert!(!common::process::Process::new(|| ()).is_daemon());
    /// ```
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// The child's pid once started (Python's `p.pid`), `None` before.
    ///
    /// ```
    /// let mut p = common::process::Process::new(|| ());
    /// assert_eq!(p.pid(), None);
    /// p.start()?;
    /// assert!(p.pid().is_some_and(|pid| pid != std::process::id()));
    /// p.join_timeout(std::time::Duration::from_secs(20))?;
    /// # Ok::<(), common::process::ProcessError>(())
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|child| child.pid.as_raw() as u32)
    }

    /// Forks the child, which runs the target and exits (Python's `p.start()`).
    ///
    /// Flushes stdout and stderr first, so that nothing printed before is printed twice.
    ///
    /// ```
    /// let mut p = common::process::Process::new(|| ());
    /// p.start()?;
    /// assert!(p.start().is_err(), "a process starts once");
    /// p.join_timeout(std::time::Duration::from_secs(20))?;
    /// # Ok::<(), common::process::ProcessError>(())
    /// ```
    ///
    /// # Errors
    /// [`ProcessError::AlreadyStarted`], [`ProcessError::InvalidName`],
    /// [`ProcessError::MultiThreaded`] (fork is unsound with other threads running),
    /// [`ProcessError::ThreadsUnknown`] (when that cannot be checked),
    /// [`ProcessError::DaemonicParent`], [`ProcessError::NotOwner`], or
    /// [`ProcessError::Os`] when `fork()` fails.
    pub fn start(&mut self) -> Result<(), ProcessError> {
        self.check_owner()?;
        if self.name.as_bytes().contains(&0) {
            return Err(ProcessError::InvalidName {
                name: self.name.clone(),
            });
        }
        let os_name = sys::os_name(&self.name);
        if current().daemon {
            return Err(ProcessError::DaemonicParent);
        }
        ensure_single_threaded()?;
        reap_finished_children();
        prepare_first_start();
        if self.target.is_none() {
            return Err(ProcessError::AlreadyStarted {
                name: self.name.clone(),
            });
        }
        // Before the target is taken: a failure here leaves the process startable.
        let handover =
            crate::connection::Handover::before_fork().map_err(|e| ProcessError::Os {
                call: "pipe",
                code: e.raw_os_error().unwrap_or(libc::EIO),
            })?;
        let target = self.target.take().expect("checked just above");
        // Made before the fork, with room kept for it in the registry, its pid set
        // after: an allocation after the fork would write to the allocator's pages,
        // which the fork has just shared with the child (a page fault each, 2 µs or more).
        let mut child = Arc::new(Child {
            pid: Pid::from_raw(0),
            daemon: self.daemon,
            exitcode: OnceLock::new(),
        });
        children().reserve(1);
        sys::flush_std();

        // SAFETY: the process is single-threaded (checked just above), so no other
        // thread can hold a lock that the child would inherit locked. The child runs
        // only `run_child`, which never returns: it leaves with `_exit`.
        match unsafe { unistd::fork() } {
            Err(errno) => {
                self.target = Some(target);
                Err(ProcessError::os("fork", errno))
            }
            Ok(ForkResult::Child) => {
                if let Some(handover) = handover {
                    handover.in_child();
                }
                // SAFETY: in the child, `self` is never moved, changed or dropped: the
                // child does not return from `start` (`run_child` leaves with `_exit`),
                // and `start` holds `self` borrowed mutably all along, so no code of
                // the target can reach it. Its name and identity stay where they are,
                // valid, for the rest of the child's life. Borrowed rather than copied:
                // a copy made in the child would write to the allocator's pages (a page
                // fault each); one made in the parent would be freed there after the
                // fork (the same).
                let (name, identity) = unsafe { (forever(&self.name), forever(&self.identity)) };
                let setup = ChildSetup {
                    name,
                    os_name,
                    identity,
                    daemon: self.daemon,
                    parent: self.parent,
                };
                run_child(setup, target)
            }
            Ok(ForkResult::Parent { child: pid }) => {
                // The parent's copy of the target (and of what it captured) goes now.
                drop(target);
                if let Some(handover) = handover {
                    handover.in_parent();
                }
                timeline::note_with(|| What::Started {
                    child: pid.as_raw() as u32,
                    name: self.name.clone(),
                    daemon: self.daemon,
                });
                Arc::get_mut(&mut child).expect("not shared yet").pid = pid;
                children().push(Arc::clone(&child));
                self.child = Some(child);
                Ok(())
            }
        }
    }

    /// Waits for the child to end and returns its exit code (Python's `p.join()`).
    ///
    /// ```
    /// let mut p = common::process::Process::new(|| Err::<(), _>("no luck"));
    /// p.start()?;
    /// assert_eq!(p.join_timeout(std::time::Duration::from_secs(20))?, Some(1), "an Err fails the process, as an exception does");
    /// # Ok::<(), common::process::ProcessError>(())
    /// ```
    ///
    /// # Errors
    /// [`ProcessError::NotStarted`], [`ProcessError::NotOwner`], or
    /// [`ProcessError::Os`] if `waitpid` fails.
    pub fn join(&self) -> Result<i32, ProcessError> {
        self.started_child()?.wait()
    }

    /// Waits at most `timeout` for the child to end (Python's `p.join(timeout)`):
    /// `Some(exit code)` if it ended, `None` if it is still running.
    ///
    /// ```
    /// use std::time::Duration;
    /// use common::process::Process;
    ///
    /// let mut p = Process::new(|| std::thread::sleep(Duration::from_secs(5)));
    /// p.start()?;
    /// assert_eq!(p.join_timeout(Duration::from_millis(50))?, None);
    /// assert!(p.is_alive());
    /// p.kill()?;
    /// assert_eq!(p.join_timeout(Duration::from_secs(5))?, Some(-9));
    /// # Ok::<(), common::process::ProcessError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Process::join`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<i32>, ProcessError> {
        self.started_child()?.wait_timeout(timeout)
    }

    /// Sends SIGTERM (Python's `p.terminate()`). Does nothing once the child has ended.
    ///
    /// ```
    /// let mut p = common::process::Process::new(|| std::thread::sleep(std::time::Duration::from_secs(9)));
    /// p.start()?;
    /// p.terminate()?;
    /// assert_eq!(p.join_timeout(std::time::Duration::from_secs(20))?, Some(-15));
    /// p.terminate()?; // a no-op now
    /// # Ok::<(), common::process::ProcessError>(())
    /// ```
    ///
    /// # Errors
    /// [`ProcessError::NotStarted`], [`ProcessError::NotOwner`].
    pub fn terminate(&self) -> Result<(), ProcessError> {
        self.signal(Signal::SIGTERM)
    }

    /// Sends SIGKILL (Python's `p.kill()`). Does nothing once the child has ended.
    ///
    /// ```
    /// let mut p = common::process::Process::new(|| std::thread::sleep(std::time::Duration::from_secs(9)));
    /// p.start()?;
    /// p.kill()?;
    /// assert_eq!(p.join_timeout(std::time::Duration::from_secs(20))?, Some(-9));
    /// # Ok::<(), common::process::ProcessError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Process::terminate`].
    pub fn kill(&self) -> Result<(), ProcessError> {
        self.signal(Signal::SIGKILL)
    }

    /// Sends `signal` to the child (Python's `os.kill(p.pid, signal)`), unless it has
    /// already ended.
    ///
    /// ```
    /// use common::process::{Process, Signal};
    ///
    /// let mut p = Process::new(|| std::thread::sleep(std::time::Duration::from_secs(9)));
    /// p.start()?;
    /// p.signal(Signal::SIGUSR1)?;
    /// assert_eq!(p.join_timeout(std::time::Duration::from_secs(20))?, Some(-10));
    /// # Ok::<(), common::process::ProcessError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Process::terminate`].
    pub fn signal(&self, signal: Signal) -> Result<(), ProcessError> {
        self.started_child()?.signal(signal)
    }

    /// Whether the child has been started and has not ended yet (Python's
    /// `p.is_alive()`). Reaps the child if it has ended, so no zombie stays.
    ///
    /// ```
    /// let mut p = common::process::Process::new(|| ());
    /// assert!(!p.is_alive(), "not started yet");
    /// p.start()?;
    /// p.join_timeout(std::time::Duration::from_secs(20))?;
    /// assert!(!p.is_alive());
    /// # Ok::<(), common::process::ProcessError>(())
    /// ```
    pub fn is_alive(&self) -> bool {
        self.child
            .as_ref()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// The exit code (Python's `p.exitcode`): `None` before start and while running,
    /// `Some(0)` on success, `Some(1)` after a panic or an `Err`, `Some(-N)` when
    /// signal `N` ended the child.
    ///
    /// ```
    /// let mut p = common::process::Process::new(|| ());
    /// assert_eq!(p.exitcode(), None);
    /// p.start()?;
    /// p.join_timeout(std::time::Duration::from_secs(20))?;
    /// assert_eq!(p.exitcode(), Some(0));
    /// # Ok::<(), common::process::ProcessError>(())
    /// ```
    pub fn exitcode(&self) -> Option<i32> {
        self.child
            .as_ref()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    fn started_child(&self) -> Result<&Child, ProcessError> {
        self.check_owner()?;
        self.child
            .as_deref()
            .ok_or_else(|| ProcessError::NotStarted {
                name: self.name.clone(),
            })
    }

    fn check_owner(&self) -> Result<(), ProcessError> {
        // The cached pid: `getpid` is a system call, and this runs on every call.
        if self.parent.as_raw() as u32 == sys::pid() {
            Ok(())
        } else {
            Err(ProcessError::NotOwner {
                name: self.name.clone(),
                owner: self.parent.as_raw() as u32,
            })
        }
    }
}

/// Python's `repr(p)`, e.g. `<Process name='Process-1' pid=42 parent=41 started>`.
impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exitcode = self.exitcode();
        let status = match (&self.child, exitcode) {
            (None, _) => "initial",
            (Some(_), None) => "started",
            (Some(_), Some(_)) => "stopped",
        };
        write!(f, "<Process name='{}'", self.name)?;
        if let Some(pid) = self.pid() {
            write!(f, " pid={pid}")?;
        }
        write!(f, " parent={} {status}", self.parent)?;
        if let Some(code) = exitcode {
            write!(f, " exitcode={}", exitcode_name(code))?;
        }
        if self.daemon {
            f.write_str(" daemon")?;
        }
        f.write_str(">")
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An exit code as Python's `repr` shows it: `-SIGTERM` for `-15`, `0` for `0`.
///
/// ```
/// assert_eq!(common::process::exitcode_name(-15), "-SIGTERM");
/// assert_eq!(common::process::exitcode_name(1), "1");
/// ```
pub fn exitcode_name(code: i32) -> String {
    match Signal::from_number(code.saturating_neg()) {
        Some(signal) if code < 0 => format!("-{signal}"),
        _ => code.to_string(),
    }
}

/// The process this code runs in, as [`current_process`] sees it.
///
/// ```
/// use common::process::{Process, current_process};
///
/// let mut p = Process::new(|| assert_eq!(current_process().name(), "worker"))
///     .with_name("worker");
/// p.start()?;
/// assert_eq!(p.join_timeout(std::time::Duration::from_secs(20))?, Some(0));
/// # Ok::<(), common::process::ProcessError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentProcess {
    name: String,
    pid: u32,
    daemon: bool,
}

impl CurrentProcess {
    /// `MainProcess` in the program's first process, the [`Process`]'s name in a child.
    ///
    /// ```
    /// assert_eq!(common::process::current_process().name(), "MainProcess");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OS process id.
    ///
    /// ```
    /// assert_eq!(common::process::current_process().pid(), std::process::id());
    /// ```
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether this process is a daemonic child.
    ///
    /// ```
    /// assert!(!common::process::current_process().is_daemon());
    /// ```
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }
}

/// Python's `multiprocessing.current_process()`: the name (`MainProcess` in the
/// program's first process), pid and daemon flag of the calling process.
///
/// ```
/// let me = common::process::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id());
/// ```
pub fn current_process() -> CurrentProcess {
    let current = current();
    CurrentProcess {
        name: current.name.to_string(),
        pid: std::process::id(),
        daemon: current.daemon,
    }
}

/// Python's `multiprocessing.active_children()`: the pids of this process's children
/// that are still running. Reaps the ones that have ended, so no zombie stays.
///
/// ```
/// assert!(common::process::active_children().is_empty());
/// ```
pub fn active_children() -> Vec<u32> {
    let snapshot: Vec<Arc<Child>> = children().clone();
    for child in snapshot {
        let _ = child.try_wait();
    }
    children()
        .iter()
        .map(|child| child.pid.as_raw() as u32)
        .collect()
}

/// Sends `signal` to the calling process (Python's `os.kill(os.getpid(), signal)`):
/// with SIGKILL, the way a demo shows a process dying in the middle of its work.
///
/// ```
/// use common::process::{Process, Signal, kill_current};
///
/// let mut p = Process::new(|| kill_current(Signal::SIGKILL));
/// p.start()?;
/// assert_eq!(p.join_timeout(std::time::Duration::from_secs(20))?, Some(-9));
/// # Ok::<(), common::process::ProcessError>(())
/// ```
///
/// # Errors
/// [`ProcessError::Os`] if `kill` fails.
pub fn kill_current(signal: Signal) -> Result<(), ProcessError> {
    timeline::note(What::SignalSent {
        child: sys::pid(),
        signal: signal.number(),
    });
    signal::kill(unistd::getpid(), signal.to_nix()).map_err(|errno| ProcessError::os("kill", errno))
}

/// The calling process's own identity, as its `Process` gave it in the parent.
struct Current {
    name: Cow<'static, str>,
    identity: Cow<'static, [u32]>,
    created: u32,
    daemon: bool,
}

/// What a process knows of itself, and all that a forked child writes at its start
/// (the pid cache, the flag saying it is a child, its identity, its empty registry of
/// children), side by side: the copy-on-write then costs the child one page fault,
/// not one per static (about 2 µs each, on every start).
#[repr(C, align(256))]
pub(crate) struct ThisProcess {
    /// This process's pid, cached (see `sys::pid`).
    pub(crate) pid: AtomicU32,
    /// Whether this process was forked by `Process::start`.
    forked: AtomicBool,
    current: Mutex<Current>,
    /// The children started by this process and not reaped yet.
    children: Mutex<Vec<Arc<Child>>>,
}

const _: () = assert!(
    std::mem::size_of::<ThisProcess>() <= 256,
    "one aligned block"
);

static THIS: ThisProcess = ThisProcess {
    pid: AtomicU32::new(0),
    forked: AtomicBool::new(false),
    current: Mutex::new(Current {
        name: Cow::Borrowed("MainProcess"),
        identity: Cow::Borrowed(&[]),
        created: 0,
        daemon: false,
    }),
    children: Mutex::new(Vec::new()),
};

pub(crate) fn this_process() -> &'static ThisProcess {
    &THIS
}

fn current() -> MutexGuard<'static, Current> {
    THIS.current.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A started child, shared by its `Process` and the registry of children that the
/// exit hook joins.
struct Child {
    pid: Pid,
    daemon: bool,
    exitcode: OnceLock<i32>,
}

fn children() -> MutexGuard<'static, Vec<Arc<Child>>> {
    THIS.children.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Child {
    /// Reaps the child without blocking: `Some(exit code)` once it has ended.
    fn try_wait(&self) -> Result<Option<i32>, ProcessError> {
        self.reap(Some(WaitPidFlag::WNOHANG))
    }

    /// Blocks until the child ends and returns its exit code.
    fn wait(&self) -> Result<i32, ProcessError> {
        loop {
            if let Some(code) = self.reap(None)? {
                return Ok(code);
            }
        }
    }

    fn wait_timeout(&self, timeout: Duration) -> Result<Option<i32>, ProcessError> {
        if let Some(code) = self.try_wait()? {
            return Ok(Some(code));
        }
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            return self.wait().map(Some);
        };
        let pidfd = sys::pidfd_open(self.pid);
        loop {
            let now = Instant::now();
            if now >= deadline {
                return self.try_wait();
            }
            let remaining = deadline - now;
            match &pidfd {
                Some(fd) => {
                    sys::poll_readable(&[fd.as_fd()], remaining).map_err(|error| {
                        ProcessError::Os {
                            call: "poll",
                            code: error.raw_os_error().unwrap_or(0),
                        }
                    })?;
                }
                None => std::thread::sleep(remaining.min(Duration::from_millis(2))),
            }
            if let Some(code) = self.try_wait()? {
                return Ok(Some(code));
            }
        }
    }

    fn reap(&self, flags: Option<WaitPidFlag>) -> Result<Option<i32>, ProcessError> {
        if let Some(code) = self.exitcode.get() {
            return Ok(Some(*code));
        }
        let code = match waitpid(self.pid, flags) {
            Ok(WaitStatus::Exited(_, code)) => code,
            Ok(WaitStatus::Signaled(_, signal, _)) => -(signal as i32),
            Ok(_) => return Ok(None),
            Err(Errno::EINTR) => return Ok(None),
            Err(errno) => return Err(ProcessError::os("waitpid", errno)),
        };
        let _ = self.exitcode.set(code);
        timeline::note(What::Reaped {
            child: self.pid.as_raw() as u32,
            code,
        });
        children().retain(|child| child.pid != self.pid);
        Ok(Some(code))
    }

    fn signal(&self, signal: Signal) -> Result<(), ProcessError> {
        // An unreaped child keeps its pid (as a zombie once ended), so the pid cannot
        // name another process here.
        if self.exitcode.get().is_some() {
            return Ok(());
        }
        match signal::kill(self.pid, signal.to_nix()) {
            Ok(()) => {
                timeline::note(What::SignalSent {
                    child: self.pid.as_raw() as u32,
                    signal: signal.number(),
                });
                Ok(())
            }
            Err(Errno::ESRCH) => Ok(()),
            Err(errno) => Err(ProcessError::os("kill", errno)),
        }
    }
}

/// Python's `multiprocessing.process._cleanup()`: reaps children that have ended,
/// including those whose `Process` was dropped without `join`. Asks the kernel which
/// child has ended (one `waitid` that reaps nothing) instead of asking each child, so
/// that a start costs the same with 4 live children or 256.
fn reap_finished_children() {
    if children().is_empty() {
        return; // none of ours to reap: no need to ask the kernel
    }
    while let Some(pid) = sys::an_ended_child() {
        let ended = children()
            .iter()
            .find(|child| child.pid.as_raw() == pid)
            .cloned();
        match ended {
            Some(child) => {
                let _ = child.try_wait(); // reaps it and drops it from the registry
            }
            // A child of someone else's making (a `std::process::Command`, say): not ours
            // to reap. Ours behind it are reaped by `join`, `is_alive` or the exit hook.
            None => return,
        }
    }
}

/// Handles the children still registered, as Python does at interpreter exit:
/// daemonic ones are terminated (and killed after [`DAEMON_GRACE`]), then every child
/// is joined.
fn shutdown_children() {
    let snapshot: Vec<Arc<Child>> = children().clone();
    for child in snapshot.iter().filter(|child| child.daemon) {
        let _ = child.signal(Signal::SIGTERM);
    }
    for child in &snapshot {
        if child.daemon && matches!(child.wait_timeout(DAEMON_GRACE), Ok(None)) {
            let _ = child.signal(Signal::SIGKILL);
        }
        let _ = child.wait();
    }
}

/// What `exit()` runs, registered once, at the first start, and inherited by every
/// child forked since. In the process that registered it, it handles the children
/// left (Python's exit function). In a forked child (a target that calls
/// `std::process::exit(code)`), it handles the child's own children, flushes its
/// output and leaves at once with `_exit(code)`: the exit handlers registered before
/// it (the parent's, copied by the fork) are not the child's to run, and it runs
/// before them (handlers run last-registered first). Python's children end with
/// `os._exit` too. Registered in the parent rather than in each child: registering
/// writes to three or four of libc's pages, each copied in the child (a page fault,
/// 2 µs or more each, on every start).
extern "C" fn exit_handler(code: libc::c_int, _: *mut libc::c_void) {
    // (The exit handler is shared: see `prepare_first_start`.)
    shutdown_children();
    if this_process().forked.load(Ordering::Relaxed) {
        timeline::note(What::Exiting { code });
        sys::exit_now(code)
    }
}

/// What the first start sets up, for this process and every child forked since: the
/// exit handler, and a panic hook that reports a child's panic as Python prints a
/// child's exception (`Process NAME:` and the panic) and leaves the parent's own
/// panics to the hook that was there before. Both are set here, once, rather than in
/// each child, where setting them would copy libc's and std's pages (a page fault each,
/// on every start). A hook set later, after the first start, replaces this one in the
/// children started after it too: they then report with it.
fn prepare_first_start() {
    static PREPARE: Once = Once::new();
    PREPARE.call_once(|| {
        sys::on_exit(exit_handler);
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if THIS.forked.load(Ordering::Relaxed) {
                child_panic_hook(info);
            } else {
                previous(info);
            }
        }));
    });
}

/// Refuses to fork in a multi-threaded process (see [`ProcessError::MultiThreaded`]),
/// and when the number of threads cannot be known ([`ProcessError::ThreadsUnknown`]):
/// a fork that might copy another thread's held lock is not worth the risk.
fn ensure_single_threaded() -> Result<(), ProcessError> {
    match sys::thread_count() {
        Ok(1) => Ok(()),
        Ok(threads) => Err(ProcessError::MultiThreaded { threads }),
        Err(reason) => Err(ProcessError::ThreadsUnknown { reason }),
    }
}

/// What a forked child needs to know about itself.
struct ChildSetup {
    name: &'static str,
    /// The name the kernel keeps, NUL-terminated.
    os_name: [u8; 16],
    identity: &'static [u32],
    daemon: bool,
    parent: Pid,
}

/// `value`, borrowed for the rest of the process's life.
///
/// # Safety
/// `value` must stay where it is, unchanged and not dropped, for the rest of the
/// process's life (in a forked child that never returns into its parent's code, the
/// parent's frames are such places).
unsafe fn forever<T: ?Sized>(value: &T) -> &'static T {
    // SAFETY: the caller promises that the referent outlives every use of the result.
    unsafe { &*std::ptr::from_ref(value) }
}

/// Writes a failure report to stderr in one `write`, so that the reports of children
/// failing at the same moment do not interleave (stderr is unbuffered: `eprintln!`
/// would write it piece by piece).
fn report_failure(report: &str) {
    let _ = std::io::stderr().write_all(report.as_bytes());
}

/// The exit code of a child whose target panicked because writing to its standard
/// output failed (`println!` into a closed pipe or onto a full device): Python's code
/// for an interpreter that cannot flush its standard output at exit. No report is
/// printed for it: the output the report would explain is shared with the parent,
/// whose own writes fail the same way, and which can say it once.
///
/// ```
/// use common::process::{OUTPUT_FAILED, Process};
///
/// // A child whose standard output is a full device:
/// let mut p = Process::new(|| {
///     let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
///     use std::os::fd::AsRawFd;
///     // SAFETY: dup2 on two open descriptors.
///     unsafe { libc::dup2(full.as_raw_fd(), 1) };
///     println!("this cannot be written");
/// });
/// p.start()?;
/// assert_eq!(p.join_timeout(std::time::Duration::from_secs(20))?, Some(OUTPUT_FAILED));
/// # Ok::<(), common::process::ProcessError>(())
/// ```
pub const OUTPUT_FAILED: i32 = 120;

/// Whether a panic's payload is `println!`'s "failed printing to stdout".
fn is_output_failure(payload: &(dyn std::any::Any + Send)) -> bool {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    message.starts_with("failed printing to stdout")
}

/// This process's name, for a report (`?` if the name's lock is taken: a report must
/// not wait).
fn current_name() -> String {
    match THIS.current.try_lock() {
        Ok(current) => current.name.to_string(),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner().name.to_string(),
        Err(std::sync::TryLockError::WouldBlock) => "?".to_string(),
    }
}

/// A child's panic hook: the report Python's traceback would print, but for a failed
/// write to standard output (see [`OUTPUT_FAILED`]).
fn child_panic_hook(info: &panic::PanicHookInfo<'_>) {
    if !is_output_failure(info.payload()) {
        let name = current_name();
        report_failure(&format!("Process {name}:\n{info}\n"));
    }
}

/// The forked child's whole life: set itself up, run the target, handle its own
/// children, flush, and `_exit` without returning into the parent's code.
fn run_child(setup: ChildSetup, target: Target) -> ! {
    timeline::note_with(|| What::Running {
        name: setup.name.to_string(),
    });
    if setup.daemon {
        // The kernel kills a daemonic child when its parent dies, even by SIGKILL.
        let _ = prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
        // The parent may have died before the line above: then we were reparented.
        if unistd::getppid() != setup.parent {
            sys::exit_now(1);
        }
    }
    sys::set_os_name(&setup.os_name);
    {
        let mut current = current();
        current.name = Cow::Borrowed(setup.name);
        current.identity = Cow::Borrowed(setup.identity);
        current.created = 0;
        current.daemon = setup.daemon;
    }
    // The parent's children are the parent's to join, not ours. Forgotten rather than
    // dropped: dropping would write to each one's count, a copied page per few of them.
    std::mem::forget(std::mem::take(&mut *children()));
    // A target may leave with `std::process::exit(code)`: `exit_handler`, registered
    // by the parent, takes this flag to mean that it runs in a child.
    this_process().forked.store(true, Ordering::Relaxed);

    // The panic hook set at the first start reports a panic here (see
    // `prepare_first_start`). The box stays: freeing it would copy the allocator's
    // pages for nothing.
    let mut target = std::mem::ManuallyDrop::new(target);
    // SAFETY: run once; `target` is never used again nor dropped (ManuallyDrop, and the
    // child leaves with `_exit` below).
    let run = AssertUnwindSafe(|| unsafe { target.run_in_place() });
    let code = match panic::catch_unwind(run) {
        Ok(Ok(())) => 0,
        Ok(Err(message)) => {
            let name = current_name();
            report_failure(&format!("Process {name}:\nError: {message}\n"));
            1
        }
        Err(payload) if is_output_failure(payload.as_ref()) => OUTPUT_FAILED,
        Err(_) => 1,
    };
    shutdown_children();
    timeline::note(What::Exiting { code });
    sys::exit_now(code)
}
