//! Runs a demo's Rust and Python versions with the same options and shows their output
//! side by side, then says whether they printed the same lines, numbers aside (pids,
//! times and random values differ from run to run, and concurrent lines may come in
//! another order). `compare bench` prints the speed tables of the demos' `--bench`
//! modes.
//!
//! Try: `cargo build --release --workspace && cargo run --release -p compare --
//! killing_processes --delay-ms 1500`.

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

/// A demo's Rust binary, built next to this one.
fn rust_binary(demo: &str) -> anyhow::Result<PathBuf> {
    let here = std::env::current_exe().context("cannot find this program's folder")?;
    let binary = here.with_file_name(demo);
    if binary.exists() {
        Ok(binary)
    } else {
        Err(anyhow!(
            "{demo} is not built next to compare; run `cargo build --workspace` (with the \
             same --release or not) first"
        ))
    }
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
    let (only_rust, only_python) = differences(&rust, &python);
    if only_rust.is_empty() && only_python.is_empty() {
        println!("\nSame lines in both, numbers and order aside.");
    } else {
        println!("\nLines only Rust printed (numbers as #): {only_rust:?}");
        println!("Lines only Python printed (numbers as #): {only_python:?}");
    }
    Ok(())
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

    #[test]
    fn side_by_side_pads_the_left_column() {
        let table = side_by_side("one\ntwo", "uno", 5);
        assert_eq!(
            table,
            "Rust  | Python\n------+------\none   | uno\ntwo   |\n"
        );
    }
}
