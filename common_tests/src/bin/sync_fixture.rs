//! A single-threaded program that drives `common::shm` and `common::sync` (and, to show
//! its problems, `raw_sync`) for the crate's multi-process tests (`tests/sync.rs`).
//! Usage: `sync_fixture SCENARIO [ARGS]`.

use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::process::{Process, current_process};
use common::shm::{SharedArray, SharedValue};
use common::sync::{Barrier, BarrierError, Lock, LockError};
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
        "barrier-reset-twice" => barrier_reset_twice(number(1, 50)?),
        "barrier-stopped-waiter" => barrier_stopped_waiter(),
        "barrier-action" => barrier_action(number(1, 3)?, number(2, 200)?),
        "barrier-action-panics" => barrier_action_panics(),
        "owner-died-holds" => owner_died_holds(),
        "lock-kill-waiters" => lock_kill_waiters(number(1, 150)?),
        "timeouts-wall-step" => {
            WALL_CLOCK_BEHIND.store(true, std::sync::atomic::Ordering::SeqCst);
            timeouts(number(1, 20)?)
        }
        "shm-full" => shm_full(),
        "shm-names" => shm_names(number(1, 40)?),
        "shm-churn" => shm_churn(),
        "torn" => torn(number(1, 200_000)?),
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
        let mut p = Process::new(move || -> Result<(), LockError> {
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
    let mut holder = Process::new(move || -> Result<(), LockError> {
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
        let mut holder = Process::new(move || -> Result<(), LockError> {
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
        Err(LockError::OwnerDied(died)) => {
            let named = died.pid() == Some(holder_pid);
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
            Err(LockError::Timeout) => timeouts += 1,
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
            Err(BarrierError::Broken { reason }) => println!("{}: broken ({reason:?})", me.name()),
            Err(error) => println!("{}: {error}", me.name()),
        }
    })
    .with_name(name);
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
        Err(BarrierError::Timeout) => println!("parent: timed out after {waited} ms"),
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

/// Makes this binary's `clock_gettime(CLOCK_REALTIME)` answer an hour behind the
/// kernel's: what a process sees when the wall clock is stepped forward by an hour
/// while it waits (the kernel's deadline check uses the new time). Calls from this
/// binary, the standard library and `common` included, resolve to the definition below.
static WALL_CLOCK_BEHIND: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `clock_gettime`, straight to the kernel, with [`WALL_CLOCK_BEHIND`] applied.
///
/// # Safety
/// As libc's `clock_gettime`: `time` points to a writable `timespec`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clock_gettime(clock: libc::clockid_t, time: *mut libc::timespec) -> i32 {
    // SAFETY: the caller passes a writable timespec, which is all the system call needs.
    let code = unsafe { libc::syscall(libc::SYS_clock_gettime, clock, time) } as i32;
    if code == 0
        && clock == libc::CLOCK_REALTIME
        && WALL_CLOCK_BEHIND.load(std::sync::atomic::Ordering::Relaxed)
    {
        // SAFETY: as above; the kernel has just filled it in.
        unsafe { (*time).tv_sec -= 3600 };
    }
    code
}

/// Waits (with a bound) until `pid` has stopped (SIGSTOP delivered).
fn until_stopped(pid: u32) -> Result<()> {
    let started = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let state = stat
            .rsplit(") ")
            .next()
            .and_then(|rest| rest.chars().next());
        if state == Some('T') {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!("process {pid} did not stop: {stat}");
        }
        sleep(Duration::from_millis(1));
    }
}

fn send_signal(pid: u32, signal: i32) -> Result<()> {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    if unsafe { libc::kill(pid as i32, signal) } != 0 {
        bail!("kill {pid}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// `trials` times: a child waits on a barrier of 2, the parent calls `reset()` twice.
/// The child must always see its wait broken by the reset, never passed.
fn barrier_reset_twice(trials: usize) -> Result<()> {
    let (mut passed, mut reset, mut other) = (0, 0, Vec::new());
    for _ in 0..trials {
        let barrier = Barrier::new(2)?;
        let outcome = SharedValue::new(0u8)?;
        let (childs, childs_outcome) = (barrier.clone(), outcome.clone());
        let mut child = Process::new(move || {
            childs_outcome.set(match childs.wait() {
                Ok(_) => 1,
                Err(BarrierError::Broken {
                    reason: common::sync::BrokenReason::Reset,
                }) => 2,
                Err(_) => 3,
            })
        });
        child.start()?;
        until_waiting(&barrier, 1)?;
        barrier.reset();
        barrier.reset();
        if child.join_timeout(Duration::from_secs(10))?.is_none() {
            child.kill()?;
            bail!("the waiter never returned");
        }
        match outcome.get() {
            1 => passed += 1,
            2 => reset += 1,
            code => other.push(code),
        }
    }
    println!("passed={passed} reset={reset} other={other:?}");
    Ok(())
}

/// A waiter of a barrier of 2 is stopped (SIGSTOP) while it waits; the barrier is reset
/// and two other processes then pass a whole generation; the waiter, continued, must
/// see that its own generation was reset, not released.
fn barrier_stopped_waiter() -> Result<()> {
    let barrier = Barrier::new(2)?;
    let a = start_waiter(&barrier, "a")?;
    until_waiting(&barrier, 1)?;
    let a_pid = a.pid().context("pid")?;
    send_signal(a_pid, libc::SIGSTOP)?;
    until_stopped(a_pid)?;
    barrier.reset();
    let b = start_waiter(&barrier, "b")?;
    let c = start_waiter(&barrier, "c")?;
    for p in [&b, &c] {
        p.join_timeout(Duration::from_secs(10))?
            .context("b and c pass a generation")?;
    }
    send_signal(a_pid, libc::SIGCONT)?;
    a.join_timeout(Duration::from_secs(10))?
        .context("a ends once continued")?;
    Ok(())
}

/// `parties` processes pass `generations` rounds of a barrier whose action counts the
/// rounds; each party checks, once released, that the action of its round has run.
fn barrier_action(parties: usize, generations: usize) -> Result<()> {
    let rounds = SharedValue::new(0u64)?;
    let counter = rounds.clone();
    let barrier = Barrier::new(parties)?.action(move || counter.set(counter.get() + 1));
    let late = SharedArray::<u64>::new(parties)?;
    let mut workers = Vec::new();
    for party in 0..parties {
        let (barrier, rounds, late) = (barrier.clone(), rounds.clone(), late.clone());
        let mut p = Process::new(move || -> Result<()> {
            for generation in 0..generations {
                barrier.wait_timeout(Duration::from_secs(20))?;
                if rounds.get() < generation as u64 + 1 {
                    late.set(party, late.get(party).unwrap_or(0) + 1)?;
                }
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
    let late: u64 = late.to_vec().iter().sum();
    println!(
        "rounds={} failed={failed} released_before_action={late}",
        rounds.get()
    );
    Ok(())
}

/// The action panics in the last party (the parent): the waiting child is told so, and
/// the panic goes on in the parent.
fn barrier_action_panics() -> Result<()> {
    let barrier = Barrier::new(2)?.action(|| panic!("the action failed"));
    let a = start_waiter(&barrier, "a")?;
    until_waiting(&barrier, 1)?;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| barrier.wait()));
    a.join_timeout(Duration::from_secs(10))?
        .context("a is released")?;
    println!("parent panicked: {}", outcome.is_err());
    Ok(())
}

/// The holder of a lock dies; the process told `OwnerDied` holds the lock until it
/// drops the error: a child trying meanwhile finds it held.
fn owner_died_holds() -> Result<()> {
    let lock = Lock::new()?;
    let holder = start_holder(&lock)?;
    holder.kill()?;
    holder.join()?;
    let Err(LockError::OwnerDied(died)) = lock.acquire() else {
        bail!("OwnerDied expected");
    };
    let try_in_child = |lock: &Lock| -> Result<i32> {
        let childs = lock.clone();
        let mut p = Process::new(move || -> Result<(), LockError> {
            match childs.try_acquire()? {
                Some(_) => println!("child: acquired"),
                None => println!("child: held by another process"),
            }
            Ok(())
        });
        p.start()?;
        Ok(p.join()?)
    };
    println!(
        "told: holder={:?}",
        lock.holder() == Some(std::process::id())
    );
    try_in_child(&lock)?;
    drop(died);
    try_in_child(&lock)?;
    Ok(())
}

/// `trials` times: three processes take and release a lock in a loop; one is killed
/// at a random moment; the other two must still finish (a waiter killed right after
/// its wake-up must not leave the others asleep with the lock free).
fn lock_kill_waiters(trials: usize) -> Result<()> {
    let mut hangs = 0;
    let mut seed = u64::from(std::process::id()) | 1;
    let mut random = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    for _ in 0..trials {
        let lock = Lock::new()?;
        let stop = SharedValue::new(0u32)?;
        let mut workers = Vec::new();
        for _ in 0..3 {
            let (lock, stop) = (lock.clone(), stop.clone());
            let mut p = Process::new(move || {
                while stop.get() == 0 {
                    let guard = match lock.acquire() {
                        Ok(guard) => guard,
                        Err(LockError::OwnerDied(died)) => died.into_guard(),
                        Err(error) => panic!("{error}"),
                    };
                    // Hold it a while, so that the others sleep in the kernel.
                    let held = Instant::now();
                    while held.elapsed() < Duration::from_micros(20) {
                        std::hint::black_box(&guard);
                    }
                    drop(guard);
                }
            });
            p.start()?;
            workers.push(p);
        }
        sleep(Duration::from_micros(500 + random(3000)));
        let victim = random(3) as usize;
        workers[victim].kill()?;
        sleep(Duration::from_millis(2));
        stop.set(1);
        for p in &workers {
            if p.join_timeout(Duration::from_secs(2))?.is_none() {
                hangs += 1;
                p.kill()?;
                p.join()?;
            }
        }
    }
    println!("trials={trials} hangs={hangs}");
    Ok(())
}

/// Creates a 1 MiB array and fills it: run where /dev/shm is too small.
fn shm_full() -> Result<()> {
    match SharedArray::<u8>::new(1 << 20) {
        Ok(array) => {
            array.copy_from(0, &vec![1; 1 << 20])?;
            println!("created and written");
        }
        Err(error) => println!("{error}"),
    }
    Ok(())
}

/// The names of the shared-memory segments this process has mapped now.
fn mapped_segments() -> Result<Vec<String>> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    Ok(maps
        .lines()
        .filter_map(|line| line.split("/dev/shm/").nth(1))
        .map(|name| name.trim_end_matches(" (deleted)").to_string())
        .collect())
}

/// `children` children create two arrays each and print the names of their segments.
/// The parent makes one first, so that whatever it used to draw names is set up when
/// the children are forked.
fn shm_names(children: usize) -> Result<()> {
    let _parents = SharedArray::<u8>::new(1)?;
    let mut workers = Vec::new();
    for _ in 0..children {
        let mut p = Process::new(|| -> Result<()> {
            let before = mapped_segments()?;
            let _a = SharedArray::<u8>::new(1)?;
            let _b = SharedArray::<u8>::new(1)?;
            for name in mapped_segments()? {
                if !before.contains(&name) {
                    println!("{name}");
                }
            }
            Ok(())
        });
        p.start()?;
        workers.push(p);
    }
    for p in &workers {
        p.join()?;
    }
    Ok(())
}

/// Creates and drops segments without end, for a test that signals it at random.
fn shm_churn() -> Result<()> {
    println!("ready");
    loop {
        drop(SharedArray::<u8>::new(1)?);
    }
}

/// Two processes write whole patterns (all zeros, all ones) into one element while a
/// third reads it: a `u64` in a plain shared array, a `u128` in a locked array.
/// Prints how many reads saw a torn value (half of each).
fn torn(reads: usize) -> Result<()> {
    let plain = SharedArray::<u64>::new(1)?;
    let locked = common::shm::LockedArray::<u128>::new(1)?;
    let stop = SharedValue::new(0u8)?;
    let mut writers = Vec::new();
    for pattern in [0u128, u128::MAX] {
        let (plain, locked, stop) = (plain.clone(), locked.clone(), stop.clone());
        let mut p = Process::new(move || -> Result<()> {
            while stop.get() == 0 {
                plain.set(0, pattern as u64)?;
                locked.lock()?.set(0, pattern)?;
            }
            Ok(())
        });
        p.start()?;
        writers.push(p);
    }
    let (mut plain_torn, mut locked_torn) = (0, 0);
    for _ in 0..reads {
        let value = plain.get(0).unwrap_or(0);
        if value != 0 && value != u64::MAX {
            plain_torn += 1;
        }
        let value = locked.lock()?.get(0).unwrap_or(0);
        if value != 0 && value != u128::MAX {
            locked_torn += 1;
        }
    }
    stop.set(1);
    for p in &writers {
        p.join()?;
    }
    println!("u64 torn={plain_torn} locked u128 torn={locked_torn}");
    Ok(())
}
