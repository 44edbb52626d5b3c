//! Mirrors `python/naming_processes.py`: two processes, one named
//! `do_something process 1` and one left with its default name, `Process-2`. Each
//! asks `current_process()` for its name, fills a list with `do_something(count)`
//! random numbers and prints the list's length; the parent joins both and prints the
//! total time.
//!
//! Try: `--count 20000000` and watch `ps -o pid,comm` (or `top`) while it runs: the OS
//! shows each child under its process name, cut to 15 bytes (`do_something pr`).

use std::time::Instant;

use clap::Parser;
use common::workload::do_something;
use common::{Process, current_process};

/// Two processes, one named and one with the default name, each filling a list.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// How many random numbers each process appends to its list.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    count: u64,
}

fn my_func(count: usize) {
    let name = current_process().name().to_owned();
    println!("Starting process name = {name}");
    let out_list = do_something(count);
    println!(
        "Exiting process name = {name}, list length = {}",
        out_list.len()
    );
}

fn main() -> anyhow::Result<()> {
    let args: Args = common::cli::parse();
    let count = args.count as usize;
    let start_time = Instant::now();

    let mut process_with_name = Process::new(move || my_func(count)).name("do_something process 1");
    let mut process_with_default_name = Process::new(move || my_func(count));

    process_with_name.start()?;
    process_with_default_name.start()?;

    process_with_name.join()?;
    process_with_default_name.join()?;

    println!("Total time: {:.3} s", start_time.elapsed().as_secs_f64());
    Ok(())
}
