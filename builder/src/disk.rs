//! `disk.img`: one GPT disk that boots under UEFI and legacy BIOS, plus the
//! unified kernel image (UKI) it carries.
//!
//! Layout (docs/disk-image.md): a protective MBR with syslinux's
//! `gptmbr.bin`; partition 1 the EFI system partition (FAT32, attribute
//! LegacyBIOSBootable) holding the UKI at `\EFI\BOOT\BOOTX64.EFI` for UEFI,
//! and syslinux with the same kernel, initramfs and command line for BIOS;
//! partition 2 `detlinux-data` (ext4), mounted by init at `/data`.
//!
//! Reproducible by construction: the GPT is written here with GUIDs derived
//! from the profile name; mkfs.fat runs with `--invariant` and the volume
//! ID is then set from the profile; mtools and syslinux take their
//! timestamps from SOURCE_DATE_EPOCH with TZ=UTC; mke2fs gets a fixed UUID,
//! hash seed, feature set (its own config file) and E2FSPROGS_FAKE_TIME.
//! Results are cached under `images/.cache/disk/<key>/` by every input.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cmdline;
use crate::deps;
use crate::fsutil::{self, Key};
use crate::gpt::{self, Partition, Table, SECTOR};
use crate::pe;
use crate::profile::Profile;
use crate::project::Project;

pub const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
pub const GPTMBR: &str = "/usr/lib/syslinux/mbr/gptmbr.bin";
use bootproto::DATA_LABEL;
pub const ESP_LABEL: &str = "detlinux-esp";
/// Where everything starts and what the partitions align to: 1 MiB.
const ALIGN: u64 = 1 << 20;

/// Debian packages whose tools shape the bytes of the disk (their versions
/// are part of the cache key and of the release manifest).
pub const TOOL_PACKAGES: &[&str] = &[
    "binutils",
    "dosfstools",
    "e2fsprogs",
    "mtools",
    "syslinux",
    "syslinux-common",
    "systemd-boot-efi",
];

/// A built disk image and UKI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Disk {
    pub image: PathBuf,
    pub uki: PathBuf,
    pub key: String,
    pub cmdline: String,
    pub size: u64,
    pub sha256: String,
    pub uki_size: u64,
    pub uki_sha256: String,
    pub disk_guid: String,
    pub partitions: Vec<PartInfo>,
    /// Files on the ESP with their hashes.
    pub esp_files: Vec<Entry>,
}

/// Manifest row of one partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartInfo {
    pub number: usize,
    pub name: String,
    pub guid: String,
    pub type_guid: String,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    pub sha256: String,
}

/// A file on the ESP, for the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// What goes on the disk.
pub struct Inputs<'a> {
    pub profile: &'a Profile,
    pub bzimage: &'a Path,
    pub initramfs: &'a Path,
    pub os_release: String,
    pub cmdline: String,
}

