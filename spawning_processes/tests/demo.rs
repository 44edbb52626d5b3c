//! Runs the `spawning_processes` binary and checks what it prints.

use std::process::Command;
use std::time::Duration;

use test_support::{assert_bad_input, assert_help_names, run};

const BIN: &str = env!("CARGO_BIN_EXE_spawning_processes");
const LIMIT: Duration = Duration::from_secs(30);

fn expected_pair(i: usize, unit: usize) -> [String; 2] {
    [
        format!("calling myFunc from process n°: {i}"),
        format!(
            "output from myFunc n°: {i} is a list of {} values",
            i * unit
        ),
    ]
}

#[test]
fn every_process_reports_once_in_some_order() {
    let done = run(&mut Command::new(BIN), LIMIT);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let mut lines: Vec<String> = done.lines().iter().map(|l| l.to_string()).collect();
    let total = lines.pop().unwrap_or_default();
    assert!(total.starts_with("Total time: "), "{total}");
    let mut expected: Vec<String> = (0..6).flat_map(|i| expected_pair(i, 1000)).collect();
    lines.sort();
    expected.sort();
    assert_eq!(lines, expected);
}

#[test]
fn sequential_keeps_the_loop_order() {
    let done = run(
        Command::new(BIN).args(["--sequential", "--processes", "4", "--unit", "10"]),
        LIMIT,
    );
    let expected: Vec<String> = (0..4).flat_map(|i| expected_pair(i, 10)).collect();
    let lines = done.lines();
    assert_eq!(lines[..lines.len() - 1], expected);
    assert!(
        lines[lines.len() - 1].starts_with("Total time: "),
        "{lines:?}"
    );
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    assert_bad_input(BIN, &["--processes", "many"]);
    assert_bad_input(BIN, &["--processes", "100000"]);
    assert_bad_input(BIN, &["--unit", "-5"]);
    assert_help_names(BIN, "--sequential");
    // The "What to notice" text reaches the user, not only the source.
    assert_help_names(BIN, "What to notice");
}

#[test]
fn a_closed_output_ends_it_quietly_and_a_full_one_with_one_line() {
    use test_support::{assert_one_line_on_a_full_device, assert_quiet_when_output_closes};
    assert_quiet_when_output_closes(BIN, &[]);
    assert_quiet_when_output_closes(BIN, &["--sequential"]);
    assert_one_line_on_a_full_device(BIN, &[]);
}
