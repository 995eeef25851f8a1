//! `demo-det`: the deterministic versions of the demos, on libdeterm.
//!
//! Same command line, inputs, kernels and output line as `demo-pthread`
//! (all from `demos-core`); here every worker is a deterministic child
//! process forked with a snapshot of this one (`DET_SNAP`) and joined with
//! a merge of the bytes it changed (`DET_MERGE`). Run it with `detrun`:
//!
//! ```text
//! detrun /usr/bin/demo-det lu --size 256 --cpus 2
//! ```
//!
//! A deterministic process has no clock and cannot ask how many CPUs there
//! are: `--cpus` (default 1) only shapes the work like the pthread
//! version's N. The line ends with the join totals of the root process
//! (`joins`, `merges`, `scanned_pages`, `copied_pages`, `compared_pages`).

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt::Write as _;

use demos_core::args::{Demo, Params};
use demos_core::gauss;
use demos_core::matrix::{self, LU_GRID, MATMULT_GRID};
use demos_core::md5;
use demos_core::prng::{rep_seed, Rng};
use demos_core::report::{Fnv, Line};
use demos_core::sort;
use determ::{divide, fork, parallel_map, scope, Child, Error};

determ::main!(run);

fn run() -> i32 {
    let args: Vec<&str> = determ::args().skip(1).collect();
    let mut p = match Params::parse(args.iter().copied()) {
        Ok(p) => p,
        Err(e) => return fail(format_args!("{e}"), 2),
    };
    if p.cpus == 0 {
        p.cpus = 1;
    }
    let result = match p.demo {
        Demo::Md5 => md5_demo(&p),
        Demo::Qsort => qsort_demo(&p),
        Demo::Matmult => matmult_demo(&p),
        Demo::Lu => lu_demo(&p),
        Demo::Gauss => gauss_demo(&p),
    };
    match result {
        Ok(mut line) => {
            let s = determ::stats();
            line.field("joins", s.joins)
                .field("merges", s.merges)
                .field("scanned_pages", s.scanned_pages)
                .field("copied_pages", s.copied_pages)
                .field("compared_pages", s.compared_pages);
            determ::stdout_write(line.finish());
            0
        }
        Err(e) => fail(format_args!("{e}"), 1),
    }
}

fn fail(msg: core::fmt::Arguments<'_>, code: i32) -> i32 {
    let mut l = Line::default();
    let _ = write!(l, "demo-det: {msg}");
    determ::stderr_write(l.finish());
    code
}

/// A pointer a child closure carries (children get a copy of everything;
/// the pointer names the same address in the child's copy).
#[derive(Clone, Copy)]
struct Ptr(*mut f64);

fn md5_demo(p: &Params) -> Result<Line, Error> {
    let len = p.size as usize;
    let workers = u64::from(p.cpus) + 1;
    let total = md5::space(len);
    let mut h = Fnv::default();
    let mut ok = true;
    for rep in 0..p.reps {
        let mut target = [[0u8; 16]];
        md5::targets(&mut Rng::new(rep_seed(p.seed, rep)), len, &mut target);
        let target = target[0];
        let found = parallel_map(workers as usize, |w| {
            let (lo, hi) = md5::range(total, w as u64, workers);
            md5::search(&target, len, lo, hi)
        })?;
        match found.into_iter().flatten().min() {
            Some(index) => {
                let mut s = [0u8; md5::MAX_LEN];
                md5::candidate(index, &mut s[..len]);
                ok &= md5::digest(&s[..len]) == target;
                h.u64(index);
            }
            None => {
                ok = false;
                h.u64(u64::MAX);
            }
        }
    }
    Ok(Line::result(p, "det", h.finish(), ok))
}

/// Partition, sort the left part in a child and the right part here,
/// join (which merges the child's half); `depth` levels, then sequential.
fn parallel_sort(a: &mut [u64], depth: u32) -> Result<(), Error> {
    if depth == 0 || a.len() < 2 {
        sort::quicksort(a);
        return Ok(());
    }
    let m = sort::partition(a);
    let (lo, hi) = a.split_at_mut(m);
    // A failure in the child is a panic there: its join reports it.
    let ((), right) = divide(
        || {
            if let Err(e) = parallel_sort(lo, depth - 1) {
                panic!("{e}");
            }
        },
        || parallel_sort(hi, depth - 1),
    )?;
    right
}

fn qsort_demo(p: &Params) -> Result<Line, Error> {
    let mut a = vec![0u64; p.size as usize];
    let mut h = Fnv::default();
    let mut ok = true;
    for rep in 0..p.reps {
        sort::fill(&mut Rng::new(rep_seed(p.seed, rep)), &mut a);
        parallel_sort(&mut a, sort::fork_depth(p.cpus))?;
        ok &= sort::is_sorted(&a);
        h.u64s(&a);
    }
    Ok(Line::result(p, "det", h.finish(), ok))
}

fn samples(n: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..8).map(move |s| ((s * 7919 + 3) % n, (s * 104729 + 5) % n))
}

