//! Helpers for the workspace's multi-process tests.
//!
//! A test harness runs tests on threads, so no test may fork in-process (see the
//! design). Tests run a single-threaded binary instead, with these helpers: every wait
//! has a time limit, so a bug fails the test instead of hanging CI, and a binary still
//! running when its [`Running`] is dropped is killed with its whole process group.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

/// What a finished run printed and how it ended.
#[derive(Debug)]
pub struct Finished {
    /// How the process ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Finished {
    /// The stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// The exit code, or a panic that names the signal that ended the process.
    pub fn code(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        self.status.code().unwrap_or_else(|| {
            panic!(
                "killed by signal {:?}\nstdout:\n{}\nstderr:\n{}",
                self.status.signal(),
                self.stdout,
                self.stderr
            )
        })
    }
}

/// A binary running in a process group of its own, its stdout read line by line.
pub struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
    finished: bool,
}

impl Running {
    /// Spawns `command` as the leader of a new process group, stdout and stderr piped.
    pub fn spawn(command: &mut Command) -> Running {
        // A shell starts a background job (`cargo test &`, some CI runners) with SIGINT
        // and SIGQUIT ignored, and an ignored signal stays ignored across fork and exec:
        // the binaries would then shrug off the Ctrl-C that the tests press, as Python
        // does in that case. Give them what a terminal gives them.
        // SAFETY: the closure runs in the forked child before exec and only calls
        // signal(2), which is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                for signal in [libc::SIGINT, libc::SIGQUIT] {
                    if libc::signal(signal, libc::SIG_DFL) == libc::SIG_ERR {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the binary under test");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
            finished: false,
        }
    }

    /// The pid of the binary, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits at most `limit` for a stdout line for which `wanted` holds, and returns
    /// it. Panics with every line seen so far when none comes in time.
    pub fn wait_for_line(&mut self, wanted: impl Fn(&str) -> bool, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "no wanted line within {limit:?}; stdout so far:\n{}",
                        self.seen.join("\n")
                    )
                }
            }
        }
    }

    /// Sends `signal` to the binary alone.
    pub fn signal(&self, signal: i32) {
        send(self.pid() as i32, signal);
    }

    /// Sends `signal` to the binary's whole process group, as Ctrl-C does in a terminal.
    pub fn signal_group(&self, signal: i32) {
        send(-(self.pid() as i32), signal);
    }

    /// Waits at most `limit` for the binary to end; panics (after killing its group)
    /// when it does not.
    pub fn finish(mut self, limit: Duration) -> Finished {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.finished = true;
                break status;
            }
            if Instant::now() >= deadline {
                self.signal_group(libc::SIGKILL);
                let _ = self.child.wait();
                panic!(
                    "still running after {limit:?}; stdout so far:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // The pipes close when the last process of the group holding them exits: a
        // leftover child keeps them open, so read what is there with a time limit.
        while let Ok(line) = self.lines.recv_timeout(remaining(deadline)) {
            self.seen.push(line);
        }
        let stderr = self
            .stderr
            .take()
            .map(collect_with_limit(deadline))
            .unwrap_or_default();
        Finished {
            status,
            stdout: self.seen.iter().map(|l| format!("{l}\n")).collect(),
            stderr,
        }
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100))
}

fn collect_with_limit(deadline: Instant) -> impl FnOnce(JoinHandle<String>) -> String {
    move |handle| {
        while !handle.is_finished() && Instant::now() < deadline + Duration::from_millis(100) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if handle.is_finished() {
            handle.join().unwrap_or_default()
        } else {
            String::from("<stderr still open: a process of the group is still running>")
        }
    }
}

