//! Inodes and their block trees.
//!
//! A block pointer is 8 bytes: the block number (low 32 bits, 0 = hole) and
//! a *stamp* (high 32 bits), the fork epoch in which the entry last changed.
//! An indirect entry's stamp is raised whenever anything below it changes,
//! so "what changed since epoch E" is found by descending only into entries
//! stamped ≥ E: a walk costs what changed, not the file size.
//!
//! A new indirect block that replaces a hole inherits the hole's stamp in all
//! its entries: the range it covers was a hole since then, so relative to
//! an older reference nothing changed there, while a hole punched after the
//! reference (truncate, then rewrite) still shows as changed.

use super::{
    corrupt, rd16, rd32, rd64, wr16, wr32, wr64, Fs, FsError, Geometry, Ino, Kind, Result,
    BLOCK_SIZE, INODE_SIZE, MAX_FILE_BLOCKS, MAX_FILE_SIZE, NDIRECT, PTRS_PER_BLOCK,
};
use alloc::format;
use alloc::vec::Vec;

/// Slot of the single-indirect pointer in `Inode::ptrs`.
pub(crate) const SINGLE: usize = NDIRECT;
/// Slot of the double-indirect pointer.
pub(crate) const DOUBLE: usize = NDIRECT + 1;
const PPB: u64 = PTRS_PER_BLOCK as u64;

pub(crate) fn ptr_blk(p: u64) -> u32 {
    p as u32
}
pub(crate) fn ptr_stamp(p: u64) -> u32 {
    (p >> 32) as u32
}
pub(crate) fn mkptr(blk: u32, stamp: u32) -> u64 {
    blk as u64 | ((stamp as u64) << 32)
}

/// A decoded inode (256 bytes on disk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Inode {
    pub kind: Option<Kind>,
    pub nlink: u16,
    /// Incremented each time the slot is allocated: (ino, gen) names one
    /// object across parent, reference and child.
    pub gen: u32,
    pub size: u64,
    pub version: u64,
    /// Epoch of the last change of any kind.
    pub stamp: u32,
    /// Epoch of the last change of data or size.
    pub data_stamp: u32,
    /// Dirty-log generation in which the inode was last logged.
    pub log_gen: u32,
    /// Directory holding the (first) name of the inode; the root's is itself.
    pub parent: Ino,
    pub ptrs: [u64; NDIRECT + 2],
}

impl Inode {
    pub const EMPTY: Inode = Inode {
        kind: None,
        nlink: 0,
        gen: 0,
        size: 0,
        version: 0,
        stamp: 0,
        data_stamp: 0,
        log_gen: 0,
        parent: 0,
        ptrs: [0; NDIRECT + 2],
    };

    pub fn encode(&self, b: &mut [u8]) {
        b[..INODE_SIZE].fill(0);
        wr16(b, 0, self.kind.map_or(0, Kind::code));
        wr16(b, 2, self.nlink);
        wr32(b, 4, self.gen);
        wr64(b, 8, self.size);
        wr64(b, 16, self.version);
        wr32(b, 24, self.stamp);
        wr32(b, 28, self.data_stamp);
        wr32(b, 32, self.log_gen);
        wr32(b, 36, self.parent);
        for (i, p) in self.ptrs.iter().enumerate() {
            wr64(b, 40 + 8 * i, *p);
        }
    }

    /// Decodes and validates the fields whose bad values could send a walk
    /// out of bounds.
    pub fn decode(b: &[u8], ino: Ino, g: Geometry) -> Result<Inode> {
        let kind = Kind::from_code(rd16(b, 0))
            .ok_or_else(|| corrupt(format!("inode {ino} has an unknown kind")))?;
        let mut n = Inode {
            kind,
            nlink: rd16(b, 2),
            gen: rd32(b, 4),
            size: rd64(b, 8),
            version: rd64(b, 16),
            stamp: rd32(b, 24),
            data_stamp: rd32(b, 28),
            log_gen: rd32(b, 32),
            parent: rd32(b, 36),
            ptrs: [0; NDIRECT + 2],
        };
        for i in 0..NDIRECT + 2 {
            n.ptrs[i] = rd64(b, 40 + 8 * i);
        }
        if n.kind.is_some() {
            if n.size > MAX_FILE_SIZE {
                return Err(corrupt(format!("inode {ino} size {} too large", n.size)));
            }
            if n.parent == 0 || n.parent >= g.inode_count {
                return Err(corrupt(format!("inode {ino} has a bad parent")));
            }
        }
        Ok(n)
    }
}

