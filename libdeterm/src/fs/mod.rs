//! The in-memory file system of a deterministic process.
//!
//! An FFS-like layout in one flat arena of 4 KiB blocks: a superblock, a
//! block bitmap, an inode bitmap, a dirty-inode log, an inode table and data
//! blocks. Inodes have 10 direct, one single-indirect and one double-indirect
//! block pointer, so a file holds up to (10 + 512 + 512²) blocks, ≈ 1 GiB.
//!
//! Everything — including the fork epoch and the dirty log that make
//! reconciliation cheap — lives inside the arena; pointers are block and
//! inode numbers, never addresses. The arena can therefore sit in a fixed
//! memory region that the kernel snapshots copy-on-write at fork, and a
//! parent can read a child's copy as plain bytes ([`Fs::open`] over any
//! `AsRef<[u8]>`). On the host the arena is a `Vec<u8>`.
//!
//! - [`Fs`]: path-level and inode-level operations (`ops.rs`), block mapping
//!   (`inode.rs`);
//! - [`reconcile`]: the three-way join of a child's changes (`reconcile.rs`);
//! - [`save`](Fs::save) / [`load`]: the persistent image (`image.rs`).
//!
//! See `docs/libdeterm-fs.md` for the rules.

mod image;
mod inode;
mod ops;
mod reconcile;
#[cfg(test)]
mod tests;

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;

pub use image::{crc32c, fuzz_load, load, IMAGE_MAGIC, IMAGE_VERSION};
pub use reconcile::{fuzz_reconcile, reconcile, JoinReport};

/// Bytes per block.
pub const BLOCK_SIZE: usize = 4096;
/// Direct block pointers per inode.
pub const NDIRECT: usize = 10;
/// Block pointers per indirect block (8 bytes each: block number + stamp).
pub const PTRS_PER_BLOCK: usize = BLOCK_SIZE / 8;
/// Largest number of blocks one file can address.
pub const MAX_FILE_BLOCKS: u64 =
    NDIRECT as u64 + PTRS_PER_BLOCK as u64 + (PTRS_PER_BLOCK * PTRS_PER_BLOCK) as u64;
/// Largest file size in bytes (≈ 1 GiB).
pub const MAX_FILE_SIZE: u64 = MAX_FILE_BLOCKS * BLOCK_SIZE as u64;
/// Longest name of a directory entry, in bytes.
pub const NAME_MAX: usize = 120;
/// Smallest and largest block counts [`Fs::new`] accepts.
pub const MIN_BLOCKS: u32 = 16;
/// See [`MIN_BLOCKS`]; block numbers are 32-bit, the arena at most 64 GiB.
pub const MAX_BLOCKS: u32 = 1 << 24;

/// An inode number. 0 is never a valid inode.
pub type Ino = u32;
/// The root directory.
pub const ROOT_INO: Ino = 1;
/// `/dev`, holding the three console streams.
pub const DEV_INO: Ino = 2;
/// `/dev/stdin`, a console stream the parent appends input to.
pub const STDIN_INO: Ino = 3;
/// `/dev/stdout`, a console stream the process appends output to.
pub const STDOUT_INO: Ino = 4;
/// `/dev/stderr`, like stdout.
pub const STDERR_INO: Ino = 5;

pub(crate) const INODE_SIZE: usize = 256;
pub(crate) const INODES_PER_BLOCK: usize = BLOCK_SIZE / INODE_SIZE;
pub(crate) const DIRENT_SIZE: usize = 128;
pub(crate) const SB_MAGIC: &[u8; 8] = b"DETFSSB1";
pub(crate) const LAYOUT_VERSION: u32 = 1;

/// What an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A console stream (stdin, stdout, stderr): a file that only grows by
    /// appends, merged by concatenation.
    Console,
}

impl Kind {
    pub(crate) fn code(self) -> u16 {
        match self {
            Kind::File => 1,
            Kind::Dir => 2,
            Kind::Console => 3,
        }
    }
    pub(crate) fn from_code(c: u16) -> Option<Option<Kind>> {
        match c {
            0 => Some(None),
            1 => Some(Some(Kind::File)),
            2 => Some(Some(Kind::Dir)),
            3 => Some(Some(Kind::Console)),
            _ => None,
        }
    }
}

