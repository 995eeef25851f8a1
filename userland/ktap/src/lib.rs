//! KTAP output for detlinux's in-guest test programs.
//!
//! A test program prints one KTAP version 1 document (Linux
//! `Documentation/dev-tools/ktap.rst`) on stdout; init nests it, indented,
//! in the document of the whole run. The shape is KUnit's:
//!
//! ```text
//! KTAP version 1
//! # Subtest: boot
//! 1..3
//! ok 1 proc_mounted
//! not ok 2 tmp_writable # /tmp: not a tmpfs
//! ok 3 cpus_online # SKIP det.cpus not given
//! # boot: pass:1 fail:1 skip:1 total:3
//! ```
//!
//! Two ways to use it: a table of test functions given to [`run`], which
//! catches panics and reports them as failures; or a [`Suite`] driven by
//! hand. Both write to any `io::Write` (stdout by default), so the output
//! is unit-tested on the host.

#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// Why a test did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The test failed, for this reason.
    Fail(String),
    /// The test does not apply here, for this reason (reported `ok ... # SKIP`).
    Skip(String),
}

impl From<String> for Failure {
    fn from(reason: String) -> Failure {
        Failure::Fail(reason)
    }
}

impl From<&str> for Failure {
    fn from(reason: &str) -> Failure {
        Failure::Fail(reason.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Fail(reason) => write!(f, "{reason}"),
            Failure::Skip(reason) => write!(f, "SKIP {reason}"),
        }
    }
}

/// What a test function returns. `?` converts a `Result<_, String>`.
pub type TestResult = Result<(), Failure>;

/// A test function, for [`run`].
pub type Test = fn() -> TestResult;

/// A [`Failure::Skip`]: `return Err(ktap::skip("no such device"))`.
pub fn skip(reason: impl Into<String>) -> Failure {
    Failure::Skip(reason.into())
}

/// Fails the test with a formatted reason unless `cond` holds:
/// `ensure!(n == 2, "expected 2 CPUs, found {n}")`.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($reason:tt)+) => {
        if !$cond {
            return ::std::result::Result::Err($crate::Failure::Fail(format!($($reason)+)));
        }
    };
}

/// Prints a diagnostic line (`# msg`) on stdout, for use inside tests that
/// [`run`] runs.
pub fn diag(msg: &str) {
    let _ = io::stdout().lock().write_all(diag_lines(msg).as_bytes());
}

/// Counts of a finished suite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Totals {
    pub fn total(&self) -> usize {
        self.passed + self.failed + self.skipped
    }
}

/// One KTAP document: the header is printed by [`Suite::new`], a result
/// line by each [`check`](Suite::check) or [`skip`](Suite::skip), and a
/// totals line by [`end`](Suite::end).
pub struct Suite<W: Write = io::Stdout> {
    out: W,
    name: String,
    planned: usize,
    totals: Totals,
    write_failed: bool,
}

impl Suite<io::Stdout> {
    /// A suite named `name` of `planned` tests, printing to stdout.
    pub fn new(name: &str, planned: usize) -> Suite<io::Stdout> {
        Suite::with_output(io::stdout(), name, planned)
    }

    /// Ends the suite and exits: status 0 iff every test passed or was
    /// skipped and as many ran as were planned.
    pub fn finish(self) -> ! {
        let ok = self.end();
        std::process::exit(if ok { 0 } else { 1 })
    }
}

impl<W: Write> Suite<W> {
    /// A suite printing to `out`.
    pub fn with_output(out: W, name: &str, planned: usize) -> Suite<W> {
        let name = sanitize(name);
        let mut suite = Suite {
            out,
            name,
            planned,
            totals: Totals::default(),
            write_failed: false,
        };
        let header = format!("KTAP version 1\n# Subtest: {}\n1..{planned}\n", suite.name);
        suite.write(&header);
        suite
    }

    /// Reports the next test: `ok` on `Ok`, else `not ok` (or a skip).
    /// Returns whether it passed.
    pub fn check<E: Into<Failure>>(&mut self, name: &str, result: Result<(), E>) -> bool {
        let number = self.totals.total() + 1;
        let name = sanitize(name);
        let line = match result.map_err(Into::into) {
            Ok(()) => {
                self.totals.passed += 1;
                format!("ok {number} {name}\n")
            }
            Err(Failure::Skip(reason)) => {
                self.totals.skipped += 1;
                format!("ok {number} {name} # SKIP {}\n", one_line(&reason))
            }
            Err(Failure::Fail(reason)) => {
                self.totals.failed += 1;
                format!("not ok {number} {name} # {}\n", one_line(&reason))
            }
        };
        self.write(&line);
        !line.starts_with("not ")
    }

