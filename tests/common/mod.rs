//! Helpers shared by the integration tests: the salvor binary, deterministic data, loop devices
//! that are detached even when a test fails, and loud failures for missing tools.
#![allow(dead_code)]

pub mod fsimg;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn salvor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_salvor"))
}

/// Runs a command and returns its output; panics with the command line if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Fails the test loudly when an external tool the test needs is missing.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "required tool `{tool}` is missing: install the Debian package `{package}` (scripts/test.sh does)"
    );
}

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn write_pattern(path: &Path, seed: u64, len: usize) -> Vec<u8> {
    let data = pattern(seed, len);
    std::fs::write(path, &data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    data
}

/// Writes a ddrescue test-mode map: everything finished except `bad` (sorted byte ranges).
pub fn write_test_map(path: &Path, size: u64, bad: &[(u64, u64)]) {
    let mut s = String::from("# test map\n0x0 + 1\n");
    let mut pos = 0;
    for &(a, b) in bad {
        if a > pos {
            s += &format!("0x{pos:X} 0x{:X} +\n", a - pos);
        }
        s += &format!("0x{a:X} 0x{:X} -\n", b - a);
        pos = b;
    }
    if size > pos {
        s += &format!("0x{pos:X} 0x{:X} +\n", size - pos);
    }
    std::fs::write(path, s).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

pub fn read_map(path: &Path) -> salvor::mapfile::Mapfile {
    salvor::mapfile::parse_file(path)
        .unwrap_or_else(|e| panic!("mapfile {} does not parse: {e}", path.display()))
        .unwrap_or_else(|| panic!("mapfile {} is missing", path.display()))
}

/// Checks that every byte the map calls finished equals the source.
pub fn assert_finished_bytes_match(map: &salvor::mapfile::Mapfile, source: &[u8], dest: &[u8]) {
    for b in map.blocks() {
        if b.status == salvor::mapfile::BlockStatus::Finished {
            let (s, e) = (b.pos as usize, b.end() as usize);
            assert!(
                dest.len() >= e,
                "destination shorter than finished block at 0x{:X}",
                b.pos
            );
            if source[s..e] != dest[s..e] {
                let off = (s..e).find(|&i| source[i] != dest[i]).unwrap_or(s);
                panic!("finished byte at 0x{off:X} differs from the source");
            }
        }
    }
}

/// A loop device attached to a file; detached on drop, even if the test panicked.
pub struct LoopDev {
    pub dev: PathBuf,
}

impl LoopDev {
    pub fn attach(file: &Path, partscan: bool) -> LoopDev {
        require_tool("losetup", "mount");
        let mut cmd = Command::new("losetup");
        cmd.arg("-f").arg("--show");
        if partscan {
            cmd.arg("-P");
        }
        let out = run(cmd.arg(file));
        assert!(
            out.status.success(),
            "losetup failed (root and loop devices are required): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
        LoopDev { dev }
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// A mount that is undone on drop.
pub struct Mount {
    pub dir: PathBuf,
}

impl Mount {
    pub fn new(dev: &Path, dir: &Path) -> Mount {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let out = run(Command::new("mount").arg(dev).arg(dir));
        assert!(
            out.status.success(),
            "mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Runs a test script from the repository with bash and fails the test with its whole output
/// unless it exits 0 (and, if `want_pass_line`, prints a line starting with "PASS").
pub fn run_script(rel_path: &str, args: &[&str], envs: &[(&str, &str)], want_pass_line: bool) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = repo.join(rel_path);
    let started = std::time::Instant::now();
    // A hung script (a QEMU that never exits) must fail the test, not eat CI's time: SIGTERM
    // after the limit lets the script's traps stop QEMU and clean up; SIGKILL 30 s later.
    const LIMIT_SECS: u32 = 1200;
    let mut cmd = Command::new("timeout");
    cmd.arg("--kill-after=30")
        .arg(LIMIT_SECS.to_string())
        .arg("bash")
        .arg(&script)
        .args(args)
        .current_dir(repo);
    // A developer's ad-hoc overrides must not leak into a test run (SEED may: it reproduces a
    // power-cut run's cut moments).
    for var in [
        "KEEP",
        "GUEST_CMD",
        "FAKE",
        "DISK_MIB",
        "BAD_SECTORS",
        "RATE",
        "CUTS",
        "W_SECTOR",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(envs.iter().copied());
    let out = run(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{} failed ({}{}) after {elapsed:.1} s\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        script.display(),
        out.status,
        if out.status.code() == Some(124) {
            format!(", stopped after the {LIMIT_SECS} s limit")
        } else {
            String::new()
        },
    );
    assert!(
        !want_pass_line || stdout.lines().any(|l| l.starts_with("PASS")),
        "{} exited 0 without printing PASS\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        script.display(),
    );
    println!("{stdout}");
    println!("{rel_path}: {elapsed:.1} s in total");
}
