//! `demo-pthread`: the pthread versions of the demos.
//!
//! Same command line, inputs, kernels, checks and output line as the
//! deterministic versions (all from `demos-core`, whose `run` module holds
//! the repetition loops); here workers are threads sharing one address
//! space, created with `std::thread` (pthread_create) and joined with
//! pthread_join. Only `gauss` has a data race, on purpose: the last worker
//! of each step is never joined.

use std::convert::Infallible;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use demos_core::args::{Demo, Params};
use demos_core::gauss;
use demos_core::report::Line;
use demos_core::run;
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
    let line: Result<Line, Infallible> = match p.demo {
        Demo::Md5 => run::md5(&p, "pthread", md5_search),
        Demo::Qsort => run::qsort(&p, "pthread", |a, depth| {
            parallel_sort(a, depth);
            Ok(())
        }),
        Demo::Matmult => run::matmult(&p, "pthread", matmult),
        Demo::Lu => run::lu(&p, "pthread", lu_phase),
        Demo::Gauss => run::gauss(&p, "pthread", |m, n| {
            gauss_threads(m, n, p.fixed);
            Ok(())
        }),
    };
    let Ok(mut line) = line;
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

/// N + 1 threads, each searching its slice; the lowest index found.
fn md5_search(target: &[u8; 16], len: usize, workers: u64) -> Result<Option<u64>, Infallible> {
    Ok(thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| s.spawn(move || run::md5_worker(target, len, w, workers)))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("md5 worker panicked"))
            .min()
    }))
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

/// One thread per block of C given, all started, then all joined.
fn matmult(m: run::Product, blocks: &[(usize, usize)]) -> Result<(), Infallible> {
    thread::scope(|s| {
        for &(bi, bj) in blocks {
            // SAFETY: A and B are only read until the scope ends; each
            // thread writes its own block (bi, bj) of C.
            s.spawn(move || unsafe { m.block(bi, bj) });
        }
    });
    Ok(())
}

/// One thread per task of the phase, all started, then all joined.
fn lu_phase(d: run::Decomposition, tasks: &[demos_core::matrix::LuTask]) -> Result<(), Infallible> {
    thread::scope(|s| {
        for &t in tasks {
            // SAFETY: tasks of one phase write distinct blocks and read
            // only blocks of earlier phases, which are joined.
            s.spawn(move || unsafe { d.task(t) });
        }
    });
    Ok(())
}

/// The thesis's Figure 4a: a thread per row and step, all but the last
/// joined (unless `fixed`). The forgotten threads are detached and may
/// still be writing while the next step runs and while the result is
/// copied out. The shared matrix is relaxed atomics: defined behaviour in
/// Rust, and still a race on the values.
fn gauss_threads(m: &mut [f64], n: usize, fixed: bool) {
    let shared: Arc<Vec<AtomicU64>> =
        Arc::new(m.iter().map(|v| AtomicU64::new(v.to_bits())).collect());
    for k in 0..n - 1 {
        let mut handles: Vec<Option<thread::JoinHandle<()>>> = (0..n).map(|_| None).collect();
        for (i, slot) in handles.iter_mut().enumerate().skip(k + 1) {
            let shared = Arc::clone(&shared);
            *slot = Some(thread::spawn(move || {
                gauss::eliminate(&shared[..], n, k, i)
            }));
        }
        for i in gauss::joined_rows(n, k, fixed) {
            if let Some(t) = handles[i].take() {
                t.join().expect("gauss worker panicked");
            }
        }
        // Bug (unless fixed): the handle of row n - 1 is dropped here, its
        // thread detached and never waited for.
    }
    for (v, c) in m.iter_mut().zip(shared.iter()) {
        *v = f64::from_bits(c.load(Ordering::Relaxed));
    }
}
