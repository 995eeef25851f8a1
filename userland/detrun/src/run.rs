//! Launching the root and serving it until it ends.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use determ::elf::{self, Symbol};
use determ::exec::{self, Spec, Staged};
use determ::fs::{Fs, FsError, STDERR_INO, STDOUT_INO};
use determ::layout::*;
use determ::serve::{self, Host};
use determ::sys::{self, DetStatus, Errno};

use crate::Options;

/// The root's child ID.
const ROOT: u64 = 1;

/// Runs the program; returns the exit status detrun should have.
/// `heap` is the heap size and where it came from (`main::heap_size`).
pub fn run(o: &Options, heap: (u64, &str)) -> Result<u8, String> {
    let bytes = fs::read(&o.program).map_err(|e| format!("{}: {e}", o.program))?;
    elf::parse(&bytes).map_err(|e| format!("{}: {e}", o.program))?;
    let symbols = elf::symbols(&bytes).unwrap_or_default();
    let mut fsys = open_fs(o)?;
    for (dst, src) in &o.add {
        add_file(&mut fsys, dst, Path::new(src))?;
    }
    let shown = |ino| fsys.stat_ino(ino).map(|s| s.size).unwrap_or(0);
    let (out0, err0) = (shown(STDOUT_INO), shown(STDERR_INO));
    let mut args = vec![o.program.clone()];
    args.extend(o.args.iter().cloned());
    let env: Vec<String> = if o.env.is_empty() {
        determ::stack::DEFAULT_ENV
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        o.env.clone()
    };
    sys::become_master().map_err(|e| format!("cannot become a master: {e}"))?;
    let started = std::time::Instant::now();
    let spec = Spec {
        elf: &bytes,
        args: &args,
        env: &env,
        fs: Some((
            &fsys.as_bytes()[..fsys.used_prefix() as usize * 4096],
            fsys.total_blocks() as u64,
        )),
        boot_flags: BOOT_TOP,
        stdout_shown: out0,
        stderr_shown: err0,
        heap_size: heap.0,
    };
    exec::load(ROOT, &spec).map_err(|e| format!("loading {}: {e}", o.program))?;
    sys::dput_plain(ROOT, sys::DET_START, 0, 0)
        .map_err(|e| format!("starting the program: {e}"))?;
    let st = serve::run(ROOT, &mut Terminal { symbols: &symbols }, &[])
        .map_err(|e| format!("waiting for the program: {e}"))?;
    let elapsed = started.elapsed();
    let fs_len = fsys.as_bytes().len();
    let result = finish(o, &st, &symbols, fs_len);
    if o.stats {
        print_stats(heap);
        print_times(elapsed);
    }
    let _ = sys::dput_plain(ROOT, sys::DET_KILL | sys::DET_KILL_POISON, 0, 0);
    result
}

/// The `--stats` time line: the run's wall time and the kernel's account
/// of the group's time in memory operations (`DET_GET_TIMES`), which only
/// a master can read.
fn print_times(run: std::time::Duration) {
    let ms = |ns: u64| ns as f64 / 1e6;
    let run_ms = run.as_secs_f64() * 1e3;
    match sys::times() {
        Ok(t) => eprintln!(
            "detrun: time: run_ms={run_ms:.1} snapshot_ms={:.1} merge_ms={:.1} copy_ms={:.1} kill_ms={:.1} calls={} merge_share={:.1}%",
            ms(t.snap_ns),
            ms(t.merge_ns),
            ms(t.copy_ns),
            ms(t.kill_ns),
            t.calls,
            100.0 * ms(t.merge_ns) / run_ms.max(1e-9)
        ),
        Err(e) => eprintln!("detrun: time: run_ms={run_ms:.1}; the kernel's account is unavailable: {e}"),
    }
}

/// The `--stats` line: the heap figures the root left at its exit or
/// fault (`determ::heap::HeapStats`).
fn print_stats(heap: (u64, &str)) {
    match exec::heap_stats_of(ROOT) {
        Ok(s) if s.size != 0 => eprintln!(
            "detrun: stats: heap_size={} ({}) peak_heap={} peak_live={} ratio={:.2} held={} live={} lost={} free_ranges={}",
            heap.0,
            heap.1,
            s.peak_held,
            s.peak_live,
            s.peak_held as f64 / s.peak_live.max(1) as f64,
            s.held,
            s.live,
            s.lost,
            s.ranges
        ),
        _ => eprintln!(
            "detrun: stats: heap_size={} ({}); the program left no heap figures",
            heap.0, heap.1
        ),
    }
}

