//! Loading a static ELF into a child: the one loader `detrun` (a legacy
//! master) and deterministic parents ([`crate::process::exec`]) share.
//!
//! The child is wiped (`DET_VM_ZERO` with no protection over all of user
//! space), gets the fixed regions of [`crate::layout`] as fresh zero pages,
//! each `PT_LOAD` segment (zero, copy, then `DET_PERM` to its final
//! protection), a stack built by [`crate::stack`], a boot record, and clean
//! registers: `rip` at the entry point, `rsp` at `argc`, every other general
//! register 0, FPU/SSE/AVX state in its initial state. The child is left
//! stopped; the caller starts it.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::elf::{self, ElfError};
use crate::layout::*;
use crate::stack::{self, AuxInfo};
use crate::sys::{self, Errno, PAGE};

/// Why a load failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecError {
    Elf(ElfError),
    Stack(&'static str),
    /// A `dput`/`dget` failed; the text names the step.
    Sys(&'static str, Errno),
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::Elf(e) => write!(f, "{e}"),
            ExecError::Stack(e) => write!(f, "{e}"),
            ExecError::Sys(step, e) => write!(f, "{step}: {e}"),
        }
    }
}

impl From<ElfError> for ExecError {
    fn from(e: ElfError) -> Self {
        ExecError::Elf(e)
    }
}

/// What to load.
pub struct Spec<'a, A: AsRef<[u8]>, E: AsRef<[u8]>> {
    pub elf: &'a [u8],
    pub args: &'a [A],
    pub env: &'a [E],
    /// The file system to hand over (placed at [`FS_BASE`]): its first
    /// bytes (at least [`crate::fs::Fs::used_prefix`] blocks; the rest is
    /// zero) and its size in blocks. `None`: the child formats a fresh
    /// default one.
    pub fs: Option<(&'a [u8], u64)>,
    /// [`BOOT_TOP`] and/or [`BOOT_FS_CHILD`].
    pub boot_flags: u64,
    pub stdout_shown: u64,
    pub stderr_shown: u64,
    /// Bytes of heap to map (see [`HEAP_BASE`]).
    pub heap_size: u64,
}

/// A buffer whose byte `i` lies at an address congruent to `dst + i`
/// modulo the page size, as `DET_VM_COPY` wants.
pub struct Staged {
    buf: Vec<u8>,
    off: usize,
    len: usize,
}

