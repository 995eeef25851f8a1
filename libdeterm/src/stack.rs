//! The initial stack of a deterministic program, built by its loader rather
//! than by the kernel: the System V x86_64 layout (`argc`, `argv`, `envp`,
//! auxiliary vector, strings) with nothing random in it. `AT_RANDOM`
//! points at 16 fixed bytes, and there is no `AT_SYSINFO_EHDR` (no vDSO).
//!
//! Pure: it returns the bytes and the initial stack pointer; copying them
//! into the child is the loader's job.

use alloc::vec::Vec;

pub const AT_NULL: u64 = 0;
pub const AT_PHDR: u64 = 3;
pub const AT_PHENT: u64 = 4;
pub const AT_PHNUM: u64 = 5;
pub const AT_PAGESZ: u64 = 6;
pub const AT_ENTRY: u64 = 9;
pub const AT_UID: u64 = 11;
pub const AT_EUID: u64 = 12;
pub const AT_GID: u64 = 13;
pub const AT_EGID: u64 = 14;
pub const AT_SECURE: u64 = 23;
pub const AT_RANDOM: u64 = 25;

/// What `AT_RANDOM` points at: the same 16 bytes in every run.
pub const FIXED_RANDOM: [u8; 16] = *b"detlinux:norand!";

/// The environment a program gets when the caller gives none.
pub const DEFAULT_ENV: &[&str] = &["PATH=/bin", "HOME=/", "LANG=C"];

/// Where the program headers are and where it starts, for the auxv.
#[derive(Debug, Clone, Copy)]
pub struct AuxInfo {
    pub phdr: u64,
    pub phnum: u64,
    pub entry: u64,
}

/// The stack image: `bytes` belong at `[sp, top)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackImage {
    pub sp: u64,
    pub bytes: Vec<u8>,
}

/// Builds the initial stack ending at `top` (16-aligned). Errors if it would
/// exceed `limit` bytes.
pub fn build<A: AsRef<[u8]>, E: AsRef<[u8]>>(
    top: u64,
    args: &[A],
    env: &[E],
    aux: AuxInfo,
    limit: usize,
) -> Result<StackImage, &'static str> {
    // Strings: arguments, environment, then the fixed "random" bytes.
    let mut strings: Vec<u8> = Vec::new();
    let arg_offs = push_strings(&mut strings, args).ok_or("an argument contains a NUL byte")?;
    let env_offs =
        push_strings(&mut strings, env).ok_or("an environment entry contains a NUL byte")?;
    let random_off = strings.len();
    strings.extend_from_slice(&FIXED_RANDOM);
    let strings_base = (top - strings.len() as u64) & !15;
    let auxv: [(u64, u64); 12] = [
        (AT_PHDR, aux.phdr),
        (AT_PHENT, 56),
        (AT_PHNUM, aux.phnum),
        (AT_PAGESZ, 4096),
        (AT_ENTRY, aux.entry),
        (AT_UID, 0),
        (AT_EUID, 0),
        (AT_GID, 0),
        (AT_EGID, 0),
        (AT_SECURE, 0),
        (AT_RANDOM, strings_base + random_off as u64),
        (AT_NULL, 0),
    ];
    let words = 1 + args.len() + 1 + env.len() + 1 + 2 * auxv.len();
    let mut sp = strings_base - 8 * words as u64;
    sp &= !15;
    let total = (top - sp) as usize;
    if total > limit {
        return Err("arguments and environment do not fit on the stack");
    }
    let mut bytes = alloc::vec![0u8; total];
    let s = (strings_base - sp) as usize;
    bytes[s..s + strings.len()].copy_from_slice(&strings);
    let mut w = 0usize;
    let mut push = |v: u64| {
        bytes[w..w + 8].copy_from_slice(&v.to_le_bytes());
        w += 8;
    };
    push(args.len() as u64);
    for o in &arg_offs {
        push(strings_base + *o as u64);
    }
    push(0);
    for o in &env_offs {
        push(strings_base + *o as u64);
    }
    push(0);
    for (k, v) in auxv {
        push(k);
        push(v);
    }
    Ok(StackImage { sp, bytes })
}

/// Appends each string NUL-terminated to `strings`; their offsets, or
/// `None` if one contains a NUL byte.
fn push_strings<S: AsRef<[u8]>>(strings: &mut Vec<u8>, list: &[S]) -> Option<Vec<usize>> {
    let mut offs = Vec::with_capacity(list.len());
    for s in list {
        if s.as_ref().contains(&0) {
            return None;
        }
        offs.push(strings.len());
        strings.extend_from_slice(s.as_ref());
        strings.push(0);
    }
    Some(offs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(img: &StackImage, addr: u64) -> u64 {
        let o = (addr - img.sp) as usize;
        u64::from_le_bytes(img.bytes[o..o + 8].try_into().unwrap())
    }

    fn cstr(img: &StackImage, addr: u64) -> &[u8] {
        let o = (addr - img.sp) as usize;
        let n = img.bytes[o..].iter().position(|&c| c == 0).unwrap();
        &img.bytes[o..o + n]
    }

    const AUX: AuxInfo = AuxInfo {
        phdr: 0x400040,
        phnum: 4,
        entry: 0x401000,
    };

    #[test]
    fn lays_out_argc_argv_envp_auxv() {
        let top = 0x7ff0_0000_0000;
        let img = build(top, &["prog", "a b", ""], &["X=1"], AUX, 1 << 20).unwrap();
        assert_eq!(img.sp % 16, 0);
        assert_eq!(img.sp + img.bytes.len() as u64, top);
        assert_eq!(word(&img, img.sp), 3);
        assert_eq!(cstr(&img, word(&img, img.sp + 8)), b"prog");
        assert_eq!(cstr(&img, word(&img, img.sp + 16)), b"a b");
        assert_eq!(cstr(&img, word(&img, img.sp + 24)), b"");
        assert_eq!(word(&img, img.sp + 32), 0);
        assert_eq!(cstr(&img, word(&img, img.sp + 40)), b"X=1");
        assert_eq!(word(&img, img.sp + 48), 0);
        let mut a = img.sp + 56;
        let mut seen = alloc::vec::Vec::new();
        loop {
            let (k, v) = (word(&img, a), word(&img, a + 8));
            seen.push(k);
            if k == AT_RANDOM {
                let o = (v - img.sp) as usize;
                assert_eq!(&img.bytes[o..o + 16], &FIXED_RANDOM);
            }
            if k == AT_PHDR {
                assert_eq!(v, 0x400040);
            }
            if k == AT_NULL {
                break;
            }
            a += 16;
        }
        assert!(seen.contains(&AT_ENTRY) && seen.contains(&AT_PAGESZ));
    }

    #[test]
    fn same_input_same_bytes_and_limits_hold() {
        let a = build(0x10000, &["x"; 50], &["E=2"; 9], AUX, 1 << 16).unwrap();
        let b = build(0x10000, &["x"; 50], &["E=2"; 9], AUX, 1 << 16).unwrap();
        assert_eq!(a, b);
        assert!(build(0x100000, &["y"; 5000], &["E"], AUX, 4096).is_err());
        assert!(build(0x100000, &["a\0b"], &["E"], AUX, 4096).is_err());
    }
}
