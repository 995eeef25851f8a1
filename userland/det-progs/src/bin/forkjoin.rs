//! `forkjoin`: a three-level fork tree (40 processes) where every node
//! marks its own slot of a static table, scoped forks writing the parent's
//! stack variables, a slice filled by `divide_at` (whose children must not
//! see the parent's half, nor the parent theirs), a `divide_at` child that
//! fails (its half comes back as it left it), and a divide-and-conquer
//! sum.

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
/// snapshot, and each parent at the middle of the half it handed to the
/// child: returns how many elements were filled, and how many of the
/// children's and of the parents' peeks read anything but zero.
fn fill_at(v: &mut [u64], base: u64) -> (u64, u64, u64) {
    if v.len() <= 1024 {
        for (i, x) in v.iter_mut().enumerate() {
            *x = (base + i as u64) * 3;
        }
        return (v.len() as u64, 0, 0);
    }
    let mid = v.len() / 2;
    let peek = v[mid + (v.len() - mid) / 2..].as_ptr() as usize;
    let peek_lo = v[mid / 2..].as_ptr() as usize;
    let ((n0, s0, p0, seen), (n1, s1, p1, seen_lo)) = divide_at(
        v,
        mid,
        |lo| {
            // SAFETY: an aligned u64 inside the slice, mapped in this
            // copy; only its value is in question.
            let seen = unsafe { core::ptr::read_volatile(peek as *const u64) };
            let (n, s, p) = fill_at(lo, base);
            (n, s, p, seen)
        },
        |hi| {
            // SAFETY: as above, in this process's memory.
            let seen = unsafe { core::ptr::read_volatile(peek_lo as *const u64) };
            let (n, s, p) = fill_at(hi, base + mid as u64);
            (n, s, p, seen)
        },
    )
    .expect("divide_at");
    (
        n0 + n1,
        s0 + s1 + (seen != 0) as u64,
        p0 + p1 + (seen_lo != 0) as u64,
    )
}

/// A `divide_at` child that fills its half and then panics: the join
/// fails, and the half's whole pages, handed to the child, come back as
/// it left them; the page it shares with the other half holds what it
/// held. Returns whether the join failed and whether every element of the
/// half is as it should be.
fn failed_half() -> (bool, bool) {
    const PAGE: usize = 4096;
    let mut v = vec![5u64; 4 * PAGE / 8];
    let mid = 3 * PAGE / 8;
    let r = divide_at(
        &mut v,
        mid,
        |lo| {
            lo.fill(7);
            panic!("a divide_at child panics on purpose")
        },
        |_| (),
    );
    let start = v.as_ptr() as usize;
    let (lo, hi) = (
        start.next_multiple_of(PAGE),
        (start + mid * 8) / PAGE * PAGE,
    );
    let kept = v[..mid].iter().enumerate().all(|(i, &x)| {
        let a = start + i * 8;
        x == if a >= lo && a < hi { 7 } else { 5 }
    });
    (r.is_err(), kept)
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
    let (filled, seen, seen_lo) = fill_at(&mut v, 0);
    let right = v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3);
    println!(
        "divide_at: {filled} filled, right: {right}, parent's half seen: {seen}, \
         child's half seen: {seen_lo}"
    );
    let (failed, kept) = failed_half();
    println!("divide_at, failed child: join failed: {failed}, half kept: {kept}");
    println!("divide: {}", dsum(0, 20000));
    let st = determ::stats();
    println!(
        "root: {} joins, {} merges, pages scanned {}, copied {}, compared {}",
        st.joins, st.merges, st.scanned_pages, st.copied_pages, st.compared_pages
    );
    0
}
