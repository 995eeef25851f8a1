//! `cargo det flash`: write a profile's disk.img to a block device.
//!
//! Refuses, before writing a byte: a path that is not a block device, the
//! system disk (it or one of its partitions holds `/` or swap), a device
//! that is mounted or held by another block device (device-mapper, RAID),
//! and a device smaller than the image. Then it asks for confirmation
//! (unless `--yes`), writes, moves the backup GPT to the device's last
//! sectors (fixing the primary's AlternateLBA, LastUsableLBA and CRCs, and
//! the protective MBR's size), syncs, drops the device's page cache and
//! reads everything back.
//!
//! The checks take the system's state as data ([`Target`], the text of
//! /proc/mounts and /proc/swaps), so the tests can hand them fakes.

use std::fs;
use std::io::{self, BufRead, IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::gpt::{self, SECTOR};
use crate::profile::ProfileArg;
use crate::project::Project;

/// A block device as the checks see it.
#[derive(Debug, Clone)]
pub struct Target {
    pub path: PathBuf,
    /// Kernel name, e.g. `sdb`, `loop0`.
    pub name: String,
    /// `major:minor` of the device and of each of its partitions.
    pub devs: Vec<(u32, u32)>,
    /// Kernel names of its partitions, e.g. `sdb1`.
    pub partitions: Vec<String>,
    /// Block devices stacked on it (`/sys/class/block/<name>/holders`).
    pub holders: Vec<String>,
    pub size: u64,
}

/// What the checks need to know about the running system.
pub struct System {
    pub mounts: String,
    pub swaps: String,
    /// `major:minor` of the device holding `/`.
    pub root_dev: Option<(u32, u32)>,
    /// Resolves a mount source such as `/dev/sdb1` to `major:minor`.
    pub resolve: Box<dyn Fn(&str) -> Option<(u32, u32)>>,
}

impl System {
    pub fn current() -> System {
        System {
            mounts: fs::read_to_string("/proc/mounts").unwrap_or_default(),
            swaps: fs::read_to_string("/proc/swaps").unwrap_or_default(),
            root_dev: fs::metadata("/").ok().map(|m| split_dev(m.dev())),
            resolve: Box::new(|src| {
                let m = fs::metadata(src).ok()?;
                m.file_type().is_block_device().then(|| split_dev(m.rdev()))
            }),
        }
    }
}

fn split_dev(dev: u64) -> (u32, u32) {
    (rustix::fs::major(dev), rustix::fs::minor(dev))
}

impl Target {
    /// Look `path` up in /dev and /sys. Errors if it is not a block device.
    pub fn probe(path: &Path) -> Result<Target> {
        let meta = fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        if !meta.file_type().is_block_device() {
            bail!(
                "{} is not a block device; refusing to write to it",
                path.display()
            );
        }
        let dev = split_dev(meta.rdev());
        let sys = PathBuf::from(format!("/sys/dev/block/{}:{}", dev.0, dev.1));
        let sys = fs::canonicalize(&sys).with_context(|| format!("{}", sys.display()))?;
        if sys.join("partition").exists() {
            bail!(
                "{} is a partition; flash the whole disk it belongs to",
                path.display()
            );
        }
        let name = sys
            .file_name()
            .context("sysfs path without a name")?
            .to_string_lossy()
            .to_string();
        let read = |p: PathBuf| fs::read_to_string(p).unwrap_or_default();
        let size = read(sys.join("size")).trim().parse::<u64>().unwrap_or(0) * 512;
        let mut devs = vec![dev];
        let mut partitions = Vec::new();
        for e in fs::read_dir(&sys)?.flatten() {
            if e.path().join("partition").exists() {
                partitions.push(e.file_name().to_string_lossy().to_string());
                let d = read(e.path().join("dev"));
                if let Some((a, b)) = d.trim().split_once(':') {
                    if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                        devs.push((a, b));
                    }
                }
            }
        }
        partitions.sort();
        let mut holders: Vec<String> = fs::read_dir(sys.join("holders"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        for p in &partitions {
            if let Ok(rd) = fs::read_dir(sys.join(p).join("holders")) {
                holders.extend(
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().to_string()),
                );
            }
        }
        Ok(Target {
            path: path.to_path_buf(),
            name,
            devs,
            partitions,
            holders,
            size,
        })
    }

    fn owns(&self, dev: Option<(u32, u32)>, source: &str) -> bool {
        if dev.is_some_and(|d| self.devs.contains(&d)) {
            return true;
        }
        let base = source.rsplit('/').next().unwrap_or(source);
        source.starts_with("/dev/")
            && (base == self.name || self.partitions.iter().any(|p| p == base))
    }
}

/// Every reason not to write to `t`, checked in order: system disk,
/// mounted, held, too small. Nothing is written by this function.
pub fn check(t: &Target, sys: &System, image_size: u64) -> Result<()> {
    let mounts: Vec<(&str, &str)> = sys
        .mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?))
        })
        .collect();
    let shown = t.path.display();
    if sys.root_dev.is_some_and(|d| t.devs.contains(&d))
        || mounts
            .iter()
            .any(|(src, at)| *at == "/" && t.owns((sys.resolve)(src), src))
    {
        bail!("{shown} holds the root file system: it is the system disk; refusing to write to it");
    }
    for line in sys.swaps.lines().skip(1) {
        if let Some(src) = line.split_whitespace().next() {
            if t.owns((sys.resolve)(src), src) {
                bail!("{shown} holds swap ({src}): it is a system disk; refusing to write to it");
            }
        }
    }
    for (src, at) in &mounts {
        if t.owns((sys.resolve)(src), src) {
            bail!("{shown} is mounted ({src} on {at}); unmount it first. Nothing was written");
        }
    }
    if !t.holders.is_empty() {
        bail!(
            "{shown} is in use by {} (device-mapper, RAID or LVM); refusing to write to it",
            t.holders.join(", ")
        );
    }
    if t.size < image_size {
        bail!(
            "{shown} is too small: {} bytes, the image needs {image_size}. Nothing was written",
            t.size
        );
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// The whole-disk block device to write, e.g. /dev/sdb.
    #[arg(long)]
    pub device: PathBuf,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// `cargo det flash`: build the profile, then [`run`].
pub fn verb(project: &Project, args: &Args) -> Result<ExitCode> {
    let profile = project.profile(&args.profile.profile)?;
    let image = crate::build::build(project, &profile)?;
    run(&image.disk_image, &args.device, args.yes)?;
    Ok(ExitCode::SUCCESS)
}

/// The verb: check, confirm, write, move the backup GPT, verify.
pub fn run(image: &Path, device: &Path, yes: bool) -> Result<()> {
    let image_size = fs::metadata(image)
        .with_context(|| format!("{}", image.display()))?
        .len();
    let target = Target::probe(device)?;
    check(&target, &System::current(), image_size)?;
    if !yes {
        confirm(&target, image, image_size)?;
    }
    // O_EXCL on a block device fails if anything holds it open for
    // mounting: a last guard against a mount made after the checks.
    let mut dev = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::EXCL.bits() as i32)
        .open(device)
        .with_context(|| format!("opening {} exclusively", device.display()))?;
    eprintln!(
        "writing {} ({} MiB) to {}",
        image.display(),
        image_size >> 20,
        device.display()
    );
    let started = std::time::Instant::now();
    write_image(&mut dev, target.size, image)?;
    eprintln!(
        "wrote and verified {} in {:.1}s; backup GPT moved to sector {}",
        device.display(),
        started.elapsed().as_secs_f64(),
        target.size / SECTOR - 1
    );
    Ok(())
}

