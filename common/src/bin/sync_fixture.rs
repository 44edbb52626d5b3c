//! A single-threaded program that drives `common::shm` and `common::sync` (and, to show
//! its problems, `raw_sync`) for the crate's multi-process tests (`tests/sync.rs`).
//! Usage: `sync_fixture SCENARIO [ARGS]`.

use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::process::{Process, current_process};
use common::shm::{SharedArray, SharedValue};
use common::sync::{Barrier, Lock, SyncError};
use raw_sync::Timeout;
use raw_sync::locks::{LockImpl, LockInit, Mutex as RawMutex};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| -> Result<usize> {
        args.get(i)
            .map_or(Ok(default), |a| a.parse().context("a number"))
    };
    match args.first().map(String::as_str).unwrap_or_default() {
        "counter" => counter(number(1, 4)?, number(2, 100_000)?),
        "owner-died" => owner_died(args.get(1).map(String::as_str) == Some("kill")),
        "timeouts" => timeouts(number(1, 200)?),
        "rawsync-timeouts" => rawsync_timeouts(number(1, 10)?),
        "rawsync-dead-holder" => rawsync_dead_holder(),
        "barrier" => barrier_generations(number(1, 2)?, number(2, 10_000)?),
        "barrier-timeout" => barrier_timeout(),
        "barrier-abort-reset" => barrier_abort_reset(),
        "barrier-killed" => barrier_killed(),
        "errors" => errors(),
        "hold" => hold(),
        other => bail!("unknown scenario {other:?}"),
    }
}

/// `count` processes each add 1 to a shared counter `times` times, under the lock.
fn counter(count: usize, times: usize) -> Result<()> {
    let lock = Lock::new()?;
    let total = SharedValue::new(0u64)?;
    let mut workers = Vec::new();
    for _ in 0..count {
        let (lock, total) = (lock.clone(), total.clone());
        let mut p = Process::new(move || -> Result<(), SyncError> {
            for _ in 0..times {
                let _guard = lock.acquire()?;
                total.set(total.get() + 1);
            }
            Ok(())
        });
        p.start()?;
        workers.push(p);
    }
    for p in &workers {
        p.join()?;
    }
    println!("total {}", total.get());
    Ok(())
}

/// Starts a child that takes `lock` and keeps it until killed, and waits until it has.
fn start_holder(lock: &Lock) -> Result<Process> {
    let childs = lock.clone();
    let mut holder = Process::new(move || -> Result<(), SyncError> {
        let _guard = childs.acquire()?;
        sleep(Duration::from_secs(60));
        Ok(())
    });
    holder.start()?;
    let started = Instant::now();
    while lock.try_acquire()?.is_some() {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("the holder never took the lock");
        }
        sleep(Duration::from_millis(1));
    }
    Ok(holder)
}

/// A holder that exits (or is killed) while holding the lock; then two acquires.
fn owner_died(kill: bool) -> Result<()> {
    let lock = Lock::new()?;
    let died_at;
    let holder_pid;
    if kill {
        let holder = start_holder(&lock)?;
        holder_pid = holder.pid().context("pid")?;
        died_at = Instant::now();
        holder.kill()?;
    } else {
        let childs = lock.clone();
        let mut holder = Process::new(move || -> Result<(), SyncError> {
            std::mem::forget(childs.acquire()?);
            Ok(())
        });
        holder.start()?;
        holder.join()?;
        holder_pid = holder.pid().context("pid")?;
        died_at = Instant::now();
    }
    let first = lock.acquire().map(drop);
    let waited = died_at.elapsed().as_millis();
    match first {
        Err(SyncError::OwnerDied { pid }) => {
            let named = pid == Some(holder_pid);
            println!("first: owner died, pid named: {named}, after {waited} ms");
        }
        other => println!("first: {other:?}"),
    }
    match lock.acquire_timeout(Duration::from_secs(5)) {
        Ok(_guard) => println!("second: acquired"),
        Err(error) => println!("second: {error}"),
    }
    Ok(())
}

/// A spread of sub-second timeouts with nanosecond parts: 1 to 12 ms.
fn timeout_for(i: usize) -> Duration {
    Duration::from_nanos(1_000_000 + (i as u64 * 7_919_993) % 11_000_000)
}

/// `tries` timed acquisitions of a lock that another process holds.
fn timeouts(tries: usize) -> Result<()> {
    let lock = Lock::new()?;
    let holder = start_holder(&lock)?;
    let (mut timeouts, mut other, mut early, mut late) = (0, 0, 0, 0);
    let mut worst_over = Duration::ZERO;
    for i in 0..tries {
        let timeout = timeout_for(i);
        let started = Instant::now();
        let outcome = lock.acquire_timeout(timeout).map(drop);
        let waited = started.elapsed();
        match outcome {
            Err(SyncError::Timeout) => timeouts += 1,
            _ => other += 1,
        }
        if waited < timeout {
            early += 1;
        } else {
            worst_over = worst_over.max(waited - timeout);
            if waited - timeout > Duration::from_millis(500) {
                late += 1;
            }
        }
    }
    holder.kill()?;
    holder.join()?;
    println!(
        "timeouts={timeouts} other={other} early={early} late={late} worst_over_us={}",
        worst_over.as_micros()
    );
    Ok(())
}

