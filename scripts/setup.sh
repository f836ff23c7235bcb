#!/usr/bin/env bash
# Installs everything salvor's build, tests, demo and benchmarks need on a fresh Debian machine
# (as root). Safe to run again: it only installs what is missing.
set -euo pipefail

packages=(
  musl-tools            # musl-gcc: zstd's C code for the static musl binary
  gddrescue             # GNU ddrescue + ddrescuelog: interop tests and benchmarks
  gdisk fdisk           # sgdisk/sfdisk: partition tables in tests
  e2fsprogs dosfstools  # mkfs/fsck in tests
  mount util-linux      # losetup, mount
  qemu-system-x86       # real-kernel tests (TCG)
  busybox-static cpio kmod   # test initramfs
  zstd                  # stock zstd: image interop
  xxd                   # the image's chunk digest recomputed with stock tools
  hyperfine             # benchmarks
  fuse3                 # fusermount3: the simulated drive of bench-rescue (salvor sim-drive)
  tmux                  # terminal UI end-to-end test
  dpkg-dev              # dpkg-source: GNU ddrescue's source package (its test suite: scripts/ddrescue-check.sh)
  python3 file
  nbdkit libnbd-bin qemu-utils nbd-client   # salvor serve: NBD clients and reference servers in tests/benchmarks
  ewf-tools             # ewfverify/ewfinfo: E01 exports
  partclone             # used-blocks oracle (partclone.<fs> -D) for the filesystem layer tests
  ntfs-3g exfatprogs exfat-fuse mtools   # NTFS/exFAT/FAT test images built without kernel drivers
  xfsprogs btrfs-progs  # XFS/btrfs test images
  nbdkit libnbd-bin     # salvor files tests: reads of unrescued sectors fail (ddrescue filter)
  ddrutility            # ddru_ntfsfindbad: the NTFS damaged-files oracle
)
# Twice: installing one package can remove another that was there (a machine with a backported
# qemu-utils loses it when Debian's qemu-system-x86 comes in), and the second round puts it back.
for round in 1 2; do
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || break
  echo "setup: installing ${missing[*]} (round $round)"
  export DEBIAN_FRONTEND=noninteractive
  [ "$round" = 2 ] || apt-get update -q || true
  apt-get install -y -q "${missing[@]}"
done
for c in qemu-img qemu-nbd qemu-system-x86_64 ddrescue nbdcopy; do
  command -v "$c" >/dev/null || { echo "setup: $c is still missing" >&2; exit 1; }
done
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  rustup target add x86_64-unknown-linux-musl
fi
