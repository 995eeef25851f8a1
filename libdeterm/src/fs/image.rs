//! The persistent image and the consistency checker.
//!
//! Layout, all integers little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `DETFSIMG` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | block size (4096) |
//! | 16 | 8 | block count *n* |
//! | 24 | 4 | flags (none defined: must be 0) |
//! | 28 | 4 | header length (64) |
//! | 32 | 4 | CRC32C of the checksum table |
//! | 36 | 24 | reserved, zero |
//! | 60 | 4 | CRC32C of bytes 0..60 |
//! | 64 | 4·n | CRC32C of each block |
//! | 64 + 4·n | 4096·n | the blocks: the arena as it is in memory |
//!
//! [`load`] checks all of it, then the superblock, then the whole file
//! system ([`Fs::check`]), so a loaded image is safe to use.

use super::{
    corrupt, inode::Inode, ops::check_name, rd32, rd64, wr32, wr64, Fs, Ino, Kind, Result,
    BLOCK_SIZE, MAX_BLOCKS, MIN_BLOCKS, ROOT_INO,
};
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

/// First 8 bytes of an image.
pub const IMAGE_MAGIC: &[u8; 8] = b"DETFSIMG";
/// The image format version this build writes and reads.
pub const IMAGE_VERSION: u32 = 1;
const HEADER_LEN: usize = 64;

/// Slicing-by-8 tables: `T[0]` is the classic byte table, `T[k][b]` is the
/// CRC of byte `b` followed by `k` zero bytes.
const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}
static CRC: [[u32; 256]; 8] = crc_tables();

