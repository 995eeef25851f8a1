//! The program's start and the C symbols the compiler and the prebuilt
//! libraries expect, for programs that link no libc.
//!
//! `_start` (in [`crate::arch`]) hands the initial stack pointer to
//! [`start_rust`], which runs [`super::init`], then calls the program's
//! `main(argc, argv, envp)` (a C function, or a Rust one made with
//! [`crate::main!`]) and exits with its return value. `memcpy`, `memmove`
//! and `memset` are in [`crate::arch`]; `memcmp`, `bcmp` and `strlen` are
//! plain Rust here.

extern "C" {
    /// The program's entry point.
    fn main(argc: i32, argv: *const *const u8, envp: *const *const u8) -> i32;
}

pub(crate) extern "C" fn start_rust(sp: *const u64) -> ! {
    super::init(sp);
    // SAFETY: three fields are copied out at once.
    let (argc, argv, envp) = unsafe {
        let st = super::state();
        (st.argc, st.argv, st.envp)
    };
    // SAFETY: `main` is the program's C-ABI entry point; argv and envp are
    // the loader's arrays on the initial stack.
    let code = unsafe { main(argc as i32, argv, envp) };
    super::exit(code)
}

/// Defines the C `main` symbol for a Rust program: `determ::main!(run);`
/// with `fn run() -> i32`.
#[macro_export]
macro_rules! main {
    ($f:path) => {
        #[no_mangle]
        pub extern "C" fn main(
            _argc: i32,
            _argv: *const *const u8,
            _envp: *const *const u8,
        ) -> i32 {
            $f()
        }
    };
}

/// # Safety
/// C `memcmp`: `n` readable bytes on both sides.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: i < n; volatile reads keep the compiler from turning the
        // loop back into a memcmp call.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return x as i32 - y as i32;
        }
    }
    0
}

/// # Safety
/// As `memcmp`.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded to the caller.
    unsafe { memcmp(a, b, n) }
}

/// # Safety
/// C `strlen`: a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the caller's contract.
    unsafe {
        while s.add(n).read_volatile() != 0 {
            n += 1;
        }
    }
    n
}

/// The prebuilt `alloc` library is compiled for unwinding and refers to
/// this; with `panic=abort` nothing unwinds, so it is never called.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    super::stop()
}

/// Named by the prebuilt libraries' unwind tables; never called with
/// `panic=abort`.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
