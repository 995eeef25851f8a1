//! `exitstatus`: a child's exit status and a child's panic come back to the
//! parent; the program exits with its first argument.

#![no_std]
#![no_main]

use determ::{fork, println};

determ::main!(run);

fn run() -> i32 {
    let c = fork(|| 7).expect("fork");
    println!("child exited with {}", c.join().expect("join"));
    let c = fork(|| panic!("boom in the child")).expect("fork");
    match c.join() {
        Ok(s) => println!("panicking child exited with {s}?"),
        Err(e) => println!("panicking child: {e}"),
    }
    let code = determ::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    if determ::args().nth(2) == Some("panic") {
        panic!("the root panics on request");
    }
    code
}
