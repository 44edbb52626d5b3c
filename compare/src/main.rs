//! Runs a demo's Rust and Python versions with the same options and shows their output
//! side by side, then says whether they printed the same lines, numbers aside (pids,
//! times and random values differ from run to run, and concurrent lines may come in
//! another order). `compare bench` prints the speed tables of the demos' `--bench`
//! modes.
//!
//! Try: `cargo build --release --workspace && cargo run --release -p compare --
//! killing_processes -- --delay-ms 1500` (the first `--` ends cargo's options, the
//! second `compare`'s).
//!
//! Exit code: 0 when both versions printed the same lines, 1 when they differ (or a
//! version cannot run), 2 for bad input. It refuses to run a demo binary older than
//! its sources, and says what to build.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, anyhow};
use clap::Parser;

/// The demos that have a Python counterpart.
const DEMOS: [&str; 6] = [
    "naming_processes",
    "spawning_processes",
    "killing_processes",
    "background_processes",
    "processes_barrier",
    "process_pool",
];

/// Runs a demo in Rust and in Python side by side, or the speed tables (`bench`).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// A demo (naming_processes, spawning_processes, killing_processes,
    /// background_processes, processes_barrier, process_pool), or `bench`.
    demo: String,
    /// Options for both versions of the demo (after `--`).
    #[arg(last = true)]
    options: Vec<String>,
    /// Width of each column.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(20..=200))]
    width: u64,
}

/// A line with every run of digits replaced by `#`: what two runs should share.
fn shape(line: &str) -> String {
    let mut shaped = String::with_capacity(line.len());
    let mut in_number = false;
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                shaped.push('#');
            }
            in_number = true;
        } else {
            shaped.push(c);
            in_number = false;
        }
    }
    shaped
}

/// The lines of `left` and `right` whose shapes the other side lacks (order aside).
fn differences(left: &str, right: &str) -> (Vec<String>, Vec<String>) {
    let mut left_shapes: Vec<String> = left.lines().map(shape).collect();
    let mut right_shapes: Vec<String> = right.lines().map(shape).collect();
    left_shapes.sort();
    right_shapes.sort();
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        let mut b = b.to_vec();
        a.iter()
            .filter(|line| match b.iter().position(|other| other == *line) {
                Some(found) => {
                    b.remove(found);
                    false
                }
                None => true,
            })
            .cloned()
            .collect()
    };
    (
        only(&left_shapes, &right_shapes),
        only(&right_shapes, &left_shapes),
    )
}

/// The lines of a run that depend on a race either side can win, taken out of the
/// comparison, and what the run showed of that race; `None` for demos without one.
///
/// - `killing_processes`: the child prints its lines (`Starting function`, `--> N`)
///   only as far as it gets before `terminate()` lands, which Python's slower start
///   makes less far.
/// - `background_processes` (daemonic, the default): the daemon prints from none to all
///   of its lines before the exit hook terminates it.
fn race(demo: &str, options: &[String], output: &str) -> (String, Option<String>) {
    let lines: Vec<&str> = output.lines().collect();
    match demo {
        "killing_processes" => {
            let child_line = |l: &str| {
                l == "Starting function" || l == "Finished function" || l.starts_with("--> ")
            };
            let printed = lines.iter().filter(|l| child_line(l)).count();
            let kept: Vec<&str> = lines.into_iter().filter(|l| !child_line(l)).collect();
            let outcome = format!("the child printed {printed} lines before terminate() landed");
            (kept.join("\n"), Some(outcome))
        }
        "background_processes" if !options.iter().any(|o| o == "--no-daemons") => {
            // The non-daemon prints `---> 5` to `---> 9`; the daemon `---> 0` to `---> 4`
            // with its own Starting and Exiting lines.
            let daemon_line = |l: &str| {
                l.ends_with(" background_process") && !l.contains("NO_")
                    || l.strip_prefix("---> ")
                        .and_then(|n| n.parse::<u32>().ok())
                        .is_some_and(|n| n < 5)
            };
            let printed = lines.iter().filter(|l| daemon_line(l)).count();
            let kept: Vec<&str> = lines.into_iter().filter(|l| !daemon_line(l)).collect();
            let outcome =
                format!("the daemon printed {printed} of its lines before it was terminated");
            (kept.join("\n"), Some(outcome))
        }
        _ => (output.to_string(), None),
    }
}

