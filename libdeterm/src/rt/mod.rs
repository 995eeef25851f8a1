//! The runtime of a deterministic program (compiled with `--cfg
//! determ_rt` only): process state, startup, the global allocator, exit
//! and the panic handler.
//!
//! A deterministic process is single-threaded, and everything the runtime
//! keeps is in [`State`], at a fixed address in the private region that a
//! join never merges. [`state`] hands out that one `&'static mut`; the
//! runtime never holds it across a call that could reenter it.

pub mod capi;
pub mod io;
pub mod process;
pub(crate) mod start;

use core::alloc::{GlobalAlloc, Layout};
use core::fmt::Write;
use core::mem::MaybeUninit;

use crate::fs::Fs;
use crate::heap::{Heap, HeapStats};
use crate::layout::*;
use crate::sys;

/// Most children a process has at once (forked and not yet joined).
pub const MAX_CHILDREN: usize = 256;
/// Writable ranges of the program image (data, bss) kept for merges.
const MAX_DATA: usize = 4;

/// A child the runtime tracks until its join.
#[derive(Clone, Copy)]
pub(crate) struct ChildSlot {
    pub id: u64,
    /// Heap region given at the fork.
    pub region: (u64, u64),
    /// Heap that was free below the region at the fork (not merged).
    pub gap: (u64, u64),
    /// It runs another program (`exec`): no memory merge, its own symbols.
    pub exec: bool,
    pub used: bool,
    /// An exec'd child's symbol table (a leaked `Box`), or null.
    pub symbols: *mut alloc::vec::Vec<crate::elf::Symbol>,
    /// The never-started child holding the file system this child
    /// started from (its join's reference); several children may share one.
    pub holder: u64,
}

/// The file-system reference the next fork can share: a never-started
/// child (`id`, with [`process::REF_BIT`]) made when this process's file
/// system had seen `writes` block writes ([`Fs::writes`]).
#[derive(Clone, Copy)]
pub(crate) struct FsReference {
    pub id: u64,
    pub writes: u64,
}

/// Everything the runtime keeps, per process.
pub(crate) struct State {
    pub magic: u64,
    pub depth: u64,
    /// Shows its output with a trapped `write` (the master's root).
    pub top: bool,
    pub heap: Heap,
    /// Bytes of heap mapped at HEAP_BASE (from the boot record).
    pub heap_size: u64,
    pub next_id: u64,
    /// The reference the next fork shares while the file system is
    /// unchanged, and the number for the next one made.
    pub fs_reference: Option<FsReference>,
    pub next_reference: u64,
    pub fs: MaybeUninit<Fs<&'static mut [u8]>>,
    pub fs_len: u64,
    pub data: [(u64, u64); MAX_DATA],
    pub ndata: usize,
    pub argc: usize,
    pub argv: *const *const u8,
    pub envp: *const *const u8,
    pub children: [ChildSlot; MAX_CHILDREN],
    /// Totals over this process's joins (see [`process::JoinStats`]).
    pub stats: process::JoinStats,
    /// The last allocation, if it failed: (size, align).
    pub failed_request: Option<(u64, u64)>,
    /// Text of the last failure the C interface reported.
    pub last_error: [u8; 512],
    pub last_error_len: usize,
}

const STATE_MAGIC: u64 = u64::from_le_bytes(*b"DETSTAT1");
const _: () = assert!(STATE_OFFSET as usize + core::mem::size_of::<State>() <= PRIV_SIZE as usize);

/// The process's runtime state.
pub(crate) fn state() -> &'static mut State {
    // SAFETY: the private region is mapped by the loader in every
    // deterministic process, `State` fits in it (checked above), it is
    // initialised by `init` before `main`, and the process has one thread;
    // callers do not keep the reference across reentrant calls.
    unsafe { &mut *((PRIV_BASE + STATE_OFFSET) as *mut State) }
}

/// The boot record the loader left.
pub(crate) fn boot() -> &'static mut Boot {
    // SAFETY: as `state`: the boot record is at the start of the private
    // region, written by the loader (zeros if it wrote none).
    unsafe { &mut *(PRIV_BASE as *mut Boot) }
}

/// The process's file system.
pub fn fs_mut() -> &'static mut Fs<&'static mut [u8]> {
    // SAFETY: initialised by `init` before `main` runs.
    unsafe { state().fs.assume_init_mut() }
}

