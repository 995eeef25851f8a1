//! The kernel's deterministic-process ABI (`include/uapi/linux/det.h`) and
//! raw x86_64 system calls, with no libc.
//!
//! Usable from deterministic programs and from legacy masters (`detrun`)
//! alike: nothing here depends on the runtime. Struct sizes are pinned at
//! compile time against the header's `DET_*_SIZE` values. The system-call
//! instruction itself is in [`crate::arch`].

use core::fmt;

/// `dput`, `dget`, `dret` (x86_64 only).
pub const NR_DPUT: u64 = 1000;
pub const NR_DGET: u64 = 1001;
pub const NR_DRET: u64 = 1002;
/// Linux x86_64 system call numbers the runtime uses or emulates.
pub const NR_READ: u64 = 0;
pub const NR_WRITE: u64 = 1;
pub const NR_EXIT: u64 = 60;
pub const NR_EXIT_GROUP: u64 = 231;

pub const DET_REGS: u64 = 0x1;
pub const DET_BECOME_MASTER: u64 = 0x2;
pub const DET_GET_STATUS: u64 = 0x4;
pub const DET_KILL: u64 = 0x8;
pub const DET_ALLOW_SIGNALS: u64 = 0x10;
pub const DET_VM_ZERO: u64 = 0x20;
pub const DET_VM_COPY: u64 = 0x40;
pub const DET_SNAP: u64 = 0x80;
pub const DET_MERGE: u64 = 0x100;
pub const DET_PERM: u64 = 0x200;
pub const DET_GET_TIMES: u64 = 0x400;

pub const DET_GENERAL_REGS: u64 = 0x1_0000;
pub const DET_FP_REGS: u64 = 0x2_0000;
pub const DET_XSTATE_REGS: u64 = 0x4_0000;
pub const DET_DONT_WAIT: u64 = 0x1_0000;
pub const DET_KILL_POISON: u64 = 0x1_0000;
pub const DET_KILL_NOWAIT: u64 = 0x2_0000;
pub const DET_PROT_READ: u64 = 0x1_0000;
pub const DET_PROT_WRITE: u64 = 0x2_0000;
pub const DET_PROT_EXEC: u64 = 0x4_0000;
pub const DET_MERGE_ARGS: u64 = 0x1_0000;
pub const DET_SNAP_EXCEPT: u64 = 0x80_0000;
pub const DET_SNAP_GIVE: u64 = 0x40_0000;
pub const DET_START: u64 = 0x0100_0000;

pub const DET_S_READY: u32 = 1;
pub const DET_S_RUNNING: u32 = 2;
pub const DET_S_EXCEPT: u32 = 3;
pub const DET_S_EXIT_NORMAL: u32 = 4;
pub const DET_S_EXCEPT_DEAD: u32 = 5;

pub const DET_R_NONE: u32 = 0;
pub const DET_R_DRET: u32 = 1;
pub const DET_R_SYSCALL: u32 = 2;
pub const DET_R_SIGNAL: u32 = 3;
pub const DET_R_EXIT: u32 = 4;
pub const DET_R_KILLED: u32 = 5;

/// `EBADE`: `DET_MERGE` found a conflict.
pub const DET_E_CONFLICT: i32 = 52;
pub const DET_MERGE_SIZE: usize = 64;
pub const DET_MERGE_MAX_RANGES: usize = 64;
pub const DET_MERGE_ARGS_SIZE_VER0: usize = 32;
pub const DET_STATUS_SIZE: usize = 48;
pub const DET_TIMES_SIZE: usize = 40;
pub const DET_GENERAL_REGS_SIZE: usize = 216;
pub const DET_FP_REGS_SIZE: usize = 512;
pub const DET_XSTATE_HDR_OFFSET: usize = 512;

/// Page size of x86_64.
pub const PAGE: u64 = 4096;

/// `struct det_status`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetStatus {
    pub status: u32,
    pub reason: u32,
    pub signo: i32,
    pub code: i32,
    pub exit_code: i32,
    pub reserved: u32,
    pub syscall_nr: i64,
    pub addr: u64,
    pub ip: u64,
}

/// `struct det_merge`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetMerge {
    pub conflict_bytes: u64,
    pub conflict_addr: u64,
    pub conflict_start: u64,
    pub conflict_end: u64,
    pub conflict_pages: u64,
    pub scanned_pages: u64,
    pub copied_pages: u64,
    pub compared_pages: u64,
}

/// `struct det_range`: one range of a [`merge_ranges`], or one of a
/// snapshot's [`SnapRanges`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetRange {
    pub start: u64,
    pub size: u64,
}

