//! What init was asked to do: the `det.*` keys of the kernel command line.
//!
//! | key                  | meaning                                        | default        |
//! |----------------------|------------------------------------------------|----------------|
//! | `det.run=`           | `tests`, `demos`, `shell`, or a `sh -c` command | `shell`        |
//! | `det.runx=HEX`       | the command as hex UTF-8; wins over `det.run`  |                |
//! | `det.out=PATH`       | stdout+stderr of what runs (not of the shell)  | `/dev/console` |
//! | `det.status=PATH`    | `DET-INIT`/`DET-EXIT` status lines             | `/dev/console` |
//! | `det.tests=a,b`      | only these test programs                       | all            |
//! | `det.cpus=N`         | CPUs the host gave the guest (tests read it)   |                |
//! | `det.test_timeout=S` | seconds before a test program is killed, times the speed factor ([`crate::speed`]) | `600` |
//! | `det.tour=1`         | shell mode: run `tour` on the screen before its shell | `0`     |
//! | `det.data=LABEL`     | the data partition's GPT name; init waits for it (disk boots) | `detlinux-data`, no wait |
//!
//! Any other `det.` key is an error, so a typo (`det.test=boot`) cannot
//! silently run everything. Keys without the `det.` prefix belong to the
//! kernel and are ignored.

use std::path::PathBuf;
use std::time::Duration;

use crate::cmdline::{last_value, Param};

/// Where status lines go when `det.status=` is absent.
pub const CONSOLE: &str = "/dev/console";

const KNOWN_KEYS: &[&str] = &[
    "det.run",
    "det.runx",
    "det.out",
    "det.status",
    "det.tests",
    "det.cpus",
    "det.test_timeout",
    "det.tour",
    "det.data",
];

const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(600);

/// What to run once the system is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Every (selected) program in `/usr/lib/detlinux/tests`, as nested KTAP.
    Tests,
    /// Every program in `/usr/lib/detlinux/demos`.
    Demos,
    /// An interactive shell on the console.
    Shell,
    /// `/bin/sh -c <command>`.
    Command(String),
}

/// The parsed `det.*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    pub out: PathBuf,
    /// `None`: all installed test programs.
    pub tests: Option<Vec<String>>,
    pub test_timeout: Duration,
    /// Shell mode: run the demo tour on the screen first (`det.tour=1`).
    pub tour: bool,
}

/// The status channel named by `det.status=`, read on its own so that
/// errors in the other keys can already be reported there.
pub fn status_path(params: &[Param]) -> PathBuf {
    PathBuf::from(last_value(params, "det.status").unwrap_or(CONSOLE))
}

impl Config {
    /// Validates and interprets the `det.*` keys of `params`.
    pub fn from_params(params: &[Param]) -> Result<Config, String> {
        for p in params {
            if p.key.starts_with("det.") && !KNOWN_KEYS.contains(&p.key.as_str()) {
                return Err(format!("unknown kernel command line key `{}`", p.key));
            }
            if KNOWN_KEYS.contains(&p.key.as_str()) && p.value.is_none() {
                return Err(format!("`{}` needs a value (`{}=...`)", p.key, p.key));
            }
        }
        let get = |key| last_value(params, key);

        let mode = match (get("det.runx"), get("det.run")) {
            (Some(hex), _) => {
                Mode::Command(decode_command(hex).map_err(|e| format!("det.runx: {e}"))?)
            }
            (None, None) => Mode::Shell,
            (None, Some("tests")) => Mode::Tests,
            (None, Some("demos")) => Mode::Demos,
            (None, Some("shell")) => Mode::Shell,
            (None, Some(cmd)) if cmd.trim().is_empty() => {
                return Err("det.run: empty command".to_string())
            }
            (None, Some(cmd)) => Mode::Command(cmd.to_string()),
        };

        let out = PathBuf::from(get("det.out").unwrap_or(CONSOLE));
        if !out.is_absolute() {
            return Err(format!(
                "det.out: `{}` is not an absolute path",
                out.display()
            ));
        }
        if let Some(status) = get("det.status") {
            if !status.starts_with('/') {
                return Err(format!("det.status: `{status}` is not an absolute path"));
            }
        }

        let tests = get("det.tests")
            .map(|list| parse_test_list(list).map_err(|e| format!("det.tests: {e}")))
            .transpose()?;

        if let Some(cpus) = get("det.cpus") {
            parse_positive(cpus).map_err(|e| format!("det.cpus: {e}"))?;
        }

        let test_timeout = match get("det.test_timeout") {
            Some(secs) => Duration::from_secs(
                parse_positive(secs).map_err(|e| format!("det.test_timeout: {e}"))?,
            ),
            None => DEFAULT_TEST_TIMEOUT,
        };

        let tour = match get("det.tour") {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => return Err(format!("det.tour: `{other}` is not 0 or 1")),
        };

        if let Some(label) = get("det.data") {
            if label.is_empty() || label.contains('/') {
                return Err(format!("det.data: `{label}` is not a partition name"));
            }
        }

        Ok(Config {
            mode,
            out,
            tests,
            test_timeout,
            tour,
        })
    }
}

