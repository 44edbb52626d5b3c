//! Benchmark helpers: each measures one of `common`'s primitives, or the baseline it is
//! compared with, in forked processes. The demos' `--bench` modes print their numbers
//! side by side, measured in the same run. A benchmark reports numbers; tests assert
//! behaviour.

use std::mem::size_of;
use std::time::{Duration, Instant};

use common::pool::Pool;
use common::process::Process;
use common::shm::SharedArray;
use common::sync::{Barrier, Lock};

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
    best_of_three(|| barrier_once(parties, generations))
}

/// Time per generation of a [`Barrier`] of `parties` processes, measured once.
///
/// # Errors
/// When the barrier or a process cannot be created, or a process fails.
pub fn barrier_once(parties: usize, generations: usize) -> anyhow::Result<Duration> {
    let barrier = Barrier::new(parties)?;
    per_round(parties, generations, move || {
        barrier.wait()?;
        Ok(())
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

/// Time per generation of a process-shared `pthread_barrier_t`, measured once.
///
/// # Errors
/// When the barrier or a process cannot be created, or a process fails.
pub fn pthread_barrier_once(parties: usize, generations: usize) -> anyhow::Result<Duration> {
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

/// The slowest of `windows` measurements of `ours` and of `floor`, taken in turns: the
/// worst stretch a user meets, where a median hides it.
///
/// In turns, not all of one then all of the other: under load, where the kernel puts
/// the co-tenants changes from one second to the next, and each side's worst window
/// must meet the same weather.
///
/// # Errors
/// As `ours` or `floor`.
pub fn worst_in_turns(
    windows: usize,
    mut ours: impl FnMut() -> anyhow::Result<Duration>,
    mut floor: impl FnMut() -> anyhow::Result<Duration>,
) -> anyhow::Result<(Duration, Duration)> {
    let mut worst = (Duration::ZERO, Duration::ZERO);
    for _ in 0..windows {
        worst.0 = worst.0.max(ours()?);
        worst.1 = worst.1.max(floor()?);
    }
    Ok(worst)
}

/// Runs `measure` while `count` daemonic processes busy-loop, as co-tenants that want
/// the cores too, and stops them after.
///
/// # Errors
/// When a co-tenant cannot be started, or as `measure`.
pub fn with_busy_cotenants<T>(
    count: usize,
    measure: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut cotenants = Vec::new();
    for _ in 0..count {
        let mut busy = Process::new(|| -> () {
            loop {
                std::hint::spin_loop();
            }
        })
        .daemon(true);
        busy.start()?;
        cotenants.push(busy);
    }
    let outcome = measure();
    for busy in &cotenants {
        busy.kill()?;
        busy.join()?;
    }
    outcome
}

/// Time per `Process::start` + `join` of an empty target.
///
/// # Errors
/// When a process cannot be started.
pub fn start_join(count: u32) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for _ in 0..count {
        let mut p = Process::new(|| ());
        p.start()?;
        anyhow::ensure!(p.join()? == 0, "the empty target failed");
    }
    Ok(started.elapsed() / count.max(1))
}

/// [`start_join`] with `live` long-lived children running: a start must not cost more
/// because there are more children.
///
/// # Errors
/// When a process cannot be started.
pub fn start_join_among(live: usize, count: u32) -> anyhow::Result<Duration> {
    let mut sleepers = Vec::new();
    for _ in 0..live {
        let mut sleeper =
            Process::new(|| std::thread::sleep(Duration::from_secs(600))).daemon(true);
        sleeper.start()?;
        sleepers.push(sleeper);
    }
    let cost = start_join(count);
    for sleeper in &sleepers {
        sleeper.kill()?;
        sleeper.join()?;
    }
    cost
}

/// The minor page faults (copies on write, mostly) that `run` causes, in this process
/// and in the children it reaps, per each of its `count` operations.
///
/// # Errors
/// When `run` fails.
pub fn page_faults(
    count: u32,
    run: impl FnOnce(u32) -> anyhow::Result<Duration>,
) -> anyhow::Result<f64> {
    let faults = || {
        let mut total = 0;
        for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
            // SAFETY: getrusage writes into the zeroed struct it is given.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: as above; `who` is a valid selector.
            unsafe { libc::getrusage(who, &mut usage) };
            total += usage.ru_minflt;
        }
        total
    };
    let before = faults();
    run(count)?;
    Ok((faults() - before) as f64 / f64::from(count.max(1)))
}

/// The floor of a pool's start-up: the time to fork `children` children (each leaves
/// with `_exit` at once; they are reaped after the clock stops).
fn fork_children(children: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut pids = Vec::with_capacity(children);
    let mut failed = None;
    for _ in 0..children {
        // SAFETY: as in `fork_waitpid`: single-threaded, and the child only calls
        // `_exit`.
        match unsafe { libc::fork() } {
            -1 => {
                failed = Some(std::io::Error::last_os_error());
                break;
            }
            // SAFETY: `_exit` ends the child at once.
            0 => unsafe { libc::_exit(0) },
            pid => pids.push(pid),
        }
    }
    let elapsed = started.elapsed();
    // Reaped whatever happened: no zombie is left behind, not even after a failed fork.
    for pid in pids {
        let mut status = 0;
        // SAFETY: waits for our own child, writing its status to a live int.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    match failed {
        Some(error) => anyhow::bail!("fork: {error}"),
        None => Ok(elapsed),
    }
}

/// `Pool::new(workers)` and its floor, forking `workers` bare children, measured one
/// after the other five times; the best of each, in that order.
///
/// The free memory of glibc's heap is given back first. A fork copies the page
/// tables of every page its parent has touched, and after a first large `free` glibc
/// keeps large blocks in its heap (its mmap threshold grows): the result vectors of the
/// maps measured before stayed there, 8 MB of them, and doubled both numbers. A
/// program that starts its pool early does not pay that; a bench should not either.
///
/// # Errors
/// When a fork or the pool fails.
pub fn pool_startup(workers: usize) -> anyhow::Result<(Duration, Duration)> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only gives free heap memory back to the kernel; nothing
    // allocated is touched.
    unsafe {
        libc::malloc_trim(0);
    }
    let mut ours = Duration::MAX;
    let mut floor = Duration::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let pool = Pool::new(workers)?;
        ours = ours.min(started.elapsed());
        drop(pool);
        floor = floor.min(fork_children(workers)?);
    }
    Ok((ours, floor))
}

