//! `kmemleak`: no kernel memory leaked during the run. Init runs this
//! program after every other test program (see init's `RUN_LAST`). On a
//! kernel without kmemleak (every profile but `debug`) it skips.
//!
//! kmemleak reports only objects older than about five seconds, so the
//! check waits that long after the last test, then scans twice (the second
//! scan drops objects that were only transiently unreferenced) and reads
//! the report.

#![forbid(unsafe_code)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use ktap::{ensure, Test, TestResult};

const DEBUGFS: &str = "/sys/kernel/debug";
const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";

const TESTS: &[(&str, Test)] = &[("no_leaks", no_leaks)];

fn main() {
    ktap::run("kmemleak", TESTS)
}

fn no_leaks() -> TestResult {
    if !Path::new(KMEMLEAK).exists() {
        // debugfs may simply not be mounted yet.
        let _ = Command::new("/bin/mount")
            .args(["-t", "debugfs", "debugfs", DEBUGFS])
            .status();
    }
    if !Path::new(KMEMLEAK).exists() {
        return Err(ktap::skip("kernel built without kmemleak"));
    }
    sleep(Duration::from_secs(6));
    for _ in 0..2 {
        fs::write(KMEMLEAK, "scan").map_err(|e| format!("{KMEMLEAK}: scan: {e}"))?;
        sleep(Duration::from_secs(1));
    }
    let report = fs::read_to_string(KMEMLEAK).map_err(|e| format!("reading {KMEMLEAK}: {e}"))?;
    let leaks = report
        .lines()
        .filter(|l| l.starts_with("unreferenced object"))
        .count();
    if leaks > 0 {
        for line in report.lines().take(60) {
            println!("# {line}");
        }
    }
    ensure!(leaks == 0, "{leaks} suspected leaks (report above)");
    Ok(())
}
