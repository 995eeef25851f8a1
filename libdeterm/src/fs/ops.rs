//! Directories and the path-level and inode-level operations.
//!
//! A directory is a file of 128-byte entries: inode number (u32, 0 = free
//! slot), name length (u16), 2 reserved bytes, up to [`NAME_MAX`] name
//! bytes. Removing a name frees its slot; adding one reuses the first free
//! slot. Paths are absolute, `/`-separated; `.` and `..` resolve, empty
//! components are skipped.

use super::inode::Inode;
use super::{
    corrupt, rd16, rd32, wr16, wr32, Fs, FsError, Ino, Kind, Result, Stat, BLOCK_SIZE, DIRENT_SIZE,
    NAME_MAX, ROOT_INO,
};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// One used directory slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Dirent {
    pub slot: u64,
    pub name: Vec<u8>,
    pub ino: Ino,
}

/// Checks a name for a new directory entry.
pub(crate) fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(FsError::InvalidPath);
    }
    if name.contains(&0) {
        return Err(FsError::InvalidPath);
    }
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    Ok(())
}

/// Splits `path` into its parent part and last name.
fn split_last(path: &str) -> Result<(&str, &str)> {
    if !path.starts_with('/') {
        return Err(FsError::InvalidPath);
    }
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(i) => Ok((&trimmed[..i + 1], &trimmed[i + 1..])),
        None => Err(FsError::InvalidPath),
    }
}

impl<S: AsRef<[u8]>> Fs<S> {
    /// All used entries of directory `n`, in slot order.
    pub(crate) fn dir_entries(&self, dir: Ino, n: &Inode) -> Result<Vec<Dirent>> {
        if !n.size.is_multiple_of(DIRENT_SIZE as u64) {
            return Err(corrupt(format!("directory {dir} has a ragged size")));
        }
        let mut out = Vec::new();
        let per = (BLOCK_SIZE / DIRENT_SIZE) as u64;
        let slots = n.size / DIRENT_SIZE as u64;
        let mut l = 0;
        while l * per < slots {
            let b = self.bmap(n, l)?;
            if b != 0 {
                let blk = self.blk(b)?;
                for i in 0..per.min(slots - l * per) {
                    let off = i as usize * DIRENT_SIZE;
                    let ino = rd32(blk, off);
                    if ino == 0 {
                        continue;
                    }
                    let len = rd16(blk, off + 4) as usize;
                    if len == 0 || len > NAME_MAX {
                        return Err(corrupt(format!("directory {dir} has a bad name length")));
                    }
                    self.check_ino(ino)?;
                    out.push(Dirent {
                        slot: l * per + i,
                        name: blk[off + 8..off + 8 + len].to_vec(),
                        ino,
                    });
                }
            }
            l += 1;
        }
        Ok(out)
    }

    /// The live directory `dir`, or `NotDir`.
    pub(crate) fn dir_node(&self, dir: Ino) -> Result<Inode> {
        let (n, k) = self.live(dir)?;
        if k != Kind::Dir {
            return Err(FsError::NotDir);
        }
        Ok(n)
    }

    /// Finds `name` in directory `dir`.
    pub(crate) fn dir_find(&self, dir: Ino, name: &[u8]) -> Result<Option<Dirent>> {
        let n = self.dir_node(dir)?;
        Ok(self
            .dir_entries(dir, &n)?
            .into_iter()
            .find(|d| d.name == name))
    }

    /// The inode `name` names in directory `dir`.
    pub fn lookup_in(&self, dir: Ino, name: &str) -> Result<Ino> {
        self.dir_find(dir, name.as_bytes())?
            .map(|d| d.ino)
            .ok_or(FsError::NotFound)
    }

    /// Resolves an absolute path to an inode.
    pub fn lookup(&self, path: &str) -> Result<Ino> {
        if !path.starts_with('/') {
            return Err(FsError::InvalidPath);
        }
        let mut cur = ROOT_INO;
        for comp in path.split('/') {
            match comp {
                "" | "." => {
                    self.dir_node(cur)?;
                }
                ".." => cur = self.dir_node(cur)?.parent,
                c => {
                    if c.len() > NAME_MAX {
                        return Err(FsError::NameTooLong);
                    }
                    cur = self.lookup_in(cur, c)?;
                }
            }
        }
        Ok(cur)
    }

