#!/usr/bin/env bash
# iso-nbd.sh: boot a disk from its salvor image without restoring it. The salvor ISO, written to
# a disk, is the bootable disk: `salvor image` makes a (used-blocks, default) image of it,
# `salvor serve` serves that image on a Unix socket, and QEMU (TCG, SeaBIOS) boots the NBD export
# as a USB stick (`file.driver=nbd`) to the salvor UI's first screen. Every sector the firmware,
# GRUB and the kernel read goes through salvor's NBD server and chunk decoder. Then the image
# is exported to VMDK and VHD (`salvor export`) and each export is checked, compared and booted
# the same way. Environment:
# MEM (256), BOOT_TIMEOUT (360), KEEP=1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SALVOR_REPO/scripts/lib/build.sh"
need qemu-system-x86_64:qemu-system-x86 nbdinfo:libnbd-bin qemu-img:qemu-utils
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

# The same image exported to the formats other hypervisors use boots too: each export passes
# `qemu-img check` (VMDK; qemu-img cannot check VHD), equals the served image (`qemu-img
# compare` against the NBD export: both are the image's content, the used-blocks image's
# left-out blocks reading as zeros in each), and QEMU boots it as a USB stick to the first
# screen.
for fmt in vmdk:vmdk vhd:vpc; do
    ext=${fmt%%:*} qfmt=${fmt#*:}
    out="$work/disk.$ext"
    if ! "$salvor" export "$work/disk.img.zst" "$out" >"$work/export.log" 2>&1; then
        cat "$work/export.log"; fail "salvor export to .$ext failed"; continue
    fi
    # (qemu-img has no check for VHD: "This image format does not support checks".)
    if [[ $qfmt != vpc ]]; then
        qemu-img check -f "$qfmt" "$out" >"$work/check.log" 2>&1 \
            || { cat "$work/check.log"; fail "qemu-img check of the .$ext export"; }
    fi
    qemu-img compare -f "$qfmt" -F raw "$out" "nbd+unix:///?socket=$sock" >"$work/compare.log" 2>&1 \
        || { cat "$work/compare.log"; fail "the .$ext export differs from the served image"; }
    t0=$(now)
    qemu_bg "$ext" -m "$MEM" -machine pc \
        -device qemu-xhci,id=xhci \
        -drive "file=$out,format=$qfmt,if=none,id=stick,readonly=on" \
        -device usb-storage,bus=xhci.0,drive=stick,bootindex=0 \
        -drive "file=$work/disk0.img,format=raw,if=none,id=disk0" -device virtio-blk-pci,drive=disk0,serial=salvor-disk0
    if wait_console "$ext" "$BOOT_FIRST_SCREEN_RE" "$BOOT_TIMEOUT"; then
        echo "$ext: the exported .$ext booted to the first screen in $(secs "$t0" "$(now)") s"
    else
        fail "booting the .$ext export: no first screen within ${BOOT_TIMEOUT}s"
        show_console "$ext" 60
    fi
    qemu_stop
done
finish_tests "boot from an image served by salvor serve over NBD, and from its VMDK and VHD exports"
