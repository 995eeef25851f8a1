//! `stdin`: a child reads standard input (its reads trap to the parent,
//! which asks detrun) and returns it upper-cased; the root prints it.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use determ::{divide, println};

determ::main!(run);

fn run() -> i32 {
    let (upper, ()) = divide(
        || -> Vec<u8> {
            let input = determ::rt::io::read_stdin_to_end().expect("read");
            input.to_ascii_uppercase()
        },
        || (),
    )
    .expect("divide");
    println!(
        "{} bytes: {}",
        upper.len(),
        core::str::from_utf8(&upper).unwrap_or("?").trim_end()
    );
    0
}
