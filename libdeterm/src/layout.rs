//! The fixed address-space layout of a deterministic process.
//!
//! `detrun` and [`crate::exec`] build every deterministic program at these
//! addresses, so nothing about a run depends on where the master happened to
//! be mapped (no ASLR). Each region is mapped with fresh zero pages; pages
//! cost memory only once touched.
//!
//! | region | what | merged at join |
//! |---|---|---|
//! | the program's `PT_LOAD` segments (`0x400000` for a static ELF) | code, data, bss | data and bss |
//! | [`PRIV_BASE`] | boot record, fault report, runtime state | never: per process |
//! | [`HEAP_BASE`], boot record's `heap_size` | the allocator's arenas | yes |
//! | [`FS_BASE`] | the in-memory file system | no: reconciled |
//! | [`FS_REF_BASE`], [`FS_CHILD_BASE`] | scratch copies for a join (file systems, the child's heap state) | never |
//! | [`STACK_TOP`] downwards | one stack per fork depth | the parent's own |

/// Private runtime page(s): never merged.
pub const PRIV_BASE: u64 = 0x5ff0_0000_0000;
pub const PRIV_SIZE: u64 = 64 * 1024;
/// Offset in the private region of the fault / panic report.
pub const REPORT_OFFSET: u64 = 4096;
/// Bytes of a report's message.
pub const REPORT_MSG: usize = 4000;
/// Offset of the runtime's own state.
pub const STATE_OFFSET: u64 = 8192;

/// The heap: one virtual range split into per-process regions. Its size is
/// an input of the run, like the arguments (the boot record; `detrun
/// --heap`), never taken from the machine, so a program runs out of heap
/// at the same call everywhere. The kernel charges a private writable
/// mapping against memory when a process is snapshotted, and under the
/// default overcommit heuristic one mapping larger than RAM + swap makes
/// every snapshot fail: the default fits the smallest guest (1 GiB).
pub const HEAP_BASE: u64 = 0x1000_0000_0000;
pub const HEAP_MAX: u64 = 16 << 30;
/// The heap size when none is given (detrun's default too).
pub const HEAP_DEFAULT: u64 = 512 << 20;
/// Offset in the private region of the process's heap figures
/// ([`crate::heap::HeapStats`]), left by the runtime at exit and on a
/// fault for `detrun --stats`.
pub const HEAP_STATS_OFFSET: u64 = 1024;

/// The file system's arena, and the join's two scratch copies.
pub const FS_BASE: u64 = 0x2000_0000_0000;
pub const FS_REF_BASE: u64 = 0x2100_0000_0000;
pub const FS_CHILD_BASE: u64 = 0x2200_0000_0000;
/// Largest file system a process can hold (the images' limit is larger).
pub const FS_MAX: u64 = 4 << 30;
/// Default file system when none is given: 32 MiB, 1024 inodes.
pub const FS_DEFAULT_BLOCKS: u32 = 8192;
pub const FS_DEFAULT_INODES: u32 = 1024;

/// Stacks: depth `d` uses `[STACK_TOP - (d+1)·STACK_SIZE, STACK_TOP - d·STACK_SIZE)`.
pub const STACK_TOP: u64 = 0x7ff0_0000_0000;
pub const STACK_SIZE: u64 = 8 << 20;
pub const MAX_DEPTH: u64 = 32;

/// What a program wiped into a child may use: everything below the top of
/// user space, above `mmap_min_addr`.
pub const USER_LO: u64 = 0x1_0000;
pub const USER_HI: u64 = 0x7fff_ffff_f000;

/// The stack range of fork depth `depth`.
pub const fn stack_range(depth: u64) -> (u64, u64) {
    let hi = STACK_TOP - depth * STACK_SIZE;
    (hi - STACK_SIZE, hi)
}

/// The boot record the loader writes at [`PRIV_BASE`]. `repr(C)`, shared
/// by `detrun` and the runtime.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Boot {
    pub magic: u64,
    pub flags: u64,
    /// Blocks of the file system at [`FS_BASE`] (0: format a fresh one).
    pub fs_blocks: u64,
    /// Bytes of `/dev/stdout` and `/dev/stderr` already shown by the master.
    pub stdout_shown: u64,
    pub stderr_shown: u64,
    /// Bytes of heap mapped at [`HEAP_BASE`] (0: [`HEAP_DEFAULT`]).
    pub heap_size: u64,
}

impl Boot {
    /// The record's bytes, as the loader copies them into a child.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `Boot` is `repr(C)` with only `u64` fields, so it has no
        // padding (checked below) and every byte is initialised.
        unsafe {
            core::slice::from_raw_parts(
                self as *const Boot as *const u8,
                core::mem::size_of::<Boot>(),
            )
        }
    }
}

pub const BOOT_MAGIC: u64 = u64::from_le_bytes(*b"DETBOOT1");
/// The process is the root under a master: it shows its output by a
/// trapped `write` (otherwise its output is joined by its parent).
pub const BOOT_TOP: u64 = 1;
/// The file system was handed over by a parent: start a child's dirty log.
pub const BOOT_FS_CHILD: u64 = 2;

/// The report a process leaves at `PRIV_BASE + REPORT_OFFSET` when it
/// panics, for its parent (or `detrun`) to read after the fault.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Report {
    pub magic: u64,
    /// [`REPORT_PANIC`] or [`REPORT_CONFLICT`].
    pub kind: u32,
    pub len: u32,
    /// The child whose join failed, for a conflict, from the reporter's view.
    pub child: u64,
    /// The conflicting address (or 0).
    pub addr: u64,
    pub message: [u8; REPORT_MSG],
}

pub const REPORT_MAGIC: u64 = u64::from_le_bytes(*b"DETREPT1");
pub const REPORT_PANIC: u32 = 1;
pub const REPORT_CONFLICT: u32 = 2;

impl Report {
    /// The message as text (lossy: cut at a character boundary).
    pub fn text(&self) -> &str {
        let n = (self.len as usize).min(REPORT_MSG);
        match core::str::from_utf8(&self.message[..n]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.message[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    /// Whether the bytes hold a report at all.
    pub fn valid(&self) -> bool {
        self.magic == REPORT_MAGIC
    }
}

/// Pseudo system calls a deterministic process makes to ask its parent;
/// they trap like any other system call and the parent emulates them.
/// `symbol(addr, buf, len)`: name `addr` from the program's symbol table.
pub const SYS_SYMBOL: u64 = 0x0de7_0001;

const _: () = assert!(core::mem::size_of::<Boot>() == 6 * 8);
const _: () = assert!(core::mem::size_of::<Report>() == 32 + REPORT_MSG);
const _: () = assert!(REPORT_OFFSET + core::mem::size_of::<Report>() as u64 <= STATE_OFFSET);
const _: () = assert!(
    core::mem::size_of::<Boot>() as u64 <= HEAP_STATS_OFFSET
        && HEAP_STATS_OFFSET + core::mem::size_of::<crate::heap::HeapStats>() as u64
            <= REPORT_OFFSET
);
const _: () = assert!(stack_range(MAX_DEPTH - 1).0 > FS_CHILD_BASE + FS_MAX);
const _: () = assert!(HEAP_BASE + HEAP_MAX <= FS_BASE);
