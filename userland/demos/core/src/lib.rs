//! The shared core of detlinux's demos and benchmarks.
//!
//! Both versions of every demo (the pthread one on std, the deterministic
//! one on libdeterm) are built from this crate, so they generate the same
//! inputs from the same seed ([`prng`]), run the same sequential kernels
//! ([`md5`], [`sort`], [`matrix`], [`gauss`]) in the same order, and print
//! the same result line with the same checksum ([`report`]). The versions
//! differ only in how they fork and join.
//!
//! `#![no_std]` and no allocation: a deterministic program links no libc,
//! so everything here works on slices and raw pointers the caller owns.

#![no_std]

#[cfg(test)]
extern crate std;

pub mod args;
pub mod gauss;
pub mod matrix;
pub mod md5;
pub mod prng;
pub mod report;
pub mod sort;
