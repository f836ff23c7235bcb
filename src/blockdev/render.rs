//! A compact human table of disks, in the spirit of `lsblk`.

use super::{DiskInfo, TableKind};

/// Binary-unit size with at most one decimal, like lsblk: "512B", "20M", "931.5G".
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "K", "M", "G", "T", "P", "E"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        return format!("{bytes}B");
    }
    let s = format!("{v:.1}");
    let s = s.strip_suffix(".0").unwrap_or(&s);
    format!("{s}{}", UNITS[i])
}

/// Renders disks and their partitions as an aligned text table, one line per device.
///
/// Columns: NAME SIZE TRAN FLAGS (RO read-only, RM removable, ROT rotational) MODEL SERIAL TYPE
/// MOUNTPOINTS. For a disk, MODEL holds the model (or a loop device's backing file) and TYPE the
/// partition table or whole-disk filesystem; for a partition, MODEL holds the partition's label
/// or type name and TYPE its filesystem.
pub fn render_table(disks: &[DiskInfo]) -> String {
    let mut rows: Vec<[String; 8]> = vec![[
        "NAME".into(),
        "SIZE".into(),
        "TRAN".into(),
        "FLAGS".into(),
        "MODEL".into(),
        "SERIAL".into(),
        "TYPE".into(),
        "MOUNTPOINTS".into(),
    ]];
    for d in disks {
        let mut flags = Vec::new();
        if d.boot {
            flags.push("BOOT");
        }
        if d.read_only {
            flags.push("RO");
        }
        if d.removable {
            flags.push("RM");
        }
        if d.rotational {
            flags.push("ROT");
        }
        let model = match (&d.model, &d.loop_backing_file) {
            (Some(m), _) => m.clone(),
            (None, Some(b)) => b.display().to_string(),
            (None, None) => String::new(),
        };
        let kind = match d.table {
            TableKind::Gpt | TableKind::Mbr => d.table.to_string(),
            TableKind::None => d.fs_type.clone().unwrap_or_default(),
            TableKind::Unknown => "?".into(),
        };
        rows.push([
            d.name.clone(),
            format_size(d.size),
            d.transport.to_string(),
            flags.join(","),
            model,
            d.serial.clone().unwrap_or_default(),
            kind,
            mount_list(d.mounts.iter().map(|m| &m.mount_point)),
        ]);
        let n = d.partitions.len();
        for (i, p) in d.partitions.iter().enumerate() {
            let branch = if i + 1 == n { "└─" } else { "├─" };
            let name = p
                .name
                .clone()
                .unwrap_or_else(|| format!("({}#{})", d.name, p.number));
            let what = p
                .label
                .clone()
                .or_else(|| p.type_name.clone())
                .or_else(|| p.type_code.clone())
                .unwrap_or_default();
            let fs = if p.extended {
                "extended".to_string()
            } else {
                p.fs_type.clone().unwrap_or_default()
            };
            rows.push([
                format!("{branch}{name}"),
                format_size(p.size),
                String::new(),
                if p.read_only {
                    "RO".into()
                } else {
                    String::new()
                },
                what,
                String::new(),
                fs,
                mount_list(p.mounts.iter().map(|m| &m.mount_point)),
            ]);
        }
    }
    let mut widths = [0usize; 8];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths.iter()).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            // Sizes right-aligned, the rest left-aligned.
            let pad = w - c.chars().count();
            if i == 1 {
                let at = line.len() - c.len();
                line.insert_str(at, &" ".repeat(pad));
            } else {
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn mount_list<'a>(points: impl Iterator<Item = &'a std::path::PathBuf>) -> String {
    points
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::{PartitionInfo, Transport};
    use std::path::PathBuf;

    #[test]
    fn sizes() {
        assert_eq!(format_size(512), "512B");
        assert_eq!(format_size(20 << 20), "20M");
        assert_eq!(format_size(1_000_204_886_016), "931.5G");
    }

    #[test]
    fn table_layout() {
        let disk = DiskInfo {
            name: "sdb".into(),
            dev_path: PathBuf::from("/dev/sdb"),
            major: 8,
            minor: 16,
            model: Some("WDC WD10EZEX".into()),
            serial: Some("WD-1234".into()),
            wwn: None,
            vendor: Some("ATA".into()),
            size: 1_000_204_886_016,
            logical_sector_size: 512,
            physical_sector_size: 4096,
            transport: Transport::Sata,
            removable: false,
            rotational: true,
            read_only: false,
            loop_backing_file: None,
            table: TableKind::Gpt,
            disk_id: None,
            table_problem: None,
            fs_type: None,
            partitions: vec![PartitionInfo {
                name: Some("sdb1".into()),
                dev_path: Some(PathBuf::from("/dev/sdb1")),
                number: 1,
                start: 1 << 20,
                size: 512 << 20,
                read_only: false,
                type_code: None,
                type_name: Some("EFI System".into()),
                label: None,
                uuid: None,
                bootable: false,
                extended: false,
                logical: false,
                fs_type: Some("vfat".into()),
                mounts: Vec::new(),
                holders: Vec::new(),
            }],
            mounts: Vec::new(),
            holders: Vec::new(),
            boot: false,
        };
        let t = render_table(&[disk]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAME"));
        assert!(
            lines[1].contains("931.5G") && lines[1].contains("sata") && lines[1].contains("ROT")
        );
        assert!(lines[2].starts_with("└─sdb1") && lines[2].contains("EFI System"));
        assert!(lines[2].contains("vfat"));
    }
}
