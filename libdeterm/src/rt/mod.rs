//! The runtime of a deterministic program (compiled with `--cfg
//! determ_rt` only): process state, startup, the global allocator, exit
//! and the panic handler.
//!
//! A deterministic process is single-threaded, and everything the runtime
//! keeps is in [`Private`], at a fixed address in the private region that
//! a join never merges. Each piece has the accessor its users need:
//!
//! - [`state`], the runtime's own bookkeeping, is an `unsafe fn`: the
//!   allocator, the panic handler and a child's first code (on another
//!   stack) all reach it, from inside other uses, so no scope could cover
//!   them; its callers are this module's code, and each says why its
//!   reference does not outlive the next call that could reach `state`.
//! - [`with_fs`], the file system, is public, so it is scoped and checked:
//!   a flag refuses a second use while one is open, and output written
//!   meanwhile waits in [`Files`] until the scope closes.
//! - [`boot`] and the report are plain data, read and written by value:
//!   no reference to them leaves this module.

pub mod capi;
pub mod io;
pub mod process;
pub(crate) mod start;

use core::alloc::{GlobalAlloc, Layout};
use core::fmt::Write;
use core::mem::MaybeUninit;

use alloc::vec::Vec;

use crate::fs::{Fs, STDOUT_INO};
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
    /// The ID the kernel knows it by: a retired child reused for this
    /// fork keeps the one it was made with ([`process::KID_BIT`]).
    pub kid: u64,
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
    /// The pages handed to it at the fork (`DET_SNAP_GIVE`), size 0 if
    /// none: its join takes them back even when it fails.
    pub given: crate::sys::DetRange,
}

/// The file-system reference the next fork can share: a never-started
/// child (`id`, with [`process::REF_BIT`]) made when this process's file
/// system had seen `writes` block writes ([`Fs::writes`]).
#[derive(Clone, Copy)]
pub(crate) struct FsReference {
    pub id: u64,
    pub writes: u64,
}

/// Everything the runtime keeps, per process. `repr(C)`: a parent reads
/// `exit_code`, `fs_dirty` and `heap`, adjacent, in one copy
/// (`process::Joined`). Each page a forked child writes costs it a
/// copy-on-write fault, so what it sets from its start to its retirement
/// lies on one page with [`Files`] (`Private`): the small fields first,
/// then the heap, whose own arrays come last, then the child table,
/// whose pages are written only where a slot is used.
#[repr(C)]
pub(crate) struct State {
    pub magic: u64,
    pub depth: u64,
    /// Shows its output with a trapped `write` (the master's root).
    pub top: bool,
    /// Bytes of heap mapped at HEAP_BASE (from the boot record).
    pub heap_size: u64,
    pub next_id: u64,
    /// The reference the next fork shares while the file system is
    /// unchanged, and the number for the next one made.
    pub fs_reference: Option<FsReference>,
    pub next_reference: u64,
    pub fs_len: u64,
    pub data: [(u64, u64); MAX_DATA],
    pub ndata: usize,
    pub argc: usize,
    pub argv: *const *const u8,
    pub envp: *const *const u8,
    /// Kernel IDs of joined children waiting in `dret` to be reused by
    /// the next forks (the last one first), and the number for the next
    /// child made.
    pub spares: [u64; process::MAX_SPARES],
    pub nspares: usize,
    pub next_kid: u64,
    /// One past the last child slot in use: every scan of the table
    /// stops there (see [`State::live`]).
    live_end: usize,
    /// Registers a retired child is restarted from (`process::restart`),
    /// read once from the first one.
    pub restart_regs: Option<crate::sys::UserRegs>,
    /// Totals over this process's joins (see [`process::JoinStats`]).
    pub stats: process::JoinStats,
    /// The last allocation, if it failed: (size, align).
    pub failed_request: Option<(u64, u64)>,
    /// A retired child's exit status and count of changed inodes, read
    /// by its parent at the join.
    pub exit_code: i32,
    pub fs_dirty: u32,
    pub heap: Heap,
    /// Text of the last failure the C interface reported.
    pub last_error: [u8; 512],
    pub last_error_len: usize,
    children: [ChildSlot; MAX_CHILDREN],
}

impl State {
    /// The child slots that may be in use (unused ones among them), a
    /// prefix of the table: a scan of all 256 slots, 18 KiB, cost each
    /// fork and join microseconds under TCG.
    pub fn live(&self) -> &[ChildSlot] {
        &self.children[..self.live_end]
    }