fn confirm(t: &Target, image: &Path, size: u64) -> Result<()> {
    if !io::stdin().is_terminal() {
        bail!(
            "refusing to write to {} without confirmation: stdin is not a terminal (pass --yes)",
            t.path.display()
        );
    }
    let model =
        fs::read_to_string(format!("/sys/class/block/{}/device/model", t.name)).unwrap_or_default();
    eprint!(
        "Write {} ({} MiB) to {} ({} {} MiB)? Everything on it is lost. Type yes: ",
        image.display(),
        size >> 20,
        t.path.display(),
        model.trim(),
        t.size >> 20
    );
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        bail!("not confirmed; nothing was written");
    }
    Ok(())
}

/// Write `image` to `dev` (of `dev_size` bytes), put the backup GPT at the
/// end of `dev`, sync and read everything back. Works on any file, so the
/// tests use a plain file as the device.
pub fn write_image(dev: &mut fs::File, dev_size: u64, image: &Path) -> Result<()> {
    let mut img = fs::File::open(image)?;
    let image_size = img.metadata()?.len();
    if dev_size < image_size {
        bail!("device too small");
    }
    let mut head = vec![0u8; (SECTOR * (2 + gpt::ENTRY_SECTORS)) as usize];
    img.read_exact(&mut head)?;
    let table = gpt::parse(&head[512..1024], &head[1024..])
        .with_context(|| format!("{}: not a GPT disk image", image.display()))?;
    let old_backup = table.alternate_lba;
    let dev_sectors = dev_size / SECTOR;
    let moved = gpt::moved_to_end(&table, dev_sectors);
    let mut patches = gpt::layout(&moved, &head[..440], dev_sectors)?;
    // The image's own backup table, now stale, is cleared.
    let stale = (old_backup - gpt::ENTRY_SECTORS) * SECTOR;
    if old_backup + 1 < dev_sectors {
        patches.push((
            stale,
            vec![0u8; ((gpt::ENTRY_SECTORS + 1) * SECTOR) as usize],
        ));
    }

    img.seek(SeekFrom::Start(0))?;
    dev.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = img.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dev.write_all(&buf[..n])?;
    }
    // The stale area first: the new backup may lie inside it on a device
    // exactly the image's size.
    patches.sort_by_key(|(off, d)| (d.iter().any(|&b| b != 0), *off));
    for (off, data) in &patches {
        dev.seek(SeekFrom::Start(*off))?;
        dev.write_all(data)?;
    }
    dev.sync_all().context("syncing the device")?;
    drop_cache(dev);

    // Read back: the image with the patches laid over it, then the patches
    // past the image's end.
    img.seek(SeekFrom::Start(0))?;
    dev.seek(SeekFrom::Start(0))?;
    let mut want = vec![0u8; buf.len()];
    let mut pos = 0u64;
    while pos < image_size {
        let n = (image_size - pos).min(buf.len() as u64) as usize;
        img.read_exact(&mut want[..n])?;
        for (off, data) in &patches {
            overlay(&mut want[..n], pos, *off, data);
        }
        dev.read_exact(&mut buf[..n])
            .context("reading the device back")?;
        if buf[..n] != want[..n] {
            let i = (0..n).find(|&i| buf[i] != want[i]).unwrap_or(0);
            bail!(
                "verification failed: byte {} differs after writing",
                pos + i as u64
            );
        }
        pos += n as u64;
    }
    for (off, data) in &patches {
        if *off >= image_size {
            let mut got = vec![0u8; data.len()];
            dev.seek(SeekFrom::Start(*off))?;
            dev.read_exact(&mut got)?;
            if got != *data {
                bail!("verification failed: GPT at byte {off} differs after writing");
            }
        }
    }
    Ok(())
}

