//! libdeterm: the runtime for deterministic programs on detlinux.
//!
//! `#![no_std]`: a deterministic process links no libc. The modules that
//! run anywhere ([`sys`], [`layout`], [`elf`], [`stack`], [`exec`], [`serve`],
//! [`heap`], [`fs`]) are what `detrun` (a legacy master, with std) uses too, and what
//! the host tests cover. The runtime proper ([`rt`]: `_start`, `mem*`, the
//! panic handler, the global allocator, the process API, I/O and the C API)
//! is compiled only for deterministic programs, which the builder builds
//! with `--cfg determ_rt` and `panic=abort` (see docs/libdeterm.md).

#![no_std]

#[cfg(test)]
extern crate std;

extern crate alloc;

pub mod arch;
pub mod elf;
pub mod exec;
pub mod fs;
pub mod heap;
pub mod layout;
pub mod serve;
pub mod stack;
pub mod sys;

#[cfg(determ_rt)]
pub mod rt;

#[cfg(determ_rt)]
pub use rt::io::{read_stdin, stderr_write, stdout_write};
#[cfg(determ_rt)]
pub use rt::process::{
    divide, divide_at, exec, fork, fork_id, parallel_for, parallel_map, scope, stats, symbol,
    Child, Error, JoinStats, Scope,
};
#[cfg(determ_rt)]
pub use rt::{args, env_var, exit, heap_stats, with_fs};
