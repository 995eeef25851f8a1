//! `cargo det initramfs`: a newc cpio + gzip, written by the builder.
//!
//! Reproducible by construction: entries sorted bytewise with every parent
//! directory before its children, inode numbers from a counter, mtime =
//! SOURCE_DATE_EPOCH, uid/gid 0, device numbers 0; gzip with mtime 0, no
//! file name, OS byte 3 (Unix) and a fixed level, on the pure-Rust
//! miniz_oxide backend (pinned in Cargo.toml) so the bytes do not depend on
//! the host's zlib. The `cpio` crate lets every header field be set, so it
//! is used as is.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use flate2::{Compression, GzBuilder};
use serde::Serialize;

use crate::deps;
use crate::fsutil::{self, Key};
use crate::profile::Profile;
use crate::project::Project;
use crate::userland::{Userland, DEMOS_DIR, TESTS_DIR};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// One thing in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Symlink(String),
    CharDev { major: u32, minor: u32, mode: u32 },
}

/// An archive under construction: path (no leading slash) → node.
#[derive(Default)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

/// One line of the manifest's per-file list.
#[derive(Debug, Clone, Serialize)]
pub struct FileEntry {
    pub path: String,
    pub mode: String,
    pub size: u64,
    pub sha256: String,
}

impl Tree {
    /// Add a node; its parent directories are added too. A path added twice
    /// with different content is an error (two programs want one place).
    pub fn add(&mut self, path: &str, node: Node) -> Result<()> {
        let path = path.trim_start_matches('/').trim_end_matches('/');
        if path.is_empty()
            || path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            bail!("bad path in initramfs: {path:?}");
        }
        let mut parent = String::new();
        for comp in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .expect("nonempty")
            .1
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(comp);
            match self.nodes.get(&parent) {
                None => {
                    self.nodes.insert(parent.clone(), Node::Dir);
                }
                Some(Node::Dir) => {}
                Some(_) => bail!("initramfs: {parent} is not a directory (needed for {path})"),
            }
        }
        match self.nodes.get(path) {
            Some(old) if *old != node => {
                bail!("initramfs: {path} added twice with different content")
            }
            _ => {}
        }
        self.nodes.insert(path.to_string(), node);
        Ok(())
    }

    /// Write the cpio (uncompressed) to `w`.
    pub fn write_cpio<W: Write>(&self, mut w: W, mtime: u32) -> io::Result<W> {
        // BTreeMap order is bytewise; "a" < "a/b" because '/' sorts after the
        // end of "a", and parents always precede children.
        for (ino, (path, node)) in self.nodes.iter().enumerate() {
            let (mode, data, nlink, rdev): (u32, &[u8], u32, (u32, u32)) = match node {
                Node::Dir => (S_IFDIR | 0o755, &[], 2, (0, 0)),
                Node::File { data, mode } => (S_IFREG | mode, data, 1, (0, 0)),
                Node::Symlink(target) => (S_IFLNK | 0o777, target.as_bytes(), 1, (0, 0)),
                Node::CharDev { major, minor, mode } => (S_IFCHR | mode, &[], 1, (*major, *minor)),
            };
            let size = u32::try_from(data.len())
                .map_err(|_| io::Error::other(format!("{path}: too large for cpio")))?;
            let mut entry = cpio::newc::Builder::new(path)
                .ino(ino as u32 + 1)
                .mode(mode)
                .uid(0)
                .gid(0)
                .nlink(nlink)
                .mtime(mtime)
                .dev_major(0)
                .dev_minor(0)
                .rdev_major(rdev.0)
                .rdev_minor(rdev.1)
                .write(w, size);
            entry.write_all(data)?;
            w = entry.finish()?;
        }
        cpio::newc::trailer(w)
    }

    /// Write the gzip-compressed cpio.
    pub fn write_cpio_gz<W: Write>(&self, w: W, mtime: u32) -> io::Result<W> {
        let gz = GzBuilder::new()
            .mtime(0)
            .operating_system(3)
            .write(w, Compression::new(9));
        self.write_cpio(gz, mtime)?.finish()
    }

    /// Per-file list for manifests: regular files and symlinks.
    pub fn files(&self) -> Vec<FileEntry> {
        self.nodes
            .iter()
            .filter_map(|(path, node)| match node {
                Node::File { data, mode } => Some(FileEntry {
                    path: format!("/{path}"),
                    mode: format!("{mode:04o}"),
                    size: data.len() as u64,
                    sha256: fsutil::sha256_bytes(data),
                }),
                Node::Symlink(t) => Some(FileEntry {
                    path: format!("/{path}"),
                    mode: "link".into(),
                    size: t.len() as u64,
                    sha256: fsutil::sha256_bytes(t.as_bytes()),
                }),
                _ => None,
            })
            .collect()
    }

    /// The cache key: the whole content and the writer (this file, and
    /// the locked versions of the crates that write the cpio and gzip
    /// bytes), so a change to how the bytes are written is a cache miss.
    fn key(&self, mtime: u32) -> String {
        let mut k = Key::new("initramfs");
        k.field("writer", include_str!("initramfs.rs"));
        for package in writer_crates() {
            k.field("crate", package);
        }
        k.field("mtime", mtime.to_le_bytes());
        for (path, node) in &self.nodes {
            k.field("path", path).field("node", format!("{node:?}"));
        }
        k.hex()
    }
}

