//! The process API: fork, join, exec, and parallel helpers on top.
//!
//! - [`fork`] / [`fork_id`]: `DET_SNAP | DET_START` on a spare (a joined
//!   child kept for reuse, restarted with `DET_REGS`) or a new process.
//!   The child gets its own heap region ([`Heap::split`]) and switches at
//!   once to the stack of its fork depth, so the only bytes it changes in
//!   its parent's stack are those its closure writes through references.
//!   A never-started child (ID with [`REF_BIT`]) holds the file system as
//!   it was at the fork: the reference of the join. Forks share it while
//!   the file system does not change, so a run of forks that leave the
//!   files alone makes one.
//! - [`Child::join`]: waits (serving the child's I/O requests) until it
//!   retires or exits, merges the program's writable segments, the heap
//!   and the parent's stack with `DET_MERGE`, takes back the child's whole
//!   heap region, reconciles the file system, keeps the child as a spare
//!   or kills it, and returns its exit status. A byte both sides changed
//!   is [`Error::Conflict`], with the address (named by `detrun` from the
//!   symbol table).
//! - [`exec`]: loads a static ELF from the file system into a child.
//! - [`scope`], [`parallel_for`], [`parallel_map`], [`divide`]: forks whose
//!   closures may borrow, joined before they return, in child order;
//!   [`divide_at`] splits a slice, its child's snapshot leaving out the
//!   caller's half (`DET_SNAP_EXCEPT`) and handing the child its own
//!   (`DET_SNAP_GIVE`).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;
use core::mem::{ManuallyDrop, MaybeUninit};

use super::{io, state, with_fs, ChildSlot, State, MAX_CHILDREN};
use crate::elf::{self, Symbol};
use crate::exec::{self, ExecError, Spec};
use crate::fs::{self, Fs, FsError};
use crate::heap::Heap;
use crate::layout::*;
use crate::serve;
use crate::sys::{self, DetMerge, Errno};

/// Set in the IDs of the file-system reference holders.
pub const REF_BIT: u64 = 1 << 62;

/// Set in the kernel IDs of forked children, which a reused child keeps
/// whatever ID its new fork has ([`ChildSlot::kid`]).
pub const KID_BIT: u64 = 1 << 61;

/// Joined children kept for reuse at most ([`State::spares`]).
pub const MAX_SPARES: usize = 16;

/// A child whose join merged more pages than this is not kept: its write
/// log holds the snapshot's copy of each page it wrote until it is
/// reused, and a child that large amortises its fork anyway.
const SPARE_MAX_PAGES: u64 = 256;

/// Totals over a process's joins.
#[derive(Debug, Clone, Copy, Default)]
pub struct JoinStats {
    pub joins: u64,
    pub merges: u64,
    pub scanned_pages: u64,
    pub copied_pages: u64,
    pub compared_pages: u64,
    pub fs_dirty_inodes: u64,
}

