//! The system calls init makes that std does not offer.
//!
//! Most are rustix's safe wrappers; this module adds what init needs on top
//! (a `Duration`, an [`Exit`], a retried `EINTR`). The only unsafe code in
//! init is here, where rustix cannot serve: blocking SIGCHLD and the
//! signalfd that receives it, and `fork` + `execve` for a session leader.
//! Each `unsafe` block says why it is sound.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitOptions};

/// Turns a `-1`-on-error return value into an `io::Result`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn c_string(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in string"))
}

/// Time since boot, including time suspended (CLOCK_BOOTTIME).
pub fn boottime() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::try_from(ts).unwrap_or(Duration::ZERO)
}

/// Makes file descriptors 0, 1 and 2 copies of `file`.
pub fn replace_stdio(file: &impl AsFd) -> io::Result<()> {
    rustix::stdio::dup2_stdin(file)?;
    rustix::stdio::dup2_stdout(file)?;
    rustix::stdio::dup2_stderr(file)?;
    Ok(())
}

/// Turns off output post-processing (`\n` to `\r\n` and the like) on a
/// terminal, so that a serial port passes bytes through unchanged.
pub fn disable_output_processing(fd: BorrowedFd) -> io::Result<()> {
    use rustix::termios::{tcgetattr, tcsetattr, OptionalActions, OutputModes};
    let mut tio = tcgetattr(fd)?;
    tio.output_modes.remove(OutputModes::OPOST);
    tcsetattr(fd, OptionalActions::Now, &tio)?;
    Ok(())
}

/// Waits until everything written to the terminal `fd` has been sent, so
/// that powering off does not cut a serial port's last lines.
pub fn drain_output(fd: BorrowedFd) -> io::Result<()> {
    Ok(rustix::termios::tcdrain(fd)?)
}

/// SIGCHLD as a pollable file descriptor: SIGCHLD is blocked in init and
/// queued on a signalfd instead. Programs must not start with it blocked
/// (std's posix_spawn path passes the mask on): see [`sigchld_blocked`].
pub struct ChildSignals {
    fd: OwnedFd,
}

/// Blocks or unblocks SIGCHLD in init.
///
/// Hand-written: rustix has `sigprocmask` only in its runtime module,
/// which must not be used in a process that has a libc (init links glibc,
/// which keeps signals of its own in the mask).
pub fn sigchld_blocked(blocked: bool) -> io::Result<()> {
    let how = if blocked {
        libc::SIG_BLOCK
    } else {
        libc::SIG_UNBLOCK
    };
    let set = sigchld_set()?;
    // SAFETY: `set` is a valid sigset_t; the old mask pointer may be null.
    check(unsafe { libc::sigprocmask(how, &set, std::ptr::null_mut()) })?;
    Ok(())
}

fn sigchld_set() -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain old data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    unsafe {
        check(libc::sigemptyset(&mut set))?;
        check(libc::sigaddset(&mut set, libc::SIGCHLD))?;
    }
    Ok(set)
}

impl ChildSignals {
    /// Hand-written: rustix has no signalfd.
    pub fn new() -> io::Result<ChildSignals> {
        sigchld_blocked(true)?;
        let set = sigchld_set()?;
        let flags = libc::SFD_NONBLOCK | libc::SFD_CLOEXEC;
        // SAFETY: `set` is a valid sigset_t; -1 asks for a new descriptor.
        let fd = check(unsafe { libc::signalfd(-1, &set, flags) })?;
        // SAFETY: signalfd just returned `fd`, a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(ChildSignals { fd })
    }