/// The floor of [`start_join`]: `fork`, `_exit(0)` in the child, `waitpid`.
///
/// # Errors
/// When `fork` fails.
pub fn fork_waitpid(count: u32) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for _ in 0..count {
        // SAFETY: this benchmark runs single-threaded (the caller is a demo's main);
        // the child calls only `_exit`, which is async-signal-safe.
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => anyhow::bail!("fork: {}", std::io::Error::last_os_error()),
            // SAFETY: `_exit` ends the child at once, running nothing of the parent's.
            0 => unsafe { libc::_exit(0) },
            child => {
                let mut status = 0;
                // SAFETY: waits for our own child, writing its status to a live int.
                unsafe { libc::waitpid(child, &mut status, 0) };
            }
        }
    }
    Ok(started.elapsed() / count.max(1))
}

/// Time per acquire + release of a [`Lock`]: in this process alone (`processes` 1),
/// or with `processes` processes contending, each doing `count` of them.
///
/// # Errors
/// When the lock or a process cannot be created, or a process fails.
pub fn lock(processes: usize, count: u32) -> anyhow::Result<Duration> {
    let lock = Lock::new()?;
    contend(processes, count, move || {
        drop(lock.acquire()?);
        Ok(())
    })
}

/// The floor of [`lock`]: a process-shared pthread mutex, plain or robust.
///
/// # Errors
/// When the mutex or a process cannot be created, or a process fails.
pub fn pthread_mutex(processes: usize, count: u32, robust: bool) -> anyhow::Result<Duration> {
    let words = size_of::<libc::pthread_mutex_t>().div_ceil(size_of::<u64>());
    let memory = SharedArray::<u64>::new(words)?;
    let mutex = memory.as_ptr().cast::<libc::pthread_mutex_t>();
    // SAFETY: `mutex` points to fresh, zeroed, page-aligned shared memory big enough for
    // a pthread_mutex_t; `attr` is initialised first and destroyed last; no other
    // process sees the mutex before the forks below.
    unsafe {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        libc::pthread_mutexattr_init(attr.as_mut_ptr());
        libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED);
        if robust {
            libc::pthread_mutexattr_setrobust(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST);
        }
        let code = libc::pthread_mutex_init(mutex, attr.as_ptr());
        libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
        anyhow::ensure!(code == 0, "pthread_mutex_init failed with {code}");
    }
    let address = mutex as usize;
    contend(processes, count, move || {
        let _keep_mapped = &memory;
        let mutex = address as *mut libc::pthread_mutex_t;
        // SAFETY: the mutex was initialised above in memory that `memory` keeps mapped
        // here and in every child.
        unsafe {
            libc::pthread_mutex_lock(mutex);
            libc::pthread_mutex_unlock(mutex);
        }
        Ok(())
    })
}

