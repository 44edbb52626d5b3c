//! Multi-process tests of `common::queue`, `common::connection` and the signalling
//! primitives of `common::sync` (Event, Semaphore, Condition), run through the
//! single-threaded `exchange_fixture` binary (a test must not fork on the harness's
//! threads). Each mirrors a test of CPython's `_test_multiprocessing.py` where there is
//! one, and adds the cases where Python hangs.

use std::time::Duration;

use test_support::{Finished, field, run_fixture};

const LIMIT: Duration = Duration::from_secs(120);

fn fixture(args: &[&str]) -> Finished {
    run_fixture(env!("CARGO_BIN_EXE_exchange_fixture"), args, LIMIT)
}

fn line(done: &Finished) -> &str {
    done.lines().first().copied().unwrap_or_default()
}

#[test]
fn many_producers_and_consumers_pass_every_item_exactly_once() {
    let done = fixture(&["queue-many", "3", "3", "2000"]);
    assert_eq!(line(&done), "once=6000 duplicated=0 lost=0");
    let done = fixture(&["queue-many", "1", "4", "3000"]);
    assert_eq!(line(&done), "once=3000 duplicated=0 lost=0");
}

#[test]
fn a_consumer_killed_at_a_random_moment_leaves_the_queue_usable_and_whole() {
    let done = fixture(&["queue-kill-consumer", "25"]);
    let line = line(&done);
    assert_eq!(field(line, "duplicated"), 0, "{line}");
    assert_eq!(field(line, "usable"), 25, "{line}");
    // Each victim may take the one item it held when it died, no more.
    assert!(field(line, "unaccounted") <= 25, "{line}");
}

#[test]
fn a_producer_killed_at_a_random_moment_loses_nothing_it_had_put() {
    let done = fixture(&["queue-kill-producer", "25"]);
    let line = line(&done);
    assert_eq!(line, "trials=25 survivor_lost=0 gaps=0 torn=0");
}

#[test]
fn items_put_before_and_after_a_fork_come_out_in_order() {
    let done = fixture(&["queue-fork"]);
    assert_eq!(line(&done), "in_order=true then_empty=true");
}

#[test]
fn join_returns_when_every_task_is_done_and_not_before() {
    let done = fixture(&["joinable"]);
    assert_eq!(line(&done), "all_done_at_join=true task_done_too_many=true");
}

#[test]
fn a_pipe_carries_bytes_and_16_mib_and_reads_eof_once_the_child_is_gone() {
    let done = fixture(&["pipe-echo"]);
    let lines = done.lines();
    assert_eq!(lines[0], "bytes=ok");
    assert!(lines[1].starts_with("poll_empty=ok "), "{lines:?}");
    assert!(
        (100..2000).contains(&field(lines[1], "waited_ms")),
        "{lines:?}"
    );
    assert_eq!(lines[2], "big=ok");
    assert_eq!(lines[3], "eof_after_child_ended=ok");
}

#[test]
fn eof_comes_at_once_after_the_last_message() {
    let done = fixture(&["pipe-eof"]);
    let line = line(&done);
    assert!(line.starts_with("got=[0, 1, 2] then=eof "), "{line}");
    assert!(field(line, "in_ms") < 1000, "{line}");
}

#[test]
fn a_child_reads_eof_when_its_parent_closes_the_end_it_kept() {
    // In Python the child holds a copy of the parent's end and waits forever, unless
    // it closes that copy itself.
    let done = fixture(&["pipe-handover"]);
    assert_eq!(line(&done), "child_saw_eof=true");
}

#[test]
fn a_sender_killed_mid_message_gives_truncated_not_a_hang() {
    let done = fixture(&["pipe-truncated"]);
    assert_eq!(line(&done), "truncated expected=16777216 got_less=true");
}

#[test]
fn an_event_set_by_a_child_ends_the_wait() {
    let done = fixture(&["event"]);
    let line = line(&done);
    assert!(line.starts_with("set=true "), "{line}");
    let waited = field(line, "waited_ms");
    assert!((150..5000).contains(&waited), "{line}");
}

#[test]
fn a_semaphore_of_two_lets_two_processes_in_and_never_three() {
    let done = fixture(&["semaphore", "6"]);
    assert_eq!(line(&done), "most_inside=2 value_after=2");
}

#[test]
fn notify_n_wakes_exactly_n_waiting_processes() {
    let done = fixture(&["condition-notify-n"]);
    assert_eq!(line(&done), "woken_before=0 told:woken=2:2,4:6,0:6");
}

#[test]
fn notify_skips_a_dead_waiter_and_wakes_a_live_one() {
    // Python's notify() waits for ever here (it waits for the dead sleeper to wake).
    let done = fixture(&["condition-dead-waiter"]);
    let line = line(&done);
    assert!(line.starts_with("told=1 live_woke=true "), "{line}");
    assert!(field(line, "in_ms") < 1000, "{line}");
}

#[test]
fn wait_for_sees_the_predicate_come_true_and_times_out_when_it_does_not() {
    let done = fixture(&["condition-wait-for"]);
    let line = line(&done);
    assert!(line.starts_with("reached=true never=false "), "{line}");
    assert!((100..2000).contains(&field(line, "waited_ms")), "{line}");
    assert!(line.ends_with("notify_unheld_refused=true"), "{line}");
}

#[test]
fn a_waiter_wakes_at_the_call_not_at_its_next_look() {
    // A sleeper looks again every 100 ms by itself; the wake-up call must beat that by
    // far (a median of about 50 ms would mean it is missing).
    let done = fixture(&["wake-latency", "15"]);
    let line = line(&done);
    for key in ["queue_us", "event_us", "semaphore_us", "condition_us"] {
        assert!(field(line, key) < 20_000, "{key}: {line}");
    }
}
