//! The allocator: addresses identical across runs, and no shared metadata
//! between processes that allocate concurrently.
//!
//! The heap is one fixed virtual range ([`crate::layout::HEAP_BASE`]). Each
//! process allocates only from its own *region*: at a fork the parent gives
//! the child a slice from the top of its free space ([`Heap::split`]), so a
//! parent and its running children never hand out the same address. All
//! bookkeeping (bump pointer, free-list heads, spare spans) is in
//! [`Heap`], which the runtime keeps in the private region that is never
//! merged; the only bytes the allocator writes inside the heap are a
//! 16-byte header before each block and free-list links inside freed blocks,
//! which belong to the process that wrote them. A join therefore never
//! conflicts on allocator state, and after a join the parent takes back the
//! part of the child's region the child did not use ([`Heap::reclaim`]).
//!
//! Blocks a child frees are reused by that child only; in the parent they
//! stay allocated (the parent had given up ownership, so this is a leak,
//! not a hazard). Sizes up to 32 KiB use power-of-two classes; larger
//! blocks are page-multiple, first-fit from their own free list.

/// Size classes: 16 B .. 32 KiB.
const CLASSES: usize = 12;
const MIN_CLASS: u64 = 16;
const LARGE: u64 = MIN_CLASS << (CLASSES - 1);
const HDR: u64 = 16;
const SPANS: usize = 16;
const PAGE: u64 = 4096;

/// The per-process allocator state. Plain data: copying it is how a child
/// inherits it (then [`Heap::enter_child`] gives the child its own region).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Heap {
    /// Next free address of the current region.
    pub bump: u64,
    /// End of the current region.
    pub hi: u64,
    /// Free lists of the size classes (0 = empty); links live in the blocks.
    free: [u64; CLASSES],
    /// Free list of large blocks.
    large: u64,
    /// Unused spans (start, end) taken back from joined children.
    spans: [(u64, u64); SPANS],
    /// Bytes handed out and not freed (statistics).
    pub in_use: u64,
}

impl Heap {
    /// A heap owning `[lo, hi)` (both page-aligned).
    pub const fn new(lo: u64, hi: u64) -> Heap {
        Heap {
            bump: lo,
            hi,
            free: [0; CLASSES],
            large: 0,
            spans: [(0, 0); SPANS],
            in_use: 0,
        }
    }

    fn class_of(size: u64) -> usize {
        let s = size.max(MIN_CLASS).next_power_of_two();
        (s.trailing_zeros() - MIN_CLASS.trailing_zeros()) as usize
    }

    /// Takes `len` bytes aligned to `align` from the bump region, switching
    /// to a spare span when it runs out.
    fn bump(&mut self, len: u64, align: u64) -> Option<u64> {
        loop {
            let at = (self.bump + align - 1) & !(align - 1);
            if at.checked_add(len).is_some_and(|e| e <= self.hi) {
                self.bump = at + len;
                return Some(at);
            }
            // The largest spare span that fits, if any.
            let need = len + align;
            let best = (0..SPANS)
                .filter(|&i| self.spans[i].1 - self.spans[i].0 >= need)
                .max_by_key(|&i| self.spans[i].1 - self.spans[i].0)?;
            let old = (self.bump, self.hi);
            (self.bump, self.hi) = self.spans[best];
            self.spans[best] = (0, 0);
            self.give_back(old.0, old.1);
        }
    }

    /// Allocates `size` bytes aligned to `align` (a power of two ≤ 4096).
    ///
    /// # Safety
    /// The heap's ranges must be mapped, writable memory owned by this
    /// process, as the runtime arranges.
    pub unsafe fn alloc(&mut self, size: u64, align: u64) -> *mut u8 {
        let align = align.max(HDR);
        if align > PAGE {
            return core::ptr::null_mut();
        }
        let need = size.max(1);
        if need <= LARGE {
            // Small: power-of-two classes; a block is aligned to what this
            // call asks, so a reused block must satisfy it too.
            let c = Self::class_of(need);
            let sz = MIN_CLASS << c;
            let block = if self.free[c] != 0 && self.free[c] % align == 0 {
                let b = self.free[c];
                // SAFETY: `b` is a free block of ours; its first word is
                // the next link.
                self.free[c] = unsafe { *(b as *const u64) };
                b
            } else {
                match self.bump(HDR + sz + (align - HDR), HDR) {
                    Some(at) => (at + HDR + align - 1) & !(align - 1),
                    None => return core::ptr::null_mut(),
                }
            };
            // SAFETY: the 16 bytes before the block are its header.
            unsafe { write_hdr(block, sz, c as u64) };
            self.in_use += sz;
            block as *mut u8
        } else {
            let len = (need + PAGE - 1) & !(PAGE - 1);
            // First fit in the large free list.
            let mut prev: *mut u64 = &mut self.large;
            // SAFETY: every node on the list is a freed large block of ours
            // with its size in its header and its link in its first word.
            unsafe {
                while *prev != 0 {
                    let b = *prev;
                    let bsz = *((b - HDR) as *const u64);
                    if bsz >= len {
                        *prev = *(b as *const u64);
                        write_hdr(b, bsz, CLASSES as u64);
                        self.in_use += bsz;
                        return b as *mut u8;
                    }
                    prev = b as *mut u64;
                }
            }
            let Some(at) = self.bump(len + PAGE, PAGE) else {
                return core::ptr::null_mut();
            };
            let b = at + PAGE;
            // SAFETY: `[at, at + PAGE + len)` was just taken from our region.
            unsafe { write_hdr(b, len, CLASSES as u64) };
            self.in_use += len;
            b as *mut u8
        }
    }

