//! The one output format of every demo, and the result checksum.
//!
//! A demo prints one line per run, `key=value` pairs separated by single
//! spaces, always starting with the same keys in the same order:
//!
//! ```text
//! demo=matmult impl=pthread size=256 cpus=2 reps=3 seed=1 hash=5d0e4f1b2c3a4d5e ok=yes
//! ```
//!
//! `hash` is FNV-1a (64-bit) over the result's bytes (sorted array, result
//! matrix, found indices) of every repetition in order: the two versions of
//! a demo print the same hash for the same arguments, and a deterministic
//! demo prints the same hash every time. `ok` says whether the result
//! passed the demo's own check. Demos may add keys after `ok`. The line
//! is a `bootproto::record` without a tag; its values are numbers and
//! words, which that format writes bare.

use core::fmt::{self, Write};

/// FNV-1a, 64-bit.
#[derive(Clone, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn bytes(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    pub fn u64s(&mut self, vs: &[u64]) {
        for &v in vs {
            self.u64(v);
        }
    }
    pub fn f64s(&mut self, vs: &[f64]) {
        for v in vs {
            self.u64(v.to_bits());
        }
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// An output line being built in a fixed buffer (no allocation).
pub struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Default for Line {
    fn default() -> Line {
        Line {
            buf: [0; 512],
            len: 0,
        }
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Line {
    /// The leading keys every demo prints.
    pub fn result(p: &crate::args::Params, implementation: &str, hash: u64, ok: bool) -> Line {
        let mut l = Line::default();
        let _ = write!(
            l,
            "demo={} impl={} size={} cpus={} reps={} seed={}",
            p.demo.name(),
            implementation,
            p.size,
            p.cpus,
            p.reps,
            p.seed
        );
        if p.fixed {
            let _ = write!(l, " fixed=yes");
        }
        let _ = write!(l, " hash={hash:016x} ok={}", if ok { "yes" } else { "no" });
        l
    }

    /// Appends ` key=value`.
    pub fn field(&mut self, key: &str, value: impl fmt::Display) -> &mut Line {
        let _ = write!(self, " {key}={value}");
        self
    }

    /// The line with its newline.
    pub fn finish(&mut self) -> &[u8] {
        let _ = self.write_str("\n");
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Params;
    use bootproto::record::value;

    #[test]
    fn fnv_reference_values() {
        let mut h = Fnv::default();
        assert_eq!(h.finish(), 0xcbf29ce484222325);
        h.bytes(b"a");
        assert_eq!(h.finish(), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn line_has_fixed_leading_keys() {
        let p = Params::parse(["matmult", "--size", "64", "--cpus", "2"].into_iter()).unwrap();
        let mut l = Line::result(&p, "det", 0xabc, true);
        l.field("merged_pages", 7);
        let text = core::str::from_utf8(l.finish()).unwrap();
        assert_eq!(
            text,
            "demo=matmult impl=det size=64 cpus=2 reps=1 seed=1 hash=0000000000000abc ok=yes merged_pages=7\n"
        );
        assert_eq!(value(text.trim_end(), "hash"), Some("0000000000000abc"));
        assert_eq!(value(text.trim_end(), "cpus"), Some("2"));
        assert_eq!(value(text, "nope"), None);
    }
}
