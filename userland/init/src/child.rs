//! Waiting for the program init started, while doing PID 1's other duty:
//! reaping every orphan that ends meanwhile.
//!
//! One loop waits on two things with poll(2): a signalfd for SIGCHLD (see
//! [`sys::ChildSignals`]) and, optionally, a pipe carrying the program's
//! output. Any SIGCHLD leads to reaping every ended child; output is handed
//! to a sink as it arrives; a deadline kills the program's process group.

use std::fs::{self, File, OpenOptions};
use std::io::{self, PipeReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Command};
use std::time::Instant;

use rustix::event::PollFd;

use crate::sys::{self, ChildSignals, Exit, Reaped};

/// How a waited-for program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exit(Exit),
    /// Killed by init at its deadline.
    Timeout,
}

/// At most this much output is read after the program ends: what is left
/// comes from descendants still writing, and must not keep init waiting.
const DRAIN_LIMIT: usize = 1 << 20;

/// The waiter. Create it before starting any child.
pub struct Reaper {
    signals: ChildSignals,
    /// The ACPI power button's event device, if the machine has one: a
    /// press powers the machine off cleanly (see [`PowerButton`]).
    button: Option<PowerButton>,
}

impl Reaper {
    pub fn new() -> Result<Reaper, String> {
        let signals = ChildSignals::new().map_err(|e| format!("cannot watch SIGCHLD: {e}"))?;
        Ok(Reaper {
            signals,
            button: PowerButton::find(),
        })
    }

    /// Waits until one of `pids` ends (reaping every other child that
    /// ends meanwhile); returns which one and how.
    pub fn wait_any(&self, pids: &[u32]) -> Result<(u32, Exit), String> {
        loop {
            if let Some(ended) = self.reap_matching(|p| pids.contains(&p))? {
                return Ok(ended);
            }
            let mut fds = vec![sys::poll_input(&self.signals)];
            if let Some(b) = &self.button {
                fds.push(sys::poll_input(&b.file));
            }
            sys::poll(&mut fds, None).map_err(|e| format!("poll: {e}"))?;
            if !fds[0].revents().is_empty() {
                self.signals
                    .clear()
                    .map_err(|e| format!("reading SIGCHLD: {e}"))?;
            }
            self.check_button(fds.get(1));
        }
    }

    /// Powers off if the power button's entry in a poll reports a press.
    fn check_button(&self, fd: Option<&PollFd>) {
        if let (Some(b), Some(fd)) = (&self.button, fd) {
            if !fd.revents().is_empty() && b.pressed() {
                let _ = writeln!(io::stderr(), "init: power button pressed, powering off");
                sys::power_off();
            }
        }
    }

