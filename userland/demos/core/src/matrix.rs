//! The matrix demos' kernels: blocked multiply (`matmult`, 8 × 8 = 64
//! blocks) and blocked LU decomposition (`lu`, 16 × 16 = 256 blocks).
//!
//! Matrices are `n × n` `f64`, row-major, so a block is `bs` pieces of
//! `bs` elements strided by `n`: the blocks of one row of blocks share
//! pages, which is what makes merging them interesting. Every kernel writes
//! one block and reads others; the callers guarantee (by joining between
//! phases) that nobody writes what a kernel reads, and that two kernels
//! running at once write different blocks. The kernels take raw pointers
//! because a pthread version runs them on one shared matrix; a
//! deterministic version passes pointers into its private copy.

use crate::prng::Rng;

/// Blocks per side of `matmult`'s grid: 8 × 8 = 64 blocks.
pub const MATMULT_GRID: usize = 8;
/// Blocks per side of `lu`'s grid: 16 × 16 = 256 blocks.
pub const LU_GRID: usize = 16;

/// `matmult`'s inputs: small integers, so every sum is exact whatever the
/// order and a sampled entry can be checked exactly.
pub fn fill_small_ints(rng: &mut Rng, m: &mut [f64]) {
    for x in m.iter_mut() {
        *x = rng.below(16) as f64 - 8.0;
    }
}

/// `lu`'s input: uniform in [-1, 1) plus `n` on the diagonal, so LU
/// without pivoting is stable.
pub fn fill_dominant(rng: &mut Rng, m: &mut [f64], n: usize) {
    for x in m.iter_mut() {
        *x = rng.unit();
    }
    for i in 0..n {
        m[i * n + i] += n as f64;
    }
}

/// `c[block (bi, bj)] += a[rows of bi] × b[columns of bj]`, for blocks of
/// `bs` with `bs` dividing `n`.
///
/// # Safety
///
/// `a`, `b` and `c` point at `n * n` elements each; while this runs nobody
/// writes `a`, `b`, or block `(bi, bj)` of `c`, and nobody else reads
/// that block.
pub unsafe fn mul_block(
    a: *const f64,
    b: *const f64,
    c: *mut f64,
    n: usize,
    bs: usize,
    bi: usize,
    bj: usize,
) {
    let cols = bj * bs..(bj + 1) * bs;
    for i in bi * bs..(bi + 1) * bs {
        // SAFETY: the ranges are inside the n × n matrices; the block
        // `(bi, bj)` of c is ours alone and a, b are not written (caller).
        let (crow, arow) = unsafe {
            (
                core::slice::from_raw_parts_mut(c.add(i * n + cols.start), bs),
                core::slice::from_raw_parts(a.add(i * n), n),
            )
        };
        for (k, &aik) in arow.iter().enumerate() {
            // SAFETY: as above; row k of b is read-only here.
            let brow = unsafe { core::slice::from_raw_parts(b.add(k * n + cols.start), bs) };
            for (cij, bkj) in crow.iter_mut().zip(brow) {
                *cij += aik * bkj;
            }
        }
    }
}

/// Entry `(i, j)` of `a × b`, computed directly: checks a sampled entry.
pub fn product_entry(a: &[f64], b: &[f64], n: usize, i: usize, j: usize) -> f64 {
    (0..n).map(|k| a[i * n + k] * b[k * n + j]).sum()
}

/// One of the `lu` steps the parallel versions fork per block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LuTask {
    /// Factor diagonal block `(k, k)` in place into unit-lower L and U.
    Diag { k: usize },
    /// Block `(k, j)`, `j > k`: `L_kk⁻¹ · A_kj` (a row of U).
    Row { k: usize, j: usize },
    /// Block `(i, k)`, `i > k`: `A_ik · U_kk⁻¹` (a column of L).
    Col { k: usize, i: usize },
    /// Block `(i, j)`, both `> k`: `A_ij -= A_ik · A_kj`.
    Update { k: usize, i: usize, j: usize },
}