    /// Reports the next test as skipped.
    pub fn skip(&mut self, name: &str, reason: &str) {
        self.check(name, Err(skip(reason)));
    }

    /// Prints `msg` as diagnostic lines (`# msg`).
    pub fn diag(&mut self, msg: &str) {
        self.write(&diag_lines(msg));
    }

    /// The counts so far.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Prints the totals line; returns whether the suite passed: no test
    /// failed, as many ran as were planned, and all output was written.
    pub fn end(mut self) -> bool {
        let t = self.totals;
        if t.total() != self.planned {
            let msg = format!("planned {} tests but {} ran", self.planned, t.total());
            self.diag(&msg);
        }
        let line = format!(
            "# {}: pass:{} fail:{} skip:{} total:{}\n",
            self.name,
            t.passed,
            t.failed,
            t.skipped,
            t.total()
        );
        self.write(&line);
        let _ = self.out.flush();
        t.failed == 0 && t.total() == self.planned && !self.write_failed
    }

    /// Writes `text` at once and flushes, so a reader sees whole lines as
    /// they happen. A failed write fails the suite.
    fn write(&mut self, text: &str) {
        if self.out.write_all(text.as_bytes()).is_err() || self.out.flush().is_err() {
            self.write_failed = true;
        }
    }
}

/// Runs a table of tests as suite `name` on stdout and exits: status 0 iff
/// all passed (see [`Suite::finish`]).
pub fn run(name: &str, tests: &[(&str, Test)]) -> ! {
    let ok = run_with(io::stdout(), name, tests);
    std::process::exit(if ok { 0 } else { 1 })
}

/// Runs a table of tests as suite `name` on `out`, each in order; a test
/// that panics is reported `not ok` with the panic's message and location.
/// Returns whether the suite passed.
pub fn run_with<W: Write>(out: W, name: &str, tests: &[(&str, Test)]) -> bool {
    install_panic_hook();
    let mut suite = Suite::with_output(out, name, tests.len());
    for &(test_name, test) in tests {
        CAPTURING.with(|c| c.set(true));
        let result = panic::catch_unwind(AssertUnwindSafe(test));
        CAPTURING.with(|c| c.set(false));
        let result = result.unwrap_or_else(|payload| {
            let message = PANIC_MESSAGE
                .with(|m| m.borrow_mut().take())
                .unwrap_or_else(|| format!("panicked: {}", payload_text(&*payload)));
            Err(Failure::Fail(message))
        });
        suite.check(test_name, result);
    }
    suite.end()
}

thread_local! {
    /// Whether this thread is inside a test run by [`run_with`].
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    /// The message of the last panic caught while capturing.
    static PANIC_MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that, on a thread running a
/// test, records the message instead of printing it (it becomes the `not
/// ok` reason), and otherwise defers to the previous hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(Cell::get) {
                let location = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let message = format!("panicked{location}: {}", payload_text(info.payload()));
                PANIC_MESSAGE.with(|m| *m.borrow_mut() = Some(message));
            } else {
                previous(info);
            }
        }));
    });
}

