//! The `qsort` demo's sequential parts: a quicksort and its partition step.
//!
//! The parallel versions call [`partition`] at each of the top
//! log2(2N) levels, give one side to a new worker and keep the other, and
//! finish each piece with [`quicksort`]. Both pieces of a split are disjoint
//! slices, so a worker writes only its own range of the array.

/// Below this many elements, insertion sort.
const SMALL: usize = 24;

/// Orders the first, middle (`(len - 1) / 2`) and last element and
/// returns the middle one: the median-of-three pivot, at an index below
/// the last, which Hoare's scheme needs to always split inside.
fn pivot(a: &mut [u64]) -> u64 {
    let (mid, last) = ((a.len() - 1) / 2, a.len() - 1);
    if a[mid] < a[0] {
        a.swap(mid, 0);
    }
    if a[last] < a[mid] {
        a.swap(last, mid);
        if a[mid] < a[0] {
            a.swap(mid, 0);
        }
    }
    a[mid]
}

/// Hoare partition of `a` (at least 2 elements) around its median-of-three
/// pivot: returns `m` with `0 < m < a.len()`, every element of `a[..m]` ≤
/// every element of `a[m..]`.
pub fn partition(a: &mut [u64]) -> usize {
    let p = pivot(a);
    // Hoare's scheme: both scans stop at an element equal to the pivot.
    let (mut i, mut j) = (0usize, a.len() - 1);
    loop {
        while a[i] < p {
            i += 1;
        }
        while a[j] > p {
            j -= 1;
        }
        if i >= j {
            // Hoare's scheme stops with j < len - 1; split after j.
            return j + 1;
        }
        a.swap(i, j);
        i += 1;
        j -= 1;
    }
}

fn insertion(a: &mut [u64]) {
    for i in 1..a.len() {
        let v = a[i];
        let mut j = i;
        while j > 0 && a[j - 1] > v {
            a[j] = a[j - 1];
            j -= 1;
        }
        a[j] = v;
    }
}

/// Sorts `a` ascending: quicksort recursing into the smaller side (stack
/// depth at most log2 of the length), insertion sort for small pieces.
pub fn quicksort(mut a: &mut [u64]) {
    while a.len() > SMALL {
        let m = partition(a);
        let (lo, hi) = a.split_at_mut(m);
        if lo.len() < hi.len() {
            quicksort(lo);
            a = hi;
        } else {
            quicksort(hi);
            a = lo;
        }
    }
    insertion(a);
}

/// How many levels the parallel sort forks: log2(2N), rounded up.
pub fn fork_depth(cpus: u32) -> u32 {
    let n = 2 * cpus.max(1);
    u32::BITS - (n - 1).leading_zeros()
}

/// Fills `a` from `rng`.
pub fn fill(rng: &mut crate::prng::Rng, a: &mut [u64]) {
    for x in a.iter_mut() {
        *x = rng.next_u64();
    }
}

/// Whether `a` is ascending.
pub fn is_sorted(a: &[u64]) -> bool {
    a.windows(2).all(|w| w[0] <= w[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn sorts_random_and_degenerate_inputs() {
        let mut rng = crate::prng::Rng::new(11);
        for n in [0usize, 1, 2, 3, 25, 100, 1000, 4097] {
            let mut a: Vec<u64> = (0..n).map(|_| rng.below(50)).collect();
            let mut want = a.clone();
            want.sort_unstable();
            quicksort(&mut a);
            assert_eq!(a, want, "n={n}");
            let mut same = std::vec![5u64; n];
            quicksort(&mut same);
            let mut asc: Vec<u64> = (0..n as u64).collect();
            quicksort(&mut asc);
            assert!(is_sorted(&asc));
        }
    }

    #[test]
    fn partition_splits_inside_and_orders_sides() {
        let mut rng = crate::prng::Rng::new(5);
        for n in [2usize, 3, 10, 1000] {
            for _ in 0..20 {
                let mut a: Vec<u64> = (0..n).map(|_| rng.below(7)).collect();
                let m = partition(&mut a);
                assert!(0 < m && m < n, "n={n} m={m}");
                let max_lo = a[..m].iter().max().unwrap();
                let min_hi = a[m..].iter().min().unwrap();
                assert!(max_lo <= min_hi);
            }
        }
    }

    #[test]
    fn depth_is_log2_of_2n() {
        assert_eq!(fork_depth(1), 1);
        assert_eq!(fork_depth(2), 2);
        assert_eq!(fork_depth(4), 3);
        assert_eq!(fork_depth(3), 3);
        assert_eq!(fork_depth(8), 4);
    }
}