/// A binary dropped without [`Running::finish`] (a test that killed it, or failed) is
/// killed with its whole process group, leader gone or not: children it orphaned must
/// not outlive the test. After `finish`, the group is left alone, so that a test can
/// check that the binary itself left nothing running.
impl Drop for Running {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.signal_group(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Runs `command` to the end with a time limit of `limit` (see [`Running::finish`]).
pub fn run(command: &mut Command, limit: Duration) -> Finished {
    Running::spawn(command).finish(limit)
}

/// Runs the fixture program `bin` with `args`, as [`run`], and checks that it succeeded
/// (exit code 0), showing the arguments and both outputs when it did not.
pub fn run_fixture(bin: &str, args: &[&str], limit: Duration) -> Finished {
    let done = run(Command::new(bin).args(args), limit);
    assert_eq!(done.code(), 0, "{args:?}: {}\n{}", done.stdout, done.stderr);
    done
}

fn send(target: i32, signal: i32) {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    unsafe {
        libc::kill(target, signal);
    }
}

/// The pids in a line such as `children 12 13 14`, after `prefix` (`"children "`).
pub fn pids_after(line: &str, prefix: &str) -> Vec<u32> {
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"))
        .split_whitespace()
        .map(|pid| pid.parse().expect("a pid"))
        .collect()
}

/// One line of `/proc/PID/stat`, the fields the tests need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// The process id.
    pub pid: u32,
    /// The OS name (`comm`), at most 15 bytes.
    pub comm: String,
    /// `R`, `S`, `Z` (zombie), ...
    pub state: char,
    /// The parent's pid.
    pub ppid: u32,
    /// The process group id.
    pub pgrp: u32,
}

/// Reads `/proc/PID/stat`; `None` when there is no such process.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgrp = rest.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        comm,
        state,
        ppid,
        pgrp,
    })
}

/// Every process on the machine.
pub fn all_processes() -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(proc_stat)
        .collect()
}

/// Whether `pid` names a process that is still running (a zombie has ended).
pub fn is_running(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|stat| stat.state != 'Z')
}

/// The processes of group `pgrp` that are still running (zombies left out).
pub fn running_in_group(pgrp: u32) -> Vec<ProcStat> {
    all_processes()
        .into_iter()
        .filter(|stat| stat.pgrp == pgrp && stat.state != 'Z')
        .collect()
}

/// Polls `condition` every 10 ms until it holds (true) or `limit` has passed (false).
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits at most `limit` for `child`, the leader of its process group, to end (killing
/// the group and panicking when it does not), and returns its status and stderr.
fn wait_with_limit(child: &mut Child, limit: Duration, what: &str) -> (ExitStatus, String) {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            send(-(child.id() as i32), libc::SIGKILL);
            let _ = child.wait();
            panic!("{what} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status, stderr)
}

/// Runs `bin args` as `bin args | head -1` would: reads the first line of its output,
/// then closes the pipe. Asserts that it then ends quietly (nothing on stderr, exit
/// code 0 or 141, as a shell shows a death by SIGPIPE) and that no process of its
/// group is left running, and returns the first line.
pub fn assert_quiet_when_output_closes(bin: &str, args: &[&str]) -> String {
    let limit = Duration::from_secs(30);
    let mut child = Command::new(bin)
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the binary under test");
    let group = child.id();
    let mut first = String::new();
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    stdout.read_line(&mut first).expect("a first line");
    drop(stdout);
    let (status, stderr) = wait_with_limit(&mut child, limit, &format!("{bin} {args:?}"));
    assert_eq!(stderr, "", "{bin} {args:?}: not quiet");
    assert!(
        matches!(status.code(), Some(0 | 141)),
        "{bin} {args:?}: {status:?}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || running_in_group(group)
            .is_empty()),
        "{bin} {args:?}: processes left: {:?}",
        running_in_group(group)
    );
    first
}

/// Runs `bin args > /dev/full` and asserts that it ends with a non-zero exit code and
/// one line on stderr, an `Error: ` naming standard output; returns that line.
pub fn assert_one_line_on_a_full_device(bin: &str, args: &[&str]) -> String {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let mut child = Command::new(bin)
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the binary under test");
    let what = format!("{bin} {args:?}");
    let (status, stderr) = wait_with_limit(&mut child, Duration::from_secs(30), &what);
    assert!(
        matches!(status.code(), Some(code) if code != 0),
        "{bin} {args:?}: {status:?}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{bin} {args:?}: {stderr:?}");
    assert!(
        lines[0].starts_with("Error: ") && lines[0].contains("standard output"),
        "{bin} {args:?}: {:?}",
        lines[0]
    );
    lines[0].to_string()
}

/// The number after `key=` in `line` (`field("hangs=0 trials=9", "trials")` is 9);
/// panics with the line when there is none.
pub fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&format!("{key}=")))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// How many processes run under the real user id `uid` now.
pub fn processes_of_user(uid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("status")).ok())
        .filter(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next()?.parse::<u32>().ok())
                == Some(uid)
        })
        .count()
}

