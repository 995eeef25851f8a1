//! `cargo det verify`: rebuild the release from a clean clone of HEAD in
//! another directory, as another user (HOME, USER), in another time zone
//! and locale, with another umask, at a later time, and compare every
//! artifact byte for byte.
//!
//! On a difference it names the artifact and the first differing thing
//! inside it: the tar member, the cpio entry, the disk's partition (and on
//! the FAT ESP the file), the UKI's PE section, the JSON line.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::deps;
use crate::fsutil;
use crate::gpt::{self, SECTOR};
use crate::pe;
use crate::project::Project;
use crate::release;

/// The artifacts compared: (label, path below `images/`).
fn artifacts() -> Vec<(&'static str, String)> {
    let p = release::PROFILE;
    vec![
        ("kernel", format!("{p}/bzImage")),
        ("initramfs", format!("{p}/initramfs.cpio.gz")),
        ("UKI", format!("{p}/detlinux.efi")),
        ("disk image", format!("{p}/disk.img")),
        ("tarball", format!("release/{}", release::tarball_name())),
        ("release manifest", "release/manifest.json".into()),
        (
            "SBOM",
            format!("release/detlinux-{}.spdx.json", release::version()),
        ),
        ("SHA256SUMS", "release/SHA256SUMS".into()),
    ]
}

#[derive(clap::Args)]
pub struct Args {
    /// Instead: check a downloaded release directory against its
    /// SHA256SUMS and manifest.json (every tarball member too).
    #[arg(long, value_name = "DIR")]
    pub release: Option<PathBuf>,
    /// Keep the clean clone even when everything matched.
    #[arg(long)]
    pub keep: bool,
}