/// Two texts in two columns of `width` characters.
fn side_by_side(left: &str, right: &str, width: usize) -> String {
    let cut = |line: &str| -> String {
        let mut cut: String = line.chars().take(width).collect();
        let len = cut.chars().count();
        cut.extend(std::iter::repeat_n(' ', width - len));
        cut
    };
    let left: Vec<&str> = left.lines().collect();
    let right: Vec<&str> = right.lines().collect();
    let mut table = format!(
        "{} | Python\n{}-+-{}\n",
        cut("Rust"),
        "-".repeat(width),
        "-".repeat(width)
    );
    for row in 0..left.len().max(right.len()) {
        let l = left.get(row).copied().unwrap_or("");
        let r = right.get(row).copied().unwrap_or("");
        table.push_str(
            format!("{} | {}", cut(l), r.chars().take(width).collect::<String>()).trim_end(),
        );
        table.push('\n');
    }
    table
}

/// The workspace's `python/` folder.
fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../python")
}

/// A demo's Rust binary, built next to this one, and no older than its sources.
fn rust_binary(demo: &str) -> anyhow::Result<PathBuf> {
    let here = std::env::current_exe().context("cannot find this program's folder")?;
    let binary = here.with_file_name(demo);
    let release = if here.components().any(|c| c.as_os_str() == "release") {
        " --release"
    } else {
        ""
    };
    if !binary.exists() {
        return Err(anyhow!(
            "{demo} is not built next to compare; run `cargo build{release} --workspace` first"
        ));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sources = [demo, "common", "demo_kit"].map(|krate| workspace.join(krate).join("src"));
    if let Some(newer) = newer_source(&binary, &sources) {
        return Err(anyhow!(
            "{demo} is older than {}; run `cargo build{release} -p {demo}` first",
            newer.display()
        ));
    }
    Ok(binary)
}

/// A source file under `folders` modified after `binary` was built, if there is one.
fn newer_source(binary: &Path, folders: &[PathBuf]) -> Option<PathBuf> {
    let built = std::fs::metadata(binary).and_then(|m| m.modified()).ok()?;
    let mut pending: Vec<PathBuf> = folders.to_vec();
    while let Some(path) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m > built)
            {
                return Some(path);
            }
        }
    }
    None
}

