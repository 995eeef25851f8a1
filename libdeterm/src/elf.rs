//! Reading static x86_64 ELF executables: the loadable segments (for
//! `detrun` and [`crate::exec`]) and the symbol table (to name the address
//! of a fault or a merge conflict).
//!
//! Safe code over a byte slice: every offset is checked, a malformed file is
//! an [`ElfError`], never a panic.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::sys::PAGE;

/// A `PT_LOAD` segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    /// `PF_R | PF_W | PF_X` bits (4, 2, 1).
    pub flags: u32,
}

impl Segment {
    /// The page-aligned range the segment occupies.
    pub fn pages(&self) -> (u64, u64) {
        let lo = self.vaddr & !(PAGE - 1);
        let hi = (self.vaddr + self.memsz + PAGE - 1) & !(PAGE - 1);
        (lo, hi)
    }
}

/// What the loader needs of an executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub entry: u64,
    pub segments: Vec<Segment>,
    /// Where the program headers are in memory (for `AT_PHDR`), and how many.
    pub phdr: u64,
    pub phnum: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    /// The file is not what we load; the text says why.
    Bad(&'static str),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::Bad(why) => write!(f, "not a loadable static x86_64 ELF: {why}"),
        }
    }
}

fn bad(why: &'static str) -> ElfError {
    ElfError::Bad(why)
}

fn slice(b: &[u8], off: u64, len: u64) -> Result<&[u8], ElfError> {
    let end = off.checked_add(len).ok_or(bad("offset overflows"))?;
    if end > b.len() as u64 {
        return Err(bad("truncated"));
    }
    Ok(&b[off as usize..end as usize])
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]))
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]))
}

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;

/// Parses the header and program headers. Only fixed-address (`ET_EXEC`),
/// interpreter-less executables load: a deterministic program is static.
pub fn parse(b: &[u8]) -> Result<Image, ElfError> {
    let h = slice(b, 0, 64)?;
    if &h[..4] != b"\x7fELF" {
        return Err(bad("no ELF magic"));
    }
    if h[4] != 2 || h[5] != 1 {
        return Err(bad("not 64-bit little-endian"));
    }
    if u16_at(h, 16) != ET_EXEC {
        return Err(bad(
            "not ET_EXEC (a position-independent executable needs a fixed address)",
        ));
    }
    if u16_at(h, 18) != EM_X86_64 {
        return Err(bad("not x86_64"));
    }
    let entry = u64_at(h, 24);
    let phoff = u64_at(h, 32);
    let phentsize = u16_at(h, 54) as u64;
    let phnum = u16_at(h, 56) as u64;
    if phentsize != 56 {
        return Err(bad("program header size is not 56"));
    }
    let ph = slice(b, phoff, phentsize * phnum)?;
    let mut segments = Vec::new();
    let mut phdr = None;
    for i in 0..phnum as usize {
        let p = &ph[i * 56..(i + 1) * 56];
        let kind = u32_at(p, 0);
        match kind {
            PT_INTERP => return Err(bad("dynamically linked (has an interpreter)")),
            PT_PHDR => phdr = Some(u64_at(p, 16)),
            PT_LOAD => {
                let s = Segment {
                    flags: u32_at(p, 4),
                    offset: u64_at(p, 8),
                    vaddr: u64_at(p, 16),
                    filesz: u64_at(p, 32),
                    memsz: u64_at(p, 40),
                };
                if s.filesz > s.memsz {
                    return Err(bad("segment file size exceeds its memory size"));
                }
                slice(b, s.offset, s.filesz)?;
                if s.offset % PAGE != s.vaddr % PAGE {
                    return Err(bad(
                        "segment offset and address disagree modulo the page size",
                    ));
                }
                let end = s.vaddr.checked_add(s.memsz).ok_or(bad("segment wraps"))?;
                if s.vaddr < crate::layout::USER_LO || end > crate::layout::PRIV_BASE {
                    return Err(bad("segment outside the program area"));
                }
                segments.push(s);
            }
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(bad("no loadable segment"));
    }
    segments.sort_by_key(|s| s.vaddr);
    for w in segments.windows(2) {
        if w[0].pages().1 > w[1].pages().0 {
            return Err(bad("segments overlap"));
        }
    }
    // Without PT_PHDR, the headers are where the first segment maps them.
    let phdr = match phdr {
        Some(p) => p,
        None => segments
            .iter()
            .find(|s| s.offset <= phoff && phoff + phentsize * phnum <= s.offset + s.filesz)
            .map(|s| s.vaddr + (phoff - s.offset))
            .unwrap_or(0),
    };
    Ok(Image {
        entry,
        segments,
        phdr,
        phnum,
    })
}

/// One defined function or object symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    pub addr: u64,
    pub size: u64,
}