/// Called by `_start` with the initial stack pointer.
pub(crate) fn init(sp: *const u64) {
    let st = state();
    // SAFETY: `sp` points at argc, then argv, NULL, envp, NULL, auxv, as
    // the loader built it (crate::stack).
    let (argc, argv, envp, auxv) = unsafe {
        let argc = *sp as usize;
        let argv = sp.add(1) as *const *const u8;
        let envp = argv.add(argc + 1);
        let mut e = envp;
        while !(*e).is_null() {
            e = e.add(1);
        }
        (argc, argv, envp, e.add(1) as *const u64)
    };
    st.magic = STATE_MAGIC;
    st.depth = 0;
    st.argc = argc;
    st.argv = argv;
    st.envp = envp;
    st.next_id = 1;
    st.fs_reference = None;
    st.next_reference = 1;

    st.stats = process::JoinStats::default();
    for c in st.children.iter_mut() {
        c.used = false;
    }
    // Writable PT_LOAD segments, from AT_PHDR/AT_PHNUM.
    let (mut phdr, mut phnum) = (0u64, 0u64);
    // SAFETY: the auxv is a list of (key, value) pairs ending with AT_NULL.
    unsafe {
        let mut a = auxv;
        while *a != 0 {
            match *a {
                3 => phdr = *a.add(1),
                5 => phnum = *a.add(1),
                _ => {}
            }
            a = a.add(2);
        }
    }
    st.ndata = 0;
    for i in 0..phnum {
        // SAFETY: AT_PHDR points at `phnum` 56-byte program headers in the
        // loaded image.
        let (kind, flags, vaddr, memsz) = unsafe {
            let p = (phdr + i * 56) as *const u8;
            (
                *(p as *const u32),
                *(p.add(4) as *const u32),
                *(p.add(16) as *const u64),
                *(p.add(40) as *const u64),
            )
        };
        if kind == 1 && flags & 2 != 0 && st.ndata < MAX_DATA {
            st.data[st.ndata] = (vaddr, vaddr + memsz);
            st.ndata += 1;
        }
    }
    let b = boot();
    if b.magic != BOOT_MAGIC {
        *b = Boot::default();
    }
    st.top = b.flags & BOOT_TOP != 0;
    st.heap_size = if b.heap_size != 0 {
        b.heap_size
    } else {
        HEAP_DEFAULT
    };
    st.heap = Heap::new(HEAP_BASE, HEAP_BASE + st.heap_size);
    st.failed_request = None;
    let blocks = if b.fs_blocks != 0 {
        b.fs_blocks
    } else {
        FS_DEFAULT_BLOCKS as u64
    };
    st.fs_len = blocks * sys::PAGE;
    // SAFETY: the loader mapped `fs_len` bytes at FS_BASE for this
    // process alone; the slice is the file system's arena for good.
    let region = unsafe { core::slice::from_raw_parts_mut(FS_BASE as *mut u8, st.fs_len as usize) };
    let fs = if b.fs_blocks != 0 {
        match Fs::open(region) {
            Ok(fs) => fs,
            Err(e) => fatal(format_args!("the file system handed over is unusable: {e}")),
        }
    } else {
        match Fs::format_in(region, blocks as u32, FS_DEFAULT_INODES) {
            Ok(fs) => fs,
            Err(e) => fatal(format_args!("cannot format the file system: {e}")),
        }
    };
    st.fs.write(fs);
    if b.flags & BOOT_FS_CHILD != 0 {
        fs_mut().enter_child();
    }
}

/// This process's heap figures (see [`HeapStats`]): a child's cover its
/// own region, the root's the whole heap and its joined children.
pub fn heap_stats() -> HeapStats {
    state().heap.stats()
}

/// Leaves this process's heap figures where `detrun --stats` reads them.
fn publish_heap_stats() {
    // SAFETY: the slot is inside the private region (checked in layout),
    // mapped in every deterministic process; plain data.
    unsafe { *((PRIV_BASE + HEAP_STATS_OFFSET) as *mut HeapStats) = state().heap.stats() };
}

/// Allocates from this process's heap; a failure is remembered, so that
/// the panic that follows names the request and the heap.
pub(crate) fn heap_alloc(size: u64, align: u64) -> *mut u8 {
    let st = state();
    // SAFETY: the heap's regions are mapped for this process.
    let p = unsafe { st.heap.alloc(size, align) };
    st.failed_request = if p.is_null() {
        Some((size, align))
    } else {
        None
    };
    p
}

/// A size in bytes as text: exact, in the largest unit that divides it.
struct Size(u64);

impl core::fmt::Display for Size {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            n if n >= 1 << 20 && n % (1 << 20) == 0 => write!(f, "{} MiB", n >> 20),
            n if n >= 1 << 10 && n % (1 << 10) == 0 => write!(f, "{} KiB", n >> 10),
            n => write!(f, "{n} bytes"),
        }
    }
}

/// The program's arguments.
pub fn args() -> impl Iterator<Item = &'static str> {
    let st = state();
    let (argc, argv) = (st.argc, st.argv);
    // SAFETY: argv holds argc pointers to NUL-terminated strings on the
    // initial stack, which lives as long as the process.
    (0..argc).map(move |i| unsafe { cstr(*argv.add(i)) })
}