/// Runs `step` `count` times in this process (`processes` 1) or in each of
/// `processes` forked processes at once; the time per step.
fn contend<F>(processes: usize, count: u32, step: F) -> anyhow::Result<Duration>
where
    F: Fn() -> anyhow::Result<()> + Clone + 'static,
{
    if processes <= 1 {
        let started = Instant::now();
        for _ in 0..count {
            step()?;
        }
        return Ok(started.elapsed() / count.max(1));
    }
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..processes {
        let step = step.clone();
        let mut worker = Process::new(move || -> anyhow::Result<()> {
            for _ in 0..count {
                step()?;
            }
            Ok(())
        })
        .daemon(true);
        worker.start()?;
        workers.push(worker);
    }
    for worker in &workers {
        anyhow::ensure!(worker.join()? == 0, "a benchmark process failed");
    }
    let steps = u32::try_from(processes)
        .unwrap_or(u32::MAX)
        .saturating_mul(count);
    Ok(started.elapsed() / steps.max(1))
}

/// The bound of a pool's `map(square)`: the same loop in one process, tasks per second,
/// best of seven like the pool's maps.
///
/// Measured the way the maps are: the first run pays a page fault for every 4 KiB of
/// its fresh result vector, the later ones reuse the memory the one before freed (glibc
/// keeps it), and run four to five times faster. A single run made the loop look no
/// faster than `map_plain`, when it is about four times faster.
pub fn sequential_square(inputs: i64) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..7 {
        let started = Instant::now();
        let squares: Vec<i64> = (0..inputs)
            .map(|x| common::workload::square(std::hint::black_box(x)))
            .collect();
        std::hint::black_box(&squares);
        best = best.min(started.elapsed());
    }
    inputs as f64 / best.as_secs_f64()
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
    /// `map_plain(square)` over the inputs in a slice: tasks per second.
    pub map_plain_tasks_per_second: f64,
    /// The CPU-heavy tasks, one after the other in this process.
    pub heavy_sequential: Duration,
    /// The same tasks through the pool.
    pub heavy_pooled: Duration,
    /// `Pool::new(workers)`: forking the workers (see [`pool_startup`]).
    pub startup: Duration,
    /// The floor of `startup`: forking as many bare children, measured next to it.
    pub startup_floor: Duration,
}