/// Decodes the hex of `det.runx=` into a non-empty UTF-8 command.
fn decode_command(hex: &str) -> Result<String, String> {
    if hex.is_empty() {
        return Err("empty command".to_string());
    }
    if !hex.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({})", hex.len()));
    }
    let digit = |c: u8| -> Result<u8, String> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(format!(
                "`{}` is not a hex digit",
                char::from(c).escape_default()
            )),
        }
    };
    let bytes = hex
        .as_bytes()
        .chunks_exact(2)
        .map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect::<Result<Vec<u8>, String>>()?;
    let cmd = String::from_utf8(bytes).map_err(|_| "command is not UTF-8".to_string())?;
    if cmd.trim().is_empty() {
        return Err("empty command".to_string());
    }
    if cmd.contains('\0') {
        return Err("command contains a NUL byte".to_string());
    }
    Ok(cmd)
}

/// `a,b,c` into sorted, de-duplicated program names.
fn parse_test_list(list: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for name in list.split(',') {
        if name.is_empty() {
            return Err(format!("empty name in `{list}`"));
        }
        if name.contains('/') || name == "." || name == ".." {
            return Err(format!("`{name}` is not a program name"));
        }
        names.push(name.to_string());
    }
    names.sort();
    names.dedup();
    Ok(names)
}

fn parse_positive(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{text}` is not a positive integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::parse;

    fn config(text: &str) -> Result<Config, String> {
        Config::from_params(&parse(text))
    }

    #[test]
    fn defaults() {
        let c = config("console=ttyS0 panic=-1").unwrap();
        assert_eq!(c.mode, Mode::Shell);
        assert_eq!(c.out, PathBuf::from("/dev/console"));
        assert_eq!(c.tests, None);
        assert_eq!(c.test_timeout, Duration::from_secs(600));
        assert!(!c.tour);
        assert_eq!(status_path(&parse("")), PathBuf::from("/dev/console"));
    }

    #[test]
    fn modes() {
        assert_eq!(config("det.run=tests").unwrap().mode, Mode::Tests);
        assert_eq!(config("det.run=demos").unwrap().mode, Mode::Demos);
        assert_eq!(config("det.run=shell").unwrap().mode, Mode::Shell);
        assert_eq!(
            config(r#"det.run="echo hi there""#).unwrap().mode,
            Mode::Command("echo hi there".to_string())
        );
        assert_eq!(
            config("det.run=true").unwrap().mode,
            Mode::Command("true".to_string())
        );
    }

    #[test]
    fn runx_is_hex_and_wins() {
        // "echo 'a \"b\"'"
        let hex: String = "echo 'a \"b\"'"
            .bytes()
            .map(|b| format!("{b:02X}"))
            .collect();
        let c = config(&format!("det.runx={hex} det.run=tests")).unwrap();
        assert_eq!(c.mode, Mode::Command("echo 'a \"b\"'".to_string()));
        assert_eq!(
            config("det.runx=6c73").unwrap().mode,
            Mode::Command("ls".to_string())
        );
    }

    #[test]
    fn bad_runx() {
        for (hex, want) in [
            ("6", "odd number"),
            ("zz", "not a hex digit"),
            ("ff", "not UTF-8"),
            ("2020", "empty command"),
            ("00", "NUL"),
        ] {
            let err = config(&format!("det.runx={hex}")).unwrap_err();
            assert!(
                err.starts_with("det.runx: ") && err.contains(want),
                "{hex}: {err}"
            );
        }
        assert!(config("det.runx=").unwrap_err().contains("empty command"));
    }

    #[test]
    fn bad_run() {
        assert!(config("det.run=").unwrap_err().contains("empty command"));
        assert!(config(r#"det.run="  ""#)
            .unwrap_err()
            .contains("empty command"));
        assert!(config("det.run").unwrap_err().contains("needs a value"));
    }

    #[test]
    fn unknown_det_key_is_an_error() {
        let err = config("det.test=boot").unwrap_err();
        assert!(err.contains("unknown") && err.contains("det.test"), "{err}");
        // Other subsystems' keys are none of init's business.
        assert!(config("detx.foo=1 foo.det=2").is_ok());
    }

    #[test]
    fn test_list() {
        let c = config("det.tests=b,a,b det.test_timeout=5").unwrap();
        assert_eq!(c.tests, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(c.test_timeout, Duration::from_secs(5));
        assert!(config("det.tests=").unwrap_err().contains("empty name"));
        assert!(config("det.tests=a,,b").unwrap_err().contains("empty name"));
        assert!(config("det.tests=../x")
            .unwrap_err()
            .contains("not a program"));
    }

    #[test]
    fn numbers() {
        assert!(config("det.cpus=4").is_ok());
        for bad in [
            "det.cpus=0",
            "det.cpus=-1",
            "det.cpus=two",
            "det.test_timeout=0",
        ] {
            assert!(
                config(bad).unwrap_err().contains("positive integer"),
                "{bad}"
            );
        }
    }

    #[test]
    fn tour_and_data() {
        assert!(config("det.tour=1").unwrap().tour);
        assert!(!config("det.tour=0").unwrap().tour);
        assert!(config("det.tour=yes").unwrap_err().contains("not 0 or 1"));
        assert!(config("det.data=detlinux-data").is_ok());
        assert!(config("det.data=a/b")
            .unwrap_err()
            .contains("not a partition"));
    }

    #[test]
    fn paths_must_be_absolute() {
        assert_eq!(
            config("det.out=/dev/ttyS1").unwrap().out,
            PathBuf::from("/dev/ttyS1")
        );
        assert_eq!(
            status_path(&parse("det.status=/dev/ttyS2")),
            PathBuf::from("/dev/ttyS2")
        );
        assert!(config("det.out=ttyS1").unwrap_err().contains("absolute"));
        assert!(config("det.status=ttyS2").unwrap_err().contains("absolute"));
    }
}