/// The value of environment variable `name`.
pub fn env_var(name: &str) -> Option<&'static str> {
    let mut e = state().envp;
    // SAFETY: envp is a NULL-terminated array of C strings on the
    // initial stack.
    unsafe {
        while !(*e).is_null() {
            let s = cstr(*e);
            if let Some(v) = s.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                return Some(v);
            }
            e = e.add(1);
        }
    }
    None
}

/// # Safety
/// `p` must be a NUL-terminated string that lives forever.
pub(crate) unsafe fn cstr(p: *const u8) -> &'static str {
    let mut n = 0;
    // SAFETY: forwarded to the caller.
    unsafe {
        while *p.add(n) != 0 {
            n += 1;
        }
        core::str::from_utf8(core::slice::from_raw_parts(p, n)).unwrap_or("")
    }
}

/// Ends the process: shows pending output (top process) and exits with
/// `code`, which the parent sees as the exit status.
pub fn exit(code: i32) -> ! {
    io::flush();
    publish_heap_stats();
    sys::exit(code)
}

/// Ends the process as a fault with `msg` in its report: the parent (or
/// `detrun`) sees an invalid-opcode stop and reads the message.
pub fn fatal(msg: core::fmt::Arguments<'_>) -> ! {
    publish_heap_stats();
    set_report(REPORT_PANIC, 0, 0, msg);
    stop()
}

pub(crate) use crate::arch::stop;

struct ReportWriter<'a>(&'a mut Report);

impl Write for ReportWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let r = &mut *self.0;
        let at = r.len as usize;
        let n = s.len().min(REPORT_MSG - at);
        r.message[at..at + n].copy_from_slice(&s.as_bytes()[..n]);
        r.len += n as u32;
        Ok(())
    }
}

fn report() -> &'static mut Report {
    // SAFETY: the report area is inside the private region (checked in
    // layout), mapped in every deterministic process; plain data.
    unsafe { &mut *((PRIV_BASE + REPORT_OFFSET) as *mut Report) }
}

/// Forgets an earlier report (a join starts afresh).
pub(crate) fn clear_report() {
    report().magic = 0;
}

/// Records the report the parent reads when this process fails.
pub(crate) fn set_report(kind: u32, child: u64, addr: u64, msg: core::fmt::Arguments<'_>) {
    let r = report();
    r.magic = REPORT_MAGIC;
    r.kind = kind;
    r.child = child;
    r.addr = addr;
    r.len = 0;
    let _ = ReportWriter(r).write_fmt(msg);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // Output first, so what the program printed is not lost.
    io::flush();
    publish_heap_stats();
    let st = state();
    if let Some((size, align)) = st.failed_request {
        // The allocation error handler's panic: say what ran out, exactly.
        let s = st.heap.stats();
        set_report(
            REPORT_PANIC,
            0,
            0,
            format_args!(
                "ran out of heap: a request of {} (align {align}) failed; the heap is {} \
                 (detrun --heap), this process holds {} ({} live) of its {} region, \
                 {} free in {} range(s), the largest {}",
                Size(size),
                Size(st.heap_size),
                Size(s.held),
                Size(s.live),
                Size(s.size),
                Size(s.free),
                s.ranges,
                Size(s.largest_free),
            ),
        );
        stop()
    }
    let msg = info.message();
    // A panic right after a merge conflict keeps the conflict's child and
    // address, so detrun names them too.
    let r = report();
    let (kind, child, addr) = if r.valid() && r.kind == REPORT_CONFLICT {
        (REPORT_CONFLICT, r.child, r.addr)
    } else {
        (REPORT_PANIC, 0, 0)
    };
    match info.location() {
        Some(l) => set_report(
            kind,
            child,
            addr,
            format_args!("panicked at {}:{}: {}", l.file(), l.line(), msg),
        ),
        None => set_report(kind, child, addr, format_args!("panicked: {msg}")),
    }
    stop()
}

/// The global allocator: [`Heap`] in the runtime state.
pub struct DetAlloc;

// SAFETY: the heap hands out disjoint, aligned blocks from memory mapped
// for this process; a deterministic process has one thread.
unsafe impl GlobalAlloc for DetAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        heap_alloc(l.size() as u64, l.align() as u64)
    }

    unsafe fn dealloc(&self, p: *mut u8, _l: Layout) {
        // SAFETY: `p` came from `alloc` (GlobalAlloc contract).
        unsafe { state().heap.free(p) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: `p` came from `alloc`; its size is in its header.
        let have = unsafe { Heap::size_of(p) } as usize;
        if new <= have {
            return p;
        }
        // SAFETY: GlobalAlloc contract, as above.
        unsafe {
            let q = self.alloc(Layout::from_size_align_unchecked(new, l.align()));
            if !q.is_null() {
                core::ptr::copy_nonoverlapping(p, q, l.size().min(new));
                self.dealloc(p, l);
            }
            q
        }
    }
}

#[global_allocator]
static ALLOC: DetAlloc = DetAlloc;
