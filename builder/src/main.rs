//! `cargo det`: the detlinux image builder.
//!
//! One entry point with flat dispatch: [`Cli`] lists the verbs (their doc
//! comments are the `--help` text), each verb lives in a module of its own
//! and declares its own flags there, as a `clap::Args` struct whose doc
//! comments are the verb's `--help`. This file only dispatches. Every verb
//! except `deps` first checks the host tools.
//!
//! No unsafe code: system calls go through rustix.

#![forbid(unsafe_code)]

mod bench;
mod build;
mod check;
mod cmdline;
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
mod run;
mod test;
#[cfg(test)]
mod tidy;
mod userland;
mod verdict;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use build::Stage;
use profile::ProfileArg;
use qemu::BootOpts;

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
    Run(run::Args),
    /// Run the host tests, then boot the test and debug profiles and run the
    /// in-guest test programs (the test profile's boot test also from
    /// disk.img under UEFI and BIOS, then the default disk.img booted like a
    /// PC: no serial port, a command typed on the USB keyboard, the VGA
    /// screen read by OCR); ends with a per-boot time table and exits
    /// non-zero on any failure or time limit (TIMEOUT).
    Test(test::Args),
    /// Build the default profile, boot it and run the preinstalled demos.
    Demo(BootOpts),
    /// Measure det ÷ pthread for md5, qsort, matmult and lu in a guest
    /// (the thesis's Tables 4 and 5) and the share of the det run spent in
    /// merge; writes images/bench/results.csv, results.json, table.txt,
    /// overhead-<demo>.svg/.png and merge-<demo>.svg/.png, and prints the
    /// table beside the thesis's figures. See docs/benchmarks.md.
    Bench(bench::Args),
    /// Run each demo K times per CPU count, with and without background
    /// load, in a guest; print the number of distinct result hashes per
    /// demo and version. Fails if a deterministic demo (or a race-free
    /// pthread one) gives more than one, a run fails, or the guest crashes.
    Check(check::Args),
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
    Flash(flash::Args),
    /// Build the dist profile and write images/release/: the tarball
    /// (bzImage, initramfs, UKI, disk image, libdeterm SDK), manifest.json,
    /// an SPDX 2.3 SBOM and SHA256SUMS.
    Release,
    /// Rebuild the release from a clean clone of HEAD in a temporary
    /// directory (other HOME, USER, TZ, locale and umask, a later clock)
    /// and compare every artifact byte for byte, naming the first
    /// differing file inside any that differ. Takes a full kernel build.
    Verify(verify::Args),
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
        Verb::Kernel(p) => build::stage(&project, Stage::Kernel, &p),
        Verb::Userland(p) => build::stage(&project, Stage::Userland, &p),
        Verb::Initramfs(p) => build::stage(&project, Stage::Initramfs, &p),
        Verb::Build(p) => build::stage(&project, Stage::Image, &p),
        Verb::Run(args) => run::run(&project, &args),
        Verb::Test(args) => test::run(&project, &args),
        Verb::Demo(boot) => run::demo(&project, &boot),
        Verb::Bench(args) => bench::run(&project, &args),
        Verb::Check(args) => check::run(&project, &args),
        Verb::Membench(boot) => run::membench(&project, &boot),
        Verb::Flash(args) => flash::verb(&project, &args),
        Verb::Release => release::verb(&project),
        Verb::Verify(args) => verify::verb(&project, &args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Verb {
        let args = std::iter::once("cargo det").chain(args.iter().copied());
        Cli::try_parse_from(args).unwrap().verb
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_one_disk_option() {
        let Verb::Run(a) = parse(&["run", "--disk", "--", "uname", "-a"]) else {
            panic!("not run")
        };
        assert_eq!(a.disk, Some(qemu::DiskBoot::Uefi));
        assert_eq!(a.command, ["uname", "-a"]);
        let Verb::Run(a) = parse(&["run", "--disk", "bios", "-p", "test"]) else {
            panic!("not run")
        };
        assert_eq!(a.disk, Some(qemu::DiskBoot::Bios));
        assert_eq!(a.profile.profile, "test");
        let Verb::Run(a) = parse(&["run"]) else {
            panic!("not run")
        };
        assert_eq!(a.disk, None);
        assert!(a.command.is_empty());
        let bad = Cli::try_parse_from(["cargo det", "run", "--disk", "floppy"]);
        assert!(bad.is_err());
    }
}
