//! `salvor export` into qcow2, VHD and VMDK: `qemu-img check` passes, `qemu-img compare` finds
//! the export equal to the raw disk, and zero areas stay sparse.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

const MIB: usize = 1 << 20;

/// 22 MiB + 4 KiB: data in 4 MiB chunks 0, 2 and 5 and a lone 4 KiB block in chunk 3.
fn test_disk(path: &Path) -> Vec<u8> {
    let size = 22 * MIB + 4096;
    let mut d = vec![0u8; size];
    for (k, seed) in [(0usize, 1u64), (2, 2), (5, 3)] {
        let s = k * 4 * MIB;
        let e = (s + 4 * MIB).min(size);
        d[s..e].copy_from_slice(&pattern(seed, e - s));
    }
    d[13 * MIB..13 * MIB + 4096].copy_from_slice(&pattern(4, 4096));
    std::fs::write(path, &d).unwrap();
    d
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn qcow2_vhd_vhdx_vmdk_check_and_compare() {
    require_tool("qemu-img", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    test_disk(&raw);
    let img = dir.path().join("disk.img.zst");
    ok(salvor().arg("image").arg(&raw).arg(&img));
    for (ext, fmt) in [
        ("qcow2", "qcow2"),
        ("vhd", "vpc"),
        ("vhdx", "vhdx"),
        ("vmdk", "vmdk"),
    ] {
        for (input, tag) in [(&img, "img"), (&raw, "raw")] {
            let out = dir.path().join(format!("{tag}.{ext}"));
            ok(salvor().arg("export").arg(input).arg(&out));
            if fmt != "vpc" {
                ok(Command::new("qemu-img")
                    .args(["check", "-f", fmt])
                    .arg(&out));
            }
            let cmp = ok(Command::new("qemu-img")
                .args(["compare", "-f", "raw", "-F", fmt])
                .arg(&raw)
                .arg(&out));
            assert!(cmp.contains("identical"), "{ext} from {tag}: {cmp}");
            // Sparse: about 10 MiB of data plus metadata (VHD, VHDX: 2 MiB blocks, so the lone
            // 4 KiB costs a block; VHDX: 4 MiB of headers, log, metadata and BAT), not 22 MiB.
            let len = std::fs::metadata(&out).unwrap().len();
            let bound = match fmt {
                "vpc" => 15,
                "vhdx" => 19,
                _ => 13,
            } * MIB as u64;
            assert!(len < bound, "{ext} from {tag} is {len} bytes");
            let info = ok(Command::new("qemu-img").args(["info", "-f", fmt]).arg(&out));
            assert!(
                info.contains(&format!("{} bytes", 22 * MIB + 4096)),
                "{info}"
            );
        }
        // What qemu-img writes in the format (its own block sizes and layout) restores too.
        let foreign = dir.path().join(format!("qemu.{ext}"));
        ok(Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", fmt])
            .arg(&raw)
            .arg(&foreign));
        let back = dir.path().join(format!("back-{ext}.raw"));
        ok(salvor()
            .arg("restore")
            .arg("--yes")
            .arg(&foreign)
            .arg(&back));
        assert!(
            std::fs::read(&back).unwrap()[..22 * MIB + 4096] == std::fs::read(&raw).unwrap()[..],
            "{ext} written by qemu-img, restored by salvor, differs"
        );
        // An existing output is refused.
        let again = run(salvor()
            .arg("export")
            .arg(&img)
            .arg(dir.path().join(format!("img.{ext}"))));
        assert!(!again.status.success());
    }
}

fn hash_of(tool: &str, path: &Path) -> String {
    ok(Command::new(tool).arg(path))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn e01_with_case_metadata_hashes_and_acquisition_errors() {
    require_tool("ewfverify", "ewf-tools");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    test_disk(&raw);
    let img = dir.path().join("disk.img.zst");
    ok(salvor().arg("image").arg(&raw).arg(&img));
    let e01 = dir.path().join("disk.E01");
    ok(salvor()
        .arg("export")
        .arg(&img)
        .arg(&e01)
        .args(["--case-number", "2026-15", "--examiner", "A. Examiner"])
        .args(["--evidence-number", "EV-1", "--description", "test disk"]));
    let (md5, sha1) = (hash_of("md5sum", &raw), hash_of("sha1sum", &raw));
    let v = ok(Command::new("ewfverify").arg(&e01));
    assert!(v.contains("ewfverify: SUCCESS"), "{v}");
    assert!(
        v.contains(&format!("MD5 hash stored in file:\t\t{md5}")),
        "{v}"
    );
    assert!(v.contains(&sha1), "{v}");
    let info = ok(Command::new("ewfinfo").arg(&e01));
    for want in ["2026-15", "A. Examiner", "EV-1", "test disk", &md5, &sha1] {
        assert!(info.contains(want), "ewfinfo lacks {want}: {info}");
    }
    assert!(!info.contains("Read errors"), "{info}");
    // Zero chunks are stored compressed: the E01 is about the size of the data (~10 MiB).
    let len = std::fs::metadata(&e01).unwrap().len();
    assert!(len < 12 * MIB as u64, "E01 of {len} bytes");
    // ewfexport gets the disk back byte for byte.
    let back = dir.path().join("back");
    ok(Command::new("ewfexport")
        .args(["-q", "-u", "-f", "raw", "-t"])
        .arg(&back)
        .arg(&e01));
    assert!(
        std::fs::read(dir.path().join("back.raw")).unwrap() == std::fs::read(&raw).unwrap(),
        "ewfexport of the E01 differs from the disk"
    );

    // A rescued copy with its mapfile: unrescued areas are acquisition errors.
    let map = dir.path().join("disk.map");
    write_test_map(&map, (22 * MIB + 4096) as u64, &[(65536, 65536 + 4096)]);
    let e01 = dir.path().join("rescued.E01");
    ok(salvor()
        .arg("export")
        .arg(&raw)
        .arg(&e01)
        .arg("--mapfile")
        .arg(&map));
    let v = ok(Command::new("ewfverify").arg(&e01));
    assert!(v.contains("ewfverify: SUCCESS"), "{v}");
    let info = ok(Command::new("ewfinfo").arg(&e01));
    assert!(info.contains("at sector(s): 128 - 135 number: 8"), "{info}");
}
