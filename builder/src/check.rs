//! `cargo det check`: the determinism check, in a guest.
//!
//! Boots the `bench` profile with `det-check` (userland/demos/harness) as
//! the command: every installed version of every demo runs K times for
//! each N of 1..=CPUs, with and without background load, and the number of
//! distinct result hashes per demo and version is printed as a table. Exit
//! status 0 when every deterministic demo (and every race-free pthread
//! demo) gave one hash; the unfixed pthread gauss is expected to give
//! several and only reported. A kernel report, crash or timeout during
//! the run fails it whatever det-check printed. The guest test `demos`
//! runs the same check with K = 1 in `cargo det test`.

use std::process::ExitCode;

use anyhow::{bail, Result};
use bootproto::record::value;
use bootproto::Mode;

use crate::build;
use crate::cmdline;
use crate::project::Project;
use crate::qemu::BootOpts;
use crate::qemu::{self, Boot, Logs};
use crate::verdict::Verdict;

/// The demos checked, with sizes that keep a run under a second or two
/// on the TCG guest.
pub const SPECS: &[&str] = &[
    "md5:3",
    "qsort:20000",
    "matmult:64",
    "lu:32",
    "gauss:16",
    "gauss:16:fixed",
];

#[derive(clap::Args)]
pub struct Args {
    /// Profile to boot.
    #[arg(long, short, default_value = "bench")]
    pub profile: String,
    /// Runs per demo, version, CPU count and load setting (K).
    #[arg(long, short = 'k', default_value_t = 100)]
    pub runs: u32,
    /// Only without background load.
    #[arg(long)]
    pub no_load: bool,
    /// Only these demos (comma-separated: md5, qsort, matmult, lu, gauss).
    #[arg(long, value_delimiter = ',')]
    pub demos: Vec<String>,
    #[command(flatten)]
    pub boot: BootOpts,
}

pub fn run(project: &Project, o: &Args) -> Result<ExitCode> {
    let profile = project.profile(&o.profile)?;
    let specs: Vec<&str> = SPECS
        .iter()
        .copied()
        .filter(|s| o.demos.is_empty() || o.demos.iter().any(|d| s.split(':').next() == Some(d)))
        .collect();
    if specs.is_empty() {
        bail!("no demo left to check (demos: md5, qsort, matmult, lu, gauss)");
    }
    let image = build::build(project, &profile)?;
    let boot = Boot::resolve(project, &profile, &image, &o.boot);
    let cpus: Vec<String> = (1..=boot.cpus).map(|c| c.to_string()).collect();
    let command = format!(
        "det-check --runs {} --cpus {} --load {} {}",
        o.runs.max(1),
        cpus.join(","),
        if o.no_load { "0" } else { "0,1" },
        specs.join(" ")
    );
    let cmdline = cmdline::harness(&profile, boot.cpus, &Mode::Command(command), &[]);
    let logs = Logs {
        dir: project.images().join("logs").join("check"),
    };
    eprintln!(
        "determinism check: {} runs × N in 1..={} × load {} per demo and version ({:?})",
        o.runs.max(1),
        boot.cpus,
        if o.no_load { "off" } else { "off/on" },
        boot.accel
    );
    let notes = qemu::each_line(|line| {
        if let Some(note) = line.strip_prefix("# ") {
            eprintln!("  {note}");
        }
    });
    let outcome = qemu::boot_captured(&image, &boot, &cmdline, logs, false, notes)?;
    let lines: Vec<&str> = outcome
        .output
        .lines()
        .filter_map(|l| l.strip_prefix("CHECK "))
        .collect();
    println!(
        "{:<8} {:>6} {:>5} {:<8} {:>5} {:>9} {:>7}  hashes",
        "demo", "size", "fixed", "impl", "runs", "distinct", "errors"
    );
    for l in &lines {
        let v = |k: &str| value(l, k).unwrap_or("-").to_string();
        println!(
            "{:<8} {:>6} {:>5} {:<8} {:>5} {:>9} {:>7}  {}",
            v("demo"),
            v("size"),
            v("fixed"),
            v("impl"),
            v("runs"),
            v("distinct"),
            v("errors"),
            v("hashes")
        );
    }
    let done = outcome
        .output
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("CHECK-DONE "));
    // As for `bench`: det-check's verdict counts only from a run that
    // ended cleanly (no kernel report, crash or time limit).
    let clean = matches!(
        outcome.classification.verdict,
        Verdict::Passed | Verdict::Failed
    );
    match done {
        Some(d) if clean && value(d, "verdict") == Some("pass") => {
            println!("every deterministic demo gave one hash");
            Ok(ExitCode::SUCCESS)
        }
        Some(d) if clean => {
            println!("FAILED: {d}");
            Ok(ExitCode::FAILURE)
        }
        _ => {
            qemu::report_problem(project, &outcome);
            bail!("the check did not finish cleanly");
        }
    }
}
