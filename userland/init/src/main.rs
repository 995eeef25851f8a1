//! detlinux's init: PID 1 of the guest.
//!
//! `main` is the boot as an ordered list of steps: mount the file systems
//! of [`MOUNTS`], put stdio on the console, mount the disk image's data
//! partition at `/data` if there is one ([`mount_data`]), read the `det.*` keys of the
//! kernel command line ([`config`]), report `DET-INIT start` on the status
//! channel, run what `det.run=` asks for ([`modes`]) while reaping every
//! orphan ([`child`]), report `DET-EXIT status=N`, power off.
//!
//! The status lines (`det.status=`, parsed by the host) and the `det.*`
//! keys are the boot protocol's, written and read by the `bootproto` crate.
//!
//! Architecture invariant: init never exits (PID 1 exiting panics the
//! kernel) and never leaves the guest running: every path, errors and
//! panics included, ends in [`sys::power_off`]. All unsafe code is in [`sys`].

#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod child;
mod config;
mod ktap;
mod modes;
mod speed;
#[allow(unsafe_code)]
mod sys;

use std::ffi::CStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use bootproto::status::Status;
use bootproto::{cmdline, key, DATA_LABEL};
use child::Reaper;
use config::{Config, CONSOLE};
use rustix::io::Errno;
use rustix::mount::{mount, MountFlags};

/// A file system to mount at boot; the source is the file system's name.
struct Mount {
    fstype: &'static str,
    target: &'static str,
    flags: MountFlags,
    data: &'static CStr,
}

/// What init mounts, in order. Each target is created if missing; one
/// already mounted (with this type) is left alone.
const MOUNTS: &[Mount] = &[
    Mount {
        fstype: "proc",
        target: "/proc",
        flags: MountFlags::NOSUID
            .union(MountFlags::NODEV)
            .union(MountFlags::NOEXEC),
        data: c"",
    },
    Mount {
        fstype: "sysfs",
        target: "/sys",
        flags: MountFlags::NOSUID
            .union(MountFlags::NODEV)
            .union(MountFlags::NOEXEC),
        data: c"",
    },
    Mount {
        fstype: "devtmpfs",
        target: "/dev",
        flags: MountFlags::NOSUID,
        data: c"mode=0755",
    },
    Mount {
        fstype: "devpts",
        target: "/dev/pts",
        flags: MountFlags::NOSUID.union(MountFlags::NOEXEC),
        data: c"mode=0620,ptmxmode=0666",
    },
    Mount {
        fstype: "tmpfs",
        target: "/tmp",
        flags: MountFlags::NOSUID.union(MountFlags::NODEV),
        data: c"mode=1777",
    },
    Mount {
        fstype: "tmpfs",
        target: "/run",
        flags: MountFlags::NOSUID.union(MountFlags::NODEV),
        data: c"mode=0755",
    },
];

fn main() {
    let mut io = Channels::default();
    let result = panic::catch_unwind(AssertUnwindSafe(|| boot(&mut io)))
        .unwrap_or_else(|panic| Err(format!("init panicked: {}", ::ktap::payload_text(&*panic))));
    match result {
        Ok(status) => io.status(&Status::Exit(Some(status)).to_string()),
        Err(message) => io.error(&message),
    }
    io.drain();
    sys::power_off()
}

/// The boot, step by step; returns the exit status of what ran.
fn boot(io: &mut Channels) -> Result<i32, String> {
    mount_all(MOUNTS)?;
    reopen_stdio_on_console()?;
    let text = read_cmdline()?;
    let params = cmdline::parse(&text);
    mount_data(cmdline::last_value(&params, key::DATA));
    io.open_status(&config::status_path(&params))?;
    let uptime_ms = u64::try_from(sys::boottime().as_millis()).ok();
    io.status(&Status::Start { uptime_ms }.to_string());
    cmdline::check_quotes(&text)?;
    let config = Config::from_params(&params)?;
    let out = io.open_out(&config.out)?;
    let reaper = Reaper::new()?;
    modes::run(&config, &out, &reaper)
}

fn mount_all(mounts: &[Mount]) -> Result<(), String> {
    for m in mounts {
        if is_mounted(m) {
            continue;
        }
        fs::create_dir_all(m.target).map_err(|e| format!("mkdir {}: {e}", m.target))?;
        match mount(m.fstype, m.target, m.fstype, m.flags, m.data) {
            Err(Errno::BUSY) => {}
            Err(e) => return Err(format!("mount {} on {}: {e}", m.fstype, m.target)),
            Ok(()) => {}
        }
    }
    Ok(())
}

const DATA_DIR: &str = "/data";

/// How long a disk boot (`det.data=LABEL`) waits for its data partition:
/// USB and NVMe disks appear asynchronously, seconds after init starts on
/// a slow machine. Catches a missing disk, not a slow one.
const DATA_WAIT: Duration = Duration::from_secs(60);

