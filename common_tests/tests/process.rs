//! Multi-process tests of `common::process`, run through the single-threaded
//! `process_fixture` binary (a test must not fork on the harness's threads).

use std::process::Command;
use std::time::Duration;

use test_support::{Finished, Running, is_running, pids_after, proc_stat, run, wait_until};

const LIMIT: Duration = Duration::from_secs(20);

fn fixture(scenario: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_process_fixture"));
    command.arg(scenario);
    command
}

#[test]
fn exit_codes_follow_python() {
    let done = run(&mut fixture("exitcodes"), LIMIT);
    assert_eq!(
        done.lines(),
        ["ok 0", "panic 1", "err 1", "terminate -15", "kill -9"],
        "stderr: {}",
        done.stderr
    );
    assert!(
        done.stderr.contains("Process Process-2:\npanicked at"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("boom from the target"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("Process Process-3:\nError: bad input"),
        "{}",
        done.stderr
    );
    assert_eq!(done.code(), 0);
}

#[test]
fn child_os_name_is_the_process_name_cut_to_15_bytes() {
    let done = run(&mut fixture("comm"), LIMIT);
    let lines = done.lines();
    let child = lines
        .iter()
        .find(|l| l.starts_with("child "))
        .expect("child line");
    let parent = lines
        .iter()
        .find(|l| l.starts_with("parent "))
        .expect("parent line");
    let child_pid = child.split("pid=").nth(1).expect("child pid");
    assert!(
        child.starts_with("child name=do_something process 1 pid="),
        "{child}"
    );
    assert_eq!(
        *parent,
        format!("parent pid={child_pid} comm=do_something pr")
    );
}

#[test]
fn no_zombie_after_join_is_alive_or_a_later_start() {
    let mut running = Running::spawn(&mut fixture("reaped"));
    let line = running.wait_for_line(|l| l.starts_with("children "), LIMIT);
    let pids = pids_after(&line, "children ");
    assert_eq!(pids.len(), 6, "{line}");
    // The fixture still lives: an unreaped child of it would show as a zombie ('Z').
    for pid in pids {
        if let Some(stat) = proc_stat(pid) {
            assert!(
                stat.ppid != running.pid(),
                "child {pid} of the fixture was not reaped: {stat:?}"
            );
        }
    }
}

#[test]
fn join_timeout_returns_on_time_with_the_child_still_running() {
    let done = run(&mut fixture("join-timeout"), LIMIT);
    let line = done.lines()[0].to_string();
    let waited: u128 = line
        .strip_prefix("waited_ms=")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|ms| ms.parse().ok())
        .expect("waited_ms");
    assert!((300..=400).contains(&waited), "{line}");
    assert!(
        line.ends_with("result=None alive=true exitcode=None"),
        "{line}"
    );
}

#[test]
fn daemonic_child_dies_with_a_parent_killed_by_sigkill() {
    let mut running = Running::spawn(&mut fixture("daemon-orphan"));
    let line = running.wait_for_line(|l| l.starts_with("child "), LIMIT);
    let child = pids_after(&line, "child ")[0];
    assert!(is_running(child));
    running.signal(libc::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(5), || !is_running(child)),
        "daemonic child {child} outlived its parent by more than 5 s"
    );
}

#[test]
fn daemonic_child_is_terminated_when_main_returns() {
    let done = run(&mut fixture("daemon-at-exit"), LIMIT);
    assert_eq!(done.code(), 0);
    let child = pids_after(done.lines()[0], "child ")[0];
    assert!(!is_running(child), "daemonic child {child} outlived main");
}

#[test]
fn a_dropped_child_is_joined_at_process_exit() {
    let done = run(&mut fixture("exit-joins"), LIMIT);
    assert_eq!(done.lines(), ["parent leaving", "child finished"]);
    assert_eq!(done.code(), 3, "std::process::exit's code is kept");
}

#[test]
fn a_list_appended_in_the_child_is_the_childs_copy() {
    let done = run(&mut fixture("copy"), LIMIT);
    assert_eq!(done.lines(), ["child sees 100", "parent sees 0"]);
}

#[test]
fn misuse_gives_errors_not_panics() {
    let done = run(&mut fixture("errors"), LIMIT);
    assert_eq!(
        done.lines(),
        [
            "process 'Process-1' was already started; create a new Process to run the target again",
            "process 'Process-2' has not been started; call start() first",
            "process 'Process-2' has not been started; call start() first",
            "process name \"nul\\0name\" contains a NUL byte; use a name without one",
            "daemonic processes are not allowed to have children (as in Python)",
        ],
        "stderr: {}",
        done.stderr
    );
    assert_eq!(done.code(), 0);
}

