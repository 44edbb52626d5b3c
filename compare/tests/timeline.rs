//! `--timeline` and `--trace FILE`: each property the timeline is there to show, checked
//! on the events a run recorded (read back from its trace, not from the drawing), for
//! the Rust demo and its Python twin alike; and the trace itself, in the Trace Event
//! Format with one track per process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use demo_kit::timeline::{Activity, Ending, Timeline, Track};
use serde_json::Value;
use test_support::run;

mod demos;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A trace file in the temporary folder, removed when dropped.
struct TraceFile(PathBuf);

impl TraceFile {
    /// A name of its own: the tests run at the same time, some of them the same demo.
    fn new(label: &str) -> TraceFile {
        static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        TraceFile(std::env::temp_dir().join(format!("timeline-test-{pid}-{n}-{label}.json")))
    }
}

impl Drop for TraceFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[derive(Clone, Copy, Debug)]
enum Side {
    Rust,
    Python,
}

const SIDES: [Side; 2] = [Side::Rust, Side::Python];

/// The command that runs `demo` on `side`, without options.
fn demo_command(side: Side, demo: &str) -> Command {
    match side {
        Side::Rust => {
            let binary = Path::new(env!("CARGO_BIN_EXE_compare"))
                .parent()
                .expect("a folder")
                .join(demo);
            assert!(binary.exists(), "{} is not built", binary.display());
            Command::new(binary)
        }
        Side::Python => {
            let mut command = Command::new("python3");
            command
                .current_dir(root().join("python"))
                .arg(format!("{demo}.py"));
            command
        }
    }
}

/// Runs `demo` with `args` and `--trace`, and returns the trace's JSON and stdout.
fn traced(side: Side, demo: &str, args: &[&str]) -> (Value, String) {
    let file = TraceFile::new(&format!("{demo}-{side:?}"));
    let mut command = demo_command(side, demo);
    command.args(args).arg("--trace").arg(&file.0);
    let done = run(&mut command, Duration::from_secs(60));
    let at = format!("{side:?} {demo} {args:?}: {}{}", done.stdout, done.stderr);
    let text = std::fs::read_to_string(&file.0).unwrap_or_else(|e| panic!("{e}: {at}"));
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {at}"));
    (json, done.stdout)
}

fn timeline(side: Side, demo: &str, args: &[&str]) -> Timeline {
    let (json, _) = traced(side, demo, args);
    Timeline::from_trace(&json).unwrap_or_else(|e| panic!("{side:?} {demo}: {e}\n{json}"))
}

fn named<'a>(timeline: &'a Timeline, name: &str) -> &'a Track {
    timeline
        .track(name)
        .unwrap_or_else(|| panic!("no track {name}: {timeline:#?}"))
}

fn overlap(a: &Track, b: &Track) -> bool {
    a.start < b.end && b.start < a.end
}

/// The children: every track but the main process's.
fn children(timeline: &Timeline) -> Vec<&Track> {
    timeline
        .tracks
        .iter()
        .filter(|t| t.name != "MainProcess")
        .collect()
}

#[test]
fn the_two_processes_of_naming_processes_run_at_the_same_time() {
    for side in SIDES {
        // Enough work that each child lasts far longer than a start.
        let t = timeline(side, "naming_processes", &["--count", "2000000"]);
        let one = named(&t, "do_something process 1");
        let two = named(&t, "Process-2");
        assert!(overlap(one, two), "{side:?}: {t:#?}");
        assert_eq!(
            (one.ending, two.ending),
            (Ending::Exited(0), Ending::Exited(0))
        );
    }
}

