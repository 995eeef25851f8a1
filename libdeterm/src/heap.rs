//! The allocator: addresses identical across runs, no shared metadata
//! between processes that allocate concurrently, and a heap that comes
//! back whole after every join.
//!
//! The heap is one fixed virtual range ([`crate::layout::HEAP_BASE`]).
//! Each process owns a *home* region of it (the root: all of it) and keeps
//! its free space as a sorted table of page ranges, coalesced on every
//! insert. At a fork the parent lends the child a slice from the top of its
//! largest free range ([`Heap::split`]); the child starts a fresh [`Heap`]
//! whose home is that slice. All bookkeeping is in [`Heap`], which the
//! runtime keeps in the private region that a join never merges; the only
//! bytes the allocator writes inside the heap are a 16-byte header before
//! each block and free-list links inside freed blocks, written by the
//! process that owns the block at the time. So a join never conflicts on
//! allocator state.
//!
//! At a join the parent takes the child's whole region back
//! ([`Heap::join`]): the child's free ranges join the parent's (coalescing
//! with the free space around the region), and what the child still holds
//! (chunks with live small blocks, large blocks) becomes the parent's,
//! returned to the free ranges as soon as the parent frees it. A child
//! that frees a block allocated before its fork (by an ancestor) cannot
//! touch the owner's bookkeeping, which the owner may be using at the same
//! time: it links the block on its *foreign* list, and the parent frees
//! those blocks at the join.
//!
//! Small sizes (≤ 32 KiB) use power-of-two classes carved from *chunks*
//! (64 KiB, growing to 4 MiB for a process that needs many), each with its
//! own free lists and a count of live blocks: a chunk whose last block is
//! freed goes back to the free ranges whole. Larger blocks are whole pages
//! from the free ranges (address-ordered first fit), with their header in
//! the page before. Addresses depend only on the sequence of calls, so
//! they are identical in every run, and the heap runs out at the same call
//! for the same heap size.

/// Size classes: 16 B .. 32 KiB.
const CLASSES: usize = 12;
const MIN_CLASS: u64 = 16;
const LARGE: u64 = MIN_CLASS << (CLASSES - 1);
/// The class tag of a large block (page-multiple, from the free ranges).
const TAG_LARGE: u64 = CLASSES as u64;
const HDR: u64 = 16;
const PAGE: u64 = 4096;
/// Free ranges a process keeps; when full, the smallest is lost.
const RANGES: usize = 64;
/// Chunks a process keeps; when full, small requests become large blocks
/// and a joined child's chunks beyond it are lost.
const CHUNKS: usize = 48;
const CHUNK_MIN: u64 = 64 << 10;
const CHUNK_MAX: u64 = 4 << 20;

/// A heap's figures, as `detrun --stats` and [`crate::rt`] report them.
/// `repr(C)`: the runtime leaves it in the private region for `detrun`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes of the heap this process owns (the root: the heap's size).
    pub size: u64,
    /// Bytes neither free nor lent to a running child: chunks, large
    /// blocks and lost space.
    pub held: u64,
    /// The most `held` ever was, counting joined children's own peaks
    /// (each child's on top of what this process held at its join).
    pub peak_held: u64,
    /// Bytes of live blocks (handed out or adopted, not freed).
    pub live: u64,
    /// The most `live` ever was, counted like `peak_held`.
    pub peak_live: u64,
    /// Bytes that can never be used again: ranges dropped from a full
    /// table, chunks beyond a full table, regions of children whose join
    /// failed after a partial merge or that were never joined.
    pub lost: u64,
    /// Bytes in the free ranges.
    pub free: u64,
    /// The largest free range.
    pub largest_free: u64,
    /// Free ranges (1 when the free space is in one piece).
    pub ranges: u64,
}

/// A stretch of the heap that small blocks are carved from.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct Chunk {
    lo: u64,
    hi: u64,
    /// Next never-used address.
    bump: u64,
    /// Blocks handed out and not freed.
    live: u64,
    /// Free lists of the size classes (0 = empty); links live in the blocks.
    free: [u64; CLASSES],
}

