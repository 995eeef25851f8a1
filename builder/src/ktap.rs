//! Parser for KTAP (and TAP 13/14) test output read back from a guest.
//!
//! The format is the one described in the kernel's
//! `Documentation/dev-tools/ktap.rst`: a `KTAP version 1` (or `TAP version
//! 13`/`14`) header, a plan `1..N` (at the start or at the end of a block),
//! result lines `ok N name # directive` / `not ok N name # directive`,
//! diagnostic lines `# ...`, and nested subtests indented by four spaces,
//! optionally introduced by `# Subtest: name`, each followed by the result
//! line of its parent.
//!
//! [`parse`] never fails and never panics: everything it cannot make sense of
//! becomes a diagnostic or a [`Report::problems`] entry. It accepts noisy
//! text, so it can also be pointed at a single serial stream that mixes the
//! kernel console with test output:
//!
//! * text before the first `KTAP version`/`TAP version` line is ignored;
//! * kernel console lines (starting with a `[    1.234567]` timestamp) and
//!   status-channel lines (`DET-INIT ...`, `DET-EXIT ...`) are ignored
//!   wherever they appear, even inside an indented block (so KTAP printed by
//!   the kernel itself, e.g. KUnit, is *not* picked up from the console);
//! * lines may end in `\r\n`.
//!
//! Directives (the text after an unescaped `#` on a result line) map to
//! outcomes as follows (keywords are case-insensitive):
//!
//! * `# SKIP...` (on `ok` or `not ok`) → [`Outcome::Skip`];
//! * `not ok` with `# TODO` or `# XFAIL` → [`Outcome::Skip`] (an expected
//!   failure is not a failure, but not a pass either);
//! * `ok` with any other directive (including TODO/XFAIL) →
//!   [`Outcome::Pass`];
//! * `not ok` with any other directive → [`Outcome::Fail`].
//!
//! Other text after `#` (e.g. `not ok 2 cpus_online # expected 2, found 1`)
//! is kept in [`TestResult::directive`] and does not change the outcome.
//!
//! Only leaf results are reported (see [`Report::results`]); nesting is
//! flattened into dotted names such as `det_basic.create_child`.

use std::fmt;

/// How a single test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// `ok` without a SKIP directive.
    Pass,
    /// `not ok` without a SKIP/TODO/XFAIL directive.
    Fail,
    /// Any SKIP directive, or `not ok` with a TODO/XFAIL directive.
    Skip,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        })
    }
}

/// One leaf test result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// Dotted path of the enclosing subtest names and the test's own name,
    /// e.g. `det_basic.create_child`. A leading `- ` (TAP 13 style) is
    /// stripped. A test line without a description is named `test N`.
    pub name: String,
    /// Pass, fail or skip (see the module documentation for directives).
    pub outcome: Outcome,
    /// Text after the `#` of the result line, trimmed (`SKIP no tmpfs`), if
    /// any.
    pub directive: Option<String>,
    /// Diagnostic (`# ...`) and unrecognised lines that belong to this
    /// result, trimmed, in output order: the lines right before the result
    /// line, plus lines after the last result of a block. At most
    /// [`MAX_DIAGNOSTICS`] lines are kept, followed by a note.
    pub diagnostics: Vec<String>,
}

impl TestResult {
    /// True for a failure that is a time limit, not a failed assertion:
    /// init's `# timeout` directive on a program it killed, or kselftest's
    /// `Test terminated by timeout` for one test.
    pub fn timed_out(&self) -> bool {
        self.outcome == Outcome::Fail
            && (self
                .directive
                .as_deref()
                .is_some_and(|d| d.to_ascii_lowercase().starts_with("timeout"))
                || self
                    .diagnostics
                    .iter()
                    .any(|d| d.contains("Test terminated by timeout")))
    }
}

/// Maximum number of diagnostic lines kept per result.
pub const MAX_DIAGNOSTICS: usize = 100;

/// Everything learnt from one KTAP stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Leaf results only, flattened, in output order.
    ///
    /// A result line that closes a subtest block with results of its own is
    /// not a leaf (its children are), except when it says `not ok` although
    /// none of its children failed (e.g. the program crashed or exited
    /// non-zero after its last result): then it is recorded as a failing
    /// leaf named after the parent, so the failure is never lost.
    pub results: Vec<TestResult>,
    /// Structural problems, human readable, e.g. `no KTAP output`,
    /// `missing plan in 'boot'`,
    /// `planned 3 tests but saw 2 in 'boot' (output cut off?)`,
    /// `subtest 'boot' has no result line (output cut off?)`,
    /// `test numbers out of order in 'boot' (expected 2, got 3)`,
    /// `Bail out! reason (in 'boot')`.
    pub problems: Vec<String>,
}

impl Report {
    /// Number of passing leaf results.
    pub fn passed(&self) -> usize {
        self.count(Outcome::Pass)
    }

    /// Number of failing leaf results.
    pub fn failed(&self) -> usize {
        self.count(Outcome::Fail)
    }

    /// Number of failing leaf results that are time limits
    /// ([`TestResult::timed_out`]); [`failed`](Report::failed) counts them
    /// too.
    pub fn timed_out(&self) -> usize {
        self.results.iter().filter(|r| r.timed_out()).count()
    }

    /// Number of skipped leaf results.
    pub fn skipped(&self) -> usize {
        self.count(Outcome::Skip)
    }

