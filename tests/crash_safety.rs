//! Stopping a rescue at any moment loses nothing the mapfile claims: SIGINT/SIGTERM save and exit
//! 128+signal; SIGKILL at random moments (20+ times) leaves a parseable mapfile whose finished
//! blocks are on the destination, and the next run resumes to the same final result.

mod common;

use common::*;
use salvor::mapfile::BlockStatus;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn bad_areas(size: u64, seed: u64) -> Vec<(u64, u64)> {
    let mut x = seed;
    let mut out = Vec::new();
    let mut pos = 64 * 1024;
    while pos < size - 256 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let gap = 100_000 + x % 600_000;
        let len = 512 * (1 + (x >> 20) % 64);
        pos = (pos + gap) / 512 * 512;
        if pos + len >= size {
            break;
        }
        out.push((pos, pos + len));
        pos += len;
    }
    out
}

fn start(p: &Path, extra: &[&str]) -> Child {
    salvor()
        .args(["rescue", "-q", "-c", "16", "--mapfile-interval", "0"])
        .args(extra)
        .arg("-H")
        .arg(p.join("test.map"))
        .arg(p.join("src.img"))
        .arg(p.join("out.img"))
        .arg(p.join("map"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start salvor")
}

/// Kills the child if the test fails before it exits.
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn check_claims(p: &Path, source: &[u8]) -> Option<u64> {
    if !p.join("map").exists() {
        return None;
    }
    let map = read_map(&p.join("map"));
    map.check().expect("mapfile invariants");
    let dest = std::fs::read(p.join("out.img")).expect("read out.img");
    assert_finished_bytes_match(&map, source, &dest);
    Some(map.totals().finished)
}

fn expected_final(size: u64, bad: &[(u64, u64)]) -> Vec<salvor::mapfile::Block> {
    let mut m = salvor::mapfile::Mapfile::new(size);
    m.set(0, size, BlockStatus::Finished);
    for &(a, b) in bad {
        m.set(a, b - a, BlockStatus::BadSector);
    }
    m.blocks().to_vec()
}

#[test]
fn sigkill_at_random_moments_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let size = 12 * MIB;
    let source = write_pattern(&p.join("src.img"), 11, size as usize);
    let bad = bad_areas(size, 0x9E37_79B9);
    write_test_map(&p.join("test.map"), size, &bad);

    let mut seed: u64 = 12345;
    let mut kills = 0;
    let mut progress = Vec::new();
    for _ in 0..40 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(30 + (seed >> 33) % 250);
        let mut reaper = Reaper(Some(start(p, &[])));
        let t0 = Instant::now();
        let mut exited = None;
        while t0.elapsed() < delay {
            if let Some(st) = reaper.0.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                exited = Some(st);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(st) = exited {
            assert!(st.success(), "run ended with {st}");
            reaper.0 = None;
            break;
        }
        if let Some(c) = reaper.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        reaper.0 = None;
        kills += 1;
        progress.push(check_claims(p, &source));
    }
    assert!(
        kills >= 20,
        "only {kills} kills happened before the rescue finished: make it slower"
    );
    // Finish without interruption.
    let out = start(p, &[]).wait_with_output().expect("final run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_claims(p, &source);
    assert_eq!(
        read_map(&p.join("map")).blocks(),
        expected_final(size, &bad).as_slice()
    );
    eprintln!("{kills} kills; finished bytes after each: {progress:?}");
}

/// Waits until `path` exists; fails if the child exits first or nothing happens for a minute.
fn wait_for(path: &Path, child: &mut Child) {
    let t0 = Instant::now();
    while !path.exists() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("salvor exited ({st}) before {} appeared", path.display());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn sigint_and_sigterm_save_and_exit_128_plus_signal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let size = 12 * MIB;
    let source = write_pattern(&p.join("src.img"), 12, size as usize);
    let bad = bad_areas(size, 77);
    write_test_map(&p.join("test.map"), size, &bad);
    for (sig, code) in [
        (libc::SIGINT, 130),
        (libc::SIGTERM, 143),
        (libc::SIGHUP, 129),
    ] {
        let mut reaper = Reaper(Some(start(p, &[])));
        // Ready: salvor installs its handlers before anything else, then takes the mapfile's
        // lock; once the lock file exists a signal must be handled (never a fixed delay).
        wait_for(&p.join("map.lock"), reaper.0.as_mut().expect("child"));
        let child = reaper.0.take().expect("child");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, sig) };
        let out = child.wait_with_output().expect("wait");
        assert_eq!(
            out.status.code(),
            Some(code),
            "signal {sig}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(p.join("map")).expect("map saved");
        assert!(
            text.contains("# end of salvor mapfile"),
            "map was not saved whole"
        );
        check_claims(p, &source);
    }
    let out = start(p, &[]).wait_with_output().expect("final run");
    assert!(out.status.success());
    assert_eq!(
        read_map(&p.join("map")).blocks(),
        expected_final(size, &bad).as_slice()
    );
    let _ = Command::new("true").status();
}
