//! A single-threaded program that drives `common::queue`, `common::connection` and the
//! signalling primitives of `common::sync` across processes, for the crate's
//! multi-process tests (`tests/exchange.rs`). Usage: `exchange_fixture SCENARIO [ARGS]`.
//! Each scenario prints `key=value` lines that the tests check.

use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use common::connection::{ConnectionError, pipe};
use common::process::Process;
use common::queue::{JoinableQueue, Queue, QueueError};
use common::shm::{LockedArray, SharedArray, SharedValue};
use common::sync::{Condition, ConditionError, Event, Semaphore};

/// A bound on every wait of this program: a bug fails a scenario instead of hanging it.
const LIMIT: Duration = Duration::from_secs(20);

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| -> Result<usize> {
        args.get(i)
            .map_or(Ok(default), |a| a.parse().context("a number"))
    };
    match args.first().map(String::as_str).unwrap_or_default() {
        "queue-many" => queue_many(number(1, 3)?, number(2, 3)?, number(3, 2000)?),
        "queue-kill-consumer" => queue_kill_consumer(number(1, 20)?),
        "queue-kill-producer" => queue_kill_producer(number(1, 20)?),
        "queue-fork" => queue_fork(),
        "joinable" => joinable(),
        "pipe-echo" => pipe_echo(),
        "pipe-eof" => pipe_eof(),
        "pipe-truncated" => pipe_truncated(),
        "pipe-handover" => pipe_handover(),
        "event" => event(),
        "semaphore" => semaphore(number(1, 6)?),
        "condition-notify-n" => condition_notify_n(),
        "condition-dead-waiter" => condition_dead_waiter(),
        "condition-wait-for" => condition_wait_for(),
        "wake-latency" => wake_latency(number(1, 15)?),
        other => bail!("unknown scenario {other:?}"),
    }
}

/// A small random number generator (xorshift), seeded from the clock and the pid.
struct Random(u64);