#[test]
fn spawning_processes_overlap_unless_sequential() {
    for side in SIDES {
        let args = ["--processes", "4", "--unit", "1000000"];
        let t = timeline(side, "spawning_processes", &args);
        let kids = children(&t);
        assert_eq!(kids.len(), 4, "{side:?}: {t:#?}");
        let overlapping = kids
            .iter()
            .enumerate()
            .any(|(i, a)| kids[i + 1..].iter().any(|b| overlap(a, b)));
        assert!(
            overlapping,
            "{side:?}: concurrent, yet none overlap: {t:#?}"
        );

        let t = timeline(
            side,
            "spawning_processes",
            &[&args[..], &["--sequential"]].concat(),
        );
        let kids = children(&t);
        assert_eq!(kids.len(), 4, "{side:?}: {t:#?}");
        for pair in kids.windows(2) {
            assert!(
                pair[0].end <= pair[1].start,
                "{side:?}: --sequential, yet {} ends after {} starts: {t:#?}",
                pair[0].name,
                pair[1].name
            );
        }
    }
}

#[test]
fn the_daemon_of_background_processes_is_cut_short() {
    for side in SIDES {
        let t = timeline(side, "background_processes", &[]);
        let daemon = named(&t, "background_process");
        let other = named(&t, "NO_background_process");
        assert_eq!(
            daemon.ending,
            Ending::Killed(libc::SIGTERM),
            "{side:?}: {t:#?}"
        );
        assert!(
            daemon.signals.iter().any(|&(_, s)| s == libc::SIGTERM),
            "{side:?}: nobody sent the SIGTERM: {t:#?}"
        );
        // Both sleep one second; only the non-daemonic one gets to finish.
        assert!(daemon.end - daemon.start < 900_000.0, "{side:?}: {t:#?}");
        assert_eq!(other.ending, Ending::Exited(0), "{side:?}: {t:#?}");
        assert!(other.end - other.start >= 1_000_000.0, "{side:?}: {t:#?}");
        assert!(daemon.end < other.end, "{side:?}: {t:#?}");
    }
}

#[test]
fn killing_processes_sends_the_signal_that_ends_the_child() {
    for side in SIDES {
        let t = timeline(side, "killing_processes", &["--delay-ms", "200"]);
        let child = named(&t, "Process-1");
        assert_eq!(
            child.ending,
            Ending::Killed(libc::SIGTERM),
            "{side:?}: {t:#?}"
        );
        let &(sent, _) = child.signals.first().expect("a signal sent");
        assert!(
            sent - child.start >= 150_000.0,
            "{side:?}: sent too soon: {t:#?}"
        );
        assert!(sent <= child.end, "{side:?}: {t:#?}");
    }
}

#[test]
fn the_barrier_holds_p1_back_until_p2_arrives() {
    for side in SIDES {
        let t = timeline(side, "processes_barrier", &["--stagger-ms", "300"]);
        let wait = |name: &str| -> (f64, f64) {
            let track = named(&t, name);
            let waits: Vec<_> = track
                .spans
                .iter()
                .filter(|s| s.activity == Activity::BarrierWait { passed: true })
                .collect();
            assert_eq!(waits.len(), 1, "{side:?} {name}: {t:#?}");
            (waits[0].start, waits[0].end)
        };
        let (p1_arrived, p1_left) = wait("p1 - test_with_barrier");
        let (p2_arrived, p2_left) = wait("p2 - test_with_barrier");
        assert!(
            p1_left - p1_arrived >= 250_000.0,
            "{side:?}: p1 was not held: {t:#?}"
        );
        assert!(
            p1_left >= p2_arrived,
            "{side:?}: p1 left before p2 came: {t:#?}"
        );
        assert!(p2_left >= p2_arrived, "{side:?}: {t:#?}");
        // The processes without the barrier wait for nobody.
        let free = named(&t, "p3 - test_without_barrier");
        assert!(
            free.spans
                .iter()
                .all(|s| !matches!(s.activity, Activity::BarrierWait { .. }))
        );
        // Each barrier process printed its line under the Lock, once it had passed.
        for (name, left) in [
            ("p1 - test_with_barrier", p1_left),
            ("p2 - test_with_barrier", p2_left),
        ] {
            let held = named(&t, name)
                .spans
                .iter()
                .any(|s| s.activity == Activity::LockHeld && s.start >= left);
            assert!(held, "{side:?}: {name} never held the Lock: {t:#?}");
        }
    }
}

