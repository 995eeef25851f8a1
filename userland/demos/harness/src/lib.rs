//! What the in-guest demo programs share: starting either version of a
//! demo and reading its result line, pinning to N CPUs, background load.
//!
//! Three programs use it: `tour` (what `det.run=demos` shows), `det-bench`
//! (the benchmark harness behind `cargo det bench`) and `det-check` (the
//! determinism check behind `cargo det check` and the `demos` guest test).
//! They are ordinary ("legacy") Linux programs: they time runs, read the
//! CPU count and print, which a deterministic program cannot.

#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod sys;

use bootproto::record;
pub use demos_core::args::Demo;
pub use sys::pin;

/// Where the builder installs the two versions and the launcher; the
/// environment variable `DET_DEMOS_BIN` names another directory (to try
/// the harness on a host).
pub const BIN_DIR: &str = "/usr/bin";
pub const PTHREAD: &str = "demo-pthread";
pub const DET: &str = "demo-det";
pub const DETRUN: &str = "detrun";

fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("DET_DEMOS_BIN").unwrap_or_else(|| BIN_DIR.into());
    Path::new(&dir).join(name)
}

/// A version of a demo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Impl {
    Pthread,
    Det,
}

impl fmt::Display for Impl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Impl::Pthread => "pthread",
            Impl::Det => "det",
        })
    }
}

impl Impl {
    /// Whether this version is installed in the image.
    pub fn installed(self) -> bool {
        match self {
            Impl::Pthread => bin(PTHREAD).is_file(),
            Impl::Det => bin(DET).is_file() && bin(DETRUN).is_file(),
        }
    }

    /// The command running this version with `args` (the demo's own
    /// command line): the pthread binary directly, the deterministic one
    /// through `detrun`, which gives it a fresh deterministic root.
    pub fn command(self, args: &[String]) -> Command {
        let mut c = match self {
            Impl::Pthread => Command::new(bin(PTHREAD)),
            Impl::Det => {
                // --stats: the kernel's account of merge time, on stderr.
                let mut c = Command::new(bin(DETRUN));
                c.arg("--stats").arg(bin(DET));
                c
            }
        };
        c.args(args).stdin(Stdio::null());
        c
    }
}

/// One finished run of a demo.
#[derive(Clone, Debug)]
pub struct Run {
    /// The demo's result line, without its newline.
    pub line: String,
    pub hash: String,
    pub ok: bool,
    /// Wall time from start to exit, measured here.
    pub elapsed: Duration,
    /// The deterministic version's time in merges, in ms (`detrun
    /// --stats`, from the kernel's account); `None` for pthreads.
    pub merge_ms: Option<f64>,
}

impl Run {
    /// A key of the result line.
    pub fn value(&self, key: &str) -> Option<&str> {
        record::value(&self.line, key)
    }
}

/// Runs `imp` with `args`; an error says what went wrong (could not
/// start, non-zero exit, no result line) with the program's stderr.
pub fn run(imp: Impl, args: &[String]) -> Result<Run, String> {
    let started = Instant::now();
    let out = imp
        .command(args)
        .output()
        .map_err(|e| format!("{imp} {}: cannot start: {e}", args.join(" ")))?;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("demo="))
        .map(str::to_string);
    let err = || {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr = stderr.trim();
        format!(
            "{imp} {}: {}{}{}",
            args.join(" "),
            out.status,
            if stderr.is_empty() { "" } else { ": " },
            stderr.lines().last().unwrap_or("")
        )
    };
    if !out.status.success() {
        return Err(err());
    }
    let line = line.ok_or_else(err)?;
    let hash = record::value(&line, "hash").ok_or_else(err)?.to_string();
    let ok = record::value(&line, "ok") == Some("yes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let merge_ms = stderr
        .lines()
        .find_map(|l| l.strip_prefix("detrun: time:"))
        .and_then(|l| record::value(l, "merge_ms"))
        .and_then(|v| v.parse().ok());
    Ok(Run {
        line,
        hash,
        ok,
        elapsed,
        merge_ms,
    })
}

/// The demo's command line for `size`, `cpus`, `reps`.
pub fn args(demo: Demo, size: u64, cpus: u32, reps: u64, fixed: bool) -> Vec<String> {
    let mut a = vec![
        demo.name().to_string(),
        "--size".into(),
        size.to_string(),
        "--cpus".into(),
        cpus.to_string(),
        "--reps".into(),
        reps.to_string(),
    ];
    if fixed {
        a.push("--fixed".into());
    }
    a
}

/// CPUs online in the guest.
pub fn online_cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// Busy processes on every CPU, until dropped: "with background load".
pub struct Load {
    burners: Vec<Child>,
}

/// The argument that turns any of our programs into a CPU burner.
pub const BURN_ARG: &str = "--burn";

impl Load {
    /// `count` burners, copies of the running program with [`BURN_ARG`]
    /// (the programs call [`burn_if_asked`] first thing).
    pub fn start(count: u32) -> Result<Load, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut burners = Vec::new();
        for _ in 0..count {
            let child = Command::new(&exe)
                .arg(BURN_ARG)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| format!("starting a burner: {e}"))?;
            burners.push(child);
        }
        Ok(Load { burners })
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for b in &mut self.burners {
            let _ = b.kill();
            let _ = b.wait();
        }
    }
}

/// If started as a burner, spin forever (until killed).
pub fn burn_if_asked() {
    if std::env::args().nth(1).as_deref() == Some(BURN_ARG) {
        let mut x = 1u64;
        loop {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

/// A comma-separated list of numbers.
pub fn number_list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>, String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.parse().map_err(|_| format!("`{x}` is not a number")))
        .collect()
}

/// The distinct hashes of `runs` with how often each came, in order of
/// first appearance.
pub fn distinct(runs: &[Run]) -> Vec<(String, usize)> {
    let mut seen: Vec<(String, usize)> = Vec::new();
    for r in runs {
        match seen.iter_mut().find(|(h, _)| *h == r.hash) {
            Some((_, n)) => *n += 1,
            None => seen.push((r.hash.clone(), 1)),
        }
    }
    seen
}

/// The start of every harness program: a burner copy spins
/// ([`burn_if_asked`]); otherwise the command line is parsed, and a bad
/// one ends the program with status 2 and the error on stderr.
pub fn start<T>(program: &str, parse: impl FnOnce() -> Result<T, String>) -> T {
    burn_if_asked();
    match parse() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{program}: {e}");
            std::process::exit(2);
        }
    }
}

/// The CPU counts of `wanted` this guest has.
pub fn usable_cpus(wanted: &[u32]) -> Vec<u32> {
    let online = online_cpus();
    wanted
        .iter()
        .copied()
        .filter(|c| (1..=online).contains(c))
        .collect()
}

/// One line on stdout, flushed at once (the host reads it as it comes).
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
