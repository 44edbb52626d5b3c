//! A single-threaded program that drives `common::process` for the crate's
//! multi-process tests (`tests/process.rs`): the test harness runs tests on threads,
//! so the tests must not fork in-process. Usage: `process_fixture SCENARIO`.

use std::cell::RefCell;
use std::rc::Rc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::process::{Process, ProcessError, current_process};
use common::workload::do_something;

fn main() -> Result<(), ProcessError> {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    match scenario.as_str() {
        "exitcodes" => exitcodes(),
        "comm" => comm(),
        "reaped" => reaped(),
        "join-timeout" => join_timeout(),
        "daemon-orphan" => daemon_orphan(),
        "daemon-at-exit" => daemon_at_exit(),
        "exit-joins" => exit_joins(),
        "copy" => copy(),
        "errors" => errors(),
        "threads" => threads(),
        "names" => names(),
        "flush" => flush(),
        "repr" => repr(),
        "daemon-sigterm" => daemon_sigterm(),
        "child-sees-parent" => child_sees_parent(),
        "child-exit" => child_exit(),
        "start" => start(),
        "start-after-a-thread" => {
            // A thread that has ended: the process is single-threaded again, but
            // glibc's flag no longer says so; only the kernel can tell.
            std::thread::spawn(|| ()).join().expect("the thread ran");
            start()
        }
        "start-after-a-failed-handover" => start_after_a_failed_handover(),
        other => {
            eprintln!("process_fixture: unknown scenario {other:?}");
            std::process::exit(2);
        }
    }
}

fn boom() {
    panic!("boom from the target");
}

fn sleeper(seconds: u64) -> impl FnOnce() {
    move || sleep(Duration::from_secs(seconds))
}

fn exitcodes() -> Result<(), ProcessError> {
    let mut ok = Process::new(|| ());
    let mut panics = Process::new(boom);
    let mut fails = Process::new(|| Err::<(), _>("bad input"));
    let mut terminated = Process::new(sleeper(30));
    let mut killed = Process::new(sleeper(30));
    for p in [
        &mut ok,
        &mut panics,
        &mut fails,
        &mut terminated,
        &mut killed,
    ] {
        p.start()?;
    }
    terminated.terminate()?;
    killed.kill()?;
    for (label, p) in [
        ("ok", &ok),
        ("panic", &panics),
        ("err", &fails),
        ("terminate", &terminated),
        ("kill", &killed),
    ] {
        println!("{label} {}", p.join()?);
    }
    Ok(())
}

fn comm() -> Result<(), ProcessError> {
    let mut p = Process::new(|| {
        let me = current_process();
        println!("child name={} pid={}", me.name(), me.pid());
        sleep(Duration::from_secs(30));
    })
    .with_name("do_something process 1");
    p.start()?;
    let pid = p.pid().expect("started");
    sleep(Duration::from_millis(200));
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    println!("parent pid={pid} comm={}", comm.trim_end());
    p.terminate()?;
    p.join()?;
    Ok(())
}

/// Joined children, a child reaped by `is_alive`, and a dropped one reaped at the next
/// `start`: it prints their pids, then waits to be killed, so the test can look for
/// zombies while this process still lives.
fn reaped() -> Result<(), ProcessError> {
    let mut pids = Vec::new();
    for _ in 0..3 {
        let mut p = Process::new(|| ());
        p.start()?;
        p.join()?;
        pids.extend(p.pid());
    }
    let mut polled = Process::new(|| ());
    polled.start()?;
    while polled.is_alive() {
        sleep(Duration::from_millis(5));
    }
    pids.extend(polled.pid());
    {
        let mut dropped = Process::new(|| ());
        dropped.start()?;
        pids.extend(dropped.pid());
    }
    sleep(Duration::from_millis(200));
    let mut last = Process::new(|| ());
    last.start()?;
    last.join()?;
    pids.extend(last.pid());
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    println!("children {}", list.join(" "));
    sleep(Duration::from_secs(30));
    Ok(())
}

