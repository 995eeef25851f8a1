//! `det-bench`: the in-guest benchmark harness behind `cargo det bench`.
//!
//! ```text
//! det-bench [--cpus 1,2] [--min-secs S] [--trials T] DEMO:SIZE[,SIZE...]...
//! ```
//!
//! For every demo, size and N (CPUs, each N ≤ the guest's), it pins itself
//! to CPUs `0..N` (children inherit that), calibrates on the pthread
//! version (doubling from one repetition) to a repetition count R so
//! that a run lasts at least `--min-secs`. Then it times both versions on
//! identical inputs, each time the median of `--trials` runs: after one
//! unmeasured deterministic run, the versions take turns run by run, so
//! that a drift in the host's speed weighs on both alike. Where process
//! start-up (exec, and `detrun` building a deterministic root) may be
//! more than 1% of a run, each version runs with R and with 2R
//! repetitions and the difference divided by R is the time per repetition
//! (`method=diff`): start-up cancels out, as if timed inside the program,
//! which a deterministic program cannot do (it has no clock). A
//! difference that leaves either version a start-up no process has (below
//! zero, or seconds: the host stalled during one of the runs) gets two
//! more trials, at least three in all, and the medians decide; `trials`
//! says how many a row had. Otherwise one run of R (`method=single`),
//! and also where a run of 2R was not slower than the run of R for either
//! version (noise, or work that depends on the input more than on R, as
//! md5's search does): both versions then use their runs of R. One line
//! per measurement on stdout:
//!
//! ```text
//! BENCH-PLAN total=28 det=yes online_cpus=2
//! BENCH demo=lu size=64 cpus=2 reps=40 trials=1 memcpy_ms_per_mib=0.52 method=diff pthread_ms=12.5 det_ms=30.1 ratio=2.408 match=yes det=ok hash=… ok=yes pthread_start_ms=4.0 det_start_ms=9.1 merge_pct=12.5
//! BENCH-DONE
//! ```
//!
//! `pthread_ms` and `det_ms` are per repetition; `ratio` is det ÷ pthread;
//! `match` says whether both printed the same result hash; `*_start_ms` is
//! the start-up the difference removed. `det=missing` when the
//! deterministic version is not installed (then only the pthread figures
//! are real), `det=error` with `error="..."` when it failed. `merge_pct`
//! is the share of the deterministic run spent in `DET_MERGE`, from the
//! kernel's account (`detrun --stats`), per repetition by the same method
//! as the time. Keys the deterministic demo adds after `ok` are passed on
//! as `det_<key>`. `memcpy_ms_per_mib` is the guest's memory speed just
//! before the row (a 32 MiB copy, median of 5): under TCG it changes from
//! boot to boot, and even within one, by up to five times, and the
//! deterministic versions, which copy pages on write, feel it where the
//! pthread ones do not. The lines are `bootproto::record`s.

use std::time::Instant;

use bootproto::record::{self, Record};
use det_demos_harness::{
    args, number_list, online_cpus, pin, run, say, start, usable_cpus, Demo, Impl, Run,
};
struct Options {
    cpus: Vec<u32>,
    min_secs: f64,
    trials: usize,
    specs: Vec<(Demo, Vec<u64>)>,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        cpus: (1..=online_cpus()).collect(),
        min_secs: 2.0,
        trials: 1,
        specs: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--cpus" => o.cpus = number_list(&value()?)?,
            "--min-secs" => {
                o.min_secs = value()?
                    .parse()
                    .map_err(|_| "--min-secs takes seconds".to_string())?
            }
            "--trials" => {
                o.trials = value()?
                    .parse()
                    .ok()
                    .filter(|t| *t >= 1)
                    .ok_or("--trials takes a count ≥ 1")?
            }
            spec => {
                let (demo, sizes) = spec
                    .split_once(':')
                    .ok_or(format!("`{spec}` is not DEMO:SIZE[,SIZE...]"))?;
                let demo = Demo::from_name(demo).ok_or(format!("unknown demo `{demo}`"))?;
                let sizes: Vec<u64> = number_list(sizes)?;
                for s in &sizes {
                    demo.check_size(*s)?;
                }
                o.specs.push((demo, sizes));
            }
        }
    }
    if o.specs.is_empty() {
        return Err(
            "usage: det-bench [--cpus 1,2] [--min-secs S] [--trials T] DEMO:SIZE[,SIZE...]..."
                .into(),
        );
    }
    Ok(o)
}

