//! `cargo det userland`: the static guest programs.
//!
//! Rust programs are built by cargo for `x86_64-unknown-linux-gnu` with
//! `+crt-static` into `target/guest/`, with source paths remapped so the
//! binaries do not depend on where the tree is checked out. The kernel's C
//! selftests and microbenchmarks (`tools/testing/selftests/det/*.c` and
//! `bench/*.c` from the project's own `kernel/tree`, not from the shared
//! kernel source tree) are compiled with `gcc -static` against this
//! kernel's installed UAPI headers.
//!
//! Deterministic programs (`userland/det-progs` and the deterministic demo
//! `demo-det`, no_std) and `libdeterm.a` are a second cargo invocation: `--cfg determ_rt` compiles libdeterm's
//! runtime in, the `det` profile sets `panic=abort`, and their own target
//! directory keeps those flags from touching the other builds. The C test
//! programs in `userland/det-progs/c/` are compiled with gcc against
//! `determ.h` and that `libdeterm.a`, with no libc.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::deps;
use crate::fsutil::{self, Key};
use crate::kernel::{self, Kernel};
use crate::profile::Profile;
use crate::progress::{self, Step};
use crate::project::Project;

pub const TARGET: &str = "x86_64-unknown-linux-gnu";
/// Where the in-guest test programs live in the image.
pub const TESTS_DIR: &str = "usr/lib/detlinux/tests";
/// Where the demo tour (what `det.run=demos` runs) lives.
pub const DEMOS_DIR: &str = "usr/lib/detlinux/demos";
/// Where the deterministic test programs (run by `detrun`) live.
pub const DET_DIR: &str = "usr/lib/detlinux/det-progs";
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
    /// `libdeterm.a`, for the release's SDK (see [`Det::staticlib`]).
    pub libdeterm: PathBuf,
}

/// Which cargo packages go into the image, and where.
fn destination(package: &str, bin: &str, profile: &Profile) -> Option<String> {
    match package {
        "det-init" if bin == "init" => Some("init".to_string()),
        "det-guest-tests" if profile.userland.tests => Some(format!("{TESTS_DIR}/{bin}")),
        "detrun" => Some("usr/bin/detrun".to_string()),
        // The demos (docs/benchmarks.md): the tour init shows, the rest on PATH.
        "det-demos-harness" if bin == "tour" => Some(format!("{DEMOS_DIR}/{bin}")),
        "det-demos-harness" | "det-demos-pthread" => Some(format!("usr/bin/{bin}")),
        _ => None,
    }
}

pub fn build(project: &Project, profile: &Profile, kernel: &Kernel) -> Result<Userland> {
    let mut programs = build_rust(project, profile)?;
    let Det {
        programs: det_programs,
        staticlib: libdeterm,
    } = build_det(project)?;
    // The deterministic demos go into every image, the test programs only
    // where tests do.
    let (det_tests, det_demos): (Vec<Program>, Vec<Program>) = det_programs
        .into_iter()
        .partition(|p| p.dest.starts_with(DET_DIR));
    programs.extend(det_demos);
    if profile.userland.tests {
        programs.extend(build_c_selftests(project, kernel)?);
        programs.extend(det_tests);
    }
    programs.sort_by(|a, b| a.dest.cmp(&b.dest));
    Ok(Userland {
        programs,
        libdeterm,
    })
}

/// rustc flags of every guest build: static, at a fixed address, with
/// build paths remapped.
fn guest_rustflags(project: &Project) -> Vec<String> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    vec![
        "-C".to_string(),
        "target-feature=+crt-static".to_string(),
        // A fixed load address: static, not static-pie.
        "-C".to_string(),
        "relocation-model=static".to_string(),
        format!("--remap-path-prefix={}=/detlinux", project.root.display()),
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
    ]
}

/// The package name in a cargo JSON message's `package_id`:
/// "path+file:///.../userland/init#det-init@0.1.0", or
/// "path+file:///.../userland/detrun#0.1.0" when the directory has the
/// package's name.
fn package_name(msg: &serde_json::Value) -> &str {
    let id = msg["package_id"].as_str().unwrap_or("");
    let (path, frag) = id.rsplit_once('#').unwrap_or((id, ""));
    match frag.split_once('@') {
        Some((name, _)) => name,
        None => path.rsplit('/').next().unwrap_or(""),
    }
}

