//! GUID partition tables: written from scratch for the disk image, read
//! back and moved for `flash` and `verify`.
//!
//! Layout (512-byte sectors): LBA 0 a protective MBR (boot code in its
//! first 440 bytes), LBA 1 the primary header, LBA 2..34 the 128 entries;
//! at the end of the disk the entries again and the backup header in the
//! last LBA. Every GUID is passed in by the caller, so the same inputs give
//! the same bytes. Header and entry checksums are CRC-32 (IEEE 802.3),
//! computed by `crc32fast`.

use anyhow::{bail, ensure, Result};

pub const SECTOR: u64 = 512;
/// Sectors taken by 128 entries of 128 bytes.
pub const ENTRY_SECTORS: u64 = 32;
const ENTRIES: usize = 128;
const ENTRY_SIZE: usize = 128;

/// `EFI System Partition`.
pub const TYPE_ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// `Linux filesystem data`.
pub const TYPE_LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
/// Attribute bit 2: legacy BIOS bootable (what syslinux's gptmbr.bin looks for).
pub const ATTR_LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub type_guid: [u8; 16],
    pub guid: [u8; 16],
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
}

impl Partition {
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }
    pub fn size(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR
    }
}

/// A parsed primary header with its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub disk_guid: [u8; 16],
    pub alternate_lba: u64,
    pub first_usable: u64,
    pub last_usable: u64,
    pub partitions: Vec<Partition>,
}

/// `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` to GPT byte order (the first
/// three fields little-endian).
pub fn guid(text: &str) -> [u8; 16] {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let b = hex::decode(hex).expect("well-formed GUID literal");
    let mut g = [0u8; 16];
    g[0..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
    g[4..6].copy_from_slice(&[b[5], b[4]]);
    g[6..8].copy_from_slice(&[b[7], b[6]]);
    g[8..16].copy_from_slice(&b[8..16]);
    g
}

/// The text form of a GUID in GPT byte order.
pub fn guid_string(g: &[u8; 16]) -> String {
    format!(
        "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{}-{}",
        g[3],
        g[2],
        g[1],
        g[0],
        g[5],
        g[4],
        g[7],
        g[6],
        hex::encode_upper(&g[8..10]),
        hex::encode_upper(&g[10..16])
    )
}

/// A GUID derived from a hash: the first 16 bytes, marked as an RFC 9562
/// version 8 (custom) UUID so it is valid but never mistaken for random.
pub fn derived_guid(hash_hex: &str) -> [u8; 16] {
    let b = hex::decode(&hash_hex[..32]).expect("hex hash");
    let mut g = [0u8; 16];
    g.copy_from_slice(&b);
    g[7] = (g[7] & 0x0f) | 0x80; // version nibble: high nibble of the 3rd field
    g[8] = (g[8] & 0x3f) | 0x80; // variant 10
    g
}

fn entries_bytes(parts: &[Partition]) -> Result<Vec<u8>> {
    ensure!(parts.len() <= ENTRIES, "too many partitions");
    let mut out = vec![0u8; ENTRIES * ENTRY_SIZE];
    for (i, p) in parts.iter().enumerate() {
        let e = &mut out[i * ENTRY_SIZE..(i + 1) * ENTRY_SIZE];
        e[0..16].copy_from_slice(&p.type_guid);
        e[16..32].copy_from_slice(&p.guid);
        e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
        e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
        let name: Vec<u16> = p.name.encode_utf16().collect();
        ensure!(name.len() <= 36, "partition name {:?} too long", p.name);
        for (j, c) in name.iter().enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&c.to_le_bytes());
        }
    }
    Ok(out)
}

