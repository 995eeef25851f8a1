//! Host tests of the file system: each operation, the join rules, the
//! loader against every kind of corruption, seeded randomized runs against
//! simple models, and seeded drivers for the two fuzz entry points.

use super::reconcile::script;
use super::*;
use std::collections::BTreeMap;
use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

/// splitmix64: small, seeded, reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
    /// 1 to `max` random bytes.
    fn some(&mut self, max: u64) -> Vec<u8> {
        let n = self.below(max) as usize + 1;
        self.bytes(n)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

// The brief: files of at least 1 GiB.
const _: () = assert!(MAX_FILE_SIZE >= 1 << 30);

fn small() -> Fs {
    Fs::new(1024, 128).unwrap()
}

/// Every path in the tree: `None` for a directory, the bytes for a file.
fn tree(fs: &Fs) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), ROOT_INO)];
    while let Some((path, d)) = stack.pop() {
        for (name, ino) in fs.readdir_ino(d).unwrap() {
            let p = format!("{path}/{name}");
            if fs.stat_ino(ino).unwrap().kind == Kind::Dir {
                out.insert(p.clone(), None);
                stack.push((p, ino));
            } else {
                out.insert(p, Some(fs.read_all_ino(ino).unwrap()));
            }
        }
    }
    out
}

fn is_corrupt(r: Result<Fs>, needle: &str) {
    match r {
        Err(FsError::Corrupt { what }) => {
            assert!(what.contains(needle), "expected `{needle}` in `{what}`")
        }
        Err(e) => panic!("expected Corrupt({needle}), got {e:?}"),
        Ok(_) => panic!("expected Corrupt({needle}), loaded fine"),
    }
}

// ---------------------------------------------------------------- operations

#[test]
fn fresh_fs_has_root_dev_and_console_streams() {
    let fs = small();
    assert_eq!(fs.lookup("/").unwrap(), ROOT_INO);
    assert_eq!(fs.lookup("/dev").unwrap(), DEV_INO);
    assert_eq!(fs.lookup("/dev/stdin").unwrap(), STDIN_INO);
    assert_eq!(fs.lookup("/dev/stdout").unwrap(), STDOUT_INO);
    assert_eq!(fs.lookup("/dev/stderr").unwrap(), STDERR_INO);
    assert_eq!(fs.stat("/dev/stdout").unwrap().kind, Kind::Console);
    assert_eq!(fs.stat("/dev").unwrap().kind, Kind::Dir);
    fs.check().unwrap();
}

#[test]
fn write_read_at_offsets_and_holes() {
    let mut fs = small();
    fs.create("/f").unwrap();
    fs.write("/f", 0, b"hello").unwrap();
    fs.write("/f", 10_000, b"world").unwrap();
    let st = fs.stat("/f").unwrap();
    assert_eq!(st.size, 10_005);
    let all = fs.read_all("/f").unwrap();
    assert_eq!(&all[..5], b"hello");
    assert!(all[5..10_000].iter().all(|&b| b == 0));
    assert_eq!(&all[10_000..], b"world");
    let mut buf = [0u8; 8];
    assert_eq!(fs.read("/f", 10_002, &mut buf).unwrap(), 3);
    assert_eq!(&buf[..3], b"rld");
    assert_eq!(fs.read("/f", 20_000, &mut buf).unwrap(), 0);
    // Block 1 is a hole: only two data blocks are used.
    let before = Fs::new(1024, 128).unwrap().free_blocks();
    assert_eq!(before - fs.free_blocks(), 2);
    fs.check().unwrap();
}

#[test]
fn writes_across_direct_single_and_double_indirect() {
    let mut fs = Fs::new(4096, 64).unwrap();
    fs.create("/f").unwrap();
    let bs = BLOCK_SIZE as u64;
    let offs = [
        0,
        9 * bs + 4000,
        10 * bs - 3,
        521 * bs + 7,
        522 * bs - 1,
        1500 * bs,
    ];
    for (i, &o) in offs.iter().enumerate() {
        fs.write("/f", o, &[i as u8 + 1; 100]).unwrap();
    }
    for (i, &o) in offs.iter().enumerate() {
        let mut b = [0u8; 100];
        fs.read("/f", o, &mut b).unwrap();
        // A later write may overlap an earlier one's tail; check the head.
        assert_eq!(b[0], i as u8 + 1, "offset {o}");
    }
    fs.check().unwrap();
}

#[test]
fn a_sparse_file_of_one_gibibyte() {
    let mut fs = small();
    fs.create("/big").unwrap();
    let last = MAX_FILE_SIZE - 4;
    fs.write("/big", last, b"end!").unwrap();
    for i in 0..16u64 {
        fs.write("/big", i * (64 << 20) + 3, &[i as u8; 5]).unwrap();
    }
    assert_eq!(fs.stat("/big").unwrap().size, MAX_FILE_SIZE);
    let mut b = [0u8; 4];
    fs.read("/big", last, &mut b).unwrap();
    assert_eq!(&b, b"end!");
    let mut b = [0u8; 5];
    fs.read("/big", 7 * (64 << 20) + 3, &mut b).unwrap();
    assert_eq!(b, [7; 5]);
    fs.read("/big", 7 * (64 << 20) + 100_000, &mut b).unwrap();
    assert_eq!(b, [0; 5]);
    assert_eq!(
        fs.write("/big", MAX_FILE_SIZE - 1, b"xx"),
        Err(FsError::FileTooLarge)
    );
    assert_eq!(
        fs.truncate("/big", MAX_FILE_SIZE + 1),
        Err(FsError::FileTooLarge)
    );
    fs.check().unwrap();
    let free = Fs::new(1024, 128).unwrap().free_blocks();
    fs.truncate("/big", 0).unwrap();
    assert_eq!(fs.free_blocks(), free);
    fs.check().unwrap();
}

#[test]
fn errors_name_the_problem() {
    let mut fs = small();
    fs.create("/f").unwrap();
    fs.mkdir("/d").unwrap();
    fs.create("/d/x").unwrap();
    assert_eq!(fs.create("/f"), Err(FsError::Exists));
    assert_eq!(fs.mkdir("/d"), Err(FsError::Exists));
    assert_eq!(fs.lookup("/nope"), Err(FsError::NotFound));
    assert_eq!(fs.create("/nope/x"), Err(FsError::NotFound));
    assert_eq!(fs.create("/f/x"), Err(FsError::NotDir));
    assert_eq!(fs.unlink("/d"), Err(FsError::IsDir));
    assert_eq!(fs.rmdir("/f"), Err(FsError::NotDir));
    assert_eq!(fs.rmdir("/d"), Err(FsError::NotEmpty));
    assert_eq!(fs.write("/d", 0, b"x"), Err(FsError::IsDir));
    assert_eq!(fs.read_all("/d"), Err(FsError::IsDir));
    assert_eq!(fs.create("relative"), Err(FsError::InvalidPath));
    assert_eq!(fs.create("/"), Err(FsError::InvalidPath));
    assert_eq!(fs.create("/d/.."), Err(FsError::InvalidPath));
    let long = format!("/{}", "n".repeat(NAME_MAX + 1));
    assert_eq!(fs.create(&long), Err(FsError::NameTooLong));
    fs.create(&format!("/{}", "n".repeat(NAME_MAX))).unwrap();
    assert_eq!(fs.link("/d", "/d2"), Err(FsError::IsDir));
    assert_eq!(fs.rename("/d", "/d/x/y"), Err(FsError::NotDir));
    assert_eq!(fs.rename("/d", "/d/sub"), Err(FsError::InvalidArgument));
    assert_eq!(fs.rmdir("/"), Err(FsError::InvalidPath));
    fs.check().unwrap();
}