    /// Frees a block from [`alloc`](Heap::alloc) (by this process or an
    /// ancestor before the fork).
    ///
    /// # Safety
    /// `p` must be a live block of this heap lineage, freed once.
    pub unsafe fn free(&mut self, p: *mut u8) {
        let b = p as u64;
        // SAFETY: the caller vouches that `p` came from `alloc`.
        let (sz, class) = unsafe { read_hdr(b) };
        self.in_use = self.in_use.saturating_sub(sz);
        // SAFETY: the block is ours again; its first word becomes the link.
        unsafe {
            if class < CLASSES as u64 {
                *(b as *mut u64) = self.free[class as usize];
                self.free[class as usize] = b;
            } else {
                *(b as *mut u64) = self.large;
                self.large = b;
            }
        }
    }

    /// The usable size of a block.
    ///
    /// # Safety
    /// As [`free`](Heap::free).
    pub unsafe fn size_of(p: *const u8) -> u64 {
        // SAFETY: forwarded to the caller.
        unsafe { read_hdr(p as u64).0 }
    }

    /// At a fork: cuts the child's region off the top of the largest free
    /// space and returns it; the parent no longer allocates there.
    pub fn split(&mut self) -> (u64, u64) {
        // Use the spare span if it is larger than what is left here.
        if let Some(best) = (0..SPANS).max_by_key(|&i| self.spans[i].1 - self.spans[i].0) {
            let (s, e) = self.spans[best];
            if e - s > self.hi - self.bump {
                let old = (self.bump, self.hi);
                (self.bump, self.hi) = (s, e);
                self.spans[best] = (0, 0);
                self.give_back(old.0, old.1);
            }
        }
        let free = self.hi.saturating_sub(self.bump);
        let share = (free / 2).min((free / 16).max(64 << 20)).min(256 << 20) & !(PAGE - 1);
        let lo = self.hi - share;
        self.hi = lo;
        (lo, lo + share)
    }

    /// In the child after a fork: a fresh allocator owning `region`. The
    /// parent's free lists are left behind (their blocks are the parent's).
    pub fn enter_child(&mut self, region: (u64, u64)) {
        *self = Heap::new(region.0, region.1);
    }

    /// After joining a child that was given `region`: takes back the part
    /// above the child's final bump pointer (`child` is its final state).
    pub fn reclaim(&mut self, region: (u64, u64), child: &Heap) {
        // The child may itself have moved to a spare span it got back from a
        // grandchild; only a bump pointer inside its region tells us what
        // is unused.
        let used_to = if (region.0..=region.1).contains(&child.bump) && child.hi == region.1 {
            child.bump
        } else {
            region.1
        };
        let (s, e) = ((used_to + PAGE - 1) & !(PAGE - 1), region.1);
        if s < e {
            if self.hi == s && s == region.0 {
                self.hi = e;
            } else {
                self.give_back(s, e);
            }
        }
    }

    /// Keeps `[s, e)` as a spare span (dropping the smallest when full).
    fn give_back(&mut self, s: u64, e: u64) {
        if e <= s {
            return;
        }
        // Adjacent to a span: extend it.
        for sp in self.spans.iter_mut() {
            if sp.1 == s && sp.0 != sp.1 {
                sp.1 = e;
                return;
            }
            if sp.0 == e && sp.0 != sp.1 {
                sp.0 = s;
                return;
            }
        }
        let smallest = (0..SPANS)
            .min_by_key(|&i| self.spans[i].1 - self.spans[i].0)
            .unwrap_or(0);
        let (a, b) = self.spans[smallest];
        if b - a < e - s {
            self.spans[smallest] = (s, e);
        }
    }

    /// Bytes still free in the current region plus the spare spans.
    pub fn available(&self) -> u64 {
        self.hi.saturating_sub(self.bump) + self.spans.iter().map(|(s, e)| e - s).sum::<u64>()
    }
}

