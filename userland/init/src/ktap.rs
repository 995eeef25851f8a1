//! The KTAP document of `det.run=tests` (Linux `Documentation/dev-tools/ktap.rst`).
//!
//! ```text
//! KTAP version 1
//! 1..2
//! # DET-SPEED scale=1.00 work_ms=… reference_ms=…
//!     # Subtest: boot          <- init names each program before it runs
//!     KTAP version 1           <- then the program's own output, indented
//!     # Subtest: boot             by 4 spaces as it arrives (Rust programs
//!     1..9                        name themselves again through the ktap
//!     ok 1 proc_mounted           crate; kselftest's C harness does not)
//!     ...
//! ok 1 boot
//! not ok 2 sched # exit status 1
//! # tests: pass:1 fail:1 total:2
//! ```
//!
//! Pure code: bytes in, bytes out, so it is unit-tested on the host.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::sys::Exit;

/// Lines longer than this are split, so a program printing without
/// newlines cannot make init buffer without bound.
const MAX_LINE: usize = 4096;

const INDENT: &[u8] = b"    ";

/// Indents a byte stream line by line, writing each line once complete.
#[derive(Default)]
pub struct Indenter {
    partial: Vec<u8>,
}

impl Indenter {
    /// Takes the next bytes of the program's output.
    pub fn feed(&mut self, mut data: &[u8], out: &mut impl Write) -> io::Result<()> {
        while let Some(pos) = data.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&data[..pos]);
            self.flush_line(out)?;
            data = &data[pos + 1..];
        }
        self.partial.extend_from_slice(data);
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            self.flush_line(out)?;
            self.partial = rest;
        }
        Ok(())
    }

    /// Ends the stream: an unterminated last line is written too.
    pub fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        if !self.partial.is_empty() {
            self.flush_line(out)?;
        }
        Ok(())
    }

    /// Writes `partial` as one indented line, in one write so that a host
    /// reading the serial port sees whole lines.
    fn flush_line(&mut self, out: &mut impl Write) -> io::Result<()> {
        let line = std::mem::take(&mut self.partial);
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        let mut bytes = Vec::with_capacity(line.len() + INDENT.len() + 1);
        if !line.is_empty() {
            bytes.extend_from_slice(INDENT);
            bytes.extend_from_slice(line);
        }
        bytes.push(b'\n');
        out.write_all(&bytes)
    }
}

/// One entry of the plan: a program name and where it is, if installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub name: String,
    pub path: Option<PathBuf>,
}

/// Test programs that run after all others, in this order: the kernel
/// leak check must see what every other program allocated.
pub const RUN_LAST: &[&str] = &["kmemleak"];

/// Sort key: programs of [`RUN_LAST`] after the rest, the rest by name.
fn order(name: &str) -> (usize, &str) {
    let last = RUN_LAST.iter().position(|l| *l == name);
    (last.map_or(0, |i| i + 1), name)
}

/// The programs to run, in order: all `installed` ones (by name, those of
/// [`RUN_LAST`] last), or the `wanted` ones (in the same order), marking
/// those not installed.
pub fn plan(installed: &[(String, PathBuf)], wanted: Option<&[String]>) -> Vec<Planned> {
    let mut all: Vec<Planned> = installed
        .iter()
        .map(|(name, path)| Planned {
            name: name.clone(),
            path: Some(path.clone()),
        })
        .collect();
    all.sort_by(|a, b| order(&a.name).cmp(&order(&b.name)));
    let Some(wanted) = wanted else {
        return all;
    };
    let mut wanted = wanted.to_vec();
    wanted.sort_by(|a, b| order(a).cmp(&order(b)));
    wanted
        .iter()
        .map(|name| Planned {
            name: name.clone(),
            path: all
                .iter()
                .find(|p| &p.name == name)
                .and_then(|p| p.path.clone()),
        })
        .collect()
}

/// How one test program did.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Ended(Exit),
    /// Killed at its limit: `det.test_timeout` times the speed factor.
    Timeout {
        limit: Duration,
        scale: f64,
    },
    NotInstalled,
    CannotRun(String),
}

impl Verdict {
    pub fn ok(&self) -> bool {
        matches!(self, Verdict::Ended(Exit::Code(0)))
    }
}

/// The header of the document, for `count` programs.
pub fn header(count: usize) -> String {
    if count == 0 {
        "KTAP version 1\n1..0 # SKIP no test programs installed\n".to_string()
    } else {
        format!("KTAP version 1\n1..{count}\n")
    }
}

/// The indented `# Subtest:` line init prints before a program's output.
pub fn subtest(name: &str) -> String {
    format!("    # Subtest: {}\n", ::ktap::sanitize(name))
}

/// The result line (preceded by a diagnostic line where useful) of the
/// `number`th program.
pub fn result(number: usize, name: &str, verdict: &Verdict) -> String {
    let name = ::ktap::sanitize(name);
    let reason = match verdict {
        Verdict::Ended(Exit::Code(0)) => return format!("ok {number} {name}\n"),
        Verdict::Ended(Exit::Code(code)) => format!("exit status {code}"),
        Verdict::Ended(Exit::Signal(sig)) => format!("killed by signal {sig}"),
        Verdict::Timeout { limit, scale } => {
            return format!(
                "# {name}: killed after {:.0} s (det.test_timeout {} s x speed factor {scale:.2})\n\
                 not ok {number} {name} # timeout\n",
                limit.as_secs_f64() * scale,
                limit.as_secs()
            )
        }
        Verdict::NotInstalled => "not installed".to_string(),
        Verdict::CannotRun(err) => format!("cannot run: {}", ::ktap::sanitize(err)),
    };
    format!("not ok {number} {name} # {reason}\n")
}

