//! `compare bench`: one table of speeds, each row measured in the same run for Python,
//! for Rust (`common`) and, where there is one, for the OS floor (the same operation
//! written directly on libc), with the median and the range of several repetitions.

use std::process::Command;

use demo_kit::bench as measure;

/// What `compare bench` was asked for.
pub struct Options {
    /// Fewer repetitions and smaller sizes (for CI).
    pub quick: bool,
    /// JSON instead of the table.
    pub json: bool,
    /// Only the rows whose key starts with this.
    pub only: Option<String>,
}

/// One row: what is measured, in which unit, and the samples of each side.
struct Row {
    key: String,
    label: String,
    unit: &'static str,
    higher_is_better: bool,
    python: Vec<f64>,
    rust: Vec<f64>,
    floor: Vec<f64>,
}

impl Row {
    fn new(key: &str, label: &str, unit: &'static str, higher_is_better: bool) -> Row {
        Row {
            key: key.to_string(),
            label: label.to_string(),
            unit,
            higher_is_better,
            python: Vec::new(),
            rust: Vec::new(),
            floor: Vec::new(),
        }
    }
}

/// Median, min and max of `samples` (`None` when there are none).
fn stats(samples: &[f64]) -> Option<(f64, f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    };
    Some((median, sorted[0], sorted[sorted.len() - 1]))
}

/// A Python baseline: `python/SCRIPT ARGS`, first number printed, times `scale`.
fn python(script: &str, args: &[&str], scale: f64) -> Option<f64> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let text = measure::run_python(script, &args)?;
    let number: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(number * scale)
}

/// A second number printed by a Python baseline.
fn python_second(script: &str, args: &[&str], scale: f64) -> Option<(f64, f64)> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let text = measure::run_python(script, &args)?;
    let mut numbers = text
        .split_whitespace()
        .filter_map(|n| n.parse::<f64>().ok());
    Some((numbers.next()?, numbers.next()? * scale))
}