#[test]
fn start_refuses_to_fork_a_multi_threaded_process() {
    let done = run(&mut fixture("threads"), LIMIT);
    assert!(
        done.stdout
            .starts_with("cannot fork: this process runs 2 threads"),
        "{}",
        done.stdout
    );
}

#[test]
fn names_follow_python_numbering() {
    let done = run(&mut fixture("names"), LIMIT);
    assert_eq!(
        done.lines(),
        [
            "Process-1 named Process-3",
            "in parent: MainProcess",
            "in child: Process-3",
            "in grandchild: Process-3:1",
        ]
    );
}

#[test]
fn output_is_not_doubled_by_fork_into_a_pipe() {
    let done = run(&mut fixture("flush"), LIMIT);
    assert_eq!(done.stdout, "before fork;child\n after join\n");
}

#[test]
fn display_is_pythons_repr() {
    let done = run(&mut fixture("repr"), LIMIT);
    let lines = done.lines();
    assert_eq!(done.code(), 0);
    let initial = lines[0];
    assert!(
        initial.starts_with("<Process name='Process-1' parent="),
        "{initial}"
    );
    assert!(initial.ends_with(" initial daemon>"), "{initial}");
    let started = lines[1];
    assert!(
        started.starts_with("<Process name='Process-1' pid="),
        "{started}"
    );
    assert!(started.ends_with(" started daemon>"), "{started}");
    assert_eq!(
        lines[2],
        started.replace(" started daemon>", " stopped exitcode=-SIGTERM daemon>")
    );
}

#[test]
fn the_exit_hook_terminates_a_daemon_with_sigterm() {
    // Only the exit hook sends SIGTERM: without it the kernel's SIGKILL (the daemon's
    // parent-death signal) would end the daemon without a word.
    let done = run(&mut fixture("daemon-sigterm"), LIMIT);
    assert_eq!(
        done.lines(),
        ["parent leaving", "daemon: SIGTERM from the exit hook"]
    );
}

#[test]
fn the_exit_hook_keeps_the_parent_until_a_non_daemon_child_ends() {
    let done = run(&mut fixture("child-sees-parent"), LIMIT);
    let lines = done.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let parent = lines[0].strip_prefix("parent is ").expect("parent line");
    assert_eq!(
        lines[1],
        format!("child: parent is {parent}"),
        "reparented?"
    );
}

#[test]
fn exit_in_a_child_keeps_its_code_and_skips_the_parents_exit_handlers() {
    let done = run(&mut fixture("child-exit"), LIMIT);
    let lines = done.lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], "child exit code 3");
    let parent = lines[1].strip_prefix("parent is ").expect("parent line");
    assert_eq!(lines[2], format!("atexit handler ran in {parent}"));
}

/// Runs the fixture's `scenario` where /proc is an empty tmpfs (a mount namespace of
/// its own): /proc/self/task and /proc/self/status are missing.
fn without_proc(scenario: &str) -> Finished {
    let fixture = env!("CARGO_BIN_EXE_process_fixture");
    let done = run(
        Command::new("unshare").args([
            "--mount",
            "sh",
            "-c",
            &format!("mount -t tmpfs none /proc && exec {fixture} {scenario}"),
        ]),
        LIMIT,
    );
    assert_eq!(done.code(), 0, "{}", done.stderr);
    done
}

#[test]
fn start_refuses_to_fork_when_the_thread_count_cannot_be_read() {
    // A thread has run: glibc no longer vouches for one thread, and /proc cannot say.
    let done = without_proc("start-after-a-thread");
    assert!(
        done.stdout
            .starts_with("cannot fork: unable to tell whether this process runs other threads"),
        "{}",
        done.stdout
    );
}

#[test]
fn a_process_that_never_had_a_thread_starts_without_proc() {
    // glibc's `__libc_single_threaded` vouches for it: no need to ask /proc.
    let done = without_proc("start");
    assert_eq!(done.lines(), ["started, exit code 0"]);
}

#[test]
fn a_thread_that_has_ended_does_not_block_a_start() {
    let done = run(
        Command::new(env!("CARGO_BIN_EXE_process_fixture")).arg("start-after-a-thread"),
        LIMIT,
    );
    assert_eq!(done.lines(), ["started, exit code 0"], "{}", done.stderr);
}

#[test]
fn a_start_that_fails_before_the_fork_leaves_the_process_startable() {
    let done = test_support::run(
        &mut fixture("start-after-a-failed-handover"),
        Duration::from_secs(30),
    );
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let lines = done.lines();
    assert!(
        lines[0].starts_with("first start: pipe failed"),
        "{lines:?}"
    );
    assert_eq!(lines[1], "second start: started, exit code 0", "{lines:?}");
}