/// What a join adds from a child's heap besides its lists: its peaks,
/// what it lost (and lent without taking back), what it holds, and the
/// blocks it freed that were not its own.
#[derive(Default)]
struct Counts {
    peak_held: u64,
    peak_live: u64,
    lost: u64,
    in_use: u64,
    foreign: u64,
    /// Its `fresh` (0 when unknown: nothing handed out).
    fresh: u64,
}

/// The per-process allocator state. Plain data: a parent reads its
/// child's copy at the join.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Heap {
    /// The region this process owns.
    home: (u64, u64),
    nranges: usize,
    nchunks: usize,
    /// Blocks allocated before this process was forked that it freed,
    /// linked through their first word, for the parent to free.
    foreign: u64,
    /// Bytes lent to children not yet joined.
    lent: u64,
    free_bytes: u64,
    in_use: u64,
    peak_live: u64,
    peak_held: u64,
    lost: u64,
    /// Nothing at or above this address in the home region, outside
    /// regions lent to running children, was ever handed out: it reads
    /// as zeros ([`alloc_zeroed`](Heap::alloc_zeroed)).
    fresh: u64,
    /// Free page ranges, sorted by address, never adjacent. The arrays
    /// come last: a new child's heap ([`Heap::enter_child`]) writes the
    /// fields above and one range, a few bytes of one page.
    ranges: [(u64, u64); RANGES],
    chunks: [Chunk; CHUNKS],
}

impl Heap {
    /// A heap owning `[lo, hi)` (both page-aligned).
    pub fn new(lo: u64, hi: u64) -> Heap {
        let mut h = Heap {
            home: (0, 0),
            nranges: 0,
            nchunks: 0,
            foreign: 0,
            lent: 0,
            free_bytes: 0,
            in_use: 0,
            peak_live: 0,
            peak_held: 0,
            lost: 0,
            fresh: 0,
            ranges: [(0, 0); RANGES],
            chunks: [Chunk::default(); CHUNKS],
        };
        h.reset(lo, hi);
        h
    }

    /// Makes this a heap owning `[lo, hi)`, all free, in place: the
    /// arrays are read only up to their counts, so they are left as
    /// they are.
    fn reset(&mut self, lo: u64, hi: u64) {
        self.home = (lo, hi);
        self.nranges = 0;
        self.nchunks = 0;
        self.foreign = 0;
        self.lent = 0;
        self.free_bytes = 0;
        self.in_use = 0;
        self.peak_live = 0;
        self.peak_held = 0;
        self.lost = 0;
        self.fresh = lo;
        self.put(lo, hi);
    }

    fn class_of(size: u64) -> usize {
        let s = size.max(MIN_CLASS).next_power_of_two();
        (s.trailing_zeros() - MIN_CLASS.trailing_zeros()) as usize
    }

    fn held(&self) -> u64 {
        (self.home.1 - self.home.0) - self.free_bytes - self.lent
    }

    fn note(&mut self) {
        self.peak_held = self.peak_held.max(self.held());
        self.peak_live = self.peak_live.max(self.in_use);
    }

    /// Takes `len` bytes (a page multiple) from the lowest free range that
    /// has them.
    fn take(&mut self, len: u64) -> Option<u64> {
        let i = (0..self.nranges).find(|&i| self.ranges[i].1 - self.ranges[i].0 >= len)?;
        let at = self.ranges[i].0;
        self.fresh = self.fresh.max(at + len);
        self.ranges[i].0 += len;
        if self.ranges[i].0 == self.ranges[i].1 {
            self.remove_range(i);
        }
        self.free_bytes -= len;
        self.note();
        Some(at)
    }

    fn remove_range(&mut self, i: usize) {
        self.ranges.copy_within(i + 1..self.nranges, i);
        self.nranges -= 1;
    }

