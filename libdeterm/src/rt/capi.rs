//! The C interface (`determ.h`): the same runtime for C programs built with
//! `gcc -static -nostdlib -ffreestanding` against `libdeterm.a`.
//!
//! Functions return 0 or a count on success and `-errno` on failure; the
//! text of the last failure is available from `det_last_error`. Paths are
//! NUL-terminated and name files in the process's in-memory file system.

use core::ffi::{c_char, c_int, c_long, c_void};

use super::{io, process, with_fs};
use crate::fs::FsError;
use crate::heap::Heap;
use crate::sys::Errno;

fn set_error(msg: core::fmt::Arguments<'_>) {
    let s = alloc::fmt::format(msg);
    let n = s.len().min(511);
    // Kept in the private runtime state, not in .bss, so a join never
    // merges a child's error text into its parent.
    // SAFETY: used for two copies that do not reach `state` (`s` is
    // formatted already).
    let st = unsafe { super::state() };
    st.last_error[..n].copy_from_slice(&s.as_bytes()[..n]);
    st.last_error_len = n;
}

fn errno_of(e: &process::Error) -> c_int {
    match e {
        process::Error::Sys(_, e) => e.0,
        process::Error::Conflict { .. } => Errno::EBADE.0,
        process::Error::Fs {
            error: FsError::Conflict { .. },
            ..
        } => Errno::EBADE.0,
        process::Error::Fs { error, .. } => fs_errno(error),
        process::Error::Fault { .. } | process::Error::Killed { .. } => Errno::EFAULT.0,
        process::Error::NoSuchChild(_) => 3, // ESRCH
        process::Error::TooDeep | process::Error::TooManyChildren => 11, // EAGAIN
        process::Error::Exec(_) => 8,        // ENOEXEC
    }
}

fn fs_errno(e: &FsError) -> c_int {
    match e {
        FsError::NotFound => 2,
        FsError::Exists => 17,
        FsError::NotDir => 20,
        FsError::IsDir => 21,
        FsError::NotEmpty => 39,
        FsError::NoSpace => 28,
        FsError::NameTooLong => 36,
        FsError::FileTooLarge => 27,
        FsError::Conflict { .. } => 52,
        _ => 22,
    }
}

fn fail(e: process::Error) -> c_int {
    set_error(format_args!("{e}"));
    -errno_of(&e)
}

fn fs_fail(e: FsError) -> c_long {
    set_error(format_args!("{e}"));
    -(fs_errno(&e) as c_long)
}

/// # Safety
/// `p` must be a NUL-terminated string.
unsafe fn path<'a>(p: *const c_char) -> &'a str {
    // SAFETY: forwarded to the caller; the string outlives the call.
    unsafe { super::cstr(p as *const u8) }
}

/// Copies the last error's text into `buf` (NUL-terminated); returns its
/// length.
///
/// # Safety
/// `buf` must hold `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn det_last_error(buf: *mut c_char, len: usize) -> usize {
    // SAFETY: used for one copy into the caller's buffer, which does not
    // reach `state`.
    let st = unsafe { super::state() };
    let n = st.last_error_len.min(len.saturating_sub(1));
    // SAFETY: `buf` holds `len` bytes (the caller's contract), n < len.
    unsafe {
        core::ptr::copy_nonoverlapping(st.last_error.as_ptr(), buf as *mut u8, n);
        if len > 0 {
            *buf.add(n) = 0;
        }
        n
    }
}

/// Forks child `id` running `fn(arg)`; its exit status is the return value.
///
/// # Safety
/// Whatever `arg` points at must stay valid until the child is joined.
#[no_mangle]
pub unsafe extern "C" fn det_fork(
    id: u64,
    func: extern "C" fn(*mut c_void) -> c_int,
    arg: *mut c_void,
) -> c_int {
    let arg = arg as usize;
    let r = process::fork_id(id, move || func(arg as *mut c_void));
    match r {
        Ok(child) => {
            core::mem::forget(child);
            0
        }
        Err(e) => fail(e),
    }
}

/// Joins child `id`: merges its changes, reaps it, stores its exit status.
///
/// # Safety
/// `status` must be writable or null.
#[no_mangle]
pub unsafe extern "C" fn det_join(id: u64, status: *mut c_int) -> c_int {
    match process::join_by_id(id) {
        Ok(code) => {
            if !status.is_null() {
                // SAFETY: the caller's contract.
                unsafe { *status = code };
            }
            0
        }
        Err(e) => fail(e),
    }
}

/// Starts the program at `path` with the NULL-terminated `argv`; returns
/// the child's ID (> 0) for `det_join`, or `-errno`.
///
/// # Safety
/// `path` and each `argv` entry must be NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn det_exec(path_: *const c_char, argv: *const *const c_char) -> c_long {
    let mut args: alloc::vec::Vec<&str> = alloc::vec::Vec::new();
    // SAFETY: the caller's contract.
    unsafe {
        let mut a = argv;
        while !a.is_null() && !(*a).is_null() {
            args.push(path(*a));
            a = a.add(1);
        }
    }
    // SAFETY: as above.
    match process::exec(unsafe { path(path_) }, &args) {
        Ok(child) => {
            let id = child.id();
            core::mem::forget(child);
            id as c_long
        }
        Err(e) => fail(e) as c_long,
    }
}

