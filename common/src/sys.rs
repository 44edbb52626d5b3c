//! Thin, checked wrappers over the few Linux calls `common` needs beyond `nix`.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::unistd::Pid;

/// The number of threads of this process, from `/proc/self/status` (`None` where there
/// is no procfs to read, as on other Unixes).
pub(crate) fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse().ok())
}

/// Flushes Rust's stdout and stderr, so that `fork()` does not copy unwritten output
/// into the child (which would print it a second time).
pub(crate) fn flush_std() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

/// Cuts `name` to the 15 bytes the kernel keeps as a thread's name (`/proc/PID/comm`),
/// at a character boundary so that the name stays valid UTF-8.
pub(crate) fn os_name(name: &str) -> CString {
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let bytes: Vec<u8> = name.as_bytes()[..end]
        .iter()
        .copied()
        .filter(|b| *b != 0)
        .collect();
    CString::new(bytes).unwrap_or_default()
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
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
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

/// Leaves the process at once with `code`: no destructors, no `atexit` handlers.
/// Flushes Rust's stdout and stderr first.
pub(crate) fn exit_now(code: i32) -> ! {
    flush_std();
    // SAFETY: `_exit` ends the process without running any code of ours; it is always
    // safe to call, and is what a forked child must use to avoid running the parent's
    // destructors and exit handlers.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_name_is_cut_to_fifteen_bytes() {
        assert_eq!(
            os_name("do_something process 1").as_bytes(),
            b"do_something pr"
        );
        assert_eq!(os_name("short").as_bytes(), b"short");
    }

    #[test]
    fn os_name_cuts_at_a_character_boundary() {
        // 'é' is two bytes: 14 ASCII bytes then 'é' would straddle byte 15.
        let name = "abcdefghijklmné";
        assert_eq!(os_name(name).as_bytes(), b"abcdefghijklmn");
    }

    #[test]
    fn thread_count_sees_the_test_harness_threads() {
        let handle = std::thread::spawn(thread_count);
        let seen = handle.join().unwrap();
        assert!(seen.unwrap_or(2) >= 2, "{seen:?}");
    }
}
