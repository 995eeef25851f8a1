//! Booting images in QEMU: the machine, its media and firmware, captured
//! runs, the KVM probe. The verbs that boot live elsewhere (`run`, `test`,
//! `bench`, `check`, `pc`).
//!
//! A guest gets three serial ports, each captured to its own file, so the
//! kernel console, the program's output and init's status lines never mix:
//! ttyS0 = kernel console, ttyS1 = program output, ttyS2 = status
//! (`DET-INIT start ...`, `DET-EXIT status=N`). QEMU runs with `-no-reboot`
//! and the kernel with `panic=-1`, so a panic ends the run instead of
//! hanging it; a time limit catches everything else.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::build::Image;
use crate::cmdline;
use crate::deps;
use crate::profile::{AccelChoice, Profile};
use crate::project::Project;
use crate::verdict::{self, Classification, RunLogs, Verdict};

/// Options for every verb that boots a guest.
#[derive(clap::Args, Clone)]
pub struct BootOpts {
    /// Accelerator (overrides the profile).
    #[arg(long, value_enum)]
    pub accel: Option<AccelChoice>,
    /// Guest CPUs (overrides the profile).
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Time limit for the whole boot, in seconds (overrides the profile;
    /// a test run multiplies it by the guest's speed factor).
    #[arg(long)]
    pub timeout: Option<u64>,
}

/// How to boot: resolved from the profile and the command line.
pub struct Boot {
    pub accel: Accel,
    pub cpus: u32,
    pub memory_mib: u32,
    pub timeout: Duration,
    pub media: Media,
}

/// What the guest boots from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Media {
    /// `-kernel bzImage -initrd initramfs -append CMDLINE`.
    Kernel,
    /// A disk image through firmware; the command line is the disk's own.
    /// QEMU gets the image with `snapshot=on`: a boot never changes it.
    Disk { image: PathBuf, firmware: Firmware },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// OVMF: its code read-only, its variables in a per-run copy.
    Uefi { code: PathBuf, vars: PathBuf },
    /// SeaBIOS, QEMU's default.
    Bios,
}

impl Firmware {
    pub fn name(&self) -> &'static str {
        match self {
            Firmware::Uefi { .. } => "uefi",
            Firmware::Bios => "bios",
        }
    }
}

/// The firmware a disk boots through (`run --disk`, the test profile's
/// disk runs, the PC boots).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DiskBoot {
    /// OVMF, through the UKI at \EFI\BOOT\BOOTX64.EFI.
    Uefi,
    /// SeaBIOS, through syslinux.
    Bios,
}

impl DiskBoot {
    pub fn name(self) -> &'static str {
        match self {
            DiskBoot::Uefi => "uefi",
            DiskBoot::Bios => "bios",
        }
    }

    /// The firmware, its per-run files in `run_dir`.
    pub fn firmware(self, run_dir: &Path) -> Result<Firmware> {
        match self {
            DiskBoot::Uefi => uefi_firmware(Path::new(OVMF_DIR), run_dir),
            DiskBoot::Bios => Ok(Firmware::Bios),
        }
    }
}

/// Where Debian's ovmf package puts the firmware.
pub const OVMF_DIR: &str = "/usr/share/OVMF";