#[test]
fn the_pool_runs_every_input_once_in_chunks_of_its_workers() {
    for side in SIDES {
        let t = timeline(
            side,
            "process_pool",
            &["--inputs", "40", "--chunksize", "4"],
        );
        let mut ran: Vec<u64> = Vec::new();
        for track in &t.tracks {
            for span in &track.spans {
                if let Activity::Chunk { first, count } = span.activity {
                    assert!(
                        track.name.starts_with("ForkPoolWorker-"),
                        "{side:?}: a chunk ran in {}: {t:#?}",
                        track.name
                    );
                    assert_eq!(count, 4, "{side:?}: {t:#?}");
                    assert!(span.start >= track.start && span.end <= track.end);
                    ran.extend(first..first + count);
                }
            }
        }
        ran.sort_unstable();
        assert_eq!(ran, (0..40).collect::<Vec<u64>>(), "{side:?}: {t:#?}");
        let workers = t
            .tracks
            .iter()
            .filter(|t| t.name.starts_with("ForkPoolWorker-"));
        assert_eq!(workers.count(), 4, "{side:?}: {t:#?}");
    }
}

/// Checks that `trace` is in the Trace Event Format, with one track (pid) per process:
/// each named once, each with one life.
fn assert_one_track_per_process(trace: &Value, processes: usize, at: &str) {
    let events = trace["traceEvents"]
        .as_array()
        .expect("a traceEvents array");
    let mut names = std::collections::BTreeMap::new();
    let mut lives = std::collections::BTreeMap::new();
    for event in events {
        let ph = event["ph"]
            .as_str()
            .unwrap_or_else(|| panic!("no ph: {event}"));
        let pid = event["pid"]
            .as_u64()
            .unwrap_or_else(|| panic!("no pid: {event}"));
        assert!(event["name"].is_string(), "no name: {event}");
        match ph {
            "M" => {
                if event["name"] == "process_name" {
                    assert!(event["args"]["name"].is_string(), "{event}");
                    *names.entry(pid).or_insert(0) += 1;
                }
            }
            "X" => {
                assert!(event["ts"].as_f64().is_some(), "{event}");
                assert!(event["dur"].as_f64().is_some_and(|d| d >= 0.0), "{event}");
                if event["cat"] == "process" {
                    *lives.entry(pid).or_insert(0) += 1;
                }
            }
            "i" => assert!(event["ts"].as_f64().is_some(), "{event}"),
            other => panic!("an event of phase {other}: {event}"),
        }
    }
    assert_eq!(names.len(), processes, "{at}: {trace}");
    assert!(names.values().all(|&n| n == 1), "{at}: {trace}");
    assert_eq!(
        names.keys().collect::<Vec<_>>(),
        lives.keys().collect::<Vec<_>>(),
        "{at}"
    );
    assert!(lives.values().all(|&n| n == 1), "{at}: {trace}");
}

#[test]
fn every_demo_writes_a_trace_with_one_track_per_process() {
    // The main process and its children (the pool's four workers; the queue demo's
    // producer and consumer).
    let processes = |demo: &str| match demo {
        "naming_processes" | "background_processes" => 3,
        "spawning_processes" => 7,
        "killing_processes" => 2,
        "processes_barrier" | "process_pool" => 5,
        "exchanging_objects" => 0,
        other => panic!("{other}: how many processes?"),
    };
    for demo in demos::DEMOS {
        for side in SIDES {
            let (trace, _) = traced(side, demo, &[]);
            let expected = processes(demo);
            let expected = if expected == 0 {
                // Whatever it starts, but more than the main process.
                let n = trace["traceEvents"].as_array().map_or(0, |e| {
                    e.iter().filter(|e| e["name"] == "process_name").count()
                });
                assert!(n > 1, "{side:?} {demo}: {trace}");
                n
            } else {
                expected
            };
            assert_one_track_per_process(&trace, expected, &format!("{side:?} {demo}"));
        }
    }
}