/// Each `SHT_SYMTAB` section of `b`: its entries (24 bytes each, the null
/// symbol first) and its string table.
fn symtabs(b: &[u8]) -> Result<Vec<(&[u8], &[u8])>, ElfError> {
    let h = slice(b, 0, 64)?;
    let shoff = u64_at(h, 40);
    let shentsize = u16_at(h, 58) as u64;
    let shnum = u16_at(h, 60) as u64;
    if shoff == 0 || shnum == 0 {
        return Ok(Vec::new());
    }
    if shentsize != 64 {
        return Err(bad("section header size is not 64"));
    }
    let sh = slice(b, shoff, shentsize * shnum)?;
    let mut out = Vec::new();
    for s in sh.chunks_exact(64) {
        if u32_at(s, 4) != 2 {
            continue; // SHT_SYMTAB only
        }
        let link = u32_at(s, 40) as usize;
        let strs = sh
            .get(link * 64..(link + 1) * 64)
            .ok_or(bad("symbol table links to no string table"))?;
        let strtab = slice(b, u64_at(strs, 24), u64_at(strs, 32))?;
        out.push((slice(b, u64_at(s, 24), u64_at(s, 32))?, strtab));
    }
    Ok(out)
}

/// The NUL-terminated name at `off` in `strtab` (empty if out of range).
fn name_at(strtab: &[u8], off: u32) -> String {
    let rest = strtab.get(off as usize..).unwrap_or(&[]);
    let len = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..len]).into_owned()
}

/// The function and object symbols of `b`'s `.symtab`, sorted by address
/// (empty if the file is stripped).
pub fn symbols(b: &[u8]) -> Result<Vec<Symbol>, ElfError> {
    let mut out = Vec::new();
    for (table, strtab) in symtabs(b)? {
        for sym in table.chunks_exact(24) {
            let kind = sym[4] & 0xf;
            let shndx = u16_at(sym, 6);
            // STT_OBJECT 1, STT_FUNC 2, STT_TLS 6 excluded; defined only.
            if !(kind == 1 || kind == 2) || shndx == 0 {
                continue;
            }
            out.push(Symbol {
                name: name_at(strtab, u32_at(sym, 0)),
                addr: u64_at(sym, 8),
                size: u64_at(sym, 16),
            });
        }
    }
    out.sort_by(|a, b| a.addr.cmp(&b.addr).then(a.name.cmp(&b.name)));
    Ok(out)
}

