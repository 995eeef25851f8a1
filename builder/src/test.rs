//! `cargo det test`: host tests, then the in-guest test programs.
//!
//! The guest's init runs every program in /usr/lib/detlinux/tests and
//! prints one nested KTAP document on the output channel; it is parsed
//! while the guest runs (each result printed as it arrives) and once more
//! at the end, together with the kernel console and init's status lines,
//! into one verdict: PASSED, FAILED, BOOT_ERROR, CRASHED or TIMEOUT.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result};

use crate::build;
use crate::ktap::{self, Outcome};
use crate::project::Project;
use crate::qemu::{self, Boot, Logs};
use crate::verdict::Verdict;
use crate::BootOpts;

pub fn run(
    project: &Project,
    profile_name: &str,
    opts: &BootOpts,
    only: &[String],
    host: bool,
    logs: Option<PathBuf>,
) -> Result<ExitCode> {
    let profile = project.profile(profile_name)?;
    if host {
        eprintln!("host tests: cargo test --workspace");
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(&project.root)
            .args(["test", "--workspace", "--locked", "--quiet"])
            .status()
            .context("running cargo test")?;
        if !status.success() {
            eprintln!("host tests FAILED");
            return Ok(ExitCode::FAILURE);
        }
    }

    let image = build::build(project, &profile)?;
    let boot = Boot::resolve(project, &profile, &image, opts);
    let mut extra = Vec::new();
    if !only.is_empty() {
        extra.push(format!("det.tests={}", only.join(",")));
    }
    let cmdline = qemu::harness_cmdline(&profile, &boot, "tests", &extra);
    let logs = Logs {
        dir: logs.unwrap_or_else(|| project.images().join("logs").join(&profile.name)),
    };
    eprintln!(
        "booting images/{} ({} CPUs, {:?}, limit {}s)",
        profile.name,
        boot.cpus,
        boot.accel,
        boot.timeout.as_secs()
    );
    let mut shown = BTreeSet::new();
    let o = qemu::boot_captured(&image, &boot, &cmdline, logs, true, |text| {
        // Print each leaf result once, as soon as its line is complete.
        for r in ktap::parse_complete_lines(text).results {
            if shown.insert(r.name.clone()) {
                println!("{}", result_line(&r));
            }
        }
    })?;
    let c = &o.classification;
    let report = c.ktap.clone().unwrap_or_else(|| ktap::parse(&o.output));
    for r in &report.results {
        if !shown.contains(&r.name) {
            println!("{}", result_line(r));
        }
    }
    for r in report.failures() {
        if !r.diagnostics.is_empty() {
            println!("--- {} ---", r.name);
            for d in r.diagnostics.iter().rev().take(20).rev() {
                println!("    {d}");
            }
        }
    }
    if !report.problems.is_empty() {
        println!("KTAP: {}", report.summary());
        for p in &report.problems {
            println!("  problem: {p}");
        }
    }
    if let Some(ms) = c.init_uptime_ms {
        eprintln!(
            "guest reached init at {:.2}s guest time",
            ms as f64 / 1000.0
        );
    }
    if c.verdict != Verdict::Passed {
        qemu::report_problem(project, &o);
    }
    let failed =
        report.failed() + usize::from(c.verdict != Verdict::Passed && report.failed() == 0);
    println!(
        "{} passed, {} failed{} ({}, {:.1}s)",
        report.passed(),
        failed,
        if report.skipped() > 0 {
            format!(", {} skipped", report.skipped())
        } else {
            String::new()
        },
        c.verdict,
        o.elapsed.as_secs_f64()
    );
    Ok(if c.verdict.is_pass() && report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn result_line(r: &ktap::TestResult) -> String {
    let tag = match r.outcome {
        Outcome::Pass => "ok  ",
        Outcome::Fail => "FAIL",
        Outcome::Skip => "skip",
    };
    match &r.directive {
        Some(d) if !d.is_empty() => format!("{tag} {} # {d}", r.name),
        _ => format!("{tag} {}", r.name),
    }
}
