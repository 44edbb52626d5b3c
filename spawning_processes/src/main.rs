//! Mirrors `python/spawning_processes.py`: a loop that spawns one process per `i`, each
//! running `my_func(i)`, which prints its number and builds a list of `i * unit` random
//! numbers.
//!
//! What to notice, and what to try: `--help` prints it (the doc of `Args` below).

use clap::Parser;
use common::Process;
use common::workload::do_something;

/// Spawns processes in a loop, each doing a workload that grows with its number.
///
/// What to notice: by default every process is started before any is joined, so they
/// run at the same time and their lines interleave differently on each run.
/// `--sequential` starts and joins them one at a time, as the original book did: the
/// order is then fixed, and nothing runs in parallel. Try both with `--unit 2000000`
/// and compare the total time printed at the end: on two cores the sequential run takes
/// about twice as long.
///
/// `--timeline` draws it: bars over each other, or a staircase with `--sequential`.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// How many processes to spawn (numbered from 0).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(0..=256))]
    processes: u64,
    /// Random numbers per unit of work: process i makes a list of i * unit numbers.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    unit: u64,
    /// Start and join each process before starting the next (no parallelism).
    #[arg(long)]
    sequential: bool,
    #[command(flatten)]
    show: demo_kit::timeline::Options,
}

fn my_func(i: usize, unit: usize) {
    println!("calling myFunc from process n°: {i}");
    let output = do_something(i * unit);
    println!(
        "output from myFunc n°: {i} is a list of {} values",
        output.len()
    );
}

fn main() -> Result<(), demo_kit::cli::Report> {
    let args: Args = demo_kit::cli::parse();
    demo_kit::timeline::begin(&args.show);
    let unit = args.unit as usize;
    let start_time = std::time::Instant::now();

    if args.sequential {
        for i in 0..args.processes as usize {
            let mut process = Process::new(move || my_func(i, unit));
            process.start()?;
            demo_kit::cli::join(&process)?;
        }
    } else {
        let mut processes = Vec::new();
        for i in 0..args.processes as usize {
            let mut process = Process::new(move || my_func(i, unit));
            process.start()?;
            processes.push(process);
        }
        for process in &processes {
            demo_kit::cli::join(process)?;
        }
    }
    println!("Total time: {:.3} s", start_time.elapsed().as_secs_f64());
    Ok(())
}
