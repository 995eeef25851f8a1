//! `cargo det release`: the files a release publishes, in `images/release/`,
//! and `cargo det verify --release DIR`, which checks a downloaded one.
//!
//! - `detlinux-<version>-x86_64.tar.gz`: bzImage, initramfs, UKI, disk
//!   image and the libdeterm SDK (what of it exists), under one top
//!   directory; members sorted, headers fixed (mode, uid/gid 0, mtime =
//!   SOURCE_DATE_EPOCH), gzip with mtime 0 on the pinned miniz_oxide.
//! - `manifest.json`: inputs (kernel tarball, patches, config, toolchain,
//!   Cargo.lock, image tools), outputs with sizes and hashes, every tarball
//!   member's hash, every initramfs file's hash, the disk layout.
//! - `detlinux-<version>.spdx.json`: an SPDX 2.3 SBOM, dated from
//!   SOURCE_DATE_EPOCH.
//! - `SHA256SUMS` over the three files above.
//!
//! The directory is staged and swapped in whole, like `images/<profile>/`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use flate2::{Compression, GzBuilder};
use serde_json::{json, Value};

use crate::build;
use crate::deps;
use crate::disk;
use crate::fsutil;
use crate::progress;
use crate::project::Project;
use crate::userland;

/// The profile a release is built from.
pub const PROFILE: &str = "dist";

pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

pub fn tarball_name() -> String {
    format!("detlinux-{}-x86_64.tar.gz", version())
}

fn sbom_name() -> String {
    format!("detlinux-{}.spdx.json", version())
}

/// One file of the tarball: its path below the top directory and source.
struct Member {
    name: String,
    source: PathBuf,
    mode: u32,
}

/// Build the release into `images/release/`; returns that directory.
/// `cargo det release`: [`build`], then print where.
pub fn verb(project: &Project) -> Result<ExitCode> {
    println!("{}", build(project)?.display());
    Ok(ExitCode::SUCCESS)
}

