//! `cargo det userland`: the static guest programs.
//!
//! Rust programs are built by cargo for `x86_64-unknown-linux-gnu` with
//! `+crt-static` into `target/guest/`, with source paths remapped so the
//! binaries do not depend on where the tree is checked out. The kernel's C
//! selftests (`tools/testing/selftests/det/*.c` from the patched source
//! tree) are compiled with `gcc -static` against the kernel's own UAPI
//! headers.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::fsutil::{self, Key};
use crate::kernel::{self, Kernel};
use crate::profile::Profile;
use crate::progress::{self, Step};
use crate::project::Project;

pub const TARGET: &str = "x86_64-unknown-linux-gnu";
/// Where test programs and demos live in the image.
pub const TESTS_DIR: &str = "usr/lib/detlinux/tests";
pub const DEMOS_DIR: &str = "usr/lib/detlinux/demos";
/// Microbenchmarks (`kernel/tree/tools/testing/selftests/det/bench/*.c`).
pub const BENCH_DIR: &str = "usr/lib/detlinux/bench";

/// One program and where it goes in the image.
#[derive(Debug, Clone)]
pub struct Program {
    pub path: PathBuf,
    /// Path inside the image, without a leading slash.
    pub dest: String,
}

pub struct Userland {
    pub programs: Vec<Program>,
}

/// Which cargo packages go into the image, and where.
fn destination(package: &str, bin: &str, profile: &Profile) -> Option<String> {
    match package {
        "det-init" if bin == "init" => Some("init".to_string()),
        "det-guest-tests" if profile.userland.tests => Some(format!("{TESTS_DIR}/{bin}")),
        _ => None,
    }
}

pub fn build(project: &Project, profile: &Profile, kernel: &Kernel) -> Result<Userland> {
    let mut programs = build_rust(project, profile)?;
    if profile.userland.tests {
        programs.extend(build_c_selftests(project, kernel)?);
    }
    programs.sort_by(|a, b| a.dest.cmp(&b.dest));
    Ok(Userland { programs })
}

fn build_rust(project: &Project, profile: &Profile) -> Result<Vec<Program>> {
    let step = Step::new("userland: building guest programs");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    let flags = [
        "-C".to_string(),
        "target-feature=+crt-static".to_string(),
        // A fixed load address: static, not static-pie.
        "-C".to_string(),
        "relocation-model=static".to_string(),
        format!("--remap-path-prefix={}=/detlinux", project.root.display()),
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
    ];
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(&project.root)
        .args([
            "build",
            "--release",
            "--locked",
            "--message-format=json-render-diagnostics",
        ])
        .args(["--target", TARGET])
        .args(["-p", "det-init", "-p", "det-guest-tests"])
        .env("CARGO_TARGET_DIR", project.root.join("target/guest"))
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"))
        .env_remove("RUSTFLAGS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let out = cmd.output().context("running cargo build for the guest")?;
    if !out.status.success() {
        bail!("building the guest programs failed (cargo's errors are above)");
    }
    let mut programs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let (Some(exe), Some(bin)) = (msg["executable"].as_str(), msg["target"]["name"].as_str())
        else {
            continue;
        };
        let package = msg["package_id"].as_str().unwrap_or("");
        // package_id: "path+file:///.../userland/init#det-init@0.1.0"
        let package = package
            .rsplit('#')
            .next()
            .and_then(|s| s.split('@').next())
            .unwrap_or("");
        if let Some(dest) = destination(package, bin, profile) {
            programs.push(Program {
                path: PathBuf::from(exe),
                dest,
            });
        }
    }
    if !programs.iter().any(|p| p.dest == "init") {
        bail!("cargo built no init for the guest");
    }
    step.done(&format!("{} programs", programs.len()));
    Ok(programs)
}

/// Each `*.c` directly in `kernel/tree/tools/testing/selftests/det/` is one
/// test program named after its stem. They are compiled from the project's
/// own overlay (not from the shared kernel tree, which may be synced to
/// another checkout's overlay), against this kernel's installed headers and
/// upstream's `kselftest*.h`.
fn build_c_selftests(project: &Project, kernel: &Kernel) -> Result<Vec<Program>> {
    let dir = project.root.join("kernel/tree").join(kernel::SELFTESTS);
    // Each test program and, from bench/, each microbenchmark, with the
    // directory it goes to in the image.
    let c_files = |d: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(d)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "c"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let mut sources: Vec<(PathBuf, &str)> =
        c_files(&dir).into_iter().map(|p| (p, TESTS_DIR)).collect();
    sources.extend(
        c_files(&dir.join("bench"))
            .into_iter()
            .map(|p| (p, BENCH_DIR)),
    );
    if sources.is_empty() {
        return Ok(Vec::new());
    }
    let mut key = Key::new("c-selftests");
    key.field("kernel", &kernel.key).tree("src", &dir)?;
    let out = project.cache("selftests").join(&key.hex()[..16]);
    let mut programs = Vec::new();
    let step = Step::new(format!("userland: compiling {} C selftests", sources.len()));
    for (src, dest_dir) in &sources {
        let stem = src
            .file_stem()
            .and_then(|s| s.to_str())
            .context("selftest file name is not UTF-8")?;
        let exe = out.join(stem);
        if !exe.is_file() {
            fs::create_dir_all(&out)?;
            let tmp = fsutil::tmp_name(&exe);
            let mut cc = Command::new("gcc");
            cc.args(["-static", "-O2", "-g0", "-Wall", "-Wextra", "-Werror"])
                .arg(format!("-I{}", kernel.headers.join("include").display()))
                .arg(format!(
                    "-I{}",
                    kernel.src.join("tools/testing/selftests").display()
                ))
                .arg(format!("-ffile-prefix-map={}=/linux", kernel.src.display()))
                .arg(format!(
                    "-ffile-prefix-map={}=/detlinux",
                    project.root.display()
                ))
                .arg("-o")
                .arg(&tmp)
                .arg(src)
                .arg("-lpthread")
                .env("SOURCE_DATE_EPOCH", "0");
            step.message(stem);
            progress::run_logged(&step, cc, &out.join(format!("{stem}.log")))
                .with_context(|| format!("compiling selftest {}", src.display()))?;
            fs::rename(&tmp, &exe)?;
        }
        programs.push(Program {
            path: exe,
            dest: format!("{dest_dir}/{stem}"),
        });
    }
    step.done("");
    Ok(programs)
}