/// What a snapshot leaves out (`DET_SNAP_EXCEPT`: the child reads zeros
/// there, the caller keeps its pages) and what it hands over
/// (`DET_SNAP_GIVE`: the child holds the caller's pages as its own, the
/// caller reads zeros there until the merge), in the order the kernel
/// reads them at `dststart`. A size of 0 is none.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapRanges {
    pub except: DetRange,
    pub give: DetRange,
}

impl SnapRanges {
    /// `DET_SNAP`'s extra op-flag and `dststart` for these ranges:
    /// `(DET_SNAP_GIVE, &self)` with a range to hand over, else
    /// `(DET_SNAP_EXCEPT, &self.except)` with one to leave out, else
    /// `(0, 0)`.
    pub fn snap_args(&self) -> (u64, u64) {
        if self.give.size != 0 {
            (DET_SNAP_GIVE, self as *const SnapRanges as u64)
        } else if self.except.size != 0 {
            (DET_SNAP_EXCEPT, &self.except as *const DetRange as u64)
        } else {
            (0, 0)
        }
    }
}

/// `struct det_merge_args`, what `DET_MERGE | DET_MERGE_ARGS` reads.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetMergeArgs {
    pub ranges: u64,
    pub nr_ranges: u64,
    pub report: u64,
    pub report_size: u64,
}

/// `struct det_times`: a master's group's time in memory operations, in
/// nanoseconds ([`times`]).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetTimes {
    pub snap_ns: u64,
    pub merge_ns: u64,
    pub copy_ns: u64,
    pub kill_ns: u64,
    pub calls: u64,
}

/// `struct user_regs_struct` (the `DET_GENERAL_REGS` set).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

const _: () = assert!(core::mem::size_of::<DetStatus>() == DET_STATUS_SIZE);
const _: () = assert!(core::mem::size_of::<DetMerge>() == DET_MERGE_SIZE);
const _: () = assert!(core::mem::size_of::<DetMergeArgs>() == DET_MERGE_ARGS_SIZE_VER0);
const _: () = assert!(core::mem::size_of::<DetTimes>() == DET_TIMES_SIZE);
const _: () = assert!(core::mem::size_of::<UserRegs>() == DET_GENERAL_REGS_SIZE);

/// A negative system call return value, as a positive errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(1);
    pub const ENOENT: Errno = Errno(2);
    pub const EINTR: Errno = Errno(4);
    pub const EIO: Errno = Errno(5);
    pub const EBADF: Errno = Errno(9);
    pub const ECHILD: Errno = Errno(10);
    pub const ENOMEM: Errno = Errno(12);
    pub const EFAULT: Errno = Errno(14);
    pub const EINVAL: Errno = Errno(22);
    pub const ENOSPC: Errno = Errno(28);
    pub const ENOSYS: Errno = Errno(38);
    pub const EBADE: Errno = Errno(52);
    pub const EOPNOTSUPP: Errno = Errno(95);

    /// The symbolic name, for the errnos the runtime meets.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            4 => "EINTR",
            5 => "EIO",
            9 => "EBADF",
            10 => "ECHILD",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            22 => "EINVAL",
            28 => "ENOSPC",
            38 => "ENOSYS",
            52 => "EBADE",
            95 => "EOPNOTSUPP",
            _ => "errno",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// A raw return value as a `Result`.
pub fn check(ret: i64) -> Result<u64, Errno> {
    if (-4095..0).contains(&ret) {
        Err(Errno(-ret as i32))
    } else {
        Ok(ret as u64)
    }
}

pub use crate::arch::syscall6;

/// `dput(child, flags, start, size, dststart)`.
///
/// # Safety
/// `start`/`dststart` must be valid for what `flags` makes the kernel read
/// or write in the caller (e.g. a register buffer of `size` bytes).
pub unsafe fn dput(child: u64, flags: u64, start: u64, size: u64, dst: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded to the caller.
    check(unsafe { syscall6(NR_DPUT, [child, flags, start, size, dst, 0]) })
}

/// `dget(child, flags, start, size, dststart)`.
///
/// # Safety
/// As [`dput`]: the ranges the kernel writes in the caller must be ours.
pub unsafe fn dget(child: u64, flags: u64, start: u64, size: u64, dst: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded to the caller.
    check(unsafe { syscall6(NR_DGET, [child, flags, start, size, dst, 0]) })
}

/// `dret()`: stop and wait for the parent; returns the rax it set.
pub fn dret() -> Result<u64, Errno> {
    // SAFETY: dret takes no arguments and touches no memory of ours.
    check(unsafe { syscall6(NR_DRET, [0; 6]) })
}