pub fn build(project: &Project) -> Result<PathBuf> {
    let started = std::time::Instant::now();
    let profile = project.profile(PROFILE)?;
    let image = build::build(project, &profile)?;
    let epoch = profile.build.source_date_epoch;
    let image_manifest: Value = serde_json::from_str(
        &fs::read_to_string(image.dir.join("manifest.json")).context("reading image manifest")?,
    )?;

    let mut members = vec![
        member("bzImage", &image.bzimage, 0o644),
        member("initramfs.cpio.gz", &image.initramfs, 0o644),
        member("detlinux.efi", &image.uki, 0o644),
        member("disk.img", &image.disk_image, 0o644),
    ];
    // The SDK: the libdeterm.a built with the image, and its header.
    let sdk = [
        member(
            "sdk/include/determ.h",
            &project.root.join(userland::DETERM_H),
            0o644,
        ),
        member("sdk/lib/libdeterm.a", &image.libdeterm, 0o644),
    ];
    let sdk_files: Vec<String> = sdk.iter().map(|m| m.name.clone()).collect();
    members.extend(sdk);
    members.sort_by(|a, b| a.name.cmp(&b.name));

    let staging = project
        .images()
        .join(format!(".staging-release-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)?;
    let result = (|| -> Result<()> {
        let top = format!("detlinux-{}-x86_64", version());
        let tarball = staging.join(tarball_name());
        write_tarball(&tarball, &top, &members, epoch)?;
        let mut member_rows = Vec::new();
        for m in &members {
            member_rows.push(json!({
                "path": format!("{top}/{}", m.name),
                "size": fs::metadata(&m.source)?.len(),
                "sha256": fsutil::sha256_file(&m.source)?,
            }));
        }
        let inputs = inputs(project, &image)?;
        let manifest = json!({
            "name": "detlinux",
            "version": version(),
            "arch": "x86_64",
            "profile": profile.name,
            "source_date_epoch": epoch,
            "inputs": inputs,
            "outputs": [{
                "name": tarball_name(),
                "size": fs::metadata(&tarball)?.len(),
                "sha256": fsutil::sha256_file(&tarball)?,
            }],
            "tarball_members": member_rows,
            "sdk": {
                "files": sdk_files,
                "note": "libdeterm.a and determ.h: see docs/libdeterm.md",
            },
            "disk": image_manifest["disk"],
            "initramfs_files": image_manifest["initramfs_files"],
        });
        fs::write(
            staging.join("manifest.json"),
            serde_json::to_string_pretty(&manifest)? + "\n",
        )?;
        let sbom = sbom(project, &inputs, epoch)?;
        fs::write(
            staging.join(sbom_name()),
            serde_json::to_string_pretty(&sbom)? + "\n",
        )?;
        let names = [tarball_name(), "manifest.json".into(), sbom_name()];
        fs::write(staging.join("SHA256SUMS"), sha256sums(&staging, &names)?)?;
        fs::File::open(&staging)?.sync_all()?;
        build::publish(&staging, &project.output("release"))
    })();
    let _ = fs::remove_dir_all(&staging);
    result?;
    let dir = project.output("release");
    eprintln!(
        "images/release: {} {} MiB ({:.1}s)",
        tarball_name(),
        fs::metadata(dir.join(tarball_name()))?.len() >> 20,
        started.elapsed().as_secs_f64()
    );
    Ok(dir)
}

fn member(name: &str, source: &Path, mode: u32) -> Member {
    Member {
        name: name.to_string(),
        source: source.to_path_buf(),
        mode,
    }
}

/// A tar.gz with deterministic headers: ustar, sorted, uid/gid 0, no user
/// or group names, mtime = `epoch`, directories first.
fn write_tarball(path: &Path, top: &str, members: &[Member], epoch: u64) -> Result<()> {
    fsutil::write_atomic_with(path, |w| {
        let gz = GzBuilder::new()
            .mtime(0)
            .operating_system(3)
            .write(w, Compression::new(9));
        let mut tar = tar::Builder::new(gz);
        tar.mode(tar::HeaderMode::Deterministic);
        let mut dirs = std::collections::BTreeSet::new();
        dirs.insert(top.to_string());
        for m in members {
            let mut d = top.to_string();
            let parts: Vec<&str> = m.name.split('/').collect();
            for p in &parts[..parts.len() - 1] {
                d = format!("{d}/{p}");
                dirs.insert(d.clone());
            }
        }
        let header = |kind: tar::EntryType, mode: u32, size: u64| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(epoch);
            h.set_size(size);
            h
        };
        for d in &dirs {
            let mut h = header(tar::EntryType::Directory, 0o755, 0);
            tar.append_data(&mut h, format!("{d}/"), std::io::empty())?;
        }
        for m in members {
            let f = fs::File::open(&m.source)
                .with_context(|| format!("opening {}", m.source.display()))?;
            let mut h = header(tar::EntryType::Regular, m.mode, f.metadata()?.len());
            tar.append_data(&mut h, format!("{top}/{}", m.name), f)?;
        }
        tar.into_inner()?.finish()?;
        Ok(())
    })
}

/// `sha256  name` lines, in the order given.
fn sha256sums(dir: &Path, names: &[String]) -> Result<String> {
    let mut out = String::new();
    for n in names {
        out.push_str(&format!("{}  {n}\n", fsutil::sha256_file(&dir.join(n))?));
    }
    Ok(out)
}

/// Debian version of an installed package.
pub fn dpkg_version(package: &str) -> Result<String> {
    let out = deps::command("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .output()
        .context("running dpkg-query")?;
    if !out.status.success() {
        bail!("package {package} is not installed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn inputs(project: &Project, image: &build::Image) -> Result<Value> {
    let k = &image.kernel;
    let cargo = progress::first_line("cargo", "-V")?;
    let commit = deps::command("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&project.root)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut tools = BTreeMap::new();
    for line in disk::tool_versions()? {
        if let Some((p, v)) = line.split_once(' ') {
            tools.insert(p.to_string(), v.to_string());
        }
    }
    tools.insert("busybox-static".into(), dpkg_version("busybox-static")?);
    tools.insert(
        "linux-source-6.12".into(),
        dpkg_version("linux-source-6.12")?,
    );
    Ok(json!({
        "git_commit": commit,
        "kernel": {
            "version": k.version,
            "tarball": k.tarball,
            "tarball_sha256": k.tarball_sha256,
            "patches_sha256": k.patches_sha256,
            "config_sha256": k.config_sha256,
        },
        "toolchain": {
            "rustc": progress::first_line("rustc", "-V")?,
            "cargo": cargo,
            "gcc": progress::first_line("gcc", "--version")?,
        },
        "cargo_lock_sha256": fsutil::sha256_file(&project.root.join("Cargo.lock"))?,
        "debian_packages": tools,
    }))
}

/// `YYYY-MM-DDThh:mm:ssZ` for a Unix time (UTC).
pub fn iso8601(t: u64) -> Result<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(t)?)?;
    Ok(t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))?)
}

fn spdx_id(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// SPDX 2.3 JSON: the kernel, busybox, the Debian stub and syslinux, and
/// every crate of Cargo.lock.
fn sbom(project: &Project, inputs: &Value, epoch: u64) -> Result<Value> {
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-detlinux",
        "name": "detlinux",
        "versionInfo": version(),
        "downloadLocation": "NOASSERTION",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "GPL-2.0-only",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "OPERATING-SYSTEM",
    })];
    let mut rels = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-detlinux",
    })];
    let contains = |rels: &mut Vec<Value>, id: &str, kind: &str| {
        rels.push(json!({
            "spdxElementId": "SPDXRef-detlinux",
            "relationshipType": kind,
            "relatedSpdxElement": id,
        }));
    };
    let k = &inputs["kernel"];
    packages.push(json!({
        "SPDXID": "SPDXRef-linux",
        "name": "linux",
        "versionInfo": k["version"],
        "downloadLocation": "NOASSERTION",
        "packageFileName": k["tarball"],
        "checksums": [{"algorithm": "SHA256", "checksumValue": k["tarball_sha256"]}],
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "GPL-2.0-only",
        "copyrightText": "NOASSERTION",
        "comment": format!(
            "Debian linux-source-6.12 {}, with detlinux's overlay and hook patches (sha256 {}) and config (sha256 {})",
            inputs["debian_packages"]["linux-source-6.12"].as_str().unwrap_or("?"),
            k["patches_sha256"].as_str().unwrap_or("?"),
            k["config_sha256"].as_str().unwrap_or("?")
        ),
    }));
    contains(&mut rels, "SPDXRef-linux", "CONTAINS");
    for (pkg, why, license) in [
        (
            "busybox-static",
            "the guest shell and tools in the initramfs",
            "GPL-2.0-only",
        ),
        (
            "systemd-boot-efi",
            "linuxx64.efi.stub, the base of the UKI",
            "LGPL-2.1-or-later",
        ),
        (
            "syslinux",
            "the BIOS boot loader installed on the ESP",
            "GPL-2.0-or-later",
        ),
        (
            "syslinux-common",
            "gptmbr.bin and ldlinux.c32",
            "GPL-2.0-or-later",
        ),
    ] {
        let v = inputs["debian_packages"][pkg].clone();
        let id = format!("SPDXRef-deb-{}", spdx_id(pkg));
        packages.push(json!({
            "SPDXID": id,
            "name": pkg,
            "versionInfo": v,
            "downloadLocation": "NOASSERTION",
            "supplier": "Organization: Debian",
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": license,
            "copyrightText": "NOASSERTION",
            "comment": why,
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!("pkg:deb/debian/{pkg}@{}?arch=amd64", v.as_str().unwrap_or("")),
            }],
        }));
        contains(&mut rels, &id, "CONTAINS");
    }
    let lock: toml::Value = toml::from_str(&fs::read_to_string(project.root.join("Cargo.lock"))?)
        .context("parsing Cargo.lock")?;
    let mut crates: Vec<(String, String, Option<String>)> = lock
        .get("package")
        .and_then(|p| p.as_array())
        .map(|a| {
            a.iter()
                .filter(|p| p.get("source").is_some())
                .filter_map(|p| {
                    Some((
                        p.get("name")?.as_str()?.to_string(),
                        p.get("version")?.as_str()?.to_string(),
                        p.get("checksum")
                            .and_then(|c| c.as_str())
                            .map(str::to_string),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    crates.sort();
    for (name, ver, sum) in crates {
        let id = format!("SPDXRef-crate-{}-{}", spdx_id(&name), spdx_id(&ver));
        let mut p = json!({
            "SPDXID": id,
            "name": name,
            "versionInfo": ver,
            "downloadLocation": format!("https://crates.io/api/v1/crates/{name}/{ver}/download"),
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!("pkg:cargo/{name}@{ver}"),
            }],
        });
        if let Some(sum) = sum {
            p["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": sum}]);
        }
        packages.push(p);
        rels.push(json!({
            "spdxElementId": id,
            "relationshipType": "BUILD_DEPENDENCY_OF",
            "relatedSpdxElement": "SPDXRef-detlinux",
        }));
    }
    let ns = fsutil::sha256_bytes(serde_json::to_string(inputs)?.as_bytes());
    Ok(json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("detlinux-{}", version()),
        "documentNamespace": format!("https://detlinux.invalid/spdx/detlinux-{}-{}", version(), &ns[..16]),
        "creationInfo": {
            "created": iso8601(epoch)?,
            "creators": [format!("Tool: detlinux-builder-{}", version())],
        },
        "packages": packages,
        "relationships": rels,
    }))
}

