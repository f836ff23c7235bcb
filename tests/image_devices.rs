//! Loop-device round trips, a GPT disk restored to a bigger disk, and the refusals.
//! Needs root and: util-linux (losetup, mount), gdisk (sgdisk), e2fsprogs, dosfstools, zstd.

mod image_common;
use image_common::*;
use salvor::progress::{Control, NoProgress};
use std::path::Path;
use std::process::Command;

const MIB: usize = 1 << 20;

fn sparse_file(path: &Path, size: usize) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size as u64).unwrap();
}

#[test]
fn loop_device_round_trip_and_clone() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let data = disk_bytes(24 * MIB, 21);
    let src_file = dir.path().join("src.bin");
    write_file(&src_file, &data);
    let tgt_file = dir.path().join("tgt.bin");
    write_file(&tgt_file, &vec![0x5Au8; 32 * MIB]);
    let src = LoopDev::attach(&src_file, false);
    let tgt = LoopDev::attach(&tgt_file, false);

    let img = dir.path().join("loop.img.zst");
    let s = image(&src.path, &img, &opts(1 << 20));
    assert_eq!(s.raw_size, data.len() as u64);
    let m = match salvor::image::info(&img).unwrap() {
        salvor::image::Info::Image { metadata, .. } => metadata,
        other => panic!("{other:?}"),
    };
    assert!(m.source.is_block_device);

    restore(&img, &tgt.path, true).unwrap();
    assert!(
        read_dev(&tgt.path, data.len()) == data,
        "restored loop device differs"
    );
    // The target's old bytes past the image are untouched.
    assert!(read_dev(&tgt.path, 32 * MIB)[24 * MIB..]
        .iter()
        .all(|&b| b == 0x5A));
    salvor::image::verify_image(&img, Some(&tgt.path), 2, &Control::new(), &mut NoProgress)
        .unwrap();

    // Clone: device to device, no compression.
    let tgt2_file = dir.path().join("tgt2.bin");
    sparse_file(&tgt2_file, 24 * MIB);
    let tgt2 = LoopDev::attach(&tgt2_file, false);
    let r = clone(&src.path, &tgt2.path, true).unwrap();
    assert!(r.verified);
    assert!(read_dev(&tgt2.path, data.len()) == data, "clone differs");

    // Raw sparse image of a device.
    let raw = dir.path().join("loop.img");
    image(&src.path, &raw, &opts(1 << 20));
    assert!(read(&raw) == data);
}

/// A GPT disk: EFI (FAT32), two ext4 partitions with files.
fn make_gpt_disk(dir: &Path, path: &Path, size: usize) {
    for t in ["sgdisk", "mkfs.ext4", "mkfs.vfat", "losetup"] {
        require_tool(t);
    }
    sparse_file(path, size);
    run(Command::new("sgdisk")
        .args(["-n", "1:2048:+40M", "-t", "1:ef00", "-c", "1:EFI"])
        .args(["-n", "2:0:+24M", "-t", "2:8300", "-c", "2:root"])
        .args(["-n", "3:0:0", "-t", "3:8300", "-c", "3:data"])
        .arg(path));
    let files = dir.join("files");
    std::fs::create_dir_all(files.join("sub")).unwrap();
    for i in 0..20 {
        write_file(
            &files.join(format!("f{i}.bin")),
            &disk_bytes(100_000 + i * 777, i as u64),
        );
    }
    write_file(&files.join("sub/readme.txt"), b"hello from the GPT test\n");
    let part = |n| {
        let (off, len) = gpt_partition(path, n);
        LoopDev::attach_range(path, off, len)
    };
    run(Command::new("mkfs.vfat")
        .args(["-F", "32", "-s", "1", "-n", "EFI"])
        .arg(&part(1).path));
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&files)
        .arg(&part(2).path));
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&files)
        .arg(&part(3).path));
}

fn partition_lines(sgdisk_p: &str) -> Vec<String> {
    sgdisk_p
        .lines()
        .skip_while(|l| !l.starts_with("Number"))
        .map(str::to_string)
        .collect()
}

