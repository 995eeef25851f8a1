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

use bootproto::cmdline::{last_value, Param};
use bootproto::{key, Mode};

/// Where status lines go when `det.status=` is absent.
pub const CONSOLE: &str = "/dev/console";

const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(600);

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
    PathBuf::from(last_value(params, key::STATUS).unwrap_or(CONSOLE))
}

impl Config {
    /// Validates and interprets the `det.*` keys of `params`.
    pub fn from_params(params: &[Param]) -> Result<Config, String> {
        for p in params {
            if p.key.starts_with("det.") && !key::ALL.contains(&p.key.as_str()) {
                return Err(format!("unknown kernel command line key `{}`", p.key));
            }
            if key::ALL.contains(&p.key.as_str()) && p.value.is_none() {
                return Err(format!("`{}` needs a value (`{}=...`)", p.key, p.key));
            }
        }
        let get = |key| last_value(params, key);

        let mode = Mode::from_params(params)?;

        let out = PathBuf::from(get(key::OUT).unwrap_or(CONSOLE));
        if !out.is_absolute() {
            return Err(format!(
                "det.out: `{}` is not an absolute path",
                out.display()
            ));
        }
        if let Some(status) = get(key::STATUS) {
            if !status.starts_with('/') {
                return Err(format!("det.status: `{status}` is not an absolute path"));
            }
        }

        let tests = get(key::TESTS)
            .map(|list| parse_test_list(list).map_err(|e| format!("det.tests: {e}")))
            .transpose()?;

        if let Some(cpus) = get(key::CPUS) {
            parse_positive(cpus).map_err(|e| format!("det.cpus: {e}"))?;
        }

        let test_timeout = match get(key::TEST_TIMEOUT) {
            Some(secs) => Duration::from_secs(
                parse_positive(secs).map_err(|e| format!("det.test_timeout: {e}"))?,
            ),
            None => DEFAULT_TEST_TIMEOUT,
        };

        let tour = match get(key::TOUR) {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => return Err(format!("det.tour: `{other}` is not 0 or 1")),
        };

        if let Some(label) = get(key::DATA) {
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
    use bootproto::cmdline::parse;

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
    fn mode_errors_name_the_key() {
        assert_eq!(config("det.run=tests").unwrap().mode, Mode::Tests);
        assert!(config("det.runx=6").unwrap_err().starts_with("det.runx: "));
        assert!(config("det.run=").unwrap_err().contains("empty command"));
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
