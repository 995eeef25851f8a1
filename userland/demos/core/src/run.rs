//! The demos' repetition loops, shared by both versions.
//!
//! Each function draws every repetition's input from the seed, hands the
//! parallel part to the caller's closure (threads in one version, child
//! processes in the other), checks the result, hashes it and returns the
//! result line. So the inputs, the checks and the hash cannot drift apart
//! between the versions: only the closures differ.

use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;

use crate::args::Params;
use crate::gauss;
use crate::matrix::{self, LuTask, LU_GRID, MATMULT_GRID};
use crate::md5;
use crate::prng::{rep_seed, Rng};
use crate::report::{Fnv, Line};
use crate::sort;

/// Most workers alive at once in `matmult` and `lu`: they fork and join
/// their blocks in waves of this many. libdeterm gives every live child a
/// region of its parent's heap and halves what is left as children pile
/// up, so a few dozen live children exhaust it (the thesis's 64 or 225 at
/// once fail); both versions use the same waves so their shapes match.
pub const WAVE: usize = 16;

/// One repetition's input generator.
fn rng(p: &Params, rep: u64) -> Rng {
    Rng::new(rep_seed(p.seed, rep))
}

/// `md5`: one target per repetition. `search(target, len, workers)` runs
/// [`md5_worker`] for `0..workers` in parallel and returns the lowest
/// index found.
pub fn md5<E>(
    p: &Params,
    implementation: &str,
    mut search: impl FnMut(&[u8; 16], usize, u64) -> Result<Option<u64>, E>,
) -> Result<Line, E> {
    let len = p.size as usize;
    let workers = u64::from(p.cpus) + 1;
    let (mut h, mut ok) = (Fnv::default(), true);
    for rep in 0..p.reps {
        let mut target = [[0u8; 16]];
        md5::targets(&mut rng(p, rep), len, &mut target);
        let found = search(&target[0], len, workers)?;
        let mut s = [0u8; md5::MAX_LEN];
        if let Some(index) = found {
            md5::candidate(index, &mut s[..len]);
        }
        ok &= found.is_some() && md5::digest(&s[..len]) == target[0];
        h.u64(found.unwrap_or(u64::MAX));
    }
    Ok(Line::result(p, implementation, h.finish(), ok))
}

/// Worker `w` of `workers`: its slice of the candidates.
pub fn md5_worker(target: &[u8; 16], len: usize, w: u64, workers: u64) -> Option<u64> {
    let (lo, hi) = md5::range(md5::space(len), w, workers);
    md5::search(target, len, lo, hi)
}

/// `qsort`: `sort(array, depth)` sorts in place, forking `depth` levels.
pub fn qsort<E>(
    p: &Params,
    implementation: &str,
    mut sort: impl FnMut(&mut [u64], u32) -> Result<(), E>,
) -> Result<Line, E> {
    let mut a = vec![0u64; p.size as usize];
    let (mut h, mut ok) = (Fnv::default(), true);
    for rep in 0..p.reps {
        sort::fill(&mut rng(p, rep), &mut a);
        sort(&mut a, sort::fork_depth(p.cpus))?;
        ok &= sort::is_sorted(&a);
        h.u64s(&a);
    }
    Ok(Line::result(p, implementation, h.finish(), ok))
}

/// The matrices of one `matmult` repetition, for the caller's workers.
#[derive(Clone, Copy)]
pub struct Product {
    pub a: *const f64,
    pub b: *const f64,
    pub c: *mut f64,
    pub n: usize,
    pub bs: usize,
}

// SAFETY: plain pointers; `Product::block`'s contract is what makes a
// worker's use of them sound.
unsafe impl Send for Product {}
// SAFETY: as above.
unsafe impl Sync for Product {}

impl Product {
    /// Multiplies block `(bi, bj)` of C.
    ///
    /// # Safety
    ///
    /// The matrices are alive and not written meanwhile except block
    /// `(bi, bj)` of C, which no one else touches meanwhile.
    pub unsafe fn block(&self, bi: usize, bj: usize) {
        // SAFETY: forwarded to the caller.
        unsafe { matrix::mul_block(self.a, self.b, self.c, self.n, self.bs, bi, bj) }
    }
}

