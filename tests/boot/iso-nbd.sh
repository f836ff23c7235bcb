#!/usr/bin/env bash
# iso-nbd.sh: boot a disk from its salvor image without restoring it. The salvor ISO, written to
# a disk, is the bootable disk: `salvor image` makes a (used-blocks, default) image of it,
# `salvor serve` serves that image on a Unix socket, and QEMU (TCG, SeaBIOS) boots the NBD export
# as a USB stick (`file.driver=nbd`) to the salvor UI's first screen. Every sector the firmware,
# GRUB and the kernel read goes through salvor's NBD server and chunk decoder. Environment:
# MEM (256), BOOT_TIMEOUT (360), KEEP=1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SALVOR_REPO/scripts/lib/build.sh"
need qemu-system-x86_64:qemu-system-x86 nbdinfo:libnbd-bin
MEM=${MEM:-256}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-360}

build_iso
salvor=${SALVOR_BIN:-$(build_salvor_musl)}

# The ISO as a disk: a copy, so that nothing can touch the built ISO.
cp "$ISO" "$work/disk.raw"
"$salvor" image "$work/disk.raw" "$work/disk.img.zst" 2>"$work/image.log" \
    || { cat "$work/image.log"; die "salvor image failed"; }
grep -E '^(whole device|partition|outside)' "$work/image.log" || true
"$salvor" verify "$work/disk.img.zst" >/dev/null 2>&1 || die "salvor verify failed"

sock="$work/nbd.sock"
"$salvor" serve "$work/disk.img.zst" --unix "$sock" >"$work/serve.log" 2>&1 &
spid=$!
QEMU_PIDS+=("$spid")
# Ready when an NBD client gets the export's size (bounded; never a fixed sleep).
ready=0
for _ in $(seq 300); do
    if nbdinfo --size "nbd+unix:///?socket=$sock" >/dev/null 2>&1; then ready=1; break; fi
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.1
done
[[ $ready == 1 ]] || { cat "$work/serve.log"; die "salvor serve did not start"; }
size=$(nbdinfo --size "nbd+unix:///?socket=$sock")
[[ $size == "$(stat -c %s "$ISO")" ]] || fail "the export has $size bytes, the ISO $(stat -c %s "$ISO")"

truncate -s 64M "$work/disk0.img"
t0=$(now)
qemu_bg nbd -m "$MEM" -machine pc \
    -device qemu-xhci,id=xhci \
    -drive "driver=raw,file.driver=nbd,file.path=$sock,if=none,id=stick,readonly=on" \
    -device usb-storage,bus=xhci.0,drive=stick,bootindex=0 \
    -drive "file=$work/disk0.img,format=raw,if=none,id=disk0" -device virtio-blk-pci,drive=disk0,serial=salvor-disk0
if wait_console nbd "$BOOT_FIRST_SCREEN_RE" "$BOOT_TIMEOUT"; then
    echo "nbd: booted from salvor serve to the first screen in $(secs "$t0" "$(now)") s"
else
    fail "booting the served image: no first screen within ${BOOT_TIMEOUT}s"
    show_console nbd 60
    tail -n 20 "$work/serve.log"
fi
qemu_stop
finish_tests "boot from an image served by salvor serve over NBD"
