//! `demo-pthread`: the pthread versions of the demos.
//!
//! Same command line, inputs, kernels and output line as the deterministic
//! versions (all from `demos-core`); here workers are threads sharing one
//! address space, created with `std::thread` (pthread_create) and joined
//! with pthread_join. Only `gauss` has a data race, on purpose: its last
//! worker of each step is never joined.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread;

use demos_core::args::{Demo, Params};
use demos_core::gauss;
use demos_core::matrix::{self, LuTask, LU_GRID, MATMULT_GRID};
use demos_core::md5;
use demos_core::prng::{rep_seed, Rng};
use demos_core::report::{Fnv, Line};
use demos_core::sort;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut p = match Params::parse(args.iter().map(String::as_str)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("demo-pthread: {e}");
            return ExitCode::from(2);
        }
    };
    if p.cpus == 0 {
        // The CPUs this process may run on (its affinity), like the N of
        // the thesis: the harness pins N CPUs before starting us.
        p.cpus = thread::available_parallelism().map_or(1, |n| n.get() as u32);
    }
    let mut line = match p.demo {
        Demo::Md5 => md5_demo(&p),
        Demo::Qsort => qsort_demo(&p),
        Demo::Matmult => matmult_demo(&p),
        Demo::Lu => lu_demo(&p),
        Demo::Gauss => gauss_demo(&p),
    };
    let mut out = std::io::stdout().lock();
    if out
        .write_all(line.finish())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// A raw matrix pointer handed to worker threads. The kernels' safety
/// contracts (one writer per block, phases separated by joins) are what
/// make sharing it sound.
#[derive(Clone, Copy)]
struct Shared(*mut f64);
// SAFETY: only a pointer; every access goes through a kernel whose
// contract the spawning code keeps (see `matmult_demo` and `lu_demo`).
unsafe impl Send for Shared {}

/// One target per repetition; N + 1 workers each search a slice of the
/// space and the lowest index found wins.
fn md5_demo(p: &Params) -> Line {
    let len = p.size as usize;
    let workers = u64::from(p.cpus) + 1;
    let total = md5::space(len);
    let mut h = Fnv::default();
    let mut ok = true;
    for rep in 0..p.reps {
        let mut target = [[0u8; 16]];
        md5::targets(&mut Rng::new(rep_seed(p.seed, rep)), len, &mut target);
        let target = target[0];
        let found = thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    s.spawn(move || {
                        let (lo, hi) = md5::range(total, w, workers);
                        md5::search(&target, len, lo, hi)
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().expect("md5 worker panicked"))
                .min()
        });
        match found {
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
    Line::result(p, "pthread", h.finish(), ok)
}

/// Partition, hand the left part to a new thread, sort the right part
/// here, join; `depth` levels down, then sort sequentially.
fn parallel_sort(a: &mut [u64], depth: u32) {
    if depth == 0 || a.len() < 2 {
        sort::quicksort(a);
        return;
    }
    let m = sort::partition(a);
    let (lo, hi) = a.split_at_mut(m);
    thread::scope(|s| {
        let left = s.spawn(move || parallel_sort(lo, depth - 1));
        parallel_sort(hi, depth - 1);
        left.join().expect("qsort worker panicked");
    });
}

fn qsort_demo(p: &Params) -> Line {
    let mut a = vec![0u64; p.size as usize];
    let mut h = Fnv::default();
    let mut ok = true;
    for rep in 0..p.reps {
        sort::fill(&mut Rng::new(rep_seed(p.seed, rep)), &mut a);
        parallel_sort(&mut a, sort::fork_depth(p.cpus));
        ok &= sort::is_sorted(&a);
        h.u64s(&a);
    }
    Line::result(p, "pthread", h.finish(), ok)
}

/// Entries of a result checked directly, spread over the matrix.
fn samples(n: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..8).map(move |s| ((s * 7919 + 3) % n, (s * 104729 + 5) % n))
}

/// One thread per block of C (64), all started, then all joined.
fn matmult_demo(p: &Params) -> Line {
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
            Shared(a.as_ptr() as *mut f64),
            Shared(b.as_ptr() as *mut f64),
            Shared(c.as_mut_ptr()),
        );
        thread::scope(|s| {
            for bi in 0..MATMULT_GRID {
                for bj in 0..MATMULT_GRID {
                    s.spawn(move || {
                        let (pa, pb, pc) = (pa, pb, pc);
                        // SAFETY: a and b are only read until the scope
                        // ends; each thread writes its own block (bi, bj).
                        unsafe { matrix::mul_block(pa.0, pb.0, pc.0, n, bs, bi, bj) }
                    });
                }
            }
        });
        ok &= samples(n).all(|(i, j)| c[i * n + j] == matrix::product_entry(&a, &b, n, i, j));
        h.f64s(&c);
    }
    Line::result(p, "pthread", h.finish(), ok)
}

