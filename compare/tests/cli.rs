//! Runs the `compare` binary.

use std::process::Command;
use std::time::Duration;

use test_support::{assert_bad_input, assert_help_names, run};

mod demos;

const BIN: &str = env!("CARGO_BIN_EXE_compare");

#[test]
fn an_unknown_demo_is_bad_input() {
    assert_bad_input(BIN, &["frobnicate"]);
    assert_bad_input(BIN, &[]);
    assert_help_names(BIN, "bench");
}

#[test]
fn a_demo_compares_with_its_python_version() {
    // Under `cargo test --workspace` the demos are built next to `compare`; run
    // alone, compare must say what to build rather than fail obscurely.
    // Six processes with tiny workloads print at nearly the same moment; with
    // PYTHONUNBUFFERED=1 (as in CI) Python's lines used to get spliced together about
    // one run in five, so a few runs catch that reliably.
    for _ in 0..8 {
        let done = run(
            Command::new(BIN).env("PYTHONUNBUFFERED", "1").args([
                "spawning_processes",
                "--",
                "--processes",
                "6",
                "--unit",
                "10",
            ]),
            Duration::from_secs(60),
        );
        if done.stderr.contains("run `cargo build") {
            // Not built, or older than its sources (`cargo test -p compare` alone builds
            // compare only): compare says what to build, and that is all it can do.
            assert_eq!(done.code(), 1, "{}", done.stderr);
            return;
        }
        assert_eq!(done.code(), 0, "{}", done.stderr);
        assert!(done.stdout.starts_with("Rust"), "{}", done.stdout);
        assert!(
            done.stdout
                .contains("Same lines in both, numbers and order aside."),
            "{}",
            done.stdout
        );
    }
}

/// Runs compare with `args`; `None` when the demos are not built or are older than
/// their sources (`cargo test -p compare` alone builds compare only).
fn compare(args: &[&str]) -> Option<test_support::Finished> {
    let done = run(Command::new(BIN).args(args), Duration::from_secs(120));
    if done.stderr.contains("run `cargo build") {
        assert_eq!(done.code(), 1, "{}", done.stderr);
        return None;
    }
    Some(done)
}

#[test]
fn a_racy_demo_agrees_and_says_which_outcome_each_side_showed() {
    let Some(done) = compare(&["--width", "40", "killing_processes"]) else {
        return;
    };
    assert_eq!(done.code(), 0, "{}\n{}", done.stdout, done.stderr);
    assert!(done.stdout.starts_with("  Rust "), "{}", done.stdout);
    assert!(
        done.stdout
            .contains("A race either side can win (not a difference):"),
        "{}",
        done.stdout
    );
    assert!(done.stdout.contains("Python / Rust: "), "{}", done.stdout);
    assert!(
        done.stdout
            .lines()
            .filter(|line| line.contains(" | "))
            .all(|line| line.chars().count() <= 2 * (40 + 2) + 3),
        "a line wider than two columns of 40: {}",
        done.stdout
    );
}

#[test]
fn all_demos_in_one_table() {
    let Some(done) = compare(&["--all"]) else {
        return;
    };
    let lines = done.lines();
    assert!(lines[0].starts_with("demo "), "{lines:?}");
    assert_eq!(
        lines.len(),
        demos::DEMOS.len() + 2,
        "a header, every demo, the RSS floor: {lines:?}"
    );
    assert_eq!(done.code(), 0, "{}", done.stdout);
    assert!(
        lines[1..=demos::DEMOS.len()]
            .iter()
            .all(|l| l.split_whitespace().nth(1) == Some("yes"))
    );
}

#[test]
fn bench_prints_one_row_next_to_python_and_the_floor() {
    let Some(done) = compare(&["bench", "--quick", "--only", "start-join"]) else {
        return;
    };
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let lines = done.lines();
    assert!(lines[0].contains(" cores, load "), "{lines:?}");
    let row = lines
        .iter()
        .find(|l| l.contains("[start-join]"))
        .unwrap_or_else(|| panic!("no start-join row: {lines:?}"));
    assert!(row.contains("µs"), "{row}");
    // Python, Rust and the floor: three "median (min-max)" cells.
    assert_eq!(row.matches("(").count(), 3, "{row}");
    let json = compare(&["bench", "--quick", "--only", "lock-1", "--json"]).expect("built");
    assert!(json.stdout.starts_with("{\"machine\": "), "{}", json.stdout);
    assert!(
        json.stdout.contains("\"row\": \"lock-1-robust\""),
        "{}",
        json.stdout
    );
    assert_bad_input(BIN, &["bench", "--only", "nothing-like-this"]);
}