/// `cargo det verify`: the clean rebuild ([`run`]), or with `--release`
/// the check of a downloaded release.
pub fn verb(project: &Project, args: &Args) -> Result<ExitCode> {
    let Some(dir) = &args.release else {
        return run(project, args.keep);
    };
    let problems = release::verify_dir(dir)?;
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

pub fn run(project: &Project, keep: bool) -> Result<ExitCode> {
    let git = |args: &[&str]| -> Result<String> {
        let out = deps::command("git")
            .args(args)
            .current_dir(&project.root)
            .output()
            .context("running git")?;
        if !out.status.success() {
            bail!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "HEAD"])?;
    if !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty() {
        eprintln!("warning: uncommitted changes: this tree's build includes them, the clean clone of {head} does not");
    }
    eprintln!("verify: building the release here");
    release::build(project)?;

    // Kept on any failure (for a look at the clean tree); removed below
    // when every artifact matches.
    let tmp = tempfile::Builder::new()
        .prefix("det-verify-")
        .tempdir()?
        .keep();
    let clone = tmp.join("src");
    fs::create_dir_all(tmp.join("home"))?;
    let status = deps::command("git")
        .args(["clone", "--quiet", "--no-checkout"])
        .arg(&project.root)
        .arg(&clone)
        .status()
        .context("git clone")?;
    if !status.success() {
        bail!("git clone of {} failed", project.root.display());
    }
    let status = deps::command("git")
        .args(["checkout", "--quiet", "--detach", &head])
        .current_dir(&clone)
        .status()?;
    if !status.success() {
        bail!("git checkout {head} in {} failed", clone.display());
    }

    // Not under faketime: libfaketime breaks std's clock_gettime here
    // (rustc and cargo panic in Timespec::now), so the clock is simply
    // later; the image tools take their time from SOURCE_DATE_EPOCH.
    let mut cmd = deps::command("sh");
    cmd.args(["-c", "umask 027 && exec cargo det release"]);
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or_else(|_| {
        format!(
            "{}/.cargo",
            std::env::var("HOME").unwrap_or_else(|_| "/root".into())
        )
    });
    let rustup_home = std::env::var("RUSTUP_HOME").unwrap_or_else(|_| {
        format!(
            "{}/.rustup",
            std::env::var("HOME").unwrap_or_else(|_| "/root".into())
        )
    });
    cmd.current_dir(&clone)
        .stdout(std::process::Stdio::null())
        .env("HOME", tmp.join("home"))
        .env("USER", "detverify")
        .env("LOGNAME", "detverify")
        .env("TZ", "Pacific/Kiritimati")
        .env("LANG", "C.UTF-8")
        .env("CARGO_HOME", &cargo_home)
        .env("RUSTUP_HOME", &rustup_home)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("SOURCE_DATE_EPOCH");
    eprintln!(
        "verify: rebuilding {head} in {} (HOME, USER, LANG changed, TZ=Pacific/Kiritimati, umask 027)",
        clone.display(),
    );
    let started = std::time::Instant::now();
    let status = cmd
        .status()
        .context("running cargo det release in the clone")?;
    if !status.success() {
        bail!(
            "the clean rebuild failed ({status}); its tree is kept in {}",
            clone.display()
        );
    }
    eprintln!(
        "verify: clean rebuild took {:.0}s",
        started.elapsed().as_secs_f64()
    );

    let mut differ = 0;
    for (label, rel) in artifacts() {
        let a = project.images().join(&rel);
        let b = clone.join("images").join(&rel);
        let line = match compare(&a, &b) {
            Ok(None) => format!(
                "identical  {label:<17} {rel} ({} bytes, sha256 {})",
                fs::metadata(&a).map(|m| m.len()).unwrap_or(0),
                &fsutil::sha256_file(&a)?[..16]
            ),
            Ok(Some(why)) => {
                differ += 1;
                format!("DIFFERENT  {label:<17} {rel}: {why}")
            }
            Err(e) => {
                differ += 1;
                format!("DIFFERENT  {label:<17} {rel}: {e:#}")
            }
        };
        println!("{line}");
    }
    if differ == 0 && !keep {
        let _ = fs::remove_dir_all(&tmp);
    } else {
        eprintln!("clean tree kept in {}", clone.display());
    }
    println!(
        "{} of {} artifacts bit-identical",
        artifacts().len() - differ,
        artifacts().len()
    );
    Ok(if differ == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `None` if identical, else where they first differ.
pub fn compare(a: &Path, b: &Path) -> Result<Option<String>> {
    let da = fs::read(a).with_context(|| format!("reading {}", a.display()))?;
    let db = fs::read(b).with_context(|| format!("reading {}", b.display()))?;
    if da == db {
        return Ok(None);
    }
    let name = a.file_name().unwrap_or_default().to_string_lossy();
    let offset = first_diff(&da, &db);
    let at = format!(
        "sizes {} vs {}, first difference at byte {offset}",
        da.len(),
        db.len()
    );
    let inner = if name.ends_with(".tar.gz") {
        diff_tar(&da, &db)?
    } else if name.ends_with(".cpio.gz") {
        diff_cpio(&gunzip(&da)?, &gunzip(&db)?)?
    } else if name == "disk.img" {
        diff_disk(a, b, &da, offset)?
    } else if name.ends_with(".efi") {
        Some(pe_section_at(&da, offset))
    } else if name.ends_with(".json") || name == "SHA256SUMS" {
        let la = String::from_utf8_lossy(&da);
        let lb = String::from_utf8_lossy(&db);
        la.lines()
            .zip(lb.lines())
            .enumerate()
            .find(|(_, (x, y))| x != y)
            .map(|(i, (x, y))| format!("line {}: {x:?} vs {y:?}", i + 1))
    } else {
        None
    };
    Ok(Some(match inner {
        Some(i) => format!("{i} ({at})"),
        None => at,
    }))
}

fn first_diff(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

fn gunzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out)?;
    Ok(out)
}

/// The first tar member whose header or content differs.
pub fn diff_tar(a: &[u8], b: &[u8]) -> Result<Option<String>> {
    let list = |data: &[u8]| -> Result<Vec<(String, Vec<u8>, Vec<u8>)>> {
        let raw = gunzip(data)?;
        let mut ar = tar::Archive::new(&raw[..]);
        let mut v = Vec::new();
        for e in ar.entries()? {
            let mut e = e?;
            let header = e.header().as_bytes().to_vec();
            let path = e.path()?.to_string_lossy().to_string();
            let mut body = Vec::new();
            e.read_to_end(&mut body)?;
            v.push((path, header, body));
        }
        Ok(v)
    };
    let (la, lb) = (list(a)?, list(b)?);
    for (x, y) in la.iter().zip(&lb) {
        if x.0 != y.0 {
            return Ok(Some(format!("member order differs: {} vs {}", x.0, y.0)));
        }
        if x.1 != y.1 {
            return Ok(Some(format!("member {}: tar header differs", x.0)));
        }
        if x.2 != y.2 {
            return Ok(Some(format!(
                "member {}: content differs at byte {}",
                x.0,
                first_diff(&x.2, &y.2)
            )));
        }
    }
    if la.len() != lb.len() {
        return Ok(Some(format!("{} vs {} members", la.len(), lb.len())));
    }
    Ok(Some("same members, gzip stream differs".into()))
}

/// The first cpio entry whose header or content differs.
pub fn diff_cpio(a: &[u8], b: &[u8]) -> Result<Option<String>> {
    let list = |mut r: &[u8]| -> Result<Vec<(String, String, Vec<u8>)>> {
        let mut v = Vec::new();
        loop {
            let mut rd = cpio::newc::Reader::new(r)?;
            let e = rd.entry();
            if e.is_trailer() {
                break;
            }
            let meta = format!(
                "ino {} mode {:o} uid {} gid {} mtime {} nlink {}",
                e.ino(),
                e.mode(),
                e.uid(),
                e.gid(),
                e.mtime(),
                e.nlink()
            );
            let name = e.name().to_string();
            let mut data = Vec::new();
            rd.read_to_end(&mut data)?;
            v.push((name, meta, data));
            r = rd.finish()?;
        }
        Ok(v)
    };
    let (la, lb) = (list(a)?, list(b)?);
    for (x, y) in la.iter().zip(&lb) {
        if x.0 != y.0 {
            return Ok(Some(format!(
                "cpio entry order differs: {} vs {}",
                x.0, y.0
            )));
        }
        if x.1 != y.1 {
            return Ok(Some(format!("cpio entry {}: {} vs {}", x.0, x.1, y.1)));
        }
        if x.2 != y.2 {
            return Ok(Some(format!("cpio entry {}: content differs", x.0)));
        }
    }
    if la.len() != lb.len() {
        return Ok(Some(format!("{} vs {} cpio entries", la.len(), lb.len())));
    }
    Ok(Some("same cpio entries, gzip stream differs".into()))
}

/// Which partition holds the first difference, and on the FAT ESP which
/// file (extracted from both with mtools).
fn diff_disk(pa: &Path, pb: &Path, a: &[u8], offset: usize) -> Result<Option<String>> {
    let span = (SECTOR * (2 + gpt::ENTRY_SECTORS)) as usize;
    if a.len() < span {
        return Ok(None);
    }
    let table = gpt::parse(&a[512..1024], &a[1024..span])?;
    let off = offset as u64;
    let Some((i, part)) = table
        .partitions
        .iter()
        .enumerate()
        .find(|(_, p)| off >= p.offset() && off < p.offset() + p.size())
    else {
        return Ok(Some(format!(
            "outside the partitions (MBR, GPT or padding) at byte {offset}"
        )));
    };
    let mut what = format!(
        "partition {} ({}) at byte {} of it",
        i + 1,
        part.name,
        off - part.offset()
    );
    if part.type_guid == gpt::guid(gpt::TYPE_ESP) {
        if let Some(f) = diff_fat(pa, pb, part.offset())? {
            what.push_str(&format!(", FAT file {f}"));
        } else {
            what.push_str(", FAT metadata (all files equal)");
        }
    }
    Ok(Some(what))
}

fn diff_fat(a: &Path, b: &Path, offset: u64) -> Result<Option<String>> {
    let tmp = tempfile::Builder::new()
        .prefix("det-verify-fat-")
        .tempdir()?;
    let mut trees = Vec::new();
    for (img, side) in [(a, "a"), (b, "b")] {
        let dir = tmp.path().join(side);
        fs::create_dir_all(&dir)?;
        let ok = deps::command("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-s")
            .arg("-n")
            .arg("-i")
            .arg(format!("{}@@{offset}", img.display()))
            .arg("::/")
            .arg(&dir)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            return Ok(None);
        }
        let mut files = BTreeMap::new();
        for rel in fsutil::walk_files(&dir)? {
            files.insert(rel.clone(), fsutil::sha256_file(&dir.join(&rel))?);
        }
        trees.push(files);
    }
    drop(tmp);
    let (ta, tb) = (&trees[0], &trees[1]);
    let names: std::collections::BTreeSet<&PathBuf> = ta.keys().chain(tb.keys()).collect();
    let first = names
        .into_iter()
        .find(|n| ta.get(*n) != tb.get(*n))
        .map(|n| format!("/{}", n.display()));
    Ok(first)
}

/// The PE section holding file offset `offset` of `image`.
fn pe_section_at(image: &[u8], offset: usize) -> String {
    let offset = offset as u64;
    let Ok(sections) = pe::sections(image) else {
        return "PE image whose section table does not parse".into();
    };
    match sections
        .iter()
        .find(|s| (s.file.0..s.file.0 + s.file.1).contains(&offset))
    {
        Some(s) => format!("PE section {}", s.name),
        None => "PE headers".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::initramfs::{Node, Tree};

    #[test]
    fn a_changed_cpio_entry_is_named() {
        let mk = |data: &[u8]| {
            let mut t = Tree::default();
            t.add(
                "bin/a",
                Node::File {
                    data: b"same".to_vec(),
                    mode: 0o755,
                },
            )
            .unwrap();
            t.add(
                "etc/b",
                Node::File {
                    data: data.to_vec(),
                    mode: 0o644,
                },
            )
            .unwrap();
            t.write_cpio_gz(Vec::new(), 5).unwrap()
        };
        let d = diff_cpio(&gunzip(&mk(b"x")).unwrap(), &gunzip(&mk(b"y")).unwrap())
            .unwrap()
            .unwrap();
        assert!(d.contains("etc/b") && d.contains("content"), "{d}");
    }

    #[test]
    fn a_changed_tar_member_is_named() {
        let mk = |data: &[u8]| {
            let mut b = tar::Builder::new(Vec::new());
            for (name, d) in [("top/a", &b"same"[..]), ("top/b", data)] {
                let mut h = tar::Header::new_ustar();
                h.set_size(d.len() as u64);
                h.set_mode(0o644);
                b.append_data(&mut h, name, d).unwrap();
            }
            let raw = b.into_inner().unwrap();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
            std::io::Write::write_all(&mut gz, &raw).unwrap();
            gz.finish().unwrap()
        };
        let d = diff_tar(&mk(b"1"), &mk(b"2")).unwrap().unwrap();
        assert!(d.contains("member top/b"), "{d}");
    }
}
