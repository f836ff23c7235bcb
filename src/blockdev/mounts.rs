//! Mounted filesystems from `/proc/self/mountinfo`.

use serde::Serialize;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// One mount, as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountInfo {
    /// Device number of the mounted filesystem ("8:1"); anonymous (0:N) for tmpfs, overlay, btrfs.
    pub major: u32,
    pub minor: u32,
    /// Path inside the filesystem that is mounted (`/` unless a bind mount of a subdirectory).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fs_type: String,
    /// What was mounted (`/dev/sdb1`, `tmpfs`, ...).
    pub source: String,
    /// Per-mount options (`rw,relatime`).
    pub options: String,
    /// Filesystem options (overlay's `lowerdir=` lives here).
    pub super_options: String,
    pub read_only: bool,
}

/// Reads the mount table of this process' mount namespace. Empty if /proc is not mounted.
pub fn read_mounts() -> Vec<MountInfo> {
    std::fs::read("/proc/self/mountinfo")
        .map(|b| parse_mountinfo(&String::from_utf8_lossy(&b)))
        .unwrap_or_default()
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountInfo> {
    // id parent maj:min root mount_point options [optional...] - fstype source super_options
    let mut fields = line.split(' ');
    let _id = fields.next()?;
    let _parent = fields.next()?;
    let (major, minor) = super::sysfs::parse_dev(fields.next()?)?;
    let root = unescape(fields.next()?);
    let mount_point = unescape(fields.next()?);
    let options = fields.next()?.to_string();
    // Optional fields (shared:N, master:N, ...) end with a lone "-".
    for f in fields.by_ref() {
        if f == "-" {
            break;
        }
    }
    let fs_type = fields.next()?.to_string();
    let source = String::from_utf8_lossy(&unescape_bytes(fields.next().unwrap_or(""))).into_owned();
    let super_options = fields.next().unwrap_or("").to_string();
    let read_only = options.split(',').any(|o| o == "ro");
    Some(MountInfo {
        major,
        minor,
        root,
        mount_point,
        fs_type,
        source,
        options,
        super_options,
        read_only,
    })
}

fn unescape(field: &str) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape_bytes(field)))
}

/// The kernel writes space, tab, newline and backslash in paths as 3-digit octal (`\040`).
fn unescape_bytes(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (u32::from(b[i + 1] - b'0') << 6)
                | (u32::from(b[i + 2] - b'0') << 3)
                | u32::from(b[i + 3] - b'0');
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_with_optional_fields_and_escapes() {
        let text = "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard\n\
                    90 27 7:1 / /mnt/my\\040disk\\011x ro,nosuid master:3 shared:9 - vfat /dev/loop0p1 ro\n\
                    garbage line\n\
                    91 27 0:45 / /merged rw - overlay overlay rw,lowerdir=/a:/b,upperdir=/u,workdir=/w\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!((m[0].major, m[0].minor), (254, 0));
        assert_eq!(m[0].mount_point, PathBuf::from("/"));
        assert_eq!(m[0].fs_type, "ext4");
        assert!(!m[0].read_only);
        assert_eq!(m[1].mount_point, PathBuf::from("/mnt/my disk\tx"));
        assert_eq!(m[1].source, "/dev/loop0p1");
        assert!(m[1].read_only);
        assert_eq!(
            m[2].super_options,
            "rw,lowerdir=/a:/b,upperdir=/u,workdir=/w"
        );
    }

    #[test]
    fn backslash_without_octal_is_kept() {
        assert_eq!(unescape_bytes("a\\b\\134c\\04"), b"a\\b\\c\\04".to_vec());
    }
}