fn join_timeout() -> Result<(), ProcessError> {
    let mut p = Process::new(sleeper(30));
    p.start()?;
    let started = Instant::now();
    let code = p.join_timeout(Duration::from_millis(300))?;
    let waited = started.elapsed().as_millis();
    println!(
        "waited_ms={waited} result={code:?} alive={} exitcode={:?}",
        p.is_alive(),
        p.exitcode()
    );
    p.kill()?;
    p.join()?;
    Ok(())
}

fn daemon_orphan() -> Result<(), ProcessError> {
    let mut p = Process::new(sleeper(60)).daemon(true);
    p.start()?;
    println!("child {}", p.pid().expect("started"));
    sleep(Duration::from_secs(60));
    Ok(())
}

fn daemon_at_exit() -> Result<(), ProcessError> {
    let mut p = Process::new(sleeper(60)).daemon(true);
    p.start()?;
    println!("child {}", p.pid().expect("started"));
    Ok(())
}

fn exit_joins() -> Result<(), ProcessError> {
    let mut p = Process::new(|| {
        sleep(Duration::from_millis(300));
        println!("child finished");
    });
    p.start()?;
    drop(p);
    println!("parent leaving");
    std::process::exit(3);
}

fn copy() -> Result<(), ProcessError> {
    let list: Rc<RefCell<Vec<f64>>> = Rc::default();
    let childs_copy = Rc::clone(&list);
    let mut p = Process::new(move || {
        childs_copy.borrow_mut().extend(do_something(100));
        println!("child sees {}", childs_copy.borrow().len());
    });
    p.start()?;
    p.join()?;
    println!("parent sees {}", list.borrow().len());
    Ok(())
}

fn errors() -> Result<(), ProcessError> {
    let mut twice = Process::new(|| ());
    twice.start()?;
    println!("{}", twice.start().unwrap_err());
    twice.join()?;
    let idle = Process::new(|| ());
    println!("{}", idle.join().unwrap_err());
    println!("{}", idle.terminate().unwrap_err());
    let mut bad = Process::new(|| ()).with_name("nul\0name");
    println!("{}", bad.start().unwrap_err());
    let mut daemon = Process::new(|| {
        let mut grandchild = Process::new(|| ());
        println!("{}", grandchild.start().unwrap_err());
    })
    .daemon(true);
    daemon.start()?;
    daemon.join()?;
    Ok(())
}

fn threads() -> Result<(), ProcessError> {
    let _thread = std::thread::spawn(|| sleep(Duration::from_secs(30)));
    let mut p = Process::new(|| ());
    println!("{}", p.start().unwrap_err());
    std::process::exit(0);
}

fn names() -> Result<(), ProcessError> {
    let first = Process::new(|| ());
    let second = Process::new(|| ()).with_name("named");
    let mut third = Process::new(|| -> Result<(), ProcessError> {
        println!("in child: {}", current_process().name());
        let mut grandchild =
            Process::new(|| println!("in grandchild: {}", current_process().name()));
        grandchild.start()?;
        grandchild.join()?;
        Ok(())
    });
    println!("{} {} {}", first.name(), second.name(), third.name());
    println!("in parent: {}", current_process().name());
    third.start()?;
    third.join()?;
    Ok(())
}

fn flush() -> Result<(), ProcessError> {
    print!("before fork;");
    let mut p = Process::new(|| println!("child"));
    p.start()?;
    p.join()?;
    println!(" after join");
    Ok(())
}

fn repr() -> Result<(), ProcessError> {
    let mut p = Process::new(sleeper(30)).daemon(true);
    println!("{p}");
    p.start()?;
    println!("{p}");
    p.terminate()?;
    p.join()?;
    println!("{p}");
    Ok(())
}

/// Writes `text` to stdout with one `write(2)`: safe in a signal handler.
fn write_raw(text: &[u8]) {
    // SAFETY: write(2) reads `text.len()` bytes from a live slice.
    unsafe { libc::write(1, text.as_ptr().cast(), text.len()) };
}