    /// Consumes the queued SIGCHLDs (the caller then reaps with [`reap`]).
    pub fn clear(&self) -> io::Result<()> {
        let mut buf = [0u8; 8 * std::mem::size_of::<libc::signalfd_siginfo>()];
        loop {
            match rustix::io::read(&self.fd, &mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for ChildSignals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell's convention: the exit code, or 128 + the signal number.
    pub fn status(self) -> i32 {
        match self {
            Exit::Code(code) => code,
            Exit::Signal(sig) => 128 + sig,
        }
    }
}

/// The result of one non-blocking wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaped {
    Child(u32, Exit),
    /// Children exist but none has ended.
    NoneEnded,
    NoChildren,
}

/// Reaps one ended child, any child, without blocking (waitpid(-1, WNOHANG)).
pub fn reap() -> io::Result<Reaped> {
    loop {
        match rustix::process::wait(WaitOptions::NOHANG) {
            Ok(None) => return Ok(Reaped::NoneEnded),
            Ok(Some((pid, status))) => {
                let exit = match status.terminating_signal() {
                    Some(sig) => Exit::Signal(sig),
                    None => Exit::Code(status.exit_status().unwrap_or(0)),
                };
                return Ok(Reaped::Child(
                    pid.as_raw_nonzero().get().unsigned_abs(),
                    exit,
                ));
            }
            Err(Errno::INTR) => continue,
            Err(Errno::CHILD) => return Ok(Reaped::NoChildren),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends SIGKILL to the process group `pgid` and to the process `pgid`.
/// Errors are ignored: the processes may be gone already.
pub fn kill_group(pgid: u32) {
    let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) else {
        return;
    };
    if pid.is_init() {
        return; // never ourselves
    }
    let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    let _ = rustix::process::kill_process(pid, Signal::KILL);
}

/// An entry for [`poll`], asking for input on `fd`.
pub fn poll_input<Fd: AsFd>(fd: &Fd) -> PollFd<'_> {
    PollFd::new(fd, PollFlags::IN)
}

/// poll(2); `None` waits forever. An interrupted poll returns `Ok(0)`.
pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    // A timeout too long for a timespec waits forever.
    let timeout = timeout.and_then(|t| rustix::event::Timespec::try_from(t).ok());
    match rustix::event::poll(fds, timeout.as_ref()) {
        Ok(n) => Ok(n),
        Err(Errno::INTR) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Starts `argv[0]` (an absolute path) with arguments `argv` and exactly
/// the environment `env`, in directory `dir` (if it exists), as the leader
/// of a new session whose controlling terminal is `tty`, which also becomes
/// its stdin, stdout and stderr: a shell with job control and ^C.
///
/// std's `Command::pre_exec` could do the session part, but std then starts
/// the child through fork + a unix socketpair, and the kernel may be built
/// without unix sockets (ENOSYS); this needs only fork and execve.
///
/// Init must be single-threaded when calling this (it is: it starts no
/// threads), so the child cannot inherit a lock held by another thread.
///
/// Hand-written: rustix offers `fork` and `execve` only in its runtime
/// module, which must not be used in a process that has a libc. Between
/// them the child uses rustix's system calls, which are plain syscall
/// instructions and so safe after a fork.
pub fn spawn_session_leader(
    argv: &[&str],
    env: &[(&str, &str)],
    dir: &str,
    tty: BorrowedFd,
) -> io::Result<u32> {
    // Everything the child uses is prepared before fork: it must not allocate.
    let args = argv
        .iter()
        .map(|a| c_string(a))
        .collect::<io::Result<Vec<_>>>()?;
    let vars = env
        .iter()
        .map(|(k, v)| c_string(&format!("{k}={v}")))
        .collect::<io::Result<Vec<_>>>()?;
    let dir = c_string(dir)?;
    let Some(program) = args.first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty argv"));
    };
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = vars.iter().map(|v| v.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    const EXEC_FAILED: &[u8] = b"det-init: cannot exec the shell\n";

    // SAFETY: init is single-threaded, so the child is a full copy of a
    // consistent process. The child branch below only makes
    // async-signal-safe calls on memory prepared above, then execs or exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the child: the empty signal mask undoes init's blocked
        // SIGCHLD and SIG_DFL undoes std's ignored SIGPIPE, as std's
        // Command would; both take only the local `empty`.
        unsafe {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
        let ready = rustix::process::setsid().is_ok()
            && rustix::process::ioctl_tiocsctty(tty).is_ok()
            && rustix::stdio::dup2_stdin(tty).is_ok()
            && rustix::stdio::dup2_stdout(tty).is_ok()
            && rustix::stdio::dup2_stderr(tty).is_ok();
        if ready {
            let _ = rustix::process::chdir(dir.as_c_str());
            // SAFETY: all pointers point into `args`, `vars`, `arg_ptrs`
            // and `env_ptrs`, alive in this copy of the frame; the pointer
            // arrays are NULL-terminated.
            unsafe { libc::execve(program.as_ptr(), arg_ptrs.as_ptr(), env_ptrs.as_ptr()) };
        }
        let _ = rustix::io::write(tty, EXEC_FAILED);
        // SAFETY: _exit ends the child at once, without running init's
        // exit handlers or flushing its buffers, which belong to the parent.
        unsafe { libc::_exit(127) };
    }
    check(pid)?;
    Ok(pid.unsigned_abs())
}

/// Flushes all file systems.
pub fn sync() {
    rustix::fs::sync()
}

/// Powers the machine off; if the kernel refuses, reboots (QEMU runs with
/// `-no-reboot`, so that ends it too); if that fails as well, waits forever
/// rather than exiting, which would panic the kernel.
pub fn power_off() -> ! {
    use rustix::system::{reboot, RebootCommand};
    sync();
    // As PID 1 with CAP_SYS_BOOT each ends the machine; otherwise it fails
    // with an error and returns.
    let _ = reboot(RebootCommand::PowerOff);
    let _ = reboot(RebootCommand::Restart);
    loop {
        rustix::event::pause();
    }
}
