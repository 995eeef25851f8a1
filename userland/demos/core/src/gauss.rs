//! The `gauss` demo: Gaussian elimination with the thesis's missing join.
//!
//! The system is an `n × (n + 1)` augmented matrix, row-major. Step `k`
//! (for `k` in `0..n-1`) starts one worker per row `i > k`, each doing
//! [`eliminate`] (row `i` -= `f` · row `k`), then joins them — all but the
//! last one unless the run is `--fixed` ([`joined_rows`]). A pthread run
//! races the forgotten worker against the next step's workers and against
//! the final read, so its result varies from run to run; a deterministic
//! run never sees the forgotten worker's writes, so row `n - 1` keeps its
//! original value: always the same wrong answer.

use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::prng::Rng;

/// Matrix cells a worker can read and write through a shared reference:
/// plain cells in a private (deterministic) copy, atomics in the pthread
/// version, where the forgotten worker really races the others.
pub trait Cells {
    fn get(&self, i: usize) -> f64;
    fn set(&self, i: usize, v: f64);
}

impl Cells for [Cell<f64>] {
    fn get(&self, i: usize) -> f64 {
        self[i].get()
    }
    fn set(&self, i: usize, v: f64) {
        self[i].set(v)
    }
}

/// Relaxed atomics: every access is defined behaviour in Rust, and the
/// order in which threads see each other's writes is still up to timing.
impl Cells for [AtomicU64] {
    fn get(&self, i: usize) -> f64 {
        f64::from_bits(self[i].load(Ordering::Relaxed))
    }
    fn set(&self, i: usize, v: f64) {
        self[i].store(v.to_bits(), Ordering::Relaxed)
    }
}

/// Elements of the augmented matrix.
pub fn cells(n: usize) -> usize {
    n * (n + 1)
}

/// A diagonally dominant system (no pivoting needed).
pub fn fill(rng: &mut Rng, n: usize, set: &mut dyn FnMut(usize, f64)) {
    let w = n + 1;
    for i in 0..n {
        for j in 0..w {
            let mut v = rng.unit();
            if i == j {
                v += n as f64;
            }
            set(i * w + j, v);
        }
    }
}

/// The worker of row `i` at step `k`: row `i` -= (a[i][k] / a[k][k]) · row `k`.
pub fn eliminate<C: Cells + ?Sized>(a: &C, n: usize, k: usize, i: usize) {
    let w = n + 1;
    let f = a.get(i * w + k) / a.get(k * w + k);
    for j in k..w {
        a.set(i * w + j, a.get(i * w + j) - f * a.get(k * w + j));
    }
}

/// The rows whose workers step `k` joins: `k+1 .. n-1` with the bug (the
/// thesis's `i < nrows`), `k+1 .. n` when fixed.
pub fn joined_rows(n: usize, k: usize, fixed: bool) -> core::ops::Range<usize> {
    if fixed {
        k + 1..n
    } else {
        k + 1..n - 1
    }
}

/// The correct elimination, sequentially: the reference result.
pub fn sequential<C: Cells + ?Sized>(a: &C, n: usize) {
    for k in 0..n.saturating_sub(1) {
        for i in k + 1..n {
            eliminate(a, n, k, i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn elimination_makes_the_matrix_upper_triangular() {
        let n = 8;
        let mut m = std::vec![0.0; cells(n)];
        fill(&mut Rng::new(4), n, &mut |i, v| m[i] = v);
        let c = Cell::from_mut(&mut m[..]).as_slice_of_cells();
        sequential(c, n);
        for i in 0..n {
            for j in 0..i {
                assert!(c[i * (n + 1) + j].get().abs() < 1e-12, "({i},{j})");
            }
        }
    }

    #[test]
    fn atomics_and_cells_compute_the_same_bits() {
        let n = 6;
        let mut m = std::vec![0.0; cells(n)];
        fill(&mut Rng::new(9), n, &mut |i, v| m[i] = v);
        let atoms: Vec<AtomicU64> = m.iter().map(|v| AtomicU64::new(v.to_bits())).collect();
        sequential(&atoms[..], n);
        let c = Cell::from_mut(&mut m[..]).as_slice_of_cells();
        sequential(c, n);
        for (a, c) in atoms.iter().zip(c) {
            assert_eq!(a.load(Ordering::Relaxed), c.get().to_bits());
        }
    }

    #[test]
    fn the_bug_skips_exactly_the_last_row() {
        assert_eq!(joined_rows(5, 0, false), 1..4);
        assert_eq!(joined_rows(5, 0, true), 1..5);
        assert!(joined_rows(5, 3, false).is_empty());
    }
}
