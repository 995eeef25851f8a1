//! `demos`: the determinism check of `cargo det check`, with a small K, in
//! every `cargo det test` run.
//!
//! Runs `/usr/bin/det-check` once: each demo at a small size, one run for
//! each N = 1 and 2, without and with background load, per installed
//! version. `lu` is left out here: its 1,480 forks and joins take half a
//! minute a run under TCG (more on the debug kernel); `cargo det check`
//! covers it.
//! Then one test per demo and version: a deterministic demo gives one
//! hash (gauss: the same wrong one; fixed gauss: the right one, the same
//! as pthread's), a race-free pthread demo gives one hash, and both
//! versions agree. The unfixed pthread gauss is only reported (its result
//! depends on timing, which is the point of the demo).

#![forbid(unsafe_code)]

use std::process::Command;

use ktap::Suite;

const CHECK: &str = "/usr/bin/det-check";
const SPECS: &[(&str, &str)] = &[
    ("md5", "md5:2"),
    ("qsort", "qsort:2000"),
    ("matmult", "matmult:16"),
    ("gauss", "gauss:16"),
    ("gauss_fixed", "gauss:16:fixed"),
];

/// One `CHECK` line's fields.
struct Line(String);

impl Line {
    fn get(&self, key: &str) -> &str {
        self.0
            .split(' ')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
    }
    fn spec(&self) -> String {
        let base = format!("{}:{}", self.get("demo"), self.get("size"));
        if self.get("fixed") == "yes" {
            format!("{base}:fixed")
        } else {
            base
        }
    }
    /// The hash of the only result, if there was exactly one.
    fn single(&self) -> Option<&str> {
        (self.get("distinct") == "1").then(|| self.get("hashes").split(':').next().unwrap_or(""))
    }
}

fn main() {
    let mut suite = Suite::new("demos", 2 * SPECS.len());
    let out = Command::new(CHECK)
        .args(["--runs", "1", "--cpus", "1,2", "--load", "0,1"])
        .args(SPECS.iter().map(|(_, s)| *s))
        .output();
    let text = match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => {
            for (name, _) in SPECS {
                for imp in ["pthread", "det"] {
                    suite.check(
                        &format!("{imp}_{name}"),
                        Err(format!("cannot run {CHECK}: {e}")),
                    );
                }
            }
            suite.finish();
        }
    };
    for l in text.lines().filter(|l| l.starts_with('#')) {
        suite.diag(l.trim_start_matches("# "));
    }
    let lines: Vec<Line> = text
        .lines()
        .filter(|l| l.starts_with("CHECK "))
        .map(|l| Line(l.to_string()))
        .collect();
    let find = |spec: &str, imp: &str| {
        lines
            .iter()
            .find(|l| l.spec() == spec && l.get("impl") == imp)
    };
    for (name, spec) in SPECS {
        let p = find(spec, "pthread");
        let d = find(spec, "det");
        for l in [p, d].into_iter().flatten() {
            suite.diag(&l.0);
        }
        let racy = *name == "gauss";
        let pthread = match p {
            None => Err(format!("det-check printed no pthread result for {spec}")),
            Some(l) if l.get("errors") != "0" => Err(format!("{} failed runs", l.get("errors"))),
            Some(_) if racy => Ok(()),
            Some(l) if l.single().is_none() => {
                Err(format!("{} distinct hashes", l.get("distinct")))
            }
            Some(_) => Ok(()),
        };
        suite.check(&format!("pthread_{name}"), pthread);
        let Some(d) = d else {
            suite.skip(
                &format!("det_{name}"),
                "the deterministic demos are not installed",
            );
            continue;
        };
        let det = (|| {
            if d.get("errors") != "0" {
                return Err(format!("{} failed runs", d.get("errors")));
            }
            let Some(hash) = d.single() else {
                return Err(format!("{} distinct hashes", d.get("distinct")));
            };
            let ok_runs = d.get("ok_runs");
            if racy {
                if ok_runs != "0" {
                    return Err("the missing join must give the wrong answer every time".into());
                }
            } else {
                if ok_runs != d.get("runs") {
                    return Err(format!(
                        "only {ok_runs} of {} runs passed their check",
                        d.get("runs")
                    ));
                }
                if p.and_then(Line::single) != Some(hash) {
                    return Err("det and pthread results differ".into());
                }
            }
            Ok(())
        })();
        suite.check(&format!("det_{name}"), det);
    }
    suite.finish();
}
