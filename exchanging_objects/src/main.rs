//! Mirrors `python/exchanging_objects.py`: producer processes put numbered items on a
//! `Queue`, consumer processes take them until each gets a `None`, and then two
//! `Pipe`s carry numbers to a squarer process and the squares back, until the end of
//! file.
//!
//! What to notice, and what to try: `--help` prints it (the doc of `Args` below).

use std::thread::sleep;
use std::time::Duration;

use clap::Parser;
use common::connection::{Connection, ConnectionError, pipe_one_way};
use common::queue::Queue;
use common::shm::{SharedArray, SharedValue};
use common::sync::Event;
use common::{Process, current_process};

/// Producers and consumers exchanging items through a Queue, and a Pipe both ways.
///
/// What to notice: every item is taken exactly once, by one consumer or another, in
/// an order that changes from run to run; the consumers stop when each takes a `None`
/// that the parent puts once the producers are done (the queue's `empty()` is no way
/// to know that the producers are done: it is empty between two of their puts too).
/// Through the pipes, the squarer answers each number, and ends when the parent closes
/// its end: it reads "end of file". Try `--producers 3 --consumers 2 --items 4`.
/// `--kill-consumer-at 3` kills, with SIGKILL, the consumer that took item 3 while it
/// waits in `get()` for the next: here the others go on and take every other item.
/// Python's queue holds a lock while a consumer waits in `get()`; when the killed
/// consumer is the one holding it, every other consumer waits forever (its Python
/// twin gives up after 5 s and says so).
///
/// `--timeline` draws each producer's and consumer's life on one time axis.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// How many producer processes put items on the queue.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
    producers: u64,
    /// How many consumer processes take items from it.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=16))]
    consumers: u64,
    /// How many items each producer puts.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    items: u64,
    /// Kill (SIGKILL) the consumer that takes item I, while it waits for its next item.
    #[arg(long, value_name = "I", value_parser = clap::value_parser!(u64).range(0..160_000))]
    kill_consumer_at: Option<u64>,
    #[command(flatten)]
    show: demo_kit::timeline::Options,
}

/// The longest the parent waits for the consumer that takes the item to be killed.
const PATIENCE: Duration = Duration::from_secs(10);

/// What a `--kill-consumer-at` run shares: the item, who took it, and the events
/// around the kill.
#[derive(Clone)]
struct Kill {
    item: u64,
    /// The index of the consumer that took the item.
    taker: SharedValue<u64>,
    /// Set by the consumer that took the item.
    taken: Event,
    /// Set by the parent once that consumer is dead: producers put later items then.
    done: Event,
}

/// A producer puts items `first..first + items` (those after the item to kill at wait
/// until that consumer is dead, so that it waits in `get()` when it dies).
fn producer(
    queue: &Queue<Option<u64>>,
    first: u64,
    items: u64,
    kill: Option<&Kill>,
) -> anyhow::Result<()> {
    let name = current_process().name().to_owned();
    for item in first..first + items {
        if let Some(kill) = kill.filter(|kill| item > kill.item) {
            kill.done.wait_timeout(PATIENCE);
        }
        queue.put(Some(item))?;
        println!("{name} : item {item} appended to the queue");
    }
    Ok(())
}

/// Takes items until a `None`; counts them in `taken[slot]`.
fn consumer(
    queue: &Queue<Option<u64>>,
    taken: &SharedArray<u64>,
    slot: usize,
    kill: Option<&Kill>,
) -> anyhow::Result<()> {
    let name = current_process().name().to_owned();
    while let Some(item) = queue.get()? {
        println!("{name} : item {item} popped from the queue");
        taken.set(slot, taken.get(slot).unwrap_or(0) + 1)?;
        if let Some(kill) = kill.filter(|kill| kill.item == item) {
            kill.taker.set(slot as u64);
            kill.taken.set();
        }
    }
    Ok(())
}

