//! `--bench`: the pool's speed next to Python's `multiprocessing.Pool`, in one run.

use std::time::Duration;

const WORKERS: usize = 2;
const INPUTS: i64 = 1_000_000;
const HEAVY_TASKS: u64 = 64;

/// Prints the table.
pub fn run() -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        println!(
            "(a debug build: run `cargo run --release -p process_pool -- --bench` for real numbers)"
        );
    }
    let ours = demo_kit::bench::pool(WORKERS, INPUTS, HEAVY_TASKS)?;
    let python = python_pool();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!("Pool with {WORKERS} workers, {cores} cores:");
    println!("{:<44} {:>14} {:>14}", "", "common::Pool", "Python Pool");
    println!(
        "{:<44} {:>14.1} {:>14}",
        format!("map(square) over {INPUTS} inputs, M tasks/s"),
        ours.map_tasks_per_second / 1e6,
        python.map_or("n/a".into(), |p| format!(
            "{:.1}",
            p.map_tasks_per_second / 1e6
        )),
    );
    println!(
        "{:<44} {:>14.1} {:>14}",
        "map_plain(square) over a slice, M tasks/s",
        ours.map_plain_tasks_per_second / 1e6,
        "",
    );
    println!(
        "{:<44} {:>14.1} {:>14}",
        "  (the floor: the loop alone, M tasks/s)",
        demo_kit::bench::sequential_square(INPUTS) / 1e6,
        "",
    );
    println!(
        "{:<44} {:>13.2}x {:>14}",
        format!("{HEAVY_TASKS} CPU-heavy tasks, speed-up on sequential"),
        ours.heavy_sequential.as_secs_f64() / ours.heavy_pooled.as_secs_f64(),
        "",
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "  (sequential / pooled, ms)",
        format!(
            "{:.0} / {:.0}",
            millis(ours.heavy_sequential),
            millis(ours.heavy_pooled)
        ),
        "",
    );
    println!(
        "{:<44} {:>14.3} {:>14}",
        "start-up, ms",
        millis(ours.startup),
        python.map_or("n/a".into(), |p| format!("{:.3}", millis(p.startup))),
    );
    println!(
        "{:<44} {:>14.3} {:>14}",
        format!("  (the floor: forking {WORKERS} bare children, ms)"),
        millis(ours.startup_floor),
        "",
    );
    Ok(())
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

#[derive(Clone, Copy)]
struct PythonNumbers {
    map_tasks_per_second: f64,
    startup: Duration,
}

/// Python's Pool through `python/bench_pool.py`, when python3 is there.
fn python_pool() -> Option<PythonNumbers> {
    let args = [
        "--workers".to_string(),
        WORKERS.to_string(),
        "--inputs".to_string(),
        INPUTS.to_string(),
    ];
    let text = demo_kit::bench::run_python("bench_pool.py", &args)?;
    let mut words = text.split_whitespace();
    let map_tasks_per_second = words.next()?.parse().ok()?;
    let startup_seconds: f64 = words.next()?.parse().ok()?;
    Some(PythonNumbers {
        map_tasks_per_second,
        startup: Duration::from_secs_f64(startup_seconds),
    })
}