/// Where logical block `l` lives: its root slot and indices below it.
fn path(l: u64) -> Result<(usize, [usize; 2], usize)> {
    if l < NDIRECT as u64 {
        Ok((l as usize, [0, 0], 0))
    } else if l < NDIRECT as u64 + PPB {
        Ok((SINGLE, [(l - NDIRECT as u64) as usize, 0], 1))
    } else if l < MAX_FILE_BLOCKS {
        let i = l - NDIRECT as u64 - PPB;
        Ok((DOUBLE, [(i / PPB) as usize, (i % PPB) as usize], 2))
    } else {
        Err(FsError::FileTooLarge)
    }
}

/// First logical block covered by root slot `slot`, and its depth.
fn slot_base(slot: usize) -> (u64, u32) {
    match slot {
        SINGLE => (NDIRECT as u64, 1),
        DOUBLE => (NDIRECT as u64 + PPB, 2),
        s => (s as u64, 0),
    }
}

fn span(depth: u32) -> u64 {
    PPB.pow(depth)
}

/// One changed range found by [`Fs::changed`]: `count` logical blocks from
/// `start`, either one data block `blk` (count 1) or a hole (`blk` 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    pub start: u64,
    pub count: u64,
    pub blk: u32,
}

impl<S: AsRef<[u8]>> Fs<S> {
    /// Validates a pointer's block number: 0 or a data block.
    pub(crate) fn check_ptr(&self, p: u64) -> Result<u32> {
        let b = ptr_blk(p);
        if b != 0 && (b < self.geo.data_start || b >= self.geo.total_blocks) {
            return Err(corrupt(format!("block pointer {b} outside the data area")));
        }
        Ok(b)
    }

    /// The data block holding logical block `l` of `n`, 0 for a hole.
    pub(crate) fn bmap(&self, n: &Inode, l: u64) -> Result<u32> {
        let (slot, idx, depth) = path(l)?;
        let mut b = self.check_ptr(n.ptrs[slot])?;
        for &i in idx.iter().take(depth) {
            if b == 0 {
                return Ok(0);
            }
            b = self.check_ptr(rd64(self.blk(b)?, i * 8))?;
        }
        Ok(b)
    }

    /// Reads up to `buf.len()` bytes at `off`; returns the count (0 at EOF).
    pub(crate) fn read_node(&self, n: &Inode, off: u64, buf: &mut [u8]) -> Result<usize> {
        if off >= n.size {
            return Ok(0);
        }
        let len = (buf.len() as u64).min(n.size - off) as usize;
        let mut done = 0;
        while done < len {
            let pos = off + done as u64;
            let within = (pos % BLOCK_SIZE as u64) as usize;
            let chunk = (BLOCK_SIZE - within).min(len - done);
            let b = self.bmap(n, pos / BLOCK_SIZE as u64)?;
            let dst = &mut buf[done..done + chunk];
            if b == 0 {
                dst.fill(0);
            } else {
                dst.copy_from_slice(&self.blk(b)?[within..within + chunk]);
            }
            done += chunk;
        }
        Ok(len)
    }

    /// Appends to `out` the ranges of logical blocks below `limit` whose
    /// pointers are stamped ≥ `since`, descending only into such entries.
    pub(crate) fn changed(
        &self,
        n: &Inode,
        since: u32,
        limit: u64,
        out: &mut Vec<Change>,
    ) -> Result<()> {
        for slot in 0..NDIRECT + 2 {
            let p = n.ptrs[slot];
            let (base, depth) = slot_base(slot);
            if base >= limit {
                break;
            }
            if ptr_stamp(p) >= since {
                self.changed_below(p, depth, base, since, limit, out)?;
            }
        }
        Ok(())
    }

    fn changed_below(
        &self,
        p: u64,
        depth: u32,
        base: u64,
        since: u32,
        limit: u64,
        out: &mut Vec<Change>,
    ) -> Result<()> {
        let b = self.check_ptr(p)?;
        let count = span(depth).min(limit - base);
        if b == 0 || depth == 0 {
            out.push(Change {
                start: base,
                count,
                blk: b,
            });
            return Ok(());
        }
        let child_span = span(depth - 1);
        // Copy the entries first: the walk must not hold the borrow.
        let mut ents = [0u64; PTRS_PER_BLOCK];
        let blk = self.blk(b)?;
        for (i, e) in ents.iter_mut().enumerate() {
            *e = rd64(blk, i * 8);
        }
        for (i, &e) in ents.iter().enumerate() {
            let cb = base + i as u64 * child_span;
            if cb >= limit {
                break;
            }
            if ptr_stamp(e) >= since {
                self.changed_below(e, depth - 1, cb, since, limit, out)?;
            }
        }
        Ok(())
    }