fn header(t: &Table, my_lba: u64, entries_lba: u64, entries_crc: u32) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&my_lba.to_le_bytes());
    let other = if my_lba == 1 { t.alternate_lba } else { 1 };
    h[32..40].copy_from_slice(&other.to_le_bytes());
    h[40..48].copy_from_slice(&t.first_usable.to_le_bytes());
    h[48..56].copy_from_slice(&t.last_usable.to_le_bytes());
    h[56..72].copy_from_slice(&t.disk_guid);
    h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
    h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
    h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
    h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
    let crc = crc32fast::hash(&h[..92]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A protective MBR with `boot_code` (at most 440 bytes) in front.
pub fn protective_mbr(boot_code: &[u8], total_sectors: u64) -> Result<[u8; 512]> {
    ensure!(boot_code.len() <= 440, "MBR boot code over 440 bytes");
    let mut m = [0u8; 512];
    m[..boot_code.len()].copy_from_slice(boot_code);
    let e = &mut m[446..462];
    e[0] = 0x00; // not active: the UEFI specification asks for 0
    e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    e[4] = 0xEE;
    e[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    e[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = (total_sectors - 1).min(u64::from(u32::MAX)) as u32;
    e[12..16].copy_from_slice(&size.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xAA;
    Ok(m)
}

/// Every sector a GPT occupies on a disk of `total_sectors`, as (byte
/// offset, data): the MBR, primary header and entries, backup entries and
/// header.
pub fn layout(t: &Table, boot_code: &[u8], total_sectors: u64) -> Result<Vec<(u64, Vec<u8>)>> {
    let entries = entries_bytes(&t.partitions)?;
    let crc = crc32fast::hash(&entries);
    let backup_lba = total_sectors - 1;
    ensure!(
        t.alternate_lba == backup_lba,
        "backup header must be the last LBA"
    );
    let backup_entries = backup_lba - ENTRY_SECTORS;
    Ok(vec![
        (0, protective_mbr(boot_code, total_sectors)?.to_vec()),
        (SECTOR, header(t, 1, 2, crc).to_vec()),
        (2 * SECTOR, entries.clone()),
        (backup_entries * SECTOR, entries),
        (
            backup_lba * SECTOR,
            header(t, backup_lba, backup_entries, crc).to_vec(),
        ),
    ])
}

/// Parse the primary header (`sector1`, LBA 1) and its entries
/// (`entries`, from LBA 2), checking both CRCs.
pub fn parse(sector1: &[u8], entries: &[u8]) -> Result<Table> {
    ensure!(sector1.len() >= 92, "short GPT header");
    if &sector1[0..8] != b"EFI PART" {
        bail!("no GPT header at LBA 1");
    }
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let hsize = u32_at(sector1, 12) as usize;
    ensure!((92..=512).contains(&hsize), "bad GPT header size {hsize}");
    let mut h = sector1[..hsize].to_vec();
    let want = u32_at(&h, 16);
    h[16..20].fill(0);
    ensure!(crc32fast::hash(&h) == want, "GPT header CRC mismatch");
    let n = u32_at(sector1, 80) as usize;
    let esize = u32_at(sector1, 84) as usize;
    ensure!(
        n == ENTRIES && esize == ENTRY_SIZE,
        "unsupported GPT entry array ({n} x {esize})"
    );
    ensure!(entries.len() >= n * esize, "short GPT entry array");
    ensure!(
        crc32fast::hash(&entries[..n * esize]) == u32_at(sector1, 88),
        "GPT entry array CRC mismatch"
    );
    let mut disk_guid = [0u8; 16];
    disk_guid.copy_from_slice(&sector1[56..72]);
    let mut partitions = Vec::new();
    for e in entries[..n * esize].chunks(esize) {
        if e[0..16].iter().all(|&b| b == 0) {
            continue;
        }
        let mut type_guid = [0u8; 16];
        type_guid.copy_from_slice(&e[0..16]);
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&e[16..32]);
        let name: Vec<u16> = e[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&c| c != 0)
            .collect();
        partitions.push(Partition {
            name: String::from_utf16_lossy(&name),
            type_guid,
            guid,
            first_lba: u64_at(e, 32),
            last_lba: u64_at(e, 40),
            attributes: u64_at(e, 48),
        });
    }
    Ok(Table {
        disk_guid,
        alternate_lba: u64_at(sector1, 32),
        first_usable: u64_at(sector1, 40),
        last_usable: u64_at(sector1, 48),
        partitions,
    })
}

/// The table as it must be on a device of `total_sectors`: the backup at
/// the device's end and the usable area grown to reach it.
pub fn moved_to_end(t: &Table, total_sectors: u64) -> Table {
    Table {
        alternate_lba: total_sectors - 1,
        last_usable: total_sectors - 2 - ENTRY_SECTORS,
        ..t.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(total: u64) -> Table {
        Table {
            disk_guid: derived_guid(&"ab".repeat(32)),
            alternate_lba: total - 1,
            first_usable: 34,
            last_usable: total - 34,
            partitions: vec![Partition {
                name: "detlinux-esp".into(),
                type_guid: guid(TYPE_ESP),
                guid: derived_guid(&"cd".repeat(32)),
                first_lba: 2048,
                last_lba: 4095,
                attributes: ATTR_LEGACY_BIOS_BOOTABLE,
            }],
        }
    }

    #[test]
    fn guid_text_round_trips_in_mixed_endian() {
        let g = guid(TYPE_ESP);
        assert_eq!(&g[..4], &[0x28, 0x73, 0x2A, 0xC1]);
        assert_eq!(guid_string(&g), TYPE_ESP);
        let d = derived_guid(&"00".repeat(32));
        assert_eq!(guid_string(&d), "00000000-0000-8000-8000-000000000000");
    }

    #[test]
    fn written_table_parses_back_and_moves_to_the_end() {
        let total = 8192;
        let t = sample(total);
        let sectors = layout(&t, &[0x33; 440], total).unwrap();
        let mut disk = vec![0u8; (total * SECTOR) as usize];
        for (off, data) in &sectors {
            disk[*off as usize..*off as usize + data.len()].copy_from_slice(data);
        }
        assert_eq!(&disk[510..512], &[0x55, 0xAA]);
        assert_eq!(disk[450], 0xEE);
        let back = parse(&disk[512..1024], &disk[1024..1024 + 16384]).unwrap();
        assert_eq!(back, t);
        let last = ((total - 1) * SECTOR) as usize;
        let backup_hdr = &disk[last..last + 512];
        assert_eq!(&backup_hdr[..8], b"EFI PART");
        assert_eq!(
            u64::from_le_bytes(backup_hdr[24..32].try_into().unwrap()),
            total - 1
        );
        let moved = moved_to_end(&back, 20000);
        assert_eq!(moved.alternate_lba, 19999);
        assert_eq!(moved.last_usable, 19999 - 33);
        // A flipped byte in an entry is caught by the CRC.
        disk[1024 + 40] ^= 1;
        let err = parse(&disk[512..1024], &disk[1024..1024 + 16384]).unwrap_err();
        assert!(err.to_string().contains("CRC"), "{err}");
    }
}
