//! File helpers: content hashing, sorted walks, atomic writes.
//!
//! Every artifact is written to a temporary name next to its destination
//! and renamed into place only when complete, so an interrupted build never
//! leaves a half-written file under its real name.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// An incremental hash used for cache keys: feeds labelled fields so that
/// `("a", "bc")` and `("ab", "c")` hash differently.
pub struct Key(Sha256);

impl Key {
    pub fn new(domain: &str) -> Key {
        let mut k = Key(Sha256::new());
        k.field("domain", domain.as_bytes());
        k
    }

    pub fn field(&mut self, label: &str, value: impl AsRef<[u8]>) -> &mut Key {
        let value = value.as_ref();
        self.0.update((label.len() as u64).to_le_bytes());
        self.0.update(label.as_bytes());
        self.0.update((value.len() as u64).to_le_bytes());
        self.0.update(value);
        self
    }

    /// Hash every file below `dir` (sorted, paths relative to `dir`);
    /// a missing directory hashes as empty.
    pub fn tree(&mut self, label: &str, dir: &Path) -> Result<&mut Key> {
        for rel in walk_files(dir)? {
            let data = fs::read(dir.join(&rel))
                .with_context(|| format!("reading {}", dir.join(&rel).display()))?;
            self.field(label, rel.to_string_lossy().as_bytes());
            self.field("content", &data);
        }
        Ok(self)
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0.clone().finalize())
    }
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

pub fn sha256_bytes(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Every regular file and symlink below `dir`, relative to it, sorted
/// bytewise. Directory order from the OS is never trusted.
pub fn walk_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if dir.is_dir() {
        walk(dir, Path::new(""), &mut out)?;
    }
    out.sort();
    Ok(out)
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .collect::<io::Result<_>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let rel = rel.join(e.file_name());
        if e.file_type()?.is_dir() {
            walk(root, &rel, out)?;
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

/// Write `data` to `path` atomically (temporary file + fsync + rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(data).map_err(Into::into))
}

/// Create `path` atomically from whatever `fill` writes.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut io::BufWriter<fs::File>) -> Result<()>,
) -> Result<()> {
    let dir = path.parent().context("path has no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tmp_name(path);
    let result = (|| {
        let f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = io::BufWriter::new(f);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A sibling temporary name, unique to this process.
pub fn tmp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_fields_are_framed() {
        let a = Key::new("t").field("x", "ab").field("y", "c").hex();
        let b = Key::new("t").field("x", "a").field("y", "bc").hex();
        assert_ne!(a, b);
        assert_eq!(a, Key::new("t").field("x", "ab").field("y", "c").hex());
    }

    #[test]
    fn atomic_write_leaves_no_temporary_on_failure() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let target = dir.join("out.bin");
        write_atomic(&target, b"first").unwrap();
        let err = write_atomic_with(&target, |w| {
            w.write_all(b"half")?;
            anyhow::bail!("interrupted")
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&target).unwrap(), b"first");
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "temporary left behind"
        );
    }

    #[test]
    fn walk_is_sorted_and_relative() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::create_dir_all(dir.join("b/c")).unwrap();
        fs::write(dir.join("b/c/z"), "").unwrap();
        fs::write(dir.join("a"), "").unwrap();
        fs::write(dir.join("b/a"), "").unwrap();
        let files = walk_files(&dir).unwrap();
        let files: Vec<_> = files.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(files, ["a", "b/a", "b/c/z"]);
    }
}