/// OVMF from `dir`, with a fresh copy of its variable store in `run_dir`
/// (a boot writes to it; the package's file must stay pristine).
pub fn uefi_firmware(dir: &Path, run_dir: &Path) -> Result<Firmware> {
    let code = dir.join("OVMF_CODE_4M.fd");
    let vars = dir.join("OVMF_VARS_4M.fd");
    for f in [&code, &vars] {
        if !f.is_file() {
            anyhow::bail!(
                "UEFI firmware not found: {} is missing (package ovmf; run `cargo det deps`), or boot with `--disk bios`",
                f.display()
            );
        }
    }
    fs::create_dir_all(run_dir)?;
    let copy = run_dir.join("OVMF_VARS_4M.fd");
    fs::copy(&vars, &copy)
        .with_context(|| format!("copying {} to {}", vars.display(), copy.display()))?;
    Ok(Firmware::Uefi { code, vars: copy })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Boot {
    pub fn resolve(project: &Project, profile: &Profile, image: &Image, o: &BootOpts) -> Boot {
        let accel = match o.accel.unwrap_or(profile.boot.accel) {
            AccelChoice::Tcg => Accel::Tcg,
            AccelChoice::Kvm => Accel::Kvm,
            AccelChoice::Auto => probe_kvm(project, image),
        };
        Boot {
            accel,
            cpus: o.cpus.unwrap_or(profile.boot.cpus),
            memory_mib: profile.boot.memory_mib,
            timeout: Duration::from_secs(o.timeout.unwrap_or(profile.boot.timeout_secs)),
            media: Media::Kernel,
        }
    }
}

/// The files a captured run writes.
pub struct Logs {
    pub dir: PathBuf,
}

impl Logs {
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    pub fn output(&self) -> PathBuf {
        self.dir.join("output.log")
    }
    pub fn status(&self) -> PathBuf {
        self.dir.join("status.log")
    }
}

/// What a captured run produced.
pub struct Outcome {
    pub classification: Classification,
    pub console: String,
    pub output: String,
    pub elapsed: Duration,
    /// The guest's speed factor, if it reported one.
    pub speed: Option<f64>,
    pub logs: Logs,
}

/// The CPU model of a TCG guest: QEMU's `max` without ERMS. TCG runs
/// `rep movsb` and `rep stosb` one byte per iteration (QEMU 7.2), and with
/// ERMS the guest kernel clears and copies every page with them: a
/// copy-on-write fault cost 10.4 µs, against 4.2 µs with the 8-byte
/// string instructions the kernel uses without it (docs/benchmarks.md,
/// "The guest CPU"). On hardware both are a fraction of a microsecond.
const TCG_CPU: &str = "max,erms=off";

/// A q35 machine with `cpus` and `memory_mib`, accelerated as `accel`,
/// with no default devices and no display: what every boot starts from.
pub fn machine(cpus: u32, memory_mib: u32, accel: Accel) -> Command {
    let mut q = deps::command("qemu-system-x86_64");
    q.args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ])
    .args(["-machine", "q35"])
    .args(["-smp", &cpus.to_string()])
    .args(["-m", &format!("{memory_mib}M")]);
    match accel {
        Accel::Tcg => q.args(["-accel", "tcg", "-cpu", TCG_CPU]),
        Accel::Kvm => q.args(["-accel", "kvm", "-cpu", "host"]),
    };
    q
}

/// UEFI's code and variables as the two flash drives (nothing for BIOS,
/// whose SeaBIOS is QEMU's default).
pub fn add_firmware(q: &mut Command, firmware: &Firmware) {
    if let Firmware::Uefi { code, vars } = firmware {
        q.arg("-drive").arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            qemu_path(code)
        ));
        q.arg("-drive").arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            qemu_path(vars)
        ));
    }
}

/// The machine of `boot`, its media and `cmdline` (for a kernel boot).
pub fn base_command(image: &Image, boot: &Boot, cmdline: &str) -> Command {
    let mut q = machine(boot.cpus, boot.memory_mib, boot.accel);
    match &boot.media {
        Media::Kernel => {
            q.arg("-kernel")
                .arg(&image.bzimage)
                .arg("-initrd")
                .arg(&image.initramfs)
                .args(["-append", cmdline]);
        }
        Media::Disk { image, firmware } => {
            add_firmware(&mut q, firmware);
            q.arg("-drive").arg(format!(
                "if=none,id=disk0,format=raw,snapshot=on,file={}",
                qemu_path(image)
            ));
            q.args(["-device", "virtio-blk-pci,drive=disk0,bootindex=0"]);
        }
    }
    q
}

