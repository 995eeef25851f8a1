//! Booting a disk image the way a PC boots it, and reading its screen.
//!
//! The guest is an ordinary PC as QEMU models one: q35, OVMF or SeaBIOS, a
//! VGA screen, a USB keyboard on an xHCI controller, the disk on NVMe or as
//! a USB stick, and no serial port at all. The harness talks to it the way
//! a person does: it reads the screen (QMP `screendump`, then `tesseract`)
//! and types on the USB keyboard (QMP `input-send-event` aimed at that
//! keyboard). It waits for the shell's prompt, types a command, waits for
//! the command's output to appear on the screen, then presses the power
//! button (`system_powerdown`) and expects the machine to power off.
//!
//! Every screen read is a screenshot plus its OCR text in the run's log
//! directory; a passing run keeps only the last pair, a failing one all.
//! Time limits catch hangs: each is a base figure times the speed factor
//! the guest measured in the same `cargo det test` (docs/boot-protocol.md).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::deps;
use crate::qemu::{self, Accel, DiskBoot};

/// How the disk is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// An NVMe SSD.
    Nvme,
    /// A USB stick on the xHCI controller (bulk-only mass storage).
    Usb,
}

impl Storage {
    pub fn name(self) -> &'static str {
        match self {
            Storage::Nvme => "nvme",
            Storage::Usb => "usb",
        }
    }
}

/// One PC boot: what to boot and what to type.
pub struct Pc<'a> {
    /// A disk image file or a block device (booted with `snapshot=on`).
    pub disk: &'a Path,
    pub firmware: DiskBoot,
    pub storage: Storage,
    pub accel: Accel,
    pub cpus: u32,
    pub memory_mib: u32,
    /// Multiplies every time limit (the guest's measured speed factor).
    pub scale: f64,
    /// The command typed at the prompt, and text its output must show.
    pub command: &'a str,
    pub expect: &'a [&'a str],
    pub logs: PathBuf,
}

/// What a PC boot showed.
#[derive(Debug)]
pub struct Seen {
    /// QEMU start to the first screen read that showed the prompt.
    pub to_prompt: Duration,
    /// The screen's text once the command's output had appeared.
    pub screen: String,
}

/// Base limits, before the speed factor.
const PROMPT_LIMIT: Duration = Duration::from_secs(240);
const OUTPUT_LIMIT: Duration = Duration::from_secs(120);
const POWER_OFF_LIMIT: Duration = Duration::from_secs(60);
/// Between two screen reads while waiting.
const READ_EVERY: Duration = Duration::from_secs(2);

/// The shell's prompt as it reads on the screen (`detlinux:~# `, maybe
/// with the cursor after it). OCR may split the word or misread the `~`,
/// so spaces are ignored and anything may stand between `:` and `#`.
pub fn shows_prompt(text: &str) -> bool {
    text.lines().any(|l| {
        let l: String = l.chars().filter(|c| !c.is_whitespace()).collect();
        l.starts_with("detlinux:") && l.trim_end_matches('_').ends_with('#') && l.len() <= 16
    })
}

/// Whether the screen shows every `expect` string outside the lines that
/// echo the typed command (its echo must not count as its output). The
/// strings may sit on different lines: an output line longer than the
/// screen is wide wraps. Both sides are compared [`normalized`]: OCR reads
/// a bitmap font's `ok=yes` as `ok=-yes` now and then.
pub fn shows_output(text: &str, command: &str, expect: &[&str]) -> bool {
    let typed = normalized(command);
    let output: Vec<String> = text
        .lines()
        .map(normalized)
        .filter(|l| !l.contains(&typed))
        .collect();
    expect
        .iter()
        .all(|e| output.iter().any(|l| l.contains(&normalized(e))))
}

/// Lower case letters, digits, `=` and `/`, one space between words:
/// what is left of a line once OCR's stray punctuation is dropped.
pub fn normalized(line: &str) -> String {
    let kept: String = line
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '=' | '/' | ' '))
        .collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Boot `pc`, wait for the prompt, type the command, check its output,
