//! Helpers shared by detlinux's in-guest test programs (`src/bin/*.rs`),
//! each of which prints one KTAP document with the `ktap` crate.
//!
//! Errors are `String`s that name what failed (path and cause), ready to be
//! a `not ok` reason. There is no unsafe code: system calls std lacks go
//! through rustix ([`sys`]).

#![forbid(unsafe_code)]

use std::fs;

/// The boot protocol's command-line parser: tests read `det.*` keys
/// exactly as init does.
pub use bootproto::cmdline;
pub mod sys;

/// The contents of a text file, or an error naming the file.
pub fn read(path: &str) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))
}

/// The value of `key=` on the kernel command line, if present.
pub fn cmdline_value(key: &str) -> Result<Option<String>, String> {
    let params = cmdline::parse(&read("/proc/cmdline")?);
    Ok(cmdline::last_value(&params, key).map(str::to_string))
}

/// One line of /proc/mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub fstype: String,
    pub options: String,
}

/// Parses /proc/mounts text (`source target fstype options 0 0` lines).
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            Some(Mount {
                source: f.next()?.to_string(),
                target: f.next()?.to_string(),
                fstype: f.next()?.to_string(),
                options: f.next().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

/// Errors unless the file system mounted last on `target` is of `fstype`.
pub fn require_mount(target: &str, fstype: &str) -> Result<Mount, String> {
    let mounts = parse_mounts(&read("/proc/mounts")?);
    match mounts.into_iter().rev().find(|m| m.target == target) {
        Some(m) if m.fstype == fstype => Ok(m),
        Some(m) => Err(format!("{target} is {}, not {fstype}", m.fstype)),
        None => Err(format!("nothing mounted on {target}")),
    }
}

/// Parses a kernel CPU list (`0-3,5,7-8`, as in
/// /sys/devices/system/cpu/online) into sorted CPU numbers.
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>, String> {
    let text = text.trim();
    let mut cpus = Vec::new();
    if text.is_empty() {
        return Ok(cpus);
    }
    let number = |s: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("bad CPU list `{text}`: `{s}` is not a CPU number"))
    };
    for part in text.split(',') {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (number(first)?, number(last)?);
                if first > last {
                    return Err(format!("bad CPU list `{text}`: range {part} is backwards"));
                }
                cpus.extend(first..=last);
            }
            None => cpus.push(number(part)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0\n"), Ok(vec![0]));
        assert_eq!(parse_cpu_list("0-1"), Ok(vec![0, 1]));
        assert_eq!(parse_cpu_list("0-2,4,6-7"), Ok(vec![0, 1, 2, 4, 6, 7]));
        assert_eq!(parse_cpu_list(""), Ok(vec![]));
        assert!(parse_cpu_list("0-x").unwrap_err().contains("`x`"));
        assert!(parse_cpu_list("3-1").unwrap_err().contains("backwards"));
        assert!(parse_cpu_list("0,,1").is_err());
    }

    #[test]
    fn mounts() {
        let text = "proc /proc proc rw,nosuid 0 0\ntmpfs /tmp tmpfs rw 0 0\nbad\n";
        let m = parse_mounts(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].target, "/tmp");
        assert_eq!(m[1].fstype, "tmpfs");
        assert_eq!(m[0].options, "rw,nosuid");
    }

    #[test]
    fn shares_inits_cmdline_parser() {
        let params = cmdline::parse(r#"det.cpus=2 det.run="echo a b""#);
        assert_eq!(cmdline::last_value(&params, "det.cpus"), Some("2"));
        assert_eq!(cmdline::last_value(&params, "det.run"), Some("echo a b"));
    }
}

/// `limit` times the speed factor init measured at boot (`DET_TIME_SCALE`,
/// at least 1): a time limit that catches a hang, not a slow host.
pub fn scaled_limit(limit: std::time::Duration) -> std::time::Duration {
    let scale = std::env::var("DET_TIME_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 1.0)
        .unwrap_or(1.0);
    limit.mul_f64(scale)
}