    /// Returns `[s, e)` to the free ranges, merged with its neighbours.
    /// With the table full and no neighbour, the smallest range is lost.
    fn put(&mut self, s: u64, e: u64) {
        if e <= s {
            return;
        }
        self.free_bytes += e - s;
        let i = self.ranges[..self.nranges].partition_point(|r| r.0 < s);
        let joins_prev = i > 0 && self.ranges[i - 1].1 == s;
        let joins_next = i < self.nranges && self.ranges[i].0 == e;
        match (joins_prev, joins_next) {
            (true, true) => {
                self.ranges[i - 1].1 = self.ranges[i].1;
                self.remove_range(i);
            }
            (true, false) => self.ranges[i - 1].1 = e,
            (false, true) => self.ranges[i].0 = s,
            (false, false) => {
                if self.nranges == RANGES {
                    let small = (0..RANGES)
                        .min_by_key(|&j| self.ranges[j].1 - self.ranges[j].0)
                        .unwrap_or(0);
                    let (a, b) = self.ranges[small];
                    if b - a <= e - s {
                        self.lose(b - a);
                        self.remove_range(small);
                        return self.insert_at(s, e);
                    }
                    return self.lose(e - s);
                }
                self.ranges.copy_within(i..self.nranges, i + 1);
                self.ranges[i] = (s, e);
                self.nranges += 1;
            }
        }
    }

    fn insert_at(&mut self, s: u64, e: u64) {
        let i = self.ranges[..self.nranges].partition_point(|r| r.0 < s);
        self.ranges.copy_within(i..self.nranges, i + 1);
        self.ranges[i] = (s, e);
        self.nranges += 1;
    }

    /// Free bytes that leave the free ranges for good.
    fn lose(&mut self, len: u64) {
        self.free_bytes -= len;
        self.lost += len;
        self.note();
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
        let b = if need <= LARGE {
            // SAFETY: forwarded to the caller.
            unsafe { self.alloc_small(Self::class_of(need), align) }
        } else {
            None
        };
        // SAFETY: forwarded to the caller.
        let b = b.or_else(|| unsafe { self.alloc_large(need) });
        match b {
            Some(b) => {
                self.note();
                b as *mut u8
            }
            None => core::ptr::null_mut(),
        }
    }

    /// As [`alloc`](Heap::alloc), the block's bytes all zero: cleared
    /// unless the block lies wholly where nothing was handed out before
    /// (at or above `fresh`), which the kernel gave as zeros and nobody
    /// wrote since.
    ///
    /// # Safety
    /// As [`alloc`](Heap::alloc), and the home region read as zeros when
    /// the heap was made ([`Heap::new`]).
    pub unsafe fn alloc_zeroed(&mut self, size: u64, align: u64) -> *mut u8 {
        let fresh = self.fresh;
        // SAFETY: forwarded to the caller.
        let p = unsafe { self.alloc(size, align) };
        if !p.is_null() && (p as u64) < fresh {
            // SAFETY: a block of at least `size` bytes, just allocated.
            unsafe { core::ptr::write_bytes(p, 0, size as usize) };
        }
        p
    }

    /// A block of class `c`, or `None` when no chunk can be had (the
    /// caller then makes it a large block).
    ///
    /// # Safety
    /// As [`alloc`](Heap::alloc).
    unsafe fn alloc_small(&mut self, c: usize, align: u64) -> Option<u64> {
        let sz = MIN_CLASS << c;
        // A freed block of the class, in the newest chunk that has one
        // (this process's own before those adopted at joins); a reused
        // block must satisfy this call's alignment too.
        let reuse = (0..self.nchunks).rev().find(|&i| {
            let f = self.chunks[i].free[c];
            f != 0 && f.is_multiple_of(align)
        });
        let (i, b) = match reuse {
            Some(i) => {
                let b = self.chunks[i].free[c];
                // SAFETY: `b` is a free block of ours; its first word is
                // the next link.
                self.chunks[i].free[c] = unsafe { *(b as *const u64) };
                (i, b)
            }
            None => {
                let fits = |k: &Chunk| ((k.bump + HDR + align - 1) & !(align - 1)) + sz <= k.hi;
                let i = match self.nchunks.checked_sub(1) {
                    Some(last) if fits(&self.chunks[last]) => last,
                    _ => self.new_chunk(sz + HDR + align)?,
                };
                let k = &mut self.chunks[i];
                let b = (k.bump + HDR + align - 1) & !(align - 1);
                k.bump = b + sz;
                (i, b)
            }
        };
        self.chunks[i].live += 1;
        self.in_use += sz;
        // SAFETY: the 16 bytes before the block are in its chunk, ours.
        unsafe { write_hdr(b, sz, c as u64) };
        Some(b)
    }