    /// True if there is at least one result, no failure and no problem.
    pub fn ok(&self) -> bool {
        !self.results.is_empty() && self.failed() == 0 && self.problems.is_empty()
    }

    /// The failing leaf results, in output order.
    pub fn failures(&self) -> impl Iterator<Item = &TestResult> {
        self.results.iter().filter(|r| r.outcome == Outcome::Fail)
    }

    /// One-line summary such as `7 passed, 1 failed, 2 skipped`, with
    /// `, N problems` appended when there are problems.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} passed, {} failed, {} skipped",
            self.passed(),
            self.failed(),
            self.skipped()
        );
        match self.problems.len() {
            0 => {}
            1 => s.push_str(", 1 problem"),
            n => s.push_str(&format!(", {n} problems")),
        }
        s
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.results.iter().filter(|r| r.outcome == outcome).count()
    }
}

/// Parses KTAP out of `text` (see the module documentation).
///
/// Never panics. Cost is linear in the size of `text`. The whole text is
/// taken as final: a subtest that is still open at the end is reported as a
/// problem. While the guest is still running, prefer
/// [`parse_complete_lines`].
pub fn parse(text: &str) -> Report {
    let mut parser = Parser::default();
    for raw in text.split('\n') {
        parser.line(raw);
    }
    parser.finish()
}

/// Like [`parse`], but ignores a last line that does not end in `\n` yet.
///
/// Meant for live progress on a file that the guest is still writing, so a
/// half-written `ok 3 tmp_wri` is not reported as a test named `tmp_wri`.
/// The problems of such a report describe the output *so far* (open blocks
/// are reported as cut off); use only its counts while the guest runs.
pub fn parse_complete_lines(text: &str) -> Report {
    match text.rfind('\n') {
        Some(end) => parse(&text[..end]),
        None => parse(""),
    }
}

// ---------------------------------------------------------------------------
// Line classification

/// What a single line of input is.
#[derive(Debug, PartialEq, Eq)]
enum Line<'a> {
    /// Blank, kernel console or status-channel line: ignored everywhere.
    Noise,
    /// `KTAP version N` / `TAP version N`.
    Version,
    /// `1..N`, optionally followed by `# ...`.
    Plan(usize),
    /// `ok ...` / `not ok ...`.
    Test(TestLine),
    /// `# Subtest: name`.
    Subtest(&'a str),
    /// `Bail out! reason`.
    Bail(&'a str),
    /// Any other line, including `# ...` diagnostics.
    Diag(&'a str),
}

#[derive(Debug, PartialEq, Eq)]
struct TestLine {
    ok: bool,
    number: Option<u64>,
    name: String,
    directive: Option<String>,
}

/// Splits a raw line into its indentation width and its classification.
fn classify_line(raw: &str) -> (usize, Line<'_>) {
    let line = raw.trim_end_matches(['\r', '\n']);
    if is_kernel_line(line) {
        return (0, Line::Noise);
    }
    let content = line.trim_start_matches([' ', '\t']);
    let indent = line[..line.len() - content.len()]
        .chars()
        .map(|c| if c == '\t' { 8 } else { 1 })
        .sum();
    let content = content.trim_end();
    if content.is_empty() || bootproto::status::is_status_line(content) {
        return (indent, Line::Noise);
    }
    (indent, classify_content(content))
}

fn classify_content(content: &str) -> Line<'_> {
    if let Some(rest) = content
        .strip_prefix("KTAP version ")
        .or_else(|| content.strip_prefix("TAP version "))
    {
        if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
            return Line::Version;
        }
        return Line::Diag(content);
    }
    if let Some(rest) = content.strip_prefix("1..") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let after = &rest[digits..];
        if digits > 0 && (after.is_empty() || after.starts_with([' ', '\t'])) {
            if let Ok(count) = rest[..digits].parse::<usize>() {
                return Line::Plan(count);
            }
        }
        return Line::Diag(content);
    }
    if let Some(test) = parse_test_line(content) {
        return Line::Test(test);
    }
    if let Some(rest) = content.strip_prefix('#') {
        if let Some(name) = rest.trim_start().strip_prefix("Subtest:") {
            return Line::Subtest(name.trim());
        }
        return Line::Diag(content);
    }
    if let Some(reason) = content.strip_prefix("Bail out!") {
        return Line::Bail(reason.trim());
    }
    Line::Diag(content)
}

/// Strips `keyword` from the start of `s` if it is a whole word.
fn strip_word<'a>(s: &'a str, keyword: &str) -> Option<&'a str> {
    let rest = s.strip_prefix(keyword)?;
    if rest.is_empty() || rest.starts_with([' ', '\t']) {
        Some(rest.trim_start())
    } else {
        None
    }
}

fn parse_test_line(content: &str) -> Option<TestLine> {
    let (ok, rest) = match strip_word(content, "ok") {
        Some(rest) => (true, rest),
        None => (false, strip_word(content, "not ok")?),
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let after = &rest[digits..];
    let (number, rest) = if digits > 0 && (after.is_empty() || after.starts_with([' ', '\t'])) {
        // An absurdly long number is just "no usable number".
        (rest[..digits].parse::<u64>().ok(), after.trim_start())
    } else {
        (None, rest)
    };
    let (description, directive) = split_directive(rest);
    let description = description.trim();
    let description = if description == "-" {
        ""
    } else {
        description
            .strip_prefix("- ")
            .unwrap_or(description)
            .trim_start()
    };
    let directive = directive.map(str::trim).filter(|d| !d.is_empty());
    Some(TestLine {
        ok,
        number,
        name: unescape(description),
        directive: directive.map(str::to_owned),
    })
}

/// Splits at the first `#` not preceded by a backslash.
fn split_directive(s: &str) -> (&str, Option<&str>) {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '#' if !escaped => return (&s[..i], Some(&s[i + 1..])),
            _ => escaped = false,
        }
    }
    (s, None)
}

