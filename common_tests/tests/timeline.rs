//! Multi-process tests of `common::timeline`, run through the single-threaded
//! `timeline_fixture` binary (a test must not fork on the harness's threads).

use std::time::Duration;

use test_support::{Finished, run_fixture};

fn fixture(scenario: &str) -> Finished {
    run_fixture(
        env!("CARGO_BIN_EXE_timeline_fixture"),
        &[scenario],
        Duration::from_secs(60),
    )
}

/// The events of `role`, in order, without the role.
fn of<'a>(lines: &[&'a str], role: &str) -> Vec<&'a str> {
    let prefix = format!("{role} ");
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

fn position(lines: &[&str], line: &str) -> usize {
    lines
        .iter()
        .position(|l| *l == line)
        .unwrap_or_else(|| panic!("no {line:?} in {lines:#?}"))
}

#[test]
fn the_parent_and_each_child_record_their_part() {
    let done = fixture("life");
    let lines = done.lines();
    assert_eq!(lines.last(), Some(&"lost 0"), "{lines:#?}");
    assert_eq!(lines[0], "main Running { name: \"MainProcess\" }");
    let main = of(&lines, "main");
    let expected_main = [
        "Started a",
        "Started b",
        "Reaped a 0",
        "Reaped b 0",
        "Started sleeper",
        "SignalSent sleeper 15",
        "Reaped sleeper -15",
        "Started worker",
        "Started worker",
        "Reaped worker 0",
        "Reaped worker 0",
    ];
    assert_eq!(&main[1..], expected_main, "{lines:#?}");
    for name in ["a", "b"] {
        let running = format!("Running {{ name: \"{name}\" }}");
        assert_eq!(
            of(&lines, name),
            [
                running.as_str(),
                "BarrierArrived",
                "BarrierPassed",
                "LockAcquired",
                "LockReleased",
                "Exiting { code: 0 }"
            ],
            "{lines:#?}"
        );
    }
    // Nobody passes the barrier before both arrived.
    for (passer, other) in [("a", "b"), ("b", "a")] {
        assert!(
            position(&lines, &format!("{other} BarrierArrived"))
                < position(&lines, &format!("{passer} BarrierPassed")),
            "{lines:#?}"
        );
    }
    // The lock is held by one at a time, and the timeline shows it so.
    let (a_took, a_let_go) = (
        position(&lines, "a LockAcquired"),
        position(&lines, "a LockReleased"),
    );
    let (b_took, b_let_go) = (
        position(&lines, "b LockAcquired"),
        position(&lines, "b LockReleased"),
    );
    assert!(a_let_go < b_took || b_let_go < a_took, "{lines:#?}");
    // The terminated sleeper never says it exits.
    assert!(
        !of(&lines, "sleeper")
            .iter()
            .any(|l| l.starts_with("Exiting")),
        "{lines:#?}"
    );
    // Each chunk of 2 ran once, in a pool worker, and finished.
    let mut firsts: Vec<&str> = of(&lines, "worker")
        .into_iter()
        .filter(|l| l.starts_with("ChunkStarted"))
        .collect();
    firsts.sort_unstable();
    assert_eq!(
        firsts,
        (0..4)
            .map(|k| format!("ChunkStarted {{ first: {}, count: 2 }}", 2 * k))
            .collect::<Vec<_>>(),
        "{lines:#?}"
    );
    let ended = of(&lines, "worker")
        .iter()
        .filter(|l| l.starts_with("ChunkEnded"))
        .count();
    assert_eq!(ended, 4, "{lines:#?}");
}

#[test]
fn nothing_is_recorded_unless_asked() {
    let done = fixture("off");
    assert_eq!(done.lines(), ["recording false", "events 0"]);
}

#[test]
fn a_full_log_still_records_how_a_process_ended() {
    let done = fixture("full");
    let lines = done.lines();
    assert_eq!(&lines[..2], ["exiting true", "reaped true"], "{lines:#?}");
    let lost: u64 = lines[2].strip_prefix("lost ").unwrap().parse().unwrap();
    assert!(lost > 0, "{lines:#?}");
}