/// What `stat` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Inode number (private to this copy of the FS: the same file may have
    /// another number in the parent after a join).
    pub ino: Ino,
    /// File, directory or console stream.
    pub kind: Kind,
    /// Size in bytes (a directory: 128 bytes per entry slot).
    pub size: u64,
    /// Number of directory entries naming the inode.
    pub nlink: u32,
    /// Modification counter: +1 on every change to data, size or links.
    pub version: u64,
}

/// Every way a file-system operation can fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsError {
    /// A path component or inode does not exist.
    NotFound,
    /// The name already exists.
    Exists,
    /// A path component that must be a directory is not.
    NotDir,
    /// The operation needs a non-directory.
    IsDir,
    /// `rmdir` of a directory that still has entries.
    NotEmpty,
    /// No free block or inode (or the fork epoch is exhausted).
    NoSpace,
    /// A name longer than [`NAME_MAX`] bytes.
    NameTooLong,
    /// A path that is not absolute, has an empty name, or names `.`/`..`
    /// where a new name is needed.
    InvalidPath,
    /// An offset or size beyond [`MAX_FILE_SIZE`].
    FileTooLarge,
    /// An argument the operation does not allow (a non-append write to a
    /// console stream, a directory moved into itself, removing the root).
    InvalidArgument,
    /// A join found changes on both sides that the rules do not merge.
    Conflict {
        /// Path of the file or directory entry, as the child saw it.
        path: String,
        /// The child being joined.
        child: u32,
        /// Which rule was broken.
        reason: &'static str,
    },
    /// The arena or image is inconsistent.
    Corrupt {
        /// What is wrong, and where.
        what: String,
    },
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::NotFound => f.write_str("no such file or directory"),
            FsError::Exists => f.write_str("file exists"),
            FsError::NotDir => f.write_str("not a directory"),
            FsError::IsDir => f.write_str("is a directory"),
            FsError::NotEmpty => f.write_str("directory not empty"),
            FsError::NoSpace => f.write_str("no space left in the file system"),
            FsError::NameTooLong => f.write_str("file name too long"),
            FsError::InvalidPath => f.write_str("invalid path"),
            FsError::FileTooLarge => f.write_str("file too large"),
            FsError::InvalidArgument => f.write_str("invalid argument"),
            FsError::Conflict {
                path,
                child,
                reason,
            } => write!(f, "conflict joining child {child} at {path}: {reason}"),
            FsError::Corrupt { what } => write!(f, "corrupt file system: {what}"),
        }
    }
}

/// Shorthand for results of this module.
pub type Result<T> = core::result::Result<T, FsError>;

pub(crate) fn corrupt(what: impl Into<String>) -> FsError {
    FsError::Corrupt { what: what.into() }
}

// Little-endian field access on slices whose length the caller guarantees
// (block offsets are computed from validated indices). Out-of-range offsets
// read as zero / are ignored instead of panicking, as a last line of defence.
pub(crate) fn rd16(b: &[u8], off: usize) -> u16 {
    match b.get(off..off + 2) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}
