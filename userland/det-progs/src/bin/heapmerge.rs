//! `heapmerge`: children build heap data (strings, vectors) in their own
//! arenas; after the joins the parent uses it, allocates more, finds
//! everything intact, and counts the children's blocks as its own.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use determ::{parallel_map, println};

determ::main!(run);

fn run() -> i32 {
    let before: Vec<u64> = (0..1000).collect();
    let parts: Vec<(String, Vec<u64>)> = parallel_map(4, |i| {
        let v: Vec<u64> = (0..20_000u64).map(|x| x * (i as u64 + 1)).collect();
        (format!("child {i} made {} numbers", v.len()), v)
    })
    .expect("join");
    // Allocate after the joins: must not land on the children's data.
    let after: Vec<Vec<u8>> = (0..64).map(|i| alloc::vec![i as u8; 5000]).collect();
    let mut ok = true;
    for (i, (s, v)) in parts.iter().enumerate() {
        let sum: u64 = v.iter().sum();
        let want: u64 = (0..20_000u64).sum::<u64>() * (i as u64 + 1);
        println!("{s}, sum {sum}");
        ok &= sum == want;
    }
    ok &= after
        .iter()
        .enumerate()
        .all(|(i, b)| b.iter().all(|&x| x == i as u8));
    ok &= before.iter().sum::<u64>() == 499_500;
    // What the children left is this process's now, counted as live.
    let kept: u64 = parts
        .iter()
        .map(|(s, v)| (s.capacity() + v.capacity() * 8) as u64)
        .sum();
    let counted = determ::heap_stats().live >= kept;
    println!("children's blocks counted live: {counted}");
    ok &= counted;
    // Addresses are fixed: print where the first child's data lives.
    println!(
        "first child's vector at {:#x}",
        parts[0].1.as_ptr() as usize
    );
    println!("heap intact: {ok}");
    if ok {
        0
    } else {
        1
    }
}
