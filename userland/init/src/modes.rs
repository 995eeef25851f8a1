//! The four things init can run (`det.run=`): tests, demos, a shell, or a
//! command. Each returns the run's exit status.
//!
//! Every program starts with the same fixed environment ([`ENV`]), in `/`,
//! with stdin on `/dev/null` (the shell excepted): what runs in the guest
//! does not depend on what the kernel happened to pass to init.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::child::{Ended, Reaper};
use crate::config::{Config, Mode};
use crate::ktap::{self, Indenter, Verdict};
use crate::speed::{self, Speed};
use crate::sys::{self, Exit};

pub const TESTS_DIR: &str = "/usr/lib/detlinux/tests";
pub const DEMOS_DIR: &str = "/usr/lib/detlinux/demos";

/// The whole environment of every program init starts.
const ENV: &[(&str, &str)] = &[
    ("PATH", "/bin:/usr/bin:/sbin:/usr/sbin"),
    ("HOME", "/root"),
    ("TERM", "linux"),
];

const SHELL_PROMPT: &str = "detlinux:\\w# ";

/// Exit status of a demo that could not be started (as sh does).
const CANNOT_RUN: i32 = 126;

/// Runs what `config` asks for, writing its output to `out` (the shell
/// excepted: it is interactive, on the console).
pub fn run(config: &Config, out: &File, reaper: &Reaper) -> Result<i32, String> {
    match &config.mode {
        Mode::Tests => tests(config, out, reaper),
        Mode::Demos => demos(out, reaper),
        Mode::Shell => shell(reaper),
        Mode::Command(cmd) => command(cmd, out, reaper),
    }
}

/// Every selected test program, as one nested KTAP document.
fn tests(config: &Config, out: &File, reaper: &Reaper) -> Result<i32, String> {
    let plan = ktap::plan(&programs(TESTS_DIR)?, config.tests.as_deref());
    emit(out, &ktap::header(plan.len()))?;
    let speed = speed::measure(reaper);
    emit(out, &speed.line())?;
    let mut passed = 0;
    for (i, entry) in plan.iter().enumerate() {
        let verdict = match &entry.path {
            None => Verdict::NotInstalled,
            Some(path) => {
                // Name the block before the program prints anything, so the
                // host can label results as they arrive even when the
                // program (kselftest's harness) prints no `# Subtest:`.
                emit(out, &ktap::subtest(&entry.name))?;
                run_test(path, config, &speed, out, reaper)?
            }
        };
        passed += usize::from(verdict.ok());
        emit(out, &ktap::result(i + 1, &entry.name, &verdict))?;
    }
    if !plan.is_empty() {
        emit(out, &ktap::totals(passed, plan.len()))?;
    }
    Ok(if passed == plan.len() { 0 } else { 1 })
}

/// One test program, in its own process group, its stdout and stderr
/// indented into `out` line by line as they arrive.
fn run_test(
    path: &Path,
    config: &Config,
    speed: &Speed,
    out: &File,
    reaper: &Reaper,
) -> Result<Verdict, String> {
    let (reader, writer) = io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let child = {
        let mut cmd = program(path);
        cmd.env(speed::ENV_KEY, format!("{:.2}", speed.scale));
        let stderr = writer.try_clone().map_err(|e| format!("dup: {e}"))?;
        cmd.stdin(Stdio::null())
            .stdout(writer)
            .stderr(stderr)
            .process_group(0);
        reaper.spawn(&mut cmd)
        // `cmd` goes here, and with it init's copies of the pipe's write
        // end: the pipe reaches end-of-file when the program's copies go.
    };
    let child = match child {
        Ok(child) => child,
        Err(e) => return Ok(Verdict::CannotRun(e.to_string())),
    };
    let limit = speed.scale(config.test_timeout);
    let deadline = Instant::now() + limit;
    let mut indenter = Indenter::default();
    let mut sink = |data: &[u8]| indenter.feed(data, &mut &*out);
    let ended = reaper.wait(child.id(), Some(reader), &mut sink, Some(deadline))?;
    indenter
        .finish(&mut &*out)
        .map_err(|e| format!("writing output: {e}"))?;
    Ok(match ended {
        Ended::Exit(exit) => Verdict::Ended(exit),
        Ended::Timeout => Verdict::Timeout {
            limit: config.test_timeout,
            scale: speed.scale,
        },
    })
}

