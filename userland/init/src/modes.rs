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
use bootproto::Mode;

use crate::config::Config;
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
        Mode::Shell => shell(config, reaper),
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

/// What a person sees first on a screen (a VT terminal), before the prompt.
pub const WELCOME: &str = "\
detlinux: Linux 6.12 with deterministic process groups (dput, dget, dret).
A deterministic program's output depends on its input only, never on timing.

Try:  tour                            every demo, deterministic beside pthread
      detrun /usr/bin/demo-det gauss  a demo (md5 qsort matmult lu gauss)
      demo-pthread gauss              its pthread twin: results may differ
Docs: README.md and docs/ in the detlinux source tree (docs/disk-image.md).
Power off: type exit, or press the power button.
";

/// The screen's console terminal: `tty0` in the console list means the
/// foreground VT, which is tty1 at boot.
const SCREEN: &str = "tty1";

/// An interactive busybox sh on every terminal of the console (each
/// `console=` the machine really has): the screen and the serial port
/// where present. A missing serial port is normal and skipped. Each shell
/// leads a new session with its terminal as the controlling terminal (so
/// job control and ^C work). A screen first shows [`WELCOME`]; with
/// `det.tour=1` the first terminal (the screen if there is one) runs
/// `tour` before its shell. Returns when the first shell exits.
fn shell(config: &Config, reaper: &Reaper) -> Result<i32, String> {
    let mut terminals = Vec::new();
    for name in console_terminals() {
        match open_terminal(&name) {
            Ok(file) => terminals.push((name, file)),
            Err(e) => eprintln!("init: no shell on /dev/{name}: {e}"),
        }
    }
    if terminals.is_empty() {
        let tty = console_terminal();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&tty)
            .map_err(|e| format!("cannot open {}: {e}", tty.display()))?;
        terminals.push((tty.display().to_string(), file));
    }
    // The screen first, if there is one: it is where a tour is watched.
    let display = has_display();
    let screen = |name: &str| display && is_screen(name);
    terminals.sort_by_key(|(name, _)| !screen(name));
    if terminals.iter().any(|(name, _)| screen(name)) {
        // Boot chatter (USB devices arriving) would scroll the welcome
        // away; warnings and worse still reach every console.
        let _ = fs::write("/proc/sys/kernel/printk", "4");
    }
    // HOME may be missing from the image; the shell works without it.
    let _ = fs::create_dir_all("/root");
    // The shells' PATH also reaches `tour`, which the welcome offers (it
    // lives with the demos det.run=demos runs).
    let path = format!("{}:{DEMOS_DIR}", ENV[0].1);
    let env: Vec<(&str, &str)> = ENV
        .iter()
        .map(|&(k, v)| {
            if k == "PATH" {
                (k, path.as_str())
            } else {
                (k, v)
            }
        })
        .chain([("PS1", SHELL_PROMPT)])
        .collect();
    let mut pids = Vec::new();
    for (i, (name, terminal)) in terminals.iter().enumerate() {
        if screen(name) {
            // Clear the screen, then the welcome (the VT maps \n to \r\n).
            let _ = (&*terminal).write_all(format!("\x1b[H\x1b[J{WELCOME}\n").as_bytes());
        }
        let argv: &[&str] = if config.tour && i == 0 {
            &[
                "/bin/sh",
                "-c",
                "tour; echo; echo 'tour done; this is a shell (exit powers off)'; exec /bin/sh",
            ]
        } else {
            &["/bin/sh"]
        };
        let pid = sys::spawn_session_leader(argv, &env, "/root", terminal.as_fd())
            .map_err(|e| format!("cannot start /bin/sh on {name}: {e}"))?;
        pids.push(pid);
    }
    drop(terminals);
    let (_, exit) = reaper.wait_any(&pids)?;
    Ok(exit.status())
}

/// Whether the VTs are drawn on a real display (VGA text or a
/// framebuffer), not only on the dummy console of a machine without one.
fn has_display() -> bool {
    let Ok(entries) = fs::read_dir("/sys/class/vtconsole") else {
        return false;
    };
    entries.filter_map(|e| e.ok()).any(|e| {
        let name = fs::read_to_string(e.path().join("name")).unwrap_or_default();
        let bound = fs::read_to_string(e.path().join("bind")).unwrap_or_default();
        bound.trim() == "1" && !name.contains("dummy")
    })
}

/// Whether the terminal `name` is a VT (the screen and keyboard).
fn is_screen(name: &str) -> bool {
    name.strip_prefix("tty")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The kernel console's terminals (/sys/class/tty/console/active), `tty0`
/// as [`SCREEN`], without duplicates.
fn console_terminals() -> Vec<String> {
    let active = fs::read_to_string("/sys/class/tty/console/active").unwrap_or_default();
    let mut names: Vec<String> = Vec::new();
    for name in active.split_whitespace() {
        let name = if name == "tty0" { SCREEN } else { name };
        if !name.contains('/') && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// Opens `/dev/<name>` for a shell. A serial port without a UART behind
/// it (the kernel registers 4 whether or not they exist) is an error.
fn open_terminal(name: &str) -> io::Result<File> {
    if name.starts_with("ttyS") {
        let kind = fs::read_to_string(format!("/sys/class/tty/{name}/type")).unwrap_or_default();
        if kind.trim() == "0" {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no serial port there",
            ));
        }
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(Path::new("/dev").join(name))
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