/// A `dput` that touches no caller memory (`start` is a child address or 0).
pub fn dput_plain(child: u64, flags: u64, start: u64, size: u64) -> Result<u64, Errno> {
    debug_assert!(flags & 0xffff & (DET_REGS | DET_VM_COPY | DET_ALLOW_SIGNALS) == 0);
    // SAFETY: the operations allowed here read no memory of the caller.
    unsafe { dput(child, flags, start, size, 0) }
}

/// `dput(0, DET_BECOME_MASTER)`.
pub fn become_master() -> Result<(), Errno> {
    dput_plain(0, DET_BECOME_MASTER, 0, 0).map(|_| ())
}

/// A master's figures: the time its group has spent in snapshots, merges,
/// copies and kills (`EACCES` in a deterministic process).
pub fn times() -> Result<DetTimes, Errno> {
    let mut t = DetTimes::default();
    // SAFETY: the kernel writes DET_TIMES_SIZE bytes into `t`.
    unsafe {
        dget(
            0,
            DET_GET_TIMES,
            &mut t as *mut DetTimes as u64,
            DET_TIMES_SIZE as u64,
            0,
        )?;
    }
    Ok(t)
}

/// Waits for `child` to stop and returns its full status.
pub fn status(child: u64) -> Result<DetStatus, Errno> {
    let mut st = DetStatus::default();
    // SAFETY: the kernel writes DET_STATUS_SIZE bytes into `st`.
    unsafe {
        dget(
            child,
            DET_GET_STATUS,
            &mut st as *mut DetStatus as u64,
            DET_STATUS_SIZE as u64,
            0,
        )?;
    }
    Ok(st)
}

/// Reads the child's general registers (waits for it to stop).
pub fn get_regs(child: u64) -> Result<UserRegs, Errno> {
    let mut r = UserRegs::default();
    // SAFETY: the kernel writes DET_GENERAL_REGS_SIZE bytes into `r`.
    unsafe {
        dget(
            child,
            DET_REGS | DET_GENERAL_REGS,
            &mut r as *mut UserRegs as u64,
            DET_GENERAL_REGS_SIZE as u64,
            0,
        )?;
    }
    Ok(r)
}

/// Sets the child's general registers; `start` adds `DET_START`.
pub fn put_regs(child: u64, regs: &UserRegs, start: bool) -> Result<u64, Errno> {
    let flags = DET_REGS | DET_GENERAL_REGS | if start { DET_START } else { 0 };
    // SAFETY: the kernel reads DET_GENERAL_REGS_SIZE bytes from `regs`.
    unsafe {
        dput(
            child,
            flags,
            regs as *const UserRegs as u64,
            DET_GENERAL_REGS_SIZE as u64,
            0,
        )
    }
}

/// Sets a register set given as raw bytes (`DET_FP_REGS` or
/// `DET_XSTATE_REGS`).
pub fn put_regset(child: u64, set: u64, bytes: &[u8]) -> Result<u64, Errno> {
    // SAFETY: the kernel reads `bytes.len()` bytes from `bytes`.
    unsafe {
        dput(
            child,
            DET_REGS | set,
            bytes.as_ptr() as u64,
            bytes.len() as u64,
            0,
        )
    }
}

/// The size in bytes of the register sets `sets` (`dget(0, DET_REGS|sets)`).
pub fn regs_size(sets: u64) -> Result<u64, Errno> {
    // SAFETY: the size query touches no memory.
    unsafe { dget(0, DET_REGS | sets, 0, 0, 0) }
}

/// Copies `src` to the child at `dst` (`dst - src.as_ptr()` must be a
/// multiple of the page size).
pub fn copy_to(child: u64, src: &[u8], dst: u64) -> Result<(), Errno> {
    // SAFETY: the kernel reads `src.len()` bytes from `src`.
    unsafe {
        dput(
            child,
            DET_VM_COPY,
            src.as_ptr() as u64,
            src.len() as u64,
            dst,
        )?;
    }
    Ok(())
}

/// Copies the child's bytes `[src, src + dst.len())` into `dst` (page
/// offsets must agree). As for `copy_to`, the caller's address comes first
/// (`dget(child, DET_VM_COPY, dst, len, src)`).
pub fn copy_from(child: u64, src: u64, dst: &mut [u8]) -> Result<(), Errno> {
    // SAFETY: the kernel writes `dst.len()` bytes into `dst`.
    unsafe {
        dget(
            child,
            DET_VM_COPY,
            dst.as_mut_ptr() as u64,
            dst.len() as u64,
            src,
        )?;
    }
    Ok(())
}

