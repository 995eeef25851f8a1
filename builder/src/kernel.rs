//! `cargo det kernel`: Debian's 6.12 sources + our overlay and hook patches
//! + config fragments → bzImage and UAPI headers.
//!
//! Cache layout under `images/.cache/kernel/`:
//! - `src-<tarball sha256>/`: the extracted tree, with `kernel/tree/` copied
//!   over it and `kernel/patches/` applied. Changes are synced file by file
//!   (a file is rewritten only if its content differs, and files no longer
//!   touched are restored from the pristine copies kept in `.det-pristine/`),
//!   so make rebuilds exactly what changed.
//! - `build-<key>/`: one out-of-tree build directory per (tarball, fragments).
//! - `out/<key>/`: finished results, keyed by every input; a hit there is a
//!   no-op build.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::deps;
use crate::fsutil::{self, Key};
use crate::profile::Profile;
use crate::progress::{self, Step};
use crate::project::Project;

/// Our selftests' place in the overlay tree (and the kernel's).
pub const SELFTESTS: &str = "tools/testing/selftests/det";

/// A built kernel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kernel {
    pub bzimage: PathBuf,
    pub config: PathBuf,
    /// `make headers_install` output: `<headers>/include/linux/...`.
    pub headers: PathBuf,
    /// The patched source tree (for the selftests' includes).
    pub src: PathBuf,
    /// e.g. `6.12.57`.
    pub version: String,
    pub tarball: PathBuf,
    pub tarball_sha256: String,
    /// Hash of all inputs.
    pub key: String,
    /// Hash of the overlay tree and patch series.
    pub patches_sha256: String,
    /// Hash of the merged config fragments.
    pub config_sha256: String,
}