/// Entries of a result checked directly, spread over the matrix.
fn samples(n: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..8).map(move |s| ((s * 7919 + 3) % n, (s * 104729 + 5) % n))
}

/// The 8 × 8 blocks of `matmult`, row by row.
pub fn blocks() -> impl Iterator<Item = (usize, usize)> {
    (0..MATMULT_GRID).flat_map(|i| (0..MATMULT_GRID).map(move |j| (i, j)))
}

/// `matmult`: `multiply(product, blocks)` runs [`Product::block`] for each
/// of `blocks` in parallel and joins them; it is called for the 64 blocks
/// in waves of [`WAVE`] (C starts zeroed).
pub fn matmult<E>(
    p: &Params,
    implementation: &str,
    mut multiply: impl FnMut(Product, &[(usize, usize)]) -> Result<(), E>,
) -> Result<Line, E> {
    let all: Vec<(usize, usize)> = blocks().collect();
    let n = p.size as usize;
    let (mut a, mut b, mut c) = (vec![0.0; n * n], vec![0.0; n * n], vec![0.0; n * n]);
    let (mut h, mut ok) = (Fnv::default(), true);
    for rep in 0..p.reps {
        let mut r = rng(p, rep);
        matrix::fill_small_ints(&mut r, &mut a);
        matrix::fill_small_ints(&mut r, &mut b);
        c.fill(0.0);
        let product = Product {
            a: a.as_ptr(),
            b: b.as_ptr(),
            c: c.as_mut_ptr(),
            n,
            bs: n / MATMULT_GRID,
        };
        for wave in all.chunks(WAVE) {
            multiply(product, wave)?;
        }
        ok &= samples(n).all(|(i, j)| c[i * n + j] == matrix::product_entry(&a, &b, n, i, j));
        h.f64s(&c);
    }
    Ok(Line::result(p, implementation, h.finish(), ok))
}

/// The matrix of one `lu` repetition, for the caller's workers.
#[derive(Clone, Copy)]
pub struct Decomposition {
    pub a: *mut f64,
    pub n: usize,
    pub bs: usize,
}

// SAFETY: a plain pointer; `Decomposition::task`'s contract is what makes
// a worker's use of it sound.
unsafe impl Send for Decomposition {}
// SAFETY: as above.
unsafe impl Sync for Decomposition {}

impl Decomposition {
    /// Runs one task.
    ///
    /// # Safety
    ///
    /// As [`matrix::lu_task`]: nobody writes the blocks the task reads,
    /// nobody else touches the block it writes, meanwhile.
    pub unsafe fn task(&self, t: LuTask) {
        // SAFETY: forwarded to the caller.
        unsafe { matrix::lu_task(self.a, self.n, self.bs, t) }
    }
}

/// `lu`: per step the diagonal block here, then `phase(matrix, tasks)`
/// runs [`Decomposition::task`] for each task in parallel and joins them,
/// for the panel blocks and then for the trailing blocks, in waves of
/// [`WAVE`]. Adds `workers=`.
pub fn lu<E>(
    p: &Params,
    implementation: &str,
    mut phase: impl FnMut(Decomposition, &[LuTask]) -> Result<(), E>,
) -> Result<Line, E> {
    let n = p.size as usize;
    let mut a = vec![0.0; n * n];
    let (mut h, mut ok, mut workers) = (Fnv::default(), true, 0u64);
    for rep in 0..p.reps {
        matrix::fill_dominant(&mut rng(p, rep), &mut a, n);
        let orig = a.clone();
        let d = Decomposition {
            a: a.as_mut_ptr(),
            n,
            bs: n / LU_GRID,
        };
        for k in 0..LU_GRID {
            let tasks: Vec<LuTask> = matrix::lu_step(k, LU_GRID).collect();
            for ph in 0..3 {
                let mine: Vec<LuTask> = tasks
                    .iter()
                    .copied()
                    .filter(|t| matrix::lu_phase(*t) == ph)
                    .collect();
                if ph == 0 {
                    for t in mine {
                        // SAFETY: no worker runs between phases.
                        unsafe { d.task(t) };
                    }
                } else {
                    workers += mine.len() as u64;
                    for wave in mine.chunks(WAVE) {
                        phase(d, wave)?;
                    }
                }
            }
        }
        ok &= samples(n).all(|(i, j)| {
            (matrix::lu_product_entry(&a, n, i, j) - orig[i * n + j]).abs() <= 1e-9 * n as f64
        });
        h.f64s(&a);
    }
    let mut line = Line::result(p, implementation, h.finish(), ok);
    line.field("workers", workers);
    Ok(line)
}