/// `dget(child, DET_MERGE, start, size, &report)`.
///
/// # Safety
/// The merge writes the caller's bytes in `[start, start + size)`: nothing
/// there may be borrowed in a way the write would break (the runtime
/// merges only data, bss, heap and stack ranges it owns).
pub unsafe fn merge(child: u64, start: u64, size: u64, report: &mut DetMerge) -> Result<(), Errno> {
    // SAFETY: forwarded to the caller; the report is ours to write.
    unsafe {
        dget(
            child,
            DET_MERGE,
            start,
            size,
            report as *mut DetMerge as u64,
        )?;
    }
    Ok(())
}

/// `dget(child, DET_MERGE | DET_MERGE_ARGS, &args, sizeof(args), 0)`: the
/// ranges (ascending, no page in two) merged all or nothing, one report
/// over all of them.
///
/// # Safety
/// As for [`merge`], for every range.
pub unsafe fn merge_ranges(
    child: u64,
    ranges: &[DetRange],
    report: &mut DetMerge,
) -> Result<(), Errno> {
    let args = DetMergeArgs {
        ranges: ranges.as_ptr() as u64,
        nr_ranges: ranges.len() as u64,
        report: report as *mut DetMerge as u64,
        report_size: DET_MERGE_SIZE as u64,
    };
    // SAFETY: forwarded to the caller; the kernel reads `args` and the
    // ranges, and writes the report, which is ours.
    unsafe {
        dget(
            child,
            DET_MERGE | DET_MERGE_ARGS,
            &args as *const DetMergeArgs as u64,
            DET_MERGE_ARGS_SIZE_VER0 as u64,
            0,
        )?;
    }
    Ok(())
}

/// `write(fd, buf)` (legacy processes; trapped in deterministic ones).
pub fn write(fd: u64, buf: &[u8]) -> Result<u64, Errno> {
    // SAFETY: the kernel reads `buf.len()` bytes from `buf`.
    check(unsafe {
        syscall6(
            NR_WRITE,
            [fd, buf.as_ptr() as u64, buf.len() as u64, 0, 0, 0],
        )
    })
}

/// `read(fd, buf)` (legacy processes; trapped in deterministic ones).
pub fn read(fd: u64, buf: &mut [u8]) -> Result<u64, Errno> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    check(unsafe {
        syscall6(
            NR_READ,
            [fd, buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0],
        )
    })
}

