//! `boot`: the guest came up as init promises. File systems are mounted
//! where they belong, the CPUs the host gave are online, this is our
//! kernel, init is `/init` as PID 1, the busybox shell works and time moves.

#![forbid(unsafe_code)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::process::Command;
use std::time::{Duration, Instant};

use det_guest_tests::{cmdline_value, parse_cpu_list, read, require_mount, sys};
use ktap::{ensure, Test, TestResult};

const TESTS: &[(&str, Test)] = &[
    ("proc_mounted", proc_mounted),
    ("sysfs_mounted", sysfs_mounted),
    ("devtmpfs_on_dev", devtmpfs_on_dev),
    ("devpts_and_run_mounted", devpts_and_run_mounted),
    ("tmp_is_writable_tmpfs", tmp_is_writable_tmpfs),
    ("cpus_online", cpus_online),
    ("kernel_release", kernel_release),
    ("init_is_pid1", init_is_pid1),
    ("busybox_shell_runs", busybox_shell_runs),
    ("monotonic_clock_advances", monotonic_clock_advances),
    ("signal_mask_not_inherited", signal_mask_not_inherited),
];

fn main() {
    ktap::run("boot", TESTS)
}

fn proc_mounted() -> TestResult {
    require_mount("/proc", "proc")?;
    let stat = read("/proc/self/stat")?;
    let pid = std::process::id().to_string();
    ensure!(
        stat.split(' ').next() == Some(pid.as_str()),
        "/proc/self/stat starts `{}`, not with our pid {pid}",
        stat.chars().take(20).collect::<String>()
    );
    Ok(())
}

fn sysfs_mounted() -> TestResult {
    require_mount("/sys", "sysfs")?;
    ensure!(
        fs::metadata("/sys/kernel").is_ok_and(|m| m.is_dir()),
        "/sys/kernel is not a directory"
    );
    Ok(())
}

fn devtmpfs_on_dev() -> TestResult {
    require_mount("/dev", "devtmpfs")?;
    let meta = fs::metadata("/dev/null").map_err(|e| format!("stat /dev/null: {e}"))?;
    ensure!(
        meta.file_type().is_char_device(),
        "/dev/null is not a character device"
    );
    let (major, minor) = (
        rustix::fs::major(meta.rdev()),
        rustix::fs::minor(meta.rdev()),
    );
    ensure!(
        (major, minor) == (1, 3),
        "/dev/null is device {major}:{minor}, not 1:3"
    );
    fs::write("/dev/null", b"x").map_err(|e| format!("write /dev/null: {e}"))?;
    Ok(())
}

fn devpts_and_run_mounted() -> TestResult {
    require_mount("/dev/pts", "devpts")?;
    require_mount("/run", "tmpfs")?;
    Ok(())
}

fn tmp_is_writable_tmpfs() -> TestResult {
    require_mount("/tmp", "tmpfs")?;
    let path = format!("/tmp/boot-test.{}", std::process::id());
    let data = b"detlinux boot test\n";
    fs::write(&path, data).map_err(|e| format!("write {path}: {e}"))?;
    let back = fs::read(&path).map_err(|e| format!("read {path}: {e}"));
    let removed = fs::remove_file(&path).map_err(|e| format!("remove {path}: {e}"));
    ensure!(back? == data, "{path} read back different bytes");
    removed?;
    ensure!(
        fs::metadata(&path).is_err(),
        "{path} still exists after removal"
    );
    Ok(())
}

fn cpus_online() -> TestResult {
    let online = parse_cpu_list(&read("/sys/devices/system/cpu/online")?)?;
    let possible = parse_cpu_list(&read("/sys/devices/system/cpu/possible")?)?;
    ensure!(
        online == possible,
        "online CPUs {online:?} are not the possible ones {possible:?}"
    );
    let usable = std::thread::available_parallelism()
        .map_err(|e| format!("sched_getaffinity: {e}"))?
        .get();
    ensure!(
        usable == online.len(),
        "{usable} CPUs usable by this process, {} online",
        online.len()
    );
    match cmdline_value(bootproto::key::CPUS)? {
        None => ktap::diag("det.cpus not given: only checked online == possible"),
        Some(text) => {
            let want: usize = text
                .parse()
                .map_err(|_| format!("det.cpus=`{text}` is not a number"))?;
            ensure!(
                online.len() == want,
                "{} CPUs online ({online:?}), det.cpus={want}",
                online.len()
            );
        }
    }
    Ok(())
}

fn kernel_release() -> TestResult {
    let release = sys::kernel_release()?;
    ensure!(
        release.starts_with("6.12.") && release.ends_with("-detlinux"),
        "kernel release is `{release}`, want 6.12.*-detlinux"
    );
    let proc_release = read("/proc/sys/kernel/osrelease")?;
    ensure!(
        proc_release.trim_end() == release,
        "/proc/sys/kernel/osrelease says `{}`, uname `{release}`",
        proc_release.trim_end()
    );
    Ok(())
}

fn init_is_pid1() -> TestResult {
    let exe = fs::read_link("/proc/1/exe").map_err(|e| format!("readlink /proc/1/exe: {e}"))?;
    ensure!(
        exe.as_os_str() == "/init",
        "PID 1 runs {}, not /init",
        exe.display()
    );
    let stat = read("/proc/1/stat")?;
    ensure!(
        stat.starts_with("1 (init) "),
        "/proc/1/stat starts `{}`",
        stat.chars().take(20).collect::<String>()
    );
    Ok(())
}

fn busybox_shell_runs() -> TestResult {
    let output = Command::new("/bin/sh")
        .args(["-c", "echo ok"])
        .output()
        .map_err(|e| format!("cannot run /bin/sh: {e}"))?;
    ensure!(
        output.status.success(),
        "/bin/sh -c 'echo ok': {}",
        output.status
    );
    ensure!(
        output.stdout == b"ok\n",
        "/bin/sh -c 'echo ok' printed {:?}",
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(())
}

fn monotonic_clock_advances() -> TestResult {
    let pause = Duration::from_millis(10);
    let start = Instant::now();
    std::thread::sleep(pause);
    let elapsed = start.elapsed();
    ensure!(
        elapsed >= pause,
        "CLOCK_MONOTONIC advanced {elapsed:?} over a {pause:?} sleep"
    );
    Ok(())
}

/// Init blocks SIGCHLD for itself; the programs it starts must not inherit
/// that (nor any other blocked signal).
fn signal_mask_not_inherited() -> TestResult {
    let status = read("/proc/self/status")?;
    let blocked = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .map(str::trim)
        .ok_or("no SigBlk line in /proc/self/status")?;
    ensure!(
        blocked.bytes().all(|b| b == b'0'),
        "signals blocked at start: SigBlk {blocked}"
    );
    Ok(())
}
