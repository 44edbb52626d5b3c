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
//! `compare DEMO -- --timeline` draws both runs' timelines after their outputs, one
//! under the other, on one time scale.
//!
//! Exit code: 0 when both versions printed the same lines, 1 when they differ (or a
//! version cannot run), 2 for bad input. It refuses to run a demo binary older than
//! its sources, and says what to build.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use clap::Parser;
use demo_kit::timeline::Timeline;

mod bench;

/// The demos that have a Python counterpart.
pub(crate) const DEMOS: [&str; 7] = [
    "naming_processes",
    "spawning_processes",
    "killing_processes",
    "background_processes",
    "processes_barrier",
    "process_pool",
    "exchanging_objects",
];

/// Runs a demo in Rust and in Python side by side, or the speed tables (`bench`).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// A demo (naming_processes, spawning_processes, killing_processes,
    /// background_processes, processes_barrier, process_pool, exchanging_objects), or
    /// `bench`.
    #[arg(required_unless_present = "all")]
    demo: Option<String>,
    /// Options for both versions of the demo (after `--`).
    #[arg(last = true)]
    options: Vec<String>,
    /// Every demo with its default options, then one table: agreement, time, memory.
    #[arg(long, conflicts_with = "demo")]
    all: bool,
    /// Width of each column (default: two columns that fit the terminal; one after
    /// the other when it is too narrow, or not a terminal).
    #[arg(long, value_parser = clap::value_parser!(u64).range(20..=200))]
    width: Option<u64>,
    /// With `bench`: fewer repetitions and smaller sizes (for CI).
    #[arg(long)]
    quick: bool,
    /// With `bench`: JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// With `bench`: only the rows whose key starts with ROW (start-join, lock, barrier,
    /// pool, demo, ...).
    #[arg(long, value_name = "ROW")]
    only: Option<String>,
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
///   makes less far; and `is_alive()` just after `terminate()` is `True` until the
///   signal has landed, `False` after.
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
            // Right after terminate(), is_alive() is True until the signal has landed.
            let mut alive = "?";
            let kept: Vec<String> = lines
                .into_iter()
                .filter(|l| !child_line(l))
                .map(|l| match l.strip_prefix("Process terminated: ") {
                    Some(rest) if rest.ends_with("> True") || rest.ends_with("> False") => {
                        alive = if rest.ends_with("True") {
                            "True"
                        } else {
                            "False"
                        };
                        "Process terminated: <state> <alive>".to_string()
                    }
                    _ => l.to_string(),
                })
                .collect();
            let outcome = format!(
                "the child printed {printed} lines before terminate() landed; \
                 is_alive() just after terminate(): {alive}"
            );
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

/// `line` cut into pieces of at most `width` characters (one empty piece for an empty
/// line): wrapped, never cut off.
fn wrap(line: &str, width: usize) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars
        .chunks(width)
        .map(|piece| piece.iter().collect())
        .collect()
}

/// Each line of `text` with its mark: `!` for a line whose shape the other side lacks.
fn marked<'a>(text: &'a str, only_here: &[String]) -> Vec<(char, &'a str)> {
    let mut unmatched = only_here.to_vec();
    text.lines()
        .map(
            |line| match unmatched.iter().position(|s| *s == shape(line)) {
                Some(found) => {
                    unmatched.remove(found);
                    ('!', line)
                }
                None => (' ', line),
            },
        )
        .collect()
}

/// Two texts in two columns of `width` characters each (plus a mark), long lines
/// wrapped; lines marked `!` have no match on the other side.
fn side_by_side(left: &[(char, &str)], right: &[(char, &str)], width: usize) -> String {
    let pad = |text: &str| format!("{text:<width$}");
    let mut table = format!(
        "  {} |   Python\n{}-+-{}\n",
        pad("Rust"),
        "-".repeat(width + 2),
        "-".repeat(width + 2)
    );
    for row in 0..left.len().max(right.len()) {
        let (lmark, l) = left.get(row).copied().unwrap_or((' ', ""));
        let (rmark, r) = right.get(row).copied().unwrap_or((' ', ""));
        let (lparts, rparts) = (wrap(l, width), wrap(r, width));
        for part in 0..lparts.len().max(rparts.len()) {
            let lm = if part == 0 { lmark } else { ' ' };
            let rm = if part == 0 { rmark } else { ' ' };
            let lp = lparts.get(part).map_or("", String::as_str);
            let rp = rparts.get(part).map_or("", String::as_str);
            let line = format!("{lm} {} | {rm} {rp}", pad(lp));
            table.push_str(line.trim_end());
            table.push('\n');
        }
    }
    table
}