/// Names of the undefined symbols in `b`'s `.symtab` (what `nm -u`
/// prints): a deterministic program must have none.
pub fn undefined(b: &[u8]) -> Result<Vec<String>, ElfError> {
    let mut out = Vec::new();
    for (table, strtab) in symtabs(b)? {
        // Entry 0 is the null symbol; weak undefined symbols (binding 2)
        // resolve to 0 and are not missing.
        for sym in table.chunks_exact(24).skip(1) {
            if u16_at(sym, 6) != 0 || sym[4] >> 4 == 2 {
                continue;
            }
            let name = name_at(strtab, u32_at(sym, 0));
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    Ok(out)
}

/// The symbol covering `addr` (or the nearest one below it when sizes are
/// 0), as `name+0xoff`, demangled.
pub fn describe(symbols: &[Symbol], addr: u64) -> Option<String> {
    let i = symbols.partition_point(|s| s.addr <= addr);
    let s = symbols[..i]
        .iter()
        .rev()
        .find(|s| addr < s.addr + s.size.max(1))?;
    let mut out = demangle(&s.name);
    if addr != s.addr {
        out.push_str(&alloc::format!("+{:#x}", addr - s.addr));
    }
    Some(out)
}

/// Rust's legacy mangling (`_ZN3foo3bar17h0123456789abcdefE` →
/// `foo::bar`) and plain v0 paths (see `demangle_v0`); other names are
/// returned as they are.
pub fn demangle(name: &str) -> String {
    if let Some(plain) = demangle_v0(name) {
        return plain;
    }
    let Some(mut rest) = name.strip_prefix("_ZN") else {
        return String::from(name);
    };
    let mut parts: Vec<&str> = Vec::new();
    while !rest.starts_with('E') {
        let digits = rest.bytes().take_while(|c| c.is_ascii_digit()).count();
        let Ok(len) = rest[..digits].parse::<usize>() else {
            return String::from(name);
        };
        let Some(part) = rest.get(digits..digits + len) else {
            return String::from(name);
        };
        parts.push(part);
        rest = &rest[digits + len..];
        if rest.is_empty() {
            return String::from(name);
        }
    }
    if let Some(last) = parts.last() {
        if last.len() == 17
            && last.starts_with('h')
            && last[1..].bytes().all(|c| c.is_ascii_hexdigit())
        {
            parts.pop();
        }
    }
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str("::");
        }
        out.push_str(
            &p.replace("$LT$", "<")
                .replace("$GT$", ">")
                .replace("$u20$", " ")
                .replace("..", "::"),
        );
    }
    out
}