/// A `raw_sync` mutex placed at the start of a shared array's memory.
struct RawLock {
    _memory: SharedArray<u64>,
    mutex: Box<dyn LockImpl>,
}

fn raw_lock() -> Result<RawLock> {
    let memory = SharedArray::<u64>::new(64)?;
    let base = shared_base(&memory);
    // SAFETY: `base` points to 512 writable, shared, page-aligned bytes that live as
    // long as `memory`, which `RawLock` keeps; a pthread mutex needs 40 of them.
    let (mutex, _) = unsafe { RawMutex::new(base, std::ptr::null_mut()) }
        .map_err(|e| anyhow::anyhow!("raw_sync: {e}"))?;
    Ok(RawLock {
        _memory: memory,
        mutex,
    })
}

/// The address of a shared array's first element, where `raw_sync` can place a mutex.
fn shared_base(memory: &SharedArray<u64>) -> *mut u8 {
    memory.as_ptr().cast::<u8>()
}

/// `raw_sync`'s timed lock with sub-second timeouts: how many calls return early.
fn rawsync_timeouts(tries: usize) -> Result<()> {
    let raw = raw_lock()?;
    let guard = raw.mutex.lock().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut holder = Process::new(move || sleep(Duration::from_secs(60)));
    // The child inherits the locked mutex; the parent keeps holding it too, which is
    // all this needs: the mutex stays locked while we try to take it with timeouts.
    holder.start()?;
    let (mut early, mut errors) = (0, Vec::new());
    for i in 0..tries {
        // 900 to 999 ms: large sub-second parts, where raw_sync's missing carry shows.
        let timeout = Duration::from_millis(900 + (i as u64 * 37) % 100);
        let started = Instant::now();
        let outcome = raw.mutex.try_lock(Timeout::Val(timeout));
        if started.elapsed() < timeout {
            early += 1;
        }
        if let Err(error) = outcome {
            errors.push(error.to_string());
        }
    }
    drop(guard);
    holder.kill()?;
    holder.join()?;
    errors.sort();
    errors.dedup();
    println!(
        "raw_sync early={early} of {tries}, errors: {}",
        errors.join(" | ")
    );
    Ok(())
}

/// A `raw_sync` mutex whose holder exits while holding it.
fn rawsync_dead_holder() -> Result<()> {
    let raw = raw_lock()?;
    let memory = raw._memory.clone();
    let mut holder = Process::new(move || -> Result<()> {
        let base = shared_base(&memory);
        // SAFETY: the parent initialised a raw_sync mutex at `base`, in memory shared
        // with this child and mapped for as long as `memory` lives.
        let (mutex, _) = unsafe { RawMutex::from_existing(base, std::ptr::null_mut()) }
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        std::mem::forget(mutex.lock().map_err(|e| anyhow::anyhow!("{e}"))?);
        Ok(())
    });
    holder.start()?;
    holder.join()?;
    let started = Instant::now();
    match raw.mutex.try_lock(Timeout::Val(Duration::from_secs(1))) {
        Ok(_) => println!("raw_sync: acquired"),
        Err(error) => println!(
            "raw_sync: still locked after {} ms: {error}",
            started.elapsed().as_millis()
        ),
    }
    Ok(())
}

/// `parties` processes go through `generations` rounds of one barrier, checking that
/// nobody passes a round before everyone has arrived, and recording their indexes.
fn barrier_generations(parties: usize, generations: usize) -> Result<()> {
    let barrier = Barrier::new(parties)?;
    let arrived = SharedArray::<u64>::new(parties)?;
    let violations = SharedArray::<u64>::new(parties)?;
    let indexes = SharedArray::<u32>::new(parties * generations)?;
    let mut workers = Vec::new();
    for party in 0..parties {
        let (barrier, arrived, violations, indexes) = (
            barrier.clone(),
            arrived.clone(),
            violations.clone(),
            indexes.clone(),
        );
        let mut p = Process::new(move || -> Result<()> {
            for generation in 0..generations {
                arrived.set(party, generation as u64 + 1)?;
                let index = barrier.wait()?;
                let early = (0..parties)
                    .filter(|q| arrived.get(*q).unwrap_or(0) < generation as u64 + 1)
                    .count();
                if early > 0 {
                    violations.set(party, violations.get(party).unwrap_or(0) + 1)?;
                }
                indexes.set(party * generations + generation, index as u32)?;
            }
            Ok(())
        });
        p.start()?;
        workers.push(p);
    }
    let mut failed = 0;
    for p in &workers {
        if p.join()? != 0 {
            failed += 1;
        }
    }
    let indexes = indexes.to_vec();
    let bad_rounds = (0..generations)
        .filter(|generation| {
            let mut seen: Vec<u32> = (0..parties)
                .map(|party| indexes[party * generations + generation])
                .collect();
            seen.sort_unstable();
            seen != (0..parties as u32).collect::<Vec<_>>()
        })
        .count();
    let violations: u64 = violations.to_vec().iter().sum();
    println!(
        "parties={parties} generations={generations} failed={failed} violations={violations} bad_rounds={bad_rounds}"
    );
    Ok(())
}

