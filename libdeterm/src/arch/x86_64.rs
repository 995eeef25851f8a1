//! Everything in libdeterm that only x86_64 can do, in one place (as
//! rustix and origin keep theirs): the `syscall` instruction, the program's
//! `_start`, the fork that moves the child to its own stack, the stop on a
//! fault, reading the stack pointer, and the `mem*` primitives the compiler
//! may call. detlinux's `dput`, `dget` and `dret` are x86_64 system calls
//! only, so there is no other port; any other target stops at
//! `compile_error!` in `arch/mod.rs`.

use core::arch::asm;
#[cfg(determ_rt)]
use core::arch::global_asm;

/// A raw system call with up to six arguments.
///
/// # Safety
/// The call must not violate memory safety: pointer arguments must be
/// valid for what the kernel does with them.
#[inline(always)]
pub unsafe fn syscall6(nr: u64, a: [u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the caller vouches for the arguments; the `syscall`
    // instruction clobbers rcx and r11 only, which are declared.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as i64 => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(determ_rt)]
global_asm!(
    ".globl _start",
    ".type _start,@function",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym crate::rt::start::start_rust,
);

/// `dput(id, DET_SNAP | DET_START)`: creates child `id` as a copy of this
/// process and starts it, leaving out and handing over `ranges`. The
/// child, where the call returns 0, moves at once to `stack_hi` and calls
/// `entry(frame)`; the parent gets the raw result.
///
/// # Safety
/// `stack_hi` must be the top of a stack no one uses, `frame` must stay
/// valid in the child's copy for as long as `entry` reads it, and `entry`
/// must never return.
#[cfg(determ_rt)]
pub unsafe fn snap_start_and_enter(
    id: u64,
    stack_hi: u64,
    frame: *const u8,
    entry: extern "C" fn(*const u8) -> !,
    ranges: &crate::sys::SnapRanges,
) -> i64 {
    let (flags, range) = ranges.snap_args();
    let ret: i64;
    // SAFETY: in the child the call returns 0 and the child moves to its
    // own stack and calls `entry`, which never returns, so it writes
    // nothing in the caller's frame; in the parent it returns the child's
    // status and the asm falls through. rcx and r11 (clobbered by
    // `syscall`) are declared as early outputs so no input lives there;
    // the other inputs survive the call in both processes.
    unsafe {
        asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rsp, {stack}",
            "mov rdi, {frame}",
            "call {entry}",
            "ud2",
            "2:",
            stack = in(reg) stack_hi,
            frame = in(reg) frame,
            entry = in(reg) entry,
            inlateout("rax") crate::sys::NR_DPUT as i64 => ret,
            in("rdi") id,
            in("rsi") crate::sys::DET_SNAP | crate::sys::DET_START | flags,
            in("rdx") 0u64,
            in("r10") 0u64,
            in("r8") range,
            out("rcx") _,
            out("r11") _,
        );
    }
    ret
}

// A joined child that waits to be used again: `dret` for ever at one of
// two addresses, which its parent tells from any other `dret` by the
// stop's instruction pointer ([`retired_ip`]): the second for a child
// that exits with 0 and left its heap and files as it got them
// ([`retired_clean_ip`]), whose state the parent need not read.
#[cfg(determ_rt)]
global_asm!(
    ".pushsection .text.determ_retire,\"ax\",@progbits",
    ".globl determ_retire",
    ".type determ_retire,@function",
    "determ_retire:",
    "mov eax, {nr}",
    "syscall",
    ".globl determ_retired_ip",
    "determ_retired_ip:",
    "jmp determ_retire",
    ".globl determ_retire_clean",
    ".type determ_retire_clean,@function",
    "determ_retire_clean:",
    "mov eax, {nr}",
    "syscall",
    ".globl determ_retired_clean_ip",
    "determ_retired_clean_ip:",
    "jmp determ_retire_clean",
    ".popsection",
    nr = const crate::sys::NR_DRET,
);

#[cfg(determ_rt)]
extern "C" {
    fn determ_retire() -> !;
    static determ_retired_ip: u8;
    fn determ_retire_clean() -> !;
    static determ_retired_clean_ip: u8;
}

/// Stops in `dret` for good, at [`retired_ip`], or at
/// [`retired_clean_ip`] if `clean`: the parent either gives this process
/// a new snapshot and registers ([`restart_regs`]) or kills it.
#[cfg(determ_rt)]
pub fn retire(clean: bool) -> ! {
    // SAFETY: the loops make `dret` calls only, touching no memory.
    unsafe {
        if clean {
            determ_retire_clean()
        } else {
            determ_retire()
        }
    }
}

/// Where a retired child's stop reports it is.
#[cfg(determ_rt)]
pub fn retired_ip() -> u64 {
    core::ptr::addr_of!(determ_retired_ip) as u64
}

/// Where a child that retired clean ([`retire`]) stops.
#[cfg(determ_rt)]
pub fn retired_clean_ip() -> u64 {
    core::ptr::addr_of!(determ_retired_clean_ip) as u64
}

/// Makes `regs`, a retired child's, start `entry(frame)` on the stack
/// topped at `stack_hi`, as [`snap_start_and_enter`] starts a new child.
#[cfg(determ_rt)]
pub fn restart_regs(
    regs: &mut crate::sys::UserRegs,
    stack_hi: u64,
    frame: *const u8,
    entry: extern "C" fn(*const u8) -> !,
) {
    regs.rip = entry as usize as u64;
    // As after a `call`: the return address slot, never used.
    regs.rsp = stack_hi - 8;
    regs.rdi = frame as u64;
    regs.rbp = 0;
    regs.eflags &= !0x400; // DF clear, as the ABI has it
}

/// The floating-point control state the SysV ABI has callees preserve:
/// MXCSR (rounding, exception masks, flush to zero, and its sticky
/// flags) and the x87 control word.
#[cfg(determ_rt)]
#[derive(Clone, Copy)]
pub struct FpControl {
    mxcsr: u32,
    x87: u16,
}

/// This thread's [`FpControl`].
#[cfg(determ_rt)]
pub fn fp_control() -> FpControl {
    let mut c = FpControl { mxcsr: 0, x87: 0 };
    // SAFETY: both store 4 and 2 bytes into `c`'s fields, nothing else.
    unsafe {
        asm!("stmxcsr [{}]", in(reg) &mut c.mxcsr, options(nostack, preserves_flags));
        asm!("fnstcw [{}]", in(reg) &mut c.x87, options(nostack, preserves_flags));
    }
    c
}

/// Makes `c` this thread's [`FpControl`], as a new child inherits it.
#[cfg(determ_rt)]
pub fn set_fp_control(c: FpControl) {
    // SAFETY: both load control state from the given values; MXCSR's
    // reserved bits are clear, since it came from `stmxcsr`.
    unsafe {
        asm!("ldmxcsr [{}]", in(reg) &c.mxcsr, options(nostack, preserves_flags, readonly));
        asm!("fldcw [{}]", in(reg) &c.x87, options(nostack, preserves_flags, readonly));
    }
}

/// Stops the process as a fault (`ud2`: SIGILL, an implicit `dret`).
#[cfg(determ_rt)]
pub fn stop() -> ! {
    loop {
        // SAFETY: ud2 raises #UD and touches no memory.
        unsafe { asm!("ud2", options(nomem, nostack)) };
    }
}

/// The current stack pointer.
#[cfg(determ_rt)]
pub fn stack_pointer() -> u64 {
    let sp: u64;
    // SAFETY: reads rsp only.
    unsafe { asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// # Safety
/// C `memcpy`: `n` bytes, valid and non-overlapping.
#[cfg(determ_rt)]
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract; rep movsb copies exactly n bytes
    // forwards (the direction flag is clear by the ABI).
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// C `memmove`: `n` bytes, valid, possibly overlapping.
#[cfg(determ_rt)]
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // Forward copy is safe: dst is below src or past its end.
        // SAFETY: as memcpy, with no harmful overlap forwards.
        unsafe { memcpy(dst, src, n) };
    } else {
        // SAFETY: backwards from the last byte, with the direction flag
        // set for the copy only.
        unsafe {
            asm!("std", "rep movsb", "cld",
                 inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _,
                 inout("rsi") src.add(n - 1) => _, options(nostack));
        }
    }
    dst
}

/// # Safety
/// C `memset`: `n` writable bytes.
#[cfg(determ_rt)]
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract; rep stosb stores exactly n bytes.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8,
             options(nostack, preserves_flags));
    }
    dst
}