/// The Cargo.lock entries (name, version, checksum) of the crates that
/// write the archive's bytes, as locked when the builder was compiled.
fn writer_crates() -> Vec<&'static str> {
    include_str!("../../Cargo.lock")
        .split("[[package]]")
        .map(str::trim)
        .filter(|p| {
            let name = p.lines().find_map(|l| l.strip_prefix("name = "));
            matches!(name, Some("\"cpio\"" | "\"flate2\"" | "\"miniz_oxide\""))
        })
        .collect()
}

pub struct Initramfs {
    pub path: PathBuf,
    pub files: Vec<FileEntry>,
}

/// Assemble the image's file tree for a profile.
pub fn assemble(profile: &Profile, userland: &Userland) -> Result<Tree> {
    let mut t = Tree::default();
    for dir in [
        "dev", "proc", "sys", "tmp", "run", "root", "etc", TESTS_DIR, DEMOS_DIR,
    ] {
        t.add(dir, Node::Dir)?;
    }
    t.add(
        "dev/console",
        Node::CharDev {
            major: 5,
            minor: 1,
            mode: 0o600,
        },
    )?;
    for p in &userland.programs {
        let data = fs::read(&p.path).with_context(|| format!("reading {}", p.path.display()))?;
        t.add(&p.dest, Node::File { data, mode: 0o755 })?;
    }
    if profile.userland.busybox {
        add_busybox(&mut t)?;
    }
    let os_release = os_release(profile);
    let etc: [(&str, String); 4] = [
        ("etc/os-release", os_release),
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n".into()),
        ("etc/group", "root:x:0:\n".into()),
        ("etc/hostname", "detlinux\n".into()),
    ];
    for (path, text) in etc {
        t.add(
            path,
            Node::File {
                data: text.into_bytes(),
                mode: 0o644,
            },
        )?;
    }
    Ok(t)
}

/// `/etc/os-release`, also the UKI's `.osrel` section.
pub fn os_release(profile: &Profile) -> String {
    let version = env!("CARGO_PKG_VERSION");
    format!(
        "NAME=detlinux\nID=detlinux\nVERSION_ID={version}\nPRETTY_NAME=\"detlinux {version} ({})\"\nHOME_URL=\"\"\n",
        profile.name
    )
}

/// Debian's static busybox and a symlink for each of its applets.
fn add_busybox(t: &mut Tree) -> Result<()> {
    let bb = Path::new("/bin/busybox");
    let data = fs::read(bb).context("reading /bin/busybox (package busybox-static)")?;
    let out = deps::command("busybox")
        .arg("--list-full")
        .output()
        .context("running busybox --list-full")?;
    if !out.status.success() {
        bail!("busybox --list-full failed");
    }
    t.add("bin/busybox", Node::File { data, mode: 0o755 })?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        // Our own /init stays; busybox's init-like applets are not needed.
        if applet.is_empty() || applet == "linuxrc" || applet == "bin/busybox" {
            continue;
        }
        t.add(applet, Node::Symlink("/bin/busybox".into()))?;
    }
    Ok(())
}

