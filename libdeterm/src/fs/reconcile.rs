//! Reconciliation at join: merging a child's file-system changes into the
//! parent, three-way against the reference (the state the child started
//! from).
//!
//! The join never scans unchanged data: it starts from the child's dirty
//! log, compares inode generations and stamps, and walks block trees only
//! through entries stamped at or after the reference's epoch. It runs in two
//! phases: *plan* reads all three file systems and finds every conflict;
//! *apply* changes the parent only if the plan found none and the parent has
//! room for it. So a conflict leaves the parent untouched.
//!
//! The rules are in `docs/libdeterm-fs.md`.

use super::inode::{Change, Inode};
use super::{corrupt, Fs, FsError, Ino, Kind, Result, BLOCK_SIZE, ROOT_INO};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// What a join did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinReport {
    /// Inodes in the child's dirty log.
    pub dirty_inodes: u32,
    /// Files and directories the child created that now exist in the parent.
    pub created: u32,
    /// Inodes freed in the parent because the child removed their last name.
    pub removed: u32,
    /// Directory entries added or removed in the parent.
    pub entries_changed: u32,
    /// Files whose data the child replaced (parent had not changed them).
    pub replaced: u32,
    /// Files extended by the child's appended bytes.
    pub appended: u32,
    /// Bytes appended.
    pub appended_bytes: u64,
    /// Data blocks copied from the child (appends, replacements, new files).
    pub copied_blocks: u64,
}

/// An object as the plan sees it: one the reference knows (same inode
/// number in all three), or one the child created (child inode number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Old(Ino),
    New(Ino),
}

struct EntryOp {
    dir: Node,
    name: Vec<u8>,
    /// Parent slot and parent inode the name pointed at.
    remove: Option<(u64, Ino)>,
    add: Option<Node>,
}

struct NewObj {
    kind: Kind,
    links: u32,
    /// Directory of the first name (for the parent pointer).
    container: Node,
    /// Its data blocks in the child (checked while planning).
    changes: Vec<Change>,
}

enum ContentOp {
    Append {
        ino: Ino,
        from: u64,
        to: u64,
    },
    Replace {
        ino: Ino,
        size: u64,
        changes: Vec<Change>,
    },
}

#[derive(Default)]
struct Plan {
    ops: Vec<EntryOp>,
    new_objs: BTreeMap<Ino, NewObj>,
    link_delta: BTreeMap<Ino, i64>,
    moved_dirs: BTreeMap<Ino, Node>,
    /// Reference objects whose name both sides removed, and reference
    /// objects the child gave a new name: both at once is a two-sided move.
    both_removed: BTreeSet<Ino>,
    child_named: BTreeSet<Ino>,
    content: Vec<ContentOp>,
    blocks_needed: u64,
}

struct Ctx<'a, P, R, C> {
    parent: &'a Fs<P>,
    reference: &'a Fs<R>,
    child: &'a Fs<C>,
    child_id: u32,
    since: u32,
}

fn blocks_for(bytes: u64) -> u64 {
    let b = bytes.div_ceil(BLOCK_SIZE as u64);
    b + b / 511 + 3
}

