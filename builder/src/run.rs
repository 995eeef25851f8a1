//! The verbs that boot a guest for a person: `run` (a shell on the serial
//! console, or one command and its exit status), `demo` (the demo tour)
//! and `membench` (the memory-operation microbenchmark). Their output
//! streams to the terminal as the guest writes it.

use std::fs;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use bootproto::Mode;

use crate::build::{self, Image};
use crate::cmdline;
use crate::profile::{Profile, ProfileArg};
use crate::project::Project;
use crate::qemu::{self, Boot, BootOpts, DiskBoot, Logs, Media};
use crate::userland;
use crate::verdict::{self, Verdict};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub profile: ProfileArg,
    #[command(flatten)]
    pub boot: BootOpts,
    /// Boot images/<profile>/disk.img through firmware instead of handing
    /// QEMU the kernel: `--disk` or `--disk uefi` under OVMF, `--disk bios`
    /// under SeaBIOS through syslinux. A command runs from a one-off copy
    /// of the disk whose built-in command line carries it; without one the
    /// disk boots as published.
    #[arg(long, value_enum, value_name = "FIRMWARE", num_args = 0..=1, default_missing_value = "uefi")]
    pub disk: Option<DiskBoot>,
    /// Command to run in the guest (through /bin/sh); without one, an
    /// interactive shell on the serial console.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `cargo det run`: interactive shell, or one command with its status.
pub fn run(project: &Project, args: &Args) -> Result<ExitCode> {
    let profile = project.profile(&args.profile.profile)?;
    let image = build::build(project, &profile)?;
    let mut boot = Boot::resolve(project, &profile, &image, &args.boot);
    let run = if args.command.is_empty() {
        profile.boot.run.clone()
    } else {
        Mode::parse(&shell_join(&args.command)).map_err(anyhow::Error::msg)?
    };
    let logs = Logs {
        dir: project.images().join("logs").join(match args.disk {
            None => profile.name.clone(),
            Some(d) => format!("{}-{}", profile.name, d.name()),
        }),
    };
    if run == Mode::Shell {
        if let Some(d) = args.disk {
            boot.media = Media::Disk {
                image: image.disk_image.clone(),
                firmware: d.firmware(&logs.dir)?,
            };
        }
        return interactive(&profile, &image, &boot, &logs.dir);
    }
    let cmdline = cmdline::harness(&profile, boot.cpus, &run, &[]);
    if let Some(d) = args.disk {
        boot.media = Media::Disk {
            image: image.disk_for(&profile, &cmdline, &logs.dir)?,
            firmware: d.firmware(&logs.dir)?,
        };
    }
    let o = qemu::boot_captured(&image, &boot, &cmdline, logs, false, streamer())?;
    let c = &o.classification;
    let what = match (c.verdict, c.exit_status) {
        (Verdict::Passed | Verdict::Failed, Some(s)) => format!("exit status {s}"),
        (v, _) => v.to_string(),
    };
    eprintln!(
        "guest: {what} after {:.1}s ({:?}{}{})",
        o.elapsed.as_secs_f64(),
        boot.accel,
        match &boot.media {
            Media::Kernel => String::new(),
            Media::Disk { firmware, .. } => format!(", disk via {}", firmware.name()),
        },
        c.init_uptime_ms
            .map(|ms| format!(", init at {:.2}s guest time", ms as f64 / 1000.0))
            .unwrap_or_default()
    );
    match (c.verdict, c.exit_status) {
        (Verdict::Passed | Verdict::Failed, Some(s)) => Ok(ExitCode::from(s.clamp(0, 255) as u8)),
        _ => {
            qemu::report_problem(project, &o);
            Ok(problem_code(c.verdict))
        }
    }
}

/// `cargo det membench`: the test profile with `det_membench` as the
/// command.
pub fn membench(project: &Project, boot: &BootOpts) -> Result<ExitCode> {
    run(
        project,
        &Args {
            profile: ProfileArg {
                profile: "test".into(),
            },
            boot: boot.clone(),
            disk: None,
            command: vec![format!("/{}/det_membench", userland::BENCH_DIR)],
        },
    )
}

