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
//! - `iso_copytoram_releases_the_medium`: `copytoram` copies the CD to RAM, releases it, and
//!   `salvor list` flags it as the boot medium.
//! - `iso_mounts_an_image`: `salvor mount` of an image's partition in the rescue environment
//!   (FUSE + a read-only loop device by ioctl, no util-linux); the files' digests match.
//! - `iso_boots_from_its_image_over_nbd`: the ISO as a disk, imaged (used blocks), served by
//!   `salvor serve` on a Unix socket, booted by QEMU from the NBD export to the first screen;
//!   then exported to VMDK and VHD, each checked (`qemu-img check`), compared with the served
//!   image (`qemu-img compare`) and booted the same way.
//!
//! The boots are serialised (one QEMU at a time: TCG on two cores). Needs root on Debian: the
//! scripts apt-get install what they use. They never skip.

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use std::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run_script(name: &str, args: &[&str]) {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    common::run_script(&format!("tests/boot/{name}"), args, &[], true);
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

#[test]
fn iso_copytoram_releases_the_medium() {
    run_script("iso-copytoram.sh", &[]);
}

#[test]
fn iso_boots_from_its_image_over_nbd() {
    run_script("iso-nbd.sh", &[]);
}

#[test]
fn iso_mounts_an_image() {
    run_script("iso-mount.sh", &[]);
}