/// What goes into the kernel: everything here changes the key.
struct Inputs {
    tarball: PathBuf,
    tarball_sha256: String,
    overlay: BTreeMap<PathBuf, (Vec<u8>, u32)>,
    patches: Vec<(String, Vec<u8>)>,
    fragment: String,
    /// (file, line, symbol, value) for every line of every fragment.
    wanted: Vec<(PathBuf, usize, String, String)>,
    env: Vec<(&'static str, String)>,
    toolchain: String,
}

pub fn build(project: &Project, profile: &Profile) -> Result<Kernel> {
    let cache = project.cache("kernel");
    fs::create_dir_all(&cache)?;
    let inputs = Inputs::gather(project, profile, &cache)?;

    let patches_sha256 = {
        let mut k = Key::new("kernel-patches");
        for (p, (data, mode)) in &inputs.overlay {
            k.field("overlay", p.to_string_lossy().as_bytes())
                .field("data", data)
                .field("mode", mode.to_le_bytes());
        }
        for (name, data) in &inputs.patches {
            k.field("patch", name).field("data", data);
        }
        k.hex()
    };
    let config_sha256 = fsutil::sha256_bytes(inputs.fragment.as_bytes());
    let mut key = Key::new("kernel");
    key.field("tarball", &inputs.tarball_sha256)
        .field("patches", &patches_sha256)
        .field("config", &config_sha256)
        .field("toolchain", &inputs.toolchain);
    for (k, v) in &inputs.env {
        key.field(k, v);
    }
    let key = key.hex();
    let out = cache.join("out").join(&key[..16]);
    let meta_path = out.join("kernel.json");
    let cached = || -> Option<Kernel> {
        let k: Kernel = serde_json::from_str(&fs::read_to_string(&meta_path).ok()?).ok()?;
        (k.key == key && k.bzimage.is_file()).then_some(k)
    };
    // A finished result is renamed into place whole, so a hit needs no
    // lock: another builder busy with another key does not delay it.
    if let Some(k) = cached() {
        return Ok(k);
    }
    let _lock = Lock::take(&cache.join(".lock"))?;
    if let Some(k) = cached() {
        return Ok(k);
    }

    let src_root = cache.join(format!("src-{}", &inputs.tarball_sha256[..16]));
    let src = extract(&inputs.tarball, &src_root)?;
    sync_tree(&src, &src_root.join(".det-pristine"), &inputs)?;
    let version = kernel_version(&src)?;

    let build = cache.join(format!(
        "build-{}",
        &Key::new("kernel-build")
            .field("tarball", &inputs.tarball_sha256)
            .field("config", &config_sha256)
            .hex()[..16]
    ));
    fs::create_dir_all(&build)?;
    configure(&src, &build, &inputs)?;

    let step = Step::new(format!("kernel {version}: building bzImage"));
    let mut make = make_cmd(&src, &build, &inputs);
    make.arg(format!("-j{}", jobs())).arg("bzImage");
    progress::run_logged(&step, make, &build.join("det-build.log"))?;
    let mut hdr = make_cmd(&src, &build, &inputs);
    let staging = out.with_extension(format!("tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)?;
    hdr.arg(format!(
        "INSTALL_HDR_PATH={}",
        staging.join("headers").display()
    ))
    .arg("headers_install");
    progress::run_logged(&step, hdr, &build.join("det-headers.log"))?;
    fs::copy(build.join("arch/x86/boot/bzImage"), staging.join("bzImage"))?;
    fs::copy(build.join(".config"), staging.join("config"))?;
    let kernel = Kernel {
        bzimage: out.join("bzImage"),
        config: out.join("config"),
        headers: out.join("headers"),
        src: src.clone(),
        version,
        tarball: inputs.tarball.clone(),
        tarball_sha256: inputs.tarball_sha256.clone(),
        key,
        patches_sha256,
        config_sha256,
    };
    fs::write(
        staging.join("kernel.json"),
        serde_json::to_string_pretty(&kernel)?,
    )?;
    let _ = fs::remove_dir_all(&out);
    fs::rename(&staging, &out)?;
    let size = fs::metadata(&kernel.bzimage)?.len();
    step.done(&format!("bzImage {} KiB", size / 1024));
    Ok(kernel)
}

impl Inputs {
    fn gather(project: &Project, profile: &Profile, cache: &Path) -> Result<Inputs> {
        let tarball = profile.kernel.tarball.clone();
        if !tarball.is_file() {
            bail!(
                "kernel tarball {} not found (profile '{}': kernel.tarball); install it with `cargo det deps` (package linux-source-6.12) or point kernel.tarball at a 6.12 tarball",
                tarball.display(),
                profile.name
            );
        }
        let tarball_sha256 = tarball_sha256(cache, &tarball)?;
        if let Some(pin) = &profile.kernel.sha256 {
            if *pin != tarball_sha256 {
                bail!(
                    "kernel tarball {} has sha256 {tarball_sha256}, but profile '{}' pins {pin} (kernel.sha256); refusing to build from it",
                    tarball.display(),
                    profile.name
                );
            }
        }

        let tree = project.root.join("kernel/tree");
        let mut overlay = BTreeMap::new();
        for rel in fsutil::walk_files(&tree)? {
            // The selftests are user programs, built by userland.rs from
            // kernel/tree itself: they are no input of the kernel, and
            // editing one must not rebuild it.
            if rel.starts_with(SELFTESTS) {
                continue;
            }
            let path = tree.join(&rel);
            let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let mode = file_mode(&path)?;
            overlay.insert(rel, (data, mode));
        }

        let pdir = project.root.join("kernel/patches");
        let mut patches = Vec::new();
        if let Ok(series) = fs::read_to_string(pdir.join("series")) {
            for (i, line) in series.lines().enumerate() {
                let name = line.split('#').next().unwrap_or("").trim();
                if name.is_empty() {
                    continue;
                }
                let path = pdir.join(name);
                let data = fs::read(&path).with_context(|| {
                    format!("kernel/patches/series:{}: cannot read {name}", i + 1)
                })?;
                patches.push((name.to_string(), data));
            }
        }

        let mut fragment = String::new();
        let mut wanted = Vec::new();
        for name in &profile.kernel.fragments {
            let path = project
                .root
                .join("kernel/config")
                .join(format!("{name}.config"));
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            for (i, line) in text.lines().enumerate() {
                if let Some((sym, val)) = parse_config_line(line) {
                    wanted.push((path.clone(), i + 1, sym, val));
                } else if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
                    bail!("{}:{}: not a config line: {line}", path.display(), i + 1);
                }
            }
            fragment.push_str(&text);
            fragment.push('\n');
        }

        let epoch = profile.build.source_date_epoch;
        let env = vec![
            ("KBUILD_BUILD_TIMESTAMP", kbuild_timestamp(epoch)?),
            ("KBUILD_BUILD_USER", "detlinux".to_string()),
            ("KBUILD_BUILD_HOST", "detlinux".to_string()),
            ("KBUILD_BUILD_VERSION", "1".to_string()),
            ("SOURCE_DATE_EPOCH", epoch.to_string()),
        ];
        let toolchain =
            progress::first_line("gcc", "--version")? + &progress::first_line("make", "--version")?;
        Ok(Inputs {
            tarball,
            tarball_sha256,
            overlay,
            patches,
            fragment,
            wanted,
            env,
            toolchain,
        })
    }
}

/// sha256 of the tarball, remembered by (path, size, mtime, inode) so a
/// no-op build does not re-read 140 MiB.
fn tarball_sha256(cache: &Path, tarball: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(tarball)?;
    let stamp = format!(
        "{}:{}:{}:{}",
        tarball.display(),
        meta.len(),
        meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
        meta.ino()
    );
    let memo = cache.join("tarball-sha256.json");
    let mut known: BTreeMap<String, String> = fs::read_to_string(&memo)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    if let Some(sha) = known.get(&stamp) {
        return Ok(sha.clone());
    }
    let step = Step::new(format!("hashing {}", tarball.display()));
    let sha = fsutil::sha256_file(tarball)?;
    step.done(&sha);
    known.insert(stamp, sha.clone());
    fsutil::write_atomic(&memo, serde_json::to_string_pretty(&known)?.as_bytes())?;
    Ok(sha)
}

/// Extract the tarball once into `root/linux` (atomically: a failed or
/// interrupted extraction leaves no tree behind).
fn extract(tarball: &Path, root: &Path) -> Result<PathBuf> {
    let src = root.join("linux");
    if src.join("Makefile").is_file() {
        return Ok(src);
    }
    let tmp = root.with_extension(format!("extract-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    let step = Step::new(format!("extracting {}", tarball.display()));
    let mut tar = deps::command("tar");
    tar.arg("-xf").arg(tarball).arg("-C").arg(&tmp);
    let log = root.with_extension("extract.log");
    let result = progress::run_logged(&step, tar, &log);
    let _ = fs::remove_file(&log);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        bail!(
            "kernel tarball {} could not be extracted (corrupt or not a tarball?): {e:#}",
            tarball.display()
        );
    }
    let tops: Vec<_> = fs::read_dir(&tmp)?.filter_map(|e| e.ok()).collect();
    let top = match tops.as_slice() {
        [one] if one.path().join("Makefile").is_file() => one.path(),
        _ => {
            let _ = fs::remove_dir_all(&tmp);
            bail!(
                "kernel tarball {} does not hold one kernel source directory",
                tarball.display()
            );
        }
    };
    fs::create_dir_all(root)?;
    let _ = fs::remove_dir_all(&src);
    fs::rename(&top, &src)?;
    fs::remove_dir_all(&tmp)?;
    step.done("");
    Ok(src)
}

#[derive(Serialize, Deserialize, Default)]
struct Applied {
    /// Paths we wrote, relative to the source tree, and whether upstream
    /// had the file (then a pristine copy is kept).
    paths: BTreeMap<PathBuf, bool>,
}

/// Make the source tree equal pristine + overlay + patches, writing only
/// files whose content changes.
fn sync_tree(src: &Path, pristine: &Path, inputs: &Inputs) -> Result<()> {
    let state_path = pristine.join("applied.json");
    let applied: Applied = fs::read_to_string(&state_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    // Pristine content of a path: the saved copy if we changed it, the tree
    // itself if we never touched it, nothing if we added it.
    let upstream = |rel: &Path| -> Option<PathBuf> {
        match applied.paths.get(rel) {
            Some(true) => Some(pristine.join("files").join(rel)),
            Some(false) => None,
            None => src.join(rel).is_file().then(|| src.join(rel)),
        }
    };

    // Desired content of every touched path, computed in a staging tree.
    let staging = pristine.with_file_name(format!(".det-staging-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)?;
    let result = (|| -> Result<BTreeMap<PathBuf, (Vec<u8>, u32)>> {
        for (rel, (data, mode)) in &inputs.overlay {
            write_mode(&staging.join(rel), data, *mode)?;
        }
        for (name, patch) in &inputs.patches {
            for rel in patch_targets(patch) {
                let dst = staging.join(&rel);
                if dst.exists() {
                    continue;
                }
                if let Some(up) = upstream(&rel) {
                    let mode = file_mode(&up)?;
                    write_mode(&dst, &fs::read(&up)?, mode)?;
                }
            }
            let out = deps::command("patch")
                .args([
                    "-p1",
                    "--forward",
                    "--batch",
                    "--no-backup-if-mismatch",
                    "--fuzz=0",
                    "-r",
                    "-",
                    "-s",
                ])
                .arg("-d")
                .arg(&staging)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    c.stdin.take().expect("piped").write_all(patch)?;
                    c.wait_with_output()
                })
                .context("running patch")?;
            if !out.status.success() {
                bail!(
                    "kernel/patches/{name} does not apply to {}:\n{}{}",
                    inputs.tarball.display(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let mut desired = BTreeMap::new();
        for rel in fsutil::walk_files(&staging)? {
            let path = staging.join(&rel);
            desired.insert(rel, (fs::read(&path)?, file_mode(&path)?));
        }
        Ok(desired)
    })();
    let _ = fs::remove_dir_all(&staging);
    let desired = result?;

    let mut next = Applied::default();
    let mut changed = 0;
    // Restore what is no longer touched.
    for (rel, had_upstream) in &applied.paths {
        if desired.contains_key(rel) {
            continue;
        }
        let dst = src.join(rel);
        if *had_upstream {
            let saved = pristine.join("files").join(rel);
            write_mode(&dst, &fs::read(&saved)?, file_mode(&saved)?)?;
            fs::remove_file(&saved)?;
        } else {
            let _ = fs::remove_file(&dst);
        }
        changed += 1;
    }
    // Write what differs, saving upstream's copy the first time.
    for (rel, (data, mode)) in &desired {
        let dst = src.join(rel);
        let had_upstream = match applied.paths.get(rel) {
            Some(h) => *h,
            None => {
                let exists = dst.is_file();
                if exists {
                    let saved = pristine.join("files").join(rel);
                    write_mode(&saved, &fs::read(&dst)?, file_mode(&dst)?)?;
                }
                exists
            }
        };
        next.paths.insert(rel.clone(), had_upstream);
        let same = fs::read(&dst).map(|d| d == *data).unwrap_or(false)
            && file_mode(&dst).map(|m| m == *mode).unwrap_or(false);
        if !same {
            write_mode(&dst, data, *mode)?;
            changed += 1;
        }
    }
    // Record state only after the tree matches it.
    fsutil::write_atomic(&state_path, serde_json::to_string_pretty(&next)?.as_bytes())?;
    if changed > 0 {
        eprintln!("kernel: {changed} source file(s) updated from kernel/tree and kernel/patches");
    }
    Ok(())
}

/// Files a unified diff modifies or creates (`+++ b/path`).
fn patch_targets(patch: &[u8]) -> Vec<PathBuf> {
    let text = String::from_utf8_lossy(patch);
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("+++ ") {
            let path = rest.split('\t').next().unwrap_or("").trim();
            if let Some((_, rel)) = path.split_once('/') {
                if path != "/dev/null" {
                    out.insert(PathBuf::from(rel));
                }
            }
        }
    }
    out.into_iter().collect()
}

fn file_mode(path: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode()
        & 0o777)
}

fn write_mode(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, data).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Write the merged fragments and run `allnoconfig` with them, only when
/// they (or the Kconfig files we touch) changed; then check every line.
fn configure(src: &Path, build: &Path, inputs: &Inputs) -> Result<()> {
    let mut k = Key::new("kernel-config");
    k.field("fragment", &inputs.fragment);
    for (rel, (data, _)) in &inputs.overlay {
        if rel.to_string_lossy().contains("Kconfig") {
            k.field("kconfig", data);
        }
    }
    for (name, data) in &inputs.patches {
        k.field(name, data);
    }
    let stamp = build.join("det-config.sha256");
    let key = k.hex();
    if fs::read_to_string(&stamp).ok().as_deref() != Some(key.as_str())
        || !build.join(".config").is_file()
    {
        let frag = build.join("det-fragment.config");
        fs::write(&frag, &inputs.fragment)?;
        let step = Step::new("kernel: configuring");
        let mut make = make_cmd(src, build, inputs);
        make.arg(format!("KCONFIG_ALLCONFIG={}", frag.display()))
            .arg("allnoconfig");
        progress::run_logged(&step, make, &build.join("det-config.log"))?;
        step.done("");
        check_config(&build.join(".config"), &inputs.wanted)?;
        fs::write(&stamp, &key)?;
    }
    Ok(())
}

/// Every fragment line must hold in the final .config: a symbol that did
/// not stick usually has an unmet dependency.
fn check_config(config: &Path, wanted: &[(PathBuf, usize, String, String)]) -> Result<()> {
    let text = fs::read_to_string(config)?;
    let have: BTreeMap<String, String> = text.lines().filter_map(parse_config_line).collect();
    let mut bad = Vec::new();
    for (file, line, sym, val) in wanted {
        let got = have.get(sym).map(String::as_str).unwrap_or("n");
        if got != val {
            bad.push(format!(
                "{}:{line}: {sym}={val} did not hold (got {got}); a dependency is probably missing",
                file.display()
            ));
        }
    }
    if !bad.is_empty() {
        bail!("kernel config:\n{}", bad.join("\n"));
    }
    Ok(())
}

/// `CONFIG_X=v` → (CONFIG_X, v); `# CONFIG_X is not set` → (CONFIG_X, n).
fn parse_config_line(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("# ") {
        let sym = rest.strip_suffix(" is not set")?;
        return sym
            .starts_with("CONFIG_")
            .then(|| (sym.to_string(), "n".to_string()));
    }
    let (sym, val) = line.split_once('=')?;
    sym.starts_with("CONFIG_")
        .then(|| (sym.to_string(), val.to_string()))
}

fn make_cmd(src: &Path, build: &Path, inputs: &Inputs) -> Command {
    let mut c = deps::command("make");
    c.arg("-C").arg(src).arg(format!("O={}", build.display()));
    c.envs(inputs.env.iter().map(|(k, v)| (*k, v.as_str())));
    // Keep the host's locale and make flags out of the build.
    c.env("LC_ALL", "C")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS");
    c
}

fn jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn kernel_version(src: &Path) -> Result<String> {
    let text = fs::read_to_string(src.join("Makefile"))?;
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.trim_start().strip_prefix('='))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let v = format!(
        "{}.{}.{}{}",
        get("VERSION"),
        get("PATCHLEVEL"),
        get("SUBLEVEL"),
        get("EXTRAVERSION")
    );
    if !v.starts_with("6.12.") {
        bail!("kernel source is version {v}, not 6.12.y");
    }
    Ok(v)
}

/// `date -u -d @epoch` style, as UTS_VERSION shows it:
/// `Thu Jan  1 00:00:00 UTC 1970`.
pub fn kbuild_timestamp(epoch: u64) -> Result<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(epoch)?)?;
    Ok(t.format(time::macros::format_description!(
        "[weekday repr:short] [month repr:short] [day padding:space] [hour]:[minute]:[second] UTC [year]"
    ))?)
}

/// An exclusive flock, released on drop: two builders never share a cache
/// directory at the same time.
pub struct Lock {
    _file: fs::File,
}

impl Lock {
    pub fn take(path: &Path) -> Result<Lock> {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        if f.try_lock().is_err() {
            eprintln!("waiting for another builder ({})", path.display());
            f.lock()
                .with_context(|| format!("locking {}", path.display()))?;
        }
        Ok(Lock { _file: f })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_look_like_date() {
        assert_eq!(kbuild_timestamp(0).unwrap(), "Thu Jan  1 00:00:00 UTC 1970");
        assert_eq!(
            kbuild_timestamp(1_767_225_600).unwrap(),
            "Thu Jan  1 00:00:00 UTC 2026"
        );
        assert_eq!(
            kbuild_timestamp(951_782_400).unwrap(),
            "Tue Feb 29 00:00:00 UTC 2000"
        );
    }

    #[test]
    fn config_lines() {
        assert_eq!(
            parse_config_line("CONFIG_SMP=y"),
            Some(("CONFIG_SMP".into(), "y".into()))
        );
        assert_eq!(
            parse_config_line("# CONFIG_SMP is not set"),
            Some(("CONFIG_SMP".into(), "n".into()))
        );
        assert_eq!(parse_config_line("# a comment"), None);
        assert_eq!(parse_config_line("FOO=y"), None);
    }

    #[test]
    fn config_check_names_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let cfg = dir.join(".config");
        fs::write(&cfg, "CONFIG_A=y\n# CONFIG_B is not set\n").unwrap();
        let frag = PathBuf::from("kernel/config/x.config");
        let ok = [(frag.clone(), 1, "CONFIG_A".into(), "y".into())];
        check_config(&cfg, &ok).unwrap();
        let bad = [
            (frag.clone(), 2, "CONFIG_B".into(), "y".into()),
            (frag.clone(), 3, "CONFIG_C".into(), "n".into()),
        ];
        let e = check_config(&cfg, &bad).unwrap_err().to_string();
        assert!(e.contains("x.config:2: CONFIG_B=y did not hold"), "{e}");
        assert!(!e.contains("CONFIG_C"), "{e}");
    }

    fn inputs(overlay: &[(&str, &str)], patches: &[(&str, &str)]) -> Inputs {
        Inputs {
            tarball: PathBuf::from("/dev/null"),
            tarball_sha256: "0".repeat(64),
            overlay: overlay
                .iter()
                .map(|(p, d)| (PathBuf::from(p), (d.as_bytes().to_vec(), 0o644)))
                .collect(),
            patches: patches
                .iter()
                .map(|(n, d)| (n.to_string(), d.as_bytes().to_vec()))
                .collect(),
            fragment: String::new(),
            wanted: Vec::new(),
            env: Vec::new(),
            toolchain: String::new(),
        }
    }

    const PATCH: &str = "From: x\nSubject: [PATCH] hook\n---\n--- a/kernel/fork.c\n+++ b/kernel/fork.c\n@@ -1,2 +1,3 @@\n int fork;\n+int det_hook;\n int more;\n";

    #[test]
    fn sync_applies_restores_and_writes_only_what_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let src = dir.join("linux");
        let pristine = dir.join(".det-pristine");
        fs::create_dir_all(src.join("kernel")).unwrap();
        fs::write(src.join("kernel/fork.c"), "int fork;\nint more;\n").unwrap();
        fs::write(src.join("Makefile"), "all:\n").unwrap();
        let read = |p: &str| fs::read_to_string(src.join(p)).unwrap();
        let mtime = |p: &str| fs::metadata(src.join(p)).unwrap().modified().unwrap();

        // Overlay + patch applied.
        let one = inputs(
            &[("kernel/det/det.c", "int det;\n")],
            &[("0001-hook.patch", PATCH)],
        );
        sync_tree(&src, &pristine, &one).unwrap();
        assert_eq!(read("kernel/det/det.c"), "int det;\n");
        assert_eq!(
            read("kernel/fork.c"),
            "int fork;\nint det_hook;\nint more;\n"
        );

        // Same inputs again: nothing rewritten.
        let (t1, t2) = (mtime("kernel/det/det.c"), mtime("kernel/fork.c"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        sync_tree(&src, &pristine, &one).unwrap();
        assert_eq!(
            (t1, t2),
            (mtime("kernel/det/det.c"), mtime("kernel/fork.c"))
        );

        // Patch dropped, overlay file changed: fork.c back to upstream,
        // untouched files keep their mtime.
        let two = inputs(&[("kernel/det/det.c", "int det2;\n")], &[]);
        let mk = mtime("Makefile");
        sync_tree(&src, &pristine, &two).unwrap();
        assert_eq!(read("kernel/fork.c"), "int fork;\nint more;\n");
        assert_eq!(read("kernel/det/det.c"), "int det2;\n");
        assert_eq!(mk, mtime("Makefile"));

        // Everything dropped: the added file is gone.
        sync_tree(&src, &pristine, &inputs(&[], &[])).unwrap();
        assert!(!src.join("kernel/det/det.c").exists());

        // A patch that does not apply is an error naming it; the tree is untouched.
        let bad = PATCH.replace("int more;", "int other;");
        let e = sync_tree(&src, &pristine, &inputs(&[], &[("0002-bad.patch", &bad)]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("0002-bad.patch does not apply"), "{e}");
        assert_eq!(read("kernel/fork.c"), "int fork;\nint more;\n");
    }

    struct FakeProject(tempfile::TempDir);

    impl FakeProject {
        fn new(profile: &str) -> FakeProject {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path();
            fs::create_dir_all(root.join("configs")).unwrap();
            fs::create_dir_all(root.join("kernel/config")).unwrap();
            fs::write(root.join("kernel/config/base.config"), "CONFIG_SMP=y\n").unwrap();
            fs::write(root.join("configs/p.toml"), profile).unwrap();
            FakeProject(tmp)
        }
        fn gather(&self) -> Result<Inputs> {
            let project = Project {
                root: self.0.path().to_path_buf(),
            };
            let profile = project.profile("p")?;
            let cache = self.0.path().join("cache");
            fs::create_dir_all(&cache)?;
            Inputs::gather(&project, &profile, &cache)
        }
    }

    #[test]
    fn missing_tarball_is_a_clear_error() {
        let p =
            FakeProject::new("[kernel]\ntarball = \"no/such.tar.xz\"\nfragments = [\"base\"]\n");
        let e = p.gather().err().expect("must fail").to_string();
        assert!(e.contains("no/such.tar.xz not found"), "{e}");
        assert!(e.contains("kernel.tarball"), "{e}");
    }

    #[test]
    fn pinned_sha256_mismatch_is_refused() {
        let p = FakeProject::new(&format!(
            "[kernel]\ntarball = \"t.tar.xz\"\nsha256 = \"{}\"\nfragments = [\"base\"]\n",
            "ab".repeat(32)
        ));
        fs::write(p.0.path().join("t.tar.xz"), "not really a tarball").unwrap();
        let e = p.gather().err().expect("must fail").to_string();
        assert!(e.contains(&format!("pins {}", "ab".repeat(32))), "{e}");
        assert!(
            e.contains(&fsutil::sha256_bytes(b"not really a tarball")),
            "{e}"
        );
        assert!(e.contains("refusing"), "{e}");
    }

    #[test]
    fn corrupt_tarball_is_a_clear_error_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let t = dir.join("bad.tar.xz");
        fs::write(&t, b"\xfd7zXZ\0garbage").unwrap();
        let root = dir.join("src-x");
        let e = format!("{:#}", extract(&t, &root).unwrap_err());
        assert!(e.contains("could not be extracted"), "{e}");
        assert!(!root.join("linux").exists());
        let left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "left behind: {left:?}");
    }

    #[test]
    fn patch_targets_are_b_paths() {
        let p = b"--- a/arch/x86/entry/syscalls/syscall_64.tbl\n+++ b/arch/x86/entry/syscalls/syscall_64.tbl\n@@ -1 +1 @@\n--- a/x\n+++ b/kernel/fork.c\t2026-01-01\n";
        assert_eq!(
            patch_targets(p),
            vec![
                PathBuf::from("arch/x86/entry/syscalls/syscall_64.tbl"),
                PathBuf::from("kernel/fork.c")
            ]
        );
    }
}
