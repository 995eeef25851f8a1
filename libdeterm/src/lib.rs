//! libdeterm: the runtime for deterministic programs on detlinux.
//!
//! `#![no_std]`: a deterministic process links no libc. Host builds (the
//! unit tests) link std only under `cfg(test)`.

#![no_std]

#[cfg(test)]
extern crate std;

extern crate alloc;

pub mod fs;
