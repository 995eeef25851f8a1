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

/// Prepares this process to create deterministic children.
pub fn prepare() -> Result<(), String> {
    rustix::thread::disable_transparent_huge_pages(true)
        .map_err(|e| format!("prctl(PR_SET_THP_DISABLE): {e}"))
}