/// `exit_group(code)`.
pub fn exit(code: i32) -> ! {
    loop {
        // SAFETY: exit_group touches no memory and does not return.
        unsafe {
            syscall6(NR_EXIT_GROUP, [code as u64, 0, 0, 0, 0, 0]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn errors_come_from_the_top_4095_values() {
        assert_eq!(check(-52), Err(Errno::EBADE));
        assert_eq!(check(0), Ok(0));
        assert_eq!(check(-4096), Ok((-4096i64) as u64));
        assert_eq!(Errno(22).to_string(), "EINVAL (22)");
    }

    /// Every `DET_*` number in the kernel's UAPI header has the same value
    /// here, and every function of the C interface is declared in
    /// `determ.h`.
    #[test]
    fn matches_the_uapi_header_and_determ_h() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let uapi = std::fs::read_to_string(root.join("../kernel/tree/include/uapi/linux/det.h"))
            .expect("the UAPI header");
        let ours: &[(&str, u64)] = &[
            ("DET_NR_DPUT", NR_DPUT),
            ("DET_NR_DGET", NR_DGET),
            ("DET_NR_DRET", NR_DRET),
            ("DET_REGS", DET_REGS),
            ("DET_BECOME_MASTER", DET_BECOME_MASTER),
            ("DET_GET_STATUS", DET_GET_STATUS),
            ("DET_KILL", DET_KILL),
            ("DET_ALLOW_SIGNALS", DET_ALLOW_SIGNALS),
            ("DET_VM_ZERO", DET_VM_ZERO),
            ("DET_VM_COPY", DET_VM_COPY),
            ("DET_SNAP", DET_SNAP),
            ("DET_MERGE", DET_MERGE),
            ("DET_PERM", DET_PERM),
            ("DET_GET_TIMES", DET_GET_TIMES),
            ("DET_GENERAL_REGS", DET_GENERAL_REGS),
            ("DET_FP_REGS", DET_FP_REGS),
            ("DET_XSTATE_REGS", DET_XSTATE_REGS),
            ("DET_DONT_WAIT", DET_DONT_WAIT),
            ("DET_KILL_POISON", DET_KILL_POISON),
            ("DET_KILL_NOWAIT", DET_KILL_NOWAIT),
            ("DET_PROT_READ", DET_PROT_READ),
            ("DET_PROT_WRITE", DET_PROT_WRITE),
            ("DET_PROT_EXEC", DET_PROT_EXEC),
            ("DET_MERGE_ARGS", DET_MERGE_ARGS),
            ("DET_SNAP_EXCEPT", DET_SNAP_EXCEPT),
            ("DET_START", DET_START),
            ("DET_S_READY", DET_S_READY as u64),
            ("DET_S_RUNNING", DET_S_RUNNING as u64),
            ("DET_S_EXCEPT", DET_S_EXCEPT as u64),
            ("DET_S_EXIT_NORMAL", DET_S_EXIT_NORMAL as u64),
            ("DET_S_EXCEPT_DEAD", DET_S_EXCEPT_DEAD as u64),
            ("DET_R_NONE", DET_R_NONE as u64),
            ("DET_R_DRET", DET_R_DRET as u64),
            ("DET_R_SYSCALL", DET_R_SYSCALL as u64),
            ("DET_R_SIGNAL", DET_R_SIGNAL as u64),
            ("DET_R_EXIT", DET_R_EXIT as u64),
            ("DET_R_KILLED", DET_R_KILLED as u64),
            ("DET_E_CONFLICT", DET_E_CONFLICT as u64),
            ("DET_MERGE_SIZE", DET_MERGE_SIZE as u64),
            ("DET_MERGE_MAX_RANGES", DET_MERGE_MAX_RANGES as u64),
            ("DET_MERGE_ARGS_SIZE_VER0", DET_MERGE_ARGS_SIZE_VER0 as u64),
            ("DET_STATUS_SIZE", DET_STATUS_SIZE as u64),
            ("DET_TIMES_SIZE", DET_TIMES_SIZE as u64),
            ("DET_GENERAL_REGS_SIZE", DET_GENERAL_REGS_SIZE as u64),
            ("DET_FP_REGS_SIZE", DET_FP_REGS_SIZE as u64),
            ("DET_XSTATE_HDR_OFFSET", DET_XSTATE_HDR_OFFSET as u64),
        ];
        let mut seen = 0;
        for line in uapi.lines() {
            let mut w = line.split_whitespace();
            if w.next() != Some("#define") {
                continue;
            }
            let (Some(name), Some(val)) = (w.next(), w.next()) else {
                continue;
            };
            let parsed = match val.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => val.parse(),
            };
            let Ok(v) = parsed else { continue };
            if let Some((_, mine)) = ours.iter().find(|(n, _)| *n == name) {
                assert_eq!(*mine, v, "{name}");
                seen += 1;
            }
        }
        assert_eq!(
            seen,
            ours.len(),
            "some constants are not in the UAPI header"
        );
        let capi = std::fs::read_to_string(root.join("src/rt/capi.rs")).expect("capi.rs");
        let header = std::fs::read_to_string(root.join("include/determ.h")).expect("determ.h");
        let mut n = 0;
        for line in capi.lines() {
            if let Some(rest) = line.split("extern \"C\" fn ").nth(1) {
                let name = rest.split('(').next().unwrap();
                assert!(
                    header.contains(&std::format!(" {name}("))
                        || header.contains(&std::format!("*{name}(")),
                    "{name} is not declared in determ.h"
                );
                n += 1;
            }
        }
        assert!(n >= 15, "found only {n} C functions");
    }

    /// The guide's two examples are the files the builder compiles and the
    /// guest test runs, verbatim.
    #[test]
    fn the_guide_shows_the_tested_examples() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let guide = std::fs::read_to_string(root.join("docs/writing-deterministic-programs.md"))
            .expect("the guide");
        for f in [
            "userland/det-progs/src/bin/primes.rs",
            "userland/det-progs/c/cforkjoin.c",
        ] {
            let text = std::fs::read_to_string(root.join(f)).expect(f);
            assert!(
                guide.contains(&text),
                "docs/writing-deterministic-programs.md does not show {f} as it is"
            );
        }
    }

    #[test]
    fn a_legacy_process_gets_eperm_or_enosys() {
        // On the host kernel the numbers are unknown (ENOSYS); on detlinux
        // a legacy process gets EPERM. Either way, an error, not a crash.
        let r = status(1);
        assert!(matches!(r, Err(Errno(38)) | Err(Errno(1))), "{r:?}");
    }
}
