//! `forkjoin`: a three-level fork tree (40 processes) where every node
//! marks its own slot of a static table, scoped forks writing the parent's
//! stack variables, a slice filled by `divide_at` (whose children must not
//! see the parent's half), and a divide-and-conquer sum.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;

use determ::{divide, divide_at, parallel_map, println, scope};

determ::main!(run);

static mut VISITED: [u32; 64] = [0; 64];

/// Node `index` of a complete 3-ary tree of `depth` more levels: marks its
/// slot and returns the sum of the indices in its subtree.
fn node(index: usize, depth: u32) -> u64 {
    // SAFETY: each node writes only its own slot; the merge brings it up.
    unsafe { VISITED[index] = index as u32 + 1 };
    if depth == 0 {
        return index as u64;
    }
    let sums = parallel_map(3, |k| node(index * 3 + 1 + k, depth - 1)).expect("join");
    index as u64 + sums.iter().sum::<u64>()
}

fn dsum(lo: u64, hi: u64) -> u64 {
    if hi - lo <= 2500 {
        return (lo..hi).map(|x| x * x % 1009).sum();
    }
    let mid = lo + (hi - lo) / 2;
    let (a, b) = divide(|| dsum(lo, mid), || dsum(mid, hi)).expect("divide");
    a + b
}

/// Fills `v[i]` with `(base + i) * 3`, halving with `divide_at` down to
/// 1024 elements. Each child peeks (outside safe Rust) at the middle of
/// the half its parent keeps, which lies in a page left out of its
/// snapshot: returns how many elements were filled and how many of those
/// peeks read anything but zero.
fn fill_at(v: &mut [u64], base: u64) -> (u64, u64) {
    if v.len() <= 1024 {
        for (i, x) in v.iter_mut().enumerate() {
            *x = (base + i as u64) * 3;
        }
        return (v.len() as u64, 0);
    }
    let mid = v.len() / 2;
    let peek = v[mid + (v.len() - mid) / 2..].as_ptr() as usize;
    let ((n0, s0, seen), (n1, s1)) = divide_at(
        v,
        mid,
        |lo| {
            // SAFETY: an aligned u64 inside the slice, mapped in this
            // copy; only its value is in question.
            let seen = unsafe { core::ptr::read_volatile(peek as *const u64) };
            let (n, s) = fill_at(lo, base);
            (n, s, seen)
        },
        |hi| fill_at(hi, base + mid as u64),
    )
    .expect("divide_at");
    (n0 + n1, s0 + s1 + (seen != 0) as u64)
}

fn run() -> i32 {
    let total = node(0, 3);
    // SAFETY: all children are joined; one thread.
    let visited = unsafe {
        (*core::ptr::addr_of!(VISITED))
            .iter()
            .filter(|&&v| v != 0)
            .count()
    };
    println!("tree: {visited} nodes, index sum {total}");
    let mut squares = [0u64; 6];
    scope(|s| {
        for (i, slot) in squares.iter_mut().enumerate() {
            s.fork(move || {
                *slot = (i * i) as u64;
                0
            })
            .expect("fork");
        }
    })
    .expect("scope");
    println!("scoped: {squares:?}");
    let mut v = vec![1u64; 1 << 14];
    let (filled, seen) = fill_at(&mut v, 0);
    let right = v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3);
    println!("divide_at: {filled} filled, right: {right}, parent's half seen: {seen}");
    println!("divide: {}", dsum(0, 20000));
    let st = determ::stats();
    println!(
        "root: {} joins, {} merges, pages scanned {}, copied {}, compared {}",
        st.joins, st.merges, st.scanned_pages, st.copied_pages, st.compared_pages
    );
    0
}