/// The long options a `--help` text names, `--help` and `--version` aside.
fn options_in(help: &str) -> std::collections::BTreeSet<String> {
    help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .filter(|word| *word != "--help" && *word != "--version")
        .map(str::to_string)
        .collect()
}

#[test]
fn python_counterparts_take_the_same_options_as_their_rust_twins() {
    let folder = std::path::Path::new(BIN).parent().expect("a folder");
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../python");
    for demo in demos::DEMOS {
        let rust = folder.join(demo);
        if !rust.exists() {
            return; // `cargo test -p compare` alone does not build the demos
        }
        let rust_help = run(Command::new(&rust).arg("--help"), Duration::from_secs(20));
        let python_help = run(
            Command::new("python3")
                .current_dir(&python)
                .args([&format!("{demo}.py"), "--help"]),
            Duration::from_secs(20),
        );
        assert_eq!(
            options_in(&rust_help.stdout),
            options_in(&python_help.stdout),
            "{demo}"
        );
    }
}

#[test]
fn a_real_difference_exits_1_and_is_marked() {
    // Ctrl-C's signal ends the Rust child with -SIGINT; Python's child turns it into a
    // KeyboardInterrupt and ends otherwise: a difference, not a race. The signal is
    // sent 300 ms in, once Python's child runs its target: sent at once, it could land
    // while that child was still coming out of `os.fork()` (seen once in CI), before
    // Python's child sets anything up, and end it with -SIGINT too.
    let Some(done) = compare(&[
        "killing_processes",
        "--",
        "--signal",
        "int",
        "--delay-ms",
        "300",
    ]) else {
        return;
    };
    assert_eq!(done.code(), 1, "{}", done.stdout);
    assert!(
        done.stdout
            .contains("They differ: the lines marked ! have no match on the other side."),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout.contains("! Process exit code: -2"),
        "{}",
        done.stdout
    );
}

#[test]
fn timeline_draws_both_runs_one_under_the_other_on_one_scale() {
    let args = [
        "processes_barrier",
        "--",
        "--stagger-ms",
        "200",
        "--timeline",
    ];
    let Some(done) = compare(&args) else {
        return;
    };
    assert_eq!(done.code(), 0, "{}\n{}", done.stdout, done.stderr);
    let (_, drawings) = done
        .stdout
        .split_once("\nRust:\nTimeline: ")
        .unwrap_or_else(|| panic!("no Rust timeline: {}", done.stdout));
    let (rust, python) = drawings
        .split_once("\nPython:\nTimeline: ")
        .unwrap_or_else(|| panic!("no Python timeline under it: {}", done.stdout));
    // One scale: the same column width and the same axis, whichever run was longer.
    let scale = |drawing: &str| {
        drawing
            .lines()
            .take(3)
            .map(|l| {
                l.split_once(" in all, ")
                    .map_or(l.to_string(), |(_, rest)| rest.to_string())
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(scale(rust), scale(python), "{}", done.stdout);
    for drawing in [rust, python] {
        let p1 = drawing
            .lines()
            .find(|l| l.starts_with("p1 - test_with_barrier"));
        // Held at the barrier for most of the run (Python's p1 may take a column or
        // two to get there).
        assert!(
            p1.is_some_and(|row| row.contains("[") && row.contains(&".".repeat(30))),
            "{drawing}"
        );
        assert!(
            drawing.lines().all(|l| l.chars().count() <= 80),
            "{drawing}"
        );
    }
    // The demo itself ran without --timeline: no drawing in its output columns.
    assert_eq!(
        done.stdout.matches("Timeline: ").count(),
        2,
        "{}",
        done.stdout
    );
    let leftovers = std::fs::read_dir(std::env::temp_dir())
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with("compare-")
                        && (name.ends_with("-rust.json") || name.ends_with("-python.json"))
                })
                .count()
        })
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "trace files left in the temporary folder");
}