/// `cargo det verify --release DIR`: every file of SHA256SUMS, the tarball
/// against the manifest, every tarball member against the manifest.
/// Returns the problems found (empty: the release is intact).
pub fn verify_dir(dir: &Path) -> Result<Vec<String>> {
    let sums = fs::read_to_string(dir.join("SHA256SUMS"))
        .with_context(|| format!("reading {}", dir.join("SHA256SUMS").display()))?;
    let mut problems = Vec::new();
    let mut listed = Vec::new();
    for (i, line) in sums.lines().enumerate() {
        let Some((sum, name)) = line.split_once("  ") else {
            problems.push(format!("SHA256SUMS:{}: malformed line", i + 1));
            continue;
        };
        if name.contains('/') || name.starts_with('.') {
            problems.push(format!("SHA256SUMS:{}: bad file name {name:?}", i + 1));
            continue;
        }
        listed.push(name.to_string());
        match fsutil::sha256_file(&dir.join(name)) {
            Ok(got) if got == sum => {}
            Ok(got) => problems.push(format!("{name}: sha256 {got}, SHA256SUMS says {sum}")),
            Err(_) => problems.push(format!("{name}: listed in SHA256SUMS but missing")),
        }
    }
    if !listed.iter().any(|n| n == "manifest.json") {
        problems.push("SHA256SUMS does not list manifest.json".into());
        return Ok(problems);
    }
    let manifest: Value = match fs::read_to_string(dir.join("manifest.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
    {
        Some(v) => v,
        None => {
            problems.push("manifest.json: unreadable".into());
            return Ok(problems);
        }
    };
    let mut members: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for m in manifest["tarball_members"].as_array().into_iter().flatten() {
        if let (Some(p), Some(s), Some(h)) =
            (m["path"].as_str(), m["size"].as_u64(), m["sha256"].as_str())
        {
            members.insert(p.to_string(), (s, h.to_string()));
        }
    }
    for out in manifest["outputs"].as_array().into_iter().flatten() {
        let name = out["name"].as_str().unwrap_or_default();
        let path = dir.join(name);
        let Ok(meta) = fs::metadata(&path) else {
            problems.push(format!("{name}: in the manifest but missing"));
            continue;
        };
        if Some(meta.len()) != out["size"].as_u64()
            || Some(fsutil::sha256_file(&path)?.as_str()) != out["sha256"].as_str()
        {
            problems.push(format!("{name}: size or sha256 differs from manifest.json"));
            continue;
        }
        if name.ends_with(".tar.gz") {
            problems.extend(check_members(&path, &mut members.clone())?);
        }
    }
    Ok(problems)
}

fn check_members(
    tarball: &Path,
    want: &mut BTreeMap<String, (u64, String)>,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let gz = flate2::read::GzDecoder::new(fs::File::open(tarball)?);
    let mut ar = tar::Archive::new(gz);
    let entries = match ar.entries() {
        Ok(e) => e,
        Err(e) => return Ok(vec![format!("{}: not a tar.gz: {e}", tarball.display())]),
    };
    for e in entries {
        let mut e = match e {
            Ok(e) => e,
            Err(err) => {
                problems.push(format!("tarball: unreadable entry: {err}"));
                break;
            }
        };
        if e.header().entry_type().is_dir() {
            continue;
        }
        let path = e.path()?.to_string_lossy().to_string();
        let mut data = Vec::new();
        if let Err(err) = e.read_to_end(&mut data) {
            problems.push(format!("tarball member {path}: {err}"));
            break;
        }
        match want.remove(&path) {
            Some((size, sum))
                if size == data.len() as u64 && sum == fsutil::sha256_bytes(&data) => {}
            Some(_) => problems.push(format!("tarball member {path}: differs from manifest.json")),
            None => problems.push(format!("tarball member {path}: not in manifest.json")),
        }
    }
    for p in want.keys() {
        problems.push(format!("tarball member {p}: in manifest.json but missing"));
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_from_epoch() {
        assert_eq!(iso8601(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_767_225_600).unwrap(), "2026-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400 + 3661).unwrap(), "2000-02-29T01:01:01Z");
    }

    /// A small release written with the real writers, then damaged.
    fn fake_release(dir: &Path) {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir.join("src")).unwrap();
        fs::write(dir.join("src/a"), b"kernel bytes").unwrap();
        fs::write(dir.join("src/b"), vec![7u8; 100_000]).unwrap();
        let members = vec![
            member("bzImage", &dir.join("src/a"), 0o644),
            member("sdk/lib/x", &dir.join("src/b"), 0o644),
        ];
        let rel = dir.join("rel");
        fs::create_dir_all(&rel).unwrap();
        let tb = rel.join("t.tar.gz");
        write_tarball(&tb, "top", &members, 1_767_225_600).unwrap();
        let manifest = json!({
            "outputs": [{"name": "t.tar.gz", "size": fs::metadata(&tb).unwrap().len(),
                         "sha256": fsutil::sha256_file(&tb).unwrap()}],
            "tarball_members": [
                {"path": "top/bzImage", "size": 12, "sha256": fsutil::sha256_bytes(b"kernel bytes")},
                {"path": "top/sdk/lib/x", "size": 100_000, "sha256": fsutil::sha256_bytes(&[7u8; 100_000])},
            ],
        });
        fs::write(rel.join("manifest.json"), manifest.to_string()).unwrap();
        let names = ["t.tar.gz".to_string(), "manifest.json".to_string()];
        fs::write(rel.join("SHA256SUMS"), sha256sums(&rel, &names).unwrap()).unwrap();
    }

    fn flip(path: &Path, at: usize) {
        let mut b = fs::read(path).unwrap();
        b[at] ^= 0x01;
        fs::write(path, b).unwrap();
    }

    #[test]
    fn an_intact_release_verifies_and_one_changed_byte_is_caught() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fake_release(&dir);
        let rel = dir.join("rel");
        assert_eq!(verify_dir(&rel).unwrap(), Vec::<String>::new());

        let tb = rel.join("t.tar.gz");
        let len = fs::metadata(&tb).unwrap().len() as usize;
        flip(&tb, len / 2);
        let p = verify_dir(&rel).unwrap();
        assert!(p.iter().any(|p| p.starts_with("t.tar.gz: sha256")), "{p:?}");

        fake_release(&dir);
        flip(&rel.join("manifest.json"), 10);
        let p = verify_dir(&rel).unwrap();
        assert!(
            p.iter().any(|p| p.starts_with("manifest.json: sha256")),
            "{p:?}"
        );
    }

    #[test]
    fn tarball_is_identical_whatever_the_file_times() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fake_release(&dir);
        let one = fs::read(dir.join("rel/t.tar.gz")).unwrap();
        let f = fs::File::options()
            .write(true)
            .open(dir.join("src/a"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        fake_release(&dir);
        assert_eq!(one, fs::read(dir.join("rel/t.tar.gz")).unwrap());
        assert_eq!(&one[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3]);
    }
}
