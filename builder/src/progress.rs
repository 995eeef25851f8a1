//! Progress for long steps: a spinner with the latest output line on a
//! terminal, plain start/finish lines otherwise (CI logs, pipes).

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

/// One long-running step.
pub struct Step {
    what: String,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl Step {
    pub fn new(what: impl Into<String>) -> Step {
        let what = what.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {wide_msg}")
                    .expect("static template"),
            );
            bar.set_prefix(what.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        if bar.is_none() {
            eprintln!("{what} ...");
        }
        Step {
            what,
            started: Instant::now(),
            bar,
        }
    }

    /// Show the latest thing that happened (terminal only).
    pub fn message(&self, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg.trim().to_string());
        }
    }

    pub fn done(self, note: &str) {
        let secs = self.started.elapsed().as_secs_f64();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if note.is_empty() {
            eprintln!("{} done ({secs:.1}s)", self.what);
        } else {
            eprintln!("{} done ({secs:.1}s): {note}", self.what);
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The last `n` lines of `text`, indented, for error reports: the one
/// helper that shows the end of a log.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Run `cmd`, sending stdout and stderr to `log` and the latest line to the
/// step's spinner. On failure the error carries the log's last lines.
pub fn run_logged(step: &Step, mut cmd: Command, log: &Path) -> Result<()> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let file = Arc::new(Mutex::new(file));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().with_context(|| format!("starting {shown}"))?;
    let pump = |r: Box<dyn Read + Send>| {
        let file = Arc::clone(&file);
        let bar = step.bar.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line);
                if let Ok(mut f) = file.lock() {
                    let _ = writeln!(f, "{line}");
                }
                if let Some(bar) = &bar {
                    bar.set_message(line.trim().to_string());
                }
            }
        })
    };
    let out = pump(Box::new(child.stdout.take().context("no stdout")?));
    let err = pump(Box::new(child.stderr.take().context("no stderr")?));
    let status = child.wait()?;
    let _ = out.join();
    let _ = err.join();
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let failed = format!(
            "{shown} failed ({status}); last lines of {}:\n{}",
            log.display(),
            tail_lines(&text, 30)
        );
        match crate::deps::undeclared_hint(&text) {
            Some(hint) => bail!("{hint}\n{failed}"),
            None => bail!("{failed}"),
        }
    }
    Ok(())
}

/// The first line `program arg` prints (a tool's version, typically).
pub fn first_line(program: &str, arg: &str) -> Result<String> {
    let out = crate::deps::command(program)
        .arg(arg)
        .output()
        .with_context(|| format!("running {program} {arg}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_lines_indents_the_last_n() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "    b\n    c");
        assert_eq!(tail_lines("a", 5), "    a");
        assert_eq!(tail_lines("", 3), "");
    }
}