/// Two texts one after the other, for a narrow screen or a file; lines marked `!` have
/// no match on the other side.
fn one_after_the_other(left: &[(char, &str)], right: &[(char, &str)]) -> String {
    let mut text = String::new();
    for (title, lines) in [("Rust", left), ("Python", right)] {
        text.push_str(&format!("{title}\n{}\n", "-".repeat(title.len())));
        for (mark, line) in lines {
            text.push_str(format!("{mark} {line}").trim_end());
            text.push('\n');
        }
        text.push('\n');
    }
    text
}

/// The column width to use: `--width`, or what fits the terminal; `None` for one
/// after the other.
fn column_width(forced: Option<u64>) -> Option<usize> {
    if let Some(width) = forced {
        return usize::try_from(width).ok();
    }
    let (terminal_size::Width(columns), _) = terminal_size::terminal_size()?;
    // Two marks, two columns, " | ".
    let width = (usize::from(columns).saturating_sub(7)) / 2;
    (width >= 30).then_some(width)
}

/// What one side's run printed and cost.
struct Run {
    output: String,
    wall: Duration,
    /// User + system CPU time of the process and the children it waited for.
    cpu: Duration,
    /// The peak resident set size of the process or of one of its children, KiB.
    max_rss_kib: u64,
}

/// The hidden first argument that makes this program a launcher (see [`launch`]).
const LAUNCH: &str = "--launch-and-measure";

/// Runs `command`, collecting stdout then stderr, and measures it with `wait4`.
///
/// The command runs under a fresh copy of this program in launcher mode: a child's
/// peak RSS (`ru_maxrss`) counts the memory of the process it was forked from until
/// its `exec`, and a fresh launcher holds about 2 MiB where this process, after a few
/// measurements, holds tens.
fn run_measured(command: &mut Command) -> anyhow::Result<Run> {
    let report = std::env::temp_dir().join(format!(
        "compare-{}-{}.rusage",
        std::process::id(),
        REPORTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut launcher = Command::new(std::env::current_exe().context("this program")?);
    launcher
        .arg(LAUNCH)
        .arg(&report)
        .arg(command.get_program())
        .args(command.get_args());
    if let Some(folder) = command.get_current_dir() {
        launcher.current_dir(folder);
    }
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => launcher.env(key, value),
            None => launcher.env_remove(key),
        };
    }
    let mut child = launcher
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {command:?}"))?;
    let mut stdout = child.stdout.take().context("piped stdout")?;
    let mut stderr = child.stderr.take().context("piped stderr")?;
    let errors = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let mut output = Vec::new();
    stdout.read_to_end(&mut output)?;
    child.wait()?;
    output.extend(errors.join().unwrap_or_default());
    let numbers = std::fs::read_to_string(&report)
        .with_context(|| format!("{command:?} could not be measured"))?;
    let _ = std::fs::remove_file(&report);
    let numbers: Vec<u64> = numbers
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let [wall, cpu, max_rss_kib] = numbers[..] else {
        anyhow::bail!("a garbled measurement of {command:?}");
    };
    Ok(Run {
        output: String::from_utf8_lossy(&output).into_owned(),
        wall: Duration::from_nanos(wall),
        cpu: Duration::from_nanos(cpu),
        max_rss_kib,
    })
}

static REPORTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The peak RSS that any measurement shows at least (the launcher's, before `exec`),
/// MiB: measured once, on `true`.
pub(crate) fn rss_floor_mib() -> f64 {
    static FLOOR: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *FLOOR.get_or_init(|| {
        run_measured(&mut Command::new("true")).map_or(0.0, |run| run.max_rss_kib as f64 / 1024.0)
    })
}

/// Launcher mode: runs `program args` with this process's stdio, waits for it with
/// `wait4`, and writes `wall_ns cpu_ns max_rss_kib` to `report`.
fn launch(report: &str, program: &str, args: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    let child = Command::new(program)
        .args(args)
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = libc::pid_t::try_from(child.id()).context("a pid")?;
    // SAFETY: wait4 writes the status and the rusage through valid pointers; `pid` is
    // our own child, not yet waited for (std's `Child` is never waited on here).
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } < 0 {
        return Err(std::io::Error::last_os_error()).context("wait4");
    }
    let wall = started.elapsed();
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    let cpu = time(usage.ru_utime) + time(usage.ru_stime);
    std::fs::write(
        report,
        format!(
            "{} {} {}\n",
            wall.as_nanos(),
            cpu.as_nanos(),
            u64::try_from(usage.ru_maxrss).unwrap_or(0)
        ),
    )?;
    Ok(())
}

