//! `detsum`: a parallel computation whose output must be identical on every
//! run and any number of CPUs: eight children mix numbers (with nested
//! forks), children print as they go, the root prints a digest.

#![no_std]
#![no_main]

extern crate alloc;

use determ::{divide, parallel_map, println};

determ::main!(run);

fn mix(mut x: u64, rounds: u32) -> u64 {
    for _ in 0..rounds {
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51afd7ed558ccd);
        x ^= x >> 29;
    }
    x
}

fn run() -> i32 {
    let parts = parallel_map(8, |i| {
        let (a, b) = divide(
            || mix(i as u64 * 2, 20_000),
            || mix(i as u64 * 2 + 1, 20_000),
        )
        .expect("divide");
        println!("part {i}: {a:016x} {b:016x}");
        a ^ b.rotate_left(i as u32)
    })
    .expect("join");
    let digest = parts.iter().fold(0u64, |d, &p| mix(d ^ p, 3));
    println!("digest {digest:016x}");
    0
}
