//! The architecture-specific part of libdeterm (see `x86_64.rs`).

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;

#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "libdeterm runs only on x86_64: detlinux's dput, dget and dret are x86_64 system calls"
);
