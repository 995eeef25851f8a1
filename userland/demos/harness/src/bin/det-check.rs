//! `det-check`: runs each demo many times and counts distinct results.
//!
//! ```text
//! det-check [--runs K] [--cpus 1,2] [--load 0,1] DEMO:SIZE[:fixed]...
//! ```
//!
//! Every installed version of every demo runs K times for each N of
//! `--cpus` (pinned to CPUs `0..N`) and each `--load` setting (1: one busy
//! process per online CPU in the background). One line per demo and
//! version, then a verdict:
//!
//! ```text
//! CHECK demo=gauss size=24 fixed=no impl=pthread runs=24 distinct=3 ok_runs=9 errors=0 hashes=1f…:9,07…:12,c3…:3
//! CHECK-DONE verdict=pass
//! ```
//!
//! The lines are `bootproto::record`s. The verdict fails (exit status 1) when a deterministic demo gives more
//! than one hash, when a race-free pthread demo (all but unfixed gauss)
//! does, or when a run fails. The unfixed pthread gauss is expected to
//! give several: it is reported, not judged.

use bootproto::record::Record;
use det_demos_harness::{
    args, distinct, number_list, online_cpus, pin, run, say, start, usable_cpus, Demo, Impl, Load,
    Run,
};

struct Spec {
    demo: Demo,
    size: u64,
    fixed: bool,
}

struct Options {
    runs: usize,
    cpus: Vec<u32>,
    load: Vec<u32>,
    specs: Vec<Spec>,
}

const USAGE: &str = "usage: det-check [--runs K] [--cpus 1,2] [--load 0,1] DEMO:SIZE[:fixed]...";

fn parse() -> Result<Options, String> {
    let mut o = Options {
        runs: 10,
        cpus: (1..=online_cpus()).collect(),
        load: vec![0, 1],
        specs: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--runs" => {
                o.runs = value()?
                    .parse()
                    .ok()
                    .filter(|k| *k >= 1)
                    .ok_or("--runs takes a count ≥ 1")?
            }
            "--cpus" => o.cpus = number_list(&value()?)?,
            "--load" => o.load = number_list(&value()?)?,
            spec => {
                let mut parts = spec.split(':');
                let demo = parts.next().unwrap_or_default();
                let demo =
                    Demo::from_name(demo).ok_or(format!("unknown demo `{demo}`; {USAGE}"))?;
                let size = match parts.next() {
                    Some(s) => s.parse().map_err(|_| format!("bad size in `{spec}`"))?,
                    None => demo.default_size(),
                };
                demo.check_size(size)?;
                let fixed = match parts.next() {
                    None => false,
                    Some("fixed") if demo == Demo::Gauss => true,
                    Some(x) => return Err(format!("`{x}` in `{spec}`: only gauss takes `fixed`")),
                };
                o.specs.push(Spec { demo, size, fixed });
            }
        }
    }
    if o.specs.is_empty() {
        return Err(USAGE.into());
    }
    Ok(o)
}

fn main() {
    let o = start("det-check", parse);
    match check(&o) {
        Ok(true) => {
            say(Record::new("CHECK-DONE").field("verdict", "pass").as_str());
        }
        Ok(false) => {
            say(Record::new("CHECK-DONE").field("verdict", "fail").as_str());
            std::process::exit(1);
        }
        Err(e) => {
            say(Record::new("CHECK-DONE")
                .field("verdict", "error")
                .field("error", e)
                .as_str());
            std::process::exit(1);
        }
    }
}

fn check(o: &Options) -> Result<bool, String> {
    let online = online_cpus();
    let cpus = usable_cpus(&o.cpus);
    let impls: Vec<Impl> = [Impl::Pthread, Impl::Det]
        .into_iter()
        .filter(|i| i.installed())
        .collect();
    if !Impl::Det.installed() {
        say("# the deterministic versions are not installed: checking the pthread ones only");
    }
    // results[spec][impl]: runs and failures.
    let mut results: Vec<Vec<(Vec<Run>, Vec<String>)>> = o
        .specs
        .iter()
        .map(|_| impls.iter().map(|_| (Vec::new(), Vec::new())).collect())
        .collect();
    for &load in &o.load {
        pin(online)?;
        let _load = if load > 0 {
            Some(Load::start(online)?)
        } else {
            None
        };
        for &n in &cpus {
            say(&format!(
                "# cpus={n} load={load}: {} runs per demo and version",
                o.runs
            ));
            pin(n)?;
            for (s, spec) in o.specs.iter().enumerate() {
                for (i, &imp) in impls.iter().enumerate() {
                    for _ in 0..o.runs {
                        match run(imp, &args(spec.demo, spec.size, n, 1, spec.fixed)) {
                            Ok(r) => results[s][i].0.push(r),
                            Err(e) => results[s][i].1.push(e),
                        }
                    }
                }
            }
        }
    }
    pin(online)?;
    let mut pass = true;
    for (s, spec) in o.specs.iter().enumerate() {
        for (i, &imp) in impls.iter().enumerate() {
            let (runs, errors) = &results[s][i];
            let hashes = distinct(runs);
            let racy = imp == Impl::Pthread && spec.demo == Demo::Gauss && !spec.fixed;
            pass &= errors.is_empty() && (racy || hashes.len() == 1);
            let list: Vec<String> = hashes.iter().map(|(h, n)| format!("{h}:{n}")).collect();
            say(Record::new("CHECK")
                .field("demo", spec.demo.name())
                .field("size", spec.size)
                .field("fixed", if spec.fixed { "yes" } else { "no" })
                .field("impl", imp)
                .field("runs", runs.len() + errors.len())
                .field("distinct", hashes.len())
                .field("ok_runs", runs.iter().filter(|r| r.ok).count())
                .field("errors", errors.len())
                .field("hashes", list.join(","))
                .as_str());
            if let Some(e) = errors.first() {
                say(&format!("# first error: {e}"));
            }
        }
    }
    Ok(pass)
}
