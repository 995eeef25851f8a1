//! Classifies one guest run from its three captured serial streams.
//!
//! A run has a kernel console (ttyS0), program output (ttyS1, KTAP for test
//! runs) and a status channel (ttyS2) on which our init writes
//! `DET-INIT start uptime_ms=<n>`, `DET-INIT error: <message>` and
//! `DET-EXIT status=<n>` (the boot protocol's lines, `bootproto::status`).
//! For single-stream runs the whole stream may be
//! passed as `console` (with `output` and `status` empty): status lines and
//! KTAP are then looked for in the console text too.
//!
//! [`classify`] applies these rules, first match wins:
//!
//! 1. kernel reports on the console (panic, oops, `BUG:`, `WARNING:`,
//!    KASAN/UBSAN, lockdep, hung task, RCU stall, soft lockup, kmemleak; see
//!    [`kernel_reports`]) → [`Verdict::Crashed`], even if all tests passed;
//!    except a panic before init started → [`Verdict::BootError`] with the
//!    panic line as reason;
//! 2. init never started → [`Verdict::BootError`];
//! 3. the run timed out → [`Verdict::Timeout`];
//! 4. init reported an error → [`Verdict::Failed`];
//! 5. no exit status reported → [`Verdict::Crashed`];
//! 6. with KTAP expected: a KTAP report that is not ok (failures, structural
//!    problems, no results) or a non-zero exit status → [`Verdict::Failed`];
//!    without: a non-zero exit status → [`Verdict::Failed`]; otherwise
//!    [`Verdict::Passed`].

use std::fmt;

use crate::ktap::{self, Report};

/// The overall result of one guest run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Everything ran and passed.
    Passed,
    /// Tests failed, init reported an error, or the program exited non-zero.
    Failed,
    /// The kernel never reached our init.
    BootError,
    /// The kernel reported a bug, or the guest died without an exit status.
    Crashed,
    /// The run was killed after its time limit, after init started.
    Timeout,
}

impl Verdict {
    /// True only for [`Verdict::Passed`].
    pub fn is_pass(self) -> bool {
        self == Verdict::Passed
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Passed => "PASSED",
            Verdict::Failed => "FAILED",
            Verdict::BootError => "BOOT_ERROR",
            Verdict::Crashed => "CRASHED",
            Verdict::Timeout => "TIMEOUT",
        })
    }
}

/// The captured text of one run, plus how QEMU ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunLogs<'a> {
    /// Kernel console (ttyS0), or the whole stream of a single-stream run.
    pub console: &'a str,
    /// Program output (ttyS1); KTAP for test runs.
    pub output: &'a str,
    /// Status channel (ttyS2).
    pub status: &'a str,
    /// True if the host killed the guest at its time limit.
    pub timed_out: bool,
    /// QEMU's exit code; `None` if it was killed.
    pub qemu_exit: Option<i32>,
}

/// What [`classify`] concluded about a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The verdict.
    pub verdict: Verdict,
    /// Why, in one human-readable line.
    pub reason: String,
    /// Exit status from `DET-EXIT status=<n>` (128+signal for a signal
    /// death), if reported.
    pub exit_status: Option<i32>,
    /// CLOCK_BOOTTIME in ms when init started, if it did.
    pub init_uptime_ms: Option<u64>,
    /// First line of each kernel report on the console (see
    /// [`kernel_reports`]).
    pub kernel_reports: Vec<String>,
    /// The parsed KTAP, when [`classify`] was asked to expect it (also on
    /// crashes and timeouts, for partial results).
    pub ktap: Option<Report>,
}

/// Classifies one run (see the module documentation for the rules).
///
/// `expect_ktap` says the program output is a KTAP test report. KTAP is read
/// from `logs.output`, or from `logs.console` if `output` is blank.
pub fn classify(logs: &RunLogs, expect_ktap: bool) -> Classification {
    let status = find_status(logs);
    let reports = kernel_reports(logs.console);
    let ktap = expect_ktap.then(|| {
        if logs.output.trim().is_empty() {
            ktap::parse(logs.console)
        } else {
            ktap::parse(logs.output)
        }
    });
    let (verdict, reason) = decide(logs, &status, &reports, ktap.as_ref());
    Classification {
        verdict,
        reason,
        exit_status: status.exit,
        init_uptime_ms: status.uptime_ms,
        kernel_reports: reports,
        ktap,
    }
}