/// The message of a panic payload (`&str` or `String`), for reports.
pub fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// A test or suite name fit for a KTAP line: one line, no `#` (which
/// would start a directive), never empty.
pub fn sanitize(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| match c {
            '#' => '_',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let clean = clean.trim();
    if clean.is_empty() {
        "unnamed".to_string()
    } else {
        clean.to_string()
    }
}

/// A reason fit for the end of a result line: one line.
fn one_line(text: &str) -> String {
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    joined
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `msg` as `# ` lines, one per line of `msg`.
fn diag_lines(msg: &str) -> String {
    let mut text = String::new();
    for line in msg.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            text.push_str("#\n");
        } else {
            text.push_str("# ");
            text.push_str(line);
            text.push('\n');
        }
    }
    if text.is_empty() {
        text.push_str("#\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(f: impl FnOnce(&mut Vec<u8>) -> bool) -> (bool, String) {
        let mut buf = Vec::new();
        let ok = f(&mut buf);
        (ok, String::from_utf8(buf).unwrap())
    }

    #[test]
    fn suite_prints_header_results_and_totals() {
        let (ok, text) = output(|buf| {
            let mut s = Suite::with_output(buf, "boot", 3);
            assert!(s.check("a", Ok::<(), String>(())));
            assert!(!s.check("b", Err("went\nwrong".to_string())));
            s.skip("c", "not here");
            assert_eq!(
                s.totals(),
                Totals {
                    passed: 1,
                    failed: 1,
                    skipped: 1
                }
            );
            s.end()
        });
        assert!(!ok);
        assert_eq!(
            text,
            "KTAP version 1\n# Subtest: boot\n1..3\n\
             ok 1 a\n\
             not ok 2 b # went; wrong\n\
             ok 3 c # SKIP not here\n\
             # boot: pass:1 fail:1 skip:1 total:3\n"
        );
    }

    #[test]
    fn all_passed_and_skipped_is_success() {
        let (ok, _) = output(|buf| {
            let mut s = Suite::with_output(buf, "x", 2);
            s.check("a", Ok::<(), Failure>(()));
            s.skip("b", "n/a");
            s.end()
        });
        assert!(ok);
    }

    #[test]
    fn plan_mismatch_fails() {
        let (ok, text) = output(|buf| {
            let mut s = Suite::with_output(buf, "x", 2);
            s.check("a", Ok::<(), String>(()));
            s.end()
        });
        assert!(!ok);
        assert!(text.contains("# planned 2 tests but 1 ran\n"), "{text}");
    }

    #[test]
    fn names_are_sanitized() {
        let (_, text) = output(|buf| {
            let mut s = Suite::with_output(buf, "a#b\nc", 2);
            s.check("x # y\r\nz", Ok::<(), String>(()));
            s.check("  ", Ok::<(), String>(()));
            s.end()
        });
        assert!(text.contains("# Subtest: a_b c\n"), "{text}");
        assert!(text.contains("ok 1 x _ y  z\n"), "{text}");
        assert!(text.contains("ok 2 unnamed\n"), "{text}");
    }

    #[test]
    fn diag_prefixes_every_line() {
        let (_, text) = output(|buf| {
            let mut s = Suite::with_output(buf, "x", 0);
            s.diag("one\n\ntwo");
            s.diag("");
            s.end()
        });
        assert!(text.contains("# one\n#\n# two\n#\n"), "{text}");
    }

    fn passes() -> TestResult {
        Ok(())
    }
    fn fails() -> TestResult {
        let n = 1;
        ensure!(n == 2, "expected 2, got {n}");
        Ok(())
    }
    fn skips() -> TestResult {
        Err(skip("no device"))
    }
    fn question_mark() -> TestResult {
        Err::<(), String>("from string".to_string())?;
        Ok(())
    }
    fn panics() -> TestResult {
        let v: Vec<u8> = Vec::new();
        if v.is_empty() {
            panic!("boom {}", 42);
        }
        Ok(())
    }

    #[test]
    fn table_runner_reports_each_kind() {
        let tests: &[(&str, Test)] = &[
            ("passes", passes),
            ("fails", fails),
            ("skips", skips),
            ("question_mark", question_mark),
            ("panics", panics),
            ("passes_after_panic", passes),
        ];
        let (ok, text) = output(|buf| run_with(buf, "table", tests));
        assert!(!ok);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[..3], ["KTAP version 1", "# Subtest: table", "1..6"]);
        assert_eq!(lines[3], "ok 1 passes");
        assert_eq!(lines[4], "not ok 2 fails # expected 2, got 1");
        assert_eq!(lines[5], "ok 3 skips # SKIP no device");
        assert_eq!(lines[6], "not ok 4 question_mark # from string");
        assert!(
            lines[7].starts_with("not ok 5 panics # panicked at ")
                && lines[7].contains("lib.rs:")
                && lines[7].ends_with(": boom 42"),
            "{}",
            lines[7]
        );
        assert_eq!(lines[8], "ok 6 passes_after_panic");
        assert_eq!(lines[9], "# table: pass:2 fail:3 skip:1 total:6");
    }

    #[test]
    fn table_runner_success() {
        let tests: &[(&str, Test)] = &[("a", passes), ("b", skips)];
        let (ok, _) = output(|buf| run_with(buf, "t", tests));
        assert!(ok);
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("broken"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_fail_the_suite() {
        let mut s = Suite::with_output(Broken, "x", 1);
        s.check("a", Ok::<(), String>(()));
        assert!(!s.end());
    }
}
