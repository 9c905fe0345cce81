//! The library's test files that can share one process, as one test binary: one link and one
//! load of the dependencies instead of twenty (the clean test build went from 144–151 s to
//! 133–134 s, `BENCHMARKS.md`). Files that need a process of their own stay beside this folder: the memory
//! tests (process-wide byte counters), `threads_2`/`threads_16` (the global pool's size),
//! `bad_inputs` (re-runs itself by test name), `reliability` (large tensors on many threads),
//! `gradcheck` and `cuda` (run alone on GPU machines), `mpi` and `ndarray_interop` (features).

#[path = "../common/mod.rs"]
mod common;

mod check_numerics;
mod csv_files;
mod custom_gradient;
mod distributed;
mod first_contact;
mod forward_mode;
mod func;
mod function;
mod fusion;
mod jacobian;
mod keras_parity;
mod layers_parity;
#[cfg(feature = "linalg")]
mod linalg;
mod no_panic;
mod recurrent;
mod seed_parity;
mod summary;
mod tape;
mod tf_parity;
mod tf_spelling;
mod training;
mod views;
mod vmap;
mod why_none;