/// A path inside a QEMU option list: commas are doubled.
fn qemu_path(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// Boot with all three channels captured to files in `logs`, calling
/// `watch` with the program output so far while the guest runs.
pub fn boot_captured(
    image: &Image,
    boot: &Boot,
    cmdline: &str,
    logs: Logs,
    expect_ktap: bool,
    mut watch: impl FnMut(&str),
) -> Result<Outcome> {
    fs::create_dir_all(&logs.dir)?;
    for f in [logs.console(), logs.output(), logs.status()] {
        fs::write(&f, "")?;
    }
    let mut q = base_command(image, boot, cmdline);
    for f in [logs.console(), logs.output(), logs.status()] {
        q.arg("-serial").arg(format!("file:{}", f.display()));
    }
    q.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = q.spawn().context("starting qemu-system-x86_64")?;
    let mut tail = Tail::new(logs.output());
    // OVMF prints its boot messages on every serial port, the program
    // output's included; they come before anything init writes.
    tail.preamble = matches!(
        boot.media,
        Media::Disk {
            firmware: Firmware::Uefi { .. },
            ..
        }
    );
    let mut timed_out = false;
    // The limit catches a hung guest, not a slow one: once the guest has
    // measured its speed factor, the limit is scaled by it. Init prints the
    // factor right after the KTAP header, so only the start of the output
    // is searched, and only when it has grown.
    const SPEED_WITHIN: usize = 64 << 10;
    let mut speed = None;
    let mut limit = boot.timeout;
    let exit = loop {
        if let Some(status) = child.try_wait()? {
            break status.code();
        }
        if started.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        if tail.poll() {
            if speed.is_none() && tail.text.len() <= SPEED_WITHIN {
                speed = verdict::speed_scale(&tail.text);
                limit = boot.timeout.mul_f64(speed.unwrap_or(1.0));
            }
            watch(&tail.text);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = started.elapsed();
    let mut qemu_err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut qemu_err);
    }
    tail.poll();
    watch(&tail.text);
    let console = fs::read_to_string(logs.console()).unwrap_or_default();
    let status = fs::read_to_string(logs.status()).unwrap_or_default();
    let output = tail.text.clone();
    let mut classification = verdict::classify(
        &RunLogs {
            console: &console,
            output: &output,
            status: &status,
            timed_out,
            qemu_exit: exit,
        },
        expect_ktap,
    );
    if timed_out {
        classification.reason = format!(
            "{}; stopped at {:.0} s (boot.timeout_secs {} x speed factor {:.2})",
            classification.reason,
            limit.as_secs_f64(),
            boot.timeout.as_secs(),
            speed.unwrap_or(1.0)
        );
    }
    if classification.verdict == Verdict::BootError && !qemu_err.trim().is_empty() {
        classification.reason = format!("{}; qemu: {}", classification.reason, qemu_err.trim());
    }
    Ok(Outcome {
        classification,
        console,
        output,
        elapsed,
        speed,
        logs,
    })
}

/// Follows a growing file.
struct Tail {
    path: PathBuf,
    text: String,
    pos: u64,
    /// Still dropping firmware lines at the start (see [`firmware_line`]);
    /// an incomplete line waits in `held` until it can be judged.
    preamble: bool,
    held: String,
}

/// A line UEFI firmware prints on a serial port before the kernel runs:
/// terminal control sequences, OVMF's boot manager, the kernel's EFI stub.
pub fn firmware_line(line: &str) -> bool {
    line.contains('\x1b') || line.starts_with("BdsDxe: ") || line.starts_with("EFI stub: ")
}

impl Tail {
    fn new(path: PathBuf) -> Tail {
        Tail {
            path,
            text: String::new(),
            pos: 0,
            preamble: false,
            held: String::new(),
        }
    }

    /// Append `new`, dropping the firmware preamble while there is one.
    fn push(&mut self, new: &str) {
        if !self.preamble {
            self.text.push_str(new);
            return;
        }
        self.held.push_str(new);
        while let Some(end) = self.held.find('\n') {
            if firmware_line(&self.held[..end]) {
                self.held.drain(..=end);
            } else {
                self.preamble = false;
                break;
            }
        }
        if !self.preamble {
            self.text.push_str(&std::mem::take(&mut self.held));
        }
    }

    /// Read what was appended; true if anything was.
    fn poll(&mut self) -> bool {
        let Ok(mut f) = fs::File::open(&self.path) else {
            return false;
        };
        if f.seek(SeekFrom::Start(self.pos)).is_err() {
            return false;
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() || buf.is_empty() {
            return false;
        }
        self.pos += buf.len() as u64;
        let before = self.text.len();
        self.push(&String::from_utf8_lossy(&buf).replace('\r', ""));
        self.text.len() > before
    }
}

/// Print what went wrong with a boot, with the console's tail.
pub fn report_problem(project: &Project, o: &Outcome) {
    let c = &o.classification;
    eprintln!("{}: {}", c.verdict, c.reason);
    for r in &c.kernel_reports {
        eprintln!("  kernel report: {r}");
    }
    if matches!(
        c.verdict,
        Verdict::BootError | Verdict::Crashed | Verdict::Timeout
    ) {
        eprintln!("last lines of the kernel console:");
        eprintln!("{}", crate::progress::tail_lines(&o.console, 40));
    }
    eprintln!("logs: {}", project.show(&o.logs.dir));
}

/// A `watch` for [`boot_captured`] that calls `f` once for each complete
/// line of program output, as it arrives.
pub fn each_line(mut f: impl FnMut(&str)) -> impl FnMut(&str) {
    let mut seen = 0;
    move |text: &str| {
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        if complete > seen {
            text[seen..complete].lines().for_each(&mut f);
            seen = complete;
        }
    }
}

/// KVM only when it demonstrably works: the CPU must advertise vmx/svm,
/// /dev/kvm must open, and a real boot must finish within a time limit.
/// The verdict is cached per kernel and QEMU version.
fn probe_kvm(project: &Project, image: &Image) -> Accel {
    let flags = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let virt = flags
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if !virt
        || fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_err()
    {
        return Accel::Tcg;
    }
    let qemu = crate::progress::first_line("qemu-system-x86_64", "--version").unwrap_or_default();
    let mut key = crate::fsutil::Key::new("kvm-probe");
    key.field("kernel", &image.kernel.key).field("qemu", qemu);
    let memo = project.cache("kvm-probe").join(&key.hex()[..16]);
    if let Ok(v) = fs::read_to_string(&memo) {
        return if v == "kvm" { Accel::Kvm } else { Accel::Tcg };
    }
    let boot = Boot {
        accel: Accel::Kvm,
        cpus: 1,
        memory_mib: 256,
        timeout: Duration::from_secs(20),
        media: Media::Kernel,
    };
    let logs = Logs {
        dir: project.cache("kvm-probe").join("logs"),
    };
    let cmdline = cmdline::kvm_probe();
    let works = boot_captured(image, &boot, &cmdline, logs, false, |_| {})
        .map(|o| o.classification.verdict == Verdict::Passed)
        .unwrap_or(false);
    let verdict = if works { "kvm" } else { "tcg" };
    let _ = fs::create_dir_all(memo.parent().unwrap_or(Path::new(".")));
    let _ = fs::write(&memo, verdict);
    if !works {
        eprintln!("KVM probe failed (guest did not finish in 20 s): using TCG");
    }
    if works {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_sees_every_complete_line_once() {
        let mut seen = Vec::new();
        {
            let mut watch = each_line(|l| seen.push(l.to_string()));
            watch("a\nb");
            watch("a\nb");
            watch("a\nbc\nd\n");
            watch("a\nbc\nd\n");
        }
        assert_eq!(seen, ["a", "bc", "d"]);
    }

    #[test]
    fn missing_ovmf_is_a_clear_error_and_nothing_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let fw = root.join("fw");
        let run = root.join("run");
        fs::create_dir_all(&fw).unwrap();
        fs::write(fw.join("OVMF_VARS_4M.fd"), b"vars").unwrap();
        let err = uefi_firmware(&fw, &run).unwrap_err().to_string();
        assert!(
            err.contains("OVMF_CODE_4M.fd is missing") && err.contains("ovmf"),
            "{err}"
        );
        assert!(!run.exists(), "nothing may be written on error");
        fs::write(fw.join("OVMF_CODE_4M.fd"), b"code").unwrap();
        match uefi_firmware(&fw, &run).unwrap() {
            Firmware::Uefi { code, vars } => {
                assert_eq!(code, fw.join("OVMF_CODE_4M.fd"));
                assert_eq!(vars, run.join("OVMF_VARS_4M.fd"));
                assert_eq!(fs::read(vars).unwrap(), b"vars");
            }
            Firmware::Bios => panic!("expected UEFI"),
        }
    }

    #[test]
    fn uefi_preamble_is_dropped_from_the_output_even_in_pieces() {
        let mut t = Tail::new(PathBuf::from("/nonexistent"));
        t.preamble = true;
        t.push("\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001\nBdsDxe: star");
        assert_eq!(t.text, "");
        t.push("ting Boot0001\nEFI stub: Loaded initrd\nKTAP version 1\n1..2");
        assert_eq!(t.text, "KTAP version 1\n1..2");
        t.push("\nBdsDxe: not firmware any more\n");
        assert!(t.text.ends_with("1..2\nBdsDxe: not firmware any more\n"));
        let mut plain = Tail::new(PathBuf::from("/nonexistent"));
        plain.push("BdsDxe: kept without a preamble\n");
        assert_eq!(plain.text, "BdsDxe: kept without a preamble\n");
    }
}