fn main() {
    let o = start("det-bench", parse);
    let online = online_cpus();
    let cpus = usable_cpus(&o.cpus);
    let det = Impl::Det.installed();
    let total: usize = o.specs.iter().map(|(_, s)| s.len()).sum::<usize>() * cpus.len();
    say(Record::new("BENCH-PLAN")
        .field("total", total)
        .field("det", yes(det))
        .field("online_cpus", online)
        .as_str());
    let mut failed = false;
    for (demo, sizes) in &o.specs {
        for &size in sizes {
            for &n in &cpus {
                let line = measure(
                    &o,
                    Point {
                        demo: *demo,
                        size,
                        cpus: n,
                    },
                    det,
                );
                failed |= line.as_str().contains(" error=");
                say(line.as_str());
            }
        }
    }
    say("BENCH-DONE");
    std::process::exit(i32::from(failed));
}

/// Most repetitions in one run.
const MAX_REPS: u64 = 1 << 16;

/// Runs of R repetitions shorter than this are timed by difference: a
/// deterministic start-up of about 50 ms is 1% of 5 s.
const DIFF_BELOW_SECS: f64 = 5.0;

/// What one measurement is about.
#[derive(Clone, Copy)]
struct Point {
    demo: Demo,
    size: u64,
    cpus: u32,
}

impl Point {
    /// A run of `imp` with `reps` repetitions.
    fn run(self, imp: Impl, reps: u64) -> Result<Run, String> {
        run(imp, &args(self.demo, self.size, self.cpus, reps, false))
    }
}

/// One `BENCH` line.
fn measure(o: &Options, at: Point, det: bool) -> Record {
    let mut line = Record::new("BENCH");
    line.field("demo", at.demo.name())
        .field("size", at.size)
        .field("cpus", at.cpus);
    match measure_inner(o, at, det, line.clone()) {
        Ok(whole) => whole,
        Err(e) => {
            line.field("error", e);
            line
        }
    }
}

/// Merge ms per repetition of a deterministic run (the kernel's account),
/// by the same method as its time.
fn merge_per_rep(r1: &Run, r2: Option<&Run>, reps: u64) -> Option<f64> {
    match r2 {
        Some(r2) => Some(((r2.merge_ms? - r1.merge_ms?) / reps as f64).max(0.0)),
        None => Some(r1.merge_ms? / reps as f64),
    }
}

/// One version's runs: `reps` repetitions, and `2 * reps` when start-up
/// matters (their difference cancels process start, exec and `detrun`),
/// each the median of `--trials`.
struct Timing {
    t1: f64,
    r1: Run,
    t2: Option<(f64, Run)>,
    /// Runs of each count.
    trials: usize,
}

/// From the runs of each count (`runs[0]` of `reps`, `runs[1]`, if any,
/// of `2 * reps`), each at least one: the median time, and the first
/// run's line.
fn timing(runs: Vec<Vec<Run>>) -> Timing {
    let trials = runs[0].len();
    let mut each = runs.into_iter().map(|mut r| (median(&r), r.swap_remove(0)));
    let (t1, r1) = each.next().expect("runs of reps");
    Timing {
        t1,
        r1,
        t2: each.next(),
        trials,
    }
}

/// The pthread version's timing, and the deterministic one's (or its
/// error) if it is measured.
type Timings = (Timing, Option<Result<Timing, String>>);

/// Both versions' timings, the deterministic one's only if `det`. The
/// versions take turns run by run, after one unmeasured deterministic run
/// (the pthread version's is its calibration): a host that slows down or
/// speeds up meanwhile weighs on both alike, and neither pays alone for
/// what a boot's first run loads (`detrun`, the kernel's caches).
fn timings(
    o: &Options,
    at: Point,
    reps: u64,
    differential: bool,
    det: bool,
) -> Result<Timings, String> {
    let counts: &[u64] = if differential {
        &[reps, 2 * reps]
    } else {
        &[reps]
    };
    let mut p: Vec<Vec<Run>> = counts.iter().map(|_| Vec::new()).collect();
    let mut d: Vec<Vec<Run>> = counts.iter().map(|_| Vec::new()).collect();
    let mut d_err = if det {
        at.run(Impl::Det, 1).err()
    } else {
        None
    };
    for _ in 0..o.trials {
        trial(at, counts, det, &mut p, &mut d, &mut d_err)?;
    }
    // A difference whose start-up is no start-up means one run was hit by
    // the host: more trials, and the medians decide.
    let odd = |runs: &[Vec<Run>]| runs.iter().all(|r| !r.is_empty()) && !plausible(runs, reps);
    if differential && (odd(&p) || odd(&d)) {
        for _ in o.trials..MIN_TRIALS_IF_ODD {
            trial(at, counts, det, &mut p, &mut d, &mut d_err)?;
        }
    }
    let d = det.then(|| match d_err {
        Some(e) => Err(e),
        None => Ok(timing(d)),
    });
    Ok((timing(p), d))
}

