//! Standard input and output of a deterministic process.
//!
//! Output goes into the file system's console streams `/dev/stdout` and
//! `/dev/stderr`. A child's output reaches its parent at the join (the
//! reconciliation appends it, in join order), so output order is fixed by
//! the program, not by timing. The master's root (the top process) shows
//! what it has with a `write` that traps to `detrun`, after each write and
//! each join; the boot record remembers how much is shown.
//!
//! Input is a stream through the parents: `read(0)` traps to the parent,
//! which reads its own input (from its parent, or from `detrun`'s real
//! standard input) and hands the bytes down. A parent serves a child only
//! while it waits for it, so who gets which bytes is deterministic too.

use core::fmt;

use super::{append_output, boot, fs_busy, state, update_boot, with_fs};
use crate::fs::{STDERR_INO, STDOUT_INO};
use crate::sys::{self, Errno};

/// Appends to standard output (fd 1) or error (fd 2).
pub fn write_fd(fd: u64, bytes: &[u8]) {
    let ino = if fd == 2 { STDERR_INO } else { STDOUT_INO };
    append_output(ino, bytes);
    flush();
}

/// Appends to standard output.
pub fn stdout_write(bytes: &[u8]) {
    write_fd(1, bytes)
}

/// Appends to standard error.
pub fn stderr_write(bytes: &[u8]) {
    write_fd(2, bytes)
}

/// In the top process: hands output not yet shown to the master (none
/// while a [`with_fs`](super::with_fs) scope is open: its output is not in
/// the file system yet).
pub fn flush() {
    // SAFETY: one field is copied out at once.
    if unsafe { state() }.top && !fs_busy() {
        show_output();
    }
}

/// `flush`'s work, apart: its page of buffer is not on the stack of the
/// processes that have nothing to show (each stack page a forked child
/// touches costs it a fault).
#[inline(never)]
fn show_output() {
    let mut chunk = [0u8; 4096];
    for (fd, ino) in [(1u64, STDOUT_INO), (2, STDERR_INO)] {
        let size = with_fs(|fs| fs.stat_ino(ino).map(|s| s.size).unwrap_or(0));
        loop {
            let b = boot();
            let shown = if fd == 1 {
                b.stdout_shown
            } else {
                b.stderr_shown
            };
            if shown >= size {
                break;
            }
            let n = match with_fs(|fs| fs.read_ino(ino, shown, &mut chunk)) {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            // The master writes it out; a failed write is not retried.
            let done = sys::write(fd, &chunk[..n]).unwrap_or(n as u64).max(1);
            update_boot(|b| {
                if fd == 1 {
                    b.stdout_shown += done;
                } else {
                    b.stderr_shown += done;
                }
            });
        }
    }
}

/// Reads standard input (from the parent; 0 at its end).
pub fn read_stdin(buf: &mut [u8]) -> Result<usize, Errno> {
    sys::read(0, buf).map(|n| n as usize)
}

/// Reads all of standard input.
pub fn read_stdin_to_end() -> Result<alloc::vec::Vec<u8>, Errno> {
    let mut out = alloc::vec::Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = read_stdin(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// `fmt::Write` to a file descriptor (1 or 2).
pub struct Fd(pub u64);

impl fmt::Write for Fd {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_fd(self.0, s.as_bytes());
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(fd: u64, args: fmt::Arguments<'_>) {
    match args.as_str() {
        Some(s) => write_fd(fd, s.as_bytes()),
        None => write_fd(fd, alloc::fmt::format(args).as_bytes()),
    }
}

/// `print!` for deterministic programs.
#[macro_export]
macro_rules! print {
    ($($t:tt)*) => { $crate::rt::io::_print(1, format_args!($($t)*)) };
}

/// `println!` for deterministic programs.
#[macro_export]
macro_rules! println {
    () => { $crate::rt::io::_print(1, format_args!("\n")) };
    ($($t:tt)*) => { $crate::rt::io::_print(1, format_args!("{}\n", format_args!($($t)*))) };
}

/// `eprintln!` for deterministic programs.
#[macro_export]
macro_rules! eprintln {
    ($($t:tt)*) => { $crate::rt::io::_print(2, format_args!("{}\n", format_args!($($t)*))) };
}