impl<P: AsRef<[u8]>, R: AsRef<[u8]>, C: AsRef<[u8]>> Ctx<'_, P, R, C> {
    fn conflict(&self, path: String, reason: &'static str) -> FsError {
        FsError::Conflict {
            path,
            child: self.child_id,
            reason,
        }
    }

    /// The reference's live inode at `ino`.
    fn ref_node(&self, ino: Ino) -> Result<Option<Inode>> {
        let n = self.reference.inode(ino)?;
        Ok(n.kind.map(|_| n))
    }

    /// Is `n` (from parent or child, at `ino`) the object the reference
    /// has at `ino`?
    fn is_ref_obj(&self, ino: Ino, n: &Inode) -> Result<bool> {
        Ok(match self.ref_node(ino)? {
            Some(r) => n.kind.is_some() && n.kind == r.kind && n.gen == r.gen,
            None => false,
        })
    }

    fn classify_child(&self, ino: Ino) -> Result<Node> {
        let n = self.child.inode(ino)?;
        if n.kind.is_none() {
            return Err(corrupt(format!(
                "child directory entry names free inode {ino}"
            )));
        }
        Ok(if self.is_ref_obj(ino, &n)? {
            Node::Old(ino)
        } else {
            Node::New(ino)
        })
    }

    /// The parent's target of an entry as a node: `Some(Old)` for a
    /// reference object, `None` for an object the parent created.
    fn classify_parent(&self, ino: Ino) -> Result<Option<Node>> {
        let n = self.parent.inode(ino)?;
        Ok(if self.is_ref_obj(ino, &n)? {
            Some(Node::Old(ino))
        } else {
            None
        })
    }

    fn entry_path(&self, dir: Ino, name: &[u8]) -> String {
        let mut p = self.child.path_of(dir);
        if p.starts_with('#') {
            p = self.reference.path_of(dir);
        }
        if !p.ends_with('/') {
            p.push('/');
        }
        p.push_str(&String::from_utf8_lossy(name));
        p
    }

    /// Records the link effect of adding `target` under `dir`.
    fn plan_add(
        &self,
        plan: &mut Plan,
        work: &mut Vec<Ino>,
        dir: Node,
        target: Node,
    ) -> Result<()> {
        match target {
            Node::Old(i) => {
                plan.child_named.insert(i);
                let pn = self.parent.inode(i)?;
                if !self.is_ref_obj(i, &pn)? {
                    return Err(self.conflict(
                        self.child.path_of(i),
                        "the child linked or moved a file the parent deleted",
                    ));
                }
                *plan.link_delta.entry(i).or_insert(0) += 1;
                if pn.kind == Some(Kind::Dir) {
                    let rn = self.reference.inode(i)?;
                    if pn.parent != rn.parent {
                        return Err(
                            self.conflict(self.child.path_of(i), "directory moved on both sides")
                        );
                    }
                    if plan.moved_dirs.insert(i, dir).is_some() {
                        return Err(corrupt(format!("child directory {i} has two names")));
                    }
                }
            }
            Node::New(c) => {
                let (cn, kind) = self.child.live(c)?;
                match plan.new_objs.get_mut(&c) {
                    Some(o) => {
                        if kind == Kind::Dir {
                            return Err(corrupt(format!("child directory {c} has two names")));
                        }
                        o.links += 1;
                    }
                    None => {
                        let mut changes = Vec::new();
                        if kind != Kind::Dir {
                            let limit = cn.size.div_ceil(BLOCK_SIZE as u64);
                            self.child.changed(&cn, 0, limit, &mut changes)?;
                            changes.retain(|c| c.blk != 0);
                        }
                        plan.new_objs.insert(
                            c,
                            NewObj {
                                kind,
                                links: 1,
                                container: dir,
                                changes,
                            },
                        );
                        if kind == Kind::Dir {
                            work.push(c);
                        }
                        plan.blocks_needed += blocks_for(cn.size);
                    }
                }
            }
        }
        plan.blocks_needed += 1;
        Ok(())
    }

    /// Diffs a reference directory: the child's entries (`None` when the
    /// child deleted the directory) against the reference's and parent's.
    fn plan_dir(
        &self,
        plan: &mut Plan,
        work: &mut Vec<Ino>,
        d: Ino,
        child_has: bool,
    ) -> Result<()> {
        let rn = self.reference.dir_node(d)?;
        let r_ents: BTreeMap<Vec<u8>, Ino> = self
            .reference
            .dir_entries(d, &rn)?
            .into_iter()
            .map(|e| (e.name, e.ino))
            .collect();
        let c_ents: BTreeMap<Vec<u8>, Ino> = if child_has {
            let cn = self.child.dir_node(d)?;
            self.child
                .dir_entries(d, &cn)?
                .into_iter()
                .map(|e| (e.name, e.ino))
                .collect()
        } else {
            BTreeMap::new()
        };
        let pn = self.parent.inode(d)?;
        let parent_has = self.is_ref_obj(d, &pn)?;
        let p_ents: BTreeMap<Vec<u8>, (u64, Ino)> = if parent_has {
            self.parent
                .dir_entries(d, &pn)?
                .into_iter()
                .map(|e| (e.name, (e.slot, e.ino)))
                .collect()
        } else {
            BTreeMap::new()
        };
        if !child_has && parent_has && pn.data_stamp >= self.since {
            return Err(self.conflict(
                self.reference.path_of(d),
                "directory removed in the child, changed in the parent",
            ));
        }
        let names: BTreeSet<&Vec<u8>> = r_ents.keys().chain(c_ents.keys()).collect();
        let mut changed = false;
        for name in names {
            let r = r_ents.get(name).map(|&i| Node::Old(i));
            let c = match c_ents.get(name) {
                Some(&i) => Some(self.classify_child(i)?),
                None => None,
            };
            if r == c {
                continue;
            }
            changed = true;
            // `p` as the same kind of value as `r` and `c`; an object the
            // parent created never equals either.
            let (p, p_slot) = match p_ents.get(name) {
                Some(&(slot, i)) => (self.classify_parent(i)?.map(Some), Some((slot, i))),
                None => (Some(None), None),
            };
            if p == Some(r) {
                if let Some((_, pi)) = p_slot {
                    *plan.link_delta.entry(pi).or_insert(0) -= 1;
                }
                if let Some(t) = c {
                    self.plan_add(plan, work, Node::Old(d), t)?;
                }
                plan.ops.push(EntryOp {
                    dir: Node::Old(d),
                    name: name.clone(),
                    remove: p_slot,
                    add: c,
                });
            } else if p == Some(c) {
                // Both sides made the same change.
                if let Some(Node::Old(x)) = r {
                    plan.both_removed.insert(x);
                }
            } else {
                return Err(self.conflict(
                    self.entry_path(d, name),
                    "directory entry changed on both sides",
                ));
            }
        }
        if changed && child_has && !parent_has {
            return Err(self.conflict(
                self.child.path_of(d),
                "directory changed in the child, removed in the parent",
            ));
        }
        Ok(())
    }

    /// Adds the entries of a directory the child created.
    fn plan_new_dir(&self, plan: &mut Plan, work: &mut Vec<Ino>, n: Ino) -> Result<()> {
        let cn = self.child.dir_node(n)?;
        for e in self.child.dir_entries(n, &cn)? {
            let t = self.classify_child(e.ino)?;
            self.plan_add(plan, work, Node::New(n), t)?;
            plan.ops.push(EntryOp {
                dir: Node::New(n),
                name: e.name,
                remove: None,
                add: Some(t),
            });
        }
        Ok(())
    }

    /// Did `side` change `n` since the reference only by appending?
    fn is_append<X: AsRef<[u8]>>(&self, side: &Fs<X>, n: &Inode, r: &Inode) -> Result<bool> {
        if n.size < r.size {
            return Ok(false);
        }
        let bs = BLOCK_SIZE as u64;
        let boundary = r.size / bs;
        let mut ch = Vec::new();
        side.changed(n, self.since, boundary, &mut ch)?;
        if !ch.is_empty() {
            return Ok(false);
        }
        let within = (r.size % bs) as usize;
        if within != 0 {
            let mut a = [0u8; BLOCK_SIZE];
            let mut b = [0u8; BLOCK_SIZE];
            side.read_node(n, boundary * bs, &mut a[..within])?;
            self.reference
                .read_node(r, boundary * bs, &mut b[..within])?;
            if a[..within] != b[..within] {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn plan_file(&self, plan: &mut Plan, ino: Ino, cn: &Inode, rn: &Inode) -> Result<()> {
        let pn = self.parent.inode(ino)?;
        if !self.is_ref_obj(ino, &pn)? {
            return Err(self.conflict(
                self.child.path_of(ino),
                "file changed in the child, removed in the parent",
            ));
        }
        let c_append = self.is_append(self.child, cn, rn)?;
        let op = if pn.data_stamp >= self.since {
            if !(c_append && self.is_append(self.parent, &pn, rn)?) {
                return Err(self.conflict(
                    self.child.path_of(ino),
                    "file changed on both sides, not only by appends",
                ));
            }
            ContentOp::Append {
                ino,
                from: rn.size,
                to: cn.size,
            }
        } else if c_append {
            ContentOp::Append {
                ino,
                from: rn.size,
                to: cn.size,
            }
        } else {
            let mut changes = Vec::new();
            let limit = cn.size.div_ceil(BLOCK_SIZE as u64);
            self.child.changed(cn, self.since, limit, &mut changes)?;
            ContentOp::Replace {
                ino,
                size: cn.size,
                changes,
            }
        };
        plan.blocks_needed += match &op {
            ContentOp::Append { from, to, .. } => blocks_for(to - from),
            ContentOp::Replace { changes, .. } => {
                blocks_for(changes.iter().filter(|c| c.blk != 0).count() as u64 * 4096)
            }
        };
        plan.content.push(op);
        Ok(())
    }

    fn plan(&self) -> Result<(Plan, u32)> {
        let mut plan = Plan::default();
        let mut log = self.child.dirty_log()?;
        let dirty = log.len() as u32;
        log.sort_unstable();
        log.dedup();
        let mut work = Vec::new();
        for ino in log {
            let cn = self.child.inode(ino)?;
            let rn = match self.ref_node(ino)? {
                Some(r) => r,
                None => continue, // created by the child: reached through entries
            };
            let same = self.is_ref_obj(ino, &cn)?;
            match rn.kind {
                Some(Kind::Dir) if !same || cn.data_stamp >= self.since => {
                    self.plan_dir(&mut plan, &mut work, ino, same)?;
                }
                Some(Kind::File | Kind::Console) if same && cn.data_stamp >= self.since => {
                    self.plan_file(&mut plan, ino, &cn, &rn)?;
                }
                _ => {}
            }
        }
        let mut seen = BTreeSet::new();
        while let Some(n) = work.pop() {
            if !seen.insert(n) {
                return Err(corrupt(format!("child directory {n} reached twice")));
            }
            self.plan_new_dir(&mut plan, &mut work, n)?;
        }
        self.check_links(&plan)?;
        self.check_cycles(&plan)?;
        Ok((plan, dirty))
    }

    /// Objects the child deletes must not have been changed by the parent;
    /// an object both sides moved away from the same name must not get two
    /// new names.
    fn check_links(&self, plan: &Plan) -> Result<()> {
        for &x in plan.both_removed.intersection(&plan.child_named) {
            let pn = self.parent.inode(x)?;
            if self.is_ref_obj(x, &pn)? {
                return Err(
                    self.conflict(self.child.path_of(x), "file moved or renamed on both sides")
                );
            }
        }
        for (&i, &d) in &plan.link_delta {
            let pn = self.parent.inode(i)?;
            let after = pn.nlink as i64 + d;
            if after <= 0 && pn.kind != Some(Kind::Dir) && pn.data_stamp >= self.since {
                return Err(self.conflict(
                    self.reference.path_of(i),
                    "file removed in the child, changed in the parent",
                ));
            }
        }
        Ok(())
    }

    /// Moving directories on both sides must not make a cycle.
    fn check_cycles(&self, plan: &Plan) -> Result<()> {
        let limit = self.parent.inode_count() as usize + 2;
        for (&d, &first) in &plan.moved_dirs {
            let mut cur = first;
            let mut steps = 0;
            loop {
                if cur == Node::Old(d) || steps > limit {
                    return Err(self.conflict(
                        self.child.path_of(d),
                        "moves on both sides would make a directory cycle",
                    ));
                }
                steps += 1;
                cur = match cur {
                    Node::Old(ROOT_INO) => break,
                    Node::Old(x) => match plan.moved_dirs.get(&x) {
                        Some(&n) => n,
                        None => Node::Old(self.parent.inode(x)?.parent),
                    },
                    Node::New(x) => match plan.new_objs.get(&x) {
                        Some(o) => o.container,
                        None => return Err(corrupt(format!("child directory {x} unplaced"))),
                    },
                };
            }
        }
        Ok(())
    }
}

/// Joins a child's file-system changes into `parent`.
///
/// `reference` is the state the child started from (the snapshot taken
/// right after [`Fs::prepare_fork`]); `child` is its final state; `child_id`
/// names it in conflicts. Children joined one after another have their
/// appends kept in join order. On a [`FsError::Conflict`] (or `NoSpace`) the
/// parent is unchanged.
pub fn reconcile<P, R, C>(
    parent: &mut Fs<P>,
    reference: &Fs<R>,
    child: &Fs<C>,
    child_id: u32,
) -> Result<JoinReport>
where
    P: AsRef<[u8]> + AsMut<[u8]>,
    R: AsRef<[u8]>,
    C: AsRef<[u8]>,
{
    if parent.geo != reference.geo || child.geo != reference.geo {
        return Err(corrupt("parent, reference and child differ in geometry"));
    }
    let since = reference.sb.epoch;
    if parent.sb.epoch < since || child.sb.epoch < since {
        return Err(corrupt("the reference is newer than the parent or child"));
    }
    let ctx = Ctx {
        parent: &*parent,
        reference,
        child,
        child_id,
        since,
    };
    let (plan, dirty) = ctx.plan()?;
    if plan.blocks_needed > parent.sb.free_blocks as u64
        || plan.new_objs.len() as u64 > parent.sb.free_inodes as u64
    {
        return Err(FsError::NoSpace);
    }
    let mut rep = JoinReport {
        dirty_inodes: dirty,
        ..JoinReport::default()
    };
    apply(parent, child, plan, &mut rep)?;
    Ok(rep)
}

/// Copies the data blocks of child inode `cn` into parent inode `pn`.
fn copy_blocks<P, C>(
    parent: &mut Fs<P>,
    child: &Fs<C>,
    pn: &mut Inode,
    changes: &[Change],
    rep: &mut JoinReport,
) -> Result<()>
where
    P: AsRef<[u8]> + AsMut<[u8]>,
    C: AsRef<[u8]>,
{
    let mut buf = [0u8; BLOCK_SIZE];
    for ch in changes {
        if ch.blk == 0 {
            parent.punch(pn, ch.start, ch.count)?;
        } else {
            buf.copy_from_slice(child.blk(ch.blk)?);
            let b = parent.map_for_write(pn, ch.start)?;
            parent.blk_mut(b)?.copy_from_slice(&buf);
            rep.copied_blocks += 1;
        }
    }
    Ok(())
}

fn apply<P, C>(parent: &mut Fs<P>, child: &Fs<C>, plan: Plan, rep: &mut JoinReport) -> Result<()>
where
    P: AsRef<[u8]> + AsMut<[u8]>,
    C: AsRef<[u8]>,
{
    // 1. Objects the child created, with their data.
    let mut map: BTreeMap<Ino, Ino> = BTreeMap::new();
    for (&c, o) in &plan.new_objs {
        let p = parent.alloc_inode(o.kind, ROOT_INO)?;
        map.insert(c, p);
        let (cn, _) = child.live(c)?;
        let (mut pn, _) = parent.live(p)?;
        if o.kind != Kind::Dir {
            copy_blocks(parent, child, &mut pn, &o.changes, rep)?;
            pn.size = cn.size;
        }
        pn.nlink = o.links.min(u16::MAX as u32) as u16;
        parent.touch(p, &mut pn, true)?;
        rep.created += 1;
    }
    let resolve = |n: Node| -> Result<Ino> {
        match n {
            Node::Old(i) => Ok(i),
            Node::New(c) => map
                .get(&c)
                .copied()
                .ok_or_else(|| corrupt(format!("child inode {c} unmapped"))),
        }
    };
    // 2. Directory entries: removals first, so a replaced name is free.
    for op in &plan.ops {
        if let Some((slot, _)) = op.remove {
            parent.dir_erase(resolve(op.dir)?, slot)?;
            rep.entries_changed += 1;
        }
    }
    for op in &plan.ops {
        if let Some(t) = op.add {
            let dir = resolve(op.dir)?;
            let ti = resolve(t)?;
            parent.dir_insert(dir, &op.name, ti)?;
            rep.entries_changed += 1;
        }
    }
    for (&c, o) in &plan.new_objs {
        let p = resolve(Node::New(c))?;
        let mut pn = parent.inode(p)?;
        pn.parent = resolve(o.container)?;
        parent.put_inode(p, &pn)?;
    }
    for (&d, &to) in &plan.moved_dirs {
        let mut pn = parent.inode(d)?;
        pn.parent = resolve(to)?;
        parent.touch(d, &mut pn, false)?;
    }
    // 3. File contents.
    for op in &plan.content {
        match op {
            ContentOp::Append { ino, from, to } => {
                let (cn, _) = child.live(*ino)?;
                let (mut pn, _) = parent.live(*ino)?;
                let mut buf = [0u8; BLOCK_SIZE];
                let mut pos = *from;
                while pos < *to {
                    let n = ((*to - pos) as usize).min(BLOCK_SIZE);
                    child.read_node(&cn, pos, &mut buf[..n])?;
                    let at = pn.size;
                    parent.write_node(&mut pn, at, &buf[..n])?;
                    pos += n as u64;
                    rep.copied_blocks += 1;
                }
                rep.appended_bytes += to - from;
                rep.appended += 1;
                parent.touch(*ino, &mut pn, true)?;
            }
            ContentOp::Replace { ino, size, changes } => {
                let (mut pn, _) = parent.live(*ino)?;
                parent.truncate_blocks(&mut pn, *size)?;
                copy_blocks(parent, child, &mut pn, changes, rep)?;
                pn.size = *size;
                parent.touch(*ino, &mut pn, true)?;
                rep.replaced += 1;
            }
        }
    }
    // 4. Link counts; objects without names go.
    for (&i, &d) in &plan.link_delta {
        if d == 0 {
            continue;
        }
        let (mut pn, kind) = parent.live(i)?;
        let after = pn.nlink as i64 + d;
        if after <= 0 {
            if kind == Kind::Dir && !parent.dir_entries(i, &pn)?.is_empty() {
                return Err(corrupt(format!("removing non-empty directory {i}")));
            }
            pn.nlink = 0;
            parent.put_inode(i, &pn)?;
            parent.free_inode(i)?;
            rep.removed += 1;
        } else {
            pn.nlink = after.min(u16::MAX as i64) as u16;
            parent.touch(i, &mut pn, false)?;
        }
    }
    Ok(())
}

/// Fuzz entry point for reconciliation: `data` drives a small script of
/// operations on a parent and a forked child, then flips bytes of the
/// child's arena, then joins. Never panics, whatever `data` is.
pub fn fuzz_reconcile(data: &[u8]) {
    let mut it = data.iter().copied();
    let Ok(mut p) = Fs::new(96, 32) else { return };
    script(&mut p, &mut it, 6);
    let Ok((mut c, r)) = p.fork() else { return };
    script(&mut c, &mut it, 10);
    script(&mut p, &mut it, 6);
    let mut mem = c.into_inner();
    let flips = it.next().unwrap_or(0) % 4;
    for _ in 0..flips {
        let hi = it.next().unwrap_or(0) as usize;
        let lo = it.next().unwrap_or(0) as usize;
        let v = it.next().unwrap_or(0);
        // Aim at metadata (the first 16 blocks) most of the time.
        let pos = (hi << 8 | lo) % mem.len().min(16 * BLOCK_SIZE);
        mem[pos] ^= v;
    }
    let Ok(c) = Fs::open(&mem[..]) else { return };
    let _ = reconcile(&mut p, &r, &c, 1);
    let _ = p.check();
}

/// Runs up to `n` operations chosen by bytes of `it` on `fs`, ignoring
/// errors. Shared by the fuzz entry points and the tests.
pub(crate) fn script(fs: &mut Fs, it: &mut dyn Iterator<Item = u8>, n: usize) {
    const NAMES: [&str; 6] = ["/a", "/b", "/d", "/d/a", "/d/e", "/dev/stdout"];
    for _ in 0..n {
        let Some(op) = it.next() else { return };
        let x = it.next().unwrap_or(0);
        let y = it.next().unwrap_or(0);
        let path = NAMES[x as usize % NAMES.len()];
        let other = NAMES[y as usize % NAMES.len()];
        let data = [x; 37];
        let _ = match op % 10 {
            0 => fs.create(path).map(|_| ()),
            1 => fs.mkdir(path).map(|_| ()),
            2 => fs
                .write(path, y as u64 * 1000, &data[..(x % 37) as usize])
                .map(|_| ()),
            3 | 4 => fs.append(path, &data).map(|_| ()),
            5 => fs.truncate(path, y as u64 * 300),
            6 => fs.unlink(path),
            7 => fs.rename(path, other),
            8 => fs.link(path, other),
            _ => fs.rmdir(path),
        };
    }
}
