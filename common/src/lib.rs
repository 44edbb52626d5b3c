//! `common`: Python's `multiprocessing`, ported to Rust over `fork()`, for the six demos
//! of this workspace.
//!
//! Every demo of the workspace stands on this crate, so each demo's `main.rs` can read
//! like its Python script while the subtle code lives here, once.
//!
//! The map of Python's names to this crate's, and the design decisions with their
//! reasons, are in the repository's `ARCHITECTURE.md`. In short: [`Process`] with
//! Python's lifecycle; [`shm::SharedArray`], [`shm::SharedValue`] and
//! [`shm::LockedArray`] for `Array` and `Value`; [`sync::Lock`], [`sync::RLock`] and
//! [`sync::Barrier`]; [`sync::Event`], [`sync::Semaphore`], [`sync::BoundedSemaphore`]
//! and [`sync::Condition`]; [`queue::Queue`] and [`queue::JoinableQueue`];
//! [`connection::pipe`] and its [`connection::Connection`]s; and [`Pool`].
//!
//! Forking is only sound in a single-threaded process, so [`process::Process::start`]
//! refuses with an error when other threads run.
//!
//! ```
//! use common::{Pool, Process, SharedArray};
//!
//! let results = SharedArray::<i64>::new(2)?;
//! let childs = results.clone();
//! let mut p = Process::new(move || childs.set(0, 7)).with_name("writer");
//! p.start()?;
//! p.join_timeout(std::time::Duration::from_secs(20))?;
//! let pool = Pool::new(2)?;
//! results.set(1, pool.apply(common::workload::square, 5)?)?;
//! assert_eq!(results.to_vec(), [7, 25]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_debug_implementations)]

pub mod connection;
pub mod pool;
pub mod process;
pub mod queue;
pub mod shm;
pub mod sync;
mod sys;
pub mod timeline;
pub mod workload;

pub use pool::{Pool, PoolError};
pub use process::{Process, ProcessError, current_process};
pub use queue::{JoinableQueue, Queue, QueueError};
pub use shm::{SharedArray, SharedValue};
pub use sync::{
    Barrier, BarrierError, BoundedSemaphore, Condition, Event, Lock, LockError, RLock, Semaphore,
};
