//! Runs the `exchanging_objects` binary and checks what it prints.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use test_support::{
    Finished, assert_bad_input, assert_ctrl_c_leaves_nothing, assert_help_names,
    assert_one_line_on_a_full_device, assert_quiet_when_output_closes, run,
};

const BIN: &str = env!("CARGO_BIN_EXE_exchanging_objects");
const LIMIT: Duration = Duration::from_secs(30);

fn demo(args: &[&str]) -> Finished {
    let done = run(Command::new(BIN).args(args), LIMIT);
    assert_eq!(done.code(), 0, "{args:?}: {}\n{}", done.stdout, done.stderr);
    done
}

/// How many times each item was appended, and popped, by whom.
fn tally(done: &Finished) -> (BTreeMap<u64, usize>, BTreeMap<u64, Vec<String>>) {
    let mut appended = BTreeMap::new();
    let mut popped: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for line in done.lines() {
        let Some((who, rest)) = line.split_once(" : item ") else {
            continue;
        };
        let (item, what) = rest.split_once(' ').expect("item N ...");
        let item: u64 = item.parse().expect("a number");
        match what {
            "appended to the queue" => *appended.entry(item).or_default() += 1,
            "popped from the queue" => popped.entry(item).or_default().push(who.to_string()),
            other => panic!("{other:?} in {line:?}"),
        }
    }
    (appended, popped)
}

#[test]
fn every_item_is_appended_once_and_popped_once() {
    let done = demo(&["--producers", "3", "--consumers", "2", "--items", "40"]);
    let (appended, popped) = tally(&done);
    assert_eq!(appended.len(), 120);
    assert!(appended.values().all(|&n| n == 1), "{appended:?}");
    assert_eq!(
        popped.keys().copied().collect::<Vec<_>>(),
        (0..120).collect::<Vec<_>>()
    );
    assert!(popped.values().all(|who| who.len() == 1), "{popped:?}");
    let lines = done.lines();
    let queue_line = lines[lines.len() - 2];
    assert!(
        queue_line.starts_with("Queue: 120 items put, 120 taken (Consumer-1: "),
        "{queue_line}"
    );
}

#[test]
fn the_default_run_prints_the_python_scripts_summary_lines() {
    let done = demo(&[]);
    let lines = done.lines();
    assert_eq!(lines.len(), 12, "{lines:?}");
    assert!(lines[10].starts_with("Queue: 5 items put, 5 taken (Consumer-1: "));
    // The squarer reads the end of file once the parent closes its end: it was not
    // left holding a copy of that end (it would wait forever then).
    assert_eq!(
        lines[11],
        "Pipe: sent 0..5 to the Squarer, received [0, 1, 4, 9, 16], then end of file"
    );
}

#[test]
fn a_consumer_killed_in_get_leaves_the_queue_to_the_others() {
    for _ in 0..5 {
        let started = Instant::now();
        let done = demo(&["--items", "20", "--kill-consumer-at", "3"]);
        assert!(started.elapsed() < Duration::from_secs(10));
        let (_, popped) = tally(&done);
        let victim = done
            .lines()
            .into_iter()
            .find_map(|line| line.strip_suffix(" was killed with SIGKILL while it waited in get()"))
            .expect("a victim")
            .to_string();
        assert_eq!(
            popped[&3],
            std::slice::from_ref(&victim),
            "the victim took item 3"
        );
        // Every item was taken once, those after the kill by the survivor.
        assert_eq!(
            popped.keys().copied().collect::<Vec<_>>(),
            (0..20).collect::<Vec<_>>()
        );
        assert!(popped.values().all(|who| who.len() == 1), "{popped:?}");
        let last = popped[&19][0].clone();
        assert_ne!(last, victim, "{}", done.stdout);
        assert!(
            done.stdout.contains("Queue: 20 items put, 20 taken"),
            "{}",
            done.stdout
        );
    }
}

#[test]
fn the_only_consumer_killed_leaves_the_rest_in_the_queue_without_a_hang() {
    let done = demo(&["--consumers", "1", "--kill-consumer-at", "2"]);
    assert!(
        done.stdout
            .contains("Queue: 5 items put, 3 taken (Consumer-1: 3)"),
        "{}",
        done.stdout
    );
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    assert_bad_input(BIN, &["--consumers", "0"]);
    assert_bad_input(BIN, &["--producers", "17"]);
    assert_bad_input(BIN, &["--items", "many"]);
    let line = assert_bad_input(BIN, &["--kill-consumer-at", "5"]);
    assert!(line.contains("the items are 0..5"), "{line}");
    assert_help_names(BIN, "--kill-consumer-at");
    assert_help_names(BIN, "What to notice");
}

#[test]
fn a_closed_output_ends_it_quietly_and_a_full_one_with_one_line() {
    assert_quiet_when_output_closes(BIN, &["--items", "200"]);
    assert_one_line_on_a_full_device(BIN, &[]);
}

#[test]
fn ctrl_c_leaves_no_process_behind() {
    // The consumer that took item 0 is killed only once the parent sees it: with
    // 10,000 items a producer is still putting when Ctrl-C comes.
    assert_ctrl_c_leaves_nothing(
        BIN,
        &["--producers", "2", "--items", "10000"],
        |line| line.contains("appended"),
        Duration::from_secs(10),
    );
}