/// `gauss`: `eliminate(matrix, n)` runs the parallel elimination (with
/// the missing join unless `p.fixed`) on the augmented matrix in place.
/// The result is compared with a sequential elimination; adds
/// `wrong_rows=` (rows differing in any bit).
pub fn gauss<E>(
    p: &Params,
    implementation: &str,
    mut eliminate: impl FnMut(&mut [f64], usize) -> Result<(), E>,
) -> Result<Line, E> {
    let n = p.size as usize;
    let (mut h, mut ok, mut wrong_rows) = (Fnv::default(), true, 0usize);
    for rep in 0..p.reps {
        let mut m = vec![0.0; gauss::cells(n)];
        gauss::fill(&mut rng(p, rep), n, &mut |i, v| m[i] = v);
        let mut reference = m.clone();
        eliminate(&mut m, n)?;
        gauss::sequential(Cell::from_mut(&mut reference[..]).as_slice_of_cells(), n);
        let wrong = m
            .chunks(n + 1)
            .zip(reference.chunks(n + 1))
            .filter(|(g, w)| g.iter().zip(*w).any(|(a, b)| a.to_bits() != b.to_bits()))
            .count();
        wrong_rows += wrong;
        ok &= wrong == 0;
        h.f64s(&m);
    }
    let mut line = Line::result(p, implementation, h.finish(), ok);
    line.field("wrong_rows", wrong_rows);
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::convert::Infallible;

    fn params(s: &str) -> Params {
        Params::parse(s.split_whitespace()).unwrap()
    }

    fn text(mut l: Line) -> std::string::String {
        std::string::String::from(core::str::from_utf8(l.finish()).unwrap())
    }

    #[test]
    fn sequential_closures_pass_every_check() {
        let p = params("md5 --size 2 --cpus 2 --reps 2");
        let l = md5(&p, "seq", |t, len, workers| {
            Ok::<_, Infallible>((0..workers).find_map(|w| md5_worker(t, len, w, workers)))
        });
        assert!(text(l.unwrap()).contains(" ok=yes"));
        let p = params("qsort --size 500 --cpus 2");
        let l = qsort(&p, "seq", |a, _| {
            sort::quicksort(a);
            Ok::<_, Infallible>(())
        });
        assert!(text(l.unwrap()).contains(" ok=yes"));
        let p = params("matmult --size 16");
        let mut calls = 0;
        let l = matmult(&p, "seq", |m, blocks| {
            calls += 1;
            for &(bi, bj) in blocks {
                // SAFETY: one block at a time.
                unsafe { m.block(bi, bj) };
            }
            Ok::<_, Infallible>(())
        });
        assert_eq!(calls, 64 / WAVE);
        assert!(text(l.unwrap()).contains(" ok=yes"));
        let p = params("lu --size 32");
        let l = lu(&p, "seq", |d, tasks| {
            for &t in tasks {
                // SAFETY: one task at a time.
                unsafe { d.task(t) };
            }
            Ok::<_, Infallible>(())
        });
        let l = text(l.unwrap());
        assert!(l.contains(" ok=yes") && l.contains(" workers=1480"), "{l}");
    }

    #[test]
    fn gauss_counts_the_rows_a_missing_join_left_wrong() {
        let p = params("gauss --size 6");
        let buggy = gauss(&p, "seq", |m, n| {
            let c = Cell::from_mut(m).as_slice_of_cells();
            for k in 0..n - 1 {
                for i in gauss::joined_rows(n, k, false) {
                    gauss::eliminate(c, n, k, i);
                }
            }
            Ok::<_, Infallible>(())
        });
        let buggy = text(buggy.unwrap());
        assert!(buggy.contains(" ok=no wrong_rows=1"), "{buggy}");
        let fixed = gauss(&p, "seq", |m, n| {
            gauss::sequential(Cell::from_mut(m).as_slice_of_cells(), n);
            Ok::<_, Infallible>(())
        });
        assert!(text(fixed.unwrap()).contains(" ok=yes wrong_rows=0"));
    }
}
