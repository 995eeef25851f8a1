//! `hello`: the smallest deterministic program: prints a greeting, its
//! arguments and `PATH`.

#![no_std]
#![no_main]

use determ::println;

determ::main!(run);

fn run() -> i32 {
    println!("hello from a deterministic process");
    for (i, a) in determ::args().enumerate() {
        println!("arg {i}: {a}");
    }
    println!("PATH={}", determ::env_var("PATH").unwrap_or("(unset)"));
    0
}