/// The cost of both runs, and how they compare.
fn costs(rust: &Run, python: &Run) -> String {
    let ratio = |python: f64, rust: f64| if rust > 0.0 { python / rust } else { 0.0 };
    let mib = |kib: u64| kib as f64 / 1024.0;
    format!(
        "          wall       user+sys CPU   peak RSS\n\
         Rust    {:>7.3} s   {:>9.3} s   {:>6.1} MiB\n\
         Python  {:>7.3} s   {:>9.3} s   {:>6.1} MiB\n\
         Python / Rust: {:.1}x the time, {:.1}x the CPU, {:.1}x the memory\n\
         (a peak RSS is at least {:.1} MiB: the launcher's, which measures with wait4)\n",
        rust.wall.as_secs_f64(),
        rust.cpu.as_secs_f64(),
        mib(rust.max_rss_kib),
        python.wall.as_secs_f64(),
        python.cpu.as_secs_f64(),
        mib(python.max_rss_kib),
        ratio(python.wall.as_secs_f64(), rust.wall.as_secs_f64()),
        ratio(python.cpu.as_secs_f64(), rust.cpu.as_secs_f64()),
        ratio(mib(python.max_rss_kib), mib(rust.max_rss_kib)),
        rss_floor_mib(),
    )
}

/// A demo's two runs and what the comparison found.
struct Comparison {
    rust: Run,
    python: Run,
    only_rust: Vec<String>,
    only_python: Vec<String>,
    races: Option<(String, String)>,
}

impl Comparison {
    fn agree(&self) -> bool {
        self.only_rust.is_empty() && self.only_python.is_empty()
    }
}

/// Runs `demo` in Rust and in Python with `options`, and compares what they printed.
fn compare(demo: &str, options: &[String], traces: Option<&Traces>) -> anyhow::Result<Comparison> {
    let trace = |path: fn(&Traces) -> &PathBuf| -> Vec<std::ffi::OsString> {
        traces.map_or_else(Vec::new, |t| vec!["--trace".into(), path(t).into()])
    };
    let rust = run_measured(
        Command::new(rust_binary(demo)?)
            .args(options)
            .args(trace(|t| &t.rust)),
    )?;
    // With PYTHONUNBUFFERED set, `print` writes the text and the newline in two
    // write(2) calls, so lines of processes printing at once get spliced together
    // ("...n°: 0calling myFunc..."). Buffered, `print(..., flush=True)` is one write
    // per line, as Rust's `println!` is: the comparison is then about content, not luck.
    let python = run_measured(
        Command::new("python3")
            .env_remove("PYTHONUNBUFFERED")
            .current_dir(python_dir())
            .arg(format!("{demo}.py"))
            .args(options)
            .args(trace(|t| &t.python)),
    )?;
    let (rust_kept, rust_race) = race(demo, options, &rust.output);
    let (python_kept, python_race) = race(demo, options, &python.output);
    let (only_rust, only_python) = differences(&rust_kept, &python_kept);
    Ok(Comparison {
        rust,
        python,
        only_rust,
        only_python,
        races: rust_race.zip(python_race),
    })
}

/// Prints one demo's comparison; whether the two agreed.
fn show(comparison: &Comparison, width: Option<usize>) -> bool {
    let left = marked(&comparison.rust.output, &comparison.only_rust);
    let right = marked(&comparison.python.output, &comparison.only_python);
    match width {
        Some(width) => print!("{}", side_by_side(&left, &right, width)),
        None => print!("{}", one_after_the_other(&left, &right)),
    }
    if let Some((rust_race, python_race)) = &comparison.races {
        println!("\nA race either side can win (not a difference):");
        println!("  Rust:   {rust_race}");
        println!("  Python: {python_race}");
    }
    println!();
    print!("{}", costs(&comparison.rust, &comparison.python));
    if comparison.agree() {
        println!("\nSame lines in both, numbers and order aside.");
    } else {
        println!("\nThey differ: the lines marked ! have no match on the other side.");
    }
    comparison.agree()
}