/// Rust's v0 mangling, for plain paths (`_RNvNtCs1a_5crate6module4func`
/// → `crate::module::func`); names with generics, impls or back references
/// are returned as they are.
fn demangle_v0(name: &str) -> Option<String> {
    let mut rest = name.strip_prefix("_R")?.as_bytes();
    let mut parts: Vec<&str> = Vec::new();
    while let Some((&c, tail)) = rest.split_first() {
        match c {
            // Nested path: a namespace letter follows.
            b'N' => rest = tail.get(1..)?,
            // Crate root: an optional `s<base62>_` disambiguator follows.
            b'C' => rest = tail,
            b's' => {
                let end = tail.iter().position(|&b| b == b'_')?;
                rest = &tail[end + 1..];
            }
            b'0'..=b'9' => {
                let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                let len: usize = core::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
                // A `_` after the length separates an identifier that
                // starts with a digit or `_`.
                let at = digits + usize::from(rest.get(digits) == Some(&b'_'));
                let ident = rest.get(at..at + len)?;
                rest = &rest[at + len..];
                parts.push(core::str::from_utf8(ident).ok()?);
            }
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("::"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A minimal ELF: header, `phs` program headers, `data` at 0x1000.
    pub(crate) fn tiny(phs: &[(u32, u32, u64, u64, u64, u64)], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 0x1000];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        b[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        b[24..32].copy_from_slice(&0x401000u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(phs.len() as u16).to_le_bytes());
        for (i, &(kind, flags, off, vaddr, filesz, memsz)) in phs.iter().enumerate() {
            let p = 64 + i * 56;
            b[p..p + 4].copy_from_slice(&kind.to_le_bytes());
            b[p + 4..p + 8].copy_from_slice(&flags.to_le_bytes());
            b[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
            b[p + 16..p + 24].copy_from_slice(&vaddr.to_le_bytes());
            b[p + 32..p + 40].copy_from_slice(&filesz.to_le_bytes());
            b[p + 40..p + 48].copy_from_slice(&memsz.to_le_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn parses_segments_and_finds_the_headers() {
        let f = tiny(
            &[
                (PT_LOAD, 5, 0, 0x400000, 0x1000 + 16, 0x1000 + 16),
                (PT_LOAD, 6, 0x1000, 0x402000 + 0x0, 16, 0x3000),
            ],
            &[7; 16],
        );
        let img = parse(&f).unwrap();
        assert_eq!(img.entry, 0x401000);
        assert_eq!(img.segments.len(), 2);
        assert_eq!(img.phdr, 0x400040);
        assert_eq!(img.segments[1].pages(), (0x402000, 0x405000));
    }

    #[test]
    fn rejects_what_it_cannot_load() {
        let ok = tiny(&[(PT_LOAD, 5, 0, 0x400000, 16, 16)], &[]);
        assert!(parse(&ok).is_ok());
        for (what, f) in [
            ("magic", {
                let mut f = ok.clone();
                f[0] = 0;
                f
            }),
            ("truncated", ok[..40].to_vec()),
            (
                "interp",
                tiny(
                    &[
                        (PT_INTERP, 4, 0, 0, 1, 1),
                        (PT_LOAD, 5, 0, 0x400000, 16, 16),
                    ],
                    &[],
                ),
            ),
            ("filesz", tiny(&[(PT_LOAD, 5, 0, 0x400000, 32, 16)], &[])),
            (
                "beyond file",
                tiny(&[(PT_LOAD, 5, 0, 0x400000, 0x9000, 0x9000)], &[]),
            ),
            (
                "congruence",
                tiny(&[(PT_LOAD, 5, 8, 0x400000, 16, 16)], &[]),
            ),
            ("low", tiny(&[(PT_LOAD, 5, 0, 0x1000, 16, 16)], &[])),
            (
                "overlap",
                tiny(
                    &[
                        (PT_LOAD, 5, 0, 0x400000, 16, 0x2000),
                        (PT_LOAD, 6, 0, 0x401000, 16, 16),
                    ],
                    &[],
                ),
            ),
            ("none", tiny(&[], &[])),
        ] {
            assert!(parse(&f).is_err(), "{what} accepted");
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x9e3779b97f4a7c15u64;
        let base = tiny(&[(PT_LOAD, 5, 0, 0x400000, 0x1000, 0x1000)], &[1; 64]);
        for _ in 0..3000 {
            let mut f = base.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % f.len() as u64) as usize;
                f[i] = (x >> 32) as u8;
            }
            let _ = parse(&f);
            let _ = symbols(&f);
        }
    }

    /// The host test binary itself: a real (dynamic) ELF with a symbol
    /// table, so it has defined functions and undefined libc ones.
    #[test]
    fn reads_the_symbols_of_a_real_executable() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let syms = symbols(&me).unwrap();
        assert!(syms
            .iter()
            .any(|s| s.name.contains("reads_the_symbols_of_a_real_executable")));
        let undef = undefined(&me).unwrap();
        assert!(undef.iter().any(|n| n.starts_with("malloc")), "{undef:?}");
        assert!(!undef.iter().any(|n| n.contains("reads_the_symbols")));
    }

    #[test]
    fn names_addresses_and_demangles() {
        let syms = vec![
            Symbol {
                name: "COUNTER".into(),
                addr: 0x1000,
                size: 8,
            },
            Symbol {
                name: "_ZN4demo5TABLE17h0123456789abcdefE".into(),
                addr: 0x2000,
                size: 64,
            },
        ];
        assert_eq!(describe(&syms, 0x1000).as_deref(), Some("COUNTER"));
        assert_eq!(describe(&syms, 0x1004).as_deref(), Some("COUNTER+0x4"));
        assert_eq!(describe(&syms, 0x1008), None);
        assert_eq!(describe(&syms, 0x2010).as_deref(), Some("demo::TABLE+0x10"));
        assert_eq!(describe(&syms, 0x10), None);
        assert_eq!(
            demangle("_ZN12foo$LT$T$GT$3bar17habcdefabcdef0123E"),
            "foo<T>::bar"
        );
        assert_eq!(demangle("main"), "main");
        assert_eq!(
            demangle("_RNvCsfLfy6EI15iL_7___rustc17rust_begin_unwind"),
            "__rustc::rust_begin_unwind"
        );
        assert_eq!(
            demangle("_RNvNtCs1a_5crate6module4func"),
            "crate::module::func"
        );
        assert_eq!(
            demangle("_RINvCs1a_4core3fooB2_E"),
            "_RINvCs1a_4core3fooB2_E"
        );
        assert_eq!(demangle("_RNvC"), "_RNvC");
        assert_eq!(demangle("_ZN3fo"), "_ZN3fo");
    }
}
