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

use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt::Write as _;

use demos_core::args::{Demo, Params};
use demos_core::gauss;
use demos_core::matrix::LuTask;
use demos_core::report::Line;
use demos_core::run;
use demos_core::sort;
use determ::{divide_at, fork, parallel_map, scope, Child, Error};

determ::main!(run_demo);

fn run_demo() -> i32 {
    let args: Vec<&str> = determ::args().skip(1).collect();
    let mut p = match Params::parse(args.iter().copied()) {
        Ok(p) => p,
        Err(e) => return fail(format_args!("{e}"), 2),
    };
    if p.cpus == 0 {
        p.cpus = 1;
    }
    let fixed = p.fixed;
    let result = match p.demo {
        Demo::Md5 => run::md5(&p, "det", |target, len, workers| {
            let found = parallel_map(workers as usize, |w| {
                run::md5_worker(target, len, w as u64, workers)
            })?;
            Ok(found.into_iter().flatten().min())
        }),
        Demo::Qsort => run::qsort(&p, "det", parallel_sort),
        Demo::Matmult => run::matmult(&p, "det", matmult),
        Demo::Lu => run::lu(&p, "det", lu_phase),
        Demo::Gauss => run::gauss(&p, "det", |m, n| gauss_children(m, n, fixed)),
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

/// Partition, sort the left part in a child and the right part here,
/// join (which merges the child's half); `depth` levels, then sequential.
/// The child's snapshot leaves out the right part (`divide_at`), so this
/// process sorts it in its own pages, as a thread would.
fn parallel_sort(a: &mut [u64], depth: u32) -> Result<(), Error> {
    if depth == 0 || a.len() < 2 {
        sort::quicksort(a);
        return Ok(());
    }
    let m = sort::partition(a);
    // A failure in the child is a panic there: its join reports it.
    let ((), right) = divide_at(
        a,
        m,
        |lo| {
            if let Err(e) = parallel_sort(lo, depth - 1) {
                panic!("{e}");
            }
        },
        |hi| parallel_sort(hi, depth - 1),
    )?;
    right
}

/// A child per block of C given, all forked, then all joined.
fn matmult(m: run::Product, blocks: &[(usize, usize)]) -> Result<(), Error> {
    scope(|s| -> Result<(), Error> {
        for &(bi, bj) in blocks {
            s.fork(move || {
                // SAFETY: the child's own copy of the matrices; it writes
                // block (bi, bj) of C only.
                unsafe { m.block(bi, bj) };
                0
            })?;
        }
        Ok(())
    })?
}

/// A child per task of the phase, all forked, then all joined.
fn lu_phase(d: run::Decomposition, tasks: &[LuTask]) -> Result<(), Error> {
    scope(|s| -> Result<(), Error> {
        for &t in tasks {
            s.fork(move || {
                // SAFETY: the child's own copy; it writes one block and
                // reads blocks of earlier phases.
                unsafe { d.task(t) };
                0
            })?;
        }
        Ok(())
    })?
}

/// A pointer to the gauss matrix a child closure carries (the child's
/// copy is at the same address).
#[derive(Clone, Copy)]
struct Cells(*mut f64, usize);

impl Cells {
    /// # Safety
    ///
    /// The matrix is alive and nothing else accesses it meanwhile.
    unsafe fn get<'a>(self) -> &'a [Cell<f64>] {
        // SAFETY: forwarded to the caller; Cell<f64> has f64's layout.
        unsafe { core::slice::from_raw_parts(self.0 as *const Cell<f64>, self.1) }
    }
}

/// The thesis's Figure 4b: a child per row and step, all but the last
/// joined (unless `fixed`). The forgotten child's changes stay in its
/// private copy: row n - 1 never changes, every run the same.
fn gauss_children(m: &mut [f64], n: usize, fixed: bool) -> Result<(), Error> {
    let cells = Cells(m.as_mut_ptr(), m.len());
    for k in 0..n - 1 {
        let mut children: Vec<Option<Child>> = (0..n).map(|_| None).collect();
        for (i, slot) in children.iter_mut().enumerate().skip(k + 1) {
            *slot = Some(fork(move || {
                // SAFETY: the child's own copy of the matrix, alive for
                // the child's life (the parent keeps it); one thread.
                gauss::eliminate(unsafe { cells.get() }, n, k, i);
                0
            })?);
        }
        for i in gauss::joined_rows(n, k, fixed) {
            if let Some(c) = children[i].take() {
                c.join()?;
            }
        }
        // Bug (unless fixed): the child of row n - 1 is never joined; its
        // changes are never merged. It ends when this process does.
        children.into_iter().flatten().for_each(core::mem::forget);
    }
    Ok(())
}