fn decide(
    logs: &RunLogs,
    status: &Status,
    reports: &[String],
    ktap: Option<&Report>,
) -> (Verdict, String) {
    // 1. Kernel reports.
    if let Some(first) = reports.first() {
        if !status.started {
            if let Some(panic) = reports.iter().find(|r| r.starts_with(PANIC)) {
                return (Verdict::BootError, panic.clone());
            }
        }
        let reason = match reports.len() {
            1 => first.clone(),
            2 => format!("{first} (+1 more kernel report)"),
            n => format!("{first} (+{} more kernel reports)", n - 1),
        };
        return (Verdict::Crashed, reason);
    }

    // 2. Init never started.
    if !status.started {
        let mut reason = if logs.timed_out {
            "no init within the time limit".to_owned()
        } else {
            match logs.qemu_exit {
                Some(code) => {
                    format!("kernel did not reach init: QEMU exited with status {code} before init")
                }
                None => "kernel did not reach init: QEMU was killed before init".to_owned(),
            }
        };
        match last_console_line(logs.console) {
            Some(line) => reason.push_str(&format!(" (last console line: {line})")),
            None => reason.push_str(" (no console output)"),
        }
        return (Verdict::BootError, reason);
    }

    // 3. Timeout.
    if logs.timed_out {
        let mut reason = match status.exit {
            Some(code) => format!(
                "guest reported {} but did not power off within the time limit",
                describe_exit(code)
            ),
            None => "no exit status within the time limit".to_owned(),
        };
        if let Some(last) = ktap.and_then(|k| k.results.last()) {
            reason.push_str(&format!("; last test result: {}", last.name));
        }
        return (Verdict::Timeout, reason);
    }

    // 4. Init errors.
    if let Some(first) = status.errors.first() {
        let mut reason = format!("init error: {first}");
        if status.errors.len() > 1 {
            reason.push_str(&format!(" (+{} more)", status.errors.len() - 1));
        }
        return (Verdict::Failed, reason);
    }

    // 5. No exit status.
    let Some(exit) = status.exit else {
        let how = match logs.qemu_exit {
            Some(code) => format!("QEMU exited with status {code}"),
            None => "QEMU was killed".to_owned(),
        };
        return (
            Verdict::Crashed,
            format!("guest stopped without reporting an exit status ({how})"),
        );
    };

    // 6. Results.
    let Some(report) = ktap else {
        return if exit == 0 {
            (Verdict::Passed, "exit status 0".to_owned())
        } else {
            (Verdict::Failed, describe_exit(exit))
        };
    };
    if report.failed() > 0 {
        let names: Vec<&str> = report.failures().map(|r| r.name.as_str()).collect();
        let mut reason = format!(
            "{} of {} tests failed: {}",
            names.len(),
            report.results.len(),
            names[..names.len().min(3)].join(", ")
        );
        if names.len() > 3 {
            reason.push_str(", ...");
        }
        return (Verdict::Failed, reason);
    }
    if let Some(problem) = report.problems.first() {
        let mut reason = format!("KTAP: {problem}");
        if report.problems.len() > 1 {
            reason.push_str(&format!(" (+{} more problems)", report.problems.len() - 1));
        }
        return (Verdict::Failed, reason);
    }
    if report.results.is_empty() {
        return (Verdict::Failed, "KTAP: no test results".to_owned());
    }
    if exit != 0 {
        return (
            Verdict::Failed,
            format!("all tests passed but {}", describe_exit(exit)),
        );
    }
    let reason = if report.skipped() > 0 {
        format!("{} passed, {} skipped", report.passed(), report.skipped())
    } else {
        format!("{} passed", report.passed())
    };
    (Verdict::Passed, reason)
}

/// Parsed status channel.
#[derive(Debug, Default, PartialEq, Eq)]
struct Status {
    started: bool,
    uptime_ms: Option<u64>,
    exit: Option<i32>,
    errors: Vec<String>,
}

impl Status {
    fn is_empty(&self) -> bool {
        !self.started && self.exit.is_none() && self.errors.is_empty()
    }
}

/// Reads the status channel, falling back to the console and then the
/// output for single-stream runs.
fn find_status(logs: &RunLogs) -> Status {
    for text in [logs.status, logs.console, logs.output] {
        let status = scan_status(text);
        if !status.is_empty() {
            return status;
        }
    }
    Status::default()
}

