//! `salvor rescue` end to end through the binary: results compared byte for byte, mapfiles
//! checked by GNU ddrescuelog, resumes across salvor and GNU ddrescue, refusals, exit codes.

mod common;

use common::*;
use salvor::mapfile::BlockStatus;
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1 << 20;

fn bad_ranges() -> Vec<(u64, u64)> {
    // Unaligned areas of different shapes: a single sector, a short run, a wide area.
    vec![
        (1_000_448, 1_000_960),
        (3 * MIB + 4096, 3 * MIB + 40_960),
        (5 * MIB + 512 * 7, 6 * MIB + 512 * 3),
    ]
}

fn rescue(dir: &Path, extra: &[&str]) -> std::process::Output {
    run(salvor()
        .arg("rescue")
        .arg("-q")
        .args(extra)
        .arg(dir.join("src.img"))
        .arg(dir.join("out.img"))
        .arg(dir.join("map")))
}

fn assert_result(dir: &Path, source: &[u8], bad: &[(u64, u64)]) {
    let map = read_map(&dir.join("map"));
    let dest = std::fs::read(dir.join("out.img")).expect("read out.img");
    assert_finished_bytes_match(&map, source, &dest);
    // Exactly the bad areas are unfinished, and they are marked bad-sector, except inside areas
    // whose scraping probes all failed: those are left non-scraped (said so; --scrape-dead-areas
    // scrapes them).
    let mut expected = salvor::mapfile::Mapfile::new(source.len() as u64);
    expected.set(0, source.len() as u64, BlockStatus::Finished);
    for &(a, b) in bad {
        expected.set(a, b - a, BlockStatus::BadSector);
    }
    let mut seen = map.clone();
    for b in map.blocks() {
        if b.status == BlockStatus::NonScraped {
            assert!(
                bad.iter()
                    .any(|&(s, e)| s <= b.pos && b.end() <= e && e - s > 64 * 512),
                "non-scraped block at 0x{:X} outside a large bad area",
                b.pos
            );
            seen.set(b.pos, b.size, BlockStatus::BadSector);
        }
    }
    assert_eq!(
        seen.blocks(),
        expected.blocks(),
        "final map differs from the test map"
    );
}

