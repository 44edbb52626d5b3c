//! `common`: Python's `multiprocessing`, ported to Rust over `fork()`, for the six demos
//! of this workspace.
//!
//! Every demo of the workspace stands on this crate, so each demo's `main.rs` can read
//! like its Python script while the subtle code lives here, once.
//!
//! | Python | Rust |
//! | --- | --- |
//! | `multiprocessing.Process(name=, target=, daemon=)` | [`Process::new(target).with_name(..).daemon(..)`](process::Process) |
//! | `p.start()`, `p.join()`, `p.join(timeout)` | [`start()`](process::Process::start), [`join()`](process::Process::join), [`join_timeout(d)`](process::Process::join_timeout) |
//! | `p.terminate()`, `p.kill()` | [`terminate()`](process::Process::terminate), [`kill()`](process::Process::kill) |
//! | `p.is_alive()`, `p.exitcode`, `p.pid`, `repr(p)` | [`is_alive()`](process::Process::is_alive), [`exitcode()`](process::Process::exitcode), [`pid()`](process::Process::pid), `Display` |
//! | `p.name`, `p.daemon` | [`name()`](process::Process::name), [`is_daemon()`](process::Process::is_daemon) |
//! | `multiprocessing.current_process().name` | [`current_process().name()`](process::current_process) |
//! | `multiprocessing.active_children()` | [`active_children()`](process::active_children) |
//! | `multiprocessing.Value('d', 0)`, `multiprocessing.Array('d', n)` | [`SharedValue::new(0.0)?`](shm::SharedValue), [`SharedArray::<f64>::new(n)?`](shm::SharedArray) |
//! | `multiprocessing.Array('d', n, lock=True)` | [`LockedArray::<f64>::new(n)?`](shm::LockedArray) |
//! | `multiprocessing.Lock()`, `RLock()`, `with lock:` | [`Lock::new()?`](sync::Lock), [`RLock::new()?`](sync::RLock), `let _guard = lock.acquire()?;` |
//! | `multiprocessing.Barrier(n, action, timeout)`, `b.wait()` | [`Barrier::new(n)?.action(f).timeout(t)`](sync::Barrier), `b.wait()?` |
//! | `multiprocessing.Pool(4)`, `pool.map(f, xs)` | [`Pool::new(4)?`](pool::Pool), [`pool.map(f, xs)?`](pool::Pool::map) |
//! | `pool.imap`, `imap_unordered`, `apply_async`, `starmap` | [`imap`](pool::Pool::imap), [`imap_unordered`](pool::Pool::imap_unordered), [`apply_async`](pool::Pool::apply_async), [`starmap`](pool::Pool::starmap) |
//! | `do_something(count, out_list)` | [`do_something(count)`](workload::do_something) |
//!
//! Forking is only sound in a single-threaded process, so [`process::Process::start`]
//! refuses with an error when other threads run.

pub mod pool;
pub mod process;
pub mod shm;
pub mod sync;
mod sys;
pub mod workload;

pub use pool::{Pool, PoolError};
pub use process::{Process, ProcessError, current_process};
pub use shm::{SharedArray, SharedValue};
pub use sync::{Barrier, BarrierError, Lock, LockError, RLock};
