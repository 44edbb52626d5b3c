//! Benchmark helpers: each measures one of `common`'s primitives, or the baseline it is
//! compared with, in forked processes. The demos' `--bench` modes print their numbers
//! side by side, measured in the same run. A benchmark reports numbers; tests assert
//! behaviour.

use std::mem::size_of;
use std::time::{Duration, Instant};

use common::pool::Pool;
use common::process::Process;
use common::shm::SharedArray;
use common::sync::Barrier;

/// Runs `round` `generations` times in each of `parties` forked processes, after one
/// warm-up round that lines them up, and returns the slowest process's time per round.
fn per_round<F>(parties: usize, generations: usize, round: F) -> anyhow::Result<Duration>
where
    F: Fn() -> anyhow::Result<()> + Clone + 'static,
{
    let nanos = SharedArray::<u64>::new(parties)?;
    let mut workers = Vec::new();
    for party in 0..parties {
        let (round, nanos) = (round.clone(), nanos.clone());
        let mut worker = Process::new(move || -> anyhow::Result<()> {
            round()?;
            let started = Instant::now();
            for _ in 0..generations {
                round()?;
            }
            nanos.set(party, started.elapsed().as_nanos() as u64)?;
            Ok(())
        })
        .daemon(true);
        worker.start()?;
        workers.push(worker);
    }
    for worker in &workers {
        let code = worker.join()?;
        anyhow::ensure!(
            code == 0,
            "a benchmark process failed with exit code {code}"
        );
    }
    let slowest = nanos.to_vec().into_iter().max().unwrap_or(0);
    Ok(Duration::from_nanos(slowest / generations.max(1) as u64))
}

/// Time per generation of a [`Barrier`] of `parties` processes (best of three runs).
///
/// # Errors
/// When the barrier or a process cannot be created, or a process fails.
pub fn barrier(parties: usize, generations: usize) -> anyhow::Result<Duration> {
    best_of_three(|| {
        let barrier = Barrier::new(parties)?;
        per_round(parties, generations, move || {
            barrier.wait()?;
            Ok(())
        })
    })
}

/// The shortest of three measurements: the others met more interference.
fn best_of_three(
    mut measure: impl FnMut() -> anyhow::Result<Duration>,
) -> anyhow::Result<Duration> {
    let mut best = measure()?;
    for _ in 0..2 {
        best = best.min(measure()?);
    }
    Ok(best)
}

/// Time per generation of a process-shared `pthread_barrier_t` of `parties` processes:
/// the baseline for [`barrier`] (best of three runs).
///
/// # Errors
/// When the barrier or a process cannot be created, or a process fails.
pub fn pthread_barrier(parties: usize, generations: usize) -> anyhow::Result<Duration> {
    best_of_three(|| pthread_barrier_once(parties, generations))
}

fn pthread_barrier_once(parties: usize, generations: usize) -> anyhow::Result<Duration> {
    let words = size_of::<libc::pthread_barrier_t>().div_ceil(size_of::<u64>());
    let segment = SharedArray::<u64>::new(words)?;
    let raw = segment.as_ptr().cast::<libc::pthread_barrier_t>();
    // SAFETY: `raw` points to enough fresh, page-aligned, shared memory for a
    // `pthread_barrier_t`, which `attr` (initialised first, destroyed last) makes
    // process-shared; no other process can see it until the forks below.
    unsafe {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_barrierattr_t>::uninit();
        libc::pthread_barrierattr_init(attr.as_mut_ptr());
        libc::pthread_barrierattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED);
        let code = libc::pthread_barrier_init(raw, attr.as_ptr(), parties as libc::c_uint);
        libc::pthread_barrierattr_destroy(attr.as_mut_ptr());
        anyhow::ensure!(code == 0, "pthread_barrier_init failed with {code}");
    }
    let address = raw as usize;
    per_round(parties, generations, move || {
        let _keep_mapped = &segment;
        // SAFETY: the barrier was initialised above in memory that `segment` keeps
        // mapped in this process (and in every child, which inherited the mapping).
        let code = unsafe { libc::pthread_barrier_wait(address as *mut libc::pthread_barrier_t) };
        anyhow::ensure!(
            code == 0 || code == libc::PTHREAD_BARRIER_SERIAL_THREAD,
            "pthread_barrier_wait failed with {code}"
        );
        Ok(())
    })
}

/// A CPU-bound task of about ten milliseconds: `rounds` steps of a xorshift generator.
pub fn cpu_heavy(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..4_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

/// What [`pool`] measured.
#[derive(Debug, Clone, Copy)]
pub struct PoolNumbers {
    /// `map(square)` over the inputs: tasks per second.
    pub map_tasks_per_second: f64,
    /// The CPU-heavy tasks, one after the other in this process.
    pub heavy_sequential: Duration,
    /// The same tasks through the pool.
    pub heavy_pooled: Duration,
    /// `Pool::new(workers)`: forking the workers.
    pub startup: Duration,
}

/// Measures a [`Pool`] of `workers`: `map(square)` over `inputs` inputs (best of
/// seven), `heavy` calls of [`cpu_heavy`] pooled and sequential, and the start-up time
/// (best of five).
///
/// # Errors
/// When the pool fails.
pub fn pool(workers: usize, inputs: i64, heavy: u64) -> anyhow::Result<PoolNumbers> {
    let mut startup = Duration::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let pool = Pool::new(workers)?;
        startup = startup.min(started.elapsed());
        drop(pool);
    }
    let pool = Pool::new(workers)?;
    pool.map(common::workload::square, 0..1000)?;
    let mut best_map = Duration::MAX;
    for _ in 0..7 {
        let started = Instant::now();
        let squares = pool.map(common::workload::square, 0..inputs)?;
        best_map = best_map.min(started.elapsed());
        anyhow::ensure!(squares.len() as i64 == inputs, "map lost results");
    }
    let started = Instant::now();
    let sequential: Vec<u64> = (0..heavy).map(cpu_heavy).collect();
    let heavy_sequential = started.elapsed();
    let started = Instant::now();
    let pooled = pool.map(cpu_heavy, 0..heavy)?;
    let heavy_pooled = started.elapsed();
    anyhow::ensure!(pooled == sequential, "the pool computed other results");
    Ok(PoolNumbers {
        map_tasks_per_second: inputs as f64 / best_map.as_secs_f64(),
        heavy_sequential,
        heavy_pooled,
        startup,
    })
}

/// Runs `python3 python/SCRIPT ARGS` (the workspace's Python counterparts, found from
/// this crate's source folder) and returns what it printed, or `None` when python3 or
/// the script is missing or fails: the baselines from Python are optional.
pub fn run_python(script: &str, args: &[String]) -> Option<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../python")
        .join(script);
    let output = std::process::Command::new("python3")
        .arg(path)
        .args(args)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()
}