    /// The directory and the new name a path designates.
    fn parent_of<'p>(&self, path: &'p str) -> Result<(Ino, &'p str)> {
        let (dir, name) = split_last(path)?;
        check_name(name.as_bytes())?;
        let d = self.lookup(dir)?;
        self.dir_node(d)?;
        Ok((d, name))
    }

    /// `stat` of an inode.
    pub fn stat_ino(&self, ino: Ino) -> Result<Stat> {
        let (n, kind) = self.live(ino)?;
        Ok(Stat {
            ino,
            kind,
            size: n.size,
            nlink: n.nlink as u32,
            version: n.version,
        })
    }

    /// `stat` of a path.
    pub fn stat(&self, path: &str) -> Result<Stat> {
        self.stat_ino(self.lookup(path)?)
    }

    /// Reads up to `buf.len()` bytes of a file or console at `off`.
    pub fn read_ino(&self, ino: Ino, off: u64, buf: &mut [u8]) -> Result<usize> {
        let (n, k) = self.live(ino)?;
        if k == Kind::Dir {
            return Err(FsError::IsDir);
        }
        self.read_node(&n, off, buf)
    }

    /// Reads up to `buf.len()` bytes at `off` from the file at `path`.
    pub fn read(&self, path: &str, off: u64, buf: &mut [u8]) -> Result<usize> {
        self.read_ino(self.lookup(path)?, off, buf)
    }

    /// The whole content of a file or console.
    pub fn read_all_ino(&self, ino: Ino) -> Result<Vec<u8>> {
        let (n, k) = self.live(ino)?;
        if k == Kind::Dir {
            return Err(FsError::IsDir);
        }
        let mut v = alloc::vec![0u8; n.size as usize];
        self.read_node(&n, 0, &mut v)?;
        Ok(v)
    }

    /// The whole content of the file at `path`.
    pub fn read_all(&self, path: &str) -> Result<Vec<u8>> {
        self.read_all_ino(self.lookup(path)?)
    }

    /// The entries of a directory, in slot order.
    pub fn readdir_ino(&self, dir: Ino) -> Result<Vec<(String, Ino)>> {
        let n = self.dir_node(dir)?;
        self.dir_entries(dir, &n)?
            .into_iter()
            .map(|d| {
                String::from_utf8(d.name)
                    .map(|s| (s, d.ino))
                    .map_err(|_| corrupt(format!("directory {dir} has a non-UTF-8 name")))
            })
            .collect()
    }

    /// The entries of the directory at `path`.
    pub fn readdir(&self, path: &str) -> Result<Vec<(String, Ino)>> {
        self.readdir_ino(self.lookup(path)?)
    }

    /// A path for `ino` (following its parent pointer and the name found
    /// there), or `#ino` when no name is found. For messages only.
    pub fn path_of(&self, ino: Ino) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut cur = ino;
        for _ in 0..64 {
            if cur == ROOT_INO {
                break;
            }
            let parent = match self.inode(cur) {
                Ok(n) if n.kind.is_some() => n.parent,
                _ => return format!("#{ino}"),
            };
            let name = match self
                .dir_node(parent)
                .and_then(|pn| self.dir_entries(parent, &pn))
            {
                Ok(es) => es.into_iter().find(|d| d.ino == cur).map(|d| d.name),
                Err(_) => None,
            };
            match name {
                Some(n) => parts.push(String::from_utf8_lossy(&n).into_owned()),
                None => return format!("#{ino}"),
            }
            cur = parent;
        }
        if parts.is_empty() {
            return String::from("/");
        }
        let mut s = String::new();
        for p in parts.iter().rev() {
            s.push('/');
            s.push_str(p);
        }
        s
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> Fs<S> {
    /// Adds `name → target` to directory `dir` (no link count change).
    pub(crate) fn dir_insert(&mut self, dir: Ino, name: &[u8], target: Ino) -> Result<()> {
        check_name(name)?;
        let mut n = self.dir_node(dir)?;
        let entries = self.dir_entries(dir, &n)?;
        if entries.iter().any(|d| d.name == name) {
            return Err(FsError::Exists);
        }
        // First free slot: the first gap in the sorted used slots.
        let mut slot = 0u64;
        for d in &entries {
            if d.slot != slot {
                break;
            }
            slot += 1;
        }
        let mut rec = [0u8; DIRENT_SIZE];
        wr32(&mut rec, 0, target);
        wr16(&mut rec, 4, name.len() as u16);
        rec[8..8 + name.len()].copy_from_slice(name);
        let r = self.write_node(&mut n, slot * DIRENT_SIZE as u64, &rec);
        self.touch(dir, &mut n, true)?;
        r
    }

    /// Clears directory slot `slot` of `dir`.
    pub(crate) fn dir_erase(&mut self, dir: Ino, slot: u64) -> Result<()> {
        let mut n = self.dir_node(dir)?;
        let rec = [0u8; DIRENT_SIZE];
        let r = self.write_node(&mut n, slot * DIRENT_SIZE as u64, &rec);
        self.touch(dir, &mut n, true)?;
        r
    }

    pub(crate) fn add_link(&mut self, ino: Ino) -> Result<()> {
        let (mut n, _) = self.live(ino)?;
        n.nlink = n.nlink.checked_add(1).ok_or(FsError::NoSpace)?;
        self.touch(ino, &mut n, false)
    }

    /// Drops one link; frees the inode when none is left.
    pub(crate) fn drop_link(&mut self, ino: Ino) -> Result<()> {
        let (mut n, _) = self.live(ino)?;
        n.nlink = n.nlink.saturating_sub(1);
        if n.nlink == 0 {
            self.put_inode(ino, &n)?;
            self.free_inode(ino)
        } else {
            self.touch(ino, &mut n, false)
        }
    }

    /// Creates `name` of `kind` in directory `dir`.
    pub fn create_in(&mut self, dir: Ino, name: &str, kind: Kind) -> Result<Ino> {
        check_name(name.as_bytes())?;
        if self.dir_find(dir, name.as_bytes())?.is_some() {
            return Err(FsError::Exists);
        }
        let ino = self.alloc_inode(kind, dir)?;
        if let Err(e) = self.dir_insert(dir, name.as_bytes(), ino) {
            self.free_inode(ino)?;
            return Err(e);
        }
        let (mut n, _) = self.live(ino)?;
        n.nlink = 1;
        self.touch(ino, &mut n, false)?;
        Ok(ino)
    }

    /// Creates an empty file; `Exists` if the name is taken.
    pub fn create(&mut self, path: &str) -> Result<Ino> {
        let (d, name) = self.parent_of(path)?;
        self.create_in(d, name, Kind::File)
    }

    /// Creates a directory.
    pub fn mkdir(&mut self, path: &str) -> Result<Ino> {
        let (d, name) = self.parent_of(path)?;
        self.create_in(d, name, Kind::Dir)
    }

    /// Creates a console stream (append-only, merged by concatenation).
    pub fn create_console(&mut self, path: &str) -> Result<Ino> {
        let (d, name) = self.parent_of(path)?;
        self.create_in(d, name, Kind::Console)
    }

    /// Writes `data` at `off` (a console stream only at its end).
    pub fn write_ino(&mut self, ino: Ino, off: u64, data: &[u8]) -> Result<usize> {
        let (mut n, k) = self.live(ino)?;
        match k {
            Kind::Dir => return Err(FsError::IsDir),
            Kind::Console if off != n.size => return Err(FsError::InvalidArgument),
            _ => {}
        }
        if data.is_empty() {
            return Ok(0);
        }
        // A write that runs out of space keeps what fit.
        let r = self.write_node(&mut n, off, data);
        self.touch(ino, &mut n, true)?;
        r.map(|_| data.len())
    }

    /// Writes `data` at `off` in the file at `path`.
    pub fn write(&mut self, path: &str, off: u64, data: &[u8]) -> Result<usize> {
        let ino = self.lookup(path)?;
        self.write_ino(ino, off, data)
    }

    /// Appends `data`; returns the offset it was written at.
    pub fn append_ino(&mut self, ino: Ino, data: &[u8]) -> Result<u64> {
        let (n, _) = self.live(ino)?;
        self.write_ino(ino, n.size, data)?;
        Ok(n.size)
    }

    /// Appends `data` to the file at `path`.
    pub fn append(&mut self, path: &str, data: &[u8]) -> Result<u64> {
        let ino = self.lookup(path)?;
        self.append_ino(ino, data)
    }

    /// Sets the size of a file, freeing blocks beyond it or reading zeros in
    /// the extension. Console streams cannot be truncated.
    pub fn truncate_ino(&mut self, ino: Ino, size: u64) -> Result<()> {
        let (mut n, k) = self.live(ino)?;
        match k {
            Kind::Dir => return Err(FsError::IsDir),
            Kind::Console => return Err(FsError::InvalidArgument),
            Kind::File => {}
        }
        if size == n.size {
            return Ok(());
        }
        self.truncate_blocks(&mut n, size)?;
        self.touch(ino, &mut n, true)
    }

    /// Sets the size of the file at `path`.
    pub fn truncate(&mut self, path: &str, size: u64) -> Result<()> {
        let ino = self.lookup(path)?;
        self.truncate_ino(ino, size)
    }

    /// Adds the name `name` in `dir` for the existing non-directory `ino`.
    pub fn link_in(&mut self, dir: Ino, name: &str, ino: Ino) -> Result<()> {
        let (_, k) = self.live(ino)?;
        if k == Kind::Dir {
            return Err(FsError::IsDir);
        }
        self.dir_insert(dir, name.as_bytes(), ino)?;
        self.add_link(ino)
    }

    /// Hard link: `new` names the same file as `existing`.
    pub fn link(&mut self, existing: &str, new: &str) -> Result<()> {
        let ino = self.lookup(existing)?;
        let (d, name) = self.parent_of(new)?;
        self.link_in(d, name, ino)
    }

    /// Removes `name` from `dir`; a directory must be empty.
    pub fn remove_in(&mut self, dir: Ino, name: &str) -> Result<()> {
        let d = self
            .dir_find(dir, name.as_bytes())?
            .ok_or(FsError::NotFound)?;
        let (n, k) = self.live(d.ino)?;
        if k == Kind::Dir && !self.dir_entries(d.ino, &n)?.is_empty() {
            return Err(FsError::NotEmpty);
        }
        self.dir_erase(dir, d.slot)?;
        self.drop_link(d.ino)
    }

    /// Removes a non-directory name; the file goes with its last link.
    pub fn unlink(&mut self, path: &str) -> Result<()> {
        let (d, name) = self.parent_of(path)?;
        let ino = self.lookup_in(d, name)?;
        if self.live(ino)?.1 == Kind::Dir {
            return Err(FsError::IsDir);
        }
        self.remove_in(d, name)
    }

    /// Removes an empty directory.
    pub fn rmdir(&mut self, path: &str) -> Result<()> {
        let (d, name) = self.parent_of(path)?;
        let ino = self.lookup_in(d, name)?;
        if self.live(ino)?.1 != Kind::Dir {
            return Err(FsError::NotDir);
        }
        self.remove_in(d, name)
    }

    /// Moves `from` to `to`. An existing `to` is replaced if both are
    /// non-directories, or if both are directories and `to` is empty.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let (fd, fname) = self.parent_of(from)?;
        let (td, tname) = self.parent_of(to)?;
        let src = self
            .dir_find(fd, fname.as_bytes())?
            .ok_or(FsError::NotFound)?;
        let sk = self.live(src.ino)?.1;
        if fd == td && fname == tname {
            return Ok(());
        }
        if sk == Kind::Dir {
            // `to` must not lie inside `from`.
            let mut cur = td;
            for _ in 0..=self.geo.inode_count {
                if cur == src.ino {
                    return Err(FsError::InvalidArgument);
                }
                if cur == ROOT_INO {
                    break;
                }
                cur = self.dir_node(cur)?.parent;
            }
        }
        if let Some(dst) = self.dir_find(td, tname.as_bytes())? {
            if dst.ino == src.ino {
                return Ok(());
            }
            let (dn, dk) = self.live(dst.ino)?;
            match (sk == Kind::Dir, dk == Kind::Dir) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) if !self.dir_entries(dst.ino, &dn)?.is_empty() => {
                    return Err(FsError::NotEmpty)
                }
                _ => {}
            }
            self.dir_erase(td, dst.slot)?;
            self.drop_link(dst.ino)?;
        }
        self.dir_erase(fd, src.slot)?;
        if let Err(e) = self.dir_insert(td, tname.as_bytes(), src.ino) {
            // The freed slot makes this re-insert allocation-free.
            self.dir_insert(fd, fname.as_bytes(), src.ino)?;
            return Err(e);
        }
        let mut sn = self.live(src.ino)?.0;
        sn.parent = td;
        self.touch(src.ino, &mut sn, false)
    }
}
