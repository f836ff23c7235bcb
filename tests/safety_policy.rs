//! Issue 10's reproductions, each as a regression test: every path a job writes goes through one
//! refusal policy, the mapfile is locked for the run, and a destination that failed a sync is
//! never claimed. Needs root (loop devices, tmpfs mounts); fails loudly without it.

mod common;

use common::*;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

fn rescue(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut cmd = salvor();
    cmd.arg("rescue").arg("-q").args(args);
    run(&mut cmd)
}

fn os<P: AsRef<std::ffi::OsStr> + ?Sized>(p: &P) -> &std::ffi::OsStr {
    p.as_ref()
}

fn assert_refused(out: &std::process::Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "expected exit 1, got: {err}");
    assert!(
        err.contains("refusing") && err.contains(needle),
        "expected a refusal mentioning '{needle}', got: {err}"
    );
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (loop devices, mounts)"
    );
}

#[test]
fn the_mapfile_or_its_companions_as_the_output_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let data = write_pattern(&src, 1, MIB);
    let map = t.path().join("map");
    for out in ["map", "map.bak", "map.tmp", "map.bak.tmp", "map.lock"] {
        let out = t.path().join(out);
        let r = rescue(&[os(&src), os(&out), os(&map)]);
        assert_refused(&r, "mapfile");
        assert!(!out.exists() || out == map && !map.exists());
        assert!(!map.exists(), "{}: a mapfile was written", out.display());
    }
    // `rescue in out out`: the same name twice, neither exists yet.
    let out = t.path().join("out");
    assert_refused(&rescue(&[os(&src), os(&out), os(&out)]), "same file");
    assert!(!out.exists());
    assert!(std::fs::read(&src).unwrap() == data);
}

#[test]
fn log_reads_onto_the_source_or_the_destination_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let data = write_pattern(&src, 2, MIB);
    let (out, map) = (t.path().join("out"), t.path().join("map"));
    let log_arg = |p: &Path| format!("--log-reads={}", p.display());
    let r = rescue(&[os(&log_arg(&src)), os(&src), os(&out), os(&map)]);
    assert_refused(&r, "log file");
    assert!(std::fs::read(&src).unwrap() == data, "the source changed");
    assert!(!out.exists() && !map.exists());

    // A finished rescue, then a resume with the log pointed at the rescued data.
    let r = rescue(&[os(&src), os(&out), os(&map)]);
    assert!(r.status.success());
    let r = rescue(&[os(&log_arg(&out)), os(&src), os(&out), os(&map)]);
    assert_refused(&r, "log file");
    assert!(
        std::fs::read(&out).unwrap() == data,
        "the rescued data changed"
    );
    // A hard link is the same file.
    let link = t.path().join("link");
    std::fs::hard_link(&src, &link).unwrap();
    let r = rescue(&[os(&log_arg(&link)), os(&src), os(&out), os(&map)]);
    assert_refused(&r, "log file");
    assert!(std::fs::read(&src).unwrap() == data);
}

#[test]
fn block_devices_holding_the_source_are_refused() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("s.img");
    let data = write_pattern(&src, 3, 8 * MIB);
    let map = t.path().join("map");
    // A loop device backed by the source file.
    let lo = LoopDev::attach(&src, false);
    let r = rescue(&[
        os("-f"),
        os("-o"),
        os("1MiB"),
        os("-s"),
        os("1MiB"),
        os(&src),
        os(&lo.dev),
        os(&map),
    ]);
    assert_refused(&r, "stored on");
    assert!(std::fs::read(&src).unwrap() == data, "the source changed");

    // A partition of the source disk, and the disk from its partition.
    let disk = t.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 8 * MIB]).unwrap();
    run(Command::new("sgdisk")
        .args(["-n", "1:2048:+2M", "-n", "2:0:+2M"])
        .arg(&disk));
    let d = LoopDev::attach(&disk, true);
    let part1 = Path::new(&format!("{}p1", d.dev.display())).to_path_buf();
    let part2 = Path::new(&format!("{}p2", d.dev.display())).to_path_buf();
    // This kernel may have no partition-table parsers: add them from user space as partx does.
    let _ = Command::new("partx").arg("-a").arg(&d.dev).status();
    wait_exists(&part2);
    let before = std::fs::read(&disk).unwrap();
    assert_refused(&rescue(&[os("-f"), os(&d.dev), os(&part1), os(&map)]), "");
    assert_refused(&rescue(&[os("-f"), os(&part1), os(&d.dev), os(&map)]), "");
    assert!(
        std::fs::read(&disk).unwrap() == before,
        "the source disk changed"
    );
    // Two partitions of one disk do not overlap.
    let r = rescue(&[os("-f"), os(&part1), os(&part2), os(&map)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));

    // clone and image: a file on a filesystem of the source disk.
    let fsimg = t.path().join("fs.img");
    std::fs::write(&fsimg, vec![0u8; 32 * MIB]).unwrap();
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&fsimg));
    let f = LoopDev::attach(&fsimg, false);
    let mnt = t.path().join("mnt");
    let _m = Mount::new(&f.dev, &mnt);
    let inside = mnt.join("x.img");
    let r = run(salvor().arg("clone").arg(&f.dev).arg(&inside));
    assert_eq!(
        r.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(String::from_utf8_lossy(&r.stderr).contains("refusing"));
    assert!(!inside.exists());
    let r = rescue(&[os(&f.dev), os(&inside), os(&t.path().join("m2"))]);
    assert_refused(&r, "stored on");
    // The mapfile on the disk being rescued.
    let r = rescue(&[os(&f.dev), os(&t.path().join("o2")), os(&mnt.join("map"))]);
    assert_refused(&r, "mapfile is stored on");
}

