//! Mirrors `python/background_processes.py`: a daemonic process
//! (`background_process`) and a non-daemonic one (`NO_background_process`) run the same
//! function, and `main` returns without joining either.
//!
//! What to notice, and what to try: `--help` prints it (the doc of `Args` below).

use std::thread::sleep;
use std::time::Duration;

use clap::Parser;
use common::{Process, current_process};

/// A daemonic and a non-daemonic process, left running when main returns.
///
/// What to notice: at exit the parent terminates the daemonic child, which never prints
/// `Exiting background_process`, and waits for the other, which does. Whether the
/// daemon prints anything before it is cut off is a race with the exit (about half the
/// runs on a 2-core machine, all its numbers or none); `--wait-ms 500` gives it the
/// time, every run. `--no-daemons` lets both finish. Here a daemonic child also dies
/// when the parent is killed (`kill -9`), which Python does not promise.
///
/// `--timeline` draws the daemon's life cut short by an `X` (SIGTERM) while the other
/// runs its full second.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Make background_process non-daemonic too, so that both are waited for at exit.
    #[arg(long)]
    no_daemons: bool,
    /// How long main sleeps before it returns, in milliseconds.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    wait_ms: u64,
    #[command(flatten)]
    show: demo_kit::timeline::Options,
}

fn foo() {
    let name = current_process().name().to_owned();
    println!("Starting {name}");
    let numbers = if name == "background_process" {
        0..5
    } else {
        5..10
    };
    for i in numbers {
        println!("---> {i}");
    }
    sleep(Duration::from_secs(1));
    println!("Exiting {name}");
}

fn main() -> Result<(), demo_kit::cli::Report> {
    let args: Args = demo_kit::cli::parse();
    demo_kit::timeline::begin(&args.show);

    let mut background_process = Process::new(foo)
        .with_name("background_process")
        .daemon(!args.no_daemons);
    let mut no_background_process = Process::new(foo)
        .with_name("NO_background_process")
        .daemon(false);

    background_process.start()?;
    no_background_process.start()?;

    sleep(Duration::from_millis(args.wait_ms));
    Ok(())
}