fn scan_status(text: &str) -> Status {
    use bootproto::status::Status as Line;
    let mut status = Status::default();
    for line in text.lines().filter_map(Line::find) {
        match line {
            Line::Start { uptime_ms } => {
                if !status.started {
                    status.started = true;
                    status.uptime_ms = uptime_ms;
                }
            }
            Line::Error(message) => status.errors.push(message.to_owned()),
            Line::Exit(exit) => {
                if status.exit.is_none() {
                    status.exit = exit;
                }
            }
        }
    }
    status
}

/// The guest's speed factor, from init's `# DET-SPEED scale=<f>` line on
/// the output channel: how much slower this guest runs than the
/// reference, at least 1.
pub use bootproto::status::speed_scale;

/// Reads the status channel: `(init uptime in ms, exit status, init
/// errors)`.
///
/// The uptime is `None` if there is no `DET-INIT start` line (or its number
/// is unreadable); the exit status is `None` if there is no `DET-EXIT` line.
/// Lines may carry noise before the `DET-` marker.
pub fn status_lines(status: &str) -> (Option<u64>, Option<i32>, Vec<String>) {
    let s = scan_status(status);
    (s.uptime_ms, s.exit, s.errors)
}

const PANIC: &str = "Kernel panic - not syncing";

/// Finds kernel reports in console text; returns the first line of each,
/// without its timestamp, in order, without duplicates (at most 32).
///
/// A report starts with a line whose message (after the `[ time]` stamp and
/// an optional `[ T1]` caller id) begins with one of: `Kernel panic - not
/// syncing`, `Oops:`, `Internal error: Oops`, `general protection fault`,
/// `BUG:` (KASAN, KFENCE, NULL pointer, sleeping in atomic, ...), `kernel
/// BUG at`, `Unable to handle kernel`, `WARNING:` (WARN_ON and lockdep),
/// `UBSAN:`, `INFO: task ... blocked for more than`, `[rcu: ]INFO: ...
/// detected stall(s)`, `kmemleak: ... suspected memory leak`, `watchdog:
/// BUG: soft lockup`, `watchdog: Watchdog detected hard LOCKUP`; and the
/// line right after `------------[ cut here ]------------`. Words like
/// "bug" or "WARNING" elsewhere in a line are not reports. The first
/// `Oops:` or `general protection fault` line within a few lines after a
/// `BUG:`/`kernel BUG at`/`Unable to handle kernel` line is part of that
/// report.
///
/// If the console has timestamped lines, only those are considered, so
/// that program output mixed into a single stream is not mistaken for the
/// kernel's.
pub fn kernel_reports(console: &str) -> Vec<String> {
    const MAX_REPORTS: usize = 32;
    /// How many lines after a `BUG:` line an `Oops:` still belongs to it.
    const OOPS_WINDOW: usize = 12;

    let stamped = console.lines().any(|l| kernel_message(l).is_some());
    let mut reports: Vec<String> = Vec::new();
    let mut after_cut_here = false;
    let mut last_bug_line: Option<usize> = None;
    for (index, line) in console.lines().enumerate() {
        let message = match kernel_message(line) {
            Some(message) => message,
            None if stamped => continue,
            None => line,
        };
        let message = message.trim();
        if message.is_empty() {
            continue;
        }
        if message.starts_with("------------[ cut here ]------------") {
            after_cut_here = true;
            continue;
        }
        let kind = report_kind(message);
        let is_report = match kind {
            Some(ReportKind::Oops) => {
                // Each `BUG:` line absorbs at most one following oops line.
                last_bug_line
                    .take()
                    .is_none_or(|bug| index.saturating_sub(bug) > OOPS_WINDOW)
            }
            Some(_) => true,
            None => after_cut_here,
        };
        after_cut_here = false;
        if kind == Some(ReportKind::Bug) {
            last_bug_line = Some(index);
        }
        if is_report && !reports.iter().any(|r| r == message) {
            reports.push(message.to_owned());
            if reports.len() == MAX_REPORTS {
                break;
            }
        }
    }
    reports
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReportKind {
    /// A report that may be followed by an oops line.
    Bug,
    /// An oops header, part of a preceding `BUG:` report if there is one.
    Oops,
    /// Anything else.
    Other,
}

fn report_kind(message: &str) -> Option<ReportKind> {
    let starts = |prefix: &str| message.starts_with(prefix);
    if starts("BUG:") || starts("kernel BUG at") || starts("Unable to handle kernel") {
        Some(ReportKind::Bug)
    } else if starts("Oops:")
        || starts("Internal error: Oops")
        || starts("general protection fault")
    {
        Some(ReportKind::Oops)
    } else if starts(PANIC)
        || starts("WARNING:")
        || starts("UBSAN:")
        || starts("watchdog: BUG: soft lockup")
        || starts("watchdog: Watchdog detected hard LOCKUP")
        || (starts("INFO: task ") && message.contains("blocked for more than"))
        || ((starts("INFO: ") || starts("rcu: INFO: ")) && message.contains("detected stall"))
        || (starts("kmemleak:") && message.contains("suspected memory leak"))
    {
        Some(ReportKind::Other)
    } else {
        None
    }
}

/// The message of a timestamped kernel line: the text after `[ 1.234567]`
/// and an optional caller id such as `[    T1]` or `[  C0]`.
fn kernel_message(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('[')?;
    let close = rest.find(']')?;
    let stamp = rest[..close].trim_start();
    let (secs, frac) = stamp.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(secs) || !digits(frac) {
        return None;
    }
    let mut message = &rest[close + 1..];
    if let Some(caller) = message.strip_prefix('[') {
        if let Some(end) = caller.find(']') {
            let id = caller[..end].trim_start();
            if id.len() > 1 && (id.starts_with('T') || id.starts_with('C')) && digits(&id[1..]) {
                message = &caller[end + 1..];
            }
        }
    }
    Some(message.trim_end_matches('\r'))
}

/// The last non-blank console line, timestamp removed, shortened.
fn last_console_line(console: &str) -> Option<String> {
    const MAX: usize = 120;
    let line = console
        .lines()
        .rev()
        .map(|l| kernel_message(l).unwrap_or(l).trim())
        .find(|l| !l.is_empty())?;
    Some(match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_owned(),
    })
}

