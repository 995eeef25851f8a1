//! `primes`: the Rust example of docs/writing-deterministic-programs.md.
//! Counts primes below a limit in parallel: each child counts one slice,
//! writes its count into a slot of the parent's vector and prints a line;
//! the lines come out in child order on every run.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use determ::{parallel_for, println};

determ::main!(run);

fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

fn run() -> i32 {
    let limit: u64 = determ::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let parts = 4;
    let mut counts = vec![0u64; parts];
    let slots = counts.as_mut_ptr() as usize;
    parallel_for(parts, |i| {
        let (lo, hi) = (limit * i as u64 / 4, limit * (i as u64 + 1) / 4);
        let n = (lo..hi).filter(|&x| is_prime(x)).count() as u64;
        // SAFETY: child i writes only slot i of `counts`, which outlives
        // the joins; the join merges the slot back into the parent.
        unsafe { *(slots as *mut u64).add(i) = n };
        println!("part {i}: {n} primes in [{lo}, {hi})");
    })
    .expect("a child failed");
    println!("{} primes below {limit}", counts.iter().sum::<u64>());
    0
}
