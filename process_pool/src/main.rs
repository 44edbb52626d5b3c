//! Mirrors `python/process_pool.py`: a `Pool(4)` maps `function_square` over
//! `0..10`, then is closed and joined, and the parent prints the results in order.
//!
//! What to notice, and what to try: `--help` prints it (the doc of `Args` below).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use common::Pool;
use common::process::{Signal, kill_current};
use common::workload::square;

mod bench;

/// A Pool of worker processes mapping a function over inputs.
///
/// What to notice: the results come back in input order, whichever worker computed
/// them. Try `--show-workers` to see which worker (pid) squared which input, with
/// `--chunksize 1` and without. `--crash-at 3` makes the task for input 3 kill its own
/// worker: Python's Pool then waits forever (cpython gh-66587), while this one reports
/// the dead worker at once. `--inputs 100000 --time` shows when a pool is slower than
/// a loop: squaring a number is far cheaper than sending it to a worker and its
/// square back. `--bench` measures the pool next to Python's.
///
/// `--timeline` draws which worker ran which chunk (a letter each), and `--trace FILE`
/// writes the same for Perfetto.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// How many worker processes the pool forks.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    workers: u64,
    /// Map over the inputs 0..N.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    inputs: u64,
    /// Inputs per task sent to a worker (default: inputs / (4 × workers), rounded up,
    /// as Python does).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    chunksize: Option<u64>,
    /// Print which worker (pid) squared which input.
    #[arg(long)]
    show_workers: bool,
    /// The task for input I (below --inputs) kills its own worker with SIGKILL.
    #[arg(long, value_name = "I", value_parser = clap::value_parser!(u64).range(0..10_000_000))]
    crash_at: Option<u64>,
    /// Print how long the map took next to the same loop in this process, instead of
    /// the results.
    #[arg(long)]
    time: bool,
    /// Measure the pool (tasks per second, speed-up, start-up) instead.
    #[arg(long)]
    bench: bool,
    #[command(flatten)]
    show: demo_kit::timeline::Options,
}

/// The input whose task kills its worker (-1: none). Set before `Pool::new`, so that
/// the workers, which are copies of this process, see it.
static CRASH_AT: AtomicI64 = AtomicI64::new(-1);

fn function_square(data: i64) -> i64 {
    if data == CRASH_AT.load(Ordering::Relaxed) {
        let _ = kill_current(Signal::SIGKILL);
    }
    square(data)
}

fn square_and_worker(data: i64) -> (i64, u32) {
    (function_square(data), std::process::id())
}

fn map<R>(
    pool: &Pool,
    f: fn(i64) -> R,
    inputs: &[i64],
    chunksize: Option<u64>,
) -> anyhow::Result<Vec<R>>
where
    R: common::pool::Data,
{
    Ok(match chunksize {
        Some(chunksize) => pool.map_chunked(f, inputs.iter().copied(), chunksize as usize)?,
        None => pool.map(f, inputs.iter().copied())?,
    })
}

fn main() -> Result<(), demo_kit::cli::Report> {
    let args: Args = demo_kit::cli::parse();
    if args.bench {
        return Ok(bench::run()?);
    }
    demo_kit::timeline::begin(&args.show);
    if let Some(crash_at) = args.crash_at {
        if crash_at >= args.inputs {
            demo_kit::cli::usage_error(&format!(
                "--crash-at {crash_at} names no input: the inputs are 0 to {}",
                args.inputs.saturating_sub(1)
            ));
        }
        CRASH_AT.store(i64::try_from(crash_at)?, Ordering::Relaxed);
    }
    let inputs: Vec<i64> = (0..args.inputs as i64).collect();

    let pool = Pool::new(args.workers as usize)?;
    let started = Instant::now();
    let pool_outputs = if args.show_workers {
        let outputs = map(&pool, square_and_worker, &inputs, args.chunksize)?;
        for (input, (output, pid)) in inputs.iter().zip(&outputs) {
            println!("input {input:>3} -> {output:>5}   by worker {pid}");
        }
        outputs.into_iter().map(|(output, _)| output).collect()
    } else {
        match map(&pool, function_square, &inputs, args.chunksize) {
            Ok(outputs) => outputs,
            Err(error) if args.crash_at.is_some() => return used_again(&pool, error, &inputs),
            Err(error) => return Err(error.into()),
        }
    };
    let pool_time = started.elapsed();
    pool.close();
    pool.join()?;

    if args.time {
        let started = Instant::now();
        let loop_outputs: Vec<i64> = inputs.iter().map(|&x| function_square(x)).collect();
        let loop_time = started.elapsed();
        if loop_outputs != pool_outputs {
            return Err(anyhow::anyhow!("the loop computed other results").into());
        }
        let verdict = if loop_time < pool_time {
            format!("the loop is {:.1}x faster", ratio(pool_time, loop_time))
        } else {
            format!("the pool is {:.1}x faster", ratio(loop_time, pool_time))
        };
        println!(
            "Pool map: {:.3} ms; the same loop in this process: {:.3} ms; {verdict}",
            pool_time.as_secs_f64() * 1e3,
            loop_time.as_secs_f64() * 1e3
        );
    } else {
        println!("Pool    : {pool_outputs:?}");
    }
    Ok(())
}

/// How many times `slower` is `faster`.
fn ratio(slower: Duration, faster: Duration) -> f64 {
    slower.as_secs_f64() / faster.as_secs_f64().max(1e-9)
}

/// After a failed `map` (`--crash-at`): says why, then shows that the pool, its dead
/// worker replaced, takes work again: the inputs but the one that crashes.
fn used_again(
    pool: &Pool,
    error: anyhow::Error,
    inputs: &[i64],
) -> Result<(), demo_kit::cli::Report> {
    eprintln!("Error: {error:#}");
    let crash_at = CRASH_AT.load(Ordering::Relaxed);
    let others: Vec<i64> = inputs.iter().copied().filter(|x| *x != crash_at).collect();
    let outputs = pool.map(function_square, others)?;
    println!("Pool used again, without input {crash_at}: {outputs:?}");
    std::process::exit(1);
}
