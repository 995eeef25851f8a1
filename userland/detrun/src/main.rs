//! `detrun [OPTIONS] PROGRAM [ARGS...]`: runs a deterministic program.
//!
//! detrun is a legacy process that becomes a master, builds a fresh
//! deterministic root for PROGRAM at the fixed addresses of
//! `determ::layout` with a stack it constructs itself (no ASLR, no random
//! auxv bytes, a fixed environment unless `--env` is given), hands it a file
//! system (fresh, or loaded from `--fs IMAGE`), starts it and serves its
//! I/O: the root's trapped `write`s go to detrun's stdout/stderr, `read(0)`
//! is served from detrun's stdin. It exits with the program's status. A
//! fault or a merge conflict is reported on stderr with the address, the
//! symbol from PROGRAM's symbol table and the child ID.
//!
//! The heap's size is an input like the arguments (`--heap`, else
//! `DETRUN_HEAP`, else 512 MiB), never taken from the machine, so a program
//! runs out of heap at the same call on every machine; `--stats` reports
//! it with the heap's peak and live figures.
//!
//! Exit status: the program's; 128 + signal when it faulted; 2 for a usage
//! error, an unreadable program or a bad file-system image (then nothing is
//! written).
//!
//! No unsafe code: system calls go through libdeterm's safe wrappers
//! (`determ::sys`, `determ::exec`).

#![forbid(unsafe_code)]

mod run;

use std::process::ExitCode;

const HELP: &str = "\
detrun: run a deterministic program

Usage: detrun [OPTIONS] PROGRAM [ARGS...]

PROGRAM is a static x86_64 ELF built with libdeterm. It runs as the root of
a deterministic process group, at fixed addresses, with a stack detrun
builds (argv = PROGRAM ARGS..., a fixed environment, no random auxv bytes).

Options:
  --fs IMAGE          load the in-memory file system from IMAGE (created if
                      missing) and save it back when the program exits; a
                      corrupt or truncated image is an error, left untouched
  --add FSPATH=FILE   copy the host FILE into the file system at FSPATH
                      (parent directories are created)
  --env NAME=VALUE    set an environment variable (replaces the fixed
                      environment PATH=/bin HOME=/ LANG=C; repeatable)
  --fs-blocks N       size of a new file system in 4 KiB blocks (default 8192)
  --heap SIZE         the program's heap: a whole number of MiB, 1M to 16G,
                      written like 512M or 2G (default: $DETRUN_HEAP if set,
                      else 512M). The same program and inputs run out of heap
                      at the same point for the same SIZE on every machine;
                      more than the machine's RAM + swap makes every fork fail
  --stats             when the program ends, print its heap figures on stderr:
                      detrun: stats: heap_size=B (from) peak_heap=B peak_live=B
                      ratio=R held=B live=B lost=B free_ranges=N
                      (peak_heap: the most heap held at once by the program
                      and its children, ratio = peak_heap / peak_live)
                      and where the time went, from the kernel's account:
                      detrun: time: run_ms=T snapshot_ms=T merge_ms=T
                      copy_ms=T kill_ms=T calls=N merge_share=P%
                      (time the whole tree spent creating and snapshotting
                      children, merging, copying and killing; merge_share
                      = merge_ms / run_ms)
  -h, --help          show this help

Environment:
  DETRUN_HEAP         the heap size when --heap is not given (as --heap)

Exit status: the program's; 128+N if it stopped on signal N (a fault or a
panic: SIGILL); 2 if detrun could not start it.
";

/// The parsed command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub fs: Option<String>,
    pub add: Vec<(String, String)>,
    pub env: Vec<String>,
    pub fs_blocks: Option<u32>,
    /// `--heap`, in bytes.
    pub heap: Option<u64>,
    pub stats: bool,
    pub program: String,
    pub args: Vec<String>,
}

/// Parses `argv[1..]`; `Ok(None)` means `--help`.
pub fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut o = Options::default();
    let mut i = 0;
    let value = |i: &mut usize, name: &str| -> Result<String, String> {
        *i += 1;
        args.get(*i).cloned().ok_or(format!("{name} needs a value"))
    };
    while i < args.len() {
        let a = &args[i];
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "--fs" => o.fs = Some(value(&mut i, "--fs")?),
            "--add" => {
                let v = value(&mut i, "--add")?;
                let (p, f) = v
                    .split_once('=')
                    .ok_or(format!("--add {v}: expected FSPATH=FILE"))?;
                o.add.push((p.to_string(), f.to_string()));
            }
            "--env" => {
                let v = value(&mut i, "--env")?;
                if !v.contains('=') {
                    return Err(format!("--env {v}: expected NAME=VALUE"));
                }
                o.env.push(v);
            }
            "--fs-blocks" => {
                let v = value(&mut i, "--fs-blocks")?;
                o.fs_blocks = Some(
                    v.parse()
                        .map_err(|_| format!("--fs-blocks {v}: not a number"))?,
                );
            }
            "--heap" => {
                let v = value(&mut i, "--heap")?;
                o.heap = Some(parse_heap(&v).map_err(|e| format!("--heap {v}: {e}"))?);
            }
            "--stats" => o.stats = true,
            "--" => {
                i += 1;
                break;
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => break,
        }
        i += 1;
    }
    let Some(program) = args.get(i) else {
        return Err("no PROGRAM given".into());
    };
    o.program = program.clone();
    o.args = args[i + 1..].to_vec();
    Ok(Some(o))
}