pub(crate) fn rd32(b: &[u8], off: usize) -> u32 {
    match b.get(off..off + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}
pub(crate) fn rd64(b: &[u8], off: usize) -> u64 {
    (rd32(b, off) as u64) | ((rd32(b, off + 4) as u64) << 32)
}
pub(crate) fn wr16(b: &mut [u8], off: usize, v: u16) {
    if let Some(s) = b.get_mut(off..off + 2) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}
pub(crate) fn wr32(b: &mut [u8], off: usize, v: u32) {
    if let Some(s) = b.get_mut(off..off + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}
pub(crate) fn wr64(b: &mut [u8], off: usize, v: u64) {
    if let Some(s) = b.get_mut(off..off + 8) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// Where each region starts, derived from the block and inode counts alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub total_blocks: u32,
    pub inode_count: u32,
    pub bitmap_start: u32,
    pub bitmap_blocks: u32,
    pub ibitmap_start: u32,
    pub ibitmap_blocks: u32,
    pub log_start: u32,
    pub log_blocks: u32,
    pub itable_start: u32,
    pub itable_blocks: u32,
    pub data_start: u32,
}

impl Geometry {
    pub fn compute(total_blocks: u32, inode_count: u32) -> Option<Geometry> {
        if !(MIN_BLOCKS..=MAX_BLOCKS).contains(&total_blocks) || inode_count < 8 {
            return None;
        }
        let bits = (BLOCK_SIZE * 8) as u32;
        let bitmap_blocks = total_blocks.div_ceil(bits);
        let ibitmap_blocks = inode_count.div_ceil(bits);
        let log_blocks = inode_count.div_ceil((BLOCK_SIZE / 4) as u32);
        let itable_blocks = inode_count.div_ceil(INODES_PER_BLOCK as u32);
        let bitmap_start = 1;
        let ibitmap_start = bitmap_start + bitmap_blocks;
        let log_start = ibitmap_start + ibitmap_blocks;
        let itable_start = log_start.checked_add(log_blocks)?;
        let data_start = itable_start.checked_add(itable_blocks)?;
        if data_start.checked_add(4)? > total_blocks {
            return None;
        }
        Some(Geometry {
            total_blocks,
            inode_count,
            bitmap_start,
            bitmap_blocks,
            ibitmap_start,
            ibitmap_blocks,
            log_start,
            log_blocks,
            itable_start,
            itable_blocks,
            data_start,
        })
    }
}

/// The mutable superblock fields, cached and written through to block 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Super {
    pub free_blocks: u32,
    pub free_inodes: u32,
    /// Fork epoch: every change is stamped with it; it grows at each fork.
    pub epoch: u32,
    /// Dirty-log generation: an inode is in the log iff its `log_gen` equals.
    pub log_gen: u32,
    /// Entries in the dirty log.
    pub log_len: u32,
    pub alloc_hint: u32,
    pub ialloc_hint: u32,
}

// Superblock offsets.
const SB_VERSION: usize = 8;
const SB_BSIZE: usize = 12;
const SB_TOTAL: usize = 16;
const SB_INODES: usize = 20;
const SB_FREE_BLOCKS: usize = 24;
const SB_FREE_INODES: usize = 28;
const SB_EPOCH: usize = 32;
const SB_LOG_GEN: usize = 36;
const SB_LOG_LEN: usize = 40;
const SB_HINT: usize = 44;
const SB_IHINT: usize = 48;

/// An in-memory file system over an arena `S` of `total_blocks × 4096`
/// bytes. `S = Vec<u8>` owns it; `S = &[u8]` views a copy read-only (e.g. a
/// child's arena during a join); `S = &mut [u8]` works in a fixed region.
pub struct Fs<S = Vec<u8>> {
    mem: S,
    geo: Geometry,
    sb: Super,
    visits: Cell<u64>,
    /// Blocks handed out for writing since this value was made: equal
    /// counts mean equal bytes (see [`writes`](Fs::writes)).
    writes: u64,
}

impl Clone for Fs<Vec<u8>> {
    fn clone(&self) -> Self {
        Fs {
            mem: self.mem.clone(),
            geo: self.geo,
            sb: self.sb,
            visits: Cell::new(0),
            writes: 0,
        }
    }
}

impl fmt::Debug for Fs<Vec<u8>> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fs")
            .field("blocks", &self.geo.total_blocks)
            .field("inodes", &self.geo.inode_count)
            .field("epoch", &self.sb.epoch)
            .finish()
    }
}

impl Fs<Vec<u8>> {
    /// A fresh file system of `blocks` blocks and `inodes` inodes holding
    /// `/`, `/dev` and the console streams `/dev/stdin`, `/dev/stdout`,
    /// `/dev/stderr`.
    pub fn new(blocks: u32, inodes: u32) -> Result<Self> {
        let geo = Geometry::compute(blocks, inodes).ok_or(FsError::InvalidArgument)?;
        let mem = alloc::vec![0u8; blocks as usize * BLOCK_SIZE];
        Fs::format(mem, geo)
    }

    /// The arena, e.g. to hand to [`Fs::open`] again.
    pub fn into_inner(self) -> Vec<u8> {
        self.mem
    }

