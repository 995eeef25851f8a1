//! What detrun changes in itself before it creates the root, which
//! inherits it: no rseq registration, no transparent huge pages.
//!
//! **rseq.**
//! glibc registers an `rseq` area in each thread's TLS, and a child made
//! by `dput` inherits the registration like a `fork`ed one. The root is
//! then wiped, so the area is gone, and the kernel, which writes the area
//! on every return to user space, would stop the root with SIGSEGV before
//! its first instruction. A master needs no rseq (it has one thread and
//! uses no rseq critical sections), so detrun unregisters it.
//!
//! **Transparent huge pages.** With THP on (`always`, the kernel default),
//! a child's first write to a fresh 2 MiB stretch of its heap or stack
//! faults in a whole huge page, and the join then finds 512 changed pages
//! and copies them all. `PR_SET_THP_DISABLE` is inherited by every process
//! created from this one; measured on `forkjoin` in the TCG test guest:
//! 7,681 pages copied by the root's joins with THP, 46 without, and the
//! run 3.4 times faster.

use std::arch::asm;

use determ::sys;

extern "C" {
    /// Offset of the rseq area from the thread pointer (glibc ≥ 2.35).
    static __rseq_offset: isize;
    /// Size glibc registered, 0 if rseq is not in use.
    static __rseq_size: u32;
}

const NR_RSEQ: u64 = 334;
const RSEQ_FLAG_UNREGISTER: u64 = 1;
/// The signature glibc registers with on x86.
const RSEQ_SIG: u64 = 0x5305_3053;
/// `sizeof(struct rseq)` as registered by glibc 2.35 and later.
const RSEQ_LEN: u64 = 32;

const NR_PRCTL: u64 = 157;
const PR_SET_THP_DISABLE: u64 = 41;

/// Prepares this process to create deterministic children.
pub fn prepare() -> Result<(), String> {
    unregister_rseq()?;
    // SAFETY: prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) sets a flag of this
    // process's mm and touches no memory.
    let ret = unsafe { sys::syscall6(NR_PRCTL, [PR_SET_THP_DISABLE, 1, 0, 0, 0, 0]) };
    if ret < 0 {
        return Err(format!("prctl(PR_SET_THP_DISABLE): errno {}", -ret));
    }
    Ok(())
}

/// Unregisters this thread's rseq area, if glibc registered one.
fn unregister_rseq() -> Result<(), String> {
    // SAFETY: glibc defines both symbols; reading them has no side effect.
    let (offset, size) = unsafe { (__rseq_offset, __rseq_size) };
    if size == 0 {
        return Ok(());
    }
    let tp: u64;
    // SAFETY: on x86_64 the thread pointer (fs base) points at the TCB,
    // whose first word is the thread pointer itself.
    unsafe { asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags)) };
    let area = (tp as i64 + offset as i64) as u64;
    // SAFETY: rseq(area, len, UNREGISTER, sig) only unregisters the area
    // the kernel already knows for this thread; it touches no other memory.
    let ret = unsafe {
        sys::syscall6(
            NR_RSEQ,
            [
                area,
                RSEQ_LEN.max(size as u64),
                RSEQ_FLAG_UNREGISTER,
                RSEQ_SIG,
                0,
                0,
            ],
        )
    };
    if ret < 0 && ret != -22 {
        return Err(format!("rseq: errno {}", -ret));
    }
    Ok(())
}