/// Undoes the `\#` and `\\` escapes allowed in test descriptions.
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(next @ ('#' | '\\')) => out.push(next),
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// True for a kernel console line: `[` spaces digits `.` digits `]` at the
/// very start.
fn is_kernel_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('[') else {
        return false;
    };
    let rest = rest.trim_start_matches(' ');
    let secs = rest.bytes().take_while(u8::is_ascii_digit).count();
    let Some(rest) = rest[secs..].strip_prefix('.') else {
        return false;
    };
    let frac = rest.bytes().take_while(u8::is_ascii_digit).count();
    secs > 0 && frac > 0 && rest[frac..].starts_with(']')
}

/// What the outcome of a result line is, given its directive.
fn outcome_of(ok: bool, directive: Option<&str>) -> Outcome {
    let keyword = directive
        .and_then(|d| d.split_whitespace().next())
        .unwrap_or("")
        .to_ascii_uppercase();
    if keyword.starts_with("SKIP") {
        Outcome::Skip
    } else if ok {
        Outcome::Pass
    } else if keyword == "TODO" || keyword == "XFAIL" {
        Outcome::Skip
    } else {
        Outcome::Fail
    }
}

// ---------------------------------------------------------------------------
// Block structure

/// A structural problem, with the path of the block relative to the block
/// that currently holds it (completed when the block gets its name).
#[derive(Debug)]
struct Problem {
    path: String,
    kind: ProblemKind,
}

#[derive(Debug)]
enum ProblemKind {
    NoKtap,
    MissingPlan,
    PlanMismatch { planned: usize, seen: usize },
    OutOfOrder { expected: usize, got: u64 },
    NoResultLine,
    ExtraPlan,
    Bail(String),
}

impl Problem {
    fn render(&self) -> String {
        let place = if self.path.is_empty() {
            "at top level".to_owned()
        } else {
            format!("in '{}'", self.path)
        };
        match &self.kind {
            ProblemKind::NoKtap => "no KTAP output".to_owned(),
            ProblemKind::MissingPlan => format!("missing plan {place}"),
            ProblemKind::PlanMismatch { planned, seen } if seen < planned => {
                format!("planned {planned} tests but saw {seen} {place} (output cut off?)")
            }
            ProblemKind::PlanMismatch { planned, seen } => {
                format!("planned {planned} tests but saw {seen} {place}")
            }
            ProblemKind::OutOfOrder { expected, got } => {
                format!("test numbers out of order {place} (expected {expected}, got {got})")
            }
            ProblemKind::NoResultLine => {
                format!(
                    "subtest '{}' has no result line (output cut off?)",
                    self.path
                )
            }
            ProblemKind::ExtraPlan => format!("more than one plan {place}"),
            ProblemKind::Bail(reason) if reason.is_empty() => format!("Bail out! ({place})"),
            ProblemKind::Bail(reason) => format!("Bail out! {reason} ({place})"),
        }
    }
}

/// A block (the top level, or one nested subtest) being parsed.
#[derive(Debug, Default)]
struct Block {
    indent: usize,
    /// Name from `# Subtest:`.
    header: Option<String>,
    plan: Option<usize>,
    /// Result lines seen at this level.
    seen: usize,
    misnumbered: bool,
    /// Leaf results, names relative to this block.
    results: Vec<TestResult>,
    problems: Vec<Problem>,
    /// Diagnostics not yet attached to a result.
    pending: Vec<String>,
    /// A finished nested block waiting for its result line in this block.
    child: Option<Closed>,
}

impl Block {
    fn new(indent: usize) -> Self {
        Block {
            indent,
            ..Block::default()
        }
    }

    /// True once the block has a plan, a result or a finished child.
    fn has_content(&self) -> bool {
        self.plan.is_some() || self.seen > 0 || self.child.is_some()
    }

    /// Handles an `ok`/`not ok` line at this level.
    fn test_line(&mut self, test: TestLine) {
        self.seen += 1;
        if let Some(got) = test.number {
            if got != self.seen as u64 && !self.misnumbered {
                self.misnumbered = true;
                self.problems.push(Problem {
                    path: String::new(),
                    kind: ProblemKind::OutOfOrder {
                        expected: self.seen,
                        got,
                    },
                });
            }
        }
        let outcome = outcome_of(test.ok, test.directive.as_deref());
        let number = test.number.unwrap_or(self.seen as u64);
        let mut diagnostics = std::mem::take(&mut self.pending);
        let child = self.child.take();
        let name = if !test.name.is_empty() {
            test.name
        } else if let Some(header) = child.as_ref().and_then(|c| c.header.clone()) {
            header
        } else {
            format!("test {number}")
        };
        let Some(child) = child else {
            self.results.push(TestResult {
                name,
                outcome,
                directive: test.directive,
                diagnostics,
            });
            return;
        };
        self.adopt_problems(&name, child.problems);
        extend_capped(&mut diagnostics, child.trailing);
        if child.results.is_empty() {
            // A subtest without results of its own (e.g. `1..0 # SKIP`):
            // the parent line is the leaf.
            self.results.push(TestResult {
                name,
                outcome,
                directive: test.directive,
                diagnostics,
            });
            return;
        }
        let child_failed = child.results.iter().any(|r| r.outcome == Outcome::Fail);
        let count = child.results.len();
        self.adopt_results(&name, child.results);
        if outcome == Outcome::Fail && !child_failed {
            let mut diags = vec![format!(
                "reported not ok although none of its {count} results failed"
            )];
            extend_capped(&mut diags, diagnostics);
            self.results.push(TestResult {
                name,
                outcome,
                directive: test.directive,
                diagnostics: diags,
            });
        } else if let Some(last) = self.results.last_mut() {
            extend_capped(&mut last.diagnostics, diagnostics);
        }
    }

