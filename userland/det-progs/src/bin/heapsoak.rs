//! `heapsoak MODE CYCLES [WARMUP [SEED]]`: fork and join for ever, and
//! check that the heap stays flat.
//!
//! Each cycle forks a tree of 1 to 3 levels with MODE (`all`: the four in
//! turn, each at depths 1, 2 and 3, so every 12 cycles): `fork` (one child per level, a `'static` closure that owns
//! a block the parent gave it), `scope` (two children per level borrowing
//! a slot each), `parallel_for` (two children per level) or `divide` (one
//! child per level, the other half in the process itself). Every process
//! allocates and frees 1 to 8 blocks of random sizes from 16 bytes to
//! 1 MiB (a SplitMix64 stream seeded from SEED and the cycle), checks their
//! first and last bytes before freeing them, and about half of them leave
//! one block to their parent, which checks and frees it after the join.
//! Children also free blocks their parent allocated before the fork.
//!
//! After each cycle, once every kept block is freed, the heap this root
//! holds must be what it held after cycle WARMUP (default 1,000), to the
//! byte; and its high-water mark (the most heap it and its children held
//! at once, `determ::heap_stats().peak_held`) must not grow by more than
//! [`SLACK`] after WARMUP. A leak of even a page per cycle breaks the
//! first check at once and the second after SLACK / 4 KiB cycles.
//!
//! Output: one `heapsoak:` line with the figures, then `heapsoak: ok` (exit
//! 0) or `heapsoak: FAILED ...` (exit 1).

#![no_std]
#![no_main]

extern crate alloc;

use alloc::alloc::{alloc, dealloc, Layout};
use alloc::vec::Vec;
use core::ptr::addr_of_mut;

use demos_core::prng::{rep_seed, Rng};
use determ::{divide, fork, heap_stats, parallel_for, println, scope, Error};

determ::main!(run);

/// How much the high-water mark may grow after the warm-up: two of the
/// largest blocks. A process holds at most [`LIVE`] blocks of at most
/// 1 MiB, so a rare cycle whose tree peaks above every earlier one moves
/// the mark by less than this; a leak of a page per cycle crosses it
/// after 512 cycles.
const SLACK: u64 = 2 << 20;
/// Most blocks a process holds at once.
const LIVE: usize = 4;
/// Slots of [`KEPT`]: a binary tree of 3 levels below the root.
const SLOTS: usize = 15;

/// A block a child leaves its parent: address, length, tag (0: none).
/// Node `n`'s children are `2n+1` and `2n+2`; each writes only its own
/// slot, which the join merges.
static mut KEPT: [(usize, usize, u8); SLOTS] = [(0, 0, 0); SLOTS];

/// The stream for child `k` of a process whose stream is `rng`.
fn child_rng(rng: &mut Rng, k: u64) -> Rng {
    Rng::new(rep_seed(rng.next_u64(), k))
}

/// A heap block whose first and last bytes carry a tag.
struct Block {
    ptr: *mut u8,
    len: usize,
    tag: u8,
}

impl Block {
    /// 16 bytes to 1 MiB, about evenly over the powers of two.
    fn random(rng: &mut Rng) -> Block {
        let hi = 16u64 << rng.below(17);
        let lo = (hi / 2).max(16);
        let len = (lo + rng.below(hi - lo + 1)) as usize;
        let tag = (rng.below(255) + 1) as u8;
        let layout = Layout::from_size_align(len, 8).expect("layout");
        // SAFETY: `len` is at least 16.
        let ptr = unsafe { alloc(layout) };
        if ptr.is_null() {
            alloc::alloc::handle_alloc_error(layout);
        }
        // SAFETY: `ptr` is a fresh block of `len` bytes; only its ends are
        // written, so the test does not pay for touching every page.
        unsafe {
            *ptr = tag;
            *ptr.add(len - 1) = tag;
        }
        Block { ptr, len, tag }
    }

    fn intact(&self) -> bool {
        // SAFETY: a live block of `len` bytes whose ends were written.
        unsafe { *self.ptr == self.tag && *self.ptr.add(self.len - 1) == self.tag }
    }

    /// Checks and frees the block.
    fn free(self) {
        assert!(
            self.intact(),
            "block at {:#x} was overwritten",
            self.ptr as usize
        );
        let layout = Layout::from_size_align(self.len, 8).expect("layout");
        // SAFETY: allocated by `random` with this layout, freed once.
        unsafe { dealloc(self.ptr, layout) };
    }

    /// Leaves the block in slot `n` for the parent.
    fn keep(self, n: usize) {
        // SAFETY: one thread; node `n` is the only writer of its slot.
        unsafe { (*addr_of_mut!(KEPT))[n] = (self.ptr as usize, self.len, self.tag) };
    }

    /// The block a child left in slot `n`, if any (the slot is emptied).
    fn kept(n: usize) -> Option<Block> {
        // SAFETY: as `keep`; the child that wrote the slot has been joined.
        let (ptr, len, tag) = unsafe { core::mem::take(&mut (*addr_of_mut!(KEPT))[n]) };
        (tag != 0).then_some(Block {
            ptr: ptr as *mut u8,
            len,
            tag,
        })
    }
}

