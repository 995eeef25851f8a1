//! `libdeterm.a`: the runtime of `libdeterm` (`_start`, `mem*`, `malloc`,
//! the `det_*` functions of `determ.h`) as one static library for C
//! programs. The builder builds it with `--cfg determ_rt` and
//! `panic=abort`; the C program provides `main`.
//!
//! Without `determ_rt` (a host `cargo build`), this is an empty library
//! linked against std, so the workspace builds anywhere.

#![cfg_attr(determ_rt, no_std)]

// Link the whole runtime in; its `#[no_mangle]` functions are the C API.
pub use determ;