/// Measures a [`Pool`] of `workers`: `map(square)` and `map_plain(square)` over
/// `inputs` inputs (best of seven each), `heavy` calls of [`cpu_heavy`] pooled and
/// sequential, and first of all the start-up time next to its floor ([`pool_startup`]).
///
/// # Errors
/// When the pool fails.
pub fn pool(workers: usize, inputs: i64, heavy: u64) -> anyhow::Result<PoolNumbers> {
    let (startup, startup_floor) = pool_startup(workers)?;
    let pool = Pool::new(workers)?;
    pool.map(common::workload::square, 0..1000)?;
    let mut best_map = Duration::MAX;
    for _ in 0..7 {
        let started = Instant::now();
        let squares = pool.map(common::workload::square, 0..inputs)?;
        best_map = best_map.min(started.elapsed());
        anyhow::ensure!(squares.len() as i64 == inputs, "map lost results");
    }
    let slice: Vec<i64> = (0..inputs).collect();
    pool.map_plain(common::workload::square, &slice)?;
    let mut best_plain = Duration::MAX;
    for _ in 0..7 {
        let started = Instant::now();
        let squares = pool.map_plain(common::workload::square, &slice)?;
        best_plain = best_plain.min(started.elapsed());
        anyhow::ensure!(squares.len() == slice.len(), "map_plain lost results");
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
        map_plain_tasks_per_second: inputs as f64 / best_plain.as_secs_f64(),
        heavy_sequential,
        heavy_pooled,
        startup,
        startup_floor,
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

/// One item of the exchange benchmarks: `size` bytes, as Python's `bytes` (a plain
/// `Vec<u8>` would go through serde one byte at a time).
fn payload(size: usize) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(vec![0xA5; size])
}

/// Items per second through a [`Queue`](common::queue::Queue) from one producer
/// process to one consumer (this process), for items of `size` bytes (a `Vec<u8>`).
///
/// # Errors
/// When the queue or the producer cannot be created, or an item is lost.
pub fn queue_throughput(items: u32, size: usize) -> anyhow::Result<f64> {
    let queue = common::queue::Queue::<serde_bytes::ByteBuf>::new()?;
    let producer_queue = queue.clone();
    let started = Instant::now();
    let mut producer = Process::new(move || -> anyhow::Result<()> {
        let item = payload(size);
        for _ in 0..items {
            producer_queue.put(&item)?;
        }
        Ok(())
    })
    .daemon(true);
    producer.start()?;
    for _ in 0..items {
        let item = queue.get_timeout(Duration::from_secs(60))?;
        anyhow::ensure!(item.len() == size, "an item of {} bytes", item.len());
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(producer.join()? == 0, "the producer failed");
    Ok(f64::from(items) / elapsed.as_secs_f64())
}

/// Creates a pipe, or says why not.
fn raw_pipe() -> anyhow::Result<[libc::c_int; 2]> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    let made = unsafe { libc::pipe(fds.as_mut_ptr()) };
    anyhow::ensure!(made == 0, "pipe: {}", std::io::Error::last_os_error());
    Ok(fds)
}

/// Reads exactly `buffer.len()` bytes from `fd`, or fails.
fn read_exactly(fd: libc::c_int, buffer: &mut [u8]) -> anyhow::Result<()> {
    let mut got = 0;
    while got < buffer.len() {
        let rest = &mut buffer[got..];
        // SAFETY: `rest` is writable for its length; `fd` is an open pipe.
        let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        anyhow::ensure!(n > 0, "read: {}", std::io::Error::last_os_error());
        got += n as usize;
    }
    Ok(())
}

/// Writes all of `bytes` to `fd`, or fails.
fn write_all(fd: libc::c_int, bytes: &[u8]) -> anyhow::Result<()> {
    let mut put = 0;
    while put < bytes.len() {
        let rest = &bytes[put..];
        // SAFETY: `rest` is readable for its length; `fd` is an open pipe.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        anyhow::ensure!(n > 0, "write: {}", std::io::Error::last_os_error());
        put += n as usize;
    }
    Ok(())
}

/// The floor of [`queue_throughput`]: items per second through a raw pipe, one
/// `write` per item in the producer, one `read` per item here.
///
/// # Errors
/// When the pipe or the producer cannot be created.
pub fn pipe_throughput(items: u32, size: usize) -> anyhow::Result<f64> {
    let [read_end, write_end] = raw_pipe()?;
    let started = Instant::now();
    let mut producer = Process::new(move || -> anyhow::Result<()> {
        let item = payload(size);
        for _ in 0..items {
            write_all(write_end, &item)?;
        }
        Ok(())
    })
    .daemon(true);
    producer.start()?;
    // SAFETY: the parent's copy of the write end is closed; the child has its own.
    unsafe { libc::close(write_end) };
    let mut item = payload(size);
    for _ in 0..items {
        read_exactly(read_end, &mut item)?;
    }
    let elapsed = started.elapsed();
    // SAFETY: the read end is ours and no longer used.
    unsafe { libc::close(read_end) };
    anyhow::ensure!(producer.join()? == 0, "the producer failed");
    Ok(f64::from(items) / elapsed.as_secs_f64())
}

/// Time per round trip of a small value (`u64`) through a [`pipe`](common::connection::pipe)
/// to a child that sends it back.
///
/// # Errors
/// When the pipe or the child cannot be created, or a message is lost.
pub fn connection_round_trip(count: u32) -> anyhow::Result<Duration> {
    let (mut ours, mut childs) = common::connection::pipe()?;
    let mut echo = Process::new(move || -> anyhow::Result<()> {
        loop {
            match childs.recv::<u64>() {
                Ok(n) => childs.send(&n)?,
                Err(common::connection::ConnectionError::Eof) => return Ok(()),
                Err(other) => return Err(other.into()),
            }
        }
    })
    .daemon(true);
    echo.start()?;
    ours.send(&0u64)?;
    ours.recv::<u64>()?;
    let started = Instant::now();
    for n in 0..u64::from(count) {
        ours.send(&n)?;
        anyhow::ensure!(ours.recv::<u64>()? == n, "a lost message");
    }
    let elapsed = started.elapsed();
    drop(ours);
    anyhow::ensure!(echo.join()? == 0, "the echo child failed");
    Ok(elapsed / count.max(1))
}

/// The floor of [`connection_round_trip`]: 8 bytes to a child and back through two raw
/// pipes.
///
/// # Errors
/// When the pipes or the child cannot be created.
pub fn raw_pipe_round_trip(count: u32) -> anyhow::Result<Duration> {
    let [to_child_read, to_child_write] = raw_pipe()?;
    let [to_parent_read, to_parent_write] = raw_pipe()?;
    let mut echo = Process::new(move || -> anyhow::Result<()> {
        let mut word = [0u8; 8];
        for _ in 0..=count {
            read_exactly(to_child_read, &mut word)?;
            write_all(to_parent_write, &word)?;
        }
        Ok(())
    })
    .daemon(true);
    echo.start()?;
    let mut word = [0u8; 8];
    write_all(to_child_write, &word)?;
    read_exactly(to_parent_read, &mut word)?;
    let started = Instant::now();
    for n in 0..u64::from(count) {
        write_all(to_child_write, &n.to_le_bytes())?;
        read_exactly(to_parent_read, &mut word)?;
    }
    let elapsed = started.elapsed();
    for fd in [
        to_child_read,
        to_child_write,
        to_parent_read,
        to_parent_write,
    ] {
        // SAFETY: the four ends are ours and no longer used here.
        unsafe { libc::close(fd) };
    }
    anyhow::ensure!(echo.join()? == 0, "the echo child failed");
    Ok(elapsed / count.max(1))
}
