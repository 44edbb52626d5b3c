//! A single-threaded program that records `common::timeline` events from real processes
//! for `tests/timeline.rs`, and prints them one a line, each process named by its role
//! instead of its pid: `ROLE EVENT`. Usage: `timeline_fixture SCENARIO`.

use std::collections::BTreeMap;
use std::thread::sleep;
use std::time::Duration;

use anyhow::{Result, bail};
use common::process::Process;
use common::sync::{Barrier, Lock};
use common::timeline::{self, What};
use common::{Pool, workload};

fn main() -> Result<()> {
    match std::env::args().nth(1).unwrap_or_default().as_str() {
        "life" => life(),
        "off" => off(),
        "full" => full(),
        other => bail!("unknown scenario {other:?}"),
    }
}

/// Two processes meet at a barrier and take a lock in turn; a third is terminated; a
/// pool of two maps 8 inputs in chunks of 2.
fn life() -> Result<()> {
    timeline::record()?;
    let barrier = Barrier::new(2)?;
    let lock = Lock::new()?;
    let mut roles = BTreeMap::from([(std::process::id(), "main".to_string())]);
    let mut meeting = Vec::new();
    for name in ["a", "b"] {
        let (barrier, lock) = (barrier.clone(), lock.clone());
        let mut p = Process::new(move || -> Result<()> {
            barrier.wait()?;
            let _guard = lock.acquire()?;
            Ok(())
        })
        .with_name(name);
        p.start()?;
        roles.insert(p.pid().expect("started"), name.to_string());
        meeting.push(p);
    }
    for p in &meeting {
        p.join()?;
    }
    let mut sleeper = Process::new(|| sleep(Duration::from_secs(30))).with_name("sleeper");
    sleeper.start()?;
    roles.insert(sleeper.pid().expect("started"), "sleeper".into());
    sleeper.terminate()?;
    sleeper.join()?;
    let pool = Pool::new(2)?;
    let squares = pool.map_chunked(workload::square, 0..8i64, 2)?;
    assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49]);
    pool.close();
    pool.join()?;
    print(&roles);
    Ok(())
}

/// Prints the recording, pids replaced by roles (a pool worker's is `worker`).
fn print(roles: &BTreeMap<u32, String>) {
    let role = |pid: u32| roles.get(&pid).cloned().unwrap_or_else(|| "worker".into());
    let recording = timeline::recorded();
    for event in &recording.events {
        let what = match &event.what {
            What::Started { child, .. } => format!("Started {}", role(*child)),
            What::Reaped { child, code } => format!("Reaped {} {code}", role(*child)),
            What::SignalSent { child, signal } => format!("SignalSent {} {signal}", role(*child)),
            other => format!("{other:?}"),
        };
        println!("{} {what}", role(event.pid));
    }
    println!("lost {}", recording.lost);
}

/// Without `record`, nothing is recorded, by the parent or by its children.
fn off() -> Result<()> {
    let lock = Lock::new()?;
    let childs = lock.clone();
    let mut p = Process::new(move || -> Result<()> {
        let _guard = childs.acquire()?;
        if timeline::is_recording() {
            bail!("the child records");
        }
        Ok(())
    });
    p.start()?;
    p.join()?;
    println!("recording {}", timeline::is_recording());
    println!("events {}", timeline::recorded().events.len());
    Ok(())
}

/// A child takes and releases a lock far more often than the log holds events, then
/// exits with 3: its end is still recorded.
fn full() -> Result<()> {
    timeline::record()?;
    let lock = Lock::new()?;
    let childs = lock.clone();
    let mut p = Process::new(move || -> Result<()> {
        for _ in 0..timeline::CAPACITY {
            drop(childs.acquire()?);
        }
        std::process::exit(3)
    });
    p.start()?;
    p.join()?;
    let pid = p.pid().expect("started");
    let recording = timeline::recorded();
    let has = |what: &What, by: u32| {
        recording
            .events
            .iter()
            .any(|e| e.pid == by && &e.what == what)
    };
    println!("exiting {}", has(&What::Exiting { code: 3 }, pid));
    println!(
        "reaped {}",
        has(
            &What::Reaped {
                child: pid,
                code: 3
            },
            std::process::id()
        )
    );
    println!("lost {}", recording.lost);
    Ok(())
}