/// A heap size: a whole number of MiB from 1M to 16G, written with a
/// suffix `M` or `G` (or `MiB`, `GiB`), or in bytes.
pub fn parse_heap(v: &str) -> Result<u64, String> {
    let bad = || "expected a size like 512M or 2G".to_string();
    let (digits, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => v.split_at(at),
        None => (v, ""),
    };
    let shift = match unit {
        "" => 0,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return Err(bad()),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let bytes = n
        .checked_mul(1 << shift)
        .filter(|&b| b <= determ::layout::HEAP_MAX)
        .ok_or("more than the 16G limit")?;
    if bytes == 0 || bytes % (1 << 20) != 0 {
        return Err("not a whole, nonzero number of MiB".into());
    }
    Ok(bytes)
}

/// The heap size and where it came from: `--heap`, else `DETRUN_HEAP`, else
/// the default. Never the machine's memory.
pub fn heap_size(o: &Options, env: Option<&str>) -> Result<(u64, &'static str), String> {
    if let Some(b) = o.heap {
        return Ok((b, "--heap"));
    }
    match env {
        Some(v) => parse_heap(v)
            .map(|b| (b, "DETRUN_HEAP"))
            .map_err(|e| format!("DETRUN_HEAP={v}: {e}")),
        None => Ok((determ::layout::HEAP_DEFAULT, "default")),
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&argv) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("detrun: {e}\n(detrun --help for usage)");
            return ExitCode::from(2);
        }
    };
    let heap = match heap_size(&opts, std::env::var("DETRUN_HEAP").ok().as_deref()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("detrun: {e}\n(detrun --help for usage)");
            return ExitCode::from(2);
        }
    };
    match run::run(&opts, heap) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("detrun: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_options_then_the_program_and_its_arguments() {
        let o = parse(&v(&[
            "--fs",
            "img",
            "--add",
            "/bin/x=./x",
            "prog",
            "--fs",
            "a",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(o.fs.as_deref(), Some("img"));
        assert_eq!(o.add, vec![("/bin/x".to_string(), "./x".to_string())]);
        assert_eq!(o.program, "prog");
        assert_eq!(o.args, v(&["--fs", "a"]));
        assert_eq!(parse(&v(&["--help"])), Ok(None));
        assert!(parse(&v(&[])).is_err());
        assert!(parse(&v(&["--fs"])).is_err());
        assert!(parse(&v(&["--bogus", "p"])).is_err());
        assert!(parse(&v(&["--add", "nofile", "p"])).is_err());
        assert_eq!(parse(&v(&["--", "-p"])).unwrap().unwrap().program, "-p");
    }

    #[test]
    fn heap_size_is_given_never_guessed() {
        let o = parse(&v(&["--heap", "2G", "--stats", "p"]))
            .unwrap()
            .unwrap();
        assert_eq!((o.heap, o.stats), (Some(2 << 30), true));
        assert_eq!(heap_size(&o, Some("64M")), Ok((2 << 30, "--heap")));
        let plain = parse(&v(&["p"])).unwrap().unwrap();
        assert_eq!(
            heap_size(&plain, Some("64M")),
            Ok((64 << 20, "DETRUN_HEAP"))
        );
        assert_eq!(
            heap_size(&plain, Some("1GiB")),
            Ok((1 << 30, "DETRUN_HEAP"))
        );
        assert_eq!(heap_size(&plain, None), Ok((512 << 20, "default")));
        assert_eq!(parse_heap("1048576"), Ok(1 << 20));
        assert_eq!(parse_heap("16G"), Ok(16 << 30));
        for bad in [
            "",
            "0",
            "0M",
            "12x",
            "1.5G",
            "17G",
            "100",
            "-1M",
            "M",
            "99999999999999999999G",
        ] {
            let e = parse_heap(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        let e = heap_size(&plain, Some("lots")).unwrap_err();
        assert!(e.starts_with("DETRUN_HEAP=lots: "), "{e}");
        let e = parse(&v(&["--heap", "3K", "p"])).unwrap_err();
        assert!(e.starts_with("--heap 3K: "), "{e}");
    }
}
