//! `--bench`: µs per barrier generation for `common::sync::Barrier`, a process-shared
//! `pthread_barrier_t` and Python's `multiprocessing.Barrier`, measured in one run.

use std::time::Duration;

/// Prints the table, one row per number of parties.
pub fn run(generations: usize) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!("Barrier, µs per generation ({generations} generations, {cores} cores):");
    println!(
        "{:>8} {:>16} {:>18} {:>15} {:>10}",
        "parties", "common::Barrier", "pthread_barrier_t", "Python Barrier", "ratio"
    );
    for parties in [2, 4] {
        let ours = demo_kit::bench::barrier(parties, generations)?;
        let pthread = demo_kit::bench::pthread_barrier(parties, generations)?;
        let python = python_barrier(parties, (generations / 10).max(100));
        println!(
            "{parties:>8} {:>16.3} {:>18.3} {:>15} {:>9.2}x",
            micros(ours),
            micros(pthread),
            python.map_or_else(|| "n/a".to_string(), |us| format!("{us:.3}")),
            micros(ours) / micros(pthread),
        );
    }
    println!("ratio = common::Barrier / pthread_barrier_t (lower is faster)");
    Ok(())
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// Python's Barrier through `python/bench_barrier.py`, when python3 is there.
fn python_barrier(parties: usize, generations: usize) -> Option<f64> {
    let args = [
        "--parties".to_string(),
        parties.to_string(),
        "--generations".to_string(),
        generations.to_string(),
    ];
    demo_kit::bench::run_python("bench_barrier.py", &args)?
        .trim()
        .parse()
        .ok()
}