    pub fn live_mut(&mut self) -> &mut [ChildSlot] {
        &mut self.children[..self.live_end]
    }

    /// A free slot's index, or None when all are in use.
    pub fn free_slot(&self) -> Option<usize> {
        match self.live().iter().position(|c| !c.used) {
            Some(i) => Some(i),
            None => (self.live_end < MAX_CHILDREN).then_some(self.live_end),
        }
    }

    /// Fills slot `i` (from [`free_slot`](State::free_slot)).
    pub fn set_child(&mut self, i: usize, c: ChildSlot) {
        self.children[i] = c;
        self.live_end = self.live_end.max(i + 1);
    }

    /// Frees slot `i`.
    pub fn clear_child(&mut self, i: usize) {
        self.children[i].used = false;
        while self.live_end > 0 && !self.children[self.live_end - 1].used {
            self.live_end -= 1;
        }
    }

    /// Frees every slot (a new process's table, or a forked child's
    /// copy of its parent's): only those in use are written.
    pub fn clear_children(&mut self) {
        for c in self.live_mut().iter_mut().filter(|c| c.used) {
            c.used = false;
        }
        self.live_end = 0;
    }
}

/// The file system and what guards it, apart from [`State`] so that a
/// reference to one never covers the other.
pub(crate) struct Files {
    /// A [`with_fs`] scope is open.
    busy: bool,
    fs: MaybeUninit<Fs<&'static mut [u8]>>,
    /// Output (stdout, stderr) written while a scope was open.
    pending: [Vec<u8>; 2],
}

/// What the runtime keeps at `PRIV_BASE + STATE_OFFSET`: the small
/// `Files` first, on the page of `State`'s first fields (see [`State`]).
#[repr(C)]
pub(crate) struct Private {
    files: Files,
    pub(crate) state: State,
}

const STATE_MAGIC: u64 = u64::from_le_bytes(*b"DETSTAT1");
const _: () =
    assert!(STATE_OFFSET as usize + core::mem::size_of::<Private>() <= PRIV_SIZE as usize);

fn private() -> *mut Private {
    (PRIV_BASE + STATE_OFFSET) as *mut Private
}

/// The process's runtime state.
///
/// # Safety
/// The caller must have stopped using the reference this returned before
/// anything else calls `state` again: before it allocates or frees, forks,
/// joins, writes output, panics or calls a function that may. (The process
/// has one thread, so that is a property of the caller's code.)
pub(crate) unsafe fn state() -> &'static mut State {
    // SAFETY: the private region is mapped by the loader in every
    // deterministic process, `Private` fits in it (checked above), `init`
    // fills it before `main`, and the caller's contract makes this the only
    // reference in use. It borrows the `state` field alone, not `files`.
    unsafe { &mut *core::ptr::addr_of_mut!((*private()).state) }
}

/// The file system and its guard, as a raw pointer: its fields are
/// touched one at a time, so that no reference covers the `Fs` a
/// [`with_fs`] scope holds.
fn files() -> *mut Files {
    // SAFETY: a field address inside the mapped private region; no
    // reference is made.
    unsafe { core::ptr::addr_of_mut!((*private()).files) }
}