/// The file system the program starts with.
fn open_fs(o: &Options) -> Result<Fs, String> {
    let blocks = o.fs_blocks.unwrap_or(FS_DEFAULT_BLOCKS);
    let fresh = || {
        Fs::new(blocks, FS_DEFAULT_INODES.min(blocks * 4))
            .map_err(|e| format!("cannot make a file system of {blocks} blocks: {e}"))
    };
    let Some(path) = &o.fs else {
        return fresh();
    };
    match fs::read(path) {
        Ok(bytes) => {
            let f = determ::fs::load(&bytes).map_err(|e| match e {
                FsError::Corrupt { what } => {
                    format!("{path}: not a usable file-system image ({what}); left unchanged")
                }
                e => format!("{path}: {e}; left unchanged"),
            })?;
            if f.as_bytes().len() as u64 > FS_MAX {
                return Err(format!("{path}: larger than the {FS_MAX}-byte limit"));
            }
            Ok(f)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fresh(),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

/// Copies a host file into the file system, making parent directories.
fn add_file(f: &mut Fs, dst: &str, src: &Path) -> Result<(), String> {
    let data = fs::read(src).map_err(|e| format!("{}: {e}", src.display()))?;
    let err = |e: FsError| format!("adding {dst}: {e}");
    let mut at = String::new();
    let parts: Vec<&str> = dst.split('/').filter(|p| !p.is_empty()).collect();
    for p in &parts[..parts.len().saturating_sub(1)] {
        at.push('/');
        at.push_str(p);
        match f.mkdir(&at) {
            Ok(_) | Err(FsError::Exists) => {}
            Err(e) => return Err(err(e)),
        }
    }
    match f.create(dst) {
        Ok(_) => {}
        Err(FsError::Exists) => f.truncate(dst, 0).map_err(err)?,
        Err(e) => return Err(err(e)),
    }
    f.write(dst, 0, &data).map_err(err)?;
    Ok(())
}

/// What detrun offers the root: its own stdin and stdout/stderr, and
/// names from the program's symbol table.
struct Terminal<'a> {
    symbols: &'a [Symbol],
}

impl Host for Terminal<'_> {
    fn read_input(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        std::io::stdin().lock().read(buf).map_err(|_| Errno::EIO)
    }

    fn output(&mut self, fd: u64, bytes: &[u8]) -> Result<(), Errno> {
        let r = if fd == 1 {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes).and_then(|_| out.flush())
        } else {
            std::io::stderr().write_all(bytes)
        };
        r.map_err(|_| Errno::EIO)
    }

    fn symbol(&mut self, addr: u64) -> Option<String> {
        elf::describe(self.symbols, addr)
    }
}

fn name(symbols: &[Symbol], addr: u64) -> String {
    match elf::describe(symbols, addr) {
        Some(s) => format!("{addr:#x} ({s})"),
        None => format!("{addr:#x}"),
    }
}

fn signame(n: i32) -> &'static str {
    match n {
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        31 => "SIGSYS",
        _ => "signal",
    }
}

/// After the root stopped for good: shows its remaining output, saves the
/// file system, reports a fault. Returns detrun's exit status.
fn finish(o: &Options, st: &DetStatus, symbols: &[Symbol], fs_len: usize) -> Result<u8, String> {
    // The root's file system and boot record stay readable after exit.
    let boot = exec::boot_of(ROOT).map_err(|e| format!("reading the program's state: {e}"))?;
    let mut arena = Staged::new(FS_BASE, fs_len);
    let root_fs = match exec::copy_fs_from(ROOT, arena.bytes_mut()) {
        Ok(_) => Fs::open(arena.bytes()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Ok(f) = &root_fs {
        // Output the root had not shown (it faulted before a flush).
        for (ino, shown, fd) in [
            (STDOUT_INO, boot.stdout_shown, 1),
            (STDERR_INO, boot.stderr_shown, 2),
        ] {
            if let Ok(all) = f.read_all_ino(ino) {
                if (shown as usize) < all.len() {
                    let rest = &all[shown as usize..];
                    let _ = if fd == 1 {
                        std::io::stdout().write_all(rest)
                    } else {
                        std::io::stderr().write_all(rest)
                    };
                }
            }
        }
    }
    let _ = std::io::stdout().flush();
    match st.status {
        sys::DET_S_EXIT_NORMAL => {
            if let Some(path) = &o.fs {
                let f = root_fs.map_err(|e| {
                    format!("the program left a broken file system ({e}); {path} left unchanged")
                })?;
                f.check().map_err(|e| {
                    format!("the program left a broken file system ({e}); {path} left unchanged")
                })?;
                save(path, &f.save())?;
            }
            Ok((st.exit_code & 0xff) as u8)
        }
        sys::DET_S_EXCEPT => {
            let mut msg = format!(
                "{} (child {ROOT}, the root) stopped: {} {} (code {}) at address {}, ip {}",
                o.program,
                signame(st.signo),
                st.signo,
                st.code,
                name(symbols, st.addr),
                name(symbols, st.ip)
            );
            if let Some(r) = exec::report_of(ROOT) {
                if r.kind == REPORT_CONFLICT && r.addr != 0 {
                    msg.push_str(&format!(
                        "\n  after a merge conflict joining its child {} at {}",
                        r.child,
                        name(symbols, r.addr)
                    ));
                }
                msg.push_str(&format!("\n  {}", r.text()));
            }
            eprintln!("detrun: {msg}");
            Ok((128 + st.signo.clamp(0, 127)) as u8)
        }
        _ => {
            eprintln!(
                "detrun: {} (child {ROOT}) died of {} {}",
                o.program,
                signame(st.signo),
                st.signo
            );
            Ok((128 + st.signo.clamp(0, 127)) as u8)
        }
    }
}

/// Writes the image next to `path` and renames it into place.
fn save(path: &str, bytes: &[u8]) -> Result<(), String> {
    let tmp = format!("{path}.detrun-tmp");
    let r = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    r.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("saving {path}: {e}")
    })
}