#[test]
fn paths_resolve_dot_dotdot_and_extra_slashes() {
    let mut fs = small();
    fs.mkdir("/a").unwrap();
    fs.mkdir("/a/b").unwrap();
    let f = fs.create("/a/b/f").unwrap();
    assert_eq!(fs.lookup("//a/./b//f").unwrap(), f);
    assert_eq!(fs.lookup("/a/b/../b/f").unwrap(), f);
    assert_eq!(fs.lookup("/..").unwrap(), ROOT_INO);
}

#[test]
fn hard_links_count_and_free_with_the_last_name() {
    let mut fs = small();
    let free = fs.free_blocks();
    let ino = fs.create("/f").unwrap();
    fs.write("/f", 0, &[7; 9000]).unwrap();
    fs.mkdir("/d").unwrap();
    fs.link("/f", "/d/g").unwrap();
    assert_eq!(fs.stat("/f").unwrap().nlink, 2);
    assert_eq!(fs.lookup("/d/g").unwrap(), ino);
    assert_eq!(fs.link("/f", "/d/g"), Err(FsError::Exists));
    fs.unlink("/f").unwrap();
    assert_eq!(fs.stat("/d/g").unwrap().nlink, 1);
    assert_eq!(fs.read_all("/d/g").unwrap(), vec![7; 9000]);
    fs.check().unwrap();
    fs.unlink("/d/g").unwrap();
    assert_eq!(fs.stat_ino(ino), Err(FsError::NotFound));
    fs.rmdir("/d").unwrap();
    // The file's blocks and /d's went back; / still fits in its block.
    assert_eq!(fs.free_blocks(), free);
    fs.check().unwrap();
}

#[test]
fn rename_moves_replaces_and_updates_dotdot() {
    let mut fs = small();
    fs.mkdir("/a").unwrap();
    fs.mkdir("/b").unwrap();
    fs.create("/a/f").unwrap();
    fs.write("/a/f", 0, b"one").unwrap();
    fs.rename("/a/f", "/b/g").unwrap();
    assert_eq!(fs.lookup("/a/f"), Err(FsError::NotFound));
    assert_eq!(fs.read_all("/b/g").unwrap(), b"one");
    fs.create("/b/h").unwrap();
    fs.write("/b/h", 0, b"two").unwrap();
    fs.rename("/b/h", "/b/g").unwrap();
    assert_eq!(fs.read_all("/b/g").unwrap(), b"two");
    assert_eq!(fs.readdir("/b").unwrap().len(), 1);
    fs.rename("/b", "/a/b2").unwrap();
    assert_eq!(fs.lookup("/a/b2/..").unwrap(), fs.lookup("/a").unwrap());
    fs.mkdir("/e").unwrap();
    fs.rename("/e", "/a/b2").unwrap_err();
    fs.rmdir("/a/b2").unwrap_err();
    fs.unlink("/a/b2/g").unwrap();
    fs.rename("/e", "/a/b2").unwrap();
    assert_eq!(fs.lookup("/e"), Err(FsError::NotFound));
    fs.rename("/a", "/a").unwrap();
    fs.check().unwrap();
}

#[test]
fn truncate_shrinks_zeroes_and_extends() {
    let mut fs = small();
    fs.create("/f").unwrap();
    fs.write("/f", 0, &[1; 20_000]).unwrap();
    fs.truncate("/f", 5000).unwrap();
    fs.truncate("/f", 12_000).unwrap();
    let all = fs.read_all("/f").unwrap();
    assert!(all[..5000].iter().all(|&b| b == 1));
    assert!(all[5000..].iter().all(|&b| b == 0));
    fs.check().unwrap();
}

#[test]
fn stat_version_counts_changes() {
    let mut fs = small();
    fs.create("/f").unwrap();
    let v0 = fs.stat("/f").unwrap().version;
    fs.write("/f", 0, b"a").unwrap();
    fs.append("/f", b"b").unwrap();
    let v2 = fs.stat("/f").unwrap().version;
    assert_eq!(v2, v0 + 2);
    fs.link("/f", "/g").unwrap();
    assert_eq!(fs.stat("/f").unwrap().version, v2 + 1);
}

#[test]
fn console_streams_only_grow_at_the_end() {
    let mut fs = small();
    assert_eq!(fs.append("/dev/stdout", b"hi\n").unwrap(), 0);
    assert_eq!(fs.append_ino(STDOUT_INO, b"yo\n").unwrap(), 3);
    assert_eq!(
        fs.write("/dev/stdout", 0, b"X"),
        Err(FsError::InvalidArgument)
    );
    assert_eq!(fs.truncate("/dev/stdout", 0), Err(FsError::InvalidArgument));
    assert_eq!(fs.read_all("/dev/stdout").unwrap(), b"hi\nyo\n");
}

#[test]
fn running_out_of_blocks_and_inodes_is_no_space() {
    let mut fs = Fs::new(64, 16).unwrap();
    fs.create("/f").unwrap();
    let r = fs.write("/f", 0, &vec![3; 64 * BLOCK_SIZE]);
    assert_eq!(r, Err(FsError::NoSpace));
    fs.check().unwrap();
    fs.truncate("/f", 0).unwrap();
    let mut n = 0;
    loop {
        match fs.create(&format!("/n{n}")) {
            Ok(_) => n += 1,
            Err(e) => {
                assert_eq!(e, FsError::NoSpace);
                break;
            }
        }
    }
    assert!(n > 5);
    fs.check().unwrap();
}

#[test]
fn works_in_a_borrowed_region() {
    let mut region = vec![0u8; 64 * BLOCK_SIZE];
    {
        let mut fs = Fs::format_in(&mut region[..], 64, 16).unwrap();
        fs.create("/x").unwrap();
        fs.write("/x", 0, b"in place").unwrap();
    }
    let view = Fs::open(&region[..]).unwrap();
    assert_eq!(view.read_all("/x").unwrap(), b"in place");
    view.check().unwrap();
}