/// Every demo with its default options, then one table.
fn compare_all() -> anyhow::Result<bool> {
    let mut table = format!(
        "{:<22} {:>6} {:>10} {:>10} {:>9} {:>11} {:>9}\n",
        "demo", "agree", "Python s", "Rust s", "speed-up", "Python MiB", "Rust MiB"
    );
    let mut all_agree = true;
    for demo in DEMOS {
        eprintln!("comparing {demo} ...");
        let c = compare(demo, &[], None)?;
        all_agree &= c.agree();
        let speed_up = c.python.wall.as_secs_f64() / c.rust.wall.as_secs_f64().max(1e-9);
        table.push_str(&format!(
            "{:<22} {:>6} {:>10.3} {:>10.3} {:>8.1}x {:>11.1} {:>9.1}\n",
            demo,
            if c.agree() { "yes" } else { "NO" },
            c.python.wall.as_secs_f64(),
            c.rust.wall.as_secs_f64(),
            speed_up,
            c.python.max_rss_kib as f64 / 1024.0,
            c.rust.max_rss_kib as f64 / 1024.0,
        ));
    }
    print!("{table}");
    println!(
        "(a peak RSS is at least {:.1} MiB: the launcher's, which measures with wait4)",
        rss_floor_mib()
    );
    Ok(all_agree)
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

fn main() -> Result<(), demo_kit::cli::Report> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.first().map(String::as_str) == Some(LAUNCH) && raw.len() >= 3 {
        return Ok(launch(&raw[1], &raw[2], &raw[3..])?);
    }
    let args: Args = demo_kit::cli::parse();
    if args.demo.as_deref() == Some("bench") {
        bench::run(&bench::Options {
            quick: args.quick,
            json: args.json,
            only: args.only,
        })?;
        return Ok(());
    }
    if args.all {
        let agree = compare_all()?;
        std::process::exit(if agree { 0 } else { 1 });
    }
    let demo = args.demo.unwrap_or_default();
    if !DEMOS.contains(&demo.as_str()) {
        eprintln!(
            "error: unknown demo {demo:?}; one of: {}, bench (try --help)",
            DEMOS.join(", ")
        );
        std::process::exit(2);
    }
    let (options, traces) = timelines_asked(&args.options);
    let comparison = compare(&demo, &options, traces.as_ref())?;
    let agree = show(&comparison, column_width(args.width));
    if let Some(traces) = traces {
        print!("{}", traces.draw()?);
    }
    if !agree {
        std::process::exit(1);
    }
    Ok(())
}

/// The two trace files of `compare DEMO -- --timeline`, removed when dropped.
struct Traces {
    rust: PathBuf,
    python: PathBuf,
}

impl Traces {
    /// Both runs' timelines, one under the other, on one time scale.
    fn draw(&self) -> anyhow::Result<String> {
        let read = |path: &Path| -> anyhow::Result<Timeline> {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("no trace in {}", path.display()))?;
            let json = serde_json::from_str(&text)
                .with_context(|| format!("the trace in {} is not JSON", path.display()))?;
            Timeline::from_trace(&json).map_err(|error| anyhow!("{}: {error}", path.display()))
        };
        let (rust, python) = (read(&self.rust)?, read(&self.python)?);
        let scale = rust.length.max(python.length);
        let colour = demo_kit::timeline::colour_wanted();
        Ok(format!(
            "\nRust:\n{}\nPython:\n{}",
            rust.draw(scale, colour),
            python.draw(scale, colour)
        ))
    }
}

impl Drop for Traces {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.rust);
        let _ = std::fs::remove_file(&self.python);
    }
}

/// With `--timeline` among the demo's options, both versions write a trace instead
/// (`--trace FILE`), which `compare` draws after their outputs, on one scale: the
/// options to pass, and the traces to draw.
fn timelines_asked(options: &[String]) -> (Vec<String>, Option<Traces>) {
    if !options.iter().any(|o| o == "--timeline") {
        return (options.to_vec(), None);
    }
    if options
        .iter()
        .any(|o| o == "--trace" || o.starts_with("--trace="))
    {
        demo_kit::cli::usage_error(
            "with --timeline, compare writes the traces itself: give --trace alone to keep one",
        );
    }
    let file = |side: &str| {
        std::env::temp_dir().join(format!("compare-{}-{side}.json", std::process::id()))
    };
    let traces = Traces {
        rust: file("rust"),
        python: file("python"),
    };
    let options = options
        .iter()
        .filter(|o| *o != "--timeline")
        .cloned()
        .collect();
    (options, Some(traces))
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
            Some(
                "the child printed 2 lines before terminate() landed; is_alive() just \
                 after terminate(): ?"
            )
        );
        let landed = "Process terminated: <Process pid=1 stopped exitcode=-SIGTERM> False\n";
        let on_its_way = "Process terminated: <Process pid=2 started> True\n";
        assert!(agree("killing_processes", &[], landed, on_its_way));
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
    fn side_by_side_wraps_long_lines_and_marks_differences() {
        let left = [(' ', "one"), ('!', "abcdefgh")];
        let right = [(' ', "uno")];
        assert_eq!(
            side_by_side(&left, &right, 5),
            "  Rust  |   Python\n\
             --------+--------\n\
             \u{20} one   |   uno\n\
             ! abcde |\n\
             \u{20} fgh   |\n"
        );
        let text = one_after_the_other(&left, &right);
        assert_eq!(
            text,
            "Rust\n----\n  one\n! abcdefgh\n\nPython\n------\n  uno\n\n"
        );
    }

    #[test]
    fn only_the_unmatched_lines_are_marked() {
        let lines = marked("a 1\nb 2\na 3\n", &["a #".to_string()]);
        assert_eq!(lines, [('!', "a 1"), (' ', "b 2"), (' ', "a 3")]);
    }
}
