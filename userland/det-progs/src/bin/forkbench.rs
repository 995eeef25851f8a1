//! `forkbench K N`: N libdeterm fork + join cycles of a child that writes
//! one byte in each of K pages of a block its parent allocated. The
//! program cannot read a clock: `det_membench` times whole runs of it
//! against `fork()` + the same writes + `waitpid` (docs/kernel.md).

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use determ::println;

determ::main!(run);

const PAGE: usize = 4096;

fn arg(i: usize) -> usize {
    determ::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("usage: forkbench PAGES CYCLES"))
}

fn run() -> i32 {
    let (pages, cycles) = (arg(1), arg(2));
    let mut block = vec![0u8; pages.max(1) * PAGE];
    let at = block.as_mut_ptr() as usize;
    for n in 0..cycles {
        let child = determ::fork(move || {
            for p in 0..pages {
                // SAFETY: the block outlives the join below and only this
                // child writes it while it runs.
                unsafe { *((at + p * PAGE) as *mut u8) = n as u8 + 1 };
            }
            0
        })
        .expect("fork");
        child.join().expect("join");
    }
    let sum: u64 = block.iter().step_by(PAGE).map(|&b| b as u64).sum();
    let st = determ::stats();
    println!(
        "forkbench pages={pages} cycles={cycles} sum={sum} merges={} copied={}",
        st.merges, st.copied_pages
    );
    0
}
