//! Mirrors `python/killing_processes.py`: start a process, terminate it at once, and
//! print the process (Python's `repr`) and `is_alive()` at each step, then its exit code.
//!
//! What to notice, and what to try: `--help` prints it (the doc of `Args` below).

use std::thread::sleep;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use common::Process;
use common::process::Signal;

/// Terminates a process and shows its state and exit code at each step.
///
/// What to notice: right after `terminate()`, `is_alive()` may still be `true` (the
/// signal is on its way); after `join()` it is `false`, and the exit code is `-15`,
/// minus the number of the signal that ended the process, not `0`. Try
/// `--signal kill` (exit code -9), and `--delay-ms 2500` to let the target print a few
/// lines before the signal arrives. With `--signal int` the Rust child dies of SIGINT
/// (-2) while Python's raises `KeyboardInterrupt` and exits with 1.
///
/// `--timeline` draws the child's life ending in an `X` where the signal killed it.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The signal that stops the process: term is terminate(), kill is kill().
    #[arg(long, value_enum, default_value_t = Stop::Term)]
    signal: Stop,
    /// How long to let the process run before sending the signal, in milliseconds.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    delay_ms: u64,
    #[command(flatten)]
    show: demo_kit::timeline::Options,
}

/// How to stop the process.
#[derive(Clone, Copy, ValueEnum)]
enum Stop {
    /// SIGTERM, Python's `p.terminate()`: exit code -15.
    Term,
    /// SIGKILL, Python's `p.kill()`: exit code -9.
    Kill,
    /// SIGINT, what Ctrl-C sends: exit code -2.
    Int,
}

fn foo() {
    println!("Starting function");
    for i in 0..10 {
        println!("--> {i}");
        sleep(Duration::from_secs(1));
    }
    println!("Finished function");
}

/// A bool as Python prints it, so that both versions print the same lines.
fn py_bool(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

fn main() -> Result<(), demo_kit::cli::Report> {
    let args: Args = demo_kit::cli::parse();
    demo_kit::timeline::begin(&args.show);

    let mut p = Process::new(foo);
    println!("Process before execution: {p} {}", py_bool(p.is_alive()));
    p.start()?;
    println!("Process running: {p} {}", py_bool(p.is_alive()));
    sleep(Duration::from_millis(args.delay_ms));
    match args.signal {
        Stop::Term => p.terminate()?,
        Stop::Kill => p.kill()?,
        Stop::Int => p.signal(Signal::SIGINT)?,
    }
    println!("Process terminated: {p} {}", py_bool(p.is_alive()));
    let exitcode = p.join()?;
    println!("Process joined: {p} {}", py_bool(p.is_alive()));
    println!("Process exit code: {exitcode}");
    Ok(())
}