fn micros(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn nanos(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

/// Measures every row asked for, `reps` times each, printing progress on stderr.
fn measure_rows(options: &Options) -> anyhow::Result<Vec<Row>> {
    let reps = if options.quick { 3 } else { 5 };
    let scale = |full: u32, quick: u32| if options.quick { quick } else { full };
    let wanted = |key: &str| {
        options
            .only
            .as_deref()
            .is_none_or(|only| key.starts_with(only))
    };
    // A progress line on a terminal: the whole table takes a minute.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress = |key: &str, rep: usize| {
        if terminal {
            eprint!("\r\x1b[Kmeasuring {key} ({}/{reps}) ...", rep + 1);
        }
    };
    let mut rows = Vec::new();

    if wanted("start-join") {
        let mut row = Row::new("start-join", "start + join one process", "µs", false);
        let (count, python_count) = (scale(2000, 200), scale(100, 20).to_string());
        for rep in 0..reps {
            progress(&row.key, rep);
            row.rust.push(micros(measure::start_join(count)?));
            row.floor.push(micros(measure::fork_waitpid(count)?));
            let py = ["--row", "start-join", "--count", &python_count];
            row.python.extend(python("bench_primitives.py", &py, 1.0));
        }
        rows.push(row);
    }
    if wanted("start-join-faults") {
        let mut row = Row::new(
            "start-join-faults",
            "start + join: page faults, parent and child",
            "faults",
            false,
        );
        let count = scale(500, 100);
        for rep in 0..reps {
            progress(&row.key, rep);
            row.rust
                .push(measure::page_faults(count, measure::start_join)?);
            row.floor
                .push(measure::page_faults(count, measure::fork_waitpid)?);
        }
        rows.push(row);
    }
    if wanted("start-join-256") {
        let mut row = Row::new(
            "start-join-256",
            "start + join among 256 live children",
            "µs",
            false,
        );
        let count = scale(500, 100);
        for rep in 0..reps {
            progress(&row.key, rep);
            row.rust
                .push(micros(measure::start_join_among(256, count)?));
            row.floor.push(micros(measure::fork_waitpid(count)?));
        }
        rows.push(row);
    }
    for (processes, robust) in [(1, false), (1, true), (2, false), (2, true)] {
        let key = format!("lock-{processes}{}", if robust { "-robust" } else { "" });
        if !wanted(&key) {
            continue;
        }
        let label = format!(
            "Lock acquire+release, {processes} process{} (floor: {} mutex)",
            if processes > 1 { "es" } else { "" },
            if robust { "robust" } else { "plain" }
        );
        let mut row = Row::new(&key, &label, "ns", false);
        let count = scale(200_000, 20_000);
        let python_count = scale(100_000, 10_000).to_string();
        for rep in 0..reps {
            progress(&row.key, rep);
            row.rust.push(nanos(measure::lock(processes, count)?));
            row.floor
                .push(nanos(measure::pthread_mutex(processes, count, robust)?));
            let py_row = format!("lock-{processes}");
            let py = ["--row", py_row.as_str(), "--count", &python_count];
            row.python.extend(python("bench_primitives.py", &py, 1.0));
        }
        rows.push(row);
    }
    for parties in [2usize, 4] {
        let key = format!("barrier-{parties}");
        if !wanted(&key) {
            continue;
        }
        let label = format!("Barrier, {parties} parties, per generation");
        let mut row = Row::new(&key, &label, "µs", false);
        let generations = scale(20_000, 2_000) as usize;
        let python_generations = scale(2_000, 200).to_string();
        let parties_text = parties.to_string();
        for rep in 0..reps {
            progress(&row.key, rep);
            row.rust
                .push(micros(measure::barrier_once(parties, generations)?));
            row.floor
                .push(micros(measure::pthread_barrier_once(parties, generations)?));
            let py = [
                "--parties",
                &parties_text,
                "--generations",
                &python_generations,
            ];
            row.python.extend(python("bench_barrier.py", &py, 1.0));
        }
        rows.push(row);
    }
    if wanted("barrier-2-loaded") {
        let mut row = Row::new(
            "barrier-2-loaded",
            "Barrier, 2 parties, 2 busy co-tenants",
            "µs",
            false,
        );
        let generations = scale(5_000, 1_000) as usize;
        let python_generations = scale(1_000, 200).to_string();
        for rep in 0..reps {
            progress(&row.key, rep);
            let (ours, floor, py) = measure::with_busy_cotenants(2, || {
                let ours = measure::barrier_once(2, generations)?;
                let floor = measure::pthread_barrier_once(2, generations)?;
                let py = ["--parties", "2", "--generations", &python_generations];
                Ok((ours, floor, python("bench_barrier.py", &py, 1.0)))
            })?;
            row.rust.push(micros(ours));
            row.floor.push(micros(floor));
            row.python.extend(py);
        }
        rows.push(row);
    }
    if wanted("barrier-2-loaded-worst") {
        let mut row = Row::new(
            "barrier-2-loaded-worst",
            "Barrier, 2 parties, 2 busy co-tenants: worst of 10 windows",
            "µs",
            false,
        );
        let generations = scale(3_000, 500) as usize;
        for rep in 0..reps {
            progress(&row.key, rep);
            let (ours, floor) = measure::with_busy_cotenants(2, || {
                measure::worst_in_turns(
                    10,
                    || measure::barrier_once(2, generations),
                    || measure::pthread_barrier_once(2, generations),
                )
            })?;
            row.rust.push(micros(ours));
            row.floor.push(micros(floor));
        }
        rows.push(row);
    }
    if wanted("pool") {
        let inputs = i64::from(scale(1_000_000, 100_000));
        let heavy = u64::from(scale(64, 8));
        let mut map = Row::new(
            "pool-map",
            "Pool(2).map(square), floor: the loop alone",
            "M tasks/s",
            true,
        );
        let mut plain = Row::new(
            "pool-map-plain",
            "Pool(2).map_plain(square) over a slice, floor: the loop",
            "M tasks/s",
            true,
        );
        let mut speedup = Row::new("pool-speedup", "Pool(2), CPU-heavy tasks", "x", true);
        let mut startup = Row::new(
            "pool-startup",
            "Pool(2) start-up, floor: forking 2 children",
            "ms",
            false,
        );
        let inputs_text = inputs.to_string();
        for rep in 0..reps {
            progress("pool", rep);
            let numbers = measure::pool(2, inputs, heavy)?;
            map.rust.push(numbers.map_tasks_per_second / 1e6);
            let floor = measure::sequential_square(inputs) / 1e6;
            map.floor.push(floor);
            plain.rust.push(numbers.map_plain_tasks_per_second / 1e6);
            plain.floor.push(floor);
            speedup
                .rust
                .push(numbers.heavy_sequential.as_secs_f64() / numbers.heavy_pooled.as_secs_f64());
            startup.rust.push(numbers.startup.as_secs_f64() * 1e3);
            startup
                .floor
                .push(numbers.startup_floor.as_secs_f64() * 1e3);
            let py = ["--workers", "2", "--inputs", inputs_text.as_str()];
            if let Some((rate, start)) = python_second("bench_pool.py", &py, 1e3) {
                map.python.push(rate / 1e6);
                plain.python.push(rate / 1e6);
                startup.python.push(start);
            }
        }
        rows.extend([map, plain, speedup, startup]);
    }
    for (key, size, label) in [
        (
            "queue-8",
            8usize,
            "Queue, 1 producer -> 1 consumer, 8-byte items",
        ),
        (
            "queue-4k",
            4096,
            "Queue, 1 producer -> 1 consumer, 4 KiB items",
        ),
    ] {
        if !wanted(key) {
            continue;
        }
        let label = format!("{label} (floor: a raw pipe, a write per item)");
        let mut row = Row::new(key, &label, "k items/s", true);
        let items = scale(200_000, 20_000) / if size > 8 { 4 } else { 1 };
        let python_items = (scale(100_000, 10_000) / if size > 8 { 4 } else { 1 }).to_string();
        for rep in 0..reps {
            progress(key, rep);
            row.rust.push(measure::queue_throughput(items, size)? / 1e3);
            row.floor.push(measure::pipe_throughput(items, size)? / 1e3);
            let py = ["--row", key, "--count", &python_items];
            row.python.extend(python("bench_primitives.py", &py, 1e-3));
        }
        rows.push(row);
    }
    if wanted("pipe-rtt") {
        let mut row = Row::new(
            "pipe-rtt",
            "Pipe round trip of a small value (floor: two raw pipes)",
            "µs",
            false,
        );
        let (count, python_count) = (scale(20_000, 2_000), scale(10_000, 1_000).to_string());
        for rep in 0..reps {
            progress(&row.key, rep);
            row.rust
                .push(micros(measure::connection_round_trip(count)?));
            row.floor.push(micros(measure::raw_pipe_round_trip(count)?));
            let py = ["--row", "pipe-rtt", "--count", &python_count];
            row.python.extend(python("bench_primitives.py", &py, 1.0));
        }
        rows.push(row);
    }
    for demo in crate::DEMOS {
        let key = format!("demo-{demo}");
        if !wanted(&key) {
            continue;
        }
        let mut wall = Row::new(&key, &format!("{demo}, end to end"), "ms", false);
        let mut rss = Row::new(
            &format!("{key}-rss"),
            &format!("{demo}, peak RSS"),
            "MiB",
            false,
        );
        for rep in 0..reps {
            progress(&key, rep);
            let rust = crate::run_measured(&mut Command::new(crate::rust_binary(demo)?))?;
            wall.rust.push(rust.wall.as_secs_f64() * 1e3);
            rss.rust.push(rust.max_rss_kib as f64 / 1024.0);
            let python = crate::run_measured(
                Command::new("python3")
                    .env_remove("PYTHONUNBUFFERED")
                    .current_dir(crate::python_dir())
                    .arg(format!("{demo}.py")),
            );
            if let Ok(python) = python {
                wall.python.push(python.wall.as_secs_f64() * 1e3);
                rss.python.push(python.max_rss_kib as f64 / 1024.0);
            }
        }
        rows.extend([wall, rss]);
    }
    if terminal {
        eprint!("\r\x1b[K");
    }
    if rows.is_empty() {
        demo_kit::cli::usage_error(&format!(
            "no row starts with {:?}; rows: start-join, start-join-faults, start-join-256, lock-1, lock-1-robust, lock-2, \
             lock-2-robust, barrier-2, barrier-4, barrier-2-loaded, barrier-2-loaded-worst, pool-map, pool-map-plain, pool-speedup, pool-startup, \
             queue-8, queue-4k, pipe-rtt, demo-NAME, demo-NAME-rss",
            options.only.as_deref().unwrap_or_default()
        ));
    }
    Ok(rows)
}

/// The machine the numbers come from: CPU model, cores, load, Python's version.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let python = Command::new("python3")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "no python3".to_string());
    format!("{cpu}, {cores} cores, load {load}, {python}")
}

