//! A single-threaded program that drives `common::pool` for the crate's multi-process
//! tests (`tests/pool.rs`). Usage: `pool_fixture SCENARIO`.

use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use common::pool::{Pool, PoolError};
use common::process::{Signal, kill_current};
use common::workload::square;

fn main() -> Result<()> {
    match std::env::args().nth(1).unwrap_or_default().as_str() {
        "map-equals" => map_equals(),
        "imap" => imap(),
        "task-failed" => task_failed(),
        "worker-died" => worker_died(),
        "apply" => apply(),
        "errors" => errors(),
        "joined" => joined(),
        "join-with-other-child" => join_with_other_child(),
        "death-after-close" => death_after_close(),
        "dropped" => dropped(),
        "parent-killed" => parent_killed(),
        other => bail!("unknown scenario {other:?}"),
    }
}

fn panics_at_13(x: i64) -> i64 {
    if x == 13 {
        panic!("thirteen is unlucky");
    }
    x
}

fn dies_at_5(x: i64) -> i64 {
    if x == 5 {
        let _ = kill_current(Signal::SIGKILL);
    }
    x
}

fn slow(x: u64) -> u64 {
    sleep(Duration::from_secs(x));
    x
}

fn pair_sum(a: i64, b: i64) -> i64 {
    a + b
}

fn map_equals() -> Result<()> {
    let pool = Pool::new(2)?;
    for inputs in [0i64, 1, 7, 100_000] {
        let expected: Vec<i64> = (0..inputs).map(square).collect();
        for chunksize in [Some(1), Some(3), None] {
            let got = match chunksize {
                Some(chunksize) => pool.map_chunked(square, 0..inputs, chunksize)?,
                None => pool.map(square, 0..inputs)?,
            };
            let label = chunksize.map_or("default".to_string(), |c| c.to_string());
            println!(
                "inputs={inputs} chunksize={label} equal={}",
                got == expected
            );
        }
    }
    Ok(())
}

fn imap() -> Result<()> {
    let pool = Pool::new(3)?;
    let expected: Vec<i64> = (0..1000).map(square).collect();
    let ordered: Vec<i64> = pool.imap(square, 0..1000)?.collect::<Result<_, _>>()?;
    println!("imap in order: {}", ordered == expected);
    let mut unordered: Vec<i64> = pool
        .imap_unordered(square, 0..1000)?
        .collect::<Result<_, _>>()?;
    let count = unordered.len();
    unordered.sort_unstable();
    unordered.dedup();
    println!(
        "imap_unordered: {count} results, each once: {}",
        unordered == expected
    );
    // Lazy: an endless input is fine as long as only a few results are taken.
    let first: Vec<i64> = pool
        .imap(square, 0i64..)?
        .take(5)
        .collect::<Result<_, _>>()?;
    println!("imap over an endless input: {first:?}");
    Ok(())
}

fn task_failed() -> Result<()> {
    let pool = Pool::new(2)?;
    let pids = pool.worker_pids();
    match pool.map_chunked(panics_at_13, 0..40, 4) {
        Err(PoolError::TaskFailed { index, message }) => {
            println!(
                "task failed: index {index}: {}",
                message.replace('\n', " / ")
            );
        }
        other => println!("unexpected: {other:?}"),
    }
    println!("after: {:?}", pool.map(square, 0..5)?);
    println!("same workers: {}", pids == pool.worker_pids());
    Ok(())
}

fn worker_died() -> Result<()> {
    let pool = Pool::new(2)?;
    let before = pool.worker_pids();
    let started = Instant::now();
    let outcome = pool.map_chunked(dies_at_5, 0..20, 2);
    let waited = started.elapsed().as_millis();
    match &outcome {
        Err(
            error @ PoolError::WorkerDied {
                pid,
                index,
                exitcode,
            },
        ) => {
            println!(
                "worker died: index {index} exitcode {exitcode} signal {:?} known pid {} after {waited} ms",
                error.signal(),
                before.contains(pid)
            );
            println!("{error}");
        }
        other => println!("unexpected: {other:?}"),
    }
    println!("after: {:?}", pool.map(square, 0..5)?);
    let after = pool.worker_pids();
    println!(
        "replaced: {} of {}",
        after.iter().filter(|pid| !before.contains(pid)).count(),
        after.len()
    );
    Ok(())
}

fn apply() -> Result<()> {
    let pool = Pool::new(2)?;
    println!("apply: {}", pool.apply(square, 7)?);
    let pending = pool.apply_async(square, 8)?;
    println!("apply_async: {}", pending.get()?);
    let slow_one = pool.apply_async(slow, 3)?;
    let started = Instant::now();
    match slow_one.get_timeout(Duration::from_millis(200)) {
        Err(PoolError::Timeout) => println!(
            "get_timeout: timeout after {} ms",
            started.elapsed().as_millis()
        ),
        other => println!("get_timeout: {other:?}"),
    }
    println!("ready: {}", slow_one.ready());
    println!(
        "starmap: {:?}",
        pool.starmap(pair_sum, [(1, 2), (3, 4), (5, 6)])?
    );
    Ok(())
}

fn errors() -> Result<()> {
    println!(
        "{}",
        Pool::new(0)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    );
    let pool = Pool::new(1)?;
    println!("{}", pool.map_chunked(square, 0..3, 0).unwrap_err());
    println!("{}", pool.join().unwrap_err());
    pool.close();
    println!("{}", pool.map(square, 0..3).unwrap_err());
    pool.join()?;
    Ok(())
}

/// Prints the workers' pids after close and join, then waits to be killed, so that the
/// test can look for zombies while this process still lives.
fn joined() -> Result<()> {
    let pool = Pool::new(3)?;
    pool.map(square, 0..100)?;
    let pids = pool.worker_pids();
    pool.close();
    pool.join()?;
    print_pids("joined", &pids);
    sleep(Duration::from_secs(30));
    Ok(())
}

/// A child forked after the pool holds copies of the pool's pipe ends; `join` must
/// still end.
fn join_with_other_child() -> Result<()> {
    let pool = Pool::new(2)?;
    let mut other = common::Process::new(|| sleep(Duration::from_secs(30))).daemon(true);
    other.start()?;
    pool.map(square, 0..10)?;
    pool.close();
    let started = Instant::now();
    pool.join()?;
    println!("joined in {} ms", started.elapsed().as_millis());
    other.kill()?;
    other.join()?;
    Ok(())
}

/// A worker dies after `close()` with a task still queued behind it: its replacement
/// must run that task, and `join` must end.
fn death_after_close() -> Result<()> {
    let pool = Pool::new(1)?;
    let dying = pool.apply_async(dies_at_5, 5)?;
    let queued = pool.apply_async(square, 3)?;
    pool.close();
    pool.join()?;
    println!(
        "dying: {}",
        dying
            .get()
            .map_or_else(|e| e.to_string(), |v| v.to_string())
    );
    println!("queued: {}", queued.get()?);
    Ok(())
}

fn dropped() -> Result<()> {
    let pids = {
        let pool = Pool::new(3)?;
        pool.map(square, 0..100)?;
        pool.worker_pids()
    };
    print_pids("dropped", &pids);
    sleep(Duration::from_secs(30));
    Ok(())
}

fn parent_killed() -> Result<()> {
    let pool = Pool::new(2)?;
    print_pids("workers", &pool.worker_pids());
    pool.map_chunked(slow, [30, 30], 1)?;
    Ok(())
}

fn print_pids(label: &str, pids: &[u32]) {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    println!("{label} {}", pids.join(" "));
}