/// Mounts the partition with the GPT name `wanted` (from `det.data=`, which
/// disk.img's command line carries), else [`DATA_LABEL`], as ext4 at
/// [`DATA_DIR`]. The partition is found by its name, never by a device
/// name, so it mounts from whatever disk the image was written to. With
/// `wanted`, init waits up to [`DATA_WAIT`] for it to appear. Never fails
/// the boot: without such a partition (a `-kernel` boot) nothing happens;
/// if mounting fails, a note goes to the console and the boot goes on.
fn mount_data(wanted: Option<&str>) {
    let label = wanted.unwrap_or(DATA_LABEL);
    let deadline = Instant::now() + DATA_WAIT;
    let dev = loop {
        match find_partition(label) {
            Some(dev) => break dev,
            None if wanted.is_some() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            None => {
                if wanted.is_some() {
                    let _ = writeln!(
                        io::stderr(),
                        "init: no partition named {label} after {} s; no {DATA_DIR}",
                        DATA_WAIT.as_secs()
                    );
                }
                return;
            }
        }
    };
    let result = fs::create_dir_all(DATA_DIR).and_then(|()| {
        mount(&dev, DATA_DIR, "ext4", MountFlags::NOATIME, c"").map_err(io::Error::from)
    });
    if let Err(e) = result {
        let _ = writeln!(io::stderr(), "init: not mounting {dev} on {DATA_DIR}: {e}");
    }
}

/// `/dev/<name>` of the first block device (in name order) whose GPT
/// partition name is `label`, read from sysfs (there is no udev here).
fn find_partition(label: &str) -> Option<String> {
    let mut names: Vec<String> = fs::read_dir("/sys/class/block")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names.into_iter().find_map(|name| {
        let uevent = fs::read_to_string(format!("/sys/class/block/{name}/uevent")).ok()?;
        uevent
            .lines()
            .any(|l| l.strip_prefix("PARTNAME=") == Some(label))
            .then(|| format!("/dev/{name}"))
    })
}

/// Whether `m` is mounted already (false while /proc is not).
fn is_mounted(m: &Mount) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts.lines().any(|line| {
        let mut fields = line.split(' ').skip(1);
        fields.next() == Some(m.target) && fields.next() == Some(m.fstype)
    })
}

/// Stdio on the devtmpfs console (the kernel opened the initramfs's). When
/// the console cannot be opened (its last `console=` is a serial port the
/// machine does not have), the screen's first terminal, else /dev/null:
/// init still serves a shell on every terminal that works (modes::shell).
fn reopen_stdio_on_console() -> Result<(), String> {
    let mut first_error = None;
    for path in [CONSOLE, "/dev/tty1", "/dev/null"] {
        match open_rw(Path::new(path)) {
            Ok(file) => {
                sys::replace_stdio(&file).map_err(|e| format!("dup2 {path}: {e}"))?;
                if let Some(e) = first_error {
                    let _ = writeln!(
                        io::stderr(),
                        "init: cannot open {CONSOLE} ({e}); using {path}"
                    );
                }
                return Ok(());
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(format!(
        "open {CONSOLE}: {}",
        first_error.map_or(String::new(), |e| e.to_string())
    ))
}

fn read_cmdline() -> Result<String, String> {
    let bytes = fs::read("/proc/cmdline").map_err(|e| format!("read /proc/cmdline: {e}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
}

/// The status channel and the output, once opened.
#[derive(Default)]
struct Channels {
    /// `None`: not opened yet, or the console; both mean stderr.
    status: Option<File>,
    out: Option<File>,
}

impl Channels {
    fn open_status(&mut self, path: &Path) -> Result<(), String> {
        self.status = open_channel(path).map_err(|e| format!("det.status: {e}"))?;
        Ok(())
    }

    fn open_out(&mut self, path: &Path) -> Result<File, String> {
        let out = match open_channel(path).map_err(|e| format!("det.out: {e}"))? {
            Some(file) => file,
            None => open_rw(path).map_err(|e| format!("det.out: open {}: {e}", path.display()))?,
        };
        let copy = out.try_clone().map_err(|e| format!("dup: {e}"))?;
        self.out = Some(copy);
        Ok(out)
    }

    /// Writes one status line, in one write. Errors are ignored: there is
    /// nowhere left to report them.
    fn status(&mut self, line: &str) {
        let line = format!("{line}\n");
        match &mut self.status {
            Some(file) => {
                let _ = file.write_all(line.as_bytes());
            }
            None => {
                let _ = io::stderr().write_all(line.as_bytes());
            }
        }
    }

    /// Reports an error on the status channel and on the console.
    fn error(&mut self, message: &str) {
        let line = Status::Error(message).to_string();
        self.status(&line);
        if self.status.is_some() {
            let _ = writeln!(io::stderr(), "{line}");
        }
    }

    /// Waits until the serial ports have sent everything written so far.
    fn drain(&self) {
        let stderr = io::stderr();
        let fds = [self.status.as_ref(), self.out.as_ref()]
            .into_iter()
            .flatten()
            .map(|f| f.as_fd())
            .chain([stderr.as_fd()]);
        for fd in fds {
            if fd.is_terminal() {
                let _ = sys::drain_output(fd);
            }
        }
    }
}

/// Opens a status or output channel for writing: `None` for the console
/// (which is stderr already). A terminal other than the console is set to
/// pass bytes unchanged (`\n`, not `\r\n`). The path must exist: a typo
/// must not turn into a new file that silently swallows the run's output.
fn open_channel(path: &Path) -> Result<Option<File>, String> {
    if path == Path::new(CONSOLE) {
        return Ok(None);
    }
    let file = OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    if file.is_terminal() {
        sys::disable_output_processing(file.as_fd())
            .map_err(|e| format!("set up terminal {}: {e}", path.display()))?;
    }
    Ok(Some(file))
}
