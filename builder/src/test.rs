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
use crate::profile::Profile;
use crate::project::Project;
use crate::qemu::{self, Boot, DiskBoot, Logs, Media};
use crate::BootOpts;

/// Totals of one guest run.
struct Tally {
    passed: usize,
    failed: usize,
    skipped: usize,
}

pub fn run(
    project: &Project,
    profiles: &[String],
    opts: &BootOpts,
    only: &[String],
    host: bool,
    disk: bool,
    logs: Option<PathBuf>,
) -> Result<ExitCode> {
    // Load every profile first: a typo fails before anything is built.
    let profiles = profiles
        .iter()
        .map(|p| project.profile(p))
        .collect::<Result<Vec<_>>>()?;
    if host {
        eprintln!("host tests: cargo test --workspace");
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(&project.root)
            .args(["test", "--workspace", "--locked", "--quiet"])
            .status()
            .context("running cargo test")?;
        if !status.success() {
            println!("host tests FAILED");
            return Ok(ExitCode::FAILURE);
        }
    }
    let mut total = Tally {
        passed: 0,
        failed: 0,
        skipped: 0,
    };
    let mut all_passed = true;
    let mut runs = Vec::new();
    for profile in &profiles {
        // The suite via -kernel, then from disk.img under OVMF and SeaBIOS
        // when the profile asks for it: each is its own run in the tally.
        let mut media = vec![None];
        if disk && profile.disk.test_boots {
            media.extend([Some(DiskBoot::Uefi), Some(DiskBoot::Bios)]);
        }
        for m in media {
            let name = match m {
                None => profile.name.clone(),
                Some(d) => format!("{}/{}", profile.name, d.name()),
            };
            let logs = logs
                .as_ref()
                .unwrap_or(&project.images().join("logs"))
                .join(name.replace('/', "-"));
            let (ok, t) = run_profile(project, profile, opts, only, m, &name, logs)?;
            runs.push(name);
            all_passed &= ok;
            total.passed += t.passed;
            total.failed += t.failed;
            total.skipped += t.skipped;
        }
    }
    if runs.len() > 1 {
        println!(
            "{} passed, {} failed{} (runs: {})",
            total.passed,
            total.failed,
            skipped(total.skipped),
            runs.join(", ")
        );
    }
    Ok(if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn skipped(n: usize) -> String {
    if n > 0 {
        format!(", {n} skipped")
    } else {
        String::new()
    }
}

/// Boot one profile's image with `det.run=tests` and report: with the
/// kernel handed to QEMU, or from disk.img through firmware.
fn run_profile(
    project: &Project,
    profile: &Profile,
    opts: &BootOpts,
    only: &[String],
    disk: Option<DiskBoot>,
    name: &str,
    logs: PathBuf,
) -> Result<(bool, Tally)> {
    let image = build::build(project, profile)?;
    let mut boot = Boot::resolve(project, profile, &image, opts);
    let mut extra = Vec::new();
    if !only.is_empty() {
        extra.push(format!("det.tests={}", only.join(",")));
    }
    let cmdline = qemu::harness_cmdline(profile, boot.cpus, "tests", &extra);
    let mut what = format!("images/{}", profile.name);
    if let Some(d) = disk {
        let path = qemu::disk_for(profile, &image, &cmdline, &logs)?;
        what = format!("{} via {}", project.show(&path), d.name());
        boot.media = Media::Disk {
            image: path,
            firmware: d.firmware(&logs)?,
        };
    }
    eprintln!(
        "booting {what} ({} CPUs, {:?}, limit {}s)",
        boot.cpus,
        boot.accel,
        boot.timeout.as_secs()
    );
    let mut shown = BTreeSet::new();
    let tag = format!("[{name}]");
    let o = qemu::boot_captured(&image, &boot, &cmdline, Logs { dir: logs }, true, |text| {
        // Print each leaf result once, as soon as its line is complete.
        for r in ktap::parse_complete_lines(text).results {
            if shown.insert(r.name.clone()) {
                println!("{tag} {}", result_line(&r));
            }
        }
    })?;
    let c = &o.classification;
    let report = c.ktap.clone().unwrap_or_else(|| ktap::parse(&o.output));
    for r in &report.results {
        if !shown.contains(&r.name) {
            println!("{tag} {}", result_line(r));
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
    let ok = c.verdict.is_pass() && report.ok();
    if !ok {
        qemu::report_problem(project, &o);
    }
    // A run that went wrong outside the KTAP (a crash, a timeout) counts as
    // a failure even when every reported test passed.
    let failed = report.failed() + usize::from(!ok && report.failed() == 0);
    let tally = Tally {
        passed: report.passed(),
        failed,
        skipped: report.skipped(),
    };
    println!(
        "{tag} {} passed, {} failed{} ({}, {:.1}s)",
        tally.passed,
        tally.failed,
        skipped(tally.skipped),
        c.verdict,
        o.elapsed.as_secs_f64()
    );
    Ok((ok, tally))
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
