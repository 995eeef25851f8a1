//! `cargo det`: the detlinux image builder.
//!
//! One entry point with flat dispatch: the whole command line is declared in
//! [`Cli`] (its doc comments are the `--help` text), and each verb lives in a
//! module of its own. Every verb except `deps` first checks the host tools.
//!
//! No unsafe code: system calls go through rustix.

#![forbid(unsafe_code)]

mod bench;
mod build;
mod check;
mod deps;
mod disk;
mod flash;
mod fsutil;
mod gpt;
mod initramfs;
mod kernel;
mod ktap;
mod pc;
mod pe;
mod plot;
mod profile;
mod progress;
mod project;
mod qemu;
mod release;
mod test;
#[cfg(test)]
mod tidy;
mod userland;
mod verdict;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Build, boot and test detlinux images.
///
/// Outputs go to images/<profile>/; caches to images/.cache/. Profiles are
/// TOML files in configs/ (see docs/profiles.md).
#[derive(Parser)]
#[command(name = "cargo det", bin_name = "cargo det", version)]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Check every host tool the build runs (builder/src/deps.rs); install
    /// missing ones with apt-get when running as root, else print the
    /// command to run.
    Deps,
    /// Build the kernel (bzImage) for a profile; cached by all its inputs.
    Kernel(ProfileArg),
    /// Build the static guest programs (init, tests, demos).
    Userland(ProfileArg),
    /// Pack the guest programs and busybox into the initramfs.
    Initramfs(ProfileArg),
    /// Build everything for a profile into images/<profile>/, atomically:
    /// bzImage, initramfs, the UKI (detlinux.efi) and disk.img.
    Build(ProfileArg),
    /// Boot a profile in QEMU (its kernel, or with --disk its disk.img): an
    /// interactive shell on the serial console, or run one command in the
    /// guest and exit with its status.
    Run(RunArgs),
    /// Run the host tests, then boot the test and debug profiles and run the
    /// in-guest test programs (the test profile's boot test also from
    /// disk.img under UEFI and BIOS, then the default disk.img booted like a
    /// PC: no serial port, a command typed on the USB keyboard, the VGA
    /// screen read by OCR); ends with a per-boot time table and exits
    /// non-zero on any failure or time limit (TIMEOUT).
    Test(TestArgs),
    /// Build the default profile, boot it and run the preinstalled demos.
    Demo(BootOpts),
    /// Measure det ÷ pthread for md5, qsort, matmult and lu in a guest
    /// (the thesis's Tables 4 and 5) and the share of the det run spent in
    /// merge; writes images/bench/results.csv, results.json, table.txt,
    /// overhead-<demo>.svg/.png and merge-<demo>.svg/.png, and prints the
    /// table beside the thesis's figures. See docs/benchmarks.md.
    Bench(BenchArgs),
    /// Run each demo K times per CPU count, with and without background
    /// load, in a guest; print the number of distinct result hashes per
    /// demo and version. Fails if a deterministic demo (or a race-free
    /// pthread one) gives more than one, a run fails, or the guest crashes.
    Check(CheckArgs),
    /// Boot the test profile and run the memory-operation microbenchmark
    /// (merge per dirty MiB vs memcpy, one- and two-sided; merge of clean
    /// and sparse ranges; snapshot vs fork; libdeterm fork + join of a
    /// child writing 1, 64 and 4096 pages vs fork() + the same writes +
    /// waitpid); it reports figures and ratios beside their goals, it does
    /// not judge them.
    Membench(BootOpts),
    /// Write a profile's disk.img to a block device (a USB stick, a test
    /// machine's disk). Refuses the system disk, a mounted or busy device,
    /// a device smaller than the image and anything that is not a block
    /// device; asks before writing unless --yes; moves the backup GPT to
    /// the device's end and reads everything back.
    Flash(FlashArgs),
    /// Build the dist profile and write images/release/: the tarball
    /// (bzImage, initramfs, UKI, disk image, libdeterm SDK), manifest.json,
    /// an SPDX 2.3 SBOM and SHA256SUMS.
    Release,
    /// Rebuild the release from a clean clone of HEAD in a temporary
    /// directory (other HOME, USER, TZ, locale and umask, a later clock)
    /// and compare every artifact byte for byte, naming the first
    /// differing file inside any that differ. Takes a full kernel build.
    Verify(VerifyArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Profile to boot.
    #[arg(long, short, default_value = "bench")]
    profile: String,
    /// A few sizes per demo with shorter runs (minutes, not an hour).
    #[arg(long)]
    quick: bool,
    /// Only these demos (comma-separated: md5, qsort, matmult, lu).
    #[arg(long, value_delimiter = ',')]
    demos: Vec<String>,
    /// Instead of the built-in plan: DEMO:SIZE[,SIZE...] items, e.g.
    /// `--plan lu:16,2048 --plan qsort:1000`.
    #[arg(long)]
    plan: Vec<String>,
    /// Values of N (guest CPUs used), comma-separated; default 1..=CPUs.
    #[arg(long, value_delimiter = ',')]
    n: Vec<u32>,
    /// Each timed run lasts at least this long (default 2, --quick 0.5).
    #[arg(long)]
    min_secs: Option<f64>,
    /// Runs per timing; the median counts.
    #[arg(long, default_value_t = 1)]
    trials: u32,
    /// Do not boot: redraw the table and plots from images/bench/results.json.
    #[arg(long)]
    replot: bool,
    #[command(flatten)]
    boot: BootOpts,
}

