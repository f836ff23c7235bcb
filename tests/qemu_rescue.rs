//! Real-kernel fault-injection test: runs `tests/qemu/rescue-blkdebug.sh`, which builds the
//! static release binary (`target/x86_64-unknown-linux-musl/release/salvor`), boots Debian's
//! kernel under QEMU (TCG) with a source disk whose reads fail at chosen sectors (QEMU's
//! blkdebug driver), runs `salvor rescue -f /dev/vda /dev/vdb MAP` in the guest and checks the
//! mapfile and the destination against the source and the injected faults.
//!
//! Slow (a release build plus one emulated boot of about 10 s), so it is a single test.
//! Needs root on Debian (the script apt-get installs QEMU, busybox-static, gddrescue, the
//! kernel package...).
//!
//! It never skips: a machine without root, QEMU or the kernel package fails it loudly.

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::path::Path;
use std::process::Command;

#[test]
fn rescue_under_real_kernel_with_blkdebug_faults() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = repo.join("tests/qemu/rescue-blkdebug.sh");

    let mut cmd = Command::new("bash");
    cmd.arg(&script).current_dir(repo);
    // A cargo test run must not pick up a developer's ad-hoc overrides of the guest command.
    cmd.env_remove("GUEST_CMD").env_remove("FAKE");

    let started = std::time::Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let elapsed = started.elapsed().as_secs_f64();

    assert!(
        out.status.success(),
        "{} failed ({}) after {elapsed:.1} s\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        script.display(),
        out.status,
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("PASS")),
        "{} exited 0 without printing PASS\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        script.display(),
    );
    // Shown with --nocapture; keeps the timing and any stand-in note visible.
    println!("{stdout}");
    for line in stderr.lines().filter(|l| l.contains("NOTE:")) {
        println!("{line}");
    }
    println!("qemu_rescue: {elapsed:.1} s in total");
}