fn cell(samples: &[f64]) -> String {
    match stats(samples) {
        Some((median, min, max)) => format!("{median:.3} ({min:.3}-{max:.3})"),
        None => "n/a".to_string(),
    }
}

/// How much better `ours` is than `theirs`: `N.Nx` (above 1: ours is better).
fn ratio(row: &Row, ours: &[f64], theirs: &[f64]) -> String {
    match (stats(ours), stats(theirs)) {
        (Some((ours, ..)), Some((theirs, ..))) if ours > 0.0 && theirs > 0.0 => {
            let better = if row.higher_is_better {
                ours / theirs
            } else {
                theirs / ours
            };
            format!("{better:.2}x")
        }
        _ => "-".to_string(),
    }
}

fn table(rows: &[Row], reps: usize) -> String {
    let mut text = format!(
        "{}\nmedian (min-max) of {reps} repetitions, each measured in this run\n\n",
        machine()
    );
    text.push_str(&format!(
        "{:<56} {:<9} {:>26} {:>26} {:>26} {:>10} {:>10}\n",
        "row", "unit", "Python", "Rust (common)", "floor (libc)", "vs Python", "vs floor"
    ));
    for row in rows {
        text.push_str(&format!(
            "{:<56} {:<9} {:>26} {:>26} {:>26} {:>10} {:>10}\n",
            format!("{} [{}]", row.label, row.key),
            row.unit,
            cell(&row.python),
            cell(&row.rust),
            cell(&row.floor),
            ratio(row, &row.rust, &row.python),
            ratio(row, &row.rust, &row.floor),
        ));
    }
    text.push_str(
        "\nvs Python: how many times better Rust is; vs floor: how many times better Rust \
         is than the OS floor (below 1: its overhead)\n",
    );
    if rows.iter().any(|row| row.unit == "MiB") {
        text.push_str(&format!(
            "a peak RSS is at least {:.1} MiB: the launcher's, which measures with wait4\n",
            crate::rss_floor_mib()
        ));
    }
    text
}

