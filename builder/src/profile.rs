//! Image profiles: layered TOML in `configs/`.
//!
//! A profile file may name the profile it builds on with a top-level
//! `inherit = "base"`. Files are applied from the root of that chain down:
//! a scalar set in a later file replaces the earlier value, and lists
//! (`kernel.fragments`) are appended to, without duplicates. Unknown keys
//! and bad values are errors that name the file, the line and the key.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bootproto::Mode;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// `--profile`, for the verbs that take one profile.
#[derive(clap::Args, Clone)]
pub struct ProfileArg {
    /// Profile name: configs/<PROFILE>.toml.
    #[arg(long, short, default_value = "default")]
    pub profile: String,
}

/// A fully resolved profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    /// The files it was built from, root of the inheritance chain first.
    pub files: Vec<PathBuf>,
    pub kernel: KernelCfg,
    pub userland: UserlandCfg,
    pub boot: BootCfg,
    pub disk: DiskCfg,
    pub build: BuildCfg,
}

#[derive(Debug, Clone)]
pub struct KernelCfg {
    /// The kernel source tarball (absolute).
    pub tarball: PathBuf,
    /// If set, the tarball must have this sha256.
    pub sha256: Option<String>,
    /// Config fragments, names of `kernel/config/<name>.config`, in order.
    pub fragments: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct UserlandCfg {
    /// Install the in-guest test programs.
    pub tests: bool,
    /// Install busybox and its applets (the interactive shell).
    pub busybox: bool,
}

#[derive(Debug, Clone)]
pub struct BootCfg {
    pub cpus: u32,
    pub memory_mib: u32,
    /// What init runs: `tests`, `demos`, `shell` or a command.
    pub run: Mode,
    /// Extra kernel command line.
    pub cmdline: String,
    pub timeout_secs: u64,
    pub accel: AccelChoice,
}

/// Where the command line built into a disk image sends the guest's
/// console, output and status (docs/disk-image.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channels {
    /// The serial port and the screen, for real machines.
    Console,
    /// The three channels of docs/boot-protocol.md, for QEMU runs.
    Harness,
}

/// Which accelerator boots guests, as a profile or `--accel` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    /// KVM only when a time-boxed probe shows that it works, else TCG.
    Auto,
    /// QEMU's emulator.
    Tcg,
    /// KVM, unprobed.
    Kvm,
}

#[derive(Debug, Clone)]
pub struct DiskCfg {
    /// Size of the EFI system partition (FAT32), MiB.
    pub esp_mib: u32,
    /// Size of the data partition (ext4), MiB.
    pub data_mib: u32,
    /// The command line built into the disk.
    pub channels: Channels,
    /// `cargo det test` also boots the disk image under UEFI and BIOS.
    pub test_boots: bool,
    /// `cargo det test` also boots this profile's disk.img like a PC (no
    /// serial port, USB keyboard, VGA; checked by OCR); empty: no PC boots.
    pub pc_profile: String,
}

#[derive(Debug, Clone)]
pub struct BuildCfg {
    /// Every timestamp in every artifact.
    pub source_date_epoch: u64,
}