impl Staged {
    pub fn new(dst: u64, len: usize) -> Staged {
        let buf = vec![0u8; len + 2 * PAGE as usize];
        let base = buf.as_ptr() as u64;
        let want = dst % PAGE;
        let off = ((want + PAGE - base % PAGE) % PAGE) as usize;
        Staged { buf, off, len }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.off..self.off + self.len]
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

fn sys<T>(step: &'static str, r: Result<T, Errno>) -> Result<T, ExecError> {
    r.map_err(|e| ExecError::Sys(step, e))
}

/// Maps `[lo, lo + len)` in the child as fresh zero pages with `prot`
/// (`DET_PROT_*`), in pieces small enough for the kernel's overcommit
/// heuristic when one large piece is refused.
pub fn map_zero(child: u64, lo: u64, len: u64, prot: u64) -> Result<(), Errno> {
    let end = lo + len;
    let mut chunk = len;
    let mut at = lo;
    while at < end {
        let n = chunk.min(end - at);
        match sys::dput_plain(child, sys::DET_VM_ZERO | prot, at, n) {
            Ok(_) => at += n,
            Err(Errno::ENOMEM) if chunk > (2 << 20) => chunk = (chunk / 2) & !(PAGE - 1),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Copies `src` to the child at `dst`, skipping whole zero pages (the
/// destination is fresh zero pages), staging it if its page offset differs.
pub fn put_bytes(child: u64, src: &[u8], dst: u64) -> Result<(), Errno> {
    if (src.as_ptr() as u64).wrapping_sub(dst) % PAGE != 0 {
        let mut st = Staged::new(dst, src.len());
        st.bytes_mut().copy_from_slice(src);
        return put_bytes(child, st.bytes(), dst);
    }
    // Runs of pages (by destination page) that hold a nonzero byte.
    let mut i = 0usize;
    while i < src.len() {
        let page_end = (((dst + i as u64) / PAGE + 1) * PAGE - dst) as usize;
        let run_start = i;
        let mut j = i;
        let mut end = page_end.min(src.len());
        while j < src.len() && src[j..end].iter().any(|&b| b != 0) {
            j = end;
            end = (end + PAGE as usize).min(src.len());
        }
        if j > run_start {
            sys::copy_to(child, &src[run_start..j], dst + run_start as u64)?;
            i = j;
        } else {
            i = page_end.min(src.len());
        }
    }
    Ok(())
}

/// The protection a segment's `p_flags` ask for.
fn prot_of(flags: u32) -> u64 {
    let mut p = 0;
    if flags & 4 != 0 {
        p |= sys::DET_PROT_READ;
    }
    if flags & 2 != 0 {
        p |= sys::DET_PROT_WRITE;
    }
    if flags & 1 != 0 {
        p |= sys::DET_PROT_EXEC;
    }
    p
}

/// Loads `spec` into `child` (creating it if the ID is unused) and leaves
/// it stopped, ready for `DET_START`. Returns the parsed image.
pub fn load<A: AsRef<[u8]>, E: AsRef<[u8]>>(
    child: u64,
    spec: &Spec<'_, A, E>,
) -> Result<elf::Image, ExecError> {
    let img = elf::parse(spec.elf)?;
    let rw = sys::DET_PROT_READ | sys::DET_PROT_WRITE;
    let heap_size = spec.heap_size.clamp(1 << 20, HEAP_MAX) & !(PAGE - 1);
    sys(
        "wiping the child",
        sys::dput_plain(child, sys::DET_VM_ZERO, USER_LO, USER_HI - USER_LO),
    )?;
    sys(
        "mapping the private region",
        map_zero(child, PRIV_BASE, PRIV_SIZE, rw),
    )?;
    sys(
        "mapping the heap",
        map_zero(child, HEAP_BASE, heap_size, rw),
    )?;
    let fs_len = match spec.fs {
        Some((f, blocks)) if f.len() as u64 <= blocks * PAGE => blocks * PAGE,
        Some(_) => {
            return Err(ExecError::Stack(
                "the file system is larger than its block count",
            ))
        }
        None => FS_DEFAULT_BLOCKS as u64 * PAGE,
    };
    if fs_len > FS_MAX {
        return Err(ExecError::Stack("the file system is larger than FS_MAX"));
    }
    for base in [FS_BASE, FS_REF_BASE, FS_CHILD_BASE] {
        sys("mapping the file system", map_zero(child, base, fs_len, rw))?;
    }
    let (stack_lo, _) = stack_range(MAX_DEPTH - 1);
    sys(
        "mapping the stacks",
        map_zero(child, stack_lo, STACK_TOP - stack_lo, rw),
    )?;
    for s in &img.segments {
        let (lo, hi) = s.pages();
        sys("mapping a segment", map_zero(child, lo, hi - lo, rw))?;
        let data = &spec.elf[s.offset as usize..(s.offset + s.filesz) as usize];
        sys("copying a segment", put_bytes(child, data, s.vaddr))?;
        sys(
            "protecting a segment",
            sys::dput_plain(child, sys::DET_PERM | prot_of(s.flags), lo, hi - lo),
        )?;
    }
    if let Some((f, _)) = spec.fs {
        sys("copying the file system", put_bytes(child, f, FS_BASE))?;
    }
    let boot = Boot {
        magic: BOOT_MAGIC,
        flags: spec.boot_flags,
        fs_blocks: spec.fs.map_or(0, |(_, blocks)| blocks),
        stdout_shown: spec.stdout_shown,
        stderr_shown: spec.stderr_shown,
        heap_size,
    };
    sys(
        "writing the boot record",
        put_bytes(child, boot.as_bytes(), PRIV_BASE),
    )?;
    let aux = AuxInfo {
        phdr: img.phdr,
        phnum: img.phnum,
        entry: img.entry,
    };
    let st = stack::build(
        STACK_TOP,
        spec.args,
        spec.env,
        aux,
        (STACK_SIZE / 8) as usize,
    )
    .map_err(ExecError::Stack)?;
    sys("writing the stack", put_bytes(child, &st.bytes, st.sp))?;
    let old = sys("reading the registers", sys::get_regs(child))?;
    let regs = sys::UserRegs {
        rip: img.entry,
        rsp: st.sp,
        eflags: 0x202,
        cs: old.cs,
        ss: old.ss,
        ds: old.ds,
        es: old.es,
        fs: 0,
        gs: 0,
        orig_rax: u64::MAX,
        ..sys::UserRegs::default()
    };
    sys("setting the registers", sys::put_regs(child, &regs, false))?;
    sys("resetting the FPU", reset_fpu(child))?;
    Ok(img)
}

/// Reads the `T` a stopped (or exited) child holds at `addr`.
///
/// # Safety
/// Every bit pattern must be a valid `T` (plain data: [`Boot`], [`Report`],
/// the allocator's state).
pub unsafe fn read_from<T: Copy>(child: u64, addr: u64) -> Result<T, Errno> {
    let mut buf = Staged::new(addr, core::mem::size_of::<T>());
    sys::copy_from(child, addr, buf.bytes_mut())?;
    // SAFETY: `buf` holds size_of::<T>() bytes, any of which make a `T`
    // (the caller's contract); the read does not assume alignment.
    Ok(unsafe { core::ptr::read_unaligned(buf.bytes().as_ptr() as *const T) })
}

/// The boot record of a stopped (or exited) child.
pub fn boot_of(child: u64) -> Result<Boot, Errno> {
    // SAFETY: `Boot` is plain data: any bytes make one.
    unsafe { read_from(child, PRIV_BASE) }
}

/// The fault report a stopped child left, if it left one.
pub fn report_of(child: u64) -> Option<Report> {
    // SAFETY: `Report` is plain data: any bytes make one.
    let r: Report = unsafe { read_from(child, PRIV_BASE + REPORT_OFFSET) }.ok()?;
    r.valid().then_some(r)
}

/// The heap figures a child left at its exit or fault (zeros if none).
pub fn heap_stats_of(child: u64) -> Result<crate::heap::HeapStats, Errno> {
    // SAFETY: `HeapStats` is plain data: any bytes make one.
    unsafe { read_from(child, PRIV_BASE + HEAP_STATS_OFFSET) }
}

/// Copies the file system at the child's [`FS_BASE`] into `buf` (whose
/// address must be congruent with it modulo the page size): the
/// superblock, the rest of the metadata, then the blocks up to the highest
/// one in use. The rest of `buf` keeps what it held: nothing reachable
/// points there. Returns the bytes copied.
pub fn copy_fs_from(child: u64, buf: &mut [u8]) -> Result<usize, ExecError> {
    sys(
        "copying a file system",
        sys::copy_from(child, FS_BASE, &mut buf[..PAGE as usize]),
    )?;
    copy_fs_rest(child, buf)
}

/// [`copy_fs_from`] once `buf` already holds the child's superblock (its
/// first page).
pub fn copy_fs_rest(child: u64, buf: &mut [u8]) -> Result<usize, ExecError> {
    let page = PAGE as usize;
    let step = "copying a file system";
    let corrupt = |_| ExecError::Sys(step, Errno::EIO);
    let meta = crate::fs::Fs::open(&*buf)
        .map_err(corrupt)?
        .metadata_blocks() as usize
        * page;
    sys(
        step,
        sys::copy_from(child, FS_BASE + PAGE, &mut buf[page..meta]),
    )?;
    let used = crate::fs::Fs::open(&*buf).map_err(corrupt)?.used_prefix() as usize * page;
    if used > meta {
        sys(
            step,
            sys::copy_from(child, FS_BASE + meta as u64, &mut buf[meta..used]),
        )?;
    }
    Ok(used)
}

/// Puts the child's x87/SSE/AVX state in its initial state (nothing of the
/// creator's vector registers leaks into the program).
pub fn reset_fpu(child: u64) -> Result<(), Errno> {
    let mut fx = [0u8; 512];
    fx[0..2].copy_from_slice(&0x37fu16.to_le_bytes()); // fcw
    fx[24..28].copy_from_slice(&0x1f80u32.to_le_bytes()); // mxcsr
    match sys::regs_size(sys::DET_XSTATE_REGS) {
        Ok(n) if n as usize >= 576 => {
            let mut x = vec![0u8; n as usize];
            x[..512].copy_from_slice(&fx);
            // xfeatures: x87 and SSE as given; every other component in its
            // init state (its bit clear).
            x[512..520].copy_from_slice(&3u64.to_le_bytes());
            sys::put_regset(child, sys::DET_XSTATE_REGS, &x).map(|_| ())
        }
        _ => sys::put_regset(child, sys::DET_FP_REGS, &fx).map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_buffers_are_congruent() {
        for dst in [0u64, 1, 4095, 4096, 0x400123, 0x7ff0_0000_0ff8] {
            for len in [0usize, 1, 100, 9000] {
                let s = Staged::new(dst, len);
                assert_eq!((s.bytes().as_ptr() as u64).wrapping_sub(dst) % PAGE, 0);
                assert_eq!(s.bytes().len(), len);
            }
        }
    }

    #[test]
    fn protections_follow_the_segment_flags() {
        assert_eq!(prot_of(5), sys::DET_PROT_READ | sys::DET_PROT_EXEC);
        assert_eq!(prot_of(6), sys::DET_PROT_READ | sys::DET_PROT_WRITE);
        assert_eq!(prot_of(0), 0);
    }
}