/// Build (or find in the cache) the disk for `inputs`.
pub fn build(project: &Project, inputs: &Inputs) -> Result<Disk> {
    let key = key(inputs)?;
    let out = project.cache("disk").join(&key[..16]);
    if let Ok(text) = fs::read_to_string(out.join("disk.json")) {
        if let Ok(d) = serde_json::from_str::<Disk>(&text) {
            if d.key == key && d.image.is_file() && d.uki.is_file() {
                return Ok(d);
            }
        }
    }
    let staging = out.with_extension(format!("tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)?;
    let result = assemble(inputs, &key, &staging, &out);
    let disk = match result {
        Ok(d) => d,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    fs::write(
        staging.join("disk.json"),
        serde_json::to_string_pretty(&disk)?,
    )?;
    let _ = fs::remove_dir_all(&out);
    fs::rename(&staging, &out)?;
    Ok(disk)
}

/// A one-off disk for a run whose command line differs from the built-in
/// one, written to `dir` (not cached: `run --disk -- CMD` with any CMD).
pub fn build_scratch(inputs: &Inputs, dir: &Path) -> Result<PathBuf> {
    let key = key(inputs)?;
    let staging = dir.join(format!(".disk-tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)?;
    let r = assemble(inputs, &key, &staging, dir);
    let img = dir.join("disk-run.img");
    let r = r.and_then(|_| {
        fs::rename(staging.join("disk.img"), &img)?;
        Ok(())
    });
    let _ = fs::remove_dir_all(&staging);
    r?;
    Ok(img)
}

fn key(inputs: &Inputs) -> Result<String> {
    let p = inputs.profile;
    let mut k = Key::new("disk");
    k.field("bzimage", fsutil::sha256_file(inputs.bzimage)?)
        .field("initramfs", fsutil::sha256_file(inputs.initramfs)?)
        .field("cmdline", &inputs.cmdline)
        .field("os-release", &inputs.os_release)
        .field("profile", &p.name)
        .field("esp_mib", p.disk.esp_mib.to_le_bytes())
        .field("data_mib", p.disk.data_mib.to_le_bytes())
        .field("epoch", p.build.source_date_epoch.to_le_bytes())
        .field("tools", tool_versions()?.join("\n"))
        .field("builder", include_str!("disk.rs"))
        .field("gpt", include_str!("gpt.rs"))
        .field("pe", include_str!("pe.rs"));
    Ok(k.hex())
}

/// `package version` of each of [`TOOL_PACKAGES`].
pub fn tool_versions() -> Result<Vec<String>> {
    let out = deps::command("dpkg-query")
        .args(["-W", "-f", "${Package} ${Version}\n"])
        .args(TOOL_PACKAGES)
        .output()
        .context("running dpkg-query")?;
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    Ok(v)
}

/// A GUID for `what` on this profile's disk.
fn profile_guid(profile: &Profile, what: &str) -> [u8; 16] {
    gpt::derived_guid(
        &Key::new("disk-guid")
            .field("profile", &profile.name)
            .field("what", what)
            .hex(),
    )
}

fn assemble(inputs: &Inputs, key: &str, dir: &Path, final_dir: &Path) -> Result<Disk> {
    let p = inputs.profile;
    let epoch = p.build.source_date_epoch;
    let esp_start = ALIGN / SECTOR;
    let esp_sectors = u64::from(p.disk.esp_mib) * ALIGN / SECTOR;
    let data_start = esp_start + esp_sectors;
    let data_sectors = u64::from(p.disk.data_mib) * ALIGN / SECTOR;
    // 1 MiB at the end too: room for the backup table, and a round size.
    let total = data_start + data_sectors + ALIGN / SECTOR;

    let uki = dir.join("detlinux.efi");
    make_uki(inputs, &cmdline::disk(&inputs.cmdline), dir, &uki)?;
    // The tour entry is for people at a screen: a harness disk (test,
    // debug) runs tests, and a debug kernel's second UKI would not fit.
    let tour_uki = dir.join("tour.efi");
    let tour = has_tour(p);
    if tour {
        make_uki(inputs, &cmdline::tour(&inputs.cmdline), dir, &tour_uki)?;
    }
    let esp = dir.join("esp.img");
    let esp_files = make_esp(
        inputs,
        dir,
        &uki,
        tour.then_some(tour_uki.as_path()),
        &esp,
        esp_start,
        esp_sectors,
    )?;
    if tour {
        fs::remove_file(&tour_uki)?;
    }
    let data = dir.join("data.img");
    make_data(p, &data, data_sectors, epoch)?;

    let table = Table {
        disk_guid: profile_guid(p, "disk"),
        alternate_lba: total - 1,
        first_usable: 2 + gpt::ENTRY_SECTORS,
        last_usable: total - 2 - gpt::ENTRY_SECTORS,
        partitions: vec![
            Partition {
                name: ESP_LABEL.into(),
                type_guid: gpt::guid(gpt::TYPE_ESP),
                guid: profile_guid(p, "esp"),
                first_lba: esp_start,
                last_lba: esp_start + esp_sectors - 1,
                attributes: gpt::ATTR_LEGACY_BIOS_BOOTABLE,
            },
            Partition {
                name: DATA_LABEL.into(),
                type_guid: gpt::guid(gpt::TYPE_LINUX),
                guid: profile_guid(p, "data"),
                first_lba: data_start,
                last_lba: data_start + data_sectors - 1,
                attributes: 0,
            },
        ],
    };
    let mbr = fs::read(GPTMBR).with_context(|| format!("reading {GPTMBR} (syslinux-common)"))?;
    let image = dir.join("disk.img");
    let mut f = fs::File::create(&image)?;
    f.set_len(total * SECTOR)?;
    for (off, bytes) in gpt::layout(&table, &mbr[..mbr.len().min(440)], total)? {
        f.seek(SeekFrom::Start(off))?;
        f.write_all(&bytes)?;
    }
    let mut part_info = Vec::new();
    for (i, (part, src)) in table.partitions.iter().zip([&esp, &data]).enumerate() {
        copy_sparse(src, &mut f, part.offset(), part.size())?;
        part_info.push(PartInfo {
            number: i + 1,
            name: part.name.clone(),
            guid: gpt::guid_string(&part.guid),
            type_guid: gpt::guid_string(&part.type_guid),
            first_lba: part.first_lba,
            last_lba: part.last_lba,
            attributes: part.attributes,
            sha256: fsutil::sha256_file(src)?,
        });
    }
    f.sync_all()?;
    drop(f);
    fs::remove_file(&esp)?;
    fs::remove_file(&data)?;
    Ok(Disk {
        image: final_dir.join("disk.img"),
        uki: final_dir.join("detlinux.efi"),
        key: key.to_string(),
        cmdline: inputs.cmdline.clone(),
        size: total * SECTOR,
        sha256: fsutil::sha256_file(&image)?,
        uki_size: fs::metadata(&uki)?.len(),
        uki_sha256: fsutil::sha256_file(&uki)?,
        disk_guid: gpt::guid_string(&table.disk_guid),
        partitions: part_info,
        esp_files,
    })
}

/// Copy `src` into `dst` at `offset`, skipping all-zero blocks (the image
/// was created sparse, so they read as zeros already).
fn copy_sparse(src: &Path, dst: &mut fs::File, offset: u64, max: u64) -> Result<()> {
    let mut r = fs::File::open(src)?;
    let len = r.metadata()?.len();
    if len > max {
        bail!("{} ({len} bytes) does not fit its partition", src.display());
    }
    let mut buf = vec![0u8; 1 << 16];
    let mut pos = 0;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            dst.seek(SeekFrom::Start(offset + pos))?;
            dst.write_all(&buf[..n])?;
        }
        pos += n as u64;
    }
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Environment for every image tool: fixed clock, zone and locale.
fn tool(program: &str, epoch: u64) -> Command {
    let mut c = deps::command(program);
    c.env("SOURCE_DATE_EPOCH", epoch.to_string())
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("MTOOLSRC", "/dev/null");
    c
}

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// Where to put each added section: after the stub's last section, each
/// at a 4 KiB (page) boundary, in order.
pub fn section_vmas(stub_end: u64, sizes: &[(&str, u64)]) -> Vec<(String, u64)> {
    let mut at = align_up(stub_end, 4096);
    let mut out = Vec::new();
    for (name, size) in sizes {
        out.push((name.to_string(), at));
        at = align_up(at + size, 4096);
    }
    out
}

/// The UKI: the systemd stub plus `.osrel`, `.cmdline`, `.initrd`, `.linux`.
fn make_uki(inputs: &Inputs, line: &str, dir: &Path, out: &Path) -> Result<()> {
    let stub = Path::new(STUB);
    if !stub.is_file() {
        bail!("{STUB} not found (package systemd-boot-efi)");
    }
    let osrel = dir.join("osrel");
    fs::write(&osrel, &inputs.os_release)?;
    let cmdline = dir.join("cmdline");
    fs::write(&cmdline, format!("{line}\0"))?;
    let stub_end = pe::sections(&fs::read(stub)?)
        .with_context(|| stub.display().to_string())?
        .iter()
        .map(pe::Section::end)
        .max()
        .unwrap_or(0);
    let files: [(&str, &Path); 4] = [
        (".osrel", &osrel),
        (".cmdline", &cmdline),
        (".initrd", inputs.initramfs),
        (".linux", inputs.bzimage),
    ];
    let sizes: Vec<(&str, u64)> = files
        .iter()
        .map(|(n, p)| Ok((*n, fs::metadata(p)?.len())))
        .collect::<Result<_>>()?;
    let vmas = section_vmas(stub_end, &sizes);
    let mut c = tool("objcopy", inputs.profile.build.source_date_epoch);
    for ((name, path), (_, vma)) in files.iter().zip(&vmas) {
        c.arg("--add-section")
            .arg(format!("{name}={}", path.display()))
            .arg("--change-section-vma")
            .arg(format!("{name}={vma:#x}"));
    }
    c.arg(stub).arg(out);
    run(&mut c, "objcopy (building the UKI)")?;
    // objcopy (binutils 2.40) stamps the current time into the PE header
    // whatever SOURCE_DATE_EPOCH says: put back the stub's zero.
    let mut pe = fs::read(out)?;
    clear_pe_timestamp(&mut pe)?;
    fs::write(out, pe)?;
    fs::remove_file(osrel)?;
    fs::remove_file(cmdline)?;
    Ok(())
}

/// Zero the COFF TimeDateStamp of a PE image and recompute its CheckSum.
pub fn clear_pe_timestamp(pe: &mut [u8]) -> Result<()> {
    if pe.len() < 0x40 || &pe[..2] != b"MZ" {
        bail!("not a PE image (no MZ header)");
    }
    let lfanew = u32::from_le_bytes(pe[0x3c..0x40].try_into()?) as usize;
    if pe.len() < lfanew + 92 || &pe[lfanew..lfanew + 4] != b"PE\0\0" {
        bail!("not a PE image (no PE header)");
    }
    pe[lfanew + 8..lfanew + 12].fill(0);
    let sum_at = lfanew + 24 + 64;
    pe[sum_at..sum_at + 4].fill(0);
    let sum = pe_checksum(pe);
    pe[sum_at..sum_at + 4].copy_from_slice(&sum.to_le_bytes());
    Ok(())
}

/// The PE optional header's CheckSum: 16-bit one's-complement-style sum
/// of the file (with the field itself zero), folded, plus the length.
fn pe_checksum(pe: &[u8]) -> u32 {
    let mut sum: u64 = 0;
    for chunk in pe.chunks(2) {
        let word = u64::from(chunk[0]) | (u64::from(*chunk.get(1).unwrap_or(&0)) << 8);
        sum += word;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    (sum as u32).wrapping_add(pe.len() as u32)
}

/// Whether a profile's disk has the tour entries: disks made for people
/// (`disk.channels = "console"`), not for the harness.
pub fn has_tour(p: &Profile) -> bool {
    p.disk.channels == crate::profile::Channels::Console
}

/// syslinux's configuration: the same kernel, initramfs and command line.
/// No menu and no wait: holding Shift (or Caps Lock on) at boot gives the
/// `boot:` prompt, where `tour` picks the entry that shows the demos.
pub fn syslinux_cfg(cmdline: &str, tour: bool) -> String {
    let mut cfg = format!(
        "# detlinux: legacy BIOS boot (docs/disk-image.md)\nSERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nDEFAULT detlinux\n\
         LABEL detlinux\n  LINUX /LINUX/BZIMAGE\n  INITRD /LINUX/INITRD.GZ\n  APPEND {}\n",
        cmdline::disk(cmdline)
    );
    if tour {
        cfg.push_str(&format!(
            "LABEL tour\n  LINUX /LINUX/BZIMAGE\n  INITRD /LINUX/INITRD.GZ\n  APPEND {}\n",
            cmdline::tour(cmdline)
        ));
    }
    cfg
}

fn make_esp(
    inputs: &Inputs,
    dir: &Path,
    uki: &Path,
    tour_uki: Option<&Path>,
    esp: &Path,
    start: u64,
    sectors: u64,
) -> Result<Vec<Entry>> {
    let p = inputs.profile;
    let epoch = p.build.source_date_epoch;
    run(
        tool("mkfs.fat", epoch)
            .args([
                "-C",
                "-F",
                "32",
                "-S",
                "512",
                "-n",
                "DETLINUX",
                "--invariant",
            ])
            .args(["-h", &start.to_string()])
            .arg(esp)
            .arg((sectors * SECTOR / 1024).to_string()),
        "mkfs.fat (EFI system partition)",
    )?;
    // --invariant fixes the volume ID to 1234-ABCD; give each profile its own.
    let volid = &Key::new("fat-volid").field("profile", &p.name).hex()[..8];
    let volid = u32::from_str_radix(volid, 16)?;
    set_fat32_volume_id(esp, volid)?;

    let cfg = dir.join("syslinux.cfg");
    fs::write(&cfg, syslinux_cfg(&inputs.cmdline, tour_uki.is_some()))?;
    let img = esp.to_str().context("non-UTF-8 path")?;
    run(
        tool("mmd", epoch).args([
            "-i",
            img,
            "::/EFI",
            "::/EFI/BOOT",
            "::/EFI/DETLINUX",
            "::/LINUX",
        ]),
        "mmd (ESP directories)",
    )?;
    let files: Vec<(&Path, &str)> = [
        (Some(uki), "::/EFI/BOOT/BOOTX64.EFI"),
        (tour_uki, "::/EFI/DETLINUX/TOUR.EFI"),
        (Some(inputs.bzimage), "::/LINUX/BZIMAGE"),
        (Some(inputs.initramfs), "::/LINUX/INITRD.GZ"),
        (Some(cfg.as_path()), "::/SYSLINUX.CFG"),
    ]
    .into_iter()
    .filter_map(|(src, dst)| Some((src?, dst)))
    .collect();
    let mut entries = Vec::new();
    for (src, dst) in files {
        run(
            tool("mcopy", epoch).args(["-i", img]).arg(src).arg(dst),
            &format!("mcopy {dst}"),
        )?;
        entries.push(Entry {
            path: dst.trim_start_matches("::").to_string(),
            size: fs::metadata(src)?.len(),
            sha256: fsutil::sha256_file(src)?,
        });
    }
    run(
        tool("syslinux", epoch).args(["--install", img]),
        "syslinux --install (BIOS boot on the ESP)",
    )?;
    fs::remove_file(cfg)?;
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// Set the FAT32 volume ID in the boot sector and its backup copy.
fn set_fat32_volume_id(esp: &Path, id: u32) -> Result<()> {
    let mut f = fs::OpenOptions::new().read(true).write(true).open(esp)?;
    let mut boot = [0u8; 512];
    f.read_exact(&mut boot)?;
    if &boot[0x52..0x5a] != b"FAT32   " {
        bail!("{}: not a FAT32 boot sector", esp.display());
    }
    let backup = u64::from(u16::from_le_bytes([boot[0x32], boot[0x33]]));
    for sector in [0, backup] {
        f.seek(SeekFrom::Start(sector * SECTOR + 0x43))?;
        f.write_all(&id.to_le_bytes())?;
    }
    Ok(())
}

/// mke2fs's configuration, so the host's /etc/mke2fs.conf cannot change
/// the features (and with them the bytes).
const MKE2FS_CONF: &str = "[defaults]\n\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr\n\tdefault_mntopts = acl,user_xattr\n\tblocksize = 4096\n\tinode_size = 256\n\tinode_ratio = 16384\n\n[fs_types]\n\text4 = {\n\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize\n\t}\n";

fn make_data(p: &Profile, img: &Path, sectors: u64, epoch: u64) -> Result<()> {
    let conf = img.with_file_name("mke2fs.conf");
    fs::write(&conf, MKE2FS_CONF)?;
    let uuid = gpt::guid_string(&profile_guid(p, "data-fs")).to_lowercase();
    let seed = gpt::guid_string(&profile_guid(p, "data-hash-seed")).to_lowercase();
    let r = run(
        tool("mke2fs", epoch)
            .env("MKE2FS_CONFIG", &conf)
            .args(["-q", "-F", "-t", "ext4", "-L", DATA_LABEL, "-U", &uuid])
            .arg("-E")
            .arg(format!(
                "hash_seed={seed},root_owner=0:0,nodiscard,lazy_itable_init=0"
            ))
            .arg(img)
            .arg(format!("{}k", sectors * SECTOR / 1024)),
        "mke2fs (data partition)",
    );
    fs::remove_file(&conf)?;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_sections_are_page_aligned_after_the_stub() {
        let v = section_vmas(
            0x19134,
            &[(".osrel", 10), (".cmdline", 4097), (".linux", 1)],
        );
        assert_eq!(v[0].1, 0x1a000);
        assert_eq!(v[1].1, 0x1b000);
        assert_eq!(v[2].1, 0x1d000);
    }

    /// Two builds two seconds apart (FAT times have 2 s resolution) must
    /// give the same bytes: catches any tool that stamps the current time.
    #[test]
    fn disk_is_bit_identical_across_builds_at_different_times() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut profile = Profile::load(&root.join("configs"), root, "test").unwrap();
        profile.disk.esp_mib = 40;
        profile.disk.data_mib = 8;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::write(dir.join("bzImage"), vec![0x4d; 300_000]).unwrap();
        fs::write(dir.join("initrd"), vec![0x1f; 100_000]).unwrap();
        let inputs = Inputs {
            profile: &profile,
            bzimage: &dir.join("bzImage"),
            initramfs: &dir.join("initrd"),
            os_release: "ID=detlinux\n".into(),
            cmdline: "console=ttyS0".into(),
        };
        let mut images = Vec::new();
        for run in ["a", "b"] {
            let out = dir.join(run);
            fs::create_dir_all(&out).unwrap();
            let d = assemble(&inputs, "k", &out, &out).unwrap();
            images.push((fs::read(out.join("disk.img")).unwrap(), d));
            std::thread::sleep(std::time::Duration::from_millis(2100));
        }
        let (a, da) = &images[0];
        let (b, db) = &images[1];
        assert_eq!(
            da.sha256, db.sha256,
            "partitions: {:?} vs {:?}",
            da.partitions, db.partitions
        );
        assert!(a == b);
        assert_eq!(
            da.disk_guid,
            gpt::guid_string(&profile_guid(&profile, "disk"))
        );
        // The layout is what docs/disk-image.md says.
        let t = gpt::parse(&a[512..1024], &a[1024..1024 + 16384]).unwrap();
        assert_eq!(t.partitions[0].first_lba, 2048);
        assert_eq!(t.partitions[0].attributes, gpt::ATTR_LEGACY_BIOS_BOOTABLE);
        assert_eq!(t.partitions[1].name, DATA_LABEL);
        assert_eq!(&a[..440], &fs::read(GPTMBR).unwrap()[..440]);

        // verify names the FAT file that differs inside the ESP.
        let b_img = dir.join("b/disk.img");
        let esp = t.partitions[0].offset();
        fs::write(dir.join("cfg"), syslinux_cfg("console=ttyS1", false)).unwrap();
        let ok = deps::command("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-o", "-i"])
            .arg(format!("{}@@{esp}", b_img.display()))
            .arg(dir.join("cfg"))
            .arg("::/SYSLINUX.CFG")
            .status()
            .unwrap();
        assert!(ok.success());
        let why = crate::verify::compare(&dir.join("a/disk.img"), &b_img)
            .unwrap()
            .expect("differs");
        assert!(
            why.contains("partition 1 (detlinux-esp)") && why.contains("/SYSLINUX.CFG"),
            "{why}"
        );
    }

    #[test]
    fn syslinux_boots_the_same_command_line() {
        let cfg = syslinux_cfg("console=ttyS0 det.run=tests", true);
        assert!(cfg.contains(
            "DEFAULT detlinux\nLABEL detlinux\n  LINUX /LINUX/BZIMAGE\n  INITRD /LINUX/INITRD.GZ\n  APPEND console=ttyS0 det.run=tests det.data=detlinux-data\n"
        ));
        assert!(cfg.contains(
            "LABEL tour\n  LINUX /LINUX/BZIMAGE\n  INITRD /LINUX/INITRD.GZ\n  APPEND console=ttyS0 det.run=tests det.data=detlinux-data det.tour=1\n"
        ));
        assert!(cfg.contains("SERIAL 0 115200"));
        let no_tour = syslinux_cfg("console=ttyS0", false);
        assert!(!no_tour.contains("LABEL tour") && no_tour.contains("LABEL detlinux"));
    }
}
