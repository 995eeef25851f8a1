//! `forkjoin`: a three-level fork tree (40 processes) where every node
//! marks its own slot of a static table, scoped forks writing the parent's
//! stack variables, and a divide-and-conquer sum.

#![no_std]
#![no_main]

extern crate alloc;

use determ::{divide, parallel_map, println, scope};

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
    println!("divide: {}", dsum(0, 20000));
    let st = determ::stats();
    println!(
        "root: {} joins, {} merges, pages scanned {}, copied {}, compared {}",
        st.joins, st.merges, st.scanned_pages, st.copied_pages, st.compared_pages
    );
    0
}