    /// Takes in a nested block that never got its result line.
    fn adopt_orphan(&mut self, child: Closed) {
        let name = child
            .header
            .clone()
            .unwrap_or_else(|| format!("test {}", self.seen + 1));
        self.adopt_problems(&name, child.problems);
        self.problems.push(Problem {
            path: name.clone(),
            kind: ProblemKind::NoResultLine,
        });
        self.adopt_results(&name, child.results);
        if let Some(last) = self.results.last_mut() {
            extend_capped(&mut last.diagnostics, child.trailing);
        }
    }

    fn adopt_problems(&mut self, name: &str, problems: Vec<Problem>) {
        self.problems.extend(problems.into_iter().map(|mut p| {
            p.path = join(name, &p.path);
            p
        }));
    }

    fn adopt_results(&mut self, name: &str, results: Vec<TestResult>) {
        self.results.extend(results.into_iter().map(|mut r| {
            r.name = join(name, &r.name);
            r
        }));
    }

    /// Finishes this block: resolves a dangling child and checks the plan.
    fn close(mut self) -> Closed {
        if let Some(child) = self.child.take() {
            self.adopt_orphan(child);
        }
        let kind = match self.plan {
            None => Some(ProblemKind::MissingPlan),
            Some(planned) if planned != self.seen => Some(ProblemKind::PlanMismatch {
                planned,
                seen: self.seen,
            }),
            Some(_) => None,
        };
        if let Some(kind) = kind {
            self.problems.push(Problem {
                path: String::new(),
                kind,
            });
        }
        Closed {
            header: self.header,
            results: self.results,
            problems: self.problems,
            trailing: self.pending,
        }
    }
}

/// A finished nested block.
#[derive(Debug)]
struct Closed {
    header: Option<String>,
    results: Vec<TestResult>,
    problems: Vec<Problem>,
    /// Diagnostics after the last result; the result line of the parent
    /// decides where they go.
    trailing: Vec<String>,
}

