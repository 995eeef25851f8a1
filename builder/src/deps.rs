//! `cargo det deps`: the one table of host tools, and the hermetic `PATH`
//! every external command runs with.
//!
//! [`COMMANDS`] lists every external command any verb starts, directly or
//! through another tool (the kernel's make and its scripts, gcc, cargo,
//! QEMU, the disk tools), each with the Debian package that provides it;
//! [`FILES`] lists the data files the builder reads from packages. Before
//! every verb [`ensure`] checks that each command resolves in the system
//! directories and each file exists. Missing ones are installed with one
//! apt-get when running as root; otherwise the verb stops with the single
//! command to run.
//!
//! Every external command then runs through [`command`], with a `PATH`
//! that holds only links to the declared commands (a directory under
//! `images/.cache/tools/`). A tool the build uses but the table lacks thus
//! fails on every machine alike, and [`undeclared_hint`] turns the shell's
//! "not found" into an error that names the tool and says to declare it.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

use crate::fsutil::Key;
use crate::project::Project;

/// Where declared commands are looked up: Debian's own directories, never
/// the user's `PATH` (`/usr/local` and `~/.local` tools are not Debian's).
pub const SYSTEM_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// The rust toolchain's commands: taken from the toolchain that runs the
/// builder (`$CARGO`'s directory), not from Debian.
pub const TOOLCHAIN: &[&str] = &["cargo", "rustc", "rustdoc"];

/// Every external command, with its Debian package and who runs it.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    // The builder itself.
    ("apt-get", "apt", "installing missing packages (deps)"),
    (
        "dpkg-query",
        "dpkg",
        "package versions for cache keys and the manifest",
    ),
    ("git", "git", "release commit id; verify's clean clone"),
    ("sh", "dash", "verify's rebuild; the kernel's make recipes"),
    ("tar", "tar", "unpacking the kernel tarball"),
    ("xz", "xz-utils", "unpacking the kernel tarball (tar -J)"),
    ("patch", "patch", "applying the kernel hook patches"),
    ("make", "make", "the kernel build"),
    ("gcc", "gcc", "the kernel build and C test programs"),
    ("cc", "gcc", "rustc's linker; the kernel's HOSTCC checks"),
    ("qemu-system-x86_64", "qemu-system-x86", "booting images"),
    ("objcopy", "binutils", "the unified kernel image"),
    (
        "objdump",
        "binutils",
        "kernel build (EFI stub relocation check)",
    ),
    ("mkfs.fat", "dosfstools", "the disk image's EFI partition"),
    ("mmd", "mtools", "the disk image's EFI partition"),
    ("mcopy", "mtools", "the disk image's EFI partition"),
    ("syslinux", "syslinux", "BIOS boots of the disk image"),
    ("mke2fs", "e2fsprogs", "the disk image's data partition"),
    ("busybox", "busybox-static", "the guest shell"),
    (
        "tesseract",
        "tesseract-ocr",
        "reading the guest's screen in the PC boot test (OCR)",
    ),
    (
        "losetup",
        "mount",
        "the PC boot test: a loop device to flash and boot as a USB stick",
    ),
    // What gcc runs.
    ("as", "binutils", "gcc's assembler"),
    ("ld", "binutils", "gcc's linker"),
    // What the kernel's make and scripts run (found by tracing a build).
    ("ar", "binutils", "kernel build"),
    ("nm", "binutils", "kernel build"),
    ("readelf", "binutils", "kernel build"),
    ("strip", "binutils", "kernel build"),
    ("bison", "bison", "kernel build (Kconfig, dtc parsers)"),
    ("flex", "flex", "kernel build (Kconfig, dtc lexers)"),
    ("bc", "bc", "kernel build (timeconst.h)"),
    ("perl", "perl-base", "kernel build scripts"),
    ("rsync", "rsync", "kernel make headers_install"),
    ("awk", "mawk", "kernel build scripts"),
    ("sed", "sed", "kernel build scripts"),
    ("grep", "grep", "kernel build scripts"),
    ("find", "findutils", "kernel build scripts"),
    ("xargs", "findutils", "kernel build scripts"),
    ("cmp", "diffutils", "kernel build scripts"),
    ("gzip", "gzip", "kernel build (bzImage payload)"),
    ("hostname", "hostname", "kernel build scripts"),
    ("basename", "coreutils", "kernel build scripts"),
    ("cat", "coreutils", "kernel build scripts"),
    ("chmod", "coreutils", "kernel build scripts"),
    ("cp", "coreutils", "kernel build scripts"),
    ("cut", "coreutils", "kernel build scripts"),
    ("date", "coreutils", "kernel build scripts"),
    ("diff", "diffutils", "kernel build scripts"),
    ("dirname", "coreutils", "kernel build scripts"),
    (
        "echo",
        "coreutils",
        "kernel build (make runs simple recipes itself)",
    ),
    ("env", "coreutils", "kernel build scripts (#!/usr/bin/env)"),
    ("expr", "coreutils", "kernel build scripts"),
    ("false", "coreutils", "kernel build scripts"),
    ("head", "coreutils", "kernel build scripts"),
    ("id", "coreutils", "kernel build scripts"),
    ("install", "coreutils", "kernel build scripts"),
    ("ln", "coreutils", "kernel build scripts"),
    ("ls", "coreutils", "kernel build scripts"),
    ("md5sum", "coreutils", "kernel build scripts"),
    ("mkdir", "coreutils", "kernel build scripts"),
    ("mktemp", "coreutils", "kernel build scripts"),
    ("mv", "coreutils", "kernel build scripts"),
    ("nproc", "coreutils", "kernel build scripts"),
    ("od", "coreutils", "kernel build scripts"),
    ("printf", "coreutils", "kernel build scripts"),
    (
        "pwd",
        "coreutils",
        "kernel build (make runs simple recipes itself)",
    ),
    ("readlink", "coreutils", "kernel build scripts"),
    ("realpath", "coreutils", "kernel build scripts"),
    ("rm", "coreutils", "kernel build scripts"),
    ("seq", "coreutils", "kernel build scripts"),
    ("sha1sum", "coreutils", "kernel build scripts"),
    ("sha256sum", "coreutils", "kernel build scripts"),
    ("sleep", "coreutils", "kernel build scripts"),
    ("sort", "coreutils", "kernel build scripts"),
    ("stat", "coreutils", "kernel build scripts"),
    ("tail", "coreutils", "kernel build scripts"),
    (
        "test",
        "coreutils",
        "kernel build (make runs simple recipes itself)",
    ),
    (
        "[",
        "coreutils",
        "kernel build (make runs simple recipes itself)",
    ),
    ("tee", "coreutils", "kernel build scripts"),
    ("touch", "coreutils", "kernel build scripts"),
    ("tr", "coreutils", "kernel build scripts"),
    ("true", "coreutils", "kernel build scripts"),
    ("uname", "coreutils", "kernel build scripts"),
    ("uniq", "coreutils", "kernel build scripts"),
    ("wc", "coreutils", "kernel build scripts"),
    ("whoami", "coreutils", "kernel build scripts"),
];