/// The closing diagnostic line.
pub fn totals(passed: usize, total: usize) -> String {
    format!(
        "# tests: pass:{passed} fail:{} total:{total}\n",
        total - passed.min(total)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indent(chunks: &[&[u8]]) -> String {
        let mut out = Vec::new();
        let mut ind = Indenter::default();
        for chunk in chunks {
            ind.feed(chunk, &mut out).unwrap();
        }
        ind.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn indents_whole_lines_across_chunks() {
        assert_eq!(
            indent(&[b"KTAP vers", b"ion 1\n1..1\nok 1 ", b"a\n"]),
            "    KTAP version 1\n    1..1\n    ok 1 a\n"
        );
    }

    #[test]
    fn writes_lines_as_soon_as_complete() {
        let mut out = Vec::new();
        let mut ind = Indenter::default();
        ind.feed(b"one\ntw", &mut out).unwrap();
        assert_eq!(out, b"    one\n");
        ind.feed(b"o\n", &mut out).unwrap();
        assert_eq!(out, b"    one\n    two\n");
    }

    #[test]
    fn empty_lines_crlf_and_unterminated_tail() {
        assert_eq!(indent(&[b"a\r\n\nb"]), "    a\n\n    b\n");
        assert_eq!(indent(&[]), "");
    }

    #[test]
    fn long_lines_are_split() {
        let long = vec![b'x'; MAX_LINE + 10];
        let text = indent(&[&long]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), 4 + MAX_LINE);
        assert_eq!(lines[1], format!("    {}", "x".repeat(10)));
    }

    #[test]
    fn non_utf8_passes_through() {
        let mut out = Vec::new();
        let mut ind = Indenter::default();
        ind.feed(b"\xff\xfe\n", &mut out).unwrap();
        assert_eq!(out, b"    \xff\xfe\n");
    }

    fn installed(names: &[&str]) -> Vec<(String, PathBuf)> {
        names
            .iter()
            .map(|n| (n.to_string(), PathBuf::from(format!("/t/{n}"))))
            .collect()
    }

    #[test]
    fn plan_sorts_and_selects() {
        let all = plan(&installed(&["sched", "boot"]), None);
        let names: Vec<_> = all.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["boot", "sched"]);

        let wanted = ["boot".to_string(), "nope".to_string()];
        let some = plan(&installed(&["sched", "boot"]), Some(&wanted));
        assert_eq!(
            some,
            vec![
                Planned {
                    name: "boot".into(),
                    path: Some("/t/boot".into())
                },
                Planned {
                    name: "nope".into(),
                    path: None
                },
            ]
        );
        assert!(plan(&[], None).is_empty());
    }

    #[test]
    fn the_leak_check_runs_last() {
        let all = plan(&installed(&["kmemleak", "zeta", "boot"]), None);
        let names: Vec<_> = all.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["boot", "zeta", "kmemleak"]);
        let wanted = ["kmemleak".to_string(), "zeta".to_string()];
        let some = plan(&installed(&["kmemleak", "zeta"]), Some(&wanted));
        let names: Vec<_> = some.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["zeta", "kmemleak"]);
    }

    #[test]
    fn headers() {
        assert_eq!(
            header(0),
            "KTAP version 1\n1..0 # SKIP no test programs installed\n"
        );
        assert_eq!(header(3), "KTAP version 1\n1..3\n");
    }

    #[test]
    fn result_lines() {
        let r = |v: Verdict| result(2, "boot", &v);
        assert_eq!(r(Verdict::Ended(Exit::Code(0))), "ok 2 boot\n");
        assert_eq!(
            r(Verdict::Ended(Exit::Code(3))),
            "not ok 2 boot # exit status 3\n"
        );
        assert_eq!(
            r(Verdict::Ended(Exit::Signal(11))),
            "not ok 2 boot # killed by signal 11\n"
        );
        assert_eq!(
            r(Verdict::Timeout {
                limit: Duration::from_secs(5),
                scale: 2.6
            }),
            "# boot: killed after 13 s (det.test_timeout 5 s x speed factor 2.60)\n\
             not ok 2 boot # timeout\n"
        );
        assert_eq!(r(Verdict::NotInstalled), "not ok 2 boot # not installed\n");
        assert_eq!(
            r(Verdict::CannotRun("Exec format\nerror".into())),
            "not ok 2 boot # cannot run: Exec format error\n"
        );
        assert_eq!(
            result(1, "a#b\nc", &Verdict::Ended(Exit::Code(0))),
            "ok 1 a_b c\n"
        );
        assert!(Verdict::Ended(Exit::Code(0)).ok());
        assert!(!Verdict::Ended(Exit::Code(1)).ok());
        assert!(!Verdict::Timeout {
            limit: Duration::ZERO,
            scale: 1.0
        }
        .ok());
    }

    #[test]
    fn totals_line() {
        assert_eq!(totals(1, 2), "# tests: pass:1 fail:1 total:2\n");
    }
}