#[test]
fn gpt_disk_restored_to_bigger_target() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("gpt.bin");
    make_gpt_disk(dir.path(), &disk, 96 * MIB);
    let before = partition_lines(&run(Command::new("sgdisk").arg("-p").arg(&disk)));
    let img = dir.path().join("gpt.img.zst");
    image(&disk, &img, &opts(1 << 20));
    match salvor::image::info(&img).unwrap() {
        salvor::image::Info::Image { metadata, .. } => {
            let t = metadata.partition_table.expect("partition table summary");
            assert_eq!(t.kind, "gpt");
            assert_eq!(t.partitions.len(), 3);
            assert_eq!(t.partitions[1].name.as_deref(), Some("root"));
        }
        other => panic!("{other:?}"),
    }

    let tgt_file = dir.path().join("big.bin");
    sparse_file(&tgt_file, 160 * MIB);
    let tgt = LoopDev::attach(&tgt_file, false);
    let r = restore(&img, &tgt.path, true).unwrap();
    assert!(r.gpt.is_some(), "backup GPT should have moved");
    drop(tgt);

    let v = run(Command::new("sgdisk").arg("-v").arg(&tgt_file));
    assert!(v.contains("No problems found"), "sgdisk -v:\n{v}");
    let after = partition_lines(&run(Command::new("sgdisk").arg("-p").arg(&tgt_file)));
    assert_eq!(before, after, "partitions changed");
    // Partition contents are byte-identical.
    let a = read(&disk);
    let b = read(&tgt_file);
    assert!(a[MIB..90 * MIB] == b[MIB..90 * MIB]);

    require_tool("fsck.vfat");
    require_tool("fsck.ext4");
    let part = |n| {
        let (off, len) = gpt_partition(&tgt_file, n);
        LoopDev::attach_range(&tgt_file, off, len)
    };
    run(Command::new("fsck.vfat").arg("-n").arg(&part(1).path));
    run(Command::new("fsck.ext4")
        .args(["-n", "-f"])
        .arg(&part(2).path));
    run(Command::new("fsck.ext4")
        .args(["-n", "-f"])
        .arg(&part(3).path));
}

fn refused(r: salvor::Result<salvor::image::RestorePlan>, needle: &str) {
    match r {
        Err(e @ salvor::Error::Refused { .. }) => {
            assert!(
                e.to_string().contains(needle),
                "'{e}' should mention '{needle}'"
            );
            assert_eq!(e.exit_code(), 1);
        }
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal mentioning '{needle}'"),
    }
}

#[test]
fn refusals_write_nothing() {
    require_root();
    require_tool("mkfs.ext4");
    require_tool("mount");
    let dir = tempfile::tempdir().unwrap();
    let data = disk_bytes(16 * MIB, 33);
    let src_file = dir.path().join("src.bin");
    write_file(&src_file, &data);
    let img = dir.path().join("src.img.zst");
    image(&src_file, &img, &opts(1 << 20));

    // Too small.
    let small_file = dir.path().join("small.bin");
    write_file(&small_file, &vec![0x11u8; 8 * MIB]);
    let small = LoopDev::attach(&small_file, false);
    let before = read_dev(&small.path, 8 * MIB);
    refused(
        salvor::image::prepare_restore(&img, &small.path),
        "too small",
    );
    refused(
        salvor::image::prepare_clone(&src_file, &small.path),
        "too small",
    );
    assert!(read_dev(&small.path, 8 * MIB) == before);

    // Mounted.
    let m_file = dir.path().join("mounted.bin");
    sparse_file(&m_file, 32 * MIB);
    // No lazy init: a background thread writing inode tables would change the bytes compared.
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
        .arg(&m_file));
    let mdev = LoopDev::attach(&m_file, false);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    {
        let _m = Mount::new(&mdev.path, &mnt);
        run(&mut Command::new("sync"));
        let before = read_dev(&mdev.path, 32 * MIB);
        refused(salvor::image::prepare_restore(&img, &mdev.path), "mounted");
        refused(
            salvor::image::prepare_clone(&src_file, &mdev.path),
            "mounted",
        );
        run(&mut Command::new("sync"));
        assert!(
            read_dev(&mdev.path, 32 * MIB) == before,
            "mounted target changed"
        );
        // The image stored on the target's own filesystem: refused for holding it.
        let inner = mnt.join("inner.img.zst");
        std::fs::copy(&img, &inner).unwrap();
        refused(salvor::image::prepare_restore(&inner, &mdev.path), "holds");
        std::fs::remove_file(&inner).unwrap();
    }

    // Target equals the source.
    let s = LoopDev::attach(&src_file, false);
    refused(salvor::image::prepare_clone(&s.path, &s.path), "source");
    refused(salvor::image::prepare_restore(&img, &img), "source");
    assert!(read(&src_file) == data);
}