/// Makes `command` run as user `nobody` (65534) with room for `children` processes
/// besides itself (`RLIMIT_NPROC`), so that a further `fork()` fails with EAGAIN as on
/// a machine out of processes. Needs root, as CI and the development machine are.
pub fn with_room_for_children(command: &mut Command, children: usize) -> &mut Command {
    const NOBODY: u32 = 65534;
    let limit = (processes_of_user(NOBODY) + 1 + children) as libc::rlim_t;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (setrlimit, setgroups, setgid, setuid).
    unsafe {
        command.pre_exec(move || {
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NPROC, &rlimit) != 0
                || libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// The names of the entries in `/dev/shm`, to compare before and after a run.
pub fn shm_entries() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts that the binary at `bin` rejects `args` as bad input: exit code 2 and a
/// one-line error on stderr, no panic; returns that line.
pub fn assert_bad_input(bin: &str, args: &[&str]) -> String {
    let done = run(Command::new(bin).args(args), Duration::from_secs(20));
    assert_eq!(done.code(), 2, "{args:?}: stderr {:?}", done.stderr);
    let lines: Vec<&str> = done.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line: {:?}", done.stderr);
    assert!(lines[0].starts_with("error: "), "{:?}", lines[0]);
    assert!(!done.stderr.contains("panicked"), "{:?}", done.stderr);
    lines[0].to_string()
}

/// Asserts that `bin --help` exits 0 and prints a usage text that names `option`.
pub fn assert_help_names(bin: &str, option: &str) {
    let done = run(Command::new(bin).arg("--help"), Duration::from_secs(20));
    assert_eq!(done.code(), 0, "{:?}", done.stderr);
    assert!(done.stdout.contains("Usage:"), "{}", done.stdout);
    assert!(done.stdout.contains(option), "{}", done.stdout);
}

/// Starts `bin` with `args` in a process group of its own, waits for a stdout line
/// that `ready` accepts, presses Ctrl-C (SIGINT to the group), and asserts that within
/// `limit` no process of the group is still running.
pub fn assert_ctrl_c_leaves_nothing(
    bin: &str,
    args: &[&str],
    ready: impl Fn(&str) -> bool,
    limit: Duration,
) {
    let mut running = Running::spawn(Command::new(bin).args(args));
    running.wait_for_line(ready, Duration::from_secs(20));
    let group = running.pid();
    assert!(
        running_in_group(group).len() >= 2,
        "the demo should have children by now: {:?}",
        running_in_group(group)
    );
    running.signal_group(libc::SIGINT);
    let gone = wait_until(limit, || running_in_group(group).is_empty());
    assert!(
        gone,
        "still running {limit:?} after Ctrl-C: {:?}",
        running_in_group(group)
    );
}

/// The `/dev/shm` entries made by `common` (`common.PID.N`) that are not
/// in `before` and still exist 200 ms later. Every segment of ours is unlinked
/// microseconds after its creation, so a test running in parallel can show one
/// briefly: looking twice leaves those out, and keeps only real leaks.
pub fn leaked_segments(before: &BTreeSet<String>) -> Vec<String> {
    let fresh = |names: BTreeSet<String>| -> BTreeSet<String> {
        names
            .into_iter()
            .filter(|name| name.starts_with("common.") && !before.contains(name))
            .collect()
    };
    let first = fresh(shm_entries());
    if first.is_empty() {
        return Vec::new();
    }
    std::thread::sleep(Duration::from_millis(200));
    fresh(shm_entries()).intersection(&first).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_reads_this_process() {
        let me = proc_stat(std::process::id()).expect("own stat");
        assert_eq!(me.pid, std::process::id());
        assert_ne!(me.state, 'Z');
        assert!(is_running(me.pid));
    }

    #[test]
    fn run_reports_output_and_code() {
        let done = run(
            Command::new("sh").args(["-c", "echo one; echo two; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        );
        assert_eq!(done.lines(), ["one", "two"]);
        assert_eq!(done.stderr.trim(), "err");
        assert_eq!(done.code(), 3);
    }

    #[test]
    #[should_panic(expected = "still running")]
    fn finish_fails_a_run_that_overstays() {
        run(Command::new("sleep").arg("5"), Duration::from_millis(200));
    }
}