/// A process's own allocations: 1 to 8 operations; leaves one block to
/// the parent about half the time (not the root: `n` = 0).
fn work(rng: &mut Rng, n: usize) {
    let mut live: Vec<Block> = Vec::with_capacity(LIVE);
    for _ in 0..1 + rng.below(8) {
        if live.len() < LIVE && (live.is_empty() || rng.below(2) == 0) {
            live.push(Block::random(rng));
        } else {
            let i = rng.below(live.len() as u64) as usize;
            live.swap_remove(i).free();
        }
    }
    if n != 0 && !live.is_empty() && rng.below(2) == 0 {
        live.pop().expect("a block").keep(n);
    }
    live.into_iter().for_each(Block::free);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Fork,
    Scope,
    ParallelFor,
    Divide,
}

/// Node `n` of the tree, `levels` more levels below it.
fn node(mode: Mode, mut rng: Rng, n: usize, levels: u32) -> Result<(), Error> {
    work(&mut rng, n);
    if levels == 0 {
        return Ok(());
    }
    let (a, b) = (2 * n + 1, 2 * n + 2);
    let child = move |r: Rng, k: usize| subtree(mode, r, k, levels - 1);
    match mode {
        Mode::Fork => {
            // The child owns (and frees) a block this process allocated.
            let gift = Block::random(&mut rng);
            let r = child_rng(&mut rng, 0);
            let c = fork(move || {
                gift.free();
                child(r, a)
            })?;
            c.join()?;
        }
        Mode::Scope => {
            // Each child replaces its gift: it frees this process's block
            // and leaves one of its own, which this process frees.
            let mut gifts = [Block::random(&mut rng), Block::random(&mut rng)];
            let (r0, r1) = (child_rng(&mut rng, 0), child_rng(&mut rng, 1));
            scope(|s| -> Result<(), Error> {
                let [g0, g1] = &mut gifts;
                s.fork(move || {
                    let mut r = r0;
                    core::mem::replace(g0, Block::random(&mut r)).free();
                    child(r, a)
                })?;
                s.fork(move || {
                    let mut r = r1;
                    core::mem::replace(g1, Block::random(&mut r)).free();
                    child(r, b)
                })?;
                Ok(())
            })??;
            gifts.into_iter().for_each(Block::free);
        }
        Mode::ParallelFor => {
            let rs = [child_rng(&mut rng, 0), child_rng(&mut rng, 1)];
            parallel_for(2, |i| {
                child(rs[i].clone(), [a, b][i]);
            })?;
        }
        Mode::Divide => {
            let r = child_rng(&mut rng, 0);
            let mut mine = child_rng(&mut rng, 1);
            let ((), ()) = divide(
                || {
                    child(r, a);
                },
                || work(&mut mine, 0),
            )?;
        }
    }
    for k in [a, b] {
        if let Some(block) = Block::kept(k) {
            block.free();
        }
    }
    Ok(())
}

/// A child's whole life: its node, a panic (reported by the join) on an
/// error below it.
fn subtree(mode: Mode, rng: Rng, n: usize, levels: u32) -> i32 {
    if let Err(e) = node(mode, rng, n, levels) {
        panic!("{e}");
    }
    0
}

fn arg(i: usize) -> Option<&'static str> {
    determ::args().nth(i)
}

fn number(i: usize, default: u64) -> u64 {
    match arg(i) {
        None => default,
        Some(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("argument {i}: {s:?} is not a number")),
    }
}

fn run() -> i32 {
    const ALL: [Mode; 4] = [Mode::Fork, Mode::Scope, Mode::ParallelFor, Mode::Divide];
    let modes: &[Mode] = match arg(1) {
        Some("all") => &ALL,
        Some("fork") => &ALL[0..1],
        Some("scope") => &ALL[1..2],
        Some("parallel_for") => &ALL[2..3],
        Some("divide") => &ALL[3..4],
        _ => {
            println!("usage: heapsoak all|fork|scope|parallel_for|divide CYCLES [WARMUP [SEED]]");
            return 2;
        }
    };
    let cycles = number(2, 1000);
    let warmup = number(3, 1000).min(cycles);
    let seed = number(4, 18);
    let (mut base, mut mark) = (0, 0);
    let mut failure = None;
    for c in 1..=cycles {
        let mut rng = Rng::new(rep_seed(seed, c));
        // Every mode at every depth once in 12 cycles.
        let mode = modes[c as usize % modes.len()];
        let levels = 1 + (c / modes.len() as u64 % 3) as u32;
        if let Err(e) = node(mode, child_rng(&mut rng, c), 0, levels) {
            println!("heapsoak: FAILED: cycle {c}: {e}");
            return 1;
        }
        let s = heap_stats();
        if c == warmup {
            (base, mark) = (s.held, s.peak_held);
        } else if c > warmup && failure.is_none() {
            if s.held != base {
                failure = Some((c, "held heap after the frees changed", s.held, base));
            } else if s.peak_held > mark + SLACK {
                failure = Some((c, "high-water mark grew", s.peak_held, mark + SLACK));
            }
        }
    }
    let s = heap_stats();
    println!(
        "heapsoak: cycles={cycles} warmup={warmup} heap_size={} held_at_warmup={base} held={} peak_at_warmup={mark} peak_held={} bound={} peak_live={} ratio={}.{:02} lost={}",
        s.size,
        s.held,
        s.peak_held,
        mark + SLACK,
        s.peak_live,
        s.peak_held / s.peak_live.max(1),
        s.peak_held * 100 / s.peak_live.max(1) % 100,
        s.lost,
    );
    match failure {
        None => {
            println!("heapsoak: ok");
            0
        }
        Some((c, what, got, want)) => {
            println!("heapsoak: FAILED: cycle {c}: {what}: {got} bytes, expected at most {want}");
            1
        }
    }
}
