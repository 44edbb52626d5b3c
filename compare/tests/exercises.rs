//! Runs every command of `EXERCISES.md` and checks what its exercise says to look for,
//! so that an exercise cannot drift from the code.
//!
//! A command is the one line of a ```sh block: `cargo run -q -p DEMO [-- ARGS]` runs
//! the demo's binary (built next to `compare` by `cargo test --workspace`), and
//! `python3 python/SCRIPT.py ARGS` runs Python from the repository's root. The
//! comments right after the block are the checks: `<!-- expect: TEXT -->` (a line of
//! stdout or stderr contains TEXT), `<!-- expect-not: TEXT -->`,
//! `<!-- expect-in-order: A | B | ... -->` (lines containing A, then B, ... in that
//! order) and `<!-- exit: N -->`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use test_support::run;

mod demos;

/// One command of the file and its checks.
#[derive(Debug, Default)]
struct Exercise {
    line: usize,
    command: String,
    expect: Vec<String>,
    expect_not: Vec<String>,
    in_order: Vec<Vec<String>>,
    exit: Option<i32>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The commands of `text` with their checks.
fn exercises(text: &str) -> Vec<Exercise> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        if lines[at].trim() != "```sh" {
            at += 1;
            continue;
        }
        let mut exercise = Exercise {
            line: at + 2,
            ..Exercise::default()
        };
        at += 1;
        while at < lines.len() && lines[at].trim() != "```" {
            assert!(
                exercise.command.is_empty(),
                "EXERCISES.md:{}: one command a block",
                at + 1
            );
            exercise.command = lines[at].trim().to_string();
            at += 1;
        }
        at += 1;
        while let Some(check) = lines
            .get(at)
            .and_then(|l| l.trim().strip_prefix("<!-- "))
            .and_then(|l| l.strip_suffix(" -->"))
        {
            let (kind, value) = check.split_once(": ").expect("KIND: VALUE");
            match kind {
                "expect" => exercise.expect.push(value.to_string()),
                "expect-not" => exercise.expect_not.push(value.to_string()),
                "expect-in-order" => exercise
                    .in_order
                    .push(value.split(" | ").map(str::to_string).collect()),
                "exit" => exercise.exit = Some(value.parse().expect("an exit code")),
                other => panic!("EXERCISES.md:{}: unknown check {other:?}", at + 1),
            }
            at += 1;
        }
        found.push(exercise);
    }
    found
}

/// The process that runs `command` as the file shows it.
fn command_for(command: &str) -> Command {
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        ["cargo", "run", "-q", "-p", demo, rest @ ..] => {
            let binary = Path::new(env!("CARGO_BIN_EXE_compare"))
                .parent()
                .expect("a folder")
                .join(demo);
            assert!(
                binary.exists(),
                "{} is not built: run the exercises with `cargo test --workspace`",
                binary.display()
            );
            let args = match rest {
                ["--", args @ ..] => args,
                [] => &[][..],
                other => panic!("{command}: options go after `--`, not {other:?}"),
            };
            let mut process = Command::new(binary);
            process.args(args);
            process
        }
        ["python3", script, args @ ..] if script.starts_with("python/") => {
            let mut process = Command::new("python3");
            process
                .current_dir(root())
                .env_remove("PYTHONUNBUFFERED")
                .arg(script)
                .args(args);
            process
        }
        _ => panic!("{command}: not a command the exercises test knows how to run"),
    }
}

/// Whether `lines` hold lines containing each of `wanted`, in that order.
fn in_order(lines: &[&str], wanted: &[String]) -> bool {
    let mut rest = lines.iter();
    wanted
        .iter()
        .all(|text| rest.by_ref().any(|line| line.contains(text.as_str())))
}

#[test]
fn every_exercise_shows_what_it_says() {
    let text = std::fs::read_to_string(root().join("EXERCISES.md")).expect("EXERCISES.md");
    let all = exercises(&text);
    for demo in demos::DEMOS {
        assert!(
            all.iter().any(|e| e.command.contains(demo)),
            "no exercise runs {demo}"
        );
    }
    for exercise in &all {
        let checks = exercise.expect.len() + exercise.expect_not.len() + exercise.in_order.len();
        assert!(
            checks > 0,
            "EXERCISES.md:{}: a command without a check",
            exercise.line
        );
        let done = run(&mut command_for(&exercise.command), Duration::from_secs(60));
        let output = format!("{}{}", done.stdout, done.stderr);
        let lines: Vec<&str> = output.lines().collect();
        let at = format!(
            "EXERCISES.md:{} `{}`:\n{output}",
            exercise.line, exercise.command
        );
        assert_eq!(done.code(), exercise.exit.unwrap_or(0), "{at}");
        for text in &exercise.expect {
            assert!(
                lines.iter().any(|l| l.contains(text.as_str())),
                "no {text:?}: {at}"
            );
        }
        for text in &exercise.expect_not {
            assert!(
                !lines.iter().any(|l| l.contains(text.as_str())),
                "{text:?}: {at}"
            );
        }
        for wanted in &exercise.in_order {
            assert!(in_order(&lines, wanted), "not in order {wanted:?}: {at}");
        }
    }
}

#[test]
fn the_checks_can_fail() {
    let text = "```sh\ncargo run -q -p naming_processes\n```\n<!-- expect: a -->\n\
                <!-- expect-in-order: x | y -->\n<!-- exit: 3 -->\n";
    let parsed = exercises(text);
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].command, "cargo run -q -p naming_processes");
    assert_eq!(parsed[0].expect, ["a"]);
    assert_eq!(parsed[0].exit, Some(3));
    assert!(in_order(&["x", "y"], &parsed[0].in_order[0]));
    assert!(!in_order(&["y", "x"], &parsed[0].in_order[0]));
}