fn json_stats(samples: &[f64]) -> String {
    match stats(samples) {
        Some((median, min, max)) => {
            format!("{{\"median\": {median}, \"min\": {min}, \"max\": {max}}}")
        }
        None => "null".to_string(),
    }
}

fn json(rows: &[Row]) -> String {
    let escape = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let items: Vec<String> = rows
        .iter()
        .map(|row| {
            format!(
                "  {{\"row\": \"{}\", \"label\": \"{}\", \"unit\": \"{}\", \
                 \"higher_is_better\": {}, \"python\": {}, \"rust\": {}, \"floor\": {}}}",
                escape(&row.key),
                escape(&row.label),
                row.unit,
                row.higher_is_better,
                json_stats(&row.python),
                json_stats(&row.rust),
                json_stats(&row.floor)
            )
        })
        .collect();
    format!(
        "{{\"machine\": \"{}\", \"rows\": [\n{}\n]}}\n",
        escape(&machine()),
        items.join(",\n")
    )
}

/// Measures and prints.
///
/// # Errors
/// When a measurement fails, or no row matches `--only`.
pub fn run(options: &Options) -> anyhow::Result<()> {
    let rows = measure_rows(options)?;
    let reps = rows.first().map_or(0, |row| row.rust.len());
    if options.json {
        print!("{}", json(&rows));
    } else {
        print!("{}", table(&rows, reps));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_give_the_median_and_the_range() {
        assert_eq!(stats(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(stats(&[4.0, 1.0, 2.0, 3.0]), Some((2.5, 1.0, 4.0)));
        assert_eq!(stats(&[]), None);
    }

    #[test]
    fn ratios_say_how_many_times_better_rust_is() {
        let mut row = Row::new("x", "x", "µs", false);
        assert_eq!(ratio(&row, &[2.0], &[10.0]), "5.00x", "lower is better");
        row.higher_is_better = true;
        assert_eq!(ratio(&row, &[10.0], &[2.0]), "5.00x", "higher is better");
        assert_eq!(ratio(&row, &[], &[2.0]), "-");
    }
}