/// press the power button. An error says which step failed; the logs
/// directory then keeps every screenshot and its text.
pub fn run(pc: &Pc) -> Result<Seen> {
    let _ = fs::remove_dir_all(&pc.logs);
    fs::create_dir_all(&pc.logs)?;
    let mut guest = Guest::start(pc)?;
    let result = guest.session(pc);
    guest.stop();
    let _ = fs::remove_file(pc.logs.join("qmp.sock"));
    match &result {
        Ok(_) => guest.screens.keep_last()?,
        Err(e) => {
            let _ = fs::write(pc.logs.join("failure.txt"), format!("{e:#}\n"));
        }
    }
    result
}

struct Guest {
    qemu: Child,
    qmp: Qmp,
    started: Instant,
    screens: Screens,
}

impl Guest {
    fn start(pc: &Pc) -> Result<Guest> {
        let socket = pc.logs.join("qmp.sock");
        let mut q = qemu::machine(pc.cpus, pc.memory_mib, pc.accel);
        if pc.firmware == DiskBoot::Uefi {
            qemu::add_firmware(&mut q, &pc.firmware.firmware(&pc.logs)?);
        }
        // The keyboard is bound to the screen's console, so QMP input
        // events sent to that console reach it, not the PS/2 keyboard.
        q.args(["-device", "VGA,id=video0"])
            .args(["-device", "qemu-xhci,id=xhci"])
            .args(["-device", "usb-kbd,bus=xhci.0,id=kbd,display=video0"])
            .arg("-drive")
            .arg(format!(
                "if=none,id=disk0,format=raw,snapshot=on,file={}",
                pc.disk.display().to_string().replace(',', ",,")
            ));
        match pc.storage {
            Storage::Nvme => q.args(["-device", "nvme,drive=disk0,serial=detlinux,bootindex=0"]),
            Storage::Usb => q.args(["-device", "usb-storage,bus=xhci.0,drive=disk0,bootindex=0"]),
        };
        q.arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", socket.display()))
            .stdin(Stdio::null())
            .stdout(fs::File::create(pc.logs.join("qemu.log"))?)
            .stderr(fs::File::create(pc.logs.join("qemu.err"))?);
        fs::write(pc.logs.join("qemu-command.txt"), format!("{q:?}\n"))?;
        let started = Instant::now();
        let mut qemu = q.spawn().context("starting qemu-system-x86_64")?;
        let qmp = match Qmp::connect(&socket, &mut qemu) {
            Ok(qmp) => qmp,
            Err(e) => {
                let _ = qemu.kill();
                let _ = qemu.wait();
                let err = fs::read_to_string(pc.logs.join("qemu.err")).unwrap_or_default();
                bail!("{e:#}; qemu: {}", err.trim());
            }
        };
        Ok(Guest {
            qemu,
            qmp,
            started,
            screens: Screens {
                dir: pc.logs.clone(),
                count: 0,
            },
        })
    }

