//! Checks that would otherwise be review comments, as tests, so that
//! `cargo test` fails where CI would: formatting, module docs on every Rust
//! file, the workspace's lint policy (clippy; a `// SAFETY:` comment above
//! every `unsafe` block), a README that names every verb, and `determ.h`'s
//! copies of kernel numbers checked against the UAPI header.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("builder has a parent")
        .to_path_buf()
}

/// Every `.rs` file of the workspace's crates.
fn sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs: Vec<PathBuf> = ["bootproto", "builder", "userland", "libdeterm"]
        .iter()
        .map(|d| root().join(d))
        .filter(|d| d.is_dir())
        .collect();
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("readable source dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() && path.file_name().is_some_and(|n| n != "target") {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 20, "found only {files:?}");
    files
}

#[test]
fn every_file_has_module_docs() {
    for path in sources() {
        let text = fs::read_to_string(&path).expect("readable");
        assert!(
            text.starts_with("//!"),
            "{} does not start with module docs (`//!`)",
            path.display()
        );
    }
}

/// The workspace's lint policy (`[workspace.lints]` in Cargo.toml; every
/// crate opts in) holds: clippy finds no lint at level deny, such as an
/// unsafe block without a `// SAFETY:` comment. Checked twice: for the
/// host and guest builds, and for the deterministic build, which alone
/// compiles libdeterm's runtime (`--cfg determ_rt`).
#[test]
fn clippy_finds_no_denied_lint() {
    let det = [
        &["--profile", "det", "--target", crate::userland::TARGET][..],
        crate::userland::DET_PACKAGES,
    ]
    .concat();
    let runs: [(&str, &[&str], &str); 2] = [
        ("host", &["--workspace", "--all-targets"], ""),
        ("det", &det, "--cfg\x1fdeterm_rt"),
    ];
    for (name, args, rustflags) in runs {
        let out = crate::deps::command("cargo")
            .current_dir(root())
            .args(["clippy", "--locked", "--quiet", "--message-format=short"])
            .args(args)
            .env("CARGO_TARGET_DIR", root().join("target/clippy").join(name))
            .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
            .env_remove("RUSTFLAGS")
            .output()
            .expect("running cargo clippy");
        assert!(
            out.status.success(),
            "cargo clippy ({name} build) found a denied lint:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The `#define NAME number` lines of a C header.
fn numeric_defines(header: &str) -> Vec<(&str, u64)> {
    header
        .lines()
        .filter_map(|line| {
            let mut w = line.split_whitespace();
            let (Some("#define"), Some(name), Some(val)) = (w.next(), w.next(), w.next()) else {
                return None;
            };
            let v = match val.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => val.parse(),
            };
            Some((name, v.ok()?))
        })
        .collect()
}

/// `determ.h` mirrors a few kernel numbers for C programs: each has the
/// value the kernel's UAPI header (or, for errnos, Linux) gives it.
#[test]
fn determ_h_agrees_with_the_uapi_header() {
    use rustix::io::Errno;
    let read = |p: &str| fs::read_to_string(root().join(p)).expect(p);
    let determ_h = read(crate::userland::DETERM_H);
    let uapi_h = read("kernel/tree/include/uapi/linux/det.h");
    let uapi = numeric_defines(&uapi_h);
    let errnos = [
        ("DET_EBADE", Errno::BADE),
        ("DET_EFAULT", Errno::FAULT),
        ("DET_ESRCH", Errno::SRCH),
    ];
    let mirrors = numeric_defines(&determ_h);
    assert!(mirrors.len() >= 6, "found only {mirrors:?}");
    for (name, value) in mirrors {
        let want = match errnos.iter().find(|(n, _)| *n == name) {
            Some((_, e)) => e.raw_os_error() as u64,
            None => match uapi.iter().find(|(n, _)| *n == name) {
                Some((_, v)) => *v,
                None => panic!("determ.h's {name} is not in the UAPI header"),
            },
        };
        assert_eq!(value, want, "determ.h's {name}");
    }
}

#[test]
fn code_is_formatted() {
    let out = crate::deps::command("cargo")
        .current_dir(root())
        .args(["fmt", "--all", "--check"])
        .output()
        .expect("running cargo fmt");
    assert!(
        out.status.success(),
        "cargo fmt --all --check found unformatted code (run `cargo fmt --all`):\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn readme_names_every_verb() {
    use clap::CommandFactory;
    let readme = fs::read_to_string(root().join("README.md")).expect("README.md");
    for verb in crate::Cli::command().get_subcommands() {
        let name = verb.get_name();
        assert!(
            readme.contains(&format!("cargo det {name}")),
            "README.md does not show `cargo det {name}`"
        );
    }
}

#[test]
fn readme_gives_the_two_setup_commands_and_ci_runs_the_test_one() {
    let readme = fs::read_to_string(root().join("README.md")).expect("README.md");
    assert!(readme.contains("cargo det demo") && readme.contains("cargo det test"));
    let ci = fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == "cargo det test"),
        ".ci/run must run the README's test command"
    );
}

/// checkpatch (from the kernel tarball the build uses) finds nothing in
/// the subsystem's files or the hook patches. One check is left out, with
/// its reason: `ENOSYS` is what a forbidden system call returns to a
/// deterministic process, which is the "invalid system call" checkpatch
/// reserves it for.
#[test]
fn checkpatch_is_clean_on_the_subsystem_and_the_patches() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let scripts = ["checkpatch.pl", "spelling.txt", "const_structs.checkpatch"];
    let out = crate::deps::command("tar")
        .arg("-xf")
        .arg(crate::profile::DEFAULT_TARBALL)
        .arg("-C")
        .arg(dir.path())
        .args(["--strip-components=2", "--wildcards"])
        .args(scripts.iter().map(|s| format!("*/scripts/{s}")))
        .output()
        .expect("running tar");
    assert!(
        out.status.success(),
        "extracting checkpatch from {}: {}",
        crate::profile::DEFAULT_TARBALL,
        String::from_utf8_lossy(&out.stderr)
    );
    let kernel = root().join("kernel");
    let mut files: Vec<PathBuf> = ["tree/include/linux/det.h", "tree/include/uapi/linux/det.h"]
        .iter()
        .map(|f| kernel.join(f))
        .collect();
    for (dir, ext) in [
        ("tree/kernel/det", "c"),
        ("tree/kernel/det", "h"),
        ("patches", "patch"),
    ] {
        let mut found: Vec<PathBuf> = fs::read_dir(kernel.join(dir))
            .expect("a kernel directory")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        found.sort();
        files.extend(found);
    }
    let mut problems = String::new();
    let (patches, sources): (Vec<_>, Vec<_>) = files
        .iter()
        .partition(|f| f.extension().is_some_and(|e| e == "patch"));
    for (set, whole_files) in [(sources, true), (patches, false)] {
        let mut cmd = crate::deps::command("perl");
        cmd.arg(dir.path().join("checkpatch.pl")).args([
            "--no-tree",
            "--terse",
            "--ignore",
            "ENOSYS",
        ]);
        if whole_files {
            cmd.arg("-f");
        }
        let out = cmd.args(set).output().expect("running checkpatch");
        if !out.status.success() {
            problems.push_str(&String::from_utf8_lossy(&out.stdout));
        }
    }
    assert!(problems.is_empty(), "checkpatch:\n{problems}");
}