/// Runs `f` on the process's file system.
///
/// One scope at a time: `with_fs` inside `f`, or a fork, join or exec
/// (which reconcile the file system), ends the process with a report
/// saying so. Output written inside `f` (`println!` and the like) is kept
/// aside and appended to the console streams when `f` returns, so it comes
/// after what `f` did to the files; if the process exits or panics inside
/// `f`, it is appended then.
pub fn with_fs<R>(f: impl FnOnce(&mut Fs<&'static mut [u8]>) -> R) -> R {
    let files = files();
    if fs_busy() {
        fatal(format_args!(
            "the file system is in use: with_fs, fork, join and exec cannot run inside with_fs"
        ));
    }
    // SAFETY: a plain bool in the private region, written through the place.
    unsafe { (*files).busy = true };
    // SAFETY: `init` wrote the file system before `main`; `busy` makes
    // this the only reference to it until it is cleared below (or the
    // process ends inside `f`, which never uses it again).
    let r = f(unsafe { (*files).fs.assume_init_mut() });
    close_fs_scope();
    r
}

/// Ends an open [`with_fs`] scope, if any, and appends the output written
/// meanwhile. `exit` and the panic handler call it too: they never return
/// into the scope, so the file system is theirs.
fn close_fs_scope() {
    let files = files();
    // SAFETY: a plain bool in the private region, written through the place.
    unsafe { (*files).busy = false };
    for fd in [1u64, 2] {
        // SAFETY: the `pending` field alone; nothing else borrows it now
        // that no scope is open (output goes straight to the file system).
        let bytes = core::mem::take(unsafe { &mut (*files).pending[fd as usize - 1] });
        if !bytes.is_empty() {
            io::write_fd(fd, &bytes);
        }
    }
}

/// Appends to the console stream `ino` of the file system, or keeps the
/// bytes for the end of the open [`with_fs`] scope; false if it is full.
/// A full file system drops output rather than failing the program.
pub(crate) fn append_output(ino: u32, bytes: &[u8]) {
    let files = files();
    if fs_busy() {
        let i = usize::from(ino != STDOUT_INO);
        // SAFETY: the `pending` field alone, disjoint from the file system
        // the open scope holds.
        unsafe { (*files).pending[i].extend_from_slice(bytes) };
        return;
    }
    with_fs(|fs| {
        let _ = fs.append_ino(ino, bytes);
    })
}

/// A [`with_fs`] scope is open.
pub(crate) fn fs_busy() -> bool {
    // SAFETY: `busy` is a plain bool in the mapped private region, read
    // through the place alone.
    unsafe { (*files()).busy }
}

/// The boot record the loader left (a copy).
pub(crate) fn boot() -> Boot {
    // SAFETY: the boot record is at the start of the private region,
    // mapped in every deterministic process and written by the loader
    // (zeros if it wrote none); plain data, read by value.
    unsafe { core::ptr::read(PRIV_BASE as *const Boot) }
}

/// Changes the boot record.
pub(crate) fn update_boot(f: impl FnOnce(&mut Boot)) {
    let mut b = boot();
    f(&mut b);
    // SAFETY: as in `boot`; written by value.
    unsafe { core::ptr::write(PRIV_BASE as *mut Boot, b) }
}

/// Called by `_start` with the initial stack pointer.
pub(crate) fn init(sp: *const u64) {
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
    if boot().magic != BOOT_MAGIC {
        update_boot(|b| *b = Boot::default());
    }
    let b = boot();
    // SAFETY: nothing below allocates, prints or calls `state` until `st`
    // is last used (the heap is not even set up before).
    let st = unsafe { state() };
    st.magic = STATE_MAGIC;
    st.depth = 0;
    st.argc = argc;
    st.argv = argv;
    st.envp = envp;
    st.next_id = 1;
    st.fs_reference = None;
    st.next_reference = 1;
    st.nspares = 0;
    st.next_kid = 1;
    st.restart_regs = None;

    st.stats = process::JoinStats::default();
    st.live_end = MAX_CHILDREN;
    st.clear_children();
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
    // SAFETY: the `files` field of the mapped private region, written
    // whole (whatever the loader left there is not read).
    unsafe {
        files().write(Files {
            busy: false,
            fs: MaybeUninit::new(fs),
            pending: [Vec::new(), Vec::new()],
        })
    };
    if b.flags & BOOT_FS_CHILD != 0 {
        with_fs(|fs| fs.enter_child());
    }
}

/// This process's heap figures (see [`HeapStats`]): a child's cover its
/// own region, the root's the whole heap and its joined children.
pub fn heap_stats() -> HeapStats {
    // SAFETY: used for one call that does not reach `state`.
    unsafe { state() }.heap.stats()
}

/// Leaves this process's heap figures where `detrun --stats` reads them.
fn publish_heap_stats() {
    let stats = heap_stats();
    // SAFETY: the slot is inside the private region (checked in layout),
    // mapped in every deterministic process; plain data.
    unsafe { *((PRIV_BASE + HEAP_STATS_OFFSET) as *mut HeapStats) = stats };
}

/// Allocates from this process's heap; a failure is remembered, so that
/// the panic that follows names the request and the heap.
pub(crate) fn heap_alloc(size: u64, align: u64) -> *mut u8 {
    heap_alloc_as(size, align, false)
}

/// [`heap_alloc`], the block cleared if `zeroed` (where it is not zero
/// already).
pub(crate) fn heap_alloc_as(size: u64, align: u64, zeroed: bool) -> *mut u8 {
    // SAFETY: the heap allocates from its own lists and never reaches
    // `state` or allocates itself while `st` is in use.
    let st = unsafe { state() };
    // SAFETY: the heap's regions are mapped for this process, zero when
    // `init` made the heap (the loader maps them fresh).
    let p = unsafe {
        if zeroed {
            st.heap.alloc_zeroed(size, align)
        } else {
            st.heap.alloc(size, align)
        }
    };
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
    // SAFETY: two fields are copied out at once.
    let (argc, argv) = unsafe { (state().argc, state().argv) };
    // SAFETY: argv holds argc pointers to NUL-terminated strings on the
    // initial stack, which lives as long as the process.
    (0..argc).map(move |i| unsafe { cstr(*argv.add(i)) })
}

/// The value of environment variable `name`.
pub fn env_var(name: &str) -> Option<&'static str> {
    // SAFETY: one field is copied out at once.
    let mut e = unsafe { state() }.envp;
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
    wind_up();
    publish_heap_stats();
    sys::exit(code)
}