/// One file's contents; every field optional so a file may set any subset.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Layer {
    inherit: Option<Spanned<String>>,
    #[serde(default)]
    kernel: KernelLayer,
    #[serde(default)]
    userland: UserlandLayer,
    #[serde(default)]
    boot: BootLayer,
    #[serde(default)]
    disk: DiskLayer,
    #[serde(default)]
    build: BuildLayer,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DiskLayer {
    esp_mib: Option<Spanned<i64>>,
    data_mib: Option<Spanned<i64>>,
    channels: Option<Channels>,
    test_boots: Option<bool>,
    pc_profile: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KernelLayer {
    tarball: Option<Spanned<String>>,
    sha256: Option<Spanned<String>>,
    fragments: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UserlandLayer {
    tests: Option<bool>,
    busybox: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BootLayer {
    cpus: Option<Spanned<i64>>,
    memory_mib: Option<Spanned<i64>>,
    run: Option<Spanned<String>>,
    cmdline: Option<Spanned<String>>,
    timeout_secs: Option<Spanned<i64>>,
    accel: Option<AccelChoice>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BuildLayer {
    source_date_epoch: Option<Spanned<i64>>,
}

/// An error located in a profile file.
#[derive(Debug)]
pub struct ProfileError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

impl std::error::Error for ProfileError {}

/// Source text of one file, for turning byte spans into line numbers.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, span: std::ops::Range<usize>, message: String) -> ProfileError {
        let line = 1 + self.text[..span.start.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count();
        ProfileError {
            file: self.path.to_path_buf(),
            line,
            message,
        }
    }
}

pub const DEFAULT_TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";

impl Profile {
    /// Every key's default: the one place they are written. Profiles
    /// (configs/base.toml included) set only what differs, and
    /// docs/profiles.md's table is checked against these by a test.
    fn defaults(name: &str, files: Vec<PathBuf>) -> Profile {
        Profile {
            name: name.to_string(),
            files,
            kernel: KernelCfg {
                tarball: PathBuf::from(DEFAULT_TARBALL),
                sha256: None,
                fragments: Vec::new(),
            },
            userland: UserlandCfg {
                tests: true,
                busybox: true,
            },
            boot: BootCfg {
                cpus: 2,
                memory_mib: 1024,
                run: Mode::Shell,
                cmdline: String::new(),
                timeout_secs: 600,
                accel: AccelChoice::Auto,
            },
            disk: DiskCfg {
                esp_mib: 64,
                data_mib: 64,
                channels: Channels::Console,
                test_boots: false,
                pc_profile: String::new(),
            },
            build: BuildCfg {
                source_date_epoch: 1_767_225_600, // 2026-01-01T00:00:00Z
            },
        }
    }

    /// Load `configs/<name>.toml` and everything it inherits.
    pub fn load(configs: &Path, root: &Path, name: &str) -> Result<Profile> {
        let mut chain: Vec<(PathBuf, String)> = Vec::new();
        let mut next = Some(name.to_string());
        while let Some(n) = next.take() {
            check_name(configs, &n)?;
            let path = configs.join(format!("{n}.toml"));
            if chain.iter().any(|(p, _)| *p == path) {
                bail!("{}: inheritance loop through profile '{n}'", path.display());
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let layer = parse_layer(&path, &text)?;
            next = layer.inherit.map(|s| s.into_inner());
            chain.push((path, text));
        }
        chain.reverse();

        let mut p = Profile::defaults(name, chain.iter().map(|(p, _)| p.clone()).collect());
        for (path, text) in &chain {
            let src = Source { path, text };
            let layer = parse_layer(path, text)?;
            p.apply(&src, layer, root)?;
        }
        Ok(p)
    }

    fn apply(&mut self, src: &Source, l: Layer, root: &Path) -> Result<(), ProfileError> {
        if let Some(t) = l.kernel.tarball {
            let span = t.span();
            let t = t.into_inner();
            if t.is_empty() {
                return Err(src.error(span, "kernel.tarball: must not be empty".into()));
            }
            self.kernel.tarball = root.join(t);
        }
        if let Some(s) = l.kernel.sha256 {
            let span = s.span();
            let s = s.into_inner();
            if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(src.error(
                    span,
                    format!("kernel.sha256: expected 64 hex digits, got {s:?}"),
                ));
            }
            self.kernel.sha256 = Some(s.to_ascii_lowercase());
        }
        if let Some(f) = l.kernel.fragments {
            let span = f.span();
            for frag in f.into_inner() {
                let file = root.join("kernel/config").join(format!("{frag}.config"));
                if frag.is_empty() || frag.contains('/') || !file.is_file() {
                    return Err(src.error(
                        span,
                        format!("kernel.fragments: no fragment kernel/config/{frag}.config"),
                    ));
                }
                if !self.kernel.fragments.contains(&frag) {
                    self.kernel.fragments.push(frag);
                }
            }
        }
        if let Some(v) = l.userland.tests {
            self.userland.tests = v;
        }
        if let Some(v) = l.userland.busybox {
            self.userland.busybox = v;
        }
        let b = l.boot;
        if let Some(v) = b.cpus {
            self.boot.cpus = in_range(src, "boot.cpus", v, 1, 64)? as u32;
        }
        if let Some(v) = b.memory_mib {
            self.boot.memory_mib = in_range(src, "boot.memory_mib", v, 128, 16384)? as u32;
        }
        if let Some(v) = b.timeout_secs {
            self.boot.timeout_secs = in_range(src, "boot.timeout_secs", v, 1, 86400)? as u64;
        }
        if let Some(v) = b.run {
            let span = v.span();
            let v = v.into_inner();
            self.boot.run =
                Mode::parse(&v).map_err(|e| src.error(span, format!("boot.run: {e}")))?;
        }
        if let Some(v) = b.cmdline {
            self.boot.cmdline = v.into_inner();
        }
        if let Some(v) = b.accel {
            self.boot.accel = v;
        }
        let d = l.disk;
        if let Some(v) = d.esp_mib {
            // FAT32 needs 65525 clusters: at 512-byte clusters, 33 MiB.
            self.disk.esp_mib = in_range(src, "disk.esp_mib", v, 40, 4096)? as u32;
        }
        if let Some(v) = d.data_mib {
            self.disk.data_mib = in_range(src, "disk.data_mib", v, 8, 65536)? as u32;
        }
        if let Some(v) = d.channels {
            self.disk.channels = v;
        }
        if let Some(v) = d.test_boots {
            self.disk.test_boots = v;
        }
        if let Some(v) = d.pc_profile {
            let span = v.span();
            let v = v.into_inner();
            let name_ok = v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok {
                return Err(src.error(
                    span,
                    format!("disk.pc_profile: {v:?} is not a profile name"),
                ));
            }
            self.disk.pc_profile = v;
        }
        if let Some(v) = l.build.source_date_epoch {
            self.build.source_date_epoch = in_range(
                src,
                "build.source_date_epoch",
                v,
                315_532_800,
                4_102_444_800,
            )? as u64;
        }
        Ok(())
    }
}

fn in_range(
    src: &Source,
    key: &str,
    v: Spanned<i64>,
    lo: i64,
    hi: i64,
) -> Result<i64, ProfileError> {
    let span = v.span();
    let v = v.into_inner();
    if v < lo || v > hi {
        return Err(src.error(span, format!("{key}: {v} is out of range {lo}..={hi}")));
    }
    Ok(v)
}

fn check_name(configs: &Path, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok && configs.join(format!("{name}.toml")).is_file() {
        return Ok(());
    }
    let mut names: Vec<String> = std::fs::read_dir(configs)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let n = e.file_name().into_string().ok()?;
                    n.strip_suffix(".toml").map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    bail!(
        "no profile '{name}' (looked for {}); profiles: {}",
        configs.join(format!("{name}.toml")).display(),
        names.join(", ")
    )
}

fn parse_layer(path: &Path, text: &str) -> Result<Layer, ProfileError> {
    toml::from_str::<Layer>(text).map_err(|e| {
        let src = Source { path, text };
        let span = e.span().unwrap_or(0..0);
        let mut message = e
            .message()
            .trim()
            .replace("unknown field", "unknown key")
            .replace("unknown variant", "unknown value");
        if let Some(key) = key_at(text, span.start) {
            message = format!("{key}: {message}");
        }
        src.error(span, message)
    })
}

/// The `table.key` whose value starts at byte `at` (for type errors, which
/// toml reports without the key).
fn key_at(text: &str, at: usize) -> Option<String> {
    let before = text.get(..at)?;
    let line = before.rsplit('\n').next()?;
    let key = line.split_once('=')?.0.trim();
    let table = before
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix('[')?.strip_suffix(']'));
    Some(match table {
        Some(t) => format!("{}.{key}", t.trim()),
        None => key.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Tree(tempfile::TempDir);

    impl Tree {
        fn new(files: &[(&str, &str)]) -> Tree {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            std::fs::create_dir_all(dir.join("configs")).unwrap();
            std::fs::create_dir_all(dir.join("kernel/config")).unwrap();
            std::fs::write(dir.join("kernel/config/base.config"), "").unwrap();
            std::fs::write(dir.join("kernel/config/debug.config"), "").unwrap();
            for (name, text) in files {
                std::fs::write(dir.join("configs").join(name), text).unwrap();
            }
            Tree(tmp)
        }
        fn load(&self, name: &str) -> Result<Profile> {
            let root = self.0.path();
            Profile::load(&root.join("configs"), root, name)
        }
    }

    const BASE: &str = "[kernel]\nfragments = [\"base\"]\n[boot]\ncpus = 2\nrun = \"shell\"\n";

    #[test]
    fn overlay_overrides_scalars_and_appends_lists() {
        let t = Tree::new(&[
            ("base.toml", BASE),
            (
                "debug.toml",
                "inherit = \"base\"\n[kernel]\nfragments = [\"debug\", \"base\"]\n[boot]\nrun = \"tests\"\n",
            ),
        ]);
        let p = t.load("debug").unwrap();
        assert_eq!(p.kernel.fragments, vec!["base", "debug"]);
        assert_eq!(p.boot.run, Mode::Tests);
        assert_eq!(p.boot.cpus, 2);
        assert_eq!(p.files.len(), 2);
        assert!(p.files[0].ends_with("base.toml"));
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let t = Tree::new(&[
            ("base.toml", BASE),
            (
                "bad.toml",
                "inherit = \"base\"\n\n[boot]\ncpus = 1\nmemroy_mib = 512\n",
            ),
        ]);
        let err = t.load("bad").unwrap_err().to_string();
        assert!(err.contains("bad.toml:5:"), "{err}");
        assert!(err.contains("memroy_mib"), "{err}");
    }

    #[test]
    fn unknown_table_is_an_error() {
        let t = Tree::new(&[("base.toml", "[kernal]\ntarball = \"x\"\n")]);
        let err = t.load("base").unwrap_err().to_string();
        assert!(
            err.contains("base.toml:1:") && err.contains("kernal"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_the_line() {
        let t = Tree::new(&[
            ("a.toml", "[boot]\ncpus = 0\n"),
            ("b.toml", "[kernel]\nsha256 = \"abc\"\n"),
            ("c.toml", "[boot]\n\naccel = \"hvf\"\n"),
            ("d.toml", "[kernel]\nfragments = [\"nope\"]\n"),
            ("e.toml", "[boot]\ncpus = \"two\"\n"),
            ("f.toml", "[disk]\nchannels = \"serial\"\n"),
            ("g.toml", "[disk]\n\nesp_mib = 16\n"),
        ]);
        let e = t.load("f").unwrap_err().to_string();
        assert!(
            e.contains("f.toml:2:") && e.contains("disk.channels"),
            "{e}"
        );
        let e = t.load("g").unwrap_err().to_string();
        assert!(e.contains("g.toml:3:") && e.contains("disk.esp_mib"), "{e}");
        let e = t.load("a").unwrap_err().to_string();
        assert!(e.contains("a.toml:2:") && e.contains("boot.cpus"), "{e}");
        let e = t.load("b").unwrap_err().to_string();
        assert!(e.contains("b.toml:2:") && e.contains("64 hex"), "{e}");
        let e = t.load("c").unwrap_err().to_string();
        assert!(e.contains("c.toml:3:") && e.contains("boot.accel"), "{e}");
        let e = t.load("d").unwrap_err().to_string();
        assert!(e.contains("d.toml:2:") && e.contains("nope.config"), "{e}");
        let e = t.load("e").unwrap_err().to_string();
        assert!(e.contains("e.toml:2:") && e.contains("boot.cpus"), "{e}");
    }

    #[test]
    fn missing_profile_lists_the_available_ones() {
        let t = Tree::new(&[("base.toml", BASE)]);
        let e = t.load("nosuch").unwrap_err().to_string();
        assert!(
            e.contains("no profile 'nosuch'") && e.contains("base"),
            "{e}"
        );
        let e = t.load("../etc/passwd").unwrap_err().to_string();
        assert!(e.contains("no profile"), "{e}");
    }

    #[test]
    fn inheritance_loop_is_an_error() {
        let t = Tree::new(&[
            ("a.toml", "inherit = \"b\"\n"),
            ("b.toml", "inherit = \"a\"\n"),
        ]);
        let e = t.load("a").unwrap_err().to_string();
        assert!(e.contains("inheritance loop"), "{e}");
    }

    /// docs/profiles.md's default column says what [`Profile::defaults`]
    /// says, and base.toml repeats none of it.
    #[test]
    fn docs_and_base_agree_with_the_defaults() {
        let d = Profile::defaults("x", Vec::new());
        let quoted = |s: &str| format!("`{s:?}`");
        let plain = |v: &dyn std::fmt::Display| format!("`{v}`");
        let lower = |v: &dyn std::fmt::Debug| quoted(&format!("{v:?}").to_lowercase());
        let want: BTreeMap<&str, String> = [
            ("inherit", "—".to_string()),
            ("kernel.tarball", plain(&d.kernel.tarball.display())),
            ("kernel.sha256", "—".to_string()),
            ("kernel.fragments", plain(&"[]")),
            ("userland.tests", plain(&d.userland.tests)),
            ("userland.busybox", plain(&d.userland.busybox)),
            ("boot.cpus", plain(&d.boot.cpus)),
            ("boot.memory_mib", plain(&d.boot.memory_mib)),
            ("boot.run", quoted(d.boot.run.as_str())),
            ("boot.cmdline", quoted(&d.boot.cmdline)),
            ("boot.timeout_secs", plain(&d.boot.timeout_secs)),
            ("boot.accel", lower(&d.boot.accel)),
            ("disk.esp_mib", plain(&d.disk.esp_mib)),
            ("disk.data_mib", plain(&d.disk.data_mib)),
            ("disk.channels", lower(&d.disk.channels)),
            ("disk.test_boots", plain(&d.disk.test_boots)),
            ("disk.pc_profile", quoted(&d.disk.pc_profile)),
            ("build.source_date_epoch", plain(&d.build.source_date_epoch)),
        ]
        .into_iter()
        .collect();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let doc = std::fs::read_to_string(root.join("docs/profiles.md")).unwrap();
        let rows: BTreeMap<&str, String> = doc
            .lines()
            .filter_map(|l| {
                let mut cells = l.strip_prefix("| `")?.split(" | ");
                let key = cells.next()?.strip_suffix('`')?;
                Some((key, cells.next()?.to_string()))
            })
            .collect();
        assert_eq!(rows, want, "docs/profiles.md's table vs Profile::defaults");
        // base.toml sets no key to its default: only what every profile
        // shares and differs from it.
        let base = std::fs::read_to_string(root.join("configs/base.toml")).unwrap();
        let base: toml::Table = toml::from_str(&base).unwrap();
        for (table, keys) in &base {
            for (key, value) in keys.as_table().unwrap() {
                let name = format!("{table}.{key}");
                let shown = match value {
                    toml::Value::String(s) if name == "kernel.tarball" => format!("`{s}`"),
                    toml::Value::String(s) => quoted(s),
                    v => plain(v),
                };
                assert_ne!(
                    want.get(name.as_str()),
                    Some(&shown),
                    "base.toml repeats {name}"
                );
            }
        }
    }

    #[test]
    fn the_shipped_profiles_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        for entry in std::fs::read_dir(root.join("configs")).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let name = name.strip_suffix(".toml").unwrap();
            Profile::load(&root.join("configs"), root, name)
                .unwrap_or_else(|e| panic!("profile {name}: {e:#}"));
        }
    }
}
