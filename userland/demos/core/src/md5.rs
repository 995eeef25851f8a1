//! MD5 (RFC 1321) and the brute-force search of the `md5` demo.
//!
//! The demo is a password cracker: for each target digest it tries every
//! string of `len` letters from [`ALPHABET`], in index order, until one
//! hashes to the target. The index space `[0, 26^len)` is cut into one
//! contiguous range per worker; a worker stops at the first match in its
//! range and the lowest matching index wins. Workers never look at each
//! other (a deterministic worker cannot), so both versions do the same work.

/// Letters the searched strings are made of.
pub const ALPHABET: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";
/// Longest searchable string: one MD5 block holds up to 55 message bytes.
pub const MAX_LEN: usize = 12;

/// Per-round constants: floor(|sin(i + 1)| * 2^32) (checked by a test).
const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

/// Left-rotation amounts, four per round.
const SHIFT: [[u32; 4]; 4] = [
    [7, 12, 17, 22],
    [5, 9, 14, 20],
    [4, 11, 16, 23],
    [6, 10, 15, 21],
];

const INIT: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

/// Mixes one 64-byte block into `state`.
fn compress(state: &mut [u32; 4], block: &[u8; 64]) {
    let mut m = [0u32; 16];
    for (i, w) in m.iter_mut().enumerate() {
        *w = u32::from_le_bytes([
            block[4 * i],
            block[4 * i + 1],
            block[4 * i + 2],
            block[4 * i + 3],
        ]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    for i in 0..64 {
        let round = i / 16;
        let (f, g) = match round {
            0 => ((b & c) | (!b & d), i),
            1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
            2 => (b ^ c ^ d, (3 * i + 5) % 16),
            _ => (c ^ (b | !d), (7 * i) % 16),
        };
        let sum = a.wrapping_add(f).wrapping_add(K[i]).wrapping_add(m[g]);
        a = d;
        d = c;
        c = b;
        b = b.wrapping_add(sum.rotate_left(SHIFT[round][i % 4]));
    }
    state[0] = state[0].wrapping_add(a);
    state[1] = state[1].wrapping_add(b);
    state[2] = state[2].wrapping_add(c);
    state[3] = state[3].wrapping_add(d);
}

fn digest_of(state: [u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, w) in state.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// The MD5 digest of `data`.
pub fn digest(data: &[u8]) -> [u8; 16] {
    let mut state = INIT;
    let mut chunks = data.chunks_exact(64);
    for chunk in &mut chunks {
        let mut block = [0u8; 64];
        block.copy_from_slice(chunk);
        compress(&mut state, &block);
    }
    let rest = chunks.remainder();
    let mut block = [0u8; 64];
    block[..rest.len()].copy_from_slice(rest);
    block[rest.len()] = 0x80;
    if rest.len() >= 56 {
        compress(&mut state, &block);
        block = [0u8; 64];
    }
    block[56..].copy_from_slice(&((data.len() as u64) * 8).to_le_bytes());
    compress(&mut state, &block);
    digest_of(state)
}

/// The number of candidate strings of `len` letters: 26^len.
pub fn space(len: usize) -> u64 {
    (ALPHABET.len() as u64).pow(len as u32)
}

/// Writes candidate `index` (base 26, most significant letter first) into
/// `out[..len]`.
pub fn candidate(mut index: u64, out: &mut [u8]) {
    for b in out.iter_mut().rev() {
        *b = ALPHABET[(index % 26) as usize];
        index /= 26;
    }
}

/// The target digests of a run: `count` random candidates of `len`
/// letters, drawn from `rng`; returns their indices and fills `digests`.
pub fn targets(rng: &mut crate::prng::Rng, len: usize, digests: &mut [[u8; 16]]) {
    let mut buf = [0u8; MAX_LEN];
    for d in digests.iter_mut() {
        let index = rng.below(space(len));
        candidate(index, &mut buf[..len]);
        *d = digest(&buf[..len]);
    }
}

/// The contiguous index range of worker `w` of `workers` over `[0, total)`.
pub fn range(total: u64, w: u64, workers: u64) -> (u64, u64) {
    let lo = total * w / workers;
    let hi = total * (w + 1) / workers;
    (lo, hi)
}

/// Searches `[lo, hi)` for a string of `len` letters hashing to `target`;
/// the first matching index, if any. One block per candidate, built once
/// and updated in place.
pub fn search(target: &[u8; 16], len: usize, lo: u64, hi: u64) -> Option<u64> {
    assert!(len <= MAX_LEN);
    let mut block = [0u8; 64];
    block[len] = 0x80;
    block[56..].copy_from_slice(&((len as u64) * 8).to_le_bytes());
    for index in lo..hi {
        candidate(index, &mut block[..len]);
        let mut state = INIT;
        compress(&mut state, &block);
        if digest_of(state) == *target {
            return Some(index);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    fn hex(d: [u8; 16]) -> String {
        d.iter().map(|b| std::format!("{b:02x}")).collect()
    }

    #[test]
    fn rfc1321_test_suite() {
        let cases = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(hex(digest(input.as_bytes())), want, "md5({input:?})");
        }
    }

    #[test]
    fn constants_are_the_sine_table() {
        for (i, k) in K.iter().enumerate() {
            let want = (((i + 1) as f64).sin().abs() * 4294967296.0) as u32;
            assert_eq!(*k, want, "K[{i}]");
        }
    }

    #[test]
    fn search_finds_each_target_in_exactly_one_range() {
        let mut rng = crate::prng::Rng::new(3);
        let mut digests = [[0u8; 16]; 3];
        targets(&mut rng, 3, &mut digests);
        for d in &digests {
            let hits: std::vec::Vec<u64> = (0..3)
                .filter_map(|w| {
                    let (lo, hi) = range(space(3), w, 3);
                    search(d, 3, lo, hi)
                })
                .collect();
            assert_eq!(hits.len(), 1);
            let mut s = [0u8; 3];
            candidate(hits[0], &mut s);
            assert_eq!(digest(&s), *d);
        }
    }
}
