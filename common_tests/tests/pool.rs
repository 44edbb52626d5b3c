//! Multi-process tests of `common::pool`, run through the single-threaded
//! `pool_fixture` binary (a test must not fork on the harness's threads).

use std::process::Command;
use std::time::Duration;

use test_support::{
    Finished, Running, field, is_running, pids_after, proc_stat, run_fixture, wait_until,
};

const LIMIT: Duration = Duration::from_secs(60);
const BIN: &str = env!("CARGO_BIN_EXE_pool_fixture");

fn fixture(scenario: &str) -> Finished {
    run_fixture(BIN, &[scenario], LIMIT)
}

#[test]
fn map_equals_the_sequential_results_for_every_size_and_chunksize() {
    let done = fixture("map-equals");
    let lines = done.lines();
    assert_eq!(lines.len(), 12, "{lines:?}");
    for inputs in [0, 1, 7, 100_000] {
        for chunksize in ["1", "3", "default"] {
            let expected = format!("inputs={inputs} chunksize={chunksize} equal=true");
            assert!(lines.contains(&expected.as_str()), "{expected}: {lines:?}");
        }
    }
}

#[test]
fn imap_keeps_order_and_imap_unordered_yields_each_result_once() {
    let done = fixture("imap");
    assert_eq!(
        done.lines(),
        [
            "imap in order: true",
            "imap_unordered: 1000 results, each once: true",
            "imap over an endless input: [0, 1, 4, 9, 16]",
        ]
    );
}

#[test]
fn a_panicking_task_gives_task_failed_and_the_pool_stays_usable() {
    let done = fixture("task-failed");
    let lines = done.lines();
    assert!(
        lines[0].starts_with("task failed: index 13: panicked at "),
        "{lines:?}"
    );
    assert!(lines[0].ends_with("thirteen is unlucky"), "{lines:?}");
    assert_eq!(lines[1], "after: [0, 1, 4, 9, 16]");
    assert_eq!(
        lines[2], "same workers: true",
        "the worker survives a panic"
    );
}

#[test]
fn a_worker_killed_mid_task_gives_worker_died_within_a_second_and_is_replaced() {
    let done = fixture("worker-died");
    let lines = done.lines();
    let first = lines[0];
    assert!(
        first.starts_with(
            "worker died: index 5 exitcode -9 signal Some(SIGKILL) known pid true after "
        ),
        "{lines:?}"
    );
    let waited: u64 = first
        .split_whitespace()
        .rev()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(waited < 1000, "{first}");
    assert!(lines[1].contains("died (killed by SIGKILL) while running the task for input 5"));
    assert_eq!(lines[2], "after: [0, 1, 4, 9, 16]");
    assert_eq!(lines[3], "replaced: 1 of 2");
}

#[test]
fn apply_apply_async_get_timeout_and_starmap() {
    let done = fixture("apply");
    let lines = done.lines();
    assert_eq!(lines[0], "apply: 49");
    assert_eq!(lines[1], "apply_async: 64");
    assert!(
        lines[2].starts_with("get_timeout: timeout after "),
        "{lines:?}"
    );
    let waited: u64 = lines[2].split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!((200..1000).contains(&waited), "{lines:?}");
    assert_eq!(lines[3], "ready: false");
    assert_eq!(lines[4], "starmap: [3, 7, 11]");
}

#[test]
fn misuse_gives_typed_errors() {
    let done = fixture("errors");
    assert_eq!(
        done.lines(),
        [
            "a pool needs at least one worker",
            "chunksize must be at least 1",
            "the pool is still running; call close() or terminate() before join()",
            "the pool is closed; create a new Pool to run more tasks",
        ]
    );
}

/// Runs `scenario`, which prints `label PIDS` and then waits to be killed, and checks
/// that none of the pids is still a process (running or zombie) of the fixture.
fn assert_workers_gone(scenario: &str, label: &str) {
    let mut running = Running::spawn(Command::new(BIN).arg(scenario));
    let line = running.wait_for_line(|l| l.starts_with(label), LIMIT);
    let pids = pids_after(&line, &format!("{label} "));
    assert_eq!(pids.len(), 3, "{line}");
    for pid in pids {
        if let Some(stat) = proc_stat(pid) {
            assert_ne!(
                stat.ppid,
                running.pid(),
                "worker {pid} left behind: {stat:?}"
            );
        }
    }
}

#[test]
fn no_zombie_after_join() {
    assert_workers_gone("joined", "joined");
}

