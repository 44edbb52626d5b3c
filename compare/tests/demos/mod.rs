//! The demos that have a Python counterpart, for the tests (a binary's items cannot be
//! imported; `compare`'s own list is `DEMOS` in `src/main.rs`, and the test
//! `compare --all` checks that the two agree in number).

/// The demos, as `compare` knows them.
pub const DEMOS: [&str; 7] = [
    "naming_processes",
    "spawning_processes",
    "killing_processes",
    "background_processes",
    "processes_barrier",
    "process_pool",
    "exchanging_objects",
];