pub fn build(project: &Project, profile: &Profile, userland: &Userland) -> Result<Initramfs> {
    let tree = assemble(profile, userland)?;
    let mtime = u32::try_from(profile.build.source_date_epoch)
        .context("SOURCE_DATE_EPOCH does not fit a cpio mtime")?;
    let key = tree.key(mtime);
    let path = project
        .cache("initramfs")
        .join(format!("{}.cpio.gz", &key[..16]));
    if !path.is_file() {
        fsutil::write_atomic_with(&path, |w| {
            tree.write_cpio_gz(w, mtime)?;
            Ok(())
        })?;
    }
    Ok(Initramfs {
        path,
        files: tree.files(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_covers_the_cpio_and_gzip_crates() {
        let names: Vec<&str> = writer_crates()
            .iter()
            .filter_map(|p| p.lines().next())
            .collect();
        for c in ["cpio", "flate2", "miniz_oxide"] {
            assert!(
                names.contains(&format!("name = \"{c}\"").as_str()),
                "{names:?}"
            );
        }
        assert!(writer_crates().iter().all(|p| p.contains("version = ")));
    }

    fn sample() -> Tree {
        let mut t = Tree::default();
        t.add(
            "usr/lib/detlinux/tests/b",
            Node::File {
                data: b"bb".to_vec(),
                mode: 0o755,
            },
        )
        .unwrap();
        t.add(
            "init",
            Node::File {
                data: b"init!".to_vec(),
                mode: 0o755,
            },
        )
        .unwrap();
        t.add("bin/sh", Node::Symlink("/bin/busybox".into()))
            .unwrap();
        t.add(
            "dev/console",
            Node::CharDev {
                major: 5,
                minor: 1,
                mode: 0o600,
            },
        )
        .unwrap();
        t.add(
            "usr/lib/detlinux/tests/a",
            Node::File {
                data: vec![7; 5000],
                mode: 0o755,
            },
        )
        .unwrap();
        t
    }

    fn read_back(bytes: &[u8]) -> Vec<(String, u32, u32, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut r = bytes;
        loop {
            let mut rd = cpio::newc::Reader::new(r).unwrap();
            let e = rd.entry();
            if e.is_trailer() {
                break;
            }
            let row = (
                e.name().to_string(),
                e.ino(),
                e.mode(),
                e.mtime(),
                e.rdev_major(),
            );
            let mut data = Vec::new();
            io::Read::read_to_end(&mut rd, &mut data).unwrap();
            out.push((row.0, row.1, row.2, row.3, row.4, data));
            r = rd.finish().unwrap();
        }
        out
    }

    #[test]
    fn entries_are_sorted_with_parents_first_and_fixed_metadata() {
        let bytes = sample().write_cpio(Vec::new(), 1234).unwrap();
        let entries = read_back(&bytes);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/sh",
                "dev",
                "dev/console",
                "init",
                "usr",
                "usr/lib",
                "usr/lib/detlinux",
                "usr/lib/detlinux/tests",
                "usr/lib/detlinux/tests/a",
                "usr/lib/detlinux/tests/b"
            ]
        );
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.1, i as u32 + 1, "inode of {}", e.0);
            assert_eq!(e.3, 1234, "mtime of {}", e.0);
        }
        let console = &entries[3];
        assert_eq!(console.2, S_IFCHR | 0o600);
        assert_eq!(console.4, 5);
        assert_eq!(entries[1].5, b"/bin/busybox");
        assert_eq!(entries[9].5, vec![7; 5000]);
    }

    #[test]
    fn output_is_identical_whatever_the_insertion_order() {
        let a = sample().write_cpio_gz(Vec::new(), 99).unwrap();
        let mut t = Tree::default();
        t.add(
            "usr/lib/detlinux/tests/a",
            Node::File {
                data: vec![7; 5000],
                mode: 0o755,
            },
        )
        .unwrap();
        t.add(
            "dev/console",
            Node::CharDev {
                major: 5,
                minor: 1,
                mode: 0o600,
            },
        )
        .unwrap();
        t.add("bin/sh", Node::Symlink("/bin/busybox".into()))
            .unwrap();
        t.add(
            "init",
            Node::File {
                data: b"init!".to_vec(),
                mode: 0o755,
            },
        )
        .unwrap();
        t.add(
            "usr/lib/detlinux/tests/b",
            Node::File {
                data: b"bb".to_vec(),
                mode: 0o755,
            },
        )
        .unwrap();
        let b = t.write_cpio_gz(Vec::new(), 99).unwrap();
        assert_eq!(a, b);
        // gzip header: magic, deflate, no flags (no name), mtime 0, OS 3.
        assert_eq!(&a[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3]);
    }

    #[test]
    fn conflicting_and_bad_paths_are_errors() {
        let mut t = sample();
        assert!(t
            .add(
                "init",
                Node::File {
                    data: b"other".to_vec(),
                    mode: 0o755
                }
            )
            .is_err());
        assert!(t.add("init/x", Node::Dir).is_err());
        assert!(t.add("../etc", Node::Dir).is_err());
        assert!(t.add("", Node::Dir).is_err());
        // The same content twice is fine.
        t.add(
            "init",
            Node::File {
                data: b"init!".to_vec(),
                mode: 0o755,
            },
        )
        .unwrap();
    }
}