/// Data files read from packages, with the package and who reads them.
pub const FILES: &[(&str, &str, &str)] = &[
    (
        crate::profile::DEFAULT_TARBALL,
        "linux-source-6.12",
        "the kernel sources",
    ),
    (
        "/usr/include/gelf.h",
        "libelf-dev",
        "the kernel build (objtool)",
    ),
    (
        "/usr/lib/x86_64-linux-gnu/libc.a",
        "libc6-dev",
        "static C test programs and guest programs",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "ovmf",
        "UEFI boots in QEMU",
    ),
    (
        crate::disk::STUB,
        "systemd-boot-efi",
        "the unified kernel image stub",
    ),
    (
        crate::disk::GPTMBR,
        "syslinux-common",
        "BIOS boots of the disk image",
    ),
    (
        "/usr/share/tesseract-ocr/5/tessdata/eng.traineddata",
        "tesseract-ocr-eng",
        "tesseract's English data (the PC boot test)",
    ),
];

/// `name` in the system directories, following no `PATH`.
pub fn resolve(name: &str) -> Option<PathBuf> {
    SYSTEM_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The declared commands and files that are missing, as (what, package).
pub fn missing() -> Vec<(&'static str, &'static str)> {
    let cmds = COMMANDS
        .iter()
        .filter(|(name, _, _)| resolve(name).is_none())
        .map(|&(name, pkg, _)| (name, pkg));
    let files = FILES
        .iter()
        .filter(|(path, _, _)| !Path::new(path).exists())
        .map(|&(path, pkg, _)| (path, pkg));
    cmds.chain(files).collect()
}

fn missing_packages(missing: &[(&str, &'static str)]) -> Vec<&'static str> {
    let set: BTreeSet<&str> = missing.iter().map(|&(_, pkg)| pkg).collect();
    set.into_iter().collect()
}

/// The one command that installs `pkgs`.
pub fn install_command(pkgs: &[&str]) -> String {
    format!(
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {}",
        pkgs.join(" ")
    )
}

/// Make sure every declared command and file is there (installing if we
/// may), then make the hermetic tool directory.
pub fn ensure(project: &Project) -> Result<()> {
    let missing = missing();
    if !missing.is_empty() {
        install(&missing)?;
    }
    init(project)?;
    Ok(())
}

fn install(missing: &[(&str, &'static str)]) -> Result<()> {
    let pkgs = missing_packages(missing);
    let what: Vec<&str> = missing.iter().map(|&(w, _)| w).collect();
    if !rustix::process::geteuid().is_root() {
        bail!(
            "missing host tools: {}\nrun as root:\n  {}",
            what.join(", "),
            install_command(&pkgs)
        );
    }
    eprintln!(
        "installing host packages: {} (for {})",
        pkgs.join(" "),
        what.join(", ")
    );
    // apt-get itself may be what is missing: then there is nothing to do.
    let apt_get = resolve("apt-get").context("apt-get not found: is this a Debian system?")?;
    let apt = |args: &[&str]| {
        Command::new(&apt_get)
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .context("running apt-get")
    };
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&pkgs);
    if !apt(&args)?.success() {
        // Stale or absent package lists are the usual cause: refresh, retry.
        if !apt(&["update", "-q"])?.success() || !apt(&args)?.success() {
            bail!(
                "apt-get could not install: {}\ntry:\n  {}\n(a standard Debian 12 has bookworm, \
                 bookworm-updates and bookworm-security in its apt sources; \
                 linux-source-6.12 comes from the last two)",
                pkgs.join(", "),
                install_command(&pkgs)
            );
        }
    }
    let still = self::missing();
    if !still.is_empty() {
        let what: Vec<String> = still
            .iter()
            .map(|(w, p)| format!("{w} (package {p})"))
            .collect();
        bail!(
            "still missing after apt-get: {}\n(builder/src/deps.rs names the wrong package?)",
            what.join(", ")
        );
    }
    Ok(())
}

static BIN: OnceLock<PathBuf> = OnceLock::new();

/// Make (once per table and host) the directory of links to the declared
/// commands; later calls return it.
pub fn init(project: &Project) -> Result<&'static Path> {
    if let Some(bin) = BIN.get() {
        return Ok(bin);
    }
    let mut links = Vec::new();
    for (name, pkg, _) in COMMANDS {
        let target = resolve(name).with_context(|| {
            format!("host tool {name} not found (package {pkg}; run `cargo det deps`)")
        })?;
        links.push((name.to_string(), target));
    }
    let toolchain = toolchain_dir()?;
    for name in TOOLCHAIN {
        let target = toolchain.join(name);
        anyhow::ensure!(
            is_executable(&target),
            "{} is missing from the Rust toolchain",
            target.display()
        );
        links.push((name.to_string(), target));
    }
    let mut key = Key::new("host-tools");
    for (name, target) in &links {
        key.field(name, target.as_os_str().as_encoded_bytes());
    }
    let dir = project.cache("tools").join(&key.hex()[..16]);
    if !dir.is_dir() {
        let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp)?;
        for (name, target) in &links {
            std::os::unix::fs::symlink(target, tmp.join(name))?;
        }
        // Another builder may have made the same directory meanwhile.
        if let Err(e) = fs::rename(&tmp, &dir) {
            let _ = fs::remove_dir_all(&tmp);
            anyhow::ensure!(dir.is_dir(), "creating {}: {e}", dir.display());
        }
    }
    Ok(BIN.get_or_init(|| dir))
}

/// The directory of the toolchain that runs us: `$CARGO`'s, else `cargo`
/// found on the caller's `PATH` (rustup installs it outside Debian's dirs).
fn toolchain_dir() -> Result<PathBuf> {
    let cargo = match std::env::var_os("CARGO") {
        Some(c) => PathBuf::from(c),
        None => std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join("cargo"))
            .find(|p| is_executable(p))
            .context("cargo not found: install a Rust toolchain (rustup)")?,
    };
    let cargo = fs::canonicalize(&cargo).unwrap_or(cargo);
    Ok(cargo
        .parent()
        .context("cargo has no directory")?
        .to_path_buf())
}

/// `name`, a declared command, to run with the hermetic `PATH`.
///
/// # Panics
/// If `name` is not in [`COMMANDS`] or [`TOOLCHAIN`]: the host test
/// `every_command_the_builder_runs_is_declared` keeps that from shipping.
pub fn command(name: &str) -> Command {
    assert!(
        COMMANDS.iter().any(|(n, _, _)| *n == name) || TOOLCHAIN.contains(&name),
        "{name} is not declared in builder/src/deps.rs"
    );
    let bin = match BIN.get() {
        Some(b) => b.as_path(),
        // Unit tests run no verb: make the directory on first use.
        None => Project::discover()
            .and_then(|p| init(&p))
            .unwrap_or_else(|e| panic!("host tools: {e:#}")),
    };
    let mut c = Command::new(bin.join(name));
    c.env("PATH", bin);
    c
}

/// If `log` shows a command the shell could not find, an error text that
/// names it and says where to declare it.
pub fn undeclared_hint(log: &str) -> Option<String> {
    let tool = log.lines().find_map(not_found)?;
    let declared = COMMANDS.iter().any(|(n, _, _)| *n == tool);
    Some(if declared {
        format!("host tool `{tool}` was not found although it is declared: run `cargo det deps`")
    } else {
        format!(
            "host tool `{tool}` is used by the build but not declared: add it, with its \
             Debian package, to COMMANDS in builder/src/deps.rs"
        )
    })
}

/// The command a shell or `env` reports as not found on `line`.
fn not_found(line: &str) -> Option<String> {
    // dash: "/bin/sh: 1: rsync: not found"; bash: "x: command not found";
    // make: "make: x: No such file or directory";
    // env: "/usr/bin/env: 'perl': No such file or directory".
    let word = |s: &str| {
        let s = s.trim().trim_matches(|c| c == '\'' || c == '`' || c == '"');
        (!s.is_empty() && !s.contains(' ') && !s.contains('/')).then(|| s.to_string())
    };
    if let Some(head) = line.strip_suffix(": not found") {
        return word(head.rsplit(": ").next()?);
    }
    if let Some(head) = line.strip_suffix(": command not found") {
        return word(head.rsplit(": ").next()?);
    }
    if let Some(head) = line.strip_suffix(": No such file or directory") {
        let mut parts = head.rsplit(": ");
        let tool = parts.next()?;
        let who = parts.next()?;
        if who.ends_with("env") || who.ends_with("make") || who.starts_with("make[") {
            return word(tool);
        }
    }
    None
}

/// The `deps` verb: report each command and file, then install what is
/// missing.
pub fn run(project: &Project) -> Result<()> {
    for (name, pkg, why) in COMMANDS {
        let state = match resolve(name) {
            Some(_) => "ok",
            None => "missing",
        };
        println!("{state:>8}  {name:<20} {pkg:<18} {why}");
    }
    for (path, pkg, why) in FILES {
        let state = if Path::new(path).exists() {
            "ok"
        } else {
            "missing"
        };
        let name = Path::new(path)
            .file_name()
            .map_or(OsStr::new(path), |n| n)
            .to_string_lossy();
        println!("{state:>8}  {name:<20} {pkg:<18} {why}");
    }
    let missing = missing();
    ensure(project)?;
    if !missing.is_empty() {
        println!("installed: {}", missing_packages(&missing).join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_lines_name_the_tool() {
        assert_eq!(
            not_found("/bin/sh: 1: rsync: not found").as_deref(),
            Some("rsync")
        );
        assert_eq!(
            not_found("bash: line 1: pahole: command not found").as_deref(),
            Some("pahole")
        );
        assert_eq!(
            not_found("/usr/bin/env: 'perl': No such file or directory").as_deref(),
            Some("perl")
        );
        assert_eq!(
            not_found("make[2]: zstd: No such file or directory").as_deref(),
            Some("zstd")
        );
        assert_eq!(
            not_found("foo.c:1:10: fatal error: x.h: No such file or directory"),
            None
        );
        assert_eq!(not_found("everything fine"), None);
    }

    #[test]
    fn hint_says_where_to_declare() {
        let h =
            undeclared_hint("INSTALL x\n/bin/sh: 1: nosuchtool: not found\nmake: *** Error 127\n")
                .unwrap();
        assert!(
            h.contains("`nosuchtool`") && h.contains("builder/src/deps.rs"),
            "{h}"
        );
        let h = undeclared_hint("/bin/sh: 1: rsync: not found").unwrap();
        assert!(h.contains("cargo det deps"), "{h}");
    }

    #[test]
    fn names_are_unique() {
        let mut seen = BTreeSet::new();
        for (name, _, _) in COMMANDS {
            assert!(seen.insert(*name), "{name} declared twice");
        }
    }

    /// Every declared command resolves, and to the package the table names
    /// (skipped, with a note, where the package is not installed).
    #[test]
    fn every_declared_command_belongs_to_its_package() {
        let owners = dpkg_owners();
        let mut wrong = Vec::new();
        let mut check = |what: &str, path: &Path, pkg: &str| {
            let owner = owner(&owners, path);
            if owner != Some(pkg) {
                wrong.push(format!(
                    "{what}: {} is from {owner:?}, table says {pkg}",
                    path.display()
                ));
            }
        };
        for (name, pkg, _) in COMMANDS {
            match resolve(name) {
                Some(path) => check(name, &path, pkg),
                None => eprintln!("note: {name} not installed (package {pkg})"),
            }
        }
        for (path, pkg, _) in FILES {
            if Path::new(path).exists() {
                check(path, Path::new(path), pkg);
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// Path -> package, from dpkg's file lists (what `dpkg -S` reads).
    fn dpkg_owners() -> std::collections::HashMap<String, String> {
        let mut map = std::collections::HashMap::new();
        for entry in fs::read_dir("/var/lib/dpkg/info").unwrap() {
            let path = entry.unwrap().path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(pkg) = name.strip_suffix(".list") else {
                continue;
            };
            let pkg = pkg.split(':').next().unwrap_or(pkg).to_string();
            for line in fs::read_to_string(&path).unwrap_or_default().lines() {
                map.insert(line.to_string(), pkg.clone());
            }
        }
        map
    }

    /// The package owning `path`, or the first link on the way to its
    /// target that a package owns (alternatives such as `cc` and `awk` are
    /// links no package lists). Debian 12 merges `/usr`, and packages list
    /// either spelling.
    fn owner<'a>(
        owners: &'a std::collections::HashMap<String, String>,
        path: &Path,
    ) -> Option<&'a str> {
        let mut p = path.to_path_buf();
        for _ in 0..8 {
            let s = p.to_string_lossy().to_string();
            let other = match s.strip_prefix("/usr") {
                Some(rest) => rest.to_string(),
                None => format!("/usr{s}"),
            };
            if let Some(pkg) = owners.get(&s).or_else(|| owners.get(&other)) {
                return Some(pkg);
            }
            let next = fs::read_link(&p).ok()?;
            p = p.parent()?.join(next);
        }
        None
    }

    /// Every `deps::command("x")` in the builder's sources names a declared
    /// command, so a typo or a new tool fails here, not on a user's machine.
    #[test]
    fn every_command_the_builder_runs_is_declared() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut undeclared = Vec::new();
        for entry in fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            if path.ends_with("deps.rs") {
                continue; // the table itself, and its examples
            }
            let text = fs::read_to_string(&path).unwrap();
            for part in text.split("command(\"").skip(1) {
                let name = part.split('"').next().unwrap();
                if !COMMANDS.iter().any(|(n, _, _)| *n == name) && !TOOLCHAIN.contains(&name) {
                    undeclared.push(format!("{}: {name}", path.display()));
                }
            }
        }
        assert!(undeclared.is_empty(), "undeclared: {undeclared:?}");
    }

    #[test]
    fn install_command_is_one_line() {
        let c = install_command(&["rsync", "bc"]);
        assert!(
            c.starts_with("apt-get update && ") && c.ends_with("rsync bc") && !c.contains('\n')
        );
    }
}
