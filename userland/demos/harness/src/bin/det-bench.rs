//! `det-bench`: the in-guest benchmark harness behind `cargo det bench`.
//!
//! ```text
//! det-bench [--cpus 1,2] [--min-secs S] [--trials T] DEMO:SIZE[,SIZE...]...
//! ```
//!
//! For every demo, size and N (CPUs, each N ≤ the guest's), it pins itself
//! to CPUs `0..N` (children inherit that), calibrates on the pthread
//! version (one repetition, then eight) and picks a repetition count R so
//! that a run lasts at least `--min-secs`. Then it times both versions on
//! identical inputs, each run the median of `--trials`. Where process
//! start-up (exec, and `detrun` building a deterministic root) is more
//! than 5% of a run, each version runs with R and with 2R repetitions and
//! the difference divided by R is the time per repetition
//! (`method=diff`): start-up cancels out, as if timed inside the program,
//! which a deterministic program cannot do (it has no clock). Otherwise
//! one run of R (`method=single`). One line per measurement on stdout:
//!
//! ```text
//! BENCH-PLAN total=28 det=yes online_cpus=2
//! BENCH demo=lu size=64 cpus=2 reps=40 method=diff pthread_ms=12.5 det_ms=30.1 ratio=2.408 match=yes det=ok hash=… ok=yes pthread_start_ms=4.0 det_start_ms=9.1
//! BENCH-DONE
//! ```
//!
//! `pthread_ms` and `det_ms` are per repetition; `ratio` is det ÷ pthread;
//! `match` says whether both printed the same result hash; `*_start_ms` is
//! the start-up the difference removed. `det=missing` when the
//! deterministic version is not installed (then only the pthread figures
//! are real), `det=error` with `error="..."` when it failed. Keys the
//! deterministic demo adds after `ok` are passed on as `det_<key>`.

use det_demos_harness::{args, burn_if_asked, number_list, online_cpus, pin, run, Demo, Impl, Run};
use std::io::Write;

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
    burn_if_asked();
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("det-bench: {e}");
            std::process::exit(2);
        }
    };
    let online = online_cpus();
    let cpus: Vec<u32> = o
        .cpus
        .iter()
        .copied()
        .filter(|c| (1..=online).contains(c))
        .collect();
    let det = Impl::Det.installed();
    let total: usize = o.specs.iter().map(|(_, s)| s.len()).sum::<usize>() * cpus.len();
    say(&format!(
        "BENCH-PLAN total={total} det={} online_cpus={online}",
        if det { "yes" } else { "no" }
    ));
    let mut failed = false;
    for (demo, sizes) in &o.specs {
        for &size in sizes {
            for &n in &cpus {
                let line = measure(&o, *demo, size, n, det);
                failed |= line.contains("error=");
                say(&line);
            }
        }
    }
    say("BENCH-DONE");
    std::process::exit(i32::from(failed));
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// One `BENCH` line.
fn measure(o: &Options, demo: Demo, size: u64, cpus: u32, det: bool) -> String {
    let line = format!("BENCH demo={} size={size} cpus={cpus}", demo.name());
    match measure_inner(o, demo, size, cpus, det) {
        Ok(rest) => format!("{line} {rest}"),
        Err(e) => format!("{line} error=\"{}\"", e.replace('"', "'")),
    }
}

/// Time of `reps` repetitions: the median of `--trials` runs.
fn timed(
    o: &Options,
    imp: Impl,
    demo: Demo,
    size: u64,
    cpus: u32,
    reps: u64,
) -> Result<(f64, Run), String> {
    let mut runs = Vec::new();
    for _ in 0..o.trials {
        runs.push(run(imp, &args(demo, size, cpus, reps, false))?);
    }
    let t = median(&runs);
    Ok((t, runs.swap_remove(0)))
}

/// Per-repetition seconds and start-up seconds of one version: from runs
/// of `reps` and `2 * reps` repetitions when start-up matters (the
/// difference cancels process start, exec and `detrun`), else from one.
fn per_rep(
    o: &Options,
    imp: Impl,
    demo: Demo,
    size: u64,
    cpus: u32,
    reps: u64,
    differential: bool,
) -> Result<(f64, f64, Run), String> {
    let (t1, r) = timed(o, imp, demo, size, cpus, reps)?;
    if !differential {
        return Ok((t1 / reps as f64, 0.0, r));
    }
    let (t2, r2) = timed(o, imp, demo, size, cpus, 2 * reps)?;
    // Different repetition counts hash different inputs: keep the
    // smaller run's line, but both must have passed their checks.
    let each = ((t2 - t1) / reps as f64).max(0.0);
    Ok((
        each,
        (t1 - each * reps as f64).max(0.0),
        Run {
            ok: r.ok && r2.ok,
            ..r
        },
    ))
}

fn measure_inner(
    o: &Options,
    demo: Demo,
    size: u64,
    cpus: u32,
    det: bool,
) -> Result<String, String> {
    pin(cpus)?;
    // Calibrate on the pthread version: one repetition, then eight.
    let one = run(Impl::Pthread, &args(demo, size, cpus, 1, false))?
        .elapsed
        .as_secs_f64();
    let (est, startup) = if one >= o.min_secs {
        (one, 0.0)
    } else {
        let eight = run(Impl::Pthread, &args(demo, size, cpus, 8, false))?
            .elapsed
            .as_secs_f64();
        let est = ((eight - one) / 7.0).max(1e-6);
        (est, (one - est).max(0.0))
    };
    let reps = ((o.min_secs / est).ceil() as u64).clamp(1, 100_000);
    // Start-up under 5% of a run: one measurement is enough.
    let differential = startup > 0.05 * est * reps as f64;
    let (p_each, p_start, p) = per_rep(o, Impl::Pthread, demo, size, cpus, reps, differential)?;
    let mut rest = format!(
        "reps={reps} method={} pthread_ms={:.4}",
        if differential { "diff" } else { "single" },
        p_each * 1e3
    );
    if !det {
        rest.push_str(&format!(" det=missing hash={} ok={}", p.hash, yes(p.ok)));
        return Ok(rest);
    }
    let (d_each, d_start, d) = match per_rep(o, Impl::Det, demo, size, cpus, reps, differential) {
        Ok(x) => x,
        Err(e) => {
            rest.push_str(&format!(" det=error error=\"{}\"", e.replace('"', "'")));
            return Ok(rest);
        }
    };
    rest.push_str(&format!(
        " det_ms={:.4} ratio={:.3} match={} det=ok hash={} ok={} pthread_start_ms={:.1} det_start_ms={:.1}",
        d_each * 1e3,
        d_each / p_each.max(1e-9),
        yes(p.hash == d.hash),
        p.hash,
        yes(p.ok && d.ok),
        p_start * 1e3,
        d_start * 1e3,
    ));
    // Whatever the deterministic demo reports after `ok` (merge figures).
    if let Some((_, after)) = d.line.split_once(" ok=") {
        for kv in after.split(' ').skip(1) {
            rest.push_str(&format!(" det_{kv}"));
        }
    }
    Ok(rest)
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
    let mut t: Vec<f64> = runs.iter().map(|r| r.elapsed.as_secs_f64()).collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}