fn wait_exists(p: &Path) {
    let t0 = Instant::now();
    while !p.exists() {
        let _ = Command::new("udevadm").arg("settle").status();
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{} never appeared",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The boot medium is recorded by the rescue environment's init; a destination on it is refused.
#[test]
fn the_boot_medium_is_refused_as_a_destination() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write_pattern(&src, 4, MIB);
    let medium = t.path().join("medium.img");
    std::fs::write(&medium, vec![0x5Au8; 2 * MIB]).unwrap();
    let lo = LoopDev::attach(&medium, false);
    let record = Path::new(salvor::blockdev::MEDIUM_DEVICE_FILE);
    assert!(
        !record.exists(),
        "{} exists on this machine: not the rescue environment",
        record.display()
    );
    std::fs::create_dir_all(record.parent().unwrap()).unwrap();
    struct Remove<'a>(&'a Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    std::fs::write(record, format!("{}\n", lo.dev.display())).unwrap();
    let _guard = Remove(record);
    let r = rescue(&[os("-f"), os(&src), os(&lo.dev), os(&t.path().join("map"))]);
    assert_refused(&r, "booted from");
    let img = t.path().join("i.img.zst");
    run(salvor().arg("image").arg(&src).arg(&img));
    let r = run(salvor().arg("restore").arg("--yes").arg(&img).arg(&lo.dev));
    assert_eq!(
        r.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(std::fs::read(&medium).unwrap().iter().all(|&b| b == 0x5A));
}

/// A destination whose writeback fails (a loop device on a tiny tmpfs): the run exits 1 naming
/// the destination, and the mapfile never claims bytes that are not on it.
#[test]
fn a_failed_sync_is_never_claimed() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let data = write_pattern(&src, 5, 6 * MIB);
    let tiny = t.path().join("tiny");
    std::fs::create_dir(&tiny).unwrap();
    let out = run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tiny"])
        .arg(&tiny));
    assert!(
        out.status.success(),
        "mount tmpfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _u = Umount(tiny.clone());
    let backing = tiny.join("backing");
    let f = std::fs::File::create(&backing).unwrap();
    f.set_len(8 * MIB as u64).unwrap();
    drop(f);
    let lo = LoopDev::attach(&backing, false);
    let map = t.path().join("map");
    let r = rescue(&[os("-f"), os(&src), os(&lo.dev), os(&map)]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "expected exit 1: {err}");
    assert!(err.contains(&lo.dev.display().to_string()), "{err}");
    eprintln!("salvor said: {err}");
    let m = read_map(&map);
    let dev = std::fs::File::open(&lo.dev).unwrap();
    // Drop what the loop device still caches: compare what its backing file holds.
    let _ = Command::new("blockdev")
        .arg("--flushbufs")
        .arg(&lo.dev)
        .status();
    let mut on_dev = vec![0u8; data.len()];
    dev.read_exact_at(&mut on_dev, 0).unwrap();
    assert_finished_bytes_match(&m, &data, &on_dev);
    assert!(
        m.totals().finished < data.len() as u64,
        "the map claims everything"
    );
}

/// One run per mapfile: a second salvor is refused while the first runs; GNU ddrescue (which
/// takes no lock) is caught by its open destination.
#[test]
fn a_second_job_on_the_same_mapfile_or_destination_is_refused() {
    require_tool("ddrescue", "gddrescue");
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write_pattern(&src, 6, 16 * MIB);
    let (out, map) = (t.path().join("out"), t.path().join("map"));
    let mut first = salvor()
        .args(["rescue", "-q", "--max-read-rate=1M"])
        .arg(&src)
        .arg(&out)
        .arg(&map)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let lock = t.path().join("map.lock");
    let t0 = Instant::now();
    while !lock.exists() {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended early"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the first run never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let first = Kill(first);
    let r = rescue(&[os(&src), os(&t.path().join("other")), os(&map)]);
    assert_refused(&r, "another salvor");
    drop(first);

    let mut dd = Command::new("ddrescue")
        .args(["-q", "--max-read-rate=1M"])
        .arg(&src)
        .arg(&out)
        .arg(t.path().join("dd.map"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while salvor::safety::other_writer(&out).is_none() {
        assert!(dd.try_wait().unwrap().is_none(), "ddrescue ended early");
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "ddrescue never opened its output"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let _dd = Kill(dd);
    let r = rescue(&[os(&src), os(&out), os(&t.path().join("map3"))]);
    assert_refused(&r, "ddrescue");
}