#[derive(Args)]
struct CheckArgs {
    /// Profile to boot.
    #[arg(long, short, default_value = "bench")]
    profile: String,
    /// Runs per demo, version, CPU count and load setting (K).
    #[arg(long, short = 'k', default_value_t = 100)]
    runs: u32,
    /// Only without background load.
    #[arg(long)]
    no_load: bool,
    /// Only these demos (comma-separated: md5, qsort, matmult, lu, gauss).
    #[arg(long, value_delimiter = ',')]
    demos: Vec<String>,
    #[command(flatten)]
    boot: BootOpts,
}

#[derive(Args)]
struct VerifyArgs {
    /// Instead: check a downloaded release directory against its
    /// SHA256SUMS and manifest.json (every tarball member too).
    #[arg(long, value_name = "DIR")]
    release: Option<PathBuf>,
    /// Keep the clean clone even when everything matched.
    #[arg(long)]
    keep: bool,
}

#[derive(Args)]
struct FlashArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// The whole-disk block device to write, e.g. /dev/sdb.
    #[arg(long)]
    device: PathBuf,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
}

#[derive(Args, Clone)]
pub struct ProfileArg {
    /// Profile name: configs/<PROFILE>.toml.
    #[arg(long, short, default_value = "default")]
    pub profile: String,
}