#[test]
fn new_rejects_bad_geometry() {
    assert_eq!(Fs::new(8, 16).unwrap_err(), FsError::InvalidArgument);
    assert_eq!(Fs::new(64, 2).unwrap_err(), FsError::InvalidArgument);
}

// ----------------------------------------------------------- reconciliation

/// Parent-side helper: forks, lets `c` change the child, `p` the parent,
/// then joins.
fn join_after(
    parent: &mut Fs,
    c: impl FnOnce(&mut Fs),
    p: impl FnOnce(&mut Fs),
) -> Result<JoinReport> {
    let (mut child, reference) = parent.fork().unwrap();
    c(&mut child);
    p(parent);
    reconcile(parent, &reference, &child, 7)
}

#[test]
fn child_creations_reach_the_parent() {
    let mut fs = small();
    let rep = join_after(
        &mut fs,
        |c| {
            c.mkdir("/d").unwrap();
            c.mkdir("/d/e").unwrap();
            c.create("/d/e/f").unwrap();
            c.write("/d/e/f", 0, &[9; 10_000]).unwrap();
            c.link("/d/e/f", "/g").unwrap();
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(rep.created, 3);
    assert_eq!(fs.read_all("/d/e/f").unwrap(), vec![9; 10_000]);
    assert_eq!(fs.lookup("/g").unwrap(), fs.lookup("/d/e/f").unwrap());
    assert_eq!(fs.stat("/g").unwrap().nlink, 2);
    assert_eq!(fs.lookup("/d/e/..").unwrap(), fs.lookup("/d").unwrap());
    fs.check().unwrap();
}

#[test]
fn child_only_changes_replace_the_parents_copy() {
    let mut fs = small();
    fs.create("/f").unwrap();
    fs.write("/f", 0, &[1; 50_000]).unwrap();
    join_after(
        &mut fs,
        |c| {
            c.write("/f", 4096, &[2; 100]).unwrap();
            c.truncate("/f", 30_000).unwrap();
        },
        |_| {},
    )
    .unwrap();
    let mut want = vec![1u8; 30_000];
    want[4096..4196].fill(2);
    assert_eq!(fs.read_all("/f").unwrap(), want);
    fs.check().unwrap();
}

#[test]
fn truncate_then_rewrite_in_the_child_leaves_holes_in_the_parent() {
    let mut fs = Fs::new(2048, 64).unwrap();
    fs.create("/f").unwrap();
    fs.write("/f", 0, &vec![5; 600 * BLOCK_SIZE]).unwrap();
    join_after(
        &mut fs,
        |c| {
            c.truncate("/f", 0).unwrap();
            c.write("/f", 20 * BLOCK_SIZE as u64, b"z").unwrap();
        },
        |_| {},
    )
    .unwrap();
    let all = fs.read_all("/f").unwrap();
    assert_eq!(all.len(), 20 * BLOCK_SIZE + 1);
    assert!(all[..20 * BLOCK_SIZE].iter().all(|&b| b == 0));
    assert_eq!(all[20 * BLOCK_SIZE], b'z');
    fs.check().unwrap();
}

#[test]
fn appends_on_both_sides_are_kept_parent_first_then_join_order() {
    let mut fs = small();
    fs.append("/dev/stdout", b"start\n").unwrap();
    fs.create("/log").unwrap();
    fs.append("/log", b"L0 ").unwrap();
    let (mut a, ra) = fs.fork().unwrap();
    let (mut b, rb) = fs.fork().unwrap();
    a.append("/dev/stdout", b"from a\n").unwrap();
    b.append("/dev/stdout", b"from b\n").unwrap();
    a.append("/log", b"A ").unwrap();
    b.append("/log", b"B ").unwrap();
    fs.append("/dev/stdout", b"parent\n").unwrap();
    fs.append("/log", b"P ").unwrap();
    // Join b first: order is the join order, not the fork order.
    reconcile(&mut fs, &rb, &b, 2).unwrap();
    reconcile(&mut fs, &ra, &a, 1).unwrap();
    assert_eq!(
        fs.read_all("/dev/stdout").unwrap(),
        b"start\nparent\nfrom b\nfrom a\n"
    );
    assert_eq!(fs.read_all("/log").unwrap(), b"L0 P B A ");
    fs.check().unwrap();
}

#[test]
fn two_sided_change_is_a_conflict_by_path_and_leaves_the_parent_alone() {
    let mut fs = small();
    fs.mkdir("/d").unwrap();
    fs.create("/d/f").unwrap();
    fs.write("/d/f", 0, b"base").unwrap();
    let (mut c, r) = fs.fork().unwrap();
    c.write("/d/f", 0, b"C").unwrap();
    c.create("/new").unwrap();
    fs.append("/d/f", b"P").unwrap();
    let before = fs.as_bytes().to_vec();
    match reconcile(&mut fs, &r, &c, 3) {
        Err(FsError::Conflict { path, child, .. }) => {
            assert_eq!(path, "/d/f");
            assert_eq!(child, 3);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        fs.as_bytes() == &before[..],
        "parent changed by a failed join"
    );
    // Appends by the child against an overwrite by the parent: conflict too.
    let (mut c, r) = fs.fork().unwrap();
    c.append("/d/f", b"more").unwrap();
    fs.write("/d/f", 1, b"x").unwrap();
    assert!(matches!(
        reconcile(&mut fs, &r, &c, 4),
        Err(FsError::Conflict { .. })
    ));
}

#[test]
fn directory_entries_merge_by_name() {
    let mut fs = small();
    fs.mkdir("/d").unwrap();
    join_after(
        &mut fs,
        |c| {
            c.create("/d/c").unwrap();
        },
        |p| {
            p.create("/d/p").unwrap();
        },
    )
    .unwrap();
    let names: Vec<String> = fs.readdir("/d").unwrap().into_iter().map(|e| e.0).collect();
    assert_eq!(names, ["p", "c"]);
    let r = join_after(
        &mut fs,
        |c| {
            c.create("/d/same").unwrap();
        },
        |p| {
            p.create("/d/same").unwrap();
        },
    );
    match r {
        Err(FsError::Conflict { path, .. }) => assert_eq!(path, "/d/same"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn deletes_and_renames_reconcile() {
    let mut fs = small();
    fs.mkdir("/d").unwrap();
    fs.create("/d/f").unwrap();
    fs.create("/g").unwrap();
    fs.create("/h").unwrap();
    fs.write("/d/f", 0, b"ff").unwrap();
    // Child: rm -r /d after moving f out; renames g; parent appends to g.
    join_after(
        &mut fs,
        |c| {
            c.rename("/d/f", "/f2").unwrap();
            c.rmdir("/d").unwrap();
            c.rename("/g", "/g2").unwrap();
            c.unlink("/h").unwrap();
        },
        |p| {
            p.append("/g", b"parent").unwrap();
        },
    )
    .unwrap();
    assert_eq!(fs.lookup("/d"), Err(FsError::NotFound));
    assert_eq!(fs.read_all("/f2").unwrap(), b"ff");
    assert_eq!(fs.read_all("/g2").unwrap(), b"parent");
    assert_eq!(fs.lookup("/h"), Err(FsError::NotFound));
    fs.check().unwrap();

    // Deleting what the other side changed is a conflict.
    let r = join_after(
        &mut fs,
        |c| c.unlink("/g2").unwrap(),
        |p| {
            p.append("/g2", b"!").unwrap();
        },
    );
    assert!(matches!(r, Err(FsError::Conflict { .. })), "{r:?}");
    let r = join_after(
        &mut fs,
        |c| {
            c.append("/g2", b"!").unwrap();
        },
        |p| p.unlink("/g2").unwrap(),
    );
    assert!(matches!(r, Err(FsError::Conflict { .. })), "{r:?}");
}

#[test]
fn recursive_delete_in_the_child_removes_the_subtree() {
    let mut fs = small();
    fs.mkdir("/d").unwrap();
    fs.mkdir("/d/e").unwrap();
    fs.create("/d/e/f").unwrap();
    fs.write("/d/e/f", 0, &[1; 9000]).unwrap();
    let free = fs.free_blocks();
    join_after(
        &mut fs,
        |c| {
            c.unlink("/d/e/f").unwrap();
            c.rmdir("/d/e").unwrap();
            c.rmdir("/d").unwrap();
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(fs.lookup("/d"), Err(FsError::NotFound));
    assert!(fs.free_blocks() > free);
    fs.check().unwrap();
    // The parent adding into a directory the child removes: conflict.
    fs.mkdir("/x").unwrap();
    let r = join_after(
        &mut fs,
        |c| c.rmdir("/x").unwrap(),
        |p| {
            p.create("/x/new").unwrap();
        },
    );
    assert!(matches!(r, Err(FsError::Conflict { .. })), "{r:?}");
}

#[test]
fn directory_moves_on_both_sides_conflict() {
    let mut fs = small();
    fs.mkdir("/a").unwrap();
    fs.mkdir("/b").unwrap();
    fs.mkdir("/c").unwrap();
    // A cycle: child puts a in b, parent puts b in a.
    let r = join_after(
        &mut fs,
        |c| c.rename("/a", "/b/a").unwrap(),
        |p| p.rename("/b", "/a/b").unwrap(),
    );
    match r {
        Err(FsError::Conflict { reason, .. }) => assert!(reason.contains("cycle"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // The same directory moved to two places.
    let mut fs = small();
    fs.mkdir("/a").unwrap();
    fs.mkdir("/b").unwrap();
    fs.mkdir("/c").unwrap();
    let r = join_after(
        &mut fs,
        |c| c.rename("/a", "/b/a").unwrap(),
        |p| p.rename("/a", "/c/a").unwrap(),
    );
    assert!(matches!(r, Err(FsError::Conflict { .. })), "{r:?}");
    // One-sided move is fine.
    let mut fs = small();
    fs.mkdir("/a").unwrap();
    fs.mkdir("/b").unwrap();
    join_after(&mut fs, |c| c.rename("/a", "/b/a").unwrap(), |_| {}).unwrap();
    assert_eq!(fs.lookup("/b/a/..").unwrap(), fs.lookup("/b").unwrap());
    fs.check().unwrap();
}

#[test]
fn grandchildren_reach_the_root_through_their_parent() {
    let mut root = small();
    let (mut mid, r1) = root.fork().unwrap();
    let (mut leaf, r2) = mid.fork().unwrap();
    leaf.append("/dev/stdout", b"leaf\n").unwrap();
    leaf.create("/leaf").unwrap();
    mid.append("/dev/stdout", b"mid\n").unwrap();
    reconcile(&mut mid, &r2, &leaf, 1).unwrap();
    root.append("/dev/stdout", b"root\n").unwrap();
    reconcile(&mut root, &r1, &mid, 1).unwrap();
    assert_eq!(root.read_all("/dev/stdout").unwrap(), b"root\nmid\nleaf\n");
    root.lookup("/leaf").unwrap();
    root.check().unwrap();
}

#[test]
fn joining_an_append_to_a_256_mib_file_visits_a_few_blocks() {
    let blocks = 65_536 + 2_048;
    let mut fs = Fs::new(blocks, 64).unwrap();
    fs.create("/big").unwrap();
    let chunk = vec![0xabu8; 1 << 20];
    for i in 0..256u64 {
        fs.write("/big", i << 20, &chunk).unwrap();
    }
    fs.append("/big", b"tail").unwrap();
    let (mut c, r) = fs.fork().unwrap();
    c.append("/big", &[1; BLOCK_SIZE]).unwrap();
    fs.reset_visits();
    r.reset_visits();
    c.reset_visits();
    let rep = reconcile(&mut fs, &r, &c, 1).unwrap();
    let visits = fs.visits() + r.visits() + c.visits();
    assert_eq!(rep.appended_bytes, BLOCK_SIZE as u64);
    assert!(visits < 64, "join visited {visits} blocks");
    std::println!("join of a 1-block append to a 256 MiB file: {visits} block visits");
    let mut tail = [0u8; 8];
    fs.read("/big", (256 << 20) + 4 - 4, &mut tail).unwrap();
    assert_eq!(&tail, b"tail\x01\x01\x01\x01");
}

// ------------------------------------------------------------------- images

/// An image of `arena` with valid checksums, so the checker sees the damage.
fn raw_image(arena: &[u8]) -> Vec<u8> {
    image::image_of(arena)
}

fn sample() -> Fs {
    let mut fs = Fs::new(256, 64).unwrap();
    fs.mkdir("/d").unwrap();
    fs.mkdir("/d/e").unwrap();
    fs.create("/d/e/f").unwrap();
    fs.write("/d/e/f", 0, &[4; 60_000]).unwrap();
    fs.link("/d/e/f", "/l").unwrap();
    fs.append("/dev/stdout", b"saved\n").unwrap();
    fs
}

fn inode_off(fs: &Fs, ino: Ino) -> usize {
    fs.geo.itable_start as usize * BLOCK_SIZE + ino as usize * INODE_SIZE
}

#[test]
fn crc32c_matches_the_standard_check_value() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c(b""), 0);
    // The 8-byte steps agree with a bitwise reference at every length.
    let data: Vec<u8> = (0..100u32).map(|i| (i * 37 + 11) as u8).collect();
    for n in 0..data.len() {
        let mut c = !0u32;
        for &b in &data[..n] {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
        }
        assert_eq!(crc32c(&data[..n]), !c, "length {n}");
    }
}

#[test]
fn image_round_trip() {
    let fs = sample();
    let img = fs.save();
    let back = load(&img).unwrap();
    assert_eq!(tree(&back), tree(&fs));
    assert_eq!(back.save(), img);
}

#[test]
fn loader_rejects_bad_headers() {
    let img = sample().save();
    is_corrupt(load(&img[..10]), "shorter than its header");
    is_corrupt(load(&img[..img.len() - 1]), "truncated");
    let mut long = img.clone();
    long.push(0);
    is_corrupt(load(&long), "trailing");
    let mut m = img.clone();
    m[0] = b'X';
    is_corrupt(load(&m), "magic");
    let mut m = img.clone();
    m[20] ^= 1;
    is_corrupt(load(&m), "header checksum");
    let fix = |m: &mut Vec<u8>| {
        let c = crc32c(&m[..60]);
        wr32(m, 60, c);
    };
    let mut m = img.clone();
    wr32(&mut m, 8, 2);
    fix(&mut m);
    is_corrupt(load(&m), "version 2");
    let mut m = img.clone();
    wr32(&mut m, 12, 512);
    fix(&mut m);
    is_corrupt(load(&m), "block size");
    let mut m = img.clone();
    wr32(&mut m, 24, 1);
    fix(&mut m);
    is_corrupt(load(&m), "flags");
    let mut m = img.clone();
    wr64(&mut m, 16, 0);
    fix(&mut m);
    is_corrupt(load(&m), "block count");
    let mut m = img.clone();
    wr64(&mut m, 16, u64::MAX);
    fix(&mut m);
    is_corrupt(load(&m), "block count");
    let mut m = img.clone();
    m[70] ^= 1;
    is_corrupt(load(&m), "table checksum");
    let mut m = img.clone();
    let last = m.len() - 1;
    m[last] ^= 1;
    is_corrupt(load(&m), "block 255 checksum");
}

#[test]
fn loader_rejects_inconsistent_content() {
    let fs = sample();
    let arena = fs.as_bytes().to_vec();
    let f = fs.lookup("/d/e/f").unwrap();
    let e = fs.lookup("/d/e").unwrap();
    let d = fs.lookup("/d").unwrap();
    let try_it = |needle: &str, edit: &dyn Fn(&mut Vec<u8>)| {
        let mut a = arena.clone();
        edit(&mut a);
        is_corrupt(load(&raw_image(&a)), needle);
    };
    try_it("superblock magic", &|a| a[0] = 0);
    try_it("superblock layout", &|a| wr32(a, 8, 9));
    try_it("superblock block or inode count", &|a| wr32(a, 16, 3));
    try_it("superblock free counts", &|a| wr32(a, 24, 1 << 30));
    try_it("dirty-log length", &|a| wr32(a, 40, 1 << 30));
    // A block pointer outside the image, and one into the metadata.
    let fo = inode_off(&fs, f);
    try_it("outside the data area", &|a| wr32(a, fo + 40, 100_000));
    try_it("outside the data area", &|a| wr32(a, fo + 40, 1));
    // Two inodes sharing a block.
    let eo = inode_off(&fs, e);
    let fb = rd32(&arena, fo + 40);
    try_it("used twice", &|a| wr32(a, eo + 40, fb));
    // Unknown kind, oversize file, bad parent.
    try_it("unknown kind", &|a| wr16(a, fo, 9));
    try_it("too large", &|a| wr64(a, fo + 8, MAX_FILE_SIZE + 1));
    try_it("bad parent", &|a| wr32(a, fo + 36, 0));
    // Link count disagrees with the names.
    try_it("link count", &|a| wr16(a, fo + 2, 1));
    // A directory cycle: /d/e's entry for f points back at /d.
    let eb = rd32(&arena, eo + 40) as usize * BLOCK_SIZE;
    try_it("cycle", &|a| wr32(a, eb, d));
    try_it("free inode", &|a| wr32(a, eb, 60));
    try_it("bad name length", &|a| wr16(a, eb + 4, 0));
    try_it("bad name", &|a| a[eb + 8] = b'/');
    // Bitmap disagreements.
    let bm = fs.geo.bitmap_start as usize * BLOCK_SIZE;
    try_it("referenced but marked free", &|a| {
        a[bm + fb as usize / 8] &= !(1 << (fb % 8))
    });
    try_it("marked used but not referenced", &|a| a[bm + 31] = 0x80);
    try_it("metadata block 0 free", &|a| a[bm] &= !1);
    let ibm = fs.geo.ibitmap_start as usize * BLOCK_SIZE;
    try_it("bitmap and inode disagree", &|a| a[ibm + 7] |= 0x80);
    // An inode nobody names.
    let root = inode_off(&fs, ROOT_INO);
    let rb = rd32(&arena, root + 40) as usize * BLOCK_SIZE;
    try_it("not reachable", &|a| {
        // Free the slot naming /d in the root: /d, /d/e unreachable.
        for s in 0..BLOCK_SIZE / 128 {
            if rd32(a, rb + s * 128) == d {
                wr32(a, rb + s * 128, 0);
            }
        }
    });
    try_it("root", &|a| wr16(a, root, 1));
}

// ------------------------------------------------------- randomized checks

#[derive(Clone, Debug, PartialEq)]
enum MEnt {
    Dir,
    File(usize),
}

/// The reference model: paths and file contents by identity.
#[derive(Clone, Default)]
struct Model {
    paths: BTreeMap<String, MEnt>,
    files: Vec<Vec<u8>>,
}

fn parent_path(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) => "/",
        Some(i) => &p[..i],
        None => "",
    }
}

impl Model {
    fn is_dir(&self, p: &str) -> bool {
        p == "/" || self.paths.get(p) == Some(&MEnt::Dir)
    }
    fn file(&self, p: &str) -> Option<usize> {
        match self.paths.get(p) {
            Some(MEnt::File(i)) => Some(*i),
            _ => None,
        }
    }
    fn children(&self, p: &str) -> Vec<String> {
        let pre = format!("{p}/");
        self.paths
            .keys()
            .filter(|k| k.starts_with(&pre))
            .cloned()
            .collect()
    }
    fn can_add(&self, p: &str) -> bool {
        self.is_dir(parent_path(p)) && !self.paths.contains_key(p)
    }
}

const MPATHS: [&str; 10] = [
    "/d0", "/d1", "/d0/e", "/f0", "/f1", "/d0/f0", "/d0/f1", "/d1/f0", "/d0/e/f0", "/d1/e",
];

fn random_op(fs: &mut Fs, m: &mut Model, rng: &mut Rng) {
    let p = *rng.pick(&MPATHS);
    let q = *rng.pick(&MPATHS);
    match rng.below(11) {
        0 | 1 => {
            let ok = m.can_add(p);
            assert_eq!(fs.create(p).is_ok(), ok, "create {p}");
            if ok {
                m.files.push(Vec::new());
                m.paths.insert(p.to_string(), MEnt::File(m.files.len() - 1));
            }
        }
        2 => {
            let ok = m.can_add(p);
            assert_eq!(fs.mkdir(p).is_ok(), ok, "mkdir {p}");
            if ok {
                m.paths.insert(p.to_string(), MEnt::Dir);
            }
        }
        3 | 4 => {
            let off = if rng.below(20) == 0 {
                // Past 522 blocks: into the double-indirect tree.
                rng.below(2_300_000)
            } else {
                rng.below(30_000)
            };
            let data = rng.some(9000);
            let id = m.file(p);
            assert_eq!(fs.write(p, off, &data).is_ok(), id.is_some(), "write {p}");
            if let Some(id) = id {
                let f = &mut m.files[id];
                let end = off as usize + data.len();
                if f.len() < end {
                    f.resize(end, 0);
                }
                f[off as usize..end].copy_from_slice(&data);
            }
        }
        5 => {
            let data = rng.some(5000);
            let id = m.file(p);
            assert_eq!(fs.append(p, &data).is_ok(), id.is_some(), "append {p}");
            if let Some(id) = id {
                m.files[id].extend_from_slice(&data);
            }
        }
        6 => {
            let n = rng.below(40_000);
            let id = m.file(p);
            assert_eq!(fs.truncate(p, n).is_ok(), id.is_some(), "truncate {p}");
            if let Some(id) = id {
                m.files[id].resize(n as usize, 0);
            }
        }
        7 => {
            let ok = m.file(p).is_some();
            assert_eq!(fs.unlink(p).is_ok(), ok, "unlink {p}");
            if ok {
                m.paths.remove(p);
            }
        }
        8 => {
            let ok = m.paths.get(p) == Some(&MEnt::Dir) && m.children(p).is_empty();
            assert_eq!(fs.rmdir(p).is_ok(), ok, "rmdir {p}");
            if ok {
                m.paths.remove(p);
            }
        }
        9 => {
            let id = m.file(p);
            let ok = id.is_some() && m.can_add(q);
            assert_eq!(fs.link(p, q).is_ok(), ok, "link {p} {q}");
            if ok {
                m.paths.insert(q.to_string(), MEnt::File(id.unwrap()));
            }
        }
        _ => {
            let src = m.paths.get(p).cloned();
            let dst = m.paths.get(q).cloned();
            let ok = match (&src, &dst) {
                (None, _) => false,
                _ if !m.is_dir(parent_path(q)) => false,
                _ if p == q => true,
                (Some(MEnt::Dir), _) if q.starts_with(&format!("{p}/")) => false,
                (Some(_), None) => true,
                (Some(MEnt::File(_)), Some(MEnt::File(_))) => true,
                (Some(MEnt::Dir), Some(MEnt::Dir)) => m.children(q).is_empty(),
                _ => false,
            };
            let r = fs.rename(p, q);
            assert_eq!(r.is_ok(), ok, "rename {p} {q}: {r:?}");
            let same_file =
                matches!((&src, &dst), (Some(MEnt::File(a)), Some(MEnt::File(b))) if a == b);
            if ok && p != q && !same_file {
                let moved: Vec<String> = m.children(p);
                let e = m.paths.remove(p).unwrap();
                m.paths.insert(q.to_string(), e);
                for k in moved {
                    let e = m.paths.remove(&k).unwrap();
                    m.paths.insert(format!("{q}{}", &k[p.len()..]), e);
                }
            }
        }
    }
}

fn model_tree(m: &Model) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut t: BTreeMap<String, Option<Vec<u8>>> = m
        .paths
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                match v {
                    MEnt::Dir => None,
                    MEnt::File(i) => Some(m.files[*i].clone()),
                },
            )
        })
        .collect();
    for k in ["/dev", "/dev/stdin", "/dev/stdout", "/dev/stderr"] {
        t.entry(k.to_string()).or_insert(None);
    }
    t
}

fn fs_tree_without_dev_content(fs: &Fs) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut t = tree(fs);
    for k in ["/dev/stdin", "/dev/stdout", "/dev/stderr"] {
        t.insert(k.to_string(), None);
    }
    t
}

#[test]
fn random_operations_match_the_model() {
    for seed in 1..=6u64 {
        let mut rng = Rng(seed);
        let mut fs = Fs::new(4096, 128).unwrap();
        let mut m = Model::default();
        for step in 0..1500 {
            random_op(&mut fs, &mut m, &mut rng);
            if step % 300 == 0 {
                fs.check().unwrap();
                assert_eq!(fs_tree_without_dev_content(&fs), model_tree(&m));
            }
        }
        let back = load(&fs.save()).unwrap();
        assert_eq!(tree(&back), tree(&fs));
        fs.check().unwrap();
        assert_eq!(
            fs_tree_without_dev_content(&fs),
            model_tree(&m),
            "seed {seed}"
        );
        // Link counts match the names.
        for (p, e) in &m.paths {
            if let MEnt::File(id) = e {
                let n = m.paths.values().filter(|v| **v == MEnt::File(*id)).count();
                assert_eq!(fs.stat(p).unwrap().nlink as usize, n, "{p}");
            }
        }
    }
}

/// One side's random work on the files it owns (`own` prefix) and appends
/// to the shared files, mirrored in `t` (path → content).
fn side_ops(
    fs: &mut Fs,
    t: &mut BTreeMap<String, Option<Vec<u8>>>,
    own: &[String],
    shared: &[String],
    tag: &str,
    rng: &mut Rng,
) {
    let mut own: Vec<String> = own.to_vec();
    for i in 0..rng.below(25) {
        match rng.below(8) {
            0 if !own.is_empty() => {
                let p = rng.pick(&own).clone();
                let off = rng.below(20_000);
                let data = rng.some(6000);
                fs.write(&p, off, &data).unwrap();
                let f = t.get_mut(&p).unwrap().as_mut().unwrap();
                let end = off as usize + data.len();
                if f.len() < end {
                    f.resize(end, 0);
                }
                f[off as usize..end].copy_from_slice(&data);
            }
            1 if !own.is_empty() => {
                let p = rng.pick(&own).clone();
                let n = rng.below(15_000);
                fs.truncate(&p, n).unwrap();
                t.get_mut(&p)
                    .unwrap()
                    .as_mut()
                    .unwrap()
                    .resize(n as usize, 0);
            }
            2 if !own.is_empty() => {
                let k = rng.below(own.len() as u64) as usize;
                let p = own.remove(k);
                fs.unlink(&p).unwrap();
                t.remove(&p);
            }
            3 if !own.is_empty() => {
                let k = rng.below(own.len() as u64) as usize;
                let p = own.remove(k);
                let q = format!("/{tag}dir/{tag}r{i}");
                if fs.lookup(&format!("/{tag}dir")).is_err() {
                    fs.mkdir(&format!("/{tag}dir")).unwrap();
                    t.insert(format!("/{tag}dir"), None);
                }
                fs.rename(&p, &q).unwrap();
                let v = t.remove(&p).unwrap();
                t.insert(q.clone(), v);
                own.push(q);
            }
            4 if !own.is_empty() => {
                let p = rng.pick(&own).clone();
                let q = format!("/{tag}l{i}");
                fs.link(&p, &q).unwrap();
                let v = t[&p].clone();
                t.insert(q, v);
                // A linked file is no longer "own" for further writes: its
                // two names would have to move together in the model.
                own.retain(|x| *x != p);
            }
            5 | 6 if !shared.is_empty() => {
                let p = rng.pick(shared).clone();
                let data = rng.some(3000);
                fs.append(&p, &data).unwrap();
                t.get_mut(&p)
                    .unwrap()
                    .as_mut()
                    .unwrap()
                    .extend_from_slice(&data);
            }
            _ => {
                let p = format!("/{tag}n{i}");
                let data = rng.some(10_000);
                fs.create(&p).unwrap();
                fs.write(&p, 0, &data).unwrap();
                t.insert(p.clone(), Some(data));
                own.push(p);
            }
        }
    }
}

/// The join rules on path → content maps: start from the parent; for every
/// path the child changed, an appended shared file gets the child's new
/// bytes after the parent's; anything else takes the child's value.
fn model_join(
    p: &BTreeMap<String, Option<Vec<u8>>>,
    r: &BTreeMap<String, Option<Vec<u8>>>,
    c: &BTreeMap<String, Option<Vec<u8>>>,
    shared: &[String],
) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = p.clone();
    let keys: std::collections::BTreeSet<&String> = r.keys().chain(c.keys()).collect();
    for k in keys {
        if r.get(k) == c.get(k) {
            continue;
        }
        if shared.contains(k) {
            let base = r[k].as_ref().unwrap().len();
            let tail = &c[k].as_ref().unwrap()[base..];
            out.get_mut(k)
                .unwrap()
                .as_mut()
                .unwrap()
                .extend_from_slice(tail);
        } else {
            match c.get(k) {
                Some(v) => {
                    out.insert(k.clone(), v.clone());
                }
                None => {
                    out.remove(k);
                }
            }
        }
    }
    out
}

#[test]
fn random_fork_join_rounds_match_the_join_model() {
    for seed in 100..112u64 {
        let mut rng = Rng(seed);
        let mut fs = Fs::new(4096, 256).unwrap();
        for round in 0..6 {
            // Files that exist now are split among parent, children, shared.
            let mut owners: BTreeMap<String, u64> = BTreeMap::new();
            for (k, v) in tree(&fs) {
                if v.is_some() && !k.starts_with("/dev/std") {
                    owners.insert(k, rng.below(4));
                }
            }
            // Multiply linked files are only shared-appended or untouched.
            let pick = |o: u64| -> Vec<String> {
                owners
                    .iter()
                    .filter(|(k, &w)| w == o && fs.stat(k).unwrap().nlink == 1)
                    .map(|(k, _)| k.clone())
                    .collect()
            };
            let p_own = pick(0);
            let a_own = pick(1);
            let b_own = pick(2);
            let mut shared = pick(3);
            shared.push("/dev/stdout".to_string());
            let (mut a, ra) = fs.fork().unwrap();
            let (mut b, rb) = fs.fork().unwrap();
            let rt = tree(&ra);
            let mut at = rt.clone();
            let mut bt = rt.clone();
            let mut pt = rt.clone();
            side_ops(
                &mut a,
                &mut at,
                &a_own,
                &shared,
                &format!("a{round}"),
                &mut rng,
            );
            side_ops(
                &mut b,
                &mut bt,
                &b_own,
                &shared,
                &format!("b{round}"),
                &mut rng,
            );
            side_ops(
                &mut fs,
                &mut pt,
                &p_own,
                &shared,
                &format!("p{round}"),
                &mut rng,
            );
            assert_eq!(tree(&a), at, "seed {seed} round {round}: child a");
            assert_eq!(tree(&fs), pt, "seed {seed} round {round}: parent");
            let want = model_join(&pt, &rt, &at, &shared);
            reconcile(&mut fs, &ra, &a, 1).unwrap();
            assert_eq!(tree(&fs), want, "seed {seed} round {round}: after a");
            let want = model_join(&want, &rt, &bt, &shared);
            reconcile(&mut fs, &rb, &b, 2).unwrap();
            assert_eq!(tree(&fs), want, "seed {seed} round {round}: after b");
            fs.check().unwrap();
        }
        // And a deliberate two-sided overwrite is always a conflict.
        // (Writing into an empty file is an append: give it content first.)
        fs.create("/both").unwrap_or(0);
        fs.write("/both", 0, b"base").unwrap();
        let (mut c, r) = fs.fork().unwrap();
        c.write("/both", 0, b"c").unwrap();
        fs.write("/both", 0, b"p").unwrap();
        let before = fs.as_bytes().to_vec();
        assert!(matches!(
            reconcile(&mut fs, &r, &c, 9),
            Err(FsError::Conflict { .. })
        ));
        assert!(fs.as_bytes() == &before[..]);
    }
}

#[test]
fn fuzz_load_never_panics() {
    let mut rng = Rng(42);
    // A small image keeps the checksums cheap in an unoptimised test build.
    let tiny = image::fuzz_seed().unwrap();
    tiny.check().unwrap();
    let good = tiny.save();
    let arena = tiny.as_bytes().to_vec();
    for i in 0..3000 {
        match i % 3 {
            0 => {
                let n = rng.below(300) as usize;
                fuzz_load(&rng.bytes(n));
            }
            1 => {
                let mut m = good.clone();
                for _ in 0..rng.below(4) + 1 {
                    let k = rng.below(m.len() as u64) as usize;
                    m[k] ^= rng.next() as u8 | 1;
                }
                let cut = if rng.below(4) == 0 {
                    rng.below(m.len() as u64) as usize
                } else {
                    m.len()
                };
                fuzz_load(&m[..cut]);
            }
            _ => {
                // Damage with valid checksums reaches the checker. Aim at
                // the superblock, bitmaps, inode table and first data blocks.
                let mut a = arena.clone();
                for _ in 0..rng.below(6) + 1 {
                    let k = rng.below(arena.len() as u64) as usize;
                    a[k] = rng.next() as u8;
                }
                fuzz_load(&raw_image(&a));
            }
        }
    }
}

#[test]
fn fuzz_reconcile_never_panics() {
    let mut rng = Rng(7);
    for _ in 0..1500 {
        let n = rng.below(200) as usize + 10;
        fuzz_reconcile(&rng.bytes(n));
    }
}

#[test]
fn scripted_joins_keep_the_parent_consistent() {
    // Without corruption, every scripted join either conflicts with the
    // parent untouched or succeeds with a consistent parent.
    let mut rng = Rng(99);
    for _ in 0..600 {
        let bytes = rng.bytes(120);
        let mut it = bytes.iter().copied();
        let mut p = Fs::new(96, 32).unwrap();
        script(&mut p, &mut it, 8);
        let (mut c, r) = p.fork().unwrap();
        script(&mut c, &mut it, 12);
        script(&mut p, &mut it, 8);
        let before = p.as_bytes().to_vec();
        match reconcile(&mut p, &r, &c, 1) {
            Ok(_) => p.check().unwrap(),
            Err(FsError::Conflict { .. }) | Err(FsError::NoSpace) => {
                assert!(p.as_bytes() == &before[..])
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn the_same_change_on_both_sides_is_not_a_conflict() {
    let mut fs = small();
    fs.create("/gone").unwrap();
    fs.mkdir("/dir").unwrap();
    join_after(
        &mut fs,
        |c| {
            c.unlink("/gone").unwrap();
            c.rmdir("/dir").unwrap();
        },
        |p| {
            p.unlink("/gone").unwrap();
            p.rmdir("/dir").unwrap();
        },
    )
    .unwrap();
    assert_eq!(fs.readdir("/").unwrap().len(), 1);
    fs.check().unwrap();
}

#[test]
fn a_join_that_does_not_fit_is_no_space_and_changes_nothing() {
    let mut fs = Fs::new(64, 32).unwrap();
    let (mut c, r) = fs.fork().unwrap();
    c.create("/big").unwrap();
    c.write("/big", 0, &vec![1; 30 * BLOCK_SIZE]).unwrap();
    fs.create("/mine").unwrap();
    fs.write("/mine", 0, &vec![2; 25 * BLOCK_SIZE]).unwrap();
    let before = fs.as_bytes().to_vec();
    assert_eq!(reconcile(&mut fs, &r, &c, 1), Err(FsError::NoSpace));
    assert!(fs.as_bytes() == &before[..]);
}

#[test]
fn a_child_view_over_borrowed_bytes_joins_like_an_owned_one() {
    let mut fs = small();
    let (mut c, r) = fs.fork().unwrap();
    c.append("/dev/stdout", b"via bytes\n").unwrap();
    let bytes = c.into_inner();
    let view = Fs::open(&bytes[..]).unwrap();
    let rview = Fs::open(r.as_bytes()).unwrap();
    reconcile(&mut fs, &rview, &view, 1).unwrap();
    assert_eq!(fs.read_all("/dev/stdout").unwrap(), b"via bytes\n");
}

#[test]
fn renaming_one_file_on_both_sides_is_a_conflict() {
    let mut fs = small();
    fs.create("/f").unwrap();
    let r = join_after(
        &mut fs,
        |c| c.rename("/f", "/c").unwrap(),
        |p| p.rename("/f", "/p").unwrap(),
    );
    match r {
        Err(FsError::Conflict { path, reason, .. }) => {
            assert_eq!(path, "/c");
            assert!(reason.contains("both sides"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Renamed to the same new name on both sides: the same change.
    let mut fs = small();
    fs.create("/f").unwrap();
    join_after(
        &mut fs,
        |c| c.rename("/f", "/g").unwrap(),
        |p| p.rename("/f", "/g").unwrap(),
    )
    .unwrap();
    assert_eq!(fs.stat("/g").unwrap().nlink, 1);
    fs.check().unwrap();
}

#[test]
fn appends_after_a_sparse_extension_still_merge() {
    // The reference's file ends in a hole that spans the double-indirect
    // tree; appends on both sides allocate indirect blocks over that hole,
    // which must not count as changes below the old end.
    let mut fs = Fs::new(512, 64).unwrap();
    fs.create("/s").unwrap();
    fs.write("/s", 0, b"head").unwrap();
    fs.truncate("/s", 600 * BLOCK_SIZE as u64 + 5).unwrap();
    let base = fs.read_all("/s").unwrap();
    let (mut c, r) = fs.fork().unwrap();
    c.append("/s", b"child").unwrap();
    fs.append("/s", b"parent").unwrap();
    reconcile(&mut fs, &r, &c, 1).unwrap();
    let mut want = base;
    want.extend_from_slice(b"parentchild");
    assert_eq!(fs.read_all("/s").unwrap(), want);
    fs.check().unwrap();
}

#[test]
fn child_rewrites_deep_in_a_large_file_reach_the_parent() {
    let mut fs = Fs::new(4096, 64).unwrap();
    fs.create("/f").unwrap();
    let mut rng = Rng(5);
    let mut want = rng.bytes(3 << 20);
    fs.write("/f", 0, &want).unwrap();
    let (mut c, r) = fs.fork().unwrap();
    for &off in &[5u64, 40_000, 2_200_000, 3_000_000, (3 << 20) - 10] {
        let d = rng.bytes(5000);
        c.write("/f", off, &d).unwrap();
        let end = off as usize + d.len();
        if want.len() < end {
            want.resize(end, 0);
        }
        want[off as usize..end].copy_from_slice(&d);
    }
    c.truncate("/f", 3_100_000).unwrap();
    want.truncate(3_100_000);
    reconcile(&mut fs, &r, &c, 1).unwrap();
    assert_eq!(fs.read_all("/f").unwrap(), want);
    assert_eq!(fs.read_all("/f").unwrap(), c.read_all("/f").unwrap());
    fs.check().unwrap();
}

/// A join over copies of only the used prefix of each arena (what the
/// runtime copies out of a child), with garbage beyond it, gives the same
/// result as over whole arenas.
#[test]
fn a_join_needs_only_the_used_prefix() {
    let mut fs = Fs::new(2048, 256).unwrap();
    assert_eq!(fs.used_prefix(), fs.metadata_blocks().max(fs.used_prefix()));
    fs.create("/a").unwrap();
    fs.write("/a", 0, &[1u8; 50_000]).unwrap();
    let (mut c, r) = fs.fork().unwrap();
    c.mkdir("/d").unwrap();
    c.create("/d/x").unwrap();
    c.write("/d/x", 0, &[7u8; 300_000]).unwrap();
    c.append("/a", b"tail").unwrap();
    let mut whole = fs.clone();
    reconcile(&mut whole, &r, &c, 1).unwrap();
    let cut = |f: &Fs| {
        let n = f.used_prefix() as usize * BLOCK_SIZE;
        let mut b = f.as_bytes().to_vec();
        for (i, x) in b[n..].iter_mut().enumerate() {
            *x = (i * 31 + 7) as u8;
        }
        b
    };
    assert!(c.used_prefix() > fs.metadata_blocks());
    assert!((c.used_prefix() as usize) < 2048 / 2);
    let (cb, rb) = (cut(&c), cut(&r));
    let c2 = Fs::open(&cb[..]).unwrap();
    let r2 = Fs::open(&rb[..]).unwrap();
    let mut part = fs.clone();
    reconcile(&mut part, &r2, &c2, 1).unwrap();
    assert_eq!(part.as_bytes(), whole.as_bytes());
}