    fn session(&mut self, pc: &Pc) -> Result<Seen> {
        let scaled = |d: Duration| d.mul_f64(pc.scale.max(1.0));
        let text = self
            .wait_for(scaled(PROMPT_LIMIT), shows_prompt)
            .context("waiting for the shell prompt on the screen")?;
        let to_prompt = self.started.elapsed();
        if !text.contains("tour") {
            bail!("the screen shows a prompt but no welcome (no `tour` in it)");
        }
        type_text(&mut self.qmp, &format!("{}\n", pc.command))?;
        let screen = self
            .wait_for(scaled(OUTPUT_LIMIT), |t| {
                shows_output(t, pc.command, pc.expect)
            })
            .with_context(|| {
                format!(
                    "waiting for the output of `{}` (a line with {:?})",
                    pc.command, pc.expect
                )
            })?;
        self.qmp.execute("system_powerdown", json!({}))?;
        let deadline = Instant::now() + scaled(POWER_OFF_LIMIT);
        loop {
            if self.qemu.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                bail!("the power button did not power the machine off");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(Seen { to_prompt, screen })
    }

    /// Reads the screen every [`READ_EVERY`] until `done` holds for its
    /// text; returns that text. A failed screenshot is retried, not judged.
    fn wait_for(&mut self, limit: Duration, done: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        loop {
            if let Some(status) = self.qemu.try_wait()? {
                bail!(
                    "QEMU ended ({status}); the last screen read:\n{}",
                    indent(&last)
                );
            }
            match self.screens.read(&mut self.qmp) {
                Ok(text) if done(&text) => return Ok(text),
                Ok(text) => last = text,
                Err(e) => last = format!("(no screen read: {e:#})"),
            }
            if Instant::now() > deadline {
                bail!(
                    "not seen within {:.0} s; the last screen read:\n{}",
                    limit.as_secs_f64(),
                    indent(&last)
                );
            }
            std::thread::sleep(READ_EVERY);
        }
    }

    fn stop(&mut self) {
        if self.qemu.try_wait().ok().flatten().is_none() {
            let _ = self.qemu.kill();
        }
        let _ = self.qemu.wait();
    }
}

impl Drop for Guest {
    /// No QEMU outlives its run, whatever way the run ends.
    fn drop(&mut self) {
        self.stop();
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The screenshots and their text, numbered in the log directory.
struct Screens {
    dir: PathBuf,
    count: usize,
}

impl Screens {
    /// One screenshot (`screen-N.ppm`), prepared for OCR (`screen-N.pgm`),
    /// read by tesseract (`screen-N.txt`).
    fn read(&mut self, qmp: &mut Qmp) -> Result<String> {
        self.count += 1;
        let ppm = self.dir.join(format!("screen-{:03}.ppm", self.count));
        qmp.execute(
            "screendump",
            json!({ "filename": ppm.display().to_string() }),
        )?;
        let pgm = ppm.with_extension("pgm");
        let image = fs::read(&ppm).with_context(|| format!("reading {}", ppm.display()))?;
        fs::write(&pgm, for_ocr(&image)?)?;
        let text = ocr(&pgm)?;
        fs::write(ppm.with_extension("txt"), &text)?;
        Ok(text)
    }

    /// Removes all but the last screenshot and its text.
    fn keep_last(&self) -> Result<()> {
        for n in 1..self.count {
            for ext in ["ppm", "pgm", "txt"] {
                let _ = fs::remove_file(self.dir.join(format!("screen-{n:03}.{ext}")));
            }
        }
        Ok(())
    }
}

/// Tesseract reads `pgm` (its English data, page segmentation for one
/// block of text).
fn ocr(pgm: &Path) -> Result<String> {
    let out = deps::command("tesseract")
        .arg(pgm)
        .arg("stdout")
        .args(["-l", "eng", "--psm", "6"])
        .stderr(Stdio::piped())
        .output()
        .context("running tesseract")?;
    if !out.status.success() {
        bail!(
            "tesseract failed on {}: {}",
            pgm.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The factor a screenshot is enlarged by: a console font's 8x16 glyphs
/// become 24x48, which tesseract reads reliably.
const SCALE: usize = 3;

/// A binary PPM (P6, what `screendump` writes) as an enlarged PGM (P5)
/// with dark text on white: the console draws light text on black.
pub fn for_ocr(ppm: &[u8]) -> Result<Vec<u8>> {
    let (width, height, pixels) = parse_ppm(ppm)?;
    let mut out = format!("P5\n{} {}\n255\n", width * SCALE, height * SCALE).into_bytes();
    for y in 0..height {
        let mut row = Vec::with_capacity(width * SCALE);
        for x in 0..width {
            let p = &pixels[(y * width + x) * 3..][..3];
            let light = (u32::from(p[0]) * 3 + u32::from(p[1]) * 6 + u32::from(p[2])) / 10;
            let ink = if light > 64 { 0u8 } else { 255u8 };
            row.extend(std::iter::repeat_n(ink, SCALE));
        }
        for _ in 0..SCALE {
            out.extend_from_slice(&row);
        }
    }
    Ok(out)
}

/// Width, height and the RGB bytes of a P6 PPM with maxval 255.
fn parse_ppm(data: &[u8]) -> Result<(usize, usize, &[u8])> {
    let mut fields = Vec::new();
    let mut pos = 0;
    while fields.len() < 4 {
        while pos < data.len() && data[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if data.get(pos) == Some(&b'#') {
            while pos < data.len() && data[pos] != b'\n' {
                pos += 1;
            }
            continue;
        }
        let start = pos;
        while pos < data.len() && !data[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if start == pos {
            bail!("truncated PPM header");
        }
        fields.push(std::str::from_utf8(&data[start..pos]).unwrap_or("?"));
    }
    pos += 1; // the one whitespace byte before the pixels
    if fields[0] != "P6" || fields[3] != "255" {
        bail!(
            "not a P6 PPM with maxval 255: {} ... {}",
            fields[0],
            fields[3]
        );
    }
    let width: usize = fields[1].parse().context("PPM width")?;
    let height: usize = fields[2].parse().context("PPM height")?;
    let need = width * height * 3;
    if width == 0 || height == 0 || data.len() < pos + need {
        bail!(
            "PPM of {width}x{height} has {} pixel bytes",
            data.len().saturating_sub(pos)
        );
    }
    Ok((width, height, &data[pos..pos + need]))
}

/// Types `text` on the USB keyboard, one key press and release at a time.
fn type_text(qmp: &mut Qmp, text: &str) -> Result<()> {
    for c in text.chars() {
        let (key, shift) = qcode(c).with_context(|| format!("no key for {c:?}"))?;
        let mut keys = vec![key];
        if shift {
            keys.insert(0, "shift");
        }
        for (down, order) in [
            (true, keys.clone()),
            (false, keys.into_iter().rev().collect()),
        ] {
            let events: Vec<Value> = order
                .iter()
                .map(|k| json!({"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": k}}}))
                .collect();
            // `device` names the console; the USB keyboard is the input
            // device bound to it (`display=video0`), so it gets the keys.
            qmp.execute(
                "input-send-event",
                json!({"device": "video0", "events": events}),
            )?;
            // The USB keyboard reports at most one change per poll of the
            // guest's driver; do not outrun it.
            std::thread::sleep(Duration::from_millis(40));
        }
    }
    Ok(())
}

/// The QEMU key code for `c` on a US keyboard, and whether Shift is held.
pub fn qcode(c: char) -> Option<(&'static str, bool)> {
    const LOWER: [&str; 26] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r",
        "s", "t", "u", "v", "w", "x", "y", "z",
    ];
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    Some(match c {
        'a'..='z' => (LOWER[c as usize - 'a' as usize], false),
        'A'..='Z' => (LOWER[c as usize - 'A' as usize], true),
        '0'..='9' => (DIGITS[c as usize - '0' as usize], false),
        ' ' => ("spc", false),
        '\n' => ("ret", false),
        '-' => ("minus", false),
        '_' => ("minus", true),
        '=' => ("equal", false),
        '+' => ("equal", true),
        '/' => ("slash", false),
        '.' => ("dot", false),
        ',' => ("comma", false),
        ';' => ("semicolon", false),
        ':' => ("semicolon", true),
        '\'' => ("apostrophe", false),
        '"' => ("apostrophe", true),
        '|' => ("backslash", true),
        '$' => ("4", true),
        '*' => ("8", true),
        '(' => ("9", true),
        ')' => ("0", true),
        '>' => ("dot", true),
        '<' => ("comma", true),
        '&' => ("7", true),
        '#' => ("3", true),
        _ => return None,
    })
}

/// A QMP connection: one JSON object per line each way.
struct Qmp {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Qmp {
    /// Connects once QEMU has created the socket, and leaves negotiation
    /// mode.
    fn connect(socket: &Path, qemu: &mut Child) -> Result<Qmp> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(s) => break s,
                Err(e) => {
                    if qemu.try_wait()?.is_some() || Instant::now() > deadline {
                        bail!("cannot reach QEMU's monitor at {}: {e}", socket.display());
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut qmp = Qmp {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        };
        qmp.message().context("reading QMP greeting")?;
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn message(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("QEMU closed its monitor");
        }
        serde_json::from_str(&line).with_context(|| format!("QMP sent {line:?}"))
    }

    /// Runs one command; its `return` value, or its error as an error.
    /// Events arriving meanwhile are skipped.
    fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        let msg = json!({"execute": command, "arguments": arguments});
        writeln!(self.writer, "{msg}")?;
        loop {
            let reply = self.message()?;
            if let Some(r) = reply.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = reply.get("error") {
                bail!("QMP {command}: {}", e["desc"].as_str().unwrap_or("error"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_and_output_are_told_apart_from_the_typed_line() {
        let screen = "detlinux: Linux 6.12 with deterministic process groups\n\
                      Try: tour\n\
                      detlinux:~# detrun /usr/bin/demo-det md5\n\
                      demo=md5 impl=det size=4 cpus=2 reps=1 seed=1 hash=00ab\n\
                      ok=yes merged_pages=3\n\
                      detlinux:~#\n";
        assert!(shows_prompt(screen));
        // As tesseract read it: the word split, `~` as `"`, the cursor.
        assert!(shows_prompt("Enter 'help'\ndet linux: \"# _\n"));
        assert!(!shows_prompt("detlinux: Linux 6.12\nTry: tour\n"));
        assert!(!shows_prompt("detlinux:~# detrun /usr/bin/demo-det md5\n"));
        let cmd = "detrun /usr/bin/demo-det md5";
        assert!(shows_output(screen, cmd, &["impl=det", "ok=yes"]));
        assert!(!shows_output(screen, cmd, &["impl=det", "ok=no"]));
        // What tesseract made of a real screen.
        let read = "detlinux:\"“# detrun /usr/bin/demo-det md5\n\
                    demo=nd5 impl=det size=4 cpus=1 hash=cel1b835 ok=-yes joins=2\n";
        assert!(shows_output(read, cmd, &["impl=det", "hash=", "ok=yes"]));
        // The echo of the command alone is not its output.
        let echo_only = "detlinux:~# echo impl=det ok=yes\n";
        assert!(!shows_output(
            echo_only,
            "echo impl=det ok=yes",
            &["impl=det", "ok=yes"]
        ));
    }

    #[test]
    fn every_character_of_the_commands_has_a_key() {
        for c in "detrun /usr/bin/demo-det md5 --size 4\nA_Z:|$".chars() {
            assert!(qcode(c).is_some(), "{c:?}");
        }
        assert_eq!(qcode('_'), Some(("minus", true)));
        assert_eq!(qcode('~'), None);
    }

    #[test]
    fn a_screenshot_becomes_an_enlarged_dark_on_white_pgm() {
        // 2x1: a light pixel, a black one.
        let ppm = b"P6\n# c\n2 1\n255\n\xaa\xaa\xaa\x00\x00\x00";
        let pgm = for_ocr(ppm).unwrap();
        let header = format!("P5\n{} {}\n255\n", 2 * SCALE, SCALE);
        assert!(pgm.starts_with(header.as_bytes()));
        let pixels = &pgm[header.len()..];
        assert_eq!(pixels.len(), 2 * SCALE * SCALE);
        assert_eq!(&pixels[..SCALE], &vec![0u8; SCALE][..]);
        assert_eq!(&pixels[SCALE..2 * SCALE], &vec![255u8; SCALE][..]);
        assert!(for_ocr(b"P6\n2 1\n255\n\x00")
            .unwrap_err()
            .to_string()
            .contains("pixel bytes"));
        assert!(for_ocr(b"P5\n1 1\n255\n\x00").is_err());
    }
}
