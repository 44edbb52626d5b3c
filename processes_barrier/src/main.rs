//! Mirrors `python/processes_barrier.py`: two processes wait at a `Barrier(2)` and then,
//! holding a `Lock` so that their lines never mix, print the time they passed it; two
//! others print the time at once, without the barrier.
//!
//! What to notice, and what to try: `--help` prints it (the doc of `Args` below).

use std::thread::sleep;
use std::time::Duration;

use anyhow::anyhow;
use clap::Parser;
use common::shm::{SharedArray, SharedValue};
use common::sync::{Barrier, BarrierError, Lock};
use common::{Process, current_process};
use jiff::Timestamp;
use jiff::tz::TimeZone;

mod bench;

/// Processes synchronised by a Barrier, printing under a Lock.
///
/// What to notice: the barrier processes print (almost) the same time, to the
/// microsecond, whatever order they started in. Try `--stagger-ms 500`: the first
/// arrives half a second before the second and is held until the second arrives, and
/// the summary shows that their times are still close. `--with-barrier 4` makes the
/// barrier wait for four. `--parties 3` makes a barrier for three with only two
/// processes to come: they wait forever (as in Python), unless `--timeout-ms 500`
/// lets them give up. `--count-to 200000` makes each barrier process add 1 to a shared
/// counter that many times under the Lock, and `--no-lock` without it: then updates
/// are lost. `--bench` measures the barrier instead, next to a `pthread_barrier_t`
/// and Python's `Barrier`.
///
/// `--timeline` draws p1 waiting at the barrier (`.`) until p2 arrives, and who held
/// the Lock (`#`).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// How many processes wait at the barrier (the barrier's parties).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    with_barrier: u64,
    /// How many processes print at once, without the barrier.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=64))]
    without: u64,
    /// How many parties the barrier waits for (default: the --with-barrier processes).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    parties: Option<u64>,
    /// A barrier process gives up waiting after this many milliseconds (the barrier
    /// breaks); without it, it waits forever.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    timeout_ms: Option<u64>,
    /// Each barrier process adds 1 to a shared counter this many times once it passed.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    count_to: u64,
    /// Update the counter without the Lock.
    #[arg(long)]
    no_lock: bool,
    /// Barrier process k arrives k times this many milliseconds after the first.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    stagger_ms: u64,
    /// Measure the barrier (µs per generation) instead of running the demo.
    #[arg(long)]
    bench: bool,
    /// Generations per measurement with --bench.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    generations: u64,
    #[command(flatten)]
    show: demo_kit::timeline::Options,
}

/// A time as Python's `str(datetime.fromtimestamp(t))` shows it, in local time.
fn local(time: Timestamp) -> String {
    time.to_zoned_datetime(TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

/// What the barrier processes share besides the barrier and the lock.
#[derive(Clone)]
struct Shared {
    passed_at: SharedArray<i64>,
    counter: SharedValue<u64>,
    count_to: u64,
    locked: bool,
    /// Whether the barrier has a timeout, after which a party gives up.
    gives_up: bool,
}

fn test_with_barrier(
    synchronizer: &Barrier,
    serializer: &Lock,
    arrival_delay: Option<Duration>,
    shared: &Shared,
    slot: usize,
) -> anyhow::Result<()> {
    let name = current_process().name().to_owned();
    if let Some(delay) = arrival_delay {
        sleep(delay);
        println!(
            "process {name} arrives at the barrier at {}",
            local(Timestamp::now())
        );
    }
    match synchronizer.wait() {
        Ok(_) => {}
        Err(BarrierError::Timeout | BarrierError::Broken { .. }) if shared.gives_up => {
            println!(
                "process {name} gave up: the barrier broke before its {} parties came",
                synchronizer.parties()
            );
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    }
    let now = Timestamp::now();
    shared.passed_at.set(slot, now.as_microsecond())?;
    {
        let _guard = serializer.acquire()?;
        println!("process {name} ----> {}", local(now));
    }
    for _ in 0..shared.count_to {
        let _guard = shared.locked.then(|| serializer.acquire()).transpose()?;
        shared.counter.set(shared.counter.get() + 1);
    }
    Ok(())
}

fn test_without_barrier() {
    let name = current_process().name().to_owned();
    let now = Timestamp::now();
    println!("process {name} ----> {}", local(now));
}

fn main() -> Result<(), demo_kit::cli::Report> {
    let args: Args = demo_kit::cli::parse();
    if args.bench {
        return Ok(bench::run(args.generations as usize)?);
    }
    demo_kit::timeline::begin(&args.show);
    let with_barrier = args.with_barrier as usize;
    let parties = args.parties.map_or(with_barrier, |p| p as usize);

    let mut synchronizer = Barrier::new(parties)?;
    if let Some(ms) = args.timeout_ms {
        synchronizer = synchronizer.timeout(Duration::from_millis(ms));
    }
    let serializer = Lock::new()?;
    let shared = Shared {
        passed_at: SharedArray::<i64>::new(with_barrier)?,
        counter: SharedValue::new(0)?,
        count_to: args.count_to,
        locked: !args.no_lock,
        gives_up: args.timeout_ms.is_some(),
    };

    let mut processes = Vec::new();
    for k in 0..with_barrier {
        let (synchronizer, serializer, shared) =
            (synchronizer.clone(), serializer.clone(), shared.clone());
        let arrival_delay =
            (args.stagger_ms > 0).then(|| Duration::from_millis(args.stagger_ms * k as u64));
        let target =
            move || test_with_barrier(&synchronizer, &serializer, arrival_delay, &shared, k);
        processes.push(Process::new(target).with_name(format!("p{} - test_with_barrier", k + 1)));
    }
    for k in 0..args.without as usize {
        let name = format!("p{} - test_without_barrier", with_barrier + k + 1);
        processes.push(Process::new(test_without_barrier).with_name(name));
    }
    for k in 0..processes.len() {
        if let Err(error) = processes[k].start() {
            // The parties already started wait for one that will never come: abort the
            // barrier so that they end (with "the barrier is broken"), and join them.
            synchronizer.abort();
            for started in &processes[..k] {
                started.join()?;
            }
            let name = processes[k].name();
            return Err(anyhow!(error)
                .context(format!("cannot start {name}"))
                .into());
        }
    }
    for process in &processes {
        demo_kit::cli::join(process)?;
    }

    let times = shared.passed_at.to_vec();
    if times.contains(&0) {
        println!("No barrier process passed: the barrier broke");
    } else {
        let spread = times.iter().max().unwrap_or(&0) - times.iter().min().unwrap_or(&0);
        println!(
            "The {with_barrier} barrier processes passed within {:.3} ms of each other",
            spread as f64 / 1000.0
        );
    }
    if args.count_to > 0 && !times.contains(&0) {
        let expected = args.count_to * with_barrier as u64;
        let counted = shared.counter.get();
        println!(
            "Counter: {counted} of {expected} increments ({} lost)",
            expected - counted.min(expected)
        );
    }
    Ok(())
}