/// Writes to standard output (1) or error (2).
///
/// # Safety
/// `buf` must hold `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn det_write(fd: c_int, buf: *const c_void, len: usize) -> c_long {
    if fd != 1 && fd != 2 {
        return -(Errno::EBADF.0 as c_long);
    }
    // SAFETY: the caller's contract.
    io::write_fd(fd as u64, unsafe {
        core::slice::from_raw_parts(buf as *const u8, len)
    });
    len as c_long
}

/// Reads standard input; 0 at its end.
///
/// # Safety
/// `buf` must hold `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn det_read(buf: *mut c_void, len: usize) -> c_long {
    // SAFETY: the caller's contract.
    match io::read_stdin(unsafe { core::slice::from_raw_parts_mut(buf as *mut u8, len) }) {
        Ok(n) => n as c_long,
        Err(e) => -(e.0 as c_long),
    }
}

/// Creates the file `p` unless it exists, then runs `op` on the file
/// system; its byte count or `-errno`.
fn to_file(
    p: &str,
    op: impl FnOnce(&mut crate::fs::Fs<&'static mut [u8]>) -> Result<usize, FsError>,
) -> c_long {
    let r = with_fs(|fs| {
        if let Err(FsError::NotFound) = fs.lookup(p) {
            fs.create(p)?;
        }
        op(fs)
    });
    match r {
        Ok(n) => n as c_long,
        Err(e) => fs_fail(e),
    }
}

/// Writes `len` bytes at `off` of the file `path`, creating it.
///
/// # Safety
/// `p` a string; `buf` holds `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn det_file_write(
    p: *const c_char,
    off: u64,
    buf: *const c_void,
    len: usize,
) -> c_long {
    // SAFETY: the caller's contract.
    let (p, data) = unsafe { (path(p), core::slice::from_raw_parts(buf as *const u8, len)) };
    to_file(p, |fs| fs.write(p, off, data))
}

/// Appends to the file `path`, creating it.
///
/// # Safety
/// As `det_file_write`.
#[no_mangle]
pub unsafe extern "C" fn det_file_append(
    p: *const c_char,
    buf: *const c_void,
    len: usize,
) -> c_long {
    // SAFETY: the caller's contract.
    let (p, data) = unsafe { (path(p), core::slice::from_raw_parts(buf as *const u8, len)) };
    to_file(p, |fs| fs.append(p, data).map(|_| len))
}

/// Reads up to `len` bytes at `off` of the file `path`.
///
/// # Safety
/// `p` a string; `buf` holds `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn det_file_read(
    p: *const c_char,
    off: u64,
    buf: *mut c_void,
    len: usize,
) -> c_long {
    // SAFETY: the caller's contract.
    let (p, data) = unsafe {
        (
            path(p),
            core::slice::from_raw_parts_mut(buf as *mut u8, len),
        )
    };
    match with_fs(|fs| fs.read(p, off, data)) {
        Ok(n) => n as c_long,
        Err(e) => fs_fail(e),
    }
}

/// Size of the file `path`, or `-errno`.
///
/// # Safety
/// `p` a string.
#[no_mangle]
pub unsafe extern "C" fn det_file_size(p: *const c_char) -> c_long {
    // SAFETY: the caller's contract.
    let p = unsafe { path(p) };
    match with_fs(|fs| fs.stat(p)) {
        Ok(s) => s.size as c_long,
        Err(e) => fs_fail(e),
    }
}

/// Removes the file `path`.
///
/// # Safety
/// `p` a string.
#[no_mangle]
pub unsafe extern "C" fn det_file_remove(p: *const c_char) -> c_int {
    // SAFETY: the caller's contract.
    let p = unsafe { path(p) };
    match with_fs(|fs| fs.unlink(p)) {
        Ok(()) => 0,
        Err(e) => fs_fail(e) as c_int,
    }
}

/// Creates the directory `path`.
///
/// # Safety
/// `p` a string.
#[no_mangle]
pub unsafe extern "C" fn det_mkdir(p: *const c_char) -> c_int {
    // SAFETY: the caller's contract.
    let p = unsafe { path(p) };
    match with_fs(|fs| fs.mkdir(p)) {
        Ok(_) => 0,
        Err(e) => fs_fail(e) as c_int,
    }
}

/// Ends the process with `code` (shows pending output first).
#[no_mangle]
pub extern "C" fn det_exit(code: c_int) -> ! {
    super::exit(code)
}

/// # Safety
/// C `malloc`.
#[no_mangle]
pub unsafe extern "C" fn malloc(n: usize) -> *mut c_void {
    super::heap_alloc(n as u64, 16) as *mut c_void
}

/// # Safety
/// C `calloc` (a reused block is cleared, fresh zero pages are not).
#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        return core::ptr::null_mut();
    };
    super::heap_alloc_as(total as u64, 16, true) as *mut c_void
}

/// # Safety
/// C `free`: null or a block from malloc.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if !p.is_null() {
        // SAFETY: the caller's contract; freeing neither allocates nor
        // reaches `state`.
        unsafe { super::state().heap.free(p as *mut u8) }
    }
}

/// # Safety
/// C `realloc`.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, n: usize) -> *mut c_void {
    if p.is_null() {
        // SAFETY: as malloc.
        return unsafe { malloc(n) };
    }
    // SAFETY: `p` came from malloc; its size is in its header.
    unsafe {
        let have = Heap::size_of(p as *const u8) as usize;
        if n <= have {
            return p;
        }
        let q = malloc(n);
        if !q.is_null() {
            core::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, have);
            free(p);
        }
        q
    }
}
