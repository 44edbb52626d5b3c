//! Runs the `background_processes` binary and checks what it prints.

use std::process::Command;
use std::time::Duration;

use test_support::{
    Running, assert_bad_input, assert_ctrl_c_leaves_nothing, assert_help_names, is_running, run,
    wait_until,
};

const BIN: &str = env!("CARGO_BIN_EXE_background_processes");
const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn the_daemon_is_terminated_and_the_other_completes() {
    for args in [&[][..], &["--wait-ms", "300"][..]] {
        let done = run(Command::new(BIN).args(args), LIMIT);
        assert_eq!(done.code(), 0, "{}", done.stderr);
        let lines = done.lines();
        assert!(
            !lines.contains(&"Exiting background_process"),
            "{args:?}: {lines:?}"
        );
        assert!(
            lines.contains(&"Starting NO_background_process"),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"Exiting NO_background_process"),
            "{lines:?}"
        );
        // Without a wait, the daemon may be terminated before it prints anything.
        let first = if args.is_empty() { 5 } else { 0 };
        for i in first..10 {
            assert!(
                lines.contains(&format!("---> {i}").as_str()),
                "{args:?}: {lines:?}"
            );
        }
    }
}

#[test]
fn without_daemons_both_complete() {
    let done = run(Command::new(BIN).arg("--no-daemons"), LIMIT);
    let lines = done.lines();
    assert!(lines.contains(&"Exiting background_process"), "{lines:?}");
    assert!(
        lines.contains(&"Exiting NO_background_process"),
        "{lines:?}"
    );
}

#[test]
fn the_daemon_dies_when_the_parent_is_killed() {
    let mut running = Running::spawn(Command::new(BIN).args(["--wait-ms", "20000"]));
    running.wait_for_line(|l| l == "---> 4", LIMIT);
    let daemon = test_support::all_processes()
        .into_iter()
        .find(|p| p.ppid == running.pid() && p.comm == "background_proc")
        .expect("the daemonic child, named background_proc in /proc");
    running.signal(libc::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(5), || !is_running(daemon.pid)),
        "the daemon outlived its killed parent"
    );
}

#[test]
fn ctrl_c_leaves_no_process_behind() {
    assert_ctrl_c_leaves_nothing(
        BIN,
        &["--wait-ms", "20000"],
        |line| line == "---> 9",
        Duration::from_secs(5),
    );
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    assert_bad_input(BIN, &["--wait-ms", "1.5"]);
    assert_bad_input(BIN, &["--no-daemons=yes"]);
    assert_help_names(BIN, "--no-daemons");
    // The "What to notice" text reaches the user, not only the source.
    assert_help_names(BIN, "What to notice");
}

#[test]
fn a_closed_output_ends_it_quietly() {
    use test_support::assert_quiet_when_output_closes;
    assert_quiet_when_output_closes(BIN, &[]);
}