/// Every demo in turn, each under a `== name ==` header. Exit status: 0 if
/// all succeeded, else that of the first that failed.
fn demos(out: &File, reaper: &Reaper) -> Result<i32, String> {
    let demos = programs(DEMOS_DIR)?;
    if demos.is_empty() {
        emit(out, "no demos installed yet\n")?;
        return Ok(0);
    }
    let mut status = 0;
    for (name, path) in demos {
        emit(out, &format!("== {name} ==\n"))?;
        let mut cmd = program(&path);
        cmd.stdin(Stdio::null())
            .stdout(clone(out)?)
            .stderr(clone(out)?);
        let child = reaper.spawn(&mut cmd);
        drop(cmd);
        let code = match child {
            Ok(child) => {
                let exit = wait(reaper, child.id())?;
                if exit != Exit::Code(0) {
                    emit(out, &format!("== {name}: {} ==\n", describe(exit)))?;
                }
                exit.status()
            }
            Err(e) => {
                emit(out, &format!("== {name}: cannot run: {e} ==\n"))?;
                CANNOT_RUN
            }
        };
        if status == 0 {
            status = code;
        }
    }
    Ok(status)
}

/// An interactive busybox sh on the console's terminal, as the leader of
/// a new session with that terminal as its controlling terminal (so job
/// control and ^C work).
fn shell(reaper: &Reaper) -> Result<i32, String> {
    let tty = console_terminal();
    let terminal = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&tty)
        .map_err(|e| format!("cannot open {}: {e}", tty.display()))?;
    // HOME may be missing from the image; the shell works without it.
    let _ = fs::create_dir_all("/root");
    let env: Vec<(&str, &str)> = ENV.iter().copied().chain([("PS1", SHELL_PROMPT)]).collect();
    let pid = sys::spawn_session_leader(&["/bin/sh"], &env, "/root", terminal.as_fd())
        .map_err(|e| format!("cannot start /bin/sh: {e}"))?;
    drop(terminal);
    Ok(wait(reaper, pid)?.status())
}

/// `/bin/sh -c CMD` with stdin on /dev/null and stdout+stderr to `out`.
fn command(cmd: &str, out: &File, reaper: &Reaper) -> Result<i32, String> {
    let mut sh = program("/bin/sh");
    sh.arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(clone(out)?)
        .stderr(clone(out)?);
    let child = reaper
        .spawn(&mut sh)
        .map_err(|e| format!("cannot run /bin/sh: {e}"))?;
    drop(sh);
    Ok(wait(reaper, child.id())?.status())
}

/// A command for `path` with init's fixed environment. It runs in `/`,
/// init's directory. (Not `current_dir("/")`: with it, std starts the child
/// through fork + a unix socketpair, which a kernel without unix sockets
/// refuses; without it, through posix_spawn.)
fn program(path: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(path);
    cmd.env_clear().envs(ENV.iter().copied());
    cmd
}

/// Waits for `pid` without a deadline or captured output.
fn wait(reaper: &Reaper, pid: u32) -> Result<Exit, String> {
    match reaper.wait(pid, None, &mut |_| Ok(()), None)? {
        Ended::Exit(exit) => Ok(exit),
        Ended::Timeout => Err(format!("process {pid} timed out without a deadline")),
    }
}

/// The executable regular files in `dir` (none if it does not exist), by name.
fn programs(dir: &str) -> Result<Vec<(String, PathBuf)>, String> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot list {dir}: {e}")),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {dir}: {e}"))?;
        let path = entry.path();
        // Follows symlinks, so a link to a program counts as one.
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            found.push((entry.file_name().to_string_lossy().into_owned(), path));
        }
    }
    found.sort();
    Ok(found)
}

/// The terminal behind /dev/console (the last one listed in
/// /sys/class/tty/console/active, as busybox's cttyhack does): a session
/// can take it as controlling terminal, which /dev/console cannot be.
fn console_terminal() -> PathBuf {
    let active = fs::read_to_string("/sys/class/tty/console/active").unwrap_or_default();
    match active.split_whitespace().last() {
        Some(name) if !name.contains('/') && Path::new("/dev").join(name).exists() => {
            Path::new("/dev").join(name)
        }
        _ => PathBuf::from("/dev/console"),
    }
}

fn describe(exit: Exit) -> String {
    match exit {
        Exit::Code(code) => format!("exit status {code}"),
        Exit::Signal(sig) => format!("killed by signal {sig}"),
    }
}

fn clone(file: &File) -> Result<File, String> {
    file.try_clone().map_err(|e| format!("dup: {e}"))
}

/// Writes `text` to the output in one write.
fn emit(mut out: &File, text: &str) -> Result<(), String> {
    out.write_all(text.as_bytes())
        .map_err(|e| format!("writing output: {e}"))
}