/// # Safety
/// `[b - HDR, b)` must be writable memory of ours.
unsafe fn write_hdr(b: u64, size: u64, class: u64) {
    // SAFETY: forwarded to the caller.
    unsafe {
        *((b - HDR) as *mut u64) = size;
        *((b - 8) as *mut u64) = class;
    }
}

/// # Safety
/// `b` must be a block with a header written by [`write_hdr`].
unsafe fn read_hdr(b: u64) -> (u64, u64) {
    // SAFETY: forwarded to the caller.
    unsafe { (*((b - HDR) as *const u64), *((b - 8) as *const u64)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// A page-aligned region of `len` bytes on the host heap.
    fn region(len: u64) -> (Vec<u8>, u64, u64) {
        let v = vec![0u8; (len + PAGE) as usize];
        let lo = (v.as_ptr() as u64 + PAGE - 1) & !(PAGE - 1);
        (v, lo, lo + len)
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_reused() {
        let (_mem, lo, hi) = region(64 << 20);
        let mut h = Heap::new(lo, hi);
        let mut blocks = Vec::new();
        let mut x = 12345u64;
        for _ in 0..2000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let size = (x >> 33) % 50_000 + 1;
            let align = 1u64 << ((x >> 20) % 13);
            // SAFETY: the region is ours and mapped (a Vec).
            let p = unsafe { h.alloc(size, align) } as u64;
            assert_ne!(p, 0);
            assert_eq!(p % align, 0, "size {size} align {align}");
            assert!(p >= lo && p + size <= hi);
            // SAFETY: just allocated.
            assert!(unsafe { Heap::size_of(p as *const u8) } >= size);
            // SAFETY: the block is ours to write.
            unsafe { core::ptr::write_bytes(p as *mut u8, 0xab, size as usize) };
            blocks.push((p, size));
        }
        let mut sorted = blocks.clone();
        sorted.sort();
        for w in sorted.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0 - HDR, "{w:?} overlap");
        }
        let used = h.bump;
        for &(p, _) in &blocks {
            // SAFETY: each block freed once.
            unsafe { h.free(p as *mut u8) };
        }
        assert_eq!(h.in_use, 0);
        for &(_, size) in &blocks {
            // SAFETY: as above.
            unsafe { h.alloc(size, 8) };
        }
        // Small blocks come back exactly; large ones first-fit, so allow
        // some growth.
        assert!(
            h.bump - used < (used - lo) / 2,
            "freed blocks were not reused"
        );
    }

    #[test]
    fn same_sequence_same_addresses() {
        let run = |lo, hi| {
            let mut h = Heap::new(lo, hi);
            let mut alloc = |size| {
                // SAFETY: the region is ours and mapped (a Vec).
                unsafe { h.alloc(size, 8) as u64 - lo }
            };
            (0..500u64)
                .map(|i| alloc(i * 37 % 9000 + 1))
                .collect::<Vec<_>>()
        };
        let (_a, lo1, hi1) = region(16 << 20);
        let (_b, lo2, hi2) = region(16 << 20);
        assert_eq!(run(lo1, hi1), run(lo2, hi2));
    }

    #[test]
    fn children_get_disjoint_regions_and_unused_space_comes_back() {
        let base = 0x1000_0000_0000u64;
        let mut p = Heap::new(base, base + (16 << 30));
        let mut regions = Vec::new();
        for _ in 0..40 {
            regions.push(p.split());
        }
        for r in &regions {
            assert!(r.1 - r.0 >= 64 << 20, "{r:x?} too small");
            assert!(r.0 >= p.hi);
        }
        for w in regions.windows(2) {
            assert!(w[1].1 <= w[0].0, "regions overlap");
        }
        let before = p.available();
        // Children used nothing: their regions come back.
        for r in regions.iter().rev() {
            let mut c = p;
            c.enter_child(*r);
            p.reclaim(*r, &c);
        }
        assert!(
            p.available() >= before + regions.iter().map(|r| r.1 - r.0).sum::<u64>() - PAGE * 40
        );
        // Deep nesting still leaves usable regions.
        let mut h = Heap::new(base, base + (16 << 30));
        for depth in 0..8 {
            let r = h.split();
            assert!(r.1 - r.0 >= 1 << 20, "depth {depth}: {:#x}", r.1 - r.0);
            h.enter_child(r);
        }
    }

    #[test]
    fn a_child_region_is_used_after_the_parent_runs_out() {
        let (_mem, lo, hi) = region(8 << 20);
        let mut h = Heap::new(lo, hi);
        let r = h.split();
        let mut c = h;
        c.enter_child(r);
        h.reclaim(r, &c);
        // The parent can now allocate more than its own remainder.
        let mut n = 0u64;
        // SAFETY: the region is ours.
        while unsafe { h.alloc(1 << 20, 8) } as u64 != 0 {
            n += 1;
        }
        assert!(n >= 6, "only {n} MiB");
    }
}