    /// Adds a chunk of at least `need` bytes; returns its index.
    fn new_chunk(&mut self, need: u64) -> Option<usize> {
        if self.nchunks == CHUNKS {
            return None;
        }
        let len = (CHUNK_MIN << self.nchunks.min(6))
            .min(CHUNK_MAX)
            .max((need + PAGE - 1) & !(PAGE - 1));
        let lo = self.take(len)?;
        self.chunks[self.nchunks] = Chunk {
            lo,
            hi: lo + len,
            bump: lo,
            ..Chunk::default()
        };
        self.nchunks += 1;
        Some(self.nchunks - 1)
    }

    /// # Safety
    /// As [`alloc`](Heap::alloc).
    unsafe fn alloc_large(&mut self, need: u64) -> Option<u64> {
        let len = need.checked_add(PAGE - 1)? & !(PAGE - 1);
        let at = self.take(len.checked_add(PAGE)?)?;
        let b = at + PAGE;
        // SAFETY: `[at, b + len)` was just taken from our free ranges.
        unsafe { write_hdr(b, len, TAG_LARGE) };
        self.in_use += len;
        Some(b)
    }

    /// Frees a block from [`alloc`](Heap::alloc), by this process or by
    /// an ancestor before the fork.
    ///
    /// # Safety
    /// `p` must be a live block of this heap lineage that this process
    /// owns, freed once.
    pub unsafe fn free(&mut self, p: *mut u8) {
        let b = p as u64;
        if !(self.home.0..self.home.1).contains(&b) {
            // SAFETY: the block is ours to reuse; its first word becomes
            // the link. Its owner's bookkeeping is left alone.
            unsafe { *(b as *mut u64) = self.foreign };
            self.foreign = b;
            return;
        }
        // SAFETY: the caller vouches that `p` came from `alloc`.
        let (sz, class) = unsafe { read_hdr(b) };
        self.in_use = self.in_use.saturating_sub(sz);
        if class == TAG_LARGE {
            return self.put(b - PAGE, b + sz);
        }
        // A block of a chunk that was lost stays where it is.
        let Some(i) =
            (0..self.nchunks).find(|&i| (self.chunks[i].lo..self.chunks[i].hi).contains(&b))
        else {
            return;
        };
        let k = &mut self.chunks[i];
        k.live -= 1;
        if k.live == 0 {
            let (lo, hi) = (k.lo, k.hi);
            self.chunks.copy_within(i + 1..self.nchunks, i);
            self.nchunks -= 1;
            return self.put(lo, hi);
        }
        let c = class as usize;
        // SAFETY: the block is ours again; its first word becomes the link.
        unsafe { *(b as *mut u64) = k.free[c] };
        k.free[c] = b;
    }

    /// The usable size of a block.
    ///
    /// # Safety
    /// As [`free`](Heap::free).
    pub unsafe fn size_of(p: *const u8) -> u64 {
        // SAFETY: forwarded to the caller.
        unsafe { read_hdr(p as u64).0 }
    }

    /// At a fork: lends the child a region cut from the top of the largest
    /// free range (half of it, at most max(1/16 of it, 64 MiB), at most
    /// 256 MiB; empty when nothing is free). Returns the region and the
    /// rest of that range below it, which stays free here: the child
    /// cannot write there, so its join need not merge it.
    pub fn split(&mut self) -> ((u64, u64), (u64, u64)) {
        let Some(i) = (0..self.nranges).max_by_key(|&i| self.ranges[i].1 - self.ranges[i].0) else {
            return ((self.home.1, self.home.1), (0, 0));
        };
        let (s, e) = self.ranges[i];
        let free = e - s;
        let share = (free / 2).min((free / 16).max(64 << 20)).min(256 << 20) & !(PAGE - 1);
        let lo = e - share;
        self.ranges[i].1 = lo;
        if lo == s {
            self.remove_range(i);
        }
        self.free_bytes -= share;
        self.lent += share;
        ((lo, e), (s, lo))
    }

    /// In the child after a fork: a fresh allocator owning `region`. The
    /// parent's bookkeeping is left behind (its blocks are the parent's).
    pub fn enter_child(&mut self, region: (u64, u64)) {
        // What the parent handed out before the fork may reach into it.
        let fresh = self.fresh.clamp(region.0, region.1);
        self.reset(region.0, region.1);
        self.fresh = fresh;
    }

