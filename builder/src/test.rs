//! `cargo det test`: host tests, then the in-guest test programs.
//!
//! The guest's init runs every program in /usr/lib/detlinux/tests and
//! prints one nested KTAP document on the output channel; it is parsed
//! while the guest runs (each result printed as it arrives) and once more
//! at the end, together with the kernel console and init's status lines,
//! into one verdict: PASSED, FAILED, BOOT_ERROR, CRASHED or TIMEOUT.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bootproto::Mode;

use crate::build;
use crate::cmdline;
use crate::deps;
use crate::ktap::{self, Outcome};
use crate::pc;
use crate::profile::Profile;
use crate::project::Project;
use crate::qemu::BootOpts;
use crate::qemu::{self, Boot, DiskBoot, Logs, Media};

/// Totals of one guest run.
#[derive(Default)]
struct Tally {
    passed: usize,
    /// Failed assertions and crashes (time limits not included).
    failed: usize,
    /// Killed at a time limit ([`ktap::TestResult::timed_out`]).
    timed_out: usize,
    skipped: usize,
}

impl Tally {
    fn add(&mut self, t: &Tally) {
        self.passed += t.passed;
        self.failed += t.failed;
        self.timed_out += t.timed_out;
        self.skipped += t.skipped;
    }

    /// `N passed, N failed[, N timed out][, N skipped]`.
    fn line(&self) -> String {
        let mut s = format!("{} passed, {} failed", self.passed, self.failed);
        if self.timed_out > 0 {
            s.push_str(&format!(", {} TIMED OUT", self.timed_out));
        }
        if self.skipped > 0 {
            s.push_str(&format!(", {} skipped", self.skipped));
        }
        s
    }
}

/// One row of the closing time table.
struct Row {
    name: String,
    what: String,
    ok: bool,
    verdict: String,
    tally: Tally,
    build: Duration,
    boot: Duration,
    speed: Option<f64>,
}

/// The test program that proves a firmware boot path: a boot from disk.img
/// runs only this (unless `--only` says otherwise); the `-kernel` boot of
/// the same image runs every program.
const BOOT_PATH_TESTS: &[&str] = &["boot"];

#[derive(clap::Args)]
pub struct Args {
    /// Profiles to boot for the in-guest tests, one after another
    /// (comma-separated or repeated). `debug` is the suite on the KASAN,
    /// lockdep and kmemleak kernel.
    #[arg(long, short, value_delimiter = ',', default_values = ["test", "debug"])]
    pub profile: Vec<String>,
    #[command(flatten)]
    pub boot: BootOpts,
    /// Run only these in-guest test programs (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Skip the host tests (`cargo test`).
    #[arg(long)]
    pub no_host: bool,
    /// Skip the disk boots: by default a profile with `disk.test_boots`
    /// (the test profile) also runs the boot test (or the --only programs)
    /// from disk.img under OVMF (UEFI) and under SeaBIOS (BIOS), each its
    /// own run in the tally; then the disk.img of its `disk.pc_profile`
    /// booted like a PC (UEFI from NVMe, BIOS from a USB stick written by
    /// flash to a loop device), read by OCR. This skips those too.
    #[arg(long)]
    pub no_disk: bool,
    /// Keep each run's logs in DIR/<run> instead of images/logs/<run>/
    /// (runs: `test`, `test-uefi`, `test-bios`, `test-pc-uefi-nvme`,
    /// `test-pc-bios-usb`, `debug`).
    #[arg(long, value_name = "DIR")]
    pub logs: Option<PathBuf>,
}

impl Args {
    /// Where the run `name` keeps its logs.
    fn logs(&self, project: &Project, name: &str) -> PathBuf {
        let dir = self
            .logs
            .clone()
            .unwrap_or_else(|| project.images().join("logs"));
        dir.join(name.replace('/', "-"))
    }
}