#[test]
fn the_drawing_is_printed_after_the_output_in_80_columns() {
    for side in SIDES {
        let file = TraceFile::new(&format!("drawing-{side:?}"));
        let mut command = demo_command(side, "killing_processes");
        command.args(["--timeline", "--trace"]).arg(&file.0);
        let done = run(&mut command, Duration::from_secs(60));
        assert_eq!(done.code(), 0, "{side:?}: {}", done.stderr);
        let drawing = done
            .stdout
            .split_once("Timeline: ")
            .map(|(_, after)| after)
            .unwrap_or_else(|| panic!("{side:?}: no timeline after the output: {}", done.stdout));
        assert!(
            done.stdout.find("Process exit code").unwrap() < done.stdout.find("Timeline").unwrap()
        );
        for line in drawing.lines() {
            assert!(line.chars().count() <= 80, "{side:?}: {line:?}");
        }
        let row = drawing
            .lines()
            .find(|l| l.starts_with("Process-1"))
            .unwrap_or_else(|| panic!("{side:?}: no row: {drawing}"));
        assert!(row.ends_with("SIGTERM -15"), "{side:?}: {row}");
        assert!(row.contains('X'), "{side:?}: {row}");
        assert!(!done.stdout.contains('\x1b'), "{side:?}: colour on a pipe");
        // The drawing is the trace's: drawn again from the file, it is the same.
        let json = serde_json::from_str(&std::fs::read_to_string(&file.0).unwrap()).unwrap();
        let again = Timeline::from_trace(&json).unwrap();
        assert_eq!(
            again.draw(again.length, false),
            format!("Timeline: {drawing}")
        );
    }
}

#[test]
fn a_trace_file_that_cannot_be_written_is_bad_input() {
    for side in SIDES {
        let mut command = demo_command(side, "naming_processes");
        command.args(["--trace", "/nonexistent/folder/trace.json"]);
        let done = run(&mut command, Duration::from_secs(60));
        assert_eq!(done.code(), 2, "{side:?}: {}", done.stderr);
        assert!(
            done.stdout.is_empty(),
            "{side:?}: ran anyway: {}",
            done.stdout
        );
        assert_eq!(done.stderr.lines().count(), 1, "{side:?}: {}", done.stderr);
    }
}

/// One run's events, in `common`'s form and in the lines `python/timeline.py` logs.
fn the_same_run_both_ways() -> (common::timeline::Recording, String) {
    use common::timeline::{Event, Recording, What};
    let events = [
        (
            0,
            1,
            What::Running {
                name: "MainProcess".into(),
            },
            "running 0 0 MainProcess",
        ),
        (
            1_200,
            1,
            What::Started {
                child: 2,
                name: "worker".into(),
                daemon: false,
            },
            "started 2 0 worker",
        ),
        (
            1_300,
            2,
            What::Running {
                name: "worker".into(),
            },
            "running 0 0 worker",
        ),
        (
            2_000,
            1,
            What::Started {
                child: 3,
                name: "daemon".into(),
                daemon: true,
            },
            "started 3 1 daemon",
        ),
        (
            2_500,
            1,
            What::Started {
                child: 4,
                name: "ForkPoolWorker-1".into(),
                daemon: true,
            },
            "started 4 1 ForkPoolWorker-1",
        ),
        (
            3_000,
            1,
            What::Started {
                child: 5,
                name: "quick".into(),
                daemon: false,
            },
            "started 5 0 quick",
        ),
        (3_100, 5, What::Exiting { code: 2 }, "exiting 2 0 "),
        (3_200, 1, What::Reaped { child: 5, code: 2 }, "reaped 5 2 "),
        (10_000, 2, What::BarrierArrived, "barrier_arrived 0 0 "),
        (30_000, 2, What::BarrierPassed, "barrier_passed 0 0 "),
        (31_000, 2, What::LockAcquired, "lock_acquired 0 0 "),
        (32_500, 2, What::LockReleased, "lock_released 0 0 "),
        (
            40_000,
            4,
            What::ChunkStarted { first: 0, count: 3 },
            "chunk_started 0 3 ",
        ),
        (45_000, 4, What::ChunkEnded { first: 0 }, "chunk_ended 0 0 "),
        (
            46_000,
            4,
            What::ChunkStarted { first: 3, count: 3 },
            "chunk_started 3 3 ",
        ),
        (50_000, 4, What::ChunkEnded { first: 3 }, "chunk_ended 3 0 "),
        (60_000, 2, What::Exiting { code: 0 }, "exiting 0 0 "),
        (61_000, 1, What::Reaped { child: 2, code: 0 }, "reaped 2 0 "),
        (
            70_000,
            1,
            What::SignalSent {
                child: 3,
                signal: 15,
            },
            "signal 3 15 ",
        ),
        (
            71_000,
            1,
            What::SignalSent {
                child: 4,
                signal: 15,
            },
            "signal 4 15 ",
        ),
        (
            75_000,
            1,
            What::Reaped {
                child: 3,
                code: -15,
            },
            "reaped 3 -15 ",
        ),
        (
            76_000,
            1,
            What::Reaped {
                child: 4,
                code: -15,
            },
            "reaped 4 -15 ",
        ),
    ];
    let mut lines = String::new();
    let mut recording = Recording {
        elapsed: Duration::from_micros(80_000),
        ..Recording::default()
    };
    for (us, pid, what, line) in events {
        let at = Duration::from_micros(us);
        lines.push_str(&format!("{} {pid} {line}\n", at.as_nanos()));
        recording.events.push(Event { at, pid, what });
    }
    (recording, lines)
}

