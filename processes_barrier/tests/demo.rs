//! Runs the `processes_barrier` binary and checks what it prints.

use std::process::Command;
use std::time::Duration;

use test_support::{
    Running, assert_bad_input, assert_ctrl_c_leaves_nothing, assert_help_names, leaked_segments,
    run, shm_entries,
};

const BIN: &str = env!("CARGO_BIN_EXE_processes_barrier");
const LIMIT: Duration = Duration::from_secs(30);

/// Microseconds since midnight of a `YYYY-MM-DD HH:MM:SS.ffffff` time at the end of
/// `line`, after `marker`. Panics on a line of another shape: that is an interleaved
/// or garbled line.
fn micros_after(line: &str, marker: &str) -> i64 {
    let time = line
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("no {marker:?} in {line:?}"));
    let (date, clock) = time.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
    assert_eq!(date.len(), 10, "{line:?}");
    let parts: Vec<&str> = clock.split([':', '.']).collect();
    assert_eq!(parts.len(), 4, "{line:?}");
    assert_eq!(parts[3].len(), 6, "microseconds in {line:?}");
    let number = |s: &str| -> i64 { s.parse().unwrap_or_else(|_| panic!("{line:?}")) };
    ((number(parts[0]) * 60 + number(parts[1])) * 60 + number(parts[2])) * 1_000_000
        + number(parts[3])
}

fn passed_line<'a>(lines: &[&'a str], name: &str) -> &'a str {
    let prefix = format!("process {name} ----> ");
    lines
        .iter()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line for {name}: {lines:?}"))
}

#[test]
fn every_process_prints_one_whole_line() {
    let done = run(&mut Command::new(BIN), LIMIT);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let lines = done.lines();
    assert_eq!(lines.len(), 5, "{lines:?}");
    for name in [
        "p1 - test_with_barrier",
        "p2 - test_with_barrier",
        "p3 - test_without_barrier",
        "p4 - test_without_barrier",
    ] {
        micros_after(passed_line(&lines, name), " ----> ");
    }
    assert!(
        lines[4].starts_with("The 2 barrier processes passed within "),
        "{lines:?}"
    );
}

#[test]
fn the_early_process_is_held_until_the_last_arrives() {
    let done = run(Command::new(BIN).args(["--stagger-ms", "300"]), LIMIT);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let lines = done.lines();
    let p2_arrival = lines
        .iter()
        .find(|l| l.starts_with("process p2 - test_with_barrier arrives at the barrier at "))
        .map(|l| micros_after(l, " at the barrier at "))
        .unwrap_or_else(|| panic!("no arrival line for p2: {lines:?}"));
    let p1_arrival = lines
        .iter()
        .find(|l| l.starts_with("process p1 - test_with_barrier arrives at the barrier at "))
        .map(|l| micros_after(l, " at the barrier at "))
        .unwrap_or_else(|| panic!("no arrival line for p1: {lines:?}"));
    let p1 = micros_after(passed_line(&lines, "p1 - test_with_barrier"), " ----> ");
    let p2 = micros_after(passed_line(&lines, "p2 - test_with_barrier"), " ----> ");
    assert!(p2_arrival - p1_arrival >= 250_000, "{lines:?}");
    assert!(p1 >= p2_arrival, "p1 passed before p2 arrived: {lines:?}");
    assert!((p1 - p2).abs() <= 50_000, "{lines:?}");
}

#[test]
fn the_barrier_can_wait_for_more_parties() {
    let done = run(
        Command::new(BIN).args(["--with-barrier", "4", "--without", "0"]),
        LIMIT,
    );
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let lines = done.lines();
    assert_eq!(lines.len(), 5, "{lines:?}");
    for k in 1..=4 {
        micros_after(
            passed_line(&lines, &format!("p{k} - test_with_barrier")),
            " ----> ",
        );
    }
    assert!(
        lines[4].starts_with("The 4 barrier processes passed within "),
        "{lines:?}"
    );
}