impl Random {
    fn new() -> Random {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Random(nanos ^ (u64::from(std::process::id()) << 32) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// An item of the queue tests: who made it, its number, and a body that makes a put
/// take long enough for a kill to land in the middle of it.
type Item = (u32, u32, Vec<u8>);

fn item(producer: u32, seq: u32) -> Item {
    (
        producer,
        seq,
        vec![(seq % 251) as u8; 64 + (seq as usize * 37) % 3000],
    )
}

/// Whether `it` is whole: its body is what `item` makes for its numbers.
fn whole(it: &Item) -> bool {
    *it == item(it.0, it.1)
}

/// Starts a daemonic child: if a scenario fails half-way, the exit hook terminates
/// its children instead of waiting for ever for one that waits for ever.
fn start(target: impl FnOnce() -> Result<()> + 'static) -> Result<Process> {
    let mut p = Process::new(move || target().map_err(|e| format!("{e:#}"))).daemon(true);
    p.start()?;
    Ok(p)
}

/// `producers` processes put `items` items each; `consumers` processes take them until
/// a `None`, and send back, through a pipe, what they took. Exact counts.
fn queue_many(producers: usize, consumers: usize, items: usize) -> Result<()> {
    let queue = Queue::<Option<Item>>::with_capacity(0, 64 * 1024)?;
    let mut started = Vec::new();
    for producer in 0..producers {
        let queue = queue.clone();
        started.push(start(move || {
            for seq in 0..items {
                queue.put(Some(item(producer as u32, seq as u32)))?;
            }
            Ok(())
        })?);
    }
    let mut ends = Vec::new();
    for _ in 0..consumers {
        let (back, mut childs_end) = pipe()?;
        let queue = queue.clone();
        started.push(start(move || {
            let mut taken = Vec::new();
            while let Some(it) = queue.get_timeout(LIMIT)? {
                ensure!(whole(&it), "a torn item: {} {}", it.0, it.1);
                taken.push((it.0, it.1));
            }
            childs_end.send(&taken)?;
            Ok(())
        })?);
        ends.push(back);
    }
    for p in &started[..producers] {
        ensure!(p.join_timeout(LIMIT)? == Some(0), "a producer failed");
    }
    for _ in 0..consumers {
        queue.put(None)?;
    }
    let mut seen = vec![0u32; producers * items];
    for mut end in ends {
        let taken: Vec<(u32, u32)> = end.recv()?;
        for (producer, seq) in taken {
            seen[producer as usize * items + seq as usize] += 1;
        }
    }
    for p in &started {
        ensure!(p.join_timeout(LIMIT)? == Some(0), "a process failed");
    }
    report(&seen, &[]);
    Ok(())
}

/// Prints how many items were received once, never, and more than once.
fn report(seen: &[u32], excused: &[usize]) {
    let once = seen.iter().filter(|&&n| n == 1).count();
    let twice = seen.iter().filter(|&&n| n > 1).count();
    let lost = seen
        .iter()
        .enumerate()
        .filter(|&(i, &n)| n == 0 && !excused.contains(&i))
        .count();
    println!("once={once} duplicated={twice} lost={lost}");
}

/// `trials` times: one producer, three consumers; one consumer is killed with SIGKILL
/// at a random moment. The others must take every other item, once; the victim may
/// take with it the one item it held when it died.
fn queue_kill_consumer(trials: usize) -> Result<()> {
    let items = 600usize;
    let consumers = 3usize;
    let mut random = Random::new();
    let (mut unaccounted_total, mut duplicated_total, mut usable) = (0, 0, 0);
    for _ in 0..trials {
        let queue = Queue::<Option<Item>>::with_capacity(0, 32 * 1024)?;
        // marks[c * items + seq]: consumer c took item seq (set right after its get).
        let marks = SharedArray::<u8>::new(consumers * items)?;
        let mut started = Vec::new();
        for c in 0..consumers {
            let (queue, marks) = (queue.clone(), marks.clone());
            started.push(start(move || {
                while let Some(it) = queue.get_timeout(LIMIT)? {
                    ensure!(whole(&it), "a torn item");
                    marks.set(c * items + it.1 as usize, 1)?;
                }
                Ok(())
            })?);
        }
        let producer_queue = queue.clone();
        let producer = start(move || {
            for seq in 0..items {
                producer_queue.put(Some(item(0, seq as u32)))?;
            }
            Ok(())
        })?;
        sleep(Duration::from_micros(random.below(20_000)));
        started[0].kill()?;
        ensure!(
            producer.join_timeout(LIMIT)? == Some(0),
            "the producer failed"
        );
        for _ in 1..consumers {
            queue.put(None)?;
        }
        for p in &started[1..] {
            ensure!(p.join_timeout(LIMIT)? == Some(0), "a survivor failed");
        }
        started[0].join_timeout(LIMIT)?;
        let mut seen = vec![0u32; items];
        for c in 0..consumers {
            for (seq, n) in seen.iter_mut().enumerate() {
                *n += u32::from(marks.get(c * items + seq).unwrap_or(0));
            }
        }
        unaccounted_total += seen.iter().filter(|&&n| n == 0).count();
        duplicated_total += seen.iter().filter(|&&n| n > 1).count();
        // Usable after the kill: a put and a get still work at once.
        queue.put_timeout(Some(item(9, 9)), Duration::from_secs(1))?;
        if queue.get_timeout(Duration::from_secs(1))? == Some(item(9, 9)) {
            usable += 1;
        }
    }
    println!(
        "trials={trials} unaccounted={unaccounted_total} duplicated={duplicated_total} usable={usable}"
    );
    Ok(())
}

/// `trials` times: two producers, one consumer; one producer is killed with SIGKILL at
/// a random moment. The consumer must get every item of the survivor once, and of the
/// victim's items those it had put, in order, whole.
fn queue_kill_producer(trials: usize) -> Result<()> {
    let items = 600u32;
    let mut random = Random::new();
    let (mut lost_total, mut gaps_total, mut torn_total) = (0, 0, 0);
    for _ in 0..trials {
        let queue = Queue::<Item>::with_capacity(0, 32 * 1024)?;
        let mut producers = Vec::new();
        for producer in 0..2u32 {
            let queue = queue.clone();
            producers.push(start(move || {
                for seq in 0..items {
                    queue.put(item(producer, seq))?;
                }
                Ok(())
            })?);
        }
        let kill_after = Duration::from_micros(random.below(10_000));
        let started = Instant::now();
        let mut next = [0u32; 2];
        let mut killed = false;
        // Take items until the survivor's are all in and the victim is gone.
        while next[1] < items {
            if !killed && started.elapsed() >= kill_after {
                producers[0].kill()?;
                producers[0].join_timeout(LIMIT)?;
                killed = true;
            }
            let it = match queue.get_timeout(Duration::from_millis(100)) {
                Ok(it) => it,
                Err(QueueError::Empty) if started.elapsed() < LIMIT => continue,
                Err(e) => return Err(e.into()),
            };
            if !whole(&it) {
                torn_total += 1;
            }
            let p = it.0 as usize;
            if it.1 != next[p] {
                gaps_total += 1;
            }
            next[p] = it.1 + 1;
        }
        if !killed {
            producers[0].kill()?;
            producers[0].join_timeout(LIMIT)?;
        }
        ensure!(
            producers[1].join_timeout(LIMIT)? == Some(0),
            "the survivor failed"
        );
        // Whatever the victim put before it died is still to be had, in order.
        while let Ok(it) = queue.try_get() {
            if !whole(&it) {
                torn_total += 1;
            }
            if it.0 != 0 || it.1 != next[0] {
                gaps_total += 1;
            }
            next[0] = it.1 + 1;
        }
        lost_total += items - next[1];
    }
    println!("trials={trials} survivor_lost={lost_total} gaps={gaps_total} torn={torn_total}");
    Ok(())
}

/// CPython's `test_fork`: items put before a fork and by the child come out in order.
fn queue_fork() -> Result<()> {
    let queue = Queue::<u32>::new()?;
    for i in 0..10 {
        queue.put(i)?;
    }
    let childs = queue.clone();
    let p = start(move || {
        for i in 10..20 {
            childs.put(i)?;
        }
        Ok(())
    })?;
    ensure!(p.join_timeout(LIMIT)? == Some(0), "the child failed");
    let got: Vec<u32> = (0..20)
        .map(|_| queue.get_timeout(LIMIT))
        .collect::<Result<_, _>>()?;
    let empty = matches!(queue.try_get(), Err(QueueError::Empty));
    println!(
        "in_order={} then_empty={empty}",
        got == (0..20).collect::<Vec<_>>()
    );
    Ok(())
}

/// CPython's `test_task_done`: four workers, ten tasks of 10 ms; `join` returns when
/// all are done, not before.
fn joinable() -> Result<()> {
    let tasks = JoinableQueue::<Option<u32>>::new()?;
    let done = SharedArray::<u8>::new(10)?;
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (tasks, done) = (tasks.clone(), done.clone());
        workers.push(start(move || {
            while let Some(n) = tasks.get_timeout(LIMIT)? {
                sleep(Duration::from_millis(10));
                done.set(n as usize, 1)?;
                tasks.task_done()?;
            }
            tasks.task_done()?;
            Ok(())
        })?);
    }
    for n in 0..10 {
        tasks.put(Some(n))?;
    }
    ensure!(tasks.join_timeout(LIMIT), "join timed out");
    let all_done = done.to_vec().iter().all(|&d| d == 1);
    for _ in &workers {
        tasks.put(None)?;
    }
    ensure!(tasks.join_timeout(LIMIT), "join timed out on the stops");
    for p in &workers {
        ensure!(p.join_timeout(LIMIT)? == Some(0), "a worker failed");
    }
    let too_many = matches!(tasks.task_done(), Err(QueueError::TaskDoneTooManyTimes));
    println!("all_done_at_join={all_done} task_done_too_many={too_many}");
    Ok(())
}

/// CPython's `test_connection`, with a child that echoes bytes until an empty message:
/// values, bytes, 16 MiB, and EOF once the child is gone.
fn pipe_echo() -> Result<()> {
    let (mut conn, mut childs) = pipe()?;
    let p = start(move || {
        loop {
            let message = childs.recv_bytes()?;
            childs.send_bytes(&message)?;
            if message.is_empty() {
                return Ok(());
            }
        }
    })?;
    let ok = |b: bool| if b { "ok" } else { "WRONG" };
    conn.send_bytes(b"hello world")?;
    println!("bytes={}", ok(conn.recv_bytes()? == b"hello world"));
    let started = Instant::now();
    let polled = conn.poll(Duration::from_millis(100))?;
    println!(
        "poll_empty={} waited_ms={}",
        ok(!polled),
        started.elapsed().as_millis()
    );
    let big = vec![b'X'; 16 << 20];
    conn.send_bytes(&big)?;
    println!("big={}", ok(conn.recv_bytes()? == big));
    conn.send_bytes(b"")?;
    conn.recv_bytes()?;
    ensure!(p.join_timeout(LIMIT)? == Some(0), "the echo child failed");
    let eof = matches!(conn.recv_bytes(), Err(ConnectionError::Eof));
    println!("eof_after_child_ended={}", ok(eof));
    Ok(())
}

/// A child sends three values and ends: the parent reads the three, then EOF at once
/// (the parent's copy of the child's end went with `start`).
fn pipe_eof() -> Result<()> {
    let (mut conn, mut childs) = pipe()?;
    let p = start(move || {
        for i in 0..3u8 {
            childs.send(&i)?;
        }
        Ok(())
    })?;
    let got: Vec<u8> = (0..3).map(|_| conn.recv()).collect::<Result<_, _>>()?;
    let started = Instant::now();
    let after = conn.recv::<u8>();
    println!(
        "got={got:?} then={} in_ms={}",
        match after {
            Err(ConnectionError::Eof) => "eof".to_string(),
            other => format!("{other:?}"),
        },
        started.elapsed().as_millis()
    );
    p.join_timeout(LIMIT)?;
    Ok(())
}

/// The parent keeps the writing end and a child reads until the end of file: it comes
/// when the parent closes its end, since the child does not hold a copy of it.
fn pipe_handover() -> Result<()> {
    let (mut reader, mut writer) = common::connection::pipe_one_way()?;
    let p = start(move || {
        let mut sum = 0u64;
        loop {
            match reader.recv::<u64>() {
                Ok(n) => sum += n,
                Err(ConnectionError::Eof) => break,
                Err(e) => return Err(e.into()),
            }
        }
        ensure!(sum == 6, "sum {sum}");
        Ok(())
    })?;
    for n in 1..=3u64 {
        writer.send(&n)?;
    }
    writer.close();
    let code = p.join_timeout(Duration::from_secs(5))?;
    println!("child_saw_eof={}", code == Some(0));
    Ok(())
}

/// A child killed in the middle of sending 16 MiB: the parent's read says truncated.
fn pipe_truncated() -> Result<()> {
    let (mut conn, mut childs) = pipe()?;
    let p = start(move || {
        childs.send_bytes(&vec![1u8; 16 << 20])?;
        Ok(())
    })?;
    sleep(Duration::from_millis(200)); // the child fills the socket and waits
    p.kill()?;
    p.join_timeout(LIMIT)?;
    match conn.recv_bytes() {
        Err(ConnectionError::Truncated { expected, got }) => {
            println!("truncated expected={expected} got_less={}", got < expected)
        }
        other => println!("not truncated: {other:?}"),
    }
    Ok(())
}

/// CPython's `test_event`: a child sets the event after 200 ms.
fn event() -> Result<()> {
    let event = Event::new()?;
    let childs = event.clone();
    let p = start(move || {
        sleep(Duration::from_millis(200));
        childs.set();
        Ok(())
    })?;
    let started = Instant::now();
    let set = event.wait_timeout(LIMIT);
    let waited = started.elapsed().as_millis();
    p.join_timeout(LIMIT)?;
    println!("set={set} waited_ms={waited}");
    Ok(())
}

/// `processes` processes each take a `Semaphore(2)` 20 times and count who is inside:
/// never more than 2, and 2 at some point.
fn semaphore(processes: usize) -> Result<()> {
    let sem = Semaphore::new(2)?;
    // [inside now, most inside ever]
    let counts = LockedArray::<u32>::new(2)?;
    let mut started = Vec::new();
    for _ in 0..processes {
        let (sem, counts) = (sem.clone(), counts.clone());
        started.push(start(move || {
            for _ in 0..20 {
                ensure!(sem.acquire_timeout(LIMIT), "no permit in time");
                {
                    let c = counts.lock()?;
                    let inside = c.get(0).unwrap_or(0) + 1;
                    c.set(0, inside)?;
                    c.set(1, inside.max(c.get(1).unwrap_or(0)))?;
                }
                sleep(Duration::from_millis(1));
                {
                    let c = counts.lock()?;
                    c.set(0, c.get(0).unwrap_or(1) - 1)?;
                }
                sem.release()?;
            }
            Ok(())
        })?);
    }
    for p in &started {
        ensure!(p.join_timeout(LIMIT)? == Some(0), "a process failed");
    }
    let most = counts.lock()?.get(1).unwrap_or(0);
    println!("most_inside={most} value_after={}", sem.value());
    Ok(())
}

/// Starts `n` processes that each wait on `cond` once (releasing `sleeping` when about
/// to) and then release `woken`.
fn waiters(
    cond: &Condition,
    sleeping: &Semaphore,
    woken: &Semaphore,
    n: usize,
) -> Result<Vec<Process>> {
    let mut started = Vec::new();
    for _ in 0..n {
        let (cond, sleeping, woken) = (cond.clone(), sleeping.clone(), woken.clone());
        started.push(start(move || {
            let _guard = cond.acquire()?;
            sleeping.release()?;
            cond.wait()?;
            woken.release()?;
            Ok(())
        })?);
    }
    for _ in 0..n {
        ensure!(sleeping.acquire_timeout(LIMIT), "a waiter never came");
    }
    Ok(started)
}

/// Waits up to a second for `sem` to reach `value`, then gives what it holds.
fn settles_at(sem: &Semaphore, value: u32) -> u32 {
    let started = Instant::now();
    while sem.value() != value && started.elapsed() < Duration::from_secs(1) {
        sleep(Duration::from_millis(5));
    }
    sleep(Duration::from_millis(50)); // and no more come
    sem.value()
}

/// CPython's `test_notify_n`, with six processes: notify(2) wakes 2, notify(4) the
/// other 4, notify(3) nobody.
fn condition_notify_n() -> Result<()> {
    let cond = Condition::new()?;
    let (sleeping, woken) = (Semaphore::new(0)?, Semaphore::new(0)?);
    let started = waiters(&cond, &sleeping, &woken, 6)?;
    sleep(Duration::from_millis(50));
    let before = woken.value();
    let mut counts = Vec::new();
    for (n, expect) in [(2, 2), (4, 6), (3, 6)] {
        let told = {
            let _guard = cond.acquire()?;
            cond.notify_n(n)?
        };
        counts.push(format!("{told}:{}", settles_at(&woken, expect)));
    }
    for p in &started {
        ensure!(p.join_timeout(LIMIT)? == Some(0), "a waiter failed");
    }
    println!("woken_before={before} told:woken={}", counts.join(","));
    Ok(())
}

/// Two waiters; the one that came first is killed while it waits. Python's next
/// `notify()` waits for ever for the dead one to wake; here it skips it and wakes the
/// live one.
fn condition_dead_waiter() -> Result<()> {
    let cond = Condition::new()?;
    let (sleeping, woken) = (Semaphore::new(0)?, Semaphore::new(0)?);
    let first = waiters(&cond, &sleeping, &woken, 1)?;
    let second = waiters(&cond, &sleeping, &woken, 1)?;
    sleep(Duration::from_millis(50));
    first[0].kill()?;
    first[0].join_timeout(LIMIT)?;
    let started = Instant::now();
    let told = {
        let _guard = cond.acquire()?;
        cond.notify()?
    };
    let live_woke = woken.acquire_timeout(Duration::from_secs(5));
    let ms = started.elapsed().as_millis();
    ensure!(
        second[0].join_timeout(LIMIT)? == Some(0),
        "the live waiter failed"
    );
    println!("told={told} live_woke={live_woke} in_ms={ms}");
    Ok(())
}

/// CPython's `test_waitfor` and `test_waitfor_timeout`: wait_for a predicate that a
/// child makes true step by step; and one it never makes true within 100 ms.
fn condition_wait_for() -> Result<()> {
    let cond = Condition::new()?;
    let state = SharedArray::<i32>::from_slice(&[-1])?;
    let (childs_cond, childs_state) = (cond.clone(), state.clone());
    let p = start(move || {
        {
            let _guard = childs_cond.acquire()?;
            childs_state.set(0, 0)?;
            childs_cond.notify()?;
        }
        for _ in 0..4 {
            sleep(Duration::from_millis(10));
            let _guard = childs_cond.acquire()?;
            childs_state.set(0, childs_state.get(0).unwrap_or(0) + 1)?;
            childs_cond.notify()?;
        }
        Ok(())
    })?;
    let reached = {
        let _guard = cond.acquire()?;
        cond.wait_for_timeout(|| state.get(0) == Some(4), LIMIT)?
    };
    ensure!(p.join_timeout(LIMIT)? == Some(0), "the child failed");
    let started = Instant::now();
    let never = {
        let _guard = cond.acquire()?;
        cond.wait_for_timeout(|| state.get(0) == Some(5), Duration::from_millis(100))?
    };
    let waited = started.elapsed().as_millis();
    let not_held = matches!(cond.notify(), Err(ConditionError::NotHeld));
    println!("reached={reached} never={never} waited_ms={waited} notify_unheld_refused={not_held}");
    Ok(())
}

/// Nanoseconds on the monotonic clock, which every process reads alike.
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// The median, in µs, of `rounds` delays between a child's wake-up call (after 20 ms,
/// when this process sleeps in its wait) and the return of this process's wait. Sleepers
/// look again every 100 ms on their own: without the wake-up call, the median would be
/// about 50 ms.
fn median_delay(
    rounds: usize,
    mut round: impl FnMut(&SharedValue<u64>) -> Result<()>,
) -> Result<u64> {
    let woken_at = SharedValue::new(0u64)?;
    let mut delays = Vec::new();
    for _ in 0..rounds {
        round(&woken_at)?;
        delays.push((monotonic_ns().saturating_sub(woken_at.get())) / 1000);
    }
    delays.sort_unstable();
    Ok(delays[delays.len() / 2])
}

/// Starts a child that sleeps 20 ms, records the time, and calls `wake`.
fn waker(
    woken_at: &SharedValue<u64>,
    wake: impl FnOnce() -> Result<()> + 'static,
) -> Result<Process> {
    let woken_at = woken_at.clone();
    start(move || {
        sleep(Duration::from_millis(20));
        woken_at.set(monotonic_ns());
        wake()
    })
}

/// How soon a waiter of each primitive returns after the wake-up call.
fn wake_latency(rounds: usize) -> Result<()> {
    let queue = Queue::<u8>::new()?;
    let queue_us = median_delay(rounds, |woken_at| {
        let childs = queue.clone();
        let p = waker(woken_at, move || Ok(childs.put(1)?))?;
        queue.get_timeout(LIMIT)?;
        p.join_timeout(LIMIT)?;
        Ok(())
    })?;
    let event = Event::new()?;
    let event_us = median_delay(rounds, |woken_at| {
        event.clear();
        let childs = event.clone();
        let p = waker(woken_at, move || {
            childs.set();
            Ok(())
        })?;
        ensure!(event.wait_timeout(LIMIT), "never set");
        p.join_timeout(LIMIT)?;
        Ok(())
    })?;
    let sem = Semaphore::new(0)?;
    let semaphore_us = median_delay(rounds, |woken_at| {
        let childs = sem.clone();
        let p = waker(woken_at, move || Ok(childs.release()?))?;
        ensure!(sem.acquire_timeout(LIMIT), "never released");
        p.join_timeout(LIMIT)?;
        Ok(())
    })?;
    let cond = Condition::new()?;
    let condition_us = median_delay(rounds, |woken_at| {
        let _guard = cond.acquire()?;
        let childs = cond.clone();
        let p = waker(woken_at, move || {
            let _guard = childs.acquire()?;
            childs.notify()?;
            Ok(())
        })?;
        ensure!(cond.wait_timeout(LIMIT)?, "never notified");
        drop(_guard);
        p.join_timeout(LIMIT)?;
        Ok(())
    })?;
    println!(
        "queue_us={queue_us} event_us={event_us} semaphore_us={semaphore_us} condition_us={condition_us}"
    );
    Ok(())
}