/// A child per block of C (64), all forked, then all joined.
fn matmult_demo(p: &Params) -> Result<Line, Error> {
    let n = p.size as usize;
    let bs = n / MATMULT_GRID;
    let (mut a, mut b, mut c) = (vec![0.0; n * n], vec![0.0; n * n], vec![0.0; n * n]);
    let mut h = Fnv::default();
    let mut ok = true;
    for rep in 0..p.reps {
        let mut rng = Rng::new(rep_seed(p.seed, rep));
        matrix::fill_small_ints(&mut rng, &mut a);
        matrix::fill_small_ints(&mut rng, &mut b);
        c.fill(0.0);
        let (pa, pb, pc) = (
            Ptr(a.as_mut_ptr()),
            Ptr(b.as_mut_ptr()),
            Ptr(c.as_mut_ptr()),
        );
        scope(|s| -> Result<(), Error> {
            for bi in 0..MATMULT_GRID {
                for bj in 0..MATMULT_GRID {
                    s.fork(move || {
                        let (pa, pb, pc) = (pa, pb, pc);
                        // SAFETY: the child's own copy of the matrices;
                        // it writes block (bi, bj) of c only.
                        unsafe { matrix::mul_block(pa.0, pb.0, pc.0, n, bs, bi, bj) };
                        0
                    })?;
                }
            }
            Ok(())
        })??;
        ok &= samples(n).all(|(i, j)| c[i * n + j] == matrix::product_entry(&a, &b, n, i, j));
        h.f64s(&c);
    }
    Ok(Line::result(p, "det", h.finish(), ok))
}

/// Per step: the diagonal block here, then a child per panel block
/// (joined), then a child per trailing block (joined).
fn lu_demo(p: &Params) -> Result<Line, Error> {
    let n = p.size as usize;
    let bs = n / LU_GRID;
    let mut a = vec![0.0; n * n];
    let mut h = Fnv::default();
    let mut ok = true;
    let mut workers = 0u64;
    for rep in 0..p.reps {
        matrix::fill_dominant(&mut Rng::new(rep_seed(p.seed, rep)), &mut a, n);
        let orig = a.clone();
        let pa = Ptr(a.as_mut_ptr());
        for k in 0..LU_GRID {
            let tasks: Vec<_> = matrix::lu_step(k, LU_GRID).collect();
            for phase in 0..3 {
                let mine = tasks
                    .iter()
                    .copied()
                    .filter(|t| matrix::lu_phase(*t) == phase);
                if phase == 0 {
                    for t in mine {
                        // SAFETY: no child runs between phases.
                        unsafe { matrix::lu_task(pa.0, n, bs, t) };
                    }
                    continue;
                }
                scope(|s| -> Result<(), Error> {
                    for t in mine {
                        workers += 1;
                        s.fork(move || {
                            let pa = pa;
                            // SAFETY: the child's own copy; it writes one
                            // block and reads blocks of earlier phases.
                            unsafe { matrix::lu_task(pa.0, n, bs, t) };
                            0
                        })?;
                    }
                    Ok(())
                })??;
            }
        }
        ok &= samples(n).all(|(i, j)| {
            (matrix::lu_product_entry(&a, n, i, j) - orig[i * n + j]).abs() <= 1e-9 * n as f64
        });
        h.f64s(&a);
    }
    let mut line = Line::result(p, "det", h.finish(), ok);
    line.field("workers", workers);
    Ok(line)
}

/// The `len` cells at `p`.
///
/// # Safety
///
/// `p` points at `len` live `f64`s that nothing else accesses meanwhile.
unsafe fn as_cells<'a>(p: Ptr, len: usize) -> &'a [Cell<f64>] {
    // SAFETY: forwarded to the caller; Cell<f64> has f64's layout.
    unsafe { core::slice::from_raw_parts(p.0 as *const Cell<f64>, len) }
}

/// The thesis's Figure 4b: a child per row and step, all but the last
/// joined (unless `--fixed`). The forgotten child's changes stay in its
/// private copy: row n - 1 never changes, every run the same.
fn gauss_demo(p: &Params) -> Result<Line, Error> {
    let n = p.size as usize;
    let mut h = Fnv::default();
    let mut ok = true;
    let mut wrong_rows = 0;
    for rep in 0..p.reps {
        let mut m = vec![0.0; gauss::cells(n)];
        gauss::fill(&mut Rng::new(rep_seed(p.seed, rep)), n, &mut |i, v| {
            m[i] = v
        });
        let mut reference = m.clone();
        let pm = Ptr(m.as_mut_ptr());
        let len = m.len();
        for k in 0..n - 1 {
            let mut children: Vec<Option<Child>> = (0..n).map(|_| None).collect();
            for (i, slot) in children.iter_mut().enumerate().skip(k + 1) {
                *slot = Some(fork(move || {
                    // SAFETY: the child's own copy of the matrix, which
                    // stays alive (the parent keeps it) for the child's life.
                    let cells = unsafe { as_cells(pm, len) };
                    gauss::eliminate(cells, n, k, i);
                    0
                })?);
            }
            for i in gauss::joined_rows(n, k, p.fixed) {
                if let Some(c) = children[i].take() {
                    c.join()?;
                }
            }
            // Bug (unless --fixed): the child of row n - 1 is never
            // joined; its changes are never merged.
            for c in children.into_iter().flatten() {
                core::mem::forget(c);
            }
        }
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
    let mut line = Line::result(p, "det", h.finish(), ok);
    line.field("wrong_rows", wrong_rows);
    Ok(line)
}