fn join(parent: &str, child: &str) -> String {
    if child.is_empty() {
        parent.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

fn push_capped(diags: &mut Vec<String>, line: String) {
    if diags.len() < MAX_DIAGNOSTICS {
        diags.push(line);
    } else if diags.len() == MAX_DIAGNOSTICS {
        diags.push("[further diagnostic lines omitted]".to_owned());
    }
}

fn extend_capped(diags: &mut Vec<String>, more: Vec<String>) {
    for line in more {
        if diags.len() > MAX_DIAGNOSTICS {
            break;
        }
        push_capped(diags, line);
    }
}

// ---------------------------------------------------------------------------
// Parser

#[derive(Debug, Default)]
struct Parser {
    /// Open blocks, outermost first; empty until the first version line.
    stack: Vec<Block>,
}

impl Parser {
    fn line(&mut self, raw: &str) {
        let (indent, line) = classify_line(raw);
        if self.stack.is_empty() {
            if line == Line::Version {
                self.stack.push(Block::new(indent));
            }
            return;
        }
        match line {
            Line::Noise => {}
            Line::Diag(text) => {
                if let Some(top) = self.stack.last_mut() {
                    push_capped(&mut top.pending, text.to_owned());
                }
            }
            Line::Bail(reason) => {
                if let Some(top) = self.stack.last_mut() {
                    top.problems.push(Problem {
                        path: String::new(),
                        kind: ProblemKind::Bail(reason.to_owned()),
                    });
                }
            }
            Line::Version | Line::Plan(_) | Line::Subtest(_) | Line::Test(_) => {
                self.structural(indent, line);
            }
        }
    }

    fn structural(&mut self, indent: usize, line: Line<'_>) {
        // Leave the blocks this line is outdented from.
        while self.stack.len() > 1 && self.stack.last().is_some_and(|b| b.indent > indent) {
            self.close_top();
        }
        // A new header at the level of a nested block that already has
        // content starts a sibling block: the previous one never got its
        // result line.
        let sibling = self.stack.len() > 1
            && self.stack.last().is_some_and(|top| {
                top.indent == indent
                    && match line {
                        Line::Version => top.has_content(),
                        // A second header before any plan or result
                        // repeats the name (init names each program's
                        // block, the program may name it again).
                        Line::Subtest(_) => top.has_content(),
                        _ => false,
                    }
            });
        if sibling {
            self.close_top();
        }
        let Some(top) = self.stack.last_mut() else {
            return;
        };
        if indent > top.indent {
            if let Some(orphan) = top.child.take() {
                top.adopt_orphan(orphan);
            }
            self.stack.push(Block::new(indent));
        }
        let Some(top) = self.stack.last_mut() else {
            return;
        };
        match line {
            Line::Version => {}
            Line::Subtest(name) if top.header.is_none() && !top.has_content() => {
                top.header = Some(name.to_owned())
            }
            Line::Subtest(name) if top.header.as_deref() == Some(name) => {}
            Line::Subtest(name) => push_capped(&mut top.pending, format!("# Subtest: {name}")),
            Line::Plan(count) => {
                if top.plan.is_some() {
                    top.problems.push(Problem {
                        path: String::new(),
                        kind: ProblemKind::ExtraPlan,
                    });
                } else {
                    top.plan = Some(count);
                }
            }
            Line::Test(test) => top.test_line(test),
            Line::Noise | Line::Diag(_) | Line::Bail(_) => {}
        }
    }

    /// Closes the innermost block and hands it to its parent.
    fn close_top(&mut self) {
        if self.stack.len() < 2 {
            return;
        }
        let Some(block) = self.stack.pop() else {
            return;
        };
        let closed = block.close();
        if let Some(parent) = self.stack.last_mut() {
            if let Some(orphan) = parent.child.take() {
                parent.adopt_orphan(orphan);
            }
            parent.child = Some(closed);
        }
    }

    fn finish(mut self) -> Report {
        while self.stack.len() > 1 {
            self.close_top();
        }
        let Some(root) = self.stack.pop() else {
            return Report {
                results: Vec::new(),
                problems: vec![Problem {
                    path: String::new(),
                    kind: ProblemKind::NoKtap,
                }
                .render()],
            };
        };
        let mut closed = root.close();
        if let Some(last) = closed.results.last_mut() {
            extend_capped(&mut last.diagnostics, closed.trailing);
        }
        Report {
            results: closed.results,
            problems: closed.problems.iter().map(Problem::render).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &str = include_str!("../tests/console/pass.output.log");
    const FAIL: &str = include_str!("../tests/console/fail.output.log");
    const PANIC: &str = include_str!("../tests/console/panic.output.log");
    const NOPLAN: &str = include_str!("../tests/console/noplan.output.log");
    const EMPTY: &str = include_str!("../tests/console/empty.output.log");
    const TIMEOUT: &str = include_str!("../tests/console/timeout.output.log");
    const SELFTEST: &str = include_str!("../tests/console/selftest.output.log");
    const SINGLE: &str = include_str!("../tests/console/single.log");
    const PASS_CONSOLE: &str = include_str!("../tests/console/pass.console.log");

    /// `(name, outcome)` pairs of a report, for compact assertions.
    fn summary(report: &Report) -> Vec<(&str, Outcome)> {
        report
            .results
            .iter()
            .map(|r| (r.name.as_str(), r.outcome))
            .collect()
    }

    fn result<'a>(report: &'a Report, name: &str) -> &'a TestResult {
        match report.results.iter().find(|r| r.name == name) {
            Some(r) => r,
            None => panic!("no result {name:?} in {report:#?}"),
        }
    }

    use Outcome::{Fail, Pass, Skip};

    #[test]
    fn time_limits_are_told_apart_from_failed_assertions() {
        // A program init killed at its limit, after one result of its own;
        // a test the kselftest harness killed; an assertion that failed.
        let text = "KTAP version 1\n1..2\n    # Subtest: det_leak\n    TAP version 13\n    1..2\n    ok 1 slow.a\n# det_leak: killed after 600 s (det.test_timeout 600 s x speed factor 1.00)\nnot ok 1 det_leak # timeout\n    # Subtest: det_tree\n    TAP version 13\n    1..2\n    # slow.b: Test terminated by timeout\n    not ok 1 slow.b\n    # c.c:1:c:Expected 1 (1) == 2 (2)\n    not ok 2 c\nnot ok 2 det_tree\n";
        let report = parse(text);
        assert!(result(&report, "det_leak").timed_out(), "{report:#?}");
        assert!(result(&report, "det_tree.slow.b").timed_out());
        assert!(!result(&report, "det_tree.c").timed_out());
        assert!(!result(&report, "det_leak.slow.a").timed_out());
        assert_eq!((report.failed(), report.timed_out()), (3, 2));
    }

    #[test]
    fn subtest_named_before_a_tap13_program_names_its_results_while_running() {
        let partial = "KTAP version 1\n1..1\n    # Subtest: det_x\n    TAP version 13\n    1..2\n    ok 1 global.a\n";
        let live = parse_complete_lines(partial);
        let names: Vec<_> = live.results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["det_x.global.a"]);
        let done = format!("{partial}    ok 2 global.b\nok 1 det_x\n");
        let report = parse(&done);
        let names: Vec<_> = report.results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["det_x.global.a", "det_x.global.b"]);
        assert!(report.ok(), "{report:?}");

        // A program that names its block itself, after init did.
        let text = "KTAP version 1\n1..1\n    # Subtest: boot\n    KTAP version 1\n    # Subtest: boot\n    1..2\n    ok 1 a\n    ok 2 b\nok 1 boot\n";
        let report = parse(text);
        let names: Vec<_> = report.results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["boot.a", "boot.b"]);
        assert!(report.ok(), "{report:?}");
    }

    #[test]
    fn all_passing_nested_programs() {
        let report = parse(PASS);
        assert_eq!(
            summary(&report),
            [
                ("boot.proc_mounted", Pass),
                ("boot.sys_mounted", Pass),
                ("boot.cpus_online", Pass),
                ("boot.tmp_writable", Skip),
                ("det_basic.create_child", Pass),
                ("det_basic.clock.monotonic is deterministic", Pass),
                ("det_basic.getrandom repeats", Pass),
                ("det_ipc.pipe roundtrip", Pass),
                ("det_ipc.signal.delivery order", Pass),
            ]
        );
        assert_eq!(report.problems, Vec::<String>::new());
        assert_eq!(
            (report.passed(), report.failed(), report.skipped()),
            (8, 0, 1)
        );
        assert!(report.ok());
        assert_eq!(report.summary(), "8 passed, 0 failed, 1 skipped");
        let skipped = result(&report, "boot.tmp_writable");
        assert_eq!(skipped.directive.as_deref(), Some("SKIP no tmpfs"));
        assert_eq!(result(&report, "boot.proc_mounted").directive, None);
        assert_eq!(
            result(&report, "det_basic.create_child").diagnostics,
            ["# seed=42"]
        );
        assert!(result(&report, "det_ipc.signal.delivery order")
            .diagnostics
            .is_empty());
    }

    #[test]
    fn failures_and_not_ok_parent_with_passing_children() {
        let report = parse(FAIL);
        assert_eq!(
            summary(&report),
            [
                ("boot.proc_mounted", Pass),
                ("boot.cpus_online", Fail),
                ("boot.tmp_writable", Skip),
                ("det_basic.create_child", Pass),
                ("det_basic.replay", Pass),
                ("det_basic", Fail),
            ]
        );
        assert_eq!(report.problems, Vec::<String>::new());
        assert_eq!(
            (report.passed(), report.failed(), report.skipped()),
            (3, 2, 1)
        );
        assert!(!report.ok());
        assert_eq!(
            result(&report, "boot.cpus_online").diagnostics,
            ["# cpus_online: expected 2 online, found 1"]
        );
        let crashed = result(&report, "det_basic");
        assert_eq!(
            crashed.directive.as_deref(),
            Some("killed by signal 11 (SIGSEGV)")
        );
        assert_eq!(
            crashed.diagnostics,
            [
                "reported not ok although none of its 2 results failed",
                "det_basic: teardown: waitpid returned ECHILD",
            ]
        );
        // The stderr line went to the failing parent, not to a passing child.
        assert!(result(&report, "det_basic.replay").diagnostics.is_empty());
        let failed: Vec<&str> = report.failures().map(|r| r.name.as_str()).collect();
        assert_eq!(failed, ["boot.cpus_online", "det_basic"]);
    }

    #[test]
    fn example_from_the_protocol() {
        let text = "KTAP version 1\n1..2\n    KTAP version 1\n    # Subtest: boot\n    1..3\n    ok 1 proc_mounted\n    not ok 2 cpus_online # expected 2 online, found 1\n    ok 3 tmp_writable # SKIP no tmpfs\nnot ok 1 boot\n    TAP version 13\n    1..1\n    ok 1 something\nok 2 det_basic\n";
        let report = parse(text);
        assert_eq!(
            summary(&report),
            [
                ("boot.proc_mounted", Pass),
                ("boot.cpus_online", Fail),
                ("boot.tmp_writable", Skip),
                ("det_basic.something", Pass),
            ]
        );
        assert_eq!(
            result(&report, "boot.cpus_online").directive.as_deref(),
            Some("expected 2 online, found 1")
        );
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    #[test]
    fn output_cut_off_by_a_panic() {
        let report = parse(PANIC);
        assert_eq!(
            summary(&report),
            [
                ("boot.proc_mounted", Pass),
                ("boot.cpus_online", Pass),
                ("det_basic.create_child", Pass),
                ("det_basic.replay_start", Pass),
            ]
        );
        assert_eq!(
            report.problems,
            [
                "planned 4 tests but saw 2 in 'det_basic' (output cut off?)",
                "subtest 'det_basic' has no result line (output cut off?)",
                "planned 2 tests but saw 1 at top level (output cut off?)",
            ]
        );
        assert!(!report.ok());
        // The unterminated last line is a diagnostic for `parse` ...
        assert_eq!(
            result(&report, "det_basic.replay_start").diagnostics,
            ["# replaying 4096 ev"]
        );
        // ... and is ignored by `parse_complete_lines`.
        let live = parse_complete_lines(PANIC);
        assert_eq!(summary(&live), summary(&report));
        assert!(result(&live, "det_basic.replay_start")
            .diagnostics
            .is_empty());
    }

    #[test]
    fn timeout_inside_a_subtest() {
        let report = parse(TIMEOUT);
        assert_eq!(
            summary(&report),
            [
                ("boot.proc_mounted", Pass),
                ("boot.cpus_online", Pass),
                ("det_sched.yield_order", Pass),
            ]
        );
        assert_eq!(
            result(&report, "det_sched.yield_order").diagnostics,
            ["# futex_wake: waiting for 2 waiters"]
        );
        assert_eq!(
            report.problems,
            [
                "planned 3 tests but saw 1 in 'det_sched' (output cut off?)",
                "subtest 'det_sched' has no result line (output cut off?)",
                "planned 3 tests but saw 1 at top level (output cut off?)",
            ]
        );
    }

    #[test]
    fn missing_plans() {
        let report = parse(NOPLAN);
        assert_eq!(
            summary(&report),
            [
                ("boot.proc_mounted", Pass),
                ("boot.cpus_online", Pass),
                ("det_basic.create_child", Pass),
            ]
        );
        // `boot` has its plan at the end, which is allowed.
        assert_eq!(
            report.problems,
            ["missing plan in 'det_basic'", "missing plan at top level"]
        );
        assert!(!report.ok());
        assert_eq!(
            report.summary(),
            "3 passed, 0 failed, 0 skipped, 2 problems"
        );
    }

    #[test]
    fn no_ktap_at_all() {
        for text in [EMPTY, "", "\n\n", PASS_CONSOLE, "ok 1 foo\n1..1\n"] {
            let report = parse(text);
            assert_eq!(report.results, []);
            assert_eq!(report.problems, ["no KTAP output"]);
            assert!(!report.ok());
        }
    }

    #[test]
    fn single_stream_with_console_and_status_interleaved() {
        let report = parse(SINGLE);
        assert_eq!(
            summary(&report),
            [
                ("boot.proc_mounted", Pass),
                ("boot.cpus_online", Pass),
                ("boot.tmp_writable", Pass),
                ("det_basic.create_child", Pass),
                ("det_basic.replay", Fail),
                ("det_basic.getrandom repeats", Pass),
            ]
        );
        assert_eq!(report.problems, Vec::<String>::new());
        // Kernel lines in the middle of the block are not diagnostics.
        assert_eq!(
            result(&report, "det_basic.replay").diagnostics,
            ["# replay: event 17 differs: expected write(3, 64), got write(3, 60)"]
        );
        assert!(result(&report, "det_basic.create_child")
            .diagnostics
            .is_empty());
    }

    #[test]
    fn tap13_directives() {
        let report = parse(SELFTEST);
        assert_eq!(
            summary(&report),
            [
                ("clock_gettime monotonic", Pass),
                ("clock_nanosleep", Skip),
                ("timerfd drift", Skip),
                ("posix timer signal", Pass),
                ("itimer", Skip),
                ("adjtimex", Fail),
                ("name with # hash", Skip),
            ]
        );
        assert_eq!(
            result(&report, "timerfd drift").directive.as_deref(),
            Some("TODO known drift under TCG")
        );
        assert_eq!(
            result(&report, "name with # hash").directive.as_deref(),
            Some("SKIP")
        );
        assert_eq!(
            result(&report, "adjtimex").diagnostics,
            ["# adjtimex: offset 12 != 0"]
        );
        assert_eq!(
            result(&report, "clock_gettime monotonic").diagnostics,
            ["# selftests: det: clock_test"]
        );
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    #[test]
    fn outcome_mapping() {
        assert_eq!(outcome_of(true, None), Pass);
        assert_eq!(outcome_of(false, None), Fail);
        assert_eq!(outcome_of(true, Some("SKIP reason")), Skip);
        assert_eq!(outcome_of(false, Some("SKIP")), Skip);
        assert_eq!(outcome_of(true, Some("skipped: no kvm")), Skip);
        assert_eq!(outcome_of(false, Some("TODO later")), Skip);
        assert_eq!(outcome_of(false, Some("xfail")), Skip);
        assert_eq!(outcome_of(true, Some("TODO")), Pass);
        assert_eq!(outcome_of(false, Some("expected 2, found 1")), Fail);
        assert_eq!(outcome_of(false, Some("TODOS are not a directive")), Fail);
    }

    #[test]
    fn zero_test_plans() {
        let nested = "KTAP version 1\n1..2\n    KTAP version 1\n    # Subtest: kvm\n    1..0 # SKIP no /dev/kvm\nok 1 kvm # SKIP no /dev/kvm\n    KTAP version 1\n    # Subtest: det\n    1..1\n    ok 1 a\nok 2 det\n";
        let report = parse(nested);
        assert_eq!(summary(&report), [("kvm", Skip), ("det.a", Pass)]);
        assert!(report.ok(), "{report:?}");

        let top = parse("TAP version 13\n1..0 # SKIP not supported\n");
        assert_eq!(top.results, []);
        assert_eq!(top.problems, Vec::<String>::new());
        assert!(!top.ok(), "no results is not ok");
    }

    #[test]
    fn bail_out() {
        let text = "KTAP version 1\n1..2\n    KTAP version 1\n    # Subtest: boot\n    1..2\n    ok 1 a\n    Bail out! no /proc\n";
        let report = parse(text);
        assert_eq!(summary(&report), [("boot.a", Pass)]);
        assert_eq!(
            report.problems,
            [
                "Bail out! no /proc (in 'boot')",
                "planned 2 tests but saw 1 in 'boot' (output cut off?)",
                "subtest 'boot' has no result line (output cut off?)",
                "planned 2 tests but saw 0 at top level (output cut off?)",
            ]
        );
        let top = parse("TAP version 14\n1..1\nBail out!\n");
        assert_eq!(
            top.problems,
            [
                "Bail out! (at top level)",
                "planned 1 tests but saw 0 at top level (output cut off?)"
            ]
        );
    }

    #[test]
    fn test_numbers_and_counts() {
        let report = parse("KTAP version 1\n1..3\nok 1 a\nok 3 b\nok 4 c\n");
        assert_eq!(
            report.problems,
            ["test numbers out of order at top level (expected 2, got 3)"]
        );
        let report = parse("KTAP version 1\n1..1\nok 1 a\nok 2 b\n");
        assert_eq!(report.problems, ["planned 1 tests but saw 2 at top level"]);
        let report = parse("KTAP version 1\n1..1\n1..1\nok 1 a\n");
        assert_eq!(report.problems, ["more than one plan at top level"]);
        // Missing numbers and names are tolerated.
        let report = parse("KTAP version 1\n1..3\nok\nnot ok - \nok # SKIP\n");
        assert_eq!(
            summary(&report),
            [("test 1", Pass), ("test 2", Fail), ("test 3", Skip)]
        );
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    #[test]
    fn lookalike_lines_are_not_results() {
        let report = parse(
            "KTAP version 1\n1..1\nokay then\nnot okay\nok1 x\n1..2x\nKTAP version one\nok 1 real\n",
        );
        assert_eq!(summary(&report), [("real", Pass)]);
        assert_eq!(
            result(&report, "real").diagnostics,
            [
                "okay then",
                "not okay",
                "ok1 x",
                "1..2x",
                "KTAP version one"
            ]
        );
        assert!(report.ok());
    }

    #[test]
    fn deep_nesting_and_missing_parent_lines() {
        let text = "\
KTAP version 1
1..2
    KTAP version 1
    # Subtest: outer
    1..1
        KTAP version 1
        # Subtest: inner
        1..2
        ok 1 x
        not ok 2 y
    not ok 1 inner
not ok 1 outer
    KTAP version 1
    # Subtest: lost
    1..1
    ok 1 z
    KTAP version 1
    # Subtest: found
    1..1
    ok 1 w
ok 2 found
";
        let report = parse(text);
        assert_eq!(
            summary(&report),
            [
                ("outer.inner.x", Pass),
                ("outer.inner.y", Fail),
                ("lost.z", Pass),
                ("found.w", Pass),
            ]
        );
        assert_eq!(
            report.problems,
            ["subtest 'lost' has no result line (output cut off?)"]
        );
    }

    #[test]
    fn unnamed_subtest_takes_the_parent_name_or_a_number() {
        let text = "KTAP version 1\n1..1\n    KTAP version 1\n    1..3\n    ok 1 a\n";
        let report = parse(text);
        assert_eq!(summary(&report), [("test 1.a", Pass)]);
        assert_eq!(
            report.problems,
            [
                "planned 3 tests but saw 1 in 'test 1' (output cut off?)",
                "subtest 'test 1' has no result line (output cut off?)",
                "planned 1 tests but saw 0 at top level (output cut off?)",
            ]
        );
        let report =
            parse("KTAP version 1\n1..1\n    # Subtest: named\n    1..1\n    ok 1 a\nok 1\n");
        assert_eq!(summary(&report), [("named.a", Pass)]);
        assert!(report.ok());
    }

    #[test]
    fn diagnostics_are_capped() {
        let mut text = String::from("KTAP version 1\n1..1\n");
        for i in 0..1000 {
            text.push_str(&format!("# line {i}\n"));
        }
        text.push_str("not ok 1 noisy\n");
        let report = parse(&text);
        let diags = &result(&report, "noisy").diagnostics;
        assert_eq!(diags.len(), MAX_DIAGNOSTICS + 1);
        assert_eq!(diags[0], "# line 0");
        assert_eq!(diags[MAX_DIAGNOSTICS], "[further diagnostic lines omitted]");
    }

    #[test]
    fn kernel_and_status_lines_are_ignored() {
        assert!(is_kernel_line("[    1.234567] foo"));
        assert!(is_kernel_line("[12345.000001][    T1] foo"));
        assert!(!is_kernel_line("[ 1.] foo"));
        assert!(!is_kernel_line("[foo] bar"));
        assert!(!is_kernel_line("    [    1.2] indented"));
        assert_eq!(classify_line("DET-EXIT status=0\r"), (0, Line::Noise));
        assert_eq!(classify_line("\t1..4"), (8, Line::Plan(4)));
    }

    /// Every prefix of every fixture (as a growing file would look) parses
    /// without panicking, and the number of results never goes down.
    #[test]
    fn growing_files_never_panic_and_progress_is_monotonic() {
        for text in [PASS, FAIL, PANIC, NOPLAN, TIMEOUT, SELFTEST, SINGLE] {
            let mut last = 0;
            for (end, _) in text.char_indices().chain([(text.len(), ' ')]) {
                let prefix = &text[..end];
                let _ = parse(prefix);
                let live = parse_complete_lines(prefix);
                assert!(live.results.len() >= last, "progress went back at {end}");
                last = live.results.len();
            }
            assert_eq!(last, parse(text).results.len());
        }
    }

    #[test]
    fn garbage_never_panics() {
        let pieces = [
            "KTAP version 1",
            "TAP version 13",
            "1..",
            "1..3",
            "1..99999999999999999999999",
            "ok",
            "not ok",
            " 1",
            " 18446744073709551616",
            " - ",
            " #",
            " # SKIP",
            "\\",
            "\\#",
            "# Subtest:",
            "Bail out!",
            "    ",
            "\t",
            "\n",
            "\r\n",
            "é",
            "\u{0}",
            "[",
            "    1.2]",
            "[    3.000001] BUG: x",
            "DET-EXIT status=",
            " name",
        ];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..2000 {
            let mut text = String::new();
            for _ in 0..40 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push_str(pieces[(state % pieces.len() as u64) as usize]);
            }
            let report = parse(&text);
            let _ = (report.ok(), report.summary(), parse_complete_lines(&text));
        }
    }
}
