//! Every kernel command line the builder composes.
//!
//! Two shapes, after docs/boot-protocol.md: the **console** line of a
//! machine with a person at it (kernel messages on the serial port and the
//! screen, init's output and status there too) and the **harness** line of
//! a captured QEMU run (kernel console, program output and init's status on
//! ttyS0, ttyS1 and ttyS2). A disk image carries one of them
//! ([`builtin`]), plus where its data partition is ([`disk`]) and, for the
//! tour entry, `det.tour=1` ([`tour`]). The `det.*` keys and the encoding
//! of `det.run` are the boot protocol's (`bootproto`).
//!
//! The lines built into published artifacts (disk.img's UKI and syslinux
//! entries, `images/<profile>/cmdline`) are checked bit for bit by
//! `cargo det verify`: a change to their bytes is a change to the release.

use std::fmt::Display;

use bootproto::{key, Mode, DATA_LABEL};

use crate::profile::{Channels, Profile};

/// A command line being composed: parameters separated by single spaces.
struct Line(String);

impl Line {
    fn new(first: &str) -> Line {
        Line(first.to_string())
    }

    fn push(mut self, part: &str) -> Line {
        if !part.is_empty() {
            self.0.push(' ');
            self.0.push_str(part);
        }
        self
    }

    fn param(self, key: &str, value: impl Display) -> Line {
        self.push(&format!("{key}={value}"))
    }

    /// The profile's own extra parameters (`boot.cmdline`) come last, so
    /// they win where the kernel or init takes the last value.
    fn finish(self, profile: &Profile) -> String {
        self.push(profile.boot.cmdline.trim()).0
    }
}

/// What every line starts with: no reboot after a panic, so a crashed
/// guest ends its QEMU run (`-no-reboot`).
const PANIC: &str = "panic=-1";

/// The console line a profile boots with outside the harness. Kernel
/// messages go to the serial port and the screen; the screen (`tty0`)
/// comes last, so it is /dev/console: a PC without a serial port still has
/// a working console, and init serves a shell on both where both exist.
pub fn console(profile: &Profile) -> String {
    Line::new("console=ttyS0,115200 console=tty0")
        .push(PANIC)
        .push(&profile.boot.run.param())
        .finish(profile)
}

/// The serial ports of a harness run, after the kernel's console on ttyS0.
fn harness_channels(line: Line) -> Line {
    line.param(key::OUT, "/dev/ttyS1")
        .param(key::STATUS, "/dev/ttyS2")
}

/// The harness line that runs `run` in a guest with `cpus` CPUs; `extra`
/// parameters (e.g. `det.tests=`) go before the profile's own.
pub fn harness(profile: &Profile, cpus: u32, run: &Mode, extra: &[String]) -> String {
    let mut line = harness_channels(Line::new("console=ttyS0").push(PANIC).push(&run.param()))
        .param(key::CPUS, cpus);
    for e in extra {
        line = line.push(e);
    }
    line.finish(profile)
}

/// `det.tests=` for a harness run of only these test programs.
pub fn only_tests(names: &[impl AsRef<str>]) -> String {
    let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    format!("{}={}", key::TESTS, names.join(","))
}

/// The line of an interactive boot: the shell on the serial console
/// (ttyS0, the terminal), status lines on ttyS1.
pub fn interactive(profile: &Profile, cpus: u32) -> String {
    Line::new("console=ttyS0")
        .push(PANIC)
        .push(&Mode::Shell.param())
        .param(key::STATUS, "/dev/ttyS1")
        .param(key::CPUS, cpus)
        .finish(profile)
}

/// The KVM probe's line: `true` on a harness, nothing of any profile.
pub fn kvm_probe() -> String {
    harness_channels(
        Line::new("console=ttyS0")
            .push(PANIC)
            .push(&Mode::Command("true".into()).param()),
    )
    .0
}

/// The line built into a profile's disk.img, as `disk.channels` asks:
/// the console line, or the harness line of the profile's own mode.
pub fn builtin(profile: &Profile) -> String {
    match profile.disk.channels {
        Channels::Console => console(profile),
        Channels::Harness => harness(profile, profile.boot.cpus, &profile.boot.run, &[]),
    }
}

/// The line a disk boots with: `line` plus where the data partition is,
/// so init waits for it (USB and NVMe disks appear late) and finds it by
/// name on whatever disk the image was written to.
pub fn disk(line: &str) -> String {
    Line::new(line).param(key::DATA, DATA_LABEL).0
}

/// The disk's boot entry that shows the demos: init runs `tour` on the
/// screen, then its shell.
pub fn tour(line: &str) -> String {
    Line::new(&disk(line)).param(key::TOUR, 1).0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str) -> Profile {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Profile::load(&root.join("configs"), &root, name).unwrap()
    }

    /// The bytes of every line as they were before this module existed:
    /// published images carry them.
    #[test]
    fn lines_keep_their_bytes() {
        let mut p = profile("default");
        assert_eq!(
            console(&p),
            "console=ttyS0,115200 console=tty0 panic=-1 det.run=shell"
        );
        assert_eq!(builtin(&p), console(&p));
        assert_eq!(
            disk(&console(&p)),
            "console=ttyS0,115200 console=tty0 panic=-1 det.run=shell det.data=detlinux-data"
        );
        assert_eq!(
            tour("console=ttyS0"),
            "console=ttyS0 det.data=detlinux-data det.tour=1"
        );
        let t = profile("test");
        assert_eq!(
            builtin(&t),
            "console=ttyS0 panic=-1 det.run=tests det.out=/dev/ttyS1 det.status=/dev/ttyS2 det.cpus=2"
        );
        p.boot.cmdline = " quiet oops=panic ".into();
        assert_eq!(
            harness(
                &p,
                4,
                &Mode::Command("echo hi".into()),
                &[only_tests(&["boot", "sched"])]
            ),
            "console=ttyS0 panic=-1 det.runx=6563686f206869 det.out=/dev/ttyS1 \
             det.status=/dev/ttyS2 det.cpus=4 det.tests=boot,sched quiet oops=panic"
        );
        assert_eq!(
            console(&p),
            "console=ttyS0,115200 console=tty0 panic=-1 det.run=shell quiet oops=panic"
        );
        assert_eq!(
            interactive(&p, 2),
            "console=ttyS0 panic=-1 det.run=shell det.status=/dev/ttyS1 det.cpus=2 quiet oops=panic"
        );
        assert_eq!(
            kvm_probe(),
            "console=ttyS0 panic=-1 det.run=true det.out=/dev/ttyS1 det.status=/dev/ttyS2"
        );
    }
}
