//! Real-kernel fault-injection test: runs `tests/qemu/rescue-blkdebug.sh`, which builds the
//! static release binary (`target/x86_64-unknown-linux-musl/release/salvor`), boots Debian's
//! kernel under QEMU (TCG) with a source disk whose reads fail at chosen sectors (QEMU's
//! blkdebug driver), runs `salvor rescue -d -f /dev/vda /dev/vdb MAP` in the guest and checks the
//! mapfile and the destination against the source and the injected faults.
//!
//! Needs root on Debian (the script apt-get installs QEMU, busybox-static, gddrescue, the kernel
//! package...). It never skips: a machine without them fails it loudly.

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

#[test]
fn rescue_under_real_kernel_with_blkdebug_faults() {
    common::run_script("tests/qemu/rescue-blkdebug.sh", &[], &[], true);
}