    /// After a child that was given `region` exited and its memory was
    /// merged: takes the whole region back. `child` is the child's final
    /// state. What it still holds becomes this process's; the blocks it
    /// freed that are not its own are freed here.
    ///
    /// # Safety
    /// The child's changes to the heap must have been merged into this
    /// process (its foreign list is read from the blocks).
    pub unsafe fn join(&mut self, region: (u64, u64), child: &Heap) {
        // SAFETY: forwarded to the caller.
        unsafe {
            self.join_parts(
                region,
                Counts {
                    peak_held: child.peak_held,
                    peak_live: child.peak_live,
                    lost: child.lost + child.lent,
                    in_use: child.in_use,
                    foreign: child.foreign,
                    fresh: child.fresh,
                },
                &child.ranges[..child.nranges.min(RANGES)],
                &child.chunks[..child.nchunks.min(CHUNKS)],
            )
        }
    }

    /// Does this heap hold nothing, as [`enter_child`](Heap::enter_child)
    /// made it (its peaks included)? Then its join is
    /// [`take_back`](Heap::take_back).
    pub fn untouched(&self) -> bool {
        let (lo, hi) = self.home;
        let whole = if lo < hi { 1 } else { 0 };
        self.nranges == whole
            && (whole == 0 || self.ranges[0] == (lo, hi))
            && self.nchunks == 0
            && self.foreign == 0
            && self.lent == 0
            && self.in_use == 0
            && self.peak_live == 0
            && self.peak_held == 0
            && self.lost == 0
    }

    /// After a child given `region` retired with its heap
    /// [`untouched`](Heap::untouched): its join, without its state.
    pub fn take_back(&mut self, region: (u64, u64)) {
        let fresh = [region];
        let ranges = if region.0 < region.1 { &fresh[..] } else { &[] };
        // SAFETY: no foreign block is freed (the list is empty).
        unsafe { self.join_parts(region, Counts::default(), ranges, &[]) }
    }

    /// [`join`](Heap::join) from the child's counts and lists.
    ///
    /// # Safety
    /// As `join`.
    unsafe fn join_parts(
        &mut self,
        region: (u64, u64),
        child: Counts,
        ranges: &[(u64, u64)],
        chunks: &[Chunk],
    ) {
        // Its peaks on top of what this process holds now (the region
        // still lent, so not counted twice).
        self.peak_held = self.peak_held.max(self.held() + child.peak_held);
        self.peak_live = self.peak_live.max(self.in_use + child.peak_live);
        self.lent -= region.1 - region.0;
        // (Counts clamped: the bytes came from another process.)
        for &(s, e) in ranges {
            self.put(s, e);
        }
        // Its chunks go first: this process keeps allocating from its own
        // (the last ones), so the child's go back whole once freed.
        for k in chunks {
            if self.nchunks < CHUNKS {
                self.chunks.copy_within(0..self.nchunks, 1);
                self.chunks[0] = *k;
                self.nchunks += 1;
            } else {
                self.lost += k.hi - k.lo;
            }
        }
        // Regions it lent and never took back, and what it lost.
        self.lost += child.lost;
        self.in_use += child.in_use;
        // The child may have written anywhere it handed out, if it
        // handed out anything (its mark moved past its region's start).
        if child.fresh > region.0 {
            self.fresh = self.fresh.max(child.fresh);
        }
        let mut p = child.foreign;
        while p != 0 {
            // SAFETY: the child linked these blocks through their first
            // word, and the merge brought the links here; each is a live
            // block this process may free (the child owned it).
            unsafe {
                let next = *(p as *const u64);
                self.free(p as *mut u8);
                p = next;
            }
        }
        self.note();
    }

    /// A child given `region` stopped before anything of it was merged:
    /// nothing here refers to its region, which is all free again.
    pub fn abandon(&mut self, region: (u64, u64)) {
        self.lent -= region.1 - region.0;
        self.put(region.0, region.1);
    }

    /// A child given `region` failed after part of it may have been merged:
    /// its region is never used again.
    pub fn forsake(&mut self, region: (u64, u64)) {
        self.lent -= region.1 - region.0;
        self.lost += region.1 - region.0;
        self.note();
    }

