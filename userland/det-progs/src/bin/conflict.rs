//! `conflict`: two children change `COUNTER` to different values; the
//! second join is a merge conflict naming that symbol. With `panic`, the
//! root panics on it, so detrun reports it.

#![no_std]
#![no_main]

use determ::{fork, println};

determ::main!(run);

#[no_mangle]
static mut COUNTER: u64 = 0;

fn run() -> i32 {
    let a = fork(|| {
        // SAFETY: one thread per process; each child writes its own copy.
        unsafe { COUNTER = 1 };
        0
    })
    .expect("fork");
    let b = fork(|| {
        // SAFETY: as above.
        unsafe { COUNTER = 2 };
        0
    })
    .expect("fork");
    a.join().expect("first join");
    let r = b.join();
    if determ::args().nth(1) == Some("panic") {
        let status = r.expect("second join");
        return status;
    }
    match r {
        Ok(_) => {
            println!("no conflict?");
            1
        }
        Err(e) => {
            println!("{e}");
            3
        }
    }
}