#[test]
fn nothing_is_left_in_dev_shm_when_the_demo_is_killed() {
    let before = shm_entries();
    let mut running = Running::spawn(Command::new(BIN).args(["--stagger-ms", "10000"]));
    running.wait_for_line(|l| l.contains("p1 - test_with_barrier arrives"), LIMIT);
    running.signal(libc::SIGKILL);
    assert_eq!(leaked_segments(&before), Vec::<String>::new());
}

#[test]
fn ctrl_c_leaves_no_process_behind() {
    assert_ctrl_c_leaves_nothing(
        BIN,
        &["--stagger-ms", "10000"],
        |line| line.contains("p1 - test_with_barrier arrives"),
        Duration::from_secs(5),
    );
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    assert_bad_input(BIN, &["--with-barrier", "0"]);
    assert_bad_input(BIN, &["--without", "x"]);
    assert_bad_input(BIN, &["--stagger-ms", "-3"]);
    assert_help_names(BIN, "--stagger-ms");
    // The "What to notice" text reaches the user, not only the source.
    assert_help_names(BIN, "What to notice");
}

#[test]
fn a_fork_that_fails_half_way_ends_the_demo_with_an_error() {
    // Room for one child only: p1 starts and waits at the barrier, p2 cannot start.
    // Before the fix, p1 waited forever and the demo with it.
    let mut command = Command::new(BIN);
    let done = run(test_support::with_room_for_children(&mut command, 1), LIMIT);
    assert_eq!(done.code(), 1, "{}", done.stderr);
    assert!(
        done.stderr.ends_with(
            "Error: cannot start p2 - test_with_barrier: fork failed: \
             Resource temporarily unavailable (os error 11)\n"
        ),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains(
            "Process p1 - test_with_barrier:\nError: the barrier is broken: abort() was called"
        ),
        "{}",
        done.stderr
    );
}

#[test]
fn a_closed_output_ends_it_quietly_and_a_full_one_with_one_line() {
    use test_support::{assert_one_line_on_a_full_device, assert_quiet_when_output_closes};
    assert_quiet_when_output_closes(BIN, &[]);
    assert_quiet_when_output_closes(BIN, &["--bench", "--generations", "2000"]);
    assert_one_line_on_a_full_device(BIN, &[]);
}

#[test]
fn one_party_too_many_gives_up_on_its_timeout_instead_of_hanging() {
    let started = std::time::Instant::now();
    let done = run(
        Command::new(BIN).args(["--parties", "3", "--timeout-ms", "300"]),
        LIMIT,
    );
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(started.elapsed() < Duration::from_secs(10));
    let lines = done.lines();
    for name in ["p1", "p2"] {
        let gave_up = format!(
            "process {name} - test_with_barrier gave up: the barrier broke before its 3 parties came"
        );
        assert!(lines.contains(&gave_up.as_str()), "{lines:?}");
    }
    assert_eq!(
        lines.last(),
        Some(&"No barrier process passed: the barrier broke")
    );
}

#[test]
fn the_counter_loses_updates_without_the_lock_and_none_with_it() {
    let locked = run(Command::new(BIN).args(["--count-to", "200000"]), LIMIT);
    assert_eq!(
        locked.lines().last(),
        Some(&"Counter: 400000 of 400000 increments (0 lost)"),
        "{}",
        locked.stdout
    );
    let unlocked = run(
        Command::new(BIN).args(["--count-to", "1000000", "--no-lock"]),
        LIMIT,
    );
    let last = unlocked.lines().last().copied().unwrap_or_default();
    assert!(
        last.starts_with("Counter: ") && !last.ends_with("(0 lost)"),
        "{last}"
    );
    assert_bad_input(BIN, &["--parties", "0"]);
    assert_bad_input(BIN, &["--timeout-ms", "0"]);
}