/// Squares every number it receives and sends it back, until the end of file.
fn squarer(mut numbers: Connection, mut squares: Connection) -> anyhow::Result<()> {
    loop {
        match numbers.recv::<u64>() {
            Ok(n) => squares.send(&(n * n))?,
            Err(ConnectionError::Eof) => return Ok(()),
            Err(other) => return Err(other.into()),
        }
    }
}

fn main() -> Result<(), demo_kit::cli::Report> {
    let args: Args = demo_kit::cli::parse();
    demo_kit::timeline::begin(&args.show);
    let total = args.producers * args.items;
    if let Some(at) = args.kill_consumer_at.filter(|&at| at >= total) {
        demo_kit::cli::usage_error(&format!(
            "--kill-consumer-at {at} names no item: the items are 0..{total}"
        ));
    }

    let queue = Queue::<Option<u64>>::new()?;
    let taken = SharedArray::<u64>::new(args.consumers as usize)?;
    let kill = match args.kill_consumer_at {
        Some(item) => Some(Kill {
            item,
            taker: SharedValue::new(0)?,
            taken: Event::new()?,
            done: Event::new()?,
        }),
        None => None,
    };

    let mut producers = Vec::new();
    for p in 0..args.producers {
        let (queue, kill) = (queue.clone(), kill.clone());
        let first = p * args.items;
        let target = move || producer(&queue, first, args.items, kill.as_ref());
        producers.push(Process::new(target).with_name(format!("Producer-{}", p + 1)));
    }
    let mut consumers = Vec::new();
    for c in 0..args.consumers as usize {
        let (queue, taken, kill) = (queue.clone(), taken.clone(), kill.clone());
        let target = move || consumer(&queue, &taken, c, kill.as_ref());
        // Daemonic: they serve while the parent lives, and end with it if it ends
        // before it has put their `None`s (a closed output, say).
        let process = Process::new(target).with_name(format!("Consumer-{}", c + 1));
        consumers.push(process.daemon(true));
    }
    for process in producers.iter_mut().chain(consumers.iter_mut()) {
        process.start()?;
    }

    if let Some(kill) = &kill {
        if !kill.taken.wait_timeout(PATIENCE) {
            return Err(
                anyhow::anyhow!("no consumer took item {} within {PATIENCE:?}", kill.item).into(),
            );
        }
        // It is back in get() by now, waiting: no later item is put until it dies.
        sleep(Duration::from_millis(100));
        let victim = kill.taker.get() as usize;
        consumers[victim].kill()?;
        consumers[victim].join()?;
        println!(
            "{} was killed with SIGKILL while it waited in get()",
            consumers[victim].name()
        );
        kill.done.set();
    }

    for process in &producers {
        demo_kit::cli::join(process)?;
    }
    for _ in &consumers {
        queue.put(None)?;
    }
    for process in &consumers {
        if process.exitcode() != Some(-9) {
            demo_kit::cli::join(process)?;
        }
    }
    let counts: Vec<String> = consumers
        .iter()
        .enumerate()
        .map(|(c, process)| format!("{}: {}", process.name(), taken.get(c).unwrap_or(0)))
        .collect();
    let all_taken: u64 = taken.to_vec().iter().sum();
    println!(
        "Queue: {total} items put, {all_taken} taken ({})",
        counts.join(", ")
    );

    let (numbers_in, mut numbers_out) = pipe_one_way()?;
    let (mut squares_in, squares_out) = pipe_one_way()?;
    let mut squarer = Process::new(move || squarer(numbers_in, squares_out)).with_name("Squarer");
    squarer.start()?;
    let mut squares = Vec::new();
    for n in 0..total.min(10) {
        numbers_out.send(&n)?;
        squares.push(squares_in.recv::<u64>()?);
    }
    numbers_out.close();
    let end = match squares_in.recv::<u64>() {
        Err(ConnectionError::Eof) => "end of file".to_string(),
        other => format!("{other:?}"),
    };
    demo_kit::cli::join(&squarer)?;
    println!(
        "Pipe: sent 0..{} to the Squarer, received {squares:?}, then {end}",
        total.min(10)
    );
    Ok(())
}