#[test]
fn python_builds_and_draws_the_timeline_as_rust_does() {
    let (recording, lines) = the_same_run_both_ways();
    let rust = Timeline::from_recording(&recording);
    let script = "import json, sys, timeline\n\
                  t = timeline.from_lines(sys.stdin.read(), 80000.0)\n\
                  print(json.dumps(timeline.to_trace(t)))\n\
                  sys.stdout.write(timeline.draw(t, t['length'], False))\n";
    let mut command = Command::new("python3");
    command
        .current_dir(root().join("python"))
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = command.spawn().expect("python3");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes())
        .expect("written");
    let output = child.wait_with_output().expect("python3 ran");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let (trace, drawing) = stdout.split_once('\n').expect("two parts");
    let python =
        Timeline::from_trace(&serde_json::from_str(trace).expect("JSON")).expect("a trace");
    assert_eq!(python, rust);
    assert_eq!(drawing, rust.draw(rust.length, false));
}

/// Runs `command` (a shell line) on a pseudo-terminal (`script`), with `NO_COLOR` set
/// to `no_color` or unset; what it printed.
fn on_a_terminal(command: &str, no_color: Option<&str>) -> String {
    let mut script = Command::new("script");
    script
        .args(["-qec", command, "/dev/null"])
        .current_dir(root().join("python"))
        .env_remove("NO_COLOR");
    if let Some(value) = no_color {
        script.env("NO_COLOR", value);
    }
    let done = run(&mut script, Duration::from_secs(60));
    assert_eq!(done.code(), 0, "{command}: {}{}", done.stdout, done.stderr);
    done.stdout
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let rust = Path::new(env!("CARGO_BIN_EXE_compare"))
        .parent()
        .expect("a folder")
        .join("killing_processes");
    let commands = [
        format!("{} --timeline", rust.display()),
        "python3 killing_processes.py --timeline".to_string(),
    ];
    for command in &commands {
        let coloured = on_a_terminal(command, None);
        assert!(
            coloured.contains("\x1b[1;31mX\x1b[0m"),
            "{command}: {coloured}"
        );
        for no_color in ["1", "yes"] {
            let plain = on_a_terminal(command, Some(no_color));
            assert!(
                !plain.contains('\x1b'),
                "{command} NO_COLOR={no_color}: {plain:?}"
            );
            assert!(plain.contains("SIGTERM -15"), "{command}: {plain}");
        }
        // An empty NO_COLOR does not count (https://no-color.org).
        assert!(
            on_a_terminal(command, Some("")).contains('\x1b'),
            "{command}"
        );
    }
}