/// One trial: a run of each count (`counts`) of the pthread version into
/// `p`, each followed by the deterministic one's into `d` while it has not
/// failed (`d_err`).
fn trial(
    at: Point,
    counts: &[u64],
    det: bool,
    p: &mut [Vec<Run>],
    d: &mut [Vec<Run>],
    d_err: &mut Option<String>,
) -> Result<(), String> {
    for (i, &r) in counts.iter().enumerate() {
        p[i].push(at.run(Impl::Pthread, r)?);
        if det && d_err.is_none() {
            match at.run(Impl::Det, r) {
                Ok(run) => d[i].push(run),
                Err(e) => *d_err = Some(e),
            }
        }
    }
    Ok(())
}

/// Trials a differenced row gets at least when a first one's start-up
/// was implausible ([`plausible`]).
const MIN_TRIALS_IF_ODD: usize = 3;

/// Whether the medians of `runs` (of `reps`, then of `2 * reps`) leave a
/// start-up a process could have: the run of 2R at least as slow as the
/// run of R, and what the difference leaves of the run of R neither under
/// -2% of it nor over 250 ms + 5% of it. Start-up is about 10 ms for the
/// pthread version and 50 ms for the det one in a TCG guest; a host that
/// stalls during one run makes it seconds, or negative.
fn plausible(runs: &[Vec<Run>], reps: u64) -> bool {
    let t1 = median(&runs[0]);
    split_diff(t1, median(&runs[1]), reps)
        .is_some_and(|(_, start)| start >= -0.02 * t1 && start <= 0.25 + 0.05 * t1)
}

/// Seconds per repetition and of start-up (what is left of `t1`, maybe
/// below zero) from a run of `reps` and one of twice as many, if their
/// difference is a time ([`diff_per_rep`]).
fn split_diff(t1: f64, t2: f64, reps: u64) -> Option<(f64, f64)> {
    let each = diff_per_rep(t1, t2, reps)?;
    Some((each, t1 - each * reps as f64))
}

/// Seconds per repetition from the difference of a run of `reps` (`t1`)
/// and one of twice as many (`t2`), if the difference is a time: a
/// doubled run that was not slower (noise, or a demo whose work depends on
/// its input more than on the repetitions) says nothing.
fn diff_per_rep(t1: f64, t2: f64, reps: u64) -> Option<f64> {
    let each = (t2 - t1) / reps as f64;
    (each > 0.0).then_some(each)
}

impl Timing {
    /// Per-repetition and start-up seconds, by difference or from the
    /// single run, and the run whose line is reported (different
    /// repetition counts hash different inputs: the smaller run's line,
    /// but both must have passed their checks).
    fn per_rep(&self, reps: u64, differential: bool) -> (f64, f64, Run) {
        match (&self.t2, differential) {
            (Some((t2, r2)), true) => {
                let (each, start) = split_diff(self.t1, *t2, reps).unwrap_or((0.0, self.t1));
                let run = Run {
                    ok: self.r1.ok && r2.ok,
                    merge_ms: merge_per_rep(&self.r1, Some(r2), reps),
                    ..self.r1.clone()
                };
                (each, start.max(0.0), run)
            }
            _ => {
                let run = Run {
                    merge_ms: merge_per_rep(&self.r1, None, reps),
                    ..self.r1.clone()
                };
                (self.t1 / reps as f64, 0.0, run)
            }
        }
    }

    /// Whether the difference gives a time per repetition.
    fn differs(&self, reps: u64) -> bool {
        self.t2
            .as_ref()
            .is_some_and(|(t2, _)| diff_per_rep(self.t1, *t2, reps).is_some())
    }
}