/// Serial console on the terminal; Ctrl-A X quits QEMU. A disk boots with
/// its own command line: ttyS1 and ttyS2 go to files, so a disk built for
/// the harness works too.
fn interactive(profile: &Profile, image: &Image, boot: &Boot, logs: &Path) -> Result<ExitCode> {
    fs::create_dir_all(logs)?;
    let cmdline = cmdline::interactive(profile, boot.cpus);
    let mut q = qemu::base_command(image, boot, &cmdline);
    q.args(["-serial", "mon:stdio"]);
    if matches!(boot.media, Media::Disk { .. }) {
        q.arg("-serial")
            .arg(format!("file:{}", logs.join("output.log").display()));
    }
    q.arg("-serial")
        .arg(format!("file:{}", logs.join("status.log").display()));
    if std::io::stdin().is_terminal() {
        eprintln!("detlinux shell on the serial console; `exit` powers off, Ctrl-A X quits QEMU");
    }
    let status = q.status().context("starting qemu-system-x86_64")?;
    let (_, exit, errors) =
        verdict::status_lines(&fs::read_to_string(logs.join("status.log")).unwrap_or_default());
    for e in errors {
        eprintln!("init: {e}");
    }
    Ok(match exit {
        Some(s) => ExitCode::from(s.clamp(0, 255) as u8),
        None if status.success() => ExitCode::SUCCESS,
        None => ExitCode::from(125),
    })
}

/// `cargo det demo`: boot the default profile and run the demos.
pub fn demo(project: &Project, opts: &BootOpts) -> Result<ExitCode> {
    let profile = project.profile("default")?;
    let image = build::build(project, &profile)?;
    let boot = Boot::resolve(project, &profile, &image, opts);
    let cmdline = cmdline::harness(&profile, boot.cpus, &Mode::Demos, &[]);
    let logs = Logs {
        dir: project.images().join("logs").join("demo"),
    };
    eprintln!(
        "booting images/{} with det.run=demos ({:?})",
        profile.name, boot.accel
    );
    let o = qemu::boot_captured(&image, &boot, &cmdline, logs, false, streamer())?;
    let c = &o.classification;
    eprintln!(
        "demo: {} in {:.1}s{}",
        c.verdict,
        o.elapsed.as_secs_f64(),
        c.init_uptime_ms
            .map(|ms| format!(" (init at {:.2}s guest time)", ms as f64 / 1000.0))
            .unwrap_or_default()
    );
    if c.verdict == Verdict::Passed {
        Ok(ExitCode::SUCCESS)
    } else {
        qemu::report_problem(project, &o);
        Ok(match c.exit_status {
            Some(s) if c.verdict == Verdict::Failed => ExitCode::from(s.clamp(1, 255) as u8),
            _ => problem_code(c.verdict),
        })
    }
}

/// Stream the program output to stdout as it grows.
fn streamer() -> impl FnMut(&str) {
    let mut shown = 0;
    move |text: &str| {
        if text.len() > shown {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&text.as_bytes()[shown..]);
            let _ = out.flush();
            shown = text.len();
        }
    }
}

/// The exit code a harness-level problem maps to.
fn problem_code(v: Verdict) -> ExitCode {
    match v {
        Verdict::Timeout => ExitCode::from(124),
        _ => ExitCode::from(125),
    }
}

/// Join arguments into one `/bin/sh -c` string, quoting where needed.
pub fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if bootproto::is_plain_word(a) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_join_quotes_what_needs_it() {
        let a = |v: &[&str]| shell_join(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(a(&["uname", "-r"]), "uname -r");
        assert_eq!(a(&["echo", "a b"]), "echo 'a b'");
        assert_eq!(a(&["echo", "it's"]), r"echo 'it'\''s'");
        assert_eq!(a(&["sh", "-c", "exit 3"]), "sh -c 'exit 3'");
        assert_eq!(a(&[""]), "''");
    }
}
