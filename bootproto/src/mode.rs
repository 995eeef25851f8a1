//! What init runs, and how a mode travels on the kernel command line:
//! `det.run=<word>` for a mode or a command that is one plain word
//! ([`crate::is_plain_word`]), `det.runx=<hex of UTF-8>` for any other
//! command (the kernel's quoting cannot carry every command).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Write};

use crate::cmdline::{last_value, Param};
use crate::key;

/// What to run once the system is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Every (selected) program in `/usr/lib/detlinux/tests`, as nested KTAP.
    Tests,
    /// The demo tour.
    Demos,
    /// An interactive shell on each console terminal.
    Shell,
    /// `/bin/sh -c <command>`.
    Command(String),
}

impl Mode {
    /// `tests`, `demos`, `shell`, or else a command (which must not be
    /// blank): the words of `det.run=` and of a profile's `boot.run`.
    pub fn parse(text: &str) -> Result<Mode, String> {
        Ok(match text {
            "tests" => Mode::Tests,
            "demos" => Mode::Demos,
            "shell" => Mode::Shell,
            cmd if cmd.trim().is_empty() => return Err("empty command".to_string()),
            cmd => Mode::Command(cmd.to_string()),
        })
    }

    /// The mode a command line asks for: `det.runx=` wins over `det.run=`;
    /// neither is [`Mode::Shell`]. Errors name the key.
    pub fn from_params(params: &[Param]) -> Result<Mode, String> {
        match (last_value(params, key::RUNX), last_value(params, key::RUN)) {
            (Some(hex), _) => decode_command(hex)
                .map(Mode::Command)
                .map_err(|e| format!("{}: {e}", key::RUNX)),
            (None, None) => Ok(Mode::Shell),
            (None, Some(word)) => Mode::parse(word).map_err(|e| format!("{}: {e}", key::RUN)),
        }
    }

    /// The word of a mode, or the command.
    pub fn as_str(&self) -> &str {
        match self {
            Mode::Tests => "tests",
            Mode::Demos => "demos",
            Mode::Shell => "shell",
            Mode::Command(cmd) => cmd,
        }
    }

    /// The kernel parameter that asks for this mode: `det.run=<word>`, or
    /// `det.runx=<hex>` for a command that is not one plain word.
    pub fn param(&self) -> String {
        let word = self.as_str();
        if crate::is_plain_word(word) {
            return format!("{}={word}", key::RUN);
        }
        let mut p = format!("{}=", key::RUNX);
        for b in word.bytes() {
            let _ = write!(p, "{b:02x}");
        }
        p
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::parse;

    fn mode(text: &str) -> Result<Mode, String> {
        Mode::from_params(&parse(text))
    }

    fn cmd(c: &str) -> Mode {
        Mode::Command(c.to_string())
    }

    #[test]
    fn modes() {
        assert_eq!(mode("console=ttyS0").unwrap(), Mode::Shell);
        assert_eq!(mode("det.run=tests").unwrap(), Mode::Tests);
        assert_eq!(mode("det.run=demos").unwrap(), Mode::Demos);
        assert_eq!(mode("det.run=shell").unwrap(), Mode::Shell);
        assert_eq!(
            mode(r#"det.run="echo hi there""#).unwrap(),
            cmd("echo hi there")
        );
        assert_eq!(mode("det.run=true").unwrap(), cmd("true"));
    }

    #[test]
    fn runx_is_hex_and_wins() {
        let hex: String = "echo 'a \"b\"'"
            .bytes()
            .map(|b| format!("{b:02X}"))
            .collect();
        let m = mode(&format!("det.runx={hex} det.run=tests")).unwrap();
        assert_eq!(m, cmd("echo 'a \"b\"'"));
        assert_eq!(mode("det.runx=6c73").unwrap(), cmd("ls"));
    }

    #[test]
    fn bad_runx() {
        for (hex, want) in [
            ("6", "odd number"),
            ("zz", "not a hex digit"),
            ("ff", "not UTF-8"),
            ("2020", "empty command"),
            ("00", "NUL"),
            ("", "empty command"),
        ] {
            let err = mode(&format!("det.runx={hex}")).unwrap_err();
            assert!(
                err.starts_with("det.runx: ") && err.contains(want),
                "{hex}: {err}"
            );
        }
    }

    #[test]
    fn bad_run() {
        assert!(mode("det.run=").unwrap_err().contains("empty command"));
        assert!(mode(r#"det.run="  ""#)
            .unwrap_err()
            .contains("empty command"));
        assert!(Mode::parse(" ").is_err());
    }

    #[test]
    fn param_encodes_anything_that_is_not_a_word() {
        assert_eq!(Mode::Tests.param(), "det.run=tests");
        assert_eq!(Mode::Shell.param(), "det.run=shell");
        assert_eq!(cmd("/bin/true").param(), "det.run=/bin/true");
        assert_eq!(cmd("echo hi").param(), "det.runx=6563686f206869");
        assert_eq!(cmd("a\"b").param(), "det.runx=612262");
    }

    #[test]
    fn every_mode_survives_the_command_line() {
        for m in [
            Mode::Tests,
            Mode::Demos,
            Mode::Shell,
            cmd("true"),
            cmd("echo 'a \"b\"' | wc -c"),
            cmd("printf 'é\\n'"),
        ] {
            assert_eq!(mode(&m.param()).unwrap(), m, "{}", m.param());
        }
    }
}
