//! Init's status lines, on the status channel (`det.status=`):
//!
//! ```text
//! DET-INIT start uptime_ms=<ms since boot, CLOCK_BOOTTIME>
//! DET-INIT error: <message>      (then power off, without DET-EXIT)
//! DET-EXIT status=<exit code, or 128 + signal>
//! ```
//!
//! and the speed factor, a KTAP diagnostic at the start of a test run's
//! output channel:
//!
//! ```text
//! # DET-SPEED scale=<f> work_ms=<ms> reference_ms=<ms>
//! ```
//!
//! A reader may find noise before a `DET-` marker on the same line (a
//! single-stream run, a serial port's leftovers) and a `\r` at its end.

use core::fmt;

const START: &str = "DET-INIT start";
const ERROR: &str = "DET-INIT error:";
const EXIT: &str = "DET-EXIT status=";
const SPEED: &str = "# DET-SPEED scale=";

/// One status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<'a> {
    /// Init began; `None` when a reader cannot read the number.
    Start { uptime_ms: Option<u64> },
    /// Init hit an error; written on one line.
    Error(&'a str),
    /// What ran ended with this status; `None` when unreadable.
    Exit(Option<i32>),
}

impl<'a> Status<'a> {
    /// The status line in `line`, if it holds one.
    pub fn find(line: &'a str) -> Option<Status<'a>> {
        let line = line.trim_end_matches('\r');
        if let Some(at) = line.find(START) {
            let uptime_ms = line[at + START.len()..]
                .split_once("uptime_ms=")
                .and_then(|(_, n)| leading_number(n));
            Some(Status::Start { uptime_ms })
        } else if let Some(at) = line.find(ERROR) {
            Some(Status::Error(line[at + ERROR.len()..].trim()))
        } else {
            let at = line.find(EXIT)?;
            Some(Status::Exit(leading_number(&line[at + EXIT.len()..])))
        }
    }
}

/// Writes the line without its newline; an error's line breaks become
/// spaces, so it stays one line.
impl fmt::Display for Status<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Status::Start { uptime_ms } => {
                f.write_str(START)?;
                match uptime_ms {
                    Some(ms) => write!(f, " uptime_ms={ms}"),
                    None => Ok(()),
                }
            }
            Status::Error(message) => {
                write!(f, "{ERROR} ")?;
                for (i, part) in message.split('\n').enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    f.write_str(part)?;
                }
                Ok(())
            }
            Status::Exit(status) => {
                f.write_str(EXIT)?;
                match status {
                    Some(s) => write!(f, "{s}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Whether a line (its leading space removed) is a status line; KTAP
/// readers skip those in a single-stream run.
pub fn is_status_line(content: &str) -> bool {
    content.starts_with("DET-INIT ") || content.starts_with("DET-EXIT ")
}

/// The guest's speed factor: how much slower this boot ran a fixed piece
/// of work than the reference guest, at least 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speed {
    pub scale: f64,
    pub work_ms: u128,
    pub reference_ms: u128,
}

/// `# DET-SPEED scale=<f, two decimals> work_ms=<n> reference_ms=<n>`,
/// without its newline.
impl fmt::Display for Speed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SPEED}{:.2} work_ms={} reference_ms={}",
            self.scale, self.work_ms, self.reference_ms
        )
    }
}

/// The speed factor of the first `# DET-SPEED` line of `output`, if it is
/// a finite number of at least 1.
pub fn speed_scale(output: &str) -> Option<f64> {
    let rest = output
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(SPEED))?;
    rest.split_whitespace()
        .next()?
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 1.0)
}

/// The (optionally negative) decimal number at the start of `s`.
fn leading_number<T: core::str::FromStr>(s: &str) -> Option<T> {
    let sign = usize::from(s.starts_with('-'));
    let digits = s[sign..].bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    s[..sign + digits].parse().ok()
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use super::*;
    use alloc::format;
    use alloc::string::ToString;

    #[test]
    fn lines_round_trip() {
        for s in [
            Status::Start {
                uptime_ms: Some(683),
            },
            Status::Error("mount /proc: EPERM"),
            Status::Exit(Some(0)),
            Status::Exit(Some(139)),
        ] {
            assert_eq!(Status::find(&s.to_string()), Some(s));
        }
        assert_eq!(
            Status::Start { uptime_ms: Some(5) }.to_string(),
            "DET-INIT start uptime_ms=5"
        );
        assert_eq!(Status::Exit(Some(3)).to_string(), "DET-EXIT status=3");
        assert_eq!(Status::Error("a\nb").to_string(), "DET-INIT error: a b");
    }

    #[test]
    fn noise_and_bad_numbers() {
        assert_eq!(
            Status::find("noise DET-INIT start uptime_ms=12x\r"),
            Some(Status::Start {
                uptime_ms: Some(12)
            })
        );
        assert_eq!(
            Status::find("DET-INIT start"),
            Some(Status::Start { uptime_ms: None })
        );
        assert_eq!(
            Status::find("DET-INIT error:  bad thing \r"),
            Some(Status::Error("bad thing"))
        );
        assert_eq!(
            Status::find("DET-EXIT status=-1"),
            Some(Status::Exit(Some(-1)))
        );
        assert_eq!(Status::find("DET-EXIT status="), Some(Status::Exit(None)));
        assert_eq!(
            Status::find("DET-EXIT status=99999999999"),
            Some(Status::Exit(None))
        );
        assert_eq!(Status::find("ok 1 boot"), None);
        assert!(is_status_line("DET-EXIT status=0"));
        assert!(!is_status_line("# DET-EXIT"));
    }

    #[test]
    fn speed_line() {
        let s = Speed {
            scale: 3.0,
            work_ms: 752,
            reference_ms: 250,
        };
        let line = format!("KTAP version 1\n1..3\n{s}\n");
        assert!(line.contains("# DET-SPEED scale=3.00 work_ms=752 reference_ms=250\n"));
        assert_eq!(speed_scale(&line), Some(3.0));
        assert_eq!(speed_scale("# DET-SPEED scale=0.5\n"), None);
        assert_eq!(speed_scale("# DET-SPEED scale=NaN\n"), None);
        assert_eq!(speed_scale("nothing\n"), None);
    }
}
