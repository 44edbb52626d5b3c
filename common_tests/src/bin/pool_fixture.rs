//! A single-threaded program that drives `common::pool` for the crate's multi-process
//! tests (`common_tests/tests/pool.rs`). Usage: `pool_fixture SCENARIO`.

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
        "at-once" => at_once(),
        "imap-close-join" => imap_close_join(),
        "imap-failure-order" => imap_failure_order(),
        "idle-death" => idle_death(),
        "dropped-results" => dropped_results(),
        "sigpipe-default" => sigpipe_default(),
        "terminate-stubborn" => terminate_stubborn(),
        "get-timeout-twice" => get_timeout_twice(),
        "callbacks" => callbacks(),
        "initializer" => initializer(),
        "max-tasks" => max_tasks(),
        "plain-equals" => plain_equals(),
        "plain-failures" => plain_failures(),
        "first-replies" => first_replies(),
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

fn nap_ms(ms: u64) -> u64 {
    sleep(Duration::from_millis(ms));
    ms
}

/// Work submitted with `apply_async` or `imap` starts at once: 1 s in a worker and
/// 1 s in the parent take 1 s, not 2.
fn at_once() -> Result<()> {
    let pool = Pool::new(2)?;
    let started = Instant::now();
    let pending = pool.apply_async(nap_ms, 1000)?;
    sleep(Duration::from_millis(1000));
    pending.get()?;
    println!("apply_async ms={}", started.elapsed().as_millis());
    let started = Instant::now();
    let mut results = pool.imap(nap_ms, [1000])?;
    sleep(Duration::from_millis(1000));
    results.next().transpose()?;
    println!("imap ms={}", started.elapsed().as_millis());
    Ok(())
}

/// `imap`, then `close()` and `join()`: every result still comes out.
fn imap_close_join() -> Result<()> {
    let pool = Pool::new(2)?;
    let results = pool.imap(square, 0..100)?;
    pool.close();
    pool.join()?;
    let got: Vec<i64> = results.collect::<Result<_, _>>()?;
    let expected: Vec<i64> = (0..100).map(square).collect();
    println!("results={} equal={}", got.len(), got == expected);
    Ok(())
}

fn slow_zero_fails_one(x: u64) -> u64 {
    match x {
        0 => sleep(Duration::from_millis(500)),
        1 => panic!("one fails"),
        _ => {}
    }
    x
}

fn describe(item: Result<u64, PoolError>) -> String {
    match item {
        Ok(value) => value.to_string(),
        Err(PoolError::TaskFailed { index, .. }) => format!("failed({index})"),
        Err(other) => format!("{other}"),
    }
}

/// Input 0 is slow and succeeds, input 1 fails: `imap` yields 0, then the failure,
/// then goes on; `imap_unordered` yields the failure when it happens, and goes on.
fn imap_failure_order() -> Result<()> {
    let pool = Pool::new(2)?;
    let ordered: Vec<String> = pool
        .imap(slow_zero_fails_one, 0..5)?
        .map(describe)
        .collect();
    println!("imap: {}", ordered.join(" "));
    let mut unordered: Vec<String> = pool
        .imap_unordered(slow_zero_fails_one, 0..5)?
        .map(describe)
        .collect();
    unordered.sort();
    println!("imap_unordered: {}", unordered.join(" "));
    Ok(())
}

/// Waits (with a bound) until `pid` is gone or a zombie.
fn until_dead(pid: u32) -> Result<()> {
    let started = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(") ")
            .next()
            .and_then(|rest| rest.chars().next());
        if stat.is_empty() || state == Some('Z') {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!("worker {pid} did not die");
        }
        sleep(Duration::from_millis(1));
    }
}

fn kill_pid(pid: u32, signal: i32) {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    unsafe { libc::kill(pid as i32, signal) };
}

/// A worker killed while idle: the next `map` succeeds, and nobody is blamed.
fn idle_death() -> Result<()> {
    let pool = Pool::new(2)?;
    pool.map(square, 0..10)?;
    let victim = pool.worker_pids()[0];
    kill_pid(victim, libc::SIGKILL);
    until_dead(victim)?;
    match pool.map(square, 0..10) {
        Ok(results) => println!("after an idle death: {results:?}"),
        Err(error) => println!("after an idle death: {error}"),
    }
    println!("replaced: {}", !pool.worker_pids().contains(&victim));
    Ok(())
}

fn resident_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

fn mebibyte(seed: u8) -> Vec<u8> {
    vec![seed; 1 << 20]
}

/// 100 results of 1 MiB whose handles are dropped: they are not kept.
fn dropped_results() -> Result<()> {
    let pool = Pool::new(2)?;
    for seed in 0..100u8 {
        drop(pool.apply_async(mebibyte, seed)?);
    }
    pool.close();
    pool.join()?;
    println!("resident MiB after join: {}", resident_mib());
    Ok(())
}