/// Per step: the diagonal block here, then one thread per panel block
/// (joined), then one thread per trailing block (joined).
fn lu_demo(p: &Params) -> Line {
    let n = p.size as usize;
    let bs = n / LU_GRID;
    let mut a = vec![0.0; n * n];
    let mut h = Fnv::default();
    let mut ok = true;
    let mut threads = 0u64;
    for rep in 0..p.reps {
        fill_lu(p, rep, &mut a);
        let orig = a.clone();
        let pa = Shared(a.as_mut_ptr());
        for k in 0..LU_GRID {
            let tasks: Vec<LuTask> = matrix::lu_step(k, LU_GRID).collect();
            for phase in 0..3 {
                let mine = tasks.iter().filter(|t| matrix::lu_phase(**t) == phase);
                if phase == 0 {
                    for &t in mine {
                        // SAFETY: no other thread runs between phases.
                        unsafe { matrix::lu_task(pa.0, n, bs, t) };
                    }
                    continue;
                }
                thread::scope(|s| {
                    for &t in mine {
                        threads += 1;
                        s.spawn(move || {
                            let pa = pa;
                            // SAFETY: tasks of one phase write distinct
                            // blocks and read only blocks of earlier
                            // phases, which are joined.
                            unsafe { matrix::lu_task(pa.0, n, bs, t) }
                        });
                    }
                });
            }
        }
        ok &= lu_ok(&a, &orig, n);
        h.f64s(&a);
    }
    let mut line = Line::result(p, "pthread", h.finish(), ok);
    line.field("workers", threads);
    line
}

fn fill_lu(p: &Params, rep: u64, a: &mut [f64]) {
    matrix::fill_dominant(&mut Rng::new(rep_seed(p.seed, rep)), a, p.size as usize);
}

/// L·U matches the input at the sampled entries.
fn lu_ok(lu: &[f64], orig: &[f64], n: usize) -> bool {
    samples(n).all(|(i, j)| {
        (matrix::lu_product_entry(lu, n, i, j) - orig[i * n + j]).abs() <= 1e-9 * n as f64
    })
}

/// The thesis's Figure 4a: a thread per row and step, all but the last
/// joined (unless `--fixed`). The forgotten threads are detached and may
/// still be writing while the next step runs and while the result is read.
fn gauss_demo(p: &Params) -> Line {
    let n = p.size as usize;
    let mut h = Fnv::default();
    let mut ok = true;
    let mut wrong_rows = 0;
    for rep in 0..p.reps {
        let mut init = vec![0.0; gauss::cells(n)];
        gauss::fill(&mut Rng::new(rep_seed(p.seed, rep)), n, &mut |i, v| {
            init[i] = v
        });
        let m: Arc<Vec<AtomicU64>> =
            Arc::new(init.iter().map(|v| AtomicU64::new(v.to_bits())).collect());
        for k in 0..n - 1 {
            let mut handles: Vec<Option<thread::JoinHandle<()>>> = (0..n).map(|_| None).collect();
            for (i, slot) in handles.iter_mut().enumerate().skip(k + 1) {
                let m = Arc::clone(&m);
                *slot = Some(thread::spawn(move || gauss::eliminate(&m[..], n, k, i)));
            }
            for i in gauss::joined_rows(n, k, p.fixed) {
                if let Some(t) = handles[i].take() {
                    t.join().expect("gauss worker panicked");
                }
            }
            // Bug (unless --fixed): the handle of row n - 1 is dropped
            // here, its thread detached and never waited for.
        }
        let result: Vec<f64> = m
            .iter()
            .map(|c| f64::from_bits(c.load(std::sync::atomic::Ordering::Relaxed)))
            .collect();
        let reference = std::cell::Cell::from_mut(&mut init[..]);
        gauss::sequential(reference.as_slice_of_cells(), n);
        let wrong = wrong_row_count(&result, &init, n);
        wrong_rows += wrong;
        ok &= wrong == 0;
        h.f64s(&result);
    }
    let mut line = Line::result(p, "pthread", h.finish(), ok);
    line.field("wrong_rows", wrong_rows);
    line
}

/// Rows of `got` that differ (in any bit) from `want`.
fn wrong_row_count(got: &[f64], want: &[f64], n: usize) -> usize {
    got.chunks(n + 1)
        .zip(want.chunks(n + 1))
        .filter(|(g, w)| g.iter().zip(*w).any(|(a, b)| a.to_bits() != b.to_bits()))
        .count()
}