pub fn run(project: &Project, args: &Args) -> Result<ExitCode> {
    // Load every profile first: a typo fails before anything is built.
    let profiles = args
        .profile
        .iter()
        .map(|p| project.profile(p))
        .collect::<Result<Vec<_>>>()?;
    let opts = &args.boot;
    if !args.no_host {
        eprintln!("host tests: cargo test --workspace");
        let status = deps::command("cargo")
            .current_dir(&project.root)
            .args(["test", "--workspace", "--locked", "--quiet"])
            .status()
            .context("running cargo test")?;
        if !status.success() {
            println!("host tests FAILED");
            return Ok(ExitCode::FAILURE);
        }
    }
    let mut total = Tally::default();
    let mut all_passed = true;
    let mut rows = Vec::new();
    for profile in &profiles {
        // The suite via -kernel, then from disk.img under OVMF and SeaBIOS
        // when the profile asks for it: each is its own run in the tally.
        let mut media = vec![None];
        if !args.no_disk && profile.disk.test_boots {
            media.extend([Some(DiskBoot::Uefi), Some(DiskBoot::Bios)]);
        }
        for m in media {
            let name = match m {
                None => profile.name.clone(),
                Some(d) => format!("{}/{}", profile.name, d.name()),
            };
            let row = run_profile(project, profile, args, m, &name)?;
            all_passed &= row.ok;
            total.add(&row.tally);
            rows.push(row);
        }
        // Then another profile's disk.img booted like a PC, read by OCR.
        if !args.no_disk && !profile.disk.pc_profile.is_empty() {
            let scale = rows
                .iter()
                .find(|r| r.name == profile.name)
                .and_then(|r| r.speed)
                .unwrap_or(1.0);
            for (firmware, storage) in PC_BOOTS {
                let name = format!("{}/pc-{}-{}", profile.name, firmware.name(), storage.name());
                let logs = args.logs(project, &name);
                let row = run_pc(
                    project, profile, opts, *firmware, *storage, scale, &name, logs,
                )?;
                all_passed &= row.ok;
                total.add(&row.tally);
                rows.push(row);
            }
        }
    }
    print_table(&rows);
    if rows.len() > 1 {
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        println!("{} (runs: {})", total.line(), names.join(", "));
    }
    Ok(if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The PC boots of a profile with `disk.pc_profile`: UEFI from an NVMe
/// disk (the published disk.img), and BIOS from a USB stick that `flash`
/// wrote (a loop device). Few and short: each is one boot to a prompt,
/// one command, the power button.
const PC_BOOTS: &[(DiskBoot, pc::Storage)] = &[
    (DiskBoot::Uefi, pc::Storage::Nvme),
    (DiskBoot::Bios, pc::Storage::Usb),
];

/// What the PC boots type, and what its output line must contain: a
/// deterministic demo, run by detrun, reporting its result.
const PC_COMMAND: &str = "detrun /usr/bin/demo-det md5";
const PC_EXPECT: &[&str] = &["impl=det", "hash=", "ok=yes"];

/// One PC boot of `profile.disk.pc_profile`'s disk.img (see [`pc`]).
#[allow(clippy::too_many_arguments)]
fn run_pc(
    project: &Project,
    profile: &Profile,
    opts: &BootOpts,
    firmware: DiskBoot,
    storage: pc::Storage,
    scale: f64,
    name: &str,
    logs: PathBuf,
) -> Result<Row> {
    let started = Instant::now();
    let target = project.profile(&profile.disk.pc_profile)?;
    let image = build::build(project, &target)?;
    let boot = Boot::resolve(project, &target, &image, opts);
    fs::create_dir_all(&logs)?;
    // A USB stick is the published image as `flash` writes it, to a loop
    // device: the bytes written are the bytes that boot.
    let stick = match storage {
        pc::Storage::Usb => Some(LoopDevice::flashed(&image.disk_image, &logs)?),
        pc::Storage::Nvme => None,
    };
    let disk = stick
        .as_ref()
        .map_or(image.disk_image.as_path(), |s| s.device.as_path());
    let what = format!(
        "{} on {} via {}{}",
        project.show(&image.disk_image),
        storage.name(),
        firmware.name(),
        if stick.is_some() {
            " (flashed to a loop device)"
        } else {
            ""
        }
    );
    eprintln!(
        "booting {what} like a PC: VGA, USB keyboard, no serial port; reading the screen by OCR"
    );
    let build = started.elapsed();
    let pc = pc::Pc {
        disk,
        firmware,
        storage,
        accel: boot.accel,
        cpus: boot.cpus,
        memory_mib: boot.memory_mib,
        scale,
        command: PC_COMMAND,
        expect: PC_EXPECT,
        logs: logs.clone(),
    };
    let booted = Instant::now();
    let result = pc::run(&pc);
    let elapsed = booted.elapsed();
    drop(stick);
    let tag = format!("[{name}]");
    let ok = match &result {
        Ok(seen) => {
            println!(
                "{tag} ok   prompt on the screen after {:.1} s (wall, QEMU start to the first screen read showing it)",
                seen.to_prompt.as_secs_f64()
            );
            // The output lines as read (they may wrap, OCR may add a stray
            // character: see pc::shows_output).
            let typed = pc::normalized(PC_COMMAND);
            let lines: Vec<&str> = seen
                .screen
                .lines()
                .filter(|l| {
                    let n = pc::normalized(l);
                    !n.contains(&typed) && PC_EXPECT.iter().any(|e| n.contains(e))
                })
                .map(str::trim)
                .collect();
            println!(
                "{tag} ok   typed `{PC_COMMAND}`, the screen read: {}",
                lines.join(" / ")
            );
            println!("{tag} ok   the power button powered it off");
            true
        }
        Err(e) => {
            println!("{tag} FAIL {e:#}");
            println!(
                "{tag} screenshots and their OCR text: {}",
                project.show(&logs)
            );
            false
        }
    };
    let tally = Tally {
        passed: usize::from(ok),
        failed: usize::from(!ok),
        ..Tally::default()
    };
    Ok(Row {
        name: name.to_string(),
        what,
        ok,
        verdict: if ok { "PASSED" } else { "FAILED" }.to_string(),
        tally,
        build,
        boot: elapsed,
        speed: Some(scale),
    })
}

/// A loop device over a file in a run's log directory, with a disk image
/// written to it by `flash`; detached and removed when dropped.
struct LoopDevice {
    device: PathBuf,
    file: PathBuf,
}

impl LoopDevice {
    fn flashed(image: &Path, dir: &Path) -> Result<LoopDevice> {
        let file = dir.join("stick.img");
        // Larger than the image, as a real stick is: flash moves the
        // backup GPT to the end.
        let size = fs::metadata(image)?.len() + (16 << 20);
        fs::File::create(&file)?.set_len(size)?;
        let out = deps::command("losetup")
            .args(["--find", "--show"])
            .arg(&file)
            .output()
            .context("running losetup")?;
        if !out.status.success() {
            let _ = fs::remove_file(&file);
            bail!(
                "losetup --find --show {}: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let device = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let stick = LoopDevice { device, file };
        crate::flash::run(image, &stick.device, true)
            .with_context(|| format!("flashing {}", stick.device.display()))?;
        Ok(stick)
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = deps::command("losetup")
            .arg("-d")
            .arg(&self.device)
            .status();
        let _ = fs::remove_file(&self.file);
    }
}

/// The per-boot time table: where the suite's time went.
fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<18} {:<8} {:>8} {:>8} {:>6}  {:<34} what",
        "run", "verdict", "build s", "boot s", "speed", "results"
    );
    let mut build = Duration::ZERO;
    let mut boot = Duration::ZERO;
    for r in rows {
        build += r.build;
        boot += r.boot;
        println!(
            "{:<18} {:<8} {:>8.1} {:>8.1} {:>6}  {:<34} {}",
            r.name,
            r.verdict,
            r.build.as_secs_f64(),
            r.boot.as_secs_f64(),
            r.speed.map_or("-".to_string(), |s| format!("{s:.2}")),
            r.tally.line(),
            r.what
        );
    }
    println!(
        "{:<18} {:<8} {:>8.1} {:>8.1}",
        "total",
        "",
        build.as_secs_f64(),
        boot.as_secs_f64()
    );
}

/// Boot one profile's image with `det.run=tests` and report: with the
/// kernel handed to QEMU, or from disk.img through firmware.
fn run_profile(
    project: &Project,
    profile: &Profile,
    args: &Args,
    disk: Option<DiskBoot>,
    name: &str,
) -> Result<Row> {
    let started = Instant::now();
    let logs = args.logs(project, name);
    let image = build::build(project, profile)?;
    let mut boot = Boot::resolve(project, profile, &image, &args.boot);
    let mut extra = Vec::new();
    if !args.only.is_empty() {
        extra.push(cmdline::only_tests(&args.only));
    } else if disk.is_some() {
        extra.push(cmdline::only_tests(BOOT_PATH_TESTS));
    }
    let cmdline = cmdline::harness(profile, boot.cpus, &Mode::Tests, &extra);
    let mut what = format!("images/{}", profile.name);
    if let Some(d) = disk {
        let path = image.disk_for(profile, &cmdline, &logs)?;
        what = format!("{} via {}", project.show(&path), d.name());
        boot.media = Media::Disk {
            image: path,
            firmware: d.firmware(&logs)?,
        };
    }
    eprintln!(
        "booting {what} ({} CPUs, {:?}, limit {}s x the guest's speed factor)",
        boot.cpus,
        boot.accel,
        boot.timeout.as_secs()
    );
    let build = started.elapsed();
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
        if r.timed_out() {
            println!("--- {} ---", timeout_line(&report, r));
        } else if !r.diagnostics.is_empty() {
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
        failed: failed - report.timed_out(),
        timed_out: report.timed_out(),
        skipped: report.skipped(),
    };
    let verdict = if ok {
        c.verdict.to_string()
    } else if c.verdict.is_pass() && tally.failed == 0 {
        "TIMEOUT".to_string()
    } else if c.verdict.is_pass() {
        "FAILED".to_string()
    } else {
        c.verdict.to_string()
    };
    println!(
        "{tag} {} ({verdict}, {:.1}s)",
        tally.line(),
        o.elapsed.as_secs_f64()
    );
    Ok(Row {
        name: name.to_string(),
        what,
        ok,
        verdict,
        tally,
        build,
        boot: o.elapsed,
        speed: o.speed,
    })
}

/// `TIMEOUT <name>: <the limit line>; before it: N results, the last <x>`:
/// which kind of red this is, its limit, and how far the program got.
fn timeout_line(report: &ktap::Report, r: &ktap::TestResult) -> String {
    let limit = r
        .diagnostics
        .iter()
        .rev()
        .find(|d| d.contains("killed after") || d.contains("terminated by timeout"))
        .map_or("killed at its time limit", String::as_str);
    let prefix = format!("{}.", r.name);
    let before: Vec<&str> = report
        .results
        .iter()
        .filter(|x| x.name.starts_with(&prefix))
        .map(|x| x.name.as_str())
        .collect();
    match before.last() {
        Some(last) => format!(
            "TIMEOUT {}: {limit}; it had reported {} results, the last {last}",
            r.name,
            before.len()
        ),
        None => format!("TIMEOUT {}: {limit}", r.name),
    }
}

fn result_line(r: &ktap::TestResult) -> String {
    let tag = match r.outcome {
        Outcome::Pass => "ok  ",
        Outcome::Fail if r.timed_out() => "TIMEOUT",
        Outcome::Fail => "FAIL",
        Outcome::Skip => "skip",
    };
    match &r.directive {
        Some(d) if !d.is_empty() => format!("{tag} {} # {d}", r.name),
        _ => format!("{tag} {}", r.name),
    }
}