    /// Walks every block of the tree (data and indirect), for the checker.
    pub(crate) fn all_blocks(&self, n: &Inode, f: &mut dyn FnMut(u32) -> Result<()>) -> Result<()> {
        for slot in 0..NDIRECT + 2 {
            let (_, depth) = slot_base(slot);
            self.all_below(n.ptrs[slot], depth, f)?;
        }
        Ok(())
    }

    fn all_below(&self, p: u64, depth: u32, f: &mut dyn FnMut(u32) -> Result<()>) -> Result<()> {
        let b = self.check_ptr(p)?;
        if b == 0 {
            return Ok(());
        }
        f(b)?;
        if depth > 0 {
            let mut ents = [0u64; PTRS_PER_BLOCK];
            let blk = self.blk(b)?;
            for (i, e) in ents.iter_mut().enumerate() {
                *e = rd64(blk, i * 8);
            }
            for e in ents {
                self.all_below(e, depth - 1, f)?;
            }
        }
        Ok(())
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> Fs<S> {
    /// Returns the block behind `p`, allocating one if it is a hole. A fresh
    /// indirect block's entries are holes carrying `p`'s stamp.
    fn ensure(&mut self, p: u64, indirect: bool) -> Result<(u32, bool)> {
        let b = self.check_ptr(p)?;
        if b != 0 {
            return Ok((b, false));
        }
        let nb = self.alloc_block()?;
        let s = ptr_stamp(p);
        if indirect && s != 0 {
            let blk = self.blk_mut(nb)?;
            for i in 0..PTRS_PER_BLOCK {
                wr64(blk, i * 8, mkptr(0, s));
            }
        }
        Ok((nb, true))
    }

    /// Writes `data` at `off` into the blocks of `n` (size and stamps of the
    /// inode itself are the caller's business).
    pub(crate) fn write_node(&mut self, n: &mut Inode, off: u64, data: &[u8]) -> Result<()> {
        let end = off
            .checked_add(data.len() as u64)
            .ok_or(FsError::FileTooLarge)?;
        if end > MAX_FILE_SIZE {
            return Err(FsError::FileTooLarge);
        }
        let mut done = 0;
        while done < data.len() {
            let pos = off + done as u64;
            let within = (pos % BLOCK_SIZE as u64) as usize;
            let chunk = (BLOCK_SIZE - within).min(data.len() - done);
            let b = self.map_for_write(n, pos / BLOCK_SIZE as u64)?;
            self.blk_mut(b)?[within..within + chunk].copy_from_slice(&data[done..done + chunk]);
            done += chunk;
            // Grow as we go, so a write cut short by `NoSpace` leaves no
            // bytes past the end of the file.
            n.size = n.size.max(pos + chunk as u64);
        }
        Ok(())
    }

    /// The data block for logical block `l`, allocating it and any indirect
    /// blocks on the way, and stamping the whole path with the epoch.
    pub(crate) fn map_for_write(&mut self, n: &mut Inode, l: u64) -> Result<u32> {
        let (slot, idx, depth) = path(l)?;
        let e = self.sb.epoch;
        let (mut b, _) = self.ensure(n.ptrs[slot], depth > 0)?;
        n.ptrs[slot] = mkptr(b, e);
        for (level, &i) in idx.iter().take(depth).enumerate() {
            let p = rd64(self.blk(b)?, i * 8);
            let below_is_indirect = level + 1 < depth;
            let (nb, _) = self.ensure(p, below_is_indirect)?;
            wr64(self.blk_mut(b)?, i * 8, mkptr(nb, e));
            b = nb;
        }
        Ok(b)
    }

    /// Frees every block of `n` at or beyond byte `size`, zeroes the tail of
    /// the last partial block, and sets the size. Freed entries become holes
    /// stamped with the epoch.
    pub(crate) fn truncate_blocks(&mut self, n: &mut Inode, size: u64) -> Result<()> {
        if size > MAX_FILE_SIZE {
            return Err(FsError::FileTooLarge);
        }
        if size < n.size {
            let first = size.div_ceil(BLOCK_SIZE as u64);
            self.free_from(n, first)?;
            let within = (size % BLOCK_SIZE as u64) as usize;
            if within != 0 {
                let l = size / BLOCK_SIZE as u64;
                if self.bmap(n, l)? != 0 {
                    let b = self.map_for_write(n, l)?;
                    self.blk_mut(b)?[within..].fill(0);
                }
            }
        }
        n.size = size;
        Ok(())
    }

    /// Frees logical blocks `first..` of `n`.
    fn free_from(&mut self, n: &mut Inode, first: u64) -> Result<()> {
        let e = self.sb.epoch;
        for slot in 0..NDIRECT + 2 {
            let (base, depth) = slot_base(slot);
            let p = n.ptrs[slot];
            let b = self.check_ptr(p)?;
            if b == 0 || base + span(depth) <= first {
                continue;
            }
            if base >= first {
                self.free_tree(b, depth)?;
                n.ptrs[slot] = mkptr(0, e);
            } else {
                self.trim(b, depth, first - base)?;
                n.ptrs[slot] = mkptr(b, e);
            }
        }
        Ok(())
    }

    /// Frees the entries of indirect block `b` (depth ≥ 1) covering relative
    /// logical blocks `first..`.
    fn trim(&mut self, b: u32, depth: u32, first: u64) -> Result<()> {
        let e = self.sb.epoch;
        let cs = span(depth - 1);
        for i in 0..PTRS_PER_BLOCK {
            let start = i as u64 * cs;
            if start + cs <= first {
                continue;
            }
            let p = rd64(self.blk(b)?, i * 8);
            let cb = self.check_ptr(p)?;
            if cb == 0 {
                continue;
            }
            if start >= first {
                self.free_tree(cb, depth - 1)?;
                wr64(self.blk_mut(b)?, i * 8, mkptr(0, e));
            } else {
                self.trim(cb, depth - 1, first - start)?;
                wr64(self.blk_mut(b)?, i * 8, mkptr(cb, e));
            }
        }
        Ok(())
    }

    fn free_tree(&mut self, b: u32, depth: u32) -> Result<()> {
        if depth > 0 {
            for i in 0..PTRS_PER_BLOCK {
                let p = rd64(self.blk(b)?, i * 8);
                let cb = self.check_ptr(p)?;
                if cb != 0 {
                    self.free_tree(cb, depth - 1)?;
                }
            }
        }
        self.free_block(b)
    }

    /// Makes logical blocks `start..start+count` of `n` holes, freeing their
    /// data blocks (indirect blocks stay). Skips absent subtrees quickly.
    pub(crate) fn punch(&mut self, n: &mut Inode, start: u64, count: u64) -> Result<()> {
        let e = self.sb.epoch;
        let end = start.saturating_add(count).min(MAX_FILE_BLOCKS);
        let mut l = start;
        while l < end {
            let (slot, idx, depth) = path(l)?;
            // Find the deepest existing level; a hole there covers a span.
            let mut b = self.check_ptr(n.ptrs[slot])?;
            let mut parents: [(u32, usize); 2] = [(0, 0); 2];
            let mut level = 0;
            let mut hole_span = span(depth as u32);
            let mut hole_base = if depth == 0 { l } else { slot_base(slot).0 };
            while b != 0 && level < depth {
                parents[level] = (b, idx[level]);
                let cs = span((depth - level - 1) as u32);
                hole_base += idx[level] as u64 * cs;
                hole_span = cs;
                b = self.check_ptr(rd64(self.blk(b)?, idx[level] * 8))?;
                level += 1;
            }
            if b == 0 {
                l = hole_base + hole_span;
                continue;
            }
            // `b` is the data block of `l`.
            self.free_block(b)?;
            if depth == 0 {
                n.ptrs[slot] = mkptr(0, e);
            } else {
                let (pb, pi) = parents[depth - 1];
                wr64(self.blk_mut(pb)?, pi * 8, mkptr(0, e));
                for &(ab, ai) in parents.iter().take(depth - 1) {
                    let cur = rd64(self.blk(ab)?, ai * 8);
                    wr64(self.blk_mut(ab)?, ai * 8, mkptr(ptr_blk(cur), e));
                }
                n.ptrs[slot] = mkptr(ptr_blk(n.ptrs[slot]), e);
            }
            l += 1;
        }
        Ok(())
    }
}