fn build_rust(project: &Project, profile: &Profile) -> Result<Vec<Program>> {
    let step = Step::new("userland: building guest programs");
    let flags = guest_rustflags(project);
    let mut cmd = deps::command("cargo");
    cmd.current_dir(&project.root)
        .args([
            "build",
            "--release",
            "--locked",
            "--message-format=json-render-diagnostics",
        ])
        .args(["--target", TARGET])
        .args(["-p", "det-init", "-p", "det-guest-tests", "-p", "detrun"])
        .args(["-p", "det-demos-harness", "-p", "det-demos-pthread"])
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
        if let Some(dest) = destination(package_name(&msg), bin, profile) {
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

/// The deterministic programs and the C SDK library.
pub struct Det {
    /// Rust and C test programs (for [`DET_DIR`]) and `demo-det`.
    pub programs: Vec<Program>,
    /// `libdeterm.a` (cargo's `libdeterm_c.a`).
    pub staticlib: PathBuf,
}

/// Where the SDK's `determ.h` is in the source tree.
pub const DETERM_H: &str = "libdeterm/include/determ.h";

/// The cargo package arguments of the deterministic build (the `det`
/// profile, `--cfg determ_rt`): its programs and `libdeterm.a`.
pub const DET_PACKAGES: &[&str] = &[
    "-p",
    "det-progs",
    "--features",
    "det-progs/det",
    "-p",
    "determ-capi",
    "-p",
    "det-demos-det",
    "--features",
    "det-demos-det/det",
];

/// Builds `userland/det-progs`, `demo-det` and `libdeterm.a` with
/// libdeterm's runtime, then the C test programs against them.
pub fn build_det(project: &Project) -> Result<Det> {
    let step = Step::new("userland: building deterministic programs");
    let mut flags = guest_rustflags(project);
    flags.extend(["--cfg".to_string(), "determ_rt".to_string()]);
    let target_dir = project.root.join("target/det");
    let out = deps::command("cargo")
        .current_dir(&project.root)
        .args(["build", "--profile", "det", "--locked"])
        .arg("--message-format=json-render-diagnostics")
        .args(["--target", TARGET])
        .args(DET_PACKAGES)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"))
        .env_remove("RUSTFLAGS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build for the deterministic programs")?;
    if !out.status.success() {
        bail!("building the deterministic programs failed (cargo's errors are above)");
    }
    let mut programs = Vec::new();
    let mut staticlib = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        match package_name(&msg) {
            "det-progs" => {
                if let (Some(exe), Some(bin)) =
                    (msg["executable"].as_str(), msg["target"]["name"].as_str())
                {
                    programs.push(Program {
                        path: PathBuf::from(exe),
                        dest: format!("{DET_DIR}/{bin}"),
                    });
                }
            }
            "det-demos-det" => {
                if let Some(exe) = msg["executable"].as_str() {
                    programs.push(Program {
                        path: PathBuf::from(exe),
                        dest: "usr/bin/demo-det".to_string(),
                    });
                }
            }
            "determ-capi" => {
                staticlib = msg["filenames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.as_str())
                    .find(|f| f.ends_with(".a"))
                    .map(PathBuf::from);
            }
            _ => {}
        }
    }
    let staticlib = staticlib.context("cargo built no libdeterm.a")?;
    let sources = c_sources(&project.root.join("userland/det-progs/c"));
    let cout = target_dir.join("c");
    fs::create_dir_all(&cout)?;
    for src in &sources {
        let stem = src
            .file_stem()
            .and_then(|s| s.to_str())
            .context("C program name is not UTF-8")?;
        let exe = cout.join(stem);
        let tmp = fsutil::tmp_name(&exe);
        let mut cc = deps::command("gcc");
        cc.args([
            "-static",
            "-nostdlib",
            "-ffreestanding",
            "-fno-pie",
            "-no-pie",
        ])
        .args(["-O2", "-g0", "-Wall", "-Wextra", "-Werror"])
        .arg(format!(
            "-I{}",
            project.root.join("libdeterm/include").display()
        ))
        .arg(format!(
            "-ffile-prefix-map={}=/detlinux",
            project.root.display()
        ))
        .arg("-Wl,--build-id=none")
        .arg("-o")
        .arg(&tmp)
        .arg(src)
        .arg(&staticlib)
        .env("SOURCE_DATE_EPOCH", "0");
        progress::run_logged(&step, cc, &cout.join(format!("{stem}.log")))
            .with_context(|| format!("compiling {} against determ.h", src.display()))?;
        fs::rename(&tmp, &exe)?;
        programs.push(Program {
            path: exe,
            dest: format!("{DET_DIR}/{stem}"),
        });
    }
    step.done(&format!("{} programs and libdeterm.a", programs.len()));
    Ok(Det {
        programs,
        staticlib,
    })
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
    let mut sources: Vec<(PathBuf, &str)> = c_sources(&dir)
        .into_iter()
        .map(|p| (p, TESTS_DIR))
        .collect();
    sources.extend(
        c_sources(&dir.join("bench"))
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
            let mut cc = deps::command("gcc");
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

/// The `*.c` files directly in `dir`, sorted; none if it does not exist.
fn c_sources(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "c"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_come_from_either_form_of_package_id() {
        let id = |s: &str| serde_json::json!({ "package_id": s });
        assert_eq!(
            package_name(&id("path+file:///w/userland/init#det-init@0.1.0")),
            "det-init"
        );
        assert_eq!(
            package_name(&id("path+file:///w/userland/detrun#0.1.0")),
            "detrun"
        );
    }
}