/// Runs one `lu` task on the `n × n` matrix at `a` with `bs`-sized blocks.
///
/// # Safety
///
/// `a` points at `n * n` elements; while this runs nobody writes the
/// blocks the task reads (the diagonal block for `Row`/`Col`; blocks
/// `(i, k)` and `(k, j)` for `Update`), and nobody else touches the block
/// it writes.
pub unsafe fn lu_task(a: *mut f64, n: usize, bs: usize, task: LuTask) {
    // Element (r, c) of the matrix; every index used below is < n.
    let at = |r: usize, c: usize| r * n + c;
    // SAFETY: reads and writes stay inside the n × n matrix and touch only
    // the blocks the caller reserved for this task (see # Safety).
    unsafe {
        match task {
            LuTask::Diag { k } => {
                let o = k * bs;
                for p in o..o + bs {
                    let piv = *a.add(at(p, p));
                    for r in p + 1..o + bs {
                        let l = *a.add(at(r, p)) / piv;
                        *a.add(at(r, p)) = l;
                        for c in p + 1..o + bs {
                            *a.add(at(r, c)) -= l * *a.add(at(p, c));
                        }
                    }
                }
            }
            LuTask::Row { k, j } => {
                // Forward substitution with the unit-lower L of (k, k).
                let (o, cj) = (k * bs, j * bs);
                for r in o..o + bs {
                    for p in o..r {
                        let l = *a.add(at(r, p));
                        for c in cj..cj + bs {
                            *a.add(at(r, c)) -= l * *a.add(at(p, c));
                        }
                    }
                }
            }
            LuTask::Col { k, i } => {
                // Solve X · U_kk = A_ik, column by column.
                let (o, ri) = (k * bs, i * bs);
                for p in o..o + bs {
                    let piv = *a.add(at(p, p));
                    for r in ri..ri + bs {
                        let mut x = *a.add(at(r, p));
                        for q in o..p {
                            x -= *a.add(at(r, q)) * *a.add(at(q, p));
                        }
                        *a.add(at(r, p)) = x / piv;
                    }
                }
            }
            LuTask::Update { k, i, j } => {
                let (o, ri, cj) = (k * bs, i * bs, j * bs);
                for r in ri..ri + bs {
                    for p in o..o + bs {
                        let l = *a.add(at(r, p));
                        for c in cj..cj + bs {
                            *a.add(at(r, c)) -= l * *a.add(at(p, c));
                        }
                    }
                }
            }
        }
    }
}

/// Entry `(i, j)` of `L · U` where `lu` holds both factors (L unit-lower).
pub fn lu_product_entry(lu: &[f64], n: usize, i: usize, j: usize) -> f64 {
    let upto = i.min(j);
    let mut s = 0.0;
    for p in 0..=upto {
        let l = if p == i { 1.0 } else { lu[i * n + p] };
        s += l * lu[p * n + j];
    }
    s
}

/// The whole decomposition, one task after another (the reference order
/// the parallel versions keep within each block).
pub fn lu_sequential(a: &mut [f64], n: usize, grid: usize) {
    let bs = n / grid;
    let p = a.as_mut_ptr();
    for k in 0..grid {
        for task in lu_step(k, grid) {
            // SAFETY: one task at a time on our own n × n matrix.
            unsafe { lu_task(p, n, bs, task) };
        }
    }
}

/// The tasks of step `k` in order: the diagonal block, then (one phase)
/// every row and column block, then (one phase) every trailing update.
/// Tasks of one phase are independent.
pub fn lu_step(k: usize, grid: usize) -> impl Iterator<Item = LuTask> {
    let diag = core::iter::once(LuTask::Diag { k });
    let panel = (k + 1..grid).flat_map(move |x| [LuTask::Row { k, j: x }, LuTask::Col { k, i: x }]);
    let update =
        (k + 1..grid).flat_map(move |i| (k + 1..grid).map(move |j| LuTask::Update { k, i, j }));
    diag.chain(panel).chain(update)
}

/// Which phase of its step a task belongs to: 0 diagonal, 1 panel, 2 update.
pub fn lu_phase(task: LuTask) -> usize {
    match task {
        LuTask::Diag { .. } => 0,
        LuTask::Row { .. } | LuTask::Col { .. } => 1,
        LuTask::Update { .. } => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn blocked_multiply_matches_direct_products() {
        let n = 16;
        let mut rng = Rng::new(1);
        let (mut a, mut b) = (vec![0.0; n * n], vec![0.0; n * n]);
        fill_small_ints(&mut rng, &mut a);
        fill_small_ints(&mut rng, &mut b);
        let mut c = vec![0.0; n * n];
        let bs = n / MATMULT_GRID;
        for bi in 0..MATMULT_GRID {
            for bj in 0..MATMULT_GRID {
                // SAFETY: single-threaded, all three matrices n × n.
                unsafe { mul_block(a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), n, bs, bi, bj) };
            }
        }
        for i in 0..n {
            for j in 0..n {
                assert_eq!(c[i * n + j], product_entry(&a, &b, n, i, j));
            }
        }
    }

    #[test]
    fn blocked_lu_reproduces_the_matrix() {
        for (n, grid) in [(16, 16), (32, 16), (48, 4)] {
            let mut rng = Rng::new(2);
            let mut a = vec![0.0; n * n];
            fill_dominant(&mut rng, &mut a, n);
            let orig = a.clone();
            lu_sequential(&mut a, n, grid);
            for i in 0..n {
                for j in 0..n {
                    let got = lu_product_entry(&a, n, i, j);
                    let want = orig[i * n + j];
                    assert!(
                        (got - want).abs() < 1e-9 * n as f64,
                        "n={n} ({i},{j}) {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn lu_steps_are_phased() {
        let tasks: std::vec::Vec<LuTask> = lu_step(14, 16).collect();
        assert_eq!(tasks.len(), 1 + 2 + 1);
        assert!(tasks.windows(2).all(|w| lu_phase(w[0]) <= lu_phase(w[1])));
        assert_eq!(lu_step(0, 16).count(), 1 + 30 + 225);
    }
}