/// CRC-32C (Castagnoli), as used by iSCSI and ext4; 8 bytes per step.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let lo = c ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        c = CRC[7][(lo & 0xff) as usize]
            ^ CRC[6][((lo >> 8) & 0xff) as usize]
            ^ CRC[5][((lo >> 16) & 0xff) as usize]
            ^ CRC[4][(lo >> 24) as usize]
            ^ CRC[3][w[4] as usize]
            ^ CRC[2][w[5] as usize]
            ^ CRC[1][w[6] as usize]
            ^ CRC[0][w[7] as usize];
    }
    for &b in words.remainder() {
        c = CRC[0][((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

impl<S: AsRef<[u8]>> Fs<S> {
    /// The persistent image of this file system.
    pub fn save(&self) -> Vec<u8> {
        image_of(self.as_bytes())
    }

    /// Full consistency check: bitmaps against the block trees, every
    /// pointer inside the data area and used once, the directory tree from
    /// the root without cycles, link counts against directory entries, free
    /// counts. Costs the size of the file system.
    pub fn check(&self) -> Result<()> {
        let g = self.geo;
        let total = g.total_blocks as usize;
        let mut seen = vec![false; total];
        for b in 0..g.data_start {
            if !self.bit(g.bitmap_start, b)? {
                return Err(corrupt(format!("bitmap marks metadata block {b} free")));
            }
        }
        if !self.bit(g.ibitmap_start, 0)? {
            return Err(corrupt("inode bitmap marks reserved inode 0 free"));
        }
        let mut nodes: Vec<Option<Inode>> = vec![None; g.inode_count as usize];
        let mut used_inodes = 0u32;
        for ino in 1..g.inode_count {
            let n = self.inode(ino)?;
            if self.bit(g.ibitmap_start, ino)? != n.kind.is_some() {
                return Err(corrupt(format!("inode {ino}: bitmap and inode disagree")));
            }
            if n.kind.is_none() {
                continue;
            }
            used_inodes += 1;
            if n.nlink == 0 {
                return Err(corrupt(format!("inode {ino} in use with no links")));
            }
            let mut bad = None;
            self.all_blocks(&n, &mut |b| {
                let i = b as usize;
                if seen[i] {
                    bad = Some(format!("block {b} used twice (inode {ino})"));
                    return Err(corrupt(""));
                }
                seen[i] = true;
                Ok(())
            })
            .map_err(|e| bad.take().map(corrupt).unwrap_or(e))?;
            nodes[ino as usize] = Some(n);
        }
        let mut used_data = 0u32;
        for b in g.data_start..g.total_blocks {
            let marked = self.bit(g.bitmap_start, b)?;
            if marked != seen[b as usize] {
                return Err(corrupt(if marked {
                    format!("block {b} marked used but not referenced")
                } else {
                    format!("block {b} referenced but marked free")
                }));
            }
            used_data += marked as u32;
        }
        if self.sb.free_blocks != g.total_blocks - g.data_start - used_data {
            return Err(corrupt("superblock free block count"));
        }
        if self.sb.free_inodes != g.inode_count - 1 - used_inodes {
            return Err(corrupt("superblock free inode count"));
        }
        self.check_tree(&nodes)?;
        self.dirty_log()?;
        Ok(())
    }

    fn check_tree(&self, nodes: &[Option<Inode>]) -> Result<()> {
        let root = nodes
            .get(ROOT_INO as usize)
            .copied()
            .flatten()
            .filter(|n| n.kind == Some(Kind::Dir) && n.parent == ROOT_INO)
            .ok_or_else(|| corrupt("root is not a directory"))?;
        let mut links = vec![0u32; nodes.len()];
        let mut visited = vec![false; nodes.len()];
        visited[ROOT_INO as usize] = true;
        let mut stack: Vec<(Ino, Inode)> = vec![(ROOT_INO, root)];
        while let Some((d, dn)) = stack.pop() {
            let mut ents = self.dir_entries(d, &dn)?;
            ents.sort_by(|a, b| a.name.cmp(&b.name));
            for w in ents.windows(2) {
                if w[0].name == w[1].name {
                    return Err(corrupt(format!("directory {d}: duplicate name")));
                }
            }
            for e in ents {
                check_name(&e.name).map_err(|_| corrupt(format!("directory {d}: bad name")))?;
                if core::str::from_utf8(&e.name).is_err() {
                    return Err(corrupt(format!("directory {d}: name not UTF-8")));
                }
                let t = e.ino as usize;
                let tn =
                    nodes.get(t).copied().flatten().ok_or_else(|| {
                        corrupt(format!("directory {d}: entry names free inode {t}"))
                    })?;
                links[t] += 1;
                if tn.kind == Some(Kind::Dir) {
                    if visited[t] {
                        return Err(corrupt(format!(
                            "directory cycle or second name for directory {t}"
                        )));
                    }
                    if tn.parent != d {
                        return Err(corrupt(format!("directory {t}: wrong parent pointer")));
                    }
                    visited[t] = true;
                    stack.push((e.ino, tn));
                }
            }
        }
        for (i, n) in nodes.iter().enumerate() {
            let Some(n) = n else { continue };
            if i as Ino == ROOT_INO {
                if links[i] != 0 || n.nlink != 1 {
                    return Err(corrupt("root has a name or a bad link count"));
                }
                continue;
            }
            if links[i] == 0 {
                return Err(corrupt(format!("inode {i} is not reachable from the root")));
            }
            if links[i] != n.nlink as u32 {
                return Err(corrupt(format!(
                    "inode {i}: link count {} but {} names",
                    n.nlink, links[i]
                )));
            }
        }
        Ok(())
    }
}

/// Wraps an arena (a whole number of blocks) in header and checksums.
pub(crate) fn image_of(arena: &[u8]) -> Vec<u8> {
    let n = arena.len() / BLOCK_SIZE;
    let mut out = vec![0u8; HEADER_LEN + 4 * n];
    for (i, blk) in arena.chunks(BLOCK_SIZE).enumerate() {
        wr32(&mut out, HEADER_LEN + 4 * i, crc32c(blk));
    }
    let table_crc = crc32c(&out[HEADER_LEN..]);
    out[..8].copy_from_slice(IMAGE_MAGIC);
    wr32(&mut out, 8, IMAGE_VERSION);
    wr32(&mut out, 12, BLOCK_SIZE as u32);
    wr64(&mut out, 16, n as u64);
    wr32(&mut out, 24, 0);
    wr32(&mut out, 28, HEADER_LEN as u32);
    wr32(&mut out, 32, table_crc);
    let hc = crc32c(&out[..60]);
    wr32(&mut out, 60, hc);
    out.extend_from_slice(arena);
    out
}

/// Loads an image written by [`Fs::save`]. Every way an image can be bad
/// — truncated, wrong magic or version, bad checksum, inconsistent content
/// — is an [`FsError::Corrupt`](super::FsError::Corrupt) naming it.
pub fn load(image: &[u8]) -> Result<Fs> {
    if image.len() < HEADER_LEN {
        return Err(corrupt("image truncated: shorter than its header"));
    }
    let h = &image[..HEADER_LEN];
    if &h[..8] != IMAGE_MAGIC {
        return Err(corrupt("image magic: not a detlinux file-system image"));
    }
    if crc32c(&h[..60]) != rd32(h, 60) {
        return Err(corrupt("image header checksum"));
    }
    let version = rd32(h, 8);
    if version != IMAGE_VERSION {
        return Err(corrupt(format!(
            "image format version {version}, this build reads {IMAGE_VERSION}"
        )));
    }
    if rd32(h, 12) != BLOCK_SIZE as u32 {
        return Err(corrupt("image block size"));
    }
    if rd32(h, 24) != 0 {
        return Err(corrupt("image flags: unknown bits set"));
    }
    if rd32(h, 28) != HEADER_LEN as u32 || h[36..60].iter().any(|&b| b != 0) {
        return Err(corrupt("image header length or reserved bytes"));
    }
    let n = rd64(h, 16);
    if n < MIN_BLOCKS as u64 || n > MAX_BLOCKS as u64 {
        return Err(corrupt(format!("image block count {n}")));
    }
    let n = n as usize;
    let expect = HEADER_LEN + 4 * n + BLOCK_SIZE * n;
    if image.len() < expect {
        return Err(corrupt(format!(
            "image truncated: {} bytes, header says {expect}",
            image.len()
        )));
    }
    if image.len() > expect {
        return Err(corrupt("image has trailing bytes"));
    }
    let table = &image[HEADER_LEN..HEADER_LEN + 4 * n];
    if crc32c(table) != rd32(h, 32) {
        return Err(corrupt("image checksum table checksum"));
    }
    let data = &image[HEADER_LEN + 4 * n..];
    for (i, blk) in data.chunks(BLOCK_SIZE).enumerate() {
        if crc32c(blk) != rd32(table, 4 * i) {
            return Err(corrupt(format!("image block {i} checksum")));
        }
    }
    let fs = Fs::open(data.to_vec())?;
    if fs.geo.total_blocks as usize != n {
        return Err(corrupt(
            "superblock block count differs from the image header",
        ));
    }
    fs.check()?;
    Ok(fs)
}

/// A small valid file system for the fuzz entry points to damage.
pub(crate) fn fuzz_seed() -> Option<Fs> {
    let mut fs = Fs::new(24, 16).ok()?;
    fs.mkdir("/d").ok()?;
    fs.create("/d/f").ok()?;
    fs.write("/d/f", 0, &[4; 9000]).ok()?;
    fs.link("/d/f", "/l").ok()?;
    fs.append("/dev/stdout", b"saved\n").ok()?;
    Some(fs)
}

/// Fuzz entry point for the loader. Loads `data` as an image; then reads
/// `data` as edits (2-byte offset, XOR byte) to a small valid arena, wraps
/// that in valid checksums and loads it, so that mutations get past the
/// checksums to the superblock and consistency checks. Whatever loads is
/// then read (head and tail of every file) and saved again. Never panics.
pub fn fuzz_load(data: &[u8]) {
    exercise(load(data));
    let Some(seed) = fuzz_seed() else { return };
    let mut arena = seed.as_bytes().to_vec();
    for e in data.chunks_exact(3) {
        let off = u16::from_le_bytes([e[0], e[1]]) as usize % arena.len();
        arena[off] ^= e[2];
    }
    exercise(load(&image_of(&arena)));
}

fn exercise(r: Result<Fs>) {
    let Ok(fs) = r else { return };
    let mut stack = vec![ROOT_INO];
    let mut guard = 0;
    while let Some(d) = stack.pop() {
        guard += 1;
        if guard > 10_000 {
            break;
        }
        let Ok(ents) = fs.readdir_ino(d) else {
            continue;
        };
        for (_, ino) in ents {
            match fs.stat_ino(ino).map(|s| s.kind) {
                Ok(Kind::Dir) => stack.push(ino),
                Ok(_) => {
                    // Head and tail: a valid sparse file may be 1 GiB.
                    let mut buf = [0u8; 8192];
                    let _ = fs.read_ino(ino, 0, &mut buf);
                    if let Ok(st) = fs.stat_ino(ino) {
                        let _ = fs.read_ino(ino, st.size.saturating_sub(8192), &mut buf);
                    }
                }
                Err(_) => {}
            }
        }
    }
    let again = fs.save();
    let _ = load(&again);
}