    /// Starts `cmd`. SIGCHLD is unblocked meanwhile, so that the program
    /// does not inherit init's blocked SIGCHLD. A SIGCHLD lost in that
    /// window loses nothing: [`wait`](Reaper::wait) reaps before it sleeps.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<Child> {
        sys::sigchld_blocked(false)?;
        let child = cmd.spawn();
        sys::sigchld_blocked(true)?;
        child
    }

    /// Waits until the child `pid` ends, reaping any other child that ends
    /// meanwhile. Bytes arriving on `output` go to `sink` as they come. At
    /// `deadline` the child's process group is killed (so the child must
    /// lead a group) and the result is [`Ended::Timeout`].
    pub fn wait(
        &self,
        pid: u32,
        mut output: Option<PipeReader>,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
        deadline: Option<Instant>,
    ) -> Result<Ended, String> {
        let mut buf = vec![0u8; 4096];
        let mut timed_out = false;
        loop {
            if let Some(exit) = self.reap_all(pid)? {
                if let Some(pipe) = output.take() {
                    drain(pipe, &mut buf, sink)?;
                }
                return Ok(if timed_out {
                    Ended::Timeout
                } else {
                    Ended::Exit(exit)
                });
            }

            let mut timeout = None;
            if let (Some(deadline), false) = (deadline, timed_out) {
                let now = Instant::now();
                if now >= deadline {
                    sys::kill_group(pid);
                    timed_out = true;
                    continue;
                }
                timeout = Some(deadline - now);
            }

            let mut fds = vec![sys::poll_input(&self.signals)];
            if let Some(pipe) = &output {
                fds.push(sys::poll_input(pipe));
            }
            if let Some(b) = &self.button {
                fds.push(sys::poll_input(&b.file));
            }
            sys::poll(&mut fds, timeout).map_err(|e| format!("poll: {e}"))?;
            if self.button.is_some() {
                self.check_button(fds.last());
            }
            if !fds[0].revents().is_empty() {
                self.signals
                    .clear()
                    .map_err(|e| format!("reading SIGCHLD: {e}"))?;
            }
            if fds.get(1).is_some_and(|fd| !fd.revents().is_empty()) {
                if let Some(pipe) = &mut output {
                    match read_some(pipe, &mut buf)? {
                        0 => output = None,
                        n => sink(&buf[..n]).map_err(|e| format!("writing output: {e}"))?,
                    }
                }
            }
        }
    }

    /// Reaps every ended child; returns how `pid` ended if it did.
    fn reap_all(&self, pid: u32) -> Result<Option<Exit>, String> {
        Ok(self.reap_matching(|p| p == pid)?.map(|(_, exit)| exit))
    }

    /// Reaps every ended child; returns the first one `wanted` picks, if any.
    fn reap_matching(&self, wanted: impl Fn(u32) -> bool) -> Result<Option<(u32, Exit)>, String> {
        let mut ended = None;
        loop {
            match sys::reap().map_err(|e| format!("waitpid: {e}"))? {
                Reaped::Child(p, exit) if wanted(p) => {
                    ended.get_or_insert((p, exit));
                }
                Reaped::Child(..) => {}
                Reaped::NoneEnded => return Ok(ended),
                Reaped::NoChildren if ended.is_some() => return Ok(ended),
                Reaped::NoChildren => {
                    return Err("the process waited for is not a child of init".to_string())
                }
            }
        }
    }
}

/// The ACPI power button, as an evdev device (`CONFIG_ACPI_BUTTON`,
/// `CONFIG_INPUT_EVDEV`). Nothing else in the image listens to it.
struct PowerButton {
    file: File,
}

/// `EV_KEY` and `KEY_POWER` of `<linux/input-event-codes.h>`.
const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;
/// `struct input_event` on x86_64: a 16-byte timeval, type, code, value.
const EVENT_SIZE: usize = 24;

impl PowerButton {
    /// The first event device named "Power Button" (the ACPI driver's
    /// name for the fixed and the device button alike).
    fn find() -> Option<PowerButton> {
        let mut names: Vec<String> = fs::read_dir("/sys/class/input")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("event"))
            .collect();
        names.sort();
        let name = names.into_iter().find(|n| {
            fs::read_to_string(format!("/sys/class/input/{n}/device/name"))
                .is_ok_and(|s| s.trim() == "Power Button")
        })?;
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(format!("/dev/input/{name}"))
            .ok()?;
        Some(PowerButton { file })
    }

    /// Reads the queued events; true if one is a press of the power key.
    fn pressed(&self) -> bool {
        let mut buf = [0u8; EVENT_SIZE * 16];
        let mut pressed = false;
        while let Ok(n) = (&self.file).read(&mut buf) {
            if n == 0 {
                break;
            }
            for ev in buf[..n].chunks_exact(EVENT_SIZE) {
                let kind = u16::from_ne_bytes([ev[16], ev[17]]);
                let code = u16::from_ne_bytes([ev[18], ev[19]]);
                let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
                pressed |= kind == EV_KEY && code == KEY_POWER && value == 1;
            }
        }
        pressed
    }
}

fn read_some(pipe: &mut PipeReader, buf: &mut [u8]) -> Result<usize, String> {
    loop {
        match pipe.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading program output: {e}")),
            Ok(n) => return Ok(n),
        }
    }
}

/// Passes on what is already in the pipe, without waiting for more.
fn drain(
    mut pipe: PipeReader,
    buf: &mut [u8],
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), String> {
    let mut total = 0;
    while total < DRAIN_LIMIT {
        let mut fds = [sys::poll_input(&pipe)];
        let ready = sys::poll(&mut fds, Some(std::time::Duration::ZERO))
            .map_err(|e| format!("poll: {e}"))?;
        if ready == 0 {
            break;
        }
        match read_some(&mut pipe, buf)? {
            0 => break,
            n => {
                total += n;
                sink(&buf[..n]).map_err(|e| format!("writing output: {e}"))?;
            }
        }
    }
    Ok(())
}