/// The program restores SIGPIPE's default action; a worker dies while idle; `map`
/// must not kill the program with SIGPIPE.
fn sigpipe_default() -> Result<()> {
    // SAFETY: restoring a signal's default action touches no memory of ours.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let pool = Pool::new(2)?;
    pool.map(square, 0..10)?;
    for victim in pool.worker_pids() {
        kill_pid(victim, libc::SIGKILL);
        until_dead(victim)?;
    }
    println!("map: {:?}", pool.map(square, 0..4)?);
    Ok(())
}

fn ignores_sigterm(_: u8) -> u8 {
    // SAFETY: ignoring a signal touches no memory of ours.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    loop {
        sleep(Duration::from_secs(1));
    }
}

/// A task that ignores SIGTERM and never ends: `terminate` must still end.
fn terminate_stubborn() -> Result<()> {
    let pool = Pool::new(1)?;
    let pending = pool.apply_async(ignores_sigterm, 0)?;
    // Wait a while in the pool, so that the task surely runs and ignores SIGTERM.
    let _ = pending.get_timeout(Duration::from_millis(300));
    let started = Instant::now();
    pool.terminate();
    println!("terminated in ms={}", started.elapsed().as_millis());
    Ok(())
}

/// `get_timeout(Duration::MAX)` waits without overflowing, and a second
/// `get_timeout` gives the result again.
fn get_timeout_twice() -> Result<()> {
    let pool = Pool::new(1)?;
    let pending = pool.apply_async(square, 6)?;
    println!("first: {}", pending.get_timeout(Duration::MAX)?);
    println!(
        "second: {}",
        pending.get_timeout(Duration::from_millis(10))?
    );
    println!("successful: {:?}", pending.successful());
    Ok(())
}

/// Callbacks run once each, in this process, with the result or the error.
fn callbacks() -> Result<()> {
    use std::cell::RefCell;
    use std::rc::Rc;
    let pool = Pool::new(2)?;
    let log = Rc::new(RefCell::new(Vec::new()));
    let (ok, err) = (Rc::clone(&log), Rc::clone(&log));
    let good = pool.apply_async_with(
        square,
        4,
        move |r| ok.borrow_mut().push(format!("ok {r}")),
        |_| (),
    )?;
    let bad = pool.apply_async_with(
        panics_at_13,
        13,
        |_| (),
        move |e| {
            err.borrow_mut()
                .push(format!("error {}", e.to_string().contains("unlucky")))
        },
    )?;
    good.wait();
    bad.wait();
    let (m_ok, m_err) = (Rc::clone(&log), Rc::clone(&log));
    let all = pool.map_async_with(
        square,
        0..3,
        move |r| m_ok.borrow_mut().push(format!("map {r:?}")),
        move |_| m_err.borrow_mut().push("map failed".into()),
    )?;
    all.wait();
    let mut lines = log.borrow().clone();
    lines.sort();
    println!("{}", lines.join(" | "));
    Ok(())
}