    /// This process's figures.
    pub fn stats(&self) -> HeapStats {
        let ranges = &self.ranges[..self.nranges];
        HeapStats {
            size: self.home.1 - self.home.0,
            held: self.held(),
            peak_held: self.peak_held.max(self.held()),
            live: self.in_use,
            peak_live: self.peak_live.max(self.in_use),
            lost: self.lost,
            free: self.free_bytes,
            largest_free: ranges.iter().map(|r| r.1 - r.0).max().unwrap_or(0),
            ranges: ranges.len() as u64,
        }
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
    use alloc::format;
    use alloc::vec;
    use alloc::vec::Vec;

    /// A page-aligned region of `len` bytes on the host heap.
    fn region(len: u64) -> (Vec<u8>, u64, u64) {
        let v = vec![0u8; (len + PAGE) as usize];
        let lo = (v.as_ptr() as u64 + PAGE - 1) & !(PAGE - 1);
        (v, lo, lo + len)
    }

    /// SplitMix64, for sizes.
    fn next(x: &mut u64) -> u64 {
        *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// 16 bytes to 1 MiB, about evenly over the powers of two.
    fn size(x: &mut u64) -> u64 {
        let hi = 16u64 << (next(x) % 17);
        (hi / 2).max(16) + next(x) % (hi / 2 + 1)
    }

    fn alloc(h: &mut Heap, size: u64) -> u64 {
        // SAFETY: the heaps of these tests own host memory (a Vec).
        let p = unsafe { h.alloc(size, 8) } as u64;
        assert_ne!(p, 0, "out of heap for {size} bytes: {:?}", h.stats());
        p
    }

    fn free(h: &mut Heap, p: u64) {
        // SAFETY: `p` came from `alloc` on this lineage, freed once.
        unsafe { h.free(p as *mut u8) }
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_reused() {
        let (_mem, lo, hi) = region(64 << 20);
        let mut h = Heap::new(lo, hi);
        let mut blocks = Vec::new();
        let mut x = 12345u64;
        for _ in 0..2000 {
            let size = next(&mut x) % 50_000 + 1;
            let align = 1u64 << (next(&mut x) % 13);
            // SAFETY: the region is ours and mapped (a Vec).
            let p = unsafe { h.alloc(size, align) } as u64;
            assert_ne!(p, 0);
            assert_eq!(p % align, 0, "size {size} align {align}");
            assert!(p >= lo && p + size <= hi);
            // SAFETY: just allocated.
            assert!(unsafe { Heap::size_of(p as *const u8) } >= size);
            // SAFETY: the block is ours to write.
            unsafe { core::ptr::write_bytes(p as *mut u8, 0xab, size as usize) };
            blocks.push((p, size, align));
        }
        let mut sorted = blocks.clone();
        sorted.sort();
        for w in sorted.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0 - HDR, "{w:?} overlap");
        }
        let held = h.stats().held;
        for &(p, _, _) in &blocks {
            free(&mut h, p);
        }
        // Everything freed: the free space is one range again, and the
        // same calls get the same blocks.
        let s = h.stats();
        assert_eq!((s.live, s.held, s.ranges, s.free), (0, 0, 1, hi - lo));
        for &(p, size, align) in &blocks {
            // SAFETY: the region is ours.
            assert_eq!(unsafe { h.alloc(size, align) } as u64, p);
        }
        assert_eq!(h.stats().held, held);
    }

    #[test]
    fn same_sequence_same_addresses() {
        let run = |lo, hi| {
            let mut h = Heap::new(lo, hi);
            (0..500u64)
                .map(|i| alloc(&mut h, i * 37 % 90_000 + 1) - lo)
                .collect::<Vec<_>>()
        };
        let (_a, lo1, hi1) = region(64 << 20);
        let (_b, lo2, hi2) = region(64 << 20);
        assert_eq!(run(lo1, hi1), run(lo2, hi2));
    }

    /// One simulated child: random blocks in its own heap, some kept for
    /// the parent, one block of the parent's freed; returns what it kept.
    fn child_life(h: &mut Heap, x: &mut u64, parent_block: Option<u64>) -> Vec<u64> {
        let mut live = Vec::new();
        for _ in 0..1 + next(x) % 8 {
            if live.len() < 4 && (live.is_empty() || next(x).is_multiple_of(2)) {
                live.push(alloc(h, size(x)));
            } else {
                let i = (next(x) % live.len() as u64) as usize;
                free(h, live.swap_remove(i));
            }
        }
        if let Some(p) = parent_block {
            free(h, p);
        }
        let keep = live.len().min((next(x) % 3) as usize);
        let kept = live.split_off(live.len() - keep);
        for p in live {
            free(h, p);
        }
        kept
    }

    /// Forks `fan` children of `parent`, each `depth` levels deep, joins
    /// them in fork order, frees what they kept.
    fn cycle(parent: &mut Heap, x: &mut u64, fan: usize, depth: u32) {
        let gifts: Vec<u64> = (0..fan).map(|_| alloc(parent, size(x))).collect();
        let mut kids = Vec::new();
        for &g in &gifts {
            let (r, gap) = parent.split();
            assert!(gap.1 == r.0 || gap == (0, 0));
            let mut c = *parent;
            c.enter_child(r);
            if depth > 1 {
                cycle(&mut c, x, 1, depth - 1);
            }
            let kept = child_life(&mut c, x, Some(g));
            kids.push((r, c, kept));
        }
        for (r, c, kept) in kids {
            // SAFETY: host memory is shared: "merged" already.
            unsafe { parent.join(r, &c) };
            for p in kept {
                free(parent, p);
            }
        }
    }

    #[test]
    fn fork_join_cycles_leave_the_heap_as_it_was() {
        let (_mem, lo, hi) = region(512 << 20);
        let mut h = Heap::new(lo, hi);
        let own = alloc(&mut h, 100);
        let mut x = 18u64;
        let mut base = None;
        for i in 0..3000 {
            cycle(&mut h, &mut x, 1 + i % 2, 1 + (i % 3) as u32);
            let s = h.stats();
            assert_eq!(s.lost, 0);
            let b = *base.get_or_insert((s.held, s.ranges, s.largest_free));
            assert_eq!((s.held, s.ranges, s.largest_free), b, "cycle {i}");
        }
        free(&mut h, own);
        let s = h.stats();
        assert_eq!((s.held, s.live, s.ranges, s.free), (0, 0, 1, hi - lo));
        assert!(s.peak_held < 32 << 20, "{s:?}");
        assert!(s.peak_live <= s.peak_held);
    }

    #[test]
    fn taking_back_an_untouched_child_is_its_join() {
        let (_mem, lo, hi) = region(256 << 20);
        let mut h = Heap::new(lo, hi);
        let kept = alloc(&mut h, 4096);
        let (r, _) = h.split();
        let mut c = h;
        c.enter_child(r);
        assert!(c.untouched());
        let mut joined = h;
        // SAFETY: host memory; the child changed nothing.
        unsafe { joined.join(r, &c) };
        h.take_back(r);
        assert_eq!(format!("{h:?}"), format!("{joined:?}"));
        // Anything it did shows: a block, even freed, or a foreign free.
        let p = alloc(&mut c, 64);
        assert!(!c.untouched());
        free(&mut c, p);
        assert!(!c.untouched(), "its peaks remember the block");
        let mut e = h;
        let (r2, _) = e.split();
        e.enter_child(r2);
        // Allocated before the fork: a foreign block for `e`.
        free(&mut e, kept);
        assert!(!e.untouched());
    }

    /// Sets `[a, a + n)` of the tests' host memory to `b`.
    fn fill(a: u64, n: u64, b: u8) {
        // SAFETY: inside a region of these tests (a Vec).
        unsafe { core::ptr::write_bytes(a as *mut u8, b, n as usize) }
    }

    /// Whether every byte of `[a, a + n)` is `b`.
    fn all(a: u64, n: u64, b: u8) -> bool {
        // SAFETY: inside a region of these tests (a Vec).
        (a..a + n).all(|x| unsafe { *(x as *const u8) } == b)
    }

    fn zeroed(h: &mut Heap, size: u64) -> u64 {
        // SAFETY: the heaps of these tests own host memory (a Vec).
        let p = unsafe { h.alloc_zeroed(size, 8) } as u64;
        assert_ne!(p, 0, "out of heap for {size} bytes");
        p
    }

    #[test]
    fn zeroed_blocks_are_cleared_unless_never_handed_out() {
        const M: u64 = 1 << 20;
        let (_mem, lo, hi) = region(64 << 20);
        let mut h = Heap::new(lo, hi);
        // A marker where nothing was handed out yet, which a process's
        // heap reads as zeros: the first block is not cleared.
        fill(lo, 4 * M, 0x5a);
        let p = zeroed(&mut h, M);
        assert!(all(p, M, 0x5a), "a fresh block is left as it is");
        fill(p, M, 0xab);
        free(&mut h, p);
        let q = zeroed(&mut h, M);
        assert_eq!(q, p);
        assert!(all(q, M, 0), "a reused large block is cleared");
        let s = alloc(&mut h, 100);
        fill(s, 100, 0xcd);
        free(&mut h, s);
        let t = zeroed(&mut h, 100);
        assert!(all(t, 100, 0), "a reused small block is cleared");
    }

    #[test]
    fn what_a_joined_child_handed_out_is_cleared_when_reused() {
        const M: u64 = 1 << 20;
        let (_mem, lo, hi) = region(256 << 20);
        let mut h = Heap::new(lo, hi);
        let (r, _) = h.split();
        let mut c = h;
        c.enter_child(r);
        let b = alloc(&mut c, M);
        fill(b, M, 0xab);
        free(&mut c, b);
        // SAFETY: host memory: the child's bytes are already here.
        unsafe { h.join(r, &c) };
        // The next child gets the same region: its blocks there are not
        // fresh any more.
        let (r2, _) = h.split();
        assert_eq!(r2, r);
        let mut c2 = h;
        c2.enter_child(r2);
        let b2 = zeroed(&mut c2, M);
        assert_eq!(b2, b);
        assert!(all(b2, M, 0), "the region's reused bytes are cleared");
        // The parent itself (the second child gone before any merge),
        // handing out everything up to the region.
        h.abandon(r2);
        fill(b, M, 0xab);
        let big = zeroed(&mut h, b + M - lo);
        assert!(big <= b);
        assert!(all(b, M, 0), "the parent clears the child's bytes");
    }

    #[test]
    fn a_failed_child_gives_its_region_back_or_loses_it() {
        let (_mem, lo, hi) = region(256 << 20);
        let mut h = Heap::new(lo, hi);
        let (r, _) = h.split();
        assert_eq!(h.stats().held, 0);
        h.abandon(r);
        assert_eq!(h.stats(), Heap::new(lo, hi).stats());
        let (r, _) = h.split();
        h.forsake(r);
        let s = h.stats();
        assert_eq!((s.held, s.lost), (r.1 - r.0, r.1 - r.0));
    }

    #[test]
    fn children_get_disjoint_regions_and_deep_nesting_works() {
        let base = 0x1000_0000_0000u64;
        let mut p = Heap::new(base, base + (16 << 30));
        let regions: Vec<_> = (0..40).map(|_| p.split().0).collect();
        for r in &regions {
            assert!(r.1 - r.0 >= 64 << 20, "{r:x?} too small");
        }
        for w in regions.windows(2) {
            assert!(w[1].1 <= w[0].0, "regions overlap");
        }
        for r in regions.iter().rev() {
            let mut c = p;
            c.enter_child(*r);
            // SAFETY: the child allocated nothing: nothing to read.
            unsafe { p.join(*r, &c) };
        }
        assert_eq!(p.stats().ranges, 1);
        let mut h = Heap::new(base, base + (16 << 30));
        for depth in 0..8 {
            let r = h.split().0;
            assert!(r.1 - r.0 >= 1 << 20, "depth {depth}: {:#x}", r.1 - r.0);
            h.enter_child(r);
        }
    }

    #[test]
    fn out_of_heap_at_the_same_call_for_the_same_size() {
        let first_failure = || {
            let (_mem, lo, hi) = region(16 << 20);
            let mut h = Heap::new(lo, hi);
            let mut x = 7u64;
            (0..).find(|_| {
                // SAFETY: the region is ours.
                unsafe { h.alloc(size(&mut x), 8) }.is_null()
            })
        };
        assert_eq!(first_failure(), first_failure());
    }
}