/// `exit status N`, with the signal named for 128+N statuses.
fn describe_exit(code: i32) -> String {
    const SIGNALS: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    let signal = code
        .checked_sub(129)
        .and_then(|i| usize::try_from(i).ok())
        .and_then(|i| SIGNALS.get(i));
    match signal {
        Some(name) => format!("exit status {code} ({name})"),
        None => format!("exit status {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_line_is_read_and_checked() {
        let out = "KTAP version 1\n1..3\n# DET-SPEED scale=2.35 work_ms=587 reference_ms=250\n";
        assert_eq!(speed_scale(out), Some(2.35));
        assert_eq!(speed_scale("# DET-SPEED scale=0.5\n"), None);
        assert_eq!(speed_scale("# DET-SPEED scale=NaN\n"), None);
        assert_eq!(speed_scale("KTAP version 1\n"), None);
    }

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../tests/console/", $name, ".log"))
        };
    }

    /// The three streams of a stored run, QEMU having exited by itself.
    macro_rules! run {
        ($name:literal) => {
            RunLogs {
                console: include_str!(concat!("../tests/console/", $name, ".console.log")),
                output: include_str!(concat!("../tests/console/", $name, ".output.log")),
                status: include_str!(concat!("../tests/console/", $name, ".status.log")),
                timed_out: false,
                qemu_exit: Some(0),
            }
        };
    }

    #[test]
    fn passing_run() {
        let c = classify(&run!("pass"), true);
        assert_eq!(c.verdict, Verdict::Passed, "{c:?}");
        assert_eq!(c.reason, "8 passed, 1 skipped");
        assert_eq!(c.exit_status, Some(0));
        assert_eq!(c.init_uptime_ms, Some(671));
        assert_eq!(c.kernel_reports, Vec::<String>::new());
        assert_eq!(c.ktap.map(|k| k.results.len()), Some(9));
    }

    /// A real run of the test profile: init names each block, kselftest
    /// programs (TAP 13) and ktap-crate programs (which name their block
    /// again) side by side.
    #[test]
    fn real_guest_run() {
        let c = classify(&run!("guest"), true);
        assert_eq!(c.verdict, Verdict::Passed, "{c:?}");
        let ktap = c.ktap.unwrap_or_default();
        assert_eq!((ktap.passed(), ktap.failed(), ktap.skipped()), (49, 0, 1));
        assert!(ktap.problems.is_empty(), "{:?}", ktap.problems);
        assert!(ktap.results.iter().any(|r| r.name == "boot.proc_mounted"));
        assert!(ktap
            .results
            .iter()
            .any(|r| r.name == "det_enforce.global.every_syscall_number_stops"));
    }

    #[test]
    fn failing_run() {
        let c = classify(&run!("fail"), true);
        assert_eq!(c.verdict, Verdict::Failed);
        assert_eq!(c.reason, "2 of 6 tests failed: boot.cpus_online, det_basic");
        assert_eq!(c.exit_status, Some(1));
        assert_eq!(c.init_uptime_ms, Some(702));
        // A user-space segfault message is not a kernel report.
        assert_eq!(c.kernel_reports, Vec::<String>::new());
    }

    #[test]
    fn panic_cuts_the_output() {
        let c = classify(&run!("panic"), true);
        assert_eq!(c.verdict, Verdict::Crashed);
        assert_eq!(
            c.reason,
            "kernel BUG at kernel/det/replay.c:214! (+1 more kernel report)"
        );
        assert_eq!(
            c.kernel_reports,
            [
                "kernel BUG at kernel/det/replay.c:214!",
                "Kernel panic - not syncing: Fatal exception",
            ]
        );
        assert_eq!(c.exit_status, None);
        assert_eq!(c.init_uptime_ms, Some(669));
        let ktap = c.ktap.unwrap_or_default();
        assert_eq!(ktap.passed(), 4);
        assert_eq!(ktap.problems.len(), 3);
    }

    #[test]
    fn missing_plan_fails() {
        let logs = RunLogs {
            console: fixture!("pass.console"),
            output: fixture!("noplan.output"),
            status: fixture!("noplan.status"),
            timed_out: false,
            qemu_exit: Some(0),
        };
        let c = classify(&logs, true);
        assert_eq!(c.verdict, Verdict::Failed);
        assert_eq!(
            c.reason,
            "KTAP: missing plan in 'det_basic' (+1 more problems)"
        );
        assert_eq!(c.exit_status, Some(0));
    }

    #[test]
    fn no_output_at_all() {
        let mut logs = run!("empty");
        logs.qemu_exit = Some(1);
        let c = classify(&logs, true);
        assert_eq!(c.verdict, Verdict::BootError);
        assert_eq!(
            c.reason,
            "kernel did not reach init: QEMU exited with status 1 before init (no console output)"
        );
        assert_eq!((c.exit_status, c.init_uptime_ms), (None, None));

        logs.qemu_exit = None;
        let c = classify(&logs, false);
        assert_eq!(c.verdict, Verdict::BootError);
        assert_eq!(
            c.reason,
            "kernel did not reach init: QEMU was killed before init (no console output)"
        );
        assert_eq!(c.ktap, None);

        logs.timed_out = true;
        let c = classify(&logs, true);
        assert_eq!(c.verdict, Verdict::BootError);
        assert_eq!(
            c.reason,
            "no init within the time limit (no console output)"
        );
    }

    #[test]
    fn boot_hangs_before_init() {
        let logs = RunLogs {
            console: fixture!("booterr.console")
                .split("[    0.644870]")
                .next()
                .unwrap_or(""),
            timed_out: true,
            ..RunLogs::default()
        };
        let c = classify(&logs, true);
        assert_eq!(c.verdict, Verdict::BootError);
        assert_eq!(
            c.reason,
            "no init within the time limit (last console line: clk: Disabling unused clocks)"
        );
    }

    #[test]
    fn oops_while_tests_pass() {
        let c = classify(&run!("oops"), true);
        assert_eq!(c.verdict, Verdict::Crashed);
        assert_eq!(
            c.reason,
            "BUG: kernel NULL pointer dereference, address: 0000000000000010"
        );
        assert_eq!(
            c.kernel_reports,
            ["BUG: kernel NULL pointer dereference, address: 0000000000000010"]
        );
        assert_eq!(c.exit_status, Some(0));
        assert!(c.ktap.is_some_and(|k| k.ok()));
    }

    #[test]
    fn panic_before_init_is_a_boot_error() {
        let c = classify(&run!("booterr"), true);
        assert_eq!(c.verdict, Verdict::BootError);
        assert_eq!(
            c.reason,
            "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"
        );
        assert_eq!(
            c.kernel_reports,
            ["Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"]
        );
        assert_eq!(c.init_uptime_ms, None);
    }

    #[test]
    fn kasan_report() {
        let c = classify(&run!("kasan"), true);
        assert_eq!(c.verdict, Verdict::Crashed);
        assert_eq!(
            c.kernel_reports,
            ["BUG: KASAN: slab-use-after-free in det_event_log_append+0x1c4/0x2a0"]
        );
        assert_eq!(
            c.reason,
            "BUG: KASAN: slab-use-after-free in det_event_log_append+0x1c4/0x2a0"
        );
    }

    #[test]
    fn single_stream() {
        let logs = RunLogs {
            console: fixture!("single"),
            qemu_exit: Some(0),
            ..RunLogs::default()
        };
        let c = classify(&logs, true);
        assert_eq!(c.verdict, Verdict::Failed, "{c:?}");
        assert_eq!(c.reason, "1 of 6 tests failed: det_basic.replay");
        assert_eq!(c.exit_status, Some(1));
        assert_eq!(c.init_uptime_ms, Some(652));
        assert_eq!(c.kernel_reports, Vec::<String>::new());
    }

    #[test]
    fn timeout() {
        let mut logs = run!("timeout");
        logs.timed_out = true;
        logs.qemu_exit = None;
        let c = classify(&logs, true);
        assert_eq!(c.verdict, Verdict::Timeout);
        assert_eq!(
            c.reason,
            "no exit status within the time limit; last test result: det_sched.yield_order"
        );
        assert_eq!(c.init_uptime_ms, Some(683));

        // Exit reported, but power-off never happened.
        logs.status = "DET-INIT start uptime_ms=683\nDET-EXIT status=0\n";
        let c = classify(&logs, false);
        assert_eq!(c.verdict, Verdict::Timeout);
        assert_eq!(
            c.reason,
            "guest reported exit status 0 but did not power off within the time limit"
        );
    }

    #[test]
    fn a_kernel_report_beats_a_timeout() {
        let logs = RunLogs {
            console: "[   30.1] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [det_sched:80]\n",
            status: "DET-INIT start uptime_ms=600\n",
            timed_out: true,
            ..RunLogs::default()
        };
        let c = classify(&logs, true);
        assert_eq!(c.verdict, Verdict::Crashed);
        assert_eq!(
            c.reason,
            "watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [det_sched:80]"
        );
    }

    #[test]
    fn init_errors_and_missing_exit() {
        let mut logs = RunLogs {
            console: fixture!("pass.console"),
            status: "DET-INIT start uptime_ms=5\nDET-INIT error: mount /proc: EPERM\nDET-INIT error: second\n",
            qemu_exit: Some(0),
            ..RunLogs::default()
        };
        let c = classify(&logs, false);
        assert_eq!(c.verdict, Verdict::Failed);
        assert_eq!(c.reason, "init error: mount /proc: EPERM (+1 more)");

        logs.status = "DET-INIT start uptime_ms=5\n";
        let c = classify(&logs, false);
        assert_eq!(c.verdict, Verdict::Crashed);
        assert_eq!(
            c.reason,
            "guest stopped without reporting an exit status (QEMU exited with status 0)"
        );
    }

    #[test]
    fn exit_status_rules() {
        let mut logs = RunLogs {
            status: "DET-INIT start uptime_ms=5\nDET-EXIT status=0\n",
            qemu_exit: Some(0),
            ..RunLogs::default()
        };
        let c = classify(&logs, false);
        assert_eq!(
            (c.verdict, c.reason.as_str()),
            (Verdict::Passed, "exit status 0")
        );

        logs.status = "DET-INIT start uptime_ms=5\nDET-EXIT status=139\n";
        let c = classify(&logs, false);
        assert_eq!(
            (c.verdict, c.reason.as_str()),
            (Verdict::Failed, "exit status 139 (SIGSEGV)")
        );

        // KTAP all good, but the exit status says otherwise.
        logs.output = "KTAP version 1\n1..1\nok 1 a\n";
        logs.status = "DET-INIT start uptime_ms=5\nDET-EXIT status=2\n";
        let c = classify(&logs, true);
        assert_eq!(
            (c.verdict, c.reason.as_str()),
            (Verdict::Failed, "all tests passed but exit status 2")
        );

        // Exit 0 but no KTAP results.
        logs.output = "hello\n";
        logs.status = "DET-INIT start uptime_ms=5\nDET-EXIT status=0\n";
        let c = classify(&logs, true);
        assert_eq!(
            (c.verdict, c.reason.as_str()),
            (Verdict::Failed, "KTAP: no KTAP output")
        );
        logs.output = "KTAP version 1\n1..0\n";
        let c = classify(&logs, true);
        assert_eq!(
            (c.verdict, c.reason.as_str()),
            (Verdict::Failed, "KTAP: no test results")
        );
    }

    #[test]
    fn reports_before_and_after_init() {
        // A warning during boot, then init runs fine: still a crash.
        let logs = RunLogs {
            console:
                "[    0.5] WARNING: CPU: 0 PID: 1 at kernel/det/core.c:88 det_init+0x4c/0x90\n",
            status: "DET-INIT start uptime_ms=5\nDET-EXIT status=0\n",
            output: "KTAP version 1\n1..1\nok 1 a\n",
            qemu_exit: Some(0),
            ..RunLogs::default()
        };
        let c = classify(&logs, true);
        assert_eq!(c.verdict, Verdict::Crashed);
        assert_eq!(
            c.reason,
            "WARNING: CPU: 0 PID: 1 at kernel/det/core.c:88 det_init+0x4c/0x90"
        );
        // Init itself dying after it started is a crash, not a boot error.
        let logs = RunLogs {
            console: "[    2.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b\n",
            status: "DET-INIT start uptime_ms=5\n",
            qemu_exit: Some(0),
            ..RunLogs::default()
        };
        let c = classify(&logs, true);
        assert_eq!(c.verdict, Verdict::Crashed);
        assert_eq!(
            c.reason,
            "Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b"
        );
    }

    #[test]
    fn every_report_header_is_found() {
        let console = "\
[    1.000000] ------------[ cut here ]------------
[    1.000001] WARNING: CPU: 1 PID: 74 at kernel/det/replay.c:99 det_replay_next+0x50/0x1e0
[    1.000002] ---[ end trace 0000000000000000 ]---
[    1.100000] ------------[ cut here ]------------
[    1.100001] list_del corruption, ffff888006a3c000->next is LIST_POISON1 (dead000000000100)
[    1.200000] BUG: sleeping function called from invalid context at kernel/locking/mutex.c:585
[    1.300000] BUG: unable to handle page fault for address: ffffffffffffffe8
[    1.300001] #PF: supervisor read access in kernel mode
[    1.300002] Oops: Oops: 0000 [#1] PREEMPT SMP NOPTI
[    1.400000] Oops: general protection fault, probably for non-canonical address 0xdffffc0000000000: 0000 [#2] PREEMPT SMP KASAN NOPTI
[    1.500000] UBSAN: array-index-out-of-bounds in kernel/det/log.c:41:9
[    1.600000] WARNING: possible circular locking dependency detected
[    1.700000] WARNING: possible recursive locking detected
[    1.800000] INFO: task det_sched:80 blocked for more than 122 seconds.
[    1.900000] kmemleak: 3 new suspected memory leaks (see /sys/kernel/debug/kmemleak)
[    2.000000] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [det_sched:80]
[    2.100000] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:
[    2.200000] rcu: INFO: rcu_sched self-detected stall on CPU
[    2.300000][    T1] BUG: KFENCE: out-of-bounds read in det_probe+0x20/0x40
[    2.400000] Kernel panic - not syncing: Fatal exception
[    2.500000] Kernel panic - not syncing: Fatal exception
";
        assert_eq!(
            kernel_reports(console),
            [
                "WARNING: CPU: 1 PID: 74 at kernel/det/replay.c:99 det_replay_next+0x50/0x1e0",
                "list_del corruption, ffff888006a3c000->next is LIST_POISON1 (dead000000000100)",
                "BUG: sleeping function called from invalid context at kernel/locking/mutex.c:585",
                "BUG: unable to handle page fault for address: ffffffffffffffe8",
                "Oops: general protection fault, probably for non-canonical address 0xdffffc0000000000: 0000 [#2] PREEMPT SMP KASAN NOPTI",
                "UBSAN: array-index-out-of-bounds in kernel/det/log.c:41:9",
                "WARNING: possible circular locking dependency detected",
                "WARNING: possible recursive locking detected",
                "INFO: task det_sched:80 blocked for more than 122 seconds.",
                "kmemleak: 3 new suspected memory leaks (see /sys/kernel/debug/kmemleak)",
                "watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [det_sched:80]",
                "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
                "rcu: INFO: rcu_sched self-detected stall on CPU",
                "BUG: KFENCE: out-of-bounds read in det_probe+0x20/0x40",
                "Kernel panic - not syncing: Fatal exception",
            ]
        );
    }

    #[test]
    fn harmless_lines_are_not_reports() {
        let console = "\
[    0.000000] x86/fpu: Supporting XSAVE feature 0x001: 'x87 floating point registers'
[    0.004398] ACPI BIOS Warning (bug): Incorrect checksum in table [BGRT] - 0x12, should be 0x34 (20240827/utcksum-58)
[    0.141120] [Firmware Bug]: TSC_DEADLINE disabled due to Errata; please update microcode
[    0.142252] Spectre V2 : WARNING: Unprivileged eBPF is enabled with eIBRS on, data leaks possible via Spectre v2 BHB attacks!
[    0.142253] RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable to RETBleed attacks, data leaks possible!
[    0.150201] SELinux:  Initializing.
[    0.331457] kmemleak: Kernel memory leak detector initialized (mem pool available: 15711)
[    0.400000] INFO: NMI handler (perf_event_nmi_handler) took too long to run: 1.234 msecs
[    0.500000] Warning: unable to open an initial console.
[    0.600000] rcu: RCU calculated value of scheduler-enlistment delay is 100 jiffies.
[    0.700000] Kernel command line: console=ttyS0 panic=-1 oops=panic
[    0.800000] det: self-test for BUG: and WARNING: detection skipped
    # BUG: this is test output in a single stream, not a kernel line
BUG: neither is this
DET-INIT error: BUG: not a kernel report
";
        assert_eq!(kernel_reports(console), Vec::<String>::new());
        for name in [
            fixture!("pass.console"),
            fixture!("fail.console"),
            fixture!("timeout.console"),
            fixture!("single"),
        ] {
            assert_eq!(kernel_reports(name), Vec::<String>::new());
        }
    }

    #[test]
    fn console_without_timestamps() {
        let console = "Booting\nRun /init as init process\nBUG: kernel NULL pointer dereference, address: 0000000000000000\nOops: Oops: 0002 [#1] SMP\r\n";
        assert_eq!(
            kernel_reports(console),
            ["BUG: kernel NULL pointer dereference, address: 0000000000000000"]
        );
    }

    #[test]
    fn status_channel() {
        assert_eq!(
            status_lines(fixture!("pass.status")),
            (Some(671), Some(0), Vec::new())
        );
        assert_eq!(
            status_lines("noise DET-INIT start uptime_ms=12x\r\nDET-INIT error:  bad thing \r\nDET-EXIT status=-1\r\nDET-EXIT status=3\n"),
            (Some(12), Some(-1), vec!["bad thing".to_owned()])
        );
        assert_eq!(
            status_lines("DET-INIT start uptime_ms=\nDET-EXIT status="),
            (None, None, Vec::new())
        );
        assert_eq!(
            status_lines("DET-EXIT status=99999999999"),
            (None, None, Vec::new())
        );
        assert_eq!(status_lines(""), (None, None, Vec::new()));
        // A start line with an unreadable uptime still counts as started.
        let logs = RunLogs {
            status: "DET-INIT start\nDET-EXIT status=0\n",
            qemu_exit: Some(0),
            ..RunLogs::default()
        };
        let c = classify(&logs, false);
        assert_eq!((c.verdict, c.init_uptime_ms), (Verdict::Passed, None));
    }

    #[test]
    fn display_and_helpers() {
        let names: Vec<String> = [
            Verdict::Passed,
            Verdict::Failed,
            Verdict::BootError,
            Verdict::Crashed,
            Verdict::Timeout,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            names,
            ["PASSED", "FAILED", "BOOT_ERROR", "CRASHED", "TIMEOUT"]
        );
        assert!(Verdict::Passed.is_pass() && !Verdict::Timeout.is_pass());
        assert_eq!(describe_exit(137), "exit status 137 (SIGKILL)");
        assert_eq!(describe_exit(128), "exit status 128");
        assert_eq!(describe_exit(i32::MIN), format!("exit status {}", i32::MIN));
        assert_eq!(kernel_message("[    1.5] x"), Some(" x"));
        assert_eq!(kernel_message("[    1.5][  C1] x"), Some(" x"));
        assert_eq!(kernel_message("[ x.5] x"), None);
        assert_eq!(kernel_message("[é"), None);
    }

    #[test]
    fn arbitrary_text_never_panics() {
        let pieces = [
            "[",
            "]",
            "[    1.2]",
            "[  T1]",
            "DET-INIT start uptime_ms=",
            "DET-EXIT status=",
            "-",
            "99999999999999999999",
            "BUG:",
            "Oops:",
            "------------[ cut here ]------------",
            "\n",
            "\r\n",
            "é",
            "Kernel panic - not syncing",
            "KTAP version 1",
            "ok 1 a",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..1000 {
            let mut text = String::new();
            for _ in 0..30 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push_str(pieces[(state % pieces.len() as u64) as usize]);
            }
            let logs = RunLogs {
                console: &text,
                output: &text,
                status: &text,
                timed_out: state.is_multiple_of(2),
                qemu_exit: None,
            };
            let _ = classify(&logs, state.is_multiple_of(3));
        }
    }
}
