//! Mirrors `python/naming_processes.py`: two processes, one named
//! `do_something process 1` and one left with its default name, `Process-2`. Each
//! asks `current_process()` for its name, fills a list with `do_something(count)`
//! random numbers and prints the list's length; the parent joins both and prints the
//! total time.
//!
//! What to notice, and what to try: `--help` prints it (the doc of `Args` below).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use clap::Parser;
use common::shm::SharedArray;
use common::workload::do_something;
use common::{Process, current_process};

/// Two processes, one named and one with the default name, each filling a list.
///
/// What to notice: each child appends to its own copy of `out_list`, so the parent's
/// stays empty, while what a child writes into a shared array (Python's
/// `multiprocessing.Array`) the parent sees. Try `--count 20000000` and watch
/// `ps -o pid,comm` (or `top`) while it runs: the OS shows each child under its process
/// name, cut to 15 bytes (`do_something pr`).
///
/// `--timeline` draws both children on one time axis: their bars overlap, they ran at
/// the same time.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// How many random numbers each process appends to its list.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=20_000_000))]
    count: u64,
    #[command(flatten)]
    show: demo_kit::timeline::Options,
}

fn my_func(
    count: usize,
    out_list: &RefCell<Vec<f64>>,
    shared: &SharedArray<f64>,
) -> anyhow::Result<()> {
    let name = current_process().name().to_owned();
    println!("Starting process name = {name}");
    out_list.borrow_mut().extend(do_something(count));
    shared.copy_from(0, &out_list.borrow())?;
    println!(
        "Exiting process name = {name}, list length = {}",
        out_list.borrow().len()
    );
    Ok(())
}

/// How many values a child wrote into `shared` (it starts as zeros, and a random
/// value is never exactly zero in practice).
fn written(shared: &SharedArray<f64>) -> usize {
    shared
        .to_vec()
        .iter()
        .filter(|value| **value != 0.0)
        .count()
}

fn main() -> Result<(), demo_kit::cli::Report> {
    let args: Args = demo_kit::cli::parse();
    demo_kit::timeline::begin(&args.show);
    let count = args.count as usize;
    let start_time = Instant::now();
    let out_list: Rc<RefCell<Vec<f64>>> = Rc::default();
    let shared_1 = SharedArray::<f64>::new(count)?;
    let shared_2 = SharedArray::<f64>::new(count)?;

    let (list, shared) = (Rc::clone(&out_list), shared_1.clone());
    let mut process_with_name =
        Process::new(move || my_func(count, &list, &shared)).with_name("do_something process 1");
    let (list, shared) = (Rc::clone(&out_list), shared_2.clone());
    let mut process_with_default_name = Process::new(move || my_func(count, &list, &shared));

    process_with_name.start()?;
    process_with_default_name.start()?;

    process_with_name.join()?;
    process_with_default_name.join()?;

    println!(
        "In the parent: out_list has {} values, the shared arrays hold {} and {}",
        out_list.borrow().len(),
        written(&shared_1),
        written(&shared_2)
    );
    println!("Total time: {:.3} s", start_time.elapsed().as_secs_f64());
    Ok(())
}