/// Why a fork, join or exec failed. `Debug` shows the same text as
/// `Display`, so `expect` on a join names the symbol too.
pub enum Error {
    /// A `dput`/`dget` failed at the named step.
    Sys(&'static str, Errno),
    /// Fork depth above [`MAX_DEPTH`].
    TooDeep,
    /// More than [`MAX_CHILDREN`] children not yet joined.
    TooManyChildren,
    /// No such child (already joined, or never forked).
    NoSuchChild(u64),
    /// `DET_MERGE` found bytes both sides changed: nothing of that range
    /// was merged.
    Conflict {
        child: u64,
        addr: u64,
        bytes: u64,
        range: &'static str,
    },
    /// The file systems could not be reconciled (e.g. a file changed on
    /// both sides).
    Fs { child: u64, error: FsError },
    /// The child stopped on a fault (a panic is SIGILL with a message).
    Fault {
        child: u64,
        signo: i32,
        addr: u64,
        ip: u64,
        message: String,
    },
    /// The child died of a signal it could not stop on.
    Killed { child: u64, signo: i32 },
    /// Loading a program failed.
    Exec(ExecError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sys(step, e) => write!(f, "{step}: {e}"),
            Error::TooDeep => write!(f, "fork depth above {MAX_DEPTH}"),
            Error::TooManyChildren => write!(f, "more than {MAX_CHILDREN} unjoined children"),
            Error::NoSuchChild(c) => write!(f, "no child {c}"),
            Error::Conflict {
                child,
                addr,
                bytes,
                range,
            } => {
                write!(
                    f,
                    "merge conflict joining child {child}: {bytes} byte(s) of the {range} changed on both sides, first at {addr:#x}"
                )?;
                match symbol(*addr) {
                    Some(s) => write!(f, " ({s})"),
                    None => Ok(()),
                }
            }
            Error::Fs { child, error } => write!(f, "joining child {child}'s files: {error}"),
            Error::Fault {
                child,
                signo,
                addr,
                ip,
                message,
            } => {
                if message.is_empty() {
                    write!(
                        f,
                        "child {child} faulted: signal {signo} at address {addr:#x}, ip {ip:#x}"
                    )?;
                    if let Some(s) = symbol(*ip) {
                        write!(f, " ({s})")?;
                    }
                    Ok(())
                } else {
                    write!(f, "child {child} {message}")
                }
            }
            Error::Killed { child, signo } => write!(f, "child {child} died of signal {signo}"),
            Error::Exec(e) => write!(f, "exec: {e}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn sys_err<T>(step: &'static str, r: Result<T, Errno>) -> Result<T, Error> {
    r.map_err(|e| Error::Sys(step, e))
}

/// The symbol covering `addr` in this program, asked of the master
/// (through every parent) with the [`SYS_SYMBOL`] pseudo system call.
pub fn symbol(addr: u64) -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: an unknown system call number: it traps to the parent, which
    // writes at most `buf.len()` bytes into `buf` and sets the result.
    let n = unsafe {
        sys::syscall6(
            SYS_SYMBOL,
            [addr, buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0],
        )
    };
    if n <= 0 || n as usize > buf.len() {
        return None;
    }
    core::str::from_utf8(&buf[..n as usize])
        .ok()
        .map(String::from)
}

/// A forked or exec'd child, until [`join`](Child::join).
#[must_use = "a child must be joined for its changes to come back"]
pub struct Child {
    id: u64,
}

impl Child {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits for the child, merges its changes, reaps it and returns its
    /// exit status. The child is reaped whatever the outcome.
    pub fn join(self) -> Result<i32, Error> {
        join_id(self.id)
    }
}

struct Frame {
    call: unsafe fn(*mut u8) -> i32,
    data: *mut u8,
    region: (u64, u64),
    depth: u64,
    /// The parent's floating-point control state at the fork, which a
    /// reused child would otherwise keep from its last run.
    fp: crate::arch::FpControl,
}

/// # Safety
/// `p` must point at a live `F` that is not used again.
unsafe fn call_closure<F: FnOnce() -> i32>(p: *mut u8) -> i32 {
    // SAFETY: the caller's contract: the closure is moved out exactly once.
    let f = unsafe { core::ptr::read(p as *mut F) };
    f()
}

/// A child's first Rust code, on its own stack.
extern "C" fn child_entry(frame: *const u8) -> ! {
    // SAFETY: the frame lies in the parent's stack frame, copied by the
    // snapshot and never written by the child.
    let fr = unsafe { &*(frame as *const Frame) };
    crate::arch::set_fp_control(fr.fp);
    // SAFETY: `st` is last used before anything below reaches `state`.
    let st = unsafe { state() };
    st.depth = fr.depth;
    st.top = false;
    st.next_id = 1;
    // The parent's reference holder is not this process's child.
    st.fs_reference = None;
    // Nor are its retired children.
    st.nspares = 0;
    st.heap.enter_child(fr.region);
    st.stats = JoinStats::default();
    // Only where set: each page written costs this child a fault.
    st.clear_children();
    // The boot record's top flag, the parent's if it is the root, is
    // read only by `_start`, which a forked child never runs: `st.top`
    // is what counts, and leaving the record alone spares a page.
    with_fs(|fs| fs.enter_child());
    // SAFETY: the closure was left to the child by `fork_raw`.
    let code = unsafe { (fr.call)(fr.data) };
    finish(code)
}

/// A forked child's end. With no unjoined children of its own it retires:
/// it kills its spares and file-system reference, which a new snapshot
/// would make it forget, and waits in `dret` for its parent to join it
/// and maybe reuse it for another fork. Otherwise it exits, and its
/// children die with it.
fn finish(code: i32) -> ! {
    // SAFETY: `st` is last used before the `dput`s, which are system calls.
    let st = unsafe { state() };
    if st.live().iter().any(|c| c.used) {
        super::exit(code)
    }
    let spares = core::mem::take(&mut st.nspares);
    let kids = st.spares;
    let reference = st.fs_reference.take();
    for &kid in &kids[..spares] {
        let _ = sys::dput_plain(kid, KILL_NOW, 0, 0);
    }
    if let Some(r) = reference {
        let _ = sys::dput_plain(r.id, KILL_NOW, 0, 0);
    }
    super::retire(code)
}

/// The kernel ID of the spare the next fork reuses, if any.
fn take_spare() -> Option<u64> {
    // SAFETY: a few plain fields, nothing else reached.
    let st = unsafe { state() };
    st.nspares = st.nspares.checked_sub(1)?;
    Some(st.spares[st.nspares])
}

/// A kernel ID no child of this process has.
fn new_kid() -> u64 {
    // SAFETY: a plain field, nothing else reached.
    let st = unsafe { state() };
    st.next_kid += 1;
    KID_BIT | (st.next_kid - 1)
}

/// Gives retired child `kid` a snapshot of this process and starts it at
/// `entry(frame)` on the stack topped at `stack_hi`: one `dput`, where
/// making a child would copy the whole address space and tear one down.
///
/// # Safety
/// As [`crate::arch::snap_start_and_enter`].
unsafe fn restart(
    kid: u64,
    stack_hi: u64,
    frame: *const u8,
    ranges: &sys::SnapRanges,
) -> Result<u64, Errno> {
    // Only the selectors, segment bases and flags of a retired child's
    // registers matter here, the same in each: the first one's serve.
    // SAFETY: one field is copied out at once.
    let mut regs = match unsafe { state() }.restart_regs {
        Some(r) => r,
        None => {
            let r = sys::get_regs(kid)?;
            // SAFETY: a plain store.
            unsafe { state() }.restart_regs = Some(r);
            r
        }
    };
    crate::arch::restart_regs(&mut regs, stack_hi, frame, child_entry);
    let (ranges_flag, range) = ranges.snap_args();
    let flags =
        sys::DET_SNAP | sys::DET_REGS | sys::DET_GENERAL_REGS | sys::DET_START | ranges_flag;
    // SAFETY: the kernel reads DET_GENERAL_REGS_SIZE bytes from `regs`
    // and the ranges `ranges.snap_args()` points at; the caller's
    // contract covers what the child runs.
    unsafe {
        sys::dput(
            kid,
            flags,
            &regs as *const sys::UserRegs as u64,
            sys::DET_GENERAL_REGS_SIZE as u64,
            range,
        )
    }
}

fn take_slot(st: &mut State) -> Result<usize, Error> {
    st.free_slot().ok_or(Error::TooManyChildren)
}

/// The next unused child ID of this process (1, 2, 3, ...).
pub fn next_id() -> u64 {
    // SAFETY: the loop reaches nothing but `st`.
    let st = unsafe { state() };
    loop {
        let id = st.next_id;
        st.next_id += 1;
        if !st.live().iter().any(|c| c.used && c.id == id) {
            return id;
        }
    }
}

/// Before a child starts: the never-started child that keeps the file
/// system as it is now, the reference of the child's join. The one made
/// for an earlier fork serves while the file system has not been written
/// since ([`Fs::writes`]). Otherwise this raises the file system's epoch
/// and makes a new one. Creating a child already gives it a
/// copy-on-write image of this process, so the `dput` needs no operation:
/// `DET_SNAP` would add a merge reference of the whole address space that
/// nothing ever merges against.
fn files_reference(child: u64) -> Result<u64, Error> {
    let writes = with_fs(|fs| fs.writes());
    // SAFETY: one field is copied out at once.
    if let Some(r) = unsafe { state() }.fs_reference {
        if r.writes == writes {
            return Ok(r.id);
        }
    }
    let writes = with_fs(|fs| fs.prepare_fork().map(|()| fs.writes()))
        .map_err(|error| Error::Fs { child, error })?;
    // SAFETY: `st` is last used before `release_reference` reaches
    // `state`; the `dput` in between is a system call.
    let st = unsafe { state() };
    let id = REF_BIT | st.next_reference;
    sys_err(
        "creating the file-system reference",
        sys::dput_plain(id, 0, 0, 0),
    )?;
    st.next_reference += 1;
    let old = st.fs_reference.replace(super::FsReference { id, writes });
    if let Some(old) = old {
        release_reference(old.id);
    }
    Ok(id)
}

/// How a join or a holder's release kills: the child may be running (a
/// holder parks in `dret` forever), and its teardown is not waited for,
/// so the ID is free at once and the memory goes back on another CPU.
const KILL_NOW: u64 = sys::DET_KILL | sys::DET_KILL_POISON | sys::DET_KILL_NOWAIT;

/// Kills reference holder `id` once neither a child nor the next fork
/// needs it.
fn release_reference(id: u64) {
    // SAFETY: used for two reads, before the `dput` (a system call).
    let st = unsafe { state() };
    let current = st.fs_reference.is_some_and(|r| r.id == id);
    if !current && !st.live().iter().any(|c| c.used && c.holder == id) {
        let _ = sys::dput_plain(id, KILL_NOW, 0, 0);
    }
}

/// Forks child `id` running `f` (which may borrow: the caller guarantees
/// a join before the borrowed data goes away). The child's snapshot leaves
/// out `ranges.except` (page-aligned; it reads zeros there) and is handed
/// `ranges.give` (page-aligned; this process reads zeros there until the
/// join, which takes back whatever the child holds there).
///
/// # Safety
/// The child must be joined while everything `f` borrows is alive, must
/// never read `ranges.except`, which holds nothing it needs, and nothing
/// here may use `ranges.give` until the join.
unsafe fn fork_raw<F: FnOnce() -> i32>(
    id: u64,
    f: F,
    ranges: sys::SnapRanges,
) -> Result<Child, Error> {
    if id & REF_BIT != 0 || id == 0 {
        return Err(Error::Sys("fork", Errno::EINVAL));
    }
    // SAFETY: `st` is used for the checks alone, which reach nothing else.
    let st = unsafe { state() };
    if st.live().iter().any(|c| c.used && c.id == id) {
        return Err(Error::Sys("fork", Errno(17)));
    }
    if st.depth + 1 >= MAX_DEPTH {
        return Err(Error::TooDeep);
    }
    let depth = st.depth + 1;
    let slot = take_slot(st)?;
    let holder = files_reference(id)?;
    // SAFETY: splitting the heap reaches nothing else.
    let (region, gap) = unsafe { state() }.heap.split();
    let f = ManuallyDrop::new(f);
    let frame = Frame {
        call: call_closure::<F>,
        data: &*f as *const F as *mut u8,
        region,
        depth,
        fp: crate::arch::fp_control(),
    };
    let (_, stack_hi) = stack_range(depth);
    let spare = take_spare();
    // `frame` lives in this stack frame, which the child's copy keeps and
    // never writes; `child_entry` takes it and never returns; `stack_hi`
    // is the top of the child's own stack, unused so far.
    let at = &frame as *const Frame as *const u8;
    let mut ret = Err(Errno::ECHILD);
    let mut kid = 0;
    if let Some(k) = spare {
        kid = k;
        // SAFETY: see above.
        ret = unsafe { restart(kid, stack_hi, at, &ranges) };
        if ret.is_err() {
            // A spare that died meanwhile (the OOM killer may take it),
            // or could not take a snapshot: a new process instead.
            let _ = sys::dput_plain(kid, KILL_NOW, 0, 0);
        }
    }
    if ret.is_err() {
        kid = new_kid();
        // SAFETY: see above.
        ret = sys::check(unsafe {
            crate::arch::snap_start_and_enter(kid, stack_hi, at, child_entry, &ranges)
        });
    }
    if let Err(e) = ret {
        // SAFETY: giving the region back reaches nothing else.
        unsafe { state() }.heap.abandon(region);
        // The closure was not handed over: drop it here.
        drop(ManuallyDrop::into_inner(f));
        return Err(Error::Sys("forking", e));
    }
    // SAFETY: a plain store.
    unsafe { state() }.set_child(
        slot,
        ChildSlot {
            id,
            kid,
            region,
            gap,
            exec: false,
            used: true,
            symbols: core::ptr::null_mut(),
            holder,
            given: ranges.give,
        },
    );
    Ok(Child { id })
}

/// Forks a child with the next free ID running `f`; its exit status is
/// `f`'s return value. The child sees a copy of everything; at the join its
/// changes to statics and the heap come back.
pub fn fork<F: FnOnce() -> i32 + 'static>(f: F) -> Result<Child, Error> {
    fork_id(next_id(), f)
}

/// As [`fork`], with the child ID chosen by the caller.
pub fn fork_id<F: FnOnce() -> i32 + 'static>(id: u64, f: F) -> Result<Child, Error> {
    // SAFETY: `f` borrows nothing that could go away ('static).
    unsafe { fork_raw(id, f, sys::SnapRanges::default()) }
}

