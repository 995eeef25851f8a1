//! The shared core of detlinux's demos and benchmarks.
//!
//! Both versions of every demo (the pthread one on std, the deterministic
//! one on libdeterm) are built from this crate, so they generate the same
//! inputs from the same seed ([`prng`]), run the same sequential kernels
//! ([`md5`], [`sort`], [`matrix`], [`gauss`]) in the same order, and print
//! the same result line with the same checksum ([`report`]). The versions
//! differ only in how they fork and join.
//!
//! `#![no_std]`: a deterministic program links no libc. The kernels work
//! on slices and raw pointers the caller owns; only [`run`], the
//! repetition loops both versions share, allocates (through `alloc`,
//! which libdeterm's allocator serves in a deterministic program).

#![no_std]

#[cfg(test)]
extern crate std;

extern crate alloc;

pub mod args;
pub mod gauss;
pub mod matrix;
pub mod md5;
pub mod prng;
pub mod report;
pub mod run;
pub mod sort;
