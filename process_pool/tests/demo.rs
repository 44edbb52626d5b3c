//! Runs the `process_pool` binary and checks what it prints.

use std::process::Command;
use std::time::{Duration, Instant};

use test_support::{assert_bad_input, assert_help_names, run};

const BIN: &str = env!("CARGO_BIN_EXE_process_pool");
const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn the_pool_prints_the_squares_in_order() {
    let done = run(&mut Command::new(BIN), LIMIT);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert_eq!(
        done.lines(),
        ["Pool    : [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]"]
    );
}

#[test]
fn show_workers_names_a_worker_for_every_input() {
    let done = run(
        Command::new(BIN).args(["--show-workers", "--chunksize", "1", "--workers", "2"]),
        LIMIT,
    );
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let lines = done.lines();
    assert_eq!(lines.len(), 11, "{lines:?}");
    let mut workers = Vec::new();
    for (input, line) in lines[..10].iter().enumerate() {
        let expected = format!("input {input:>3} -> {:>5}   by worker ", input * input);
        assert!(line.starts_with(&expected), "{line:?}");
        workers.push(line.rsplit(' ').next().unwrap().to_string());
    }
    workers.sort();
    workers.dedup();
    assert!(!workers.is_empty() && workers.len() <= 2, "{workers:?}");
    assert_eq!(lines[10], "Pool    : [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]");
}

#[test]
fn inputs_and_chunksize_are_knobs() {
    let done = run(
        Command::new(BIN).args(["--inputs", "4", "--chunksize", "3"]),
        LIMIT,
    );
    assert_eq!(done.lines(), ["Pool    : [0, 1, 4, 9]"]);
}

#[test]
fn a_crashing_task_gives_an_error_instead_of_a_hang() {
    let started = Instant::now();
    let done = run(Command::new(BIN).args(["--crash-at", "3"]), LIMIT);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(done.code(), 1);
    // The pool replaced its dead worker and works again.
    assert_eq!(
        done.stdout,
        "Pool used again, without input 3: [0, 1, 4, 16, 25, 36, 49, 64, 81]\n"
    );
    let lines: Vec<&str> = done.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("Error: worker "), "{lines:?}");
    assert!(
        lines[0].contains("died (killed by SIGKILL) while running the task for input 3"),
        "{lines:?}"
    );
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    assert_bad_input(BIN, &["--workers", "0"]);
    assert_bad_input(BIN, &["--chunksize", "0"]);
    assert_bad_input(BIN, &["--inputs", "ten"]);
    assert_bad_input(BIN, &["--crash-at", "-1"]);
    // Used to wrap to -1 and crash nothing.
    assert_bad_input(BIN, &["--crash-at", "18446744073709551615"]);
    assert_bad_input(BIN, &["--crash-at", "10"]);
    assert_help_names(BIN, "--crash-at");
    // The "What to notice" text reaches the user, not only the source.
    assert_help_names(BIN, "What to notice");
}

#[test]
fn a_closed_output_ends_it_quietly_and_a_full_one_with_one_line() {
    use test_support::{assert_one_line_on_a_full_device, assert_quiet_when_output_closes};
    assert_quiet_when_output_closes(BIN, &["--show-workers"]);
    assert_one_line_on_a_full_device(BIN, &[]);
}

#[test]
fn time_shows_a_loop_beating_the_pool_on_tiny_tasks() {
    let done = run(
        Command::new(BIN).args(["--inputs", "100000", "--time"]),
        LIMIT,
    );
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let lines = done.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("Pool map: "), "{lines:?}");
    assert!(lines[0].contains("; the loop is "), "{lines:?}");
}