    /// Host convenience for a fork: [`prepare_fork`](Fs::prepare_fork), then
    /// copy the arena twice. Returns `(child, reference)`; the child's dirty
    /// log starts empty ([`enter_child`](Fs::enter_child)).
    pub fn fork(&mut self) -> Result<(Fs, Fs)> {
        self.prepare_fork()?;
        let reference = self.clone();
        let mut child = self.clone();
        child.enter_child();
        Ok((child, reference))
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> Fs<S> {
    /// Formats `mem` (at least `blocks × 4096` bytes) as a fresh file system.
    pub fn format_in(mut mem: S, blocks: u32, inodes: u32) -> Result<Self> {
        let geo = Geometry::compute(blocks, inodes).ok_or(FsError::InvalidArgument)?;
        if mem.as_ref().len() < blocks as usize * BLOCK_SIZE {
            return Err(FsError::InvalidArgument);
        }
        mem.as_mut()[..blocks as usize * BLOCK_SIZE].fill(0);
        Fs::format(mem, geo)
    }

    fn format(mem: S, geo: Geometry) -> Result<Self> {
        let mut fs = Fs {
            mem,
            geo,
            sb: Super {
                free_blocks: geo.total_blocks - geo.data_start,
                free_inodes: geo.inode_count - 1,
                epoch: 1,
                log_gen: 1,
                log_len: 0,
                alloc_hint: geo.data_start,
                ialloc_hint: 1,
            },
            visits: Cell::new(0),
            writes: 0,
        };
        {
            let b0 = fs.raw_mut(0)?;
            b0[..8].copy_from_slice(SB_MAGIC);
            wr32(b0, SB_VERSION, LAYOUT_VERSION);
            wr32(b0, SB_BSIZE, BLOCK_SIZE as u32);
            wr32(b0, SB_TOTAL, geo.total_blocks);
            wr32(b0, SB_INODES, geo.inode_count);
        }
        for b in 0..geo.data_start {
            fs.set_bit(geo.bitmap_start, b, true)?;
        }
        // Inode 0 is reserved: mark it used so the allocator never hands it out.
        fs.set_bit(geo.ibitmap_start, 0, true)?;
        fs.flush_sb();
        let root = fs.alloc_inode(Kind::Dir, ROOT_INO)?;
        debug_assert_eq!(root, ROOT_INO);
        let mut ri = fs.inode(ROOT_INO)?;
        ri.nlink = 1;
        ri.parent = ROOT_INO;
        fs.put_inode(ROOT_INO, &ri)?;
        fs.mkdir("/dev")?;
        fs.create_console("/dev/stdin")?;
        fs.create_console("/dev/stdout")?;
        fs.create_console("/dev/stderr")?;
        Ok(fs)
    }

    /// Before snapshotting a child: advance the fork epoch so that changes
    /// made from now on (by parent or child) are told apart from the state
    /// the child starts from. The snapshot taken right after is the
    /// reference for the child's join.
    pub fn prepare_fork(&mut self) -> Result<()> {
        self.sb.epoch = self.sb.epoch.checked_add(1).ok_or(FsError::NoSpace)?;
        self.flush_sb();
        Ok(())
    }

    /// In a new child, right after the snapshot: start an empty dirty log,
    /// so the parent's join visits only what this child touches.
    pub fn enter_child(&mut self) {
        // The epoch was just raised by `prepare_fork`, so no inode in this
        // lineage carries it as its log generation yet.
        self.sb.log_gen = self.sb.epoch.max(self.sb.log_gen.wrapping_add(1));
        self.sb.log_len = 0;
        self.flush_sb();
    }

    pub(crate) fn flush_sb(&mut self) {
        let sb = self.sb;
        if let Ok(b0) = self.raw_mut(0) {
            wr32(b0, SB_FREE_BLOCKS, sb.free_blocks);
            wr32(b0, SB_FREE_INODES, sb.free_inodes);
            wr32(b0, SB_EPOCH, sb.epoch);
            wr32(b0, SB_LOG_GEN, sb.log_gen);
            wr32(b0, SB_LOG_LEN, sb.log_len);
            wr32(b0, SB_HINT, sb.alloc_hint);
            wr32(b0, SB_IHINT, sb.ialloc_hint);
        }
    }

    fn raw_mut(&mut self, b: u32) -> Result<&mut [u8]> {
        self.writes += 1;
        let start = b as usize * BLOCK_SIZE;
        self.mem
            .as_mut()
            .get_mut(start..start + BLOCK_SIZE)
            .ok_or_else(|| corrupt(alloc::format!("block {b} outside the arena")))
    }

    /// A block for writing; counts as a visit.
    pub(crate) fn blk_mut(&mut self, b: u32) -> Result<&mut [u8]> {
        if b >= self.geo.total_blocks {
            return Err(corrupt(alloc::format!("block {b} outside the file system")));
        }
        self.visits.set(self.visits.get() + 1);
        self.raw_mut(b)
    }

    pub(crate) fn set_bit(&mut self, region: u32, n: u32, v: bool) -> Result<()> {
        let bits = (BLOCK_SIZE * 8) as u32;
        let blk = self.blk_mut(region + n / bits)?;
        let byte = ((n % bits) / 8) as usize;
        let mask = 1u8 << (n % 8);
        if v {
            blk[byte] |= mask;
        } else {
            blk[byte] &= !mask;
        }
        Ok(())
    }

    /// Allocates a zeroed data block.
    pub(crate) fn alloc_block(&mut self) -> Result<u32> {
        if self.sb.free_blocks == 0 {
            return Err(FsError::NoSpace);
        }
        let g = self.geo;
        let span = g.total_blocks - g.data_start;
        let mut cand = self.sb.alloc_hint.clamp(g.data_start, g.total_blocks - 1);
        let bits = (BLOCK_SIZE * 8) as u32;
        let mut scanned = 0u32;
        while scanned < span {
            let bm = self.blk(g.bitmap_start + cand / bits)?;
            // Skip whole full bytes quickly.
            let byte = bm[((cand % bits) / 8) as usize];
            if byte == 0xff && cand.is_multiple_of(8) && cand + 8 <= g.total_blocks {
                cand += 8;
                scanned += 8;
            } else if byte & (1 << (cand % 8)) == 0 {
                self.set_bit(g.bitmap_start, cand, true)?;
                self.blk_mut(cand)?.fill(0);
                self.sb.free_blocks -= 1;
                self.sb.alloc_hint = cand + 1;
                self.flush_sb();
                return Ok(cand);
            } else {
                cand += 1;
                scanned += 1;
            }
            if cand >= g.total_blocks {
                cand = g.data_start;
            }
        }
        Err(corrupt("free block count says free, bitmap says full"))
    }

    pub(crate) fn free_block(&mut self, b: u32) -> Result<()> {
        let g = self.geo;
        if b < g.data_start || b >= g.total_blocks {
            return Err(corrupt(alloc::format!("freeing non-data block {b}")));
        }
        if !self.bit(g.bitmap_start, b)? {
            return Err(corrupt(alloc::format!("block {b} freed twice")));
        }
        self.set_bit(g.bitmap_start, b, false)?;
        self.sb.free_blocks += 1;
        if b < self.sb.alloc_hint {
            self.sb.alloc_hint = b;
        }
        self.flush_sb();
        Ok(())
    }

    /// Allocates an inode of `kind` with no links, its pointers all holes.
    pub(crate) fn alloc_inode(&mut self, kind: Kind, parent: Ino) -> Result<Ino> {
        if self.sb.free_inodes == 0 {
            return Err(FsError::NoSpace);
        }
        let g = self.geo;
        let mut cand = self.sb.ialloc_hint.clamp(1, g.inode_count - 1);
        for _ in 0..g.inode_count {
            if !self.bit(g.ibitmap_start, cand)? {
                self.set_bit(g.ibitmap_start, cand, true)?;
                let old = self.inode(cand)?;
                let mut ino = inode::Inode::EMPTY;
                ino.kind = Some(kind);
                ino.gen = old.gen.wrapping_add(1);
                ino.parent = parent;
                self.sb.free_inodes -= 1;
                self.sb.ialloc_hint = cand + 1;
                self.flush_sb();
                self.touch(cand, &mut ino, true)?;
                return Ok(cand);
            }
            cand += 1;
            if cand >= g.inode_count {
                cand = 1;
            }
        }
        Err(corrupt(
            "free inode count says free, inode bitmap says full",
        ))
    }

    /// Releases an inode whose last link is gone, with all its blocks.
    pub(crate) fn free_inode(&mut self, ino: Ino) -> Result<()> {
        let mut node = self.inode(ino)?;
        self.truncate_blocks(&mut node, 0)?;
        node.kind = None;
        node.nlink = 0;
        node.size = 0;
        self.touch(ino, &mut node, true)?;
        let g = self.geo;
        if !self.bit(g.ibitmap_start, ino)? {
            return Err(corrupt(alloc::format!("inode {ino} freed twice")));
        }
        self.set_bit(g.ibitmap_start, ino, false)?;
        self.sb.free_inodes += 1;
        if ino < self.sb.ialloc_hint {
            self.sb.ialloc_hint = ino;
        }
        self.flush_sb();
        Ok(())
    }

    /// Records a change to `ino`: bumps its version, stamps it with the
    /// current epoch, adds it to the dirty log once, and writes it back.
    pub(crate) fn touch(&mut self, ino: Ino, node: &mut inode::Inode, data: bool) -> Result<()> {
        node.version = node.version.wrapping_add(1);
        node.stamp = self.sb.epoch;
        if data {
            node.data_stamp = self.sb.epoch;
        }
        if node.log_gen != self.sb.log_gen && self.sb.log_len < self.geo.inode_count {
            let n = self.sb.log_len;
            let per = (BLOCK_SIZE / 4) as u32;
            let lb = self.geo.log_start + n / per;
            wr32(self.blk_mut(lb)?, ((n % per) * 4) as usize, ino);
            self.sb.log_len += 1;
            node.log_gen = self.sb.log_gen;
            self.flush_sb();
        }
        self.put_inode(ino, node)
    }

    pub(crate) fn put_inode(&mut self, ino: Ino, node: &inode::Inode) -> Result<()> {
        self.check_ino(ino)?;
        let b = self.geo.itable_start + ino / INODES_PER_BLOCK as u32;
        let off = (ino as usize % INODES_PER_BLOCK) * INODE_SIZE;
        let blk = self.blk_mut(b)?;
        node.encode(&mut blk[off..off + INODE_SIZE]);
        Ok(())
    }
}

impl<S: AsRef<[u8]>> Fs<S> {
    /// Opens an arena that holds a file system: checks the superblock and
    /// the geometry (cheap). A full consistency check is [`Fs::check`].
    pub fn open(mem: S) -> Result<Self> {
        let b0 = mem
            .as_ref()
            .get(..BLOCK_SIZE)
            .ok_or_else(|| corrupt("arena smaller than one block"))?;
        if &b0[..8] != SB_MAGIC {
            return Err(corrupt("superblock magic"));
        }
        if rd32(b0, SB_VERSION) != LAYOUT_VERSION {
            return Err(corrupt("superblock layout version"));
        }
        if rd32(b0, SB_BSIZE) != BLOCK_SIZE as u32 {
            return Err(corrupt("superblock block size"));
        }
        let total = rd32(b0, SB_TOTAL);
        let inodes = rd32(b0, SB_INODES);
        let geo = Geometry::compute(total, inodes)
            .ok_or_else(|| corrupt("superblock block or inode count"))?;
        if (mem.as_ref().len() as u64) < total as u64 * BLOCK_SIZE as u64 {
            return Err(corrupt("arena smaller than the superblock's block count"));
        }
        let sb = Super {
            free_blocks: rd32(b0, SB_FREE_BLOCKS),
            free_inodes: rd32(b0, SB_FREE_INODES),
            epoch: rd32(b0, SB_EPOCH),
            log_gen: rd32(b0, SB_LOG_GEN),
            log_len: rd32(b0, SB_LOG_LEN),
            alloc_hint: rd32(b0, SB_HINT),
            ialloc_hint: rd32(b0, SB_IHINT),
        };
        if sb.free_blocks > total - geo.data_start || sb.free_inodes >= inodes {
            return Err(corrupt("superblock free counts"));
        }
        if sb.log_len > inodes {
            return Err(corrupt("superblock dirty-log length"));
        }
        Ok(Fs {
            mem,
            geo,
            sb,
            visits: Cell::new(0),
            writes: 0,
        })
    }

    /// The arena.
    pub fn as_bytes(&self) -> &[u8] {
        &self.mem.as_ref()[..self.geo.total_blocks as usize * BLOCK_SIZE]
    }

    /// Total blocks in the arena.
    pub fn total_blocks(&self) -> u32 {
        self.geo.total_blocks
    }
    /// Free data blocks.
    pub fn free_blocks(&self) -> u32 {
        self.sb.free_blocks
    }
    /// Number of inode slots (inode 0 is reserved).
    pub fn inode_count(&self) -> u32 {
        self.geo.inode_count
    }
    /// Free inodes.
    pub fn free_inodes(&self) -> u32 {
        self.sb.free_inodes
    }
    /// The current fork epoch.
    pub fn epoch(&self) -> u32 {
        self.sb.epoch
    }

    /// Inodes in the dirty log: 0 means nothing changed since
    /// [`enter_child`](Fs::enter_child), so a join has nothing to take.
    pub fn dirty_inodes(&self) -> u32 {
        self.sb.log_len
    }

    /// Blocks of metadata (superblock, bitmaps, dirty log, inode table)
    /// before the first data block.
    pub fn metadata_blocks(&self) -> u32 {
        self.geo.data_start
    }

    /// One past the highest block in use (at least the metadata): blocks
    /// `[0, used_prefix())` hold everything reachable, so a copy of that
    /// prefix reads like the whole arena. A join copies only this much of
    /// a child's file system.
    pub fn used_prefix(&self) -> u32 {
        let mem = self.mem.as_ref();
        let start = self.geo.bitmap_start as usize * BLOCK_SIZE;
        let bytes = (self.geo.total_blocks as usize).div_ceil(8);
        let map = mem.get(start..start + bytes).unwrap_or(&[]);
        match map.iter().rposition(|&b| b != 0) {
            Some(i) => {
                let top = i as u32 * 8 + (7 - map[i].leading_zeros());
                (top + 1).clamp(self.geo.data_start, self.geo.total_blocks)
            }
            None => self.geo.data_start,
        }
    }

    /// How many times a block of this value was handed out for writing.
    /// Every change to the arena goes through that, so while the count
    /// stays the same, so do the arena's bytes: a fork can reuse the
    /// reference it kept for an earlier fork.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Blocks read or written since the last [`reset_visits`](Fs::reset_visits)
    /// (the superblock is not counted). Used to show join costs.
    pub fn visits(&self) -> u64 {
        self.visits.get()
    }
    /// Zeroes the visit counter.
    pub fn reset_visits(&self) {
        self.visits.set(0);
    }

    /// A block for reading; counts as a visit.
    pub(crate) fn blk(&self, b: u32) -> Result<&[u8]> {
        if b >= self.geo.total_blocks {
            return Err(corrupt(alloc::format!("block {b} outside the file system")));
        }
        self.visits.set(self.visits.get() + 1);
        let start = b as usize * BLOCK_SIZE;
        self.mem
            .as_ref()
            .get(start..start + BLOCK_SIZE)
            .ok_or_else(|| corrupt(alloc::format!("block {b} outside the arena")))
    }

    pub(crate) fn bit(&self, region: u32, n: u32) -> Result<bool> {
        let bits = (BLOCK_SIZE * 8) as u32;
        let blk = self.blk(region + n / bits)?;
        Ok(blk[((n % bits) / 8) as usize] & (1 << (n % 8)) != 0)
    }

    pub(crate) fn check_ino(&self, ino: Ino) -> Result<()> {
        if ino == 0 || ino >= self.geo.inode_count {
            return Err(corrupt(alloc::format!("inode number {ino} out of range")));
        }
        Ok(())
    }

    /// Decodes inode `ino` (free or not).
    pub(crate) fn inode(&self, ino: Ino) -> Result<inode::Inode> {
        self.check_ino(ino)?;
        let b = self.geo.itable_start + ino / INODES_PER_BLOCK as u32;
        let off = (ino as usize % INODES_PER_BLOCK) * INODE_SIZE;
        let blk = self.blk(b)?;
        inode::Inode::decode(&blk[off..off + INODE_SIZE], ino, self.geo)
    }

    /// Decodes inode `ino` and fails with `NotFound` if it is free.
    pub(crate) fn live(&self, ino: Ino) -> Result<(inode::Inode, Kind)> {
        let n = self.inode(ino)?;
        match n.kind {
            Some(k) => Ok((n, k)),
            None => Err(FsError::NotFound),
        }
    }

    /// The inodes in the dirty log, in log order.
    pub(crate) fn dirty_log(&self) -> Result<Vec<Ino>> {
        let per = (BLOCK_SIZE / 4) as u32;
        let mut out = Vec::with_capacity(self.sb.log_len as usize);
        for n in 0..self.sb.log_len {
            let blk = self.blk(self.geo.log_start + n / per)?;
            let ino = rd32(blk, ((n % per) * 4) as usize);
            self.check_ino(ino)?;
            out.push(ino);
        }
        Ok(out)
    }
}
