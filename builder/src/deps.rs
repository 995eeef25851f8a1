//! `cargo det deps`: the host packages the build needs.
//!
//! Checked (quickly, one `dpkg-query`) before every other verb. Missing
//! packages are installed non-interactively with apt-get when running as
//! root; otherwise the verb stops with the exact command to run.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::project::Project;

/// Debian packages and what needs them.
pub const PACKAGES: &[(&str, &str)] = &[
    ("bc", "kernel build"),
    ("binutils", "the unified kernel image (objcopy)"),
    ("bison", "kernel build"),
    ("busybox-static", "the guest shell"),
    ("dosfstools", "the disk image's EFI partition"),
    ("e2fsprogs", "the disk image's data partition (mke2fs)"),
    ("fdisk", "the disk image's partition table"),
    ("flex", "kernel build"),
    ("gcc", "kernel build and C test programs"),
    ("libc6-dev", "static C test programs"),
    ("libelf-dev", "kernel build (objtool)"),
    ("libssl-dev", "kernel build"),
    ("linux-source-6.12", "the kernel sources"),
    ("make", "kernel build"),
    ("mtools", "the disk image's EFI partition"),
    ("ovmf", "UEFI boots in QEMU"),
    ("patch", "the kernel hook patches"),
    ("qemu-system-x86", "booting images"),
    ("rsync", "kernel build (headers_install)"),
    ("syslinux", "BIOS boots of the disk image"),
    ("syslinux-common", "BIOS boots of the disk image"),
    ("systemd-boot-efi", "the unified kernel image stub"),
    ("xz-utils", "unpacking the kernel tarball"),
];

/// The packages that are not installed.
pub fn missing() -> Result<Vec<&'static str>> {
    let names: Vec<&str> = PACKAGES.iter().map(|(n, _)| *n).collect();
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${db:Status-Abbrev}\n"])
        .args(&names)
        .output()
        .context("running dpkg-query (is this a Debian system?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let (name, status) = l.split_once(' ')?;
            status.starts_with("ii").then_some(name)
        })
        .collect();
    Ok(names
        .into_iter()
        .filter(|n| !installed.contains(n))
        .collect())
}

fn install_command(pkgs: &[&str]) -> String {
    format!(
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {}",
        pkgs.join(" ")
    )
}

/// Make sure every package is there, installing if we may.
pub fn ensure(_project: &Project) -> Result<()> {
    let missing = missing()?;
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        bail!(
            "missing host packages: {}\nrun as root:\n  {}",
            missing.join(", "),
            install_command(&missing)
        );
    }
    eprintln!("installing host packages: {}", missing.join(" "));
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .status()
            .context("running apt-get")
    };
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(&missing);
    if !apt(&install)?.success() {
        // Stale or absent package lists are the usual cause: refresh, retry.
        if !apt(&["update", "-q"])?.success() || !apt(&install)?.success() {
            bail!(
                "apt-get could not install: {}\ntry:\n  {}",
                missing.join(", "),
                install_command(&missing)
            );
        }
    }
    let still = self::missing()?;
    if !still.is_empty() {
        bail!("still missing after apt-get: {}", still.join(", "));
    }
    Ok(())
}

/// The `deps` verb: report, then install what is missing.
pub fn run(project: &Project) -> Result<()> {
    let missing = missing()?;
    for (name, why) in PACKAGES {
        let state = if missing.contains(name) {
            "missing"
        } else {
            "ok"
        };
        println!("{state:>8}  {name:<20} {why}");
    }
    ensure(project)?;
    if !missing.is_empty() {
        println!("installed: {}", missing.join(" "));
    }
    Ok(())
}
