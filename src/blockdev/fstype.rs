//! Recognizing what a partition holds by the magic numbers of common formats (like `blkid`, but only
//! the type, and only from the first 68 KiB).

use std::io::{Read, Seek, SeekFrom};

/// How much of the start of a volume [`detect`] looks at (btrfs' superblock is at 64 KiB).
pub const PROBE_LEN: usize = 0x10040 + 8;

/// The filesystem (or container) type found at the start of a volume, given its first bytes.
pub fn detect(head: &[u8]) -> Option<&'static str> {
    let at = |off: usize, magic: &[u8]| head.get(off..off + magic.len()) == Some(magic);
    if at(0, b"LUKS\xba\xbe") {
        return Some("crypto_LUKS");
    }
    if at(0, b"XFSB") {
        return Some("xfs");
    }
    if at(0, b"hsqs") {
        return Some("squashfs");
    }
    if at(0x10040, b"_BHRfS_M") {
        return Some("btrfs");
    }
    if at(0x438, &[0x53, 0xef]) {
        return Some(ext_version(head));
    }
    if at(0x400, &[0x10, 0x20, 0xf5, 0xf2]) {
        return Some("f2fs");
    }
    if at(0x218, b"LVM2 001") && at(0x200, b"LABELONE") {
        return Some("LVM2_member");
    }
    if at(0x1000 - 10, b"SWAPSPACE2") || at(0x1000 - 10, b"SWAP-SPACE") {
        return Some("swap");
    }
    if at(0x8001, b"CD001") {
        return Some("iso9660");
    }
    head.get(..512)
        .and_then(|s| <&[u8; 512]>::try_from(s).ok())
        .and_then(boot_sector_fs)
}

/// Filesystems recognized from their boot sector alone (FAT, exFAT, NTFS).
pub fn boot_sector_fs(s: &[u8; 512]) -> Option<&'static str> {
    if &s[3..11] == b"NTFS    " {
        return Some("ntfs");
    }
    if &s[3..11] == b"EXFAT   " {
        return Some("exfat");
    }
    // FAT: a jump instruction, a power-of-two sector size and a FAT type label.
    let jump = s[0] == 0xeb || s[0] == 0xe9;
    let bps = u16::from_le_bytes([s[11], s[12]]);
    let fat_label = s[54..57] == *b"FAT" || s[82..87] == *b"FAT32";
    if jump && bps.is_power_of_two() && (512..=4096).contains(&bps) && fat_label {
        return Some("vfat");
    }
    None
}

/// ext2, ext3 or ext4 from the superblock feature flags.
fn ext_version(head: &[u8]) -> &'static str {
    let le32 = |off: usize| {
        head.get(off..off + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0)
    };
    let compat = le32(0x400 + 0x5c);
    let incompat = le32(0x400 + 0x60);
    // extents, 64bit, flex_bg: only ext4 sets them.
    if incompat & (0x40 | 0x80 | 0x200) != 0 {
        "ext4"
    } else if compat & 0x4 != 0 {
        "ext3" // has_journal
    } else {
        "ext2"
    }
}

/// Reads the first bytes of a volume at `offset` in `dev` and detects its type. Read errors and
/// short volumes simply yield `None`.
pub fn probe<R: Read + Seek>(dev: &mut R, offset: u64, len: u64) -> Option<&'static str> {
    let n = usize::try_from(len).unwrap_or(usize::MAX).min(PROBE_LEN);
    let mut buf = vec![0u8; n];
    dev.seek(SeekFrom::Start(offset)).ok()?;
    let mut got = 0;
    while got < n {
        match dev.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    buf.truncate(got);
    detect(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magics() {
        let mut b = vec![0u8; PROBE_LEN];
        assert_eq!(detect(&b), None);
        b[0x438] = 0x53;
        b[0x439] = 0xef;
        assert_eq!(detect(&b), Some("ext2"));
        b[0x45c] = 4;
        assert_eq!(detect(&b), Some("ext3"));
        b[0x460] = 0x40;
        assert_eq!(detect(&b), Some("ext4"));

        let mut s = vec![0u8; PROBE_LEN];
        s[0xff6..0x1000].copy_from_slice(b"SWAPSPACE2");
        assert_eq!(detect(&s), Some("swap"));

        let mut n = vec![0u8; 512];
        n[3..11].copy_from_slice(b"NTFS    ");
        assert_eq!(detect(&n), Some("ntfs"));
        n[3..11].copy_from_slice(b"EXFAT   ");
        assert_eq!(detect(&n), Some("exfat"));
        // Short buffers never panic.
        assert_eq!(detect(&n[..100]), None);
    }
}
