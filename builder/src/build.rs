//! `cargo det build`: kernel + userland + initramfs → `images/<profile>/`.
//!
//! The profile's outputs are assembled in a staging directory and swapped
//! in with one atomic `renameat2(RENAME_EXCHANGE)`, so `images/<profile>/`
//! always holds one complete, consistent build (never a mix, never a
//! half-written file), even after a failure or Ctrl-C. When nothing
//! changed, nothing is written.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;

use crate::cmdline;
use crate::disk::{self, Disk};
use crate::fsutil;
use crate::initramfs;
use crate::kernel::{self, Kernel};
use crate::profile::{Profile, ProfileArg};
use crate::project::Project;
use crate::userland;

/// The build verbs, each up to its stage: `kernel`, `userland`,
/// `initramfs` and `build` (the whole image).
#[derive(Clone, Copy)]
pub enum Stage {
    Kernel,
    Userland,
    Initramfs,
    Image,
}

/// Build `args`'s profile up to `stage` and print what it made.
pub fn stage(project: &Project, stage: Stage, args: &ProfileArg) -> Result<ExitCode> {
    let profile = project.profile(&args.profile)?;
    if let Stage::Image = stage {
        println!("{}", build(project, &profile)?.dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let kernel = kernel::build(project, &profile)?;
    if let Stage::Kernel = stage {
        println!("{}", kernel.bzimage.display());
        return Ok(ExitCode::SUCCESS);
    }
    let userland = userland::build(project, &profile, &kernel)?;
    if let Stage::Userland = stage {
        for bin in &userland.programs {
            println!("{}", bin.path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let initramfs = initramfs::build(project, &profile, &userland)?;
    println!("{}", initramfs.path.display());
    Ok(ExitCode::SUCCESS)
}

/// A profile's published image.
pub struct Image {
    pub dir: PathBuf,
    pub bzimage: PathBuf,
    pub initramfs: PathBuf,
    /// `disk.img` (GPT, UEFI + BIOS bootable) and the UKI in it.
    pub disk_image: PathBuf,
    pub uki: PathBuf,
    pub kernel: Kernel,
    pub disk: Disk,
    /// The `libdeterm.a` built with the image's programs (outside the
    /// image: the release's SDK ships it).
    pub libdeterm: PathBuf,
}

pub fn build(project: &Project, profile: &Profile) -> Result<Image> {
    let started = std::time::Instant::now();
    let kernel = kernel::build(project, profile)?;
    let userland = userland::build(project, profile, &kernel)?;
    let initramfs = initramfs::build(project, profile, &userland)?;
    let cmdline = cmdline::console(profile);
    let disk = disk::build(
        project,
        &disk::Inputs {
            profile,
            bzimage: &kernel.bzimage,
            initramfs: &initramfs.path,
            os_release: initramfs::os_release(profile),
            cmdline: cmdline::builtin(profile),
        },
    )?;

    let outputs: [(&str, &Path); 2] = [
        ("bzImage", &kernel.bzimage),
        ("initramfs.cpio.gz", &initramfs.path),
    ];
    let mut out_list = Vec::new();
    for (name, path) in outputs {
        out_list.push(json!({
            "name": name,
            "size": fs::metadata(path)?.len(),
            "sha256": fsutil::sha256_file(path)?,
        }));
    }
    out_list.push(json!({
        "name": "detlinux.efi",
        "size": disk.uki_size,
        "sha256": disk.uki_sha256,
    }));
    out_list.push(json!({
        "name": "disk.img",
        "size": disk.size,
        "sha256": disk.sha256,
    }));
    out_list.push(json!({
        "name": "cmdline",
        "size": cmdline.len() + 1,
        "sha256": fsutil::sha256_bytes(format!("{cmdline}\n").as_bytes()),
    }));
    let manifest = json!({
        "profile": profile.name,
        "profile_files": profile.files.iter()
            .map(|f| project.show(f).to_string()).collect::<Vec<_>>(),
        "source_date_epoch": profile.build.source_date_epoch,
        "kernel": {
            "version": kernel.version,
            "tarball": kernel.tarball,
            "tarball_sha256": kernel.tarball_sha256,
            "patches_sha256": kernel.patches_sha256,
            "config_sha256": kernel.config_sha256,
            "fragments": profile.kernel.fragments,
        },
        "outputs": out_list,
        "disk": {
            "cmdline": disk.cmdline,
            "channels": profile.disk.channels,
            "disk_guid": disk.disk_guid,
            "partitions": disk.partitions,
            "esp_files": disk.esp_files,
        },
        "initramfs_files": initramfs.files,
    });
    let manifest = serde_json::to_string_pretty(&manifest)? + "\n";

    let dir = project.output(&profile.name);
    let image = Image {
        bzimage: dir.join("bzImage"),
        initramfs: dir.join("initramfs.cpio.gz"),
        disk_image: dir.join("disk.img"),
        uki: dir.join("detlinux.efi"),
        dir: dir.clone(),
        kernel,
        disk,
        libdeterm: userland.libdeterm,
    };
    let current = fs::read_to_string(dir.join("manifest.json")).unwrap_or_default();
    let complete = [
        &image.bzimage,
        &image.initramfs,
        &image.disk_image,
        &image.uki,
    ]
    .iter()
    .all(|p| p.is_file());
    if current == manifest && complete {
        eprintln!(
            "images/{}: up to date ({:.1}s)",
            profile.name,
            started.elapsed().as_secs_f64()
        );
        return Ok(image);
    }

    let staging =
        project
            .images()
            .join(format!(".staging-{}-{}", profile.name, std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)?;
    let result = (|| -> Result<()> {
        fs::copy(&image.kernel.bzimage, staging.join("bzImage"))?;
        fs::copy(&initramfs.path, staging.join("initramfs.cpio.gz"))?;
        fs::copy(&image.disk.uki, staging.join("detlinux.efi"))?;
        fs::copy(&image.disk.image, staging.join("disk.img"))?;
        fs::write(staging.join("cmdline"), format!("{cmdline}\n"))?;
        fs::write(staging.join("manifest.json"), &manifest)?;
        fs::File::open(&staging)?.sync_all()?;
        publish(&staging, &dir)
    })();
    let _ = fs::remove_dir_all(&staging);
    result?;
    clean_stale_staging(&project.images());
    let size = |p: &Path| fs::metadata(p).map(|m| m.len() / 1024).unwrap_or(0);
    eprintln!(
        "images/{}: bzImage {} KiB, initramfs {} KiB, UKI {} KiB, disk.img {} MiB ({:.1}s)",
        profile.name,
        size(&image.bzimage),
        size(&image.initramfs),
        size(&image.uki),
        size(&image.disk_image) / 1024,
        started.elapsed().as_secs_f64()
    );
    Ok(image)
}

impl Image {
    /// The disk a harness run with `cmdline` boots: the published disk.img
    /// when its built-in command line is exactly `cmdline`, else a one-off
    /// copy with `cmdline` built in, written to `dir`.
    pub fn disk_for(&self, profile: &Profile, cmdline: &str, dir: &Path) -> Result<PathBuf> {
        if self.disk.cmdline == cmdline {
            return Ok(self.disk_image.clone());
        }
        fs::create_dir_all(dir)?;
        disk::build_scratch(
            &disk::Inputs {
                profile,
                bzimage: &self.bzimage,
                initramfs: &self.initramfs,
                os_release: initramfs::os_release(profile),
                cmdline: cmdline.to_string(),
            },
            dir,
        )
    }
}

/// Put `staging` at `dir`: a plain rename when `dir` does not exist, else
/// an atomic exchange followed by removal of the old contents.
pub fn publish(staging: &Path, dir: &Path) -> Result<()> {
    if !dir.exists() {
        return fs::rename(staging, dir)
            .with_context(|| format!("renaming {} to {}", staging.display(), dir.display()));
    }
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, staging, CWD, dir, RenameFlags::EXCHANGE)
        .with_context(|| format!("exchanging {} with {}", staging.display(), dir.display()))?;
    // `staging` now holds the old outputs; the caller removes it.
    Ok(())
}

/// Staging directories of builds that were killed before they finished.
fn clean_stale_staging(images: &Path) {
    let Ok(rd) = fs::read_dir(images) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(rest) = name.strip_prefix(".staging-") {
            let pid = rest
                .rsplit('-')
                .next()
                .and_then(|p| p.parse::<i32>().ok())
                .and_then(rustix::process::Pid::from_raw);
            // Signal 0: only whether the process exists.
            let alive = pid.is_some_and(|p| rustix::process::test_kill_process(p).is_ok());
            if !alive {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_swaps_whole_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let dir = root.join("out");
        let stage = root.join("stage");
        fs::create_dir_all(&stage).unwrap();
        fs::write(stage.join("a"), "1").unwrap();
        publish(&stage, &dir).unwrap();
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "1");
        fs::create_dir_all(&stage).unwrap();
        fs::write(stage.join("b"), "2").unwrap();
        publish(&stage, &dir).unwrap();
        assert!(!dir.join("a").exists());
        assert_eq!(fs::read_to_string(dir.join("b")).unwrap(), "2");
        assert!(stage.join("a").exists(), "old contents left for removal");
    }
}