static INITIALIZED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn read_initialized(_: u8) -> u32 {
    INITIALIZED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The initializer runs once in each worker, before its tasks.
fn initializer() -> Result<()> {
    let pool = Pool::builder()
        .workers(2)
        .initializer(|| {
            INITIALIZED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .build()?;
    let seen = pool.map_chunked(read_initialized, 0..20, 1)?;
    println!("every task saw one run: {}", seen.iter().all(|n| *n == 1));
    println!(
        "parent's count: {}",
        INITIALIZED.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}

fn own_pid(_: u8) -> u32 {
    std::process::id()
}

/// With `max_tasks_per_child(2)`, each worker runs two chunks, then is replaced.
fn max_tasks() -> Result<()> {
    let pool = Pool::builder().workers(2).max_tasks_per_child(2).build()?;
    let pids = pool.map_chunked(own_pid, 0..12, 1)?;
    let mut counts = std::collections::BTreeMap::new();
    for pid in &pids {
        *counts.entry(pid).or_insert(0) += 1;
    }
    println!(
        "workers used: {} each at most 2: {}",
        counts.len(),
        counts.values().all(|n| *n <= 2)
    );
    Ok(())
}

/// A small random number generator (xorshift), seeded from the clock.
fn random_numbers(seed: u64, count: usize) -> Vec<i64> {
    let mut state = seed | 1;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 33) as i64 - (1 << 30)
        })
        .collect()
}

fn mix(x: i64) -> i64 {
    x.wrapping_mul(31).wrapping_add(x >> 3)
}

/// `map_plain` returns exactly what `map` returns, over random inputs and chunk sizes,
/// with one call larger than the arena (done in batches).
fn plain_equals() -> Result<()> {
    let pool = Pool::new(2)?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let mut rounds = 0;
    let mut equal = 0;
    for (round, len) in [0usize, 1, 2, 7, 100, 4096, 100_000]
        .into_iter()
        .enumerate()
    {
        let inputs = random_numbers(seed + round as u64, len);
        for chunksize in [1usize, 3, 1000, len.max(1)] {
            if len > 10_000 && chunksize < 100 {
                continue;
            }
            rounds += 1;
            let plain = pool.map_plain_chunked(mix, &inputs, chunksize)?;
            let serde = pool.map_chunked(mix, inputs.iter().copied(), chunksize)?;
            equal += usize::from(plain == serde);
        }
        rounds += 1;
        equal += usize::from(pool.map_plain(mix, &inputs)? == pool.map(mix, inputs.clone())?);
    }
    // More than the arena holds at once (64 MiB, 16 bytes an input): in batches.
    let many: Vec<i64> = (0..4_500_000).collect();
    let squares = pool.map_plain(square, &many)?;
    let batches_right = squares.len() == many.len()
        && squares
            .iter()
            .enumerate()
            .all(|(i, &s)| s == (i as i64) * (i as i64));
    println!("rounds={rounds} equal={equal} batches_right={batches_right}");
    Ok(())
}

fn dies_at_4_200_000(x: i64) -> i64 {
    if x == 4_200_000 {
        let _ = kill_current(Signal::SIGKILL);
    }
    x
}

fn panics_at_4_300_000(x: i64) -> i64 {
    if x == 4_300_000 {
        panic!("unlucky");
    }
    x
}

/// A worker killed mid-chunk, a panicking task, and both in a later batch: the input
/// is named, in time, and the pool works again after each.
fn plain_failures() -> Result<()> {
    let pool = Pool::new(2)?;
    let inputs: Vec<i64> = (0..20).collect();
    let started = Instant::now();
    match pool.map_plain_chunked(dies_at_5, &inputs, 2) {
        Err(PoolError::WorkerDied {
            index, exitcode, ..
        }) => println!(
            "died: index {index} exitcode {exitcode} in_ms={}",
            started.elapsed().as_millis()
        ),
        other => println!("unexpected: {other:?}"),
    }
    println!("after: {:?}", pool.map_plain(square, &inputs[..5])?);
    match pool.map_plain_chunked(panics_at_13, &inputs, 4) {
        Err(PoolError::TaskFailed { index, .. }) => println!("failed: index {index}"),
        other => println!("unexpected: {other:?}"),
    }
    let many: Vec<i64> = (0..4_500_000).collect();
    for (label, f) in [
        ("died", dies_at_4_200_000 as fn(i64) -> i64),
        ("failed", panics_at_4_300_000),
    ] {
        match pool.map_plain(f, &many) {
            Err(PoolError::WorkerDied { index, .. } | PoolError::TaskFailed { index, .. }) => {
                println!("second batch {label}: index {index}")
            }
            other => println!("unexpected: {:?}", other.map(|v| v.len())),
        }
    }
    println!("after: {:?}", pool.map_plain(square, &inputs[..5])?);
    Ok(())
}

/// This process's minor page faults so far: each is a page of memory touched for the
/// first time (or copied after a fork).
fn minor_faults() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one `rusage` into the live, zeroed buffer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    usage.ru_minflt
}

thread_local! {
    /// Where the four tasks of `first_replies` meet: made before the pool forks, so every
    /// worker has it (a forked child's thread is a copy of its parent's).
    static MEETING: std::cell::RefCell<Option<common::Barrier>> =
        const { std::cell::RefCell::new(None) };
}

/// Waits until four tasks are running, each in its own worker, then says which worker.
fn meet_then_say_who(_: u8) -> u32 {
    MEETING.with(|meeting| {
        let meeting = meeting.borrow();
        let barrier = meeting.as_ref().expect("made before the pool");
        barrier.wait().expect("the four tasks meet");
    });
    std::process::id()
}

/// A pool of four takes four tasks that can only end together, so each worker runs one
/// and replies once: the page faults of the parent meanwhile (the pool's start-up
/// included), and how many workers replied.
fn first_replies() -> Result<()> {
    let barrier = common::Barrier::new(4)?.timeout(Duration::from_secs(20));
    MEETING.with(|meeting| *meeting.borrow_mut() = Some(barrier));
    let before = minor_faults();
    let pool = Pool::new(4)?;
    let seen: Vec<u32> = pool.map_chunked(meet_then_say_who, 0..4, 1)?;
    let faults = minor_faults() - before;
    let replied = pool
        .worker_pids()
        .iter()
        .filter(|pid| seen.contains(pid))
        .count();
    println!("replied={replied} faults={faults}");
    Ok(())
}