#[test]
fn rescues_around_bad_areas_and_ddrescuelog_agrees() {
    require_tool("ddrescuelog", "gddrescue");
    let dir = tempfile::tempdir().expect("tempdir");
    let size = 8 * MIB;
    let source = write_pattern(&dir.path().join("src.img"), 1, size as usize);
    write_test_map(&dir.path().join("test.map"), size, &bad_ranges());
    let out = rescue(
        dir.path(),
        &["-H", dir.path().join("test.map").to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "rescue failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_result(dir.path(), &source, &bad_ranges());
    // A new destination file has the source's size; bad areas are holes (zeros).
    let dest = std::fs::read(dir.path().join("out.img")).expect("read");
    assert_eq!(dest.len() as u64, size);
    assert!(dest[1_000_448..1_000_960].iter().all(|&b| b == 0));

    let t = run(Command::new("ddrescuelog")
        .arg("-t")
        .arg(dir.path().join("map")));
    assert!(
        t.status.success(),
        "ddrescuelog -t rejects our map: {}",
        String::from_utf8_lossy(&t.stderr)
    );
    let d = run(Command::new("ddrescuelog")
        .arg("-D")
        .arg(dir.path().join("map")));
    assert_eq!(
        d.status.code(),
        Some(1),
        "ddrescuelog -D must say: not all finished"
    );
    let m = run(salvor()
        .arg("map")
        .arg("--done")
        .arg(dir.path().join("map")));
    assert_eq!(m.status.code(), Some(1));
    let m = run(salvor().arg("map").arg(dir.path().join("map")));
    assert!(String::from_utf8_lossy(&m.stdout).contains("bad-sector"));
}

#[test]
fn healthy_source_is_copied_exactly_and_reported_done() {
    require_tool("ddrescuelog", "gddrescue");
    let dir = tempfile::tempdir().expect("tempdir");
    let source = write_pattern(&dir.path().join("src.img"), 2, (3 * MIB + 1536) as usize);
    let out = rescue(dir.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dir.path().join("out.img")).expect("read"),
        source
    );
    let d = run(Command::new("ddrescuelog")
        .arg("-D")
        .arg(dir.path().join("map")));
    assert_eq!(d.status.code(), Some(0));
    let m = run(salvor().args(["map", "--done"]).arg(dir.path().join("map")));
    assert_eq!(m.status.code(), Some(0));
    // Re-running a finished rescue reads nothing and changes nothing.
    let again = rescue(
        dir.path(),
        &["--log-reads", dir.path().join("reads").to_str().unwrap()],
    );
    assert!(again.status.success());
    let reads = std::fs::read_to_string(dir.path().join("reads")).expect("log");
    assert_eq!(reads.lines().filter(|l| !l.starts_with('#')).count(), 0);
}

#[test]
fn ddrescue_run_is_finished_by_salvor() {
    require_tool("ddrescue", "gddrescue");
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let size = 8 * MIB;
    let source = write_pattern(&p.join("src.img"), 3, size as usize);
    write_test_map(&p.join("test.map"), size, &bad_ranges());
    // GNU ddrescue gives up after 2 read errors: a partial map in its own format.
    let d = run(Command::new("ddrescue")
        .args(["-f", "-X", "1", "-H"])
        .arg(p.join("test.map"))
        .arg(p.join("src.img"))
        .arg(p.join("out.img"))
        .arg(p.join("map")));
    assert_eq!(
        d.status.code(),
        Some(1),
        "ddrescue should stop early: {}",
        String::from_utf8_lossy(&d.stderr)
    );
    let partial = read_map(&p.join("map"));
    assert!(
        partial.totals().pending() > 0,
        "ddrescue's map should be unfinished"
    );
    let out = rescue(p, &["-H", p.join("test.map").to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_result(p, &source, &bad_ranges());
}

#[test]
fn salvor_run_is_finished_by_ddrescue() {
    require_tool("ddrescue", "gddrescue");
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let size = 8 * MIB;
    let source = write_pattern(&p.join("src.img"), 4, size as usize);
    write_test_map(&p.join("test.map"), size, &bad_ranges());
    let out = rescue(p, &["-X", "1", "-H", p.join("test.map").to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "salvor should stop at -X: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(read_map(&p.join("map")).totals().pending() > 0);
    let d = run(Command::new("ddrescue")
        .args(["-f", "-H"])
        .arg(p.join("test.map"))
        .arg(p.join("src.img"))
        .arg(p.join("out.img"))
        .arg(p.join("map")));
    assert!(
        d.status.success(),
        "ddrescue cannot resume our map: {}",
        String::from_utf8_lossy(&d.stderr)
    );
    assert_result(p, &source, &bad_ranges());
}

#[test]
fn rescues_a_real_block_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let source = write_pattern(&p.join("disk.img"), 5, (24 * MIB) as usize);
    let lo = LoopDev::attach(&p.join("disk.img"), false);
    for direct in [false, true] {
        let _ = std::fs::remove_file(p.join("out.img"));
        let _ = std::fs::remove_file(p.join("map"));
        let mut cmd = salvor();
        cmd.args(["rescue", "-q"]);
        if direct {
            cmd.arg("-d");
        }
        let out = run(cmd.arg(&lo.dev).arg(p.join("out.img")).arg(p.join("map")));
        assert!(
            out.status.success(),
            "direct={direct}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read(p.join("out.img")).expect("read"),
            source,
            "direct={direct}"
        );
        assert!(read_map(&p.join("map")).totals().pending() == 0);
    }
}

#[test]
fn refuses_dangerous_destinations_without_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let source = write_pattern(&p.join("src.img"), 6, (4 * MIB) as usize);
    // DEST == SOURCE.
    let out = run(salvor()
        .args(["rescue", "-q"])
        .arg(p.join("src.img"))
        .arg(p.join("src.img"))
        .arg(p.join("map")));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the source"), "{err}");

    // A block device without --force, one that is too small, one that is mounted.
    let small = write_pattern(&p.join("small.img"), 7, (2 * MIB) as usize);
    let small_dev = LoopDev::attach(&p.join("small.img"), false);
    let out = run(salvor()
        .args(["rescue", "-q"])
        .arg(p.join("src.img"))
        .arg(&small_dev.dev)
        .arg(p.join("map")));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(salvor()
        .args(["rescue", "-q", "-f"])
        .arg(p.join("src.img"))
        .arg(&small_dev.dev)
        .arg(p.join("map")));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("too small"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(small_dev);
    assert_eq!(
        std::fs::read(p.join("small.img")).expect("read"),
        small,
        "refused target was written"
    );

    require_tool("mkfs.ext4", "e2fsprogs");
    std::fs::write(p.join("fs.img"), vec![0u8; (8 * MIB) as usize]).expect("write");
    let mk = run(Command::new("mkfs.ext4")
        .arg("-q")
        .arg("-F")
        .arg(p.join("fs.img")));
    assert!(mk.status.success());
    let fs_dev = LoopDev::attach(&p.join("fs.img"), false);
    {
        let _mount = Mount::new(&fs_dev.dev, &p.join("mnt"));
        let out = run(salvor()
            .args(["rescue", "-q", "-f"])
            .arg(p.join("src.img"))
            .arg(&fs_dev.dev)
            .arg(p.join("map")));
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("mounted"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(fs_dev);
    // Mounting changes the superblock itself, so check that none of the source was written and
    // the filesystem is intact.
    let after = std::fs::read(p.join("fs.img")).expect("read");
    assert!(after[..1024] != source[..1024] && after[1024..2048] != source[1024..2048]);
    let fsck = run(Command::new("e2fsck").arg("-fn").arg(p.join("fs.img")));
    assert!(
        fsck.status.success(),
        "mounted target was damaged: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    assert!(
        !p.join("map").exists(),
        "a refused rescue must not create a mapfile"
    );
}

#[test]
fn bad_mapfiles_are_rejected_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    write_pattern(&p.join("src.img"), 8, MIB as usize);
    // Rescued data past the end of the source: the mapfile of another disk. Refused before
    // anything is written, with ddrescue's exit status for it (1: the mapfile is valid, it
    // just does not fit this input); -C takes the mapfile's extent as the limit instead.
    std::fs::write(p.join("map"), "0 + 1\n0 0x400000 +\n").expect("write");
    let out = rescue(p, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("past the end"));
    assert!(!p.join("out.img").exists());
    // A salvor mapfile cut short (crash while someone copied it, full disk, ...).
    std::fs::remove_file(p.join("map")).ok();
    let ok = rescue(p, &[]);
    assert!(ok.status.success());
    let text = std::fs::read_to_string(p.join("map")).expect("map");
    std::fs::write(p.join("map"), &text[..text.len() - 20]).expect("truncate");
    let out = rescue(p, &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated"));
    // Garbage.
    std::fs::write(p.join("map"), "0 + 1\n0 zz +\n").expect("write");
    let out = rescue(p, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn invalid_options_exit_1() {
    let out = run(salvor().args(["rescue", "--sector-size", "1000", "a", "b", "c"]));
    assert_eq!(out.status.code(), Some(1));
    let out = run(salvor().args(["rescue", "--bogus"]));
    assert_eq!(out.status.code(), Some(1));
    let out = run(salvor().args(["rescue", "/nonexistent/src", "/tmp/x", "/tmp/y"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/src"));
}

#[test]
fn json_progress_is_one_object_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    write_pattern(&p.join("src.img"), 9, (2 * MIB) as usize);
    write_test_map(&p.join("test.map"), 2 * MIB, &[(MIB, MIB + 4096)]);
    let out = run(salvor()
        .args(["rescue", "--json", "-H"])
        .arg(p.join("test.map"))
        .arg(p.join("src.img"))
        .arg(p.join("out.img"))
        .arg(p.join("map")));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut kinds = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
        kinds.insert(v["type"].as_str().unwrap_or("").to_string());
        if v["type"] == "progress" {
            assert!(v["totals"]["finished"].is_u64());
        }
    }
    assert!(
        kinds.contains("progress") && kinds.contains("event"),
        "{kinds:?}"
    );
    let last = text
        .lines()
        .rev()
        .find(|l| l.contains("\"progress\""))
        .expect("a progress line");
    let v: serde_json::Value = serde_json::from_str(last).expect("json");
    assert_eq!(v["totals"]["bad_sector"], 4096);
}

#[test]
fn full_destination_stops_cleanly_and_the_map_claims_only_written_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let source = write_pattern(&p.join("src.img"), 13, (8 * MIB) as usize);
    let mnt = p.join("small");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    let m = run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&mnt));
    assert!(
        m.status.success(),
        "mount tmpfs: {}",
        String::from_utf8_lossy(&m.stderr)
    );
    let _mount = Mount { dir: mnt.clone() };
    let out = run(salvor()
        .args(["rescue", "-q"])
        .arg(p.join("src.img"))
        .arg(mnt.join("out.img"))
        .arg(p.join("map")));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no space left") && err.contains("out.img"),
        "{err}"
    );
    // After a failed write nothing written since the last sync is claimed (Linux may have
    // dropped it): here that is everything since the save at the start.
    let map = read_map(&p.join("map"));
    assert!(map.totals().finished < 8 * MIB);
    let dest = std::fs::read(mnt.join("out.img")).expect("read");
    assert_finished_bytes_match(&map, &source, &dest);
}

#[test]
fn refuses_a_destination_file_on_the_disk_being_rescued() {
    require_tool("mkfs.ext4", "e2fsprogs");
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    std::fs::write(p.join("fs.img"), vec![0u8; (16 * MIB) as usize]).expect("write");
    assert!(run(Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(p.join("fs.img")))
    .status
    .success());
    let dev = LoopDev::attach(&p.join("fs.img"), false);
    let mount = Mount::new(&dev.dev, &p.join("mnt"));
    let out = run(salvor()
        .args(["rescue", "-q"])
        .arg(&dev.dev)
        .arg(mount.dir.join("rescued.img"))
        .arg(p.join("map")));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is stored on") && err.contains("the source"),
        "{err}"
    );
    assert!(!mount.dir.join("rescued.img").exists());
}

#[test]
fn a_mapfile_of_another_disk_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    write_pattern(&p.join("src.img"), 14, (2 * MIB) as usize);
    write_pattern(&p.join("other.img"), 15, (3 * MIB) as usize);
    assert!(rescue(p, &[]).status.success());
    let text = std::fs::read_to_string(p.join("map")).expect("map");
    assert!(text.contains("# Source: size=2097152"), "{text}");
    let out = run(salvor()
        .args(["rescue", "-q"])
        .arg(p.join("other.img"))
        .arg(p.join("other.out"))
        .arg(p.join("map")));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to another disk"));
    assert!(!p.join("other.out").exists(), "nothing may be written");
}

#[test]
fn domain_and_positions_restrict_what_is_read_and_where_it_goes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let source = write_pattern(&p.join("src.img"), 16, (4 * MIB) as usize);
    // -m: only the finished blocks of the domain mapfile are rescued.
    std::fs::write(
        p.join("domain"),
        "0 + 1\n0 0x100000 ?\n0x100000 0x80000 +\n0x180000 0x200000 ?\n0x380000 0x10000 +\n0x390000 0x70000 ?\n",
    )
    .expect("write");
    let out = rescue(
        p,
        &[
            "-m",
            p.join("domain").to_str().unwrap(),
            "--log-reads",
            p.join("reads").to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let map = read_map(&p.join("map"));
    let finished: Vec<(u64, u64)> = map
        .blocks()
        .iter()
        .filter(|b| b.status == BlockStatus::Finished)
        .map(|b| (b.pos, b.end()))
        .collect();
    assert_eq!(finished, vec![(0x100000, 0x180000), (0x380000, 0x390000)]);
    let dest = std::fs::read(p.join("out.img")).expect("read");
    assert_finished_bytes_match(&map, &source, &dest);
    for line in std::fs::read_to_string(p.join("reads"))
        .expect("log")
        .lines()
        .filter(|l| !l.starts_with('#'))
    {
        let mut f = line.split_whitespace();
        let pos = u64::from_str_radix(f.next().unwrap().trim_start_matches("0x"), 16).unwrap();
        let size: u64 = f.next().unwrap().parse().unwrap();
        assert!(
            (0x100000..0x180000).contains(&pos) && pos + size <= 0x180000
                || (0x380000..0x390000).contains(&pos) && pos + size <= 0x390000,
            "read outside the domain: {line}"
        );
    }

    // -i/-s/-o: 2 MiB from input offset 1 MiB, written at output offset 0.
    let out = run(salvor()
        .args(["rescue", "-q", "-i", "1MiB", "-s", "2MiB", "-o", "0"])
        .arg(p.join("src.img"))
        .arg(p.join("part.img"))
        .arg(p.join("part.map")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let part = std::fs::read(p.join("part.img")).expect("read");
    assert_eq!(part, source[MIB as usize..3 * MIB as usize]);
}
