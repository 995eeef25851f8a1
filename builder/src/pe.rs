//! Section tables of PE images (the systemd stub, the UKI), read with
//! `object`: `disk` places the UKI's added sections after the stub's, and
//! `verify` names the section a differing byte falls in.

use anyhow::{Context, Result};
use object::read::pe::PeFile64;
use object::{Object, ObjectSection};

/// One section of a PE image.
pub struct Section {
    pub name: String,
    /// Its address in memory, the image base included (what objcopy's
    /// `--change-section-vma` takes).
    pub vma: u64,
    /// Its size in memory (the header's virtual size).
    pub size: u64,
    /// Where its bytes are in the file: offset and length (0, 0 for
    /// uninitialised data).
    pub file: (u64, u64),
}

impl Section {
    /// The first address after the section in memory.
    pub fn end(&self) -> u64 {
        self.vma + self.size
    }
}

/// The section table of a PE32+ image, in header order.
pub fn sections(image: &[u8]) -> Result<Vec<Section>> {
    let pe = PeFile64::parse(image).context("not a PE32+ image")?;
    pe.sections()
        .map(|s| {
            Ok(Section {
                name: s.name().context("PE section name")?.to_string(),
                vma: s.address(),
                size: s.size(),
                file: s.file_range().unwrap_or((0, 0)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stub_has_sections_after_its_headers() {
        let Ok(stub) = std::fs::read(crate::disk::STUB) else {
            return; // systemd-boot-efi not installed: nothing to read
        };
        let s = sections(&stub).unwrap();
        let text = s.iter().find(|s| s.name == ".text").expect(".text");
        assert!(text.vma > 0 && text.size > 0 && text.file.0 > 0);
        assert!(s.iter().all(|x| x.end() >= x.vma));
    }

    #[test]
    fn other_bytes_are_an_error_not_a_panic() {
        assert!(sections(b"MZ not really").is_err());
        assert!(sections(&[]).is_err());
    }
}