#[test]
fn join_ends_even_when_another_child_holds_the_pools_pipes() {
    let done = fixture("join-with-other-child");
    let line = done.lines()[0];
    let millis: u64 = line
        .strip_prefix("joined in ")
        .and_then(|rest| rest.strip_suffix(" ms"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(millis < 5000, "{line}");
}

#[test]
fn a_worker_dying_after_close_is_replaced_and_join_ends() {
    let done = fixture("death-after-close");
    let lines = done.lines();
    assert!(lines[0].starts_with("dying: worker "), "{lines:?}");
    assert!(lines[0].contains("killed by SIGKILL"), "{lines:?}");
    assert_eq!(lines[1], "queued: 9");
}

#[test]
fn no_worker_left_after_the_pool_is_dropped() {
    assert_workers_gone("dropped", "dropped");
}

#[test]
fn no_worker_survives_a_parent_killed_during_map() {
    let mut running = Running::spawn(Command::new(BIN).arg("parent-killed"));
    let line = running.wait_for_line(|l| l.starts_with("workers "), LIMIT);
    let workers = pids_after(&line, "workers ");
    assert!(workers.iter().all(|pid| is_running(*pid)));
    // Let the map start, then kill the parent.
    std::thread::sleep(Duration::from_millis(200));
    running.signal(libc::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(5), || workers
            .iter()
            .all(|pid| !is_running(*pid))),
        "workers outlived their parent: {workers:?}"
    );
}

#[test]
fn apply_async_and_imap_start_work_when_it_is_submitted() {
    // 1 s in a worker while the parent works 1 s: 1 s in all (2 s before the fix).
    let done = fixture("at-once");
    let lines = done.lines();
    assert!(field(lines[0], "ms") < 1600, "{lines:?}");
    assert!(field(lines[1], "ms") < 1600, "{lines:?}");
}

#[test]
fn imap_then_close_and_join_loses_no_result() {
    let done = fixture("imap-close-join");
    assert_eq!(done.lines(), ["results=100 equal=true"]);
}

#[test]
fn imap_reports_a_failure_in_its_place_and_goes_on() {
    let done = fixture("imap-failure-order");
    assert_eq!(
        done.lines(),
        [
            "imap: 0 failed(1) 2 3 4",
            "imap_unordered: 0 2 3 4 failed(1)"
        ]
    );
}

#[test]
fn a_worker_that_died_idle_blames_no_task() {
    let done = fixture("idle-death");
    assert_eq!(
        done.lines(),
        [
            "after an idle death: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]",
            "replaced: true"
        ]
    );
}

#[test]
fn dropped_handles_free_their_results() {
    // 100 results of 1 MiB: 107 MiB stayed resident before the fix.
    let done = fixture("dropped-results");
    let line = done.lines()[0];
    let mib: u64 = line
        .strip_prefix("resident MiB after join: ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(mib < 40, "{line}");
}

#[test]
fn the_pool_works_when_sigpipe_has_its_default_action() {
    // Before the fix the program died of SIGPIPE (exit 141).
    let done = fixture("sigpipe-default");
    assert_eq!(done.lines(), ["map: [0, 1, 4, 9]"]);
}

#[test]
fn terminate_ends_a_worker_that_ignores_sigterm() {
    let done = fixture("terminate-stubborn");
    let line = done.lines()[0];
    assert!(field(line, "ms") < 3000, "{line}");
}

#[test]
fn get_timeout_takes_any_duration_and_can_be_asked_twice() {
    let done = fixture("get-timeout-twice");
    assert_eq!(
        done.lines(),
        ["first: 36", "second: 36", "successful: Some(true)"]
    );
}

#[test]
fn callbacks_get_the_result_or_the_error_once() {
    let done = fixture("callbacks");
    assert_eq!(done.lines(), ["error true | map [0, 1, 4] | ok 16"]);
}

#[test]
fn the_initializer_runs_once_in_each_worker_and_not_in_the_parent() {
    let done = fixture("initializer");
    assert_eq!(
        done.lines(),
        ["every task saw one run: true", "parent's count: 0"]
    );
}

#[test]
fn max_tasks_per_child_replaces_workers() {
    let done = fixture("max-tasks");
    let line = done.lines()[0];
    assert!(line.ends_with("each at most 2: true"), "{line}");
    let used: u64 = line
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(used >= 6, "12 chunks, 2 a worker: {line}");
}

#[test]
fn map_plain_returns_what_map_returns_for_random_inputs_and_chunk_sizes() {
    let done = fixture("plain-equals");
    let line = done.lines()[0];
    let rounds = test_support::field(line, "rounds");
    assert!(rounds >= 20, "{line}");
    assert_eq!(test_support::field(line, "equal"), rounds, "{line}");
    assert!(line.ends_with("batches_right=true"), "{line}");
}

#[test]
fn map_plain_names_the_input_of_a_dead_worker_in_time_and_of_a_panic() {
    let done = fixture("plain-failures");
    let lines = done.lines();
    assert!(
        lines[0].starts_with("died: index 5 exitcode -9 "),
        "{lines:?}"
    );
    assert!(field(lines[0], "in_ms") < 1000, "{lines:?}");
    assert_eq!(lines[1], "after: [0, 1, 4, 9, 16]");
    assert_eq!(lines[2], "failed: index 13");
    assert_eq!(lines[3], "second batch died: index 4200000");
    assert_eq!(lines[4], "second batch failed: index 4300000");
    assert_eq!(lines[5], "after: [0, 1, 4, 9, 16]");
}

#[test]
fn the_first_replies_do_not_cost_the_parent_a_mebibyte_a_worker() {
    // A reply buffer of 1 MiB made ready for each worker's first reply cost the parent
    // 256 page faults a worker (the issue of the pool's speed; `process_pool` peaked at
    // 6.6 MiB): 1,067 for a pool of four, start-up included. Buffers now grow as replies
    // need: about 180 (debug build).
    let done = fixture("first-replies");
    let line = done.lines()[0];
    assert_eq!(
        field(line, "replied"),
        4,
        "each worker replied once: {line}"
    );
    assert!(field(line, "faults") < 512, "{line}");
}