extern "C" fn on_sigterm(_: libc::c_int) {
    write_raw(b"daemon: SIGTERM from the exit hook\n");
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) };
}

/// A daemonic child that catches SIGTERM; the parent returns from `main` while it runs.
/// Only the exit hook sends SIGTERM (without it, the kernel's SIGKILL for a dead
/// parent would end the daemon silently).
fn daemon_sigterm() -> Result<(), ProcessError> {
    let ready = common::shm::SharedValue::new(0u8).expect("shared memory");
    let childs = ready.clone();
    let mut p = Process::new(move || {
        // SAFETY: `on_sigterm` only calls async-signal-safe functions.
        unsafe { libc::signal(libc::SIGTERM, on_sigterm as *const () as libc::sighandler_t) };
        childs.set(1);
        sleep(Duration::from_secs(60));
    })
    .daemon(true);
    p.start()?;
    let started = Instant::now();
    while ready.get() == 0 && started.elapsed() < Duration::from_secs(10) {
        sleep(Duration::from_millis(1));
    }
    println!("parent leaving");
    Ok(())
}

/// A non-daemonic child that outlives `main` and prints its parent's pid at its end:
/// the exit hook must keep the parent alive (joining it) until then.
fn child_sees_parent() -> Result<(), ProcessError> {
    let mut p = Process::new(|| {
        sleep(Duration::from_millis(300));
        println!("child: parent is {}", std::os::unix::process::parent_id());
    });
    p.start()?;
    println!("parent is {}", std::process::id());
    Ok(())
}

extern "C" fn parent_atexit() {
    write_raw(format!("atexit handler ran in {}\n", std::process::id()).as_bytes());
}

/// The parent registers an exit handler; a child leaves with `std::process::exit(3)`:
/// the parent's handler must run in the parent only, and the code must be 3.
fn child_exit() -> Result<(), ProcessError> {
    // SAFETY: `parent_atexit` is an `extern "C" fn()` that never unwinds.
    unsafe { libc::atexit(parent_atexit) };
    let mut p = Process::new(|| -> () { std::process::exit(3) });
    p.start()?;
    println!("child exit code {}", p.join()?);
    println!("parent is {}", std::process::id());
    Ok(())
}

/// Starts and joins one child, printing the error if `start` refuses.
fn start() -> Result<(), ProcessError> {
    let mut p = Process::new(|| ());
    match p.start() {
        Ok(()) => println!("started, exit code {}", p.join()?),
        Err(error) => println!("{error}"),
    }
    Ok(())
}

/// With a pipe end open, `start` needs one more pipe (to hand the ends over): with no
/// descriptor left it fails, and must leave the process startable.
fn start_after_a_failed_handover() -> Result<(), ProcessError> {
    let (_a, _b) = common::connection::pipe().expect("a pipe");
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit read and write the struct given, which lives on the stack.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let saved = limit;
    // Every descriptor below the highest one open is taken: no room for a pipe.
    let highest = (3..1024)
        // SAFETY: fcntl(F_GETFD) only asks whether a descriptor is open.
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
        .max()
        .unwrap_or(2);
    let mut fillers = Vec::new();
    loop {
        // SAFETY: dup of an open descriptor (stdin), closed below.
        let fd = unsafe { libc::dup(0) };
        if fd < 0 || fd > highest {
            if fd >= 0 {
                // SAFETY: closing the descriptor just made.
                unsafe { libc::close(fd) };
            }
            break;
        }
        fillers.push(fd);
    }
    limit.rlim_cur = (highest + 1) as libc::rlim_t;
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    let mut p = Process::new(|| ());
    match p.start() {
        Ok(()) => println!("first start: started"),
        Err(error) => println!("first start: {error}"),
    }
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &saved) };
    for fd in fillers {
        // SAFETY: closing the descriptors made above.
        unsafe { libc::close(fd) };
    }
    match p.start() {
        Ok(()) => println!("second start: started, exit code {}", p.join()?),
        Err(error) => println!("second start: {error}"),
    }
    Ok(())
}
