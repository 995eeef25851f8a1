//! Waiting for a child while serving the system calls it traps on: the one
//! loop of `detrun` (for the root) and of the runtime's joins (for a
//! deterministic parent's children).
//!
//! A deterministic process that makes any system call but `dput`, `dget`,
//! `dret` and exit stops with `DET_R_SYSCALL`; the parent answers by setting
//! `rax` and restarting it. Served: `read(0)` (input), `write(1|2)`
//! (output) and [`SYS_SYMBOL`] (name an address); anything else gets
//! `-ENOSYS`. What input, output and symbols are is the [`Host`]'s
//! business: detrun's terminal and ELF, or a parent's own streams.

use alloc::string::String;

use crate::exec::Staged;
use crate::layout::SYS_SYMBOL;
use crate::sys::{self, DetStatus, Errno, UserRegs};

/// What a parent offers its child.
pub trait Host {
    /// Reads input for the child (0 at its end).
    fn read_input(&mut self, buf: &mut [u8]) -> Result<usize, Errno>;
    /// Takes the child's output for fd 1 or 2.
    fn output(&mut self, fd: u64, bytes: &[u8]) -> Result<(), Errno>;
    /// Names an address of the child's program.
    fn symbol(&mut self, addr: u64) -> Option<String>;
}

/// Waits until `child` exits or faults, serving its requests; a child
/// stopped by `dret` is simply resumed, unless it stopped at one of the
/// addresses `retired` (a forked child that is done and waits to be
/// reused): then its `DET_S_READY` status is returned.
pub fn run(child: u64, host: &mut impl Host, retired: &[u64]) -> Result<DetStatus, Errno> {
    loop {
        let st = sys::status(child)?;
        match (st.status, st.reason) {
            (sys::DET_S_EXCEPT, sys::DET_R_SYSCALL) => {
                let mut regs = sys::get_regs(child)?;
                regs.rax = emulate(child, &regs, host) as u64;
                sys::put_regs(child, &regs, true)?;
            }
            (sys::DET_S_READY, sys::DET_R_DRET) if retired.contains(&st.ip) => return Ok(st),
            (sys::DET_S_READY, _) => {
                sys::dput_plain(child, sys::DET_START, 0, 0)?;
            }
            _ => return Ok(st),
        }
    }
}

/// One trapped system call: its result (`rax`).
pub fn emulate(child: u64, regs: &UserRegs, host: &mut impl Host) -> i64 {
    let (a, b, c) = (regs.rdi, regs.rsi, regs.rdx);
    let r = match regs.orig_rax {
        sys::NR_READ if a == 0 => {
            let mut buf = Staged::new(b, c.min(1 << 16) as usize);
            host.read_input(buf.bytes_mut())
                .and_then(|got| sys::copy_to(child, &buf.bytes()[..got], b).map(|()| got))
        }
        sys::NR_WRITE if a == 1 || a == 2 => {
            let mut buf = Staged::new(b, c.min(1 << 20) as usize);
            sys::copy_from(child, b, buf.bytes_mut())
                .and_then(|()| host.output(a, buf.bytes()))
                .map(|()| buf.bytes().len())
        }
        SYS_SYMBOL => match host.symbol(a) {
            Some(name) => {
                let n = name.len().min(c as usize);
                let mut buf = Staged::new(b, n);
                buf.bytes_mut().copy_from_slice(&name.as_bytes()[..n]);
                sys::copy_to(child, buf.bytes(), b).map(|()| n)
            }
            None => Err(Errno::ENOENT),
        },
        _ => Err(Errno::ENOSYS),
    };
    match r {
        Ok(n) => n as i64,
        Err(e) => -(e.0 as i64),
    }
}
