//! `demo_kit`: what the demos and `compare` share that is not part of the port: option
//! parsing with one-line errors, the one-line error report of `main`, how a demo meets
//! a closed or full output, and the benchmark runners behind the `--bench` modes.
//!
//! The library `common` does not know this crate exists; its dependencies are what the
//! port needs.

pub mod bench;
pub mod cli;
pub mod timeline;