/// Options for every verb that boots a guest.
#[derive(Args, Clone)]
pub struct BootOpts {
    /// Accelerator (overrides the profile).
    #[arg(long, value_enum)]
    pub accel: Option<profile::AccelChoice>,
    /// Guest CPUs (overrides the profile).
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Time limit for the whole boot, in seconds (overrides the profile;
    /// a test run multiplies it by the guest's speed factor).
    #[arg(long)]
    pub timeout: Option<u64>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    profile: ProfileArg,
    #[command(flatten)]
    boot: BootOpts,
    /// Boot images/<profile>/disk.img through firmware instead of handing
    /// QEMU the kernel: UEFI (OVMF, the default) or BIOS (SeaBIOS). A
    /// command runs from a one-off copy of the disk whose built-in command
    /// line carries it; without one the disk boots as published.
    #[arg(long)]
    disk: bool,
    /// With --disk: boot under OVMF (implies --disk).
    #[arg(long, conflicts_with = "bios")]
    uefi: bool,
    /// With --disk: boot under SeaBIOS through syslinux (implies --disk).
    #[arg(long)]
    bios: bool,
    /// Command to run in the guest (through /bin/sh); without one, an
    /// interactive shell on the serial console.
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Args)]
struct TestArgs {
    /// Profiles to boot for the in-guest tests, one after another
    /// (comma-separated or repeated). `debug` is the suite on the KASAN,
    /// lockdep and kmemleak kernel.
    #[arg(long, short, value_delimiter = ',', default_values = ["test", "debug"])]
    profile: Vec<String>,
    #[command(flatten)]
    boot: BootOpts,
    /// Run only these in-guest test programs (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Skip the host tests (`cargo test`).
    #[arg(long)]
    no_host: bool,
    /// Skip the disk boots: by default a profile with `disk.test_boots`
    /// (the test profile) also runs the boot test (or the --only programs)
    /// from disk.img under OVMF (UEFI) and under SeaBIOS (BIOS), each its
    /// own run in the tally; then the disk.img of its `disk.pc_profile`
    /// booted like a PC (UEFI from NVMe, BIOS from a USB stick written by
    /// flash to a loop device), read by OCR. This skips those too.
    #[arg(long)]
    no_disk: bool,
    /// Keep each run's logs in DIR/<run> instead of images/logs/<run>/
    /// (runs: `test`, `test-uefi`, `test-bios`, `test-pc-uefi-nvme`,
    /// `test-pc-bios-usb`, `debug`).
    #[arg(long)]
    logs: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let project = project::Project::discover()?;
    if !matches!(cli.verb, Verb::Deps) {
        deps::ensure(&project)?;
    }
    match cli.verb {
        Verb::Deps => deps::run(&project).map(|()| ExitCode::SUCCESS),
        Verb::Kernel(p) => {
            let profile = project.profile(&p.profile)?;
            let k = kernel::build(&project, &profile)?;
            println!("{}", k.bzimage.display());
            Ok(ExitCode::SUCCESS)
        }
        Verb::Userland(p) => {
            let profile = project.profile(&p.profile)?;
            let kernel = kernel::build(&project, &profile)?;
            let u = userland::build(&project, &profile, &kernel)?;
            for bin in &u.programs {
                println!("{}", bin.path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::Initramfs(p) => {
            let profile = project.profile(&p.profile)?;
            let kernel = kernel::build(&project, &profile)?;
            let u = userland::build(&project, &profile, &kernel)?;
            let i = initramfs::build(&project, &profile, &u)?;
            println!("{}", i.path.display());
            Ok(ExitCode::SUCCESS)
        }
        Verb::Build(p) => {
            let profile = project.profile(&p.profile)?;
            let image = build::build(&project, &profile)?;
            println!("{}", image.dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Verb::Run(args) => {
            let profile = project.profile(&args.profile.profile)?;
            let image = build::build(&project, &profile)?;
            let disk = if args.bios {
                Some(qemu::DiskBoot::Bios)
            } else if args.uefi || args.disk {
                Some(qemu::DiskBoot::Uefi)
            } else {
                None
            };
            qemu::run(&project, &profile, &image, &args.boot, &args.command, disk)
        }
        Verb::Test(args) => test::run(
            &project,
            &args.profile,
            &args.boot,
            &args.only,
            !args.no_host,
            !args.no_disk,
            args.logs,
        ),
        Verb::Flash(args) => {
            let profile = project.profile(&args.profile.profile)?;
            let image = build::build(&project, &profile)?;
            flash::run(&image.disk_image, &args.device, args.yes)?;
            Ok(ExitCode::SUCCESS)
        }
        Verb::Release => {
            let dir = release::build(&project)?;
            println!("{}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Verb::Verify(args) => match args.release {
            Some(dir) => {
                let problems = release::verify_dir(&dir)?;
                for p in &problems {
                    println!("BAD  {p}");
                }
                if problems.is_empty() {
                    println!(
                        "{}: every file matches SHA256SUMS and manifest.json",
                        dir.display()
                    );
                    Ok(ExitCode::SUCCESS)
                } else {
                    println!("{} problem(s) in {}", problems.len(), dir.display());
                    Ok(ExitCode::FAILURE)
                }
            }
            None => verify::run(&project, args.keep),
        },
        Verb::Bench(a) => bench::run(
            &project,
            &bench::Options {
                profile: a.profile,
                quick: a.quick,
                plan: a.plan,
                demos: a.demos,
                cpus: a.n,
                min_secs: a.min_secs,
                trials: a.trials,
                replot: a.replot,
                boot: a.boot,
            },
        ),
        Verb::Check(a) => check::run(
            &project,
            &check::Options {
                profile: a.profile,
                runs: a.runs,
                no_load: a.no_load,
                demos: a.demos,
                boot: a.boot,
            },
        ),
        Verb::Membench(boot) => {
            let profile = project.profile("test")?;
            let image = build::build(&project, &profile)?;
            let bench = format!("/{}/det_membench", userland::BENCH_DIR);
            qemu::run(&project, &profile, &image, &boot, &[bench], None)
        }
        Verb::Demo(boot) => {
            let profile = project.profile("default")?;
            let image = build::build(&project, &profile)?;
            qemu::demo(&project, &profile, &image, &boot)
        }
    }
}
