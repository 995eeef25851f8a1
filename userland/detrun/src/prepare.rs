//! What detrun changes in itself before it creates the root, which
//! inherits it: no transparent huge pages.
//!
//! (The rseq registration glibc made for detrun's thread is not inherited:
//! the kernel drops it for every child a `dput` creates.)
//!
//! **Transparent huge pages.** With THP on (`always`, the kernel default),
//! a child's first write to a fresh 2 MiB stretch of its heap or stack
//! faults in a whole zeroed huge page. The merge no longer copies its
//! untouched subpages (the kernel takes an all-zero page over
//! never-populated memory as unchanged), so this is about speed, not
//! correctness: measured in one boot of the TCG test guest, `forkjoin`
//! took 450–460 ms with THP and 140–190 ms without (16 pages copied by
//! the root's joins either way), `detsum` 350–370 ms against 110–160 ms.
//! `PR_SET_THP_DISABLE` is inherited by every process created from this
//! one.

use determ::sys;

const NR_PRCTL: u64 = 157;
const PR_SET_THP_DISABLE: u64 = 41;

/// Prepares this process to create deterministic children.
pub fn prepare() -> Result<(), String> {
    // SAFETY: prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) sets a flag of this
    // process's mm and touches no memory.
    let ret = unsafe { sys::syscall6(NR_PRCTL, [PR_SET_THP_DISABLE, 1, 0, 0, 0, 0]) };
    if ret < 0 {
        return Err(format!("prctl(PR_SET_THP_DISABLE): errno {}", -ret));
    }
    Ok(())
}
