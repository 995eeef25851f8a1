//! `reuse`: joined children are kept and reused for later forks. Each one
//! must start from the parent's memory as it is at its own fork, whatever
//! it ran before: a counter the parent bumps, a table earlier children
//! filled, and output. Also children that fork children of their own,
//! that leave one unjoined (they exit rather than retire), that panic
//! between reused ones, and one forked while the parent rounds toward
//! zero, which it must do too.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use determ::{divide, fork, println, scope};

determ::main!(run);

static mut COUNTER: u64 = 0;
static mut TABLE: [u64; 300] = [0; 300];

fn counter() -> u64 {
    // SAFETY: one thread; children have their own copy.
    unsafe { COUNTER }
}

fn table() -> &'static [u64; 300] {
    // SAFETY: one thread; read while nothing writes it.
    unsafe { &*core::ptr::addr_of!(TABLE) }
}

fn run() -> i32 {
    // Sequential forks: each sees the counter as bumped before it, the
    // table as its predecessors left it, and fills its own slot.
    let mut bad = 0;
    for i in 0..300u64 {
        // SAFETY: one thread; no child is running.
        unsafe { COUNTER = COUNTER * 3 + i };
        let want = counter();
        let c = fork(move || {
            let seen: u64 = table()[..i as usize].iter().sum();
            let expect: u64 = (0..i).map(|k| k * k).sum();
            // SAFETY: the child's own copy; its slot alone is written.
            unsafe { TABLE[i as usize] = if seen == expect { i * i } else { u64::MAX } };
            ((counter() ^ want) == 0) as i32 + (i % 100) as i32
        })
        .expect("fork");
        let code = c.join().expect("join");
        if code != 1 + (i % 100) as i32 {
            bad += 1;
        }
    }
    let table_ok = table()
        .iter()
        .enumerate()
        .all(|(i, &v)| v == (i * i) as u64);
    println!("sequential: 300 children, {bad} wrong, table intact: {table_ok}");

    // Children that fork their own, retiring with spares of their own.
    let mut sums = Vec::new();
    for r in 0..40u64 {
        let c = fork(move || {
            let (a, b) = divide(|| r * 2, || r * 3).expect("divide");
            let (x, y) = divide(|| a + 1, || b + 1).expect("divide");
            (x + y) as i32
        })
        .expect("fork");
        sums.push(c.join().expect("join") as u64);
    }
    let want: Vec<u64> = (0..40).map(|r| 5 * r + 2).collect();
    println!("nested: {}", sums == want);

    // A child leaving its own child unjoined, then ordinary ones.
    let c = fork(|| {
        core::mem::forget(fork(|| 3).expect("fork"));
        4
    })
    .expect("fork");
    let left = c.join().expect("join");
    // A panicking child among reused ones.
    let p = fork(|| panic!("child panics on purpose")).expect("fork");
    let panicked = p.join().is_err();
    let mut squares = [0u64; 8];
    scope(|s| {
        for (i, slot) in squares.iter_mut().enumerate() {
            s.fork(move || {
                println!("scoped child {i}");
                *slot = (i * i) as u64;
                0
            })
            .expect("fork");
        }
    })
    .expect("scope");
    println!("left one: {left}, panicked: {panicked}, scoped: {squares:?}");

    // The parent rounds toward zero; a reused child, which last ran
    // rounding to nearest, must start as the parent is.
    let saved = mxcsr();
    set_mxcsr(saved | 0x6000);
    let here = tenth_low_byte();
    let c = fork(|| tenth_low_byte() as i32).expect("fork");
    let there = c.join().expect("join");
    set_mxcsr(saved);
    println!(
        "rounding: parent {here:#x}, child {there:#x}, nearest {:#x}",
        tenth_low_byte()
    );
    0
}

/// The low byte of 1/10 as this thread rounds it (0x9a to nearest, 0x99
/// toward zero).
fn tenth_low_byte() -> u64 {
    let x = core::hint::black_box(1.0f64) / core::hint::black_box(10.0f64);
    x.to_bits() & 0xff
}

fn mxcsr() -> u32 {
    let mut v = 0u32;
    // SAFETY: stores MXCSR into `v`.
    unsafe { core::arch::asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack)) };
    v
}

fn set_mxcsr(v: u32) {
    // SAFETY: loads MXCSR from `v`, a value `stmxcsr` gave with other
    // control bits set.
    unsafe { core::arch::asm!("ldmxcsr [{}]", in(reg) &v, options(nostack, readonly)) };
}