/// Copy the part of `data` (at absolute `off`) that falls in `window`
/// (which starts at absolute `pos`).
fn overlay(window: &mut [u8], pos: u64, off: u64, data: &[u8]) {
    let end = pos + window.len() as u64;
    let (s, e) = (off.max(pos), (off + data.len() as u64).min(end));
    if s < e {
        window[(s - pos) as usize..(e - pos) as usize]
            .copy_from_slice(&data[(s - off) as usize..(e - off) as usize]);
    }
}

/// Ask the kernel to forget cached pages, so the read-back comes from the
/// device (best effort: a plain file in a test keeps its cache).
fn drop_cache(f: &fs::File) {
    let _ = rustix::fs::fadvise(f, 0, None, rustix::fs::Advice::DontNeed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(size: u64) -> Target {
        Target {
            path: "/dev/sdz".into(),
            name: "sdz".into(),
            devs: vec![(8, 240), (8, 241), (8, 242)],
            partitions: vec!["sdz1".into(), "sdz2".into()],
            holders: vec![],
            size,
        }
    }

    fn system(mounts: &str, swaps: &str) -> System {
        System {
            mounts: mounts.into(),
            swaps: swaps.into(),
            root_dev: Some((254, 0)),
            resolve: Box::new(|src| match src {
                "/dev/sdz1" => Some((8, 241)),
                "/dev/sdz2" => Some((8, 242)),
                "/dev/vda" => Some((254, 0)),
                _ => None,
            }),
        }
    }

    const MOUNTS: &str = "proc /proc proc rw 0 0\n/dev/vda / ext4 rw 0 0\n";
    const SWAPS: &str = "Filename\tType\tSize\tUsed\tPriority\n";

    #[test]
    fn an_unmounted_big_enough_disk_passes() {
        check(&target(1 << 30), &system(MOUNTS, SWAPS), 1 << 20).unwrap();
    }

    #[test]
    fn a_mounted_partition_is_refused() {
        let mounts = format!("{MOUNTS}/dev/sdz2 /media/usb vfat rw 0 0\n");
        let e = check(&target(1 << 30), &system(&mounts, SWAPS), 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is mounted") && e.contains("/media/usb"), "{e}");
    }

    #[test]
    fn the_system_disk_is_refused() {
        let mut sys = system("/dev/sdz1 / ext4 rw 0 0\n", SWAPS);
        sys.root_dev = Some((8, 241));
        let e = check(&target(1 << 30), &sys, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains("system disk"), "{e}");
        let swaps = format!("{SWAPS}/dev/sdz2 partition 1024 0 -2\n");
        let e = check(&target(1 << 30), &system(MOUNTS, &swaps), 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains("swap") && e.contains("system disk"), "{e}");
    }

    #[test]
    fn a_too_small_device_is_refused() {
        let e = check(&target(1 << 20), &system(MOUNTS, SWAPS), 2 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains("too small"), "{e}");
    }

    #[test]
    fn a_held_device_is_refused() {
        let mut t = target(1 << 30);
        t.holders = vec!["dm-0".into()];
        let e = check(&t, &system(MOUNTS, SWAPS), 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dm-0"), "{e}");
    }

    #[test]
    fn a_regular_file_is_not_a_block_device() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let p = tmp.path();
        fs::write(&p, b"").unwrap();
        let e = Target::probe(&p).unwrap_err().to_string();
        assert!(e.contains("not a block device"), "{e}");
        assert_eq!(fs::metadata(&p).unwrap().len(), 0, "nothing written");
    }

    #[test]
    fn writing_moves_the_backup_gpt_to_the_end_and_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let total = 4096u64; // 2 MiB image
        let table = gpt::Table {
            disk_guid: gpt::derived_guid(&"12".repeat(32)),
            alternate_lba: total - 1,
            first_usable: 34,
            last_usable: total - 34,
            partitions: vec![gpt::Partition {
                name: "p".into(),
                type_guid: gpt::guid(gpt::TYPE_LINUX),
                guid: gpt::derived_guid(&"34".repeat(32)),
                first_lba: 2048,
                last_lba: 3071,
                attributes: 0,
            }],
        };
        let mut img = vec![0u8; (total * SECTOR) as usize];
        for (off, d) in gpt::layout(&table, &[0xAB; 440], total).unwrap() {
            img[off as usize..off as usize + d.len()].copy_from_slice(&d);
        }
        img[2048 * 512..2049 * 512].fill(0x5A);
        fs::write(dir.join("disk.img"), &img).unwrap();
        let dev_sectors = 3 * total;
        let devp = dir.join("dev");
        let mut dev = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&devp)
            .unwrap();
        dev.set_len(dev_sectors * SECTOR).unwrap();
        write_image(&mut dev, dev_sectors * SECTOR, &dir.join("disk.img")).unwrap();
        let out = fs::read(&devp).unwrap();
        let t = gpt::parse(&out[512..1024], &out[1024..1024 + 16384]).unwrap();
        assert_eq!(t.alternate_lba, dev_sectors - 1);
        assert_eq!(t.partitions, table.partitions);
        let last = ((dev_sectors - 1) * SECTOR) as usize;
        assert_eq!(&out[last..last + 8], b"EFI PART");
        let be = ((dev_sectors - 33) * SECTOR) as usize;
        let backup = gpt::parse(&out[last..last + 512], &out[be..be + 16384]);
        assert!(backup.is_ok(), "backup table valid: {backup:?}");
        let old = ((total - 1) * SECTOR) as usize;
        assert!(
            out[old..old + 512].iter().all(|&b| b == 0),
            "stale backup cleared"
        );
        assert_eq!(&out[..440], &[0xAB; 440][..]);
        assert!(out[2048 * 512..2049 * 512].iter().all(|&b| b == 0x5A));
        // Too small a "device": refused before anything is written.
        let small = dir.join("small");
        let mut s = fs::File::create(&small).unwrap();
        assert!(write_image(&mut s, 512, &dir.join("disk.img")).is_err());
        assert_eq!(fs::metadata(&small).unwrap().len(), 0);
    }
}
