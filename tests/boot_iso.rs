//! Boot tests of the salvor rescue ISO (`scripts/build-iso.sh`): each test runs one script
//! under `tests/boot/`, which builds (or reuses) `work/salvor.iso` and boots it, or its kernel
//! and initramfs, under QEMU (TCG):
//!
//! - `iso_boots_bios_and_uefi`: SeaBIOS and OVMF, as a CD and as a USB stick; the salvor UI
//!   lists the attached virtio disk on the serial console; a hot-plugged USB disk appears.
//! - `iso_rescue_with_blkdebug_faults`: `salvor.run="rescue ..."` on a blkdebug source with
//!   256 MiB of RAM; the host checks every rescued byte and the bad sectors; forensic mode
//!   refuses to write.
//! - `iso_secure_boot`: OVMF with Secure Boot enforced and Microsoft's keys: the ISO boots as
//!   a CD, as a USB stick through El Torito and through its ESP partition, with lockdown; an
//!   unsigned-loader build of the same ISO is refused.
//! - `iso_image_and_restore`: `salvor.run="image ..."` to an ext4 disk, restored on the host.
//!   Fails while salvor has no `image`/`restore` subcommands.
//!
//! The boots are serialised (one QEMU at a time: TCG on two cores). Needs root on Debian: the
//! scripts apt-get install what they use. They never skip.

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run_script(name: &str, args: &[&str]) {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = repo.join("tests/boot").join(name);
    let started = std::time::Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .current_dir(repo)
        .env_remove("KEEP")
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
    println!("{stdout}");
    println!("{name}: {elapsed:.1} s in total");
}

#[test]
fn iso_boots_bios_and_uefi() {
    run_script("iso-boot.sh", &[]);
}

#[test]
fn iso_rescue_with_blkdebug_faults() {
    run_script("iso-rescue.sh", &[]);
}

#[test]
fn iso_image_and_restore() {
    run_script("iso-image.sh", &[]);
}

#[test]
fn iso_secure_boot() {
    run_script("iso-secureboot.sh", &[]);
}
