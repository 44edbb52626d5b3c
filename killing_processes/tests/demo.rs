//! Runs the `killing_processes` binary and checks what it prints.

use std::process::Command;
use std::time::Duration;

use test_support::{assert_bad_input, assert_ctrl_c_leaves_nothing, assert_help_names, run};

const BIN: &str = env!("CARGO_BIN_EXE_killing_processes");
const LIMIT: Duration = Duration::from_secs(30);

fn lines_of(args: &[&str]) -> Vec<String> {
    let done = run(Command::new(BIN).args(args), LIMIT);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(
        !done.stdout.contains("Finished function"),
        "{}",
        done.stdout
    );
    done.lines().iter().map(|l| l.to_string()).collect()
}

fn line_starting<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starts with {prefix:?}: {lines:?}"))
}

#[test]
fn terminate_gives_exit_code_minus_15() {
    let lines = lines_of(&[]);
    let before = line_starting(&lines, "Process before execution: ");
    assert!(before.starts_with("Process before execution: <Process name='Process-1' parent="));
    assert!(before.ends_with(" initial> False"), "{before}");
    assert!(line_starting(&lines, "Process running: ").ends_with(" started> True"));
    // Right after terminate() the child may or may not be gone yet: Python's output
    // shows either, so only the shape is checked.
    let terminated = line_starting(&lines, "Process terminated: ");
    assert!(terminated.ends_with("> True") || terminated.ends_with("> False"));
    assert!(
        line_starting(&lines, "Process joined: ").ends_with(" stopped exitcode=-SIGTERM> False")
    );
    assert_eq!(lines.last().unwrap(), "Process exit code: -15");
}

#[test]
fn kill_gives_exit_code_minus_9() {
    let lines = lines_of(&["--signal", "kill"]);
    assert!(line_starting(&lines, "Process joined: ").contains("exitcode=-SIGKILL"));
    assert_eq!(lines.last().unwrap(), "Process exit code: -9");
}

#[test]
fn sigint_gives_exit_code_minus_2() {
    let lines = lines_of(&["--signal", "int"]);
    assert_eq!(lines.last().unwrap(), "Process exit code: -2");
}

#[test]
fn a_delay_lets_the_target_print_before_the_signal() {
    let lines = lines_of(&["--delay-ms", "1500"]);
    for expected in ["Starting function", "--> 0", "--> 1"] {
        assert!(lines.iter().any(|l| l == expected), "{expected}: {lines:?}");
    }
    assert!(!lines.iter().any(|l| l == "--> 3"), "{lines:?}");
}

#[test]
fn ctrl_c_leaves_no_process_behind() {
    assert_ctrl_c_leaves_nothing(
        BIN,
        &["--delay-ms", "20000"],
        |line| line == "--> 0",
        Duration::from_secs(5),
    );
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    let line = assert_bad_input(BIN, &["--signal", "hup"]);
    assert!(
        line.contains("[possible values: term, kill, int]"),
        "{line}"
    );
    assert_bad_input(BIN, &["--delay-ms", "soon"]);
    assert_help_names(BIN, "--signal");
    // The "What to notice" text reaches the user, not only the source.
    assert_help_names(BIN, "What to notice");
}

#[test]
fn a_closed_output_ends_it_quietly_and_a_full_one_with_one_line() {
    use test_support::{assert_one_line_on_a_full_device, assert_quiet_when_output_closes};
    assert_quiet_when_output_closes(BIN, &[]);
    assert_one_line_on_a_full_device(BIN, &[]);
}