/// Starts a child that waits on `barrier` and prints how its wait ended.
fn start_waiter(barrier: &Barrier, name: &str) -> Result<Process> {
    let childs = barrier.clone();
    let mut p = Process::new(move || {
        let me = current_process();
        match childs.wait() {
            Ok(index) => println!("{}: passed with index {index}", me.name()),
            Err(SyncError::Broken) => println!("{}: broken", me.name()),
            Err(error) => println!("{}: {error}", me.name()),
        }
    })
    .name(name);
    p.start()?;
    Ok(p)
}

fn until_waiting(barrier: &Barrier, count: usize) -> Result<()> {
    let started = Instant::now();
    while barrier.n_waiting() < count {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("only {} of {count} parties arrived", barrier.n_waiting());
        }
        sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Two children wait on a barrier of 4; the parent's timed wait runs out.
fn barrier_timeout() -> Result<()> {
    let barrier = Barrier::new(4)?;
    let a = start_waiter(&barrier, "a")?;
    let b = start_waiter(&barrier, "b")?;
    until_waiting(&barrier, 2)?;
    let started = Instant::now();
    let outcome = barrier.wait_timeout(Duration::from_millis(200));
    let waited = started.elapsed().as_millis();
    a.join_timeout(Duration::from_secs(5))?;
    b.join_timeout(Duration::from_secs(5))?;
    match outcome {
        Err(SyncError::Broken) => println!("parent: broken after {waited} ms"),
        other => println!("parent: {other:?}"),
    }
    println!("is_broken: {}", barrier.is_broken());
    Ok(())
}

/// Two children wait on a barrier of 3; the parent aborts; after a reset, a full round
/// passes.
fn barrier_abort_reset() -> Result<()> {
    let barrier = Barrier::new(3)?;
    let a = start_waiter(&barrier, "a")?;
    let b = start_waiter(&barrier, "b")?;
    until_waiting(&barrier, 2)?;
    barrier.abort();
    a.join_timeout(Duration::from_secs(5))?;
    b.join_timeout(Duration::from_secs(5))?;
    println!(
        "after abort: broken={} waiting={}",
        barrier.is_broken(),
        barrier.n_waiting()
    );
    barrier.reset();
    println!(
        "after reset: broken={} waiting={}",
        barrier.is_broken(),
        barrier.n_waiting()
    );
    let c = start_waiter(&barrier, "c")?;
    let d = start_waiter(&barrier, "d")?;
    until_waiting(&barrier, 2)?;
    let index = barrier.wait_timeout(Duration::from_secs(5))?;
    c.join_timeout(Duration::from_secs(5))?;
    d.join_timeout(Duration::from_secs(5))?;
    println!("parent: passed with index {index}");
    Ok(())
}

/// Two children wait on a barrier of 3; one is killed; the other must not hang.
fn barrier_killed() -> Result<()> {
    let barrier = Barrier::new(3)?;
    let a = start_waiter(&barrier, "a")?;
    let b = start_waiter(&barrier, "b")?;
    until_waiting(&barrier, 2)?;
    let killed_at = Instant::now();
    a.kill()?;
    // `a` is not reaped yet: it stays a zombie while `b` decides.
    let b_code = b.join_timeout(Duration::from_secs(10))?;
    println!(
        "b ended: {} after {} ms",
        b_code.is_some(),
        killed_at.elapsed().as_millis()
    );
    println!("a exit code {}", a.join()?);
    Ok(())
}

fn errors() -> Result<()> {
    println!(
        "{}",
        Barrier::new(0).err().context("Barrier::new(0) must fail")?
    );
    println!(
        "{}",
        SharedArray::<f64>::new(0)
            .err()
            .context("an empty array must fail")?
    );
    Ok(())
}

/// Makes a lock, a barrier and an array, starts a child, and waits to be killed: the
/// test then checks that nothing is left in /dev/shm.
fn hold() -> Result<()> {
    let _lock = Lock::new()?;
    let _barrier = Barrier::new(2)?;
    let _array = SharedArray::<u8>::new(4096)?;
    let mut child = Process::new(|| sleep(Duration::from_secs(60))).daemon(true);
    child.start()?;
    println!("holding");
    sleep(Duration::from_secs(60));
    Ok(())
}