/// What a command printed: stdout and stderr together, in that order.
fn output_of(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

fn main() -> Result<(), demo_kit::cli::Report> {
    let args: Args = demo_kit::cli::parse();
    if args.demo == "bench" {
        for demo in ["processes_barrier", "process_pool"] {
            print!(
                "{}",
                output_of(Command::new(rust_binary(demo)?).arg("--bench"))?
            );
            println!();
        }
        return Ok(());
    }
    if !DEMOS.contains(&args.demo.as_str()) {
        eprintln!(
            "error: unknown demo {:?}; one of: {}, bench",
            args.demo,
            DEMOS.join(", ")
        );
        std::process::exit(2);
    }
    let rust = output_of(Command::new(rust_binary(&args.demo)?).args(&args.options))?;
    // With PYTHONUNBUFFERED set, `print` writes the text and the newline in two
    // write(2) calls, so lines of processes printing at once get spliced together
    // ("...n°: 0calling myFunc..."). Buffered, `print(..., flush=True)` is one write
    // per line, as Rust's `println!` is: the comparison is then about content, not luck.
    let python = output_of(
        Command::new("python3")
            .env_remove("PYTHONUNBUFFERED")
            .current_dir(python_dir())
            .arg(format!("{}.py", args.demo))
            .args(&args.options),
    )?;
    print!("{}", side_by_side(&rust, &python, args.width as usize));
    let (rust_kept, rust_race) = race(&args.demo, &args.options, &rust);
    let (python_kept, python_race) = race(&args.demo, &args.options, &python);
    let (only_rust, only_python) = differences(&rust_kept, &python_kept);
    if let (Some(rust_race), Some(python_race)) = (rust_race, python_race) {
        println!("\nA race either side can win (not a difference):");
        println!("  Rust:   {rust_race}");
        println!("  Python: {python_race}");
    }
    if only_rust.is_empty() && only_python.is_empty() {
        println!("\nSame lines in both, numbers and order aside.");
        Ok(())
    } else {
        println!("\nLines only Rust printed (numbers as #): {only_rust:?}");
        println!("Lines only Python printed (numbers as #): {only_python:?}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_replaces_each_number_with_one_mark() {
        assert_eq!(
            shape("<Process name='Process-1' pid=4470 parent=4469 started> True"),
            "<Process name='Process-#' pid=# parent=# started> True"
        );
    }

    #[test]
    fn differences_ignore_numbers_and_order() {
        let rust = "b 1\na 22\nc\n";
        let python = "a 7\nb 9\nd\n";
        let (only_rust, only_python) = differences(rust, python);
        assert_eq!(only_rust, ["c"]);
        assert_eq!(only_python, ["d"]);
        assert_eq!(
            differences("x 1\nx 2\n", "x 3\n").0,
            ["x #"],
            "repeats count"
        );
    }

    /// Recorded outputs of `background_processes`: the daemon cut short after none of
    /// its lines (Rust) and after one (Python).
    const BACKGROUND_RUST: &str = "Starting NO_background_process\n---> 5\n---> 6\n---> 7\n\
                                   ---> 8\n---> 9\nExiting NO_background_process\n";
    const BACKGROUND_PYTHON: &str = "Starting background_process\nStarting \
                                     NO_background_process\n---> 5\n---> 6\n---> 7\n\
                                     ---> 8\n---> 9\nExiting NO_background_process\n";

    fn agree(demo: &str, options: &[String], rust: &str, python: &str) -> bool {
        let (rust, _) = race(demo, options, rust);
        let (python, _) = race(demo, options, python);
        differences(&rust, &python) == (vec![], vec![])
    }

    #[test]
    fn each_outcome_of_a_race_is_accepted() {
        assert!(agree(
            "background_processes",
            &[],
            BACKGROUND_RUST,
            BACKGROUND_PYTHON
        ));
        let all = "Starting background_process\n---> 0\n---> 1\n---> 2\n---> 3\n---> 4\n";
        assert!(agree(
            "background_processes",
            &[],
            BACKGROUND_RUST,
            &format!("{all}{BACKGROUND_RUST}")
        ));
        let (_, outcome) = race("background_processes", &[], BACKGROUND_PYTHON);
        assert_eq!(
            outcome.as_deref(),
            Some("the daemon printed 1 of its lines before it was terminated")
        );
        let killed = "Process running: <...> True\nProcess exit code: -15\n";
        let started = format!("Starting function\n--> 0\n{killed}");
        assert!(agree("killing_processes", &[], killed, &started));
        let (_, outcome) = race("killing_processes", &[], &started);
        assert_eq!(
            outcome.as_deref(),
            Some("the child printed 2 lines before terminate() landed")
        );
    }

    #[test]
    fn a_real_difference_is_still_one() {
        let missing_exit = BACKGROUND_PYTHON.replace("Exiting NO_background_process\n", "");
        assert!(!agree(
            "background_processes",
            &[],
            BACKGROUND_RUST,
            &missing_exit
        ));
        // With --no-daemons nothing is a race: every line must be there.
        let no_daemons = ["--no-daemons".to_string()];
        assert!(!agree(
            "background_processes",
            &no_daemons,
            BACKGROUND_RUST,
            BACKGROUND_PYTHON
        ));
        assert!(!agree(
            "killing_processes",
            &[],
            "Process exit code: -15\n",
            "Process exit code: 1\n"
        ));
    }

    #[test]
    fn a_source_newer_than_the_binary_is_found() {
        let folder = std::env::temp_dir().join(format!("compare-test-{}", std::process::id()));
        let src = folder.join("src");
        std::fs::create_dir_all(&src).unwrap();
        let binary = folder.join("demo");
        std::fs::write(src.join("main.rs"), "fn main() {}").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&binary, "").unwrap();
        assert_eq!(newer_source(&binary, std::slice::from_ref(&src)), None);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(src.join("lib.rs"), "// edited").unwrap();
        assert_eq!(
            newer_source(&binary, std::slice::from_ref(&src)),
            Some(src.join("lib.rs"))
        );
        std::fs::remove_dir_all(&folder).unwrap();
    }

    #[test]
    fn side_by_side_pads_the_left_column() {
        let table = side_by_side("one\ntwo", "uno", 5);
        assert_eq!(
            table,
            "Rust  | Python\n------+------\none   | uno\ntwo   |\n"
        );
    }
}