/// `line` with the measurement's fields.
fn measure_inner(o: &Options, at: Point, det: bool, mut line: Record) -> Result<Record, String> {
    pin(at.cpus)?;
    let memcpy = memcpy_ms_per_mib();
    // Calibrate on the pthread version: double the repetitions until a
    // run lasts `--min-secs`; start-up is what one repetition costs beyond
    // its share of that run.
    let one = at.run(Impl::Pthread, 1)?.elapsed.as_secs_f64();
    let (mut reps, mut t) = (1u64, one);
    while t < o.min_secs && reps < MAX_REPS {
        reps = (reps * 2).min(MAX_REPS);
        t = at.run(Impl::Pthread, reps)?.elapsed.as_secs_f64();
    }
    let est = if reps > 1 {
        ((t - one) / (reps - 1) as f64).max(t / reps as f64 / 100.0)
    } else {
        one
    };
    let startup = (one - est).max(0.0);
    // Start-up under 1% of a run: one measurement is enough. Only the
    // pthread version's is known here; the det version's is longer
    // (`detrun` loads the program and builds its root, about 50 ms in a
    // TCG guest), so a run shorter than DIFF_BELOW_SECS is differenced.
    let run = est * reps as f64;
    let differential = startup > 0.01 * run || run < DIFF_BELOW_SECS;
    let (p, d) = timings(o, at, reps, differential, det)?;
    line.field("reps", reps)
        .field("trials", p.trials)
        .field("memcpy_ms_per_mib", format_args!("{memcpy:.2}"));
    // Every version timed by the same method: where a difference is no
    // time, all fall back to their single runs (start-up included).
    let differential =
        differential && p.differs(reps) && !matches!(&d, Some(Ok(d)) if !d.differs(reps));
    let (p_each, p_start, p) = p.per_rep(reps, differential);
    line.field("method", if differential { "diff" } else { "single" })
        .field("pthread_ms", format_args!("{:.4}", p_each * 1e3));
    let d = match d {
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            line.field("det", "error").field("error", e);
            return Ok(line);
        }
        None => {
            line.field("det", "missing")
                .field("hash", &p.hash)
                .field("ok", yes(p.ok));
            return Ok(line);
        }
    };
    let (d_each, d_start, d) = d.per_rep(reps, differential);
    line.field("det_ms", format_args!("{:.4}", d_each * 1e3))
        .field("ratio", format_args!("{:.3}", d_each / p_each.max(1e-9)))
        .field("match", yes(p.hash == d.hash))
        .field("det", "ok")
        .field("hash", &p.hash)
        .field("ok", yes(p.ok && d.ok))
        .field("pthread_start_ms", format_args!("{:.1}", p_start * 1e3))
        .field("det_start_ms", format_args!("{:.1}", d_start * 1e3));
    // The thesis's parenthesised figure: time in merge, % of the det run.
    if let Some(m) = d.merge_ms {
        line.field(
            "merge_pct",
            format_args!("{:.1}", 100.0 * m / (d_each * 1e3).max(1e-9)),
        );
    }
    // Whatever the deterministic demo reports after `ok` (merge figures).
    let after_ok = record::fields(&d.line)
        .map_while(Result::ok)
        .skip_while(|&(k, _)| k != "ok")
        .skip(1);
    for (k, v) in after_ok {
        line.field(&format!("det_{k}"), v);
    }
    Ok(line)
}

/// Milliseconds per MiB of a copy of 32 MiB between two buffers already
/// written, the median of five.
fn memcpy_ms_per_mib() -> f64 {
    const MIB: usize = 32;
    let from = vec![1u8; MIB << 20];
    let mut to = vec![2u8; MIB << 20];
    middle(
        (0..5)
            .map(|_| {
                let start = Instant::now();
                to.copy_from_slice(std::hint::black_box(&from));
                std::hint::black_box(&mut to);
                start.elapsed().as_secs_f64() * 1e3 / MIB as f64
            })
            .collect(),
    )
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The median elapsed seconds of `runs` (at least one).
fn median(runs: &[Run]) -> f64 {
    middle(runs.iter().map(|r| r.elapsed.as_secs_f64()).collect())
}

/// The median of `t` (at least one; of two, the larger).
fn middle(mut t: Vec<f64>) -> f64 {
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::{diff_per_rep, plausible, Run};
    use std::time::Duration;

    fn runs(secs: &[&[f64]]) -> Vec<Vec<Run>> {
        secs.iter()
            .map(|count| {
                count
                    .iter()
                    .map(|&s| Run {
                        line: String::new(),
                        hash: String::new(),
                        ok: true,
                        elapsed: Duration::from_secs_f64(s),
                        merge_ms: None,
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_start_up_of_seconds_or_below_zero_is_no_start_up() {
        // 1 s a repetition, 50 ms to start: plausible.
        assert!(plausible(&runs(&[&[2.05], &[4.05]]), 2));
        // Noise of a few ms below zero is still a start-up of about 0.
        assert!(plausible(&runs(&[&[2.0], &[4.02]]), 2));
        // The run of R stalled for 1.5 s, or the run of 2R did.
        assert!(!plausible(&runs(&[&[3.55], &[5.6]]), 2));
        assert!(!plausible(&runs(&[&[2.05], &[5.5]]), 2));
        // Not slower at all.
        assert!(!plausible(&runs(&[&[2.0], &[1.9]]), 2));
        // The medians decide: one stalled run of three is outvoted.
        assert!(plausible(
            &runs(&[&[3.55, 2.05, 2.06], &[4.05, 4.04, 4.1]]),
            2
        ));
    }

    #[test]
    fn a_doubled_run_that_was_not_slower_gives_no_time() {
        assert_eq!(diff_per_rep(1.0, 3.0, 4), Some(0.5));
        assert_eq!(diff_per_rep(1.0, 1.0, 4), None);
        assert_eq!(diff_per_rep(1.0, 0.9, 4), None);
    }
}
