//! Runs the `naming_processes` binary and checks what it prints.

use std::process::Command;
use std::time::Duration;

use test_support::{assert_bad_input, assert_help_names, run};

const BIN: &str = env!("CARGO_BIN_EXE_naming_processes");
const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn both_processes_report_their_names_and_list_lengths() {
    let done = run(&mut Command::new(BIN), LIMIT);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let lines = done.lines();
    for name in ["do_something process 1", "Process-2"] {
        assert!(
            lines.contains(&format!("Starting process name = {name}").as_str()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&format!("Exiting process name = {name}, list length = 1000").as_str()),
            "{lines:?}"
        );
    }
    assert_eq!(lines.len(), 6, "each line once: {lines:?}");
    // The README's claim: the children filled their own copies of the list, which the
    // parent never sees, and the shared arrays, which it does.
    assert_eq!(
        lines[4],
        "In the parent: out_list has 0 values, the shared arrays hold 1000 and 1000"
    );
    assert!(
        lines[5].starts_with("Total time: ") && lines[5].ends_with(" s"),
        "{lines:?}"
    );
}

#[test]
fn count_sets_the_list_length() {
    let done = run(Command::new(BIN).args(["--count", "7"]), LIMIT);
    let lengths = done
        .lines()
        .iter()
        .filter(|l| l.ends_with("list length = 7"))
        .count();
    assert_eq!(lengths, 2, "{}", done.stdout);
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    assert_bad_input(BIN, &["--count", "lots"]);
    assert_bad_input(BIN, &["--count", "-1"]);
    assert_bad_input(BIN, &["--count", "0"]);
    assert_bad_input(BIN, &["--count", "20000001"]);
    assert_bad_input(BIN, &["--frobnicate"]);
    let line = assert_bad_input(BIN, &["--cont", "5"]);
    assert!(
        line.contains("a similar argument exists: '--count'"),
        "{line}"
    );
    assert_help_names(BIN, "--count");
    // The "What to notice" text reaches the user, not only the source.
    assert_help_names(BIN, "What to notice");
}

#[test]
fn a_closed_output_ends_it_quietly_and_a_full_one_with_one_line() {
    use test_support::{assert_one_line_on_a_full_device, assert_quiet_when_output_closes};
    assert_quiet_when_output_closes(BIN, &[]);
    assert_one_line_on_a_full_device(BIN, &[]);
}

#[test]
fn a_full_dev_shm_is_one_error_line_not_a_sigbus() {
    // A mount namespace whose /dev/shm holds 64 KiB; the demo's arrays need 1.6 MB.
    // Before the memory was reserved at creation, the demo died of SIGBUS (-7).
    let done = run(
        Command::new("unshare").args([
            "--mount",
            "sh",
            "-c",
            &format!("mount -t tmpfs -o size=64k tmpfs /dev/shm && exec {BIN} --count 100000"),
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(done.code(), 1, "{}", done.stderr);
    assert_eq!(
        done.stderr,
        "Error: cannot create shared memory: No space left on device (os error 28) \
         (/dev/shm is full: `df -h /dev/shm` shows it)\n"
    );
}