/// Forks whose closures may borrow from the caller, all joined (in fork
/// order) before [`scope`] returns.
pub struct Scope<'env> {
    ids: core::cell::RefCell<Vec<u64>>,
    _env: PhantomData<&'env mut &'env ()>,
}

impl<'env> Scope<'env> {
    /// Forks `f`, which may borrow anything that outlives the scope.
    pub fn fork<F: FnOnce() -> i32 + 'env>(&self, f: F) -> Result<u64, Error> {
        // SAFETY: nothing left out or handed over.
        unsafe { self.fork_split(f, sys::SnapRanges::default()) }
    }

    /// As [`Scope::fork`], the child's snapshot leaving out and handed
    /// `ranges`.
    ///
    /// # Safety
    /// As [`fork_raw`]'s `ranges`.
    unsafe fn fork_split<F: FnOnce() -> i32 + 'env>(
        &self,
        f: F,
        ranges: sys::SnapRanges,
    ) -> Result<u64, Error> {
        let id = next_id();
        // SAFETY: `scope` joins every child before returning, and `f`
        // borrows only what outlives the call of `scope`; the caller
        // vouches for `ranges`.
        unsafe { fork_raw(id, f, ranges) }.map(core::mem::forget)?;
        self.ids.borrow_mut().push(id);
        Ok(id)
    }

    /// Joins one child of this scope now.
    pub fn join(&self, id: u64) -> Result<i32, Error> {
        self.ids.borrow_mut().retain(|&c| c != id);
        join_id(id)
    }
}