/// What ending the process and retiring it have in common.
fn wind_up() {
    close_fs_scope();
    io::flush();
}

/// Ends a forked child as [`exit`] does, but leaves the process waiting
/// in `dret` for its parent to reuse (or kill) after the join; the parent
/// reads `code` and the heap figures from its [`State`], so they are not
/// published as at an exit. A child that exits with 0 and left its heap
/// and files as it got them stops where its parent knows all that
/// without reading anything (`arch::retired_clean_ip`).
pub(crate) fn retire(code: i32) -> ! {
    wind_up();
    let dirty = with_fs(|fs| fs.dirty_inodes());
    // SAFETY: plain fields, nothing else reached.
    let clean = unsafe {
        let st = state();
        st.exit_code = code;
        st.fs_dirty = dirty;
        code == 0 && dirty == 0 && st.heap.untouched()
    };
    crate::arch::retire(clean)
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

fn report_slot() -> *mut Report {
    (PRIV_BASE + REPORT_OFFSET) as *mut Report
}

/// Forgets an earlier report (a join starts afresh).
pub(crate) fn clear_report() {
    // SAFETY: the report area is inside the private region (checked in
    // layout), mapped in every deterministic process; one plain field,
    // written through the place.
    unsafe { (*report_slot()).magic = 0 };
}

/// Records the report the parent reads when this process fails. It is
/// composed here and stored whole, so a panic while formatting `msg`
/// leaves its own report, not a torn one.
pub(crate) fn set_report(kind: u32, child: u64, addr: u64, msg: core::fmt::Arguments<'_>) {
    let mut r = Report {
        magic: REPORT_MAGIC,
        kind,
        len: 0,
        child,
        addr,
        message: [0; REPORT_MSG],
    };
    let _ = ReportWriter(&mut r).write_fmt(msg);
    // SAFETY: as in `clear_report`; plain data, written by value.
    unsafe { report_slot().write(r) };
}

/// The conflict a join just reported: (child, address).
fn reported_conflict() -> Option<(u64, u64)> {
    // SAFETY: as in `clear_report`; plain data, read by value.
    let r = unsafe { report_slot().read() };
    (r.valid() && r.kind == REPORT_CONFLICT).then_some((r.child, r.addr))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // Output first, so what the program printed is not lost.
    close_fs_scope();
    io::flush();
    publish_heap_stats();
    // SAFETY: fields are copied out at once.
    let (failed_request, heap_size) = unsafe { (state().failed_request, state().heap_size) };
    if let Some((size, align)) = failed_request {
        // The allocation error handler's panic: say what ran out, exactly.
        let s = heap_stats();
        set_report(
            REPORT_PANIC,
            0,
            0,
            format_args!(
                "ran out of heap: a request of {} (align {align}) failed; the heap is {} \
                 (detrun --heap), this process holds {} ({} live) of its {} region, \
                 {} free in {} range(s), the largest {}",
                Size(size),
                Size(heap_size),
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
    let (kind, child, addr) = match reported_conflict() {
        Some((child, addr)) => (REPORT_CONFLICT, child, addr),
        None => (REPORT_PANIC, 0, 0),
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

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        heap_alloc_as(l.size() as u64, l.align() as u64, true)
    }

    unsafe fn dealloc(&self, p: *mut u8, _l: Layout) {
        // SAFETY: `p` came from `alloc` (GlobalAlloc contract); freeing
        // neither allocates nor reaches `state`.
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
