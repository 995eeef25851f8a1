//! The only unsafe code in init: small safe wrappers over the system calls
//! that std does not offer.
//!
//! Each wrapper checks its arguments so that no caller can make the unsafe
//! block inside misbehave; each `unsafe` block says why it is sound.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

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

/// mount(2).
pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let (source, target) = (c_string(source)?, c_string(target)?);
    let (fstype, data) = (c_string(fstype)?, c_string(data)?);
    // SAFETY: the four pointers are NUL-terminated strings owned by this
    // frame and alive for the whole call; mount(2) only reads them.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    })?;
    Ok(())
}

/// Time since boot, including time suspended (CLOCK_BOOTTIME).
pub fn boottime() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let ret = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if ret != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Makes file descriptors 0, 1 and 2 copies of `file`.
pub fn replace_stdio(file: &impl AsFd) -> io::Result<()> {
    let fd = file.as_fd().as_raw_fd();
    for target in 0..=2 {
        if fd != target {
            // SAFETY: `fd` is open (borrowed from `file`); dup2 atomically
            // replaces the process's standard descriptors, which std only
            // uses through their numbers, so no owned fd is invalidated.
            check(unsafe { libc::dup2(fd, target) })?;
        }
    }
    Ok(())
}

/// Turns off output post-processing (`\n` to `\r\n` and the like) on a
/// terminal, so that a serial port passes bytes through unchanged.
pub fn disable_output_processing(fd: BorrowedFd) -> io::Result<()> {
    // SAFETY: termios is plain old data; all-zero is a valid value, and
    // tcgetattr overwrites it before use.
    let mut tio: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open for the duration of the borrow and `tio` is a
    // valid, writable termios.
    check(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut tio) })?;
    tio.c_oflag &= !libc::OPOST;
    // SAFETY: as above; tcsetattr only reads `tio`.
    check(unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &tio) })?;
    Ok(())
}

/// Waits until everything written to the terminal `fd` has been sent, so
/// that powering off does not cut a serial port's last lines.
pub fn drain_output(fd: BorrowedFd) -> io::Result<()> {
    // SAFETY: `fd` is open for the duration of the borrow; tcdrain takes no
    // pointers.
    check(unsafe { libc::tcdrain(fd.as_raw_fd()) })?;
    Ok(())
}

/// SIGCHLD as a pollable file descriptor: SIGCHLD is blocked in init and
/// queued on a signalfd instead. Programs must not start with it blocked
/// (std's posix_spawn path passes the mask on): see [`sigchld_blocked`].
pub struct ChildSignals {
    fd: OwnedFd,
}

/// Blocks or unblocks SIGCHLD in init.
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
            // SAFETY: `buf` is writable for `buf.len()` bytes; the fd is
            // owned by `self` and open.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                continue;
            }
            if n == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::WouldBlock => return Ok(()),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(err),
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
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid, writable int.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        match pid {
            0 => return Ok(Reaped::NoneEnded),
            -1 => {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::ECHILD) => return Ok(Reaped::NoChildren),
                    _ => return Err(err),
                }
            }
            _ => {
                let exit = if libc::WIFSIGNALED(status) {
                    Exit::Signal(libc::WTERMSIG(status))
                } else {
                    Exit::Code(libc::WEXITSTATUS(status))
                };
                return Ok(Reaped::Child(pid.unsigned_abs(), exit));
            }
        }
    }
}

/// Sends SIGKILL to the process group `pgid` and to the process `pgid`.
/// Errors are ignored: the processes may be gone already.
pub fn kill_group(pgid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pid <= 1 {
        return; // never ourselves, never "every process"
    }
    // SAFETY: kill takes no pointers; `pid` > 1 names one group / process.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
}

/// An entry for [`poll`], asking for input on `fd`.
pub fn poll_input(fd: BorrowedFd) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }
}

/// poll(2); `None` waits forever. An interrupted poll returns `Ok(0)`.
pub fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let timeout_ms = match timeout {
        None => -1,
        // Round up, so that a deadline is not polled for in a busy loop.
        Some(t) => {
            libc::c_int::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(libc::c_int::MAX)
        }
    };
    let nfds = libc::nfds_t::try_from(fds.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many fds"))?;
    // SAFETY: `fds` is a valid, writable array of `nfds` pollfds; a stale
    // fd number in it can only yield POLLNVAL.
    match check(unsafe { libc::poll(fds.as_mut_ptr(), nfds, timeout_ms) }) {
        Ok(n) => Ok(n.unsigned_abs() as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
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
    let tty = tty.as_raw_fd();
    const EXEC_FAILED: &[u8] = b"det-init: cannot exec the shell\n";

    // SAFETY: init is single-threaded, so the child is a full copy of a
    // consistent process. The child branch below only makes
    // async-signal-safe calls on memory prepared above, then execs or exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the child: all pointers point into `args`, `vars`,
        // `dir`, `arg_ptrs` and `env_ptrs`, alive in this copy of the
        // frame; the pointer arrays are NULL-terminated; `tty` is open.
        // The empty signal mask undoes init's blocked SIGCHLD and SIG_DFL
        // undoes std's ignored SIGPIPE, as std's Command would.
        unsafe {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            let ready = libc::setsid() != -1
                && libc::ioctl(tty, libc::TIOCSCTTY, 0) != -1
                && libc::dup2(tty, 0) != -1
                && libc::dup2(tty, 1) != -1
                && libc::dup2(tty, 2) != -1;
            if ready {
                libc::chdir(dir.as_ptr());
                libc::execve(program.as_ptr(), arg_ptrs.as_ptr(), env_ptrs.as_ptr());
            }
            libc::write(tty, EXEC_FAILED.as_ptr().cast(), EXEC_FAILED.len());
            libc::_exit(127);
        }
    }
    check(pid)?;
    Ok(pid.unsigned_abs())
}

/// Flushes all file systems.
pub fn sync() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() }
}

/// Powers the machine off; if the kernel refuses, reboots (QEMU runs with
/// `-no-reboot`, so that ends it too); if that fails as well, waits forever
/// rather than exiting, which would panic the kernel.
pub fn power_off() -> ! {
    sync();
    // SAFETY: reboot takes no pointers; as PID 1 with CAP_SYS_BOOT it ends
    // the machine, otherwise it fails with an error and returns.
    unsafe {
        libc::reboot(libc::RB_POWER_OFF);
        libc::reboot(libc::RB_AUTOBOOT);
    }
    loop {
        // SAFETY: pause takes no arguments; it returns only on a signal.
        unsafe { libc::pause() };
    }
}