/// Runs `f` with a [`Scope`]; joins the children it left unjoined, in fork
/// order, and returns the first error of those joins.
pub fn scope<'env, R>(f: impl FnOnce(&Scope<'env>) -> R) -> Result<R, Error> {
    let s = Scope {
        ids: core::cell::RefCell::new(Vec::new()),
        _env: PhantomData,
    };
    let r = f(&s);
    let ids = core::mem::take(&mut *s.ids.borrow_mut());
    let mut first = None;
    for id in ids {
        if let Err(e) = join_id(id) {
            first.get_or_insert(e);
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(r),
    }
}

/// Runs `body(i)` for `i` in `0..n`, each in its own child, and joins them
/// in order. A nonzero exit or a panic of a child is an error.
pub fn parallel_for<F: Fn(usize) + Sync>(n: usize, body: F) -> Result<(), Error> {
    let body = &body;
    scope(|s| -> Result<(), Error> {
        for i in 0..n {
            s.fork(move || {
                body(i);
                0
            })?;
        }
        Ok(())
    })?
}

/// `(0..n).map(f)` with each call in its own child.
pub fn parallel_map<T, F: Fn(usize) -> T + Sync>(n: usize, f: F) -> Result<Vec<T>, Error> {
    let mut out: Vec<MaybeUninit<T>> = Vec::with_capacity(n);
    // SAFETY: MaybeUninit needs no initialisation.
    unsafe { out.set_len(n) };
    let slots = out.as_mut_ptr() as usize;
    let f = &f;
    parallel_for(n, move |i| {
        // SAFETY: each child writes only its own slot, inside the vector,
        // which outlives the joins.
        unsafe { (*(slots as *mut MaybeUninit<T>).add(i)).write(f(i)) };
    })?;
    let mut out = ManuallyDrop::new(out);
    // SAFETY: every slot was written by its child and merged back.
    Ok(unsafe { Vec::from_raw_parts(out.as_mut_ptr() as *mut T, n, out.capacity()) })
}

/// Runs `a` in a child and `b` here at the same time; returns both results
/// (divide and conquer).
pub fn divide<A, B>(a: impl FnOnce() -> A, b: impl FnOnce() -> B) -> Result<(A, B), Error> {
    // SAFETY: nothing left out or handed over.
    unsafe { divide_split(a, b, sys::SnapRanges::default()) }
}

/// [`divide`], the child's snapshot leaving out and handed `ranges`.
///
/// # Safety
/// As [`fork_raw`]'s `ranges`.
unsafe fn divide_split<A, B>(
    a: impl FnOnce() -> A,
    b: impl FnOnce() -> B,
    ranges: sys::SnapRanges,
) -> Result<(A, B), Error> {
    let mut ra = MaybeUninit::<A>::uninit();
    let slot = &mut ra;
    let rb = scope(|s| -> Result<B, Error> {
        let child = move || {
            slot.write(a());
            0
        };
        // SAFETY: forwarded to the caller.
        unsafe { s.fork_split(child, ranges) }?;
        Ok(b())
    })??;
    // SAFETY: the child wrote `ra` and the join merged it (a failed
    // child made the join fail above).
    Ok((unsafe { ra.assume_init() }, rb))
}

/// As [`divide`] over a slice split at `mid`: `a(&mut v[..mid])` runs in a
/// child and `b(&mut v[mid..])` here, each on its own pages. The child's
/// snapshot leaves out the pages that lie wholly in `v[mid..]`
/// (`DET_SNAP_EXCEPT`), which this process keeps to itself, and hands the
/// child those that lie wholly in `v[..mid]` (`DET_SNAP_GIVE`), which the
/// join gives back: neither side copies a page of its half when it writes
/// it, as a thread would not. Only the pages the two halves share are
/// copied on write as in [`divide`]. If the child fails, the join's error
/// is returned and `v[..mid]` holds what the child left there (zeros if
/// it was killed, and its memory with it). Panics if `mid > v.len()`, as
/// [`slice::split_at_mut`] does.
pub fn divide_at<T, A, B>(
    v: &mut [T],
    mid: usize,
    a: impl FnOnce(&mut [T]) -> A,
    b: impl FnOnce(&mut [T]) -> B,
) -> Result<(A, B), Error> {
    let (lo, hi) = v.split_at_mut(mid);
    let ranges = sys::SnapRanges {
        except: pages_within(hi),
        give: pages_within(lo),
    };
    // SAFETY: `hi` is borrowed mutably by `b` alone and `lo` by `a` alone,
    // so nothing the child can reach without `unsafe` lies in the pages
    // left out, nor anything this process can reach in those handed over.
    unsafe { divide_split(|| a(lo), || b(hi), ranges) }
}

/// The whole pages of `s`'s bytes (size 0: none).
fn pages_within<T>(s: &[T]) -> sys::DetRange {
    let page = sys::PAGE;
    let start = s.as_ptr() as u64;
    let lo = (start + page - 1) & !(page - 1);
    let hi = (start + core::mem::size_of_val(s) as u64) & !(page - 1);
    sys::DetRange {
        start: lo,
        size: hi.saturating_sub(lo),
    }
}

/// Loads the static ELF at `path` (in this process's file system) into a
/// new child with `args` (`args[0]` is the program name) and the default
/// environment, and starts it. The child gets a copy of the file system,
/// reconciled at its join; its memory is its own.
pub fn exec(path: &str, args: &[&str]) -> Result<Child, Error> {
    let bytes = with_fs(|fs| fs.read_all(path)).map_err(|error| Error::Fs { child: 0, error })?;
    // SAFETY: finding a free slot reaches nothing else.
    let slot = take_slot(unsafe { state() })?;
    let id = next_id();
    let symbols = elf::symbols(&bytes).unwrap_or_default();
    let holder = files_reference(id)?;
    // SAFETY: two fields are copied out at once.
    let (fs_len, heap_size) = unsafe { (state().fs_len, state().heap_size) };
    let loaded = with_fs(|fs| {
        // The used prefix reads like the whole file system (the loader
        // gives the child `fs_len` bytes).
        let used = fs.used_prefix() as usize * sys::PAGE as usize;
        let image = fs.as_bytes();
        let spec = Spec {
            elf: &bytes,
            args,
            env: crate::stack::DEFAULT_ENV,
            fs: Some((&image[..used.min(image.len())], fs_len / sys::PAGE)),
            boot_flags: BOOT_FS_CHILD,
            stdout_shown: 0,
            stderr_shown: 0,
            heap_size,
        };
        exec::load(id, &spec)
    });
    if let Err(e) = loaded {
        let _ = sys::dput_plain(id, sys::DET_KILL, 0, 0);
        return Err(Error::Exec(e));
    }
    sys_err(
        "starting the program",
        sys::dput_plain(id, sys::DET_START, 0, 0),
    )?;
    let symbols = Box::into_raw(Box::new(symbols));
    // SAFETY: a plain store (the box is made before).
    unsafe { state() }.set_child(
        slot,
        ChildSlot {
            id,
            kid: id,
            region: (0, 0),
            gap: (0, 0),
            exec: true,
            used: true,
            symbols,
            holder,
            given: sys::DetRange::default(),
        },
    );
    Ok(Child { id })
}

/// What a parent offers a child it joins: its own input and output, and
/// the symbols of the child's program (its own, asked of the master, or
/// an exec'd program's).
struct Parent {
    symbols: *const Vec<Symbol>,
}

impl serve::Host for Parent {
    fn read_input(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        io::read_stdin(buf)
    }

    fn output(&mut self, fd: u64, bytes: &[u8]) -> Result<(), Errno> {
        io::write_fd(fd, bytes);
        Ok(())
    }

    fn symbol(&mut self, addr: u64) -> Option<String> {
        if self.symbols.is_null() {
            symbol(addr)
        } else {
            // SAFETY: an exec'd child's symbol table, alive until its join
            // frees it.
            elf::describe(unsafe { &*self.symbols }, addr)
        }
    }
}

/// Merges the child's changes to the program's writable segments, the
/// heap and this process's stack (above the current frame).
///
/// `gap` is the heap that was free when the child was forked, below its
/// region: no one had written there and the child could not, so it is
/// left out (it is most of the heap, and a merge walks what it is given).
/// Returns how many pages the child had changed. `id` names the child in
/// errors; `kid` is its kernel ID.
fn merge(id: u64, kid: u64, gap: (u64, u64)) -> Result<u64, Error> {
    // SAFETY: `st` is last used to list the ranges, which reaches nothing
    // else.
    let st = unsafe { state() };
    let (_, stack_hi) = stack_range(st.depth);
    let mut ranges: [(u64, u64, &'static str); 7] = [(0, 0, ""); 7];
    let mut n = 0;
    for &(lo, hi) in &st.data[..st.ndata] {
        // Whole pages: the segment's pages are its own (the loader
        // refuses segments that share a page).
        let page = sys::PAGE - 1;
        ranges[n] = (lo & !page, (hi + page) & !page, "program's data");
        n += 1;
    }
    let heap_end = HEAP_BASE + st.heap_size;
    let (gap_lo, gap_hi) = (
        gap.0.clamp(HEAP_BASE, heap_end),
        gap.1.clamp(HEAP_BASE, heap_end),
    );
    if gap_lo < gap_hi {
        ranges[n] = (HEAP_BASE, gap_lo, "heap");
        ranges[n + 1] = (gap_hi, heap_end, "heap");
        n += 2;
    } else {
        ranges[n] = (HEAP_BASE, heap_end, "heap");
        n += 1;
    }
    ranges[n] = (
        crate::arch::stack_pointer() & !(sys::PAGE - 1),
        stack_hi,
        "stack",
    );
    n += 1;
    // One call, all or nothing: a conflict anywhere merges nothing.  The
    // kernel takes ranges in ascending order with no page in two of them:
    // ranges that would share a page become one (the bytes between them
    // are free heap the child could not have written, so merging them
    // changes nothing).
    let mut kr = [sys::DetRange::default(); 7];
    let mut k = 0;
    let mut sorted = ranges;
    sorted[..n].sort_unstable_by_key(|r| r.0);
    for &(lo, hi, _) in &sorted[..n] {
        if lo >= hi {
            continue;
        }
        let page = sys::PAGE - 1;
        if k > 0 && lo & !page < (kr[k - 1].start + kr[k - 1].size + page) & !page {
            let prev = &mut kr[k - 1];
            prev.size = prev.size.max(hi - prev.start);
            continue;
        }
        kr[k] = sys::DetRange {
            start: lo,
            size: hi - lo,
        };
        k += 1;
    }
    let mut rep = DetMerge::default();
    // SAFETY: these ranges hold program data, heap blocks and stack
    // variables the child may have changed through what it was given;
    // the runtime's own state is in the private region, outside them.
    let r = unsafe { sys::merge_ranges(kid, &kr[..k], &mut rep) };
    // SAFETY: four additions reach nothing else.
    let s = &mut unsafe { state() }.stats;
    s.merges += 1;
    s.scanned_pages += rep.scanned_pages;
    s.copied_pages += rep.copied_pages;
    s.compared_pages += rep.compared_pages;
    match r {
        Ok(()) => Ok(rep.copied_pages + rep.compared_pages),
        Err(Errno::EBADE) => {
            let addr = rep.conflict_addr;
            let what = ranges[..n]
                .iter()
                .find(|&&(lo, hi, _)| (lo..hi).contains(&addr))
                .map_or("memory", |r| r.2);
            super::set_report(
                REPORT_CONFLICT,
                id,
                addr,
                format_args!("merge conflict joining child {id} at {addr:#x}"),
            );
            Err(Error::Conflict {
                child: id,
                addr,
                bytes: rep.conflict_bytes,
                range: what,
            })
        }
        Err(e) => Err(Error::Sys("merging", e)),
    }
}

/// What child `kid` holds of the pages handed to it at the fork
/// (`given`), taken back when its join fails otherwise: this process has
/// read zeros there since. A child killed with its memory gives nothing.
fn take_back_given(kid: u64, given: sys::DetRange) {
    if given.size == 0 {
        return;
    }
    let mut rep = DetMerge::default();
    // SAFETY: nothing here has used the pages since they were handed over
    // (`fork_raw`'s contract), so the child's bytes are all there is.
    let _ = unsafe { sys::merge_ranges(kid, &[given], &mut rep) };
}

/// Reconciles the file system of child `id` (kernel ID `kid`) with ours.
fn join_fs(id: u64, kid: u64, holder: u64) -> Result<(), Error> {
    // SAFETY: one field is copied out at once.
    let len = unsafe { state() }.fs_len as usize;
    // SAFETY: the two scratch regions are mapped for this process, each
    // fs_len bytes, and used by nothing else.
    let (cbuf, rbuf) = unsafe {
        (
            core::slice::from_raw_parts_mut(FS_CHILD_BASE as *mut u8, len),
            core::slice::from_raw_parts_mut(FS_REF_BASE as *mut u8, len),
        )
    };
    // The superblock first: a child that changed no file (the common
    // case for compute children) needs no copy and no reconciliation.
    let page = sys::PAGE as usize;
    sys_err(
        "copying a file system",
        sys::copy_from(kid, FS_BASE, &mut cbuf[..page]),
    )?;
    let untouched = Fs::open(&*cbuf).is_ok_and(|c| c.dirty_inodes() == 0);
    if untouched {
        return Ok(());
    }
    exec::copy_fs_rest(kid, cbuf).map_err(Error::Exec)?;
    exec::copy_fs_from(holder, rbuf).map_err(Error::Exec)?;
    let fs_err = |error| Error::Fs { child: id, error };
    let child = Fs::open(&*cbuf).map_err(fs_err)?;
    let reference = Fs::open(&*rbuf).map_err(fs_err)?;
    let rep = with_fs(|fs| fs::reconcile(fs, &reference, &child, id as u32)).map_err(fs_err)?;
    // SAFETY: one addition.
    unsafe { state() }.stats.fs_dirty_inodes += rep.dirty_inodes as u64;
    Ok(())
}

/// Reads the `T` child `id` holds at `addr` into the join's scratch
/// region ([`FS_CHILD_BASE`], at the same offset in its page, as
/// `DET_VM_COPY` wants). Every page this process writes after a fork
/// costs a copy-on-write fault while the child lives: the scratch is
/// written by the join anyway, where a staging buffer on the heap would
/// add pages of its own. Whatever the scratch held is overwritten.
///
/// # Safety
/// Every bit pattern must be a valid `T` (plain data), and nothing may
/// hold a reference into the scratch region.
unsafe fn read_via_scratch<T: Copy>(id: u64, addr: u64) -> Result<T, Errno> {
    let off = (addr % sys::PAGE) as usize;
    let len = core::mem::size_of::<T>();
    // SAFETY: one field is copied out at once.
    if off + len > unsafe { state() }.fs_len as usize {
        // SAFETY: the caller's contract.
        return unsafe { exec::read_from(id, addr) };
    }
    // SAFETY: the scratch region is mapped for this process, fs_len
    // bytes, and nothing else uses it now (the caller's contract).
    let buf =
        unsafe { core::slice::from_raw_parts_mut((FS_CHILD_BASE as usize + off) as *mut u8, len) };
    sys::copy_from(id, addr, buf)?;
    // SAFETY: `buf` holds size_of::<T>() bytes, any of which make a `T`.
    Ok(unsafe { core::ptr::read_unaligned(buf.as_ptr() as *const T) })
}

/// What a join reads of the child's [`State`], in one copy.
#[repr(C)]
#[derive(Clone, Copy)]
struct Joined {
    exit_code: i32,
    fs_dirty: u32,
    heap: Heap,
}

const _: () = assert!(
    core::mem::offset_of!(State, fs_dirty) - core::mem::offset_of!(State, exit_code)
        == core::mem::offset_of!(Joined, fs_dirty)
        && core::mem::offset_of!(State, heap) - core::mem::offset_of!(State, exit_code)
            == core::mem::offset_of!(Joined, heap)
);

/// Takes back the heap region the child (kernel ID `kid`) was lent, after
/// its merge. Returns what it left in its state if it retired: its exit
/// status and how many inodes it changed.
fn reclaim(kid: u64, region: (u64, u64)) -> Result<(i32, u32), Error> {
    let at = PRIV_BASE
        + STATE_OFFSET
        + (core::mem::offset_of!(super::Private, state) + core::mem::offset_of!(State, exit_code))
            as u64;
    // SAFETY: the bytes are the child's `Heap` and exit status, plain data
    // of these types; the scratch is used next by `join_fs`, after this
    // read.
    let child = unsafe { read_via_scratch::<Joined>(kid, at) };
    let child = sys_err("reading the child's heap", child)?;
    // SAFETY: the child's heap changes were merged just before; joining
    // the heap reaches nothing but the heap.
    unsafe { state().heap.join(region, &child.heap) };
    Ok((child.exit_code, child.fs_dirty))
}

/// The fault report a failed child left, if any.
fn child_report(id: u64) -> String {
    exec::report_of(id)
        .map(|r| String::from(r.text()))
        .unwrap_or_default()
}

/// Joins the child with ID `id` (for the C interface).
pub fn join_by_id(id: u64) -> Result<i32, Error> {
    join_id(id)
}

fn join_id(id: u64) -> Result<i32, Error> {
    // SAFETY: `st` is used to find and copy the slot, nothing else.
    let st = unsafe { state() };
    let Some(i) = st.live().iter().position(|c| c.used && c.id == id) else {
        return Err(Error::NoSuchChild(id));
    };
    let slot = st.live()[i];
    let kid = slot.kid;
    super::clear_report();
    // The child's heap region comes back whole after a merge, all free
    // when nothing of the child was merged (a fault, or a failed merge:
    // merges are all or nothing), and never when the join failed after
    // its merge (`forsake`).
    let mut region_back = slot.exec;
    // A forked child that retired, and how many pages it changed.
    let mut retired = false;
    let mut changed = 0;
    let result = (|| {
        let mut parent = Parent {
            symbols: slot.symbols,
        };
        let clean_ip = crate::arch::retired_clean_ip();
        let retired_at = [crate::arch::retired_ip(), clean_ip];
        let at: &[u64] = if slot.exec { &[] } else { &retired_at };
        let s = sys_err("waiting for the child", serve::run(kid, &mut parent, at))?;
        // `serve::run` returns a stopped child only when it retired.
        retired = s.status == sys::DET_S_READY;
        let clean = retired && s.ip == clean_ip;
        let done = retired || s.status == sys::DET_S_EXIT_NORMAL;
        if !done && !slot.exec {
            // SAFETY: giving the region back reaches nothing else.
            unsafe { state() }.heap.abandon(slot.region);
            region_back = true;
            take_back_given(kid, slot.given);
        }
        match s.status {
            _ if done => {
                let mut code = s.exit_code;
                let mut files_changed = true;
                if !slot.exec {
                    match merge(id, kid, slot.gap) {
                        Ok(n) => changed = n,
                        Err(e) => {
                            // The merge is all or nothing: none of the
                            // child's memory came over, so its region is
                            // free again, as for a child that faulted.
                            // SAFETY: giving the region back reaches
                            // nothing else.
                            unsafe { state() }.heap.abandon(slot.region);
                            region_back = true;
                            take_back_given(kid, slot.given);
                            return Err(e);
                        }
                    }
                    if clean {
                        // Exit status 0, no file and nothing of its heap
                        // changed: nothing of its state to read.
                        // SAFETY: a heap method reaching nothing else.
                        unsafe { state() }.heap.take_back(slot.region);
                        code = 0;
                        files_changed = false;
                    } else {
                        let (left, dirty) = reclaim(kid, slot.region)?;
                        if retired {
                            code = left;
                            files_changed = dirty != 0;
                        }
                    }
                    region_back = true;
                }
                if files_changed {
                    join_fs(id, kid, slot.holder)?;
                }
                // SAFETY: one addition.
                unsafe { state() }.stats.joins += 1;
                Ok(code)
            }
            sys::DET_S_EXCEPT => Err(Error::Fault {
                child: id,
                signo: s.signo,
                addr: s.addr,
                ip: s.ip,
                message: child_report(kid),
            }),
            _ => Err(Error::Killed {
                child: id,
                signo: s.signo,
            }),
        }
    })();
    if !region_back {
        // SAFETY: dropping the region reaches nothing else.
        unsafe { state() }.heap.forsake(slot.region);
    }
    // SAFETY: plain fields, nothing else reached.
    let st = unsafe { state() };
    if result.is_ok() && retired && changed <= SPARE_MAX_PAGES && st.nspares < MAX_SPARES {
        st.spares[st.nspares] = kid;
        st.nspares += 1;
    } else {
        let _ = sys::dput_plain(kid, KILL_NOW, 0, 0);
    }
    // SAFETY: a plain store.
    unsafe { state() }.clear_child(i);
    release_reference(slot.holder);
    if !slot.symbols.is_null() {
        // SAFETY: made by Box::into_raw in `exec`, freed once here.
        drop(unsafe { Box::from_raw(slot.symbols) });
    }
    io::flush();
    result
}

/// This process's join statistics so far.
pub fn stats() -> JoinStats {
    // SAFETY: a copy.
    unsafe { state() }.stats
}
